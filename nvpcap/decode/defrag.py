"""IPv4 and IPv6 fragment reassembly, with NeuVector dp's limits and threats.

Fragments are rare next to whole packets, so this runs in Python over just the fragment rows of a batch.
Trackers are keyed on (src, dst, id, protocol), time out after 10 s of capture time without a new fragment,
and hold at most 64 KiB. Every fragment ends in exactly one outcome counter: reassembled, overlap (discarded;
IPv4 overlaps raise IP.Fragment.Teardrop, 2002), invalid, oversize, expired, or incomplete at end of input.
Completed datagrams are decoded again as raw IP, so flows see them as one packet.
"""
from __future__ import annotations

import bisect
import struct
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import status as st
from .decoder import LT_RAW, PacketBatch, decode
from .reader import RawBatch

NS = 1_000_000_000
MAX_DATAGRAM = 65535
PING_OF_DEATH_BYTES = 32000
ICMP_REPLY_TYPES = {(4, 0), (6, 129)}
_FRAGMENT_COLUMNS = ("ip_version", "src_hi", "src_lo", "dst_hi", "dst_lo", "frag_id", "frag_nh", "vlan", "vlan2",
                     "frag_off", "frag_data_off", "l3_off", "ip_wire_end", "ip_end", "frag_more")


@dataclass
class FragmentThreat:
    """A threat found while reassembling (teardrop, ping of death), with its evidence frame."""

    threat_id: int
    ts_ns: int
    frame: int
    ip_version: int
    src_hi: int
    src_lo: int
    dst_hi: int
    dst_lo: int
    proto: int
    message: str


@dataclass
class LostFragment:
    """A fragment that did not become part of a datagram, and why (for anomaly records)."""

    outcome: str
    ts_ns: int
    frame: int


@dataclass
class _Tracker:
    header: bytes | None = None  # IP header of the offset-0 fragment (IPv6: the 40-byte fixed header)
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> captured bytes
    starts: list[int] = field(default_factory=list)  # held pieces [start, end) on the wire, sorted by start
    ends: list[int] = field(default_factory=list)
    covered: int = 0  # bytes held; pieces never overlap, so the datagram is whole when covered == total
    total: int = -1  # datagram payload length, once the last fragment is seen
    max_end: int = 0
    last_ts: int = 0
    frames: list[tuple[int, int]] = field(default_factory=list)  # (ts, frame) of each held fragment
    wire_bytes: int = 0
    cut: bool = False
    vlan: int = -1
    vlan2: int = -1


@dataclass
class Reassembled:
    """Datagrams completed in one batch, decoded, and where each belongs in capture order."""

    packets: PacketBatch
    position: np.ndarray  # index (in the input batch) of the fragment that completed each datagram
    wirelen: np.ndarray  # sum of the original lengths of all its fragments
    cut: np.ndarray  # bool: a fragment was cut short by the capture
    vlan: np.ndarray
    vlan2: np.ndarray


class Defragmenter:
    """Reassembly state that lives across the batches of one capture."""

    def __init__(self, timeout_s: float = 10.0, max_trackers: int = 65536):
        self.timeout_ns = int(timeout_s * NS)
        self.max_trackers = max_trackers
        self.trackers: dict[tuple, _Tracker] = {}
        self.outcomes: Counter[str] = Counter()
        self.threats: list[FragmentThreat] = []
        self.lost: list[LostFragment] = []
        self._next_expiry = 0

    def _lose(self, outcome: str, ts: int, frame: int) -> None:
        self.outcomes[outcome] += 1
        self.lost.append(LostFragment(outcome, ts, frame))

    def _drop(self, key: tuple, outcome: str) -> None:
        tr = self.trackers.pop(key)
        for ts, frame in tr.frames:
            self._lose(outcome, ts, frame)

    def _expire(self, now: int) -> None:
        """End trackers idle past the timeout; checked once per second of capture time, not per fragment."""
        if now < self._next_expiry:
            return
        self._next_expiry = now + NS
        old = [k for k, t in self.trackers.items() if now - t.last_ts > self.timeout_ns]
        for k in old:
            self._drop(k, "fragment-expired")

    def finish(self) -> None:
        """End of input: whatever is still held never completed."""
        for k in list(self.trackers):
            self._drop(k, "fragment-incomplete")

    def process(self, pb: PacketBatch) -> Reassembled | None:
        rows = np.flatnonzero(pb.status == st.FRAGMENT)
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
            elif more and tr.total >= 0 and end > tr.total:
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
        return self._decode(done_bytes, done_pos, done_wire, done_cut, done_vlan, done_meta)

    def _threat(self, tid: int, pb: PacketBatch, i: int, key: tuple, msg: str) -> FragmentThreat:
        return FragmentThreat(tid, int(pb.raw.ts_ns[i]), int(pb.raw.frame_no[i]), key[0], key[1], key[2], key[3],
                              key[4], key[6], msg)

    @staticmethod
    def _decode(datagrams, positions, wires, cuts, vlans, meta) -> Reassembled:
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


def _overlaps(starts: list[int], ends: list[int], off: int, end: int) -> bool:
    """Does [off, end) overlap a held piece? Pieces are disjoint and sorted: only the neighbours matter."""
    at = bisect.bisect_left(starts, off)
    if at < len(starts) and starts[at] < end:
        return True
    return at > 0 and ends[at - 1] > off


def _rebuild(ver: int, header: bytes, payload: bytes, proto: int) -> bytes:
    """A whole IP datagram from the first fragment's header and the reassembled payload."""
    if ver == 4:
        h = bytearray(header)
        struct.pack_into(">H", h, 2, min(len(h) + len(payload), 0xFFFF))
        struct.pack_into(">H", h, 6, 0)  # no more fragments, offset 0
        h[9] = proto
        struct.pack_into(">H", h, 10, 0)
        return bytes(h) + payload
    h = bytearray(header[:40])
    struct.pack_into(">H", h, 4, min(len(payload), 0xFFFF))
    h[6] = proto  # extension headers before the fragment header are not kept (as NeuVector dp)
    return bytes(h) + payload
