"""Elasticsearch transport: the fast paths (an ASCII string or a one-byte vInt read in one step; messages cut by
Framer.feed, whose whole-chunk path hands them over without push's generator) read every stream as the general
code does: the same strings, offsets and Short for any bytes, and the same events, anomalies and state for
request/response traffic cut anywhere.

The oracles: StreamInput reading unit by unit (Cursor.uvarint, _string_units), and the parser reading through
Framer.push, as it did before."""
from __future__ import annotations

import struct
from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parsertest import Recorder
from nvpcap.protocols import elasticsearch
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.elasticsearch import MESSAGE_LIMIT, ElasticsearchParser, StreamInput
from nvpcap.protocols.framing import Cursor, Short


class GeneralInput(StreamInput):
    """StreamInput without its fast paths."""

    __slots__ = ()

    def uvarint(self) -> int:
        return Cursor.uvarint(self)

    def string(self, cap: int = 1024) -> str:
        units = self.uvarint()
        return self._string_units(units, self.p, cap)


class PushOnly(ElasticsearchParser):
    """The parser reading its messages through Framer.push (before Framer.feed's whole-chunk path)."""

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.lost[side]:
            return
        framer = self.framers[side]
        for msg in framer.push(data, frame, ts_ns):
            self._message(side, msg.data, msg.length, msg.frame, msg.ts_ns)
        if framer.broken:
            self.anomaly_once("elasticsearch-bad-header", "no 'ES' marker or a bad length: framing lost", frame, ts_ns)
            self.lose(side)


def _reads(cls: type[StreamInput], b: bytes, p: int, cap: int) -> list:
    """Strings and vInts read in turn until Short: each value and the offset after it."""
    r = cls(b, p)
    out: list = []
    try:
        for i in range(8):
            out.append((r.string(cap) if i % 2 == 0 else r.uvarint(), r.p))
    except Short:
        out.append(("short", r.p))
    return out


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=60) | st.lists(st.sampled_from([b"\x03", b"abc", b"\xc3\xa9", b"\xe2\x82\xac", b"\x80",
                                                           b"\xff", b"\x81\x01", b"\x00", b"\x7f"]), max_size=20)
       .map(b"".join), st.integers(0, 4), st.integers(0, 8))
@example(b"\x03ab", 0, 1024)
@example(b"\x02\xc3\xa9", 0, 1)
def test_stream_input_reads_as_unit_by_unit(b: bytes, p: int, cap: int) -> None:
    assert _reads(StreamInput, b, p, cap) == _reads(GeneralInput, b, p, cap)


def _string(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return bytes([units]) + data if units < 128 else bytes([0x80 | units & 0x7F, units >> 7]) + data


TEXTS = st.sampled_from(["indices:data/read/search", "internal:transport/handshake", "cluster:monitor/nodes/stats",
                         "Authorization", "Basic dXNlcjpwYXNz", "X-Opaque-Id", "é-ü", "€uro", "", "a" * 200])


@st.composite
def transport_message(draw, rid: int, response: bool) -> bytes:
    """A transport message: header, then (from 7.6.0) the variable header size, thread context, features and
    action; mostly well formed; now and then a ping, a cut string, a bad marker or a message over the limit."""
    version = draw(st.sampled_from([8_000_099, 7_060_099, 7_050_099, 6_020_099]))
    status = (1 if response else 0) | draw(st.sampled_from([0, 0, 2, 4, 8]))
    headers = draw(st.lists(st.tuples(TEXTS, TEXTS), max_size=3))
    var = bytes([len(headers)]) + b"".join(_string(k) + _string(v) for k, v in headers) + b"\x00"
    if not response:
        var += (b"\x00" if version >= 6_030_099 else b"") + _string(draw(TEXTS))
    body = var + draw(st.binary(max_size=30))
    kind = draw(st.integers(0, 25))
    if kind == 0:
        return b"ES\xff\xff\xff\xff"  # a ping
    if kind == 1:
        body = body[: draw(st.integers(0, len(body)))]  # a string cut by the end of the message
    if kind == 2:
        body += b"z" * (MESSAGE_LIMIT + 10)  # read from its first MESSAGE_KEEP bytes
    head = struct.pack(">qBi", rid, status, version)
    if version >= 7_060_099:
        head += struct.pack(">i", len(var))
    msg = b"ES" + struct.pack(">i", len(head) + len(body)) + head + body
    return b"EX" + msg[2:] if kind == 3 else msg


@st.composite
def conversation(draw) -> tuple[bytes, bytes]:
    client, server = [], []
    for rid in range(draw(st.integers(1, 8))):
        client.append(draw(transport_message(rid, False)))
        server.append(draw(transport_message(draw(st.sampled_from([rid, rid, rid + 100])), True)))
    return b"".join(client), b"".join(server)


def _cut(side: int, stream: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [(side, stream[a:b]) for a, b in pairwise([0, *points, len(stream)]) if b > a]


def _read(cls: type[ElasticsearchParser], steps: list[tuple[int, bytes]]) -> tuple:
    rec = Recorder()
    parser = cls(rec, FlowContext("tcp", 40000, 9300, False))
    seen = []
    for frame, (side, data) in enumerate(steps, 1):
        parser.feed(side, data, frame, frame * 10)
        seen.append((len(rec.events), list(rec.anomalies), list(parser.lost),
                     [(bytes(f.buf), f.skip, f.pos, f.broken) for f in parser.framers], list(parser.pending)))
    parser.finish()
    return seen, rec.events, rec.frames, rec.anomalies


@settings(max_examples=300, deadline=None)
@given(conversation(), st.lists(st.integers(0, 200_000), max_size=8), st.lists(st.integers(0, 200_000), max_size=8))
def test_transport_reads_alike_with_and_without_the_fast_paths(streams: tuple[bytes, bytes], cuts_c: list[int],
                                                               cuts_s: list[int]) -> None:
    client, server = streams
    steps = _cut(CLIENT, client, cuts_c) + _cut(SERVER, server, cuts_s)
    fast = _read(ElasticsearchParser, steps)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(elasticsearch, "StreamInput", GeneralInput)
        general = _read(PushOnly, steps)
    assert fast == general


def test_many_small_messages_in_segments_and_byte_by_byte() -> None:
    action = _string("indices:data/write/bulk[s]")
    client = server = b""
    for rid in range(300):
        head = struct.pack(">qBi", rid, 0, 8_000_099) + struct.pack(">i", 3 + len(action))
        body = b"\x00\x00\x00" + action + b"doc"
        client += b"ES" + struct.pack(">i", len(head) + len(body)) + head + body
        reply = struct.pack(">qBi", rid, 1, 8_000_099) + struct.pack(">i", 2) + b"\x00\x00ok"
        server += b"ES" + struct.pack(">i", len(reply)) + reply
    for size in (1448, 1, 50):
        steps = [(CLIENT, client[i : i + size]) for i in range(0, len(client), size)]
        steps += [(SERVER, server[i : i + size]) for i in range(0, len(server), size)]
        fast = _read(ElasticsearchParser, steps)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(elasticsearch, "StreamInput", GeneralInput)
            general = _read(PushOnly, steps)
        assert fast == general
        assert len(fast[1]) == 300 and {e["action"] for e in fast[1]} == {"indices:data/write/bulk[s]"}
