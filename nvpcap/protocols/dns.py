"""DNS: 12-byte header, question section, resource records (RFC 1035 §4.1); over TCP each message carries a
2-byte length prefix (RFC 1035 §4.2.2, RFC 7766). mDNS (RFC 6762, port 5353) and LLMNR (RFC 4795, port 5355)
share the format.

NeuVector (dpi_dns.c): port 53 required; opcode 0/1/2/4/5; a query needs qdcount > 0 and ancount = 0 (except
NOTIFY/UPDATE); all sections must parse (at most 63 compression pointers); TCP length 12..4096. Here the same
header rules (answers allowed in queries, for mDNS); compression pointers must point backwards; a query datagram
must end with its last record. A query answered by a response with the same id, opcode and question proves DNS
on any port (mid-stream TCP too: the match shows the framing is aligned); one message alone (query without
answer, or an mDNS announcement) is accepted on the last call, and only on a DNS port, because a lone 12-byte
header and a name are too easy to match by chance on UDP.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
OPCODES = frozenset((0, 1, 2, 4, 5))  # QUERY, IQUERY, STATUS, NOTIFY (RFC 1996), UPDATE (RFC 2136)
NOTIFY_UPDATE = frozenset((4, 5))
CLASSES = frozenset((1, 3, 4, 254, 255))  # IN, CH, HS, NONE, ANY (mDNS: top bit = unicast-response / cache-flush)
MAX_QUESTIONS = 16
MAX_RRS = 4096
MAX_NAME = 255
PORTS = (53, 5353, 5355)
TCP_MIN, TCP_MAX = 12, 65535

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO
SHORT = -2  # the message is cut before the end of its question section


class Message(NamedTuple):
    id: int
    response: bool
    opcode: int
    qdcount: int
    ancount: int
    question: bytes  # the raw question section, lower-cased


def _skip_name(msg: bytes, off: int) -> int:
    """Offset after the (possibly compressed) name at off; -1 if malformed, SHORT if cut."""
    total = 0
    while True:
        if off >= len(msg):
            return SHORT
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:  # compression pointer: must point backwards, inside the message
            if off + 1 >= len(msg):
                return SHORT
            ptr = ((n & 0x3F) << 8) | msg[off + 1]
            return off + 2 if 12 <= ptr < off else -1
        if n & 0xC0:
            return -1  # 01/10 label types are not in use
        total += n + 1
        if total > MAX_NAME:
            return -1
        off += n + 1


def parse(msg: bytes, whole: bool) -> Message | int | None:
    """Header sanity and question section (plus the records, as far as the bytes go). None when not DNS, SHORT
    when more bytes are needed (only if not whole: a UDP datagram is a whole message)."""
    if len(msg) < 12:
        return None if whole else SHORT
    ident, flags, qd, an, ns, ar = HEADER.unpack_from(msg)
    response, opcode, rcode = bool(flags & 0x8000), (flags >> 11) & 0xF, flags & 0xF
    if opcode not in OPCODES or qd > MAX_QUESTIONS or an + ns + ar > MAX_RRS:
        return None
    if not response:  # NeuVector also wants ancount = 0, but mDNS known-answer queries carry answers (RFC 6762 §7.1)
        if rcode or qd == 0 or (opcode in NOTIFY_UPDATE and qd != 1):
            return None
    elif qd == 0 and an + ns + ar == 0:
        return None
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off)
        if off < 0:
            return None if off == -1 or whole else SHORT
        if off + 4 > len(msg):
            return None if whole else SHORT
        qtype, qclass = struct.unpack_from("!HH", msg, off)
        if qtype == 0 or (qclass & 0x7FFF) not in CLASSES:
            return None
        off += 4
    question = msg[12:off].lower()
    for _ in range(an + ns + ar):  # records: only as far as the bytes go (big answers are cut by the buffer)
        off = _skip_name(msg, off)
        if off == -1:
            return None
        if off < 0 or off + 10 > len(msg):
            break
        rtype, rclass, _, rdlen = RR_FIXED.unpack_from(msg, off)
        if rtype == 0:
            return None
        off += 10 + rdlen
    else:
        if whole and off != len(msg) and not response:
            return None  # a query datagram must end with its last record
    return Message(ident, response, opcode, qd, an, question)


def _message(buf: bytes, ctx: FlowContext) -> Message | int | None:
    if ctx.transport == "udp":
        return parse(buf, whole=True)
    if len(buf) < 2:
        return SHORT
    length = int.from_bytes(buf[:2], "big")
    if not TCP_MIN <= length <= TCP_MAX:
        return None
    msg = buf[2 : 2 + length]
    return parse(msg, whole=len(msg) == length)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        q = _message(client, ctx) if client else SHORT
        r = _message(server, ctx) if server else SHORT
        if q is None or r is None:
            return NO
        on_port = ctx.server_port in PORTS or ctx.client_port in PORTS
        if isinstance(q, Message) and isinstance(r, Message):
            answered = not q.response and r.response and q.id == r.id and q.opcode == r.opcode
            if answered and (r.qdcount == 0 or r.question == q.question):
                return YES
            return YES if on_port else NO  # two DNS messages, not query and answer (mDNS peers, spoofed answers)
        if ctx.midstream and ctx.transport == "tcp":
            return NO if ctx.final else MAYBE  # mid-stream TCP: only a matching pair shows the framing is aligned
        if not ctx.final:
            return MAYBE
        lone = q if isinstance(q, Message) else r if isinstance(r, Message) else None
        return YES if lone is not None and on_port else NO
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="dns",
    transports=("udp", "tcp"),
    ports=PORTS,
    probe=probe,
    description="DNS (also mDNS/LLMNR): header sanity, question section, response matching the query",
)
