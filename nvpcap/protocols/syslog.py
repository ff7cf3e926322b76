"""Syslog: `<PRI>` (PRI = facility * 8 + severity, 0-191, no leading zeros) followed by a text header: RFC 5424
`VERSION SP TIMESTAMP SP HOSTNAME ...`, or the BSD format of RFC 3164 (`Mmm dd hh:mm:ss host tag: msg`, often
mangled by devices). UDP (RFC 5426) one message per datagram; TCP (RFC 6587) either LF-terminated messages or
octet-counted frames `MSG-LEN SP <PRI>...`.

Not in NeuVector. Identified on any port (real traffic uses many): the PRI must be well formed and followed by
printable text (UTF-8 allowed); syslog has no answer, so a side that answers must be sending syslog too.
"""
from __future__ import annotations

import re

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext, Parser, ParserOutput, ProtocolSpec, Verdict

MAX_PRI = 191
MIN_TEXT = 4  # printable bytes needed after <PRI> for a plausible header
CHECKED = 64  # bytes of header checked for text
MAX_COUNT_DIGITS = 5  # RFC 6587 octet counting: MSG-LEN
TEXT = bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100)) + b"\t\r\n"
DIGITS = frozenset(b"0123456789")
COUNT_START = frozenset(b"123456789")

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def message(buf: bytes, whole: bool) -> Verdict:
    """YES: a syslog message start; MAYBE: a valid prefix (only if not whole); NO."""
    start = 0
    if not whole and buf[0] in COUNT_START:  # RFC 6587 octet counting: "MSG-LEN SP" before <PRI>
        sp = buf.find(b" ", 0, MAX_COUNT_DIGITS + 1)
        count = buf[: sp if sp >= 0 else MAX_COUNT_DIGITS + 1]
        if not all(c in DIGITS for c in count):
            return NO
        if sp < 0:
            return MAYBE if len(buf) <= MAX_COUNT_DIGITS else NO
        start = sp + 1
    head = buf[start : start + 5]  # "<191>" at most
    if not head:
        return MAYBE
    if head[0] != 0x3C:
        return NO
    close = head.find(b">")
    pri = head[1 : close if close >= 0 else len(head)]
    if not all(c in DIGITS for c in pri) or (len(pri) > 1 and pri[0] == 0x30):
        return NO
    if close < 0:
        return NO if whole or len(head) == 5 else MAYBE
    if not pri or int(pri) > MAX_PRI:
        return NO
    text = buf[start + close + 1 : start + close + 1 + CHECKED]
    if text.translate(None, TEXT):
        return NO  # control bytes: not a text header
    stripped = text.strip()
    if len(stripped) >= MIN_TEXT or (b"\n" in text and stripped):
        return YES
    return NO if whole or len(text) >= CHECKED else MAYBE


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        whole = ctx.transport == "udp"
        c = message(client, whole) if client else MAYBE
        s = message(server, whole) if server else MAYBE
        if NO in (c, s):
            return NO
        if YES in (c, s):
            return YES
        return NO if ctx.final else MAYBE
    except Exception:  # never raise on capture bytes
        return NO


# ---- parsing: RFC 5424 and RFC 3164 headers; TCP framing of RFC 6587 ----

FACILITIES = ("KERN", "USER", "MAIL", "DAEMON", "AUTH", "SYSLOG", "LPR", "NEWS", "UUCP", "CRON", "AUTHPRIV", "FTP",
              "NTP", "AUDIT", "ALERT", "CLOCK", *(f"LOCAL{i}" for i in range(8)))  # RFC 5424 §6.2.1 table 1
SEVERITIES = ("EMERG", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG")  # table 2
MAX_MESSAGE = 1024  # characters of MSG kept in an event
MAX_FIELD = 255  # RFC 5424 §6: HOSTNAME 255, APP-NAME 48, PROCID 128, MSGID 32 (longer kept up to this)
MAX_FRAME = 65536  # bytes of one TCP message buffered; longer ones are skipped
MAX_COUNT_DIGITS = 9
MONTHS = frozenset((b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"))
BOM = b"\xef\xbb\xbf"  # RFC 5424 §6.4: MSG-UTF8 starts with it
NIL = b"-"
TAG_END = b":["
TRAILER = b"\r\n\0 "


def _s(raw: bytes | None, limit: int = MAX_FIELD) -> str | None:
    if raw is None or raw == NIL:
        return None
    return raw.decode("utf-8", "replace")[:limit]


def _bsd_timestamp(text: bytes) -> bool:
    """RFC 3164 §4.1.2 TIMESTAMP "Mmm dd hh:mm:ss" (day padded with a space)."""
    return (len(text) >= 15 and text[:3] in MONTHS and text[3] == 0x20 and text[6] == 0x20
            and text[9] == text[12] == 0x3A and text[7:9].isdigit() and text[10:12].isdigit()
            and text[13:15].isdigit())


# the STRUCTURED-DATA that _structured_data_steps walks, in one C call: outside quotes any byte but `"` and
# `]`, or a `]` followed by `[` (the next element); a quoted value to its closing `"`, `\\` escaping one byte;
# it ends at the first `]` outside quotes that no `[` follows
_SD = re.compile(rb'\[(?:[^"\]]|\](?=\[)|"(?:[^"\\]|\\.)*")*\](?!\[)', re.DOTALL)


def _structured_data(text: bytes) -> int:
    """Length of the STRUCTURED-DATA at the start of text (RFC 5424 §6.3): "-", or [elements] whose quoted
    values may hold \\" \\] \\\\ escapes. The pattern reads the common, closed form; an unclosed one (cut, or
    a stray quote) is walked byte by byte."""
    if text[:1] != b"[":
        return 1 if text[:1] == NIL else 0
    whole = _SD.match(text)
    return whole.end() if whole is not None else _structured_data_steps(text)


def _structured_data_steps(text: bytes) -> int:
    """_structured_data byte by byte (text starts with "["): where the elements end, len(text) if they do not."""
    i, quoted = 0, False
    while i < len(text):
        c = text[i]
        if quoted:
            if c == 0x5C:
                i += 1
            elif c == 0x22:
                quoted = False
        elif c == 0x22:
            quoted = True
        elif c == 0x5D and text[i + 1 : i + 2] != b"[":
            return i + 1
        i += 1
    return len(text)


def parse(msg: bytes) -> dict:
    """The event fields of one syslog message (PRI and the header that follows it, when there is one)."""
    fields: dict = {"facility": None, "severity": None, "version": None, "timestamp": None, "hostname": None,
                    "program": None, "pid": None, "msgid": None, "structured_data": None}
    body = msg.rstrip(TRAILER)
    close = body.find(b">", 0, 5)
    if body[:1] == b"<" and 1 < close and body[1:close].isdigit():
        pri = int(body[1:close])
        if pri <= MAX_PRI:
            fields["facility"], fields["severity"] = FACILITIES[pri >> 3], SEVERITIES[pri & 7]
            body = body[close + 1 :]
    parts = body.split(b" ", 6) if body[:2] == b"1 " else []  # RFC 5424: VERSION (1) SP TIMESTAMP SP ...
    if len(parts) >= 6 and (parts[1] == NIL or (parts[1][:4].isdigit() and parts[1][4:5] == b"-")):
        fields["version"] = 1
        fields["timestamp"], fields["hostname"] = _s(parts[1]), _s(parts[2])
        fields["program"], fields["pid"], fields["msgid"] = _s(parts[3]), _s(parts[4]), _s(parts[5])
        rest = parts[6] if len(parts) > 6 else b""
        n = _structured_data(rest)
        fields["structured_data"] = _s(rest[:n] or None, MAX_MESSAGE)
        body = (rest[n + 1 :] if n else rest).removeprefix(BOM)
    elif _bsd_timestamp(body):  # RFC 3164 §4.1.2: TIMESTAMP SP HOSTNAME SP TAG[pid]: MSG
        fields["timestamp"] = _s(body[:15])
        host, _, rest = body[16:].partition(b" ")
        fields["hostname"] = _s(host) or None
        tag = rest.split(b" ", 1)[0]
        colon, bracket = tag.find(b":"), tag.find(b"[")
        end = colon if bracket < 0 else bracket if colon < 0 else min(colon, bracket)  # the first one, or -1
        if end > 0:
            fields["program"] = _s(tag[:end])
            if tag[end : end + 1] == b"[":
                fields["pid"] = _s(tag[end + 1 : tag.find(b"]", end)] or None) if b"]" in tag else None
            body = rest[len(tag) :].lstrip(b" ")
        else:
            body = rest
    fields["message"] = body.decode("utf-8", "replace")[:MAX_MESSAGE]
    return fields


class SyslogParser(Parser):
    """One event per syslog message (Zeek's syslog.log, plus the header fields of RFC 5424 / RFC 3164).
    UDP: one message per datagram (RFC 5426 §3.1). TCP (RFC 6587): each message is either octet-counted
    (`MSG-LEN SP MSG`, §3.4.1) or ends with LF (§3.4.2), decided per message by its first byte; a message
    longer than 64 KiB is skipped (by its count, or to the next LF)."""

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.tcp = ctx.transport == "tcp"
        self.bufs = [bytearray(), bytearray()]
        self.starts: list[tuple[int, int] | None] = [None, None]
        self.skip = [0, 0]  # bytes of an oversized octet-counted message still to skip
        self.skip_line = [False, False]  # discarding an oversized LF-framed message up to its LF

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if not self.tcp:
            self._emit(data, frame, ts_ns)
            return
        if self.lost[side]:
            return
        if self.skip[side]:
            n = min(self.skip[side], len(data))
            self.skip[side] -= n
            data = data[n:]
        buf = self.bufs[side]
        if not buf and self.starts[side] is None and not self.skip_line[side]:
            data = self._whole(data, frame, ts_ns)  # the common case: whole messages straight from the chunk
        if data and self.starts[side] is None:
            self.starts[side] = (frame, ts_ns)
        buf += data
        while buf and not self.lost[side] and self._frame(side, buf, frame, ts_ns):
            self.starts[side] = (frame, ts_ns) if buf else None
        if len(buf) > MAX_FRAME + MAX_COUNT_DIGITS + 1:  # (an octet-counted message may take all of it)
            self.anomaly_once("syslog-message-too-long", f"no end of message within {MAX_FRAME} bytes", frame, ts_ns)
            buf.clear()
            self.skip_line[side] = True
            self.starts[side] = None

    def _whole(self, data: bytes, frame: int, ts_ns: int) -> bytes:
        """feed's fast path, for a side that holds and skips nothing: emit the messages that lie whole in the
        chunk, cut straight from it (no copy into the buffer and out again), as _frame would. Returns the rest,
        from the first message that is unfinished or unusual (a bad or over-long count), for _frame."""
        if type(data) is not bytes:
            data = bytes(data)
        off, n = 0, len(data)
        while off < n:
            c = data[off]
            if c > 0x39 or c < 0x30:  # LF framing (RFC 6587 §3.4.2)
                eol = data.find(b"\n", off)
                if eol < 0:
                    break
                msg = data[off:eol]
                off = eol + 1
                if msg.strip(TRAILER):
                    self._emit(msg, frame, ts_ns)
                continue
            sp = data.find(b" ", off, off + MAX_COUNT_DIGITS + 1)  # octet counting (§3.4.1)
            if c == 0x30 or sp < 0 or not data[off:sp].isdigit():
                break
            end = sp + 1 + int(data[off:sp])
            if end - sp - 1 > MAX_FRAME or end > n:
                break
            self._emit(data[sp + 1 : end], frame, ts_ns)
            off = end
        return data[off:] if off else data

    def _frame(self, side: int, buf: bytearray, frame: int, ts_ns: int) -> bool:
        """Take one message off buf if it is complete; False when more bytes are needed."""
        start = self.starts[side] or (frame, ts_ns)
        if self.skip_line[side] or not buf[:1].isdigit():
            eol = buf.find(b"\n")
            if eol < 0:
                return False
            msg = bytes(buf[:eol])
            del buf[: eol + 1]
            if self.skip_line[side]:
                self.skip_line[side] = False
            elif msg.strip(TRAILER):
                self._emit(msg, *start)
            return True
        sp = buf.find(b" ", 0, MAX_COUNT_DIGITS + 1)
        if sp < 0 or not buf[:sp].isdigit() or buf[0] == 0x30:
            if sp >= 0 or len(buf) > MAX_COUNT_DIGITS:
                self.anomaly_once("syslog-bad-framing", "neither an octet count nor a <PRI> starts the message",
                              frame, ts_ns)
                self.mark_lost(side)
                buf.clear()
            return False
        count = int(buf[:sp])
        if count > MAX_FRAME:
            self.anomaly_once("syslog-message-too-long", f"octet count {count}", frame, ts_ns)
            have = len(buf) - sp - 1
            self.skip[side] = max(0, count - have)
            del buf[: sp + 1 + min(count, have)]
            return True
        if len(buf) < sp + 1 + count:
            return False
        msg = bytes(buf[sp + 1 : sp + 1 + count])
        del buf[: sp + 1 + count]
        self._emit(msg, *start)
        return True

    def _emit(self, msg: bytes, frame: int, ts_ns: int) -> None:
        fields = parse(msg)
        if fields["facility"] is None:
            self.anomaly_once("syslog-bad-pri", "a message without a valid <PRI>", frame, ts_ns)
        self.out.event(fields, frame, ts_ns)

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        """Lost bytes: resynchronise at the next LF (a count cannot be found again)."""
        self.bufs[side].clear()
        self.skip[side] = 0
        self.skip_line[side] = True
        self.starts[side] = None

    def finish(self) -> None:
        for side in (CLIENT, SERVER):  # a last LF-framed message without its LF
            buf = self.bufs[side]
            if buf and not self.skip_line[side] and not self.lost[side] and not buf[:1].isdigit():
                self._emit(bytes(buf), *(self.starts[side] or (0, 0)))
            buf.clear()


SPEC = ProtocolSpec(
    name="syslog",
    transports=("udp", "tcp"),
    ports=(514, 601, 6514),
    probe=probe,
    description="Syslog: <PRI> (0-191) and a printable header, UDP or TCP (LF or octet-counted framing)",
    parser=SyslogParser,
    extracts="per message: facility, severity, version, timestamp, hostname, program, pid, msgid, structured data, "
             "message (<= 1024 chars); RFC 5424 and RFC 3164 headers",
)
