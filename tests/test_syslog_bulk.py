"""Syslog over TCP: the fast path (SyslogParser._whole: the messages that lie whole in a segment, LF-framed or
octet-counted, cut straight from it) reads every stream as the general buffer path does, with the same events,
anomalies and state after each segment; and the STRUCTURED-DATA pattern ends where the byte-by-byte walk does.

The oracles are the same parser with _whole switched off, and _structured_data_steps."""
from __future__ import annotations

from itertools import pairwise

from hypothesis import example, given, settings
from hypothesis import strategies as st

from parsertest import Recorder
from nvpcap.protocols.base import CLIENT, FlowContext
from nvpcap.protocols.syslog import MAX_FRAME, SyslogParser, _structured_data, _structured_data_steps


class GeneralOnly(SyslogParser):
    """The parser without its fast path: every byte goes through the side's buffer and _frame."""

    def _whole(self, data: bytes, frame: int, ts_ns: int) -> bytes:
        return data


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=40).map(lambda b: b"[" + b)
       | st.lists(st.sampled_from([b"[", b"]", b'"', b"\\", b"a", b"=", b" ", b"\n", b"]["]), max_size=30)
       .map(lambda parts: b"[" + b"".join(parts)))
@example(b'[a x="1\\"]"][b y="]"] msg')
@example(b'[a x="unclosed] msg')
@example(b"[a]\\")
@example(b"[][")
def test_structured_data_pattern_ends_where_the_walk_does(text: bytes) -> None:
    assert _structured_data(text) == _structured_data_steps(text)


RFC5424 = [b'<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf\'su root\' failed',
           b'<165>1 2003-10-11T22:14:15.003Z host app 8710 - [exampleSDID@32473 iut="3" eventSource="App\\"x"] msg',
           b"<13>1 - - - - - -", b"<999>1 bad pri"]
RFC3164 = [b"<13>Nov 25 16:00:00 web sshd[3]: Accepted publickey", b"<34>Oct 11 22:14:15 mymachine su: 'su root'",
           b"Oct 11 22:14:15 host tag no pri", b"<0>Jan  1 00:00:00 - x[: y", b""]


@st.composite
def frame(draw) -> bytes:
    """One TCP syslog frame: LF-terminated or octet-counted, mostly well formed; now and then a bad or
    over-long count, a leading zero, trailing CR/NUL, a bare empty line or garbage."""
    msg = draw(st.sampled_from(RFC5424 + RFC3164) | st.binary(max_size=60).filter(lambda b: b"\n" not in b))
    kind = draw(st.integers(0, 20))
    if kind == 0:
        return b"0%d " % len(msg) + msg  # leading zero: bad framing
    if kind == 1:
        return b"%d " % (MAX_FRAME + draw(st.integers(1, 40))) + msg  # over-long: skipped by its count
    if kind == 2:
        return b"12x " + msg  # not a count
    if kind == 3:
        return b"1234567890" + msg  # no SP within the count's digits
    if kind == 4:
        return b"%d " % (len(msg) + draw(st.integers(1, 5))) + msg  # longer than what follows
    if kind < 12:
        return b"%d " % len(msg) + msg
    return msg.lstrip(b"0123456789") + draw(st.sampled_from([b"\n", b"\r\n", b"\0\n", b" \n"]))


def _cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in pairwise([0, *points, len(stream)]) if b > a]


def _state(p: SyslogParser) -> tuple:
    return ([bytes(b) for b in p.bufs], list(p.starts), list(p.skip), list(p.skip_line), list(p.lost))


def _read_both(chunks: list[bytes | int]) -> tuple[list, list, Recorder, Recorder]:
    """The same chunks (an int: that many bytes lost) to both parsers; their reports and state after each."""
    ctx = FlowContext("tcp", 40000, 514, False)
    recs = Recorder(), Recorder()
    parsers = SyslogParser(recs[0], ctx), GeneralOnly(recs[1], ctx)
    seen: tuple[list, list] = ([], [])
    for frame_no, chunk in enumerate(chunks, 1):
        for parser, rec, log in zip(parsers, recs, seen):
            if isinstance(chunk, int):
                parser.gap(CLIENT, chunk, frame_no, frame_no * 10)
            else:
                parser.feed(CLIENT, chunk, frame_no, frame_no * 10)
            log.append((len(rec.events), list(rec.anomalies), _state(parser)))
    for parser in parsers:
        parser.finish()
    return seen[0], seen[1], recs[0], recs[1]


def _outputs(rec: Recorder) -> tuple:
    return rec.events, rec.frames, rec.anomalies


@settings(max_examples=500, deadline=None)
@given(st.lists(frame(), min_size=1, max_size=12), st.lists(st.integers(0, 5000), max_size=10),
       st.integers(0, 1000))
@example([b"5 <1>ab", b"<2>Jan  1 00:00:00 h t: m\n", b"3 <3>"], [9, 10], 0)
def test_fast_and_general_paths_read_alike(frames: list[bytes], cuts: list[int], gap_at: int) -> None:
    stream = b"".join(frames)
    chunks: list[bytes | int] = list(_cut(stream, cuts))
    if gap_at < len(chunks) and gap_at % 3 == 0:
        chunks.insert(gap_at, gap_at % 50 + 1)  # bytes lost: resynchronise at the next LF
    fast, general, fast_rec, general_rec = _read_both(chunks)
    assert fast == general
    assert _outputs(fast_rec) == _outputs(general_rec)


def test_bulk_streams_in_segments_and_byte_by_byte() -> None:
    """A long LF-framed and a long octet-counted stream, in TCP-sized segments and one byte at a time."""
    lf = b"".join(m + b"\n" for m in RFC3164[:2] * 200)
    counted = b"".join(b"%d " % len(m) + m for m in RFC5424[:2] * 200)
    for stream, count in ((lf, 400), (counted, 400), (lf[:5000] + counted[:5000], 1)):
        for size in (1448, 1, 100):
            chunks: list[bytes | int] = [stream[i : i + size] for i in range(0, len(stream), size)]
            fast, general, fast_rec, general_rec = _read_both(chunks)
            assert fast == general
            assert _outputs(fast_rec) == _outputs(general_rec)
            assert len(fast_rec.events) >= count
