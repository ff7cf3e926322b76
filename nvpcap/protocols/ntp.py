"""NTP: the 48-byte header (RFC 5905 §7.3; RFC 1305 appendix A for v3): LI/VN/mode, stratum, poll, precision,
root delay/dispersion, reference id, four timestamps; extension fields and a MAC may follow.

NeuVector (dpi_ntp.c): port 123 on either side; length >= 48; version <= 4; stratum 1 needs an ASCII refid,
otherwise stratum <= 16; ref_ts <= xmit_ts and orig_ts <= recv_ts. Same here (timestamps compared only when
both are set), with version 1-4 and mode 1-5 (symmetric active/passive, client, server, broadcast).
Port 123 is required: the header is mostly free-form numbers, so without the port NTP is undecidable.
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict

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
    except Exception:  # noqa: BLE001 - never raise on capture bytes
        return NO


# ---- parsing: one event per NTP message, with the fields of Zeek's ntp.log ----

NTP_EPOCH = 2208988800  # seconds from 1900-01-01 (NTP era 0, RFC 5905 §6) to 1970-01-01
FRACTION = 1 / (1 << 32)
MAC_SIZES = (4, 20, 24)  # key id alone (crypto-NAK), key id + MD5, key id + SHA-1 (RFC 5905 §7.3, RFC 7822 §7.5)
EXT_HEAD = struct.Struct("!HH")  # extension field type, length (RFC 7822 §3)
MIN_EXT = 16
CONTROL_MODES = (6, 7)  # control messages (RFC 1305 appendix B / RFC 9327) and ntpd private (mode 7): other layout
MODE_NAMES = {0: "reserved", 1: "symmetric active", 2: "symmetric passive", 3: "client", 4: "server",
              5: "broadcast", 6: "control", 7: "private"}


def ntp_time(value: int) -> float:
    """An NTP 64-bit timestamp as Unix seconds; 0 stays 0.0 (the field is unset, RFC 5905 §7.3)."""
    if not value:
        return 0.0
    return (value >> 32) - NTP_EPOCH + (value & 0xFFFFFFFF) * FRACTION


def ref_id(stratum: int, raw: bytes) -> str:
    """Stratum 0/1: a four-character code (kiss code, clock source); above: the IPv4 address of the reference
    (or the first four bytes of an MD5 of its IPv6 address) shown as dotted quad (RFC 5905 §7.3)."""
    if stratum <= 1:
        return raw.rstrip(b"\0").decode("ascii", "replace")
    return ".".join(map(str, raw))


def extensions(rest: bytes) -> int | None:
    """Number of extension fields after the header (RFC 7822 §7.5); None when they do not parse."""
    count, off = 0, 0
    while len(rest) - off not in (0, *MAC_SIZES):
        if off + EXT_HEAD.size > len(rest):
            return None
        _, length = EXT_HEAD.unpack_from(rest, off)
        if length < MIN_EXT or length % 4 or off + length > len(rest):
            return None
        off += length
        count += 1
    return count


def message(msg: bytes) -> dict | None:
    """The event fields of one NTP message; None when shorter than its header."""
    if not msg:
        return None
    version, mode = (msg[0] >> 3) & 7, msg[0] & 7
    fields: dict = {"version": version, "mode": mode, "mode_name": MODE_NAMES[mode]}
    if mode in CONTROL_MODES:
        return fields  # not the time-exchange header: only the first byte is shared
    if len(msg) < HEADER.size:
        return None
    _, stratum, poll, precision, delay, disp, refid, ref_ts, org_ts, rec_ts, xmt_ts = HEADER.unpack_from(msg)
    fields.update({
        "stratum": stratum,
        "poll": float(2.0 ** poll),  # log2 seconds
        "precision": float(2.0 ** precision),
        "root_delay": delay / 65536,  # NTP short format, 16.16 seconds
        "root_disp": disp / 65536,
        "ref_id": ref_id(stratum, refid),
        "ref_time": ntp_time(ref_ts), "org_time": ntp_time(org_ts), "rec_time": ntp_time(rec_ts),
        "xmt_time": ntp_time(xmt_ts),
        "num_exts": extensions(msg[HEADER.size :]) if version == 4 else 0,
    })
    return fields


class NtpParser(Parser):
    """One event per NTP message, as Zeek's ntp.log (the answer to a client is a message of its own, and it
    often comes back in the same flow). A datagram shorter than the header is the anomaly ntp-truncated."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.truncated_reported = False

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        fields = message(data)
        if fields is not None:
            self.out.event(fields, frame, ts_ns)
        elif not self.truncated_reported:
            self.truncated_reported = True
            self.out.anomaly("ntp-truncated", f"{len(data)}-byte NTP datagram, shorter than the 48-byte header",
                             frame, ts_ns)


SPEC = ProtocolSpec(
    name="ntp",
    transports=("udp",),
    ports=(PORT,),
    probe=probe,
    description="NTP v1-4, modes 1-5: sane 48-byte header on UDP port 123",
    parser=NtpParser,
    extracts="per message (Zeek ntp.log): version, mode, stratum, poll, precision, root delay/dispersion, ref_id, "
             "ref/org/rec/xmt times (Unix seconds), extension count",
)
