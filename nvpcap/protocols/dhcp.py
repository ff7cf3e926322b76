"""DHCP: the BOOTP fixed header (RFC 951 §3, RFC 2131 §2) with the magic cookie 99.130.83.99 at offset 236
(RFC 2131 §3, RFC 1497); DHCPv6 (RFC 8415 §8, §9) on its UDP ports 546/547.

NeuVector (dpi_dhcp.c): length >= 244, hlen <= 16, cookie at 236, any UDP port. Here: also op 1/2 and a sane
hardware type and hop count. The options are not required to parse (real fuzzed traffic breaks them, and the
cookie is already a 4-byte magic at a fixed offset). One datagram proves it: DHCP answers usually come back in
another flow (broadcast, or from/to other ports).
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

BOOTP = struct.Struct("!BBBB")  # op, htype, hlen, hops
COOKIE_OFFSET, COOKIE = 236, b"\x63\x82\x53\x63"
MIN_LEN = COOKIE_OFFSET + 4
OPS = (1, 2)  # BOOTREQUEST, BOOTREPLY
MAX_HTYPE, MAX_HLEN, MAX_HOPS = 40, 16, 32

V6_PORTS = (546, 547)  # DHCPv6 has no magic: without its ports it cannot be told from other UDP payloads
V6_TYPES = range(1, 37)  # SOLICIT .. (RFC 8415 1-13, leasequery, DHCPv4-over-DHCPv6, bulk, failover)
V6_RELAY = (12, 13)  # RELAY-FORW, RELAY-REPL: hop count + link address + peer address before the options
V6_RELAY_HEAD = 34

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def bootp(msg: bytes) -> bool:
    if len(msg) < MIN_LEN or msg[COOKIE_OFFSET:MIN_LEN] != COOKIE:
        return False
    op, htype, hlen, hops = BOOTP.unpack_from(msg)
    return op in OPS and 1 <= htype <= MAX_HTYPE and hlen <= MAX_HLEN and hops <= MAX_HOPS


def dhcpv6(msg: bytes) -> bool:
    """Message type, then options (code, length, data) that end exactly at the end of the datagram."""
    if len(msg) < 4 or msg[0] not in V6_TYPES:
        return False
    off = 1 + (V6_RELAY_HEAD - 1 if msg[0] in V6_RELAY else 3)  # transaction id, or the relay header
    if msg[0] in V6_RELAY and msg[1] > 32:  # hop count (HOP_COUNT_LIMIT is 8 by default)
        return False
    count = 0
    while off + 4 <= len(msg):
        code, length = struct.unpack_from("!HH", msg, off)
        if code == 0:
            return False
        off += 4 + length
        count += 1
    return count > 0 and off == len(msg)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        v6 = ctx.client_port in V6_PORTS or ctx.server_port in V6_PORTS
        check = (lambda m: bootp(m) or dhcpv6(m)) if v6 else bootp
        seen = [m for m in (client, server) if m]
        if not seen:
            return MAYBE
        return YES if all(check(m) for m in seen) else NO
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="dhcp",
    transports=("udp",),
    ports=(67, 68, 546, 547),
    probe=probe,
    description="DHCP/BOOTP (magic cookie at offset 236) and DHCPv6 on UDP 546/547",
)
