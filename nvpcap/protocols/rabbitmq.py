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

from .base import FlowContext, guarded, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="rabbitmq",
    transports=("tcp",),
    ports=(5672,),
    probe=probe,
    description="AMQP 0-9-1/1.0: 'AMQP' protocol header; mid-stream frames with frame-end 0xCE and known methods",
)
