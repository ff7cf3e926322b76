"""NeuVector's meters (1001, 1002, 1003, 2005) and session threats (2003, 2004, 2016, 2020) on capture time."""
from __future__ import annotations

import json
import subprocess
import sys

import dpkt
import numpy as np
import pytest

import pcapgen as g
from conftest import SHARED, run
from nvpcap.pipeline import AnalyzeConfig
from nvpcap.session.meters import (NEVER, N_RATE_STATE, RS_COUNT, RS_SEEN, MeterConfig, parse_meter_settings,
                                   rate_meter, sdbm_hash, sdbm_many)

T0 = 1_700_000_000.0


def _meter(ticks, span, upper, lower, idle=100, log_interval=30):
    """Run dp's meter_inc over events of one key; returns (fire, log, last_count, state)."""
    ticks = np.asarray(ticks, np.int64)
    n = ticks.shape[0]
    keys = np.zeros(n, np.int64)
    state = np.zeros((1, N_RATE_STATE), np.int64)
    state[0, RS_SEEN] = NEVER
    fire, log, value = np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.zeros(n, np.int64)
    rate_meter(keys, ticks, state, span, upper, lower, idle, log_interval, fire, log, value)
    return fire, log, value, state


def test_rate_meter_burst_fires_and_logs_once():
    # span 5, 800/600: 801 events in tick 0 leave count 801; the 802nd sees count > upper with span 0:
    # last = 801 // (0+1) = 801 >= 800 -> fire (and latch); count *= (5-0)/5, then +1.
    fire, log, value, _ = _meter([0] * 1000, 5, 800, 600)
    assert not fire[:801].any()
    assert fire[801:].all()
    assert value[801] == 801
    assert log.sum() == 1 and log[801]  # one log per 30 s while firing


def test_rate_meter_decay_and_latch():
    # tick 0: 700 events (count 700, never > 800). tick 5: span 5 >= S: last = 700, count = 700 * 4/5 = 560,
    # start = 5 - 4 = 1; 700 >= 600 (lower) but < 800 (upper) and not latched -> no fire; count 561.
    fire, _, value, state = _meter([0] * 700 + [5], 5, 800, 600)
    assert not fire.any() and value[-1] == 700 and state[0, RS_COUNT] == 561
    # latch: 900 events at tick 0 fire from the 802nd (the burst rule keeps count: factor (5-0)/5 = 1).
    # tick 5: span 5 >= 5: last = 900 -> fire; count = int(900 * 4/5) = 720, +1 = 721, start = 1.
    # tick 10: span 9: last = 721 (between lower and upper, latched) -> fire; count = int(721 * 4/9) = 320,
    # +1 = 321, start = 6. tick 20: span 14: last = 321 < 600 -> off.
    fire, _, value, state = _meter([0] * 900 + [5, 10, 20], 5, 800, 600)
    assert fire[801:900].all()
    assert value[900] == 900 and fire[900]
    assert value[901] == 721 and fire[901]
    assert value[902] == 321 == int(np.float32(721) * (np.float32(4) / np.float32(9))) + 1
    assert not fire[902]


def test_rate_meter_lower_threshold_hysteresis():
    # span 1, upper 10, lower 5. tick 0: 12 events: the 12th sees count 11 > 10: last = 11 -> fire, latch.
    # tick 1: span 1 >= 1: last = count (12), count = 0 -> fire. tick 2: last = 1 (< 5) -> off.
    fire, _, value, _ = _meter([0] * 12 + [1, 2], 1, 10, 5)
    assert fire[11] and not fire[10]
    assert value[12] == 12 and fire[12]
    assert value[13] == 1 and not fire[13]
    # a rate between lower and upper keeps a latched meter on: 7 per tick after the burst
    fire, _, value, _ = _meter([0] * 12 + [1] * 7 + [2], 1, 10, 5)
    assert value[-1] == 7 and fire[-1]


def test_rate_meter_idle_release():
    # a meter idle for `idle` seconds is released: the next event starts from zero
    fire, _, value, state = _meter([0] * 12 + [10], 1, 10, 5, idle=3)
    assert fire[11] and not fire[12] and value[12] == 0 and state[0, RS_COUNT] == 1


def test_sdbm_hash():
    h = 0
    for b in b"ab":
        h = (b + (h << 6) + (h << 16) - h) & 0xFFFFFFFF
    assert sdbm_hash(b"ab") == h == (98 + (97 << 6) + (97 << 16) - 97)
    data = np.frombuffer(b"xxab" + bytes(range(256)) * 3, np.uint8)
    out = np.zeros(2, np.uint32)
    sdbm_many(data, np.array([2, 4], np.int64), np.array([2, 768], np.int64), out)
    assert out.tolist() == [h, sdbm_hash(bytes(range(256)) * 3)]


def _syns(n, seconds, src="10.0.0.1", dst="10.0.0.2"):
    return [(T0 + seconds * i / n, g.tcp(src, 1024 + i % 60000, dst, 80, "S", seq=i)) for i in range(n)]


def test_syn_flood_fires(tmp_path):
    res = run(g.write(tmp_path / "f.pcap", _syns(1000, 0.9)))
    alerts = res.alerts(1001)
    assert len(alerts) == 1
    a = alerts[0]
    assert a["rule_name"] == "TCP.SYN.Flood" and a["src_ip"] == "10.0.0.1" and a["dest_ip"] == "10.0.0.2"
    assert a["message"] == "TCP SYN Packet rate 801(pps) exceeds the shreshold 600(pps)"
    assert a["count"] == 1


def test_syn_flood_below_threshold(tmp_path):
    assert not run(g.write(tmp_path / "f.pcap", _syns(500, 0.9))).alerts(1001)


def test_syn_flood_threshold_configurable(tmp_path):
    path = g.write(tmp_path / "f.pcap", _syns(500, 0.9))
    cfg = AnalyzeConfig(meters=parse_meter_settings(["syn_flood.upper=300", "syn_flood.lower=200"]))
    assert run(path, cfg).alerts(1001)
    assert not run(path, AnalyzeConfig(threat_overrides={1001: False}, meters=cfg.meters)).alerts(1001)


def test_syn_flood_counts_new_flows_only(tmp_path):
    # the same SYN retransmitted 1000 times opens one flow: no flood
    pkts = [(T0 + i / 1000, g.tcp("10.0.0.1", 1234, "10.0.0.2", 80, "S", seq=7)) for i in range(1000)]
    assert not run(g.write(tmp_path / "f.pcap", pkts)).alerts(1001)


def test_icmp_flood(tmp_path):
    pkts = [(T0 + i / 300, g.icmp_echo("10.0.0.1", "10.0.0.9", 1, i)) for i in range(150)]
    res = run(g.write(tmp_path / "f.pcap", pkts))
    alerts = res.alerts(1002)
    assert len(alerts) == 1
    assert alerts[0]["message"] == "Packet rate 101(pps) exceeds the shreshold 100(pps)"
    # replies are not counted; 90 requests a second are not a flood
    pkts = [(T0 + i / 90, g.icmp_echo("10.0.0.1", "10.0.0.9", 1, i, reply=i % 2 == 1)) for i in range(400)]
    assert not run(g.write(tmp_path / "g.pcap", pkts)).alerts(1002)


def test_split_handshake(tmp_path):
    c, s = "10.0.0.1", "10.0.0.2"
    pkts = [
        (T0, g.tcp(c, 4000, s, 80, "S", seq=100)),
        (T0 + 0.001, g.tcp(s, 80, c, 4000, "S", seq=500)),
        (T0 + 0.002, g.tcp(c, 4000, s, 80, "SA", seq=100, ack=501)),
        (T0 + 0.003, g.tcp(s, 80, c, 4000, "A", seq=501, ack=101)),
    ]
    alerts = run(g.write(tmp_path / "f.pcap", pkts)).alerts(2004)
    assert len(alerts) == 1 and alerts[0]["src_ip"] == c and alerts[0]["message"] == "TCP split handshake"
    assert not run(g.write(tmp_path / "n.pcap", g.handshake(c, 4000, s, 80, T0))).alerts(2004)


def test_syn_with_data_off_by_default(tmp_path):
    pkts = [(T0, g.tcp("10.0.0.1", 4000, "10.0.0.2", 80, "S", seq=1, data=b"GET / HTTP/1.0\r\n\r\n"))]
    path = g.write(tmp_path / "f.pcap", pkts)
    assert not run(path).alerts(2003)
    alerts = run(path, AnalyzeConfig(threat_overrides={2003: True})).alerts(2003)
    assert len(alerts) == 1 and alerts[0]["rule_name"] == "TCP.SYN.With.Data"


def _echo(src, dst, ident, seq, data, reply):
    echo = dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=data)
    msg = dpkt.icmp.ICMP(type=0 if reply else 8, code=0, data=echo)
    return g.eth(g._ip(src, dst, dpkt.ip.IP_PROTO_ICMP, msg))


def _pings(n, mismatch):
    c, s = "10.0.0.1", "10.0.0.2"
    pkts = []
    for i in range(n):
        pkts.append((T0 + i, _echo(c, s, 7, i, b"request %d" % i, False)))
        pkts.append((T0 + i + 0.01, _echo(s, c, 7, i, (b"secret %d" if mismatch(i) else b"request %d") % i, True)))
    return pkts


def test_icmp_tunneling(tmp_path):
    alerts = run(g.write(tmp_path / "t.pcap", _pings(6, lambda i: i >= 1))).alerts(2020)
    assert len(alerts) == 1 and alerts[0]["count"] == 1 and alerts[0]["src_ip"] == "10.0.0.2"
    assert alerts[0]["message"] == "ICMP tunneling"
    # two mismatches, then a match resets the run: no alert
    assert not run(g.write(tmp_path / "n.pcap", _pings(6, lambda i: i in (0, 1, 3, 4)))).alerts(2020)
    assert not run(g.write(tmp_path / "e.pcap", _pings(6, lambda i: False))).alerts(2020)


def test_session_limit(tmp_path):
    pkts = [(T0 + i / 1000, g.tcp("10.0.0.1", 1024 + i, "10.0.0.2", 80, "S", seq=i)) for i in range(60)]
    path = g.write(tmp_path / "f.pcap", pkts)
    assert not run(path).alerts(1003)  # off by default
    cfg = AnalyzeConfig(threat_overrides={1003: True}, meters=parse_meter_settings(["ip_src_session.limit=50"]))
    alerts = run(path, cfg).alerts(1003)
    assert len(alerts) == 1
    assert alerts[0]["message"] == "Session rate 50 from 10.0.0.1 exceeds the shreshold 50"
    # flows that ended (idle timeout 20 s for an unanswered SYN) are released
    pkts = [(T0 + 30 * (i // 40) + i / 1000, g.tcp("10.0.0.1", 1024 + i, "10.0.0.2", 80, "S", seq=i))
            for i in range(80)]
    assert not run(g.write(tmp_path / "g.pcap", pkts), cfg).alerts(1003)


def test_parse_meter_settings_errors():
    with pytest.raises(ValueError):
        parse_meter_settings(["syn_flood.nope=3"])
    with pytest.raises(ValueError):
        parse_meter_settings(["bogus.span=3"])
    with pytest.raises(ValueError):
        parse_meter_settings(["syn_flood.span=x"])
    with pytest.raises(ValueError):
        parse_meter_settings(["syn_flood.span=0"])
    assert parse_meter_settings(["icmp_tunnel_mismatches=5"]).icmp_tunnel_mismatches == 5
    assert MeterConfig().syn_flood.upper == 800


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared captures absent")
def test_shared_captures_raise_no_floods():
    names = sorted(p for p in SHARED.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap"))
    for p in names:
        if p.stat().st_size > 50_000_000:
            continue
        res = run(p)
        assert not res.alerts(1001) and not res.alerts(1002), p.name


def test_cli_meter_option(tmp_path):
    path = g.write(tmp_path / "f.pcap", _syns(500, 0.9))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "nvpcap", "analyze", "-q", "--format", "jsonl", "-o", str(out), str(path)]
    subprocess.run(cmd + ["--meter", "syn_flood.upper=300", "--meter", "syn_flood.lower=200"], check=True)
    alerts = [r for r in map(json.loads, out.read_text().splitlines()) if r.get("rule_id") == 1001]
    assert len(alerts) == 1 and alerts[0]["message"].endswith("exceeds the shreshold 200(pps)")
    bad = subprocess.run(cmd + ["--meter", "syn_flood.nope=1"], check=False, capture_output=True, text=True)
    assert bad.returncode == 2 and "syn_flood fields are" in bad.stderr


def _idle_sessions(n, data=False):
    c, s = "10.0.0.1", "10.0.0.2"
    pkts = []
    for i in range(n):
        t, cp = T0 + i * 0.01, 2000 + i
        pkts += [(t, g.tcp(c, cp, s, 80, "S", seq=100)), (t + 0.001, g.tcp(s, 80, c, cp, "SA", seq=500, ack=101)),
                 (t + 0.002, g.tcp(c, cp, s, 80, "A", seq=101, ack=501))]
        if data:
            pkts.append((t + 0.003, g.tcp(c, cp, s, 80, "PA", seq=101, ack=501, data=b"hi")))
    pkts.sort(key=lambda p: p[0])
    return pkts + [(T0 + 45, g.udp("10.0.0.7", 5000, "10.0.0.8", 5001))]  # moves capture time past 30 s


def test_tcp_no_client_data(tmp_path):
    # 15 handshakes, no client data, idle 30 s: all expire within one second. tcp_nodata meter (span 10,
    # 10/10): the 12th expiry sees count 11 > 10 in span 0 -> last = 11 >= 10 -> fires, latched for the rest.
    on = AnalyzeConfig(threat_overrides={2005: True})
    path = g.write(tmp_path / "f.pcap", _idle_sessions(15))
    assert not run(path).alerts(2005)  # off by default
    alerts = run(path, on).alerts(2005)
    assert len(alerts) == 1 and alerts[0]["count"] == 4
    assert alerts[0]["message"] == "Client send no data after open connection for 30s"
    assert not run(g.write(tmp_path / "few.pcap", _idle_sessions(11)), on).alerts(2005)
    assert not run(g.write(tmp_path / "data.pcap", _idle_sessions(15, data=True)), on).alerts(2005)


def _seg(src, sport, dst, dport, flags, seq, ack, win, opts=b""):
    bits = {"S": dpkt.tcp.TH_SYN, "A": dpkt.tcp.TH_ACK, "R": dpkt.tcp.TH_RST}
    f = 0
    for ch in flags:
        f |= bits[ch]
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=f, win=win, opts=opts,
                       off=(20 + len(opts)) // 4)
    return g.eth(g._ip(src, dst, dpkt.ip.IP_PROTO_TCP, seg))


def _small_window(syn_win, later, opts=b"", recover_at=None):
    c, s = "10.0.0.1", "10.0.0.2"
    pkts = [(T0, _seg(c, 5000, s, 80, "S", 100, 0, syn_win, opts)),
            (T0 + 0.01, _seg(s, 80, c, 5000, "SA", 500, 101, 65535)),
            (T0 + 0.02, _seg(c, 5000, s, 80, "A", 101, 501, 0))]  # the client's window collapses to 0
    if recover_at is not None:
        pkts.append((T0 + recover_at, _seg(c, 5000, s, 80, "A", 101, 501, 8192)))
    pkts += [(T0 + t, _seg(c, 5000, s, 80, "A", 101, 501, 0)) for t in later]
    return pkts


def test_tcp_small_window(tmp_path):
    on = AnalyzeConfig(threat_overrides={2016: True})
    path = g.write(tmp_path / "f.pcap", _small_window(65535, [4, 9]))
    assert not run(path).alerts(2016)  # off by default
    alerts = run(path, on).alerts(2016)
    assert len(alerts) == 1 and alerts[0]["src_ip"] == "10.0.0.1"
    assert alerts[0]["message"] == "TCP small-window duration=8s, threshold=8s"
    # the window grows back within 8 s: no alert
    assert not run(g.write(tmp_path / "r.pcap", _small_window(65535, [9], recover_at=5)), on).alerts(2016)
    # still small when the idle timeout releases the session (a later packet elsewhere moves time on)
    idle = _small_window(65535, [2]) + [(T0 + 200, g.udp("10.0.0.7", 5000, "10.0.0.8", 5001))]
    assert run(g.write(tmp_path / "i.pcap", idle), on).alerts(2016)
    # the drop must exceed 4096 in the scaled window: 100 << 7 = 12800 does, a bare 100 does not
    assert not run(g.write(tmp_path / "u.pcap", _small_window(100, [9])), on).alerts(2016)
    wscale7 = b"\x01\x03\x03\x07"  # NOP, window scale 7
    assert run(g.write(tmp_path / "s.pcap", _small_window(100, [9], opts=wscale7)), on).alerts(2016)


def test_meter_keys_keep_their_rows_through_lookups_and_pruning():
    """_Keys (a compiled key map beside the state rows) against a dict model: the same key always reaches the same
    state, new keys get fresh rows, pruning forgets exactly the idle keys and keeps the others' state."""
    from nvpcap.session.meters import _Keys

    rng = np.random.default_rng(5)
    keys = _Keys([0, 0])
    model: dict[tuple[int, int], int] = {}  # key -> the value written into its state row
    for step in range(60):
        a = rng.integers(0, 50, 300).astype(np.uint64)
        b = rng.integers(0, 3, 300).astype(np.uint64) << np.uint64(40)
        rows = keys.rows([a, b])
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
            if (x, y) in model:
                assert keys.state[rows[i], 0] == model[(x, y)]
            else:
                model[(x, y)] = keys.state[rows[i], 0] = step * 1000 + i
        keys.seen[rows] = step
        if step % 10 == 9:
            keys.prune_at = 0
            idle = {k for k in model if keys.seen[keys.rows([np.array([k[0]], np.uint64),
                                                             np.array([k[1]], np.uint64)])[0]] < step - 2}
            keys.prune(step, 3)
            for k in idle:
                del model[k]
            assert len(keys) == len(model)
    assert len(model) > 50


def test_key_map_rows_are_first_appearance_order_and_survive_growth_and_compaction():
    """KeyMap against a dict of tuples: 4-word keys, many more keys than the first index holds (it grows and is
    rebuilt), rows dense in order of first appearance, and compaction keeps the chosen keys' order."""
    from nvpcap.session.keymap import KeyMap

    rng = np.random.default_rng(11)
    km = KeyMap(4)
    model: dict[tuple[int, ...], int] = {}
    for _ in range(20):
        cols = [rng.integers(0, 40, 2000).astype(np.uint64) << np.uint64(s) for s in (0, 13, 29, 63)]
        rows = km.rows(cols)
        for i, key in enumerate(zip(*[c.tolist() for c in cols])):
            assert rows[i] == model.setdefault(key, len(model))
    assert len(km) == len(model) > 10_000
    keep = rng.random(len(km)) < 0.3
    km.compact(keep)
    kept = [key for key, row in sorted(model.items(), key=lambda kv: kv[1]) if keep[row]]
    assert len(km) == len(kept)
    probe = [np.array([key[w] for key in kept], np.uint64) for w in range(4)]
    assert km.rows(probe).tolist() == list(range(len(kept)))  # found, renumbered in their old order
