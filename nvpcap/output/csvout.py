"""CSV: flows in the named file, alerts and anomalies in a sibling `<name>.events.csv`."""
from __future__ import annotations

from typing import IO

import polars as pl

from .base import Sink, flatten_events, open_text, sibling


class CsvSink(Sink):
    def __init__(self, output: str | None):
        self.stream, self._close = open_text(output)
        self._events_path = sibling(output, "events")
        self._events_stream: IO[str] | None = None
        self._header = True

    def write_flows(self, flows: pl.DataFrame) -> None:
        if not len(flows):
            return
        lists = [pl.col(c).list.eval(pl.element().cast(pl.Utf8)).list.join(",") for c in ("vlan", "threat_ids")]
        self.stream.write(flows.with_columns(lists).write_csv(include_header=self._header))
        self._header = False

    def write_events(self, events: list[dict]) -> None:
        if not self._events_path or not events:
            return  # CSV on stdout carries flows only
        first = self._events_stream is None
        if first:
            self._events_stream = open(self._events_path, "w", encoding="utf-8", newline="")
        self._events_stream.write(flatten_events(events).write_csv(include_header=first))

    def close(self, run_summary: dict) -> None:
        self.stream.flush()
        if self._close:
            self.stream.close()
        if self._events_stream is not None:
            self._events_stream.close()
