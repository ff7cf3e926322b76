"""Tiny capture builder for tests: Ethernet/IPv4 TCP, UDP and ICMP frames written with dpkt."""
from __future__ import annotations

import socket
from pathlib import Path

import dpkt


def _ip(src: str, dst: str, proto: int, payload) -> dpkt.ip.IP:
    return dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, data=payload)


def eth(ip: dpkt.ip.IP) -> bytes:
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def tcp(src: str, sport: int, dst: str, dport: int, flags: str, seq: int = 0, ack: int = 0, data: bytes = b"") -> bytes:
    bits = {"S": dpkt.tcp.TH_SYN, "A": dpkt.tcp.TH_ACK, "F": dpkt.tcp.TH_FIN, "R": dpkt.tcp.TH_RST,
            "P": dpkt.tcp.TH_PUSH}
    f = 0
    for c in flags:
        f |= bits[c]
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=f, win=65535, data=data)
    return eth(_ip(src, dst, dpkt.ip.IP_PROTO_TCP, seg))


def udp(src: str, sport: int, dst: str, dport: int, data: bytes = b"x") -> bytes:
    return eth(_ip(src, dst, dpkt.ip.IP_PROTO_UDP, dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(data), data=data)))


def icmp_echo(src: str, dst: str, ident: int, seq: int, reply: bool = False) -> bytes:
    echo = dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=b"ping")
    msg = dpkt.icmp.ICMP(type=0 if reply else 8, code=0, data=echo)
    return eth(_ip(src, dst, dpkt.ip.IP_PROTO_ICMP, msg))


def write(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for ts, frame in packets:
            w.writepkt(frame, ts=ts)
    return path


def handshake(c: str, cp: int, s: str, sp: int, t0: float, close: bool = True) -> list[tuple[float, bytes]]:
    """A complete TCP conversation (one request/response); optionally closed with FINs."""
    pkts = [
        (t0, tcp(c, cp, s, sp, "S", seq=100)),
        (t0 + 0.001, tcp(s, sp, c, cp, "SA", seq=500, ack=101)),
        (t0 + 0.002, tcp(c, cp, s, sp, "A", seq=101, ack=501)),
        (t0 + 0.003, tcp(c, cp, s, sp, "PA", seq=101, ack=501, data=b"hello")),
        (t0 + 0.004, tcp(s, sp, c, cp, "PA", seq=501, ack=106, data=b"world!")),
    ]
    if close:
        pkts += [
            (t0 + 0.005, tcp(c, cp, s, sp, "FA", seq=106, ack=507)),
            (t0 + 0.006, tcp(s, sp, c, cp, "FA", seq=507, ack=107)),
            (t0 + 0.007, tcp(c, cp, s, sp, "A", seq=107, ack=508)),
        ]
    return pkts
