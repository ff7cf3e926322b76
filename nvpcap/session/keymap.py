"""A map from fixed-width integer keys (a few uint64 words) to dense row numbers, compiled.

The meters look up one key per event (a SYN that opens a flow, an ICMP request, a flow that opens or ends):
hundreds of thousands per capture. A Python dict of tuples costs ~0.3 us an event in building the tuples and
hashing them; this open-addressing table does the whole batch in one compiled call. Rows are handed out in
order of first appearance and stay dense: `compact` keeps the chosen rows in their order.
"""
from __future__ import annotations

import numpy as np

from .._jit import jit
from .kernel import mix64

EMPTY = -1


@jit
def _hash(table, row):
    """Hash of one key: the row of a (rows x width) array of key words."""
    h = np.uint64(0x9E3779B97F4A7C15)
    for w in range(table.shape[1]):
        h = mix64(h ^ table[row, w])
    return h


@jit
def _same(keys, row, batch, i):
    for w in range(keys.shape[1]):
        if keys[row, w] != batch[i, w]:
            return False
    return True


@jit
def lookup_or_add(index, keys, count, batch, out):
    """Row of each key of `batch` (m x width); a key not yet known is appended at row count[0]. The caller
    guarantees room: keys has count[0] + m rows, and the index stays at most half full."""
    mask = index.shape[0] - 1
    for i in range(batch.shape[0]):
        pos = np.int64(_hash(batch, i) & np.uint64(mask))
        while True:
            row = index[pos]
            if row == EMPTY:
                row = count[0]
                count[0] = row + 1
                for w in range(batch.shape[1]):
                    keys[row, w] = batch[i, w]
                index[pos] = row
                break
            if _same(keys, row, batch, i):
                break
            pos = (pos + 1) & mask
        out[i] = row


@jit
def rebuild(index, keys, count):
    """Index the first `count` rows of `keys` afresh (after growth or compaction)."""
    index[:] = EMPTY
    mask = index.shape[0] - 1
    for row in range(count):
        pos = np.int64(_hash(keys, row) & np.uint64(mask))
        while index[pos] != EMPTY:
            pos = (pos + 1) & mask
        index[pos] = row


class KeyMap:
    """Keys of `width` uint64 words -> rows 0..len-1."""

    def __init__(self, width: int):
        self.width = width
        self.keys = np.zeros((0, width), np.uint64)
        self.count = np.zeros(1, np.int64)
        self.index = np.full(64, EMPTY, np.int64)

    def __len__(self) -> int:
        return int(self.count[0])

    def rows(self, key_cols: list[np.ndarray]) -> np.ndarray:
        """The row of each key (keys given as `width` parallel columns); new keys get the next rows."""
        batch = np.empty((key_cols[0].shape[0], self.width), np.uint64)
        for w, col in enumerate(key_cols):
            batch[:, w] = col
        self._room(batch.shape[0])
        out = np.empty(batch.shape[0], np.int64)
        lookup_or_add(self.index, self.keys, self.count, batch, out)
        return out

    def compact(self, keep: np.ndarray) -> None:
        """Keep only the rows where `keep` is True, renumbered in their order."""
        kept = self.keys[: len(self)][keep[: len(self)]]
        self.keys = np.ascontiguousarray(kept)
        self.count[0] = kept.shape[0]
        size = 64
        while size < 2 * (kept.shape[0] + 1):
            size *= 2
        self.index = np.empty(size, np.int64)
        rebuild(self.index, self.keys, len(self))

    def _room(self, m: int) -> None:
        need = len(self) + m
        if need > self.keys.shape[0]:
            grown = np.zeros((max(need, 2 * self.keys.shape[0], 64), self.width), np.uint64)
            grown[: len(self)] = self.keys[: len(self)]
            self.keys = grown
        if 2 * need > self.index.shape[0]:
            size = self.index.shape[0]
            while 2 * need > size:
                size *= 2
            self.index = np.empty(size, np.int64)
            rebuild(self.index, self.keys, len(self))
