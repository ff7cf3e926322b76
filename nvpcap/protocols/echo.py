"""Echo (RFC 862): the server sends back whatever the client sends, on TCP or UDP port 7.

NeuVector (dpi_echo.c): port 7 on either side, any payload. Here the port is required too (any bytes can be
echoed, so the protocol is undecidable without it), and the answer must repeat the client's bytes: on TCP the
shorter stream prefix is a prefix of the other; on UDP the first datagrams are equal. A request that is never
answered is accepted on the last call (NeuVector's port-only rule).
"""
from __future__ import annotations

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict

PORT = 7

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        if PORT not in (ctx.client_port, ctx.server_port):
            return NO
        if not client:
            return NO if server else MAYBE  # the echo server never speaks first
        if not server:
            return YES if ctx.final else MAYBE
        if ctx.transport == "udp":
            return YES if client == server else NO
        n = min(len(client), len(server))
        return YES if client[:n] == server[:n] else NO
    except Exception:  # never raise on capture bytes
        return NO


# ---- parsing: compare what comes back with what was sent ----

MAX_HELD = 1 << 16  # client bytes (TCP) or datagrams' bytes (UDP) held until the server echoes them
MAX_DATAGRAMS = 64


class EchoParser(Parser):
    """A single event at the end of the flow: bytes and messages each way, how many of the server's bytes
    repeated the client's, and whether all of them did (`matched`; None when the server sent nothing).
    TCP compares the two byte streams; UDP each server datagram with the oldest client datagram not yet
    echoed. At most 64 KiB of client bytes wait for their echo: beyond that the bytes are counted only (and
    `echoed_bytes` says how many were compared)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.udp = ctx.transport == "udp"
        self.held = bytearray()  # TCP: client bytes not yet echoed
        self.datagrams: list[bytes] = []  # UDP: client datagrams not yet echoed
        self.held_bytes = 0
        self.bytes = [0, 0]
        self.messages = [0, 0]
        self.echoed = 0
        self.mismatch = False
        self.overflow = False  # client bytes beyond MAX_HELD were not kept: what echoes them cannot be checked
        self.stopped = False  # TCP bytes were lost: only counting from there
        self.where: tuple[int, int] | None = None

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.where is None:
            self.where = (frame, ts_ns)
        self.bytes[side] += len(data)
        self.messages[side] += 1
        if self.stopped:
            return
        if side == CLIENT:
            self._hold(data)
        elif not self.mismatch:
            self._compare(data)

    def _hold(self, data: bytes) -> None:
        if self.udp:
            if len(self.datagrams) < MAX_DATAGRAMS and self.held_bytes + len(data) <= MAX_HELD:
                self.datagrams.append(data)
                self.held_bytes += len(data)
            else:
                self.overflow = True
        elif len(self.held) + len(data) <= MAX_HELD and not self.overflow:
            self.held += data
        else:
            self.overflow = True

    def _compare(self, data: bytes) -> None:
        if self.udp:
            if not self.datagrams:
                self.mismatch = not self.overflow  # nothing was sent that this could echo
                return
            sent = self.datagrams.pop(0)
            self.held_bytes -= len(sent)
            if sent == data:
                self.echoed += len(data)
            else:
                self.mismatch = True
            return
        n = min(len(data), len(self.held))
        if data[:n] != self.held[:n] or (n < len(data) and not self.overflow):
            self.mismatch = True  # different bytes, or more bytes back than were sent
            return
        self.echoed += n
        del self.held[:n]

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        """Lost bytes: they are counted, and the comparison stops (the streams cannot be lined up again)."""
        self.bytes[side] += missing
        self.overflow = True
        self.held.clear()
        self.stopped = True

    def finish(self) -> None:
        if self.where is None:
            return
        self.out.event({
            "client_bytes": self.bytes[CLIENT], "server_bytes": self.bytes[SERVER],
            "client_messages": self.messages[CLIENT], "server_messages": self.messages[SERVER],
            "echoed_bytes": self.echoed,
            "matched": None if not self.bytes[SERVER] else not self.mismatch,
        }, *self.where)
        self.where = None


SPEC = ProtocolSpec(
    name="echo",
    transports=("tcp", "udp"),
    ports=(PORT,),
    probe=probe,
    description="Echo on port 7: the server repeats the client's bytes",
    parser=EchoParser,
    extracts="one event per flow: bytes and messages each way, bytes echoed, whether the server repeated the client",
)
