"""CRS request bodies as ModSecurity's body processors give them (rules/crs.py, rules/fields.py): the fields of
an application/x-www-form-urlencoded body are ARGS/ARGS_POST, each value and name alone (context "form"); an XML
body is XML:/* (context "xml"); a multipart/form-data body gives ARGS and FILES (tests/test_multipart.py); any other
body is neither. Before, a link naming ARGS and XML:/* scanned every request body whole, so `page=2&sort=x` in a
POST body was a Windows `sort` command after `&` (CRS 932115), and a JSON or binary upload was read as XML."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import run
from test_rules_pipeline import OK, conversation

from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols import httpforms as bodies
from nvpcap.rules import RuleEngine, build_engine, crs, fields, transforms
from nvpcap.rules.regex import hyperscan

BACKENDS = ["python"] + (["hyperscan"] if hyperscan is not None else [])
# the shape of CRS 932115 (its regex shortened), 942100-like on ARGS_POST only, and 921110-like on REQUEST_BODY
RULES = r"""
SecRule REQUEST_COOKIES|REQUEST_COOKIES_NAMES|ARGS_NAMES|ARGS|XML:/* "@rx (?:;|&|\|)\s*(?:sort|type|find)\b" \
    "id:932115,phase:2,block,t:none,msg:'windows command'"
SecRule ARGS_POST "@rx union\s+select" "id:900101,phase:2,block,t:none,t:urlDecodeUni,msg:'sqli in a form field'"
SecRule ARGS_GET "@rx union\s+select" "id:900102,phase:2,block,t:none,msg:'sqli in a query argument'"
SecRule REQUEST_BODY "@rx \bget\s+/" "id:900103,phase:2,block,t:none,msg:'request in the body'"
SecRule ARGS_POST_NAMES "@rx ^__proto__$" "id:900104,phase:2,block,t:none,msg:'prototype pollution'"
"""


def fired(engine: RuleEngine, *calls: tuple[str, bytes]) -> list[int]:
    fs = engine.flow_scanner(app="http")
    for n, (context, data) in enumerate(calls, 1):
        fs.scan(context, 0, data, n, n)
    fs.close()
    return sorted(m.rule.rule_id for m in fs.alerts if m.rule.rule_id < 949000)


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request) -> RuleEngine:
    res = crs.load_text(RULES, "t.conf")
    assert not res.problems
    return RuleEngine(res.rules, backend=request.param)


def test_form_fields_are_split_and_decoded_as_modsecurity_does():
    assert fields.form_args(b"page=2&sort=x&q=a%3Bcat+%2Fetc%2Fpasswd&&bad=%zz&flag") == [
        (b"page", b"2"), (b"sort", b"x"), (b"q", b"a;cat /etc/passwd"), (b"bad", b"%zz"), (b"flag", b"")]
    form = b"id=1&name=a+b"
    assert fields.select("select:a", form, "form") == [b"1", b"a b"]
    assert fields.select("select:ap", form, "form") == [b"1", b"a b"]
    assert fields.select("select:apn", form, "form") == [b"id", b"name"]
    assert fields.select("select:a:name", form, "form") == [b"a b"]
    # ARGS_GET has no item in a form, ARGS_POST none in a url, REQUEST_FILENAME none in a form
    assert fields.select("select:ag,agn,f,u", form, "form") == []
    assert fields.select("select:ap,apn", b"/x?id=1", "url") == []
    assert fields.select("select:ag", b"/x?id=1", "url") == [b"1"]


def test_links_name_the_contexts_of_their_variables():
    rules = {r.rule_id: r.patterns[0] for r in crs.load_text(RULES, "t.conf").rules}
    assert rules[932115].context == "form+header+url+xml"
    assert rules[932115].transforms == ("select:a,an,c,cn",)
    assert (rules[900101].context, rules[900101].transforms) == ("form", ("select:ap", "urlDecodeUni"))
    assert transforms.effective(rules[900101].transforms, "form") == ("select:ap",)  # form fields are decoded
    assert (rules[900102].context, rules[900102].transforms) == ("url", ("select:ag",))
    assert (rules[900103].context, rules[900103].transforms) == ("body", ())


def test_a_form_field_named_like_a_command_is_not_a_command(engine):
    assert fired(engine, ("form", b"page=2&sort=x&type=new")) == []
    assert fired(engine, ("form", b"cmd=x%26+type+c%3A%5Cboot.ini")) == [932115]  # a value holding "& type"


def test_args_post_and_args_get_each_see_their_own_arguments(engine):
    attack = b"id=1+union+select+password"
    assert fired(engine, ("form", attack)) == [900101]
    assert fired(engine, ("url", b"/item?" + attack)) == [900102]
    assert fired(engine, ("form", b"__proto__=1&a=2")) == [900104]


def test_bodies_are_scanned_by_body_variables_only(engine):
    # REQUEST_BODY reads the body as sent; the ARGS/XML link does not read a body that is neither form nor XML
    assert fired(engine, ("body", b"page=2&sort=x GET /admin")) == [900103]
    assert fired(engine, ("body", b'{"filter": "a & sort"}')) == []
    assert fired(engine, ("xml", b"<cmd>a | sort</cmd>")) == [932115]


def test_content_types_choose_the_body_processor():
    assert bodies.body_view(b"application/x-www-form-urlencoded; charset=UTF-8") == bodies.FORM
    assert bodies.body_view(b"Application/JSON") == bodies.JSON
    assert bodies.body_view(b"application/vnd.api+json") == bodies.JSON
    assert bodies.body_view(b"text/xml; charset=utf-8") == bodies.XML
    assert bodies.body_view(b"application/soap+xml") == bodies.XML
    assert bodies.body_view(b"Multipart/Form-Data; boundary=x") == bodies.MULTIPART
    for other in (b"application/atom+xml", b"multipart/mixed; boundary=x", b"text/plain", b"application/jsonp",
                  b"", None):
        assert bodies.body_view(other) is None


def test_json_leaves_are_arguments_named_by_their_path():
    unit = bodies.form_unit(bodies.JSON, b'{"user": {"name": "a & sort", "ids": [1, 2.5, true, null]}, "q": "x=y"}')
    assert fields.form_args(unit) == [
        (b"json.user.name", b"a & sort"), (b"json.user.ids.0", b"1"), (b"json.user.ids.1", b"2.5"),
        (b"json.user.ids.2", b"true"), (b"json.user.ids.3", b"null"), (b"json.q", b"x=y")]
    # cut short or hostile: the whole body is one argument (its content is still seen), never an exception
    assert fields.form_args(bodies.form_unit(bodies.JSON, b'{"user": "a')) == [(b"json", b'{"user": "a')]
    deep = b"[" * 100_000
    assert fields.form_args(bodies.form_unit(bodies.JSON, deep)) == [(b"json", deep)]
    wide = b"[" + b",".join([b"1"] * 5000) + b"]"
    assert len(fields.form_args(bodies.form_unit(bodies.JSON, wide))) == bodies.MAX_LEAVES
    assert bodies.form_unit(bodies.FORM, b"a=1&b=2") == b"a=1&b=2"


# ---- through the pipeline: the HTTP parser hands each request body to the view its Content-Type gives ----

def posted(tmp_path: Path, name: str, ctype: bytes, body: bytes, config: AnalyzeConfig) -> set[int]:
    request = (b"POST /search HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
               b"Content-Type: " + ctype + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    res = run(conversation(tmp_path / f"{name}.pcap", [(0, request), (1, OK)]), config)
    return {a["rule_id"] for a in res.alerts() if a.get("category") == "waf"}


def test_real_crs_is_quiet_on_ordinary_posts(tmp_path, real_crs):
    form = b"page=2&sort=price&type=new&q=red+shoes&comment=Hello%2C+world"
    assert posted(tmp_path, "form", b"application/x-www-form-urlencoded", form, real_crs) == set()
    json_body = b'{"page": 2, "sort": "price", "type": "new", "filter": {"q": "red shoes & socks"}}'
    assert posted(tmp_path, "json", b"application/json", json_body, real_crs) == set()
    xml = b"<?xml version='1.0'?><search><sort>price</sort><type>new</type></search>"
    assert posted(tmp_path, "xml", b"text/xml", xml, real_crs) == set()


def test_real_crs_finds_attacks_in_form_json_and_xml_bodies(tmp_path, real_crs):
    sqli = "1 union select password from users--"
    form = b"q=" + quote(sqli).encode() + b"&page=2"
    assert {942190, 949110} <= posted(tmp_path, "form", b"application/x-www-form-urlencoded", form, real_crs)
    json_body = b'{"filter": {"q": "%s"}}' % sqli.encode()
    assert {942190, 949110} <= posted(tmp_path, "json", b"application/json; charset=utf-8", json_body, real_crs)
    xml = b"<search><q>%s</q></search>" % sqli.encode()
    assert {942190, 949110} <= posted(tmp_path, "xml", b"application/xml", xml, real_crs)
    # the same text in a body ModSecurity gives no ARGS for: ARGS links do not read it
    assert 942190 not in posted(tmp_path, "text", b"text/plain", sqli.encode(), real_crs)


def test_fields_are_gathered_only_when_a_rule_reads_them():
    """The bundled packs read no "form" or "xml": no JSON is parsed and no body kept for them (RuleEngine.contexts
    says which contexts some pattern reads; the app layer hands a parser's content only to those)."""
    bundled, _ = build_engine([])
    assert {"url", "header", "body"} <= bundled.contexts and not {"form", "xml", "dns.query"} & bundled.contexts
    crs_only = RuleEngine(crs.load_text(RULES, "t.conf").rules)
    assert {"form", "xml", "url", "header", "body"} <= crs_only.contexts and "raw" not in crs_only.contexts

    class Out:
        def __init__(self, contexts):
            self.contexts = contexts

        def scans(self, context):
            return context in self.contexts

    assert bodies.view_for(b"application/json", Out(bundled.contexts)) is None
    assert bodies.view_for(b"text/xml", Out(bundled.contexts)) is None
    assert bodies.view_for(b"application/json", Out(crs_only.contexts)).kind == bodies.JSON
    assert bodies.view_for(b"text/plain", Out(crs_only.contexts)) is None
