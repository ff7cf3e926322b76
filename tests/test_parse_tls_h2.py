"""TLS/SSL, HTTP/2 and gRPC parsers: hand-built bytes per RFC 5246/8446/6520 (TLS), draft-hickman (SSLv2),
RFC 9113/7541 (HTTP/2, HPACK) and gRPC's PROTOCOL-HTTP2.md; real captures checked against tshark 4.0."""
from __future__ import annotations

import datetime
import gzip
import hashlib
import random
import shutil
import struct
import subprocess

import hpack
import pytest
from conftest import SHARED, run
from parsertest import Recorder, drive

from nvpcap.protocols import http2 as h2mod
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.grpc import GrpcParser
from nvpcap.protocols.http2 import PREFACE, Http2Parser, grpc_path
from nvpcap.protocols.ssl import ALERTS, CIPHER_SUITES, V2_CIPHER_KINDS, TlsParser, is_grease

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def feed_all(parser_cls, steps, split=0, port=443):
    """As parsertest.drive, but keeps the parser to look at `done` (finish() is called at the end)."""
    rec = Recorder()
    parser = parser_cls(rec, FlowContext("tcp", 40000, port, False))
    for i, (side, data) in enumerate(steps):
        pieces = [data[j:j + split] for j in range(0, len(data), split)] if split and data else [data]
        for piece in pieces:
            if not parser.done:
                parser.feed(side, piece, i + 1, i)
    done = parser.done
    parser.finish()
    return rec, done


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# TLS builders (RFC 5246 §6.2, §7.4; RFC 8446 §4, §5.1)
# ---------------------------------------------------------------------------------------------------------------

def u8(n): return struct.pack("!B", n)
def u16(n): return struct.pack("!H", n)
def u24(n): return struct.pack("!I", n)[1:]
def vec8(b): return u8(len(b)) + b
def vec16(b): return u16(len(b)) + b
def vec24(b): return u24(len(b)) + b


def record(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    """TLSPlaintext: type(1) legacy_record_version(2) length(2) fragment."""
    return u8(ctype) + u16(version) + u16(len(payload)) + payload


def handshake(mtype: int, body: bytes) -> bytes:
    """Handshake: msg_type(1) length(3) body."""
    return u8(mtype) + vec24(body)


def ext(etype: int, data: bytes) -> bytes:
    return u16(etype) + vec16(data)


def ext_sni(name: str) -> bytes:  # RFC 6066 §3
    return ext(0, vec16(u8(0) + vec16(name.encode())))


def ext_alpn(names: list[str]) -> bytes:  # RFC 7301 §3.1
    return ext(16, vec16(b"".join(vec8(n.encode()) for n in names)))


def ext_groups(groups: list[int]) -> bytes:  # RFC 8422 §5.1.1 / RFC 8446 §4.2.7
    return ext(10, vec16(b"".join(u16(g) for g in groups)))


def ext_point_formats(formats: list[int]) -> bytes:  # RFC 8422 §5.1.2
    return ext(11, vec8(bytes(formats)))


EXT_HEARTBEAT = ext(15, u8(1))  # RFC 6520 §2: HeartbeatMode peer_allowed_to_send


def client_hello(suites: list[int], exts: list[bytes] | None, version: int = 0x0303, sid: bytes = b"") -> bytes:
    body = u16(version) + bytes(range(32)) + vec8(sid) + vec16(b"".join(u16(s) for s in suites)) + vec8(b"\x00")
    if exts is not None:
        body += vec16(b"".join(exts))
    return handshake(1, body)


def server_hello(suite: int, exts: list[bytes] | None, version: int = 0x0303, sid: bytes = b"",
                 rand: bytes = b"\x42" * 32) -> bytes:
    body = u16(version) + rand + vec8(sid) + u16(suite) + u8(0)
    if exts is not None:
        body += vec16(b"".join(exts))
    return handshake(2, body)


def certificate_msg(certs: list[bytes]) -> bytes:  # RFC 5246 §7.4.2
    return handshake(11, vec24(b"".join(vec24(c) for c in certs)))


def make_cert() -> bytes:
    """A self-signed certificate with known fields (the expectations below are these fields written per RFC 4514)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Ltd"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "test.example")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Acme CA")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(0x0ABCDEF123).not_valid_before(datetime.datetime(2024, 1, 2, 3, 4, 5))
            .not_valid_after(datetime.datetime(2025, 6, 7, 8, 9, 10)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


CERT = make_cert()
CERT_FIELDS = {"subject": "CN=test.example,O=Acme Ltd,C=DE", "issuer": "CN=Acme CA", "serial": "0ABCDEF123",
               "not_before": "2024-01-02T03:04:05", "not_after": "2025-06-07T08:09:10"}
GREASE = 0x3A3A
CH_SUITES = [GREASE, 0x1301, 0xC02F, 0x009C]
CH_EXTS = [ext(GREASE, b""), ext_sni("test.example"), ext_groups([GREASE, 29, 23]), ext_point_formats([0]),
           ext_alpn(["h2", "http/1.1"])]
# JA3 of that hello by the spec: version 771, ciphers / extensions / groups without GREASE, point formats
CH_JA3 = "771,4865-49199-156,0-10-11-16,29-23,0"


def tls12_flow(server_exts=None, cert=CERT, sid=b"") -> list[tuple[int, bytes]]:
    """A full TLS 1.2 handshake then one application data record each way (RFC 5246 §7.3 figure 1)."""
    sh_exts = [ext(0xFF01, b"\x00"), ext_alpn(["h2"])] + (server_exts or [])
    return [
        (CLIENT, record(22, client_hello(CH_SUITES, CH_EXTS, sid=sid), version=0x0301)),
        (SERVER, record(22, server_hello(0xC02F, sh_exts, sid=sid) + certificate_msg([cert, b"\x30\x03\x02\x01\x01"])
                        + handshake(14, b""))),
        (CLIENT, record(22, handshake(16, vec8(b"\x04" * 65))) + record(20, b"\x01") + record(22, b"\xee" * 40)),
        (SERVER, record(20, b"\x01") + record(22, b"\xdd" * 40)),
        (CLIENT, record(23, b"\xaa" * 100)),
        (SERVER, record(23, b"\xbb" * 200)),
    ]


def test_tls12_handshake_from_spec_bytes():
    for split in (0, 1, 7):
        rec, done = feed_all(TlsParser, tls12_flow(), split=split)
        assert done and rec.anomalies == [] and rec.threats == []
        assert rec.frames == [1]
        assert rec.events == [{
            "version": "TLSv1.2", "client_version": "TLSv1.2", "sni": "test.example", "client_alpns": ["h2", "http/1.1"],
            "next_protocol": "h2", "cipher": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ja3": md5(CH_JA3),
            "ja3s": md5("771,49199,65281-16"), **CERT_FIELDS, "established": True, "resumed": False,
            "last_alert": None}]


def test_tls12_resumed_session_and_alert():
    sid = bytes(range(1, 33))
    steps = [(CLIENT, record(22, client_hello([0xC02F], [], sid=sid))),
             (SERVER, record(22, server_hello(0xC02F, [], sid=sid)) + record(20, b"\x01") + record(22, b"\x00" * 40)),
             (CLIENT, record(20, b"\x01") + record(22, b"\x00" * 40))]
    rec = drive(TlsParser, steps)
    assert rec.events[0]["resumed"] is True and rec.events[0]["established"] is True
    assert rec.events[0]["ja3"] == md5("771,49199,,,")  # an empty extensions block: empty JA3 fields
    # a fatal handshake_failure (40) before any CCS: not established, last_alert named as RFC 5246 §7.2
    rec = drive(TlsParser, [(CLIENT, record(22, client_hello([0x0035], None))), (SERVER, record(21, b"\x02\x28"))])
    assert rec.events[0]["last_alert"] == "handshake_failure" and rec.events[0]["established"] is False
    assert rec.events[0]["version"] is None and rec.events[0]["ja3"] == md5("771,53,,,")


def test_tls13_is_done_after_the_encrypted_flight():
    ch = client_hello([GREASE, 0x1301, 0x1302], [ext_sni("a.example"), ext(43, vec8(u16(GREASE) + u16(0x0304)
                                                                                    + u16(0x0303)))])
    sh = server_hello(0x1301, [ext(43, u16(0x0304)), ext(51, u16(29) + vec16(b"\x01" * 32))])
    steps = [(CLIENT, record(22, ch, version=0x0301)),
             (SERVER, record(22, sh) + record(20, b"\x01") + record(23, b"\x17" * 50)),  # EE/cert/CV/Fin, encrypted
             (CLIENT, record(20, b"\x01") + record(23, b"\x17" * 53)),
             (SERVER, record(23, b"\x99" * 500))]
    rec, done = feed_all(TlsParser, steps[:3])
    assert done  # RFC 8446 §2: nothing after this is readable
    e = rec.events[0]
    assert (e["version"], e["client_version"], e["cipher"]) == ("TLSv1.3", "TLSv1.2", "TLS_AES_128_GCM_SHA256")
    assert e["ja3s"] == md5("771,4865,43-51") and e["established"] is True and e["subject"] is None
    assert e["ja3"] == md5("771,4865-4866,0-43,,")
    assert rec.threats == []


def test_hello_retry_request_then_server_hello():
    hrr_random = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")  # RFC 8446 §4.1.3
    ch = client_hello([0x1301, 0x1302], [ext(43, vec8(u16(0x0304)))])
    steps = [(CLIENT, record(22, ch)),
             (SERVER, record(22, server_hello(0x1302, [ext(43, u16(0x0304))], rand=hrr_random)) + record(20, b"\x01")),
             (CLIENT, record(20, b"\x01") + record(22, ch)),  # the second ClientHello is still in clear
             (SERVER, record(22, server_hello(0x1302, [ext(43, u16(0x0304))])) + record(23, b"\x00" * 30)),
             (CLIENT, record(23, b"\x00" * 30))]
    rec, done = feed_all(TlsParser, steps)
    assert done and rec.events[0]["version"] == "TLSv1.3" and rec.events[0]["cipher"] == "TLS_AES_256_GCM_SHA384"


@pytest.mark.parametrize("version,threat", [(0x0301, 2012), (0x0302, 2027), (0x0300, 2011)])
def test_old_versions_negotiated(version, threat):
    steps = [(CLIENT, record(22, client_hello([0x002F], None, version=version), version=0x0300)),
             (SERVER, record(22, server_hello(0x002F, None, version=version), version=version))]
    rec = drive(TlsParser, steps)
    assert threat in {t for t, _ in rec.threats}  # (a ClientHello offering SSLv3 at most already fires 2011)
    assert len(rec.threats) == len({t for t, _ in rec.threats})  # each threat once per connection
    assert rec.events[0]["version"] == {0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0300: "SSLv3"}[version]


def test_client_record_version_0300_alone_is_not_sslv3():
    # RFC 5246 appendix E.1: {03,00} on the ClientHello record is a compatibility choice, not SSLv3
    steps = [(CLIENT, record(22, client_hello([0xC02F], []), version=0x0300)),
             (SERVER, record(22, server_hello(0xC02F, [])))]
    assert drive(TlsParser, steps).threats == []


def heartbeat(payload_length: int, payload: bytes, padding: int = 16) -> bytes:
    """RFC 6520 §4 HeartbeatMessage: type heartbeat_request(1), payload_length, payload, >= 16 bytes padding."""
    return record(24, u8(1) + u16(payload_length) + payload + b"\x00" * padding, version=0x0302)


def test_heartbleed_cleartext_request():
    start = tls12_flow(server_exts=[EXT_HEARTBEAT])[:2]
    # the classic exploit: payload_length 0x4000 in a 3-byte record (16384 - 0 > 1024)
    rec = drive(TlsParser, start + [(CLIENT, record(24, b"\x01\x40\x00", version=0x0302))])
    assert rec.threats == [(2009, CLIENT)]
    # 1024 bytes over the record is NeuVector's limit, not yet Heartbleed; 1025 is
    ok = drive(TlsParser, start + [(CLIENT, heartbeat(1024 + 16, b"", padding=16))])
    assert ok.threats == []
    bad = drive(TlsParser, start + [(CLIENT, heartbeat(1025 + 16, b"", padding=16))])
    assert bad.threats == [(2009, CLIENT)]
    assert drive(TlsParser, start + [(CLIENT, heartbeat(5, b"hello"))]).threats == []  # an honest heartbeat


def test_heartbleed_after_application_data_when_heartbeat_negotiated():
    flow = tls12_flow(server_exts=[EXT_HEARTBEAT])
    rec, done = feed_all(TlsParser, flow + [(CLIENT, record(24, b"\x13" * 40)), (SERVER, record(24, b"\x14" * 40))])
    assert not done and rec.threats == []  # still reading record headers; same-size answer: no leak
    leak = flow + [(CLIENT, record(24, b"\x13" * 40)), (SERVER, record(24, b"\x14" * 16408))]
    rec, _ = feed_all(TlsParser, leak, split=100)
    assert rec.threats == [(2009, SERVER)]
    assert len(rec.events) == 1
    # no heartbeat extension from the server: done at the first application data both ways
    _, done = feed_all(TlsParser, tls12_flow())
    assert done


def sslv2_client_hello(version: int, specs: bytes, sid: bytes, challenge: bytes, specs_len: int | None = None) -> bytes:
    """draft-hickman §2.6/2.7: 2-byte header (high bit, length), CLIENT-HELLO msg 1, version, lengths, data."""
    body = u8(1) + u16(version) + u16(len(specs) if specs_len is None else specs_len) + u16(len(sid)) \
        + u16(len(challenge)) + specs + sid + challenge
    return u16(0x8000 | len(body)) + body


def test_sslv2_client_hello_and_cipher_overflow():
    specs = bytes.fromhex("010080" "0700c0" "000035")
    good = sslv2_client_hello(0x0002, specs, b"", b"\x11" * 16)
    rec = drive(TlsParser, [(CLIENT, good)])
    assert rec.threats == [(2011, CLIENT)] and rec.events[0]["client_version"] == "SSLv2"
    # cipher_len 0x0900 > rec_len - 9 - sid_len - chal_len = 34 - 9 - 0 - 16 = 9
    bad = sslv2_client_hello(0x0002, specs, b"", b"\x11" * 16, specs_len=0x0900)
    assert sorted(drive(TlsParser, [(CLIENT, bad)], split=1).threats) == [(2010, CLIENT), (2011, CLIENT)]


def test_sslv2_compatible_hello_then_tls_server_hello():
    hello = sslv2_client_hello(0x0301, bytes.fromhex("000035" "00002f"), b"", b"\x22" * 32)
    rec = drive(TlsParser, [(CLIENT, hello), (SERVER, record(22, server_hello(0x0035, None, version=0x0301),
                                                             version=0x0301))])
    e = rec.events[0]
    assert (e["client_version"], e["version"], e["cipher"]) == ("TLSv1.0", "TLSv1.0", "TLS_RSA_WITH_AES_256_CBC_SHA")
    assert sorted(rec.threats) == [(2011, CLIENT), (2012, SERVER)]


def test_sslv2_server_hello_with_certificate():
    specs = bytes.fromhex("010080")
    body = u8(4) + u8(0) + u8(1) + u16(0x0002) + u16(len(CERT)) + u16(len(specs)) + u16(16) + CERT + specs + b"\x01" * 16
    server = u16(0x8000 | len(body)) + body
    rec, done = feed_all(TlsParser, [(CLIENT, sslv2_client_hello(2, specs, b"", b"\x11" * 16)), (SERVER, server)])
    e = rec.events[0]
    assert done and e["version"] == "SSLv2" and e["cipher"] == "SSL_CK_RC4_128_WITH_MD5"
    assert e["subject"] == CERT_FIELDS["subject"] and e["serial"] == CERT_FIELDS["serial"]


def test_record_limits_and_garbage():
    rec, done = feed_all(TlsParser, [(CLIENT, u8(23) + u16(0x0303) + u16(16384 + 2048 + 1))])
    assert done and rec.anomalies == ["tls-record-too-long"] and rec.events == []
    rec, done = feed_all(TlsParser, [(CLIENT, tls12_flow()[0][1]), (SERVER, b"HTTP/1.1 400 Bad Request\r\n")])
    assert done and rec.anomalies == ["tls-bad-record"] and rec.events[0]["sni"] == "test.example"
    # a high-bit byte where a record starts, on a side that already spoke TLS: lost framing, not SSLv2
    rec, done = feed_all(TlsParser, [(CLIENT, tls12_flow()[0][1] + b"\x80\x20" + b"\x01" * 32)])
    assert done and rec.anomalies == ["tls-bad-record"] and rec.threats == []


def test_truncated_and_malformed_certificates():
    ch = (CLIENT, record(22, client_hello([0xC02F], [])))
    sh = record(22, server_hello(0xC02F, []))
    # the first certificate's length claims more than its message holds
    lying = handshake(11, vec24(u24(5000) + CERT[:100]))
    rec = drive(TlsParser, [ch, (SERVER, sh + record(22, lying))])
    assert rec.anomalies == ["tls-bad-handshake"] and rec.events[0]["subject"] is None
    # well framed, but not DER
    rec = drive(TlsParser, [ch, (SERVER, sh + record(22, certificate_msg([b"\x30\x82\xff\xff" + b"\x00" * 60])))])
    assert rec.anomalies == ["tls-bad-certificate"] and rec.events[0]["issuer"] is None
    # the capture ends inside the Certificate message: no anomaly, the event still comes out at finish
    cut = (sh + record(22, certificate_msg([CERT])))[:-30]
    rec = drive(TlsParser, [ch, (SERVER, cut)])
    assert rec.anomalies == [] and rec.events[0]["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert rec.events[0]["subject"] is None


def test_certificate_chain_longer_than_the_kept_prefix_spans_records():
    chain = certificate_msg([CERT] + [b"\x30" + b"\x77" * 29999] * 3)  # ~91 KB: more than MAX_HANDSHAKE
    records = b"".join(record(22, chain[i:i + 16384]) for i in range(0, len(chain), 16384))
    flow = tls12_flow()
    steps = [flow[0], (SERVER, record(22, server_hello(0xC02F, [])) + records + record(22, handshake(14, b"")))] \
        + flow[2:]
    rec, done = feed_all(TlsParser, steps, split=1400)
    assert done and rec.anomalies == [] and rec.events[0]["subject"] == CERT_FIELDS["subject"]
    assert rec.events[0]["established"] is True


def test_gap_stops():
    parser = TlsParser(Recorder(), FlowContext("tcp", 1, 443, False))
    parser.gap(SERVER, 100, 1, 0)
    assert parser.done


def test_grease_values():
    # RFC 8701 §2: 0x0A0A, 0x1A1A, ..., 0xFAFA
    assert [v for v in range(0x10000) if is_grease(v)] == [0x0A0A + 0x1010 * i for i in range(16)]


def test_tls_hostile_bytes_never_raise():
    rnd = random.Random(11)
    base = tls12_flow(server_exts=[EXT_HEARTBEAT])
    whole = [(s, d) for s, d in base]
    for _ in range(400):
        steps = []
        for side, data in whole:
            data = bytearray(data)
            for _ in range(rnd.randint(0, 6)):
                if data:
                    data[rnd.randrange(len(data))] = rnd.randrange(256)
            steps.append((side, bytes(data[: rnd.randint(0, len(data))] if rnd.random() < 0.2 else data)))
        drive(TlsParser, steps, split=rnd.choice((0, 1, 5, 333)))
    for _ in range(200):
        drive(TlsParser, [(rnd.randint(0, 1), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 300))))
                          for _ in range(rnd.randint(1, 5))], split=rnd.choice((0, 1, 3)))
        # plausible headers with random bodies
        body = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 200)))
        drive(TlsParser, [(CLIENT, record(22, handshake(1, body))), (SERVER, record(22, handshake(rnd.choice((2, 11)),
                                                                                                  body)))])
        drive(TlsParser, [(CLIENT, u16(0x8000 | len(body)) + body), (SERVER, u16(0x8000 | len(body)) + u8(4) + body)])


def test_tls_every_truncation_of_the_handshake():
    flow = tls12_flow(server_exts=[EXT_HEARTBEAT])
    stream = [(side, bytes([b])) for side, data in flow for b in data]
    for cut in range(0, len(stream), 7):
        drive(TlsParser, _merge(stream[:cut]))


def _merge(steps):
    out = []
    for side, data in steps:
        if out and out[-1][0] == side:
            out[-1] = (side, out[-1][1] + data)
        else:
            out.append((side, data))
    return out


# ---- tables checked against tshark's own (tshark -G values) ----

def _tshark_values(field: str) -> dict[int, str]:
    text = subprocess.run([TSHARK, "-G", "values"], capture_output=True, text=True, check=True).stdout
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "V" and parts[1] == field:
            out[int(parts[2])] = parts[3]
    return out


@needs_tshark
def test_name_tables_match_tshark():
    suites = _tshark_values("tls.handshake.ciphersuite")
    assert {c: suites.get(c) for c in CIPHER_SUITES} == CIPHER_SUITES
    # tshark titles the RFC names ("Handshake Failure" for handshake_failure)
    alerts = _tshark_values("tls.alert_message.desc")
    assert {c: alerts[c].lower().replace(" ", "_") for c in ALERTS} == ALERTS
    # SSLv2 cipher kinds: tshark spells SSL_CK_ as SSL2_
    specs = _tshark_values("tls.handshake.cipherspec")
    assert {c: specs[c] for c in V2_CIPHER_KINDS} == {c: n.replace("SSL_CK_", "SSL2_") for c, n in V2_CIPHER_KINDS.items()}


# ---- real captures ----

def test_real_capture_safari_matches_tshark(shared_pcaps):
    # tshark -r ssl__ndpi__443-safari.pcap -Y tls.handshake.type==1 -T fields -e tls.handshake.extensions_server_name
    #   -e tls.handshake.ja3 -e tls.handshake.extensions_alpn_str
    #   -> frame 4: www.ntop.org a69708a64f853c3bcc214c2c5faf84f3 h2,h2-16,h2-15,h2-14,spdy/3.1,spdy/3,http/1.1
    # tshark ... -Y tls.handshake.type==2 -e tls.handshake.ciphersuite -e tls.handshake.ja3s
    #   -e tls.handshake.extensions_alpn_str -> 0xcca8 f9fcb52580329fb6a9b61d7542087b90 h2
    # tshark ... -Y tls.handshake.type==11 -V -O x509af: first certificate serialNumber 0x03c56f6636eda72f7f4c5665fa055d933255,
    #   issuer CN=Let's Encrypt Authority X3,O=Let's Encrypt,C=US, subject CN=www.ntop.org,
    #   validity utcTime 2019-12-17 01:17:28 .. 2020-03-16 01:17:28; records type 20 both ways, then 23
    events = run(SHARED / "ssl__ndpi__443-safari.pcap").app_events("ssl")
    assert len(events) == 1 and events[0]["frame"] == 4
    assert events[0]["ssl"] == {
        "version": "TLSv1.2", "client_version": "TLSv1.2", "sni": "www.ntop.org",
        "client_alpns": ["h2", "h2-16", "h2-15", "h2-14", "spdy/3.1", "spdy/3", "http/1.1"], "next_protocol": "h2",
        "cipher": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ja3": "a69708a64f853c3bcc214c2c5faf84f3",
        "ja3s": "f9fcb52580329fb6a9b61d7542087b90", "subject": "CN=www.ntop.org",
        "issuer": "CN=Let's Encrypt Authority X3,O=Let's Encrypt,C=US", "serial": "03C56F6636EDA72F7F4C5665FA055D933255",
        "not_before": "2019-12-17T01:17:28", "not_after": "2020-03-16T01:17:28", "established": True,
        "resumed": False, "last_alert": None}


def test_real_capture_long_certificate_chain(shared_pcaps):
    # tshark -r ssl__ndpi__tls_long_cert.pcap: the Certificate message (3962 bytes) is in frame 9, its record
    #   spread over frames 6-9; -Y tls.handshake.type==1 -e tls.handshake.extensions_server_name -e tls.handshake.ja3
    #   -> www.repubblica.it 66918128f1b9b03303d77c6f2eefd128; type==2 -> 0xc030 35af4c8cd9495354f7d701ce8ad7fd2d
    #   -V -O x509af: serialNumber 0x07ac6d74693e98b1a1f69ac34d5bf1dc, subject
    #   C=IT,ST=Roma,L=Roma,O=GEDI Digital S.r.l.,CN=www.repstatic.it, issuer C=US,O=DigiCert Inc,
    #   OU=www.digicert.com,CN=GeoTrust RSA CA 2018, utcTime 2019-03-07 00:00:00 .. 2020-05-05 12:00:00
    e = run(SHARED / "ssl__ndpi__tls_long_cert.pcap").app_events("ssl")[0]["ssl"]
    assert (e["sni"], e["ja3"], e["ja3s"]) == ("www.repubblica.it", "66918128f1b9b03303d77c6f2eefd128",
                                               "35af4c8cd9495354f7d701ce8ad7fd2d")
    assert e["cipher"] == "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" and e["next_protocol"] == "h2"
    assert e["subject"] == "CN=www.repstatic.it,O=GEDI Digital S.r.l.,L=Roma,ST=Roma,C=IT"
    assert e["issuer"] == "CN=GeoTrust RSA CA 2018,OU=www.digicert.com,O=DigiCert Inc,C=US"
    assert e["serial"] == "07AC6D74693E98B1A1F69AC34D5BF1DC"
    assert (e["not_before"], e["not_after"]) == ("2019-03-07T00:00:00", "2020-05-05T12:00:00")


@needs_tshark
def test_real_captures_sni_ja3_ja3s_live_tshark(shared_pcaps):
    """Every TLS connection of the captures with TLS in them, against tshark run now."""
    for name in ("ssl__ndpi__443-safari.pcap", "ssl__ndpi__tls_long_cert.pcap", "ipv6__ndpi__http_ipv6.pcap"):
        path = SHARED / name
        hello = subprocess.run([TSHARK, "-r", str(path), "-Y", "tls.handshake.type==1", "-T", "fields",
                                "-e", "tcp.srcport", "-e", "tls.handshake.extensions_server_name",
                                "-e", "tls.handshake.ja3"], capture_output=True, text=True, check=True).stdout
        shello = subprocess.run([TSHARK, "-r", str(path), "-Y", "tls.handshake.type==2", "-T", "fields",
                                 "-e", "tcp.dstport", "-e", "tls.handshake.ja3s"], capture_output=True, text=True,
                                check=True).stdout
        expected = {int(p): [s or None, j] for p, s, j in (line.split("\t") for line in hello.splitlines())}
        for line in shello.splitlines():
            port, ja3s = line.split("\t")
            expected[int(port)].append(ja3s)
        got = {e["src_port"]: [e["ssl"]["sni"], e["ssl"]["ja3"], e["ssl"]["ja3s"]]
               for e in run(path).app_events("ssl")}
        assert got == expected, name


def _tshark_steps(path, port: int) -> list[tuple[int, bytes]]:
    """(side, TCP payload) of each data packet, in capture order (tshark -T fields -e tcp.srcport -e tcp.payload)."""
    out = subprocess.run([TSHARK, "-r", str(path), "-Y", "tcp.len>0", "-T", "fields", "-e", "tcp.srcport",
                          "-e", "tcp.payload"], capture_output=True, text=True, check=True).stdout
    return [(SERVER if int(p) == port else CLIENT, bytes.fromhex(h)) for p, h in (l.split("\t") for l in out.splitlines())]


@needs_tshark
def test_real_handshakes_cut_at_every_length(shared_pcaps):
    steps = _tshark_steps(SHARED / "ssl__ndpi__443-safari.pcap", 443)[:6]  # hellos, certificate, CCS both ways
    stream = [(side, data[i:i + 1]) for side, data in steps for i in range(len(data))]
    full = drive(TlsParser, _merge(stream)).events
    assert full[0]["subject"] == "CN=www.ntop.org"
    for cut in range(len(stream)):
        drive(TlsParser, _merge(stream[:cut]))


# ---------------------------------------------------------------------------------------------------------------
# HTTP/2 builders (RFC 9113 §4.1)
# ---------------------------------------------------------------------------------------------------------------

F_DATA, F_HEADERS, F_PRIORITY, F_RST, F_SETTINGS, F_PUSH, F_PING, F_GOAWAY, F_WINDOW, F_CONT = range(10)
END_STREAM, END_HEADERS, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20


def h2frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack("!I", len(payload))[1:] + u8(ftype) + u8(flags) + struct.pack("!I", sid) + payload


def settings(*pairs: tuple[int, int]) -> bytes:
    return h2frame(F_SETTINGS, 0, 0, b"".join(struct.pack("!HI", k, v) for k, v in pairs))


CLIENT_START = PREFACE + settings((3, 100))
SERVER_START = settings((4, 65535)) + h2frame(F_SETTINGS, 1, 0, b"")

# RFC 7541 appendix C.3 (requests without Huffman coding, one encoder context) and C.6.1 (a response, Huffman)
RFC_C31 = bytes.fromhex("828684410f7777772e6578616d706c652e636f6d")
RFC_C32 = bytes.fromhex("828684be58086e6f2d6361636865")
RFC_C61 = bytes.fromhex("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3")


def test_http2_streams_with_rfc7541_header_blocks():
    steps = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_STREAM | END_HEADERS, 1, RFC_C31)),
             (SERVER, SERVER_START + h2frame(F_HEADERS, END_HEADERS, 1, RFC_C61)
              + h2frame(F_DATA, END_STREAM, 1, b"moved")),
             # stream 3: C.3.2 refers to the dynamic table entry C.3.1 added (index 62 = :authority www.example.com)
             (CLIENT, h2frame(F_HEADERS, END_STREAM | END_HEADERS, 3, RFC_C32))]
    for split in (0, 1, 10):
        rec = drive(Http2Parser, steps, split=split)
        assert rec.anomalies == []
        assert rec.events[0] == {"stream_id": 1, "method": "GET", "scheme": "http", "authority": "www.example.com",
                                 "path": "/", "status": 302, "content_type": None, "user_agent": None,
                                 "request_body_len": 0, "response_body_len": 5, "reset": None}
        assert rec.events[1]["authority"] == "www.example.com" and rec.events[1]["status"] is None  # at finish
        assert rec.frames == [1, 3]
        assert b"location: https://www.example.com\r\n" in rec.joined("header", SERVER)
        assert b"cache-control: no-cache\r\n" in rec.joined("header", CLIENT)
        assert rec.joined("body", SERVER) == b"moved"


def test_http2_continuation_padding_priority_and_push():
    enc = hpack.Encoder()
    block = enc.encode([(":method", "POST"), (":scheme", "https"), (":authority", "api.example"), (":path", "/up%20load"),
                        ("user-agent", "curl/8.5"), ("content-type", "text/plain")])
    padded = u8(3) + struct.pack("!IB", 0, 15) + block[:10] + b"\x00" * 3  # Pad Length, priority (§6.2), padding
    server_enc = hpack.Encoder()
    resp = server_enc.encode([(":status", "200"), ("content-type", "application/json")])
    push = server_enc.encode([(":method", "GET"), (":scheme", "https"), (":authority", "api.example"),
                              (":path", "/style.css")])
    push_resp = server_enc.encode([(":status", "200")])
    steps = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, PADDED | PRIO, 1, padded) + h2frame(F_CONT, 0, 1, block[10:20])
              + h2frame(F_CONT, END_HEADERS, 1, block[20:])
              + h2frame(F_DATA, PADDED, 1, u8(4) + b"abc" + b"\x00" * 4) + h2frame(F_DATA, END_STREAM, 1, b"def")),
             (SERVER, SERVER_START + h2frame(F_PUSH, END_HEADERS, 1, struct.pack("!I", 2) + push)
              + h2frame(F_HEADERS, END_HEADERS, 1, resp) + h2frame(F_DATA, END_STREAM, 1, b"{}")
              + h2frame(F_HEADERS, END_HEADERS, 2, push_resp) + h2frame(F_DATA, END_STREAM, 2, b"body{}"))]
    for split in (0, 1):
        rec = drive(Http2Parser, steps, split=split)
        assert rec.anomalies == []
        first, pushed = sorted(rec.events, key=lambda e: e["stream_id"])
        assert first == {"stream_id": 1, "method": "POST", "scheme": "https", "authority": "api.example",
                         "path": "/up%20load", "status": 200, "content_type": "application/json",
                         "user_agent": "curl/8.5", "request_body_len": 6, "response_body_len": 2, "reset": None}
        assert (pushed["path"], pushed["status"], pushed["response_body_len"]) == ("/style.css", 200, 6)
        assert rec.joined("body", CLIENT) == b"abcdef"  # padding stripped
        assert rec.joined("url", CLIENT) == b"/up load"


def test_http2_rst_stream_and_interim_response():
    enc, senc = hpack.Encoder(), hpack.Encoder()
    steps = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_HEADERS, 1, enc.encode([(":method", "PUT"), (":path", "/x"),
                                                                                   (":scheme", "http")]))),
             (SERVER, SERVER_START + h2frame(F_HEADERS, END_HEADERS, 1, senc.encode([(":status", "100")]))
              + h2frame(F_HEADERS, END_HEADERS, 1, senc.encode([(":status", "403")]))
              + h2frame(F_RST, 0, 1, struct.pack("!I", 8)))]
    rec = drive(Http2Parser, steps, finish=False)
    assert rec.events == [{"stream_id": 1, "method": "PUT", "scheme": "http", "authority": None, "path": "/x",
                           "status": 403, "content_type": None, "user_agent": None, "request_body_len": 0,
                           "response_body_len": 0, "reset": "CANCEL"}]
    # frames in flight on the reset stream (RFC 9113 §5.1 "closed"): no second event for stream 1
    late = steps + [(SERVER, h2frame(F_HEADERS, END_HEADERS | END_STREAM, 1, senc.encode([("grpc-status", "1")])))]
    assert len(drive(Http2Parser, late).events) == 1


def test_http2_header_table_size_follows_settings():
    # RFC 7541 §6.3: a table size update must not exceed SETTINGS_HEADER_TABLE_SIZE of the decoding side
    enc = hpack.Encoder()
    enc.header_table_size = 16384  # emits a size update to 16384 at the start of the next block
    block = enc.encode([(":method", "GET"), (":path", "/"), (":scheme", "http")])
    allowed = [(SERVER, settings((1, 16384))),
               (CLIENT, CLIENT_START + h2frame(F_HEADERS, END_STREAM | END_HEADERS, 1, block))]
    assert drive(Http2Parser, allowed).anomalies == []
    rec, done = feed_all(Http2Parser, allowed[1:])  # the server never allowed more than the 4096 default
    assert done and rec.anomalies == ["http2-hpack-error"]


def test_http2_errors():
    rec, done = feed_all(Http2Parser, [(CLIENT, b"GET / HTTP/1.1\r\n\r\n")])
    assert done and rec.anomalies == ["http2-bad-preface"]
    rec, done = feed_all(Http2Parser, [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_HEADERS, 1, b"\xff\xff\xff\x7f"))])
    assert done and rec.anomalies == ["http2-hpack-error"]
    rec, done = feed_all(Http2Parser, [(CLIENT, CLIENT_START + h2frame(F_HEADERS, 0, 1, RFC_C31)
                                        + h2frame(F_DATA, 0, 1, b"x"))])
    assert done and rec.anomalies == ["http2-expected-continuation"]
    huge = CLIENT_START + struct.pack("!I", 70000)[1:] + u8(F_HEADERS) + u8(END_HEADERS) + struct.pack("!I", 1)
    rec, done = feed_all(Http2Parser, [(CLIENT, huge)])
    assert done and rec.anomalies == ["http2-header-block-too-long"]
    # a big frame of another type is skipped unread, and frames after it still parse
    big = h2frame(F_GOAWAY, 0, 0, b"\x00" * 8 + b"d" * 40000)
    rec = drive(Http2Parser, [(SERVER, SERVER_START + big + h2frame(F_HEADERS, END_STREAM | END_HEADERS, 1, RFC_C61))])
    assert rec.anomalies == [] and rec.events[0]["status"] == 302


def test_http2_stream_cap(monkeypatch):
    monkeypatch.setattr(h2mod, "MAX_STREAMS", 3)
    enc = hpack.Encoder()
    frames = b"".join(h2frame(F_HEADERS, END_STREAM | END_HEADERS, sid, enc.encode([(":method", "GET"),
                                                                                   (":path", f"/{sid}")]))
                      for sid in (1, 3, 5, 7, 9))
    rec = drive(Http2Parser, [(CLIENT, CLIENT_START + frames)])
    assert [e["path"] for e in rec.events] == ["/1", "/3", "/5"]
    assert rec.anomalies == ["http2-too-many-streams"]
    assert rec.joined("header").count(b":path: /") == 5  # later blocks still decoded: the HPACK table stays right


def grpc_message(payload: bytes, compressed: bool = False) -> bytes:
    """PROTOCOL-HTTP2.md Length-Prefixed-Message: Compressed-Flag(1) Message-Length(4, big endian) Message."""
    return u8(1 if compressed else 0) + struct.pack("!I", len(payload)) + payload


def test_grpc_call_messages_and_trailers():
    enc, senc = hpack.Encoder(), hpack.Encoder()
    req = enc.encode([(":method", "POST"), (":scheme", "http"), (":path", "/helloworld.Greeter/SayHello"),
                      (":authority", "svc:50051"), ("content-type", "application/grpc+proto"), ("te", "trailers"),
                      ("grpc-encoding", "gzip"), ("user-agent", "grpc-python/1.60")])
    zipped = gzip.compress(b"\x0a\x03zip")  # grpc-encoding gzip: each compressed message one gzip stream
    body = grpc_message(b"\x0a\x05world") + grpc_message(zipped, compressed=True) + grpc_message(b"3rd")
    steps = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_HEADERS, 1, req) + h2frame(F_DATA, 0, 1, body[:7])
              + h2frame(F_DATA, END_STREAM, 1, body[7:])),
             (SERVER, SERVER_START + h2frame(F_HEADERS, END_HEADERS, 1, senc.encode([(":status", "200"),
                                                                                   ("content-type", "application/grpc")]))
              + h2frame(F_DATA, 0, 1, grpc_message(b"\x0a\x0bHello world"))
              + h2frame(F_HEADERS, END_STREAM | END_HEADERS, 1, senc.encode([("grpc-status", "5"),
                                                                             ("grpc-message", "not%20found%3A%20x")])))]
    for split in (0, 1, 4):
        rec = drive(GrpcParser, steps, split=split, server_port=50051)
        assert rec.anomalies == []
        assert rec.events == [{
            "stream_id": 1, "method": "POST", "scheme": "http", "authority": "svc:50051",
            "path": "/helloworld.Greeter/SayHello", "status": 200, "content_type": "application/grpc",
            "user_agent": "grpc-python/1.60", "request_body_len": len(body), "response_body_len": 18, "reset": None,
            "grpc_service": "helloworld.Greeter", "grpc_method": "SayHello", "grpc_status": 5,
            "grpc_message": "not found: x", "grpc_compressed": True}]
        assert rec.joined("body", CLIENT) == b"\x0a\x05world" + b"\x0a\x03zip" + b"3rd"  # prefixes stripped, unzipped
        assert rec.joined("body", SERVER) == b"\x0a\x0bHello world"
    # a compressed message that is not what grpc-encoding says: left out, reported; snappy (not undone): left out
    for coding, anomalies in (("gzip", ["http2-decompression-error"]), ("snappy", [])):
        req2 = hpack.Encoder().encode([(":method", "POST"), (":path", "/a.B/C"), ("content-type", "application/grpc"),
                                       ("grpc-encoding", coding)])
        bad = grpc_message(b"\x1f\x8b\x08zipped", compressed=True) + grpc_message(b"next")
        rec = drive(GrpcParser, [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_HEADERS, 1, req2)
                                  + h2frame(F_DATA, END_STREAM, 1, bad))], server_port=50051)
        assert rec.anomalies == anomalies and rec.joined("body", CLIENT) == b"next"


def test_grpc_trailers_only_response():
    enc, senc = hpack.Encoder(), hpack.Encoder()
    steps = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_HEADERS | END_STREAM, 1, enc.encode(
                [(":method", "POST"), (":path", "/pkg.Svc/Get"), ("content-type", "application/grpc")]))),
             (SERVER, SERVER_START + h2frame(F_HEADERS, END_HEADERS | END_STREAM, 1, senc.encode(
                 [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12")])))]
    e = drive(GrpcParser, steps).events[0]
    assert (e["grpc_service"], e["grpc_method"], e["grpc_status"], e["grpc_message"]) == ("pkg.Svc", "Get", 12, None)


def test_grpc_path_split():
    assert grpc_path("/a.b.Svc/M") == ("a.b.Svc", "M")
    assert grpc_path("/noslash") == (None, None) and grpc_path(None) == (None, None)


def test_http2_hostile_bytes_never_raise():
    rnd = random.Random(5)
    enc = hpack.Encoder()
    good = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_HEADERS, 1, enc.encode([(":method", "POST"), (":path", "/a.B/c"),
                                                                                 ("content-type", "application/grpc")]))
             + h2frame(F_DATA, END_STREAM, 1, grpc_message(b"xyz"))),
            (SERVER, SERVER_START + h2frame(F_HEADERS, END_HEADERS | END_STREAM, 1, RFC_C61))]
    for _ in range(400):
        steps = []
        for side, data in good:
            data = bytearray(data)
            for _ in range(rnd.randint(0, 5)):
                pos = rnd.randrange(len(PREFACE), len(data)) if side == CLIENT else rnd.randrange(len(data))
                data[pos] = rnd.randrange(256)
            steps.append((side, bytes(data)))
        drive(GrpcParser, steps, split=rnd.choice((0, 1, 9)))
    for _ in range(300):
        frames = b"".join(h2frame(rnd.randrange(12), rnd.randrange(256), rnd.randrange(4),
                                  bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40))))
                          for _ in range(rnd.randint(1, 6)))
        drive(Http2Parser, [(CLIENT, PREFACE + frames), (SERVER, frames)], split=rnd.choice((0, 1, 5)))
    drive(Http2Parser, [(CLIENT, PREFACE + b"\xff" * 9 + b"\x00" * 100)])  # a 16 MiB frame announced


@needs_tshark
def test_http2_real_captures_cut_at_every_length(shared_pcaps):
    for name, port in (("grpc__packt__Unary_filtered.pcap", 50051), ("grpc__ndpi__http2.pcap", 29518)):
        steps = _tshark_steps(SHARED / name, port)
        stream = [(side, data[i:i + 1]) for side, data in steps for i in range(len(data))]
        assert len(drive(GrpcParser, _merge(stream)).events) == 1
        for cut in range(len(stream)):
            drive(GrpcParser, _merge(stream[:cut]))


def test_grpc_real_capture_matches_tshark(shared_pcaps):
    # tshark -r grpc__packt__Unary_filtered.pcap -d tcp.port==50051,http2 -Y http2 -T fields -e http2.streamid
    #   -e http2.type -e http2.header.name -e http2.header.value:
    #   frame 13 stream 1 HEADERS :method POST :scheme http :path /greet.GreetService/Greet :authority localhost:50051
    #   content-type application/grpc user-agent grpc-go/1.50.1 te trailers authorization aDummyToken;
    #   frame 15 DATA 14 bytes; frame 19 HEADERS :status 200 content-type application/grpc, DATA 20, HEADERS
    #   grpc-status 0 grpc-message "" (END_STREAM)
    # tshark ... -Y grpc -e grpc.message_length -e http2.data.data: 9 bytes 0a07436c656d656e74, 15 bytes
    #   0a0d48656c6c6f20436c656d656e74
    res = run(SHARED / "grpc__packt__Unary_filtered.pcap")
    events = res.app_events("grpc")
    assert len(events) == 1 and events[0]["frame"] == 13
    assert events[0]["grpc"] == {
        "stream_id": 1, "method": "POST", "scheme": "http", "authority": "localhost:50051",
        "path": "/greet.GreetService/Greet", "status": 200, "content_type": "application/grpc",
        "user_agent": "grpc-go/1.50.1", "request_body_len": 14, "response_body_len": 20, "reset": None,
        "grpc_service": "greet.GreetService", "grpc_method": "Greet", "grpc_status": 0, "grpc_message": "",
        "grpc_compressed": False}
    rec = drive(GrpcParser, _capture_steps(res, "grpc__packt__Unary_filtered.pcap", 50051), server_port=50051)
    assert rec.joined("body", CLIENT) == bytes.fromhex("0a07436c656d656e74")
    assert rec.joined("body", SERVER) == bytes.fromhex("0a0d48656c6c6f20436c656d656e74")
    assert b"authorization: aDummyToken\r\n" in rec.joined("header", CLIENT)


def _capture_steps(res, name, port):
    if TSHARK is None:
        pytest.skip("tshark is not installed")
    return _tshark_steps(SHARED / name, port)


def test_http2_real_capture_matches_tshark(shared_pcaps):
    # tshark -r grpc__ndpi__http2.pcap -d tcp.port==29518,http2 -Y http2 -T fields -e http2.streamid -e http2.type
    #   -e http2.length -e http2.header.name -e http2.header.value: frame 2 stream 3 HEADERS :authority 127.0.0.1:29518
    #   :method POST :path /namf-comm/v1/subscriptions :scheme http content-type application/json ... user-agent
    #   OpenAPI-Generator/1.0.0/go; frame 3 DATA 135 (END_STREAM); frame 7 HEADERS :status 201 content-type
    #   application/json ...; frame 8 DATA 86 (END_STREAM)
    events = run(SHARED / "grpc__ndpi__http2.pcap").app_events("http2")
    assert len(events) == 1 and events[0]["frame"] == 2
    assert events[0]["http2"] == {
        "stream_id": 3, "method": "POST", "scheme": "http", "authority": "127.0.0.1:29518",
        "path": "/namf-comm/v1/subscriptions", "status": 201, "content_type": "application/json",
        "user_agent": "OpenAPI-Generator/1.0.0/go", "request_body_len": 135, "response_body_len": 86, "reset": None}


def test_grpc_project_sample_matches_tshark():
    # tshark -r samples/pcaps/apps/etcd_grpc.pcap -d tcp.port==2379,http2 -Y "http2.type==1 || http2.type==0"
    #   -T fields -e tcp.stream -e http2.type -e http2.length -e http2.header.value: three connections, one call each:
    #   /etcdserverpb.KV/Put DATA 45 -> DATA 32, /etcdserverpb.KV/Range 17 -> 82, /etcdserverpb.KV/DeleteRange 20 -> 34,
    #   all answered 200 application/grpc with trailers grpc-status 0 and an empty grpc-message; user-agent grpc-go/1.33.3
    from conftest import ROOT

    events = [e["grpc"] for e in run(ROOT / "samples" / "pcaps" / "apps" / "etcd_grpc.pcap").app_events("grpc")]
    assert [(e["grpc_method"], e["request_body_len"], e["response_body_len"]) for e in events] == [
        ("Put", 45, 32), ("Range", 17, 82), ("DeleteRange", 20, 34)]
    assert {(e["grpc_service"], e["grpc_status"], e["grpc_message"], e["status"], e["user_agent"]) for e in events} == {
        ("etcdserverpb.KV", 0, "", 200, "grpc-go/1.33.3")}


def test_http2_request_bodies_get_the_view_of_their_content_type():
    """As HTTP/1 (protocols/httpforms.py): form and JSON fields go to the rules as one "form" unit when the
    request's stream ends (or at finish), an XML body also as the "xml" stream, other bodies neither."""
    def post(sid: int, enc, ctype: str, body: bytes, end: bool = True) -> bytes:
        block = enc.encode([(":method", "POST"), (":scheme", "https"), (":authority", "api.example"),
                            (":path", "/x"), ("content-type", ctype)])
        half = len(body) // 2
        return (h2frame(F_HEADERS, END_HEADERS, sid, block) + h2frame(F_DATA, 0, sid, body[:half])
                + h2frame(F_DATA, END_STREAM if end else 0, sid, body[half:]))

    enc = hpack.Encoder()
    steps = [(CLIENT, CLIENT_START + post(1, enc, "application/x-www-form-urlencoded", b"q=a%26b&page=2")
              + post(3, enc, "application/json", b'{"q": "x y"}') + post(5, enc, "text/xml", b"<a>1</a>")
              + post(7, enc, "text/plain", b"q=1") + post(9, enc, "application/json", b'{"cut": "sh', end=False))]
    for split in (0, 1, 7):
        rec = drive(Http2Parser, steps, split=split)
        assert [d for c, s, d in rec.contents if c == "form"] == [
            b"q=a%26b&page=2", b"json.q=x%20y", b"json=%7B%22cut%22%3A%20%22sh"]
        assert rec.joined("xml", CLIENT) == b"<a>1</a>"
        assert rec.joined("body", CLIENT) == b'q=a%26b&page=2{"q": "x y"}<a>1</a>q=1{"cut": "sh'


def test_http2_bodies_with_a_content_encoding_are_decoded_for_the_rules():
    """RFC 9113 §8.1 keeps HTTP's content codings: a gzip or br body reaches the rules (and a request body its
    view) decoded, as in HTTP/1 (protocols/httpbody.py). Before, such a body was not passed on at all: a card
    number in a gzip-compressed JSON response over HTTP/2 went unseen by DLP."""
    import gzip

    import brotli

    secret = b'{"card": "4111 1111 1111 1111", "name": "x"}'
    form = b"q=1%20union%20select%202&page=2"
    enc, senc = hpack.Encoder(), hpack.Encoder()
    req = enc.encode([(":method", "POST"), (":scheme", "https"), (":authority", "api.example"), (":path", "/x"),
                      ("content-type", "application/x-www-form-urlencoded"), ("content-encoding", "gzip")])
    zipped = gzip.compress(form)
    resp = senc.encode([(":status", "200"), ("content-type", "application/json"), ("content-encoding", "br")])
    packed = brotli.compress(secret)
    bad = senc.encode([(":status", "200"), ("content-encoding", "gzip")])
    steps = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_HEADERS, 1, req) + h2frame(F_DATA, 0, 1, zipped[:9])
              + h2frame(F_DATA, END_STREAM, 1, zipped[9:])
              + h2frame(F_HEADERS, END_HEADERS | END_STREAM, 3, enc.encode([(":method", "GET"), (":path", "/y")]))),
             (SERVER, SERVER_START + h2frame(F_HEADERS, END_HEADERS, 1, resp) + h2frame(F_DATA, 0, 1, packed[:5])
              + h2frame(F_DATA, END_STREAM, 1, packed[5:])
              + h2frame(F_HEADERS, END_HEADERS, 3, bad) + h2frame(F_DATA, END_STREAM, 3, b"not gzip at all"))]
    for split in (0, 1, 7):
        rec = drive(Http2Parser, steps, split=split)
        assert rec.joined("body", CLIENT) == form
        assert rec.joined("body", SERVER) == secret  # the corrupt gzip body passes nothing on
        assert [d for c, s, d in rec.contents if c == "form"] == [form]
        assert rec.anomalies == ["http2-decompression-error"]


def test_non_ascii_digits_in_status_fields_are_no_status():
    """str.isdigit() holds for "²" but int() refuses it: a hostile :status or grpc-status must leave the field
    empty, not stop the parser and lose the stream's event."""
    enc, senc = hpack.Encoder(), hpack.Encoder()
    request = enc.encode([(":method", "POST"), (":scheme", "http"), (":path", "/a.B/C"),
                          ("content-type", "application/grpc")])
    response = senc.encode([(":status", "²²²"), ("content-type", "application/grpc")])
    trailers = senc.encode([("grpc-status", "²")])
    steps = [(CLIENT, CLIENT_START + h2frame(F_HEADERS, END_STREAM | END_HEADERS, 1, request)),
             (SERVER, SERVER_START + h2frame(F_HEADERS, END_HEADERS, 1, response)
              + h2frame(F_HEADERS, END_STREAM | END_HEADERS, 1, trailers))]
    rec = drive(Http2Parser, steps)
    assert rec.anomalies == []
    assert len(rec.events) == 1 and rec.events[0]["status"] is None
