"""MySQL / MariaDB client-server protocol.

Spec: MySQL Internals "Client/Server Protocol" (dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html):
every packet is a 3-byte little-endian payload length + 1-byte sequence id. The server speaks first with
Protocol::HandshakeV10 (seq 0, protocol byte 10, NUL-terminated version string, thread id, 8 bytes of
auth-plugin-data, a 0x00 filler, capability flags) or, when it refuses the host, an ERR packet (0xFF).
NeuVector (dpi_mysql.c) finalises on the greeting alone; so do we. Mid-stream (no greeting seen) a
command packet (seq 0: COM_QUERY with an SQL statement, COM_PING, COM_STMT_*...) answered by a seq-1 packet
(OK 0x00 / ERR 0xFF / EOF 0xFE / column count [+ MariaDB/MySQL 8 metadata flag] + column definition "def")
is accepted.
"""
from __future__ import annotations

import re
import struct

from . import sqlinjection
from .base import CLIENT, SERVER, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict, guarded
from .framing import Framer
from .sqlinjection import cap

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

# command byte -> (min payload length, max payload length or None); text commands are checked separately
_COMMANDS = {
    0x01: (1, 1),  # COM_QUIT
    0x02: (2, None),  # COM_INIT_DB (schema name)
    0x03: (2, None),  # COM_QUERY (SQL text)
    0x04: (2, None),  # COM_FIELD_LIST
    0x08: (1, 1),  # COM_SHUTDOWN (old)
    0x09: (1, 1),  # COM_STATISTICS
    0x0D: (1, 1),  # COM_DEBUG
    0x0E: (1, 1),  # COM_PING
    0x11: (2, None),  # COM_CHANGE_USER
    0x16: (2, None),  # COM_STMT_PREPARE (SQL text)
    0x17: (10, None),  # COM_STMT_EXECUTE: stmt id(4) flags(1) iteration count(4)=1
    0x19: (5, 5),  # COM_STMT_CLOSE: stmt id
    0x1A: (5, 5),  # COM_STMT_RESET: stmt id
    0x1F: (1, 1),  # COM_RESET_CONNECTION
}
_TEXT_COMMANDS = (0x03, 0x16)
_NAME_COMMANDS = (0x02, 0x04, 0x11)  # a schema, table or user name comes first
_SQL = re.compile(
    rb"\s*(?:/\*.*?\*/\s*)*\(?\s*(select|insert|update|delete|replace|set|show|use|begin|commit|rollback|start|"
    rb"create|drop|alter|truncate|call|explain|describe|desc|grant|revoke|lock|unlock|with|savepoint|release|"
    rb"prepare|execute|deallocate|analyze|optimize|flush|kill|load|handler|do|xa|checksum|check|repair|rename|"
    rb"install|uninstall|reset|purge|change|help|values|table)\b",
    re.IGNORECASE | re.DOTALL,
)


def _header(b: bytes, off: int = 0) -> tuple[int, int] | None:
    if len(b) < off + 4:
        return None
    return b[off] | b[off + 1] << 8 | b[off + 2] << 16, b[off + 3]


_PRINTABLE = bytes(range(0x20, 0x7F))


def _printable(b: bytes) -> bool:
    """Only printable ASCII (one C-level translate instead of a per-byte generator: probes call this a lot)."""
    return not b.translate(None, _PRINTABLE)


def _greeting(s: bytes) -> Verdict:
    """The server's first packet: HandshakeV10 / V9, or an ERR refusing the connection."""
    h = _header(s)
    if h is None:
        return MAYBE if len(s) < 4 or s[3] == 0 else NO
    length, seq = h
    if seq != 0 or not 3 <= length <= 1024:
        return NO
    if len(s) > 4 and s[4] not in (10, 9, 0xFF):
        return NO
    pkt = s[4 : 4 + length]
    if len(pkt) < length:
        # partial: the version string must be printable so far
        if len(pkt) > 1 and pkt[0] in (9, 10):
            head = pkt[1:].split(b"\0", 1)[0][:64]
            if not _printable(head) or (head and not head[:1].isdigit()):
                return NO
        return MAYBE
    if pkt[0] == 0xFF:  # ERR_Packet: code(2 LE), message
        code = pkt[1] | pkt[2] << 8 if length >= 3 else 0
        msg = pkt[3:].lstrip(b"#")
        return YES if 1000 <= code < 10000 and length > 4 and _printable(msg[:64]) else NO
    end = pkt.find(b"\0", 1)
    version = pkt[1:end]
    if end < 2 or end > 64 or not _printable(version) or not version[:1].isdigit():
        return NO
    rest = pkt[end + 1 :]
    if pkt[0] == 9:  # HandshakeV9: thread id(4), scramble NUL-terminated
        return YES if len(rest) >= 5 and rest.find(b"\0", 4) > 4 else NO
    # HandshakeV10: thread id(4), auth data part 1 (8), filler 0x00, capabilities(2) [, charset, status(2),
    # capabilities upper(2), auth data length(1), reserved(10, MariaDB reuses the last 4)]
    if len(rest) < 15 or rest[12] != 0:
        return NO
    if len(rest) >= 31 and any(rest[21:27]):
        return NO
    return YES


def _command(c: bytes) -> Verdict:
    """A client command packet (seq 0). YES only for proof: an SQL statement; MAYBE for a plausible other."""
    h = _header(c)
    if h is None:
        return MAYBE if len(c) < 4 or c[3] == 0 else NO
    length, seq = h
    if seq != 0 or length == 0:
        return NO
    if len(c) < 5:
        return MAYBE
    rule = _COMMANDS.get(c[4])
    if rule is None or length < rule[0] or (rule[1] is not None and length > rule[1]):
        return NO
    body = c[5 : 4 + length]
    if c[4] in _TEXT_COMMANDS:
        text = body[:64]
        if any(x < 0x09 or 0x0D < x < 0x20 or x == 0x7F for x in text):
            return NO
        if _SQL.match(body[:256]):
            return YES
        return MAYBE if len(body) < min(length - 1, 16) else NO
    if c[4] == 0x17 and len(body) >= 9 and (body[4] > 0x0F or body[5:9] != b"\x01\0\0\0"):
        return NO  # COM_STMT_EXECUTE: cursor flags <= 0x0F, iteration count 1
    if c[4] in _NAME_COMMANDS:
        name = body.split(b"\0", 1)[0][:32]
        if length > 1024 or not all(0x20 < x < 0x7F for x in name) or (not name and len(body) > 0):
            return NO
    if len(c) > 4 + length:  # the client waits for the answer: what follows is another command
        nxt = _header(c, 4 + length)
        if nxt is not None and (nxt[1] != 0 or (len(c) > 8 + length and c[8 + length] not in _COMMANDS)):
            return NO
    return MAYBE  # other commands are too short to prove anything: the answer decides


def _answer(s: bytes) -> Verdict:
    """The server's reply to a command: seq 1, OK / ERR / EOF, or a column count then column definitions."""
    h = _header(s)
    if h is None:
        return MAYBE if len(s) < 4 or s[3] == 1 else NO
    length, seq = h
    if seq != 1 or length == 0 or length > 0xFFFFFF:
        return NO
    if len(s) < 5:
        return MAYBE
    first = s[4]
    if first == 0x00 and 7 <= length <= 1024:  # OK: affected rows, last insert id, status(2), warnings(2)
        off = 5
        for _ in range(2):  # length-encoded integers
            if len(s) <= off:
                return MAYBE
            off += {0xFC: 3, 0xFD: 4, 0xFE: 9}.get(s[off], 1) if s[off] not in (0xFB, 0xFF) else 1 << 30
        if off + 4 > 4 + length:
            return NO
        if len(s) < off + 2:
            return MAYBE
        return YES if s[off + 1] < 0x80 else NO  # status flags: bit 15 is unused
    if first == 0xFF and 9 <= length <= 1024:  # ERR: code(2), '#' + SQL state(5), message
        if len(s) < 13:
            return MAYBE
        return YES if 1000 <= (s[5] | s[6] << 8) < 10000 and s[7:8] == b"#" and s[8:13].isalnum() else NO
    if first == 0xFE and length == 5:  # EOF: warnings(2), status(2)
        return YES
    if length in (1, 2) and 1 <= first <= 250:  # column count [+ metadata-follows flag], column definitions
        if length == 2 and len(s) > 5 and s[5] > 1:
            return NO
        d = s[4 + length : 12 + length]
        want = b"\x02\x03def"
        if len(d) < 8:
            return MAYBE if want.startswith(d[3:]) else NO
        return YES if d[3:] == want else NO
    return NO


def _midstream(c: bytes, s: bytes, final: bool) -> Verdict:
    if not c and not s:
        return MAYBE
    cmd = _command(c)
    if cmd == NO or not c:
        return NO
    ans = _answer(s) if s else MAYBE
    if ans == NO:
        return NO
    if ans == YES or (cmd == YES and final):  # a command answered with seq 1, or an SQL statement alone
        return YES
    return MAYBE


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    if not ctx.midstream:
        if server:
            g = _greeting(server)
            if g != NO or not client:
                return g
        # no greeting at the start of the server stream (or none yet): only a capture that missed it is left
        if not client:
            return MAYBE
        return _midstream(client, server, ctx.final)
    best = NO
    for c, s in ((client, server), (server, client)):  # the mid-stream client/server guess may be swapped
        best = max(best, _midstream(c, s, ctx.final))
    return best


probe = guarded(_probe)


# ---- parsing: the connection phase, then each command with its response ----
# MySQL Internals, "Client/Server Protocol": Connection Phase (Protocol::HandshakeV10,
# HandshakeResponse41/320, SSLRequest, AuthSwitchRequest, OK/ERR), Text Protocol (COM_*), Prepared
# Statements (COM_STMT_*), Text/Binary Resultset. Events as Zeek's mysql.log: cmd, arg, success, rows, response.

PACKET_LIMIT = 1 << 16  # packets longer than this are read from their first PACKET_KEEP bytes, the rest skipped
PACKET_KEEP = 8192
MAX_PACKET_PAYLOAD = 0xFFFFFF  # a payload of this length continues in the next packet
MAX_STMTS = 256  # prepared statements remembered per connection (id -> text)
MAX_COLUMNS = 4096  # MySQL's limit on a table's columns

# Protocol::CapabilityFlags
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_COMPRESS = 0x20
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000
CLIENT_DEPRECATE_EOF = 0x1000000
CLIENT_ZSTD_COMPRESSION = 0x4000000
CLIENT_QUERY_ATTRIBUTES = 0x8000000  # COM_QUERY then starts with parameter counts (MySQL 8.0.23+)
SERVER_MORE_RESULTS_EXISTS = 0x0008  # SERVER_STATUS flags

# Text Protocol command bytes -> the names Zeek's mysql analyzer logs
COMMANDS = {0: "sleep", 1: "quit", 2: "init_db", 3: "query", 4: "field_list", 5: "create_db", 6: "drop_db",
            7: "refresh", 8: "shutdown", 9: "statistics", 10: "process_info", 11: "connect", 12: "process_kill",
            13: "debug", 14: "ping", 15: "time", 16: "delayed_insert", 17: "change_user", 18: "binlog_dump",
            19: "table_dump", 20: "connect_out", 21: "register_slave", 22: "stmt_prepare", 23: "stmt_execute",
            24: "stmt_send_long_data", 25: "stmt_close", 26: "stmt_reset", 27: "set_option", 28: "stmt_fetch",
            29: "daemon", 30: "binlog_dump_gtid", 31: "reset_connection"}
COM_QUIT, COM_QUERY, COM_FIELD_LIST, COM_STATISTICS, COM_PROCESS_KILL = 1, 3, 4, 9, 12
COM_CHANGE_USER, COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_STMT_FETCH = 17, 22, 23, 28
TEXT_ARG = {2, 3, 4, 5, 6, 22}  # schema / table name or SQL text follows the command byte
STMT_ARG = {23, 24, 25, 26, 28}  # a 4-byte statement id follows
NO_RESPONSE = {1, 24, 25}  # COM_QUIT, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE: the server does not answer
STREAMS = {18, 30}  # binlog dumps: a stream of replication events follows, nothing more to pair
ACCESS_DENIED = {1044, 1045}  # ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR -> threat 2018

# response states of the command being answered
R_FIRST, R_DEFS, R_DEFS_EOF, R_ROWS, R_FIELDS, R_PREPARED = range(6)


def _packet_length(h: bytes) -> int:
    return 4 + (h[0] | h[1] << 8 | h[2] << 16)


def _rows(data: bytes, off: int) -> tuple[int, int]:
    """Count the result-set rows from off: whole packets (within PACKET_LIMIT) whose payload does not start
    with 0xFE (EOF/OK) or 0xFF (ERR). (offset after the last, count)."""
    n, count = len(data), 0
    while n - off > 4:
        end = off + 4 + (data[off] | data[off + 1] << 8 | data[off + 2] << 16)
        if end > n or end - off > PACKET_LIMIT or end - off == 4 or data[off + 4] >= 0xFE:
            break
        count += 1
        off = end
    return off, count


def _unfinished(framer: Framer) -> int:
    """Bytes the framer still needs to finish what it holds: the rest of a packet begun in an earlier chunk (or
    its header), or the skipped tail of an over-long one; 0 when it holds nothing (the stream is at a packet
    header). A stopped framer takes everything (and delivers nothing)."""
    if framer.broken:
        return 1 << 62
    if framer.skip:
        return framer.skip
    buf = framer.buf
    if len(buf) < 4:
        return 4 - len(buf) if buf else 0
    return _packet_length(buf) - len(buf)


def lenenc(b: bytes, off: int) -> tuple[int | None, int]:
    """A length-encoded integer at b[off]: (value or None for NULL / cut, next offset)."""
    if off >= len(b):
        return None, len(b) + 1
    first = b[off]
    if first < 0xFB:
        return first, off + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if size is None or off + 1 + size > len(b):  # 0xFB NULL, 0xFF invalid, or cut
        return None, off + 1 + (size or 0)
    return int.from_bytes(b[off + 1 : off + 1 + size], "little"), off + 1 + size


def cstring(b: bytes, off: int) -> tuple[bytes, int]:
    """A NUL-terminated string at b[off] (to the end if unterminated): (bytes, offset after the NUL)."""
    end = b.find(b"\0", off)
    if end < 0:
        return b[off:], len(b)
    return b[off:end], end + 1


def text(b: bytes, limit: int = sqlinjection.MAX_STATEMENT) -> str:
    return cap(b[: limit * 4].decode("utf-8", "replace"), limit)


def query_text(body: bytes) -> bytes:
    """COM_QUERY with CLIENT_QUERY_ATTRIBUTES: parameter_count, parameter_set_count (lenenc), and when there
    are parameters their null bitmap, types, names and values, then the statement. Without parameters the
    statement follows the two counts; with them, it is found as the first SQL keyword after the counts."""
    count, off = lenenc(body, 0)
    _, off = lenenc(body, off)
    if count == 0:
        return body[off:]
    m = _SQL.search(body, min(off, len(body)))
    return body[m.start():] if m else body[off:]


def parse_greeting(p: bytes) -> dict:
    """Protocol::HandshakeV10 (or V9): server version, connection (thread) id, capabilities, auth plugin."""
    version, off = cstring(p, 1)
    info: dict = {"server_version": text(version, 256), "connection_id": None, "capabilities": 0, "auth_plugin": None}
    if len(p) >= off + 4:
        info["connection_id"] = struct.unpack_from("<I", p, off)[0]
    if p[0] != 10 or len(p) < off + 15:
        return info
    caps = struct.unpack_from("<H", p, off + 13)[0]
    if len(p) >= off + 20:
        caps |= struct.unpack_from("<H", p, off + 18)[0] << 16
        if caps & CLIENT_PLUGIN_AUTH:
            auth_len = p[off + 20] if len(p) > off + 20 else 0
            rest = off + 31 + max(13, auth_len - 8)  # reserved(10), auth-plugin-data part 2
            if rest <= len(p):
                info["auth_plugin"] = text(cstring(p, rest)[0], 64) or None
    info["capabilities"] = caps
    return info


def parse_login(p: bytes) -> dict:
    """HandshakeResponse41 / 320 (or an SSLRequest): capabilities, user, schema, auth plugin. The auth
    response (a password hash, or the password itself with mysql_clear_password) is skipped, never kept."""
    if len(p) < 4:
        return {"capabilities": 0, "user": None, "database": None, "auth_plugin": None}
    caps = struct.unpack_from("<H", p)[0]
    if caps & CLIENT_PROTOCOL_41:
        caps = struct.unpack_from("<I", p)[0] if len(p) >= 4 else caps
        off = 32  # capabilities(4) max packet(4) charset(1) filler(23)
    else:
        off = 5  # capabilities(2) max packet(3)
    out: dict = {"capabilities": caps, "user": None, "database": None, "auth_plugin": None}
    if caps & CLIENT_SSL or len(p) <= off:
        return out
    user, off = cstring(p, off)
    out["user"] = text(user, 256)
    if caps & CLIENT_PROTOCOL_41 and caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        n, off = lenenc(p, off)
        off += n or 0
    elif caps & CLIENT_PROTOCOL_41 and caps & CLIENT_SECURE_CONNECTION:
        off += 1 + (p[off] if off < len(p) else 0)
    else:
        off = cstring(p, off)[1]
    if caps & CLIENT_CONNECT_WITH_DB and off < len(p):
        db, off = cstring(p, off)
        out["database"] = text(db, 256)
    if caps & CLIENT_PLUGIN_AUTH and off < len(p):
        out["auth_plugin"] = text(cstring(p, off)[0], 64) or None
    return out


def parse_err(p: bytes) -> tuple[int | None, str]:
    """ERR_Packet: error code, optional '#' + SQL state, message."""
    code = struct.unpack_from("<H", p, 1)[0] if len(p) >= 3 else None
    msg = p[9:] if p[3:4] == b"#" else p[3:]
    return code, text(msg, 1024)


def ok_status(p: bytes) -> tuple[int | None, int]:
    """OK_Packet (or an OK sent with the 0xFE header): affected rows and status flags."""
    rows, off = lenenc(p, 1)
    _, off = lenenc(p, off)
    status = struct.unpack_from("<H", p, off)[0] if off + 2 <= len(p) else 0
    return rows, status


def eof_status(p: bytes) -> int:
    """The status flags of an EOF packet (0xFE, warnings(2), status(2)) or of an OK sent as its replacement."""
    if len(p) < 9:
        return struct.unpack_from("<H", p, 3)[0] if len(p) >= 5 else 0
    return ok_status(p)[1]


class MysqlParser(Parser):
    """The login (one event: cmd "login", arg = user) and every command paired with its response. Threats:
    2018 when the login is answered ERR 1044/1045 (NeuVector reports it as the server's), 2022 on COM_QUERY
    text. An SSLRequest or a compressed protocol ends the parsing: what follows cannot be read."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = (Framer(4, _packet_length, PACKET_LIMIT, PACKET_KEEP),
                        Framer(4, _packet_length, PACKET_LIMIT, PACKET_KEEP))
        self.phase = "command" if ctx.midstream else "greeting"
        self.continued = [False, False]  # the previous packet had the maximum length: this one continues it
        self.server_caps: int | None = None
        self.client_caps: int | None = None
        self.login: dict | None = None
        self.login_where = (0, 0)
        self.cmd: dict | None = None  # the command awaiting (the rest of) its response
        self.cmd_where = (0, 0)
        self.state = R_FIRST
        self.remaining = 0  # definitions still expected in R_DEFS / R_PREPARED
        self.stmts: dict[int, str] = {}
        self.pending_stmt: str | None = None
        self.blocks: list[int] = []  # R_PREPARED: sizes of the definition blocks still to come

    # -- input --

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        """Packets that lie whole in the chunk are cut straight from it (`_whole_packets`); the framer holds
        only a packet that a chunk boundary cuts (or one longer than PACKET_LIMIT) and completes it from the
        bytes of the next chunk that belong to it."""
        framer = self.framers[side]
        if type(data) is not bytes:
            data = bytes(data)  # (as the framer does: packets are sliced from it and kept)
        while data:
            need = _unfinished(framer)
            if not need:  # the chunk is at a packet header
                off = self._whole_packets(side, data, frame, ts_ns)
                if self.done:
                    return
                need = len(data) - off  # what is left, from a packet not whole in the chunk: to the framer
                data = data[off:] if off else data
            part = data[:need] if need < len(data) else data
            data = data[len(part):]
            for msg in framer.push(part, frame, ts_ns):
                self._packet(side, msg.data, msg.length - 4, msg.frame, msg.ts_ns)
                if self.done:
                    return
            if framer.broken:  # not reached with 3-byte lengths; kept for safety
                self.done = True
                return

    def _whole_packets(self, side: int, data: bytes, frame: int, ts_ns: int) -> int:
        """The packets that lie whole in a chunk that starts at a packet header, cut straight from it: what the
        framer would give, without its per-packet generator step and Message. Returns where the first packet
        not whole in the chunk (or longer than PACKET_LIMIT) starts."""
        off, n = 0, len(data)
        while n - off >= 4:
            end = off + 4 + (data[off] | data[off + 1] << 8 | data[off + 2] << 16)
            if end > n or end - off > PACKET_LIMIT:
                break
            if side == SERVER and self.state == R_ROWS and end - off > 4 and data[off + 4] < 0xFE \
                    and not self.continued[SERVER] and self.phase == "command" and self.cmd is not None:
                off, rows = _rows(data, off)  # a run of result-set rows, counted as _packet counts them
                self.cmd["rows"] = (self.cmd["rows"] or 0) + rows
                continue
            self._packet(side, data if end - off == n else data[off:end], end - off - 4, frame, ts_ns)
            if self.done:
                break
            off = end
        return off

    def _packet(self, side: int, raw: bytes, plen: int, frame: int, ts_ns: int) -> None:
        """One packet (header included; `plen` the payload length its header gives)."""
        continued = self.continued
        cont, continued[side] = continued[side], plen == MAX_PACKET_PAYLOAD
        if cont:
            pass
        elif side == SERVER and self.state == R_ROWS and len(raw) > 4 and raw[4] < 0xFE \
                and self.phase == "command" and self.cmd is not None:
            # a result-set row, the bulk of a response: counted here (what _server -> _row would do)
            self.cmd["rows"] = (self.cmd["rows"] or 0) + 1
        else:
            (self._client if side == CLIENT else self._server)(raw[4:], plen, raw[3], frame, ts_ns)

    def _client(self, p: bytes, plen: int, seq: int, frame: int, ts_ns: int) -> None:
        if self.phase == "greeting":
            self.phase = "login" if seq == 1 else "command"  # the greeting was not captured
        elif self.phase == "auth" and seq == 0:  # a command: the login's answer was not captured
            self._emit_login()
            self.phase = "command"
        if self.phase == "login":
            self._login(p, frame, ts_ns)
        elif self.phase == "command" and seq == 0 and p:
            self._command(p, plen, frame, ts_ns)
        # other client packets: auth data, LOCAL INFILE contents, continuation of a command

    def _server(self, p: bytes, plen: int, seq: int, frame: int, ts_ns: int) -> None:
        if not p:
            return
        if self.phase == "greeting":
            if seq == 0 and p[0] in (9, 10):
                info = parse_greeting(p)
                self.server_caps = info.pop("capabilities")
                self.login = {"cmd": "login", "arg": None, "success": None, "response": None, "error_code": None,
                              **info, "database": None, "client_capabilities": None, "ssl": False}
                self.login_where = (frame, ts_ns)
                self.phase = "login"
                return
            if seq == 0 and p[0] == 0xFF:  # the server refuses the host before any handshake
                code, msg = parse_err(p)
                self.login = {"cmd": "login", "arg": None, "success": False, "response": msg, "error_code": code}
                self.login_where = (frame, ts_ns)
                self._emit_login()
                self.done = True
                return
            self.phase = "command"
        if self.phase == "auth":
            self._login_result(p, frame, ts_ns)
        elif self.phase == "command" and self.cmd is not None:
            self._response(p, plen)

    # -- connection phase --

    def _login(self, p: bytes, frame: int, ts_ns: int) -> None:
        info = parse_login(p)
        self.client_caps = info["capabilities"]
        if self.login is None:
            self.login = {"cmd": "login", "arg": None, "success": None, "response": None, "error_code": None,
                          "server_version": None, "connection_id": None, "auth_plugin": None}
            self.login_where = (frame, ts_ns)  # else the login starts with the greeting
        self.login.update(arg=info["user"], database=info["database"], client_capabilities=self.client_caps,
                          ssl=bool(self.client_caps & CLIENT_SSL))
        if info["auth_plugin"]:
            self.login["auth_plugin"] = info["auth_plugin"]
        if self.client_caps & CLIENT_SSL:  # SSLRequest: TLS from here on
            self._emit_login()
            self.done = True
            return
        self.phase = "auth"

    def _login_result(self, p: bytes, frame: int, ts_ns: int) -> None:
        assert self.login is not None
        kind = p[0]
        if kind == 0x00:
            self.login["success"] = True
        elif kind == 0xFF:
            code, msg = parse_err(p)
            self.login.update(success=False, response=msg, error_code=code)
            if code in ACCESS_DENIED:
                self.out.threat(2018, f"user={self.login.get('arg') or ''}", SERVER, frame, ts_ns)
        elif kind == 0xFE and len(p) > 1:  # AuthSwitchRequest: plugin name, plugin data
            self.login["auth_plugin"] = text(cstring(p, 1)[0], 64) or self.login.get("auth_plugin")
            return
        else:
            return  # AuthMoreData (0x01) and the like: the exchange goes on
        success = self.login["success"]
        self._emit_login()
        caps = (self.client_caps or 0) & (self.server_caps if self.server_caps is not None else ~0)
        if not success or caps & (CLIENT_COMPRESS | CLIENT_ZSTD_COMPRESSION):
            self.done = True  # refused (the server closes), or compressed packets from here on
            return
        self.phase = "command"

    def _emit_login(self) -> None:
        if self.login is not None:
            self.out.event(self.login, *self.login_where)
            self.login = None

    # -- command phase --

    def _command(self, p: bytes, plen: int, frame: int, ts_ns: int) -> None:
        if self.cmd is not None:  # the previous command's response ended without a terminator we could see
            if self.state != R_FIRST:
                self.cmd["success"] = True if self.cmd["success"] is None else self.cmd["success"]
            self._emit()
        code = p[0]
        name = COMMANDS.get(code, f"unknown-{code}")
        arg: str | None = None
        body = p[1:]
        if code in TEXT_ARG:
            raw = body.split(b"\0", 1)[0] if code == COM_FIELD_LIST else body
            if code == COM_QUERY and (self._agreed(CLIENT_QUERY_ATTRIBUTES) or
                                      self.client_caps is None and raw[:2] == b"\x00\x01"):
                raw = query_text(raw)  # (mid-stream: no statement starts with a NUL)
            arg = text(raw)
            if code in (COM_QUERY, COM_STMT_PREPARE):
                self.out.content("sql", CLIENT, raw, frame, ts_ns)
            if code == COM_QUERY:
                sqlinjection.report(self.out, "mysql", arg, CLIENT, frame, ts_ns)
        elif code in STMT_ARG and len(body) >= 4:
            stmt = struct.unpack_from("<I", body)[0]
            arg = self.stmts.get(stmt, str(stmt))
        elif code == COM_PROCESS_KILL and len(body) >= 4:
            arg = str(struct.unpack_from("<I", body)[0])
        elif code == COM_CHANGE_USER:
            arg = text(cstring(body, 0)[0], 256)
        self.cmd = {"cmd": name, "arg": arg, "success": None, "rows": None, "response": None, "error_code": None}
        self.cmd_where = (frame, ts_ns)
        self.pending_stmt = arg if code == COM_STMT_PREPARE else None
        self.state = R_ROWS if code == COM_STMT_FETCH else R_FIELDS if code == COM_FIELD_LIST else R_FIRST
        if code in NO_RESPONSE or code in STREAMS:
            self._emit()
            if code == COM_QUIT or code in STREAMS:
                self.done = True

    def _response(self, p: bytes, plen: int) -> None:
        cmd = self.cmd
        assert cmd is not None
        kind = p[0]
        if self.state == R_FIRST:
            self._first(cmd, p, plen, kind)
        elif self.state == R_PREPARED:
            self._prepared(p, plen)
        elif self.state == R_DEFS:
            self.remaining -= 1
            if self.remaining <= 0:
                self.state = R_ROWS if self._no_eof() else R_DEFS_EOF
        elif self.state == R_DEFS_EOF and kind == 0xFE and plen < 9:
            self.state = R_ROWS
        elif self.state in (R_ROWS, R_DEFS_EOF, R_FIELDS):
            self._row(cmd, p, plen, kind)

    def _first(self, cmd: dict, p: bytes, plen: int, kind: int) -> None:
        if kind == 0xFF:
            code, msg = parse_err(p)
            cmd.update(success=False, error_code=code, response=msg)
            self._emit()
        elif kind == 0x00 and cmd["cmd"] == "stmt_prepare" and len(p) >= 9:
            stmt, cols, params = struct.unpack_from("<IHH", p, 1)
            if self.pending_stmt is not None:
                if len(self.stmts) >= MAX_STMTS:
                    self.stmts.pop(next(iter(self.stmts)))
                self.stmts[stmt] = self.pending_stmt
            cmd.update(success=True, rows=None)
            blocks = [n for n in (params, cols) if n]
            if not blocks:
                self._emit()
                return
            self.state, self.remaining, self.blocks = R_PREPARED, blocks[0], blocks
        elif kind == 0x00:
            rows, status = ok_status(p)
            cmd["success"] = True
            cmd["rows"] = rows if cmd["rows"] is None else cmd["rows"] + (rows or 0)  # summed over results
            if not status & SERVER_MORE_RESULTS_EXISTS:
                self._emit()
        elif kind == 0xFE and cmd["cmd"] == "change_user" and plen > 5:
            return  # AuthSwitchRequest: the exchange goes on
        elif kind == 0x01 and cmd["cmd"] == "change_user":
            return  # AuthMoreData
        elif kind == 0xFE and plen < 9:  # a lone EOF (COM_SET_OPTION, COM_SHUTDOWN on old servers)
            cmd["success"] = True
            self._emit()
        elif kind == 0xFB:  # LOCAL INFILE request: the client sends the file, then the server answers OK/ERR
            cmd["response"] = "LOCAL INFILE " + text(p[1:], 256)
        elif cmd["cmd"] == "statistics":
            cmd.update(success=True, response=text(p, 1024))
            self._emit()
        else:  # a result set: column count [, metadata-follows flag (MariaDB / MySQL 8 optional metadata)]
            cols, off = lenenc(p, 0)
            if not cols or cols > MAX_COLUMNS:
                self.out.anomaly("mysql-bad-response", f"unexpected response 0x{kind:02x} to {cmd['cmd']}",
                                 *self.cmd_where)
                self._emit()
                return
            metadata = p[off] if off < len(p) else 1
            if cmd["rows"] is None:
                cmd["rows"] = 0
            self.state, self.remaining = (R_DEFS, cols) if metadata else (R_DEFS_EOF, 0)
            if not metadata and self._no_eof():
                self.state = R_ROWS

    def _agreed(self, flag: int) -> bool:
        """A capability both sides announced (the client's alone when the greeting was not seen; False when
        neither was: mid-stream)."""
        if self.client_caps is None:
            return False
        server = self.server_caps if self.server_caps is not None else ~0
        return bool(self.client_caps & server & flag)

    def _no_eof(self) -> bool:
        """CLIENT_DEPRECATE_EOF agreed: no EOF after definitions. Unknown (mid-stream): an EOF is looked for."""
        return self._agreed(CLIENT_DEPRECATE_EOF)

    def _prepared(self, p: bytes, plen: int) -> None:
        """COM_STMT_PREPARE_OK is followed by parameter then column definitions, each block + EOF."""
        if self.remaining <= 0:  # the optional EOF after a block, or already the next block
            if p[0] == 0xFE and plen < 9:
                self._next_block()
                return
            self._next_block()
            if self.cmd is None:
                return
        self.remaining -= 1
        if self.remaining <= 0 and self._no_eof():
            self._next_block()

    def _next_block(self) -> None:
        self.blocks.pop(0)
        if not self.blocks:
            self._emit()
            return
        self.remaining = self.blocks[0]

    def _row(self, cmd: dict, p: bytes, plen: int, kind: int) -> None:
        if kind == 0xFF:
            code, msg = parse_err(p)
            cmd.update(success=False, error_code=code, response=msg)
            self._emit()
        elif kind == 0xFE and plen < MAX_PACKET_PAYLOAD:  # EOF, or the OK that replaces it
            cmd["success"] = True
            if eof_status(p) & SERVER_MORE_RESULTS_EXISTS and cmd["cmd"] != "field_list":
                self.state = R_FIRST
            else:
                self._emit()
        else:
            cmd["rows"] = (cmd["rows"] or 0) + 1

    def _emit(self) -> None:
        if self.cmd is not None:
            self.out.event(self.cmd, *self.cmd_where)
            self.cmd = None
            self.state = R_FIRST

    def finish(self) -> None:
        self._emit_login()
        if self.cmd is not None and self.state != R_FIRST and self.cmd["success"] is None:
            self.cmd["success"] = True
        self._emit()


SPEC = ProtocolSpec(
    name="mysql",
    transports=("tcp",),
    ports=(3306,),
    probe=probe,
    description="MySQL/MariaDB: server HandshakeV10 greeting (or refusal ERR); mid-stream COM_* + seq-1 answer",
    parser=MysqlParser,
    extracts="login (user, database, server version, connection id, auth plugin, ssl, result); each command "
             "(cmd, arg = statement/schema, success, rows, response/error) as Zeek's mysql.log",
)
