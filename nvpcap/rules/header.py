"""Suricata rule headers: `proto src sport -> dst dport`, compiled once per rule into a FlowHeader whose
`sides` says, for one flow's endpoints, on which side (client, server) the header holds.

    alert tcp $HOME_NET any -> $EXTERNAL_NET [80,8080] (...)

Addresses (Suricata's rules/intro "Source and destination"): `any`, an IPv4/IPv6 address or CIDR
(`10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `2001:db8::/32`), a variable (`$HOME_NET`), a list `[a, b, ...]` (lists
nest), and negation `!x`. A list is the union of its positive items minus the union of its negated ones (only
negated items: everything minus them), as Suricata reads `[10.0.0.0/24, !10.0.0.5]` and `[1:80,![2,4]]`.
An expression that leaves nothing (`!any`) is an error, as in Suricata.
Ports: `any`, `N`, ranges `N:M`, open ranges `N:` and `:M`, lists, variables (`$HTTP_PORTS`) and negation.

Variables: Suricata's defaults (suricata.yaml `vars`), overridable per load (the `vars` mapping of
suricata.load_text/load_file, or the module default rules.suricata.VARS). An undefined variable keeps the rule
out (Suricata refuses such a rule too).

Direction: `->` the header's source is the sender of the packet: on a flow's client side (requests) the source
is the client, on its server side the server; `<>` either way round on both sides; `=>` (Suricata 8,
transactional) the source is the client and the header holds on both sides.

Protocol: `tcp`, `udp`, `sctp`, `icmp` (v4 and v6), `icmpv4`, `icmpv6` restrict the flow's transport; `ip`,
`any` and app-layer names do not (app-layer names restrict the flow's app: Rule.app_proto). Ports hold only on
TCP, UDP and SCTP flows, unless the port expression is `any`.

Addresses are kept as 128-bit integers, IPv4 mapped into ::ffff:0:0/96 (nvpcap's flow keys: two 64-bit words,
records/addresses.py), so one sorted interval list covers both families.
"""
from __future__ import annotations

import ipaddress
from bisect import bisect_right
from dataclasses import dataclass

ADDR_MAX = (1 << 128) - 1
PORT_MAX = 65535
V4_BASE = 0xFFFF << 32  # ::ffff:0:0, where nvpcap's keys put IPv4 addresses
Intervals = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive

# suricata.yaml (Suricata 7) vars: address-groups and port-groups
ADDRESS_VARS: dict[str, str] = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET", "SMTP_SERVERS": "$HOME_NET", "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET", "TELNET_SERVERS": "$HOME_NET", "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET", "DNP3_SERVER": "$HOME_NET", "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET", "MODBUS_SERVER": "$HOME_NET", "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}
PORT_VARS: dict[str, str] = {
    "HTTP_PORTS": "80", "SHELLCODE_PORTS": "!80", "ORACLE_PORTS": "1521", "SSH_PORTS": "22",
    "DNP3_PORTS": "20000", "MODBUS_PORTS": "502", "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]", "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081", "VXLAN_PORTS": "4789", "TEREDO_PORTS": "3544",
}
TRANSPORT_PROTOS: dict[str, tuple[int, ...]] = {
    "tcp": (6,), "tcp-pkt": (6,), "tcp-stream": (6,), "udp": (17,), "sctp": (132,),
    "icmp": (1, 58), "icmpv4": (1,), "icmpv6": (58,),
}
PORTED = frozenset({6, 17, 132})  # transports whose flows have ports
DIRECTIONS = ("->", "<>", "=>")
MAX_VAR_DEPTH = 16


class HeaderError(ValueError):
    """The header cannot be read (the message says what)."""


# ---- interval sets ----

def _normalise(ivs: list[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ivs):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(ivs: Intervals, top: int) -> Intervals:
    out, nxt = [], 0
    for lo, hi in ivs:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= top:
        out.append((nxt, top))
    return tuple(out)


def _minus(a: Intervals, b: Intervals, top: int) -> Intervals:
    comp = _complement(b, top)
    out = []
    i = j = 0
    while i < len(a) and j < len(comp):  # intersection of a and not-b
        lo, hi = max(a[i][0], comp[j][0]), min(a[i][1], comp[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < comp[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def contains(ivs: Intervals | None, value: int) -> bool:
    """`value` in the set; None is "any"."""
    if ivs is None:
        return True
    i = bisect_right(ivs, (value, 1 << 129)) - 1
    return i >= 0 and ivs[i][0] <= value <= ivs[i][1]


# ---- expressions ----

def _split_list(body: str) -> list[str]:
    """Top-level comma-separated items of a list body (nested brackets kept together)."""
    items, cur, depth = [], [], 0
    for ch in body:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise HeaderError(f"unbalanced ']' in [{body}]")
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise HeaderError(f"unbalanced '[' in [{body}]")
    items.append("".join(cur).strip())
    if any(not i for i in items):
        raise HeaderError(f"empty item in [{body}]")
    return items


class _Reader:
    """Evaluates an address or port expression to an interval set."""

    def __init__(self, kind: str, variables: dict[str, str]) -> None:
        self.kind = kind
        self.top = ADDR_MAX if kind == "address" else PORT_MAX
        self.vars = variables

    def eval(self, expr: str, depth: int = 0) -> Intervals:
        expr = expr.strip()
        if not expr:
            raise HeaderError(f"empty {self.kind}")
        if depth > MAX_VAR_DEPTH:
            raise HeaderError(f"{self.kind} variables nest too deep (a loop?)")
        if expr.startswith("!"):
            inner = self.eval(expr[1:], depth)
            return _complement(inner, self.top)
        if expr.startswith("["):
            if not expr.endswith("]"):
                raise HeaderError(f"{self.kind} list {expr!r} is not closed")
            pos: list[tuple[int, int]] = []
            neg: list[tuple[int, int]] = []
            has_pos = False
            for item in _split_list(expr[1:-1]):
                if item.startswith("!"):
                    neg.extend(self.eval(item[1:], depth))
                else:
                    has_pos = True
                    pos.extend(self.eval(item, depth))
            base = _normalise(pos) if has_pos else ((0, self.top),)
            return _minus(base, _normalise(neg), self.top)
        if expr.startswith("$"):
            name = expr[1:]
            if name not in self.vars:
                raise HeaderError(f"{self.kind} variable ${name} is not defined")
            return self.eval(self.vars[name], depth + 1)
        if expr.lower() == "any":
            return ((0, self.top),)
        return self._atom(expr)

    def _atom(self, text: str) -> Intervals:
        if self.kind == "port":
            if ":" in text:
                a, b = (s.strip() for s in text.split(":", 1))
                lo = self._port(a) if a else 0
                hi = self._port(b) if b else PORT_MAX
                if lo > hi:
                    raise HeaderError(f"port range {text!r} is empty")
                return ((lo, hi),)
            p = self._port(text)
            return ((p, p),)
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as e:
            raise HeaderError(f"address {text!r}: {e}") from None
        lo, hi = int(net.network_address), int(net.broadcast_address)
        if net.version == 4:
            lo, hi = lo | V4_BASE, hi | V4_BASE
        return ((lo, hi),)

    @staticmethod
    def _port(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) > PORT_MAX:
            raise HeaderError(f"port {text!r} is not a number within 0..65535")
        return int(text)


def _variables(overrides: dict[str, str] | None, defaults: dict[str, str]) -> dict[str, str]:
    out = dict(defaults)
    for k, v in (overrides or {}).items():
        out[k.lstrip("$")] = str(v)
    return out


def parse_addresses(expr: str, variables: dict[str, str] | None = None) -> Intervals | None:
    """The set an address expression names (None: any address). `variables` override the defaults."""
    ivs = _Reader("address", _variables(variables, ADDRESS_VARS)).eval(expr)
    return _check(ivs, ADDR_MAX, "address", expr)


def parse_ports(expr: str, variables: dict[str, str] | None = None) -> Intervals | None:
    """The set a port expression names (None: any port)."""
    ivs = _Reader("port", _variables(variables, PORT_VARS)).eval(expr)
    return _check(ivs, PORT_MAX, "port", expr)


def _check(ivs: Intervals, top: int, kind: str, expr: str) -> Intervals | None:
    if not ivs:
        raise HeaderError(f"{kind} {expr!r} matches nothing")
    if ivs == ((0, top),):
        return None
    return ivs


# ---- the header ----

@dataclass(frozen=True, slots=True)
class FlowHeader:
    """A compiled header. None address/port sets mean any; empty `protos` means any transport."""

    protos: tuple[int, ...]
    src: Intervals | None
    sport: Intervals | None
    dst: Intervals | None
    dport: Intervals | None
    direction: str  # "->", "<>" or "=>"
    text: str = ""

    def _forward(self, a: int, ap: int, b: int, bp: int, ported: bool) -> bool:
        """Sender a:ap and receiver b:bp as the header's source and destination."""
        if not (contains(self.src, a) and contains(self.dst, b)):
            return False
        if self.sport is None and self.dport is None:
            return True
        return ported and contains(self.sport, ap) and contains(self.dport, bp)

    def sides(self, proto: int, client: int, server: int, cport: int, sport: int) -> tuple[bool, bool]:
        """(holds on the client side, holds on the server side) for a flow's endpoints (addresses as 128-bit
        integers, IPv4 mapped)."""
        if self.protos and proto not in self.protos:
            return (False, False)
        ported = proto in PORTED
        cs = self._forward(client, cport, server, sport, ported)
        if self.direction == "=>":
            return (cs, cs)
        sc = self._forward(server, sport, client, cport, ported)
        if self.direction == "<>":
            either = cs or sc
            return (either, either)
        return (cs, sc)


def compile_header(proto: str, src: str, sport: str, direction: str, dst: str, dport: str,
                   variables: dict[str, str] | None = None) -> FlowHeader | None:
    """The compiled header, or None when it restricts nothing (`ip any any -> any any`). Raises HeaderError."""
    if direction not in DIRECTIONS:
        raise HeaderError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
    header = FlowHeader(
        protos=TRANSPORT_PROTOS.get(proto.lower(), ()),
        src=parse_addresses(src, variables), sport=parse_ports(sport, variables),
        dst=parse_addresses(dst, variables), dport=parse_ports(dport, variables),
        direction=direction, text=f"{proto} {src} {sport} {direction} {dst} {dport}")
    if not header.protos and header.src is None and header.sport is None and header.dst is None \
            and header.dport is None:
        return None
    return header


def endpoint_ints(keys: tuple) -> tuple[int, int, int, int, int]:
    """(proto, client, server, cport, sport) from nvpcap's flow keys (proto, c_hi, c_lo, s_hi, s_lo, cport,
    sport, ...): the form FlowHeader.sides takes."""
    proto, c_hi, c_lo, s_hi, s_lo, cport, sport = keys[:7]
    return (int(proto), (int(c_hi) << 64) | int(c_lo), (int(s_hi) << 64) | int(s_lo), int(cport), int(sport))
