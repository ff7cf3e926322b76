"""PCRE patterns (NeuVector's dialect) for the two matchers nvpcap uses: Hyperscan takes them as they are;
Python `re` (confirmation, validators, snippets, the fallback scanner) needs a few PCRE spellings rewritten."""
from __future__ import annotations

import re

from . import dbcache

try:  # the parser behind `re` (private, stable since 3.11 as re._parser): only to bound match widths
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - older Pythons
    import sre_parse as _sre_parse  # type: ignore[no-redef]

try:  # Hyperscan is optional: without it the engine scans with Python `re`
    import hyperscan
except ImportError:  # pragma: no cover - exercised when hyperscan is not installed
    hyperscan = None  # type: ignore[assignment]

PY_FLAGS = re.IGNORECASE | re.DOTALL  # NeuVector compiles every pattern /is
HS_BASE_FLAGS = (hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_DOTALL) if hyperscan else 0
HS_ERRORS: tuple[type[BaseException], ...] = (hyperscan.error,) if hyperscan else ()

_ESCAPES = {"z": r"\Z", "h": r"[ \t]", "H": r"[^ \t]"}


def pcre_to_python(pattern: str) -> str:
    """Rewrite the PCRE spellings Python lacks: named groups (?<n>...) / (?'n'...), back-references \\k<n> /
    \\k'n' / \\k{n} / \\g{N}, \\z, \\h and \\H. Anything else is passed through for `re` to judge."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if not in_class and nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if not in_class and nxt in "kg" and i + 2 < n and pattern[i + 2] in "<'{":
                close = {"<": ">", "'": "'", "{": "}"}[pattern[i + 2]]
                end = pattern.find(close, i + 3)
                if end > 0:
                    ref = pattern[i + 3 : end]
                    out.append(f"(?:\\{ref})" if ref.isdigit() else f"(?P={ref})")
                    i = end + 1
                    continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            out.append(ch)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":  # a leading ] is a literal
                out.append("]")
                i += 1
            continue
        elif pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        elif pattern.startswith("(?'", i):
            end = pattern.find("'", i + 3)
            if end > 0:
                out.append(f"(?P<{pattern[i + 3:end]}>")
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def compile_python(pattern: str) -> re.Pattern[bytes]:
    """The pattern as a Python bytes regex with NeuVector's flags; raises re.error."""
    return re.compile(pcre_to_python(pattern).encode("utf-8", "surrogateescape"), PY_FLAGS)


def hyperscan_error(pattern: str, prefilter: bool = False) -> str | None:
    """Hyperscan's complaint about this pattern compiled alone (stream mode, NeuVector's flags), or None.
    Always None when Hyperscan is not installed."""
    if hyperscan is None:
        return None
    flags = HS_BASE_FLAGS | (hyperscan.HS_FLAG_PREFILTER if prefilter else 0)
    expression = pattern.encode("utf-8", "surrogateescape")

    def complaint() -> str | None:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_STREAM)
        try:
            db.compile(expressions=[expression], ids=[0], flags=[flags])
        except hyperscan.error as e:
            return str(e) or "rejected by Hyperscan"
        return None

    return dbcache.verdict(expression, flags, complaint)  # ~3 ms a pattern, remembered across runs


SPLIT_LENGTH = 15000  # the longest piece split_alternation makes (Hyperscan refuses expressions over 16,000)


def split_alternation(pattern: str, limit: int = SPLIT_LENGTH) -> list[str] | None:
    """A long top-level alternation (`(?:a|b|...)` or `a|b|...`: CRS @pmFromFile phrase lists reach 44,000
    characters) as several shorter ones, each at most `limit` characters where a single alternative allows it:
    their matches together are the whole pattern's, so Hyperscan can take them under one id. None when the
    pattern is not such an alternation."""
    alternatives = None
    if pattern.startswith("(?:") and pattern.endswith(")"):  # one group around it all, or `(?:a)|(?:b)`
        alternatives = _top_level_alternatives(pattern[3:-1])
    if alternatives is None:
        alternatives = _top_level_alternatives(pattern)
    if alternatives is None or len(alternatives) < 2:
        return None
    pieces: list[list[str]] = [[]]
    size = 0
    for alt in alternatives:
        if pieces[-1] and size + len(alt) + 1 > limit - 4:
            pieces.append([])
            size = 0
        pieces[-1].append(alt)
        size += len(alt) + 1
    return ["(?:" + "|".join(group) + ")" for group in pieces]


def _top_level_alternatives(body: str) -> list[str] | None:
    """`body` split at its depth-0 `|` (escapes and character classes skipped); None if its groups do not
    balance (then `(?:` ... `)` was not one group around the whole pattern)."""
    out: list[str] = []
    depth, start, i, n = 0, 0, 0, len(body)
    in_class = False
    while i < n:
        c = body[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if body[i + 1:i + 2] == "^":
                i += 1
            if body[i + 1:i + 2] == "]":  # a `]` first in a class is a literal
                i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return None
        elif c == "|" and depth == 0:
            out.append(body[start:i])
            start = i + 1
        i += 1
    if depth != 0 or in_class:
        return None
    out.append(body[start:])
    return out


def regex_problem(pattern: str) -> str | None:
    """Why a pattern cannot be imported at all (neither matcher can compile it), or None. Finer checks (a
    pattern Hyperscan only takes as a prefilter but Python cannot confirm) are the engine's."""
    try:
        compile_python(pattern)
        return None
    except re.error as e:
        py_err = str(e)
    if hyperscan is not None and hyperscan_error(pattern) is None:
        return None
    return f"invalid regex: {py_err}"


_LOOKAHEAD = re.compile(r"\(\?[=!]|(?<!\\)(?:\\[bBzZ]|\$)(?=\)|\||$)")


def looks_ahead(regex: str) -> bool:
    """Whether a match may depend on the bytes after it: a look-ahead anywhere, or a \\b, \\B, $ or \\Z
    that ends the pattern or a branch of it (conservative). Such a match at the end of the bytes seen so far
    is decided only by the next call, or by the end of the stream."""
    return _LOOKAHEAD.search(regex) is not None


MAX_WIDTH = 1 << 16  # widths above this count as unbounded


def max_width(pattern: str) -> int | None:
    """The longest match the pattern can make, in bytes (for a bytes pattern), or None if unbounded or unknown.
    Lets confirmation search only the new bytes plus this much before them."""
    try:
        hi = _sre_parse.parse(pcre_to_python(pattern).encode("utf-8", "surrogateescape"), PY_FLAGS).getwidth()[1]
    except Exception:  # noqa: BLE001 - any failure just means "unknown"
        return None
    return hi if hi < MAX_WIDTH else None
