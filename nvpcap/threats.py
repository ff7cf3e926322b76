"""NeuVector dp's threat catalogue: ids, names, severities and defaults (dpi_log.c, common.go).

Severity codes: 1 info, 2 low, 3 medium, 4 high, 5 critical. `enabled` is dp's default; `action` is what dp
does inline (offline, nvpcap only reports: the capture is a tap).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Threat:
    threat_id: int
    name: str
    severity: int
    enabled: bool
    action: str


CATALOGUE: dict[int, Threat] = {t.threat_id: t for t in (
    Threat(1001, "TCP.SYN.Flood", 5, True, "drop"),
    Threat(1002, "ICMP.Flood", 5, True, "drop"),
    Threat(1003, "Source.IP.Session.Limit", 4, False, "drop"),
    Threat(2001, "Invalid.Packet.Format", 3, True, "drop"),
    Threat(2002, "IP.Fragment.Teardrop", 5, True, "drop"),
    Threat(2003, "TCP.SYN.With.Data", 3, False, "drop"),
    Threat(2004, "TCP.Split.Handshake", 3, True, "allow"),
    Threat(2005, "TCP.No.Client.Data", 3, False, "reset"),
    Threat(2006, "Ping.Death", 5, True, "drop"),
    Threat(2007, "DNS.Loop.Pointer", 5, True, "drop"),
    Threat(2008, "SSH.Version.1", 2, True, "allow"),
    Threat(2009, "SSL.Heartbleed", 5, True, "drop"),
    Threat(2010, "SSL.Cipher.Overflow", 5, True, "drop"),
    Threat(2011, "SSL.Version.2or3", 3, True, "drop"),
    Threat(2012, "SSL.TLS1.0", 3, False, "drop"),
    Threat(2013, "HTTP.Negative.Body.Length", 3, True, "drop"),
    Threat(2014, "HTTP.Request.Smuggling", 4, True, "drop"),
    Threat(2015, "HTTP.Request.Slowloris", 5, False, "reset"),
    Threat(2016, "TCP.Small.Window", 4, False, "reset"),
    Threat(2017, "DNS.Stack.Overflow", 5, True, "allow"),
    Threat(2018, "MySQL.Access.Deny", 1, True, "allow"),
    Threat(2019, "DNS.Zone.Transfer", 5, True, "drop"),
    Threat(2020, "ICMP.Tunneling", 5, True, "allow"),
    Threat(2021, "DNS.Type.Null", 5, False, "allow"),
    Threat(2022, "SQL.Injection", 5, True, "drop"),
    Threat(2023, "Apache.Struts.Remote.Code.Execution", 5, True, "drop"),
    Threat(2025, "TCP.SACK.DDoS.With.Small.MSS", 4, True, "drop"),
    Threat(2026, "K8S.externalIPs.MitM", 5, True, "drop"),
    Threat(2027, "SSL.TLS1.1", 3, False, "drop"),
)}


def parse_threat_switches(switches: tuple[str, ...] | list[str]) -> dict[int, bool]:
    """`ID=on|off` or `NAME=on|off` (names as in the catalogue, case-insensitive) -> {id: enabled}."""
    by_name = {t.name.lower(): t.threat_id for t in CATALOGUE.values()}
    out: dict[int, bool] = {}
    for item in switches:
        key, sep, value = item.partition("=")
        state = {"on": True, "off": False}.get(value.strip().lower())
        if not sep or state is None:
            raise ValueError(f"--threat {item!r}: expected ID=on|off or NAME=on|off")
        key = key.strip()
        tid = int(key) if key.isascii() and key.isdigit() else by_name.get(key.lower())
        if tid not in CATALOGUE:
            raise ValueError(f"--threat {item!r}: no such threat (see `nvpcap threats`)")
        out[tid] = state
    return out
