"""`nvpcap rules list|lint|test` through the real command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_gitleaks import AWS, CONFIG, GHP, SUBSET
from test_rules_pipeline import OK, conversation, post

SENSOR = """apiVersion: neuvector.com/v1
kind: NvDlpSecurityRule
metadata: {name: sensor.project}
spec:
  sensor:
    name: sensor.project
    rules:
    - name: project.codename
      patterns: [{key: pattern, op: regex, value: 'project[ -]nightingale', context: body}]
    - name: project.broken
      patterns: [{key: pattern, op: regex, value: '(unclosed', context: body}]
"""


def nvpcap(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nvpcap", "rules", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_list_json(tmp_path):
    (tmp_path / "gl.toml").write_text(CONFIG)
    done = nvpcap("list", "--no-bundled-rules", "--rules", "gl.toml", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["id"], r["name"]) for r in rows] == [(20000, "aws-access-token"), (20001, "github-pat"),
                                                   (20002, "generic-api-key")]
    assert rows[0] == {"id": 20000, "name": "aws-access-token", "category": "dlp", "severity": 3,
                       "contexts": ["body"], "validator": "entropy>3", "source": "gl.toml:gitleaks"}


def test_list_table_with_bundled_packs(tmp_path):
    done = nvpcap("list", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert "rule.ssn" in done.stdout and "sqli.union_select" in done.stdout


def test_lint(tmp_path):
    (tmp_path / "gl.toml").write_text(CONFIG)
    (tmp_path / "sensor.yaml").write_text(SENSOR)
    done = nvpcap("lint", "gl.toml", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "gl.toml: 3 rules ok, 0 problems\n"
    done = nvpcap("lint", "gl.toml", "sensor.yaml", str(SUBSET), "missing.toml", cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("sensor.yaml: sensor 'sensor.project' rule 'project.broken': pattern 1 /(unclosed/")
               for line in lines), lines
    assert any("rule 'pkcs12-file': path-only rule" in line for line in lines)
    assert any(line.startswith("missing.toml: cannot read") for line in lines)
    assert "sensor.yaml: 1 rule ok, 1 problem" in lines and "missing.toml: 0 rules ok, 1 problem" in lines
    assert nvpcap("lint", cwd=tmp_path).returncode == 2  # no file: usage error


def test_test_against_a_capture(tmp_path):
    (tmp_path / "gl.toml").write_text(CONFIG)
    body = b'{"aws": "%s", "gh": "%s", "card": "4532015112830366"}' % (AWS, GHP)
    conversation(tmp_path / "leak.pcap", [(0, post(body)), (1, OK)])
    done = nvpcap("test", "gl.toml", "--against", "leak.pcap", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["file_rules"] == 3 and out["file_rules_matched"] == 2
    by_name = {a["name"]: a for a in out["alerts"]}
    assert by_name["aws-access-token"]["from_file"] and by_name["aws-access-token"]["first_frame"] == 4
    assert by_name["github-pat"]["flows"] == 1 and by_name["github-pat"]["snippet"].startswith("ghp_")
    assert not by_name["rule.visa"]["from_file"]  # the bundled packs run too
    done = nvpcap("test", "gl.toml", "--against", "leak.pcap", "--no-bundled-rules", cwd=tmp_path)
    assert done.returncode == 0 and "aws-access-token" in done.stdout and "rule.visa" not in done.stdout


def test_test_exits_1_when_no_rule_of_the_file_matches(tmp_path):
    (tmp_path / "gl.toml").write_text(CONFIG)
    conversation(tmp_path / "clean.pcap", [(0, post(b"card=4532015112830366")), (1, OK)])
    done = nvpcap("test", "gl.toml", "--against", "clean.pcap", cwd=tmp_path)
    assert done.returncode == 1 and "0 of the 3 rules of gl.toml matched" in done.stdout
    assert "rule.visa" in done.stdout  # bundled alerts are still shown
    assert nvpcap("test", "gl.toml", "--against", "nope.pcap", cwd=tmp_path).returncode == 2


def test_other_formats_by_extension(tmp_path):
    (tmp_path / "local.rules").write_text('alert http any any -> any any (msg:"codename"; content:"nightingale"; '
                                          "nocase; sid:1000001; rev:1;)\n")
    (tmp_path / "sensor.yaml").write_text(SENSOR.split("    - name: project.broken")[0])
    done = nvpcap("lint", "local.rules", "sensor.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    conversation(tmp_path / "c.pcap", [(0, post(b"about Project Nightingale")), (1, OK)])
    for f in ("local.rules", "sensor.yaml"):
        done = nvpcap("test", f, "--against", "c.pcap", "--no-bundled-rules", "--format", "json", cwd=tmp_path)
        assert done.returncode == 0 and json.loads(done.stdout)["file_rules_matched"] == 1, (f, done.stderr)
