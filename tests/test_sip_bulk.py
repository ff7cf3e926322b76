"""SIP heads (compact header names, RFC 3261 §7.3.3) now take the header fast path (http.plain_fields with the
aliases) instead of Head's general loop: the same fields for every header block, and the same events,
anomalies and state for a SIP-over-TCP stream of many messages cut anywhere.

The oracle is Head's general loop (plain_fields switched off), which is how SIP heads were read before."""
from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parsertest import Recorder
from nvpcap.protocols import http
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.http import MAX_FIELDS, Head
from nvpcap.protocols.sip import COMPACT, SipParser

NAMES = [b"i", b"I", b"f", b"t", b"l", b"m", b"v", b"c", b"e", b"k", b"s", b"x", b"Call-ID", b"CSeq", b"From",
         b"To", b"Via", b"Content-Length", b"User-Agent", b" i", b"\ti", b"i ", b"", b"\xff"]
VALUES = [b" a", b"b", b" 1 INVITE", b"<sip:a@b>;tag=1", b"", b" 0 ", b"\x0bv\x0c", b":x"]
ENDS = [b"\r\n", b"\r\n", b"\n", b"\r\r\n"]


@st.composite
def header_block(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.integers(0, 12))
        if kind == 0:
            line = draw(st.sampled_from([b" folded", b"\tfolded", b"no colon", b"", b"\r"]))
        else:
            line = draw(st.sampled_from(NAMES)) + b":" + draw(st.sampled_from(VALUES))
        lines.append(line + draw(st.sampled_from(ENDS)))
    return b"".join(lines)


def _general(raw: bytes) -> Head:
    """A Head read by the general loop only."""
    head = Head(raw, COMPACT)
    head.too_many = False
    head.fields = head._fields(head.block.split(b"\n"), COMPACT)
    return head


@settings(max_examples=600, deadline=None)
@given(header_block())
@example(b"i: call-1\r\nCall-ID: call-2\r\nI: 3\r\nl: 0\r\n")
@example(b"i: a\r\n folded\r\nf: b\r\n")
def test_compact_heads_read_as_the_general_loop_does(block: bytes) -> None:
    raw = b"INVITE sip:b@h SIP/2.0\r\n" + block + b"\r\n"
    fast, general = Head(raw, COMPACT), _general(raw)
    assert (fast.line, fast.block, fast.fields, fast.too_many) == (general.line, general.block, general.fields,
                                                                   general.too_many)


def test_many_compact_fields_go_to_the_general_loop_past_the_limit() -> None:
    for n in (MAX_FIELDS - 1, MAX_FIELDS, MAX_FIELDS + 1):
        raw = b"SIP/2.0 200 OK\r\n" + b"".join(b"v: SIP/2.0/TCP h;branch=%d\r\n" % i for i in range(n)) + b"\r\n"
        fast, general = Head(raw, COMPACT), _general(raw)
        assert (fast.fields, fast.too_many) == (general.fields, general.too_many)


def _message(n: int, compact: bool, response: bool, body: bytes) -> bytes:
    names = (b"i", b"f", b"t", b"l") if compact else (b"Call-ID", b"From", b"To", b"Content-Length")
    line = b"SIP/2.0 200 OK" if response else b"INVITE sip:bob@example.com SIP/2.0"
    return (line + b"\r\nVia: SIP/2.0/TCP h;branch=z9%d\r\n%s: <sip:a@h>;tag=%d\r\n%s: <sip:b@h>\r\n"
            b"%s: %d@h\r\nCSeq: %d INVITE\r\nUser-Agent: ua\r\n%s: %d\r\n\r\n"
            % (n, names[1], n, names[2], names[0], n, n, names[3], len(body))) + body


@st.composite
def sip_stream(draw, response: bool) -> bytes:
    out = []
    for _ in range(draw(st.integers(1, 8))):
        n = draw(st.integers(0, 5))  # small numbers: retransmissions and answers to the same transaction
        msg = _message(n, draw(st.booleans()), response, draw(st.binary(max_size=30)))
        if draw(st.integers(0, 12)) == 0:
            msg = msg.replace(b": 0\r\n\r\n", b": x\r\n\r\n").replace(b"SIP/2.0\r\n", b"SIP/9.0\r\n")
        out.append(msg)
    return b"".join(out)


def _cut(side: int, stream: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [(side, stream[a:b]) for a, b in pairwise([0, *points, len(stream)]) if b > a]


def _read(steps: list[tuple[int, bytes]]) -> tuple[list, tuple]:
    rec = Recorder()
    parser = SipParser(rec, FlowContext("tcp", 40000, 5060, False))
    seen = []
    for frame, (side, data) in enumerate(steps, 1):
        parser.feed(side, data, frame, frame * 10)
        seen.append((len(rec.events), list(rec.anomalies), [(w.state, w.remaining, bytes(w.buf)) for w in parser.wires],
                     list(parser.pending), list(parser.finished)))
    parser.finish()
    return seen, (rec.events, rec.frames, rec.anomalies, rec.threats, rec.contents)


@settings(max_examples=200, deadline=None)
@given(sip_stream(False), sip_stream(True), st.lists(st.integers(0, 4000), max_size=8),
       st.lists(st.integers(0, 4000), max_size=8))
def test_sip_over_tcp_reads_alike_with_and_without_the_fast_path(requests: bytes, responses: bytes,
                                                                 cuts_c: list[int], cuts_s: list[int]) -> None:
    steps = _cut(CLIENT, requests, cuts_c) + _cut(SERVER, responses, cuts_s)
    fast = _read(steps)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(http, "plain_fields", lambda lines, aliases=None: None)
        general = _read(steps)
    assert fast == general
