#!/usr/bin/env python3
"""Generate a large, realistic mixed-traffic pcap for benchmarking nvpcap.

The capture interleaves a few thousand concurrent flows (TCP with handshakes,
HTTP/TLS/MySQL payloads and clean closes, rejected SYNs, SYN scans, DNS, NTP,
ICMP echo, fragmented UDP), with some IPv6 and 802.1Q-tagged traffic, so that
every stage of an analyzer (decode, reassembly, sessions, protocol parsing) does
real work.

Speed matters more than generality: each flow direction builds its
L2/L3/L4 header bytes once, and every packet is a copy of that template patched
with ``struct.pack_into``.  No dpkt object is built per packet (dpkt is only used
once, for the DNS message pool), which keeps 1M packets around ten seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from random import Random
from struct import Struct, pack, pack_into

import dpkt

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "mixed.pcap"
EPOCH_S = 1_700_000_000
MEAN_GAP_US = 50.0  # ~20k packets/s, i.e. a busy but ordinary uplink
MASK32 = 0xFFFFFFFF

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMP6 = 1, 6, 17, 58
IPV4_DF = 0x4000
IPV4_MF = 0x2000

# Linux-like SYN options: MSS 1460, NOP, WS 8, NOP, NOP, SACK permitted.
SYN_OPTS = bytes.fromhex("020405b40103030801010402")
SYNACK_OPTS = bytes.fromhex("020405b40101040201030307")
SCAN_OPTS = bytes.fromhex("020405b4")  # nmap -sS sends only an MSS option

GATEWAY_MAC = bytes.fromhex("00005e0001fe")

TCP_CSUM, UDP_CSUM, ICMP_CSUM = 16, 6, 2  # checksum offsets within the L4 header

_U16 = Struct("!H")
_TCP_PATCH = Struct("!IIBBH")  # seq, ack, data offset, flags, window
_PCAP_HDR = Struct("<IHHiIII")
_REC_HDR = Struct("<IIII")


def inet_csum(data: bytes | bytearray, extra: int = 0) -> int:
    """Internet checksum via one big-int modulo (2**16 == 1 mod 0xFFFF).

    Far faster in CPython than summing 16-bit words.  A residue of 0 means the
    folded sum was 0xFFFF (data is never all zero), whose complement is 0.
    """
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    s = (n + extra) % 0xFFFF
    return 0xFFFF - s if s else 0


class Host:
    """An address with its MAC, TTL and a per-host ephemeral port counter."""

    __slots__ = ("ip", "mac", "ttl", "name", "_port")

    def __init__(self, ip: bytes, mac: bytes, ttl: int, name: str = "", port: int = 0) -> None:
        self.ip, self.mac, self.ttl, self.name, self._port = ip, mac, ttl, name, port

    @property
    def v6(self) -> bool:
        return len(self.ip) == 16

    def next_port(self) -> int:
        """Sequential ephemeral ports, so concurrent flows never share a 5-tuple."""
        self._port = 32768 + (self._port - 32768 + 1) % 28000
        return self._port


class Leg:
    """One direction of one flow: pre-built header template and per-packet patching."""

    __slots__ = ("tmpl", "l3", "l4", "v6", "pseudo", "ipid")

    def __init__(self, src: Host, dst: Host, proto: int, l4_tmpl: bytes,
                 vlan: int, ipid: int, df: bool = True) -> None:
        l2 = dst.mac + src.mac
        if vlan:
            l2 += pack("!HH", 0x8100, vlan)
        if src.v6:
            l3 = b"\x86\xdd" + pack("!IHBB", 0x60000000, 0, proto, src.ttl) + src.ip + dst.ip
        else:
            flags = IPV4_DF if df else 0
            l3 = b"\x08\x00" + pack("!BBHHHBBH", 0x45, 0, 0, 0, flags, src.ttl, proto, 0) + src.ip + dst.ip
        self.l3 = len(l2) + 2
        self.l4 = len(l2) + len(l3)
        self.tmpl = l2 + l3 + l4_tmpl
        self.v6 = src.v6
        self.ipid = ipid
        # ICMPv4 has no pseudo header; everything else sums addresses + protocol.
        self.pseudo = None if proto == PROTO_ICMP else (int.from_bytes(src.ip + dst.ip, "big") + proto) % 0xFFFF

    def tcp(self, seq: int, ack: int, flags: int, win: int, payload: bytes = b"", opts: bytes = b"") -> bytearray:
        buf = bytearray(self.tmpl)
        _TCP_PATCH.pack_into(buf, self.l4 + 4, seq, ack, (20 + len(opts)) << 2, flags, win)
        buf += opts
        buf += payload
        return self._finish(buf, TCP_CSUM)

    def udp(self, payload: bytes) -> bytearray:
        buf = bytearray(self.tmpl)
        buf += payload
        _U16.pack_into(buf, self.l4 + 4, len(buf) - self.l4)
        return self._finish(buf, UDP_CSUM)

    def icmp(self, seq: int, payload: bytes) -> bytearray:
        buf = bytearray(self.tmpl)
        _U16.pack_into(buf, self.l4 + 6, seq)
        buf += payload
        return self._finish(buf, ICMP_CSUM)

    def fragments(self, frame: bytearray, pieces: int) -> list[bytearray]:
        """Split an IPv4 frame's payload into 8-byte aligned fragments sharing its IP id."""
        l3, l4 = self.l3, self.l4
        body = frame[l4:]
        step = math.ceil(len(body) / pieces / 8) * 8
        out = []
        for off in range(0, len(body), step):
            buf = bytearray(frame[:l4])
            buf += body[off:off + step]
            more = IPV4_MF if off + step < len(body) else 0
            _U16.pack_into(buf, l3 + 2, len(buf) - l3)
            _U16.pack_into(buf, l3 + 6, more | off >> 3)
            _U16.pack_into(buf, l3 + 10, 0)  # clear the copied checksum before recomputing
            _U16.pack_into(buf, l3 + 10, inet_csum(buf[l3:l4]))
            out.append(buf)
        return out

    def _finish(self, buf: bytearray, csum_at: int) -> bytearray:
        """Fill IP length/id/checksum and the L4 checksum (template fields are zero)."""
        l3, l4, n = self.l3, self.l4, len(buf)
        if self.v6:
            _U16.pack_into(buf, l3 + 4, n - l4)
        else:
            self.ipid = (self.ipid + 1) & 0xFFFF
            pack_into("!HH", buf, l3 + 2, n - l3, self.ipid)
            _U16.pack_into(buf, l3 + 10, inet_csum(buf[l3:l4]))
        extra = 0 if self.pseudo is None else self.pseudo + n - l4
        csum = inet_csum(buf[l4:], extra)
        if csum == 0 and csum_at == UDP_CSUM:
            csum = 0xFFFF  # 0 would mean "no checksum" in UDP
        _U16.pack_into(buf, l4 + csum_at, csum)
        return buf


class TcpConn:
    """Sequence/ack bookkeeping for a lossless, in-order TCP connection."""

    __slots__ = ("legs", "seq", "win", "mss")

    def __init__(self, rng: Random, client: Leg, server: Leg) -> None:
        self.legs = (client, server)
        self.seq = [rng.getrandbits(32), rng.getrandbits(32)]
        self.win = (rng.choice((501, 502, 1026, 2052)), rng.choice((235, 509, 1040, 2049)))
        self.mss = 1440 if client.v6 else 1460

    def _seg(self, side: int, flags: int, payload: bytes = b"") -> bytearray:
        """Emit one segment from ``side``, acknowledging everything the peer sent."""
        frame = self.legs[side].tcp(self.seq[side], self.seq[1 - side], flags, self.win[side], payload)
        self.seq[side] = (self.seq[side] + len(payload)) & MASK32
        return frame

    def handshake(self) -> Iterator[bytearray]:
        client, server = self.legs
        yield client.tcp(self.seq[0], 0, SYN, 64240, b"", SYN_OPTS)
        self.seq[0] = (self.seq[0] + 1) & MASK32
        yield server.tcp(self.seq[1], self.seq[0], SYN | ACK, 65160, b"", SYNACK_OPTS)
        self.seq[1] = (self.seq[1] + 1) & MASK32
        yield self._seg(0, ACK)

    def send(self, side: int, data: bytes, ack_end: bool = True) -> Iterator[bytearray]:
        """Segment ``data`` at the MSS; the peer delay-ACKs every second segment.

        ``ack_end=False`` leaves the final ACK to be piggybacked on the peer's reply.
        """
        mss, n = self.mss, len(data)
        view = memoryview(data)
        for i, off in enumerate(range(0, n, mss), 1):
            last = off + mss >= n
            yield self._seg(side, PSH | ACK if last else ACK, view[off:off + mss])
            if (i % 2 == 0 and not last) or (last and ack_end):
                yield self._seg(1 - side, ACK)

    def close(self, side: int) -> Iterator[bytearray]:
        """Orderly FIN/ACK teardown initiated by ``side``."""
        for s in (side, 1 - side):
            yield self._seg(s, FIN | ACK)
            self.seq[s] = (self.seq[s] + 1) & MASK32
        yield self._seg(side, ACK)

    def reset(self, side: int) -> Iterator[bytearray]:
        yield self._seg(side, RST | ACK)


# --------------------------------------------------------------------------
# Application payloads (built per flow or pooled; never per packet)
# --------------------------------------------------------------------------

WORDS = (
    "alpha", "bravo", "cloud", "delta", "echo", "forest", "gamma", "harbor", "index", "jungle",
    "kilo", "lemon", "metro", "nova", "orbit", "pixel", "quartz", "river", "sierra", "tango",
    "ultra", "vector", "willow", "xenon", "yonder", "zephyr", "shop", "news", "mail", "media",
)
SUBDOMAINS = ("www", "api", "cdn", "static", "login", "img", "m", "assets")
TLDS = ("com", "net", "org", "io", "de", "co.uk")
TLS_CCS = bytes.fromhex("140303000101")
TLS_CIPHERS = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
TLS_SIGALGS = bytes.fromhex("040308040401050308050501080606010201")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "curl/8.5.0",
    "python-requests/2.31.0",
)
CONTENT_TYPES = ("text/html; charset=utf-8", "application/json", "application/javascript", "text/css", "application/octet-stream")


def tls_ext(ext_type: int, body: bytes) -> bytes:
    return pack("!HH", ext_type, len(body)) + body


def tls_handshake_record(hs_type: int, body: bytes, record_version: int) -> bytes:
    hs = pack("!B", hs_type) + len(body).to_bytes(3, "big") + body
    return pack("!BHH", 22, record_version, len(hs)) + hs


def tls_client_hello(rng: Random, sni: str) -> bytes:
    """A Chrome-like TLS 1.3 ClientHello carrying ``sni``."""
    name = sni.encode()
    alpn = b"\x02h2\x08http/1.1"
    exts = b"".join((
        tls_ext(0, pack("!HBH", len(name) + 3, 0, len(name)) + name),
        tls_ext(10, bytes.fromhex("0006001d00170018")),
        tls_ext(11, b"\x01\x00"),
        tls_ext(13, pack("!H", len(TLS_SIGALGS)) + TLS_SIGALGS),
        tls_ext(16, pack("!H", len(alpn)) + alpn),
        tls_ext(43, bytes.fromhex("0403040303")),
        tls_ext(45, b"\x01\x01"),
        tls_ext(51, pack("!HHH", 36, 0x001D, 32) + rng.randbytes(32)),
    ))
    body = (pack("!H", 0x0303) + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
            + pack("!H", len(TLS_CIPHERS)) + TLS_CIPHERS + b"\x01\x00" + pack("!H", len(exts)) + exts)
    return tls_handshake_record(1, body, 0x0301)


def tls_server_hello(rng: Random) -> bytes:
    """A TLS 1.3 ServerHello (TLS_AES_128_GCM_SHA256, x25519) plus ChangeCipherSpec."""
    exts = tls_ext(43, b"\x03\x04") + tls_ext(51, pack("!HH", 0x001D, 32) + rng.randbytes(32))
    body = (pack("!H", 0x0303) + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
            + pack("!HB", 0x1301, 0) + pack("!H", len(exts)) + exts)
    return tls_handshake_record(2, body, 0x0303) + TLS_CCS


def mysql_packet(seq: int, body: bytes) -> bytes:
    return len(body).to_bytes(3, "little") + bytes((seq & 0xFF,)) + body


def lenenc_str(s: bytes) -> bytes:
    """Length-encoded string; callers keep values under 251 bytes (1-byte length)."""
    return bytes((len(s),)) + s


def mysql_greeting(rng: Random) -> bytes:
    """Protocol-10 server greeting of a MySQL 8.0 server."""
    salt = bytes(rng.randrange(33, 127) for _ in range(20))
    body = (b"\x0a8.0.36\x00" + pack("<I", rng.randrange(1, 1 << 20)) + salt[:8] + b"\x00"
            + pack("<HBHHB", 0xFFFF, 0xFF, 0x0002, 0xDFFF, 21) + bytes(10) + salt[8:] + b"\x00"
            + b"caching_sha2_password\x00")
    return mysql_packet(0, body)


def mysql_login(rng: Random, user: bytes, db: bytes) -> bytes:
    """HandshakeResponse41 without SSL, CLIENT_DEPRECATE_EOF or connect attrs."""
    caps = 0x000AA20F  # LONG_PASSWORD|FOUND_ROWS|LONG_FLAG|CONNECT_WITH_DB|PROTOCOL_41|TRANSACTIONS|SECURE_CONN|MULTI_RESULTS|PLUGIN_AUTH
    body = (pack("<IIB", caps, 1 << 24, 0xFF) + bytes(23) + user + b"\x00" + b"\x20" + rng.randbytes(32)
            + db + b"\x00" + b"caching_sha2_password\x00")
    return mysql_packet(1, body)


MYSQL_OK_LOGIN = mysql_packet(2, b"\x00\x00\x00\x02\x00\x00\x00")
MYSQL_QUIT = mysql_packet(0, b"\x01")
MYSQL_EOF = b"\xfe\x00\x00\x22\x00"
MYSQL_COLUMNS = ((b"id", 0x08, 0x3F), (b"name", 0xFD, 0xFF), (b"payload", 0xFC, 0x3F))  # BIGINT, VARCHAR, BLOB


def mysql_query_response(rng: Random, db: bytes, table: bytes, noise: Callable[[int], bytes]) -> tuple[bytes, bytes]:
    """A COM_QUERY and its classic (EOF-delimited) text result set or OK packet."""
    if rng.random() < 0.3:
        query = b"UPDATE " + table + b" SET name='" + rng.choice(WORDS).encode() + b"' WHERE id=" + str(rng.randrange(10**6)).encode()
        return mysql_packet(0, b"\x03" + query), mysql_packet(1, b"\x00\x01\x00\x02\x00\x00\x00")
    query = b"SELECT id, name, payload FROM " + table + b" WHERE id > " + str(rng.randrange(10**6)).encode() + b" LIMIT 50"
    seq = itertools.count(1)
    out = [mysql_packet(next(seq), bytes((len(MYSQL_COLUMNS),)))]
    for name, col_type, charset in MYSQL_COLUMNS:
        coldef = (lenenc_str(b"def") + lenenc_str(db) + lenenc_str(table) + lenenc_str(table)
                  + lenenc_str(name) + lenenc_str(name) + b"\x0c" + pack("<HIBHB", charset, 255, col_type, 0, 0) + b"\x00\x00")
        out.append(mysql_packet(next(seq), coldef))
    out.append(mysql_packet(next(seq), MYSQL_EOF))
    for _ in range(rng.randrange(1, 60)):
        row = (lenenc_str(str(rng.randrange(10**9)).encode()) + lenenc_str(rng.choice(WORDS).encode())
               + lenenc_str(noise(rng.randrange(16, 250))))
        out.append(mysql_packet(next(seq), row))
    out.append(mysql_packet(next(seq), MYSQL_EOF))
    return mysql_packet(0, b"\x03" + query), b"".join(out)


def ntp_packet(rng: Random, server: bool, origin: int) -> bytes:
    """48-byte NTPv4 client (mode 3) or server (mode 4) packet; timestamps are NTP era-0 64-bit."""
    now = (EPOCH_S + 2_208_988_800) << 32 | rng.getrandbits(32)
    if not server:
        return pack("!BBBbIII4Q", 0x23, 0, 6, -23, 0, 0, 0, 0, 0, 0, now)
    return pack("!BBBbIII4Q", 0x24, 2, 6, -25, 0x0000_0A00, 0x0000_1200, 0xC0A80101, now - (64 << 32), origin, now, now + 40)


def dns_pair(rng: Random, name: str, qtype: int) -> tuple[bytes, bytes]:
    """Wire-format DNS query and response (id 0, patched per flow)."""
    dns = dpkt.dns
    question = dns.DNS.Q(name=name, type=qtype)
    query = dns.DNS(id=0, op=dns.DNS_RD, qd=[question])
    answers = []
    rcode = dns.DNS_RCODE_NXDOMAIN if rng.random() < 0.05 else dns.DNS_RCODE_NOERR
    if rcode == dns.DNS_RCODE_NOERR:
        owner = name
        if rng.random() < 0.3:
            owner = f"edge-{rng.randrange(100)}.cdn-{rng.choice(WORDS)}.net"
            answers.append(dns.DNS.RR(name=name, type=dns.DNS_CNAME, ttl=300, cname=owner))
        for _ in range(rng.randrange(1, 4)):
            if qtype == dns.DNS_A:
                answers.append(dns.DNS.RR(name=owner, type=qtype, ttl=60, ip=rng.randbytes(4)))
            elif qtype == dns.DNS_AAAA:
                answers.append(dns.DNS.RR(name=owner, type=qtype, ttl=60, ip6=b"\x2a\x00" + rng.randbytes(14)))
            else:
                answers.append(dns.DNS.RR(name=name, type=qtype, ttl=3600, preference=10, mxname="mx." + name))
    response = dns.DNS(id=0, op=dns.DNS_QR | dns.DNS_RD | dns.DNS_RA, rcode=rcode, qd=[question], an=answers)
    return bytes(query), bytes(response)


# --------------------------------------------------------------------------
# Flows
# --------------------------------------------------------------------------

V6_SHARE = 0.10
VLAN_SHARE = 0.07
VLAN_IDS = (10, 20, 30, 100)
ServerPool = tuple[list[Host], list[Host]]  # (IPv4 hosts, IPv6 hosts)


def tcp_tmpl(sport: int, dport: int) -> bytes:
    return pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0, 0, 0, 0)


def udp_tmpl(sport: int, dport: int) -> bytes:
    return pack("!HHHH", sport, dport, 0, 0)


def icmp_tmpl(icmp_type: int, ident: int) -> bytes:
    return pack("!BBHHH", icmp_type, 0, 0, ident, 0)


class World:
    """Hosts, payload pools and one generator function per flow type."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.noise = rng.randbytes(1 << 21)
        self.text = self._make_text(1 << 20)
        self.clients = ([self._host(4, internal=True) for _ in range(2000)],
                        [self._host(6, internal=True) for _ in range(300)])
        self.web = self._servers(300, 60, named=True)
        self.mysql = ([self._host(4, internal=True) for _ in range(8)], [self._host(6, internal=True) for _ in range(2)])
        self.resolvers = self._servers(4, 2)
        self.ntp = self._servers(6, 2)
        self.closed = self._servers(50, 10)
        self.bulk = self._servers(20, 0)
        self.scanners = [self._host(4) for _ in range(3)]
        names = [h.name for h in self.web[0] + self.web[1]]
        qtypes = (dpkt.dns.DNS_A,) * 6 + (dpkt.dns.DNS_AAAA,) * 3 + (dpkt.dns.DNS_MX,)
        self.dns_pool = [dns_pair(rng, rng.choice(names), rng.choice(qtypes)) for _ in range(600)]
        # Weights count flows, not packets; tuned so that 1M packets average ~510-byte
        # frames and hold a few hundred fragmented datagrams.
        flows: tuple[tuple[Callable[[], Iterator[bytearray]], float], ...] = (
            (self.dns_flow, 30), (self.http_flow, 17), (self.tls_flow, 24), (self.mysql_flow, 4),
            (self.icmp_flow, 6), (self.ntp_flow, 5), (self.rejected_flow, 7.5),
            (self.scan_flow, 0.08), (self.fragment_flow, 0.45),
        )
        self.factories = [f for f, _ in flows]
        self.cum_weights = list(itertools.accumulate(w for _, w in flows))

    # -- setup helpers ------------------------------------------------------

    def _make_text(self, size: int) -> bytes:
        """HTML-ish filler so HTTP bodies look like text, not noise."""
        rng, lines, total = self.rng, [], 0
        while total < size:
            line = "<p class=\"%s\">%s</p>\n" % (rng.choice(WORDS), " ".join(rng.choices(WORDS, k=rng.randrange(4, 20))))
            lines.append(line)
            total += len(line)
        return "".join(lines).encode()

    def _host(self, version: int, internal: bool = False, named: bool = False) -> Host:
        rng = self.rng
        if version == 6:
            ip = bytes.fromhex("20010db80001") + rng.randbytes(10) if internal else b"\x2a\x00\x14\x50" + rng.randbytes(12)
        elif internal:
            ip = bytes((10, rng.randrange(1, 9), rng.randrange(256), rng.randrange(1, 255)))
        else:
            ip = bytes((rng.choice((13, 23, 34, 52, 93, 104, 142, 151, 185, 199)),
                        rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)))
        mac = b"\x02" + rng.randbytes(5) if internal else GATEWAY_MAC
        ttl = rng.choice((64, 128)) if internal else rng.randrange(40, 60)
        name = f"{rng.choice(SUBDOMAINS)}.{rng.choice(WORDS)}{rng.choice(WORDS)}.{rng.choice(TLDS)}" if named else ""
        return Host(ip, mac, ttl, name, rng.randrange(32768, 60768))

    def _servers(self, n4: int, n6: int, named: bool = False) -> ServerPool:
        return [self._host(4, named=named) for _ in range(n4)], [self._host(6, named=named) for _ in range(n6)]

    def _noise(self, n: int) -> bytes:
        off = self.rng.randrange(len(self.noise) - n)
        return self.noise[off:off + n]

    def _textual(self, n: int) -> bytes:
        off = self.rng.randrange(len(self.text) - n)
        return self.text[off:off + n]

    def _endpoints(self, servers: ServerPool, v4_only: bool = False) -> tuple[Host, Host, int]:
        """Pick client, server and VLAN id, honouring the IPv6 and VLAN shares."""
        rng = self.rng
        v6 = not v4_only and bool(servers[1]) and rng.random() < V6_SHARE
        vlan = rng.choice(VLAN_IDS) if rng.random() < VLAN_SHARE else 0
        return rng.choice(self.clients[v6]), rng.choice(servers[v6]), vlan

    def _pair(self, client: Host, server: Host, proto: int, fwd: bytes, rev: bytes,
              vlan: int, df: bool = True) -> tuple[Leg, Leg]:
        ipid = self.rng.getrandbits(16)
        return (Leg(client, server, proto, fwd, vlan, ipid, df),
                Leg(server, client, proto, rev, vlan, ipid ^ 0x5A5A, df))

    def _tcp(self, servers: ServerPool, dport: int) -> tuple[TcpConn, Host]:
        client, server, vlan = self._endpoints(servers)
        sport = client.next_port()
        c, s = self._pair(client, server, PROTO_TCP, tcp_tmpl(sport, dport), tcp_tmpl(dport, sport), vlan)
        return TcpConn(self.rng, c, s), server

    def _rounds(self) -> int:
        return self.rng.choices((1, 2, 3, 5), (60, 25, 10, 5))[0]

    def _body_size(self, median: int, cap: int) -> int:
        return min(cap, int(self.rng.lognormvariate(math.log(median), 1.4)))

    def new_flow(self) -> Iterator[bytearray]:
        return self.rng.choices(self.factories, cum_weights=self.cum_weights)[0]()

    # -- TCP applications ---------------------------------------------------

    def http_exchange(self, host: str) -> tuple[bytes, bytes]:
        rng = self.rng
        word = rng.choice(WORDS)
        path = rng.choice(("/", "/index.html", f"/static/{word}.js", f"/api/v1/{word}/{rng.randrange(10**5)}", f"/img/{word}.png"))
        head = f"Host: {host}\r\nUser-Agent: {rng.choice(USER_AGENTS)}\r\nAccept: */*\r\nConnection: keep-alive\r\n"
        if rng.random() < 0.15:
            body = b'{"q":"' + self._textual(self._body_size(300, 8000)).replace(b'"', b"'").replace(b"\n", b" ") + b'"}'
            request = f"POST {path} HTTP/1.1\r\n{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        else:
            request = f"GET {path} HTTP/1.1\r\n{head}\r\n".encode()
        status = rng.choices(("200 OK", "304 Not Modified", "404 Not Found", "301 Moved Permanently"), (80, 10, 5, 5))[0]
        ctype = rng.choice(CONTENT_TYPES)
        if status.startswith("304"):
            body = b""
        elif status.startswith("200"):
            size = self._body_size(2000, 400_000)
            body = self._noise(size) if ctype == "application/octet-stream" else self._textual(size)
        else:
            ctype, body = "text/html", b"<html><body><h1>" + status.encode() + b"</h1></body></html>\n"
        extra = f"Location: https://{host}{path}\r\n" if status.startswith("301") else ""
        response = (f"HTTP/1.1 {status}\r\nServer: nginx/1.24.0\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body
        return request, response

    def http_flow(self) -> Iterator[bytearray]:
        conn, server = self._tcp(self.web, 80)
        yield from conn.handshake()
        for _ in range(self._rounds()):
            request, response = self.http_exchange(server.name)
            yield from conn.send(0, request, ack_end=False)
            yield from conn.send(1, response)
        yield from conn.close(int(self.rng.random() < 0.3))

    def tls_records(self, size: int) -> bytes:
        """Opaque TLS 1.3 application-data records totalling ``size`` content bytes."""
        out = bytearray()
        while size > 0:
            n = min(size, 16401)
            out += pack("!BHH", 23, 0x0303, n)
            out += self._noise(n)
            size -= n
        return bytes(out)

    def tls_flow(self) -> Iterator[bytearray]:
        rng = self.rng
        conn, server = self._tcp(self.web, 443)
        yield from conn.handshake()
        yield from conn.send(0, tls_client_hello(rng, server.name), ack_end=False)
        yield from conn.send(1, tls_server_hello(rng) + self.tls_records(rng.randrange(2500, 5000)), ack_end=False)
        client_finished = TLS_CCS + self.tls_records(53)
        for i in range(self._rounds()):
            request = self.tls_records(rng.randrange(80, 1200))
            yield from conn.send(0, client_finished + request if i == 0 else request, ack_end=False)
            yield from conn.send(1, self.tls_records(self._body_size(2000, 500_000)))
        yield from conn.send(0, self.tls_records(19), ack_end=False)  # encrypted close_notify
        yield from conn.close(0)

    def mysql_flow(self) -> Iterator[bytearray]:
        rng = self.rng
        conn, _ = self._tcp(self.mysql, 3306)
        db, table = rng.choice(WORDS).encode(), rng.choice(WORDS).encode() + b"s"
        yield from conn.handshake()
        yield from conn.send(1, mysql_greeting(rng), ack_end=False)
        yield from conn.send(0, mysql_login(rng, b"app_" + rng.choice(WORDS).encode(), db), ack_end=False)
        yield from conn.send(1, MYSQL_OK_LOGIN, ack_end=False)
        for _ in range(rng.randrange(1, 8)):
            query, result = mysql_query_response(rng, db, table, self._noise)
            yield from conn.send(0, query, ack_end=False)
            yield from conn.send(1, result, ack_end=False)
        yield from conn.send(0, MYSQL_QUIT, ack_end=False)
        yield from conn.close(0)

    def rejected_flow(self) -> Iterator[bytearray]:
        """SYN to a closed port, answered by RST/ACK (sometimes retried once)."""
        conn, _ = self._tcp(self.closed, self.rng.choice((23, 445, 3389, 8080, 8443, 5432, 25)))
        client, server = conn.legs
        for _ in range(1 + (self.rng.random() < 0.3)):
            yield client.tcp(conn.seq[0], 0, SYN, 64240, b"", SYN_OPTS)
            yield server.tcp(0, (conn.seq[0] + 1) & MASK32, RST | ACK, 0)

    def scan_flow(self) -> Iterator[bytearray]:
        """nmap -sS style sweep of one internal host: closed ports RST, open ports SYN/ACK then RST."""
        rng = self.rng
        scanner, target = rng.choice(self.scanners), rng.choice(self.clients[0])
        sport = rng.randrange(40000, 65000)
        for port in rng.sample(range(1, 10000), rng.randrange(40, 250)):
            probe, answer = self._pair(scanner, target, PROTO_TCP, tcp_tmpl(sport, port), tcp_tmpl(port, sport), 0)
            seq = rng.getrandbits(32)
            yield probe.tcp(seq, 0, SYN, 1024, b"", SCAN_OPTS)
            roll = rng.random()
            if roll < 0.05:
                yield answer.tcp(rng.getrandbits(32), (seq + 1) & MASK32, SYN | ACK, 64240, b"", SCAN_OPTS)
                yield probe.tcp((seq + 1) & MASK32, 0, RST, 0)
            elif roll < 0.85:
                yield answer.tcp(0, (seq + 1) & MASK32, RST | ACK, 0)

    # -- UDP / ICMP ---------------------------------------------------------

    def dns_flow(self) -> Iterator[bytearray]:
        """One or two lookups from the same socket (often A then AAAA)."""
        rng = self.rng
        client, server, vlan = self._endpoints(self.resolvers)
        sport = client.next_port()
        c, s = self._pair(client, server, PROTO_UDP, udp_tmpl(sport, 53), udp_tmpl(53, sport), vlan, df=False)
        for _ in range(1 + (rng.random() < 0.4)):
            query, response = (bytearray(m) for m in rng.choice(self.dns_pool))
            txid = rng.getrandbits(16)
            _U16.pack_into(query, 0, txid)
            _U16.pack_into(response, 0, txid)
            yield c.udp(query)
            if rng.random() < 0.97:
                yield s.udp(response)

    def ntp_flow(self) -> Iterator[bytearray]:
        rng = self.rng
        client, server, vlan = self._endpoints(self.ntp)
        sport = 123 if rng.random() < 0.5 else client.next_port()
        c, s = self._pair(client, server, PROTO_UDP, udp_tmpl(sport, 123), udp_tmpl(123, sport), vlan, df=False)
        request = ntp_packet(rng, False, 0)
        yield c.udp(request)
        yield s.udp(ntp_packet(rng, True, int.from_bytes(request[40:], "big")))

    def icmp_flow(self) -> Iterator[bytearray]:
        """ping: a few echo request/reply pairs with Linux-style 56-byte payloads."""
        rng = self.rng
        client, server, vlan = self._endpoints(self.web)
        proto, req, rep = (PROTO_ICMP6, 128, 129) if client.v6 else (PROTO_ICMP, 8, 0)
        ident = rng.getrandbits(16)
        c, s = self._pair(client, server, proto, icmp_tmpl(req, ident), icmp_tmpl(rep, ident), vlan)
        filler = bytes(range(0x10, 0x40))
        for seq in range(1, rng.randrange(2, 6)):
            payload = pack("<Q", EPOCH_S + seq) + filler
            yield c.icmp(seq, payload)
            if rng.random() < 0.95:
                yield s.icmp(seq, payload)

    def fragment_flow(self) -> Iterator[bytearray]:
        """One large IPv4 UDP datagram split into 2-5 fragments, sometimes sent in reverse."""
        rng = self.rng
        client, server, vlan = self._endpoints(self.bulk, v4_only=True)
        pieces = rng.randrange(2, 6)
        sport, dport = rng.randrange(50000, 54000), rng.randrange(50000, 54000)  # no Wireshark dissector here
        c, _ = self._pair(client, server, PROTO_UDP, udp_tmpl(sport, dport), udp_tmpl(dport, sport), vlan, df=False)
        datagram = c.udp(self._textual(pieces * rng.randrange(900, 1400) - 8))
        frags = c.fragments(datagram, pieces)
        if rng.random() < 0.3:
            frags.reverse()
        yield from frags


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


class PcapWriter:
    """Classic microsecond pcap (LINKTYPE_ETHERNET) written in large chunks."""

    FLUSH_AT = 1 << 22

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")
        self._buf = bytearray(_PCAP_HDR.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.packets = 0
        self.bytes = len(self._buf)

    def write(self, ts_us: int, frame: bytearray) -> None:
        n = len(frame)
        self._buf += _REC_HDR.pack(ts_us // 1_000_000, ts_us % 1_000_000, n, n)
        self._buf += frame
        self.packets += 1
        self.bytes += 16 + n
        if len(self._buf) >= self.FLUSH_AT:
            self._file.write(self._buf)
            self._buf.clear()

    def close(self) -> None:
        self._file.write(self._buf)
        self._file.close()


def generate(out: Path, max_packets: float, max_bytes: float, seed: int, concurrency: int) -> PcapWriter:
    """Round-robin at random over ``concurrency`` live flows, replacing each as it ends."""
    rng = Random(seed)
    world = World(rng)
    slots = [world.new_flow() for _ in range(concurrency)]
    writer = PcapWriter(out)
    clock = EPOCH_S * 1_000_000
    rate = 1.0 / MEAN_GAP_US
    try:
        while writer.packets < max_packets and writer.bytes < max_bytes:
            i = int(rng.random() * concurrency)
            frame = next(slots[i], None)
            if frame is None:
                slots[i] = world.new_flow()
                continue
            clock += int(rng.expovariate(rate))
            writer.write(clock, frame)
    finally:
        writer.close()
    return writer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packets", type=int, default=1_000_000, help="number of packets (default 1,000,000)")
    p.add_argument("--size-mb", type=float, help="instead of --packets, stop once the file reaches about this many MB (10^6 bytes)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--flows", type=int, default=3000, help="concurrent flows (default 3000)")
    p.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    max_packets = math.inf if args.size_mb else args.packets
    max_bytes = args.size_mb * 1e6 if args.size_mb else math.inf
    start = time.perf_counter()
    w = generate(args.output, max_packets, max_bytes, args.seed, args.flows)
    elapsed = time.perf_counter() - start
    print(json.dumps({"output": str(args.output), "packets": w.packets, "bytes": w.bytes,
                      "avg_frame": round((w.bytes - 24) / max(w.packets, 1) - 16, 1), "seconds": round(elapsed, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
