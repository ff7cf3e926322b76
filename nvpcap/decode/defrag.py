"""IPv4 and IPv6 fragment reassembly, with NeuVector dp's limits and threats.

Trackers are keyed on (src, dst, id, protocol), time out after 10 s of capture time without a new fragment,
and hold at most 64 KiB. Every fragment ends in exactly one outcome counter: reassembled, overlap (discarded;
IPv4 overlaps raise IP.Fragment.Teardrop, 2002), invalid, oversize, expired, or incomplete at end of input.
Completed datagrams are decoded again as raw IP, so flows see them as one packet.

Two paths give the same results (tests/test_defrag_fastpath.py). The general one walks a batch's fragments one
by one in Python. The fast one takes, with numpy, the keys whose fragments in the batch make datagrams that
each cover their range exactly once (in any order), with whole data, close enough in time that no timeout can
strike: their outcome is known without the walk, so their datagrams are cut straight out of the batch buffer
(one gather for all), and one still open at the end of the batch, if it holds a clean prefix, becomes a tracker
holding one piece. Everything else (duplicates, overlaps, gaps, cut fragments, a tracker that is not a clean
prefix, a batch that could evict trackers, a batch with few fragments) takes the general path, and the outputs
of both are put back in capture order.
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
FAST_MIN_ROWS = 48  # fewer fragment rows than this: the general path alone costs less than the fast path's setup
_LONG_RANGE = 64  # bytes: from this mean length on, ranges are copied slice by slice rather than by a byte index
_HELD = 1 << 62  # last_ts of trackers the fast path owns during the general walk: no sweep may end them
_KEY_COLUMNS = ("ip_version", "src_hi", "src_lo", "dst_hi", "dst_lo", "frag_id", "frag_nh")


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
    # held data [start, end) on the wire, sorted by start; adjacent ranges may be one entry (the fast path's)
    starts: list[int] = field(default_factory=list)
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

    def is_open_prefix(self) -> bool:
        """Holds exactly [0, max_end) with its header, end unknown: a fragment at max_end simply extends it."""
        return self.total < 0 and self.header is not None and self.covered == self.max_end


@dataclass
class Reassembled:
    """Datagrams completed in one batch, decoded, and where each belongs in capture order."""

    packets: PacketBatch
    position: np.ndarray  # index (in the input batch) of the fragment that completed each datagram
    wirelen: np.ndarray  # sum of the original lengths of all its fragments
    cut: np.ndarray  # bool: a fragment was cut short by the capture
    vlan: np.ndarray
    vlan2: np.ndarray


class _Fragments:
    """The fragment rows of one batch as numpy columns; row j is the batch's packet pos[j]."""

    def __init__(self, pb: PacketBatch, rows: np.ndarray):
        raw = pb.raw
        self.pos = rows
        self.key = [getattr(pb, name)[rows] for name in _KEY_COLUMNS]
        self.ver, self.nh = self.key[0], self.key[6]
        self.vlan, self.vlan2 = pb.vlan[rows], pb.vlan2[rows]
        self.off, self.data_off, self.l3 = pb.frag_off[rows], pb.frag_data_off[rows], pb.l3_off[rows]
        self.cap_end, self.more = pb.ip_end[rows], pb.frag_more[rows]
        self.wire_len = pb.ip_wire_end[rows] - self.data_off  # fragment data per the IP header
        self.end = self.off + self.wire_len
        self.ts, self.frame = raw.ts_ns[rows], raw.frame_no[rows]
        self.wirelen, self.caplen = raw.wirelen[rows], raw.caplen[rows]

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def key_of(self, j: int) -> tuple:
        return tuple(int(c[j]) for c in self.key)


@dataclass
class _Done:
    """What one batch produced, each with the fragment row it belongs to (outputs are sorted by it)."""

    rows: list[int] = field(default_factory=list)  # fragment row that completed each datagram
    datagrams: list[bytes] = field(default_factory=list)
    wire: list[int] = field(default_factory=list)
    cut: list[bool] = field(default_factory=list)
    vlan: list[int] = field(default_factory=list)
    vlan2: list[int] = field(default_factory=list)
    threats: list[tuple[int, FragmentThreat]] = field(default_factory=list)

    def add(self, j: int, datagram: bytes, tr: _Tracker) -> None:
        self.rows.append(j)
        self.datagrams.append(datagram)
        self.wire.append(tr.wire_bytes)
        self.cut.append(tr.cut)
        self.vlan.append(tr.vlan)
        self.vlan2.append(tr.vlan2)


@dataclass
class _Block:
    """Datagrams laid out in one buffer, in the order of the fragment rows that completed them."""

    buf: np.ndarray  # uint8
    lens: np.ndarray
    rows: np.ndarray
    wire: np.ndarray
    cut: np.ndarray
    vlan: np.ndarray
    vlan2: np.ndarray


@dataclass
class _Plan:
    """The fast path's share of a batch: its rows in key order, cut into "instances" (one datagram's fragments
    each, or the fragments of one still open at the end of the batch).

    `rows` and `by_offset` hold the same fragment rows, instance after instance at the same index ranges: in
    capture order, and by offset within each instance."""

    dirty: np.ndarray  # fragment rows for the general path, ascending
    rows: np.ndarray  # fragment rows, by key then capture order
    by_offset: np.ndarray  # the same, by offset within each instance
    inst_first: np.ndarray  # [instance] -> index of its first row in rows / by_offset
    inst_last: np.ndarray  # [instance] -> index of its last row
    complete: np.ndarray  # [instance] -> bool: its datagram is whole at its last row
    held: dict[int, tuple]  # instance -> key, for instances that extend a tracker held from earlier


class Defragmenter:
    """Reassembly state that lives across the batches of one capture."""

    def __init__(self, timeout_s: float = 10.0, max_trackers: int = 65536, fast_min_rows: int = FAST_MIN_ROWS):
        self.timeout_ns = int(timeout_s * NS)
        self.max_trackers = max_trackers
        self.fast_min_rows = fast_min_rows  # tests set it out of reach to get the general path alone
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
        self._sweep(now)

    def _sweep(self, now: int) -> None:
        old = [k for k, t in self.trackers.items() if now - t.last_ts > self.timeout_ns]
        for k in old:
            self._drop(k, "fragment-expired")

    def _sweep_rows(self, ts: np.ndarray) -> np.ndarray:
        """The fragment rows at which `_expire` sweeps (it depends on times alone), advancing its clock."""
        # The first row at or past the next sweep time is the first whose running maximum time reaches it
        # (the running maximum is sorted even when time goes back), and a row that sweeps is that maximum.
        latest = np.maximum.accumulate(ts)
        nxt = self._next_expiry
        at: list[int] = []
        j = int(np.searchsorted(latest, nxt))
        while j < ts.shape[0]:
            at.append(j)
            nxt = int(ts[j]) + NS
            j = int(np.searchsorted(latest, nxt))
        self._next_expiry = nxt
        return np.array(at, np.int64)

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
        fr = _Fragments(pb, rows)
        sweeps = self._sweep_rows(fr.ts)
        done = _Done()
        plan = None
        # the fast path may not evict: even if every fragment opened a tracker, there must be room
        if len(fr) >= self.fast_min_rows and len(self.trackers) + len(fr) <= self.max_trackers:
            plan = self._plan(fr)
        if plan is None:
            self._walk(pb, fr, np.arange(len(fr)), sweeps, done, {})
            block = None
        else:
            for key in plan.held.values():
                self.trackers[key].last_ts = _HELD
            born: dict[tuple, int] = {}
            self._walk(pb, fr, plan.dirty, sweeps, done, born)
            opened = self._extend_held(pb, fr, plan, done)
            self._reorder(born, opened)
            block = self._assemble(pb, fr, plan, done)
        self.threats.extend(t for _, t in sorted(done.threats, key=lambda jt: jt[0]))
        return _reassembled(fr, done, block)

    # -- the general path ------------------------------------------------------------------------------------
    def _walk(self, pb: PacketBatch, fr: _Fragments, which: np.ndarray, sweeps: np.ndarray, done: _Done,
              born: dict[tuple, int]) -> None:
        """Fragment rows `which` one by one, with the sweeps at rows `sweeps` (the fast path's rows among
        them only sweep). Notes in `born` the row at which each tracker was opened."""
        buf = pb.raw.buf
        n = len(fr)
        if which.shape[0] == n:  # every row (no fast path): no subset to take
            todo, mine = which, [True] * n
            swept = [False] * n
            for j in sweeps.tolist():
                swept[j] = True

            def column(c: np.ndarray) -> list:
                return c.tolist()
        else:
            todo = np.union1d(which, sweeps)
            if todo.shape[0] == 0:
                return
            swept = np.isin(todo, sweeps).tolist()
            mine = np.isin(todo, which).tolist()

            def column(c: np.ndarray) -> list:
                return c[todo].tolist()
        # plain Python lists: indexing numpy arrays one element at a time costs more than all the logic below
        keys = zip(*(column(c) for c in fr.key))
        cols = zip(todo.tolist(), keys, swept, mine, column(fr.ts), column(fr.frame), column(fr.vlan),
                   column(fr.vlan2), column(fr.off), column(fr.data_off), column(fr.l3), column(fr.wire_len),
                   column(fr.cap_end), column(fr.more), column(fr.wirelen), column(fr.caplen))
        trackers, timeout = self.trackers, self.timeout_ns
        for j, key, sweep, own, now, frame, vlan, vlan2, off, data_off, l3, wire_len, cap_end, more, wirelen, \
                caplen in cols:
            if sweep:
                self._sweep(now)
            if not own:
                continue
            ver = key[0]
            tr = trackers.get(key)
            if tr is not None and now - tr.last_ts > timeout:
                self._drop(key, "fragment-expired")  # exact per tracker; the sweep above is per second
                tr = None
            if tr is None:
                if len(trackers) >= self.max_trackers:
                    oldest = min(trackers, key=lambda k: trackers[k].last_ts)
                    self._drop(oldest, "fragment-expired")
                tr = trackers[key] = _Tracker(vlan=vlan, vlan2=vlan2)
                born[key] = j
            end = off + wire_len
            outcome = None
            if wire_len <= 0:
                outcome = "fragment-invalid"
            elif _overlaps(tr.starts, tr.ends, off, end):
                outcome = "fragment-overlap"
                if ver == 4:
                    done.threats.append((j, self._threat(2002, pb, int(fr.pos[j]), key,
                                                         "overlapping IPv4 fragment (teardrop)")))
            elif (more and tr.total >= 0 and end > tr.total) or \
                    (not more and ((tr.total >= 0 and end != tr.total) or end < tr.max_end)):
                outcome = "fragment-invalid"  # past the known end, or a second end, or an end before held data
            elif end > MAX_DATAGRAM:
                outcome = "fragment-oversize"
            if outcome is not None:
                self._lose(outcome, now, frame)
                tr.last_ts = now
                if not tr.frames:
                    del trackers[key]
                continue
            tr.frames.append((now, frame))
            tr.last_ts = now
            tr.wire_bytes += wirelen
            tr.cut = tr.cut or caplen < wirelen or cap_end - data_off < wire_len
            at = bisect.bisect_left(tr.starts, off)
            tr.starts.insert(at, off)
            tr.ends.insert(at, end)
            tr.covered += wire_len
            tr.pieces[off] = bytes(buf[data_off:max(data_off, cap_end)])
            tr.max_end = max(tr.max_end, end)
            if not more:
                tr.total = end
            if off == 0:
                tr.header = _ip_header(buf, ver, l3, data_off)
            if tr.total < 0 or tr.header is None or tr.covered != tr.total:
                continue
            del trackers[key]
            self._complete(pb, fr, j, key, tr, _payload(tr), done)

    def _complete(self, pb: PacketBatch, fr: _Fragments, j: int, key: tuple, tr: _Tracker, payload: bytes,
                  done: _Done) -> None:
        """A tracker's datagram is whole at fragment row j: count it, keep it, judge it (ping of death)."""
        self.outcomes["fragment-reassembled"] += len(tr.frames)
        done.add(j, _rebuild(key[0], tr.header, payload, key[6]), tr)
        if _ping_of_death(key[0], key[6], tr.total, payload[0] if payload else -1):
            done.threats.append((j, self._threat(
                2006, pb, int(fr.pos[j]), key, f"reassembled ICMP payload of {tr.total - 8} bytes (ping of death)")))

    def _threat(self, tid: int, pb: PacketBatch, i: int, key: tuple, msg: str) -> FragmentThreat:
        return FragmentThreat(tid, int(pb.raw.ts_ns[i]), int(pb.raw.frame_no[i]), key[0], key[1], key[2], key[3],
                              key[4], key[6], msg)

    # -- the fast path ---------------------------------------------------------------------------------------
    def _plan(self, fr: _Fragments) -> _Plan | None:
        """Split the batch's fragment rows: keys whose rows the fast path can take whole, and the rest.

        A key is fast when its rows, in capture order, cut into datagrams that each cover [0, end) exactly once
        (in any order; the first may extend a tracker that holds a clean prefix) with whole data, the last
        perhaps still open but a clean prefix, and no sweep or per-tracker check could find an open datagram of
        it idle past the timeout. Such rows are never lost, never overlap and raise no teardrop: their outcome
        is known without the walk."""
        n = len(fr)
        order, k, first, starts, sizes = _by_key(fr)
        last = np.ones(n, np.bool_)
        last[:-1] = first[1:]
        off, end, more = fr.off[order], fr.end[order], fr.more[order] != 0
        wire_len = fr.wire_len[order]
        ok = (wire_len > 0) & (end <= MAX_DATAGRAM) & (fr.cap_end[order] - fr.data_off[order] == wire_len)
        base, held = self._held_prefixes(fr, k, starts, order, ok)
        group_base = np.repeat(base, sizes)
        # A datagram is whole when the bytes received since it began equal the end of the last fragments seen
        # (both summed over the key's datagrams): the next row begins a new one. _cover_once checks the cuts.
        received = _cumsum_by_group(wire_len, starts, sizes) + group_base
        whole = received == _cumsum_by_group(np.where(more, 0, end), starts, sizes)
        new = first.copy()
        new[1:] |= whole[:-1]
        ok &= self._in_time(fr, order, new, last & ~whole)
        covered, by_off, inst_first, complete = _cover_once(off, end, more, new, first, group_base, whole)
        ok &= covered
        good = np.logical_and.reduceat(ok, starts)
        if not good.any():
            return None
        fast = np.repeat(good, sizes)
        f = np.flatnonzero(new[fast])
        held_inst = {}
        if held:  # a held key's first datagram extends its tracker
            fast_groups = np.flatnonzero(good)
            group_of = np.cumsum(first[fast])[f] - 1  # each fast instance's key, among the fast keys
            for i in np.flatnonzero(first[fast][f]).tolist():
                key = held.get(int(fast_groups[group_of[i]]))
                if key is not None:
                    held_inst[i] = key
        return _Plan(dirty=np.sort(order[~fast]), rows=order[fast],
                     by_offset=order[fast] if by_off is None else order[by_off[fast]], inst_first=f,
                     inst_last=np.append(f[1:] - 1, int(fast.sum()) - 1),
                     complete=complete[good[np.cumsum(first)[inst_first] - 1]], held=held_inst)

    def _in_time(self, fr: _Fragments, order: np.ndarray, new: np.ndarray, open_after: np.ndarray) -> np.ndarray:
        """Per row (in key order): no sweep or per-tracker check could find its datagram idle past the timeout
        between the previous row of the datagram and this one, nor after this one to the end of the batch
        when the datagram stays open. A sweep only happens at a fragment row, so the latest fragment time in
        between is what counts."""
        ts, n = fr.ts, len(fr)
        forward = n < 2 or bool((ts[1:] >= ts[:-1]).all())  # then the latest time in a span is at its end
        good = np.ones(n, np.bool_)
        cont = np.flatnonzero(~new)
        if cont.shape[0]:
            before, upto = order[cont - 1], order[cont]
            latest = ts[upto] if forward else _range_max(ts, before + 1, upto)
            good[cont] = latest - ts[before] <= self.timeout_ns
        tail = np.flatnonzero(open_after & (order < n - 1))
        if tail.shape[0]:
            at = order[tail]
            latest = ts[n - 1] if forward else _range_max(ts, at + 1, np.full(tail.shape[0], n - 1))
            good[tail] &= latest - ts[at] <= self.timeout_ns
        return good

    def _held_prefixes(self, fr: _Fragments, k: list[np.ndarray], starts: np.ndarray, order: np.ndarray,
                       ok: np.ndarray) -> tuple[np.ndarray, dict[int, tuple]]:
        """For keys with a tracker: how much it holds (its rows must go on from there), by key group; a key
        whose tracker is not a clean prefix, or could time out before its first row, is marked not ok."""
        base = np.zeros(starts.shape[0], np.int64)
        held: dict[int, tuple] = {}
        if not self.trackers:
            return base, held
        keys = zip(*(c[starts].tolist() for c in k))
        for g, (s, key) in enumerate(zip(starts.tolist(), keys)):
            tr = self.trackers.get(key)
            if tr is None:
                continue
            held[g] = key
            base[g] = tr.max_end
            if not (tr.is_open_prefix() and int(fr.ts[: int(order[s]) + 1].max()) - tr.last_ts <= self.timeout_ns):
                ok[s] = False
        return base, held

    def _extend_held(self, pb: PacketBatch, fr: _Fragments, plan: _Plan, done: _Done) -> dict[tuple, int]:
        """The fast instances that involve a tracker: those that extend one held from earlier (completing it or
        not), and those still open at the end of the batch (a new tracker holding one piece). Returns the new
        trackers' keys with the row that opened them."""
        opened: dict[tuple, int] = {}
        for i in sorted(set(plan.held) | set(np.flatnonzero(~plan.complete).tolist())):
            a, b = int(plan.inst_first[i]), int(plan.inst_last[i]) + 1
            rows, by_offset = plan.rows[a:b], plan.by_offset[a:b]
            key = plan.held.get(i)
            if key is None:
                j = int(rows[0])
                key = fr.key_of(j)
                h = int(by_offset[0])  # the offset-0 fragment
                header = _ip_header(pb.raw.buf, int(fr.ver[h]), int(fr.l3[h]), int(fr.data_off[h]))
                tr = self.trackers[key] = _Tracker(header=header, vlan=int(fr.vlan[j]), vlan2=int(fr.vlan2[j]))
                opened[key] = j
            else:
                tr = self.trackers[key]
            _hold(tr, pb.raw.buf, fr, rows, by_offset)
            if plan.complete[i]:
                tr.total = tr.max_end
                del self.trackers[key]
                self._complete(pb, fr, int(rows[-1]), key, tr, _payload(tr), done)
        return opened

    def _reorder(self, born: dict[tuple, int], opened: dict[tuple, int]) -> None:
        """Trackers opened in this batch in the order of the rows that opened them, as the walk alone would
        have inserted them (the sweeps and finish() go through them in this order)."""
        if not opened:
            return
        new = [(j, key) for key, j in born.items() if key in self.trackers]
        for _, key in sorted(new + [(j, key) for key, j in opened.items()]):
            self.trackers[key] = self.trackers.pop(key)

    def _assemble(self, pb: PacketBatch, fr: _Fragments, plan: _Plan, done: _Done) -> _Block | None:
        """The fast instances that start and complete in this batch, all at once: each datagram's header and
        fragment data gathered from the batch buffer into one buffer, then the header fields patched."""
        complete = plan.complete.copy()
        if plan.held:
            complete[list(plan.held)] = False
        sel = np.flatnonzero(complete)
        if sel.shape[0] == 0:
            return None
        jl = plan.rows[plan.inst_last[sel]]  # the row that completes each datagram
        by_row = np.argsort(jl)
        sel, jl = sel[by_row], jl[by_row]
        f = plan.inst_first[sel]
        jf, jh = plan.rows[f], plan.by_offset[f]  # the row that opened it, the one at offset 0
        count = plan.inst_last[sel] - f + 1
        rows = plan.by_offset[_ranges(f, count)]  # their fragment rows by offset, datagram after datagram
        ver, nh, total = fr.ver[jh], fr.nh[jh], fr.end[plan.by_offset[plan.inst_last[sel]]]
        hlen = np.where(ver == 4, fr.data_off[jh] - fr.l3[jh], 40)
        # segments: each datagram's header, then its fragments' data
        head = np.arange(sel.shape[0]) + np.cumsum(count) - count
        seg_start = np.empty(head.shape[0] + rows.shape[0], np.int64)
        seg_len = np.empty_like(seg_start)
        data = np.ones(seg_start.shape[0], np.bool_)
        data[head] = False
        seg_start[head], seg_len[head] = fr.l3[jh], hlen
        seg_start[data], seg_len[data] = fr.data_off[rows], fr.wire_len[rows]
        out = _gather(pb.raw.buf, seg_start, seg_len)
        lens = hlen + total
        _patch_headers(out, np.cumsum(lens) - lens, ver, nh, hlen, total)
        self.outcomes["fragment-reassembled"] += int(rows.shape[0])
        first_byte = pb.raw.buf[fr.data_off[jh]]
        for j in np.flatnonzero(_ping_of_death_v(ver, nh, total, first_byte)).tolist():
            key = fr.key_of(int(jh[j]))
            done.threats.append((int(jl[j]), self._threat(2006, pb, int(fr.pos[jl[j]]), key,
                                 f"reassembled ICMP payload of {int(total[j]) - 8} bytes (ping of death)")))
        at = np.cumsum(count) - count
        return _Block(buf=out, lens=lens, rows=jl, wire=np.add.reduceat(fr.wirelen[rows], at),
                      cut=np.logical_or.reduceat(fr.caplen[rows] < fr.wirelen[rows], at),
                      vlan=fr.vlan[jf], vlan2=fr.vlan2[jf])


def _reassembled(fr: _Fragments, done: _Done, block: _Block | None) -> Reassembled | None:
    """The batch's datagrams from both paths, in the order of the rows that completed them, decoded."""
    if done.rows:
        lens = np.array([len(d) for d in done.datagrams], np.int64)
        walked = _Block(buf=np.frombuffer(b"".join(done.datagrams), np.uint8), lens=lens,
                        rows=np.array(done.rows, np.int64), wire=np.array(done.wire, np.int64),
                        cut=np.array(done.cut, np.bool_), vlan=np.array(done.vlan, np.int32),
                        vlan2=np.array(done.vlan2, np.int32))
        block = walked if block is None else _merge(block, walked)
    if block is None:
        return None
    offs = np.cumsum(block.lens) - block.lens
    if block.rows.shape[0] > 1 and not bool((block.rows[1:] > block.rows[:-1]).all()):
        order = np.argsort(block.rows, kind="stable")
        buf = _gather(block.buf, offs[order], block.lens[order])
        block = _Block(buf=buf, lens=block.lens[order], rows=block.rows[order], wire=block.wire[order],
                       cut=block.cut[order], vlan=block.vlan[order], vlan2=block.vlan2[order])
        offs = np.cumsum(block.lens) - block.lens
    n = block.rows.shape[0]
    raw = RawBatch(buf=block.buf, data_off=offs, caplen=block.lens, wirelen=block.lens.copy(),
                   ts_ns=fr.ts[block.rows], linktype=np.full(n, LT_RAW, np.int32), iface=np.zeros(n, np.int32),
                   frame_no=fr.frame[block.rows])
    return Reassembled(packets=decode(raw), position=fr.pos[block.rows], wirelen=block.wire.astype(np.int64),
                       cut=block.cut.astype(np.bool_), vlan=block.vlan.astype(np.int32),
                       vlan2=block.vlan2.astype(np.int32))


def _merge(a: _Block, b: _Block) -> _Block:
    """Two blocks as one (b's datagrams after a's)."""
    return _Block(buf=np.concatenate([a.buf, b.buf]), lens=np.concatenate([a.lens, b.lens]),
                  rows=np.concatenate([a.rows, b.rows]), wire=np.concatenate([a.wire, b.wire]),
                  cut=np.concatenate([a.cut, b.cut]), vlan=np.concatenate([a.vlan, b.vlan]),
                  vlan2=np.concatenate([a.vlan2, b.vlan2]))


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Indices of the ranges [starts[k], starts[k] + lens[k]), one after the other (in starts' type)."""
    offs = np.cumsum(lens, dtype=starts.dtype) - lens
    return np.arange(int(lens.sum()), dtype=starts.dtype) + np.repeat(starts - offs, lens)


def _gather(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """buf's ranges [starts[k], starts[k] + lens[k]), one after the other, in a new array."""
    if lens.shape[0] == 0:
        return np.empty(0, np.uint8)
    if int(lens.sum()) >= _LONG_RANGE * lens.shape[0]:  # long ranges: a slice each costs less than a byte index
        return np.concatenate([buf[a:a + n] for a, n in zip(starts.tolist(), lens.tolist())])
    small = np.int32 if buf.shape[0] < 1 << 31 else np.int64  # half the index bytes to write and read
    return buf[_ranges(starts.astype(small), lens.astype(small))]


def _range_max(ts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(ts[lo[k]:hi[k] + 1]) for each k (lo <= hi): the latest time any sweep in that span could see."""
    idx = np.empty(2 * lo.shape[0], np.int64)
    idx[0::2], idx[1::2] = lo, hi + 1
    return np.maximum.reduceat(np.append(ts, ts[0]), idx)[0::2]  # the extra element makes hi + 1 == n valid


def _ip_header(buf: np.ndarray, ver: int, l3: int, data_off: int) -> bytes:
    """The IP header that a datagram keeps from its offset-0 fragment (IPv6: the fixed 40 bytes)."""
    return bytes(buf[l3:data_off]) if ver == 4 else bytes(buf[l3:l3 + 40])


def _hold(tr: _Tracker, buf: np.ndarray, fr: _Fragments, rows: np.ndarray, by_offset: np.ndarray) -> None:
    """Add whole fragment rows (in capture order; by_offset: the same by offset) that together extend what
    `tr` holds without gap or overlap (or start it at 0), as one piece."""
    start, end = int(fr.off[by_offset[0]]), int(fr.end[by_offset[-1]])
    tr.frames.extend(zip(fr.ts[rows].tolist(), fr.frame[rows].tolist()))
    tr.last_ts = int(fr.ts[rows[-1]])
    tr.wire_bytes += int(fr.wirelen[rows].sum())
    tr.cut = tr.cut or bool((fr.caplen[rows] < fr.wirelen[rows]).any())
    if tr.ends and tr.ends[-1] == start:
        tr.ends[-1] = end
    else:
        tr.starts.append(start)
        tr.ends.append(end)
    tr.covered += end - start
    tr.pieces[start] = _gather(buf, fr.data_off[by_offset], fr.wire_len[by_offset]).tobytes()
    tr.max_end = end


def _by_key(fr: _Fragments) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The fragment rows sorted by key then capture order: (order, key columns in that order, first row of
    each key, where each key starts, how many rows it has)."""
    n = len(fr)
    order = np.lexsort(fr.key[::-1])  # lexsort is stable: rows of one key stay in capture order
    k = [c[order] for c in fr.key]
    first = np.ones(n, np.bool_)
    first[1:] = np.logical_or.reduce([c[1:] != c[:-1] for c in k])
    starts = np.flatnonzero(first)
    return order, k, first, starts, np.diff(np.append(starts, n))


def _cover_once(off: np.ndarray, end: np.ndarray, more: np.ndarray, new: np.ndarray, first: np.ndarray,
                base: np.ndarray, whole: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Per row (in key order), whether its datagram ("instance": the rows from a `new` one on) covers its
    range exactly once: by offset, from its base (0, or what its key's tracker holds) without gap or
    overlap, ending with its only last fragment if it is complete (`whole` at its last row), with none if not.
    Also returns the rows by offset within each instance (None: already so), each instance's first row and
    whether it is complete."""
    n = off.shape[0]
    inst_first = np.flatnonzero(new)
    inst_last = np.append(inst_first[1:] - 1, n - 1)
    complete = whole[inst_last]
    by_off = None
    if not bool(((off[1:] > off[:-1]) | new[1:]).all()):  # some datagram arrived out of order
        by_off = np.lexsort((off, np.cumsum(new)))
        off, end, more = off[by_off], end[by_off], more[by_off]
    good = np.empty(n, np.bool_)
    good[1:] = off[1:] == end[:-1]
    good[inst_first] = off[inst_first] == np.where(first[inst_first], base[inst_first], 0)
    final = np.zeros(n, np.bool_)  # where a datagram's last fragment must be: the end of a complete one
    final[inst_last[complete]] = True
    good &= more != final
    if by_off is not None:
        good[by_off] = good.copy()
    return good, by_off, inst_first, complete


def _cumsum_by_group(x: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Running sum of x that starts again at each group (groups: consecutive, beginning at `starts`)."""
    total = np.cumsum(x)
    return total - np.repeat(total[starts] - x[starts], sizes)


def _payload(tr: _Tracker) -> bytes:
    payload = bytearray(tr.total)
    for o, piece in sorted(tr.pieces.items()):
        payload[o:o + len(piece)] = piece[: max(0, tr.total - o)]
    return bytes(payload)


def _patch_headers(out: np.ndarray, at: np.ndarray, ver: np.ndarray, nh: np.ndarray, hlen: np.ndarray,
                   total: np.ndarray) -> None:
    """`_rebuild`'s header changes on datagrams laid out in one buffer (at: where each starts)."""
    v4 = ver == 4
    a4, a6 = at[v4], at[~v4]
    length = np.minimum(hlen[v4] + total[v4], 0xFFFF)
    out[a4 + 2], out[a4 + 3] = length >> 8, length & 0xFF
    out[a4 + 6] = out[a4 + 7] = out[a4 + 10] = out[a4 + 11] = 0  # no more fragments, offset 0, no checksum
    out[a4 + 9] = nh[v4]
    length = np.minimum(total[~v4], 0xFFFF)
    out[a6 + 4], out[a6 + 5] = length >> 8, length & 0xFF
    out[a6 + 6] = nh[~v4]


def _ping_of_death(ver: int, proto: int, total: int, first_byte: int) -> bool:
    """A reassembled ICMP message over 32000 bytes that is not a reply (Ping.Death, 2006)."""
    return proto in (1, 58) and total - 8 > PING_OF_DEATH_BYTES and (ver, first_byte) not in ICMP_REPLY_TYPES


def _ping_of_death_v(ver: np.ndarray, proto: np.ndarray, total: np.ndarray, first_byte: np.ndarray) -> np.ndarray:
    """_ping_of_death for many datagrams at once."""
    reply = np.zeros(ver.shape[0], np.bool_)
    for version, icmp_type in ICMP_REPLY_TYPES:
        reply |= (ver == version) & (first_byte == icmp_type)
    return ((proto == 1) | (proto == 58)) & (total - 8 > PING_OF_DEATH_BYTES) & ~reply


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
