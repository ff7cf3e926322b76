"""Couchbase, identified as NeuVector (dpi_couchbase.c) does.

1. Memcached binary protocol as spoken by Couchbase's data service (github.com/couchbase/kv_engine
   docs/BinaryProtocol.md; 24-byte header: magic, opcode, key length u16, extras length, datatype, vbucket,
   body length u32, opaque, cas): the client's SASL_LIST_MECHS (0x20, an all-zero header apart from the
   opaque) or SASL_AUTH (0x21, key = a mechanism name), or Couchbase's HELO (0x1F, key = the client agent),
   answered with magic 0x81 and the same opcode and opaque.
2. Erlang, which Couchbase's cluster manager runs on: EPMD (erts/doc "Distribution Protocol": 2-byte
   length, then PORT_PLEASE2_REQ 'z' / ALIVE2_REQ 'x' / NAMES_REQ 'n', answered by PORT2_RESP 'w' /
   ALIVE2_RESP 'y' or ALIVE2_X_RESP 'v' / the EPMD port and "name ... at port ..." lines) and the
   distribution handshake (send_name 'n'/'N' with a "name@host" node name, answered by recv_status 's' +
   ok / ok_simultaneous / nok / not_allowed / alive).
"""
from __future__ import annotations

import re
import struct

from .base import FlowContext, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

SASL_LIST_MECHS, SASL_AUTH, HELO = 0x20, 0x21, 0x1F
MECHS = (b"PLAIN", b"CRAM-MD5", b"SCRAM-SHA1", b"SCRAM-SHA256", b"SCRAM-SHA512", b"OAUTHBEARER")
NODE_TYPES = (72, 77, 104, 109, 110)  # R3 hidden/normal, R4 hidden/normal, R6
STATUSES = (b"ok", b"ok_simultaneous", b"nok", b"not_allowed", b"alive", b"named:")
_NODE = re.compile(rb"[A-Za-z0-9_.\-]{1,255}@[A-Za-z0-9_.\-:\[\]]{1,255}\Z")


def _memcached_request(c: bytes) -> Verdict:
    if c[:1] not in (b"\x80", b"\x08"):  # request magic (0x08 = with flexible framing extras)
        return NO
    if len(c) > 1 and c[1] not in (SASL_LIST_MECHS, SASL_AUTH, HELO):
        return NO
    if len(c) < 24:
        return MAYBE
    op, klen, elen, dtype, _, blen = struct.unpack_from(">BHBBHI", c, 1)
    if dtype > 3 or klen + elen > blen or blen > 1 << 20:
        return NO
    key = c[24 + elen : 24 + elen + klen]
    if op == SASL_LIST_MECHS:  # all zero except the opaque (bytes 12-15)
        return YES if not any(c[2:12]) and not any(c[16:24]) else NO
    if op == SASL_AUTH:
        if len(key) < klen:
            return MAYBE
        return YES if key in MECHS else NO
    # HELO: key = agent name (often JSON {"a":...,"i":...}), value = u16 feature codes
    if len(key) < min(klen, 8):
        return MAYBE
    return YES if 0 < klen <= 250 and (blen - klen - elen) % 2 == 0 and all(0x20 <= x < 0x7F for x in key) else NO


def _memcached_response(s: bytes, c: bytes) -> Verdict:
    if s[:1] not in (b"\x81", b"\x18") or (len(s) > 1 and len(c) > 1 and s[1] != c[1]):
        return NO
    if len(s) < 24:
        return MAYBE
    status = struct.unpack_from(">H", s, 6)[0]
    if s[12:16] != c[12:16] or status > 0xFF:  # the opaque is echoed
        return NO
    if c[1] == SASL_LIST_MECHS and status == 0:
        size = struct.unpack_from(">I", s, 8)[0]
        body = s[24 : 24 + size]
        return YES if any(m in body for m in MECHS) else MAYBE if len(body) < size else NO
    return YES


def _epmd(c: bytes, s: bytes, final: bool) -> Verdict:
    if len(c) < 3:
        return MAYBE if not c or c[0] == 0 else NO
    length, tag = struct.unpack_from(">HB", c)
    if tag == ord("z"):  # PORT_PLEASE2_REQ: node name
        if not 2 <= length <= 256 or len(c) > length + 2 or not all(0x20 < x < 0x7F for x in c[3:]):
            return NO
        if not s:
            return MAYBE
        if s[:1] != b"w":
            return NO
        if len(s) < 2:
            return MAYBE
        if s[1] != 0:  # not found: just the result byte
            return YES if len(s) == 2 else NO
        if len(s) < 6:
            return MAYBE
        return YES if s[4] in NODE_TYPES and s[5] == 0 else NO
    if tag == ord("x"):  # ALIVE2_REQ: port, node type, protocol 0, highest, lowest, name length, name...
        if length < 13 or len(c) > length + 2:
            return NO
        if len(c) < 7:
            return MAYBE
        if c[5] not in NODE_TYPES or c[6] != 0:
            return NO
        if not s:
            return MAYBE
        if s[:1] not in (b"y", b"v"):
            return NO
        return YES if len(s) < 2 or s[1] in (0, 1) else NO
    if tag == ord("n") and length == 1:  # NAMES_REQ: EPMD's port (4369) then "name X at port N" lines
        if len(c) > 3:
            return NO
        want = b"\x00\x00\x11\x11name "
        if len(s) < len(want):
            return MAYBE if want.startswith(s) else NO
        return YES if s.startswith(want) else NO
    return NO


def _erlang_dist(c: bytes, s: bytes, final: bool) -> Verdict:
    if len(c) < 3:
        return MAYBE if not c or c[0] == 0 else NO
    length, tag = struct.unpack_from(">HB", c)
    if tag == ord("n"):  # old send_name: version u16 (5), flags u32, name
        name_at = 9
    elif tag == ord("N"):  # new send_name: flags u64, creation u32, name length u16, name
        name_at = 17
    else:
        return NO
    if not name_at <= length <= 512:
        return NO
    if len(c) < length + 2:
        return MAYBE
    if tag == ord("n") and c[3:5] not in (b"\x00\x05", b"\x00\x06"):
        return NO
    if not _NODE.match(c[name_at : length + 2]):
        return NO
    if not s:
        return YES if final else MAYBE
    if len(s) < 3:
        return MAYBE if s[:1] == b"\0" else NO
    slen = struct.unpack_from(">H", s)[0]
    status = s[3 : 2 + slen]
    if s[2:3] != b"s" or not 2 <= slen <= 300:
        return NO
    return YES if any(status.startswith(x) or x.startswith(status) for x in STATUSES) else NO


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    if not client:
        return MAYBE if not server else NO  # the client speaks first in all three protocols
    if client[:1] in (b"\x80", b"\x08"):
        vc = _memcached_request(client)
        if vc == NO or not server:
            return YES if vc == YES and ctx.final and client[1] != SASL_LIST_MECHS else (vc if vc == NO else MAYBE)
        vs = _memcached_response(server, client)
        return YES if vc == YES and vs == YES else NO if vs == NO else MAYBE
    return max(_epmd(client, server, ctx.final), _erlang_dist(client, server, ctx.final))


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="couchbase",
    transports=("tcp",),
    ports=(11210, 11207, 4369, 21100),
    probe=probe,
    description="Couchbase: memcached-binary SASL/HELO handshake; Erlang EPMD and distribution handshake",
)
