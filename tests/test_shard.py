"""One capture split across workers (`-j N` with fewer large files than N; nvpcap/session/shard.py).

Every shard reads the whole file and keeps the whole flow table; each writes the flow records and application
events of the address pairs it owns, and shard 0 the packet-level events. Together the shards must give exactly
the records of a serial run (compared as sorted JSON lines: only the order may differ) and, merged, its summary.
The generated site has what could go wrong: NeuVector threat alerts aggregated over several flows of one address
pair (HTTP negative Content-Length, 2013), a SYN flood (a meter, 1001), a malformed packet (2001), WAF alerts.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest

import pcapgen as g
from conftest import SAMPLES, shared_files
from nvpcap.executor import CRASH_HOOK, RunSpec, _shards, build_config, run_inputs, run_stream
from nvpcap.output.jsonl import JsonlSink
from nvpcap.output.memory import MemorySink
from nvpcap.output.parquet import PartitionedParquetSink
from nvpcap.pipeline import FileSummary, analyze_file, merge_shards
from nvpcap.session.shard import pair_owner
from sitegen import HTTP_OK, dns_exchange, tcp_exchange

T0 = 1_700_000_000.0
CORRUPT = SAMPLES / "corrupt"


def site_packets() -> list:
    """60 client/server pairs with three HTTP flows and a DNS lookup each (every fifth pair's URLs carry a SQL
    injection, every fourth pair's requests a negative Content-Length), a SYN flood, one SYN+FIN packet."""
    pkts = []
    t = T0
    for i in range(60):
        c, s = f"10.1.{i // 50}.{i % 50 + 10}", f"10.2.0.{i % 7 + 1}"
        for j in range(3):
            uri = "/search?q=1%27%20OR%201%3D1--" if i % 5 == 0 else f"/page{j}"
            bad = "Content-Length: -5\r\n" if i % 4 == 0 else ""
            request = f"GET {uri} HTTP/1.1\r\nHost: shop.example\r\n{bad}\r\n".encode()
            pkts += tcp_exchange(c, 40000 + 3 * i + j, s, 80, t, request, HTTP_OK)
            t += 0.01
        pkts += dns_exchange(c, "10.3.0.53", t, f"host{i}.example.com", "10.9.9.9", ident=i)
        t += 0.01
    pkts += [(t + k * 0.0004, g.tcp("10.4.0.1", 1024 + k, "10.2.0.1", 443, "S")) for k in range(1500)]
    pkts.append((t + 1, g.tcp("10.5.0.1", 5555, "10.2.0.2", 80, "SF")))
    pkts.sort(key=lambda p: p[0])
    return pkts


def site(path) -> str:
    return str(g.write(path, site_packets()))


def records(name: str, shard: tuple[int, int] = (0, 1)) -> tuple[list[str], FileSummary]:
    """The JSON lines (without the stats record) and the summary of one file's analysis, or of one shard's."""
    out = io.StringIO()
    sink = JsonlSink(None)
    sink.stream, sink._close = out, False
    config = build_config(RunSpec())
    config.shard = shard
    summary = analyze_file(name, sink, config)
    sink.close({"files": []})
    return [line for line in out.getvalue().splitlines() if '"event_type":"stats"' not in line], summary


def comparable(s: FileSummary) -> dict:
    return s.as_dict() | {"seconds": 0}


def sharded(name: str, n: int) -> tuple[list[str], FileSummary]:
    lines: list[str] = []
    parts = []
    for k in range(n):
        part, summary = records(name, (k, n))
        lines += part
        parts.append(summary)
    return lines, merge_shards(parts)


def test_an_address_pair_has_one_owner_whichever_side_is_first():
    rng = np.random.default_rng(7)
    a_hi, a_lo, b_hi, b_lo = (rng.integers(0, 2**63, 20_000, dtype=np.int64).astype(np.uint64) for _ in range(4))
    for n in (2, 3, 8):
        owner = pair_owner(a_hi, a_lo, b_hi, b_lo, n)
        assert (owner == pair_owner(b_hi, b_lo, a_hi, a_lo, n)).all()
        share = np.bincount(owner, minlength=n) / owner.shape[0]
        assert share.min() > 0.8 / n and share.max() < 1.2 / n  # balanced: no shard idles


@pytest.mark.parametrize("n", [2, 3])
def test_the_shards_of_a_site_give_the_serial_records(tmp_path, n):
    name = site(tmp_path / "site.pcap")
    serial, summary = records(name)
    kinds = [json.loads(line) for line in serial]
    alerts = [r for r in kinds if r["event_type"] == "alert"]
    assert {1001, 2001, 2013, 49001} <= {r["rule_id"] for r in alerts}  # the site has what could go wrong
    assert {r["count"] for r in alerts if r["rule_id"] == 2013} == {3}  # aggregated over a pair's three flows
    lines, merged = sharded(name, n)
    assert sorted(lines) == sorted(serial)
    assert comparable(merged) == comparable(summary)
    owned = [records(name, (k, n))[1].flows for k in range(n)]
    assert all(owned) and sum(owned) == summary.flows  # every shard had work


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.pcap*")) + ["corrupt"])
def test_the_shards_of_every_sample_give_the_serial_records(name):
    paths = sorted(CORRUPT.iterdir()) if name == "corrupt" else [SAMPLES / name]
    for path in paths:
        serial, summary = records(str(path))
        lines, merged = sharded(str(path), 2)
        assert sorted(lines) == sorted(serial), path.name
        assert comparable(merged) == comparable(summary), path.name


def test_the_shards_of_the_real_captures_give_the_serial_records(shared_pcaps):
    """The public captures of ../shared (real traffic: many address pairs, tunnels, fragments, odd packets)."""
    for path in shared_files():
        serial, summary = records(str(path))
        lines, merged = sharded(str(path), 3)
        assert sorted(lines) == sorted(serial), path.name
        assert comparable(merged) == comparable(summary), path.name


def test_run_inputs_splits_one_large_file_across_the_jobs(tmp_path):
    name = site(tmp_path / "site.pcap")
    serial, summary = records(name)
    out = io.StringIO()
    sink = JsonlSink(None)
    sink.stream, sink._close = out, False
    seen: list[int] = []
    summaries = run_inputs([name], RunSpec(), sink, jobs=2, shard_min_bytes=0, progress=seen.append)
    sink.close({"files": []})
    lines = [line for line in out.getvalue().splitlines() if '"event_type":"stats"' not in line]
    assert sorted(lines) == sorted(serial)
    assert lines != serial  # really split: the shards' records come one shard after the other
    assert [comparable(s) for s in summaries] == [comparable(summary)]
    assert sum(seen) == summary.bytes_read == os.path.getsize(name)


def test_which_files_are_split(tmp_path):
    big, small = tmp_path / "big.pcap", tmp_path / "small.pcap"
    big.write_bytes(b"\0" * 1000)
    small.write_bytes(b"\0" * 10)
    names = [str(big), str(small)]
    spec = RunSpec()
    # the big file's share of the bytes (1000 of 1010) is worth jobs * 1000 // 1010 workers
    assert _shards(names, spec, 4, "local", 100) == {0: 3}
    assert _shards(names, spec, 8, "local", 100) == {0: 7}
    assert _shards(names, spec, 2, "local", 100) == {}  # 1.98 jobs' worth: one worker
    assert _shards([str(big), str(big)], spec, 3, "local", 100) == {}  # 1.5 jobs each: not worth it
    assert _shards([str(big), str(big)], spec, 4, "local", 100) == {0: 2, 1: 2}
    assert _shards(names, spec, 4, "local", 2000) == {}  # below the size worth splitting
    assert _shards(names, spec, 4, "dask", 100) == {}  # Dask workers get whole files
    assert _shards(names, spec, 4, "local", 100, only=[1]) == {}  # the big one is skipped by resume
    assert _shards(names, RunSpec(flows_only=True), 4, "local", 100) == {}
    assert _shards(["-"], spec, 4, "local", 0) == {}  # standard input is read once, here


def test_a_split_file_that_kills_its_workers_is_reported_once(tmp_path, monkeypatch):
    name = site(tmp_path / "site.pcap")
    monkeypatch.setenv(CRASH_HOOK, os.path.basename(name))
    sink = MemorySink()
    summaries = run_inputs([name], RunSpec(), sink, jobs=2, shard_min_bytes=0)
    assert [i.kind for i in summaries[0].issues] == ["worker-crash"]
    assert summaries[0].has_input_errors and not sink.events and not len(sink.flows_polars)


def test_a_partitioned_folder_gets_one_part_per_split_file_and_resumes(tmp_path):
    name = site(tmp_path / "site.pcap")
    serial, summary = records(name)
    out = tmp_path / "out"
    summaries = run_inputs([name], RunSpec(), PartitionedParquetSink(str(out)), jobs=2, shard_min_bytes=0)
    assert [comparable(s) for s in summaries] == [comparable(summary)]
    flows = pd.read_parquet(out / "flows")
    events = pd.read_parquet(out / "events")
    serial_flows = [json.loads(line) for line in serial if '"event_type":"flow"' in line]
    assert sorted(flows["flow_id"]) == sorted(r["flow_id"] for r in serial_flows)
    assert list(flows["flow_id"]) != [r["flow_id"] for r in serial_flows]  # split: the part holds shard after shard
    assert len(events) == len(serial) - len(serial_flows)
    assert sorted(p.name for p in (out / "flows").iterdir()) == ["part-000000-site.parquet"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the shards' files are gone
    logs: list[str] = []
    again = run_inputs([name], RunSpec(), PartitionedParquetSink(str(out)), jobs=2, shard_min_bytes=0, log=logs.append)
    assert any("skipped" in line for line in logs)
    assert [comparable(s) for s in again] == [comparable(summary)]


def test_a_split_stream_gives_the_serial_stream_records(tmp_path):
    """--stream -j 2: the site rotated into three files (flows cross the cuts), read as one capture by two
    workers that each own half of the address pairs."""
    pkts = site_packets()
    cuts = [0, len(pkts) // 3, 2 * len(pkts) // 3, len(pkts)]
    names = [str(g.write(tmp_path / f"rot.{i}.pcap", pkts[a:b])) for i, (a, b) in enumerate(zip(cuts, cuts[1:]))]

    def stream_run(jobs: int) -> tuple[list[str], list[FileSummary]]:
        out = io.StringIO()
        sink = JsonlSink(None)
        sink.stream, sink._close = out, False
        summaries = run_stream(names, RunSpec(), sink, jobs=jobs, shard_min_bytes=0)
        sink.close({"files": []})
        return [line for line in out.getvalue().splitlines() if '"event_type":"stats"' not in line], summaries

    serial, serial_summaries = stream_run(1)
    split, split_summaries = stream_run(2)
    assert sorted(split) == sorted(serial) and split != serial
    assert [comparable(s) for s in split_summaries] == [comparable(s) for s in serial_summaries]
    assert [s.name for s in split_summaries] == names


def test_the_cli_takes_stream_with_jobs(tmp_path):
    """`--stream -j 2` is accepted (files this small are read by one worker: under SHARD_MIN_BYTES) and gives
    the records of `--stream`; `--stream --executor dask` stays a usage error."""
    import subprocess
    import sys

    pkts = site_packets()
    names = [str(g.write(tmp_path / f"rot.{i}.pcap", pkts[i::2])) for i in range(2)]
    outputs = []
    for extra in ([], ["-j", "2"]):
        out = tmp_path / f"out{len(extra)}.jsonl"
        done = subprocess.run([sys.executable, "-m", "nvpcap", "analyze", "--stream", *extra, *names, "-q", "-o",
                               str(out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(sorted(line for line in out.read_text().splitlines() if '"event_type":"stats"' not in line))
    assert outputs[0] == outputs[1] and len(outputs[0]) > 100
    done = subprocess.run([sys.executable, "-m", "nvpcap", "analyze", "--stream", "--executor", "dask", *names],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--stream runs on local workers" in done.stderr
