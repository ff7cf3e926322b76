"""AnalysisCollector: a record sink that aggregates an analysis for the HTML report, in bounded memory.

It is teed beside the user's chosen sink, so it must never hold records: it keeps counters (protocol mix, bytes
per IP and per conversation), at most MAX_ALERT_RECORDS alert records (every alert is still counted by rule),
and hostnames learned from DNS answers, TLS SNI and HTTP Host. Per-IP and per-conversation tables are pruned to
their heaviest entries when they outgrow a bound, so a capture of millions of hosts cannot exhaust memory; the
model says when that happened (top lists are then approximate).
"""
from __future__ import annotations

import ipaddress
from collections import Counter

import polars as pl

from .. import __version__

MAX_ALERT_RECORDS = 1000
TOP_N = 20
MAX_TALKERS = 200_000  # per-IP counters kept before pruning to the heaviest half
MAX_CONVERSATIONS = 200_000
MAX_HOSTNAME_IPS = 10_000
MAX_NAMES_PER_IP = 10
MAX_NAME_LEN = 255
ALERT_FIELDS = ("ts", "pcap_filename", "frame", "first_frame", "last_frame", "community_id", "src_ip", "src_port",
                "dest_ip", "dest_port", "proto", "app_proto", "rule_id", "rule_name", "category", "severity",
                "action", "context", "direction", "count", "snippet", "message")


class AnalysisCollector:
    """Same interface as nvpcap.output.base.Sink: write_flows, write_events, close."""

    def __init__(self, top_n: int = TOP_N, max_alert_records: int = MAX_ALERT_RECORDS,
                 max_talkers: int = MAX_TALKERS, max_conversations: int = MAX_CONVERSATIONS,
                 rule_packs: list[dict] | None = None) -> None:
        """`rule_packs`: the rule sets loaded for the run ([{"name", "rules", "version"?}]), shown as versions."""
        self.rule_packs = [dict(p) for p in rule_packs or []]
        self.top_n = top_n
        self.max_alert_records = max_alert_records
        self.max_talkers = max_talkers
        self.max_conversations = max_conversations
        self.flows = 0
        self.packets = 0
        self.bytes = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.proto_flows: Counter = Counter()
        self.proto_bytes: Counter = Counter()
        self.proto_packets: Counter = Counter()
        self.talker_bytes: Counter = Counter()
        self.talker_flows: Counter = Counter()
        self.conv_bytes: Counter = Counter()
        self.conv_flows: Counter = Counter()
        self.pruned = False
        self.alerts_total = 0
        self.alerts_by_rule: Counter = Counter()
        self.alert_rules: dict[tuple, dict] = {}
        self.alert_records: list[dict] = []
        self.anomalies: Counter = Counter()
        self.events_by_type: Counter = Counter()
        self.hostnames: dict[str, list[str]] = {}
        self.summary: dict | None = None

    # -- sink interface -------------------------------------------------------------------------------------
    def write_flows(self, flows: pl.DataFrame) -> None:
        if flows.height == 0:
            return
        f = flows.select(
            pl.col("app_proto").fill_null("unknown").cast(pl.Utf8),
            pl.col("src_ip").cast(pl.Utf8), pl.col("dest_ip").cast(pl.Utf8),
            pl.col("proto").cast(pl.Utf8), pl.col("dest_port").cast(pl.Int64),
            (pl.col("bytes_toserver").fill_null(0) + pl.col("bytes_toclient").fill_null(0)).cast(pl.Int64)
            .alias("bytes"),
            (pl.col("pkts_toserver").fill_null(0) + pl.col("pkts_toclient").fill_null(0)).cast(pl.Int64)
            .alias("pkts"),
            pl.col("ts").cast(pl.Float64),
            (pl.col("ts") + pl.col("duration").fill_null(0.0)).cast(pl.Float64).alias("end"),
        )
        self.flows += f.height
        self.bytes += int(f["bytes"].sum())
        self.packets += int(f["pkts"].sum())
        lo, hi = f["ts"].min(), f["end"].max()
        if lo is not None:
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
        if hi is not None:
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
        for app, n, b, p in f.group_by("app_proto").agg(pl.len(), pl.col("bytes").sum(),
                                                         pl.col("pkts").sum()).iter_rows():
            self.proto_flows[app] += n
            self.proto_bytes[app] += b
            self.proto_packets[app] += p
        ends = pl.concat([f.select(pl.col("src_ip").alias("ip"), "bytes"),
                          f.select(pl.col("dest_ip").alias("ip"), "bytes")])
        for ip, n, b in ends.group_by("ip").agg(pl.len(), pl.col("bytes").sum()).iter_rows():
            self.talker_flows[ip] += n
            self.talker_bytes[ip] += b
        keys = ["src_ip", "dest_ip", "proto", "dest_port", "app_proto"]
        for *key, n, b in f.group_by(keys).agg(pl.len(), pl.col("bytes").sum()).iter_rows():
            k = tuple(key)
            self.conv_flows[k] += n
            self.conv_bytes[k] += b
        self._prune()

    def write_events(self, events: list[dict]) -> None:
        for e in events:
            kind = e.get("event_type")
            self.events_by_type[kind] += 1
            if kind == "alert":
                self._alert(e)
            elif kind == "anomaly":
                a = e.get("anomaly") or {}
                self.anomalies[(str(a.get("type")), str(a.get("event")))] += 1
            elif kind == "dns":
                for ans in (e.get("dns") or {}).get("answers") or []:
                    if ans.get("rrtype") in ("A", "AAAA"):
                        self._name(ans.get("rdata"), ans.get("rrname"))
            elif kind == "ssl":
                self._name(e.get("dest_ip"), (e.get("ssl") or {}).get("sni"))
            elif kind == "http":
                self._name(e.get("dest_ip"), _strip_port((e.get("http") or {}).get("host")))
            elif kind == "http2":
                h2 = e.get("http2") or {}
                self._name(e.get("dest_ip"), _strip_port(h2.get("authority") or h2.get("host")))

    def close(self, run_summary: dict) -> None:
        self.summary = run_summary

    # -- aggregation helpers --------------------------------------------------------------------------------
    def _alert(self, e: dict) -> None:
        self.alerts_total += 1
        key = (e.get("category"), e.get("rule_id"))
        self.alerts_by_rule[key] += 1
        if key not in self.alert_rules:
            self.alert_rules[key] = {"category": e.get("category"), "rule_id": e.get("rule_id"),
                                     "rule_name": e.get("rule_name"), "severity": e.get("severity")}
        if len(self.alert_records) < self.max_alert_records:
            self.alert_records.append({k: e.get(k) for k in ALERT_FIELDS})

    def _name(self, ip, name) -> None:
        if not ip or not name or not isinstance(name, str):
            return
        try:
            ip = str(ipaddress.ip_address(str(ip)))
        except ValueError:
            return
        name = name.strip().rstrip(".")[:MAX_NAME_LEN]
        if not name:
            return
        names = self.hostnames.get(ip)
        if names is None:
            if len(self.hostnames) >= MAX_HOSTNAME_IPS:
                return
            names = self.hostnames[ip] = []
        if name not in names and len(names) < MAX_NAMES_PER_IP:
            names.append(name)

    def _prune(self) -> None:
        """Keep the heaviest half of a table that outgrew its bound (top lists become approximate)."""
        for bytes_c, flows_c, bound in ((self.talker_bytes, self.talker_flows, self.max_talkers),
                                        (self.conv_bytes, self.conv_flows, self.max_conversations)):
            if len(bytes_c) > bound:
                keep = {k for k, _ in bytes_c.most_common(bound // 2)}
                for k in [k for k in bytes_c if k not in keep]:
                    del bytes_c[k]
                    flows_c.pop(k, None)
                self.pruned = True

    # -- the report's model ---------------------------------------------------------------------------------
    def model(self) -> dict:
        """A plain JSON-able dict: what render_analysis_report draws."""
        summary = self.summary or {}
        files = summary.get("files") or []
        totals = summary.get("totals") or {}
        issues = [dict(i, file=f.get("file")) for f in files for i in f.get("issues") or []]
        protocols = [{"app_proto": a, "flows": self.proto_flows[a], "bytes": self.proto_bytes[a],
                      "packets": self.proto_packets[a]}
                     for a in sorted(self.proto_flows, key=lambda a: (-self.proto_bytes[a], a))]
        talkers = sorted(self.talker_bytes, key=lambda ip: (-self.talker_bytes[ip], ip))[: self.top_n]
        convs = sorted(self.conv_bytes, key=lambda k: (-self.conv_bytes[k], tuple(map(str, k))))[: self.top_n]
        rules = sorted(self.alerts_by_rule, key=lambda k: (-self.alerts_by_rule[k], str(k)))
        return {
            "tool": {"name": "nvpcap", "version": summary.get("version") or __version__},
            "kind": "analysis",
            "totals": {"files": totals.get("files", len(files)), "packets": totals.get("packets", self.packets),
                       "flows": self.flows, "bytes": self.bytes, "flow_packets": self.packets,
                       "events": totals.get("events"), "alerts": self.alerts_total,
                       "anomalies": sum(self.anomalies.values()), "first_ts": self.first_ts,
                       "last_ts": self.last_ts},
            "protocols": protocols,
            "top_talkers": [{"ip": ip, "bytes": self.talker_bytes[ip], "flows": self.talker_flows[ip]}
                            for ip in talkers],
            "top_conversations": [{"src_ip": k[0], "dest_ip": k[1], "proto": k[2], "dest_port": k[3],
                                   "app_proto": k[4], "flows": self.conv_flows[k], "bytes": self.conv_bytes[k]}
                                  for k in convs],
            "approximate": self.pruned,
            "alerts": {"total": self.alerts_total,
                       "by_rule": [dict(self.alert_rules[k], count=self.alerts_by_rule[k]) for k in rules],
                       "records": list(self.alert_records),
                       "records_dropped": max(self.alerts_total - len(self.alert_records), 0)},
            "anomalies": [{"type": t, "event": ev, "count": c}
                          for (t, ev), c in sorted(self.anomalies.items(), key=lambda kv: (-kv[1], kv[0]))],
            "events_by_type": dict(sorted((str(k), v) for k, v in self.events_by_type.items())),
            "hostnames": {ip: list(v) for ip, v in sorted(self.hostnames.items())},
            "capture_quality": {"packets": totals.get("packets", 0), "outcomes": totals.get("outcomes") or {},
                                "issues": issues},
            "inputs": files,
            "rule_packs": self.rule_packs,
        }


def _strip_port(host) -> str | None:
    """'www.example.com:8080' -> 'www.example.com'; '[::1]:80' -> '::1'."""
    if not isinstance(host, str):
        return None
    host = host.strip()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


class TeeSink:
    """Hands every record to the user's sink and to the collector (for `analyze --report`)."""

    def __init__(self, sink, collector: AnalysisCollector) -> None:
        self.sink = sink
        self.collector = collector

    def write_flows(self, flows: pl.DataFrame) -> None:
        self.sink.write_flows(flows)
        self.collector.write_flows(flows)

    def write_events(self, events: list[dict]) -> None:
        self.sink.write_events(events)
        self.collector.write_events(events)

    def close(self, run_summary: dict) -> None:
        self.sink.close(run_summary)
        self.collector.close(run_summary)
