"""Command line for `nvpcap baseline learn|check|export`: arguments, messages and exit codes only.

Exit codes are the same for every --format: 0 clean, 1 violations at or above --fail-on, 2 usage or
configuration error, 3 input errors under --strict (they win over violations: the verdict is not to be trusted).
"""
from __future__ import annotations

import os
import sys
from collections import Counter

import click
from rich.console import Console

from .decode.sources import expand_inputs

EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE, EXIT_INPUT = 0, 1, 2, 3
CHECK_FORMATS = ("table", "json", "jsonl", "csv", "sarif", "junit")


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    _err().print(f"nvpcap: {message}", style="red", markup=False, highlight=False)
    sys.exit(code)


def _inputs(paths: tuple[str, ...], quiet: bool) -> list[str]:
    """Captures and record files from the arguments (directories recursively); exits 2 when there are none."""
    from .baseline.observe import is_record_file

    records = [p for p in paths if os.path.exists(p) and is_record_file(p)]
    others = tuple(p for p in paths if p not in records)
    captures, problems, skipped = expand_inputs(others) if others else ([], [], [])
    for p in problems:
        _err().print(f"nvpcap: {p}", style="red", markup=False, highlight=False)
    if problems:
        sys.exit(EXIT_USAGE)
    if skipped and not quiet:
        _err().print(f"nvpcap: skipped {len(skipped)} file(s) that are not captures", markup=False, highlight=False)
    if not captures and not records:
        _fail("no capture or record files found")
    return records + captures


def _observe(paths: list[str], spec, jobs: int):
    """Run the pipeline over the captures (record files are read as they are), `jobs` files at a time."""
    from .baseline.observe import observe
    from .cli import print_issues
    from .executor import run_inputs
    from .pipeline import order_inputs
    from .summary import run_summary

    err = _err()

    def run_captures(captures: list[str], sink) -> dict:
        summaries = run_inputs(order_inputs(captures), spec, sink, jobs=jobs)
        print_issues(err, summaries)
        summary = run_summary(summaries)
        sink.close(summary)
        return summary

    try:
        return observe(paths, run_captures)
    except (ValueError, OSError) as exc:
        _fail(str(exc))


def _groups(path: str | None):
    from .baseline.groups import GroupsError, load_groups

    try:
        return load_groups(path)
    except GroupsError as exc:
        _fail(str(exc))


def _baseline_and_groups(baseline_file: str, groups_file: str | None):
    """The baseline, and the groups given (or else those it was learned with, when that file still exists)."""
    from .baseline.model import BaselineError, load_baseline

    try:
        baseline = load_baseline(baseline_file)
    except BaselineError as exc:
        _fail(str(exc))
    if groups_file is None and baseline.groups_file and os.path.exists(baseline.groups_file):
        groups_file = baseline.groups_file
    return baseline, _groups(groups_file)


def _input_errors(summary: dict) -> bool:
    for f in summary.get("files", []):
        if f.get("issues") or any(k.startswith("malformed") or k == "unreadable-record" for k in f.get("outcomes", {})):
            return True
    return False


@click.group("baseline")
def baseline_group() -> None:
    """Learn which groups talk to which (NeuVector's learning rules), then check later captures against it."""


@baseline_group.command("learn")
@click.argument("paths", nargs=-1, required=True)
@click.option("--groups", "groups_file", type=click.Path(dir_okay=False), help="Groups YAML (name: [CIDR, IP, host]), or `kubectl get pods,services -A -o json` output.")
@click.option("-o", "--output", default="baseline.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Baseline file to write; an existing one is merged into (learning accumulates).")
@click.option("--replace", is_flag=True, help="Start a new baseline instead of merging into an existing --output.")
@click.option("--stream-depth", type=click.IntRange(min=0), default=1 << 20, show_default=True,
              help="Bytes per flow direction the protocol parsers read.")
@click.option("--strict", is_flag=True, help="Exit 3 when any input is corrupt, truncated or has malformed packets.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Captures analysed at once, one per process.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def learn_cmd(paths: tuple[str, ...], groups_file: str | None, output: str, replace: bool, stream_depth: int,
              strict: bool, jobs: int, quiet: bool) -> None:
    """Learn a baseline from captures (or from `nvpcap analyze` JSONL/Parquet records)."""
    from .baseline.connections import connections
    from .baseline.learn import learn
    from .baseline.model import Baseline, BaselineError, load_baseline
    from .executor import RunSpec

    groups = _groups(groups_file)
    inputs = _inputs(paths, quiet)
    baseline = Baseline()
    if os.path.exists(output) and not replace:
        try:
            baseline = load_baseline(output)
        except BaselineError as exc:
            _fail(f"{exc} (use --replace to start a new baseline)")
    obs = _observe(inputs, RunSpec(bundled=False, stream_depth=stream_depth), jobs)
    conns = connections(obs, groups, _app_ports(baseline))
    before = len(baseline.rules)
    learn(conns, baseline)
    baseline.learned_from += [{"file": f.get("file"), "packets": f.get("packets"), "first_ts": f.get("first_ts"),
                               "last_ts": f.get("last_ts")} for f in obs.run_summary.get("files", [])]
    baseline.groups_file = groups_file or baseline.groups_file
    try:
        baseline.save(output)
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    if not quiet:
        scopes = Counter(conns["scope"]) if len(conns) else Counter()
        _err().print(f"learned from {len(conns)} flows ({', '.join(f'{k} {v}' for k, v in sorted(scopes.items()))}): "
                     f"{len(baseline.rules)} rules ({len(baseline.rules) - before} new) -> {output}",
                     markup=False, highlight=False)
    if strict and _input_errors(obs.run_summary):
        sys.exit(EXIT_INPUT)


def _app_ports(baseline) -> set[tuple[str, str]]:
    """(to group, port) pairs where the baseline knows an application: UDP port rules qualify there."""
    return {(r.to_group, p) for r in baseline.rules if r.kind == "app" for p in r.ports}


@baseline_group.command("check")
@click.argument("paths", nargs=-1, required=True)
@click.option("--baseline", "baseline_file", required=True, type=click.Path(dir_okay=False), help="Baseline YAML.")
@click.option("--groups", "groups_file", type=click.Path(dir_okay=False),
              help="Groups YAML (default: the one the baseline was learned with, if it exists).")
@click.option("--mode", type=click.Choice(["monitor", "protect"]), default="monitor", show_default=True,
              help="monitor reports violations; protect also marks them denied and counts the dropped packets.")
@click.option("--format", "fmt", type=click.Choice(CHECK_FORMATS), default="table", show_default=True)
@click.option("-o", "--output", default="-", show_default=True, help="Where the --format output goes (- = stdout).")
@click.option("--report", type=click.Path(dir_okay=False), help="Also write a self-contained HTML report here.")
@click.option("--accept", "accept_file", type=click.Path(dir_okay=False),
              help="Fingerprints of known violations: reported as accepted, never failing.")
@click.option("--fail-on", type=click.Choice(["any", "info", "low", "medium", "high", "critical"]), default="any",
              show_default=True, help="Exit 1 for violations of this severity or above.")
@click.option("--exit-zero", is_flag=True, help="Report only: exit 0 even with violations.")
@click.option("--strict", is_flag=True, help="Exit 3 when any input is corrupt, truncated or has malformed packets.")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(), help="Rules added to the bundled packs.")
@click.option("--no-bundled-rules", is_flag=True, help="Do not load the bundled DLP/secrets/WAF packs.")
@click.option("--stream-depth", type=click.IntRange(min=0), default=1 << 20, show_default=True,
              help="Bytes per flow direction the protocol parsers read.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Captures analysed at once, one per process.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def check_cmd(paths: tuple[str, ...], baseline_file: str, groups_file: str | None, mode: str, fmt: str, output: str,
              report: str | None, accept_file: str | None, fail_on: str, exit_zero: bool, strict: bool,
              rule_files: tuple[str, ...], no_bundled_rules: bool, stream_depth: int, jobs: int, quiet: bool) -> None:
    """Replay captures (or analyze records) against a baseline; violations in the chosen format."""
    from .baseline.check import CheckOptions, check, load_accept
    from .baseline.connections import connections
    from .baseline.observe import is_record_file
    from .cli import rule_packs
    from .executor import RunSpec, build_config, rule_problems

    baseline, groups = _baseline_and_groups(baseline_file, groups_file)
    accept: set[str] = set()
    if accept_file:
        try:
            accept = load_accept(accept_file)
        except OSError as exc:
            _fail(f"{accept_file}: cannot read: {exc.strerror or exc}")
        except ValueError as exc:
            _fail(str(exc))
    inputs = _inputs(paths, quiet)
    spec = RunSpec(rule_files=rule_files, bundled=not no_bundled_rules, stream_depth=stream_depth)
    captures = [p for p in inputs if not is_record_file(p)]
    if captures:  # record files carry the alerts of the rules analyze ran with: nothing to scan here
        for problem in rule_problems(spec):
            _err().print(f"nvpcap: rules: {problem}", style="yellow", markup=False, highlight=False)
    obs = _observe(inputs, spec, jobs)
    conns = connections(obs, groups, _app_ports(baseline))
    result = check(conns, obs.alerts, baseline, groups, obs.hostnames, obs.run_summary,
                   CheckOptions(mode=mode, fail_on=fail_on, accept=accept),
                   rule_packs=rule_packs(build_config(spec).app.rules) if captures else [])
    _write_result(result, fmt, output)
    if report:
        from .report.html import render_check_report

        try:
            render_check_report(result, report)
        except OSError as exc:
            _fail(f"{report}: cannot write: {exc.strerror or exc}")
    if not quiet:
        t = result["totals"]
        _err().print(f"{result['verdict']}: {t['violations']} violations ({t['failing']} failing, {t['accepted']} "
                     f"accepted) in {t['flows']} flows; {t['flows_allowed']} allowed, {t['flows_ignored']} outside "
                     f"the rules" + (f"; {t['denied_packets']} packets denied" if mode == "protect" else ""),
                     markup=False, highlight=False)
    if strict and _input_errors(obs.run_summary):
        sys.exit(EXIT_INPUT)
    if result["verdict"] == "fail" and not exit_zero:
        sys.exit(EXIT_VIOLATIONS)


def _write_result(result: dict, fmt: str, output: str) -> None:
    from .output.base import open_text
    from .report.ci_formats import write_violations

    try:
        stream, close = open_text(output)
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    try:
        write_violations(result, fmt, stream)
    finally:
        if close:
            stream.close()


@baseline_group.command("export")
@click.argument("baseline_file", type=click.Path(dir_okay=False))
@click.option("--as", "target", type=click.Choice(["neuvector", "networkpolicy"]), required=True,
              help="NeuVector NvSecurityRule YAML, or Kubernetes NetworkPolicy YAML.")
@click.option("--groups", "groups_file", type=click.Path(dir_okay=False),
              help="Groups YAML (default: the one the baseline was learned with, if it exists).")
@click.option("-o", "--output", default="-", show_default=True, help="Where the YAML goes (- = stdout).")
def export_cmd(baseline_file: str, target: str, groups_file: str | None, output: str) -> None:
    """Turn a baseline into rules a cluster enforces."""
    import yaml

    from .baseline.export import ExportError, export_networkpolicy, export_neuvector
    from .output.base import open_text

    baseline, group_map = _baseline_and_groups(baseline_file, groups_file)
    groups = group_map.as_dict()
    doc = yaml.safe_load(baseline.to_yaml())
    try:
        text = export_neuvector(doc, groups) if target == "neuvector" else export_networkpolicy(doc, groups)
    except ExportError as exc:
        _fail(str(exc))
    try:
        stream, close = open_text(output)
    except OSError as exc:
        _fail(f"{output}: cannot write: {exc.strerror or exc}")
    stream.write(text)
    if close:
        stream.close()
