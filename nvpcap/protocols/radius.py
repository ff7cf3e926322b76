"""RADIUS: `code(1) identifier(1) length(2) authenticator(16)` then attributes `type(1) length(1) value`
(RFC 2865 §3, §5; accounting RFC 2866; Status-Server RFC 5997; Dynamic Authorization RFC 5176).

Not in NeuVector. Here: a known code, the length field equal to the datagram length (20..4096), and the
attributes filling it exactly; a request answered by a matching code with the same identifier proves it on any
port. A request alone is accepted on the last call when it is on a RADIUS port or carries several attributes.
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict

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


# ---- parsing: requests paired with their answers by identifier (RFC 2865 §3), attributes of §5 ----

CODE_NAMES = {  # RFC 2865 §3, RFC 2866 §3, RFC 5997, RFC 5176 §3
    1: "Access-Request", 2: "Access-Accept", 3: "Access-Reject", 4: "Accounting-Request",
    5: "Accounting-Response", 11: "Access-Challenge", 12: "Status-Server", 13: "Status-Client",
    40: "Disconnect-Request", 41: "Disconnect-ACK", 42: "Disconnect-NAK", 43: "CoA-Request", 44: "CoA-ACK",
    45: "CoA-NAK",
}
A_USER_NAME, A_NAS_IP, A_FRAMED_IP, A_REPLY_MESSAGE, A_CALLING_STATION, A_NAS_IDENTIFIER = 1, 4, 8, 18, 31, 32
A_ACCT_STATUS, A_TUNNEL_CLIENT, A_CONNECT_INFO = 40, 66, 77
# never read: 2 User-Password, 3 CHAP-Password, 69 Tunnel-Password (secrets, even when obfuscated)
ACCT_STATUS = {1: "Start", 2: "Stop", 3: "Interim-Update", 7: "Accounting-On", 8: "Accounting-Off"}  # RFC 2866 §5.1
MAX_TEXT = 253  # an attribute value is at most 253 bytes
MAX_PENDING = 256  # the identifier is one byte: at most 256 requests can be outstanding
HEX = frozenset(b"0123456789abcdefABCDEF")


def attributes(msg: bytes, length: int) -> tuple[dict[int, bytes], bool]:
    """The first value of each attribute type, and whether the attributes fill the packet exactly."""
    attrs: dict[int, bytes] = {}
    off = MIN_LEN
    while off + 2 <= length:
        atype, alen = msg[off], msg[off + 1]
        if alen < 2 or off + alen > length:
            return attrs, False
        attrs.setdefault(atype, msg[off + 2 : off + alen])
        off += alen
    return attrs, off == length


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", "replace")[:MAX_TEXT]


def _ip4(raw: bytes | None) -> str | None:
    return ".".join(map(str, raw)) if raw is not None and len(raw) == 4 else None


def mac(raw: bytes | None) -> str | None:
    """Calling-Station-Id as Zeek logs it: a MAC address normalised to aa:bb:cc:dd:ee:ff when it is one
    (RFC 3580 §3.21 writes it "00-14-22-E9-54-5E"), else the text."""
    if raw is None:
        return None
    digits = bytes(c for c in raw if c in HEX)
    if len(digits) == 12 and len(raw) - len(digits) in (0, 2, 5):
        d = digits.decode().lower()
        return ":".join(d[i : i + 2] for i in range(0, 12, 2))
    return _text(raw)


class _Packet:
    __slots__ = ("code", "ident", "attrs", "frame", "ts_ns", "raw")

    def __init__(self, code: int, ident: int, attrs: dict[int, bytes], frame: int, ts_ns: int, raw: bytes):
        self.code, self.ident, self.attrs, self.frame, self.ts_ns, self.raw = code, ident, attrs, frame, ts_ns, raw


def fields(req: _Packet | None, ans: _Packet | None) -> dict:
    """The event of a request and its answer (either may be missing; never both)."""
    first = req if req is not None else ans
    both = ans.attrs | req.attrs if req is not None and ans is not None else first.attrs
    answer = ans.attrs if ans is not None else {}
    status = both.get(A_ACCT_STATUS)
    return {
        "code": CODE_NAMES.get(first.code, first.code),
        "identifier": first.ident,
        "user_name": _text(both.get(A_USER_NAME)),
        "nas_ip": _ip4(both.get(A_NAS_IP)),
        "nas_identifier": _text(both.get(A_NAS_IDENTIFIER)),
        "mac": mac(both.get(A_CALLING_STATION)),
        "framed_addr": _ip4(answer.get(A_FRAMED_IP) or both.get(A_FRAMED_IP)),
        "tunnel_client": _text(both.get(A_TUNNEL_CLIENT)),
        "connect_info": _text(both.get(A_CONNECT_INFO)),
        "acct_status_type": ACCT_STATUS.get(int.from_bytes(status, "big"), int.from_bytes(status, "big"))
        if status is not None and len(status) == 4 else None,
        "reply_msg": _text(answer.get(A_REPLY_MESSAGE)),
        "result": None if ans is None else CODE_NAMES.get(ans.code, ans.code),
        "rtt": round((ans.ts_ns - req.ts_ns) / 1e9, 6) if req is not None and ans is not None else None,
    }


class RadiusParser(Parser):
    """One event per request with its answer (same identifier, an answer code that fits the request), as
    Zeek's radius.log: user name, NAS, calling station (mac), framed address, reply message, result (the
    answer's code name: Access-Accept, Access-Reject, Access-Challenge, ...). Passwords are never read.
    Requests never answered are reported at the end; answers without a request when they come."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.pending: dict[int, _Packet] = {}

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if len(data) < MIN_LEN:
            self.anomaly_once("radius-truncated", f"{len(data)}-byte RADIUS datagram", frame, ts_ns)
            return
        code, ident, length, _ = HEADER.unpack_from(data)
        if length > len(data) or length < MIN_LEN:  # RFC 2865 §3: shorter than Length: silently discarded
            self.anomaly_once("radius-bad-length", f"Length {length} in a {len(data)}-byte datagram", frame, ts_ns)
            return
        attrs, ok = attributes(data, length)
        if not ok:
            self.anomaly_once("radius-bad-attribute", "attributes do not fill the packet", frame, ts_ns)
        pkt = _Packet(code, ident, attrs, frame, ts_ns, data[:length])
        if code in ANSWERS:
            self._request(pkt)
            return
        req = self.pending.get(ident)
        if req is not None and code in ANSWERS[req.code]:
            del self.pending[ident]
            self.out.event(fields(req, pkt), req.frame, req.ts_ns)
        else:
            self.out.event(fields(None, pkt), frame, ts_ns)

    def _request(self, pkt: _Packet) -> None:
        old = self.pending.get(pkt.ident)
        if old is not None:
            if old.raw == pkt.raw:
                return  # retransmitted: the same request (RFC 2865 §2.5: same identifier and authenticator)
            self.out.event(fields(old, None), old.frame, old.ts_ns)
        self.pending[pkt.ident] = pkt

    def finish(self) -> None:
        for req in sorted(self.pending.values(), key=lambda p: p.frame):
            self.out.event(fields(req, None), req.frame, req.ts_ns)
        self.pending.clear()


SPEC = ProtocolSpec(
    name="radius",
    transports=("udp",),
    ports=PORTS,
    probe=probe,
    description="RADIUS: known code, length = datagram, attributes fill it; answer code/identifier match",
    parser=RadiusParser,
    extracts="per request/answer: code, identifier, user_name, nas ip/identifier, mac (calling station), framed "
             "address, connect info, accounting status, reply message, result (answer code), rtt; never passwords",
)
