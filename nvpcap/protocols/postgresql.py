"""PostgreSQL frontend/backend protocol v3.

Spec: PostgreSQL docs, chapter "Frontend/Backend Protocol", sections "Message Flow" and "Message Formats".
A connection starts with an untyped message: int32 length + int32 code: StartupMessage (3.x, then
NUL-terminated key/value pairs ending in an empty key), SSLRequest (8, 80877103), GSSENCRequest (8, 80877104)
or CancelRequest (16, 80877102). The server answers 'S'/'N' (SSL), 'G'/'N' (GSS), or with a typed message:
'R' Authentication, 'E' ErrorResponse, 'v' NegotiateProtocolVersion. NeuVector (dpi_postgresql.c) uses the
same rules. Every later message is typed: 1 type byte + int32 length (counting itself); mid-stream flows are
identified by walking these messages (frontend and backend have separate type tables).
"""
from __future__ import annotations

import struct

from .base import FlowContext, guarded, ProtocolSpec, Verdict

NO, MAYBE, YES = Verdict.NO, Verdict.MAYBE, Verdict.YES

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
MAX_MSG = 1 << 26

# type -> exact length (None = variable), per "Message Formats"
FRONTEND = {b"Q": None, b"P": None, b"B": None, b"E": None, b"D": None, b"C": None, b"S": 4, b"H": 4, b"X": 4,
            b"F": None, b"d": None, b"c": 4, b"f": None, b"p": None}
BACKEND = {b"R": None, b"S": None, b"K": None, b"Z": 5, b"T": None, b"D": None, b"C": None, b"E": None,
           b"N": None, b"1": 4, b"2": 4, b"3": 4, b"n": 4, b"s": 4, b"I": 4, b"t": None, b"A": None,
           b"G": None, b"H": None, b"W": None, b"d": None, b"c": 4, b"V": None, b"v": None}
# messages whose length or content is checked (see _valid): a walk must contain one to prove anything
FRONTEND_CHECKED = {b"Q", b"C", b"D", b"E", b"S", b"H", b"X", b"c"}
BACKEND_CHECKED = {b"Z", b"R", b"K", b"E", b"N", b"C", b"S", b"1", b"2", b"3", b"n", b"s", b"I", b"c"}


def _startup(c: bytes) -> Verdict:
    """The client's first (untyped) message."""
    if len(c) < 8:
        if len(c) >= 4 and not 8 <= struct.unpack_from(">I", c)[0] <= 10000:
            return NO
        return MAYBE if c[:1] in (b"", b"\0") else NO
    length, code = struct.unpack_from(">II", c)
    if code in (SSL_REQUEST, GSS_REQUEST):
        return YES if length == 8 else NO
    if code == CANCEL_REQUEST:
        return YES if length == 16 else NO
    if code >> 16 != 3 or code & 0xFFFF > 2 or not 9 <= length <= 10000:  # protocol 3.0 .. 3.2
        return NO
    params = c[8:length]
    first = params.split(b"\0", 1)[0]
    if not all(0x20 < x < 0x7F for x in first[:64]):
        return NO
    if len(c) < length:
        return MAYBE
    if not params.endswith(b"\0\0") or not first:
        return NO
    fields = params[:-2].split(b"\0")
    return YES if len(fields) % 2 == 0 and b"user" in fields[::2] else NO


def _first_answer(c: bytes, s: bytes) -> Verdict:
    """The server's answer to the startup-phase request."""
    code = struct.unpack_from(">I", c, 4)[0]
    if code in (SSL_REQUEST, GSS_REQUEST) and s[:1] in (b"S", b"N", b"G"):
        return YES if s[:1] != b"G" or code == GSS_REQUEST else NO
    if s[:1] not in (b"R", b"E", b"v"):
        return NO
    v, _, strong = _walk(s, True)
    return YES if v != NO and strong else v


def _valid(t: bytes, body: bytes, backend: bool) -> bool:
    """Content checks on a complete message where the format makes them cheap."""
    if t == b"Q":  # Query: one C string
        return body.endswith(b"\0") and b"\0" not in body[:-1]
    if t == b"Z":  # ReadyForQuery: transaction status
        return body in (b"I", b"T", b"E")
    if t == b"R":  # Authentication: request code 0..12
        return len(body) >= 4 and struct.unpack_from(">I", body)[0] <= 12
    if t == b"K":  # BackendKeyData: pid + key
        return len(body) >= 8
    if backend and t in (b"E", b"N"):  # Error/Notice fields: code letter + C string, ending in a NUL
        return body.endswith(b"\0") and body[:1].isalpha()
    if backend and t == b"C":  # CommandComplete: printable tag
        return body.endswith(b"\0") and all(0x20 <= x < 0x7F for x in body[:-1])
    if backend and t == b"S":  # ParameterStatus: name, value
        return body.endswith(b"\0") and body.count(b"\0") == 2
    if not backend and t in (b"C", b"D"):  # Close / Describe: 'S' or 'P' + name
        return body[:1] in (b"S", b"P") and body.endswith(b"\0")
    if not backend and t == b"E":  # Execute: portal name + int32 max rows
        return len(body) >= 5 and body.find(b"\0") == len(body) - 5
    return True


def _walk(b: bytes, backend: bool) -> tuple[Verdict, int, int]:
    """Walk typed messages from the start of b: (NO or MAYBE, complete valid messages, checked ones)."""
    table, checked = (BACKEND, BACKEND_CHECKED) if backend else (FRONTEND, FRONTEND_CHECKED)
    off = count = strong = 0
    while off < len(b) and count < 8:
        t = b[off : off + 1]
        if t not in table:
            return NO, count, strong
        if len(b) < off + 5:
            break
        length = struct.unpack_from(">I", b, off + 1)[0]
        exact = table[t]
        if length < 4 or length > MAX_MSG or (exact is not None and length != exact):
            return NO, count, strong
        if len(b) < off + 1 + length:
            break
        if not _valid(t, b[off + 5 : off + 1 + length], backend):
            return NO, count, strong
        count += 1
        strong += t in checked
        off += 1 + length
    return MAYBE, count, strong


def _typed(c: bytes, s: bytes, final: bool) -> Verdict:
    """Mid-stream: typed frontend messages from the client and backend messages from the server. Proof: a
    message each way, or three chained one way (two on the last call), with one content-checked message."""
    vc, nc, kc = _walk(c, False)
    vs, ns, ks = _walk(s, True)
    if NO in (vc, vs):
        return NO
    if not kc + ks:
        return MAYBE
    if (nc and ns) or (not s and nc >= (2 if final else 3)) or (not c and ns >= (2 if final else 3)):
        return YES
    return MAYBE


def _startup_phase(client: bytes, server: bytes, final: bool) -> Verdict:
    if not client:
        return MAYBE if not server else NO  # the frontend always speaks first
    v = _startup(client)
    if v != YES:
        return v
    if not server:
        # no answer: the 8/16-byte magic requests and a complete StartupMessage naming a user are proof
        return YES if final else MAYBE
    return _first_answer(client, server)


def _probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    v = _startup_phase(client, server, ctx.final)
    if ctx.midstream and v != YES:  # typed messages; the client/server guess may be swapped
        v = max(v, _typed(client, server, ctx.final), _typed(server, client, ctx.final))
    return v


probe = guarded(_probe)


SPEC = ProtocolSpec(
    name="postgresql",
    transports=("tcp",),
    ports=(5432,),
    probe=probe,
    description="PostgreSQL v3: Startup/SSL/GSS/Cancel request + R/E/S/N/G answer; mid-stream typed messages",
)
