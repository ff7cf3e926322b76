"""HTTP/1.x: a request line `METHOD SP request-target SP HTTP/1.x CRLF` (RFC 9112 §3) answered by a status line
`HTTP/1.x SP 3DIGIT SP reason CRLF` (RFC 9112 §4).

NeuVector (dpi_http.c) finalizes on the first complete client request line (method <= 17 chars, version token
`HTTP/`, line ending in LF) on any port and never looks at mid-stream flows. Here: any port too; YES once the
request is answered by a status line, or on the last call on the request (or the status line) alone; mid-stream
flows are searched for a request/status line at a line start (both ways round: the side seen first may have
been taken for the client).
HTTP/0.9 simple requests (no version token) are not claimed, nor `HTTP/2.0` (the h2 preface is http2's).

The line parsers are shared with rtsp and sip, which differ only in the version token (see TextProtocol).
"""
from __future__ import annotations

from dataclasses import dataclass

from nvpcap.protocols.base import PROBE_BYTES, FlowContext, ProtocolSpec, Verdict

MAX_METHOD = 20  # longest method token accepted (NeuVector: 17; "VERSION-CONTROL" is 15)
MAX_LINE_STARTS = 32  # mid-stream: line starts tried per buffer
MIN_TRUNCATED = 1024  # a request line cut by the end of the data is accepted (last call) only when this long
UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
METHOD_CHARS = UPPER | frozenset(b"-_")
URI_CHARS = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))  # no controls, no SP
DIGITS = frozenset(b"0123456789")

# line parsers answer: > 0 = offset just past a complete line, PARTIAL = could still become one, NOT = cannot
PARTIAL, NOT = 0, -1


def _version(tok: bytes, proto: bytes, majors: bytes) -> bool | None:
    """Is tok `proto DIGIT "." DIGIT` with the major in majors? True complete, None a valid prefix, False no."""
    n = len(proto)
    if len(tok) > n + 3:
        return False
    if tok[:n] != proto[: len(tok)]:
        return False
    rest = tok[n:]
    if rest[:1] and rest[0] not in majors:
        return False
    if rest[1:2] and rest[1] != 0x2E:
        return False
    if rest[2:3] and rest[2] not in DIGITS:
        return False
    return True if len(rest) == 3 else None


def request_line(buf: bytes, proto: bytes, majors: bytes, start: int = 0) -> int:
    """`METHOD SP URI SP proto D.D (CR)LF` at buf[start:]."""
    sp = buf.find(b" ", start, start + MAX_METHOD + 1)
    method = buf[start : sp if sp >= 0 else start + MAX_METHOD + 1]
    if not method or method[0] not in UPPER or not all(c in METHOD_CHARS for c in method):
        return NOT
    if sp < 0:
        return PARTIAL if len(buf) - start <= MAX_METHOD else NOT
    uri_end = buf.find(b" ", sp + 1)
    eol = buf.find(b"\n", sp + 1)
    if uri_end == sp + 1 or (eol >= 0 and (uri_end < 0 or eol < uri_end)):
        return NOT  # empty target, or the line ends without a version token
    if buf[sp + 1 : uri_end if uri_end >= 0 else len(buf)].translate(None, URI_CHARS):
        return NOT  # a control byte inside the target
    if uri_end < 0:
        return PARTIAL
    tok = buf[uri_end + 1 : eol if eol >= 0 else len(buf)]
    cr = tok.endswith(b"\r")
    ok = _version(tok[:-1] if cr else tok, proto, majors)
    if ok is False or (cr and ok is None):
        return NOT
    if eol < 0:
        return PARTIAL
    return eol + 1 if ok else NOT


def status_line(buf: bytes, proto: bytes, majors: bytes, start: int = 0) -> int:
    """`proto D.D SP [1-5]DD (SP|CR|LF)` at buf[start:] (the reason phrase is not needed)."""
    n = len(proto) + 3
    head = buf[start : start + n + 5]
    ok = _version(head[:n], proto, majors)
    if ok is not True:
        return NOT if ok is False else PARTIAL
    for i, c in enumerate(head[n:]):
        if (i == 0 and c != 0x20) or (i == 1 and c not in b"12345") or (i in (2, 3) and c not in DIGITS):
            return NOT
        if i == 4:
            return start + n + 5 if c in b" \r\n" else NOT
    return PARTIAL


def _line_starts(buf: bytes):
    pos = 0
    for _ in range(MAX_LINE_STARTS):
        yield pos
        pos = buf.find(b"\n", pos) + 1
        if pos <= 0 or pos >= len(buf):
            return


@dataclass(frozen=True)
class TextProtocol:
    """An HTTP-style protocol: what its version token looks like, and its methods (only used to accept a
    request line cut by the end of the capture on the last call)."""

    proto: bytes  # b"HTTP/"
    majors: bytes  # accepted major versions, b"1"
    methods: frozenset[bytes]
    peer_to_peer: bool = False  # SIP: either side may send requests and responses

    def side(self, buf: bytes, parsers: tuple, ctx: FlowContext) -> Verdict:
        """One direction: YES when it holds a complete line, MAYBE while one may still come, NO otherwise."""
        if not buf:
            return Verdict.MAYBE
        complete = ctx.transport == "udp"  # a datagram is a whole message: a partial line is no line
        if not ctx.midstream or complete:
            results = [p(buf, self.proto, self.majors) for p in parsers]
            if any(r > 0 for r in results):
                return Verdict.YES
            return Verdict.MAYBE if PARTIAL in results and not complete else Verdict.NO
        for start in _line_starts(buf):
            if any(p(buf, self.proto, self.majors, start) > 0 for p in parsers):
                return Verdict.YES
        return Verdict.MAYBE  # mid-stream: a line may still start further on

    def truncated_request(self, buf: bytes) -> bool:
        """A known method and a long target cut by the end of the data (a URI longer than the probe bytes)."""
        sp = buf.find(b" ", 0, MAX_METHOD + 1)
        return (
            len(buf) >= MIN_TRUNCATED
            and buf[:sp] in self.methods
            and request_line(buf, self.proto, self.majors) == PARTIAL
        )

    def probe(self, client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
        try:
            verdict = self._probe(client, server, ctx)
            if ctx.midstream and verdict != Verdict.YES:  # the side seen first may have been taken for the client
                verdict = max(verdict, self._probe(server, client, ctx))
            return verdict
        except Exception:  # never raise on capture bytes
            return Verdict.NO

    def _probe(self, client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
        both = (request_line, status_line)
        c = self.side(client, both if self.peer_to_peer else (request_line,), ctx)
        s = self.side(server, both if self.peer_to_peer else (status_line,), ctx)
        if c == Verdict.YES:
            # the request proves it once the answer agrees; an absent or foreign answer waits for the end
            return Verdict.YES if s == Verdict.YES or ctx.final else Verdict.MAYBE
        if c == Verdict.NO and not (self.peer_to_peer and s == Verdict.YES):
            return Verdict.NO
        if not client and s == Verdict.NO:
            return Verdict.NO  # the server spoke first, and not this protocol
        if ctx.final:
            if s == Verdict.YES:
                return Verdict.YES  # only the answer was seen (capture started late, client lost)
            if not ctx.midstream and s != Verdict.NO and self.truncated_request(client[:PROBE_BYTES]):
                return Verdict.YES
            return Verdict.NO
        return Verdict.MAYBE


HTTP = TextProtocol(
    proto=b"HTTP/",
    majors=b"1",
    methods=frozenset(
        b"GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK".split()
    ),
)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    return HTTP.probe(client, server, ctx)


SPEC = ProtocolSpec(
    name="http",
    transports=("tcp",),
    ports=(80, 8080, 8000, 8008, 8081, 8888, 3128),
    probe=probe,
    description="HTTP/1.x: request line METHOD SP URI SP HTTP/1.x, answered by a status line HTTP/1.x NNN",
)
