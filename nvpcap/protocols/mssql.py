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

from .base import either_way_midstream, guarded, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="mssql",
    transports=("tcp",),
    ports=(1433,),
    probe=probe,
    description="MS-SQL TDS: packet header + PRELOGIN/LOGIN7/SQL batch/RPC payload, tabular-result answer",
)
