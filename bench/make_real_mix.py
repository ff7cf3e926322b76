#!/usr/bin/env python3
"""Build a large capture of *real* traffic: the labelled public captures in ../shared/pcaps, repeated.

Synthetic traffic flatters tshark (shallow dissection) and every tool alike; real captures (TLS, DNS, SIP,
RTSP, SQL protocols, fragments, malformed frames) are what users hand nvpcap. Only the Ethernet captures are
used and the result is classic pcap, so ndpiReader (libpcap) reads it too. Each copy is shifted in time by
more than the longest idle timeout, so repeated conversations stay separate flows, and copies are appended
in time order (mergecap -a). Needs capinfos, editcap and mergecap (Wireshark's tools, installed with tshark).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SHARED = BENCH_DIR.parent.parent / "shared" / "pcaps"
SHIFT_S = 4000  # longer than any idle timeout (TCP active: 1200 s)


def ethernet_captures() -> list[str]:
    files = sorted(str(p) for p in SHARED.glob("*.pcap*"))
    out = subprocess.run(["capinfos", "-T", "-E", *files], capture_output=True, text=True, check=True).stdout
    return [line.split("\t")[0] for line in out.splitlines()[1:] if line.split("\t")[-1] == "ether"]


def build(output: Path, copies: int) -> None:
    files = ethernet_captures()
    if not files:
        raise SystemExit(f"no captures under {SHARED}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base.pcap"
        subprocess.run(["mergecap", "-F", "pcap", "-w", str(base), *files], check=True)
        parts = []
        for i in range(copies):
            part = Path(tmp) / f"part{i:05d}.pcap"
            subprocess.run(["editcap", "-t", str(i * SHIFT_S), str(base), str(part)], check=True)
            parts.append(str(part))
        output.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mergecap", "-F", "pcap", "-a", "-w", str(output), *parts], check=True)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, {copies} copies of {len(files)} captures)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=300)
    ap.add_argument("-o", "--output", type=Path, default=BENCH_DIR / "data" / "real_mix.pcap")
    args = ap.parse_args()
    if not all(shutil.which(t) for t in ("capinfos", "mergecap", "editcap")):
        raise SystemExit("mergecap and editcap are needed (apt-get install tshark)")
    build(args.output, args.copies)


if __name__ == "__main__":
    main()
