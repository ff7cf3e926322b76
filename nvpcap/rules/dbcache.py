"""Compiled Hyperscan databases kept on disk between runs, so a run (and each `-j` worker) loads them instead of
compiling: the bundled packs compile in ~0.3 s, a ~500-rule set with OWASP CRS in several seconds.

A database is stored under the hash of everything its compilation depends on (this format, the Hyperscan
version, the CPU it was compiled for, the mode, the patterns, their ids and flags), so a changed rule set or
machine never loads a stale one. Files are written under a temporary name and renamed; each carries the SHA-256
of its contents, checked before the bytes reach Hyperscan's deserializer (which trusts its input). Any failure
(unreadable or foreign file, full disk, a directory that cannot be created) falls back to compiling, silently:
the cache only saves time. The directory is `$NVPCAP_CACHE_DIR`, else `$XDG_CACHE_HOME/nvpcap/hyperscan`, else
`~/.cache/nvpcap/hyperscan`; `NVPCAP_CACHE_DIR=off` turns the cache off. It is kept under MAX_BYTES, least
recently used files first. Beside the databases, `verdict` remembers whether Hyperscan takes each pattern alone
(rules/regex.py asks for every pattern of a rule set: ~3 ms each, 1.4 s of a ~500-rule build).

python-hyperscan 0.9.1 returns a deserialized database without scratch space (scanning it fails with "error
code -1"): `load` allocates it. Such a database then scans as a compiled one (tests/test_dbcache.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import write_atomic

try:  # optional, as in rules/regex.py (which imports this module)
    import hyperscan
except ImportError:  # pragma: no cover - exercised when hyperscan is not installed
    hyperscan = None  # type: ignore[assignment]

CACHE_ENV = "NVPCAP_CACHE_DIR"
FORMAT = b"nvpcap-hsdb-1\n"
MAX_BYTES = 256 << 20
_SUFFIX = ".hsdb"


def cache_dir() -> Path | None:
    """Where compiled databases go, or None when the cache is off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "none") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nvpcap" / "hyperscan"


def _cpu() -> str:
    """The CPU features a database is compiled for (Hyperscan targets the host): the flags of /proc/cpuinfo on
    Linux, else what `platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


_host: list[bytes] = []  # the Hyperscan build and the CPU, read once


def _host_id() -> bytes:
    if not _host:
        _host.append(f"{getattr(hyperscan, '__version__', '?')}|{_cpu()}".encode())
    return _host[0]


def database_key(mode: int, expressions: list[bytes], ids: list[int], flags: list[int]) -> str:
    h = hashlib.sha256(FORMAT + _host_id() + repr(mode).encode())
    for expr, pid, flag in zip(expressions, ids, flags):
        h.update(len(expr).to_bytes(4, "little") + expr + pid.to_bytes(8, "little", signed=True)
                 + flag.to_bytes(8, "little", signed=True))
    return h.hexdigest()


def compiled(mode: int, expressions: list[bytes], ids: list[int], flags: list[int]) -> Any:
    """A Hyperscan database of these patterns: from the cache when it holds it, else compiled (and stored)."""
    folder = cache_dir()
    path = folder / (database_key(mode, expressions, ids, flags) + _SUFFIX) if folder else None
    if path is not None:
        db = load(path, mode)
        if db is not None:
            return db
    db = hyperscan.Database(mode=mode)
    db.compile(expressions=expressions, ids=ids, flags=flags)
    if path is not None:
        store(path, db)
    return db


def load(path: Path, mode: int) -> Any | None:
    """The database in `path` with its scratch space, or None (missing, damaged, from another Hyperscan)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(FORMAT) + 32
    if len(data) <= head or not data.startswith(FORMAT) or hashlib.sha256(data[head:]).digest() != \
            data[len(FORMAT):head]:
        return None
    try:
        db = hyperscan.loadb(data[head:], mode)
        db.scratch = hyperscan.Scratch(db)
    except Exception:  # noqa: BLE001 - any refusal (platform, version) means: compile instead
        return None
    try:
        os.utime(path)  # recently used: kept when the cache is trimmed
    except OSError:
        pass
    return db


def store(path: Path, db: Any) -> None:
    """Write `db` to `path` (temporary name, then rename), then trim the cache; failures are ignored."""
    try:
        payload = hyperscan.dumpb(db)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(str(path), FORMAT + hashlib.sha256(payload).digest() + payload)
        trim(path.parent)
    except Exception:  # noqa: BLE001 - the cache only saves time
        return


def trim(folder: Path, limit: int = MAX_BYTES) -> None:
    """Delete the least recently used databases until the folder holds at most `limit` bytes."""
    files = []
    for entry in os.scandir(folder):
        if entry.name.endswith(_SUFFIX) and entry.is_file():
            st = entry.stat()
            files.append((st.st_mtime, st.st_size, entry.path))
    total = sum(size for _, size, _ in files)
    for _, size, path in sorted(files):
        if total <= limit:
            break
        try:
            os.unlink(path)
            total -= size
        except OSError:
            pass


# -- verdicts: whether Hyperscan takes a pattern alone (rules/regex.py asks for each pattern of a rule set) -----
MAX_VERDICT_BYTES = 16 << 20
_verdicts: dict[str, dict[str, str | None]] = {}  # verdict file -> its entries, read once per process


def verdict(pattern: bytes, flags: int, compute: Callable[[], str | None]) -> str | None:
    """`compute()` (Hyperscan's complaint about `pattern` compiled alone, or None), remembered on disk: one
    JSON line per pattern in a file of this Hyperscan build and CPU, appended as verdicts are made (a torn line
    of an interrupted run is skipped; the file starts afresh past MAX_VERDICT_BYTES)."""
    folder = cache_dir()
    if folder is None:
        return compute()
    path = folder / f"verdicts-{hashlib.sha256(FORMAT + _host_id()).hexdigest()[:16]}.jsonl"
    table = _verdicts.get(str(path))
    if table is None:
        table = _verdicts[str(path)] = _read_verdicts(path)
    key = hashlib.sha256(flags.to_bytes(8, "little", signed=True) + pattern).hexdigest()
    if key in table:
        return table[key]
    table[key] = found = compute()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"k": key, "v": found}) + "\n")
    except OSError:
        pass
    return found


def _read_verdicts(path: Path) -> dict[str, str | None]:
    table: dict[str, str | None] = {}
    try:
        if path.stat().st_size > MAX_VERDICT_BYTES:
            path.unlink()
            return table
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                    key, value = entry["k"], entry["v"]
                except (ValueError, KeyError, TypeError):
                    continue
                if isinstance(key, str) and (value is None or isinstance(value, str)):
                    table[key] = value
    except OSError:
        pass
    return table
