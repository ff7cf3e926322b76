"""Python face of the flow table: sizing, configuration, and handing ended flows to the record stage.

Memory is bounded by `max_flows` (active flows) plus one batch of new flows; the table never grows with the
size of the capture. Ended flows leave as a structured numpy array (one row per flow), not as objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from . import kernel as k

NS = 1_000_000_000

# Ports a server is likely to listen on (Zeek's likely_server_ports idea): every port below 1024 except the
# DHCP client ports, plus the registered ports of the services nvpcap identifies.
CLIENT_SIDE_LOW_PORTS = {68, 546}
SERVICE_PORTS = {
    1080, 1194, 1433, 1521, 1645, 1646, 1812, 1813, 1883, 2049, 2181, 2379, 2380, 2888, 3128, 3306, 3389, 3478,
    3544, 4369, 5060, 5061, 5222, 5247, 5269, 5353, 5355, 5432, 5433, 5671, 5672, 5984, 6379, 6443, 6660, 6661,
    6662, 6663, 6664, 6665, 6666, 6667, 6668, 6669, 7000, 7001, 7077, 7199, 8000, 8008, 8080, 8081, 8088, 8091,
    8092, 8300, 8301, 8302, 8443, 8500, 8600, 8888, 9042, 9092, 9160, 9200, 9300, 9443, 11210, 11211, 15672,
    21212, 21211, 25672, 27017, 27018, 27019, 50051, 61613, 61614, 61616,
}


def likely_server_ports(extra: set[int] | None = None, only: set[int] | None = None) -> np.ndarray:
    """Boolean table over all 65536 ports: `only` replaces the default set (empty = Zeek's bare mode)."""
    likely = np.zeros(65536, np.bool_)
    if only is not None:
        for p in only:
            likely[p] = True
        return likely
    likely[:1024] = True
    for p in CLIENT_SIDE_LOW_PORTS:
        likely[p] = False
    likely[0] = False
    for p in SERVICE_PORTS | (extra or set()):
        likely[p] = True
    return likely


@dataclass
class Timeouts:
    """Idle timeouts in seconds of capture time; defaults are NeuVector dp's (dpi_session.c)."""

    tcp_opening: float = 20
    tcp_established_no_data: float = 30
    tcp_active: float = 1200
    tcp_half_closed: float = 90
    tcp_closing: float = 15
    udp: float = 30
    icmp: float = 5
    other: float = 15


@dataclass
class FlowTableConfig:
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_flows: int = 1_000_000
    sweep_interval_s: float = 1.0
    # ports that decide which side is the server when the first packet is not a SYN (None = the default set)
    likely_server_ports: set[int] | None = None


class FlowTable:
    """Flow state for one capture file (or one stream of files)."""

    def __init__(self, config: FlowTableConfig | None = None):
        self.config = config or FlowTableConfig()
        t = self.config.timeouts
        cfg = np.zeros(k.N_CONFIG, np.int64)
        cfg[k.C_TCP_OPENING] = int(t.tcp_opening * NS)
        cfg[k.C_TCP_EST_NODATA] = int(t.tcp_established_no_data * NS)
        cfg[k.C_TCP_ACTIVE] = int(t.tcp_active * NS)
        cfg[k.C_TCP_HALF] = int(t.tcp_half_closed * NS)
        cfg[k.C_TCP_CLOSING] = int(t.tcp_closing * NS)
        cfg[k.C_UDP] = int(t.udp * NS)
        cfg[k.C_ICMP] = int(t.icmp * NS)
        cfg[k.C_OTHER] = int(t.other * NS)
        cfg[k.C_MAX_FLOWS] = max(1, int(self.config.max_flows))
        cfg[k.C_SWEEP] = max(1, int(self.config.sweep_interval_s * NS))
        self.cfg = cfg
        self.likely = likely_server_ports(only=self.config.likely_server_ports)
        self.tab = np.zeros(0, k.FLOW_DTYPE)
        self.index = np.full(1024, k.EMPTY, np.int64)
        self.free = np.zeros(0, np.int64)
        self.ctr = np.zeros(k.N_COUNTERS, np.int64)

    @property
    def evicted(self) -> int:
        return int(self.ctr[k.K_EVICTED])

    @property
    def peak_active(self) -> int:
        return int(self.ctr[k.K_PEAK])

    def _reserve(self, n_new: int) -> None:
        """Make room for `n_new` flows to start: free slots first, then new ones above the high-water mark."""
        need = int(self.ctr[k.K_HW]) + max(0, n_new - int(self.ctr[k.K_NFREE]))
        if need <= self.tab.shape[0]:
            return
        # grow by half, not double: the table is the largest single allocation (~600 B a slot), and while it is
        # copied the old and the new one are both alive
        # (at least 1,024 slots: numpy zeroes a structured array itself, and a first table of 16,384 cost 0.4 ms,
        # more than a small file's whole flow step)
        cap = max(need, self.tab.shape[0] * 3 // 2, 1024)
        tab = np.zeros(cap, k.FLOW_DTYPE)
        tab[: self.tab.shape[0]] = self.tab
        self.tab = tab
        free = np.zeros(cap, np.int64)
        free[: self.free.shape[0]] = self.free
        self.free = free

    def _reserve_index(self, n_new: int) -> None:
        """Keep the key index at most half full (live keys plus tombstones), so probes stay short."""
        live = int(self.ctr[k.K_ACTIVE]) + n_new
        size = self.index.shape[0]
        if (live + int(self.ctr[k.K_TOMBS])) * 2 <= size:
            return
        while live * 4 > size:
            size *= 2
        self.index = np.empty(size, np.int64)
        k.rebuild_index(self.tab, int(self.ctr[k.K_HW]), self.index)
        self.ctr[k.K_TOMBS] = 0

    def step(self, cols: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Feed packets `rows` of the columns, in capture order.

        Returns (slot, side, flow serial) per row and the flows that ended.
        """
        n = rows.shape[0]
        self._reserve(n)
        self._reserve_index(n)
        done = np.empty(n + int(self.ctr[k.K_ACTIVE]) + 1, np.int64)
        self.ctr[k.K_NDONE] = 0
        out_slot = np.empty(n, np.int64)
        out_side = np.empty(n, np.uint8)
        out_serial = np.empty(n, np.int64)
        with np.errstate(over="ignore"):
            k.flow_step(
                self.tab, self.index, self.free, done, self.ctr, self.cfg, self.likely,
                cols["ts"], cols["frame"], cols["wirelen"], cols["iplen"], cols["cut"], cols["proto"],
                cols["ipver"], cols["src_hi"], cols["src_lo"], cols["dst_hi"], cols["dst_lo"], cols["sport"],
                cols["dport"], cols["tcp_flags"], cols["seq"], cols["ack"], cols["win"], cols["paylen"], cols["paycap"],
                cols["icmp_id"], cols["vlan"], cols["vlan2"], rows, out_slot, out_side, out_serial,
            )
        return out_slot, out_side, out_serial, self._harvest(done)

    def flush(self, chunk: int = 4096) -> Iterator[np.ndarray]:
        """End every flow still open (end of input), `chunk` flows at a time to keep memory flat."""
        while int(self.ctr[k.K_ACTIVE]) > 0:
            done = np.empty(chunk, np.int64)
            self.ctr[k.K_NDONE] = 0
            k.flush_some(self.tab, self.index, done, self.ctr, chunk)
            yield self._harvest(done)

    def _harvest(self, done: np.ndarray) -> np.ndarray:
        nd = int(self.ctr[k.K_NDONE])
        slots = done[:nd]
        ended = np.take(self.tab, slots)  # a new array; 10x faster than fancy indexing on this wide dtype
        self.tab["used"][slots] = 0
        nf = int(self.ctr[k.K_NFREE])
        self.free[nf: nf + nd] = slots
        self.ctr[k.K_NFREE] = nf + nd
        return ended
