"""RespReader's fast path (elements of an aggregate that keep nothing, read straight from the chunk) must read
every stream as the general line-by-line path does: the same values, the same state after each chunk.

The oracle is the same reader with the fast path switched off, which is the reader before the fast path."""
from __future__ import annotations

from itertools import pairwise
from unittest.mock import patch

from hypothesis import example, given, settings
from hypothesis import strategies as st

from nvpcap.protocols import redis
from nvpcap.protocols.redis import MAX_DEPTH, RespReader


class GeneralOnly(RespReader):
    """The reader without its fast path: every line goes through the line buffer and _line."""

    def _skip_elements(self, data: bytes, i: int) -> int:
        return i


def _state(r: RespReader) -> tuple:
    v = r.value
    value = None if v is None else (v.kind, v.text, v.size, list(v.items), v.frame, v.ts_ns, v.inline)
    return (list(r.stack), r.skip, bytes(r.line), r.keep, r.streamed_blob, r.attribute, r.broken, value)


def _values(values: list) -> list[tuple]:
    return [(v.kind, v.text, v.size, list(v.items), v.frame, v.ts_ns, v.inline) for v in values]


def _read_both(chunks: list[bytes], allow_inline: bool) -> tuple[list, list]:
    """Both readers on the same chunks; the fast path is taken however little of a chunk is left (SKIP_MIN 0)."""
    fast, general = RespReader(allow_inline), GeneralOnly(allow_inline)
    seen_fast, seen_general = [], []
    with patch.object(redis, "SKIP_MIN", 0):
        for frame, chunk in enumerate(chunks, 1):
            seen_fast.append((_values(fast.feed(chunk, frame, frame * 10)), _state(fast)))
            seen_general.append((_values(general.feed(chunk, frame, frame * 10)), _state(general)))
    return seen_fast, seen_general


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds) if b > a]


EOL = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"])
TEXT = st.binary(max_size=12).filter(lambda b: b"\n" not in b)


@st.composite
def resp_value(draw, depth: int = 0) -> bytes:
    """A RESP2/RESP3 value, mostly well formed; now and then a wrong length, a bad header or a stray line."""
    eol = draw(EOL)
    kind = draw(st.sampled_from("+-:_,#($!=*~>%|?" if depth < 4 else "+-:$"))
    if kind in "+-:,(#":
        return kind.encode() + draw(TEXT) + eol
    if kind == "_":
        return b"_" + eol
    if kind in "$!=":
        payload = draw(st.binary(max_size=16))  # may hold CR and LF: a blob is counted, not scanned
        size = draw(st.sampled_from([len(payload)] * 6 + [-1, len(payload) + 1, -2]))
        head = kind.encode() + str(size).encode() + eol
        return head if size < 0 else head + payload + draw(st.sampled_from([b"\r\n", b"\r\n", b"xy"]))
    if kind == "?":  # a line that is no RESP type, or a streamed string/aggregate
        return draw(st.sampled_from([b"garbage" + eol, eol, b"$?" + eol + b";3" + eol + b"abc\r\n;0" + eol,
                                     b"*?" + eol + b":1" + eol + b"." + eol, b"*99999999999999999999999" + eol]))
    n = draw(st.integers(-1, 5))
    per = 2 if kind in "%|" else 1
    items = [draw(resp_value(depth + 1)) for _ in range(max(n, 0) * per)]
    return kind.encode() + str(n).encode() + eol + b"".join(items)


@settings(max_examples=400, deadline=None)
@given(st.lists(resp_value(), min_size=1, max_size=6), st.lists(st.integers(0, 10_000), max_size=8), st.booleans())
@example([b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n*2\r\n:1\r\n$2\r\nab\r\n"], [17, 30], True)
@example([b"*2\r\n*1\r\n*1\r\n:5\r\n+OK\r\n", b"|1\r\n+a\r\n:1\r\n*3\r\n:1\r\n:2\r\n:3\r\n"], [], False)
def test_fast_and_general_paths_read_alike(values: list[bytes], cuts: list[int], allow_inline: bool) -> None:
    stream = b"".join(values)
    fast, general = _read_both(_cut(stream, cuts), allow_inline)
    assert fast == general


def test_a_long_reply_in_one_chunk_and_byte_by_byte() -> None:
    """A COMMAND-like reply: thousands of nested elements, a name and key kept, the rest counted."""
    entry = b"*6\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n*1\r\n+@read\r\n"
    reply = b"*500\r\n" + entry * 500 + b"+PONG\r\n"
    for chunks in ([reply], [reply[i : i + 1] for i in range(len(reply))], _cut(reply, [7, 99, 4096])):
        fast, general = _read_both(chunks, False)
        assert fast == general
        values = [v for vs, _ in fast for v in vs]
        assert [(v[0], v[2], v[3]) for v in values] == [(ord("*"), 500, [None, None]), (ord("+"), -1, [])]


def test_nesting_past_the_limit_breaks_both_alike() -> None:
    stream = b"*1\r\n*2\r\n:1\r\n" + b"*1\r\n" * (MAX_DEPTH + 2) + b":1\r\n"
    fast, general = _read_both([stream], False)
    assert fast == general
    assert fast[-1][1][6] is True  # broken
