"""Rotated captures (tcpdump -G/-C): `analyze_stream` reads them as one capture, and `stitch_flows` /
`FlowStitcher` join the flows a per-file run split at file boundaries (docs/stream.md)."""
from __future__ import annotations

import socket
from pathlib import Path

import dpkt
import pcapgen as g
import polars as pl
import pytest

from nvpcap.output.memory import MemorySink
from nvpcap.pipeline import analyze_file, analyze_stream
from nvpcap.stitch import FlowStitcher, stitch_flows
from nvpcap.summary import run_summary

C, S = "10.0.0.1", "10.0.0.2"
REQ = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 5\r\n\r\nhello"
T = 1_700_000_000.0

# compared between a stream run, the merged capture and stitched per-file records
CORE = ["community_id", "ts", "duration", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "app_proto",
        "app_confidence", "app_product", "conn_state", "history", "pkts_toserver", "pkts_toclient",
        "bytes_toserver", "bytes_toclient", "payload_bytes_toserver", "payload_bytes_toclient",
        "ip_bytes_toserver", "ip_bytes_toclient", "missed_bytes", "end_reason"]


def http_conversation(t0: float, cport: int = 40000) -> list[tuple[float, bytes]]:
    """Handshake, one HTTP exchange a second later, both FINs."""
    r, q = len(RESP), len(REQ)
    return [
        (t0, g.tcp(C, cport, S, 80, "S", seq=100)),
        (t0 + 0.001, g.tcp(S, 80, C, cport, "SA", seq=500, ack=101)),
        (t0 + 0.002, g.tcp(C, cport, S, 80, "A", seq=101, ack=501)),
        (t0 + 1.0, g.tcp(C, cport, S, 80, "PA", seq=101, ack=501, data=REQ)),
        (t0 + 1.001, g.tcp(S, 80, C, cport, "PA", seq=501, ack=101 + q, data=RESP)),
        (t0 + 1.002, g.tcp(C, cport, S, 80, "FA", seq=101 + q, ack=501 + r)),
        (t0 + 1.003, g.tcp(S, 80, C, cport, "FA", seq=501 + r, ack=102 + q)),
        (t0 + 1.004, g.tcp(C, cport, S, 80, "A", seq=102 + q, ack=502 + r)),
    ]


def fragments(t0: float, ident: int) -> list[tuple[float, bytes]]:
    """One UDP datagram (8 + 32 bytes) in two IPv4 fragments."""
    udp = bytes(dpkt.udp.UDP(sport=7000, dport=7001, ulen=40, data=b"f" * 32))
    parts = []
    for i, (off, chunk, more) in enumerate(((0, udp[:24], True), (3, udp[24:], False))):
        ip = dpkt.ip.IP(src=socket.inet_aton("10.0.9.1"), dst=socket.inet_aton("10.0.9.2"), p=17, ttl=64, id=ident,
                        mf=int(more), offset=off, data=chunk)
        parts.append((t0 + i * 0.01, g.eth(ip)))
    return parts


def rotated(tmp_path: Path) -> tuple[list[Path], Path]:
    """Three rotated files and the same packets in one file.

    file 1: the HTTP handshake; a DNS-like UDP exchange; a UDP flow seen once; the first fragment of a datagram
    file 2: the HTTP request, response and FINs; a whole TCP conversation; an ICMP echo; the last fragment
    file 3: the once-seen UDP 5-tuple again, 200 s later (beyond the UDP idle timeout)
    """
    http = http_conversation(T)
    f1 = http[:3] + [
        (T + 0.1, g.udp("10.0.0.3", 5353, "10.0.0.4", 53, b"q" * 20)),
        (T + 0.2, g.udp("10.0.0.4", 53, "10.0.0.3", 5353, b"r" * 30)),
        (T + 0.3, g.udp("10.0.0.5", 5000, "10.0.0.6", 6000, b"x")),
    ] + fragments(T + 0.4, 77)[:1]
    f2 = http[3:] + g.handshake("10.0.1.1", 41000, "10.0.1.2", 22, T + 1.1) + [
        (T + 1.2, g.icmp_echo("10.0.2.1", "10.0.2.2", 9, 1)),
        (T + 1.21, g.icmp_echo("10.0.2.2", "10.0.2.1", 9, 1, reply=True)),
    ] + fragments(T + 0.4, 77)[1:]
    f3 = [(T + 200.0, g.udp("10.0.0.5", 5000, "10.0.0.6", 6000, b"y"))]
    files = []
    for i, pkts in enumerate((f1, f2, f3), 1):
        files.append(g.write(tmp_path / f"rot.{i:03d}.pcap", sorted(pkts, key=lambda p: p[0])))
    merged = g.write(tmp_path / "merged.pcap", sorted(f1, key=lambda p: p[0]) + sorted(f2, key=lambda p: p[0]) + f3)
    return files, merged


def _key(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(["ts", "community_id"])


def _stream(files: list[Path]) -> tuple[MemorySink, list]:
    sink = MemorySink()
    return sink, analyze_stream([str(f) for f in files], sink)


def _per_file(files: list[Path]) -> tuple[MemorySink, list]:
    sink = MemorySink()
    return sink, [analyze_file(str(f), sink) for f in files]


def _offsets(summaries) -> dict[str, int]:
    """pcap_filename -> frames before it in the stream."""
    out, n = {}, 0
    for s in summaries:
        out[Path(s.name).name] = n
        n += s.packets
    return out


def test_stream_equals_one_capture(tmp_path):
    files, merged = rotated(tmp_path)
    sink, summaries = _stream(files)
    ref = MemorySink()
    analyze_file(str(merged), ref)
    got, want = _key(sink.flows_polars), _key(ref.flows_polars)
    assert got.select(CORE).to_dicts() == want.select(CORE).to_dicts()
    http = got.filter(pl.col("dest_port") == 80)
    assert http.height == 1
    row = http.row(0, named=True)
    assert (row["history"], row["conn_state"], row["app_proto"], row["app_product"]) == ("ShADdFf", "SF", "http",
                                                                                         "nginx")
    assert (row["pkts_toserver"], row["pkts_toclient"]) == (5, 3)
    # frames: pcap_filename holds the first packet at first_frame; last_frame counts on through later files
    offsets = _offsets(summaries)
    for g_row, w_row in zip(got.iter_rows(named=True), want.iter_rows(named=True)):
        base = offsets[g_row["pcap_filename"]]
        assert g_row["first_frame"] + base == w_row["first_frame"]
        assert g_row["last_frame"] + base == w_row["last_frame"]
    assert row["pcap_filename"] == "rot.001.pcap" and row["first_frame"] == 1
    assert row["last_frame"] > summaries[0].packets  # in file 2
    # the far-apart UDP 5-tuple: two flows, the first ended by its idle timeout
    far = got.filter(pl.col("src_port") == 5000).sort("ts")
    assert far["end_reason"].to_list() == ["timeout", "end-of-input"]
    assert far["pcap_filename"].to_list() == ["rot.001.pcap", "rot.003.pcap"]
    # the datagram whose fragments straddle the boundary is one packet of one flow
    frag = got.filter(pl.col("src_port") == 7000)
    assert frag["pkts_toserver"].to_list() == [1]


def test_stream_events_point_at_their_file(tmp_path):
    files, merged = rotated(tmp_path)
    sink, summaries = _stream(files)
    ref = MemorySink()
    analyze_file(str(merged), ref)
    http = [e for e in sink.events if e["event_type"] == "http"]
    want = [e for e in ref.events if e["event_type"] == "http"]
    assert len(http) == len(want) == 1
    assert http[0]["pcap_filename"] == "rot.002.pcap"
    assert http[0]["frame"] + summaries[0].packets == want[0]["frame"]
    assert http[0]["http"] == want[0]["http"]
    flow = sink.flows_polars.filter(pl.col("dest_port") == 80).row(0, named=True)
    assert http[0]["flow_id"] == flow["flow_id"]  # events still join their flow
    assert summaries[1].events == 1 and summaries[0].events == 0


def test_stream_writes_the_last_events_when_no_flow_is_left_to_write(tmp_path, monkeypatch):
    """Found by the split-stream test: the end of the stream wrote the buffered events only together with a
    block of flows, so when the last flows had just been written (no block pending) the HTTP event was lost."""
    import nvpcap.pipeline

    files, _ = rotated(tmp_path)
    monkeypatch.setattr(nvpcap.pipeline, "FLOW_BLOCK", 1)  # every ended flow written at once: none pending
    sink, summaries = _stream(files)
    assert [e["event_type"] for e in sink.events].count("http") == 1
    assert sum(s.events for s in summaries) == 1


def test_stream_accounting_holds_per_file(tmp_path):
    files, _ = rotated(tmp_path)
    sink, summaries = _stream(files)
    _, alone = _per_file(files)
    assert [s.name for s in summaries] == [str(f) for f in files]
    for s, a in zip(summaries, alone):
        assert s.check_accounting(), s.as_dict()
        assert s.packets == a.packets
    # a fragment is counted in the file it came from, even when its datagram completed in the next
    assert summaries[0].outcomes["fragment-reassembled"] == 1
    assert summaries[1].outcomes["fragment-reassembled"] == 1
    # flows are counted in the file of their first packet
    flows = sink.flows_polars
    per_file = flows.group_by("pcap_filename").len()
    counts = dict(zip(per_file["pcap_filename"].to_list(), per_file["len"].to_list()))
    assert [s.flows for s in summaries] == [counts.get(Path(f).name, 0) for f in files]
    assert sum(s.flows for s in summaries) == flows.height
    assert run_summary(summaries)["totals"]["accounted"]


def test_fragment_left_incomplete_is_counted_in_its_file(tmp_path):
    first = fragments(T, 5)[:1]
    f1 = g.write(tmp_path / "a.pcap", first + [(T + 0.1, g.udp("10.0.0.3", 1, "10.0.0.4", 2))])
    f2 = g.write(tmp_path / "b.pcap", [(T + 0.2, g.udp("10.0.0.3", 1, "10.0.0.4", 2))])
    sink, summaries = _stream([f1, f2])
    assert summaries[0].outcomes["fragment-incomplete"] == 1
    assert "fragment-incomplete" not in summaries[1].outcomes
    assert all(s.check_accounting() for s in summaries)
    lost = [e for e in sink.events if e.get("anomaly", {}).get("event") == "fragment-incomplete"]
    assert [(e["pcap_filename"], e["frame"]) for e in lost] == [("a.pcap", 1)]


@pytest.mark.parametrize("corruption", ["bad-magic", "truncated", "missing"])
def test_corrupt_middle_file_is_reported_and_the_stream_goes_on(tmp_path, corruption):
    http = http_conversation(T)
    f1 = g.write(tmp_path / "r1.pcap", http[:3])
    mid = tmp_path / "r2.pcap"
    if corruption == "bad-magic":
        mid.write_bytes(b"this is not a capture at all")
    elif corruption == "truncated":
        g.write(mid, [(T + 0.5, g.udp("10.0.0.3", 5353, "10.0.0.4", 53, b"q" * 20))] * 2)
        mid.write_bytes(mid.read_bytes()[:-10])
    f3 = g.write(tmp_path / "r3.pcap", http[3:])
    sink, summaries = _stream([f1, mid, f3])
    assert summaries[1].issues, summaries[1].as_dict()
    assert all(s.check_accounting() for s in summaries)
    flows = sink.flows_polars
    http_flow = flows.filter(pl.col("dest_port") == 80)
    assert http_flow.height == 1
    assert http_flow.row(0, named=True)["history"] == "ShADdFf"
    assert [e["event_type"] for e in sink.events].count("http") == 1
    if corruption == "truncated":
        assert summaries[1].outcomes["unreadable-record"] == 1
        issue = [e for e in sink.events if e["event_type"] == "anomaly" and e["anomaly"]["type"] == "capture"]
        assert [e["pcap_filename"] for e in issue] == ["r2.pcap"]
        # the HTTP flow's last frame counts on through the truncated file's records
        assert http_flow["last_frame"].to_list() == [3 + 2 + 5]


def test_per_file_stitching_equals_stream(tmp_path):
    files, _ = rotated(tmp_path)
    stream_sink, _ = _stream(files)
    sink, summaries = _per_file(files)
    flows = sink.flows_polars
    assert flows.filter(pl.col("dest_port") == 80).height == 2  # split without stitching
    stitched = stitch_flows(flows, run_summary=run_summary(summaries))
    # what a per-file run cannot know: the datagram whose fragments straddle the boundary (only the stream
    # reassembles it), and that the file-2 flows would have timed out in the 200 s before file 3
    got = _key(stitched)
    want = _key(stream_sink.flows_polars.filter(pl.col("src_port") != 7000))
    cols = [c for c in CORE if c != "end_reason"] + ["pcap_filename", "first_frame", "last_frame", "threat_ids"]
    assert got.select(cols).to_dicts() == want.select(cols).to_dicts()
    http = got.filter(pl.col("dest_port") == 80).row(0, named=True)
    assert http["stitched_parts"] == 2
    assert (http["pkts_toserver"], http["pkts_toclient"]) == (5, 3)
    parts = flows.filter(pl.col("dest_port") == 80)
    assert http["bytes_toserver"] == parts["bytes_toserver"].sum()
    assert http["flow_id"] == parts.sort("ts")["flow_id"][0]
    # the far-apart 5-tuple is not stitched: its first part ended by end of file 1, the next is 200 s later
    far = got.filter(pl.col("src_port") == 5000)
    assert far.height == 2 and far["stitched_parts"].to_list() == [1, 1]


def test_stitching_pandas_and_in_run_agree(tmp_path):
    files, _ = rotated(tmp_path)
    sink, summaries = _per_file(files)
    summary = run_summary(summaries)
    ref = _key(stitch_flows(sink.flows_polars, run_summary=summary))
    as_pandas = stitch_flows(sink.flows, run_summary=summary)
    assert list(as_pandas["history"]) == ref["history"].to_list()
    assert list(as_pandas["stitched_parts"]) == ref["stitched_parts"].to_list()
    # in the run: the stitcher wraps the sink and holds only the previous file's open flows
    inner = MemorySink()
    stitcher = FlowStitcher(inner, file_order=[str(f) for f in files])
    done = []
    for f in files:
        s = analyze_file(str(f), stitcher)
        stitcher.end_file(s)
        done.append(s)
    stitcher.close(run_summary(done))
    assert _key(inner.flows_polars).to_dicts() == ref.to_dicts()
    assert inner.summary is not None and len(inner.events) == len(sink.events)
    plain = MemorySink()
    no_parts = FlowStitcher(plain, parts_column=False)  # order from the blocks, counts from the summary
    for f in files:
        analyze_file(str(f), no_parts)
    no_parts.close(summary)
    assert plain.flows_polars.columns == sink.flows_polars.columns
    assert _key(plain.flows_polars).to_dicts() == ref.drop("stitched_parts").to_dicts()


def test_port_reuse_after_close_is_not_stitched(tmp_path):
    closed = g.handshake(C, 40001, S, 80, T)  # both FINs: the flow waits out the closing timeout
    again = [  # a new connection (new ISN) on the same 5-tuple 5 s later
        (T + 5, g.tcp(C, 40001, S, 80, "S", seq=9000)),
        (T + 5.001, g.tcp(S, 80, C, 40001, "SA", seq=7000, ack=9001)),
        (T + 5.002, g.tcp(C, 40001, S, 80, "A", seq=9001, ack=7001)),
    ]
    f1, f2 = g.write(tmp_path / "p1.pcap", closed), g.write(tmp_path / "p2.pcap", again)
    stream_sink, _ = _stream([f1, f2])
    assert stream_sink.flows_polars["end_reason"].to_list()[0] == "tcp-reuse"
    sink, summaries = _per_file([f1, f2])
    stitched = stitch_flows(sink.flows_polars, run_summary=run_summary(summaries))
    assert stitched.height == 2 and stitched["stitched_parts"].to_list() == [1, 1]


def test_open_flow_split_mid_data_is_stitched_with_the_handshake_state(tmp_path):
    """The last part begins mid-connection (OTH alone): stitched, the handshake makes it S1, as in a stream."""
    http = http_conversation(T)
    f1 = g.write(tmp_path / "o1.pcap", http[:3])
    f2 = g.write(tmp_path / "o2.pcap", http[3:5])  # request and response, no FIN: still open at the end
    f3 = g.write(tmp_path / "o3.pcap", http[5:])
    stream_sink, _ = _stream([f1, f2, f3])
    sink, summaries = _per_file([f1, f2, f3])
    assert sink.flows_polars.sort("ts")["conn_state"].to_list() == ["S1", "OTH", "SF"]
    stitched = stitch_flows(sink.flows_polars, run_summary=run_summary(summaries))
    cols = CORE + ["pcap_filename", "first_frame", "last_frame"]
    assert stitched.select(cols).to_dicts() == stream_sink.flows_polars.select(cols).to_dicts()
    assert stitched["stitched_parts"].to_list() == [3]
    two = stitch_flows(sink.flows_polars.filter(pl.col("pcap_filename") != "o3.pcap"),
                       run_summary=run_summary(summaries[:2]))
    assert two["conn_state"].to_list() == ["S1"]
    assert two["last_frame"].to_list() == [3 + 2]


def test_stitched_last_frame_is_null_without_frame_counts(tmp_path):
    files, _ = rotated(tmp_path)
    sink, _ = _per_file(files)
    stitched = stitch_flows(sink.flows_polars)  # file order from the records, no frame counts
    http = stitched.filter(pl.col("dest_port") == 80)
    assert http["stitched_parts"].to_list() == [2]
    assert http["last_frame"].to_list() == [None]


def test_internal_error_in_one_file_is_counted_and_the_stream_goes_on(tmp_path, monkeypatch):
    from nvpcap import pipeline

    files, _ = rotated(tmp_path)
    real, calls = pipeline.decode, []

    def flaky(raw):
        calls.append(1)
        if len(calls) == 2:  # the first batch of file 2
            raise RuntimeError("simulated bug")
        return real(raw)

    monkeypatch.setattr(pipeline, "decode", flaky)
    sink, summaries = _stream(files)
    assert [i.kind for i in summaries[1].issues] == ["internal-error"]
    assert summaries[1].outcomes["internal-error"] == summaries[1].packets
    assert all(s.check_accounting() for s in summaries)
    assert sink.flows_polars.filter(pl.col("pcap_filename") == "rot.003.pcap").height == 1


def test_the_cli_stream_and_stitch_match_the_whole_capture(tmp_path):
    """editcap -c cuts a real capture (RabbitMQ, 59 frames) into rotated files; both modes give the flows of the
    uncut capture (counts, history, state, application)."""
    import json
    import shutil
    import subprocess

    from click.testing import CliRunner

    from nvpcap.cli import main

    editcap = shutil.which("editcap")
    if editcap is None:
        pytest.skip("editcap (Wireshark) is not installed")
    source = Path(__file__).resolve().parent.parent / "samples" / "pcaps" / "apps" / "rabbitmq.pcap"
    (tmp_path / "rot").mkdir()
    subprocess.run([editcap, "-c", "30", str(source), str(tmp_path / "rot" / "r.pcap")], check=True)
    keys = ("src_port", "pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient", "history",
            "conn_state", "app_proto")

    def flows(*args: str) -> list[tuple]:
        out = tmp_path / "out.jsonl"
        result = CliRunner().invoke(main, ["analyze", *args, "-q", "--no-bundled-rules", "-o", str(out)])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        return sorted(tuple(r[k] for k in keys) for r in rows if r["event_type"] == "flow")

    whole = flows(str(source))
    assert len(whole) == 2
    assert flows(str(tmp_path / "rot"), "--stream") == whole
    assert flows(str(tmp_path / "rot"), "--stitch") == whole
    assert len(flows(str(tmp_path / "rot"))) > len(whole)  # per file without stitching: split flows
