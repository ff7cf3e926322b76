"""Defragmenter's fast path (numpy over the keys whose fragments make datagrams in time) and its general
path alone (every fragment walked one by one) against the reference, process() as it was before the fast path,
kept verbatim below: the same datagrams (bytes, positions, wire lengths, cut flags, vlans, times, frames),
outcome counters, threats, lost fragments, held trackers (in the same order, holding the same bytes) after every
batch and after finish(). Streams of IPv4 and
IPv6 fragments in order, reversed, shuffled, duplicated, overlapping, with pieces missing, cut by the capture,
empty or oversize, with ids reused, time gaps past the timeout and time going back, split across batches at
random points among whole packets, with few trackers allowed (eviction) or many. The last tests break the fast
path on purpose and check that the comparison notices."""
from __future__ import annotations

import bisect
import itertools
import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvpcap.decode import defrag
from nvpcap.decode import status as pkt_status
from nvpcap.decode.decoder import LT_ETHERNET, LT_RAW, PacketBatch, decode
from nvpcap.decode.defrag import (
    ICMP_REPLY_TYPES,
    MAX_DATAGRAM,
    PING_OF_DEATH_BYTES,
    Defragmenter,
    Reassembled,
    _overlaps,
    _rebuild,
    _Tracker,
)
from nvpcap.decode.reader import RawBatch

NS = 1_000_000_000
TIMEOUT_S = 5.0
GENERAL_ONLY = 1 << 40  # fast_min_rows out of reach: the general path alone
# time steps between packets: none, tiny, under a sweep, a sweep exactly, over it, at, near and past the timeout,
# backwards
STEPS = [0, 1_000, 400_000_000, 500_000_000, 1_000_000_000, 1_500_000_000, 4_900_000_000, 5_000_000_000,
         5_100_000_000, 12_000_000_000, -3_000_000_000]


# -- packets ------------------------------------------------------------------------------------------------
def ipv4_fragment(src: int, dst: int, ident: int, proto: int, off: int, more: bool, data: bytes,
                  options: int = 0) -> bytes:
    hl = 20 + 4 * options
    head = struct.pack(">BBHHHBBHII", 0x40 | hl // 4, 0, hl + len(data), ident, (more << 13) | (off // 8), 64,
                       proto, 0xBEEF, src, dst)
    return head + b"\x01" * (4 * options) + data


def ipv6_fragment(src: int, dst: int, ident: int, proto: int, off: int, more: bool, data: bytes,
                  options: int = 0) -> bytes:
    ext = b""
    nh = 44
    if options:  # a destination-options header before the fragment header (not kept in the datagram)
        ext, nh = bytes([44, 0]) + b"\x01\x04" + b"\x00" * 4, 60
    head = struct.pack(">IHBB", 0x60000000, len(ext) + 8 + len(data), nh, 64)
    head += (0x20010DB8 << 96 | src).to_bytes(16, "big") + (0x20010DB8 << 96 | dst).to_bytes(16, "big")
    return head + ext + struct.pack(">BBHI", proto, 0, off | int(more), ident) + data


def ethernet(ip: bytes, vlan: int) -> bytes:
    kind = b"\x08\x00" if ip[0] >> 4 == 4 else b"\x86\xdd"
    tag = b"\x81\x00" + struct.pack(">H", vlan) if vlan >= 0 else b""
    return b"\x02" * 6 + b"\x04" * 6 + tag + kind + ip


WHOLE_UDP = ipv4_fragment(0x0A000001, 0x0A000002, 0, 17, 0, False, struct.pack(">HHHH", 53, 53, 12, 0) + b"abcd")


@st.composite
def datagrams(draw) -> list[dict]:
    """One datagram's fragments as dicts (before times and batches), possibly damaged."""
    ver = draw(st.sampled_from([4, 6]))
    keyno = draw(st.integers(0, 3))  # few keys: ids are reused, datagrams of one key follow each other
    proto = draw(st.sampled_from([17, 17, 1, 58, 6]))
    size = draw(st.sampled_from([8, 16, 24, 40, 200, 1200, 33000]))
    unit = draw(st.sampled_from([8, 16, 64, 1480]))
    first = b"\x08" if draw(st.booleans()) else (b"\x00" if ver == 4 else b"\x81")  # request or reply
    payload = first + bytes(random.Random(draw(st.integers(0, 1 << 30))).randbytes(size - 1))
    cuts = list(range(0, size, unit))
    frags = [{"off": o, "data": payload[o:o + unit], "more": o + unit < size} for o in cuts]
    if len(frags) > 1 and frags[-1]["off"] == 0:
        frags = frags[:1]
    order = draw(st.sampled_from(["in order"] * 4 + ["reversed", "shuffled", "last first"]))
    if order == "reversed":
        frags.reverse()
    elif order == "shuffled":
        random.Random(draw(st.integers(0, 99))).shuffle(frags)
    elif order == "last first":
        frags = frags[-1:] + frags[:-1]
    for damage in draw(st.lists(st.sampled_from(["dup", "overlap", "missing", "cut", "empty", "oversize",
                                                 "bad end", "none", "none", "none"]), max_size=3)):
        at = draw(st.integers(0, len(frags) - 1)) if frags else 0
        if damage == "dup" and frags:
            frags.insert(at, dict(frags[at]))
        elif damage == "overlap" and frags:
            f = frags[at]
            frags.insert(draw(st.integers(0, len(frags))), {"off": max(0, f["off"] - 8), "data": b"\xAA" * 24,
                                                               "more": True})
        elif damage == "missing" and len(frags) > 1:
            del frags[at]
        elif damage == "cut" and frags:
            frags[at] = dict(frags[at], cut=draw(st.integers(1, 16)))
        elif damage == "empty":
            frags.insert(at, {"off": 8 * draw(st.integers(0, 4)), "data": b"", "more": True})
        elif damage == "oversize":
            frags.insert(at, {"off": 65528, "data": b"\x00" * 16, "more": draw(st.booleans())})
        elif damage == "bad end" and frags:
            frags.insert(at, {"off": frags[at]["off"], "data": b"\x00" * 8, "more": False})
    vlan = draw(st.sampled_from([-1, -1, 7, 300]))
    vlans = draw(st.lists(st.sampled_from([-1, 7, 300]), min_size=len(frags), max_size=len(frags))) \
        if draw(st.integers(0, 5)) == 0 else [vlan] * len(frags)  # rarely: fragments over different vlans
    options = draw(st.sampled_from([0, 0, 1]))
    src, dst = 0x0A000000 + keyno, 0x0A0000FF
    ident = 1000 + keyno
    make = ipv4_fragment if ver == 4 else ipv6_fragment
    out = []
    for f, v in zip(frags, vlans):
        ip = make(src, dst, ident, proto, f["off"], f["more"], f["data"], options)
        out.append({"ip": ip, "vlan": v, "cut": f.get("cut", 0)})
    return out


@st.composite
def streams(draw) -> tuple[list[list[tuple[bytes, int, int, int]]], int]:
    """Batches of (packet bytes, wire length, link type, time), and the tracker limit."""
    grams = draw(st.lists(datagrams(), min_size=1, max_size=6))
    interleave = draw(st.booleans())
    packets = []
    if interleave:  # fragments of different datagrams mixed, each datagram's own order kept
        rng = random.Random(draw(st.integers(0, 99)))
        queues = [list(g) for g in grams]
        while any(queues):
            q = rng.choice([q for q in queues if q])
            packets.append(q.pop(0))
    else:
        packets = [f for g in grams for f in g]
    for _ in range(draw(st.integers(0, 3))):
        packets.insert(draw(st.integers(0, len(packets))), {"ip": WHOLE_UDP, "vlan": -1, "cut": 0})
    ts = 1_700_000_000 * NS
    rows = []
    for p in packets:
        ts += draw(st.sampled_from(STEPS[:5] * 4 + STEPS))
        data = p["ip"] if p["vlan"] < 0 else ethernet(p["ip"], p["vlan"])
        kind = LT_RAW if p["vlan"] < 0 else LT_ETHERNET
        wire = len(data)
        if p["cut"]:
            data = data[:max(1, len(data) - p["cut"])]
        rows.append((data, wire, kind, ts))
    points = sorted(set(draw(st.lists(st.integers(1, max(1, len(rows) - 1)), max_size=8))))
    batches = [rows[a:b] for a, b in zip([0] + points, points + [len(rows)]) if rows[a:b]]
    max_trackers = draw(st.sampled_from([2, 3, 65536, 65536]))
    return batches, max_trackers


def packet_batch(rows: list[tuple[bytes, int, int, int]], frame0: int) -> PacketBatch:
    lens = np.array([len(r[0]) for r in rows], np.int64)
    raw = RawBatch(buf=np.frombuffer(b"".join(r[0] for r in rows), np.uint8).copy(),
                   data_off=np.cumsum(lens) - lens, caplen=lens, wirelen=np.array([r[1] for r in rows], np.int64),
                   ts_ns=np.array([r[3] for r in rows], np.int64), linktype=np.array([r[2] for r in rows], np.int32),
                   iface=np.zeros(len(rows), np.int32), frame_no=np.arange(frame0, frame0 + len(rows), dtype=np.int64))
    return decode(raw)


# -- the reference: process as it was before the fast path, verbatim ------------------------------------------
_FRAGMENT_COLUMNS = ("ip_version", "src_hi", "src_lo", "dst_hi", "dst_lo", "frag_id", "frag_nh", "vlan", "vlan2",
                     "frag_off", "frag_data_off", "l3_off", "ip_wire_end", "ip_end", "frag_more")


class Reference(Defragmenter):
    """Defragmenter with the per-fragment loop that process() was before the fast path (nvpcap 7th session's
    HEAD), kept word for word: both of today's paths must give what it gives."""

    def process(self, pb: PacketBatch) -> Reassembled | None:
        rows = np.flatnonzero(pb.status == pkt_status.FRAGMENT)
        if rows.shape[0] == 0:
            if self.trackers and len(pb):
                self._expire(int(pb.raw.ts_ns[-1]))
            return None
        raw = pb.raw
        buf = raw.buf
        done_bytes: list[bytes] = []
        done_pos: list[int] = []
        done_wire: list[int] = []
        done_cut: list[bool] = []
        done_vlan: list[tuple[int, int]] = []
        done_meta: list[tuple[int, int]] = []  # (ts, frame)
        # plain Python lists: indexing numpy arrays one element at a time costs more than all the logic below
        col = {name: getattr(pb, name)[rows].tolist() for name in _FRAGMENT_COLUMNS}
        ts_l, frame_l = raw.ts_ns[rows].tolist(), raw.frame_no[rows].tolist()
        wirelen_l, caplen_l = raw.wirelen[rows].tolist(), raw.caplen[rows].tolist()
        for j, i in enumerate(rows.tolist()):
            now = ts_l[j]
            self._expire(now)
            ver = col["ip_version"][j]
            key = (ver, col["src_hi"][j], col["src_lo"][j], col["dst_hi"][j], col["dst_lo"][j], col["frag_id"][j],
                   col["frag_nh"][j])
            tr = self.trackers.get(key)
            if tr is not None and now - tr.last_ts > self.timeout_ns:
                self._drop(key, "fragment-expired")  # exact per tracker; the sweep above is per second
                tr = None
            if tr is None:
                if len(self.trackers) >= self.max_trackers:
                    oldest = min(self.trackers, key=lambda k: self.trackers[k].last_ts)
                    self._drop(oldest, "fragment-expired")
                tr = self.trackers[key] = _Tracker(vlan=col["vlan"][j], vlan2=col["vlan2"][j])
            off = col["frag_off"][j]
            data_off = col["frag_data_off"][j]
            l3 = col["l3_off"][j]
            wire_len = col["ip_wire_end"][j] - data_off  # fragment data per the IP header, not the capture
            cap_end = col["ip_end"][j]
            end = off + wire_len
            more = bool(col["frag_more"][j])
            outcome = None
            if wire_len <= 0:
                outcome = "fragment-invalid"
            elif _overlaps(tr.starts, tr.ends, off, end):
                outcome = "fragment-overlap"
                if ver == 4:
                    self.threats.append(self._threat(2002, pb, i, key, "overlapping IPv4 fragment (teardrop)"))
            elif more and tr.total >= 0 and end > tr.total:  # noqa: SIM114 - verbatim
                outcome = "fragment-invalid"
            elif not more and ((tr.total >= 0 and end != tr.total) or end < tr.max_end):
                outcome = "fragment-invalid"
            elif end > MAX_DATAGRAM:
                outcome = "fragment-oversize"
            if outcome is not None:
                self._lose(outcome, now, frame_l[j])
                tr.last_ts = now
                if not tr.frames:
                    del self.trackers[key]
                continue
            tr.frames.append((now, frame_l[j]))
            tr.last_ts = now
            tr.wire_bytes += wirelen_l[j]
            tr.cut = tr.cut or caplen_l[j] < wirelen_l[j] or cap_end - data_off < wire_len
            at = bisect.bisect_left(tr.starts, off)
            tr.starts.insert(at, off)
            tr.ends.insert(at, end)
            tr.covered += end - off
            tr.pieces[off] = bytes(buf[data_off:max(data_off, cap_end)])
            tr.max_end = max(tr.max_end, end)
            if not more:
                tr.total = end
            if off == 0:
                tr.header = bytes(buf[l3:data_off]) if ver == 4 else bytes(buf[l3:l3 + 40])
            if tr.total < 0 or tr.header is None or tr.covered != tr.total:
                continue
            del self.trackers[key]
            self.outcomes["fragment-reassembled"] += len(tr.frames)
            payload = bytearray(tr.total)
            for o, piece in sorted(tr.pieces.items()):
                payload[o:o + len(piece)] = piece[: max(0, tr.total - o)]
            done_bytes.append(_rebuild(ver, tr.header, bytes(payload), key[6]))
            done_pos.append(i)
            done_wire.append(tr.wire_bytes)
            done_cut.append(tr.cut)
            done_vlan.append((tr.vlan, tr.vlan2))
            done_meta.append((now, frame_l[j]))
            if key[6] in (1, 58) and tr.total - 8 > PING_OF_DEATH_BYTES and len(payload) >= 1 \
                    and (ver, payload[0]) not in ICMP_REPLY_TYPES:
                self.threats.append(self._threat(
                    2006, pb, i, key, f"reassembled ICMP payload of {tr.total - 8} bytes (ping of death)"))
        if not done_bytes:
            return None
        return self._reference_decode(done_bytes, done_pos, done_wire, done_cut, done_vlan, done_meta)

    @staticmethod
    def _reference_decode(datagrams, positions, wires, cuts, vlans, meta) -> Reassembled:
        lens = np.array([len(d) for d in datagrams], np.int64)
        offs = np.zeros(len(datagrams), np.int64)
        offs[1:] = np.cumsum(lens)[:-1]
        buf = np.frombuffer(b"".join(datagrams), np.uint8)
        raw = RawBatch(
            buf=buf, data_off=offs, caplen=lens, wirelen=lens.copy(),
            ts_ns=np.array([m[0] for m in meta], np.int64), linktype=np.full(len(lens), LT_RAW, np.int32),
            iface=np.zeros(len(lens), np.int32), frame_no=np.array([m[1] for m in meta], np.int64),
        )
        return Reassembled(
            packets=decode(raw), position=np.array(positions, np.int64), wirelen=np.array(wires, np.int64),
            cut=np.array(cuts, np.bool_), vlan=np.array([v[0] for v in vlans], np.int32),
            vlan2=np.array([v[1] for v in vlans], np.int32),
        )



# -- comparison ---------------------------------------------------------------------------------------------
def held(tr: _Tracker) -> tuple:
    """What a tracker holds, however its pieces are split: the bytes at their offsets and the ranges merged."""
    data = bytearray(tr.max_end)
    have = bytearray(tr.max_end)
    for o, piece in tr.pieces.items():
        data[o:o + len(piece)] = piece
        have[o:o + len(piece)] = b"\x01" * len(piece)
    spans: list[list[int]] = []
    for a, b in zip(tr.starts, tr.ends):
        if spans and spans[-1][1] == a:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    return (tr.header, bytes(data), bytes(have), spans, tr.covered, tr.total, tr.max_end, tr.last_ts, tr.frames,
            tr.wire_bytes, tr.cut, tr.vlan, tr.vlan2)


def result(r: Reassembled | None) -> tuple | None:
    if r is None:
        return None
    raw = r.packets.raw
    grams = [raw.buf[o:o + n].tobytes() for o, n in zip(raw.data_off.tolist(), raw.caplen.tolist())]
    return (grams, raw.buf.tobytes(), r.position.tolist(), r.wirelen.tolist(), r.cut.tolist(), r.vlan.tolist(),
            r.vlan2.tolist(), raw.ts_ns.tolist(), raw.frame_no.tolist(), r.packets.status.tolist(),
            str(r.position.dtype), str(r.wirelen.dtype), str(r.vlan.dtype))


def state(d: Defragmenter) -> tuple:
    return (dict(d.outcomes), list(d.threats), list(d.lost), list(d.trackers),
            [held(t) for t in d.trackers.values()], d._next_expiry)


def compare(batches: list[list[tuple[bytes, int, int, int]]], max_trackers: int) -> None:
    """Feed the same batches to the fast path, to the general path alone and to the reference; assert that
    they agree after each batch, and after finish()."""
    ref = Reference(timeout_s=TIMEOUT_S, max_trackers=max_trackers)
    paths = {"fast": Defragmenter(timeout_s=TIMEOUT_S, max_trackers=max_trackers, fast_min_rows=1),
             "general": Defragmenter(timeout_s=TIMEOUT_S, max_trackers=max_trackers, fast_min_rows=GENERAL_ONLY)}
    frame = 1
    for n, rows in enumerate(batches):
        pb = packet_batch(rows, frame)
        frame += len(rows)
        want = result(ref.process(pb))
        for name, d in paths.items():
            assert result(d.process(pb)) == want, f"{name}: datagrams of batch {n}"
            assert state(d) == state(ref), f"{name}: state after batch {n}"
    ref.finish()
    for name, d in paths.items():
        d.finish()
        assert state(d) == state(ref), f"{name}: state after finish"


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams())
def test_fast_path_matches_general_path(stream):
    compare(*stream)


# -- the fast path is taken, and the comparison can fail -----------------------------------------------------
def in_order_stream(seed: int, n: int = 12) -> list[list[tuple[bytes, int, int, int]]]:
    """Whole datagrams in order, two at a time with their fragments alternating (the later key first), keys
    reused, some held across batches; one long idle gap."""
    rng = random.Random(seed)
    rows, ts = [], 1_700_000_000 * NS
    for pair in range(0, n, 2):
        ver = rng.choice([4, 6])
        make = ipv4_fragment if ver == 4 else ipv6_fragment
        size = rng.choice([24, 48, 200])
        grams = []
        for k in (pair, pair + 1):
            payload = rng.randbytes(size)
            grams.append([make(0x0A000009 - k % 3, 0x0A0000FF, 7 + k % 3, 17, off, off + 16 < size,
                               payload[off:off + 16]) for off in range(0, size, 16)])
        for m, ip in enumerate(x for two in zip(*grams) for x in two):
            ts += 6_000_000_000 if pair == n // 2 and m == 2 else rng.choice([1_000, 300_000_000])
            rows.append((ip, len(ip), LT_RAW, ts))
    cut = [0] + sorted(rng.sample(range(1, len(rows)), 3)) + [len(rows)]
    return [rows[a:b] for a, b in itertools.pairwise(cut)]


def test_time_going_back_between_fragments():
    """A sweep at a later-stamped fragment of another key ends a datagram, though its own next fragment, stamped
    back in time, follows it closely: the fast path must see the sweep (the latest time in between)."""
    t = 1_700_000_000 * NS
    a = [ipv4_fragment(0x0A000001, 0x0A0000FF, 1, 17, off, off == 0, b"A" * 8) for off in (0, 8)]
    b = [ipv4_fragment(0x0A000002, 0x0A0000FF, 2, 17, off, off == 0, b"B" * 8) for off in (0, 8)]
    times = [t, t + 6 * NS, t + NS, t + NS + 1]
    compare([[(p, len(p), LT_RAW, ts) for p, ts in zip([a[0], b[0], a[1], b[1]], times)]], 65536)


@pytest.mark.parametrize("backwards", [False, True])
def test_fast_path_takes_whole_datagrams(monkeypatch, backwards):
    """Datagrams whose fragments arrive in order, or all backwards, never reach the walk."""
    walked = []
    real_walk = Defragmenter._walk

    def walk(self, pb, fr, which, *args):
        walked.append(int(which.shape[0]))
        return real_walk(self, pb, fr, which, *args)

    monkeypatch.setattr(Defragmenter, "_walk", walk)
    d = Defragmenter(fast_min_rows=1)
    rows = [r for b in in_order_stream(1) for r in b]
    if backwards:  # the packets in reverse, at the same times
        rows = [(p, n, kind, t) for (p, n, kind, _), (*_, t) in zip(rows[::-1], rows)]
    out = d.process(packet_batch(rows, 1))
    assert walked == [0] and out is not None and len(out.position) == 12
    assert d.outcomes == {"fragment-reassembled": len(rows)} and not d.trackers


def test_ping_of_death_is_a_request_not_a_reply_on_both_paths():
    """33,000-byte ICMP echo requests and replies, v4 and v6, reassembled by the fast path and the walk: threat
    2006 for the requests only, the same on both (the reply exemption is ICMP_REPLY_TYPES in both)."""
    rows, ts = [], 1_700_000_000 * NS
    for k, (ver, first) in enumerate([(4, 8), (4, 0), (6, 128), (6, 129)]):
        make, proto = (ipv4_fragment, 1) if ver == 4 else (ipv6_fragment, 58)
        payload = bytes([first]) + bytes(32_999)
        for off in range(0, len(payload), 1480):
            ip = make(0x0A000001 + k, 0x0A0000FF, 50 + k, proto, off, off + 1480 < len(payload),
                      payload[off:off + 1480])
            ts += 1_000
            rows.append((ip, len(ip), LT_RAW, ts))
    compare([rows], 65536)
    d = Defragmenter(fast_min_rows=1)
    d.process(packet_batch(rows, 1))
    assert [(t.threat_id, t.ip_version) for t in d.threats] == [(2006, 4), (2006, 6)]


MUTANTS = {
    "timeouts ignored": ("Defragmenter._in_time", lambda self, fr, order, new, after: np.ones(len(order), bool)),
    "headers not patched": ("_patch_headers", lambda *a: None),
    "tracker order kept": ("Defragmenter._reorder", lambda self, born, opened: None),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_comparison_catches_a_broken_fast_path(monkeypatch, mutant):
    name, broken = MUTANTS[mutant]
    if name.startswith("Defragmenter."):
        monkeypatch.setattr(Defragmenter, name.split(".")[1], broken)
    else:
        monkeypatch.setattr(defrag, name, broken)
    with pytest.raises(AssertionError):
        for seed in range(40):
            compare(in_order_stream(seed), 65536)
