"""Compiled Hyperscan databases cached on disk (nvpcap/rules/dbcache.py): loaded instead of compiled, scanning
exactly as compiled ones (block and stream mode), never trusted when damaged, bounded in size, and off on request."""
from __future__ import annotations

import os

import pytest

import pcapgen as g
from conftest import Result, run
from nvpcap.pipeline import AnalyzeConfig
from nvpcap.protocols.applayer import AppLayerConfig
from nvpcap.rules import build_engine, dbcache
from sitegen import tcp_exchange

hyperscan = pytest.importorskip("hyperscan")

EXPRESSIONS = [rb"foo\d+", rb"\bbar\b", rb"4[0-9]{12}(?:[0-9]{3})?"]
IDS = [1, 2, 3]
FLAGS = [hyperscan.HS_FLAG_CASELESS, 0, hyperscan.HS_FLAG_SINGLEMATCH]
DATA = [b"xxFOO12 bar", b"-4111111111111111-", b"nothing here", b"barfoo7 bar"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(dbcache.CACHE_ENV, str(tmp_path / "hs"))
    return tmp_path / "hs"


def _block_hits(db) -> list:
    out: list = []

    def on_match(pid, _start, end, _flags, _ctx):  # named: the binding borrows the callback (backends.py)
        out.append((pid, end))

    for data in DATA:
        db.scan(data, match_event_handler=on_match)
    return out


def _stream_hits(db) -> list:
    out: list = []

    def on_match(pid, _start, end, _flags, _ctx):
        out.append((pid, end))

    stream = db.stream(match_event_handler=on_match)
    stream.__enter__()
    for data in DATA:
        stream.scan(data)
    stream.close()
    return out


@pytest.mark.parametrize("mode", ["block", "stream"])
def test_a_loaded_database_scans_as_the_compiled_one(cache, monkeypatch, mode):
    hs_mode = hyperscan.HS_MODE_BLOCK if mode == "block" else hyperscan.HS_MODE_STREAM
    hits = _block_hits if mode == "block" else _stream_hits
    first = dbcache.compiled(hs_mode, EXPRESSIONS, IDS, FLAGS)
    files = list(cache.glob("*.hsdb"))
    assert len(files) == 1
    loaded = []
    real_load = dbcache.load
    monkeypatch.setattr(dbcache, "load", lambda path, m: loaded.append(real_load(path, m)) or loaded[-1])
    second = dbcache.compiled(hs_mode, EXPRESSIONS, IDS, FLAGS)
    assert loaded and loaded[0] is second  # loaded, not compiled
    assert hits(second) == hits(first) != []


def test_another_rule_set_or_mode_is_another_file(cache):
    dbcache.compiled(hyperscan.HS_MODE_BLOCK, EXPRESSIONS, IDS, FLAGS)
    dbcache.compiled(hyperscan.HS_MODE_STREAM, EXPRESSIONS, IDS, FLAGS)
    dbcache.compiled(hyperscan.HS_MODE_BLOCK, EXPRESSIONS, [1, 2, 4], FLAGS)
    dbcache.compiled(hyperscan.HS_MODE_BLOCK, EXPRESSIONS[:2], IDS[:2], FLAGS[:2])
    assert len(list(cache.glob("*.hsdb"))) == 4


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "foreign"])
def test_a_damaged_file_is_never_loaded_and_is_replaced(cache, damage):
    dbcache.compiled(hyperscan.HS_MODE_STREAM, EXPRESSIONS, IDS, FLAGS)
    (path,) = cache.glob("*.hsdb")
    data = path.read_bytes()
    damaged = {"flip": data[:-5] + bytes([data[-5] ^ 0x40]) + data[-4:], "truncate": data[: len(data) // 2],
               "empty": b"", "foreign": b"\xdb\xdb\xdb\xdb" + data[4:]}[damage]
    path.write_bytes(damaged)
    assert dbcache.load(path, hyperscan.HS_MODE_STREAM) is None
    db = dbcache.compiled(hyperscan.HS_MODE_STREAM, EXPRESSIONS, IDS, FLAGS)  # compiled again, and stored
    assert _stream_hits(db) != []
    assert path.read_bytes() == data or dbcache.load(path, hyperscan.HS_MODE_STREAM) is not None


def test_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(dbcache.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert dbcache.cache_dir() is None
    assert _block_hits(dbcache.compiled(hyperscan.HS_MODE_BLOCK, EXPRESSIONS, IDS, FLAGS))
    assert not list(tmp_path.rglob("*.hsdb"))


def test_default_place_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv(dbcache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert dbcache.cache_dir() == tmp_path / "nvpcap" / "hyperscan"


def test_an_unwritable_place_only_costs_the_saving(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(dbcache.CACHE_ENV, str(blocker / "hs"))
    assert _block_hits(dbcache.compiled(hyperscan.HS_MODE_BLOCK, EXPRESSIONS, IDS, FLAGS))


def test_trim_drops_the_least_recently_used(tmp_path):
    for i in range(5):
        path = tmp_path / f"{i}.hsdb"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "other.txt").write_bytes(b"y" * 1000)  # not a database: never touched
    dbcache.trim(tmp_path, limit=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.hsdb", "4.hsdb", "other.txt"]


def test_the_engine_gives_the_same_alerts_from_the_cache(cache, tmp_path):
    """The bundled packs built twice (the second time every database is loaded): the same records, alerts in."""
    request = b"GET /q?id=1%27%20OR%201%3D1-- HTTP/1.1\r\nHost: a\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nkey AKIAIOSFODNN7EXAMPLE ssn 123-45-6789."
    capture = g.write(tmp_path / "leak.pcap", tcp_exchange("10.0.0.1", 40000, "10.0.0.2", 80, 1.7e9, request,
                                                           response))

    def analyse() -> Result:
        engine, problems = build_engine([], bundled=True)
        assert not problems
        return run(capture, AnalyzeConfig(app=AppLayerConfig(rules=engine)))

    cold = analyse()
    assert list(cache.glob("*.hsdb"))
    warm = analyse()
    assert len(cold.alerts()) >= 2
    assert warm.events == cold.events
    assert warm.flows.equals(cold.flows)


def test_verdicts_are_made_once_and_remembered_across_runs(cache, monkeypatch):
    calls: list[int] = []

    def complaint() -> str | None:
        calls.append(1)
        return "bad pattern"

    assert dbcache.verdict(b"a(?=b)", 7, complaint) == "bad pattern"
    assert dbcache.verdict(b"a(?=b)", 7, complaint) == "bad pattern"
    assert dbcache.verdict(b"a(?=b)", 8, lambda: None) is None  # other flags: another verdict
    assert len(calls) == 1
    monkeypatch.setattr(dbcache, "_verdicts", {})  # a new process: read from the file
    (path,) = cache.glob("verdicts-*.jsonl")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"k": "torn')  # an interrupted run's last line
    assert dbcache.verdict(b"a(?=b)", 7, complaint) == "bad pattern"
    assert dbcache.verdict(b"a(?=b)", 8, complaint) is None
    assert len(calls) == 1


def test_regex_verdicts_match_hyperscan_with_and_without_the_cache(cache, monkeypatch):
    from nvpcap.rules.regex import hyperscan_error

    patterns = [r"abc\d+", r"(a)\1", r"foo(?=bar)", r"x{2,5}y"]
    warm = [hyperscan_error(p) for p in patterns]
    monkeypatch.setattr(dbcache, "_verdicts", {})
    assert [hyperscan_error(p) for p in patterns] == warm
    monkeypatch.setenv(dbcache.CACHE_ENV, "off")
    assert [hyperscan_error(p) for p in patterns] == warm
    assert warm[0] is None and warm[1] is not None  # a back-reference: Hyperscan refuses it
