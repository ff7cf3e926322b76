"""Apache ZooKeeper client protocol (jute-encoded, every packet prefixed by an int32 length).

Spec: zookeeper-jute/src/main/resources/zookeeper.jute (ConnectRequest: protocolVersion, lastZxidSeen,
timeOut, sessionId, passwd buffer [, readOnly]; ConnectResponse: protocolVersion, timeOut, sessionId, passwd
[, readOnly]; RequestHeader: xid, type; ReplyHeader: xid, zxid, err) and ZooDefs.OpCode. NeuVector
(dpi_zookeeper.c) accepts ConnectRequest + ConnectResponse, and mid-stream the pings (len 8, xid -2, op 11;
reply len 16, xid -2). We check every field of the connect pair, accept a ConnectRequest followed by a
request (or alone on the last call: captures may hold the client side only), and mid-stream chained request
headers whose path argument starts with '/', or a reply carrying the request's xid. Quorum election
connections (3.5+) start with protocol version -65536/-65535, the server id and "host:port".
"""
from __future__ import annotations

import struct

from .base import FlowContext, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

MAX_PACKET = 16 * 1024 * 1024  # jute.maxbuffer is 1 MiB by default; allow raised limits
# ZooDefs.OpCode: ops whose request body starts with a path string
PATH_OPS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15, 17, 18, 19, 20, 21, 103, 104, 106}
OTHER_OPS = {11: 8, -11: 8, 107: 8, 14: None, 16: None, 22: None, 100: None, 101: None, 102: None, 105: None}
SPECIAL_XIDS = {-2: {11}, -4: {100}, -8: {101, 105}}  # ping, auth, setWatches
PING = b"\x00\x00\x00\x08\xff\xff\xff\xfe\x00\x00\x00\x0b"
PING_REPLY = (b"\x00\x00\x00\x10\xff\xff\xff\xfe", b"\x00\x00\x00\x00")  # + zxid(8) between


def _connect_request(c: bytes) -> Verdict:
    if len(c) < 44:  # length < 65536, protocolVersion 0
        return NO if c[:2].strip(b"\0") or c[4:8].strip(b"\0") else MAYBE
    length, proto, zxid, timeout, session, pwlen = struct.unpack_from(">iiqiqi", c)
    if proto != 0 or zxid < 0 or not 0 < timeout <= 100_000_000 or session < 0 or not 0 <= pwlen <= 64:
        return NO
    if length not in (28 + pwlen, 29 + pwlen):
        return NO
    if length == 29 + pwlen and len(c) > 4 + length - 1 and c[4 + length - 1] > 1:
        return NO
    return YES if len(c) >= 4 + length else MAYBE


def _connect_response(s: bytes) -> Verdict:
    if len(s) < 24:
        return NO if s[:2].strip(b"\0") or s[4:8].strip(b"\0") else MAYBE
    length, proto, timeout, _, pwlen = struct.unpack_from(">iiiqi", s)
    if proto != 0 or timeout < 0 or not 0 <= pwlen <= 64 or length not in (20 + pwlen, 21 + pwlen):
        return NO
    return YES


def _request(b: bytes) -> tuple[Verdict, int, int]:
    """One request at the start of b: (verdict, xid, packet end). YES when the header and path are proven."""
    if len(b) < 12:
        return (MAYBE if len(b) < 2 or b[:2] == b"\0\0" else NO), 0, 0
    length, xid, op = struct.unpack_from(">iii", b)
    if not 8 <= length <= MAX_PACKET:
        return NO, 0, 0
    if xid < 0 and op not in SPECIAL_XIDS.get(xid, ()):
        return NO, 0, 0
    if op in PATH_OPS:
        if len(b) < 17:
            return MAYBE, xid, 0
        plen = struct.unpack_from(">i", b, 12)[0]
        if not 1 <= plen <= length - 12 or b[16] != 0x2F:  # '/'
            return NO, 0, 0
        return YES, xid, 4 + length
    if op not in OTHER_OPS:
        return NO, 0, 0
    exact = OTHER_OPS[op]
    if exact is not None and length != exact:
        return NO, 0, 0
    return (YES if exact is not None else MAYBE), xid, 4 + length


def _reply(s: bytes, xid: int) -> Verdict:
    if len(s) < 20:
        return MAYBE if len(s) < 2 or s[:2] == b"\0\0" else NO
    length, rxid, zxid, err = struct.unpack_from(">iiqi", s)
    if not 16 <= length <= MAX_PACKET or not -130 <= err <= 0 or zxid < -1:
        return NO
    return YES if rxid == xid else NO


def _election(c: bytes) -> Verdict:
    """QuorumCnxManager initial message: protocol version, server id, address length, "host:port"."""
    if len(c) < 20:
        return MAYBE if b"\xff\xff\xff\xff\xff\xff"[: len(c)] == c[:6] else NO
    version, sid, alen = struct.unpack_from(">qqi", c)
    if version not in (-65536, -65535) or sid < 0 or not 3 <= alen <= 512:
        return NO
    addr = c[20 : 20 + alen]
    if not all(0x20 < x < 0x7F for x in addr):
        return NO
    return YES if len(addr) == alen and b":" in addr else MAYBE


def _midstream(c: bytes, s: bytes, final: bool) -> Verdict:
    if not c and not s:
        return MAYBE
    if c[:12] == PING or (s[:8] == PING_REPLY[0] and s[16:20] == PING_REPLY[1]):
        return YES
    vc, xid, end = _request(c) if c else (MAYBE, 0, 0)
    if vc == NO or not c:
        return NO
    if s and len(c) >= 12:
        vs = _reply(s, xid)
        if vs == NO:
            return NO
        if vs == YES and vc == YES:
            return YES
    if vc == YES and end and len(c) > end:
        v2, xid2, _ = _request(c[end:])
        if v2 == YES and (xid2 > xid or xid2 < 0 or xid < 0):
            return YES
        if v2 == NO:
            return NO
    return YES if vc == YES and final else MAYBE


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    if ctx.midstream:  # the mid-stream client/server guess may be swapped
        return max(_midstream(client, server, ctx.final), _midstream(server, client, ctx.final))
    if not client:
        return MAYBE if not server else NO  # the client speaks first
    if client[:1] == b"\xff":
        return _election(client)
    vc = _connect_request(client)
    if vc != YES:
        return vc
    length = struct.unpack_from(">i", client)[0]
    if server:
        vs = _connect_response(server)
        return vs if vs != MAYBE or not ctx.final else YES
    rest = client[4 + length :]
    if rest:
        v = _request(rest)[0]
        return NO if v == NO else YES
    return YES if ctx.final else MAYBE


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="zookeeper",
    transports=("tcp",),
    ports=(2181, 2888, 3888),
    probe=probe,
    description="ZooKeeper: ConnectRequest/Response, request/reply headers (path ops), pings, quorum election",
)
