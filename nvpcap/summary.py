"""The run summary: per-file accounting plus totals, the same for every output format."""
from __future__ import annotations

from collections import Counter

from . import __version__
from .pipeline import FileSummary


def run_summary(files: list[FileSummary]) -> dict:
    outcomes: Counter = Counter()
    for f in files:
        outcomes.update(f.outcomes)
    return {
        "version": __version__,
        "files": [f.as_dict() for f in files],
        "totals": {
            "files": len(files),
            "packets": sum(f.packets for f in files),
            "flows": sum(f.flows for f in files),
            "events": sum(f.events for f in files),
            "alerts": sum(f.alerts for f in files),
            "anomalies": sum(f.anomalies for f in files),
            "outcomes": dict(sorted(outcomes.items())),
            "accounted": all(f.check_accounting() for f in files),
        },
    }
