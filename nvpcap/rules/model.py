"""The rule model shared by the loaders and the engine: NeuVector's sensor rules (regex patterns with a context),
plus nvpcap's extensions (validator, severity, direction). Pure data: nothing here compiles or scans."""
from __future__ import annotations

from dataclasses import dataclass, field

from .header import FlowHeader

# Contexts a pattern may name. "packet" patterns are scanned in every context (as NeuVector adds them to all its
# databases); "sql" is NeuVector's sql_query (statements decoded by the database parsers). "tls.sni" (the
# ClientHello's server name) and "dns.query" (each query name) are Suricata buffers, for the "ids" rules of
# rules/suricata.py; "packet" patterns are not scanned there.
CONTEXTS = ("url", "header", "body", "packet", "sql", "tls.sni", "dns.query")
# Contexts only the OWASP CRS importer (rules/crs.py) sets, for ModSecurity's request body processors: "form" is
# the fields of a request body sent form-encoded, as JSON or as multipart/form-data (its text parts), one unit
# (ARGS_POST item by item); "files" the uploads of a multipart/form-data body, one unit (FILES: their file names,
# FILES_NAMES: their parts' names); "xml" the body of a request sent as XML (XML:/*), a stream
# (protocols/httpforms.py). A CRS link naming variables of several contexts has them joined by "+"
# ("form+header+url+xml"): the pattern is scanned in each.
CRS_CONTEXTS = ("form", "files", "xml")


def context_parts(context: str) -> tuple[str, ...]:
    """The contexts a pattern's context names ("form+url" -> ("form", "url"))."""
    return tuple(context.split("+"))
CATEGORIES = ("dlp", "waf", "ids")
DIRECTIONS = ("any", "request", "response")  # request: bytes the client sent; response: the server's
VALIDATOR_NAMES = ("luhn", "ssn", "iban", "entropy")

MAX_PATTERNS = 16  # NeuVector: at most 16 PCREs per rule (api.DlpRulePatternMaxNum)
DEFAULT_SEVERITY = 3  # NeuVector logs a DLP/WAF hit with action allow as severity 3 (medium)


@dataclass(frozen=True)
class Pattern:
    regex: str  # PCRE syntax, as NeuVector stores it (compiled caseless and dot-all, like dp's /re/is)
    negate: bool  # op "!regex": the rule holds only if this does not match
    context: str = "body"  # NeuVector's default
    # ModSecurity transformations (OWASP CRS rules, rules/crs.py; functions in rules/transforms.py) applied in
    # order to url/header content before this pattern is matched; not applied to stream contexts (body)
    transforms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Allowlist:
    """gitleaks allowlist: a match is dropped when one of `regexes` (Python syntax, case-sensitive unless (?i))
    is found in the target ("secret" or "match"; gitleaks' "line" is read as "match") or the secret contains
    one of `stopwords` (case-insensitive). With condition "AND" both kinds, when present, must hold."""

    regexes: tuple[str, ...] = ()
    stopwords: tuple[str, ...] = ()
    target: str = "secret"
    condition: str = "OR"


@dataclass(frozen=True)
class Rule:
    rule_id: int
    name: str
    category: str  # "dlp" or "waf"
    severity: int  # 1 info .. 5 critical
    patterns: tuple[Pattern, ...]
    validator: str | None = None  # applies to the matched text of the first positive pattern
    description: str = ""
    source: str = ""  # "file:sensor" it came from, for messages
    sensor: str = ""
    direction: str = "any"
    app_proto: tuple[str, ...] = ()  # Suricata rules (rules/suricata.py): nvpcap apps the flow must be; () any
    # Suricata rules: transport, addresses, ports and direction the flow's endpoints must fit (rules/header.py);
    # None: any flow
    header: FlowHeader | None = None
    # gitleaks extensions (nvpcap/rules/gitleaks.py), applied to the first positive pattern's matched text by
    # validators.rule_validator; the defaults leave NeuVector rules as they are
    entropy: float | None = None  # the secret's Shannon entropy must exceed this (replaces the default check)
    secret_group: int = 0  # capture group holding the secret (0: the first non-empty group, else the match)
    keywords: tuple[str, ...] = ()  # one of them (case-insensitive) must appear in the matched text
    allowlists: tuple[Allowlist, ...] = ()  # a match any of them allows is dropped
    tags: tuple[str, ...] = ()

    @property
    def positive(self) -> tuple[Pattern, ...]:
        return tuple(p for p in self.patterns if not p.negate)


@dataclass
class LoadResult:
    """Rules imported and, for everything that was not, one human-readable problem (never silently dropped)."""

    rules: list[Rule] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.rules.extend(other.rules)
        self.problems.extend(other.problems)


@dataclass(slots=True)
class Match:
    """One alert: the first time a rule held in a flow. `context`/`side`/`frame`/`ts_ns` say where the pattern
    that completed the rule ended; `snippet` is the redacted text of the rule's first positive pattern; `count`
    is how many scan calls satisfied the rule again (the first included), up to the engine's COUNT_LIMIT."""

    rule: Rule
    context: str
    side: int
    frame: int
    ts_ns: int
    snippet: str
    count: int = 1


def shown_pattern(regex: str, limit: int = 160) -> str:
    """A pattern as a problem message shows it: a long one (CRS 930120's is 18 KB) cut, with its length."""
    return regex if len(regex) <= limit else f"{regex[:limit]}... ({len(regex)} characters)"


def rule_problem(rule: Rule) -> str | None:
    """Why a rule cannot be used as it stands (shared by the loaders and the engine), or None."""
    if rule.category not in CATEGORIES:
        return f"category {rule.category!r} is not one of {CATEGORIES}"
    if not rule.patterns:
        return "no patterns"
    if len(rule.patterns) > MAX_PATTERNS:
        return f"{len(rule.patterns)} patterns: NeuVector allows at most {MAX_PATTERNS} per rule"
    if not rule.positive:
        return "all patterns are negated (!regex): unsupported, the rule would match everything"
    for p in rule.patterns:
        parts = context_parts(p.context)
        if any(c not in CONTEXTS + CRS_CONTEXTS for c in parts) or (len(parts) > 1 and "packet" in parts):
            return f"context {p.context!r} is not one of {CONTEXTS}"
        if not p.regex:
            return "empty pattern"
    if rule.validator is not None and rule.validator not in VALIDATOR_NAMES:
        return f"validator {rule.validator!r} is not one of {VALIDATOR_NAMES}"
    if not 1 <= rule.severity <= 5:
        return f"severity {rule.severity} is not within 1..5"
    if rule.direction not in DIRECTIONS:
        return f"direction {rule.direction!r} is not one of {DIRECTIONS}"
    return None
