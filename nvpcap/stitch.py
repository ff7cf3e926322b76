"""Stitch flows split at capture-file boundaries, when rotated files (tcpdump -G/-C) were analysed one by one.

A flow still open when file N ended (`end_reason` "end-of-input") and the first flow with the same
`community_id` (and VLANs) in the next file N+1 are one flow when the second starts within the idle timeout the
flow table would have applied to the first (and is not a new connection: a fresh SYN after both sides closed
or reset is TCP port reuse). Chains (N, N+1, N+2, ...) stitch transitively. docs/stream.md gives the rules
for every field; in short: counters summed, `ts`/`flow_id`/keys/`pcap_filename`/`first_frame` from the first
part, `duration` to the last packet, `last_frame` counted from the start of the first part's file on through
the following files (as `mergecap -a` numbers their concatenation; needs each file's frame count), `history`
re-merged as Zeek records it, `conn_state` of the last part corrected for the handshake the earlier parts saw,
`app_proto` from the first part that identified one, `threat_ids` united, `end_reason` of the last part, and
`stitched_parts` the number of parts (1 for flows that were not split).

Two ways to run it, with the same rules:
- `stitch_flows(frame, ...)`: a post-pass over a run's flow records (polars or pandas; read back from JSONL
  or Parquet), returning the stitched records;
- `FlowStitcher(sink, ...)`: a sink wrapper inside a per-file run; it holds only the end-of-input flows of the
  previous file (plus stitched flows waiting for a file's frame count), so memory stays bounded.
`analyze --stream` (pipeline.analyze_stream) does not need either: it carries the flow state itself.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from .decode.sources import display_name
from .records.flows import FLOW_SCHEMA
from .session.kernel import HIST_MAX
from .session.table import Timeouts

PARTS = "stitched_parts"
EOF_REASON = "end-of-input"
_DIRECTIONAL = ("pkts", "bytes", "payload_bytes", "ip_bytes")
_SUMMED = ("missed_bytes", "truncated_pkts")
_ONCE = set("ADIQadiq")  # Zeek records these once per direction
_FIRST_REPEATABLE = set("SHFRshfr")  # recorded again only for a new SYN/FIN/RST: taken as retransmissions
_CLOSED_STATES = {"SF", "REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "S2", "S3"}


def frame_counts_from_summary(run_summary: Mapping[str, Any]) -> dict[str, int]:
    """pcap_filename -> frames in that file, from a run summary (the jsonl `stats` record or --summary-json):
    a file's `packets` counts every record it holds, as Wireshark numbers them."""
    return {display_name(f["file"]): int(f["packets"]) for f in run_summary.get("files", [])}


def file_order_from_summary(run_summary: Mapping[str, Any]) -> list[str]:
    """The run's files in the order they were analysed (order_inputs: time order), as pcap_filename values."""
    return [display_name(f["file"]) for f in run_summary.get("files", [])]


# -- the rules for one pair of parts ------------------------------------------------------------------------------
def _swap_case(history: str) -> str:
    return history.swapcase()


def merge_history(first: str, later: str) -> str:
    """Zeek's history of the whole flow from its parts' histories: the later part's letters follow, except
    those Zeek records once per direction (A D I Q, and S H F R which repeat only for a new sequence number)
    when an earlier part already has them, and '^' (the direction is the first part's)."""
    out = list(first or "")
    seen = set(out)
    for ch in later or "":
        if ch == "^":
            continue
        if ch in seen and (ch in _ONCE or ch in _FIRST_REPEATABLE):
            continue
        out.append(ch)
        seen.add(ch)
    return "".join(out)[:HIST_MAX]


def merge_conn_state(first_history: str, first_state: str, later_state: str, later_history: str) -> str:
    """The last part's conn_state, corrected where it only says that this part began mid-connection."""
    orig_syn = "S" in (first_history or "")
    resp_syn = "h" in (first_history or "") or "s" in (first_history or "")
    later = later_state
    if later == "OTH" and first_state in _CLOSED_STATES and not set(later_history or "") - set("AaTtWw^"):
        return first_state  # late ACKs or retransmissions after the connection closed
    if orig_syn and resp_syn:
        later = {"OTH": "S1", "SH": "S2", "SHR": "S3"}.get(later, later)
    if orig_syn:
        later = {"RSTRH": "RSTR"}.get(later, later)
    if resp_syn and later == "OTH" and "R" in (later_history or "") and "r" not in (later_history or ""):
        later = "RSTO"  # originator reset, responder established (its SYN-ACK was in an earlier part)
    return later


def idle_timeout(rec: Mapping[str, Any], timeouts: Timeouts) -> float:
    """The idle timeout (s) the flow table applies to a flow in the state its record shows (kernel._timeout_ns)."""
    proto = rec.get("proto")
    if proto == "tcp":
        h = rec.get("history") or ""
        if "R" in h or "r" in h or ("F" in h and "f" in h):
            return timeouts.tcp_closing
        if "F" in h or "f" in h:
            return timeouts.tcp_half_closed
        orig = any(c.isupper() for c in h if c != "^")
        resp = any(c.islower() for c in h)
        handshake_pending = "S" in h and not ("h" in h and ("A" in h or "D" in h))
        if orig and resp and not handshake_pending:
            return timeouts.tcp_active if (rec.get("payload_bytes_toserver") or 0) > 0 else \
                timeouts.tcp_established_no_data
        return timeouts.tcp_opening
    if proto == "udp":
        return timeouts.udp
    if proto in ("icmp", "icmpv6"):
        return timeouts.icmp
    return timeouts.other


def _end_ts(rec: Mapping[str, Any]) -> float:
    return float(rec["ts"]) + float(rec.get("duration") or 0.0)


def _flipped(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Did the later part take the other side as its client?"""
    same = b.get("src_ip") == a.get("src_ip") and b.get("src_port") == a.get("src_port")
    return (not same and b.get("src_ip") == a.get("dest_ip") and b.get("src_port") == a.get("dest_port"))


def continues(a: Mapping[str, Any], b: Mapping[str, Any], timeouts: Timeouts) -> bool:
    """Is `b` (the first flow with a's key in the next file) the continuation of the open flow `a`?"""
    gap = float(b["ts"]) - _end_ts(a)
    if gap > idle_timeout(a, timeouts):
        return False
    if a.get("proto") == "tcp":
        hb = b.get("history") or ""
        if _flipped(a, b):
            hb = _swap_case(hb)
        ha = a.get("history") or ""
        closed = "R" in ha or "r" in ha or ("F" in ha and "f" in ha)
        if hb.startswith("S") and closed:
            return False  # a new SYN after both sides closed: port reuse, a new connection
    return True


def _app_rank(rec: Mapping[str, Any]) -> int:
    if rec.get("app_proto") not in (None, "unknown") and rec.get("app_confidence") == "dpi":
        return 2
    return 1 if rec.get("app_proto") not in (None, "unknown") else 0


def merge_pair(a: dict, b: dict) -> dict:
    """Merge the later part `b` into the accumulated flow `a` (a new dict; `a` keeps its own first part)."""
    out = dict(a)
    flip = _flipped(a, b)
    for base in _DIRECTIONAL:
        ts_, tc = f"{base}_toserver", f"{base}_toclient"
        bs, bc = (b.get(tc), b.get(ts_)) if flip else (b.get(ts_), b.get(tc))
        out[ts_] = (a.get(ts_) or 0) + (bs or 0)
        out[tc] = (a.get(tc) or 0) + (bc or 0)
    for c in _SUMMED:
        out[c] = (a.get(c) or 0) + (b.get(c) or 0)
    out["duration"] = round(max(_end_ts(a), _end_ts(b)) - float(a["ts"]), 6)
    hb = _swap_case(b.get("history") or "") if flip else (b.get("history") or "")
    out["history"] = merge_history(a.get("history") or "", hb)
    if a.get("proto") == "tcp":
        out["conn_state"] = merge_conn_state(a.get("history") or "", a.get("conn_state"), b.get("conn_state"), hb)
    elif a.get("proto") == "udp":  # Zeek's UDP states: who sent anything
        orig, resp = (out.get("pkts_toserver") or 0) > 0, (out.get("pkts_toclient") or 0) > 0
        out["conn_state"] = "SF" if orig and resp else "S0" if orig else "SHR" if resp else "OTH"
    if _app_rank(b) > _app_rank(a):
        out["app_proto"], out["app_confidence"] = b.get("app_proto"), b.get("app_confidence")
    if out.get("app_product") is None:
        out["app_product"] = b.get("app_product")
    out["threat_ids"] = sorted(set(a.get("threat_ids") or []) | set(b.get("threat_ids") or []))
    out["end_reason"] = b.get("end_reason")
    out[PARTS] = int(a.get(PARTS) or 1) + int(b.get(PARTS) or 1)
    return out


def _list(value: Any) -> Any:
    """List columns as Python lists (pandas hands numpy arrays)."""
    if value is None or isinstance(value, float):  # pandas shows a missing list as NaN
        return None
    return [int(x) for x in value]


def _key(rec: Mapping[str, Any]) -> tuple:
    vlan = rec.get("vlan")
    return rec.get("community_id"), tuple(vlan) if vlan is not None else None


class _Held:
    """A flow open at the end of a file, waiting for its continuation in the next file."""

    __slots__ = ("file_index", "files", "last_part_frame", "rec")

    def __init__(self, rec: dict, file_index: int, files: list[str], last_part_frame: int | None):
        self.rec = rec
        self.file_index = file_index  # the file where its last part is
        self.files = files  # files of the parts, first to last (the first is rec["pcap_filename"])
        self.last_part_frame = last_part_frame  # last_frame of the last part, in that part's own file


class FlowStitcher:
    """A sink wrapper for per-file runs: stitches flows split at file boundaries (module docstring).

    Give it the run's inputs in order (`file_order`: names as given, or pcap_filename values) when you can;
    otherwise the order is the order files show up in (blocks or `end_file` calls). A frame count per file
    (`end_file(summary)` after each input, or the run summary given to `close`) lets a stitched flow's
    last_frame be counted on from its first file; stitched flows wait for it (never longer than the run).
    `parts_column`: add `stitched_parts` to every flow record (a column FLOW_SCHEMA does not have: leave it
    off for writers with a fixed schema, such as Parquet).
    """

    def __init__(self, sink: Any = None, *, file_order: Sequence[str] | None = None,
                 frame_counts: Mapping[str, int] | None = None, timeouts: Timeouts | None = None,
                 parts_column: bool = True):
        self.sink = sink
        self.timeouts = timeouts or Timeouts()
        self.parts_column = parts_column
        self.order: list[str] = [display_name(n) for n in file_order] if file_order else []
        self.fixed_order = bool(file_order)
        self.position = {n: i for i, n in enumerate(self.order)}
        self.frame_counts: dict[str, int] = dict(frame_counts or {})
        self.current = -1  # index of the file whose flows are arriving
        self.held: dict[tuple, _Held] = {}  # open at the end of the previous file (or merged into this one)
        self.open_now: dict[tuple, _Held] = {}  # this file's end-of-input flows (and chains through it)
        self.matched: set[tuple] = set()  # keys of `held` already offered their first candidate in this file
        self.waiting: list[_Held] = []  # stitched flows whose last_frame needs a frame count not yet known
        self.out_columns: list[str] | None = None
        self.schema: dict[str, pl.DataType] | None = None
        self.stitched = 0  # flows merged into an earlier part (records saved)

    # -- file bookkeeping -----------------------------------------------------------------------------------
    def _index(self, name: str) -> int:
        if name not in self.position:
            self.position[name] = len(self.order)
            self.order.append(name)
        return self.position[name]

    def _enter(self, index: int) -> None:
        """Flows of file `index` start arriving: what was held for an earlier file can no longer continue."""
        if index == self.current:
            return
        if index < self.current:
            raise ValueError("flows must arrive file by file, in the run's order")
        if index == self.current + 1:
            self._release(self.held.values())
            self.held, self.open_now = self.open_now, {}
        else:  # a file (or more) without flows in between: nothing can continue across it
            self._release(self.held.values())
            self._release(self.open_now.values())
            self.held, self.open_now = {}, {}
        self.matched = set()
        self.current = index

    def end_file(self, summary: Any) -> None:
        """Input `summary` (a FileSummary or its as_dict()) is complete: note its frame count and place."""
        d = summary.as_dict() if hasattr(summary, "as_dict") else summary
        name = display_name(d.get("file") or d.get("name"))
        self.frame_counts[name] = int(d["packets"])
        if not self.fixed_order:
            self._index(name)
        self._flush_waiting()

    # -- records ----------------------------------------------------------------------------------------------
    def _columns(self, flows: pl.DataFrame) -> None:
        if self.out_columns is None:
            cols = list(flows.columns)
            if self.parts_column and PARTS not in cols:
                cols.append(PARTS)
            self.out_columns = cols
            self.schema = {c: flows.schema.get(c, pl.Int64) for c in cols}

    def write_flows(self, flows: pl.DataFrame) -> None:
        if not len(flows):
            return
        self._columns(flows)
        names = flows["pcap_filename"].unique(maintain_order=True).to_list()
        for name in names:
            part = flows.filter(pl.col("pcap_filename") == name) if len(names) > 1 else flows
            self._block(name, part)

    def _block(self, name: str, flows: pl.DataFrame) -> None:
        self._enter(self._index(name))
        passed = []
        for i, rec in enumerate(flows.iter_rows(named=True)):
            for c in ("vlan", "threat_ids"):
                if c in rec:
                    rec[c] = _list(rec[c])
            key = _key(rec)
            prev = self.held.get(key) if key not in self.matched else None
            if key in self.held and key not in self.matched:
                self.matched.add(key)
                if not continues(prev.rec, rec, self.timeouts):
                    self._release([self.held.pop(key)])
                    prev = None
            if prev is not None:
                del self.held[key]
                merged = _Held(merge_pair(prev.rec, rec), self.current, prev.files + [name], rec.get("last_frame"))
                self.stitched += 1
                if rec.get("end_reason") == EOF_REASON:
                    self.open_now[key] = merged
                else:
                    self._release([merged])
                continue
            if rec.get("end_reason") == EOF_REASON and key[0] is not None:
                self.open_now[key] = _Held(rec, self.current, [name], rec.get("last_frame"))
                continue
            passed.append(i)
        if passed:
            block = flows if len(passed) == len(flows) else flows[passed]
            self._emit(self._shape(block))

    def _shape(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self.parts_column and PARTS not in frame.columns:
            frame = frame.with_columns(pl.lit(1, pl.Int64).alias(PARTS))
        return frame.select(self.out_columns)

    def _emit(self, frame: pl.DataFrame) -> None:
        if len(frame) and self.sink is not None:
            self.sink.write_flows(frame)

    def _last_frame(self, held: _Held) -> tuple[bool, int | None]:
        """(known, value): the last part's frame counted from the start of the first part's file."""
        if len(held.files) == 1 or held.last_part_frame is None:
            return True, held.last_part_frame
        first = self.position.get(held.files[0])
        last = self.position.get(held.files[-1])
        if first is None or last is None:
            return True, None
        total = held.last_part_frame
        for name in self.order[first:last]:
            if name not in self.frame_counts:
                return False, None
            total += self.frame_counts[name]
        return True, total

    def _release(self, items: Iterable[_Held]) -> None:
        rows = []
        for h in items:
            known, last = self._last_frame(h)
            if not known:
                self.waiting.append(h)
                continue
            rows.append(self._finish(h, last))
        if rows:
            self._emit(pl.DataFrame(rows, schema=self.schema))

    def _finish(self, h: _Held, last: int | None) -> dict:
        rec = dict(h.rec)
        rec["last_frame"] = last
        rec.setdefault(PARTS, 1)
        if rec[PARTS] is None:
            rec[PARTS] = 1
        return {c: rec.get(c) for c in self.out_columns}

    def _flush_waiting(self) -> None:
        if not self.waiting:
            return
        waiting, self.waiting = self.waiting, []
        self._release(waiting)

    def write_events(self, events: list[dict]) -> None:
        if self.sink is not None:
            self.sink.write_events(events)

    def finish(self, run_summary: Mapping[str, Any] | None = None) -> None:
        """End of the run: everything still held goes out (frame counts from `run_summary` if given)."""
        if run_summary is not None:
            for name, n in frame_counts_from_summary(run_summary).items():
                self.frame_counts.setdefault(name, n)
            if not self.fixed_order:
                for name in file_order_from_summary(run_summary):
                    self._index(name)
        self._release(self.held.values())
        self._release(self.open_now.values())
        self.held, self.open_now = {}, {}
        waiting, self.waiting = self.waiting, []
        rows = [self._finish(h, self._last_frame(h)[1]) for h in waiting]  # a count still missing: null
        if rows:
            self._emit(pl.DataFrame(rows, schema=self.schema))

    def close(self, run_summary: dict) -> None:
        self.finish(run_summary)
        if self.sink is not None:
            self.sink.close(run_summary)


class _Collect:
    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []

    def write_flows(self, flows: pl.DataFrame) -> None:
        self.frames.append(flows)

    def write_events(self, events: list[dict]) -> None:
        pass


def stitch_flows(flows: Any, *, file_order: Sequence[str] | None = None,
                 frame_counts: Mapping[str, int] | None = None, run_summary: Mapping[str, Any] | None = None,
                 timeouts: Timeouts | None = None, parts_column: bool = True) -> Any:
    """The flow records of a per-file run with the flows split at file boundaries stitched (module docstring).

    `flows`: a polars or pandas DataFrame of flow records (one run's: JSONL or Parquet read back; other event
    types are dropped); the result has the same type, ordered by file, then first_frame. `run_summary` (the
    jsonl `stats` record or --summary-json) gives the file order and frame counts; else `file_order` (default:
    files by their first flow's ts, then name) and `frame_counts` (pcap_filename -> frames; without it a
    stitched flow's last_frame is null). `timeouts`: the flow table's (default NeuVector's).
    """
    pandas_in = not isinstance(flows, pl.DataFrame)
    frame = pl.from_pandas(flows) if pandas_in else flows
    if "event_type" in frame.columns:
        frame = frame.filter(pl.col("event_type") == "flow")
    if run_summary is not None:
        file_order = file_order or file_order_from_summary(run_summary)
        frame_counts = {**frame_counts_from_summary(run_summary), **(frame_counts or {})}
    if not file_order:
        firsts = frame.group_by("pcap_filename").agg(pl.col("ts").min()).sort(["ts", "pcap_filename"])
        file_order = firsts["pcap_filename"].to_list()
    for c in ("vlan", "threat_ids"):
        if c in frame.columns and frame.schema[c] == pl.Null:
            frame = frame.with_columns(pl.col(c).cast(pl.List(pl.Int64)))
    out = _Collect()
    stitcher = FlowStitcher(out, file_order=file_order, frame_counts=frame_counts, timeouts=timeouts,
                            parts_column=parts_column)
    present = set(frame["pcap_filename"].unique().to_list())
    for name in stitcher.order + sorted(present - set(stitcher.order)):
        if name in present:
            stitcher.write_flows(frame.filter(pl.col("pcap_filename") == name).sort("first_frame"))
    stitcher.finish()
    if out.frames:
        result = pl.concat(out.frames, how="vertical_relaxed")
        rank = {n: i for i, n in enumerate(stitcher.order)}
        result = result.with_columns(pl.col("pcap_filename").replace_strict(rank, default=len(rank),
                                                                           return_dtype=pl.Int64).alias("_file"))
        result = result.sort(["_file", "first_frame"]).drop("_file")
    else:
        cols = list(frame.columns) + ([PARTS] if parts_column and PARTS not in frame.columns else [])
        result = pl.DataFrame(schema={c: frame.schema.get(c, FLOW_SCHEMA.get(c, pl.Int64)) for c in cols})
    if not pandas_in:
        return result
    pdf = result.to_pandas()
    for c in ("vlan", "threat_ids"):
        if c in pdf.columns:
            pdf[c] = [_list(v) for v in pdf[c]]
    return pdf
