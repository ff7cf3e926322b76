"""Parquet (pyarrow): flows.parquet, plus events.parquet for alerts and anomalies.

`ParquetSink`: `-o x.parquet` writes x.parquet and x.events.parquet (`-o DIR/` with it: DIR/flows.parquet and
DIR/events.parquet). Row groups are written as flows end, so memory stays bounded.
`PartitionedParquetSink` (below): `-o DIR/` as a dataset of one part per input, resumable (docs/scale.md).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import hidden_tmp, write_atomic
from ..records.flows import empty_flow_frame
from .base import EVENT_SCHEMA, Sink, flatten_events, sibling


class ParquetSink(Sink):
    def __init__(self, output: str | None):
        if output in (None, "-"):
            raise ValueError("parquet output needs -o FILE.parquet or -o DIRECTORY/")
        if output.lower().endswith(".parquet"):
            self.flows_path = output
            self.events_path = sibling(output, "events") or output + ".events"
        else:
            os.makedirs(output, exist_ok=True)
            self.flows_path = os.path.join(output, "flows.parquet")
            self.events_path = os.path.join(output, "events.parquet")
        Path(self.flows_path).parent.mkdir(parents=True, exist_ok=True)
        # the schemas are the records' own (FLOW_SCHEMA, EVENT_SCHEMA), as Arrow types
        self._flows = pq.ParquetWriter(self.flows_path, empty_flow_frame().to_arrow().schema, compression="zstd")
        self._events: pq.ParquetWriter | None = None

    def write_flows(self, flows: pl.DataFrame) -> None:
        if len(flows):
            self._flows.write_table(flows.to_arrow())

    def write_events(self, events: list[dict]) -> None:
        if not events:
            return
        table = flatten_events(events).to_arrow()
        if self._events is None:
            self._events = pq.ParquetWriter(self.events_path, table.schema, compression="zstd")
        self._events.write_table(table)

    def close(self, run_summary: dict) -> None:
        self._flows.close()
        if self._events is not None:
            self._events.close()


# -- partitioned output: one pair of part files per input, written by the worker that analysed it ----------------
#
# DIR/flows/part-<n>-<stem>.parquet and DIR/events/part-<n>-<stem>.parquet, n = the input's position in the run
# (inputs ordered as `order_inputs` orders them), zero-padded so the lexical order of the parts is the input order.
# Every part of a folder has the same schema (the records' own), so DuckDB ('DIR/flows/*.parquet'), pandas and
# pyarrow (pd.read_parquet('DIR/flows')) and polars (pl.scan_parquet('DIR/flows/*.parquet')) read one folder as one
# table. A part is written under a hidden temporary name ('.part-...tmp': dataset readers skip names starting with
# '.') and renamed when complete, so an interrupted run never leaves a half part that looks complete.
# DIR/manifest.jsonl records, per input, what was written (see PartitionedParquetSink) so a rerun can resume.

ROW_GROUP_ROWS = 65_536  # rows gathered before a row group is written (flows arrive in blocks of ~1k)
MANIFEST = "manifest.jsonl"
MANIFEST_VERSION = 1
_CAPTURE_SUFFIXES = re.compile(r"(\.(pcapng|pcap|cap|dmp|gz|zst|zstd|bz2|xz|lz4))+$", re.IGNORECASE)


def flow_schema() -> pa.Schema:
    return empty_flow_frame().to_arrow().schema


def event_schema() -> pa.Schema:
    return pl.DataFrame(schema=EVENT_SCHEMA).to_arrow().schema


def part_stem(name: str) -> str:
    """A file-name-safe stem of an input: 'rotated.00001.pcap.gz' -> 'rotated.00001'."""
    base = "stdin" if name == "-" else os.path.basename(name.rstrip("/\\")) or "input"
    base = _CAPTURE_SUFFIXES.sub("", base) or base
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:80].strip(".") or "input"


def part_name(index: int, name: str) -> str:
    return f"part-{index:06d}-{part_stem(name)}.parquet"


class _TableOut:
    """One Parquet file written in row groups of ROW_GROUP_ROWS rows; to a hidden temporary name then renamed
    (`path`), or into memory (`path` None: `data()` returns the file's bytes)."""

    def __init__(self, path: str | None, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self.tmp = hidden_tmp(path) if path else None
        self.sink = pa.BufferOutputStream() if path is None else None
        self.writer = pq.ParquetWriter(self.tmp if path else self.sink, schema, compression="zstd")
        self.held: list[pa.Table] = []
        self.held_rows = 0
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if table.schema != self.schema:
            table = table.cast(self.schema)
        self.held.append(table)
        self.held_rows += table.num_rows
        self.rows += table.num_rows
        if self.held_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.held:
            self.writer.write_table(pa.concat_tables(self.held), row_group_size=max(self.held_rows, 1))
            self.held, self.held_rows = [], 0

    def finish(self) -> bytes | None:
        self._flush()
        self.writer.close()
        if self.path is None:
            return self.sink.getvalue().to_pybytes()
        os.replace(self.tmp, self.path)  # complete: now it has its real name
        return None

    def abort(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - already failing; the temporary file goes anyway
            pass
        if self.tmp and os.path.exists(self.tmp):
            os.unlink(self.tmp)


class ParquetPartWriter(Sink):
    """The records of one input as a flows part and an events part (both always written, empty or not, so a
    folder's schema is whole). Paths: files written under temporary names and renamed by `finish()`; None: kept
    in memory and returned by `finish()` as bytes (Dask workers that do not share the output's disk)."""

    def __init__(self, flows_path: str | None, events_path: str | None):
        self.flows = _TableOut(flows_path, flow_schema())
        try:
            self.events = _TableOut(events_path, event_schema())
        except Exception:
            self.flows.abort()
            raise

    def write_flows(self, flows: pl.DataFrame) -> None:
        if len(flows):
            self.flows.add(flows.to_arrow())

    def write_events(self, events: list[dict]) -> None:
        if events:
            self.events.add(flatten_events(events).to_arrow())

    def finish(self) -> tuple[bytes | None, bytes | None]:
        """Complete both parts (events first: a flows part with its real name means the pair is complete)."""
        events = self.events.finish()
        flows = self.flows.finish()
        return flows, events

    def abort(self) -> None:
        self.flows.abort()
        self.events.abort()


def concat_parts(paths: list[str], out: str, schema: pa.Schema) -> int:
    """One part file from several (the shards of one input: session/shard.py), row group by row group so that
    memory stays at one row group; written under a temporary name and renamed. Returns the rows written."""
    part = _TableOut(out, schema)
    try:
        for path in paths:
            source = pq.ParquetFile(path)
            for i in range(source.num_row_groups):
                part.add(source.read_row_group(i))
                part._flush()
        part.finish()
    except BaseException:
        part.abort()
        raise
    return part.rows


@dataclass
class PartPlan:
    """What to do with one input: `skip` (its parts are complete and its file unchanged: `summary` is the
    summary recorded when they were written), else write to `flows_path` and `events_path`."""

    index: int
    name: str
    flows_path: str
    events_path: str
    skip: bool = False
    summary: dict | None = None
    moved: bool = False  # skipped, but its parts were renamed to this run's position


class PartitionedParquetSink(Sink):
    """`--format parquet -o DIR/`: one flows part and one events part per input, written by the worker that
    analysed the input (no merge step), and DIR/manifest.jsonl so that a rerun skips unchanged inputs.

    The manifest is JSON lines: a header, then one entry per completed input, appended as each input completes
    (the last entry of an input wins; a torn last line of an interrupted run is ignored), compacted on close.
    An entry holds the input's absolute path, size and mtime_ns, the run spec's digest, the part files (with their
    sizes and row counts) and the input's summary. An input is skipped when all of these still match. Entries of
    inputs that are not in a run are kept (their parts stay part of the dataset).

    This sink is driven by `nvpcap.executor.run_inputs` (plan / commit), not by `write_flows` calls.
    """

    partitioned = True

    def __init__(self, output: str, resume: bool = True):
        if output in (None, "-"):
            raise ValueError("partitioned parquet output needs -o DIRECTORY/")
        if os.path.exists(output) and not os.path.isdir(output):
            raise ValueError(f"{output} is not a directory")
        self.dir = output
        self.flows_dir = os.path.join(output, "flows")
        self.events_dir = os.path.join(output, "events")
        os.makedirs(self.flows_dir, exist_ok=True)
        os.makedirs(self.events_dir, exist_ok=True)
        self.manifest_path = os.path.join(output, MANIFEST)
        self.resume = resume
        self.entries: dict[str, dict] = self._load() if resume else {}
        if not resume and os.path.exists(self.manifest_path):
            os.unlink(self.manifest_path)
        self._journal = None

    # -- manifest ------------------------------------------------------------------------------------------
    def _load(self) -> dict[str, dict]:
        entries: dict[str, dict] = {}
        try:
            with open(self.manifest_path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue  # a torn last line of an interrupted run
                    if isinstance(rec, dict) and "input" in rec:
                        entries[rec["input"]] = rec
                    elif isinstance(rec, dict) and rec.get("nvpcap_manifest") != MANIFEST_VERSION:
                        return {}  # another manifest version: start afresh
        except FileNotFoundError:
            pass
        return entries

    def _append(self, entry: dict) -> None:
        if self._journal is None:
            fresh = not os.path.exists(self.manifest_path) or os.path.getsize(self.manifest_path) == 0
            self._journal = open(self.manifest_path, "a", encoding="utf-8")
            if fresh:
                self._journal.write(json.dumps({"nvpcap_manifest": MANIFEST_VERSION}) + "\n")
        self._journal.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
        self._journal.flush()

    def _compact(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        tmp = hidden_tmp(self.manifest_path)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"nvpcap_manifest": MANIFEST_VERSION}) + "\n")
            for entry in sorted(self.entries.values(), key=lambda e: (e.get("flows", ""), e["input"])):
                fh.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
        os.replace(tmp, self.manifest_path)

    # -- driven by run_inputs ------------------------------------------------------------------------------
    def _paths(self, index: int, name: str) -> tuple[str, str]:
        part = part_name(index, name)
        return os.path.join(self.flows_dir, part), os.path.join(self.events_dir, part)

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.dir)

    def plan(self, index: int, name: str, spec_digest: str) -> PartPlan:
        flows_path, events_path = self._paths(index, name)
        plan = PartPlan(index, name, flows_path, events_path)
        if not self.resume or name == "-":
            return plan
        entry = self.entries.get(os.path.abspath(name))
        if entry is None or entry.get("spec") != spec_digest:
            return plan
        try:
            st = os.stat(name)
        except OSError:
            return plan
        if entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns:
            return plan
        old_flows = os.path.join(self.dir, entry["flows"])
        old_events = os.path.join(self.dir, entry["events"])
        for path, size in ((old_flows, entry.get("flows_bytes")), (old_events, entry.get("events_bytes"))):
            if not os.path.isfile(path) or os.path.getsize(path) != size:
                return plan
        if (old_flows, old_events) != (flows_path, events_path):  # same input, another position in this run
            self._drop_holders(flows_path, events_path, keep=entry["input"])
            os.replace(old_flows, flows_path)
            os.replace(old_events, events_path)
            entry = dict(entry, index=index, flows=self._rel(flows_path), events=self._rel(events_path))
            self.entries[entry["input"]] = entry
            self._append(entry)
            plan.moved = True
        plan.skip = True
        plan.summary = entry.get("summary")
        return plan

    def _drop_holders(self, flows_path: str, events_path: str, keep: str) -> None:
        """Forget entries of other inputs whose parts have these names (they are about to be replaced)."""
        mine = {self._rel(flows_path), self._rel(events_path)}
        for key, entry in list(self.entries.items()):
            if key != keep and (entry.get("flows") in mine or entry.get("events") in mine):
                del self.entries[key]

    def store(self, plan: PartPlan, flows: bytes, events: bytes) -> None:
        """Parts that came back as bytes (Dask): write them, each via a temporary name."""
        write_atomic(plan.events_path, events)
        write_atomic(plan.flows_path, flows)

    def commit(self, plan: PartPlan, spec_digest: str, summary: dict, flow_rows: int, event_rows: int) -> None:
        """Record that `plan`'s parts are complete (called after they have their real names)."""
        if plan.name == "-":
            return
        key = os.path.abspath(plan.name)
        old = self.entries.get(key)
        if old is not None:  # the same input written earlier under another position: remove those parts
            for rel in (old.get("flows"), old.get("events")):
                path = os.path.join(self.dir, rel) if rel else None
                if path and path not in (plan.flows_path, plan.events_path) and os.path.isfile(path):
                    os.unlink(path)
        self._drop_holders(plan.flows_path, plan.events_path, keep=key)
        try:
            st = os.stat(plan.name)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime_ns = None
        entry = {"input": key, "index": plan.index, "size": size, "mtime_ns": mtime_ns, "spec": spec_digest,
                 "flows": self._rel(plan.flows_path), "events": self._rel(plan.events_path),
                 "flows_bytes": os.path.getsize(plan.flows_path), "events_bytes": os.path.getsize(plan.events_path),
                 "flow_rows": flow_rows, "event_rows": event_rows, "summary": summary}
        self.entries[key] = entry
        self._append(entry)

    def others(self, names: list[str]) -> list[str]:
        """Inputs with parts in DIR that are not among `names` (kept: they are part of the dataset)."""
        mine = {os.path.abspath(n) for n in names if n != "-"}
        return sorted(k for k in self.entries if k not in mine)

    def write_flows(self, flows: pl.DataFrame) -> None:
        raise TypeError("PartitionedParquetSink is driven by nvpcap.executor.run_inputs, one part per input")

    def write_events(self, events: list[dict]) -> None:
        raise TypeError("PartitionedParquetSink is driven by nvpcap.executor.run_inputs, one part per input")

    def close(self, run_summary: dict) -> None:
        if self.resume or self.entries:
            self._compact()
