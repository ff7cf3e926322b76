"""What every application-protocol module declares, and the verdict its probe returns.

Identification (is this protocol?) is a *probe*: a pure function of the first payload bytes seen in each
direction of a flow, called again as more bytes arrive, until it answers YES or NO. Parsing (what does it
say?) and output stay in separate code, as in Zeek.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple, Protocol


class Verdict(IntEnum):
    NO = 0  # not this protocol: stop asking
    MAYBE = 1  # could be: ask again with more bytes
    YES = 2  # this protocol, proven by the payload


class FlowContext(NamedTuple):
    """What a probe may know besides the bytes: ports and transport of the flow (client -> server).
    (A named tuple: one is made per flow on the hot path.)"""

    transport: str  # "tcp" or "udp"
    client_port: int
    server_port: int
    midstream: bool  # TCP flow whose handshake was not seen: the bytes may start inside a message
    final: bool = False  # last call (flow ended or budget spent): answer YES on the best evidence there is


# probe(client_bytes, server_bytes, ctx) -> Verdict. TCP: the first bytes each side sent, in sequence order
# (at most PROBE_BYTES each, possibly empty). UDP: the first datagram each side sent (b"" if none yet).
# A probe must never raise, whatever the bytes: they come from the capture, so they are hostile.
Probe = Callable[[bytes, bytes, FlowContext], Verdict]

PROBE_BYTES = 4096  # bytes per direction offered to probes
PROBE_PACKETS = 10  # payload packets per direction offered before giving up


CLIENT, SERVER = 0, 1  # the `side` of a byte stream: sent by the client (to the server) or by the server


class ParserOutput(Protocol):
    """Where a parser puts what it read. `side` is who sent the bytes that prove it (CLIENT or SERVER);
    `frame`/`ts_ns` are the capture frame and time of the packet where the message starts."""

    def event(self, fields: dict[str, Any], frame: int, ts_ns: int) -> None:
        """One application transaction (a request with its response, a query, a hello, a login, ...)."""

    def threat(self, threat_id: int, message: str, side: int, frame: int, ts_ns: int) -> None:
        """A NeuVector protocol threat (ids in nvpcap/threats.py); the output drops disabled ones."""

    def anomaly(self, reason: str, message: str, frame: int, ts_ns: int) -> None:
        """Something in the stream that does not follow the protocol (Zeek's weird)."""

    def product(self, name: str) -> None:
        """A sub-label for the flow's app (HTTP: the server product, e.g. nginx)."""

    def content(self, context: str, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        """Decoded application content for the DLP/WAF rules (nvpcap/rules): `context` is "url" (the
        percent-decoded request target), "header" (the header block), "body" (de-chunked, decompressed body
        bytes, in order, possibly in several calls) or "sql" (a statement). Parsers pass what they decode;
        the rules engine, when one is configured, scans it."""

    def scans(self, context: str) -> bool:
        """Whether some rule reads `context`: content that costs work to prepare (httpforms' fields) is made
        only then."""


_NONE_LOST = (False, False)
_NONE_REPORTED: frozenset[str] = frozenset()


class Parser:
    """Reads one flow of its protocol after identification, from the flow's first byte.

    TCP: `feed` gets each direction's bytes in order, in the order the packets came; `gap` says bytes were
    lost (the parser resynchronises or stops). UDP: `feed` gets one datagram per call. A parser buffers at
    most what its protocol's messages need (bounded), sets `done` when it wants no more bytes (the pipeline
    stops delivering them, which keeps encrypted or bulk streams off the Python path), and may raise on
    hostile bytes: the caller turns that into an anomaly and stops this parser only.
    """

    done: bool = False

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        self.out = out
        self.ctx = ctx
        # directions that can no longer be followed (see `lose`), and anomaly reasons already reported (see
        # `anomaly_once`): shared empty values until a flow needs its own (one parser per flow: memory)
        self.lost: list[bool] | tuple[bool, bool] = _NONE_LOST
        self.reported: set[str] | frozenset[str] = _NONE_REPORTED

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        raise NotImplementedError

    def gap(self, side: int, missing: int, frame: int, ts_ns: int) -> None:
        """Bytes lost from one direction. The default gives up: message framing cannot be trusted after it."""
        self.done = True

    def finish(self) -> None:
        """The flow ended: emit what is pending (a request never answered, ...)."""

    def lose(self, side: int) -> None:
        """That direction can no longer be followed (its framing is lost): the parser is done once both are."""
        self.mark_lost(side)
        if all(self.lost):
            self.done = True

    def mark_lost(self, side: int) -> None:
        """That direction is no longer read, without the rule of `lose` (a parser that decides itself)."""
        if self.lost is _NONE_LOST:
            self.lost = [False, False]
        self.lost[side] = True  # type: ignore[index]

    def anomaly_once(self, reason: str, message: str, frame: int, ts_ns: int) -> None:
        """An anomaly reported once per flow and reason, as Zeek's flow weirds (a fault tends to repeat)."""
        if reason not in self.reported:
            if self.reported is _NONE_REPORTED:
                self.reported = set()
            self.reported.add(reason)  # type: ignore[union-attr]
            self.out.anomaly(reason, message, frame, ts_ns)


class SideBuffer:
    """Bytes of one direction waiting to form a whole message, never more than `limit`."""

    __slots__ = ("data", "limit")

    def __init__(self, limit: int = 1 << 20) -> None:
        self.data = bytearray()
        self.limit = limit

    def add(self, chunk: bytes) -> bool:
        """Append; False (and nothing kept) when the message would pass the limit."""
        if len(self.data) + len(chunk) > self.limit:
            self.data.clear()
            return False
        self.data += chunk
        return True

    def take(self, n: int) -> bytes:
        out = bytes(self.data[:n])
        del self.data[:n]
        return out


@dataclass(frozen=True)
class ProtocolSpec:
    """One application protocol: its name (the canonical app names of ../shared/pcaps/README.md), where it
    runs, its probe, and its parser (None: identification only)."""

    name: str
    transports: tuple[str, ...]
    ports: tuple[int, ...]
    probe: Probe
    description: str = ""
    parser: Callable[[ParserOutput, FlowContext], Parser] | None = None
    extracts: str = ""  # what the parser's events carry, for `nvpcap protocols`


def guarded(probe: Probe) -> Probe:
    """The probe, made safe: hostile bytes that make it raise count as "not this protocol".
    (Modules export the guarded probe in SPEC and keep the unguarded one for their tests.)"""
    def safe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
        try:
            return probe(client, server, ctx)
        except Exception:  # noqa: BLE001 - see docstring
            return Verdict.NO
    return safe


def either_way_midstream(check: Callable[..., Verdict], pass_midstream: bool = False) -> Probe:
    """A probe from `check(client, server, final)` (or `check(client, server, final, midstream)` with
    pass_midstream). On a mid-stream flow the client/server guess may be swapped (no SYN was seen), so the
    other way round is tried too."""
    def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
        extra = (ctx.midstream,) if pass_midstream else ()
        v = check(client, server, ctx.final, *extra)
        if ctx.midstream and v != Verdict.YES:
            v = max(v, check(server, client, ctx.final, *extra))
        return v
    return probe
