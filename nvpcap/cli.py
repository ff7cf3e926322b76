"""Command line: parse arguments, call the pipeline, choose exit codes. Nothing else lives here."""
from __future__ import annotations

import errno
import gc
import json
import os
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from . import __version__
from .decode.sources import expand_inputs, file_size
from .executor import (
    EXECUTORS,
    RunSpec,
    build_config,
    check_executor,
    make_sink,
    rule_problems,
    run_inputs,
)
from .output import FORMATS, format_for_path
from .pipeline import AnalyzeConfig, analyze_file, order_inputs
from .protocols.applayer import DEFAULT_STREAM_DEPTH, AppLayerConfig
from .session.meters import parse_meter_settings
from .summary import run_summary
from .threats import CATALOGUE, parse_threat_switches

EXIT_OK, EXIT_USAGE, EXIT_INPUT = 0, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nvpcap")
def main() -> None:
    """Offline pcap forensics: flows, protocols, threats and baselines, modelled on NeuVector's data plane."""


def _closed_pipe(exc: BaseException) -> bool:
    """The reader of the output went away. polars reports it as an OSError without an errno, by its message."""
    return isinstance(exc, OSError) and (exc.errno == errno.EPIPE or "Broken pipe" in str(exc))


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
@click.option("--max-parsed-flows", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Flows whose application layer is read at once (a few KB each); beyond it the least recently "
              "active stops being read (its events so far kept) and is counted (parsing_evicted).")
@click.option("--threat", "threat_switches", multiple=True, metavar="ID|NAME=on|off",
              help="Turn a NeuVector threat on or off (e.g. 2012=on, SSL.TLS1.1=on); repeatable. "
              "Defaults are NeuVector's; `nvpcap threats` lists them.")
@click.option("--stream-depth", type=click.IntRange(min=0), default=DEFAULT_STREAM_DEPTH, show_default=True,
              help="Bytes per flow direction the protocol parsers read (0 = identification only).")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(),
              help="Rules to add to the bundled packs; repeatable: NeuVector sensors (CRD YAML or JSON), gitleaks "
              "(*.toml), Suricata (*.rules), OWASP CRS (*.conf, or a directory of them).")
@click.option("--no-bundled-rules", is_flag=True, help="Do not load the bundled DLP/secrets/WAF packs.")
@click.option("--flows-only", is_flag=True,
              help="Flow records only, ~7x faster than the default: no payload inspection (no identification, "
              "parsing, DLP/WAF or protocol threats); app_proto comes from the server port (app_confidence port).")
@click.option("--crs-paranoia", type=click.IntRange(1, 4), default=1, show_default=True,
              help="OWASP CRS rules (*.conf given to --rules) above this paranoia level are not loaded.")
@click.option("--meter", "meter_settings", multiple=True, metavar="NAME.FIELD=VALUE",
              help="Change a NeuVector meter threshold (e.g. syn_flood.upper=2000, icmp_flood.span=2, "
              "ip_src_session.limit=500, icmp_tunnel_mismatches=5); repeatable.")
@click.option("--deterministic", is_flag=True,
              help="Same bytes on every run for the same inputs (golden files, CI): records sorted, no wall-clock "
              "fields; records are held in memory until the end. Default format jsonl. See docs/golden.md.")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report: protocol mix, top talkers, alerts, capture quality.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes: files analysed at once, one per worker (with --executor dask and no "
              "--scheduler: the LocalCluster's workers); the records are those of a serial run, in the same order. "
              "A file of 64 MiB or more whose share of the input bytes is worth two jobs or more is split across "
              "that many workers by address pair: the same records, the file's in shard order. docs/scale.md.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="Where files are analysed: local processes, or a Dask cluster (pip install 'nvpcap[dask]').")
@click.option("--scheduler", metavar="ADDRESS", help="Dask scheduler address (tcp://host:8786); implies "
              "--executor dask. Without it, --executor dask starts a LocalCluster of -j workers.")
@click.option("--stream", is_flag=True, help="The inputs are files rotated from one capture (tcpdump -G/-C): read "
              "them in time order as one capture, flow state carried across files; with -j N, N workers each "
              "read the whole stream and own part of the address pairs (docs/stream.md).")
@click.option("--stitch", is_flag=True, help="Join flows split at file boundaries (same community_id, next file, "
              "within the idle timeout) into one record with a stitched_parts count (docs/stream.md).")
@click.option("--no-resume", is_flag=True, help="With --format parquet -o DIR/: analyse every input again, even "
              "those whose parts in DIR are complete and unchanged.")
def analyze(paths: tuple[str, ...], output: str | None, fmt: str | None, strict: bool, quiet: bool,
            summary_json: str | None, max_flows: int, max_parsed_flows: int, threat_switches: tuple[str, ...],
            stream_depth: int, rule_files: tuple[str, ...], no_bundled_rules: bool, crs_paranoia: int = 1,
            meter_settings: tuple[str, ...] = (), deterministic: bool = False, report: str | None = None,
            jobs: int = 1, executor: str = "local", scheduler: str | None = None, no_resume: bool = False,
            stream: bool = False, stitch: bool = False, flows_only: bool = False) -> None:
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
        parse_meter_settings(meter_settings)  # checked here; each worker parses them again (RunSpec)
    except ValueError as exc:
        err.print(f"nvpcap: {exc}", style="red", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    if scheduler:
        executor = "dask"
    conflict = ("--stream runs on local workers: not with --executor dask" if stream and executor == "dask" else "--stream and --stitch exclude each other" if stream and stitch
                else "--flows-only reads no payload: not with --rules" if flows_only and rule_files else None)
    if conflict:
        err.print(f"nvpcap: {conflict}", style="red", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    spec = RunSpec(rule_files=rule_files, bundled=not no_bundled_rules, crs_paranoia=crs_paranoia,
                   stream_depth=stream_depth, max_flows=max_flows, max_parsed_flows=max_parsed_flows,
                   threat_overrides=overrides, meter_settings=meter_settings, flows_only=flows_only)
    for problem in rule_problems(spec):  # builds the engine in this process once (a serial run reuses it)
        err.print(f"nvpcap: rules: {problem}", style="yellow", markup=False, highlight=False)
    fmt = fmt or format_for_path(output, sys.stdout.isatty() and not deterministic)
    try:
        check_executor(executor)  # before the output is opened: a usage error leaves no empty file
        sink = make_sink(fmt, output, deterministic, resume=not no_resume)
    except (ValueError, OSError) as exc:
        err.print(f"nvpcap: {exc}", style="red", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    partitioned = getattr(sink, "partitioned", False)  # parquet -o DIR/: one part per input, resumable
    if partitioned and (stream or stitch):
        err.print("nvpcap: --stream and --stitch write one record set: use -o FILE.parquet, not a folder of parts",
                  style="red", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    collector = tee = None
    if report:
        from .report.analysis import AnalysisCollector, TeeSink

        collector = AnalysisCollector(rule_packs=rule_packs(build_config(spec).app.rules))
        sink = TeeSink(sink, collector)
        tee = collector if partitioned else None  # partitioned: run_inputs feeds the collector; TeeSink closes both
    ordered = order_inputs(inputs)
    summaries = []
    # The pipeline keeps ~10^5 long-lived objects (modules, compiled rules, flow state): with the default
    # thresholds the cyclic GC rescans them all ~15 times per million packets (2.7 s of 20 s, measured).
    # Freeze what exists now and collect young objects less often (100,000 net allocations: most per-packet
    # objects die before a collection sees them; GC time on the 1M-packet file 0.68 -> 0.25 s, peak memory the
    # same); nvpcap's per-flow cycles (a parser and its output) are broken when the flow closes.
    gc.freeze()
    gc.set_threshold(100_000, 20, 100)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                        console=err, disable=not _show_progress(quiet), transient=True)
    with progress:
        total = sum(file_size(n) or 0 for n in ordered) or None
        task = progress.add_task(f"0/{len(ordered)} files", total=total)
        finished: list[str] = []

        def file_done(s) -> None:
            finished.append(s.name)
            progress.update(task, description=f"{len(finished)}/{len(ordered)} files, last "
                            + escape(os.path.basename(s.name)))

        def say(message: str) -> None:
            if not quiet:
                err.print(f"nvpcap: {message}", markup=False, highlight=False)

        on_file = file_done
        if stitch:
            from .stitch import FlowStitcher

            sink = FlowStitcher(sink, file_order=ordered, timeouts=build_config(spec).table.timeouts,
                                parts_column=fmt != "parquet")  # Parquet writers have a fixed schema

            def on_file(s) -> None:
                sink.end_file(s)
                file_done(s)

        try:
            if stream:
                from .executor import run_stream

                summaries = run_stream(ordered, spec, sink, jobs=jobs, progress=lambda n: progress.advance(task, n))
            else:
                summaries = run_inputs(ordered, spec, sink.sink if tee is not None else sink, jobs=jobs,
                                       executor=executor, scheduler=scheduler, tee=tee,
                                       progress=lambda n: progress.advance(task, n), on_file=on_file, log=say)
        except (ValueError, OSError) as exc:  # a Dask scheduler that cannot be reached, ...
            if _closed_pipe(exc):  # `nvpcap analyze x | head`: click ends quietly (exit 1), as on any EPIPE
                raise BrokenPipeError(errno.EPIPE, "the output's reader went away") from exc
            err.print(f"nvpcap: {exc}", style="red", markup=False, highlight=False)
            sys.exit(EXIT_USAGE)
    print_issues(err, summaries)
    summary = run_summary(summaries)
    sink.close(summary)
    if summary_json:
        if deterministic:
            from .output.deterministic import scrub_summary

            summary = scrub_summary(summary)
        with open(summary_json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    if not quiet and fmt != "table":
        _print_totals(err, summary)
    if collector is not None:
        from .report.html import render_analysis_report

        try:
            render_analysis_report(collector.model(), report)
        except OSError as exc:
            err.print(f"nvpcap: {report}: cannot write: {exc.strerror or exc}", style="red", markup=False,
                      highlight=False)
            sys.exit(EXIT_USAGE)
    if strict and any(s.has_input_errors for s in summaries):
        sys.exit(EXIT_INPUT)


@main.command("diff")
@click.argument("expected")
@click.argument("actual")
@click.option("--ignore", "ignores", multiple=True, metavar="[EVENT_TYPE:]FIELD",
              help="Do not compare this field (a name at any depth, or a dotted path such as http.status; "
              "EVENT_TYPE: limits it to one record kind); repeatable.")
@click.option("--no-default-ignores", is_flag=True,
              help="Also compare the fields ignored by default: stats:version, stats:seconds.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--max-diffs", type=click.IntRange(min=0), default=50, show_default=True,
              help="Differences shown (0 = all); the count of the rest is printed.")
def diff_cmd(expected: str, actual: str, ignores: tuple[str, ...], no_default_ignores: bool, fmt: str,
             max_diffs: int) -> None:
    """Compare two record files (analyze's jsonl, or csv; '-' = jsonl on stdin) by record identity, not line
    order: print records added, removed and changed field by field. Exit 0 when they match, 1 when they differ,
    2 for usage errors. See docs/golden.md."""
    from .golden import DiffInputError, as_json, diff_files, text_lines

    try:
        result = diff_files(expected, actual, ignores, default_ignores=not no_default_ignores)
    except DiffInputError as exc:
        Console(stderr=True, soft_wrap=True).print(f"nvpcap diff: {exc}", style="red", markup=False,
                                                   highlight=False)
        sys.exit(EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps(as_json(result, max_diffs), indent=2, ensure_ascii=True, default=str))
    else:
        for line in text_lines(result, max_diffs):
            click.echo(line)
    sys.exit(EXIT_OK if result.same else 1)


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


def print_issues(err: Console, summaries: list) -> None:
    """Each input's capture problems (corrupt, truncated, unreadable), one line each with the file offset."""
    for s in summaries:
        for issue in s.issues:
            err.print(f"nvpcap: {s.name}: offset {issue.offset}: {issue.message}", style="yellow", markup=False,
                      highlight=False)


def rule_packs(engine) -> list[dict]:
    """The rule sets a run loaded (source and count), shown in reports beside the tool's version."""
    from collections import Counter

    packs = Counter(getattr(r, "source", "rules") for r in getattr(engine, "rules", None) or [])
    return [{"name": name, "rules": n} for name, n in sorted(packs.items())]


def _print_totals(err: Console, summary: dict) -> None:
    for f in summary["files"]:
        outcomes = ", ".join(f"{k} {v}" for k, v in f["outcomes"].items())
        err.print(f"{f['file']}: {f['packets']} packets ({outcomes}); {f['flows']} flows", highlight=False,
                  markup=False)
    t = summary["totals"]
    err.print(f"total: {t['packets']} packets, {t['flows']} flows, {t['alerts']} alerts, {t['anomalies']} anomalies",
              highlight=False)


# -- nvpcap rules list|lint|test (rule files: NeuVector sensors, gitleaks TOML, Suricata, OWASP CRS) --

@main.group("rules")
def rules_group() -> None:
    """List, check and try DLP/WAF/IDS rule files (NeuVector sensor YAML/JSON, gitleaks TOML, Suricata .rules,
    OWASP CRS .conf)."""


def _rule_row(r) -> dict:  # r: a nvpcap.rules.Rule (the rules package is imported lazily)
    """A rule as a listing row."""
    validator = r.validator or ""
    if getattr(r, "entropy", None) is not None:  # a gitleaks rule's own threshold
        validator = f"entropy>{r.entropy:g}"
    return {"id": r.rule_id, "name": r.name, "category": r.category, "severity": r.severity,
            "contexts": sorted({p.context for p in r.patterns}), "validator": validator, "source": r.source}


def _print_rule_problems(problems: list[str]) -> None:
    err = Console(stderr=True)
    for problem in problems:
        err.print(f"nvpcap: rules: {problem}", style="yellow", markup=False, highlight=False, soft_wrap=True)


@rules_group.command("list")
@click.option("--rules", "rule_files", multiple=True, type=click.Path(),
              help="A rules file (NeuVector sensors .yaml/.json, gitleaks .toml); repeatable.")
@click.option("--no-bundled-rules", is_flag=True, help="Leave out the bundled DLP/secrets/WAF packs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def rules_list(rule_files: tuple[str, ...], no_bundled_rules: bool, fmt: str) -> None:
    """List the rules a run would load: id, name, category, severity, contexts, validator, source. Rules that
    cannot be imported are named on stderr."""
    from .rules import LoadResult, RuleIds, load_bundled, load_files

    ids = RuleIds()
    loaded = LoadResult() if no_bundled_rules else load_bundled(ids)
    loaded.extend(load_files(list(rule_files), ids))
    _print_rule_problems(loaded.problems)
    rows = [_rule_row(r) for r in loaded.rules]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(rows)} DLP/WAF rules")
    for col in ("id", "name", "category", "severity", "contexts", "validator", "source"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["id"]), r["name"], r["category"], str(r["severity"]), ",".join(r["contexts"]),
                      r["validator"] or "-", r["source"])
    Console(width=max(120, Console().width)).print(table)


@rules_group.command("lint")
@click.argument("files", nargs=-1, required=True)
def rules_lint(files: tuple[str, ...]) -> None:
    """Load and compile each rules file and print every problem (file, rule, reason). Exit 0 when all are
    clean, 1 when there is any problem (an unreadable file is one)."""
    from .rules import RuleEngine, RuleIds, load_files

    total = 0
    for path in files:
        loaded = load_files([path], RuleIds())  # by extension: .toml gitleaks, .rules Suricata, else NeuVector
        problems = list(loaded.problems)
        usable = 0
        if loaded.rules:
            engine = RuleEngine(loaded.rules)
            problems += engine.problems
            usable = len(engine.rules)
            if engine.warning:
                Console(stderr=True).print(f"nvpcap: {engine.warning}", style="yellow", markup=False,
                                           highlight=False)
        for problem in problems:
            click.echo(problem)
        total += len(problems)
        click.echo(f"{path}: {usable} rule{'s' if usable != 1 else ''} ok, "
                   f"{len(problems)} problem{'s' if len(problems) != 1 else ''}")
    sys.exit(1 if total else 0)


@rules_group.command("test")
@click.argument("rules_file", type=click.Path(dir_okay=False))
@click.option("--against", "capture", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The capture to analyse with the rules.")
@click.option("--no-bundled-rules", is_flag=True, help="Leave out the bundled DLP/secrets/WAF packs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def rules_test(rules_file: str, capture: str, no_bundled_rules: bool, fmt: str) -> None:
    """Analyse CAPTURE with RULES_FILE (plus the bundled packs unless --no-bundled-rules) and show the alerts
    per rule: flows, matches, first frame, snippet. Exit 0 if any rule of RULES_FILE matched, 1 if none did."""
    from .output.memory import MemorySink
    from .rules import LoadResult, RuleEngine, RuleIds, load_bundled, load_files
    from .rules.model import CATEGORIES

    ids = RuleIds()
    loaded = LoadResult() if no_bundled_rules else load_bundled(ids)
    mine = load_files([rules_file], ids)
    loaded.extend(mine)
    own = {r.rule_id for r in mine.rules}
    problems = list(loaded.problems)
    engine = RuleEngine(loaded.rules) if loaded.rules else None
    if engine is not None:
        problems += engine.problems
        if engine.warning:
            problems.append(engine.warning)
    _print_rule_problems(problems)
    if not own:
        click.echo(f"{rules_file}: no rule could be imported", err=True)
        sys.exit(1)
    sink = MemorySink()
    summary = analyze_file(capture, sink, AnalyzeConfig(app=AppLayerConfig(rules=engine)))
    for issue in summary.issues:
        click.echo(f"nvpcap: {capture}: {issue.kind}: {issue.message}", err=True)
    per_rule: dict[int, dict] = {}
    for e in sink.events:
        if e.get("event_type") != "alert" or e.get("category") not in CATEGORIES:  # rule alerts, not threats
            continue
        row = per_rule.setdefault(e["rule_id"], {
            "id": e["rule_id"], "name": e["rule_name"], "category": e["category"], "from_file": e["rule_id"] in own,
            "flows": 0, "matches": 0, "first_frame": e.get("frame"), "snippet": e.get("snippet", "")})
        row["flows"] += 1
        row["matches"] += int(e.get("count") or 1)
        frame = e.get("frame")
        if frame is not None and (row["first_frame"] is None or frame < row["first_frame"]):
            row["first_frame"], row["snippet"] = frame, e.get("snippet", "")
    rows = sorted(per_rule.values(), key=lambda r: (not r["from_file"], r["id"]))
    matched = sum(1 for r in rows if r["from_file"])
    if fmt == "json":
        click.echo(json.dumps({"rules_file": rules_file, "capture": capture, "file_rules": len(own),
                               "file_rules_matched": matched, "alerts": rows}, indent=2))
    else:
        from rich.table import Table

        table = Table(title=f"{capture}: {matched} of the {len(own)} rules of {rules_file} matched")
        for col in ("id", "rule", "from file", "flows", "matches", "first frame", "snippet"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(str(r["id"]), r["name"], "yes" if r["from_file"] else "-", str(r["flows"]),
                          str(r["matches"]), str(r["first_frame"]), r["snippet"])
        Console(width=max(120, Console().width)).print(table)
    sys.exit(0 if matched else 1)


# -- nvpcap baseline learn|check|export (cli_baseline.py) --
from .cli_baseline import baseline_group

main.add_command(baseline_group)

# -- nvpcap verify (verify.py: the cross-check against Wireshark's dissectors) --
from .verify import verify_command

main.add_command(verify_command)
