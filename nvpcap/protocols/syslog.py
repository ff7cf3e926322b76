"""Syslog: `<PRI>` (PRI = facility * 8 + severity, 0-191, no leading zeros) followed by a text header: RFC 5424
`VERSION SP TIMESTAMP SP HOSTNAME ...`, or the BSD format of RFC 3164 (`Mmm dd hh:mm:ss host tag: msg`, often
mangled by devices). UDP (RFC 5426) one message per datagram; TCP (RFC 6587) either LF-terminated messages or
octet-counted frames `MSG-LEN SP <PRI>...`.

Not in NeuVector. Identified on any port (real traffic uses many): the PRI must be well formed and followed by
printable text (UTF-8 allowed); syslog has no answer, so a side that answers must be sending syslog too.
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

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


SPEC = ProtocolSpec(
    name="syslog",
    transports=("udp", "tcp"),
    ports=(514, 601, 6514),
    probe=probe,
    description="Syslog: <PRI> (0-191) and a printable header, UDP or TCP (LF or octet-counted framing)",
)
