"""Learning: NeuVector's discover-mode rules, from observed connections, merged into a baseline.

The rules (NeuVector controller, learn.go addConnectToGraph; ../shared/reference/neuvector-dp.md section 5):
- per (from group, to group) at most one application rule and one port rule;
- a flow with an identified application adds it to the pair's application rule, and the application
  supersedes a port rule for the same protocol/port;
- a flow without one adds `proto/port` to the pair's port rule; for UDP only where the server showed an
  application on that port;
- more than 20 ports collapse to `any`.
nvpcap learns only from connections the server answered (a scan must not become policy) and keeps, per rule,
first/last seen, flows, bytes and a few example flows so a reviewer can find them in the captures.
"""
from __future__ import annotations

import pandas as pd

from .connections import SCOPE_POLICY
from .model import ANY, MAX_EXAMPLES, MAX_PORTS, Baseline, Rule, sort_ports


def learnable(conns: pd.DataFrame) -> pd.DataFrame:
    """Connections that teach the baseline something: in policy scope and answered by the server."""
    return conns[(conns["scope"] == SCOPE_POLICY) & conns["answered"]]


def learn(conns: pd.DataFrame, baseline: Baseline | None = None) -> Baseline:
    """Merge what `conns` shows into `baseline` (a new one when None) and return it."""
    baseline = baseline or Baseline()
    use = learnable(conns)
    with_app = use[use["app"] != ""]
    _merge_rules(baseline, with_app, "app")
    app_ports = {(r.from_group, r.to_group): set(r.ports) for r in baseline.rules if r.kind == "app"}
    without_app = use[use["app"] == ""]
    if len(without_app) and app_ports:  # an application supersedes the port rule for its ports
        pair_ports = zip(without_app["from_group"], without_app["to_group"], without_app["port_key"])
        keep = [p not in app_ports.get((f, t), ()) for f, t, p in pair_ports]
        without_app = without_app[keep]
    _merge_rules(baseline, without_app, "port")
    _supersede_ports(baseline)
    return baseline


def _merge_rules(baseline: Baseline, conns: pd.DataFrame, kind: str) -> None:
    if not len(conns):
        return
    stats = conns.groupby(["from_group", "to_group"], sort=True).agg(first_seen=("ts", "min"), last_seen=("last_ts", "max"),
                                                         flows=("ts", "size"), bytes=("bytes", "sum"))
    ports = conns.drop_duplicates(["from_group", "to_group", "port_key"]).groupby(["from_group", "to_group"])["port_key"].agg(list)
    apps = conns.drop_duplicates(["from_group", "to_group", "app"]).groupby(["from_group", "to_group"])["app"].agg(list) \
        if kind == "app" else None
    examples = conns.sort_values(["ts", "pcap_filename", "first_frame"]).groupby(["from_group", "to_group"]).head(MAX_EXAMPLES)
    example_map: dict[tuple[str, str], list[dict]] = {}
    for row in examples.itertuples(index=False):
        example_map.setdefault((row.from_group, row.to_group), []).append(
            {"community_id": row.community_id, "pcap": row.pcap_filename, "frame": int(row.first_frame)})
    for (src, dst), s in stats.iterrows():
        rule = baseline.rule(src, dst, kind)
        if rule is None:
            rule = Rule(baseline.next_id(), src, dst, kind)
            baseline.rules.append(rule)
        rule.first_seen = _min(rule.first_seen, float(s["first_seen"]))
        rule.last_seen = _max(rule.last_seen, float(s["last_seen"]))
        rule.flows += int(s["flows"])
        rule.bytes += int(s["bytes"])
        merged_ports = set(rule.ports) | set(ports[(src, dst)])
        rule.ports = [ANY] if ANY in merged_ports or len(merged_ports) > MAX_PORTS else sort_ports(merged_ports)
        if apps is not None:
            rule.applications = sorted(set(rule.applications) | set(apps[(src, dst)]))
        for ex in example_map.get((src, dst), []):
            if len(rule.examples) < MAX_EXAMPLES and ex not in rule.examples:
                rule.examples.append(ex)


def _supersede_ports(baseline: Baseline) -> None:
    """Drop port-rule ports that an application rule of the same pair now covers; drop emptied port rules."""
    for app_rule in [r for r in baseline.rules if r.kind == "app"]:
        port_rule = baseline.rule(app_rule.from_group, app_rule.to_group, "port")
        if port_rule is None or port_rule.any_port or app_rule.any_port:
            continue
        port_rule.ports = [p for p in port_rule.ports if p not in app_rule.ports]
        if not port_rule.ports:
            baseline.rules.remove(port_rule)


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)
