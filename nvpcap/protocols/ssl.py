"""TLS/SSL: records `type(1) version(2) length(2)` (RFC 8446 §5.1, RFC 5246 §6.2), the ClientHello/ServerHello
handshake headers (RFC 8446 §4.1.2-4.1.3), and the SSLv2 CLIENT-HELLO (draft-hickman-netscape-ssl-00 §2.6,
RFC 6101 appendix E.1).

NeuVector (dpi_ssl.c): the first client record must be type 20/21/22 with version 0x0300-0x0303, or an SSLv2
2-byte-header hello; finalized once both sides sent a valid record; any port. Here: YES at once on a
ClientHello or ServerHello whose hello version is sane, or when both sides start with a valid chain of records
(TLS 1.3 record version 0x0304 allowed).
"""
from __future__ import annotations

import hashlib
import struct
import sys
import warnings
from array import array
from collections.abc import Callable
from typing import Any

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict
from nvpcap.protocols.framing import Cursor, Short

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
    except Exception:  # noqa: BLE001 - never raise on capture bytes
        return NO


# ---- parsing: the record layer, the cleartext handshake messages and the server certificate ----
# Records: RFC 5246 §6.2 / RFC 8446 §5.1; handshake: RFC 5246 §7.4 / RFC 8446 §4; SSLv2: draft-hickman-netscape-ssl-00
# §2.6 (2-byte record header with the high bit set) and §2.7 (CLIENT-HELLO, SERVER-HELLO).

V2_HEAD = 2  # SSLv2 2-byte record header: high bit set, 15-bit length
HS_HEAD = 4  # handshake message: msg_type(1) length(3)
MAX_HANDSHAKE = 65536  # handshake bytes kept per message; a longer one (a big Certificate chain) keeps its prefix
MAX_LIST = 64  # items kept of the ALPN list
MAX_TEXT = 1024  # characters kept of a name (SNI, subject, issuer)
HB_REQUEST = 1  # RFC 6520 §3 HeartbeatMessageType heartbeat_request
HB_OVERREAD = 1024  # NeuVector dpi_ssl.c: payload_length - (record length - 3) > 1024 is Heartbleed
CERTIFICATE, SERVER_HELLO_DONE = 11, 14
V2_CLIENT_HELLO, V2_SERVER_HELLO = 1, 4
V2_CLIENT_HELLO_HEAD = struct.Struct("!BHHHH")  # msg, version, cipher_specs len, session_id len, challenge len
V2_SERVER_HELLO_HEAD = struct.Struct("!BBBHHHH")  # msg, sid hit, cert type, version, cert len, specs len, conn-id len
V2_X509 = 1  # SSL_CT_X509_CERTIFICATE

# Extensions (IANA TLS ExtensionType registry)
EXT_SERVER_NAME, EXT_GROUPS, EXT_POINT_FORMATS, EXT_HEARTBEAT, EXT_ALPN = 0, 10, 11, 15, 16
EXT_PRE_SHARED_KEY, EXT_SUPPORTED_VERSIONS = 41, 43
# RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

VERSION_NAMES = {0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2",
                 0x0304: "TLSv1.3"}
TLS13 = 0x0304

# IANA TLS Cipher Suites registry (RFC 5246 appendix A.5, RFC 8446 §B.4, RFC 4492, 5288, 5289, 7905, ...): the
# suites seen in practice; others are named by their hex code.
CIPHER_SUITES = {
    0x0000: "TLS_NULL_WITH_NULL_NULL", 0x0001: "TLS_RSA_WITH_NULL_MD5", 0x0002: "TLS_RSA_WITH_NULL_SHA",
    0x0003: "TLS_RSA_EXPORT_WITH_RC4_40_MD5", 0x0004: "TLS_RSA_WITH_RC4_128_MD5", 0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x0006: "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5", 0x0007: "TLS_RSA_WITH_IDEA_CBC_SHA",
    0x0008: "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", 0x0009: "TLS_RSA_WITH_DES_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x0013: "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA",
    0x0015: "TLS_DHE_RSA_WITH_DES_CBC_SHA", 0x0016: "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0018: "TLS_DH_anon_WITH_RC4_128_MD5", 0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0032: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA", 0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0034: "TLS_DH_anon_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x0038: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA", 0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003A: "TLS_DH_anon_WITH_AES_256_CBC_SHA", 0x003B: "TLS_RSA_WITH_NULL_SHA256",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x0040: "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", 0x0041: "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
    0x0045: "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", 0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006A: "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", 0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x0084: "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", 0x0088: "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
    0x008C: "TLS_PSK_WITH_AES_128_CBC_SHA", 0x008D: "TLS_PSK_WITH_AES_256_CBC_SHA",
    0x0096: "TLS_RSA_WITH_SEED_CBC_SHA", 0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384", 0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 0x00A8: "TLS_PSK_WITH_AES_128_GCM_SHA256",
    0x00A9: "TLS_PSK_WITH_AES_256_GCM_SHA384", 0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384", 0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256", 0x1305: "TLS_AES_128_CCM_8_SHA256", 0x5600: "TLS_FALLBACK_SCSV",
    0xC007: "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0xC008: "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC011: "TLS_ECDHE_RSA_WITH_RC4_128_SHA", 0xC012: "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xC035: "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA", 0xC036: "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
    0xC09C: "TLS_RSA_WITH_AES_128_CCM", 0xC09D: "TLS_RSA_WITH_AES_256_CCM",
    0xC0AC: "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", 0xC0AD: "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCAB: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAC: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", 0xD001: "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256",
}

# draft-hickman-netscape-ssl-00 appendix C.4: SSLv2 CIPHER-KINDs (3 bytes)
V2_CIPHER_KINDS = {
    0x010080: "SSL_CK_RC4_128_WITH_MD5", 0x020080: "SSL_CK_RC4_128_EXPORT40_WITH_MD5",
    0x030080: "SSL_CK_RC2_128_CBC_WITH_MD5", 0x040080: "SSL_CK_RC2_128_CBC_EXPORT40_WITH_MD5",
    0x050080: "SSL_CK_IDEA_128_CBC_WITH_MD5", 0x060040: "SSL_CK_DES_64_CBC_WITH_MD5",
    0x0700C0: "SSL_CK_DES_192_EDE3_CBC_WITH_MD5",
}

# RFC 8446 §6 and RFC 5246 §7.2 AlertDescription (names as Zeek's ssl.log last_alert)
ALERTS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed", 22: "record_overflow",
    30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate",
    43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
    47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error", 51: "decrypt_error",
    60: "export_restriction", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension",
    110: "unsupported_extension", 111: "certificate_unobtainable", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 114: "bad_certificate_hash_value", 115: "unknown_psk_identity",
    116: "certificate_required", 120: "no_application_protocol",
}


def version_name(v: int) -> str:
    name = VERSION_NAMES.get(v)
    return name if name is not None else f"0x{v:04x}"  # (the hex form only when needed)


def cipher_name(code: int) -> str:
    name = CIPHER_SUITES.get(code)
    return name if name is not None else f"0x{code:04x}"


def is_grease(v: int) -> bool:
    """RFC 8701 §2: GREASE values are 0x?A?A with both bytes equal (JA3 ignores them)."""
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF


class _Reader(Cursor):
    """Big-endian reads over one message; a length field pointing past its end raises Short."""

    __slots__ = ()

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, len_bytes: int) -> bytes:
        return self.take(self.uint(len_bytes))


BYTESWAP = sys.byteorder == "little"  # array("H") is in host order; the wire is big-endian


def _u16s(data: bytes) -> list[int]:
    """Big-endian 16-bit values (a trailing odd byte is ignored)."""
    values = array("H", data[: len(data) & ~1])
    if BYTESWAP:
        values.byteswap()
    return values.tolist()


def _vector2(data: bytes) -> bytes:
    """The opaque<..2^16-1> vector that starts data (its 2-byte length first); Short if it runs past the end."""
    if len(data) < 2:
        raise Short
    end = 2 + ((data[0] << 8) | data[1])
    if end > len(data):
        raise Short
    return data[2:end]


EXT_HEAD = struct.Struct("!HH")  # extension type, data length


def _extensions_at(body: bytes, off: int, wanted: frozenset[int]) -> tuple[list[int], list[tuple[int, bytes]]]:
    """RFC 8446 §4.2: extensions<8..2^16-1> at body[off:], each type(2) + opaque data<0..2^16-1>; absent in old
    hellos (fewer than 2 bytes left). (every type in order, for JA3; (type, data) of the `wanted` types, in order).
    Index arithmetic rather than a Cursor: this runs for every hello; only the wanted extensions are sliced."""
    n = len(body)
    if n - off < 2:
        return [], []
    end = off + 2 + ((body[off] << 8) | body[off + 1])
    if end > n:
        raise Short
    p = off + 2
    types: list[int] = []
    kept: list[tuple[int, bytes]] = []
    head = EXT_HEAD.unpack_from
    while p < end:
        if p + 4 > end:
            raise Short
        etype, length = head(body, p)
        p += 4 + length  # past its data
        if p > end:
            raise Short
        types.append(etype)
        if etype in wanted:
            kept.append((etype, body[p - length : p]))
    return types, kept


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:MAX_TEXT]


def _alpn(data: bytes) -> list[str]:
    """RFC 7301 §3.1: ProtocolNameList<2..2^16-1> of ProtocolName<1..2^8-1>."""
    names_list = _vector2(data)
    n, p = len(names_list), 0
    names = []
    while p < n and len(names) < MAX_LIST:
        end = p + 1 + names_list[p]
        if end > n:
            raise Short
        names.append(_text(names_list[p + 1 : end]))
        p = end
    return names


def _sni(data: bytes) -> str | None:
    """RFC 6066 §3: ServerNameList of (NameType, HostName); the first host_name (type 0)."""
    server_names = _vector2(data)
    n, p = len(server_names), 0
    while p < n:
        if p + 3 > n:
            raise Short
        kind = server_names[p]
        end = p + 3 + ((server_names[p + 1] << 8) | server_names[p + 2])
        if end > n:
            raise Short
        if kind == 0:
            return _text(server_names[p + 3 : end])
        p = end
    return None


CLIENT_HELLO_EXTS = frozenset((EXT_SERVER_NAME, EXT_GROUPS, EXT_POINT_FORMATS, EXT_ALPN, EXT_HEARTBEAT))
SERVER_HELLO_EXTS = frozenset((EXT_SUPPORTED_VERSIONS, EXT_ALPN, EXT_HEARTBEAT, EXT_PRE_SHARED_KEY))


def parse_client_hello(body: bytes) -> dict:
    """RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2 ClientHello: the fields the event and JA3 need. Raises Short."""
    n = len(body)
    if n < 35:  # version(2) random(32) session id length(1)
        raise Short
    version = (body[0] << 8) | body[1]
    sid_end = 35 + body[34]
    if sid_end + 2 > n:
        raise Short
    suites_end = sid_end + 2 + ((body[sid_end] << 8) | body[sid_end + 1])
    if suites_end >= n:  # the suites run past the end, or no compression methods length follows
        raise Short
    comp_end = suites_end + 1 + body[suites_end]
    if comp_end > n:
        raise Short
    types, exts = _extensions_at(body, comp_end, CLIENT_HELLO_EXTS)
    hello = {"version": version, "session_id": body[35:sid_end], "suites": _u16s(body[sid_end + 2 : suites_end]),
             "exts": types, "groups": [], "point_formats": [], "sni": None, "alpn": None, "heartbeat": False}
    for etype, data in exts:
        if etype == EXT_SERVER_NAME and data:
            hello["sni"] = _sni(data)
        elif etype == EXT_GROUPS:
            hello["groups"] = _u16s(_vector2(data))
        elif etype == EXT_POINT_FORMATS:
            if not data or 1 + data[0] > len(data):
                raise Short
            hello["point_formats"] = list(data[1 : 1 + data[0]])
        elif etype == EXT_ALPN:
            hello["alpn"] = _alpn(data)
        elif etype == EXT_HEARTBEAT:
            hello["heartbeat"] = True
    return hello


def parse_server_hello(body: bytes) -> dict:
    """RFC 8446 §4.1.3 / RFC 5246 §7.4.1.3 ServerHello. `selected` is the negotiated version: the legacy version,
    or the supported_versions extension's when present (RFC 8446 §4.2.1). Raises Short."""
    n = len(body)
    if n < 35:  # version(2) random(32) session id length(1)
        raise Short
    version = (body[0] << 8) | body[1]
    sid_end = 35 + body[34]
    if sid_end + 3 > n:  # the session id, then cipher suite(2) and compression method(1)
        raise Short
    types, exts = _extensions_at(body, sid_end + 3, SERVER_HELLO_EXTS)
    hello = {"version": version, "random": body[2:34], "session_id": body[35:sid_end],
             "suite": (body[sid_end] << 8) | body[sid_end + 1], "exts": types, "selected": version,
             "alpn": None, "heartbeat": False, "psk": False}
    for etype, data in exts:
        if etype == EXT_SUPPORTED_VERSIONS and len(data) >= 2:
            hello["selected"] = (data[0] << 8) | data[1]
        elif etype == EXT_ALPN:
            names = _alpn(data)
            hello["alpn"] = names[0] if names else None
        elif etype == EXT_HEARTBEAT:
            hello["heartbeat"] = True
        elif etype == EXT_PRE_SHARED_KEY:
            hello["psk"] = True
    return hello


GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))  # the 16 values is_grease accepts


def _segment(values: list[int]) -> str:
    return "-".join([str(v) for v in values if v not in GREASE])


def ja3_string(hello: dict) -> str:
    """JA3 (github.com/salesforce/ja3): SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats in
    decimal, '-' within a field, GREASE values left out."""
    return ",".join((str(hello["version"]), _segment(hello["suites"]), _segment(hello["exts"]),
                     _segment(hello["groups"]), _segment(hello["point_formats"])))


def ja3s_string(hello: dict) -> str:
    """JA3S: SSLVersion,Cipher,SSLExtension of the ServerHello."""
    return ",".join((str(hello["version"]), str(hello["suite"]), _segment(hello["exts"])))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


# JA3/JA3S hashes by their inputs: a capture holds many connections of the same few client and server builds.
# Bounded: emptied when full, and hellos offering more than _FINGERPRINT_ITEMS values (hostile ones: real hellos
# offer ~20-80) are hashed each time.
_FINGERPRINTS: dict[tuple, str] = {}
_FINGERPRINTS_MAX = 256
_FINGERPRINT_ITEMS = 256


def _remembered(table: dict, limit: int, key: Any, compute: Callable[[], Any]) -> Any:
    """compute(), once per distinct key while `table` holds it: the table is emptied when it has `limit`
    entries (bounded, without an LRU's bookkeeping)."""
    if key in table:
        return table[key]
    if len(table) >= limit:
        table.clear()
    value = table[key] = compute()
    return value


def _fingerprint(key: tuple, text: Callable[[dict], str], hello: dict) -> str:
    """_md5(text(hello)), computed once per distinct key."""
    return _remembered(_FINGERPRINTS, _FINGERPRINTS_MAX, key, lambda: _md5(text(hello)))


def ja3_hash(hello: dict) -> str:
    """The JA3 of a parsed ClientHello."""
    suites, exts, groups, formats = hello["suites"], hello["exts"], hello["groups"], hello["point_formats"]
    if len(suites) + len(exts) + len(groups) + len(formats) > _FINGERPRINT_ITEMS:
        return _md5(ja3_string(hello))
    return _fingerprint((CLIENT_HELLO, hello["version"], tuple(suites), tuple(exts), tuple(groups), tuple(formats)),
                        ja3_string, hello)


def ja3s_hash(hello: dict) -> str:
    """The JA3S of a parsed ServerHello."""
    if len(hello["exts"]) > _FINGERPRINT_ITEMS:
        return _md5(ja3s_string(hello))
    return _fingerprint((SERVER_HELLO, hello["version"], hello["suite"], tuple(hello["exts"])), ja3s_string, hello)


# certificate_fields by the certificate's bytes: a capture holds many connections to the same few servers, and
# decoding one with `cryptography` costs ~100 us. Bounded as _FINGERPRINTS (_remembered).
_CERTIFICATES: dict[bytes, dict | None] = {}
_CERTIFICATES_MAX = 128
_CERTIFICATE_MAX_BYTES = 16 << 10  # larger ones (rare) are decoded each time: the cache stays under 2 MiB


def certificate_fields(der: bytes) -> dict | None:
    """decode_certificate(der), decoded once per distinct certificate (a copy: the caller owns its dict)."""
    key = bytes(der)  # (no copy of a bytes object)
    if len(key) > _CERTIFICATE_MAX_BYTES:
        fields = decode_certificate(key)
    else:
        fields = _remembered(_CERTIFICATES, _CERTIFICATES_MAX, key, lambda: decode_certificate(key))
    return None if fields is None else dict(fields)


def decode_certificate(der: bytes) -> dict | None:
    """subject, issuer (RFC 4514 strings, as Zeek's ssl.log), serial (hex, as Zeek's x509.log), validity (ISO 8601
    UTC) of one DER X.509 certificate; None when it does not parse."""
    try:
        from cryptography import x509  # lazy: only flows with a cleartext certificate pay for the import

        with warnings.catch_warnings():  # non-positive serials load with a deprecation warning
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            number = cert.serial_number
        serial = f"{abs(number):X}"
        serial = ("-" if number < 0 else "") + serial.zfill(len(serial) + len(serial) % 2)
        return {"subject": cert.subject.rfc4514_string()[:MAX_TEXT], "issuer": cert.issuer.rfc4514_string()[:MAX_TEXT],
                "serial": serial,
                "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%S"),
                "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S")}
    except Exception:  # noqa: BLE001 - any malformed certificate (ValueError, unsupported algorithm, ...)
        return None


def first_certificate(body: bytes) -> bytes | None:
    """RFC 5246 §7.4.2 Certificate: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>; the first (the server's own).
    None when the list is empty; raises Short when the first certificate is not all there."""
    r = _Reader(body)
    if r.uint(3) == 0:
        return None
    return r.vector(3)


class _Side:
    """Record-layer state of one direction."""

    __slots__ = (
        "appdata",
        "buf",
        "ccs",
        "encrypted",
        "hb_len",
        "head",
        "hello_seen",
        "hs",
        "hs_skip",
        "skip",
        "tls_seen",
    )

    def __init__(self) -> None:
        # buf and hs are b"" until bytes must be held, then a bytearray (most records and messages come whole)
        self.buf: bytes | bytearray = b""  # the header, then the payload, of the record being read (<= MAX_RECORD+5)
        self.head: tuple[int, int] | None = None  # (content type or -2 for SSLv2, payload length) being collected
        self.skip = 0  # payload bytes still to pass over unread (application data, encrypted records)
        self.hs: bytes | bytearray = b""  # handshake bytes not yet forming a whole message (<= MAX_HANDSHAKE+record)
        self.hs_skip = 0  # handshake bytes to drop: the tail of a message longer than MAX_HANDSHAKE
        self.encrypted = False  # records from this side are ciphertext from here on
        self.ccs = False
        self.appdata = False
        self.hello_seen = False  # this side's hello was read (the record-version exemption ends)
        self.hb_len = -1  # length of this side's last unanswered encrypted heartbeat record
        self.tls_seen = False  # a TLS (5-byte header) record came from this side: no SSLv2 record after it


V2 = -2  # head kind of an SSLv2 record
_NO_THREATS: frozenset[int] = frozenset()
_NO_CERT = dict.fromkeys(("subject", "issuer", "serial", "not_before", "not_after"))  # (certificate_fields' keys)


class TlsParser(Parser):
    """One event per connection (as Zeek's ssl.log): versions, SNI, ALPN, cipher, JA3/JA3S, the server certificate,
    established/resumed, last alert. Threats 2009-2012 and 2027. Done once both sides send application data (or
    the TLS 1.3 handshake goes encrypted); when a heartbeat was negotiated, record headers are still read after
    that (cheap) to catch Heartbleed on encrypted heartbeats."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.sides = (_Side(), _Side())
        self.where: tuple[int, int] | None = None
        self.client_hello: dict | None = None
        self.server_hello: dict | None = None
        self.v2_client_version: int | None = None
        self.v2_cipher: str | None = None
        self.cert: dict | None = None
        self.cert_seen = False
        self.last_alert: str | None = None
        self.established = False
        self.headers_only = False  # past the handshake, watching heartbeats: record payloads are not read
        self.threats: set[int] | frozenset[int] = _NO_THREATS  # a set of its own once one is raised
        self.emitted = False

    # -- record layer --

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if self.where is None:
            self.where = (frame, ts_ns)
        if type(data) is not bytes:
            data = bytes(data)  # record payloads are sliced from it and kept (hellos)
        st = self.sides[side]
        n, pos = len(data), 0
        while pos < n and not self.done:
            if st.skip:
                k = min(st.skip, n - pos)
                st.skip -= k
                pos += k
                continue
            buf = st.buf
            if st.head is None:  # reading a header: 5 bytes, or 2 for an SSLv2 record (high bit set)
                if not buf:  # fast path: the header starts here; when all of it is in the chunk, no buffering
                    hlen = V2_HEAD if data[pos] & 0x80 else 5
                    if n - pos >= hlen:
                        pos += hlen
                        self._header(side, data[pos - hlen : pos], frame, ts_ns)
                        continue
                hlen = V2_HEAD if (buf[0] if buf else data[pos]) & 0x80 else RECORD.size
                if type(buf) is not bytearray:
                    buf = st.buf = bytearray()
                k = min(hlen - len(buf), n - pos)
                buf += data[pos : pos + k]
                pos += k
                if len(buf) < hlen:
                    break
                head = bytes(buf)
                buf.clear()
                self._header(side, head, frame, ts_ns)
                continue
            kind, length = st.head
            if not buf and n - pos >= length:  # fast path: the whole payload is in the chunk
                pos += length
                st.head = None
                self._record(side, kind, data[pos - length : pos], frame, ts_ns)
                continue
            if type(buf) is not bytearray:
                buf = st.buf = bytearray()
            k = min(length - len(buf), n - pos)
            buf += data[pos : pos + k]
            pos += k
            if len(buf) < length:
                break
            payload = bytes(buf)
            buf.clear()
            st.head = None
            self._record(side, kind, payload, frame, ts_ns)

    def _header(self, side: int, head: bytes, frame: int, ts_ns: int) -> None:
        """A record header: validate it, then either collect the payload (st.head) or pass over it (st.skip)."""
        st = self.sides[side]
        if len(head) == V2_HEAD:
            if st.tls_seen:  # a side that spoke TLS does not go back to SSLv2: the framing is lost
                self._stop("tls-bad-record", f"not a TLS record header: {head.hex()}", frame, ts_ns)
                return
            length = ((head[0] & 0x7F) << 8) | head[1]
            kind = V2
            self._threat(2011, "SSLv2 record", side, frame, ts_ns)
        else:
            kind, version, length = RECORD.unpack(head)
            if kind not in CONTENT_TYPES or version >> 8 != 3:
                self._stop("tls-bad-record", f"not a TLS record header: {head.hex()}", frame, ts_ns)
                return
            if version == 0x0300 and (side == SERVER or st.hello_seen) and not st.encrypted:
                # RFC 5246 appendix E.1: a client may put {03,00} on the records of its first ClientHello
                self._threat(2011, "SSLv3 record", side, frame, ts_ns)
            st.tls_seen = True
        if length > MAX_RECORD:
            self._stop("tls-record-too-long", f"record of {length} bytes (limit {MAX_RECORD})", frame, ts_ns)
            return
        if kind == APPDATA:
            st.appdata = True
            self._progress()
        elif kind == CCS:
            st.ccs = st.encrypted = True
            self._progress()
        elif kind == HEARTBEAT and (st.encrypted or self.headers_only):
            self._encrypted_heartbeat(side, length, frame, ts_ns)
        if self.done:
            return
        readable = kind in (HANDSHAKE, ALERT, HEARTBEAT, V2) and not st.encrypted and not self.headers_only
        if not readable:
            st.skip = length
        elif length == 0:
            self._record(side, kind, b"", frame, ts_ns)
        else:
            st.head = (kind, length)

    def _record(self, side: int, kind: int, payload: bytes, frame: int, ts_ns: int) -> None:
        if kind == HANDSHAKE:
            self._handshake(side, payload, frame, ts_ns)
        elif kind == ALERT:
            if len(payload) >= 2:
                self.last_alert = ALERTS.get(payload[1], str(payload[1]))
        elif kind == HEARTBEAT:
            self._heartbeat(side, payload, frame, ts_ns)
        elif kind == V2:
            self._v2(side, payload, frame, ts_ns)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        """Record framing is lost with the bytes."""
        self.done = True

    # -- handshake --

    def _handshake(self, side: int, payload: bytes, frame: int, ts_ns: int) -> None:
        """Reassemble handshake messages (they may span records, and a record may hold several)."""
        st = self.sides[side]
        if st.hs_skip:
            k = min(st.hs_skip, len(payload))
            st.hs_skip -= k
            payload = payload[k:]
        hs = st.hs
        if not hs and not st.hs_skip:  # fast path: whole messages straight from the record, no reassembly copy
            off, n = 0, len(payload)
            while n - off >= HS_HEAD and not self.done:
                mlen = (payload[off + 1] << 16) | (payload[off + 2] << 8) | payload[off + 3]
                end = off + HS_HEAD + mlen
                if mlen > MAX_HANDSHAKE or end > n:
                    break
                mtype = payload[off]
                body = payload[off + HS_HEAD : end]
                off = end
                self._message(side, mtype, body, True, frame, ts_ns)
            if off:
                payload = payload[off:]
        if payload:
            if type(hs) is not bytearray:
                hs = st.hs = bytearray()
            hs += payload
        while len(hs) >= HS_HEAD and not self.done:
            mtype = hs[0]
            mlen = int.from_bytes(hs[1:4], "big")
            if mlen <= MAX_HANDSHAKE:
                if len(hs) < HS_HEAD + mlen:
                    return
                body = bytes(hs[HS_HEAD : HS_HEAD + mlen])
                del hs[: HS_HEAD + mlen]
                self._message(side, mtype, body, True, frame, ts_ns)
                continue
            if len(hs) < HS_HEAD + MAX_HANDSHAKE:
                return
            body = bytes(hs[HS_HEAD : HS_HEAD + MAX_HANDSHAKE])  # the prefix of a long message
            if len(hs) >= HS_HEAD + mlen:
                del hs[: HS_HEAD + mlen]
            else:
                st.hs_skip = HS_HEAD + mlen - len(hs)
                hs.clear()
            self._message(side, mtype, body, False, frame, ts_ns)

    def _message(self, side: int, mtype: int, body: bytes, whole: bool, frame: int, ts_ns: int) -> None:
        try:
            if side == CLIENT and mtype == CLIENT_HELLO:
                self._client_hello(body, frame, ts_ns)
            elif side == SERVER and mtype == SERVER_HELLO:
                self._server_hello(body, frame, ts_ns)
            elif side == SERVER and mtype == CERTIFICATE and not self.cert_seen:
                self.cert_seen = True
                der = first_certificate(body)
                if der is not None:
                    self.cert = certificate_fields(der)
                    if self.cert is None:
                        self.out.anomaly("tls-bad-certificate", "server certificate is not valid DER X.509",
                                         frame, ts_ns)
        except Short:
            if whole:  # a cut prefix of a long message may just lack its end
                self.out.anomaly("tls-bad-handshake", f"handshake message {mtype} shorter than its fields",
                                 frame, ts_ns)

    def _client_hello(self, body: bytes, frame: int, ts_ns: int) -> None:
        st = self.sides[CLIENT]
        if st.hello_seen:
            return  # a second ClientHello (after a HelloRetryRequest): the first one defines the connection
        st.hello_seen = True
        self.where = (frame, ts_ns)
        hello = parse_client_hello(body)
        # what the event needs, JA3 hashed now: the offered lists are not kept while the handshake goes on
        self.client_hello = {"version": hello["version"], "sni": hello["sni"], "alpn": hello["alpn"],
                             "session_id": hello["session_id"], "ja3": ja3_hash(hello)}
        if self.client_hello["sni"]:  # Suricata's tls.sni buffer, for the rules
            self.out.content("tls.sni", CLIENT, self.client_hello["sni"].encode("utf-8", "replace"), frame, ts_ns)
        if self.client_hello["version"] == 0x0300:
            self._threat(2011, "ClientHello offers SSLv3 at most", CLIENT, frame, ts_ns)

    def _server_hello(self, body: bytes, frame: int, ts_ns: int) -> None:
        hello = parse_server_hello(body)
        self.sides[SERVER].hello_seen = True
        self.server_hello = {"version": hello["version"], "selected": hello["selected"], "suite": hello["suite"],
                             "session_id": hello["session_id"], "alpn": hello["alpn"], "heartbeat": hello["heartbeat"],
                             "psk": hello["psk"], "ja3s": ja3s_hash(hello)}  # (as for the ClientHello)
        if hello["random"] == HRR_RANDOM:
            return  # HelloRetryRequest: the real ServerHello follows
        selected = hello["selected"]
        if selected == 0x0300:
            self._threat(2011, "SSLv3 negotiated", SERVER, frame, ts_ns)
        elif selected == 0x0301:
            self._threat(2012, "TLS 1.0 negotiated", SERVER, frame, ts_ns)
        elif selected == 0x0302:
            self._threat(2027, "TLS 1.1 negotiated", SERVER, frame, ts_ns)
        if self._tls13():
            self.sides[SERVER].encrypted = True  # RFC 8446 §2: everything after the ServerHello is encrypted

    def _tls13(self) -> bool:
        sh = self.server_hello
        return sh is not None and (sh["selected"] == TLS13 or sh["selected"] >> 8 == 0x7F)  # 0x7fXX: 1.3 drafts

    # -- heartbeats (RFC 6520) --

    def _heartbeat(self, side: int, payload: bytes, frame: int, ts_ns: int) -> None:
        """A cleartext heartbeat: a request whose payload_length claims more than the record holds (NeuVector's
        condition) is Heartbleed."""
        if len(payload) >= 3 and payload[0] == HB_REQUEST:
            claimed = int.from_bytes(payload[1:3], "big")
            if claimed - (len(payload) - 3) > HB_OVERREAD:
                self._threat(2009, f"heartbeat request claims {claimed} bytes in a {len(payload)}-byte record",
                             side, frame, ts_ns)

    def _encrypted_heartbeat(self, side: int, length: int, frame: int, ts_ns: int) -> None:
        """An encrypted heartbeat: the payload_length cannot be read, but an answer more than 1024 bytes longer than
        the request it answers is memory leaking out (as Zeek's heartbleed.zeek, with NeuVector's margin)."""
        other = self.sides[1 - side]
        if other.hb_len >= 0:
            if length - other.hb_len > HB_OVERREAD:
                self._threat(2009, f"heartbeat answer of {length} bytes to a {other.hb_len}-byte request", side,
                             frame, ts_ns)
            other.hb_len = -1
        else:
            self.sides[side].hb_len = length

    # -- SSLv2 --

    def _v2(self, side: int, payload: bytes, frame: int, ts_ns: int) -> None:
        if side == CLIENT and payload[:1] == bytes((V2_CLIENT_HELLO,)) and not self.sides[CLIENT].hello_seen:
            self._v2_client_hello(payload, frame, ts_ns)
        elif side == SERVER and payload[:1] == bytes((V2_SERVER_HELLO,)) and not self.sides[SERVER].hello_seen:
            self._v2_server_hello(payload, frame, ts_ns)

    def _v2_client_hello(self, payload: bytes, frame: int, ts_ns: int) -> None:
        """CLIENT-HELLO (draft-hickman §2.7). NeuVector's 2010: the cipher-specs length overflows the record."""
        if len(payload) < V2_CLIENT_HELLO_HEAD.size:
            return
        _, version, specs, sid, chal = V2_CLIENT_HELLO_HEAD.unpack_from(payload)
        self.sides[CLIENT].hello_seen = True
        self.where = (frame, ts_ns)
        self.v2_client_version = version
        if specs > len(payload) - V2_CLIENT_HELLO_HEAD.size - sid - chal:
            self._threat(2010, f"SSLv2 CLIENT-HELLO cipher-specs length {specs} overflows the {len(payload)}-byte "
                         "record", CLIENT, frame, ts_ns)

    def _v2_server_hello(self, payload: bytes, frame: int, ts_ns: int) -> None:
        """SERVER-HELLO (draft-hickman §2.7): the certificate and the cipher kinds; everything after is encrypted."""
        if len(payload) < V2_SERVER_HELLO_HEAD.size:
            return
        _, _, cert_type, version, cert_len, specs_len, _ = V2_SERVER_HELLO_HEAD.unpack_from(payload)
        self.sides[SERVER].hello_seen = True
        self.server_hello = {"version": version, "selected": version, "suite": None, "session_id": b"",
                             "alpn": None, "heartbeat": False, "psk": False, "exts": [], "v2": True}
        off = V2_SERVER_HELLO_HEAD.size
        specs = payload[off + cert_len : off + cert_len + specs_len]
        if len(specs) >= 3:
            kind = int.from_bytes(specs[:3], "big")
            self.v2_cipher = V2_CIPHER_KINDS.get(kind, f"0x{kind:06x}")
        if cert_type == V2_X509 and cert_len and off + cert_len <= len(payload):
            self.cert_seen = True
            self.cert = certificate_fields(payload[off : off + cert_len])
        self.established = True  # the rest is encrypted: nothing more to read
        self._emit()
        self.done = True

    # -- connection state --

    def _progress(self) -> None:
        """After a CCS or application data record: established? done?"""
        c, s = self.sides
        sh = self.server_hello
        tls13 = sh is not None and (sh["selected"] == TLS13 or sh["selected"] >> 8 == 0x7F)  # (_tls13, inline)
        if tls13:
            established = c.appdata and s.appdata
        else:
            established = (c.ccs or c.appdata) and (s.ccs or s.appdata)
        if established and not self.established:
            self.established = True
            self._emit()
        if c.appdata and s.appdata and not self.headers_only:
            if sh is not None and sh["heartbeat"] and not tls13:
                self.headers_only = True
            else:
                self._emit()
                self.done = True

    def _threat(self, threat_id: int, message: str, side: int, frame: int, ts_ns: int) -> None:
        if threat_id not in self.threats:
            if self.threats is _NO_THREATS:
                self.threats = set()
            self.threats.add(threat_id)  # type: ignore[union-attr]
            self.out.threat(threat_id, message, side, frame, ts_ns)

    def _stop(self, reason: str, message: str, frame: int, ts_ns: int) -> None:
        self.out.anomaly(reason, message, frame, ts_ns)
        self._emit()
        self.done = True

    def _emit(self) -> None:
        ch, sh = self.client_hello, self.server_hello
        if self.emitted or (ch is None and sh is None and self.v2_client_version is None):
            return
        self.emitted = True
        client_version = sni = client_alpns = ja3 = None
        if ch is not None:
            client_version, sni, client_alpns, ja3 = version_name(ch["version"]), ch["sni"], ch["alpn"], ch["ja3"]
        elif self.v2_client_version is not None:
            client_version = version_name(self.v2_client_version)
        version = next_protocol = cipher = ja3s = None
        if sh is not None:
            version, next_protocol = version_name(sh["selected"]), sh["alpn"]
            if sh.get("v2"):
                cipher = self.v2_cipher
            else:
                cipher, ja3s = cipher_name(sh["suite"]), sh["ja3s"]
        cert = self.cert if self.cert is not None else _NO_CERT
        fields = {"version": version, "client_version": client_version, "sni": sni, "client_alpns": client_alpns,
                  "next_protocol": next_protocol, "cipher": cipher, "ja3": ja3, "ja3s": ja3s,
                  "subject": cert["subject"], "issuer": cert["issuer"], "serial": cert["serial"],
                  "not_before": cert["not_before"], "not_after": cert["not_after"],
                  "established": self.established, "resumed": self._resumed(), "last_alert": self.last_alert}
        self.out.event(fields, *(self.where or (0, 0)))

    def _resumed(self) -> bool:
        """TLS <= 1.2: the server echoed the client's session id (RFC 5246 §7.4.1.3); 1.3: it accepted a PSK."""
        ch, sh = self.client_hello, self.server_hello
        if ch is None or sh is None or sh.get("v2"):
            return False
        if self._tls13():
            return sh["psk"]
        return bool(sh["session_id"]) and sh["session_id"] == ch["session_id"]

    def finish(self) -> None:
        if not self.emitted:
            self._emit()


SPEC = ProtocolSpec(
    name="ssl",
    transports=("tcp",),
    ports=(443, 465, 636, 853, 993, 995, 8443),
    probe=probe,
    description="TLS/SSL: ClientHello/ServerHello, SSLv2 hello, or valid TLS records from both sides",
    parser=TlsParser,
    extracts="version, client_version, sni, client_alpns, next_protocol (ALPN), cipher, ja3, ja3s, server certificate "
             "subject/issuer/serial/validity, established, resumed, last_alert",
)
