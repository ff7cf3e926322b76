"""Apache ActiveMQ: OpenWire and STOMP.

Spec: ActiveMQ "OpenWire Version 2 Specification" (activemq.apache.org/components/classic/documentation/
openwire-version-2-specification): every command is an int32 size + a data-structure type byte; both peers
first send WIREFORMAT_INFO (type 1) whose body starts with the magic "ActiveMQ" and an int32 version.
STOMP 1.0-1.2 (stomp.github.io/stomp-specification-1.2.html "Frames"): a command line, "name:value" header
lines, a blank line, a body and a NUL; a session opens with CONNECT/STOMP, answered by CONNECTED/ERROR.
Mid-stream: two chained OpenWire commands carrying an "ID:..." identifier, or a STOMP SEND/SUBSCRIBE... frame.
"""
from __future__ import annotations

import re
import struct

from .base import FlowContext, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

MAGIC = b"ActiveMQ"
CLIENT_FRAMES = (b"CONNECT", b"STOMP", b"SEND", b"SUBSCRIBE", b"UNSUBSCRIBE", b"BEGIN", b"COMMIT", b"ABORT",
                 b"ACK", b"NACK", b"DISCONNECT")
SERVER_FRAMES = (b"CONNECTED", b"MESSAGE", b"RECEIPT", b"ERROR")
OPENING = (b"CONNECT", b"STOMP")
COMMANDS = set(range(1, 35)) | {40, 60, 61, 65, 90}  # CommandTypes: top-level commands
MAX_COMMAND = 64 * 1024 * 1024
_HEADER = re.compile(rb"[^:\r\n\0]{1,128}:[^\r\n\0]{0,1024}\Z")
CONNECT_HEADERS = (b"accept-version", b"host", b"login", b"passcode", b"heart-beat", b"client-id")


def _openwire(b: bytes) -> Verdict:
    """WIREFORMAT_INFO: size, type 1, "ActiveMQ", version."""
    if len(b) < 17:
        want = b"\0"  # size < 16 MiB
        if b[:1] not in (b"", want) or (len(b) > 4 and b[4] != 1) or not MAGIC.startswith(b[5:13]):
            return NO
        return MAYBE
    size, kind = struct.unpack_from(">IB", b)
    version = struct.unpack_from(">I", b, 13)[0]
    return YES if kind == 1 and b[5:13] == MAGIC and 13 <= size < 1 << 24 and 1 <= version <= 100 else NO


def _commands(b: bytes) -> tuple[Verdict, int]:
    """Mid-stream OpenWire: chained commands (size, type). Returns (verdict of the walk, complete commands)."""
    off = count = 0
    while off < len(b) and count < 8:
        h = b[off : off + 10]
        if len(h) < 5:
            return (MAYBE if h[:1] in (b"", b"\0") else NO), count
        size, kind = struct.unpack_from(">IB", h)
        if not 1 <= size <= MAX_COMMAND or kind not in COMMANDS:
            return NO, count
        if len(b) < off + 4 + size:
            break
        count, off = count + 1, off + 4 + size
    return (YES if count else MAYBE), count


def _openwire_midstream(c: bytes, s: bytes, final: bool) -> Verdict:
    results = [_commands(b) for b in (c, s) if b]
    if not results or any(v == NO for v, _ in results):
        return NO
    total = sum(n for _, n in results)
    # ConnectionId, SessionId, ProducerId, ConsumerId, MessageId values are strings starting "ID:"
    named = any(b"ID:" in b[:512] for b in (c, s))
    return YES if total >= 2 and named else MAYBE


def _stomp(b: bytes, commands: tuple) -> tuple[Verdict, bytes, list[bytes]]:
    """One STOMP frame head: (verdict, command, header names). YES once the blank line ends the headers."""
    b = b.lstrip(b"\r\n")  # heart-beats
    if not b:
        return MAYBE, b"", []
    lines = b[:4096].split(b"\n")
    command = lines[0].rstrip(b"\r")
    if len(lines) == 1:
        return (MAYBE if any(c.startswith(command) for c in commands) else NO), b"", []
    if command not in commands:
        return NO, b"", []
    names = []
    for i, line in enumerate(lines[1:], 1):
        line = line.rstrip(b"\r")
        last = i == len(lines) - 1
        if not line and not last:
            return (YES if names or command == b"DISCONNECT" else NO), command, names
        if last:  # an incomplete line
            return (MAYBE if len(line) < 1200 and b"\0" not in line else NO), command, names
        if not _HEADER.match(line):
            return NO, command, names
        names.append(line.split(b":", 1)[0].lower())
    return MAYBE, command, names


def _stomp_flow(c: bytes, s: bytes, final: bool, midstream: bool) -> Verdict:
    vc, command, names = _stomp(c, OPENING if not midstream else CLIENT_FRAMES)
    if vc == NO or not c:
        return NO
    if s:
        vs, _, _ = _stomp(s, SERVER_FRAMES)
        if vs == NO:
            return NO
        if vc == YES and vs == YES:
            return YES
    if vc == YES and final:
        if command in OPENING:
            return YES if any(n in CONNECT_HEADERS for n in names) else NO
        return YES if b"destination" in names or b"id" in names or b"receipt" in names else MAYBE
    return MAYBE


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    sides = [_openwire(b) for b in (client, server) if b]  # both peers open with WIREFORMAT_INFO
    openwire = NO if NO in sides else YES if YES in sides else MAYBE
    if openwire == YES:
        return YES
    stomp = _stomp_flow(client, server, ctx.final, ctx.midstream)
    if ctx.midstream:
        stomp = max(stomp, _stomp_flow(server, client, ctx.final, True))
        openwire = max(openwire, _openwire_midstream(client, server, ctx.final))
    return max(openwire, stomp)


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="activemq",
    transports=("tcp",),
    ports=(61616, 61613),
    probe=probe,
    description="ActiveMQ: OpenWire WIREFORMAT_INFO with magic 'ActiveMQ'; STOMP CONNECT/CONNECTED frames",
)
