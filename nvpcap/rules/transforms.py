"""ModSecurity transformation functions (`t:name` actions of OWASP CRS rules, nvpcap/rules/crs.py), written from
the ModSecurity v2 reference manual's definitions, on bytes. The engine applies a pattern's chain to url and
header units before scanning them with the patterns of that chain (engine.py).

Bounds: every function reads at most MAX_INPUT bytes and returns at most MAX_OUTPUT bytes (longer results are
cut), so a hostile request cannot make a transformation costly. All are linear (regex substitutions or one
pass; collapsing runs of spaces is at most log2(MAX_INPUT) passes of bytes.replace).

Speed: a function with nothing to do returns its input object itself (an early exit when its trigger byte,
`%`, `&`, `\\`, `/*`, is absent, or a C method that returns self), so the engine sees that chains gave the
same bytes without comparing them, and ChainSet computes a repeated step on the same input once.

In stream contexts (body) the engine applies only chains of CHUNK_SAFE transformations, call by call.

Free transformations (never applied: the engine already gives their effect): `none` (it resets the chain while
parsing), `lowercase` (patterns compile caseless); `urlDecode`/`urlDecodeUni` in the url context (the request
target is percent-decoded once by the HTTP parser). `effective()` says what is left for a context.
"""
from __future__ import annotations

import binascii
import re
from collections.abc import Callable

from . import fields

MAX_INPUT = 1 << 16
MAX_OUTPUT = 1 << 16

_WS = b" \t\n\r\f\v\xa0"  # ModSecurity's whitespace for compressWhitespace/removeWhitespace


def _fullwidth(code: int) -> int:
    """One byte for a code point, as ModSecurity does without a unicode map: the low byte, and for the
    full-width ASCII forms (U+FF01..U+FF5E) the ASCII character they stand for."""
    if 0xFF01 <= code <= 0xFF5E:
        return code - 0xFF00 + 0x20
    return code & 0xFF


def lowercase(data: bytes) -> bytes:
    return data.lower()


def uppercase(data: bytes) -> bytes:
    return data.upper()


_PCT = re.compile(rb"%([0-9a-fA-F]{2})")
_PCT_U = re.compile(rb"%[uU]([0-9a-fA-F]{4})|%([0-9a-fA-F]{2})")


def _pct(m: re.Match[bytes]) -> bytes:
    return bytes((int(m.group(1), 16),))


def _pct_u(m: re.Match[bytes]) -> bytes:
    if m.group(1) is not None:
        return bytes((_fullwidth(int(m.group(1), 16)),))
    return bytes((int(m.group(2), 16),))


def url_decode(data: bytes) -> bytes:
    """urlDecode: %HH and `+` (a space); invalid encodings are left as they are."""
    data = data.replace(b"+", b" ")  # self when there is no `+`
    return _PCT.sub(_pct, data) if b"%" in data else data


def url_decode_uni(data: bytes) -> bytes:
    """urlDecodeUni: urlDecode plus the IIS %uHHHH form (one byte: the low byte, full-width ASCII mapped)."""
    data = data.replace(b"+", b" ")
    return _PCT_U.sub(_pct_u, data) if b"%" in data else data


_ENTITY = re.compile(rb"&(?:#[xX]([0-9a-fA-F]+)|#([0-9]+)|(quot|nbsp|lt|gt|amp));?", re.IGNORECASE)
_NAMED = {b"quot": b'"', b"nbsp": b"\xa0", b"lt": b"<", b"gt": b">", b"amp": b"&"}


def _entity(m: re.Match[bytes]) -> bytes:
    if m.group(1) is not None:
        return bytes((_fullwidth(int(m.group(1)[-8:], 16)),))
    if m.group(2) is not None:
        return bytes((_fullwidth(int(m.group(2)[-9:])),))
    return _NAMED[m.group(3).lower()]


def html_entity_decode(data: bytes) -> bytes:
    """htmlEntityDecode: &#xHH; &#DDD; &quot; &nbsp; &lt; &gt; (and &amp;), the `;` optional; each entity
    becomes one byte (the low byte of larger code points, as the manual says: information may be lost)."""
    return _ENTITY.sub(_entity, data) if b"&" in data else data


def remove_nulls(data: bytes) -> bytes:
    return data.replace(b"\x00", b"")


def replace_nulls(data: bytes) -> bytes:
    return data.replace(b"\x00", b" ")


_TO_SPACE = bytes.maketrans(_WS, b" " * len(_WS))


def _single_spaces(data: bytes) -> bytes:
    """Runs of spaces to one space. Each replace halves every run (C passes, no regex: a header block's
    CRLFs are runs of two, one pass), so a run of n spaces takes log2(n) passes."""
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data


def compress_whitespace(data: bytes) -> bytes:
    """compressWhitespace: whitespace (0x20, \\f, \\t, \\n, \\r, \\v, 0xa0) to spaces, runs to one space.
    (One translate, then only the runs replaced: a substitution of every whitespace byte measured 2.5x slower
    on header blocks.)"""
    return _single_spaces(data.translate(_TO_SPACE))


def remove_whitespace(data: bytes) -> bytes:
    return data.translate(None, _WS)  # one C pass (a regex substitution measured 14 us per body call)


def trim_left(data: bytes) -> bytes:
    return data.lstrip(_WS)


def trim_right(data: bytes) -> bytes:
    return data.rstrip(_WS)


def trim(data: bytes) -> bytes:
    return data.strip(_WS)


_COMMENT_START = re.compile(rb"/\*|<!--|--|#")
_COMMENT_CHARS = re.compile(rb"/\*|\*/|--|#")


def replace_comments(data: bytes) -> bytes:
    """replaceComments: each C comment /* ... */ (an unterminated one too) becomes one space; a lone */ stays.
    With bytes.find, as the regex /\\*.*?(?:\\*/|\\Z) would substitute (4x faster on header blocks, whose
    `Accept: */*` opens an unterminated comment)."""
    start = data.find(b"/*")
    if start < 0:
        return data
    out = []
    pos = 0
    while start >= 0:
        out.append(data[pos:start])
        out.append(b" ")
        close = data.find(b"*/", start + 2)
        if close < 0:
            return b"".join(out)
        pos = close + 2
        start = data.find(b"/*", pos)
    out.append(data[pos:])
    return b"".join(out)


def remove_comments(data: bytes) -> bytes:
    """removeComments: /* ... */ and <!-- ... --> removed; `--` or `#` starts a comment to the end of the
    input (ModSecurity replaces it with a space and stops there)."""
    if _COMMENT_START.search(data) is None:
        return data
    out = []
    pos = 0
    for m in _COMMENT_START.finditer(data):
        if m.start() < pos:
            continue
        out.append(data[pos:m.start()])
        tok = m.group()
        if tok in (b"--", b"#"):
            out.append(b" ")
            return b"".join(out)
        close = data.find(b"*/" if tok == b"/*" else b"-->", m.end())
        if close < 0:
            return b"".join(out)
        pos = close + (2 if tok == b"/*" else 3)
    out.append(data[pos:])
    return b"".join(out)


def remove_comments_char(data: bytes) -> bytes:
    """removeCommentsChar: the comment characters /*, */, --, # are removed."""
    return _COMMENT_CHARS.sub(b"", data)


_CMD_DROP = b"\\\"'^"  # deleted by cmdLine
# cmdLine's other byte rewrites, in one table: `,` `;` and whitespace to a space, upper case ASCII to lower
_CMD_TABLE = bytes.maketrans(b",;\t\n\r\f\v" + bytes(range(65, 91)), b" " * 7 + bytes(range(97, 123)))


def cmd_line(data: bytes) -> bytes:
    """cmdLine: delete \\ \" ' ^; delete spaces before / and (; , and ; to spaces; whitespace runs to one
    space; lowercase. One translate does the deletions, the spaces and the lower case; once runs are single
    spaces, a space before / or ( is one space (nor can removing one make another)."""
    data = _single_spaces(data.translate(_CMD_TABLE, _CMD_DROP))
    return data.replace(b" /", b"/").replace(b" (", b"(")


def normalise_path(data: bytes) -> bytes:
    """normalisePath: remove multiple slashes, self-references (./) and back-references (dir/../) except
    those at the beginning of the input."""
    if b"//" not in data and b"/." not in data and not data.startswith(b"."):
        return data  # no empty, `.` or `..` segment but a leading or trailing one, which are kept as they are
    absolute = data.startswith(b"/")
    trailing = data.endswith((b"/", b"/.", b"/.."))
    parts: list[bytes] = []
    leading_up = 0
    for seg in data.split(b"/"):
        if seg in (b"", b"."):
            continue
        if seg == b"..":
            if parts:
                parts.pop()
            elif not absolute:
                leading_up += 1
            continue
        parts.append(seg)
    out = b"/".join([b".."] * leading_up + parts)
    if absolute:
        out = b"/" + out
    if trailing and out and not out.endswith(b"/"):
        out += b"/"
    return out


def normalise_path_win(data: bytes) -> bytes:
    """normalisePathWin: backslashes to slashes, then normalisePath."""
    return normalise_path(data.replace(b"\\", b"/"))


_UTF8_MULTI = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def utf8_to_unicode(data: bytes) -> bytes:
    """utf8toUnicode: each UTF-8 multi-byte character to %uHHHH (invalid sequences left as they are)."""
    if data.isascii():
        return data
    def one(m: re.Match[bytes]) -> bytes:
        try:
            code = ord(m.group().decode("utf-8"))
        except UnicodeDecodeError:
            return m.group()
        return b"%%u%04x" % code
    return _UTF8_MULTI.sub(one, data)


_JS = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([0-7]{1,3})|(.))", re.DOTALL)
_JS_SIMPLE = {b"a": 7, b"b": 8, b"f": 12, b"n": 10, b"r": 13, b"t": 9, b"v": 11}


def js_decode(data: bytes) -> bytes:
    """jsDecode: \\uHHHH (one byte: the low byte, full-width ASCII mapped), \\xHH, \\OOO (octal), \\a \\b \\f
    \\n \\r \\t \\v, and \\c for any other c."""
    if b"\\" not in data:
        return data
    def one(m: re.Match[bytes]) -> bytes:
        if m.group(1) is not None:
            return bytes((_fullwidth(int(m.group(1), 16)),))
        if m.group(2) is not None:
            return bytes((int(m.group(2), 16),))
        if m.group(3) is not None:
            return bytes((int(m.group(3), 8) & 0xFF,))
        c = m.group(4)
        return bytes((_JS_SIMPLE[c],)) if c in _JS_SIMPLE else c
    return _JS.sub(one, data)


_CSS = re.compile(rb"\\(?:([0-9a-fA-F]{1,6})[ \t\n\r\f]?|(\n)|(.))", re.DOTALL)


def css_decode(data: bytes) -> bytes:
    """cssDecode (CSS 2.x escapes): \\ and 1-6 hex digits (one optional whitespace after) is one byte (the low
    byte, full-width ASCII mapped); \\ newline is removed; \\ before any other character drops the \\
    (ja\\vascript is javascript)."""
    if b"\\" not in data:
        return data
    def one(m: re.Match[bytes]) -> bytes:
        if m.group(1) is not None:
            return bytes((_fullwidth(int(m.group(1), 16)),))
        if m.group(2) is not None:
            return b""
        return m.group(3)
    return _CSS.sub(one, data)


_ESC = re.compile(rb"\\(?:x([0-9a-fA-F]{2})|([0-7]{1,3})|([abfnrtv\\?'\"]))")
_ESC_SIMPLE = {b"a": b"\x07", b"b": b"\x08", b"f": b"\x0c", b"n": b"\n", b"r": b"\r", b"t": b"\t",
               b"v": b"\x0b", b"\\": b"\\", b"?": b"?", b"'": b"'", b'"': b'"'}


def escape_seq_decode(data: bytes) -> bytes:
    """escapeSeqDecode: ANSI C escapes \\a \\b \\f \\n \\r \\t \\v \\\\ \\? \\' \\" \\xHH \\OOO; invalid
    ones are left as they are."""
    if b"\\" not in data:
        return data
    def one(m: re.Match[bytes]) -> bytes:
        if m.group(1) is not None:
            return bytes((int(m.group(1), 16),))
        if m.group(2) is not None:
            return bytes((int(m.group(2), 8) & 0xFF,))
        return _ESC_SIMPLE[m.group(3)]
    return _ESC.sub(one, data)


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_OTHERS = bytes(b for b in range(256) if b not in _B64_ALPHABET)


def base64_decode(data: bytes) -> bytes:
    """base64Decode (lenient, as base64DecodeExt): characters outside the alphabet (padding too) are ignored,
    a last group of 2 or 3 characters gives its 1 or 2 bytes."""
    clean = data.translate(None, _B64_OTHERS)
    rest = len(clean) % 4
    clean = clean[:-1] if rest == 1 else clean + b"=" * ((4 - rest) % 4)
    try:
        return binascii.a2b_base64(clean)
    except (binascii.Error, ValueError):
        return b""


_HEX_PAIRS = re.compile(rb"[0-9a-fA-F]{2}")


def hex_decode(data: bytes) -> bytes:
    """hexDecode: pairs of hex digits to bytes (anything else is skipped)."""
    return bytes(int(m, 16) for m in _HEX_PAIRS.findall(data))


def hex_encode(data: bytes) -> bytes:
    return data.hex().encode()


_SQL_HEX = re.compile(rb"0x((?:[0-9a-fA-F]{2})+)")


def sql_hex_decode(data: bytes) -> bytes:
    """sqlHexDecode: 0xHHHH... to the bytes it spells (0x414243 is ABC)."""
    if b"0x" not in data:
        return data
    return _SQL_HEX.sub(lambda m: bytes.fromhex(m.group(1).decode()), data)


FUNCTIONS: dict[str, Callable[[bytes], bytes]] = {
    "lowercase": lowercase, "uppercase": uppercase,
    "urldecode": url_decode, "urldecodeuni": url_decode_uni,
    "htmlentitydecode": html_entity_decode,
    "removenulls": remove_nulls, "replacenulls": replace_nulls,
    "compresswhitespace": compress_whitespace, "removewhitespace": remove_whitespace,
    "trim": trim, "trimleft": trim_left, "trimright": trim_right,
    "replacecomments": replace_comments, "removecomments": remove_comments,
    "removecommentschar": remove_comments_char,
    "cmdline": cmd_line,
    "normalisepath": normalise_path, "normalizepath": normalise_path,
    "normalisepathwin": normalise_path_win, "normalizepathwin": normalise_path_win,
    "utf8tounicode": utf8_to_unicode,
    "jsdecode": js_decode, "cssdecode": css_decode, "escapeseqdecode": escape_seq_decode,
    "base64decode": base64_decode, "base64decodeext": base64_decode,
    "hexdecode": hex_decode, "hexencode": hex_encode, "sqlhexdecode": sql_hex_decode,
}
# canonical spelling (ModSecurity's) of each name, for messages and database keys
NAMES = {k: k for k in FUNCTIONS} | {
    "urldecode": "urlDecode", "urldecodeuni": "urlDecodeUni", "htmlentitydecode": "htmlEntityDecode",
    "removenulls": "removeNulls", "replacenulls": "replaceNulls", "compresswhitespace": "compressWhitespace",
    "removewhitespace": "removeWhitespace", "trimleft": "trimLeft", "trimright": "trimRight",
    "replacecomments": "replaceComments", "removecomments": "removeComments",
    "removecommentschar": "removeCommentsChar", "cmdline": "cmdLine", "normalisepath": "normalisePath",
    "normalizepath": "normalizePath", "normalisepathwin": "normalisePathWin", "normalizepathwin": "normalizePathWin",
    "utf8tounicode": "utf8toUnicode", "jsdecode": "jsDecode", "cssdecode": "cssDecode",
    "escapeseqdecode": "escapeSeqDecode", "base64decode": "base64Decode", "base64decodeext": "base64DecodeExt",
    "hexdecode": "hexDecode", "hexencode": "hexEncode", "sqlhexdecode": "sqlHexDecode",
}
FREE = frozenset({"lowercase"})  # the engine compiles caseless
FREE_IN_URL = frozenset({"urldecode", "urldecodeuni"})  # url and form items are percent-decoded already
STREAM_CONTEXTS = ("body", "sql", "raw", "xml")  # scanned as streams, call by call
# transformations that give the same result applied call by call as on the whole stream (compressWhitespace
# nearly: a whitespace run cut between two calls becomes two spaces)
CHUNK_SAFE = frozenset({"removenulls", "replacenulls", "removewhitespace", "compresswhitespace"})


def known(name: str) -> bool:
    return name.lower() in FUNCTIONS or (fields.is_selection(name) and fields.valid(name))


def effective(chain: tuple[str, ...], context: str) -> tuple[str, ...]:
    """The transformations the engine must apply to content of `context` for a pattern with this chain (lower
    case names, in order), the free ones dropped. In stream contexts only a chain of CHUNK_SAFE ones is
    applied; any other gives () (the content is scanned as it is: crs.py tags such rules approximate)."""
    drop = FREE | FREE_IN_URL if context in ("url", "form") else FREE
    # a selection (rules/fields.py) picks header values, url parts or form fields: it applies to those only
    out = tuple(t if fields.is_selection(t) else t.lower() for t in chain
                if t.lower() not in drop and (context in fields.KINDS or not fields.is_selection(t)))
    if context in STREAM_CONTEXTS and not all(t in CHUNK_SAFE for t in out):
        return ()
    return out


def approximate_in_streams(chain: tuple[str, ...]) -> bool:
    """Whether a pattern with this chain is scanned in stream contexts without (some of) its transformations."""
    chain = tuple(t for t in chain if not fields.is_selection(t))
    return bool(chain) and effective(chain, "body") == () and any(t.lower() not in FREE for t in chain)


def apply(chain: tuple[str, ...], data: bytes) -> bytes:
    """Apply the transformations in order, each on at most MAX_INPUT bytes, each result cut to MAX_OUTPUT."""
    for name in chain:
        data = _bounded(FUNCTIONS.get(name) or FUNCTIONS[name.lower()], data)
    return data


def _bounded(fn: Callable[[bytes], bytes], data: bytes) -> bytes:
    data = fn(data[:MAX_INPUT] if len(data) > MAX_INPUT else data)
    return data[:MAX_OUTPUT] if len(data) > MAX_OUTPUT else data


class ChainSet:
    """Several chains applied to the same input, as `apply` would, each common prefix computed once (CRS's
    header chains mostly start with urlDecodeUni). Built once per engine: the prefixes form a tree, and `apply`
    runs its steps (parent result, function) in order."""

    __slots__ = ("chains", "outputs", "steps")

    def __init__(self, chains: tuple[tuple[str, ...], ...]) -> None:
        self.chains = chains
        node: dict[tuple[str, ...], int] = {(): 0}  # prefix -> index of its result in the values list
        steps: list[tuple[int, Callable[[bytes], bytes]]] = []
        for chain in chains:
            for k in range(1, len(chain) + 1):
                if chain[:k] not in node:
                    name = chain[k - 1]
                    steps.append((node[chain[:k - 1]], FUNCTIONS.get(name) or FUNCTIONS[name.lower()]))
                    node[chain[:k]] = len(steps)
        fns = [fn for _parent, fn in steps]
        # (parent, function, whether another step has the same function): different prefixes often give the
        # same object (decoders with nothing to do return their input), so such a step looks for that
        # function's result on that object first ("urlDecodeUni,cmdLine" after "utf8toUnicode" on ASCII)
        self.steps = [(parent, fn, fns.count(fn) > 1) for parent, fn in steps]
        self.outputs = [node[chain] for chain in chains]  # index of each chain's result

    def apply(self, data: bytes) -> list[bytes]:
        """Each chain's result on `data`, in the order of `chains`."""
        values = [data]
        done: dict[tuple[Callable[[bytes], bytes], int], bytes] = {}  # (function, id of input): result
        for parent, fn, shared in self.steps:  # _bounded inlined: ~25 steps per header block
            src = values[parent]
            if shared:
                key = (fn, id(src))  # values keeps every input alive: ids are not reused meanwhile
                out = done.get(key)
                if out is not None:
                    values.append(out)
                    continue
            out = fn(src) if len(src) <= MAX_INPUT else fn(src[:MAX_INPUT])
            if len(out) > MAX_OUTPUT:
                out = out[:MAX_OUTPUT]
            if shared:
                done[key] = out
            values.append(out)
        return [values[i] for i in self.outputs]


class SelectingChainSet:
    """Chains of which some start with a selection (rules/fields.py: CRS collections of a url or header block):
    those give one result per selected item, the others one result. `apply_each` returns a tuple of results per
    chain. Selections share their parts ("a" is in "select:a" and "select:a,an"): each part's items are taken
    once per unit and run once through the chains of every selection that has the part (one ChainSet per part)."""

    __slots__ = ("by_part", "chains", "context", "plain", "plain_idx", "selection_parts")

    def __init__(self, chains: tuple[tuple[str, ...], ...], context: str = "header") -> None:
        self.chains = chains
        self.context = context
        selecting = {i: [p for p in fields.parts(c[0]) if fields.applies(p, context)]  # the parts this content has
                     for i, c in enumerate(chains) if c and fields.is_selection(c[0])}
        self.plain_idx = tuple(i for i in range(len(chains)) if i not in selecting)
        self.plain = ChainSet(tuple(chains[i] for i in self.plain_idx))
        self.selection_parts = selecting  # chain index -> its parts, in order
        holders: dict[str, list[int]] = {}
        for i, chain_parts in selecting.items():
            for part in chain_parts:
                holders.setdefault(part, []).append(i)
        self.by_part = {part: (ChainSet(tuple(chains[i][1:] for i in idx)), tuple(idx))
                        for part, idx in holders.items()}

    def apply_each(self, data: bytes) -> list[tuple[bytes, ...]]:
        out: list[tuple[bytes, ...]] = [()] * len(self.chains)
        if self.plain_idx:
            for i, result in zip(self.plain_idx, self.plain.apply(data)):
                out[i] = (result,)
        if not self.by_part:
            return out
        unit = fields.Unit(data, self.context)
        got: dict[tuple[int, str], list[bytes]] = {}  # (chain, part) -> results
        for part, (rest, idx) in self.by_part.items():
            items = unit.items(part)
            if not items:
                continue
            per_item = [rest.apply(item) for item in items]
            for k, i in enumerate(idx):
                got[(i, part)] = [results[k] for results in per_item]
        for i, chain_parts in self.selection_parts.items():
            results: list[bytes] = []
            for part in chain_parts:
                results += got.get((i, part), ())
            out[i] = tuple(results[:fields.MAX_ITEMS])
        return out
