"""memcached's text protocol: the line reader's fast path (LineReader._whole: the lines and data blocks that lie
whole in a segment, cut straight from it) reads every stream as the general loop does (through the line
buffer): the same lines with the same frames, the same blocks skipped, the same state after each segment; and
the parser's events and anomalies for get/set/multi-get/stats/meta traffic cut anywhere.

The oracle is the same reader with _whole switched off (it hands every line to the general loop)."""
from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parsertest import Recorder
from nvpcap.protocols import memcached
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.memcached import LineReader, MemcachedParser


class GeneralOnly(LineReader):
    __slots__ = ()

    def _whole(self, data: bytes, i: int, frame: int, ts_ns: int, on_line) -> int:
        return i


def _no_fast_path(reader: LineReader, data: bytes, i: int, frame: int, ts_ns: int, on_line) -> int:
    return i


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in pairwise([0, *points, len(stream)]) if b > a]


def _read_lines(reader: LineReader, chunks: list[bytes], blocks: list[int]) -> list:
    """Every on_line call and the reader's state after each chunk; on_line answers with the next of `blocks`
    (a data block length to skip, or -1: stop)."""
    seen: list = []
    answers = iter(blocks)

    def on_line(line: bytes, frame: int, ts_ns: int) -> int:
        seen.append(("line", line, frame, ts_ns))
        return next(answers, 0)

    for frame, chunk in enumerate(chunks, 1):
        going = reader.feed(chunk, frame, frame * 10, on_line)
        seen.append(("state", going, bytes(reader.line), reader.skip, reader.start))
        if not going:
            break
    return seen


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"VALUE k 0 3\r\n", b"xyz"]), max_size=40),
       st.lists(st.integers(0, 2000), max_size=8), st.lists(st.integers(-1, 12), max_size=20), st.integers(1, 12))
@example([b"ab\r\n", b"abc", b"\r\n"], [3], [2, 0], 2)
def test_line_reader_fast_and_general_alike(parts: list[bytes], cuts: list[int], blocks: list[int],
                                            limit: int) -> None:
    chunks = _cut(b"".join(parts), cuts)
    assert _read_lines(LineReader(limit), chunks, blocks) == _read_lines(GeneralOnly(limit), chunks, blocks)


def _value(key: bytes, data: bytes, odd: int) -> bytes:
    if odd == 1:
        return b"VALUE %s 0 x\r\n" % key  # no data length: the answer cannot be followed
    if odd == 2:
        return b"VALUE %s 0 %d 77\r\n%s\r\n" % (key, len(data), data)  # with a CAS unique
    return b"VALUE %s 0 %d\r\n%s\r\n" % (key, len(data), data)


@st.composite
def exchange(draw) -> tuple[bytes, bytes]:
    """A text-protocol conversation: commands and the answers they get, mostly well formed."""
    client, server = [], []
    for n in range(draw(st.integers(1, 10))):
        kind = draw(st.integers(0, 8))
        key = b"key:%d" % n
        data = draw(st.binary(max_size=40))
        if kind <= 1:
            keys = [b"key:%d" % i for i in range(draw(st.integers(1, 6)))]
            client.append(b"get " + b" ".join(keys) + b"\r\n")
            server.append(b"".join(_value(k, draw(st.binary(max_size=30)), draw(st.integers(0, 12))) for k in keys)
                          + b"END\r\n")
        elif kind == 2:
            client.append(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(data), data))
            server.append(draw(st.sampled_from([b"STORED\r\n", b"NOT_STORED\r\n", b"SERVER_ERROR out of memory\r\n"])))
        elif kind == 3:
            client.append(b"set %s 0 0 %d noreply\r\n%s\r\n" % (key, len(data), data))
        elif kind == 4:
            client.append(b"stats\r\n")
            server.append(b"".join(b"STAT s%d %d\r\n" % (i, i) for i in range(draw(st.integers(0, 30)))) + b"END\r\n")
        elif kind == 5:
            client.append(b"mg %s v q\r\nmn\r\n" % key)
            server.append(draw(st.sampled_from([b"VA %d\r\n%s\r\nMN\r\n" % (len(data), data), b"MN\r\n"])))
        elif kind == 6:
            client.append(b"ms %s %d\r\n%s\r\n" % (key, len(data), data))
            server.append(b"HD\r\n")
        elif kind == 7:
            client.append(draw(st.sampled_from([b"version\r\n", b"incr n 1\n", b"\r\n", b"delete k\r\n"])))
            server.append(draw(st.sampled_from([b"VERSION 1.6.21\r\n", b"2\n", b"ERROR\r\n", b"DELETED\r\n"])))
        else:
            client.append(b"get " + b"k" * draw(st.integers(1, 300)) + b"\r\n")  # a long line
            server.append(b"END\r\n")
    return b"".join(client), b"".join(server)


def _read(steps: list[tuple[int, bytes]]) -> tuple:
    rec = Recorder()
    parser = MemcachedParser(rec, FlowContext("tcp", 40000, 11211, False))
    seen = []
    for frame, (side, data) in enumerate(steps, 1):
        if parser.done:
            break
        parser.feed(side, data, frame, frame * 10)
        readers = parser.proto.readers if isinstance(parser.proto, memcached.TextProtocol) else ()
        seen.append((len(rec.events), list(rec.anomalies), parser.done,
                     [(bytes(r.line), r.skip, r.start) for r in readers]))
    parser.finish()
    return seen, rec.events, rec.frames, rec.anomalies


@settings(max_examples=300, deadline=None)
@given(exchange(), st.lists(st.integers(0, 3000), max_size=8), st.lists(st.integers(0, 3000), max_size=8),
       st.booleans())
def test_text_protocol_reads_alike_with_and_without_the_fast_path(conversation: tuple[bytes, bytes],
                                                                  cuts_c: list[int], cuts_s: list[int],
                                                                  answers_first: bool) -> None:
    client, server = conversation
    steps = [(CLIENT, c) for c in _cut(client, cuts_c)]
    replies = [(SERVER, s) for s in _cut(server, cuts_s)]
    steps = steps[:1] + replies + steps[1:] if answers_first else steps + replies
    fast = _read(steps)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LineReader, "_whole", _no_fast_path)
        general = _read(steps)
    assert fast == general


def test_a_large_multi_get_reply_in_segments_and_byte_by_byte() -> None:
    keys = [b"counter:%d" % i for i in range(400)]
    reply = b"".join(b"VALUE %s 0 %d\r\n%d\r\n" % (k, len(str(i)), i) for i, k in enumerate(keys)) + b"END\r\n"
    request = b"get " + b" ".join(keys) + b"\r\n"
    for size in (1448, 1, 13):
        steps = [(CLIENT, request)] + [(SERVER, reply[i : i + size]) for i in range(0, len(reply), size)]
        fast = _read(steps)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(LineReader, "_whole", _no_fast_path)
            general = _read(steps)
        assert fast == general
        assert fast[1][0]["hits"] == 400 and fast[1][0]["key_count"] == 400
