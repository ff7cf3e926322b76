"""HTTP/1.x, RTSP and SIP parsers: transactions, body framing and decoding, NeuVector threats 2013/2014/2015/2023,
server products; built from bytes written per RFC 9112 / 9110 / 2326 / 3261 here, and checked against tshark's
decoding of the real captures under ../shared/pcaps."""
from __future__ import annotations

import gzip
import random
import shutil
import subprocess
import zlib

import brotli
import pytest
import zstandard

from conftest import SHARED, run
from parsertest import Recorder, drive
from nvpcap.protocols.applayer import _Output
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.http import MAX_FIELDS, MAX_HEAD, Head, HttpParser, chunk_size, host_name
from nvpcap.protocols.httpbody import MAX_DECODED, BodyDecoder, parse_codings
from nvpcap.protocols.rtsp import RtspParser
from nvpcap.protocols.sip import SipParser

SEC = 1_000_000_000


def chunked(body: bytes, size: int = 7, trailer: bytes = b"") -> bytes:
    """RFC 9112 §7.1: chunk-size (hex) CRLF data CRLF ..., last-chunk `0` CRLF, trailer fields, CRLF."""
    out = b"".join(b"%x;ext=1\r\n" % len(body[i:i + size]) + body[i:i + size] + b"\r\n"
                   for i in range(0, len(body), size))
    return out + b"0\r\n" + trailer + b"\r\n"


def response(status: bytes = b"200 OK", headers: bytes = b"", body: bytes = b"", length: bool = True) -> bytes:
    cl = b"Content-Length: %d\r\n" % len(body) if length else b""
    return b"HTTP/1.1 " + status + b"\r\n" + headers + cl + b"\r\n" + body


def feed_timed(parser_cls, steps, midstream: bool = False, transport: str = "tcp") -> Recorder:
    """Like parsertest.drive, but each step is (side, bytes, ts_ns) or (side, "gap", missing), and the flow may
    be mid-stream."""
    rec = Recorder()
    p = parser_cls(rec, FlowContext(transport, 40000, 80, midstream))
    for i, (side, data, extra) in enumerate(steps):
        if p.done:
            break
        if data == "gap":
            p.gap(side, extra, i + 1, 0)
        else:
            p.feed(side, data, i + 1, extra)
    p.finish()
    return rec


# ---- HTTP: transactions ----

PIPELINED = [
    (CLIENT, b"GET /index.html?q=%41b HTTP/1.1\r\nHost: www.example.com:8080\r\nUser-Agent: curl/8.5\r\n"
             b"Referer: http://r.example/\r\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n\r\n"
             b"HEAD /h HTTP/1.1\r\nHost: [2001:db8::1]:81\r\n\r\n"
             b"POST /form HTTP/1.1\r\nHost: a.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"
             b"Content-Length: 11\r\n\r\nname=value1"),
    (SERVER, response(b"200 OK", b"Server: nginx/1.25.3\r\nContent-Type: text/html\r\n", b"<html>hi</html>")
             + response(b"200 OK", b"Content-Type: text/plain\r\nContent-Length: 5000\r\n", length=False)  # HEAD
             + b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"created-resource-xyz")),
]


@pytest.mark.parametrize("split", [0, 1, 5])
def test_pipelined_requests_pair_in_order(split):
    rec = drive(HttpParser, PIPELINED, split=split)
    assert [(e["method"], e["uri"], e["status"]) for e in rec.events] == [
        ("GET", "/index.html?q=%41b", 200), ("HEAD", "/h", 200), ("POST", "/form", 201)]
    get, head, post = rec.events
    assert get["host"] == "www.example.com" and head["host"] == "[2001:db8::1]"  # port stripped (RFC 9110 §7.2)
    assert get["uri_decoded"] == "/index.html?q=Ab" and "uri_decoded" not in head
    assert (get["user_agent"], get["referrer"], get["xff"]) == ("curl/8.5", "http://r.example/",
                                                                "203.0.113.7, 10.0.0.1")
    assert (get["server"], get["response_content_type"], get["response_body_len"]) == ("nginx/1.25.3", "text/html",
                                                                                         15)
    assert head["response_body_len"] == 0  # a HEAD response has no body whatever its Content-Length (§6.3)
    assert (post["request_content_type"], post["request_body_len"]) == ("application/x-www-form-urlencoded", 11)
    assert post["response_body_len"] == len(b"created-resource-xyz")  # de-chunked
    assert (get["version"], get["status_msg"]) == ("1.1", "OK")
    assert rec.products == ["nginx"]
    assert rec.joined("url") == b"/index.html?q=Ab/h/form"  # percent-decoded targets for the rules
    assert rec.joined("body", CLIENT) == b"name=value1"
    assert rec.joined("body", SERVER) == b"<html>hi</html>created-resource-xyz"
    assert b"User-Agent: curl/8.5\r\n" in rec.joined("header", CLIENT)
    assert rec.anomalies == [] and rec.threats == []


def test_every_two_piece_cut_gives_the_same_events():
    whole = drive(HttpParser, PIPELINED).events
    client, server = PIPELINED[0][1], PIPELINED[1][1]
    for cut in range(1, len(server), 3):
        steps = [(CLIENT, client), (SERVER, server[:cut]), (SERVER, server[cut:])]
        assert drive(HttpParser, steps).events == whole


def test_unanswered_request_is_reported_at_finish():
    rec = drive(HttpParser, [(CLIENT, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
                             (SERVER, response(body=b"ok"))])
    assert [(e["uri"], e["status"]) for e in rec.events] == [("/a", 200), ("/b", None)]
    assert rec.frames == [1, 1]  # both start in the client's first packet


def test_interim_and_bodiless_responses():
    steps = [(CLIENT, b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
             (SERVER, b"HTTP/1.1 100 Continue\r\n\r\n"), (CLIENT, b"abc"),
             (SERVER, b"HTTP/1.1 204 No Content\r\n\r\n"),
             (CLIENT, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"),
             (SERVER, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"),
             (CLIENT, b"GET /d HTTP/1.0\r\n\r\n"),
             (SERVER, b"HTTP/1.0 200 OK\r\n\r\nuntil the connection closes")]
    rec = drive(HttpParser, steps, split=2)
    assert [(e["uri"], e["status"], e["request_body_len"], e["response_body_len"]) for e in rec.events] == [
        ("/up", 204, 3, 0), ("/c", 304, 0, 0), ("/d", 200, 0, len(b"until the connection closes"))]
    assert rec.events[2]["version"] == "1.0"


def test_connect_and_upgrade_stop_parsing():
    rec = Recorder()
    p = HttpParser(rec, FlowContext("tcp", 40000, 3128, False))
    p.feed(CLIENT, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 1, 0)
    p.feed(SERVER, b"HTTP/1.1 200 Connection established\r\n\r\n", 2, 0)
    assert p.done and rec.events[0]["method"] == "CONNECT" and rec.events[0]["status"] == 200
    rec = Recorder()
    p = HttpParser(rec, FlowContext("tcp", 40000, 80, False))
    p.feed(CLIENT, b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 1, 0)
    p.feed(SERVER, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", 2, 0)
    assert p.done and [e["status"] for e in rec.events] == [101]


def test_response_without_request_and_absolute_form_host():
    rec = drive(HttpParser, [(SERVER, response(body=b"x")),
                             (CLIENT, b"GET http://proxy.example:3128/p HTTP/1.1\r\n\r\n")])
    assert rec.events[0]["method"] is None and rec.events[0]["status"] == 200
    assert rec.events[1]["host"] == "proxy.example"  # RFC 9112 §3.2.2 absolute-form, no Host header
    assert host_name(b"example.com:8080") == "example.com" and host_name(b"[::1]:80") == "[::1]"


# ---- HTTP: body decoding ----

SSN = b"customer 078-05-1120 on file"


def test_chunked_gzip_response_reaches_the_rules_decoded():
    body = gzip.compress(b"<p>" + SSN + b"</p>" * 50)
    steps = [(CLIENT, b"GET /r HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"),
             (SERVER, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + chunked(body, size=10, trailer=b"X-Checksum: 1\r\n"))]
    for split in (0, 1, 3):
        rec = drive(HttpParser, steps, split=split)
        assert SSN in rec.joined("body", SERVER)
        assert b"078-05-1120" not in body  # only decoding reveals it
        assert rec.events[0]["response_body_len"] == len(body)  # transfer-decoded (de-chunked) length
        assert rec.anomalies == []


@pytest.mark.parametrize("coding,encode", [
    ("br", brotli.compress),
    ("deflate", zlib.compress),  # RFC 9110 §8.4.1.2: the zlib format
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some servers send it
    ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),  # codings listed in the order applied
    ("x-gzip", lambda b: gzip.compress(b[:10]) + gzip.compress(b[10:])),  # two gzip members
    ("zstd", lambda b: zstandard.ZstdCompressor().compress(b)),  # RFC 8878
    ("zstd", lambda b: b"".join(zstandard.ZstdCompressor().compress(b[i:i + 100]) for i in range(0, len(b), 100))),
    ("gzip, zstd", lambda b: zstandard.ZstdCompressor(level=19).compress(gzip.compress(b))),
])
def test_content_codings(coding, encode):
    plain = SSN * 40
    steps = [(CLIENT, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
             (SERVER, response(headers=b"Content-Encoding: " + coding.encode() + b"\r\n", body=encode(plain)))]
    rec = drive(HttpParser, steps, split=3)
    assert rec.joined("body", SERVER) == plain and rec.anomalies == []


def test_request_body_decoded_too():
    rec = drive(HttpParser, [(CLIENT, b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: "
                              + str(len(gzip.compress(SSN))).encode() + b"\r\n\r\n" + gzip.compress(SSN))])
    assert rec.joined("body", CLIENT) == SSN


def test_gzip_bomb_stops_at_the_cap_and_framing_survives():
    bomb = gzip.compress(b"\0" * (50 << 20), 9)  # 50 MiB of zeros in ~50 KiB
    steps = [(CLIENT, b"GET /bomb HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"),
             (SERVER, response(headers=b"Content-Encoding: gzip\r\n", body=bomb) + response(body=b"after"))]
    rec = drive(HttpParser, steps)
    decoded = rec.joined("body", SERVER)
    assert len(decoded) == MAX_DECODED + len(b"after") and decoded.endswith(b"after")
    assert max(len(d) for c, _, d in rec.contents if c == "body") <= 1 << 20  # handed out in bounded pieces
    assert rec.anomalies == ["http-decompression-cap"]
    assert [(e["uri"], e["response_body_len"]) for e in rec.events] == [("/bomb", len(bomb)), ("/next", 5)]


def test_brotli_bomb_is_capped_too():
    dec = BodyDecoder.for_header("br", cap=1 << 20)
    bomb = brotli.compress(b"A" * (16 << 20), quality=4)
    out = [p for i in range(0, len(bomb), 100) for p in dec.feed(bomb[i:i + 100])]
    assert sum(map(len, out)) == 1 << 20 and dec.status == "capped"


def test_zstd_bomb_is_capped_in_bounded_pieces():
    """zstandard's decompressobj has no output limit: its input is fed in slices, so a bomb (50 MiB of zeros in
    ~1.6 KiB) yields at most ~1 MiB per step before the cap stops it."""
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (50 << 20))
    dec = BodyDecoder.for_header("zstd", cap=3 << 20)
    out = [p for i in range(0, len(bomb), 1000) for p in dec.feed(bomb[i:i + 1000])]
    assert sum(map(len, out)) == 3 << 20 and dec.status == "capped" and max(map(len, out)) <= 1 << 20
    bad = BodyDecoder.for_header("zstd")
    assert bad.feed(b"\x28\xb5\x2f\xfd" + b"\xff" * 40) == [] and bad.status == "error"


def test_corrupt_gzip_stops_the_body_not_the_flow():
    bad = gzip.compress(SSN)[:10] + b"\xff" * 40  # gzip header, then a deflate block of reserved type 3
    steps = [(CLIENT, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"),
             (SERVER, response(headers=b"Content-Encoding: gzip\r\n", body=bad) + response(body=b"fine"))]
    rec = drive(HttpParser, steps)
    assert rec.anomalies == ["http-decompression-error"]
    assert rec.joined("body", SERVER) == b"fine" and len(rec.events) == 2


def test_codings_parse():
    assert parse_codings("gzip, identity, br") == ["gzip", "br"]
    assert parse_codings("compress") is None and parse_codings(None) == []
    assert BodyDecoder.for_header("zstd-unknown").feed(b"abc") == []


# ---- HTTP: NeuVector threats (reference/neuvector-dp.md §2) ----

def test_2013_negative_content_length():
    rec = drive(HttpParser, [(CLIENT, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nbody...")])
    assert rec.threats == [(2013, CLIENT)]
    assert rec.events[0]["request_body_len"] == 7  # then read as until close


def test_2013_chunk_size_with_bit_31():
    assert chunk_size(b"80000000") == 0x80000000 and chunk_size(b"1a;name=v") == 26 and chunk_size(b"zz") is None
    rec = drive(HttpParser, [(CLIENT, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                             (SERVER, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n80000000\r\nAAAA")])
    assert rec.threats == [(2013, SERVER)]
    rec = drive(HttpParser, [(SERVER, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffff\r\nAAAA")])
    assert rec.threats == []


def test_2014_two_different_content_lengths():
    rec = drive(HttpParser, [(CLIENT, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 50\r\n"
                                      b"\r\nhello")])
    assert rec.threats == [(2014, CLIENT)]
    same = drive(HttpParser, [(CLIENT, b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")])
    assert same.threats == [] and same.events[0]["request_body_len"] == 5  # RFC 9110 §8.6: equal values are one


def test_content_length_with_chunked_is_an_anomaly_not_a_threat():
    rec = drive(HttpParser, [(CLIENT, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
                                      b"\r\n\r\n" + chunked(b"smuggled") + b"GET /2 HTTP/1.1\r\n\r\n")])
    assert rec.threats == [] and rec.anomalies == ["http-cl-with-chunked"]
    assert [e["uri"] for e in rec.events] == ["/", "/2"]  # chunked wins (RFC 9112 §6.3)


STRUTS = (b'<map><entry><jdk.nashorn.internal.objects.NativeString><value class="com.sun.xml.internal.bind.v2.'
          b'runtime.unmarshaller.Base64Data"><dataHandler><dataSource class="com.sun.xml.internal.ws.encoding.xml.'
          b'XMLMessage$XmlDataSource"><is class="javax.crypto.CipherInputStream"><cipher class="javax.crypto.'
          b'NullCipher"><serviceIterator class="javax.imageio.spi.FilterIterator"><next class="java.lang.'
          b'ProcessBuilder">\n  <command>\n <string>/bin/sh</string><string>-c</string></command></next>')


def struts_request(ctype: bytes, body: bytes = STRUTS, framing: str = "length") -> bytes:
    head = b"POST /struts2-rest-showcase/orders/3 HTTP/1.1\r\nHost: x\r\nContent-Type: " + ctype + b"\r\n"
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)


def test_2023_struts_xstream_payload():
    # CVE-2017-9805 exploit shape; the PCRE is NeuVector's APACHE_STRUTS_PCRE
    assert drive(HttpParser, [(CLIENT, struts_request(b"application/xml"))], split=7).threats == [(2023, CLIENT)]
    assert drive(HttpParser, [(CLIENT, struts_request(b"text/plain"))]).threats == []
    assert drive(HttpParser, [(CLIENT, struts_request(b"application/xml", framing="chunked"))]).threats == []
    late = b"<a>" + b" " * 2100 + STRUTS  # beyond the 2048 bytes NeuVector looks at
    assert drive(HttpParser, [(CLIENT, struts_request(b"application/xml", late))]).threats == []


def test_2015_slowloris_on_capture_time():
    slow = feed_timed(HttpParser, [(CLIENT, b"GET / HTTP/1.1\r\n", 0), (CLIENT, b"Host: x\r\n", 2 * SEC),
                                   (CLIENT, b"X-a: b\r\n", 4 * SEC)])
    assert slow.threats == [(2015, CLIENT)]
    quick = feed_timed(HttpParser, [(CLIENT, b"GET / HTTP/1.1\r\n", 0), (CLIENT, b"Host: x\r\n\r\n", 2 * SEC),
                                    (SERVER, response(), 10 * SEC)])
    assert quick.threats == []
    body = feed_timed(HttpParser, [(CLIENT, b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", 0),
                                   (CLIENT, b"abc", 31 * SEC)])
    assert body.threats == [(2015, CLIENT)]


# ---- HTTP: products ----

@pytest.mark.parametrize("headers,product", [
    (b"Server: Apache/2.4.18 (Ubuntu)\r\n", "apache"), (b"Server: nginx\r\n", "nginx"),
    (b"Server: Jetty(9.4.z-SNAPSHOT)\r\n", "jetty"), (b"Server: CouchDB/3.1.1 (Erlang OTP/22)\r\n", "couchdb"),
    (b"Server: Couchbase Server\r\n", "couchbase"), (b"X-Etcd-Cluster-Id: cdf818194e3a8c32\r\n", "etcd"),
    (b"X-Powered-By: Express\r\n", "nodejs"), (b"Server: gws\r\n", None)])
def test_server_products(headers, product):
    rec = drive(HttpParser, [(CLIENT, b"GET / HTTP/1.1\r\n\r\n"), (SERVER, response(headers=headers))])
    assert rec.products == ([product] if product else [])


def test_application_outranks_web_server():
    rec = drive(HttpParser, [(CLIENT, b"GET /wp-content/themes/x.css HTTP/1.1\r\n\r\n"),
                             (SERVER, response(headers=b"Server: Apache\r\n"))])
    assert rec.products == ["wordpress"]


# ---- HTTP: resynchronisation, limits, hostile bytes ----

def test_midstream_flow_resyncs_on_a_start_line():
    rec = feed_timed(HttpParser, [
        (CLIENT, b"ody of an earlier POST\r\nmore\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n", 0),
        (SERVER, b"tail of an earlier response\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0)],
        midstream=True)
    assert [(e["uri"], e["status"]) for e in rec.events] == [("/b", 404)]


def test_gap_inside_a_length_body_keeps_framing_and_a_gap_in_a_head_resyncs():
    rec = feed_timed(HttpParser, [
        (CLIENT, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 0),
        (SERVER, response(body=b"0123456789")[:-6], 0), (SERVER, "gap", 3), (SERVER, b"789", 0),
        (SERVER, b"HTTP/1.1 200 OK\r\nContent-Le", 0), (SERVER, "gap", 20),
        (SERVER, b"x\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", 0),
        (CLIENT, b"GET /3 HTTP/1.1\r\n\r\n", 0)])
    assert [(e["uri"], e["status"]) for e in rec.events] == [("/1", 200), ("/2", 500), ("/3", None)]
    assert rec.events[0]["response_body_len"] == 7  # bytes seen


def test_header_block_cap():
    rec = Recorder()
    p = HttpParser(rec, FlowContext("tcp", 40000, 80, False))
    p.feed(CLIENT, b"GET /ok HTTP/1.1\r\n\r\n", 1, 0)
    head = b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    for i in range(0, len(head), 4096):
        p.feed(CLIENT, head[i:i + 4096], 2, 0)
    p.finish()
    assert rec.anomalies == ["http-header-too-long"] and p.done
    assert [e["uri"] for e in rec.events] == ["/ok"]  # what came before is still reported


def test_head_fields_plain_folded_and_too_many():
    # field names lower-cased, values trimmed, lines without a colon skipped, folded lines joined, at most MAX_FIELDS
    plain = Head(b"GET / HTTP/1.1\r\nHost:  a.example \r\nX-A: 1\r\nx-a:2\r\nno colon here\r\n\tX : y\r\n\r\n")
    assert plain.line == b"GET / HTTP/1.1" and not plain.too_many
    assert plain.fields == {"host": [b"a.example"], "x-a": [b"1", b"2 X : y"]}  # (the tab line is a fold)
    unfolded = Head(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n X-B : v \r\nno colon\r\nx-b:\r\n\r\n")
    assert unfolded.fields == {"server": [b"nginx X-B : v"], "x-b": [b""]}
    simple = Head(b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\x0bX-B\r : v \r\nno colon\r\nx-b:\r\n\r\n")
    assert simple.fields == {"server": [b"nginx"], "x-b": [b"v", b""]}
    many = Head(b"GET / HTTP/1.1\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(MAX_FIELDS + 1)))
    assert many.too_many and len(many.fields) == MAX_FIELDS
    assert Head(b"GET / HTTP/1.1\r\n" + b"h: v\r\n" * MAX_FIELDS).fields == {"h": [b"v"] * MAX_FIELDS}


def test_not_http_gets_an_anomaly_and_no_event():
    rec = drive(HttpParser, [(CLIENT, bytes(range(256)) * 4)])
    assert rec.anomalies == ["http-bad-start-line"] and rec.events == []


def mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(4)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rnd.randrange(256)
        elif op == 1:
            b[i:i] = rnd.choice([b"\r\n", b"\n\n", b"-", b"ffffffffff", b"Content-Length: 99999999999\r\n",
                                 b"Transfer-Encoding: chunked\r\n", b" ", b"\x00", b"$\x00\xff\xff"])
        elif op == 2:
            del b[i:i + rnd.randint(1, 30)]
        else:
            b = b[:i]
    return bytes(b)


SAMPLES = {
    HttpParser: [PIPELINED[0][1], PIPELINED[1][1], struts_request(b"application/xml", framing="chunked"),
                 response(headers=b"Content-Encoding: gzip, br\r\n", body=brotli.compress(gzip.compress(SSN)))],
    RtspParser: [b"SETUP rtsp://h/t RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP;unicast\r\n\r\n",
                 b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678;timeout=60\r\nContent-Length: 4\r\n\r\nv=0\n"
                 b"$\x00\x00\x04abcd"],
    SipParser: [b"INVITE sip:b@h SIP/2.0\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nl: 3\r\n\r\nv=0",
                b"SIP/2.0 200 OK\r\ni: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"],
}


@pytest.mark.parametrize("parser_cls", list(SAMPLES))
def test_hostile_bytes_never_raise(parser_cls):
    rnd = random.Random(20240607)
    samples = SAMPLES[parser_cls]
    for _ in range(400):
        steps = [(rnd.randint(0, 1), mutate(rnd, rnd.choice(samples))) for _ in range(rnd.randint(1, 5))]
        if rnd.random() < 0.2:
            steps.append((rnd.randint(0, 1), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 300)))))
        for transport in ("tcp", "udp") if parser_cls is SipParser else ("tcp",):
            drive(parser_cls, steps, transport=transport, split=rnd.choice((0, 1, 2, 13)))
        rec = Recorder()
        p = parser_cls(rec, FlowContext("tcp", 1, 2, rnd.random() < 0.5))
        for side, data in steps:  # with gaps and mid-stream starts
            p.feed(side, data, 1, 0)
            p.gap(rnd.randint(0, 1), rnd.randint(1, 5000), 1, 0)
        p.finish()


@pytest.mark.parametrize("parser_cls", list(SAMPLES))
def test_every_truncation_of_the_samples(parser_cls):
    for sample in SAMPLES[parser_cls]:
        for n in range(len(sample) + 1):
            for side in (CLIENT, SERVER):
                drive(parser_cls, [(side, sample[:n])])


# ---- RTSP (RFC 2326) ----

RTSP_STEPS = [
    (CLIENT, b"OPTIONS rtsp://cam.example/live RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: LibVLC/3.0.16\r\n\r\n"),
    (SERVER, b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: DESCRIBE, SETUP, PLAY\r\n\r\n"),
    (CLIENT, b"DESCRIBE rtsp://cam.example/live RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n"),
    (SERVER, b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: 24\r\n\r\n"
             + b"v=0\r\nm=video 0 RTP/AVP 9"),  # 24 bytes
    (CLIENT, b"SETUP rtsp://cam.example/live/trackID=0 RTSP/1.0\r\nCSeq: 3\r\n"
             b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"),
    (SERVER, b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 8c30e102191f49d1;timeout=60\r\n"
             b"Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=B1964B48\r\n\r\n"),
    (CLIENT, b"PLAY rtsp://cam.example/live RTSP/1.0\r\nCSeq: 4\r\nSession: 8c30e102191f49d1\r\n\r\n"),
    # the server's own request (RFC 2326 §10.9) between interleaved RTP packets ($ channel length, §10.12)
    (SERVER, b"$\x00\x00\x05RTP..GET_PARAMETER rtsp://cam.example/live RTSP/1.0\r\nCSeq: 4\r\n\r\n"
             b"$\x01\x00\x02xyRTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: 8c30e102191f49d1\r\n\r\n"),
    (CLIENT, b"RTSP/1.0 200 OK\r\nCSeq: 4\r\n\r\n"),
]


@pytest.mark.parametrize("split", [0, 1])
def test_rtsp_pairs_by_cseq_and_skips_interleaved_data(split):
    rec = drive(RtspParser, RTSP_STEPS, split=split)
    got = [(e["method"], e["cseq"], e["status"], e["session"]) for e in rec.events]
    assert got == [("OPTIONS", 1, 200, None), ("DESCRIBE", 2, 200, None), ("SETUP", 3, 200, "8c30e102191f49d1"),
                   ("PLAY", 4, 200, "8c30e102191f49d1"), ("GET_PARAMETER", 4, 200, None)]
    assert rec.events[2]["transport"] == "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=B1964B48"  # the server's
    assert rec.events[0]["uri"] == "rtsp://cam.example/live" and rec.anomalies == []


def test_rtsp_real_capture_matches_tshark(shared_pcaps):
    # tshark -r rtsp__ndpi__rtsp.pcap -d tcp.port==8554,rtsp -Y rtsp -T fields -e frame.number -e tcp.stream
    #   -e rtsp.method -e rtsp.url -e rtsp.status -e rtsp.session -e rtsp.transport
    # stream 1 (client port 52472): 25 OPTIONS / 33 200; 37 DESCRIBE / 53 200 (Content-Length 695);
    #   57 SETUP trackID=0 / 65 200 session 8c30e102191f49d1;timeout=60, transport
    #   RTP/AVP/UDP;unicast;client_port=55664-55665;server_port=58547-58548;ssrc=B1964B48;mode=play;
    #   69 SETUP trackID=1 / 77 200; 81 PLAY / 89 200; 97 GET_PARAMETER (no response before the RST).
    # CSeq (not a tshark field) read from the hex dump: OPTIONS carries CSeq 2 and its reply "Cseq: 2".
    events = [e for e in run(SHARED / "rtsp__ndpi__rtsp.pcap").app_events("rtsp") if e["src_port"] == 52472]
    got = [(e["frame"], e["rtsp"]["method"], e["rtsp"]["status"]) for e in events]
    assert got == [(25, "OPTIONS", 200), (37, "DESCRIBE", 200), (57, "SETUP", 200), (69, "SETUP", 200),
                   (81, "PLAY", 200), (97, "GET_PARAMETER", None)]
    setup = events[2]["rtsp"]
    assert setup["uri"] == "rtsp://10.2.2.2:8554/trackID=0" and setup["session"] == "8c30e102191f49d1"
    assert setup["transport"] == ("RTP/AVP/UDP;unicast;client_port=55664-55665;server_port=58547-58548;"
                                  "ssrc=B1964B48;mode=play")
    assert events[0]["rtsp"]["cseq"] == 2


# ---- SIP (RFC 3261) ----

def sip_request(method: bytes, cseq: int, call: bytes = b"a84b4c76e66710", body: bytes = b"",
                compact: bool = False) -> bytes:
    names = (b"i", b"f", b"t", b"l") if compact else (b"Call-ID", b"From", b"To", b"Content-Length")
    return (method + b" sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com\r\n"
            + names[1] + b": Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
            + names[2] + b": Bob <sip:bob@biloxi.example.com>\r\n" + names[0] + b": " + call + b"\r\n"
            + b"CSeq: %d " % cseq + method + b"\r\nUser-Agent: softphone/1.0\r\n"
            + names[3] + b": %d\r\n\r\n" % len(body) + body)


def sip_response(status: bytes, cseq: int, method: bytes, call: bytes = b"a84b4c76e66710") -> bytes:
    return (b"SIP/2.0 " + status + b"\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com\r\nCall-ID: " + call
            + b"\r\nCSeq: %d " % cseq + method + b"\r\nContent-Length: 0\r\n\r\n")


SDP = b"v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33\r\ns=-\r\n"
SIP_CALL = [  # RFC 3261 §24.2 style call: INVITE (retransmitted), 100, 180, 200, ACK, BYE, 200
    (CLIENT, sip_request(b"INVITE", 314159, body=SDP)), (CLIENT, sip_request(b"INVITE", 314159, body=SDP)),
    (SERVER, sip_response(b"100 Trying", 314159, b"INVITE")), (SERVER, sip_response(b"180 Ringing", 314159, b"INVITE")),
    (SERVER, sip_response(b"200 OK", 314159, b"INVITE")), (SERVER, sip_response(b"200 OK", 314159, b"INVITE")),
    (CLIENT, sip_request(b"ACK", 314159, compact=True)), (SERVER, sip_request(b"BYE", 231, compact=True)),
    (CLIENT, sip_response(b"200 OK", 231, b"BYE")),
]


@pytest.mark.parametrize("transport,split", [("udp", 0), ("tcp", 0), ("tcp", 1)])
def test_sip_transactions(transport, split):
    rec = drive(SipParser, SIP_CALL, transport=transport, split=split)
    got = [(e["method"], e["cseq"], e["status"], e["status_msg"]) for e in rec.events]
    assert got == [("INVITE", "314159 INVITE", 200, "OK"), ("ACK", "314159 ACK", None, None),
                   ("BYE", "231 BYE", 200, "OK")]
    invite = rec.events[0]
    assert invite["call_id"] == "a84b4c76e66710" and invite["uri"] == "sip:bob@biloxi.example.com"
    assert invite["from"] == "Alice <sip:alice@atlanta.example.com>;tag=1928301774"
    assert invite["to"] == "Bob <sip:bob@biloxi.example.com>" and invite["user_agent"] == "softphone/1.0"
    assert rec.events[2]["from"] == "Alice <sip:alice@atlanta.example.com>;tag=1928301774"  # compact f:
    assert rec.frames == [1, 7, 8]


def test_sip_tcp_body_framing_and_unanswered():
    stream = sip_request(b"MESSAGE", 1, body=b"SIP/2.0 200 OK\r\n\r\n") + sip_request(b"OPTIONS", 2)
    rec = drive(SipParser, [(CLIENT, stream)], transport="tcp", split=3)
    assert [(e["method"], e["status"]) for e in rec.events] == [("MESSAGE", None), ("OPTIONS", None)]


def test_sip_real_capture_matches_tshark(shared_pcaps):
    # tshark -r sip__ndpi__sip.pcap -Y sip -T fields -e frame.number -e sip.Method -e sip.r-uri
    #   -e sip.Status-Code -e sip.Call-ID -e sip.CSeq -e sip.User-Agent -e sip.From -e sip.To
    # 1 REGISTER sip:sip.cybercity.dk  578222729-4665d775@578222732-4665d772  "68 REGISTER"
    #   Nero SIPPS IP Phone Version 2.0.51.16 <sip:voi18063@sip.cybercity.dk>;tag=903df0a; 2: 401 (68 REGISTER)
    # 3 REGISTER 69 -> 4: 100, 5: 403; 16 REGISTER 75 -> 17: 100, 18: 200;
    # 76 INVITE sip:0097239287044@sip.cybercity.dk (24487391-449bf2a0@192.168.1.2, 1 INVITE) -> 407
    events = run(SHARED / "sip__ndpi__sip.pcap").app_events("sip")
    by_frame = {e["frame"]: e["sip"] for e in events}
    first = by_frame[1]
    assert (first["method"], first["uri"], first["cseq"], first["status"]) == ("REGISTER", "sip:sip.cybercity.dk",
                                                                                "68 REGISTER", 401)
    assert first["call_id"] == "578222729-4665d775@578222732-4665d772"
    assert first["user_agent"] == "Nero SIPPS IP Phone Version 2.0.51.16"
    assert first["from"] == "<sip:voi18063@sip.cybercity.dk>;tag=903df0a"
    assert by_frame[3]["status"] == 403 and by_frame[16]["status"] == 200  # the final response, not the 100
    assert (by_frame[76]["method"], by_frame[76]["status"]) == ("INVITE", 407)
    assert 2 not in by_frame and 17 not in by_frame  # responses are folded into their request's event


# ---- HTTP: real captures vs tshark ----

def test_http_real_captures_match_tshark(shared_pcaps):
    # tshark -r http__ndpi__http.pcapng -Y http.request -T fields -e http.request.method -e http.host
    #   -e http.request.uri -e http.user_agent  ->  GET google.com / curl/7.68.0 (frame 4)
    # tshark ... -Y http.response -e http.response.code -e http.response.phrase -e http.server -e http.content_type
    #   -e http.content_length  ->  301 Moved Permanently gws text/html; charset=UTF-8 219 (frame 6)
    (e,) = run(SHARED / "http__ndpi__http.pcapng").app_events("http")
    h = e["http"]
    assert (e["frame"], h["method"], h["host"], h["uri"], h["user_agent"]) == (4, "GET", "google.com", "/",
                                                                               "curl/7.68.0")
    assert (h["status"], h["status_msg"], h["server"], h["response_content_type"], h["response_body_len"]) == (
        301, "Moved Permanently", "gws", "text/html; charset=UTF-8", 219)
    # tshark -r vlan__zeek__http-vlan-0.pcap -Y http.response ... -> 200 OK Apache/2.4.3 (Fedora)
    #   text/plain; charset=UTF-8 4705; request GET bro.org /download/CHANGES.bro-aux.txt Wget/1.14 (darwin12.2.0)
    res = run(SHARED / "vlan__zeek__http-vlan-0.pcap")
    (e,) = res.app_events("http")
    h = e["http"]
    assert (h["host"], h["uri"], h["user_agent"], h["status"], h["response_body_len"]) == (
        "bro.org", "/download/CHANGES.bro-aux.txt", "Wget/1.14 (darwin12.2.0)", 200, 4705)
    assert res.flows.iloc[0]["app_product"] == "apache"


def test_webattack_capture_uris_and_gzip_bodies_match_tshark(shared_pcaps, monkeypatch):
    # tshark -r http__ndpi__WebattackSQLinj.pcap -Y http.request -T fields -e tcp.stream -e http.request.uri
    #   -> 9 GETs, stream 0: /dv/vulnerabilities/sqli/?id=1%27&Submit=Submit, stream 2:
    #   /dv/vulnerabilities/sqli/?id=1%27+and+1%3D1+union+select+database%28%29%2C+user%28%29%23&Submit=Submit
    # tshark ... -Y "http.response && tcp.stream==0" -e http.content_length -e http.file_data (decompressed by
    #   tshark): 141 <pre>You have an error in your SQL syntax; check the manual that corresponds to your MySQL
    #   server version for the right syntax to use near ''1''' at line 1</pre>
    seen: list[tuple[int, str, int, bytes]] = []

    def content(self, context, side, data, frame, ts):  # what the parser hands the rules, recorded
        seen.append((self.flow.serial, context, side, data))
    monkeypatch.setattr(_Output, "content", content)
    events = run(SHARED / "http__ndpi__WebattackSQLinj.pcap").app_events("http")
    assert len(events) == 9 and all(e["http"]["status"] == 200 for e in events)
    first = min(events, key=lambda e: e["frame"])["http"]
    assert first["uri"] == "/dv/vulnerabilities/sqli/?id=1%27&Submit=Submit"
    assert first["uri_decoded"] == "/dv/vulnerabilities/sqli/?id=1'&Submit=Submit"
    assert first["response_body_len"] == 141 and first["server"] == "Apache/2.4.18 (Ubuntu)"
    bodies = {s: b"".join(d for s2, c, side, d in seen if s2 == s and c == "body" and side == SERVER)
              for s, *_ in seen}
    assert (b"<pre>You have an error in your SQL syntax; check the manual that corresponds to your MySQL server "
            b"version for the right syntax to use near ''1''' at line 1</pre>") in [b.strip() for b in bodies.values()]
    urls = [d for s, c, side, d in seen if c == "url"]
    assert b"/dv/vulnerabilities/sqli/?id=1'+and+1=1+union+select+database(),+user()#&Submit=Submit" in urls


def tshark_streams(path, stream: int) -> list[tuple[int, bytes]]:
    """The stream's payload as (side, bytes) in order, from `tshark -z follow,tcp,raw` (the oracle's own
    reassembly)."""
    out = subprocess.run(["tshark", "-r", str(path), "-q", "-z", f"follow,tcp,raw,{stream}"], capture_output=True,
                         text=True, check=True).stdout
    steps = []
    for line in out.splitlines():
        if not line or line.startswith(("=", "Follow", "Filter", "Node")):
            continue
        side = SERVER if line.startswith("\t") else CLIENT
        steps.append((side, bytes.fromhex(line.strip())))
    return steps


def truncated(steps: list[tuple[int, bytes]], n: int) -> list[tuple[int, bytes]]:
    out = []
    for side, data in steps:
        if n <= 0:
            break
        out.append((side, data[:n]))
        n -= len(data)
    return out


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_every_truncation_of_real_streams(shared_pcaps):
    for name, parser_cls, stream in (("http__ndpi__http.pcapng", HttpParser, 0),
                                     ("http__ndpi__WebattackSQLinj.pcap", HttpParser, 0),
                                     ("rtsp__ndpi__rtsp.pcap", RtspParser, 1)):
        steps = tshark_streams(SHARED / name, stream)
        whole = drive(parser_cls, steps)
        assert whole.events and whole.anomalies == []
        total = sum(len(d) for _, d in steps)
        for n in range(0, total + 1, 1 if total < 3000 else 7):  # the stream cut after n bytes
            drive(parser_cls, truncated(steps, n))
        assert drive(parser_cls, steps, split=1).events == whole.events


def test_full_request_queue_keeps_responses_aligned():
    n = 300  # more pipelined requests than the queue holds: the first ones are reported without response
    requests = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n))
    responses = b"".join(response(body=b"%d" % i) for i in range(n))
    rec = drive(HttpParser, [(CLIENT, requests), (SERVER, responses)], split=1448)
    paired = [e for e in rec.events if e["uri"] and e["status"]]
    assert len(paired) > n // 2
    assert all(len(e["uri"]) - 1 == e["response_body_len"] for e in paired)  # /123 got the 3-byte body "123"


def test_sides_that_never_resync_end_the_parser():
    junk = bytes(random.Random(3).randrange(256) for _ in range(300 << 10)).replace(b"\n", b"")
    rec = Recorder()
    p = HttpParser(rec, FlowContext("tcp", 40000, 80, True))
    for side in (CLIENT, SERVER):
        for i in range(0, len(junk), 1448):
            p.feed(side, junk[i:i + 1448], 1, 0)
    assert p.done


def test_no_http_in_the_ipv6_capture(shared_pcaps):
    # tshark -r ipv6__ndpi__http_ipv6.pcap -Y http.request  ->  nothing (TLS and QUIC only, port 443)
    assert run(SHARED / "ipv6__ndpi__http_ipv6.pcap").app_events("http") == []


def test_folded_header_and_bare_lf_lines():
    # RFC 9112 §5.2 obs-fold (a line starting with SP/HTAB continues the field) and §2.2 bare LF line ends
    rec = drive(HttpParser, [(CLIENT, b"GET / HTTP/1.1\nHost: h\nUser-Agent: agent\n\t/2.0 (folded)\n\n"),
                             (SERVER, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")], split=1)
    assert rec.events[0]["user_agent"] == "agent /2.0 (folded)" and rec.events[0]["response_body_len"] == 2
