"""HashiCorp Consul: Serf/memberlist gossip (UDP+TCP 8301 LAN, 8302 WAN) and server RPC (TCP 8300).

Spec: github.com/hashicorp/memberlist net.go (a message is a type byte: ping 0, indirect ping 1, ack 2,
suspect 3, alive 4, dead 5, push-pull 6, compound 7, user 8, compress 9, encrypt 10, nack 11, has-CRC 12,
err 13, has-label 244; then a msgpack map of the Go struct, keyed by field name: SeqNo, Incarnation, ...),
and github.com/hashicorp/consul agent/pool/conn.go (the first byte of an RPC connection: 0 Consul msgpack-RPC,
1 Raft, 3/7 TLS, 4 yamux multiplexing, 5 snapshot, 6 gossip, 8 gRPC).

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

from .base import FlowContext, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

RPC_PORT, GOSSIP_PORTS = 8300, (8301, 8302)
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


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    ports = (ctx.server_port, ctx.client_port)
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


SPEC = ProtocolSpec(
    name="consul",
    transports=("tcp", "udp"),
    ports=(8300, 8301, 8302),
    probe=probe,
    description="Consul: memberlist/Serf gossip (msgpack structs) on 8301/8302, server RPC type byte on 8300",
)
