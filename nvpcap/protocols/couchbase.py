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
from functools import partial

from .base import CLIENT, SERVER, FlowContext, Parser, ParserOutput, guarded, ProtocolSpec, Verdict
from .framing import Framer
from .memcached import OPCODES, STATUSES as BINARY_STATUSES, BinaryProtocol, Packet, _text

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


# ---- parsing: the memcached binary protocol with Couchbase's commands; EPMD; the distribution handshake ----

MAX_NAME = 256  # characters kept of a node name, an agent, a bucket
MAX_NAMES = 100  # nodes listed from a NAMES reply
MAX_EPMD_REPLY = 64 * 1024  # EPMD replies are unframed: at most this much is kept
HANDSHAKE_KEEP = 1024  # bytes kept of a distribution handshake message
SASL_STEP = 0x22
SELECT_BUCKET = 0x89
# kv_engine docs/BinaryProtocol.md "Command Opcodes" (the Couchbase additions worth naming)
COUCHBASE_OPCODES = {**OPCODES, HELO: "hello", 0x23: "ioctl_get", 0x24: "ioctl_set", 0x3D: "set_vbucket",
                     0x3E: "get_vbucket", 0x3F: "del_vbucket", 0x48: "get_all_vb_seqnos", 0x50: "dcp_open",
                     0x51: "dcp_add_stream", 0x52: "dcp_close_stream", 0x53: "dcp_stream_req",
                     0x54: "dcp_get_failover_log", 0x55: "dcp_stream_end", 0x56: "dcp_snapshot_marker",
                     0x57: "dcp_mutation", 0x58: "dcp_deletion", 0x59: "dcp_expiration", 0x5C: "dcp_noop",
                     0x5D: "dcp_buffer_ack", 0x5E: "dcp_control", 0x83: "get_replica", 0x87: "list_buckets",
                     SELECT_BUCKET: "select_bucket", 0x91: "observe_seqno", 0x92: "observe", 0x94: "get_locked",
                     0x95: "unlock_key", 0xA0: "get_meta", 0xB5: "get_cluster_config", 0xB6: "get_random_key",
                     0xBA: "get_collections_manifest", 0xBB: "get_collection_id", 0xC5: "subdoc_get",
                     0xC6: "subdoc_exists", 0xC8: "subdoc_dict_upsert", 0xD0: "subdoc_multi_lookup",
                     0xD1: "subdoc_multi_mutation", 0xFE: "get_error_map"}
SERVER_OPCODES = {0x01: "clustermap_change_notification", 0x02: "authenticate", 0x03: "active_external_users"}

# erts "Distribution Protocol": EPMD requests (2-byte length + tag) and their reply tags
EPMD_REQUESTS = {ord("x"): "ALIVE2_REQ", ord("z"): "PORT_PLEASE2_REQ", ord("n"): "NAMES_REQ", ord("d"): "DUMP_REQ",
                 ord("k"): "KILL_REQ", ord("s"): "STOP_REQ"}
NODE_INFO = struct.Struct(">HBBHH")  # port, node type, protocol, highest version, lowest version (then name, extra)
_NAMES_LINE = re.compile(rb"name (\S{1,255}) at port (\d{1,5})")


class CouchbaseBinary(BinaryProtocol):
    """The memcached binary protocol (memcached.py) with Couchbase's opcodes and the SASL handshake: the
    mechanism a client picks and the user name it gives (PLAIN authcid, SCRAM n=), never the secret."""

    opcodes = COUCHBASE_OPCODES

    def name_of(self, p: Packet) -> str:
        table = SERVER_OPCODES if p.magic in (0x82, 0x83) else self.opcodes
        return table.get(p.opcode, f"0x{p.opcode:02x}")

    def request_fields(self, p: Packet) -> dict:
        fields = super().request_fields(p)
        if p.magic == 0x82:
            return fields
        if p.opcode in (SASL_AUTH, SASL_STEP):
            fields["sasl_mechanism"] = fields.pop("key", None)
            user = sasl_user(fields["sasl_mechanism"], p.value) if p.opcode == SASL_AUTH else None
            if user is not None:
                fields["user"] = user
        elif p.opcode == HELO:
            fields["agent"] = fields.pop("key", None)
            fields["features"] = _u16_list(p.value)
        elif p.opcode == SELECT_BUCKET:
            fields["bucket"] = fields.pop("key", None)
        return fields

    def response_fields(self, request: Packet | None, p: Packet, fields: dict) -> None:
        if p.opcode in (SASL_AUTH, SASL_STEP) and p.magic != 0x83:
            fields["status"] = BINARY_STATUSES.get(p.status, f"0x{p.status:04x}")  # the value is a SASL token
            fields["status_code"] = p.status
            return
        super().response_fields(request, p, fields)
        if p.opcode == SASL_LIST_MECHS and p.magic != 0x83 and p.status == 0:
            fields["mechanisms"] = p.value.decode("ascii", "replace").split()[:32]
            fields.pop("value_bytes", None)
        elif p.opcode == HELO and p.magic != 0x83 and p.status == 0:
            fields["features_accepted"] = _u16_list(p.value)
            fields.pop("value_bytes", None)


def _u16_list(b: bytes, cap: int = 64) -> list[int]:
    """HELO's feature codes: big-endian u16 values (at most `cap`)."""
    n = min(len(b) // 2, cap)
    return list(struct.unpack(f">{n}H", b[: 2 * n]))


def sasl_user(mechanism: str | None, value: bytes) -> str | None:
    """The user name in a SASL client message: PLAIN (RFC 4616: authzid NUL authcid NUL passwd) or the SCRAM
    client-first-message (RFC 5802: gs2-header, n=user, r=nonce). The password is never kept."""
    if mechanism == "PLAIN":
        parts = value.split(b"\0")
        return _text(parts[1], MAX_NAME) if len(parts) >= 3 else None
    if mechanism and mechanism.startswith("SCRAM-"):
        for attr in value.split(b",")[2:3]:
            if attr.startswith(b"n="):
                return _text(attr[2:], MAX_NAME)
    return None


def _node(b: bytes) -> str:
    return b[:MAX_NAME].decode("utf-8", "replace")


class Epmd:
    """One EPMD request (the client's 2-byte length + tag + data) and its unframed reply."""

    def __init__(self, out: ParserOutput) -> None:
        self.out = out
        self.request = bytearray()
        self.reply = bytearray()
        self.fields: dict | None = None
        self.where = (0, 0)
        self.emitted = False

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> bool:
        """False when the transaction is over."""
        if side == CLIENT:
            if self.fields is None:
                self.where = self.where if self.request else (frame, ts_ns)
                self.request += data[: MAX_EPMD_REPLY - len(self.request)]
                self._request()
        else:
            self.reply += data[: MAX_EPMD_REPLY - len(self.reply)]  # unframed: keep the first bytes only
        if self.fields is not None and self._reply(final=False):
            return self._emit()
        return True

    def _request(self) -> None:
        b = self.request
        if len(b) < 3 or len(b) < 2 + struct.unpack_from(">H", b)[0]:
            return
        length, tag = struct.unpack_from(">HB", b)
        body = bytes(b[3 : 2 + length])
        fields: dict = {"protocol": "epmd", "request": EPMD_REQUESTS.get(tag, f"0x{tag:02x}")}
        if tag in (ord("z"), ord("s")):
            fields["node"] = _node(body)
        elif tag == ord("x") and len(body) >= NODE_INFO.size + 2:
            port, ntype, proto, high, low = NODE_INFO.unpack_from(body)
            nlen = struct.unpack_from(">H", body, NODE_INFO.size)[0]
            fields.update(node=_node(body[NODE_INFO.size + 2 : NODE_INFO.size + 2 + nlen]), port=port,
                          node_type=ntype, highest_version=high, lowest_version=low)
        self.fields = fields

    def _reply(self, final: bool) -> bool:
        """Read the reply into the fields; True once it is complete (or on the last call)."""
        b, f = bytes(self.reply), self.fields
        tag = f["request"]
        if tag == "PORT_PLEASE2_REQ" and len(b) >= 2 and b[0] == ord("w"):
            f["result"] = b[1]
            if b[1] != 0:
                return True
            if len(b) >= 2 + NODE_INFO.size + 2:
                port, ntype, _, high, low = NODE_INFO.unpack_from(b, 2)
                f.update(port=port, node_type=ntype, highest_version=high, lowest_version=low)
                return True
        elif tag == "ALIVE2_REQ" and len(b) >= 4 and b[0] in (ord("y"), ord("v")):
            size = 2 if b[0] == ord("y") else 4
            if len(b) >= 2 + size:
                f["result"] = b[1]
                f["creation"] = int.from_bytes(b[2 : 2 + size], "big")
                return True
        elif tag in ("NAMES_REQ", "DUMP_REQ") and final and len(b) >= 4:
            found = _NAMES_LINE.findall(b[4:])[:MAX_NAMES]
            f["names"] = [_node(name) for name, _ in found]
            f["ports"] = [int(port) for _, port in found]
        elif tag in ("KILL_REQ", "STOP_REQ") and b:
            f["reply"] = b[:16].decode("ascii", "replace").strip()
            return b.endswith(b"\n") or b in (b"OK", b"STOPPED", b"NOEXIST")
        return final

    def _emit(self) -> bool:
        if not self.emitted and self.fields is not None:
            self.emitted = True
            self.out.event(self.fields, *self.where)
        return False

    def finish(self) -> None:
        if self.fields is not None:
            self._reply(final=True)
        self._emit()


HANDSHAKE_NAME = {ord("n"): 9, ord("N"): 17}  # send_name: where the node name starts (after the length)


def _handshake_length(head: bytes) -> int:
    return 2 + struct.unpack_from(">H", head)[0]


class DistHandshake:
    """The distribution handshake (erts "Distribution Handshake"): send_name (node name, version, flags),
    recv_status, recv_challenge (the other node's name), challenge reply and ack. After the ack the nodes
    exchange 4-byte-framed distribution messages (possibly over TLS): nothing more is read."""

    def __init__(self, out: ParserOutput) -> None:
        self.out = out
        self.framers = (Framer(2, _handshake_length, keep=HANDSHAKE_KEEP),
                        Framer(2, _handshake_length, keep=HANDSHAKE_KEEP))
        self.fields: dict = {"protocol": "erlang_dist"}
        self.where: tuple[int, int] | None = None
        self.over = False

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> bool:
        self.framers[side].feed(data, frame, ts_ns, partial(self._message, side))
        if self.over or self.framers[side].broken:
            self.over = True
            self.finish()
        return not self.over

    def _message(self, side: int, msg: bytes, total: int, frame: int, ts_ns: int) -> int:
        if self.over:
            return -1  # past the handshake: distribution messages have 4-byte lengths
        if len(msg) < 3:
            return 0
        tag, f = msg[2], self.fields
        if side == CLIENT and tag in HANDSHAKE_NAME and "node" not in f:
            self.where = (frame, ts_ns)
            if tag == ord("n"):  # version u16, flags u32, name
                f["version"], flags = struct.unpack_from(">HI", msg, 3) if len(msg) >= 9 else (None, 0)
            else:  # flags u64, creation u32, name length u16, name
                flags = struct.unpack_from(">Q", msg, 3)[0] if len(msg) >= 11 else 0
                f["version"] = 6
            f["node"] = _node(msg[HANDSHAKE_NAME[tag] :] if tag == ord("n") else msg[17 : 17 + _u16(msg, 15)])
            f["flags"] = f"0x{flags:x}"
        elif side == SERVER and tag == ord("s"):
            f["status"] = msg[3:].split(b":")[0][:32].decode("ascii", "replace") if msg[3:9] == b"named:" \
                else msg[3:35].decode("ascii", "replace")
            if f["status"] in ("nok", "not_allowed"):
                self.over = True
        elif side == SERVER and tag in HANDSHAKE_NAME:  # recv_challenge: the other node's name
            at = 13 if tag == ord("n") else 21
            f["peer_node"] = _node(msg[at:] if tag == ord("n") else msg[at : at + _u16(msg, 19)])
        elif side == SERVER and tag == ord("a"):
            f["handshake_complete"] = True
            self.over = True
        elif side == CLIENT and tag == ord("r"):
            f["challenge_reply"] = True
        return 0

    def finish(self) -> None:
        if self.where is not None:
            self.fields.setdefault("handshake_complete", False)
            self.out.event(self.fields, *self.where)
            self.where = None


def _u16(b: bytes, at: int) -> int:
    return struct.unpack_from(">H", b, at)[0] if len(b) >= at + 2 else 0


class CouchbaseParser(Parser):
    """Chooses by the client's first bytes: memcached binary (magic 0x80/0x08) -> one event per command with
    its response (SASL mechanism, user, bucket, agent); EPMD request -> one event with the reply; the
    distribution handshake -> one event with both node names and the status."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.proto: CouchbaseBinary | Epmd | DistHandshake | None = None
        self.head = b""  # the client's first bytes, until there are enough to choose

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.proto is None:
            if side != CLIENT:
                return  # the client speaks first in all three protocols
            data = self.head + data
            if len(data) < 3:
                self.head = data  # too short to tell: the next segment decides
                return
            self.head = b""
            if data[0] in (0x80, 0x08):
                self.proto = CouchbaseBinary(self.out)
            elif data[2] in HANDSHAKE_NAME and struct.unpack_from(">H", data)[0] > 1:
                self.proto = DistHandshake(self.out)
            else:
                self.proto = Epmd(self.out)
        if not self.proto.feed(side, data, frame, ts_ns):
            if isinstance(self.proto, CouchbaseBinary):
                self.out.anomaly("couchbase-bad-magic", "not a memcached binary packet: parsing stopped",
                                 frame, ts_ns)
            self.done = True

    def finish(self) -> None:
        if self.proto is not None:
            self.proto.finish()


SPEC = ProtocolSpec(
    name="couchbase",
    transports=("tcp",),
    ports=(11210, 11207, 4369, 21100),
    probe=probe,
    description="Couchbase: memcached-binary SASL/HELO handshake; Erlang EPMD and distribution handshake",
    parser=CouchbaseParser,
    extracts="memcached binary commands (SASL mechanism/user, bucket, agent, status); EPMD request, node, port, "
             "names; distribution handshake node names, version, status",
)
