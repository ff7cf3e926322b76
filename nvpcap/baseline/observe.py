"""What the baseline commands need from captures: the flows, the alerts and the hostnames seen for addresses.

Inputs are captures (run through the same pipeline as `nvpcap analyze`) or record files that `analyze` wrote
(JSONL, or Parquet with its `.events` sibling), so a week of traffic analysed once can be checked many times.
Only the columns the baseline uses are kept; application events are reduced to hostnames as they arrive.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd
import polars as pl

from ..output.base import Sink

FLOW_FIELDS = ["ts", "duration", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "app_proto",
               "app_confidence", "conn_state", "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient",
               "community_id", "pcap_filename", "first_frame", "last_frame"]
ALERT_FIELDS = ["ts", "pcap_filename", "frame", "community_id", "src_ip", "src_port", "dest_ip", "dest_port",
                "proto", "app_proto", "rule_id", "rule_name", "category", "severity", "action", "count", "snippet",
                "message", "context", "direction"]
RECORD_SUFFIXES = (".jsonl", ".json", ".ndjson", ".eve", ".parquet")
MAX_NAMES_PER_IP = 8
MAX_HOSTNAME_IPS = 200_000
MAX_ALERTS = 200_000


@dataclass
class Observation:
    flows: pd.DataFrame
    alerts: pd.DataFrame
    hostnames: dict[str, list[str]]  # address -> names seen for it (DNS answers, TLS SNI, HTTP Host)
    run_summary: dict = field(default_factory=dict)
    alerts_dropped: int = 0


class Hostnames:
    """Address -> names, bounded (names per address and addresses kept)."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}

    def add(self, ip: object, name: object) -> None:
        if not ip or not name or not isinstance(name, str):
            return
        name = name.strip().lower().rstrip(".")
        if not name or len(name) > 253:
            return
        known = self.names.get(ip)  # type: ignore[call-overload]
        if known is None:
            if len(self.names) >= MAX_HOSTNAME_IPS:
                return
            self.names[str(ip)] = [name]
        elif name not in known and len(known) < MAX_NAMES_PER_IP:
            known.append(name)

    def add_event(self, e: dict) -> None:
        kind = e.get("event_type")
        data = e.get(kind) if isinstance(kind, str) else None
        if not isinstance(data, dict):
            return
        if kind == "dns":
            for a in data.get("answers") or ():
                if isinstance(a, dict) and a.get("rrtype") in ("A", "AAAA"):
                    self.add(a.get("rdata"), a.get("rrname"))
        elif kind == "ssl":
            self.add(e.get("dest_ip"), data.get("sni"))
        elif kind == "http":
            host = data.get("host")
            if isinstance(host, str):
                self.add(e.get("dest_ip"), _strip_port(host))


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class ObservationSink(Sink):
    """Keeps flows (baseline columns only), alerts (bounded) and hostnames while the pipeline runs."""

    def __init__(self) -> None:
        self._flows: list[pl.DataFrame] = []
        self.alerts: list[dict] = []
        self.alerts_dropped = 0
        self.hostnames = Hostnames()
        self.summary: dict = {}

    def write_flows(self, flows: pl.DataFrame) -> None:
        self._flows.append(flows.select(FLOW_FIELDS))

    def write_events(self, events: list[dict]) -> None:
        for e in events:
            kind = e.get("event_type")
            if kind == "alert":
                if len(self.alerts) < MAX_ALERTS:
                    self.alerts.append({k: e.get(k) for k in ALERT_FIELDS})
                else:
                    self.alerts_dropped += 1
            elif kind in ("dns", "ssl", "http"):
                self.hostnames.add_event(e)

    def close(self, run_summary: dict) -> None:
        self.summary = run_summary

    def observation(self) -> Observation:
        flows = pl.concat(self._flows).to_pandas() if self._flows else empty_flows()
        return Observation(flows, alerts_frame(self.alerts), self.hostnames.names, self.summary, self.alerts_dropped)


def empty_flows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in FLOW_FIELDS})


def alerts_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=ALERT_FIELDS)


def is_record_file(path: str) -> bool:
    """Records `analyze` wrote: a JSONL/Parquet file, or a partitioned Parquet folder (DIR/flows/*.parquet)."""
    if os.path.isdir(path):
        parts = os.path.join(path, "flows")
        return os.path.isfile(os.path.join(path, "flows.parquet")) or (
            os.path.isdir(parts) and any(n.endswith(".parquet") for n in os.listdir(parts)))
    return path.lower().endswith(RECORD_SUFFIXES)


def read_records(paths: Iterable[str]) -> Observation:
    """Observation from record files written by `nvpcap analyze` (JSONL/EVE, or Parquet flows + events)."""
    sink = ObservationSink()
    files: list[dict] = []
    for path in paths:
        try:
            if os.path.isdir(path) and os.path.isfile(os.path.join(path, "flows.parquet")):
                _read_parquet(os.path.join(path, "flows.parquet"), sink)
            elif os.path.isdir(path):
                _read_parquet_parts(path, sink)
            elif path.lower().endswith(".parquet"):
                _read_parquet(path, sink)
            else:
                files.extend(_read_jsonl(path, sink))
        except (pl.exceptions.PolarsError, json.JSONDecodeError, TypeError, KeyError) as exc:
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{path}: not records written by nvpcap analyze ({detail})") from None
    obs = sink.observation()
    packets = sum(f.get("packets", 0) for f in files)
    outcomes: Counter = Counter()
    for f in files:
        outcomes.update(f.get("outcomes") or {})
    obs.run_summary = {"files": files, "totals": {"files": len(files), "packets": packets,
                                                  "outcomes": dict(outcomes)}}
    return obs


def _read_jsonl(path: str, sink: ObservationSink) -> list[dict]:
    files: list[dict] = []
    block: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {lineno}: not JSON ({exc.msg})") from None
            kind = rec.get("event_type") if isinstance(rec, dict) else None
            if kind == "flow":
                block.append(rec)
                if len(block) >= 65536:
                    sink.write_flows(_flow_block(block))
                    block = []
            elif kind == "stats":
                files.extend(rec.get("files") or [])
            elif kind is not None:
                sink.write_events([rec])
    if block:
        sink.write_flows(_flow_block(block))
    return files


def _flow_block(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{c: r.get(c) for c in FLOW_FIELDS} for r in rows], schema=_FLOW_SCHEMA, orient="row")


def _read_parquet(path: str, sink: ObservationSink) -> None:
    flows = pl.read_parquet(path, columns=FLOW_FIELDS)
    sink.write_flows(flows.cast(_FLOW_SCHEMA))
    root, ext = os.path.splitext(path)
    events_path = os.path.join(os.path.dirname(path), "events.parquet") \
        if os.path.basename(path) == "flows.parquet" else f"{root}.events{ext}"
    if os.path.exists(events_path):
        _read_parquet_events(pl.read_parquet(events_path), sink)


def _read_parquet_parts(folder: str, sink: ObservationSink) -> None:
    """A partitioned folder (`analyze --format parquet -o DIR/`): one part per input under flows/ and events/."""
    sink.write_flows(pl.read_parquet(os.path.join(folder, "flows", "*.parquet"), columns=FLOW_FIELDS)
                     .cast(_FLOW_SCHEMA))
    events = os.path.join(folder, "events")
    if os.path.isdir(events) and any(n.endswith(".parquet") for n in os.listdir(events)):
        _read_parquet_events(pl.read_parquet(os.path.join(events, "*.parquet")), sink)


def _read_parquet_events(frame: pl.DataFrame, sink: ObservationSink) -> None:
    for rec in frame.iter_rows(named=True):
        kind = rec.get("event_type")
        if kind == "alert":
            sink.write_events([rec])
        elif kind in ("dns", "ssl", "http") and rec.get("details"):
            rec[kind] = json.loads(rec["details"])
            sink.write_events([rec])


def _schema() -> dict[str, pl.DataType]:
    from ..records.flows import FLOW_SCHEMA

    return {c: FLOW_SCHEMA[c] for c in FLOW_FIELDS}


_FLOW_SCHEMA = _schema()


def observe(paths: list[str], run_captures: Callable[[list[str], Sink], dict]) -> Observation:
    """Observation from a mix of captures and record files; `run_captures` runs the pipeline on the captures."""
    records = [p for p in paths if is_record_file(p)]
    captures = [p for p in paths if not is_record_file(p)]
    parts: list[Observation] = []
    if records:
        parts.append(read_records(records))
    if captures:
        sink = ObservationSink()
        summary = run_captures(captures, sink)
        obs = sink.observation()
        obs.run_summary = summary
        parts.append(obs)
    return merge(parts)


def merge(parts: list[Observation]) -> Observation:
    if len(parts) == 1:
        return parts[0]
    hostnames = Hostnames()
    for p in parts:
        for ip, names in p.hostnames.items():
            for n in names:
                hostnames.add(ip, n)
    files = [f for p in parts for f in p.run_summary.get("files", [])]
    outcomes: Counter = Counter()
    for p in parts:
        outcomes.update(p.run_summary.get("totals", {}).get("outcomes") or {})
    summary = {"files": files, "totals": {"files": len(files), "packets": sum(f.get("packets", 0) for f in files),
                                          "outcomes": dict(outcomes)}}
    frames = [p.flows for p in parts if len(p.flows)]
    alerts = [p.alerts for p in parts if len(p.alerts)]
    return Observation(pd.concat(frames, ignore_index=True) if frames else empty_flows(),
                       pd.concat(alerts, ignore_index=True) if alerts else alerts_frame([]), hostnames.names, summary,
                       sum(p.alerts_dropped for p in parts))
