"""Elasticsearch (and OpenSearch) binary transport protocol, port 9300.

Spec: elasticsearch server/src/main/java/org/elasticsearch/transport/TcpHeader.java and
InboundDecoder: marker bytes 'E' 'S', int32 message size (-1 = ping), int64 request id, status byte (bits:
response, error, compressed, handshake), int32 version id (major*1000000 + minor*10000 + ...). A response
carries the request's id. Proof: a request and a response with the same id, two chained messages, or on the
last call one complete header. Messages are framed, so mid-stream flows are handled the same way, and
either side may be the one seen. The HTTP REST API (port 9200) is HTTP/1.1: on that server port an HTTP
request line is claimed here (consul.http_api), so that this parser reads it.
"""
from __future__ import annotations

import re
import struct
from functools import partial
from typing import Any

from .base import (
    CLIENT,
    SERVER,
    FlowContext,
    Parser,
    ParserOutput,
    ProtocolSpec,
    Verdict,
    guarded,
)
from .consul import http_api
from .framing import Cursor, Framer, Short
from .http import HttpApi

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

PING = b"ES\xff\xff\xff\xff"
MAX_SIZE = 1 << 27  # far above http.max_content_length (100 MiB)
MAX_VERSION = 200_000_000  # ES ids are major*1e6+...; OpenSearch sets bit 27 (0x08000000)
MAX_REQUEST_ID = 1 << 40  # request ids count up from 0 on each node
HEADER = 19  # 'ES' + size(4) + request id(8) + status(1) + version(4)
HTTP_API_PORT = 9200


def _message(b: bytes, off: int = 0) -> tuple[Verdict, int, int]:
    """One message at b[off:]: (verdict, request id or -1 for a ping, end offset)."""
    head = b[off : off + HEADER]
    if len(head) < 6:
        ok = PING.startswith(head[:2]) and (len(head) < 3 or head[2] <= MAX_SIZE >> 24 or head[2] == 0xFF)
        return (MAYBE if ok else NO), 0, 0
    if head[:6] == PING:
        return YES, -1, off + 6
    size = struct.unpack_from(">i", head, 2)[0]
    if head[:2] != b"ES" or not 13 <= size < MAX_SIZE:
        return NO, 0, 0
    if len(head) < HEADER:
        return (NO if len(head) > 14 and head[14] > 0x0F else MAYBE), 0, 0
    rid, status, version = struct.unpack_from(">qBi", head, 6)
    if not 0 <= rid < MAX_REQUEST_ID or status > 0x0F or not 1_000_000 <= version < MAX_VERSION:
        return NO, 0, 0
    return YES, rid, off + 6 + size


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    if ctx.server_port == HTTP_API_PORT:
        return http_api(client, server)  # the REST API: an HTTP request line on port 9200 (see consul.http_api)
    found = []
    for b in (client, server):
        if not b:
            continue
        v, rid, end = _message(b)
        if v != YES:
            return v
        if end < len(b):  # a second chained message
            v2 = _message(b, end)[0]
            if v2 == YES:
                return YES
            if v2 == NO:
                return NO
        found.append(rid)
    if len(found) == 2:  # a valid header each way (a response normally repeats the request id)
        return YES
    return YES if found and ctx.final else MAYBE


probe = guarded(_probe)


# ---- parsing: transport requests paired with their responses by request id; or the HTTP API ----
# Transport (TcpHeader.java, InboundDecoder / InboundMessage, ThreadContext.writeTo, StreamOutput): after the
# 19-byte fixed header, from 7.6.0 an int32 variable header size; the variable header is the thread context
# (request headers: vint count + (string, string); response headers: vint count + (string, string list)),
# then for a request the features (string array, 6.3.0+) and the action name. Strings are a vint count of
# UTF-16 units, then their (modified) UTF-8 bytes. A compressed message (status bit 2) before 7.6.0 has its
# variable header compressed too: its action is not read. Bodies are never decoded. Pings are not events.
# HTTP API: one event per request/response (http.HttpApi), with X-Opaque-Id and X-elastic-product.

MESSAGE_LIMIT = 1 << 16  # messages up to this are read whole; longer ones from their first MESSAGE_KEEP bytes
MESSAGE_KEEP = 1 << 14  # the thread context carries authentication headers: a few KiB
MAX_PENDING = 1024
MAX_MAP = 64  # thread context entries walked
STATUS_RESPONSE, STATUS_ERROR, STATUS_COMPRESSED, STATUS_HANDSHAKE = 0x01, 0x02, 0x04, 0x08
VERSION_HEADER_SIZE = 7_060_099  # Version.V_7_6_0: the variable header size field appears
VERSION_FEATURES = 6_030_099  # Version.V_6_3_0: requests carry features before the action
OPENSEARCH_MASK = 0x08000000  # OpenSearch version ids are Elasticsearch-style ids XOR this bit
ACTION = re.compile(r"[a-z_]+:[\w/\[\]*.\-]+")
ES_REQUEST_HEADERS = {"authorization": ("auth_scheme", "scheme"), "x-opaque-id": ("opaque_id", "text")}
ES_RESPONSE_HEADERS = {"x-elastic-product": ("product", "text")}
BASE_FIELDS = ("action", "request_id", "version", "status", "handshake", "compressed", "request_len",
               "response_len")


class StreamInput(Cursor):
    """Elasticsearch StreamInput primitives over one message (readVInt is Cursor.uvarint). Raises Short."""

    __slots__ = ()

    def uvarint(self) -> int:
        """Cursor.uvarint, a one-byte value (counts and lengths below 128: nearly all) read in one step."""
        p = self.p
        if p < len(self.b) and self.b[p] < 0x80:
            self.p = p + 1
            return self.b[p]
        return super().uvarint()

    def string(self, cap: int = 1024) -> str:
        """readString: a count of UTF-16 units, each written as 1-3 bytes (surrogates separately). ASCII text
        (action names, most header names and values) is one byte per unit: taken in one step."""
        units = self.uvarint()
        start = self.p
        ascii_run = self.b[start : start + units]
        if len(ascii_run) == units and ascii_run.isascii():
            self.p = start + units
            return ascii_run[: cap * 4].decode("utf-8", "replace")[:cap]
        return self._string_units(units, start, cap)

    def _string_units(self, units: int, start: int, cap: int) -> str:
        """string's general case, unit by unit from `start`: multi-byte characters, or a string cut short."""
        for _ in range(units):
            lead = self.take(1)[0] >> 4
            if lead in (12, 13):
                self.take(1)
            elif lead == 14:
                self.take(2)
            elif lead >= 8:
                raise Short  # a continuation byte or 0xF0+: not how StreamOutput writes a char
        return self.b[start : self.p][: cap * 4].decode("utf-8", "replace")[:cap]

    def skip_thread_context(self) -> None:
        for _ in range(self._count()):  # request headers
            self.string()
            self.string()
        for _ in range(self._count()):  # response headers: a name and a list of values
            self.string()
            for _ in range(self._count()):
                self.string()

    def _count(self) -> int:
        n = self.uvarint()
        if n > MAX_MAP:
            raise Short
        return n


def version_text(vid: int) -> str:
    """A version id (major*1000000 + minor*10000 + revision*100 + build) as text; OpenSearch's prefixed."""
    prefix = ""
    if vid & OPENSEARCH_MASK:
        vid ^= OPENSEARCH_MASK
        prefix = "opensearch-"
    return f"{prefix}{vid // 1_000_000}.{vid // 10_000 % 100}.{vid // 100 % 100}"


def request_action(msg: bytes, version: int, compressed: bool) -> str | None:
    """The action name of a request message (msg from 'E'), or None when it cannot be read."""
    if compressed and version < VERSION_HEADER_SIZE:
        return None
    r = StreamInput(msg, HEADER)
    try:
        if version >= VERSION_HEADER_SIZE:
            r.take(4)  # variable header size
        r.skip_thread_context()
        after_context = r.p
        if version >= VERSION_FEATURES:
            for _ in range(min(r.uvarint(), MAX_MAP)):
                r.string()
        action = r.string(256)
        if ACTION.fullmatch(action):
            return action
        r.p = after_context  # a version whose requests carry no features
        action = r.string(256)
        return action if ACTION.fullmatch(action) else None
    except Short:
        return None


def _length(h: bytes) -> int:
    if h[:2] != b"ES":
        return 0
    size = struct.unpack_from(">i", h, 2)[0]
    if size == -1:
        return 6  # a ping: the six bytes alone
    return 6 + size if 13 <= size < MAX_SIZE else 0


class ElasticsearchParser(Parser):
    """Transport requests and responses paired by request id (the side that asked keys the request, since
    both nodes of a connection may ask); or, on the HTTP port, the REST API."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.http = HttpApi(out, ES_REQUEST_HEADERS, ES_RESPONSE_HEADERS, product_header="x-elastic-product",
                            ctx=ctx) if ctx.server_port == HTTP_API_PORT else None
        self.framers = tuple(Framer(6, _length, MESSAGE_LIMIT, MESSAGE_KEEP) for _ in (CLIENT, SERVER))
        self.pending: dict[tuple[int, int], tuple[dict[str, Any], int, int]] = {}

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.http is not None:
            self.done = not self.http.feed(side, data, frame, ts_ns)
            return
        if self.lost[side]:
            return
        framer = self.framers[side]
        if not framer.feed(data, frame, ts_ns, partial(self._message, side)):
            self.anomaly_once("elasticsearch-bad-header", "no 'ES' marker or a bad length: framing lost", frame, ts_ns)
            self.lose(side)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        if self.http is not None:
            self.http.gap(side, missing, frame, ts_ns)
            self.done = self.http.done
        elif not self.framers[side].gap(missing):
            self.lose(side)

    def _message(self, side: int, data: bytes, length: int, frame: int, ts_ns: int) -> int:
        """One message (its first MESSAGE_KEEP bytes when longer than MESSAGE_LIMIT), for Framer.feed: nothing
        is skipped after it (0)."""
        if length == 6 or len(data) < HEADER:
            return 0  # a ping
        rid, status, version = struct.unpack_from(">qBi", data, 6)
        if status & STATUS_RESPONSE:
            item = self.pending.pop((1 - side, rid), None)
            if item is None:
                f = dict.fromkeys(BASE_FIELDS)
                f.update(request_id=rid, version=version_text(version))
                item = (f, frame, ts_ns)
            f = item[0]
            f.update(status="error" if status & STATUS_ERROR else "ok", response_len=length)
            f["compressed"] = bool(f["compressed"]) or bool(status & STATUS_COMPRESSED)
            f["handshake"] = bool(f["handshake"]) or bool(status & STATUS_HANDSHAKE)
            self.out.event(*item)
            return 0
        f = dict.fromkeys(BASE_FIELDS)
        f.update(action=request_action(data, version, bool(status & STATUS_COMPRESSED)), request_id=rid,
                 version=version_text(version), handshake=bool(status & STATUS_HANDSHAKE),
                 compressed=bool(status & STATUS_COMPRESSED), request_len=length)
        key = (side, rid)
        if key in self.pending:
            self.out.event(*self.pending.pop(key))
        if len(self.pending) >= MAX_PENDING:
            self.out.event(*self.pending.pop(next(iter(self.pending))))
        self.pending[key] = (f, frame, ts_ns)
        return 0

    def finish(self) -> None:
        if self.http is not None:
            self.http.finish()
        for item in self.pending.values():
            self.out.event(*item)
        self.pending.clear()


SPEC = ProtocolSpec(
    name="elasticsearch",
    transports=("tcp",),
    ports=(9300,),
    probe=probe,
    description="Elasticsearch transport: 'ES' + size + request id + status + version; response id = request id; "
                "HTTP API requests on 9200",
    parser=ElasticsearchParser,
    extracts="transport: action, request id, version, status ok/error, handshake/compressed flags, sizes, paired "
             "by request id; HTTP API: method, uri, status, X-Opaque-Id, product",
)
