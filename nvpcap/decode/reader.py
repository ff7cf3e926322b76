"""Capture reader: classic pcap (µs/ns, either byte order) and pcapng (every section and interface).

Reads a stream in bounded chunks and yields `RawBatch`es: one buffer of bytes plus columns that index the
packets in it. Problems (bad magic, corrupt block, truncated last record, decompression failure) become
`CaptureIssue`s with the file offset; reading stops at a corrupt point but everything before it is kept.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np

from . import records as rec

DEFAULT_CHUNK = 2 << 20
DEFAULT_BATCH_PACKETS = 1 << 14


@dataclass
class RawBatch:
    """Packets as columns over one shared byte buffer (no per-packet Python objects)."""

    buf: np.ndarray  # uint8
    data_off: np.ndarray  # int64: where each packet's bytes start in buf
    caplen: np.ndarray  # int64
    wirelen: np.ndarray  # int64: original length on the wire (>= caplen)
    ts_ns: np.ndarray  # int64
    linktype: np.ndarray  # int32, per packet (pcapng interfaces may differ); -1 = no such interface
    iface: np.ndarray  # int32
    frame_no: np.ndarray  # int64, 1-based, as Wireshark numbers frames

    def __len__(self) -> int:
        return int(self.data_off.shape[0])


@dataclass
class CaptureIssue:
    """Something wrong with the capture file itself, with where it was found."""

    kind: str  # bad-magic, corrupt-record, corrupt-block, truncated-record, read-error, empty-file
    offset: int
    message: str
    packets: int = 0  # packets this issue made unreadable (counted in the summary)


@dataclass
class _Interface:
    linktype: int
    snaplen: int
    units: int = 1_000_000
    offset_s: int = 0


@dataclass
class CaptureReader:
    """Stream one opened capture into batches; read `format`, `issues` and `linktypes` as you go."""

    stream: BinaryIO
    chunk_size: int = DEFAULT_CHUNK
    batch_packets: int = DEFAULT_BATCH_PACKETS
    format: str = "unknown"
    issues: list[CaptureIssue] = field(default_factory=list)
    linktypes: set[int] = field(default_factory=set)
    sections: int = 0
    bytes_read: int = 0
    _frames: int = 0
    _failed: bool = False
    _direct: bool = False  # a regular file: read straight into the buffers

    def __post_init__(self) -> None:
        self._direct = type(self.stream) is io.BufferedReader and self.stream.seekable()

    # -- low-level buffering -------------------------------------------------------------------------------
    def _fill(self, target: memoryview) -> int:
        """Read into `target` until it is full or the input ends; returns the bytes read. A read error (a cut
        gzip stream, a damaged disk) keeps what was read before it, becomes an issue, and reads as the end of
        the file from then on."""
        if self._failed:
            return 0
        got = 0
        try:
            while got < len(target):
                n = self._read_some(target[got:])
                if not n:
                    break
                got += n
        except Exception as exc:  # noqa: BLE001 - any decompressor or I/O error ends this file, never the run
            self._failed = True
            self.issues.append(CaptureIssue("read-error", self.bytes_read + got, f"read failed: {exc}"))
        self.bytes_read += got
        return got

    def _read_some(self, target: memoryview) -> int:
        """One read into `target`. A regular file is read straight into it. Other streams (decompressors, pipes)
        go through read1: buffered readinto1 can copy buffered bytes and then fail on the next underlying read,
        losing them; read1 returns what is buffered first, so an error never takes data already decoded."""
        if self._direct:
            return self.stream.readinto(target)
        data = self.stream.read1(len(target)) if hasattr(self.stream, "read1") else self.stream.read(len(target))
        target[: len(data)] = data
        return len(data)

    def _read(self, n: int) -> bytes:
        """Up to n bytes, with `_fill`'s error handling (what was read before an error is kept)."""
        buf = np.empty(n, np.uint8)  # not zeroed: most of it is never touched when the input is small
        got = self._fill(memoryview(buf))
        return buf[:got].tobytes()

    def batches(self) -> Iterator[RawBatch]:
        head = self._read(4)
        if len(head) == 0:
            self.issues.append(CaptureIssue("empty-file", 0, "file is empty"))
            return
        if len(head) < 4:
            self.issues.append(CaptureIssue("bad-magic", 0, f"file too short ({len(head)} bytes) for a capture"))
            return
        if head in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
            self.format = "pcap"
            yield from self._pcap(head)
        elif head == b"\x0a\x0d\x0d\x0a":
            self.format = "pcapng"
            yield from self._pcapng(head)
        else:
            self.issues.append(
                CaptureIssue("bad-magic", 0, f"not a pcap or pcapng file (magic {head.hex()})")
            )

    def _alloc(self, n: int) -> tuple[np.ndarray, ...]:
        return (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64))

    def _frame_numbers(self, n: int) -> np.ndarray:
        nums = np.arange(self._frames + 1, self._frames + 1 + n, dtype=np.int64)
        self._frames += n
        return nums

    # -- classic pcap ----------------------------------------------------------------------------------------
    def _pcap(self, magic: bytes) -> Iterator[RawBatch]:
        rest = self._read(20)
        if len(rest) < 20:
            self.issues.append(CaptureIssue("truncated-record", 4, "pcap file header is cut short"))
            return
        big = magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
        nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        _vmaj, _vmin, _zone, _sig, _snap, network = struct.unpack((">" if big else "<") + "HHiIII", rest)
        linktype = network & 0x0FFFFFFF  # upper bits carry the FCS length, not the link type
        self.linktypes.add(linktype)
        self.sections = 1
        base = 24  # file offset of buf[0]
        # Two reusable buffers, used in turn: each refill reads straight into one (no per-chunk bytes objects
        # or concatenation), and a batch's bytes stay intact while the next batch is produced. Not zeroed
        # (np.empty): zeroing two 3 MiB buffers was a third of the time spent on a small file.
        size = self.chunk_size + rec.MAX_RECORD_LEN + 16
        buffers = (np.empty(size, np.uint8), np.empty(size, np.uint8))
        which = 0
        prev: np.ndarray | None = None
        left = 0  # bytes of an unfinished record carried over from the previous buffer
        prev_pos = 0
        while True:
            cur = buffers[which]
            which ^= 1
            if left:
                cur[:left] = prev[prev_pos:prev_pos + left]  # type: ignore[index]
            got = self._fill(memoryview(cur)[left:left + self.chunk_size])
            eof = got < self.chunk_size
            total = left + got
            buf = np.frombuffer(cur, dtype=np.uint8, count=total)
            pos = 0
            while True:
                cap_n = min(self.batch_packets, total // 16 + 1)
                off, cap, wire, ts = self._alloc(cap_n)
                n, pos, reason = rec.walk_pcap(buf, pos, big, nanos, off, cap, wire, ts, cap_n)
                if n:
                    yield RawBatch(
                        buf, off[:n], cap[:n], wire[:n], ts[:n], np.full(n, linktype, np.int32),
                        np.zeros(n, np.int32), self._frame_numbers(n),
                    )
                if reason != rec.FULL:
                    break
            if reason == rec.CORRUPT:
                incl = struct.unpack_from(">I" if big else "<I", cur, pos + 8)[0]
                self.issues.append(CaptureIssue(
                    "corrupt-record", base + pos,
                    f"record header claims {incl} captured bytes (limit {rec.MAX_RECORD_LEN}); reading stopped",
                    packets=1,
                ))
                self._frames += 1
                return
            base += pos
            left, prev, prev_pos = total - pos, cur, pos
            if eof:
                if left:
                    self.issues.append(CaptureIssue(
                        "truncated-record", base,
                        f"last record is cut short: {left} bytes left at end of file", packets=1,
                    ))
                    self._frames += 1
                return

    # -- pcapng ----------------------------------------------------------------------------------------------
    def _pcapng(self, magic: bytes) -> Iterator[RawBatch]:
        ifaces: list[_Interface] = []
        last_ts = np.zeros(1, np.int64)
        big = False
        pending = magic
        base = 0
        eof = False
        need = 12
        while True:
            if not eof and len(pending) < max(need, 1 << 16):
                chunk = self._read(max(self.chunk_size, need))
                eof = not chunk
                pending = pending + chunk if pending else chunk
                if not eof:
                    continue
            buf = np.frombuffer(pending, dtype=np.uint8)
            pos = 0
            need = 12
            while True:
                # one set of output columns is filled across section/interface blocks: a file made of many
                # small sections (mergecap -a) must not become many tiny batches
                cap_n = min(self.batch_packets, buf.shape[0] // 16 + 1)
                off, cap, wire, ts = self._alloc(cap_n)
                lt = np.empty(cap_n, np.int32)
                ifc = np.empty(cap_n, np.int32)
                n = 0
                while True:
                    tables = _interface_tables(ifaces)
                    k, pos, reason = rec.walk_pcapng(
                        buf, pos, big, *tables, len(ifaces), off[n:], cap[n:], wire[n:], ts[n:], lt[n:], ifc[n:],
                        cap_n - n, last_ts,
                    )
                    n += k
                    if reason != rec.PYTHON_BLOCK:
                        break
                    status, big, used = self._section_or_interface(pending, pos, big, ifaces)
                    if status == "need":
                        need = used
                        reason = rec.NEED_MORE
                        break
                    if status == "corrupt":
                        reason = rec.CORRUPT
                        break
                    pos += used
                if n:
                    bad_if = int(np.count_nonzero(lt[:n] < 0))
                    if bad_if:
                        self.issues.append(CaptureIssue(
                            "corrupt-block", base + pos, f"{bad_if} packet blocks name an interface that was never described",
                        ))
                    yield RawBatch(buf, off[:n], cap[:n], wire[:n], ts[:n], lt[:n], ifc[:n], self._frame_numbers(n))
                if reason != rec.FULL:
                    break
            if reason == rec.CORRUPT:
                lost = 1 if _block_type(pending, pos, big) in rec.PACKET_BLOCKS else 0
                self.issues.append(CaptureIssue("corrupt-block", base + pos, used_msg(pending, pos, big), packets=lost))
                self._frames += lost
                return
            base += pos
            pending = pending[pos:]
            if reason == rec.NEED_MORE and len(pending) >= 8:
                blen = struct.unpack_from(">I" if big else "<I", pending, 4)[0]
                need = min(max(need, blen), rec.MAX_BLOCK_LEN + 16)
            if eof:
                if pending:
                    self.issues.append(CaptureIssue(
                        "truncated-record", base, f"last block is cut short: {len(pending)} bytes left at end of file",
                        packets=1,
                    ))
                    self._frames += 1
                return

    def _section_or_interface(self, data: bytes, pos: int, big: bool, ifaces: list[_Interface]) -> tuple[str, bool, int]:
        """Parse an SHB or IDB at data[pos:]. Returns (status, byte order, block length or bytes needed)."""
        if len(data) - pos < 12:
            return "need", big, 12
        btype = struct.unpack_from(">I", data, pos)[0]
        if btype == rec.PCAPNG_SHB:
            bom = data[pos + 8:pos + 12]
            if bom == b"\x1a\x2b\x3c\x4d":
                big = True
            elif bom == b"\x4d\x3c\x2b\x1a":
                big = False
            else:
                return "corrupt", big, 0
            ifaces.clear()
            self.sections += 1
        e = ">" if big else "<"
        blen = struct.unpack_from(e + "I", data, pos + 4)[0]
        if blen < 12 or blen % 4 or blen > rec.MAX_BLOCK_LEN:
            return "corrupt", big, 0
        if len(data) - pos < blen:
            return "need", big, blen
        if struct.unpack_from(e + "I", data, pos + blen - 4)[0] != blen:
            return "corrupt", big, 0
        if btype == rec.PCAPNG_SHB:
            return "ok", big, blen
        if blen < 20:
            return "corrupt", big, 0
        linktype, _res, snaplen = struct.unpack_from(e + "HHI", data, pos + 8)
        iface = _Interface(linktype=linktype, snaplen=snaplen)
        _parse_idb_options(data[pos + 16:pos + blen - 4], e, iface)
        ifaces.append(iface)
        self.linktypes.add(linktype)
        return "ok", big, blen


def _interface_tables(ifaces: list[_Interface]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-interface link type, snaplen, time units and offset, as arrays for the compiled walk."""
    return (
        np.array([i.linktype for i in ifaces] or [0], np.int32),
        np.array([i.snaplen for i in ifaces] or [0], np.int64),
        np.array([i.units for i in ifaces] or [1], np.int64),
        np.array([i.offset_s for i in ifaces] or [0], np.int64),
    )


def _parse_idb_options(opts: bytes, e: str, iface: _Interface) -> None:
    """Read if_tsresol (9) and if_tsoffset (14); other options do not change how packets are read."""
    i = 0
    while i + 4 <= len(opts):
        code, length = struct.unpack_from(e + "HH", opts, i)
        val = opts[i + 4:i + 4 + length]
        if code == 0:
            break
        if code == 9 and length >= 1:
            r = val[0]
            exp = r & 0x7F
            if r & 0x80:
                iface.units = 1 << min(exp, 62)
            else:
                iface.units = 10 ** min(exp, 18)
        elif code == 14 and length >= 8:
            iface.offset_s = struct.unpack_from(e + "q", val, 0)[0]
        i += 4 + ((length + 3) & ~3)


def _block_type(data: bytes, pos: int, big: bool) -> int:
    return struct.unpack_from((">" if big else "<") + "I", data, pos)[0] if len(data) - pos >= 4 else -1


def used_msg(data: bytes, pos: int, big: bool) -> str:
    """Describe a corrupt pcapng block for the user."""
    if len(data) - pos >= 8:
        btype, blen = struct.unpack_from((">" if big else "<") + "II", data, pos)
        return f"corrupt pcapng block (type 0x{btype:08x}, length {blen}); reading stopped"
    return "corrupt pcapng block; reading stopped"
