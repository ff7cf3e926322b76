"""Self-contained HTML reports (a baseline check, an analysis): one file, no external requests.

Every string in a report may come from a capture (Host headers, URLs, SNI, DNS names, group names, snippets),
so the Jinja2 environment autoescapes everything and the page carries a Content-Security-Policy that allows
nothing but its own inline style and script. Sorting is done on `data-v` attributes, so no data is embedded
as script text.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from jinja2 import Environment, PackageLoader, Undefined

from .svg import graph_layout, isotime, timeline, to_int

MAX_VIOLATIONS = 2000  # rows drawn; the totals still count every violation
MAX_ISSUES = 200
MAX_HOSTNAMES = 1000
SEVERITY_NAMES = {1: "info", 2: "low", 3: "medium", 4: "high", 5: "critical"}
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")

_ENV: Environment | None = None


def environment() -> Environment:
    """The reports' Jinja2 environment: templates from the package, autoescape on for every template."""
    global _ENV
    if _ENV is None:
        env = Environment(loader=PackageLoader("nvpcap.report", "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True, finalize=_blank_none)
        env.filters["isotime"] = lambda v: "" if isinstance(v, Undefined) else isotime(v)
        # to the second, for table cells (the full time is in the cell's title)
        env.filters["shorttime"] = lambda v: "" if isinstance(v, Undefined) else isotime(v)[:19].replace("T", " ")
        env.filters["num"] = _num
        env.filters["human_bytes"] = human_bytes
        env.filters["sevname"] = _sevname
        env.filters["as_yaml"] = _as_yaml
        env.globals["CSP"] = CSP
        _ENV = env
    return _ENV


def _blank_none(value):
    """A missing value prints as nothing, not as 'None'."""
    return "" if value is None else value


def _num(value) -> str:
    if value is None or value == "" or isinstance(value, Undefined):
        return "\u2013"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def human_bytes(value) -> str:
    """1536 -> '1.5 KiB' (the exact count is in the sort key and the title)."""
    if isinstance(value, Undefined):
        return "\u2013"
    try:
        n = float(value)
    except (TypeError, ValueError):
        return "\u2013"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./:-]*\Z")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none"}


def _yaml_scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and not text.endswith(":"):
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _as_yaml(value) -> str:
    """A rule (closest or suggested) as YAML a user can paste into the baseline; escaped by the template.

    Rules are flat (scalars and lists of scalars): written by hand, because yaml.safe_dump costs ~1 ms a call
    and a report can hold thousands of rules.
    """
    if not isinstance(value, dict):
        return _yaml_scalar(value)
    lines = []
    for key, v in value.items():
        if isinstance(v, (list, tuple)):
            lines.append(f"{_yaml_scalar(key)}: [{', '.join(_yaml_scalar(x) for x in v)}]")
        elif isinstance(v, dict):
            lines.append(f"{_yaml_scalar(key)}: {json.dumps(v, ensure_ascii=False, default=str)}")
        else:
            lines.append(f"{_yaml_scalar(key)}: {_yaml_scalar(v)}")
    return "\n".join(lines)


def _sevname(value) -> str:
    """A severity as one of five fixed names (it is also used as a CSS class)."""
    if isinstance(value, Undefined):
        return "info"
    try:
        return SEVERITY_NAMES.get(int(value), "info")
    except (TypeError, ValueError):
        return value if value in SEVERITY_NAMES.values() else "info"


def _quality(capture_quality: dict | None, inputs: list[dict] | None) -> dict:
    """Packets, every outcome counter (the bad ones marked), file issues (capped), per-input summaries."""
    cq = capture_quality or {}
    outcomes = cq.get("outcomes") or {}
    rows = []
    for name, count in sorted(outcomes.items(), key=lambda kv: (kv[0] != "decoded", -int(kv[1] or 0), kv[0])):
        name = str(name)
        bad = name.startswith("malformed") or name in ("truncated", "unsupported-linktype", "unreadable-record",
                                                       "unsupported-encapsulation", "internal-error")
        rows.append({"name": name, "count": int(count or 0), "bad": bad})
    packets = cq.get("packets")
    if packets is None:
        packets = sum(r["count"] for r in rows)
    issues = list(cq.get("issues") or [])
    for f in inputs or []:  # per-file issues when the caller gave only the inputs
        if not cq.get("issues"):
            issues += [dict(i, file=f.get("file")) for i in f.get("issues") or []]
    bad_total = sum(r["count"] for r in rows if r["bad"])
    return {"packets": int(packets or 0), "outcomes": rows, "bad": bad_total, "issues": issues[:MAX_ISSUES],
            "issues_total": len(issues), "inputs": list(inputs or [])[:MAX_ISSUES],
            "inputs_total": len(inputs or [])}


def _hostnames(hostnames: dict | None) -> tuple[dict[str, list[str]], list[tuple[str, list[str]]]]:
    names = {str(ip): [str(n) for n in (v if isinstance(v, (list, tuple)) else [v])][:10]
             for ip, v in (hostnames or {}).items()}
    return names, sorted(names.items())[:MAX_HOSTNAMES]


def check_view(result: dict) -> dict:
    """What the check template draws, from Contract 1's check result."""
    violations = [v for v in result.get("violations") or [] if isinstance(v, dict)]
    totals = dict(result.get("totals") or {})
    by_type: dict[str, list[dict]] = defaultdict(list)
    type_counts: Counter = Counter()
    worst: dict[str, int] = {}
    for i, v in enumerate(violations):
        t = str(v.get("type") or "unknown")
        type_counts[t] += 1
        worst[t] = max(worst.get(t, 1), to_int(v.get("severity"), 1))
        if i < MAX_VIOLATIONS:
            by_type[t].append(v)
    groups = [{"type": t, "count": type_counts[t], "severity": worst[t], "violations": by_type[t]}
              for t in sorted(type_counts, key=lambda t: (-worst[t], t))]
    names, host_rows = _hostnames(result.get("hostnames"))
    points = [(v.get("first_seen"), v.get("severity"), f"{v.get('type')}: {v.get('message') or ''}")
              for v in violations if v.get("first_seen") is not None]
    verdict = "fail" if result.get("verdict") == "fail" else "pass"
    return {
        "title": f"nvpcap check: {verdict.upper()}", "result": result, "verdict": verdict,
        "mode": result.get("mode") or "monitor", "fail_on": result.get("fail_on") or "any",
        "tool": result.get("tool") or {}, "baseline": result.get("baseline") or {},
        "rule_packs": result.get("rule_packs") or [], "totals": totals, "groups": groups,
        "violations_total": len(violations), "violations_shown": min(len(violations), MAX_VIOLATIONS),
        "accepted": sum(1 for v in violations if v.get("accepted")),
        "graph": graph_layout(result.get("graph")),
        "timeline": timeline(points, totals.get("first_ts"), totals.get("last_ts")),
        "quality": _quality(result.get("capture_quality"), result.get("inputs")),
        "names": names, "hostnames": host_rows, "hostnames_total": len(names),
    }


def render_check_report_html(result: dict) -> str:
    """The check result as one self-contained HTML page."""
    return environment().get_template("check.html.j2").render(**check_view(result))


def render_check_report(result: dict, path: str) -> None:
    _write(path, render_check_report_html(result))


def analysis_view(model: dict) -> dict:
    """What the analysis template draws, from AnalysisCollector.model()."""
    names, host_rows = _hostnames(model.get("hostnames"))
    alerts = model.get("alerts") or {}
    points = [(a.get("ts"), a.get("severity"), f"{a.get('rule_id')} {a.get('rule_name') or ''}")
              for a in alerts.get("records") or [] if a.get("ts") is not None]
    totals = model.get("totals") or {}
    protocols = model.get("protocols") or []
    peak = max((int(p.get("bytes") or 0) for p in protocols), default=0) or 1
    return {
        "title": "nvpcap analysis", "model": model, "tool": model.get("tool") or {}, "totals": totals,
        "protocols": protocols, "protocol_peak": peak,
        "top_talkers": model.get("top_talkers") or [], "top_conversations": model.get("top_conversations") or [],
        "alerts": alerts, "anomalies": model.get("anomalies") or [],
        "timeline": timeline(points, totals.get("first_ts"), totals.get("last_ts")),
        "quality": _quality(model.get("capture_quality"), model.get("inputs")),
        "names": names, "hostnames": host_rows, "hostnames_total": len(names),
        "rule_packs": model.get("rule_packs") or [],
    }


def render_analysis_report_html(model: dict) -> str:
    return environment().get_template("analysis.html.j2").render(**analysis_view(model))


def render_analysis_report(model: dict, path: str) -> None:
    _write(path, render_analysis_report_html(model))


def _write(path: str, text: str) -> None:
    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")


__all__ = ["render_check_report", "render_check_report_html", "render_analysis_report",
           "render_analysis_report_html", "check_view", "analysis_view", "environment", "human_bytes"]
