"""The HTTP-style parsers' fast paths agree with the general code they stand in for: start lines matched by one
pattern vs checked step by step, header blocks without folding vs the general loop, a head read from one chunk
vs gathered across chunks, plain Content-Length vs the general framing rules. Each test feeds the same input
both ways, odd inputs included (folded and bare-LF heads, split segments, truncation, pipelining, bad
lengths)."""
from __future__ import annotations

import random

import pytest

from parsertest import Recorder, drive
from nvpcap.protocols.base import CLIENT, SERVER
from nvpcap.protocols.http import (MAX_FIELDS, NOT, PARTIAL, Head, HttpParser, block_end, head_end, length_framing,
                                   line_patterns, plain_fields, request_line, request_line_steps, status_line,
                                   status_line_steps)
from nvpcap.protocols.rtsp import RtspParser
from nvpcap.protocols.sip import SipParser

PROTOCOLS = [(b"HTTP/", b"1"), (b"RTSP/", b"12"), (b"SIP/", b"2")]


def line_cases(proto: bytes, rng: random.Random) -> list[bytes]:
    """Start lines, good and bad: every field of the grammar varied, and random bytes."""
    methods = [b"GET", b"M-SEARCH", b"X_Y", b"A" * 20, b"A" * 21, b"get", b"G3T", b"-GET", b""]
    targets = [b"/", b"/a%20b?x=1", b"*", b"/\xc3\xa9", b"/a\x7fb", b"/a\x00", b"", b"/a b", b"/\tb"]
    versions = [proto + b"1.1", proto + b"2.0", proto + b"1.x", proto + b"11", proto[:-1], proto + b"1.1 ",
                b"HTTP/1.1", b""]
    ends = [b"\r\n", b"\n", b"\r\r\n", b"", b"\r", b" \r\n"]
    codes = [b"200", b"101", b"599", b"600", b"099", b"20", b"2000", b"2a0", b""]
    seps = [b" ", b"\r\n", b"\n", b"\t", b""]
    lines = []
    for _ in range(1500):
        m, t, v, e = (rng.choice(x) for x in (methods, targets, versions, ends))
        lines.append(m + b" " + t + b" " + v + e)
        lines.append(v + b" " + rng.choice(codes) + rng.choice(seps) + b"OK" + e)
        lines.append(bytes(rng.choice(b"GET /HTP1.2 \r\n0") for _ in range(rng.randrange(30))))
    return lines


@pytest.mark.parametrize("proto,majors", PROTOCOLS)
def test_start_line_patterns_agree_with_the_steps(proto, majors):
    """A pattern match is exactly a positive answer of the step-by-step check (which alone tells PARTIAL from
    NOT), at any start offset and on a bytearray as the Wire's search passes it."""
    rng = random.Random(7)
    request, status = line_patterns(proto, majors)
    matched = 0
    for line in line_cases(proto, rng):
        for start, buf in ((0, line), (3, b"x\r\n" + line), (0, bytearray(line + b"rest"))):
            for pattern, fast, steps in ((request, request_line, request_line_steps),
                                         (status, status_line, status_line_steps)):
                slow = steps(buf, proto, majors, start)
                m = pattern.match(buf, start)
                if m is not None:
                    matched += 1
                    assert slow == m.end() > 0, (buf, start)
                assert fast(buf, proto, majors, start) == slow, (buf, start)
                if slow > 0:
                    assert m is not None, (buf, start)  # the common complete lines take the fast path
    assert matched > 100


def test_start_line_partial_and_not_come_from_the_steps():
    assert request_line(b"GET /index.html HT", b"HTTP/", b"1") == PARTIAL
    assert request_line(b"GET /index.html HTTP/1.1\r", b"HTTP/", b"1") == PARTIAL
    assert request_line(b"GET /index.html HTTP/1.1\r\r\n", b"HTTP/", b"1") == NOT
    assert status_line(b"HTTP/1.1 20", b"HTTP/", b"1") == PARTIAL
    assert status_line(b"HTTP/1.1 200\n", b"HTTP/", b"1") == 13


def block_cases(rng: random.Random) -> list[bytes]:
    pieces = [b"Host: a.example", b"host:b", b" folded", b"\tmore", b"X-Empty:", b":novalue", b"NoColon",
              b"Name : spaced ", b"\x0bVt: \x0cx\x0b", b"A:B:C", b"HOST: upper", b"Content-Length: 5", b"\xff: \xfe",
              b"\r", b"", b" ", b"\t: x", b" Lead: x"]
    ends = [b"\r\n", b"\n", b"\r\r\n"]
    blocks = [b"".join(rng.choice(pieces) + rng.choice(ends) for _ in range(rng.randrange(12))) for _ in range(3000)]
    blocks += [b"".join(b"X-%d: v\r\n" % i for i in range(n)) for n in (MAX_FIELDS - 1, MAX_FIELDS, MAX_FIELDS + 1)]
    blocks += [b"A: 1\r\n" * (MAX_FIELDS - 1) + b" fold\r\nB: 2\r\n" + b"C: 3\r\n" * 5]
    return blocks


def general(raw: bytes, aliases=None) -> Head:
    """A Head read by the general loop only (what plain_fields stands in for)."""
    head = Head(raw, aliases)
    head.too_many = False
    head.fields = head._fields(head.block.split(b"\n"), aliases)
    return head


def test_plain_fields_agree_with_the_general_loop():
    rng = random.Random(11)
    plain = 0
    for block in block_cases(rng):
        raw = b"GET / HTTP/1.1\r\n" + block + b"\r\n"
        fast, slow = Head(raw), general(raw)
        assert (fast.line, fast.block, fast.fields, fast.too_many) == (slow.line, slow.block, slow.fields,
                                                                       slow.too_many), raw
        lines = block.split(b"\n")
        if len(lines) <= MAX_FIELDS and plain_fields(lines) is not None:
            plain += 1
    assert plain > 300  # the fast path is taken (and folds are left to the general loop)
    assert plain_fields([b"A: 1\r", b" folded\r", b""]) is None
    assert plain_fields([b"A: 1\r", b"\tfolded: x\r", b""]) is None


def test_compact_names_take_the_general_loop():
    head = Head(b"INVITE sip:b SIP/2.0\r\ni: call-1\r\nCall-ID: call-2\r\n\r\n", {"i": "call-id"})
    assert head.fields == {"call-id": [b"call-1", b"call-2"]}


def test_head_end_agrees_with_block_end():
    rng = random.Random(3)
    for _ in range(5000):
        data = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randrange(1, 40)))
        start = rng.randrange(len(data))
        stop = start + rng.randrange(0, 45)
        end = block_end(bytearray(data[start:stop]), 0, empty_ok=False)
        assert head_end(data, start, stop) == (end + start if end >= 0 else -1), (data, start, stop)


def reference_length(head: Head) -> int | None:
    """length_framing's general rule (RFC 9110 §8.6): all values agree and are decimal."""
    values = {v.strip() for raw in head.all("content-length") for v in raw.split(b",")}
    if len(values) != 1:
        return None
    (v,) = values
    return int(v) if v.isdigit() and len(v) <= 18 else None


@pytest.mark.parametrize("fields", [
    [b"5"], [b"0"], [b"0005"], [b" 7 "], [b"5, 5"], [b"5,6"], [b"-1"], [b"+5"], [b"0x5"], [b""], [b"5", b"5"],
    [b"5", b"6"], [b"9" * 18], [b"9" * 19], [b"\xd9\xa3"], [b"5 5"]])
def test_length_framing_fast_path(fields):
    head = Head(b"HTTP/1.1 200 OK\r\n" + b"".join(b"Content-Length: " + v + b"\r\n" for v in fields) + b"\r\n")
    assert length_framing(head) == reference_length(head)


# ---- whole streams: one chunk (fast paths) vs small segments (heads gathered across chunks) ----

def chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5]) for i in range(0, len(body), 5)) + \
        b"0\r\n\r\n"


ODD_STREAMS = {
    "pipelined": [
        (CLIENT, (b"GET /a%41 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: ua\r\n\r\n\r\nHEAD /h HTTP/1.0\nHost: x\n\n"
                  b"POST /p HTTP/1.1\r\nContent-Length: 4\r\nContent-Type: application/xml\r\n\r\nbody")),
        (SERVER, (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\n\r\nabc"
                  b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
                  b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n") + chunked(b"created-resource")),
    ],
    "folded and bare LF": [
        (CLIENT, b"GET / HTTP/1.1\nHost: a\n X-Fold: b\n\tc\nUser-Agent: x\r\n\r\n"),
        (SERVER, b"HTTP/1.0 200 OK\nServer: Apache\n  folded-server\nContent-Length: 2\n\nok"),
    ],
    "bad lengths": [
        (CLIENT, b"POST /x HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello"),
        (SERVER, b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nrest of the stream"),
    ],
    "length and chunked": [
        (CLIENT, b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"abc")),
        (SERVER, b"HTTP/1.1 204 No Content\r\nContent-Length: 0x10\r\n\r\n"),
    ],
    "truncated head": [
        (CLIENT, b"GET /only-part HTTP/1.1\r\nHost: a\r\nUser-Ag"),
    ],
    "bad start line then a good one": [
        (CLIENT, b"\x16\x03\x01 not http at all\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n"),
        (SERVER, b"HTTP/1.1 2000 Odd\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ],
    "head longer than a segment": [
        (CLIENT, b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 40)
                                                                        for i in range(60)) + b"\r\n"),
        (SERVER, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    ],
}


def outputs(rec: Recorder) -> tuple:
    """What a parser reported, the bytes of each stream (body, and xml beside it) joined where they came in
    several pieces (segments cut them)."""
    contents: list = []
    run: dict[tuple[str, int], bytes] | None = None  # stream pieces since the last unit
    for context, side, data in rec.contents:
        if context in ("body", "xml"):
            if run is None:
                run = {}
                contents.append(run)
            run[(context, side)] = run.get((context, side), b"") + data
        else:
            run = None
            contents.append((context, side, data))
    return rec.events, rec.frames, rec.threats, rec.anomalies, rec.products, contents


@pytest.mark.parametrize("name", sorted(ODD_STREAMS))
@pytest.mark.parametrize("split", [1, 2, 7, 100])
def test_one_chunk_and_segments_agree(name, split):
    steps = ODD_STREAMS[name]
    whole = drive(HttpParser, steps)
    pieces = drive(HttpParser, steps, split=split)
    assert outputs(pieces) == outputs(whole)


def test_random_splits_agree():
    """Real-looking messages and mutated ones, cut at random points."""
    rng = random.Random(5)
    base = [s for steps in ODD_STREAMS.values() for s in steps]
    for _ in range(200):
        steps = [rng.choice(base) for _ in range(rng.randrange(1, 5))]
        steps = [(side, data[: rng.randrange(len(data) + 1)] if rng.random() < 0.2 else data) for side, data in steps]
        whole = drive(HttpParser, steps)
        cut = Recorder()
        parser = HttpParser(cut, drive_ctx())
        for i, (side, data) in enumerate(steps):
            at = 0
            while at < len(data) and not parser.done:
                n = rng.randrange(1, 64)
                parser.feed(side, data[at:at + n], i + 1, i)
                at += n
        parser.finish()
        assert outputs(cut) == outputs(whole), steps


def drive_ctx():
    from nvpcap.protocols.base import FlowContext
    return FlowContext("tcp", 40000, 0, False)


@pytest.mark.parametrize("cls,steps", [
    (RtspParser, [(CLIENT, b"OPTIONS rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\n\r\n"),
                  (SERVER, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 2\r\n\r\nok$\x00\x00\x02ab")]),
    (SipParser, [(CLIENT, b"INVITE sip:b@h SIP/2.0\r\ni: c1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"),
                 (SERVER, b"SIP/2.0 200 OK\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")]),
])
def test_rtsp_and_sip_one_chunk_and_segments_agree(cls, steps):
    assert outputs(drive(cls, steps, split=3)) == outputs(drive(cls, steps))
