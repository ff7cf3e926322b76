"""SSH: the identification string `SSH-protoversion-softwareversion SP comments CR LF` (RFC 4253 §4.2; RFC 4253
allows the server to send other text lines first; old versions end the line with LF only).

NeuVector (dpi_ssh.c): banner `SSH-<1|2>.<digit>...` of at least 8 printable bytes from either side, on any
port; finalized on the server banner. Here: a complete banner line from either side, while the other side is
empty or consistent with SSH; protoversion 2.0, 1.99 or 1.x.
"""
from __future__ import annotations

from nvpcap.protocols.base import FlowContext, ProtocolSpec, Verdict

MAX_LINE = 255  # RFC 4253 §4.2: at most 255 characters including CR LF
MAX_PRE_LINES = 8  # server text lines accepted before its banner
PRINTABLE = bytes(range(0x20, 0x7F))
DIGITS = frozenset(b"0123456789")

YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


def banner(buf: bytes, start: int = 0) -> Verdict:
    """Does buf[start:] begin with an identification line? YES complete, MAYBE a valid prefix, NO."""
    line = buf[start : start + MAX_LINE]
    eol = line.find(b"\n")
    text = line[:eol] if eol >= 0 else line
    if text.endswith(b"\r"):
        text = text[:-1]
    if text[:4] != b"SSH-"[: len(text)]:
        return NO
    dash = text.find(b"-", 4)
    version = text[4 : dash if dash >= 0 else len(text)]
    # protoversion: "2.0", "1.99", "1.5": a major digit 1 or 2, a dot, one or two digits
    if version[:1] and version[0] not in b"12" or version[1:2] and version[1] != 0x2E:
        return NO
    if len(version) > 4 or not all(c in DIGITS for c in version[2:]):
        return NO
    if text.translate(None, PRINTABLE):
        return NO  # a control byte in the line
    if eol < 0:
        return MAYBE if len(line) < MAX_LINE else NO
    return YES if dash >= 0 and len(version) >= 3 and len(text) > dash + 1 else NO


def _server(buf: bytes) -> Verdict:
    """The server banner, possibly after a few other text lines (RFC 4253 §4.2)."""
    start = 0
    for _ in range(MAX_PRE_LINES):
        v = banner(buf, start)
        if v != NO or buf[start : start + 4] == b"SSH-"[: len(buf) - start]:
            return v
        eol = buf.find(b"\n", start, start + MAX_LINE)
        if buf[start : eol if eol >= 0 else start + MAX_LINE].translate(None, PRINTABLE + b"\r\t"):
            return NO  # a pre-banner line must be text
        if eol < 0:
            return MAYBE if len(buf) - start < MAX_LINE else NO
        start = eol + 1
        if start >= len(buf):
            return MAYBE
    return NO


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    try:
        c = banner(client) if client else MAYBE
        s = _server(server) if server else MAYBE
        if NO in (c, s):
            if YES in (c, s):
                return YES if ctx.final else MAYBE  # one banner, and foreign bytes the other way
            return NO
        if YES in (c, s):
            return YES
        return NO if ctx.final else MAYBE
    except Exception:  # never raise on capture bytes
        return NO


SPEC = ProtocolSpec(
    name="ssh",
    transports=("tcp",),
    ports=(22, 2222),
    probe=probe,
    description="SSH: SSH-2.0-/SSH-1.x- identification line from either side",
)
