"""Memory per flow the application layer reads: a budget that fails when per-flow state grows, and the shared
empty values (one per class, replaced on first use) never leak state from one flow to another."""
from __future__ import annotations

import tracemalloc

import dpkt
import pytest

from nvpcap.protocols.applayer import AppLayer, AppLayerConfig
from nvpcap.protocols.base import FlowContext, Parser
from nvpcap.protocols.registry import PROTOCOLS
from nvpcap.records.events import EventCollector
from nvpcap.session.stream import TcpReassembler

QUERY = bytes(dpkt.dns.DNS(id=7, qd=[dpkt.dns.DNS.Q(name="www.example.com", type=1)]))
ANSWER = bytes(dpkt.dns.DNS(id=7, qr=1, qd=[dpkt.dns.DNS.Q(name="www.example.com", type=1)],
                            an=[dpkt.dns.DNS.RR(name="www.example.com", type=1, rdata=b"\x01\x02\x03\x04", ttl=60)]))
REQUEST = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\n\r\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 18\r\nContent-Type: text/html\r\n\r\n"
            b"<html>hello</html>")
FLOWS = 2000


def _layer(rules: bool) -> AppLayer:
    engine = None
    if rules:
        from nvpcap.rules import RuleEngine, load_bundled
        engine = RuleEngine(load_bundled().rules)
    return AppLayer(PROTOCOLS, EventCollector("x.pcap"), "x.pcap", AppLayerConfig(rules=engine))


def _open_flows(app: AppLayer, kind: str) -> int:
    """FLOWS flows of one kind, each with its first exchange; returns the traced bytes they still hold."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(FLOWS):
        ts = 10**18 + i
        udp = kind == "dns"
        keys = (17 if udp else 6, 0, 0xFFFF0A000000 + i, 0, 0xFFFF0A640001, 40000 + i, 53 if udp else 80, ts)
        if udp:
            app.offer(i, 0, keys, "udp", False, 0, QUERY, 2 * i, ts)
            app.offer(i, 1, keys, "udp", False, 0, ANSWER, 2 * i + 1, ts)
        else:
            app.offer(i, 0, keys, "tcp", False, 1000, REQUEST, 2 * i, ts, (1000, 5000))
            app.offer(i, 1, keys, "tcp", False, 5000, RESPONSE, 2 * i + 1, ts)
    app.rows.clear()  # events are turned into records in blocks: not per-flow state
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(app.flows) == FLOWS  # still open: the state measured is the state of open flows
    return held


# Budgets (bytes per open flow) measured when they were set, with ~25 % headroom: DNS over UDP 0.9 KB without
# rules, 1.2 KB with the bundled packs (each datagram scanned alone: no stream state); HTTP over TCP 1.9 and
# 2.7 KB. Raise them only with a reason.
@pytest.mark.parametrize(("kind", "rules", "budget"), [
    ("dns", False, 1150), ("http", False, 2400), ("dns", True, 1500), ("http", True, 3300),
])
def test_bytes_per_open_flow_stay_within_budget(kind, rules, budget):
    per_flow = _open_flows(_layer(rules), kind) / FLOWS
    assert per_flow < budget, f"{kind}: {per_flow:.0f} bytes per open flow (budget {budget})"


class _Probe(Parser):
    def feed(self, side, data, frame, ts_ns):
        pass


class _Out:
    def __init__(self):
        self.anomalies = []

    def anomaly(self, reason, message, frame, ts_ns):
        self.anomalies.append(reason)


def test_shared_empty_parser_state_is_never_shared():
    ctx = FlowContext("tcp", 40000, 80, False)
    a_out, b_out = _Out(), _Out()
    a, b = _Probe(a_out, ctx), _Probe(b_out, ctx)
    a.lose(0)
    a.anomaly_once("x", "m", 1, 1)
    a.anomaly_once("x", "m", 2, 2)
    assert a.lost[0] and not a.lost[1] and not a.done
    assert not b.lost[0] and not b.lost[1]
    b.anomaly_once("x", "m", 3, 3)
    assert a_out.anomalies == ["x"] and b_out.anomalies == ["x"]
    a.lose(1)
    assert a.done and not b.done


def test_reassemblers_hold_their_own_segments():
    a, b = TcpReassembler(100), TcpReassembler(100)
    assert a.add(110, b"later", 1, 1) == []  # ahead of a gap: held by a only
    assert [c.data for c in b.add(100, b"0123456789", 2, 2)] == [b"0123456789"]
    assert [c.data for c in a.add(100, b"0123456789", 3, 3)] == [b"0123456789", b"later"]
    assert not a.held and not b.held
