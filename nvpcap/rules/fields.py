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
encoded `&` followed by `name=` splits too, a small approximation): `u` the whole url (REQUEST_URI, REQUEST_LINE), `f` its path (REQUEST_FILENAME), `fb` the path's
last segment (REQUEST_BASENAME), `q` the query string, `a` every argument's value (`a:NAME`: that argument's),
`an` every argument's name. A selection applies to the content it has parts for: header parts to header
blocks, url parts to urls.
Parts are taken in the selection's (sorted) order, each in the order of the block; "select:" with no part
selects nothing (a CRS link on url and body variables has no header content). A header is `name: value` with optional whitespace around the value; a line starting with a space or tab
continues the previous value (obsolete folding); a line without a colon is skipped. At most MAX_ITEMS items.
"""
from __future__ import annotations

SELECT = "select:"  # the chain step's prefix
MAX_ITEMS = 256
HEADER_KINDS = ("h", "n", "c", "cn")
URL_KINDS = ("u", "f", "fb", "q", "a", "an")
NAMED = ("h", "c", "a")  # kinds that take a name: "h:user-agent"


def is_selection(step: str) -> bool:
    return step.startswith(SELECT)


def selection(parts: list[str]) -> str:
    """The chain step selecting these parts (`h`, `h:user-agent`, ...), in a canonical spelling."""
    return SELECT + ",".join(sorted({p.lower() for p in parts}))


def valid(step: str) -> bool:
    """A well-formed selection step ("select:" alone selects nothing: a link of url and body variables)."""
    parts = [p for p in step[len(SELECT):].split(",") if p]
    return all(p.split(":", 1)[0] in HEADER_KINDS + URL_KINDS and (":" not in p or p[:2] in ("h:", "c:", "a:")
                                                                    and p[2:]) for p in parts)


def header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each header of a block, in order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\n"):
        line = line.removesuffix(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b" " + line.strip(b" \t"))
            continue
        name, colon, value = line.partition(b":")
        if colon:
            fields.append((name.strip(b" \t"), value.strip(b" \t")))
    return fields


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
    """The items a selection step takes from a header block or (context "url") a url, at most MAX_ITEMS."""
    kinds = URL_KINDS if context == "url" else HEADER_KINDS
    parts = [p for p in step[len(SELECT):].split(",") if p.split(":", 1)[0] in kinds]
    if not parts:
        return []
    if context == "url":
        return _url_items(parts, data)[:MAX_ITEMS]
    block = data
    fields = header_fields(block)
    cookies = _cookies(fields) if any(p[0] == "c" for p in parts) else []
    items: list[bytes] = []
    for part in parts:
        kind, _, wanted = part.partition(":")
        if kind == "h":
            items += [v for n, v in fields if not wanted or n.lower().decode("latin-1") == wanted]
        elif kind == "n":
            items += [n for n, _ in fields]
        elif kind == "c":
            items += [v for n, v in cookies if not wanted or n.lower().decode("latin-1") == wanted]
        elif kind == "cn":
            items += [n for n, _ in cookies]
    return items[:MAX_ITEMS]


def url_args(query: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each argument of a percent-decoded query string, `+` as a space (ModSecurity decodes
    ARGS as a form would). A `&` starts an argument only when `=` follows before the next `&`: a decoded
    `&lt;` (an HTML entity that was %26lt%3B) stays in its value."""
    pairs: list[bytes] = []
    for piece in query.split(b"&"):
        if pairs and b"=" not in piece:
            pairs[-1] += b"&" + piece
        else:
            pairs.append(piece)
    return [(n.replace(b"+", b" "), v.replace(b"+", b" ")) for n, _, v in (pair.partition(b"=") for pair in pairs)
            if n or v]


def _url_items(parts: list[str], url: bytes) -> list[bytes]:
    path, qmark, query = url.partition(b"?")
    args = url_args(query) if query else []
    items: list[bytes] = []
    for part in parts:
        kind, _, wanted = part.partition(":")
        if kind == "u":
            items.append(url)
        elif kind == "f":
            items.append(path)
        elif kind == "fb":
            items.append(path.rsplit(b"/", 1)[-1])
        elif kind == "q" and qmark:
            items.append(query)
        elif kind == "a":
            items += [v for n, v in args if not wanted or n.lower().decode("latin-1") == wanted]
        elif kind == "an":
            items += [n for n, _ in args]
    return items
