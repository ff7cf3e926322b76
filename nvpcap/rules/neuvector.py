"""Load NeuVector DLP/WAF sensors: the CRD YAML (`kind: NvDlpSecurityRule` / `NvWafSecurityRule`, as
`kubectl get` or the console export writes them, one or several documents, or a `kind: List`) and the REST /
export JSON (`{"sensors": [...]}`, `{"sensor": {...}}` or one sensor object).

A sensor is `{name, comment, rules: [{name, patterns: [{key: pattern, op: regex|!regex, value, context}]}]}`.
nvpcap extensions on a rule (NeuVector ignores unknown keys, so the files stay importable there):
`validator: luhn|ssn|iban|entropy`, `severity: 1-5|info|low|medium|high|critical`,
`direction: any|request|response`, `description`.

Rule ids follow NeuVector's ranges, assigned in load order: user DLP from 20000, bundled (predefined) DLP from
30000, user WAF from 40000, bundled WAF from 49000 (so user WAF ids do not move when the packs are loaded).
A rule's own `id` (REST exports carry one) is kept when it is in its range and free.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from .model import CONTEXTS, DEFAULT_SEVERITY, DIRECTIONS, VALIDATOR_NAMES, LoadResult, Pattern, Rule, rule_problem
from .regex import regex_problem

KINDS = {"nvdlpsecurityrule": "dlp", "nvwafsecurityrule": "waf"}
CONTEXT_ALIASES = {"uri": "url", "head": "header", "headers": "header", "sql_query": "sql"}
SEVERITY_NAMES = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
OPS = {"regex": False, "!regex": True}

ID_RANGES: dict[tuple[str, bool], tuple[int, int]] = {  # (category, bundled) -> first, last
    ("dlp", False): (20000, 29999),
    ("dlp", True): (30000, 39999),
    ("waf", False): (40000, 48999),
    ("waf", True): (49000, 49999),
}


class RuleIds:
    """Hands out rule ids in load order. Share one across the files of a run so ids never collide."""

    def __init__(self) -> None:
        self.used: set[int] = set()
        self.sids: set[int] = set()  # Suricata rule ids (category ids, rule_id = sid: rules/suricata.py)
        self.next = {key: first for key, (first, _) in ID_RANGES.items()}

    def take(self, category: str, bundled: bool, wanted: Any = None) -> int | None:
        first, last = ID_RANGES[(category, bundled)]
        if isinstance(wanted, int) and first <= wanted <= last and wanted not in self.used:
            self.used.add(wanted)
            return wanted
        rid = self.next[(category, bundled)]
        while rid in self.used:
            rid += 1
        if rid > last:
            return None
        self.used.add(rid)
        self.next[(category, bundled)] = rid + 1
        return rid


def load_file(path: str | Path, ids: RuleIds | None = None, category: str | None = None,
              bundled: bool = False) -> LoadResult:
    """Sensors from one file (a .toml file is a gitleaks config: nvpcap/rules/gitleaks.py; a .conf file holds
    OWASP CRS / ModSecurity rules: nvpcap/rules/crs.py). `category`
    ("dlp"/"waf") is needed only for JSON without a CRD kind; without it the file name decides ("waf" in the
    name means WAF, else DLP)."""
    path = Path(path)
    if path.is_dir():  # a directory (e.g. CRS's rules/): its .conf files, in name order
        return load_files(sorted(path.glob("*.conf")), ids)
    if path.suffix.lower() == ".toml":  # a gitleaks config
        from . import gitleaks
        return gitleaks.load_file(path, ids)
    if path.suffix.lower() == ".conf":  # OWASP CRS / ModSecurity SecRules
        from . import crs
        return crs.load_file(path, ids)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return LoadResult(problems=[f"{path}: cannot read: {e}"])
    if category is None and "waf" in path.name.lower():
        category = "waf"
    return load_text(text, str(path), ids, category, bundled)


def load_files(paths: list[str | Path], ids: RuleIds | None = None) -> LoadResult:
    ids = ids or RuleIds()
    out = LoadResult()
    for p in paths:
        if Path(p).suffix.lower() == ".rules":  # Suricata/Snort rules
            from .suricata import load_file as load_suricata
            out.extend(load_suricata(p, ids))
        else:
            out.extend(load_file(p, ids))
    return out


def load_text(text: str, source: str, ids: RuleIds | None = None, category: str | None = None,
              bundled: bool = False) -> LoadResult:
    ids = ids or RuleIds()
    out = LoadResult()
    try:
        docs = _parse(text, source)
    except (ValueError, yaml.YAMLError) as e:
        out.problems.append(f"{source}: not valid YAML/JSON: {_one_line(e)}")
        return out
    for cat, sensor in _sensors(docs, category, source, out.problems):
        _load_sensor(sensor, cat, source, ids, bundled, out)
    return out


def _parse(text: str, source: str) -> list[Any]:
    stripped = text.lstrip()
    if source.lower().endswith(".json") or stripped[:1] in ("{", "["):
        return [json.loads(text)]
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _sensors(docs: list[Any], category: str | None, source: str,
             problems: list[str]) -> Iterator[tuple[str, dict]]:
    """(category, sensor dict) for every sensor in the documents, in file order."""
    for doc in docs:
        if isinstance(doc, list):
            yield from _sensors(doc, category, source, problems)
            continue
        if not isinstance(doc, dict):
            problems.append(f"{source}: a document is a {type(doc).__name__}, not a sensor: skipped")
            continue
        kind = str(doc.get("kind", ""))
        if kind.lower() in KINDS:
            sensor = (doc.get("spec") or {}).get("sensor") if isinstance(doc.get("spec"), dict) else None
            if not isinstance(sensor, dict):
                name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
                problems.append(f"{source}: {kind} {name!r} has no spec.sensor: skipped")
                continue
            yield KINDS[kind.lower()], sensor
        elif kind.lower() == "list" or "items" in doc:
            yield from _sensors(list(doc.get("items") or []), category, source, problems)
        elif kind:
            problems.append(f"{source}: document kind {kind!r} is not a DLP/WAF sensor: skipped")
        elif isinstance(doc.get("sensors"), list) or isinstance(doc.get("sensor"), dict):
            items = doc["sensors"] if isinstance(doc.get("sensors"), list) else [doc["sensor"]]
            cat = category or ("waf" if doc.get("type") == "waf" else "dlp")
            for s in items:
                if isinstance(s, dict):
                    yield cat, s
                else:
                    problems.append(f"{source}: a sensor is a {type(s).__name__}, not an object: skipped")
        elif "rules" in doc or "name" in doc:
            yield category or "dlp", doc
        else:
            problems.append(f"{source}: a document has neither a CRD kind nor sensors: skipped")


def _load_sensor(sensor: dict, category: str, source: str, ids: RuleIds, bundled: bool,
                 out: LoadResult) -> None:
    sname = str(sensor.get("name") or "")
    where = f"{source}: sensor {sname!r}"
    rules = sensor.get("rules")
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        out.problems.append(f"{where}: rules is not a list: sensor skipped")
        return
    comment = str(sensor.get("comment") or "")
    for raw in rules:
        if not isinstance(raw, dict):
            out.problems.append(f"{where}: a rule is a {type(raw).__name__}, not an object: skipped")
            continue
        rname = str(raw.get("name") or "")
        try:
            rule = _rule(raw, rname, sname, category, source, comment)
        except ValueError as e:
            out.problems.append(f"{where} rule {rname!r}: {e}: rule skipped")
            continue
        rid = ids.take(category, bundled, raw.get("id"))
        if rid is None:
            out.problems.append(f"{where} rule {rname!r}: no free {category} rule id left: rule skipped")
            continue
        out.rules.append(_with_id(rule, rid))


def _rule(raw: dict, rname: str, sname: str, category: str, source: str, comment: str) -> Rule:
    if not rname:
        raise ValueError("no name")
    pats = raw.get("patterns")
    if not isinstance(pats, list) or not pats:
        raise ValueError("no patterns")
    patterns = tuple(_pattern(p, i) for i, p in enumerate(pats))
    validator = raw.get("validator")
    if validator is not None:
        validator = str(validator).lower()
        if validator not in VALIDATOR_NAMES:
            raise ValueError(f"unknown validator {validator!r} (known: {', '.join(VALIDATOR_NAMES)})")
    direction = str(raw.get("direction") or "any").lower()
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r} (known: {', '.join(DIRECTIONS)})")
    rule = Rule(rule_id=0, name=rname, category=category, severity=_severity(raw.get("severity")),
                patterns=patterns, validator=validator, description=str(raw.get("description") or comment),
                source=f"{source}:{sname}", sensor=sname, direction=direction)
    problem = rule_problem(rule)
    if problem:
        raise ValueError(problem)
    return rule


def _pattern(p: Any, i: int) -> Pattern:
    if not isinstance(p, dict):
        raise ValueError(f"pattern {i + 1} is a {type(p).__name__}, not an object")
    key = str(p.get("key") or "pattern")
    if key != "pattern":
        raise ValueError(f"pattern {i + 1}: key {key!r} is not supported (NeuVector knows only 'pattern')")
    op = str(p.get("op") or "regex").lower()
    if op not in OPS:
        raise ValueError(f"pattern {i + 1}: op {op!r} is not regex or !regex")
    value = p.get("value")
    if not isinstance(value, str) or not value:
        raise ValueError(f"pattern {i + 1}: no regex value")
    context = str(p.get("context") or "body").lower()
    context = CONTEXT_ALIASES.get(context, context)
    if context not in CONTEXTS:
        raise ValueError(f"pattern {i + 1}: context {context!r} is not one of {', '.join(CONTEXTS)}")
    problem = regex_problem(value)
    if problem:
        raise ValueError(f"pattern {i + 1} /{value}/: {problem}")
    return Pattern(value, OPS[op], context)


def _severity(v: Any) -> int:
    if v is None:
        return DEFAULT_SEVERITY
    if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5:
        return v
    if isinstance(v, str) and v.strip().lower() in SEVERITY_NAMES:
        return SEVERITY_NAMES[v.strip().lower()]
    if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit() and 1 <= int(v) <= 5:
        return int(v)
    raise ValueError(f"severity {v!r} is not 1-5 or one of {', '.join(SEVERITY_NAMES)}")


def _with_id(rule: Rule, rid: int) -> Rule:
    return replace(rule, rule_id=rid)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300]
