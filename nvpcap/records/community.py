"""Community ID v1 (https://github.com/corelight/community-id-spec), computed fast for many flows.

The `communityid` package is the reference implementation; building its objects costs ~40 µs a flow, so
this module packs the same bytes directly (~2 µs) and takes the ICMP type/code mapping from the package.
tests/test_community_id.py checks that both agree, including the spec's test vectors.
"""
from __future__ import annotations

import base64
import hashlib
import struct

import numpy as np
from communityid import icmp as _icmp
from communityid import icmp6 as _icmp6

PORT_PROTOCOLS = {6, 17, 132}


def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID of a flow given as client -> server; addresses are 4 or 16 bytes (network order).

    For ICMP/ICMPv6, `sport` and `dport` are the message type and code.
    """
    one_way = False
    if proto == 1:
        sport, dport, one_way = _icmp.get_port_equivalents(sport, dport)
    elif proto == 58:
        sport, dport, one_way = _icmp6.get_port_equivalents(sport, dport)
    has_ports = proto in PORT_PROTOCOLS or proto in (1, 58)
    if not one_way and not (saddr < daddr or (saddr == daddr and sport < dport)):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BB", proto, 0)
    if has_ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def _icmp_tables() -> tuple[np.ndarray, np.ndarray]:
    """Counterpart type per ICMP type (-1 = one-way), for ICMPv4 (row 0) and ICMPv6 (row 1)."""
    table = np.full((2, 256), -1, np.int64)
    for row, mapper in ((0, _icmp.TYPE_MAPPER), (1, _icmp6.TYPE_MAPPER)):
        for t, counterpart in mapper.items():
            table[row, t] = counterpart
    return table[0], table[1]


ICMP4_COUNTERPART, ICMP6_COUNTERPART = _icmp_tables()


def icmp_port_pairs(proto: np.ndarray, mtype: np.ndarray, mcode: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zeek/Community ID ICMP 'ports': (type, counterpart type or code, one_way) for arrays of messages."""
    t = np.clip(mtype, 0, 255)
    counterpart = np.where(proto == 58, ICMP6_COUNTERPART[t], ICMP4_COUNTERPART[t])
    one_way = counterpart < 0
    return mtype, np.where(one_way, mcode, counterpart), one_way


def community_ids(proto: np.ndarray, s_hi: np.ndarray, s_lo: np.ndarray, d_hi: np.ndarray, d_lo: np.ndarray,
                  sport: np.ndarray, dport: np.ndarray, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Community IDs for many flows (client -> server; addresses as the decoder's two uint64 words).

    For ICMP/ICMPv6 rows, sport/dport are the message type and code; they are mapped to the spec's port
    equivalents here, and one-way messages keep their order. Also returns the first 8 bytes of each SHA-1
    digest as an integer, a well-mixed per-flow value for deriving other ids.
    """
    n = proto.shape[0]
    icmp = (proto == 1) | (proto == 58)
    _, mapped, one_way = icmp_port_pairs(proto, sport, dport)
    dport = np.where(icmp, mapped, dport)
    one_way &= icmp
    s_first = (s_hi < d_hi) | ((s_hi == d_hi) & (s_lo < d_lo)) | ((s_hi == d_hi) & (s_lo == d_lo) & (sport < dport))
    keep = s_first | one_way
    a_hi, a_lo = np.where(keep, s_hi, d_hi), np.where(keep, s_lo, d_lo)
    b_hi, b_lo = np.where(keep, d_hi, s_hi), np.where(keep, d_lo, s_lo)
    pa, pb = np.where(keep, sport, dport), np.where(keep, dport, sport)
    v4 = (a_hi == 0) & ((a_lo >> np.uint64(32)) == np.uint64(0xFFFF))
    has_ports = np.isin(proto, (6, 17, 132)) | icmp
    # Hash input per the spec: seed(2) saddr daddr proto(1) pad(1) [sport(2) dport(2)], with 4- or 16-byte
    # addresses. Rows are laid out in one byte matrix per address family and sliced, not built one by one.
    out: list[str] = [""] * n
    words = np.empty(n, np.uint64)
    seed_bytes = np.frombuffer(int(seed).to_bytes(2, "big"), np.uint8)
    for fam_mask, width in ((v4, 16), (~v4, 40)):
        rows = np.flatnonzero(fam_mask)
        if rows.shape[0] == 0:
            continue
        m = rows.shape[0]
        be8 = lambda x: x[rows].astype(">u8").view(np.uint8).reshape(m, 8)  # noqa: E731
        buf = np.zeros((m, width), np.uint8)
        buf[:, 0:2] = seed_bytes
        if width == 16:
            buf[:, 2:6] = be8(a_lo)[:, 4:]
            buf[:, 6:10] = be8(b_lo)[:, 4:]
        else:
            buf[:, 2:10], buf[:, 10:18] = be8(a_hi), be8(a_lo)
            buf[:, 18:26], buf[:, 26:34] = be8(b_hi), be8(b_lo)
        buf[:, width - 6] = proto[rows]
        buf[:, width - 4:width - 2] = pa[rows].astype(">u2").view(np.uint8).reshape(m, 2)
        buf[:, width - 2:width] = pb[rows].astype(">u2").view(np.uint8).reshape(m, 2)
        raw = buf.tobytes()
        ports = has_ports[rows]
        sha1, b64 = hashlib.sha1, base64.b64encode
        for j, i in enumerate(rows.tolist()):
            start = j * width
            digest = sha1(raw[start:start + width if ports[j] else start + width - 4]).digest()
            words[i] = int.from_bytes(digest[:8], "big")
            out[i] = "1:" + b64(digest).decode("ascii")
    return out, words
