"""Violation output for CI: `nvpcap baseline check --format table|json|jsonl|csv|sarif|junit`.

One entry point, `write_violations(result, fmt, stream)`, renders the check result (Contract 1 of the issue-5 brief)
into the format a CI system reads. Every string in a violation may come from a capture (server names, rule
snippets, file names), so each writer escapes for its own syntax:

- table: a rich table; capture strings go in as `rich.text.Text` (never parsed as markup or emoji) and control
  characters (ESC included, which rich keeps) are shown as `\\xNN`, so a capture cannot drive the terminal.
- json / jsonl: `json.dumps` with ASCII output, so lone surrogates from undecodable capture bytes cannot make
  the UTF-8 write fail.
- csv: one row per violation, flat columns. Scalars are written as they are; lists and objects (clients, servers,
  server_names, evidence, closest_rule, suggested_rule) are compact JSON text in their column, and the first
  evidence is also flattened into `pcap_filename`, `first_frame`, `last_frame`, `community_id` for quick filtering.
  Cells are not prefixed against spreadsheet formula injection (that would change the text); open the file as
  data, not as a formula sheet.
- sarif: SARIF 2.1.0 (OASIS). One reportingDescriptor per violation type, and per alert rule for dlp/waf/threat/
  ids (`dlp/2002`); level from severity (high/critical error, medium warning, low/info note);
  partialFingerprints `nvpcapFingerprint/v1`; the location is the first evidence's pcap (a relative URI,
  percent-encoded) with logicalLocations naming the frames, since a pcap has no text lines and the evidence has no
  byte offsets for a region; accepted violations carry a suppression of kind `external`. No informationUri: the
  tool names no network address.
- junit: one testsuite "nvpcap baseline check", one testcase per violation: `failure` when it is not accepted and
  at/above the result's fail_on, `skipped` when accepted, passing otherwise; one passing testcase when there are
  no violations. Built with ElementTree (escapes markup); characters XML 1.0 forbids are written as `\\xNN`.
"""
from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from typing import Any, TextIO
from urllib.parse import quote

FORMATS = ("table", "json", "jsonl", "csv", "sarif", "junit")
SEVERITY_RANK = {"any": 0, "info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
ALERT_TYPES = ("dlp", "waf", "threat", "ids")
TYPE_TEXT = {
    "new_edge": "A connection between two groups that the baseline has no rule for",
    "new_port": "A known edge used on a port its rules do not allow",
    "new_app": "A known edge carrying an application its rules do not allow",
    "app_unexpected_port": "An allowed application seen on a port where it was not learned",
    "external_destination": "A connection to an address outside every group and private range",
    "dlp": "A data-loss-prevention rule matched",
    "waf": "A web-application-firewall rule matched",
    "threat": "A NeuVector threat signature matched",
    "ids": "An IDS (Suricata) rule matched",
}
CSV_COLUMNS = (
    "fingerprint", "type", "severity", "severity_name", "action", "accepted", "from_group", "to_group", "proto",
    "port", "app", "message", "flows", "packets", "bytes", "denied_packets", "first_seen", "last_seen",
    "rule_id", "rule_name", "snippet", "pcap_filename", "first_frame", "last_frame", "community_id",
    "clients", "servers", "server_names", "evidence", "closest_rule", "suggested_rule",
)
_CSV_JSON = ("clients", "servers", "server_names", "evidence", "closest_rule", "suggested_rule")

# C0/C1 controls, DEL and lone surrogates (from undecodable bytes): shown as escapes, never sent to a terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What XML 1.0 (section 2.2, production [2] Char) does not allow, plus surrogates that cannot be encoded.
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def write_violations(result: dict, fmt: str, stream: TextIO) -> None:
    """Write the check result to `stream` in format `fmt`; ValueError for an unknown format."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    writer(result, stream)


def fails(violation: dict, fail_on: str) -> bool:
    """True when this violation alone makes the check fail: not accepted and at/above fail_on."""
    if violation.get("accepted"):
        return False
    return int(violation.get("severity", 0)) >= SEVERITY_RANK.get(fail_on, 0)


def _escape_char(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def printable(value: Any) -> str:
    """Text for a terminal: control characters as \\xNN."""
    return _CONTROL.sub(_escape_char, "" if value is None else str(value))


def xml_text(value: Any) -> str:
    """Text XML 1.0 can carry: forbidden characters as \\xNN / \\uNNNN (markup is escaped by ElementTree)."""
    return _XML_BAD.sub(_escape_char, "" if value is None else str(value))


def _json_default(o: Any) -> Any:
    """numpy/pandas scalars (from the pandas check) as plain numbers; sets as lists; anything else as text."""
    if hasattr(o, "item") and callable(o.item):
        try:
            return o.item()
        except (TypeError, ValueError):
            pass
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def _proto_port(v: dict) -> str:
    proto, port = v.get("proto"), v.get("port")
    if proto is None and port is None:
        return ""
    return f"{proto or 'any'}/{port if port is not None else 'any'}"


def _violations(result: dict) -> list[dict]:
    return list(result.get("violations") or [])


# ---- table -------------------------------------------------------------------------------------------------------

def _write_table(result: dict, stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    width = None if getattr(stream, "isatty", lambda: False)() else 160   # a file or pipe gets a fixed width
    console = Console(file=stream, width=width, highlight=False, emoji=False, markup=False, soft_wrap=False)
    t = result.get("totals") or {}
    verdict = str(result.get("verdict", "?")).upper()
    console.print(Text(
        f"{verdict}: {t.get('violations', len(_violations(result)))} violation(s), {t.get('accepted', 0)} accepted, "
        f"fail-on {result.get('fail_on', 'any')}, mode {result.get('mode', '?')}, "
        f"{t.get('flows_checked', 0)} of {t.get('flows', 0)} flows checked"
        + (f", {t.get('denied_packets', 0)} packets denied" if result.get("mode") == "protect" else ""),
        style="bold red" if verdict == "FAIL" else "bold green"))
    vs = _violations(result)
    if not vs:
        return
    table = Table(show_lines=False)
    protect = result.get("mode") == "protect"
    cols = ["severity", "type", "from -> to", "proto/port", "app", "flows"] + (["denied pkts"] if protect else [])
    for col in [*cols, "fingerprint"]:
        table.add_column(col, overflow="fold")
    for v in vs:
        sev = printable(v.get("severity_name"))
        if v.get("accepted"):
            sev += " (accepted)"
        app = " ".join(str(x) for x in (v.get("app"), v.get("rule_name")) if x)
        table.add_row(Text(sev), Text(printable(v.get("type"))),
                      Text(f"{printable(v.get('from_group'))} -> {printable(v.get('to_group'))}"),
                      Text(printable(_proto_port(v))), Text(printable(app)), Text(str(v.get("flows", ""))),
                      *([Text(str(v.get("denied_packets", 0)))] if protect else []),
                      Text(printable(v.get("fingerprint"))),
                      style="dim" if v.get("accepted") else None)
    console.print(table)


# ---- json / jsonl / csv ------------------------------------------------------------------------------------------

def _write_json(result: dict, stream: TextIO) -> None:
    json.dump(result, stream, indent=2, default=_json_default)
    stream.write("\n")


def _write_jsonl(result: dict, stream: TextIO) -> None:
    for v in _violations(result):
        stream.write(json.dumps(v, separators=(",", ":"), default=_json_default))
        stream.write("\n")


def _csv_row(v: dict) -> dict:
    row: dict[str, Any] = {}
    for col in CSV_COLUMNS:
        val = v.get(col)
        if col in _CSV_JSON:
            row[col] = "" if val is None else json.dumps(val, separators=(",", ":"), default=_json_default)
        elif isinstance(val, bool):
            row[col] = "true" if val else "false"
        elif isinstance(val, str):
            row[col] = _SURROGATE.sub(_escape_char, val)
        else:
            row[col] = "" if val is None else val
    ev = (v.get("evidence") or [{}])[0]
    for col in ("pcap_filename", "first_frame", "last_frame", "community_id"):
        val = ev.get(col)
        row[col] = "" if val is None else _SURROGATE.sub(_escape_char, val) if isinstance(val, str) else val
    return row


def _write_csv(result: dict, stream: TextIO) -> None:
    w = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for v in _violations(result):
        w.writerow(_csv_row(v))


# ---- SARIF 2.1.0 -------------------------------------------------------------------------------------------------

def _level(severity_name: str | None) -> str:
    # SARIF 2.1.0 section 3.27.10: level is one of none, note, warning, error.
    return {"critical": "error", "high": "error", "medium": "warning"}.get(str(severity_name), "note")


def _rule_id(v: dict) -> str:
    kind = str(v.get("type") or "unknown")
    if kind in ALERT_TYPES and v.get("rule_id") is not None:
        return f"{kind}/{v['rule_id']}"
    return kind


def _descriptor(rule_id: str, v: dict) -> dict:
    kind = str(v.get("type") or "unknown")
    d: dict[str, Any] = {"id": rule_id, "name": kind if rule_id == kind else str(v.get("rule_name") or rule_id),
                         "shortDescription": {"text": TYPE_TEXT.get(kind, kind)},
                         "defaultConfiguration": {"level": _level(v.get("severity_name"))},
                         "properties": {"tags": ["network", kind]}}
    if rule_id != kind and v.get("rule_name"):
        d["fullDescription"] = {"text": f"{TYPE_TEXT.get(kind, kind)}: {v['rule_name']}"}
    return d


def _uri(path: str) -> str:
    """A relative URI reference for a file name (RFC 3986 percent-encoding; undecodable bytes as their %XX)."""
    path = path.replace("\\", "/")
    try:
        return quote(path, safe="/", errors="surrogateescape")
    except UnicodeEncodeError:
        return quote(path, safe="/", errors="backslashreplace")


def _location(v: dict) -> list[dict]:
    ev = (v.get("evidence") or [None])[0]
    if not ev or not ev.get("pcap_filename"):
        return []
    name = str(ev["pcap_filename"])
    first, last = ev.get("first_frame"), ev.get("last_frame")
    frames = f"frame {first}" if last in (None, first) else f"frames {first}-{last}"
    return [{
        "physicalLocation": {"artifactLocation": {"uri": _uri(name)}},
        "logicalLocations": [{"name": frames, "fullyQualifiedName": f"{name}#{frames}", "kind": "frame"}],
        "message": {"text": f"{ev.get('src_ip')}:{ev.get('src_port')} -> {ev.get('dest_ip')}:{ev.get('dest_port')} "
                            f"({frames}, community_id {ev.get('community_id')})"},
    }]


def sarif_log(result: dict) -> dict:
    """The check result as a SARIF 2.1.0 log (a dict ready for json.dump)."""
    rules: list[dict] = []
    index: dict[str, int] = {}
    results = []
    for v in _violations(result):
        rid = _rule_id(v)
        if rid not in index:
            index[rid] = len(rules)
            rules.append(_descriptor(rid, v))
        r: dict[str, Any] = {
            "ruleId": rid, "ruleIndex": index[rid], "level": _level(v.get("severity_name")),
            "message": {"text": str(v.get("message") or rid)},
            "partialFingerprints": {"nvpcapFingerprint/v1": str(v.get("fingerprint", ""))},
            "properties": {k: v.get(k) for k in (
                "type", "severity", "severity_name", "action", "from_group", "to_group", "proto", "port", "app",
                "flows", "packets", "bytes", "denied_packets", "first_seen", "last_seen", "clients", "servers",
                "server_names", "evidence", "closest_rule", "suggested_rule", "rule_id", "rule_name", "snippet")
                if v.get(k) is not None},
        }
        loc = _location(v)
        if loc:
            r["locations"] = loc
        if v.get("accepted"):
            r["suppressions"] = [{"kind": "external", "status": "accepted",
                                  "justification": "fingerprint listed in the --accept file"}]
        results.append(r)
    tool = result.get("tool") or {}
    driver = {"name": str(tool.get("name", "nvpcap")), "version": str(tool.get("version", "")), "rules": rules}
    run_props = {k: result.get(k) for k in ("kind", "mode", "verdict", "fail_on", "baseline", "rule_packs", "totals")
                 if result.get(k) is not None}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0",
            "runs": [{"tool": {"driver": driver}, "results": results, "properties": run_props}]}


def _write_sarif(result: dict, stream: TextIO) -> None:
    json.dump(sarif_log(result), stream, indent=2, default=_json_default)
    stream.write("\n")


# ---- JUnit XML ---------------------------------------------------------------------------------------------------

def _case_detail(v: dict) -> str:
    lines = [f"{v.get('message', '')}", f"fingerprint: {v.get('fingerprint')}",
             f"severity: {v.get('severity_name')} ({v.get('severity')}), action: {v.get('action')}",
             f"flows: {v.get('flows')}, packets: {v.get('packets')}, bytes: {v.get('bytes')}"]
    for key in ("server_names", "clients", "servers"):
        if v.get(key):
            lines.append(f"{key}: {', '.join(map(str, v[key]))}")
    for ev in v.get("evidence") or []:
        lines.append(f"evidence: {ev.get('pcap_filename')} frames {ev.get('first_frame')}-{ev.get('last_frame')} "
                     f"{ev.get('src_ip')}:{ev.get('src_port')} -> {ev.get('dest_ip')}:{ev.get('dest_port')} "
                     f"community_id {ev.get('community_id')}")
    if v.get("suggested_rule"):
        lines.append(f"suggested rule: {json.dumps(v['suggested_rule'], ensure_ascii=False, default=_json_default)}")
    return xml_text("\n".join(lines))


def junit_tree(result: dict) -> ET.Element:
    """The check result as a JUnit <testsuites> element (one suite, one testcase per violation)."""
    fail_on = str(result.get("fail_on") or "any")
    vs = _violations(result)
    suites = ET.Element("testsuites", name="nvpcap")
    suite = ET.SubElement(suites, "testsuite", name="nvpcap baseline check")
    failures = skipped = 0
    for v in vs:
        name = (f"{v.get('type')} {v.get('from_group')} -> {v.get('to_group')} {_proto_port(v)}"
                f"{' ' + str(v.get('app') or v.get('rule_name')) if v.get('app') or v.get('rule_name') else ''}"
                f" [{v.get('fingerprint')}]")
        case = ET.SubElement(suite, "testcase", name=xml_text(name), classname=xml_text(f"nvpcap.{v.get('type')}"))
        if v.get("accepted"):
            skipped += 1
            ET.SubElement(case, "skipped", message="accepted: fingerprint listed in the --accept file")
        elif fails(v, fail_on):
            failures += 1
            f = ET.SubElement(case, "failure", message=xml_text(v.get("message")),
                              type=xml_text(v.get("severity_name")))
            f.text = _case_detail(v)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = xml_text(f"below --fail-on {fail_on}\n") + _case_detail(v)
    if not vs:
        ET.SubElement(suite, "testcase", name="no violations", classname="nvpcap.check")
    tests = max(len(vs), 1)
    for el in (suites, suite):
        el.set("tests", str(tests))
        el.set("failures", str(failures))
        el.set("errors", "0")
        el.set("skipped", str(skipped))
    return suites


def _write_junit(result: dict, stream: TextIO) -> None:
    tree = junit_tree(result)
    ET.indent(tree)
    stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    stream.write(ET.tostring(tree, encoding="unicode"))
    stream.write("\n")


_WRITERS = {"table": _write_table, "json": _write_json, "jsonl": _write_jsonl, "csv": _write_csv,
            "sarif": _write_sarif, "junit": _write_junit}
