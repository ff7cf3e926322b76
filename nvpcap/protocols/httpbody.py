"""HTTP message body decoding: the content codings of RFC 9110 §8.4.1 (gzip, deflate), RFC 7932 (br) and
RFC 8878 (zstd, which browsers ask for and CDNs send since 2024), undone incrementally as the body arrives, with
a cap on the bytes produced per body.

Why a cap: a few KiB of gzip, brotli or zstd can expand to gigabytes (a decompression bomb); the decoder stops at
MAX_DECODED bytes and says so (status "capped"), so memory stays bounded whatever the capture holds.
A corrupt stream stops the decoder (status "error"); the caller reports it and passes no more bytes.
"""
from __future__ import annotations

import zlib

import brotli
import zstandard

MAX_DECODED = 10 << 20  # decoded bytes produced per body at most
PIECE = 1 << 20  # decoded bytes handed out per step (a bound on one allocation)
MAX_LAYERS = 3  # codings applied to one body (`Content-Encoding: gzip, br`) accepted at most

# RFC 9110 §8.4.1 and the IANA HTTP Content Coding Registry; "x-gzip" is gzip (RFC 9110 §8.4.1.3)
GZIP, DEFLATE, BR, ZSTD = "gzip", "deflate", "br", "zstd"
CODINGS = {"gzip": GZIP, "x-gzip": GZIP, "deflate": DEFLATE, "br": BR, "zstd": ZSTD}
ZSTD_WINDOW = 8 << 20  # RFC 9659: a decoder of the zstd content coding need not take a window over 8 MiB
ZSTD_PIECE = 1 << 17  # decoded bytes the zstd writer hands over at a time (zstd's blocks are 128 KiB)
IDENTITY = frozenset({"", "identity"})

OK, CAPPED, ERROR, UNSUPPORTED = "ok", "capped", "error", "unsupported"


class _Stop(Exception):
    """A stage cannot go on (corrupt input)."""


class _Zlib:
    """gzip (RFC 1952, several members allowed) or deflate: RFC 9110 says zlib-wrapped (RFC 1950), but many
    servers send raw deflate (RFC 1951), so the first two bytes decide, as browsers do."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.d = None  # the decompressor of the current stream (gzip: member), once its first bytes are seen
        self.head = b""
        self.members = 0
        self.finished = False

    def _start(self, data: bytes) -> bytes:
        """Open the next stream from its first two bytes (held until both are there); returns its input."""
        data = self.head + data
        if len(data) < 2:
            self.head = data
            return b""
        self.head = b""
        if self.coding == GZIP:
            if data[:2] != b"\x1f\x8b":  # RFC 1952 §2.3.1 ID1 ID2
                if not self.members:
                    raise _Stop("not a gzip stream")
                self.finished = True  # bytes after the last member are ignored
                return b""
            self.members += 1
            self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return data
        cmf, flg = data[0], data[1]
        zlib_wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0  # RFC 1950 §2.2
        self.d = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        return data

    def steps(self, data: bytes, room: int):
        """Decoded pieces of `data`, at most room + 1 bytes in all (one more than room means: over the cap)."""
        while room >= 0 and not self.finished:
            if self.d is None:
                data = self._start(data)
                if self.d is None:
                    return
            limit = min(room + 1, PIECE)
            try:
                out = self.d.decompress(data, limit)
            except zlib.error as exc:
                raise _Stop(str(exc)) from None
            room -= len(out)
            if out:
                yield out
            if self.d.eof:
                data, self.d = self.d.unused_data, None
                if self.coding != GZIP:
                    self.finished = True  # anything after the end of the stream is ignored
                if not data:
                    return
                continue  # gzip: another member may follow (RFC 1952 §2.2)
            data = self.d.unconsumed_tail
            if not data and len(out) < limit:
                return  # all input read and no output held back


class _Brotli:
    """br (RFC 7932), with the decoder's own output limit so a bomb never allocates more than a piece."""

    def __init__(self) -> None:
        self.d = brotli.Decompressor()

    def steps(self, data: bytes, room: int):
        if self.d.is_finished():
            return
        try:
            out = self.d.process(data, output_buffer_limit=min(room + 1, PIECE))
            while True:
                room -= len(out)
                if out:
                    yield out
                if room < 0 or self.d.can_accept_more_data() or self.d.is_finished():
                    return
                out = self.d.process(b"", output_buffer_limit=min(room + 1, PIECE))
        except brotli.error as exc:
            raise _Stop(str(exc)) from None


class _Full(Exception):
    """The zstd sink got more decoded bytes than the room it was given: the writer's call stops there."""


class _ZstdSink:
    """Where the zstd stream writer puts what it decodes: the pieces of one call, until they pass `room`."""

    __slots__ = ("pieces", "room")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.room = 0

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        self.room -= len(data)
        if self.room < 0:
            raise _Full
        return len(data)


class _Zstd:
    """zstd (RFC 8878), frame after frame, through zstandard's stream writer: each piece of the body is decoded
    in one C call (not 32 bytes per call, as before: 30 ms per MiB), and the writer hands the output to
    the sink ZSTD_PIECE bytes at most at a time, so a bomb stops one piece past the cap (zstandard's
    decompressobj has no output limit)."""

    def __init__(self) -> None:
        self.sink = _ZstdSink()
        self.writer = zstandard.ZstdDecompressor(max_window_size=ZSTD_WINDOW).stream_writer(
            self.sink, write_size=ZSTD_PIECE)
        self.full = False  # the writer was stopped inside a call: it cannot go on

    def steps(self, data: bytes, room: int) -> list[bytes]:
        if self.full:
            return []
        sink = self.sink
        sink.pieces, sink.room = [], room
        try:
            self.writer.write(data)
        except _Full:
            self.full = True
        except zstandard.ZstdError as exc:  # (the words of decompressobj's errors, as reported before)
            raise _Stop(str(exc).replace("zstd decompress error:", "zstd decompressor error:", 1)) from None
        return sink.pieces


def parse_codings(value: str | None) -> list[str] | None:
    """The codings of a Content-Encoding value in the order applied; [] for none; None when one is unknown
    (or there are too many to undo)."""
    if not value:
        return []
    names = [c.strip().lower() for c in value.split(",")]
    names = [c for c in names if c not in IDENTITY]
    if len(names) > MAX_LAYERS or any(c not in CODINGS for c in names):
        return None
    return [CODINGS[c] for c in names]


_STAGES = {BR: _Brotli, ZSTD: _Zstd}  # the other codings: _Zlib(coding)


class BodyDecoder:
    """Undoes the content codings of one body, fed piece by piece. `status` tells why it stopped."""

    __slots__ = ("cap", "error", "produced", "stages", "status")

    def __init__(self, codings: list[str], cap: int = MAX_DECODED) -> None:
        # codings are applied in the order listed, so they are undone in reverse (RFC 9110 §8.4)
        self.stages = [_STAGES[c]() if c in _STAGES else _Zlib(c) for c in reversed(codings)] if codings else []
        self.cap = cap
        self.produced = 0
        self.status = OK
        self.error = ""

    @classmethod
    def for_header(cls, content_encoding: str | None, cap: int = MAX_DECODED) -> BodyDecoder:
        if content_encoding is None:
            return cls([], cap)  # most bodies: identity
        codings = parse_codings(content_encoding)
        dec = cls(codings or [], cap)
        if codings is None:
            dec.status = UNSUPPORTED
        return dec

    def feed(self, data: bytes) -> list[bytes]:
        """Decoded pieces for this piece of the body (empty once stopped)."""
        if self.status != OK or not data:
            return []
        if not self.stages:  # identity: the bytes as they are, up to the cap
            if self.produced + len(data) <= self.cap:
                self.produced += len(data)
                return [data]
            return self._keep([data])
        pieces = [data]
        try:
            for stage in self.stages:
                room = self.cap - self.produced if stage is self.stages[-1] else self.cap
                pieces = [out for piece in pieces for out in stage.steps(piece, room)]
        except _Stop as exc:
            self.status, self.error = ERROR, exc.args[0] if exc.args else "corrupt stream"
            return []
        return self._keep(pieces)

    def stopped(self, before: str) -> tuple[str, str] | None:
        """(anomaly reason, message) when the feeds since the status was `before` stopped the decoder on a cap
        or a corrupt stream; None otherwise. The parsers report it once per flow."""
        if self.status == before:
            return None
        if self.status == CAPPED:
            return "decompression-cap", f"decoded body reached the cap of {self.cap} bytes"
        if self.status == ERROR:
            return "decompression-error", f"corrupt compressed body: {self.error}"
        return None

    def _keep(self, pieces: list[bytes]) -> list[bytes]:
        """The pieces up to the cap; past it, the decoder stops as CAPPED."""
        out = []
        for p in pieces:
            room = self.cap - self.produced
            if len(p) > room:
                p = p[:room]
                self.status = CAPPED
            if p:
                out.append(p)
                self.produced += len(p)
            if self.status == CAPPED:
                break
        return out
