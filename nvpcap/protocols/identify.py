"""The identification engine: offers each undecided flow's first payload to the candidate probes.

Per flow and direction it keeps the first bytes in order (TCP: the stream as session/stream.py delivers it;
UDP: the first datagram), bounded by PROBE_BYTES and PROBE_PACKETS, and every chunk, so the parser of the
protocol that wins reads the flow from its first byte. After
each new payload packet it asks every probe that has not said NO; the first YES (in registry order) settles
the flow and its bytes are dropped. A flow that spends its budget, or ends undecided, gets one last call
with `final=True`. A flow whose payload every probe rejected stays `unknown`; only a flow without payload to
judge takes the protocol registered for its server port (confidence `port`).
"""
from __future__ import annotations

from ..session.stream import Chunk
from .base import PROBE_BYTES, PROBE_PACKETS, FlowContext, ProtocolSpec, Verdict

MAX_HELD_BYTES = 64 << 20  # all undecided flows' bytes together; beyond it the oldest are decided at once
YES, MAYBE, NO = Verdict.YES, Verdict.MAYBE, Verdict.NO


class _Direction:
    """The first bytes one side sent, in order (what the probes see). `data` is immutable bytes: the first
    chunk itself in the common case (no copy), a new concatenation when a later one adds to it (<= PROBE_BYTES)."""

    __slots__ = ("broken", "data", "packets")

    def __init__(self) -> None:
        self.data = b""
        self.packets = 0
        self.broken = False  # a gap was given up: later bytes do not continue `data`


class _Flow:
    """An undecided flow: its context, the probes still in the running, the bytes so far, and every chunk
    in arrival order (side, chunk) so the parser that wins can read the flow from its start."""

    __slots__ = ("candidates", "chunk_bytes", "chunks", "ctx", "preferred", "sides")

    def __init__(self, ctx: FlowContext, candidates: tuple[ProtocolSpec, ...], preferred: ProtocolSpec | None) -> None:
        self.ctx = ctx
        self.candidates = candidates  # shared by the flows of a transport until narrowed (never changed in place)
        self.preferred = preferred  # the protocol registered for the server port: asked alone while it says MAYBE
        self.sides = (_Direction(), _Direction())
        self.chunks: list[tuple[int, Chunk]] = []
        self.chunk_bytes = 0


class Identifier:
    """Identification state for the flows of one capture file."""

    def __init__(self, protocols: tuple[ProtocolSpec, ...]):
        self.by_transport = {t: tuple(p for p in protocols if t in p.transports) for t in ("tcp", "udp")}
        self.port_table: dict[tuple[str, int], ProtocolSpec] = {}
        for p in protocols:
            for t in p.transports:
                for port in p.ports:
                    self.port_table.setdefault((t, port), p)
        self.flows: dict[int, _Flow] = {}  # serial -> undecided flow, oldest first
        self.held_bytes = 0  # bytes held for undecided flows
        self.forced = 0  # flows decided early because MAX_HELD_BYTES was reached
        # serial -> app proven by payload, or None when every probe rejected it; kept until the record is built
        self.verdicts: dict[int, str | None] = {}
        # serial -> the chunks of flows settled but not yet handed to a parser (see take_chunks)
        self.settled: dict[int, list[tuple[int, Chunk]]] = {}

    def offer(self, serial: int, side: int, transport: str, client_port: int, server_port: int, midstream: bool,
              chunk: Chunk) -> bool:
        """The next in-order piece of one side of an undecided flow (TCP: a stretch of the byte stream or a
        gap; UDP: a datagram). Returns True when the flow is settled (its chunks then wait in `settled`)."""
        return self.offer_chunk(serial, side, FlowContext(transport, client_port, server_port, midstream), chunk)

    def offer_chunk(self, serial: int, side: int, ctx: FlowContext, chunk: Chunk) -> bool:
        """`offer` with the flow's context as the app layer holds it (kept for the flow when it is new: the
        probes see it)."""
        flow = self.flows.get(serial)
        if flow is None:
            flow = self.flows[serial] = _Flow(ctx, self.by_transport.get(ctx.transport, ()),
                                              self.port_table.get((ctx.transport, ctx.server_port)))
        tcp = flow.ctx.transport == "tcp"
        data = chunk.data
        n = len(data)
        flow.chunks.append((side, chunk))
        flow.chunk_bytes += n
        self.held_bytes += n
        sides = flow.sides
        d = sides[side]
        d.packets += 1
        before = len(d.data)
        if chunk.missing:
            d.broken = True
        elif tcp:
            if not d.broken and before < PROBE_BYTES:
                d.data += data[: PROBE_BYTES - before]
        elif not before:
            d.data = bytes(data[:PROBE_BYTES])  # UDP: probes see the first datagram of each side
        c, s = sides
        if tcp:  # each side full: PROBE_PACKETS packets or PROBE_BYTES bytes
            budget_spent = (c.packets >= PROBE_PACKETS or len(c.data) >= PROBE_BYTES) and \
                (s.packets >= PROBE_PACKETS or len(s.data) >= PROBE_BYTES)
        else:
            # both first datagrams seen: nothing more will change what the probes see
            budget_spent = bool(c.data and s.data) or c.packets + s.packets >= PROBE_PACKETS
        if len(d.data) == before and not budget_spent:
            settled = False  # nothing new to judge (a gap, a second datagram)
        else:
            settled = self._ask(serial, flow, final=budget_spent)
        if self.held_bytes > MAX_HELD_BYTES:
            self._shed()
        return settled

    def _shed(self) -> None:
        """Memory stays bounded whatever the traffic: decide the oldest undecided flows on what they have."""
        while self.flows and self.held_bytes > MAX_HELD_BYTES // 2:
            serial, flow = next(iter(self.flows.items()))
            self.forced += 1
            self._ask(serial, flow, final=True)

    def _ask(self, serial: int, flow: _Flow, final: bool) -> bool:
        client, server = flow.sides[0].data, flow.sides[1].data
        ctx = flow.ctx
        if final:  # (the constructor: namedtuple._replace is several times slower)
            ctx = FlowContext(ctx.transport, ctx.client_port, ctx.server_port, ctx.midstream, True)
        if flow.preferred is not None:
            # Most flows speak the protocol of their port: ask it alone first, which keeps the common case to
            # one probe call per packet. The others are asked once it says NO, or on the final call.
            try:  # (_safe, inlined: the call per packet of the common case)
                verdict = flow.preferred.probe(client, server, ctx)
            except Exception:  # noqa: BLE001 - see _safe
                verdict = NO
            if verdict == YES:
                return self._settle(serial, flow.preferred.name)
            if verdict == MAYBE and not final:
                return False
            flow.candidates = tuple(c for c in flow.candidates if c is not flow.preferred)
            flow.preferred = None
        still: list[ProtocolSpec] = []
        for spec in flow.candidates:
            verdict = _safe(spec, client, server, ctx)
            if verdict == YES:
                return self._settle(serial, spec.name)
            if verdict == MAYBE:
                still.append(spec)
        flow.candidates = tuple(still)
        if not still or final:
            return self._settle(serial, None)
        return False

    def _settle(self, serial: int, app: str | None) -> bool:
        self.verdicts[serial] = app
        flow = self.flows.pop(serial)
        self.held_bytes -= flow.chunk_bytes
        self.settled[serial] = flow.chunks
        return True

    def take_chunks(self, serial: int) -> list[tuple[int, Chunk]]:
        """The chunks a settled flow sent while undecided (for its parser), handed over once."""
        return self.settled.pop(serial, [])

    def app_of(self, serial: int) -> str | None:
        """The app proven for a settled flow so far (None: undecided or rejected)."""
        return self.verdicts.get(serial)

    def decide(self, serial: int) -> None:
        """The flow ends undecided: settle it on the evidence there is."""
        flow = self.flows.get(serial)
        if flow is not None:
            self._ask(serial, flow, final=True)

    def verdict(self, serial: int, transport: str, server_port: int) -> tuple[str, str]:
        """The flow's (app_proto, app_confidence) when its record is built; forgets the flow."""
        flow = self.flows.get(serial)
        if flow is not None:
            self._ask(serial, flow, final=True)
        if serial in self.verdicts:
            app = self.verdicts.pop(serial)
            return (app, "dpi") if app is not None else ("unknown", "none")
        return self.by_port(transport, server_port)

    def by_port(self, transport: str, server_port: int) -> tuple[str, str]:
        """(app_proto, app_confidence) when there is no payload to judge: the server port suggests it."""
        spec = self.port_table.get((transport, server_port))
        return (spec.name, "port") if spec is not None else ("unknown", "none")


def _safe(spec: ProtocolSpec, client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    """A probe's verdict; a probe that raises is a bug, and must not stop the analysis: "not mine"."""
    try:
        return spec.probe(client, server, ctx)
    except Exception:  # noqa: BLE001 - see docstring
        return Verdict.NO
