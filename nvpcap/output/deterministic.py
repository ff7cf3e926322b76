"""`analyze --deterministic`: the same bytes on every run and machine for the same inputs (golden files).

The wrapper buffers every record of the run, then writes them to the real writer in a documented order:
flows sorted by FLOW_ORDER, then events (application events, alerts, anomalies) sorted by EVENT_ORDER, then
the run summary without its wall-clock fields (WALL_CLOCK_FIELDS). Memory therefore grows with the number of
records (fine for golden captures; use the streaming writers for big ones).

JSON lines are written by Python's json module (shortest round-trip float text, stable since Python 3.1),
not by polars, so a polars upgrade cannot change a golden file's bytes. Zeek logs carry #open/#close times and
are refused.
"""
from __future__ import annotations

import json

import polars as pl

from .base import Sink, open_text
from .jsontext import record_json

# Sort keys (the same ones docs/golden.md lists). Ties left by them keep the pipeline's own order, which is
# itself deterministic (one thread, inputs ordered by first packet time then name).
FLOW_ORDER = ["pcap_filename", "first_frame", "last_frame", "community_id", "flow_id"]
WALL_CLOCK_FIELDS = ("seconds",)  # per file in the summary; `version` is kept (nvpcap diff ignores it)
FORMATS = ("jsonl", "eve", "csv", "parquet", "table")


def _none_last(value) -> tuple:
    """Sort None after every value, and numbers and text apart, so mixed columns never raise."""
    if value is None:
        return (2, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def event_order(e: dict) -> tuple:
    """pcap_filename, frame (capture anomalies without one last), event_type, rule_id, anomaly event, flow_id,
    then the record's canonical JSON text as the final tie-break."""
    anomaly = e.get("anomaly") if isinstance(e.get("anomaly"), dict) else {}
    frame = e.get("frame") if e.get("frame") is not None else e.get("first_frame")
    return (_none_last(e.get("pcap_filename")), _none_last(frame), _none_last(e.get("event_type")),
            _none_last(e.get("rule_id")), _none_last(anomaly.get("event")), _none_last(e.get("flow_id")),
            json.dumps(e, sort_keys=True, default=str, ensure_ascii=False))


def scrub_summary(summary: dict) -> dict:
    """The run summary without wall-clock fields (a copy)."""
    out = dict(summary)
    out["files"] = [{k: v for k, v in f.items() if k not in WALL_CLOCK_FIELDS} for f in summary.get("files", [])]
    return out


def _dump(record: dict) -> str:
    return record_json(record) + "\n"


class DeterministicSink(Sink):
    """Buffers records, then writes them sorted to `fmt`'s writer (or as JSON lines itself) on close."""

    def __init__(self, fmt: str, output: str | None):
        if fmt not in FORMATS:
            raise ValueError(f"--deterministic works with {', '.join(FORMATS)}, not {fmt} "
                             "(Zeek logs carry the time they were written)")
        self.fmt, self.output = fmt, output
        self._flows: list[pl.DataFrame] = []
        self._events: list[dict] = []
        if fmt in ("jsonl", "eve"):
            self._stream, self._close = open_text(output)  # fail early (exit 2) on an unwritable path
            self._inner: Sink | None = None
        else:
            from .base import open_sink

            self._inner = open_sink(fmt, output)

    def write_flows(self, flows: pl.DataFrame) -> None:
        if len(flows):
            self._flows.append(flows)

    def write_events(self, events: list[dict]) -> None:
        self._events.extend(events)

    def sorted_flows(self) -> pl.DataFrame | None:
        if not self._flows:
            return None
        frame = pl.concat(self._flows, how="vertical_relaxed")
        return frame.with_row_index("_order").sort(FLOW_ORDER + ["_order"], nulls_last=True).drop("_order")

    def close(self, run_summary: dict) -> None:
        flows = self.sorted_flows()
        events = sorted(self._events, key=event_order)
        summary = scrub_summary(run_summary)
        if self._inner is not None:
            if flows is not None:
                self._inner.write_flows(flows)
            if events:
                self._inner.write_events(events)
            self._inner.close(summary)
            return
        if flows is not None:
            for row in flows.iter_rows(named=True):
                self._stream.write(_dump(row))
        for e in events:
            self._stream.write(_dump(e))
        self._stream.write(_dump({"event_type": "stats", **summary}))
        self._stream.flush()
        if self._close:
            self._stream.close()
