"""Pipeline guarantees: compiled and pure-Python kernels agree; an internal error never loses packets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nvpcap import pipeline
from conftest import SAMPLES, SHARED, run
from nvpcap.output.memory import MemorySink
from nvpcap.rules.engine import SCAN_CONTEXTS

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


# ---- the per-packet path between the flow table and the parsers ----

@pytest.mark.parametrize("batch", [3, 64, 16384])
def test_first_offers_agree_with_the_per_flow_lookup(monkeypatch, batch):
    """The column-wise keys, data starts, transport and mid-stream flag of a batch's new flows are what the
    per-flow lookup (`_first_offer`) gives; small batches make flows end (and slots be reused) inside a batch."""
    checked = []
    column_wise = pipeline._first_offers

    def compare(tab, ended, slots, serials, tcp, known):
        out = column_wise(tab, ended, slots, serials, tcp, known)
        for ser, (slot, *fields) in out.items():
            assert tuple(fields) == pipeline._first_offer(tab, slot, ser, ended), ser
            assert ser not in known
        checked.append(len(out))
        return out

    monkeypatch.setattr(pipeline, "_first_offers", compare)
    for name in ("http_ethernet.pcap", "apps/mysql.pcap", "apps/postgresql.pcap", "tunnels.pcap", "fragments.pcap"):
        ref = run(SAMPLES / name)
        small = run(SAMPLES / name, pipeline.AnalyzeConfig(batch_packets=batch, chunk_size=4096))
        assert small.events == ref.events and small.flows.equals(ref.flows), name
    assert sum(checked) > 0


def _layer(protocols, rules=None, depth=1 << 20):
    from nvpcap.protocols.applayer import AppLayer, AppLayerConfig
    from nvpcap.records.events import EventCollector

    return AppLayer(protocols, EventCollector("x.pcap"), "x.pcap", AppLayerConfig(rules=rules, stream_depth=depth))


_KEYS = (6, 0, 0xFFFF0A000001, 0, 0xFFFF0A000002, 40000, 80, 10**18)
_REQUESTS = [b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
             b"GET /c%20d HTTP/1.1\r\nHost: x\r\n\r\n"]
_RESPONSES = [b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 2\r\n\r\nok",
              b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
              b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]


def _http_events(segments: list[tuple[int, int, bytes]]) -> list:
    """The events of one HTTP flow whose segments (side, stream offset, bytes) arrive in the given order."""
    from nvpcap.protocols.registry import PROTOCOLS

    app = _layer(PROTOCOLS)
    starts = (1000, 5000)
    for frame, (side, off, data) in enumerate(segments, 1):
        app.offer(7, side, _KEYS, "tcp", False, starts[side] + off, data, frame, 10**18 + frame, starts)
    app.end(7, "tcp", 80)
    return [(r.app, r.fields) for r in app.rows]


def test_segments_in_order_or_not_give_the_same_events():
    """Whole messages in order (the app layer's fast path) and the same bytes cut small, reordered and
    retransmitted (the reassembler's general path) give the same events."""
    def stream(side, messages, cut):
        data = b"".join(messages)
        return [(side, i, data[i:i + cut]) for i in range(0, len(data), cut)]

    whole = []
    offs = [0, 0]
    for req, resp in zip(_REQUESTS, _RESPONSES):  # pipelined requests are answered in order
        whole += [(0, offs[0], req), (1, offs[1], resp)]
        offs[0] += len(req)
        offs[1] += len(resp)
    ref = _http_events(whole)
    assert [f["uri"] for _, f in ref] == ["/a", "/b", "/c%20d"] and ref[2][1]["response_body_len"] == 3
    for cut in (1, 7, 40):
        client, server = stream(0, _REQUESTS, cut), stream(1, _RESPONSES, cut)
        # each pair swapped (one segment held, then drained), and retransmissions of what was delivered
        shuffled = [seg for i in range(0, len(client), 2) for seg in client[i:i + 2][::-1]] + client[:3]
        shuffled += [seg for i in range(0, len(server), 2) for seg in server[i:i + 2][::-1]] + server[:2]
        assert _http_events(client + server) == ref, cut
        assert _http_events(shuffled) == ref, cut


class _Recorder:
    """A parser that reads everything it is given and never finishes."""

    def __init__(self, out, ctx):
        self.done = False
        self.fed: list[tuple[int, bytes]] = []

    def feed(self, side, data, frame, ts_ns):
        self.fed.append((side, data))

    def gap(self, side, missing, frame, ts_ns):
        self.fed.append((side, missing))

    def finish(self):
        pass


class _Rules:
    """A rules engine that records what it is asked to scan (a rule reads every context)."""

    contexts = frozenset(SCAN_CONTEXTS)

    def __init__(self):
        self.scans: list[tuple[str, int, bytes, bool]] = []

    def flow_scanner(self, serial, app, keys):
        rules = self

        class Scanner:
            def __init__(self):
                self.alerts = []

            def scan(self, context, side, data, frame, ts_ns, unit):
                rules.scans.append((context, side, data, unit))

            def close(self):
                pass
        return Scanner()


@pytest.mark.parametrize("parsed", [True, False])
def test_stream_depth_bounds_what_parser_and_rules_read(parsed):
    """Each side is read up to `stream_depth` bytes (a piece crossing it is cut), and the flow wants no more
    bytes once both sides reached it: with a parser, and for the rules alone (a cleartext app without one)."""
    from nvpcap.protocols.base import ProtocolSpec, Verdict

    parsers = []

    def make(out, ctx):
        parsers.append(_Recorder(out, ctx))
        return parsers[-1]

    spec = ProtocolSpec("rec", ("tcp",), (80,), lambda c, s, ctx: Verdict.YES if c else Verdict.MAYBE,
                        parser=make if parsed else None)
    rules = _Rules()
    app = _layer((spec,), rules=rules, depth=10)
    sent = [(0, b"abcd"), (1, b"123456"), (0, b"efgh"), (0, b"ijkl"), (1, b"7890XY"), (0, b"mn"), (1, b"Z")]
    offs, done_at = [0, 0], None
    for frame, (side, data) in enumerate(sent, 1):
        if app.offer(3, side, _KEYS, "tcp", False, offs[side], data, frame, frame, (0, 0)):
            done_at = done_at or frame
        offs[side] += len(data)
    assert done_at == 5  # the server's second piece brings the second side to the depth
    read = [(s, d) for c, s, d, _ in rules.scans if c == "raw"]
    assert read == [(0, b"abcd"), (1, b"123456"), (0, b"efgh"), (0, b"ij"), (1, b"7890")]
    if parsed:
        assert parsers[0].fed == read
