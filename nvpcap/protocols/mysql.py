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

from .base import FlowContext, guarded, ProtocolSpec, Verdict

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


def _printable(b: bytes) -> bool:
    return all(0x20 <= x < 0x7F for x in b)


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


SPEC = ProtocolSpec(
    name="mysql",
    transports=("tcp",),
    ports=(3306,),
    probe=probe,
    description="MySQL/MariaDB: server HandshakeV10 greeting (or refusal ERR); mid-stream COM_* + seq-1 answer",
)
