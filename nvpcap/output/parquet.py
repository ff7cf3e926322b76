"""Parquet (pyarrow): flows.parquet, plus events.parquet for alerts and anomalies.

`-o DIR/` (or an existing directory) writes DIR/flows.parquet and DIR/events.parquet; `-o x.parquet` writes
x.parquet and x.events.parquet. Row groups are written as flows end, so memory stays bounded.
"""
from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .base import EVENT_COLUMNS, Sink, flatten_events, sibling

FLOW_SCHEMA = pa.schema([
    ("event_type", pa.string()), ("flow_id", pa.int64()), ("community_id", pa.string()), ("ts", pa.float64()),
    ("timestamp", pa.string()), ("duration", pa.float64()), ("src_ip", pa.string()), ("src_port", pa.int64()),
    ("dest_ip", pa.string()), ("dest_port", pa.int64()), ("proto", pa.string()), ("ip_version", pa.int64()),
    ("app_proto", pa.string()), ("app_confidence", pa.string()), ("conn_state", pa.string()),
    ("history", pa.string()), ("pkts_toserver", pa.int64()), ("pkts_toclient", pa.int64()),
    ("bytes_toserver", pa.int64()), ("bytes_toclient", pa.int64()), ("payload_bytes_toserver", pa.int64()),
    ("payload_bytes_toclient", pa.int64()), ("ip_bytes_toserver", pa.int64()), ("ip_bytes_toclient", pa.int64()),
    ("missed_bytes", pa.int64()), ("truncated_pkts", pa.int64()), ("vlan", pa.list_(pa.int64())),
    ("icmp_type", pa.int64()), ("icmp_code", pa.int64()), ("end_reason", pa.string()),
    ("pcap_filename", pa.string()), ("first_frame", pa.int64()), ("last_frame", pa.int64()),
    ("threat_ids", pa.list_(pa.int64())),
])
_INT_EVENT = {"frame", "first_frame", "last_frame", "src_port", "dest_port", "rule_id", "severity", "count"}
EVENT_SCHEMA = pa.schema([
    (c, pa.int64() if c in _INT_EVENT else pa.float64() if c == "ts" else pa.string()) for c in EVENT_COLUMNS
])


class ParquetSink(Sink):
    def __init__(self, output: str | None):
        if output in (None, "-"):
            raise ValueError("parquet output needs -o FILE.parquet or -o DIRECTORY/")
        if output.lower().endswith(".parquet"):
            self.flows_path = output
            self.events_path = sibling(output, "events") or output + ".events"
        else:
            os.makedirs(output, exist_ok=True)
            self.flows_path = os.path.join(output, "flows.parquet")
            self.events_path = os.path.join(output, "events.parquet")
        Path(self.flows_path).parent.mkdir(parents=True, exist_ok=True)
        self._flows = pq.ParquetWriter(self.flows_path, FLOW_SCHEMA, compression="zstd")
        self._events: pq.ParquetWriter | None = None

    def write_flows(self, flows: pl.DataFrame) -> None:
        if len(flows):
            self._flows.write_table(flows.to_arrow().cast(FLOW_SCHEMA))

    def write_events(self, events: list[dict]) -> None:
        if not events:
            return
        if self._events is None:
            self._events = pq.ParquetWriter(self.events_path, EVENT_SCHEMA, compression="zstd")
        table = flatten_events(events).to_arrow().cast(EVENT_SCHEMA)
        self._events.write_table(table)

    def close(self, run_summary: dict) -> None:
        self._flows.close()
        if self._events is not None:
            self._events.close()
