"""The HTTP wire's chunked-body fast path (Wire._chunks: the chunks that lie whole in a segment handed to the
owner without a step of the state loop each) reads every stream as the general states do: the same events,
threats, anomalies, body pieces (each call, not only the joined bytes) and the same wire state after each
segment. And zstd bodies decoded by zstandard's stream writer (one C call per piece of the body) give the same
bytes, status and error after each piece as the decompressobj fed 32 bytes at a time did.

The oracles are the same parser whose wires have the fast path switched off, which is the parser before it,
and the zstd stage before the writer (a flipped byte may be reported in other words)."""
from __future__ import annotations

from itertools import pairwise

import zstandard
from hypothesis import example, given, settings
from hypothesis import strategies as st
from parsertest import Recorder

from nvpcap.protocols import httpbody
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.http import HttpParser, Wire
from nvpcap.protocols.httpbody import ZSTD_WINDOW, BodyDecoder


class GeneralWire(Wire):
    """A wire without the chunked fast path: every chunk goes through W_CHUNK_SIZE, W_CHUNK_DATA, W_CHUNK_END."""

    __slots__ = ()

    def _chunks(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        return pos


class GeneralHttp(HttpParser):
    def __init__(self, out, ctx) -> None:
        super().__init__(out, ctx)
        for wire in self.wires:
            wire.__class__ = GeneralWire


def _wire_state(w: Wire) -> tuple:
    return (w.state, w.remaining, bytes(w.buf), w.scan, w.checked, w.line_start, w.skipped, w.frame, w.ts)


def _seen(rec: Recorder, parser: HttpParser) -> tuple:
    return (len(rec.events), list(rec.threats), list(rec.anomalies), len(rec.contents), parser.done,
            [_wire_state(w) for w in parser.wires])


def _read_both(steps: list[tuple[int, bytes | int]]) -> tuple[list, list, Recorder, Recorder]:
    """Feed the same (side, bytes) steps to both parsers (an int instead of bytes: that many bytes lost); what
    each had reported after every step."""
    ctx = FlowContext("tcp", 40000, 80, False)
    fast_rec, general_rec = Recorder(), Recorder()
    fast, general = HttpParser(fast_rec, ctx), GeneralHttp(general_rec, ctx)
    seen_fast, seen_general = [], []
    for frame, (side, data) in enumerate(steps, 1):
        for parser in (fast, general):
            if isinstance(data, int):
                parser.gap(side, data, frame, frame * 10)
            else:
                parser.feed(side, data, frame, frame * 10)
        seen_fast.append(_seen(fast_rec, fast))
        seen_general.append(_seen(general_rec, general))
    fast.finish()
    general.finish()
    return seen_fast, seen_general, fast_rec, general_rec


def _outputs(rec: Recorder) -> tuple:
    return rec.events, rec.frames, rec.threats, rec.anomalies, rec.products, rec.contents


def _cut(side: int, stream: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [(side, stream[a:b]) for a, b in pairwise(bounds) if b > a]


SIZE_LINE = st.sampled_from(["{:x}", "{:X}", "0{:x}", "{:x};ext=1", "{:x} ", "{:x}\t;q=\"a\"", "{:x} ;x"])
CRLF = st.sampled_from([b"\r\n"] * 6 + [b"\n"])


@st.composite
def chunk(draw) -> bytes:
    """One chunk: mostly well formed; now and then a bad size line, a negative size or no CRLF after the data."""
    data = draw(st.binary(max_size=300))
    kind = draw(st.integers(0, 30))
    if kind == 0:
        return b"zz\r\n" + data + b"\r\n"  # not hexadecimal
    if kind == 1:
        return b"80000001\r\n" + data  # bit 31 set: the rest is body
    if kind == 2:
        return b"%x\r\n" % len(data) + data + b"xy"  # no CRLF after the data
    if kind == 3:
        return b"%x\r\n" % (len(data) + 5) + data  # longer than what follows
    line = draw(SIZE_LINE).format(len(data)).encode()
    return line + draw(CRLF) + data + draw(CRLF)


@st.composite
def message(draw, side: int) -> bytes:
    """A request (CLIENT) or response (SERVER) with a chunked body, sometimes a plain one or a trailer."""
    chunks = b"".join(draw(st.lists(chunk(), max_size=8)))
    last = draw(st.sampled_from([b"0\r\n\r\n", b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"0\n\n", b""]))
    extra = draw(st.sampled_from([b"", b"Content-Type: application/json\r\n", b"Content-Encoding: gzip\r\n",
                                  b"Content-Type: application/xml\r\n"]))
    if side == CLIENT:
        head = b"POST /up HTTP/1.1\r\nHost: a\r\n" + extra + b"Transfer-Encoding: chunked\r\n\r\n"
    else:
        head = b"HTTP/1.1 200 OK\r\n" + extra + b"Transfer-Encoding: chunked\r\n\r\n"
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=40))
        head = head.replace(b"Transfer-Encoding: chunked", b"Content-Length: %d" % len(body))
        return head + body
    return head + chunks + last


@st.composite
def exchange(draw) -> list[tuple[int, bytes | int]]:
    """Pipelined requests and responses, each side cut at random points, the pieces interleaved; now and then
    bytes lost (a gap)."""
    steps: list[tuple[int, bytes]] = []
    for _ in range(draw(st.integers(1, 3))):
        for side in (CLIENT, SERVER):
            stream = b"".join(draw(st.lists(message(side), min_size=1, max_size=3)))
            if draw(st.integers(0, 5)) == 0:
                stream = stream[: draw(st.integers(0, len(stream)))]  # truncated
            steps += _cut(side, stream, draw(st.lists(st.integers(0, 5000), max_size=10)))
            if draw(st.integers(0, 7)) == 0:
                steps.append((side, draw(st.integers(1, 400))))  # bytes lost, then the stream goes on
    return steps


RESPONSE = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (n, b"x" * n) for n in (1, 16, 255, 64, 0x41)) + b"0\r\n\r\n")


@settings(max_examples=400, deadline=None)
@given(exchange())
@example([(CLIENT, b"GET / HTTP/1.1\r\n\r\n"), (SERVER, RESPONSE)])
@example([(CLIENT, b"GET / HTTP/1.1\r\n\r\n"), (SERVER, RESPONSE[:60]), (SERVER, RESPONSE[60:])])
@example([(CLIENT, b"GET / HTTP/1.1\r\n\r\n"), (SERVER, RESPONSE[:47] + b"3\r\nabc\r"), (SERVER, b"\n0\r\n\r\n")])
def test_fast_and_general_paths_read_alike(steps: list[tuple[int, bytes | int]]) -> None:
    seen_fast, seen_general, fast_rec, general_rec = _read_both(steps)
    assert seen_fast == seen_general
    assert _outputs(fast_rec) == _outputs(general_rec)


def _segments(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def test_a_long_chunked_body_in_segments_and_byte_by_byte() -> None:
    """Small chunks of a streamed response (server-sent events), in TCP-sized segments and one byte at a time."""
    events = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in (b"data: {\"n\": %d}\n\n" % i for i in range(300)))
    stream = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + events + b"0\r\n\r\n"
    for size in (1448, 1, 7):
        steps = [(CLIENT, b"GET /events HTTP/1.1\r\nHost: a\r\n\r\n")] + [(SERVER, s) for s in _segments(stream, size)]
        seen_fast, seen_general, fast_rec, general_rec = _read_both(steps)
        assert seen_fast == seen_general
        assert _outputs(fast_rec) == _outputs(general_rec)
        assert len(fast_rec.events) == 1 and fast_rec.events[0]["response_body_len"] == len(
            fast_rec.joined("body", SERVER)) == sum(len(b"data: {\"n\": %d}\n\n" % i) for i in range(300))


# ---- zstd bodies: decoded through zstandard's stream writer, one C call per piece of the body ----


class SlicedZstd:
    """The zstd stage before the writer (the oracle): decompressobj fed 32 bytes at a time, a new
    one per frame."""

    def __init__(self) -> None:
        self.d = None

    def steps(self, data: bytes, room: int):
        pos = 0
        while room >= 0 and pos < len(data):
            if self.d is None:
                self.d = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW).decompressobj()
            piece = data[pos : pos + 32]
            pos += len(piece)
            try:
                out = self.d.decompress(piece)
            except zstandard.ZstdError as exc:
                raise httpbody._Stop(str(exc)) from None
            room -= len(out)
            if out:
                yield out
            if self.d.eof:
                data, pos, self.d = self.d.unused_data + data[pos:], 0, None


def _decode(stage, pieces: list[bytes], cap: int) -> list[tuple]:
    """The decoded bytes (joined), status and error after each piece of the body."""
    dec = BodyDecoder(["zstd"], cap)
    dec.stages = [stage]
    seen = []
    for piece in pieces:
        out = b"".join(dec.feed(piece))
        seen.append((out, dec.status, dec.error, dec.stopped(httpbody.OK)))
    return seen


@st.composite
def zstd_body(draw) -> tuple[bytes, bool]:
    """One to three zstd frames of text, random bytes or zeros (a bomb); now and then cut, with a flipped byte,
    garbage after the last frame, or a frame whose window is over ZSTD_WINDOW. With: whether a byte was flipped."""
    frames = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 3))
        size = draw(st.integers(0, 200_000))
        content = (b"\0" * size if kind == 0 else draw(st.binary(min_size=0, max_size=3000)) if kind == 1
                   else b"".join(b'{"n": %d}, ' % i for i in range(size // 10)))
        params = zstandard.ZstdCompressionParameters.from_level(
            3, window_log=24 if draw(st.integers(0, 15)) == 0 else 17, write_checksum=draw(st.booleans()))
        frames.append(zstandard.ZstdCompressor(compression_params=params).compress(content))
    body = bytearray(b"".join(frames))
    fault = draw(st.integers(0, 8))
    if fault == 0 and body:
        body[draw(st.integers(0, len(body) - 1))] ^= 0xFF
    elif fault == 1:
        body += draw(st.sampled_from([b"garbage!", b"\x28\xb5\x2f", b"\0"]))
    elif fault == 2:
        del body[draw(st.integers(0, len(body))) :]
    return bytes(body), fault == 0


@settings(max_examples=300, deadline=None)
@given(zstd_body(), st.lists(st.integers(0, 100_000), max_size=10), st.sampled_from([httpbody.MAX_DECODED, 50_000,
                                                                                     1_000, 1]))
def test_zstd_writer_decodes_as_the_sliced_decompressobj(body: tuple[bytes, bool], cuts: list[int], cap: int) -> None:
    """The same bytes, status and message after each piece; a frame with a flipped byte may be found corrupt in
    other words, or where the sliced decoder would still have reached the cap first: there the bytes agree as far
    as both go, and both stop or neither does."""
    data, flipped = body
    pieces = [piece for _, piece in _cut(SERVER, data, cuts)]
    new, old = _decode(httpbody._Zstd(), pieces, cap), _decode(SlicedZstd(), pieces, cap)
    if not flipped:
        assert new == old
        return
    new_bytes, old_bytes = b"".join(s[0] for s in new), b"".join(s[0] for s in old)
    n = min(len(new_bytes), len(old_bytes))
    assert new_bytes[:n] == old_bytes[:n]
    assert (new[-1][1] == httpbody.OK) == (old[-1][1] == httpbody.OK)


def test_a_zstd_bomb_stops_one_piece_past_the_cap() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))  # 64 MiB of zeros in a few KiB
    stage = httpbody._Zstd()
    pieces = stage.steps(bomb, httpbody.MAX_DECODED)
    assert sum(map(len, pieces)) <= httpbody.MAX_DECODED + httpbody.ZSTD_PIECE and max(map(len, pieces)) <= (
        httpbody.ZSTD_PIECE)
    assert stage.full and stage.steps(b"more", 10) == []
