"""DHCP: the BOOTP fixed header (RFC 951 §3, RFC 2131 §2) with the magic cookie 99.130.83.99 at offset 236
(RFC 2131 §3, RFC 1497); DHCPv6 (RFC 8415 §8, §9) on its UDP ports 546/547.

NeuVector (dpi_dhcp.c): length >= 244, hlen <= 16, cookie at 236, any UDP port. Here: also op 1/2 and a sane
hardware type and hop count. The options are not required to parse (real fuzzed traffic breaks them, and the
cookie is already a 4-byte magic at a fixed offset). One datagram proves it: DHCP answers usually come back in
another flow (broadcast, or from/to other ports).
"""
from __future__ import annotations

import ipaddress
import struct

from nvpcap.protocols.base import FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict

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


# ---- parsing: the BOOTP header (RFC 2131 §2), DHCP options (RFC 2132), DHCPv6 (RFC 8415 §8, §9, §21) ----

HEAD = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr
# chaddr sname file (RFC 2131 §2, figure 1): 236 bytes, then the magic cookie
MSG_TYPES = {  # option 53 (RFC 2132 §9.6; RFC 3203; RFC 4388 §6.1; RFC 6926 §6.2.1; RFC 7724)
    1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM",
    9: "FORCERENEW", 10: "LEASEQUERY", 11: "LEASEUNASSIGNED", 12: "LEASEUNKNOWN", 13: "LEASEACTIVE",
    14: "BULKLEASEQUERY", 15: "LEASEQUERYDONE", 16: "ACTIVELEASEQUERY", 17: "LEASEQUERYSTATUS", 18: "TLS",
}
BOOTP_OPS = {1: "BOOTREQUEST", 2: "BOOTREPLY"}  # plain BOOTP (no option 53), RFC 951 §3
ACK, OFFER = 5, 2
PAD, END = 0, 255
O_HOSTNAME, O_DOMAIN, O_REQUESTED, O_LEASE, O_OVERLOAD, O_MSG_TYPE, O_SERVER_ID, O_PARAMS, O_MESSAGE = \
    12, 15, 50, 51, 52, 53, 54, 55, 56
O_VENDOR_CLASS, O_CLIENT_ID, O_CLIENT_FQDN = 60, 61, 81  # RFC 2132 §9.13, §9.14; RFC 4702
FQDN_E = 0x04  # RFC 4702 §2.1: the name is in DNS wire format (else ASCII, deprecated)
MAX_TEXT = 255  # characters kept of a text option (option values are at most 255 bytes, or concatenated, RFC 3396)
MAX_ITEMS = 64  # list items kept (parameter list, addresses)

V6_MSG_TYPES = {  # RFC 8415 §7.3; RFC 5007; RFC 5460; RFC 6977; RFC 7341
    1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND", 7: "REPLY", 8: "RELEASE",
    9: "DECLINE", 10: "RECONFIGURE", 11: "INFORMATION-REQUEST", 12: "RELAY-FORW", 13: "RELAY-REPL",
    14: "LEASEQUERY", 15: "LEASEQUERY-REPLY", 16: "LEASEQUERY-DONE", 17: "LEASEQUERY-DATA",
    18: "RECONFIGURE-REQUEST", 19: "RECONFIGURE-REPLY", 20: "DHCPV4-QUERY", 21: "DHCPV4-RESPONSE",
}
V6_OPTION = struct.Struct("!HH")  # option-code, option-len (RFC 8415 §21.1)
V6_CLIENTID, V6_SERVERID, V6_IA_NA, V6_IAADDR, V6_ORO, V6_RELAY_MSG, V6_STATUS, V6_VENDOR_CLASS, V6_FQDN = \
    1, 2, 3, 5, 6, 9, 13, 16, 39
IA_NA_HEAD = struct.Struct("!III")  # IAID, T1, T2 (§21.4)
IAADDR = struct.Struct("!16sII")  # address, preferred-lifetime, valid-lifetime (§21.6)
MAX_RELAY_DEPTH = 8  # RELAY-FORW nesting followed (HOP_COUNT_LIMIT is 8, §7.6)


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")[:MAX_TEXT]


def _hex(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw[:MAX_TEXT // 3])


def _ip4(raw: bytes) -> str | None:
    return ".".join(map(str, raw)) if len(raw) == 4 else None


def wire_name(raw: bytes) -> str:
    """A domain name in DNS wire format without compression (RFC 4702 §2.3.1, RFC 8415 §10)."""
    labels, off = [], 0
    while off < len(raw) and raw[off] and len(labels) < 128:
        n = raw[off]
        labels.append(raw[off + 1 : off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels)[:MAX_TEXT]


def v4_options(data: bytes, start: int, end: int, opts: dict[int, bytearray]) -> bool:
    """Options from data[start:end] into opts (repeats concatenated, RFC 3396 §5); False if one overruns."""
    off = start
    while off < end:
        code = data[off]
        if code == END:
            return True
        if code == PAD:
            off += 1
            continue
        if off + 2 > end or off + 2 + data[off + 1] > end:
            return False
        length = data[off + 1]
        opts.setdefault(code, bytearray()).extend(data[off + 2 : off + 2 + length])
        off += 2 + length
    return True  # no END: tolerated (RFC 2131 §4.1 wants it, many stacks pad instead)


def decode_v4(msg: bytes) -> tuple[dict, bool]:
    """The event fields of one DHCPv4/BOOTP message, and whether all its options were well formed."""
    op, _, hlen, _, xid, _, _, ciaddr, yiaddr, _, _, chaddr, sname, bootfile = HEAD.unpack_from(msg)
    opts: dict[int, bytearray] = {}
    ok = v4_options(msg, COOKIE_OFFSET + 4, len(msg), opts)
    overload = (opts.get(O_OVERLOAD) or b"\0")[0]  # RFC 2132 §9.3: options continue in file (1), sname (2), both (3)
    if overload & 1:
        ok = v4_options(bootfile, 0, len(bootfile), opts) and ok
    if overload & 2:
        ok = v4_options(sname, 0, len(sname), opts) and ok
    mtype = opts[O_MSG_TYPE][0] if opts.get(O_MSG_TYPE) else None
    lease = opts.get(O_LEASE, b"")
    fqdn = opts.get(O_CLIENT_FQDN, b"")
    return {
        "version": 4,
        "msg_type": BOOTP_OPS.get(op, op) if mtype is None else MSG_TYPES.get(mtype, mtype),
        "trans_id": xid,
        "mac": _hex(chaddr[: min(hlen, 16)]) if hlen else None,
        "client_addr": _ip4(ciaddr) if any(ciaddr) else None,
        "host_name": _text(opts[O_HOSTNAME]) if O_HOSTNAME in opts else None,
        "requested_addr": _ip4(opts.get(O_REQUESTED, b"")),
        "offered_addr": _ip4(yiaddr) if mtype == OFFER else None,
        "assigned_addr": _ip4(yiaddr) if mtype == ACK else None,
        "server_id": _ip4(opts.get(O_SERVER_ID, b"")),
        "lease_time": int.from_bytes(lease, "big") if len(lease) == 4 else None,
        "client_id": _hex(opts[O_CLIENT_ID]) if O_CLIENT_ID in opts else None,
        "vendor_class": _text(opts[O_VENDOR_CLASS]) if O_VENDOR_CLASS in opts else None,
        "param_list": list(opts[O_PARAMS][:MAX_ITEMS]) if O_PARAMS in opts else None,
        "domain": _text(opts[O_DOMAIN]) if O_DOMAIN in opts else None,
        "client_fqdn": None if len(fqdn) < 3 else wire_name(fqdn[3:]) if fqdn[0] & FQDN_E else _text(fqdn[3:]),
        "message": _text(opts[O_MESSAGE]) if O_MESSAGE in opts else None,
    }, ok


def v6_options(data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """(code, value) pairs filling data; False when the last one overruns."""
    out, off = [], 0
    while off + 4 <= len(data):
        code, length = V6_OPTION.unpack_from(data, off)
        if off + 4 + length > len(data):
            return out, False
        out.append((code, data[off + 4 : off + 4 + length]))
        off += 4 + length
    return out, off == len(data)


def decode_v6(msg: bytes) -> tuple[dict, bool]:
    """The event fields of one DHCPv6 message (the innermost one of relay messages), and whether it was well
    formed."""
    hops = 0
    while msg[0] in V6_RELAY and hops < MAX_RELAY_DEPTH and len(msg) >= V6_RELAY_HEAD:
        opts, ok = v6_options(msg[V6_RELAY_HEAD:])
        inner = next((v for c, v in opts if c == V6_RELAY_MSG), b"")
        if not ok or len(inner) < 4:
            break
        msg, hops = inner, hops + 1
    relay = msg[0] in V6_RELAY
    opts, ok = v6_options(msg[V6_RELAY_HEAD if relay else 4 :]) if len(msg) >= 4 else ([], False)
    fields = {
        "version": 6, "msg_type": V6_MSG_TYPES.get(msg[0], msg[0]) if msg else None,
        "trans_id": None if relay or len(msg) < 4 else int.from_bytes(msg[1:4], "big"),
        "client_duid": None, "server_duid": None, "client_fqdn": None, "ia_na_addrs": None, "lease_time": None,
        "param_list": None, "vendor_class": None, "message": None, "relay_hops": hops,
    }
    for code, value in opts:
        if code == V6_CLIENTID:
            fields["client_duid"] = _hex(value)
        elif code == V6_SERVERID:
            fields["server_duid"] = _hex(value)
        elif code == V6_FQDN and value:
            fields["client_fqdn"] = wire_name(value[1:])
        elif code == V6_ORO:
            fields["param_list"] = [int.from_bytes(value[i : i + 2], "big") for i in range(0, len(value) - 1, 2)][
                :MAX_ITEMS]
        elif code == V6_STATUS and len(value) >= 2:
            fields["message"] = _text(value[2:]) or None
        elif code == V6_VENDOR_CLASS and len(value) >= 6:  # enterprise-number, then length-prefixed data
            n = int.from_bytes(value[4:6], "big")
            fields["vendor_class"] = _text(value[6 : 6 + n])
        elif code == V6_IA_NA and len(value) >= IA_NA_HEAD.size:
            ok = _ia_na(value[IA_NA_HEAD.size :], fields) and ok
    return fields, ok


def _ia_na(data: bytes, fields: dict) -> bool:
    """IA Address options inside an IA_NA (RFC 8415 §21.4, §21.6)."""
    opts, ok = v6_options(data)
    addrs = fields["ia_na_addrs"] or []
    for code, value in opts:
        if code == V6_IAADDR and len(value) >= IAADDR.size and len(addrs) < MAX_ITEMS:
            addr, _, valid = IAADDR.unpack_from(value)
            addrs.append(str(ipaddress.IPv6Address(addr)))
            if fields["lease_time"] is None:
                fields["lease_time"] = valid
    fields["ia_na_addrs"] = addrs or None
    return ok


class DhcpParser(Parser):
    """One event per DHCP message (not per transaction: a DHCP exchange spans several flows, broadcast and
    unicast, so a flow rarely holds both halves; `trans_id` joins them). Anomalies: options that overrun
    the message (dhcp-truncated-option), datagrams that are neither BOOTP nor DHCPv6 (dhcp-bad-message)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.v6 = ctx.client_port in V6_PORTS or ctx.server_port in V6_PORTS

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if bootp(data) or (len(data) >= MIN_LEN and data[COOKIE_OFFSET:MIN_LEN] == COOKIE):
            fields, ok = decode_v4(data)
        elif self.v6 and len(data) >= 4:
            fields, ok = decode_v6(data)
        else:
            self.anomaly_once("dhcp-bad-message", f"{len(data)}-byte datagram is not a DHCP message", frame, ts_ns)
            return
        if not ok:
            self.anomaly_once("dhcp-truncated-option", "a DHCP option runs past the end of the message", frame, ts_ns)
        self.out.event(fields, frame, ts_ns)


SPEC = ProtocolSpec(
    name="dhcp",
    transports=("udp",),
    ports=(67, 68, 546, 547),
    probe=probe,
    description="DHCP/BOOTP (magic cookie at offset 236) and DHCPv6 on UDP 546/547",
    parser=DhcpParser,
    extracts="per message: msg_type, trans_id, mac, host_name, requested/offered/assigned addr, server_id, lease_time, "
             "client_id, vendor_class, param_list, domain, client_fqdn; DHCPv6: client/server DUID, FQDN, IA_NA addrs",
)
