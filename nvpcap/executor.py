"""Run many inputs: one after another, in local worker processes (`-j N`), or on a Dask cluster.

Files are independent units of work (`analyze_file()` is pure), so every executor runs the same per-file
function and the records are those of a serial run, in the same order:

- `jobs=1`: the serial loop, each file straight into the user's sink.
- `jobs>1`: a `ProcessPoolExecutor` (forkserver on Linux, else spawn: numba's and Hyperscan's native state and
  `fork()` of a process that has threads do not mix). Each worker analyses one file into a *part*
  (output/parts.py: the log of the sink calls, in a temporary directory) and the parent replays the parts into
  the user's sink in input order, one block at a time, deleting each as it goes: memory stays bounded by one
  block, and the sink sees the very calls a serial run would have made.
- A large file whose share of the input bytes is worth two jobs or more (local executor) is split:
  that many workers each read the whole file and keep the whole flow table, and each inspects and writes
  the flows of the address pairs it owns (session/shard.py); its parts are replayed shard after shard and the
  summaries merged (`merge_shards`). The records are a serial run's; only their order within the file differs.
- `executor="dask"`: the same function as Dask tasks; the part comes back as bytes (workers need not share the
  parent's disk, but must read the inputs and rule files at the same paths).
- Partitioned Parquet (`PartitionedParquetSink`, `-o DIR/`): each worker writes its input's two part files
  itself (Dask workers return them as bytes), and DIR/manifest.jsonl lets a rerun skip unchanged inputs.

A worker that dies on one file (a crash in native code, the OOM killer) costs that file only: the files that
were in flight are rerun one by one in a fresh process to find the culprit, whose summary then carries a
`worker-crash` issue; the others go on. The rules engine (Hyperscan databases cannot be pickled) is built once
per worker process from the picklable `RunSpec`.
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import threading
import traceback
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from collections.abc import Callable, Iterable
from typing import Any

from . import __version__
from .decode.reader import CaptureIssue
from .decode.sources import STDIN_NAME, file_size
from .pipeline import AnalyzeConfig, FileSummary, analyze_file, analyze_stream, merge_shards
from .protocols.applayer import DEFAULT_MAX_PARSED_FLOWS, DEFAULT_STREAM_DEPTH, AppLayerConfig
from .session.meters import parse_meter_settings
from .session.table import FlowTableConfig

EXECUTORS = ("local", "dask")
PROGRESS_STEP = 4 << 20  # bytes a worker reads between progress reports
CRASH_HOOK = "NVPCAP_TEST_CRASH_INPUT"  # tests: a pool worker given the file of this base name dies (os._exit)
SHARD_MIN_BYTES = 64 << 20  # a file is split across workers only from this size (below it start-up dominates)


# -- what a run is: picklable, hashable ------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """Everything `analyze` turns into an AnalyzeConfig, in picklable form (the rules engine is built from it in
    each worker). `threat_overrides` may be given as a dict; it is kept as sorted (id, on) pairs."""

    rule_files: tuple[str, ...] = ()
    bundled: bool = True
    crs_paranoia: int = 1
    stream_depth: int = DEFAULT_STREAM_DEPTH
    max_flows: int = 1_000_000
    max_parsed_flows: int = DEFAULT_MAX_PARSED_FLOWS
    threat_overrides: tuple[tuple[int, bool], ...] = ()
    meter_settings: tuple[str, ...] = ()  # NAME.FIELD=VALUE, as `--meter` takes them
    flows_only: bool = False  # no payload inspection: no identification, parsing or rules (`--flows-only`)

    def __post_init__(self) -> None:
        overrides: Any = self.threat_overrides
        if isinstance(overrides, dict):
            overrides = overrides.items()
        object.__setattr__(self, "threat_overrides", tuple(sorted((int(k), bool(v)) for k, v in overrides)))
        object.__setattr__(self, "rule_files", tuple(str(p) for p in self.rule_files))
        object.__setattr__(self, "meter_settings", tuple(str(m) for m in self.meter_settings))

    def absolute(self) -> RunSpec:
        """The same spec with absolute rule paths (for workers that may run in another directory)."""
        return dataclasses.replace(self, rule_files=tuple(os.path.abspath(p) for p in self.rule_files))

    def digest(self) -> str:
        """A hash of the spec, the nvpcap version and the rule files' contents (the bundled packs' too): parts
        written under another digest are not reused by a resumed run."""
        h = hashlib.sha256()
        fields = dataclasses.asdict(self)
        fields["rule_files"] = [os.path.abspath(p) for p in self.rule_files]
        h.update(json.dumps({"nvpcap": __version__, "spec": fields}, sort_keys=True, default=list).encode())
        paths = list(self.rule_files)
        if self.bundled:
            paths.append(os.path.join(os.path.dirname(__file__), "rules", "packs"))
        for path in paths:
            _hash_tree(h, path)
        return h.hexdigest()[:32]


def _hash_tree(h: Any, path: str) -> None:
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                _hash_tree(h, os.path.join(root, f))
        return
    h.update(path.encode() + b"\0")
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        h.update(b"<unreadable>")


_cache = threading.local()  # per thread: a Dask worker may run several tasks at once
_build_lock = threading.Lock()


def _engine(spec: RunSpec) -> tuple[Any, list[str]]:
    """The spec's rules engine and its problems, built once per process (and thread)."""
    if spec.flows_only:
        return None, []  # no payload is read: no rules to build
    engines = getattr(_cache, "engines", None)
    if engines is None:
        engines = _cache.engines = {}
    key = (spec.rule_files, spec.bundled, spec.crs_paranoia)
    if key not in engines:
        from .rules import build_engine, crs

        with _build_lock:  # the CRS loader reads a module-level paranoia level
            before = crs.PARANOIA
            crs.PARANOIA = spec.crs_paranoia
            try:
                engines[key] = build_engine(spec.rule_files, bundled=spec.bundled)
            finally:
                crs.PARANOIA = before
    return engines[key]


def build_config(spec: RunSpec) -> AnalyzeConfig:
    """The AnalyzeConfig for `spec` (the rules engine is cached per process: ~0.2-0.8 s to build)."""
    engine, _ = _engine(spec)
    return AnalyzeConfig(table=FlowTableConfig(max_flows=spec.max_flows),
                         app=AppLayerConfig(stream_depth=spec.stream_depth, rules=engine,
                                            max_flows=spec.max_parsed_flows, inspect=not spec.flows_only),
                         threat_overrides=dict(spec.threat_overrides),
                         meters=parse_meter_settings(spec.meter_settings))


def rule_problems(spec: RunSpec) -> list[str]:
    """Problems met loading the spec's rules (built in this process, and kept for a serial run)."""
    return list(_engine(spec)[1])


# -- summaries as JSON (the resume manifest) ----------------------------------------------------------------
def summary_to_dict(s: FileSummary) -> dict:
    """A FileSummary as plain JSON values; `summary_from_dict` gives it back whole."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(s):
        v = getattr(s, f.name)
        if isinstance(v, Counter):
            v = dict(v)
        elif f.name == "issues":
            v = [dataclasses.asdict(i) for i in v]
        out[f.name] = v
    return out


def summary_from_dict(d: dict) -> FileSummary:
    s = FileSummary(name=d["name"])
    for f in dataclasses.fields(s):
        if f.name not in d:
            continue
        v = d[f.name]
        if isinstance(getattr(s, f.name), Counter):
            v = Counter(v or {})
        elif f.name == "issues":
            v = [CaptureIssue(**i) for i in v]
        setattr(s, f.name, v)
    return s


# -- the per-file task ----------------------------------------------------------------------------------------
@dataclass
class Task:
    index: int  # position in the run (input order)
    name: str  # as the user gave it (the summary's name)
    path: str  # what the worker opens (absolute)
    mode: str = "part"  # "part": a log of sink calls; "parquet": the two part files of a partitioned folder
    part_path: str | None = None  # mode part: the file to write; None: return bytes
    flows_path: str | None = None  # mode parquet: where the parts go; None: return bytes
    events_path: str | None = None
    tee: bool = False  # mode parquet: also write the part log (part_path, or bytes), for run_inputs' `tee`
    shard: int = 0  # this task owns the flows of shard `shard` of `shards` (session/shard.py)
    shards: int = 1
    stream: tuple[str, ...] = ()  # `--stream`: these files read as one capture (`path` unused), as given


@dataclass
class TaskResult:
    index: int
    summary: FileSummary
    ok: bool = True  # False: the worker failed; no records came back
    part: bytes | None = None
    flows: bytes | None = None
    events: bytes | None = None
    flow_rows: int = 0
    event_rows: int = 0
    shard: int = 0
    summaries: list[FileSummary] | None = None  # a `--stream` task's: one per file


class _Both:
    """Two sinks fed the same calls (a worker's Parquet parts, and the part log for `tee`)."""

    def __init__(self, first: Any, second: Any):
        self.first, self.second = first, second

    def write_flows(self, flows: Any) -> None:
        self.first.write_flows(flows)
        self.second.write_flows(flows)

    def write_events(self, events: list[dict]) -> None:
        self.first.write_events(events)
        self.second.write_events(events)


def analyze_task(task: Task, spec: RunSpec, progress: Callable[[int], None] | None = None) -> TaskResult:
    """Analyse one input into a part log (mode "part", or "parquet" with `tee`) and/or its Parquet parts (mode
    "parquet"): files, or bytes when the task names no path."""
    from .output.parts import PartWriter

    config = build_config(spec)
    if task.shards > 1:
        config = dataclasses.replace(config, shard=(task.shard, task.shards))
    stream: Any = None
    log = parquet = None
    if task.mode == "part" or task.tee:
        stream = open(task.part_path, "wb") if task.part_path else io.BytesIO()  # noqa: SIM115 - closed below
        log = PartWriter(stream)
    try:
        if task.mode == "parquet":
            from .output.parquet import ParquetPartWriter

            parquet = ParquetPartWriter(task.flows_path, task.events_path)
        sink = parquet if log is None else log if parquet is None else _Both(parquet, log)
        summaries = None
        if task.stream:
            summaries = analyze_stream([os.path.abspath(n) for n in task.stream], sink, config, progress)
            for summary, name in zip(summaries, task.stream):
                summary.name = name
            summary = summaries[0]
        else:
            summary = analyze_file(task.path, sink, config, progress)
        result = TaskResult(task.index, summary, shard=task.shard, summaries=summaries)
        if log is not None:
            log.close()
            result.part = stream.getvalue() if isinstance(stream, io.BytesIO) else None
            result.flow_rows, result.event_rows = log.flows, log.events
        if parquet is not None:
            result.flows, result.events = parquet.finish()
            result.flow_rows, result.event_rows = parquet.flows.rows, parquet.events.rows
    except BaseException:
        if parquet is not None:
            parquet.abort()
        raise
    finally:
        if stream is not None:
            stream.close()
    if not task.stream:
        summary.name = task.name
    return result


def failed_result(task: Task, kind: str, message: str) -> TaskResult:
    summary = FileSummary(name=task.name)
    summary.issues.append(CaptureIssue(kind, 0, message))
    return TaskResult(task.index, summary, ok=False, shard=task.shard)


def _error_text(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" ({os.path.basename(where.filename)}:{where.lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


# -- local worker processes -----------------------------------------------------------------------------------
_queue: Any = None  # in a pool worker: where progress goes
_crash_for: str | None = None  # tests (CRASH_HOOK, read by the parent: forkserver workers do not see its env)
_tuned = False
SUBMIT_RETRIES = 3  # fresh pools tried for one file that no pool accepts before it is reported as failed
# Files submitted ahead of the workers: at least two per worker, more while they are small (a file of a few KB
# takes ~4 ms, less than a result's round trip through the parent, so two ahead left the workers waiting). The
# bytes bound what the parent may hold: parts that finish before an earlier file wait to be replayed in order.
AHEAD_FILES, AHEAD_BYTES = 32, 64 << 20


def _worker_init(queue: Any, crash_for: str | None = None) -> None:
    global _queue, _crash_for
    _queue = queue
    _crash_for = crash_for


def _pool_task(task: Task, spec: RunSpec) -> TaskResult:
    """The pool worker's entry: analyse one file, reporting bytes read to the parent now and then."""
    global _tuned
    if _crash_for and os.path.basename(task.path) == _crash_for:
        os._exit(70)  # tests: a worker dying in native code
    if not _tuned:  # as the CLI does: long-lived objects frozen, young ones collected less often
        build_config(spec)
        gc.freeze()
        gc.set_threshold(100_000, 20, 100)
        _tuned = True
    if _queue is None or task.shard:  # the shards of a file read it all: shard 0 reports progress
        return analyze_task(task, spec)
    pending = [0]

    def report(n: int) -> None:
        pending[0] += n
        if pending[0] >= PROGRESS_STEP:
            _queue.put((task.index, pending[0]))
            pending[0] = 0

    return analyze_task(task, spec, report)


def default_mp_context() -> str:
    return "forkserver" if "forkserver" in mp.get_all_start_methods() and sys.platform != "darwin" else "spawn"


class _LocalPool:
    """A ProcessPoolExecutor that survives a worker's death: the files in flight are rerun alone to find the
    one that killed it."""

    def __init__(self, jobs: int, method: str, with_progress: bool):
        self.jobs = jobs
        self.ctx = mp.get_context(method)
        if method == "forkserver":
            self.ctx.set_forkserver_preload(["nvpcap.executor", "nvpcap.rules", "nvpcap.protocols.registry"])
        self.queue = self.ctx.SimpleQueue() if with_progress else None
        self.pool: ProcessPoolExecutor | None = None  # made when a file is to be submitted (see _new)

    def _new(self, workers: int) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=self.ctx, initializer=_worker_init,
                                   initargs=(self.queue, os.environ.get(CRASH_HOOK)))
        # Start every worker now (each would be started by a submit() anyway: a pool has at most one worker per
        # file). Started from submit(), a worker can come up while the executor tears a broken pool down (another
        # worker died): its start fails (EBADF), or it is missed by the teardown, which then waits for it for
        # ever (CPython 3.11's concurrent/futures/process.py: terminate_broken, then join_executor_internals).
        # With every worker up, submit() never starts one. (A private method, present in 3.11 to 3.13; without
        # it the pool starts workers as before.)
        launch = getattr(pool, "_launch_processes", None)
        if launch is not None:
            launch()
        return pool

    def drain(self) -> list[tuple[int, int]]:
        out = []
        while self.queue is not None and not self.queue.empty():
            out.append(self.queue.get())
        return out

    def run(self, tasks: list[Task], spec: RunSpec, done: Callable[[TaskResult], None],
            progress: Callable[[int, int], None] | None) -> None:
        pending = deque(tasks)
        inflight: dict[Future, Task] = {}
        sizes = {id(t): file_size(t.path) or 0 for t in tasks}
        refused = 0  # submissions refused in a row by a fresh pool
        try:
            while pending or inflight:
                while pending and self._room(inflight, sizes):
                    t = pending.popleft()
                    try:
                        if self.pool is None:
                            self.pool = self._new(self.jobs)
                        inflight[self.pool.submit(_pool_task, t, spec)] = t
                        refused = 0
                    except (BrokenProcessPool, OSError) as exc:
                        # A worker died since the last wait (its files are found below). While the executor
                        # tears the broken pool down, starting a replacement worker can also fail with
                        # OSError (EBADF: the pool's pipes closed under the forkserver hand-over).
                        if not inflight:  # none in flight to find it by: a fresh pool, a few times at most
                            refused += 1
                            self._drop()
                            if refused > SUBMIT_RETRIES:
                                done(failed_result(t, "internal-error", "could not start a worker process: "
                                                   f"{_error_text(exc)}"))
                                refused = 0
                                continue
                        pending.appendleft(t)
                        break
                finished, _ = wait(inflight, timeout=0.2 if self.queue is not None else None,
                                   return_when=FIRST_COMPLETED)
                for index, n in self.drain():
                    if progress is not None:
                        progress(index, n)
                suspects: list[Task] = []
                for fut in finished:
                    t = inflight.pop(fut)
                    result = self._result(fut, t, suspects)
                    if result is not None:
                        done(result)
                if suspects:  # the pool is broken: every file in flight failed with it
                    for fut in list(inflight):
                        t = inflight.pop(fut)
                        result = self._result(fut, t, suspects)
                        if result is not None:
                            done(result)
                    self._drop()
                    for t in sorted(suspects, key=lambda t: t.index):
                        done(self._alone(t, spec))
        finally:
            self._drop(cancel=True)

    def _room(self, inflight: dict[Future, Task], sizes: dict[int, int]) -> bool:
        """Whether one more file may be submitted (AHEAD_FILES, AHEAD_BYTES)."""
        n = len(inflight)
        if n < 2 * self.jobs:  # each worker has its next file queued while the parent feeds parts
            return True
        return n < AHEAD_FILES * self.jobs and sum(sizes[id(t)] for t in inflight.values()) < AHEAD_BYTES

    def _drop(self, cancel: bool = False) -> None:
        """Shut the pool down; the next file submitted makes a new one. (A pool made and shut down before any
        submit would stop its workers while they still start, and they would print errors.)"""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pool = None

    @staticmethod
    def _result(fut: Future, t: Task, suspects: list[Task]) -> TaskResult | None:
        try:
            return fut.result()
        except BrokenProcessPool:
            suspects.append(t)
            return None
        except Exception as exc:  # noqa: BLE001 - one file's failure must not end the run
            return failed_result(t, "internal-error", f"analysis failed in a worker: {_error_text(exc)}; "
                                 "please report this with the capture")

    def _alone(self, t: Task, spec: RunSpec) -> TaskResult:
        pool = self._new(1)
        try:
            return pool.submit(_pool_task, t, spec).result()
        except BrokenProcessPool:
            return failed_result(t, "worker-crash", "the worker process analysing this file died (a crash in "
                                 "native code, or killed, e.g. by the out-of-memory killer); its records are "
                                 "missing, the other files were analysed")
        except Exception as exc:  # noqa: BLE001
            return failed_result(t, "internal-error", f"analysis failed in a worker: {_error_text(exc)}; "
                                 "please report this with the capture")
        finally:
            pool.shutdown(wait=True)


# -- Dask -----------------------------------------------------------------------------------------------------
def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ValueError("--executor dask needs Dask's distributed scheduler: pip install 'nvpcap[dask]' "
                         "(or pip install 'dask[distributed]')") from None
    return distributed


def _run_dask(tasks: list[Task], spec: RunSpec, jobs: int, scheduler: Any, done: Callable[[TaskResult], None],
              log: Callable[[str], None] | None) -> None:
    distributed = _dask()
    owned: list[Any] = []
    if scheduler is None:
        cluster = distributed.LocalCluster(n_workers=max(jobs, 1), threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        owned = [client, cluster]
    elif isinstance(scheduler, str):
        client = distributed.Client(scheduler)
        owned = [client]
    else:
        client = scheduler  # a distributed.Client the caller owns
    try:
        threads = sum(client.nthreads().values()) or max(jobs, 1)
        if log is not None and scheduler is not None:
            log(f"dask: {len(client.nthreads())} worker(s), {threads} thread(s) at {client.scheduler.address}")
        window = 2 * threads  # tasks submitted ahead: bounds the parts held (on workers and here)
        pending = deque(tasks)
        token = os.urandom(4).hex()
        running = distributed.as_completed()
        by_key: dict[str, Task] = {}

        def submit() -> None:
            while pending and len(by_key) < window:
                t = pending.popleft()
                fut = client.submit(analyze_task, t, spec, key=f"nvpcap-analyze-{t.index}-{token}", pure=False)
                by_key[fut.key] = t
                running.add(fut)

        submit()
        for fut in running:
            t = by_key.pop(fut.key)
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker (the file killed its worker) and the like
                kind = "worker-crash" if type(exc).__name__ == "KilledWorker" else "internal-error"
                result = failed_result(t, kind, f"analysis failed on a Dask worker: {_error_text(exc)}")
            fut.release()
            done(result)
            submit()
    finally:
        for obj in owned:
            obj.close()


def check_executor(executor: str) -> None:
    """ValueError (a usage error: exit 2) for an unknown executor, or for Dask when it is not installed; call it
    before opening the output, so a usage error leaves no empty output behind."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r} (one of {', '.join(EXECUTORS)})")
    if executor == "dask":
        _dask()


# -- the run --------------------------------------------------------------------------------------------------
def run_inputs(names: list[str], spec: RunSpec, sink: Any, jobs: int = 1, executor: str = "local",
               scheduler: Any = None, progress: Callable[[int], None] | None = None, *,
               on_file: Callable[[FileSummary], None] | None = None, log: Callable[[str], None] | None = None,
               tee: Any = None, mp_context: str | None = None, tmp_dir: str | None = None,
               shard_min_bytes: int = SHARD_MIN_BYTES) -> list[FileSummary]:
    """Analyse `names` (in this order: give it `order_inputs`' order) into `sink`; one FileSummary per input, in
    the same order. The records reach the sink as a serial run writes them, whatever `jobs` and `executor`.

    jobs: worker processes (1 = the serial loop in this process). executor: "local" or "dask"; with "dask",
    `scheduler` is a scheduler address, a `distributed.Client`, or None for a LocalCluster of `jobs` workers.
    progress(n): n more input bytes read. on_file(summary): a file is done (completion order). log(text): what the
    run decided (files skipped by resume, ...). Raises ValueError for a bad executor or a missing Dask.
    A `PartitionedParquetSink` gets one pair of part files per input, written by the workers, and resumes; `tee`
    (e.g. the `--report` collector) then also gets every record of the inputs analysed in this run, in input
    order, as a plain sink would (inputs skipped by resume are not analysed, so they are not in it).
    A file of at least `shard_min_bytes` whose share of the input bytes is worth two jobs or more (local
    executor) is split across that many workers by address pair (`_shards`, session/shard.py): the same
    records as a serial run, the file's in shard order, and one merged summary (a partitioned folder still gets
    one pair of parts for it: the shards' files concatenated).
    """
    check_executor(executor)
    jobs = max(int(jobs), 1)
    partitioned = bool(getattr(sink, "partitioned", False))
    if tee is not None and not partitioned:
        raise ValueError("run_inputs: `tee` is for a partitioned sink; wrap any other sink instead")
    target = tee if partitioned else sink  # what the part logs are replayed into, in input order
    summaries: list[FileSummary | None] = [None] * len(names)
    config = None

    def finish(index: int, summary: FileSummary) -> None:
        summaries[index] = summary
        if on_file is not None:
            on_file(summary)

    # inputs split across workers (a partitioned folder's: among those not skipped by resume, below)
    shards = {} if partitioned else _shards(names, spec, jobs, executor, shard_min_bytes)
    # serial: today's loop
    if executor == "local" and (jobs == 1 or len(names) <= 1) and not partitioned and not shards:
        config = build_config(spec)
        for i, name in enumerate(names):
            finish(i, analyze_file(name, sink, config, progress=progress))
        return summaries  # type: ignore[return-value]

    digest = spec.digest() if partitioned else ""
    plans: dict[int, Any] = {}
    tasks: list[Task] = []
    local = []  # inputs analysed in this process: standard input (a worker cannot read it)
    for i, name in enumerate(names):
        path = name if name == STDIN_NAME else os.path.abspath(name)
        if partitioned:
            plan = sink.plan(i, name, digest)
            if plan.skip:
                if log is not None:
                    log(f"{name}: skipped, its parts are complete and the file is unchanged"
                        + (f" (renamed to {os.path.basename(plan.flows_path)})" if plan.moved else ""))
                if progress is not None:
                    progress(file_size(name) or 0)
                finish(i, summary_from_dict(plan.summary))
                continue
            plans[i] = plan
            continue
        if i in shards:
            tasks += [Task(i, name, path, shard=k, shards=shards[i]) for k in range(shards[i])]
            continue
        else:
            task = Task(i, name, path)
        (local if name == STDIN_NAME else tasks).append(task)
    shard_dir = None  # a partitioned folder's: the shards' part files, until they are one part
    if partitioned:
        shards = _shards(names, spec, jobs, executor, shard_min_bytes, only=plans)
        if shards:
            shard_dir = tempfile.mkdtemp(prefix=".nvpcap-shards-", dir=sink.dir)
        for i, plan in plans.items():
            tasks_i = _parquet_tasks(i, names[i], plan, shards.get(i, 1), executor == "dask", tee is not None,
                                     shard_dir)
            (local if names[i] == STDIN_NAME else tasks).extend(tasks_i)
    if partitioned and tee is not None and log is not None and len(tasks) + len(local) < len(names):
        log(f"{len(names) - len(tasks) - len(local)} input(s) skipped by resume are not in the report "
            "(--no-resume analyses them again)")
    if partitioned and log is not None:
        others = sink.others(names)
        if others:
            log(f"{sink.dir}: keeps the parts of {len(others)} input(s) from earlier runs that are not in this one "
                "(they are part of the dataset; delete them or use a new directory)")

    reported: dict[int, int] = {}

    def advanced(index: int, n: int) -> None:
        reported[index] = reported.get(index, 0) + n
        if progress is not None:
            progress(n)

    replaying = target is not None
    tmp = tempfile.mkdtemp(prefix="nvpcap-parts-", dir=tmp_dir) if replaying else None
    ready: dict[tuple[int, int], TaskResult] = {}
    order = sorted((t.index, t.shard) for t in tasks + (local if partitioned else []))
    cursor = [0]
    shard_summaries: dict[int, list[FileSummary]] = {}
    shard_results: dict[int, list[TaskResult]] = {}  # partitioned: an input's results until all are in

    def finish_shard(result: TaskResult) -> None:
        """A file split across workers is finished when its last shard is: one merged summary."""
        n = shards.get(result.index, 1)
        if n == 1:
            finish(result.index, result.summary)
            return
        parts = shard_summaries.setdefault(result.index, [])
        parts.append(result.summary)
        if len(parts) == n:
            del shard_summaries[result.index]
            merged = merge_shards(parts)
            merged.name = names[result.index]
            finish(result.index, merged)

    def feed() -> None:
        """Replay the parts that are next in input order into the user's sink (or the tee)."""
        from .output.parts import replay, replay_bytes

        while cursor[0] < len(order) and order[cursor[0]] in ready:
            result = ready.pop(order[cursor[0]])
            cursor[0] += 1
            path = os.path.join(tmp, _part_name(result.index, result.shard))  # type: ignore[arg-type]
            if result.ok:
                if result.part is not None:
                    replay_bytes(result.part, target)
                else:
                    with open(path, "rb") as fh:
                        replay(fh, target)
            if os.path.exists(path):
                os.unlink(path)
            finish_shard(result)

    def done(result: TaskResult) -> None:
        size = result.summary.bytes_read or (file_size(names[result.index]) or 0)
        rest = size - reported.get(result.index, 0)
        if rest > 0 and result.shard == 0:
            advanced(result.index, rest)
        if partitioned:
            group = shard_results.setdefault(result.index, [])
            group.append(result)
            if len(group) == shards.get(result.index, 1):
                del shard_results[result.index]
                summary = _store_parts(sink, plans[result.index], group, digest, shard_dir)
                if not replaying:
                    finish(result.index, summary)
            if not replaying:
                return
        ready[(result.index, result.shard)] = result
        feed()

    try:
        for t in local:  # standard input, first in order: straight into the sink (or its parts), here
            if partitioned:
                t.part_path = os.path.join(tmp, _part_name(t.index)) if replaying else None  # type: ignore[arg-type]
                done(analyze_task(t, spec, progress))
            else:
                config = config or build_config(spec)
                finish(t.index, analyze_file(t.name, sink, config, progress=progress))
        if replaying:
            for t in tasks:
                if executor != "dask":
                    t.part_path = os.path.join(tmp, _part_name(t.index, t.shard))  # type: ignore[arg-type]
        if executor == "dask":
            _run_dask(tasks, spec.absolute(), jobs, scheduler, done, log)
        elif jobs == 1 or len(tasks) <= 1:
            for t in tasks:
                try:
                    result = analyze_task(t, spec, lambda n, i=t.index: advanced(i, n))
                except Exception as exc:  # noqa: BLE001 - as in a worker: this file fails, the run goes on
                    result = failed_result(t, "internal-error", f"analysis failed: {_error_text(exc)}")
                done(result)
        else:
            pool = _LocalPool(min(jobs, len(tasks)), mp_context or default_mp_context(), progress is not None)
            pool.run(tasks, spec, done, advanced)
        feed()
    finally:
        for path in (tmp, shard_dir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)
    return summaries  # type: ignore[return-value]


def run_stream(names: list[str], spec: RunSpec, sink: Any, jobs: int = 1,
               progress: Callable[[int], None] | None = None, *, mp_context: str | None = None,
               tmp_dir: str | None = None, shard_min_bytes: int = SHARD_MIN_BYTES) -> list[FileSummary]:
    """`--stream`: `names` (in time order) read as one capture (pipeline.analyze_stream). With jobs > 1 and at
    least `shard_min_bytes` in all, the stream is split by address pair (session/shard.py): each of `jobs`
    workers reads every file and owns its pairs' flows; their parts are replayed shard after shard and each
    file's summaries merged. The records are those of the serial stream run, in another order."""
    total = sum(file_size(n) or 0 for n in names)
    if STDIN_NAME in names or _workers(total, total, jobs, spec, shard_min_bytes) < 2:
        return analyze_stream(names, sink, build_config(spec), progress=progress)
    from .output.parts import replay

    tmp = tempfile.mkdtemp(prefix="nvpcap-parts-", dir=tmp_dir)
    tasks = [Task(0, names[0], "", part_path=os.path.join(tmp, _part_name(0, k)), shard=k, shards=jobs,
                  stream=tuple(names)) for k in range(jobs)]
    results: dict[int, TaskResult] = {}
    reported = [0]

    def advanced(_index: int, n: int) -> None:
        reported[0] += n
        if progress is not None:
            progress(n)

    try:
        pool = _LocalPool(jobs, mp_context or default_mp_context(), progress is not None)
        pool.run(tasks, spec, lambda r: results.__setitem__(r.shard, r), advanced)
        if progress is not None and total > reported[0]:
            progress(total - reported[0])
        for task in tasks:
            if results[task.shard].ok:
                with open(task.part_path, "rb") as fh:  # type: ignore[arg-type]
                    replay(fh, sink)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ordered = [results[k] for k in range(jobs)]
    return [_stream_summary(j, name, ordered) for j, name in enumerate(names)]


def _stream_summary(j: int, name: str, results: list[TaskResult]) -> FileSummary:
    """File j's summary from every shard of a split stream run; a failed shard's issue is the file's too."""
    parts = [r.summaries[j] for r in results if r.ok and r.summaries]
    merged = merge_shards(parts) if parts else FileSummary(name=name)
    merged.name = name
    for r in results:
        if not r.ok:
            merged.issues += [i for i in r.summary.issues if i not in merged.issues]
    return merged


def _parquet_tasks(index: int, name: str, plan: Any, shards: int, remote: bool, tee: bool,
                   shard_dir: str | None) -> list[Task]:
    """The tasks writing one input's parts: the plan's two files (or bytes, for Dask), or one pair per shard
    in `shard_dir`, made one part when all are in (`_store_parts`)."""
    path = name if name == STDIN_NAME else os.path.abspath(name)
    if shards == 1:
        return [Task(index, name, path, "parquet", flows_path=None if remote else plan.flows_path,
                     events_path=None if remote else plan.events_path, tee=tee)]
    return [Task(index, name, path, "parquet", flows_path=_shard_part(shard_dir, index, k, "flows"),
                 events_path=_shard_part(shard_dir, index, k, "events"), tee=tee, shard=k, shards=shards)
            for k in range(shards)]


def _shard_part(shard_dir: str | None, index: int, shard: int, kind: str) -> str:
    return os.path.join(shard_dir or "", f"{index}.{shard}.{kind}.parquet")


def _store_parts(sink: Any, plan: Any, group: list[TaskResult], digest: str, shard_dir: str | None) -> FileSummary:
    """All results of one input are in: its part files completed (a split input's shards concatenated in shard
    order, events first as a worker does: a flows part under its real name means the pair is complete) and
    committed to the manifest, unless a task failed. Returns the input's summary."""
    from .output.parquet import concat_parts, event_schema, flow_schema

    group.sort(key=lambda r: r.shard)
    summary = merge_shards([r.summary for r in group]) if len(group) > 1 else group[0].summary
    summary.name = plan.name
    if len(group) > 1:
        shard_files = {kind: [_shard_part(shard_dir, plan.index, r.shard, kind) for r in group]
                       for kind in ("events", "flows")}
        if all(r.ok for r in group):
            concat_parts(shard_files["events"], plan.events_path, event_schema())
            concat_parts(shard_files["flows"], plan.flows_path, flow_schema())
        for path in shard_files["events"] + shard_files["flows"]:
            if os.path.exists(path):
                os.unlink(path)
    elif group[0].ok and group[0].flows is not None:
        sink.store(plan, group[0].flows, group[0].events)
    if all(r.ok for r in group):
        sink.commit(plan, digest, summary_to_dict(summary), sum(r.flow_rows for r in group),
                    sum(r.event_rows for r in group))
    return summary


def _shards(names: list[str], spec: RunSpec, jobs: int, executor: str, min_bytes: int,
            only: Iterable[int] | None = None) -> dict[int, int]:
    """Input index -> workers sharing that file: a file of at least `min_bytes` gets the jobs its share of the
    input bytes is worth (jobs * size / total, rounded down), when that is two or more. `only`: the inputs to be
    analysed (a partitioned folder's, those resume does not skip). Only on the local executor (every worker
    reads the whole file), with payload inspection on (--flows-only has little to split)."""
    if executor != "local":
        return {}
    keep = set(range(len(names)) if only is None else only)
    sizes = {i: file_size(name) or 0 for i, name in enumerate(names) if name != STDIN_NAME and i in keep}
    total = sum(sizes.values())
    return {i: n for i, size in sizes.items() if (n := _workers(size, total, jobs, spec, min_bytes)) > 1}


def _workers(size: int, total: int, jobs: int, spec: RunSpec, min_bytes: int) -> int:
    """Workers an input of `size` bytes (of `total` in the run) is worth splitting across: its share of the jobs,
    jobs * size // total, when that is two or more and the input has `min_bytes`; else 1."""
    if spec.flows_only or jobs < 2 or size < min_bytes or not total:
        return 1
    share = min(jobs * size // total, jobs)
    return share if share >= 2 else 1


def _part_name(index: int, shard: int = 0) -> str:
    return f"{index}.{shard}.part"


def make_sink(fmt: str, output: str | None, deterministic: bool = False, resume: bool = True) -> Any:
    """The sink `analyze` writes to: partitioned Parquet for `--format parquet -o DIR/` (a directory: a name
    ending in a separator, or an existing directory), otherwise what `open_sink` gives; `--deterministic` wraps
    the writer (and keeps the single-file Parquet layout: it sorts the whole run's records)."""
    if deterministic:
        from .output.deterministic import DeterministicSink

        return DeterministicSink(fmt, output)
    if fmt == "parquet" and output not in (None, "-") and (output.endswith(("/", os.sep)) or os.path.isdir(output)):
        from .output.parquet import PartitionedParquetSink

        return PartitionedParquetSink(output, resume=resume)
    from .output import open_sink

    return open_sink(fmt, output)


__all__ = ["EXECUTORS", "RunSpec", "Task", "TaskResult", "analyze_task", "build_config", "check_executor", "make_sink",
           "rule_problems", "run_inputs", "run_stream", "summary_from_dict", "summary_to_dict"]
