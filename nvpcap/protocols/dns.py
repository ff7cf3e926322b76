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

import ipaddress
import socket
import struct
from typing import NamedTuple

from nvpcap.protocols.base import FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict
from nvpcap.protocols.framing import Framer

HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
QUESTION_FIXED = struct.Struct("!HH")  # qtype, qclass
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
    end = len(msg)
    while True:
        if off >= end:
            return SHORT
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:  # compression pointer: must point backwards, inside the message
            if off + 1 >= end:
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
    size = len(msg)
    if size < 12:
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
        if off + 4 > size:
            return None if whole else SHORT
        qtype, qclass = QUESTION_FIXED.unpack_from(msg, off)
        if qtype == 0 or (qclass & 0x7FFF) not in CLASSES:
            return None
        off += 4
    question = msg[12:off].lower()
    for _ in range(an + ns + ar):  # records: only as far as the bytes go (big answers are cut by the buffer)
        off = _skip_name(msg, off)
        if off == -1:
            return None
        if off < 0 or off + 10 > size:
            break
        rtype, _, _, rdlen = RR_FIXED.unpack_from(msg, off)
        if rtype == 0:
            return None
        off += 10 + rdlen
    else:
        if whole and off != size and not response:
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
    except Exception:  # noqa: BLE001 - never raise on capture bytes
        return NO


# ---- parsing: messages (RFC 1035 §4.1), compressed names (§4.1.4), NeuVector's DNS threats (dpi_dns.c) ----

TYPE_NAMES = {  # IANA "DNS Parameters" registry, Resource Record (RR) TYPEs
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
    17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR", 36: "KX",
    37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC",
    48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 59: "CDS",
    60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS", 99: "SPF", 108: "EUI48",
    109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB", 254: "MAILA", 255: "ANY",
    256: "URI", 257: "CAA",
}
CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}  # RFC 1035 §3.2.4, RFC 2136 §1.3
OPCODE_NAMES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE", 6: "DSO"}  # RFC 1035, 1996, 2136, 8490
RCODE_NAMES = {  # RFC 1035 §4.1.1, RFC 2136 §2.2, RFC 6891 §9 (16: BADVERS, needs the OPT record's upper bits)
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
    7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 11: "DSOTYPENI", 16: "BADVERS", 23: "BADCOOKIE",
}
T_A, T_NS, T_CNAME, T_SOA, T_NULL, T_PTR, T_MX, T_TXT, T_AAAA, T_SRV, T_OPT = 1, 2, 5, 6, 10, 12, 15, 16, 28, 33, 41
T_IXFR, T_AXFR = 251, 252
NAME_RDATA = frozenset((T_NS, T_CNAME, T_PTR))
MX_FIXED, SRV_FIXED, SOA_FIXED = struct.Struct("!H"), struct.Struct("!HHH"), struct.Struct("!IIIII")

MAX_POINTERS = 63  # NeuVector: more compression pointers than this in one name is DNS.Loop.Pointer (2007)
MAX_ANSWERS = 100  # answer records kept per event
MAX_TEXT = 1024  # characters of TXT rdata kept
MAX_PENDING = 1000  # queries waiting for their response, per flow
TCP_MAX_MESSAGE = 65535  # RFC 1035 §4.2.2: 2-byte length
NV_OPCODES = frozenset((0, 1, 2, 4, 5))
OVERFLOW_SIZE, OVERFLOW_LEFT = 2048, 1024  # NeuVector DNS.Stack.Overflow (2017): message size, bytes left unparsed
MDNS_PORT = 5353
QUESTION_THREATS = {T_AXFR: (2019, "DNS zone transfer AXFR"), T_IXFR: (2019, "DNS zone transfer IXFR"),
                    T_NULL: (2021, "DNS NULL type")}
PLAIN = bytes(c for c in range(0x21, 0x7F) if c not in b".\\")  # label bytes shown as they are
TEXT_PLAIN = bytes(c for c in range(0x20, 0x7F) if c != 0x5C)


class BadMessage(Exception):
    """The message does not parse; `reason` is the anomaly name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _escape(raw: bytes, plain: bytes = PLAIN) -> str:
    """Presentation form of label or text bytes: other bytes as \\DDD (RFC 1035 §5.1, RFC 4343 §2.1)."""
    if not raw.translate(None, plain):
        return raw.decode("ascii")
    return "".join(chr(c) if c in plain else f"\\{c:03d}" for c in raw)


def read_name(msg: bytes, off: int, text: bool = True, known: dict | None = None) -> tuple[str, int, int]:
    """(name, offset after it in place, pointers followed). Any pointer inside the message is followed, as
    NeuVector does; more than MAX_POINTERS, or more than 255 bytes of name (RFC 1035 §3.1), stops it.
    `known`: the names of this message already read, by offset (name, pointers); a name that is just a pointer
    to one of them (an answer's owner name pointing at the question) is not read again, and names read are
    added to it."""
    n = len(msg)
    if known is not None and off + 1 < n and msg[off] >= 0xC0:
        hit = known.get(((msg[off] & 0x3F) << 8) | msg[off + 1])
        if hit is not None and hit[1] < MAX_POINTERS:  # what reading on from the pointer would give
            return hit[0] if text else ".", off + 2, hit[1] + 1
    start = off
    labels: list[bytes] = []  # raw; escaped (rarely needed) once the name is complete
    end = -1
    pointers = 0
    size = 1  # the root label
    while True:
        if off >= n:
            raise BadMessage("dns-truncated")
        b = msg[off]
        if b == 0:
            break
        if b < 0x40:
            size += b + 1
            if size > MAX_NAME:
                raise BadMessage("dns-name-too-long")
            if text:  # (a label cut by the end of the message: the next round raises dns-truncated)
                labels.append(msg[off + 1 : off + 1 + b])
            off += 1 + b
        elif b >= 0xC0:
            if off + 1 >= n:
                raise BadMessage("dns-truncated")
            if end < 0:
                end = off + 2
            pointers += 1
            if pointers > MAX_POINTERS:
                raise BadMessage("dns-pointer-loop")
            target = ((b & 0x3F) << 8) | msg[off + 1]
            if target >= n:
                raise BadMessage("dns-bad-pointer")
            off = target
        else:
            raise BadMessage("dns-bad-label")  # 01 (RFC 6891 §5: deprecated extended labels) and 10
    if not labels:
        name = "."
    else:  # the common case: one join, one check (only the joining dots are not PLAIN) and one decode
        raw = b".".join(labels)
        if len(raw.translate(None, PLAIN)) == len(labels) - 1:
            name = raw.decode("ascii")
        else:  # some byte needs escaping: label by label
            name = ".".join([_escape(label) for label in labels])
    if known is not None and text:
        known[start] = (name, pointers)
    return name, (end if end >= 0 else off + 1), pointers


def _type(t: int) -> str | int:
    return TYPE_NAMES.get(t, t)


def ipv6_text(raw: bytes) -> str:
    """RFC 5952 text of a 16-byte address, as ipaddress.IPv6Address gives it. inet_ntop writes the same (longest
    run of zero groups, the first on a tie, never a lone one) ten times faster, except that it shows the last 32
    bits of ::ffff:0:0/96 and ::/96 dotted: those (rare) go through ipaddress."""
    text = socket.inet_ntop(socket.AF_INET6, raw)
    return text if "." not in text else str(ipaddress.IPv6Address(raw))


def _rdata(msg: bytes, rtype: int, start: int, length: int, known: dict | None = None) -> str | None:
    """Presentation form of the rdata of the types an event shows; None for the others. `known`: see read_name."""
    rd = msg[start : start + length]
    if rtype == T_A:
        return ".".join(map(str, rd)) if length == 4 else None
    if rtype == T_AAAA:
        return ipv6_text(rd) if length == 16 else None
    if rtype in NAME_RDATA:
        return read_name(msg, start, True, known)[0]
    if rtype == T_MX and length >= 3:
        return f"{MX_FIXED.unpack_from(rd)[0]} {read_name(msg, start + 2, True, known)[0]}"
    if rtype == T_SRV and length >= 7:
        prio, weight, port = SRV_FIXED.unpack_from(rd)
        return f"{prio} {weight} {port} {read_name(msg, start + 6, True, known)[0]}"
    if rtype == T_SOA:
        mname, off, _ = read_name(msg, start, True, known)
        rname, off, _ = read_name(msg, off, True, known)
        if off + SOA_FIXED.size > start + length:
            raise BadMessage("dns-truncated")
        return " ".join([mname, rname, *map(str, SOA_FIXED.unpack_from(msg, off))])
    if rtype == T_TXT:  # character-strings joined, as SPF/DKIM read them (RFC 7208 §3.3)
        parts, off = [], 0
        while off < length:
            parts.append(rd[off + 1 : off + 1 + rd[off]])
            off += 1 + rd[off]
        return _escape(b"".join(parts), TEXT_PLAIN)[:MAX_TEXT]
    return None


class DnsMessage:
    """One decoded DNS message: header, questions, the first answer records; `error` when it did not parse
    to the end of its sections, `end` how far it did (NeuVector's `shift`)."""

    __slots__ = ("ancount", "answers", "end", "error", "flags", "id", "loop", "opcode", "qdcount", "questions",
                 "rcode", "response", "size")

    def __init__(self, msg: bytes, mdns: bool = False) -> None:
        self.size = len(msg)
        self.questions: list[tuple[str, int, int]] = []
        self.answers: list[dict] | tuple[()] = ()  # a list once an answer record is kept (queries have none)
        self.error: str | None = None
        self.end = 0
        self.loop = False  # a name with more than MAX_POINTERS pointers (in a section or in rdata)
        if len(msg) < HEADER.size:
            self.id = self.flags = self.opcode = self.rcode = self.qdcount = self.ancount = 0
            self.response = False
            self.error = "dns-truncated"
            return
        self.id, flags, self.qdcount, self.ancount, ns, ar = HEADER.unpack_from(msg)
        self.flags = flags
        self.response = flags >= 0x8000  # QR, the top bit
        self.opcode, self.rcode = (flags >> 11) & 0xF, flags & 0xF
        try:
            self._sections(msg, ns, ar, mdns)
        except BadMessage as exc:
            self.error = exc.reason
            self.loop = self.loop or exc.reason == "dns-pointer-loop"
        except (struct.error, IndexError, ValueError):
            self.error = "dns-truncated"

    def _sections(self, msg: bytes, ns: int, ar: int, mdns: bool) -> None:
        n = len(msg)
        known: dict[int, tuple[str, int]] = {}  # names read so far, by offset (see read_name)
        off = HEADER.size
        for _ in range(self.qdcount):
            name, off, _ = read_name(msg, off, True, known)
            if off + 4 > n:
                raise BadMessage("dns-truncated")
            qtype, qclass = QUESTION_FIXED.unpack_from(msg, off)
            off += 4
            self.questions.append((name, qtype, qclass & 0x7FFF if mdns else qclass))  # RFC 6762 §5.4: QU bit
            self.end = off
        ancount = self.ancount
        answers = self.answers
        for i in range(ancount + ns + ar):
            shown = i < ancount and len(answers) < MAX_ANSWERS
            # the owner name is most often a pointer to a name already read (the question): read_name's
            # shortcut, without the call
            hit = known.get(((msg[off] & 0x3F) << 8) | msg[off + 1]) if off + 1 < n and msg[off] >= 0xC0 else None
            if hit is not None and hit[1] < MAX_POINTERS:
                name, off = hit[0], off + 2
            else:
                name, off, _ = read_name(msg, off, shown, known)
            if off + 10 > n:  # RR_FIXED.size
                raise BadMessage("dns-truncated")
            rtype, _, ttl, rdlen = RR_FIXED.unpack_from(msg, off)
            off += 10
            if off + rdlen > n:
                raise BadMessage("dns-truncated")
            if shown:
                if rtype == T_A and rdlen == 4:  # the common answer, without the _rdata calls
                    rdata: str | None = f"{msg[off]}.{msg[off + 1]}.{msg[off + 2]}.{msg[off + 3]}"
                else:
                    rdata = self._rdata(msg, rtype, off, rdlen, known)
                if not answers:
                    answers = self.answers = []
                answers.append({"rrname": name, "rrtype": TYPE_NAMES.get(rtype, rtype), "ttl": ttl, "rdata": rdata})
            elif rtype == T_OPT and i >= ancount + ns:  # RFC 6891 §6.1.3: upper 8 bits of the RCODE
                self.rcode |= (ttl >> 24) << 4
            off += rdlen
            self.end = off

    def _rdata(self, msg: bytes, rtype: int, start: int, length: int, known: dict | None = None) -> str | None:
        """A record's rdata; a bad name inside it leaves the rdata out but not the message (as dpi_dns.c)."""
        try:
            return _rdata(msg, rtype, start, length, known)
        except BadMessage as exc:
            self.loop = self.loop or exc.reason == "dns-pointer-loop"
            return None

    def neuvector_fails(self) -> bool:
        """dpi_dns.c's dns_parser() would return -1: a section does not parse, or header rules."""
        if self.error is not None or self.opcode not in NV_OPCODES:
            return True
        return not self.response and (self.qdcount == 0 or self.ancount != 0) and self.opcode not in NOTIFY_UPDATE

    def key(self) -> tuple | None:
        """What pairs a response with its query besides the id: the first question, case-insensitive."""
        if not self.questions:
            return None
        name, qtype, qclass = self.questions[0]
        return name.lower(), qtype, qclass


class _Txn:
    """A query waiting for its response (or a transfer still receiving messages)."""

    __slots__ = ("answer_count", "answers", "frame", "query", "response", "rframe", "rts_ns", "ts_ns")

    def __init__(self, query: DnsMessage | None, frame: int, ts_ns: int) -> None:
        self.query, self.frame, self.ts_ns = query, frame, ts_ns
        self.response: DnsMessage | None = None
        self.rframe = self.rts_ns = 0
        self.answers: list[dict] | None = None  # made by the first response (a query waiting has none)
        self.answer_count = 0

    def answer(self, response: DnsMessage, frame: int, ts_ns: int) -> None:
        if self.response is None:
            self.response, self.rframe, self.rts_ns = response, frame, ts_ns
        elif response.rcode:
            self.response = response  # a transfer that fails part way: its error code is the outcome
        if self.answers is None:
            self.answers = list(response.answers[:MAX_ANSWERS])
        else:
            self.answers.extend(response.answers[: MAX_ANSWERS - len(self.answers)])
        self.answer_count += response.ancount

    def fields(self) -> dict:
        q, r = self.query, self.response
        first = q if q is not None else r
        questions = (q.questions if q is not None else []) or (r.questions if r is not None else [])
        name, qtype, qclass = questions[0] if questions else (None, None, None)
        flags = (r if r is not None else first).flags
        return {
            "type": "transaction" if q is not None and r is not None else "query" if q is not None else "response",
            "id": first.id,
            "rrname": name,
            "rrtype": None if qtype is None else TYPE_NAMES.get(qtype, qtype),
            "rclass": None if qclass is None else CLASS_NAMES.get(qclass, qclass),
            "opcode": OPCODE_NAMES.get(first.opcode, first.opcode),
            "rcode": None if r is None else RCODE_NAMES.get(r.rcode, r.rcode),
            "aa": bool(flags & 0x0400), "tc": bool(flags & 0x0200), "rd": bool(flags & 0x0100),
            "ra": bool(flags & 0x0080),
            "answers": self.answers if self.answers is not None else [],
            "answer_count": None if r is None else self.answer_count,
            "response_frame": self.rframe if r is not None else None,
            "rtt": round((self.rts_ns - self.ts_ns) / 1e9, 6) if q is not None and r is not None else None,
        }


def _tcp_length(head: bytes) -> int | None:
    """RFC 1035 §4.2.2: a 2-byte length before each message (one shorter than the header: framing lost)."""
    n = int.from_bytes(head, "big")
    return 2 + n if n >= HEADER.size else None


class DnsParser(Parser):
    """One event per query with its response, matched by id and first question within the flow (the latest
    such query: an earlier retransmission stays unanswered); queries never answered are reported at the end,
    responses without a query when they come. On TCP, the messages of a
    zone transfer (AXFR/IXFR) that answer one query make one event. NeuVector threats: 2019/2021 on the
    question types (each query, or a response whose query was not seen), 2007 pointer loops, 2017 overflow."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.tcp = ctx.transport == "tcp"
        self.mdns = MDNS_PORT in (ctx.server_port, ctx.client_port)
        # TCP only (UDP: one message per datagram)
        self.framers = tuple(Framer(2, _tcp_length, limit=2 + TCP_MAX_MESSAGE) for _ in range(2)) if self.tcp else ()
        self.pending: dict[int, list[_Txn]] = {}
        self.waiting = 0
        self.transfer: _Txn | None = None  # an AXFR/IXFR answered over TCP, open for its next messages

    # -- framing --

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if not self.tcp:
            self._message(side, data, frame, ts_ns)
            return
        if self.lost[side]:
            return
        framer = self.framers[side]
        for msg in framer.push(data, frame, ts_ns):  # whole messages (at most 65537 bytes held)
            self._message(side, msg.data[2:], msg.frame, msg.ts_ns)
        if framer.broken:
            self.anomaly_once("dns-bad-length", "TCP DNS message length below the 12-byte header", frame, ts_ns)
            self.lose(side)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        """Lost bytes: the length prefixes of that side cannot be found again."""
        if self.framers:
            self.framers[side].stop()
        self.lose(side)

    # -- messages --

    def _message(self, side: int, msg: bytes, frame: int, ts_ns: int) -> None:
        m = DnsMessage(msg, self.mdns)
        if m.loop:
            self.out.threat(2007, f"DNS pointer loop: more than {MAX_POINTERS} compression pointers in a name",
                            side, frame, ts_ns)
        if m.error is not None and m.error != "dns-pointer-loop":
            self.anomaly_once(m.error, f"DNS message (id {m.id}) does not parse: {m.error}", frame, ts_ns)
        if self.ctx.server_port == 53 and m.size > OVERFLOW_SIZE and (
                m.neuvector_fails() or m.size - m.end > OVERFLOW_LEFT):
            self.out.threat(2017, f"DNS overflow: message={m.size} parsed={m.end}", side, frame, ts_ns)
        if m.size < HEADER.size:
            return
        if m.response:
            self._response(side, m, frame, ts_ns)
        else:
            self._query(side, m, frame, ts_ns)

    def _question_threats(self, m: DnsMessage, side: int, frame: int, ts_ns: int) -> None:
        for _, qtype, _ in m.questions:
            threat = QUESTION_THREATS.get(qtype)
            if threat is not None:
                self.out.threat(threat[0], threat[1], side, frame, ts_ns)

    def _query(self, side: int, m: DnsMessage, frame: int, ts_ns: int) -> None:
        if self.transfer is not None:
            self._close_transfer()
        self._question_threats(m, side, frame, ts_ns)
        if self.out.scans("dns.query"):  # (the bundled packs read no query names: none encoded for nothing)
            for name, _, _ in m.questions:  # Suricata's dns.query buffer, for the rules
                self.out.content("dns.query", side, name.encode("utf-8", "replace"), frame, ts_ns)
        self.pending.setdefault(m.id, []).append(_Txn(m, frame, ts_ns))
        self.waiting += 1
        if self.waiting > MAX_PENDING:  # the oldest query goes out unanswered
            self._emit(self._pop(next(iter(self.pending)), 0))

    def _response(self, side: int, m: DnsMessage, frame: int, ts_ns: int) -> None:
        t = self.transfer
        if t is not None and m.id == t.query.id and (not m.questions or m.key() == t.query.key()):
            t.answer(m, frame, ts_ns)  # the next message of a zone transfer
            return
        if t is not None:
            self._close_transfer()
        key = m.key()
        waiting = self.pending.get(m.id, ())
        # the latest matching query: a retransmitted query is the one answered (as Wireshark pairs them)
        i = len(waiting) - 1
        while i >= 0 and key is not None and waiting[i].query.key() != key:
            i -= 1
        if i < 0:
            self._question_threats(m, side, frame, ts_ns)
            t = _Txn(None, frame, ts_ns)
            t.answer(m, frame, ts_ns)
            self._emit(t)
            return
        t = self._pop(m.id, i)
        t.answer(m, frame, ts_ns)
        if self.tcp and t.query.questions and t.query.questions[0][1] in (T_AXFR, T_IXFR) and not m.rcode:
            self.transfer = t
        else:
            self._emit(t)

    def _pop(self, ident: int, i: int) -> _Txn:
        waiting = self.pending[ident]
        t = waiting.pop(i)
        if not waiting:
            del self.pending[ident]
        self.waiting -= 1
        if not self.waiting:
            self.pending = {}  # an emptied dict keeps its table; a new one has none (the flow may live on)
        return t

    def _close_transfer(self) -> None:
        if self.transfer is not None:
            t, self.transfer = self.transfer, None
            self._emit(t)

    def _emit(self, t: _Txn) -> None:
        self.out.event(t.fields(), t.frame, t.ts_ns)

    def finish(self) -> None:
        self._close_transfer()
        left = sorted((t for ts in self.pending.values() for t in ts), key=lambda t: t.frame)
        self.pending.clear()
        self.waiting = 0
        for t in left:
            self._emit(t)


SPEC = ProtocolSpec(
    name="dns",
    transports=("udp", "tcp"),
    ports=PORTS,
    probe=probe,
    description="DNS (also mDNS/LLMNR): header sanity, question section, response matching the query",
    parser=DnsParser,
    extracts="per query/response: id, rrname, rrtype, rclass, opcode, rcode, aa/tc/rd/ra, answers (rrname, rrtype, "
             "ttl, rdata; <= 100), answer_count, response_frame, rtt; threats 2007, 2017, 2019, 2021",
)
