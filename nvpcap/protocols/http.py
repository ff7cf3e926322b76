"""HTTP/1.x: a request line `METHOD SP request-target SP HTTP/1.x CRLF` (RFC 9112 §3) answered by a status line
`HTTP/1.x SP 3DIGIT SP reason CRLF` (RFC 9112 §4).

NeuVector (dpi_http.c) finalizes on the first complete client request line (method <= 17 chars, version token
`HTTP/`, line ending in LF) on any port and never looks at mid-stream flows. Here: any port too; YES once the
request is answered by a status line, or on the last call on the request (or the status line) alone; mid-stream
flows are searched for a request/status line at a line start (both ways round: the side seen first may have
been taken for the client).
HTTP/0.9 simple requests (no version token) are not claimed, nor `HTTP/2.0` (the h2 preface is http2's).

The line parsers are shared with rtsp and sip, which differ only in the version token (see TextProtocol).

Parsing (below the probe): a Wire per direction cuts the stream into messages (start line, header block, body
framed by RFC 9112 §6.3), shared with rtsp and sip; HttpParser pairs requests with responses like Zeek's
http.log, undoes chunking and content codings (httpbody) for the rules, and raises NeuVector's HTTP threats;
HttpApi adds the own headers of a product's REST API (Consul, Elasticsearch) to those events.
Beyond NeuVector: bodies are decompressed and URLs percent-decoded for the rules (dp does neither).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote_to_bytes

from nvpcap.protocols import httpforms
from nvpcap.protocols.base import (
    CLIENT,
    PROBE_BYTES,
    SERVER,
    FlowContext,
    Parser,
    ParserOutput,
    ProtocolSpec,
    Verdict,
)
from nvpcap.protocols.httpbody import BodyDecoder

MAX_METHOD = 20  # longest method token accepted (NeuVector: 17; "VERSION-CONTROL" is 15)
MAX_LINE_STARTS = 32  # mid-stream: line starts tried per buffer
MIN_TRUNCATED = 1024  # a request line cut by the end of the data is accepted (last call) only when this long
UPPER = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
METHOD_CHARS = UPPER | frozenset(b"-_")
METHOD_BYTES = bytes(sorted(METHOD_CHARS))  # for bytes.translate: one C call checks a whole method token
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


@cache
def line_patterns(proto: bytes, majors: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """The complete request line and status line in one C call each: a match is exactly what request_line /
    status_line accept with an answer > 0 (the end of the match); anything else (a partial line, a foreign
    one) is left to their step-by-step checks, which tell PARTIAL from NOT."""
    version = re.escape(proto) + b"[" + re.escape(majors) + rb"]\.[0-9]"
    request = rb"[A-Z][A-Z_-]{0,%d} [\x21-\x7e\x80-\xff]+ " % (MAX_METHOD - 1) + version + rb"\r?\n"
    status = version + rb" [1-5][0-9][0-9][ \r\n]"
    return re.compile(request), re.compile(status)


def request_line(buf: bytes, proto: bytes, majors: bytes, start: int = 0) -> int:
    """`METHOD SP URI SP proto D.D (CR)LF` at buf[start:]."""
    whole = line_patterns(proto, majors)[0].match(buf, start)
    return whole.end() if whole is not None else request_line_steps(buf, proto, majors, start)


def request_line_steps(buf: bytes, proto: bytes, majors: bytes, start: int = 0) -> int:
    """request_line checked step by step: tells a line that may still become one (PARTIAL) from NOT."""
    sp = buf.find(b" ", start, start + MAX_METHOD + 1)
    method = buf[start : sp if sp >= 0 else start + MAX_METHOD + 1]
    if not method or method[0] not in UPPER or method.translate(None, METHOD_BYTES):
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
    whole = line_patterns(proto, majors)[1].match(buf, start)
    return whole.end() if whole is not None else status_line_steps(buf, proto, majors, start)


def status_line_steps(buf: bytes, proto: bytes, majors: bytes, start: int = 0) -> int:
    """status_line checked step by step: tells a line that may still become one (PARTIAL) from NOT."""
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
            for r in results:
                if r > 0:
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


# ---- parsing, shared by http, rtsp and sip: one direction cut into messages (RFC 9112 §2.1) ----
#
# A Wire reads one direction: a start line and header fields up to an empty line, then a body framed as the
# owning parser decides from the head (RFC 9112 §6.3): a length, chunked (§7.1), until the connection closes,
# or none. After a gap, or on a mid-stream flow, it searches for a line that parses as a start line.

MAX_HEAD = 64 << 10  # start line + header fields at most (a longer head: anomaly, the parser stops)
MAX_FIELDS = 256  # header fields kept per message
MAX_FOLD = 8 << 10  # bytes kept of one field value built from obsolete line folding (RFC 9112 §5.2)
MAX_CHUNK_LINE = 1024  # chunk-size line with its extensions (RFC 9112 §7.1.1)
MAX_SKIP = 256 << 10  # bytes searched for a start line before that side gives up
MAX_SKIP_LINE = 8 << 10  # an unfinished candidate start line kept while searching
MAX_TEXT = 1024  # characters kept of a header value put in an event
CHECK_PREFIX = 64  # bytes of a start line enough to reject foreign bytes early

# body framing, chosen by the owner for each head
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE, STOP = range(5)

# wire states
(W_START, W_HEAD, W_BODY, W_CHUNK_SIZE, W_CHUNK_DATA, W_CHUNK_END, W_TRAILER, W_CLOSE, W_SKIP, W_FRAME_HEAD,
 W_FRAME_DATA, W_DEAD) = range(12)

NEGATIVE_CHUNK = 0x80000000  # a chunk size with bit 31 set (NeuVector's HTTP_NEG_LEN check)
HEXDIGITS = b"0123456789abcdefABCDEF"


def first_text(values: list[bytes] | None, cap: int = MAX_TEXT) -> str | None:
    """The first value of a header field (Head.fields.get(name)) for an event; Head.text without the Head."""
    return text(values[0], cap) if values else None


def text(value: bytes | None, cap: int = MAX_TEXT) -> str | None:
    """A header value (or line part) for an event: UTF-8 with replacement characters, capped."""
    if value is None:
        return None
    return value[: cap * 4].decode("utf-8", "replace")[:cap]


MAX_NAMES = 512  # distinct raw field names remembered with their keys (the same few come in every message)
_KEYS: dict[bytes, str] = {}  # raw field name (never one starting with SP/HT) -> lower-cased key
FOLD_STARTS = (b" ", b"\t")


def plain_fields(lines: list[bytes], aliases: dict[str, str] | None = None) -> dict[str, list[bytes]] | None:
    """The fields of header lines without obsolete line folding (the common case, read with fewer steps than
    Head._fields: a trailing CR goes with the value's strip, a name's key is remembered; `aliases` maps compact
    names, SIP's, to their full key); None when a line is folded, for Head._fields to read. The caller makes
    sure there are at most MAX_FIELDS lines."""
    fields: dict[str, list[bytes]] = {}
    keys = _KEYS
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            if line[:1] in FOLD_STARTS:
                return None
            continue  # an empty line, or one that is no field
        key = keys.get(name)
        if key is None:
            if name[:1] in FOLD_STARTS:
                return None
            key = name.strip().lower().decode("latin-1")
            if len(keys) < MAX_NAMES:
                keys[name] = key
        if aliases:
            key = aliases.get(key, key)
        values = fields.get(key)
        if values is None:
            fields[key] = [value.strip()]
        else:
            values.append(value.strip())
    return fields


class Head:
    """A parsed message head: the start line and its header fields (names lower-cased, values trimmed)."""

    __slots__ = ("line", "fields", "block", "too_many")

    def __init__(self, raw: bytes, aliases: dict[str, str] | None = None) -> None:
        first, _, block = raw.partition(b"\n")
        self.line = first.rstrip(b"\r")
        self.block = block  # the header lines as sent, for the rules' "header" context
        self.too_many = False
        lines = block.split(b"\n")
        fields = plain_fields(lines, aliases) if len(lines) <= MAX_FIELDS else None
        self.fields = fields if fields is not None else self._fields(lines, aliases)

    def _fields(self, lines: list[bytes], aliases: dict[str, str] | None) -> dict[str, list[bytes]]:
        """Every form of header block: obsolete line folding, more than MAX_FIELDS fields, compact names."""
        # one pass: each value goes straight into `fields`; a folded line extends the value added last
        fields: dict[str, list[bytes]] = {}
        count = folded = 0
        last: list[bytes] | None = None  # the value list that received the latest field
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                continue
            if line[0] in b" \t":  # obs-fold: continues the previous field value
                if last is not None and folded < MAX_FOLD:
                    piece = line.strip()
                    last[-1] += b" " + piece
                    folded += len(piece)
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            if count == MAX_FIELDS:
                self.too_many = True
                break
            count += 1
            key = name.strip().lower().decode("latin-1")
            if aliases:
                key = aliases.get(key, key)
            last = fields.get(key)
            if last is None:
                last = fields[key] = [value.strip()]
            else:
                last.append(value.strip())
        return fields

    def get(self, name: str) -> bytes | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def all(self, name: str) -> list[bytes]:
        return self.fields.get(name, [])

    def text(self, name: str, cap: int = MAX_TEXT) -> str | None:
        values = self.fields.get(name)
        return text(values[0], cap) if values else None


def either_line(proto: bytes, majors: bytes):
    """A start-line check accepting a request line or a status line (SIP and RTSP peers send both)."""
    def check(buf: bytes, start: int = 0) -> int:
        r = request_line(buf, proto, majors, start)
        if r > 0:
            return r
        s = status_line(buf, proto, majors, start)
        return s if s > 0 else max(r, s)
    return check


@cache  # one per protocol, shared by every Wire (not two closures per flow)
def request_check(proto: bytes, majors: bytes):
    whole = line_patterns(proto, majors)[0].match

    def check(buf: bytes, start: int = 0) -> int:
        """request_line, its pattern at hand."""
        m = whole(buf, start)
        return m.end() if m is not None else request_line_steps(buf, proto, majors, start)
    return check


@cache
def status_check(proto: bytes, majors: bytes):
    whole = line_patterns(proto, majors)[1].match

    def check(buf: bytes, start: int = 0) -> int:
        """status_line, its pattern at hand."""
        m = whole(buf, start)
        return m.end() if m is not None else status_line_steps(buf, proto, majors, start)
    return check


def start_line(line: bytes, proto: bytes) -> tuple[bool, str, bytes, str, int | None, bytes]:
    """(is_request, method, target, version, status, reason) of a start line already checked by the wire.
    Requests: `method SP target SP proto/version`; responses: `proto/version SP status SP reason`."""
    if line.startswith(proto):
        version, status, reason = status_parts(line, proto)
        return False, "", b"", version, status, reason
    method, target, version = request_parts(line, proto)
    return True, method, target, version, None, b""


def request_parts(line: bytes, proto: bytes) -> tuple[str, bytes, str]:
    """(method, target, version) of a request line already checked by the wire."""
    method, _, rest = line.partition(b" ")
    target, _, version = rest.rpartition(b" ")
    return method.decode("latin-1"), target, version[len(proto):].decode("latin-1")


def status_parts(line: bytes, proto: bytes) -> tuple[str, int | None, bytes]:
    """(version, status, reason) of a status line already checked by the wire."""
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    status = int(code) if code.isdigit() and len(code) == 3 else None
    return version[len(proto):].decode("latin-1"), status, reason.strip()


def block_end(buf: bytearray, scan: int, empty_ok: bool) -> int:
    """Offset just past the empty line that ends a header (or trailer) block in buf, -1 if not there yet.
    `scan`: bytes already searched; `empty_ok`: the block may be the empty line alone (trailers)."""
    if empty_ok:
        if buf[:1] == b"\n":
            return 1
        if buf[:2] == b"\r\n":
            return 2
        if buf[:1] == b"\r" and len(buf) == 1:
            return -1
    a = buf.find(b"\n\r\n", max(scan - 2, 0))
    b = buf.find(b"\n\n", max(scan - 1, 0))
    if a < 0:
        return b + 2 if b >= 0 else -1
    return a + 3 if b < 0 else min(a + 3, b + 2)


def head_end(data: bytes, start: int, stop: int) -> int:
    """block_end(data[start:stop], 0, False) + start without copying: the offset just past the empty line that
    ends the header block beginning at `start`, -1 if it does not end before `stop`."""
    crlf = data.find(b"\n\r\n", start, stop)
    lf = data.find(b"\n\n", start, stop if crlf < 0 else crlf + 2)  # only one before the first CRLF one counts
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def chunk_size(line: bytes) -> int | None:
    """The size of a chunk-size line `1*HEXDIG *( BWS ";" chunk-ext ) CRLF` (RFC 9112 §7.1), None if bad."""
    digits = line.partition(b";")[0].strip(b" \t\r")
    if not digits or len(digits) > 16 or digits.translate(None, HEXDIGITS):
        return None
    return int(digits, 16)


class Wire:
    """One direction of an HTTP-style stream, cut into messages. The owner (a TextParser) decides each body's
    framing from the head and receives the body bytes, already de-chunked."""

    __slots__ = ("owner", "side", "check", "state", "buf", "scan", "remaining", "checked", "line_start",
                 "skipped", "frame", "ts", "frames")

    def __init__(self, owner: TextParser, side: int, check, midstream: bool, frames: bool = False) -> None:
        self.owner, self.side, self.check = owner, side, check
        self.state = W_SKIP if midstream else W_START
        self.buf = bytearray()
        self.scan = 0
        self.remaining = 0
        self.checked = False
        self.line_start = True  # W_SKIP: the next byte begins a line
        self.skipped = 0
        self.frame = self.ts = 0  # where the message being read started
        self.frames = frames  # RTSP: `$` channel length binary frames may come between messages

    @property
    def dead(self) -> bool:
        return self.state == W_DEAD

    @property
    def in_head(self) -> bool:
        return self.state == W_HEAD

    def feed(self, data: bytes, frame: int, ts: int) -> None:
        pos, n = 0, len(data)
        while pos < n:
            state = self.state
            if state == W_BODY or state == W_CHUNK_DATA:
                pos = self._body(data, pos, frame, ts)
            elif state == W_START:
                pos = self._start(data, pos, frame, ts)
            elif state == W_HEAD:
                pos = self._head(data, pos, frame, ts)
            elif state == W_CHUNK_SIZE:
                pos = self._chunk_size(data, pos, frame, ts)
            elif state == W_CHUNK_END:
                pos = self._chunk_end(data, pos, frame, ts)
            elif state == W_TRAILER:
                pos = self._trailer(data, pos, frame, ts)
            elif state == W_CLOSE:
                self.owner.wire_body(self.side, data[pos:] if pos else data, frame, ts)
                return
            elif state == W_SKIP:
                pos = self._skip(data, pos, frame, ts)
            elif state == W_FRAME_HEAD:
                pos = self._frame_head(data, pos)
            elif state == W_FRAME_DATA:
                take = min(self.remaining, n - pos)
                self.remaining -= take
                pos += take
                if not self.remaining:
                    self.state = W_START
            else:
                return

    def gap(self, missing: int, frame: int, ts: int) -> None:
        """Bytes lost: a body of known length stays in step; otherwise search for the next start line."""
        state = self.state
        if state in (W_BODY, W_CHUNK_DATA, W_FRAME_DATA) and missing <= self.remaining:
            self.remaining -= missing
            if state != W_FRAME_DATA:
                self.owner.wire_body_gap(self.side)
            if not self.remaining:
                self._body_done(frame, ts)
            return
        if state in (W_CLOSE, W_DEAD):
            if state == W_CLOSE:
                self.owner.wire_body_gap(self.side)
            return
        if state in (W_BODY, W_CHUNK_SIZE, W_CHUNK_DATA, W_CHUNK_END, W_TRAILER):
            self.owner.wire_body_gap(self.side)
            self.owner.wire_end(self.side, frame, ts)
        elif state == W_HEAD:
            self.owner.wire_lost_head(self.side)
        self._resync(line_start=False)

    # -- states --

    def _resync(self, line_start: bool) -> None:
        self.state, self.line_start = W_SKIP, line_start
        self.buf.clear()

    def _start(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        n = len(data)
        if data[pos] in b"\r\n":  # empty lines before a message are ignored (RFC 9112 §2.2)
            pos = n - len(data[pos:].lstrip(b"\r\n"))
            if pos == n:
                return n
        self.buf.clear()
        if self.frames and data[pos] == 0x24:  # "$": interleaved binary data (RFC 2326 §10.12)
            self.state = W_FRAME_HEAD
            return pos
        self.state, self.scan, self.checked = W_HEAD, 0, False
        self.frame, self.ts = frame, ts
        return self._head(data, pos, frame, ts)

    def _head(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        if not self.buf:  # the head starts in this chunk and most often ends in it, after a good start line
            end = head_end(data, pos, pos + self.owner.max_head + 3)
            if end >= 0 and self.check(data[pos : data.find(b"\n", pos) + 1]) > 0:
                self._message_head(bytes(data[pos:end]), frame, ts)
                return end
        return self._head_pieces(data, pos, frame, ts)

    def _head_pieces(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        """A head gathered across chunks: the start line checked once complete (or from its first bytes, to
        drop foreign bytes early), the header block searched where the last chunk left off."""
        buf = self.buf
        prior = len(buf)
        take = min(len(data) - pos, self.owner.max_head + 3 - prior)
        if prior:
            buf += data[pos : pos + take]
            head = buf
        else:  # a head that starts in this chunk is read from it, and buffered only if it does not end here
            head = data[pos : pos + take] if pos or take < len(data) else data
        if not self.checked:  # the start line, once complete (or its first bytes, to drop foreign bytes early)
            nl = head.find(b"\n", self.scan)
            if nl >= 0 or prior < CHECK_PREFIX <= len(head):
                verdict = self.check(bytes(head[: nl + 1] if nl >= 0 else head[:CHECK_PREFIX]))
                if verdict == NOT or (nl >= 0 and verdict <= 0):
                    self.owner.wire_fault(self.side, "bad-start-line", "a message does not begin with a start line",
                                          frame, ts)
                    held = bytes(head)
                    self._resync(line_start=False)
                    self.feed(held, frame, ts)  # search the bytes held so far, then the rest of this chunk
                    return pos + take
                self.checked = nl >= 0
        end = block_end(head, self.scan, empty_ok=False)
        self.scan = len(head)
        if end < 0:
            if len(head) > self.owner.max_head:
                self.owner.wire_fault(self.side, "header-too-long", f"header block longer than {self.owner.max_head} "
                                      "bytes", frame, ts)
                self.owner.wire_lost_head(self.side)
                self.state = W_DEAD
                buf.clear()
                self.owner.done = True  # not a stream worth following
                return len(data)
            if not prior:
                buf += head
            return pos + take
        raw = bytes(head[:end])
        buf.clear()
        self._message_head(raw, frame, ts)
        return pos + end - prior

    def _message_head(self, raw: bytes, frame: int, ts: int) -> None:
        """A complete head (`frame`/`ts`: where it ended): the owner decides how its body is framed."""
        framing, length = self.owner.wire_head(self.side, raw, self.frame, self.ts, frame, ts)
        self._frame_body(framing, length, frame, ts)

    def _frame_body(self, framing: int, length: int, frame: int, ts: int) -> None:
        if framing == LENGTH and length > 0:
            self.state, self.remaining = W_BODY, length
        elif framing == CHUNKED:
            self.state = W_CHUNK_SIZE
        elif framing == UNTIL_CLOSE:
            self.state = W_CLOSE
        elif framing == STOP:
            self.state = W_DEAD
            self.owner.wire_dead(self.side)
        else:
            self.state = W_START
            self.owner.wire_end(self.side, frame, ts)

    def _body(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        take = min(self.remaining, len(data) - pos)
        self.owner.wire_body(self.side, data[pos : pos + take] if take < len(data) else data, frame, ts)
        self.remaining -= take
        if not self.remaining:
            self._body_done(frame, ts)
        return pos + take

    def _body_done(self, frame: int, ts: int) -> None:
        if self.state == W_CHUNK_DATA:
            self.state = W_CHUNK_END
            self.buf.clear()
        elif self.state == W_FRAME_DATA:
            self.state = W_START
        else:
            self.state = W_START
            self.owner.wire_end(self.side, frame, ts)

    def _line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """A short line (chunk size) gathered across chunks: (line without LF or None if not complete, pos)."""
        nl = data.find(b"\n", pos)
        if nl < 0:
            self.buf += data[pos:]
            return None, len(data)
        line = bytes(self.buf) + data[pos:nl]
        self.buf.clear()
        return line, nl + 1

    def _bad_chunk(self, message: str, frame: int, ts: int, line_start: bool) -> None:
        self.owner.wire_fault(self.side, "bad-chunk", message, frame, ts)
        self.owner.wire_end(self.side, frame, ts)
        self._resync(line_start)

    def _chunk_size(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        if not self.buf:  # a size line that starts here: the chunks that lie whole in this chunk first
            pos = self._chunks(data, pos, frame, ts)
            if pos == len(data) or self.state != W_CHUNK_SIZE:
                return pos
        line, pos = self._line(data, pos)
        if line is None:
            if len(self.buf) > MAX_CHUNK_LINE:
                self._bad_chunk("chunk-size line too long", frame, ts, line_start=False)
            return pos
        size = chunk_size(line)
        if size is None:
            self._bad_chunk("chunk-size line is not hexadecimal", frame, ts, line_start=True)
        elif size >= NEGATIVE_CHUNK:
            self.owner.wire_negative_chunk(self.side, size, frame, ts)
            self.state = W_CLOSE  # as NeuVector: the rest is body
        elif size == 0:
            self.state, self.scan = W_TRAILER, 0
        else:
            self.state, self.remaining = W_CHUNK_DATA, size
        return pos

    def _chunks(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        """_chunk_size's fast path: chunks whose size line, data and CRLF all lie in `data` from pos go to the
        owner one by one, as the states W_CHUNK_SIZE, W_CHUNK_DATA and W_CHUNK_END would pass them, without a
        step of the state loop each. Returns where the general states go on: the data of a chunk cut by the end
        of `data` (in W_CHUNK_DATA), the last chunk (size 0), or anything unusual (a bad size line, no CRLF)."""
        n = len(data)
        wire_body, side = self.owner.wire_body, self.side
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            size = chunk_size(data[pos:nl])
            if not size or size >= NEGATIVE_CHUNK:
                break  # a bad line, the last chunk or a negative size: the general state says what it means
            end = nl + 1 + size
            if data[end : end + 2] == b"\r\n":
                after = end + 2
            elif data[end : end + 1] == b"\n":
                after = end + 1
            elif end + 1 >= n:  # the data (or its CRLF) runs past this chunk: W_CHUNK_DATA reads on
                self.state, self.remaining = W_CHUNK_DATA, size
                return nl + 1
            else:
                break  # not followed by CRLF
            wire_body(side, data[nl + 1 : end], frame, ts)
            self.remaining = 0
            pos = after
        return pos

    def _chunk_end(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        """The CRLF after chunk data (a bare LF is accepted)."""
        c = data[pos]
        if c == 0x0A:
            self.state = W_CHUNK_SIZE
            self.buf.clear()
            return pos + 1
        if c == 0x0D and not self.buf:
            self.buf.append(c)
            return pos + 1
        self._bad_chunk("chunk data not followed by CRLF", frame, ts, line_start=False)
        return pos

    def _trailer(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        buf = self.buf
        prior = len(buf)
        take = min(len(data) - pos, self.owner.max_head + 3 - prior)
        buf += data[pos : pos + take]
        end = block_end(buf, self.scan, empty_ok=True)
        self.scan = len(buf)
        if end < 0:
            if len(buf) > self.owner.max_head:
                self.owner.wire_fault(self.side, "header-too-long", "trailer section too long", frame, ts)
                self.owner.wire_end(self.side, frame, ts)
                self.state = W_DEAD
                self.owner.done = True
                return len(data)
            return pos + take
        buf.clear()
        self.state = W_START
        self.owner.wire_end(self.side, frame, ts)
        return pos + end - prior

    def _frame_head(self, data: bytes, pos: int) -> int:
        """`$` channel length(16): RTSP interleaved binary data, skipped."""
        need = 4 - len(self.buf)
        self.buf += data[pos : pos + need]
        pos += min(need, len(data) - pos)
        if len(self.buf) == 4:
            self.remaining = int.from_bytes(self.buf[2:4], "big")
            self.buf.clear()
            self.state = W_FRAME_DATA if self.remaining else W_START
        return pos

    def _skip(self, data: bytes, pos: int, frame: int, ts: int) -> int:
        """Search for a line that parses as a start line (mid-stream flows, after a gap)."""
        buf = self.buf
        prior = len(buf)
        chunk = data[pos:]
        buf += chunk
        check = self.check
        if prior or self.line_start:
            start = 0
        else:
            nl = buf.find(b"\n")
            start = nl + 1 if nl >= 0 else len(buf)
        n = len(buf)
        while start < n:
            verdict = check(buf, start)
            if verdict > 0:
                self.skipped = 0
                if start < prior:  # the line began in bytes held from before: they go on into the head
                    del buf[prior:]
                    self.state, self.scan, self.checked = W_HEAD, 0, False
                    self.frame, self.ts = frame, ts
                    return pos
                buf.clear()
                self.state = W_START
                return pos + start - prior
            nl = buf.find(b"\n", start)
            if nl < 0:
                if verdict == PARTIAL and n - start <= MAX_SKIP_LINE:
                    del buf[:start]  # an unfinished line that may still become a start line
                    self._skipped(len(chunk))
                    return len(data)
                break
            start = nl + 1
        self.line_start = n > 0 and buf[n - 1] == 0x0A
        buf.clear()
        self._skipped(len(chunk))
        return len(data)

    def _skipped(self, count: int) -> None:
        self.skipped += count
        if self.skipped > MAX_SKIP:
            self.state = W_DEAD
            self.buf.clear()
            self.owner.wire_dead(self.side)


class TextParser(Parser):
    """What the HTTP-style parsers share: two Wires and the callbacks they make. Subclasses say which start
    lines each side may send (`checks`) and what a head means (`wire_head`)."""

    name = "http"  # prefix of the anomaly reasons
    text_protocol: TextProtocol = HTTP
    frames = False  # RTSP interleaved binary frames
    max_head = MAX_HEAD  # start line + header block at most

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        client_check, server_check = self.checks()
        mid = ctx.midstream
        self.wires = (Wire(self, CLIENT, client_check, mid, self.frames),
                      Wire(self, SERVER, server_check, mid, self.frames))

    def checks(self):
        t = self.text_protocol
        return request_check(t.proto, t.majors), status_check(t.proto, t.majors)

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if not self.done:
            self.wires[side].feed(data, frame, ts_ns)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        if not self.done:
            self.wires[side].gap(missing, frame, ts_ns)

    def anomaly_once(self, reason: str, message: str, frame: int, ts: int) -> None:
        """A protocol violation, reported once per flow as `name-reason` (the same fault tends to repeat)."""
        super().anomaly_once(f"{self.name}-{reason}", message, frame, ts)

    def wire_fault(self, side: int, fault: str, message: str, frame: int, ts: int) -> None:
        """A Wire found that side's bytes off the protocol ("bad-start-line", "header-too-long", "bad-chunk")."""
        self.anomaly_once(fault, message, frame, ts)

    # -- wire callbacks --

    def wire_head(self, side: int, raw: bytes, frame: int, ts: int, end_frame: int, end_ts: int) -> tuple[int, int]:
        raise NotImplementedError

    def wire_body(self, side: int, data: bytes, frame: int, ts: int) -> None:
        """Body bytes (de-chunked) of the message being read on that side."""

    def wire_body_gap(self, side: int) -> None:
        """Bytes of that side's body were lost."""

    def wire_end(self, side: int, frame: int, ts: int) -> None:
        """That side's message is complete."""

    def wire_lost_head(self, side: int) -> None:
        """A head was cut by a gap or is too long: that message is lost."""

    def wire_negative_chunk(self, side: int, size: int, frame: int, ts: int) -> None:
        """A chunk size with bit 31 set."""

    def wire_dead(self, side: int) -> None:
        if all(w.dead for w in self.wires):
            self.done = True


def content_encoding(head: Head) -> str | None:
    """The Content-Encoding fields joined (the body decoder reads the codings from it), None without any."""
    values = head.fields.get("content-encoding")
    return b",".join(values).decode("latin-1") if values else None


def length_framing(head: Head) -> int | None:
    """Content-Length when all its values agree and are decimal (RFC 9110 §8.6), else None."""
    values = head.fields.get("content-length")
    if values is not None and len(values) == 1 and values[0].isdigit() and len(values[0]) <= 18:
        return int(values[0])  # the common case: one field, one number
    values = {v.strip() for raw in head.all("content-length") for v in raw.split(b",")}
    if len(values) != 1:
        return None
    (v,) = values
    return int(v) if v.isdigit() and len(v) <= 18 else None


# ---- parsing: HTTP/1.x transactions (Zeek http.log, Suricata http event) ----

MAX_URI = 2048  # characters of the request target kept in an event
MAX_PENDING = 256  # requests waiting for their response; beyond, the oldest is reported without it
STRUTS_WINDOW = 2048  # request body bytes NeuVector matches for CVE-2017-9805
# NeuVector dpi_http.c APACHE_STRUTS_PCRE (threat 2023), on application/xml request bodies
STRUTS_RE = re.compile(rb"""class=["']java\.lang\.ProcessBuilder["']>[\s\n\r]*<command>[\s\n\r]*"""
                       rb"""<string>\/bin\/sh<\/string>""")
SLOWLORIS_HEAD_NS = 3_000_000_000  # dpi_http.c HTTP_HEADER_COMPLETE_TIMEOUT: request head within 3 s
SLOWLORIS_BODY_NS = 30_000_000_000  # HTTP_BODY_FIRST_TIMEOUT: first body bytes within 30 s of the head
NO_BODY_STATUS = frozenset({204, 304})  # RFC 9112 §6.3 (and 1xx)

# server products (NeuVector dpi_http.c: Server header prefixes, X-Etcd-Cluster-Id, /wp-content/ URLs);
# an application label outranks the web server it runs on
SERVER_PRODUCTS = ((b"apache", "apache"), (b"nginx", "nginx"), (b"jetty", "jetty"), (b"couchbase", "couchbase"),
                   (b"couchdb", "couchdb"))
PRODUCT_RANK = {"apache": 1, "nginx": 1, "jetty": 1, "nodejs": 1, "couchbase": 2, "couchdb": 2, "etcd": 2,
                "wordpress": 2}


def host_name(value: bytes | None) -> str | None:
    """The Host header (RFC 9110 §7.2) without its port; an IPv6 literal keeps its brackets."""
    if value is None:
        return None
    v = value.strip()
    if v.startswith(b"["):
        end = v.find(b"]")
        v = v[: end + 1] if end > 0 else v
    else:
        v = v.partition(b":")[0]
    return text(v)


def authority_host(target: bytes) -> bytes | None:
    """The host of an absolute-form request target (RFC 9112 §3.2.2), for requests that have no Host."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or not scheme.isalpha():
        return None
    return rest.split(b"/", 1)[0].rpartition(b"@")[2] or None


def server_product(value: bytes) -> str | None:
    v = value.lstrip().lower()
    for prefix, name in SERVER_PRODUCTS:
        if v.startswith(prefix):
            return name
    first = v.split(b" ", 1)[0] if v else b""
    return "nodejs" if first.startswith(b"node") else None


class _Txn:
    """One request and its response, filled as they are read."""

    __slots__ = ("fields", "frame", "ts", "method", "req_done", "resp_done", "struts", "serial")

    def __init__(self, fields: dict[str, Any], frame: int, ts: int, method: str | None, serial: int) -> None:
        self.fields, self.frame, self.ts, self.method, self.serial = fields, frame, ts, method, serial
        self.req_done = self.resp_done = False
        self.struts: bytearray | None = None  # first bytes of an application/xml request body


class _Body:
    """The body being read on one side: whose it is and its content decoder (made when the first body bytes
    come: most messages have none)."""

    __slots__ = ("txn", "key", "encoding", "decoder", "broken", "view")

    def __init__(self, txn: _Txn, key: str, encoding: str | None,
                 view: httpforms.BodyView | None = None) -> None:
        self.txn, self.key, self.encoding, self.broken = txn, key, encoding, False
        self.decoder: BodyDecoder | None = None
        self.view = view  # a request body's view for the rules beside "body" (httpforms): form, JSON, XML


REQUEST_FIELDS = ("method", "host", "uri", "version", "user_agent", "referrer", "xff", "request_content_type",
                  "request_body_len")
RESPONSE_FIELDS = ("status", "status_msg", "server", "response_content_type", "response_body_len")


class HttpParser(TextParser):
    """HTTP/1.x: one event per request/response pair, in order (pipelining: a queue of requests waiting for
    their responses); a request never answered is reported at the end. Bodies are de-chunked and their content
    codings undone for the rules (capped, see httpbody). Threats 2013, 2014, 2015 and 2023 as NeuVector's."""

    name = "http"
    text_protocol = HTTP

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.pending: list[_Txn] = []  # requests whose response has not begun (<= MAX_PENDING: a list is enough)
        self.dropped = 0  # requests let go from a full queue: the next responses are theirs
        self.open: dict[int, _Txn] = {}  # every transaction not yet reported, by serial
        self.serial = 0
        self.body: list[_Body | None] = [None, None]
        self.rank = 0  # of the product reported so far
        self.slow_head_reported = -1  # ts of the request head already reported as slow
        self.body_wait: int | None = None  # ts of a request head whose body has not begun (slowloris body)

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.done:
            return
        if self.wires[CLIENT].state == W_HEAD or self.body_wait is not None:  # (what _slowloris looks at)
            self._slowloris(frame, ts_ns)
        self.wires[side].feed(data, frame, ts_ns)

    def finish(self) -> None:
        body = self.body[CLIENT]
        if body is not None and body.view is not None:  # a request body the capture ended in: its fields so far
            body.view.end(self.out, body.txn.frame, body.txn.ts)
        for txn in list(self.open.values()):
            self._emit(txn)

    # -- heads --

    def wire_head(self, side: int, raw: bytes, frame: int, ts: int, end_frame: int, end_ts: int) -> tuple[int, int]:
        head = Head(raw)
        if head.too_many:
            self.anomaly_once("too-many-headers", f"more than {MAX_FIELDS} header fields", frame, ts)
        if "x-etcd-cluster-id" in head.fields:
            self._product("etcd")
        self.out.content("header", side, head.block, frame, ts)
        if side == CLIENT:
            return self._request(head, frame, ts, end_frame, end_ts)
        return self._response(head, frame, ts)

    def _request(self, head: Head, frame: int, ts: int, end_frame: int, end_ts: int) -> tuple[int, int]:
        method, target, version = request_parts(head.line, self.text_protocol.proto)
        decoded = unquote_to_bytes(target) if b"%" in target else target
        self.out.content("url", CLIENT, decoded, frame, ts)
        if b"/wp-content/" in target[:64]:
            self._product("wordpress")
        uri = text(target, MAX_URI)
        get = head.fields.get
        host = get("host")
        fields: dict[str, Any] = {
            "method": method, "host": host_name(host[0] if host else authority_host(target)), "uri": uri}
        if decoded is not target:
            uri_decoded = text(decoded, MAX_URI)
            if uri_decoded != uri:
                fields["uri_decoded"] = uri_decoded
        # one store per field (no keyword dict per request); the response's (RESPONSE_FIELDS) are None until it comes
        fields["version"] = version
        fields["user_agent"] = first_text(get("user-agent"))
        fields["referrer"] = first_text(get("referer"))
        fields["xff"] = first_text(get("x-forwarded-for"))
        fields["request_content_type"] = first_text(get("content-type"))
        fields["request_body_len"] = 0
        fields["status"] = fields["status_msg"] = fields["server"] = fields["response_content_type"] = None
        fields["response_body_len"] = None
        self.head_fields(CLIENT, head, fields)
        txn = self._open(fields, frame, ts, method)
        self.pending.append(txn)
        if len(self.pending) > MAX_PENDING:
            self._emit(self.pending.pop(0))
            self.dropped += 1
        if end_ts - ts >= SLOWLORIS_HEAD_NS and self.slow_head_reported != ts:
            self._slow_head(ts, end_ts, end_frame)
        framing, length = self._framing(CLIENT, head, frame, ts, request=True)
        if framing == LENGTH and length > 0:
            if method not in ("GET", "HEAD"):
                self.body_wait = end_ts
            ctype = (head.get("content-type") or b"").lstrip().lower()
            if ctype.startswith(b"application/xml"):
                txn.struts = bytearray()
        view = httpforms.view_for(head.get("content-type"), self.out) if framing != NO_BODY else None
        self.body[CLIENT] = _Body(txn, "request_body_len", content_encoding(head), view)
        return framing, length

    def _response(self, head: Head, frame: int, ts: int) -> tuple[int, int]:
        version, status, reason = status_parts(head.line, self.text_protocol.proto)
        if status is not None and 100 <= status < 200 and status != 101:
            return NO_BODY, 0  # interim response (RFC 9110 §15.2): the final one follows
        get = head.fields.get
        servers = get("server")
        server = servers[0] if servers else None
        product = server_product(server) if server is not None else None
        if product is None:
            powered = get("x-powered-by")
            if powered is not None and b"express" in powered[0].lower():
                product = "nodejs"
        if product:
            self._product(product)
        if self.pending and not self.dropped:
            txn = self.pending.pop(0)
        else:  # the request was not seen (capture started late, or lost), or was let go from a full queue
            self.dropped = max(self.dropped - 1, 0)
            fields: dict[str, Any] = dict.fromkeys(REQUEST_FIELDS)
            fields["request_body_len"] = 0
            txn = self._open(fields, frame, ts, None)
            txn.req_done = True
        f = txn.fields
        f["status"] = status
        f["status_msg"] = text(reason)
        f["server"] = text(server)
        f["response_content_type"] = first_text(get("content-type"))
        f["response_body_len"] = 0
        f["version"] = version  # as Zeek: the version of the reply
        self.head_fields(SERVER, head, f)
        framing, length = self._framing(SERVER, head, frame, ts, request=False)
        if status == 101 or (txn.method == "CONNECT" and status is not None and 200 <= status < 300):
            txn.resp_done = True  # the connection now carries another protocol, or a tunnel
            self._maybe_emit(txn)
            self.done = True
            return STOP, 0
        if txn.method == "HEAD" or status in NO_BODY_STATUS:
            framing, length = NO_BODY, 0
        self.body[SERVER] = _Body(txn, "response_body_len", content_encoding(head))
        return framing, length

    def head_fields(self, side: int, head: Head, fields: dict[str, Any]) -> None:
        """A hook for subclasses: more event fields from a request's (CLIENT) or a response's (SERVER) head."""

    def _framing(self, side: int, head: Head, frame: int, ts: int, request: bool) -> tuple[int, int]:
        """Body framing by RFC 9112 §6.3, with NeuVector's checks on Content-Length (threats 2013, 2014)."""
        fields = head.fields
        if "transfer-encoding" not in fields:  # the common cases: no body, or one plain Content-Length
            values = fields.get("content-length")
            if values is None:
                return (NO_BODY, 0) if request else (UNTIL_CLOSE, 0)
            if len(values) == 1 and values[0].isdigit() and len(values[0]) <= 18:
                return LENGTH, int(values[0])
        lengths = [v.strip() for raw in head.all("content-length") for v in raw.split(b",")]
        codings = [c.strip().lower() for raw in head.all("transfer-encoding") for c in raw.split(b",") if c.strip()]
        negative = [v for v in lengths if v.startswith(b"-")]
        if negative:
            self.out.threat(2013, f"Content-Length header has negative value {text(negative[0], 40)}", side, frame, ts)
            return UNTIL_CLOSE, 0
        if len(set(lengths)) > 1:
            self.out.threat(2014, "Two Content-Length headers with different values", side, frame, ts)
            return UNTIL_CLOSE, 0
        if codings:
            if lengths:
                self.anomaly_once("cl-with-chunked", "Content-Length and Transfer-Encoding in one message "
                                  "(request smuggling vector, RFC 9112 §6.3)", frame, ts)
            if codings[-1] == b"chunked":
                return CHUNKED, 0
            return UNTIL_CLOSE, 0  # RFC 9112 §6.3: not chunked last, so the length is unknown
        if lengths:
            n = length_framing(head)
            if n is None:
                self.anomaly_once("bad-content-length", "Content-Length is not a decimal number", frame, ts)
                return UNTIL_CLOSE, 0
            return LENGTH, n
        return (NO_BODY, 0) if request else (UNTIL_CLOSE, 0)

    # -- bodies --

    def wire_body(self, side: int, data: bytes, frame: int, ts: int) -> None:
        body = self.body[side]
        if body is None:
            return
        if side == CLIENT and self.body_wait is not None:
            if ts - self.body_wait >= SLOWLORIS_BODY_NS:
                self._slow_body(ts, frame)
            self.body_wait = None
        txn = body.txn
        txn.fields[body.key] += len(data)
        if body.broken:
            return
        dec = body.decoder
        if dec is None:
            dec = body.decoder = BodyDecoder.for_header(body.encoding)
        before = dec.status
        for piece in dec.feed(data):
            self.out.content("body", side, piece, frame, ts)
            if body.view is not None:
                body.view.feed(self.out, piece, frame, ts)
            if side == CLIENT and txn.struts is not None and len(txn.struts) < STRUTS_WINDOW:
                txn.struts += piece[: STRUTS_WINDOW - len(txn.struts)]
                if len(txn.struts) == STRUTS_WINDOW:
                    self._struts(txn, frame, ts)
        stopped = dec.stopped(before)
        if stopped is not None:
            self.anomaly_once(*stopped, frame, ts)

    def wire_body_gap(self, side: int) -> None:
        body = self.body[side]
        if body is not None:
            body.broken = True  # the decoder cannot go on past lost bytes

    def wire_end(self, side: int, frame: int, ts: int) -> None:
        body = self.body[side]
        self.body[side] = None
        if body is None:
            return
        txn = body.txn
        if side == CLIENT:
            if body.view is not None:
                body.view.end(self.out, frame, ts)
            self.body_wait = None
            if txn.struts is not None and len(txn.struts) < STRUTS_WINDOW:
                self._struts(txn, frame, ts)
            txn.req_done = True
        else:
            txn.resp_done = True
        self._maybe_emit(txn)

    def wire_lost_head(self, side: int) -> None:
        self.body[side] = None

    def wire_negative_chunk(self, side: int, size: int, frame: int, ts: int) -> None:
        self.out.threat(2013, f"chunk size 0x{size:x} has bit 31 set", side, frame, ts)

    def _struts(self, txn: _Txn, frame: int, ts: int) -> None:
        window, txn.struts = txn.struts, None
        if window and STRUTS_RE.search(window):
            self.out.threat(2023, "XStream ProcessBuilder /bin/sh payload in an application/xml request body "
                            "(CVE-2017-9805)", CLIENT, frame, ts)

    # -- slowloris (threat 2015, off by default): on capture time --

    def _slowloris(self, frame: int, ts: int) -> None:
        w = self.wires[CLIENT]
        if w.state == W_HEAD and ts - w.ts >= SLOWLORIS_HEAD_NS and self.slow_head_reported != w.ts:
            self._slow_head(w.ts, ts, frame)
        if self.body_wait is not None and ts - self.body_wait >= SLOWLORIS_BODY_NS:
            self._slow_body(ts, frame)

    def _slow_head(self, start: int, now: int, frame: int) -> None:
        self.slow_head_reported = start
        self.out.threat(2015, f"request header not complete after {(now - start) / 1e9:.1f}s (threshold 3s)",
                        CLIENT, frame, now)

    def _slow_body(self, now: int, frame: int) -> None:
        waited, self.body_wait = now - (self.body_wait or 0), None
        self.out.threat(2015, f"first body bytes after {waited / 1e9:.1f}s (threshold 30s)", CLIENT, frame, now)

    # -- transactions --

    def _product(self, name: str) -> None:
        rank = PRODUCT_RANK[name]
        if rank > self.rank:
            self.rank = rank
            self.out.product(name)

    def _open(self, fields: dict[str, Any], frame: int, ts: int, method: str | None) -> _Txn:
        self.serial += 1
        txn = _Txn(fields, frame, ts, method, self.serial)
        self.open[txn.serial] = txn
        return txn

    def _maybe_emit(self, txn: _Txn) -> None:
        if txn.req_done and txn.resp_done:
            self._emit(txn)

    def _emit(self, txn: _Txn) -> None:
        if self.open.pop(txn.serial, None) is not None:
            if not self.open:
                self.open = {}  # an emptied dict keeps its table; a new one has none (the connection may stay open)
            self.out.event(txn.fields, txn.frame, txn.ts)


# ---- an HTTP/1.x REST API on a product's own port (Consul 8500, Elasticsearch 9200) ----

API_PRODUCT_RANK = max(PRODUCT_RANK.values()) + 1  # the API's product header outranks every other label


def api_value(kind: str, value: bytes) -> Any:
    """A header value as an event field: "int", "bool", "text", "present" (True: a secret is never logged) or
    "scheme" (an Authorization header's scheme only, never the credentials)."""
    v = value.strip()
    if kind == "int":
        return int(v) if v.isdigit() and len(v) < 19 else None
    if kind == "bool":
        return v.lower() == b"true"
    if kind == "present":
        return True
    if kind == "scheme":
        return text(v.split(b" ", 1)[0], 32)
    return text(v)


class HttpApi(HttpParser):
    """HTTP/1.x of a product's REST API, read by that protocol's parser (consul, elasticsearch): everything
    HttpParser does (pairing, framing, decoding, threats, content for the rules), plus the API's own headers.
    `request_headers` / `response_headers` map a lower-case header name to (event field, api_value kind);
    `redact` names query parameters whose values are secrets (REDACTED in uri and uri_decoded; the rules
    still see the real target); `product_header` names a response header naming the server product (it outranks
    the web server's). Host is kept as sent (with its port). Anomalies are http-api-*, a bad start line being
    bad-request / bad-response and an over-long head long-head. `ctx` is the embedding parser's flow (default:
    a TCP flow read from its start)."""

    name = "http-api"
    max_head = 32 << 10  # an API's heads are small: a longer one is an anomaly
    FAULTS = {"bad-start-line": ("bad-request", "bad-response"), "header-too-long": ("long-head", "long-head")}

    def __init__(self, out: ParserOutput, request_headers: dict[str, tuple[str, str]],
                 response_headers: dict[str, tuple[str, str]], redact: tuple[str, ...] = (),
                 product_header: str | None = None, ctx: FlowContext | None = None) -> None:
        super().__init__(out, ctx or FlowContext("tcp", 0, 0, False))
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.redact = tuple(r.encode() + b"=" for r in redact)
        self.product_header = product_header

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> bool:  # type: ignore[override]
        """HttpParser.feed; False once it wants no more bytes (a tunnel, an upgrade, a stream it gave up on)."""
        super().feed(side, data, frame, ts_ns)
        return not self.done

    def wire_fault(self, side: int, fault: str, message: str, frame: int, ts: int) -> None:
        self.anomaly_once(self.FAULTS.get(fault, (fault, fault))[side], message, frame, ts)

    def head_fields(self, side: int, head: Head, fields: dict[str, Any]) -> None:
        if side == SERVER:
            self._mapped(fields, head, self.response_headers)
            value = head.get(self.product_header) if self.product_header else None
            if value:
                self.rank = API_PRODUCT_RANK
                self.out.product(text(value, 64))
            return
        host = head.get("host")
        if host is not None:
            fields["host"] = text(host, 256)
        if self.redact:
            target = start_line(head.line, self.text_protocol.proto)[2]
            fields["uri"] = text(self._redacted(target), MAX_URI)
            decoded = text(self._redacted(unquote_to_bytes(target)), MAX_URI)
            if decoded != fields["uri"]:
                fields["uri_decoded"] = decoded
            else:
                fields.pop("uri_decoded", None)
        self._mapped(fields, head, self.request_headers)

    @staticmethod
    def _mapped(fields: dict[str, Any], head: Head, wanted: dict[str, tuple[str, str]]) -> None:
        for name, (field, kind) in wanted.items():
            value = head.get(name)
            if value is not None:
                fields[field] = api_value(kind, value)

    def _redacted(self, target: bytes) -> bytes:
        """The target with the values of the secret query parameters replaced by REDACTED."""
        for key in self.redact:
            at = target.find(key)
            while at >= 0:
                if at > 0 and target[at - 1 : at] in (b"?", b"&"):
                    stop = len(target)
                    for sep in (b"&", b"#"):
                        i = target.find(sep, at)
                        stop = min(stop, i) if i >= 0 else stop
                    target = target[: at + len(key)] + b"REDACTED" + target[stop:]
                at = target.find(key, at + len(key))
        return target


SPEC = ProtocolSpec(
    name="http",
    transports=("tcp",),
    ports=(80, 8080, 8000, 8008, 8081, 8888, 3128),
    probe=probe,
    description="HTTP/1.x: request line METHOD SP URI SP HTTP/1.x, answered by a status line HTTP/1.x NNN",
    parser=HttpParser,
    extracts="per request/response: method, host, uri (uri_decoded), version, user_agent, referrer, xff, content "
             "types, body lengths, status, status_msg, server; server product; threats 2013/2014/2015/2023",
)
