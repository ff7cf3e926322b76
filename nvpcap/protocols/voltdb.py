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

import struct

from .base import FlowContext, guarded, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="voltdb",
    transports=("tcp",),
    ports=(21212, 21211),
    probe=probe,
    description="VoltDB: login request (length, version, 'database' service string) and login response",
)
