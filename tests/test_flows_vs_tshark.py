"""The flow table against Wireshark: per-conversation packets and bytes equal tshark's on every capture.

nvpcap deliberately keeps some frames out of flows (NeuVector's Invalid.Packet.Format packets, fragments that
never became a datagram); it reports each of them as an anomaly with its frame number. Those frames are taken
out of tshark's tally too, and the test checks that tshark also saw them as not part of a complete datagram
or flags them itself.
"""
from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest

from conftest import run, sample_files, shared_files
from oracle_tshark import conversations

PACKET_LEVEL = ("decode", "defrag", "capture")
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}


def _ours(flows) -> dict[tuple, list[int]]:
    out: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for r in flows.itertuples():
        p = PROTO_NUMBERS.get(r.proto, int(r.proto) if str(r.proto).isdigit() else -1)
        ports = p in (6, 17)
        a = (r.src_ip, int(r.src_port) if ports else None)
        b = (r.dest_ip, int(r.dest_port) if ports else None)
        key = (p, *sorted([a, b], key=lambda e: (e[0], e[1] or 0)))
        out[key][0] += int(r.pkts_toserver + r.pkts_toclient)
        out[key][1] += int(r.bytes_toserver + r.bytes_toclient)
    return dict(out)


CAPTURES = [pytest.param(p, id=p.name) for p in shared_files() + sample_files()]


@pytest.mark.parametrize("path", CAPTURES)
def test_conversation_totals_equal_tshark(path, tshark):
    res = run(path)
    assert res.summary.check_accounting()
    # packet-level anomalies only: a protocol parser's anomaly (a bad DHCP option, ...) is about a packet that
    # is still part of its flow
    left_out = {e["frame"] for e in res.anomalies() if e.get("frame") and e["anomaly"]["type"] in PACKET_LEVEL}
    theirs = conversations(str(path), exclude_frames=left_out)
    ours = _ours(res.flows)
    assert ours == theirs


@pytest.mark.parametrize("path", CAPTURES)
def test_packets_read_equal_capinfos(path):
    out = subprocess.run(["capinfos", "-M", "-c", "-T", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("capinfos not available")
    expected = int(out.stdout.strip().splitlines()[-1].split("\t")[-1])
    res = run(path)
    assert res.summary.packets == expected
    assert sum(res.summary.outcomes.values()) == expected
