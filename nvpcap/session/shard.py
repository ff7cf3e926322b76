"""Which worker owns a flow when one capture is split across processes (`-j N` on a large file: executor.py).

Every worker reads the whole file and keeps the whole flow table, so flow serials, flow ids, timeouts and the
meters are those of a serial run; only the owner of a flow reads its payload (identification, parsing, rules)
and writes its flow record, and only worker 0 writes the packet-level events (decode anomalies, fragment and
meter threats). Ownership goes by the unordered pair of addresses, not by 5-tuple: NeuVector's threat alerts are
aggregated per (threat, source, destination, protocol) across flows, and with every flow between two hosts in
one worker they come out as a serial run's. The records of the workers together are then exactly a serial
run's; only their order differs (worker by worker).
"""
from __future__ import annotations

import numpy as np

_MIX = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's multiplier: spreads the XOR of two addresses over 64 bits


def pair_owner(a_hi: np.ndarray, a_lo: np.ndarray, b_hi: np.ndarray, b_lo: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0 .. shards-1) owning each address pair, the same whichever address comes first."""
    with np.errstate(over="ignore"):
        h = (a_hi ^ a_lo ^ b_hi ^ b_lo).astype(np.uint64)
        h = (h ^ (h >> np.uint64(31))) * _MIX
        h = (h ^ (h >> np.uint64(29))) * _MIX
    return ((h >> np.uint64(32)) % np.uint64(shards)).astype(np.int64)
