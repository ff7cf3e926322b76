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

from .base import either_way_midstream, guarded, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="redis",
    transports=("tcp",),
    ports=(6379, 26379),
    probe=probe,
    description="Redis RESP: client array of bulk strings (command name), reply with a RESP type line",
)
