"""The command line as a user drives it: output formats, stdin, directories, exit codes and file order.

Each test runs `python -m nvpcap analyze` in a subprocess, as a shell or a script would, and reads what it
wrote with ordinary tools (json, pandas, plain text for Zeek logs). The formats must agree with each other on
the flows of the same capture, and usage errors must end with exit code 2 and a message, not a traceback.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import SAMPLES

HTTP = SAMPLES / "http_ethernet.pcap"  # 2 flows, 11 packets, first packet 2023-11-14
PCAPNG = SAMPLES / "multi_interface.pcapng"  # first packet 2023-11-15
CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                  b"\x0a\x0d\x0d\x0a", b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ")
FLOW_KEY = ["community_id", "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient"]


def nvpcap(*args: str | Path, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "nvpcap", "analyze", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, timeout=120)
    done.stdout_text, done.stderr_text = done.stdout.decode(), done.stderr.decode()
    return done


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stderr_text
    assert "Traceback" not in done.stderr_text
    return done


def parse_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def flow_keys(flows: pd.DataFrame | list[dict]) -> list[tuple]:
    """What must agree between runs and formats: each flow's id and counts, order-free."""
    frame = pd.DataFrame([r for r in flows if r["event_type"] == "flow"]) if isinstance(flows, list) else flows
    return sorted(tuple(int(v) if k != "community_id" else v for k, v in zip(FLOW_KEY, row))
                  for row in frame[FLOW_KEY].itertuples(index=False))


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory) -> tuple[list[dict], Path]:
    """One plain run on the HTTP sample: its records, and the --summary-json file beside them."""
    tmp = tmp_path_factory.mktemp("jsonl")
    ok(nvpcap(HTTP, "-o", "out.jsonl", "--summary-json", "s.json", cwd=tmp))
    return parse_jsonl((tmp / "out.jsonl").read_text()), tmp / "s.json"


# -- formats ------------------------------------------------------------------------------------------------
def test_jsonl_has_the_flows_then_the_events_then_a_stats_record(jsonl_run):
    records, _ = jsonl_run
    kinds = [r["event_type"] for r in records]
    assert kinds[:2] == ["flow", "flow"] and sorted(kinds[2:4]) == ["dns", "http"] and kinds[4:] == ["stats"]
    # tshark -r http_ethernet.pcap -T fields -e dns.qry.name -e http.request.uri -e http.response.code:
    # frames 1-2 www.example.com, frame 6 /index.html, frame 7 200
    by_kind = {r["event_type"]: r for r in records}
    assert by_kind["dns"]["dns"]["rrname"] == "www.example.com"
    assert (by_kind["http"]["http"]["uri"], by_kind["http"]["http"]["status"]) == ("/index.html", 200)
    stats = records[-1]
    assert stats["totals"]["packets"] == 11 and stats["totals"]["accounted"] is True
    assert [f["file"] for f in stats["files"]] == [str(HTTP)]


def test_summary_json_is_the_run_summary(jsonl_run):
    records, summary_path = jsonl_run
    summary = json.loads(summary_path.read_text())
    assert summary == {k: v for k, v in records[-1].items() if k != "event_type"}


def test_csv_is_readable_by_pandas_with_the_same_flows(tmp_path, jsonl_run):
    ok(nvpcap(HTTP, "--format", "csv", "-o", "out.csv", "-q", cwd=tmp_path))
    flows = pd.read_csv(tmp_path / "out.csv")
    assert len(flows) == 2
    assert flow_keys(flows) == flow_keys(jsonl_run[0])


def test_parquet_directory_holds_the_same_flows(tmp_path, jsonl_run):
    ok(nvpcap(HTTP, "--format", "parquet", "-o", "outdir/", "-q", cwd=tmp_path))
    flows = pd.read_parquet(tmp_path / "outdir" / "flows")
    assert flow_keys(flows) == flow_keys(jsonl_run[0])


def test_zeek_conn_log_has_a_header_zeek_cut_can_read(tmp_path, jsonl_run):
    ok(nvpcap(HTTP, "--format", "zeek", "-o", "logs/", "-q", cwd=tmp_path))
    lines = (tmp_path / "logs" / "conn.log").read_text().splitlines()
    meta = {line.split(maxsplit=1)[0]: line for line in lines if line.startswith("#")}
    assert {"#separator", "#fields", "#types", "#close"} <= set(meta)
    assert meta["#separator"] == "#separator \\x09"
    fields = meta["#fields"].split("\t")[1:]
    assert {"id.orig_h", "id.resp_p", "conn_state", "community_id"} <= set(fields)
    assert len(meta["#types"].split("\t")[1:]) == len(fields)
    rows = [dict(zip(fields, line.split("\t"))) for line in lines if not line.startswith("#")]
    assert len(rows) == 2 and all(len(line.split("\t")) == len(fields) for line in lines if not line.startswith("#"))
    assert sorted(r["community_id"] for r in rows) == sorted(k[0] for k in flow_keys(jsonl_run[0]))


def test_without_output_stdout_gets_jsonl_when_not_a_terminal(tmp_path, jsonl_run):
    records = parse_jsonl(ok(nvpcap(HTTP, "-q", cwd=tmp_path)).stdout_text)
    assert records[-1]["event_type"] == "stats"
    assert flow_keys(records) == flow_keys(jsonl_run[0])


# -- inputs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", ["http_ethernet.pcap", "compressed/http_ethernet.pcap.gz"])
def test_stdin_pipe_gives_the_same_flows(tmp_path, jsonl_run, sample):
    ok(nvpcap("-", "-o", "out.jsonl", "-q", cwd=tmp_path, stdin=(SAMPLES / sample).read_bytes()))
    records = parse_jsonl((tmp_path / "out.jsonl").read_text())
    assert flow_keys(records) == flow_keys(jsonl_run[0])
    assert records[-1]["totals"]["packets"] == 11


def captures_under(folder: Path) -> set[str]:
    """Files a directory walk should pick up: anything whose first bytes are a capture or compression magic."""
    return {str(p) for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.read_bytes()[:8].startswith(CAPTURE_MAGICS)}


def test_directory_is_analysed_recursively_past_corrupt_files(tmp_path):
    done = ok(nvpcap(f"{SAMPLES}/", "-o", "out.jsonl", cwd=tmp_path))
    records = parse_jsonl((tmp_path / "out.jsonl").read_text())
    stats = records[-1]
    files = {f["file"]: f for f in stats["files"]}
    assert set(files) == captures_under(SAMPLES)
    names = {r["pcap_filename"] for r in records if r["event_type"] == "flow"}
    assert {"http_ethernet.pcap", "http_ethernet.pcap.gz", "http_ethernet.pcap.zst", "multi_interface.pcapng"} <= names
    corrupt = {n for n in files if Path(n).parent.name == "corrupt"}
    assert corrupt, "the corrupt samples should be among the inputs"
    for name, f in files.items():
        assert f["accounted"], name
        assert f["packets"] > 0 or name in corrupt, name
    assert all(files[n]["issues"] for n in corrupt)
    assert stats["totals"]["accounted"] is True
    assert all(Path(n).name in done.stderr_text.replace("\n", "") for n in corrupt)  # each problem is reported


def test_files_are_processed_in_first_packet_order(tmp_path):
    ok(nvpcap(PCAPNG, HTTP, "-o", "out.jsonl", "-q", cwd=tmp_path))
    records = parse_jsonl((tmp_path / "out.jsonl").read_text())
    assert [f["file"] for f in records[-1]["files"]] == [str(HTTP), str(PCAPNG)]
    order = [r["pcap_filename"] for r in records if r["event_type"] == "flow"]
    assert order == sorted(order, key=lambda n: n != HTTP.name) and order[0] == HTTP.name


# -- usage errors -------------------------------------------------------------------------------------------
def test_missing_path_is_a_usage_error(tmp_path):
    done = nvpcap("no_such_capture.pcap", "-o", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr_text
    assert "no_such_capture.pcap" in done.stderr_text and "no such file" in done.stderr_text
    assert not (tmp_path / "out.jsonl").exists()


def test_unknown_format_is_a_usage_error(tmp_path):
    done = nvpcap(HTTP, "--format", "xml", "-o", "out.xml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr_text
    assert "--format" in done.stderr_text


# -- messages about files with unusual names -----------------------------------------------------------------
def test_problem_message_is_one_line_for_a_long_path(tmp_path):
    folder = tmp_path / ("a_directory_with_a_rather_long_name_" * 2) / "and_another_level_below_it"
    folder.mkdir(parents=True)
    (folder / "cut.pcap").write_bytes(HTTP.read_bytes()[:500])
    done = ok(nvpcap(folder / "cut.pcap", "-o", "out.jsonl", "-q", cwd=tmp_path))
    assert any(str(folder / "cut.pcap") in line and "offset 448" in line for line in done.stderr_text.splitlines())


@pytest.mark.parametrize("name,exists,code", [("cap[bad].pcap", True, 0), ("dir[/].pcap", True, 0),
                                              ("missing[/x].pcap", False, 2)])
def test_file_names_with_brackets_are_printed_verbatim(tmp_path, name, exists, code):
    if exists:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(HTTP.read_bytes()[:500])
    done = nvpcap(name, "-o", "out.jsonl", "-q", cwd=tmp_path)
    assert "Traceback" not in done.stderr_text and done.returncode == code
    assert name in done.stderr_text


def test_directory_run_names_the_files_it_skipped(tmp_path):
    (tmp_path / "notes.txt").write_text("not a capture")
    (tmp_path / "a.pcap").write_bytes((SAMPLES / "http_ethernet.pcap").read_bytes())
    done = subprocess.run([sys.executable, "-m", "nvpcap", "analyze", str(tmp_path), "-o", str(tmp_path / "o.jsonl")],
                          capture_output=True, text=True)
    assert done.returncode == 0
    assert "skipped 1 file(s) that are not captures" in done.stderr and "notes.txt" in done.stderr


def test_flows_only_writes_flow_records_and_refuses_rules(tmp_path):
    out = tmp_path / "f.jsonl"
    r = nvpcap(SAMPLES / "http_ethernet.pcap", "--flows-only", "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    flows = [x for x in records if x["event_type"] == "flow"]
    assert {(f["app_proto"], f["app_confidence"]) for f in flows} == {("http", "port"), ("dns", "port")}
    assert not [x for x in records if x["event_type"] in ("http", "dns")]
    r = nvpcap(SAMPLES / "http_ethernet.pcap", "--flows-only", "--rules", "x.rules", cwd=tmp_path)
    assert r.returncode == 2 and b"--flows-only" in r.stderr


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path):
    """`nvpcap analyze x | head -1`: the closed pipe (polars reports it as an OSError without an errno) ends the
    run with exit 1 and no message, as click ends any command on EPIPE; before, it was a usage error (2) saying
    "Broken pipe"."""
    import pcapgen as g

    many = g.write(tmp_path / "many.pcap", [(i * 0.001, g.udp("10.0.0.1", 10000 + i, "10.0.0.2", 53))
                                            for i in range(3000)])  # ~2 MB of records: more than a pipe holds
    proc = subprocess.Popen([sys.executable, "-m", "nvpcap", "analyze", str(many), "--flows-only"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line
    stderr = proc.stderr.read()
    assert json.loads(first)["event_type"] == "flow"
    assert proc.wait(timeout=120) == 1 and b"Broken pipe" not in stderr and b"Traceback" not in stderr, stderr
