"""AmqpParser's fast paths must read every stream as its general path does: the same events, anomalies and
content, whatever the frames and wherever the stream is cut.

Fast paths: method arguments and content-header properties read inline from split-once layouts
(read_arguments, read_properties) instead of a Reader call per field, and frames handed over by Framer.feed
instead of its push generator. The oracle is the same parser with all three switched off, which is the parser
before them: parse_arguments / content_properties (kept here) for every frame, framer.push per chunk."""
from __future__ import annotations

import struct
from itertools import pairwise

from hypothesis import example, given, settings
from hypothesis import strategies as st
from parsertest import Recorder

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.framing import Framer, Short
from nvpcap.protocols.rabbitmq import (
    FRAME_KEEP,
    FRAME_LIMIT,
    KEPT_PROPERTIES,
    LAYOUTS,
    PROPERTIES,
    SPEC_METHODS,
    AmqpParser,
    Reader,
    _frame_length,
    read_arguments,
    read_properties,
)


def parse_arguments(layout: str, payload: bytes) -> dict:
    """The oracle of read_arguments (the parser's reader before it): a Reader call per field of the layout as
    written; a cut payload gives those read before the cut."""
    out: dict = {}
    r = Reader(payload)
    try:
        for token in layout.split():
            kind, _, name = token.partition(":")
            value = r.field(kind)
            if name:
                out[name] = value
    except Short:
        pass
    return out


def content_properties(payload: bytes) -> dict:
    """The oracle of read_properties (the parser's reader before it): class, weight, body size, flags, then the
    flagged properties, a Reader call each."""
    r = Reader(payload)
    out: dict = {}
    try:
        r.take(4)
        out["body_size"] = r.field("L")
        flags = r.field("s")
        for i, (name, kind) in enumerate(PROPERTIES):
            if flags & (0x8000 >> i):
                value = r.field(kind)
                if name in KEPT_PROPERTIES:
                    out[name] = value
    except Short:
        pass
    return out


class GeneralOnly(AmqpParser):
    """The parser without its fast paths."""

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        """AmqpParser.feed as it was: the protocol header, then every frame through framer.push."""
        framer = self.framers[side]
        if framer is None:
            held = self.held[side]
            if not held:
                self.where[side] = (frame, ts_ns)
            held += data
            if held[:1] == b"A":
                if len(held) < 8:
                    return
                self._header(bytes(held[:8]), *self.where[side])
                if self.done:
                    return
                data = bytes(held[8:])
            else:
                data = bytes(held)
            self.held[side] = bytearray()
            framer = self.framers[side] = Framer(7, _frame_length, FRAME_LIMIT, FRAME_KEEP)
        for msg in framer.push(data, frame, ts_ns):
            self._frame(side, msg.data, msg.truncated, msg.frame, msg.ts_ns)
            if framer.broken:
                break
        if framer.broken:
            self.lose(side)

    @staticmethod
    def _arguments(ids: tuple[int, int], args: bytes) -> dict:
        return parse_arguments(SPEC_METHODS[ids][1], args)

    @staticmethod
    def _properties(payload: bytes) -> dict:
        return content_properties(payload)


# ---------------------------------------------------------------- encoders of AMQP 0-9-1 domains (spec §4.2.5)

TEXT = st.binary(max_size=12)


@st.composite
def arguments(draw, layout: str) -> bytes:
    """A method's arguments for its layout, each field well formed; consecutive bits share an octet."""
    out, bits, octet = b"", 0, 0
    for token in layout.split():
        kind = token.partition(":")[0]
        if kind == "b":
            octet |= draw(st.booleans()) << bits
            bits += 1
            continue
        if bits:
            out, bits, octet = out + bytes([octet]), 0, 0
        if kind in "osLl":
            size = {"o": 1, "s": 2, "l": 4, "L": 8}[kind]
            out += draw(st.integers(0, (1 << 8 * size) - 1)).to_bytes(size, "big")
        elif kind == "S":
            text = draw(TEXT)
            out += bytes([len(text)]) + text
        else:
            raw = draw(st.binary(max_size=20))
            out += struct.pack(">I", len(raw)) + raw
    return out + (bytes([octet]) if bits else b"")


@st.composite
def content_header(draw) -> bytes:
    """Class, weight, body size, property flags and the flagged properties (§4.2.6)."""
    flags = sum(0x8000 >> i for i in draw(st.sets(st.integers(0, 15), max_size=5)))  # a few properties, or none
    props = b""
    for i, (_, kind) in enumerate(PROPERTIES):
        if flags & (0x8000 >> i):
            props += draw(arguments(kind))
    return struct.pack(">HHQH", 60, 0, draw(st.integers(0, 1 << 40)), flags) + props


def frame(kind: int, channel: int, payload: bytes, end: int = 0xCE) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + bytes([end])


CHANNEL = st.integers(0, 3)
IDS = st.sampled_from(sorted(SPEC_METHODS))


@st.composite
def amqp_frame(draw) -> bytes:
    """Mostly well-formed frames; now and then a cut field, a bad frame end, an unknown type or method."""
    what = draw(st.sampled_from(["method"] * 5 + ["header"] * 3 + ["body", "heartbeat", "cut", "odd"]))
    channel = draw(CHANNEL)
    if what == "method":
        ids = draw(IDS)
        return frame(1, channel, struct.pack(">HH", *ids) + draw(arguments(SPEC_METHODS[ids][1])))
    if what == "header":
        return frame(2, channel, draw(content_header()))
    if what == "body":
        return frame(3, channel, draw(st.binary(max_size=30)))
    if what == "heartbeat":
        return frame(8, 0, b"")
    if what == "cut":  # a method or content header whose payload ends inside a field
        payload = struct.pack(">HH", *draw(IDS)) + draw(st.binary(max_size=40)) if draw(st.booleans()) \
            else draw(content_header())
        return frame(draw(st.sampled_from([1, 2])), channel, payload[: draw(st.integers(0, len(payload)))])
    return draw(st.sampled_from([frame(1, channel, b"\x00\x3c\x00\x3f" + b"x"), frame(1, channel, b"\x00\x3c"),
                                 frame(5, channel, b"abc"), frame(3, channel, b"zz", end=0x00),
                                 frame(1, channel, b"\x00\x3c\x00\x3c" + b"\x04ctag" + b"\x00" * 3)]))


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in pairwise([0, *points, len(stream)]) if b > a]


def _run(parser_cls, steps: list[tuple[int, bytes]]) -> tuple:
    rec = Recorder()
    parser = parser_cls(rec, FlowContext("tcp", 40000, 5672, False))
    for i, (side, data) in enumerate(steps):
        if parser.done:
            break
        parser.feed(side, data, i + 1, i * 10)
    done = parser.done
    parser.finish()
    return rec.events, rec.frames, rec.anomalies, rec.threats, rec.products, rec.contents, done


# ---------------------------------------------------------------- the readers alone


@settings(max_examples=300, deadline=None)
@given(IDS, st.data())
def test_read_arguments_reads_what_parse_arguments_reads(ids: tuple[int, int], data) -> None:
    layout = SPEC_METHODS[ids][1]
    whole = data.draw(arguments(layout))
    assert read_arguments(LAYOUTS[ids][1], whole) == parse_arguments(layout, whole)
    cut = whole[: data.draw(st.integers(0, len(whole)))] + data.draw(st.binary(max_size=3))
    assert read_arguments(LAYOUTS[ids][1], cut) == parse_arguments(layout, cut)


@settings(max_examples=300, deadline=None)
@given(content_header(), st.integers(0, 200), st.binary(max_size=3))
def test_read_properties_reads_what_content_properties_reads(header: bytes, keep: int, extra: bytes) -> None:
    assert read_properties(header) == content_properties(header)
    cut = header[:keep] + extra
    assert read_properties(cut) == content_properties(cut)


# ---------------------------------------------------------------- whole streams, cut anywhere


@settings(max_examples=300, deadline=None)
@given(st.lists(amqp_frame(), max_size=12), st.lists(amqp_frame(), max_size=12), st.booleans(),
       st.lists(st.integers(0, 5000), max_size=8), st.lists(st.integers(0, 5000), max_size=8))
@example([frame(1, 1, struct.pack(">HH", 60, 40) + b"\x00\x00\x00\x06orders\x00")],
         [frame(1, 1, struct.pack(">HH", 60, 60) + b"\x04ctag" + b"\x00" * 8 + b"\x00\x00\x06orders"),
          frame(2, 1, struct.pack(">HHQH", 60, 0, 5, 0x8000) + b"\x04text"), frame(3, 1, b"hello")],
         True, [3, 20], [9, 40])
def test_fast_and_general_paths_read_alike(client: list[bytes], server: list[bytes], header: bool,
                                           client_cuts: list[int], server_cuts: list[int]) -> None:
    c = (b"AMQP\x00\x00\x09\x01" if header else b"") + b"".join(client)
    s = b"".join(server)
    cs, ss = _cut(c, client_cuts), _cut(s, server_cuts)
    steps = []
    for i in range(max(len(cs), len(ss))):  # the two sides interleaved, chunk by chunk
        steps += [(CLIENT, cs[i])] if i < len(cs) else []
        steps += [(SERVER, ss[i])] if i < len(ss) else []
    assert _run(AmqpParser, steps) == _run(GeneralOnly, steps)


def test_bulk_deliveries_in_tcp_segments_read_alike() -> None:
    """Many deliveries (method, content header, body) in 1448-byte pieces, and byte by byte."""
    deliver = b"".join(frame(1, 1, struct.pack(">HH", 60, 60) + b"\x04ctag" + struct.pack(">Q", i) + b"\x00"
                             + b"\x00\x06orders") + frame(2, 1, struct.pack(">HHQH", 60, 0, 200, 0x9000) + b"\x04json"
                                                          + b"\x02\x01")
                       + frame(3, 1, b"x" * 200) for i in range(300))
    for size in (1448, 1):
        steps = [(CLIENT, b"AMQP\x00\x00\x09\x01")] + [(SERVER, deliver[i : i + size])
                                                        for i in range(0, len(deliver), size)]
        fast = _run(AmqpParser, steps)
        assert fast == _run(GeneralOnly, steps)
        assert len(fast[0]) == 300 and fast[0][0]["content_type"] == "json" and fast[0][0]["body_size"] == 200


def test_frames_longer_than_the_limit_read_alike() -> None:
    """Frames over FRAME_LIMIT come as their first FRAME_KEEP bytes (truncated): a long body, and a method frame
    whose arguments run past what is kept."""
    publish = frame(1, 1, struct.pack(">HH", 60, 40) + b"\x00\x00\x00\x06orders\x00")
    header = frame(2, 1, struct.pack(">HHQH", 60, 0, 100_000, 0x8000) + b"\x04json")
    long_method = frame(1, 2, struct.pack(">HH", 50, 10) + b"\x00\x00" + b"\xff" + b"q" * FRAME_LIMIT)
    stream = (publish + header + frame(3, 1, b"b" * 100_000)) * 3 + long_method + publish + header
    steps = [(CLIENT, b"AMQP\x00\x00\x09\x01")] + [(CLIENT, stream[i : i + 1448]) for i in range(0, len(stream), 1448)]
    fast = _run(AmqpParser, steps)
    assert fast == _run(GeneralOnly, steps)
    assert [e["method"] for e in fast[0]] == ["Basic.Publish"] * 3 + ["Queue.Declare", "Basic.Publish"]
