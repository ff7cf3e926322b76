"""Apache ActiveMQ: OpenWire and STOMP.

Spec: ActiveMQ "OpenWire Version 2 Specification" (activemq.apache.org/components/classic/documentation/
openwire-version-2-specification): every command is an int32 size + a data-structure type byte; both peers
first send WIREFORMAT_INFO (type 1) whose body starts with the magic "ActiveMQ" and an int32 version.
STOMP 1.0-1.2 (stomp.github.io/stomp-specification-1.2.html "Frames"): a command line, "name:value" header
lines, a blank line, a body and a NUL; a session opens with CONNECT/STOMP, answered by CONNECTED/ERROR.
Mid-stream: two chained OpenWire commands carrying an "ID:..." identifier, or a STOMP SEND/SUBSCRIBE... frame.
"""
from __future__ import annotations

import re
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
from .framing import Cursor, Framer, Message, Short

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

MAGIC = b"ActiveMQ"
CLIENT_FRAMES = (b"CONNECT", b"STOMP", b"SEND", b"SUBSCRIBE", b"UNSUBSCRIBE", b"BEGIN", b"COMMIT", b"ABORT",
                 b"ACK", b"NACK", b"DISCONNECT")
SERVER_FRAMES = (b"CONNECTED", b"MESSAGE", b"RECEIPT", b"ERROR")
OPENING = (b"CONNECT", b"STOMP")
COMMANDS = set(range(1, 35)) | {40, 60, 61, 65, 90}  # CommandTypes: top-level commands
MAX_COMMAND = 64 * 1024 * 1024
_HEADER = re.compile(rb"[^:\r\n\0]{1,128}:[^\r\n\0]{0,1024}\Z")
CONNECT_HEADERS = (b"accept-version", b"host", b"login", b"passcode", b"heart-beat", b"client-id")


def _openwire(b: bytes) -> Verdict:
    """WIREFORMAT_INFO: size, type 1, "ActiveMQ", version."""
    if len(b) < 17:
        want = b"\0"  # size < 16 MiB
        if b[:1] not in (b"", want) or (len(b) > 4 and b[4] != 1) or not MAGIC.startswith(b[5:13]):
            return NO
        return MAYBE
    size, kind = struct.unpack_from(">IB", b)
    version = struct.unpack_from(">I", b, 13)[0]
    return YES if kind == 1 and b[5:13] == MAGIC and 13 <= size < 1 << 24 and 1 <= version <= 100 else NO


def _commands(b: bytes) -> tuple[Verdict, int]:
    """Mid-stream OpenWire: chained commands (size, type). Returns (verdict of the walk, complete commands)."""
    off = count = 0
    while off < len(b) and count < 8:
        h = b[off : off + 10]
        if len(h) < 5:
            return (MAYBE if h[:1] in (b"", b"\0") else NO), count
        size, kind = struct.unpack_from(">IB", h)
        if not 1 <= size <= MAX_COMMAND or kind not in COMMANDS:
            return NO, count
        if len(b) < off + 4 + size:
            break
        count, off = count + 1, off + 4 + size
    return (YES if count else MAYBE), count


def _openwire_midstream(c: bytes, s: bytes, final: bool) -> Verdict:
    results = [_commands(b) for b in (c, s) if b]
    if not results or any(v == NO for v, _ in results):
        return NO
    total = sum(n for _, n in results)
    # ConnectionId, SessionId, ProducerId, ConsumerId, MessageId values are strings starting "ID:"
    named = any(b"ID:" in b[:512] for b in (c, s))
    return YES if total >= 2 and named else MAYBE


def _stomp(b: bytes, commands: tuple) -> tuple[Verdict, bytes, list[bytes]]:
    """One STOMP frame head: (verdict, command, header names). YES once the blank line ends the headers."""
    b = b.lstrip(b"\r\n")  # heart-beats
    if not b:
        return MAYBE, b"", []
    lines = b[:4096].split(b"\n")
    command = lines[0].rstrip(b"\r")
    if len(lines) == 1:
        return (MAYBE if any(c.startswith(command) for c in commands) else NO), b"", []
    if command not in commands:
        return NO, b"", []
    names = []
    for i, line in enumerate(lines[1:], 1):
        line = line.rstrip(b"\r")
        last = i == len(lines) - 1
        if not line and not last:
            return (YES if names or command == b"DISCONNECT" else NO), command, names
        if last:  # an incomplete line
            return (MAYBE if len(line) < 1200 and b"\0" not in line else NO), command, names
        if not _HEADER.match(line):
            return NO, command, names
        names.append(line.split(b":", 1)[0].lower())
    return MAYBE, command, names


def _stomp_flow(c: bytes, s: bytes, final: bool, midstream: bool) -> Verdict:
    vc, command, names = _stomp(c, OPENING if not midstream else CLIENT_FRAMES)
    if vc == NO or not c:
        return NO
    if s:
        vs, _, _ = _stomp(s, SERVER_FRAMES)
        if vs == NO:
            return NO
        if vc == YES and vs == YES:
            return YES
    if vc == YES and final:
        if command in OPENING:
            return YES if any(n in CONNECT_HEADERS for n in names) else NO
        return YES if b"destination" in names or b"id" in names or b"receipt" in names else MAYBE
    return MAYBE


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    sides = [_openwire(b) for b in (client, server) if b]  # both peers open with WIREFORMAT_INFO
    openwire = NO if NO in sides else YES if YES in sides else MAYBE
    if openwire == YES:
        return YES
    stomp = _stomp_flow(client, server, ctx.final, ctx.midstream)
    if ctx.midstream:
        stomp = max(stomp, _stomp_flow(server, client, ctx.final, True))
        openwire = max(openwire, _openwire_midstream(client, server, ctx.final))
    return max(openwire, stomp)


probe = guarded(_probe)


# ---- parsing: OpenWire commands, or STOMP frames ----
# OpenWire: the CommandTypes names (activemq-client org.apache.activemq.command.CommandTypes); once both
# WIREFORMAT_INFOs are read, their properties give the encoding (both must enable TightEncodingEnabled /
# CacheEnabled / SizePrefixDisabled for it to apply; the version is the lower one). In the loose encoding
# (OpenWire v2 spec, "Loose Encoding": strings are a notnull byte + UTF-8 with a u16 length; nested objects a
# notnull byte + type + fields; with the cache, a cache index follows the notnull byte) the destination and a
# few names are read; in the tight encoding only the command types. Commands that want a response are paired
# with the Response / ExceptionResponse whose correlationId is their commandId. KEEP_ALIVE_INFO is not an event.
# STOMP 1.0-1.2 (stomp.github.io/stomp-specification-1.2.html): command line, headers, body to the NUL (or
# content-length); CONNECT/STOMP paired with CONNECTED/ERROR, a frame with a receipt header with its RECEIPT.
# The CONNECT passcode and the ConnectionInfo password are never read out.

COMMAND_LIMIT = 1 << 16  # commands up to this are read whole; longer ones (message bodies) from their start
COMMAND_KEEP = 1 << 13
MAX_PENDING = 256
MAX_TEXT = 1024
MAX_STOMP_HEAD = 16 << 10  # a STOMP command line + headers longer than this: that side stops
MAX_STOMP_HEADERS = 64

COMMAND_NAMES = {
    1: "WireFormatInfo", 2: "BrokerInfo", 3: "ConnectionInfo", 4: "SessionInfo", 5: "ConsumerInfo",
    6: "ProducerInfo", 7: "TransactionInfo", 8: "DestinationInfo", 9: "RemoveSubscriptionInfo",
    10: "KeepAliveInfo", 11: "ShutdownInfo", 12: "RemoveInfo", 14: "ControlCommand", 15: "FlushCommand",
    16: "ConnectionError", 17: "ConsumerControl", 18: "ConnectionControl", 19: "ProducerAck", 20: "MessagePull",
    21: "MessageDispatch", 22: "MessageAck", 23: "ActiveMQMessage", 24: "ActiveMQBytesMessage",
    25: "ActiveMQMapMessage", 26: "ActiveMQObjectMessage", 27: "ActiveMQStreamMessage",
    28: "ActiveMQTextMessage", 29: "ActiveMQBlobMessage", 30: "Response", 31: "ExceptionResponse",
    32: "DataResponse", 33: "DataArrayResponse", 34: "IntegerResponse", 40: "DiscoveryEvent",
    60: "PartialCommand", 61: "LastPartialCommand", 65: "ReplayCommand", 90: "MessageDispatchNotification",
}
WIREFORMAT_INFO, BROKER_INFO, CONNECTION_INFO, KEEP_ALIVE, CONNECTION_ERROR = 1, 2, 3, 10, 16
RESPONSES = {30, 31, 32, 33, 34}
MESSAGES = set(range(23, 30))
NOT_BASE_COMMANDS = {WIREFORMAT_INFO, 40, 60, 61}  # no commandId / responseRequired prefix
# loose encoding: what precedes the destination (a list of nested objects / fields to skip), by command type
DESTINATION_AFTER = {5: ("nested", "bool"), 6: ("nested",), 8: ("nested",), 20: ("nested",), 21: ("nested",),
                     22: (), 17: ()} | {t: ("nested",) for t in MESSAGES}
# nested data structures' loose fields: s string, l long, i int, n nested object, a byte array
NESTED_FIELDS = {120: "s", 121: "sl", 122: "sll", 123: "sll", 124: "s", 100: "s", 101: "s", 102: "s", 103: "s",
                 111: "ln", 112: "iaa"}
DESTINATION_TYPES = {100: "queue", 101: "topic", 102: "temp-queue", 103: "temp-topic"}
# MarshallingSupport primitive map value types: fixed sizes, or "u" (u16 length) / "i" (int length)
MAP_TYPES = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 8, 7: 8, 8: 4, 9: "u", 10: "i", 13: "i"}

STOMP_CLIENT = {"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "BEGIN", "COMMIT", "ABORT", "ACK",
                "NACK", "DISCONNECT"}
STOMP_SERVER = {"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"}
STOMP_ESCAPES = {"\\r": "\r", "\\n": "\n", "\\c": ":", "\\\\": "\\"}  # STOMP 1.2 "Value Encoding"
BASE_FIELDS = ("protocol", "command", "destination", "response")


def _text(raw: bytes, cap: int = MAX_TEXT) -> str:
    return raw[: cap * 4].decode("utf-8", "replace")[:cap]


class Loose(Cursor):
    """OpenWire loose-encoding reader over one command (after its size and type)."""

    __slots__ = ("cache", "version")

    def __init__(self, b: bytes, cache: bool, version: int, p: int = 0) -> None:
        super().__init__(b, p)
        self.cache, self.version = cache, version

    def bool(self) -> bool:
        return self.take(1)[0] != 0

    def string(self) -> str | None:
        if not self.bool():
            return None
        return _text(self.take(self.int(">H")))

    def nested(self, depth: int = 0) -> tuple[int, str | None] | None:
        """A (cached) nested object: (type, its first string field) or None when null / from the cache."""
        if depth > 4:
            raise Short
        present = self.bool()
        if self.cache:
            self.take(2)  # cache index
        if not present:
            return None
        kind = self.take(1)[0]
        fields = NESTED_FIELDS.get(kind)
        if fields is None and kind == 110:  # MessageId: textView string (v10+), ProducerId, two longs
            fields = ("s" if self.version >= 10 else "") + "nll"
        if fields is None:
            raise Short  # a structure we do not walk
        first = None
        for f in fields:
            if f == "s":
                value = self.string()
                first = value if first is None else first
            elif f == "l":
                self.take(8)
            elif f == "i":
                self.take(4)
            elif f == "n":
                self.nested(depth + 1)
            elif f == "a" and self.bool():
                self.take(self.int())
        return kind, first

    def throwable(self) -> tuple[str | None, str | None]:
        if not self.bool():
            return None, None
        return self.string(), self.string()


def primitive_map(raw: bytes) -> dict[str, Any]:
    """A marshalled primitive map (WireFormatInfo properties): int count, then (UTF key, type, value)."""
    out: dict[str, Any] = {}
    r = Loose(raw, False, 0)
    try:
        for _ in range(min(r.int(), 64)):
            key = _text(r.take(r.int(">H")), 128)
            kind = r.take(1)[0]
            size = MAP_TYPES.get(kind)
            if size is None:
                break
            if size == "u":
                out[key] = _text(r.take(r.int(">H")), 256)
            elif size == "i":
                value = r.take(r.int())
                out[key] = _text(value, 256) if kind == 13 else None
            else:
                value = r.take(size)
                out[key] = bool(value[0]) if kind == 1 else int.from_bytes(value, "big", signed=True)
    except Short:
        pass
    return out


def wireformat_info(body: bytes) -> dict[str, Any] | None:
    """WIREFORMAT_INFO after its type byte: magic, version, marshalled properties (a byte array)."""
    if body[:8] != MAGIC or len(body) < 12:
        return None
    info: dict[str, Any] = {"version": struct.unpack_from(">i", body, 8)[0]}
    r = Loose(body, False, 0, 12)
    try:
        if r.bool():
            info.update(primitive_map(r.take(r.int())))
    except Short:
        pass
    return info


def _openwire_length(h: bytes) -> int:
    size = struct.unpack_from(">I", h)[0]
    return 4 + size if 1 <= size <= MAX_COMMAND else 0


def command_fields(kind: int, r: Loose, f: dict[str, Any]) -> None:
    """The names a loose-encoded command carries (r is after commandId / responseRequired, and after a
    response's correlationId)."""
    if kind == CONNECTION_INFO:
        r.nested()  # connectionId
        f["client_id"] = r.string()
        r.string()  # password: skipped, never kept
        f["user"] = r.string()
    elif kind == BROKER_INFO:
        r.nested()  # brokerId
        f["broker_url"] = r.string()
        if r.bool():  # peerBrokerInfos: an array of BrokerInfo, not walked
            raise Short
        f["broker_name"] = r.string()
    elif kind in (31, CONNECTION_ERROR):  # ExceptionResponse (after its correlationId), ConnectionError
        f["error"], f["error_message"] = r.throwable()
    elif kind == 14:  # ControlCommand
        f["control"] = r.string()
    elif kind in DESTINATION_AFTER and (kind != 17 or r.version >= 6):
        for step in DESTINATION_AFTER[kind]:
            if step == "nested":
                r.nested()
            else:
                r.bool()
        dest = r.nested()
        if dest is not None and dest[0] in DESTINATION_TYPES:
            f["destination"], f["destination_type"] = dest[1], DESTINATION_TYPES[dest[0]]


class OpenWire:
    """One OpenWire connection: the wire format negotiation, then commands paired with responses."""

    def __init__(self, parser: ActiveMqParser) -> None:
        self.p = parser
        self.framers = (Framer(4, _openwire_length, COMMAND_LIMIT, COMMAND_KEEP),
                        Framer(4, _openwire_length, COMMAND_LIMIT, COMMAND_KEEP))
        self.wf: list[dict[str, Any] | None] = [None, None]
        self.wf_where: tuple[int, int] | None = None
        self.wf_sent = False
        self.pending: dict[tuple[int, int], tuple[dict[str, Any], int, int]] = {}  # (side, commandId) -> event

    def negotiated(self, key: str) -> bool:
        """A boolean option applies when both sides enable it (a missing WireFormatInfo counts as off)."""
        return all(w is not None and w.get(key) is True for w in self.wf)

    def version(self) -> int:
        versions = [w["version"] for w in self.wf if w is not None and isinstance(w.get("version"), int)]
        return min(versions) if versions else 1

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> bool:
        framer = self.framers[side]
        for msg in framer.push(data, frame, ts_ns):
            self.command(side, msg)
            if self.p.done:
                return True
        if framer.broken:
            self.p.anomaly_once("openwire-bad-size", "command size 0 or over 64 MiB: framing lost", frame, ts_ns)
        return not framer.broken

    def command(self, side: int, msg: Message) -> None:
        kind, body = msg.data[4], msg.data[5:]
        if kind == WIREFORMAT_INFO:
            self.wireformat(side, body, msg)
            return
        name = COMMAND_NAMES.get(kind)
        if name is None:
            self.p.anomaly_once("openwire-unknown-command", f"data structure type {kind}", msg.frame, msg.ts_ns)
            return
        if kind == KEEP_ALIVE:
            return
        f = dict.fromkeys(BASE_FIELDS)
        f.update(protocol="openwire", command=name)
        command_id, wants_response, correlation = None, False, None
        if not self.negotiated("TightEncodingEnabled") and kind not in NOT_BASE_COMMANDS:
            r = Loose(body, self.negotiated("CacheEnabled"), self.version())
            try:
                command_id, wants_response = r.int(), r.bool()
                f["command_id"] = command_id
                if kind in RESPONSES:
                    correlation = r.int()
                command_fields(kind, r, f)
            except Short:
                pass
        if kind in RESPONSES:
            self.response(side, name, correlation, f, msg)
        elif wants_response and command_id is not None:
            self.p.hold(self.pending, (side, command_id), (f, msg.frame, msg.ts_ns))
        else:
            self.p.out.event(f, msg.frame, msg.ts_ns)

    def response(self, side: int, name: str, correlation: int | None, f: dict[str, Any], msg: Message) -> None:
        item = self.pending.pop((1 - side, correlation), None) if correlation is not None else None
        if item is None:
            f["response"] = name
            self.p.out.event(f, msg.frame, msg.ts_ns)
            return
        req = item[0]
        req["response"] = name
        for key in ("error", "error_message"):
            if f.get(key) is not None:
                req[key] = f[key]
        self.p.out.event(*item)

    def wireformat(self, side: int, body: bytes, msg: Message) -> None:
        info = wireformat_info(body)
        if info is None:
            self.p.anomaly_once("openwire-bad-magic", "WireFormatInfo without the 'ActiveMQ' magic", msg.frame,
                                msg.ts_ns)
            return
        self.wf[side] = info
        if self.wf_where is None:
            self.wf_where = (msg.frame, msg.ts_ns)
        if side == SERVER and isinstance(info.get("ProviderName"), str):
            self.p.out.product(info["ProviderName"][:64])
        if all(w is not None for w in self.wf):
            self.emit_wireformat()
            if self.negotiated("SizePrefixDisabled"):
                self.p.done = True  # commands are no longer size-prefixed: nothing to frame them by

    def emit_wireformat(self) -> None:
        if self.wf_sent or self.wf_where is None:
            return
        self.wf_sent = True
        f = dict.fromkeys(BASE_FIELDS)
        f.update(protocol="openwire", command="WireFormatInfo", version=self.version(),
                 tight_encoding=self.negotiated("TightEncodingEnabled"), cache=self.negotiated("CacheEnabled"))
        for side, prefix in ((CLIENT, "client_"), (SERVER, "server_")):
            info = self.wf[side]
            if info is not None:
                f[prefix + "version"] = info.get("version")
                for key, name in (("ProviderName", "provider"), ("ProviderVersion", "provider_version"),
                                  ("PlatformDetails", "platform")):
                    if isinstance(info.get(key), str):
                        f[prefix + name] = info[key]
        self.p.out.event(f, *self.wf_where)

    def finish(self) -> None:
        self.emit_wireformat()
        for item in self.pending.values():
            self.p.out.event(*item)
        self.pending.clear()


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        pair = value[i : i + 2]
        if pair in STOMP_ESCAPES:
            out.append(STOMP_ESCAPES[pair])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


class StompSide:
    """One direction of STOMP frames: the head buffered (bounded), the body skipped to its NUL."""

    __slots__ = ("body_left", "body_len", "frame_head", "head", "in_body", "where")

    def __init__(self) -> None:
        self.head = bytearray()
        self.where = (0, 0)
        self.body_left = -1  # bytes of body still to skip when content-length is known, else -1 (to the NUL)
        self.in_body = False
        self.frame_head: tuple[str, dict[str, str]] | None = None
        self.body_len = 0


class Stomp:
    """STOMP frames of both sides, paired (CONNECT -> CONNECTED / ERROR, receipt -> RECEIPT)."""

    def __init__(self, parser: ActiveMqParser) -> None:
        self.p = parser
        self.sides = (StompSide(), StompSide())
        self.connect: tuple[dict[str, Any], int, int] | None = None
        self.receipts: dict[str, tuple[dict[str, Any], int, int]] = {}

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> bool:
        st = self.sides[side]
        pos = 0
        while pos < len(data):
            if st.in_body:
                pos = self.body(side, st, data, pos)
                continue
            if not st.head:
                while pos < len(data) and data[pos] in b"\r\n":  # heart-beats between frames
                    pos += 1
                if pos >= len(data):
                    break
                st.where = (frame, ts_ns)
            base = len(st.head)
            piece = data[pos : pos + MAX_STOMP_HEAD + 4 - base]
            st.head += piece
            end = _head_end(st.head, max(0, base - 3))
            if end < 0:
                if len(st.head) > MAX_STOMP_HEAD:
                    self.p.anomaly_once("stomp-long-header", "STOMP command line and headers over 16 KiB", frame, ts_ns)
                    return False
                pos += len(piece)
                continue
            pos += end - base
            head = bytes(st.head[:end])
            st.head = bytearray()
            st.frame_head = _parse_head(head)
            if st.frame_head is None:
                self.p.anomaly_once("stomp-bad-frame", "a frame that does not start with a command line", frame, ts_ns)
                return False
            length = st.frame_head[1].get("content-length", "")
            st.body_left = int(length) if length.isascii() and length.isdigit() and len(length) < 12 else -1
            st.in_body, st.body_len = True, 0
        return True

    def body(self, side: int, st: StompSide, data: bytes, pos: int) -> int:
        """Skip body bytes; at the NUL that ends the frame, report it. Returns the new position."""
        if st.body_left > 0:
            n = min(st.body_left, len(data) - pos)
            st.body_left -= n
            st.body_len += n
            return pos + n
        if st.body_left == 0:  # the NUL after a content-length body
            st.body_left = -1
        nul = data.find(b"\0", pos)
        if nul < 0:
            st.body_len += len(data) - pos
            return len(data)
        st.body_len += nul - pos
        st.in_body = False
        if st.frame_head is not None:
            self.frame(side, st.frame_head[0], st.frame_head[1], st.body_len, *st.where)
        return nul + 1

    def frame(self, side: int, command: str, headers: dict[str, str], body_len: int, frame: int, ts: int) -> None:
        f = dict.fromkeys(BASE_FIELDS)
        f.update(protocol="stomp", command=command, destination=headers.get("destination"))
        if command in ("CONNECT", "STOMP"):
            f.update(login=headers.get("login"), host=headers.get("host"),
                     accept_version=headers.get("accept-version"))  # never the passcode
            self.flush_connect()
            self.connect = (f, frame, ts)
            return
        if command in ("CONNECTED", "ERROR") and self.connect is not None and "receipt-id" not in headers:
            req, self.connect = self.connect, None
            req[0].update(response=command, version=headers.get("version"), server=headers.get("server"))
            if command == "ERROR":
                req[0]["error_message"] = headers.get("message")
            else:
                req[0]["session"] = headers.get("session")
            self.p.out.event(*req)
            return
        if command in ("RECEIPT", "ERROR") and headers.get("receipt-id") in self.receipts:
            req = self.receipts.pop(headers["receipt-id"])
            req[0]["response"] = command
            if command == "ERROR":
                req[0]["error_message"] = headers.get("message")
            self.p.out.event(*req)
            return
        if command in ("SEND", "MESSAGE"):
            f.update(body_len=body_len, content_type=headers.get("content-type"))
        if command == "MESSAGE":
            f["subscription"], f["message_id"] = headers.get("subscription"), headers.get("message-id")
        if command == "SUBSCRIBE":
            f["id"], f["ack"] = headers.get("id"), headers.get("ack")
        if command == "ERROR":
            f["error_message"] = headers.get("message")
        receipt = headers.get("receipt")
        if receipt is not None and command in STOMP_CLIENT:
            self.p.hold(self.receipts, receipt, (f, frame, ts))
            return
        self.p.out.event(f, frame, ts)

    def flush_connect(self) -> None:
        if self.connect is not None:
            self.p.out.event(*self.connect)
            self.connect = None

    def finish(self) -> None:
        self.flush_connect()
        for item in self.receipts.values():
            self.p.out.event(*item)
        self.receipts.clear()


def _head_end(buf: bytearray, scan: int) -> int:
    """Offset just past the blank line that ends a STOMP head (LF LF or CR LF CR LF), or -1."""
    i = buf.find(b"\n\n", scan)
    j = buf.find(b"\n\r\n", scan)
    ends = [k + 2 for k in (i,) if k >= 0] + [k + 3 for k in (j,) if k >= 0]
    return min(ends) if ends else -1


def _parse_head(head: bytes) -> tuple[str, dict[str, str]] | None:
    """The command and headers (the first occurrence of a repeated header wins, STOMP 1.2)."""
    lines = head.decode("utf-8", "replace").split("\n")
    command = lines[0].rstrip("\r")
    if command not in STOMP_CLIENT and command not in STOMP_SERVER:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:MAX_STOMP_HEADERS + 1]:
        name, sep, value = line.rstrip("\r").partition(":")
        if sep and name not in headers:
            headers[_unescape(name)[:128]] = _unescape(value)[:MAX_TEXT]
    return command, headers


class ActiveMqParser(Parser):
    """OpenWire or STOMP, decided on the first byte of the flow (a STOMP frame starts with a letter or an
    end-of-line heart-beat; an OpenWire command with its size's high byte)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.impl: OpenWire | Stomp | None = None

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if not data:
            return
        if self.impl is None:
            stomp = data[0] in b"\r\n" or 0x41 <= data[0] <= 0x5A
            self.impl = Stomp(self) if stomp else OpenWire(self)
        if self.lost[side]:
            return
        if not self.impl.feed(side, data, frame, ts_ns):
            self.lose(side)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        if isinstance(self.impl, OpenWire) and self.impl.framers[side].gap(missing):
            return
        self.lose(side)

    def hold(self, table: dict, key: Any, item: tuple[dict[str, Any], int, int]) -> None:
        """Keep an event until its response; the oldest goes out unanswered when too many wait."""
        if key in table:
            self.out.event(*table.pop(key))
        if len(table) >= MAX_PENDING:
            self.out.event(*table.pop(next(iter(table))))
        table[key] = item

    def finish(self) -> None:
        if self.impl is not None:
            self.impl.finish()


SPEC = ProtocolSpec(
    name="activemq",
    transports=("tcp",),
    ports=(61616, 61613),
    probe=probe,
    description="ActiveMQ: OpenWire WIREFORMAT_INFO with magic 'ActiveMQ'; STOMP CONNECT/CONNECTED frames",
    parser=ActiveMqParser,
    extracts="OpenWire: wire format (version, encoding, provider), each command type with its response, "
             "destination, user; STOMP: each frame with destination, login (never the passcode), receipts, errors",
)
