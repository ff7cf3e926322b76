"""Http2Parser's fast paths must read every connection as its general path does. hpack_fast (the common field
representations decoded on hpack's own header table, without its per-field logging and copies) must decode
every header block as hpack does: the same header list, the same dynamic table after the block, the same
error type. Frame headers and gRPC message prefixes read straight from the chunk must give what their buffers
give, wherever the stream is cut.

The oracles are hpack's Decoder.decode alone and the parser with `fast` off, which is the parser before."""
from __future__ import annotations

import struct
from itertools import pairwise

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st
from parsertest import Recorder

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.grpc import GrpcParser
from nvpcap.protocols.http2 import Http2Parser, hpack_fast


class GeneralOnly(Http2Parser):
    """The parser without its fast paths: every header block through hpack, every frame header and gRPC
    message prefix through its buffer."""

    fast = False


class GrpcGeneralOnly(GrpcParser, GeneralOnly):
    pass


NAMES = st.sampled_from([":method", ":path", ":authority", ":status", "content-type", "user-agent", "accept",
                         "cookie", "x-trace-id", "grpc-status", "grpc-message", "te", "date"])
VALUES = st.one_of(st.sampled_from(["GET", "POST", "/", "/index.html", "200", "404", "application/grpc", "*/*",
                                    "example.com", "trailers", "0"]),
                   st.text(max_size=30), st.binary(max_size=30).map(lambda b: b.decode("latin-1")))
FIELD = st.tuples(NAMES, VALUES, st.booleans())  # (name, value, sensitive: never indexed)


@st.composite
def header_block(draw, enc: hpack.Encoder) -> bytes:
    """A block from hpack's encoder (indexed, literal with / without / never indexing, Huffman or not, a size
    update now and then), or one made hostile: cut, with a byte changed, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        enc.header_table_size = draw(st.sampled_from([0, 64, 256, 4096]))
    fields = draw(st.lists(FIELD, max_size=8))
    block = enc.encode([(n.encode(), v.encode(), s) for n, v, s in fields], huffman=draw(st.booleans()))
    how = draw(st.sampled_from(["ok"] * 6 + ["cut", "flip", "random"]))
    if how == "cut" and block:
        block = block[: draw(st.integers(0, len(block) - 1))]
    elif how == "flip" and block:
        at = draw(st.integers(0, len(block) - 1))
        block = block[:at] + bytes([draw(st.integers(0, 255))]) + block[at + 1 :]
    elif how == "random":
        block = draw(st.binary(max_size=24))
    return block


def _table(d: hpack.Decoder) -> tuple:
    t = d.header_table
    return list(t.dynamic_entries), t._current_size, t.maxsize, d.max_allowed_table_size


def _decode(d: hpack.Decoder, block: bytes, fast: bool) -> tuple:
    try:
        headers = hpack_fast(d, block) if fast else None
        if headers is None:
            headers = d.decode(block, raw=True)
        return [(bytes(n), bytes(v)) for n, v in headers], _table(d)
    except Exception as exc:  # noqa: BLE001 - the parser reports the type's name
        return type(exc).__name__, None


@settings(max_examples=400, deadline=None)
@given(st.data(), st.lists(st.sampled_from([None, 0, 100, 4096, 65536]), min_size=12, max_size=12))
def test_fast_decoding_equals_hpack(data, allowed: list) -> None:
    enc = hpack.Encoder()
    fast, general = hpack.Decoder(), hpack.Decoder()
    for limit in allowed:
        if limit is not None:  # a SETTINGS_HEADER_TABLE_SIZE from our side, as the parser applies it
            fast.max_allowed_table_size = general.max_allowed_table_size = limit
        block = data.draw(header_block(enc))
        a, b = _decode(fast, block, True), _decode(general, block, False)
        assert a == b
        if a[1] is None:  # an error: the parser stops reading the flow here
            return


def test_oversized_header_list_falls_back_to_hpack() -> None:
    enc = hpack.Encoder()
    block = enc.encode([("x-big", "v" * 40000), ("x-big2", "w" * 40000)], huffman=False)
    d = hpack.Decoder()
    d.max_header_list_size = 65536
    assert hpack_fast(d, block) is None and _table(d) == _table(hpack.Decoder())  # the table put back
    assert _decode(d, block, True) == ("OversizedHeaderListError", None)


def test_a_failed_block_leaves_the_table_as_it_was() -> None:
    """A literal with incremental indexing, then an index one past the table: hpack raises InvalidTableIndex.
    Were the entry the fast path added left in the table, hpack's second reading would add it again and find
    the index valid."""
    block = b"\x40\x01a\x01b" + bytes([0x80 | 63])
    d = hpack.Decoder()
    assert hpack_fast(d, block) is None and list(d.header_table.dynamic_entries) == []
    assert _decode(d, block, True) == _decode(hpack.Decoder(), block, False) == ("InvalidTableIndex", None)


# ---------------------------------------------------------------- the parser on whole connections


def h2frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", sid) + payload


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2frame(4, 0, 0, b"")


@st.composite
def connection(draw) -> tuple[bytes, bytes]:
    """Requests and responses on odd streams: HEADERS (+ CONTINUATION) and DATA, blocks as header_block."""
    cenc, senc = hpack.Encoder(), hpack.Encoder()
    client, server = PREFACE, h2frame(4, 0, 0, b"")
    for i in range(draw(st.integers(1, 6))):
        sid = 2 * i + 1
        block = draw(header_block(cenc))
        if draw(st.booleans()) and len(block) > 2:  # split over a CONTINUATION frame
            client += h2frame(1, 0, sid, block[:2]) + h2frame(9, 4, sid, block[2:])
        else:
            client += h2frame(1, 4 | draw(st.sampled_from([0, 1])), sid, block)
        client += h2frame(0, 1, sid, draw(st.binary(max_size=20)))
        server += h2frame(1, 4, sid, draw(header_block(senc))) + h2frame(0, 1, sid, draw(st.binary(max_size=20)))
    return client, server


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in pairwise([0, *points, len(stream)]) if b > a]


def _run(parser_cls, steps: list[tuple[int, bytes]]) -> tuple:
    rec = Recorder()
    parser = parser_cls(rec, FlowContext("tcp", 40000, 443, False))
    raised = None  # the app layer turns an exception into a parser-error anomaly and stops the parser
    try:
        for i, (side, data) in enumerate(steps):
            if parser.done:
                break
            parser.feed(side, data, i + 1, i * 10)
        parser.finish()
    except Exception as exc:  # noqa: BLE001 - e.g. int() of a non-ASCII digit status ("²".isdigit() is True)
        raised = type(exc).__name__
    return rec.events, rec.frames, rec.anomalies, rec.threats, rec.products, rec.contents, parser.done, raised


@settings(max_examples=200, deadline=None)
@given(connection(), st.lists(st.integers(0, 3000), max_size=6), st.lists(st.integers(0, 3000), max_size=6),
       st.booleans())
def test_parser_reads_alike_with_and_without_the_fast_path(conn: tuple[bytes, bytes], client_cuts: list[int],
                                                          server_cuts: list[int], grpc: bool) -> None:
    cs, ss = _cut(conn[0], client_cuts), _cut(conn[1], server_cuts)
    steps = []
    for i in range(max(len(cs), len(ss))):
        steps += [(CLIENT, cs[i])] if i < len(cs) else []
        steps += [(SERVER, ss[i])] if i < len(ss) else []
    fast_cls, general_cls = (GrpcParser, GrpcGeneralOnly) if grpc else (Http2Parser, GeneralOnly)
    assert _run(fast_cls, steps) == _run(general_cls, steps)


def test_many_requests_on_one_connection_read_alike() -> None:
    """4000 small requests and responses (the HPACK dynamic table in steady use), in 1448-byte pieces."""
    cenc, senc = hpack.Encoder(), hpack.Encoder()
    client, server = PREFACE, h2frame(4, 0, 0, b"")
    for i in range(4000):
        sid = 2 * i + 1
        client += h2frame(1, 5, sid, cenc.encode([(":method", "GET"), (":scheme", "https"), (":path", f"/item/{i}"),
                                                  (":authority", "example.com"), ("user-agent", "bench/1.0")]))
        server += h2frame(1, 4, sid, senc.encode([(":status", "200"), ("content-type", "application/json")]))
        server += h2frame(0, 1, sid, b"{}")
    steps = [(side, data[i : i + 1448]) for side, data in ((CLIENT, client), (SERVER, server))
             for i in range(0, len(data), 1448)]
    fast = _run(Http2Parser, steps)
    assert fast == _run(GeneralOnly, steps)
    assert len(fast[0]) == 4000 and fast[0][-1]["path"] == "/item/3999" and fast[2] == []
