"""memcached: the text protocol (memcached doc/protocol.txt: `command args... CRLF`, answers such as `VALUE`,
`END`, `STORED`, `STAT`, `VERSION`, meta commands `mg/ms/md/ma/mn/me`) and the binary protocol (doc
protocol-binary.txt: 24-byte header, magic 0x80 request / 0x81 response). Over UDP each datagram starts with an
8-byte frame header (request id, sequence number, datagram count, reserved).

NeuVector has an app id for memcached but no parser. Here: a command line whose arguments fit the command, and an
answer of the kind that command gets (or a generic error); binary: a request answered with the same opcode and
opaque. A request with no answer is accepted on the last call on port 11211 only (text commands like `get x`
are too common to be proof alone). SASL opcodes are left to couchbase (NeuVector identifies Couchbase by them).
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

PORT = 11211
MAX_LINE = 2048
MAX_KEY = 250
UDP_FRAME = 8

RETRIEVAL = (b"VALUE ", b"END\r\n")
STORAGE = (b"STORED\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n", b"NOT_FOUND\r\n")
ERRORS = (b"ERROR\r\n", b"CLIENT_ERROR ", b"SERVER_ERROR ")
INCR = tuple(b"0123456789") + (b"NOT_FOUND\r\n",)
META = (b"HD", b"VA ", b"EN\r\n", b"NS", b"EX", b"NF", b"MN\r\n", b"ME ")
MANY = 1 << 16
# command -> (min args, max args, expected answer starts; an int item = a digit byte)
COMMANDS: dict[bytes, tuple[int, int, tuple]] = {
    b"get": (1, MANY, RETRIEVAL),
    b"gets": (1, MANY, RETRIEVAL),
    b"gat": (2, MANY, RETRIEVAL),
    b"gats": (2, MANY, RETRIEVAL),
    b"set": (4, 5, STORAGE),
    b"add": (4, 5, STORAGE),
    b"replace": (4, 5, STORAGE),
    b"append": (4, 5, STORAGE),
    b"prepend": (4, 5, STORAGE),
    b"cas": (5, 6, STORAGE),
    b"delete": (1, 3, (b"DELETED\r\n", b"NOT_FOUND\r\n")),
    b"incr": (2, 3, INCR),
    b"decr": (2, 3, INCR),
    b"touch": (2, 3, (b"TOUCHED\r\n", b"NOT_FOUND\r\n")),
    b"stats": (0, 2, (b"STAT ", b"END\r\n")),
    b"flush_all": (0, 2, (b"OK\r\n",)),
    b"version": (0, 0, (b"VERSION ",)),
    b"verbosity": (1, 2, (b"OK\r\n",)),
    b"mg": (1, MANY, META),
    b"ms": (2, MANY, META),
    b"md": (1, MANY, META),
    b"ma": (1, MANY, META),
    b"mn": (0, 0, META),
    b"me": (1, 1, META),
}
STORAGE_COMMANDS = frozenset((b"set", b"add", b"replace", b"append", b"prepend", b"cas"))
DIGITS = frozenset(b"0123456789")
KEY_BAD = bytes(range(0x21)) + b"\x7f"

BINARY = struct.Struct("!BBHBBHIIQ")  # magic, opcode, key len, extras len, data type, vbucket/status, body, opaque, cas
REQUEST, RESPONSE = 0x80, 0x81
SASL_OPCODES = frozenset((0x20, 0x21, 0x22))  # couchbase's
MAX_BODY = 20 << 20

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def _number(arg: bytes) -> bool:
    return bool(arg) and all(c in DIGITS for c in arg.removeprefix(b"-"))


def command(buf: bytes) -> tuple | None | Verdict:
    """The answers a complete command line expects; MAYBE while the line is incomplete; None if not a command."""
    sp = buf.find(b" ", 0, 12)
    eol = buf.find(b"\n", 0, MAX_LINE)
    end = min(x for x in (sp, eol, 12) if x >= 0)
    name = buf[:end].rstrip(b"\r")
    if name not in COMMANDS:
        return MAYBE if eol < 0 and sp < 0 and any(c.startswith(buf[:12]) for c in COMMANDS) else None
    if eol < 0:
        return MAYBE if len(buf) < MAX_LINE else None
    args = buf[:eol].rstrip(b"\r").split(b" ")[1:]
    low, high, answers = COMMANDS[name]
    if not low <= len(args) <= high or any(not a or len(a) > MAX_KEY or a.translate(None, KEY_BAD) != a for a in args):
        return None
    if name in STORAGE_COMMANDS and not all(_number(a) for a in args[1:4]):
        return None  # flags, exptime, bytes
    return answers


def answered(answers: tuple, reply: bytes) -> Verdict:
    """Does the reply start like one of the answers the command gets (or a generic error)?"""
    expected = [bytes((a,)) if isinstance(a, int) else a for a in answers + ERRORS]
    if any(reply.startswith(a) for a in expected):
        return YES
    return MAYBE if any(a.startswith(reply) for a in expected) else NO


def binary(client: bytes, server: bytes) -> Verdict:
    if len(client) < BINARY.size:
        return MAYBE
    magic, opcode, keylen, extlen, dtype, _, body, opaque, _ = BINARY.unpack_from(client)
    if magic != REQUEST or dtype != 0 or extlen + keylen > body or body > MAX_BODY:
        return NO
    if opcode in SASL_OPCODES:
        return MAYBE  # left to couchbase: never YES
    if not server:
        return MAYBE
    if len(server) < BINARY.size:
        return MAYBE if server[0] == RESPONSE else NO
    r_magic, r_opcode, r_keylen, r_extlen, _, _, r_body, r_opaque, _ = BINARY.unpack_from(server)
    ok = r_magic == RESPONSE and r_opcode == opcode and r_opaque == opaque and r_extlen + r_keylen <= r_body
    return YES if ok else NO


def _complete(client: bytes) -> bool:
    """A whole request (for the last call): a complete command line, or a non-SASL binary request header."""
    if client[0] == REQUEST:
        return len(client) >= BINARY.size and client[1] not in SASL_OPCODES
    return isinstance(command(client), tuple)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        if ctx.transport == "udp":  # frame header: request id, sequence 0, datagram count >= 1, reserved 0
            if len(client) <= UDP_FRAME or client[2:4] != b"\0\0" or client[4:6] == b"\0\0" or client[6:8] != b"\0\0":
                return NO
            client, server = client[UDP_FRAME:], server[UDP_FRAME:]
        if not client:
            return NO if server else MAYBE
        if client[0] == REQUEST:
            v = binary(client, server)
        else:
            answers = command(client)
            if answers is None:
                return NO
            v = answered(answers, server) if server and isinstance(answers, tuple) else MAYBE
        if v == MAYBE and ctx.final:
            on_port = PORT in (ctx.client_port, ctx.server_port)
            return YES if on_port and not server and _complete(client) else NO
        return v
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="memcached",
    transports=("tcp", "udp"),
    ports=(PORT,),
    probe=probe,
    description="memcached text commands with a fitting answer, or binary protocol request/response (0x80/0x81)",
)
