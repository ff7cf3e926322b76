"""Community ID v1 (https://github.com/corelight/community-id-spec), computed for many flows at once.

The `communityid` package is the reference implementation; building its objects costs ~40 µs a flow, so
this module lays out the same bytes column-wise and hashes them in one compiled pass, taking the ICMP
type/code mapping from the package. tests/test_community_id.py checks both agree, with the spec's vectors.
"""
from __future__ import annotations


import numpy as np
from communityid import icmp as _icmp
from communityid import icmp6 as _icmp6

from .._jit import jit

PORT_PROTOCOLS = (6, 17, 132)  # protocols whose ports enter the hash (ICMP's type/code do too)


def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID of one flow given as client -> server; addresses are 4 or 16 bytes (network order).

    For ICMP/ICMPv6, `sport` and `dport` are the message type and code. (One flow through `community_ids`.)
    """
    def words(addr: bytes) -> tuple[int, int]:
        if len(addr) == 4:
            return 0, 0xFFFF00000000 | int.from_bytes(addr, "big")
        value = int.from_bytes(addr, "big")
        return value >> 64, value & 0xFFFFFFFFFFFFFFFF

    (s_hi, s_lo), (d_hi, d_lo) = words(saddr), words(daddr)
    u64 = lambda v: np.array([v], np.uint64)  # noqa: E731
    texts, _ = community_ids(np.array([proto]), u64(s_hi), u64(s_lo), u64(d_hi), u64(d_lo), np.array([sport]),
                             np.array([dport]), seed)
    return texts[0]


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
    has_ports = np.isin(proto, PORT_PROTOCOLS) | icmp
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
        lengths = np.where(has_ports[rows], width, width - 4).astype(np.int64)
        digests = np.empty((m, 20), np.uint8)
        sha1_short(buf, lengths, digests)
        words[rows] = digests[:, :8].copy().view(">u8").reshape(m).astype(np.uint64)
        texts = _base64_20(digests)
        for j, i in enumerate(rows.tolist()):
            out[i] = texts[j]
    return out, words


_B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)


def _base64_20(digests: np.ndarray) -> list[str]:
    """'1:' + base64 of many 20-byte digests at once (27 characters and one '=')."""
    m = digests.shape[0]
    padded = np.zeros((m, 21), np.uint32)
    padded[:, :20] = digests
    g = padded.reshape(m, 7, 3)
    triple = (g[:, :, 0] << 16) | (g[:, :, 1] << 8) | g[:, :, 2]
    sextets = np.stack([(triple >> s) & 63 for s in (18, 12, 6, 0)], axis=2).reshape(m, 28)
    chars = _B64[sextets]
    chars[:, 27] = ord("=")
    text = np.full((m, 30), ord(":"), np.uint8)
    text[:, 0] = ord("1")
    text[:, 2:] = chars
    return text.view("S30").reshape(m).astype(str).tolist()


@jit
def _rotl(x, n):
    return ((x << np.uint32(n)) | (x >> np.uint32(32 - n))) & np.uint32(0xFFFFFFFF)


@jit
def sha1_short(msgs, lengths, out):
    """SHA-1 (FIPS 180-4) of many messages of at most 55 bytes: each fits one padded 64-byte block.

    Community IDs hash 12 to 40 bytes per flow; doing it here, compiled, replaces a hashlib call per flow.
    tests/test_community_id.py checks the result against hashlib and the reference package.
    """
    w = np.zeros(80, np.uint32)
    block = np.zeros(64, np.uint8)
    for r in range(msgs.shape[0]):
        n = lengths[r]
        block[:] = 0
        block[:n] = msgs[r, :n]
        block[n] = 0x80
        bits = n * 8
        block[62] = (bits >> 8) & 0xFF
        block[63] = bits & 0xFF
        for t in range(16):
            w[t] = (np.uint32(block[4 * t]) << np.uint32(24)) | (np.uint32(block[4 * t + 1]) << np.uint32(16)) \
                | (np.uint32(block[4 * t + 2]) << np.uint32(8)) | np.uint32(block[4 * t + 3])
        for t in range(16, 80):
            w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
        a = np.uint32(0x67452301)
        b = np.uint32(0xEFCDAB89)
        c = np.uint32(0x98BADCFE)
        d = np.uint32(0x10325476)
        e = np.uint32(0xC3D2E1F0)
        for t in range(80):
            if t < 20:
                f = (b & c) | (~b & d)
                k = np.uint32(0x5A827999)
            elif t < 40:
                f = b ^ c ^ d
                k = np.uint32(0x6ED9EBA1)
            elif t < 60:
                f = (b & c) | (b & d) | (c & d)
                k = np.uint32(0x8F1BBCDC)
            else:
                f = b ^ c ^ d
                k = np.uint32(0xCA62C1D6)
            tmp = (_rotl(a, 5) + f + e + k + w[t]) & np.uint32(0xFFFFFFFF)
            e = d
            d = c
            c = _rotl(b, 30)
            b = a
            a = tmp
        h = (np.uint32(0x67452301) + a, np.uint32(0xEFCDAB89) + b, np.uint32(0x98BADCFE) + c,
             np.uint32(0x10325476) + d, np.uint32(0xC3D2E1F0) + e)
        for i in range(5):
            v = h[i] & np.uint32(0xFFFFFFFF)
            out[r, 4 * i] = (v >> np.uint32(24)) & 0xFF
            out[r, 4 * i + 1] = (v >> np.uint32(16)) & 0xFF
            out[r, 4 * i + 2] = (v >> np.uint32(8)) & 0xFF
            out[r, 4 * i + 3] = v & 0xFF
