"""A small site for baseline tests: groups, and captures of known and new connections (built with pcapgen)."""
from __future__ import annotations

import socket
from pathlib import Path

import dpkt
import pcapgen as g

WEB, DB, API, DNS = "10.10.1.5", "10.10.2.7", "10.10.3.9", "10.10.0.53"
NEWHOST, EXTERNAL_IP = "10.10.4.4", "93.184.216.34"
GROUPS_YAML = """\
groups:
  web: [10.10.1.0/24]
  db:
    members: [10.10.2.0/24]
    namespace: prod
    labels: {app: db}
  api: [10.10.3.0/24]
  dns: [10.10.0.53]
"""


def tcp_exchange(c: str, cp: int, s: str, sp: int, t0: float, request: bytes, response: bytes) -> list:
    """Handshake, one request and one response, FIN close: 8 packets."""
    return [
        (t0, g.tcp(c, cp, s, sp, "S", seq=100)),
        (t0 + 0.001, g.tcp(s, sp, c, cp, "SA", seq=500, ack=101)),
        (t0 + 0.002, g.tcp(c, cp, s, sp, "A", seq=101, ack=501)),
        (t0 + 0.003, g.tcp(c, cp, s, sp, "PA", seq=101, ack=501, data=request)),
        (t0 + 0.004, g.tcp(s, sp, c, cp, "PA", seq=501, ack=101 + len(request), data=response)),
        (t0 + 0.005, g.tcp(c, cp, s, sp, "FA", seq=101 + len(request), ack=501 + len(response))),
        (t0 + 0.006, g.tcp(s, sp, c, cp, "FA", seq=501 + len(response), ack=102 + len(request))),
        (t0 + 0.007, g.tcp(c, cp, s, sp, "A", seq=102 + len(request), ack=502 + len(response))),
    ]


def http_get(host: str, uri: str = "/") -> bytes:
    return f"GET {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sitegen\r\n\r\n".encode()


HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
REDIS_PING, REDIS_PONG = b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"


def dns_exchange(c: str, s: str, t0: float, name: str, answer: str, ident: int = 0x1234) -> list:
    q = dpkt.dns.DNS(id=ident, qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A, cls=dpkt.dns.DNS_IN)])
    rr = dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_A, cls=dpkt.dns.DNS_IN, ttl=60, ip=socket.inet_aton(answer))
    r = dpkt.dns.DNS(id=ident, qr=dpkt.dns.DNS_R, op=dpkt.dns.DNS_RD | dpkt.dns.DNS_RA, qd=q.qd, an=[rr])
    return [(t0, g.udp(c, 40000 + ident % 1000, s, 53, bytes(q))), (t0 + 0.001, g.udp(s, 53, c, 40000 + ident % 1000, bytes(r)))]


def known(t0: float) -> list:
    """The connections the baseline learns: web -> api HTTP, web -> db Redis and tcp/9999, web -> dns DNS."""
    return (dns_exchange(WEB, DNS, t0, "api.internal", API)
            + tcp_exchange(WEB, 41000, API, 80, t0 + 1, http_get("api.internal"), HTTP_OK)
            + tcp_exchange(WEB, 41001, DB, 6379, t0 + 2, REDIS_PING, REDIS_PONG)
            + tcp_exchange(WEB, 41002, DB, 9999, t0 + 3, b"hello", b"world!"))


def learn_capture(path: Path) -> Path:
    return g.write(path, known(1_700_000_000.0))


def check_capture(path: Path, host: str = "cdn.example.net", uri: str = "/") -> Path:
    """The known connections again, plus a new edge (web -> Host:10.10.4.4 tcp/22), a new port (web -> db tcp/7777)
    and an external destination (web -> 93.184.216.34 HTTP on tcp/8080, with the given Host and URL)."""
    t0 = 1_700_100_000.0
    pkts = (known(t0)
            + tcp_exchange(WEB, 42000, NEWHOST, 22, t0 + 10, b"hello", b"world!")
            + tcp_exchange(WEB, 42001, DB, 7777, t0 + 11, b"hello", b"world!")
            + tcp_exchange(WEB, 42002, EXTERNAL_IP, 8080, t0 + 12, http_get(host, uri), HTTP_OK))
    return g.write(path, pkts)
