"""Flow-table behaviour on captures built in the test: timeouts, port reuse, orientation, limits."""
from __future__ import annotations

from conftest import run
from nvpcap.pipeline import AnalyzeConfig
from nvpcap.session.table import FlowTableConfig, Timeouts
from pcapgen import handshake, icmp_echo, tcp, udp, write

C, S = "10.0.0.1", "10.0.0.2"


def test_complete_conversation_is_one_sf_flow(tmp_path):
    flows = run(write(tmp_path / "a.pcap", handshake(C, 40000, S, 80, 1.0))).flows
    assert len(flows) == 1
    f = flows.iloc[0]
    assert (f["src_ip"], f["src_port"], f["dest_ip"], f["dest_port"]) == (C, 40000, S, 80)
    # by hand, per Zeek's rules: S h A D(ata) d(ata) F f; the final ACK repeats A, which is kept once
    assert f["conn_state"] == "SF" and f["history"] == "ShADdFf"
    assert (f["pkts_toserver"], f["pkts_toclient"]) == (5, 3)
    assert (f["payload_bytes_toserver"], f["payload_bytes_toclient"]) == (5, 6)
    assert f["first_frame"] == 1 and f["last_frame"] == 8
    assert f["end_reason"] == "end-of-input"


def test_udp_idle_timeout_is_30_seconds_of_capture_time(tmp_path):
    pkts = [(0.0, udp(C, 5000, S, 53)), (29.0, udp(S, 53, C, 5000)),  # within 30 s of the last packet
            (60.5, udp(C, 5000, S, 53))]  # 31.5 s idle: a new flow
    flows = run(write(tmp_path / "u.pcap", pkts)).flows
    assert len(flows) == 2
    assert flows["end_reason"].tolist() == ["timeout", "end-of-input"]
    assert flows["pkts_toserver"].tolist() == [1, 1] and flows["pkts_toclient"].tolist() == [1, 0]


def test_timeouts_are_configurable(tmp_path):
    pkts = [(0.0, udp(C, 5000, S, 53)), (10.0, udp(C, 5000, S, 53))]
    cfg = AnalyzeConfig(table=FlowTableConfig(timeouts=Timeouts(udp=5)))
    assert len(run(write(tmp_path / "u.pcap", pkts), cfg).flows) == 2
    assert len(run(write(tmp_path / "u.pcap", pkts)).flows) == 1


def test_tcp_opening_times_out_after_20_seconds(tmp_path):
    pkts = [(0.0, tcp(C, 40000, S, 80, "S", seq=1)), (21.0, tcp(C, 40000, S, 80, "S", seq=1))]
    flows = run(write(tmp_path / "t.pcap", pkts)).flows
    assert len(flows) == 2 and flows["conn_state"].tolist() == ["S0", "S0"]


def test_port_reuse_after_close_starts_a_new_flow(tmp_path):
    pkts = handshake(C, 40000, S, 80, 1.0) + handshake(C, 40000, S, 80, 2.0)
    # second connection: a new SYN with a different initial sequence number
    pkts[8] = (2.0, tcp(C, 40000, S, 80, "S", seq=9000))
    pkts[9] = (2.001, tcp(S, 80, C, 40000, "SA", seq=500, ack=9001))
    flows = run(write(tmp_path / "r.pcap", pkts)).flows
    assert len(flows) == 2
    assert flows["end_reason"].tolist() == ["tcp-reuse", "end-of-input"]
    assert flows.iloc[0]["conn_state"] == "SF"


def test_rejected_connection(tmp_path):
    pkts = [(0.0, tcp(C, 40000, S, 81, "S", seq=1)), (0.001, tcp(S, 81, C, 40000, "RA", seq=0, ack=2))]
    f = run(write(tmp_path / "rej.pcap", pkts)).flows.iloc[0]
    assert f["conn_state"] == "REJ" and f["history"] == "Sr"


def test_midstream_flow_takes_the_server_port_side(tmp_path):
    # capture starts after the handshake, and the first packet seen is the server's answer
    pkts = [(0.0, tcp(S, 443, C, 51000, "PA", seq=5000, ack=700, data=b"x" * 10)),
            (0.1, tcp(C, 51000, S, 443, "A", seq=700, ack=5010))]
    f = run(write(tmp_path / "m.pcap", pkts)).flows.iloc[0]
    assert (f["src_ip"], f["src_port"], f["dest_port"]) == (C, 51000, 443)
    assert f["history"].startswith("^")


def test_icmp_echo_pairs_share_a_flow_per_identifier(tmp_path):
    pkts = [(0.0, icmp_echo(C, S, 7, 1)), (0.01, icmp_echo(S, C, 7, 1, reply=True)),
            (1.0, icmp_echo(C, S, 7, 2)), (1.01, icmp_echo(S, C, 7, 2, reply=True)),
            (1.5, icmp_echo(C, S, 8, 1))]
    flows = run(write(tmp_path / "i.pcap", pkts)).flows
    assert sorted(zip(flows["pkts_toserver"], flows["pkts_toclient"])) == [(1, 0), (2, 2)]
    assert set(flows["src_port"]) == {8} and set(flows["dest_port"]) == {0}


def test_flow_limit_ends_least_recent_flows_and_counts_them(tmp_path):
    pkts = [(i * 0.001, udp(C, 10000 + i, S, 53)) for i in range(200)]
    cfg = AnalyzeConfig(table=FlowTableConfig(max_flows=50))
    res = run(write(tmp_path / "many.pcap", pkts), cfg)
    assert len(res.flows) == 200  # nothing is lost: evicted flows are still reported
    assert res.summary.evicted_flows > 0
    assert res.summary.peak_active_flows <= 50
    assert (res.flows["end_reason"] == "evicted").sum() == res.summary.evicted_flows


def test_many_flows_and_index_growth(tmp_path):
    pkts = []
    for i in range(3000):
        pkts += [(i * 0.01, udp(C, 1024 + i, S, 53)), (i * 0.01 + 0.001, udp(S, 53, C, 1024 + i))]
    flows = run(write(tmp_path / "grow.pcap", pkts)).flows
    assert len(flows) == 3000
    assert (flows["conn_state"] == "SF").all()
    assert flows["community_id"].nunique() == 3000


def test_a_reused_flow_slot_does_not_keep_the_previous_flows_history(tmp_path):
    """A TCP flow with a history; after an idle gap a UDP packet's step ends it and frees its slot; the next flow,
    ICMP (no history letters), takes that slot."""
    pkts = handshake("10.0.0.1", 1000, "10.0.0.2", 80, 1.0)
    pkts += [(499.0, udp("10.0.0.1", 5000, "10.0.0.9", 5001))]
    pkts += [(500.0, icmp_echo("10.0.0.1", "10.0.0.3", 7, 1)), (500.1, icmp_echo("10.0.0.3", "10.0.0.1", 7, 1, True))]
    write(tmp_path / "reuse.pcap", pkts)
    flows = run(tmp_path / "reuse.pcap", AnalyzeConfig(batch_packets=1)).flows
    assert list(flows.sort_values("first_frame")["history"]) == ["ShADdFf", "D", ""]  # S h A D d F f by hand; ICMP flows have no history


def test_originator_reset_before_any_answer(tmp_path):
    """Zeek's conn_state() for an originator RST with a silent responder: RSTOS0 when the history shows its SYN
    and no answer (history matching /^?S[^HAFGIQ]*R.*/), else OTH (scripts/base/protocols/conn/main.zeek)."""
    syn_rst = [(0.0, tcp(C, 40000, S, 80, "S", seq=1)), (0.5, tcp(C, 40000, S, 80, "R", seq=2))]
    f = run(write(tmp_path / "sr.pcap", syn_rst)).flows.iloc[0]
    assert (f["history"], f["conn_state"]) == ("SR", "RSTOS0")
    data_rst = [(0.0, tcp(C, 40001, S, 80, "PA", seq=1, ack=1, data=b"x")),
                (0.5, tcp(C, 40001, S, 80, "R", seq=2))]
    f = run(write(tmp_path / "dr.pcap", data_rst)).flows.iloc[0]
    assert f["history"] == "DR" and f["conn_state"] == "OTH"


def test_a_slot_freed_in_a_batch_is_not_reused_in_the_same_batch():
    """pipeline.identify keeps per-slot state for one batch (id_done): that is sound because a flow that ends
    inside a batch gives its slot back only after the batch (FlowTable._harvest), so two flows never share a
    slot within one step. Here a UDP flow times out and a new flow starts in the same batch: another slot; the
    freed slot is taken by the first new flow of the next batch."""
    import numpy as np

    from nvpcap.session.table import FlowTable

    def columns(rows: list[tuple[float, int, int]]) -> dict[str, np.ndarray]:
        n = len(rows)
        cols = {name: np.zeros(n, np.int64) for name in ("frame", "wirelen", "iplen", "seq", "ack", "paylen", "paycap")}
        cols["ts"] = np.array([int(t * 1e9) for t, _, _ in rows], np.int64)
        cols["frame"][:] = np.arange(1, n + 1)
        cols["wirelen"][:] = cols["iplen"][:] = 60
        cols["cut"] = np.zeros(n, np.bool_)
        cols["proto"] = np.full(n, 17, np.uint8)
        cols["ipver"] = np.full(n, 4, np.uint8)
        cols["src_hi"] = np.zeros(n, np.uint64)
        cols["dst_hi"] = np.zeros(n, np.uint64)
        cols["src_lo"] = np.array([0xFFFF0A000001] * n, np.uint64)
        cols["dst_lo"] = np.array([0xFFFF0A000002] * n, np.uint64)
        cols["sport"] = np.array([s for _, s, _ in rows], np.int32)
        cols["dport"] = np.array([d for _, _, d in rows], np.int32)
        cols["tcp_flags"] = np.zeros(n, np.uint16)
        cols["win"] = np.zeros(n, np.int32)
        for name in ("icmp_id", "vlan", "vlan2"):
            cols[name] = np.full(n, -1, np.int32)
        return cols

    table = FlowTable()
    first = columns([(0.0, 5000, 53)])
    slot_a, _, serial_a, ended = table.step(first, np.arange(1))
    assert ended.shape[0] == 0
    # 40 s later (UDP times out after 30 s): the same pair ends on its next packet and restarts, and a new pair
    # starts, all in one batch
    second = columns([(40.0, 5000, 53), (40.1, 5001, 53)])
    slots, _, serials, ended = table.step(second, np.arange(2))
    assert ended["serial"].tolist() == [serial_a[0]] and ended["reason"].tolist() == [1]  # END_TIMEOUT
    assert slot_a[0] not in slots.tolist() and len(set(slots.tolist())) == 2
    assert serials.tolist() == [serial_a[0] + 1, serial_a[0] + 2]
    third = columns([(41.0, 5002, 53)])
    slots, _, _, _ = table.step(third, np.arange(1))
    assert slots.tolist() == [slot_a[0]]  # the slot came back after its batch
