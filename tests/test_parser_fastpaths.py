"""The parsers' fast paths against their general ones: the same bytes must give the same events whichever way
they are read. MySQL packets cut straight from a chunk vs through the framer; DNS answer owner names taken from
the names already read vs decoded again, IPv6 rdata through inet_ntop vs ipaddress; TLS extension lists, 16-bit
vectors and the remembered JA3/JA3S vs computed each time. Odd inputs included: packets split anywhere, several
in one chunk, cut, over-long, announcing bad lengths."""
from __future__ import annotations

import hashlib
import ipaddress
import random
import struct

import pytest
from conftest import SHARED
from parsertest import Recorder
from test_parse_sql import my, my_err, my_greeting, my_login, my_ok, my_result, my_session, tcp_flows
from test_parse_tls_h2 import CH_EXTS, CH_SUITES, _merge, client_hello, ext, ext_alpn, ext_groups, server_hello

from nvpcap.protocols import dns, ssl
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.framing import Short
from nvpcap.protocols.mysql import MAX_PACKET_PAYLOAD, PACKET_LIMIT, MysqlParser

# =============================================================================================================
# MySQL: whole packets cut straight from the chunk (MysqlParser.feed) vs every byte through the framer
# =============================================================================================================


class FramerOnlyMysql(MysqlParser):
    """The general path alone: every chunk goes through the framer, packet by packet."""

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        framer = self.framers[side]
        for msg in framer.push(bytes(data), frame, ts_ns):
            self._packet(side, msg.data, msg.length - 4, msg.frame, msg.ts_ns)
            if self.done:
                return
        if framer.broken:
            self.done = True


def _drive(parser_cls, chunks: list[tuple[int, bytes]], midstream: bool = False, server_port: int = 3306) -> tuple:
    """Everything a parser reports for these chunks (fed in order, then finished), and whether it was done."""
    rec = Recorder()
    parser = parser_cls(rec, FlowContext("tcp", 40000, server_port, midstream))
    for i, (side, data) in enumerate(chunks):
        if parser.done:
            break
        parser.feed(side, data, i + 1, i)
    done = parser.done
    parser.finish()
    return rec.events, rec.frames, rec.threats, rec.anomalies, rec.contents, done


def _cuts(steps: list[tuple[int, bytes]], rng: random.Random, how: str) -> list[tuple[int, bytes]]:
    """The same bytes per side in other chunks: whole, byte by byte, at random points, or each side's run of
    steps joined (pipelined)."""
    if how == "whole":
        return steps
    if how == "pipelined":
        return _merge(steps)
    out: list[tuple[int, bytes]] = []
    for side, data in steps:
        if how == "bytes":
            out += [(side, data[i : i + 1]) for i in range(len(data))]
            continue
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.choice((1, 2, 5))))) if len(data) > 1 else []
        out += [(side, data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)])]
    return out


def _same_both_ways(steps: list[tuple[int, bytes]], midstream: bool = False, seed: int = 0,
                    ways: tuple[str, ...] = ("whole", "pipelined", "random", "random", "bytes")) -> tuple:
    rng = random.Random(seed)
    first = None
    for how in ways:
        chunks = _cuts(steps, rng, how)
        fast, general = _drive(MysqlParser, chunks, midstream), _drive(FramerOnlyMysql, chunks, midstream)
        assert fast == general, how
        first = first or fast
    return first


ROWS = [[str(i).encode(), b"name-%d" % i] for i in range(300)]


def test_mysql_result_rows_counted_the_same_whole_split_and_pipelined():
    events = _same_both_ways(my_session(
        (my(0, b"\x03select id, name from users"), my_result(1, [b"id", b"name"], ROWS)),
        (my(0, b"\x03select 1"), my_result(1, [b"1"], [[b"1"]], eof=False)),
        (my(0, b"\x03select x from nowhere"), my_err(1, 1146, b"42S02", b"Table 'nowhere' doesn't exist")),
        (my(0, b"\x01"), b"")))[0]
    assert [e["cmd"] for e in events] == ["login", "query", "query", "query", "quit"]
    assert [e["rows"] for e in events[1:3]] == [300, 1]
    assert events[3]["error_code"] == 1146


def test_mysql_long_packets_and_continuations_take_the_framer_path_the_same_way():
    big_row = my(5, b"\xfb" + b"r" * (PACKET_LIMIT + 10))  # longer than PACKET_LIMIT: read from its prefix
    longest = my(6, b"\x05" + b"x" * (MAX_PACKET_PAYLOAD - 1))  # the maximum length: the next packet continues it
    rest = my(7, b"\xfe" + b"y" * 20)  # the continuation (its 0xFE must not end the result set)
    result = my_result(1, [b"c"], [[b"a"]])
    answer = result[: -len(my(0, b"\xfe\0\0\2\0"))]  # the result set without its EOF
    answer += big_row + longest + rest + my(8, b"\x01z") + my(9, b"\xfe\0\0\2\0")
    steps = my_session((my(0, b"\x03select c from t"), answer), (my(0, b"\x0e"), my_ok(1)))
    events = _same_both_ways(steps, ways=("whole", "pipelined", "random", "random"))[0]
    assert events[1]["rows"] == 4 and events[1]["success"] is True  # a, the long one, the longest (+ rest), z
    assert events[2]["cmd"] == "ping" and events[2]["success"] is True


def test_mysql_cut_and_bad_packets_agree():
    steps = my_session((my(0, b"\x03select 1"), my_result(1, [b"1"], [[b"1"], [b"2"]])))
    for cut in range(1, 40, 3):
        _same_both_ways(steps[:-1] + [(SERVER, steps[-1][1][:-cut])], seed=cut)  # the flow ends mid-packet
    hostile = [(SERVER, my_greeting()), (CLIENT, my_login(b"bob")), (SERVER, my_ok(2)),
               (CLIENT, b"\xff\xff\xff\x00\x03" + b"q" * 50), (SERVER, b"\x00\x00\x00\x01" * 8 + b"\x07\x00")]
    _same_both_ways(hostile)
    _same_both_ways([(CLIENT, my(0, b"\x03select 2")), (SERVER, my_result(1, [b"2"], [[b"2"]] * 20))], midstream=True)


def test_mysql_real_flows_agree(shared_pcaps):
    for i, steps in enumerate(tcp_flows(SHARED / "mysql__ndpi__mysql.pcap", 3306)):
        _same_both_ways(steps, seed=i)


# =============================================================================================================
# DNS: owner names from the names already read; IPv6 rdata text
# =============================================================================================================


def _name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def _ptr(off: int) -> bytes:
    return struct.pack("!H", 0xC000 | off)


def _rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = 60) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def _response(question: bytes, answers: list[bytes], ident: int = 7) -> bytes:
    return struct.pack("!HHHHHH", ident, 0x8180, 1, len(answers), 0, 0) + question + struct.pack("!HH", 1, 1) + \
        b"".join(answers)


def test_dns_owner_names_pointing_at_names_already_read():
    q = _name(b"www", b"example", b"com")  # at 12
    cname_at = 12 + len(q) + 4 + 12  # the first answer's rdata: after its 2-byte owner and 10 fixed bytes
    msg = _response(q, [_rr(_ptr(12), 5, _name(b"cdn", b"example", b"net")),
                        _rr(_ptr(cname_at), 1, bytes([192, 0, 2, 1])),
                        _rr(_ptr(cname_at + 4), 1, bytes([192, 0, 2, 2])),  # "example.net", inside that name
                        _rr(_ptr(16), 28, bytes(15) + b"\x01")])  # "example.com": inside the question
    m = dns.DnsMessage(msg)
    assert m.error is None and m.end == len(msg)
    assert [(a["rrname"], a["rrtype"], a["rdata"]) for a in m.answers] == [
        ("www.example.com", "CNAME", "cdn.example.net"), ("cdn.example.net", "A", "192.0.2.1"),
        ("example.net", "A", "192.0.2.2"), ("example.com", "AAAA", "::1")]


def test_dns_a_known_name_at_the_pointer_limit_is_followed_and_loops():
    """An owner pointer to a name that was itself reached through MAX_POINTERS pointers: the shortcut must not
    hide the 64th pointer (DNS.Loop.Pointer, as NeuVector counts)."""
    q = _name(b"a", b"example")
    head = len(_response(q, [])) + 2 + 10  # where the first record's rdata starts
    # the rdata of a CNAME: a chain of MAX_POINTERS pointers, each to the one before, the first to the question
    chain = b"".join(_ptr(12 if i == 0 else head + 2 * (i - 1)) for i in range(dns.MAX_POINTERS))
    last = head + 2 * (dns.MAX_POINTERS - 1)
    msg = _response(q, [_rr(_ptr(12), 5, chain), _rr(_ptr(last), 1, bytes(4))])
    m = dns.DnsMessage(msg)
    assert m.answers[0]["rdata"] == "a.example"  # 63 pointers: still read
    assert m.loop and m.error == "dns-pointer-loop"  # the owner name adds the 64th


@pytest.mark.parametrize(("labels", "text"), [
    ((b"a.b", b"example"), "a\\046b.example"),  # a dot inside a label (RFC 4343 §2.1)
    ((b"sp ace", b"x"), "sp\\032ace.x"),
    ((b"\xc3\xa9t\xc3\xa9", b"fr"), "\\195\\169t\\195\\169.fr"),
    ((b"back\\slash",), "back\\092slash"),
    ((b"plain-label_1", b"EXAMPLE", b"org"), "plain-label_1.EXAMPLE.org"),
])
def test_dns_names_needing_escapes_are_escaped_label_by_label(labels, text):
    q = _name(*labels)
    msg = _response(q, [_rr(_ptr(12), 1, bytes(4))])
    m = dns.DnsMessage(msg)
    assert m.questions[0][0] == text and m.answers[0]["rrname"] == text


def test_ipv6_text_is_what_ipaddress_writes():
    rng = random.Random(5)
    cases = [bytes(16), bytes(15) + b"\x01", b"\x20\x01\x0d\xb8" + bytes(12), bytes(10) + b"\xff\xff" + bytes(4),
             bytes(10) + b"\xff\xff\xc0\x00\x02\x01", bytes(12) + b"\xc0\x00\x02\x01", b"\x00\x01" * 8,
             b"\x20\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01"]  # two equal zero runs
    for _ in range(20000):
        raw = bytearray(rng.getrandbits(8) for _ in range(16))
        for j in range(8):
            if rng.random() < 0.5:
                raw[2 * j : 2 * j + 2] = b"\0\0"
        if rng.random() < 0.1:
            raw[:12] = bytes(10) + rng.choice((b"\xff\xff", b"\0\0"))
        cases.append(bytes(raw))
    for raw in cases:
        assert dns.ipv6_text(raw) == str(ipaddress.IPv6Address(raw)), raw.hex()


# =============================================================================================================
# TLS: extensions, 16-bit lists, remembered JA3/JA3S
# =============================================================================================================


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_u16s_reads_big_endian_pairs_and_ignores_an_odd_byte():
    assert ssl._u16s(b"") == []
    assert ssl._u16s(b"\x13") == []
    assert ssl._u16s(b"\x13\x01\xc0\x2f\x0a") == [0x1301, 0xC02F]


def test_extension_list_keeps_every_type_and_slices_only_the_wanted():
    exts = ext(0, b"sni") + ext(99, b"other") + ext(0, b"")
    body = b"\xff" * 3 + struct.pack("!H", len(exts)) + exts
    types, kept = ssl._extensions_at(body, 3, frozenset((0,)))
    assert types == [0, 99, 0] and kept == [(0, b"sni"), (0, b"")]
    assert ssl._extensions_at(body, len(body) - 1, frozenset((0,))) == ([], [])  # old hello: no extensions
    with pytest.raises(Short):
        ssl._extensions_at(body[:-1], 3, frozenset())
    with pytest.raises(Short):
        ssl._extensions_at(body[:5] + b"\x00\x00\x00", 3, frozenset())  # the list holds a cut extension


def test_a_bad_wanted_extension_still_fails_the_hello_when_a_good_one_follows():
    bad_alpn = ext(16, b"\x00\x05\x02h2")  # the list announces 5 bytes, holds 3
    body = client_hello([0x1301], [bad_alpn, ext_alpn(["h2"])])[4:]
    with pytest.raises(Short):
        ssl.parse_client_hello(body)


def test_remembered_ja3_and_ja3s_are_the_hashes_of_their_strings():
    rng = random.Random(3)
    hellos = []
    for i in range(3 * ssl._FINGERPRINTS_MAX):  # more than the memory holds: it is emptied and filled again
        suites = rng.sample([0x0A0A, 0x1301, 0x1302, 0xC02F, 0xC030, 0x009C, 0x2A2A], rng.randint(1, 6))
        exts = [ext_groups(rng.sample([29, 23, 24, 0x1A1A], 2))] + CH_EXTS[: rng.randint(0, len(CH_EXTS))]
        hellos.append((ssl.parse_client_hello(client_hello(suites, exts, version=0x0301 + i % 3)[4:]),
                       ssl.parse_server_hello(server_hello(rng.choice(CH_SUITES), exts[:2])[4:])))
    for ch, sh in hellos + hellos[:50]:
        assert ssl.ja3_hash(ch) == _md5(ssl.ja3_string(ch))
        assert ssl.ja3s_hash(sh) == _md5(ssl.ja3s_string(sh))
    assert len(ssl._FINGERPRINTS) <= ssl._FINGERPRINTS_MAX
    huge = ssl.parse_client_hello(client_hello(list(range(1, 2 * ssl._FINGERPRINT_ITEMS)), CH_EXTS)[4:])
    assert ssl.ja3_hash(huge) == _md5(ssl.ja3_string(huge))  # not remembered: hashed each time
    assert all(len(key[2]) < ssl._FINGERPRINT_ITEMS for key in ssl._FINGERPRINTS if key[0] == ssl.CLIENT_HELLO)


def test_cipher_and_version_names_of_unknown_codes():
    assert ssl.version_name(0x0303) == "TLSv1.2" and ssl.version_name(0x7F1C) == "0x7f1c"
    assert ssl.cipher_name(0x1301) == "TLS_AES_128_GCM_SHA256" and ssl.cipher_name(0xABCD) == "0xabcd"
