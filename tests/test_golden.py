"""Golden-pcap regression: `analyze --deterministic` on every sample equals its reviewed golden file, and
`nvpcap diff` reports additions, removals and field changes by record identity with CI exit codes.

The golden files were produced by tests/golden/update.py and their flow counters checked against tshark's
conversation tables (tests/golden/README.md says which). The diff tests build their records by hand, so the
expected lines are written out here, not computed by the code under test.
"""
from __future__ import annotations

import gc
import importlib.util
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from nvpcap.cli import main
from nvpcap.golden import diff_files, diff_records, record_key, text_lines
from nvpcap.output.deterministic import DeterministicSink
from nvpcap.pipeline import AnalyzeConfig, analyze_file
from nvpcap.summary import run_summary

_spec = importlib.util.spec_from_file_location("golden_update", ROOT / "tests" / "golden" / "update.py")
update = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update)


def cli(*args: str):
    """Run the CLI in-process; analyze's GC tuning (freeze, thresholds) is undone so later tests are unaffected."""
    threshold = gc.get_threshold()
    try:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def analyze_det(tmp_path: Path, *inputs: str, name: str = "out.jsonl", extra: tuple[str, ...] = ()) -> Path:
    out = tmp_path / name
    result = cli("analyze", *inputs, *update.ANALYZE_OPTIONS, *extra, "-o", out)
    assert result.exit_code == 0, result.output
    return out


# -- the project's golden files --------------------------------------------------------------------------------
def test_every_sample_has_a_golden_file_and_no_golden_file_is_stale():
    expected = {update.golden_path(s) for s in update.samples()}
    present = set((ROOT / "tests" / "golden").rglob("*.jsonl"))
    assert len(expected) >= 30  # 13 top-level captures, 13 apps, 3 compressed, 5 corrupt
    assert present == expected


@pytest.mark.parametrize("sample", update.samples(), ids=str)
def test_sample_matches_its_golden_file(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # relative input paths, as update.py uses: the stats record shows them
    out = analyze_det(tmp_path, str(update.SAMPLES / sample))
    result = diff_files(str(update.golden_path(sample)), str(out))
    assert result.same, ("\n".join(text_lines(result, 30)) + "\nIf the change is intended: "
                         "python3 tests/golden/update.py, then review `git diff tests/golden`")


def test_golden_flows_agree_with_tshark_conversations():
    """Pinned from `tshark -r F -q -z conv,tcp -z conv,udp` (tshark 4.x), as recorded in tests/golden/README.md:
    (client port, server port) -> packets and frame bytes per direction."""
    tshark = {
        "http_ethernet.pcap": {(53000, 53): (1, 1, 75, 91), (40000, 80): (6, 3, 427, 354)},
        "apps/mysql.pcap": {(58438, 3306): (5, 6, 481, 583), (58446, 3306): (15, 14, 1527, 1549)},
        "apps/redis.pcap": {(45950, 6379): (6, 4, 470, 336), (45954, 6379): (20, 18, 1971, 1502)},
        "tunnels.pcap": {(41000, 80): (6, 3, 585, 438), (41001, 80): (6, 3, 537, 414), (41002, 80): (6, 3, 717, 504)},
    }
    for name, convs in tshark.items():
        flows = [r for r in map(json.loads, update.golden_path(Path(name)).read_text().splitlines())
                 if r["event_type"] == "flow" and r["proto"] in ("tcp", "udp")]
        got = {(f["src_port"], f["dest_port"]): (f["pkts_toserver"], f["pkts_toclient"], f["bytes_toserver"],
                                                 f["bytes_toclient"]) for f in flows}
        assert got == convs, name


# -- --deterministic -------------------------------------------------------------------------------------------
MULTI = ("samples/pcaps/fragments.pcap", "samples/pcaps/apps/mysql.pcap", "samples/pcaps/malformed.pcap")


def test_two_runs_give_identical_bytes_without_wall_clock_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    a = analyze_det(tmp_path, *MULTI, name="a.jsonl")
    b = analyze_det(tmp_path, *reversed(MULTI), name="b.jsonl")  # argument order does not matter either
    assert a.read_bytes() == b.read_bytes()
    records = [json.loads(line) for line in a.read_text().splitlines()]
    stats = records[-1]
    assert stats["event_type"] == "stats" and stats["version"]
    assert [f["file"] for f in stats["files"]] == ["samples/pcaps/fragments.pcap", "samples/pcaps/malformed.pcap",
                                                   "samples/pcaps/apps/mysql.pcap"]  # by first packet time
    assert all("seconds" not in f for f in stats["files"])
    kinds = [r["event_type"] for r in records]
    n_flows = kinds.count("flow")
    assert kinds[:n_flows] == ["flow"] * n_flows and n_flows == 4 + 1 + 2  # flows first, then the events
    flows = records[:n_flows]
    assert [(f["pcap_filename"], f["first_frame"]) for f in flows] == sorted(
        (f["pcap_filename"], f["first_frame"]) for f in flows)
    events = records[n_flows:-1]
    frames = [(e["pcap_filename"], e["frame"] if e["frame"] is not None else float("inf")) for e in events]
    assert frames == sorted(frames)


def test_plain_output_has_the_wall_clock_fields_that_deterministic_drops(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "plain.jsonl"
    assert cli("analyze", MULTI[0], "-q", "--format", "jsonl", "-o", out).exit_code == 0
    stats = json.loads(out.read_text().splitlines()[-1])
    assert "seconds" in stats["files"][0]
    # ... and diff ignores them by default, so a plain run still matches the golden file
    assert diff_files(str(update.golden_path(Path("fragments.pcap"))), str(out)).same


def _det_bytes(path: Path, config: AnalyzeConfig, out: Path) -> bytes:
    sink = DeterministicSink("jsonl", str(out))
    sink.close(run_summary([analyze_file(str(path), sink, config)]))
    return out.read_bytes()


# multi_interface.pcapng: three flows time out at frame 13 and the ICMP flow reuses a slot; this found a reused
# slot showing the previous flow's history ('D' for an ICMP flow) before the kernel cleared it on reuse
@pytest.mark.parametrize("name", ["apps/redis.pcap", "fragments.pcap", "tunnels.pcap", "multi_interface.pcapng"])
def test_ids_and_order_do_not_depend_on_batching(name, tmp_path):
    """flow_id hashes the flow's serial: it must not depend on how the reader cuts the file into batches."""
    path = ROOT / "samples" / "pcaps" / name
    default = _det_bytes(path, AnalyzeConfig(), tmp_path / "a.jsonl")
    tiny = _det_bytes(path, AnalyzeConfig(batch_packets=1, chunk_size=4096), tmp_path / "b.jsonl")
    assert default == tiny
    assert b'"flow_id":' in default


def test_deterministic_csv_is_stable_and_diffable(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    a = analyze_det(tmp_path, *MULTI, name="a.csv", extra=("--format", "csv"))
    b = analyze_det(tmp_path, *MULTI, name="b.csv", extra=("--format", "csv"))
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a.events.csv").read_bytes() == (tmp_path / "b.events.csv").read_bytes()
    assert cli("diff", a, b).exit_code == 0
    lines = b.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    col = header.index("pkts_toserver")
    row[col] = str(int(row[col]) + 1)
    b.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    result = cli("diff", a, b)
    assert result.exit_code == 1
    assert f"pkts_toserver \"{int(row[col]) - 1}\" -> \"{row[col]}\"" in result.output


def test_deterministic_refuses_zeek_logs(tmp_path):
    result = cli("analyze", ROOT / "samples/pcaps/http_ethernet.pcap", "--deterministic", "--format", "zeek",
                 "-o", tmp_path / "z")
    assert result.exit_code == 2
    assert "--deterministic works with" in result.output


# -- nvpcap diff -----------------------------------------------------------------------------------------------
def flow(first_frame: int, cid: str, **over) -> dict:
    rec = {"event_type": "flow", "flow_id": 1000 + first_frame, "community_id": cid, "src_ip": "10.0.0.1",
           "src_port": 40000 + first_frame, "dest_ip": "10.0.0.2", "dest_port": 80, "proto": "tcp",
           "pkts_toserver": 6, "pkts_toclient": 3, "pcap_filename": "a.pcap", "first_frame": first_frame,
           "last_frame": first_frame + 8}
    rec.update(over)
    return rec


BASE = [
    flow(3, "1:abc="),
    flow(20, "1:def="),
    {"event_type": "http", "pcap_filename": "a.pcap", "frame": 6, "flow_id": 1003, "community_id": "1:abc=",
     "http": {"method": "GET", "uri": "/", "status": 200}},
    {"event_type": "alert", "pcap_filename": "a.pcap", "frame": 11, "first_frame": 11, "rule_id": 2002,
     "rule_name": "IP.Fragment.Teardrop", "category": "threat", "src_ip": "10.1.0.7", "src_port": None,
     "dest_ip": "10.1.0.8", "dest_port": None, "proto": "udp", "count": 1},
    {"event_type": "anomaly", "pcap_filename": "a.pcap", "frame": None, "offset": 0,
     "anomaly": {"type": "capture", "event": "bad-magic", "message": "not a pcap"}},
    {"event_type": "stats", "version": "0.1.0", "files": [{"file": "caps/a.pcap", "packets": 40, "seconds": 0.1}],
     "totals": {"packets": 40}},
]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def copy() -> list[dict]:
    return json.loads(json.dumps(BASE))


def run_diff(tmp_path: Path, actual: list[dict], *opts: str, expected: list[dict] | None = None):
    e = write(tmp_path / "expected.jsonl", BASE if expected is None else expected)
    a = write(tmp_path / "actual.jsonl", actual)
    return cli("diff", e, a, *opts)


def test_equal_files_exit_0(tmp_path):
    result = run_diff(tmp_path, copy())
    assert result.exit_code == 0
    assert result.output == "same: 6 records match (ignoring stats:version, stats:seconds)\n"


def test_a_changed_field_is_named_with_its_record(tmp_path):
    recs = copy()
    recs[0]["pkts_toserver"] = 7
    result = run_diff(tmp_path, recs)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "~ flow 1:abc= (a.pcap frame 3): pkts_toserver 6 -> 7",
        "differ: 0 added, 0 removed, 1 changed (1 field), 5 equal; expected 6 records, actual 6",
    ]


def test_an_added_and_a_removed_record(tmp_path):
    recs = copy()
    del recs[1]  # the flow at frame 20
    recs.insert(0, flow(30, "1:new="))
    result = run_diff(tmp_path, recs)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "- removed flow 1:def= (a.pcap frame 20)",
        "+ added flow 1:new= (a.pcap frame 30)",
        "differ: 1 added, 1 removed, 0 changed (0 fields), 5 equal; expected 6 records, actual 6",
    ]


def test_nested_fields_and_stats_per_file(tmp_path):
    recs = copy()
    recs[2]["http"]["status"] = 404
    recs[5]["files"][0]["packets"] = 41
    result = run_diff(tmp_path, recs)
    assert result.exit_code == 1
    assert "~ http 1:abc= (a.pcap frame 6): http.status 200 -> 404" in result.output
    assert "~ stats: files[caps/a.pcap].packets 40 -> 41" in result.output


def test_matching_does_not_depend_on_record_order(tmp_path):
    recs = copy()
    random.Random(5).shuffle(recs)
    assert run_diff(tmp_path, recs).exit_code == 0
    keys = {record_key(r) for r in BASE}
    assert len(keys) == len(BASE)  # every record has its own identity


def test_a_moved_frame_is_a_change_not_a_removal(tmp_path):
    recs = copy()
    recs[2]["frame"] = 7
    result = run_diff(tmp_path, recs)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "~ http 1:abc= (a.pcap frame 6): frame 6 -> 7"


def test_records_sharing_an_identity_are_compared_by_content(tmp_path):
    twice = [flow(3, "1:abc="), flow(3, "1:abc=", pkts_toclient=4)]
    assert diff_records(twice, list(reversed(twice))).same
    res = diff_records(twice, [twice[0], twice[0]])
    assert not res.same and len(res.changed) == 1


def test_wall_clock_fields_are_ignored_by_default_only(tmp_path):
    recs = copy()
    recs[5]["version"] = "9.9.9"
    recs[5]["files"][0]["seconds"] = 7.5
    assert run_diff(tmp_path, recs).exit_code == 0
    result = run_diff(tmp_path, recs, "--no-default-ignores")
    assert result.exit_code == 1
    assert '~ stats: version "0.1.0" -> "9.9.9"' in result.output
    assert "~ stats: files[caps/a.pcap].seconds 0.1 -> 7.5" in result.output


def test_ignore_option(tmp_path):
    recs = copy()
    recs[0]["pkts_toserver"] = 7
    recs[2]["http"]["status"] = 500
    assert run_diff(tmp_path, recs, "--ignore", "pkts_toserver", "--ignore", "http.status").exit_code == 0
    result = run_diff(tmp_path, recs, "--ignore", "alert:pkts_toserver", "--ignore", "status")
    assert result.exit_code == 1  # scoped to alerts: the flow's change still counts
    assert "pkts_toserver 6 -> 7" in result.output and "status" not in result.output.splitlines()[0]


def test_max_diffs_and_json_format(tmp_path):
    recs = copy()
    for field_name in ("pkts_toserver", "pkts_toclient", "src_port", "dest_port", "last_frame"):
        recs[1][field_name] = 1
    result = run_diff(tmp_path, recs, "--max-diffs", "2")
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert len(lines) == 4 and lines[2] == "... 3 more differences not shown (--max-diffs 0 shows all)"
    result = run_diff(tmp_path, recs, "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["same"] is False and doc["summary"]["changed"] == 1 and doc["summary"]["changed_fields"] == 5
    assert {f["field"] for f in doc["changed"][0]["fields"]} == {"pkts_toserver", "pkts_toclient", "src_port",
                                                                  "dest_port", "last_frame"}


def test_capture_text_cannot_drive_the_terminal(tmp_path):
    recs = copy()
    recs[2]["http"]["uri"] = "/\x1b[31mred\u202e"
    result = run_diff(tmp_path, recs)
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert '"/\\u001b[31mred\\u202e"' in result.output


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("not json\n", "line 1: not JSON"),
    ('[1, 2]\n', "line 1: a JSON list"),
    (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00\xff\xfe", "not UTF-8"),
])
def test_usage_errors_exit_2_with_a_message(tmp_path, content, message):
    good = write(tmp_path / "good.jsonl", BASE)
    bad = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif content is not None:
        bad.write_text(content)
    result = CliRunner().invoke(main, ["diff", str(good), str(bad)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_actual_records_from_stdin(tmp_path):
    expected = write(tmp_path / "e.jsonl", BASE)
    recs = copy()
    recs[0]["pkts_toclient"] = 4
    result = CliRunner().invoke(main, ["diff", str(expected), "-"], input="".join(json.dumps(r) + "\n" for r in recs))
    assert result.exit_code == 1
    assert "~ flow 1:abc= (a.pcap frame 3): pkts_toclient 3 -> 4" in result.output


def test_usage_errors_for_options_and_mixed_formats(tmp_path):
    good = write(tmp_path / "good.jsonl", BASE)
    (tmp_path / "x.csv").write_text("event_type,flow_id\nflow,1\n")
    result = cli("diff", good, tmp_path / "x.csv")
    assert result.exit_code == 2 and "cannot compare a jsonl file" in result.output
    result = cli("diff", good, good, "--ignore", ":x")
    assert result.exit_code == 2 and "expected FIELD or EVENT_TYPE:FIELD" in result.output
    assert cli("diff", good).exit_code == 2  # click: missing argument
