"""Parquet (pyarrow): flows.parquet, plus events.parquet for alerts and anomalies.

`-o DIR/` (or an existing directory) writes DIR/flows.parquet and DIR/events.parquet; `-o x.parquet` writes
x.parquet and x.events.parquet. Row groups are written as flows end, so memory stays bounded.
"""
from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from ..records.flows import empty_flow_frame
from .base import Sink, flatten_events, sibling

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
        # the schemas are the records' own (FLOW_SCHEMA, EVENT_SCHEMA), as Arrow types
        self._flows = pq.ParquetWriter(self.flows_path, empty_flow_frame().to_arrow().schema, compression="zstd")
        self._events: pq.ParquetWriter | None = None

    def write_flows(self, flows: pl.DataFrame) -> None:
        if len(flows):
            self._flows.write_table(flows.to_arrow())

    def write_events(self, events: list[dict]) -> None:
        if not events:
            return
        table = flatten_events(events).to_arrow()
        if self._events is None:
            self._events = pq.ParquetWriter(self.events_path, table.schema, compression="zstd")
        self._events.write_table(table)

    def close(self, run_summary: dict) -> None:
        self._flows.close()
        if self._events is not None:
            self._events.close()
