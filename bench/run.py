#!/usr/bin/env python3
"""Benchmark nvpcap against tshark and ndpiReader on the same capture.

Each tool runs as a subprocess on the same file in the same invocation, and the
tools are interleaved across repeats (A B C A B C ...) so that drift in machine
load or page-cache state hits them all alike.  Wall time is the median over
repeats; peak RSS comes from ``os.wait4`` on that exact child (Linux reports
``ru_maxrss`` in KiB), which needs no external ``time`` binary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_FILE = BENCH_DIR / "data" / "mixed.pcap"
DEFAULT_NVPCAP_CMD = f"{shlex.quote(sys.executable)} -m nvpcap analyze {{file}} --format jsonl -o /tmp/nvpcap-bench.jsonl --quiet"
# nvpcap-rules500: the same nvpcap command with ~500 rules (bench/rules_scan.py: the bundled packs, OWASP CRS at
# paranoia 1 from Debian's modsecurity-crs, and generated ET-style Suricata rules up to 500)
RULES500_ET = BENCH_DIR / "data" / "et-generated.rules"
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
ALL_TOOLS = ("nvpcap", "nvpcap-flows", "nvpcap-rules500", "nvpcap-j2", "tshark", "ndpiReader")
BASELINES = ("tshark", "ndpiReader")


@dataclass
class Tool:
    """A command to benchmark and what became of its runs."""

    name: str
    argv: list[str]
    capture_stdout: bool = False  # only where the output is needed to validate the run
    status: str = "ok"
    note: str = ""
    wall_s: list[float] = field(default_factory=list)
    max_rss_kib: list[int] = field(default_factory=list)

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.wall_s) if self.wall_s else None


@dataclass
class RunResult:
    """Outcome of one measured subprocess run."""

    wall_s: float
    max_rss_kib: int
    returncode: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], capture_stdout: bool) -> RunResult:
    """Run ``argv`` and reap it with ``os.wait4`` to get that child's own rusage.

    Output goes to temporary files rather than pipes so a chatty tool never blocks
    on a full pipe while we wait.  ``ru_maxrss`` is the peak of the largest single
    process in the child's tree, not a sum over processes.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                stdout=out if capture_stdout else subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped; keep Popen consistent
        out.seek(0)
        err.seek(0)
        return RunResult(wall, usage.ru_maxrss, proc.returncode,
                         out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def capture_files(pcap: Path) -> list[Path]:
    """The captures a run reads: the file, or every file under a directory (as nvpcap reads a directory)."""
    if pcap.is_dir():
        return sorted(p for p in pcap.rglob("*") if p.is_file())
    return [pcap]


def per_file(argv: list[str], pcap: Path) -> list[str]:
    """`argv` ("{}" standing for the capture) as one timed command: tshark and ndpiReader read one file per
    process, so a directory is read by a loop, a start-up per file, as it would be by a user."""
    if not pcap.is_dir():
        return [str(pcap) if a == "{}" else a for a in argv]
    script = " ".join(shlex.quote(a) if a != "{}" else '"$f"' for a in argv)
    return ["sh", "-c", f'for f in "$@"; do {script} || exit 1; done', "sh", *map(str, capture_files(pcap))]


def build_tools(names: list[str], pcap: Path, nvpcap_cmd: str) -> list[Tool]:
    """Tools in the requested order; those whose binary is missing are marked, not dropped. A directory is
    given to nvpcap as it is, and to tshark and ndpiReader one file at a time."""
    nvpcap = shlex.split(nvpcap_cmd.replace("{file}", shlex.quote(str(pcap))))
    argv = {
        "nvpcap": nvpcap,
        "nvpcap-rules500": nvpcap + ["--rules", str(CRS_RULES), "--rules", str(RULES500_ET)],
        # nvpcap-flows: flow records only (--flows-only: no payload inspection), the pipeline of tshark's conv
        "nvpcap-flows": nvpcap + ["--flows-only"],
        # nvpcap-j2: the default run on two cores (one large file is split by address pair: docs/scale.md)
        "nvpcap-j2": nvpcap + ["-j", "2"],
        "tshark": ["tshark", "-r", "{}", "-q", "-z", "conv,tcp"],
        # Without -q ndpiReader prints only its summary (per-flow output needs -v),
        # which we parse to check that it read every packet.
        "ndpiReader": ["ndpiReader", "-i", "{}"],
    }
    tools = []
    for name in names:
        program = argv[name][0]
        tool = Tool(name, per_file(argv[name], pcap) if name in BASELINES else argv[name],
                    capture_stdout=name == "ndpiReader")
        if shutil.which(program) is None:
            tool.status, tool.note = "not installed", f"{program} not on PATH"
        elif name == "nvpcap-rules500":
            if not CRS_RULES.is_dir():
                tool.status, tool.note = "not available", f"{CRS_RULES} missing (apt install modsecurity-crs)"
            else:  # the generated part of the 500 (deterministic; rewritten so it matches the CRS installed)
                subprocess.run([sys.executable, str(BENCH_DIR / "rules_scan.py"), "--write-rules", str(RULES500_ET)],
                               check=True)
        tools.append(tool)
    return tools


def ndpi_packet_count(stdout: str) -> int | None:
    """Total packets ndpiReader saw, from its 'IP packets: X of N packets total' lines (one per file read)."""
    counts = re.findall(r"of\s+(\d+)\s+packets total", stdout)
    return sum(map(int, counts)) if counts else None


def record_run(tool: Tool, result: RunResult, packets: int | None) -> None:
    """Keep the timing of a successful run; otherwise mark the tool unavailable."""
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [""])[-1]
        tool.status, tool.note = "not available", f"exit {result.returncode}: {last}"[:300]
        return
    if tool.name == "ndpiReader":
        seen = ndpi_packet_count(result.stdout)
        if seen is None or (packets is not None and seen != packets):
            tool.note = f"ndpiReader reported {seen} packets, capinfos {packets}"
    tool.wall_s.append(result.wall_s)
    tool.max_rss_kib.append(result.max_rss_kib)


def benchmark(tools: list[Tool], repeat: int, packets: int | None) -> None:
    """Interleave the tools across repeats: A B C A B C ..."""
    for i in range(repeat):
        for tool in tools:
            if tool.status != "ok":
                continue
            result = run_measured(tool.argv, tool.capture_stdout)
            record_run(tool, result, packets)
            if tool.status == "ok":
                print(f"  run {i + 1}/{repeat} {tool.name:<15} {result.wall_s:8.2f} s  "
                      f"{result.max_rss_kib / 1024:8.1f} MiB", file=sys.stderr)


def warm_page_cache(pcap: Path) -> None:
    """Read the capture(s) once so the first tool timed does not pay for cold I/O."""
    for path in capture_files(pcap):
        with open(path, "rb") as f:
            while f.read(1 << 23):
                pass


def warm_bytecode() -> None:
    """Compile nvpcap's modules to bytecode once, as an installed package has them. Without this, a source file
    changed since its last .pyc (and PYTHONDONTWRITEBYTECODE set, as on some CI images) is compiled again by
    every timed run, which measures the checkout, not nvpcap."""
    import compileall

    compileall.compile_dir(str(REPO_ROOT / "nvpcap"), quiet=1)


def capinfos_packets(pcap: Path) -> int | None:
    """Packets in the capture (summed over a directory's files); None without capinfos or when one fails."""
    if shutil.which("capinfos") is None:
        return None
    total = 0
    for path in capture_files(pcap):
        out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True).stdout
        m = re.search(r"Number of packets:\s+(\d+)", out)
        if m is None:
            return None
        total += int(m.group(1))
    return total


def first_line(argv: list[str]) -> str:
    """First non-empty output line of a version/help command ('' if it cannot run)."""
    if shutil.which(argv[0]) is None:
        return ""
    proc = subprocess.run(argv, capture_output=True, text=True)
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return lines[0] if lines else ""


def machine_info() -> dict[str, object]:
    model = ""
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model or platform.processor(),
        "python": platform.python_version(),
        "tshark": first_line(["tshark", "--version"]),
        "ndpiReader": first_line(["ndpiReader", "-h"]),
    }


def summarize(tools: list[Tool], packets: int | None, size: int) -> list[dict[str, object]]:
    """One row per tool with throughput and speed ratios (baseline time / tool time)."""
    base = {t.name: t.median_s for t in tools if t.median_s}
    rows = []
    for t in tools:
        med = t.median_s
        row: dict[str, object] = {"tool": t.name, "status": t.status, "note": t.note, "wall_s": t.wall_s,
                                  "median_s": med}
        if med:
            row["packets_per_s"] = packets / med if packets else None
            row["mb_per_s"] = size / 1e6 / med
            row["peak_rss_mib"] = max(t.max_rss_kib) / 1024
            for b in BASELINES:
                row[f"vs_{b}"] = base[b] / med if b in base else None
        rows.append(row)
    return rows


def fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(info: dict[str, object], pcap: Path, packets: int | None, size: int,
                 rows: list[dict[str, object]], repeat: int) -> None:
    print(f"machine: {info['nproc']} CPU(s), {info['cpu_model']}, Python {info['python']}")
    what = f"{len(capture_files(pcap)):,} files under {pcap}" if pcap.is_dir() else str(pcap)
    print(f"file:    {what}  {fmt(packets, ',')} packets, {size / 1e6:,.1f} MB, median of {repeat}")
    header = f"{'tool':<15} {'wall s':>8} {'packets/s':>11} {'MB/s':>7} {'RSS MiB':>8} {'vs tshark':>9} {'vs ndpi':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if r["median_s"] is None:
            print(f"{r['tool']:<15} {r['status']}: {r['note']}")
            continue
        print(f"{r['tool']:<15} {r['median_s']:8.2f} {fmt(r['packets_per_s'], ',.0f'):>11} {r['mb_per_s']:7.1f} "
              f"{r['peak_rss_mib']:8.1f} {fmt(r.get('vs_tshark'), '.2f'):>9} {fmt(r.get('vs_ndpiReader'), '.2f'):>8}")
        if r["note"]:
            print(f"{'':<15} note: {r['note']}")


def ensure_capture(pcap: Path) -> None:
    """Generate the default capture on first use; other paths must already exist."""
    if pcap.exists():
        return
    if pcap != DEFAULT_FILE:
        sys.exit(f"error: {pcap} does not exist")
    print(f"generating {pcap} ...", file=sys.stderr)
    subprocess.run([sys.executable, str(BENCH_DIR / "gen_mixed.py"), "-o", str(pcap)], check=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE, help=f"capture (default {DEFAULT_FILE})")
    p.add_argument("--repeat", type=int, default=3, help="runs per tool; the median is reported (default 3)")
    p.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"comma-separated subset of {','.join(ALL_TOOLS)}")
    p.add_argument("--nvpcap-cmd", default=DEFAULT_NVPCAP_CMD, help="nvpcap command line; {file} is replaced by the capture")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(args.tools) - set(ALL_TOOLS)
    if unknown:
        p.error(f"unknown tool(s): {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pcap = args.file.resolve()
    ensure_capture(pcap)
    size = sum(p.stat().st_size for p in capture_files(pcap))
    packets = capinfos_packets(pcap)
    info = machine_info()
    tools = build_tools(args.tools, pcap, args.nvpcap_cmd)
    warm_page_cache(pcap)
    warm_bytecode()
    benchmark(tools, args.repeat, packets)
    rows = summarize(tools, packets, size)
    print_report(info, pcap, packets, size, rows, args.repeat)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"file": str(pcap), "packets": packets, "bytes": size, "repeat": args.repeat,
               "machine": info, "tools": rows}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
