"""Framer.feed's fast path (`_whole`: the messages that lie whole in a chunk, handled straight from it) against
the general path (push's generator, as feed read every chunk before): the same handler calls with the same
framer state, the same results and the same state after every chunk, on the same bytes cut every way (whole,
one message per chunk, at random points, byte by byte), with over-long messages, hostile lengths, skips and
stops asked by the handler and a header changed between messages. Then the PostgreSQL parser, which reads
through Framer.feed, against its former push loop."""
from __future__ import annotations

import random
import struct

import pytest
from test_parse_sql import PG_LOGIN, pg, pg_auth, pg_error, pg_ready, pg_row, pg_startup
from test_parser_fastpaths import _cuts, _drive

from nvpcap.protocols.base import CLIENT, SERVER
from nvpcap.protocols.framing import Framer
from nvpcap.protocols.postgresql import PostgresParser


def general_feed(framer: Framer, data: bytes, frame: int, ts_ns: int, handle) -> bool:
    """Framer.feed without its fast path: what it did before (every message through push)."""
    for msg in framer.push(data, frame, ts_ns):
        extra = handle(msg.data, msg.length, msg.frame, msg.ts_ns)
        if extra < 0:
            framer.stop()
        else:
            framer.skip += extra
    return not framer.broken


def _u32(h: bytes) -> int | None:
    """Untyped: a 4-byte big-endian total length; 0xFFFFFFFF is 'unknown' (None)."""
    n = struct.unpack_from(">I", h)[0]
    return None if n == 0xFFFFFFFF else n


def _typed(h: bytes) -> int:
    """Typed (PostgreSQL's): type byte + int32 length counting itself."""
    n = struct.unpack_from(">I", h, 1)[0]
    return 1 + n if n >= 4 else 0


def _u16(h: bytes) -> int:
    return struct.unpack_from(">H", h)[0]


def state(framer: Framer) -> tuple:
    return (bytes(framer.buf), framer.skip, framer.broken, framer.pos, list(framer.marks), framer.head,
            framer.length)


class Handler:
    """A deterministic handler: what it returns (keep on, skip some bytes, stop) and whether it switches the
    framer from untyped 4-byte to typed 5-byte headers depend only on the message and how many came before,
    so both paths take the same decisions. Records each call with the framer's state at that moment."""

    def __init__(self, framer: Framer, switch: bool) -> None:
        self.framer, self.switch, self.calls = framer, switch, []

    def __call__(self, data: bytes, length: int, frame: int, ts_ns: int) -> int:
        assert type(data) is bytes
        self.calls.append((data, length, frame, ts_ns, state(self.framer)))
        if self.switch and self.framer.head == 4:
            self.framer.head, self.framer.length = 5, _typed  # as PostgreSQL after its StartupMessage
        v = (sum(data) + length + len(self.calls)) % 29
        if v == 0:
            return -1
        if v in (1, 2, 3):
            return v * 3
        if v == 4:
            return 200
        return 0


def _message(rng: random.Random, kind: str, limit: int) -> bytes:
    size = rng.choice((0, 1, 3, 10, 30, limit - 8, limit + rng.randint(1, 300)))
    body = bytes(rng.randrange(256) for _ in range(max(size, 0)))
    if kind == "u32":
        return struct.pack(">I", 4 + len(body)) + body
    if kind == "typed":
        return b"Q" + struct.pack(">I", 4 + len(body)) + body
    return struct.pack(">H", 2 + len(body)) + body


def _hostile(rng: random.Random, kind: str) -> bytes:
    if kind == "u32":
        return rng.choice((b"\xff\xff\xff\xff", struct.pack(">I", rng.randrange(4)), b"\0\0"))
    if kind == "typed":
        return b"Q" + struct.pack(">I", rng.randrange(4))
    return struct.pack(">H", rng.randrange(2))


def _stream(rng: random.Random, kind: str, limit: int) -> tuple[bytes, list[int]]:
    """Messages (some over-long, some junk a handler may skip), perhaps ending in a hostile header, and the
    offsets where messages start."""
    out, starts = b"", []
    for _ in range(rng.randint(1, 25)):
        starts.append(len(out))
        out += _message(rng, kind, limit)
    if rng.random() < 0.3:
        starts.append(len(out))
        out += _hostile(rng, kind) + bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))
    return out, starts


def _chunks(rng: random.Random, data: bytes, starts: list[int], how: str) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    if how == "messages":  # one or more whole messages per chunk, some cut after a header
        cuts = sorted({s for s in starts if s and rng.random() < 0.6} | {s + rng.randint(1, 6) for s in starts
                                                                         if rng.random() < 0.1})
    else:
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.choice((1, 2, 5, 20))))) \
            if len(data) > 1 else []
    cuts = [c for c in cuts if 0 < c < len(data)]
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def _run(feed, chunks: list[bytes], kind: str, limit: int, keep: int, switch: bool, wrap) -> tuple:
    head, length = {"u32": (4, _u32), "typed": (5, _typed), "u16": (2, _u16)}[kind]
    framer = Framer(head, length, limit, keep)
    handler = Handler(framer, switch)
    results = []
    for i, chunk in enumerate(chunks):
        results.append((feed(framer, wrap(chunk), i + 1, 10 * i, handler), state(framer)))
    return handler.calls, results


@pytest.mark.parametrize("kind", ["u32", "typed", "u16"])
@pytest.mark.parametrize("seed", range(40))
def test_fast_path_agrees_with_push_every_way(kind, seed):
    rng = random.Random(seed)
    limit = rng.choice((16, 64, 400))
    keep = rng.choice((8, 16, limit))
    switch = kind == "u32" and seed % 2 == 0
    data, starts = _stream(rng, kind, limit)
    for how in ("whole", "messages", "messages", "random", "random", "bytes"):
        chunks = _chunks(rng, data, starts, how)
        wrap = rng.choice((bytes, bytes, bytearray, memoryview))
        fast = _run(Framer.feed, chunks, kind, limit, keep, switch, wrap)
        general = _run(general_feed, chunks, kind, limit, keep, switch, wrap)
        assert fast == general, how


def test_fast_path_handles_a_chunk_of_whole_messages_without_push(monkeypatch):
    """The common case never reaches push (so its generator and Message are saved), and the framer ends
    where push would have left it."""
    msgs = [struct.pack(">I", 4 + n) + b"x" * n for n in (0, 3, 10)]
    monkeypatch.setattr(Framer, "push", lambda *a: pytest.fail("push called"))
    framer, got = Framer(4, _u32), []
    assert framer.feed(b"".join(msgs), 7, 70, lambda d, n, f, t: got.append((d, n, f, t)) or 0)
    assert got == [(m, len(m), 7, 70) for m in msgs]
    assert (framer.pos, bytes(framer.buf), framer.marks, framer.skip) == (sum(map(len, msgs)), b"", [], 0)


def test_a_skip_past_the_chunk_and_a_stop():
    framer, got = Framer(4, _u32), []
    msg = struct.pack(">I", 6) + b"ab"
    assert framer.feed(msg + b"junk" + msg, 1, 1, lambda d, n, f, t: got.append(d) or 12)
    assert (got, framer.skip, framer.pos) == ([msg], 2, 16)  # junk and the next message skipped, 2 bytes to go
    assert framer.feed(b"12" + msg + msg, 2, 2, lambda d, n, f, t: got.append(d) or -1) is False
    assert got == [msg, msg] and framer.broken and not framer.buf


# ---- PostgreSQL: Framer.feed (fast path and all) against the former push loop ----


class PushPostgres(PostgresParser):
    """PostgresParser read as before: push's generator, message by message, stopping once done; a framing
    lost on either side (unless a message ended the parsing) is the anomaly."""

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if side == CLIENT:
            for msg in self.client.push(data, frame, ts_ns):
                self._frontend(msg.data, msg.length, msg.frame, msg.ts_ns)
                if self.done:
                    return
        else:
            if self.crypt_request and data:
                data = self._crypt_answer(data, frame, ts_ns)
            for msg in self.server.push(data, frame, ts_ns):
                self._backend(msg.data, msg.length, msg.frame, msg.ts_ns)
                if self.done:
                    return
        if self.client.broken or self.server.broken:
            self.out.anomaly("postgresql-bad-length", "message length below 4: framing lost", frame, ts_ns)
            self.done = True


QUERY = [(CLIENT, pg(b"Q", b"select * from t where a='x' or 1=1 --\0")),
         (SERVER, pg(b"T", b"\0\x01a\0" + b"\0" * 18) + pg_row(b"1") + pg_row(b"2") + pg(b"C", b"SELECT 2\0")
          + pg_ready())]
EXTENDED = [(CLIENT, pg(b"P", b"s1\0select $1\0\0\0") + pg(b"B", b"p1\0s1\0" + b"\0" * 6) + pg(b"E", b"p1\0\0\0\0\0")
             + pg(b"S")),
            (SERVER, pg(b"1") + pg(b"2") + pg_row(b"x") + pg(b"C", b"SELECT 1\0") + pg_ready()),
            (CLIENT, pg(b"P", b"\0bad sql\0\0\0") + pg(b"S")),
            (SERVER, pg_error("ERROR", "42601", "syntax error") + pg_ready())]
SSL = struct.pack(">II", 8, 80877103)
PG_SESSIONS = {
    "simple": PG_LOGIN + QUERY + [(CLIENT, pg(b"X"))],
    "extended": PG_LOGIN + EXTENDED + QUERY,
    "long": PG_LOGIN + [(CLIENT, pg(b"Q", b"select '" + b"x" * 70000 + b"'\0")),
                        (SERVER, pg_row(b"y" * 70000) + pg(b"C", b"SELECT 1\0") + pg_ready())] + QUERY,
    "login-error": [(CLIENT, pg_startup(user="eve")), (SERVER, pg_error("FATAL", "28P01", "no") + pg_ready())],
    "ssl-accepted-then-bytes": [(CLIENT, SSL), (SERVER, b"S" + pg_auth(0) + pg_ready())],
    "ssl-accepted-then-bad": [(CLIENT, SSL), (SERVER, b"S\0\0\0\0\x02")],
    "ssl-refused": [(CLIENT, SSL), (SERVER, b"N"), *PG_LOGIN, *QUERY],
    "cancel": [(CLIENT, struct.pack(">IIII", 16, 80877102, 7, 9) + pg(b"Q", b"x\0"))],
    "startup-pipelined": [(CLIENT, PG_LOGIN[0][1] + pg(b"p", b"pw\0") + pg(b"Q", b"select 1\0")), *PG_LOGIN[1:],
                          *QUERY],
    "bad-length": PG_LOGIN + QUERY + [(CLIENT, pg(b"Q", b"select 2\0") + b"Q\0\0\0\x02" + pg(b"Q", b"x\0"))],
    "bad-server": PG_LOGIN + [(CLIENT, pg(b"Q", b"select 2\0")), (SERVER, pg_row(b"1") + b"D\0\0\0\0")],
    "terminate-then-more": PG_LOGIN + [(CLIENT, pg(b"X") + pg(b"Q", b"select 3\0"))],
}


@pytest.mark.parametrize("name", sorted(PG_SESSIONS))
@pytest.mark.parametrize("midstream", [False, True])
def test_postgresql_reads_the_same_as_its_push_loop(name, midstream):
    steps = PG_SESSIONS[name]
    if midstream:
        steps = [s for s in steps if s is not PG_LOGIN[0]]
    rng = random.Random(name)
    for how in ("whole", "pipelined", "random", "random", "random", "bytes"):
        chunks = _cuts(steps, rng, how)
        assert _drive(PostgresParser, chunks, midstream, 5432) == _drive(PushPostgres, chunks, midstream, 5432), how


def test_postgresql_real_flows_read_the_same(shared_pcaps):
    from test_parse_sql import tcp_flows
    rng = random.Random(5)
    flows = tcp_flows(shared_pcaps / "postgresql__ndpi__pgsql.pcap", 5432)
    assert flows
    for steps in flows:
        for how in ("whole", "pipelined", "random", "bytes"):
            chunks = _cuts(steps, rng, how)
            assert _drive(PostgresParser, chunks, False, 5432) == _drive(PushPostgres, chunks, False, 5432), how
