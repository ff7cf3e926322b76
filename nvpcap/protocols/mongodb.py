"""MongoDB wire protocol.

Spec: mongodb.com/docs/manual/reference/mongodb-wire-protocol/ (standard message header: int32 messageLength,
requestID, responseTo, opCode, all little-endian). Requests: OP_UPDATE..OP_KILL_CURSORS 2001-2007,
OP_COMMAND 2010, OP_COMPRESSED 2012, OP_MSG 2013; replies: OP_REPLY 1, OP_COMMANDREPLY 2011, OP_MSG 2013,
OP_COMPRESSED. NeuVector (dpi_mongodb.c) matches the reply's responseTo with the request's requestID; we do
too, and also validate the body (OP_QUERY collection name + BSON document, OP_MSG flag bits + sections), so a
lone well-formed request is enough on the last call and mid-stream.
"""
from __future__ import annotations

import struct

from .base import either_way_midstream, guarded, PROBE_BYTES, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="mongodb",
    transports=("tcp",),
    ports=(27017, 27018, 27019),
    probe=probe,
    description="MongoDB wire protocol: 16-byte header, request opcode + valid body, reply responseTo = requestID",
)
