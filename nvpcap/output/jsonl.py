"""JSON lines, one record per line, EVE-like: flows, alerts, anomalies, then one `stats` record."""
from __future__ import annotations

import json

import pandas as pd

from .base import Sink, open_text


class JsonlSink(Sink):
    def __init__(self, output: str | None):
        self.stream, self._close = open_text(output)

    def write_flows(self, flows: pd.DataFrame) -> None:
        if len(flows):
            text = flows.to_json(orient="records", lines=True, double_precision=6, force_ascii=False)
            # pandas escapes every '/' (legal JSON, but community ids and URLs should grep as they are);
            # "\/" only ever stands for "/", and an escaped backslash before it stays escaped.
            text = text.replace("\\/", "/")
            self.stream.write(text if text.endswith("\n") else text + "\n")

    def write_events(self, events: list[dict]) -> None:
        for e in events:
            self.stream.write(json.dumps(e, separators=(",", ":"), ensure_ascii=False, default=str) + "\n")

    def close(self, run_summary: dict) -> None:
        stats = {"event_type": "stats", **run_summary}
        self.stream.write(json.dumps(stats, separators=(",", ":"), default=str) + "\n")
        self.stream.flush()
        if self._close:
            self.stream.close()
