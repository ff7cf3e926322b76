"""Baseline learn/check end to end on captures built here (tests/sitegen.py), and the learning rules one by one.

Expected values are hand counts from the capture recipes: every TCP exchange in sitegen is 8 packets; the check
capture repeats the four learned connections and adds exactly a new edge, a new port and an external destination.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pcapgen as g
import pytest
import sitegen
import yaml
from click.testing import CliRunner

from nvpcap.baseline.check import CheckOptions, check, judge
from nvpcap.baseline.connections import SCOPE_POLICY, SCOPE_UDP_UNQUALIFIED, connections
from nvpcap.baseline.groups import GroupMap, GroupsError, load_groups
from nvpcap.baseline.learn import learn
from nvpcap.baseline.model import Baseline, BaselineError, Rule, load_baseline
from nvpcap.baseline.observe import Observation
from nvpcap.cli import main

EXPECTED = {"new_edge", "new_port", "external_destination"}


def cli(*args: str, stdout_only: bool = False) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
    return result.exit_code, result.stdout if stdout_only else result.output


@pytest.fixture()
def site(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "groups.yaml").write_text(sitegen.GROUPS_YAML)
    paths = {"groups": tmp_path / "groups.yaml", "a": sitegen.learn_capture(tmp_path / "a.pcap"),
             "b": sitegen.check_capture(tmp_path / "b.pcap"), "baseline": tmp_path / "baseline.yaml"}
    code, _ = cli("baseline", "learn", str(paths["a"]), "--groups", str(paths["groups"]), "-o", str(paths["baseline"]),
                  "-q")
    assert code == 0
    return {k: str(v) for k, v in paths.items()}


def check_json(site: dict[str, str], *extra: str, capture: str | None = None) -> tuple[int, dict]:
    code, out = cli("baseline", "check", capture or site["b"], "--baseline", site["baseline"], "--format", "json",
                    "--no-bundled-rules", "-q", *extra, stdout_only=True)
    return code, json.loads(out)


def test_learn_writes_one_rule_per_pair_and_kind(site):
    baseline = load_baseline(site["baseline"])
    rules = {(r.from_group, r.to_group, r.kind): r for r in baseline.rules}
    assert set(rules) == {("web", "api", "app"), ("web", "db", "app"), ("web", "dns", "app"), ("web", "db", "port")}
    assert rules[("web", "db", "app")].applications == ["redis"]
    assert rules[("web", "db", "app")].ports == ["tcp/6379"]
    assert rules[("web", "db", "port")].ports == ["tcp/9999"]
    assert rules[("web", "api", "app")].applications == ["http"]
    assert all(r.id >= 10000 and r.flows == 1 and r.examples for r in baseline.rules)
    assert rules[("web", "db", "port")].examples[0]["frame"] == 19  # 2 DNS + 2 x 8 TCP packets before it


@pytest.mark.parametrize("mode", ["monitor", "protect"])
def test_check_finds_exactly_the_new_edge_port_and_external_destination(site, mode):
    code, result = check_json(site, "--mode", mode)
    assert code == 1
    assert result["verdict"] == "fail"
    assert {v["type"] for v in result["violations"]} == EXPECTED
    assert len(result["violations"]) == 3
    by_type = {v["type"]: v for v in result["violations"]}
    assert (by_type["new_edge"]["to_group"], by_type["new_edge"]["port"]) == ("Host:10.10.4.4", 22)
    assert (by_type["new_port"]["to_group"], by_type["new_port"]["port"]) == ("db", 7777)
    assert (by_type["external_destination"]["servers"], by_type["external_destination"]["app"]) == \
        ([sitegen.EXTERNAL_IP], "http")
    assert by_type["external_destination"]["server_names"] == ["cdn.example.net"]  # from the HTTP Host header
    assert all(v["flows"] == 1 and v["packets"] == 8 for v in result["violations"])
    t = result["totals"]
    assert (t["flows"], t["flows_allowed"], t["flows_violating"]) == (7, 4, 3)
    if mode == "protect":
        assert all(v["action"] == "deny" and v["denied_packets"] == 8 for v in result["violations"])
        assert t["denied_packets"] == 24
    else:
        assert all(v["action"] == "violate" and v["denied_packets"] == 0 for v in result["violations"])
        assert t["denied_packets"] == 0
    ev = by_type["new_port"]["evidence"][0]
    assert (ev["pcap_filename"], ev["first_frame"], ev["last_frame"]) == ("b.pcap", 35, 42)  # 26 + 8 packets before
    assert by_type["new_port"]["closest_rule"]["id"] == load_baseline(site["baseline"]).rule("web", "db", "port").id
    assert by_type["new_port"]["suggested_rule"] == {"from": "web", "to": "db", "kind": "port", "ports": ["tcp/7777"],
                                                     "applications": []}


def test_the_learned_capture_itself_is_clean(site):
    code, result = check_json(site, capture=site["a"])
    assert code == 0 and result["verdict"] == "pass" and result["violations"] == []


def test_fingerprints_are_stable_and_accepting_them_passes(site, tmp_path):
    _, first = check_json(site)
    _, second = check_json(site, "--mode", "protect")
    fps = sorted(v["fingerprint"] for v in first["violations"])
    assert fps == sorted(v["fingerprint"] for v in second["violations"])
    accept = tmp_path / "accept.yaml"
    accept.write_text(yaml.safe_dump({"accept": [{"fingerprint": fp, "reason": "reviewed"} for fp in fps[:2]]}))
    code, partly = check_json(site, "--accept", str(accept))
    assert code == 1 and partly["totals"]["accepted"] == 2 and partly["totals"]["failing"] == 1
    accept.write_text("\n".join(fps) + "\n# all reviewed\n")
    code, result = check_json(site, "--accept", str(accept))
    assert code == 0 and result["verdict"] == "pass" and result["totals"]["accepted"] == 3


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv", "sarif", "junit"])
def test_exit_codes_are_the_same_for_every_format(site, fmt, tmp_path):
    base = ["baseline", "check", site["b"], "--baseline", site["baseline"], "--no-bundled-rules", "-q", "--format", fmt,
            "-o", str(tmp_path / f"out.{fmt}")]
    assert cli(*base)[0] == 1
    assert cli(*base, "--exit-zero")[0] == 0
    assert cli(*base, "--fail-on", "high")[0] == 1  # the external destination is high
    assert cli(*base, "--fail-on", "critical")[0] == 0
    assert (tmp_path / f"out.{fmt}").stat().st_size > 0


def test_usage_and_config_errors_exit_2(site, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: nvpcap/v1\nkind: Baseline\nrules:\n- {id: 10000, from: a, to: b, kind: port, ports: [tcp/99999]}\n")
    code, out = cli("baseline", "check", site["b"], "--baseline", str(bad))
    assert code == 2 and "tcp/99999" in out
    code, out = cli("baseline", "check", site["b"], "--baseline", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in out
    groups = tmp_path / "groups.yaml"
    groups.write_text("groups:\n  web: [10.0.0.0/33]\n")
    code, out = cli("baseline", "check", site["b"], "--baseline", site["baseline"], "--groups", str(groups))
    assert code == 2 and "10.0.0.0/33" in out
    assert cli("baseline", "check", str(tmp_path / "nothing.pcap"), "--baseline", site["baseline"])[0] == 2


def test_strict_input_errors_exit_3(site, tmp_path):
    data = Path(site["b"]).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-10])  # the last record is truncated
    code, _ = check_json(site, "--strict", capture=str(cut))
    assert code == 3
    code, _ = check_json(site, capture=str(cut))
    assert code == 1  # still analysed: the rest of the file gives the same violations


def test_records_from_analyze_check_like_the_capture(site, tmp_path):
    for out in ("records.jsonl", "records.parquet", "parts/"):
        fmt = ["--format", "parquet"] if out.endswith("/") else []
        code, _ = cli("analyze", site["b"], "-o", f"{tmp_path}/{out}", "-q", "--no-bundled-rules", *fmt)
        assert code == 0
        _, from_records = check_json(site, capture=f"{tmp_path}/{out}")
        _, from_capture = check_json(site)
        assert [v["fingerprint"] for v in from_records["violations"]] == \
            [v["fingerprint"] for v in from_capture["violations"]]
        assert from_records["violations"][0]["server_names"] == ["cdn.example.net"]


def test_learning_more_captures_merges(site, tmp_path):
    code, _ = cli("baseline", "learn", site["b"], "--groups", site["groups"], "-o", site["baseline"], "-q")
    assert code == 0
    merged = load_baseline(site["baseline"])
    assert merged.rule("web", "db", "port").ports == ["tcp/7777", "tcp/9999"]
    assert merged.rule("web", "db", "app").flows == 2
    assert len(merged.learned_from) == 2
    code, result = check_json(site)
    assert code == 0 and result["violations"] == []


def test_export_commands_write_yaml(site):
    for target in ("neuvector", "networkpolicy"):
        code, out = cli("baseline", "export", site["baseline"], "--as", target, stdout_only=True)
        assert code == 0
        assert list(yaml.safe_load_all(out))


# ---- the learning rules on hand-built connections ----

def obs_of(rows: list[dict]) -> Observation:
    defaults = {"ts": 1.0, "duration": 0.5, "src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "10.0.0.2",
                "dest_port": 80, "proto": "tcp", "app_proto": "unknown", "app_confidence": "none",
                "conn_state": "SF", "pkts_toserver": 3, "pkts_toclient": 2, "bytes_toserver": 300,
                "bytes_toclient": 200, "community_id": "1:x", "pcap_filename": "t.pcap", "first_frame": 1,
                "last_frame": 5}
    flows = pd.DataFrame([{**defaults, **r} for r in rows])
    return Observation(flows, pd.DataFrame(), {})


def learned(rows: list[dict], groups: GroupMap | None = None, baseline: Baseline | None = None) -> Baseline:
    return learn(connections(obs_of(rows), groups or GroupMap()), baseline)


def test_an_application_supersedes_the_port_rule_for_its_port():
    b = learned([{"dest_port": 80}, {"dest_port": 81}])
    assert b.rule("Host:10.0.0.1", "Host:10.0.0.2", "port").ports == ["tcp/80", "tcp/81"]
    b = learned([{"dest_port": 80, "app_proto": "http", "app_confidence": "dpi"}], baseline=b)
    assert b.rule("Host:10.0.0.1", "Host:10.0.0.2", "port").ports == ["tcp/81"]
    assert b.rule("Host:10.0.0.1", "Host:10.0.0.2", "app").applications == ["http"]


def test_more_than_20_ports_collapse_to_any():
    assert learned([{"dest_port": p} for p in range(1000, 1020)]).rules[0].ports[-1] == "tcp/1019"
    assert learned([{"dest_port": p} for p in range(1000, 1021)]).rules[0].ports == ["any"]


def test_port_guesses_and_unanswered_flows_teach_nothing():
    b = learned([{"app_proto": "http", "app_confidence": "port", "dest_port": 8080},
                 {"dest_port": 22, "pkts_toclient": 0}])
    assert [(r.kind, r.ports, r.applications) for r in b.rules] == [("port", ["tcp/8080"], [])]


def test_udp_port_rules_only_where_the_server_showed_an_application():
    rows = [{"proto": "udp", "dest_port": 5353}, {"proto": "udp", "dest_port": 53, "dest_ip": "10.0.0.9"},
            {"proto": "udp", "dest_port": 53, "dest_ip": "10.0.0.9", "app_proto": "dns", "app_confidence": "dpi"}]
    conns = connections(obs_of(rows), GroupMap())
    assert list(conns["scope"]) == [SCOPE_UDP_UNQUALIFIED, SCOPE_POLICY, SCOPE_POLICY]
    b = learn(conns)
    assert [(r.to_group, r.kind, r.ports) for r in b.rules] == [("Host:10.0.0.9", "app", ["udp/53"])]


def test_unidentified_traffic_on_an_application_port_is_allowed_and_an_app_elsewhere_is_noted():
    b = Baseline([Rule(10000, "web", "db", "app", ["postgresql"], ["tcp/5432"])])
    groups = GroupMap(load_groups_text("groups:\n  web: [10.0.0.1]\n  db: [10.0.0.2]\n").groups)
    conns = connections(obs_of([
        {"dest_port": 5432},  # mid-stream or unparsed: NeuVector treats it as the port's app
        {"dest_port": 6000, "app_proto": "postgresql", "app_confidence": "dpi"},
        {"dest_port": 6000},
        {"dest_port": 5432, "app_proto": "redis", "app_confidence": "dpi"}]), groups)
    assert list(judge(conns, b)) == ["allowed", "app_unexpected_port", "new_port", "new_app"]
    result = check(conns, pd.DataFrame(columns=["category"]), b, groups, {}, {}, CheckOptions(mode="protect"))
    noted = next(v for v in result["violations"] if v["type"] == "app_unexpected_port")
    assert (noted["severity_name"], noted["action"], noted["denied_packets"]) == ("low", "violate", 0)


def load_groups_text(text: str) -> GroupMap:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(text)
    return load_groups(fh.name)


def test_groups_longest_prefix_hostnames_and_default_names():
    groups = load_groups_text("groups:\n  net: [10.0.0.0/8]\n  sub: [10.1.0.0/16, '2001:db8::/32']\n"
                              "  cdn: ['*.example.net']\n")
    ips = pd.Series(["10.1.2.3", "10.9.9.9", "192.168.1.1", "8.8.8.8", "2001:db8::1", "93.184.216.34", "fe80::1"])
    names = {"93.184.216.34": ["www.example.net"]}
    assert list(groups.assign(ips, names)) == ["sub", "net", "Host:192.168.1.1", "external", "sub", "cdn",
                                               "Host:fe80::1"]


@pytest.mark.parametrize("text, message", [
    ("groups: [a]", "'groups' key"), ("groups:\n  external: [1.2.3.4]\n", "reserved"),
    ("groups:\n  a: {members: [1.2.3.4], color: red}\n", "unknown key"), ("groups:\n  a: ['x y']\n", "neither"),
])
def test_bad_groups_files_are_explained(text, message):
    with pytest.raises(GroupsError, match=message):
        load_groups_text(text)


def test_a_baseline_with_two_port_rules_for_one_pair_is_refused(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("apiVersion: nvpcap/v1\nkind: Baseline\nrules:\n- {id: 1, from: a, to: b, kind: port, ports: [any]}\n"
                 "- {id: 2, from: a, to: b, kind: port, ports: [tcp/1]}\n")
    with pytest.raises(BaselineError, match="second port rule"):
        load_baseline(p)


def test_icmp_and_external_only_flows_are_outside_the_rules(tmp_path):
    pkts = [(1.0, g.icmp_echo("10.0.0.1", "10.0.0.2", 1, 1)), (1.1, g.icmp_echo("10.0.0.2", "10.0.0.1", 1, 1, True))]
    pkts += sitegen.tcp_exchange("8.8.8.8", 1234, "1.1.1.1", 80, 2.0, b"hello", b"world!")
    g.write(tmp_path / "x.pcap", pkts)
    empty = tmp_path / "empty.yaml"
    Baseline().save(empty)
    code, out = cli("baseline", "check", str(tmp_path / "x.pcap"), "--baseline", str(empty), "--format", "json", "-q",
                    "--no-bundled-rules", stdout_only=True)
    result = json.loads(out)
    assert code == 0 and result["totals"]["ignored_by_reason"] == {"not-tcp-udp": 1, "external-to-external": 1}


HOSTILE_HOST = "<script>alert(1)</script>.evil"
HOSTILE_URI = "/?q=<img src=x onerror=alert(2)>"


def test_a_hostile_host_and_url_appear_escaped_in_the_report(tmp_path, site):
    capture = sitegen.check_capture(tmp_path / "hostile.pcap", host=HOSTILE_HOST, uri=HOSTILE_URI.replace(" ", "%20"))
    report = tmp_path / "report.html"
    code, out = cli("baseline", "check", str(capture), "--baseline", site["baseline"], "--format", "json", "-q",
                    "--report", str(report), stdout_only=True)
    assert code == 1
    result = json.loads(out)
    assert {"waf", *EXPECTED} <= {v["type"] for v in result["violations"]}  # the XSS in the URL is a WAF alert
    html = report.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.evil" in html  # the Host, learned as the server's name
    assert "&lt;img src=x onerror=" in html and "<img src=x" not in html  # the URL's match, in the WAF snippet
    assert "<script>alert(1)" not in html


def test_two_processes_check_like_one(site, tmp_path):
    other = sitegen.learn_capture(tmp_path / "c.pcap")
    _, one = check_json(site, site["a"], capture=site["b"])
    _, two = check_json(site, site["a"], "-j", "2", capture=site["b"])
    assert [v["fingerprint"] for v in one["violations"]] == [v["fingerprint"] for v in two["violations"]]
    assert one["totals"] == two["totals"] and one["totals"]["flows"] == 11
    assert other.exists()


def test_hand_edited_rules_may_write_one_port_or_a_comma_list(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("apiVersion: nvpcap/v1\nkind: Baseline\nrules:\n- {id: 1, from: a, to: b, kind: port, ports: tcp/80}\n"
                 "- {id: 2, from: a, to: b, kind: app, applications: HTTP, ports: 'tcp/8080, tcp/8443'}\n")
    b = load_baseline(p)
    assert b.rule("a", "b", "port").ports == ["tcp/80"]
    assert (b.rule("a", "b", "app").applications, b.rule("a", "b", "app").ports) == (["http"], ["tcp/8080", "tcp/8443"])


@pytest.mark.parametrize("name, content", [
    ("other.parquet", None), ("cut.parquet", b"PAR1garbage"), ("types.jsonl", b'{"event_type":"flow","ts":"x"}\n'),
    ("text.jsonl", b"not json\n"),
])
def test_record_files_that_are_not_nvpcaps_are_explained(site, tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        import polars as pl

        pl.DataFrame({"a": [1]}).write_parquet(path)
    else:
        path.write_bytes(content)
    code, out = cli("baseline", "check", str(path), "--baseline", site["baseline"], "-q")
    assert code == 2 and name in out and "Traceback" not in out


def test_the_table_in_protect_mode_shows_the_denied_packets(site):
    code, out = cli("baseline", "check", site["b"], "--baseline", site["baseline"], "--mode", "protect", "-q",
                    "--no-bundled-rules", stdout_only=True)
    assert code == 1 and "24 packets denied" in out and "denied pkts" in out  # 3 flows x 8 packets


@pytest.mark.shared
def test_checking_the_learned_captures_finds_only_what_learning_leaves_out(shared_pcaps, tmp_path):
    """On the public captures: learn from all of them, then check the same captures. Every flow is allowed,
    outside the rules, or one learning skipped on purpose (the server never answered); the counts add up."""
    from nvpcap.baseline.observe import read_records

    records = tmp_path / "all.jsonl"
    code, _ = cli("analyze", str(shared_pcaps), "-o", str(records), "-q", "--no-bundled-rules")
    assert code == 0
    baseline = tmp_path / "b.yaml"
    assert cli("baseline", "learn", str(records), "-o", str(baseline), "-q")[0] == 0
    code, out = cli("baseline", "check", str(records), "--baseline", str(baseline), "--format", "json", "-q",
                    "--exit-zero", stdout_only=True)
    assert code == 0
    t = json.loads(out)["totals"]
    assert t["flows_allowed"] + t["flows_violating"] + t["flows_ignored"] == t["flows"] > 100
    conns = connections(read_records([str(records)]), GroupMap())
    unanswered = int(((conns["scope"] == SCOPE_POLICY) & ~conns["answered"]).sum())
    assert t["flows_violating"] <= unanswered


KUBECTL_LIST = {  # the shape of `kubectl get pods,services -A -o json` (fields trimmed to those read)
    "apiVersion": "v1", "kind": "List", "items": [
        {"kind": "Pod", "metadata": {"name": "web-7d4b9c-x2x9q", "namespace": "shop",
                                     "labels": {"pod-template-hash": "7d4b9c", "tier": "front"},
                                     "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d4b9c"}]},
         "status": {"podIP": "10.10.1.5", "podIPs": [{"ip": "10.10.1.5"}, {"ip": "fd00::5"}]}},
        {"kind": "Pod", "metadata": {"name": "db-0", "namespace": "prod", "labels": {"app": "db"},
                                     "ownerReferences": [{"kind": "StatefulSet", "name": "db"}]},
         "status": {"podIP": "10.10.2.7"}},
        {"kind": "Pod", "metadata": {"name": "node-exporter-abcde", "namespace": "monitoring"},
         "spec": {"hostNetwork": True}, "status": {"podIP": "192.168.0.10"}},
        {"kind": "Service", "metadata": {"name": "db", "namespace": "prod"},
         "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "db"}}},
        {"kind": "Service", "metadata": {"name": "headless", "namespace": "prod"}, "spec": {"clusterIP": "None"}},
        {"kind": "ConfigMap", "metadata": {"name": "x"}},
    ]}


def test_groups_from_a_kubectl_list_are_named_as_neuvector_names_workloads(tmp_path):
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(KUBECTL_LIST))
    groups = load_groups(path)
    by_name = {g.name: g for g in groups.groups}
    assert set(by_name) == {"nv.web.shop", "nv.db.prod"}  # the ReplicaSet's hash dropped; db pod and service joined
    assert [str(n) for n in by_name["nv.web.shop"].networks] == ["10.10.1.5/32", "fd00::5/128"]
    assert [str(n) for n in by_name["nv.db.prod"].networks] == ["10.10.2.7/32", "10.96.0.20/32"]
    assert (by_name["nv.db.prod"].namespace, by_name["nv.db.prod"].labels) == ("prod", {"app": "db"})
    assert any("host network" in n for n in groups.notes)
    ips = pd.Series(["10.10.1.5", "10.96.0.20", "192.168.0.10"])
    assert list(groups.assign(ips)) == ["nv.web.shop", "nv.db.prod", "Host:192.168.0.10"]


def test_a_kubectl_list_drives_learning_and_the_networkpolicy_export(site, tmp_path):
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(KUBECTL_LIST))
    baseline = tmp_path / "k.yaml"
    assert cli("baseline", "learn", site["a"], "--groups", str(path), "-o", str(baseline), "-q")[0] == 0
    learned = load_baseline(baseline)
    assert learned.rule("nv.web.shop", "nv.db.prod", "app").applications == ["redis"]
    code, out = cli("baseline", "export", str(baseline), "--as", "networkpolicy", stdout_only=True)
    assert code == 0
    policies = [d for d in yaml.safe_load_all(out) if d]
    db = [p for p in policies if p["spec"]["podSelector"].get("matchLabels") == {"app": "db"}]
    assert db and db[0]["metadata"]["namespace"] == "prod"


def test_an_accept_file_with_a_typo_is_refused(site, tmp_path):
    accept = tmp_path / "accept.txt"
    accept.write_text("0e52a4a6080db9c9\n0e52a4a6080db9cX  # typo\n")
    code, out = cli("baseline", "check", site["b"], "--baseline", site["baseline"], "--accept", str(accept), "-q")
    assert code == 2 and "0e52a4a6080db9cX" in out
