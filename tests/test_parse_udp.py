"""Parsers of the UDP-born protocols (and their TCP forms): DNS (UDP and TCP), DHCP/DHCPv6, NTP, TFTP, RADIUS,
Syslog (UDP and TCP), Echo. Expected values come from bytes built here by hand per the RFCs, or from tshark's
decoding of the real captures (commands quoted next to the values)."""
from __future__ import annotations

import random
import socket
import struct
import subprocess
import time
from pathlib import Path

import dpkt
import pcapgen as g
import pytest
from conftest import SHARED, run
from parsertest import Recorder, drive

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.dhcp import DhcpParser
from nvpcap.protocols.dns import DnsParser, read_name
from nvpcap.protocols.echo import EchoParser
from nvpcap.protocols.ntp import NtpParser
from nvpcap.protocols.radius import RadiusParser
from nvpcap.protocols.syslog import SyslogParser
from nvpcap.protocols.tftp import TftpParser

PARSERS = (DnsParser, DhcpParser, NtpParser, TftpParser, RadiusParser, SyslogParser, EchoParser)


# ---------------------------------------------------------------- helpers

def udp_payloads(path: Path, limit: int = 200) -> list[tuple[int, int, bytes]]:
    """(sport, dport, payload) of the unfragmented UDP datagrams of a capture (dpkt, independent of nvpcap)."""
    out = []
    with open(path, "rb") as fh:
        reader = dpkt.pcapng.Reader(fh) if path.suffix == ".pcapng" else dpkt.pcap.Reader(fh)
        for _, buf in reader:
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.udp.UDP):
                out.append((ip.data.sport, ip.data.dport, bytes(ip.data.data)))
            if len(out) >= limit:
                break
    return out


def udp_frame(src: str, sport: int, dst: str, dport: int, data: bytes) -> bytes:
    """An Ethernet/IPv4/UDP frame. (pcapgen.udp leaves the UDP length at 8, so its payload reads as empty.)"""
    seg = dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(data), data=data)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_UDP, ttl=64, data=seg)
    return g.eth(ip)


def tshark_rows(tshark: str, path: Path, *fields: str, display: str | None = None) -> list[list[str]]:
    cmd = [tshark, "-r", str(path), "-T", "fields", "-E", "separator=|"]
    if display:
        cmd += ["-Y", display]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def mutations(samples: list[bytes], rnd: random.Random, count: int) -> list[bytes]:
    """Hostile variants of real messages: truncated, bytes flipped, bytes inserted, random tails."""
    out = []
    for _ in range(count):
        s = bytearray(rnd.choice(samples))
        op = rnd.randrange(4)
        if op == 0 and s:
            del s[rnd.randrange(len(s)):]
        elif op == 1:
            for _ in range(rnd.randint(1, 8)):
                if s:
                    s[rnd.randrange(len(s))] = rnd.randrange(256)
        elif op == 2:
            pos = rnd.randrange(len(s) + 1)
            s[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 40)))
        else:
            s += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 300)))
        out.append(bytes(s))
    return out


# ---------------------------------------------------------------- DNS (RFC 1035)

def wire(name: str) -> bytes:
    """A name in wire format, uncompressed (RFC 1035 §3.1)."""
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def dns(ident: int, flags: int, questions: list[bytes] = (), answers: list[bytes] = (), ns: list[bytes] = (),
        ar: list[bytes] = ()) -> bytes:
    """A message: header (§4.1.1) then the sections, already encoded."""
    head = struct.pack("!HHHHHH", ident, flags, len(questions), len(answers), len(ns), len(ar))
    return head + b"".join(questions) + b"".join(answers) + b"".join(ns) + b"".join(ar)


def question(name: bytes, qtype: int, qclass: int = 1) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


def rr(name: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    return name + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


QUERY_RD = 0x0100  # QR=0, opcode 0, RD
RESPONSE = 0x8180  # QR=1, RD, RA, NOERROR
PTR_Q = b"\xc0\x0c"  # a pointer to the question name at offset 12 (§4.1.4)


def test_dns_query_and_answer_with_compression_from_spec_bytes():
    q = dns(0x1234, QUERY_RD, [question(wire("www.example.com"), 1)])
    # answer records all point back at the question name (offset 12) or inside it: "example.com" is at 16
    answers = [
        rr(PTR_Q, 5, 300, wire("cdn.example.net")),  # CNAME
        rr(PTR_Q, 1, 60, bytes([93, 184, 216, 34])),  # A
        rr(PTR_Q, 28, 60, socket.inet_pton(socket.AF_INET6, "2606:2800:220:1::248")),  # AAAA
        rr(b"\xc0\x10", 15, 3600, struct.pack("!H", 10) + b"\x04mail\xc0\x10"),  # MX 10 mail.example.com
        rr(b"\xc0\x10", 16, 3600, b"\x05v=spf\x08 -all x\x01"),  # TXT, two strings, one byte escaped
        rr(b"\x04_sip\x04_tcp\xc0\x10", 33, 30, struct.pack("!HHH", 1, 5, 5060) + wire("sip.example.com")),  # SRV
        rr(b"\xc0\x10", 6, 900, wire("ns1.example.com") + wire("hostmaster.example.com")
           + struct.pack("!IIIII", 2024010101, 7200, 3600, 1209600, 300)),  # SOA
        rr(b"\xc0\x10", 2, 900, b"\x03ns1\xc0\x10"),  # NS
        rr(b"\x0234\x03216\x03184\x0293\x07in-addr\x04arpa\x00", 12, 5, b"\xc0\x0c"),  # PTR -> www.example.com
        rr(PTR_Q, 99, 1, b"unknown type"),  # SPF: no rdata shown
    ]
    r = dns(0x1234, RESPONSE, [question(wire("www.example.com"), 1)], answers)
    rec = drive(DnsParser, [(CLIENT, q), (SERVER, r)], transport="udp", server_port=53)
    assert rec.anomalies == [] and rec.threats == []
    (e,) = rec.events
    assert rec.frames == [1]  # the query's frame
    assert {k: e[k] for k in ("type", "id", "rrname", "rrtype", "rclass", "opcode", "rcode", "aa", "tc", "rd",
                              "ra", "answer_count", "response_frame")} == {
        "type": "transaction", "id": 0x1234, "rrname": "www.example.com", "rrtype": "A", "rclass": "IN",
        "opcode": "QUERY", "rcode": "NOERROR", "aa": False, "tc": False, "rd": True, "ra": True,
        "answer_count": 10, "response_frame": 2}
    assert [(a["rrname"], a["rrtype"], a["ttl"], a["rdata"]) for a in e["answers"]] == [
        ("www.example.com", "CNAME", 300, "cdn.example.net"),
        ("www.example.com", "A", 60, "93.184.216.34"),
        ("www.example.com", "AAAA", 60, "2606:2800:220:1::248"),
        ("example.com", "MX", 3600, "10 mail.example.com"),
        ("example.com", "TXT", 3600, "v=spf -all x\\001"),
        ("_sip._tcp.example.com", "SRV", 30, "1 5 5060 sip.example.com"),
        ("example.com", "SOA", 900, "ns1.example.com hostmaster.example.com 2024010101 7200 3600 1209600 300"),
        ("example.com", "NS", 900, "ns1.example.com"),
        ("34.216.184.93.in-addr.arpa", "PTR", 5, "www.example.com"),
        ("www.example.com", "SPF", 1, None),
    ]


def test_dns_rcode_opcode_names_and_numbers():
    # NXDOMAIN (3), and an rcode/type with no name; EDNS: OPT extended RCODE 1 -> 16 BADVERS (RFC 6891 §6.1.3)
    q = dns(7, QUERY_RD, [question(wire("nx.example"), 65280)])
    r = dns(7, 0x8183, [question(wire("nx.example"), 65280)])
    opt = rr(b"\0", 41, 1 << 24, b"", rclass=1232)
    q2 = dns(8, QUERY_RD, [question(wire("a.example"), 1)])
    r2 = dns(8, 0x8180, [question(wire("a.example"), 1)], ar=[opt])
    rec = drive(DnsParser, [(CLIENT, q), (SERVER, r), (CLIENT, q2), (SERVER, r2)], transport="udp", server_port=53)
    assert [(e["rrtype"], e["rcode"]) for e in rec.events] == [(65280, "NXDOMAIN"), ("A", "BADVERS")]


def test_dns_over_tcp_length_prefix_any_segmentation_pipelined_out_of_order():
    q1 = dns(1, QUERY_RD, [question(wire("a.example"), 1)])
    q2 = dns(2, QUERY_RD, [question(wire("b.example"), 28)])
    r2 = dns(2, RESPONSE, [question(wire("b.example"), 28)], [rr(PTR_Q, 28, 9, bytes(15) + b"\x01")])
    r1 = dns(1, RESPONSE, [question(wire("a.example"), 1)], [rr(PTR_Q, 1, 9, bytes([10, 0, 0, 1]))])

    def framed(m: bytes) -> bytes:
        return struct.pack("!H", len(m)) + m  # RFC 1035 §4.2.2

    steps = [(CLIENT, framed(q1) + framed(q2)), (SERVER, framed(r2) + framed(r1))]
    for split in (0, 1, 2, 3, 13):
        rec = drive(DnsParser, steps, server_port=53, split=split)
        assert sorted((e["id"], e["rrname"], e["answers"][0]["rdata"]) for e in rec.events) == [
            (1, "a.example", "10.0.0.1"), (2, "b.example", "::1")]
        assert rec.anomalies == []


def test_dns_lone_query_at_finish_and_lone_response():
    q = dns(5, QUERY_RD, [question(wire("lost.example"), 1)])
    r = dns(9, RESPONSE, [question(wire("other.example"), 1)])
    rec = drive(DnsParser, [(CLIENT, q), (SERVER, r)], transport="udp", server_port=53)
    assert [(e["type"], e["id"], e["rcode"], e["response_frame"]) for e in rec.events] == [
        ("response", 9, "NOERROR", 2), ("query", 5, None, None)]  # the response when it comes, the query at the end
    assert rec.frames == [2, 1]


def test_dns_response_with_another_question_does_not_pair():
    q = dns(5, QUERY_RD, [question(wire("a.example"), 1)])
    r = dns(5, RESPONSE, [question(wire("b.example"), 1)])
    rec = drive(DnsParser, [(CLIENT, q), (SERVER, r)], transport="udp", server_port=53)
    assert sorted(e["type"] for e in rec.events) == ["query", "response"]


def test_dns_zone_transfer_over_tcp_is_one_event_and_threat_2019():
    def framed(m: bytes) -> bytes:
        return struct.pack("!H", len(m)) + m

    axfr = dns(77, 0, [question(wire("example.com"), 252)])
    soa = rr(PTR_Q, 6, 900, b"\xc0\x0c\xc0\x0c" + bytes(20))
    part1 = dns(77, 0x8400, [question(wire("example.com"), 252)], [soa, rr(PTR_Q, 1, 60, bytes([1, 2, 3, 4]))])
    part2 = dns(77, 0x8400, [], [rr(b"\x03www" + wire("example.com"), 1, 60, bytes([1, 2, 3, 5]))])
    rec = drive(DnsParser, [(CLIENT, framed(axfr)), (SERVER, framed(part1)), (SERVER, framed(part2))],
                server_port=53)
    (e,) = rec.events
    assert e["rrtype"] == "AXFR" and e["answer_count"] == 3 and e["response_frame"] == 2
    assert [a["rdata"] for a in e["answers"]][1:] == ["1.2.3.4", "1.2.3.5"]
    assert rec.threats == [(2019, CLIENT)]
    ixfr = drive(DnsParser, [(CLIENT, dns(1, 0, [question(wire("example.com"), 251)]))], transport="udp")
    assert ixfr.threats == [(2019, CLIENT)]


def test_dns_null_type_threat_2021_and_lone_response_questions_checked():
    rec = drive(DnsParser, [(SERVER, dns(3, RESPONSE, [question(wire("t.example"), 10)]))], transport="udp")
    assert rec.threats == [(2021, SERVER)]  # no query seen: the response's question is checked (dpi_dns.c does)
    rec = drive(DnsParser, [(CLIENT, dns(3, 0, [question(wire("t.example"), 10)])),
                            (SERVER, dns(3, RESPONSE, [question(wire("t.example"), 10)]))], transport="udp")
    assert rec.threats == [(2021, CLIENT)]  # once per transaction


def test_dns_pointer_loop_terminates_fast_and_raises_2007():
    # a name that points at itself (offset 12 -> 12), and "a" + pointer back to its own start: both endless
    self_loop = dns(1, 0, [b"\xc0\x0c" + struct.pack("!HH", 1, 1)])
    label_loop = dns(2, 0, [b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1)])
    # two pointers chasing each other inside an answer name (forward pointers are followed, as dp does)
    # (header 12 + question 11 + 4: the answer name is at 27; 27 -> 29 -> 27 ...)
    ping_pong = dns(3, RESPONSE, [question(wire("x.example"), 1)], [b"\xc0\x1d\xc0\x1b" + bytes(10)])
    start = time.perf_counter()
    for _ in range(200):
        for m in (self_loop, label_loop, ping_pong):
            rec = drive(DnsParser, [(CLIENT, m)], transport="udp")
            assert rec.threats == [(2007, CLIENT)]
    assert time.perf_counter() - start < 2.0  # 600 loops: each stops after 64 pointers
    with pytest.raises(Exception, match="dns-pointer-loop"):
        read_name(self_loop, 12)
    # 63 pointers in a chain are allowed (dp: more than 63 is the threat)
    chain = bytearray(dns(4, 0, []))
    chain += b"\x00"  # offset 12: the root name
    for i in range(63):  # offset 13 + 2i: a pointer to the previous pointer (the first one to the root at 12)
        chain += struct.pack("!H", 0xC000 | (13 + 2 * (i - 1) if i else 12))
    assert read_name(bytes(chain), len(chain) - 2)[2] == 63


def test_dns_names_already_read_give_what_a_fresh_read_gives():
    # read_name's `known` (names of the message read so far, by offset): an owner name that is a pointer to one
    # of them is not read again; name, offset after it and pointer count are those of a fresh read
    msg = dns(1, RESPONSE, [question(wire("www.Example.com"), 1)],
              [rr(PTR_Q, 5, 60, b"\x03cdn\xc0\x10"), rr(b"\xc0\x27", 1, 60, b"\x01\x02\x03\x04")])
    known: dict = {}
    assert read_name(msg, 12, True, known) == read_name(msg, 12) == ("www.Example.com", 29, 0)
    answer = 33  # header 12 + question name 17 + qtype/qclass 4
    assert read_name(msg, answer, True, known) == read_name(msg, answer) == ("www.Example.com", answer + 2, 1)
    assert read_name(msg, answer, False, known)[1:] == (answer + 2, 1)
    # a known name 63 pointers deep: one more pointer is a loop, however the name was read before
    chain = bytearray(dns(4, 0, []))
    chain += b"\x00"  # offset 12: the root name
    for i in range(64):  # offset 13 + 2i: a pointer to the previous pointer (the first one to the root at 12)
        chain += struct.pack("!H", 0xC000 | (13 + 2 * (i - 1) if i else 12))
    chain = bytes(chain)
    known = {}
    assert read_name(chain, 13 + 2 * 62, True, known)[2] == 63
    with pytest.raises(Exception, match="dns-pointer-loop"):
        read_name(chain, 13 + 2 * 63, True, known)


def test_dns_name_longer_than_255_is_an_anomaly_not_a_crash():
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\0"  # 321 bytes
    rec = drive(DnsParser, [(CLIENT, dns(1, 0, [long_name + struct.pack("!HH", 1, 1)]))], transport="udp")
    assert rec.anomalies == ["dns-name-too-long"]
    ok = b"".join(b"\x3f" + b"a" * 63 for _ in range(3)) + b"\x3d" + b"a" * 61 + b"\0"  # exactly 255 bytes
    rec = drive(DnsParser, [(CLIENT, dns(1, 0, [ok + struct.pack("!HH", 1, 1)]))], transport="udp")
    assert rec.anomalies == [] and len(rec.events[0]["rrname"]) == 253


def test_dns_overflow_threat_2017_conditions():
    q = dns(1, QUERY_RD, [question(wire("big.example"), 16)])
    txt = rr(PTR_Q, 16, 1, b"\xff" + b"x" * 255)
    parsed = dns(1, RESPONSE, [question(wire("big.example"), 16)], [txt] * 9)  # 2,4xx bytes, all parsed
    assert len(parsed) > 2048
    tail = dns(1, RESPONSE, [question(wire("big.example"), 16)], [txt] * 4) + bytes(1100)  # 1100 left unparsed
    cut = parsed[:2100]  # > 2048 and a record runs past the end: the parse fails
    small_tail = dns(1, RESPONSE, [question(wire("big.example"), 16)], [txt] * 8) + bytes(500)
    cases = {parsed: [], tail: [(2017, SERVER)], cut: [(2017, SERVER)], small_tail: []}
    for msg, threats in cases.items():
        assert drive(DnsParser, [(CLIENT, q), (SERVER, msg)], transport="udp", server_port=53).threats == threats
        # dp checks the server port: not on mDNS
        assert drive(DnsParser, [(CLIENT, q), (SERVER, msg)], transport="udp", server_port=5353).threats == []


def test_dns_tcp_bad_length_stops_that_side():
    rec = drive(DnsParser, [(CLIENT, b"\x00\x05hello"), (CLIENT, b"\x00\x0c" + bytes(12))], server_port=53)
    assert rec.anomalies == ["dns-bad-length"] and rec.events == []


def test_dns_hostile_bytes_never_raise():
    rnd = random.Random(1035)
    base = [dns(1, QUERY_RD, [question(wire("www.example.com"), 1)]),
            dns(1, RESPONSE, [question(wire("www.example.com"), 1)],
                [rr(PTR_Q, 5, 1, wire("x.example")), rr(PTR_Q, 15, 1, b"\0\x01\xc0\x0c"),
                 rr(PTR_Q, 6, 1, b"\xc0\x0c\xc0\x0c" + bytes(20)), rr(PTR_Q, 16, 1, b"\x03abc"),
                 rr(PTR_Q, 33, 1, bytes(6) + b"\xc0\x0c")])]
    for m in mutations(base, rnd, 3000):
        drive(DnsParser, [(CLIENT, m), (SERVER, m)], transport="udp", server_port=53)
        drive(DnsParser, [(CLIENT, struct.pack("!H", len(m)) + m), (SERVER, m)], server_port=53,
              split=rnd.choice((0, 1, 5)))
    for n in range(len(base[1]) + 1):  # every truncation
        drive(DnsParser, [(SERVER, base[1][:n])], transport="udp")
    for _ in range(300):
        drive(DnsParser, [(rnd.randint(0, 1), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 300))))
                          for _ in range(4)], transport=rnd.choice(("udp", "tcp")), server_port=53)


def test_dns_real_messages_truncated_at_every_length(shared_pcaps):
    samples = [p for _, _, p in udp_payloads(SHARED / "dns__ndpi__dns-google-nsid.pcapng")]
    assert len(samples) == 14
    for s in samples:
        for n in range(len(s) + 1):
            drive(DnsParser, [(SERVER, s[:n])], transport="udp", server_port=53)
            drive(DnsParser, [(SERVER, struct.pack("!H", len(s)) + s[:n])], server_port=53)


def test_dns_real_captures_match_tshark(shared_pcaps, tshark):
    # tshark -r F -Y dns -T fields -e frame.number -e dns.id -e dns.flags.response -e dns.qry.name
    #   -e dns.qry.type -e dns.flags.rcode -e dns.count.answers -e dns.response_to -e dns.a
    # Every query frame is an event frame with tshark's id/name/type; every response pairs with the query
    # tshark says it answers (dns.response_to: frame 39 answers the retransmission in 37, not 36), with its
    # rcode and answer count, and the A answers are among tshark's dns.a.
    for name in ("dns__ndpi__dns_fragmented.pcap", "dns__ndpi__dns-google-nsid.pcapng",
                 "ipv6-frag__zeek__ipv6-fragmented-dns.pcap"):
        path = SHARED / name
        rows = tshark_rows(tshark, path, "frame.number", "dns.id", "dns.flags.response", "dns.qry.name",
                           "dns.qry.type", "dns.flags.rcode", "dns.count.answers", "dns.response_to", "dns.a",
                           display="dns")
        res = run(path)
        events = {e["frame"]: e["dns"] for e in res.app_events("dns")}
        assert not res.anomalies("parser-error")
        for frame, ident, resp, qname, qtype, rcode, count, response_to, addrs in rows:
            if resp == "0":
                e = events[int(frame)]
                assert (e["id"], e["rrname"]) == (int(ident, 16), "." if qname == "<Root>" else qname)
                assert e["rrtype"] in (int(qtype), {"1": "A", "2": "NS", "16": "TXT", "28": "AAAA",
                                                    "48": "DNSKEY"}.get(qtype))
            else:
                e = events[int(response_to)]
                assert e["response_frame"] == int(frame) and e["answer_count"] == int(count)
                assert e["rcode"] == {"0": "NOERROR", "2": "SERVFAIL"}[rcode]
                ours = [a["rdata"] for a in e["answers"] if a["rrtype"] == "A"]
                assert set(ours) <= set(addrs.split(",")) and (ours or not addrs or e["rrtype"] != "A")
    # dns_fragmented: TCP flows too (frames 48/50 and 60/62), and 37/39 rtt as tshark's dns.time 0.010415
    events = {e["frame"]: e for e in run(SHARED / "dns__ndpi__dns_fragmented.pcap").app_events("dns")}
    assert events[48]["proto"] == "tcp" and events[48]["dns"]["response_frame"] == 50
    assert events[37]["dns"]["rtt"] == pytest.approx(0.010415, abs=1e-6)
    assert events[36]["dns"]["type"] == "query"


def test_dns_pointer_loop_through_the_whole_pipeline(tmp_path):
    # the question "a" + pointer to itself passes identification (its pointer points backwards) and loops
    loop = dns(0x4242, QUERY_RD, [b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1)])
    answer = loop[:2] + b"\x81\x80" + loop[4:]
    pcap = g.write(tmp_path / "loop.pcap", [(0.0, udp_frame("10.0.0.1", 40000, "10.0.0.53", 53, loop)),
                                            (0.1, udp_frame("10.0.0.53", 53, "10.0.0.1", 40000, answer))])
    res = run(pcap)
    (alert, *_) = res.alerts(2007)
    assert alert["src_ip"] == "10.0.0.1" and res.flows.iloc[0]["app_proto"] == "dns"
    assert 2007 in res.flows.iloc[0]["threat_ids"]


# ---------------------------------------------------------------- DHCP (RFC 2131, RFC 2132, RFC 8415)

def bootp(op: int, xid: int, mac: bytes, options: bytes, ciaddr: str = "0.0.0.0", yiaddr: str = "0.0.0.0",
          sname: bytes = b"", bootfile: bytes = b"") -> bytes:
    """A BOOTP/DHCP message per RFC 2131 §2 figure 1, the magic cookie, then the options."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, 0x8000, socket.inet_aton(ciaddr),
                       socket.inet_aton(yiaddr), bytes(4), bytes(4), mac.ljust(16, b"\0"), sname, bootfile)
    return head + b"\x63\x82\x53\x63" + options


def opt(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


MAC = bytes.fromhex("001122334455")


def test_dhcp_v4_request_and_ack_from_spec_bytes():
    request = bootp(1, 0xDEADBEEF, MAC, opt(53, b"\x03") + opt(61, b"\x01" + MAC) + opt(12, b"laptop")
                    + opt(50, socket.inet_aton("192.168.1.50")) + opt(54, socket.inet_aton("192.168.1.1"))
                    + opt(60, b"MSFT 5.0") + opt(55, bytes([1, 3, 6, 15])) + opt(81, b"\x01\0\0laptop.corp")
                    + b"\0\0" + b"\xff" + bytes(10))
    ack = bootp(2, 0xDEADBEEF, MAC, opt(53, b"\x05") + opt(54, socket.inet_aton("192.168.1.1"))
                + opt(51, struct.pack("!I", 86400)) + opt(15, b"corp.example") + b"\xff", yiaddr="192.168.1.50")
    rec = drive(DhcpParser, [(CLIENT, request), (SERVER, ack)], transport="udp", server_port=67)
    assert rec.anomalies == []
    req, ack_e = rec.events
    assert {k: v for k, v in req.items() if v is not None} == {
        "version": 4, "msg_type": "REQUEST", "trans_id": 0xDEADBEEF, "mac": "00:11:22:33:44:55",
        "host_name": "laptop", "requested_addr": "192.168.1.50", "server_id": "192.168.1.1",
        "client_id": "01:00:11:22:33:44:55", "vendor_class": "MSFT 5.0", "param_list": [1, 3, 6, 15],
        "client_fqdn": "laptop.corp"}
    assert {k: v for k, v in ack_e.items() if v is not None} == {
        "version": 4, "msg_type": "ACK", "trans_id": 0xDEADBEEF, "mac": "00:11:22:33:44:55",
        "assigned_addr": "192.168.1.50", "server_id": "192.168.1.1", "lease_time": 86400,
        "domain": "corp.example"}


def test_dhcp_option_overload_split_options_and_plain_bootp():
    # RFC 2132 §9.3: option 52 = 3 -> more options in `file` then `sname`; RFC 3396: a split option concatenated
    bootfile = opt(12, b"host").ljust(128, b"\0")
    sname = (opt(15, b"exa") + opt(15, b"mple.org") + b"\xff").ljust(64, b"\0")
    msg = bootp(1, 1, MAC, opt(53, b"\x01") + opt(52, b"\x03") + b"\xff", sname=sname, bootfile=bootfile)
    (e,) = drive(DhcpParser, [(CLIENT, msg)], transport="udp").events
    assert (e["msg_type"], e["host_name"], e["domain"]) == ("DISCOVER", "host", "example.org")
    (plain,) = drive(DhcpParser, [(CLIENT, bootp(2, 2, MAC, b"\xff"))], transport="udp").events
    assert plain["msg_type"] == "BOOTREPLY"
    empty = bootp(1, 3, MAC, opt(52, b"") + opt(53, b"") + opt(51, b"") + opt(50, b"") + opt(81, b"") + b"\xff")
    (e,) = drive(DhcpParser, [(CLIENT, empty)], transport="udp").events  # empty values: no crash, no value
    assert (e["msg_type"], e["lease_time"], e["requested_addr"], e["client_fqdn"]) == ("BOOTREQUEST", None, None, None)


def test_dhcp_v6_solicit_reply_and_relay_from_spec_bytes():
    def o6(code: int, value: bytes) -> bytes:
        return struct.pack("!HH", code, len(value)) + value  # RFC 8415 §21.1

    duid = bytes.fromhex("000100012a2b2c2d") + MAC  # DUID-LLT (§11.2)
    solicit = bytes([1]) + b"\x0a\x0b\x0c" + o6(1, duid) + o6(6, struct.pack("!HH", 23, 24)) \
        + o6(39, b"\x01" + wire("host.example.org")) + o6(3, struct.pack("!III", 1, 0, 0)) \
        + o6(16, struct.pack("!I", 311) + struct.pack("!H", 8) + b"MSFT 5.0")
    addr = socket.inet_pton(socket.AF_INET6, "2001:db8::1:5")
    reply = bytes([7]) + b"\x0a\x0b\x0c" + o6(1, duid) + o6(2, b"\x00\x03\x00\x01" + MAC) \
        + o6(3, struct.pack("!III", 1, 3600, 5400) + o6(5, addr + struct.pack("!II", 7200, 7500))) \
        + o6(13, b"\x00\x00all good")
    relay = bytes([12, 0]) + bytes(16) + socket.inet_pton(socket.AF_INET6, "fe80::1") + o6(9, solicit)
    rec = drive(DhcpParser, [(CLIENT, solicit), (SERVER, reply), (CLIENT, relay)], transport="udp",
                server_port=547)
    assert rec.anomalies == []
    s, r, rel = rec.events
    assert (s["version"], s["msg_type"], s["trans_id"], s["client_duid"], s["client_fqdn"], s["param_list"],
            s["vendor_class"], s["ia_na_addrs"]) == (
        6, "SOLICIT", 0x0A0B0C, ":".join(f"{b:02x}" for b in duid), "host.example.org", [23, 24], "MSFT 5.0", None)
    assert (r["msg_type"], r["ia_na_addrs"], r["lease_time"], r["message"], r["server_duid"]) == (
        "REPLY", ["2001:db8::1:5"], 7500, "all good", "00:03:00:01:00:11:22:33:44:55")
    assert (rel["msg_type"], rel["relay_hops"], rel["client_fqdn"]) == ("SOLICIT", 1, "host.example.org")


def test_dhcp_real_capture_matches_tshark(shared_pcaps):
    # tshark -r dhcp__zeek__dhcp_dhcp.pcap -T fields -e frame.number -e dhcp.option.dhcp -e dhcp.id
    #   -e dhcp.hw.mac_addr -e dhcp.option.hostname -e dhcp.option.requested_ip_address -e dhcp.ip.your
    #   -e dhcp.option.dhcp_server_id -e dhcp.option.ip_address_lease_time -e dhcp.option.vendor_class_id
    # 1|1|0x7c0|90:b1:1c:99:49:29|btest.is.cool|192.168.211.194|0.0.0.0|||
    # 2|2|0x7c0|..|||128.2.6.97|128.2.6.152|900|ArubaAP      4|6|0x7c0|...|128.2.6.152 (+ message)
    # 6|5|0x7c0|..|||128.2.6.189|128.2.6.152|900|ArubaAP     8|7|0x79c     9|8|0x7c4|...|19841984
    res = run(SHARED / "dhcp__zeek__dhcp_dhcp.pcap")
    ev = {e["frame"]: e["dhcp"] for e in res.app_events("dhcp")}
    assert [ev[f]["msg_type"] for f in range(1, 10)] == ["DISCOVER", "OFFER", "REQUEST", "NAK", "REQUEST", "ACK",
                                                         "DECLINE", "RELEASE", "INFORM"]
    assert {ev[f]["trans_id"] for f in range(1, 8)} == {0x7C0} and ev[8]["trans_id"] == 0x79C
    assert {e["mac"] for e in ev.values()} == {"90:b1:1c:99:49:29"}
    assert (ev[1]["host_name"], ev[1]["requested_addr"]) == ("btest.is.cool", "192.168.211.194")
    assert (ev[2]["offered_addr"], ev[2]["server_id"], ev[2]["lease_time"], ev[2]["vendor_class"]) == (
        "128.2.6.97", "128.2.6.152", 900, "ArubaAP")
    assert ev[4]["message"] == "requested address not available"
    assert (ev[6]["assigned_addr"], ev[6]["lease_time"]) == ("128.2.6.189", 900)
    assert ev[9]["lease_time"] == 19841984
    assert res.anomalies() == []


def test_dhcp_fuzzed_real_capture_gives_events_and_named_anomalies(shared_pcaps):
    # tshark -r dhcp__ndpi__dhcp-fuzz.pcap: "DHCP Unknown Message Type (0x6a) ... [Malformed Packet]": option 60
    # (vendor class) says length 0x31 but the datagram ends 38 bytes later
    res = run(SHARED / "dhcp__ndpi__dhcp-fuzz.pcap")
    (e,) = res.app_events("dhcp")
    assert (e["dhcp"]["msg_type"], e["dhcp"]["host_name"], e["dhcp"]["client_id"]) == (
        106, "MK03862", "01:00:1f:29:da:2d:79")
    assert e["dhcp"]["vendor_class"] is None
    assert [a["anomaly"]["event"] for a in res.anomalies()] == ["dhcp-truncated-option"]
    assert res.summary.parser_errors == 0


def test_dhcp_hostile_bytes_never_raise(shared_pcaps):
    rnd = random.Random(2131)
    samples = [p for _, _, p in udp_payloads(SHARED / "dhcp__zeek__dhcp_dhcp.pcap")]
    samples += [p for _, _, p in udp_payloads(SHARED / "dhcp__ndpi__dhcp-fuzz.pcap")]
    v6 = bytes([12, 40]) + bytes(32) + struct.pack("!HH", 9, 8) + b"\x01\0\0\0\0\x03\0\x10"
    for m in mutations(samples + [v6], rnd, 3000):
        drive(DhcpParser, [(CLIENT, m)], transport="udp", server_port=rnd.choice((67, 547)))
    for s in samples[:2]:
        for n in range(len(s) + 1):
            drive(DhcpParser, [(CLIENT, s[:n])], transport="udp", server_port=547)


# ---------------------------------------------------------------- NTP (RFC 5905)

NTP_1970 = 2208988800


def test_ntp_client_message_from_spec_bytes():
    # LI 0, VN 4, mode 3; stratum 2, poll 6, precision -20; delay 1.5 s, dispersion 0.25 s (16.16); refid
    # 192.0.2.1; timestamps 2020-01-01T00:00:00.5 (xmt) etc. (NTP 64-bit: seconds since 1900, fraction / 2^32)
    t = (NTP_1970 + 1577836800) << 32 | (1 << 31)
    msg = struct.pack("!BBbbII4sQQQQ", 0x23, 2, 6, -20, 0x00018000, 0x00004000, socket.inet_aton("192.0.2.1"),
                      t - (10 << 32), 0, 0, t)
    (e,) = drive(NtpParser, [(CLIENT, msg)], transport="udp", server_port=123).events
    assert e == {"version": 4, "mode": 3, "mode_name": "client", "stratum": 2, "poll": 64.0,
                 "precision": 2.0 ** -20, "root_delay": 1.5, "root_disp": 0.25, "ref_id": "192.0.2.1",
                 "ref_time": 1577836790.5, "org_time": 0.0, "rec_time": 0.0, "xmt_time": 1577836800.5,
                 "num_exts": 0}
    # stratum 1: the reference id is a clock name; an extension field (RFC 7822) and a 20-byte MAC after it
    msg1 = struct.pack("!BBbbII4sQQQQ", 0x24, 1, 4, -6, 0, 0, b"GPS\0", t, t, t, t)
    ext = struct.pack("!HH", 0x0104, 16) + bytes(12)
    (e1,) = drive(NtpParser, [(SERVER, msg1 + ext + bytes(20))], transport="udp").events
    assert (e1["ref_id"], e1["mode_name"], e1["num_exts"]) == ("GPS", "server", 1)


def test_ntp_real_captures_match_tshark(shared_pcaps):
    # tshark -r ntp__ndpi__NTPv4.pcap -V: NTP Version 4, client; stratum 2; polling 7 (128 s); root delay
    #   0.016846 s, root dispersion 0.014328 s; Reference ID 131.188.3.223; reference timestamp
    #   Jul 14, 2015 09:15:47.192958377 UTC; transmit Jul 14, 2015 09:16:36.176374611 UTC; precision 235 (-21)
    (e,) = run(SHARED / "ntp__ndpi__NTPv4.pcap").app_events("ntp")
    n = e["ntp"]
    assert (n["version"], n["mode"], n["stratum"], n["poll"], n["ref_id"]) == (4, 3, 2, 128.0, "131.188.3.223")
    assert n["precision"] == 2.0 ** -21
    assert n["root_delay"] == pytest.approx(0.016846, abs=1e-6) and n["root_disp"] == pytest.approx(0.014328, abs=1e-6)
    assert n["ref_time"] == pytest.approx(1436865347.192958377, abs=1e-6)  # 2015-07-14 09:15:47.192958 UTC
    assert n["xmt_time"] == pytest.approx(1436865396.176374611, abs=1e-6)
    # tshark -r ntp__ndpi__NTPv3.pcap -V: Version 3, server; stratum 0; polling 4 (16 s); precision 0.015625;
    #   Reference ID NULL; reference/origin NULL; receive = transmit = Jul 14, 2015 09:04:17 UTC
    (e,) = run(SHARED / "ntp__ndpi__NTPv3.pcap").app_events("ntp")
    n = e["ntp"]
    assert (n["version"], n["mode"], n["stratum"], n["poll"], n["precision"], n["ref_id"]) == (
        3, 4, 0, 16.0, 0.015625, "")
    assert (n["ref_time"], n["org_time"], n["rec_time"], n["xmt_time"]) == (0.0, 0.0, 1436864657.0, 1436864657.0)


def test_ntp_hostile_bytes_never_raise(shared_pcaps):
    rnd = random.Random(5905)
    samples = [p for _, _, p in udp_payloads(SHARED / "ntp__ndpi__NTPv4.pcap")]
    samples += [p for _, _, p in udp_payloads(SHARED / "ntp__ndpi__NTPv3.pcap")]
    for m in mutations(samples, rnd, 2000):
        drive(NtpParser, [(CLIENT, m)], transport="udp", server_port=123)
    for s in samples:
        for n in range(len(s) + 1):
            drive(NtpParser, [(CLIENT, s[:n])], transport="udp", server_port=123)
    rec = drive(NtpParser, [(CLIENT, b"\x23" + bytes(20))], transport="udp")
    assert rec.events == [] and rec.anomalies == ["ntp-truncated"]


# ---------------------------------------------------------------- TFTP (RFC 1350, RFC 2347-2349)

def test_tftp_request_flow_and_transfer_flow_from_spec_bytes():
    rrq = b"\x00\x01boot/pxelinux.0\x00octet\x00blksize\x001024\x00tsize\x000\x00"
    rec = drive(TftpParser, [(CLIENT, rrq), (CLIENT, rrq)], transport="udp", server_port=69)
    (e,) = rec.events  # the retransmitted request is the same transfer
    assert (e["opcode"], e["filename"], e["mode"], e["options"], e["blocks"]) == (
        "RRQ", "boot/pxelinux.0", "octet", ["blksize=1024", "tsize=0"], 0)
    # the transfer flow (server's new port -> client): OACK, ACK 0, DATA 1 (1024), DATA 1 again, DATA 2 (100)
    steps = [(CLIENT, b"\x00\x06blksize\x001024\x00tsize\x001124\x00"), (SERVER, b"\x00\x04\x00\x00"),
             (CLIENT, b"\x00\x03\x00\x01" + bytes(1024)), (CLIENT, b"\x00\x03\x00\x01" + bytes(1024)),
             (SERVER, b"\x00\x04\x00\x01"), (CLIENT, b"\x00\x03\x00\x02" + bytes(100)), (SERVER, b"\x00\x04\x00\x02")]
    (t,) = drive(TftpParser, steps, transport="udp", server_port=50000).events
    assert (t["opcode"], t["oack"], t["blocks"], t["bytes"], t["retransmits"], t["last_block"], t["last_ack"],
            t["complete"]) == ("OACK", ["blksize=1024", "tsize=1124"], 2, 1124, 1, 2, 2, True)
    (cut,) = drive(TftpParser, steps[:-1], transport="udp").events
    assert cut["complete"] is False  # the last block was never acknowledged
    err = drive(TftpParser, [(CLIENT, b"\x00\x02secret\x00octet\x00"), (SERVER, b"\x00\x05\x00\x02denied\x00")],
                transport="udp", server_port=69).events
    assert [(x["opcode"], x["filename"], x["error_code"], x["error_msg"]) for x in err] == [
        ("WRQ", "secret", 2, "denied")]


def test_tftp_real_capture_matches_tshark(shared_pcaps):
    # tshark -r tftp__ndpi__tftp.pcap -T fields -e frame.number -e udp.srcport -e udp.dstport -e tftp.opcode
    #   -e tftp.source_file -e tftp.destination_file -e tftp.block -e data.len:
    # 3: RRQ rfc1350.txt octet (50618 -> 69); 4..101: DATA blocks 1-49 from port 3445 (48 x 512 + 23 bytes),
    # each ACKed; 103: WRQ zz.bin netascii; 104-107: ACK 0, DATA 1 (512) twice, ACK 1;
    # 108: WRQ empty100KB octet blksize=1468 tsize=100000; 109: OACK blksize 1468 tsize 100000
    events = {e["frame"]: e["tftp"] for e in run(SHARED / "tftp__ndpi__tftp.pcap").app_events("tftp")}
    assert (events[3]["opcode"], events[3]["filename"], events[3]["mode"]) == ("RRQ", "rfc1350.txt", "octet")
    assert (events[4]["blocks"], events[4]["bytes"], events[4]["last_ack"], events[4]["complete"]) == (
        49, 48 * 512 + 23, 49, True)
    assert (events[103]["opcode"], events[103]["filename"], events[103]["mode"]) == ("WRQ", "zz.bin", "netascii")
    assert (events[104]["blocks"], events[104]["bytes"], events[104]["retransmits"], events[104]["last_ack"]) == (
        1, 512, 1, 1)
    assert events[108]["options"] == ["blksize=1468", "tsize=100000"]
    assert events[109]["oack"] == ["blksize=1468", "tsize=100000"]
    assert events[102]["filename"] == "sysman.lis"


def test_tftp_hostile_bytes_never_raise(shared_pcaps):
    rnd = random.Random(1350)
    samples = [p for _, _, p in udp_payloads(SHARED / "tftp__ndpi__tftp.pcap")][:12]
    samples.append(b"\x00\x06blksize\x00abc\x00")
    samples.append(b"\x00\x06blksize\x00" + b"9" * 5000 + b"\x00")  # int() of > 4300 digits raises
    for m in mutations(samples, rnd, 3000):
        drive(TftpParser, [(rnd.randint(0, 1), m) for _ in range(2)], transport="udp")
    for s in samples:
        for n in range(min(len(s), 80) + 1):
            drive(TftpParser, [(CLIENT, s[:n])], transport="udp")


# ---------------------------------------------------------------- RADIUS (RFC 2865, RFC 2866)

def radius(code: int, ident: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([t, len(v) + 2]) + v for t, v in attrs)
    return struct.pack("!BBH16s", code, ident, 20 + len(body), bytes(16)) + body  # RFC 2865 §3


def test_radius_pairs_by_identifier_and_never_logs_the_password():
    secret = b"\x8a\x11hunter2-obfuscated"
    req = radius(1, 9, [(1, b"alice"), (2, secret), (4, socket.inet_aton("10.1.1.1")), (32, b"nas-7"),
                        (31, b"AA-BB-CC-DD-EE-FF"), (77, b"CONNECT 100Mbps")])
    other = radius(1, 10, [(1, b"bob"), (3, b"\x01" + bytes(16))])  # CHAP-Password
    accept = radius(2, 9, [(8, socket.inet_aton("10.9.9.9")), (18, b"Welcome")])
    reject = radius(3, 10, [(18, b"Denied")])
    rec = drive(RadiusParser, [(CLIENT, req), (CLIENT, other), (SERVER, reject), (SERVER, accept)],
                transport="udp", server_port=1812)
    assert rec.anomalies == []
    by_user = {e["user_name"]: e for e in rec.events}
    assert {k: v for k, v in by_user["alice"].items() if k != "rtt"} == {
        "code": "Access-Request", "identifier": 9, "user_name": "alice", "nas_ip": "10.1.1.1",
        "nas_identifier": "nas-7", "mac": "aa:bb:cc:dd:ee:ff", "framed_addr": "10.9.9.9", "tunnel_client": None,
        "connect_info": "CONNECT 100Mbps", "acct_status_type": None, "reply_msg": "Welcome",
        "result": "Access-Accept"}
    assert (by_user["bob"]["result"], by_user["bob"]["reply_msg"]) == ("Access-Reject", "Denied")
    assert rec.frames == [2, 1]  # each event at its request's frame, emitted as the answers came
    text = repr(rec.events)
    assert "hunter2" not in text and "x8a" not in text.lower()


def test_radius_accounting_unanswered_and_lone_answer():
    acct = radius(4, 1, [(1, b"carol"), (40, struct.pack("!I", 1))])
    rec = drive(RadiusParser, [(CLIENT, acct), (CLIENT, acct), (SERVER, radius(5, 77, []))], transport="udp")
    assert [(e["code"], e["result"], e["acct_status_type"]) for e in rec.events] == [
        ("Accounting-Response", "Accounting-Response", None), ("Accounting-Request", None, "Start")]


def test_radius_real_capture_matches_tshark(shared_pcaps):
    # tshark -r radius__zeek__radius_radius.pcap -T fields -e frame.number -e radius.code -e radius.id
    #   -e radius.User_Name -e radius.NAS_IP_Address -e radius.Reply_Message -e radius.Calling_Station_Id
    # 1|1|5|John.McGuirk|10.0.0.1||00-14-22-E9-54-5E    2|11|5|||Hello, %u|   (Framed-IP-Address "Assigned":
    # 3|1|6|John.McGuirk|10.0.0.1||00-14-22-E9-54-5E    4|2|6|John.McGuirk||Hello, John.McGuirk|  255.255.255.254)
    events = {e["frame"]: e["radius"] for e in run(SHARED / "radius__zeek__radius_radius.pcap").app_events("radius")}
    assert sorted(events) == [1, 3]
    assert (events[1]["identifier"], events[1]["result"], events[1]["reply_msg"], events[1]["framed_addr"]) == (
        5, "Access-Challenge", "Hello, %u", "255.255.255.254")
    assert (events[3]["identifier"], events[3]["result"], events[3]["reply_msg"]) == (
        6, "Access-Accept", "Hello, John.McGuirk")
    for e in events.values():
        assert (e["user_name"], e["nas_ip"], e["mac"]) == ("John.McGuirk", "10.0.0.1", "00:14:22:e9:54:5e")


def test_radius_hostile_bytes_never_raise(shared_pcaps):
    rnd = random.Random(2865)
    samples = [p for _, _, p in udp_payloads(SHARED / "radius__zeek__radius_radius.pcap")]
    for m in mutations(samples, rnd, 3000):
        drive(RadiusParser, [(rnd.randint(0, 1), m), (rnd.randint(0, 1), rnd.choice(samples))], transport="udp")
    for s in samples:
        for n in range(len(s) + 1):
            drive(RadiusParser, [(CLIENT, s[:n])], transport="udp")


# ---------------------------------------------------------------- Syslog (RFC 5424, RFC 3164, RFC 6587)

RFC5424 = (b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" '
           b'eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] \xef\xbb\xbfAn application '
           b'event log entry...')  # RFC 5424 §6.5 example 3 (PRI 165 = local4.notice), BOM before MSG
RFC3164 = b"<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8"  # RFC 3164 §5.4


def test_syslog_5424_and_3164_from_the_rfc_examples():
    rec = drive(SyslogParser, [(CLIENT, RFC5424), (CLIENT, RFC3164), (CLIENT, b"<0>1 - - - - - -\n")],
                transport="udp")
    a, b, c = rec.events
    assert a == {"facility": "LOCAL4", "severity": "NOTICE", "version": 1, "timestamp": "2003-10-11T22:14:15.003Z",
                 "hostname": "mymachine.example.com", "program": "evntslog", "pid": None, "msgid": "ID47",
                 "structured_data": '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
                                    '[examplePriority@32473 class="high"]',
                 "message": "An application event log entry..."}
    assert b == {"facility": "AUTH", "severity": "CRIT", "version": None, "timestamp": "Oct 11 22:14:15",
                 "hostname": "mymachine", "program": "su", "pid": "230", "msgid": None, "structured_data": None,
                 "message": "'su root' failed for lonvick on /dev/pts/8"}
    assert (c["facility"], c["severity"], c["hostname"], c["message"]) == ("KERN", "EMERG", None, "")
    assert rec.anomalies == []


def test_syslog_message_capped_and_bad_pri_is_an_anomaly():
    rec = drive(SyslogParser, [(CLIENT, b"<13>" + b"x" * 5000), (CLIENT, b"<999>hello")], transport="udp")
    assert len(rec.events[0]["message"]) == 1024
    assert rec.events[1]["facility"] is None and rec.anomalies == ["syslog-bad-pri"]


def test_syslog_tcp_octet_counting_and_lf_framing_any_segmentation():
    counted = b"".join(b"%d %s" % (len(m), m) for m in (RFC5424, RFC3164))  # RFC 6587 §3.4.1
    lines = RFC3164 + b"\n" + b"<14>Oct 11 22:14:16 host app: second\r\n"  # §3.4.2 (a CR before LF tolerated)
    for split in (0, 1, 7):
        rec = drive(SyslogParser, [(CLIENT, counted)], split=split)
        assert [e["program"] for e in rec.events] == ["evntslog", "su"]
        rec = drive(SyslogParser, [(CLIENT, lines)], split=split)
        assert [(e["program"], e["message"]) for e in rec.events] == [
            ("su", "'su root' failed for lonvick on /dev/pts/8"), ("app", "second")]
    rec = drive(SyslogParser, [(CLIENT, b"<14>no newline at the end")])
    assert [e["message"] for e in rec.events] == ["no newline at the end"]  # emitted at the end of the flow


def test_syslog_tcp_oversized_messages_are_skipped_and_framing_recovers():
    big = b"<14>" + b"y" * 70000
    rec = drive(SyslogParser, [(CLIENT, b"%d %s" % (len(big), big) + b"5 <14>a")], split=1000)
    assert [e["message"] for e in rec.events] == ["a"] and rec.anomalies == ["syslog-message-too-long"]
    rec = drive(SyslogParser, [(CLIENT, big + b"\n<14>b\n")], split=1000)
    assert [e["message"] for e in rec.events] == ["b"]
    rec = drive(SyslogParser, [(CLIENT, b"12x <14>a\n")])
    assert rec.anomalies == ["syslog-bad-framing"] and rec.events == []


def test_syslog_real_capture_matches_tshark(shared_pcaps, tshark):
    # tshark -r syslog__ndpi__syslog.pcap -Y syslog -T fields -e frame.number -e syslog.facility -e syslog.level
    #   -e syslog.hostname: facility and level of every UDP message, and the hostname where tshark finds one
    #   (RFC 5424 frames 85-88: pfSense.localdomain, app suricata, procid 37046; RFC 3164 frame 92:
    #   NDC3CLNDMVA22, tag NetworkManager[1422]); frame 81 is RFC 5424 over TCP, LF-framed, on port 52173
    #   (tshark -d tcp.port==52173,syslog: facility 2, level 6, hostname iPhone7,2, app com.dts.freefireth)
    path = SHARED / "syslog__ndpi__syslog.pcap"
    rows = tshark_rows(tshark, path, "frame.number", "syslog.facility", "syslog.level", "syslog.hostname",
                       display="syslog")
    res = run(path)
    events = {e["frame"]: e["syslog"] for e in res.app_events("syslog")}
    facilities = ("KERN", "USER", "MAIL", "DAEMON", "AUTH", "SYSLOG", "LPR", "NEWS", "UUCP", "CRON", "AUTHPRIV",
                  "FTP", "NTP", "AUDIT", "ALERT", "CLOCK", *(f"LOCAL{i}" for i in range(8)))
    levels = ("EMERG", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG")
    assert len(rows) > 80
    for frame, facility, level, hostname in rows:
        e = events[int(frame)]
        assert (e["facility"], e["severity"]) == (facilities[int(facility)], levels[int(level)])
        if hostname:
            assert e["hostname"] == hostname
    assert (events[85]["program"], events[85]["pid"], events[85]["version"]) == ("suricata", "37046", 1)
    assert (events[92]["program"], events[92]["pid"]) == ("NetworkManager", "1422")
    tcp = events[81]
    assert (tcp["facility"], tcp["severity"], tcp["hostname"], tcp["program"]) == (
        "MAIL", "INFO", "iPhone7,2", "com.dts.freefireth")
    assert res.anomalies("parser-error") == []


def test_syslog_hostile_bytes_never_raise(shared_pcaps):
    rnd = random.Random(5424)
    samples = [p for _, _, p in udp_payloads(SHARED / "syslog__ndpi__syslog.pcap", 40)] + [RFC5424, RFC3164]
    for m in mutations(samples, rnd, 2000):
        drive(SyslogParser, [(CLIENT, m)], transport="udp")
        drive(SyslogParser, [(CLIENT, m), (SERVER, m)], split=rnd.choice((0, 1, 9)))
    for s in (RFC5424, RFC3164):
        for n in range(len(s) + 1):
            drive(SyslogParser, [(CLIENT, s[:n])], transport="udp")
            drive(SyslogParser, [(CLIENT, b"%d %s" % (len(s), s[:n]))])


# ---------------------------------------------------------------- Echo (RFC 862)

def test_echo_tcp_and_udp():
    (e,) = drive(EchoParser, [(CLIENT, b"hello "), (SERVER, b"hel"), (CLIENT, b"world"), (SERVER, b"lo world")],
                 server_port=7).events
    assert e == {"client_bytes": 11, "server_bytes": 11, "client_messages": 2, "server_messages": 2,
                 "echoed_bytes": 11, "matched": True}
    (bad,) = drive(EchoParser, [(CLIENT, b"hello"), (SERVER, b"hellO")], server_port=7).events
    assert bad["matched"] is False
    (more,) = drive(EchoParser, [(CLIENT, b"ab"), (SERVER, b"abc")], server_port=7).events
    assert more["matched"] is False  # more bytes came back than were sent
    (udp,) = drive(EchoParser, [(CLIENT, b"one"), (CLIENT, b"two"), (SERVER, b"one"), (SERVER, b"two")],
                   transport="udp", server_port=7).events
    assert (udp["matched"], udp["echoed_bytes"], udp["server_messages"]) == (True, 6, 2)
    (swapped,) = drive(EchoParser, [(CLIENT, b"one"), (CLIENT, b"two"), (SERVER, b"two")], transport="udp").events
    assert swapped["matched"] is False
    (silent,) = drive(EchoParser, [(CLIENT, b"anyone?")], server_port=7).events
    assert (silent["matched"], silent["server_bytes"]) == (None, 0)
    assert drive(EchoParser, [], server_port=7).events == []


def test_echo_gap_stops_the_comparison_but_not_the_counts():
    rec = Recorder()
    p = EchoParser(rec, FlowContext("tcp", 40000, 7, False))
    p.feed(CLIENT, b"abc", 1, 0)
    p.feed(SERVER, b"abc", 2, 0)
    p.gap(CLIENT, 100, 3, 0)
    p.feed(CLIENT, b"xyz", 4, 0)
    p.feed(SERVER, b"different", 5, 0)
    p.finish()
    (e,) = rec.events
    assert (e["client_bytes"], e["server_bytes"], e["echoed_bytes"], e["matched"]) == (106, 12, 3, True)


def test_echo_holds_at_most_64k_and_never_raises():
    big = bytes(range(256)) * 1024  # 256 KiB
    (e,) = drive(EchoParser, [(CLIENT, big), (SERVER, big)], server_port=7, split=1460).events
    assert (e["client_bytes"], e["server_bytes"], e["matched"]) == (len(big), len(big), True)
    assert e["echoed_bytes"] <= 1 << 16
    rnd = random.Random(862)
    for _ in range(300):
        drive(EchoParser, [(rnd.randint(0, 1), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 50))))
                           for _ in range(5)], transport=rnd.choice(("udp", "tcp")))


# ---------------------------------------------------------------- all of them

@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
def test_random_bytes_on_every_parser(parser):
    rnd = random.Random(parser.__name__)
    for _ in range(300):
        steps = [(rnd.randint(0, 1), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 600))))
                 for _ in range(rnd.randint(1, 5))]
        drive(parser, steps, transport=rnd.choice(("udp", "tcp")), server_port=rnd.choice((0, 53, 67, 547)),
              split=rnd.choice((0, 0, 1, 17)))
