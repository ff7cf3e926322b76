"""Keep records in memory: for library use (notebooks) and for tests. Flows come back as pandas."""
from __future__ import annotations

import pandas as pd
import polars as pl

from ..records.flows import empty_flow_frame
from .base import Sink

NULLABLE_INTS = ("src_port", "dest_port", "icmp_type", "icmp_code")


class MemorySink(Sink):
    def __init__(self) -> None:
        self._flows: list[pl.DataFrame] = []
        self.events: list[dict] = []
        self.summary: dict | None = None

    def write_flows(self, flows: pl.DataFrame) -> None:
        self._flows.append(flows)

    def write_events(self, events: list[dict]) -> None:
        self.events.extend(events)

    def close(self, run_summary: dict) -> None:
        self.summary = run_summary

    @property
    def flows_polars(self) -> pl.DataFrame:
        return pl.concat(self._flows) if self._flows else empty_flow_frame()

    @property
    def flows(self) -> pd.DataFrame:
        """Flows as a pandas DataFrame: nullable ints stay ints (Int64), list columns are Python lists."""
        frame = self.flows_polars.to_pandas()
        for c in NULLABLE_INTS:
            frame[c] = frame[c].astype("Int64")
        for c in ("vlan", "threat_ids"):
            frame[c] = [None if v is None else [int(x) for x in v] for v in frame[c]]
        return frame
