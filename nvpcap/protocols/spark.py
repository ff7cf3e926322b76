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
from functools import partial

from .base import (FlowContext, Parser, ParserOutput, either_way_midstream,
                   guarded, ProtocolSpec, Verdict)
from .framing import Cursor, Framer, Short

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


# ---- parsing: network-common's Message types (protocol/*.java encode()), requests paired with responses ----

MAX_ERROR = 1024  # characters kept of a failure string
MAX_PENDING = 1024
KEEP = 4096  # leading bytes of a frame read; bodies are skipped
FRAME_HEAD = struct.Struct(">qb")  # frame length (counting itself), Message.Type id

# Message.Type
TYPES = {0: "ChunkFetchRequest", 1: "ChunkFetchSuccess", 2: "ChunkFetchFailure", 3: "RpcRequest", 4: "RpcResponse",
         5: "RpcFailure", 6: "StreamRequest", 7: "StreamResponse", 8: "StreamFailure", 9: "OneWayMessage",
         10: "UploadStream", 11: "MergedBlockMetaRequest", 12: "MergedBlockMetaSuccess"}
REQUEST_TYPES = frozenset((0, 3, 6, 10, 11))
ONE_WAY = 9


def _frame_length(head: bytes) -> int | None:
    size, kind = FRAME_HEAD.unpack_from(head)
    return size if FRAME_HEAD.size <= size <= MAX_FRAME and kind in TYPES else None


def _string(c: Cursor, cap: int = MAX_ERROR) -> str:
    """Encoders.Strings: int32 length + UTF-8."""
    n = c.int(">i")
    return c.take(min(n, c.left()) if n > 0 else 0).decode("utf-8", "replace")[:cap] if n >= 0 else ""


def decode(kind: int, msg: bytes, total: int) -> tuple[tuple | None, dict, int]:
    """(pairing key or None, fields, bytes sent after the frame) of one message. The pairing key is the same
    for a request and its response: ("rpc", request id), ("chunk", stream id, chunk index), ("stream", id)."""
    c = Cursor(msg, FRAME_HEAD.size)
    fields: dict = {}
    key: tuple | None = None
    extra = 0
    body = total - FRAME_HEAD.size  # what follows the type byte inside the frame
    if kind in (3, 4):  # RpcRequest / RpcResponse: request id, body size, body
        rid, blen = struct.unpack(">qi", c.take(12))
        key, fields["body_len"] = ("rpc", rid), blen
    elif kind == 5:  # RpcFailure: request id, error string
        rid = c.int(">q")
        key, fields["error"] = ("rpc", rid), _string(c)
    elif kind == 9:  # OneWayMessage: body size, body
        fields["body_len"] = c.int(">i")
    elif kind in (0, 1, 2):  # StreamChunkId (stream id, chunk index) [+ buffer | error string]
        sid, index = struct.unpack(">qi", c.take(12))
        key = ("chunk", sid, index)
        fields["stream_id"], fields["chunk_index"] = sid, index
        if kind == 1:
            fields["body_len"] = body - 12
        elif kind == 2:
            fields["error"] = _string(c)
    elif kind in (6, 7, 8):  # stream id string [+ byte count, data after the frame | + error string]
        stream = _string(c)
        key, fields["stream"] = ("stream", stream), stream
        if kind == 7:
            extra = c.int(">q")
            fields["body_len"] = extra
        elif kind == 8:
            fields["error"] = _string(c)
    elif kind == 10:  # UploadStream: request id, meta size, meta, body byte count (data after the frame)
        rid, mlen = struct.unpack(">qi", c.take(12))
        c.skip(mlen)
        extra = c.int(">q")
        key, fields["meta_len"], fields["body_len"] = ("rpc", rid), mlen, extra
    elif kind == 11:  # MergedBlockMetaRequest: request id, app id, shuffle id, shuffle merge id, reduce id
        rid = c.int(">q")
        key, fields["app_id"] = ("rpc", rid), _string(c, 256)
        fields["shuffle_id"], fields["shuffle_merge_id"], fields["reduce_id"] = struct.unpack(">iii", c.take(12))
    elif kind == 12:  # MergedBlockMetaSuccess: request id, number of chunks, bitmaps
        rid, chunks = struct.unpack(">qi", c.take(12))
        key, fields["num_chunks"], fields["body_len"] = ("rpc", rid), chunks, body - 12
    if key is not None and key[0] == "rpc":
        fields["request_id"] = key[1]
    return key, fields, max(extra, 0)


def _as_response(fields: dict) -> dict:
    """A response's fields as they are added to its request's event."""
    return {("response_body_len" if k == "body_len" else k): v for k, v in fields.items() if k != "request_id"}


class SparkParser(Parser):
    """One event per request with its response (type names, ids, body sizes, failure text); one-way messages
    alone. Either side may send requests (Spark's RPC env answers both ways on one connection): a response
    pairs with the other side's request. Frames that do not parse (a channel encrypted after SASL/AES
    negotiation) end the parsing."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = (Framer(FRAME_HEAD.size, _frame_length, keep=KEEP),
                        Framer(FRAME_HEAD.size, _frame_length, keep=KEEP))
        self.pending: dict[tuple, tuple[dict, int, int]] = {}  # (requester side, pairing key) -> event

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if not self.framers[side].feed(data, frame, ts_ns, partial(self._message, side)):
            self.out.anomaly("spark-bad-frame", "frame length or message type out of range: framing lost",
                             frame, ts_ns)
            self.done = True

    def _message(self, side: int, msg: bytes, total: int, frame: int, ts_ns: int) -> int:
        kind = msg[8]
        try:
            key, fields, extra = decode(kind, msg, total)
        except (Short, struct.error):
            self.anomaly_once("spark-short-message", f"{TYPES[kind]} header cut at {len(msg)} bytes", frame, ts_ns)
            return 0
        if kind in REQUEST_TYPES and key is not None:
            self._remember((side, *key), {"type": TYPES[kind], **fields}, frame, ts_ns)
        elif kind == ONE_WAY or key is None:
            self.out.event({"type": TYPES[kind], **fields}, frame, ts_ns)
        else:
            entry = self.pending.pop((1 - side, *key), None)
            if entry is None:  # a response whose request was not seen
                event = {"type": None, **({"request_id": fields["request_id"]} if "request_id" in fields else {})}
                event.update({"response_type": TYPES[kind], **_as_response(fields)})
                self.out.event(event, frame, ts_ns)
            else:
                event, frame0, ts0 = entry
                event.update({"response_type": TYPES[kind], **_as_response(fields)})
                self.out.event(event, frame0, ts0)
        return extra

    def _remember(self, key: tuple, event: dict, frame: int, ts_ns: int) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.out.event(*self.pending.pop(next(iter(self.pending))))
        old = self.pending.pop(key, None)
        if old is not None:
            self.out.event(*old)
        self.pending[key] = (event, frame, ts_ns)

    def finish(self) -> None:
        for entry in self.pending.values():
            self.out.event(*entry)
        self.pending.clear()


SPEC = ProtocolSpec(
    name="spark",
    transports=("tcp",),
    ports=(7077,),
    probe=probe,
    description="Spark RPC: Netty frames (int64 length, type) RpcRequest/RpcResponse with matching request id",
    parser=SparkParser,
    extracts="per request/response pair (or one-way message): message types, request/stream/chunk id, body "
             "sizes, failure text",
)
