"""Oracle Net (TNS).

Spec: Oracle Net Services TNS packet format as documented by Wireshark's packet-tns.c and NeuVector
(dpi_tns.c): an 8-byte header (length u16, packet checksum u16 = 0, type, flags, header checksum u16 = 0);
from TNS version 315 on, packets after the handshake may carry a 32-bit length in place of length+checksum.
Types: 1 CONNECT, 2 ACCEPT, 3 ACK, 4 REFUSE, 5 REDIRECT, 6 DATA, 7 NULL, 9 ABORT, 11 RESEND, 12 MARKER,
13 ATTENTION, 14 CONTROL. A CONNECT carries version, compatible version, ..., connect-data length and offset;
the connect data is a "(DESCRIPTION=...)" / "(CONNECT_DATA=...)" string. Proof: such a CONNECT, or a valid
CONNECT answered by ACCEPT/REFUSE/REDIRECT/RESEND. Mid-stream: chained DATA/MARKER/CONTROL packets (a DATA
packet's data flags and first TTC / NA message code are checked). NeuVector accepts any DATA packet of 10+
bytes; we want two chained packets (or one each way).
"""
from __future__ import annotations

import re
import struct

from . import sqlinjection
from .base import CLIENT, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict, guarded
from .framing import Framer
from .sqlinjection import cap

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

ANSWERS = {2, 4, 5, 11}  # ACCEPT REFUSE REDIRECT RESEND
MIDSTREAM_TYPES = {6, 7, 9, 12, 13, 14}
MAX_LEN = 1 << 21  # SDU/TDU are at most 2 MiB


def _packet(b: bytes, off: int, types: set) -> tuple[Verdict, int, int]:
    """One TNS header at b[off:]: (verdict, type, end offset). Accepts 16- and 32-bit lengths."""
    h = b[off : off + 8]
    if len(h) < 8:
        if (len(h) > 4 and h[4] not in types) or (len(h) > 6 and h[6] != 0) or (len(h) > 7 and h[7] != 0):
            return NO, 0, 0
        return MAYBE, 0, 0
    if h[6:8] != b"\0\0" or h[4] not in types:
        return NO, 0, 0
    if h[2:4] == b"\0\0":
        length = struct.unpack_from(">H", h)[0]
    else:
        length = struct.unpack_from(">I", h)[0]
    if not 8 <= length <= MAX_LEN:
        return NO, 0, 0
    if h[4] in (6, 12) and length < 10:  # DATA: data flags; MARKER: type + data
        return NO, 0, 0
    if h[4] == 6 and len(b) >= off + 11:  # DATA: data flags (EOF, more data...), then a TTC/NA message code
        flags = struct.unpack_from(">H", b, off + 8)[0]
        if flags & ~0x00E2 or not (1 <= b[off + 10] <= 0x20 or b[off + 10] == 0xDE):
            return NO, 0, 0
    return YES, h[4], off + length


def _connect(c: bytes) -> tuple[Verdict, bool]:
    """A CONNECT packet: (verdict of the header fields, connect data proven)."""
    v = _packet(c, 0, {1})[0]
    if v != YES:
        return v, False
    if c[2:4] != b"\0\0":
        return NO, False
    if len(c) < 28:
        return MAYBE, False
    version, compat = struct.unpack_from(">HH", c, 8)
    dlen, doff = struct.unpack_from(">HH", c, 24)
    if not 200 <= version <= 400 or not 200 <= compat <= version or (dlen and doff < 26):
        return NO, False
    if dlen == 0:
        return YES, False
    data = c[doff : doff + min(dlen, 64)].upper()
    if len(data) < min(dlen, 16):
        return (MAYBE if b"(DESCRIPTION=".startswith(data[:13]) or data[:1] == b"(" else NO), False
    ok = data.startswith(b"(") and (b"DESCRIPTION" in data or b"CONNECT_DATA" in data or b"ADDRESS" in data)
    return (YES, True) if ok else (NO, False)


def _chain(b: bytes) -> tuple[Verdict, int]:
    off = count = 0
    while off < len(b) and count < 4:
        v, _, end = _packet(b, off, MIDSTREAM_TYPES)
        if v == NO:
            return NO, count
        if v == MAYBE or len(b) < end:
            break
        count, off = count + 1, end
    return (YES if count else MAYBE), count


def _midstream(c: bytes, s: bytes, final: bool) -> Verdict:
    results = [_chain(b) for b in (c, s) if b]
    if not results or any(v == NO for v, _ in results):
        return NO
    complete = sum(n for _, n in results)
    both = len(results) == 2 and all(n for _, n in results)
    return YES if both or complete >= 2 else MAYBE


def _handshake(client: bytes, server: bytes) -> Verdict:
    if not client:
        return MAYBE if not server else NO  # the client speaks first
    vc, described = _connect(client)
    if vc != YES:
        return vc
    answer = _packet(server, 0, ANSWERS)[0] if server else MAYBE
    if answer == NO:
        return NO
    return YES if described else answer


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    v = _handshake(client, server)
    if ctx.midstream and v != YES:  # the capture may also start after the handshake
        v = max(v, _midstream(client, server, ctx.final))
    return v


probe = guarded(_probe)


# ---- parsing: CONNECT (+ RESEND) answered by ACCEPT / REFUSE / REDIRECT, then SQL text in DATA packets ----
# TNS packet layout as Wireshark's packet-tns.c decodes it: header length(2) checksum(2) type(1) flags(1)
# header checksum(2); 12c (version >= 315) packets after ACCEPT carry a 4-byte length instead of
# length + checksum. CONNECT: version(2) compatible(2) service options(2) SDU(2) TDU(2) protocol
# characteristics(2) line turnaround(2) value of one(2) connect data length(2) offset(2) ...; ACCEPT:
# version(2) ... accept data length at 18; REFUSE: user reason(1) system reason(1) data length(2) data;
# REDIRECT: data length(2) data; DATA: data flags(2), then the TTC message (function code, call id, ...).

CONNECT, ACCEPT, REFUSE, REDIRECT, DATA, RESEND = 1, 2, 4, 5, 6, 11
TYPES = {1: "connect", 2: "accept", 3: "ack", 4: "refuse", 5: "redirect", 6: "data", 7: "null", 9: "abort",
         11: "resend", 12: "marker", 13: "attention", 14: "control"}
LARGE_SDU_VERSION = 315  # from this version on, packets after ACCEPT have a 32-bit length
PACKET_LIMIT = 1 << 16  # longer packets are read from their first PACKET_KEEP bytes, the rest skipped
PACKET_KEEP = 1 << 14
DATA_EOF = 0x0040  # data flags: the connection ends
MAX_CONNECT_ITEMS = 64
MAX_DEPTH = 16
# dpi_tns.c: the TTC function codes after which NeuVector looks for SELECT text
NEUVECTOR_SQL_CALLS = {(0x03, 0x5E), (0x11, 0x69), (0x11, 0x6B)}  # OALL8; piggybacked close / session switch
TTC_FUNCTIONS = {0x03: "oci", 0x11: "piggyback"}
SQL_TEXT = re.compile(
    rb"(?<![A-Za-z0-9_])(?:SELECT|INSERT|UPDATE|DELETE|BEGIN|CALL|WITH|MERGE|DECLARE)(?=[\s(])[\x20-\x7e\t\r\n]*",
    re.IGNORECASE)
MIN_SQL = 10  # a keyword and a few more characters
ORA_ERROR = re.compile(rb"ORA-(\d{5}): ?([\x20-\x7e]{0,256})")
NO_DATA_FOUND = 1403  # ORA-01403 closes every fetch: not a failure


def connect_data(s: str) -> dict[str, str]:
    """The `(KEY=value)` items of a connect descriptor, keyed by their path's last two names
    ("CID.HOST", "ADDRESS.HOST", "CONNECT_DATA.SERVICE_NAME"), first occurrence kept; bounded."""
    items: dict[str, str] = {}
    stack: list[str] = []
    i, n = 0, len(s)
    while i < n and len(items) < MAX_CONNECT_ITEMS:
        c = s[i]
        if c == "(":
            eq = s.find("=", i + 1)
            if eq < 0:
                break
            key = s[i + 1 : eq].strip().upper()
            j = eq + 1
            while j < n and s[j] == " ":
                j += 1
            if j < n and s[j] == "(":
                if len(stack) >= MAX_DEPTH:
                    break
                stack.append(key)
                i = j
                continue
            end = s.find(")", j)
            end = n if end < 0 else end
            path = f"{stack[-1]}.{key}" if stack else key
            items.setdefault(path, s[j:end].strip())
            i = end + 1
            continue
        if c == ")" and stack:
            stack.pop()
        i += 1
    return items


def _field(items: dict[str, str], *paths: str) -> str | None:
    for p in paths:
        if p in items:
            return items[p]
    return None


def _port(s: str | None) -> int | None:
    return int(s) if s and s.isdigit() and len(s) <= 5 else None


class TnsParser(Parser):
    """One event per connection attempt (service name / SID, host, program, OS user, result: accept /
    refuse with its error / redirect target), and one per SQL statement found in client DATA packets: after
    the TTC calls NeuVector reads (OALL8, piggybacks) and, more generally, a printable run starting with an
    SQL keyword; the first ORA- error the server sends before the next statement is attached. Threat 2022
    on each statement."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = (Framer(8, self._length, PACKET_LIMIT, PACKET_KEEP),
                        Framer(8, self._length, PACKET_LIMIT, PACKET_KEEP))
        self.large = False  # 32-bit lengths (version >= 315, after ACCEPT)
        self.accepted = False
        self.connect: dict | None = None
        self.connect_where = (0, 0)
        self.connect_data_follows = 0  # connect data longer than the CONNECT packet: it comes in DATA
        self.statement: dict | None = None
        self.statement_where = (0, 0)

    def _length(self, h: bytes) -> int:
        if self.large:
            return struct.unpack_from(">I", h)[0]
        length, checksum = struct.unpack_from(">HH", h)
        if checksum in (0, 4) or not self.accepted and not self.ctx.midstream:
            return length
        return length << 16 | checksum  # Wireshark / NeuVector: a 12c 32-bit length (mid-stream)

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        for pkt in framer.push(data, frame, ts_ns):
            self._packet(side, pkt.data, (pkt.frame, pkt.ts_ns))
            if self.done:
                return
        if framer.broken:
            self.out.anomaly("oracle-bad-length", "TNS packet length below 8: framing lost", frame, ts_ns)
            self.done = True

    def _packet(self, side: int, p: bytes, where: tuple[int, int]) -> None:
        kind = p[4]
        if kind == CONNECT and side == CLIENT:
            self._connect(p, where)
        elif kind == DATA:
            self._data(side, p, where)
        elif side != CLIENT and self.connect is not None and kind in (ACCEPT, REFUSE, REDIRECT):
            self._answer(kind, p)
        # RESEND: the client sends its CONNECT again (same event); MARKER / CONTROL / ...: nothing to log

    # -- connection --

    def _connect(self, p: bytes, where: tuple[int, int]) -> None:
        if self.connect is None:
            self.connect = {"cmd": "connect", "service_name": None, "sid": None, "host": None, "port": None,
                            "program": None, "client_host": None, "user": None, "version": None, "result": None,
                            "error_code": None, "redirect": None, "connect_data": None}
            self.connect_where = where
        if len(p) < 28:
            return
        version = struct.unpack_from(">H", p, 8)[0]
        dlen, doff = struct.unpack_from(">HH", p, 24)
        self.connect["version"] = version
        data = p[doff : doff + dlen] if doff >= 26 else b""
        if dlen and len(data) < dlen and doff >= len(p):
            self.connect_data_follows = dlen  # sent in the next DATA packet
            return
        self._descriptor(data)

    def _descriptor(self, data: bytes) -> None:
        assert self.connect is not None
        s = data.decode("ascii", "replace")
        self.connect["connect_data"] = cap(s, 1024)
        items = connect_data(s)
        self.connect.update(
            service_name=_field(items, "CONNECT_DATA.SERVICE_NAME", "SERVICE_NAME"),
            sid=_field(items, "CONNECT_DATA.SID", "SID"),
            host=_field(items, "ADDRESS.HOST", "HOST"),
            port=_port(_field(items, "ADDRESS.PORT", "PORT")),
            program=_field(items, "CID.PROGRAM", "PROGRAM"),
            client_host=_field(items, "CID.HOST"),
            user=_field(items, "CID.USER", "USER"))

    def _answer(self, kind: int, p: bytes) -> None:
        assert self.connect is not None
        self.connect["result"] = TYPES[kind]
        if kind == ACCEPT:
            version = struct.unpack_from(">H", p, 8)[0] if len(p) >= 10 else 0
            self.accepted = True
            self.large = version >= LARGE_SDU_VERSION
            self.connect["version"] = version or self.connect["version"]
        elif kind == REFUSE and len(p) >= 12:
            dlen = struct.unpack_from(">H", p, 10)[0]
            items = connect_data(p[12 : 12 + dlen].decode("ascii", "replace"))
            err = _field(items, "DESCRIPTION.ERR", "ERR")
            self.connect["error_code"] = int(err) if err and err.isdigit() else None
        elif kind == REDIRECT and len(p) >= 10:
            dlen = struct.unpack_from(">H", p, 8)[0]
            self.connect["redirect"] = cap(p[10 : 10 + dlen].decode("ascii", "replace"), 1024) or None
        self._emit_connect()
        if kind != ACCEPT:
            self.done = True  # refused or sent elsewhere: the client closes

    def _emit_connect(self) -> None:
        if self.connect is not None:
            self.out.event(self.connect, *self.connect_where)
            self.connect = None

    # -- data --

    def _data(self, side: int, p: bytes, where: tuple[int, int]) -> None:
        payload = p[10:]
        if side == CLIENT and self.connect_data_follows and self.connect is not None:
            self.connect_data_follows = 0
            self._descriptor(payload)
            return
        if side != CLIENT:
            self._server_data(payload)
            if len(p) >= 10 and struct.unpack_from(">H", p, 8)[0] & DATA_EOF:
                self.done = True
            return
        for sql in find_statements(payload):
            self._statement(payload, sql, where)

    def _statement(self, payload: bytes, raw: bytes, where: tuple[int, int]) -> None:
        self._emit_statement()
        sql = cap(raw.decode("ascii", "replace")).rstrip()
        call = (payload[0], payload[1]) if len(payload) >= 2 else None
        fn = TTC_FUNCTIONS.get(call[0]) if call else None
        self.statement = {"cmd": "statement", "statement": sql,
                          "function": f"{fn}:0x{call[1]:02x}" if fn and call else None,
                          "success": None, "error_code": None, "error": None}
        self.statement_where = where
        self.out.content("sql", CLIENT, raw, *where)
        sqlinjection.report(self.out, "oracle", sql, CLIENT, *where)

    def _server_data(self, payload: bytes) -> None:
        st = self.statement
        if st is None:
            return
        if st["success"] is None:
            st["success"] = True
        if st["error_code"] is None:
            for m in ORA_ERROR.finditer(payload[:PACKET_KEEP]):
                code = int(m.group(1))
                if code != NO_DATA_FOUND:
                    st.update(success=False, error_code=code, error=m.group(2).decode("ascii", "replace").rstrip())
                    break

    def _emit_statement(self) -> None:
        if self.statement is not None:
            self.out.event(self.statement, *self.statement_where)
            self.statement = None

    def finish(self) -> None:
        self._emit_connect()
        self._emit_statement()


def find_statements(payload: bytes, limit: int = 4) -> list[bytes]:
    """SQL text in a client DATA payload: printable runs that start with an SQL keyword (the way dpi_tns.c
    finds SELECT after OALL8, generalised), at least MIN_SQL bytes, at most `limit` per packet."""
    out = []
    for m in SQL_TEXT.finditer(payload):
        run = m.group(0)
        if len(run) >= MIN_SQL:
            out.append(run[: sqlinjection.MAX_STATEMENT])
            if len(out) >= limit:
                break
    return out


SPEC = ProtocolSpec(
    name="oracle",
    transports=("tcp",),
    ports=(1521,),
    probe=probe,
    description="Oracle TNS: CONNECT with (DESCRIPTION=...) connect data or an ACCEPT/REFUSE/REDIRECT/RESEND answer",
    parser=TnsParser,
    extracts="connect (service name/SID, host, port, program, client host, OS user, version, accept/refuse/"
             "redirect with error); SQL statements found in client DATA packets with the first ORA- error",
)
