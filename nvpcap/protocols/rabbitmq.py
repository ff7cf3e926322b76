"""AMQP (RabbitMQ): AMQP 0-9-1 (also 0-9 and 0-8) and AMQP 1.0.

Spec: AMQP 0-9-1 specification section 4.2 "Protocol header" ('AMQP' 0 0 9 1) and 4.2.3 "General frame
format" (type 1 method / 2 content header / 3 body / 8 heartbeat, channel u16, size u32, payload, frame-end
0xCE), class/method ids from amqp0-9-1.xml; AMQP 1.0 (OASIS) part 2.2 "Version negotiation" ('AMQP' id 1 0 0)
and 2.3 "Framing" (size, data offset >= 2, type 0 AMQP / 1 SASL, channel; performatives are described
types 0x10-0x18, SASL 0x40-0x44). NeuVector has no AMQP parser. The 8-byte protocol header is proof (the
server's answer, when present, must be a header or connection.start); mid-stream, chained frames with valid
frame-end bytes and known class/method ids are.
"""
from __future__ import annotations

import struct
from typing import Any

from .base import (
    CLIENT,
    SERVER,
    FlowContext,
    Parser,
    ParserOutput,
    ProtocolSpec,
    Verdict,
    guarded,
)
from .framing import Cursor, Framer, Short

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

HEADERS = (b"AMQP\x00\x00\x09\x01", b"AMQP\x01\x01\x00\x09", b"AMQP\x01\x01\x08\x00",  # 0-9-1, 0-9, 0-8
           b"AMQP\x00\x01\x00\x00", b"AMQP\x02\x01\x00\x00", b"AMQP\x03\x01\x00\x00")  # 1.0 plain/TLS/SASL
MAX_FRAME = 64 * 1024 * 1024
METHODS = {  # class id -> method ids (amqp0-9-1.xml, plus RabbitMQ's connection.blocked/unblocked/update-secret)
    10: {10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71},
    20: {10, 11, 20, 21, 40, 41},
    30: {10, 11},
    40: {10, 11, 20, 21, 30, 31, 40, 51},
    50: {10, 11, 20, 21, 30, 31, 40, 41, 50, 51},
    60: {10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120},
    85: {10, 11},
    90: {10, 11, 20, 21, 30, 31},
}


def _frame091(b: bytes, off: int) -> tuple[Verdict, int, bool]:
    """One 0-9-1 frame at b[off:]: (verdict, end offset, is a method/heartbeat frame)."""
    if len(b) < off + 7:
        head = b[off : off + 1]
        return (MAYBE if head in (b"", b"\x01", b"\x02", b"\x03", b"\x08") else NO), 0, False
    ftype, channel, size = struct.unpack_from(">BHI", b, off)
    if ftype not in (1, 2, 3, 8) or size > MAX_FRAME:
        return NO, 0, False
    p = off + 7
    if ftype == 8 and (channel or size):
        return NO, 0, False
    if ftype == 1:
        if size < 4:
            return NO, 0, False
        if len(b) >= p + 4:
            cls, meth = struct.unpack_from(">HH", b, p)
            if meth not in METHODS.get(cls, ()):
                return NO, 0, False
    if ftype == 2:
        if size < 14:
            return NO, 0, False
        if len(b) >= p + 4 and b[p : p + 4] != b"\x00\x3c\x00\x00":  # class basic, weight 0
            return NO, 0, False
    end = p + size + 1
    if len(b) < end:
        return MAYBE, 0, False
    if b[end - 1] != 0xCE:
        return NO, 0, False
    return YES, end, ftype in (1, 8)


def _frame10(b: bytes, off: int) -> tuple[Verdict, int, bool]:
    """One AMQP 1.0 frame at b[off:]: (verdict, end offset, carries a performative)."""
    if len(b) < off + 8:
        return (MAYBE if b[off : off + 1] in (b"", b"\0") else NO), 0, False
    size, doff, ftype = struct.unpack_from(">IBB", b, off)
    if not 8 <= size <= MAX_FRAME or doff < 2 or doff * 4 > size or ftype > 1:
        return NO, 0, False
    body = off + doff * 4
    performative = False
    if size > doff * 4:
        code = b[body : body + 3]
        if len(code) == 3:
            if code[:2] != b"\x00\x53" or code[2] not in (range(0x10, 0x19) if ftype == 0 else range(0x40, 0x45)):
                return NO, 0, False
            performative = True
    end = off + size
    return (YES if len(b) >= end else MAYBE), end, performative


def _frames(b: bytes, frame) -> tuple[Verdict, int, bool]:
    """Walk chained frames: (verdict of the walk, complete frames, any method/performative frame)."""
    off = count = 0
    strong = False
    while off < len(b) and count < 8:
        v, end, is_method = frame(b, off)
        if v == NO:
            return NO, count, strong
        if v == MAYBE:
            break
        count, off, strong = count + 1, end, strong or is_method
    return (YES if count else MAYBE), count, strong


def _midstream(c: bytes, s: bytes, final: bool) -> Verdict:
    best = NO
    for frame in (_frame091, _frame10):
        results = [_frames(b, frame) for b in (c, s) if b]
        if not results or any(r[0] == NO for r in results):
            continue
        frames = sum(r[1] for r in results)
        strong = any(r[2] for r in results)
        if strong and (frames >= 2 or final):
            return YES
        best = MAYBE
    return best


def _answer(header: bytes, server: bytes) -> Verdict:
    """The server answers a protocol header with its own header (version mismatch, or AMQP 1.0 layers) or,
    in 0-8/0-9/0-9-1, with connection.start (a method frame on channel 0)."""
    if any(h.startswith(server[:8]) for h in HEADERS):
        return YES if len(server) >= 8 else MAYBE
    if header[6:8] == b"\0\0":  # AMQP 1.0 answers with a header first
        return NO
    return _frame091(server, 0)[0] if b"\x01\x00\x00".startswith(server[:3]) else NO


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    head = client[:8]
    if any(h.startswith(head) for h in HEADERS) and (head or not server):
        if len(head) < 8:
            return MAYBE
        return NO if server and _answer(head, server) == NO else YES  # the 8-byte header is proof
    if not ctx.midstream:
        return NO
    return _midstream(client, server, ctx.final)


probe = guarded(_probe)


# ---- parsing: AMQP 0-9-1 frames (spec §4.2.3) and methods (amqp0-9-1.xml) ----
# Events: the connection (protocol version, vhost, SASL mechanism, user, server product) once opened; each
# synchronous method (declare, bind, consume, get, close...) with its -Ok reply on the same channel; each
# Basic.Publish / Deliver / Get-Ok / Return with its content header (body size, content type). Heartbeats,
# body frames, Basic.Ack and the connection tuning are not events. Field tables are skipped by their length
# (the server's and client's properties are read for product names); the PLAIN / AMQPLAIN response is read
# for the user name only, never the password. AMQP 1.0 (another framing) is named and left.

FRAME_LIMIT = 1 << 16  # frames up to this are read whole; longer ones (bodies) from their first bytes
FRAME_KEEP = 1 << 12
FRAME_END = 0xCE
METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8
MAX_PENDING = 256  # channels with a method waiting for its reply or content header
MAX_TABLE_ITEMS = 64
MAX_TEXT = 1024

# (class id, method id) -> (name, arguments): o octet, s short, l long, L longlong, S shortstr, T longstr,
# b bit (consecutive bits share an octet), F field table; ":name" keeps the value (amqp0-9-1.xml)
SPEC_METHODS: dict[tuple[int, int], tuple[str, str]] = {
    (10, 10): ("Connection.Start", "o o F:server_properties T:mechanisms T"),
    (10, 11): ("Connection.StartOk", "F:client_properties S:mechanism T:response S"),
    (10, 20): ("Connection.Secure", "T"),
    (10, 21): ("Connection.SecureOk", "T"),
    (10, 30): ("Connection.Tune", "s:channel_max l:frame_max s:heartbeat"),
    (10, 31): ("Connection.TuneOk", "s:channel_max l:frame_max s:heartbeat"),
    (10, 40): ("Connection.Open", "S:vhost S b"),
    (10, 41): ("Connection.OpenOk", "S"),
    (10, 50): ("Connection.Close", "s:reply_code S:reply_text s s"),
    (10, 51): ("Connection.CloseOk", ""),
    (10, 60): ("Connection.Blocked", "S:reason"),
    (10, 61): ("Connection.Unblocked", ""),
    (10, 70): ("Connection.UpdateSecret", "T S:reason"),
    (10, 71): ("Connection.UpdateSecretOk", ""),
    (20, 10): ("Channel.Open", "S"),
    (20, 11): ("Channel.OpenOk", "T"),
    (20, 20): ("Channel.Flow", "b:active"),
    (20, 21): ("Channel.FlowOk", "b:active"),
    (20, 40): ("Channel.Close", "s:reply_code S:reply_text s s"),
    (20, 41): ("Channel.CloseOk", ""),
    (30, 10): ("Access.Request", "S:realm"),  # AMQP 0-8 only
    (30, 11): ("Access.RequestOk", "s"),
    (40, 10): ("Exchange.Declare", ("s S:exchange S:exchange_type b:passive b:durable b:auto_delete b:internal "
                                    "b:no_wait F")),
    (40, 11): ("Exchange.DeclareOk", ""),
    (40, 20): ("Exchange.Delete", "s S:exchange b:if_unused b:no_wait"),
    (40, 21): ("Exchange.DeleteOk", ""),
    (40, 30): ("Exchange.Bind", "s S:exchange S:source S:routing_key b:no_wait F"),
    (40, 31): ("Exchange.BindOk", ""),
    (40, 40): ("Exchange.Unbind", "s S:exchange S:source S:routing_key b:no_wait F"),
    (40, 51): ("Exchange.UnbindOk", ""),
    (50, 10): ("Queue.Declare", "s S:queue b:passive b:durable b:exclusive b:auto_delete b:no_wait F"),
    (50, 11): ("Queue.DeclareOk", "S:queue l:message_count l:consumer_count"),
    (50, 20): ("Queue.Bind", "s S:queue S:exchange S:routing_key b:no_wait F"),
    (50, 21): ("Queue.BindOk", ""),
    (50, 30): ("Queue.Purge", "s S:queue b:no_wait"),
    (50, 31): ("Queue.PurgeOk", "l:message_count"),
    (50, 40): ("Queue.Delete", "s S:queue b:if_unused b:if_empty b:no_wait"),
    (50, 41): ("Queue.DeleteOk", "l:message_count"),
    (50, 50): ("Queue.Unbind", "s S:queue S:exchange S:routing_key F"),
    (50, 51): ("Queue.UnbindOk", ""),
    (60, 10): ("Basic.Qos", "l:prefetch_size s:prefetch_count b:global"),
    (60, 11): ("Basic.QosOk", ""),
    (60, 20): ("Basic.Consume", "s S:queue S:consumer_tag b:no_local b:no_ack b:exclusive b:no_wait F"),
    (60, 21): ("Basic.ConsumeOk", "S:consumer_tag"),
    (60, 30): ("Basic.Cancel", "S:consumer_tag b:no_wait"),
    (60, 31): ("Basic.CancelOk", "S:consumer_tag"),
    (60, 40): ("Basic.Publish", "s S:exchange S:routing_key b:mandatory b:immediate"),
    (60, 50): ("Basic.Return", "s:reply_code S:reply_text S:exchange S:routing_key"),
    (60, 60): ("Basic.Deliver", "S:consumer_tag L:delivery_tag b:redelivered S:exchange S:routing_key"),
    (60, 70): ("Basic.Get", "s S:queue b:no_ack"),
    (60, 71): ("Basic.GetOk", "L:delivery_tag b:redelivered S:exchange S:routing_key l:message_count"),
    (60, 72): ("Basic.GetEmpty", "S"),
    (60, 80): ("Basic.Ack", "L:delivery_tag b:multiple"),
    (60, 90): ("Basic.Reject", "L:delivery_tag b:requeue"),
    (60, 100): ("Basic.RecoverAsync", "b:requeue"),
    (60, 110): ("Basic.Recover", "b:requeue"),
    (60, 111): ("Basic.RecoverOk", ""),
    (60, 120): ("Basic.Nack", "L:delivery_tag b:multiple b:requeue"),
    (85, 10): ("Confirm.Select", "b:no_wait"),
    (85, 11): ("Confirm.SelectOk", ""),
    (90, 10): ("Tx.Select", ""),
    (90, 11): ("Tx.SelectOk", ""),
    (90, 20): ("Tx.Commit", ""),
    (90, 21): ("Tx.CommitOk", ""),
    (90, 30): ("Tx.Rollback", ""),
    (90, 31): ("Tx.RollbackOk", ""),
}
CONNECTION_PHASE = {(10, 10), (10, 11), (10, 20), (10, 21), (10, 30), (10, 31), (10, 40), (10, 41)}
CONTENT_METHODS = {(60, 40), (60, 50), (60, 60), (60, 71)}  # followed by a content header and body frames
ASYNC = {(60, 80), (60, 90), (60, 100), (60, 120), (10, 60), (10, 61), (20, 20)}  # no reply expected
SILENT = {(60, 80)}  # Basic.Ack: one per delivered message, not an event
CLOSES = {(10, 50), (20, 40)}  # Connection.Close, Channel.Close: also the answer to a refused request
# what an event keeps of the arguments (the rest, e.g. flags and tags, only steer the parser)
EVENT_ARGS = ("exchange", "routing_key", "queue", "consumer_tag", "exchange_type", "source", "reply_code",
              "reply_text", "message_count", "consumer_count", "reason", "prefetch_count", "redelivered")
BASE_FIELDS = ("method", "channel", "exchange", "routing_key", "queue", "reply", "body_size", "content_type")
# content header property flags (spec §4.2.6.1, Basic class properties in order, bit 15 first)
PROPERTIES = (("content_type", "S"), ("content_encoding", "S"), ("headers", "F"), ("delivery_mode", "o"),
              ("priority", "o"), ("correlation_id", "S"), ("reply_to", "S"), ("expiration", "S"),
              ("message_id", "S"), ("timestamp", "L"), ("type", "S"), ("user_id", "S"), ("app_id", "S"))
KEPT_PROPERTIES = ("content_type", "content_encoding", "delivery_mode", "user_id", "app_id")
AMQP10_LAYERS = {0: "amqp", 2: "tls", 3: "sasl"}  # AMQP 1.0 protocol ids (part 2.2)
_FIXED = {"o": 1, "s": 2, "l": 4, "L": 8}


def _text(raw: bytes, cap: int = MAX_TEXT) -> str:
    return raw[: cap * 4].decode("utf-8", "replace")[:cap]


class Reader(Cursor):
    """AMQP 0-9-1 domains (spec §4.2.5) over one frame payload; raises Short past the end."""

    __slots__ = ("bits", "octet")

    def __init__(self, b: bytes, p: int = 0) -> None:
        super().__init__(b, p)
        self.bits, self.octet = 8, 0

    def take(self, n: int) -> bytes:
        self.bits = 8  # any non-bit field ends a run of packed bits
        return super().take(n)

    def field(self, kind: str) -> Any:
        if kind in _FIXED:
            return int.from_bytes(self.take(_FIXED[kind]), "big")
        if kind == "S":
            return _text(self.take(self.take(1)[0]))
        if kind in ("T", "F"):
            return self.take(int.from_bytes(self.take(4), "big"))
        if kind == "b":
            if self.bits >= 8:
                self.octet = self.take(1)[0]
                self.bits = 0
            value = bool(self.octet >> self.bits & 1)
            self.bits += 1
            return value
        raise Short


# SPEC_METHODS' layouts split once: (class id, method id) -> (name, ((kind, argument name or ""), ...))
LAYOUTS: dict[tuple[int, int], tuple[str, tuple[tuple[str, str], ...]]] = {
    ids: (name, tuple((kind, arg) for kind, _, arg in (token.partition(":") for token in layout.split())))
    for ids, (name, layout) in SPEC_METHODS.items()}


def read_arguments(layout: tuple[tuple[str, str], ...], payload: bytes) -> dict[str, Any]:
    """The named arguments of a method (payload after class and method ids), read inline from its split-once
    layout; a cut payload gives those read before the cut."""
    out: dict[str, Any] = {}
    p, n, bits, octet = 0, len(payload), 8, 0
    for kind, name in layout:
        if kind == "b":
            if bits >= 8:
                if p >= n:
                    return out
                octet, p, bits = payload[p], p + 1, 0
            value: Any = bool(octet >> bits & 1)
            bits += 1
        else:
            bits = 8  # any non-bit field ends a run of packed bits
            p, value = _read_field(kind, payload, p, n)
            if p < 0:
                return out
        if name:
            out[name] = value
    return out


def _read_field(kind: str, payload: bytes, p: int, n: int) -> tuple[int, Any]:
    """One non-bit field (o s l L S T F) at p, as Reader.field reads it: (offset after, value); (-1, None)
    when it does not fit in the payload (or the kind is unknown)."""
    if kind == "S":
        end = p + 1 + payload[p] if p < n else n + 1
        return (end, _text(payload[p + 1 : end])) if end <= n else (-1, None)
    if kind in ("T", "F"):
        end = p + 4 + int.from_bytes(payload[p : p + 4], "big") if p + 4 <= n else n + 1
        return (end, payload[p + 4 : end]) if end <= n else (-1, None)
    end = p + _FIXED.get(kind, n + 1)
    return (end, int.from_bytes(payload[p:end], "big")) if end <= n else (-1, None)


def read_properties(payload: bytes) -> dict[str, Any]:
    """A content header (§4.2.6): class, weight, body size, property flags, then the flagged properties; a cut
    header gives what was read before the cut."""
    n = len(payload)
    if n < 12:
        return {}
    out: dict[str, Any] = {"body_size": int.from_bytes(payload[4:12], "big")}
    if n < 14:
        return out
    flags, p = (payload[12] << 8) | payload[13], 14
    if flags & 0xFFF8:  # some property is present
        for i, (name, kind) in enumerate(PROPERTIES):
            if flags & (0x8000 >> i):
                p, value = _read_field(kind, payload, p, n)
                if p < 0:
                    return out
                if name in KEPT_PROPERTIES:
                    out[name] = value
    return out


def table_strings(raw: bytes) -> dict[str, Any]:
    """Top-level scalar entries of a field table (spec §4.2.5.5, with RabbitMQ's type letters): key -> str,
    int, bool; nested tables and arrays skipped by length. Stops at an unknown type."""
    sizes = {"t": 1, "b": 1, "B": 1, "s": 2, "u": 2, "I": 4, "i": 4, "l": 8, "f": 4, "d": 8, "D": 5, "T": 8, "V": 0}
    out: dict[str, Any] = {}
    r = Reader(raw)
    try:
        while r.p < len(raw) and len(out) < MAX_TABLE_ITEMS:
            key = r.field("S")
            kind = chr(r.take(1)[0])
            if kind in ("S", "x"):
                value: Any = _text(r.field("T"), 256) if kind == "S" else None
            elif kind in ("A", "F"):
                r.field("T")
                value = None
            elif kind in sizes:
                raw_value = r.take(sizes[kind])
                value = bool(raw_value[0]) if kind == "t" else int.from_bytes(raw_value, "big") \
                    if kind in "bBsuIilT" else None
            else:
                break
            out[key] = value
    except Short:
        pass
    return out


def sasl_user(mechanism: str | None, response: bytes | None) -> str | None:
    """The user name of a Connection.StartOk response: PLAIN (RFC 4616, NUL user NUL password) or
    RabbitMQ's AMQPLAIN (a field table with LOGIN and PASSWORD, without its length prefix). Never the
    password."""
    if not response or mechanism is None:
        return None
    if mechanism.upper() == "PLAIN" and response.count(b"\0") == 2:
        return _text(response.split(b"\0")[1], 256) or None
    if mechanism.upper() == "AMQPLAIN":
        login = table_strings(response).get("LOGIN")
        return login if isinstance(login, str) else None
    return None


def _frame_length(h: bytes) -> int:
    size = struct.unpack_from(">I", h, 3)[0]
    return 7 + size + 1 if size <= MAX_FRAME else 0


class AmqpParser(Parser):
    """AMQP 0-9-1 (0-9 and 0-8 share the frame format). Methods are named from their class and method
    ids, so a mid-stream flow (no protocol header) is read the same way."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers: list[Framer | None] = [None, None]
        self.held: list[bytearray] = [bytearray(), bytearray()]
        self.where: list[tuple[int, int] | None] = [None, None]
        self.version: str | None = None
        self.conn: dict[str, Any] = {}
        self.conn_where: tuple[int, int] | None = None
        self.sync: dict[int, tuple[dict[str, Any], int, int]] = {}  # channel -> request awaiting its -Ok
        self.content: dict[tuple[int, int], tuple[dict[str, Any], int, int]] = {}  # (side, channel) -> method

    # -- bytes --

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        if framer is None:  # a side's first bytes: the protocol header, or frames (mid-stream, server)
            held = self.held[side]
            if not held:
                self.where[side] = (frame, ts_ns)
            held += data
            if held[:1] == b"A":
                if len(held) < 8:
                    return
                self._header(bytes(held[:8]), *self.where[side])
                if self.done:
                    return
                data = bytes(held[8:])
            else:
                data = bytes(held)
            self.held[side] = bytearray()
            framer = self.framers[side] = Framer(7, _frame_length, FRAME_LIMIT, FRAME_KEEP)
        # Framer.feed (no generator step per frame) with a handler per side (no bound method kept: no cycle)
        if not framer.feed(data, frame, ts_ns, self._server_frame if side else self._client_frame):
            self.lose(side)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        if framer is None or not framer.gap(missing):
            self.lose(side)

    def _header(self, head: bytes, frame: int, ts_ns: int) -> None:
        """'AMQP' + protocol id + version (§4.2.2). A server sends one back when it refuses the version."""
        if head[:4] != b"AMQP":
            self.anomaly_once("amqp-bad-header", "a side starts with 'A' but not the protocol header", frame, ts_ns)
            return
        if head[4] in AMQP10_LAYERS and head[5:8] == b"\x01\x00\x00":  # AMQP 1.0: another framing
            self.out.event({"method": None, "version": "1.0.0", "layer": AMQP10_LAYERS[head[4]]}, frame, ts_ns)
            self.done = True
            return
        if head[4] == 0:  # 'AMQP' 0 major minor revision (0-9-1)
            version = f"{head[5]}-{head[6]}-{head[7]}"
        else:  # 'AMQP' 1 1 major minor: 0-9 and 0-10; 0-8 was sent as major 8, minor 0
            version = "0-8" if head[6:8] == b"\x08\x00" else f"{head[6]}-{head[7]}"
        if self.version is None:
            self.version = version
            self.conn_where = (frame, ts_ns)
        elif version != self.version:
            self.conn["server_version_offered"] = version  # the server's answer: it speaks another version

    # -- frames --

    def _client_frame(self, data: bytes, length: int, frame: int, ts_ns: int) -> int:
        self._frame(CLIENT, data, len(data) < length, frame, ts_ns)
        return 0

    def _server_frame(self, data: bytes, length: int, frame: int, ts_ns: int) -> int:
        self._frame(SERVER, data, len(data) < length, frame, ts_ns)
        return 0

    def _frame(self, side: int, data: bytes, truncated: bool, frame: int, ts_ns: int) -> None:
        """One frame (header and frame end included; `truncated`: only its first FRAME_KEEP bytes)."""
        kind, channel = data[0], (data[1] << 8) | data[2]
        if not truncated and data[-1] != FRAME_END:
            self.anomaly_once("amqp-bad-frame-end", f"frame end {data[-1]:#x}, not 0xce: framing lost", frame,
                              ts_ns)
            self.framers[side].broken = True
            return
        if kind == BODY:  # most frames of a bulk flow: nothing in them is read
            return
        payload = data[7:-1] if not truncated else data[7:]
        if kind == METHOD and len(payload) >= 4:
            ids = ((payload[0] << 8) | payload[1], (payload[2] << 8) | payload[3])
            self._method(side, channel, ids, payload[4:], frame, ts_ns)
        elif kind == HEADER:
            self._content_header(side, channel, payload)
        elif kind not in (HEARTBEAT, 4):  # 4: AMQP 0-8's heartbeat frame type (OOB types unused)
            self.anomaly_once("amqp-bad-frame-type", f"frame type {kind}", frame, ts_ns)

    def _method(self, side: int, channel: int, ids: tuple[int, int], args: bytes, frame: int, ts_ns: int) -> None:
        spec = LAYOUTS.get(ids)
        if spec is None:
            self.anomaly_once("amqp-unknown-method", f"class {ids[0]} method {ids[1]}", frame, ts_ns)
            return
        name = spec[0]
        values = self._arguments(ids, args)
        pending = self.content.pop((side, channel), None)
        if pending is not None:  # a content method whose header never came
            self._emit(pending)
        if ids in CONNECTION_PHASE:
            self._connection(ids, name, values, frame, ts_ns)
            return
        if channel == 0 and ids == (10, 50) and self.conn:
            self.conn.update(reply=name, reply_code=values.get("reply_code"), reply_text=values.get("reply_text"))
            self._emit_connection()  # refused before being opened (e.g. 403 ACCESS_REFUSED)
            return
        if ids in SILENT:
            return
        if ids in CLOSES and channel in self.sync:  # the peer closes instead of answering (e.g. 404 NOT_FOUND)
            request = self.sync.pop(channel)
            request[0].update(reply=name, reply_code=values.get("reply_code"), reply_text=values.get("reply_text"))
            self._emit(request)
        is_reply = (ids[1] % 2 == 1 and ids != (10, 61)) or ids == (60, 72)
        if is_reply:
            request = self.sync.pop(channel, None)
            if request is not None:
                f = request[0]
                f["reply"] = name
                self._merge(f, values)
                self._emit(request)
                return
        f = dict.fromkeys(BASE_FIELDS)
        f.update(method=name, channel=channel)
        self._merge(f, values)
        item = (f, frame, ts_ns)
        if ids in CONTENT_METHODS:
            self._hold(self.content, (side, channel), item)
        elif is_reply or ids in ASYNC or values.get("no_wait"):
            self._emit(item)
        else:
            old = self.sync.pop(channel, None)
            if old is not None:
                self._emit(old)
            self._hold(self.sync, channel, item)

    @staticmethod
    def _arguments(ids: tuple[int, int], args: bytes) -> dict[str, Any]:
        """A method's named arguments (a step of its own: the tests' oracle reads them field by field)."""
        return read_arguments(LAYOUTS[ids][1], args)

    @staticmethod
    def _properties(payload: bytes) -> dict[str, Any]:
        """A content header's properties (a step of its own, as _arguments)."""
        return read_properties(payload)

    def _hold(self, table: dict, key: Any, item: tuple[dict[str, Any], int, int]) -> None:
        if len(table) >= MAX_PENDING:
            self._emit(table.pop(next(iter(table))))
        table[key] = item

    @staticmethod
    def _merge(f: dict[str, Any], values: dict[str, Any]) -> None:
        for key in EVENT_ARGS:
            if key in values and (f.get(key) is None or key not in BASE_FIELDS):
                f[key] = values[key]

    def _content_header(self, side: int, channel: int, payload: bytes) -> None:
        item = self.content.pop((side, channel), None)
        if item is None:
            return
        item[0].update(self._properties(payload))
        self._emit(item)

    def _connection(self, ids: tuple[int, int], name: str, values: dict[str, Any], frame: int, ts_ns: int) -> None:
        """The connection phase (Start, StartOk, Secure, Tune, Open) makes one event, sent at Open-Ok."""
        c = self.conn
        if self.conn_where is None:
            self.conn_where = (frame, ts_ns)
        if ids == (10, 10):
            props = table_strings(values.get("server_properties", b""))
            for key in ("product", "version", "platform", "cluster_name"):
                if isinstance(props.get(key), str):
                    c["server_" + key] = props[key]
            if isinstance(props.get("product"), str):
                self.out.product(props["product"][:64])
            c["mechanisms"] = _text(values.get("mechanisms", b""), 256).split() or None
        elif ids == (10, 11):
            props = table_strings(values.get("client_properties", b""))
            if isinstance(props.get("product"), str):
                c["client_product"] = props["product"]
            c["mechanism"] = values.get("mechanism")
            c["user"] = sasl_user(values.get("mechanism"), values.get("response"))
        elif ids in ((10, 30), (10, 31)):
            c["heartbeat"] = values.get("heartbeat")
        elif ids == (10, 40):
            c["vhost"] = values.get("vhost")
        if ids in ((10, 11), (10, 40)):
            c["method"] = name
        if ids == (10, 41):
            c["reply"] = name
            self._emit_connection()
        else:
            c.setdefault("method", name)

    def _emit_connection(self) -> None:
        if not self.conn:
            return
        f = dict.fromkeys(BASE_FIELDS)
        f["channel"] = 0
        f["version"] = self.version
        f.update(self.conn)
        self.conn = {}
        frame, ts = self.conn_where or (0, 0)
        self.out.event(f, frame, ts)

    def _emit(self, item: tuple[dict[str, Any], int, int]) -> None:
        self.out.event(*item)

    def finish(self) -> None:
        self._emit_connection()
        for table in (self.content, self.sync):
            for item in table.values():
                self._emit(item)
            table.clear()


SPEC = ProtocolSpec(
    name="rabbitmq",
    transports=("tcp",),
    ports=(5672,),
    probe=probe,
    description="AMQP 0-9-1/1.0: 'AMQP' protocol header; mid-stream frames with frame-end 0xCE and known methods",
    parser=AmqpParser,
    extracts="connection (version, vhost, mechanism, user, server product); methods with exchange, routing_key, "
             "queue and their -Ok reply; publish/deliver with body size and content type",
)
