"""The compiled flow-table step: one pass over decoded packets in capture order.

Per packet it finds (or creates) the flow, decides the packet's direction, and updates counters, Zeek's TCP
endpoint state machine, the `history` letters and the sequence-space accounting that gives Zeek-style sizes
and `missed_bytes`. Idle timeouts are NeuVector dp's, measured in capture time. Flows that end (timeout, TCP
port reuse, eviction at the table limit) are listed in `done` for the Python side to turn into records.

The table is a numpy structured array (`FLOW_DTYPE`) so the same code runs compiled (numba) or as Python.
"""
from __future__ import annotations

import numpy as np

from .._jit import jit

# Zeek TCP endpoint states (init-bare.zeek)
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = 0, 1, 2, 3, 4, 5, 6

# end reasons
END_ACTIVE, END_TIMEOUT, END_REUSE, END_EOF, END_EVICTED = 0, 1, 2, 3, 4
END_REASONS = {END_ACTIVE: "active", END_TIMEOUT: "timeout", END_REUSE: "tcp-reuse", END_EOF: "end-of-input",
               END_EVICTED: "evicted"}

# history letters: index -> (orig letter, resp letter); "seen once" bits are per letter and direction
H_S, H_H, H_A, H_D, H_F, H_R, H_T, H_G, H_W, H_Q, H_I = range(11)
_HIST_UP = np.frombuffer(b"SHADFRTGWQI", dtype=np.uint8).copy()
_HIST_LOW = np.frombuffer(b"shadfrtgwqi", dtype=np.uint8).copy()
HIST_MAX = 40
OOO_SLOTS = 2  # out-of-order intervals kept per direction (bounded memory per flow)

FIN_F, SYN_F, RST_F, PSH_F, ACK_F = 0x01, 0x02, 0x04, 0x08, 0x10

# config vector indices (timeouts in ns)
C_TCP_OPENING, C_TCP_EST_NODATA, C_TCP_ACTIVE, C_TCP_HALF, C_TCP_CLOSING, C_UDP, C_ICMP, C_OTHER, \
    C_MAX_FLOWS, C_SWEEP = range(10)
N_CONFIG = 10

# counters vector indices
K_SERIAL, K_HW, K_NFREE, K_NDONE, K_ACTIVE, K_EVICTED, K_NEXT_SWEEP, K_PEAK, K_TOMBS = range(9)
N_COUNTERS = 9

# the key index: open addressing over an int64 array; a cell holds a slot, EMPTY, or TOMB (a deleted slot)
EMPTY = -1
TOMB = -2

FLOW_DTYPE = np.dtype([
    # hot: what every packet reads or writes sits in the first cache lines of its slot (one slot is ~600 bytes;
    # the table does not fit in cache, so every line a packet touches can be a miss)
    ("used", np.uint8), ("reason", np.uint8), ("kproto", np.uint8), ("proto", np.uint8), ("ipver", np.uint8),
    ("client_data", np.uint8), ("state", np.uint8, 2), ("prev_state", np.uint8, 2), ("has_start", np.uint8, 2),
    ("n_ooo", np.uint8, 2),
    ("khash", np.uint64), ("ka_hi", np.uint64), ("ka_lo", np.uint64), ("kb_hi", np.uint64), ("kb_lo", np.uint64),
    ("kpa", np.int32), ("kpb", np.int32),
    ("serial", np.int64), ("last_ts", np.int64), ("end_ts", np.int64), ("last_frame", np.int64),
    ("c_hi", np.uint64), ("c_lo", np.uint64), ("cport", np.int32), ("sport", np.int32), ("icmp_type", np.int32),
    ("hist_seen", np.uint32),
    ("pkts", np.int64, 2), ("bytes", np.int64, 2), ("ip_bytes", np.int64, 2), ("app_bytes", np.int64, 2),
    # TCP (Zeek-style endpoint tracking)
    ("start", np.int64, 2), ("last_rel", np.int64, 2), ("ack_rel", np.int64, 2), ("contig", np.int64, 2),
    ("fin_rel", np.int64, 2),
    ("h_syn", np.uint32, 2), ("h_fin", np.uint32, 2), ("h_rst", np.uint32, 2),  # raw 32-bit sequence numbers
    ("isn", np.int64), ("synack_ack", np.int64), ("truncated", np.int64), ("hist_len", np.int32),
    # cold: read when a flow starts or ends, or on rarer events
    ("ipos", np.int64), ("s_hi", np.uint64), ("s_lo", np.uint64),
    ("icmp_code", np.int32), ("icmp_id", np.int32), ("vlan", np.int32), ("vlan2", np.int32),
    ("first_ts", np.int64), ("first_frame", np.int64),
    ("ooo", np.int64, (2, OOO_SLOTS, 2)), ("missed", np.int64, 2),
    ("cnt", np.int64, (2, 3)), ("thr", np.int64, (2, 3)),  # scaled letters T, G, W
    ("hist", np.uint8, HIST_MAX),
])


@jit
def mix64(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@jit
def _key_hash(a_hi, a_lo, b_hi, b_lo, pa, pb, proto):
    h = mix64(a_hi ^ np.uint64(0x9E3779B97F4A7C15))
    h = mix64(h ^ a_lo)
    h = mix64(h ^ b_hi)
    h = mix64(h ^ b_lo)
    h = mix64(h ^ ((np.uint64(np.int64(pa) & 0xFFFFFFFF) << np.uint64(32)) | np.uint64(np.int64(pb) & 0xFFFFFFFF)))
    return mix64(h ^ np.uint64(proto))


@jit
def _hist_put(r, ch):
    n = r["hist_len"]
    if n < HIST_MAX:
        r["hist"][n] = ch
        r["hist_len"] = n + 1


@jit
def _hist_once(r, letter, side):
    """Zeek's CheckHistory: add the letter the first time it happens in this direction."""
    bit = np.uint32(1) << np.uint32(letter + 16 * side)
    if r["hist_seen"] & bit:
        return True
    r["hist_seen"] = r["hist_seen"] | bit
    _hist_put(r, _HIST_UP[letter] if side == 0 else _HIST_LOW[letter])
    return False


@jit
def _hist_add(r, letter, side):
    _hist_put(r, _HIST_UP[letter] if side == 0 else _HIST_LOW[letter])


@jit
def _hist_scaled(r, letter, which, side):
    """Zeek's ScaledHistoryEntry: the letter on the 1st, 10th, 100th, ... occurrence."""
    r["cnt"][side, which] += 1
    if r["cnt"][side, which] == r["thr"][side, which]:
        _hist_add(r, letter, side)
        r["thr"][side, which] *= 10


@jit
def _unwrap(raw, start, ref):
    """32-bit sequence number `raw`, relative to `start`, as the 64-bit value nearest to `ref`."""
    d = (raw - start - ref) & 0xFFFFFFFF
    if d >= 0x80000000:
        d -= 0x100000000
    return ref + d


@jit
def _rel(r, side, raw):
    """Sequence number `raw` relative to the side's start, unwrapped near the highest seen (64-bit)."""
    return _unwrap(raw, r["start"][side], r["last_rel"][side])


@jit
def _set_state(r, side, new):
    if r["state"][side] != new:
        r["prev_state"][side] = r["state"][side]
        r["state"][side] = new


@jit
def _closed(state):
    return state == CLOSED or state == RESET


@jit
def _clean(r, side):
    s = r["state"][side]
    return s == ESTABLISHED or (s == CLOSED and r["prev_state"][side] == ESTABLISHED)


@jit
def _absorb(r, side):
    """Move `contig` over out-of-order intervals that now touch it; drop intervals below it."""
    changed = True
    while changed:
        changed = False
        k = 0
        while k < r["n_ooo"][side]:
            a = r["ooo"][side, k, 0]
            b = r["ooo"][side, k, 1]
            if a <= r["contig"][side]:
                if b > r["contig"][side]:
                    r["contig"][side] = b
                    changed = True
                last = r["n_ooo"][side] - 1
                r["ooo"][side, k, 0] = r["ooo"][side, last, 0]
                r["ooo"][side, k, 1] = r["ooo"][side, last, 1]
                r["n_ooo"][side] = last
            else:
                k += 1


@jit
def _data(r, side, s, e):
    """Payload [s, e) (relative seq) arrived from `side`: advance the in-order point or remember a hole."""
    if s <= r["contig"][side]:
        if e > r["contig"][side]:
            r["contig"][side] = e
            _absorb(r, side)
        return
    n = r["n_ooo"][side]
    for k in range(n):  # merge with an overlapping or adjacent interval
        a = r["ooo"][side, k, 0]
        b = r["ooo"][side, k, 1]
        if s <= b and e >= a:
            r["ooo"][side, k, 0] = min(a, s)
            r["ooo"][side, k, 1] = max(b, e)
            return
    if n < OOO_SLOTS:
        r["ooo"][side, n, 0] = s
        r["ooo"][side, n, 1] = e
        r["n_ooo"][side] = n + 1


@jit
def _acked(r, side, upto, count_gap):
    """The peer acknowledged `side`'s data up to `upto`: bytes never seen below it are a content gap."""
    if upto <= r["contig"][side]:
        return
    gap = upto - r["contig"][side]
    for k in range(r["n_ooo"][side]):
        a = max(r["ooo"][side, k, 0], r["contig"][side])
        b = min(r["ooo"][side, k, 1], upto)
        if b > a:
            gap -= b - a
    if count_gap and gap > 0:
        r["missed"][side] += gap
        _hist_scaled(r, H_G, 1, side)
    r["contig"][side] = upto
    _absorb(r, side)


@jit
def _init_flow(r, serial, h, ka_hi, ka_lo, kb_hi, kb_lo, kpa, kpb, kproto, ts, frame):
    r["used"] = 1
    r["reason"] = 0
    r["khash"] = h
    r["ka_hi"] = ka_hi
    r["ka_lo"] = ka_lo
    r["kb_hi"] = kb_hi
    r["kb_lo"] = kb_lo
    r["kpa"] = kpa
    r["kpb"] = kpb
    r["kproto"] = kproto
    r["serial"] = serial
    r["first_ts"] = ts
    r["last_ts"] = ts
    r["end_ts"] = ts
    r["first_frame"] = frame
    r["last_frame"] = frame
    r["truncated"] = 0
    r["client_data"] = 0
    r["isn"] = -1
    r["synack_ack"] = -1
    r["hist_len"] = 0
    r["hist_seen"] = 0
    r["hist"][:] = 0  # records read the history up to its first NUL: a reused slot must not show the last flow's
    for side in range(2):
        r["pkts"][side] = 0
        r["bytes"][side] = 0
        r["ip_bytes"][side] = 0
        r["app_bytes"][side] = 0
        r["state"][side] = INACTIVE
        r["prev_state"][side] = INACTIVE
        r["has_start"][side] = 0
        r["start"][side] = 0
        r["last_rel"][side] = 0
        r["ack_rel"][side] = 0
        r["contig"][side] = 1
        r["fin_rel"][side] = -1
        r["n_ooo"][side] = 0
        r["missed"][side] = 0
        r["h_syn"][side] = 0
        r["h_fin"][side] = 0
        r["h_rst"][side] = 0
        for w in range(3):
            r["cnt"][side, w] = 0
            r["thr"][side, w] = 1


@jit
def _timeout_ns(r, cfg):
    """NeuVector dp's idle timeout for the flow's current phase."""
    p = r["proto"]
    if p == 6:
        s0 = r["state"][0]
        s1 = r["state"][1]
        if s0 == RESET or s1 == RESET or (s0 == CLOSED and s1 == CLOSED):
            return cfg[C_TCP_CLOSING]
        if s0 == CLOSED or s1 == CLOSED:
            return cfg[C_TCP_HALF]
        est = (s0 == ESTABLISHED or s0 == PARTIAL) and (s1 == ESTABLISHED or s1 == PARTIAL)
        if est:
            return cfg[C_TCP_ACTIVE] if r["client_data"] else cfg[C_TCP_EST_NODATA]
        return cfg[C_TCP_OPENING]
    if p == 17:
        return cfg[C_UDP]
    if p == 1 or p == 58:
        return cfg[C_ICMP]
    return cfg[C_OTHER]


@jit
def _icmp_request_type(t, v6):
    """Zeek's ICMP counterpart pairs, mapped to the request side; -1 for one-way types."""
    if not v6:
        if t == 8 or t == 0:
            return 8
        if t == 13 or t == 14:
            return 13
        if t == 15 or t == 16:
            return 15
        if t == 17 or t == 18:
            return 17
        if t == 10 or t == 9:
            return 10
        return -1
    if t == 128 or t == 129:
        return 128
    if t == 133 or t == 134:
        return 133
    if t == 135 or t == 136:
        return 135
    if t == 130 or t == 131:
        return 130
    if t == 139 or t == 140:
        return 139
    if t == 144 or t == 145:
        return 144
    return -1


@jit
def _finish(tab, index, slot, reason, done, ctr):
    r = tab[slot]
    r["used"] = 2  # ended: waits in `done` until the Python side has read it
    r["reason"] = reason
    if r["ipos"] >= 0 and index[r["ipos"]] == slot:
        index[r["ipos"]] = TOMB
        ctr[K_TOMBS] += 1
    r["ipos"] = -1
    done[ctr[K_NDONE]] = slot
    ctr[K_NDONE] += 1
    ctr[K_ACTIVE] -= 1


@jit
def _sweep(tab, index, now, cfg, done, ctr, reason_all):
    """End every flow idle longer than its timeout (or all of them when reason_all > 0)."""
    for slot in range(ctr[K_HW]):
        r = tab[slot]
        if r["used"] != 1:
            continue
        if reason_all > 0:
            _finish(tab, index, slot, reason_all, done, ctr)
        elif now - r["last_ts"] > _timeout_ns(r, cfg):
            _finish(tab, index, slot, END_TIMEOUT, done, ctr)


@jit
def _evict_oldest(tab, index, done, ctr, fraction_pct):
    """At the flow limit: end the least recently active flows (a fraction of the table) in one scan."""
    hw = ctr[K_HW]
    lasts = np.empty(ctr[K_ACTIVE], np.int64)
    k = 0
    for slot in range(hw):
        if tab[slot]["used"] == 1:
            lasts[k] = tab[slot]["last_ts"]
            k += 1
    if k == 0:
        return
    lasts = np.sort(lasts[:k])
    cut = lasts[min(k - 1, max(0, (k * fraction_pct) // 100))]
    for slot in range(hw):
        if tab[slot]["used"] == 1 and tab[slot]["last_ts"] <= cut:
            _finish(tab, index, slot, END_EVICTED, done, ctr)
            ctr[K_EVICTED] += 1


@jit
def _new_slot(tab, free, ctr):
    if ctr[K_NFREE] > 0:
        ctr[K_NFREE] -= 1
        return free[ctr[K_NFREE]]
    slot = ctr[K_HW]
    ctr[K_HW] += 1
    return slot


@jit
def flow_step(tab, index, free, done, ctr, cfg, likely,
              ts, frame, wirelen, iplen, cut, proto, ipver, s_hi, s_lo, d_hi, d_lo, sport, dport,
              tflags, seq, ack, win, paylen, paycap, icmp_id, vlan, vlan2, rows,
              out_slot, out_side, out_serial):
    """Process the packets `rows` (indexes into the columns, in capture order).

    Taking row indexes instead of gathered columns saves a copy of every column per batch. The caller
    guarantees tab has room for every packet to start a flow. Outputs are per position in `rows`.
    """
    for j in range(rows.shape[0]):
        i = rows[j]
        now = ts[i]
        if now >= ctr[K_NEXT_SWEEP]:
            if ctr[K_NEXT_SWEEP] > 0:
                _sweep(tab, index, now, cfg, done, ctr, 0)
            ctr[K_NEXT_SWEEP] = now + cfg[C_SWEEP]
        p = proto[i]
        v6 = ipver[i] == 6
        # ---- flow key ----
        directional = False
        if p == 6 or p == 17 or p == 132:
            k1 = sport[i]
            k2 = dport[i]
        elif p == 1 or p == 58:
            req = _icmp_request_type(sport[i], v6)
            if req >= 0:
                k1 = icmp_id[i] if icmp_id[i] >= 0 else 0
                k2 = 256 + req
            else:
                k1 = sport[i]
                k2 = dport[i]
                directional = True
        else:
            k1 = 0
            k2 = 0
        a_is_src = True
        if not directional:
            if s_hi[i] > d_hi[i] or (s_hi[i] == d_hi[i] and s_lo[i] > d_lo[i]):
                a_is_src = False
            elif s_hi[i] == d_hi[i] and s_lo[i] == d_lo[i] and (p == 6 or p == 17 or p == 132) and sport[i] > dport[i]:
                a_is_src = False
        if a_is_src:
            ka_hi, ka_lo, kb_hi, kb_lo = s_hi[i], s_lo[i], d_hi[i], d_lo[i]
            kpa, kpb = k1, k2
        else:
            ka_hi, ka_lo, kb_hi, kb_lo = d_hi[i], d_lo[i], s_hi[i], s_lo[i]
            kpa, kpb = (k2, k1) if (p == 6 or p == 17 or p == 132) else (k1, k2)
        h = _key_hash(ka_hi, ka_lo, kb_hi, kb_lo, kpa, kpb, p)
        slot, ipos = _lookup(tab, index, h, ka_hi, ka_lo, kb_hi, kb_lo, kpa, kpb, p)
        fl = tflags[i]
        syn = (fl & SYN_F) != 0
        ackf = (fl & ACK_F) != 0
        fin = (fl & FIN_F) != 0
        rst = (fl & RST_F) != 0
        # ---- end the old flow on idle timeout or TCP port reuse ----
        if slot >= 0:
            r = tab[slot]
            if now - r["last_ts"] > _timeout_ns(r, cfg):
                _finish(tab, index, slot, END_TIMEOUT, done, ctr)
                slot = -1
            elif p == 6 and syn and not ackf:
                s0 = r["state"][0]
                s1 = r["state"][1]
                closed = s0 == RESET or s1 == RESET or (s0 == CLOSED and s1 == CLOSED)
                if closed and (seq[i] != r["isn"] or r["isn"] < 0):
                    _finish(tab, index, slot, END_REUSE, done, ctr)
                    slot = -1
        # ---- new flow ----
        if slot < 0:
            if ctr[K_ACTIVE] >= cfg[C_MAX_FLOWS]:
                _sweep(tab, index, now, cfg, done, ctr, 0)
                if ctr[K_ACTIVE] >= cfg[C_MAX_FLOWS]:
                    _evict_oldest(tab, index, done, ctr, 10)
                slot, ipos = _lookup(tab, index, h, ka_hi, ka_lo, kb_hi, kb_lo, kpa, kpb, p)
            slot = _new_slot(tab, free, ctr)
            r = tab[slot]
            _init_flow(r, ctr[K_SERIAL], h, ka_hi, ka_lo, kb_hi, kb_lo, kpa, kpb, p, now, frame[i])
            ctr[K_SERIAL] += 1
            if index[ipos] == TOMB:
                ctr[K_TOMBS] -= 1
            index[ipos] = slot
            r["ipos"] = ipos
            ctr[K_ACTIVE] += 1
            if ctr[K_ACTIVE] > ctr[K_PEAK]:
                ctr[K_PEAK] = ctr[K_ACTIVE]
            flip = False
            sp = sport[i]
            dp = dport[i]
            if p == 6:
                if not (syn and not ackf) and likely[sp]:
                    flip = (not syn and sp < dp) if likely[dp] else True
            elif p == 17:
                bcast = (not v6) and d_lo[i] == np.uint64(0xFFFFFFFFFFFF)
                flip = likely[sp] and not likely[dp] and not bcast
            if flip:
                r["c_hi"], r["c_lo"], r["s_hi"], r["s_lo"] = d_hi[i], d_lo[i], s_hi[i], s_lo[i]
                r["cport"], r["sport"] = dp, sp
                _hist_put(r, np.uint8(94))  # '^'
            else:
                r["c_hi"], r["c_lo"], r["s_hi"], r["s_lo"] = s_hi[i], s_lo[i], d_hi[i], d_lo[i]
                r["cport"], r["sport"] = sp, dp
            r["proto"] = p
            r["ipver"] = ipver[i]
            r["icmp_type"] = sport[i] if (p == 1 or p == 58) else -1
            r["icmp_code"] = dport[i] if (p == 1 or p == 58) else -1
            r["icmp_id"] = icmp_id[i]
            r["vlan"] = vlan[i]
            r["vlan2"] = vlan2[i]
        r = tab[slot]
        # ---- direction: side 0 = client (Zeek's originator), 1 = server ----
        if p == 1 or p == 58:
            if s_hi[i] == d_hi[i] and s_lo[i] == d_lo[i]:
                side = 0 if sport[i] == r["icmp_type"] else 1
            else:
                side = 0 if (s_hi[i] == r["c_hi"] and s_lo[i] == r["c_lo"]) else 1
        elif s_hi[i] == r["c_hi"] and s_lo[i] == r["c_lo"] and sport[i] == r["cport"]:
            side = 0
        else:
            side = 1
        peer = 1 - side
        r["pkts"][side] += 1
        r["bytes"][side] += wirelen[i]
        r["ip_bytes"][side] += iplen[i]
        r["last_ts"] = now
        r["last_frame"] = frame[i]
        if p != 6 or not (_closed(r["state"][0]) and _closed(r["state"][1])):
            r["end_ts"] = now  # Zeek: packets after both sides closed do not lengthen the duration
        if cut[i]:
            r["truncated"] += 1
        pl = paylen[i]
        if side == 0 and pl > 0:
            r["client_data"] = 1
        if p == 17:
            r["app_bytes"][side] += pl
            _hist_once(r, H_D, side)
        elif p != 6:
            r["app_bytes"][side] += pl
        else:
            _tcp_packet(r, side, peer, fl, syn, ackf, fin, rst, seq[i], ack[i], win[i], pl, paycap[i])
        out_slot[j] = slot
        out_side[j] = side
        out_serial[j] = r["serial"]


@jit
def _tcp_packet(r, side, peer, fl, syn, ackf, fin, rst, sq, ak, win, pl, cap):
    """Zeek's per-packet TCP processing: history, endpoint init, retransmission, state machine, gaps.

    `pl` is the payload length per the IP header, `cap` the part the capture holds: bytes cut off by the
    snaplen were never seen, so once acknowledged they count as a content gap (missed_bytes), as in Zeek.
    """
    # history (before the state machine, as Zeek does)
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if bits > 1:
        if fin and rst:
            _hist_once(r, H_I, side)
        else:
            _hist_once(r, H_Q, side)
    elif bits == 1:
        if syn:
            letter = H_H if ackf else H_S
            bit = np.uint32(1) << np.uint32(H_S + 16 * side)
            if r["hist_seen"] & bit:
                if sq != r["h_syn"][side]:
                    _hist_add(r, letter, side)
            else:
                r["hist_seen"] = r["hist_seen"] | bit
                _hist_add(r, letter, side)
            r["h_syn"][side] = sq
        if fin:
            endf = (sq + pl) & 0xFFFFFFFF
            if _hist_once(r, H_F, side) and endf != r["h_fin"][side]:
                _hist_add(r, H_F, side)
            r["h_fin"][side] = endf
        if rst:
            if _hist_once(r, H_R, side) and sq != r["h_rst"][side]:
                _hist_add(r, H_R, side)
            r["h_rst"][side] = sq
    else:
        if pl > 0:
            _hist_once(r, H_D, side)
        elif ackf:
            _hist_once(r, H_A, side)
    # endpoint init (Zeek init_endpoint / init_peer)
    if not r["has_start"][side]:
        r["has_start"][side] = 1
        r["start"][side] = sq if syn else (sq - 1) & 0xFFFFFFFF
        r["last_rel"][side] = 0
    if ackf and not rst and not r["has_start"][peer]:
        r["has_start"][peer] = 1
        r["start"][peer] = (ak - 1) & 0xFFFFFFFF
    if syn and not ackf and side == 0 and r["isn"] < 0:
        r["isn"] = sq
    if syn and ackf and r["synack_ack"] < 0:
        r["synack_ack"] = ak
    # zero window
    if win == 0 and not rst and r["state"][peer] != CLOSED and r["state"][side] != RESET:
        _hist_scaled(r, H_W, 2, side)
    # retransmission (Zeek update_last_seq)
    s_rel = _rel(r, side, sq)
    seg = pl + (1 if syn else 0) + (1 if fin else 0)
    if rst:
        seg -= pl
    if r["state"][side] != RESET:
        end_rel = s_rel + seg
        delta = end_rel - r["last_rel"][side]
        if delta <= 0 and pl > 0:
            _hist_scaled(r, H_T, 0, side)
        elif delta > 0:
            r["last_rel"][side] = end_rel
    data_rel = s_rel + (1 if syn else 0)
    if cap > 0 and not rst:
        _data(r, side, data_rel, data_rel + cap)
    if fin and r["fin_rel"][side] < 0:
        r["fin_rel"][side] = data_rel + pl
    # state machine (Zeek TCPSessionAdapter::UpdateStateMachine)
    s = r["state"][side]
    if s == INACTIVE:
        if syn:
            if ackf:
                if side == 0:
                    _set_state(r, side, SYN_ACK_SENT)
                else:
                    if r["state"][peer] == SYN_SENT:
                        _set_state(r, peer, ESTABLISHED)
                    _set_state(r, side, ESTABLISHED)
            else:
                if side == 0:
                    _set_state(r, side, SYN_SENT)
                else:
                    if r["state"][peer] == SYN_ACK_SENT and r["synack_ack"] >= 0 and \
                            ((sq + 1) & 0xFFFFFFFF) == r["synack_ack"]:
                        _flip(r)
                        side, peer = peer, side
                        _set_state(r, side, ESTABLISHED)
                        _set_state(r, peer, ESTABLISHED)
                    else:
                        if r["state"][peer] == SYN_SENT or r["state"][peer] == SYN_ACK_SENT:
                            _set_state(r, peer, ESTABLISHED)
                        _set_state(r, side, ESTABLISHED)
        if fin:
            _set_state(r, side, CLOSED)
        if rst:
            _set_state(r, side, RESET)
        if not syn and not fin and not rst:
            if side == 1 and pl == 0 and r["state"][peer] == SYN_SENT:
                pass
            elif ackf and r["state"][peer] == ESTABLISHED:
                _set_state(r, side, ESTABLISHED)
            else:
                _set_state(r, side, PARTIAL)
    elif s == SYN_SENT or s == SYN_ACK_SENT:
        if fin:
            _set_state(r, side, CLOSED)
        if rst:
            _set_state(r, side, RESET)
    elif s == ESTABLISHED or s == PARTIAL:
        if syn and not ackf and s == PARTIAL and r["state"][peer] == INACTIVE:
            _set_state(r, side, SYN_SENT)
        if fin and not rst:
            _set_state(r, side, CLOSED)
            if r["state"][peer] == RESET and r["prev_state"][peer] == CLOSED:
                _set_state(r, peer, CLOSED)
        if rst:
            _set_state(r, side, RESET)
    elif s == CLOSED:
        if rst and r["state"][peer] != CLOSED:
            _set_state(r, side, RESET)
    # the peer's data acknowledged by this packet (Zeek AckReceived): sizes and content gaps
    if ackf and not rst and r["has_start"][peer]:
        a_rel = _rel_ack(r, peer, ak)
        if r["fin_rel"][peer] >= 0 and a_rel > r["fin_rel"][peer]:
            a_rel = r["fin_rel"][peer]
        if a_rel - r["ack_rel"][peer] < 0x40000000:  # ignore wild acknowledgements (bad or spoofed packets)
            if a_rel > r["ack_rel"][peer]:
                r["ack_rel"][peer] = a_rel
            _acked(r, peer, a_rel, _clean(r, side) and _clean(r, peer))


@jit
def _rel_ack(r, side, raw):
    """An acknowledgement number relative to the side's start, unwrapped near the highest seq or ack seen."""
    ref = r["last_rel"][side] if r["last_rel"][side] > r["ack_rel"][side] else r["ack_rel"][side]
    return _unwrap(raw, r["start"][side], ref)


@jit
def _flip(r):
    """Swap originator and responder (Zeek FlipRoles) and note it in the history with '^'."""
    r["c_hi"], r["s_hi"] = r["s_hi"], r["c_hi"]
    r["c_lo"], r["s_lo"] = r["s_lo"], r["c_lo"]
    r["cport"], r["sport"] = r["sport"], r["cport"]
    _swap2(r["pkts"])
    _swap2(r["bytes"])
    _swap2(r["ip_bytes"])
    _swap2(r["app_bytes"])
    _swap2(r["state"])
    _swap2(r["prev_state"])
    _swap2(r["has_start"])
    _swap2(r["start"])
    _swap2(r["last_rel"])
    _swap2(r["ack_rel"])
    _swap2(r["contig"])
    _swap2(r["fin_rel"])
    _swap2(r["n_ooo"])
    _swap2(r["missed"])
    _swap2(r["h_syn"])
    _swap2(r["h_fin"])
    _swap2(r["h_rst"])
    for k in range(OOO_SLOTS):
        for j in range(2):
            t = r["ooo"][0, k, j]
            r["ooo"][0, k, j] = r["ooo"][1, k, j]
            r["ooo"][1, k, j] = t
    for w in range(3):
        t = r["cnt"][0, w]
        r["cnt"][0, w] = r["cnt"][1, w]
        r["cnt"][1, w] = t
        t = r["thr"][0, w]
        r["thr"][0, w] = r["thr"][1, w]
        r["thr"][1, w] = t
    seen = r["hist_seen"]
    r["hist_seen"] = ((seen & np.uint32(0xFFFF)) << np.uint32(16)) | (seen >> np.uint32(16))
    _hist_put(r, np.uint8(94))


@jit
def _swap2(a):
    t = a[0]
    a[0] = a[1]
    a[1] = t


@jit
def flush_some(tab, index, done, ctr, limit):
    """End up to `limit` active flows (end of input); returns how many are still active."""
    ended = 0
    for slot in range(ctr[K_HW]):
        if ended >= limit:
            break
        if tab[slot]["used"] == 1:
            _finish(tab, index, slot, END_EOF, done, ctr)
            ended += 1
    return ctr[K_ACTIVE]


@jit
def _lookup(tab, index, h, ka_hi, ka_lo, kb_hi, kb_lo, kpa, kpb, p):
    """Find the flow with this key. Returns (slot or -1, index cell of the flow or where to insert it)."""
    mask = index.shape[0] - 1
    pos = np.int64(h & np.uint64(mask))
    free_pos = -1
    while True:
        v = index[pos]
        if v == EMPTY:
            return -1, (free_pos if free_pos >= 0 else pos)
        if v == TOMB:
            if free_pos < 0:
                free_pos = pos
        else:
            c = tab[v]
            if c["khash"] == h and c["ka_hi"] == ka_hi and c["ka_lo"] == ka_lo and c["kb_hi"] == kb_hi \
                    and c["kb_lo"] == kb_lo and c["kpa"] == kpa and c["kpb"] == kpb and c["kproto"] == p:
                return v, pos
        pos = (pos + 1) & mask


@jit
def rebuild_index(tab, hw, index):
    """Re-insert every active flow into a fresh (larger or tombstone-free) index."""
    index[:] = EMPTY
    mask = index.shape[0] - 1
    for slot in range(hw):
        if tab[slot]["used"] != 1:
            continue
        pos = np.int64(tab[slot]["khash"] & np.uint64(mask))
        while index[pos] != EMPTY:
            pos = (pos + 1) & mask
        index[pos] = slot
        tab[slot]["ipos"] = pos
