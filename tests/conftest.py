"""Shared fixtures: the project's own samples, the labelled public captures (skipped when absent), helpers."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from nvpcap.output.memory import MemorySink
from nvpcap.pipeline import AnalyzeConfig, FileSummary, analyze_file

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "pcaps"
SHARED = Path(os.environ.get("NVPCAP_SHARED", ROOT.parent / "shared")) / "pcaps"
# compiled Hyperscan databases (rules/dbcache.py) go to a folder of the tests' own, not the user's cache; every
# process of the run (xdist workers, CLI subprocesses) shares it
os.environ.setdefault("NVPCAP_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"nvpcap-tests-hyperscan-{os.getuid()}"))


@dataclass
class Result:
    summary: FileSummary
    flows: pd.DataFrame
    events: list[dict]

    def anomalies(self, event: str | None = None) -> list[dict]:
        return [e for e in self.events if e["event_type"] == "anomaly" and (event is None or e["anomaly"]["event"] == event)]

    def app_events(self, app: str) -> list[dict]:
        """The protocol's event records (their per-protocol dict is under the protocol's name)."""
        return [e for e in self.events if e["event_type"] == app]

    def alerts(self, rule_id: int | None = None) -> list[dict]:
        return [e for e in self.events if e["event_type"] == "alert" and (rule_id is None or e["rule_id"] == rule_id)]


def run(path: str | Path, config: AnalyzeConfig | None = None) -> Result:
    sink = MemorySink()
    summary = analyze_file(str(path), sink, config)
    return Result(summary, sink.flows, sink.events)


@pytest.fixture(scope="session")
def shared_pcaps() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/pcaps is not present")
    return SHARED


def shared_files() -> list[Path]:
    return sorted(p for p in SHARED.glob("*.pcap*")) if SHARED.is_dir() else []


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.glob("*.pcap*"))


CRS_RULES = Path("/usr/share/modsecurity-crs/rules")  # Debian's modsecurity-crs (.ci/run installs it)


@pytest.fixture(scope="session")
def real_crs() -> AnalyzeConfig:
    """A run with OWASP CRS (paranoia 1) and no bundled packs."""
    if not CRS_RULES.is_dir():
        pytest.skip("Debian's modsecurity-crs is not installed")
    from nvpcap.protocols.applayer import AppLayerConfig
    from nvpcap.rules import build_engine

    engine, _ = build_engine([str(CRS_RULES)], bundled=False)
    return AnalyzeConfig(app=AppLayerConfig(rules=engine))


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if not path:
        pytest.skip("tshark is not installed")
    return path
