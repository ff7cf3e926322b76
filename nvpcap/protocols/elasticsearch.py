"""Elasticsearch (and OpenSearch) binary transport protocol, port 9300.

Spec: elasticsearch server/src/main/java/org/elasticsearch/transport/TcpHeader.java and
InboundDecoder: marker bytes 'E' 'S', int32 message size (-1 = ping), int64 request id, status byte (bits:
response, error, compressed, handshake), int32 version id (major*1000000 + minor*10000 + ...). A response
carries the request's id. Proof: a request and a response with the same id, two chained messages, or on the
last call one complete header. Messages are framed, so mid-stream flows are handled the same way, and
either side may be the one seen.
"""
from __future__ import annotations

import struct

from .base import FlowContext, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

PING = b"ES\xff\xff\xff\xff"
MAX_SIZE = 1 << 27  # far above http.max_content_length (100 MiB)
MAX_VERSION = 200_000_000  # ES ids are major*1e6+...; OpenSearch sets bit 27 (0x08000000)
MAX_REQUEST_ID = 1 << 40  # request ids count up from 0 on each node
HEADER = 19  # 'ES' + size(4) + request id(8) + status(1) + version(4)


def _message(b: bytes, off: int = 0) -> tuple[Verdict, int, int]:
    """One message at b[off:]: (verdict, request id or -1 for a ping, end offset)."""
    head = b[off : off + HEADER]
    if len(head) < 6:
        ok = PING.startswith(head[:2]) and (len(head) < 3 or head[2] <= MAX_SIZE >> 24 or head[2] == 0xFF)
        return (MAYBE if ok else NO), 0, 0
    if head[:6] == PING:
        return YES, -1, off + 6
    size = struct.unpack_from(">i", head, 2)[0]
    if head[:2] != b"ES" or not 13 <= size < MAX_SIZE:
        return NO, 0, 0
    if len(head) < HEADER:
        return (NO if len(head) > 14 and head[14] > 0x0F else MAYBE), 0, 0
    rid, status, version = struct.unpack_from(">qBi", head, 6)
    if not 0 <= rid < MAX_REQUEST_ID or status > 0x0F or not 1_000_000 <= version < MAX_VERSION:
        return NO, 0, 0
    return YES, rid, off + 6 + size


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    found = []
    for b in (client, server):
        if not b:
            continue
        v, rid, end = _message(b)
        if v != YES:
            return v
        if end < len(b):  # a second chained message
            v2 = _message(b, end)[0]
            if v2 == YES:
                return YES
            if v2 == NO:
                return NO
        found.append(rid)
    if len(found) == 2:  # a valid header each way (a response normally repeats the request id)
        return YES
    return YES if found and ctx.final else MAYBE


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="elasticsearch",
    transports=("tcp",),
    ports=(9300,),
    probe=probe,
    description="Elasticsearch transport: 'ES' + size + request id + status + version; response id = request id",
)
