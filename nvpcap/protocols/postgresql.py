"""PostgreSQL frontend/backend protocol v3.

Spec: PostgreSQL docs, chapter "Frontend/Backend Protocol", sections "Message Flow" and "Message Formats".
A connection starts with an untyped message: int32 length + int32 code: StartupMessage (3.x, then
NUL-terminated key/value pairs ending in an empty key), SSLRequest (8, 80877103), GSSENCRequest (8, 80877104)
or CancelRequest (16, 80877102). The server answers 'S'/'N' (SSL), 'G'/'N' (GSS), or with a typed message:
'R' Authentication, 'E' ErrorResponse, 'v' NegotiateProtocolVersion. NeuVector (dpi_postgresql.c) uses the
same rules. Every later message is typed: 1 type byte + int32 length (counting itself); mid-stream flows are
identified by walking these messages (frontend and backend have separate type tables).
"""
from __future__ import annotations

import struct

from . import sqlinjection
from .base import CLIENT, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict, guarded
from .framing import Framer
from .sqlinjection import cap

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
MAX_MSG = 1 << 26

# type -> exact length (None = variable), per "Message Formats"
FRONTEND = {b"Q": None, b"P": None, b"B": None, b"E": None, b"D": None, b"C": None, b"S": 4, b"H": 4, b"X": 4,
            b"F": None, b"d": None, b"c": 4, b"f": None, b"p": None}
BACKEND = {b"R": None, b"S": None, b"K": None, b"Z": 5, b"T": None, b"D": None, b"C": None, b"E": None,
           b"N": None, b"1": 4, b"2": 4, b"3": 4, b"n": 4, b"s": 4, b"I": 4, b"t": None, b"A": None,
           b"G": None, b"H": None, b"W": None, b"d": None, b"c": 4, b"V": None, b"v": None}
# messages whose length or content is checked (see _valid): a walk must contain one to prove anything
FRONTEND_CHECKED = {b"Q", b"C", b"D", b"E", b"S", b"H", b"X", b"c"}
BACKEND_CHECKED = {b"Z", b"R", b"K", b"E", b"N", b"C", b"S", b"1", b"2", b"3", b"n", b"s", b"I", b"c"}


def _startup(c: bytes) -> Verdict:
    """The client's first (untyped) message."""
    if len(c) < 8:
        if len(c) >= 4 and not 8 <= struct.unpack_from(">I", c)[0] <= 10000:
            return NO
        return MAYBE if c[:1] in (b"", b"\0") else NO
    length, code = struct.unpack_from(">II", c)
    if code in (SSL_REQUEST, GSS_REQUEST):
        return YES if length == 8 else NO
    if code == CANCEL_REQUEST:
        return YES if length == 16 else NO
    if code >> 16 != 3 or code & 0xFFFF > 2 or not 9 <= length <= 10000:  # protocol 3.0 .. 3.2
        return NO
    params = c[8:length]
    first = params.split(b"\0", 1)[0]
    if not all(0x20 < x < 0x7F for x in first[:64]):
        return NO
    if len(c) < length:
        return MAYBE
    if not params.endswith(b"\0\0") or not first:
        return NO
    fields = params[:-2].split(b"\0")
    return YES if len(fields) % 2 == 0 and b"user" in fields[::2] else NO


def _first_answer(c: bytes, s: bytes) -> Verdict:
    """The server's answer to the startup-phase request."""
    code = struct.unpack_from(">I", c, 4)[0]
    if code in (SSL_REQUEST, GSS_REQUEST) and s[:1] in (b"S", b"N", b"G"):
        return YES if s[:1] != b"G" or code == GSS_REQUEST else NO
    if s[:1] not in (b"R", b"E", b"v"):
        return NO
    v, _, strong = _walk(s, True)
    return YES if v != NO and strong else v


def _valid(t: bytes, body: bytes, backend: bool) -> bool:
    """Content checks on a complete message where the format makes them cheap."""
    if t == b"Q":  # Query: one C string
        return body.endswith(b"\0") and b"\0" not in body[:-1]
    if t == b"Z":  # ReadyForQuery: transaction status
        return body in (b"I", b"T", b"E")
    if t == b"R":  # Authentication: request code 0..12
        return len(body) >= 4 and struct.unpack_from(">I", body)[0] <= 12
    if t == b"K":  # BackendKeyData: pid + key
        return len(body) >= 8
    if backend and t in (b"E", b"N"):  # Error/Notice fields: code letter + C string, ending in a NUL
        return body.endswith(b"\0") and body[:1].isalpha()
    if backend and t == b"C":  # CommandComplete: printable tag
        return body.endswith(b"\0") and all(0x20 <= x < 0x7F for x in body[:-1])
    if backend and t == b"S":  # ParameterStatus: name, value
        return body.endswith(b"\0") and body.count(b"\0") == 2
    if not backend and t in (b"C", b"D"):  # Close / Describe: 'S' or 'P' + name
        return body[:1] in (b"S", b"P") and body.endswith(b"\0")
    if not backend and t == b"E":  # Execute: portal name + int32 max rows
        return len(body) >= 5 and body.find(b"\0") == len(body) - 5
    return True


def _walk(b: bytes, backend: bool) -> tuple[Verdict, int, int]:
    """Walk typed messages from the start of b: (NO or MAYBE, complete valid messages, checked ones)."""
    table, checked = (BACKEND, BACKEND_CHECKED) if backend else (FRONTEND, FRONTEND_CHECKED)
    off = count = strong = 0
    while off < len(b) and count < 8:
        t = b[off : off + 1]
        if t not in table:
            return NO, count, strong
        if len(b) < off + 5:
            break
        length = struct.unpack_from(">I", b, off + 1)[0]
        exact = table[t]
        if length < 4 or length > MAX_MSG or (exact is not None and length != exact):
            return NO, count, strong
        if len(b) < off + 1 + length:
            break
        if not _valid(t, b[off + 5 : off + 1 + length], backend):
            return NO, count, strong
        count += 1
        strong += t in checked
        off += 1 + length
    return MAYBE, count, strong


def _typed(c: bytes, s: bytes, final: bool) -> Verdict:
    """Mid-stream: typed frontend messages from the client and backend messages from the server. Proof: a
    message each way, or three chained one way (two on the last call), with one content-checked message."""
    vc, nc, kc = _walk(c, False)
    vs, ns, ks = _walk(s, True)
    if NO in (vc, vs):
        return NO
    if not kc + ks:
        return MAYBE
    if (nc and ns) or (not s and nc >= (2 if final else 3)) or (not c and ns >= (2 if final else 3)):
        return YES
    return MAYBE


def _startup_phase(client: bytes, server: bytes, final: bool) -> Verdict:
    if not client:
        return MAYBE if not server else NO  # the frontend always speaks first
    v = _startup(client)
    if v != YES:
        return v
    if not server:
        # no answer: the 8/16-byte magic requests and a complete StartupMessage naming a user are proof
        return YES if final else MAYBE
    return _first_answer(client, server)


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    v = _startup_phase(client, server, ctx.final)
    if ctx.midstream and v != YES:  # typed messages; the client/server guess may be swapped
        v = max(v, _typed(client, server, ctx.final), _typed(server, client, ctx.final))
    return v


probe = guarded(_probe)


# ---- parsing: the startup phase (one login event), then each query with what the backend answered ----
# PostgreSQL docs, "Frontend/Backend Protocol": 55.2 Message Flow (Start-up, Simple Query, Extended Query,
# pipelining: each Sync / Query is answered by one ReadyForQuery), 55.7 Message Formats, 55.8 Error Fields.

MESSAGE_LIMIT = 1 << 16  # longer messages are read from their first MESSAGE_KEEP bytes, the rest skipped
MESSAGE_KEEP = 8192
MAX_NAMES = 256  # prepared statements / portals remembered per connection
MAX_PENDING = 256  # queries awaiting an answer; beyond, the oldest is emitted unanswered

# Authentication request codes ('R' message) -> name
AUTH = {0: "ok", 2: "kerberos_v5", 3: "cleartext", 5: "md5", 6: "scm_credential", 7: "gss", 8: "gss_continue",
        9: "sspi", 10: "sasl", 11: "sasl_continue", 12: "sasl_final"}
AUTH_CONTINUATIONS = {0, 8, 11, 12}


_U32 = struct.Struct(">I").unpack_from  # (a bound Struct method: the framer calls these once per message)


def _untyped_length(h: bytes) -> int:
    return _U32(h)[0]


def _typed_length(h: bytes) -> int:
    n = _U32(h, 1)[0]
    return 1 + n if n >= 4 else 0  # below 4: no valid framing


def cstrings(b: bytes, off: int = 0, count: int = 64) -> list[bytes]:
    """Up to `count` NUL-terminated strings from b[off:] (the last one may be unterminated)."""
    return b[off:].split(b"\0", count)[:count]


def text(b: bytes, limit: int = sqlinjection.MAX_STATEMENT) -> str:
    return cap(b[: limit * 4].decode("utf-8", "replace"), limit)


def error_fields(body: bytes) -> dict:
    """ErrorResponse / NoticeResponse body: severity (V, or the localized S), SQLSTATE code (C), message (M)."""
    fields: dict[str, str] = {}
    off, n = 0, 0
    while off < len(body) and body[off] != 0 and n < 32:
        end = body.find(b"\0", off + 1)
        end = len(body) if end < 0 else end
        fields.setdefault(chr(body[off]), text(body[off + 1 : end], 1024))
        off, n = end + 1, n + 1
    return {"error_severity": fields.get("V") or fields.get("S"), "error_code": fields.get("C"),
            "error": fields.get("M")}


def tag_rows(tag: str) -> int | None:
    """The row count a CommandComplete tag ends with ("SELECT 5", "INSERT 0 1", "UPDATE 3"); None if none."""
    last = tag.rsplit(" ", 1)[-1]
    return int(last) if " " in tag and last.isascii() and last.isdigit() else None


def _remember(table: dict, key: str, value: str | None) -> None:
    if key not in table and len(table) >= MAX_NAMES:
        table.pop(next(iter(table)))
    table[key] = value


class PostgresParser(Parser):
    """One login event (user, database, application, auth method, result) and one event per query: a simple
    Query, each Execute of the extended protocol (its statement found through Bind -> Parse), a Parse whose
    error ends its group, a function call; each with the backend's command tag, row count and error. Threat
    2022 on Query and Parse statements (NeuVector has the check but never reaches it). An accepted SSL or GSS
    encryption request ends the parsing."""

    # a message handler ended the parsing and stopped its framer: not a lost framing (set on the instance then;
    # `done` cannot tell: an accepted SSL/GSS answer sets it before the bytes after it are read)
    ended = False

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        mid = ctx.midstream
        self.client = Framer(5, _typed_length, MESSAGE_LIMIT, MESSAGE_KEEP) if mid else \
            Framer(4, _untyped_length, MESSAGE_LIMIT, MESSAGE_KEEP)
        self.server = Framer(5, _typed_length, MESSAGE_LIMIT, MESSAGE_KEEP)
        self.crypt_request: str | None = None  # "ssl" / "gss" asked, the one-byte answer not read yet
        self.login: dict | None = None
        self.login_where = (0, 0)
        self.logged_in = mid
        self.auth_code: int | None = None
        self.statements: dict[str, str | None] = {}
        self.portals: dict[str, str | None] = {}
        self.pending: list[tuple[dict, int, tuple[int, int]]] = []  # (event, group, where)
        self.parses: dict[int, tuple[str, tuple[int, int]]] = {}  # group -> its last Parse (for its error)
        self.sent = 0  # groups the frontend closed (a Query, or a Sync)
        self.answered = 0  # ReadyForQuery messages read: groups the backend finished

    # -- input --

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        """Each message to its handler (`Framer.feed`); a handler that ends the parsing stops the framer, and
        only a framing lost otherwise is an anomaly (the other side's framer cannot be broken: that was an
        anomaly and ended the parsing)."""
        if side == CLIENT:
            framer, handle = self.client, self._frontend
        else:
            framer, handle = self.server, self._backend
            if self.crypt_request and data:
                data = self._crypt_answer(data, frame, ts_ns)
        if not framer.feed(data, frame, ts_ns, handle) and not self.ended:
            self.out.anomaly("postgresql-bad-length", "message length below 4: framing lost", frame, ts_ns)
            self.done = True

    def _new_login(self, where: tuple[int, int]) -> dict:
        if self.login is None:
            self.login = {"frontend": "startup", "user": None, "database": None, "application_name": None,
                          "auth_method": None, "sasl_mechanism": None, "success": None, "error_severity": None,
                          "error_code": None, "error": None, "server_version": None, "ssl": None, "gssenc": None,
                          "protocol_version": None}
            self.login_where = where
        return self.login

    def _end(self) -> int:
        """What a message handler returns to its framer once it ended the parsing: -1, stop."""
        self.ended = True
        return -1

    def _emit_login(self) -> None:
        if self.login is not None:
            self.out.event(self.login, *self.login_where)
            self.login = None

    # -- startup phase --

    def _crypt_answer(self, data: bytes, frame: int, ts_ns: int) -> bytes:
        """The single byte answering SSLRequest ('S' yes / 'N' no) or GSSENCRequest ('G' / 'N')."""
        kind, self.crypt_request = self.crypt_request, None
        answer = data[:1]
        if answer not in (b"S", b"N", b"G"):
            return data  # an ErrorResponse from an old server: typed messages
        login = self._new_login((frame, ts_ns))
        accepted = answer in (b"S", b"G")
        login["ssl" if kind == "ssl" else "gssenc"] = accepted
        if accepted:
            self._emit_login()
            self.done = True
        return data[1:]

    def _startup(self, body: bytes, where: tuple[int, int]) -> None:
        code = struct.unpack_from(">I", body, 4)[0] if len(body) >= 8 else 0
        if code in (SSL_REQUEST, GSS_REQUEST):
            self.crypt_request = "ssl" if code == SSL_REQUEST else "gss"
            self._new_login(where)
            return
        if code == CANCEL_REQUEST:
            pid = struct.unpack_from(">I", body, 8)[0] if len(body) >= 12 else None
            self.out.event({"frontend": "cancel_request", "backend_pid": pid}, *where)
            self.done = True
            return
        login = self._new_login(where)
        self.login_where = where
        login["protocol_version"] = f"{code >> 16}.{code & 0xFFFF}"
        if code >> 16 != 3:
            self._emit_login()  # protocol 2 or unknown: not followed
            self.done = True
            return
        params = cstrings(body, 8)
        for key, value in zip(params[0::2], params[1::2]):
            name = key.decode("ascii", "replace")
            if name in ("user", "database", "application_name"):
                login[name] = text(value, 256)
        self.client.head, self.client.length = 5, _typed_length

    # -- frontend --

    def _frontend(self, data: bytes, length: int, frame: int, ts_ns: int) -> int:
        """One frontend message (the client framer's handler): 0, or -1 once the parsing is done."""
        if self.client.head == 4:  # still untyped: a startup-phase request
            self._startup(data, (frame, ts_ns))
            return self._end() if self.done else 0
        kind, body, where = data[:1], data[5:], (frame, ts_ns)
        if kind == b"Q":
            statement = body.split(b"\0", 1)[0]
            self._query("simple_query", statement, where, self.sent)
            self.sent += 1
        elif kind == b"P":
            name, statement = (cstrings(body, 0, 2) + [b"", b""])[:2]
            sql = self._statement(statement, where)
            _remember(self.statements, name.decode("utf-8", "replace"), sql)
            self.parses[self.sent] = (sql, where)
            while len(self.parses) > MAX_PENDING:
                self.parses.pop(next(iter(self.parses)))
        elif kind == b"B":
            portal, name = (cstrings(body, 0, 2) + [b"", b""])[:2]
            _remember(self.portals, portal.decode("utf-8", "replace"),
                      self.statements.get(name.decode("utf-8", "replace")))
        elif kind == b"E":
            portal = body.split(b"\0", 1)[0].decode("utf-8", "replace")
            self._pend({"frontend": "execute", "statement": self.portals.get(portal)}, self.sent, where)
            self.parses.pop(self.sent, None)
        elif kind == b"F":
            self._pend({"frontend": "function_call", "statement": None}, self.sent, where)
        elif kind == b"S":
            self.sent += 1
        elif kind == b"X":
            self.finish()
            self.done = True
        elif kind == b"p" and self.auth_code == 10 and self.login is not None:
            # SASLInitialResponse: mechanism name, then the client-first-message (never kept)
            self.login["sasl_mechanism"] = text(body.split(b"\0", 1)[0], 64)
        # 'p' password / SASL / GSS responses are never read; Describe, Close, Flush, Copy*: nothing to log
        return self._end() if self.done else 0

    def _statement(self, raw: bytes, where: tuple[int, int]) -> str:
        sql = text(raw)
        self.out.content("sql", CLIENT, raw, *where)
        sqlinjection.report(self.out, "postgresql", sql, CLIENT, *where)
        return sql

    def _query(self, kind: str, raw: bytes, where: tuple[int, int], group: int) -> None:
        self._pend({"frontend": kind, "statement": self._statement(raw, where)}, group, where)

    def _pend(self, fields: dict, group: int, where: tuple[int, int]) -> None:
        fields.update(command_tag=None, rows=None, success=None, error_severity=None, error_code=None, error=None)
        fields["_datarows"] = 0
        self.pending.append((fields, group, where))
        if len(self.pending) > MAX_PENDING:
            self._emit(0)

    # -- backend --

    def _backend(self, data: bytes, length: int, frame: int, ts_ns: int) -> int:
        """One backend message (the server framer's handler): 0, or -1 once the parsing is done."""
        kind = data[:1]  # (the body, data[5:], is cut only where it is read: DataRows, the bulk, just count)
        if not self.logged_in:
            self._login_message(kind, data[5:], (frame, ts_ns))
            return self._end() if self.done else 0
        head = self._head()
        if kind == b"D":
            if head is not None:
                head["_datarows"] += 1
        elif kind == b"C":
            if head is not None:
                tag = text(data[5:].split(b"\0", 1)[0], 256)
                head["command_tag"] = tag if head["command_tag"] is None else head["command_tag"] + "; " + tag
                rows = tag_rows(tag)
                counted = rows if rows is not None else head["_datarows"]
                head["rows"] = counted if head["rows"] is None else head["rows"] + counted
                head["_datarows"] = 0
                head["success"] = True if head["success"] is None else head["success"]
                if head["frontend"] != "simple_query":
                    self._emit(0)
        elif kind in (b"I", b"s", b"V"):  # EmptyQueryResponse, PortalSuspended, FunctionCallResponse
            if head is not None and head["frontend"] != "simple_query":
                head["success"] = True
                if kind == b"s":
                    head["rows"] = head["_datarows"]
                self._emit(0)
        elif kind == b"E":
            self._error(head, data[5:], (frame, ts_ns))
        elif kind == b"Z":
            self._ready()
        return self._end() if self.done else 0

    def _head(self) -> dict | None:
        """The request being answered: the oldest pending one of the group the backend is answering."""
        if self.pending and self.pending[0][1] <= self.answered:
            return self.pending[0][0]
        return None

    def _error(self, head: dict | None, body: bytes, where: tuple[int, int]) -> None:
        fields = error_fields(body)
        if head is None:
            parse = self.parses.pop(self.answered, None)
            if parse is None:
                return  # e.g. an error to a Bind of an unseen statement, mid-stream
            head = {"frontend": "parse", "statement": parse[0], "command_tag": None, "rows": None, "_datarows": 0}
            self.pending.insert(0, (head, self.answered, parse[1]))
        head.update(success=False, **fields)
        if head["frontend"] != "simple_query":
            self._emit(0)

    def _ready(self) -> None:
        """ReadyForQuery ends a group: its Query event, and Executes skipped after an error in it."""
        while self.pending and self.pending[0][1] <= self.answered:
            head = self.pending[0][0]
            if head["frontend"] == "simple_query" and head["success"] is None:
                head["success"] = True
            self._emit(0)
        self.parses.pop(self.answered, None)
        self.answered += 1

    def _emit(self, index: int) -> None:
        fields, _, where = self.pending.pop(index)
        rows = fields.pop("_datarows")
        if fields["rows"] is None and rows:
            fields["rows"] = rows
        self.out.event(fields, *where)

    def _login_message(self, kind: bytes, body: bytes, where: tuple[int, int]) -> None:
        login = self._new_login(where)
        if kind == b"R" and len(body) >= 4:
            code = struct.unpack_from(">I", body)[0]
            self.auth_code = code
            if code not in AUTH_CONTINUATIONS:
                login["auth_method"] = AUTH.get(code, str(code))
        elif kind == b"S":
            name, value = (cstrings(body, 0, 2) + [b"", b""])[:2]
            if name == b"server_version":
                login["server_version"] = text(value, 64)
        elif kind == b"E":
            login.update(success=False, **error_fields(body))
            self._emit_login()
            self.done = True  # a startup error is FATAL: the backend closes the connection
        elif kind == b"Z":
            login["success"] = True
            self._emit_login()
            self.logged_in = True

    def finish(self) -> None:
        self._emit_login()
        while self.pending:
            self._emit(0)


SPEC = ProtocolSpec(
    name="postgresql",
    transports=("tcp",),
    ports=(5432,),
    probe=probe,
    description="PostgreSQL v3: Startup/SSL/GSS/Cancel request + R/E/S/N/G answer; mid-stream typed messages",
    parser=PostgresParser,
    extracts="login (user, database, application_name, auth method, ssl/gssenc, server version, result); each "
             "query / execute (statement, command tag, rows, error severity/code/message)",
)
