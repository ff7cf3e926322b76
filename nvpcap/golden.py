"""`nvpcap diff`: compare two record files (golden and new) by record identity, not by line order.

Each record gets an identity key from fields that name *which* thing it is (file, first frame, community id,
rule, anomaly kind), never from the counters that describe it; records with the same key are told apart by
their order among themselves. Matched records are compared field by field (nested fields as dotted paths);
records left over on both sides whose loose key (the key without frame numbers) agrees are paired too, so a
moved frame reads as `frame 6 -> 7`, not as one record removed and one added.
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field

# Wall-clock and release fields: they differ between runs without the analysis having changed.
DEFAULT_IGNORES = ("stats:version", "stats:seconds")
FRAME_FIELDS = ("first_frame", "frame")


class DiffInputError(Exception):
    """A file that cannot be compared (missing, not JSON lines, ...): a usage error, exit 2."""


# -- reading ---------------------------------------------------------------------------------------------------
def load_records(path: str) -> tuple[list[dict], str]:
    """Records of a JSONL file (analyze's jsonl/eve output) or a CSV file (analyze's csv output); and the kind.
    `-` reads JSON lines from standard input (`nvpcap analyze ... --deterministic | nvpcap diff golden.jsonl -`)."""
    if path == "-":
        try:
            return _jsonl_records(sys.stdin, "<stdin>"), "jsonl"
        except UnicodeDecodeError:
            raise DiffInputError("<stdin>: not UTF-8 text") from None
    if not os.path.exists(path):
        raise DiffInputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DiffInputError(f"{path}: is a directory, not a record file")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if path.lower().endswith(".csv"):
                return _csv_records(fh, path), "csv"
            return _jsonl_records(fh, path), "jsonl"
    except UnicodeDecodeError as exc:
        raise DiffInputError(f"{path}: not UTF-8 text (byte {exc.start}); is it a capture or parquet file?") from None
    except OSError as exc:
        raise DiffInputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _jsonl_records(fh, path: str) -> list[dict]:
    records = []
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DiffInputError(f"{path}: line {n}: not JSON ({exc.msg}); expected nvpcap analyze jsonl output") \
                from None
        if not isinstance(rec, dict):
            raise DiffInputError(f"{path}: line {n}: a JSON {type(rec).__name__}, expected one record object")
        records.append(rec)
    return records


def _csv_records(fh, path: str) -> list[dict]:
    try:
        rows = list(csv.DictReader(fh))
    except csv.Error as exc:
        raise DiffInputError(f"{path}: not CSV ({exc})") from None
    # CSV has no types: empty cells are nulls, the rest stay text (both sides are read the same way)
    return [{k: (v if v != "" else None) for k, v in row.items() if k is not None} for row in rows]


# -- ignoring fields ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ignore:
    """`FIELD` or `EVENT_TYPE:FIELD`; FIELD is a dotted path (`http.status`, `files.seconds`) or a last name
    (`seconds`), and covers everything under it."""

    event_type: str | None
    path: str

    @classmethod
    def parse(cls, text: str) -> Ignore:
        text = text.strip()
        et, sep, path = text.partition(":")
        if not sep:
            et, path = None, text
        if not path or (sep and not et):
            raise ValueError(f"--ignore {text!r}: expected FIELD or EVENT_TYPE:FIELD")
        return cls(et or None, path)

    def matches(self, event_type: str | None, path: str) -> bool:
        if self.event_type is not None and self.event_type != event_type:
            return False
        plain = _INDEX.sub("", path)  # files[x.pcap].seconds -> files.seconds
        for p in (path, plain):
            if p == self.path or p.startswith((self.path + ".", self.path + "[")):
                return True
            if "." not in self.path and (p.endswith("." + self.path) or ("." + self.path + ".") in p):
                return True
        return False


_INDEX = re.compile(r"\[[^\]]*\]")


def _ignored(ignores: list[Ignore], event_type: str | None, path: str) -> bool:
    return any(i.matches(event_type, path) for i in ignores)


# -- identity --------------------------------------------------------------------------------------------------
def _get(rec: dict, name: str, ignores: list[Ignore]):
    if _ignored(ignores, rec.get("event_type"), name):
        return None
    if name.startswith("anomaly."):
        sub = rec.get("anomaly")
        leaf = name.split(".", 1)[1]
        if isinstance(sub, dict):
            return sub.get(leaf)
        return rec.get(f"anomaly_{leaf}")  # CSV: flattened columns
    return rec.get(name)


def _text(value) -> str:
    return "" if value is None else str(value)


def loose_key(rec: dict, ignores: list[Ignore] = ()) -> tuple:
    """Which thing a record is, without its frame numbers: event type, file, flow (community id), rule,
    anomaly kind; a stats record is one per run."""
    ignores = list(ignores)
    et = rec.get("event_type")
    if et == "stats":
        return ("stats",)
    parts = [et, _get(rec, "pcap_filename", ignores), _get(rec, "community_id", ignores)]
    if et == "alert":
        parts += [_get(rec, "category", ignores), _get(rec, "rule_id", ignores)]
    if et == "anomaly":
        parts += [_get(rec, "anomaly.type", ignores), _get(rec, "anomaly.event", ignores),
                  _get(rec, "offset", ignores)]
    if _get(rec, "community_id", ignores) is None and et != "anomaly":
        parts += [_get(rec, c, ignores) for c in ("src_ip", "src_port", "dest_ip", "dest_port", "proto")]
    return tuple(_text(p) for p in parts)


def record_key(rec: dict, ignores: list[Ignore] = ()) -> tuple:
    """The identity key: loose key plus the record's first frame (flows, alerts) or frame (the rest)."""
    ignores = list(ignores)
    frame = None
    for name in FRAME_FIELDS:
        frame = _get(rec, name, ignores)
        if frame is not None:
            break
    return loose_key(rec, ignores) + (_text(frame),)


def label(rec: dict) -> str:
    """How a record is named in the output: `flow 1:abc... (a.pcap frame 3)`."""
    et = rec.get("event_type") or "record"
    if et == "stats":
        return "stats"
    frame = rec.get("first_frame") if rec.get("first_frame") is not None else rec.get("frame")
    where = " ".join(p for p in (_text(rec.get("pcap_filename")), f"frame {frame}" if frame is not None else "",
                                  f"offset {rec['offset']}" if rec.get("offset") is not None else "") if p)
    what = et
    if et == "alert":
        what = f"alert {rec.get('rule_id')} {rec.get('rule_name') or ''}".rstrip()
    elif et == "anomaly":
        anomaly = rec.get("anomaly") if isinstance(rec.get("anomaly"), dict) else {}
        what = f"anomaly {anomaly.get('event') or rec.get('anomaly_event')}"
    cid = rec.get("community_id")
    ident = f" {cid}" if cid else ""
    if not cid and rec.get("src_ip") is not None:
        ends = [f"{ip}:{port}" if port is not None else str(ip)
                for ip, port in ((rec.get("src_ip"), rec.get("src_port")), (rec.get("dest_ip"), rec.get("dest_port")))]
        ident = f" {rec.get('proto')} {ends[0]} -> {ends[1]}"
    return _safe(f"{what}{ident}" + (f" ({where})" if where else ""))


# -- comparing -------------------------------------------------------------------------------------------------
def flatten(value, prefix: str = "") -> dict[str, object]:
    """Nested fields as dotted paths; lists of per-file dicts are indexed by file name (files[a.pcap].packets),
    other lists of dicts by position, lists of plain values are one leaf."""
    out: dict[str, object] = {}
    if isinstance(value, dict):
        if not value and prefix:
            out[prefix] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        names = [v.get("file") for v in value]
        by_name = all(isinstance(n, str) for n in names) and len(set(names)) == len(names)
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{names[i] if by_name else i}]"))
    else:
        out[prefix] = value
    return out


@dataclass
class FieldChange:
    field: str
    expected: object
    actual: object


@dataclass
class Changed:
    label: str
    fields: list[FieldChange]


@dataclass
class DiffResult:
    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    changed: list[Changed] = field(default_factory=list)
    equal: int = 0
    expected_count: int = 0
    actual_count: int = 0
    ignores: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @property
    def field_changes(self) -> int:
        return sum(len(c.fields) for c in self.changed)

    def summary(self) -> str:
        if self.same:
            return f"same: {self.equal} records match" + (f" (ignoring {', '.join(self.ignores)})"
                                                          if self.ignores else "")
        return (f"differ: {len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed "
                f"({self.field_changes} field{'s' if self.field_changes != 1 else ''}), {self.equal} equal; "
                f"expected {self.expected_count} records, actual {self.actual_count}")


def _compare(exp: dict, act: dict, ignores: list[Ignore]) -> list[FieldChange]:
    et = exp.get("event_type") or act.get("event_type")
    a, b = flatten(exp), flatten(act)
    changes = []
    for path in list(a) + [p for p in b if p not in a]:
        if _ignored(ignores, et, path):
            continue
        va, vb = a.get(path, _MISSING), b.get(path, _MISSING)
        if va != vb or (type(va) is not type(vb) and not _same_number(va, vb)):
            changes.append(FieldChange(path, va, vb))
    return changes


def _same_number(a, b) -> bool:
    """1 and 1.0 are the same value (an analyzer change from int to float is not a finding)."""
    num = (int, float)
    return isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool) \
        and a == b


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def _group(records: list[dict], keyf) -> dict[tuple, list[dict]]:
    """Records by key; records sharing a key are ordered by their own content, so input order never matters."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[keyf(r)].append(r)
    for g in groups.values():
        g.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return groups


def diff_records(expected: list[dict], actual: list[dict], ignore: list[str] | tuple[str, ...] = (),
                 default_ignores: bool = True) -> DiffResult:
    """Compare two record lists; raises ValueError for a malformed --ignore."""
    specs = list(DEFAULT_IGNORES if default_ignores else ()) + list(ignore)
    ignores = [Ignore.parse(s) for s in specs]
    result = DiffResult(expected_count=len(expected), actual_count=len(actual), ignores=specs)
    exp_groups = _group(expected, lambda r: record_key(r, ignores))
    act_groups = _group(actual, lambda r: record_key(r, ignores))
    left_exp: list[dict] = []
    left_act: list[dict] = []
    for key in sorted(set(exp_groups) | set(act_groups)):
        e, a = exp_groups.get(key, []), act_groups.get(key, [])
        for x, y in zip(e, a):
            _record_pair(result, x, y, ignores)
        left_exp += e[len(a):]
        left_act += a[len(e):]
    # second pass: the same thing at other frame numbers
    exp_loose = _group(left_exp, lambda r: loose_key(r, ignores))
    act_loose = _group(left_act, lambda r: loose_key(r, ignores))
    for key in sorted(set(exp_loose) | set(act_loose)):
        e, a = exp_loose.get(key, []), act_loose.get(key, [])
        for x, y in zip(e, a):
            _record_pair(result, x, y, ignores)
        result.removed += e[len(a):]
        result.added += a[len(e):]
    result.removed.sort(key=record_key)  # a stable report order
    result.added.sort(key=record_key)
    result.changed.sort(key=lambda c: c.label)
    return result


def _record_pair(result: DiffResult, exp: dict, act: dict, ignores: list[Ignore]) -> None:
    changes = _compare(exp, act, ignores)
    if changes:
        result.changed.append(Changed(label(exp), changes))
    else:
        result.equal += 1


def diff_files(expected: str, actual: str, ignore: list[str] | tuple[str, ...] = (),
               default_ignores: bool = True) -> DiffResult:
    """Load and compare two record files; DiffInputError for files that cannot be compared."""
    exp, kind_e = load_records(expected)
    act, kind_a = load_records(actual)
    if kind_e != kind_a:
        raise DiffInputError(f"cannot compare a {kind_e} file ({expected}) with a {kind_a} file ({actual})")
    try:
        return diff_records(exp, act, ignore, default_ignores)
    except ValueError as exc:
        raise DiffInputError(str(exc)) from None


# -- showing ---------------------------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _safe(text: str) -> str:
    """Capture text for a terminal: control characters (ANSI escapes, bidi overrides) shown as \\uXXXX."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def show_value(value) -> str:
    if value is _MISSING:
        return "(absent)"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return _safe(text if len(text) <= 200 else text[:197] + '..."')
    return _safe(json.dumps(value, ensure_ascii=False, default=str))


def text_lines(result: DiffResult, max_diffs: int = 50) -> list[str]:
    """The differences, one per line, at most `max_diffs` of them (0 = all), then the summary line."""
    lines: list[str] = []
    for rec in result.removed:
        lines.append(f"- removed {label(rec)}")
    for rec in result.added:
        lines.append(f"+ added {label(rec)}")
    for c in result.changed:
        for f in c.fields:
            lines.append(f"~ {c.label}: {_safe(f.field)} {show_value(f.expected)} -> {show_value(f.actual)}")
    if max_diffs and len(lines) > max_diffs:
        rest = len(lines) - max_diffs
        more = f"... {rest} more difference{'s' if rest != 1 else ''} not shown (--max-diffs 0 shows all)"
        lines = [*lines[:max_diffs], more]
    return lines + [result.summary()]


def _absent(f: FieldChange) -> list[str]:
    """Which side lacks the field (JSON has no 'absent' value; null is a value)."""
    return [side for side, v in (("expected", f.expected), ("actual", f.actual)) if v is _MISSING]


def as_json(result: DiffResult, max_diffs: int = 50) -> dict:
    """The differences as a JSON-able dict; each list is cut at `max_diffs` entries (0 = all)."""
    def cut(items: list) -> tuple[list, int]:
        if max_diffs and len(items) > max_diffs:
            return items[:max_diffs], len(items) - max_diffs
        return items, 0

    removed, r_more = cut(result.removed)
    added, a_more = cut(result.added)
    changed, c_more = cut(result.changed)

    def val(v):
        return None if v is _MISSING else v

    return {
        "same": result.same,
        "summary": {"added": len(result.added), "removed": len(result.removed), "changed": len(result.changed),
                    "changed_fields": result.field_changes, "equal": result.equal,
                    "expected_records": result.expected_count, "actual_records": result.actual_count,
                    "ignored": result.ignores},
        "removed": [{"label": label(r), "record": r} for r in removed],
        "added": [{"label": label(r), "record": r} for r in added],
        "changed": [{"label": c.label, "fields": [{"field": f.field, "expected": val(f.expected),
                                                   "actual": val(f.actual), "absent": _absent(f)} for f in c.fields]}
                    for c in changed],
        "not_shown": {"removed": r_more, "added": a_more, "changed": c_more},
    }
