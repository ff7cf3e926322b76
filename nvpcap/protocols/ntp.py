"""NTP: the 48-byte header (RFC 5905 §7.3; RFC 1305 appendix A for v3): LI/VN/mode, stratum, poll, precision,
root delay/dispersion, reference id, four timestamps; extension fields and a MAC may follow.

NeuVector (dpi_ntp.c): port 123 on either side; length >= 48; version <= 4; stratum 1 needs an ASCII refid,
otherwise stratum <= 16; ref_ts <= xmit_ts and orig_ts <= recv_ts. Same here (timestamps compared only when
both are set), with version 1-4 and mode 1-5 (symmetric active/passive, client, server, broadcast).
Port 123 is required: the header is mostly free-form numbers, so without the port NTP is undecidable.
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

HEADER = struct.Struct("!BBbbII4sQQQQ")  # LI|VN|mode, stratum, poll, precision, delay, dispersion, refid, 4 x ts
PORT = 123
MODES = range(1, 6)
NO_REPLY_MODES = (4, 5)  # server (seen without its request), broadcast: no answer comes in this flow
MAX_STRATUM = 16
REFID_CHARS = frozenset(range(0x20, 0x7F)) | {0}

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def header(msg: bytes) -> int:
    """The mode of a sane NTP header, or 0."""
    if len(msg) < HEADER.size:
        return 0
    first, stratum, _, _, _, _, refid, ref_ts, orig_ts, recv_ts, xmit_ts = HEADER.unpack_from(msg)
    version, mode = (first >> 3) & 7, first & 7
    if not 1 <= version <= 4 or mode not in MODES or stratum > MAX_STRATUM:
        return 0
    if stratum == 1 and not (0x20 < refid[0] < 0x7F and all(c in REFID_CHARS for c in refid)):
        return 0  # a primary server names its reference clock in ASCII ("GPS", "PPS", ...)
    if (ref_ts and xmit_ts and ref_ts > xmit_ts) or (orig_ts and recv_ts and orig_ts > recv_ts):
        return 0
    return mode


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        if PORT not in (ctx.client_port, ctx.server_port):
            return NO
        c = header(client) if client else -1
        s = header(server) if server else -1
        if c == 0 or s == 0:
            return NO
        if c > 0 and s > 0:
            return YES
        if c in NO_REPLY_MODES or s in NO_REPLY_MODES or (ctx.final and max(c, s) > 0):
            return YES
        return MAYBE
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="ntp",
    transports=("udp",),
    ports=(PORT,),
    probe=probe,
    description="NTP v1-4, modes 1-5: sane 48-byte header on UDP port 123",
)
