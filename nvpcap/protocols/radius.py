"""RADIUS: `code(1) identifier(1) length(2) authenticator(16)` then attributes `type(1) length(1) value`
(RFC 2865 §3, §5; accounting RFC 2866; Status-Server RFC 5997; Dynamic Authorization RFC 5176).

Not in NeuVector. Here: a known code, the length field equal to the datagram length (20..4096), and the
attributes filling it exactly; a request answered by a matching code with the same identifier proves it on any
port. A request alone is accepted on the last call when it is on a RADIUS port or carries several attributes.
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

HEADER = struct.Struct("!BBH16s")  # code, identifier, length, authenticator
MIN_LEN, MAX_LEN = 20, 4096
ANSWERS = {  # request code -> answer codes
    1: (2, 3, 11),  # Access-Request -> Accept, Reject, Challenge
    4: (5,),  # Accounting-Request -> Accounting-Response
    12: (2, 3, 5),  # Status-Server
    13: (),  # Status-Client (obsolete)
    40: (41, 42),  # Disconnect-Request -> ACK, NAK
    43: (44, 45),  # CoA-Request -> ACK, NAK
}
CODES = frozenset(ANSWERS) | frozenset(c for answers in ANSWERS.values() for c in answers)
PORTS = (1812, 1813, 1645, 1646, 3799)
MIN_LONE_ATTRIBUTES = 2

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def packet(msg: bytes) -> tuple[int, int, int] | None:
    """(code, identifier, attribute count) of a well-formed packet, or None."""
    if len(msg) < MIN_LEN:
        return None
    code, ident, length, _ = HEADER.unpack_from(msg)
    if code not in CODES or length != len(msg) or length > MAX_LEN:
        return None
    off, count = MIN_LEN, 0
    while off < length:
        if off + 2 > length or msg[off] == 0 or msg[off + 1] < 2:
            return None
        off += msg[off + 1]
        count += 1
    return (code, ident, count) if off == length else None


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        req = packet(client) if client else None
        ans = packet(server) if server else None
        if (client and req is None) or (server and ans is None):
            return NO
        if req and ans:
            return YES if req[1] == ans[1] and ans[0] in ANSWERS.get(req[0], ()) else NO
        if not ctx.final or req is None or req[0] not in ANSWERS:
            return NO if ctx.final else MAYBE
        on_port = ctx.server_port in PORTS or ctx.client_port in PORTS
        return YES if on_port or req[2] >= MIN_LONE_ATTRIBUTES else NO
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="radius",
    transports=("udp",),
    ports=PORTS,
    probe=probe,
    description="RADIUS: known code, length = datagram, attributes fill it; answer code/identifier match",
)
