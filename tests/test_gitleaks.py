"""gitleaks TOML configs as DLP rules: RE2 translation, entropy/secretGroup/keywords/allowlists, problems, and
secrets found through the whole pipeline."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run as run_capture
from test_rules_pipeline import OK, conversation, post, rule_alerts

from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols.applayer import AppLayerConfig
from nvpcap.rules import RuleEngine, RuleIds, build_engine
from nvpcap.rules.gitleaks import go_regex, load_text

# the shape of gitleaks' default config (config/gitleaks.toml), three of its rules
CONFIG = r"""
title = "test config"

[allowlist]
description = "global allow list"
paths = ['''gitleaks\.toml''']
stopwords = ["nottherealkey"]

[[rules]]
id = "aws-access-token"
description = "Identified a pattern that may indicate AWS credentials."
regex = '''\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b'''
entropy = 3
keywords = ["a3t", "akia", "asia", "abia", "acca"]
tags = ["aws"]
[[rules.allowlists]]
regexes = ['''.+EXAMPLE$''']

[[rules]]
id = "github-pat"
description = "Uncovered a GitHub Personal Access Token."
regex = '''ghp_[0-9a-zA-Z]{36}'''
entropy = 3
keywords = ["ghp_"]

[[rules]]
id = "generic-api-key"
description = "Detected a Generic API Key."
regex = '''(?i)[\w.-]{0,50}?(?:access|auth|(?-i:[Aa]pi|API)|credential|creds|key|passw(?:or)?d|secret|token)(?:[ \t\w.-]{0,20})[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)[\x60'"\s=]{0,5}([\w.=-]{10,150}|[a-z0-9][a-z0-9+/]{11,}={0,3})(?:[\x60'"\s;]|\\[nr]|$)'''
entropy = 3.5
keywords = ["access", "api", "auth", "key", "credential", "creds", "passwd", "password", "secret", "token"]
[[rules.allowlists]]
regexTarget = "match"
regexes = ['''(?i)api[_-]?version''']
stopwords = ["example", "000000"]
"""

AWS = b"AKIAZ7QHRT2LMXW4PKV6"
GHP = b"ghp_R2b7XkQ9vLm4Tz8PwYc3Nd6Hf1Js5Ga0EuQi"
GENERIC = b"x9Kq2LmP7vR4tY8wZ3nB6cD1"


def rules():
    loaded = load_text(CONFIG, "cfg.toml")
    assert loaded.problems == []
    return loaded.rules


@pytest.fixture(scope="module", params=["hyperscan", "python"])
def engine(request):
    eng = RuleEngine(rules(), backend=request.param)
    assert eng.problems == []
    return eng


def names(engine: RuleEngine, *chunks: bytes, context: str = "body") -> list[str]:
    fs = engine.flow_scanner("f")
    for i, c in enumerate(chunks, 1):
        fs.scan(context, 0, c, i, i)
    fs.close()
    return sorted(m.rule.name for m in fs.alerts)


def test_rules_map_to_dlp_rules_in_the_user_range():
    aws, ghp, generic = rules()
    assert [r.rule_id for r in (aws, ghp, generic)] == [20000, 20001, 20002]
    assert aws.name == "aws-access-token" and aws.category == "dlp" and aws.validator == "entropy"
    assert aws.entropy == 3.0 and aws.keywords[1] == "akia" and aws.tags == ("aws",)
    assert aws.patterns[0].context == "body" and aws.source == "cfg.toml:gitleaks"
    assert len(aws.allowlists) == 2  # its own and the global one (stopwords; paths ignored)
    assert generic.allowlists[0].target == "match" and "example" in generic.allowlists[0].stopwords


def test_go_regex_translation():
    assert go_regex(r"ghp_[a-z]{3}") == r"(?-is:ghp_[a-z]{3})"  # RE2 defaults inside the caseless engine
    assert go_regex(r"(?i)key\z") == r"(?i-s:key\z)"
    assert go_regex(r"a(?i)b") == r"(?-is:a(?i:b))"
    assert go_regex(r"[[:digit:]]\Qa.b\E\x{41}") == r"(?-is:[0-9]a\.b\x41)"
    # RE2 keeps a flag past | to the end of its group (gitleaks' curl-auth-header rule)
    assert go_regex(r"""x(?:"(?i)ab"|'(?i)cd')""") == r"""(?-is:x(?:"(?i:ab")|(?i:'(?i:cd'))))"""
    for bad in (r"\pL+", r"(?U)a+", r"(ab", r"[ab"):
        with pytest.raises(ValueError):
            go_regex(bad)


def test_secrets_are_found(engine):
    body = b'{"aws": "%s", "token": "%s", "service_api_key": "%s"}' % (AWS, GHP, GENERIC)
    assert names(engine, body) == ["aws-access-token", "generic-api-key", "github-pat"]


def test_case_is_kept(engine):  # the engine is caseless for NeuVector rules; gitleaks regexes are not
    assert names(engine, b"id " + AWS.lower() + b" " + GHP.upper() + b" ") == []


def test_entropy_threshold_applies_to_the_secret(engine):
    assert names(engine, b"api_key=aaaaaaaaaaaaaaab1 ") == []  # low entropy
    assert names(engine, b"api_key=qwErtyuIopasdFghjklz ") == []  # no digit: gitleaks' rule for generic ids
    assert names(engine, b"api_key=" + GENERIC + b" ") == ["generic-api-key"]


def test_allowlists(engine):
    assert names(engine, b"key AKIAIOSFODNN7EXAMPLE ") == []  # rule allowlist regex on the secret
    assert names(engine, b"api_key=EXAMPLE" + GENERIC + b" ") == []  # stopword in the secret
    assert names(engine, b"x-api-version: 2023x9Kq2LmP7vR4 ") == []  # regexTarget match
    assert names(engine, b"token=nottherealkey" + GENERIC + b" ") == []  # global stopword
    assert names(engine, GHP[:4] + b"nottherealkeyQ9vLm4Tz8PwYc3Nd6Hf1 ") == []


def test_keywords_must_be_in_the_match():
    cfg = CONFIG.replace('keywords = ["ghp_"]', 'keywords = ["github"]')
    eng = RuleEngine(load_text(cfg, "k.toml").rules, backend="hyperscan")
    assert names(eng, GHP + b" ") == []


def test_unusable_rules_are_reported_and_the_rest_load():
    cfg = CONFIG + r"""
[[rules]]
id = "broken"
regex = '''(unclosed'''

[[rules]]
id = "unicode"
regex = '''\p{Greek}+'''

[[rules]]
id = "pkcs12-file"
path = '''(?i)(?:^|\/)[^\/]+\.p(?:12|fx)$'''

[[rules]]
description = "no id"
regex = "x"

[[rules]]
id = "bad-group"
regex = '''tok_([a-z]+)'''
secretGroup = 2

[[rules]]
id = "bad-allowlist"
regex = '''tok_[a-z]+'''
[rules.allowlist]
regexes = ['''(''']
"""
    loaded = load_text(cfg, "bad.toml", RuleIds())
    assert [r.name for r in loaded.rules] == ["aws-access-token", "github-pat", "generic-api-key"]
    text = "\n".join(loaded.problems)
    assert len(loaded.problems) == 6, text
    for name, reason in [("'broken'", "missing )"), ("'unicode'", "Unicode classes"), ("'pkcs12-file'", "path-only"),
                         ("#7", "no id"), ("'bad-group'", "secretGroup 2"), ("'bad-allowlist'", "allowlist 1")]:
        assert any(f"rule {name}" in p and reason in p for p in loaded.problems), (name, text)
    assert load_text("rules = [", "x.toml").problems[0].startswith("x.toml: not valid TOML")
    assert "extend" in load_text('[extend]\nuseDefault = true\n[[rules]]\nid="a"\nregex="abc"\n', "e.toml").problems[0]


def test_secrets_through_the_pipeline(tmp_path):
    cfg = tmp_path / "gitleaks.toml"
    cfg.write_text(CONFIG)
    engine, problems = build_engine([str(cfg)], bundled=False)
    assert problems == []
    config = AnalyzeConfig(app=AppLayerConfig(rules=engine))
    body = b'{"aws": "%s", "gh": "%s", "example": "AKIAIOSFODNN7EXAMPLE"}' % (AWS, GHP)
    request = post(body)
    cut = request.index(GHP[10:14])  # the token is split across two segments
    res = run_capture(conversation(tmp_path / "h.pcap", [(0, request[:cut]), (0, request[cut:]), (1, OK)]), config)
    alerts = {a["rule_name"]: a for a in rule_alerts(res)}
    assert set(alerts) == {"aws-access-token", "github-pat"}
    assert alerts["github-pat"]["frame"] == 5 and alerts["github-pat"]["snippet"].startswith("ghp_*")
    assert alerts["aws-access-token"]["rule_id"] == 20000 and alerts["aws-access-token"]["context"] == "body"
    # a cleartext non-HTTP protocol: the raw payload is scanned with the body rules
    raw = b"HELLO\r\nset service_api_key: " + GENERIC + b"\r\n"
    res = run_capture(conversation(tmp_path / "r.pcap", [(0, raw), (1, b"+OK\r\n")], port=7777), config)
    assert [a["rule_name"] for a in rule_alerts(res)] == ["generic-api-key"]


SUBSET = Path(__file__).parent / "data" / "gitleaks-subset.toml"


@pytest.mark.parametrize("backend", ["hyperscan", "python"])
def test_the_hardest_rules_of_the_default_config(backend):
    loaded = load_text(SUBSET.read_text(), "subset.toml")
    assert loaded.problems == [("subset.toml: rule 'pkcs12-file': path-only rule: traffic has no file paths: "
                                "rule skipped")]
    eng = RuleEngine(loaded.rules, backend=backend)
    assert eng.problems == []
    assert names(eng, b'run: curl https://x.io -H "Authorization: Bearer x9Kq2LmP7vR4tY8wZ3nB" \n') == [
        "curl-auth-header"]  # (?i) mid-branch, RE2 flags kept past |
    assert names(eng, b"curl -u admin:changeme https://x.io\n") == []  # rule allowlist
    key = (b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
           b"aFDrBz9vFqU4yz3vDc1C9tNNYn0Fz3ep4J7D9T6RXWaqxd1T3oAj9JVj3cvEqJ0Y\n-----END RSA PRIVATE KEY-----\n")
    assert names(eng, key[:70], key[70:]) == ["private-key"]
    assert names(eng, b'{"sha": "sha256~Zx9Kq2LmP7vR4tY8wZ3nB6cD1aQ5eF0gH2iJ3kL4mN7"}') == ["openshift-user-token"]
    # global allowlist regex (true/false/null), regexTarget match (api_version), low entropy
    assert names(eng, b'{"password": "true", "api_version": "2023x9Kq2LmP7vR4abc", "token": "aaaaaaaaaaaa"}') == []
    assert names(eng, b"https://1a2b3c4d:9f8e7d6c@gems.contribsys.com/ ") == ["sidekiq-sensitive-url"]
    assert names(eng, b"tok s.abcdefghijklmnopqrstuvwx ") == []  # vault: allowlisted letters-only form
