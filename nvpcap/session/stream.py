"""In-order TCP bytes for one direction of a flow, from segments in capture order.

Retransmitted bytes are dropped (the first copy wins, as in Zeek and NeuVector's assembly), segments that
arrive ahead of a gap are held, and when the held segments pass their bound the gap is given up: the
consumer is told how many bytes are missing and the stream goes on after them. Memory per direction is
bounded by MAX_HELD_SEGMENTS and MAX_HELD_BYTES, whatever the traffic.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

MAX_HELD_SEGMENTS = 32  # segments held ahead of a gap, per direction
MAX_HELD_BYTES = 256 << 10  # bytes held ahead of a gap, per direction
_MOD = 1 << 32
_HALF = 1 << 31
_NOTHING_HELD = MappingProxyType({})


class Chunk(NamedTuple):
    """A piece of the stream in order: bytes, or a gap of `missing` bytes that will never arrive."""

    data: bytes
    missing: int
    frame: int
    ts_ns: int


class TcpReassembler:
    """One direction's byte stream. `add` returns the chunks that the segment makes deliverable."""

    __slots__ = ("delivered", "held", "held_bytes", "missing", "next_seq")

    def __init__(self, start: int = -1) -> None:
        """`start`: the sequence number of the first data byte when the handshake showed it (else the first
        segment that arrives is taken as the start)."""
        self.next_seq = start  # the sequence number that continues what was delivered
        # seq -> (payload, frame, ts_ns), ahead of a gap; a shared empty mapping until the first gap (memory:
        # two reassemblers per TCP flow, and most never hold anything)
        self.held: dict[int, tuple[bytes, int, int]] = _NOTHING_HELD  # type: ignore[assignment]
        self.held_bytes = 0
        self.delivered = 0  # bytes delivered so far
        self.missing = 0  # bytes given up as gaps

    def take(self, seq: int, payload: bytes) -> bool:
        """The common case without a Chunk or a list: when the segment starts exactly where the stream goes on
        and nothing is held, it is delivered as it is (True: the caller uses `payload` itself). False: nothing
        was done; `add` handles the segment (the first one without a start, overlaps, gaps)."""
        if seq != self.next_seq or self.held:
            return False
        n = len(payload)
        self.next_seq = (seq + n) % _MOD
        self.delivered += n
        return True

    def add(self, seq: int, payload: bytes, frame: int, ts_ns: int) -> list[Chunk]:
        if self.next_seq < 0:
            self.next_seq = seq & 0xFFFFFFFF
        offset = (seq - self.next_seq) % _MOD
        if offset >= _HALF:  # starts before what was delivered: keep only the new tail
            overlap = _MOD - offset
            if overlap >= len(payload):
                return []
            payload, seq, offset = payload[overlap:], self.next_seq, 0
        if offset > 0:
            self._hold(seq & 0xFFFFFFFF, payload, frame, ts_ns)
            if len(self.held) > MAX_HELD_SEGMENTS or self.held_bytes > MAX_HELD_BYTES:
                return self._skip_gap()
            return []
        n = len(payload)  # in order: deliver at once (the common case, inlined)
        self.next_seq = (self.next_seq + n) % _MOD
        self.delivered += n
        out = [Chunk(payload, 0, frame, ts_ns)]
        if self.held:
            self._drain(out)
        return out

    def flush(self) -> list[Chunk]:
        """At the end of the flow: whatever is still held is delivered after its gaps."""
        out: list[Chunk] = []
        while self.held:
            out.extend(self._skip_gap())
        return out

    def _hold(self, seq: int, payload: bytes, frame: int, ts_ns: int) -> None:
        old = self.held.get(seq)
        if old is not None and len(old[0]) >= len(payload):
            return
        if old is not None:
            self.held_bytes -= len(old[0])
        if self.held is _NOTHING_HELD:
            self.held = {}
        self.held[seq] = (payload, frame, ts_ns)
        self.held_bytes += len(payload)

    def _deliver(self, payload: bytes, frame: int, ts_ns: int) -> Chunk:
        self.next_seq = (self.next_seq + len(payload)) % _MOD
        self.delivered += len(payload)
        return Chunk(payload, 0, frame, ts_ns)

    def _drain(self, out: list[Chunk]) -> None:
        """Deliver held segments that now continue the stream (trimming what overlaps)."""
        while self.held:
            best = None
            for seq in self.held:
                offset = (seq - self.next_seq) % _MOD
                if offset == 0 or offset >= _HALF:
                    best = seq
                    break
            if best is None:
                return
            payload, frame, ts = self.held.pop(best)
            self.held_bytes -= len(payload)
            overlap = (self.next_seq - best) % _MOD
            if overlap < len(payload):
                out.append(self._deliver(payload[overlap:], frame, ts))

    def _skip_gap(self) -> list[Chunk]:
        """Give up on the gap before the nearest held segment."""
        nearest = min(self.held, key=lambda s: (s - self.next_seq) % _MOD)
        gap = (nearest - self.next_seq) % _MOD
        _, frame, ts = self.held[nearest]
        self.missing += gap
        self.next_seq = nearest
        out = [Chunk(b"", gap, frame, ts)]
        self._drain(out)
        return out
