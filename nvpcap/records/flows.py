"""Flow records: one row per ended flow, EVE-style names, Zeek's conn_state and history.

Built column-wise from the flow table's structured array; only the per-flow string work (addresses,
community_id, history) runs in Python. Field meanings are in docs/schema.md.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from communityid import icmp as _icmp
from communityid import icmp6 as _icmp6

from ..session import kernel as k
from . import addresses
from .community import community_id

PROTO_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6",
               89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp"}
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")

FLOW_COLUMNS = [
    "event_type", "flow_id", "community_id", "ts", "timestamp", "duration", "src_ip", "src_port", "dest_ip",
    "dest_port", "proto", "ip_version", "app_proto", "app_confidence", "conn_state", "history",
    "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient", "payload_bytes_toserver",
    "payload_bytes_toclient", "ip_bytes_toserver", "ip_bytes_toclient", "missed_bytes", "truncated_pkts", "vlan",
    "icmp_type", "icmp_code", "end_reason", "pcap_filename", "first_frame", "last_frame", "threat_ids",
]


@dataclass(frozen=True)
class FileContext:
    """What every record of one capture file shares."""

    pcap_filename: str


def proto_name(p: int) -> str:
    return PROTO_NAMES.get(p, str(p))


def _tcp_sizes(f: np.ndarray) -> np.ndarray:
    """Zeek's TCP_Endpoint::Size(): sequence-space bytes per side (data the peer acknowledged counts too)."""
    size = np.maximum(f["last_rel"], f["ack_rel"])
    size = np.where(size != 0, size - 1, size)
    fin = f["fin_rel"] >= 0
    size = np.where(fin & (size != 0), size - 1, size)
    return np.where(f["has_start"] == 1, np.maximum(size, 0), 0)


def _conn_state(proto: int, os_: int, rs: int, osize: int, rsize: int, opk: int, rpk: int, history: str) -> str:
    """Zeek's conn_state() (scripts/base/protocols/conn/main.zeek)."""
    if proto == 6:
        o_inactive = os_ in (k.INACTIVE, k.PARTIAL)
        r_inactive = rs in (k.INACTIVE, k.PARTIAL)
        if rs == k.RESET:
            if os_ in (k.SYN_SENT, k.SYN_ACK_SENT) or (os_ == k.RESET and osize == 0 and rsize == 0):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == k.RESET:
            if r_inactive:
                return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
            return "RSTO"
        if rs == k.CLOSED and os_ == k.CLOSED:
            return "SF"
        if os_ == k.CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == k.CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == k.SYN_SENT and rs == k.INACTIVE:
            return "S0"
        if os_ == k.ESTABLISHED and rs == k.ESTABLISHED:
            return "S1"
        return "OTH"
    if proto == 17:
        if opk > 0:
            return "SF" if rpk > 0 else "S0"
        return "SHR" if rpk > 0 else "OTH"
    return "OTH"


def _nullable(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    """An Int64 column that is missing (null) where `valid` is False."""
    return pd.arrays.IntegerArray(np.where(valid, values, 0).astype(np.int64), ~np.asarray(valid, np.bool_))


def _iso(ts_ns: np.ndarray) -> list[str]:
    stamps = pd.to_datetime(ts_ns, unit="ns", utc=True)
    return [s + "+0000" for s in stamps.strftime("%Y-%m-%dT%H:%M:%S.%f")]


def flow_id(pcap_filename: str, serial: int, cid: str, first_ts_ns: int) -> int:
    """A 63-bit id that is the same on every run over the same file (Zeek's uid is random per run)."""
    digest = hashlib.blake2b(f"{pcap_filename}|{serial}|{cid}|{first_ts_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def build_flow_frame(ended: np.ndarray, ctx: FileContext) -> pd.DataFrame:
    """Flow records for the ended flows of one file, in the order they ended."""
    n = ended.shape[0]
    if n == 0:
        return pd.DataFrame(columns=FLOW_COLUMNS)
    f = ended
    tcp_size = _tcp_sizes(f)
    is_tcp = f["proto"] == 6
    pay = np.where(is_tcp[:, None], tcp_size, f["app_bytes"])
    missed = f["missed"].sum(axis=1)
    duration = (f["end_ts"] - f["first_ts"]) / 1e9

    cache: dict[tuple[int, int], tuple[str, bytes]] = {}

    def addr(hi: int, lo: int) -> tuple[str, bytes]:
        key = (hi, lo)
        got = cache.get(key)
        if got is None:
            got = cache[key] = (addresses.text(hi, lo), addresses.packed(hi, lo))
        return got

    src_ip, dest_ip, cids, fids, hists, states, protos = [], [], [], [], [], [], []
    src_port = f["cport"].astype(np.int64)
    dest_port = f["sport"].astype(np.int64)
    is_icmp = (f["proto"] == 1) | (f["proto"] == 58)
    for i in range(n):
        r = f[i]
        p = int(r["proto"])
        s_txt, s_raw = addr(int(r["c_hi"]), int(r["c_lo"]))
        d_txt, d_raw = addr(int(r["s_hi"]), int(r["s_lo"]))
        src_ip.append(s_txt)
        dest_ip.append(d_txt)
        if is_icmp[i]:
            t, c = int(r["icmp_type"]), int(r["icmp_code"])
            cid = community_id(p, s_raw, d_raw, t, c)
            mapped = community_port_pair(p, t, c)
            src_port[i], dest_port[i] = mapped
        else:
            cid = community_id(p, s_raw, d_raw, int(r["cport"]), int(r["sport"]))
        cids.append(cid)
        fids.append(flow_id(ctx.pcap_filename, int(r["serial"]), cid, int(r["first_ts"])))
        hist = bytes(r["hist"][: int(r["hist_len"])]).decode("ascii")
        hists.append(hist)
        states.append(_conn_state(p, int(r["state"][0]), int(r["state"][1]), int(tcp_size[i, 0]),
                                  int(tcp_size[i, 1]), int(r["pkts"][0]), int(r["pkts"][1]), hist))
        protos.append(proto_name(p))
    has_ports = np.isin(f["proto"], (6, 17, 132)) | is_icmp
    vlan = [[int(a)] + ([int(b)] if b >= 0 else []) if a >= 0 else None for a, b in zip(f["vlan"], f["vlan2"])]
    frame = pd.DataFrame({
        "event_type": "flow",
        "flow_id": np.array(fids, np.int64),
        "community_id": cids,
        "ts": f["first_ts"] / 1e9,
        "timestamp": _iso(f["first_ts"]),
        "duration": np.round(duration, 6),
        "src_ip": src_ip,
        "src_port": _nullable(src_port, has_ports),
        "dest_ip": dest_ip,
        "dest_port": _nullable(dest_port, has_ports),
        "proto": protos,
        "ip_version": f["ipver"].astype(np.int64),
        "app_proto": "unknown",
        "app_confidence": "none",
        "conn_state": states,
        "history": hists,
        "pkts_toserver": f["pkts"][:, 0],
        "pkts_toclient": f["pkts"][:, 1],
        "bytes_toserver": f["bytes"][:, 0],
        "bytes_toclient": f["bytes"][:, 1],
        "payload_bytes_toserver": pay[:, 0],
        "payload_bytes_toclient": pay[:, 1],
        "ip_bytes_toserver": f["ip_bytes"][:, 0],
        "ip_bytes_toclient": f["ip_bytes"][:, 1],
        "missed_bytes": missed,
        "truncated_pkts": f["truncated"],
        "vlan": vlan,
        "icmp_type": _nullable(f["icmp_type"], is_icmp),
        "icmp_code": _nullable(f["icmp_code"], is_icmp),
        "end_reason": [k.END_REASONS[int(x)] for x in f["reason"]],
        "pcap_filename": ctx.pcap_filename,
        "first_frame": f["first_frame"],
        "last_frame": f["last_frame"],
        "threat_ids": [[] for _ in range(n)],
    })
    return frame[FLOW_COLUMNS]


def community_port_pair(proto: int, mtype: int, mcode: int) -> tuple[int, int]:
    """Zeek's ICMP 'ports': the type and its counterpart type, or the code for one-way messages."""
    mod = _icmp if proto == 1 else _icmp6
    s, d, _ = mod.get_port_equivalents(mtype, mcode)
    return int(s), int(d)
