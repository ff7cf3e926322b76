"""Decode link, network and transport headers of a whole batch in one compiled pass.

The output is a `PacketBatch`: columns (numpy arrays) for every header field later stages use, and a status
per packet (see `status.py`). Tunnels (GRE, IP-in-IP, VXLAN on UDP 4789) are unwrapped so the columns
describe the innermost packet. NeuVector dp's Invalid.Packet.Format checks mark packets malformed with a
reason: header lengths, the exact list of bad TCP flag sets, and the TCP option length rules.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._jit import jit
from . import status as st
from .reader import RawBatch

# link types (https://www.tcpdump.org/linktypes.html)
LT_NULL = 0
LT_ETHERNET = 1
LT_RAW_BSD1 = 12
LT_RAW_BSD2 = 14
LT_RAW = 101
LT_LOOP = 108
LT_LINUX_SLL = 113
LT_IPV4 = 228
LT_IPV6 = 229
LT_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = {
    LT_NULL: "null/loopback", LT_ETHERNET: "ethernet", LT_RAW_BSD1: "raw", LT_RAW_BSD2: "raw", LT_RAW: "raw",
    LT_LOOP: "loop", LT_LINUX_SLL: "linux-sll", LT_IPV4: "ipv4", LT_IPV6: "ipv6", LT_LINUX_SLL2: "linux-sll2",
}

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_PPPOE = 0x8864
ETH_MPLS = 0x8847
ETH_TEB = 0x6558  # transparent Ethernet bridging (GRE carrying Ethernet)

VXLAN_PORT = 4789
MAX_ENCAP_DEPTH = 4

# TCP flag bits
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
# NeuVector dp's tcp_bad_flag_list, compared against flags & (FIN|SYN|RST|PSH|ACK|URG)
BAD_TCP_FLAG_SETS = (
    0, URG, FIN, PSH, PSH | FIN, PSH | URG, SYN | FIN, PSH | URG | FIN, PSH | URG | FIN | ACK | SYN,
    FIN | SYN | RST | PSH | ACK | URG,
)
_BAD_FLAGS = np.zeros(64, np.bool_)
for _f in BAD_TCP_FLAG_SETS:
    _BAD_FLAGS[_f] = True


@dataclass
class PacketBatch:
    """Decoded columns for N packets over `raw.buf` (the contract between decode and session)."""

    raw: RawBatch
    status: np.ndarray  # uint8, see status.py
    pkt_flags: np.ndarray  # uint8 bits, see status.F_*
    l3_off: np.ndarray  # int64 offsets into raw.buf (of the innermost IP header)
    l4_off: np.ndarray
    payload_off: np.ndarray
    payload_len: np.ndarray  # int64: payload bytes per the IP length (what was on the wire)
    payload_cap: np.ndarray  # int64: payload bytes present in the capture
    ip_end: np.ndarray  # int64: end of the IP datagram within the captured bytes
    ip_wire_end: np.ndarray  # int64: where the datagram would end per its IP length (may pass the capture)
    ip_version: np.ndarray  # uint8
    proto: np.ndarray  # uint8 (IANA protocol number of the transport)
    src_hi: np.ndarray  # uint64 pairs: 16-byte addresses, IPv4 mapped into ::ffff:0:0/96
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray  # int32 (ICMP: type)
    dport: np.ndarray  # int32 (ICMP: code)
    tcp_flags: np.ndarray  # uint16 (with ECE/CWR/NS)
    seq: np.ndarray  # int64
    ack: np.ndarray  # int64
    win: np.ndarray  # int32
    icmp_id: np.ndarray  # int32 (-1 when not an echo-style message)
    vlan: np.ndarray  # int32, outermost VLAN id (-1 none)
    vlan2: np.ndarray  # int32, inner VLAN id of QinQ (-1 none)
    frag_id: np.ndarray  # int64: IPv4 id / IPv6 fragment identification
    frag_off: np.ndarray  # int64: byte offset of this fragment
    frag_more: np.ndarray  # uint8: more-fragments flag
    frag_data_off: np.ndarray  # int64: where this fragment's data starts in raw.buf
    frag_nh: np.ndarray  # int32: protocol carried by the fragmented datagram

    def __len__(self) -> int:
        return int(self.status.shape[0])


@jit
def _be16(b, o):
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@jit
def _be32(b, o):
    return (np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16) | (np.int64(b[o + 2]) << 8) | np.int64(b[o + 3])


@jit
def _be64(b, o):
    return (np.uint64(_be32(b, o)) << np.uint64(32)) | np.uint64(_be32(b, o + 4))


@jit
def _tcp_options_bad(b, o, end, cap_end, flags):
    """NeuVector's TCP option rules over b[o:end]. Returns (bad, mss) with mss -1 when absent.

    Options that the capture cut off (beyond cap_end) are not judged: snaplen is not the sender's fault.
    """
    mss = -1
    while o < end and o < cap_end:
        if o + 2 > cap_end and o + 2 <= end:
            break
        kind = b[o]
        if kind == 0:
            break
        if kind == 1:
            o += 1
            continue
        if o + 1 >= end:
            return True, mss  # a kind byte with no length byte inside the header
        ln = np.int64(b[o + 1])
        if ln < 2 or o + ln > end:
            return True, mss
        if o + ln > cap_end:
            break
        if kind == 2:
            if ln != 4:
                return True, mss
            mss = _be16(b, o + 2)
        elif kind == 3:
            if ln != 3:
                return True, mss
        elif kind == 4:
            if ln != 2:
                return True, mss
        elif kind == 5:
            if ln == 2 and o + 4 <= end and o + 4 <= cap_end and b[o + 2] == 0 and b[o + 3] == 0:
                return True, mss
        elif kind == 8:
            if ln != 10:
                return True, mss
            if (flags & ACK) and not (flags & SYN) and _be32(b, o + 2) == 0 and _be32(b, o + 6) == 0:
                return True, mss
        elif kind == 19:
            if ln != 18:
                return True, mss
        o += ln
    return False, mss


@jit
def decode_kernel(buf, data_off, caplen, wirelen, linktype,
                  status, pkt_flags, l3_off, l4_off, payload_off, payload_len, payload_cap, ip_end_out, ip_wire_end,
                  ip_version, proto, src_hi, src_lo, dst_hi, dst_lo, sport, dport, tcp_flags, seq, ack, win,
                  icmp_id, vlan, vlan2, frag_id, frag_off, frag_more, frag_data_off, frag_nh, bad_flags):
    n = data_off.shape[0]
    for i in range(n):
        start = data_off[i]
        end = start + caplen[i]
        cut = caplen[i] < wirelen[i]
        flags8 = np.uint8(st.F_CAPTURE_TRUNCATED) if cut else np.uint8(0)
        stt = st.OK
        # defaults
        l3_off[i] = -1
        l4_off[i] = -1
        payload_off[i] = end
        payload_len[i] = 0
        payload_cap[i] = 0
        ip_end_out[i] = end
        ip_wire_end[i] = end
        ip_version[i] = 0
        proto[i] = 0
        src_hi[i] = 0
        src_lo[i] = 0
        dst_hi[i] = 0
        dst_lo[i] = 0
        sport[i] = 0
        dport[i] = 0
        tcp_flags[i] = 0
        seq[i] = 0
        ack[i] = 0
        win[i] = 0
        icmp_id[i] = -1
        vlan[i] = -1
        vlan2[i] = -1
        frag_id[i] = 0
        frag_off[i] = 0
        frag_more[i] = 0
        frag_data_off[i] = -1
        frag_nh[i] = -1

        # ---- link layer -> (ethertype, p) ----
        lt = linktype[i]
        p = start
        et = -1
        eth = False  # parse an Ethernet header at p
        if lt == LT_ETHERNET:
            eth = True
        elif lt == LT_LINUX_SLL:
            if end - p < 16:
                stt = st.TRUNCATED if cut else st.MAL_L2
            else:
                et = _be16(buf, p + 14)
                p += 16
        elif lt == LT_LINUX_SLL2:
            if end - p < 20:
                stt = st.TRUNCATED if cut else st.MAL_L2
            else:
                et = _be16(buf, p)
                p += 20
        elif lt == LT_RAW or lt == LT_RAW_BSD1 or lt == LT_RAW_BSD2 or lt == LT_IPV4 or lt == LT_IPV6:
            if end - p < 1:
                stt = st.TRUNCATED if cut else st.MAL_L2
            else:
                v = buf[p] >> 4
                et = ETH_IPV4 if v == 4 else (ETH_IPV6 if v == 6 else 0)
        elif lt == LT_NULL or lt == LT_LOOP:
            if end - p < 4:
                stt = st.TRUNCATED if cut else st.MAL_L2
            else:
                if lt == LT_LOOP or buf[p] != 0 or buf[p + 1] != 0:
                    af = _be32(buf, p) if lt == LT_LOOP else (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8) | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 3]) << 24))
                else:
                    af = _be32(buf, p)
                p += 4
                if af == 2:
                    et = ETH_IPV4
                elif af == 24 or af == 28 or af == 30 or af == 10:
                    et = ETH_IPV6
                else:
                    et = 0
        else:
            stt = st.UNSUPPORTED_LINKTYPE

        depth = 0
        while stt == st.OK:
            if eth:
                eth = False
                if end - p < 14:
                    stt = st.TRUNCATED if cut else st.MAL_L2
                    break
                et = _be16(buf, p + 12)
                p += 14
            # VLAN tags, PPPoE session and MPLS labels between L2 and IP
            while stt == st.OK:
                if et == ETH_VLAN or et == ETH_QINQ or et == ETH_QINQ_OLD:
                    if end - p < 4:
                        stt = st.TRUNCATED if cut else st.MAL_L2
                        break
                    vid = np.int32(_be16(buf, p) & 0x0FFF)
                    if vlan[i] < 0:
                        vlan[i] = vid
                    elif vlan2[i] < 0:
                        vlan2[i] = vid
                    et = _be16(buf, p + 2)
                    p += 4
                elif et == ETH_PPPOE:
                    if end - p < 8:
                        stt = st.TRUNCATED if cut else st.MAL_L2
                        break
                    ppp = _be16(buf, p + 6)
                    p += 8
                    et = ETH_IPV4 if ppp == 0x0021 else (ETH_IPV6 if ppp == 0x0057 else 0)
                elif et == ETH_MPLS:
                    bottom = False
                    while not bottom:
                        if end - p < 4:
                            break
                        bottom = (buf[p + 2] & 1) == 1
                        p += 4
                    if not bottom or end - p < 1:
                        stt = st.TRUNCATED if cut else st.MAL_L2
                        break
                    v = buf[p] >> 4
                    et = ETH_IPV4 if v == 4 else (ETH_IPV6 if v == 6 else 0)
                else:
                    break
            if stt != st.OK:
                break
            if et != ETH_IPV4 and et != ETH_IPV6:
                stt = st.NON_IP if depth == 0 else st.UNSUPPORTED_L2
                break

            # ---- network layer ----
            l3 = p
            nh = -1
            l4 = -1
            iwire = end  # end of the datagram per its IP header
            is_frag = False
            if et == ETH_IPV4:
                if end - l3 < 20:
                    stt = st.TRUNCATED if cut else st.MAL_IPV4_HEADER
                    break
                if (buf[l3] >> 4) != 4:
                    stt = st.MAL_IPV4_HEADER
                    break
                ip_version[i] = 4  # addresses first, so even a bad header is reported with its endpoints
                src_lo[i] = np.uint64(0xFFFF00000000) | np.uint64(_be32(buf, l3 + 12))
                dst_lo[i] = np.uint64(0xFFFF00000000) | np.uint64(_be32(buf, l3 + 16))
                proto[i] = buf[l3 + 9]
                ihl = np.int64(buf[l3] & 0x0F) * 4
                tot = _be16(buf, l3 + 2)
                if ihl < 20:
                    stt = st.MAL_IPV4_HEADER
                    break
                if tot == 0 and (end - l3) >= ihl:
                    tot = end - l3  # segmentation offload: the stack left total length 0
                    flags8 |= np.uint8(st.F_TSO_ZERO_LEN)
                if tot < ihl:
                    stt = st.MAL_IPV4_HEADER
                    break
                if end - l3 < ihl:
                    stt = st.TRUNCATED if cut else st.MAL_IPV4_HEADER
                    break
                iwire = l3 + tot
                if iwire > end and not cut:
                    stt = st.MAL_IP_LENGTH
                    break
                src_hi[i] = 0
                dst_hi[i] = 0
                nh = np.int64(buf[l3 + 9])
                fo = _be16(buf, l3 + 6)
                mf = (fo >> 13) & 1
                off8 = (fo & 0x1FFF) * 8
                l4 = l3 + ihl
                if mf or off8:
                    is_frag = True
                    frag_id[i] = _be16(buf, l3 + 4)
                    frag_off[i] = off8
                    frag_more[i] = mf
                    frag_data_off[i] = l4
                    frag_nh[i] = nh
            else:
                if end - l3 < 40:
                    stt = st.TRUNCATED if cut else st.MAL_IPV6_HEADER
                    break
                if (buf[l3] >> 4) != 6:
                    stt = st.MAL_IPV6_HEADER
                    break
                ip_version[i] = 6
                src_hi[i] = _be64(buf, l3 + 8)
                src_lo[i] = _be64(buf, l3 + 16)
                dst_hi[i] = _be64(buf, l3 + 24)
                dst_lo[i] = _be64(buf, l3 + 32)
                proto[i] = buf[l3 + 6]
                plen = _be16(buf, l3 + 4)
                if plen == 0:
                    plen = end - l3 - 40  # jumbogram or offload: trust the frame
                iwire = l3 + 40 + plen
                if iwire > end and not cut:
                    stt = st.MAL_IP_LENGTH
                    break
                nh = np.int64(buf[l3 + 6])
                q = l3 + 40
                seen_hbh = False
                first_ext = True
                iend = iwire if iwire < end else end
                while stt == st.OK:
                    if nh == 0 or nh == 43 or nh == 60 or nh == 51:
                        if nh == 0 and (seen_hbh or not first_ext):
                            stt = st.MAL_IPV6_EXT
                            break
                        if nh == 0:
                            seen_hbh = True
                        if q + 2 > iend:
                            stt = st.TRUNCATED if cut else st.MAL_IPV6_EXT
                            break
                        ln = (np.int64(buf[q + 1]) + 2) * 4 if nh == 51 else (np.int64(buf[q + 1]) + 1) * 8
                        if q + ln > iend:
                            stt = st.TRUNCATED if cut else st.MAL_IPV6_EXT
                            break
                        nh = np.int64(buf[q])
                        q += ln
                        first_ext = False
                    elif nh == 44:
                        if q + 8 > iend:
                            stt = st.TRUNCATED if cut else st.MAL_IPV6_EXT
                            break
                        fo = _be16(buf, q + 2)
                        off8 = fo & 0xFFF8
                        mf = fo & 1
                        inner = np.int64(buf[q])
                        if off8 or mf:
                            is_frag = True
                            frag_id[i] = _be32(buf, q + 4)
                            frag_off[i] = off8
                            frag_more[i] = mf
                            frag_data_off[i] = q + 8
                            frag_nh[i] = inner
                        nh = inner
                        q += 8
                        first_ext = False
                        if is_frag:
                            break
                    else:
                        break
                if stt != st.OK:
                    break
                l4 = q
            iend = iwire if iwire < end else end  # end of the datagram within the captured bytes
            l3_off[i] = l3
            ip_end_out[i] = iend
            ip_wire_end[i] = iwire
            if is_frag:
                proto[i] = np.uint8(frag_nh[i] & 0xFF)
                stt = st.FRAGMENT
                break
            proto[i] = np.uint8(nh & 0xFF)
            l4_off[i] = l4
            # ---- tunnels ----
            if depth < MAX_ENCAP_DEPTH and (nh == 4 or nh == 41):
                p = l4
                et = ETH_IPV4 if nh == 4 else ETH_IPV6
                depth += 1
                flags8 |= np.uint8(st.F_TUNNELED)
                continue
            if depth < MAX_ENCAP_DEPTH and nh == 47 and iend - l4 >= 4:
                gflags = _be16(buf, l4)
                gver = gflags & 7
                gproto = _be16(buf, l4 + 2)
                if gver == 0 and (gproto == ETH_IPV4 or gproto == ETH_IPV6 or gproto == ETH_TEB):
                    q = l4 + 4
                    if gflags & 0x8000:
                        q += 4
                    if gflags & 0x2000:
                        q += 4
                    if gflags & 0x1000:
                        q += 4
                    if q > iend:
                        stt = st.MAL_TUNNEL
                        break
                    p = q
                    end = iend
                    depth += 1
                    flags8 |= np.uint8(st.F_TUNNELED)
                    if gproto == ETH_TEB:
                        eth = True
                    else:
                        et = gproto
                    continue
            # ---- transport layer ----
            payload_end = iend
            if nh == 6:
                if end - l4 < 20:
                    stt = st.TRUNCATED if cut else st.MAL_TCP_HEADER
                    break
                doff = np.int64(buf[l4 + 12] >> 4) * 4
                if doff < 20 or l4 + doff > iwire:
                    sport[i] = np.int32(_be16(buf, l4))
                    dport[i] = np.int32(_be16(buf, l4 + 2))
                    stt = st.MAL_TCP_HEADER
                    break
                fl = np.int64(buf[l4 + 13]) | ((np.int64(buf[l4 + 12]) & 1) << 8)
                sport[i] = np.int32(_be16(buf, l4))  # the tuple is kept even for a malformed segment
                dport[i] = np.int32(_be16(buf, l4 + 2))
                tcp_flags[i] = np.uint16(fl)
                if bad_flags[fl & 0x3F]:
                    stt = st.MAL_TCP_FLAGS
                    break
                bad, mss = _tcp_options_bad(buf, l4 + 20, l4 + doff, end, fl)
                if bad:
                    stt = st.MAL_TCP_OPTION
                    break
                if mss >= 0 and mss < 256:
                    flags8 |= np.uint8(st.F_SMALL_MSS)
                sport[i] = np.int32(_be16(buf, l4))
                dport[i] = np.int32(_be16(buf, l4 + 2))
                seq[i] = _be32(buf, l4 + 4)
                ack[i] = _be32(buf, l4 + 8)
                win[i] = np.int32(_be16(buf, l4 + 14))
                tcp_flags[i] = np.uint16(fl)
                po = l4 + doff
                # options cut by the snaplen: the payload starts past the captured bytes (none captured)
                payload_off[i] = po if po < payload_end else payload_end
                payload_len[i] = iwire - po
                payload_cap[i] = payload_end - po if payload_end > po else 0
                if (fl & SYN) and iwire > po:
                    flags8 |= np.uint8(st.F_SYN_DATA)
            elif nh == 17:
                if end - l4 < 8:
                    stt = st.TRUNCATED if cut else st.MAL_UDP_HEADER
                    break
                ulen = _be16(buf, l4 + 4)
                if iwire - l4 < 8 or (ulen != 0 and ulen < 8):
                    stt = st.MAL_UDP_HEADER
                    break
                sp = _be16(buf, l4)
                dp = _be16(buf, l4 + 2)
                uend = iwire
                if ulen >= 8 and l4 + ulen < iwire:
                    uend = l4 + ulen
                if depth < MAX_ENCAP_DEPTH and dp == VXLAN_PORT and uend - l4 >= 16 and end - l4 >= 16 \
                        and (buf[l4 + 8] & 0x08):
                    p = l4 + 16
                    end = uend if uend < end else end
                    depth += 1
                    flags8 |= np.uint8(st.F_TUNNELED)
                    eth = True
                    continue
                sport[i] = np.int32(sp)
                dport[i] = np.int32(dp)
                po = l4 + 8
                payload_off[i] = po
                payload_len[i] = uend - po
                pe = uend if uend < end else end
                payload_cap[i] = pe - po if pe > po else 0
            elif nh == 1 or nh == 58:
                if end - l4 < 8 or iwire - l4 < 8:
                    stt = st.TRUNCATED if (cut and iwire - l4 >= 8) else st.MAL_ICMP_HEADER
                    break
                t = np.int32(buf[l4])
                sport[i] = t
                dport[i] = np.int32(buf[l4 + 1])
                if nh == 1:
                    echo = t == 8 or t == 0 or t == 13 or t == 14 or t == 15 or t == 16 or t == 17 or t == 18
                else:
                    echo = t == 128 or t == 129
                if echo:
                    icmp_id[i] = np.int32(_be16(buf, l4 + 4))
                po = l4 + 8
                payload_off[i] = po
                payload_len[i] = iwire - po
                payload_cap[i] = payload_end - po if payload_end > po else 0
            else:
                payload_off[i] = l4
                payload_len[i] = iwire - l4
                payload_cap[i] = payload_end - l4 if payload_end > l4 else 0
            break
        status[i] = np.uint8(stt)
        pkt_flags[i] = flags8


def decode(raw: RawBatch) -> PacketBatch:
    """Decode every packet of `raw` into columns."""
    n = len(raw)
    cols = dict(
        status=np.empty(n, np.uint8), pkt_flags=np.empty(n, np.uint8),
        l3_off=np.empty(n, np.int64), l4_off=np.empty(n, np.int64), payload_off=np.empty(n, np.int64),
        payload_len=np.empty(n, np.int64), payload_cap=np.empty(n, np.int64), ip_end=np.empty(n, np.int64),
        ip_wire_end=np.empty(n, np.int64),
        ip_version=np.empty(n, np.uint8), proto=np.empty(n, np.uint8),
        src_hi=np.empty(n, np.uint64), src_lo=np.empty(n, np.uint64),
        dst_hi=np.empty(n, np.uint64), dst_lo=np.empty(n, np.uint64),
        sport=np.empty(n, np.int32), dport=np.empty(n, np.int32), tcp_flags=np.empty(n, np.uint16),
        seq=np.empty(n, np.int64), ack=np.empty(n, np.int64), win=np.empty(n, np.int32),
        icmp_id=np.empty(n, np.int32), vlan=np.empty(n, np.int32), vlan2=np.empty(n, np.int32),
        frag_id=np.empty(n, np.int64), frag_off=np.empty(n, np.int64), frag_more=np.empty(n, np.uint8),
        frag_data_off=np.empty(n, np.int64), frag_nh=np.empty(n, np.int32),
    )
    decode_kernel(
        raw.buf, raw.data_off, raw.caplen, raw.wirelen, raw.linktype,
        cols["status"], cols["pkt_flags"], cols["l3_off"], cols["l4_off"], cols["payload_off"],
        cols["payload_len"], cols["payload_cap"], cols["ip_end"], cols["ip_wire_end"], cols["ip_version"],
        cols["proto"],
        cols["src_hi"], cols["src_lo"], cols["dst_hi"], cols["dst_lo"], cols["sport"], cols["dport"],
        cols["tcp_flags"], cols["seq"], cols["ack"], cols["win"], cols["icmp_id"], cols["vlan"], cols["vlan2"],
        cols["frag_id"], cols["frag_off"], cols["frag_more"], cols["frag_data_off"], cols["frag_nh"], _BAD_FLAGS,
    )
    return PacketBatch(raw=raw, **cols)
