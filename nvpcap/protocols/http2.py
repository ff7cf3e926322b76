"""HTTP/2 with prior knowledge (h2c): the client connection preface `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`
followed by a SETTINGS frame (RFC 9113 §3.4), then 9-byte-header frames (RFC 9113 §4.1); request headers are
HPACK-coded (RFC 7541). HTTP/2 over TLS is ssl.

NeuVector labels only gRPC (dpi_grpc.c), never plain HTTP/2. Here http2 is the HTTP/2 that is not gRPC: the
probe waits (MAYBE) until the client's first HEADERS block is seen, so that grpc can claim it; YES when that
block has no gRPC content-type or grpc-* header, or on the last call (the preface is proof of HTTP/2).
The frame walk and the small HPACK reader (static names, Huffman decoding) are shared with grpc.
"""
from __future__ import annotations

import struct
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from nvpcap.protocols import httpforms
from nvpcap.protocols.base import (
    CLIENT,
    SERVER,
    FlowContext,
    Parser,
    ParserOutput,
    ProtocolSpec,
    Verdict,
)
from nvpcap.protocols.httpbody import BodyDecoder, parse_codings

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


def hpack_fast(decoder: Any, block: bytes) -> list[tuple[bytes, bytes]] | None:
    """The header list of a block, decoded as hpack's `decoder.decode(block, raw=True)` would decode it, but
    without its per-field logging, tuple subclasses and copies of the rest of the block (2-5x faster on the
    small blocks of a long-lived connection). The common representations only (RFC 7541 §6.1-6.2) on the
    decoder's own header table; None, with the table put back as it was, for anything else (a table size
    update, a bad index, a cut or oversized block, any error): the caller then runs hpack on the block."""
    table = decoder.header_table
    saved: tuple[Any, int] | None = None  # the dynamic table before the block's first insertion
    headers: list[tuple[bytes, bytes]] = []
    inflated, limit, n, off = 0, decoder.max_header_list_size, len(block), 0
    try:
        static = table.STATIC_TABLE
        while off < n:
            first = block[off]
            if 0x80 < first < 0x80 + 62:  # indexed field, static table (the most common representation)
                name, value = static[first - 0x81]
                off += 1
            elif first & 0x80:  # indexed field, dynamic table
                index, off = _int(block, off, 7)
                name, value = table.get_by_index(index)
            elif first & 0xC0 == 0x40 or first & 0xE0 == 0:  # literal with / without / never indexing
                prefix = 6 if first & 0x40 else 4
                index, off = _int(block, off, prefix)
                if index:
                    name = table.get_by_index(index)[0]
                else:
                    name, off = _literal(block, off)
                value, off = _literal(block, off)
                if first & 0x40:
                    if saved is None:
                        saved = (table.dynamic_entries.copy(), table._current_size)
                    table.add(name, value)
            else:  # a dynamic table size update: hpack's own code checks it against the allowed size
                raise ValueError("table size update")
            headers.append((name, value))
            inflated += 32 + len(name) + len(value)
            if inflated > limit:
                raise ValueError("header list too long")
        if table.maxsize > decoder.max_allowed_table_size:
            raise ValueError("table over the allowed size")
    except Exception:  # noqa: BLE001 - whatever went wrong, hpack itself says what, from the same table
        if saved is not None:
            table.dynamic_entries, table._current_size = saved
        return None
    return headers


def _literal(block: bytes, off: int) -> tuple[bytes, int]:
    """An HPACK string literal (RFC 7541 §5.2), whole, Huffman-decoded by hpack: (bytes, offset after)."""
    huffman = block[off] & 0x80
    length, off = _int(block, off, 7)
    end = off + length
    if end > len(block):
        raise IndexError("string past the end of the block")
    return (_decode_huffman(block[off:end]) if huffman else block[off:end]), end


def _decode_huffman(raw: bytes) -> bytes:
    # imported here, as hpack itself is: only h2 flows pay for it
    from hpack.huffman_table import decode_huffman

    return decode_huffman(raw)


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


# ---- parsing: frames (RFC 9113 §4.1, §6), HPACK header blocks (RFC 7541) with one decoder per direction, one event
# per stream; gRPC (grpc/grpc doc/PROTOCOL-HTTP2.md) length-prefixed messages and trailers ----

FRAME_HEAD = struct.Struct("!HBBBI")  # length (24 bits: high 16 + low 8), type, flags, R + stream id (31 bits)
DATA, PRIORITY_FRAME, RST_STREAM, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = 0, 2, 3, 5, 6, 7, 8
END_STREAM, ACK = 0x1, 0x1
SETTINGS_HEADER_TABLE_SIZE = 0x1  # RFC 9113 §6.5.2
SETTING = struct.Struct("!HI")
MAX_HEADER_BLOCK = 65536  # encoded bytes of one header block (HEADERS + CONTINUATIONs); more: HPACK state is lost
MAX_HEADER_LIST = 65536  # decoded size of one header list (RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE sense)
MAX_TABLE = 65536  # largest HPACK dynamic table accepted (a peer may announce up to 2^32-1)
MAX_CONTROL = 16384  # payload of other frames buffered; longer ones (GOAWAY debug data, extensions) are skipped
MAX_STREAMS = 10000  # streams tracked per connection; later ones are decoded (HPACK state) but not reported
MAX_FIELD = 1024  # characters kept of a header value in the event
GRPC_PREFIX = struct.Struct("!BI")  # gRPC Length-Prefixed-Message: Compressed-Flag, Message-Length
# RFC 9113 §7 error codes (RST_STREAM, GOAWAY)
ERROR_CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
               5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
               10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}


def _value(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:MAX_FIELD]


def grpc_path(path: str | None) -> tuple[str | None, str | None]:
    """PROTOCOL-HTTP2.md: Path → ":path" "/" Service-Name "/" {method name}; (service, method)."""
    if not path or not path.startswith("/"):
        return None, None
    service, sep, method = path[1:].partition("/")
    return (service or None, method or None) if sep else (None, None)


# gRPC servers NeuVector names as apps, by the package of the called service (etcd's API: etcdserverpb.KV,
# .Watch, .Lease, ... in etcd's api/etcdserverpb/rpc.proto)
GRPC_PRODUCTS = {"etcdserverpb": "etcd", "v3electionpb": "etcd", "v3lockpb": "etcd"}


def _decoder(fields: dict[str, str]) -> BodyDecoder | None:
    """The content decoder of a body with these headers; None without a Content-Encoding (or identity). An
    unknown coding gives a decoder that passes nothing on (its status says why), as in HTTP/1."""
    coding = fields.get("content-encoding")
    if coding is None or parse_codings(coding) == []:
        return None
    return BodyDecoder.for_header(coding)


class _Stream:
    """One request/response exchange."""

    __slots__ = (
        "body_len",
        "compressed",
        "decoders",
        "ended",
        "grpc",
        "grpc_message",
        "grpc_status",
        "msg_compressed",
        "msg_decoder",
        "msg_left",
        "prefix",
        "request",
        "reset",
        "response",
        "sid",
        "status",
        "view",
        "where",
    )

    def __init__(self, sid: int, where: tuple[int, int]) -> None:
        self.sid, self.where = sid, where
        self.request: dict[str, str] = {}  # first value of each request header (pseudo-headers included)
        self.response: dict[str, str] = {}
        self.status: int | None = None
        self.ended = [False, False]  # END_STREAM seen from client / server
        self.body_len = [0, 0]
        # per side: the body's content decoder when it has a Content-Encoding (RFC 9113 §8.1 keeps HTTP's codings)
        self.decoders: list[BodyDecoder | None] = [None, None]
        self.grpc = False
        self.grpc_status: int | None = None
        self.grpc_message: str | None = None
        self.compressed = False
        self.prefix = [bytearray(), bytearray()]  # gRPC message prefix being collected (<= 5 bytes)
        self.msg_left = [0, 0]  # gRPC message bytes still to come
        self.msg_compressed = [False, False]
        self.msg_decoder: list[BodyDecoder | None] = [None, None]  # the compressed message's (grpc-encoding)
        self.reset: str | None = None
        self.view: httpforms.BodyView | None = None  # the request body's view for the rules (form, JSON, XML)


class _H2Side:
    """Frame-reading state of one direction."""

    __slots__ = (
        "block",
        "block_end",
        "block_promised",
        "block_sid",
        "block_where",
        "buf",
        "data_end",
        "data_left",
        "data_pad",
        "data_sid",
        "decoder",
        "head",
        "preface_left",
        "skip",
    )

    def __init__(self, preface: int) -> None:
        import hpack  # lazy: only h2 flows pay for it

        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = MAX_HEADER_LIST
        self.preface_left = preface
        self.buf = bytearray()  # the frame header, then the payload, of the frame being read
        self.head: tuple[int, int, int, int, int, int] | None = None  # length, type, flags, sid, frame, ts
        self.skip = 0
        self.data_left = 0  # DATA payload bytes still to come (data, then padding)
        self.data_pad: int | None = 0  # padding of the DATA frame being read; None: the Pad Length byte is next
        self.data_sid = 0
        self.data_end = False
        self.block: bytearray | None = None  # header block being collected across CONTINUATION frames
        self.block_sid = 0
        self.block_end = False
        self.block_promised: int | None = None
        self.block_where = (0, 0)


class Http2Parser(Parser):
    """One event per stream: request pseudo-headers and a few headers, status, body sizes; for gRPC streams the
    service, method, grpc-status/grpc-message and whether messages were compressed. Header blocks and bodies
    (gRPC: the messages without their 5-byte prefix, unless compressed) go to content(). An HPACK error loses the
    header table: anomaly and done."""

    # fast paths (a frame header or gRPC message prefix read straight from the chunk when all of it is there,
    # header blocks through hpack_fast); False: every byte the general way (tests/test_http2_bulk.py's oracle)
    fast = True

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.sides = (_H2Side(len(PREFACE)), _H2Side(0))
        self.streams: dict[int, _Stream] = {}
        self.stream_count = 0
        self.last_sid = [0, 0]  # highest even / odd stream id opened: ids only grow (RFC 9113 §5.1.1)

    # -- frames --

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        st = self.sides[side]
        n, pos = len(data), 0
        if st.preface_left:
            done = len(PREFACE) - st.preface_left
            k = min(st.preface_left, n)
            if data[:k] != PREFACE[done : done + k]:
                self._stop("http2-bad-preface", "the client did not start with the HTTP/2 preface", frame, ts_ns)
                return
            st.preface_left -= k
            pos = k
        while pos < n and not self.done:
            if st.skip:
                k = min(st.skip, n - pos)
                st.skip -= k
                pos += k
            elif st.data_left:
                pos = self._data(side, st, data, pos, frame, ts_ns)
            elif st.head is None:
                if self.fast and not st.buf and n - pos >= FRAME_HEADER:  # the whole frame header in the chunk
                    hi, lo, ftype, flags, sid = FRAME_HEAD.unpack_from(data, pos)
                    pos += FRAME_HEADER
                    self._frame_header(side, st, (hi << 8) | lo, ftype, flags, sid & 0x7FFFFFFF, frame, ts_ns)
                    continue
                k = min(FRAME_HEADER - len(st.buf), n - pos)
                st.buf += data[pos : pos + k]
                pos += k
                if len(st.buf) < FRAME_HEADER:
                    break
                hi, lo, ftype, flags, sid = FRAME_HEAD.unpack(st.buf)
                st.buf.clear()
                self._frame_header(side, st, (hi << 8) | lo, ftype, flags, sid & 0x7FFFFFFF, frame, ts_ns)
            else:
                length = st.head[0]
                if self.fast and not st.buf and n - pos >= length:  # the whole payload in the chunk: no copy
                    head, st.head = st.head, None
                    pos += length
                    self._frame(side, st, head, bytes(data[pos - length : pos]))
                    continue
                k = min(length - len(st.buf), n - pos)
                st.buf += data[pos : pos + k]
                pos += k
                if len(st.buf) < length:
                    break
                payload = bytes(st.buf)
                st.buf.clear()
                head, st.head = st.head, None
                self._frame(side, st, head, payload)

    def _frame_header(self, side: int, st: _H2Side, length: int, ftype: int, flags: int, sid: int, frame: int,
                      ts_ns: int) -> None:
        if st.block is not None and (ftype != CONTINUATION or sid != st.block_sid):
            self._stop("http2-expected-continuation", f"frame type {ftype} inside a header block (RFC 9113 §6.10)",
                       frame, ts_ns)
            return
        if ftype == DATA:
            st.data_left, st.data_pad, st.data_sid = length, None if flags & PADDED else 0, sid
            st.data_end = bool(flags & END_STREAM)
            if not length and st.data_end:
                self._end(side, sid)
            return
        if ftype in (HEADERS, CONTINUATION, PUSH_PROMISE):
            if length + (len(st.block) if st.block is not None else 0) > MAX_HEADER_BLOCK:
                self._stop("http2-header-block-too-long", f"header block over {MAX_HEADER_BLOCK} bytes", frame, ts_ns)
                return
        elif length > MAX_CONTROL:
            st.skip = length
            return
        st.head = (length, ftype, flags, sid, frame, ts_ns)
        if not length:
            st.head = None
            self._frame(side, st, (length, ftype, flags, sid, frame, ts_ns), b"")

    def _data(self, side: int, st: _H2Side, data: bytes, pos: int, frame: int, ts_ns: int) -> int:
        """Stream a DATA payload (RFC 9113 §6.1): Pad Length byte if PADDED, data, padding. Returns the new offset."""
        n = len(data)
        if st.data_pad is None:
            pad = data[pos]
            pos += 1
            st.data_left -= 1
            if pad > st.data_left:
                self.anomaly_once("http2-bad-padding", "padding longer than the DATA frame", frame, ts_ns)
                pad = st.data_left
            st.data_pad = pad
        usable = st.data_left - st.data_pad
        if usable and pos < n:
            k = min(usable, n - pos)
            self._body(side, st.data_sid, data[pos : pos + k], frame, ts_ns)
            pos += k
            st.data_left -= k
            usable -= k
        if not usable:
            k = min(st.data_left, n - pos)
            pos += k
            st.data_left -= k
        if not st.data_left and st.data_end:
            self._end(side, st.data_sid)
        return pos

    def _frame(self, side: int, st: _H2Side, head: tuple[int, int, int, int, int, int], payload: bytes) -> None:
        _, ftype, flags, sid, frame, ts_ns = head
        if ftype in (HEADERS, PUSH_PROMISE):
            off = 1 if flags & PADDED else 0
            pad = payload[0] if off and payload else 0
            if ftype == HEADERS and flags & PRIORITY:
                off += 5
            promised = None
            if ftype == PUSH_PROMISE:
                promised = int.from_bytes(payload[off : off + 4], "big") & 0x7FFFFFFF
                off += 4
            if off + pad > len(payload):
                self._stop("http2-bad-padding", "header block padding past the frame", frame, ts_ns)
                return
            st.block = bytearray(payload[off : len(payload) - pad])
            st.block_sid, st.block_promised, st.block_where = sid, promised, (frame, ts_ns)
            st.block_end = ftype == HEADERS and bool(flags & END_STREAM)
        elif ftype == CONTINUATION:
            if st.block is None:
                self._stop("http2-unexpected-continuation", "CONTINUATION without a header block", frame, ts_ns)
                return
            st.block += payload
        elif ftype == SETTINGS and not flags & ACK:
            for off in range(0, len(payload) - SETTING.size + 1, SETTING.size):
                ident, value = SETTING.unpack_from(payload, off)
                if ident == SETTINGS_HEADER_TABLE_SIZE:  # bounds the table the other side's encoder may use
                    self.sides[1 - side].decoder.max_allowed_table_size = min(value, MAX_TABLE)
            return
        elif ftype == RST_STREAM and sid in self.streams and len(payload) >= 4:
            code = int.from_bytes(payload[:4], "big")
            stream = self.streams[sid]
            stream.reset = ERROR_CODES.get(code, f"0x{code:x}")
            self._emit(stream)
            return
        else:
            return
        if flags & END_HEADERS:
            self._block_done(side, st, frame, ts_ns)

    # -- header blocks --

    def _block_done(self, side: int, st: _H2Side, frame: int, ts_ns: int) -> None:
        block, st.block = bytes(st.block or b""), None
        try:
            headers = self._headers(st, block)
        except Exception as exc:  # noqa: BLE001 - hpack raises several types on hostile blocks
            self._stop("http2-hpack-error", f"header block does not decode: {type(exc).__name__}", frame, ts_ns)
            return
        # (names and values are bytes, from hpack_fast or hpack's raw=True)
        self.out.content("header", side, b"".join([b"%s: %s\r\n" % (n, v) for n, v in headers]), frame, ts_ns)
        fields: dict[str, str] = {}
        for n, v in headers:
            name = n.lower().decode("latin-1")
            if name not in fields:  # the first value of a repeated header
                fields[name] = _value(v)
        if st.block_promised is not None:  # PUSH_PROMISE: the request of a stream the server will push
            stream = self._stream(st.block_promised, st.block_where)
            if stream is not None:
                stream.ended[CLIENT] = True  # RFC 9113 §8.4: the client sends nothing on a pushed stream
                self._request(stream, fields, SERVER, frame, ts_ns)
            return
        stream = self._stream(st.block_sid, st.block_where)
        if stream is None:
            return
        if side == CLIENT:
            if not stream.request:
                self._request(stream, fields, CLIENT, frame, ts_ns)
        else:
            self._response(stream, fields)
        if st.block_end:
            self._end(side, stream.sid)

    def _headers(self, st: _H2Side, block: bytes) -> list[tuple[bytes, bytes]]:
        """The header list of a block: the fast decoder for the common case, hpack for everything else."""
        headers = hpack_fast(st.decoder, block) if self.fast else None
        return st.decoder.decode(block, raw=True) if headers is None else headers

    def _stream(self, sid: int, where: tuple[int, int]) -> _Stream | None:
        stream = self.streams.get(sid)
        if stream is None and sid > self.last_sid[sid & 1]:  # a lower id is a stream already closed
            self.last_sid[sid & 1] = sid
            if self.stream_count >= MAX_STREAMS:
                self.anomaly_once("http2-too-many-streams", f"more than {MAX_STREAMS} streams: later ones not reported",
                           *where)
                return None
            self.stream_count += 1
            stream = self.streams[sid] = _Stream(sid, where)
        return stream

    def _request(self, stream: _Stream, fields: dict[str, str], side: int, frame: int, ts_ns: int) -> None:
        """Request headers: from the client, or promised by the server (PUSH_PROMISE, side SERVER)."""
        stream.request = fields or {":method": ""}
        ctype = fields.get("content-type", "")
        stream.grpc = ctype.startswith("application/grpc")
        stream.decoders[CLIENT] = _decoder(fields)
        if side == CLIENT and ctype and not stream.grpc:
            stream.view = httpforms.view_for(ctype.encode("latin-1", "replace"), self.out)
        path = fields.get(":path")
        if path:
            self.out.content("url", side, unquote_to_bytes(path), frame, ts_ns)

    def _response(self, stream: _Stream, fields: dict[str, str]) -> None:
        status = fields.get(":status")
        if status is not None and stream.status is None and not status.startswith("1"):  # 1xx: interim (§8.1)
            stream.status = int(status) if status.isascii() and status.isdigit() else None
            stream.response = fields
            stream.decoders[SERVER] = _decoder(fields)
        if "grpc-status" in fields:  # trailers, or the headers of a Trailers-Only response
            code = fields["grpc-status"]
            stream.grpc_status = int(code) if code.isascii() and code.isdigit() else None
            message = fields.get("grpc-message")
            stream.grpc_message = None if message is None else unquote(message, errors="replace")

    # -- bodies --

    def _body(self, side: int, sid: int, piece: bytes, frame: int, ts_ns: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream.body_len[side] += len(piece)
        if stream.grpc:
            self._grpc_messages(side, stream, piece, frame, ts_ns)
            return
        dec = stream.decoders[side]
        if dec is None:  # most bodies: no content coding
            self._body_piece(side, stream, piece, frame, ts_ns)
        else:
            self._decode(side, stream, dec, piece, frame, ts_ns)

    def _decode(self, side: int, stream: _Stream, dec: BodyDecoder, piece: bytes, frame: int, ts_ns: int) -> None:
        """Coded bytes of a body (or of a compressed gRPC message): decoded, then on as body bytes."""
        before = dec.status
        for decoded in dec.feed(piece):
            self._body_piece(side, stream, decoded, frame, ts_ns)
        stopped = dec.stopped(before)
        if stopped is not None:
            reason, message = stopped
            self.anomaly_once(f"http2-{reason}", message, frame, ts_ns)

    def _body_piece(self, side: int, stream: _Stream, piece: bytes, frame: int, ts_ns: int) -> None:
        """Body bytes as the application sent them (decoded): to the rules, and to the request body's view."""
        self.out.content("body", side, piece, frame, ts_ns)
        if side == CLIENT and stream.view is not None:
            stream.view.feed(self.out, piece, frame, ts_ns)

    def _grpc_messages(self, side: int, stream: _Stream, piece: bytes, frame: int, ts_ns: int) -> None:
        """Split DATA into Length-Prefixed-Messages; pass messages on, a compressed one decoded by the stream's
        grpc-encoding (gzip, deflate, zstd: what BodyDecoder undoes; another, such as snappy, is left out)."""
        pos, n = 0, len(piece)
        prefix = stream.prefix[side]
        while pos < n:
            left = stream.msg_left[side]
            if left:
                k = min(left, n - pos)
                if not stream.msg_compressed[side]:
                    self.out.content("body", side, piece[pos : pos + k], frame, ts_ns)
                elif stream.msg_decoder[side] is not None:
                    self._decode(side, stream, stream.msg_decoder[side], piece[pos : pos + k], frame, ts_ns)
                stream.msg_left[side] -= k
                pos += k
                continue
            if self.fast and not prefix and n - pos >= GRPC_PREFIX.size:  # the whole prefix in the piece
                flag, length = GRPC_PREFIX.unpack_from(piece, pos)
                pos += GRPC_PREFIX.size
            else:
                k = min(GRPC_PREFIX.size - len(prefix), n - pos)
                prefix += piece[pos : pos + k]
                pos += k
                if len(prefix) < GRPC_PREFIX.size:
                    continue
                flag, length = GRPC_PREFIX.unpack(prefix)
                prefix.clear()
            stream.msg_compressed[side] = bool(flag & 1)
            stream.compressed |= bool(flag & 1)
            headers = stream.request if side == CLIENT else stream.response
            coding = headers.get("grpc-encoding") if flag & 1 else None  # each message a whole stream
            stream.msg_decoder[side] = BodyDecoder.for_header(coding) if coding else None
            stream.msg_left[side] = length

    # -- streams --

    def _end(self, side: int, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            stream.ended[side] = True
            if side == CLIENT and stream.view is not None:
                stream.view.end(self.out, *stream.where)
            if all(stream.ended):
                self._emit(stream)

    def _emit(self, stream: _Stream) -> None:
        self.streams.pop(stream.sid, None)
        if stream.view is not None:  # a request body the capture ended in (or the stream was reset in)
            stream.view.end(self.out, *stream.where)
        req, resp = stream.request, stream.response
        fields = {"stream_id": stream.sid, "method": req.get(":method") or None, "scheme": req.get(":scheme"),
                  "authority": req.get(":authority", req.get("host")), "path": req.get(":path"),
                  "status": stream.status, "content_type": resp.get("content-type", req.get("content-type")),
                  "user_agent": req.get("user-agent"), "request_body_len": stream.body_len[CLIENT],
                  "response_body_len": stream.body_len[SERVER], "reset": stream.reset}
        if stream.grpc:
            service, method = grpc_path(fields["path"])
            fields.update(grpc_service=service, grpc_method=method, grpc_status=stream.grpc_status,
                          grpc_message=stream.grpc_message, grpc_compressed=stream.compressed)
            product = GRPC_PRODUCTS.get((service or "").partition(".")[0])
            if product is not None:
                self.out.product(product)
        self.out.event(fields, *stream.where)

    def _stop(self, reason: str, message: str, frame: int, ts_ns: int) -> None:
        self.out.anomaly(reason, message, frame, ts_ns)
        self.done = True

    def finish(self) -> None:
        for sid in sorted(self.streams):
            self._emit(self.streams[sid])


SPEC = ProtocolSpec(
    name="http2",
    transports=("tcp",),
    ports=(),  # cleartext HTTP/2 has no port of its own: on 80/8080 the port suggests HTTP/1.x
    probe=probe,
    description="HTTP/2 with prior knowledge (h2c preface), when the first request is not gRPC",
    parser=Http2Parser,
    extracts="one event per stream: method, scheme, authority, path, status, content_type, user_agent, "
             "request/response body bytes, reset code (gRPC streams: service, method, grpc-status/message)",
)
