"""One input's records as a *part*: what a worker (another process, or a Dask worker on another machine) hands
back to the parent, which replays it into the user's sink.

A part is a log of the sink calls `analyze_file()` made, in order, so the parent's sink sees exactly the
calls a serial run would have made (the same blocks of flows, the same lists of events, interleaved the same
way): the records, their order and the sink's output are those of a serial run.

Layout: a magic line, then frames of `tag (1 byte) | length (8 bytes, little endian) | payload`:
- `F`: a block of flows, an Arrow IPC stream (polars writes and reads it without conversion, every dtype kept);
- `E`: a list of event records, pickled (protocol 5). Events are plain dicts made by nvpcap itself; pickle
  keeps every value's type (tuples, bytes, int keys), which JSON would not. Parts are only ever read by the
  process that asked for them, never from an untrusted source.
"""
from __future__ import annotations

import io
import pickle
import struct
from typing import BinaryIO

import polars as pl

from .base import Sink

MAGIC = b"NVPCAP-PART 1\n"
_HEAD = struct.Struct("<cQ")
FLOWS, EVENTS = b"F", b"E"


class PartWriter(Sink):
    """A sink that records every call into `stream` (a file opened "wb", or a BytesIO)."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.stream.write(MAGIC)
        self.flows = 0
        self.events = 0

    def _frame(self, tag: bytes, payload: bytes | memoryview) -> None:
        self.stream.write(_HEAD.pack(tag, len(payload)))
        self.stream.write(payload)

    def write_flows(self, flows: pl.DataFrame) -> None:
        buf = io.BytesIO()
        flows.write_ipc_stream(buf, compression="uncompressed")
        self._frame(FLOWS, buf.getbuffer())
        self.flows += len(flows)

    def write_events(self, events: list[dict]) -> None:
        self._frame(EVENTS, pickle.dumps(events, protocol=5))
        self.events += len(events)

    def close(self, run_summary: dict | None = None) -> None:
        self.stream.flush()


def replay(stream: BinaryIO, sink: Sink) -> tuple[int, int]:
    """Feed a part's calls, in order, into `sink`; one block in memory at a time. Returns (flows, events)."""
    if stream.read(len(MAGIC)) != MAGIC:
        raise ValueError("not an nvpcap part (bad magic)")
    flows = events = 0
    while True:
        head = stream.read(_HEAD.size)
        if not head:
            return flows, events
        if len(head) != _HEAD.size:
            raise ValueError("nvpcap part is truncated")
        tag, length = _HEAD.unpack(head)
        payload = stream.read(length)
        if len(payload) != length:
            raise ValueError("nvpcap part is truncated")
        if tag == FLOWS:
            frame = pl.read_ipc_stream(io.BytesIO(payload))
            flows += len(frame)
            sink.write_flows(frame)
        elif tag == EVENTS:
            block = pickle.loads(payload)
            events += len(block)
            sink.write_events(block)
        else:
            raise ValueError(f"nvpcap part has an unknown frame {tag!r}")


def replay_bytes(data: bytes, sink: Sink) -> tuple[int, int]:
    return replay(io.BytesIO(data), sink)
