"""What every writer shares: the interface, flat event columns, and choosing a writer."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO

import polars as pl

FORMATS = ("table", "jsonl", "eve", "csv", "parquet", "zeek")

# Application events, alerts and anomalies flattened to one fixed set of columns (CSV, Parquet); an application
# event's own fields (the dict named after its protocol) are one JSON text column, `details`.
EVENT_COLUMNS = [
    "event_type", "ts", "timestamp", "pcap_filename", "frame", "first_frame", "last_frame", "flow_id",
    "community_id", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "app_proto", "rule_id", "rule_name",
    "category", "severity", "action", "direction", "count", "anomaly_type", "anomaly_event", "message", "details",
]


_INT_EVENT_COLUMNS = {"frame", "first_frame", "last_frame", "flow_id", "src_port", "dest_port", "rule_id", "severity",
                      "count"}
EVENT_SCHEMA = {c: pl.Int64 if c in _INT_EVENT_COLUMNS else pl.Float64 if c == "ts" else pl.Utf8 for c in EVENT_COLUMNS}


def flatten_events(events: list[dict]) -> pl.DataFrame:
    """Application events, alerts and anomalies as one flat table (CSV, Parquet)."""
    rows = []
    for e in events:
        row = {c: e.get(c) for c in EVENT_COLUMNS}
        if "anomaly" in e:
            row["anomaly_type"] = e["anomaly"]["type"]
            row["anomaly_event"] = e["anomaly"]["event"]
            row["message"] = e["anomaly"]["message"]
        app = e["event_type"]
        if app not in ("alert", "anomaly") and isinstance(e.get(app), dict):
            row["details"] = json.dumps(e[app], separators=(",", ":"), ensure_ascii=False, default=str)
        if row["proto"] is not None:
            row["proto"] = str(row["proto"])
        rows.append(row)
    return pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row") if rows else pl.DataFrame(schema=EVENT_SCHEMA)


class Sink:
    """A writer of records. Subclasses override what they store."""

    def write_flows(self, flows: pl.DataFrame) -> None:
        raise NotImplementedError

    def write_events(self, events: list[dict]) -> None:
        raise NotImplementedError

    def close(self, run_summary: dict) -> None:
        """Finish the output; `run_summary` is the run's summary (files, outcome counters)."""


def open_text(output: str | None) -> tuple[IO[str], bool]:
    """A text stream for `output` (None or '-' = stdout). Returns (stream, whether we must close it)."""
    if output in (None, "-"):
        return sys.stdout, False
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    return open(output, "w", encoding="utf-8", newline=""), True


def sibling(output: str | None, suffix: str) -> str | None:
    """A file next to `output` for a second table (events next to flows): flows.csv -> flows.events.csv."""
    if output in (None, "-"):
        return None
    root, ext = os.path.splitext(output)
    return f"{root}.{suffix}{ext}"


def format_for_path(output: str | None, stdout_is_tty: bool) -> str:
    """The format a user most likely means, from the output name (or the terminal)."""
    if output in (None, "-"):
        return "table" if (output is None and stdout_is_tty) else "jsonl"
    lower = output.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".parquet") or output.endswith(os.sep) or os.path.isdir(output):
        return "parquet"
    if lower.endswith(".log") or lower.endswith(".tsv"):
        return "zeek"
    return "jsonl"


def open_sink(fmt: str, output: str | None) -> Sink:
    """The writer for `fmt`; each writer's libraries are imported only when it is used."""
    if fmt in ("jsonl", "eve"):
        from .jsonl import JsonlSink

        return JsonlSink(output)
    if fmt == "csv":
        from .csvout import CsvSink

        return CsvSink(output)
    if fmt == "parquet":
        from .parquet import ParquetSink

        return ParquetSink(output)
    if fmt == "zeek":
        from .zeek import ZeekSink

        return ZeekSink(output)
    if fmt == "table":
        from .table import TableSink

        return TableSink(output)
    raise ValueError(f"unknown format {fmt!r}")
