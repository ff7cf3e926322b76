"""The HTTP wire's chunked-body fast path (Wire._chunks: the chunks that lie whole in a segment handed to the
owner without a step of the state loop each) reads every stream as the general states do: the same events,
threats, anomalies, body pieces (each call, not only the joined bytes) and the same wire state after each
segment.

The oracle is the same parser whose wires have the fast path switched off, which is the parser before it."""
from __future__ import annotations

from itertools import pairwise

from hypothesis import example, given, settings
from hypothesis import strategies as st

from parsertest import Recorder
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.http import HttpParser, Wire


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

