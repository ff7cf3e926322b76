"""SIP: request line `METHOD SP Request-URI SP SIP/2.0 CRLF` or status line `SIP/2.0 SP 3DIGIT SP reason CRLF`
(RFC 3261 §7.1, §7.2), over UDP (one message per datagram) and TCP.

NeuVector finalizes SIP in its HTTP parser (dpi_http.c) when the version token starts with `SIP/`, TCP only.
Here UDP too (a datagram must hold a whole line). SIP user agents are both clients and servers, so either side
may send requests or responses; the version token `SIP/2.0` separates it from HTTP and RTSP.
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
    block_end,
    either_line,
    length_framing,
    start_line,
    text,
)

SIP = TextProtocol(
    proto=b"SIP/",
    majors=b"2",
    methods=frozenset(
        b"INVITE ACK BYE CANCEL REGISTER OPTIONS PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER MESSAGE UPDATE".split()
    ),
    peer_to_peer=True,
)


def probe(client: bytes, server: bytes, ctx: FlowContext) -> Verdict:
    return SIP.probe(client, server, ctx)


# ---- parsing: transactions matched by Call-ID and CSeq (RFC 3261 §17.1.3, §8.1.3.3) ----

# compact header forms (RFC 3261 §7.3.3, §20)
COMPACT = {"i": "call-id", "f": "from", "t": "to", "l": "content-length", "m": "contact", "v": "via",
           "c": "content-type", "e": "content-encoding", "k": "supported", "s": "subject"}
FIELDS = ("method", "uri", "call_id", "from", "to", "cseq", "user_agent", "status", "status_msg")
MAX_PENDING = 64  # requests waiting for a final response; beyond, the oldest is reported unanswered
MAX_DONE = 256  # transactions remembered as finished, so retransmissions are not reported again


def cseq_key(value: bytes | None) -> tuple[int | None, str]:
    """`CSeq: 1*DIGIT LWS Method` (RFC 3261 §20.16)."""
    num, _, method = (value or b"").strip().partition(b" ")
    return (int(num) if num.isdigit() and len(num) <= 10 else None), method.strip().decode("latin-1")


class SipParser(TextParser):
    """One event per request with its final response (provisional 1xx responses and retransmissions are
    absorbed); ACK, which is never answered, and responses whose request was not seen are events alone."""

    name = "sip"
    text_protocol = SIP

    def __init__(self, out: ParserOutput, ctx: FlowContext) -> None:
        super().__init__(out, ctx)
        self.udp = ctx.transport == "udp"
        self.pending: OrderedDict[tuple, tuple[dict[str, Any], int, int]] = OrderedDict()
        self.finished: OrderedDict[tuple, None] = OrderedDict()

    def checks(self):
        check = either_line(SIP.proto, SIP.majors)
        return check, check

    def feed(self, side: int, data: bytes, frame: int, ts_ns: int) -> None:
        if not self.udp:
            super().feed(side, data, frame, ts_ns)
            return
        if not data.strip():
            return  # a keep-alive (RFC 5626 §3.5.1 CRLFs; some phones send spaces)
        data = data.lstrip(b"\r\n")
        if self.wires[side].check(data) <= 0:
            self.anomaly_once("bad-start-line", "a datagram does not begin with a SIP start line", frame, ts_ns)
            return
        end = block_end(data, 0, empty_ok=False)  # type: ignore[arg-type]
        self._message(side, Head(data[:end] if end > 0 else data, COMPACT), frame, ts_ns)

    def wire_head(self, side: int, raw: bytes, frame: int, ts: int, end_frame: int, end_ts: int) -> tuple[int, int]:
        head = Head(raw, COMPACT)
        self._message(side, head, frame, ts)
        n = length_framing(head)
        if n is None and head.get("content-length") is not None:
            self.anomaly_once("bad-content-length", "Content-Length is not a decimal number", frame, ts)
        return (LENGTH, n) if n else (NO_BODY, 0)  # over TCP, Content-Length is mandatory (RFC 3261 §18.3)

    def _message(self, side: int, head: Head, frame: int, ts: int) -> None:
        is_request, method, target, _, status, reason = start_line(head.line, SIP.proto)
        num, cmethod = cseq_key(head.get("cseq"))
        call_id = head.text("call-id")
        fields = dict.fromkeys(FIELDS)
        fields.update({"call_id": call_id, "from": head.text("from"), "to": head.text("to"),
                       "cseq": head.text("cseq"), "user_agent": head.text("user-agent")})
        if is_request:
            key = (side, call_id, num, method)
            if key in self.pending or key in self.finished:
                return  # a retransmission (RFC 3261 §17.1.1.2)
            fields.update(method=method, uri=text(target, 2048))
            if method == "ACK":  # never answered (RFC 3261 §17.1.1.3)
                self._done(key)
                self.out.event(fields, frame, ts)
                return
            self.pending[key] = (fields, frame, ts)
            if len(self.pending) > MAX_PENDING:
                old = next(iter(self.pending))
                self.out.event(*self.pending.pop(old))
            return
        key = (1 - side, call_id, num, cmethod)
        final = status is None or status >= 200
        if key in self.pending:
            if final:
                request, req_frame, req_ts = self.pending.pop(key)
                request.update(status=status, status_msg=text(reason))
                self._done(key)
                self.out.event(request, req_frame, req_ts)
            return
        if key in self.finished:
            return  # a retransmitted final response, or a late provisional one
        fields.update(method=cmethod or None, status=status, status_msg=text(reason))  # the request was not seen
        if final:
            self._done(key)
        self.out.event(fields, frame, ts)

    def _done(self, key: tuple) -> None:
        self.finished[key] = None
        if len(self.finished) > MAX_DONE:
            self.finished.popitem(last=False)

    def finish(self) -> None:
        while self.pending:
            _, (fields, frame, ts) = self.pending.popitem(last=False)
            self.out.event(fields, frame, ts)


SPEC = ProtocolSpec(
    name="sip",
    transports=("udp", "tcp"),
    ports=(5060,),  # 5061 is SIP over TLS: ssl
    probe=probe,
    description="SIP/2.0 request or status line, over UDP or TCP",
    parser=SipParser,
    extracts="per request with its final response: method, uri, call_id, from, to, cseq, user_agent, status, "
             "status_msg",
)
