"""What the database parsers (mysql, postgresql, mssql, oracle) share: NeuVector's SQL-injection check and the
statement cap. (Their message framing is framing.Framer.)

NeuVector (dp/dpi/parsers/dpi_sqlinjection.c, `check_sql_query`) runs a fixed list of PCRE2 patterns on
each statement its parsers extract (MySQL COM_QUERY, TDS SQL batch decoded from UTF-16, TNS SELECT text);
every pattern that matches raises threat 2022 SQL.Injection. The patterns below are that list, numbered
as NeuVector numbers them (see ../shared/reference/neuvector-dp.md, section 1, dpi_sqlinjection.c row).
Patterns 1-7 follow the C source's signature strings; 8 is written from the reference's description
(its exact string is not in the public source we could read). Differences, on purpose:
  * all eight are case-insensitive (the reference says so; the C source spells some as `(?:sleep|SLEEP)`,
    which would miss `Sleep`);
  * NeuVector's MySQL parser skips statements longer than 4000 bytes; we check their first 4000 characters.
Python `re` reads these patterns as PCRE2 does: `.` stops at a newline (no DOTALL), `^` is the subject's
start (no MULTILINE), back references compare case-insensitively under IGNORECASE.
"""
from __future__ import annotations

import re

from .base import ParserOutput

MAX_STATEMENT = 4000  # dpi_mysql.c MYSQL_MAX_QUERY_LEN: the most of a statement NeuVector checks
SQL_INJECTION = 2022  # threat id (nvpcap/threats.py)

_COMMENT = r"""(?:="|='|--|#|/\*)"""  # a quote closed by `=`, or an SQL comment opener: the tail of an injection

# (NeuVector number, a word every match contains, pattern, what it catches). The word (lower case) screens
# ASCII statements with a substring test: one without it cannot match, so its regex search is skipped.
PATTERNS: tuple[tuple[int, str, re.Pattern[str], str], ...] = tuple(
    (n, word, re.compile(p, re.IGNORECASE), why) for n, word, p, why in (
        (1, "or", r"""^SELECT.*'\s+OR\s+((?:'|")?[0-9a-zA-Z_]+(?:'|")?)\s*=\s*\1""",
         "tautology after a closed quote: SELECT ... WHERE name='adam' or 'x' = 'x'"),
        (2, "sleep", r"""\bSLEEP\b\s*\(\s*(?:\d+|__TIME__)\s*\)""",
         "time-based blind probe: ' or sleep(5)='"),
        (3, "benchmark", r"""BENCHMARK\s*\(\s*[1-9][0-9]{4,}\s*,""",
         "BENCHMARK with 10000 or more iterations"),
        (4, "benchmark", r"""BENCHMARK\s*\(\s*[0-9]{0,4}\s*,.*""" + _COMMENT,
         "BENCHMARK with fewer iterations, then a comment or closed quote"),
        (5, "waitfor", r"""WAITFOR\s*DELAY.*""" + _COMMENT,
         "MS-SQL time-based probe: ;waitfor delay '0:0:5'--"),
        (6, "union", r"""(?:1|"|'|\))\s*UNION.*""" + _COMMENT,
         "UNION after a closed literal: ' union (select @@version) --"),
        (7, "exec", r"""EXEC\s+.*""" + _COMMENT,
         "stacked EXEC: ; exec master..xp_cmdshell 'dir' --"),
        (8, "or", r"""\bOR\s+(?:1\b|((?:'|")?[0-9a-zA-Z_]+(?:'|")?)\s*=\s*\1).*""" + _COMMENT,
         "OR 1 / OR x=x followed by a comment: ' or 1=1--"),
    )
)


def check(sql: str) -> list[int]:
    """NeuVector numbers of the patterns that match the statement's first MAX_STATEMENT characters. An ASCII
    statement runs only the patterns whose word it contains (most contain none); other text runs them all,
    as IGNORECASE also folds a few non-ASCII letters onto ASCII ones (U+017F long s matches `s`)."""
    text = sql[:MAX_STATEMENT]
    if text.isascii():
        low = text.lower()
        return [n for n, word, pattern, _ in PATTERNS if word in low and pattern.search(text)]
    return [n for n, _, pattern, _ in PATTERNS if pattern.search(text)]


def report(out: ParserOutput, app: str, sql: str, side: int, frame: int, ts_ns: int) -> list[int]:
    """Run the check and raise one 2022 threat naming the matching patterns (NeuVector raises one per
    pattern; its log cache then merges them by id)."""
    hits = check(sql)
    if hits:
        out.threat(SQL_INJECTION, f"SQL Injection, application={app}, patterns={','.join(map(str, hits))}",
                   side, frame, ts_ns)
    return hits


def cap(text: str, limit: int = MAX_STATEMENT) -> str:
    return text if len(text) <= limit else text[:limit]
