"""RTSP: request line `METHOD SP rtsp-URI SP RTSP/1.0 CRLF`, answered by `RTSP/1.0 SP 3DIGIT SP reason CRLF`
(RFC 2326 §6.1 and §7.1; RFC 7826 for RTSP/2.0).

NeuVector finalizes RTSP in its HTTP parser (dpi_http.c) when the version token starts with `RTSP/`. Same here:
the version token alone separates RTSP from HTTP and SIP; any port; mid-stream flows are searched for a line.
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict
from nvpcap.protocols.http import TextProtocol

RTSP = TextProtocol(
    proto=b"RTSP/",
    majors=b"12",
    methods=frozenset(
        b"OPTIONS DESCRIBE ANNOUNCE SETUP PLAY PAUSE TEARDOWN GET_PARAMETER SET_PARAMETER REDIRECT RECORD"
        b" PLAY_NOTIFY".split()
    ),
)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    return RTSP.probe(client, server, ctx)


SPEC = ProtocolSpec(
    name="rtsp",
    transports=("tcp",),
    ports=(554, 8554),
    probe=probe,
    description="RTSP: request line METHOD SP URI SP RTSP/1.0, answered by RTSP/1.0 NNN",
)
