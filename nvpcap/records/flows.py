"""Flow records: one row per ended flow, EVE-style names, Zeek's conn_state and history.

Built column-wise from the flow table's structured array; only the per-flow string work (addresses,
community_id, history) runs in Python. Field meanings are in docs/schema.md.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..session import kernel as k
from . import addresses
from .community import community_ids, icmp_port_pairs

PROTO_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6",
               89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp"}
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")



_STR, _INT, _FLOAT = pl.Utf8, pl.Int64, pl.Float64
FLOW_SCHEMA: dict[str, pl.DataType] = {
    "event_type": _STR, "flow_id": _INT, "community_id": _STR, "ts": _FLOAT, "timestamp": _STR, "duration": _FLOAT,
    "src_ip": _STR, "src_port": _INT, "dest_ip": _STR, "dest_port": _INT, "proto": _STR, "ip_version": _INT,
    "app_proto": _STR, "app_confidence": _STR, "app_product": _STR, "conn_state": _STR, "history": _STR, "pkts_toserver": _INT,
    "pkts_toclient": _INT, "bytes_toserver": _INT, "bytes_toclient": _INT, "payload_bytes_toserver": _INT,
    "payload_bytes_toclient": _INT, "ip_bytes_toserver": _INT, "ip_bytes_toclient": _INT, "missed_bytes": _INT,
    "truncated_pkts": _INT, "vlan": pl.List(pl.Int64), "icmp_type": _INT, "icmp_code": _INT, "end_reason": _STR,
    "pcap_filename": _STR, "first_frame": _INT, "last_frame": _INT, "threat_ids": pl.List(pl.Int64),
}
FLOW_COLUMNS = list(FLOW_SCHEMA)


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


def _nullable(name: str, values: np.ndarray, valid: np.ndarray) -> pl.Series:
    """An Int64 column that is missing (null) where `valid` is False."""
    series = pl.Series(name, np.asarray(values, np.int64))
    missing = np.flatnonzero(~np.asarray(valid, np.bool_))
    return series.scatter(missing, None) if missing.shape[0] else series


def iso_timestamps(ts_ns: np.ndarray) -> np.ndarray:
    """EVE-style timestamps (microseconds, UTC offset as +0000), vectorised."""
    text = np.datetime_as_string((np.asarray(ts_ns, np.int64) // 1000).astype("datetime64[us]"), unit="us")
    return np.char.add(text.astype(str), "+0000")


def flow_ids(pcap_filename: str, serial: np.ndarray, first_ts: np.ndarray, cid_words: np.ndarray) -> np.ndarray:
    """63-bit ids that are the same on every run over the same file (Zeek's uid is random per run)."""
    seed = int.from_bytes(hashlib.blake2b(pcap_filename.encode(), digest_size=8).digest(), "big")
    with np.errstate(over="ignore"):
        h = _mix64(np.uint64(seed) ^ serial.astype(np.uint64))
        h = _mix64(h ^ first_ts.astype(np.uint64))
        h = _mix64(h ^ cid_words)
    return (h >> np.uint64(1)).astype(np.int64)


def _mix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def _address_text(name: str, hi: np.ndarray, lo: np.ndarray) -> pl.Series:
    """Text form of many addresses: each distinct address of the block converted once (addresses.text caches
    across blocks too), then spread back by index."""
    out = np.empty(hi.shape[0], dtype=object)
    v4 = hi == 0  # IPv4 (mapped) and the few IPv6 addresses in ::/64: the low word alone tells them apart
    for rows in (np.flatnonzero(v4), np.flatnonzero(~v4)):
        if rows.shape[0]:
            out[rows] = _distinct_texts(hi[rows], lo[rows])
    return pl.Series(name, out.tolist(), dtype=pl.Utf8)  # from a list: about 2x faster than from objects


def _distinct_texts(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    if not hi.any():  # one word is the whole address, and sorts 5x faster than a 16-byte key
        uniq, inverse = np.unique(lo, return_inverse=True)
        words = [(0, w) for w in uniq.tolist()]
    else:
        pairs = np.ascontiguousarray(np.stack([hi, lo], axis=1).astype(np.uint64))
        uniq, inverse = np.unique(pairs.view(np.dtype((np.void, 16))).reshape(-1), return_inverse=True)
        words = uniq.view(np.uint64).reshape(-1, 2).tolist()
    return np.array([addresses.text(a, b) for a, b in words], dtype=object)[inverse.reshape(-1)]


def _conn_states(f: np.ndarray, tcp_size: np.ndarray, hists: np.ndarray) -> np.ndarray:
    """Zeek's conn_state() for every flow at once (scripts/base/protocols/conn/main.zeek)."""
    os_, rs = f["state"][:, 0], f["state"][:, 1]
    o_in = (os_ == k.INACTIVE) | (os_ == k.PARTIAL)
    r_in = (rs == k.INACTIVE) | (rs == k.PARTIAL)
    no_data = (tcp_size[:, 0] == 0) & (tcp_size[:, 1] == 0)
    rstos0 = np.zeros(f.shape[0], np.bool_)
    for i in np.flatnonzero((os_ == k.RESET) & r_in).tolist():  # the history is read only where it decides
        rstos0[i] = _RSTOS0.fullmatch(hists[i]) is not None
    tcp = np.select(
        [
            (rs == k.RESET) & ((os_ == k.SYN_SENT) | (os_ == k.SYN_ACK_SENT) | ((os_ == k.RESET) & no_data)),
            (rs == k.RESET) & o_in,
            rs == k.RESET,
            (os_ == k.RESET) & r_in & rstos0,
            (os_ == k.RESET) & r_in,
            os_ == k.RESET,
            (rs == k.CLOSED) & (os_ == k.CLOSED),
            (os_ == k.CLOSED) & r_in,
            os_ == k.CLOSED,
            (rs == k.CLOSED) & o_in,
            rs == k.CLOSED,
            (os_ == k.SYN_SENT) & (rs == k.INACTIVE),
            (os_ == k.ESTABLISHED) & (rs == k.ESTABLISHED),
        ],
        ["REJ", "RSTRH", "RSTR", "RSTOS0", "OTH", "RSTO", "SF", "SH", "S2", "SHR", "S3", "S0", "S1"],
        "OTH",
    )
    opk, rpk = f["pkts"][:, 0] > 0, f["pkts"][:, 1] > 0
    udp = np.select([opk & rpk, opk, rpk], ["SF", "S0", "SHR"], "OTH")
    return np.where(f["proto"] == 6, tcp, np.where(f["proto"] == 17, udp, "OTH")).astype(object)


_PROTO_TABLE = np.array([PROTO_NAMES.get(p, str(p)) for p in range(256)], dtype=object)
_END_REASONS = np.array([k.END_REASONS[i] for i in sorted(k.END_REASONS)], dtype=object)


def empty_flow_frame() -> pl.DataFrame:
    return pl.DataFrame(schema={c: FLOW_SCHEMA[c] for c in FLOW_COLUMNS})


def build_flow_frame(ended: np.ndarray, ctx: FileContext, apps: list[tuple[str, str]] | None = None,
                     products: list[str | None] | None = None,
                     threats: dict[int, list[int]] | None = None) -> pl.DataFrame:
    """Flow records for the ended flows of one file, in the order they ended (column-wise, no per-flow loop
    beyond hashing and the rare string work). `products` is the app sub-label per flow; `threats` maps a
    row to the protocol threat ids its parser raised."""
    n = ended.shape[0]
    if n == 0:
        return empty_flow_frame()
    f = ended
    proto = f["proto"].astype(np.int64)
    tcp_size = _tcp_sizes(f)
    pay = np.where((proto == 6)[:, None], tcp_size, f["app_bytes"])
    is_icmp = (proto == 1) | (proto == 58)
    icmp_type = f["icmp_type"].astype(np.int64)
    icmp_code = f["icmp_code"].astype(np.int64)
    cport = np.where(is_icmp, icmp_type, f["cport"]).astype(np.int64)
    sport = np.where(is_icmp, icmp_code, f["sport"]).astype(np.int64)
    cids, cid_words = community_ids(proto, f["c_hi"], f["c_lo"], f["s_hi"], f["s_lo"], cport, sport)
    _, icmp_dport, _ = icmp_port_pairs(proto, icmp_type, icmp_code)
    dest_port = np.where(is_icmp, icmp_dport, sport)
    hists = f["hist"].view(f"S{k.HIST_MAX}").reshape(n).astype(str).astype(object)
    has_ports = np.isin(proto, (6, 17, 132)) | is_icmp
    columns = {
        "flow_id": flow_ids(ctx.pcap_filename, f["serial"], f["first_ts"], cid_words),
        "community_id": cids,
        "ts": f["first_ts"] / 1e9,
        "timestamp": iso_timestamps(f["first_ts"]),
        "duration": np.round((f["end_ts"] - f["first_ts"]) / 1e9, 6),
        "src_ip": _address_text("src_ip", f["c_hi"], f["c_lo"]),
        "src_port": _nullable("src_port", cport, has_ports),
        "dest_ip": _address_text("dest_ip", f["s_hi"], f["s_lo"]),
        "dest_port": _nullable("dest_port", dest_port, has_ports),
        "proto": _PROTO_TABLE[proto].tolist(),
        "ip_version": f["ipver"].astype(np.int64),
        "conn_state": _conn_states(f, tcp_size, hists).tolist(),
        "history": hists.tolist(),
        "pkts_toserver": f["pkts"][:, 0],
        "pkts_toclient": f["pkts"][:, 1],
        "bytes_toserver": f["bytes"][:, 0],
        "bytes_toclient": f["bytes"][:, 1],
        "payload_bytes_toserver": pay[:, 0],
        "payload_bytes_toclient": pay[:, 1],
        "ip_bytes_toserver": f["ip_bytes"][:, 0],
        "ip_bytes_toclient": f["ip_bytes"][:, 1],
        "missed_bytes": f["missed"].sum(axis=1),
        "truncated_pkts": f["truncated"],
        "vlan": f["vlan"].astype(np.int64),
        "icmp_type": _nullable("icmp_type", icmp_type, is_icmp),
        "icmp_code": _nullable("icmp_code", icmp_code, is_icmp),
        "end_reason": _END_REASONS[f["reason"]].tolist(),
        "first_frame": f["first_frame"],
        "last_frame": f["last_frame"],
        "threat_ids": f["vlan2"].astype(np.int64),
    }
    if apps:
        columns["app_proto"] = [a for a, _ in apps]
        columns["app_confidence"] = [c for _, c in apps]
    if products is not None:
        columns["app_product"] = products
    # constant columns are literals, list columns expressions: both cost more built from Python objects
    constants = {"event_type": "flow", "pcap_filename": ctx.pcap_filename, "app_proto": "unknown",
                 "app_confidence": "none", "app_product": None}
    v1, v2 = pl.col("vlan"), pl.col("threat_ids")
    derived = [pl.lit(value, FLOW_SCHEMA[name]).alias(name) for name, value in constants.items() if name not in columns]
    derived += [
        pl.when(v1 < 0).then(None).when(v2 < 0).then(pl.concat_list([v1])).otherwise(pl.concat_list([v1, v2]))
        .alias("vlan"),
        pl.concat_list([v1]).list.slice(0, 0).alias("threat_ids"),
    ]
    plain = {c: FLOW_SCHEMA[c] for c in columns if c not in ("vlan", "threat_ids")}
    frame = pl.DataFrame(columns, schema_overrides=plain)
    frame = frame.lazy().with_columns(derived).select(FLOW_COLUMNS).collect()
    if threats:
        ids = [threats.get(i, []) for i in range(n)]
        frame = frame.with_columns(pl.Series("threat_ids", ids, dtype=pl.List(pl.Int64)))
    return frame
