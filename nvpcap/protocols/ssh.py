"""SSH: the identification string `SSH-protoversion-softwareversion SP comments CR LF` (RFC 4253 §4.2; RFC 4253
allows the server to send other text lines first; old versions end the line with LF only).

NeuVector (dpi_ssh.c): banner `SSH-<1|2>.<digit>...` of at least 8 printable bytes from either side, on any
port; finalized on the server banner. Here: a complete banner line from either side, while the other side is
empty or consistent with SSH; protoversion 2.0, 1.99 or 1.x.
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext, Parser, ParserOutput, ProtocolSpec, SideBuffer, Verdict

MAX_LINE = 255  # RFC 4253 §4.2: at most 255 characters including CR LF
MAX_PRE_LINES = 8  # server text lines accepted before its banner
PRINTABLE = bytes(range(0x20, 0x7F))
DIGITS = frozenset(b"0123456789")

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def banner(buf: bytes, start: int = 0) -> Verdict:
    """Does buf[start:] begin with an identification line? YES complete, MAYBE a valid prefix, NO."""
    line = buf[start : start + MAX_LINE]
    eol = line.find(b"\n")
    text = line[:eol] if eol >= 0 else line
    if text.endswith(b"\r"):
        text = text[:-1]
    if text[:4] != b"SSH-"[: len(text)]:
        return NO
    dash = text.find(b"-", 4)
    version = text[4 : dash if dash >= 0 else len(text)]
    # protoversion: "2.0", "1.99", "1.5": a major digit 1 or 2, a dot, one or two digits
    if version[:1] and version[0] not in b"12" or version[1:2] and version[1] != 0x2E:
        return NO
    if len(version) > 4 or not all(c in DIGITS for c in version[2:]):
        return NO
    if text.translate(None, PRINTABLE):
        return NO  # a control byte in the line
    if eol < 0:
        return MAYBE if len(line) < MAX_LINE else NO
    return YES if dash >= 0 and len(version) >= 3 and len(text) > dash + 1 else NO


def _server(buf: bytes) -> Verdict:
    """The server banner, possibly after a few other text lines (RFC 4253 §4.2)."""
    start = 0
    for _ in range(MAX_PRE_LINES):
        v = banner(buf, start)
        if v != NO or buf[start : start + 4] == b"SSH-"[: len(buf) - start]:
            return v
        eol = buf.find(b"\n", start, start + MAX_LINE)
        if buf[start : eol if eol >= 0 else start + MAX_LINE].translate(None, PRINTABLE + b"\r\t"):
            return NO  # a pre-banner line must be text
        if eol < 0:
            return MAYBE if len(buf) - start < MAX_LINE else NO
        start = eol + 1
        if start >= len(buf):
            return MAYBE
    return NO


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        c = banner(client) if client else MAYBE
        s = _server(server) if server else MAYBE
        if NO in (c, s):
            if YES in (c, s):
                return YES if ctx.final else MAYBE  # one banner, and foreign bytes the other way
            return NO
        if YES in (c, s):
            return YES
        return NO if ctx.final else MAYBE
    except Exception:  # never raise on capture bytes
        return NO


# ---- parsing: the identification lines, then each side's SSH_MSG_KEXINIT (RFC 4253 §7.1) ----

PACKET_HEAD = struct.Struct("!IB")  # packet_length, padding_length (RFC 4253 §6)
MSG_KEXINIT = 20
MAX_KEXINIT = 35000  # RFC 4253 §6.1: implementations must handle packets of 35000 bytes
KEX_LISTS = ("kex_algorithms", "server_host_key_algorithms", "encryption_algorithms_client_to_server",
             "encryption_algorithms_server_to_client", "mac_algorithms_client_to_server",
             "mac_algorithms_server_to_client", "compression_algorithms_client_to_server",
             "compression_algorithms_server_to_client")


def parse_banner(line: bytes) -> tuple[str, str, str]:
    """(protoversion, softwareversion, comments) of an identification line without its CR LF."""
    text = line.decode("ascii", "replace")
    _, _, rest = text.partition("-")
    proto, _, rest = rest.partition("-")
    software, _, comments = rest.partition(" ")
    return proto, software, comments


def parse_kexinit(payload: bytes) -> dict[str, list[str]] | None:
    """The ten name-lists of a KEXINIT payload (after the message byte and 16-byte cookie); None if cut."""
    off = 17
    lists: dict[str, list[str]] = {}
    for name in KEX_LISTS:
        if off + 4 > len(payload):
            return None
        (n,) = struct.unpack_from("!I", payload, off)
        if off + 4 + n > len(payload):
            return None
        raw = payload[off + 4 : off + 4 + n].decode("ascii", "replace")
        lists[name] = raw.split(",") if raw else []
        off += 4 + n
    return lists


def negotiate(client: list[str], server: list[str]) -> str | None:
    """RFC 4253 §7.1: the first algorithm on the client's list that the server also supports."""
    offered = set(server)
    return next((a for a in client if a in offered), None)


class SshParser(Parser):
    """One event per connection (as Zeek's ssh.log): both banners and the negotiated algorithms; threat
    2008 when a side announces protocol 1.x other than 1.99. Done once both KEXINITs are read: what follows
    is encrypted."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.bufs = [SideBuffer(MAX_LINE * (MAX_PRE_LINES + 1)), SideBuffer(MAX_LINE * (MAX_PRE_LINES + 1))]
        self.banner: list[str | None] = [None, None]
        self.kex: list[dict[str, list[str]] | None] = [None, None]
        self.where = (0, 0)
        self.emitted = False

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.where == (0, 0):
            self.where = (frame, ts_ns)
        buf = self.bufs[side]
        if not buf.add(data):
            self.mark_lost(side)
        if self.banner[side] is None:
            self._banner(side, frame, ts_ns)
        if self.banner[side] is not None and self.kex[side] is None and not self.lost[side]:
            self._kexinit(side)
        if self.kex[CLIENT] is not None and self.kex[SERVER] is not None or all(self.lost):
            self.finish()
            self.done = True

    def _banner(self, side: int, frame: int, ts_ns: int) -> None:
        data = self.bufs[side].data
        while True:
            eol = data.find(b"\n")
            if eol < 0:
                return
            line = bytes(data[:eol]).rstrip(b"\r")
            del data[: eol + 1]
            if line.startswith(b"SSH-"):
                break
        self.banner[side] = line.decode("ascii", "replace")
        proto, _, _ = parse_banner(line)
        if proto.startswith("1.") and proto != "1.99":
            self.out.threat(2008, f"SSH protocol version {proto} announced", side, frame, ts_ns)
        self.bufs[side] = SideBuffer(MAX_KEXINIT + 5)
        self.bufs[side].add(bytes(data))

    def _kexinit(self, side: int) -> None:
        data = self.bufs[side].data
        if len(data) < PACKET_HEAD.size:
            return
        length, _ = PACKET_HEAD.unpack_from(data)
        if length > MAX_KEXINIT or length < 2:
            self.mark_lost(side)  # not a cleartext packet we can frame: stop reading this side
            return
        if len(data) < 4 + length:
            return
        payload = bytes(data[5 : 4 + length - data[4]])
        del data[: 4 + length]
        if payload[:1] == bytes((MSG_KEXINIT,)):
            self.kex[side] = parse_kexinit(payload)
        if self.kex[side] is None:
            self.mark_lost(side)

    def finish(self) -> None:
        if self.emitted or (self.banner[CLIENT] is None and self.banner[SERVER] is None):
            return
        self.emitted = True
        fields: dict = {"client": self.banner[CLIENT], "server": self.banner[SERVER]}
        versions = {parse_banner(b.encode())[0] for b in self.banner if b is not None}
        fields["version"] = 2 if versions <= {"2.0", "1.99"} else 1
        c, s = self.kex
        if c is not None and s is not None:
            fields["kex_alg"] = negotiate(c["kex_algorithms"], s["kex_algorithms"])
            fields["host_key_alg"] = negotiate(c["server_host_key_algorithms"], s["server_host_key_algorithms"])
            fields["cipher_alg"] = negotiate(c["encryption_algorithms_client_to_server"],
                                             s["encryption_algorithms_client_to_server"])
            fields["mac_alg"] = negotiate(c["mac_algorithms_client_to_server"], s["mac_algorithms_client_to_server"])
            fields["compression_alg"] = negotiate(c["compression_algorithms_client_to_server"],
                                                  s["compression_algorithms_client_to_server"])
        self.out.event(fields, *self.where)


SPEC = ProtocolSpec(
    name="ssh",
    transports=("tcp",),
    ports=(22, 2222),
    probe=probe,
    description="SSH: SSH-2.0-/SSH-1.x- identification line from either side",
    parser=SshParser,
    extracts="client and server banners, protocol version, negotiated kex/host key/cipher/mac/compression",
)
