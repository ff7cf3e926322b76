"""Keep records in memory as DataFrames: for library use (notebooks) and for tests."""
from __future__ import annotations

import pandas as pd

from ..records.flows import FLOW_COLUMNS
from .base import Sink


class MemorySink(Sink):
    def __init__(self) -> None:
        self._flows: list[pd.DataFrame] = []
        self.events: list[dict] = []
        self.summary: dict | None = None

    def write_flows(self, flows: pd.DataFrame) -> None:
        self._flows.append(flows)

    def write_events(self, events: list[dict]) -> None:
        self.events.extend(events)

    def close(self, run_summary: dict) -> None:
        self.summary = run_summary

    @property
    def flows(self) -> pd.DataFrame:
        frames = [f for f in self._flows if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FLOW_COLUMNS)
