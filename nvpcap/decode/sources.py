"""Open capture inputs as byte streams: plain files, stdin, and compressed files detected by magic bytes.

Compression is decided from the first bytes, never from the file name: users rename files, and tools such as
tshark do the same. Everything is streamed, so a multi-gigabyte `.pcap.zst` never sits in memory whole.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

import zstandard

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZ2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"

CAPTURE_MAGICS = (
    b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4",  # pcap, microseconds
    b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",  # pcap, nanoseconds
    b"\x0a\x0d\x0d\x0a",  # pcapng section header block
)
COMPRESSION_MAGICS = (GZIP_MAGIC, ZSTD_MAGIC, BZ2_MAGIC, XZ_MAGIC)
STDIN_NAME = "-"


class _PrefixedStream(io.RawIOBase):
    """A stream whose first bytes were already read (to sniff the magic) and are handed back first."""

    def __init__(self, prefix: bytes, rest: BinaryIO):
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        try:
            self._rest.close()
        finally:
            super().close()


def compression_of(head: bytes) -> str | None:
    """Name of the compression whose magic starts `head`, or None for plain data."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(BZ2_MAGIC):
        return "bz2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return None


class _ZstdStream(io.RawIOBase):
    """zstd frames decompressed one after another; a stream cut inside a frame raises EOFError.

    zstandard's own stream_reader reports a cut stream as a clean end of data, which would hide a damaged
    capture; the decompressobj API tells whether the last frame was complete.
    """

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._pending = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._pending:
            data = self._raw.read(1 << 20)
            if not data:
                if self._in_frame:
                    raise EOFError("zstd stream ends inside a frame (the file is cut short)")
                return 0
            while data:
                self._in_frame = True
                self._pending += self._obj.decompress(data)
                if not self._obj.eof:
                    break
                data = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _decompressor(kind: str, raw: BinaryIO) -> BinaryIO:
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "zstd":
        return io.BufferedReader(_ZstdStream(raw), buffer_size=1 << 20)  # type: ignore[return-value]
    if kind == "bz2":
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    raise ValueError(kind)


@dataclass
class OpenedCapture:
    """A capture input opened for streaming: where it came from, how it was compressed, and the stream."""

    name: str
    compression: str | None
    stream: BinaryIO

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:  # noqa: BLE001 - closing a broken decompressor must not hide the real error
            pass


def open_capture(name: str) -> OpenedCapture:
    """Open a file (or `-` for stdin), undoing gzip/zstd/bz2/xz compression found by magic bytes.

    Raises OSError when the file cannot be opened; decompression errors surface later, while reading.
    """
    raw: BinaryIO
    if name == STDIN_NAME:
        raw = sys.stdin.buffer
    else:
        raw = open(name, "rb", buffering=1 << 20)
    head = raw.read(8)
    if raw.seekable():
        raw.seek(0)  # a regular file: read it directly, no wrapper on the hot path
        stream: BinaryIO = raw
    else:
        stream = io.BufferedReader(_PrefixedStream(head, raw), buffer_size=1 << 20)  # type: ignore[arg-type]
    kind = compression_of(head)
    if kind is not None:
        stream = _decompressor(kind, stream)
    return OpenedCapture(name=name, compression=kind, stream=stream)


def sniff_is_capture(path: Path) -> bool:
    """True when a file looks like a capture (or a compressed file that may hold one).

    Directory walks use this to skip README files, checksums and the like without reading them whole.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head[:4] in CAPTURE_MAGICS or compression_of(head) is not None


def expand_inputs(paths: Iterable[str]) -> tuple[list[str], list[str], list[str]]:
    """Expand files and directories (recursively) into capture inputs.

    Returns (inputs, problems, skipped): problems are messages for paths that do not exist; skipped are files
    found in directories whose first bytes are not a capture or a compressed file (README, checksums, ...).
    Files named explicitly are always taken (their format is checked when read).
    """
    inputs: list[str] = []
    problems: list[str] = []
    skipped: list[str] = []
    for p in paths:
        if p == STDIN_NAME:
            inputs.append(p)
            continue
        path = Path(p)
        if path.is_dir():
            for f in sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith(".")):
                (inputs if sniff_is_capture(f) else skipped).append(str(f))
        elif path.exists():
            inputs.append(str(path))
        else:
            problems.append(f"{p}: no such file or directory")
    return inputs, problems, skipped


def shown_name(name: str) -> str:
    """A file name as records and summaries show it: valid UTF-8 text. A byte of the name that is not UTF-8
    (Python carries it as a lone surrogate) becomes U+FFFD, so no writer fails on the name."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def display_name(name: str) -> str:
    """An input as records name it in pcap_filename: its base name as text, `<stdin>` for standard input."""
    return "<stdin>" if name == STDIN_NAME else shown_name(os.path.basename(name))


def file_size(name: str) -> int | None:
    """Size on disk of a plain file, for progress; None for stdin."""
    if name == STDIN_NAME:
        return None
    try:
        return os.path.getsize(name)
    except OSError:
        return None
