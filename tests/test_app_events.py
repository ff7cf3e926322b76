"""The application layer end to end: a TCP conversation built here goes through identification, the parser,
event and alert records, the flow record's threat ids, the output formats, and the switches that control them."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pcapgen as g
import pytest
from conftest import run

from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols.applayer import AppLayerConfig
from nvpcap.threats import parse_threat_switches

C, S = "10.0.0.1", "10.0.0.2"


def ssh_capture(path: Path, client_banner: bytes = b"SSH-1.5-oldclient\r\n", segments: int = 1) -> Path:
    """A handshake, the server banner, then the client banner cut into `segments` TCP segments (out of order
    when there are several), then FINs."""
    pkts = [(0.0, g.tcp(C, 40000, S, 22, "S", seq=100)), (0.001, g.tcp(S, 22, C, 40000, "SA", seq=500, ack=101)),
            (0.002, g.tcp(C, 40000, S, 22, "A", seq=101, ack=501))]
    server = b"SSH-2.0-OpenSSH_9.6\r\n"
    pkts.append((0.003, g.tcp(S, 22, C, 40000, "PA", seq=501, ack=101, data=server)))
    size = -(-len(client_banner) // segments)
    pieces = [(i, client_banner[i:i + size]) for i in range(0, len(client_banner), size)]
    for n, (off, piece) in enumerate(reversed(pieces) if segments > 1 else pieces):
        pkts.append((0.004 + n / 1000, g.tcp(C, 40000, S, 22, "PA", seq=101 + off, ack=501 + len(server), data=piece)))
    end = 101 + len(client_banner)
    pkts += [(0.1, g.tcp(C, 40000, S, 22, "FA", seq=end, ack=501 + len(server))),
             (0.2, g.tcp(S, 22, C, 40000, "FA", seq=501 + len(server), ack=end + 1)),
             (0.3, g.tcp(C, 40000, S, 22, "A", seq=end + 1, ack=502 + len(server)))]
    return g.write(path, pkts)


def test_event_alert_and_flow_agree(tmp_path):
    res = run(ssh_capture(tmp_path / "ssh.pcap", segments=3))  # client banner arrives in reverse order
    (event,) = res.app_events("ssh")
    assert event["ssh"]["client"] == "SSH-1.5-oldclient" and event["ssh"]["server"] == "SSH-2.0-OpenSSH_9.6"
    flow = res.flows.iloc[0]
    assert (event["flow_id"], event["community_id"]) == (flow["flow_id"], flow["community_id"])
    assert (event["src_ip"], event["dest_port"], event["frame"]) == (C, 22, 4)  # the server banner's frame
    (alert,) = res.alerts(2008)
    assert alert["app_proto"] == "ssh" and alert["direction"] == "toserver" and alert["src_ip"] == C
    assert flow["threat_ids"] == [2008] and flow["app_proto"] == "ssh"
    assert res.summary.events == 1 and res.summary.parser_errors == 0


def test_a_threat_switched_off_raises_nothing(tmp_path):
    cfg = AnalyzeConfig(threat_overrides=parse_threat_switches(["SSH.Version.1=off"]))
    res = run(ssh_capture(tmp_path / "ssh.pcap"), cfg)
    assert res.alerts(2008) == [] and res.flows.iloc[0]["threat_ids"] == []
    assert len(res.app_events("ssh")) == 1


def test_threat_switches_parse_ids_and_names():
    assert parse_threat_switches(["2012=on", "ssl.tls1.1=ON", "2008=off"]) == {2012: True, 2027: True, 2008: False}
    for bad in ("2012", "9999=on", "2012=maybe", "nope=off"):
        with pytest.raises(ValueError):
            parse_threat_switches([bad])
    with pytest.raises(ValueError, match="no such threat"):  # "²".isdigit(), but no number int() reads
        parse_threat_switches(["²=on"])


def test_stream_depth_zero_identifies_without_parsing(tmp_path):
    res = run(ssh_capture(tmp_path / "ssh.pcap"), AnalyzeConfig(app=AppLayerConfig(stream_depth=0)))
    assert res.app_events("ssh") == [] and res.flows.iloc[0]["app_proto"] == "ssh"


def test_a_parser_that_raises_becomes_an_anomaly_and_the_flow_goes_on(tmp_path, monkeypatch):
    from nvpcap.protocols import ssh

    def broken(self, side, data, frame, ts):
        raise RuntimeError("parser bug")
    monkeypatch.setattr(ssh.SshParser, "feed", broken)
    res = run(ssh_capture(tmp_path / "ssh.pcap"))
    (anomaly,) = res.anomalies("parser-error")
    assert "parser bug" in anomaly["anomaly"]["message"] and anomaly["dest_port"] == 22
    assert res.summary.parser_errors == 1 and len(res.flows) == 1 and res.flows.iloc[0]["app_proto"] == "ssh"


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nvpcap", "analyze", *map(str, args), "-q"], cwd=cwd,
                          capture_output=True, text=True)


def test_zeek_output_writes_a_protocol_log(tmp_path):
    ssh_capture(tmp_path / "ssh.pcap")
    out = tmp_path / "zeek"
    done = _cli("ssh.pcap", "--format", "zeek", "-o", f"{out}/", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (out / "ssh.log").read_text().splitlines()
    fields = next(line for line in lines if line.startswith("#fields")).split("\t")[1:]
    rows = [line.split("\t") for line in lines if not line.startswith("#")]
    assert len(rows) == 1
    row = dict(zip(fields, rows[0]))
    assert row["id.orig_h"] == C and row["id.resp_p"] == "22" and row["client"] == "SSH-1.5-oldclient"
    assert row["version"] == "1" and row["extra"] == "-"
    assert "NeuVector::SSH.Version.1" in (out / "notice.log").read_text()


def test_csv_events_carry_the_protocol_fields_as_json(tmp_path):
    ssh_capture(tmp_path / "ssh.pcap")
    done = _cli("ssh.pcap", "-o", "flows.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(tmp_path / "flows.events.csv")))
    ssh_rows = [r for r in rows if r["event_type"] == "ssh"]
    assert len(ssh_rows) == 1 and json.loads(ssh_rows[0]["details"])["server"] == "SSH-2.0-OpenSSH_9.6"
    assert ssh_rows[0]["community_id"].startswith("1:")


def test_protocols_lists_what_parsers_extract():
    out = subprocess.run([sys.executable, "-m", "nvpcap", "protocols", "--format", "json"], capture_output=True,
                         text=True, check=True).stdout
    ssh = next(p for p in json.loads(out) if p["name"] == "ssh")
    assert "banner" in ssh["extracts"]


def test_a_reset_before_the_handshake_does_not_shift_the_servers_stream(tmp_path):
    """rtsp__ndpi__rtsp.pcap shows it: a SYN refused with RST-ACK seq 0, then the same SYN accepted. The
    server's bytes start after its SYN-ACK, not after the RST's sequence number."""
    pkts = [(-0.01, g.tcp(C, 40000, S, 22, "S", seq=100)), (-0.009, g.tcp(S, 22, C, 40000, "RA", seq=0, ack=101))]
    path = ssh_capture(tmp_path / "ssh.pcap")
    import dpkt
    with open(path, "rb") as fh:
        rest = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    g.write(path, pkts + rest)
    (event,) = run(path).app_events("ssh")
    assert event["ssh"]["server"] == "SSH-2.0-OpenSSH_9.6" and event["ssh"]["client"] == "SSH-1.5-oldclient"


def test_etcd_over_grpc_is_labelled_by_its_service_package():
    # tshark -r etcd_grpc.pcap -d tcp.port==2379,http2 -Y 'http2.header.name == ":path"' -e http2.header.value:
    # /etcdserverpb.KV/Put, /etcdserverpb.KV/Range, /etcdserverpb.KV/DeleteRange, one per connection
    from conftest import SAMPLES

    flows = run(SAMPLES / "apps" / "etcd_grpc.pcap").flows
    assert list(flows["app_proto"]) == ["grpc"] * 3 and list(flows["app_product"]) == ["etcd"] * 3


def test_beyond_max_parsed_flows_the_least_recently_active_flow_stops_being_read(tmp_path):
    """Three HTTP conversations at once, room for two: the first (least recently active when the third starts)
    stops being read after its request, keeps its event and its label, and is counted."""
    tcp, write = g.tcp, g.write

    def opening(port: int, t: float) -> list:
        c, s = "10.0.0.1", "10.0.0.2"
        req = b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % port
        return [(t, tcp(c, port, s, 80, "S", seq=100)), (t + 0.001, tcp(s, 80, c, port, "SA", seq=500, ack=101)),
                (t + 0.002, tcp(c, port, s, 80, "A", seq=101, ack=501)),
                (t + 0.003, tcp(c, port, s, 80, "PA", seq=101, ack=501, data=req))]

    def answer(port: int, t: float) -> list:
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        req_len = len(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % port)
        return [(t, tcp("10.0.0.2", 80, "10.0.0.1", port, "PA", seq=501, ack=101 + req_len, data=resp))]

    pkts = opening(41001, 1.0) + opening(41002, 2.0) + opening(41003, 3.0)
    pkts += answer(41001, 4.0) + answer(41002, 4.1) + answer(41003, 4.2)
    write(tmp_path / "three.pcap", pkts)
    config = AnalyzeConfig(app=AppLayerConfig(max_flows=2))
    res = run(tmp_path / "three.pcap", config)
    assert res.summary.parsing_evicted == 1
    http = {e["src_port"]: e["http"] for e in res.app_events("http")}
    assert set(http) == {41001, 41002, 41003}
    assert http[41001]["status"] is None  # its response came after it was let go
    assert http[41002]["status"] == http[41003]["status"] == 200
    assert set(res.flows["app_proto"]) == {"http"}
    unbounded = run(tmp_path / "three.pcap")
    assert unbounded.summary.parsing_evicted == 0
    assert all(e["http"]["status"] == 200 for e in unbounded.app_events("http"))
