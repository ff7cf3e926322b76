"""NeuVector dp's meters and session threats, on capture time (dpi_meter.c, dpi_session.c).

One `Meters.step()` call per batch, after the flow table. Packets are selected column-wise with numpy; the
meters' sequential rate algorithm runs in a jit kernel over the selected events only (SYNs that open a flow,
ICMP echo requests), keyed per meter with a compiled map of the keys seen (one entry per key, not per packet).

* 1001 TCP.SYN.Flood: rate meter keyed (destination IP, source IP) over every SYN without ACK (and without
  payload) that opens a flow. dp does not log or drop in tap mode (so never for `dp -p`); nvpcap reports it.
* 1002 ICMP.Flood: rate meter keyed by destination IP over ICMP echo requests (dp's client-direction ICMP;
  dp keys by the endpoint's MAC, one dummy endpoint in pcap mode).
* 1003 Source.IP.Session.Limit (off by default): concurrent flows per (server IP, client IP).
* 2003 TCP.SYN.With.Data (off by default): a SYN with payload.
* 2004 TCP.Split.Handshake: dp's handshake states (tcp_update_state) replayed per flow.
* 2005 TCP.No.Client.Data (off by default): handshaken flows that the flow table ended after 30 s idle without
  client payload feed the tcp_nodata rate meter (per server IP) at their expiry time.
* 2016 TCP.Small.Window (off by default): the client's scaled window drops by more than 4096 to below 16
  while little data has flowed, and stays small for 8 s.
* 2020 ICMP.Tunneling: per ICMP echo flow, sdbm hash of the request payload against the reply with the same
  sequence number; the third mismatch in a row is reported once.

Rate algorithm (`meter_inc`, per event, S = span, counts are uint32, the factors float):
  span = now - start; if span >= S: last = count; count *= (S-1)/span; start = now - (S-1)
  elif count > upper: last = count / (span+1); count *= (S-span)/S
  count += 1; last < lower -> off; last >= upper -> fire and latch on; latched on -> fire.
A meter idle for `idle` seconds is released (a later event starts a fresh one). While firing, dp logs at most
once per `log_interval` seconds with the count since its last log.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .._jit import jit
from ..records import addresses
from . import kernel as k
from .keymap import KeyMap

NS = 1_000_000_000
NEVER = -(1 << 40)


@dataclass
class RateMeter:
    span: int  # seconds
    upper: int
    lower: int
    idle: int  # seconds without events before the meter is released
    log_interval: int = 30


@dataclass
class CountMeter:
    limit: int
    idle: int = 3
    log_interval: int = 30


@dataclass
class MeterConfig:
    """Thresholds of NeuVector's meters (dpi_meter.c:meter_info[]); `analyze --meter NAME.FIELD=VALUE`."""

    syn_flood: RateMeter = field(default_factory=lambda: RateMeter(span=5, upper=800, lower=600, idle=8))
    icmp_flood: RateMeter = field(default_factory=lambda: RateMeter(span=1, upper=100, lower=100, idle=3))
    ip_src_session: CountMeter = field(default_factory=lambda: CountMeter(limit=2000))
    tcp_nodata: RateMeter = field(default_factory=lambda: RateMeter(span=10, upper=10, lower=10, idle=10,
                                                                    log_interval=0))
    icmp_tunnel_mismatches: int = 3  # consecutive request/reply payload mismatches (dpi_session.c)


def parse_meter_settings(items: tuple[str, ...] | list[str], config: MeterConfig | None = None) -> MeterConfig:
    """`NAME.FIELD=VALUE` (e.g. syn_flood.upper=2000, icmp_tunnel_mismatches=5) -> a MeterConfig."""
    config = config or MeterConfig()
    for item in items:
        key, sep, value = item.partition("=")
        name, _, fld = key.strip().partition(".")
        try:
            number = int(value.strip())
        except ValueError:
            number = -1
        if not sep or number < 0:
            raise ValueError(f"--meter {item!r}: expected NAME.FIELD=INTEGER")
        if not hasattr(config, name):
            raise ValueError(f"--meter {item!r}: no meter {name!r} (one of "
                             f"{', '.join(f.name for f in fields(MeterConfig))})")
        target = getattr(config, name)
        if isinstance(target, int):
            if fld:
                raise ValueError(f"--meter {item!r}: {name} has no fields")
            setattr(config, name, number)
            continue
        names = [f.name for f in fields(target)]
        if fld not in names:
            raise ValueError(f"--meter {item!r}: {name} fields are {', '.join(names)}")
        if fld == "span" and number < 1:
            raise ValueError(f"--meter {item!r}: a span is at least 1 second")
        setattr(target, fld, number)
    return config


# ---------------------------------------------------------------------------------------------------------
# kernels

RS_COUNT, RS_LAST, RS_LOGC, RS_START, RS_LASTLOG, RS_ON, RS_SEEN = range(7)
N_RATE_STATE = 7


@jit
def rate_meter(keys, ticks, state, span_s, upper, lower, idle, log_interval, fire, log, value):
    """dp's meter_inc over events in order. state: int64 [n_keys, N_RATE_STATE]; a row with RS_SEEN == NEVER
    is a fresh key. Per event: fire (the meter is on), log (dp would send its threat log now), value (the
    rate dp logs: last_count)."""
    for e in range(keys.shape[0]):
        m = keys[e]
        now = ticks[e]
        if state[m, RS_SEEN] == NEVER or now - state[m, RS_SEEN] >= idle:
            state[m, RS_COUNT] = 0
            state[m, RS_LAST] = 0
            state[m, RS_LOGC] = 0
            state[m, RS_START] = now
            state[m, RS_LASTLOG] = NEVER
            state[m, RS_ON] = 0
        state[m, RS_SEEN] = now
        count = state[m, RS_COUNT]
        span = now - state[m, RS_START]
        if span >= span_s:
            state[m, RS_LAST] = count
            f = np.float32(span_s - 1) / np.float32(span)
            count = np.int64(np.float32(count) * f)
            state[m, RS_START] = now - (span_s - 1)
        elif count > upper:
            state[m, RS_LAST] = count // (span + 1)
            f = np.float32(span_s - span) / np.float32(span_s)
            count = np.int64(np.float32(count) * f)
        state[m, RS_COUNT] = count + 1
        last = state[m, RS_LAST]
        on = False
        if last < lower:
            state[m, RS_ON] = 0
        elif last >= upper:
            state[m, RS_ON] = 1
            on = True
        elif state[m, RS_ON] == 1:
            on = True
        fire[e] = on
        log[e] = False
        value[e] = last
        if on:
            state[m, RS_LOGC] += 1
            if now - state[m, RS_LASTLOG] >= log_interval and state[m, RS_LOGC] > 0:
                log[e] = True
                state[m, RS_LASTLOG] = now
                state[m, RS_LOGC] = 0


CS_COUNT, CS_LASTLOG, CS_LOGC = range(3)


@jit
def count_meter(keys, ticks, delta, state, limit, log_interval, fire, log, value):
    """dp's concurrent-count meter: +1 per session created, -1 per session released; fires at >= limit."""
    for e in range(keys.shape[0]):
        m = keys[e]
        now = ticks[e]
        fire[e] = False
        log[e] = False
        if delta[e] < 0:
            if state[m, CS_COUNT] > 0:
                state[m, CS_COUNT] -= 1
            continue
        state[m, CS_COUNT] += 1
        value[e] = state[m, CS_COUNT]
        if state[m, CS_COUNT] >= limit:
            fire[e] = True
            state[m, CS_LOGC] += 1
            if now - state[m, CS_LASTLOG] >= log_interval:
                log[e] = True
                state[m, CS_LASTLOG] = now
                state[m, CS_LOGC] = 0


# dp's TCP wing states, only as far as the handshake needs them
T_NONE, T_SYN_SENT, T_SYN_RECV, T_LISTEN, T_EST, T_CLOSE, T_OTHER = 0, 1, 2, 3, 4, 5, 6


SW_SIZE, SW_DROP, SW_CLIENT_IGNORE, SW_SERVER_IGNORE, SW_DURATION = 16, 4096, 8 * 1024, 16 * 1024, 8
W_SCALE, W_CWIN, W_CLEN, W_SLEN, W_TICK = range(5)
SW_ENTER, SW_FIRE, SW_EXIT = 1, 2, 3


@jit
def _wscale(buf, l4, end):
    """The window-scale option of a TCP header at buf[l4:end] (0 when absent), capped at 14 like dp."""
    o = l4 + 20
    while o < end:
        kind = buf[o]
        if kind == 0:
            break
        if kind == 1:
            o += 1
            continue
        if o + 1 >= end:
            break
        ln = np.int64(buf[o + 1])
        if ln < 2:
            break
        if kind == 3 and ln == 3 and o + 2 < end:
            v = np.int64(buf[o + 2])
            return v if v < 14 else 14
        o += ln
    return 0


@jit
def tcp_track(slot, serial, side, flags, paylen, win, tick, buf, l4off, payoff, hs_serial, hs_state, tw, out,
              out_sw):
    """dp's tcp_update_state for the handshake (dpi_session.c), replayed per flow-table slot: marks the packets
    that raise TCP.Split.Handshake. side 0 is the client (dp's SYN sender). hs_state[slot] = (client, server).
    Also dp's small-window check (check_small_window_attack) on the client's scaled window: out_sw is
    SW_ENTER when a session enters the small-window state, SW_FIRE when it stayed there SW_DURATION seconds
    (seen at its next packet), SW_EXIT when the window grew back first."""
    for j in range(slot.shape[0]):
        out[j] = False
        out_sw[j] = 0
        fl = flags[j]
        syn = (fl & k.SYN_F) != 0
        ackf = (fl & k.ACK_F) != 0
        if syn and paylen[j] > 0:
            continue  # SYN with data: dp ignores the packet for session tracking
        s = slot[j]
        client = side[j] == 0
        fresh = hs_serial[s] != serial[j]
        if fresh:
            for w in range(5):
                tw[s, w] = 0
            tw[s, W_TICK] = -1
        if client:
            if tw[s, W_TICK] >= 0 and tick[j] - tw[s, W_TICK] >= SW_DURATION:
                out_sw[j] = SW_FIRE  # dp's 2-second session tick would have fired by now
                tw[s, W_TICK] = -1
            if syn and not ackf and l4off[j] >= 0:
                tw[s, W_SCALE] = _wscale(buf, l4off[j], payoff[j])
            old = tw[s, W_CWIN]
            tw[s, W_CWIN] = np.int64(win[j]) << tw[s, W_SCALE]
            if not syn and (fl & (k.RST_F | k.FIN_F)) == 0 and not fresh:
                new = tw[s, W_CWIN]
                if tw[s, W_TICK] >= 0:
                    if new >= SW_SIZE:
                        tw[s, W_TICK] = -1
                        out_sw[j] = SW_EXIT
                elif new < SW_SIZE and old > new and old - new > SW_DROP and tw[s, W_CLEN] < SW_CLIENT_IGNORE \
                        and tw[s, W_SLEN] < SW_SERVER_IGNORE:
                    tw[s, W_TICK] = tick[j]
                    out_sw[j] = SW_ENTER
            tw[s, W_CLEN] += paylen[j]
        else:
            tw[s, W_SLEN] += paylen[j]
        if fresh:
            hs_serial[s] = serial[j]
            if syn and not ackf:  # tcp_open_by_syn, then LISTEN + SYN
                hs_state[s, 0] = T_SYN_SENT
                hs_state[s, 1] = T_SYN_RECV
            elif syn:  # tcp_open_by_synack, then SYN_SENT + SYN/ACK
                hs_state[s, 0] = T_EST
                hs_state[s, 1] = T_SYN_RECV
            elif (fl & (k.RST_F | k.FIN_F)) != 0:
                hs_serial[s] = -1  # dp creates no session
                tw[s, W_TICK] = -1
            else:  # mid-stream
                hs_state[s, 0] = T_EST
                hs_state[s, 1] = T_EST
            continue
        if (fl & k.RST_F) != 0:
            hs_state[s, 0] = T_CLOSE
            hs_state[s, 1] = T_CLOSE
            continue
        that = hs_state[s, 1] if client else hs_state[s, 0]
        if that == T_LISTEN:
            if syn:
                hs_state[s, 1] = T_SYN_RECV
        elif that == T_SYN_SENT:
            if syn and ackf:
                hs_state[s, 0] = T_EST
            elif syn:
                hs_state[s, 0] = T_SYN_RECV  # 4-way handshake
        elif that == T_SYN_RECV:
            if not syn and ackf and client:
                hs_state[s, 0] = T_EST
                hs_state[s, 1] = T_EST
            elif syn and ackf:  # the client has sent SYN and now sends SYN/ACK
                hs_state[s, 0] = T_EST
                hs_state[s, 1] = T_EST
                out[j] = True
        elif that == T_EST:
            if (fl & k.FIN_F) != 0:
                hs_state[s, 0] = T_OTHER
                hs_state[s, 1] = T_OTHER
            elif syn and not ackf and hs_state[s, 1] == T_SYN_RECV:  # the server sent SYN/ACK, now SYN again
                hs_state[s, 1] = T_EST
                out[j] = True


@jit
def sdbm_many(buf, offs, lens, out):
    """sdbm_hash of buf[offs[i]:offs[i]+lens[i]] for each i (uint32 arithmetic)."""
    for i in range(offs.shape[0]):
        h = np.uint32(0)
        for j in range(offs[i], offs[i] + lens[i]):
            h = np.uint32(buf[j]) + (h << np.uint32(6)) + (h << np.uint32(16)) - h
        out[i] = h


def sdbm_hash(data: bytes) -> int:
    """NeuVector's sdbm_hash (utils/helper.c), 32-bit."""
    h = 0
    for b in data:
        h = (b + (h << 6) + (h << 16) - h) & 0xFFFFFFFF
    return h


# ---------------------------------------------------------------------------------------------------------


class _Keys:
    """Meter keys -> state rows; stale keys (idle past the meter's release) are dropped now and then."""

    def __init__(self, init: list[int]):
        self.index: KeyMap | None = None  # made on the first lookup, when the key width is known
        self.init = np.array(init, np.int64)
        self.width = len(init)
        self.state = np.zeros((0, self.width), np.int64)
        self.seen = np.zeros(0, np.int64)
        self.prune_at = 4096
        self.tick = NEVER  # the latest event time (seconds) fed to this meter

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else 0

    def rows(self, key_cols: list[np.ndarray]) -> np.ndarray:
        """The state row of each event's key (keys given as parallel uint64 columns)."""
        if self.index is None:
            self.index = KeyMap(len(key_cols))
        ids = self.index.rows(key_cols)
        if len(self.index) > self.state.shape[0]:
            grown = np.empty((max(len(self.index), 2 * self.state.shape[0], 64), self.width), np.int64)
            grown[:] = self.init
            grown[: self.state.shape[0]] = self.state
            self.state = grown
            seen = np.full(grown.shape[0], NEVER, np.int64)
            seen[: self.seen.shape[0]] = self.seen
            self.seen = seen
        return ids

    def prune(self, now: int, idle: int, live: np.ndarray | None = None) -> None:
        """Forget keys not used for `idle` seconds (and, for count meters, `live` False)."""
        n = len(self)
        if n < self.prune_at or self.index is None:
            return
        keep = (now - self.seen[:n]) < idle
        if live is not None:
            keep |= live[:n]
        self.index.compact(keep)
        self.state = self.state[:n][keep].copy()
        self.seen = self.seen[:n][keep].copy()
        self.prune_at = max(4096, 2 * len(self))


class Meters:
    """Meter and session-threat state of one capture file."""

    def __init__(self, config: MeterConfig, events, table_cfg: np.ndarray):
        self.config = config
        self.events = events
        self.table_cfg = table_cfg
        self.serial_base = 0
        fresh_rate = [0] * N_RATE_STATE
        fresh_rate[RS_SEEN] = NEVER
        self.syn = _Keys(fresh_rate)
        self.icmp = _Keys(fresh_rate)
        self.nodata = _Keys(fresh_rate)
        self.sess = _Keys([0, NEVER, 0])
        self.hs_serial = np.full(0, -1, np.int64)
        self.hs_state = np.zeros((0, 2), np.int8)
        self.tw = np.zeros((0, 5), np.int64)  # per slot: client window scale, window, client/server bytes, tick
        self.small_window: dict[int, tuple] = {}  # flow serial -> where it entered the small-window state
        self.tunnel: dict[int, list[int]] = {}  # flow serial -> [request hash, request seq, mismatches]

    def step(self, pb, reasm, cols: dict[str, np.ndarray], rows: np.ndarray, slot: np.ndarray, side: np.ndarray,
             serial: np.ndarray, ended: np.ndarray, table) -> None:
        ev = self.events
        proto = cols["proto"][rows]
        flags = cols["tcp_flags"][rows]
        paylen = cols["paylen"][rows]
        tcp = proto == 6
        syn_only = tcp & ((flags & (k.SYN_F | k.ACK_F)) == k.SYN_F)
        # a packet opens a flow when its serial is new: the first row of each serial not seen before
        opens = np.zeros(rows.shape[0], np.bool_)
        new = np.flatnonzero(serial >= self.serial_base)
        if new.shape[0]:
            _, first = np.unique(serial[new], return_index=True)
            opens[new[first]] = True
        self.serial_base = int(table.ctr[k.K_SERIAL])

        if ev.enabled(2003):
            self._syn_data(cols, rows[np.flatnonzero(tcp & ((flags & k.SYN_F) != 0) & (paylen > 0))])
        if ev.enabled(1001):
            sel = np.flatnonzero(syn_only & opens & (paylen == 0))
            if sel.shape[0]:
                self._rate(1001, self.syn, self.config.syn_flood, cols, rows[sel], True)
        icmp_req = ((proto == 1) & (cols["sport"][rows] == 8)) | ((proto == 58) & (cols["sport"][rows] == 128))
        if ev.enabled(1002):
            sel = np.flatnonzero(icmp_req)
            if sel.shape[0]:
                self._rate(1002, self.icmp, self.config.icmp_flood, cols, rows[sel], False)
        if ev.enabled(2004) or ev.enabled(2016):
            self._tcp(pb, cols, rows, slot, side, serial, flags, paylen, tcp, table, ended)
        if ev.enabled(2020):
            echo = np.flatnonzero((proto == 1) & ((cols["sport"][rows] == 8) | (cols["sport"][rows] == 0)))
            if echo.shape[0] or self.tunnel:
                self._tunnel(pb, reasm, cols, rows[echo], serial[echo], ended)
        if ev.enabled(1003):
            self._sessions(cols, rows, side, serial, opens, ended)
        if ev.enabled(2005) and ended.shape[0]:
            self._nodata(ended)

    # -- 1001 / 1002 -------------------------------------------------------------------------------------
    def _rate(self, tid: int, keys: _Keys, m: RateMeter, cols, r: np.ndarray, per_src: bool) -> None:
        key_cols = [cols["dst_hi"][r], cols["dst_lo"][r]]
        if per_src:
            key_cols += [cols["src_hi"][r], cols["src_lo"][r]]
        ids = keys.rows(key_cols)
        ticks = self._monotonic(keys, cols["ts"][r] // NS)
        n = r.shape[0]
        fire = np.zeros(n, np.bool_)
        log = np.zeros(n, np.bool_)
        value = np.zeros(n, np.int64)
        rate_meter(ids, ticks, keys.state, m.span, m.upper, m.lower, m.idle, m.log_interval, fire, log, value)
        np.maximum.at(keys.seen, ids, ticks)
        keys.prune(int(ticks[-1]), m.idle)
        text = "TCP SYN Packet rate %u(pps) exceeds the shreshold %u(pps)" if tid == 1001 else \
            "Packet rate %u(pps) exceeds the shreshold %u(pps)"
        for e in np.flatnonzero(log).tolist():
            i = r[e]
            tcp = tid == 1001
            self.events.threat(tid, int(cols["ts"][i]), int(cols["frame"][i]),
                               (int(cols["src_hi"][i]), int(cols["src_lo"][i])),
                               (int(cols["dst_hi"][i]), int(cols["dst_lo"][i])), int(cols["proto"][i]),
                               int(cols["sport"][i]) if tcp else None, int(cols["dport"][i]) if tcp else None,
                               text % (int(value[e]), m.lower))

    @staticmethod
    def _monotonic(keys: _Keys, ticks: np.ndarray) -> np.ndarray:
        """Capture time never runs backwards for a meter (merged captures can): dp's ticks only grow."""
        ticks = np.maximum.accumulate(np.maximum(ticks, keys.tick))
        keys.tick = int(ticks[-1])
        return ticks

    # -- 2005 ----------------------------------------------------------------------------------------------
    def _nodata(self, ended: np.ndarray) -> None:
        """dp's session_nodata_timeout: a session established by a full handshake that sees no client payload
        and no packet for 30 s (the flow table's tcp_established_no_data timeout, which ended the flow) feeds
        the tcp_nodata rate meter per server; while the meter fires, each such session is reported."""
        seen = ended["hist_seen"].astype(np.int64)
        handshake = ((seen & (1 << k.H_S)) != 0) & ((seen & (1 << (k.H_S + 16))) != 0)  # SYN each way
        est = np.isin(ended["state"][:, 0], (k.ESTABLISHED, k.PARTIAL)) & \
            np.isin(ended["state"][:, 1], (k.ESTABLISHED, k.PARTIAL))
        sel = ended[(ended["reason"] == k.END_TIMEOUT) & (ended["proto"] == 6) & (ended["client_data"] == 0)
                    & handshake & est]
        if sel.shape[0] == 0:
            return
        wait = int(self.table_cfg[k.C_TCP_EST_NODATA])
        at = sel["last_ts"] + wait
        sel, at = sel[np.argsort(at, kind="stable")], np.sort(at, kind="stable")
        m = self.config.tcp_nodata
        ids = self.nodata.rows([sel["s_hi"], sel["s_lo"]])
        ticks = self._monotonic(self.nodata, at // NS)
        n = sel.shape[0]
        fire, log, value = np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.zeros(n, np.int64)
        rate_meter(ids, ticks, self.nodata.state, m.span, m.upper, m.lower, m.idle, m.log_interval, fire, log, value)
        np.maximum.at(self.nodata.seen, ids, ticks)
        self.nodata.prune(int(ticks[-1]), m.idle)
        for e in np.flatnonzero(fire).tolist():
            t = sel[e]
            self.events.threat(2005, int(at[e]), int(t["last_frame"]), (int(t["c_hi"]), int(t["c_lo"])),
                               (int(t["s_hi"]), int(t["s_lo"])), 6, int(t["cport"]), int(t["sport"]),
                               f"Client send no data after open connection for {wait // NS}s", context="session")

    # -- 2003 ----------------------------------------------------------------------------------------------
    def _syn_data(self, cols, r: np.ndarray) -> None:
        for i in r.tolist():
            self.events.threat(2003, int(cols["ts"][i]), int(cols["frame"][i]),
                               (int(cols["src_hi"][i]), int(cols["src_lo"][i])),
                               (int(cols["dst_hi"][i]), int(cols["dst_lo"][i])), 6, int(cols["sport"][i]),
                               int(cols["dport"][i]), f"TCP SYN with {int(cols['paylen'][i])} bytes of data")

    # -- 2004 ----------------------------------------------------------------------------------------------
    def _tcp(self, pb, cols, rows, slot, side, serial, flags, paylen, tcp, table, ended) -> None:
        """2004 split handshake and 2016 small window (dp's TCP tracker, per flow-table slot)."""
        t = np.flatnonzero(tcp)
        cap = table.tab.shape[0]
        if self.hs_serial.shape[0] < cap:
            grown = np.full(cap, -1, np.int64)
            grown[: self.hs_serial.shape[0]] = self.hs_serial
            self.hs_serial = grown
            st2 = np.zeros((cap, 2), np.int8)
            st2[: self.hs_state.shape[0]] = self.hs_state
            self.hs_state = st2
            tw = np.zeros((cap, 5), np.int64)
            tw[: self.tw.shape[0]] = self.tw
            self.tw = tw
        if t.shape[0]:
            r = rows[t]
            n_main = len(pb)
            l4off = np.where(r < n_main, pb.l4_off[np.minimum(r, n_main - 1)], -1).astype(np.int64)
            out = np.zeros(t.shape[0], np.bool_)
            out_sw = np.zeros(t.shape[0], np.int8)
            tcp_track(slot[t], serial[t], side[t].astype(np.int64), flags[t], paylen[t], cols["win"][r],
                      cols["ts"][r] // NS, pb.raw.buf, l4off, cols["payload_off"][r].astype(np.int64),
                      self.hs_serial, self.hs_state, self.tw, out, out_sw)
            for j in np.flatnonzero(out).tolist() if self.events.enabled(2004) else ():
                i = rows[t[j]]
                self.events.threat(2004, int(cols["ts"][i]), int(cols["frame"][i]),
                                   (int(cols["src_hi"][i]), int(cols["src_lo"][i])),
                                   (int(cols["dst_hi"][i]), int(cols["dst_lo"][i])), 6, int(cols["sport"][i]),
                                   int(cols["dport"][i]), "TCP split handshake")
            if self.events.enabled(2016):
                for j in np.flatnonzero(out_sw).tolist():
                    i, code, ser = rows[t[j]], int(out_sw[j]), int(serial[t[j]])
                    if code == SW_ENTER:  # the client sent it: src is the client
                        self.small_window[ser] = (int(cols["ts"][i]), int(cols["frame"][i]),
                                                  (int(cols["src_hi"][i]), int(cols["src_lo"][i])),
                                                  (int(cols["dst_hi"][i]), int(cols["dst_lo"][i])),
                                                  int(cols["sport"][i]), int(cols["dport"][i]))
                        continue
                    entered = self.small_window.pop(ser, None)
                    if code == SW_FIRE and entered is not None:
                        self._small_window(entered)
        if self.small_window and ended.shape[0]:
            # a session still in the small-window state when its idle timeout (>= 15 s) released it
            for ser, reason in zip(ended["serial"].tolist(), ended["reason"].tolist()):
                entered = self.small_window.pop(ser, None)
                if entered is not None and reason == k.END_TIMEOUT:
                    self._small_window(entered)

    def _small_window(self, entered: tuple) -> None:
        ts, frame, src, dst, sport, dport = entered
        self.events.threat(2016, ts + SW_DURATION * NS, frame, src, dst, 6, sport, dport,
                           f"TCP small-window duration={SW_DURATION}s, threshold={SW_DURATION}s", context="session")

    # -- 2020 ----------------------------------------------------------------------------------------------
    def _tunnel(self, pb, reasm, cols, r: np.ndarray, serials: np.ndarray, ended: np.ndarray) -> None:
        n_main = len(pb)
        state = self.tunnel
        limit = self.config.icmp_tunnel_mismatches
        offs, caps = cols["payload_off"][r].astype(np.int64), cols["paycap"][r].astype(np.int64)
        hashes = np.zeros(r.shape[0], np.uint32)
        seqs = np.zeros(r.shape[0], np.int64)
        for part, buf in ((r < n_main, pb.raw.buf), (r >= n_main, reasm.packets.raw.buf if reasm else None)):
            if buf is None or not part.any():
                continue
            data = np.asarray(buf, np.uint8)
            o = offs[part]
            seqs[part] = (data[o - 2].astype(np.int64) << 8) | data[o - 1]
            out = np.zeros(o.shape[0], np.uint32)
            sdbm_many(data, o, caps[part], out)
            hashes[part] = out
        for i, ser, h, seq in zip(r.tolist(), serials.tolist(), hashes.tolist(), seqs.tolist()):
            s = state.get(ser)
            if s is None:
                s = state[ser] = [0, 0, 0]
            if s[2] < 0:
                continue  # reported
            if int(cols["sport"][i]) == 8:
                s[0], s[1] = h, seq
            elif s[1] == seq and s[0] != 0:
                if s[0] == h:
                    s[2] = 0
                else:
                    s[2] += 1
                    if s[2] >= limit:
                        s[2] = -1
                        self.events.threat(2020, int(cols["ts"][i]), int(cols["frame"][i]),
                                           (int(cols["src_hi"][i]), int(cols["src_lo"][i])),
                                           (int(cols["dst_hi"][i]), int(cols["dst_lo"][i])), 1, None, None,
                                           "ICMP tunneling")
                s[0], s[1] = 0, 0
        if ended.shape[0] and state:
            for ser in ended["serial"][ended["proto"] == 1].tolist():
                state.pop(ser, None)

    # -- 1003 ----------------------------------------------------------------------------------------------
    def _sessions(self, cols, rows, side, serial, opens, ended) -> None:
        m = self.config.ip_src_session
        o = np.flatnonzero(opens)
        r = rows[o]
        client_is_src = side[o] == 0
        s_hi = np.where(client_is_src, cols["dst_hi"][r], cols["src_hi"][r])
        s_lo = np.where(client_is_src, cols["dst_lo"][r], cols["src_lo"][r])
        c_hi = np.where(client_is_src, cols["src_hi"][r], cols["dst_hi"][r])
        c_lo = np.where(client_is_src, cols["src_lo"][r], cols["dst_lo"][r])
        inc_t = cols["ts"][r]
        # releases: every flow that ended (each was counted when it opened), at the end of its idle timeout
        dec = ended
        dec_t = np.minimum(dec["last_ts"] + _idle_ns(dec, self.table_cfg), cols["ts"][rows[-1]]) \
            if dec.shape[0] else np.zeros(0, np.int64)
        order_key = np.concatenate([inc_t, dec_t])
        kind = np.concatenate([np.ones(inc_t.shape[0], np.int64), -np.ones(dec_t.shape[0], np.int64)])
        order = np.lexsort((kind, order_key))  # releases before creations at the same instant
        all_cols = [np.concatenate([s_hi, dec["s_hi"]]), np.concatenate([s_lo, dec["s_lo"]]),
                    np.concatenate([c_hi, dec["c_hi"]]), np.concatenate([c_lo, dec["c_lo"]])]
        if order.shape[0] == 0:
            return
        ids = self.sess.rows([c[order] for c in all_cols])
        ticks = order_key[order] // NS
        n = order.shape[0]
        fire = np.zeros(n, np.bool_)
        log = np.zeros(n, np.bool_)
        value = np.zeros(n, np.int64)
        count_meter(ids, ticks, kind[order], self.sess.state, m.limit, m.log_interval, fire, log, value)
        np.maximum.at(self.sess.seen, ids, ticks)
        self.sess.prune(int(ticks[-1]), m.idle, self.sess.state[:, CS_COUNT] > 0)
        for e in np.flatnonzero(log).tolist():
            src = (int(all_cols[2][order[e]]), int(all_cols[3][order[e]]))
            dst = (int(all_cols[0][order[e]]), int(all_cols[1][order[e]]))
            pos = order[e]
            i = r[pos]
            p = int(cols["proto"][i])
            tcpudp = p in (6, 17)
            self.events.threat(1003, int(cols["ts"][i]), int(cols["frame"][i]), src, dst, p,
                               int(cols["sport"][i]) if tcpudp else None, int(cols["dport"][i]) if tcpudp else None,
                               f"Session rate {int(value[e])} from {addresses.text(*src)} exceeds the shreshold "
                               f"{m.limit}")


def _idle_ns(t: np.ndarray, cfg: np.ndarray) -> np.ndarray:
    """The flow table's idle timeout for each ended flow's last phase (kernel._timeout_ns, column-wise)."""
    out = np.full(t.shape[0], cfg[k.C_OTHER], np.int64)
    out[t["proto"] == 17] = cfg[k.C_UDP]
    out[(t["proto"] == 1) | (t["proto"] == 58)] = cfg[k.C_ICMP]
    tcp = t["proto"] == 6
    s0, s1 = t["state"][:, 0], t["state"][:, 1]
    est = np.isin(s0, (k.ESTABLISHED, k.PARTIAL)) & np.isin(s1, (k.ESTABLISHED, k.PARTIAL))
    v = np.where(est, np.where(t["client_data"] > 0, cfg[k.C_TCP_ACTIVE], cfg[k.C_TCP_EST_NODATA]),
                 cfg[k.C_TCP_OPENING])
    v = np.where((s0 == k.CLOSED) | (s1 == k.CLOSED), cfg[k.C_TCP_HALF], v)
    v = np.where((s0 == k.RESET) | (s1 == k.RESET) | ((s0 == k.CLOSED) & (s1 == k.CLOSED)), cfg[k.C_TCP_CLOSING], v)
    out[tcp] = v[tcp]
    return out
