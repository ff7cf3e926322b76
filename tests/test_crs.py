"""OWASP CRS / ModSecurity SecRule files (nvpcap/rules/crs.py) and the transformations (nvpcap/rules/transforms.py):
parsing, operators, paranoia, variables, transformations, what is refused, and alerts through the pipeline on
captures built here. The rules below are written for these tests in the style of CRS's REQUEST-941/942 files
(OWASP CRS is Apache-2.0); none is a verbatim copy of a CRS rule."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import CRS_RULES, run
from test_rules_pipeline import OK, conversation

from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols.applayer import AppLayerConfig
from nvpcap.rules import LoadResult, RuleEngine, RuleIds, build_engine, crs, load_files
from nvpcap.rules import transforms as tf
from nvpcap.rules.regex import compile_python

try:
    import hyperscan  # noqa: F401
    BACKENDS = ["hyperscan", "python"]
except ImportError:  # pragma: no cover
    BACKENDS = ["python"]

CONF = r"""
# ------------------------------------------------------------------------
# modelled on OWASP CRS REQUEST-942-APPLICATION-ATTACK-SQLI.conf (Apache-2.0)
# ------------------------------------------------------------------------
SecComponentSignature "OWASP_CRS/test"
SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 1" "id:942011,phase:1,pass,nolog,skipAfter:END-REQUEST-942"

SecRule REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|REQUEST_COOKIES_NAMES|ARGS_NAMES|ARGS|XML:/* \
    "@detectSQLi" \
    "id:942100,\
    phase:2,\
    block,\
    t:none,t:utf8toUnicode,t:urlDecodeUni,t:removeNulls,\
    msg:'SQL Injection Attack Detected via libinjection',\
    tag:'paranoia-level/1',\
    severity:'CRITICAL'"

SecRule ARGS_NAMES|ARGS|REQUEST_FILENAME \
    "@rx (?i)\bunion\b[\s\S]{1,100}?\bselect\b" \
    "id:942901,\
    phase:2,\
    block,\
    capture,\
    t:none,t:urlDecodeUni,t:replaceComments,\
    msg:'SQL Injection Attack: UNION query, with comments replaced',\
    logdata:'Matched Data: %{TX.0} found within %{MATCHED_VAR_NAME}: %{MATCHED_VAR}',\
    tag:'application-multi',\
    tag:'attack-sqli',\
    tag:'paranoia-level/1',\
    ver:'OWASP_CRS/test',\
    severity:'CRITICAL',\
    setvar:'tx.sql_injection_score=+%{tx.critical_anomaly_score}'"

SecRule REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|ARGS "@pm sleep( benchmark( pg_sleep(" \
    "id:942902,phase:2,block,t:none,t:lowercase,msg:'SQL Injection Attack: time-based function',\
    tag:'paranoia-level/1',severity:'WARNING'"

SecRule ARGS "@rx (?i)[\"'`]\s*or\s*[\"'`]?\d+[\"'`]?\s*=" \
    "id:942903,phase:2,block,t:none,msg:'SQL tautology (PL2)',tag:'paranoia-level/2',severity:'CRITICAL'"

SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 2" "id:942013,phase:1,pass,nolog,skipAfter:END-REQUEST-942"
SecMarker "END-REQUEST-942"

# modelled on REQUEST-941-APPLICATION-ATTACK-XSS.conf: needs t:htmlEntityDecode
SecRule ARGS|ARGS_NAMES "@rx (?i)<script[^>]*>" \
    "id:941901,phase:2,block,t:none,t:urlDecodeUni,t:htmlEntityDecode,msg:'XSS script tag (entities decoded)',\
    tag:'paranoia-level/1',severity:'CRITICAL'"
SecRule ARGS|ARGS_NAMES "@rx (?i)<script[^>]*>" \
    "id:941902,phase:2,block,t:none,msg:'XSS script tag (raw)',tag:'paranoia-level/1',severity:'ERROR'"

# a chain: an admin path and a scanner user agent
SecRule REQUEST_FILENAME "@contains /admin" \
    "id:913901,phase:1,block,chain,msg:'scanner on admin',severity:'NOTICE'"
    SecRule REQUEST_HEADERS:User-Agent "@rx (?i)nikto|sqlmap" "t:none,t:removeWhitespace"

SecRule RESPONSE_BODY "@rx ORA-\d{5}" "id:951901,phase:4,block,t:none,msg:'Oracle error leak',severity:'ERROR'"
"""


def load(text: str = CONF, paranoia: int | None = None) -> crs.LoadResult:
    return crs.load_text(text, "t.conf", RuleIds(), paranoia)


def by_id(result) -> dict:
    return {r.rule_id: r for r in result.rules}


# ---- parsing ----

def test_directives_join_continuations_skip_comments_and_unquote():
    text = ('# comment \\\n  SecRule ARGS "@rx a\\"b\\d" \\\n    "id:1,\\\n    msg:\'x, y\'"\n\n'
            "SecAction 'id:2,pass'\n")
    assert crs.directives(text) == [(2, ["SecRule", "ARGS", '@rx a"b\\d', "id:1,    msg:'x, y'"]),
                                    (6, ["SecAction", "id:2,pass"])]


def test_actions_with_quoted_commas_and_escaped_quotes():
    assert crs.parse_actions(r"id:1, phase:2,block,msg:'a, b \'c\'',t:none,t:lowercase,tag:'x/1'") == [
        ("id", "1"), ("phase", "2"), ("block", None), ("msg", "a, b 'c'"), ("t", "none"), ("t", "lowercase"),
        ("tag", "x/1")]


def test_variables_split_outside_regex_selectors():
    assert crs.split_variables("ARGS|!REQUEST_COOKIES:/^(a|b)$/|XML:/*|&ARGS") == [
        "ARGS", "!REQUEST_COOKIES:/^(a|b)$/", "XML:/*", "&ARGS"]


def test_chains_and_silently_skipped_directives():
    chains, problems = crs.parse(CONF)
    assert problems == []
    heads = [c[0].action("id") for c in chains]
    assert heads == ["942011", "942100", "942901", "942902", "942903", "942013", "941901", "941902", "913901",
                     "951901"]
    (chain,) = [c for c in chains if c[0].action("id") == "913901"]
    assert len(chain) == 2 and chain[1].variables == "REQUEST_HEADERS:User-Agent"


def test_unterminated_quote_is_a_problem_not_a_crash():
    res = load('SecRule ARGS "@rx a" "id:1\nSecRule ARGS "@rx b" "id:2,msg:\'ok\'"\n')
    assert [r.rule_id for r in res.rules] == [2]
    assert len(res.problems) == 1 and "unterminated" in res.problems[0]


# ---- compilation ----

def test_the_subset_at_paranoia_1():
    res = load()
    rules = by_id(res)
    assert sorted(rules) == [913901, 941901, 941902, 942901, 942902, 951901]
    assert len(res.problems) == 1 and "942100" in res.problems[0] and "@detectSQLi" in res.problems[0]
    r = rules[942901]
    assert (r.category, r.severity, r.direction, r.name) == (
        "waf", 5, "request", "SQL Injection Attack: UNION query, with comments replaced")
    assert r.app_proto == crs.HTTP_APPS and "attack-sqli" in r.tags
    (p,) = r.patterns
    # each of ARGS_NAMES|ARGS|REQUEST_FILENAME alone (rules/fields.py), then the transformations; ARGS are the
    # url's query arguments and the fields of a form body
    assert (p.context, p.negate, p.transforms) == ("form+url", False,
                                                   ("select:a,an,f", "urlDecodeUni", "replaceComments"))
    assert rules[942902].severity == 3 and rules[913901].severity == 2


def test_paranoia_filter():
    assert 942903 not in by_id(load(paranoia=1))
    assert 942903 in by_id(load(paranoia=2))
    assert 942903 in by_id(crs.load_text(CONF, "t", None, 4))


def test_module_default_paranoia(monkeypatch):
    monkeypatch.setattr(crs, "PARANOIA", 2)
    assert 942903 in by_id(load())


def test_pm_is_an_alternation_of_escaped_literals():
    (p,) = by_id(load())[942902].patterns
    rx = compile_python(p.regex)
    assert rx.search(b"x=PG_SLEEP(5)") and rx.search(b"sleep(1)") and not rx.search(b"sleep 1")
    assert p.context == "form+header+url" and p.transforms == ("select:a,c",)  # cookies + args; lowercase is free


def test_negation_and_chain_patterns():
    res = load('SecRule REQUEST_FILENAME "@rx \\.php$" "id:10,msg:\'php\',chain"\n'
               '  SecRule REQUEST_HEADERS "!@rx (?i)x-internal" "t:none"\n')
    (r,) = res.rules
    assert [(p.negate, p.context) for p in r.patterns] == [(False, "url"), (True, "header")]
    res = load('SecRule ARGS "!@rx foo" "id:11,msg:\'only negated\'"\n')
    assert not res.rules and "negated" in res.problems[0]


@pytest.mark.parametrize("variables, context, direction", [
    ("REQUEST_URI", "url", "request"),
    ("ARGS_GET|ARGS_GET_NAMES|QUERY_STRING|REQUEST_BASENAME", "url", "request"),
    ("ARGS|ARGS_NAMES", "form+url", "request"),  # query arguments and form fields
    ("ARGS_POST|ARGS_POST_NAMES", "form", "request"),
    ("REQUEST_HEADERS:Referer|REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/", "header", "request"),
    ("REQUEST_BODY|ARGS_POST|XML:/*", "body+form+xml", "request"),
    ("RESPONSE_BODY", "body", "response"),
    ("RESPONSE_HEADERS", "header", "response"),
    ("ARGS|REQUEST_HEADERS", "form+header+url", "request"),
    ("ARGS|RESPONSE_BODY", "body+form+url", "any"),
    ("ARGS_GET|TX:foo|MATCHED_VARS", "url", "request"),  # variables without content are dropped
])
def test_variables_map_to_contexts(variables, context, direction):
    (r,) = load(f'SecRule {variables} "@rx abc" "id:20,msg:\'v\'"\n').rules
    assert (r.patterns[0].context, r.direction) == (context, direction)


@pytest.mark.parametrize("line, reason", [
    ('SecRule &ARGS "@rx 1" "id:30"', "counts"),
    ('SecRule TX:score "@rx 1" "id:31"', "TX"),
    ('SecRule ARGS "@pmFromFile words.data" "id:32"', "@pmFromFile"),
    ('SecRule ARGS "@detectXSS" "id:33"', "@detectXSS"),
    ('SecRule REMOTE_ADDR "@ipMatch 10.0.0.0/8" "id:34"', "@ipMatch"),
    ('SecRule ARGS "@beginsWith x" "id:35"', "@beginsWith"),
    ('SecRule ARGS "@rx ^%{tx.allowed}$" "id:36"', "macro"),
    ('SecRule ARGS "@rx a" "id:37,t:md5"', "t:md5"),
    ('SecRule ARGS "@rx (unclosed" "id:38"', "regex"),
    ('SecRule ARGS "@rx a" "msg:\'no id\'"', "id"),
    ('SecRule ARGS "@rx a" "id:39"\nSecRule ARGS "@rx b" "id:39"', "already loaded"),
])
def test_unsupported_rules_are_reported(line, reason):
    res = load(line + "\n")
    assert reason in " ".join(res.problems)
    assert len(res.problems) == 1


def test_transformations_per_link_and_none_resets():
    (r,) = load('SecRule ARGS "@rx a" "id:40,t:htmlEntityDecode,t:none,t:lowercase,t:cmdLine,chain"\n'
                '  SecRule REQUEST_BODY "@rx b" "t:removeNulls"\n').rules
    assert [p.transforms for p in r.patterns] == [("select:a", "cmdLine"), ("removeNulls",)]
    assert crs.APPROXIMATE_TAG not in r.tags  # removeNulls is applied to body streams, call by call
    (r,) = load('SecRule REQUEST_BODY "@rx b" "id:41,t:removeNulls,t:htmlEntityDecode"\n').rules
    assert crs.APPROXIMATE_TAG in r.tags  # a body link with a transformation the stream does not get


def test_dispatch_by_suffix_and_directory(tmp_path):
    (tmp_path / "REQUEST-942.conf").write_text(CONF)
    (tmp_path / "words.data").write_text("x\n")
    for arg in (tmp_path / "REQUEST-942.conf", tmp_path):
        res = load_files([str(arg)], RuleIds())
        assert 942901 in by_id(res) and len(res.problems) == 1


# ---- transformations (examples from the ModSecurity reference manual's definitions) ----

@pytest.mark.parametrize("name, given, expected", [
    ("urlDecode", b"a%20b+c%2", b"a b c%2"),
    ("urlDecodeUni", b"%u0041%uff1c%3c", b"A<<"),
    ("htmlEntityDecode", b"&lt;script&gt; &#x41;&#66 &quot;&nbsp;&amp;", b'<script> AB "\xa0&'),
    ("removeNulls", b"a\x00b\x00", b"ab"),
    ("replaceNulls", b"a\x00b", b"a b"),
    ("compressWhitespace", b"a \t\r\n\xa0 b", b"a b"),
    ("removeWhitespace", b"un ion\tsel\nect", b"unionselect"),
    ("trim", b" \t x y \n", b"x y"),
    ("replaceComments", b"UNION/**/SELECT/*x*/1 */ /*open", b"UNION SELECT 1 */  "),
    ("removeComments", b"UNION/**/SELECT<!--x-->1 -- rest", b"UNIONSELECT1  "),
    ("removeCommentsChar", b"a/*b*/c--d#e", b"abcde"),
    ("cmdLine", b"C^at \"/etc/passwd\"; W'h'o\\ami ,x (y)", b"cat/etc/passwd whoami x(y)"),
    ("normalisePath", b"/a/b/../c//./d", b"/a/c/d"),
    ("normalisePathWin", b"c:\\a\\..\\b", b"c:/b"),
    ("utf8toUnicode", "a\u00e9\u4e2d".encode(), b"a%u00e9%u4e2d"),
    ("jsDecode", b"\\x3cscript\\u003e\\n\\101\\q", b"<script>\nAq"),
    ("cssDecode", b"ja\\vascript \\3c \\000041", b"javascript <A"),
    ("escapeSeqDecode", b"a\\x41\\101\\n\\q", b"aAA\n\\q"),
    ("base64Decode", b"VGVzdENhc2U=", b"TestCase"),
    ("base64Decode", b"VGVzdA", b"Test"),
    ("hexDecode", b"414243", b"ABC"),
    ("sqlHexDecode", b"SELECT 0x414243", b"SELECT ABC"),
    ("lowercase", b"UnIoN", b"union"),
    # the ModSecurity reference manual's definitions, on the cases the faster forms take apart
    ("cmdLine", b"A \t/b  ,(c ; d", b"a/b(c d"),  # runs of whitespace and , ; are one space, then none before / (
    ("cmdLine", b"x\n\n  \\y", b"x y"),
    ("compressWhitespace", b" \xa0a\r\n", b" a "),  # leading and trailing runs stay, as one space
    ("normalisePath", b"/", b"/"),
    ("normalisePath", b"a/b/", b"a/b/"),
    ("normalisePath", b"./a", b"a"),
    ("normalisePath", b"a/.b", b"a/.b"),
    ("base64Decode", b"VG Vz\ndA==", b"Test"),
    ("urlDecode", b"a+b", b"a b"),
    ("urlDecodeUni", b"a+%41", b"a A"),
])
def test_transformation(name, given, expected):
    assert tf.apply((name,), given) == expected


def test_transformations_are_bounded_and_chained():
    assert len(tf.apply(("hexEncode",), b"x" * (tf.MAX_INPUT * 2))) == tf.MAX_OUTPUT
    assert tf.apply(("urlDecodeUni", "htmlEntityDecode"), b"%26lt%3Bb%26gt%3B") == b"<b>"
    assert tf.effective(("urlDecodeUni", "htmlEntityDecode", "lowercase"), "url") == ("htmlentitydecode",)
    assert tf.effective(("urlDecodeUni",), "header") == ("urldecodeuni",)
    assert tf.effective(("urlDecodeUni",), "body") == ()
    assert tf.effective(("lowercase", "removeNulls", "compressWhitespace"), "body") == (
        "removenulls", "compresswhitespace")
    assert tf.effective(("removeNulls", "htmlEntityDecode"), "body") == ()  # not chunk-safe: none applied


@pytest.mark.parametrize("name", ["urlDecode", "urlDecodeUni", "htmlEntityDecode", "jsDecode", "cssDecode",
                                  "escapeSeqDecode", "replaceComments", "removeComments", "normalisePath",
                                  "removeNulls", "utf8toUnicode", "sqlHexDecode", "trim", "compressWhitespace"])
def test_transformations_with_nothing_to_do_return_their_input(name):
    data = b"GET /index.html HTTP/1.1 Host: example"
    assert tf.apply((name,), data) is data  # the engine groups chains by their output: no copy, no comparison


def test_chain_set_gives_what_apply_gives():
    chains = (("urldecodeuni", "cmdline"), ("urldecodeuni",), ("urldecodeuni", "cmdline", "normalizepath"),
              ("utf8tounicode", "urldecodeuni", "cmdline"), ("htmlentitydecode", "jsdecode"), ("base64decode",))
    cs = tf.ChainSet(chains)
    assert len(cs.steps) == 9  # shared prefixes computed once
    for data in (b"", b"plain", b"/a/../b?x=%3Cscript%3E;cat%20/etc/passwd", "caf\u00e9 &lt;".encode(),
                 b"\\x41 VGVzdA==", b"A" * (tf.MAX_INPUT + 10)):
        assert cs.apply(data) == [tf.apply(c, data) for c in chains]


@pytest.mark.parametrize("backend", BACKENDS)
def test_chains_with_the_same_output_alert_in_chain_order(backend):
    """Chains whose outputs are equal are scanned once, but their hits are processed as separate scans would
    be: the plain patterns first, then each chain in the order of their databases' names (alert order and
    the anomaly score's rule list depend on it)."""
    res = load('SecRule ARGS "@rx <script" "id:3,msg:\'js\',t:none,t:jsDecode,severity:\'CRITICAL\'"\n'
               'SecRule ARGS "@rx <script" "id:2,msg:\'entities\',t:none,t:htmlEntityDecode,severity:\'CRITICAL\'"\n'
               'SecRule ARGS "@rx <script" "id:4,msg:\'comments\',t:none,t:replaceComments,severity:\'CRITICAL\'"\n'
               'SecRule ARGS "@rx <script" "id:1,msg:\'plain\',t:none,severity:\'CRITICAL\'"\n')
    engine = RuleEngine(res.rules, backend=backend)
    for url, fired in ((b"/q?x=<script>", [1, 949110, 2, 3, 4]),  # every chain gives the url back
                       (b"/q?x=&lt;script&gt;", [2, 949110]),
                       (b"/q?x=<scr/**/ipt>", [])):
        fs = engine.flow_scanner(app="http")
        fs.scan("url", 0, url, 1, 1)
        fs.close()
        assert [m.rule.rule_id for m in fs.alerts] == fired, url
    fs = engine.flow_scanner(app="http")
    fs.scan("url", 0, b"/q?x=<script>", 1, 1)
    fs.scan("url", 0, b"/q?y=<script>", 2, 2)
    fs.close()
    assert [m.count for m in fs.alerts if m.rule.rule_id < 5] == [2, 2, 2, 2]


# ---- the engine applies the chains ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_scans_url_after_the_chain(backend):
    engine = RuleEngine(load().rules, backend=backend)
    assert engine.problems == []
    fs = engine.flow_scanner(app="http")
    fs.scan("url", 0, b"/q?x=&lt;script&gt;alert(1)", 1, 1)
    fs.close()
    assert detections(fs.alerts) == [941901]
    assert fs.alerts[0].snippet.lower().startswith("<script")
    fs = engine.flow_scanner(app="http")
    fs.scan("url", 0, b"/q?id=1 UNION/**/SELECT password", 1, 1)
    fs.scan("url", 0, b"/q?x=<script>", 2, 2)
    fs.close()
    assert sorted(detections(fs.alerts)) == [941901, 941902, 942901]
    fs = engine.flow_scanner(app="mysql")  # CRS rules hold in HTTP flows only
    fs.scan("url", 0, b"/q?x=<script>", 1, 1)
    fs.close()
    assert fs.alerts == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_applies_chunk_safe_transformations_to_body_streams(backend):
    res = load('SecRule REQUEST_BODY "@rx union select" "id:50,msg:\'b\',t:none,t:removeNulls,t:compressWhitespace"\n'
               'SecRule REQUEST_BODY "@rx union select" "id:51,msg:\'raw\'"\n')
    engine = RuleEngine(res.rules, backend=backend)
    fs = engine.flow_scanner(app="http")
    fs.scan("body", 0, b"q=1 u\x00n\x00ion\t\t", 1, 1)  # the match spans the two calls
    fs.scan("body", 0, b"sel\x00ect x", 2, 2)
    fs.close()
    assert [(m.rule.rule_id, m.frame, m.context) for m in fs.alerts] == [(50, 2, "body")]
    assert fs.alerts[0].snippet == "union select"


# ---- through the pipeline ----

@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("crs") / "REQUEST-942-TEST.conf"
    path.write_text(CONF)
    engine, problems = build_engine([str(path)], bundled=False)
    assert len(problems) == 1 and "942100" in problems[0]
    return AnalyzeConfig(app=AppLayerConfig(rules=engine))


def get(target: bytes, headers: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: app\r\n" + headers + b"\r\n"


ANOMALY = {949110, 959100}  # CRS's blocking evaluation (engine.CRS_ANOMALY_RULES): tested on its own below


def detections(alerts) -> list[int]:
    """The rule ids of the CRS detection rules that fired (the anomaly-score alerts left out)."""
    return [m.rule.rule_id for m in alerts if m.rule.rule_id not in ANOMALY]


def waf_alerts(res) -> list[tuple[int, str, str]]:
    return sorted((a["rule_id"], a["context"], a["direction"]) for a in res.alerts()
                  if a.get("category") == "waf" and a["rule_id"] not in ANOMALY)


def test_url_encoded_sqli_in_a_query_string_fires(tmp_path, config):
    res = run(conversation(tmp_path / "a.pcap",
                           [(0, get(b"/item?id=1%20UNION%2F%2A%2A%2FSELECT%20password%20FROM%20users")), (1, OK)]),
              config)
    assert waf_alerts(res) == [(942901, "url", "toserver")]
    (alert,) = [a for a in res.alerts() if a.get("category") == "waf" and a["rule_id"] not in ANOMALY]
    assert alert["severity"] == 5 and alert["rule_name"].startswith("SQL Injection Attack")


def test_clean_request_raises_nothing(tmp_path, config):
    steps = [(0, get(b"/index.html?page=2&sort=name&q=union+station", b"User-Agent: Mozilla/5.0\r\n")),
             (1, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")]
    res = run(conversation(tmp_path / "ok.pcap", steps), config)
    assert waf_alerts(res) == []


def test_html_entity_encoded_xss_fires_only_thanks_to_the_transformation(tmp_path, config):
    res = run(conversation(tmp_path / "x.pcap", [(0, get(b"/s?q=%26lt%3Bscript%26gt%3Balert(1)")), (1, OK)]), config)
    assert waf_alerts(res) == [(941901, "url", "toserver")]  # not 941902: it sees no "<script"


def test_chain_needs_both_links(tmp_path, config):
    res = run(conversation(tmp_path / "c.pcap", [(0, get(b"/admin/login", b"User-Agent: sql map/1.5\r\n")), (1, OK)]),
              config)
    # t:removeWhitespace makes "sqlmap"; the url link completes the rule (the parser gives headers first)
    assert waf_alerts(res) == [(913901, "url", "toserver")]
    res = run(conversation(tmp_path / "d.pcap", [(0, get(b"/login", b"User-Agent: sqlmap/1.5\r\n")), (1, OK)]), config)
    assert waf_alerts(res) == []


def test_response_body_rule(tmp_path, config):
    page = b"<html>error ORA-00933: SQL command not properly ended</html>"
    response = b"HTTP/1.1 500 Error\r\nContent-Length: %d\r\n\r\n" % len(page) + page
    res = run(conversation(tmp_path / "r.pcap", [(0, get(b"/x")), (1, response)]), config)
    assert waf_alerts(res) == [(951901, "body", "toclient")]


# ---- real CRS rules ----
# Three rules quoted from OWASP CRS 4.21.0-dev, rules/REQUEST-942-APPLICATION-ATTACK-SQLI.conf
# (https://github.com/coreruleset/coreruleset, Apache License 2.0; some tag lines left out).
REAL = r"""
SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 1" "id:942011,phase:1,pass,nolog,tag:'OWASP_CRS',ver:'OWASP_CRS/4.21.0-dev',skipAfter:END-REQUEST-942-APPLICATION-ATTACK-SQLI"
SecRule REQUEST_FILENAME|REQUEST_COOKIES|REQUEST_COOKIES_NAMES|ARGS_NAMES|ARGS|XML:/* "@rx (?i:sleep\s*?\(.*?\)|benchmark\s*?\(.*?\,.*?\))" \
    "id:942160,\
    phase:2,\
    block,\
    capture,\
    t:none,t:urlDecodeUni,t:replaceComments,\
    msg:'Detects blind sqli tests using sleep() or benchmark()',\
    logdata:'Matched Data: %{TX.0} found within %{MATCHED_VAR_NAME}: %{MATCHED_VAR}',\
    tag:'attack-sqli',\
    tag:'paranoia-level/1',\
    ver:'OWASP_CRS/4.21.0-dev',\
    severity:'CRITICAL',\
    setvar:'tx.sql_injection_score=+%{tx.critical_anomaly_score}',\
    setvar:'tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}'"

SecRule REQUEST_COOKIES|REQUEST_COOKIES_NAMES|ARGS_NAMES|ARGS|XML:/* "@rx (?i)(?:select|;)[\s\x0b]+(?:benchmark|if|sleep)[\s\x0b]*?\([\s\x0b]*?\(?[\s\x0b]*?[0-9A-Z_a-z]+" \
    "id:942170,\
    phase:2,\
    block,\
    capture,\
    t:none,t:urlDecodeUni,\
    msg:'Detects SQL benchmark and sleep injection attempts including conditional queries',\
    tag:'paranoia-level/1',\
    severity:'CRITICAL'"

SecRule REQUEST_COOKIES|REQUEST_COOKIES_NAMES|ARGS_NAMES|ARGS|XML:/* "@rx ^(?i:-0000023456|4294967295|4294967296|2147483648|2147483647|0000012345|-2147483648|-2147483649|0000023456|2.2250738585072007e-308|2.2250738585072011e-308|1e309)$" \
    "id:942220,\
    phase:2,\
    block,\
    capture,\
    t:none,t:urlDecodeUni,\
    msg:'Looking for integer overflow attacks, these are taken from skipfish, except 2.2.2250738585072011e-308 is the \"magic number\" crash',\
    tag:'paranoia-level/1',\
    severity:'CRITICAL'"
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_crs_rules_load_compile_and_match(backend):
    res = load(REAL)
    assert res.problems == []
    rules = by_id(res)
    assert sorted(rules) == [942160, 942170, 942220]
    assert rules[942220].name.endswith('the "magic number" crash')
    assert all(r.patterns[0].context == "form+header+url+xml" and crs.APPROXIMATE_TAG in r.tags
               for r in rules.values())
    engine = RuleEngine(res.rules, backend=backend)
    assert engine.problems == []
    fs = engine.flow_scanner(app="http")
    fs.scan("url", 0, b"/item?id=1;select sleep(5)", 1, 1)
    fs.scan("header", 0, b"GET / HTTP/1.1\r\nCookie: q=benchmark/**/(1000000,md5(1))\r\n\r\n", 2, 2)
    fs.close()
    assert sorted(detections(fs.alerts)) == [942160, 942170]
    fs = engine.flow_scanner(app="http")
    fs.scan("url", 0, b"/sleep/well?page=2", 1, 1)
    fs.close()
    assert fs.alerts == []




def test_a_real_crs_release_loads_and_every_skipped_rule_has_a_reason():
    if not CRS_RULES.is_dir():
        pytest.skip("Debian's modsecurity-crs is not installed")
    import collections
    import re

    by_level = {level: crs_load_dir(CRS_RULES, level) for level in (1, 2)}
    loaded = by_level[1]
    reasons = collections.Counter(re.sub(r"^.*?rule \d+: ", "", p).split(" (")[0].split(":")[0] for p in loaded.problems)
    print(f"CRS at paranoia 1: {len(loaded.rules)} rules imported, {len(loaded.problems)} skipped: {dict(reasons)}")
    # CRS 3.3 at paranoia 1 has well over 100 detection rules; what a regex engine can run is imported
    assert len(loaded.rules) > 50
    assert all("skipped" in p or "not supported" in p or "cannot" in p for p in loaded.problems)
    assert len(by_level[2].rules) > len(loaded.rules)  # paranoia 2 adds rules
    engine = RuleEngine(loaded.rules)  # and the imported rules compile
    assert not [p for p in engine.problems if "compile" in p.lower() and "fallback" not in p.lower()]
    # a dropped pattern is shown cut (930120's is 44,094 characters): a message stays readable
    assert engine.problems == []  # 930120's 44,094-character phrase list too: split for Hyperscan
    assert max(len(p) for p in loaded.problems) < 600


def crs_load_dir(root: Path, level: int):
    out = LoadResult()
    ids = RuleIds()
    for conf in sorted(root.glob("*.conf")):
        out.extend(crs.load_file(conf, ids, level))
    return out


def test_pm_from_file_reads_phrases_next_to_the_rule_file(tmp_path):
    (tmp_path / "agents.data").write_text("# scanners\n\nsqlmap\nnikto scanner\n  (hydra)\n")
    conf = tmp_path / "r.conf"
    conf.write_text('SecRule REQUEST_HEADERS:User-Agent "@pmFromFile agents.data" "id:9001,phase:1,deny,t:lowercase"\n'
                    'SecRule ARGS "@pmf http://example.com/list.data" "id:9002,phase:2,deny"\n'
                    'SecRule ARGS "@pmFromFile missing.data" "id:9003,phase:2,deny"\n')
    res = crs.load_file(conf, RuleIds(), 1)
    assert [r.rule_id for r in res.rules] == [9001]
    regex = res.rules[0].patterns[0].regex
    for phrase in (b"sqlmap", b"nikto scanner", b"(hydra)"):  # one per line, spaces kept, comments out
        assert re.search(regex.encode(), b"ua: " + phrase + b"/1.0")
    assert not re.search(regex.encode(), b"# scanners")
    problems = " ".join(res.problems)
    assert "remote phrase files are not fetched" in problems and "missing.data: cannot read" in problems


def test_fast_paths_give_the_manuals_results():
    """remove_whitespace and cmd_line use bytes.translate, compress_whitespace and cmd_line collapse runs with
    bytes.replace, replace_comments uses bytes.find, and url/utf8 decoders return early when there is nothing
    to decode: on random input they equal the regex forms of the manual's definitions."""
    import random

    from nvpcap.rules import transforms as tf

    rng = random.Random(3)
    for _ in range(3000):
        d = bytes(rng.choice(b"\\\"'^ab ;,/(\t\n%+41\xc3\xa9\xa0") for _ in range(rng.randint(0, 40)))
        assert tf.remove_whitespace(d) == re.sub(rb"[ \t\n\r\f\v\xa0]+", b"", d)
        want = re.sub(rb"[ \t\n\r\f\v]+", b" ", re.sub(rb"[\\\"'^]", b"", d).replace(b",", b" ").replace(b";", b" "))
        assert tf.cmd_line(d) == re.sub(rb"[ \t\n\r\f\v]+(?=[/(])", b"", want).lower()
        assert tf.url_decode(d) == re.sub(rb"%([0-9a-fA-F]{2})", lambda m: bytes((int(m.group(1), 16),)),
                                          d.replace(b"+", b" "))
        c = bytes(rng.choice(b"/* a\t\r\n\xa0") for _ in range(rng.randint(0, 40)))
        assert tf.replace_comments(c) == re.sub(rb"/\*.*?(?:\*/|\Z)", b" ", c, flags=re.DOTALL), c
        assert tf.compress_whitespace(c) == re.sub(rb"[ \t\n\r\f\v\xa0]+", b" ", c), c


SCORED = """
SecRule ARGS "@rx notice_word" "id:61,phase:2,block,msg:'n',severity:'NOTICE'"
SecRule ARGS "@rx warning_word" "id:62,phase:2,block,msg:'w',severity:'WARNING'"
SecRule ARGS "@rx critical_word" "id:63,phase:2,block,msg:'c',severity:'CRITICAL'"
SecRule RESPONSE_BODY "@rx leak_word" "id:64,phase:4,block,msg:'e',severity:'ERROR'"
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("urls, expected", [
    ([b"/a?q=notice_word"], []),  # 2 < 5
    ([b"/a?q=notice_word", b"/b?q=warning_word"], [(949110, "total score 5: rules 61, 62")]),  # 2 + 3
    ([b"/a?q=critical_word"], [(949110, "total score 5: rules 63")]),
    ([b"/a?q=critical_word", b"/b?q=notice_word"], [(949110, "total score 5: rules 63")]),  # once per flow
])
def test_crs_anomaly_scores_add_up_to_the_blocking_rule(backend, urls, expected):
    engine = RuleEngine(load(SCORED).rules, backend=backend)
    fs = engine.flow_scanner(app="http")
    for n, url in enumerate(urls, 1):
        fs.scan("url", 0, url, n, n)
    fs.close()
    assert [(m.rule.rule_id, m.snippet) for m in fs.alerts if m.rule.rule_id in ANOMALY] == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_outbound_threshold_is_four(backend):
    engine = RuleEngine(load(SCORED).rules, backend=backend)
    fs = engine.flow_scanner(app="http")
    fs.scan("body", 1, b"<p>leak_word</p>", 3, 3)  # ERROR = 4 on the response side
    fs.close()
    assert [(m.rule.rule_id, m.side, m.frame) for m in fs.alerts] == [(64, 1, 3), (959100, 1, 3)]


# ---- the url/header unit cache (engine._UnitCache) ----

CACHE_URLS = [b"/q?x=&lt;script&gt;alert(1)", b"/q?id=1 UNION/**/SELECT password", b"/a?q=notice_word",
              b"/b?q=warning_word", b"/a?q=critical_word", b"/admin/x", b"/index.html", b"/item?id=1;select sleep(5)",
              b"/q?x=<script>", b"/p?f=..%2f..%2fetc/passwd;cat /etc/passwd", b"/sleep/well?page=2"]
CACHE_HEADERS = [b"Host: a\r\nUser-Agent: nikto\r\n", b"Host: a\r\nUser-Agent: Mozilla/5.0\r\n",
                 b"Cookie: q=benchmark/**/(1000000,md5(1))\r\n", b"User-Agent: sql map\r\nX: <script>\r\n",
                 b"Host: b\r\nAccept: */*\r\n", b"Content-Type: text/xml; a=application/json\r\nX: y\r\n"]


def cache_flows(seed: int, n: int) -> list[tuple[str, list[tuple[str, int, bytes]]]]:
    """Flows (app, calls) drawing url and header units from small pools, so units repeat across and within
    flows, with some body calls between them."""
    import random

    rng = random.Random(seed)
    flows = []
    for _ in range(n):
        calls = []
        for _ in range(rng.randint(1, 5)):
            calls.append(("url", 0, rng.choice(CACHE_URLS)))
            calls.append(("header", rng.choice((0, 0, 1)), rng.choice(CACHE_HEADERS)))
            if rng.random() < 0.3:
                calls.append(("body", rng.choice((0, 1)), b"x=1 union  select leak_word ORA-12345"))
        flows.append((rng.choice(("http", "http", "http", "mysql")), calls))
    return flows


def scan_flows(engine: RuleEngine, flows: list) -> list[list[tuple]]:
    out = []
    for app, calls in flows:
        fs = engine.flow_scanner(app=app)
        for frame, (ctx, side, data) in enumerate(calls, 1):
            fs.scan(ctx, side, data, frame, frame * 10)
        fs.close()
        out.append([(m.rule.rule_id, m.context, m.side, m.frame, m.ts_ns, m.count, m.snippet) for m in fs.alerts])
    return out


def cached_and_not(rules: list, backend: str, flows: list) -> tuple[RuleEngine, list, list]:
    """The alerts of the flows with the engine's unit cache and without it (the same compiled engine)."""
    from nvpcap.rules import engine as engine_mod

    engine = RuleEngine(rules, backend=backend)
    cache = engine.unit_cache
    with_cache = scan_flows(engine, flows)
    engine.unit_cache = engine_mod._UnitCache(0, 0)
    without = scan_flows(engine, flows)
    engine.unit_cache = cache
    return engine, with_cache, without


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_unit_cache_gives_the_alerts_of_no_cache(backend):
    """Cached units still go through each flow's rule state: the same alerts, frames, counts, snippets, CRS
    anomaly scores and negations as scanning every unit afresh."""
    rules = load(CONF + SCORED).rules + load(REAL).rules
    flows = cache_flows(5, 120)
    engine, with_cache, without = cached_and_not(rules, backend, flows)
    assert with_cache == without
    assert sum(map(len, with_cache)) > 200  # the inputs do exercise the rules
    assert engine.unit_cache.hits > engine.unit_cache.misses > 0


def test_the_unit_cache_gives_the_alerts_of_no_cache_with_real_crs():
    if not CRS_RULES.is_dir() or "hyperscan" not in BACKENDS:
        pytest.skip("Debian's modsecurity-crs or hyperscan is not installed")
    flows = cache_flows(6, 150)
    engine, with_cache, without = cached_and_not(crs_load_dir(CRS_RULES, 1).rules, "hyperscan", flows)
    assert with_cache == without
    assert sum(map(len, with_cache)) > 100
    assert engine.unit_cache.hits > 0


def test_the_unit_cache_stays_within_its_bounds():
    import gc
    import tracemalloc

    from nvpcap.rules import engine as engine_mod

    engine = RuleEngine(load(CONF + SCORED).rules, unit_cache=8)
    cache = engine.unit_cache

    def scan_urls(urls: list[bytes]) -> None:
        fs = engine.flow_scanner(app="http")
        for n, url in enumerate(urls):
            fs.scan("url", 0, url, n, n)
        fs.close()

    scan_urls([b"/q?x=<script>%d" % i for i in range(50)])
    assert len(cache) == 8 and cache.evictions == 42 and cache.misses == 50
    scan_urls([b"/q?x=<script>49", b"/q?x=<script>0"])  # the last one is kept, the first evicted long ago
    assert cache.hits == 1 and cache.misses == 51
    cache.clear()
    scan_urls([b"/" + b"a" * engine_mod.UNIT_CACHE_MAX_UNIT])  # too long to be kept
    assert len(cache) == 0 and cache.bytes == 0
    # the byte bound: entries go once their estimated bytes pass it
    cache.entries, cache.max_bytes = 10_000, 20_000
    scan_urls([b"/q?x=<script>&lt;script&gt;%d" % i for i in range(500)])
    assert 0 < cache.bytes <= 20_000 and 10 < len(cache) < 500
    # the estimate covers what the entries really hold (units made here: the cache keeps them alive)
    cache.clear()
    cache.max_bytes = 1 << 30
    urls = [b"/q?x=<script>&lt;script&gt;UNION/**/SELECT%d" % i for i in range(300)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        scan_urls([bytes(bytearray(u)) for u in urls])
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == 300
    assert 0.5 * cache.bytes < held < 1.3 * cache.bytes, (held, cache.bytes)


def test_the_unit_cache_keeps_hyperscan_and_the_fallback_in_agreement():
    if "hyperscan" not in BACKENDS:
        pytest.skip("hyperscan is not installed")
    rules = load(CONF + SCORED).rules + load(REAL).rules
    flows = cache_flows(8, 80)
    hs = cached_and_not(rules, "hyperscan", flows)[1]
    assert hs == cached_and_not(rules, "python", flows)[1]
