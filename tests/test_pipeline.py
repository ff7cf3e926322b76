"""Pipeline guarantees: compiled and pure-Python kernels agree; an internal error never loses packets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import nvpcap.pipeline as pipeline
from conftest import SAMPLES, SHARED, run
from nvpcap.output.memory import MemorySink

NO_JIT_CAPTURES = [SAMPLES / n for n in ("fragments.pcap", "malformed.pcap", "multi_interface.pcapng",
                                         "tunnels.pcap", "truncated_snaplen.pcap", "vlan_qinq.pcap")]
NO_JIT_CAPTURES += [p for p in (SHARED / "tcp-anomaly__zeek__tcp_retransmit-fast009.pcap",
                                SHARED / "dns__ndpi__dns_fragmented.pcap") if p.exists()]


def _records(path, env_extra: dict[str, str]) -> list[dict]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-m", "nvpcap", "analyze", str(path), "-q", "-o", "-"],
                         capture_output=True, text=True, env=env, check=True).stdout
    recs = [json.loads(line) for line in out.splitlines()]
    for r in recs:
        if r["event_type"] == "stats":
            for f in r["files"]:
                f.pop("seconds")
    return recs


def test_pure_python_kernels_give_identical_records():
    """NVPCAP_NO_JIT=1 runs the same kernels uncompiled: the fallback where numba is missing."""
    for path in NO_JIT_CAPTURES:
        assert _records(path, {"NVPCAP_NO_JIT": "1"}) == _records(path, {}), path.name


def test_internal_error_is_reported_and_counted(monkeypatch):
    def broken(raw):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(pipeline, "decode", broken)
    sink = MemorySink()
    summary = pipeline.analyze_file(str(SAMPLES / "http_ethernet.pcap"), sink)
    assert summary.check_accounting()
    assert summary.outcomes == {"internal-error": 11}
    assert [i.kind for i in summary.issues] == ["internal-error"]
    assert "simulated bug" in summary.issues[0].message
    monkeypatch.undo()
    assert run(SAMPLES / "http_ethernet.pcap").summary.outcomes == {"decoded": 11}


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_batch_size_does_not_change_results(batch):
    """Flows, fragments and timeouts carry across batch boundaries."""
    ref = run(SAMPLES / "fragments.pcap")
    small = run(SAMPLES / "fragments.pcap", pipeline.AnalyzeConfig(batch_packets=batch, chunk_size=512))
    cols = ["community_id", "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient", "history"]
    key = ["community_id"]
    assert small.flows[cols].sort_values(key).values.tolist() == ref.flows[cols].sort_values(key).values.tolist()
    assert small.summary.outcomes == ref.summary.outcomes


@pytest.mark.parametrize("name", ["http_ethernet.pcap", "apps/mysql.pcap", "apps/postgresql.pcap", "tunnels.pcap"])
def test_flows_only_gives_the_same_flows_with_port_labels(name):
    """--flows-only skips the application layer: the same flows and counters, no application events, and
    app_proto is the server port's protocol (confidence "port") where the full run read the payload."""
    from nvpcap.executor import RunSpec, build_config

    path = SAMPLES / name
    full = run(path, build_config(RunSpec()))
    fast = run(path, build_config(RunSpec(flows_only=True)))
    app_fields = ["app_proto", "app_confidence", "app_product", "threat_ids"]
    assert fast.summary.outcomes == full.summary.outcomes
    assert fast.summary.events == 0 and fast.summary.rule_alerts == 0
    assert {e["event_type"] for e in fast.events} <= {"anomaly", "alert"}  # decode anomalies, flow threats
    assert fast.flows.drop(columns=app_fields).equals(full.flows.drop(columns=app_fields))
    proven = full.flows["app_confidence"] == "dpi"
    assert proven.any()
    tcp_udp = fast.flows["proto"].isin(["tcp", "udp"])
    assert set(fast.flows.loc[tcp_udp, "app_confidence"]) <= {"port", "none"}
    port = fast.flows["app_confidence"] == "port"
    assert (fast.flows.loc[~port & tcp_udp, "app_proto"] == "unknown").all()
