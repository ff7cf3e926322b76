"""ModSecurity's collections taken from a header block or a url, for OWASP CRS rules (rules/crs.py).

A CRS rule on REQUEST_HEADERS is evaluated by ModSecurity on each header's value, one at a time, not on the
header block as sent: `[\\n\\r]` in a value is header injection (CRS 921140), while every block has CRLFs
between its lines; `REQUEST_HEADERS:User-Agent` is the User-Agent value alone. nvpcap's "header" context is the
block as sent (NeuVector's header patterns read it so), so a CRS header link carries a selection as the first
step of its transformation chain ("select:h:user-agent,c"), and the engine scans each selected item on its own
(transforms.ChainSet).

The same holds for ARGS (each query argument's value alone: `&sort=` in a url is not a Windows `sort` command
after a `&`, CRS 932115). Items of a selection from a header block, in the order of the block:
- `h`: every header value; `h:NAME`: the values of the headers named NAME (case-insensitive);
- `n`: every header name;
- `c`: every cookie value (the Cookie headers' `name=value` pairs); `c:NAME`: the value of cookie NAME;
- `cn`: every cookie name.
From a url (the request target, percent-decoded already, so arguments are split as `url_args` says: an
encoded `&` followed by `name=` splits too, a small approximation): `u` the whole url (REQUEST_URI,
REQUEST_LINE), `f` its path (REQUEST_FILENAME), `fb` the path's last segment (REQUEST_BASENAME), `q` the query
string, `a` every argument's value (`a:NAME`: that argument's), `an` every argument's name; `ag`/`agn` the same
for ARGS_GET/ARGS_GET_NAMES. From a form (context "form": the fields of a request body, form-encoded: an
application/x-www-form-urlencoded body as sent, a JSON body's leaves as protocols/httpforms.py encodes them;
read as ModSecurity's URLENCODED body processor reads a form: fields split at each `&`, names and values
percent-decoded with `+` as a space): `a`/`ap` every field's value (ARGS, ARGS_POST; `a:NAME` that field's),
`an`/`apn` every field's name (a multipart/form-data body's text parts are form fields too, encoded by
protocols/httpforms.py). From the files of a multipart/form-data body (context "files": `part name=file name`
pairs, form-encoded by protocols/httpforms.py, which alone makes this context: no body a client sends is
passed as "files", so none can forge its items): `fl` every file name (FILES; `fl:NAME` that of the part named
NAME), `fln` every file part's name (FILES_NAMES). A selection applies to the content it has parts for
(`applies`): header parts to header blocks, url parts to urls, argument parts to urls and forms, file parts
to files.
Parts are taken in the selection's (sorted) order, each in the order of the block; "select:" with no part
selects nothing (a CRS link on url and body variables has no header content). A header is `name: value` with
optional whitespace around the value; a line starting with a space or tab continues the previous value
(obsolete folding); a line without a colon is skipped. At most MAX_ITEMS items.
"""
from __future__ import annotations

from urllib.parse import unquote_to_bytes

SELECT = "select:"  # the chain step's prefix
MAX_ITEMS = 256
HEADER_KINDS = ("h", "n", "c", "cn")
URL_KINDS = ("u", "f", "fb", "q", "a", "an", "ag", "agn")
FORM_KINDS = ("a", "an", "ap", "apn")
FILES_KINDS = ("fl", "fln")
# what each kind of content has
KINDS = {"header": HEADER_KINDS, "url": URL_KINDS, "form": FORM_KINDS, "files": FILES_KINDS}
NAMED = ("h", "c", "a", "ag", "ap", "fl")  # kinds that take a name: "h:user-agent"


def is_selection(step: str) -> bool:
    return step.startswith(SELECT)


def selection(parts: list[str]) -> str:
    """The chain step selecting these parts (`h`, `h:user-agent`, ...), in a canonical spelling."""
    return SELECT + ",".join(sorted({p.lower() for p in parts}))


def valid(step: str) -> bool:
    """A well-formed selection step ("select:" alone selects nothing: a link of url and body variables)."""
    return all(any(applies(p, context) for context in KINDS) for p in parts(step))


def applies(part: str, context: str) -> bool:
    """Whether a well-formed part takes items from this content ("a" from a url or a form, "h:host" from a
    header block)."""
    kind, colon, name = part.partition(":")
    return kind in KINDS.get(context, ()) and (not colon or kind in NAMED and bool(name))


def parts(step: str) -> list[str]:
    """The parts of a selection step, in order ("select:a,h:user-agent" -> ["a", "h:user-agent"])."""
    return [p for p in step[len(SELECT):].split(",") if p]


def header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each header of a block, in order."""
    fields: list[tuple[bytes, list[bytes]]] = []  # value pieces joined once (folding is not quadratic)
    for line in block.split(b"\n"):
        line = line.removesuffix(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].append(line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if colon:
            fields.append((name.strip(b" \t"), [value.strip(b" \t")]))
    return [(name, b" ".join(pieces)) for name, pieces in fields]


def _cookies(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in fields:
        if name.lower() == b"cookie":
            for pair in value.split(b";"):
                cname, _, cvalue = pair.strip(b" \t").partition(b"=")
                if cname or cvalue:
                    out.append((cname, cvalue))
    return out


def select(step: str, data: bytes, context: str = "header") -> list[bytes]:
    """The items a selection step takes from a header block or (context "url", "form", "files") a url, a form's
    fields, a multipart body's files, at most MAX_ITEMS."""
    return Unit(data, context).select(step)


class Unit:
    """One header block, url, form or files unit, parsed once for all the selections of a unit's chains (CRS
    has ~20 distinct ones), each part's items computed once."""

    __slots__ = ("_args", "_cookies", "_fields", "_parts", "_url", "context", "data")

    def __init__(self, data: bytes, context: str = "header") -> None:
        self.data = data
        self.context = context
        self._fields: list[tuple[bytes, bytes]] | None = None
        self._cookies: list[tuple[bytes, bytes]] | None = None
        self._url: tuple[bytes, bytes | None, list[tuple[bytes, bytes]]] | None = None  # path, query, arguments
        self._args: list[tuple[bytes, bytes]] | None = None  # a form's fields, a files unit's (part, file) names
        self._parts: dict[str, list[bytes]] = {}

    def select(self, step: str) -> list[bytes]:
        items: list[bytes] = []
        for part in parts(step):
            items += self.items(part)
        return items[:MAX_ITEMS]

    def items(self, part: str) -> list[bytes]:
        """What one part of a selection ("a", "h:user-agent") takes from this unit: none from the other kind
        of content (url parts from a header block), at most MAX_ITEMS."""
        got = self._parts.get(part)
        if got is None:
            got = self._parts[part] = self._part(part)[:MAX_ITEMS] if applies(part, self.context) else []
        return got

    def _part(self, part: str) -> list[bytes]:
        kind, _, wanted = part.partition(":")
        if self.context in ("form", "files"):  # pairs form-encoded: fields, or (part name, file name)
            if self._args is None:
                self._args = form_args(self.data)
            return _named(self._args, kind in ("an", "apn", "fln"), wanted)
        if self.context == "url":
            if self._url is None:
                path, qmark, query = self.data.partition(b"?")
                self._url = (path, query if qmark else None, url_args(query) if query else [])
            path, query, args = self._url
            if kind == "u":
                return [self.data]
            if kind == "f":
                return [path]
            if kind == "fb":
                return [path.rsplit(b"/", 1)[-1]]
            if kind == "q":
                return [query] if query is not None else []
            return _named(args, kind in ("an", "agn"), wanted)
        if self._fields is None:
            self._fields = header_fields(self.data)
        if kind in ("h", "n"):
            return _named(self._fields, kind == "n", wanted)
        if self._cookies is None:
            self._cookies = _cookies(self._fields)
        return _named(self._cookies, kind == "cn", wanted)


def _named(pairs: list[tuple[bytes, bytes]], names: bool, wanted: str) -> list[bytes]:
    """The names, or the values (of the pairs named `wanted`, case-insensitive, when given)."""
    if names:
        return [n for n, _ in pairs]
    return [v for n, v in pairs if not wanted or n.lower().decode("latin-1") == wanted]


def url_args(query: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each argument of a percent-decoded query string, `+` as a space (ModSecurity decodes
    ARGS as a form would). A `&` starts an argument only when `=` follows before the next `&`: a decoded
    `&lt;` (an HTML entity that was %26lt%3B) stays in its value."""
    groups: list[list[bytes]] = []  # pieces of one argument (joined once: no quadratic concatenation)
    for piece in query.split(b"&"):
        if groups and b"=" not in piece:
            groups[-1].append(piece)
        else:
            groups.append([piece])
    pairs = (b"&".join(g).partition(b"=") for g in groups)
    return [(n.replace(b"+", b" "), v.replace(b"+", b" ")) for n, _, v in pairs if n or v]


def form_args(body: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each field of an application/x-www-form-urlencoded body, as ModSecurity's URLENCODED
    body processor gives ARGS_POST: split at every `&`, then at the first `=`, each side percent-decoded with `+`
    as a space (a malformed escape is kept as it is); empty pieces skipped."""
    pairs = (piece.partition(b"=") for piece in body.split(b"&") if piece)
    return [(_form_decoded(n), _form_decoded(v)) for n, _, v in pairs]


def _form_decoded(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" ")) if b"%" in text or b"+" in text else text
