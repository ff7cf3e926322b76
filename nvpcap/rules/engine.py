"""The DLP/WAF rules engine: rules compiled once per run into one database per context, scanned per flow.

Databases (as NeuVector's dpi_hs_search.c, plus sql and raw): "url", "header", "body", "sql" each hold the
patterns of their context plus every "packet" pattern; "raw" (the whole payload of a flow no parser splits into
url/header/body) has the body database's patterns but those of rules restricted to apps that never have a raw
stream (NO_RAW_APPS: CRS rules, Suricata `alert http` rules). Patterns compile caseless and dot-all (dp's /is). A pattern Hyperscan
cannot take exactly (back-references, look-around) is compiled as a prefilter and confirmed with Python `re`.

Scanning differs from dp on purpose: url and header calls are single units (block mode), but body, sql and raw
calls of one flow direction form one stream, so a card number split across two segments is still found (dp
scans each packet alone and misses it).

Transformations (ModSecurity's t:, OWASP CRS rules: rules/crs.py, rules/transforms.py). A pattern with a
transformation chain goes, in the url and header contexts, to a database of that chain; each url/header unit is
scanned as it is by the plain database, then once per distinct chain, transformed, by that chain's database
(lowercase is free, patterns are caseless; urlDecode/urlDecodeUni are free in url, decoded already). In stream
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

Bounds. Per stream: the last WINDOW bytes (for confirmation, validators and snippets) and the (end offset,
frame, ts) of the last CHUNK_HISTORY calls; per flow: sets bounded by the number of patterns. A match that
starts more than WINDOW bytes before the call it ends in is still reported for exact patterns (Hyperscan keeps
stream state) but cannot be confirmed or validated; per call and pattern at most MAX_CANDIDATES candidate texts
are validated and MAX_STEPS searches made. Python `re` can still backtrack badly on a pathological pattern
that needs confirmation (Hyperscan alone cannot): keep validated patterns simple and bounded.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import redact, transforms
from .backends import (
    BLOCK_DBS,
    WINDOW,
    DbPattern,
    Hits,
    HyperscanBackend,
    PythonBackend,
)
from .header import FlowHeader, endpoint_ints
from .model import Match, Pattern, Rule, rule_problem
from .regex import (
    HS_BASE_FLAGS,
    HS_ERRORS,
    compile_python,
    hyperscan,
    hyperscan_error,
    looks_ahead,
    max_width,
)
from .validators import VALIDATORS, rule_validator

CLIENT, SERVER = 0, 1
SCAN_CONTEXTS = ("url", "header", "body", "sql", "raw", "tls.sni", "dns.query")
CONTEXT_DB = {"url": "url", "header": "header", "body": "body", "sql": "sql", "raw": "raw", "tls.sni": "tls.sni",
              "dns.query": "dns.query"}
# apps whose flows never have a raw stream (protocols/applayer.py: DECODED_CONTENT hands url/header/body instead,
# ENCRYPTED is not scanned): the "raw" database (the body database's patterns) leaves out patterns of rules
# restricted to these apps (CRS rules, Suricata `alert http`), which could never hold there but cost scanning
# time (a CRS prefilter can report at nearly every byte of binary traffic)
NO_RAW_APPS = frozenset({"http", "http2", "grpc", "consul", "elasticsearch", "ssl", "ssh"})
PACKET_DBS = ("url", "header", "body", "sql")  # the databases "packet" patterns are added to (not the names)
WINDOWED = "@window"  # suffix of a stream context's block database of windowed prefilters
CRS_SENSOR = "crs"  # Rule.sensor of the rules crs.py imports
# OWASP CRS 3.x blocking evaluation with its default thresholds (crs-setup.conf: inbound 5, outbound 4)
CRS_ANOMALY_RULES = (
    (Rule(949110, "Inbound Anomaly Score Exceeded", "waf", 5, (), description="OWASP CRS anomaly score of the "
          "requests reached the inbound threshold (5)", sensor="crs-anomaly", direction="request"), 5),
    (Rule(959100, "Outbound Anomaly Score Exceeded", "waf", 5, (), description="OWASP CRS anomaly score of the "
          "responses reached the outbound threshold (4)", sensor="crs-anomaly", direction="response"), 4),
)
_EMPTY: frozenset[int] = frozenset()  # shared until a flow needs a set of its own (memory per active flow)
CHUNK_HISTORY = 64  # (end offset, frame, ts) of the last calls per stream, to name the frame a match ends in
MAX_CANDIDATES = 256  # texts validated per pattern per call: hostile input cannot make a call unbounded
MAX_STEPS = 4096  # regex searches per pattern per call (candidates, and old matches skipped)
SHRINK_TRIES = 8  # shorter candidates tried from the start of a rejected one
LOOKAHEAD_MARGIN = 64  # bytes after the last candidate end the regex may look at
COUNT_LIMIT = 64  # a Match's count stops here: after that its rule costs nothing more in the flow
SNIPPET_LOOKBACK = 512  # bytes before a match's end searched first for its text
FALLBACK_TEXT = 40  # bytes before the end shown when Python `re` cannot extract the match
_SIDES = {"any": (CLIENT, SERVER), "request": (CLIENT,), "response": (SERVER,)}


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


class RuleEngine:
    """Rules compiled for scanning. `problems` lists every rule dropped and why; `warning` is set when the
    pure-Python scanner is used because Hyperscan is missing or failed."""

    def __init__(self, rules: Iterable[Rule], backend: str = "auto") -> None:
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
                self.problems.append(f"{where} pattern /{p.regex}/: {cp}: rule dropped")
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
        if use_hs:
            err = hyperscan_error(p.regex)
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
                         _SIDES[rule.direction], looks_ahead(p.regex), max_width(p.regex), rule.app_proto, hid)

    def _databases(self, use_hs: bool) -> dict[str, list[DbPattern]]:
        """One database per context; a pattern with transformations (CRS rules) goes to a database of its own
        chain ("url|htmlentitydecode,..."), which scans the content after that chain (self.chains); in stream
        contexts only chains of chunk-safe transformations are applied, others scan as is (transforms.effective)."""
        base = ("url", "header", "body", "sql", "raw", "tls.sni", "dns.query")
        dbs: dict[str, list[DbPattern]] = {key: [] for key in base}
        chains: dict[str, dict[str, tuple[str, ...]]] = {}
        for cp in self.patterns:
            single = not cp.confirm
            flags = HS_BASE_FLAGS
            if use_hs:
                flags |= hyperscan.HS_FLAG_PREFILTER if cp.prefilter else 0
                flags |= hyperscan.HS_FLAG_SINGLEMATCH if single else 0
            dbp = DbPattern(cp.pid, cp.pattern.regex, flags, cp.pyre, single, cp.confirm, cp.width)
            # A prefilter of unbounded width can match at nearly every byte (CRS 932100 at every `;` or `|`),
            # and each match is a Python callback; the engine only uses its first and last end per call. Such
            # patterns go to a block database of their own, scanned over each call's window with SINGLEMATCH:
            # one callback per call, and Python confirms from that end to the window's end (the same matches).
            windowed = use_hs and cp.prefilter and cp.width is None
            wdbp = DbPattern(cp.pid, cp.pattern.regex, flags | hyperscan.HS_FLAG_SINGLEMATCH, cp.pyre, True,
                             cp.confirm, cp.width) if windowed else dbp
            ctx = cp.pattern.context
            raw = ctx in ("body", "packet") and not (cp.apps and NO_RAW_APPS.issuperset(cp.apps))
            for key in base:
                if ctx == key or (ctx == "packet" and key in PACKET_DBS) or (key == "raw" and raw):
                    chain = transforms.effective(cp.pattern.transforms, key) if cp.pattern.transforms else ()
                    dbkey = f"{key}|{','.join(chain)}" if chain else key
                    if chain:
                        chains.setdefault(key, {})[dbkey] = chain
                    if windowed and key not in BLOCK_DBS:
                        dbs.setdefault(dbkey + WINDOWED, []).append(wdbp)
                    else:  # a block context: one unit per call, so SINGLEMATCH and "to the end" serve as well
                        dbs.setdefault(dbkey, []).append(wdbp if windowed else dbp)
        self.chains = {key: tuple(sorted(v.items())) for key, v in chains.items()}
        self.windowed = {key[: -len(WINDOWED)] for key, pats in dbs.items() if key.endswith(WINDOWED) and pats}
        self.windowed_pids = frozenset(cp.pid for cp in self.patterns if use_hs and cp.prefilter and cp.width is None)
        return dbs

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


@dataclass(slots=True)
class _Evidence:
    context: str
    side: int
    frame: int
    ts_ns: int
    text: bytes | None
    seq: int


class _Stream:
    __slots__ = ("checked", "chunks", "handle", "pending", "pos", "tail")

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.pos = 0  # bytes scanned so far: the absolute offset of the next call's first byte
        self.tail = b""  # the last WINDOW bytes scanned
        self.chunks: list[tuple[int, int, int]] = []  # (end offset, frame, ts), at most CHUNK_HISTORY
        self.checked: dict[int, int] = {}  # pid -> offset up to which Python has confirmed candidates
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
        self._header_ok: dict[int, tuple[bool, bool]] = {}
        self.alerts: list[Match] = []
        self._streams: dict[tuple[str, int, str], _Stream | None] = {}  # (context, side, database)
        self._pos_hit: dict[int, _Evidence] = {}
        self._neg_hit: set[int] | frozenset[int] = _EMPTY
        self._fired: dict[int, Match] = {}
        self._seq = 0
        self._anomaly: list[int] | None = None  # OWASP CRS anomaly scores of this flow: [inbound, outbound]
        self.closed = False

    def __enter__(self) -> FlowScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan(self, context: str, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        """One piece of content: url/header calls are whole units; body/sql/raw calls continue the stream of
        that (context, side)."""
        if context == "packet":
            context = "raw"
        if context not in CONTEXT_DB:
            raise ValueError(f"context {context!r}: expected one of {SCAN_CONTEXTS}")
        if not data or self.closed:
            return
        backend = self.engine.backend
        if context in BLOCK_DBS:
            windowed = self.engine.windowed_pids
            hits = backend.block(context, data)
            if hits:
                if windowed:
                    _to_the_end(hits, windowed, len(data))
                self._process(hits, context, side, data, 0, ((len(data), frame, ts_ns),), None, True)
            for dbkey, chain in self.engine.chains.get(context, ()):  # patterns with transformations
                tdata = transforms.apply(chain, data)
                hits = backend.block(dbkey, tdata) if tdata else None
                if hits and windowed:
                    _to_the_end(hits, windowed, len(tdata))
                if hits:
                    self._process(hits, context, side, tdata, 0, ((len(tdata), frame, ts_ns),), None, True)
            return
        db = CONTEXT_DB[context]
        self._scan_stream(context, side, db, data, frame, ts_ns)
        for dbkey, chain in self.engine.chains.get(db, ()):  # patterns with chunk-safe transformations
            tdata = transforms.apply(chain, data)
            if tdata:
                self._scan_stream(context, side, dbkey, tdata, frame, ts_ns)

    def _scan_stream(self, context: str, side: int, dbkey: str, data: bytes, frame: int, ts_ns: int) -> None:
        key = (context, side, dbkey)
        st = self._streams.get(key, False)
        if st is False:
            handle = self.engine.backend.stream(dbkey)
            if handle is None and dbkey in self.engine.windowed:
                handle = _NO_STREAM  # only windowed prefilters here: the window still has to be kept
            st = self._streams[key] = _Stream(handle) if handle is not None else None
        if st is None:
            return
        hits = st.handle.scan(data)
        windowed = dbkey in self.engine.windowed
        tail = st.tail
        short = len(data) < WINDOW
        window = tail + data if windowed or short else None  # built once: the window scan, the hits, the tail
        wstart = st.pos - len(tail)
        if windowed:
            hits = self._scan_window(hits, dbkey, window, wstart)
        if st.pending:
            hits = _with_pending(hits, st)
        chunks = st.chunks
        chunks.append((st.pos + len(data), frame, ts_ns))
        if len(chunks) > CHUNK_HISTORY:
            del chunks[0]
        if hits:
            self._process(hits, context, side, window if window is not None else tail + data, wstart, chunks, st,
                          False)
        st.pos += len(data)
        st.tail = window[-WINDOW:] if short else data[-WINDOW:]  # type: ignore[index]

    def _scan_window(self, hits: Hits, dbkey: str, window: bytes, wstart: int) -> Hits:
        """The windowed prefilters (see RuleEngine._databases): a candidate from their first end in the window
        to the window's end."""
        found = self.engine.backend.block(dbkey + WINDOWED, window)
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
        for (context, side, _db), st in self._streams.items():
            if st is None:
                continue
            hits = st.handle.close()
            if st.pending:
                hits = _with_pending(hits, st)
            if hits and st.chunks:
                self._process(hits, context, side, st.tail, st.pos - len(st.tail), st.chunks, st, True)
        self._streams.clear()

    def buffered_bytes(self) -> int:
        """Bytes this flow holds for the rules (the windows), for memory accounting and tests."""
        return sum(len(st.tail) for st in self._streams.values() if st is not None)

    def history_len(self) -> int:
        return max((len(st.chunks) for st in self._streams.values() if st is not None), default=0)

    # -- matching --

    def _process(self, hits: Hits, context: str, side: int, window: bytes, wstart: int,
                 chunks: Iterable[tuple[int, int, int]], st: _Stream | None, final: bool) -> None:
        """Hits of one call. For patterns Python must check, a hit only says "look": candidates are every
        match in the window ending after what was checked before (the same with either backend), except one
        ending on the last byte seen when the pattern looks ahead and more bytes may come."""
        engine = self.engine
        checked = st.checked if st is not None else None
        wend = wstart + len(window)
        all_ends = engine.backend.reports_all_ends
        touched: set[int] = set()
        again: set[int] = set()
        for pid, (first, last, ends) in hits.items():
            cp = engine.patterns[pid]
            if side not in cp.sides or (cp.apps and self.app not in cp.apps):
                continue
            if cp.header >= 0 and self._endpoints is not None:
                ok = self._header_ok.get(cp.header)
                if ok is None:
                    ok = self._header_ok[cp.header] = engine.headers[cp.header].sides(*self._endpoints)
                if not ok[side]:
                    continue
            negate = cp.pattern.negate
            if negate and pid in self._neg_hit:
                continue
            fired = self._fired.get(cp.rule_idx)
            if not negate:
                if fired is None and pid in self._pos_hit:
                    continue  # evidence already kept; the rule waits for its other patterns
                if fired is not None and (fired.count >= COUNT_LIMIT or cp.rule_idx in again):
                    continue
            end, text = first, None
            if cp.confirm:
                held = cp.ahead and not final
                lo = checked.get(pid, -1) if checked is not None else -1
                if checked is not None:
                    checked[pid] = max(wend - held, lo)
                found = None
                for r_lo, r_hi in _regions(lo, wend, first, last, ends, cp.width, all_ends):
                    found, held_back = self._confirm(cp, window, wstart, r_lo, r_hi, held)
                    if held_back and st is not None:
                        if not st.pending:
                            st.pending = set()
                        st.pending.add(pid)  # look again at the next call even if Hyperscan says nothing
                    if found is not None:
                        break
                if found is None:
                    continue
                end, text = found
            if negate:
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
                self._pos_hit[pid] = _Evidence(context, side, frame, ts, text, self._seq)
                touched.add(cp.rule_idx)
        for idx in again:
            self._fired[idx].count += 1
        for idx in sorted(touched):
            self._evaluate(idx)

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
        self._fired[idx] = m
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


def _where(chunks: Iterable[tuple[int, int, int]], end: int) -> tuple[int, int]:
    """Frame and time of the call whose bytes hold offset end-1 (the oldest kept if it is older)."""
    last = (0, 0)
    for cend, frame, ts in chunks:
        last = (frame, ts)
        if end <= cend:
            return last
    return last
