"""Microsoft SQL Server / Sybase: Tabular Data Stream (TDS).

Spec: [MS-TDS] 2.2.3.1 packet header (type, status, length u16 BE, SPID, packet id, window 0), 2.2.6 client
messages: PRELOGIN 0x12 (option token table: token, offset u16, length u16, terminated by 0xFF), LOGIN7
0x10 (u32 LE length = packet data length, TDS version), SQL batch 0x01 and RPC 0x03 (ALL_HEADERS: u32
total length then u32-length-prefixed headers of type 1-3, 2.2.5.3), attention 0x06, transaction manager
0x0E; server messages: tabular result 0x04 (a token stream 2.2.7, or a PRELOGIN table). NeuVector
(dpi_tds.c) checks the header (type, status <= 4, length) and the same payloads; we allow every status bit
of TDS 7.x, require the window byte 0 and validate each payload, so a lone client message is proof on the
last call (mid-stream captures often hold one RPC).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from . import sqlinjection
from .base import CLIENT, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict, either_way_midstream, guarded
from .framing import Framer
from .sqlinjection import cap

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

CLIENT_TYPES = {0x01, 0x02, 0x03, 0x06, 0x07, 0x0E, 0x10, 0x11, 0x12}
TOKENS = {0x81, 0xFD, 0xFE, 0xFF, 0xAA, 0xAB, 0xAD, 0xE3, 0x79, 0xA9, 0xA5, 0xA4, 0xD1, 0xD2, 0xAC, 0xED, 0xEE,
          0xAE, 0xE4, 0x78, 0x88, 0xD3}  # 2.2.7 data stream tokens a response can start with
MAX_PACKET = 32768


def _header(b: bytes, types: set) -> tuple[Verdict, int]:
    """The 8-byte packet header: (verdict, packet length)."""
    h = b[:8]
    if (h[:1] and h[0] not in types) or (len(h) > 1 and h[1] & ~0x1F) or (len(h) > 7 and h[7] != 0):
        return NO, 0
    if len(h) < 4:
        return MAYBE, 0
    length = struct.unpack_from(">H", h, 2)[0]
    if not 8 < length <= MAX_PACKET or (h[1] & 1 == 0 and len(b) > length and b[length] != h[0]):
        return NO, 0  # a message continued in another packet keeps the type
    return (YES if len(h) == 8 else MAYBE), length


def _ucs2(b: bytes) -> bool:
    """UTF-16LE text whose first characters are printable ASCII."""
    b = b[: len(b) & ~1]
    return len(b) >= 2 and all(0x09 <= b[i] < 0x7F and b[i + 1] == 0 for i in range(0, min(len(b), 64), 2))


def _prelogin(p: bytes, end: int) -> Verdict:
    """Option tokens 0x00-0x08 with (offset, length) inside the message, terminated by 0xFF."""
    off = 0
    while off < len(p):
        token = p[off]
        if token == 0xFF:
            return YES if off else NO
        if token > 0x08 or len(p) < off + 5:
            return NO if token > 0x08 else MAYBE
        offset, length = struct.unpack_from(">HH", p, off + 1)
        if offset + length > end or offset < 6:
            return NO
        off += 5
    return MAYBE


def _all_headers(p: bytes) -> Verdict:
    """ALL_HEADERS: total length, then headers (length u32 LE, type u16 1-3)."""
    if len(p) < 10:
        return MAYBE
    total, first_len, kind = struct.unpack_from("<IIH", p)
    if not 18 <= total <= 1024 or not 6 <= first_len <= total - 4 or kind not in (1, 2, 3):
        return NO
    return YES


def _client(c: bytes) -> Verdict:
    hv, length = _header(c, CLIENT_TYPES)
    if hv != YES:
        return hv
    kind, p, end = c[0], c[8:length], length - 8
    if kind == 0x12:
        return _prelogin(p, end) if p[:1] != b"\x16" else (YES if p[1:2] == b"\x03" else MAYBE if len(p) < 2 else NO)
    if kind == 0x10:  # LOGIN7: length (LE) = message length, TDS version 7.0 .. 7.4 / 8.0
        if len(p) < 8:
            return MAYBE
        total, version = struct.unpack_from("<II", p)
        ok = total >= 36 and (total == end or c[1] & 1 == 0) and (version >> 24) in (0x70, 0x71, 0x72, 0x73, 0x74, 0x08)
        return YES if ok else NO
    if kind in (0x01, 0x03, 0x0E):
        if len(p) < 4:
            return MAYBE
        if p[2:4] == b"\0\0":  # ALL_HEADERS (TDS 7.2+): a small u32 total length
            return _all_headers(p)
        if kind == 0x01:  # SQL text without ALL_HEADERS (TDS 7.0/7.1): 8+ UCS-2 characters, a word first
            if not _ucs2(p[:32]) or not (p[:1].isalpha() or p[:1] in b" \t\r\n(-/"):
                return NO
            return YES if len(p) >= min(end, 16) else MAYBE
        if kind == 0x03:  # RPC: name length + UCS-2 name, or 0xFFFF + procedure id
            nlen = struct.unpack_from("<H", p)[0]
            if nlen == 0xFFFF:
                return YES if 1 <= struct.unpack_from("<H", p, 2)[0] <= 15 else NO
            return YES if 0 < nlen <= 128 and _ucs2(p[2 : 2 + 2 * min(nlen, 16)]) else NO
        return NO
    if kind == 0x06:  # attention: header only
        return YES if length == 8 else NO
    return MAYBE  # types without a cheap payload check: need the answer


def _server(s: bytes) -> Verdict:
    hv, length = _header(s, {0x04})
    if hv != YES:
        return hv
    if len(s) < 9:
        return MAYBE
    if s[8] in TOKENS:
        return YES
    return _prelogin(s[8:length], length - 8) if s[8] <= 0x08 else NO


def _check(c: bytes, s: bytes, final: bool) -> Verdict:
    vc = _client(c) if c else MAYBE
    if vc == NO or (not c and s):
        return NO
    if s:
        vs = _server(s)
        if vs == NO:
            return NO
        if vs == YES and vc != NO and len(c) >= 8:
            return YES if vc == YES or c[0] in (0x07, 0x11, 0x02) else MAYBE
    return YES if vc == YES and final else MAYBE


_probe = either_way_midstream(_check)


probe = guarded(_probe)


# ---- parsing: PRELOGIN + LOGIN7 (one login event), then each request paired with its response ----
# [MS-TDS] 2.2.3.1 packet header (a message spans packets until the EOM status bit), 2.2.6.5 PRELOGIN,
# 2.2.6.4 LOGIN7, 2.2.6.7 SQLBatch, 2.2.6.6 RPCRequest, 2.2.5.3 ALL_HEADERS, 2.2.5.4-2.2.5.6 data types,
# 2.2.7 token stream (COLMETADATA, ROW/NBCROW, DONE*, ERROR, LOGINACK, ENVCHANGE, ...).

REQUEST_LIMIT = 1 << 16  # request bytes kept (a statement needs at most 8000 for its 4000 characters)
RESPONSE_LIMIT = 1 << 18  # response bytes walked; beyond, the message's last DONE token is still read
TAIL = 64
MAX_PENDING = 64
MAX_COLUMNS = 4096

EOM = 0x01
PRELOGIN, LOGIN7, SQL_BATCH, RPC, RESPONSE, ATTENTION, BULK, TM_REQUEST, LOGIN_TDS4, SSPI = \
    0x12, 0x10, 0x01, 0x03, 0x04, 0x06, 0x07, 0x0E, 0x02, 0x11
REQUESTS = {SQL_BATCH: "sql_batch", RPC: "rpc", ATTENTION: "attention", BULK: "bulk_load",
            TM_REQUEST: "transaction_manager", 0x0F: "tds5_query"}
ENCRYPTION = {0: "off", 1: "on", 2: "not_supported", 3: "required"}  # 2.2.6.5 ENCRYPTION option
ENCRYPT_ON, ENCRYPT_REQ = 1, 3
# 2.2.6.6 RPCRequest ProcIDs
PROCS = {1: "sp_cursor", 2: "sp_cursoropen", 3: "sp_cursorprepare", 4: "sp_cursorexecute",
         5: "sp_cursorprepexec", 6: "sp_cursorunprepare", 7: "sp_cursorfetch", 8: "sp_cursoroption",
         9: "sp_cursorclose", 10: "sp_executesql", 11: "sp_prepare", 12: "sp_execute", 13: "sp_prepexec",
         14: "sp_prepexecrpc", 15: "sp_unprepare"}
# the procedures whose SQL text is a parameter: which of their string parameters holds it (0 = the first)
STATEMENT_PARAM = {"sp_executesql": 0, "sp_cursoropen": 0, "sp_prepare": 1, "sp_prepexec": 1,
                   "sp_cursorprepare": 1, "sp_cursorprepexec": 1}
TM_REQUESTS = {0: "TM_GET_DTC_ADDRESS", 1: "TM_PROPAGATE_XACT", 5: "TM_BEGIN_XACT", 6: "TM_PROMOTE_XACT",
               7: "TM_COMMIT_XACT", 8: "TM_ROLLBACK_XACT", 9: "TM_SAVE_XACT"}
TDS_VERSIONS = {0x70: "7.0", 0x71: "7.1", 0x72: "7.2", 0x73: "7.3", 0x74: "7.4", 0x08: "8.0"}
LOGIN7_FIELDS = (("hostname", 36), ("username", 40), ("appname", 48), ("servername", 52),
                 ("library", 60), ("database", 68))  # (name, offset of its ib/cch pair); password (44) never
DONE_ERROR, DONE_COUNT, DONE_SRVERROR = 0x02, 0x10, 0x100

# 2.2.5.4 data types: fixed lengths, and the variable-length families
FIXED = {0x1F: 0, 0x30: 1, 0x32: 1, 0x34: 2, 0x38: 4, 0x3A: 4, 0x3B: 4, 0x3C: 8, 0x3D: 8, 0x3E: 8, 0x7A: 4, 0x7F: 8}
BYTELEN = {0x24, 0x26, 0x68, 0x6D, 0x6E, 0x6F, 0x2F, 0x27, 0x2D, 0x25, 0x37, 0x3F, 0x6A, 0x6C}
PRECISION = {0x37, 0x3F, 0x6A, 0x6C}  # decimal / numeric: precision and scale follow the length
SCALED = {0x29, 0x2A, 0x2B}  # time, datetime2, datetimeoffset: a scale byte, no length
DATEN = 0x28
USHORTLEN = {0xA5, 0xA7, 0xAD, 0xAF, 0xE7, 0xEF}
LONGLEN = {0x22, 0x23, 0x63}  # image, text, ntext
VARIANT = 0x62
XML = 0xF1
COLLATED = {0xA7, 0xAF, 0xE7, 0xEF, 0x23, 0x63, 0x2F, 0x27}
UCS2 = {0xE7, 0xEF, 0x63}
STRINGS = COLLATED


class _Stop(Exception):
    """The token stream cannot be walked further (cut, or a type we do not decode)."""


def _u8(b: bytes, off: int) -> int:
    if off >= len(b):
        raise _Stop
    return b[off]


def _unpack(fmt: struct.Struct, b: bytes, off: int) -> tuple:
    if off + fmt.size > len(b):
        raise _Stop
    return fmt.unpack_from(b, off)


U16, U32, U64, I32 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<i")
HEADER = struct.Struct(">BBHHBB")  # type, status, length, spid, packet id, window


def ucs2(b: bytes, limit: int = sqlinjection.MAX_STATEMENT) -> str:
    return cap(b[: 2 * limit + 2].decode("utf-16-le", "replace"), limit)


def b_varchar(b: bytes, off: int) -> tuple[str, int]:
    """B_VARCHAR: a 1-byte character count, then UCS-2."""
    n = _u8(b, off)
    end = off + 1 + 2 * n
    if end > len(b):
        raise _Stop
    return ucs2(b[off + 1 : end], 256), end


def us_varchar(b: bytes, off: int) -> tuple[str, int]:
    n = _unpack(U16, b, off)[0]
    end = off + 2 + 2 * n
    if end > len(b):
        raise _Stop
    return ucs2(b[off + 2 : end], 1024), end


class TypeInfo(NamedTuple):
    code: int
    size: int  # the fixed length, or the maximum length of a variable one (0xFFFF: PLP)


def type_info(b: bytes, off: int, column: bool) -> tuple[TypeInfo, int]:
    """TYPE_INFO (2.2.5.6) at b[off]; `column`: inside COLMETADATA (text/ntext/image carry a table name)."""
    code = _u8(b, off)
    off += 1
    if code in FIXED:
        return TypeInfo(code, FIXED[code]), off
    if code == DATEN:
        return TypeInfo(code, 3), off
    if code in SCALED:
        return TypeInfo(code, 0), off + 1
    if code in BYTELEN:
        size = _u8(b, off)
        off += 1 + (2 if code in PRECISION else 0)
    elif code in USHORTLEN:
        size = _unpack(U16, b, off)[0]
        off += 2
    elif code in LONGLEN or code == VARIANT:
        size = _unpack(U32, b, off)[0]
        off += 4
    elif code == XML:
        if _u8(b, off):  # schema present: database, owning schema, schema collection
            _, o = b_varchar(b, off + 1)
            _, o = b_varchar(b, o)
            _, off = us_varchar(b, o)
        else:
            off += 1
        return TypeInfo(code, 0xFFFF), off
    else:
        raise _Stop  # UDT, TVP, JSON, ...: not decoded
    if code in COLLATED:
        off += 5
    if column and code in LONGLEN:
        parts = _u8(b, off)
        off += 1
        for _ in range(parts):
            _, off = us_varchar(b, off)
    return TypeInfo(code, size), off


def value(b: bytes, off: int, ti: TypeInfo, row: bool) -> tuple[bytes | None, int]:
    """A value of type `ti` at b[off] (2.2.5.2, 2.2.4.2.1.x): (bytes or None for NULL, next offset).
    `row`: inside a ROW token (text/ntext/image values then carry a text pointer and a timestamp)."""
    code = ti.code
    if code in FIXED:
        end = off + ti.size
    elif code in BYTELEN or code == DATEN or code in SCALED:
        n = _u8(b, off)
        off, end = off + 1, off + 1 + n
        if n == 0:
            return None, off
    elif code in USHORTLEN and ti.size != 0xFFFF:
        n = _unpack(U16, b, off)[0]
        if n == 0xFFFF:
            return None, off + 2
        off, end = off + 2, off + 2 + n
    elif code in USHORTLEN or code == XML:
        return _plp(b, off)
    elif code in LONGLEN:
        if row:
            ptr = _u8(b, off)
            if ptr == 0:
                return None, off + 1
            off += 1 + ptr + 8
        n = _unpack(U32, b, off)[0]
        if n == 0xFFFFFFFF:
            return None, off + 4
        off, end = off + 4, off + 4 + n
    elif code == VARIANT:
        n = _unpack(U32, b, off)[0]
        off, end = off + 4, off + 4 + n
    else:
        raise _Stop
    if end > len(b):
        raise _Stop
    return b[off:end], end


def _plp(b: bytes, off: int) -> tuple[bytes | None, int]:
    """PLP_BODY: total length (u64; all ones = NULL), then chunks (u32 length) until a zero length."""
    total = _unpack(U64, b, off)[0]
    off += 8
    if total == 0xFFFFFFFFFFFFFFFF:
        return None, off
    parts = []
    for _ in range(1 << 16):
        n = _unpack(U32, b, off)[0]
        off += 4
        if n == 0:
            return b"".join(parts), off
        if off + n > len(b):
            raise _Stop
        parts.append(b[off : off + n])
        off += n
    raise _Stop


def skip_all_headers(p: bytes) -> int:
    """Offset after ALL_HEADERS (2.2.5.3, TDS 7.2+), or 0 when the payload has none (TDS 7.0/7.1)."""
    if len(p) < 4:
        return 0
    total = U32.unpack_from(p)[0]
    if total == 4:
        return 4
    if not 10 <= total <= len(p):
        return 0
    first, kind = struct.unpack_from("<IH", p, 4)
    return total if 6 <= first <= total - 4 and kind in (1, 2, 3) else 0


def parse_prelogin(p: bytes) -> dict:
    """PRELOGIN option table (2.2.6.5): VERSION (major.minor.build) and ENCRYPTION."""
    out: dict = {}
    off = 0
    while off + 5 <= len(p) and p[off] != 0xFF and off < 256:
        token, start, length = p[off], *struct.unpack_from(">HH", p, off + 1)
        data = p[start : start + length]
        if token == 0 and len(data) >= 4:
            out["version"] = f"{data[0]}.{data[1]}.{struct.unpack_from('>H', data, 2)[0]}"
        elif token == 1 and data:
            out["encryption"] = data[0]
        off += 5
    return out


def parse_login7(p: bytes) -> dict:
    """LOGIN7 (2.2.6.4): TDS version and the UCS-2 strings at their offsets. The password is never read."""
    out: dict = {name: None for name, _ in LOGIN7_FIELDS}
    if len(p) < 8:
        return out
    out["tds_version"] = version_name(U32.unpack_from(p, 4)[0])
    for name, at in LOGIN7_FIELDS:
        if at + 4 <= len(p):
            start, count = struct.unpack_from("<HH", p, at)
            if count and start + 2 * count <= len(p):
                out[name] = ucs2(p[start : start + 2 * count], 256)
    return out


def decoded(raw: bytes, utf16: bool) -> bytes:
    """Statement bytes for the rules engine, decoded as NeuVector decodes TDS text (dpi_tds.c), as UTF-8."""
    return raw.decode("utf-16-le" if utf16 else "latin-1", "replace").encode("utf-8")


def version_name(v: int) -> str:
    return TDS_VERSIONS.get(v >> 24, f"0x{v:08x}")


def _tls_record(h: bytes) -> bool:
    return 0x14 <= h[0] <= 0x17 and h[1] == 0x03


def _packet_length(h: bytes) -> int:
    """TDS packet length (header included); raw TLS records (a login encrypted by itself) are framed too."""
    if _tls_record(h):
        return 5 + struct.unpack_from(">H", h, 3)[0]
    return struct.unpack_from(">H", h, 2)[0]


class Tokens:
    """What a response's token stream says: errors, DONE row counts and status, LOGINACK, database."""

    def __init__(self) -> None:
        self.rows: int | None = None  # sum of DONE* row counts flagged DONE_COUNT
        self.row_tokens = 0
        self.error: tuple[int, int, str] | None = None  # (number, class, message) of the first ERROR
        self.failed = False
        self.loginack: tuple[str, str, str] | None = None  # (tds version, program, program version)
        self.database: str | None = None
        self.complete = False

    def walk(self, b: bytes, wide: bool) -> None:
        """Walk tokens from b[0]; `wide`: TDS 7.2+ (4-byte user types, 8-byte DONE row counts)."""
        columns: list[TypeInfo] = []
        off = 0
        try:
            while off < len(b):
                token = b[off]
                off += 1
                if token in (0xFD, 0xFE, 0xFF):  # DONE, DONEPROC, DONEINPROC
                    status = _unpack(U16, b, off)[0]
                    count = _unpack(U64 if wide else U32, b, off + 4)[0]
                    self._done(status, count)
                    off += 4 + (8 if wide else 4)
                elif token == 0x81:
                    columns, off = self._colmetadata(b, off, wide)
                elif token in (0xD1, 0xD2):
                    off = self._row(b, off, columns, token == 0xD2)
                elif token == 0xAC:  # RETURNVALUE
                    _, o = b_varchar(b, off + 2)
                    ti, o = type_info(b, o + 1 + (4 if wide else 2) + 2, False)
                    _, off = value(b, o, ti, False)
                elif token == 0x79:  # RETURNSTATUS
                    off += 4
                elif token in (0xEE, 0xE4):  # FEDAUTHINFO, SESSIONSTATE: 4-byte length
                    off += 4 + _unpack(U32, b, off)[0]
                elif token == 0xAE:  # FEATUREEXTACK: (id, u32 length, data)* until 0xFF
                    while _u8(b, off) != 0xFF:
                        off += 5 + _unpack(U32, b, off + 1)[0]
                    off += 1
                elif token in (0xAA, 0xAB, 0xAD, 0xE3, 0xA9, 0xA5, 0xA4, 0xED, 0x78):
                    n = _unpack(U16, b, off)[0] if token != 0x78 else 2
                    body = b[off + 2 : off + 2 + n]
                    if len(body) < n:
                        raise _Stop
                    self._sized(token, body)
                    off += 2 + n
                else:
                    raise _Stop
            self.complete = True
        except _Stop:
            pass

    def _done(self, status: int, count: int) -> None:
        if status & DONE_COUNT:
            self.rows = (self.rows or 0) + count
        if status & (DONE_ERROR | DONE_SRVERROR):
            self.failed = True

    def _colmetadata(self, b: bytes, off: int, wide: bool) -> tuple[list[TypeInfo], int]:
        n = _unpack(U16, b, off)[0]
        off += 2
        if n == 0xFFFF:
            return [], off
        if n > MAX_COLUMNS:
            raise _Stop
        cols = []
        for _ in range(n):
            ti, off = type_info(b, off + (4 if wide else 2) + 2, True)  # user type, flags
            _, off = b_varchar(b, off)  # column name
            cols.append(ti)
        return cols, off

    def _row(self, b: bytes, off: int, columns: list[TypeInfo], nbc: bool) -> int:
        if not columns:
            raise _Stop
        nulls = b""
        if nbc:
            size = (len(columns) + 7) // 8
            nulls = b[off : off + size]
            if len(nulls) < size:
                raise _Stop
            off += size
        for i, ti in enumerate(columns):
            if nbc and nulls[i >> 3] >> (i & 7) & 1:
                continue
            _, off = value(b, off, ti, True)
        self.row_tokens += 1
        return off

    def _sized(self, token: int, body: bytes) -> None:
        if token == 0xAA and len(body) >= 8:  # ERROR: number, state, class, message
            self.failed = True
            if self.error is None:
                number, _, klass = struct.unpack_from("<iBB", body)
                try:
                    msg = us_varchar(body, 6)[0]
                except _Stop:
                    msg = ""
                self.error = (number, klass, msg)
        elif token == 0xAD and len(body) >= 5:  # LOGINACK: interface, TDS version (big-endian), program
            try:
                prog, o = b_varchar(body, 5)
            except _Stop:
                prog, o = "", len(body)
            ver = body[o : o + 4]
            pv = f"{ver[0]}.{ver[1]}.{ver[2] << 8 | ver[3]}" if len(ver) == 4 else None
            self.loginack = (version_name(struct.unpack_from(">I", body, 1)[0]), prog, pv)
        elif token == 0xE3 and body[:1] == b"\x01":  # ENVCHANGE database
            try:
                self.database = b_varchar(body, 1)[0]
            except _Stop:
                pass

    def final_done(self, tail: bytes, wide: bool) -> None:
        """A response too long to walk: its last token is normally the closing DONE / DONEPROC."""
        size = 13 if wide else 9
        if len(tail) >= size and tail[-size] in (0xFD, 0xFE):
            status = U16.unpack_from(tail, len(tail) - size + 1)[0]
            count = (U64 if wide else U32).unpack_from(tail, len(tail) - size + 5)[0]
            self._done(status, count)


class TdsParser(Parser):
    """One login event (PRELOGIN version/encryption, LOGIN7 names, LOGINACK or the login error) and one event
    per request (SQL batch statement, RPC procedure and its SQL parameter, attention, ...) with its response's
    row count and first error. Threat 2022 on SQL batch text. Encrypted connections: the login event, then
    done (with encryption "off" only the LOGIN7 is encrypted and the rest is read)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.framers = (Framer(8, _packet_length, 1 << 16, 1 << 16), Framer(8, _packet_length, 1 << 16, 1 << 16))
        self.msgs: list[tuple[int, bytearray, int, tuple[int, int], bytes] | None] = [None, None]
        self.wide = True
        self.login: dict | None = None
        self.login_where = (0, 0)
        self.client_encryption: int | None = None
        self.pending: list[tuple[str, dict | None, tuple[int, int]]] = []  # (kind, event, where)

    # -- packets -> messages --

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        for pkt in framer.push(data, frame, ts_ns):
            if _tls_record(pkt.data):
                self._tls(side, pkt.data, (pkt.frame, pkt.ts_ns))
            else:
                self._packet(side, pkt)
            if self.done:
                return
        if framer.broken:
            self.out.anomaly("mssql-bad-length", "TDS packet length below 8: framing lost", frame, ts_ns)
            self.done = True

    def _packet(self, side: int, pkt) -> None:
        kind, status = pkt.data[0], pkt.data[1]
        payload = pkt.data[8:]
        cur = self.msgs[side]
        if cur is None or cur[0] != kind:
            limit = RESPONSE_LIMIT if kind == RESPONSE else REQUEST_LIMIT
            cur = (kind, bytearray(), limit, (pkt.frame, pkt.ts_ns), b"")
        body, limit = cur[1], cur[2]
        if len(body) < limit:
            body += payload[: limit - len(body)]
        tail = (cur[4] + payload)[-TAIL:]
        cur = (kind, body, limit, cur[3], tail)
        if status & EOM:
            self.msgs[side] = None
            self._message(side, kind, bytes(body), len(body) >= limit, tail, cur[3])
        else:
            self.msgs[side] = cur

    def _tls(self, side: int, record: bytes, where: tuple[int, int]) -> None:
        """A raw TLS record after the PRELOGIN handshake: the LOGIN7 encrypted by itself (encryption "off")."""
        if side == CLIENT and record[0] == 0x17:
            login = self._new_login(where)
            login["login_encrypted"] = True
            if not self.pending or self.pending[-1][0] != "login":
                self.pending.append(("login", None, where))

    # -- messages --

    def _message(self, side: int, kind: int, p: bytes, cut: bool, tail: bytes, where: tuple[int, int]) -> None:
        if side == CLIENT:
            self._request(kind, p, where)
        elif kind == RESPONSE:
            self._response(p, cut, tail, where)
        # server PRELOGIN packets carry its TLS handshake: nothing to read

    def _new_login(self, where: tuple[int, int]) -> dict:
        if self.login is None:
            self.login = {"cmd": "login", "hostname": None, "username": None, "appname": None, "servername": None,
                          "database": None, "library": None, "tds_version": None, "client_version": None,
                          "server_version": None, "server_program": None, "encryption": None,
                          "login_encrypted": False, "success": None, "error_code": None, "error": None}
            self.login_where = where
        return self.login

    def _emit_login(self) -> None:
        if self.login is not None:
            self.out.event(self.login, *self.login_where)
            self.login = None

    def _request(self, kind: int, p: bytes, where: tuple[int, int]) -> None:
        if kind == PRELOGIN:
            if p[:2] in (b"\x16\x03", b"\x15\x03"):  # the TLS handshake rides in PRELOGIN packets
                return
            info = parse_prelogin(p)
            login = self._new_login(where)
            login["client_version"] = info.get("version")
            self.client_encryption = info.get("encryption")
            self.pending.append(("prelogin", None, where))
        elif kind in (LOGIN7, LOGIN_TDS4):
            login = self._new_login(where)
            if kind == LOGIN7:
                info = parse_login7(p)
                if info.get("tds_version", "7.2") in ("7.0", "7.1"):
                    self.wide = False
            else:  # TDS 4.2/5.0 login record: host name, user name (30 bytes each + length)
                info = {"hostname": p[:min(p[30], 30)].decode("latin-1") if len(p) > 61 else None,
                        "username": p[31:31 + min(p[61], 30)].decode("latin-1") if len(p) > 61 else None,
                        "tds_version": "4.2/5.0"}
            login.update(info)
            self.pending.append(("login", None, where))
        elif kind in REQUESTS:
            self._pend(REQUESTS[kind], self._describe(kind, p, where), where)
        # SSPI / federated authentication tokens and unknown types: nothing to log

    def _describe(self, kind: int, p: bytes, where: tuple[int, int]) -> dict:
        event: dict = {"cmd": REQUESTS[kind], "statement": None, "procedure": None, "rows": None,
                       "success": None, "error_code": None, "error_class": None, "error": None}
        if kind == SQL_BATCH:
            raw = p[skip_all_headers(p):]
            sql = ucs2(raw)
            event["statement"] = sql
            self.out.content("sql", CLIENT, decoded(raw, True), *where)
            sqlinjection.report(self.out, "mssql", sql, CLIENT, *where)
        elif kind == RPC:
            proc, sql, content = rpc_call(p[skip_all_headers(p):])
            event.update(procedure=proc, statement=sql)
            if content is not None:
                self.out.content("sql", CLIENT, content, *where)
        elif kind == TM_REQUEST:
            off = skip_all_headers(p)
            if off + 2 <= len(p):
                event["tm_request"] = TM_REQUESTS.get(U16.unpack_from(p, off)[0])
        return event

    def _pend(self, kind: str, event: dict | None, where: tuple[int, int]) -> None:
        self.pending.append((kind, event, where))
        if len(self.pending) > MAX_PENDING:
            self._flush(self.pending.pop(0))

    def _response(self, p: bytes, cut: bool, tail: bytes, where: tuple[int, int]) -> None:
        if not self.pending:
            return  # mid-stream: the request was not captured
        kind, event, rwhere = self.pending.pop(0)
        if kind == "prelogin":
            self._prelogin_response(p, rwhere)
            return
        tokens = Tokens()
        tokens.walk(p, self.wide)
        if (cut or not tokens.complete) and tokens.rows is None:
            tokens.final_done(tail, self.wide)
        if kind == "login":
            self._login_response(tokens, rwhere)
            return
        assert event is not None
        event["rows"] = tokens.rows if tokens.rows is not None else (tokens.row_tokens or None)
        event["success"] = not tokens.failed
        if tokens.error:
            event["error_code"], event["error_class"], event["error"] = tokens.error
        self.out.event(event, *rwhere)

    def _prelogin_response(self, p: bytes, where: tuple[int, int]) -> None:
        info = parse_prelogin(p)
        login = self._new_login(where)
        login["server_version"] = info.get("version")
        enc = info.get("encryption")
        login["encryption"] = ENCRYPTION.get(enc & 0x0F, str(enc)) if enc is not None else None
        full = enc in (ENCRYPT_ON, ENCRYPT_REQ) or (enc == 0 and self.client_encryption in (ENCRYPT_ON, ENCRYPT_REQ))
        if full:  # TLS for the whole connection (the LOGIN7 included): nothing more to read
            login["login_encrypted"] = True
            self._emit_login()
            self.done = True

    def _login_response(self, tokens: Tokens, where: tuple[int, int]) -> None:
        if tokens.loginack is None and not tokens.failed:
            # an SSPI / federated-authentication challenge: the client answers, the login goes on
            self.pending.insert(0, ("login", None, where))
            return
        login = self._new_login(where)
        if tokens.loginack is not None:
            version, program, prog_version = tokens.loginack
            login.update(tds_version=version, server_program=program, success=True)
            login["server_version"] = prog_version or login["server_version"]
            if version in ("7.0", "7.1"):
                self.wide = False
        if tokens.failed:
            login["success"] = False
        if tokens.error:
            login["error_code"], _, login["error"] = tokens.error
        if tokens.database and not login["database"]:
            login["database"] = tokens.database
        self._emit_login()
        if tokens.error and tokens.loginack is None:
            self.done = True  # login refused: the server closes

    def _flush(self, item: tuple[str, dict | None, tuple[int, int]]) -> None:
        _, event, where = item
        if event is not None:
            self.out.event(event, *where)

    def finish(self) -> None:
        self._emit_login()
        while self.pending:
            self._flush(self.pending.pop(0))


def rpc_call(p: bytes) -> tuple[str | None, str | None, bytes | None]:
    """The first call of an RPCRequest (2.2.6.6): procedure name (or the name of its ProcID) and, for the
    system procedures that take SQL text, that parameter (capped, and whole as UTF-8 for the rules engine)."""
    try:
        n = _unpack(U16, p, 0)[0]
        if n == 0xFFFF:
            pid = _unpack(U16, p, 2)[0]
            proc, off = PROCS.get(pid, f"proc_id_{pid}"), 4
        else:
            if 2 + 2 * n > len(p):
                raise _Stop
            proc, off = ucs2(p[2 : 2 + 2 * n], 256), 2 + 2 * n
    except _Stop:
        return None, None, None
    want = STATEMENT_PARAM.get(proc.lower())
    if want is None:
        return proc, None, None
    try:
        off += 2  # option flags
        seen = 0
        for _ in range(64):
            _, off = b_varchar(p, off)  # parameter name
            off += 1  # status flags
            ti, off = type_info(p, off, False)
            raw, off = value(p, off, ti, False)
            if ti.code in STRINGS:
                if seen == want:
                    if raw is None:
                        return proc, None, None
                    sql = ucs2(raw) if ti.code in UCS2 else text8(raw)
                    return proc, sql, decoded(raw, ti.code in UCS2)
                seen += 1
    except _Stop:
        pass
    return proc, None, None


def text8(b: bytes) -> str:
    return cap(b[: sqlinjection.MAX_STATEMENT].decode("latin-1"))


SPEC = ProtocolSpec(
    name="mssql",
    transports=("tcp",),
    ports=(1433,),
    probe=probe,
    description="MS-SQL TDS: packet header + PRELOGIN/LOGIN7/SQL batch/RPC payload, tabular-result answer",
    parser=TdsParser,
    extracts="login (host, user, app, server, database, library, TDS/server versions, encryption, result); each "
             "request (SQL batch statement, RPC procedure + SQL parameter) with rows and first error",
)
