"""Baseline exports: NeuVector CRD rules and Kubernetes NetworkPolicies from a hand-built baseline.

Expected structures come from the sources the exporter follows, not from its own output:
- NeuVector: the CRD schema in neuvector/manifests kubernetes/crd-k8s-1.19.yaml (spec.target.selector
  {name, criteria[{key, op, value}]}, spec.egress[{selector, action, applications, name, ports, priority}]) and
  the exported samples in NeuVector's docs "CRD - Custom Resource Definitions" (kind: List of items; the
  built-in external group as `name: external, criteria: []`; ports "tcp/22" or "any"; applications "HTTP",
  "SSL", "Redis", ...); address groups from the docs "Groups" (key address, op "=").
- Kubernetes: networking.k8s.io/v1 NetworkPolicy API reference (NetworkPolicySpec.podSelector / policyTypes /
  ingress; NetworkPolicyIngressRule.from / ports; NetworkPolicyPeer.podSelector / namespaceSelector / ipBlock;
  IPBlock.cidr / except; NetworkPolicyPort.protocol / port / endPort).
"""
from __future__ import annotations

import ipaddress
import re

import pytest
import yaml

from nvpcap.baseline.export import ExportError, export_networkpolicy, export_neuvector

GROUPS = {"groups": {
    "web": {"members": ["10.10.1.0/24"], "namespace": "prod", "labels": {"app": "web"}},
    "db": {"members": ["10.10.2.0/24"], "namespace": "data", "labels": {"app": "db", "tier": "backend"}},
    "monitoring": ["10.20.0.0/16", "10.20.1.5"],                  # short form, no labels
    "partners": ["203.0.113.0/24", "api.partner.example"],
    "hostonly": ["ci.example.com"],
}}


def _rule(id_, frm, to, kind, ports, apps=()):
    return {"id": id_, "from": frm, "to": to, "kind": kind, "applications": list(apps), "ports": list(ports),
            "first_seen": "2023-11-14T22:13:20Z", "last_seen": "2023-11-14T22:13:21Z", "flows": 1, "bytes": 10,
            "examples": []}


BASELINE = {"apiVersion": "nvpcap/v1", "kind": "Baseline", "metadata": {"generator": "nvpcap 0.1.0"}, "rules": [
    _rule(10000, "web", "db", "app", ["tcp/5432"], ["postgresql"]),
    _rule(10001, "web", "db", "port", ["tcp/6432"]),
    _rule(10002, "web", "external", "app", ["tcp/443"], ["ssl", "http2"]),   # http2: no NeuVector name
    _rule(10004, "Host:10.0.0.9", "web", "port", ["any"]),
    _rule(10005, "external", "web", "app", ["tcp/80", "tcp/8080"], ["http"]),
    _rule(10006, "monitoring", "db", "port", ["tcp/9187-9188"]),
    _rule(10007, "db", "Host:fe80::1", "port", ["udp/123"]),
    _rule(10008, "partners", "web", "app", ["tcp/80"], ["http"]),
    _rule(10009, "hostonly", "web", "port", ["tcp/22"]),
]}

# crd-k8s-1.19.yaml: the properties the NvSecurityRule / NvClusterSecurityRule schema defines
CRD_SPEC = {"egress", "ingress", "file", "process", "target", "dlp", "waf"}
CRD_RULE = {"action", "applications", "name", "ports", "priority", "selector"}
CRD_SELECTOR = {"criteria", "name", "original_name", "comment"}
CRD_CRITERION = {"key", "op", "value"}
# metadata.name: a DNS-1123 subdomain (Kubernetes "Object Names and IDs")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _comments(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


# ---- NeuVector -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nv():
    text = export_neuvector(BASELINE, GROUPS)
    return text, yaml.safe_load(text)


def test_neuvector_is_a_list_of_crd_objects(nv):
    _, doc = nv
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    for item in doc["items"]:
        assert item["apiVersion"] == "neuvector.com/v1"
        assert item["kind"] in ("NvSecurityRule", "NvClusterSecurityRule")
        assert set(item["spec"]) <= CRD_SPEC
        sel = item["spec"]["target"]["selector"]
        assert set(sel) <= CRD_SELECTOR
        for rule in item["spec"]["egress"]:
            assert set(rule) <= CRD_RULE and rule["action"] == "allow" and isinstance(rule["priority"], int)
            assert isinstance(rule["ports"], str) and isinstance(rule["applications"], list)
            for c in rule["selector"]["criteria"]:
                assert set(c) == CRD_CRITERION
    names = [r["name"] for i in doc["items"] for r in i["spec"]["egress"]]
    assert len(names) == len(set(names))                 # docs: policy names unique within a yaml file
    md = [i["metadata"]["name"] for i in doc["items"]]
    assert all(DNS1123_SUBDOMAIN.match(n) and len(n) <= 253 for n in md), md
    assert len(md) == len(set(md))


def _by_target(doc) -> dict:
    return {i["spec"]["target"]["selector"]["name"]: i for i in doc["items"]}


def test_neuvector_groups_and_rules(nv):
    _, doc = nv
    items = _by_target(doc)
    assert sorted(items) == ["db", "external", "hostonly", "monitoring", "nvpcap-host-10.0.0.9", "partners", "web"]
    web_sel = {"name": "web", "criteria": [{"key": "app", "op": "=", "value": "web"},
                                           {"key": "domain", "op": "=", "value": "prod"}]}

    web = items["web"]
    assert web["kind"] == "NvSecurityRule" and web["metadata"]["namespace"] == "prod"   # target has a domain
    assert web["spec"]["target"]["selector"] == web_sel
    egress = [(r["selector"]["name"], r["applications"], r["ports"]) for r in web["spec"]["egress"]]
    assert egress == [("db", ["PostgreSQL"], "tcp/5432"),        # app rule: NeuVector app name, its ports
                      ("db", ["any"], "tcp/6432"),               # port rule: applications [any]
                      ("external", ["SSL"], "tcp/443"),
                      ("external", ["any"], "tcp/443")]          # http2 has no NeuVector name
    assert web["spec"]["egress"][2]["selector"] == {"name": "external", "criteria": []}

    db = items["db"]
    assert db["kind"] == "NvSecurityRule" and db["metadata"]["namespace"] == "data"
    assert db["spec"]["target"]["selector"]["criteria"] == [
        {"key": "app", "op": "=", "value": "db"}, {"key": "tier", "op": "=", "value": "backend"},
        {"key": "domain", "op": "=", "value": "data"}]
    (to_host,) = db["spec"]["egress"]
    assert to_host["selector"] == {"name": "nvpcap-host-fe80::1",
                                   "criteria": [{"key": "address", "op": "=", "value": "fe80::1"}]}
    assert (to_host["applications"], to_host["ports"]) == (["any"], "udp/123")

    host = items["nvpcap-host-10.0.0.9"]
    assert host["kind"] == "NvClusterSecurityRule"            # no domain: cluster scoped, namespace default
    assert host["spec"]["target"]["selector"]["criteria"] == [{"key": "address", "op": "=", "value": "10.0.0.9"}]
    (r,) = host["spec"]["egress"]
    assert (r["selector"], r["applications"], r["ports"]) == (web_sel, ["any"], "any")

    ext = items["external"]
    assert ext["kind"] == "NvClusterSecurityRule" and ext["spec"]["target"]["selector"]["criteria"] == []
    (r,) = ext["spec"]["egress"]
    assert (r["applications"], r["ports"]) == (["HTTP"], "tcp/80,tcp/8080")

    mon = items["monitoring"]["spec"]
    assert mon["target"]["selector"]["criteria"] == [{"key": "address", "op": "=", "value": "10.20.0.0/16"},
                                                     {"key": "address", "op": "=", "value": "10.20.1.5"}]
    assert mon["egress"][0]["ports"] == "tcp/9187-9188"
    partners = items["partners"]["spec"]["target"]["selector"]["criteria"]
    assert [c["value"] for c in partners] == ["203.0.113.0/24", "api.partner.example"]   # DNS names are allowed


def test_neuvector_comment_names_the_approximation(nv):
    text, _ = nv
    comments = _comments(text)
    assert any("http2" in c and "applications [any]" in c for c in comments)


def test_neuvector_undefined_group_and_hostile_name():
    base = {"rules": [_rule(1, "web", "ghost\n- key: x", "port", ["tcp/1"]), _rule(2, "ghost2", "web", "port", ["any"])]}
    text = export_neuvector(base, GROUPS)
    doc = yaml.safe_load(text)
    (web,) = doc["items"]                     # ghost2 has no definition: no target; ghost: no egress
    assert web["spec"]["egress"] == []
    comments = _comments(text)
    assert any("ghost? " in c or "ghost?-" in c for c in comments)   # line break neutralised inside the comment
    assert any("ghost2" in c for c in comments)
    assert all(line.startswith("#") for line in comments)


def test_neuvector_reserved_group_names_are_renamed():
    groups = {"nv.thing": ["10.1.0.0/16"], "containers": ["10.2.0.0/16"], "fedx": ["10.3.0.0/16"]}
    base = {"rules": [_rule(1, "nv.thing", "containers", "port", ["tcp/1"]), _rule(2, "fedx", "nv.thing", "port",
                                                                                   ["tcp/2"])]}
    doc = yaml.safe_load(export_neuvector(base, groups))
    names = {i["spec"]["target"]["selector"]["name"] for i in doc["items"]}
    names |= {r["selector"]["name"] for i in doc["items"] for r in i["spec"]["egress"]}
    assert names == {"nvpcap-nv.thing", "nvpcap-containers", "nvpcap-fedx"}


# ---- Kubernetes NetworkPolicy --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s():
    text = export_networkpolicy(BASELINE, GROUPS)
    return text, [d for d in yaml.safe_load_all(text) if d is not None]


def test_networkpolicy_documents_are_valid_objects(k8s):
    _, docs = k8s
    assert [(d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs] == [("nvpcap-db", "data"),
                                                                                 ("nvpcap-web", "prod")]
    for d in docs:
        assert d["apiVersion"] == "networking.k8s.io/v1" and d["kind"] == "NetworkPolicy"
        spec = d["spec"]
        assert set(spec) <= {"podSelector", "policyTypes", "ingress", "egress"}
        assert spec["policyTypes"] == ["Ingress"]
        for rule in spec["ingress"]:
            assert set(rule) <= {"from", "ports"}
            assert rule["from"], "an ingress rule without `from` admits every source"
            for peer in rule["from"]:
                assert set(peer) <= {"podSelector", "namespaceSelector", "ipBlock"}
                if "ipBlock" in peer:                       # ipBlock cannot be combined with selectors
                    assert set(peer) == {"ipBlock"}
                    net = ipaddress.ip_network(peer["ipBlock"]["cidr"])   # strict: a valid CIDR
                    for ex in peer["ipBlock"].get("except", []):
                        assert ipaddress.ip_network(ex).subnet_of(net)    # except must lie inside cidr
            for port in rule.get("ports", []):
                assert port["protocol"] in ("TCP", "UDP", "SCTP") and 1 <= port["port"] <= 65535
                assert port.get("endPort", port["port"]) >= port["port"]


def test_networkpolicy_db(k8s):
    _, docs = k8s
    db = docs[0]["spec"]
    assert db["podSelector"] == {"matchLabels": {"app": "db", "tier": "backend"}}
    web_peer = {"podSelector": {"matchLabels": {"app": "web"}},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}}}
    assert db["ingress"] == [
        {"from": [{"ipBlock": {"cidr": "10.20.0.0/16"}}, {"ipBlock": {"cidr": "10.20.1.5/32"}}],
         "ports": [{"protocol": "TCP", "port": 9187, "endPort": 9188}]},
        {"from": [web_peer], "ports": [{"protocol": "TCP", "port": 5432}]},
        {"from": [web_peer], "ports": [{"protocol": "TCP", "port": 6432}]},
    ]


def test_networkpolicy_web(k8s):
    _, docs = k8s
    web = docs[1]["spec"]
    assert web["podSelector"] == {"matchLabels": {"app": "web"}}
    host, ext, partners = web["ingress"]                 # hostonly (hostnames only) is left out
    assert host == {"from": [{"ipBlock": {"cidr": "10.0.0.9/32"}}]}          # port rule `any`: no ports list
    v4, v6 = ext["from"]
    assert v4["ipBlock"]["cidr"] == "0.0.0.0/0" and v6["ipBlock"]["cidr"] == "::/0"
    assert ext["ports"] == [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 8080}]
    assert partners == {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 80}]}


def test_networkpolicy_external_excludes_what_nvpcap_does_not_call_external(k8s):
    _, docs = k8s
    v4, v6 = docs[1]["spec"]["ingress"][1]["from"]
    excepted = [ipaddress.ip_network(n) for n in v4["ipBlock"]["except"] + v6["ipBlock"]["except"]]

    def covered(ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return any(a.version == n.version and a in n for n in excepted)
    # RFC 1918, loopback, link-local, ULA: Host:<ip> in nvpcap, so not external
    for ip in ("10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1", "127.0.0.1", "169.254.1.1",
               "fd00::1", "fe80::1", "::1"):
        assert covered(ip), ip
    for ip in ("8.8.8.8", "93.184.216.34", "172.32.0.1", "2606:4700::1111"):
        assert not covered(ip), ip


def test_networkpolicy_comment_lists_unselectable_destinations(k8s):
    text, _ = k8s
    comments = _comments(text)
    assert any("no policy for: Host:fe80::1, external" in c for c in comments)
    assert any("hostonly" in c for c in comments) and any("api.partner.example" in c for c in comments)


def test_networkpolicy_same_namespace_has_no_namespace_selector():
    groups = {"a": {"members": [], "labels": {"app": "a"}}, "b": {"members": [], "labels": {"app": "b"}}}
    base = {"rules": [_rule(1, "a", "b", "port", ["udp/53", "tcp/53"])]}
    (doc,) = [d for d in yaml.safe_load_all(export_networkpolicy(base, groups)) if d]
    assert doc["metadata"]["namespace"] == "default"
    assert doc["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                                       "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]


def test_networkpolicy_unexpressible_ports_never_widen():
    groups = {"a": {"labels": {"app": "a"}}, "b": {"labels": {"app": "b"}}}
    base = {"rules": [_rule(1, "a", "b", "port", ["icmp"])]}
    text = export_networkpolicy(base, groups)
    (doc,) = [d for d in yaml.safe_load_all(text) if d]
    assert doc["spec"]["ingress"] == []                      # not an all-ports rule
    assert any("icmp" in c for c in _comments(text))


def test_no_labels_at_all_gives_only_a_comment():
    text = export_networkpolicy(BASELINE, {"groups": {}})
    assert [d for d in yaml.safe_load_all(text) if d] == []
    assert _comments(text) and all(line.startswith("#") for line in text.splitlines())


@pytest.mark.parametrize("baseline", [None, {"rules": "x"}, {"rules": [{"from": "a"}]},
                                      {"rules": [_rule(1, "a", "b", "other", [])]}])
def test_bad_baseline_is_a_clear_error(baseline):
    for export in (export_neuvector, export_networkpolicy):
        with pytest.raises(ExportError, match="baseline"):
            export(baseline, GROUPS)
