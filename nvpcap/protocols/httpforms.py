"""What an HTTP/1 or HTTP/2 request body gives the rules beside the "body" stream: ModSecurity's request body
processors, for OWASP CRS rules (rules/crs.py). What a body is to ARGS and XML:/* depends on its Content-Type,
as in ModSecurity's recommended configuration (rules 200000 and 200001) and its default URLENCODED processor:

- `application/x-www-form-urlencoded`: the body's fields are ARGS_POST (the rules split and decode them:
  rules/fields.py);
- `application/json` (rule 200001; and `application/...+json`, as CRS 4 adds): each leaf of the document is
  an argument named by its path (`json.user.name`, array items by index: `json.ids.0`), strings as their UTF-8
  text, numbers, true, false and null as JSON writes them; a body that does not parse (cut by the capture or
  the cap) is one argument `json` holding it, so its content is still seen;
- `text/xml`, `application/xml`, `application/soap+xml` (rule 200000): the body is XML:/*, scanned as a stream
  ("xml");
- anything else (multipart, binary, text): neither; REQUEST_BODY links still read every body ("body").

The parser hands form and JSON bodies to the rules as one "form" unit, the fields form-encoded (JSON leaves are
encoded here), once the body is complete: at most FORM_MAX bytes of it.
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote_from_bytes

from nvpcap.protocols.base import CLIENT, ParserOutput

FORM_MAX = 64 << 10  # body bytes read as fields (ModSecurity's SecRequestBodyNoFilesLimit is 128 KB)
MAX_LEAVES = 1024  # JSON leaves encoded (the engine takes at most fields.MAX_ITEMS of them anyway)
FORM, JSON, XML = "form", "json", "xml"
_XML_TYPE = re.compile(rb"(?:application(?:/soap\+|/)|text/)xml")
_JSON_TYPE = re.compile(rb"application/(?:[\w.+-]*\+)?json")


def body_view(content_type: bytes | None) -> str | None:
    """FORM, JSON, XML or None for a request's Content-Type value."""
    if not content_type:
        return None
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/x-www-form-urlencoded":
        return FORM
    if _JSON_TYPE.fullmatch(media):
        return JSON
    if _XML_TYPE.match(media):
        return XML
    return None


def form_unit(view: str, body: bytes) -> bytes:
    """The "form" unit of a complete form or JSON body: its fields, form-encoded."""
    if view == FORM:
        return body
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (or cut short): all of it as one argument
        return b"json=" + _encoded(body)
    return b"&".join(_encoded(name.encode()) + b"=" + _encoded(value) for name, value in _leaves(doc))


def _leaves(doc: object) -> list[tuple[str, bytes]]:
    """(path, text) of each scalar of a JSON document, depth first in document order, at most MAX_LEAVES."""
    out: list[tuple[str, bytes]] = []
    stack: list[tuple[str, object]] = [("json", doc)]
    while stack and len(out) < MAX_LEAVES:
        path, node = stack.pop()
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}", v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{path}.{i}", v) for i, v in reversed(list(enumerate(node))))
        elif isinstance(node, str):
            out.append((path, node.encode("utf-8", "surrogatepass")))
        else:
            out.append((path, json.dumps(node).encode()))
    return out


def _encoded(text: bytes) -> bytes:
    return quote_from_bytes(text, safe="").encode("ascii")


class BodyView:
    """One request body as the rules see it beside "body" (the parsers of HTTP/1 and HTTP/2 keep one per request
    whose Content-Type has a view): XML passed on as it comes, form and JSON fields kept for the end."""

    __slots__ = ("fields", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fields: bytearray | None = None  # the form or JSON body so far, at most FORM_MAX bytes

    def feed(self, out: ParserOutput, piece: bytes, frame: int, ts_ns: int) -> None:
        """The next decoded bytes of the body."""
        if self.kind == XML:
            out.content("xml", CLIENT, piece, frame, ts_ns)
            return
        if self.fields is None:
            self.fields = bytearray()
        room = FORM_MAX - len(self.fields)
        if room > 0:
            self.fields += piece[:room]

    def end(self, out: ParserOutput, frame: int, ts_ns: int) -> None:
        """The body is complete (or the capture ended in it): its fields to the rules, once."""
        if self.fields:
            unit, self.fields = form_unit(self.kind, bytes(self.fields)), None
            out.content("form", CLIENT, unit, frame, ts_ns)


def view_for(content_type: bytes | None, out: ParserOutput) -> BodyView | None:
    """The view of a request body with this Content-Type, None when it has none (only "body") or no rule reads
    it (the fields are not gathered, JSON not parsed)."""
    kind = body_view(content_type)
    if kind is None or not out.scans("xml" if kind == XML else "form"):
        return None
    return BodyView(kind)
