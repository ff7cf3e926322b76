"""JSON lines, one record per line, EVE-like: flows, alerts, anomalies, then one `stats` record."""
from __future__ import annotations

import polars as pl

from .base import Sink, open_text
from .jsontext import record_json


class JsonlSink(Sink):
    def __init__(self, output: str | None):
        self.stream, self._close = open_text(output)

    def write_flows(self, flows: pl.DataFrame) -> None:
        # polars writes JSON lines about ten times faster than pandas.to_json (measured on 90k flows)
        if len(flows):
            self.stream.write(flows.write_ndjson())

    def write_events(self, events: list[dict]) -> None:
        write = self.stream.write
        for e in events:
            write(record_json(e) + "\n")

    def close(self, run_summary: dict) -> None:
        stats = {"event_type": "stats", **run_summary}
        self.stream.write(record_json(stats) + "\n")
        self.stream.flush()
        if self._close:
            self.stream.close()
