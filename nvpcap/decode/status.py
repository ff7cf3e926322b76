"""Packet outcomes: every packet read ends in exactly one of these, and the summary counts each.

Codes are small integers so the decoder can write them into a numpy column; names are what users see.
"""
from __future__ import annotations

OK = 0  # decoded to a flow key
FRAGMENT = 1  # an IP fragment: goes to reassembly
NON_IP = 2  # a frame that carries no IP (ARP, LLDP, STP, ...)
UNSUPPORTED_LINKTYPE = 3  # a link type nvpcap does not decode
TRUNCATED = 4  # the capture (snaplen) cut the packet inside its fixed transport header: no flow key
UNSUPPORTED_L2 = 5  # a known link type, but an encapsulation inside it nvpcap does not decode

# malformed, by reason (NeuVector dp's Invalid.Packet.Format checks plus a few of our own)
MAL_L2 = 10
MAL_IPV4_HEADER = 11
MAL_IP_LENGTH = 12
MAL_IPV6_HEADER = 13
MAL_IPV6_EXT = 14
MAL_TCP_HEADER = 15
MAL_TCP_FLAGS = 16
MAL_TCP_OPTION = 17
MAL_UDP_HEADER = 18
MAL_ICMP_HEADER = 19
MAL_TUNNEL = 20
MAL_FIRST = MAL_L2

NAMES: dict[int, str] = {
    OK: "decoded",
    FRAGMENT: "fragment",
    NON_IP: "non-ip",
    UNSUPPORTED_LINKTYPE: "unsupported-linktype",
    TRUNCATED: "truncated",
    UNSUPPORTED_L2: "unsupported-encapsulation",
    MAL_L2: "malformed-l2",
    MAL_IPV4_HEADER: "malformed-ipv4-header",
    MAL_IP_LENGTH: "malformed-ip-length",
    MAL_IPV6_HEADER: "malformed-ipv6-header",
    MAL_IPV6_EXT: "malformed-ipv6-extension",
    MAL_TCP_HEADER: "malformed-tcp-header",
    MAL_TCP_FLAGS: "malformed-tcp-flags",
    MAL_TCP_OPTION: "malformed-tcp-option",
    MAL_UDP_HEADER: "malformed-udp-header",
    MAL_ICMP_HEADER: "malformed-icmp-header",
    MAL_TUNNEL: "malformed-tunnel",
}


def is_malformed(code: int) -> bool:
    return code >= MAL_FIRST


# per-packet flag bits (pkt_flags column)
F_CAPTURE_TRUNCATED = 1  # caplen < original length
F_SMALL_MSS = 2  # TCP MSS option < 256 (NeuVector threat 2025)
F_TSO_ZERO_LEN = 4  # IPv4 total length 0 (segmentation offload); the frame length was used
F_TUNNELED = 8  # decapsulated from GRE, IP-in-IP or VXLAN
F_SYN_DATA = 16  # SYN carrying payload (NeuVector threat 2003)
