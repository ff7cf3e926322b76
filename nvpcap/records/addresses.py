"""Turn the decoder's 16-byte address pairs (two uint64 words, IPv4 mapped) back into text and bytes."""
from __future__ import annotations

import ipaddress

V4_MAPPED_HI = 0
V4_MAPPED_MASK = 0xFFFF00000000


def is_v4(hi: int, lo: int) -> bool:
    return hi == V4_MAPPED_HI and (lo >> 32) == 0xFFFF


def packed(hi: int, lo: int) -> bytes:
    """Network-order bytes: 4 for IPv4, 16 for IPv6."""
    if is_v4(hi, lo):
        return (lo & 0xFFFFFFFF).to_bytes(4, "big")
    return hi.to_bytes(8, "big") + lo.to_bytes(8, "big")


def text(hi: int, lo: int) -> str:
    if is_v4(hi, lo):
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))
