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

from .base import CLIENT, FlowContext, Parser, ParserOutput, guarded, ProtocolSpec, Verdict
from .framing import Cursor, Framer, Short

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


# ---- parsing: the jute records of zookeeper.jute, requests paired with replies by xid ----

MAX_PATH = 1024  # characters kept of a path
MAX_PENDING = 1024
KEEP = 4096  # leading bytes of a packet read (header + path); the rest (data, ACLs) is skipped
CONNECT_REQ = struct.Struct(">iqiq")  # protocolVersion, lastZxidSeen, timeOut, sessionId (then passwd, readOnly)
CONNECT_RESP = struct.Struct(">iiq")  # protocolVersion, timeOut, sessionId (then passwd, readOnly)
REPLY_HEAD = struct.Struct(">iqi")  # xid, zxid, err
PING_XID, NOTIFICATION_XID, AUTH_XID, SET_WATCHES_XID = -2, -1, -4, -8

# ZooDefs.OpCode
OPS = {0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData", 5: "setData", 6: "getACL",
       7: "setACL", 8: "getChildren", 9: "sync", 11: "ping", 12: "getChildren2", 13: "check", 14: "multi",
       15: "create2", 16: "reconfig", 17: "checkWatches", 18: "removeWatches", 19: "createContainer",
       20: "deleteContainer", 21: "createTTL", 22: "multiRead", 100: "auth", 101: "setWatches", 102: "sasl",
       103: "getEphemerals", 104: "getAllChildrenNumber", 105: "setWatches2", 106: "addWatch", 107: "whoAmI",
       -10: "createSession", -11: "closeSession", -1: "error"}
# KeeperException.Code (QUOTAEXCEEDED, THROTTLEDOP: ZooKeeper 3.7+)
ERRORS = {0: "OK", -1: "SYSTEMERROR", -2: "RUNTIMEINCONSISTENCY", -3: "DATAINCONSISTENCY", -4: "CONNECTIONLOSS",
          -5: "MARSHALLINGERROR", -6: "UNIMPLEMENTED", -7: "OPERATIONTIMEOUT", -8: "BADARGUMENTS",
          -13: "NEWCONFIGNOQUORUM", -14: "RECONFIGINPROGRESS", -12: "UNKNOWNSESSION", -100: "APIERROR",
          -101: "NONODE", -102: "NOAUTH", -103: "BADVERSION", -108: "NOCHILDRENFOREPHEMERALS", -110: "NODEEXISTS",
          -111: "NOTEMPTY", -112: "SESSIONEXPIRED", -113: "INVALIDCALLBACK", -114: "INVALIDACL", -115: "AUTHFAILED",
          -118: "SESSIONMOVED", -119: "NOTREADONLY", -120: "EPHEMERALONLOCALSESSION", -121: "NOWATCHER",
          -122: "REQUESTTIMEOUT", -123: "RECONFIGDISABLED", -124: "SESSIONCLOSEDREQUIRESASLAUTH",
          -125: "QUOTAEXCEEDED", -127: "THROTTLEDOP"}
# Watcher.Event.EventType and KeeperState, for notifications (WatcherEvent: type, state, path)
WATCH_EVENTS = {-1: "None", 1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged", 4: "NodeChildrenChanged",
                5: "DataWatchRemoved", 6: "ChildWatchRemoved", 7: "PersistentWatchRemoved"}
STATES = {0: "Disconnected", 3: "SyncConnected", 4: "AuthFailed", 5: "ConnectedReadOnly", 6: "SaslAuthenticated",
          7: "Closed", -112: "Expired"}


def jute_string(c: Cursor) -> str | None:
    """ustring: int32 length (-1 = null), UTF-8 bytes; capped for the log."""
    n = c.int(">i")
    if n < 0:
        return None
    return c.take(n).decode("utf-8", "replace")[:MAX_PATH]


def _length(head: bytes) -> int | None:
    n = struct.unpack_from(">i", head)[0]
    return 4 + n if 0 <= n <= MAX_PACKET else None


def _hex(session: int) -> str:
    return f"0x{session & 0xFFFFFFFFFFFFFFFF:x}"


def parse_connect_request(msg: bytes) -> dict | None:
    """ConnectRequest (protocolVersion, lastZxidSeen, timeOut, sessionId, passwd, [readOnly]); None if not one."""
    c = Cursor(msg, 4)
    try:
        version, zxid, timeout, session = CONNECT_REQ.unpack(c.take(CONNECT_REQ.size))
        pwlen = c.int(">i")
        c.skip(max(pwlen, 0))
    except Short:
        return None
    if version != 0 or pwlen < 0 or len(msg) - c.p > 1:
        return None
    fields: dict = {"op": "connect", "protocol_version": version, "last_zxid_seen": zxid, "timeout": timeout,
                    "session_id": _hex(session)}
    if c.p < len(msg):
        fields["read_only"] = bool(msg[c.p])
    return fields


class ZooKeeperParser(Parser):
    """Events: the connect handshake; one per request with its reply (paired by xid); watch notifications;
    pings counted (one summary event at the end); a quorum-election connection's server id and address."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = (Framer(4, _length, keep=KEEP), Framer(4, _length, keep=KEEP))
        self.started = [False, False]  # first packet of each side seen
        self.connect: tuple[dict, int, int] | None = None
        self.pending: dict[int, tuple[dict, int, int]] = {}
        self.pings = [0, 0]  # requests, replies
        self.ping_at: tuple[int, int] | None = None
        self.election: bytearray | None = None  # a quorum election connection's first bytes
        self.election_at = (0, 0)
        self.electing_done = False

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.election is not None or side == CLIENT and not self.started[CLIENT] and data[:1] == b"\xff" \
                and not self.framers[CLIENT].buf and not self.ctx.midstream:
            self._election(data, frame, ts_ns)
            return
        handle = self._request if side == CLIENT else self._reply
        if not self.framers[side].feed(data, frame, ts_ns, handle):
            self.out.anomaly("zookeeper-bad-length", "packet length out of range: framing lost", frame, ts_ns)
            self.done = True

    def _election(self, data: bytes, frame: int, ts_ns: int) -> None:
        """QuorumCnxManager's initial message (server to server): protocol version, server id, address
        length, "host:port". One event; what follows (votes, proposals) is not read."""
        if self.election is None:
            self.election = bytearray()
            self.election_at = (frame, ts_ns)
        self.election += data[: 20 + 512 - len(self.election)]
        b = self.election
        if len(b) < 20:
            return
        alen = struct.unpack_from(">i", b, 16)[0]
        if 0 < alen <= 512 and len(b) < 20 + alen:
            return
        self._emit_election()

    def _emit_election(self) -> None:
        b = self.election
        self.done = True
        if b is None or len(b) < 20 or self.electing_done:
            return
        self.electing_done = True
        version, sid, alen = struct.unpack_from(">qqi", b)
        fields: dict = {"op": "election", "protocol_version": version, "server_id": sid}
        if 0 < alen <= 512:
            fields["address"] = bytes(b[20 : 20 + alen]).decode("ascii", "replace")
        self.out.event(fields, *self.election_at)

    def _request(self, msg: bytes, total: int, frame: int, ts_ns: int) -> int:
        first, self.started[CLIENT] = not self.started[CLIENT], True
        if first:
            fields = parse_connect_request(msg)
            if fields is not None:
                self.connect = (fields, frame, ts_ns)
                return 0
        if len(msg) < 12:
            self.anomaly_once("zookeeper-short-request", f"request of {total - 4} bytes", frame, ts_ns)
            return 0
        xid, op = struct.unpack_from(">ii", msg, 4)
        if xid == PING_XID:
            self.pings[0] += 1
            self.ping_at = self.ping_at or (frame, ts_ns)
            return 0
        fields: dict = {"op": OPS.get(op, str(op)), "xid": xid}
        c = Cursor(msg, 12)
        try:
            if op in PATH_OPS:
                fields["path"] = jute_string(c)
            elif op == 100:  # AuthPacket: type, scheme, auth (the credential: never logged)
                c.skip(4)
                fields["scheme"] = jute_string(c)
        except Short:
            pass
        if len(self.pending) >= MAX_PENDING:
            self.out.event(*self.pending.pop(next(iter(self.pending))))
        old = self.pending.pop(xid, None)
        if old is not None:
            self.out.event(*old)
        self.pending[xid] = (fields, frame, ts_ns)
        return 0

    def _reply(self, msg: bytes, total: int, frame: int, ts_ns: int) -> int:
        first, self.started[1] = not self.started[1], True
        if first and self.connect is not None:
            self._connect_response(msg)
            return 0
        if len(msg) < 4 + REPLY_HEAD.size:
            return 0
        xid, zxid, err = REPLY_HEAD.unpack_from(msg, 4)
        if xid == PING_XID:
            self.pings[1] += 1
            return 0
        if xid == NOTIFICATION_XID:
            self._notification(msg, zxid, frame, ts_ns)
            return 0
        entry = self.pending.pop(xid, None)
        if entry is None:
            fields, frame0, ts0 = {"op": None, "xid": xid}, frame, ts_ns
        else:
            fields, frame0, ts0 = entry
        fields["zxid"] = zxid
        fields["err"] = ERRORS.get(err, str(err))
        self.out.event(fields, frame0, ts0)
        return 0

    def _connect_response(self, msg: bytes) -> None:
        fields, frame, ts_ns = self.connect
        self.connect = None
        c = Cursor(msg, 4)
        try:
            _, timeout, session = CONNECT_RESP.unpack(c.take(CONNECT_RESP.size))
            fields["resp_timeout"] = timeout
            fields["resp_session_id"] = _hex(session)
            c.skip(max(c.int(">i"), 0))
            if c.p < len(msg):
                fields["resp_read_only"] = bool(msg[c.p])
        except Short:
            pass
        self.out.event(fields, frame, ts_ns)

    def _notification(self, msg: bytes, zxid: int, frame: int, ts_ns: int) -> None:
        c = Cursor(msg, 4 + REPLY_HEAD.size)
        fields: dict = {"op": "notification", "xid": NOTIFICATION_XID, "zxid": zxid}
        try:
            kind, state = struct.unpack(">ii", c.take(8))
            fields["event"] = WATCH_EVENTS.get(kind, str(kind))
            fields["state"] = STATES.get(state, str(state))
            fields["path"] = jute_string(c)
        except Short:
            pass
        self.out.event(fields, frame, ts_ns)

    def finish(self) -> None:
        if self.election is not None:
            self._emit_election()
            return
        if self.connect is not None:
            self.out.event(*self.connect)
            self.connect = None
        for entry in self.pending.values():
            self.out.event(*entry)
        self.pending.clear()
        if self.pings[0] or self.pings[1]:
            frame, ts_ns = self.ping_at or (0, 0)
            self.out.event({"op": "ping", "count": self.pings[0], "replies": self.pings[1]}, frame, ts_ns)
            self.pings = [0, 0]


SPEC = ProtocolSpec(
    name="zookeeper",
    transports=("tcp",),
    ports=(2181, 2888, 3888),
    probe=probe,
    description="ZooKeeper: ConnectRequest/Response, request/reply headers (path ops), pings, quorum election",
    parser=ZooKeeperParser,
    extracts="connect (version, timeouts, session ids, read-only); per request/reply: op, xid, path, zxid, err; "
             "watch notifications; ping count; election server id and address",
)
