"""Length-prefixed framing and bounded field reads, shared by the binary protocol parsers.

Most binary protocols here (Kafka, ZooKeeper, Spark, memcached binary, Erlang distribution, MySQL, PostgreSQL,
TDS, TNS, MongoDB, CQL, AMQP, OpenWire, VoltDB, the Elasticsearch transport) frame each message with a header
that gives its length. `Framer` cuts one direction of such a stream into messages while holding no more than a
bound (the bytes come from the capture: a header may announce 4 GiB), keeps its step across lost bytes when it
can (`gap`), and tells where each message started. `Cursor` reads the fields of one message and raises `Short`
rather than read past its end, so a cut or hostile message ends its decoding, never the parser.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple


class Message(NamedTuple):
    data: bytes  # the whole message (header included), or its first `keep` bytes when truncated
    length: int  # the message's length as its header gives it
    truncated: bool
    frame: int  # capture frame / time of the packet holding the message's first byte
    ts_ns: int


_tuple_new = tuple.__new__  # _tuple_new(Message, fields): a Message without NamedTuple's Python-level __new__


class Framer:
    """Cuts one direction's in-order bytes into messages whose header (`head` bytes) gives their total length
    (`length(header)`, header included; None or a value below `head` means the framing is lost: `broken`).
    Messages up to `limit` bytes (default: `keep`) are delivered whole; longer ones as their first `keep` bytes,
    the rest skipped by count, never buffered. `head` and `length` may be changed between messages (protocols
    whose framing changes after a handshake).

    Two ways to read: `push` yields the messages of a chunk; `feed` calls a handler per message that may also
    skip bytes sent after the message outside the framing (Spark stream data) or stop the framer."""

    __slots__ = ("broken", "buf", "head", "keep", "length", "limit", "marks", "pos", "skip")

    def __init__(self, head: int, length: Callable[[bytes], int | None], limit: int | None = None,
                 keep: int = 8192) -> None:
        self.head, self.length = head, length
        self.keep = max(keep, head)
        self.limit = self.keep if limit is None else limit
        self.buf = bytearray()
        self.skip = 0  # bytes still to discard (the rest of an over-long message, data outside the framing)
        self.broken = False
        self.pos = 0  # stream offset of buf[0]
        # (stream offset, frame, ts) of chunks in buf: a list (56 B), not a deque (760 B): two framers per flow,
        # and it holds a few entries
        self.marks: list[tuple[int, int, int]] = []

    def push(self, data: bytes, frame: int, ts_ns: int) -> Iterator[Message]:
        """The messages this chunk completes. Whole messages are cut straight from the chunk; only a message
        begun in an earlier chunk (or one the chunk leaves unfinished) goes through the buffer, so a chunk of
        many small messages is not copied into the buffer and shifted out of it message by message."""
        if self.broken:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            self.pos += n
            data = data[n:]
        buf = self.buf
        while not self.broken:
            if buf:  # a message begun in an earlier chunk: complete it with only the bytes it needs
                head = self.head
                if len(buf) < head:
                    data = self._hold(data, head - len(buf), frame, ts_ns)
                    if len(buf) < head:
                        return
                total = self.length(bytes(buf[:head]))
                if total is None or total < head:
                    self.stop()
                    return
                # an over-long message keeps its first `keep` bytes (and whatever the buffer held past it)
                data = self._hold(data, (total if total <= self.limit else self.keep) - len(buf), frame, ts_ns)
                where = self._where()
                if total <= self.limit:
                    if len(buf) < total:
                        return
                    msg = _tuple_new(Message, (bytes(buf[:total]), total, False, *where))
                    self._consume(total)
                else:
                    if len(buf) < min(self.keep, total):
                        return
                    msg = _tuple_new(Message, (bytes(buf[: self.keep]), total, True, *where))
                    have = len(buf)
                    if have >= total:
                        self._consume(total)
                    else:
                        self._consume(have)
                        self.skip = total - have
                yield msg
                if self.skip:  # the rest of a long message, or what the reader asked to skip after it
                    n = min(self.skip, len(buf))
                    if n:
                        self._consume(n)
                        self.skip -= n
                    if self.skip and data:
                        n = min(self.skip, len(data))
                        self.skip -= n
                        self.pos += n
                        data = data[n:]
                    if self.skip:
                        return
                continue
            if not data:
                return
            head, length, limit = self.head, self.length, self.limit
            off, n = 0, len(data)
            while n - off >= head:  # whole messages straight from the chunk
                total = length(data[off : off + head])
                if total is None or total < head:
                    self.pos += off
                    self.stop()
                    return
                if total > limit or n - off < total:
                    break  # over-long or unfinished: the buffered way
                msg = _tuple_new(Message, (data if total == n else data[off : off + total], total, False, frame, ts_ns))
                off += total
                yield msg
                if self.broken:
                    return
                if self.skip:  # what the reader asked to skip after the message
                    k = min(self.skip, n - off)
                    off += k
                    self.skip -= k
                    if self.skip:
                        self.pos += off
                        return
                head, length, limit = self.head, self.length, self.limit  # may change between messages
            self.pos += off
            if off == n:
                return
            data = data[off:] if off else data
            self.marks.append((self.pos, frame, ts_ns))  # the buffer is empty: its first byte starts here
            buf += data
            data = b""

    def _hold(self, data: bytes, want: int, frame: int, ts_ns: int) -> bytes:
        """Move up to `want` bytes from the front of data into the buffer; returns the rest of data."""
        if want <= 0 or not data:
            return data
        marks = self.marks
        if not marks or marks[-1][1] != frame or marks[-1][2] != ts_ns:  # (bytes of one chunk: one mark)
            marks.append((self.pos + len(self.buf), frame, ts_ns))
        self.buf += data[:want]
        return data[want:]

    def feed(self, data: bytes, frame: int, ts_ns: int, handle: Callable[[bytes, int, int, int], int]) -> bool:
        """push with a handler: handle(data, length, frame, ts_ns) for each message returns the bytes to skip
        after it (data sent outside the framing), or -1 to stop. False once the framing is lost or stopped.
        A chunk that starts at a message header (the common case) first goes through `_whole`: the same
        messages, handled without push's generator step and Message tuple per message."""
        if type(data) is not bytes:
            data = bytes(data)
        if (self.buf or self.skip) and not self.broken:  # a message begun in an earlier chunk (most chunks of a
            data = self._complete(data, frame, ts_ns, handle)  # bulk stream)
        if data and not (self.buf or self.skip or self.broken):
            data = self._whole(data, frame, ts_ns, handle)
        if data:
            self._pushed(data, frame, ts_ns, handle)
        return not self.broken

    def _pushed(self, data: bytes, frame: int, ts_ns: int, handle: Callable[[bytes, int, int, int], int]) -> None:
        """The general way: every message of `data` through push."""
        for msg in self.push(data, frame, ts_ns):
            extra = handle(msg.data, msg.length, msg.frame, msg.ts_ns)
            if extra < 0:
                self.stop()
            else:
                self.skip += extra

    def _complete(self, data: bytes, frame: int, ts_ns: int, handle: Callable[[bytes, int, int, int], int]) -> bytes:
        """feed's way back to `_whole`: the held message completed through push with only the bytes it needs,
        and what was to be skipped after it, skipped. Returns the rest of the chunk (all of it when the held
        message needs all of it, or its length is not known: push reads it then)."""
        while data and (self.buf or self.skip):
            if self.skip:  # (also when the handler stopped the framer: push skips on before it looks)
                k = min(self.skip, len(data))
                self.skip -= k
                self.pos += k
                data = data[k:]
                continue
            if self.broken:
                break
            need = self._needed()
            if need <= 0 or need >= len(data):
                break
            self._pushed(data[:need], frame, ts_ns, handle)
            data = data[need:]
        return data

    def _needed(self) -> int:
        """Bytes that complete the header, or the message, held in the buffer (as push holds them: an over-long
        message its first `keep`); 0 when its length says the framing is lost (push stops the framer)."""
        buf, head = self.buf, self.head
        if len(buf) < head:
            return head - len(buf)
        total = self.length(bytes(buf[:head]))
        if total is None or total < head:
            return 0
        return (total if total <= self.limit else min(self.keep, total)) - len(buf)

    def _whole(self, data: bytes, frame: int, ts_ns: int, handle: Callable[[bytes, int, int, int], int]) -> bytes:
        """feed's fast path, for a framer that holds nothing and skips nothing: handle the messages that lie
        whole in the chunk, cut straight from it, exactly as push's chunk loop would (lost framing, a skip
        after a message, `head` / `length` / `limit` changed by the handler). Returns the rest of the chunk,
        from the first message that is unfinished or over-long, for push; b"" when the chunk is used up or
        the framer stopped."""
        off, n = 0, len(data)
        while n - off >= self.head:
            head = self.head
            total = self.length(data[off : off + head])
            if total is None or total < head:
                self.pos += off
                self.stop()
                return b""
            if total > self.limit or n - off < total:
                break  # over-long or unfinished: the buffered way
            extra = handle(data if total == n else data[off : off + total], total, frame, ts_ns)
            off += total
            if extra:
                if extra < 0:
                    self.stop()
                else:
                    self.skip += extra
            if self.broken:
                return b""
            if self.skip:  # what the handler asked to skip after the message
                k = min(self.skip, n - off)
                off += k
                self.skip -= k
                if self.skip:
                    self.pos += off
                    return b""
        self.pos += off
        return data[off:] if off else data

    def gap(self, missing: int) -> bool:
        """Bytes lost from this direction. When they fall inside the message being read or skipped, its length
        still says where the next one starts (that message is dropped): True. Otherwise the framing is lost:
        the framer stops (False)."""
        if self.broken:
            return False
        if self.skip:
            if missing <= self.skip:
                self.skip -= missing
                self.pos += missing
                return True
        elif len(self.buf) >= self.head:
            total = self.length(bytes(self.buf[: self.head]))
            if total is not None and total >= self.head and missing <= total - len(self.buf):
                self.skip = total - len(self.buf) - missing
                self.pos += len(self.buf) + missing
                self.buf.clear()
                self.marks.clear()
                return True
        self.stop()
        return False

    def stop(self) -> None:
        """The framing is lost (or no longer this framer's): nothing more is delivered."""
        self.broken = True
        self.buf.clear()
        self.marks.clear()

    def _where(self) -> tuple[int, int]:
        marks = self.marks
        drop = 0
        while drop + 1 < len(marks) and marks[drop + 1][0] <= self.pos:
            drop += 1
        if drop:
            del marks[:drop]
        _, frame, ts = marks[0]
        return frame, ts

    def _consume(self, n: int) -> None:
        del self.buf[:n]
        self.pos += n
        if not self.buf:
            self.marks.clear()


class Short(Exception):
    """The bytes end before the field does (a truncated or hostile message)."""


_STRUCTS: dict[str, struct.Struct] = {}


class Cursor:
    """Bounds-checked reads over one message, from offset `p`: a read past the end raises Short. Protocols
    subclass it with their own field types."""

    __slots__ = ("b", "p")

    def __init__(self, b: bytes, p: int = 0) -> None:
        self.b, self.p = b, p

    def take(self, n: int) -> bytes:
        if n < 0 or self.p + n > len(self.b):
            raise Short
        out = self.b[self.p : self.p + n]
        self.p += n
        return out

    def skip(self, n: int) -> None:
        if n < 0 or self.p + n > len(self.b):
            raise Short
        self.p += n

    def left(self) -> int:
        return len(self.b) - self.p

    def int(self, fmt: str = ">i") -> int:
        """One integer of struct format `fmt` (default a big-endian int32)."""
        s = _STRUCTS.get(fmt)
        if s is None:
            s = _STRUCTS[fmt] = struct.Struct(fmt)
        end = self.p + s.size
        if end > len(self.b):
            raise Short
        value = s.unpack_from(self.b, self.p)[0]
        self.p = end
        return value

    def uvarint(self) -> int:
        """An unsigned LEB128 varint of at most five bytes (Kafka's unsigned varint, Elasticsearch's vInt)."""
        value = shift = 0
        while shift < 35:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise Short  # longer than an int32 varint
