"""gRPC over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md): an h2c connection (client preface + SETTINGS, RFC 9113
§3.4) whose first request HEADERS block carries `content-type: application/grpc[+proto|+json|...]` or a
`grpc-*` header (grpc-timeout, grpc-encoding, grpc-accept-encoding, ...).

NeuVector (dpi_grpc.c) needs the preface, SETTINGS both ways with ACKs, and a *non-Huffman* literal content-type
`application/grpc` in a client HEADERS frame. Real encoders (grpc-go, nghttp2) Huffman-code the value, so here
the header block is HPACK-decoded, Huffman included (shared reader in http2.py). `te: trailers` alone is not
taken as proof: any HTTP/2 client may send it, and gRPC requires the content-type anyway.
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict
from nvpcap.protocols.http2 import first_request, is_grpc

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        state, fields = first_request(client)
        if state == NO:
            return NO
        if is_grpc(fields):
            return YES
        return NO if state == YES or ctx.final else MAYBE
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="grpc",
    transports=("tcp",),
    ports=(50051,),
    probe=probe,
    description="gRPC: h2c preface and a first request with content-type application/grpc or grpc-* headers",
)
