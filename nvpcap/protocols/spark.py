"""Apache Spark RPC (Netty transport), identified as NeuVector (dpi_spark.c) does.

Spec: spark common/network-common/src/main/java/org/apache/spark/network/protocol/MessageEncoder.java and
Message.Type: a frame is an int64 frame length (counting itself), a type byte, the message header, the body.
RpcRequest (3) / RpcResponse (4): request id int64 + body length int32, frame length = 21 + body length;
RpcFailure (5): request id + error string; StreamRequest (6) / StreamResponse (7) / StreamFailure (8): a
stream id string; OneWayMessage (9): body length int32, frame length = 13 + body length; ChunkFetchRequest
(0): stream id int64 + chunk index int32, frame length 21. Proof: a request answered by a response with
the same request id; on the last call or mid-stream a lone request/one-way message with consistent lengths.
"""
from __future__ import annotations

import struct

from .base import either_way_midstream, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

MAX_FRAME = 1 << 31  # NeuVector's 256 KiB limit is for the messages it parses; chunks can be larger
REQUESTS = {0, 3, 6, 9, 10}
RESPONSES = {1, 2, 4, 5, 7, 8, 9}


def _frame(b: bytes, types: set) -> tuple[Verdict, int, int]:
    """One frame at the start of b: (verdict, type, request id or -1)."""
    if len(b) < 9:
        return (MAYBE if not b[:4].strip(b"\0") and (len(b) < 5 or b[4] < 0x80) else NO), 0, -1
    size, kind = struct.unpack_from(">QB", b)
    if not 13 <= size <= MAX_FRAME or kind not in types:
        return NO, 0, -1
    if kind == 9:  # OneWayMessage: body length
        if len(b) < 13:
            return MAYBE, kind, -1
        return (YES if size == 13 + struct.unpack_from(">I", b, 9)[0] else NO), kind, -1
    if kind == 0:  # ChunkFetchRequest: stream id + chunk index
        return (YES if size == 21 else NO), kind, -1
    if kind in (6, 7, 8):  # a stream id string (int32 length + UTF-8)
        if len(b) < 13:
            return MAYBE, kind, -1
        slen = struct.unpack_from(">I", b, 9)[0]
        name = b[13 : 13 + min(slen, 64)]
        ok = 0 < slen <= size - 13 and all(0x20 <= x < 0x7F for x in name)
        return (YES if ok and len(name) == min(slen, 64) else MAYBE if ok else NO), kind, -1
    if len(b) < 21:
        return MAYBE, kind, -1
    rid, blen = struct.unpack_from(">qI", b, 9)
    if kind in (3, 4):
        return (YES if size == 21 + blen and rid >= 0 else NO), kind, rid
    if kind == 5:  # RpcFailure: request id + error string
        return (YES if size == 21 + blen else NO), kind, rid
    if kind == 1:  # ChunkFetchSuccess: stream id(8) + chunk index(4) + buffer
        return YES, kind, -1
    if kind == 2:  # ChunkFetchFailure: stream chunk id + error string
        return (YES if size == 8 + 1 + 12 + 4 + struct.unpack_from(">I", b, 21)[0] else NO) if len(b) >= 25 \
            else MAYBE, kind, -1
    # UploadStream (10): request id, meta length, meta, body byte count
    return (YES if 0 < blen <= size - 29 else NO), kind, rid


def _check(c: bytes, s: bytes, final: bool, midstream: bool) -> Verdict:
    vc, kind, rid = _frame(c, REQUESTS) if c else (MAYBE, 0, -1)
    if vc == NO:
        return NO
    if not s:
        lone = vc == YES and kind in (3, 9) and (final or (midstream and kind == 9))
        return YES if lone else MAYBE
    vs, skind, srid = _frame(s, RESPONSES)
    if vs == NO or not c:
        return NO if vs == NO else MAYBE
    if vc == YES and vs == YES:
        if kind == 3 and skind in (4, 5):
            return YES if srid == rid else NO
        if kind == 6 and skind in (7, 8) or kind == 0 and skind in (1, 2) or kind == 9 or skind == 9:
            return YES
        return YES if midstream else NO
    return MAYBE


_probe = either_way_midstream(_check, pass_midstream=True)


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="spark",
    transports=("tcp",),
    ports=(7077,),
    probe=probe,
    description="Spark RPC: Netty frames (int64 length, type) RpcRequest/RpcResponse with matching request id",
)
