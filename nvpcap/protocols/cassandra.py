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

from .base import FlowContext, guarded, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="cassandra",
    transports=("tcp",),
    ports=(9042, 7000, 7001),
    probe=probe,
    description="Cassandra: CQL native frames v1-v5 (direction bit, opcode table, stream id) or internode magic",
)
