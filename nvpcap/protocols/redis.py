"""Redis serialization protocol (RESP2/RESP3).

Spec: redis.io/docs/latest/develop/reference/protocol-spec/. A client command is an array of bulk strings
('*<n>\\r\\n$<len>\\r\\n<name>\\r\\n...'); the reply starts with a RESP type byte (+ - : $ * in RESP2, plus
_ , # ! = ( % ~ > | in RESP3) and a CRLF-terminated header line. NeuVector (dpi_redis.c) checks the client
'*<digits>\\r\\n$<digits>\\r\\n' prefix and the reply's first byte; we also parse the whole first command
(its name must be a word) and the reply's first line. Inline commands ("PING\\r\\n") are accepted only for a
few well-known command names (not AUTH/QUIT: a POP3 dialogue would match) and with a well-formed RESP reply.
"""
from __future__ import annotations

import re
from collections import deque

import numpy as np

from .._jit import jit
from .base import (CLIENT, FlowContext, Parser, ParserOutput, either_way_midstream,
                   guarded, ProtocolSpec, Verdict)

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

_PARTIAL_HEAD = re.compile(rb"\*(?:[1-9][0-9]{0,5}(?:\r(?:\n(?:\$(?:[0-9]{1,9}\r?)?)?)?)?)?\Z")
_HEAD = re.compile(rb"\*([1-9][0-9]{0,5})\r\n")
_BULK = re.compile(rb"\$([0-9]{1,9})\r\n")
_NAME = re.compile(rb"[A-Za-z][A-Za-z_.|-]{0,39}\Z")  # a command name (or a prefix of one)
_INLINE = re.compile(
    rb"(?i)(ping|info|select|dbsize|hello|monitor|keys|exists|get|set|del|incr|config|client|"
    rb"cluster|flushall|flushdb|subscribe|psubscribe|lpush|rpush|hget|hset|ttl|expire|save|bgsave|role)"
    rb"(?: [^\r\n]*)?\r\n"
)
_REPLY = re.compile(  # the first line of a reply: RESP2 types, then RESP3 ones
    rb"(?:[+\-][ -~]{0,500}|:-?[0-9]{1,20}|[$*](?:-1|[0-9]{1,10})"
    rb"|[%~>|!=][0-9]{1,10}|_|#[tf]|,(?:[-+]?[0-9.eE+-]{1,40}|-?inf|nan)|\(-?[0-9]{1,400})\r\n"
)
_REPLY_TYPES = b"+-:$*_,#!=(%~>|"


def _command(c: bytes) -> Verdict:
    """Parse the first RESP array command. YES when its header and command name are complete and valid."""
    m = _HEAD.match(c)
    if m is None:
        if _PARTIAL_HEAD.match(c[:20]):
            return MAYBE
        if c[:1].isalpha():  # inline command
            if _INLINE.match(c[:512]):
                return YES
            line = c[:64]
            return MAYBE if b"\r\n" not in line and re.match(rb"[A-Za-z]+(?: [ -~]*)?\r?\Z", line) else NO
        return NO
    n, off = int(m.group(1)), m.end()
    for i in range(min(n, 4)):
        b = _BULK.match(c, off)
        if b is None:
            return MAYBE if re.match(rb"(?:\$[0-9]{0,9}\r?)?\Z", c[off : off + 12]) else NO
        size, off = int(b.group(1)), b.end()
        data = c[off : off + size]
        if i == 0:
            if not 0 < size <= 40:
                return NO
            if not _NAME.match(data):
                return NO if data else MAYBE
        if len(c) < off + size + 2:
            return MAYBE
        if c[off + size : off + size + 2] != b"\r\n":
            return NO
        off += size + 2
    return YES


def _reply(s: bytes) -> Verdict:
    if not s or s[:1] not in _REPLY_TYPES:
        return NO
    if _REPLY.match(s[:512]):
        return YES
    line = s[:512]
    return MAYBE if b"\r\n" not in line and len(line) < 512 else NO


def _check(c: bytes, s: bytes, final: bool) -> Verdict:
    vc = _command(c) if c else MAYBE
    if vc == NO:
        return NO
    if not s:
        # the client speaks first; a complete array command with a word for a name is proof on the last call
        return YES if vc == YES and final and c[:1] == b"*" else MAYBE
    vs = _reply(s)
    if vs == NO or not c:
        return NO if vs == NO else MAYBE
    if c[:1] != b"*" and s[:1] not in b"+-:$*":  # an inline command gets a RESP2 reply
        return NO
    return YES if vc == YES and vs == YES else MAYBE


_probe = either_way_midstream(_check)


probe = guarded(_probe)


# ---- parsing: RESP values read as a stream (protocol-spec: "RESP protocol description") ----

MAX_VALUE = 256  # characters kept of a reply value, a command name or a key
MAX_LINE = 64 * 1024  # a header/simple line longer than this is read on but not kept
MAX_DEPTH = 64  # nested aggregates deeper than this are hostile
MAX_PENDING = 1024  # commands waiting for their reply
REDACTED = "[redacted]"
SIMPLE = frozenset(b"+-:_,#(")  # one-line values: simple string, error, integer, null, double, boolean, big number
BLOBS = frozenset(b"$!=")  # length-prefixed: bulk string, bulk error, verbatim string
AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}  # elements per counted entry
SUBSCRIBE = frozenset(("SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"))
NO_KEY = frozenset(("PING", "ECHO", "INFO", "SELECT", "DBSIZE", "HELLO", "MONITOR", "QUIT", "CONFIG", "CLIENT",
                    "CLUSTER", "COMMAND", "FLUSHALL", "FLUSHDB", "SAVE", "BGSAVE", "BGREWRITEAOF", "LASTSAVE",
                    "ROLE", "TIME", "SHUTDOWN", "SLAVEOF", "REPLICAOF", "SCRIPT", "FUNCTION", "DEBUG", "SLOWLOG",
                    "MEMORY", "LATENCY", "ACL", "MULTI", "EXEC", "DISCARD", "UNWATCH", "PUBLISH", "PUBSUB", "SCAN",
                    "RANDOMKEY", "WAIT", "READONLY", "READWRITE", "RESET", "MODULE", "SWAPDB", "FAILOVER", "PSYNC",
                    "SYNC", "REPLCONF", "EVAL", "EVALSHA", "FCALL", "SENTINEL")) | SUBSCRIBE


class Value:
    """One top-level RESP value as read so far: its type byte, its text or size, the first two elements (a
    command's name and key), where it started."""

    __slots__ = ("kind", "text", "size", "items", "frame", "ts_ns", "inline")

    def __init__(self, frame: int, ts_ns: int) -> None:
        self.kind = 0
        self.text: str | None = ""  # a simple value or a bulk error's text (capped); None for RESP3 null
        self.size = -1  # blob length or element count (-1: null or none)
        self.items: list[str | None] = []  # first elements of an array (capped strings)
        self.frame, self.ts_ns = frame, ts_ns
        self.inline = False


class RespReader:
    """Reads one direction's RESP values incrementally: header lines are buffered (bounded), blob payloads are
    counted off (only the first bytes of the first elements are kept), aggregates are tracked as counters, so
    a reply of any size costs little memory. `broken` when the bytes are not RESP."""

    def __init__(self, allow_inline: bool) -> None:
        self.allow_inline = allow_inline
        self.line = bytearray()
        self.skip = 0  # blob payload bytes (+ CRLF) still to read
        self.keep: bytearray | None = None  # the blob being captured for the current value's items
        self.stack: list[int] = []  # elements left in each open aggregate (-1: streamed, ends with '.')
        self.streamed_blob = False  # inside a '$?' streamed string (';<len>' chunks)
        self.value: Value | None = None
        self.attribute = False  # the top-level value being read is a '|' attribute: the reply follows it
        self.broken = False

    def feed(self, data: bytes, frame: int, ts_ns: int) -> list[Value]:
        done: list[Value] = []
        i, n = 0, len(data)
        while i < n and not self.broken:
            if self.value is None:
                self.value = Value(frame, ts_ns)
            if self.skip:
                k = min(self.skip, n - i)
                if self.keep is not None and self.skip > 2:
                    self.keep += data[i : i + min(k, self.skip - 2, MAX_VALUE - len(self.keep))]
                self.skip -= k
                i += k
                if self.skip == 0:
                    self._blob_done(done)
                continue
            if self.stack and not self.line and not self.streamed_blob and not self._wants_item():
                j = self._skip_elements(data, i)
                if j != i:
                    i = j
                    continue
            eol = data.find(b"\n", i)
            end = n if eol < 0 else eol
            if len(self.line) < MAX_LINE:  # beyond: the line is read on, not kept
                self.line += data[i : min(end, i + MAX_LINE - len(self.line))]
            i = end if eol < 0 else eol + 1
            if eol >= 0:
                line = bytes(self.line[:-1] if self.line.endswith(b"\r") else self.line)
                self.line.clear()
                self._line(line, done)
        return done

    def _skip_elements(self, data: bytes, i: int) -> int:
        """The elements of an aggregate that keep nothing (past a command's name and key, or nested), read
        straight from `data` by a compiled loop while they are whole: a reply of thousands of elements
        (COMMAND, KEYS, LRANGE) costs a few nanoseconds per element instead of a line buffer and three calls.
        Returns where it stopped: at the first element that is cut by the end of `data`, is not a plain
        simple/blob/aggregate one, or ends the value, or when the next element is kept (the general path reads
        those as before). Short rests are left to the general path (a compiled call costs a few us)."""
        if len(data) - i < SKIP_MIN:
            return i
        stack = np.zeros(MAX_DEPTH + 1, np.int64)
        depth = len(self.stack)
        stack[:depth] = self.stack
        j, depth = _skip(np.frombuffer(data, np.uint8), i, stack, depth, len(self.value.items) < 2)
        if j != i:
            self.stack[:] = stack[:depth].tolist()
        return j

    def _line(self, line: bytes, done: list[Value]) -> None:
        v = self.value
        if self.streamed_blob:  # ';<len>' chunk headers of a streamed string; ';0' ends it
            size = _int(line[1:]) if line[:1] == b";" else None
            if size is None or size < 0:
                self.broken = True
            elif size == 0:
                self.streamed_blob = False
                self._element_done(done)
            else:
                self.skip = size + 2
            return
        if not line:
            if not self.stack and self.allow_inline and v.kind == 0:
                return  # an empty inline command is ignored by the server
            self.broken = True
            return
        kind = line[0]
        top = not self.stack
        if top and v.kind == 0:
            v.kind = kind
        if kind in SIMPLE:
            text = line[1:].decode("utf-8", "replace")[:MAX_VALUE] if kind != ord("_") else None
            if top:
                v.text = text
            else:
                self._item(text)
            self._element_done(done)
        elif kind in BLOBS:
            if line[1:] == b"?":
                self.streamed_blob = True
                return
            size = _int(line[1:])
            if size is None or size < -1:
                self.broken = True
                return
            if top:
                v.size = size
            if size < 0:
                if not top:
                    self._item(None)
                self._element_done(done)
                return
            self.skip = size + 2
            wanted = self._wants_item() if not top else kind == ord("!")  # an element, or a bulk error's text
            self.keep = bytearray() if wanted else None
        elif kind in AGGREGATES or kind == ord("."):
            self._aggregate(kind, line, top, done)
        elif top and self.allow_inline:
            v.kind, v.inline = 0, True  # an inline command: space-separated words on one line
            words = line.split()
            v.size = len(words)
            v.items = [w.decode("utf-8", "replace")[:MAX_VALUE] for w in words[:2]]
            self._element_done(done)
        else:
            self.broken = True

    def _aggregate(self, kind: int, line: bytes, top: bool, done: list[Value]) -> None:
        if kind == ord("."):  # end of a streamed aggregate
            if not self.stack or self.stack[-1] != -1:
                self.broken = True
                return
            self.stack.pop()
            self._element_done(done)
            return
        if line[1:] == b"?":
            count = -1
        else:
            n = _int(line[1:])
            if n is None or n < -1:
                self.broken = True
                return
            count = n * AGGREGATES[kind] if n > 0 else 0
            if top:
                self.value.size = n
        if top and kind == ord("|"):
            self.attribute = True
        if count == 0:
            if not top:
                self._item(None)
            self._element_done(done)
        elif len(self.stack) >= MAX_DEPTH:
            self.broken = True
        else:
            if not top:
                self._item(None)  # a nested aggregate is not a name or key
            self.stack.append(count)

    def _wants_item(self) -> bool:
        return len(self.stack) == 1 and len(self.value.items) < 2

    def _item(self, text: str | None) -> None:
        if self._wants_item():
            self.value.items.append(text)

    def _blob_done(self, done: list[Value]) -> None:
        if self.keep is not None:
            text = bytes(self.keep).decode("utf-8", "replace")
            if self.stack:
                self._item(text)
            else:
                self.value.text = text
            self.keep = None
        if not self.streamed_blob:
            self._element_done(done)

    def _element_done(self, done: list[Value]) -> None:
        """One element ended: close the aggregates it completes, and the top-level value with them."""
        while self.stack:
            if self.stack[-1] > 0:
                self.stack[-1] -= 1
                if self.stack[-1]:
                    return
            else:
                return  # a streamed aggregate ends with '.'
            self.stack.pop()
        if self.attribute:  # an attribute map precedes the value it describes
            self.attribute = False
            self.value = Value(self.value.frame, self.value.ts_ns)
            return
        done.append(self.value)
        self.value = None


SKIP_MIN = 256  # bytes left in a chunk below which _skip_elements leaves them to the general path
# _skip's element kinds by type byte: 1 simple (one line), 2 blob (length-prefixed), 3 aggregate of `count`
# elements, 4 of `count` pairs; 0 anything else (streamed values, attributes' end, bad bytes: the general path)
_KINDS = np.array([1 if b in SIMPLE else 2 if b in BLOBS else 2 + AGGREGATES.get(b, -2) for b in range(256)], np.int8)


@jit
def _skip(data, i, stack, depth, name_and_key):
    """_skip_elements' loop (stack[:depth]: elements left in each open aggregate). Returns (where it stopped,
    depth). A count is read only when it is '-1' or 1-18 ASCII digits (anything else, which int() may still
    read, is the general path's); the loop ends where the general path must go on."""
    n = data.shape[0]
    while i < n:
        eol = i
        while eol < n and data[eol] != 10:
            eol += 1
        if eol >= n:
            return i, depth
        kind = _KINDS[data[i]]
        if kind == 0:
            return i, depth
        nxt = eol + 1
        if kind > 1:
            first, last = i + 1, eol - 1 if data[eol - 1] == 13 else eol
            if last - first == 2 and data[first] == 45 and data[first + 1] == 49:  # "-1": null
                count = -1
            elif 1 <= last - first <= 18:
                count = 0
                for p in range(first, last):
                    c = int(data[p])  # (a Python int without numba: numpy's uint8 would wrap)
                    if c < 48 or c > 57:
                        return i, depth
                    count = count * 10 + (c - 48)
            else:
                return i, depth
            if kind == 2:
                if count >= 0:
                    nxt = eol + count + 3  # header, payload, CRLF
                    if nxt > n:
                        return i, depth
            elif count > 0:
                if depth >= MAX_DEPTH:
                    return i, depth
                stack[depth] = count * (kind - 2)
                depth += 1
                i = eol + 1
                continue
        # the element is done: it ends the aggregates left waiting for it alone (as _element_done)
        k = depth - 1
        while k >= 0 and stack[k] == 1:
            k -= 1
        if k < 0:  # it ends the value: the general path's job
            return i, depth
        depth = k + 1
        if stack[k] > 0:
            stack[k] -= 1  # (-1: a streamed aggregate, ended by '.')
        i = nxt
        if k == 0 and name_and_key:  # back at a command's name and key
            return i, depth
    return i, depth


def _int(b: bytes) -> int | None:
    try:
        return int(b) if 0 < len(b) <= 20 else None
    except ValueError:
        return None


def command_fields(v: Value) -> dict:
    """cmd (upper-cased), key, argc of a client command; AUTH arguments are never logged."""
    items = v.items
    name = items[0].upper() if items and items[0] is not None else None
    fields: dict = {"cmd": name, "argc": max(v.size, 0)}
    if name in ("AUTH",) and v.size > 1:
        fields["key"] = REDACTED
    elif len(items) > 1 and name not in NO_KEY:
        fields["key"] = items[1]
    return fields


def reply_fields(v: Value) -> dict:
    kind = chr(v.kind) if v.kind else None
    fields: dict = {"reply_type": kind}
    if v.kind in SIMPLE:
        fields["reply"] = v.text
        if kind == "-":
            fields["error"] = v.text
    elif v.kind in BLOBS:
        fields["reply_len"] = v.size
        if kind == "!":
            fields["error"] = v.text
    elif v.kind in AGGREGATES:
        fields["reply_count"] = v.size
    fields["success"] = kind not in ("-", "!")
    return fields


class RedisParser(Parser):
    """One event per command, paired with its reply in order (pipelining: a queue). RESP3 push messages ('>')
    and replies with no command waiting (pub/sub messages, MONITOR output) are counted, reported at the end.
    (P|S)SUBSCRIBE get one reply per channel: the first is paired, the others are absorbed."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.readers = (RespReader(allow_inline=True), RespReader(allow_inline=False))
        self.pending: deque[tuple[dict, int, int, int]] = deque()  # (fields, frame, ts, extra replies to absorb)
        self.absorb = 0
        self.pushes = 0
        self.push_at: tuple[int, int] | None = None

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        reader = self.readers[side]
        values = reader.feed(data, frame, ts_ns)
        for v in values:
            self._command(v) if side == CLIENT else self._reply(v)
        if reader.broken:
            self.out.anomaly("redis-bad-" + ("command" if side == CLIENT else "reply"),
                             "bytes that are not RESP: parsing stopped", frame, ts_ns)
            self.done = True

    def _command(self, v: Value) -> None:
        if v.kind != ord("*") and not v.inline:
            return  # a client sends arrays or inline commands; anything else is ignored (as redis does not)
        fields = command_fields(v)
        extra = max(v.size - 2, 0) if fields["cmd"] in SUBSCRIBE and fields["cmd"][0] != "U" else 0
        if len(self.pending) >= MAX_PENDING:
            fields0, frame0, ts0, _ = self.pending.popleft()
            self.out.event(fields0, frame0, ts0)
        self.pending.append((fields, v.frame, v.ts_ns, extra))

    def _reply(self, v: Value) -> None:
        push = v.kind == ord(">")
        first = v.items[0] if v.items else None
        confirms = push and isinstance(first, str) and first.upper() in SUBSCRIBE  # RESP3 (un)subscribe reply
        if self.absorb and (confirms or not push):
            self.absorb -= 1
            return
        if not self.pending or push and not (confirms and self.pending[0][0]["cmd"] in SUBSCRIBE):
            self.pushes += 1
            self.push_at = self.push_at or (v.frame, v.ts_ns)
            return
        fields, frame, ts_ns, extra = self.pending.popleft()
        fields.update(reply_fields(v))
        self.absorb = extra
        self.out.event(fields, frame, ts_ns)

    def finish(self) -> None:
        while self.pending:
            fields, frame, ts_ns, _ = self.pending.popleft()
            self.out.event(fields, frame, ts_ns)
        if self.pushes:
            frame, ts_ns = self.push_at or (0, 0)
            self.out.event({"cmd": None, "pushes": self.pushes}, frame, ts_ns)
            self.pushes = 0


SPEC = ProtocolSpec(
    name="redis",
    transports=("tcp",),
    ports=(6379, 26379),
    probe=probe,
    description="Redis RESP: client array of bulk strings (command name), reply with a RESP type line",
    parser=RedisParser,
    extracts="per command with its reply: cmd, key, argc, reply type, reply value (simple/error/integer), "
             "bulk length or element count, error; AUTH arguments redacted; pushes counted",
)
