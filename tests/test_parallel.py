"""Scale-out: `-j N` worker processes, a Dask cluster and partitioned Parquet give the records of a serial run.

Files are independent units of work, so every executor must hand the user's sink the very records a serial run
writes, in the same order (the JSON lines are compared as text, with the volatile wall-clock `seconds` of the
summaries removed). Partitioned Parquet must read back as one dataset (pandas, DuckDB) and resume: an unchanged
input is skipped, a changed one or a changed run spec is redone. A corrupt input, or a worker that dies on one
input, costs that input only.
"""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import SAMPLES
from nvpcap.executor import CRASH_HOOK, RunSpec, build_config, make_sink, run_inputs, summary_from_dict, summary_to_dict
from nvpcap.output.jsonl import JsonlSink
from nvpcap.output.memory import MemorySink
from nvpcap.output.parquet import PartitionedParquetSink
from nvpcap.pipeline import FileSummary, analyze_file, order_inputs
from nvpcap.summary import run_summary

CAPTURES = order_inputs([str(p) for p in sorted(SAMPLES.glob("*.pcap")) + sorted((SAMPLES / "apps").glob("*.pcap"))])
CORRUPT = SAMPLES / "corrupt"


def jsonl_text(names: list[str], spec: RunSpec | None = None, **kw) -> tuple[str, list[FileSummary]]:
    """A run's JSON lines (records, then the stats record without wall-clock seconds) and its summaries."""
    out = io.StringIO()
    sink = JsonlSink(None)
    sink.stream, sink._close = out, False
    summaries = run_inputs(names, spec or RunSpec(), sink, **kw)
    summary = run_summary(summaries)
    for f in summary["files"]:
        f.pop("seconds")
    sink.close(summary)
    return out.getvalue(), summaries


@pytest.fixture(scope="module")
def serial() -> tuple[str, list[FileSummary]]:
    return jsonl_text(CAPTURES)


def test_the_serial_run_is_the_pipeline_itself(serial):
    text, summaries = serial
    assert len(summaries) == len(CAPTURES) >= 20
    assert [s.name for s in summaries] == CAPTURES
    records = [json.loads(line) for line in text.splitlines()]
    assert sum(r["event_type"] == "flow" for r in records) == sum(s.flows for s in summaries) > 40
    assert records[-1]["event_type"] == "stats"
    # the same as analyze_file straight into a sink, file by file
    sink = MemorySink()
    config = build_config(RunSpec())
    for name in CAPTURES:
        analyze_file(name, sink, config)
    assert len(sink.flows) == sum(s.flows for s in summaries)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_two_processes_give_the_serial_records_in_the_serial_order(serial, method):
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} here")
    text, summaries = jsonl_text(CAPTURES, jobs=2, mp_context=method)
    assert text == serial[0]
    assert [s.as_dict() | {"seconds": 0} for s in summaries] == [s.as_dict() | {"seconds": 0} for s in serial[1]]


def test_progress_adds_up_to_the_bytes_read(serial):
    seen: list[int] = []
    done: list[str] = []
    _, summaries = jsonl_text(CAPTURES[:6], jobs=2, progress=seen.append, on_file=lambda s: done.append(s.name))
    assert sum(seen) == sum(s.bytes_read for s in summaries)
    assert sorted(done) == sorted(CAPTURES[:6])


def test_run_spec_and_summaries_pickle():
    spec = RunSpec(rule_files=("x.yaml",), threat_overrides={2012: True}, meter_settings=("syn_flood.upper=9",))
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert spec.threat_overrides == ((2012, True),)
    assert spec.digest() != RunSpec().digest() and RunSpec().digest() == RunSpec().digest()
    config = build_config(spec)
    assert config.threat_overrides == {2012: True} and config.meters.syn_flood.upper == 9
    summary = analyze_file(str(SAMPLES / "http_ethernet.pcap"), MemorySink())
    back = pickle.loads(pickle.dumps(summary))
    assert back.as_dict() == summary.as_dict()
    assert summary_from_dict(json.loads(json.dumps(summary_to_dict(summary)))).as_dict() == summary.as_dict()


def test_a_corrupt_input_among_good_ones_is_reported_and_the_rest_analysed(serial):
    good = CAPTURES[:4]
    bad = [str(CORRUPT / "bad_magic.pcap"), str(CORRUPT / "truncated_last_record.pcap")]
    names = order_inputs(good + bad)
    text1, s1 = jsonl_text(names)
    text2, s2 = jsonl_text(names, jobs=2)
    assert text1 == text2
    by_name = {s.name: s for s in s2}
    assert all(by_name[b].issues for b in bad)
    assert all(not by_name[g].issues and by_name[g].flows for g in good)


def test_a_worker_that_dies_costs_its_file_only(monkeypatch, serial):
    names = CAPTURES[:5]
    victim = names[2]
    monkeypatch.setenv(CRASH_HOOK, os.path.basename(victim))
    text, summaries = jsonl_text(names, jobs=2)
    crashed = summaries[2]
    assert crashed.name == victim and [i.kind for i in crashed.issues] == ["worker-crash"]
    assert crashed.has_input_errors
    assert all(s.flows and not s.issues for i, s in enumerate(summaries) if i != 2)
    monkeypatch.delenv(CRASH_HOOK)
    expected, _ = jsonl_text([n for n in names if n != victim])
    flows = [line for line in text.splitlines() if '"event_type":"stats"' not in line]
    assert flows == [line for line in expected.splitlines() if '"event_type":"stats"' not in line]


def test_a_worker_that_cannot_be_started_delays_its_file_only(monkeypatch, serial):
    """Starting a replacement worker can fail with OSError while the executor tears a broken pool down (EBADF
    from the forkserver hand-over, seen in CI): the file waits for the next free worker, nothing is lost."""
    import concurrent.futures.process as cfp

    names = CAPTURES[:4]
    submit, calls = cfp.ProcessPoolExecutor.submit, [0]

    def flaky(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] in (2, 3):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(cfp.ProcessPoolExecutor, "submit", flaky)
    text, summaries = jsonl_text(names, jobs=2)
    assert calls[0] > len(names) + 1  # the refused submissions were made again
    expected, _ = jsonl_text(names)
    assert text == expected and not any(s.issues for s in summaries)


def test_a_pool_starts_all_its_workers_before_the_first_file():
    """No worker is started by submit(), so none can start while a broken pool is torn down (see _LocalPool._new);
    this checks the private hook still exists in the running Python."""
    from nvpcap.executor import _LocalPool

    local = _LocalPool(2, "forkserver" if "forkserver" in __import__("multiprocessing").get_all_start_methods()
                       else "spawn", False)
    pool = local._new(2)
    try:
        assert len(pool._processes) == 2
        assert pool.submit(len, "ab").result() == 2  # and they work
    finally:
        pool.shutdown(wait=True)


def test_a_file_no_worker_accepts_is_reported_and_the_run_ends(monkeypatch):
    import concurrent.futures.process as cfp

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(cfp.ProcessPoolExecutor, "submit", refuse)
    _, summaries = jsonl_text(CAPTURES[:2], jobs=2)
    assert [[i.kind for i in s.issues] for s in summaries] == [["internal-error"]] * 2
    assert all("could not start a worker process" in s.issues[0].message for s in summaries)


def test_unknown_executor_is_a_usage_error():
    with pytest.raises(ValueError, match="unknown executor"):
        run_inputs(CAPTURES[:1], RunSpec(), MemorySink(), executor="ray")


def test_dask_missing_is_a_clear_usage_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_dask(name, *args, **kw):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError("no dask here")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ValueError, match=r"nvpcap\[dask\]"):
        run_inputs(CAPTURES[:1], RunSpec(), MemorySink(), executor="dask")


@pytest.mark.parametrize("processes", [True, False])
def test_a_dask_cluster_gives_the_serial_records(serial, processes):
    distributed = pytest.importorskip("distributed")
    names = CAPTURES[:8]
    expected, _ = jsonl_text(names)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        text, summaries = jsonl_text(names, executor="dask", scheduler=client)
        assert text == expected
        # the scheduler's address, as `--scheduler tcp://host:8786` gives it
        text2, _ = jsonl_text(names, executor="dask", scheduler=cluster.scheduler_address)
        assert text2 == expected


# -- partitioned Parquet ------------------------------------------------------------------------------------
def partitioned(out: Path, names: list[str], spec: RunSpec | None = None, **kw) -> tuple[list[FileSummary],
                                                                                         list[str]]:
    messages: list[str] = []
    sink = make_sink("parquet", str(out) + os.sep)
    assert isinstance(sink, PartitionedParquetSink)
    summaries = run_inputs(names, spec or RunSpec(), sink, log=messages.append, **kw)
    sink.close(run_summary(summaries))
    return summaries, messages


def serial_flows(names: list[str]) -> pd.DataFrame:
    sink = MemorySink()
    run_inputs(names, RunSpec(), sink)
    return sink.flows_polars.to_pandas()


def test_partitioned_parquet_is_one_dataset_with_the_serial_rows(tmp_path):
    names = CAPTURES[:10]
    summaries, _ = partitioned(tmp_path / "out", names, jobs=2)
    parts = sorted(os.listdir(tmp_path / "out" / "flows"))
    assert len(parts) == len(names) and parts == sorted(os.listdir(tmp_path / "out" / "events"))
    assert parts[0].startswith("part-000000-") and all(p.endswith(".parquet") for p in parts)
    assert not [p for p in os.listdir(tmp_path / "out" / "flows") if p.startswith(".")]  # no temporary left
    flows = pd.read_parquet(tmp_path / "out" / "flows")
    expected = serial_flows(names)
    assert len(flows) == len(expected) == sum(s.flows for s in summaries)
    pd.testing.assert_frame_equal(flows.reset_index(drop=True)[["flow_id", "community_id", "pcap_filename"]],
                                  expected[["flow_id", "community_id", "pcap_filename"]], check_dtype=False)
    events = pd.read_parquet(tmp_path / "out" / "events")
    assert len(events) == sum(s.events + s.alerts + s.anomalies for s in summaries)
    # serial writes the same parts, byte for byte apart from nothing at all: same rows
    partitioned(tmp_path / "serial", names, jobs=1)
    assert pd.read_parquet(tmp_path / "serial" / "flows").equals(flows)


def test_duckdb_reads_the_parts_as_one_table_and_answers_the_documented_query(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    names = CAPTURES[:10]
    partitioned(tmp_path / "out", names, jobs=2)
    glob = str(tmp_path / "out" / "flows" / "*.parquet")
    n = duckdb.sql(f"select count(*) from '{glob}'").fetchall()[0][0]
    expected = serial_flows(names)
    assert n == len(expected)
    # the query of docs/scale.md: flows to destinations outside the private ranges
    doc = (Path(__file__).resolve().parent.parent / "docs" / "scale.md").read_text()
    query = doc.split("```sql\n", 1)[1].split("```", 1)[0].replace("flows/*.parquet", glob)
    got = duckdb.sql(query).df()
    import ipaddress

    internal = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "127.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12",
                                                  "169.254.0.0/16", "100.64.0.0/10", "224.0.0.0/3", "0.0.0.0/32",
                                                  "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8")]

    def external(ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return not any(a.version == n.version and a in n for n in internal)

    want = expected[[external(ip) for ip in expected["dest_ip"]]]
    assert len(got) == len(want) > 0
    assert sorted(got["community_id"]) == sorted(want["community_id"])


def test_resume_skips_unchanged_inputs_and_redoes_changed_ones(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    names = []
    for p in CAPTURES[:4]:
        shutil.copy(p, src / os.path.basename(p))
        names.append(str(src / os.path.basename(p)))
    names = order_inputs(names)
    out = tmp_path / "out"
    first, _ = partitioned(out, names, jobs=2)
    parts = {n: out / "flows" / f for n, f in zip(names, sorted(os.listdir(out / "flows")))}
    mtimes = {n: p.stat().st_mtime_ns for n, p in parts.items()}
    time.sleep(0.05)

    again, messages = partitioned(out, names, jobs=2)
    assert len([m for m in messages if "skipped" in m]) == 4
    assert {n: p.stat().st_mtime_ns for n, p in parts.items()} == mtimes
    assert [s.as_dict() for s in again] == [s.as_dict() for s in first]

    changed = names[1]
    with open(changed, "ab") as fh:  # a file that grew (rotation still writing it)
        fh.write(b"")
    os.utime(changed, ns=(time.time_ns(), time.time_ns()))
    _, messages = partitioned(out, names, jobs=2)
    skipped = [m for m in messages if "skipped" in m]
    assert len(skipped) == 3 and not any(m.startswith(changed + ":") for m in skipped)
    assert parts[changed].stat().st_mtime_ns != mtimes[changed]
    assert all(parts[n].stat().st_mtime_ns == mtimes[n] for n in names if n != changed)
    assert len(pd.read_parquet(out / "flows")) == sum(s.flows for s in first)

    _, messages = partitioned(out, names, RunSpec(stream_depth=0), jobs=2)  # another spec: everything again
    assert not [m for m in messages if "skipped" in m]
    assert len(os.listdir(out / "flows")) == 4


def test_an_interrupted_part_never_looks_complete(tmp_path, monkeypatch):
    """A worker dies while writing: its temporary name is hidden from readers, no part and no manifest entry
    exist for it, and the next run redoes that input only."""
    names = CAPTURES[:3]
    out = tmp_path / "out"
    monkeypatch.setenv(CRASH_HOOK, os.path.basename(names[1]))
    summaries, _ = partitioned(out, names, jobs=2)
    assert [i.kind for i in summaries[1].issues] == ["worker-crash"]
    assert len(os.listdir(out / "flows")) == 2
    monkeypatch.delenv(CRASH_HOOK)
    _, messages = partitioned(out, names, jobs=2)
    assert len([m for m in messages if "skipped" in m]) == 2
    assert len(os.listdir(out / "flows")) == 3
    assert len(pd.read_parquet(out / "flows")) == len(serial_flows(names))


def test_resumed_parts_move_with_their_input(tmp_path):
    """A new input that sorts first shifts the others' positions: their parts are renamed, not redone."""
    names = CAPTURES[1:4]
    out = tmp_path / "out"
    partitioned(out, names)
    _, messages = partitioned(out, CAPTURES[:4])
    assert len([m for m in messages if "skipped" in m and "renamed" in m]) == 3
    parts = sorted(os.listdir(out / "flows"))
    assert len(parts) == 4 and parts[0].startswith("part-000000-")
    flows = pd.read_parquet(out / "flows")
    assert list(flows["flow_id"]) == list(serial_flows(CAPTURES[:4])["flow_id"])


def test_partitioned_parquet_on_dask(tmp_path):
    distributed = pytest.importorskip("distributed")
    names = CAPTURES[:6]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        summaries, _ = partitioned(tmp_path / "out", names, executor="dask", scheduler=client)
        _, messages = partitioned(tmp_path / "out", names, executor="dask", scheduler=client)
    assert len([m for m in messages if "skipped" in m]) == len(names)
    assert len(pd.read_parquet(tmp_path / "out" / "flows")) == len(serial_flows(names)) == sum(s.flows for s in summaries)


def test_partitioned_parquet_can_tee_the_records_to_another_sink(tmp_path):
    """`analyze --report` with `-o DIR/`: the report's collector sees every record, in input order."""
    names = CAPTURES[:6]
    tee = MemorySink()
    sink = make_sink("parquet", str(tmp_path / "out") + os.sep)
    summaries = run_inputs(names, RunSpec(), sink, jobs=2, tee=tee)
    sink.close(run_summary(summaries))
    serial_sink = MemorySink()
    run_inputs(names, RunSpec(), serial_sink)
    assert tee.flows.equals(serial_sink.flows)
    assert tee.events == serial_sink.events
    assert len(pd.read_parquet(tmp_path / "out" / "flows")) == len(tee.flows)
    with pytest.raises(ValueError, match="tee"):
        run_inputs(names, RunSpec(), MemorySink(), tee=tee)
