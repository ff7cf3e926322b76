#!/usr/bin/env python3
"""How long `baseline learn` and `baseline check` take on a million flows (issue 5: seconds, not minutes).

Builds N synthetic flow records (a site of 10 groups over 4,000 addresses, 30 server ports, a tenth of the
flows to external addresses, a few new ports and edges in the checked half), writes them as the Parquet that
`nvpcap analyze --format parquet` writes, then times each stage in-process and the whole CLI command.

    python3 bench/baseline_check.py [--flows 1000000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from nvpcap.baseline.check import CheckOptions, check
from nvpcap.baseline.connections import connections
from nvpcap.baseline.groups import load_groups
from nvpcap.baseline.learn import learn
from nvpcap.baseline.observe import Observation, read_records
from nvpcap.records.flows import FLOW_SCHEMA

APPS = ["http", "ssl", "dns", "mysql", "redis", "postgresql", "unknown"]


def synthetic_flows(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hosts = np.array([f"10.{g}.{i // 250}.{i % 250 + 1}" for g in range(10) for i in range(400)], dtype=object)
    external = np.array([f"93.184.{i // 250}.{i % 250 + 1}" for i in range(1000)], dtype=object)
    src = hosts[rng.integers(0, len(hosts), n)]
    dst = np.where(rng.random(n) < 0.1, external[rng.integers(0, len(external), n)],
                   hosts[rng.integers(0, len(hosts), n)])
    ports = np.array([80, 443, 53, 3306, 6379, 5432] + list(range(9000, 9024)))
    port = ports[rng.integers(0, len(ports), n)]
    app = np.array(APPS, dtype=object)[np.minimum(np.searchsorted([80, 443, 53, 3306, 6379, 5432], port), 6)]
    app = np.where(np.isin(port, [80, 443, 53, 3306, 6379, 5432]), app, "unknown")
    proto = np.where(port == 53, "udp", "tcp")
    ts = 1_700_000_000.0 + np.sort(rng.random(n)) * 86_400
    return pd.DataFrame({
        "ts": ts, "duration": rng.random(n), "src_ip": src, "src_port": rng.integers(1024, 65535, n),
        "dest_ip": dst, "dest_port": port, "proto": proto, "app_proto": app,
        "app_confidence": np.where(app == "unknown", "none", "dpi"), "conn_state": "SF",
        "pkts_toserver": rng.integers(1, 20, n), "pkts_toclient": rng.integers(1, 20, n),
        "bytes_toserver": rng.integers(60, 9000, n), "bytes_toclient": rng.integers(60, 9000, n),
        "community_id": [f"1:{i:020d}" for i in range(n)], "pcap_filename": "synthetic.pcap",
        "first_frame": np.arange(n) * 10 + 1, "last_frame": np.arange(n) * 10 + 9,
    })


def timed(label: str, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    print(f"{label:<40} {time.perf_counter() - t:8.2f} s")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nvpcap-bench-"))
    groups_file = work / "groups.yaml"
    groups_file.write_text("groups:\n" + "".join(f"  g{g}: [10.{g}.0.0/16]\n" for g in range(10)))
    groups = load_groups(groups_file)
    flows = timed("generate flows", synthetic_flows, args.flows)
    half = len(flows) // 2
    # the learning half never sees ports 9020-9023 nor external HTTPS: the checked half brings them
    learn_part = flows.iloc[:half]
    learn_part = learn_part[~learn_part["dest_port"].isin([9020, 9021, 9022, 9023])]
    obs = Observation(learn_part.reset_index(drop=True), pd.DataFrame(), {})
    conns = timed(f"connections ({len(learn_part):,} flows)", connections, obs, groups)
    baseline = timed("learn", learn, conns)
    print(f"  {len(baseline.rules)} rules")
    baseline_file = work / "baseline.yaml"
    baseline.save(baseline_file)

    check_obs = Observation(flows, pd.DataFrame(columns=["category"]), {})
    t0 = time.perf_counter()
    conns = timed(f"connections ({len(flows):,} flows)", connections, check_obs, groups)
    result = timed("check (judge, aggregate, graph)", check, conns, check_obs.alerts, baseline, groups, {}, {},
                   CheckOptions())
    print(f"{'in-process check total':<40} {time.perf_counter() - t0:8.2f} s; {result['totals']['violations']} "
          f"violations, {result['totals']['flows_violating']:,} violating flows")

    parquet = work / "flows.parquet"
    pl.from_pandas(flows).cast({c: FLOW_SCHEMA[c] for c in flows.columns}).write_parquet(parquet)
    timed("read Parquet records", read_records, [str(parquet)])
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nvpcap", "baseline", "check", str(parquet), "--baseline",
                           str(baseline_file), "--groups", str(groups_file), "--format", "json", "-o",
                           str(work / "v.json"), "-q", "--no-bundled-rules"], capture_output=True, text=True, check=False)
    print(f"{'nvpcap baseline check (CLI, Parquet)':<40} {time.perf_counter() - t:8.2f} s (exit {proc.returncode})")
    if proc.returncode not in (0, 1):
        print(proc.stderr, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
