"""The DLP/WAF rules engine: rules compiled once per run into one database per context, scanned per flow.

Databases (as NeuVector's dpi_hs_search.c, plus sql and raw): "url", "header", "body", "sql" each hold the
patterns of their context plus every "packet" pattern; "raw" (the whole payload of a flow no parser splits into
url/header/body) has the body database's patterns but those of rules restricted to apps that never have a raw
stream (NO_RAW_APPS: CRS rules, Suricata `alert http` rules). Patterns compile caseless and dot-all (dp's /is). A pattern Hyperscan
cannot take exactly (back-references, look-around) is compiled as a prefilter and confirmed with Python `re`.
Each database exists per side (RuleEngine.sides): a side whose rules leave out at least a quarter of its
patterns (request rules in response bodies: most of CRS) gets a database of its own ("body#1"), else both sides
share it and _process drops the other side's hits.

OWASP CRS rules (rules/crs.py) also use "form" (the fields of a form-encoded, JSON or multipart request body: a
block unit, item by item like a url's arguments), "files" (the file names of a multipart upload and their parts'
names: a block unit, item by item) and "xml" (a request body sent as XML: a stream); a CRS link of several
variables names several contexts ("form+header+url+xml") and its pattern goes to each one's database.

Scanning differs from dp on purpose: url and header calls are single units (block mode), but body, sql and raw
calls of one flow direction form one stream, so a card number split across two segments is still found (dp
scans each packet alone and misses it).

Transformations (ModSecurity's t:, OWASP CRS rules: rules/crs.py, rules/transforms.py). A pattern with a
transformation chain goes, in the url and header contexts, to the database of all the context's chains
("url|+"); each url/header unit is scanned as it is by the plain database, then each chain's output is
computed (common prefixes once, transforms.ChainSet), and each distinct output is scanned once by the chained
database, a hit counting only for a pattern whose chain gave that output (_BlockPlan); hits are processed per
chain in the order of their names, as separate scans would be. Most chains give a header block or url back
unchanged or equal to another chain's (lowercase is free, patterns are caseless; urlDecode/urlDecodeUni are
free in url, decoded already; decoders with nothing to decode): 2 to 6 scans instead of 16. The same request
line or header block comes back in many flows: what its scans and Python's checks of their hits gave is kept
(RuleEngine.unit_cache, an LRU bounded by entries and bytes, _UnitCache) and only the flow's rule state is
updated per flow (the same alerts as without it; 70 to 99 % of units on the bench captures). In stream
contexts (body, sql, raw) a chain of chunk-safe transformations (removeNulls, replaceNulls, removeWhitespace,
compressWhitespace) is applied to each call, one more stream per chain; a pattern with any other
transformation scans the content as it is there.

When a rule holds. NeuVector ANDs a rule's patterns over one packet. nvpcap ANDs them over the flow seen so
far: a rule fires when each positive pattern has matched somewhere in the flow (in its context, on a side the
rule's direction allows) and none of its negated patterns has matched in the flow (in that pattern's context)
before or in the same scan call. A negated pattern seen only after the rule fired does not withdraw the alert.
A Suricata rule's header (rules/header.py) must hold on the side a pattern matched on, for the flow's
endpoints given to flow_scanner (checked once per flow and distinct header, at the first hit of a rule with it).
The validator, if any, must accept the matched text of the rule's first positive pattern. One Match per (flow,
rule); later calls that satisfy it again only raise its count (up to COUNT_LIMIT, then the rule is skipped).

Confirmation. A hit of a prefiltered or validated pattern only says where to look: Python `re` reads the window
around the reported ends (a few bytes per hit for patterns of bounded width) and takes the first candidate the
validator accepts, trying overlapping and shorter candidates too. A candidate that ends on the last byte seen
and looks ahead (\\b, $, a look-ahead) is decided by the next call or by close().

Bounds. Per stream: a tail of the bytes scanned, as long as its database's patterns need (the longest match
Python confirms or takes the snippet of, plus LOOKAHEAD_MARGIN; WINDOW bytes if one is unbounded or anchored),
and the (end offset, frame, ts) of the calls that tail overlaps, at most CHUNK_HISTORY, in one array; per flow:
sets bounded by the number of patterns. A match that starts more than WINDOW bytes before the call it ends in
is still reported for exact patterns (Hyperscan keeps stream state) but cannot be confirmed or validated; per
call and pattern at most MAX_CANDIDATES candidate texts are validated and MAX_STEPS searches made. Python `re`
can still backtrack badly on a pathological pattern that needs confirmation (Hyperscan alone cannot): keep
validated patterns simple and bounded.
"""
from __future__ import annotations

import re
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Self

from . import redact, transforms
from .backends import (
    BLOCK_DBS,
    NO_HITS,
    SIDE_KEY,
    WINDOW,
    DbPattern,
    Hits,
    HyperscanBackend,
    PythonBackend,
)
from .header import FlowHeader, endpoint_ints
from .model import Match, Pattern, Rule, context_parts, rule_problem, shown_pattern
from .regex import (
    HS_BASE_FLAGS,
    HS_ERRORS,
    compile_python,
    hyperscan,
    hyperscan_error,
    looks_ahead,
    max_width,
    split_alternation,
)
from .transforms import STREAM_CONTEXTS
from .validators import VALIDATORS, rule_validator

CLIENT, SERVER = 0, 1
SCAN_CONTEXTS = ("url", "header", "body", "sql", "raw", "tls.sni", "dns.query", "form", "files", "xml")
# apps whose flows never have a raw stream (protocols/applayer.py: DECODED_CONTENT hands url/header/body instead,
# ENCRYPTED is not scanned): the "raw" database (the body database's patterns) leaves out patterns of rules
# restricted to these apps (CRS rules, Suricata `alert http`), which could never hold there but cost scanning
# time (a CRS prefilter can report at nearly every byte of binary traffic)
NO_RAW_APPS = frozenset({"http", "http2", "grpc", "consul", "elasticsearch", "ssl", "ssh"})
# the databases "packet" patterns are added to (not the names, nor the CRS-only views of request bodies: a form,
# multipart or XML body is in "body" already)
PACKET_DBS = ("url", "header", "body", "sql")
WINDOWED = "@window"  # suffix of a stream context's block database of windowed prefilters
CHAINED_KEY = "|+"  # suffix of a block context's database of all its chains' patterns (_BlockPlan)
_ANCHORED = re.compile(r"(?<![\\\[])\^|\\A")  # a ^ or \A that may anchor at the start (conservative)
CRS_SENSOR = "crs"  # Rule.sensor of the rules crs.py imports
# OWASP CRS 3.x blocking evaluation with its default thresholds (crs-setup.conf: inbound 5, outbound 4)
CRS_ANOMALY_RULES = (
    (Rule(949110, "Inbound Anomaly Score Exceeded", "waf", 5, (), description="OWASP CRS anomaly score of the "
          "requests reached the inbound threshold (5)", sensor="crs-anomaly", direction="request"), 5),
    (Rule(959100, "Outbound Anomaly Score Exceeded", "waf", 5, (), description="OWASP CRS anomaly score of the "
          "responses reached the outbound threshold (4)", sensor="crs-anomaly", direction="response"), 4),
)
_EMPTY: frozenset[int] = frozenset()  # shared until a flow needs a set of its own (memory per active flow)
_NO_ENTRIES: Mapping[Any, Any] = MappingProxyType({})  # the same for dicts (read-only: a write fails loudly)
CHUNK_HISTORY = 64  # (end offset, frame, ts) of the last calls per stream, to name the frame a match ends in
MAX_CANDIDATES = 256  # texts validated per pattern per call: hostile input cannot make a call unbounded
MAX_STEPS = 4096  # regex searches per pattern per call (candidates, and old matches skipped)
SHRINK_TRIES = 8  # shorter candidates tried from the start of a rejected one
LOOKAHEAD_MARGIN = 64  # bytes after the last candidate end the regex may look at
COUNT_LIMIT = 64  # a Match's count stops here: after that its rule costs nothing more in the flow
SNIPPET_LOOKBACK = 512  # bytes before a match's end searched first for its text
FALLBACK_TEXT = 40  # bytes before the end shown when Python `re` cannot extract the match
_SIDES = {"any": (CLIENT, SERVER), "request": (CLIENT,), "response": (SERVER,)}
# the url/header unit cache (_UnitCache): units repeat byte for byte across flows (the same request line,
# header block); bounded by entries and by an estimate of the bytes they hold
UNIT_CACHE_ENTRIES = 4096
UNIT_CACHE_BYTES = 3 << 20
UNIT_CACHE_MAX_UNIT = 4096  # longer units are not cached (rarely repeated, and they would crowd out the rest)


@dataclass(frozen=True, slots=True)
class _CPattern:
    """A pattern as compiled: which rule, how Hyperscan takes it, what Python must check after a hit."""

    pid: int
    rule_idx: int
    pattern: Pattern
    pyre: re.Pattern[bytes] | None
    prefilter: bool  # Hyperscan reports a superset: Python confirms
    validator: Callable[[str], bool] | None
    confirm: bool  # Python checks the text (prefilter or validator)
    snippet: bool  # the rule's first positive pattern: its text is the evidence
    sides: tuple[int, ...]
    ahead: bool  # a match may depend on the byte after it (\\b, $, look-ahead at its end)
    width: int | None  # longest possible match, None if unbounded
    apps: tuple[str, ...]  # the rule's app_proto: only flows of these apps (empty: any)
    header: int  # index of the rule's Suricata header in RuleEngine.headers, -1 for none
    hs_parts: tuple[str, ...] = ()  # what Hyperscan compiles under this pid, when not the regex itself


class RuleEngine:
    """Rules compiled for scanning. `problems` lists every rule dropped and why; `warning` is set when the
    pure-Python scanner is used because Hyperscan is missing or failed."""

    def __init__(self, rules: Iterable[Rule], backend: str = "auto",
                 unit_cache: int = UNIT_CACHE_ENTRIES) -> None:
        """`unit_cache`: entries of the url/header unit cache (_UnitCache), 0 for none."""
        if backend not in ("auto", "hyperscan", "python"):
            raise ValueError(f"backend {backend!r}: expected auto, hyperscan or python")
        if backend == "hyperscan" and hyperscan is None:
            raise RuntimeError("the hyperscan module is not installed")
        t0 = time.perf_counter()
        self.problems: list[str] = []
        self.warning: str | None = None
        use_hs = hyperscan is not None and backend != "python"
        if hyperscan is None and backend == "auto":
            self.warning = ("hyperscan is not installed: DLP/WAF rules scan with Python re (much slower; a match "
                            f"spanning calls is found only within {WINDOW} bytes)")
        rules = list(rules)
        self.backend: HyperscanBackend | PythonBackend
        try:
            self.backend = self._build(rules, use_hs)
        except HS_ERRORS as e:  # e.g. resource limits on a huge rule set
            if backend == "hyperscan":
                raise
            self.problems = [f"Hyperscan could not compile the databases ({e}): scanning with Python re"]
            self.warning = f"Hyperscan failed ({e}): DLP/WAF rules scan with Python re (much slower)"
            self.backend = self._build(rules, False)
        self.unit_cache = _UnitCache(unit_cache, UNIT_CACHE_BYTES if unit_cache else 0)
        self.compile_seconds = time.perf_counter() - t0

    def _build(self, rules: list[Rule], use_hs: bool) -> HyperscanBackend | PythonBackend:
        self.rules: list[Rule] = []
        self.patterns: list[_CPattern] = []
        self.headers: list[FlowHeader] = []  # distinct Suricata headers (rules sharing one share the check)
        self._header_ids: dict[FlowHeader, int] = {}
        self._rule_pids: list[tuple[tuple[int, ...], tuple[int, ...]]] = []  # (positive, negated) per rule
        for rule in rules:
            self._add(rule, use_hs)
        dbs = self._databases(use_hs)
        if use_hs:
            backend: HyperscanBackend | PythonBackend = HyperscanBackend(dbs)
        else:
            backend = PythonBackend(dbs)
        return backend

    # -- build --

    def _add(self, rule: Rule, use_hs: bool) -> None:
        problem = rule_problem(rule)
        if problem is None and rule.validator is not None and rule.validator not in VALIDATORS:
            problem = f"validator {rule.validator!r} is not implemented"
        where = f"{rule.source or 'rules'}: rule {rule.name!r} ({rule.rule_id})"
        if problem:
            self.problems.append(f"{where}: {problem}: rule dropped")
            return
        idx = len(self.rules)
        first_positive = next(i for i, p in enumerate(rule.patterns) if not p.negate)
        compiled: list[_CPattern] = []
        hid = -1
        if rule.header is not None:
            hid = self._header_ids.get(rule.header, len(self.headers))
        for i, p in enumerate(rule.patterns):
            cp = self._compile(p, idx, len(self.patterns) + len(compiled), rule, i == first_positive, use_hs, hid)
            if isinstance(cp, str):
                self.problems.append(f"{where} pattern /{shown_pattern(p.regex)}/: {cp}: rule dropped")
                return
            compiled.append(cp)
        if rule.header is not None and hid == len(self.headers):
            self._header_ids[rule.header] = hid
            self.headers.append(rule.header)
        self.rules.append(rule)
        self.patterns.extend(compiled)
        self._rule_pids.append((tuple(c.pid for c in compiled if not c.pattern.negate),
                                tuple(c.pid for c in compiled if c.pattern.negate)))

    @staticmethod
    def _compile(p: Pattern, idx: int, pid: int, rule: Rule, is_first: bool, use_hs: bool,
                 hid: int = -1) -> _CPattern | str:
        """The compiled pattern, or why it cannot be used."""
        try:
            pyre, py_err = compile_python(p.regex), ""
        except re.error as e:
            pyre, py_err = None, str(e)
        unknown = [t for t in p.transforms if not transforms.known(t)]
        if unknown:
            return f"transformation {unknown[0]!r} is not implemented"
        validator = rule_validator(rule) if is_first else None  # named validator and/or gitleaks checks
        prefilter = False
        hs_parts: tuple[str, ...] = ()
        if use_hs:
            err = hyperscan_error(p.regex)
            if err is not None and (parts := split_alternation(p.regex)) is not None:
                # too long for one expression (CRS 930120's phrase list): its alternatives in several, one pid
                errors = [e for part in parts if (e := hyperscan_error(part)) is not None]
                if not errors:
                    err, hs_parts = None, tuple(parts)
            if err is not None:
                if hyperscan_error(p.regex, prefilter=True) is not None:
                    return f"Hyperscan rejects it: {err}"
                if pyre is None:
                    return f"Hyperscan can only prefilter it ({err}) and Python re cannot confirm it ({py_err})"
                prefilter = True
        elif pyre is None:
            return f"invalid regex: {py_err}"
        elif pyre.match(b"") is not None:
            return "matches the empty string"
        if validator is not None and pyre is None:
            return f"the validator needs Python re, which rejects it ({py_err})"
        return _CPattern(pid, idx, p, pyre, prefilter, validator, prefilter or validator is not None, is_first,
                         _SIDES[rule.direction], looks_ahead(p.regex), max_width(p.regex), rule.app_proto, hid,
                         hs_parts)

    def _databases(self, use_hs: bool) -> dict[str, list[DbPattern]]:
        """One database per context; a pattern with transformations (CRS rules) goes to a database of its own
        chain ("url|htmlentitydecode,..."), which scans the content after that chain (self.chains); in stream
        contexts only chains of chunk-safe transformations are applied, others scan as is (transforms.effective)."""
        base = SCAN_CONTEXTS
        dbs: dict[str, list[DbPattern]] = {key: [] for key in base}
        chains: dict[str, dict[str, tuple[str, ...]]] = {}
        scanned: set[str] = set()
        for cp in self.patterns:
            single = not cp.confirm
            flags = HS_BASE_FLAGS
            if use_hs:
                flags |= hyperscan.HS_FLAG_PREFILTER if cp.prefilter else 0
                flags |= hyperscan.HS_FLAG_SINGLEMATCH if single else 0
            regexes = cp.hs_parts or (cp.pattern.regex,)
            dbp = [DbPattern(cp.pid, rx, flags, cp.pyre, single, cp.confirm, cp.width) for rx in regexes]
            # A prefilter of unbounded width can match at nearly every byte (CRS 932100 at every `;` or `|`),
            # and each match is a Python callback; the engine only uses its first and last end per call. Such
            # patterns go to a block database of their own, scanned over each call's window with SINGLEMATCH:
            # one callback per call, and Python confirms from that end to the window's end (the same matches).
            windowed = use_hs and cp.prefilter and cp.width is None
            wdbp = [DbPattern(cp.pid, rx, flags | hyperscan.HS_FLAG_SINGLEMATCH, cp.pyre, True, cp.confirm,
                              cp.width) for rx in regexes] if windowed else dbp
            ctx = cp.pattern.context
            targets = PACKET_DBS if ctx == "packet" else context_parts(ctx)
            raw = "body" in targets and not (cp.apps and NO_RAW_APPS.issuperset(cp.apps))
            for key in base:
                if key in targets or (key == "raw" and raw):
                    scanned.add(key)
                    chain = transforms.effective(cp.pattern.transforms, key) if cp.pattern.transforms else ()
                    dbkey = f"{key}|{','.join(chain)}" if chain else key
                    if chain:
                        chains.setdefault(key, {})[dbkey] = chain
                    if windowed and key not in BLOCK_DBS:
                        dbs.setdefault(dbkey + WINDOWED, []).extend(wdbp)
                    else:  # a block context: one unit per call, so SINGLEMATCH and "to the end" serve as well
                        dbs.setdefault(dbkey, []).extend(wdbp if windowed else dbp)
        self.chains = {key: tuple(sorted(v.items())) for key, v in chains.items()}
        self.windowed_pids = frozenset(cp.pid for cp in self.patterns if use_hs and cp.prefilter and cp.width is None)
        # the contexts some pattern reads: a parser need not prepare content for the others (httpforms' fields)
        self.contexts = frozenset(scanned)
        out: dict[str, list[DbPattern]] = {}
        self.sides = (self._side(CLIENT, dbs, out), self._side(SERVER, dbs, out))
        return out

    def _side(self, side: int, dbs: dict[str, list[DbPattern]], out: dict[str, list[DbPattern]]) -> _Side:
        """The databases of one side, added to `out`: each logical database without the patterns whose rules
        cannot hold on that side (request rules in responses: CRS's were half of the time of response
        bodies), or the logical database itself when that leaves out little (_shared_key)."""
        mine = {key: [p for p in pats if side in self.patterns[p.pid].sides] for key, pats in dbs.items()}
        plans = {ctx: self._block_plan(ctx, mine) for ctx in BLOCK_DBS if self._live_chains(ctx, mine)}
        keys = {key: _shared_key(out, key, side, pats, self._everything(dbs, key)) for key, pats in mine.items()
                if pats}
        for plan in plans.values():
            plan.chained_key = keys.get(plan.chained_key)
        streams = {key: _StreamPlan(key.split("|", 1)[0], side, keys.get(key), keys.get(key + WINDOWED),
                                    self._keep(mine, key))
                   for key in sorted({k.removesuffix(WINDOWED) for k in keys})
                   if key.split("|", 1)[0] not in BLOCK_DBS}
        chains = {db: live for db in STREAM_CONTEXTS if (live := self._live_chains(db, mine))}
        calls = {ctx: (streams.get(ctx), tuple((streams[k], c) for k, c in chains.get(ctx, ())))
                 for ctx in STREAM_CONTEXTS}
        calls["packet"] = calls["raw"]
        return _Side(keys, plans, chains, streams, calls)

    def _everything(self, dbs: dict[str, list[DbPattern]], key: str) -> list[DbPattern]:
        """The patterns of a logical database on both sides ("ctx|+": the merged chains of both)."""
        if not key.endswith(CHAINED_KEY):
            return dbs[key]
        ctx = key[: -len(CHAINED_KEY)]
        return [p for k, _chain in self.chains[ctx] for p in dbs.get(k, [])]

    def _live_chains(self, ctx: str, mine: dict[str, list[DbPattern]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The chains of a context that have patterns on a side, in the order of self.chains."""
        return tuple((k, c) for k, c in self.chains.get(ctx, ()) if mine.get(k) or mine.get(k + WINDOWED))

    def _block_plan(self, ctx: str, mine: dict[str, list[DbPattern]]) -> _BlockPlan:
        """Merge a block context's chain databases into one: most chains give back the unit unchanged or the
        same bytes as another chain (decoders with nothing to decode), so each distinct result is scanned
        once by the patterns of every chain that gave it, instead of once per chain. (The plain database
        stays apart: merged with the chains' it saved one scan per unit but took 2 s more to compile for
        CRS.)"""
        live = self._live_chains(ctx, mine)
        slot = [-1] * len(self.patterns)
        chained: list[DbPattern] = []
        for i, (dbkey, _chain) in enumerate(live, 1):
            for p in mine.pop(dbkey, []):
                slot[p.pid] = i
                chained.append(p)
        mine[ctx + CHAINED_KEY] = chained
        chainset = transforms.SelectingChainSet(tuple(chain for _key, chain in live), ctx)
        return _BlockPlan(chainset, ctx + CHAINED_KEY, tuple(slot))

    def _keep(self, mine: dict[str, list[DbPattern]], key: str) -> int:
        """Bytes of a stream's tail to keep: Python reads back from a hit at most the longest match of a
        pattern it confirms or takes the snippet of, plus LOOKAHEAD_MARGIN for what the regex looks at
        around it; WINDOW if one is of unbounded width or anchored at the stream's start (the window must
        then start where the stream does, as long as it can)."""
        need = 0
        for p in mine.get(key, []) + mine.get(key + WINDOWED, []):
            cp = self.patterns[p.pid]
            if cp.confirm or cp.snippet:
                if cp.width is None or _ANCHORED.search(cp.pattern.regex):
                    return WINDOW
                need = max(need, cp.width + LOOKAHEAD_MARGIN)
        return min(need, WINDOW)

    # -- use --

    def flow_scanner(self, flow_key: Any = None, app: str | None = None,
                     endpoints: tuple | None = None) -> FlowScanner:
        """`app`: the flow's app_proto, for rules restricted to some (None: such rules never hold).
        `endpoints`: the flow's keys (proto, c_hi, c_lo, s_hi, s_lo, cport, sport, ...) as the pipeline holds
        them, for the headers of Suricata rules (transport, addresses, ports, direction); None: headers are not
        checked (every rule holds whatever its header says)."""
        return FlowScanner(self, flow_key, app, endpoints)

    def rule_pids(self, rule_idx: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self._rule_pids[rule_idx]


def _shared_key(out: dict[str, list[DbPattern]], key: str, side: int, pats: list[DbPattern],
                everything: list[DbPattern]) -> str:
    """The backend key of a side's database: a database of its own (key#side) if it leaves out at least a
    quarter of the logical database's patterns, else the logical database (hits of the other side's
    patterns are dropped by _process): a database that saves little scanning is not worth compiling
    (it doubled the bundled packs' compile time)."""
    if len(pats) * 4 > len(everything) * 3:
        out[key] = everything
        return key
    skey = f"{key}{SIDE_KEY}{side}"
    out[skey] = pats
    return skey


@dataclass(eq=False, slots=True)
class _BlockPlan:
    """How a block context with transformation chains is scanned: the unit by the plain database (slot 0),
    and each distinct result among the chains' outputs once by the database of all chained patterns (with
    the unit, if some chains gave it back unchanged); a hit counts only for a pattern whose chain gave it."""

    chains: transforms.SelectingChainSet  # the side's chains, in the order of RuleEngine.chains[context]
    chained_key: str | None  # the database of the chained patterns (its backend key once built)
    slot: tuple[int, ...]  # pid -> i + 1 for a pattern of the i-th chain, -1 for others


# a unit's hits once Python has checked them (FlowScanner._checked), in the order of the hits: (pid, end, text),
# text being the confirmed match or the snippet's (None if the pattern needs neither); rejected hits left out
CheckedHits = tuple[tuple[int, int, bytes | None], ...]
UnitHits = tuple[tuple[bytes, CheckedHits], ...]  # (bytes scanned, checked hits) per slot with hits, slot order


class _UnitCache:
    """What scanning a url/header unit found, by (plan, unit bytes): the same request line or header block
    comes back in many flows, and its chain outputs, hits and what Python's checks of those hits give (the
    confirmed end and text, the snippet's text) do not depend on the flow; only what the flow's rule state
    makes of them does, so that still runs per flow (_process_checked). A bounded LRU of immutable entries:
    at most `entries` entries and about `max_bytes` bytes (estimated by _cost); units longer than
    UNIT_CACHE_MAX_UNIT are neither kept nor counted (keeps(): they take the uncached path)."""

    __slots__ = ("_map", "bytes", "entries", "evictions", "hits", "max_bytes", "misses")

    def __init__(self, entries: int, max_bytes: int) -> None:
        self._map: dict[tuple[Any, bytes], tuple[UnitHits, int]] = {}  # insertion order = least recent first
        self.entries = entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, plan: Any, data: bytes) -> UnitHits | None:
        if not self.keeps(data):
            return None
        key = (plan, data)
        got = self._map.pop(key, None)
        if got is None:
            self.misses += 1
            return None
        self._map[key] = got  # the most recent again
        self.hits += 1
        return got[0]

    def keeps(self, data: bytes) -> bool:
        """Whether a unit can be kept: bytes (a view would keep its whole buffer alive), not too long."""
        return bool(self.entries) and type(data) is bytes and len(data) <= UNIT_CACHE_MAX_UNIT

    def put(self, plan: Any, data: bytes, found: UnitHits) -> None:
        if not self.keeps(data):
            return
        cost = _cost(data, found)
        self._map[(plan, data)] = (found, cost)
        self.bytes += cost
        while len(self._map) > self.entries or self.bytes > self.max_bytes:
            old = next(iter(self._map))
            self.bytes -= self._map.pop(old)[1]
            self.evictions += 1

    def __len__(self) -> int:
        return len(self._map)

    def clear(self) -> None:
        """Empty, counters reset (benchmarks: each scan starts cold)."""
        self._map.clear()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0


def _cost(data: bytes, found: UnitHits) -> int:
    """Bytes an entry holds, roughly as CPython counts them (calibrated with tracemalloc: tests/test_crs.py):
    the key and the unit, each output other than the unit, each checked hit and its text."""
    cost = 300 + len(data)
    for out, checked in found:
        if out is not data:
            cost += 40 + len(out)
        cost += 100 + 8 * len(checked)
        for _pid, _end, text in checked:
            cost += 100 + (40 + len(text) if text is not None else 0)
    return cost


@dataclass(eq=False, slots=True)
class _StreamPlan:
    """A logical stream database on one side: its backend keys and the tail its streams keep. Also the key
    of a flow's stream of it (hashed by identity: no tuple built per call or kept per stream)."""

    context: str  # the context alerts name ("body", "sql", "raw")
    side: int
    key: str | None  # the stream database (None: only windowed prefilters)
    wkey: str | None  # the block database of its windowed prefilters, scanned over each call's window
    keep: int  # bytes of tail kept per stream (RuleEngine._keep)


@dataclass(frozen=True, slots=True)
class _Side:
    """What one side of a flow (client, server) is scanned with, by logical database ("url", "body",
    "body|removewhitespace", ...)."""

    keys: dict[str, str]  # logical database -> backend key (absent: no pattern on this side)
    block_plans: dict[str, _BlockPlan]  # url/header contexts with transformation chains
    chains: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]  # stream context -> its chains on this side
    streams: dict[str, _StreamPlan]  # stream databases (plain and chained)
    # what a call of a stream context ("packet" too: raw) goes to, looked up once per call: the context's plain
    # stream (None: no pattern on this side) and its chunk-safe chains' streams
    stream_calls: dict[str, tuple[_StreamPlan | None, tuple[tuple[_StreamPlan, tuple[str, ...]], ...]]]


@dataclass(slots=True)
class _Evidence:
    context: str
    side: int
    frame: int
    ts_ns: int
    text: bytes | None
    seq: int


class _Stream:
    """One (context, side, database) stream of a flow. Kept small: tens of thousands are open at once."""

    __slots__ = ("checked", "chunks", "handle", "pending", "plan", "pos", "tail")

    def __init__(self, handle: Any, plan: _StreamPlan) -> None:
        self.handle = handle
        self.plan = plan
        self.pos = 0  # bytes scanned so far: the absolute offset of the next call's first byte
        self.tail = b""  # the last plan.keep bytes scanned
        # (end offset, frame, ts) of the calls whose bytes may still be reported, flat, at most CHUNK_HISTORY
        self.chunks = array("q")
        self.checked: dict[int, int] | None = None  # pid -> offset up to which Python has confirmed candidates
        self.pending: set[int] | frozenset[int] = _EMPTY  # pids with a candidate held back at the end of the last call


class _NoStream:
    """The stream of a context whose patterns are all windowed prefilters: nothing for Hyperscan to stream."""

    @staticmethod
    def scan(_data: bytes) -> Hits:
        return {}

    @staticmethod
    def close() -> Hits:
        return {}


_NO_STREAM = _NoStream()
_SKIP = object()  # FlowScanner._admit: the hit changes nothing in this flow


class FlowScanner:
    """Scan state of one flow. Call `scan` with each piece of decoded content, then `close` once (it reports
    matches that need the end of a stream, and frees the Hyperscan streams)."""

    __slots__ = (
        "_anomaly",
        "_endpoints",
        "_fired",
        "_header_ok",
        "_neg_hit",
        "_pos_hit",
        "_seq",
        "_streams",
        "alerts",
        "app",
        "closed",
        "engine",
        "flow_key",
    )

    def __init__(self, engine: RuleEngine, flow_key: Any = None, app: str | None = None,
                 endpoints: tuple | None = None) -> None:
        self.engine = engine
        self.flow_key = flow_key
        self.app = app
        # (proto, client, server, cport, sport) for the Suricata headers; their verdicts per header id, made on
        # the first hit of a rule with that header: (holds on the client side, on the server side)
        self._endpoints = endpoint_ints(endpoints) if endpoints is not None and engine.headers else None
        # dicts filled on a flow's first hits only (most flows have none): the shared empty one until then
        self._header_ok: Mapping[int, tuple[bool, bool]] = _NO_ENTRIES
        self.alerts: list[Match] = []
        self._streams: dict[_StreamPlan, _Stream] = {}  # by (context, side, database)
        self._pos_hit: Mapping[int, _Evidence] = _NO_ENTRIES
        self._neg_hit: set[int] | frozenset[int] = _EMPTY
        self._fired: Mapping[int, Match] = _NO_ENTRIES
        self._seq = 0
        self._anomaly: list[int] | None = None  # OWASP CRS anomaly scores of this flow: [inbound, outbound]
        self.closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan(self, context: str, side: int, data: bytes, frame: int, ts_ns: int, unit: bool = False) -> None:
        """One piece of content: url/header calls are whole units; body/sql/raw calls continue the stream of
        that (context, side), unless `unit` says the piece is a whole message (a UDP datagram): then it is
        scanned alone, as Suricata and NeuVector scan a datagram, and no stream state is kept for it."""
        view = self.engine.sides[side]
        streamed = view.stream_calls.get(context)
        if streamed is not None:  # body, sql, raw (packet): the common call, kept short
            if not data or self.closed:
                return
            stream, chained = streamed
            if stream is not None:
                if unit:
                    self._scan_unit(stream, data, frame, ts_ns)
                else:
                    self._scan_stream(stream, data, frame, ts_ns)
            if chained:  # patterns with chunk-safe transformations
                scan = self._scan_unit if unit else self._scan_stream
                for plan, chain in chained:
                    tdata = transforms.apply(chain, data)
                    if tdata:
                        scan(plan, tdata, frame, ts_ns)
            return
        if context not in SCAN_CONTEXTS:
            raise ValueError(f"context {context!r}: expected one of {SCAN_CONTEXTS}")
        if not data or self.closed:
            return
        plan = view.block_plans.get(context)
        if plan is not None:
            self._scan_chained(plan, view, context, side, data, frame, ts_ns)
            return
        hits = self._block(view.keys.get(context), data)
        if hits:
            self._process(hits, context, side, data, 0, (len(data), frame, ts_ns), None, True)

    def _block(self, key: str | None, data: bytes) -> Hits:
        """One unit scanned by a block database; a windowed prefilter's candidate runs from its first end to the
        unit's end (SINGLEMATCH reports only the first)."""
        if key is None:
            return NO_HITS
        hits = self.engine.backend.block(key, data)
        windowed = self.engine.windowed_pids
        if hits and windowed:
            _to_the_end(hits, windowed, len(data))
        return hits

    def _scan_chained(self, plan: _BlockPlan, view: _Side, context: str, side: int, data: bytes, frame: int,
                      ts_ns: int) -> None:
        """A url/header unit with transformation chains: what the unit's scans found (from the engine's unit
        cache when the same bytes were scanned before), processed for this flow."""
        cache = self.engine.unit_cache
        found = cache.get(plan, data)
        if found is None:
            scanned = self._chained_hits(plan, view, context, data)
            if not cache.keeps(data):
                for out, hits in scanned:
                    self._process(hits, context, side, out, 0, (len(out), frame, ts_ns), None, True)
                return
            found = tuple((out, checked) for out, hits in scanned if (checked := self._checked(hits, out)))
            cache.put(plan, data, found)
        for out, checked in found:
            self._process_checked(checked, context, side, out, (len(out), frame, ts_ns))

    def _chained_hits(self, plan: _BlockPlan, view: _Side, context: str,
                      data: bytes) -> list[tuple[bytes, Hits]]:
        """The unit scanned by the plain database, and each chain's result by the database of all chained
        patterns: one result per chain, or one per selected item for a chain that starts with a selection (a
        CRS header collection: rules/fields.py); equal results scanned once, a hit counting for a pattern of
        the chain that gave it (_BlockPlan.slot). (bytes, hits) per result with hits, in the order of separate
        scans (plain, then each chain, item by item), as counts and CRS anomaly scores depend on that order.
        Independent of the flow."""
        found: list[tuple[bytes, Hits]] = []
        plain = self._block(view.keys.get(context), data)
        if plain:
            found.append((data, plain))
        slot = plan.slot
        scans: dict[bytes, Hits] = {}  # distinct result -> the chained database's hits in it
        for i, results in enumerate(plan.chains.apply_each(data), 1):
            for out in results:
                if not out:
                    continue
                hits = scans.get(out)
                if hits is None:
                    hits = scans[out] = self._block(plan.chained_key, out)
                if hits:  # -1 in slot: a chain of the other side's (a database shared by both)
                    mine = {pid: r for pid, r in hits.items() if slot[pid] == i}
                    if mine:
                        found.append((out, mine))
        return found

    def _scan_stream(self, plan: _StreamPlan, data: bytes, frame: int, ts_ns: int) -> None:
        """One call of a stream: Hyperscan's hits (and the windowed prefilters'), then the tail and the chunk
        history for the next calls. Most calls hit nothing: the window (tail + data) is built only for a hit.
        (The call of every stream segment: kept in one function.)"""
        st = self._streams.get(plan)
        if st is None:
            st = self._streams[plan] = self._open(plan)
        hits = st.handle.scan(data)
        tail = st.tail
        pos = st.pos
        end = pos + len(data)
        chunks = st.chunks
        chunks.append(end)
        chunks.append(frame)
        chunks.append(ts_ns)
        if len(chunks) > 3 * CHUNK_HISTORY:
            del chunks[:3]
        window = None  # tail + data, built only when needed (a hit, windowed prefilters)
        if hits or plan.wkey is not None or st.pending:  # most calls: nothing to look at
            wstart = pos - len(tail)
            if plan.wkey is not None:
                window = tail + data
                hits = self._scan_window(hits, plan.wkey, window, wstart)
            if st.pending:
                hits = _with_pending(hits, st)
            if hits:
                if window is None:
                    window = tail + data
                self._process(hits, plan.context, plan.side, window, wstart, chunks, st, False)
        st.pos = end
        # the tail: the last `keep` bytes seen (from the window when it was built)
        keep = plan.keep
        n = len(data)
        if n >= keep:
            tail = data[n - keep :] if n > keep else data
        elif window is not None:
            tail = window[-keep:]  # all of it when the stream so far is shorter than keep
        elif len(tail) + n > keep:
            tail = tail[len(tail) + n - keep :] + data
        else:
            tail = tail + data
        st.tail = tail
        # the chunk history trimmed to the calls that tail overlaps
        start = end - len(tail)
        if chunks[0] < start and len(chunks) > 3:
            if chunks[3] >= start:
                del chunks[:3]  # the usual case: the oldest call left the window
            else:
                _forget(chunks, start)

    def _scan_unit(self, plan: _StreamPlan, data: bytes, frame: int, ts_ns: int) -> None:
        """A whole message of a stream context (a UDP datagram): what a stream of its own, opened, scanned and
        closed at once, reports (its end-of-data matches included: backend.unit), with the message as the
        window."""
        hits = self.engine.backend.unit(plan.key, data) if plan.key is not None else NO_HITS
        if plan.wkey is not None:
            hits = self._scan_window(hits, plan.wkey, data, 0)
        if hits:
            self._process(hits, plan.context, plan.side, data, 0, (len(data), frame, ts_ns), None, True)

    def _open(self, plan: _StreamPlan) -> _Stream:
        """A flow's stream of a database (plans exist only for databases with patterns on their side)."""
        handle = self.engine.backend.stream(plan.key) if plan.key is not None else None
        if handle is None:
            handle = _NO_STREAM  # only windowed prefilters here: the window still has to be kept
        return _Stream(handle, plan)

    def _scan_window(self, hits: Hits, wkey: str, window: bytes, wstart: int) -> Hits:
        """The windowed prefilters (see RuleEngine._databases): a candidate from their first end in the window
        to the window's end."""
        found = self.engine.backend.block(wkey, window)
        if found:
            wend = wstart + len(window)
            hits = dict(hits) if hits else {}
            for pid, (first, _last, _ends) in found.items():
                hits[pid] = [wstart + first, wend, None]
        return hits

    def close(self) -> None:
        """End of the flow: matches that need the end of a stream, then free every stream."""
        if self.closed:
            return
        self.closed = True
        for plan, st in self._streams.items():
            hits = st.handle.close()
            if st.pending:
                hits = _with_pending(hits, st)
            if hits and st.chunks:
                self._process(hits, plan.context, plan.side, st.tail, st.pos - len(st.tail), st.chunks, st, True)
        self._streams.clear()

    def buffered_bytes(self) -> int:
        """Bytes this flow holds for the rules (the windows), for memory accounting and tests."""
        return sum(len(st.tail) for st in self._streams.values())

    def history_len(self) -> int:
        return max((len(st.chunks) // 3 for st in self._streams.values()), default=0)

    # -- matching --

    def _process(self, hits: Hits, context: str, side: int, window: bytes, wstart: int,
                 chunks: Sequence[int], st: _Stream | None, final: bool) -> None:
        """Hits of one call. For patterns Python must check, a hit only says "look": candidates are every
        match in the window ending after what was checked before (the same with either backend), except one
        ending on the last byte seen when the pattern looks ahead and more bytes may come."""
        engine = self.engine
        checked = None
        if st is not None:
            checked = st.checked
            if checked is None:
                checked = st.checked = {}
        wend = wstart + len(window)
        touched: set[int] = set()
        again: set[int] = set()
        for pid, hit in hits.items():
            cp = engine.patterns[pid]
            fired = self._admit(cp, pid, side, again)
            if fired is _SKIP:
                continue
            end, text = hit[0], None
            if cp.confirm:
                held = cp.ahead and not final
                lo = checked.get(pid, -1) if checked is not None else -1
                if checked is not None:
                    checked[pid] = max(wend - held, lo)
                found, held_back = self._first_confirmed(cp, hit, window, wstart, lo, wend, held)
                if held_back and st is not None:
                    if not st.pending:
                        st.pending = set()
                    st.pending.add(pid)  # look again at the next call even if Hyperscan says nothing
                if found is None:
                    continue
                end, text = found
            self._take(cp, pid, fired, end, text, context, side, window, wstart, chunks, touched, again)
        self._settle(touched, again)

    def _process_checked(self, checked: CheckedHits, context: str, side: int, unit: bytes,
                         chunks: Sequence[int]) -> None:
        """A unit's hits checked already (_checked: from the unit cache), for this flow: as _process."""
        touched: set[int] = set()
        again: set[int] = set()
        patterns = self.engine.patterns
        for pid, end, text in checked:
            cp = patterns[pid]
            fired = self._admit(cp, pid, side, again)
            if fired is not _SKIP:
                self._take(cp, pid, fired, end, text, context, side, unit, 0, chunks, touched, again)
        self._settle(touched, again)

    def _admit(self, cp: _CPattern, pid: int, side: int, again: set[int]) -> Match | None | object:
        """Whether a hit can change anything in this flow: _SKIP if not (wrong side, app or Suricata header,
        a negation already seen, evidence already kept, its rule counted in this call or at COUNT_LIMIT), else
        the Match its rule fired already (None: not yet)."""
        if side not in cp.sides or (cp.apps and self.app not in cp.apps):
            return _SKIP
        if cp.header >= 0 and self._endpoints is not None:
            ok = self._header_ok.get(cp.header)
            if ok is None:
                ok = self.engine.headers[cp.header].sides(*self._endpoints)
                if self._header_ok is _NO_ENTRIES:
                    self._header_ok = {}
                self._header_ok[cp.header] = ok  # type: ignore[index]
            if not ok[side]:
                return _SKIP
        negate = cp.pattern.negate
        if negate and pid in self._neg_hit:
            return _SKIP
        fired = self._fired.get(cp.rule_idx)
        if not negate:
            if fired is None and pid in self._pos_hit:
                return _SKIP  # evidence already kept; the rule waits for its other patterns
            if fired is not None and (fired.count >= COUNT_LIMIT or cp.rule_idx in again):
                return _SKIP
        return fired

    def _take(self, cp: _CPattern, pid: int, fired: Match | None | object, end: int, text: bytes | None,
              context: str, side: int, window: bytes, wstart: int, chunks: Sequence[int], touched: set[int],
              again: set[int]) -> None:
        """A checked hit of an admitted pattern: a negation seen, a fired rule's count, or evidence."""
        if cp.pattern.negate:
            if not self._neg_hit:
                self._neg_hit = set()
            self._neg_hit.add(pid)
        elif fired is not None:
            again.add(cp.rule_idx)
        else:
            if cp.snippet and text is None:
                text = self._extract(cp, window, wstart, end)
            frame, ts = _where(chunks, end)
            self._seq += 1
            if self._pos_hit is _NO_ENTRIES:
                self._pos_hit = {}
            self._pos_hit[pid] = _Evidence(context, side, frame, ts, text, self._seq)  # type: ignore[index]
            touched.add(cp.rule_idx)

    def _settle(self, touched: set[int], again: set[int]) -> None:
        """The end of a call: counts of rules that held again, then the rules with new evidence."""
        for idx in again:
            self._fired[idx].count += 1  # type: ignore[attr-defined]
        for idx in sorted(touched):
            self._evaluate(idx)

    def _checked(self, hits: Hits, unit: bytes) -> CheckedHits:
        """A whole unit's hits as _process would check them (nothing checked before, nothing held back: the
        unit is final), with the snippet's text for a rule's first positive pattern: a function of the unit and
        the hits only, so a cached unit's checks serve every flow (computed once, for every hit)."""
        out = []
        patterns = self.engine.patterns
        for pid, hit in hits.items():
            cp = patterns[pid]
            end, text = hit[0], None
            if cp.confirm:
                found, _held_back = self._first_confirmed(cp, hit, unit, 0, -1, len(unit), False)
                if found is None:
                    continue
                end, text = found
            if cp.snippet and text is None:
                text = self._extract(cp, unit, 0, end)
            out.append((pid, end, text))
        return tuple(out)

    def _first_confirmed(self, cp: _CPattern, hit: list, window: bytes, wstart: int, lo: int, wend: int,
                         held: bool) -> tuple[tuple[int, bytes] | None, bool]:
        """The first candidate Python confirms in the regions a hit's ends point at (checked before `lo`:
        skipped), and whether a candidate ending on the last byte was held back on the way."""
        first, last, ends = hit
        held_any = False
        for r_lo, r_hi in _regions(lo, wend, first, last, ends, cp.width, self.engine.backend.reports_all_ends):
            found, held_back = self._confirm(cp, window, wstart, r_lo, r_hi, held)
            held_any = held_any or held_back
            if found is not None:
                return found, held_any
        return None, held_any

    def _evaluate(self, idx: int) -> None:
        pos, neg = self.engine.rule_pids(idx)
        if any(n in self._neg_hit for n in neg):
            return
        evidence = [self._pos_hit.get(p) for p in pos]
        if any(e is None for e in evidence):
            return
        last = max(evidence, key=lambda e: e.seq)  # type: ignore[union-attr]
        rule = self.engine.rules[idx]
        text = evidence[0].text or b""  # type: ignore[union-attr]
        m = Match(rule, last.context, last.side, last.frame, last.ts_ns,  # type: ignore[union-attr]
                  redact.snippet(rule.category, rule.validator, text))
        if self._fired is _NO_ENTRIES:
            self._fired = {}
        self._fired[idx] = m  # type: ignore[index]
        self.alerts.append(m)
        if rule.sensor == CRS_SENSOR:
            self._crs_score(m)

    def _crs_score(self, m: Match) -> None:
        """OWASP CRS's anomaly scoring (REQUEST-949/RESPONSE-959): each matching rule adds its severity's score
        (critical 5, error 4, warning 3, notice 2: the same numbers as nvpcap's severities); the first time a
        direction's total reaches CRS's default threshold (inbound 5, outbound 4), its blocking rule fires.
        Scored per flow and direction, once per rule (CRS scores per transaction)."""
        if self._anomaly is None:
            self._anomaly = [0, 0]
        side = 0 if m.side == CLIENT else 1
        before = self._anomaly[side]
        after = self._anomaly[side] = before + m.rule.severity
        summary, threshold = CRS_ANOMALY_RULES[side]
        if before < threshold <= after:
            parts = [a for a in self.alerts if a.rule.sensor == CRS_SENSOR and (0 if a.side == CLIENT else 1) == side]
            text = f"total score {after}: rules " + ", ".join(str(a.rule.rule_id) for a in parts)
            self.alerts.append(Match(summary, m.context, m.side, m.frame, m.ts_ns, text))

    @staticmethod
    def _confirm(cp: _CPattern, window: bytes, wstart: int, lo: int, hi: int,
                 held: bool) -> tuple[tuple[int, bytes] | None, bool]:
        """The first Python match in the window ending in (lo, hi] (absolute offsets; not on the window's last
        byte when `held`) that the validator accepts: (absolute end, text). Overlapping candidates are tried,
        and shorter ones from the same start that end at a natural boundary, so an invalid card does not hide a
        valid one (after it, or inside it: "4532015112830366 12" is a 18-digit candidate and a 16-digit one).
        The string is cut LOOKAHEAD_MARGIN bytes after hi, never at a candidate's end, so that a \\b or a
        look-ahead at the end of a match sees the real next bytes. Also says whether a candidate ending on the
        last byte was held back (the next call must look at it even if Hyperscan, as a prefilter, does not)."""
        rx = cp.pyre
        held_back = False
        if rx is None:
            return None, held_back
        wlen = len(window)
        hi_rel = min(hi - wstart, wlen - held)
        endpos = min(wlen, hi_rel + LOOKAHEAD_MARGIN)
        lo_rel = lo - wstart
        validator = cp.validator
        tries = 0
        # a candidate must end after lo, so with a bounded width it starts at most `width` bytes before it
        pos = max(0, lo_rel - cp.width + 1) if cp.width is not None and lo >= 0 else 0
        for _ in range(MAX_STEPS):
            m = rx.search(window, pos, endpos)
            if m is None or m.start() >= hi_rel:
                return None, held_back
            s, e = m.span()
            if held and e == wlen and e > lo_rel:
                held_back = True
            if lo_rel < e <= hi_rel and e > s:
                text = m.group()
                if validator is None or validator(text.decode("latin-1")):
                    return (e + wstart, text), held_back
                tries += 1
            if e > lo_rel and e > s and validator is not None:
                for e2 in _boundaries(window, s, min(e, hi_rel + 1)):
                    if e2 <= lo_rel or tries >= MAX_CANDIDATES:
                        break
                    short = rx.fullmatch(window, s, e2)
                    if short is not None:
                        tries += 1
                        if validator(short.group().decode("latin-1")):
                            return (e2 + wstart, short.group()), held_back
            if tries >= MAX_CANDIDATES:
                return None, held_back
            pos = s + 1
        return None, held_back

    @staticmethod
    def _extract(cp: _CPattern, window: bytes, wstart: int, end: int) -> bytes:
        """The text of the match ending at `end` (else the latest one before it), for the snippet."""
        endpos = end - wstart
        if endpos <= 0:
            return b""
        rx = cp.pyre
        if rx is not None:
            for start in (max(0, endpos - SNIPPET_LOOKBACK), 0):
                best = None
                pos = start
                for _ in range(64):
                    m = rx.search(window, pos, endpos)
                    if m is None:
                        break
                    if m.end() > m.start() and (best is None or m.end() >= best.end()):
                        best = m
                    if m.end() == endpos:
                        break
                    pos = m.start() + 1
                if best is not None:
                    # the longest match from that start in what is seen: Hyperscan reports the earliest end,
                    # the text shown is the whole token (the same with either backend)
                    full = rx.match(window, best.start())
                    return full.group() if full is not None and full.end() > best.end() else best.group()
                if start == 0:
                    break
        return window[max(0, endpos - FALLBACK_TEXT) : endpos]


def _to_the_end(hits: Hits, windowed: frozenset[int], end: int) -> None:
    """Windowed prefilters report their first end only (SINGLEMATCH): candidates run from there to `end`."""
    for pid in windowed.intersection(hits):
        hits[pid] = [hits[pid][0], end, None]


def _with_pending(hits: Hits, st: _Stream) -> Hits:
    """Add the ends held back at the end of the last call (offset st.pos) to this call's hits."""
    at = st.pos
    if not hits:
        hits = {}  # the backend's shared empty Hits is not ours to fill
    for pid in st.pending:
        r = hits.get(pid)
        if r is None:
            hits[pid] = [at, at, [at]]
        else:
            r[0] = min(r[0], at)
            if r[2] is not None:
                r[2].append(at)
    st.pending = _EMPTY
    return hits


def _regions(lo: int, wend: int, first: int, last: int, ends: list[int] | None, width: int | None,
             all_ends: bool) -> list[tuple[int, int]]:
    """Where candidates may end, as (after, up to) absolute ranges. Without Hyperscan: anywhere after lo.
    With it, every real match end was reported: from the first to the last end, or, for a pattern of bounded
    width whose ends were all kept, only at those ends (ranges closer than the width merged), so Python
    reads a few bytes around each hit instead of the whole call."""
    if not all_ends:
        return [(lo, wend)]
    if ends is None or width is None:
        return [(max(lo, first - 1), last)] if last > lo else []
    out: list[tuple[int, int]] = []
    for e in sorted(set(ends)):
        if e <= lo:
            continue
        if out and e - width <= out[-1][1]:
            out[-1] = (out[-1][0], e)
        else:
            out.append((e - 1, e))
    return out


def _boundaries(window: bytes, start: int, end: int, limit: int = SHRINK_TRIES) -> list[int]:
    """Ends shorter than `end` where a word ends in the real bytes (the next byte is not alphanumeric), longest
    first: where a shorter match can end without its \\b being an artefact of cutting the string."""
    out = []
    for e in range(end - 1, start, -1):
        if not chr(window[e]).isalnum() and chr(window[e - 1]).isalnum():
            out.append(e)
            if len(out) >= limit:
                break
    return out


def _where(chunks: Sequence[int], end: int) -> tuple[int, int]:
    """Frame and time of the call whose bytes hold offset end-1 (the oldest kept if it is older); chunks is
    flat: end offset, frame, ts of each call."""
    n = len(chunks)
    for i in range(0, n, 3):
        if end <= chunks[i]:
            return chunks[i + 1], chunks[i + 2]
    return (chunks[n - 2], chunks[n - 1]) if n else (0, 0)


def _forget(chunks: array, start: int) -> None:
    """Drop the calls that ended before `start`, the next window's first byte: no later hit ends there, so
    _where never picks them (a stream of large calls keeps one or two instead of CHUNK_HISTORY)."""
    drop = 0
    n = len(chunks)
    while drop + 3 < n and chunks[drop] < start:
        drop += 3
    if drop:
        del chunks[:drop]
