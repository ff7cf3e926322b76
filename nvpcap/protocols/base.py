"""What every application-protocol module declares, and the verdict its probe returns.

Identification (is this protocol?) is a *probe*: a pure function of the first payload bytes seen in each
direction of a flow, called again as more bytes arrive, until it answers YES or NO. Parsing (what does it
say?) and output stay in separate code, as in Zeek.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, NamedTuple


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


@dataclass(frozen=True)
class ProtocolSpec:
    """One application protocol: its name (the canonical app names of ../shared/pcaps/README.md), where it
    runs, and its probe."""

    name: str
    transports: tuple[str, ...]
    ports: tuple[int, ...]
    probe: Probe
    description: str = ""


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
