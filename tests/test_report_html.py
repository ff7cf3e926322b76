"""HTML reports: hostile strings from captures stay text, nothing is loaded from the network, and the analysis
collector's totals match a hand count."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import SAMPLES
from nvpcap.pipeline import analyze_file
from nvpcap.report.analysis import AnalysisCollector
from nvpcap.report.html import (render_analysis_report, render_analysis_report_html, render_check_report,
                                render_check_report_html)
from nvpcap.summary import run_summary
import pcapgen

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
SSTI = "{{7*7}}"
HOSTILE = [SCRIPT, IMG, SSTI]
EVIL_HOST = f"evil{SCRIPT}.example"
EVIL_URL = f"/login?q={IMG}"
EVIL_GROUP = f"web{IMG}"


def _violation(fp: str, vtype: str, sev: int, bytes_: int, first_seen: float, **extra) -> dict:
    v = {
        "fingerprint": fp, "type": vtype, "severity": sev,
        "severity_name": {1: "info", 2: "low", 3: "medium", 4: "high", 5: "critical"}[sev],
        "action": "violate", "accepted": False, "from_group": EVIL_GROUP, "to_group": "external", "proto": "tcp",
        "port": 443, "app": "ssl", "message": f"{EVIL_GROUP} -> external: tcp/443 (ssl) {SSTI}",
        "flows": 3, "packets": 30, "bytes": bytes_, "denied_packets": 0, "first_seen": first_seen,
        "last_seen": first_seen + 5, "clients": ["10.0.0.1"], "servers": ["93.184.216.34"],
        "server_names": [EVIL_HOST],
        "evidence": [{"community_id": "1:abc=", "pcap_filename": f"b{SCRIPT}.pcap", "first_frame": 3,
                      "last_frame": 11, "src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "93.184.216.34",
                      "dest_port": 443, "ts": first_seen}],
        "closest_rule": {"id": 10001, "from": EVIL_GROUP, "to": "db", "kind": "app", "ports": ["tcp/5432"],
                         "applications": ["postgresql"]},
        "suggested_rule": {"from": EVIL_GROUP, "to": "external", "kind": "port", "ports": ["tcp/443"],
                           "applications": []},
        "rule_id": None, "rule_name": None, "snippet": None,
    }
    v.update(extra)
    return v


def hostile_result() -> dict:
    """A check result as Contract 1 describes it, with attacker-controlled strings wherever a capture reaches."""
    t0 = 1700000000.0
    violations = [
        _violation("aaaa000000000001", "external_destination", 4, 5000, t0 + 10),
        _violation("aaaa000000000002", "external_destination", 4, 100, t0 + 50),
        _violation("aaaa000000000003", "external_destination", 4, 90000, t0 + 20),
        _violation("bbbb000000000001", "waf", 5, 700, t0 + 30, from_group="Host:10.0.0.1", to_group="web",
                   port=80, app="http", rule_id=49001, rule_name=f"XSS {SCRIPT}",
                   snippet=f"GET {EVIL_URL} Host: {EVIL_HOST}", suggested_rule=None,
                   message=f"WAF: {EVIL_URL}"),
        _violation("cccc000000000001", "new_port", 2, 42, t0 + 90, to_group="db", port=6379, app=None),
    ]
    return {
        "tool": {"name": "nvpcap", "version": "0.1.0"}, "kind": "check", "mode": "monitor", "verdict": "fail",
        "fail_on": "any",
        "baseline": {"path": "baseline.yaml", "rules": 12, "learned_from": ["week1/a.pcap", f"week1/{SCRIPT}.pcap"]},
        "rule_packs": [{"name": "bundled:dlp", "rules": 4}, {"name": f"user:{IMG}", "rules": 1}],
        "inputs": [{"file": f"week2/{IMG}.pcap", "format": "pcap", "compression": None, "linktypes": [1],
                    "packets": 123, "flows": 1000, "accounted": True, "first_ts": t0, "last_ts": t0 + 100,
                    "issues": []}],
        "capture_quality": {"packets": 123,
                            "outcomes": {"decoded": 110, "malformed-tcp-flags": 3, "truncated": 4,
                                         "unsupported-linktype": 6},
                            "issues": [{"file": f"{SCRIPT}.pcap", "offset": 4096, "kind": "truncated-record",
                                        "message": f"record cut {IMG}"}]},
        "totals": {"flows": 1000, "flows_checked": 990, "flows_allowed": 950, "flows_violating": 40,
                   "flows_ignored": 10, "violations": 5, "accepted": 0, "denied_packets": 0,
                   "first_ts": t0, "last_ts": t0 + 100},
        "violations": violations,
        "graph": {"nodes": [{"id": EVIL_GROUP, "kind": "group"}, {"id": "db", "kind": "group"},
                            {"id": "external", "kind": "external"}, {"id": "Host:10.0.0.1", "kind": "host"}],
                  "edges": [{"from": EVIL_GROUP, "to": "db", "status": "baseline", "flows": 10,
                             "label": "postgresql tcp/5432"},
                            {"from": EVIL_GROUP, "to": "external", "status": "new", "flows": 3,
                             "label": f"ssl tcp/443 {SCRIPT}"},
                            {"from": "Host:10.0.0.1", "to": EVIL_GROUP, "status": "violation", "flows": 1,
                             "label": "http tcp/80"}]},
        "hostnames": {"93.184.216.34": [EVIL_HOST], "10.0.0.2": ["www.example.com"]},
    }


class _Scan(HTMLParser):
    """Collects what a browser would treat as markup: tags, attributes, script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.in_script = False
        self.scripts: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.in_script = tag == "script"
        if self.in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def _scan(html: str) -> _Scan:
    p = _Scan()
    p.feed(html)
    p.close()
    return p


@pytest.fixture(scope="module")
def check_html() -> str:
    return render_check_report_html(hostile_result())


def test_hostile_strings_are_escaped(check_html: str) -> None:
    # the raw markup never appears; its escaped form does
    assert SCRIPT not in check_html
    assert "<img" not in check_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in check_html
    assert "&lt;img src=x onerror=alert(2)&gt;" in check_html
    # Jinja does not evaluate template syntax that arrives as data
    assert SSTI in check_html and not re.search(r">\s*49\s*<|\b49\)", check_html)
    scan = _scan(check_html)
    assert [t for t, _ in scan.tags if t == "img"] == []
    assert all(not k.startswith("on") for _, attrs in scan.tags for k in attrs)
    assert len(scan.scripts) == 1 and "alert(" not in scan.scripts[0]
    text = "".join(scan.text)
    for s in (SCRIPT, IMG, SSTI, EVIL_URL, EVIL_HOST, EVIL_GROUP):
        assert s in text  # shown as text, exactly


def test_no_external_references(check_html: str) -> None:
    scan = _scan(check_html)
    for tag, attrs in scan.tags:
        for name, value in attrs.items():
            assert not re.search(r"https?:|//", value or "", re.I) or name == "content", (tag, name, value)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", check_html, re.I)
    assert "http://" not in check_html and "https://" not in check_html
    metas = [a for t, a in scan.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert len(metas) == 1
    csp = metas[0]["content"]
    for part in ("default-src 'none'", "style-src 'unsafe-inline'", "script-src 'unsafe-inline'", "img-src data:"):
        assert part in csp
    assert not [t for t, a in scan.tags if t in ("link", "iframe", "object", "embed", "img")]
    assert not [a for t, a in scan.tags if t == "script" and "src" in a]


def test_check_report_content_and_order(check_html: str, tmp_path: Path) -> None:
    text = " ".join(" ".join(_scan(check_html).text).split())
    # verdict and totals come first, then violations, graph, timeline, quality, hostnames, versions
    order = [check_html.index(f'id="{i}"') for i in ("verdict", "totals", "violations", "graph-svg", "timeline",
                                                    "capture-quality", "hostnames", "versions")]
    assert order == sorted(order)
    assert "Verdict: FAIL" in text
    # one section per violation type, each a sortable table, each violation a <details>
    assert check_html.count('class="vgroup"') == 3
    assert check_html.count('<tr class="violation">') == 5
    assert check_html.count("<details>") == 5
    assert check_html.count('class="sortable violations"') == 3
    # worst type first: waf (critical), external_destination (high), new_port (low)
    assert check_html.index("<h3>waf") < check_html.index("<h3>external_destination") < check_html.index(
        "<h3>new_port")
    # evidence, closest and suggested rule
    assert "1:abc=" in text and "3&ndash;11" in check_html
    assert "id: 10001" in text and "tcp/443" in text
    # capture quality: counters and the file issue
    for s in ("malformed-tcp-flags", "unsupported-linktype", "truncated-record", "4,096"):
        assert s in text
    # hostnames beside IPs, versions of tool and rule packs
    assert "93.184.216.34 (evil" in text
    assert "bundled:dlp" in text and "0.1.0" in text
    # graph: the new and violating edges are red, the baseline edge grey
    assert check_html.count('class="edge new"') == 1 and check_html.count('class="edge violation"') == 1
    assert check_html.count('class="edge baseline"') == 1
    # timeline: one dot per violation
    assert check_html.count('<circle class="dot') == 5
    out = tmp_path / "sub" / "report.html"
    render_check_report(hostile_result(), str(out))
    assert out.read_text(encoding="utf-8") == check_html


def test_pass_report_without_violations() -> None:
    result = hostile_result()
    result.update(verdict="pass", violations=[], graph={"nodes": [], "edges": []}, hostnames={})
    html = render_check_report_html(result)
    assert "Verdict: PASS" in html and 'id="no-violations"' in html and 'class="banner pass"' in html


def test_report_caps_rows() -> None:
    from nvpcap.report import html as h

    result = hostile_result()
    result["violations"] = [_violation(f"{i:016x}", "new_edge", 3, i, 1700000000.0 + i)
                            for i in range(h.MAX_VIOLATIONS + 7)]
    html = render_check_report_html(result)
    assert html.count('<tr class="violation">') == h.MAX_VIOLATIONS
    assert f"of {h.MAX_VIOLATIONS + 7:,} violations" in html


# -- analysis report ----------------------------------------------------------------------------------------

def _collect(*paths: Path) -> AnalysisCollector:
    c = AnalysisCollector()
    summaries = [analyze_file(str(p), c) for p in paths]
    c.close(run_summary(summaries))
    return c


def test_collector_on_sample_matches_hand_count() -> None:
    # samples/pcaps/http_ethernet.pcap (tshark -T fields -e frame.len): a DNS query/answer 75 + 91 bytes,
    # an HTTP conversation of 9 frames, 427 bytes to the server and 354 back; the DNS answer says
    # www.example.com is 10.0.0.2 and the HTTP Host header names it too.
    m = _collect(SAMPLES / "http_ethernet.pcap").model()
    assert m["totals"]["flows"] == 2 and m["totals"]["packets"] == 11
    assert m["totals"]["bytes"] == 75 + 91 + 427 + 354
    assert {p["app_proto"]: (p["flows"], p["bytes"], p["packets"]) for p in m["protocols"]} == {
        "http": (1, 781, 9), "dns": (1, 166, 2)}
    assert [(t["ip"], t["bytes"], t["flows"]) for t in m["top_talkers"]] == [
        ("10.0.0.1", 947, 2), ("10.0.0.2", 781, 1), ("10.0.0.53", 166, 1)]
    assert m["hostnames"] == {"10.0.0.2": ["www.example.com"]}
    assert m["capture_quality"]["outcomes"] == {"decoded": 11}
    html = render_analysis_report_html(m)
    assert "10.0.0.2</span> <span class=\"hn\">(www.example.com)" in html


def test_collector_on_generated_capture(tmp_path: Path) -> None:
    # three TCP conversations and two UDP datagrams; sizes are the frames' own lengths (counted here)
    conv_a = pcapgen.handshake("10.1.0.1", 40001, "10.1.0.9", 8080, 1700000000.0)
    conv_b = pcapgen.handshake("10.1.0.1", 40002, "10.1.0.9", 8080, 1700000001.0)
    conv_c = pcapgen.handshake("10.1.0.2", 40003, "192.0.2.7", 9999, 1700000002.0, close=False)
    dgrams = [(1700000003.0, pcapgen.udp("10.1.0.3", 5000, "10.1.0.4", 7000, b"x" * 100)),
              (1700000004.0, pcapgen.udp("10.1.0.3", 5001, "10.1.0.4", 7000, b"y" * 10))]
    pkts = sorted(conv_a + conv_b + conv_c + dgrams)
    cap = pcapgen.write(tmp_path / "gen.pcap", pkts)
    total = sum(len(f) for _, f in pkts)
    bytes_a, bytes_c = sum(len(f) for _, f in conv_a), sum(len(f) for _, f in conv_c)
    c = _collect(cap)
    m = c.model()
    assert m["totals"]["flows"] == 5 and m["totals"]["bytes"] == total
    assert m["totals"]["flow_packets"] == len(pkts)
    talkers = {t["ip"]: (t["bytes"], t["flows"]) for t in m["top_talkers"]}
    assert talkers["10.1.0.1"] == (2 * bytes_a, 2)  # conv_b has the same frame sizes as conv_a
    assert talkers["192.0.2.7"] == (bytes_c, 1)
    assert talkers["10.1.0.4"] == (len(dgrams[0][1]) + len(dgrams[1][1]), 2)
    convs = {(x["src_ip"], x["dest_ip"], x["dest_port"]): (x["flows"], x["bytes"]) for x in m["top_conversations"]}
    assert convs[("10.1.0.1", "10.1.0.9", 8080)] == (2, 2 * bytes_a)
    assert sum(p["flows"] for p in m["protocols"]) == 5
    assert sum(p["bytes"] for p in m["protocols"]) == total
    # bounded: top-N cap on talkers
    small = AnalysisCollector(top_n=2)
    analyze_file(str(cap), small)
    small.close({})
    assert len(small.model()["top_talkers"]) == 2


def test_collector_bounds_and_hostile_events(tmp_path: Path) -> None:
    c = AnalysisCollector(max_alert_records=3, rule_packs=[{"name": f"user:{SCRIPT}", "rules": 2}])
    alerts = [{"event_type": "alert", "ts": 1700000000.0 + i, "rule_id": 49001 + (i % 2), "category": "waf",
               "rule_name": f"XSS {SCRIPT}", "severity": 4, "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2",
               "snippet": EVIL_URL, "message": IMG} for i in range(10)]
    c.write_events(alerts)
    c.write_events([
        {"event_type": "http", "dest_ip": "10.0.0.2", "http": {"host": f"{EVIL_HOST}:8080"}},
        {"event_type": "ssl", "dest_ip": "10.0.0.3", "ssl": {"sni": SSTI}},
        {"event_type": "dns", "dns": {"answers": [{"rrname": "a.example", "rrtype": "A", "rdata": "10.0.0.4"},
                                                  {"rrname": "c.example", "rrtype": "CNAME", "rdata": "d.example"}]}},
        {"event_type": "http", "dest_ip": "not-an-ip", "http": {"host": "x"}},
    ])
    c.close({})
    m = c.model()
    assert m["alerts"]["total"] == 10 and len(m["alerts"]["records"]) == 3
    assert {r["rule_id"]: r["count"] for r in m["alerts"]["by_rule"]} == {49001: 5, 49002: 5}
    assert m["hostnames"] == {"10.0.0.2": [EVIL_HOST], "10.0.0.3": [SSTI], "10.0.0.4": ["a.example"]}
    out = tmp_path / "analysis.html"
    render_analysis_report(m, str(out))
    html = out.read_text(encoding="utf-8")
    assert SCRIPT not in html and "<img" not in html and "http://" not in html and "https://" not in html
    text = "".join(_scan(html).text)
    assert EVIL_HOST in text and EVIL_URL in text and SSTI in text
    assert "(first 3 of 10)" in text
    assert f"user:{SCRIPT}" in text  # versions of the rule sets
    assert ">None<" not in html  # missing fields print as nothing


def test_collector_prunes_to_bound() -> None:
    import polars as pl

    from nvpcap.records.flows import empty_flow_frame

    c = AnalysisCollector(max_talkers=10, max_conversations=10)
    schema = empty_flow_frame().schema
    rows = [{k: None for k in schema} | {"src_ip": f"10.0.{i // 250}.{i % 250}", "dest_ip": "10.9.9.9",
                                          "proto": "tcp", "dest_port": 80, "app_proto": "http", "ts": 1.0,
                                          "duration": 0.0, "bytes_toserver": i, "bytes_toclient": 0,
                                          "pkts_toserver": 1, "pkts_toclient": 0} for i in range(1, 50)]
    c.write_flows(pl.DataFrame(rows, schema=schema))
    assert len(c.talker_bytes) <= 10 and len(c.conv_bytes) <= 10
    m = c.model()
    assert m["approximate"] is True
    assert m["top_talkers"][0] == {"ip": "10.9.9.9", "bytes": sum(range(1, 50)), "flows": 49}
    assert m["totals"]["bytes"] == sum(range(1, 50))


def test_tee_feeds_both(tmp_path: Path) -> None:
    from nvpcap.output.memory import MemorySink
    from nvpcap.report.analysis import TeeSink

    mem, col = MemorySink(), AnalysisCollector()
    tee = TeeSink(mem, col)
    s = analyze_file(str(SAMPLES / "http_ethernet.pcap"), tee)
    tee.close(run_summary([s]))
    assert len(mem.flows) == col.model()["totals"]["flows"] == 2
    assert mem.summary is col.summary
