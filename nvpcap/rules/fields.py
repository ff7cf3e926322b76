"""ModSecurity's header collections taken from a header block, for OWASP CRS rules (rules/crs.py).

A CRS rule on REQUEST_HEADERS is evaluated by ModSecurity on each header's value, one at a time, not on the
header block as sent: `[\\n\\r]` in a value is header injection (CRS 921140), while every block has CRLFs
between its lines; `REQUEST_HEADERS:User-Agent` is the User-Agent value alone. nvpcap's "header" context is the
block as sent (NeuVector's header patterns read it so), so a CRS header link carries a selection as the first
step of its transformation chain ("select:h:user-agent,c"), and the engine scans each selected item on its own
(transforms.ChainSet).

Items of a selection, in the order of the block:
- `h`: every header value; `h:NAME`: the values of the headers named NAME (case-insensitive);
- `n`: every header name;
- `c`: every cookie value (the Cookie headers' `name=value` pairs); `c:NAME`: the value of cookie NAME;
- `cn`: every cookie name.
Parts are taken in the selection's (sorted) order, each in the order of the block; "select:" with no part
selects nothing (a CRS link on url and body variables has no header content). A header is `name: value` with optional whitespace around the value; a line starting with a space or tab
continues the previous value (obsolete folding); a line without a colon is skipped. At most MAX_ITEMS items.
"""
from __future__ import annotations

SELECT = "select:"  # the chain step's prefix
MAX_ITEMS = 256
_KINDS = ("h", "n", "c", "cn")


def is_selection(step: str) -> bool:
    return step.startswith(SELECT)


def selection(parts: list[str]) -> str:
    """The chain step selecting these parts (`h`, `h:user-agent`, ...), in a canonical spelling."""
    return SELECT + ",".join(sorted(set(p.lower() for p in parts)))


def valid(step: str) -> bool:
    """A well-formed selection step ("select:" alone selects nothing: a link of url and body variables)."""
    parts = [p for p in step[len(SELECT):].split(",") if p]
    return all(p.split(":", 1)[0] in _KINDS and (":" not in p or p[0] in "hc" and p[2:]) for p in parts)


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


def select(step: str, block: bytes) -> list[bytes]:
    """The items a selection step takes from a header block (at most MAX_ITEMS)."""
    parts = [p for p in step[len(SELECT):].split(",") if p]
    if not parts:
        return []
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
