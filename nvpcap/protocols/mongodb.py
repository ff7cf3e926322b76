"""MongoDB wire protocol.

Spec: mongodb.com/docs/manual/reference/mongodb-wire-protocol/ (standard message header: int32 messageLength,
requestID, responseTo, opCode, all little-endian). Requests: OP_UPDATE..OP_KILL_CURSORS 2001-2007,
OP_COMMAND 2010, OP_COMPRESSED 2012, OP_MSG 2013; replies: OP_REPLY 1, OP_COMMANDREPLY 2011, OP_MSG 2013,
OP_COMPRESSED. NeuVector (dpi_mongodb.c) matches the reply's responseTo with the request's requestID; we do
too, and also validate the body (OP_QUERY collection name + BSON document, OP_MSG flag bits + sections), so a
lone well-formed request is enough on the last call and mid-stream.
"""
from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

from .base import (
    PROBE_BYTES,
    FlowContext,
    Parser,
    ParserOutput,
    ProtocolSpec,
    Verdict,
    either_way_midstream,
    guarded,
)
from .framing import Framer, Message

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

MAX_MSG = 48_000_000  # maxMessageSizeBytes
REQUESTS = {2001, 2002, 2004, 2005, 2006, 2007, 2010, 2012, 2013}
REPLIES = {1, 2011, 2012, 2013}
OPCODES = REQUESTS | REPLIES
_HDR = struct.Struct("<iiii")


def _bson(b: bytes, off: int, end: int) -> Verdict:
    """A BSON document at b[off:]: int32 size >= 5 within the message; a first element type + key; 0x00 end."""
    if len(b) < off + 4:
        return MAYBE
    size = struct.unpack_from("<i", b, off)[0]
    if size < 5 or off + size > end:
        return NO
    if len(b) > off + 4 and b[off + 4] not in range(20) and b[off + 4] not in (0x7F, 0xFF):
        return NO
    if len(b) < off + size:
        return MAYBE
    return YES if b[off + size - 1] == 0 else NO


def _body(b: bytes, op: int, end: int) -> Verdict:
    """Validate the start of the body of one message (header already checked)."""
    if op == 2004:  # OP_QUERY: flags, fullCollectionName cstring "db.collection", skip, return, query doc
        name_end = b.find(b"\0", 20, min(end, 20 + 256))
        if name_end < 0:
            partial = b[20:end]
            return MAYBE if len(b) < min(end, 20 + 256) and all(0x20 < x < 0x7F for x in partial) else NO
        name = b[20:name_end]
        if b"." not in name or not all(0x20 < x < 0x7F for x in name):
            return NO
        return _bson(b, name_end + 9, end)
    if op == 2013:  # OP_MSG: flagBits (only bits 0, 1, 16 defined), then sections of kind 0 or 1
        if len(b) < 21:
            return MAYBE
        flags = struct.unpack_from("<I", b, 16)[0]
        if flags & ~0x10003 or b[20] not in (0, 1):
            return NO
        if b[20] == 0:
            return _bson(b, 21, end)
        if len(b) < 25:
            return MAYBE
        size = struct.unpack_from("<i", b, 21)[0]
        return YES if 5 <= size <= end - 21 and (len(b) < 26 or 0x20 < b[25] < 0x7F) else NO
    if op == 1:  # OP_REPLY: flags, cursorID(8), startingFrom, numberReturned, documents
        if len(b) < 36:
            return MAYBE
        flags, _, start, n = struct.unpack_from("<iqii", b, 16)
        if flags & ~0xF or start < 0 or n < 0:
            return NO
        return _bson(b, 36, end) if n else YES
    if op == 2012:  # OP_COMPRESSED: originalOpcode, uncompressedSize, compressorId 0..3
        if len(b) < 25:
            return MAYBE
        orig, size = struct.unpack_from("<ii", b, 16)
        return YES if orig in OPCODES and orig != 2012 and 0 < size <= MAX_MSG and b[24] <= 3 else NO
    if op in (2001, 2002, 2005, 2006):  # ZERO/flags int32, fullCollectionName cstring
        name_end = b.find(b"\0", 20, min(end, 20 + 256))
        if name_end < 0:
            return MAYBE if len(b) < min(end, 20 + 256) else NO
        return YES if b"." in b[20:name_end] else NO
    return YES if len(b) >= 20 else MAYBE  # OP_KILL_CURSORS, OP_COMMAND(REPLY): header checks only


def _message(b: bytes, ops: set) -> tuple[Verdict, int, int]:
    """One message at the start of b: (verdict, requestID, responseTo)."""
    if len(b) < 16:
        # messageLength is little-endian: its high byte must be small
        return (MAYBE if len(b) < 4 or b[3] == 0 else NO), 0, 0
    length, req, resp, op = _HDR.unpack_from(b)
    if not 16 < length <= MAX_MSG or op not in ops:
        return NO, 0, 0
    return _body(b, op, length), req, resp


def _check(c: bytes, s: bytes, final: bool, midstream: bool) -> Verdict:
    vc, req, resp = _message(c, REQUESTS) if c else (MAYBE, 0, 0)
    if vc == NO or (not midstream and len(c) >= 16 and resp not in (0, -1)):
        return NO
    if not s:
        # last call: a valid request, or one whose body was valid up to the probe budget
        return YES if final and (vc == YES or (vc == MAYBE and len(c) >= PROBE_BYTES)) else MAYBE
    vs, _, answer_to = _message(s, REPLIES)
    if vs == NO or not c:
        return NO if vs == NO else MAYBE
    if len(s) >= 16 and len(c) >= 16:
        if answer_to == req != 0 and vs == YES:
            return YES  # the reply names the request: proof even if the request body is cut short
        if answer_to != req and not midstream:
            return NO  # mid-stream the first reply may answer an earlier request
    if vc == YES and (vs == YES or final):
        return YES
    return MAYBE


_probe = either_way_midstream(_check, pass_midstream=True)


probe = guarded(_probe)


# ---- parsing: each request with its reply, paired by responseTo = requestID ----
# Spec: MongoDB Wire Protocol (mongodb.com/docs/manual/reference/mongodb-wire-protocol/: OP_MSG, OP_QUERY,
# OP_REPLY, OP_COMPRESSED and the legacy opcodes) and BSON 1.1 (bsonspec.org/spec.html). One event per
# request and its reply: the opcode, the command (first key of the command document: find, insert, hello,
# isMaster...), the database ($db, or the prefix of fullCollectionName), the collection (the command's
# value when it is a string), and the reply's ok / errmsg / code / codeName.

MESSAGE_LIMIT = 1 << 16  # messages up to this are read whole; longer ones from their first MESSAGE_KEEP bytes
MESSAGE_KEEP = 1 << 14  # enough for the command document, which comes first
MAX_PENDING = 1024  # requests waiting for their reply; beyond, the oldest is reported unanswered
MAX_KEYS = 64  # top-level BSON elements read per document
MAX_SECTIONS = 16  # OP_MSG sections read per message
MAX_TEXT = 1024  # characters kept of a string value (namespace, collection, errmsg)

OPNAMES = {1: "OP_REPLY", 2001: "OP_UPDATE", 2002: "OP_INSERT", 2004: "OP_QUERY", 2005: "OP_GET_MORE",
           2006: "OP_DELETE", 2007: "OP_KILL_CURSORS", 2010: "OP_COMMAND", 2011: "OP_COMMANDREPLY",
           2012: "OP_COMPRESSED", 2013: "OP_MSG"}
OP_REPLY, OP_QUERY, OP_COMMAND, OP_COMMANDREPLY, OP_COMPRESSED, OP_MSG = 1, 2004, 2010, 2011, 2012, 2013
NO_REPLY = {2001, 2002, 2006, 2007}  # legacy writes and OP_KILL_CURSORS are never answered
REPLY_OPS = {OP_REPLY, OP_COMMANDREPLY}
COMPRESSORS = {0: "noop", 1: "snappy", 2: "zlib", 3: "zstd"}  # OP_COMPRESSED compressorId
MSG_CHECKSUM, MSG_MORE_TO_COME = 0x1, 0x2  # OP_MSG flagBits: a CRC-32C ends the message; no reply will follow
REPLY_QUERY_FAILURE = 0x2  # OP_REPLY responseFlags bit 1

# BSON element types (bsonspec.org): fixed value sizes; strings (int32 length incl. NUL); nested (int32 size)
BSON_FIXED = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
              0x7F: 0, 0xFF: 0}
BSON_STRINGS = {0x02, 0x0D, 0x0E}  # string, JavaScript code, symbol
BSON_NESTED = {0x03, 0x04, 0x0F}  # document, array, code with scope
BSON_BINARY, BSON_REGEX, BSON_DBPOINTER = 0x05, 0x0B, 0x0C
_I32 = struct.Struct("<i")


class Nested(NamedTuple):
    """A nested document or array, skipped by its length: where it starts and its declared size."""

    offset: int
    size: int


def _i32(b: bytes, off: int) -> int | None:
    return _I32.unpack_from(b, off)[0] if 0 <= off and off + 4 <= len(b) else None


def _text(raw: bytes, cap: int = MAX_TEXT) -> str:
    return raw[: cap * 4].decode("utf-8", "replace")[:cap]


def _fixed(kind: int, raw: bytes) -> Any:
    if kind == 0x01:
        v = struct.unpack("<d", raw)[0]
        return v if math.isfinite(v) else None  # JSON has no NaN / infinity
    if kind == 0x08:
        return raw != b"\0"
    if kind == 0x10:
        return _I32.unpack(raw)[0]
    if kind in (0x09, 0x12):
        return struct.unpack("<q", raw)[0]
    if kind == 0x11:
        return struct.unpack("<Q", raw)[0]
    if kind == 0x07:
        return raw.hex()
    return None


def bson_elements(b: bytes, off: int = 0) -> list[tuple[str, Any]]:
    """The top-level elements of the BSON document at b[off:], as (key, value): strings (capped), numbers,
    booleans, None (null, binary, regex, ...), or Nested for documents and arrays (not read: skipped by their
    length, so there is no recursion). Stops quietly at the first element that does not fit in the
    document or in `b` (a cut or hostile document), and after MAX_KEYS elements."""
    size = _i32(b, off)
    out: list[tuple[str, Any]] = []
    if size is None or size < 5:
        return out
    cut = off + size - 1 > len(b)  # the document goes on past what we have
    end = min(off + size - 1, len(b))  # the document's terminating NUL, or the end of what we have
    p = off + 4
    while p < end and len(out) < MAX_KEYS:
        kind = b[p]
        key_end = b.find(b"\0", p + 1, end)
        if key_end < 0:
            break
        key = _text(b[p + 1 : key_end], 256)
        p = key_end + 1
        value: Any = None
        if kind in BSON_FIXED:
            span = BSON_FIXED[kind]
            if p + span <= end:
                value = _fixed(kind, b[p : p + span])
        elif kind in BSON_STRINGS or kind == BSON_DBPOINTER:
            n = _i32(b, p)
            if n is None or n < 1:
                break
            span = 4 + n + (12 if kind == BSON_DBPOINTER else 0)
            if kind == 0x02 and p + 4 + n <= end:
                value = _text(b[p + 4 : p + 3 + n])
        elif kind in BSON_NESTED or kind == BSON_BINARY:
            n = _i32(b, p)
            if n is None or n < (0 if kind == BSON_BINARY else 5):
                break
            span = 5 + n if kind == BSON_BINARY else n
            value = Nested(p, n) if kind != BSON_BINARY else None
        elif kind == BSON_REGEX:
            pattern_end = b.find(b"\0", p, end)
            options_end = b.find(b"\0", pattern_end + 1, end) if pattern_end >= 0 else -1
            if options_end < 0:
                break
            span = options_end + 1 - p
        else:
            break  # an unknown element type: its size is unknown, nothing after it can be read
        if p + span > end:
            if cut:  # the value runs past the capture: its key is still worth having
                out.append((key, value))
            break
        out.append((key, value))
        p += span
    return out


def _cstring(b: bytes, off: int) -> tuple[str | None, int]:
    end = b.find(b"\0", off)
    if end < 0:
        return None, len(b)
    return _text(b[off:end]), end + 1


def _namespace(ns: str | None) -> tuple[str | None, str | None]:
    """fullCollectionName "db.collection" -> (database, collection)."""
    if ns is None:
        return None, None
    db, dot, coll = ns.partition(".")
    return db or None, (coll or None) if dot else None


def command_fields(elements: list[tuple[str, Any]]) -> dict[str, Any]:
    """command / database / collection of a command document: its first key, its $db, and the first
    key's value when that is a string (getMore names its collection in "collection")."""
    out: dict[str, Any] = {"command": None, "database": None, "collection": None}
    if not elements:
        return out
    key, value = elements[0]
    out["command"] = key
    if isinstance(value, str):
        out["collection"] = value
    for k, v in elements[1:]:
        if k == "$db" and isinstance(v, str):
            out["database"] = v
        elif k == "collection" and key == "getMore" and isinstance(v, str):
            out["collection"] = v
    return out


def reply_fields(elements: list[tuple[str, Any]]) -> dict[str, Any]:
    """ok / errmsg / code / code_name of a reply document (legacy errors say $err)."""
    out: dict[str, Any] = {}
    for key, value in elements:
        if key == "ok" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out["ok"] = value
        elif key in ("errmsg", "$err") and isinstance(value, str):
            out["errmsg"] = value
        elif key == "code" and isinstance(value, int) and not isinstance(value, bool):
            out["code"] = value
        elif key == "codeName" and isinstance(value, str):
            out["code_name"] = value
    return out


def _op_msg(body: bytes) -> tuple[list[tuple[str, Any]], list[str]]:
    """OP_MSG after flagBits: the kind 0 body document's elements, and kind 1 document sequence names."""
    off, body_doc, sequences = 4, [], []
    for _ in range(MAX_SECTIONS):
        if off >= len(body):
            break
        kind, off = body[off], off + 1
        size = _i32(body, off)
        if size is None or size < 4:
            break
        if kind == 0:
            body_doc = body_doc or bson_elements(body, off)
        elif kind == 1:
            name, _ = _cstring(body[: off + size], off + 4)
            if name is not None:
                sequences.append(name)
        else:
            break
        off += size
    return body_doc, sequences


def request_fields(op: int, body: bytes) -> dict[str, Any]:
    """What a request says (body: the message after its 16-byte header, possibly cut)."""
    fields: dict[str, Any] = {"command": None, "database": None, "collection": None}
    if op == OP_MSG:
        elements, sequences = _op_msg(body)
        fields.update(command_fields(elements))
        if sequences:
            fields["sequences"] = sequences
    elif op == OP_QUERY:  # flags, fullCollectionName, numberToSkip, numberToReturn, query
        ns, off = _cstring(body, 4)
        db, coll = _namespace(ns)
        fields["database"], fields["collection"] = db, coll
        if coll == "$cmd" or (coll or "").startswith("$cmd."):
            elements = bson_elements(body, off + 8)
            if elements and elements[0][0] == "$query" and isinstance(elements[0][1], Nested):
                elements = bson_elements(body, elements[0][1].offset)  # a wrapped command: {$query: {...}}
            cmd = command_fields(elements)
            fields["command"], fields["collection"] = cmd["command"], cmd["collection"]
    elif op in (2001, 2002, 2005, 2006):  # OP_UPDATE / OP_INSERT / OP_GET_MORE / OP_DELETE: int32, namespace
        fields["database"], fields["collection"] = _namespace(_cstring(body, 4)[0])
    elif op == OP_COMMAND:  # database, commandName, commandArgs, metadata, inputDocs (MongoDB 3.2-3.4)
        db, off = _cstring(body, 0)
        name, off = _cstring(body, off)
        fields["database"], fields["command"] = db, name
        args = bson_elements(body, off)
        if args and isinstance(args[0][1], str):
            fields["collection"] = args[0][1]
    return fields


def reply_document(op: int, body: bytes) -> dict[str, Any]:
    """ok / errmsg / code of a reply (body after the header)."""
    if op == OP_REPLY:  # responseFlags, cursorID, startingFrom, numberReturned, documents
        flags = _i32(body, 0)
        out = reply_fields(bson_elements(body, 20))
        if flags is not None and flags & REPLY_QUERY_FAILURE and "ok" not in out:
            out["ok"] = 0
        return out
    if op == OP_MSG:
        return reply_fields(_op_msg(body)[0])
    if op == OP_COMMANDREPLY:  # commandReply, metadata, outputDocs
        return reply_fields(bson_elements(body, 0))
    return {}


def _length(h: bytes) -> int:
    n = _I32.unpack_from(h)[0]
    return n if 16 <= n <= MAX_MSG else 0


class MongoParser(Parser):
    """Requests paired with their replies by responseTo. Which messages are replies is read from the
    message (OP_REPLY, OP_COMMANDREPLY, or an OP_MSG with a responseTo), not from the side, so a mid-stream
    flow taken the wrong way round still pairs. OP_COMPRESSED is named with its compressor and not
    decompressed (the noop compressor's payload is read as the original opcode)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = (Framer(16, _length, MESSAGE_LIMIT, MESSAGE_KEEP),
                        Framer(16, _length, MESSAGE_LIMIT, MESSAGE_KEEP))
        self.pending: dict[int, tuple[dict[str, Any], int, int]] = {}

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        for msg in framer.push(data, frame, ts_ns):
            self._message(msg)
        if framer.broken:
            self.anomaly_once("mongodb-bad-length", "message length outside 16..48000000: framing lost", frame, ts_ns)
            self._check_done()

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        if not self.framers[side].gap(missing):
            self._check_done()

    def _check_done(self) -> None:
        if all(f.broken for f in self.framers):
            self.done = True

    def _message(self, msg: Message) -> None:
        _, request_id, response_to, op = _HDR.unpack_from(msg.data)
        body = msg.data[16:]
        if op == OP_MSG and not msg.truncated and len(body) >= 4 and body[0] & MSG_CHECKSUM:
            body = body[:-4]  # the CRC-32C after the sections
        if op not in OPNAMES:
            self.anomaly_once("mongodb-unknown-opcode", f"opcode {op}", msg.frame, msg.ts_ns)
            return
        extra: dict[str, Any] = {}
        inner = op
        if op == OP_COMPRESSED:  # originalOpcode, uncompressedSize, compressorId, compressed message
            original, comp = _i32(body, 0), body[8] if len(body) > 8 else None
            extra = {"compressor": COMPRESSORS.get(comp, str(comp)), "original_opcode": OPNAMES.get(original)}
            inner, body = (original, body[9:]) if comp == 0 and original in OPNAMES else (None, b"")
        if op in REPLY_OPS or inner in REPLY_OPS or (response_to not in (0, -1) and inner in (OP_MSG, None)):
            self._reply(op, inner, body, response_to, extra, msg)
        else:
            self._request(op, inner, body, request_id, extra, msg)

    def _request(self, op: int, inner: int | None, body: bytes, request_id: int, extra: dict, msg: Message) -> None:
        fields: dict[str, Any] = {"opcode": OPNAMES[op], "request_id": request_id}
        fields.update(request_fields(inner, body) if inner is not None else
                      {"command": None, "database": None, "collection": None})
        fields.update(extra)
        fields.update({"reply_opcode": None, "ok": None, "errmsg": None, "code": None, "code_name": None})
        one_way = inner in NO_REPLY or (inner == OP_MSG and len(body) >= 4 and body[0] & MSG_MORE_TO_COME)
        if one_way:
            self.out.event(fields, msg.frame, msg.ts_ns)
            return
        if len(self.pending) >= MAX_PENDING:
            old, frame, ts = self.pending.pop(next(iter(self.pending)))
            self.out.event(old, frame, ts)
        if request_id in self.pending:  # a reused id: the earlier request was not answered
            old, frame, ts = self.pending.pop(request_id)
            self.out.event(old, frame, ts)
        self.pending[request_id] = (fields, msg.frame, msg.ts_ns)

    def _reply(self, op: int, inner: int | None, body: bytes, response_to: int, extra: dict, msg: Message) -> None:
        found = self.pending.pop(response_to, None)
        if found is None:  # the request was not seen (capture started late), or an exhaust cursor's next batch
            fields: dict[str, Any] = {"opcode": None, "request_id": response_to, "command": None, "database": None,
                                      "collection": None}
            frame, ts = msg.frame, msg.ts_ns
        else:
            fields, frame, ts = found
        fields["reply_opcode"] = OPNAMES[op]
        fields.update({"ok": None, "errmsg": None, "code": None, "code_name": None})
        if inner is not None:
            fields.update(reply_document(inner, body))
        for k, v in extra.items():
            fields.setdefault(k, v)
        self.out.event(fields, frame, ts)

    def finish(self) -> None:
        for fields, frame, ts in self.pending.values():
            self.out.event(fields, frame, ts)
        self.pending.clear()


SPEC = ProtocolSpec(
    name="mongodb",
    transports=("tcp",),
    ports=(27017, 27018, 27019),
    probe=probe,
    description="MongoDB wire protocol: 16-byte header, request opcode + valid body, reply responseTo = requestID",
    parser=MongoParser,
    extracts="per request/reply: opcode, request_id, command, database, collection, compressor, reply ok/errmsg/code",
)
