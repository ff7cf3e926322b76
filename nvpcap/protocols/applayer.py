"""The application layer of one capture: in-order bytes -> identification -> the winning protocol's parser.

The pipeline offers the payload packets of flows that still want bytes. TCP segments go through a
reassembler per direction (session/stream.py); the identification engine sees the first bytes, and once it
settles on a protocol that has a parser, the parser reads the flow from its first byte (the chunks held
during identification are replayed in arrival order), then every later chunk, until it says it is done or
`stream_depth` bytes of a direction were read (Suricata's stream depth idea: bulk transfers stay off the
Python path). A parser that raises on hostile bytes becomes an anomaly record; the flow goes on.

Events are buffered as rows and turned into records in blocks, so the flow keys (community_id, flow_id)
are computed column-wise with the same functions as the flow records.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..records import addresses
from ..records.community import community_ids
from ..records.events import EventCollector
from ..records.flows import flow_ids, iso_timestamps, proto_name
from ..session.stream import Chunk, TcpReassembler
from .base import CLIENT, FlowContext, Parser, ProtocolSpec
from .identify import Identifier

DEFAULT_MAX_PARSED_FLOWS = 100_000
DEFAULT_STREAM_DEPTH = 1 << 20  # bytes per direction a parser reads at most (Suricata's default depth)
ENCRYPTED = frozenset({"ssl", "ssh"})  # never scanned by the DLP/WAF rules (NeuVector skips them too)
# apps whose parser hands the rules decoded url/header/body content, so their raw bytes are not scanned again
DECODED_CONTENT = frozenset({"http", "http2", "grpc", "consul", "elasticsearch"})
MAX_EVENTS_PER_FLOW = 10_000  # beyond this a flow's events are counted, not written
_NO_THREATS: frozenset[int] = frozenset()


@dataclass
class AppLayerConfig:
    stream_depth: int = DEFAULT_STREAM_DEPTH
    rules: Any = None  # a nvpcap.rules.RuleEngine (built once per process), or None: no DLP/WAF scanning
    # flows read at once (parser, reassembly, rule state: a few KB each); beyond it the least recently active
    # one stops being read (its events so far are kept) and is counted: memory stays bounded
    max_flows: int = DEFAULT_MAX_PARSED_FLOWS
    # False: payloads are not offered at all (`--flows-only`): flow records only, app_proto from the server port
    inspect: bool = True


class _EventRow(NamedTuple):
    """One buffered event (a tuple: made for every event, so it stays cheap)."""

    serial: int
    app: str  # the protocol, or "alert" for a DLP/WAF match (its fields then go at the top level)
    fields: dict[str, Any]
    frame: int
    ts_ns: int


class _Flow:
    """One flow the application layer still reads: its keys, streams and parser. (A slotted class rather
    than a dataclass: one is made per flow.)"""

    __slots__ = ("app", "ctx", "done", "events", "fed0", "fed1", "identified", "keys", "parser", "product", "raw",
                 "scanner", "serial", "streams", "threats")

    def __init__(self, serial: int, keys: tuple, streams: tuple[TcpReassembler, TcpReassembler] | None,
                 ctx: FlowContext) -> None:
        self.serial = serial
        self.keys = keys  # (proto, c_hi, c_lo, s_hi, s_lo, cport, sport, first_ts)
        self.streams = streams
        self.ctx = ctx
        self.identified = False
        self.app: str | None = None
        self.parser: Parser | None = None
        self.fed0 = self.fed1 = 0  # bytes read from the client / the server (stream depth; not a list: memory)
        self.events = 0
        self.threats: set[int] | frozenset[int] = _NO_THREATS  # a set of its own once one is raised
        self.product: str | None = None
        self.raw = False  # the raw stream goes to the rules (cleartext apps whose parser decodes no content)
        self.scanner: Any = None  # the flow's rules scanner, made on first use
        self.done = False


class _Output:
    """The ParserOutput a flow's parser writes to."""

    __slots__ = ("flow", "layer")

    def __init__(self, layer: AppLayer, flow: _Flow) -> None:
        self.layer, self.flow = layer, flow

    def event(self, fields: dict[str, Any], frame: int, ts_ns: int) -> None:
        flow = self.flow
        flow.events += 1
        if flow.events > MAX_EVENTS_PER_FLOW:
            self.layer.suppressed_events += 1
            return
        self.layer.rows.append(_EventRow(flow.serial, flow.app or "unknown", fields, frame, ts_ns))

    def threat(self, threat_id: int, message: str, side: int, frame: int, ts_ns: int) -> None:
        flow = self.flow
        if not self.layer.collector.enabled(threat_id):
            return
        proto, c_hi, c_lo, s_hi, s_lo, cport, sport, _ = flow.keys
        src, dst, sp, dp = ((c_hi, c_lo), (s_hi, s_lo), cport, sport) if side == CLIENT else \
            ((s_hi, s_lo), (c_hi, c_lo), sport, cport)
        if flow.threats is _NO_THREATS:
            flow.threats = set()
        flow.threats.add(threat_id)  # type: ignore[union-attr]
        self.layer.collector.threat(threat_id, ts_ns, frame, src, dst, proto, sp, dp, message,
                                    direction="toserver" if side == CLIENT else "toclient", context="application",
                                    app_proto=flow.app)

    def anomaly(self, reason: str, message: str, frame: int, ts_ns: int) -> None:
        self.layer.collector.anomaly(self.flow.app or "app", reason, ts_ns, frame, message,
                                     **self.layer.flow_fields(self.flow))

    def product(self, name: str) -> None:
        self.flow.product = name

    def scans(self, context: str) -> bool:
        return context in self.layer.contexts

    def content(self, context: str, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if not data or context not in self.layer.contexts:  # no rules, or none reads this context
            return
        flow = self.flow
        scanner = flow.scanner
        if scanner is None:
            scanner = self.layer.scanner_of(flow)
        # a UDP flow's content comes one datagram at a time: each is scanned alone (no stream state is kept)
        scanner.scan(context, side, data, frame, ts_ns, flow.streams is None)


def other_label(proto: int) -> tuple[str, str]:
    """(app_proto, app_confidence) of a flow that is neither TCP nor UDP: ICMP is what it is."""
    return ("icmp", "dpi") if proto in (1, 58) else ("unknown", "none")


class AppLayer:
    """Identification and parsing for the flows of one capture file."""

    def __init__(self, protocols: tuple[ProtocolSpec, ...], collector: EventCollector, pcap_filename: str,
                 config: AppLayerConfig | None = None) -> None:
        self.identifier = Identifier(protocols)
        self.specs = {p.name: p for p in protocols}
        self.collector = collector
        self.pcap_filename = pcap_filename
        self.config = config or AppLayerConfig()
        self.flows: dict[int, _Flow] = {}
        self.rows: list[_EventRow] = []
        self.row_keys: dict[int, tuple] = {}  # serial -> keys, for the rows not yet turned into records
        self.suppressed_events = 0
        self.rules = self.config.rules
        self.contexts = self.rules.contexts if self.rules is not None else frozenset()  # read by some pattern
        self.rule_alerts = 0
        self.parser_errors = 0
        self.closed: set[int] = set()  # flows that want no more bytes, until their record is built
        self.evicted = 0  # flows no longer read because max_flows others were being read
        self.ended: dict[int, tuple[str | None, list[int]]] = {}  # serial -> (product, threat ids), until `end`

    @property
    def forced(self) -> int:
        return self.identifier.forced

    def offer(self, serial: int, side: int, keys: tuple, transport: str, midstream: bool, seq: int,
              payload: bytes, frame: int, ts_ns: int, starts: tuple[int, int] | None = None) -> bool:
        """A payload packet of a flow that still wants bytes. Returns True when it wants no more.
        `keys`, `transport`, `midstream` and `starts` (the sequence number each side's data begins at, from the
        handshake; -1 unknown) are needed on a flow's first offer only."""
        flows = self.flows
        flow = flows.pop(serial, None)  # (a flow being read is never among the closed ones)
        if flow is None:
            if serial in self.closed:
                return True
            flow = self._open(serial, keys, transport, midstream, starts)
        flows[serial] = flow  # last: the dict's order is least recently active first
        streams = flow.streams
        if streams is None or streams[side].take(seq, payload):
            # the common case: a datagram, or a segment that continues its stream (no Chunk, no list)
            if flow.identified:
                self._feed(flow, side, payload, 0, frame, ts_ns)
            else:
                self._identify(flow, side, Chunk(payload, 0, frame, ts_ns))
        else:
            for chunk in streams[side].add(seq, payload, frame, ts_ns):
                self._chunk(flow, side, chunk)
                if flow.done:
                    break
        if flow.done:
            self._close(flow)
            return True
        return False

    def _open(self, serial: int, keys: tuple, transport: str, midstream: bool,
              starts: tuple[int, int] | None) -> _Flow:
        """A flow's first offer: its state (the least recently active one stops being read at max_flows)."""
        flows = self.flows
        if len(flows) >= self.config.max_flows:
            self._evict(next(iter(flows.values())))
        ctx = FlowContext(transport, int(keys[5]), int(keys[6]), midstream)
        starts = starts or (-1, -1)
        streams = (TcpReassembler(starts[0]), TcpReassembler(starts[1])) if transport == "tcp" else None
        return _Flow(serial, keys, streams, ctx)

    def _chunk(self, flow: _Flow, side: int, chunk: Chunk) -> None:
        if flow.identified:
            self._feed(flow, side, *chunk)
        else:
            self._identify(flow, side, chunk)

    def _identify(self, flow: _Flow, side: int, chunk: Chunk) -> None:
        """A chunk of a flow not yet identified: to the identifier, and to the parser once it settles."""
        identifier = self.identifier
        if identifier.offer_chunk(flow.serial, side, flow.ctx, chunk):
            self._start_parser(flow)
        if identifier.settled:  # rare: flows decided early to bound memory wait for their parsers
            self._adopt_shed()

    def _start_parser(self, flow: _Flow) -> None:
        """Identification settled: hand the held chunks to the protocol's parser and (cleartext apps) to the
        rules, or stop reading."""
        app = self.identifier.app_of(flow.serial)
        chunks = self.identifier.take_chunks(flow.serial)
        flow.app, flow.identified = app, True
        flow.raw = "raw" in self.contexts and app not in ENCRYPTED and app not in DECODED_CONTENT
        spec = self.specs.get(app) if app is not None else None
        if spec is not None and spec.parser is not None and self.config.stream_depth > 0:
            try:
                flow.parser = spec.parser(_Output(self, flow), flow.ctx)
            except Exception as exc:  # noqa: BLE001 - a parser bug must not stop the analysis
                self._parser_failed(flow, exc, 0, 0)
        if flow.parser is None and not flow.raw:
            flow.done = True
            return
        for side, (data, missing, frame, ts_ns) in chunks:
            self._feed(flow, side, data, missing, frame, ts_ns)
            if flow.done:
                return

    def _adopt_shed(self) -> None:
        """Flows the identifier decided early to bound memory: start their parsers now."""
        if not self.identifier.settled:  # the common case: nothing waits
            return
        for serial in [s for s in self.identifier.settled if s in self.flows]:
            flow = self.flows[serial]
            if not flow.identified:
                self._start_parser(flow)
                if flow.done:
                    self._close(flow)
        for serial in [s for s in self.identifier.settled if s not in self.flows]:
            del self.identifier.settled[serial]

    def _feed(self, flow: _Flow, side: int, data: bytes, missing: int, frame: int, ts_ns: int) -> None:
        """One in-order piece (bytes, or a gap of `missing` bytes) to the parser (until it is done) and, for
        cleartext apps, to the rules; at most `stream_depth` bytes per side."""
        if flow.done:
            return
        depth = self.config.stream_depth
        have = flow.fed1 if side else flow.fed0
        n = len(data)
        full = have + n >= depth  # this side reaches the depth with this piece (the flow may then be done)
        if full:
            if have >= depth:
                return
            n = depth - have
            data = data[:n]
        if side:
            flow.fed1 = have + n
        else:
            flow.fed0 = have + n
        if flow.raw and n:
            scanner = flow.scanner
            if scanner is None:
                scanner = self.scanner_of(flow)
            scanner.scan("raw", side, data, frame, ts_ns, flow.streams is None)
        parser = flow.parser
        if parser is not None and not parser.done:
            try:
                if missing:
                    parser.gap(side, missing, frame, ts_ns)
                else:
                    parser.feed(side, data, frame, ts_ns)
            except Exception as exc:  # noqa: BLE001 - hostile bytes must not stop the analysis
                self._parser_failed(flow, exc, frame, ts_ns)
            parser = flow.parser
            if parser is not None and not parser.done:  # still parsing: until both sides reach the depth
                if full and (flow.fed0 if side else flow.fed1) >= depth:
                    flow.done = True
                return
        # nothing parses the flow any more: it is read on for the rules only, until both sides reach the depth
        if not flow.raw or (full and (flow.fed0 if side else flow.fed1) >= depth):
            flow.done = True

    def scanner_of(self, flow: _Flow) -> Any:
        """The flow's rule scanner, made at its first content for the DLP/WAF rules (decoded by a parser, or the
        raw stream); only asked for a context some rule reads, so there are rules."""
        flow.scanner = self.rules.flow_scanner(flow.serial, flow.app, flow.keys)
        return flow.scanner

    def _parser_failed(self, flow: _Flow, exc: Exception, frame: int, ts_ns: int) -> None:
        self.parser_errors += 1
        flow.parser = None
        if not flow.raw:
            flow.done = True
        self.collector.anomaly(flow.app or "app", "parser-error", ts_ns or None, frame or None,
                               f"{flow.app} parser stopped on this flow: {type(exc).__name__}: {exc}",
                               **self.flow_fields(flow))

    def _close(self, flow: _Flow) -> None:
        """The flow wants no more bytes: finish its parser and keep what the flow record needs."""
        if flow.parser is not None:
            parser, flow.parser = flow.parser, None
            try:
                parser.finish()
            except Exception as exc:  # noqa: BLE001 - see _feed
                self._parser_failed(flow, exc, 0, 0)
        flow.done = True
        if flow.scanner is not None:
            self._rule_alerts(flow)
        if flow.product is not None or flow.threats:
            self.ended[flow.serial] = (flow.product, sorted(flow.threats))
        if flow.events:
            self.row_keys.setdefault(flow.serial, flow.keys)
        del self.flows[flow.serial]
        self.closed.add(flow.serial)

    def _evict(self, flow: _Flow) -> None:
        """Stop reading the least recently active flow: settle its identification on what was seen, let its
        parser finish, keep its events and rule alerts; its record is built when the flow ends, as any."""
        if not flow.identified and not flow.done:
            self.identifier.decide(flow.serial)
            self._start_parser(flow)
        if flow.serial in self.flows:
            self._close(flow)
        self.evicted += 1

    def _rule_alerts(self, flow: _Flow) -> None:
        """Close the flow's scanner (end-of-stream matches) and queue its DLP/WAF alerts as records."""
        scanner, flow.scanner = flow.scanner, None
        scanner.close()
        for m in scanner.alerts:
            rule = m.rule
            flow.events += 1
            self.rule_alerts += 1
            self.rows.append(_EventRow(flow.serial, "alert", {
                "rule_id": rule.rule_id, "rule_name": rule.name, "category": rule.category,
                "severity": rule.severity, "action": "alert", "context": m.context,
                "direction": "toserver" if m.side == CLIENT else "toclient", "snippet": m.snippet,
                "count": m.count, "app_proto": flow.app or "unknown",
                "message": f"{rule.category.upper()}: {rule.name} in {m.context}"}, m.frame, m.ts_ns))

    def end(self, serial: int, transport: str, server_port: int) -> tuple[str, str, str | None, list[int]]:
        """The flow's record is being built: (app_proto, app_confidence, app_product, threat ids)."""
        flow = self.flows.get(serial)
        if flow is not None:
            if flow.streams is not None:  # bytes still held behind a gap
                for side in (0, 1):
                    for chunk in flow.streams[side].flush():
                        if not flow.done:
                            self._chunk(flow, side, chunk)
            if not flow.identified and not flow.done:
                self.identifier.decide(serial)
                self._start_parser(flow)
            if serial in self.flows:
                self._close(flow)
        app, conf = self.identifier.verdict(serial, transport, server_port)
        self.identifier.settled.pop(serial, None)
        self.closed.discard(serial)
        product, threats = self.ended.pop(serial, (None, []))
        return app, conf, product, threats

    def port_labels(self, ended: np.ndarray) -> list[tuple[str, str]]:
        """(app_proto, app_confidence) of ended flows whose payload was not read (`inspect` off): the server
        port's protocol for TCP/UDP, as `end` gives a flow without payload."""
        by_port = self.identifier.by_port
        # few distinct (protocol, port) pairs; one integer each (np.unique over rows of pairs is 20x slower)
        pairs = ended["proto"].astype(np.int64) << 32 | (ended["sport"].astype(np.int64) & 0xFFFFFFFF)
        distinct, inverse = np.unique(pairs, return_inverse=True)
        labels = []
        for proto, port in (divmod(pair, 1 << 32) for pair in distinct.tolist()):
            labels.append(by_port("tcp" if proto == 6 else "udp", port) if proto in (6, 17) else other_label(proto))
        return [labels[i] for i in inverse.reshape(-1).tolist()]

    # ---- event records ----

    def flow_fields(self, flow: _Flow) -> dict[str, Any]:
        proto, c_hi, c_lo, s_hi, s_lo, cport, sport, _ = flow.keys
        return {"src_ip": addresses.text(c_hi, c_lo), "src_port": cport, "dest_ip": addresses.text(s_hi, s_lo),
                "dest_port": sport, "proto": proto_name(proto)}

    def drain(self) -> list[dict]:
        """The buffered events as records (EVE-like: flow keys plus one dict named after the protocol)."""
        rows, self.rows = self.rows, []
        if not rows:
            return []
        serials = sorted({r.serial for r in rows})
        flows, closed = self.flows, self.row_keys  # a row's flow is still read, or closed with its keys kept
        keys = [closed[s] if s in closed else flows[s].keys for s in serials]
        proto, c_hi, c_lo, s_hi, s_lo, cport, sport, first_ts = (np.array(col) for col in zip(*keys))
        cids, words = community_ids(proto.astype(np.int64), c_hi.astype(np.uint64), c_lo.astype(np.uint64),
                                    s_hi.astype(np.uint64), s_lo.astype(np.uint64), cport.astype(np.int64),
                                    sport.astype(np.int64))
        fids = flow_ids(self.pcap_filename, np.array(serials, np.int64), first_ts.astype(np.int64), words).tolist()
        text = addresses.text
        # per flow, its key fields in record order (a tuple: one dict display per event below, no merge)
        per_flow = {s: (fid, cid, text(k[1], k[2]), int(k[5]), text(k[3], k[4]), int(k[6]), proto_name(int(k[0])))
                    for s, k, fid, cid in zip(serials, keys, fids, cids)}
        stamps = iso_timestamps(np.array([r.ts_ns for r in rows], np.int64)).tolist()
        out = []
        append = out.append
        pcap = self.pcap_filename
        for (serial, app, fields, frame, ts_ns), stamp in zip(rows, stamps):
            fid, cid, src_ip, src_port, dest_ip, dest_port, proto_text = per_flow[serial]
            rec = {"event_type": app, "ts": ts_ns / 1e9, "timestamp": stamp, "pcap_filename": pcap, "frame": frame,
                   "flow_id": fid, "community_id": cid, "src_ip": src_ip, "src_port": src_port, "dest_ip": dest_ip,
                   "dest_port": dest_port, "proto": proto_text}
            if app == "alert":
                rec.update(fields)
            else:
                rec["app_proto"] = app
                rec[app] = fields
            append(rec)
        self.row_keys = {}  # every row of a closed flow was in this block (a closed flow writes no more)
        return out
