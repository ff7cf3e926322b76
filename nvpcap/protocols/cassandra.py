"""Apache Cassandra: CQL native protocol and the internode messaging protocol.

Spec: cassandra/doc/native_protocol_v{3,4,5}.spec, section 2 "Frame header": version byte (bit 0x80 = response,
low bits = version), flags, stream id (int16 from v3, int8 in v1/v2), opcode, int32 body length; section 2.4
lists which opcodes a client and a server may send. As NeuVector (dpi_cassandra.c) does, a valid frame from
each side (with the direction bit right and the same stream id) is proof; on the last call a client
OPTIONS (empty body) or STARTUP (string map naming CQL_VERSION) alone is too. Internode connections start
with the messaging magic CA 55 2D FA (net/MessagingService PROTOCOL_MAGIC).
"""
from __future__ import annotations

import struct
from typing import Any

from .base import (
    CLIENT,
    FlowContext,
    Parser,
    ParserOutput,
    ProtocolSpec,
    Verdict,
    guarded,
)
from .framing import Cursor, Framer, Message, Short
from .sqlinjection import MAX_STATEMENT

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

MAX_BODY = 256 * 1024 * 1024
INTERNODE_MAGIC = b"\xca\x55\x2d\xfa"
REQUEST_OPS = {0x01, 0x05, 0x07, 0x09, 0x0A, 0x0B, 0x0D, 0x0F}  # STARTUP OPTIONS QUERY PREPARE EXECUTE ...
RESPONSE_OPS = {0x00, 0x02, 0x03, 0x06, 0x08, 0x0C, 0x0E, 0x10}  # ERROR READY AUTHENTICATE SUPPORTED ...


def _frame(b: bytes, response: bool) -> tuple[Verdict, int, int, int]:
    """One frame header at the start of b: (verdict, version, stream id, opcode)."""
    if not b:
        return MAYBE, 0, 0, 0
    version = b[0] & 0x7F
    if bool(b[0] & 0x80) != response or not 1 <= version <= 5:
        return NO, 0, 0, 0
    hlen = 9 if version >= 3 else 8
    if len(b) > 1 and b[1] & ~0x1F:  # flags: compression, tracing, custom payload, warning, beta
        return NO, 0, 0, 0
    if len(b) < hlen:
        return MAYBE, 0, 0, 0
    if hlen == 9:
        stream, op, length = struct.unpack_from(">hBI", b, 2)
    else:
        stream, op, length = struct.unpack_from(">bBI", b, 2)
    if op not in (RESPONSE_OPS if response else REQUEST_OPS) or length > MAX_BODY:
        return NO, 0, 0, 0
    if not response and stream < 0:  # negative stream ids are reserved for server-pushed events
        return NO, 0, 0, 0
    return YES, version, stream, op


def _lone_request(c: bytes, version: int, op: int) -> bool:
    """OPTIONS with an empty body, or STARTUP whose [string map] names CQL_VERSION."""
    hlen = 9 if version >= 3 else 8
    length = struct.unpack_from(">I", c, hlen - 4)[0]
    if op == 0x05:
        return length == 0
    if op == 0x01 and len(c) >= hlen + length:
        return b"\x00\x0bCQL_VERSION" in c[hlen : hlen + length]
    return False


def _check(c: bytes, s: bytes, final: bool) -> Verdict:
    vc, version, stream, op = _frame(c, False)
    if vc != YES:
        return vc if c or not s else NO
    if not s:
        return YES if final and _lone_request(c, version, op) else MAYBE
    vs, sversion, sstream, sop = _frame(s, True)
    if vs != YES:
        return vs
    # the server answers with the same stream id, in the client's version (or an ERROR in its own)
    if sstream == stream and (sversion == version or sop == 0x00):
        return YES
    return NO


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    if client[:4] == INTERNODE_MAGIC or server[:4] == INTERNODE_MAGIC:
        return YES
    v = _check(client, server, ctx.final)
    if v == NO and not server and len(client) < 4 and INTERNODE_MAGIC.startswith(client):
        v = MAYBE  # the start of the internode magic
    if ctx.midstream and v != YES:  # the mid-stream client/server guess may be swapped
        v = max(v, _check(server, client, ctx.final))
    return v


probe = guarded(_probe)


# ---- parsing: CQL native protocol v3-v5 frames, each request with its response (same stream id) ----
# Spec: cassandra/doc/native_protocol_v{3,4,5}.spec: §2 frame header (§2.2 flags: compression 0x01, tracing
# 0x02, custom payload 0x04, warning 0x08, beta 0x10), §3 notations ([string], [long string], [bytes], maps),
# §4.1 requests, §4.2 responses, §9 error codes. v5 (§2 "Frames and segments"): once the server answers a v5
# STARTUP with READY or AUTHENTICATE, every frame travels inside CRC-protected segments; this parser does not
# unwrap segments, so it reports the STARTUP exchange and stops there (done). A frame whose compression flag is
# set has an LZ4/Snappy body: its header is reported, its body not read.

FRAME_LIMIT = 1 << 16  # frames up to this are read whole; longer ones from their first FRAME_KEEP bytes
FRAME_KEEP = 1 << 14  # a query text of MAX_STATEMENT characters fits
MAX_PENDING = 1024  # requests waiting for their response (stream ids are 15 bits)
MAX_PREPARED = 256  # prepared statement ids remembered (id -> query text) for EXECUTE
MAX_ITEMS = 64  # items kept of a list (batch statements, event types, warnings)
MAX_COLUMNS = 1024  # result columns read to reach the row count
MAX_DEPTH = 8  # nesting of column type options
MAX_TEXT = 1024  # characters kept of a [string] (keyspace, error message, ...)
COMPRESSED, TRACING, CUSTOM_PAYLOAD, WARNING = 0x01, 0x02, 0x04, 0x08  # §2.2 flags

OPCODES = {0x00: "ERROR", 0x01: "STARTUP", 0x02: "READY", 0x03: "AUTHENTICATE", 0x05: "OPTIONS",
           0x06: "SUPPORTED", 0x07: "QUERY", 0x08: "RESULT", 0x09: "PREPARE", 0x0A: "EXECUTE", 0x0B: "REGISTER",
           0x0C: "EVENT", 0x0D: "BATCH", 0x0E: "AUTH_CHALLENGE", 0x0F: "AUTH_RESPONSE", 0x10: "AUTH_SUCCESS"}
ERROR, STARTUP, READY, AUTHENTICATE, SUPPORTED, QUERY, RESULT = 0x00, 0x01, 0x02, 0x03, 0x06, 0x07, 0x08
PREPARE, EXECUTE, REGISTER, EVENT, BATCH, AUTH_RESPONSE = 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0F
CONSISTENCY = {0: "ANY", 1: "ONE", 2: "TWO", 3: "THREE", 4: "QUORUM", 5: "ALL", 6: "LOCAL_QUORUM",
               7: "EACH_QUORUM", 8: "SERIAL", 9: "LOCAL_SERIAL", 10: "LOCAL_ONE"}  # §3 [consistency]
RESULT_KINDS = {1: "Void", 2: "Rows", 3: "Set_keyspace", 4: "Prepared", 5: "Schema_change"}  # §4.2.5
BATCH_TYPES = {0: "LOGGED", 1: "UNLOGGED", 2: "COUNTER"}  # §4.1.7
ERRORS = {0x0000: "Server_error", 0x000A: "Protocol_error", 0x0100: "Bad_credentials", 0x1000: "Unavailable",
          0x1001: "Overloaded", 0x1002: "Is_bootstrapping", 0x1003: "Truncate_error", 0x1100: "Write_timeout",
          0x1200: "Read_timeout", 0x1300: "Read_failure", 0x1400: "Function_failure", 0x1500: "Write_failure",
          0x1600: "CDC_write_failure", 0x1700: "CAS_write_unknown", 0x2000: "Syntax_error",
          0x2100: "Unauthorized", 0x2200: "Invalid", 0x2300: "Config_error", 0x2400: "Already_exists",
          0x2500: "Unprepared"}  # §9
STARTUP_OPTIONS = {"CQL_VERSION": "cql_version", "COMPRESSION": "compression", "DRIVER_NAME": "driver_name",
                   "DRIVER_VERSION": "driver_version"}  # §4.1.1 (DRIVER_* are sent by the DataStax drivers)
SUPPORTED_OPTIONS = {"CQL_VERSION": "supported_cql_versions", "COMPRESSION": "supported_compression",
                     "PROTOCOL_VERSIONS": "supported_protocol_versions"}  # §4.2.4
BASE_FIELDS = ("protocol", "version", "stream", "opcode", "response_opcode", "query", "keyspace", "consistency",
               "result_kind", "error_code", "error_message")


class Reader(Cursor):
    """The §3 notations over one frame body. Raises Short past the end."""

    __slots__ = ()

    def byte(self) -> int:
        return self.take(1)[0]

    def short(self) -> int:
        return self.int(">H")

    def string(self, cap: int = MAX_TEXT) -> str:
        return _text(self.take(self.short()), cap)

    def long_string(self) -> bytes:
        """A [long string]; one cut by a truncated frame gives its first bytes (and the next read fails)."""
        n = self.int()
        if n < 0:
            raise Short
        raw = self.b[self.p : self.p + n]
        self.p += n
        return raw

    def bytes_(self) -> bytes | None:
        n = self.int()
        return None if n < 0 else self.take(n)

    def short_bytes(self) -> bytes:
        return self.take(self.short())

    def string_list(self) -> list[str]:
        n = self.short()
        return [self.string() for _ in range(n)][:MAX_ITEMS]

    def string_map(self) -> dict[str, str]:
        return {self.string(): self.string() for _ in range(self.short())}

    def string_multimap(self) -> dict[str, list[str]]:
        return {self.string(): self.string_list() for _ in range(self.short())}

    def skip_bytes_map(self) -> None:
        for _ in range(self.short()):
            self.string()
            self.bytes_()

    def skip_option(self, depth: int = 0) -> None:
        """A column type [option] (§4.2.5.2), nested types included, read and dropped."""
        if depth > MAX_DEPTH:
            raise Short
        kind = self.short()
        if kind == 0x0000:  # custom: a Java class name
            self.string()
        elif kind in (0x0020, 0x0022):  # list, set
            self.skip_option(depth + 1)
        elif kind == 0x0021:  # map
            self.skip_option(depth + 1)
            self.skip_option(depth + 1)
        elif kind == 0x0030:  # UDT: keyspace, name, (field name, type)*
            self.string()
            self.string()
            for _ in range(self.short()):
                self.string()
                self.skip_option(depth + 1)
        elif kind == 0x0031:  # tuple
            for _ in range(self.short()):
                self.skip_option(depth + 1)


def _text(raw: bytes, cap: int = MAX_TEXT) -> str:
    return raw[: cap * 4].decode("utf-8", "replace")[:cap]


def _consistency(r: Reader) -> str:
    level = r.short()
    return CONSISTENCY.get(level, str(level))


def _plain_user(token: bytes | None) -> str | None:
    """The user name of a SASL PLAIN token (RFC 4616: [authzid] NUL authcid NUL passwd), as Cassandra's
    PasswordAuthenticator expects. The password is never read out."""
    if not token or token.count(b"\0") != 2:
        return None
    return _text(token.split(b"\0")[1], 256) or None


def parse_request(op: int, r: Reader, version: int, prepared: dict[bytes, str], f: dict[str, Any]) -> bytes | None:
    """Fill `f` from a request body; returns the statement bytes to hand to the rules engine, if any."""
    if op == STARTUP:
        for key, value in r.string_map().items():
            if key.upper() in STARTUP_OPTIONS:
                f[STARTUP_OPTIONS[key.upper()]] = value
    elif op in (QUERY, PREPARE):
        raw = r.long_string()
        f["query"] = _text(raw, MAX_STATEMENT)
        if op == QUERY:
            f["consistency"] = _consistency(r)
        return raw[: MAX_STATEMENT * 4]
    elif op == EXECUTE:
        qid = r.short_bytes()
        f["prepared_id"] = qid.hex()
        f["query"] = prepared.get(qid)
        if version >= 5:
            r.short_bytes()  # result_metadata_id
        f["consistency"] = _consistency(r)
    elif op == BATCH:
        return _batch(r, prepared, f)
    elif op == REGISTER:
        f["events"] = r.string_list()
    elif op == AUTH_RESPONSE:
        user = _plain_user(r.bytes_())
        if user is not None:
            f["user"] = user
    return None


def _batch(r: Reader, prepared: dict[bytes, str], f: dict[str, Any]) -> bytes | None:
    """§4.1.7: type, n, then n (kind, query string or prepared id, values), then consistency."""
    kind = r.byte()
    f["batch_type"] = BATCH_TYPES.get(kind, str(kind))
    n = f["batch_count"] = r.short()
    statements: list[str] = []
    f["statements"] = statements
    sql = []
    for _ in range(n):
        if r.byte() == 0:
            raw = r.long_string()
            text = _text(raw, MAX_STATEMENT)
            sql.append(raw[: MAX_STATEMENT * 4])
        else:
            text = prepared.get(r.short_bytes()) or "<prepared>"
        if len(statements) < MAX_ITEMS:
            statements.append(text)
        for _ in range(r.short()):
            n_value = r.int()
            if n_value > 0:
                r.take(n_value)
    f["consistency"] = _consistency(r)
    return b";\n".join(sql) if sql else None


def parse_response(op: int, r: Reader, version: int, f: dict[str, Any]) -> bytes | None:
    """Fill `f` from a response body; returns a prepared statement id (RESULT Prepared), else None."""
    if op == ERROR:
        code = r.int()
        f["error_code"], f["error_name"] = code, ERRORS.get(code)
        f["error_message"] = r.string()
    elif op == AUTHENTICATE:
        f["authenticator"] = r.string()
    elif op == SUPPORTED:
        for key, values in r.string_multimap().items():
            if key.upper() in SUPPORTED_OPTIONS:
                f[SUPPORTED_OPTIONS[key.upper()]] = values
    elif op == RESULT:
        kind = r.int()
        f["result_kind"] = RESULT_KINDS.get(kind, str(kind))
        if kind == 2:
            _rows(r, version, f)
        elif kind == 3:
            f["keyspace"] = r.string()
        elif kind == 4:
            return r.short_bytes()
        elif kind == 5:  # change_type, target, options (the keyspace first)
            f["schema_change"] = r.string()
            f["schema_target"] = r.string()
            f["keyspace"] = r.string()
    elif op == EVENT:
        f["event_type"] = r.string()
    return None


def _rows(r: Reader, version: int, f: dict[str, Any]) -> None:
    """§4.2.5.2 Rows metadata (to reach the row count): flags, column count, paging state, (v5) new
    metadata id, the global table spec or each column's, names and types."""
    flags, columns = r.int(), r.int()
    if flags & 0x0002:
        r.bytes_()  # paging state
    if version >= 5 and flags & 0x0008:
        r.short_bytes()  # new_metadata_id
    if not flags & 0x0004:  # metadata present
        if columns < 0 or columns > MAX_COLUMNS:
            raise Short
        if flags & 0x0001:
            f["keyspace"], f["table"] = r.string(), r.string()
        for _ in range(columns):
            if not flags & 0x0001:
                f["keyspace"], f["table"] = r.string(), r.string()
            r.string()
            r.skip_option()
    f["rows"] = r.int()


def _body(r: Reader, flags: int, response: bool) -> None:
    """Skip what §2.2 puts before the message body: tracing id (responses), warnings, custom payload."""
    if response and flags & TRACING:
        r.take(16)
    if response and flags & WARNING:
        r.string_list()
    if flags & CUSTOM_PAYLOAD:
        r.skip_bytes_map()


def _frame_length(head: int):
    def length(h: bytes) -> int:
        size = struct.unpack_from(">I", h, head - 4)[0]
        return head + size if 1 <= h[0] & 0x7F <= 5 and size <= MAX_BODY else 0
    return length


class CassandraParser(Parser):
    """Requests paired with their responses by stream id (server EVENTs, stream -1, stand alone)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers: list[Framer | None] = [None, None]
        self.pending: dict[int, tuple[dict[str, Any], int, int]] = {}
        self.prepared: dict[bytes, str] = {}
        self.waiting_prepare: dict[int, str] = {}  # stream -> query text of a PREPARE not yet answered
        self.v5_startup: set[int] = set()  # streams of v5 STARTUPs: their READY switches to segments
        self.held: list[list[tuple[bytes, int, int]]] = [[], []]  # each side's first bytes, until 4

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        if not data:
            return
        if framer is None:
            held = self.held[side]
            held.append((data, frame, ts_ns))
            start = b"".join(d for d, _, _ in held)
            if len(start) < 4:
                return  # the internode magic or a frame's first bytes: decide on four
            if start[:4] == INTERNODE_MAGIC:
                self._internode(held[0][1], held[0][2])
                return
            head = 9 if start[0] & 0x7F >= 3 else 8  # v1/v2 have a one-byte stream id
            framer = self.framers[side] = Framer(head, _frame_length(head), FRAME_LIMIT, FRAME_KEEP)
            self.held[side] = []
        else:
            held = [(data, frame, ts_ns)]
        for chunk, chunk_frame, chunk_ts in held:
            for msg in framer.push(chunk, chunk_frame, chunk_ts):
                self._frame(msg)
                if self.done:
                    return
        if framer.broken:
            self.anomaly_once("cassandra-bad-frame", "frame version or length out of range: framing lost", frame, ts_ns)
            self.lose(side)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        if framer is None or not framer.gap(missing):
            self.lose(side)

    def _internode(self, frame: int, ts_ns: int) -> None:
        """Internode messaging (MessagingService magic): not CQL; named and left."""
        self.out.event({"protocol": "internode"}, frame, ts_ns)
        self.done = True

    def _frame(self, msg: Message) -> None:
        data = msg.data
        version, flags = data[0] & 0x7F, data[1]
        response = bool(data[0] & 0x80)
        if version >= 3:
            stream, op = struct.unpack_from(">hB", data, 2)
            body = data[9:]
        else:
            stream, op = struct.unpack_from(">bB", data, 2)
            body = data[8:]
        if op not in OPCODES:
            self.anomaly_once("cassandra-unknown-opcode", f"opcode {op:#x}", msg.frame, msg.ts_ns)
            return
        if response:
            self._response(version, flags, stream, op, body, msg)
        else:
            self._request(version, flags, stream, op, body, msg)

    def _request(self, version: int, flags: int, stream: int, op: int, body: bytes, msg: Message) -> None:
        f: dict[str, Any] = dict.fromkeys(BASE_FIELDS)
        f.update(protocol="cql", version=version, stream=stream, opcode=OPCODES[op])
        sql = None
        if not flags & COMPRESSED:
            r = Reader(body)
            try:
                _body(r, flags, False)
                sql = parse_request(op, r, version, self.prepared, f)
            except Short:
                pass
        if sql:
            self.out.content("sql", CLIENT, sql, msg.frame, msg.ts_ns)
        if op == PREPARE and f["query"] is not None:
            self.waiting_prepare[stream] = f["query"]
        if op == STARTUP and version >= 5:
            self.v5_startup.add(stream)
        if len(self.pending) >= MAX_PENDING:
            self._emit(self.pending.pop(next(iter(self.pending))))
        if stream in self.pending:
            self._emit(self.pending.pop(stream))
        self.pending[stream] = (f, msg.frame, msg.ts_ns)

    def _response(self, version: int, flags: int, stream: int, op: int, body: bytes, msg: Message) -> None:
        found = self.pending.pop(stream, None) if stream >= 0 else None
        if found is None:
            f: dict[str, Any] = dict.fromkeys(BASE_FIELDS)
            f.update(protocol="cql", version=version, stream=stream)
            found = (f, msg.frame, msg.ts_ns)
        f = found[0]
        f["response_opcode"] = OPCODES[op]
        if not flags & COMPRESSED:
            r = Reader(body)
            try:
                _body(r, flags, True)
                qid = parse_response(op, r, version, f)
            except Short:
                qid = None
            query = self.waiting_prepare.pop(stream, None)
            if qid is not None:
                f["prepared_id"] = qid.hex()
                if query is not None and len(self.prepared) < MAX_PREPARED:
                    self.prepared[qid] = query
        self._emit(found)
        if op in (READY, AUTHENTICATE) and stream in self.v5_startup:
            self.finish()  # v5 segments from here on (see the section comment)
            self.done = True

    def _emit(self, item: tuple[dict[str, Any], int, int]) -> None:
        f, frame, ts = item
        self.out.event(f, frame, ts)

    def finish(self) -> None:
        for item in self.pending.values():
            self._emit(item)
        self.pending.clear()


SPEC = ProtocolSpec(
    name="cassandra",
    transports=("tcp",),
    ports=(9042, 7000, 7001),
    probe=probe,
    description="Cassandra: CQL native frames v1-v5 (direction bit, opcode table, stream id) or internode magic",
    parser=CassandraParser,
    extracts="per CQL request/response (same stream id): opcode, query text, keyspace, consistency, result kind, "
             "rows, error code/message, STARTUP options, authenticator, user (PLAIN); internode connections named",
)
