"""The project's own constructed captures (samples/make_samples.py): each one's expectations, checked.

The expectations come from how each capture was built (MANIFEST.csv, MALFORMED_FRAMES.csv), and the
generator cross-checks every file with tshark and capinfos.
"""
from __future__ import annotations

import csv
import subprocess

import pytest

from conftest import SAMPLES, run

MANIFEST = {row["file"]: row for row in csv.DictReader(open(SAMPLES / "MANIFEST.csv"))}


def expected(name: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in MANIFEST[name]["expected"].split(";"))


@pytest.mark.parametrize("name", [n for n in MANIFEST if not n.startswith("corrupt/")])
def test_flow_counts_match_manifest(name):
    exp = expected(name)
    res = run(SAMPLES / name)
    assert res.summary.check_accounting()
    assert res.summary.packets == int(MANIFEST[name]["packets"])
    assert len(res.flows) == int(exp["flows"])
    by_proto = res.flows["proto"].value_counts().to_dict()
    assert by_proto.get("tcp", 0) == int(exp["tcp_flows"])
    assert by_proto.get("udp", 0) == int(exp["udp_flows"])
    assert by_proto.get("icmp", 0) + by_proto.get("icmpv6", 0) == int(exp["icmp_flows"])


def test_malformed_frames_have_their_reasons():
    rows = list(csv.DictReader(open(SAMPLES / "MALFORMED_FRAMES.csv")))
    res = run(SAMPLES / "malformed.pcap")
    reasons = {a["frame"]: a["anomaly"]["event"] for a in res.anomalies()}
    for row in rows:
        frame, reason = int(row["frame"]), row["reason"]
        if reason in ("decoded", "non-ip"):
            assert frame not in reasons
        else:
            assert reasons.get(frame) == reason, f"frame {frame}"
    assert res.summary.outcomes["non-ip"] == 1
    assert res.summary.outcomes["decoded"] == 1
    # every malformed IP packet raises NeuVector's Invalid.Packet.Format, aggregated per endpoint pair
    alerts = res.alerts(2001)
    assert alerts and sum(a["count"] for a in alerts) == 16  # 17 malformed minus the 10-byte frame (no IP)


def test_compressed_inputs_equal_plain():
    plain = run(SAMPLES / "http_ethernet.pcap").flows
    for name in ("compressed/http_ethernet.pcap.gz", "compressed/http_ethernet.pcap.zst", "compressed/http_ethernet.bin"):
        res = run(SAMPLES / name)
        assert res.summary.compression in ("gzip", "zstd")
        assert res.flows["community_id"].tolist() == plain["community_id"].tolist()
        assert res.flows["bytes_toserver"].tolist() == plain["bytes_toserver"].tolist()


def test_nanosecond_big_endian_timestamps():
    exp = expected("nanosecond_bigendian.pcap")
    res = run(SAMPLES / "nanosecond_bigendian.pcap")
    assert res.summary.first_ts == pytest.approx(float(exp["first_ts"]), abs=1e-9)
    assert res.summary.last_ts == pytest.approx(float(exp["last_ts"]), abs=1e-9)
    first = res.flows.sort_values("ts").iloc[0]
    assert first["timestamp"] == "2023-11-14T22:13:20.123456+0000"


def test_pcapng_sections_interfaces_and_time_resolutions(tshark):
    exp = expected("multi_interface.pcapng")
    res = run(SAMPLES / "multi_interface.pcapng")
    assert res.summary.sections == 2
    assert res.summary.linktypes == [1, 101]
    # timestamps per interface (if_tsresol 6 and 9, if_tsoffset, binary 2^-3) agree with Wireshark's
    out = subprocess.run([tshark, "-r", str(SAMPLES / "multi_interface.pcapng"), "-T", "fields", "-e",
                          "frame.time_epoch"], capture_output=True, text=True, check=True).stdout.split()
    theirs = sorted(float(x) for x in out if float(x) > 0)
    assert min(theirs) == pytest.approx(float(exp["first_ts"]), abs=1e-6)
    flows = res.flows
    assert flows["ts"].min() == pytest.approx(float(exp["first_ts"]), abs=1e-6)
    assert (flows["ts"] + flows["duration"]).max() == pytest.approx(float(exp["last_ts"]), abs=1e-6)


def test_vlan_and_qinq_ids_are_recorded():
    flows = run(SAMPLES / "vlan_qinq.pcap").flows
    vlans = sorted(tuple(v) for v in flows["vlan"])
    assert vlans == [(100,), (200, 300)]


def test_tunnels_give_inner_flows():
    flows = run(SAMPLES / "tunnels.pcap").flows
    assert sorted(flows["src_ip"]) == ["172.16.1.1", "172.16.2.1", "172.16.3.1"]
    assert set(flows["dest_port"]) == {80}
    assert set(flows["conn_state"]) == {"SF"}


def test_link_types_decode_to_complete_sessions():
    for name in ("linux_sll.pcap", "linux_sll2.pcap", "raw_ip.pcap", "loopback_null.pcap", "ipv6_ext.pcap"):
        res = run(SAMPLES / name)
        assert res.summary.outcomes == {"decoded": res.summary.packets}, name
        tcp = res.flows[res.flows["proto"] == "tcp"]
        assert (tcp["conn_state"] == "SF").all(), name
        assert (tcp["history"].str.startswith("ShAD")).all(), name


def test_fragments_reassembly_outcomes_and_threats():
    exp = expected("fragments.pcap")
    res = run(SAMPLES / "fragments.pcap")
    o = res.summary.outcomes
    assert res.summary.reassembled_datagrams == int(exp["reassembled"])
    assert o["fragment-overlap"] == int(exp["overlap"])
    # the incomplete datagram (d) and the first half of the teardrop pair (e) never complete
    assert o["fragment-incomplete"] == 2
    assert o["fragment-reassembled"] == 39 - 3
    assert [a["rule_name"] for a in res.alerts(2002)] == ["IP.Fragment.Teardrop"]
    pod = res.alerts(2006)
    assert len(pod) == 1 and pod[0]["src_ip"] == "10.1.0.9"
    icmp = res.flows[res.flows["proto"] == "icmp"].iloc[0]
    assert icmp["pkts_toserver"] == 1  # one datagram ...
    assert icmp["bytes_toserver"] > 40000  # ... carrying the wire bytes of all 28 fragments


def test_snaplen_truncation_is_visible():
    exp = expected("truncated_snaplen.pcap")
    res = run(SAMPLES / "truncated_snaplen.pcap")
    flow = res.flows.iloc[0]
    assert flow["truncated_pkts"] == int(exp["capture_truncated"])
    # the cut payload was acknowledged but never captured: Zeek calls that a content gap
    assert flow["missed_bytes"] > 0
    assert res.summary.outcomes == {"decoded": 9}


@pytest.mark.parametrize("name,kind,readable", [
    ("corrupt/truncated_last_record.pcap", "truncated-record", 10),
    ("corrupt/bad_magic.pcap", "bad-magic", 0),
    ("corrupt/empty.pcap", "empty-file", 0),
    ("corrupt/huge_record_len.pcap", "corrupt-record", 2),
    ("corrupt/corrupt_block.pcapng", "corrupt-block", 0),
])
def test_corrupt_files_are_reported_with_offsets(name, kind, readable):
    res = run(SAMPLES / name)
    assert [i.kind for i in res.summary.issues] == [kind]
    decoded = res.summary.outcomes.get("decoded", 0)
    assert decoded == readable
    assert res.summary.check_accounting()
    assert res.anomalies(kind), "the problem is also an anomaly record"
