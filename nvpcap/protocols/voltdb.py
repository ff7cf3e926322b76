"""VoltDB client wire protocol (port 21212; admin port 21211).

Spec: VoltDB "Client Wire Protocol" document (docs.voltdb.com, VoltDB wire protocol v1) and the Go client
(github.com/VoltDB/voltdb-client-go, voltdbclient/serialization_helper.go): every message is an int32 length
(counting the protocol version byte) + a version byte (0 or 1). The login request (version 1 adds a
password-hash-scheme byte: 0 SHA-1, 1 SHA-256) carries the service string "database" (int32 length 8), the
user name string and the password hash. The login response: version, authentication result (0 = success),
host id, connection id, cluster start timestamp, leader IPv4, build string. The service string makes the
login request proof by itself on the last call; with a well-formed response it is proof at once.
"""
from __future__ import annotations

import socket
import struct
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
from .framing import Cursor, Framer, Message, Short
from .sqlinjection import MAX_STATEMENT

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

SERVICE = b"\x00\x00\x00\x08database"
MAX_MSG = 1 << 26


def _login(c: bytes) -> Verdict:
    if len(c) >= 4 and not 1 + len(SERVICE) + 4 <= struct.unpack_from(">I", c)[0] <= 4096:
        return NO
    if len(c) < 5:
        return MAYBE if c[:2] in (b"", b"\0", b"\0\0") else NO
    if c[4] not in (0, 1):
        return NO
    at = 6 if c[4] == 1 else 5
    if c[4] == 1 and len(c) > 5 and c[5] not in (0, 1):
        return NO
    got = c[at : at + len(SERVICE)]
    if got != SERVICE[: len(got)]:
        return NO
    if len(got) < len(SERVICE):
        return MAYBE
    user = c[at + len(SERVICE) : at + len(SERVICE) + 4]
    if len(user) == 4 and struct.unpack_from(">i", user)[0] not in range(-1, 256):
        return NO
    return YES


def _response(s: bytes) -> Verdict:
    if len(s) < 6:
        return MAYBE if s[:2] in (b"", b"\0", b"\0\0") else NO
    length, version, result = struct.unpack_from(">IBb", s)
    if not 2 <= length <= MAX_MSG or version > 1:
        return NO
    if result != 0:  # a failure code; the message is short
        return YES if -10 <= result <= 10 and length <= 64 else NO
    if len(s) < 4 + 30:
        return MAYBE
    blen = struct.unpack_from(">i", s, 4 + 26)[0]  # build string length after host/conn/timestamp/leader
    return YES if 0 <= blen and length == 30 + blen else NO


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    if not client:
        return MAYBE if not server else NO  # the client logs in first
    vc = _login(client)
    if vc != YES:
        return vc
    if not server:
        return YES if ctx.final else MAYBE
    vs = _response(server)
    return YES if vs == YES or (vs == MAYBE and ctx.final) else vs


probe = guarded(_probe)


# ---- parsing: the login exchange, then procedure invocations paired with their responses ----
# No capture of VoltDB traffic was available: the layouts below follow the VoltDB "Client Wire Protocol"
# document and the clients' code (voltdb-client-go io.go / network_writer.go / response.go; the Java
# client's ProcedureInvocation and StoredProcedureInvocation.initFromBuffer for the invocation versions):
#   message      int32 length (of what follows), then a version byte
#   login        [v1: hash scheme byte] string service "database", string user, password hash (20 or 32 bytes,
#                never read out)
#   login reply  byte result (0 success), int host id, long connection id, long cluster start (ms),
#                int leader IPv4, string build
#   invocation   version = invocation type: 0 string proc, long handle, params; 1 batch-timeout type byte
#                (1: int timeout) then as 0; 2 string proc, long handle, byte extension count, extensions
#                (type byte, length byte, value), params (short count, (type byte, value)*)
#   response     long handle, byte fields present (0x20 status string, 0x40 exception, 0x80 app status
#                string), byte status, [string], byte app status, [string], int round trip, [exception],
#                short result count
# Strings are int32 length + UTF-8 (-1 = null). @AdHoc-style procedures' first parameter (an SQL string) is
# the statement, handed to the rules engine.

MESSAGE_LIMIT = 1 << 16  # messages up to this are read whole; longer ones from their first MESSAGE_KEEP bytes
MESSAGE_KEEP = 1 << 14
MAX_PENDING = 1024
MAX_TEXT = 1024
HASH_SCHEMES = {0: "SHA-1", 1: "SHA-256"}  # login v1 password hash scheme (ClientAuthScheme)
LOGIN_RESULTS = {0: "SUCCESS", -1: "AUTHENTICATION_FAILURE", 1: "MAX_CONNECTIONS_LIMIT_ERROR",
                 2: "WIRE_PROTOCOL_TIMEOUT_ERROR", 3: "WIRE_PROTOCOL_FORMAT_ERROR",
                 4: "AUTHENTICATION_FAILURE_DUE_TO_REJOIN", 5: "EXPORT_DISABLED_REJECTION"}  # ClientInterface
STATUSES = {1: "SUCCESS", -1: "USER_ABORT", -2: "GRACEFUL_FAILURE", -3: "UNEXPECTED_FAILURE",
            -4: "CONNECTION_LOST", -5: "SERVER_UNAVAILABLE", -6: "CONNECTION_TIMEOUT", -7: "RESPONSE_UNKNOWN",
            -8: "TXN_RESTART", -9: "OPERATIONAL_FAILURE", -10: "TXN_MISPARTITIONED"}  # ClientResponse
STATUS_STRING, EXCEPTION, APP_STATUS_STRING = 0x20, 0x40, 0x80  # fields present bits
ASYNC_HANDLES = {(1 << 63) - 2: "topology", (1 << 63) - 3: "procedures"}  # server notifications (Distributer)
SQL_PROCEDURES = {"@AdHoc", "@AdHoc_RO_MP", "@AdHoc_RO_SP", "@AdHoc_RW_MP", "@AdHoc_RW_SP", "@Explain",
                  "@AdHocSpForTest", "@AdHocLarge"}
VT_STRING = 9  # VoltType.STRING
BASE_FIELDS = ("message_type", "procedure", "client_handle", "status", "status_string")


class Reader(Cursor):
    """VoltDB's serialization (big-endian, signed) over one message. Raises Short past the end."""

    __slots__ = ()

    def byte(self) -> int:
        return self.int(">b")

    def long(self) -> int:
        return self.int(">q")

    def string(self, cap: int = MAX_TEXT) -> str | None:
        n = self.int()
        if n < 0:
            return None
        return self.take(n)[: cap * 4].decode("utf-8", "replace")[:cap]


def parse_login(r: Reader, version: int) -> dict[str, Any] | None:
    """The login request (after the version byte), or None when it is not one."""
    scheme = r.byte() if version == 1 else 0
    if r.string(16) != "database":
        return None
    return {"message_type": "login", "service": "database", "user": r.string(256),
            "hash_scheme": HASH_SCHEMES.get(scheme, str(scheme))}


def parse_login_response(r: Reader) -> dict[str, Any]:
    result = r.byte()
    out: dict[str, Any] = {"status": LOGIN_RESULTS.get(result, str(result)), "auth_result": result}
    if result == 0:
        out["host_id"] = r.int()
        out["connection_id"] = r.long()
        out["cluster_start"] = r.long()
        out["leader"] = socket.inet_ntoa(r.take(4))
        out["build"] = r.string()
    return out


def parse_invocation(r: Reader, version: int) -> tuple[dict[str, Any], bytes | None]:
    """A procedure invocation (after its version byte): fields, and the SQL text of an @AdHoc call."""
    if version == 1 and r.byte() == 1:  # batch timeout type: 1 = a timeout value follows
        r.int()
    f: dict[str, Any] = {"message_type": "invocation", "procedure": r.string(256), "client_handle": r.long()}
    if version == 2:
        for _ in range(min(r.byte(), 30)):  # extensions: type, length, value
            r.take(1)
            r.take(r.take(1)[0])
    sql = None
    if f["procedure"] in SQL_PROCEDURES:
        count = r.int(">h")
        if count > 0 and r.byte() == VT_STRING:
            n = r.int()
            raw = r.b[r.p : r.p + max(n, 0)][: MAX_STATEMENT * 4]
            sql = raw
            f["query"] = raw.decode("utf-8", "replace")[:MAX_STATEMENT]
    return f, sql


def parse_response(r: Reader) -> tuple[int, dict[str, Any]]:
    """An invocation response (after its version byte): (client handle, fields)."""
    handle = r.long()
    out: dict[str, Any] = {}
    try:
        present, status = r.take(1)[0], r.byte()
        out["status"], out["status_code"] = STATUSES.get(status, str(status)), status
        if present & STATUS_STRING:
            out["status_string"] = r.string()
        out["app_status"] = r.byte()
        if present & APP_STATUS_STRING:
            out["app_status_string"] = r.string()
        r.int()  # cluster round trip time
        if present & EXCEPTION:
            r.take(r.int())
        out["results"] = r.int(">h")
    except Short:
        pass
    return handle, out


def _length(h: bytes) -> int:
    n = struct.unpack_from(">I", h)[0]
    return 4 + n if 1 <= n <= MAX_MSG else 0


class VoltDbParser(Parser):
    """The login (one event with its response), then one event per invocation, paired by client handle."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = tuple(Framer(4, _length, MESSAGE_LIMIT, MESSAGE_KEEP) for _ in (CLIENT, SERVER))
        self.login: tuple[dict[str, Any], int, int] | None = None
        self.logged_in = False  # the server's first message (the login response) was read
        self.client_started = False
        self.pending: dict[int, tuple[dict[str, Any], int, int]] = {}

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        for msg in framer.push(data, frame, ts_ns):
            if side == CLIENT:
                self._client(msg)
            else:
                self._server(msg)
        if framer.broken:
            self.anomaly_once("voltdb-bad-length", "message length out of range: framing lost", frame, ts_ns)
            self.lose(side)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        if not self.framers[side].gap(missing):
            self.lose(side)

    def _client(self, msg: Message) -> None:
        version = msg.data[4] if len(msg.data) > 4 else -1
        r = Reader(msg.data, 5)
        first, self.client_started = not self.client_started, True
        try:
            if first and version in (0, 1):
                login = parse_login(Reader(msg.data, 5), version)
                if login is not None:
                    self.login = (dict.fromkeys(BASE_FIELDS) | login, msg.frame, msg.ts_ns)
                    return
            f, sql = parse_invocation(r, version) if version in (0, 1, 2) else ({}, None)
        except Short:
            return
        if not f:
            return
        if sql:
            self.out.content("sql", CLIENT, sql, msg.frame, msg.ts_ns)
        item = (dict.fromkeys(BASE_FIELDS) | f, msg.frame, msg.ts_ns)
        handle = f["client_handle"]
        if handle in self.pending:
            self.out.event(*self.pending.pop(handle))
        if len(self.pending) >= MAX_PENDING:
            self.out.event(*self.pending.pop(next(iter(self.pending))))
        self.pending[handle] = item

    def _server(self, msg: Message) -> None:
        r = Reader(msg.data, 5)
        if not self.logged_in:
            self.logged_in = True
            try:
                reply = parse_login_response(r)
            except Short:
                reply = {}
            item = self.login or (dict.fromkeys(BASE_FIELDS) | {"message_type": "login"}, msg.frame, msg.ts_ns)
            item[0].update(reply)
            self.login = None
            self.out.event(*item)
            return
        try:
            handle, reply = parse_response(r)
        except Short:
            return
        item = self.pending.pop(handle, None)
        if item is None:
            f = dict.fromkeys(BASE_FIELDS) | {"message_type": "response", "client_handle": handle}
            if handle in ASYNC_HANDLES:
                f["message_type"] = "notification"
                f["notification"] = ASYNC_HANDLES[handle]
            item = (f, msg.frame, msg.ts_ns)
        item[0].update(reply)
        self.out.event(*item)

    def finish(self) -> None:
        if self.login is not None:
            self.out.event(*self.login)
            self.login = None
        for item in self.pending.values():
            self.out.event(*item)
        self.pending.clear()


SPEC = ProtocolSpec(
    name="voltdb",
    transports=("tcp",),
    ports=(21212, 21211),
    probe=probe,
    description="VoltDB: login request (length, version, 'database' service string) and login response",
    parser=VoltDbParser,
    extracts="login (user, hash scheme, result, host/connection id, build; never the password hash); each "
             "procedure invocation with its response (procedure, client handle, status, @AdHoc SQL)",
)
