"""Flows seen as policy sees them: from group -> to group, protocol, server port, identified application.

One row per flow with the columns learn and check share. As in NeuVector, only TCP and UDP flows are subject
to network rules (ICMP is allowed by default), an application counts only when a parser identified it (a
port-based guess is not an identification), and a UDP flow with no application is judged only where the server
has shown an application on that port (`qualifyPortLink`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .groups import EXTERNAL, GroupMap
from .observe import Observation

POLICY_PROTOS = ("tcp", "udp")

# why a flow is outside the rules (shown in the summary, never silently dropped)
SCOPE_POLICY = "policy"
SCOPE_NOT_TCP_UDP = "not-tcp-udp"  # ICMP and others: NeuVector allows them unless ICMP policy is on
SCOPE_EXTERNAL_ONLY = "external-to-external"  # neither side is one of ours
SCOPE_UDP_UNQUALIFIED = "udp-no-app"  # UDP without an app where the server never showed one
COLUMNS = ["from_group", "to_group", "proto", "port", "app", "answered", "packets", "bytes", "ts", "last_ts", "src_ip", "src_port",
           "dest_ip", "community_id", "pcap_filename", "first_frame", "last_frame", "port_key", "scope"]


def connections(obs: Observation, groups: GroupMap, extra_udp_app_ports: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The policy view of every flow. `extra_udp_app_ports`: (to group, port key) pairs known to carry an app."""
    f = obs.flows
    if not len(f):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})

    def ints(col: str) -> np.ndarray:
        return pd.to_numeric(f[col], errors="coerce").fillna(0).astype(np.int64).to_numpy()

    dpi = (f["app_confidence"].to_numpy() == "dpi") & (f["app_proto"].fillna("unknown").to_numpy() != "unknown")
    ts = f["ts"].astype(float).to_numpy()
    conns = pd.DataFrame({
        "from_group": groups.assign(f["src_ip"], obs.hostnames).to_numpy(),
        "to_group": groups.assign(f["dest_ip"], obs.hostnames).to_numpy(),
        "proto": f["proto"].to_numpy(dtype=object), "port": ints("dest_port"),
        "app": np.where(dpi, f["app_proto"].fillna("").to_numpy(dtype=object), ""),
        "answered": ints("pkts_toclient") > 0,
        "packets": ints("pkts_toserver") + ints("pkts_toclient"),
        "bytes": ints("bytes_toserver") + ints("bytes_toclient"),
        "ts": ts, "last_ts": ts + f["duration"].fillna(0).astype(float).to_numpy(),
        "src_ip": f["src_ip"].to_numpy(dtype=object), "src_port": ints("src_port"),
        "dest_ip": f["dest_ip"].to_numpy(dtype=object), "community_id": f["community_id"].to_numpy(dtype=object),
        "pcap_filename": f["pcap_filename"].to_numpy(dtype=object), "first_frame": ints("first_frame"),
        "last_frame": ints("last_frame"),
    })
    conns["port_key"] = conns["proto"].astype(str) + "/" + conns["port"].astype(str)
    conns["scope"] = scope(conns, extra_udp_app_ports or set())
    return conns


def scope(conns: pd.DataFrame, extra_udp_app_ports: set[tuple[str, str]]) -> np.ndarray:
    """Which flows the rules judge, and why the others are left out."""
    out = np.full(len(conns), SCOPE_POLICY, dtype=object)
    if not len(conns):
        return out
    is_udp = (conns["proto"] == "udp").to_numpy()
    has_app = (conns["app"] != "").to_numpy()
    # servers (address, port) that showed an application over UDP in these captures
    app_servers = set(zip(conns["dest_ip"].to_numpy()[is_udp & has_app], conns["port_key"].to_numpy()[is_udp & has_app]))
    candidates = np.flatnonzero(is_udp & ~has_app)
    if len(candidates):
        ips = conns["dest_ip"].to_numpy()[candidates]
        keys = conns["port_key"].to_numpy()[candidates]
        tos = conns["to_group"].to_numpy()[candidates]
        qualified = np.fromiter(((ip, k) in app_servers or (to, k) in extra_udp_app_ports
                                 for ip, k, to in zip(ips, keys, tos)), bool, len(candidates))
        out[candidates[~qualified]] = SCOPE_UDP_UNQUALIFIED
    out[((conns["from_group"] == EXTERNAL) & (conns["to_group"] == EXTERNAL)).to_numpy()] = SCOPE_EXTERNAL_ONLY
    out[~conns["proto"].isin(POLICY_PROTOS).to_numpy()] = SCOPE_NOT_TCP_UDP
    return out
