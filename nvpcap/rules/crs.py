"""Load a documented subset of OWASP Core Rule Set / ModSecurity rules (`.conf` files, SecRule syntax) as nvpcap
rules of category "waf" (docs/rules.md, "OWASP CRS subset").

    SecRule REQUEST_COOKIES|ARGS_NAMES|ARGS "@rx (?i)union\\s+select" \\
        "id:942999,phase:2,block,t:none,t:urlDecodeUni,msg:'SQLi',tag:'paranoia-level/1',severity:'CRITICAL'"

Parsing (no dependency): Apache-style lines, a trailing backslash joins the next line, `#` lines are comments;
arguments are words or "double"/'single' quoted strings (a backslash before the quote character escapes it,
other backslashes are kept for the regex). SecRule VARIABLES OPERATOR [ACTIONS] is read; every other directive
(SecAction, SecMarker, SecRuleEngine, SecComponentSignature, ...) is skipped silently. A rule with the `chain`
action takes the next SecRule as a link: all its links must hold (one Rule whose patterns the engine ANDs).

What is imported:
- operators @rx (and a bare regex), @pm (space-separated phrases: an alternation of escaped literals),
  @pmFromFile/@pmf (the phrases of local data files next to the rule file, one per line, `#` comments; never
  a URL), @contains (an escaped literal); `!` negates (a pattern that must not match). Any other operator
  (@detectSQLi, @detectXSS, @ipMatch, @eq, @lt, @within, @streq, @beginsWith, ...) and operator
  arguments with macros (%{...}) keep the rule out, with a problem naming it.
- variables -> contexts (VARIABLE_CONTEXTS below), as ModSecurity's body processors fill them: request-line
  variables and ARGS_GET -> "url"; ARGS and ARGS_NAMES -> "url" and "form" (the query's arguments and the fields
  of a form-encoded, JSON or multipart/form-data request body: protocols/httpforms.py); ARGS_POST -> "form";
  FILES, FILES_NAMES -> "files" (the file names of a multipart/form-data body's uploads, and their parts'
  names: ModSecurity's MULTIPART processor); XML -> "xml" (the body of a request sent as XML); REQUEST_BODY ->
  "body" (every request body, as with forceRequestBodyVariable); request headers and cookies -> "header"
  (direction request); RESPONSE_BODY -> "body" and RESPONSE_HEADERS -> "header" (direction response). Any other
  request body (binary, text) is in no ARGS/FILES/XML context. In url, header, form and files content a link
  scans each item its variables name alone, as ModSecurity evaluates them (rules/fields.py: a selection step
  before the transformations): each argument value (ARGS) or name, each form field, each uploaded file's name,
  the path, the query string, the whole url, each header value or name, each cookie; a selector `:User-Agent`
  picks that header (cookie, argument, file part), a regex selector `:/.../` takes them all. An exclusion
  (`!REQUEST_COOKIES:/__utm/`) is ignored (a possible false positive). A count (`&ARGS`) keeps the rule
  out; a variable nvpcap has no content for (TX, MATCHED_VARS, REQUEST_METHOD, ...) is dropped from the list,
  and a link left with none keeps the rule out.
- A link's context names every context of its variables, joined by "+" ("form+header+url+xml" for the usual
  `REQUEST_COOKIES|ARGS_NAMES|ARGS|XML:/*`); the pattern is scanned in each. Contexts and direction are per
  link; the rule's direction is request, response or, when links differ, any. Every rule is restricted to HTTP
  flows (app_proto http, http2, grpc and the HTTP-based apps), so it never scans SQL statements or raw streams.
- actions: id (the rule_id, required; CRS ids 9xxxxx are outside NeuVector's ranges; one id space with the
  Suricata sids of the run: a duplicate keeps the rule out), msg (the name; else "crs-<id>"), severity
  (CRITICAL/EMERGENCY/ALERT or 0-2 -> 5, ERROR/3 -> 4, WARNING/4 -> 3, NOTICE/5 -> 2, else 2), tag (kept in
  Rule.tags; 'paranoia-level/N' above the chosen level skips the rule silently), t: (transformations, per link:
  t:none resets the list; rules/transforms.py). Rules with `nolog` (they never log) or `skip`/`skipAfter`
  (control flow: paranoia and anomaly-score bookkeeping) are skipped silently. Other actions are ignored.
- transformations: kept on each pattern (Pattern.transforms) and applied by the engine to url and header content
  (lowercase is free: patterns compile caseless; urlDecode/urlDecodeUni are free in url and form, whose items
  are decoded already). Bodies (body, xml) are scanned as streams: chains of chunk-safe transformations
  (removeNulls, replaceNulls, removeWhitespace, compressWhitespace) are applied call by call; a rule with a body
  or xml link whose chain has any other is imported but tagged "nvpcap:approximate" (its body is scanned
  untransformed: it may miss encoded content there).
  An unknown transformation (md5, sha1, length, ...) keeps the rule out.
- regexes: ModSecurity's PCRE, taken as the engine takes NeuVector's (Hyperscan, Python `re` after
  rules/regex.py's rewrite); compiled caseless like every nvpcap pattern.

The chosen paranoia level: the `paranoia` argument, else the module's PARANOIA (1) at call time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import fields
from . import transforms as tf
from .model import LoadResult, Pattern, Rule, context_parts, rule_problem
from .regex import regex_problem
from .suricata import APPS, escape_bytes

PARANOIA = 1  # default paranoia level (the CLI may set it: --crs-paranoia)
CATEGORY = "waf"
APPROXIMATE_TAG = "nvpcap:approximate"
HTTP_APPS = APPS["http"]

# variable -> (contexts, direction)
VARIABLE_CONTEXTS: dict[str, tuple[tuple[str, ...], str]] = {
    **dict.fromkeys(("REQUEST_URI", "REQUEST_URI_RAW", "REQUEST_FILENAME", "REQUEST_BASENAME", "QUERY_STRING",
                     "ARGS_GET", "ARGS_GET_NAMES", "REQUEST_LINE"), (("url",), "request")),
    **dict.fromkeys(("ARGS", "ARGS_NAMES"), (("url", "form"), "request")),  # query arguments and form fields
    **dict.fromkeys(("ARGS_POST", "ARGS_POST_NAMES"), (("form",), "request")),
    **dict.fromkeys(("REQUEST_HEADERS", "REQUEST_HEADERS_NAMES", "REQUEST_COOKIES", "REQUEST_COOKIES_NAMES"),
                    (("header",), "request")),
    **dict.fromkeys(("FILES", "FILES_NAMES"), (("files",), "request")),  # a multipart body's uploads
    "REQUEST_BODY": (("body",), "request"),
    "XML": (("xml",), "request"),
    "RESPONSE_BODY": (("body",), "response"),
    "RESPONSE_HEADERS": (("header",), "response"),
    "RESPONSE_HEADERS_NAMES": (("header",), "response"),
}
SEVERITIES = {"EMERGENCY": 5, "ALERT": 5, "CRITICAL": 5, "ERROR": 4, "WARNING": 3, "NOTICE": 2,
              "0": 5, "1": 5, "2": 5, "3": 4, "4": 3, "5": 2}
DEFAULT_SEVERITY = 2
SUPPORTED_OPERATORS = ("rx", "pm", "pmfromfile", "pmf", "contains")
MAX_DATA_FILE = 1 << 20  # bytes of a @pmFromFile phrase file read
_PARANOIA_TAG = re.compile(r"paranoia-level/(\d+)")


class Unsupported(ValueError):
    """Outside the subset (the message says what): the rule is not imported."""


@dataclass
class SecRule:
    """One SecRule directive: variables, operator and actions as written (quotes removed)."""

    line: int
    variables: str
    operator: str
    actions: list[tuple[str, str | None]] = field(default_factory=list)

    def action(self, name: str) -> str | None:
        return next((v for k, v in self.actions if k == name), None)

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.actions)


# ---- parsing ----

def directives(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, arguments) of every directive: continuations joined, comments and blank lines
    skipped, each argument unquoted (a line that cannot be split is left out)."""
    return _safe_directives(text, [])


def split_args(line: str) -> list[str]:
    """Apache's argument splitting: whitespace-separated words, "..." or '...' quoted strings in which a
    backslash before the quote character stands for it (other backslashes are kept)."""
    args: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            break
        q = line[i]
        if q in "\"'":
            i += 1
            out: list[str] = []
            while i < n and line[i] != q:
                if line[i] == "\\" and i + 1 < n and line[i + 1] == q:
                    out.append(q)
                    i += 2
                    continue
                out.append(line[i])
                i += 1
            if i >= n:
                raise ValueError(f"unterminated {q}quoted{q} argument")
            i += 1
            args.append("".join(out))
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            args.append(line[i:j])
            i = j
    return args


def parse_actions(text: str) -> list[tuple[str, str | None]]:
    """`id:1,msg:'a, b',t:none` -> [(id, 1), (msg, a, b), (t, none)]: commas outside single quotes separate
    actions; a value in single quotes may contain \\' ."""
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and (text[i].isspace() or text[i] == ","):
            i += 1
        if i >= n:
            break
        j = i
        while j < n and text[j] not in ":,":
            j += 1
        name = text[i:j].strip().lower()
        if j >= n or text[j] == ",":
            out.append((name, None))
            i = j + 1
            continue
        j += 1  # after ':'
        while j < n and text[j] == " ":
            j += 1
        if j < n and text[j] == "'":
            j += 1
            val: list[str] = []
            while j < n and text[j] != "'":
                if text[j] == "\\" and j + 1 < n and text[j + 1] == "'":
                    val.append("'")
                    j += 2
                    continue
                val.append(text[j])
                j += 1
            if j >= n:
                raise ValueError(f"unterminated quote in action {name!r}")
            out.append((name, "".join(val)))
            j += 1
            while j < n and text[j] != ",":
                j += 1
        else:
            k = j
            while k < n and text[k] != ",":
                k += 1
            out.append((name, text[j:k].strip()))
            j = k
        i = j + 1
    return out


def split_variables(text: str) -> list[str]:
    """`ARGS|!REQUEST_COOKIES:/a|b/|XML:/*` -> its variables: a `|` inside a /regex/ selector (a `:/` whose
    closing unescaped `/` ends the variable) is kept; `XML:/*` (an XPath) is not a regex."""
    out: list[str] = []
    i, n, start = 0, len(text), 0
    while i < n:
        if text.startswith(":/", i):
            j = i + 2
            while j < n:
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == "/" and (j + 1 == n or text[j + 1] == "|"):
                    break
                j += 1
            if j < n:
                i = j + 1
                continue
        if text[i] == "|":
            out.append(text[start:i].strip())
            start = i + 1
        i += 1
    out.append(text[start:].strip())
    return [v for v in out if v]


def parse(text: str) -> tuple[list[list[SecRule]], list[str]]:
    """The SecRules of a file grouped into chains, and problems (lines that cannot be parsed)."""
    chains: list[list[SecRule]] = []
    problems: list[str] = []
    open_chain = False
    for no, args in _safe_directives(text, problems):
        if not args or args[0].lower() != "secrule":
            continue
        if len(args) not in (3, 4):
            problems.append(f"line {no}: SecRule takes 2 or 3 arguments, not {len(args) - 1}: skipped")
            open_chain = False
            continue
        try:
            actions = parse_actions(args[3]) if len(args) == 4 else []
        except ValueError as e:
            problems.append(f"line {no}: {e}: skipped")
            open_chain = False
            continue
        rule = SecRule(no, args[1], args[2], actions)
        if open_chain and chains:
            chains[-1].append(rule)
        else:
            chains.append([rule])
        open_chain = rule.has("chain")
    return chains, problems


def _safe_directives(text: str, problems: list[str]) -> list[tuple[int, list[str]]]:
    out = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):  # one bad directive is reported, not fatal
        line = raw.rstrip()
        if not buf:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = no
        if line.endswith("\\") and not line.endswith("\\\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        joined, buf = "".join(buf), []
        try:
            out.append((start, split_args(joined)))
        except ValueError as e:
            problems.append(f"line {start}: {e}: skipped")
    if buf:
        try:
            out.append((start, split_args("".join(buf))))
        except ValueError as e:
            problems.append(f"line {start}: {e}: skipped")
    return out


# ---- compilation ----

def operator_regex(operator: str, base_dir: Path | None = None) -> tuple[str, bool]:
    """The regex of an operator and whether it is negated; Unsupported for anything outside the subset.
    `base_dir`: the rule file's folder, where @pmFromFile finds its phrase files (as ModSecurity does)."""
    op = operator.strip()
    negate = op.startswith("!")
    if negate:
        op = op[1:].lstrip()
    if not op.startswith("@"):
        name, arg = "rx", op
    else:
        spelled, _, arg = op[1:].partition(" ")
        name = spelled.lower()
    if name not in SUPPORTED_OPERATORS:
        raise Unsupported(f"operator @{spelled} is not supported")
    if "%{" in arg:
        raise Unsupported(f"operator @{name}: macro expansion (%{{...}}) is not supported")
    if name == "rx":
        if not arg:
            raise Unsupported("empty @rx")
        problem = regex_problem(arg)
        if problem:
            raise Unsupported(f"@rx: {problem}")
        return arg, negate
    if name in ("pm", "pmfromfile", "pmf"):
        phrases = sorted(set(arg.split() if name == "pm" else _phrase_file(arg, base_dir)), key=lambda p: (-len(p), p))
        if not phrases:
            raise Unsupported(f"@{spelled} without phrases")
        return "(?:" + "|".join(escape_bytes(p.encode("utf-8", "surrogateescape")) for p in phrases) + ")", negate
    if not arg:  # contains
        raise Unsupported("empty @contains")
    return escape_bytes(arg.encode("utf-8", "surrogateescape")), negate


def _phrase_file(arg: str, base_dir: Path | None) -> list[str]:
    """The phrases of a @pmFromFile data file: one per line, `#` comments and blank lines skipped. Only local
    files next to the rule file (ModSecurity also fetches URLs: never done here)."""
    names = arg.split()
    if not names:
        raise Unsupported("@pmFromFile without a file")
    phrases: list[str] = []
    for name in names:
        if "://" in name:
            raise Unsupported(f"@pmFromFile {name}: remote phrase files are not fetched")
        path = Path(name) if Path(name).is_absolute() or base_dir is None else base_dir / name
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_DATA_FILE + 1)
        except OSError as e:
            raise Unsupported(f"@pmFromFile {name}: cannot read: {e.strerror or e}") from None
        if len(data) > MAX_DATA_FILE:
            raise Unsupported(f"@pmFromFile {name}: larger than {MAX_DATA_FILE} bytes")
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                phrases.append(line)
    return phrases


def link_context(variables: str) -> tuple[str, str]:
    """(context, direction) of a link's variables (module docstring); Unsupported when none can be used."""
    contexts: set[str] = set()
    directions: set[str] = set()
    dropped: list[str] = []
    for var in split_variables(variables):
        if var.startswith("!"):
            continue  # an exclusion: ignored (documented)
        if var.startswith("&"):
            raise Unsupported(f"variable {var}: counts are not supported")
        name = var.split(":", 1)[0].upper()
        if name in VARIABLE_CONTEXTS:
            names, direction = VARIABLE_CONTEXTS[name]
            contexts.update(names)
            directions.add(direction)
        else:
            dropped.append(name)
    if not contexts:
        raise Unsupported(f"variable{'s' if len(dropped) > 1 else ''} {'|'.join(dropped) or variables}: "
                          "no content nvpcap scans")
    return "+".join(sorted(contexts)), directions.pop() if len(directions) == 1 else "any"


# collections -> what rules/fields.py selects from a header block ("h": values, "n": names, ...), a url, a form
# or the files of a multipart body
_COLLECTIONS = {
    "FILES": "fl", "FILES_NAMES": "fln", "REQUEST_HEADERS": "h", "RESPONSE_HEADERS": "h", "REQUEST_HEADERS_NAMES": "n",
    "RESPONSE_HEADERS_NAMES": "n", "REQUEST_COOKIES": "c", "REQUEST_COOKIES_NAMES": "cn", "REQUEST_URI": "u",
    "REQUEST_URI_RAW": "u", "REQUEST_LINE": "u", "REQUEST_FILENAME": "f", "REQUEST_BASENAME": "fb", "QUERY_STRING": "q",
    "ARGS": "a", "ARGS_NAMES": "an", "ARGS_GET": "ag", "ARGS_GET_NAMES": "agn", "ARGS_POST": "ap",
    "ARGS_POST_NAMES": "apn",
}


def link_selection(variables: str) -> str:
    """The selection step of a link (rules/fields.py): ModSecurity evaluates each header value (name, cookie,
    argument, file name) alone, and `:Name` picks one header, cookie, argument or file part; a regex selector
    (`:/.../`) takes all."""
    parts = []
    for var in split_variables(variables):
        if var.startswith(("!", "&")):
            continue
        name, _, chosen = var.partition(":")
        kind = _COLLECTIONS.get(name.upper())
        if kind is None:
            continue
        chosen = chosen.strip().strip("'\"")
        named = kind in fields.NAMED and chosen and chosen[0] != "/" and not set(chosen) & set(",: ")
        parts.append(f"{kind}:{chosen.lower()}" if named else kind)
    return fields.selection(parts)


def link_transforms(link: SecRule) -> tuple[str, ...]:
    chain: list[str] = []
    for k, v in link.actions:
        if k != "t" or v is None:
            continue
        if v.lower() == "none":
            chain = []
            continue
        if v.lower() not in tf.FUNCTIONS:
            raise Unsupported(f"transformation t:{v} is not supported")
        if v.lower() not in tf.FREE:
            chain.append(tf.NAMES[v.lower()])
    return tuple(chain)


def paranoia_level(tags: tuple[str, ...]) -> int:
    levels = [int(m.group(1)) for t in tags if (m := _PARANOIA_TAG.fullmatch(t.strip().lower()))]
    return max(levels, default=1)


def compile_chain(chain: list[SecRule], source: str = "", base_dir: Path | None = None) -> Rule:
    """One Rule from a SecRule and its chained links; Unsupported (or ValueError) when outside the subset."""
    head = chain[0]
    rid_text = head.action("id")
    if rid_text is None or not (rid_text.strip().isascii() and rid_text.strip().isdigit()):
        raise Unsupported("no numeric id")
    patterns: list[Pattern] = []
    directions: set[str] = set()
    approximate = False
    for n, link in enumerate(chain):
        try:
            regex, negate = operator_regex(link.operator, base_dir)
            context, direction = link_context(link.variables)
            chain_t = link_transforms(link)
        except Unsupported as e:
            raise Unsupported(f"{e} (chained rule, line {link.line})" if n else str(e)) from None
        parts = context_parts(context)
        if any(c in tf.STREAM_CONTEXTS for c in parts) and tf.approximate_in_streams(chain_t):
            approximate = True
        if any(c in fields.KINDS for c in parts):  # each value (name, cookie, argument, field) alone, as
            chain_t = (link_selection(link.variables), *chain_t)  # ModSecurity evaluates them (fields.py)
        patterns.append(Pattern(regex, negate, context, chain_t))
        directions.add(direction)
    tags = tuple(v for k, v in head.actions if k == "tag" and v)
    if approximate:
        tags += (APPROXIMATE_TAG,)
    msg = head.action("msg") or ""
    rid = int(rid_text)
    sev = SEVERITIES.get((head.action("severity") or "").strip().upper(), DEFAULT_SEVERITY)
    rule = Rule(rule_id=rid, name=msg or f"crs-{rid}", category=CATEGORY, severity=sev, patterns=tuple(patterns),
                description=f"OWASP CRS rule {rid}" + (f": {msg}" if msg else ""), source=source,
                sensor="crs", direction=directions.pop() if len(directions) == 1 else "any",
                app_proto=HTTP_APPS, tags=tags)
    problem = rule_problem(rule)
    if problem:
        raise Unsupported(problem)
    return rule


def load_text(text: str, source: str, ids: object = None, paranoia: int | None = None,
              base_dir: Path | None = None) -> LoadResult:
    """Rules of one file at the paranoia level (default PARANOIA). `ids` (the run's RuleIds) remembers the ids
    taken (shared with Suricata sids), so a duplicate id in another file is reported too."""
    level = PARANOIA if paranoia is None else paranoia
    out = LoadResult()
    seen: set[int] = getattr(ids, "sids", set())
    chains, problems = parse(text)
    out.problems += [f"{source}:{p}" for p in problems]
    for chain in chains:
        head = chain[0]
        where = f"{source}:{head.line}"
        rid = head.action("id")
        if head.has("nolog") or head.has("skipafter") or head.has("skip"):
            continue  # never logs, or control flow (paranoia skips, anomaly scores)
        tags = tuple(v for k, v in head.actions if k == "tag" and v)
        if paranoia_level(tags) > level:
            continue
        try:
            rule = compile_chain(chain, where, base_dir)
        except ValueError as e:
            out.problems.append(f"{where}: rule {rid}: {e}: rule skipped")
            continue
        if rule.rule_id in seen:
            out.problems.append(f"{where}: rule id {rule.rule_id} is already loaded: rule skipped")
            continue
        seen.add(rule.rule_id)
        out.rules.append(rule)
    return out


def load_file(path: str | Path, ids: object = None, paranoia: int | None = None) -> LoadResult:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return LoadResult(problems=[f"{path}: cannot read: {e}"])
    return load_text(text, str(path), ids, paranoia, base_dir=path.parent)
