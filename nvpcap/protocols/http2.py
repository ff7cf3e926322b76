"""HTTP/2 with prior knowledge (h2c): the client connection preface `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`
followed by a SETTINGS frame (RFC 9113 §3.4), then 9-byte-header frames (RFC 9113 §4.1); request headers are
HPACK-coded (RFC 7541). HTTP/2 over TLS is ssl.

NeuVector labels only gRPC (dpi_grpc.c), never plain HTTP/2. Here http2 is the HTTP/2 that is not gRPC: the
probe waits (MAYBE) until the client's first HEADERS block is seen, so that grpc can claim it; YES when that
block has no gRPC content-type or grpc-* header, or on the last call (the preface is proof of HTTP/2).
The frame walk and the small HPACK reader (static names, Huffman decoding) are shared with grpc.
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER = 9
HEADERS, SETTINGS, CONTINUATION = 1, 4, 9
END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20
MAX_FRAMES = 32  # client frames walked looking for the first HEADERS
MAX_DECODED = 64  # bytes of a Huffman string decoded (the probes only need prefixes)
STATIC_NAMES = {31: b"content-type"}  # RFC 7541 appendix A: the only static name the probes look at
GRPC_CONTENT_TYPE = b"application/grpc"  # also application/grpc+proto, +json ...

# RFC 7541 appendix B: the Huffman code is canonical, so the code length of each symbol (0-255, 256 = EOS)
# defines it. Codes are assigned in order of (length, symbol).
HUFFMAN_LENGTHS = bytes((
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
))  # fmt: skip
EOS = 256
MAX_CODE_LEN = 30
COUNTS = [HUFFMAN_LENGTHS.count(n) for n in range(MAX_CODE_LEN + 1)]
SYMBOLS = sorted(range(EOS + 1), key=lambda s: (HUFFMAN_LENGTHS[s], s))

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def huffman_decode(data: bytes, limit: int = MAX_DECODED) -> bytes:
    """Canonical Huffman decoding, MSB first, of at most `limit` symbols (trailing EOS-prefix padding ignored)."""
    out = bytearray()
    code = first = index = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code |= (byte >> shift) & 1
            length += 1
            count = COUNTS[length]
            if code < first + count:
                sym = SYMBOLS[index + code - first]
                if sym == EOS:
                    raise ValueError("EOS inside a string")
                out.append(sym)
                if len(out) >= limit:
                    return bytes(out)
                code = first = index = length = 0
            else:
                index += count
                first = (first + count) << 1
                code <<= 1
                if length >= MAX_CODE_LEN:
                    raise ValueError("bad Huffman code")
    return bytes(out)


def _int(block: bytes, off: int, prefix: int) -> tuple[int, int]:
    """HPACK integer (RFC 7541 §5.1) with an N-bit prefix at off: (value, offset after)."""
    mask = (1 << prefix) - 1
    value = block[off] & mask
    off += 1
    if value < mask:
        return value, off
    shift = 0
    while True:
        b = block[off]
        off += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, off
        shift += 7
        if shift > 28:
            raise ValueError("HPACK integer too long")


def _string(block: bytes, off: int) -> tuple[bytes, int]:
    """HPACK string literal (RFC 7541 §5.2): (decoded prefix, offset after)."""
    huffman = block[off] & 0x80
    n, off = _int(block, off, 7)
    if off + n > len(block):
        raise IndexError("string past the end of the block")
    raw = block[off : off + n]
    return (huffman_decode(raw) if huffman else raw[:MAX_DECODED]), off + n


def _wanted(name: bytes) -> bool:
    return name == b"content-type" or name.startswith(b"grpc-")


def _entry(index: int, dynamic: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """(name, value) at a table index (RFC 7541 §2.3.3): the dynamic table from 62 on; of the static table, only
    the content-type name is known."""
    if 62 <= index < 62 + len(dynamic):
        return dynamic[index - 62]
    return STATIC_NAMES.get(index, b""), b""


def header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """Decode a header block (RFC 7541 §6) as far as it is well formed. Only the fields the probes need are
    kept: content-type and grpc-* (names from the static table are known only for content-type)."""
    fields: list[tuple[bytes, bytes]] = []
    dynamic: list[tuple[bytes, bytes]] = []  # newest first: index 62 is dynamic[0]
    off = 0
    try:
        while off < len(block):
            b = block[off]
            if b & 0x80:  # indexed field
                index, off = _int(block, off, 7)
                name, value = _entry(index, dynamic)
            elif b & 0xE0 == 0x20:  # dynamic table size update
                _, off = _int(block, off, 5)
                continue
            else:  # literal: with incremental indexing (01), without indexing (0000) or never indexed (0001)
                indexing = b & 0xC0 == 0x40
                index, off = _int(block, off, 6 if indexing else 4)
                if index:
                    name = _entry(index, dynamic)[0]
                else:
                    name, off = _string(block, off)
                    name = name.lower()
                if _wanted(name):
                    value, off = _string(block, off)
                else:  # skip the value without decoding it
                    n, off = _int(block, off, 7)
                    off += n
                    value = b""
                if indexing:
                    dynamic.insert(0, (name, value))
            if _wanted(name) and name:
                fields.append((name, value))
    except (IndexError, ValueError):
        pass
    return fields


def first_request(client: bytes) -> tuple[Verdict, list[tuple[bytes, bytes]]]:
    """Walk the client's frames after the preface to its first HEADERS block.
    (NO, []) not an h2 client; (MAYBE, fields so far) block not complete yet; (YES, fields) block complete."""
    if client[: len(PREFACE)] != PREFACE[: len(client)]:
        return NO, []
    off = len(PREFACE)
    block = b""
    stream = None  # stream of the HEADERS frame being collected
    for n in range(MAX_FRAMES):
        head = client[off : off + FRAME_HEADER]
        if len(head) < FRAME_HEADER:
            break
        length = int.from_bytes(head[:3], "big")
        ftype, flags = head[3], head[4]
        sid = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        if n == 0 and (ftype != SETTINGS or sid != 0 or length % 6):
            return NO, []  # RFC 9113 §3.4: the preface ends with a SETTINGS frame
        payload = client[off + FRAME_HEADER : off + FRAME_HEADER + length]
        if stream is not None:
            if ftype != CONTINUATION or sid != stream:
                return NO, []  # RFC 9113 §6.10: CONTINUATION frames must follow, on the same stream
            block += payload
        elif ftype == HEADERS and sid:
            start = (1 if flags & PADDED else 0) + (5 if flags & PRIORITY else 0)
            pad = payload[0] if flags & PADDED and payload else 0
            block = payload[start : len(payload) - pad if len(payload) == length else len(payload)]
            stream = sid
        if stream is not None and (len(payload) < length or flags & END_HEADERS):
            done = len(payload) == length and flags & END_HEADERS
            return (YES if done else MAYBE), header_fields(block)
        off += FRAME_HEADER + length
    return MAYBE, header_fields(block) if block else []


def is_grpc(fields: list[tuple[bytes, bytes]]) -> bool:
    """gRPC requests carry content-type application/grpc[+...] and may carry grpc-* headers (gRPC over HTTP2
    spec, PROTOCOL-HTTP2.md)."""
    return any(n.startswith(b"grpc-") or (n == b"content-type" and v.startswith(GRPC_CONTENT_TYPE)) for n, v in fields)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        state, fields = first_request(client)
        if state == NO or is_grpc(fields):
            return NO
        if state == YES or (ctx.final and len(client) >= len(PREFACE)):
            return YES
        return MAYBE if not ctx.final else NO
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="http2",
    transports=("tcp",),
    ports=(),  # cleartext HTTP/2 has no port of its own: on 80/8080 the port suggests HTTP/1.x
    probe=probe,
    description="HTTP/2 with prior knowledge (h2c preface), when the first request is not gRPC",
)
