"""RTSP: request line `METHOD SP rtsp-URI SP RTSP/1.0 CRLF`, answered by `RTSP/1.0 SP 3DIGIT SP reason CRLF`
(RFC 2326 §6.1 and §7.1; RFC 7826 for RTSP/2.0).

NeuVector finalizes RTSP in its HTTP parser (dpi_http.c) when the version token starts with `RTSP/`. Same here:
the version token alone separates RTSP from HTTP and SIP; any port; mid-stream flows are searched for a line.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from nvpcap.protocols.base import FlowContext, ParserOutput, ProtocolSpec, Verdict
from nvpcap.protocols.http import (
    LENGTH,
    NO_BODY,
    Head,
    TextParser,
    TextProtocol,
    either_line,
    length_framing,
    start_line,
    text,
)

RTSP = TextProtocol(
    proto=b"RTSP/",
    majors=b"12",
    methods=frozenset(
        b"OPTIONS DESCRIBE ANNOUNCE SETUP PLAY PAUSE TEARDOWN GET_PARAMETER SET_PARAMETER REDIRECT RECORD"
        b" PLAY_NOTIFY".split()
    ),
)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    return RTSP.probe(client, server, ctx)


# ---- parsing: requests paired with responses by CSeq (RFC 2326 §12.17), bodies by Content-Length ----

MAX_PENDING = 64  # requests waiting for a response; beyond, the oldest is reported unanswered
FIELDS = ("method", "uri", "cseq", "status", "status_msg", "session", "transport")


def session_id(value: bytes | None) -> str | None:
    """`Session: session-id [";" "timeout" "=" delta-seconds]` (RFC 2326 §12.37): the id alone."""
    return None if value is None else text(value.partition(b";")[0].strip())


def cseq(head: Head) -> int | None:
    value = (head.get("cseq") or b"").strip()
    return int(value) if value.isdigit() and len(value) <= 10 else None


class RtspParser(TextParser):
    """One event per request with its response (method, uri, cseq, status, session, transport). Either side may
    send requests (the server: ANNOUNCE, GET_PARAMETER, ...); a response answers the request with its CSeq sent
    the other way. Interleaved binary data (`$` channel length, RFC 2326 §10.12) is skipped."""

    name = "rtsp"
    text_protocol = RTSP
    frames = True

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.pending: OrderedDict[tuple[int, int | None], tuple[dict[str, Any], int, int]] = OrderedDict()
        self.unkeyed = 0  # requests without CSeq, numbered so they stay apart

    def checks(self):
        check = either_line(RTSP.proto, RTSP.majors)
        return check, check

    def wire_head(self, side: int, raw: bytes, frame: int, ts: int, end_frame: int, end_ts: int) -> tuple[int, int]:
        head = Head(raw)
        is_request, method, target, _, status, reason = start_line(head.line, RTSP.proto)
        seq = cseq(head)
        if is_request:
            fields = dict.fromkeys(FIELDS)
            fields.update(method=method, uri=text(target, 2048), cseq=seq, session=session_id(head.get("session")),
                          transport=head.text("transport"))
            key = (side, seq)
            if seq is None:
                self.unkeyed += 1
                key = (side, -self.unkeyed)
            if key in self.pending:
                self._emit(key)  # the same CSeq again: the first one goes unanswered
            self.pending[key] = (fields, frame, ts)
            if len(self.pending) > MAX_PENDING:
                self._emit(next(iter(self.pending)))
        elif not (status is not None and 100 <= status < 200):
            self._response(1 - side, seq, head, status, reason, frame, ts)
        n = length_framing(head)
        if head.get("content-length") is not None and n is None:
            self.anomaly_once("bad-content-length", "Content-Length is not a decimal number", frame, ts)
        return (LENGTH, n) if n else (NO_BODY, 0)  # no Content-Length: no body (RFC 2326 §12.14)

    def _response(self, asker: int, seq: int | None, head: Head, status: int | None, reason: bytes, frame: int,
                  ts: int) -> None:
        """A final response: it completes the request from `asker` with its CSeq (without a CSeq: the oldest)."""
        if seq is not None:
            key = (asker, seq) if (asker, seq) in self.pending else None
        else:
            key = next((k for k in self.pending if k[0] == asker), None)
        if key is None:  # the request was not seen
            fields: dict[str, Any] = dict.fromkeys(FIELDS)
            fields["cseq"] = seq
            where = (frame, ts)
        else:
            fields, *where = self.pending.pop(key)
        fields["status"], fields["status_msg"] = status, text(reason)
        fields["session"] = fields["session"] or session_id(head.get("session"))
        fields["transport"] = head.text("transport") or fields["transport"]  # the server's choice wins
        self.out.event(fields, *where)

    def _emit(self, key) -> None:
        fields, frame, ts = self.pending.pop(key)
        self.out.event(fields, frame, ts)

    def finish(self) -> None:
        for key in list(self.pending):
            self._emit(key)


SPEC = ProtocolSpec(
    name="rtsp",
    transports=("tcp",),
    ports=(554, 8554),
    probe=probe,
    description="RTSP: request line METHOD SP URI SP RTSP/1.0, answered by RTSP/1.0 NNN",
    parser=RtspParser,
    extracts="per request/response (paired by CSeq): method, uri, cseq, status, status_msg, session, transport",
)
