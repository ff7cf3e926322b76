"""Load gitleaks configs (TOML, https://github.com/gitleaks/gitleaks `config/gitleaks.toml` shape) as DLP rules.

    [[rules]]
    id = "aws-access-token"                     # the rule's name
    description = "..."
    regex = '''\\b((?:AKIA|ASIA)[A-Z2-7]{16})\\b''' # Go RE2 syntax, translated (see go_regex)
    secretGroup = 1                             # the group holding the secret (default: first non-empty group)
    entropy = 3.5                               # the secret's Shannon entropy must exceed this
    keywords = ["akia", "asia"]                 # one must appear (case-insensitive) in the matched text
    tags = ["aws"]
    path = '''...'''                            # ignored: traffic has no file paths (path-only rules: a problem)
    [[rules.allowlists]]                        # also the older [rules.allowlist]
    regexes = ['''...''']; stopwords = ["example"]; regexTarget = "secret|match|line"; condition = "OR|AND"
    [allowlist]                                 # global, also [[allowlists]] (with targetRules = [ids])

Each rule becomes a DLP rule with one pattern, context "body" (bodies, and the raw payload of cleartext
protocols; nvpcap extension keys `context = "packet"` to also scan URLs and headers, and `severity = 1-5`),
validator "entropy" when the rule has a threshold. gitleaks semantics kept: the secret is `secretGroup` (or the
first non-empty group), entropy is checked on it (> threshold; "generic*" ids also need a digit), allowlist
regexes test the secret (regexTarget "secret") or the matched text ("match"; "line", which traffic does not
have, is read as "match"), stopwords the secret. Differences: keywords are checked in the matched text (gitleaks
checks the whole file; its regexes contain their keywords, so the results agree for its default config);
allowlist `paths`/`commits` never hold in traffic (an OR allowlist ignores them, an AND one never applies);
`[extend]` (the default config) is not read. Ids come from the user DLP range (RuleIds), in file order.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from .model import CONTEXTS, Allowlist, LoadResult, Pattern, Rule, rule_problem
from .neuvector import RuleIds, _one_line, _severity
from .regex import compile_python, pcre_to_python, regex_problem

SENSOR = "gitleaks"
TARGETS = {"secret": "secret", "match": "match", "line": "match"}

# POSIX classes RE2 accepts inside brackets; Python `re` does not know them
_POSIX = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ", "cntrl": "\\x00-\\x1f\\x7f",
          "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~", "punct": "!-/:-@\\[-`{-~",
          "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f"}
_FLAG_GROUP = re.compile(r"\(\?([A-Za-z]*)(?:-([A-Za-z]*))?([:)])")
_HEX_BRACE = re.compile(r"\\x\{([0-9A-Fa-f]+)\}")


def go_regex(regex: str) -> str:
    """A Go RE2 regex as a pattern for nvpcap's matchers (PCRE dialect, which the engine compiles caseless and
    dot-all): wrapped in (?-is:...) so it keeps RE2's defaults (case-sensitive, `.` not matching newlines), its
    leading flags (?i) folded into that group, later (?flags) turned into scoped groups up to the end of the
    enclosing group (closed and reopened around each |, as RE2 keeps them across branches), POSIX classes
    [[:alpha:]], \\Q...\\E quoting and \\x{HH} spelled out. Raises ValueError for what has no equivalent
    (Unicode classes \\p, the U flag, unbalanced groups or classes)."""
    on: set[str] = set()
    off: set[str] = set()
    i, n = 0, len(regex)
    m = _FLAG_GROUP.match(regex)
    if m and m.group(3) == ")":
        on, off = _flags(m)
        i = m.end()
    out: list[str] = []
    stack: list[list[str]] = [[]]  # per open group (the pattern itself first): flag groups open in it
    in_class = False
    while i < n:
        ch = regex[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = regex[i + 1]
            if nxt == "Q":
                end = regex.find("\\E", i + 2)
                lit = regex[i + 2 : end if end >= 0 else n]
                out.append("".join("\\" + c if not c.isalnum() else c for c in lit))
                i = end + 2 if end >= 0 else n
                continue
            if nxt in "pP":
                raise ValueError("Unicode classes (\\p, \\P) are not supported")
            if nxt == "C":
                raise ValueError("\\C is not supported")
            hx = _HEX_BRACE.match(regex, i)
            if hx:
                code = int(hx.group(1), 16)
                if code > 0xFF:
                    raise ValueError(f"\\x{{{hx.group(1)}}}: only byte values (up to \\x{{FF}}) are supported")
                out.append(f"\\x{code:02x}")
                i = hx.end()
                continue
            out.append(regex[i : i + 2])
            i += 2
            continue
        if in_class:
            if regex.startswith("[:", i):
                end = regex.find(":]", i + 2)
                name = regex[i + 2 : end] if end > 0 else ""
                if name in _POSIX:
                    out.append(_POSIX[name])
                    i = end + 2
                    continue
                if name.startswith("^"):
                    raise ValueError(f"negated POSIX class [:{name}:] is not supported")
            if ch == "]":
                in_class = False
            out.append(ch)
            i += 1
            continue
        if ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if regex[i : i + 1] == "^":
                out.append("^")
                i += 1
            if regex[i : i + 1] == "]":
                out.append("]")
                i += 1
            continue
        if ch == "(":
            fm = _FLAG_GROUP.match(regex, i)
            if fm:
                f_on, f_off = _flags(fm)
                spec = "".join(sorted(f_on)) + ("-" + "".join(sorted(f_off)) if f_off else "")
                out.append(f"(?{spec}:")
                if fm.group(3) == ":":
                    stack.append([])
                else:
                    stack[-1].append(spec)  # open to the end of the enclosing group
                i = fm.end()
                continue
            out.append(ch)
            stack.append([])
            i += 1
            continue
        if ch == "|":
            active = stack[-1]
            out.append(")" * len(active) + "|" + "".join(f"(?{s}:" for s in active))
            i += 1
            continue
        if ch == ")":
            if len(stack) < 2:
                raise ValueError("unbalanced )")
            out.append(")" * len(stack.pop()) + ")")
            i += 1
            continue
        out.append(ch)
        i += 1
    if in_class:
        raise ValueError("unterminated [")
    if len(stack) > 1:
        raise ValueError("missing )")
    out.append(")" * len(stack[0]))
    off |= {"i", "s"} - on
    spec = "".join(sorted(on)) + "-" + "".join(sorted(off))
    return f"(?{spec}:{''.join(out)})"


def _flags(m: re.Match[str]) -> tuple[set[str], set[str]]:
    f_on, f_off = set(m.group(1)), set(m.group(2) or "")
    bad = (f_on | f_off) - set("ims")
    if bad:
        raise ValueError(f"flag(s) {''.join(sorted(bad))} in {m.group(0)} not supported (only i, m, s)")
    return f_on, f_off


# -- loading --

def load_file(path: str | Path, ids: RuleIds | None = None) -> LoadResult:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return LoadResult(problems=[f"{path}: cannot read: {e}"])
    return load_text(text, str(path), ids)


def load_text(text: str, source: str, ids: RuleIds | None = None) -> LoadResult:
    ids = ids or RuleIds()
    out = LoadResult()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        out.problems.append(f"{source}: not valid TOML: {_one_line(e)}")
        return out
    if "extend" in doc:
        out.problems.append(f"{source}: [extend] (gitleaks' default config or another file) is not supported: "
                            "only the rules of this file are loaded")
    glob: list[tuple[Allowlist, tuple[str, ...]]] = []
    for key in ("allowlist", "allowlists"):
        for i, raw in enumerate(_tables(doc.get(key))):
            try:
                a = _allowlist(raw)
            except ValueError as e:
                out.problems.append(f"{source}: global {key} {i + 1}: {e}: allowlist ignored")
                continue
            targets = raw.get("targetRules") or ()
            if a is not None:
                glob.append((a, tuple(str(t) for t in targets) if isinstance(targets, list) else ()))
    rules = doc.get("rules")
    if rules is None:
        out.problems.append(f"{source}: no [[rules]]")
        return out
    if not isinstance(rules, list):
        out.problems.append(f"{source}: rules is not an array of tables")
        return out
    for n, raw in enumerate(rules):
        if not isinstance(raw, dict):
            out.problems.append(f"{source}: rule {n + 1} is a {type(raw).__name__}, not a table: skipped")
            continue
        rid_name = str(raw.get("id") or "")
        where = f"{source}: rule {rid_name!r}" if rid_name else f"{source}: rule #{n + 1}"
        try:
            rule = _rule(raw, rid_name, source, glob)
        except ValueError as e:
            out.problems.append(f"{where}: {e}: rule skipped")
            continue
        rid = ids.take("dlp", False)
        if rid is None:
            out.problems.append(f"{where}: no free dlp rule id left: rule skipped")
            continue
        out.rules.append(replace(rule, rule_id=rid))
    return out


def _rule(raw: dict, name: str, source: str, glob: list[tuple[Allowlist, tuple[str, ...]]]) -> Rule:
    if not name:
        raise ValueError("no id")
    if raw.get("required"):
        raise ValueError("composite rule ([[rules.required]]) is not supported")
    value = raw.get("regex")
    if value is None or value == "":
        if raw.get("path"):
            raise ValueError("path-only rule: traffic has no file paths")
        raise ValueError("no regex")
    if not isinstance(value, str):
        raise ValueError("regex is not a string")
    try:
        pattern = go_regex(value)
    except ValueError as e:
        raise ValueError(f"regex /{value}/: {e}") from None
    problem = regex_problem(pattern)
    if problem:
        raise ValueError(f"regex /{value}/: {problem}")
    group = raw.get("secretGroup", 0)
    if not isinstance(group, int) or isinstance(group, bool) or group < 0:
        raise ValueError(f"secretGroup {group!r} is not a group number")
    if group:
        try:
            groups = compile_python(pattern).groups
        except re.error:
            groups = None  # Hyperscan-only pattern: cannot check (nor extract; the whole match is used)
        if groups is not None and group > groups:
            raise ValueError(f"secretGroup {group}: the regex has {groups} group(s)")
    ent = raw.get("entropy")
    if ent is not None and (isinstance(ent, bool) or not isinstance(ent, (int, float)) or ent < 0):
        raise ValueError(f"entropy {ent!r} is not a number >= 0")
    threshold = float(ent) if ent else None
    keywords = _strings(raw.get("keywords"), "keywords")
    tags = _strings(raw.get("tags"), "tags")
    context = str(raw.get("context") or "body").lower()
    if context not in CONTEXTS:
        raise ValueError(f"context {context!r} is not one of {', '.join(CONTEXTS)}")
    allows = []
    for key in ("allowlist", "allowlists"):
        for i, a_raw in enumerate(_tables(raw.get(key))):
            try:
                a = _allowlist(a_raw)
            except ValueError as e:
                raise ValueError(f"{key} {i + 1}: {e}") from None
            if a is not None:
                allows.append(a)
    allows += [a for a, targets in glob if not targets or name in targets]
    rule = Rule(rule_id=0, name=name, category="dlp", severity=_severity(raw.get("severity")),
                patterns=(Pattern(pattern, False, context),), validator="entropy" if threshold else None,
                description=str(raw.get("description") or ""), source=f"{source}:{SENSOR}", sensor=SENSOR,
                entropy=threshold, secret_group=group, keywords=keywords, allowlists=tuple(allows), tags=tags)
    problem = rule_problem(rule)
    if problem:
        raise ValueError(problem)
    return rule


def _allowlist(raw: Any) -> Allowlist | None:
    """The allowlist as it applies to traffic, or None when nothing of it can hold there (paths, commits)."""
    if not isinstance(raw, dict):
        raise ValueError("not a table")
    condition = str(raw.get("condition") or "OR").upper()
    if condition not in ("OR", "AND"):
        raise ValueError(f"condition {condition!r} is not OR or AND")
    target = str(raw.get("regexTarget") or "secret").lower()
    if target not in TARGETS:
        raise ValueError(f"regexTarget {target!r} is not one of {', '.join(TARGETS)}")
    regexes = []
    for r in _strings(raw.get("regexes"), "regexes"):
        try:
            py = pcre_to_python(go_regex(r))
            re.compile(py)
        except (ValueError, re.error) as e:
            raise ValueError(f"regex /{r}/: {e}") from None
        regexes.append(py)
    stopwords = _strings(raw.get("stopwords"), "stopwords")
    if condition == "AND" and (raw.get("paths") or raw.get("commits")):
        return None  # needs a path or commit to match: never in traffic
    if not regexes and not stopwords:
        return None
    return Allowlist(tuple(regexes), stopwords, TARGETS[target], condition)


def _tables(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _strings(v: Any, what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"{what} is not a list of strings")
    return tuple(v)
