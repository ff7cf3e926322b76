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
- `multipart/form-data; boundary=...` (ModSecurity's MULTIPART processor, msc_multipart.c): each part whose
  Content-Disposition is `form-data; name="..."` is an argument named `name` whose value is the part's body
  (bytes as sent) when it has no `filename`, else an upload: FILES (the file name, as sent: no path removed) and
  FILES_NAMES (the part's name), its content not an argument (it stays in "body");
- anything else (binary, text): neither; REQUEST_BODY links still read every body ("body").

The parser hands form and JSON bodies to the rules as one "form" unit, the fields form-encoded (JSON leaves are
encoded here), once the body is complete: at most FORM_MAX bytes of it. A multipart body is parsed as it comes
(python-multipart, the parser of Starlette and FastAPI; at most MULTIPART_MAX bytes of it, file content skipped
by the parser's search and never kept) into the same "form" unit (its text parts, form-encoded here) and a
"files" unit (`part name=file name` pairs, form-encoded here), at most FORM_MAX bytes of names and values and
MAX_PARTS parts. Only this module makes "files" content, so no body can forge a file item; a multipart body that
is malformed, cut by the capture or hostile gives what parsed before the fault (never an exception).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote_from_bytes

from nvpcap.protocols.base import CLIENT, ParserOutput

try:
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # an install without it: multipart bodies are "body" only
    MultipartParser = parse_options_header = None  # type: ignore[assignment,misc]
else:  # it logs each malformed body it rejects (a capture's content): nvpcap reports nothing of that
    logging.getLogger("python_multipart").setLevel(logging.CRITICAL)

FORM_MAX = 64 << 10  # body bytes read as fields (ModSecurity's SecRequestBodyNoFilesLimit is 128 KB)
MAX_LEAVES = 1024  # JSON leaves encoded (the engine takes at most fields.MAX_ITEMS of them anyway)
MULTIPART_MAX = 1 << 20  # bytes of a multipart body parsed (uploads are skipped, ~2 ms per MiB)
MAX_PARTS = 1024  # parts of a multipart body read (the engine takes at most fields.MAX_ITEMS items anyway)
MAX_PART_HEADERS = 32  # headers per part, each at most MAX_PART_HEADER bytes (ModSecurity: 4096-byte lines)
MAX_PART_HEADER = 4096
FORM, JSON, XML, MULTIPART = "form", "json", "xml", "multipart"
_XML_TYPE = re.compile(rb"(?:application(?:/soap\+|/)|text/)xml")
_JSON_TYPE = re.compile(rb"application/(?:[\w.+-]*\+)?json")


def body_view(content_type: bytes | None) -> str | None:
    """FORM, JSON, XML, MULTIPART or None for a request's Content-Type value."""
    if not content_type:
        return None
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/x-www-form-urlencoded":
        return FORM
    if media == b"multipart/form-data":
        return MULTIPART
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
    return _pairs((name.encode(), value) for name, value in _leaves(doc))


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


def _pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """(name, value) pairs form-encoded: how JSON leaves and multipart parts reach the rules' "form"/"files"."""
    return b"&".join(_encoded(name) + b"=" + _encoded(value) for name, value in pairs)


def _encoded(text: bytes) -> bytes:
    return quote_from_bytes(text, safe="").encode("ascii")


def multipart_boundary(content_type: bytes | None) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type (quoted or not), None when it has none."""
    if not content_type or parse_options_header is None:
        return None
    try:
        _media, options = parse_options_header(content_type)
    except Exception:  # noqa: BLE001 - a header value of the capture: never fatal
        return None
    boundary = options.get(b"boundary")
    return boundary if boundary and len(boundary) <= 256 else None


_WS = b" \t"
# one `; param=value` of a Content-Disposition: a value quoted with " or ' (a backslash takes the next character
# along; the closing quote may be missing: the value runs to the end), else a token (RFC 2045)
_PARAM = re.compile(rb"""[ \t]*;[ \t]*([^= \t]*)[ \t]*=[ \t]*(?:"((?:\\.|[^"\\])*)"?|'((?:\\.|[^'\\])*)'?"""
                    rb"""|([^\x00-\x20\x7f-\xff;=",()<>@:\\/\[\]?{}]*))""", re.DOTALL)
_ESCAPED = {b'"': re.compile(rb'\\(["\\])'), b"'": re.compile(rb"\\(['\\])")}


def disposition(value: bytes) -> tuple[bytes, bytes | None] | None:
    """(name, file name or None) of a part's Content-Disposition value, read as ModSecurity's MULTIPART processor
    reads it: `form-data` then `; param=value` pairs, a value quoted with " (or ') in which a backslash escapes
    the quote or a backslash (before any other character it is kept), or a token; the file name as sent. Where
    ModSecurity rejects the whole body (an unknown or repeated parameter, a bad separator, an unterminated
    quote), what was read before is used (the first of repeated parameters, an unterminated value up to the
    end; unknown parameters ignored). None when it is not form-data or has no name."""
    if value[:9].lower() != b"form-data":
        return None
    params: dict[bytes, bytes] = {}
    pos = 9
    for m in _PARAM.finditer(value, pos):
        if m.start() != pos:  # not right after the previous one: a bad separator, the rest is not read
            break
        pos = m.end()
        key, dquoted, squoted, token = m.groups()
        key = key.lower()
        if key not in params and key in (b"name", b"filename"):
            quoted, quote = (dquoted, b'"') if dquoted is not None else (squoted, b"'")
            if quoted is None:
                params[key] = token
            else:
                params[key] = _ESCAPED[quote].sub(rb"\1", quoted) if b"\\" in quoted else quoted
    name = params.get(b"name")
    return None if name is None else (name, params.get(b"filename"))


_LONE_LF = re.compile(rb"(?<!\r)\n")
HOLD_MAX = 64 << 10  # body bytes held while looking for the end of the first boundary line


class _LineEnds:
    """A multipart body's line ends as python-multipart reads them: CRLF (RFC 2046). Some clients end lines with
    LF alone; ModSecurity reads such a body (and flags it), and a server that accepts it would otherwise get
    arguments and uploads the rules never saw. The end of the first boundary line decides: LF alone, and every LF
    not after a CR becomes CRLF from then on (a multi-line text value gains CRs). The body is held until that line
    end is seen, at most HOLD_MAX bytes (a longer preamble: CRLF assumed)."""

    __slots__ = ("cr_last", "delimiter", "held", "lf")

    def __init__(self, boundary: bytes) -> None:
        self.delimiter = b"--" + boundary
        self.held: bytearray | None = bytearray()  # None once decided
        self.lf = False
        self.cr_last = False  # the last piece ended with CR: a LF starting the next one ends that line

    def convert(self, piece: bytes) -> bytes:
        """The next piece of the body, its line ends made CRLF (empty while the first boundary line is unseen)."""
        if self.held is not None:
            self.held += piece
            i = self.held.find(self.delimiter)
            end = i + len(self.delimiter)
            if i >= 0 and len(self.held) >= end + 2:
                self.lf = self.held[end:end + 1] == b"\n"
            elif len(self.held) < HOLD_MAX:
                return b""
            piece = self.rest()
        if not self.lf or not piece:
            return piece
        out = _LONE_LF.sub(b"\r\n", piece)
        if self.cr_last and piece[:1] == b"\n":
            out = out[1:]  # a CR and its LF cut between two pieces: no CR to add
        self.cr_last = piece[-1:] == b"\r"
        return out

    def rest(self) -> bytes:
        """What is held (the body ended before its first boundary line did), now as it came."""
        held, self.held = self.held, None
        return bytes(held or b"")


class _Enough(Exception):
    """A multipart body reached MAX_PARTS parts or FORM_MAX bytes of names and values: the rest is not read."""


class _Multipart:
    """The state of one multipart body being parsed: python-multipart's parser and what its callbacks gave."""

    __slots__ = ("args", "data", "disposition", "fed", "field", "files", "kept", "kind", "lines", "name", "parser",
                 "parts", "value")

    def __init__(self, boundary: bytes) -> None:
        callbacks = {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                     "on_header_value": self.header_value, "on_header_end": self.header_end,
                     "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                     "on_part_end": self.part_end}
        self.parser: MultipartParser | None = MultipartParser(
            boundary, callbacks, max_header_count=MAX_PART_HEADERS, max_header_size=MAX_PART_HEADER)
        self.args: list[tuple[bytes, bytes]] = []  # (name, value) of each text part
        self.files: list[tuple[bytes, bytes]] = []  # (part name, file name) of each upload
        self.fed = 0  # body bytes given to the parser
        self.kept = 0  # bytes of names and values kept
        self.parts = 0
        self.kind = ""  # the current part: "" (headers, or ignored), "arg" or "file"
        self.name = b""
        self.field = bytearray()  # the current header's name and value, as they come
        self.value = bytearray()
        self.disposition: bytes | None = None
        self.data = bytearray()  # the current text part's value so far
        # the body's data before its first boundary (a preamble, or nothing) is the data of a part without
        # headers, ignored: python-multipart wants the body to start with the boundary, ModSecurity skips it
        self._write(b"--" + boundary + b"\r\n\r\n\r\n")
        self.fed = 0
        self.lines = _LineEnds(boundary)

    def feed(self, piece: bytes) -> None:
        if self.parser is not None:
            self._write(self.lines.convert(piece))

    def _write(self, piece: bytes) -> None:
        parser = self.parser
        if parser is None:
            return
        room = MULTIPART_MAX - self.fed
        if len(piece) > room:
            piece = piece[:room]
        self.fed += len(piece)
        try:
            parser.write(piece)
        except Exception:  # noqa: BLE001 - malformed (python-multipart's errors) or _Enough: what parsed is kept
            self.parser = None
        if self.fed >= MULTIPART_MAX:
            self.parser = None

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS + 1:  # the preamble's part is not counted
            raise _Enough
        self.kind = ""
        self.disposition = None
        self.field.clear()
        self.value.clear()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        if self.disposition is None and self.field.strip().lower() == b"content-disposition":
            self.disposition = bytes(self.value.strip(_WS))
        self.field.clear()
        self.value.clear()

    def headers_finished(self) -> None:
        got = disposition(self.disposition) if self.disposition is not None else None
        if got is None:  # no Content-Disposition, or not form-data with a name: ignored
            return
        name, filename = got
        self.kept += len(name) + len(filename or b"")
        if self.kept > FORM_MAX:
            raise _Enough
        if filename is None:
            self.kind, self.name = "arg", name
            self.data = bytearray()
        else:
            self.kind = "file"
            self.files.append((name, filename))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.kind == "arg":
            room = FORM_MAX - self.kept
            if room > 0:
                end = min(end, start + room)
                self.data += data[start:end]
                self.kept += end - start

    def part_end(self) -> None:
        if self.kind == "arg":
            self.args.append((self.name, bytes(self.data)))
        self.kind = ""

    def units(self) -> tuple[bytes, bytes]:
        """The "form" and "files" units of what parsed (a text part the body ended in: its value so far)."""
        if self.parser is not None and self.lines.held:
            self._write(self.lines.rest())
        self.parser = None
        if self.kind == "arg":
            self.part_end()
        return _pairs(self.args), _pairs(self.files)


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


class MultipartView(BodyView):
    """A multipart/form-data request body: parsed as it comes, its text parts and uploads handed to the rules at
    the end ("form" and "files" units)."""

    __slots__ = ("boundary", "state")

    def __init__(self, boundary: bytes) -> None:
        super().__init__(MULTIPART)
        self.boundary: bytes | None = boundary  # None once ended
        self.state: _Multipart | None = None  # made at the first byte of the body

    def feed(self, out: ParserOutput, piece: bytes, frame: int, ts_ns: int) -> None:
        if self.state is None:
            if self.boundary is None:  # ended, or the parser refused the boundary
                return
            try:
                self.state = _Multipart(self.boundary)
            except Exception:  # noqa: BLE001 - a boundary python-multipart does not take: "body" only
                self.boundary = None
                return
        self.state.feed(piece)

    def end(self, out: ParserOutput, frame: int, ts_ns: int) -> None:
        state, self.state, self.boundary = self.state, None, None
        if state is None:
            return
        form, files = state.units()
        if form:
            out.content("form", CLIENT, form, frame, ts_ns)
        if files:
            out.content("files", CLIENT, files, frame, ts_ns)


def view_for(content_type: bytes | None, out: ParserOutput) -> BodyView | None:
    """The view of a request body with this Content-Type, None when it has none (only "body") or no rule reads
    it (the fields are not gathered, JSON and multipart not parsed)."""
    kind = body_view(content_type)
    if kind == MULTIPART:
        if not (out.scans("form") or out.scans("files")) or MultipartParser is None:
            return None
        boundary = multipart_boundary(content_type)
        return MultipartView(boundary) if boundary else None
    if kind is None or not out.scans("xml" if kind == XML else "form"):
        return None
    return BodyView(kind)
