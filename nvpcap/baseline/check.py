"""Check: observed connections against a baseline, as NeuVector Monitor (report) or Protect (deny) would.

Every flow is judged in one vectorised pass (rule keys and flow keys become int64 codes, membership is
`np.isin`), so a million flows take seconds. A flow is allowed when the pair's application rule lists its
application, or the pair's port rule lists its port (or `any`), or — unidentified traffic — its port is one the
application rule's applications were seen on (NeuVector installs "unknown app" there). Otherwise it is a
violation, aggregated by a stable fingerprint (type, groups, protocol, port, application) so that a finding in
today's run has the same name tomorrow and can be accepted once.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import __version__
from .connections import SCOPE_POLICY
from .groups import EXTERNAL, HOST_PREFIX, GroupMap
from .model import ANY, Baseline, Rule

SEVERITY_NAMES = {1: "info", 2: "low", 3: "medium", 4: "high", 5: "critical"}
FAIL_ON = ("any", "info", "low", "medium", "high", "critical")
POLICY_TYPES = {"external_destination": 4, "new_edge": 3, "new_port": 3, "new_app": 3, "app_unexpected_port": 2}
ALERT_TYPES = ("dlp", "waf", "threat", "ids")
ALLOWED, IGNORED = "allowed", "ignored"
MAX_EVIDENCE = 5
MAX_PEERS = 10
MAX_GRAPH_EDGES = 300
_KEY = ["type", "from_group", "to_group", "proto", "port", "app"]


@dataclass
class CheckOptions:
    mode: str = "monitor"  # or "protect"
    fail_on: str = "any"
    accept: set[str] = field(default_factory=set)  # fingerprints to keep but not fail on


def threshold(fail_on: str) -> int:
    return 1 if fail_on == "any" else {v: k for k, v in SEVERITY_NAMES.items()}[fail_on]


def fingerprint(*parts: object) -> str:
    text = "v1|" + "|".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


# ---- judging every flow ----

class _Codes:
    """Strings -> dense ints over one vocabulary, so composite keys are int64 arithmetic."""

    def __init__(self, *values: np.ndarray | list) -> None:
        self.index = pd.Index(pd.unique(np.concatenate([np.asarray(v, dtype=object) for v in values])))

    def __call__(self, values: np.ndarray | list) -> np.ndarray:
        return self.index.get_indexer(np.asarray(values, dtype=object)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.index) + 1


def judge(conns: pd.DataFrame, baseline: Baseline) -> np.ndarray:
    """Per flow: `allowed`, `ignored` (outside the rules' scope) or the violation type."""
    out = np.full(len(conns), IGNORED, dtype=object)
    if not len(conns):
        return out
    rules = baseline.rules
    groups = _Codes(conns["from_group"], conns["to_group"], [r.from_group for r in rules] + [r.to_group for r in rules]
                    + [""])
    apps = _Codes(conns["app"], [a for r in rules for a in r.applications] + [""])
    ports = _Codes(conns["port_key"], [p for r in rules for p in r.ports] + [ANY])
    g, a, p = len(groups), len(apps), len(ports)

    def pair(f: np.ndarray | list, t: np.ndarray | list) -> np.ndarray:
        return groups(f) * g + groups(t)

    flow_pair = pair(conns["from_group"], conns["to_group"])
    flow_app = flow_pair * a + apps(conns["app"])
    flow_port = flow_pair * p + ports(conns["port_key"])

    def keys(kind: str, attr: str, codes: _Codes, width: int) -> np.ndarray:
        rows = [(r.from_group, r.to_group, v) for r in rules if r.kind == kind for v in getattr(r, attr)]
        if not rows:
            return np.empty(0, np.int64)
        f, t, v = zip(*rows)
        return pair(list(f), list(t)) * width + codes(list(v))

    any_port = ports([ANY])[0]
    port_rule_ports = keys("port", "ports", ports, p)
    app_rule_ports = keys("app", "ports", ports, p)
    app_ok = np.isin(flow_app, keys("app", "applications", apps, a))
    port_ok = np.isin(flow_port, port_rule_ports) | np.isin(flow_pair * p + any_port, port_rule_ports)
    app_port_ok = np.isin(flow_port, app_rule_ports) | np.isin(flow_pair * p + any_port, app_rule_ports)
    has_app = (conns["app"] != "").to_numpy()
    edge_known = np.isin(flow_pair, pair([r.from_group for r in rules], [r.to_group for r in rules]) if rules
                         else np.empty(0, np.int64))
    policy = (conns["scope"] == SCOPE_POLICY).to_numpy()
    external = (conns["to_group"] == EXTERNAL).to_numpy()

    allowed = app_ok | port_ok | (~has_app & app_port_ok)
    out[policy & allowed] = ALLOWED
    out[policy & allowed & app_ok & ~port_ok & ~app_port_ok] = "app_unexpected_port"
    bad = policy & ~allowed
    out[bad & ~edge_known & external] = "external_destination"
    out[bad & ~edge_known & ~external] = "new_edge"
    out[bad & edge_known & has_app] = "new_app"
    out[bad & edge_known & ~has_app] = "new_port"
    return out


# ---- aggregating violations ----

def _first_n(frame: pd.DataFrame, by: list[str], n: int) -> pd.DataFrame:
    return frame.groupby(by, sort=False, dropna=False).head(n)


def policy_violations(conns: pd.DataFrame, status: np.ndarray, protect: bool,
                      hostnames: dict[str, list[str]]) -> list[dict]:
    bad = conns[np.isin(status, list(POLICY_TYPES))].copy()
    if not len(bad):
        return []
    bad["type"] = status[np.isin(status, list(POLICY_TYPES))]
    stats = bad.groupby(_KEY, sort=False).agg(flows=("ts", "size"), packets=("packets", "sum"),
                                              bytes=("bytes", "sum"), first_seen=("ts", "min"),
                                              last_seen=("last_ts", "max"))
    bad = bad.sort_values(["ts", "pcap_filename", "first_frame"], kind="stable")
    clients = _lists(_first_n(bad.drop_duplicates(_KEY + ["src_ip"]), _KEY, MAX_PEERS), "src_ip")
    servers = _lists(_first_n(bad.drop_duplicates(_KEY + ["dest_ip"]), _KEY, MAX_PEERS), "dest_ip")
    evidence: dict[tuple, list[dict]] = {}
    for row in _first_n(bad, _KEY, MAX_EVIDENCE).itertuples(index=False):
        evidence.setdefault(tuple(getattr(row, k) for k in _KEY), []).append(
            {"community_id": row.community_id, "pcap_filename": row.pcap_filename, "first_frame": int(row.first_frame),
             "last_frame": int(row.last_frame), "src_ip": row.src_ip, "src_port": int(row.src_port),
             "dest_ip": row.dest_ip, "dest_port": int(row.port), "ts": float(row.ts)})
    out = []
    for key, s in stats.iterrows():
        vtype, src, dst, proto, port, app = key
        severity = POLICY_TYPES[vtype]
        denied = protect and vtype != "app_unexpected_port"  # the app rule itself allows any port
        names = sorted({n for ip in servers[key] for n in hostnames.get(ip, ())})[:MAX_PEERS]
        out.append({
            "fingerprint": fingerprint(vtype, src, dst, proto, int(port), app or ""),
            "type": vtype, "severity": severity, "severity_name": SEVERITY_NAMES[severity],
            "action": "deny" if denied else "violate", "accepted": False,
            "from_group": src, "to_group": dst, "proto": proto, "port": int(port), "app": app or None,
            "message": _message(vtype, src, dst, proto, int(port), app),
            "flows": int(s["flows"]), "packets": int(s["packets"]), "bytes": int(s["bytes"]),
            "denied_packets": int(s["packets"]) if denied else 0,
            "first_seen": float(s["first_seen"]), "last_seen": float(s["last_seen"]),
            "clients": clients[key], "servers": servers[key], "server_names": names,
            "evidence": evidence.get(key, []), "rule_id": None, "rule_name": None, "snippet": None,
        })
    return out


def _lists(frame: pd.DataFrame, column: str) -> dict[tuple, list[str]]:
    out: dict[tuple, list[str]] = {}
    for key, value in zip(zip(*(frame[k] for k in _KEY)), frame[column]):
        out.setdefault(key, []).append(value)
    return out


def _message(vtype: str, src: str, dst: str, proto: str, port: int, app: str) -> str:
    what = f"{proto}/{port}" + (f" ({app})" if app else "")
    return {
        "new_edge": f"{src} -> {dst}: no rule allows this pair ({what})",
        "external_destination": f"{src} -> external: {what} to an external destination the baseline does not allow",
        "new_port": f"{src} -> {dst}: {what} is not an allowed port of this pair",
        "new_app": f"{src} -> {dst}: application {app} is not allowed for this pair ({what})",
        "app_unexpected_port": f"{src} -> {dst}: {app} was learned on other ports, seen on {proto}/{port}",
    }[vtype]


def alert_violations(alerts: pd.DataFrame, groups: GroupMap, hostnames: dict[str, list[str]],
                     protect: bool) -> list[dict]:
    """DLP/WAF/IDS matches and NeuVector threats, one violation per (category, rule, from, to)."""
    if not len(alerts):
        return []
    a = alerts[alerts["category"].isin(ALERT_TYPES)].copy()
    if not len(a):
        return []
    a["from_group"] = groups.assign(a["src_ip"].astype(object), hostnames).to_numpy()
    a["to_group"] = groups.assign(a["dest_ip"].astype(object), hostnames).to_numpy()
    a["count"] = pd.to_numeric(a["count"], errors="coerce").fillna(1).astype(np.int64)
    a = a.sort_values(["ts", "pcap_filename", "frame"], kind="stable")
    out = []
    for (category, rule_id, src, dst), grp in a.groupby(["category", "rule_id", "from_group", "to_group"], sort=False):
        first = grp.iloc[0]
        severity = int(np.clip(pd.to_numeric(grp["severity"], errors="coerce").max(), 1, 5)) \
            if grp["severity"].notna().any() else 3
        denied = protect and (first["action"] or "") != "allow"
        port = first["dest_port"]
        out.append({
            "fingerprint": fingerprint(category, src, dst, int(rule_id)),
            "type": category, "severity": severity, "severity_name": SEVERITY_NAMES[severity],
            "action": "deny" if denied else "violate", "accepted": False,
            "from_group": src, "to_group": dst, "proto": first["proto"],
            "port": None if pd.isna(port) else int(port), "app": first["app_proto"] if isinstance(first["app_proto"], str) else None,
            "message": f"{src} -> {dst}: {first['rule_name']} ({category} rule {int(rule_id)})",
            "flows": int(grp["community_id"].nunique()), "packets": int(grp["count"].sum()), "bytes": 0,
            "denied_packets": int(grp["count"].sum()) if denied else 0,
            "first_seen": float(grp["ts"].min()), "last_seen": float(grp["ts"].max()),
            "clients": list(pd.unique(grp["src_ip"]))[:MAX_PEERS], "servers": list(pd.unique(grp["dest_ip"]))[:MAX_PEERS],
            "server_names": sorted({n for ip in pd.unique(grp["dest_ip"]) for n in hostnames.get(ip, ())})[:MAX_PEERS],
            "evidence": [{"community_id": r.community_id, "pcap_filename": r.pcap_filename,
                          "first_frame": _int(r.frame), "last_frame": _int(r.frame), "src_ip": r.src_ip,
                          "src_port": _int(r.src_port), "dest_ip": r.dest_ip, "dest_port": _int(r.dest_port),
                          "ts": float(r.ts)} for r in grp.head(MAX_EVIDENCE).itertuples(index=False)],
            "rule_id": int(rule_id), "rule_name": first["rule_name"],
            "snippet": first["snippet"] if isinstance(first["snippet"], str) else None,
        })
    return out


def _int(v: object) -> int | None:
    return None if v is None or pd.isna(v) else int(v)  # type: ignore[arg-type]


# ---- what to do about it ----

def closest_rule(v: dict, rules: list[Rule]) -> Rule | None:
    """The baseline rule a reviewer should compare with: same pair first, then same destination or source,
    then one that covers the same application or port."""
    best, best_score = None, 0
    port_key = f"{v['proto']}/{v['port']}" if v.get("port") is not None else None
    for r in rules:
        score = (4 if (r.from_group, r.to_group) == (v["from_group"], v["to_group"]) else
                 2 if r.to_group == v["to_group"] else 1 if r.from_group == v["from_group"] else 0)
        if score == 0:
            continue
        score += 2 if v.get("app") and v["app"] in r.applications else 0
        score += 1 if port_key and (port_key in r.ports or r.any_port) else 0
        score += 1 if r.kind == ("app" if v.get("app") else "port") else 0
        if score > best_score or (score == best_score and best is not None and r.id < best.id):
            best, best_score = r, score
    return best


def suggested_rule(v: dict) -> dict | None:
    if v["type"] not in POLICY_TYPES:
        return None
    port_key = f"{v['proto']}/{v['port']}"
    if v.get("app"):
        return {"from": v["from_group"], "to": v["to_group"], "kind": "app", "ports": [port_key],
                "applications": [v["app"]]}
    return {"from": v["from_group"], "to": v["to_group"], "kind": "port", "ports": [port_key], "applications": []}


def graph(conns: pd.DataFrame, status: np.ndarray, baseline: Baseline, violations: list[dict]) -> dict:
    """Groups and edges for the report: baseline edges (used or not) and the new ones, new first when capped."""
    edges: dict[tuple[str, str], dict] = {}
    for r in baseline.rules:
        e = edges.setdefault((r.from_group, r.to_group), {"from": r.from_group, "to": r.to_group, "status": "unused",
                                                           "flows": 0, "label": ""})
        e["label"] = ", ".join(filter(None, [e["label"], ", ".join(r.applications or r.ports)]))
    used = conns[status == ALLOWED].groupby(["from_group", "to_group"]).size() if len(conns) else {}
    for (src, dst), n in dict(used).items():
        if (src, dst) in edges:
            edges[(src, dst)].update(status="baseline", flows=int(n))
    for v in violations:
        key = (v["from_group"], v["to_group"])
        e = edges.get(key)
        if e is None:
            e = edges[key] = {"from": key[0], "to": key[1], "status": "new", "flows": 0, "label": ""}
        elif e["status"] != "new":
            e["status"] = "violation"
        e["flows"] += v["flows"]
        what = f"{v['proto']}/{v['port']}" if v.get("port") is not None else v["type"]
        if what not in e["label"]:
            e["label"] = ", ".join(filter(None, [e["label"], what]))[:120]
    order = {"new": 0, "violation": 1, "baseline": 2, "unused": 3}
    kept = sorted(edges.values(), key=lambda e: (order[e["status"]], -e["flows"], e["from"], e["to"]))[:MAX_GRAPH_EDGES]
    names = sorted({e["from"] for e in kept} | {e["to"] for e in kept})
    nodes = [{"id": n, "kind": "external" if n == EXTERNAL else "host" if n.startswith(HOST_PREFIX) else "group"}
             for n in names]
    return {"nodes": nodes, "edges": kept}


def capture_quality(run_summary: dict) -> dict:
    totals = run_summary.get("totals", {})
    return {"packets": int(totals.get("packets", 0)), "outcomes": dict(totals.get("outcomes") or {}),
            "issues": [{"file": f.get("file"), **i} for f in run_summary.get("files", []) for i in f.get("issues", [])]}


def check(conns: pd.DataFrame, alerts: pd.DataFrame, baseline: Baseline, groups: GroupMap,
          hostnames: dict[str, list[str]], run_summary: dict, options: CheckOptions,
          rule_packs: list[dict] | None = None) -> dict:
    """The check result (docs/baseline.md, "Check result"): verdict, totals, violations, graph."""
    protect = options.mode == "protect"
    status = judge(conns, baseline)
    violations = policy_violations(conns, status, protect, hostnames) + \
        alert_violations(alerts, groups, hostnames, protect)
    limit = threshold(options.fail_on)
    for v in violations:
        rule = closest_rule(v, baseline.rules)
        v["closest_rule"] = rule.summary() if rule else None
        v["suggested_rule"] = suggested_rule(v)
        v["accepted"] = v["fingerprint"] in options.accept
    violations.sort(key=lambda v: (-v["severity"], v["type"], v["fingerprint"]))
    failing = [v for v in violations if not v["accepted"] and v["severity"] >= limit]
    in_scope = status != IGNORED
    ignored = pd.Series(conns["scope"][~in_scope]).value_counts().to_dict() if len(conns) else {}
    ips = {ip for v in violations for ip in v["clients"] + v["servers"]}
    return {
        "tool": {"name": "nvpcap", "version": __version__}, "kind": "check", "mode": options.mode,
        "verdict": "fail" if failing else "pass", "fail_on": options.fail_on,
        "baseline": {"path": baseline.path, "rules": len(baseline.rules),
                     "learned_from": [f.get("file") for f in baseline.learned_from]},
        "rule_packs": rule_packs or [],
        "inputs": run_summary.get("files", []),
        "capture_quality": capture_quality(run_summary),
        "totals": {
            "flows": len(conns), "flows_checked": int(in_scope.sum()),
            "flows_allowed": int((status == ALLOWED).sum()),
            "flows_violating": int(np.isin(status, list(POLICY_TYPES)).sum()),
            "flows_ignored": int((~in_scope).sum()), "ignored_by_reason": {str(k): int(n) for k, n in ignored.items()},
            "violations": len(violations), "failing": len(failing),
            "accepted": sum(v["accepted"] for v in violations),
            "denied_packets": sum(v["denied_packets"] for v in violations),
            "first_ts": float(conns["ts"].min()) if len(conns) else None,
            "last_ts": float(conns["last_ts"].max()) if len(conns) else None,
        },
        "violations": violations,
        "graph": graph(conns, status, baseline, violations),
        "hostnames": {ip: hostnames[ip] for ip in sorted(ips) if ip in hostnames},
    }


_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")


def load_accept(path: str) -> set[str]:
    """Fingerprints to accept: a YAML list (strings, or mappings with `fingerprint`), `accept:` such a list,
    or plain text with one fingerprint a line (# comments)."""
    import yaml

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        doc = doc.get("accept", doc.get("violations"))
    if isinstance(doc, list):
        found = [str(item.get("fingerprint") if isinstance(item, dict) else item).strip() for item in doc]
    else:
        found = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    found = [fp for fp in found if fp and fp != "None"]
    bad = [fp for fp in found if not _FINGERPRINT.match(fp)]
    if bad:  # a typo must not silently accept nothing
        raise ValueError(f"{path}: not a fingerprint (16 hex digits): {bad[0][:60]!r}"
                         + (f" and {len(bad) - 1} more" if len(bad) > 1 else ""))
    return set(found)
