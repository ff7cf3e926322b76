"""DLP/WAF rules through the whole pipeline (issue 4's acceptance): captures built here, the bundled packs,
user sensors from the command line, and no alerts on clean real traffic."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pcapgen as g
from conftest import SAMPLES, SHARED, run, shared_files
from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols.applayer import AppLayerConfig
from nvpcap.rules import build_engine

C, S = "10.1.0.1", "10.1.0.2"
ENGINE, PROBLEMS = build_engine()
RULES = AnalyzeConfig(app=AppLayerConfig(rules=ENGINE))
ATTACK_CAPTURES = {"http__ndpi__WebattackSQLinj.pcap"}  # made for attacks: WAF alerts expected there


def conversation(path: Path, steps: list[tuple[int, bytes]], port: int = 80) -> Path:
    """A TCP conversation: handshake, each (side, bytes) step as one segment, FINs."""
    seq = [1001, 5001]
    pkts = [(0.0, g.tcp(C, 40001, S, port, "S", seq=1000)), (0.001, g.tcp(S, port, C, 40001, "SA", seq=5000, ack=1001)),
            (0.002, g.tcp(C, 40001, S, port, "A", seq=1001, ack=5001))]
    t = 0.003
    for side, data in steps:
        src, sp, dst, dp = (C, 40001, S, port) if side == 0 else (S, port, C, 40001)
        pkts.append((t, g.tcp(src, sp, dst, dp, "PA", seq=seq[side], ack=seq[1 - side], data=data)))
        seq[side] += len(data)
        t += 0.001
    pkts += [(t, g.tcp(C, 40001, S, port, "FA", seq=seq[0], ack=seq[1])),
             (t + 0.001, g.tcp(S, port, C, 40001, "FA", seq=seq[1], ack=seq[0] + 1)),
             (t + 0.002, g.tcp(C, 40001, S, port, "A", seq=seq[0] + 1, ack=seq[1] + 1))]
    return g.write(path, pkts)


def rule_alerts(res) -> list[dict]:
    return [a for a in res.alerts() if a.get("category") in ("dlp", "waf")]


def post(body: bytes) -> bytes:
    return b"POST /pay HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n" % len(body) + body


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_bundled_rules_load_without_problems():
    assert ENGINE is not None and PROBLEMS == []


def test_a_card_number_split_across_two_segments_is_found(tmp_path):
    request = post(b"name=jo&card=4532015112830366&cvv=123")
    cut = request.index(b"0151")  # the number is cut in two
    res = run(conversation(tmp_path / "c.pcap", [(0, request[:cut]), (0, request[cut:]), (1, OK)]), RULES)
    (alert,) = rule_alerts(res)
    assert alert["category"] == "dlp" and alert["context"] == "body" and alert["direction"] == "toserver"
    assert alert["snippet"].endswith("0366") and "4532" not in alert["snippet"]  # redacted: last four only
    assert alert["frame"] == 5  # the second data segment, where the match ends
    assert alert["community_id"] == res.flows.iloc[0]["community_id"]


def test_a_luhn_invalid_number_is_not_reported(tmp_path):
    res = run(conversation(tmp_path / "c.pcap", [(0, post(b"card=4532015112830367")), (1, OK)]), RULES)
    assert rule_alerts(res) == []


def test_an_ssn_in_a_gzip_chunked_response_is_found(tmp_path):
    body = gzip.compress(b"<html>" + b"filler " * 300 + b"employee SSN 536-22-1234 on file</html>")
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100]) for i in range(0, len(body), 100))
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n")
    request = b"GET /staff HTTP/1.1\r\nHost: hr\r\n\r\n"
    steps = [(0, request)] + [(1, response[i:i + 300]) for i in range(0, len(response), 300)]
    res = run(conversation(tmp_path / "s.pcap", steps), RULES)
    (alert,) = rule_alerts(res)
    assert (alert["rule_name"], alert["context"], alert["direction"]) == ("rule.ssn", "body", "toclient")
    assert alert["snippet"].endswith("1234")


@pytest.mark.parametrize("query, family", [
    (b"/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--", "sqli"),
    (b"/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "xss"),
])
def test_url_encoded_attacks_in_a_query_string_are_found(tmp_path, query, family):
    request = b"GET " + query + b" HTTP/1.1\r\nHost: app\r\n\r\n"
    res = run(conversation(tmp_path / "a.pcap", [(0, request), (1, OK)]), RULES)
    alerts = rule_alerts(res)
    assert alerts and all(a["category"] == "waf" and a["context"] == "url" for a in alerts)
    assert any(a["rule_name"].startswith(family) for a in alerts)


def test_clean_http_raises_nothing(tmp_path):
    request = b"GET /index.html?page=2&sort=name HTTP/1.1\r\nHost: www\r\nUser-Agent: Mozilla/5.0\r\n\r\n"
    page = b"<html><head><title>x</title></head><body><p>Order 12345, total 99.50</p></body></html>"
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % len(page) + page
    res = run(conversation(tmp_path / "ok.pcap", [(0, request), (1, response)]), RULES)
    assert rule_alerts(res) == []


CLEAN = [pytest.param(p, id=p.name) for p in shared_files() if p.name not in ATTACK_CAPTURES] + \
    [pytest.param(p, id=p.name) for p in sorted(SAMPLES.glob("*.pcap*")) + sorted((SAMPLES / "apps").glob("*.pcap"))]


@pytest.mark.parametrize("path", CLEAN)
def test_real_and_sample_captures_raise_no_dlp_or_waf_alert(path):
    assert rule_alerts(run(path, RULES)) == []


def test_the_attack_capture_raises_waf_alerts(shared_pcaps):
    # tshark -r http__ndpi__WebattackSQLinj.pcap -Y http.request -T fields -e http.request.uri: UNION SELECT and
    # information_schema probes in the query strings of several requests
    alerts = rule_alerts(run(SHARED / "http__ndpi__WebattackSQLinj.pcap", RULES))
    assert {a["rule_name"] for a in alerts} >= {"sqli.union_select"}
    assert all(a["category"] == "waf" and a["direction"] == "toserver" for a in alerts)


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nvpcap", "analyze", *map(str, args), "-q"], cwd=cwd,
                          capture_output=True, text=True)


SENSOR = """apiVersion: neuvector.com/v1
kind: NvDlpSecurityRule
metadata: {name: sensor.project}
spec:
  sensor:
    name: sensor.project
    rules:
    - name: rule.codename
      patterns:
      - {key: pattern, op: regex, value: 'project[ -]bluebird', context: body}
    - name: rule.broken
      patterns:
      - {key: pattern, op: regex, value: 'unclosed(', context: body}
"""


def test_user_sensors_load_beside_the_bundled_packs_and_bad_rules_are_reported(tmp_path):
    conversation(tmp_path / "c.pcap", [(0, post(b"memo: Project Bluebird starts monday")), (1, OK)])
    (tmp_path / "sensor.yaml").write_text(SENSOR)
    done = _cli("c.pcap", "--rules", "sensor.yaml", "-o", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0 and "rule.broken" in done.stderr and "Traceback" not in done.stderr
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    alerts = [r for r in records if r["event_type"] == "alert"]
    assert [(a["rule_name"], a["rule_id"]) for a in alerts] == [("rule.codename", 20000)]
    done = _cli("c.pcap", "--rules", "sensor.yaml", "--no-bundled-rules", "-o", "out2.jsonl", cwd=tmp_path)
    assert done.returncode == 0


def test_without_rules_nothing_is_scanned(tmp_path):
    conversation(tmp_path / "c.pcap", [(0, post(b"card=4532015112830366")), (1, OK)])
    done = _cli("c.pcap", "--no-bundled-rules", "-o", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0 and '"event_type":"alert"' not in (tmp_path / "out.jsonl").read_text()


def test_non_http_payload_is_scanned_raw_and_encrypted_is_not(tmp_path):
    # a Redis SET (RESP) carrying a card number: no parser decodes "body" for Redis, so the raw stream is scanned
    value = b"4532015112830366"
    cmd = b"*3\r\n$3\r\nSET\r\n$4\r\ncard\r\n$%d\r\n%s\r\n" % (len(value), value)
    res = run(conversation(tmp_path / "r.pcap", [(0, cmd), (1, b"+OK\r\n")], port=6379), RULES)
    assert res.flows.iloc[0]["app_proto"] == "redis"
    (alert,) = rule_alerts(res)
    assert (alert["context"], alert["app_proto"]) == ("raw", "redis")


CRS_CONF = r"""SecRule ARGS "@rx (?i)select\s+sleep" \
    "id:990002,phase:2,deny,msg:'paranoia two rule',severity:CRITICAL,tag:'paranoia-level/2'"
"""


def test_crs_rules_above_the_paranoia_level_load_only_when_asked(tmp_path):
    request = b"GET /q?x=1%20select%20sleep(5) HTTP/1.1\r\nHost: app\r\n\r\n"
    conversation(tmp_path / "c.pcap", [(0, request), (1, OK)])
    (tmp_path / "crs").mkdir()
    (tmp_path / "crs" / "custom.conf").write_text(CRS_CONF)
    names = []
    for level in ("1", "2"):
        done = _cli("c.pcap", "--rules", "crs", "--no-bundled-rules", "--crs-paranoia", level, "-o", f"o{level}.jsonl",
                    cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        names.append([json.loads(x).get("rule_name") for x in (tmp_path / f"o{level}.jsonl").read_text().splitlines()
                      if '"event_type":"alert"' in x and "Anomaly Score" not in x])
    assert names == [[], ["paranoia two rule"]]
