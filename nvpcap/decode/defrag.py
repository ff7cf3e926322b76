"""IPv4 and IPv6 fragment reassembly, with NeuVector dp's limits and threats.

Fragments are rare next to whole packets, so this runs in Python over just the fragment rows of a batch.
Trackers are keyed on (src, dst, id, protocol), time out after 10 s of capture time without a new fragment,
and hold at most 64 KiB. Every fragment ends in exactly one outcome counter: reassembled, overlap (discarded;
IPv4 overlaps raise IP.Fragment.Teardrop, 2002), invalid, oversize, expired, or incomplete at end of input.
Completed datagrams are decoded again as raw IP, so flows see them as one packet.
"""
from __future__ import annotations

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
    ranges: list[tuple[int, int]] = field(default_factory=list)  # [start, end) on the wire
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

    def _lose(self, outcome: str, ts: int, frame: int) -> None:
        self.outcomes[outcome] += 1
        self.lost.append(LostFragment(outcome, ts, frame))

    def _drop(self, key: tuple, outcome: str) -> None:
        tr = self.trackers.pop(key)
        for ts, frame in tr.frames:
            self._lose(outcome, ts, frame)

    def _expire(self, now: int) -> None:
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
        for i in rows.tolist():
            now = int(raw.ts_ns[i])
            self._expire(now)
            ver = int(pb.ip_version[i])
            key = (ver, int(pb.src_hi[i]), int(pb.src_lo[i]), int(pb.dst_hi[i]), int(pb.dst_lo[i]),
                   int(pb.frag_id[i]), int(pb.frag_nh[i]))
            tr = self.trackers.get(key)
            if tr is None:
                if len(self.trackers) >= self.max_trackers:
                    oldest = min(self.trackers, key=lambda k: self.trackers[k].last_ts)
                    self._drop(oldest, "fragment-expired")
                tr = self.trackers[key] = _Tracker(vlan=int(pb.vlan[i]), vlan2=int(pb.vlan2[i]))
            off = int(pb.frag_off[i])
            data_off = int(pb.frag_data_off[i])
            l3 = int(pb.l3_off[i])
            wire_len = self._wire_data_len(pb, i)
            cap_end = int(pb.ip_end[i])
            end = off + wire_len
            more = bool(pb.frag_more[i])
            outcome = None
            if wire_len <= 0:
                outcome = "fragment-invalid"
            elif any(off < b and end > a for a, b in tr.ranges):
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
                self._lose(outcome, now, int(raw.frame_no[i]))
                tr.last_ts = now
                if not tr.frames:
                    del self.trackers[key]
                continue
            tr.frames.append((now, int(raw.frame_no[i])))
            tr.last_ts = now
            tr.wire_bytes += int(raw.wirelen[i])
            tr.cut = tr.cut or bool(raw.caplen[i] < raw.wirelen[i]) or cap_end - data_off < wire_len
            tr.ranges.append((off, end))
            tr.pieces[off] = bytes(buf[data_off:max(data_off, cap_end)])
            tr.max_end = max(tr.max_end, end)
            if not more:
                tr.total = end
            if off == 0:
                tr.header = self._header(pb, i, buf, l3, data_off)
            if tr.total < 0 or tr.header is None or not _covers(tr.ranges, tr.total):
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
            done_meta.append((now, int(raw.frame_no[i])))
            if key[6] in (1, 58) and tr.total - 8 > PING_OF_DEATH_BYTES and len(payload) >= 1 \
                    and (ver, payload[0]) not in ICMP_REPLY_TYPES:
                self.threats.append(self._threat(
                    2006, pb, i, key, f"reassembled ICMP payload of {tr.total - 8} bytes (ping of death)"))
        if not done_bytes:
            return None
        return self._decode(done_bytes, done_pos, done_wire, done_cut, done_vlan, done_meta)

    @staticmethod
    def _wire_data_len(pb: PacketBatch, i: int) -> int:
        """Fragment data length per the IP header (not the captured length)."""
        return int(pb.ip_wire_end[i] - pb.frag_data_off[i])

    @staticmethod
    def _header(pb: PacketBatch, i: int, buf: np.ndarray, l3: int, data_off: int) -> bytes:
        if int(pb.ip_version[i]) == 4:
            return bytes(buf[l3:data_off])
        return bytes(buf[l3:l3 + 40])

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


def _covers(ranges: list[tuple[int, int]], total: int) -> bool:
    """True when the ranges cover [0, total) without a hole."""
    reach = 0
    for a, b in sorted(ranges):
        if a > reach:
            return False
        reach = max(reach, b)
    return reach >= total


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
