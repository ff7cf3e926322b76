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
from nvpcap.protocols.http2 import Http2Parser, first_request, is_grpc

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


# ---- parsing: HTTP/2 frames and HPACK as http2 (Http2Parser); gRPC streams (request content-type
# application/grpc[+...]) add grpc_service/grpc_method (from :path /<package.Service>/<Method>), grpc_status and
# grpc_message (the trailers, or the headers of a Trailers-Only response; grpc-message is percent-decoded) and
# grpc_compressed (a Length-Prefixed-Message had its Compressed-Flag set: not decoded, not passed to content) ----


class GrpcParser(Http2Parser):
    """gRPC is HTTP/2: the same parser; the gRPC fields come from each stream's own content-type, so a plain
    HTTP/2 stream on a gRPC connection (a health check over REST, say) is still reported as such."""


SPEC = ProtocolSpec(
    name="grpc",
    transports=("tcp",),
    ports=(50051,),
    probe=probe,
    description="gRPC: h2c preface and a first request with content-type application/grpc or grpc-* headers",
    parser=GrpcParser,
    extracts="one event per call (HTTP/2 stream): grpc_service, grpc_method, grpc_status, grpc_message, "
             "grpc_compressed, authority, path, status, user_agent, request/response body bytes",
)
