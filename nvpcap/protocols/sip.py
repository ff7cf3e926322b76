"""SIP: request line `METHOD SP Request-URI SP SIP/2.0 CRLF` or status line `SIP/2.0 SP 3DIGIT SP reason CRLF`
(RFC 3261 §7.1, §7.2), over UDP (one message per datagram) and TCP.

NeuVector finalizes SIP in its HTTP parser (dpi_http.c) when the version token starts with `SIP/`, TCP only.
Here UDP too (a datagram must hold a whole line). SIP user agents are both clients and servers, so either side
may send requests or responses; the version token `SIP/2.0` separates it from HTTP and RTSP.
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict
from nvpcap.protocols.http import TextProtocol

SIP = TextProtocol(
    proto=b"SIP/",
    majors=b"2",
    methods=frozenset(
        b"INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER MESSAGE UPDATE".split()
    ),
    peer_to_peer=True,
)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    return SIP.probe(client, server, ctx)


SPEC = ProtocolSpec(
    name="sip",
    transports=("udp", "tcp"),
    ports=(5060,),  # 5061 is SIP over TLS: ssl
    probe=probe,
    description="SIP/2.0 request or status line, over UDP or TCP",
)
