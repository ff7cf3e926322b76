"""Drive a protocol parser directly, as the application layer does, and record what it reports."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nvpcap.protocols.base import FlowContext, Parser


@dataclass
class Recorder:
    """A ParserOutput that keeps everything."""

    events: list[dict[str, Any]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    threats: list[tuple[int, int]] = field(default_factory=list)  # (threat id, side)
    anomalies: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    contents: list[tuple[str, int, bytes]] = field(default_factory=list)  # (context, side, data)

    def event(self, fields: dict[str, Any], frame: int, ts_ns: int) -> None:
        self.events.append(fields)
        self.frames.append(frame)

    def threat(self, threat_id: int, message: str, side: int, frame: int, ts_ns: int) -> None:
        self.threats.append((threat_id, side))

    def anomaly(self, reason: str, message: str, frame: int, ts_ns: int) -> None:
        self.anomalies.append(reason)

    def product(self, name: str) -> None:
        self.products.append(name)

    def content(self, context: str, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        self.contents.append((context, side, data))

    def scans(self, context: str) -> bool:
        return True  # as if a rule read every context: the tests see all a parser can hand the rules

    def joined(self, context: str, side: int | None = None) -> bytes:
        """All content of one context (and side) joined, as a rules engine would see the stream."""
        return b"".join(d for c, s, d in self.contents if c == context and (side is None or s == side))


def drive(parser_cls, steps: list[tuple[int, bytes]], transport: str = "tcp", server_port: int = 0,
          finish: bool = True, split: int = 0) -> Recorder:
    """Feed (side, bytes) steps in order (frame = step index + 1); `split` > 0 cuts every step into pieces of
    that many bytes, as small TCP segments would. Exceptions propagate: tests call this with hostile bytes
    to prove a parser does not raise (the app layer would turn it into an anomaly)."""
    rec = Recorder()
    parser: Parser = parser_cls(rec, FlowContext(transport, 40000, server_port, False))
    for i, (side, data) in enumerate(steps):
        pieces = [data[j:j + split] for j in range(0, len(data), split)] if split and data else [data]
        for piece in pieces:
            if parser.done:
                break
            parser.feed(side, piece, i + 1, i)
    if finish:
        parser.finish()
    return rec
