"""Suricata/Snort rules (nvpcap/rules/suricata.py): parsing, compilation to one regex per buffer, what is
refused and why, and alerts through the whole pipeline on captures built here."""
from __future__ import annotations

import re
import struct

import pcapgen as g
import pytest
from conftest import run
from test_parse_tls_h2 import CH_SUITES, client_hello, ext_sni, record, server_hello
from test_rules_pipeline import OK, C, S, conversation

from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols.applayer import AppLayerConfig
from nvpcap.rules import RuleEngine, RuleIds, build_engine, load_files
from nvpcap.rules import suricata as sur
from nvpcap.rules.regex import compile_python

try:
    import hyperscan  # noqa: F401
    BACKENDS = ["hyperscan", "python"]
except ImportError:  # pragma: no cover
    BACKENDS = ["python"]


def one(text: str):
    return sur.compile_rule(sur.parse_rule(text), "t")


def regexes(text: str) -> list[tuple[str, bool, str]]:
    return [(p.regex, p.negate, p.context) for p in one(text).patterns]


# ---- parsing ----

def test_rule_lines_skip_comments_and_join_continuations():
    text = ('# a comment\n\n  alert tcp any any -> any any (msg:"a"; \\\n'
            '    content:"x"; sid:1;)\n#alert tcp any any -> any any (sid:2;)\n'
            'alert udp any any -> any 53 (content:"y"; sid:3;)\n')
    assert sur.rule_lines(text) == [(3, 'alert tcp any any -> any any (msg:"a"; content:"x"; sid:1;)'),
                                    (6, 'alert udp any any -> any 53 (content:"y"; sid:3;)')]


def test_header_and_options_with_escapes_and_brackets():
    r = sur.parse_rule(r'alert tcp [10.0.0.1, 10.0.0.2] any -> $HOME_NET [80,443] (msg:"a\;b \"q\""; '
                       r'content:"x\;y"; nocase; flow:established, to_server; sid:7; rev:1;)')
    assert (r.action, r.proto, r.src, r.sport, r.direction, r.dst, r.dport) == \
        ("alert", "tcp", "[10.0.0.1, 10.0.0.2]", "any", "->", "$HOME_NET", "[80,443]")
    assert r.options == [("msg", r'"a\;b \"q\""'), ("content", r'"x\;y"'), ("nocase", None),
                         ("flow", "established, to_server"), ("sid", "7"), ("rev", "1")]
    rule = sur.compile_rule(r)
    assert rule.name == 'a;b "q"' and rule.rule_id == 7 and rule.category == "ids"
    assert rule.direction == "request"


def test_content_hex_and_escapes():
    assert sur.content_bytes(r"|41 42|C|3b 0d0a|") == b"ABC;\r\n"
    assert sur.content_bytes(r"a\;b\"c\\d\:") == b'a;b"c\\d:'
    with pytest.raises(sur.Unsupported, match="hex"):
        sur.content_bytes("|4|")
    with pytest.raises(sur.Unsupported, match="unterminated"):
        sur.content_bytes("|41")


def test_not_a_rule():
    with pytest.raises(ValueError):
        sur.parse_rule("alert tcp any any any any (sid:1;)")
    with pytest.raises(ValueError):
        sur.parse_rule("alert tcp any any -> any any sid:1;")


# ---- compilation ----

def test_contents_of_one_buffer_become_one_regex():
    (rx,) = regexes('alert http any any -> any any (http.uri; content:"/admin"; nocase; content:"cmd="; '
                    'distance:2; within:10; content:"end"; sid:1;)')
    assert rx == (r"(?i:\x2fadmin)[\s\S]{2,8}(?-i:cmd\x3d)[\s\S]*(?-i:end)", False, "url")
    pyre = compile_python(rx[0])
    assert pyre.search(b"/ADMIN?xcmd=1&end") and not pyre.search(b"/admin?cmd=1&end")  # distance 2
    assert not pyre.search(b"/admin?x" + b"z" * 9 + b"cmd=end")  # beyond within
    assert not pyre.search(b"/admin?xxCMD=end")  # cmd= is case-sensitive


def test_offset_depth_anchor_and_separate_buffers():
    pats = regexes('alert http any any -> any any (content:"GET"; depth:3; http.header; content:"evil"; '
                   'content:"x"; offset:4; depth:2; content:!"ok"; sid:1;)')
    assert pats == [(r"^[\s\S]{0,0}(?-i:GET)", False, "packet"), (r"(?-i:evil)", False, "header"),
                    (r"^[\s\S]{4,5}(?-i:x)", False, "header"), (r"(?-i:ok)", True, "header")]
    pyre = compile_python(pats[2][0])
    assert pyre.search(b"abcdx") and pyre.search(b"abcdex") and not pyre.search(b"abcdefx") and not pyre.search(b"x")


def test_pcre_flags_and_buffers():
    pats = regexes(r'alert http any any -> any any (pcre:"/^\/x[0-9]+ # digits/Uix"; '
                   r'pcre:"/a.b$/m"; pcre:"/body\d/P"; sid:1;)')
    assert pats[0] == (r"^(?i-s:\/x[0-9]+)", False, "url")
    assert pats[1] == (r"(?m-is:a.b$)", False, "packet")
    assert pats[2] == (r"(?-is:body\d)", False, "body")
    assert one(r'alert http any any -> any any (pcre:"/body\d/P"; sid:1;)').direction == "request"
    assert compile_python(pats[0][0]).search(b"/X12") and not compile_python(pats[1][0]).search(b"a\nb")


def test_severity_from_priority_and_classtype():
    base = 'alert tcp any any -> any any (content:"x"; sid:1; {})'
    assert one(base.format("priority:1;")).severity == 5
    assert one(base.format("priority:2;")).severity == 4
    assert one(base.format("priority:3;")).severity == 3
    assert one(base.format("priority:4;")).severity == 2
    assert one(base.format("classtype:trojan-activity;")).severity == 5
    assert one(base.format("classtype:misc-activity;")).severity == 3
    assert one(base.format("classtype:trojan-activity; priority:3;")).severity == 3
    assert one(base.format("")).severity == 3


def test_app_protocol_from_the_header_or_the_keyword():
    assert one('alert tls any any -> any any (tls.sni; content:"a"; sid:1;)').app_proto == ("ssl",)
    assert one('alert tcp any any -> any any (app-layer-protocol:dns; content:"a"; sid:1;)').app_proto == ("dns",)
    assert one('alert tcp any any -> any any (content:"a"; sid:1;)').app_proto == ()
    assert "http" in one('alert http any any -> any any (content:"a"; sid:1;)').app_proto


@pytest.mark.parametrize("options, why", [
    ('content:"a"; byte_test:1,>,2,0;', "byte_test"),
    ('content:"a"; flowbits:set,x;', "flowbits"),
    ('content:"a"; threshold:type limit, track by_src, count 1, seconds 60;', "threshold"),
    ('content:"a"; isdataat:1,relative;', "isdataat"),
    ('dsize:>10; content:"a";', "dsize"),
    ('content:"a"; content:"b"; distance:-2;', "negative"),
    ('content:"abc"; depth:2;', "depth 2"),
    ('content:"a"; content:!"b"; distance:0;', "negated relative"),
    ('content:!"a";', "no positive"),
    ('pcre:"/a/G";', "pcre flag 'G'"),
    ('content:"a"; flow:only_stream;', "only_stream"),
    ('flow:to_server; http.response_body; content:"a";', "both directions"),
    ('msg:"no sid"; content:"a";', "no sid"),
    ('content:"a"; http.method; content:"GET";', "http.method"),
])
def test_unsupported_keywords_keep_the_rule_out_with_the_reason(options, why):
    sid = "" if why == "no sid" else " sid:9;"
    res = sur.load_text(f"alert http any any -> any any ({options}{sid})", "x.rules")
    assert res.rules == [] and len(res.problems) == 1 and why in res.problems[0] and "x.rules:1" in res.problems[0]


def test_ignored_keywords_are_accepted_and_duplicate_sids_refused(tmp_path):
    text = ('alert tcp any any -> any any (msg:"a"; content:"a"; fast_pattern; metadata:created_at 2024; '
            'reference:url,example.com; classtype:misc-activity; target:dest_ip; rev:3; gid:1; sid:5;)\n'
            'alert tcp any any -> any any (msg:"b"; content:"b"; sid:5;)\n')
    res = sur.load_text(text, "x.rules")
    assert [r.rule_id for r in res.rules] == [5] and "sid 5 is already loaded" in res.problems[0]
    (tmp_path / "a.rules").write_text(text.splitlines()[0])
    (tmp_path / "b.rules").write_text(text.splitlines()[1])
    res = load_files([tmp_path / "a.rules", tmp_path / "b.rules"], RuleIds())
    assert len(res.rules) == 1 and "already loaded" in res.problems[0]


# ---- the engine ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_honours_app_proto_and_new_contexts(backend):
    rules = sur.load_text('alert dns any any -> any any (dns.query; content:"bad.example"; nocase; sid:1;)\n'
                          'alert tcp any any -> any any (content:"needle"; sid:2;)\n', "x.rules").rules
    eng = RuleEngine(rules, backend=backend)
    assert eng.problems == []
    fs = eng.flow_scanner("f", "dns")
    fs.scan("dns.query", 0, b"www.BAD.example", 1, 1)
    fs.scan("raw", 0, b"a needle here", 2, 2)
    fs.close()
    assert sorted((m.rule.rule_id, m.context) for m in fs.alerts) == [(1, "dns.query"), (2, "raw")]
    fs = eng.flow_scanner("f", "http")  # a dns rule in another app's flow: nothing
    fs.scan("dns.query", 0, b"bad.example", 1, 1)
    fs.close()
    assert fs.alerts == []


# ---- through the pipeline ----

RULES = r"""
# issue 4: Suricata subset
alert http any any -> any any (msg:"admin uri"; flow:established,to_server; http.uri; content:"/admin/"; \
    content:"cmd="; distance:0; sid:1000001; rev:1; classtype:web-application-attack;)
alert tls any any -> any any (msg:"evil sni"; tls.sni; content:"evil.example"; endswith; nocase; sid:1000002;)
alert dns any any -> any any (msg:"bad query"; dns.query; content:"malware"; sid:1000003; priority:2;)
alert tcp any any -> any any (msg:"magic at 4"; content:"MAGIC"; offset:4; depth:5; sid:1000004;)
alert http any any -> any any (msg:"secret in response"; flow:to_client; content:"topsecret"; sid:1000005;)
alert http any any -> any any (msg:"unsupported"; content:"x"; byte_test:1,>,2,0; sid:1000006;)
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "local.rules"
    path.write_text(RULES)
    engine, problems = build_engine([str(path)], bundled=False)
    assert len(problems) == 1 and "sid 1000006" in problems[0] and "byte_test" in problems[0]
    return AnalyzeConfig(app=AppLayerConfig(rules=engine))


def ids_alerts(res) -> list[tuple[int, str, str]]:
    return sorted((a["rule_id"], a["context"], a["direction"]) for a in res.alerts() if a.get("category") == "ids")


def get(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: app\r\n\r\n"


def test_http_uri_rule_fires_on_a_matching_request_only(tmp_path, config):
    res = run(conversation(tmp_path / "a.pcap", [(0, get(b"/admin/run?cmd=id")), (1, OK)]), config)
    assert ids_alerts(res) == [(1000001, "url", "toserver")]
    (alert,) = [a for a in res.alerts() if a.get("category") == "ids"]
    assert alert["rule_name"] == "admin uri" and alert["severity"] == 5 and alert["app_proto"] == "http"
    res = run(conversation(tmp_path / "b.pcap", [(0, get(b"/public/run?cmd=id")), (1, OK)]), config)
    assert ids_alerts(res) == []
    res = run(conversation(tmp_path / "c.pcap", [(0, get(b"/x?cmd=1&/admin/")), (1, OK)]), config)
    assert ids_alerts(res) == []  # cmd= must come after /admin/ (distance:0)


def tls_steps(sni: str) -> list[tuple[int, bytes]]:
    return [(0, record(22, client_hello(CH_SUITES, [ext_sni(sni)]), version=0x0301)),
            (1, record(22, server_hello(0xC02F, None)))]


def test_tls_sni_rule_fires_on_that_client_hello(tmp_path, config):
    res = run(conversation(tmp_path / "t.pcap", tls_steps("www.EVIL.example"), port=443), config)
    assert res.flows.iloc[0]["app_proto"] == "ssl"
    assert ids_alerts(res) == [(1000002, "tls.sni", "toserver")]
    res = run(conversation(tmp_path / "u.pcap", tls_steps("evil.example.org"), port=443), config)
    assert ids_alerts(res) == []  # endswith


def dns_query(name: str, ident: int = 0x1234) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def test_dns_query_rule_fires(tmp_path, config):
    for name, want in (("cdn.malware.test", [(1000003, "dns.query", "toserver")]), ("www.example.com", [])):
        pkts = [(0.0, g.udp(C, 40000, S, 53, dns_query(name)))]
        res = run(g.write(tmp_path / f"{name}.pcap", pkts), config)
        assert res.flows.iloc[0]["app_proto"] == "dns"
        assert ids_alerts(res) == want


def test_offset_and_depth_are_respected(tmp_path, config):
    # an unidentified TCP protocol: its raw stream is scanned ("packet" content)
    for payload, want in ((b"\x00\x01\x02\x03MAGIC rest", [(1000004, "raw", "toserver")]),
                          (b"\x00\x01\x02\x03\x04MAGIC rest", []),  # starts at 5: beyond offset 4 + depth 5
                          (b"\x00\x01\x02MAGIC rest", [])):  # starts at 3: before the offset
        res = run(conversation(tmp_path / "m.pcap", [(0, payload), (1, b"\x00ok")], port=9999), config)
        assert ids_alerts(res) == want, payload


def test_flow_to_client_restricts_the_direction(tmp_path, config):
    page = b"the topsecret plan"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(page) + page
    res = run(conversation(tmp_path / "r.pcap", [(0, get(b"/plan")), (1, response)]), config)
    assert ids_alerts(res) == [(1000005, "body", "toclient")]
    request = b"POST /plan HTTP/1.1\r\nHost: app\r\nContent-Length: %d\r\n\r\n" % len(page) + page
    res = run(conversation(tmp_path / "q.pcap", [(0, request), (1, OK)]), config)
    assert ids_alerts(res) == []


def test_regexes_compile_with_the_python_confirmer():
    for rule in sur.load_text(RULES, "x.rules").rules:
        for p in rule.patterns:
            assert isinstance(compile_python(p.regex), re.Pattern)


# ---- the header: addresses, ports, direction (Suricata's rules/intro "Source and destination", "Ports") ----

from nvpcap.rules import header as hdr  # noqa: E402


def addr(text: str) -> int:
    import ipaddress
    ip = ipaddress.ip_address(text)
    return int(ip) | hdr.V4_BASE if ip.version == 4 else int(ip)


def holds(expr: str, ip: str, variables: dict | None = None) -> bool:
    return hdr.contains(hdr.parse_addresses(expr, variables), addr(ip))


def port_holds(expr: str, port: int) -> bool:
    return hdr.contains(hdr.parse_ports(expr), port)


@pytest.mark.parametrize("expr, inside, outside", [
    ("!1.1.1.1", ["1.1.1.2", "10.0.0.1", "2001:db8::1"], ["1.1.1.1"]),  # every IP address but 1.1.1.1
    ("![1.1.1.1, 1.1.1.2]", ["1.1.1.3"], ["1.1.1.1", "1.1.1.2"]),
    ("$HOME_NET", ["192.168.1.1", "10.9.9.9", "172.16.0.1", "172.31.255.255"],
     ["172.32.0.1", "8.8.8.8", "2001:db8::1"]),  # Suricata's default HOME_NET
    ("[$EXTERNAL_NET, !$HOME_NET]", ["8.8.8.8", "2001:db8::1"], ["10.0.0.1", "192.168.0.1"]),
    ("[10.0.0.0/24, !10.0.0.5]", ["10.0.0.0", "10.0.0.4", "10.0.0.255"], ["10.0.0.5", "10.0.1.1"]),
    ("$EXTERNAL_NET", ["1.2.3.4"], ["10.1.2.3"]),
    ("$HTTP_SERVERS", ["10.1.2.3"], ["1.2.3.4"]),
    ("any", ["0.0.0.0", "255.255.255.255", "::1"], []),
    ("[1.2.3.0/255.255.255.0, 2001:db8::/32]", ["1.2.3.9", "2001:db8:1::1"], ["1.2.4.1", "2001:db9::1"]),
    ("[[10.0.0.0/8, !10.1.0.0/16], 1.1.1.1]", ["10.2.0.1", "1.1.1.1"], ["10.1.0.1", "1.1.1.2"]),
])
def test_address_expressions(expr, inside, outside):
    assert all(holds(expr, ip) for ip in inside), expr
    assert not any(holds(expr, ip) for ip in outside), expr


@pytest.mark.parametrize("expr, inside, outside", [
    ("[80, 81, 82]", [80, 81, 82], [79, 83]),
    ("[80: 82]", [80, 81, 82], [79, 83]),  # a range
    ("[1024: ]", [1024, 65535], [1023]),  # from 1024 till the highest port
    ("!80", [0, 79, 81, 443], [80]),
    ("[80:100,!99]", [80, 98, 100], [79, 99, 101]),
    ("[1:80,![2,4]]", [1, 3, 5, 80], [0, 2, 4, 81]),
    (":1023", [0, 1023], [1024]),
    ("$HTTP_PORTS", [80], [8080]),
    ("$FILE_DATA_PORTS", [80, 110, 143], [25]),
])
def test_port_expressions(expr, inside, outside):
    assert all(port_holds(expr, p) for p in inside), expr
    assert not any(port_holds(expr, p) for p in outside), expr


def test_variables_can_be_overridden():
    home = {"HOME_NET": "[100.64.0.0/10]"}
    assert holds("$HOME_NET", "100.64.1.1", home) and not holds("$HOME_NET", "10.0.0.1", home)
    assert holds("$EXTERNAL_NET", "10.0.0.1", home)  # EXTERNAL_NET follows the new HOME_NET
    assert hdr.contains(hdr.parse_ports("$HTTP_PORTS", {"$HTTP_PORTS": "[80,8080]"}), 8080)
    rule = sur.load_text('alert tcp $HOME_NET any -> any any (content:"a"; sid:1;)', "x", variables=home).rules[0]
    assert rule.header.src == hdr.parse_addresses("[100.64.0.0/10]")
    old = dict(sur.VARS)
    sur.VARS["HOME_NET"] = "1.2.3.4"
    try:
        rule = sur.load_text('alert tcp $HOME_NET any -> any any (content:"a"; sid:1;)', "x").rules[0]
    finally:
        sur.VARS.clear()
        sur.VARS.update(old)
    assert rule.header.src == hdr.parse_addresses("1.2.3.4")


@pytest.mark.parametrize("header, why", [
    ("tcp $NOPE any -> any any", "variable $NOPE is not defined"),
    ("tcp !any any -> any any", "matches nothing"),
    ("tcp 10.0.0.300 any -> any any", "10.0.0.300"),
    ("tcp any 70000 -> any any", "within 0..65535"),
    ("tcp any [1,2 -> any any", "header has"),
    ("tcp any any -> any 90:80", "empty"),
])
def test_bad_headers_keep_the_rule_out(header, why):
    res = sur.load_text(f'alert {header} (content:"a"; sid:1;)', "x.rules")
    assert res.rules == [] and why in res.problems[0], res.problems


def test_any_header_costs_nothing_and_transport_is_kept():
    assert one('alert ip any any -> any any (content:"a"; sid:1;)').header is None
    assert one('alert http any any -> any any (content:"a"; sid:1;)').header is None  # app_proto restricts
    h = one('alert udp any any -> any any (content:"a"; sid:1;)').header
    assert h is not None and h.protos == (17,) and h.src is None


def keys(proto: int, client: str, server: str, cport: int, sport: int) -> tuple:
    c, s = addr(client), addr(server)
    return (proto, c >> 64, c & (2**64 - 1), s >> 64, s & (2**64 - 1), cport, sport, 0)


HDR_RULES = """
alert tcp $HOME_NET any -> $EXTERNAL_NET 80 (msg:"out to web"; content:"needle"; sid:11;)
alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (msg:"out, to server"; flow:to_server; content:"needle"; sid:12;)
alert tcp $EXTERNAL_NET $HTTP_PORTS -> $HOME_NET any (msg:"web reply"; flow:to_client; content:"needle"; sid:13;)
alert tcp 10.0.0.1 any <> 8.8.8.8 any (msg:"either way"; content:"needle"; sid:14;)
alert udp any any -> any any (msg:"udp only"; content:"needle"; sid:15;)
alert tcp any any -> any ![80,443] (msg:"not web"; content:"needle"; sid:16;)
alert tcp any [1024:] -> any :1023 (msg:"high to low"; content:"needle"; sid:17;)
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flow, client_sids, server_sids", [
    # a home client to an external web server: requests from home (11, 12), replies from outside (13); the
    # replies go to port 40000, not 80 or 443 (16)
    (keys(6, "10.0.0.1", "8.8.8.8", 40000, 80), [11, 12, 14, 17], [13, 14, 16]),
    # the same flow with the roles swapped: the external host is the client
    (keys(6, "8.8.8.8", "10.0.0.1", 40000, 80), [14, 17], [14, 16]),
    # a home client to an external server on port 8080: not $HTTP_PORTS
    (keys(6, "10.0.0.1", "8.8.8.8", 40000, 8080), [14, 16], [14, 16]),
    # both inside: no EXTERNAL_NET
    (keys(6, "10.0.0.1", "10.0.0.2", 40000, 80), [17], [16]),
    # UDP: the tcp rules never hold
    (keys(17, "10.0.0.1", "8.8.8.8", 40000, 80), [15], [15]),
])
def test_engine_checks_the_header_per_flow_and_side(backend, flow, client_sids, server_sids):
    res = sur.load_text(HDR_RULES, "x.rules")
    assert res.problems == []
    eng = RuleEngine(res.rules, backend=backend)
    for side, want in ((0, client_sids), (1, server_sids)):
        fs = eng.flow_scanner("f", None, flow)
        fs.scan("raw", side, b"a needle here", 1, 1)
        fs.close()
        assert sorted(m.rule.rule_id for m in fs.alerts) == want, side
    fs = eng.flow_scanner("f", None)  # endpoints unknown: headers are not checked
    fs.scan("raw", 0, b"a needle here", 1, 1)
    fs.close()
    assert len(fs.alerts) == 6  # all but sid 13 (flow:to_client)


def test_header_verdicts_are_cached_per_flow_and_header():
    rules = sur.load_text("".join(f'alert tcp $HOME_NET any -> $EXTERNAL_NET any (content:"n{i}"; sid:{i};)\n'
                                  for i in range(1, 6)), "x").rules
    eng = RuleEngine(rules)
    assert len(eng.headers) == 1  # one header shared by five rules
    fs = eng.flow_scanner("f", None, keys(6, "10.0.0.1", "1.1.1.1", 1, 2))
    fs.scan("raw", 0, b"n1 n2 n3 n4 n5", 1, 1)
    fs.close()
    assert len(fs.alerts) == 5 and fs._header_ok == {0: (True, False)}


def test_header_through_the_pipeline(tmp_path):
    """The app layer hands each flow's endpoints to the rules (flow_scanner): a rule's header is checked."""
    path = tmp_path / "h.rules"
    path.write_text('alert tcp $HOME_NET any -> $EXTERNAL_NET any (msg:"out"; content:"needle"; sid:21;)\n'
                    'alert tcp any any -> any any (msg:"all"; content:"needle"; sid:22;)\n')
    engine, problems = build_engine([str(path)], bundled=False)
    assert problems == []
    cfg = AnalyzeConfig(app=AppLayerConfig(rules=engine))
    res = run(conversation(tmp_path / "n.pcap", [(0, b"a needle"), (1, b"\x00ok")], port=9999), cfg)
    assert [a["rule_id"] for a in res.alerts() if a.get("category") == "ids"] == [22]  # C and S are both home
