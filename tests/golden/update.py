"""Regenerate (or check) the golden files: one `nvpcap analyze --deterministic` output per sample capture.

    python3 tests/golden/update.py            # rewrite tests/golden/**.jsonl, print what changed
    python3 tests/golden/update.py --check    # compare only; exit 1 when any golden file is out of date

Run from anywhere; the captures are analysed from the repository root with relative paths, as the tests do,
with the options a user would use (bundled rules on). Then REVIEW `git diff tests/golden` before committing:
a golden file that changes is a change in nvpcap's findings, and must be one you meant.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
SAMPLES = Path("samples") / "pcaps"  # relative to ROOT: it is what the stats record's `file` field shows
SAMPLE_GLOBS = ("*.pcap", "*.pcapng", "apps/*.pcap", "compressed/*", "corrupt/*")
ANALYZE_OPTIONS = ("--deterministic", "--format", "jsonl", "-q")


def samples() -> list[Path]:
    """The sample captures with a golden file, relative to samples/pcaps/."""
    found = {p.relative_to(ROOT / SAMPLES) for g in SAMPLE_GLOBS for p in (ROOT / SAMPLES).glob(g) if p.is_file()}
    return sorted(p for p in found if p.suffix != ".csv")


def golden_path(sample: Path) -> Path:
    return GOLDEN / sample.parent / (sample.name + ".jsonl")


def analyze_command(sample: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "nvpcap", "analyze", str(SAMPLES / sample), *ANALYZE_OPTIONS, "-o", str(output)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if any golden file differs")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from nvpcap.golden import diff_files, text_lines

    changed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for sample in samples():
            out = Path(tmp) / "out.jsonl"
            done = subprocess.run(analyze_command(sample, out), cwd=ROOT, capture_output=True, text=True, check=False,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode != 0:
                print(f"{sample}: analyze failed (exit {done.returncode}): {done.stderr.strip()}", file=sys.stderr)
                return 2
            gold = golden_path(sample)
            new = out.read_bytes()
            if gold.exists() and gold.read_bytes() == new:
                continue
            changed += 1
            if gold.exists():
                result = diff_files(str(gold), str(out))
                print(f"{gold.relative_to(ROOT)}: {result.summary()}")
                for line in text_lines(result, 20)[:-1]:
                    print(f"  {line}")
            else:
                print(f"{gold.relative_to(ROOT)}: new")
            if not args.check:
                gold.parent.mkdir(parents=True, exist_ok=True)
                gold.write_bytes(new)
    stale = sorted(p for p in GOLDEN.rglob("*.jsonl") if p not in {golden_path(s) for s in samples()})
    for p in stale:
        print(f"{p.relative_to(ROOT)}: no sample capture any more" + ("" if args.check else "; removed"))
        if not args.check:
            p.unlink()
    changed += len(stale)
    verb = "out of date" if args.check else "written"
    print(f"{changed} golden file{'s' if changed != 1 else ''} {verb}"
          + ("; review them with `git diff tests/golden` before committing" if changed and not args.check else ""))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
