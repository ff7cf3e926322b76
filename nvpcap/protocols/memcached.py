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
from collections import deque
from functools import partial
from typing import Callable

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict
from nvpcap.protocols.framing import Framer

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


# ---- parsing: text commands paired with their answers (protocol.txt), binary packets (protocol-binary.txt) ----

MAX_VALUE = 256  # characters kept of a key, an error message, a version
MAX_PENDING = 1024
MAX_TEXT_LINE = 16 * 1024  # bytes kept of a command/answer line (a multi-get may pass memcached's 2048)
KEEP_BINARY = 4096  # bytes after the 24-byte header kept (extras, key, first value bytes)
CONTINUATION = (b"VALUE ", b"STAT ", b"ITEM ", b"PREFIX ", b"key=")  # lines of a multi-line answer before END
NOREPLY_ARG = {b"set": 5, b"add": 5, b"replace": 5, b"append": 5, b"prepend": 5, b"cas": 6, b"delete": 2,
               b"incr": 3, b"decr": 3, b"touch": 3, b"verbosity": 2}  # index of the optional "noreply" word
RETRIEVAL_COMMANDS = {b"get": 1, b"gets": 1, b"gat": 2, b"gats": 2}  # index of the first key
META_COMMANDS = frozenset((b"mg", b"ms", b"md", b"ma", b"me"))
KEYED_COMMANDS = frozenset(RETRIEVAL_COMMANDS) | STORAGE_COMMANDS | META_COMMANDS | {b"delete", b"incr", b"decr",
                                                                                   b"touch"}

# protocol-binary.txt "Command Opcodes" (names lower-cased)
OPCODES = {0x00: "get", 0x01: "set", 0x02: "add", 0x03: "replace", 0x04: "delete", 0x05: "increment",
           0x06: "decrement", 0x07: "quit", 0x08: "flush", 0x09: "getq", 0x0A: "noop", 0x0B: "version",
           0x0C: "getk", 0x0D: "getkq", 0x0E: "append", 0x0F: "prepend", 0x10: "stat", 0x11: "setq", 0x12: "addq",
           0x13: "replaceq", 0x14: "deleteq", 0x15: "incrementq", 0x16: "decrementq", 0x17: "quitq",
           0x18: "flushq", 0x19: "appendq", 0x1A: "prependq", 0x1B: "verbosity", 0x1C: "touch", 0x1D: "gat",
           0x1E: "gatq", 0x20: "sasl_list_mechs", 0x21: "sasl_auth", 0x22: "sasl_step", 0x30: "rget",
           0x31: "rset", 0x32: "rsetq", 0x33: "rappend", 0x34: "rappendq", 0x35: "rprepend", 0x36: "rprependq",
           0x37: "rdelete", 0x38: "rdeleteq", 0x39: "rincr", 0x3A: "rincrq", 0x3B: "rdecr", 0x3C: "rdecrq"}
# protocol-binary.txt "Response Status" (and Couchbase's additions, kv_engine docs/BinaryProtocol.md)
STATUSES = {0x00: "no_error", 0x01: "key_not_found", 0x02: "key_exists", 0x03: "value_too_large",
            0x04: "invalid_arguments", 0x05: "item_not_stored", 0x06: "non_numeric_value",
            0x07: "vbucket_belongs_to_another_server", 0x08: "no_bucket", 0x1F: "auth_stale",
            0x20: "authentication_error", 0x21: "authentication_continue", 0x22: "out_of_range",
            0x23: "rollback", 0x24: "no_access", 0x25: "node_initializing", 0x81: "unknown_command",
            0x82: "out_of_memory", 0x83: "not_supported", 0x84: "internal_error", 0x85: "busy",
            0x86: "temporary_failure"}
# magic -> (is a request, flexible framing extras: byte 2 = framing extras length, byte 3 = key length)
MAGICS = {0x80: (True, False), 0x81: (False, False), 0x08: (True, True), 0x18: (False, True),
          0x82: (True, False), 0x83: (False, False)}
VALUE_OPS = frozenset((0x01, 0x02, 0x03, 0x0E, 0x0F, 0x11, 0x12, 0x13, 0x19, 0x1A))  # requests carrying a value


def _text(b: bytes, cap: int = MAX_VALUE) -> str:
    return b[:cap * 4].decode("utf-8", "replace")[:cap]


def _size(word: bytes) -> int | None:
    return int(word) if word.isdigit() and len(word) <= 12 else None


class Packet:
    """One binary packet (its header and the kept leading body bytes)."""

    __slots__ = ("magic", "opcode", "status", "opaque", "key", "extras", "value", "value_len", "request")

    def __init__(self, msg: bytes) -> None:
        magic, self.opcode, keylen, extlen, _, self.status, body, self.opaque, _ = BINARY.unpack_from(msg)
        self.magic = magic
        self.request, flexible = MAGICS[magic]
        framing = 0
        if flexible:
            framing, keylen = keylen >> 8, keylen & 0xFF
        start = BINARY.size + framing
        self.extras = msg[start : start + extlen]
        self.key = msg[start + extlen : start + extlen + keylen]
        self.value = msg[start + extlen + keylen :]
        self.value_len = max(body - framing - extlen - keylen, 0)


def _binary_length(head: bytes) -> int | None:
    return BINARY.size + struct.unpack_from("!I", head, 8)[0] if head[0] in MAGICS else None


class BinaryProtocol:
    """The binary protocol of one connection: requests queued per sender, a response matched to the first
    queued request with its opcode and opaque; requests before it got no answer (quiet commands)."""

    opcodes = OPCODES

    def __init__(self, out: ParserOutput) -> None:
        self.out = out
        self.framers = (Framer(BINARY.size, _binary_length, keep=BINARY.size + KEEP_BINARY),
                        Framer(BINARY.size, _binary_length, keep=BINARY.size + KEEP_BINARY))
        self.queues: tuple[deque, deque] = (deque(), deque())  # per requester side: (packet, fields, frame, ts)
        self.handlers = (partial(self._packet, CLIENT), partial(self._packet, SERVER))

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> bool:
        return self.framers[side].feed(data, frame, ts_ns, self.handlers[side])

    def _packet(self, side: int, msg: bytes, total: int, frame: int, ts_ns: int) -> int:
        p = Packet(msg)
        if p.request:
            queue = self.queues[side]
            if len(queue) >= MAX_PENDING:
                self.out.event(*queue.popleft()[1:])
            queue.append((p, self.request_fields(p), frame, ts_ns))
            return 0
        queue = self.queues[1 - side]
        for i, (q, fields, frame0, ts0) in enumerate(queue):
            if q.opcode == p.opcode and q.opaque == p.opaque:
                for _ in range(i):
                    self.out.event(*queue.popleft()[1:])
                queue.popleft()
                self.response_fields(q, p, fields)
                self.out.event(fields, frame0, ts0)
                return 0
        fields = {"protocol": "binary", "command": self.name_of(p), "opcode": p.opcode}
        self.response_fields(None, p, fields)
        self.out.event(fields, frame, ts_ns)
        return 0

    def name_of(self, p: Packet) -> str:
        return self.opcodes.get(p.opcode, f"0x{p.opcode:02x}")

    def request_fields(self, p: Packet) -> dict:
        fields: dict = {"protocol": "binary", "command": self.name_of(p), "opcode": p.opcode}
        if p.key:
            fields["key"] = _text(p.key)
        if p.value_len and p.opcode in VALUE_OPS:
            fields["value_bytes"] = p.value_len
        return fields

    def response_fields(self, request: Packet | None, p: Packet, fields: dict) -> None:
        fields["status"] = STATUSES.get(p.status, f"0x{p.status:04x}")
        fields["status_code"] = p.status
        if "key" not in fields and p.key:
            fields["key"] = _text(p.key)
        if p.status == 0 and p.value_len and "value_bytes" not in fields and p.opcode != 0x10:
            fields["value_bytes"] = p.value_len
        elif p.status and p.value_len:
            fields["error"] = _text(p.value)  # the error text of a failed command

    def finish(self) -> None:
        for queue in self.queues:
            while queue:
                self.out.event(*queue.popleft()[1:])


class LineReader:
    """CRLF lines of one direction, each followed by a data block the caller may ask to skip (bounded: a line
    longer than `limit` is cut, the rest of it read on)."""

    __slots__ = ("limit", "line", "skip", "start")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.line = bytearray()
        self.skip = 0
        self.start: tuple[int, int] | None = None

    def feed(self, data: bytes, frame: int, ts_ns: int, on_line: Callable[[bytes, int, int], int]) -> bool:
        """on_line(line, frame, ts_ns) returns the data block bytes that follow the line, or -1 to stop."""
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                k = min(self.skip, n - i)
                self.skip -= k
                i += k
                continue
            if self.start is None:  # nothing held: the lines that lie whole in the chunk first
                i = self._whole(data, i, frame, ts_ns, on_line)
                if i < 0:
                    return False
                if i >= n:
                    return True
                self.start = (frame, ts_ns)
            eol = data.find(b"\n", i)
            end = n if eol < 0 else eol
            if len(self.line) < self.limit:
                self.line += data[i : min(end, i + self.limit - len(self.line))]
            if eol < 0:
                return True
            i = eol + 1
            line = bytes(self.line).removesuffix(b"\r")
            self.line.clear()
            start, self.start = self.start, None
            extra = on_line(line, *start)
            if extra < 0:
                return False
            self.skip = extra
        return True

    def _whole(self, data: bytes, i: int, frame: int, ts_ns: int, on_line: Callable[[bytes, int, int], int]) -> int:
        """feed's fast path, for a reader that holds nothing: the lines (and their data blocks) that lie whole
        in the chunk from i, cut straight from it (not copied through the line buffer), as feed's loop reads
        them. Returns where feed's loop goes on (an unfinished or over-long line; len(data) when a block runs
        past the chunk, its rest left in `skip`), or -1 when on_line stopped."""
        n, limit = len(data), self.limit
        while i < n:
            eol = data.find(b"\n", i)
            if eol < 0 or eol - i > limit:
                break
            extra = on_line(data[i:eol].removesuffix(b"\r"), frame, ts_ns)
            if extra < 0:
                return -1
            i = eol + 1 + extra
            if i > n:
                self.skip = i - n
                return n
        return i


def text_request(line: bytes) -> tuple[dict, int, bool, bool] | None:
    """(fields, data block bytes, answer expected, quiet meta command) of a text command line; None if the
    data block length of a storage command is not a number (the stream cannot be followed)."""
    words = line.split()
    if not words:
        return {"protocol": "text", "command": ""}, 0, True, False
    name = words[0]
    fields: dict = {"protocol": "text", "command": _text(name, 32)}
    block = 0
    if name in KEYED_COMMANDS:
        keys = words[RETRIEVAL_COMMANDS[name]:] if name in RETRIEVAL_COMMANDS else words[1:2]
        if keys:
            fields["key"] = _text(keys[0])
        if len(keys) > 1:
            fields["key_count"] = len(keys)
    elif len(words) > 1:
        fields["args"] = _text(line[len(name):].strip())
    if name in STORAGE_COMMANDS:
        block = _size(words[4]) if len(words) > 4 else None
        if block is None:
            return None
        fields["value_bytes"] = block
        block += 2
    elif name == b"ms":
        block = _size(words[2]) if len(words) > 2 else None
        if block is None:
            return None
        fields["value_bytes"] = block
        block += 2
    noreply = NOREPLY_ARG.get(name)
    quiet = name in META_COMMANDS and b"q" in words[2:]
    if noreply is not None and len(words) > noreply and words[-1] == b"noreply" or name == b"flush_all" \
            and words[-1] == b"noreply":
        fields["noreply"] = True
        return fields, block, False, False
    return fields, block, name != b"quit", quiet


class TextProtocol:
    """Text commands queued in order; the server's answer lines are read to their end (VALUE/STAT/... lines up
    to END, data blocks skipped) and paired with the oldest command waiting. Quiet meta commands (flag q) may
    get no answer: an MN (the answer to mn) closes the quiet commands before it."""

    def __init__(self, out: ParserOutput) -> None:
        self.out = out
        self.readers = (LineReader(MAX_TEXT_LINE), LineReader(MAX_TEXT_LINE))
        self.pending: deque[tuple[dict, int, int, bool]] = deque()  # (fields, frame, ts, quiet)
        self.answer: dict | None = None  # the multi-line answer being read

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> bool:
        return self.readers[side].feed(data, frame, ts_ns, self._command if side == CLIENT else self._answer)

    def _command(self, line: bytes, frame: int, ts_ns: int) -> int:
        parsed = text_request(line)
        if parsed is None:
            self.out.anomaly("memcached-bad-length", f"storage command without a data length: {line[:64]!r}",
                             frame, ts_ns)
            return -1
        fields, block, answered, quiet = parsed
        if not answered:
            self.out.event(fields, frame, ts_ns)
            return block
        if len(self.pending) >= MAX_PENDING:
            self.out.event(*self.pending.popleft()[:3])
        self.pending.append((fields, frame, ts_ns, quiet))
        return block

    def _answer(self, line: bytes, frame: int, ts_ns: int) -> int:
        answer = self.answer if self.answer is not None else {}
        if line.startswith(b"VALUE "):  # VALUE <key> <flags> <bytes> [<cas unique>]
            words = line.split()
            size = _size(words[3]) if len(words) > 3 else None
            if size is None:
                self.out.anomaly("memcached-bad-length", f"VALUE line without a data length: {line[:64]!r}",
                                 frame, ts_ns)
                return -1
            answer["hits"] = answer.get("hits", 0) + 1
            answer["value_bytes"] = answer.get("value_bytes", 0) + size
            self.answer = answer
            return size + 2
        if line.startswith(CONTINUATION):
            if line.startswith(b"STAT "):
                answer["stat_count"] = answer.get("stat_count", 0) + 1
            self.answer = answer
            return 0
        block = 0
        word, _, rest = line.partition(b" ")
        answer["response"] = _text(word, 32)
        if word in (b"CLIENT_ERROR", b"SERVER_ERROR"):
            answer["error"] = _text(rest)
        elif word == b"VERSION":
            answer["version"] = _text(rest, 64)
        elif word == b"VA":  # meta get hit: VA <size> <flags>*, then the data block
            size = _size(rest.split(b" ")[0])
            if size is None:
                self.out.anomaly("memcached-bad-length", f"VA line without a data length: {line[:64]!r}",
                                 frame, ts_ns)
                return -1
            answer["value_bytes"] = size
            block = size + 2
        self.answer = None
        self._pair(answer, word)
        return block

    def _pair(self, answer: dict, word: bytes) -> None:
        pending = self.pending
        if word == b"MN":
            while pending and pending[0][3] and pending[0][0]["command"] != "mn":
                self.out.event(*pending.popleft()[:3])
        if not pending:
            return  # an answer with no command waiting (watch output, or a command not seen)
        fields, frame, ts_ns, _ = pending.popleft()
        fields.update(answer)
        self.out.event(fields, frame, ts_ns)

    def finish(self) -> None:
        while self.pending:
            self.out.event(*self.pending.popleft()[:3])


class MemcachedParser(Parser):
    """One event per command with its answer (text or binary protocol, chosen by the client's first byte):
    command, key (the first of a multi-get, with the key count), response/status, error text, value bytes.
    UDP: each datagram's frame header is stripped; a request is paired with the first datagram of its
    answer by request id."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.proto: TextProtocol | BinaryProtocol | None = None
        self.udp: dict[int, tuple[dict, int, int]] = {}
        self.udp_binary = BinaryProtocol(out) if ctx.transport == "udp" else None

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.ctx.transport == "udp":
            self._datagram(side, data, frame, ts_ns)
            return
        if self.proto is None:
            if side != CLIENT or not data:
                return  # the client speaks first
            self.proto = BinaryProtocol(self.out) if data[0] == REQUEST else TextProtocol(self.out)
        if not self.proto.feed(side, data, frame, ts_ns):
            if isinstance(self.proto, BinaryProtocol):
                self.out.anomaly("memcached-bad-magic", "not a binary protocol packet: parsing stopped",
                                 frame, ts_ns)
            self.done = True

    def _datagram(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        """protocol.txt "UDP protocol": request id, sequence number, datagram count, reserved, then the data."""
        if len(data) <= UDP_FRAME:
            return
        rid, seq = struct.unpack_from("!HH", data)
        body = data[UDP_FRAME:]
        line = body[: body.find(b"\n")] if b"\n" in body[:MAX_LINE] else body[:MAX_LINE]
        line = line.removesuffix(b"\r")
        if side == CLIENT:
            parsed = text_request(line) if body[0] != REQUEST else None
            fields = parsed[0] if parsed else {"protocol": "binary" if body[0] == REQUEST else "text"}
            if body[0] == REQUEST and len(body) >= BINARY.size:
                fields = self.udp_binary.request_fields(Packet(body))
            if len(self.udp) >= MAX_PENDING:
                self.out.event(*self.udp.pop(next(iter(self.udp))))
            self.udp[rid] = (fields, frame, ts_ns)
        elif seq == 0 and rid in self.udp:
            fields, frame0, ts0 = self.udp.pop(rid)
            if body[0] in MAGICS and len(body) >= BINARY.size:
                self.udp_binary.response_fields(None, Packet(body), fields)
            else:
                word, _, rest = line.partition(b" ")
                fields["response"] = _text(word, 32)
            self.out.event(fields, frame0, ts0)

    def finish(self) -> None:
        if self.proto is not None:
            self.proto.finish()
        for entry in self.udp.values():
            self.out.event(*entry)
        self.udp.clear()


SPEC = ProtocolSpec(
    name="memcached",
    transports=("tcp", "udp"),
    ports=(PORT,),
    probe=probe,
    description="memcached text commands with a fitting answer, or binary protocol request/response (0x80/0x81)",
    parser=MemcachedParser,
    extracts="per command with its answer: protocol, command, key (+ key count), response/status, error, "
             "value bytes, hits, stat count, noreply",
)
