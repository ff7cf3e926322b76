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

from nvpcap.protocols.base import FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict

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


# ---- parsing: each flow of a transfer on its own (the request to port 69, then the transfer's own ports) ----

OPCODE_NAMES = {RRQ: "RRQ", WRQ: "WRQ", DATA: "DATA", ACK: "ACK", ERROR: "ERROR", OACK: "OACK"}
ERROR_NAMES = {  # RFC 1350 appendix, RFC 2347 (8)
    0: "Not defined", 1: "File not found", 2: "Access violation", 3: "Disk full or allocation exceeded",
    4: "Illegal TFTP operation", 5: "Unknown transfer ID", 6: "File already exists", 7: "No such user",
    8: "Option negotiation refused",
}
DEFAULT_BLKSIZE = 512  # RFC 1350 §6; RFC 2348 blksize option
MAX_OPTIONS = 16
MAX_TEXT = 255


def _s(raw: bytes) -> str:
    return raw.decode("ascii", "replace")[:MAX_TEXT]


def strings(body: bytes) -> list[bytes]:
    """The NUL-terminated strings of a request/OACK/ERROR body (a missing last NUL tolerated)."""
    fields = body.split(b"\0")
    return fields[:-1] if fields and fields[-1] == b"" else fields


class _Transfer:
    """What one flow showed of a transfer: the request (if this is the port-69 flow), options, blocks, error."""

    def __init__(self, opcode: int, frame: int, ts_ns: int) -> None:
        self.opcode, self.frame, self.ts_ns = opcode, frame, ts_ns
        self.request: bytes | None = None
        self.filename: str | None = None
        self.mode: str | None = None
        self.options: list[str] | None = None
        self.oack: list[str] | None = None
        self.blksize = DEFAULT_BLKSIZE
        self.blocks = self.bytes = self.retransmits = 0
        self.last_block: int | None = None
        self.last_ack: int | None = None
        self.complete = False
        self.error_code: int | None = None
        self.error_msg: str | None = None

    def fields(self) -> dict:
        return {
            "opcode": OPCODE_NAMES.get(self.opcode, self.opcode), "filename": self.filename, "mode": self.mode,
            "options": self.options, "oack": self.oack, "blocks": self.blocks, "bytes": self.bytes,
            "retransmits": self.retransmits, "last_block": self.last_block, "last_ack": self.last_ack,
            "complete": self.complete, "error_code": self.error_code, "error_msg": self.error_msg,
        }


def _pairs(fields: list[bytes]) -> list[str]:
    return [f"{_s(n)}={_s(v)}" for n, v in zip(fields[::2], fields[1::2])][:MAX_OPTIONS]


class TftpParser(Parser):
    """One event per transfer seen in the flow, at its end. TFTP moves the transfer to a new server port (RFC
    1350 §4), so the request (RRQ/WRQ to port 69: filename, mode, options) and its DATA/ACK exchange are two
    flows: each flow gets its own event, the request one with the name, the transfer one with its blocks and
    bytes (its `opcode` is the first message it saw). A transfer is complete once a DATA block shorter than
    the block size is acknowledged."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.current: _Transfer | None = None

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if len(data) < 2 or data[0] != 0 or data[1] not in OPCODE_NAMES:
            self.anomaly_once("tftp-bad-opcode", f"not a TFTP message ({len(data)} bytes)", frame, ts_ns)
            return
        opcode = data[1]
        if opcode in (RRQ, WRQ):
            self._request(opcode, data, frame, ts_ns)
            return
        t = self.current
        if t is None:
            t = self.current = _Transfer(opcode, frame, ts_ns)
        if opcode == DATA:
            self._data(t, data, frame, ts_ns)
        elif opcode == ACK:
            if len(data) >= 4:
                t.last_ack = int.from_bytes(data[2:4], "big")
                if t.last_ack == t.last_block and t.complete is None:
                    t.complete = True
        elif opcode == ERROR:
            t.error_code = int.from_bytes(data[2:4], "big") if len(data) >= 4 else None
            text = strings(data[4:])
            t.error_msg = _s(text[0]) if text else None
        elif opcode == OACK:
            fields = strings(data[2:])
            t.oack = _pairs(fields)
            for name, value in zip(fields[::2], fields[1::2]):
                if name.lower() == b"blksize" and value.isdigit() and len(value) <= 5:  # 8-65464 (RFC 2348)
                    t.blksize = int(value)

    def _request(self, opcode: int, data: bytes, frame: int, ts_ns: int) -> None:
        t = self.current
        if t is not None and t.request == data:
            return  # the client sent its request again: the same transfer
        self._emit()
        t = self.current = _Transfer(opcode, frame, ts_ns)
        t.request = data
        fields = strings(data[2:])
        t.filename = _s(fields[0]) if fields else None
        rest = fields[1:]
        while rest and not rest[0]:
            rest = rest[1:]  # NUL padding before the mode (seen in real captures)
        t.mode = _s(rest[0]).lower() if rest else None
        t.options = _pairs(rest[1:]) or None
        if not fields or not rest:
            self.anomaly_once("tftp-bad-request", "RRQ/WRQ without a filename and mode", frame, ts_ns)

    def _data(self, t: _Transfer, data: bytes, frame: int, ts_ns: int) -> None:
        if len(data) < 4:
            self.anomaly_once("tftp-bad-data", "DATA message without a block number", frame, ts_ns)
            return
        block, size = int.from_bytes(data[2:4], "big"), len(data) - 4
        if t.last_block is not None and block == t.last_block:
            t.retransmits += 1
            return
        t.last_block = block
        t.blocks += 1
        t.bytes += size
        # a block shorter than the block size is the last one: complete once it is acknowledged
        t.complete = None if size < t.blksize else False

    def _emit(self) -> None:
        t, self.current = self.current, None
        if t is not None:
            if t.complete is None:
                t.complete = False
            self.out.event(t.fields(), t.frame, t.ts_ns)

    def finish(self) -> None:
        self._emit()


SPEC = ProtocolSpec(
    name="tftp",
    transports=("udp",),
    ports=(PORT,),
    probe=probe,
    description="TFTP: RRQ/WRQ to port 69 (filename, mode), or a consistent DATA/ACK/OACK/ERROR exchange",
    parser=TftpParser,
    extracts="per flow's transfer: opcode, filename, mode, options, oack, blocks, bytes, retransmits, last block/ack, "
             "complete, error code/message",
)
