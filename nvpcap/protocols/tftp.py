"""TFTP (RFC 1350 §5; options RFC 2347-2349, RFC 7440): RRQ/WRQ `opcode filename NUL mode NUL [opt NUL val
NUL]...` sent to port 69; the transfer then runs between two other ports: DATA `3 block data`, ACK `4 block`,
ERROR `5 code msg NUL`, OACK `6 [opt NUL val NUL]...`.

NeuVector (dpi_tftp.c): port 69; opcode 1-6; RRQ/WRQ filename of [A-Za-z0-9-./\\_] (<= 128) + NUL then mode
netascii/octet/mail; OACK `name NUL digits NUL`. Here: the request needs port 69 (a 2-byte opcode and a name
are too little on their own); filenames may be any printable ASCII (<= 255); NUL padding before the mode is
tolerated (seen in real captures). Transfer flows (other ports) are proven by a consistent pair: DATA n / ACK n,
ACK n / DATA n+1, OACK / ACK 0 or DATA 1, or an ERROR answer; on the last call an OACK or ERROR alone will do.
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

PORT = 69  # RRQ/WRQ are undecidable without it
RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
MODES = frozenset((b"netascii", b"octet", b"mail"))
OPTIONS = frozenset((b"blksize", b"tsize", b"timeout", b"windowsize", b"multicast", b"utimeout", b"rollover"))
MAX_FILENAME = 255
MAX_DATA = 65464  # largest blksize (RFC 2348)
MAX_ERROR_CODE = 8  # 8: option negotiation refused (RFC 2347)
TEXT = bytes(range(0x20, 0x7F))

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def _strings(body: bytes) -> list[bytes] | None:
    """NUL-terminated printable strings filling body exactly, or None."""
    if not body.endswith(b"\0"):
        return None
    fields = body[:-1].split(b"\0")
    return None if any(f.translate(None, TEXT) for f in fields) else fields


def request(msg: bytes) -> bool:
    if len(msg) < 4 or msg[0] != 0 or msg[1] not in (RRQ, WRQ):
        return False
    fields = _strings(msg[2:])
    if not fields or len(fields[0]) > MAX_FILENAME:
        return False
    rest = fields[1:]
    while rest and not rest[0]:
        rest = rest[1:]  # NUL padding between filename and mode
    if not rest or rest[0].lower() not in MODES:
        return False
    return len(rest) % 2 == 1 and all(rest[1:])  # non-empty option name/value pairs (names are free-form)


def oack(msg: bytes) -> bool:
    fields = _strings(msg[2:]) if msg[:2] == bytes((0, OACK)) else None
    if not fields or len(fields) % 2:
        return False
    return all(n.lower() in OPTIONS and v for n, v in zip(fields[::2], fields[1::2]))


def error(msg: bytes) -> bool:
    if len(msg) < 5 or msg[:2] != bytes((0, ERROR)) or msg[2] != 0 or msg[3] > MAX_ERROR_CODE:
        return False
    fields = _strings(msg[4:])
    return fields is not None and len(fields) == 1


def _block(msg: bytes, opcode: int) -> int:
    """Block number of a DATA/ACK message, or -1."""
    if msg[:2] != bytes((0, opcode)):
        return -1
    if (opcode == ACK and len(msg) != 4) or (opcode == DATA and not 4 <= len(msg) <= 4 + MAX_DATA):
        return -1
    return int.from_bytes(msg[2:4], "big")


def _pair(a: bytes, b: bytes) -> bool:
    """Is b a plausible first answer to a (first message of a transfer flow)?"""
    if error(b):
        return _block(a, DATA) >= 0 or _block(a, ACK) >= 0 or oack(a)
    data_a, ack_a, data_b, ack_b = _block(a, DATA), _block(a, ACK), _block(b, DATA), _block(b, ACK)
    if oack(a):
        return ack_b == 0 or data_b == 1
    return (data_a >= 0 and ack_b == data_a) or (ack_a >= 0 and data_b == (ack_a + 1) & 0xFFFF)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        if client[:1] not in (b"", b"\0") or server[:1] not in (b"", b"\0"):
            return NO
        if PORT in (ctx.server_port, ctx.client_port) and request(client):
            return YES  # the answer comes from another port: nothing more to wait for
        if client and server:
            return YES if _pair(client, server) else NO
        if not client and not server:
            return MAYBE
        lone = client or server
        known = request(lone) or oack(lone) or error(lone) or _block(lone, DATA) >= 0 or _block(lone, ACK) >= 0
        if not known:
            return NO
        if ctx.final:
            return YES if oack(lone) or error(lone) else NO
        return MAYBE
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="tftp",
    transports=("udp",),
    ports=(PORT,),
    probe=probe,
    description="TFTP: RRQ/WRQ to port 69 (filename, mode), or a consistent DATA/ACK/OACK/ERROR exchange",
)
