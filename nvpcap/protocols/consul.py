"""HashiCorp Consul: Serf/memberlist gossip (UDP+TCP 8301 LAN, 8302 WAN) and server RPC (TCP 8300).

Spec: github.com/hashicorp/memberlist net.go (a message is a type byte: ping 0, indirect ping 1, ack 2,
suspect 3, alive 4, dead 5, push-pull 6, compound 7, user 8, compress 9, encrypt 10, nack 11, has-CRC 12,
err 13, has-label 244; then a msgpack map of the Go struct, keyed by field name: SeqNo, Incarnation, ...),
and github.com/hashicorp/consul agent/pool/conn.go (the first byte of an RPC connection: 0 Consul msgpack-RPC,
1 Raft, 3/7 TLS, 4 yamux multiplexing, 5 snapshot, 6 gossip, 8 gRPC).

The HTTP API (TCP 8500, agent/http.go) is HTTP/1.1; on that server port an HTTP request line is claimed
here, so that its parser reads the X-Consul-* headers (see `http_api`).

Ports are required: a type byte then a msgpack map is generic, and gossip encrypted with the cluster key
(the usual production setting) is random bytes after a version byte, so content alone cannot decide. On
these ports the content must still fit: struct field names in the msgpack map, a CRC32 that matches, the
yamux header, the TLS record or the HTTP/2 preface; encrypted gossip (memberlist security.go: version byte,
12-byte nonce, AES-GCM ciphertext, 16-byte tag; v0 pads to the AES block) only by its shape, which is a
port-based guess: it is accepted on 8301/8302 when both sides send it (or one, on the last call).
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

from .base import (
    CLIENT,
    FlowContext,
    Parser,
    ParserOutput,
    ProtocolSpec,
    Verdict,
    guarded,
)
from .http import NOT, PARTIAL, HttpApi, request_line, status_line

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

RPC_PORT, GOSSIP_PORTS, HTTP_API_PORT = 8300, (8301, 8302), 8500
FIRST_KEY = {0: b"SeqNo", 1: b"SeqNo", 2: b"SeqNo", 3: b"Incarnation", 4: b"Incarnation", 5: b"Incarnation",
             6: b"Nodes", 9: b"Algo", 11: b"SeqNo", 13: b"Error"}


def _first_key(b: bytes, off: int) -> bytes | None:
    """The first key of a msgpack map at b[off:] (fixmap or map16, fixstr or str8 key), or None."""
    if len(b) <= off:
        return None
    m = b[off]
    p = off + 1 if 0x80 <= m <= 0x8F else off + 3 if m == 0xDE else -1
    if p < 0 or len(b) <= p:
        return None
    k = b[p]
    if 0xA0 <= k <= 0xBF:
        key = b[p + 1 : p + 1 + (k & 0x1F)]
        return key if len(key) == k & 0x1F else None
    if k == 0xD9 and len(b) > p + 1:
        key = b[p + 2 : p + 2 + b[p + 1]]
        return key if len(key) == b[p + 1] else None
    return None


def _gossip(b: bytes, depth: int = 0) -> Verdict:
    """One memberlist message (datagram or the start of a TCP stream)."""
    if len(b) < 2:
        return MAYBE if not b or b[0] in FIRST_KEY or b[0] in (7, 8, 10, 12, 244) else NO
    kind = b[0]
    if kind in FIRST_KEY:
        key = _first_key(b, 1)
        if key is None:
            return MAYBE if len(b) < 24 and (0x80 <= b[1] <= 0x8F or b[1] == 0xDE) else NO
        return YES if key == FIRST_KEY[kind] or (kind == 6 and key in (b"Join", b"UserStateLen")) else NO
    if depth > 2:
        return NO
    if kind == 12:  # has-CRC: CRC32 (IEEE) of the rest
        if len(b) < 6:
            return MAYBE
        return YES if struct.unpack_from(">I", b, 1)[0] == zlib.crc32(b[5:]) else NO
    if kind == 244:  # has-label: length byte + label, then the message
        label = b[2 : 2 + b[1]]
        if not 1 <= b[1] <= 255 or not all(0x20 < x < 0x7F for x in label):
            return NO
        return _gossip(b[2 + b[1] :], depth + 1) if len(label) == b[1] else MAYBE
    if kind == 7:  # compound: count, u16 lengths, messages
        n = b[1]
        lengths = b[2 : 2 + 2 * n]
        if n == 0 or len(lengths) < 2 * n:
            return NO if n == 0 else MAYBE
        total = sum(struct.unpack(f">{n}H", lengths))
        if total != len(b) - 2 - 2 * n:
            return NO
        return _gossip(b[2 + 2 * n :], depth + 1)
    if kind == 10:  # encrypted stream (TCP): u32 length, then the encrypted payload
        if len(b) < 5:
            return MAYBE
        size = struct.unpack_from(">I", b, 1)[0]
        head = b[5 : 5 + size]
        if not 31 <= size <= 1 << 26 or (head[:1] and head[0] > 1):
            return NO
        return _encrypted(head) if len(head) == size else MAYBE
    if kind == 8:  # user message (Serf): a Serf type byte 0-9, then a msgpack map with a field name
        if len(b) < 3:
            return MAYBE
        key = _first_key(b, 2)
        return YES if b[1] <= 9 and key and key[:1].isupper() and key.isalpha() else NO
    return NO


def _encrypted(b: bytes) -> Verdict:
    """An encrypted memberlist payload: version 0 (PKCS7-padded) or 1, nonce, ciphertext, tag."""
    if b[:1] == b"\xf4" and len(b) > 1:  # has-label: the label stays in clear text
        b = b[2 + b[1] :]
    if len(b) < 1 + 12 + 16 + 2:
        return NO
    return YES if b[0] == 1 or (b[0] == 0 and (len(b) - 13) % 16 == 0) else NO


def _yamux(b: bytes) -> Verdict:
    """A yamux frame header: version 0, type 0-3 (data, window update, ping, go away), flags <= 0xF."""
    if len(b) < 12:
        return NO if (b[:1] and b[0] != 0) or (len(b) > 1 and b[1] > 3) else MAYBE
    version, kind, flags = struct.unpack_from(">BBH", b)
    return YES if version == 0 and kind <= 3 and flags <= 0xF else NO


def _tls(b: bytes) -> Verdict:
    want = b"\x16\x03"
    if len(b) < 3:
        return MAYBE if want.startswith(b) else NO
    return YES if b[:2] == want and b[2] <= 4 else NO


def _rpc(c: bytes, s: bytes) -> tuple[Verdict, Verdict]:
    """Server RPC port: (client verdict, server verdict) after the RPC type byte."""
    kind, rest = c[0], c[1:]
    if kind == 0:  # msgpack-RPC request header {ServiceMethod, Seq}
        key = _first_key(rest, 0)
        vc = YES if key in (b"ServiceMethod", b"Seq") else MAYBE if len(rest) < 16 else NO
        skey = _first_key(s, 0)
        vs = YES if skey in (b"ServiceMethod", b"Seq", b"Error") else MAYBE if len(s) < 16 else NO
        return vc, vs if s else MAYBE
    if kind == 1:  # Raft: rpc type 0-3 then a msgpack map
        key = _first_key(rest, 1)
        vc = (YES if rest[0] <= 3 and key and key.isalpha() else NO) if len(rest) > 20 else MAYBE
        return vc, (YES if _first_key(s, 0) else NO) if len(s) > 20 else MAYBE
    if kind in (3, 7):
        return _tls(rest), _tls(s) if s else MAYBE
    if kind == 4:
        return _yamux(rest), _yamux(s) if s else MAYBE
    if kind == 6:
        return _gossip(rest), _gossip(s) if s else MAYBE
    if kind == 8:
        want = b"PRI * HTTP/2.0\r\n"
        vc = YES if rest[: len(want)] == want else MAYBE if want.startswith(rest) else NO
        return vc, MAYBE
    return NO, NO


def http_api(client: bytes, server: bytes) -> Verdict:
    """An HTTP/1.x API on its own port (Consul 8500, Elasticsearch 9200): the request line alone claims the
    flow. Generic HTTP is registered earlier and waits for the status line, so claiming on the request is
    what routes these flows to this protocol's parser (which reads the API's own headers); off the port,
    HTTP stays HTTP."""
    if not client:
        return MAYBE if not server or status_line(server, b"HTTP/", b"1") != NOT else NO
    line = request_line(client, b"HTTP/", b"1")
    return YES if line > 0 else MAYBE if line == PARTIAL else NO


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    ports = (ctx.server_port, ctx.client_port)
    if ctx.transport == "tcp" and ctx.server_port == HTTP_API_PORT:
        return http_api(client, server)
    if ctx.transport == "tcp" and RPC_PORT in ports and not ctx.midstream:
        if len(client) < 2:
            return MAYBE if not client or client[0] <= 8 else NO
        vc, vs = _rpc(client, server)
    elif any(p in GOSSIP_PORTS for p in ports):
        if ctx.midstream:
            return NO  # memberlist streams are one exchange per connection: nothing to sync on
        vc, vs = (_gossip(b) if b else MAYBE for b in (client, server))
        if ctx.transport == "udp":  # a datagram that is not plain gossip may be encrypted gossip
            vc, vs = (_encrypted(b) if v == NO else v for v, b in ((vc, client), (vs, server)))
    else:
        return NO  # the port is part of the proof (see the module docstring)
    if NO in (vc, vs):
        return NO
    if vc == YES and (vs == YES or (ctx.final and not server) or vs == MAYBE and ctx.final):
        return YES
    return MAYBE


probe = guarded(_probe)


# ---- parsing: the HTTP API, memberlist/Serf gossip, the server RPC byte ----
# HTTP API (port 8500): one event per request and its response, read by http.HttpApi (the HTTP parser, with
# its threats and content for the rules, since these flows no longer reach it), with the X-Consul-* response
# headers (agent/http.go: X-Consul-Index, X-Consul-Knownleader, X-Consul-Lastcontact,
# X-Consul-Effective-Consistency). Tokens are never logged: the X-Consul-Token header and an Authorization
# header are reported as present (with the scheme), a `token=` query parameter is replaced by REDACTED in the
# uri. (Elasticsearch's HTTP API is read the same way.)
# Gossip (8301/8302): memberlist message types (net.go) counted per flow, one event per type at the end
# (compound, CRC, label and Serf user messages are opened; compressed and encrypted ones are only counted).
# RPC (8300): one event naming the connection's RPC type byte (agent/pool/conn.go), then done.

MAX_VALUE = 1024  # characters kept of a text field (label, service method)
MAX_GOSSIP_DEPTH = 4  # nesting of compound / label / CRC wrappers opened
MAX_GOSSIP_TYPES = 64  # distinct (type, Serf type) counters per flow
MAX_TCP_HEAD = 512  # bytes of a gossip or RPC stream's start read

GOSSIP_TYPES = {0: "ping", 1: "indirect-ping", 2: "ack", 3: "suspect", 4: "alive", 5: "dead", 6: "push-pull",
                7: "compound", 8: "user", 9: "compress", 10: "encrypt", 11: "nack", 12: "has-crc", 13: "err",
                244: "has-label"}  # memberlist net.go messageType
SERF_TYPES = {0: "leave", 1: "join", 2: "push-pull", 3: "user-event", 4: "query", 5: "query-response",
              6: "conflict-response", 7: "key-request", 8: "key-response", 9: "relay"}  # serf messages.go
RPC_TYPES = {0: "consul", 1: "raft", 2: "multiplex", 3: "tls", 4: "multiplex-v2", 5: "snapshot", 6: "gossip",
             7: "tls-insecure", 8: "grpc"}  # consul agent/pool/conn.go RPCType
CONSUL_RESPONSE_HEADERS = {"x-consul-index": ("consul_index", "int"),
                           "x-consul-knownleader": ("consul_known_leader", "bool"),
                           "x-consul-lastcontact": ("consul_last_contact", "int"),
                           "x-consul-effective-consistency": ("consul_consistency", "text")}
CONSUL_REQUEST_HEADERS = {"x-consul-token": ("token", "present"), "authorization": ("auth_scheme", "scheme")}


def _text(raw: bytes, cap: int = MAX_VALUE) -> str:
    return raw[: cap * 4].decode("utf-8", "replace")[:cap]


def _gossip_types(b: bytes, depth: int = 0, udp: bool = True) -> tuple[list[tuple[str, str | None]], str | None]:
    """The message types in one memberlist message (a datagram, or a stream's start): (type, Serf type)
    pairs, wrappers included, and the cluster label if one is present. A UDP datagram encrypted with the
    gossip key (security.go: version 0/1, nonce, ciphertext, tag; no type byte) counts as "encrypted"."""
    if not b:
        return [], None
    kind = b[0]
    if udp and kind in (0, 1) and _first_key(b, 1) != b"SeqNo" and _encrypted(b) == YES:
        return [("encrypted", None)], None  # an encrypted datagram: version byte, nonce, ciphertext
    name = GOSSIP_TYPES.get(kind)
    if name is None:
        return [("unknown", None)], None
    found: list[tuple[str, str | None]] = [(name, None)]
    label = None
    if depth >= MAX_GOSSIP_DEPTH:
        return found, label
    if kind == 244 and len(b) >= 2:  # has-label: length, label, then the message
        label = _text(b[2 : 2 + b[1]], 255)
        inner, _ = _gossip_types(b[2 + b[1] :], depth + 1, udp)
        found += inner
    elif kind == 12 and len(b) > 5:  # has-CRC: CRC32, then the message
        found += _gossip_types(b[5:], depth + 1, udp)[0]
    elif kind == 7 and len(b) >= 2:  # compound: count, u16 lengths, messages
        n = b[1]
        lengths = b[2 : 2 + 2 * n]
        off = 2 + 2 * n
        for i in range(len(lengths) // 2):
            size = struct.unpack_from(">H", lengths, 2 * i)[0]
            found += _gossip_types(b[off : off + size], depth + 1, udp)[0]
            off += size
    elif kind == 8 and len(b) >= 2:  # a Serf message: its type byte, then a msgpack map
        found[0] = (name, SERF_TYPES.get(b[1], str(b[1])))
    return found, label


def _msgpack_str(b: bytes, off: int) -> tuple[bytes | None, int]:
    """A msgpack string at b[off]: (bytes or None if not a string, next offset)."""
    if off >= len(b):
        return None, off
    t = b[off]
    if 0xA0 <= t <= 0xBF:
        n, p = t & 0x1F, off + 1
    elif t == 0xD9 and off + 1 < len(b):
        n, p = b[off + 1], off + 2
    elif t == 0xDA and off + 2 < len(b):
        n, p = struct.unpack_from(">H", b, off + 1)[0], off + 3
    else:
        return None, off
    return (b[p : p + n], p + n) if p + n <= len(b) else (None, off)


def _msgpack_skip_scalar(b: bytes, off: int) -> int:
    """Past one msgpack scalar (int, nil, bool, string) at b[off], or -1."""
    if off >= len(b):
        return -1
    t = b[off]
    if t <= 0x7F or t >= 0xE0 or t in (0xC0, 0xC2, 0xC3):
        return off + 1
    sizes = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xCA: 4, 0xCB: 8}
    if t in sizes:
        return off + 1 + sizes[t]
    value, end = _msgpack_str(b, off)
    return end if value is not None else -1


def rpc_service_method(b: bytes) -> str | None:
    """ServiceMethod of a msgpack-RPC request header {ServiceMethod, Seq} (net/rpc/msgpackrpc)."""
    if not b:
        return None
    t = b[0]
    count, off = (t & 0x0F, 1) if 0x80 <= t <= 0x8F else (struct.unpack_from(">H", b, 1)[0], 3) \
        if t == 0xDE and len(b) >= 3 else (0, 0)
    for _ in range(min(count, 16)):
        key, off = _msgpack_str(b, off)
        if key is None:
            return None
        if key == b"ServiceMethod":
            value, _ = _msgpack_str(b, off)
            return _text(value, 256) if value is not None else None
        off = _msgpack_skip_scalar(b, off)
        if off < 0:
            return None
    return None


class _Gossip:
    """memberlist message types counted over the flow; one event per (type, Serf type) at the end, carrying
    the frame of its first occurrence."""

    def __init__(self, parser: ConsulParser) -> None:
        self.p = parser
        self.counts: dict[tuple[str, str | None], list[int]] = {}  # -> [count, frame, ts]
        self.label: str | None = None
        self.starts = [bytearray(), bytearray()]  # TCP: each side's first bytes
        self.seen = [False, False]

    def count(self, data: bytes, frame: int, ts_ns: int, udp: bool = True) -> None:
        types, label = _gossip_types(data, udp=udp)
        self.label = self.label or label
        for key in types:
            entry = self.counts.get(key)
            if entry is not None:
                entry[0] += 1
            elif len(self.counts) < MAX_GOSSIP_TYPES:
                self.counts[key] = [1, frame, ts_ns]

    def stream(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        """A TCP stream (push-pull, or a ping / user message sent reliably): its first message's types."""
        if self.seen[side]:
            return
        start = self.starts[side]
        start += data[: MAX_TCP_HEAD - len(start)]
        kind = start[0] if start else -1
        need = 2 if kind in (7, 8) else 1
        if kind == 244:  # a label: length, label, then the message type (and a Serf type)
            need = 2 + start[1] + 2 if len(start) > 1 else 2
        if len(start) < need and len(start) < MAX_TCP_HEAD:
            return
        self.seen[side] = True
        self.count(bytes(start), frame, ts_ns, udp=False)
        if all(self.seen):
            self.p.done = True

    def finish(self) -> None:
        for (name, serf), (count, frame, ts) in self.counts.items():
            f: dict[str, Any] = {"message_type": name, "serf_type": serf, "count": count}
            if self.label is not None:
                f["label"] = self.label
            self.p.out.event(f, frame, ts)
        self.counts.clear()


class ConsulParser(Parser):
    """Dispatches on the flow's ports as the probe does: the HTTP API (8500), gossip (8301/8302, UDP or
    TCP), or the server RPC port (8300)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        ports = (ctx.server_port, ctx.client_port)
        self.mode = "http" if ctx.transport == "tcp" and ctx.server_port == HTTP_API_PORT else \
            "rpc" if ctx.transport == "tcp" and RPC_PORT in ports and not ctx.midstream else "gossip"
        self.http = HttpApi(out, CONSUL_REQUEST_HEADERS, CONSUL_RESPONSE_HEADERS, redact=("token",), ctx=ctx) \
            if self.mode == "http" else None
        self.gossip = _Gossip(self) if self.mode == "gossip" else None
        self.rpc_start = bytearray()
        self.rpc_where = (0, 0)

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.http is not None:
            self.done = not self.http.feed(side, data, frame, ts_ns)
        elif self.gossip is not None:
            if self.ctx.transport == "udp":
                self.gossip.count(data, frame, ts_ns)
            else:
                self.gossip.stream(side, data, frame, ts_ns)
        elif side == CLIENT:
            self._rpc(data, frame, ts_ns)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        if self.http is not None:
            self.http.gap(side, missing, frame, ts_ns)
            self.done = self.http.done
        elif self.gossip is not None:
            self.gossip.seen[side] = True
            if all(self.gossip.seen):
                self.done = True
        else:
            self.lose(side)

    def _rpc(self, data: bytes, frame: int, ts_ns: int) -> None:
        """The first byte names the connection type; a msgpack-RPC connection's first request names its
        service method. Then nothing more is read."""
        if not self.rpc_start:
            self.rpc_where = (frame, ts_ns)
        self.rpc_start += data[: MAX_TCP_HEAD - len(self.rpc_start)]
        if self.rpc_start[:1] == b"\x00" and len(self.rpc_start) < MAX_TCP_HEAD and \
                rpc_service_method(bytes(self.rpc_start[1:])) is None:
            return  # wait for the request header
        self._emit_rpc()

    def _emit_rpc(self) -> None:
        if not self.rpc_start or self.done:
            return
        kind = self.rpc_start[0]
        f: dict[str, Any] = {"rpc_type": RPC_TYPES.get(kind, str(kind)),
                             "service_method": rpc_service_method(bytes(self.rpc_start[1:])) if kind == 0 else None}
        self.out.event(f, *self.rpc_where)
        self.done = True

    def finish(self) -> None:
        if self.http is not None:
            self.http.finish()
        elif self.gossip is not None:
            self.gossip.finish()
        else:
            self._emit_rpc()


SPEC = ProtocolSpec(
    name="consul",
    transports=("tcp", "udp"),
    ports=(8300, 8301, 8302),
    probe=probe,
    description="Consul: memberlist/Serf gossip (msgpack structs) on 8301/8302, server RPC type byte on 8300, "
                "HTTP API requests on 8500",
    parser=ConsulParser,
    extracts="HTTP API: method, uri (token redacted), status, X-Consul-Index/KnownLeader/LastContact; gossip: "
             "one event per message type with its count; RPC: connection type and first service method",
)
