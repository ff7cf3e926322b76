"""The analysis pipeline: capture files -> decode -> defrag -> sessions -> records -> sinks.

`analyze_file()` handles one capture and hands records to a sink as flows end, so memory stays bounded by
the flow-table limits, not by the file size. `analyze()` runs several inputs (files are independent units).
Every packet read ends in exactly one outcome counter; `FileSummary.check_accounting()` proves it.
"""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl

from .decode import status as st
from .decode.decoder import PacketBatch, decode
from .decode.defrag import Defragmenter, Reassembled
from .decode.reader import (
    DEFAULT_BATCH_PACKETS,
    DEFAULT_CHUNK,
    CaptureIssue,
    CaptureReader,
    RawBatch,
)
from .decode.sources import STDIN_NAME, display_name, open_capture, shown_name
from .protocols.applayer import AppLayer, AppLayerConfig, other_label
from .records.addresses import text as addr_text
from .records.events import EventCollector, MutedEvents
from .records.flows import FileContext, build_flow_frame
from .session.kernel import H_S
from .session.meters import MeterConfig, Meters
from .session.shard import pair_owner
from .session.table import FlowTable, FlowTableConfig

# ended flows turned into records at a time: building a frame costs ~6.9 us a flow in blocks of 1,024, ~5.0 us
# in blocks of 4,096, ~4.4 us in blocks of 8,192 (the bench file's flows); a waiting flow holds ~600 bytes, and
# 8,192 raised the peak on the 600 MB bench file by ~6 MB (to 395 MB, the target being 400)
FLOW_BLOCK = 4096
EVENT_BLOCK = 4096  # application events turned into records at a time


class RecordSink(Protocol):
    """Where records go (output/ has the writers)."""

    def write_flows(self, flows: pl.DataFrame) -> None: ...

    def write_events(self, events: list[dict]) -> None: ...


@dataclass
class AnalyzeConfig:
    table: FlowTableConfig = field(default_factory=FlowTableConfig)
    fragment_timeout_s: float = 10.0
    chunk_size: int = DEFAULT_CHUNK
    batch_packets: int = DEFAULT_BATCH_PACKETS
    app: AppLayerConfig = field(default_factory=AppLayerConfig)
    threat_overrides: dict[int, bool] = field(default_factory=dict)  # threat id -> on/off
    meters: MeterConfig = field(default_factory=MeterConfig)  # NeuVector's meter thresholds (session/meters.py)
    shard: tuple[int, int] = (0, 1)  # (k, n): this run owns the flows of shard k of n (session/shard.py)


@dataclass
class FileSummary:
    """What happened to one input: formats, every packet's outcome, flows, problems."""

    name: str
    format: str = "unknown"
    compression: str | None = None
    linktypes: list[int] = field(default_factory=list)
    sections: int = 0
    packets: int = 0
    outcomes: Counter = field(default_factory=Counter)
    issues: list[CaptureIssue] = field(default_factory=list)
    flows: int = 0
    flows_by_proto: Counter = field(default_factory=Counter)
    reassembled_datagrams: int = 0
    alerts: int = 0
    anomalies: int = 0
    evicted_flows: int = 0
    peak_active_flows: int = 0
    identification_forced: int = 0  # flows decided early because identification reached its memory bound
    events: int = 0  # application events written
    rule_alerts: int = 0  # DLP/WAF alerts (one per flow and rule)
    events_suppressed: int = 0  # beyond the per-flow event cap: counted, not written
    parser_errors: int = 0  # flows whose parser stopped on bytes it could not handle (each an anomaly record)
    parsing_evicted: int = 0  # flows no longer read: --max-parsed-flows others were being read (memory bound)
    first_ts: float | None = None
    last_ts: float | None = None
    bytes_read: int = 0
    seconds: float = 0.0

    def check_accounting(self) -> bool:
        """True when the outcome counters add up to the packets read."""
        return sum(self.outcomes.values()) == self.packets

    @property
    def has_input_errors(self) -> bool:
        malformed = any(k.startswith("malformed") or k == "unreadable-record" for k in self.outcomes)
        return bool(self.issues) or malformed

    def as_dict(self) -> dict:
        return {
            "file": shown_name(self.name), "format": self.format, "compression": self.compression,
            "linktypes": self.linktypes, "sections": self.sections, "packets": self.packets,
            "outcomes": dict(sorted(self.outcomes.items())), "accounted": self.check_accounting(),
            "flows": self.flows, "flows_by_proto": dict(sorted(self.flows_by_proto.items())),
            "reassembled_datagrams": self.reassembled_datagrams, "alerts": self.alerts,
            "anomalies": self.anomalies, "evicted_flows": self.evicted_flows,
            "peak_active_flows": self.peak_active_flows,
            "identification_forced": self.identification_forced, "events": self.events,
            "events_suppressed": self.events_suppressed, "rule_alerts": self.rule_alerts,
            "parser_errors": self.parser_errors,
            "parsing_evicted": self.parsing_evicted, "first_ts": self.first_ts, "last_ts": self.last_ts,
            "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3),
            "issues": [{"kind": i.kind, "offset": i.offset, "message": i.message} for i in self.issues],
        }


SHARD_FAILURES = ("internal-error", "worker-crash")  # issues a shard has of its own (others: the file's)
_PER_SHARD = ("flows", "events", "rule_alerts", "alerts", "anomalies", "events_suppressed", "parser_errors",
              "identification_forced", "parsing_evicted")


def merge_shards(parts: list[FileSummary]) -> FileSummary:
    """One file's summary from its shards' (session/shard.py). Every shard read the whole file: the packets,
    their outcomes, the format and the flow table's counters come from one shard (the first that read the most:
    a failed shard read nothing); what each shard saw of its own flows is added up, and each shard's own
    failures are kept."""
    base = max(parts, key=lambda s: s.packets)
    merged = dataclasses.replace(base, outcomes=Counter(base.outcomes), flows_by_proto=Counter(),
                                 issues=list(base.issues))
    for name in _PER_SHARD:
        setattr(merged, name, sum(getattr(p, name) for p in parts))
    for p in parts:
        merged.flows_by_proto.update(p.flows_by_proto)
        merged.seconds = max(merged.seconds, p.seconds)
        if p is not base:  # a failure every shard met (a crash on the file) is reported once
            merged.issues += [i for i in p.issues if i.kind in SHARD_FAILURES and i not in merged.issues]
    return merged


def _session_columns(pb: PacketBatch) -> dict[str, np.ndarray]:
    """The flow table's view of a batch: the decoder's columns themselves, no copies (plus two derived)."""
    raw = pb.raw
    return {
        "ts": raw.ts_ns, "frame": raw.frame_no, "wirelen": raw.wirelen,
        "iplen": pb.payload_len + (pb.payload_off - pb.l3_off), "cut": raw.caplen < raw.wirelen,
        "proto": pb.proto, "ipver": pb.ip_version, "src_hi": pb.src_hi, "src_lo": pb.src_lo, "dst_hi": pb.dst_hi,
        "dst_lo": pb.dst_lo, "sport": pb.sport, "dport": pb.dport, "tcp_flags": pb.tcp_flags, "seq": pb.seq,
        "ack": pb.ack, "win": pb.win, "paylen": pb.payload_len, "paycap": pb.payload_cap, "icmp_id": pb.icmp_id,
        "vlan": pb.vlan, "vlan2": pb.vlan2, "payload_off": pb.payload_off,
    }


def _merge(pb: PacketBatch, ok: np.ndarray, reasm: Reassembled | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns and the rows to feed, in capture order: whole packets plus reassembled datagrams, each
    datagram where its last fragment arrived. Without datagrams this is the batch itself (no copy)."""
    cols = _session_columns(pb)
    good = np.flatnonzero(reasm.packets.status == st.OK) if reasm is not None else np.empty(0, np.int64)
    if good.shape[0] == 0:
        return cols, ok
    extra = _session_columns(reasm.packets)
    extra["wirelen"] = reasm.wirelen
    extra["cut"] = reasm.cut | extra["cut"]
    extra["vlan"] = reasm.vlan
    extra["vlan2"] = reasm.vlan2
    # both position lists are sorted: place each datagram where its last fragment was, without a sort
    n_ok, n_r = ok.shape[0], good.shape[0]
    at = np.searchsorted(ok, reasm.position[good]) + np.arange(n_r)
    order = np.empty(n_ok + n_r, np.int64)
    is_r = np.zeros(n_ok + n_r, np.bool_)
    is_r[at] = True
    order[~is_r] = ok
    order[at] = len(pb) + good
    merged = {name: np.concatenate([cols[name], extra[name]]) for name in cols}
    return merged, order


class _FileRun:
    """The state of one file's analysis; `analyze_file` drives it."""

    def __init__(self, name: str, config: AnalyzeConfig, sink: RecordSink):
        self.summary = FileSummary(name=name)
        self.display = display_name(name)
        self.ctx = FileContext(pcap_filename=self.display)
        self.sink = sink
        self.table = FlowTable(config.table)
        self.defrag = Defragmenter(timeout_s=config.fragment_timeout_s)
        self.events = EventCollector(self.display, overrides=dict(config.threat_overrides))
        self.shard, self.shards = config.shard
        # packet-level events (decode, fragments, meters): written by shard 0 only
        self.packet_events = self.events if self.shard == 0 else MutedEvents(self.display)
        self.meters = Meters(config.meters, self.packet_events, self.table.cfg)
        self.internal_errors: list[CaptureIssue] = []
        self.stopped = False  # set when an internal error ended the reading of the current file
        self.pending: list[np.ndarray] = []
        self.pending_verdicts: list[tuple] = []  # per pending flow, in order: its verdict (_verdicts)
        self.pending_n = 0
        self.app = AppLayer(_protocols(), self.events, self.display, config.app)
        # per flow-table slot: the serial of the flow the app layer last saw there, and whether it wants no more
        # (sound within a batch: a flow that ends in a batch frees its slot only after it, FlowTable._harvest)
        self.id_serial = np.full(0, -1, np.int64)
        self.id_done = np.zeros(0, np.bool_)

    def process(self, raw: RawBatch) -> None:
        """One batch through decode, reassembly and the flow table."""
        pb = decode(raw)
        self.note_packets(pb)
        reasm = self.defrag.process(pb)
        self.note_reassembled(reasm)
        self.note_fragment_threats()
        ok = np.flatnonzero(pb.status == st.OK)
        cols, rows = _merge(pb, ok, reasm)
        if rows.shape[0]:
            slot, side, serial, ended = self.table.step(cols, rows)
            self.meters.step(pb, reasm, cols, rows, slot, side, serial, ended, self.table)
            self.identify(pb, reasm, cols, rows, slot, side, serial, ended)
            self.emit_flows(ended)
            self.emit_events()

    def identify(self, pb: PacketBatch, reasm: Reassembled | None, cols: dict[str, np.ndarray], rows: np.ndarray,
                 slot: np.ndarray, side: np.ndarray, serial: np.ndarray, ended: np.ndarray) -> None:
        """Offer the payload packets of flows that still want bytes to the application layer (identification,
        then the winning protocol's parser)."""
        if not self.app.config.inspect:
            return  # flow records only: every flow's app_proto comes from its server port
        cap = self.table.tab.shape[0]
        if self.id_serial.shape[0] < cap:
            grown = np.full(cap, -1, np.int64)
            grown[: self.id_serial.shape[0]] = self.id_serial
            self.id_serial = grown
            self.id_done = np.concatenate([self.id_done, np.zeros(cap - self.id_done.shape[0], np.bool_)])
        fresh = self.id_serial[slot] != serial
        self.id_serial[slot[fresh]] = serial[fresh]
        self.id_done[slot[fresh]] = False
        proto = cols["proto"][rows]
        wanted = (cols["paycap"][rows] > 0) & ((proto == 6) | (proto == 17)) & ~self.id_done[slot]
        if self.shards > 1:
            wanted &= pair_owner(cols["src_hi"][rows], cols["src_lo"][rows], cols["dst_hi"][rows],
                                 cols["dst_lo"][rows], self.shards) == self.shard
        offer = np.flatnonzero(wanted)
        if offer.shape[0] == 0:
            return
        # plain lists for the loop: element access on numpy arrays costs more than the work itself
        o_rows, o_slots, o_serials = rows[offer], slot[offer], serial[offer]
        tab = self.table.tab
        firsts = _first_offers(tab, ended, o_slots, o_serials, proto[offer] == 6, self.app.flows)
        payloads = _payloads(pb, reasm, cols["payload_off"][o_rows], cols["paycap"][o_rows], o_rows)
        fields = zip(o_slots.tolist(), o_serials.tolist(), side[offer].tolist(), payloads,
                     cols["seq"][o_rows].tolist(), cols["frame"][o_rows].tolist(), cols["ts"][o_rows].tolist())
        flows, offer_one = self.app.flows, self.app.offer
        done: set[int] = set()  # slots whose flow wants no more bytes (id_done, for this batch's loop)
        for s, ser, sd, payload, sq, frame, ts in fields:
            if s in done:
                continue  # settled by an earlier packet of this batch
            if ser in flows:  # the common case: the app layer knows the flow
                if offer_one(ser, sd, None, None, False, sq, payload, frame, ts):
                    done.add(s)
                continue
            first = firsts.get(ser)
            if first is not None and first[0] == s:
                _, transport, midstream, keys, starts = first
            else:  # a flow the app layer stopped reading in this batch (evicted), or one that moved: one by one
                transport, midstream, keys, starts = _first_offer(tab, s, ser, ended)
            if offer_one(ser, sd, keys, transport, midstream, sq, payload, frame, ts, starts):
                done.add(s)
        if done:
            self.id_done[list(done)] = True

    def process_guarded(self, raw: RawBatch, offset: int) -> bool:
        """`process`, but a bug in nvpcap ends this file with a reported error instead of a traceback.

        The batch's packets are then counted as internal-error (never silently lost); the run goes on with
        the next file. Returns False when the file must stop.
        """
        outcomes, frag_outcomes = self.summary.outcomes.copy(), self.defrag.outcomes.copy()
        try:
            self.process(raw)
            return True
        except Exception as exc:  # noqa: BLE001 - see docstring
            self.summary.outcomes, self.defrag.outcomes = outcomes, frag_outcomes
            self.summary.outcomes["internal-error"] += len(raw)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            self.internal_errors.append(CaptureIssue(
                "internal-error", offset,
                f"analysis stopped: {type(exc).__name__}: {exc} ({os.path.basename(where.filename)}:{where.lineno}); "
                "please report this with the capture"))
            return False

    def emit_flows(self, ended: np.ndarray, final: bool = False) -> None:
        """Queue ended flows; records are built and written in blocks of FLOW_BLOCK flows (fewer, larger
        frames cost less per flow), and at the end of the file. A shard keeps only the flows it owns.

        The application layer's verdict on each flow is taken as soon as the flow ends (`AppLayer.end`), so
        no parser state waits for the block to fill."""
        if self.shards > 1 and ended.shape[0]:
            ended = ended[pair_owner(ended["c_hi"], ended["c_lo"], ended["s_hi"], ended["s_lo"], self.shards)
                          == self.shard]
        if ended.shape[0]:
            if self.app.config.inspect:  # first: should a parser fail here, pending and its verdicts still agree
                self.pending_verdicts += self._verdicts(ended)
            self.pending.append(ended)
            self.pending_n += ended.shape[0]
        if self.pending_n == 0 or (self.pending_n < FLOW_BLOCK and not final):
            if final:  # no flows left to write, but events may be: the end of input writes them all
                self.emit_events(final)
            return
        block = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        verdicts, self.pending, self.pending_verdicts, self.pending_n = self.pending_verdicts, [], [], 0
        if not self.app.config.inspect:  # --flows-only: labels from the server port, nothing else to collect
            self.write_flow_frame(build_flow_frame(block, self.ctx, self.app.port_labels(block)))
        else:
            self.write_flow_frame(build_flow_frame(
                block, self.ctx, [label for label, _, _ in verdicts], [product for _, product, _ in verdicts],
                {i: ids for i, (_, _, ids) in enumerate(verdicts) if ids}))
        self.emit_events(final)

    def _verdicts(self, ended: np.ndarray) -> list[tuple[tuple[str, str], str | None, list[int]]]:
        """Per ended flow: (app_proto, app_confidence), app_product and protocol threat ids; ends their
        application-layer state."""
        end = self.app.end
        out: list[tuple[tuple[str, str], str | None, list[int]]] = []
        for p, ser, sp in zip(ended["proto"].tolist(), ended["serial"].tolist(), ended["sport"].tolist()):
            if p in (6, 17):
                app, conf, product, ids = end(ser, "tcp" if p == 6 else "udp", sp)
                out.append(((app, conf), product, ids))
            else:
                out.append((other_label(p), None, []))
        return out

    def write_flow_frame(self, frame: pl.DataFrame) -> None:
        """Count a block of flow records and hand it to the sink (`_StreamRun` maps it to its files first)."""
        self.summary.flows += len(frame)
        self.summary.flows_by_proto.update(Counter(frame["proto"].to_list()))
        self.sink.write_flows(frame)

    def emit_events(self, final: bool = False) -> None:
        """Application events go out in blocks (bounded memory), and all at the end of the file."""
        if len(self.app.rows) >= EVENT_BLOCK or (final and self.app.rows):
            self.write_app_events(self.app.drain())

    def write_app_events(self, records: list[dict]) -> None:
        """Count a block of application events (DLP/WAF alerts among them) and hand it to the sink."""
        alerts = sum(1 for r in records if r["event_type"] == "alert")
        self.summary.events += len(records) - alerts
        self.summary.rule_alerts += alerts
        self.sink.write_events(records)

    def note_reader(self, summary: FileSummary, reader: CaptureReader) -> None:
        """What the reader found about the file: its format, and its problems (each an anomaly record; packets
        they made unreadable counted), with the internal errors of the analysis."""
        # a shard's own failures are its to report; the file's problems are shard 0's
        owned = [(i, self.packet_events) for i in reader.issues] + [(i, self.events) for i in self.internal_errors]
        for issue, events in owned:
            summary.packets += issue.packets
            if issue.packets:
                summary.outcomes["unreadable-record"] += issue.packets
            events.anomaly("capture", issue.kind, None, None, f"{issue.message} (offset {issue.offset})",
                           offset=issue.offset)
        summary.issues = reader.issues + self.internal_errors
        summary.format = reader.format
        summary.linktypes = sorted(reader.linktypes)
        summary.sections = reader.sections
        summary.bytes_read = reader.bytes_read

    def note_packets(self, pb: PacketBatch) -> None:
        """Count outcomes and turn malformed, truncated and odd packets into alerts and anomalies."""
        counts = np.bincount(pb.status, minlength=max(st.NAMES) + 1)
        for code, c in enumerate(counts.tolist()):
            if c and code != st.FRAGMENT:
                self.summary.outcomes[st.NAMES[code]] += c
        raw = pb.raw
        odd = np.flatnonzero((pb.status != st.OK) & (pb.status != st.FRAGMENT) & (pb.status != st.NON_IP))
        for i in odd.tolist():
            code = int(pb.status[i])
            name = st.NAMES[code]
            ts, frame = int(raw.ts_ns[i]), int(raw.frame_no[i])
            if code == st.UNSUPPORTED_LINKTYPE:
                lt = int(raw.linktype[i])
                self.packet_events.anomaly("decode", name, ts, frame, f"link type {lt} is not decoded")
                continue
            extra = {}
            if pb.ip_version[i]:
                extra = {"src_ip": _addr(pb.src_hi[i], pb.src_lo[i]), "dest_ip": _addr(pb.dst_hi[i], pb.dst_lo[i]),
                         "proto": int(pb.proto[i])}
            self.packet_events.anomaly("decode", name, ts, frame, _ANOMALY_TEXT.get(code, name), **extra)
            if st.is_malformed(code) and pb.ip_version[i]:
                sport = int(pb.sport[i]) if pb.proto[i] in (6, 17) else None
                dport = int(pb.dport[i]) if pb.proto[i] in (6, 17) else None
                self.packet_events.threat(2001, ts, frame, (int(pb.src_hi[i]), int(pb.src_lo[i])),
                                          (int(pb.dst_hi[i]), int(pb.dst_lo[i])), int(pb.proto[i]), sport, dport,
                                          f"Invalid.Packet.Format: {name}")
        mss = np.flatnonzero((pb.status == st.OK) & ((pb.pkt_flags & st.F_SMALL_MSS) != 0))
        for i in mss.tolist():
            self.packet_events.threat(2025, int(raw.ts_ns[i]), int(raw.frame_no[i]),
                                      (int(pb.src_hi[i]), int(pb.src_lo[i])), (int(pb.dst_hi[i]), int(pb.dst_lo[i])),
                                      int(pb.proto[i]), int(pb.sport[i]), int(pb.dport[i]), "TCP MSS option below 256")

    def note_reassembled(self, reasm: Reassembled | None) -> None:
        if reasm is None:
            return
        rp = reasm.packets
        self.summary.reassembled_datagrams += len(rp)
        for i in np.flatnonzero(rp.status != st.OK).tolist():
            code = int(rp.status[i])
            self.packet_events.anomaly("decode", "reassembled-" + st.NAMES[code], int(rp.raw.ts_ns[i]),
                                       int(rp.raw.frame_no[i]),
                                       "reassembled datagram does not decode: " + st.NAMES[code])

    def note_fragment_threats(self) -> None:
        for lost in self.defrag.lost:
            self.packet_events.anomaly("defrag", lost.outcome, lost.ts_ns, lost.frame,
                                       _FRAGMENT_TEXT[lost.outcome])
        self.defrag.lost.clear()
        for t in self.defrag.threats:
            self.packet_events.threat(t.threat_id, t.ts_ns, t.frame, (t.src_hi, t.src_lo), (t.dst_hi, t.dst_lo),
                                      t.proto, None, None, t.message)
        self.defrag.threats.clear()


_FRAGMENT_TEXT = {
    "fragment-overlap": "fragment overlaps data already held for its datagram; discarded (first copy wins)",
    "fragment-invalid": "fragment is empty or contradicts the datagram's known end; discarded",
    "fragment-oversize": "fragment would make the datagram larger than 64 KiB; discarded",
    "fragment-expired": "datagram not completed within the reassembly timeout",
    "fragment-incomplete": "datagram still incomplete at end of input",
}

_ANOMALY_TEXT = {
    st.TRUNCATED: "the capture cut the packet before its transport header ended",
    st.UNSUPPORTED_L2: "an encapsulation inside the frame is not decoded",
    st.MAL_L2: "link-layer header too short",
    st.MAL_IPV4_HEADER: "bad IPv4 header (version, header length or total length)",
    st.MAL_IP_LENGTH: "IP length runs past the end of the frame",
    st.MAL_IPV6_HEADER: "bad IPv6 header",
    st.MAL_IPV6_EXT: "bad or repeated IPv6 extension header",
    st.MAL_TCP_HEADER: "bad TCP header length",
    st.MAL_TCP_FLAGS: "TCP flag combination on NeuVector's bad-flag list",
    st.MAL_TCP_OPTION: "TCP option with a bad length or value",
    st.MAL_UDP_HEADER: "bad UDP header",
    st.MAL_ICMP_HEADER: "ICMP message shorter than its header",
    st.MAL_TUNNEL: "bad tunnel header",
}


def _flow_keys(tab: np.ndarray, slot: int, serial: int, ended: np.ndarray) -> tuple[tuple, tuple[int, int]]:
    """A flow's keys for its event records, and the sequence number each side's data starts at (-1 unknown).
    The flow is in its table slot, or, if it ended in this batch and the slot was reused, among the ended."""
    t = tab[slot]
    if int(t["serial"]) != serial:
        t = ended[np.flatnonzero(ended["serial"] == serial)[0]]
    keys = (int(t["proto"]), int(t["c_hi"]), int(t["c_lo"]), int(t["s_hi"]), int(t["s_lo"]), int(t["cport"]),
            int(t["sport"]), int(t["first_ts"]))
    return keys, (_data_start(t, 0), _data_start(t, 1))


def _data_start(t: np.void, side: int) -> int:
    """The sequence number of a side's first data byte: after its SYN when one was seen (a RST before the
    handshake must not decide it), else what the flow table inferred (its first packet or the peer's ACK)."""
    if int(t["hist_seen"]) & (1 << (H_S + 16 * side)):
        return (int(t["h_syn"][side]) + 1) & 0xFFFFFFFF
    if t["has_start"][side]:
        return (int(t["start"][side]) + 1) & 0xFFFFFFFF
    return -1


def _payloads(pb: PacketBatch, reasm: Reassembled | None, start: np.ndarray, length: np.ndarray,
              rows: np.ndarray) -> list[bytes]:
    """The payload bytes of the offered rows (a row past the batch is a reassembled datagram)."""
    main = pb.raw.buf.data
    n_main = len(pb)
    if reasm is None or rows.shape[0] == 0 or int(rows.max()) < n_main:
        return [bytes(main[a:a + n]) for a, n in zip(start.tolist(), length.tolist())]
    datagrams = reasm.packets.raw.buf.data
    return [bytes((main if r < n_main else datagrams)[a:a + n])
            for r, a, n in zip(rows.tolist(), start.tolist(), length.tolist())]


def _first_offers(tab: np.ndarray, ended: np.ndarray, slots: np.ndarray, serials: np.ndarray, tcp: np.ndarray,
                  known: Container[int]) -> dict[int, tuple[int, str, bool, tuple, tuple[int, int]]]:
    """What the first offer of a flow the app layer does not know yet needs, column-wise for the batch (one
    `_first_offer` per flow cost more than the packets' own work): serial -> (slot, transport, midstream, keys,
    data starts), from the flow's first offered packet. A flow that ended in this batch and whose slot was
    reused is looked up among the ended, as `_flow_keys` does."""
    serial, first = np.unique(serials, return_index=True)
    new = np.fromiter((s not in known for s in serial.tolist()), np.bool_, serial.shape[0])
    serial, first = serial[new], first[new]
    sl = slots[first]
    keys = zip(*(tab[name][sl].tolist() for name in ("proto", "c_hi", "c_lo", "s_hi", "s_lo", "cport", "sport",
                                                     "first_ts")))
    starts = zip(_data_starts(tab, sl, 0).tolist(), _data_starts(tab, sl, 1).tolist())
    is_tcp = tcp[first]
    # a TCP flow whose handshake was not seen is read mid-stream (the slot's flow: as the per-packet loop had it)
    midstream = (is_tcp & (tab["isn"][sl] < 0) & (tab["synack_ack"][sl] < 0)).tolist()
    transport = ["tcp" if t else "udp" for t in is_tcp.tolist()]
    out = {ser: (s, t, m, k, st) for ser, s, t, m, k, st in zip(serial.tolist(), sl.tolist(), transport, midstream,
                                                                   keys, starts)}
    for i in np.flatnonzero(tab["serial"][sl] != serial).tolist():  # ended in this batch, slot reused
        s, t, m, _, _ = out[int(serial[i])]
        out[int(serial[i])] = (s, t, m, *_flow_keys(tab, s, int(serial[i]), ended))
    return out


def _first_offer(tab: np.ndarray, slot: int, serial: int, ended: np.ndarray) -> tuple[str, bool, tuple,
                                                                                       tuple[int, int]]:
    """`_first_offers` of one flow: (transport, midstream, keys, data starts)."""
    keys, starts = _flow_keys(tab, slot, serial, ended)
    tcp = keys[0] == 6
    return ("tcp" if tcp else "udp", tcp and bool(tab["isn"][slot] < 0) and bool(tab["synack_ack"][slot] < 0), keys,
            starts)


def _data_starts(tab: np.ndarray, slots: np.ndarray, side: int) -> np.ndarray:
    """`_data_start` of the flows in `slots`, column-wise."""
    syn_seen = (tab["hist_seen"][slots].astype(np.int64) & (1 << (H_S + 16 * side))) != 0
    after_syn = (tab["h_syn"][slots, side].astype(np.int64) + 1) & 0xFFFFFFFF
    after_start = (tab["start"][slots, side] + 1) & 0xFFFFFFFF
    return np.where(syn_seen, after_syn, np.where(tab["has_start"][slots, side] != 0, after_start, -1))


def _addr(hi: np.uint64, lo: np.uint64) -> str:
    return addr_text(int(hi), int(lo))


def _protocols():
    from .protocols.registry import PROTOCOLS

    return PROTOCOLS


def analyze_file(name: str, sink: RecordSink, config: AnalyzeConfig | None = None,
                 progress: Callable[[int], None] | None = None) -> FileSummary:
    """Analyse one capture, writing its records to `sink` as they are ready. Never raises for bad input."""
    config = config or AnalyzeConfig()
    started = time.perf_counter()
    run = _FileRun(name, config, sink)
    summary = run.summary
    reader = _read_into(run, summary, name, config, progress)
    if reader is None:
        return summary
    if not run.stopped:
        for ended in run.table.flush(FLOW_BLOCK):
            run.emit_flows(ended)
    run.emit_flows(np.empty(0, run.table.tab.dtype), final=True)
    run.emit_events(final=True)
    run.defrag.finish()
    run.note_fragment_threats()
    summary.outcomes.update(run.defrag.outcomes)
    run.note_reader(summary, reader)
    summary.evicted_flows = run.table.evicted
    summary.peak_active_flows = run.table.peak_active
    summary.identification_forced = run.app.forced
    summary.events_suppressed = run.app.suppressed_events
    summary.parser_errors = run.app.parser_errors
    summary.parsing_evicted = run.app.evicted
    alerts = run.events.alert_records()
    summary.alerts = len(alerts) + summary.rule_alerts
    summary.anomalies = len(run.events.anomalies) + run.events.suppressed
    events = alerts + run.events.anomalies
    if events:
        sink.write_events(events)
    summary.seconds = time.perf_counter() - started
    return summary


class _StreamRun(_FileRun):
    """Several files read as one capture (`analyze_stream`): one flow table, defragmenter, application layer
    and meters for the whole stream; one FileSummary per file.

    Inside, frames are numbered across the stream (file i's frame k is stream frame starts[i] + k - 1, as
    `mergecap -a` numbers the concatenation); records are mapped back to files when they are written:
    pcap_filename = the file of the record's (first) frame, frames counted from the start of that file
    (docs/stream.md). The flow_id seed is the first file's name, so events and flows keep joining on flow_id.
    """

    def __init__(self, names: list[str], config: AnalyzeConfig, sink: RecordSink):
        super().__init__(names[0], config, sink)
        self.summaries: list[FileSummary] = []
        self.displays: list[str] = []
        self.starts = np.zeros(0, np.int64)  # stream frame number of each file's frame 1
        self.frames = 0  # frames numbered so far (every record read, unreadable ones too)
        self.carried: set[int] = set()  # stream frames of fragments held across a file boundary
        self.reasm_seen = 0  # defrag.outcomes["fragment-reassembled"] already attributed to files
        self.lost_pending: list = []  # lost fragments of the batch in progress, attributed once it succeeded
        # evicted, identification forced, events suppressed, parser errors, parsing evicted
        self.counters = (0, 0, 0, 0, 0)

    # -- files ---------------------------------------------------------------------------------------------
    def begin(self, name: str) -> FileSummary:
        self.summary = FileSummary(name=name)
        self.summaries.append(self.summary)
        self.displays.append(display_name(name))
        self.starts = np.append(self.starts, np.int64(self.frames + 1))
        self.events.pcap_filename = self.displays[-1]  # records with no frame belong to the file being read
        return self.summary

    def file_of(self, frames: np.ndarray) -> np.ndarray:
        """Index of the file holding each stream frame number (frames >= 1)."""
        return np.searchsorted(self.starts, frames, side="right") - 1

    def take_counters(self, summary: FileSummary) -> None:
        """Add the stream-wide counters' growth since the last file to `summary`."""
        now = (self.table.evicted, self.app.forced, self.app.suppressed_events, self.app.parser_errors,
               self.app.evicted)
        d = [a - b for a, b in zip(now, self.counters)]
        self.counters = now
        summary.evicted_flows += d[0]
        summary.identification_forced += d[1]
        summary.events_suppressed += d[2]
        summary.parser_errors += d[3]
        summary.parsing_evicted += d[4]
        summary.peak_active_flows = max(summary.peak_active_flows, self.table.peak_active)

    # -- records: stream frames -> (file, frame) -------------------------------------------------------------
    def write_flow_frame(self, frame: pl.DataFrame) -> None:
        if not len(frame):
            return
        first = frame["first_frame"].to_numpy()
        idx = self.file_of(first)
        base = self.starts[idx] - 1
        names = np.array(self.displays, dtype=object)[idx]
        frame = frame.with_columns(
            pl.Series("pcap_filename", names, dtype=pl.Utf8),
            pl.Series("first_frame", first - base, dtype=pl.Int64),
            pl.Series("last_frame", frame["last_frame"].to_numpy() - base, dtype=pl.Int64),
        )
        protos = frame["proto"].to_list()
        for i, p in zip(idx.tolist(), protos):
            s = self.summaries[i]
            s.flows += 1
            s.flows_by_proto[p] += 1
        self.sink.write_flows(frame)

    def _place(self, rec: dict) -> FileSummary:
        """Give an event record its file and per-file frame numbers; returns the file's summary."""
        frame = rec.get("frame")
        if frame is None:
            frame = rec.get("first_frame")
        if frame is None or frame <= 0:
            rec["pcap_filename"] = self.displays[-1]
            return self.summary
        i = int(self.file_of(np.array([frame], np.int64))[0])
        base = int(self.starts[i]) - 1
        rec["pcap_filename"] = self.displays[i]
        for key in ("frame", "first_frame", "last_frame"):
            if rec.get(key) is not None and rec[key] > 0:
                rec[key] -= base
        return self.summaries[i]

    def write_app_events(self, records: list[dict]) -> None:
        for rec in records:
            s = self._place(rec)
            if rec["event_type"] == "alert":
                s.rule_alerts += 1
                s.alerts += 1
            else:
                s.events += 1
        self.sink.write_events(records)

    def flush_collector(self) -> None:
        """The alerts and anomalies gathered since the last flush (one file's, aggregated per file as a
        per-file run aggregates them); the per-reason anomaly cap starts again for the next file."""
        ev = self.events
        alerts, anomalies = ev.alert_records(), ev.anomalies
        for rec in alerts:
            self._place(rec).alerts += 1
        for rec in anomalies:
            self._place(rec).anomalies += 1
        self.summary.anomalies += ev.suppressed
        ev.alerts, ev.anomalies, ev.anomaly_counts, ev.suppressed = {}, [], {}, 0
        if alerts or anomalies:
            self.sink.write_events(alerts + anomalies)

    # -- fragments: each in the outcome counter of the file it came from -------------------------------------
    def note_fragment_threats(self) -> None:
        self.lost_pending.extend(self.defrag.lost)
        super().note_fragment_threats()

    def attribute_fragments(self) -> None:
        """Count the fragment outcomes decided since the last call in the files the fragments came from."""
        for lost in self.lost_pending:
            self.summaries[int(self.file_of(np.array([lost.frame], np.int64))[0])].outcomes[lost.outcome] += 1
            self.carried.discard(lost.frame)
        self.lost_pending = []
        done = self.defrag.outcomes["fragment-reassembled"]
        delta, self.reasm_seen = done - self.reasm_seen, done
        if delta and self.carried:
            held = {f for tr in self.defrag.trackers.values() for _, f in tr.frames}
            gone = [f for f in self.carried if f not in held]  # not lost (above), so reassembled
            for f in gone:
                self.summaries[int(self.file_of(np.array([f], np.int64))[0])].outcomes["fragment-reassembled"] += 1
                self.carried.discard(f)
            delta -= len(gone)
        if delta:
            self.summary.outcomes["fragment-reassembled"] += delta

    def process_guarded(self, raw: RawBatch, offset: int) -> bool:
        ok = super().process_guarded(raw, offset)
        if ok:
            self.attribute_fragments()
        else:  # the batch's packets are internal-error; its fragment outcomes were rolled back
            self.lost_pending = []
            self.reasm_seen = self.defrag.outcomes["fragment-reassembled"]
        return ok

    def end_of_file(self) -> None:
        """Fragments still held are carried into the next file (their outcome is counted in their own file)."""
        self.carried = {f for tr in self.defrag.trackers.values() for _, f in tr.frames}


def _read_into(run: _FileRun, summary: FileSummary, name: str, config: AnalyzeConfig,
               progress: Callable[[int], None] | None, frame_base: int = 0) -> CaptureReader | None:
    """Read one capture's batches into `run` (frame numbers shifted by `frame_base`). Returns the reader, or
    None when the file cannot be opened (then the summary has a read-error issue)."""
    try:
        opened = open_capture(name)
    except OSError as exc:
        summary.issues.append(CaptureIssue("read-error", 0, f"cannot open: {exc.strerror or exc}"))
        return None
    summary.compression = opened.compression
    reader = CaptureReader(opened.stream, chunk_size=config.chunk_size, batch_packets=config.batch_packets)
    last_bytes = 0
    try:
        for raw in reader.batches():
            summary.packets += len(raw)
            if summary.first_ts is None:
                summary.first_ts = float(raw.ts_ns[0]) / 1e9
            summary.last_ts = float(raw.ts_ns[-1]) / 1e9
            if frame_base:
                raw.frame_no += frame_base
            if not run.process_guarded(raw, reader.bytes_read):
                run.stopped = True  # an internal error: this file's remaining packets are not read
                break
            if progress is not None:
                progress(reader.bytes_read - last_bytes)
                last_bytes = reader.bytes_read
    finally:
        opened.close()
    if progress is not None and reader.bytes_read > last_bytes:
        progress(reader.bytes_read - last_bytes)
    return reader


def analyze_stream(names: list[str], sink: RecordSink, config: AnalyzeConfig | None = None,
                   progress: Callable[[int], None] | None = None) -> list[FileSummary]:
    """Analyse captures rotated from one stream (tcpdump -G/-C) as one capture, as Suricata reads a directory.

    `names` must already be in time order (`order_inputs`). Flow table, IP defragmenter, TCP reassembly,
    application parsers and meters carry across files, so a connection that crosses a rotation boundary is
    one flow with one handshake, and its parser goes on where it was. Idle timeouts run on capture time, so a
    gap between files ends flows as any gap does. Returns one FileSummary per input, in order: each file's
    packets are in exactly one of its outcome counters (`check_accounting` holds per file), a flow is
    counted in the file of its first packet, an event in the file of its packet. A file that cannot be read
    (missing, bad magic, corrupt or truncated) is reported in its summary and the stream goes on with the
    next. Record semantics (pcap_filename, frame numbers) are in docs/stream.md.
    """
    config = config or AnalyzeConfig()
    if not names:
        return []
    run = _StreamRun(names, config, sink)
    for name in names:
        started = time.perf_counter()
        summary = run.begin(name)
        base = run.frames
        reader = _read_into(run, summary, name, config, progress, frame_base=base)
        if reader is not None:
            run.frames += reader._frames  # every record numbered, unreadable ones too (as Wireshark does)
            run.emit_flows(np.empty(0, run.table.tab.dtype), final=True)
            run.note_reader(summary, reader)
        run.internal_errors = []
        run.end_of_file()
        run.flush_collector()
        run.take_counters(summary)
        summary.seconds = time.perf_counter() - started
    # end of the stream: what is still open ends here (end-of-input), in the file of its first packet
    started = time.perf_counter()
    last = run.summary
    for ended in run.table.flush(FLOW_BLOCK):
        run.emit_flows(ended)
    run.emit_flows(np.empty(0, run.table.tab.dtype), final=True)
    run.defrag.finish()
    run.note_fragment_threats()
    run.attribute_fragments()
    run.flush_collector()
    run.take_counters(last)
    last.seconds += time.perf_counter() - started
    return run.summaries


def first_packet_time(name: str) -> float:
    """Capture time of a file's first packet (inf when unreadable), to order a directory's files."""
    try:
        opened = open_capture(name)
    except OSError:
        return float("inf")
    try:
        reader = CaptureReader(opened.stream, chunk_size=1 << 16, batch_packets=1)
        for raw in reader.batches():
            return float(raw.ts_ns[0]) / 1e9
        return float("inf")
    finally:
        opened.close()


def order_inputs(names: list[str]) -> list[str]:
    """Standard input first (it cannot be peeked), then files by first packet time, then by name."""
    stdin = [n for n in names if n == STDIN_NAME]
    files = [n for n in names if n != STDIN_NAME]
    if len(files) < 2:
        return stdin + files  # nothing to order: no file is opened twice
    return stdin + sorted(files, key=lambda n: (first_packet_time(n), n))
