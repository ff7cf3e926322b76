"""TLS on long connections: application data after the handshake is passed over by the record headers alone,
and certificates are decoded once per distinct certificate (certificate_fields' cache), with the same fields as
decoding each time (decode_certificate, the oracle)."""
from __future__ import annotations

import datetime
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from parsertest import drive
from test_parse_tls_h2 import (
    CERT,
    CERT_FIELDS,
    CH_EXTS,
    CH_SUITES,
    EXT_HEARTBEAT,
    certificate_msg,
    client_hello,
    ext,
    handshake,
    record,
    server_hello,
    vec8,
)

from nvpcap.protocols import ssl
from nvpcap.protocols.base import CLIENT, SERVER
from nvpcap.protocols.ssl import TlsParser, certificate_fields, decode_certificate


def make_cert(serial: int, name: str) -> bytes:
    """A self-signed certificate; certificates of one key differ only in serial and name (a long common prefix)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = _KEY.setdefault("key", ec.generate_private_key(ec.SECP256R1()))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(serial).not_valid_before(datetime.datetime(2024, 1, 1))
            .not_valid_after(datetime.datetime(2026, 1, 1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


_KEY: dict = {}
CERTS = [make_cert(1000 + i, f"host{i}.example") for i in range(4)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(CERTS)), st.integers(0, 2000), st.integers(0, 255)), max_size=10))
def test_cached_fields_equal_decoding_each_time(picks: list[tuple[int, int, int]]) -> None:
    """Certificates, repeated, and now and then with a byte changed (which may or may not still parse)."""
    for which, at, value in picks:
        der = (CERTS + [CERT])[which]
        if value % 3 == 0:
            der = der[: at % len(der)] + bytes([value]) + der[at % len(der) + 1 :]
        expected = decode_certificate(der)
        assert certificate_fields(der) == expected
        assert certificate_fields(bytearray(der)) == expected  # the second time from the cache, any bytes type


def test_cache_hands_out_copies_and_stays_bounded() -> None:
    first = certificate_fields(CERT)
    assert first == CERT_FIELDS
    first["subject"] = "changed by a caller"
    assert certificate_fields(CERT) == CERT_FIELDS
    for i in range(ssl._CERTIFICATES_MAX + 5):
        certificate_fields(CERT + bytes([i % 256, i // 256]))  # trailing bytes: does not parse, still cached
    assert len(ssl._CERTIFICATES) <= ssl._CERTIFICATES_MAX


def _handshake(cert: bytes, heartbeat: bool) -> list[tuple[int, bytes]]:
    extra = [EXT_HEARTBEAT] if heartbeat else []
    return [(CLIENT, record(22, client_hello(CH_SUITES, CH_EXTS + extra), version=0x0301)),
            (SERVER, record(22, server_hello(0xC02F, [ext(0xFF01, b"\x00")] + extra) + certificate_msg([cert])
                            + handshake(14, b""))),
            (CLIENT, record(22, handshake(16, vec8(b"\x04" * 65))) + record(20, b"\x01") + record(22, b"\xee" * 40)),
            (SERVER, record(20, b"\x01") + record(22, b"\xdd" * 40))]


def test_many_connections_to_a_few_servers_report_each_certificate() -> None:
    rng = random.Random(5)
    for _ in range(40):
        cert = rng.choice(CERTS)
        rec = drive(TlsParser, _handshake(cert, False) + [(CLIENT, record(23, b"q" * 50)),
                                                          (SERVER, record(23, b"r" * 50))])
        assert len(rec.events) == 1 and rec.events[0]["subject"] == decode_certificate(cert)["subject"]
        assert rec.events[0]["serial"] == decode_certificate(cert)["serial"]


def test_a_megabyte_of_application_data_after_a_heartbeat_handshake() -> None:
    """With a heartbeat negotiated the parser keeps reading record headers (Heartbleed on encrypted heartbeats);
    the payloads are passed over by count, in TCP-sized pieces and byte by byte."""
    bulk = b"".join(record(23, bytes([i % 251]) * 16384) for i in range(64))
    for split, data in ((1448, bulk), (1, bulk[:40000])):
        rec = drive(TlsParser, _handshake(CERT, True) + [(CLIENT, record(23, b"q" * 100)), (SERVER, data)],
                    split=split)
        assert len(rec.events) == 1 and rec.events[0]["established"] and rec.anomalies == [] and rec.threats == []
