"""What the database parsers (mysql, postgresql, mssql, oracle) share: NeuVector's SQL-injection check, the
statement cap, and a bounded length-prefixed message framer.

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
from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

from .base import ParserOutput

MAX_STATEMENT = 4000  # dpi_mysql.c MYSQL_MAX_QUERY_LEN: the most of a statement NeuVector checks
SQL_INJECTION = 2022  # threat id (nvpcap/threats.py)

_COMMENT = r"""(?:="|='|--|#|/\*)"""  # a quote closed by `=`, or an SQL comment opener: the tail of an injection

# (NeuVector number, pattern, what it catches)
PATTERNS: tuple[tuple[int, re.Pattern[str], str], ...] = tuple(
    (n, re.compile(p, re.IGNORECASE), why) for n, p, why in (
        (1, r"""^SELECT.*'\s+OR\s+((?:'|")?[0-9a-zA-Z_]+(?:'|")?)\s*=\s*\1""",
         "tautology after a closed quote: SELECT ... WHERE name='adam' or 'x' = 'x'"),
        (2, r"""\bSLEEP\b\s*\(\s*(?:\d+|__TIME__)\s*\)""",
         "time-based blind probe: ' or sleep(5)='"),
        (3, r"""BENCHMARK\s*\(\s*[1-9][0-9]{4,}\s*,""",
         "BENCHMARK with 10000 or more iterations"),
        (4, r"""BENCHMARK\s*\(\s*[0-9]{0,4}\s*,.*""" + _COMMENT,
         "BENCHMARK with fewer iterations, then a comment or closed quote"),
        (5, r"""WAITFOR\s*DELAY.*""" + _COMMENT,
         "MS-SQL time-based probe: ;waitfor delay '0:0:5'--"),
        (6, r"""(?:1|"|'|\))\s*UNION.*""" + _COMMENT,
         "UNION after a closed literal: ' union (select @@version) --"),
        (7, r"""EXEC\s+.*""" + _COMMENT,
         "stacked EXEC: ; exec master..xp_cmdshell 'dir' --"),
        (8, r"""\bOR\s+(?:1\b|((?:'|")?[0-9a-zA-Z_]+(?:'|")?)\s*=\s*\1).*""" + _COMMENT,
         "OR 1 / OR x=x followed by a comment: ' or 1=1--"),
    )
)


def check(sql: str) -> list[int]:
    """NeuVector numbers of the patterns that match the statement's first MAX_STATEMENT characters."""
    text = sql[:MAX_STATEMENT]
    return [n for n, pattern, _ in PATTERNS if pattern.search(text)]


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


# ---- framing: length-prefixed messages of one direction, bounded ----

class Message(NamedTuple):
    data: bytes  # the whole message (header included), or its first `keep` bytes when truncated
    length: int  # the message's length as its header gives it
    truncated: bool
    frame: int  # capture frame / time of the packet holding the message's first byte
    ts_ns: int


class Framer:
    """Cuts one direction's in-order bytes into messages whose header (`head` bytes) gives their total
    length (`length(header)`, header included; a value below `head` means the framing is lost). Messages up
    to `limit` bytes are delivered whole; longer ones (up to 4 GiB lengths in hostile bytes) are delivered as
    their first `keep` bytes and the rest is skipped by count, never buffered. `head` and `length` may be
    changed between messages (protocols whose framing changes after a handshake)."""

    def __init__(self, head: int, length: Callable[[bytes], int], limit: int = 1 << 16, keep: int = 8192) -> None:
        self.head, self.length, self.limit, self.keep = head, length, limit, keep
        self.buf = bytearray()
        self.skip = 0  # bytes of an over-long message still to discard
        self.broken = False
        self.pos = 0  # stream offset of buf[0]
        self.marks: deque[tuple[int, int, int]] = deque()  # (stream offset, frame, ts) of chunks in buf

    def push(self, data: bytes, frame: int, ts_ns: int) -> Iterator[Message]:
        if self.broken:
            return
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            self.pos += n
            data = data[n:]
        if data:
            self.marks.append((self.pos + len(self.buf), frame, ts_ns))
            self.buf += data
        while not self.broken and len(self.buf) >= self.head:
            total = self.length(bytes(self.buf[: self.head]))
            if total < self.head:
                self.broken = True
                self.buf.clear()
                return
            where = self._where()
            if total <= self.limit:
                if len(self.buf) < total:
                    return
                msg = Message(bytes(self.buf[:total]), total, False, *where)
                self._consume(total)
            else:
                if len(self.buf) < min(self.keep, total):
                    return
                msg = Message(bytes(self.buf[: self.keep]), total, True, *where)
                have = len(self.buf)
                if have >= total:
                    self._consume(total)
                else:
                    self._consume(have)
                    self.skip = total - have
            yield msg
            if self.skip:
                return

    def _where(self) -> tuple[int, int]:
        while len(self.marks) > 1 and self.marks[1][0] <= self.pos:
            self.marks.popleft()
        _, frame, ts = self.marks[0]
        return frame, ts

    def _consume(self, n: int) -> None:
        del self.buf[:n]
        self.pos += n
        if not self.buf:
            self.marks.clear()
