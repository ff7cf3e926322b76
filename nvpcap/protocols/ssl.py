"""TLS/SSL: records `type(1) version(2) length(2)` (RFC 8446 §5.1, RFC 5246 §6.2), the ClientHello/ServerHello
handshake headers (RFC 8446 §4.1.2-4.1.3), and the SSLv2 CLIENT-HELLO (draft-hickman-netscape-ssl-00 §2.6,
RFC 6101 appendix E.1).

NeuVector (dpi_ssl.c): the first client record must be type 20/21/22 with version 0x0300-0x0303, or an SSLv2
2-byte-header hello; finalized once both sides sent a valid record; any port. Here: YES at once on a
ClientHello or ServerHello whose hello version is sane, or when both sides start with a valid chain of records
(TLS 1.3 record version 0x0304 allowed).
"""
from __future__ import annotations

import struct

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

RECORD = struct.Struct("!BHH")  # content type, legacy version, length
CCS, ALERT, HANDSHAKE, APPDATA, HEARTBEAT = 20, 21, 22, 23, 24
CONTENT_TYPES = frozenset((CCS, ALERT, HANDSHAKE, APPDATA, HEARTBEAT))
VERSIONS = range(0x0300, 0x0305)  # SSL 3.0 .. TLS 1.3
MAX_RECORD = 16384 + 2048  # TLSCiphertext.length limit
CLIENT_HELLO, SERVER_HELLO = 1, 2
HELLO_MIN = {CLIENT_HELLO: 41, SERVER_HELLO: 38}  # version + random + session id + suites/suite + compression
MAX_RECORDS = 16  # records walked per direction

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def _record_chain(buf: bytes) -> tuple[Verdict, int]:
    """Walk the records that start buf: (NO, n) on an invalid header, else (MAYBE, n valid headers seen)."""
    off = n = 0
    while off < len(buf) and n < MAX_RECORDS:
        head = buf[off : off + 5]
        if head[0] not in CONTENT_TYPES or (len(head) >= 2 and head[1] != 3) or (len(head) >= 3 and head[2] > 4):
            return NO, n
        if len(head) < 5:
            return MAYBE, n
        ctype, _, length = RECORD.unpack(head)
        if length > MAX_RECORD or (length == 0 and ctype != APPDATA) or (ctype == CCS and length != 1):
            return NO, n
        n += 1
        off += 5 + length
    return MAYBE, n


def _hello(buf: bytes, kind: int) -> Verdict:
    """Does buf start with a handshake record holding a ClientHello (kind 1) or ServerHello (kind 2)?"""
    head = buf[:11]
    if head[:1] != bytes((HANDSHAKE,)) or len(head) >= 2 and head[1] != 3 or len(head) >= 3 and head[2] > 4:
        return NO
    if len(head) > 5 and head[5] != kind:
        return NO
    if len(head) < 11:
        return MAYBE
    length = RECORD.unpack_from(head)[2]
    hs_len = int.from_bytes(head[6:9], "big")
    hello_version = int.from_bytes(head[9:11], "big")
    if not 4 <= length <= MAX_RECORD or hs_len < HELLO_MIN[kind] or hello_version not in VERSIONS:
        return NO
    if len(buf) > 43 and buf[43] > 32:  # legacy_session_id length
        return NO
    return YES


def _sslv2_hello(buf: bytes, kinds: tuple[int, ...]) -> Verdict:
    """SSLv2 2-byte record header (high bit set) + CLIENT-HELLO (1) or SERVER-HELLO (4)."""
    head = buf[:11]
    if not head or not head[0] & 0x80 or len(head) >= 3 and head[2] not in kinds:
        return NO
    if len(head) < 11:
        return MAYBE
    length = ((head[0] & 0x7F) << 8) | head[1]
    if head[2] == 1:  # msg, version, cipher-specs length, session-id length, challenge length
        version, specs, sid, chal = struct.unpack_from("!HHHH", head, 3)
        if version != 0x0002 and version not in VERSIONS:
            return NO
        ok = specs and specs % 3 == 0 and sid in (0, 16) and 16 <= chal <= 32 and 9 + specs + sid + chal == length
        return YES if ok else NO
    # SERVER-HELLO: msg, session-id-hit, certificate type, version 0x0002, certificate length, ...
    ok = head[3] in (0, 1) and head[4] == 1 and head[5:7] == b"\x00\x02" and length >= 11
    return YES if ok else NO


def side(buf: bytes, kind: int) -> tuple[Verdict, int]:
    """(YES, _) on a hello, (MAYBE, n) on a valid record chain of n headers (or a hello prefix), (NO, _)."""
    if not buf:
        return MAYBE, 0
    if buf[0] & 0x80:
        return _sslv2_hello(buf, (1,) if kind == CLIENT_HELLO else (4,)), 0
    hello = _hello(buf, kind)
    if hello == YES:
        return YES, 1
    if hello == NO and buf[:1] == bytes((HANDSHAKE,)) and buf[5:6] == bytes((kind,)):
        return NO, 0  # announces a hello but is not a valid one
    return _record_chain(buf)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        c, nc = side(client, CLIENT_HELLO)
        s, ns = side(server, SERVER_HELLO)
        if c == YES or s == YES:
            return YES
        if c == NO or s == NO:
            return NO
        if nc and ns:
            return YES  # valid records both ways (e.g. application data of a flow seen mid-stream)
        if ctx.final and (nc >= 2 or ns >= 2):
            return YES  # one side only, but a chain of records
        return NO if ctx.final else MAYBE
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="ssl",
    transports=("tcp",),
    ports=(443, 465, 636, 853, 993, 995, 8443),
    probe=probe,
    description="TLS/SSL: ClientHello/ServerHello, SSLv2 hello, or valid TLS records from both sides",
)
