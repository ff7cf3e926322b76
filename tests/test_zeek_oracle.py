"""conn_state, history, sizes and orientation against Zeek's own test baselines (btest conn.log rows).

Rows are copied from zeek/zeek testing/btest/Baseline (paths in each test); the same traces are in
../shared/pcaps. Zeek runs with `-b` (bare mode: an empty likely_server_ports set unless a script adds to
it) in some of these tests, so those are compared with nvpcap configured the same way.
"""
from __future__ import annotations

import pytest

from conftest import run
from nvpcap.pipeline import AnalyzeConfig
from nvpcap.session.table import FlowTableConfig

CONN_FIELDS = ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
               "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
               "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes"]


def parse(row: str) -> dict[str, str]:
    return dict(zip(CONN_FIELDS, row.split()))


def ours(flow) -> dict[str, str]:
    positive = flow["duration"] > 0
    return {
        "id.orig_h": flow["src_ip"], "id.orig_p": str(flow["src_port"]), "id.resp_h": flow["dest_ip"],
        "id.resp_p": str(flow["dest_port"]), "proto": flow["proto"],
        "duration": f"{flow['duration']:.6f}" if positive else "-",
        "orig_bytes": str(flow["payload_bytes_toserver"]) if positive else "-",
        "resp_bytes": str(flow["payload_bytes_toclient"]) if positive else "-",
        "conn_state": flow["conn_state"], "missed_bytes": str(flow["missed_bytes"]),
        "history": flow["history"] or "-", "orig_pkts": str(flow["pkts_toserver"]),
        "orig_ip_bytes": str(flow["ip_bytes_toserver"]), "resp_pkts": str(flow["pkts_toclient"]),
        "resp_ip_bytes": str(flow["ip_bytes_toclient"]),
    }


def assert_matches(flow, zeek_row: str, with_ts: bool = True):
    z = parse(zeek_row)
    got = ours(flow)
    for key, value in got.items():
        assert value == z[key], f"{key}: nvpcap {value!r}, Zeek {z[key]!r}"
    if with_ts:
        assert f"{flow['ts']:.6f}" == z["ts"]


def test_retransmissions_gaps_and_reset(shared_pcaps):
    # Baseline/core.tcp.rxmit-history/conn-1.log (zeek -C -r tcp/retransmit-fast009.trace, full scripts)
    row = ("1285862902.700271 CHhAvVGS1DHFjwGM9 10.0.88.85 50368 192.168.0.27 80 tcp - 60.991770 474 23783 RSTO "
           "- - 24257 ShADaGdgtR 17 1250 22 28961")
    flows = run(shared_pcaps / "tcp-anomaly__zeek__tcp_retransmit-fast009.pcap").flows
    assert len(flows) == 1
    assert_matches(flows.iloc[0], row)


def test_dhcp_orientation_broadcast_and_states(shared_pcaps):
    # Baseline/scripts.base.protocols.dhcp.dhcp-all-msg-types/conn.log (timestamps masked there)
    rows = [
        "X C 0.0.0.0 68 255.255.255.255 67 udp dhcp 5.099034 1560 0 S0 T T 0 D 6 1728 0 0",
        "X C 128.2.6.97 68 128.2.6.152 67 udp dhcp - - - SHR F F 0 ^d 0 0 1 395",
        "X C 128.2.6.189 68 128.2.6.152 67 udp dhcp - - - SHR F F 0 ^d 0 0 1 395",
        "X C 128.2.6.152 67 255.255.255.255 68 udp dhcp - - - S0 F T 0 D 1 328 0 0",
    ]
    flows = run(shared_pcaps / "dhcp__zeek__dhcp_dhcp.pcap").flows
    assert len(flows) == 4
    by_key = {(f["src_ip"], f["dest_ip"]): f for _, f in flows.iterrows()}
    for row in rows:
        z = parse(row)
        assert_matches(by_key[(z["id.orig_h"], z["id.resp_h"])], row, with_ts=False)


def test_syn_ack_before_syn_flips_roles_in_bare_mode(shared_pcaps):
    # Baseline/core.connection_flipped/out (zeek -b): history Hs^ADadFf, ts of the SYN-ACK, final orientation
    bare = AnalyzeConfig(table=FlowTableConfig(likely_server_ports=set()))
    flows = run(shared_pcaps / "tcp-anomaly__zeek__tcp_handshake-reorder.pcap", bare).flows
    flow = flows.iloc[0]
    assert flow["history"] == "Hs^ADadFf"
    assert f"{flow['ts']:.6f}" == "1362692526.939084"
    assert (flow["src_ip"], flow["src_port"], flow["dest_ip"], flow["dest_port"]) == \
        ("141.142.228.5", 59856, "192.150.187.43", 80)
    # community-id-logging-flipped/conn.log.cut gives this flow's community id
    assert flow["community_id"] == "1:yvyB8h+3dnggTZW0UEITWCst97w="
    assert flow["conn_state"] == "SF"


def test_http_over_vlan_zero(shared_pcaps):
    # The same HTTP connection as Zeek's http/get.trace, tagged VLAN 0; the row is from zeek/zeek#5105
    # (vlan-logging output of Zeek on this connection), not from a btest baseline.
    row = ("1362692526.869344 CKEOCOLbpm3xgKdGe 141.142.228.5 59856 192.150.187.43 80 tcp http 0.211484 136 5007 "
           "SF F F 0 ShADadFf 7 512 7 5379")
    flows = run(shared_pcaps / "vlan__zeek__http-vlan-0.pcap").flows
    assert_matches(flows.iloc[0], row)
    assert flows.iloc[0]["vlan"] == [0]


@pytest.mark.parametrize("trace,expected", [
    # core.connection_status_update/out (zeek -b -C): one ICMP connection, type 8 -> counterpart 0
    ("icmp__zeek__icmp_5-pings.pcap", ("172.16.133.2", 8, "172.217.11.78", 0, "OTH", "")),
    # core.tcp.truncated-header/out (zeek -b): final orientation after the flip
    ("malformed__zeek__tcp_truncated-header.pcap", ("201.186.157.67", 60827, "128.3.26.249", 25, None, None)),
])
def test_orientation(shared_pcaps, trace, expected):
    flow = run(shared_pcaps / trace).flows.iloc[0]
    src, sport, dst, dport, state, history = expected
    assert (flow["src_ip"], flow["src_port"], flow["dest_ip"], flow["dest_port"]) == (src, sport, dst, dport)
    if state is not None:
        assert flow["conn_state"] == state and flow["history"] == history
