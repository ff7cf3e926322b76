#!/usr/bin/env python3
"""Regenerate nvpcap's sample captures in samples/pcaps/.

These are CONSTRUCTED captures, not recordings: every frame is assembled byte by byte by this script
(struct-packed headers, real IPv4 header, TCP, UDP and ICMP checksums, real DNS wire format), so a fresh
clone can test itself without downloading anything. The output is deterministic: timestamps, addresses,
sequence numbers and the "random" bytes of bad_magic.pcap are fixed, gzip is written with mtime 0, so
running the script twice gives byte-identical files.

    python samples/make_samples.py            # write samples/pcaps/ (+ MANIFEST.csv, MALFORMED_FRAMES.csv)
    python samples/make_samples.py --check    # ... then read every file back with tshark and capinfos

MANIFEST.csv has one row per capture: file (relative to samples/pcaps/), packets (records a reader can
read; for corrupt files, the records before the damage), description, expected. `expected` is
`key=value` pairs joined by `;`:

    flows, tcp_flows, udp_flows, icmp_flows   bidirectional sessions keyed on the innermost 5-tuple
                                              (tunnels unwrapped; ICMP echo keyed on its identifier)
    malformed, fragments, non_ip, decoded     packets ending in that outcome (fragments = IP fragments)
    capture_truncated                         packets with caplen < original length (snaplen)
    tunneled                                  packets decapsulated from GRE / IP-in-IP / VXLAN
    reassembled, incomplete, overlap          IP datagrams that reassemble / never complete / overlap
    ping_of_death                             reassembled ICMP messages larger than 32000 bytes
    first_ts, last_ts                         absolute timestamps (seconds since the epoch, exact)
    error                                     why a reader must stop (corrupt/ files)
    anything else                             a documented property of that one file
"""
from __future__ import annotations

import argparse
import csv
import gzip
import ipaddress
import random
import re
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import zstandard

OUT = Path(__file__).resolve().parent / "pcaps"

# time: integer nanoseconds since the epoch everywhere
US = 1_000
MS = 1_000_000
S = 1_000_000_000
BASE = 1_700_000_000 * S  # 2023-11-14T22:13:20Z

# IP protocol numbers, IPv6 extension headers
ICMP, TCP, UDP, IPIP, GRE, ICMP6 = 1, 6, 17, 4, 47, 58
HOPOPTS, ROUTING, FRAGMENT, DSTOPTS = 0, 43, 44, 60
# TCP flags
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
# Ethertypes
ET_IPV4, ET_ARP, ET_VLAN, ET_IPV6, ET_QINQ = 0x0800, 0x0806, 0x8100, 0x86DD, 0x88A8
# pcap link types
LT_NULL, LT_ETHERNET, LT_RAW, LT_LINUX_SLL, LT_LINUX_SLL2 = 0, 1, 101, 113, 276
# BSD loopback address families (host byte order in the file; these are macOS / FreeBSD values)
AF_INET, AF_INET6_BSD = 2, 30

Frame = tuple[int, bytes]  # (timestamp ns, link-layer frame as it was on the wire)


@dataclass(frozen=True)
class L4:
    """A transport segment (header + payload, checksum already filled in) on its way from src to dst."""

    ts: int
    src: str
    dst: str
    proto: int
    data: bytes


@dataclass(frozen=True)
class Entry:
    """One MANIFEST.csv row."""

    file: str
    packets: int
    description: str
    expected: str


# --------------------------------------------------------------------------------------------- checksums


def inet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def packed(addr: str) -> bytes:
    """Address string to network-order bytes."""
    return ipaddress.ip_address(addr).packed


def is_v6(addr: str) -> bool:
    """True for an IPv6 address string."""
    return ipaddress.ip_address(addr).version == 6


def pseudo_header(src: str, dst: str, proto: int, length: int) -> bytes:
    """The IPv4 or IPv6 pseudo header that TCP, UDP and ICMPv6 checksums cover."""
    if is_v6(src):
        return packed(src) + packed(dst) + struct.pack("!I3xB", length, proto)
    return packed(src) + packed(dst) + struct.pack("!xBH", proto, length)


# --------------------------------------------------------------------------------------------- transport


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"", *,
        window: int = 64240, options: bytes = b"", data_offset: int | None = None) -> bytes:
    """A TCP segment. `data_offset` (in 32-bit words) overrides the real header length (for malformed ones)."""
    options += b"\0" * (-len(options) % 4)
    doff = (20 + len(options)) // 4 if data_offset is None else data_offset
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (doff << 4) | (flags >> 8), flags & 0xFF, window, 0, 0) + options
    csum = inet_checksum(pseudo_header(src, dst, TCP, len(hdr) + len(payload)) + hdr + payload)
    return hdr[:16] + struct.pack("!H", csum) + hdr[18:] + payload


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes, *, length: int | None = None) -> bytes:
    """A UDP datagram. `length` overrides the header's length field (for malformed ones)."""
    hdr = struct.pack("!HHHH", sport, dport, 8 + len(payload) if length is None else length, 0)
    csum = inet_checksum(pseudo_header(src, dst, UDP, 8 + len(payload)) + hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack("!H", csum) + payload


def icmp_echo(src: str, dst: str, ident: int, seq: int, payload: bytes, *, reply: bool = False) -> bytes:
    """ICMP (IPv4) or ICMPv6 echo request/reply."""
    v6 = is_v6(src)
    icmp_type = (129 if reply else 128) if v6 else (0 if reply else 8)
    msg = struct.pack("!BBHHH", icmp_type, 0, 0, ident, seq) + payload
    covered = pseudo_header(src, dst, ICMP6, len(msg)) + msg if v6 else msg
    return msg[:2] + struct.pack("!H", inet_checksum(covered)) + msg[4:]


MSS_SACK = b"\x01\x01\x04\x02"  # NOP NOP SACK-permitted


def tcp_session(client: str, server: str, cport: int, sport: int, request: bytes, response: bytes, *,
                start: int, rtt: int = 400 * US) -> list[L4]:
    """A complete 9-segment TCP session: handshake, one request, one response, FIN/ACK both ways."""
    mss = 1440 if is_v6(client) else 1460
    syn_opts = struct.pack("!BBH", 2, 4, mss) + MSS_SACK
    cseq, sseq = 0x10000000 + cport * 7919, 0x60000000 + cport * 104729  # deterministic ISNs
    ts = start
    out: list[L4] = []

    def emit(delay: int, from_client: bool, flags: int, payload: bytes = b"", options: bytes = b"") -> None:
        nonlocal ts, cseq, sseq
        ts += delay
        if from_client:
            seg = tcp(client, server, cport, sport, cseq, sseq if flags & ACK else 0, flags, payload,
                      options=options, window=64240)
            out.append(L4(ts, client, server, TCP, seg))
            cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        else:
            seg = tcp(server, client, sport, cport, sseq, cseq, flags, payload, options=options, window=65160)
            out.append(L4(ts, server, client, TCP, seg))
            sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)

    emit(0, True, SYN, options=syn_opts)
    emit(rtt, False, SYN | ACK, options=syn_opts)
    emit(40 * US, True, ACK)
    emit(60 * US, True, PSH | ACK, request)
    emit(rtt + 300 * US, False, PSH | ACK, response)
    emit(40 * US, True, ACK)
    emit(1 * MS, True, FIN | ACK)
    emit(rtt, False, FIN | ACK)
    emit(40 * US, True, ACK)
    return out


def udp_exchange(client: str, server: str, cport: int, sport: int, request: bytes, response: bytes, *,
                 start: int, rtt: int = 12 * MS) -> list[L4]:
    """One UDP request and its answer."""
    return [L4(start, client, server, UDP, udp(client, server, cport, sport, request)),
            L4(start + rtt, server, client, UDP, udp(server, client, sport, cport, response))]


def icmp_exchange(client: str, server: str, ident: int, *, start: int, rtt: int = 800 * US) -> list[L4]:
    """One echo request and its reply (56 bytes of payload, like ping)."""
    payload = bytes(range(56))
    proto = ICMP6 if is_v6(client) else ICMP
    return [L4(start, client, server, proto, icmp_echo(client, server, ident, 1, payload)),
            L4(start + rtt, server, client, proto, icmp_echo(server, client, ident, 1, payload, reply=True))]


# --------------------------------------------------------------------------------------------- applications


def http_get(host: str, path: str = "/") -> bytes:
    """An HTTP/1.1 GET request."""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nvpcap-sample/1.0\r\n"
            "Accept: */*\r\n\r\n").encode()


def http_ok(body: bytes) -> bytes:
    """A 200 response with Content-Length."""
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head + body


PAGE = b"<html><head><title>nvpcap</title></head><body><p>hello from a constructed capture</p></body></html>\n"


def dns_name(name: str) -> bytes:
    """A domain name in DNS label encoding (no compression)."""
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"


def dns_query(qid: int, name: str, qtype: int) -> bytes:
    """A recursive query for one name (qtype 1 = A, 28 = AAAA)."""
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + dns_name(name) + struct.pack("!HH", qtype, 1)


def dns_answer(qid: int, name: str, addr: str, ttl: int = 300) -> bytes:
    """The response to dns_query(qid, name, A/AAAA) with one answer pointing back at the question name."""
    qtype = 28 if is_v6(addr) else 1
    rdata = packed(addr)
    return (struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + dns_name(name) + struct.pack("!HH", qtype, 1)
            + struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(rdata)) + rdata)


def dns_exchange(client: str, server: str, cport: int, name: str, addr: str, qid: int, *, start: int,
                 rtt: int = 12 * MS) -> list[L4]:
    """A DNS A (or AAAA, when `addr` is IPv6) lookup of `name` answered with `addr`."""
    return udp_exchange(client, server, cport, 53, dns_query(qid, name, 28 if is_v6(addr) else 1),
                        dns_answer(qid, name, addr), start=start, rtt=rtt)


# --------------------------------------------------------------------------------------------- network layer


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ident: int = 0, ttl: int = 64, df: bool = False,
         mf: bool = False, frag_offset: int = 0, ihl: int = 5, total_length: int | None = None) -> bytes:
    """An IPv4 packet with a correct header checksum. `ihl` / `total_length` override the header fields."""
    assert frag_offset % 8 == 0
    tot = 20 + len(payload) if total_length is None else total_length
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag_offset // 8)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, ident, flags, ttl, proto, 0, packed(src), packed(dst))
    return hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:] + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, *, ext: Sequence[tuple[int, bytes]] = (),
         hlim: int = 64) -> bytes:
    """An IPv6 packet. `ext` is the extension header chain as (type, header bytes after the next-header byte)."""
    types = [t for t, _ in ext] + [nh]
    chain = b"".join(bytes([nxt]) + body for (_, body), nxt in zip(ext, types[1:]))
    return struct.pack("!IHBB", 6 << 28, len(chain) + len(payload), types[0], hlim) + packed(src) + packed(dst) \
        + chain + payload


def ip_packet(seg: L4, ident: int = 0) -> bytes:
    """Wrap a segment in a plain IPv4 (DF set) or IPv6 header."""
    if is_v6(seg.src):
        return ipv6(seg.src, seg.dst, seg.proto, seg.data)
    return ipv4(seg.src, seg.dst, seg.proto, seg.data, ident=ident, df=True)


def ip_packets(segs: Sequence[L4], ident_base: int = 0x1000) -> list[Frame]:
    """Wrap segments in IP headers, IPv4 identifications counting up from `ident_base`."""
    return [(s.ts, ip_packet(s, ident_base + i)) for i, s in enumerate(segs)]


def padn_ext() -> bytes:
    """Hop-by-hop / destination options header body: length 0 (8 bytes) holding one PadN option of 4."""
    return bytes([0, 1, 4, 0, 0, 0, 0])


def routing_type0_ext(visited: Sequence[str]) -> bytes:
    """Type 0 routing header body with segments left 0 (every listed hop already visited)."""
    return bytes([2 * len(visited), 0, 0]) + b"\0" * 4 + b"".join(packed(a) for a in visited)


def fragment_ext(offset: int, more: bool, ident: int) -> bytes:
    """Fragment header body: reserved, offset | M flag, identification."""
    return struct.pack("!BHI", 0, offset | (1 if more else 0), ident)


def fragment_v4(src: str, dst: str, proto: int, payload: bytes, ident: int, size: int = 1480) -> list[bytes]:
    """Split an IPv4 datagram's payload into fragments of `size` bytes (the last one shorter), in order."""
    offs = range(0, len(payload), size)
    return [ipv4(src, dst, proto, payload[o:o + size], ident=ident, mf=o + size < len(payload), frag_offset=o)
            for o in offs]


def fragment_v6(src: str, dst: str, nh: int, payload: bytes, ident: int, size: int = 1232) -> list[bytes]:
    """Split an IPv6 datagram's payload (after the unfragmentable part) using fragment headers."""
    offs = range(0, len(payload), size)
    return [ipv6(src, dst, nh, payload[o:o + size], ext=[(FRAGMENT, fragment_ext(o, o + size < len(payload), ident))])
            for o in offs]


# --------------------------------------------------------------------------------------------- link layer


def mac_for(addr: str) -> bytes:
    """A locally administered MAC derived from an IP address, so each host keeps one MAC."""
    return b"\x02\x00" + packed(addr)[-4:]


def ether(payload: bytes, ethertype: int, src: bytes, dst: bytes, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """An Ethernet II frame; `vlans` are (TPID, VLAN id) tags, outermost first. No FCS, no padding."""
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    return dst + src + tags + struct.pack("!H", ethertype) + payload


def ip_addrs(pkt: bytes) -> tuple[str, str]:
    """(source, destination) of an IPv4 or IPv6 packet."""
    if pkt[0] >> 4 == 6:
        return str(ipaddress.IPv6Address(pkt[8:24])), str(ipaddress.IPv6Address(pkt[24:40]))
    return str(ipaddress.IPv4Address(pkt[12:16])), str(ipaddress.IPv4Address(pkt[16:20]))


def eth_ip(pkt: bytes, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """Ethernet frame around an IP packet, MACs derived from its addresses."""
    src, dst = ip_addrs(pkt)
    return ether(pkt, ET_IPV6 if pkt[0] >> 4 == 6 else ET_IPV4, mac_for(src), mac_for(dst), vlans)


def linux_sll(pkt: bytes, outgoing: bool) -> bytes:
    """Linux cooked v1 header (16 bytes): packet type, ARPHRD_ETHER, sender address, protocol."""
    src, _ = ip_addrs(pkt)
    proto = ET_IPV6 if pkt[0] >> 4 == 6 else ET_IPV4
    return struct.pack("!HHH8sH", 4 if outgoing else 0, 1, 6, mac_for(src), proto) + pkt


def linux_sll2(pkt: bytes, outgoing: bool, ifindex: int = 2) -> bytes:
    """Linux cooked v2 header (20 bytes): protocol, reserved, ifindex, ARPHRD_ETHER, type, sender address."""
    src, _ = ip_addrs(pkt)
    proto = ET_IPV6 if pkt[0] >> 4 == 6 else ET_IPV4
    return struct.pack("!HHIHBB8s", proto, 0, ifindex, 1, 4 if outgoing else 0, 6, mac_for(src)) + pkt


def bsd_null(pkt: bytes) -> bytes:
    """BSD loopback header: address family as a 4-byte little-endian (host order) integer."""
    return struct.pack("<I", AF_INET6_BSD if pkt[0] >> 4 == 6 else AF_INET) + pkt


def arp_request(sender: str, target: str) -> bytes:
    """Ethernet broadcast ARP who-has."""
    body = struct.pack("!HHBBH6s4s6s4s", 1, ET_IPV4, 6, 4, 1, mac_for(sender), packed(sender), b"\0" * 6,
                       packed(target))
    return ether(body, ET_ARP, mac_for(sender), b"\xff" * 6)


# --------------------------------------------------------------------------------------------- file formats


def pcap_bytes(frames: Sequence[Frame], linktype: int, *, nanosecond: bool = False, big_endian: bool = False,
               snaplen: int = 65535) -> bytes:
    """Classic libpcap file. Frames longer than `snaplen` are cut (caplen < original length)."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = bytearray(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
    for ts, data in frames:
        sec, frac = divmod(ts, S)
        if not nanosecond:
            assert frac % US == 0, "microsecond file with a sub-microsecond timestamp"
            frac //= US
        cap = data[:snaplen]
        out += struct.pack(e + "IIII", sec, frac, len(cap), len(data)) + cap
    return bytes(out)


class Pcapng:
    """Builds a pcapng byte stream block by block; each section may have its own byte order."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.e = "<"

    def _pad(self, b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    def _options(self, opts: Sequence[tuple[int, bytes]]) -> bytes:
        if not opts:
            return b""
        body = b"".join(struct.pack(self.e + "HH", code, len(v)) + self._pad(v) for code, v in opts)
        return body + struct.pack(self.e + "HH", 0, 0)  # opt_endofopt

    def block(self, btype: int, body: bytes, trailer_delta: int = 0) -> None:
        """Append a block; `trailer_delta` is added to the trailing total length (for corrupt files)."""
        body = self._pad(body)
        total = 12 + len(body)
        self.buf += struct.pack(self.e + "II", btype, total) + body + struct.pack(self.e + "I", total + trailer_delta)

    def section(self, big_endian: bool = False, app: str = "nvpcap samples/make_samples.py") -> None:
        """Section Header Block (byte-order magic written in the section's byte order)."""
        self.e = ">" if big_endian else "<"
        self.block(0x0A0D0D0A, struct.pack(self.e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
                   + self._options([(4, app.encode())]))  # shb_userappl

    def interface(self, linktype: int, name: str, tsresol: int | None = None, tsoffset: int | None = None,
                  snaplen: int = 65535) -> None:
        """Interface Description Block with if_name, if_tsresol (9) and if_tsoffset (14) options."""
        opts = [(2, name.encode())]
        if tsresol is not None:
            opts.append((9, bytes([tsresol])))
        if tsoffset is not None:
            opts.append((14, struct.pack(self.e + "q", tsoffset)))
        self.block(1, struct.pack(self.e + "HHI", linktype, 0, snaplen) + self._options(opts))

    def epb(self, iface: int, ts: int, data: bytes, trailer_delta: int = 0) -> None:
        """Enhanced Packet Block; `ts` is in the interface's units (after subtracting its tsoffset)."""
        self.block(6, struct.pack(self.e + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
                   + self._pad(data), trailer_delta)

    def spb(self, data: bytes) -> None:
        """Simple Packet Block: always interface 0, no timestamp."""
        self.block(3, struct.pack(self.e + "I", len(data)) + data)

    def obsolete_pb(self, iface: int, ts: int, data: bytes, drops: int = 0) -> None:
        """Packet Block (type 2), obsoleted by the EPB but still valid for readers."""
        self.block(2, struct.pack(self.e + "HHIIII", iface, drops, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
                   + self._pad(data))

    def nrb(self, names: Sequence[tuple[str, str]]) -> None:
        """Name Resolution Block: one nrb_record_ipv4/ipv6 per (address, name), then nrb_record_end."""
        body = b""
        for addr, name in names:
            value = packed(addr) + name.encode() + b"\0"
            body += struct.pack(self.e + "HH", 2 if is_v6(addr) else 1, len(value)) + self._pad(value)
        self.block(4, body + struct.pack(self.e + "HH", 0, 0))

    def isb(self, iface: int, ts: int, received: int, dropped: int) -> None:
        """Interface Statistics Block with isb_ifrecv (4) and isb_ifdrop (5)."""
        opts = [(4, struct.pack(self.e + "Q", received)), (5, struct.pack(self.e + "Q", dropped))]
        self.block(5, struct.pack(self.e + "III", iface, ts >> 32, ts & 0xFFFFFFFF) + self._options(opts))


def write(name: str, data: bytes) -> None:
    """Write one file under samples/pcaps/."""
    path = OUT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fmt_ts(ts: int) -> str:
    """Nanosecond timestamp as exact seconds with 9 decimals."""
    return f"{ts // S}.{ts % S:09d}"


CORE = ("flows", "tcp_flows", "udp_flows", "icmp_flows", "malformed", "fragments")


def expect(**kv: int | str) -> str:
    """`expected` string: the six core counts (default 0) first, then any extra keys in order given."""
    keys = list(CORE) + [k for k in kv if k not in CORE]
    return ";".join(f"{k}={kv.get(k, 0)}" for k in keys)


# --------------------------------------------------------------------------------------------- captures


def http_ethernet_frames() -> list[Frame]:
    """DNS lookup of www.example.com, then one HTTP/1.1 GET on the address it returned."""
    c, srv, dns = "10.0.0.1", "10.0.0.2", "10.0.0.53"
    segs = dns_exchange(c, dns, 53000, "www.example.com", srv, 0x1A2B, start=BASE)
    segs += tcp_session(c, srv, 40000, 80, http_get("www.example.com", "/index.html"), http_ok(PAGE),
                        start=BASE + 15 * MS)
    return [(ts, eth_ip(p)) for ts, p in ip_packets(segs)]


HTTP_EXPECT = expect(flows=2, tcp_flows=1, udp_flows=1, http_requests=1, dns_queries=1)


def make_http_ethernet() -> list[Entry]:
    """http_ethernet.pcap: the reference capture (us, little-endian, Ethernet)."""
    frames = http_ethernet_frames()
    write("http_ethernet.pcap", pcap_bytes(frames, LT_ETHERNET))
    return [Entry("http_ethernet.pcap", len(frames),
                  "pcap us LE Ethernet: DNS A query/response 10.0.0.1:53000->10.0.0.53:53, then HTTP/1.1 GET "
                  "10.0.0.1:40000->10.0.0.2:80 (handshake, request, 200 response, FIN/ACK both sides)",
                  HTTP_EXPECT + f";first_ts={fmt_ts(frames[0][0])}")]


def make_nanosecond_bigendian() -> list[Entry]:
    """nanosecond_bigendian.pcap: the same packets, big-endian ns pcap."""
    frames = [(ts + 123_456_789 + i * 1_011, f) for i, (ts, f) in enumerate(http_ethernet_frames())]
    write("nanosecond_bigendian.pcap", pcap_bytes(frames, LT_ETHERNET, nanosecond=True, big_endian=True))
    return [Entry("nanosecond_bigendian.pcap", len(frames),
                  "http_ethernet.pcap's packets in a big-endian nanosecond pcap (magic a1 b2 3c 4d), "
                  "timestamps with non-zero nanoseconds",
                  HTTP_EXPECT + f";first_ts={fmt_ts(frames[0][0])};last_ts={fmt_ts(frames[-1][0])}")]


def make_vlan_qinq() -> list[Entry]:
    """vlan_qinq.pcap: 802.1Q-tagged TCP session and QinQ-tagged UDP exchange."""
    t0 = BASE + 1000 * S
    tcp_pkts = ip_packets(tcp_session("10.100.0.1", "10.100.0.2", 44000, 80, http_get("vlan100.example"),
                                      http_ok(PAGE), start=t0))
    udp_pkts = ip_packets(dns_exchange("10.200.0.1", "10.200.0.53", 53200, "qinq.example", "10.200.0.7", 0x0300,
                                       start=t0 + 2 * MS), ident_base=0x2000)
    frames = sorted([(ts, eth_ip(p, [(ET_VLAN, 100)])) for ts, p in tcp_pkts]
                    + [(ts, eth_ip(p, [(ET_QINQ, 200), (ET_VLAN, 300)])) for ts, p in udp_pkts])
    write("vlan_qinq.pcap", pcap_bytes(frames, LT_ETHERNET))
    return [Entry("vlan_qinq.pcap", len(frames),
                  "Ethernet: TCP/HTTP session 10.100.0.1:44000->10.100.0.2:80 tagged 802.1Q vlan 100; DNS "
                  "exchange 10.200.0.1:53200->10.200.0.53:53 double tagged 0x88a8 vlan 200 / 0x8100 vlan 300",
                  expect(flows=2, tcp_flows=1, udp_flows=1, vlan_100=len(tcp_pkts), qinq_200_300=len(udp_pkts)))]


def make_linux_sll() -> list[Entry]:
    """linux_sll.pcap and linux_sll2.pcap: a TCP session each, Linux cooked v1 / v2."""
    entries = []
    for name, lt, wrap, c, s, port, req, resp in (
        ("linux_sll.pcap", LT_LINUX_SLL, linux_sll, "10.113.0.1", "10.113.0.2", 6379,
         b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
        ("linux_sll2.pcap", LT_LINUX_SLL2, linux_sll2, "10.76.0.1", "10.76.0.2", 8080,
         http_get("sll2.example:8080"), http_ok(PAGE)),
    ):
        segs = tcp_session(c, s, 45000, port, req, resp, start=BASE + 2000 * S)
        frames = [(ts, wrap(p, outgoing=ip_addrs(p)[0] == c)) for ts, p in ip_packets(segs)]
        write(name, pcap_bytes(frames, lt))
        entries.append(Entry(name, len(frames),
                             f"linktype {lt} (Linux cooked v{1 if lt == LT_LINUX_SLL else 2}): TCP session "
                             f"{c}:45000->{s}:{port}, client side outgoing, server side incoming",
                             expect(flows=1, tcp_flows=1, linktype=lt)))
    return entries


def make_raw_ip() -> list[Entry]:
    """raw_ip.pcap: linktype 101, IPv4 and IPv6 mixed."""
    t0 = BASE + 3000 * S
    segs = dns_exchange("2001:db8:65::1", "2001:db8:65::53", 53100, "v6.example", "2001:db8:65::2", 0x6565,
                        start=t0)
    segs += tcp_session("10.101.0.1", "10.101.0.2", 43000, 80, http_get("v4.example"), http_ok(PAGE),
                        start=t0 + 20 * MS)
    segs += tcp_session("2001:db8:65::1", "2001:db8:65::2", 43001, 80, http_get("v6.example"), http_ok(PAGE),
                        start=t0 + 20 * MS + 150 * US)
    frames = sorted(ip_packets(segs))
    n4 = sum(1 for _, p in frames if p[0] >> 4 == 4)
    write("raw_ip.pcap", pcap_bytes(frames, LT_RAW))
    return [Entry("raw_ip.pcap", len(frames),
                  "linktype 101 raw IP, IPv4 and IPv6 interleaved: DNS AAAA over IPv6, HTTP over IPv4 "
                  "10.101.0.1:43000->10.101.0.2:80 and HTTP over IPv6 [2001:db8:65::1]:43001->[2001:db8:65::2]:80",
                  expect(flows=3, tcp_flows=2, udp_flows=1, ipv4_packets=n4, ipv6_packets=len(frames) - n4))]


def make_loopback_null() -> list[Entry]:
    """loopback_null.pcap: linktype 0, TCP over IPv4 and UDP over IPv6."""
    t0 = BASE + 4000 * S
    segs = tcp_session("127.0.0.1", "127.0.0.1", 45500, 8080, http_get("localhost:8080"), http_ok(PAGE), start=t0)
    segs += dns_exchange("::1", "::1", 53053, "localhost", "::1", 0x0101, start=t0 + 5 * MS)
    frames = sorted((ts, bsd_null(p)) for ts, p in ip_packets(segs))
    write("loopback_null.pcap", pcap_bytes(frames, LT_NULL))
    return [Entry("loopback_null.pcap", len(frames),
                  "linktype 0 BSD loopback, AF as little-endian u32 (AF_INET=2, AF_INET6=30): TCP/HTTP over "
                  "IPv4 127.0.0.1:45500->127.0.0.1:8080, DNS AAAA over IPv6 [::1]:53053->[::1]:53",
                  expect(flows=2, tcp_flows=1, udp_flows=1, af_inet=9, af_inet6=2))]


def make_ipv6_ext() -> list[Entry]:
    """ipv6_ext.pcap: IPv6 TCP session behind hop-by-hop, routing and destination options headers."""
    c, s = "2001:db8:6::1", "2001:db8:6::2"
    segs = tcp_session(c, s, 40100, 80, http_get("ipv6-ext.example"), http_ok(PAGE), start=BASE + 5000 * S)
    frames: list[Frame] = []
    for i, seg in enumerate(segs):
        ext = [(HOPOPTS, padn_ext()), (DSTOPTS, padn_ext())]
        if i == 3:  # the GET request also carries a type 0 routing header (segments left 0)
            ext = [(HOPOPTS, padn_ext()), (ROUTING, routing_type0_ext(["2001:db8:6::fe"])), (DSTOPTS, padn_ext())]
        frames.append((seg.ts, eth_ip(ipv6(seg.src, seg.dst, TCP, seg.data, ext=ext))))
    write("ipv6_ext.pcap", pcap_bytes(frames, LT_ETHERNET))
    return [Entry("ipv6_ext.pcap", len(frames),
                  "Ethernet IPv6 TCP/HTTP session [2001:db8:6::1]:40100->[2001:db8:6::2]:80, every packet "
                  "hop-by-hop + destination options before TCP; frame 4 (GET) also a type 0 routing header "
                  "(segments left 0)",
                  expect(flows=1, tcp_flows=1, ipv6_ext_packets=len(frames), routing_header_frames=4))]


def gre_frame(outer_c: str, outer_s: str, inner_client: str, pkt: bytes, key: int, ident: int) -> bytes:
    """Inner IPv4 packet in GRE (key present) in IPv4 in Ethernet, outer direction following the inner one."""
    src, dst = (outer_c, outer_s) if ip_addrs(pkt)[0] == inner_client else (outer_s, outer_c)
    gre = struct.pack("!HHI", 0x2000, ET_IPV4, key) + pkt  # flags: K bit, version 0
    return eth_ip(ipv4(src, dst, GRE, gre, ident=ident))


def ipip_frame(outer_c: str, outer_s: str, inner_client: str, pkt: bytes, ident: int) -> bytes:
    """Inner IPv4 packet in IPv4 (protocol 4) in Ethernet."""
    src, dst = (outer_c, outer_s) if ip_addrs(pkt)[0] == inner_client else (outer_s, outer_c)
    return eth_ip(ipv4(src, dst, IPIP, pkt, ident=ident))


def vxlan_frame(outer_c: str, outer_s: str, inner_client: str, pkt: bytes, vni: int, ident: int) -> bytes:
    """Inner Ethernet frame in VXLAN (UDP dport 4789, I flag, VNI) in IPv4 in Ethernet."""
    forward = ip_addrs(pkt)[0] == inner_client
    src, dst = (outer_c, outer_s) if forward else (outer_s, outer_c)
    vxlan = struct.pack("!II", 0x08000000, vni << 8) + eth_ip(pkt)
    return eth_ip(ipv4(src, dst, UDP, udp(src, dst, 51000 if forward else 51001, 4789, vxlan), ident=ident))


def make_tunnels() -> list[Entry]:
    """tunnels.pcap: one inner TCP session each in GRE, IP-in-IP and VXLAN."""
    t0 = BASE + 6000 * S
    frames: list[Frame] = []
    for n, (c, s) in enumerate((("172.16.1.1", "172.16.1.2"), ("172.16.2.1", "172.16.2.2"),
                                ("172.16.3.1", "172.16.3.2"))):
        segs = tcp_session(c, s, 41000 + n, 80, http_get(f"tunnel{n}.example"), http_ok(PAGE), start=t0 + n * S)
        for i, (ts, pkt) in enumerate(ip_packets(segs, ident_base=0x3000 + 0x100 * n)):
            ident = 0x4000 + 0x100 * n + i
            if n == 0:
                frame = gre_frame("192.0.2.1", "192.0.2.2", c, pkt, key=1001, ident=ident)
            elif n == 1:
                frame = ipip_frame("198.51.100.1", "198.51.100.2", c, pkt, ident=ident)
            else:
                frame = vxlan_frame("203.0.113.1", "203.0.113.2", c, pkt, vni=42, ident=ident)
            frames.append((ts, frame))
    write("tunnels.pcap", pcap_bytes(frames, LT_ETHERNET))
    return [Entry("tunnels.pcap", len(frames),
                  "Ethernet: three inner TCP/HTTP sessions, 172.16.1.1->172.16.1.2:80 in GRE (key 1001, proto "
                  "0x0800) over 192.0.2.1<->192.0.2.2; 172.16.2.1->172.16.2.2:80 in IP-in-IP over "
                  "198.51.100.1<->198.51.100.2; 172.16.3.1->172.16.3.2:80 in VXLAN VNI 42 (inner Ethernet) over "
                  "203.0.113.1<->203.0.113.2 UDP 4789",
                  expect(flows=3, tcp_flows=3, tunneled=len(frames), gre=9, ipip=9, vxlan=9, vxlan_vni=42))]


def make_fragments() -> list[Entry]:
    """fragments.pcap: in-order, reversed, IPv6, incomplete, overlapping and ping-of-death fragments."""
    t0 = BASE + 7000 * S
    pkts: list[bytes] = []
    # (a) 3000-byte UDP payload -> 3 fragments, in order
    a = udp("10.1.0.1", "10.1.0.2", 5001, 5002, bytes(i % 251 for i in range(3000)))
    pkts += fragment_v4("10.1.0.1", "10.1.0.2", UDP, a, ident=0xA001)
    # (b) same size, fragments delivered last first
    b = udp("10.1.0.3", "10.1.0.4", 5003, 5004, bytes((i * 7) % 256 for i in range(3000)))
    pkts += fragment_v4("10.1.0.3", "10.1.0.4", UDP, b, ident=0xB002)[::-1]
    # (c) IPv6: 2000-byte UDP payload -> 2 fragments with fragment headers
    c = udp("2001:db8:f::1", "2001:db8:f::2", 5005, 5006, bytes((i * 3) % 256 for i in range(2000)))
    pkts += fragment_v6("2001:db8:f::1", "2001:db8:f::2", UDP, c, ident=0xC0000003)
    # (d) incomplete: only the first fragment of a 3000-byte datagram ever arrives
    d = udp("10.1.0.5", "10.1.0.6", 5007, 5008, bytes(3000))
    pkts += fragment_v4("10.1.0.5", "10.1.0.6", UDP, d, ident=0xD004)[:1]
    # (e) teardrop: fragment 2 starts at offset 24, inside fragment 1's bytes 0..47
    e = udp("10.1.0.7", "10.1.0.8", 5009, 5010, bytes(56))  # 64-byte datagram once (wrongly) reassembled
    pkts += [ipv4("10.1.0.7", "10.1.0.8", UDP, e[:48], ident=0xE005, mf=True),
             ipv4("10.1.0.7", "10.1.0.8", UDP, e[24:64], ident=0xE005, frag_offset=24)]
    # (f) ping of death: 40000-byte echo request payload, 1480-byte fragments
    f = icmp_echo("10.1.0.9", "10.1.0.10", 0x0F0F, 1, bytes(i % 256 for i in range(40000)))
    pod = fragment_v4("10.1.0.9", "10.1.0.10", ICMP, f, ident=0xF006)
    pkts += pod
    frames = [(t0 + i * 100 * US, eth_ip(p)) for i, p in enumerate(pkts)]
    write("fragments.pcap", pcap_bytes(frames, LT_ETHERNET))
    return [Entry("fragments.pcap", len(frames),
                  "Ethernet IP fragments: (a) 10.1.0.1->.2 UDP 3000 B in 3 in-order fragments; (b) 10.1.0.3->.4 same "
                  "in reverse order; (c) IPv6 2001:db8:f::1->::2 UDP 2000 B in 2 fragment-header fragments; (d) "
                  "10.1.0.5->.6 first fragment only (incomplete); (e) 10.1.0.7->.8 overlapping pair, 2nd at offset "
                  "24 (teardrop); (f) 10.1.0.9->.10 ICMP echo with 40000 B payload in 28 fragments (ping of "
                  "death). flows count only clean reassemblies (not d or e)",
                  expect(flows=4, udp_flows=3, icmp_flows=1, fragments=len(frames), reassembled=4, incomplete=1,
                         overlap=1, ping_of_death=1, pod_fragments=len(pod)))]


def make_malformed() -> list[Entry]:
    """malformed.pcap (+ MALFORMED_FRAMES.csv): one broken rule per frame, plus a valid SYN and ARP."""
    c, s = "10.9.0.1", "10.9.0.2"
    mss_sack = struct.pack("!BBH", 2, 4, 1460) + MSS_SACK

    def tcp_frame(sport: int, flags: int, *, options: bytes = b"", data_offset: int | None = None,
                  ihl: int = 5, extra_length: int = 0) -> bytes:
        seg = tcp(c, s, sport, 80, 0x01000000 + sport, 0x02000000 if flags & ACK else 0, flags, options=options,
                  data_offset=data_offset)
        return eth_ip(ipv4(c, s, TCP, seg, ident=sport & 0xFFFF, df=True, ihl=ihl,
                           total_length=20 + len(seg) + extra_length if extra_length else None))

    rows: list[tuple[bytes, str, str]] = [(tcp_frame(50000, SYN, options=mss_sack), "decoded", "valid SYN")]
    bad_flags = ((0x00, "NULL"), (URG, "URG"), (FIN, "FIN"), (PSH, "PSH"), (PSH | FIN, "PSH|FIN"),
                 (PSH | URG, "PSH|URG"), (SYN | FIN, "SYN|FIN"), (PSH | URG | FIN, "Xmas PSH|URG|FIN"),
                 (PSH | URG | FIN | ACK | SYN, "PSH|URG|FIN|ACK|SYN"), (0x3F, "all six"))
    for i, (flags, label) in enumerate(bad_flags):
        rows.append((tcp_frame(50001 + i, flags), "malformed-tcp-flags", f"TCP flags 0x{flags:02x} {label}"))
    rows += [
        (tcp_frame(50020, SYN, options=b"\x02\x03\x05\x01"), "malformed-tcp-option", "SYN with MSS option length 3"),
        (tcp_frame(50021, SYN, data_offset=4), "malformed-tcp-header", "TCP data offset 4 (16 bytes)"),
        (tcp_frame(50022, SYN, ihl=4), "malformed-ipv4-header", "IPv4 IHL 4 (16 bytes)"),
        (tcp_frame(50023, SYN, extra_length=100), "malformed-ip-length",
         "IPv4 total length 100 bytes beyond the frame (not snaplen-cut)"),
        (eth_ip(ipv4(c, s, UDP, udp(c, s, 50024, 53, b"abcd", length=5), ident=50024)), "malformed-udp-header",
         "UDP length field 5"),
        (eth_ip(ipv4(c, s, ICMP, icmp_echo(c, s, 1, 1, b"")[:4], ident=50025)), "malformed-icmp-header",
         "4-byte ICMP message"),
        (ether(b"", ET_IPV4, mac_for(c), mac_for(s))[:10], "malformed-l2", "10-byte Ethernet frame"),
        (arp_request(c, s), "non-ip", "ARP request"),
    ]
    frames = [(BASE + 8000 * S + i * MS, f) for i, (f, _, _) in enumerate(rows)]
    write("malformed.pcap", pcap_bytes(frames, LT_ETHERNET))
    with open(OUT / "MALFORMED_FRAMES.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["frame", "reason"])
        w.writerows((i + 1, reason) for i, (_, reason, _) in enumerate(rows))
    n_bad = sum(1 for _, r, _ in rows if r.startswith("malformed"))
    detail = "; ".join(f"{i + 1}: {what}" for i, (_, _, what) in enumerate(rows))
    return [Entry("malformed.pcap", len(frames),
                  f"Ethernet 10.9.0.1->10.9.0.2, each frame breaks one rule (see MALFORMED_FRAMES.csv): {detail}",
                  expect(flows=1, tcp_flows=1, malformed=n_bad, non_ip=1, decoded=1))]


def make_truncated_snaplen() -> list[Entry]:
    """truncated_snaplen.pcap: an HTTP session captured with snaplen 64."""
    segs = tcp_session("10.64.0.1", "10.64.0.2", 46000, 80, http_get("snaplen.example", "/long/path"),
                       http_ok(PAGE), start=BASE + 9000 * S)
    frames = [(ts, eth_ip(p)) for ts, p in ip_packets(segs)]
    write("truncated_snaplen.pcap", pcap_bytes(frames, LT_ETHERNET, snaplen=64))
    cut = sum(1 for _, f in frames if len(f) > 64)
    return [Entry("truncated_snaplen.pcap", len(frames),
                  "Ethernet, snaplen 64: TCP/HTTP session 10.64.0.1:46000->10.64.0.2:80; the request and response "
                  "frames are cut at 64 bytes (headers complete, payload cut, caplen < original length)",
                  expect(flows=1, tcp_flows=1, capture_truncated=cut, snaplen=64))]


def make_multi_interface() -> list[Entry]:
    """Two sections: LE with an Ethernet (us) and a raw IP (ns, +1 s offset) interface; BE with 1/8 s units."""
    t1 = BASE + 10_000 * S
    # section 1, interface 1 (raw IP): a DNS exchange, the first packet of the file, at a nanosecond time
    if1 = dns_exchange("10.0.2.1", "10.0.2.53", 53001, "ns.example", "10.0.1.2", 0x0909, start=t1 + 123_457)
    if1 = [L4(x.ts + i * 333, x.src, x.dst, x.proto, x.data) for i, x in enumerate(if1)]  # not us-aligned
    # section 1, interface 0 (Ethernet): a TCP session; its last ACK goes in an obsolete Packet Block
    if0 = tcp_session("10.0.1.1", "10.0.1.2", 41100, 80, http_get("web.example"), http_ok(PAGE), start=t1 + 14 * MS)
    events = sorted([(ts, 1, p) for ts, p in ip_packets(if1, 0x5000)]
                    + [(ts, 0, eth_ip(p)) for ts, p in ip_packets(if0, 0x5100)])
    syslog = eth_ip(ipv4("10.0.1.1", "10.0.1.9", UDP, udp("10.0.1.1", "10.0.1.9", 41514, 514,
                                                          b"<13>Nov 14 22:13:20 host nvpcap: spb sample"), df=True))
    ng = Pcapng()
    ng.section()
    ng.interface(LT_ETHERNET, "eth0", tsresol=6)
    ng.interface(LT_RAW, "tun0", tsresol=9, tsoffset=1)
    ng.nrb([("10.0.1.2", "web.example"), ("10.0.2.53", "ns.example"), ("2001:db8::1", "v6.example")])
    n = 0
    for k, (ts, iface, data) in enumerate(events):
        units = ts // US if iface == 0 else ts - 1 * S  # if_tsoffset 1 s: stored time = absolute - 1 s
        if k == len(events) - 1:
            ng.obsolete_pb(iface, units, data)
        else:
            ng.epb(iface, units, data)
        n += 1
        if k == 4:
            ng.spb(syslog)
            n += 1
    ng.isb(0, events[-1][0] // US + 1000, received=n + 2, dropped=2)
    # section 2, big-endian, one Ethernet interface with if_tsresol 0x83 (units of 2^-3 s)
    t2 = BASE + 10_100 * S
    seg2 = dns_exchange("10.0.3.1", "10.0.3.53", 53002, "be.example", "10.0.3.2", 0xBEBE, start=t2, rtt=S // 8)
    seg2 += icmp_exchange("10.0.3.1", "10.0.3.2", 0x0BE0, start=t2 + S // 2, rtt=S // 4)
    ng.section(big_endian=True)
    ng.interface(LT_ETHERNET, "en0", tsresol=0x83)
    for ts, p in ip_packets(seg2, 0x5200):
        assert ts * 8 % S == 0
        ng.epb(0, ts * 8 // S, eth_ip(p))
        n += 1
    write("multi_interface.pcapng", bytes(ng.buf))
    return [Entry("multi_interface.pcapng", n,
                  "pcapng, 2 sections. Section 1 (LE): IDB0 Ethernet if_tsresol 6, IDB1 raw IP if_tsresol 9 + "
                  "if_tsoffset 1 s; NRB; interleaved EPBs: DNS 10.0.2.1:53001->10.0.2.53:53 on IDB1, TCP/HTTP "
                  "10.0.1.1:41100->10.0.1.2:80 on IDB0 whose last ACK is an obsolete Packet Block (type 2); one "
                  "Simple Packet Block (syslog UDP 10.0.1.1:41514->10.0.1.9:514, no timestamp); ISB at the end. "
                  "Section 2 (BE): Ethernet IDB if_tsresol 0x83 (1/8 s), DNS 10.0.3.1->10.0.3.53 and ICMP echo "
                  "10.0.3.1->10.0.3.2",
                  expect(flows=5, tcp_flows=1, udp_flows=3, icmp_flows=1, sections=2, interfaces=3,
                         first_ts=fmt_ts(events[0][0]), last_ts=fmt_ts(seg2[-1].ts)))]


def make_corrupt() -> list[Entry]:
    """corrupt/: files a reader must reject or stop reading part way."""
    good = pcap_bytes(http_ethernet_frames(), LT_ETHERNET)
    frames = http_ethernet_frames()
    last_len = len(frames[-1][1])
    write("corrupt/truncated_last_record.pcap", good[:-(last_len // 2)])
    rng = random.Random(0xBAD)
    junk = bytes(rng.randrange(256) for _ in range(512))
    write("corrupt/bad_magic.pcap", junk)
    write("corrupt/empty.pcap", b"")
    two = pcap_bytes(frames[:2], LT_ETHERNET)
    huge = 200 * 1024 * 1024
    write("corrupt/huge_record_len.pcap",
          two + struct.pack("<IIII", frames[2][0] // S, frames[2][0] % S // US, huge, huge) + frames[2][1])
    ng = Pcapng()
    ng.section()
    ng.interface(LT_ETHERNET, "eth0", tsresol=6)
    for k, (ts, data) in enumerate(frames[:4]):
        ng.epb(0, ts // US, data, trailer_delta=4 if k == 0 else 0)  # block 3 = the first EPB
    write("corrupt/corrupt_block.pcapng", bytes(ng.buf))
    return [
        Entry("corrupt/truncated_last_record.pcap", len(frames) - 1,
              "http_ethernet.pcap with the last record's data cut in the middle",
              f"error=truncated-record;readable={len(frames) - 1}"),
        Entry("corrupt/bad_magic.pcap", 0, "512 pseudo-random bytes (seeded), no pcap/pcapng magic",
              "error=bad-magic;readable=0"),
        Entry("corrupt/empty.pcap", 0, "0-byte file", "error=empty;readable=0"),
        Entry("corrupt/huge_record_len.pcap", 2,
              "2 good records, then a record header claiming 200 MiB captured (209715200)",
              "error=record-too-large;readable=2"),
        Entry("corrupt/corrupt_block.pcapng", 0,
              "pcapng SHB, IDB, then EPBs; the 3rd block (the first EPB) has a trailing total length 4 larger "
              "than its leading one",
              "error=block-length-mismatch;readable=0"),
    ]


def make_compressed() -> list[Entry]:
    """compressed/: http_ethernet.pcap as gzip, zstd, and gzip named .bin."""
    raw = (OUT / "http_ethernet.pcap").read_bytes()
    n = len(http_ethernet_frames())
    gz = gzip.compress(raw, compresslevel=9, mtime=0)
    write("compressed/http_ethernet.pcap.gz", gz)
    write("compressed/http_ethernet.pcap.zst", zstandard.ZstdCompressor(level=19).compress(raw))
    write("compressed/http_ethernet.bin", gz)
    return [
        Entry("compressed/http_ethernet.pcap.gz", n, "http_ethernet.pcap, gzip", HTTP_EXPECT + ";compression=gzip"),
        Entry("compressed/http_ethernet.pcap.zst", n, "http_ethernet.pcap, zstd", HTTP_EXPECT + ";compression=zstd"),
        Entry("compressed/http_ethernet.bin", n, "http_ethernet.pcap, gzip data behind a misleading .bin extension",
              HTTP_EXPECT + ";compression=gzip"),
    ]


MAKERS: tuple[Callable[[], list[Entry]], ...] = (
    make_http_ethernet, make_nanosecond_bigendian, make_vlan_qinq, make_linux_sll, make_raw_ip, make_loopback_null,
    make_ipv6_ext, make_tunnels, make_fragments, make_malformed, make_truncated_snaplen, make_multi_interface,
    make_corrupt, make_compressed,
)


# --------------------------------------------------------------------------------------------- check


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output."""
    return subprocess.run(cmd, capture_output=True, text=True)


def _stderr(proc: subprocess.CompletedProcess[str]) -> str:
    """stderr without tshark's 'Running as user root' banner."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "could be dangerous" not in ln]
    return " | ".join(lines[-2:])


def check(entries: Sequence[Entry]) -> bool:
    """Read every file back with tshark and capinfos; compare packet counts with the manifest.

    Valid files must read without any error, with the manifest's packet count and no bad checksum. Files under
    corrupt/ are expected to make tshark complain; what it said is printed.
    """
    ok = True
    checksums = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
    bad_sum = ("ip.checksum.status==2 || tcp.checksum.status==2 || udp.checksum.status==2 || "
               "icmp.checksum.status==2 || icmpv6.checksum.status==2")
    for e in entries:
        path = str(OUT / e.file)
        corrupt = e.file.startswith("corrupt/")
        ts = run(["tshark", "-r", path, "-q"])
        ci = run(["capinfos", "-c", "-M", path])
        m = re.search(r"Number of packets:\s+(\d+)", ci.stdout)
        count = int(m.group(1)) if m else None
        notes = [f"tshark: {_stderr(ts)}"] if _stderr(ts) else []
        good = corrupt or (ts.returncode == 0 and not notes and count == e.packets)
        if not corrupt and "capture_truncated" not in e.expected:  # cut payloads cannot be checksummed
            nbad = len(run(["tshark", "-r", path, *checksums, "-Y", bad_sum]).stdout.splitlines())
            good &= nbad == 0
            notes += [f"{nbad} bad checksums"] if nbad else []
        if not corrupt:
            nwarn = len(run(["tshark", "-r", path, "-Y", "_ws.malformed || _ws.expert.severity >= 6291456"])
                        .stdout.splitlines())
            notes += [f"{nwarn} frames with tshark warnings (malformed/expert warn)"] if nwarn else []
        if e.file.endswith(".pcapng") and not corrupt:
            full = run(["capinfos", path]).stdout
            m2 = re.search(r"Number of interfaces in file:\s+(\d+)", full)
            sections = len(re.findall(r"^Section \d+:", full, re.M))
            notes.append(f"sections={sections} interfaces={m2.group(1) if m2 else '?'}")
        ok &= good
        print(f"{'ok ' if good else 'BAD'} {e.file:36} manifest={e.packets:<3} capinfos={count}  {'; '.join(notes)}")
    return ok


def main() -> int:
    """Write every capture and the manifests; optionally check them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="read every file back with tshark/capinfos")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    entries = [e for make in MAKERS for e in make()]
    with open(OUT / "MANIFEST.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["file", "packets", "description", "expected"])
        w.writerows((e.file, e.packets, e.description, e.expected) for e in entries)
    print(f"wrote {len(entries)} captures to {OUT}")
    return 0 if not args.check or check(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
