"""Echo (RFC 862): the server sends back whatever the client sends, on TCP or UDP port 7.

NeuVector (dpi_echo.c): port 7 on either side, any payload. Here the port is required too (any bytes can be
echoed, so the protocol is undecidable without it), and the answer must repeat the client's bytes: on TCP the
shorter stream prefix is a prefix of the other; on UDP the first datagrams are equal. A request that is never
answered is accepted on the last call (NeuVector's port-only rule).
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="echo",
    transports=("tcp", "udp"),
    ports=(PORT,),
    probe=probe,
    description="Echo on port 7: the server repeats the client's bytes",
)
