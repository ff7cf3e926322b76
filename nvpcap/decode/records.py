"""Compiled walks over pcap records and pcapng blocks: one pass that indexes every packet in a buffer.

Each walk fills preallocated columns (data offset, captured and original length, timestamp, link type) and
stops at the first record it cannot finish, so the caller can read more bytes, or at a block only Python
handles (pcapng section and interface blocks). Nothing here allocates per packet.
"""
from __future__ import annotations

import numpy as np

from .._jit import jit

# walk results
NEED_MORE = 0  # the buffer ends inside a record: read more bytes
CORRUPT = 1  # a record header makes no sense: stop reading this file
PYTHON_BLOCK = 2  # pcapng: a section/interface block for the caller to parse
FULL = 3  # output columns are full: hand over this batch and call again

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_PB = 2
PCAPNG_SPB = 3
PCAPNG_EPB = 6
PACKET_BLOCKS = (PCAPNG_PB, PCAPNG_SPB, PCAPNG_EPB)

# A packet record longer than this is corrupt (libpcap's own ceiling is 256 KiB; allow jumbo/loopback headroom).
MAX_RECORD_LEN = 1 << 20
# Any pcapng block longer than this is corrupt.
MAX_BLOCK_LEN = 16 << 20


@jit
def _u32(buf, off, big):
    if big:
        return (np.uint32(buf[off]) << 24) | (np.uint32(buf[off + 1]) << 16) | (np.uint32(buf[off + 2]) << 8) | np.uint32(buf[off + 3])
    return (np.uint32(buf[off + 3]) << 24) | (np.uint32(buf[off + 2]) << 16) | (np.uint32(buf[off + 1]) << 8) | np.uint32(buf[off])


@jit
def _u16(buf, off, big):
    if big:
        return (np.uint32(buf[off]) << 8) | np.uint32(buf[off + 1])
    return (np.uint32(buf[off + 1]) << 8) | np.uint32(buf[off])


@jit
def walk_pcap(buf, pos, big, nanos, out_off, out_cap, out_wire, out_ts, max_n):
    """Index classic pcap records in buf[pos:]. Returns (n, new_pos, reason)."""
    n = 0
    end = buf.shape[0]
    while True:
        if n >= max_n:
            return n, pos, FULL
        if pos + 16 > end:
            return n, pos, NEED_MORE
        sec = np.int64(_u32(buf, pos, big))
        frac = np.int64(_u32(buf, pos + 4, big))
        incl = np.int64(_u32(buf, pos + 8, big))
        orig = np.int64(_u32(buf, pos + 12, big))
        if incl > MAX_RECORD_LEN:
            return n, pos, CORRUPT
        if pos + 16 + incl > end:
            return n, pos, NEED_MORE
        out_off[n] = pos + 16
        out_cap[n] = incl
        out_wire[n] = orig if orig >= incl else incl
        if nanos:
            out_ts[n] = sec * 1000000000 + frac
        else:
            out_ts[n] = sec * 1000000000 + frac * 1000
        n += 1
        pos += 16 + incl


@jit
def _ts_ns(raw, units, offset_s):
    """pcapng timestamp (in 1/units s since the epoch, plus if_tsoffset seconds) in nanoseconds."""
    sec = raw // units
    frac = raw - sec * units
    if units <= 1000000000:
        ns = frac * (1000000000 // units) if 1000000000 % units == 0 else (frac * 1000000000) // units
    else:
        ns = np.int64(np.float64(frac) * 1e9 / np.float64(units))
    return (sec + offset_s) * 1000000000 + ns


@jit
def walk_pcapng(buf, pos, big, if_link, if_snap, if_units, if_offset, n_if,
                out_off, out_cap, out_wire, out_ts, out_link, out_iface, max_n, last_ts):
    """Index pcapng packet blocks in buf[pos:]. Returns (n, new_pos, reason).

    Packet blocks (EPB, SPB, obsolete PB) are indexed; unknown and informational blocks are skipped;
    section and interface blocks stop the walk (reason PYTHON_BLOCK) with new_pos at that block.
    Simple packet blocks carry no time; they get the previous packet's (last_ts[0] carries it across calls).
    """
    n = 0
    end = buf.shape[0]
    while True:
        if n >= max_n:
            return n, pos, FULL
        if pos + 12 > end:
            return n, pos, NEED_MORE
        btype = _u32(buf, pos, big)
        if btype == PCAPNG_SHB or btype == PCAPNG_IDB:
            return n, pos, PYTHON_BLOCK
        blen = np.int64(_u32(buf, pos + 4, big))
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK_LEN:
            return n, pos, CORRUPT
        if pos + blen > end:
            return n, pos, NEED_MORE
        if _u32(buf, pos + blen - 4, big) != blen:
            return n, pos, CORRUPT
        if btype == PCAPNG_EPB or btype == PCAPNG_PB:
            if blen < 32:
                return n, pos, CORRUPT
            if btype == PCAPNG_EPB:
                iface = np.int64(_u32(buf, pos + 8, big))
            else:
                iface = np.int64(_u16(buf, pos + 8, big))
            raw = (np.int64(_u32(buf, pos + 12, big)) << 32) | np.int64(_u32(buf, pos + 16, big))
            cap = np.int64(_u32(buf, pos + 20, big))
            orig = np.int64(_u32(buf, pos + 24, big))
            if 28 + cap + 4 > blen:
                return n, pos, CORRUPT
            out_off[n] = pos + 28
            out_cap[n] = cap
            out_wire[n] = orig if orig >= cap else cap
            if 0 <= iface < n_if:
                out_link[n] = if_link[iface]
                out_ts[n] = _ts_ns(raw, if_units[iface], if_offset[iface])
            else:
                out_link[n] = -1  # no such interface: reported as an unusable record
                out_ts[n] = _ts_ns(raw, np.int64(1000000), np.int64(0))
            out_iface[n] = iface
            last_ts[0] = out_ts[n]
            n += 1
        elif btype == PCAPNG_SPB:
            if blen < 16:
                return n, pos, CORRUPT
            orig = np.int64(_u32(buf, pos + 8, big))
            cap = orig
            room = blen - 16
            if cap > room:
                cap = room
            if n_if > 0 and if_snap[0] > 0 and cap > if_snap[0]:
                cap = if_snap[0]
            out_off[n] = pos + 12
            out_cap[n] = cap
            out_wire[n] = orig if orig >= cap else cap
            out_link[n] = if_link[0] if n_if > 0 else -1
            out_ts[n] = last_ts[0]
            out_iface[n] = 0
            n += 1
        pos += blen
