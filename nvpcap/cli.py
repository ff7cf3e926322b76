"""Command line: parse arguments, call the pipeline, choose exit codes. Nothing else lives here."""
from __future__ import annotations

import json
import os
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from . import __version__
from .decode.sources import expand_inputs, file_size
from .output import FORMATS, format_for_path, open_sink
from .pipeline import AnalyzeConfig, analyze_file, order_inputs
from .protocols.applayer import DEFAULT_STREAM_DEPTH, AppLayerConfig
from .session.table import FlowTableConfig
from .summary import run_summary
from .threats import CATALOGUE, parse_threat_switches

EXIT_OK, EXIT_USAGE, EXIT_INPUT = 0, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nvpcap")
def main() -> None:
    """Offline pcap forensics: flows, protocols, threats and baselines, modelled on NeuVector's data plane."""


def _show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", help="Write records here (file, or directory for parquet/zeek; - = stdout).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Record format (default: table on a terminal, "
              "else from the output name, else jsonl).")
@click.option("--strict", is_flag=True, help="Exit 3 when any input is corrupt, truncated or has malformed packets.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr.")
@click.option("--summary-json", type=click.Path(dir_okay=False), help="Also write the run summary as JSON here.")
@click.option("--max-flows", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Active flows kept per file; beyond it the least recently active are ended (and counted).")
@click.option("--threat", "threat_switches", multiple=True, metavar="ID|NAME=on|off",
              help="Turn a NeuVector threat on or off (e.g. 2012=on, SSL.TLS1.1=on); repeatable. "
              "Defaults are NeuVector's; `nvpcap threats` lists them.")
@click.option("--stream-depth", type=click.IntRange(min=0), default=DEFAULT_STREAM_DEPTH, show_default=True,
              help="Bytes per flow direction the protocol parsers read (0 = identification only).")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(dir_okay=False),
              help="DLP/WAF sensors in NeuVector's format (CRD YAML or JSON); repeatable. Added to the bundled packs.")
@click.option("--no-bundled-rules", is_flag=True, help="Do not load the bundled DLP/secrets/WAF packs.")
def analyze(paths: tuple[str, ...], output: str | None, fmt: str | None, strict: bool, quiet: bool,
            summary_json: str | None, max_flows: int, threat_switches: tuple[str, ...], stream_depth: int,
            rule_files: tuple[str, ...], no_bundled_rules: bool) -> None:
    """Analyse captures (files, directories, '-' for stdin; pcap/pcapng, optionally gzip/zstd/bz2/xz)."""
    # soft_wrap: messages stay on one line (grep-able); markup is off wherever a file name is printed
    err = Console(stderr=True, soft_wrap=True)
    inputs, problems, skipped = expand_inputs(paths)
    for p in problems:
        err.print(f"nvpcap: {p}", style="red", markup=False, highlight=False)
    if skipped and not quiet:
        err.print(f"nvpcap: skipped {len(skipped)} file(s) that are not captures: {', '.join(skipped[:3])}"
                  + (", ..." if len(skipped) > 3 else ""), markup=False, highlight=False)
    if problems:
        sys.exit(EXIT_USAGE)
    if not inputs:
        err.print("nvpcap: no capture files found", style="red", markup=False)
        sys.exit(EXIT_USAGE)
    try:
        overrides = parse_threat_switches(threat_switches)
    except ValueError as exc:
        err.print(f"nvpcap: {exc}", style="red", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    from .rules import build_engine

    engine, rule_problems = build_engine(rule_files, bundled=not no_bundled_rules)
    for problem in rule_problems:
        err.print(f"nvpcap: rules: {problem}", style="yellow", markup=False, highlight=False)
    fmt = fmt or format_for_path(output, sys.stdout.isatty())
    try:
        sink = open_sink(fmt, output)
    except (ValueError, OSError) as exc:
        err.print(f"nvpcap: {exc}", style="red", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    config = AnalyzeConfig(table=FlowTableConfig(max_flows=max_flows), app=AppLayerConfig(stream_depth=stream_depth, rules=engine),
                           threat_overrides=overrides)
    ordered = order_inputs(inputs)
    summaries = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                        console=err, disable=not _show_progress(quiet), transient=True)
    with progress:
        total = sum(file_size(n) or 0 for n in ordered) or None
        task = progress.add_task("analysing", total=total)
        for name in ordered:
            progress.update(task, description=escape(os.path.basename(name)))
            s = analyze_file(name, sink, config, progress=lambda n: progress.advance(task, n))
            summaries.append(s)
            for issue in s.issues:
                err.print(f"nvpcap: {name}: offset {issue.offset}: {issue.message}", style="yellow", markup=False,
                          highlight=False)
    summary = run_summary(summaries)
    sink.close(summary)
    if summary_json:
        with open(summary_json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    if not quiet and fmt != "table":
        _print_totals(err, summary)
    if strict and any(s.has_input_errors for s in summaries):
        sys.exit(EXIT_INPUT)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def protocols(fmt: str) -> None:
    """List the application protocols nvpcap identifies (name, transports, default ports)."""
    from .protocols.registry import PROTOCOLS

    rows = [{"name": p.name, "transports": list(p.transports), "ports": list(p.ports), "description": p.description,
             "extracts": p.extracts if p.parser is not None else ""} for p in PROTOCOLS]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} application protocols (identified by content, on any port)")
    for col in ("name", "transports", "default ports", "identified by", "events carry"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], "/".join(r["transports"]), ", ".join(map(str, r["ports"])) or "-", r["description"],
                      r["extracts"] or "-")
    Console().print(table)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def threats(fmt: str) -> None:
    """List NeuVector's threats nvpcap detects: id, name, severity, default on/off, NeuVector's inline action."""
    rows = [{"id": t.threat_id, "name": t.name, "severity": t.severity, "enabled": t.enabled, "action": t.action}
            for t in CATALOGUE.values()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="NeuVector threats (turn one on or off with analyze --threat ID=on|off)")
    for col in ("id", "name", "severity", "default", "NeuVector action"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["id"]), r["name"], str(r["severity"]), "on" if r["enabled"] else "off", r["action"])
    Console().print(table)


def _print_totals(err: Console, summary: dict) -> None:
    for f in summary["files"]:
        outcomes = ", ".join(f"{k} {v}" for k, v in f["outcomes"].items())
        err.print(f"{f['file']}: {f['packets']} packets ({outcomes}); {f['flows']} flows", highlight=False,
                  markup=False)
    t = summary["totals"]
    err.print(f"total: {t['packets']} packets, {t['flows']} flows, {t['alerts']} alerts, {t['anomalies']} anomalies",
              highlight=False)
