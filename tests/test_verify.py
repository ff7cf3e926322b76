"""`nvpcap verify`: nvpcap's flows and labels against tshark's, driven through pyshark.

Expected values come from hand calculation on captures built here (frame lengths: Ethernet 14 + IPv4 20 +
TCP 20 / UDP 8 / ICMP echo 8 + payload) and from tshark's own listing of the project's sample capture.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pcapgen as g
import pytest
from click.testing import CliRunner
from conftest import SAMPLES

pytest.importorskip("pyshark")
if shutil.which("tshark") is None:
    pytest.skip("tshark is not installed", allow_module_level=True)

from nvpcap import verify as v

pytestmark = pytest.mark.oracle

AGREEING = [SAMPLES / "http_ethernet.pcap", *sorted((SAMPLES / "apps").glob("*.pcap"))]


def invoke(*args: str):
    result = CliRunner().invoke(v.verify_command, list(args))
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.output
    return result


def as_json(*args: str) -> tuple[int, dict]:
    result = invoke(*args, "--format", "json")
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("path", AGREEING, ids=lambda p: p.name)
def test_samples_agree(path):
    code, report = as_json(str(path))
    assert code == 0, report["rows"]
    assert report["agree"] is True
    s = report["summary"]
    assert s["flows_compared"] >= 1
    assert s["counts_agree"] == s["flows_compared"]
    assert s["labels_differ"] == s["counts_differ"] == s["nvpcap_only"] == s["wireshark_only"] == 0


def test_http_sample_rows_match_tshark_listing():
    """tshark -r http_ethernet.pcap: DNS 75 + 91 bytes; TCP 40000->80: 62+54+149+54+54+54 out, 62+238+54 back."""
    code, report = as_json(str(SAMPLES / "http_ethernet.pcap"), "--all")
    assert code == 0
    rows = {r["proto"]: r for r in report["rows"]}
    assert rows["udp"]["a"] == "10.0.0.1:53000" and rows["udp"]["b"] == "10.0.0.53:53"
    assert rows["udp"]["wireshark"] == rows["udp"]["nvpcap"] == {"pkts": [1, 1], "bytes": [75, 91]}
    assert rows["tcp"]["wireshark"] == rows["tcp"]["nvpcap"] == {"pkts": [6, 3], "bytes": [427, 354]}
    assert (rows["tcp"]["nvpcap_app"], rows["tcp"]["wireshark_app"]) == ("http", "http")
    assert (rows["udp"]["nvpcap_app"], rows["udp"]["wireshark_app"]) == ("dns", "dns")


def _hand_capture(path: Path) -> Path:
    """A TCP conversation on an unassigned port, one UDP conversation with a 100 s gap (nvpcap's UDP idle
    timeout is NeuVector's 30 s: two flows, one tshark conversation) and an ICMP echo."""
    pkts = g.handshake("10.0.0.1", 40000, "10.0.0.2", 9999, 1.0)
    pkts += [(2.0, g.udp("10.0.0.1", 5000, "10.0.0.3", 7777)), (102.0, g.udp("10.0.0.1", 5000, "10.0.0.3", 7777))]
    pkts += [(103.0, g.icmp_echo("10.0.0.1", "10.0.0.4", 1, 1)),
             (103.001, g.icmp_echo("10.0.0.4", "10.0.0.1", 1, 1, reply=True))]
    return g.write(path, sorted(pkts, key=lambda p: p[0]))


def test_summary_counts_hand_checked(tmp_path):
    code, report = as_json(str(_hand_capture(tmp_path / "hand.pcap")), "--all")
    assert code == 0, report["rows"]
    s = report["summary"]
    assert (s["flows_compared"], s["counts_agree"], s["split"]) == (3, 3, 1)
    assert (s["labels_compared"], s["labels_agree"], s["labels_differ"]) == (3, 3, 0)
    assert report["packets"] == 12
    rows = {r["proto"]: r for r in report["rows"]}
    # TCP: client sends SYN, ACK, "hello", FIN, ACK = 5 x 54 + 5; server SYN-ACK, "world!", FIN = 3 x 54 + 6
    assert rows["tcp"]["nvpcap"] == rows["tcp"]["wireshark"] == {"pkts": [5, 3], "bytes": [275, 168]}
    assert rows["tcp"]["status"] == "agree" and rows["tcp"]["label_status"] == "none"
    # UDP: two 43-byte frames (14 + 20 + 8 + 1), 100 s apart: two nvpcap flows, one Wireshark conversation
    assert rows["udp"]["nvpcap"] == rows["udp"]["wireshark"] == {"pkts": [2, 0], "bytes": [86, 0]}
    assert rows["udp"]["status"] == "split" and rows["udp"]["nvpcap_flows"] == 2
    assert "idle timeout" in rows["udp"]["note"]
    # ICMP echo and reply: 14 + 20 + 8 + 4 = 46 bytes each
    assert rows["icmp"]["nvpcap"] == rows["icmp"]["wireshark"] == {"pkts": [1, 1], "bytes": [46, 46]}
    assert rows["icmp"]["label_status"] == "agree"


def test_table_output_has_summary_line(tmp_path):
    result = invoke(str(_hand_capture(tmp_path / "hand.pcap")))
    assert result.exit_code == 0
    assert "3 flows compared, 3 agree on packets/bytes (1 split by nvpcap, sums agree), 3 of 3 labels agree" \
        in " ".join(result.stdout.split())
    assert "split by idle timeout" in " ".join(result.stdout.split())


def _altered(monkeypatch, change):
    """Let nvpcap's side run, then change its result before the comparison: simulated nvpcap bugs."""
    real = v.run_nvpcap

    def fake(path):
        side = real(path)
        change(side.convs)
        return side

    monkeypatch.setattr(v, "run_nvpcap", fake)


def _tcp(ours):
    return next(conv for key, conv in ours.items() if key[0] == 6)


def test_label_disagreement_fails(monkeypatch):
    def relabel(ours):
        conv = _tcp(ours)
        conv.apps.clear()
        conv.apps["mysql"] = 1

    _altered(monkeypatch, relabel)
    code, report = as_json(str(SAMPLES / "http_ethernet.pcap"))
    assert code == 1 and report["agree"] is False
    assert report["summary"]["labels_differ"] == 1 and report["summary"]["labels_agree"] == 1
    (row,) = report["rows"]
    assert (row["nvpcap_app"], row["wireshark_app"], row["label_status"]) == ("mysql", "http", "differ")
    assert row["status"] == "agree"


def test_unknown_label_against_wireshark_label_fails(monkeypatch):
    def unlabel(ours):
        conv = _tcp(ours)
        conv.apps.clear()
        conv.apps["unknown"] = 1

    _altered(monkeypatch, unlabel)
    result = invoke(str(SAMPLES / "http_ethernet.pcap"))
    assert result.exit_code == 1
    assert "1 labels differ" in " ".join(result.stdout.split())


def test_count_and_missing_flow_differences_fail(monkeypatch):
    def damage(ours):
        _tcp(ours).tally.add(1, -1, -54)  # nvpcap "missed" the server's FIN
        del ours[next(k for k in ours if k[0] == 17)]  # and the DNS flow entirely

    _altered(monkeypatch, damage)
    code, report = as_json(str(SAMPLES / "http_ethernet.pcap"))
    assert code == 1
    s = report["summary"]
    assert (s["flows_compared"], s["counts_differ"], s["wireshark_only"], s["counts_agree"]) == (1, 1, 1, 0)
    by_status = {r["status"]: r for r in report["rows"]}
    assert by_status["differ"]["nvpcap"] == {"pkts": [6, 2], "bytes": [427, 300]}
    assert by_status["differ"]["wireshark"] == {"pkts": [6, 3], "bytes": [427, 354]}
    assert by_status["wireshark-only"]["proto"] == "udp" and by_status["wireshark-only"]["nvpcap"] is None


def test_unmapped_wireshark_label_is_shown_not_counted(tmp_path):
    """ZooKeeper has no Wireshark 4.0 dissector; its heuristic SMPP dissector claims these frames."""
    code, report = as_json(str(SAMPLES / "apps" / "zookeeper.pcap"))
    assert code == 0
    (row,) = report["rows"]
    assert row["label_status"] == "unmapped" and row["wireshark_app"].startswith("smpp")
    assert report["summary"]["labels_unmapped"] == 1 and report["summary"]["labels_differ"] == 0


def test_max_packets_cuts_both_sides():
    """Frames 1-5 of http_ethernet.pcap: the DNS pair (75/91) and SYN, SYN-ACK, ACK (62 + 54 / 62)."""
    code, report = as_json(str(SAMPLES / "http_ethernet.pcap"), "--max-packets", "5", "--all")
    assert code == 0
    assert report["packets"] == 5 and report["cut_at_max_packets"] is True
    rows = {r["proto"]: r for r in report["rows"]}
    assert rows["tcp"]["wireshark"] == rows["tcp"]["nvpcap"] == {"pkts": [2, 1], "bytes": [116, 62]}
    assert rows["udp"]["wireshark"] == {"pkts": [1, 1], "bytes": [75, 91]}


def test_not_a_capture_is_a_usage_error(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a capture\n" * 10)
    result = invoke(str(bad))
    assert result.exit_code == 2
    assert "not a capture" in result.stderr


def test_missing_file_is_a_usage_error(tmp_path):
    result = invoke(str(tmp_path / "absent.pcap"))
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_missing_pyshark_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyshark", None)  # import pyshark now raises ImportError
    result = invoke(str(SAMPLES / "http_ethernet.pcap"))
    assert result.exit_code == 2
    assert "pip install 'nvpcap[wireshark]'" in result.stderr


def test_missing_tshark_names_the_package(monkeypatch):
    from pyshark.tshark import tshark

    def not_found(*_a, **_k):
        raise tshark.TSharkNotFoundException("not found")

    monkeypatch.setattr(tshark, "get_process_path", not_found)
    result = invoke(str(SAMPLES / "http_ethernet.pcap"))
    assert result.exit_code == 2
    assert "apt-get install tshark" in result.stderr


def test_hostile_strings_are_not_markup(tmp_path, monkeypatch):
    """A label is shown as text: rich markup in it is printed, not interpreted."""
    def hostile(ours):
        conv = _tcp(ours)
        conv.apps.clear()
        conv.apps["[bold red]x[/]"] = 1

    _altered(monkeypatch, hostile)
    result = invoke(str(SAMPLES / "http_ethernet.pcap"))
    assert result.exit_code == 1
    assert "[bold red]x[/]" in result.stdout


def test_decode_as_lets_wireshark_label_grpc_on_another_port():
    """etcd's gRPC on 2379: Wireshark sees only TCP data until told the port speaks HTTP/2."""
    path = str(SAMPLES / "apps" / "etcd_grpc.pcap")
    _, plain = as_json(path)
    assert plain["summary"]["labels_nvpcap_only"] == 3 and plain["summary"]["labels_compared"] == 0
    code, decoded = as_json(path, "--decode-as", "tcp.port==2379,http2", "--all")
    assert code == 0
    assert decoded["summary"]["labels_compared"] == decoded["summary"]["labels_agree"] == 3
    assert {r["wireshark_app"] for r in decoded["rows"]} == {"grpc"}


def test_bad_decode_as_is_a_usage_error():
    result = invoke(str(SAMPLES / "http_ethernet.pcap"), "--decode-as", "2379")
    assert result.exit_code == 2 and "--decode-as" in result.stderr


def test_damaged_capture_compares_what_both_read():
    """The last record is cut short: tshark stops there with an error, nvpcap reports it; the 10 whole frames
    are compared and the damage is named, not hidden."""
    code, report = as_json(str(SAMPLES / "corrupt" / "truncated_last_record.pcap"))
    assert code == 0
    assert report["wireshark_frames"] == 10
    assert any(w.startswith("tshark stopped early") and "cut short" in w for w in report["warnings"])
    assert any("truncated-record" in w for w in report["warnings"])


def test_registered_on_the_cli_group():
    from nvpcap.cli import main

    if "verify" not in main.commands:
        pytest.skip("verify_command is not registered on the CLI group yet")
    result = CliRunner().invoke(main, ["verify", str(SAMPLES / "apps" / "mysql.pcap")])
    assert result.exit_code == 0
    assert "2 flows compared, 2 agree on packets/bytes, 2 of 2 labels agree" in result.stdout
