"""Oracle Net (TNS).

Spec: Oracle Net Services TNS packet format as documented by Wireshark's packet-tns.c and NeuVector
(dpi_tns.c): an 8-byte header (length u16, packet checksum u16 = 0, type, flags, header checksum u16 = 0);
from TNS version 315 on, packets after the handshake may carry a 32-bit length in place of length+checksum.
Types: 1 CONNECT, 2 ACCEPT, 3 ACK, 4 REFUSE, 5 REDIRECT, 6 DATA, 7 NULL, 9 ABORT, 11 RESEND, 12 MARKER,
13 ATTENTION, 14 CONTROL. A CONNECT carries version, compatible version, ..., connect-data length and offset;
the connect data is a "(DESCRIPTION=...)" / "(CONNECT_DATA=...)" string. Proof: such a CONNECT, or a valid
CONNECT answered by ACCEPT/REFUSE/REDIRECT/RESEND. Mid-stream: chained DATA/MARKER/CONTROL packets (a DATA
packet's data flags and first TTC / NA message code are checked). NeuVector accepts any DATA packet of 10+
bytes; we want two chained packets (or one each way).
"""
from __future__ import annotations

import struct

from .base import FlowContext, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

ANSWERS = {2, 4, 5, 11}  # ACCEPT REFUSE REDIRECT RESEND
MIDSTREAM_TYPES = {6, 7, 9, 12, 13, 14}
MAX_LEN = 1 << 21  # SDU/TDU are at most 2 MiB


def _packet(b: bytes, off: int, types: set) -> tuple[Verdict, int, int]:
    """One TNS header at b[off:]: (verdict, type, end offset). Accepts 16- and 32-bit lengths."""
    h = b[off : off + 8]
    if len(h) < 8:
        if (len(h) > 4 and h[4] not in types) or (len(h) > 6 and h[6] != 0) or (len(h) > 7 and h[7] != 0):
            return NO, 0, 0
        return MAYBE, 0, 0
    if h[6:8] != b"\0\0" or h[4] not in types:
        return NO, 0, 0
    if h[2:4] == b"\0\0":
        length = struct.unpack_from(">H", h)[0]
    else:
        length = struct.unpack_from(">I", h)[0]
    if not 8 <= length <= MAX_LEN:
        return NO, 0, 0
    if h[4] in (6, 12) and length < 10:  # DATA: data flags; MARKER: type + data
        return NO, 0, 0
    if h[4] == 6 and len(b) >= off + 11:  # DATA: data flags (EOF, more data...), then a TTC/NA message code
        flags = struct.unpack_from(">H", b, off + 8)[0]
        if flags & ~0x00E2 or not (1 <= b[off + 10] <= 0x20 or b[off + 10] == 0xDE):
            return NO, 0, 0
    return YES, h[4], off + length


def _connect(c: bytes) -> tuple[Verdict, bool]:
    """A CONNECT packet: (verdict of the header fields, connect data proven)."""
    v = _packet(c, 0, {1})[0]
    if v != YES:
        return v, False
    if c[2:4] != b"\0\0":
        return NO, False
    if len(c) < 28:
        return MAYBE, False
    version, compat = struct.unpack_from(">HH", c, 8)
    dlen, doff = struct.unpack_from(">HH", c, 24)
    if not 200 <= version <= 400 or not 200 <= compat <= version or (dlen and doff < 26):
        return NO, False
    if dlen == 0:
        return YES, False
    data = c[doff : doff + min(dlen, 64)].upper()
    if len(data) < min(dlen, 16):
        return (MAYBE if b"(DESCRIPTION=".startswith(data[:13]) or data[:1] == b"(" else NO), False
    ok = data.startswith(b"(") and (b"DESCRIPTION" in data or b"CONNECT_DATA" in data or b"ADDRESS" in data)
    return (YES, True) if ok else (NO, False)


def _chain(b: bytes) -> tuple[Verdict, int]:
    off = count = 0
    while off < len(b) and count < 4:
        v, _, end = _packet(b, off, MIDSTREAM_TYPES)
        if v == NO:
            return NO, count
        if v == MAYBE or len(b) < end:
            break
        count, off = count + 1, end
    return (YES if count else MAYBE), count


def _midstream(c: bytes, s: bytes, final: bool) -> Verdict:
    results = [_chain(b) for b in (c, s) if b]
    if not results or any(v == NO for v, _ in results):
        return NO
    complete = sum(n for _, n in results)
    both = len(results) == 2 and all(n for _, n in results)
    return YES if both or complete >= 2 else MAYBE


def _handshake(client: bytes, server: bytes) -> Verdict:
    if not client:
        return MAYBE if not server else NO  # the client speaks first
    vc, described = _connect(client)
    if vc != YES:
        return vc
    answer = _packet(server, 0, ANSWERS)[0] if server else MAYBE
    if answer == NO:
        return NO
    return YES if described else answer


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    v = _handshake(client, server)
    if ctx.midstream and v != YES:  # the capture may also start after the handshake
        v = max(v, _midstream(client, server, ctx.final))
    return v


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="oracle",
    transports=("tcp",),
    ports=(1521,),
    probe=probe,
    description="Oracle TNS: CONNECT with (DESCRIPTION=...) connect data or an ACCEPT/REFUSE/REDIRECT/RESEND answer",
)
