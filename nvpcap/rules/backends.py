"""The scanning primitive under the rules engine: which patterns of a database end where in the bytes given.
Two interchangeable backends: Hyperscan (block databases for url/header, stream databases for body/sql/raw,
and, for datagrams of body/sql/raw, block databases of the same patterns: HyperscanBackend.unit) and a
pure-Python stand-in (`re` over a bounded sliding window) for when Hyperscan is not installed.

A scan returns `Hits`: pattern id -> [first end, last end, ends], absolute offsets in the stream (or in the
block) of the matches reported by this call; `ends` lists the first MAX_ENDS of them (Hyperscan only; None
past that, or from the Python backend), so that Python confirms a pattern only around where it may match. A
pattern that matches at every byte of hostile input costs a bounded entry, not one list item per byte.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import dbcache
from .regex import HS_ERRORS, hyperscan, looks_ahead

Hits = dict[int, list]  # pid -> [first end, last end, list of ends | None]
# what a scan without matches returns (most do): shared and read-only, so a caller that tried to fill it would
# fail loudly instead of leaking hits into every later scan
NO_HITS: Hits = MappingProxyType({})  # type: ignore[assignment]
MAX_ENDS = 512

# one call = one unit (a request line, a header block, a name, a form's fields, a multipart body's files); the other
# databases are streams
BLOCK_DBS = ("url", "header", "tls.sni", "dns.query", "form", "files")
WINDOW = 4096  # bytes of history the Python side keeps per stream: the longest match found across calls
SIDE_KEY = "#"  # "body#1": a database of one side only (the engine's), after the logical key


def block_mode(key: str) -> bool:
    """Whether a database key names a block database: url/header units ("url", "url|chain", "url|+"), names,
    and the windowed prefilters of stream contexts ("body@window"), of either side ("...#1")."""
    key = key.split(SIDE_KEY, 1)[0]
    return key.split("|", 1)[0] in BLOCK_DBS or key.endswith("@window")


@dataclass(frozen=True)
class DbPattern:
    pid: int
    regex: str
    hs_flags: int
    pyre: re.Pattern[bytes] | None
    single: bool  # report once per block / stream (Hyperscan SINGLEMATCH)
    confirm: bool = False  # the engine checks candidates itself (Python backend: report every call)
    width: int | None = None  # longest match, None if unbounded

    @property
    def looks_ahead(self) -> bool:
        return looks_ahead(self.regex)


def _accumulator() -> tuple[Callable[..., None], list[Hits]]:
    """A Hyperscan match callback that folds matches into Hits, and the box holding the Hits so far (_taken)."""
    box: list[Hits] = [{}]

    def on_match(pid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        hits = box[0]
        r = hits.get(pid)
        if r is None:
            hits[pid] = [to, to, [to]]
            return
        if to > r[1]:
            r[1] = to
        elif to < r[0]:
            r[0] = to
        ends = r[2]
        if ends is not None:
            if len(ends) < MAX_ENDS:
                ends.append(to)
            else:
                r[2] = None

    return on_match, box


def _taken(box: list[Hits]) -> Hits:
    """The Hits an accumulator's callback folded so far, the box emptied for the next scan."""
    hits = box[0]
    if not hits:
        return NO_HITS  # nothing matched (most scans): no dict made; callers never fill this one
    box[0] = {}
    return hits


def merged(a: Hits, b: Hits) -> Hits:
    """The hits of one scan and of the close that follows it, as one call's hits."""
    if not b:
        return a
    if not a:
        return b
    out = dict(a)
    for pid, (first, last, ends) in b.items():
        r = out.get(pid)
        if r is None:
            out[pid] = [first, last, ends]
        else:
            both = r[2] + ends if r[2] is not None and ends is not None else None
            out[pid] = [min(r[0], first), max(r[1], last), both]
    return out


class _HsStream:
    """One open Hyperscan stream, closed exactly once (python-hyperscan 0.9.1 crashes on a second close, on a
    closed stream re-entered, and on scanning a `hyperscan.Stream` built directly, so streams come from
    `Database.stream()`). The binding only borrows the database and the callback: the backend keeps both alive.
    Measured: opening and closing 1M streams this way does not grow the process."""

    __slots__ = ("_box", "_stream")

    def __init__(self, db: Any, on_match: Callable[..., None], box: list[Hits]) -> None:
        self._box = box
        self._stream = db.stream(match_event_handler=on_match)
        self._stream.__enter__()

    def scan(self, data: bytes) -> Hits:
        self._stream.scan(data)
        box = self._box  # _taken inlined: the call of every stream scan, most with no hit
        hits = box[0]
        if not hits:
            return NO_HITS
        box[0] = {}
        return hits

    def close(self) -> Hits:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()
        return _taken(self._box)

    def __del__(self) -> None:
        """A stream its scanner never closed (an error, a forgotten close): free it, dropping its last matches
        (the shared callback must not see them: they would land in another scan's hits)."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                stream.close(match_event_handler=_ignore)
            except Exception:  # noqa: BLE001, S110 - interpreter shutdown, nothing useful to do
                pass


def _ignore(*_args: object) -> None:
    return None


UNIT_BLOCK_AFTER = 1024  # datagrams a stream database scans as streams before its block-mode database is made


class HyperscanBackend:
    name = "hyperscan"
    reports_all_ends = True  # every end offset of every match (a prefilter: a superset of them)

    def __init__(self, dbs: dict[str, list[DbPattern]]) -> None:
        self.dbs: dict[str, Any] = {}
        # the patterns of each stream database whose block-mode database (unit) was not made yet
        self._sources: dict[str, tuple[list[bytes], list[int], list[int]]] = {}
        self._unit_dbs: dict[str, Any] = {}  # stream key -> its patterns in block mode, for datagrams (unit)
        self._unit_calls: dict[str, int] = {}  # datagrams scanned by a stream key before its block database
        for key, pats in dbs.items():
            if not pats:
                continue
            mode = hyperscan.HS_MODE_BLOCK if block_mode(key) else hyperscan.HS_MODE_STREAM
            source = ([p.regex.encode("utf-8", "surrogateescape") for p in pats], [p.pid for p in pats],
                      [p.hs_flags for p in pats])
            # compiled, or loaded from the previous runs' cache (dbcache.py)
            self.dbs[key] = dbcache.compiled(mode, *source)
            if mode == hyperscan.HS_MODE_STREAM:
                self._sources[key] = source
        self._cb, self._box = _accumulator()  # shared by every scan: calls never overlap (one thread)
        self.streams_opened = 0

    def block(self, key: str, data: bytes) -> Hits:
        db = self.dbs.get(key)
        if db is None:
            return {}
        db.scan(data, match_event_handler=self._cb)
        return _taken(self._box)

    def stream(self, key: str) -> _HsStream | None:
        db = self.dbs.get(key)
        if db is None:
            return None
        self.streams_opened += 1
        return _HsStream(db, self._cb, self._box)

    def unit(self, key: str, data: bytes) -> Hits:
        """What a stream of database `key` opened, given `data` and closed at once reports (a datagram). After
        UNIT_BLOCK_AFTER datagrams of a database, from one block-mode scan of the same patterns: no stream made,
        one call instead of three. Hyperscan reports the same matches in both modes (an end-of-data match: at
        close, or at the block's end); only a pattern with more than MAX_ENDS ends can differ (the stream cuts
        its list per scan and per close, merged() joins them), so such hits are computed the stream's way."""
        db = self._unit_dbs.get(key)
        if db is None and key in self._sources:
            db = self._unit_db(key)
        if db is not None:
            db.scan(data, match_event_handler=self._cb)
            hits = _taken(self._box)
            if not hits or all(r[2] is not None for r in hits.values()):
                return hits
        stream = self.stream(key)
        if stream is None:
            return NO_HITS
        return merged(stream.scan(data), stream.close())

    def _unit_db(self, key: str) -> Any:
        """The block-mode database of a stream database's patterns once UNIT_BLOCK_AFTER datagrams were scanned
        with it (compiling it costs about what the stream databases cost, once per rule set with the cache:
        worth it for a capture with many datagrams only), else None; if Hyperscan refuses it: streams."""
        seen = self._unit_calls.get(key, 0) + 1
        self._unit_calls[key] = seen
        if seen <= UNIT_BLOCK_AFTER:
            return None
        source = self._sources.pop(key)
        try:
            db = self._unit_dbs[key] = dbcache.compiled(hyperscan.HS_MODE_BLOCK, *source)
        except HS_ERRORS:
            return None
        return db

    def size(self) -> int:
        return sum(db.size() for db in self.dbs.values())


def _find(pats: list[tuple[DbPattern, bool]], buf: bytes, base: int, lo: int, hi: int,
          reported: set[int] | None) -> Hits:
    """Hits of matches in buf (which starts at absolute offset base) that end in (lo, hi], hi being where buf
    ends; for patterns that look past their match, in [lo, hi): one ending on the last byte is held back to the
    next call, whose lo is this hi. Patterns the engine confirms itself
    (validators) are reported on every call: the engine's own search over the window is the exact one,
    where finditer's non-overlapping matches could skip a match that ends in this call."""
    hits: Hits = {}
    for p, ahead in pats:
        if p.confirm:
            hits[p.pid] = [lo, hi, None]
            continue
        if p.single and reported is not None and p.pid in reported:
            continue
        first = last = -1
        start = max(0, lo - base - p.width) if p.width is not None else 0
        for m in p.pyre.finditer(buf, start):  # type: ignore[union-attr]
            s, e = m.span()
            e += base
            if s + base == e or e > hi or (e >= hi or e < lo if ahead else e <= lo):
                continue
            if first < 0:
                first = last = e
            elif e > last:
                last = e
            if p.single:
                break
        if first >= 0:
            hits[p.pid] = [first, last, None]
            if p.single and reported is not None:
                reported.add(p.pid)
    return hits


class _PyStream:
    """Stream emulation: each call scans the last WINDOW bytes plus the new ones. A match ending exactly at the
    end of what was seen is held back to the next call (or close) when the pattern looks ahead, as Hyperscan
    holds back a match whose `\\b` or `$` depends on bytes not yet seen."""

    __slots__ = ("pats", "pos", "reported", "tail")

    def __init__(self, pats: list[tuple[DbPattern, bool]]) -> None:
        self.pats = pats
        self.tail = b""
        self.pos = 0
        self.reported: set[int] = set()

    def scan(self, data: bytes) -> Hits:
        buf = self.tail + data
        base = self.pos - len(self.tail)
        hits = _find(self.pats, buf, base, self.pos, self.pos + len(data), self.reported)
        self.pos += len(data)
        self.tail = buf[-WINDOW:]
        return hits

    def close(self) -> Hits:
        """The matches held back at the end: now the end of the stream decides them."""
        held = [(p, False) for p, ahead in self.pats if ahead]
        hits = _find(held, self.tail, self.pos - len(self.tail), self.pos - 1, self.pos, self.reported)
        self.tail = b""
        return hits


class PythonBackend:
    name = "python"
    reports_all_ends = False  # finditer: non-overlapping matches only

    def __init__(self, dbs: dict[str, list[DbPattern]]) -> None:
        self.dbs = {key: [(p, p.looks_ahead) for p in pats] for key, pats in dbs.items() if pats}
        self.block_dbs = {key: [(p, False) for p in pats] for key, pats in dbs.items() if pats}  # end = the end

    def block(self, key: str, data: bytes) -> Hits:
        pats = self.block_dbs.get(key)
        return _find(pats, data, 0, 0, len(data), None) if pats else {}

    def stream(self, key: str) -> _PyStream | None:
        pats = self.dbs.get(key)
        return _PyStream(pats) if pats else None

    def unit(self, key: str, data: bytes) -> Hits:
        """What a stream opened, given `data` and closed at once reports (a datagram)."""
        stream = self.stream(key)
        if stream is None:
            return NO_HITS
        return merged(stream.scan(data), stream.close())

    def size(self) -> int:
        return 0
