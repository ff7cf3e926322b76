"""Load a documented subset of Suricata/Snort rules (`.rules` files) as nvpcap rules of category "ids".

    alert http any any -> any any (msg:"admin probe"; flow:to_server; http.uri; content:"/admin"; nocase; sid:1;)

The rule text is parsed here (no dependency): `action proto src sport -> dst dport (key; key:value; ...)`,
with quoted values, `\\;` `\\"` `\\\\` escapes, `#` comments, blank lines and trailing-backslash continuations.

What is imported (docs/rules.md, "Suricata subset"):
- msg (the rule name), sid (the rule_id), rev, gid, classtype and priority (severity: priority 1 -> 5, 2 -> 4,
  3 -> 3, else 2; classtype gives the priority of Suricata's classification.config when priority is absent);
- content (|hex|, escapes, negation !) with nocase, offset, depth, distance, within, startswith, endswith;
  pcre "/re/flags" with i s m x, A (anchored), R (relative), E and O (accepted), U (uri), H (header),
  P (request body) buffers;
- flow: to_server/from_client -> direction request, to_client/from_server -> response; established and
  stateless are ignored;
- the rule's protocol (http, http1, http2, tls, dns, ssh, ...) and app-layer-protocol -> Rule.app_proto;
- sticky buffers http.uri (http_uri), http.header (http_header), http.request_body (http_client_body),
  http.response_body (http_server_body), file.data (file_data), tls.sni (tls_sni), dns.query (dns_query),
  pkt_data; the legacy content modifiers http_uri, http_header, http_client_body, http_server_body;
- fast_pattern, metadata, reference, target, rawbytes are accepted and ignored;
- the header's transport, addresses, ports and direction -> Rule.header (rules/header.py), with Suricata's
  default variables ($HOME_NET, $EXTERNAL_NET, $HTTP_PORTS, ...) overridden by the `vars` argument or VARS.
Anything else (byte_test, flowbits, threshold, isdataat, dsize, ...) keeps the rule out, with a problem naming
the keyword; so does a header nvpcap cannot read (an undefined variable, a bad address).

Compilation. The pieces (contents, pcres) of one buffer become ONE regex, in rule order: a content is an escaped
literal, (?i:...) with nocase and (?-i:...) without (the engine compiles caseless); offset/depth anchor it at
the buffer's start, `^[\\s\\S]{offset,offset+depth-len}`; distance/within become the gap after the previous
piece, `[\\s\\S]{distance,distance+within-len}`; a piece with neither follows the previous one after
`[\\s\\S]*` (Suricata would accept any order). A later piece anchored with offset/depth, or a negated content,
is a pattern of its own in that buffer. Buffers map to the engine's contexts: url, header, body, tls.sni,
dns.query, and "packet" (every decoded context and the raw stream of cleartext flows).

Ids: rule_id is the sid (category "ids" has no NeuVector range, so sids never move); a sid already loaded in
the run keeps the rule out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .header import HeaderError, compile_header
from .model import LoadResult, Pattern, Rule, rule_problem, shown_pattern
from .regex import regex_problem

CATEGORY = "ids"
# variables of the run (name -> expression, "HOME_NET": "[10.0.0.0/8]"), over Suricata's defaults
# (header.ADDRESS_VARS, header.PORT_VARS); read at load time when no `vars` argument is given
VARS: dict[str, str] = {}
ACTIONS = ("alert", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth")  # nvpcap only reports: all alert
TRANSPORTS = ("ip", "tcp", "udp", "icmp", "icmpv4", "icmpv6", "any", "pkthdr", "sctp", "tcp-pkt", "tcp-stream")
# Suricata app-layer names -> nvpcap app_proto values (names nvpcap shares with Suricata map to themselves)
APPS: dict[str, tuple[str, ...]] = {
    "http": ("http", "http2", "grpc", "consul", "elasticsearch"),
    "http1": ("http", "consul", "elasticsearch"),
    "http2": ("http2", "grpc"),
    "tls": ("ssl",), "ssl": ("ssl",), "dns": ("dns",), "ssh": ("ssh",), "pgsql": ("postgresql",),
    "postgresql": ("postgresql",), "mysql": ("mysql",), "tds": ("mssql",), "mssql": ("mssql",),
    "dhcp": ("dhcp",), "ntp": ("ntp",), "tftp": ("tftp",), "sip": ("sip",), "rtsp": ("rtsp",),
    "radius": ("radius",), "redis": ("redis",), "mongodb": ("mongodb",), "kafka": ("kafka",),
}
# buffer keyword -> (context, forced direction or None). Sticky buffers apply to the pieces after them.
STICKY = {
    "http.uri": ("url", None), "http.header": ("header", None), "http.request_body": ("body", "request"),
    "http.response_body": ("body", "response"),
    "file.data": ("body", None), "file_data": ("body", None),
    "tls.sni": ("tls.sni", None), "tls_sni": ("tls.sni", None),
    "dns.query": ("dns.query", None), "dns_query": ("dns.query", None),
    "pkt_data": ("packet", None),
}
# Suricata's legacy content modifiers: they change the buffer of the content before them
MODIFIERS = {"http_uri": ("url", None), "http_header": ("header", None), "http_client_body": ("body", "request"),
             "http_server_body": ("body", "response")}
PCRE_BUFFERS = {"U": ("url", None), "H": ("header", None), "P": ("body", "request")}
IGNORED = frozenset({"fast_pattern", "metadata", "reference", "rev", "gid", "target", "rawbytes", "classtype",
                     "priority"})
FLOW_IGNORED = frozenset({"established", "stateless"})
FLOW_DIRECTIONS = {"to_server": "request", "from_client": "request", "to_client": "response",
                   "from_server": "response"}
# Suricata's classification.config: classtype -> default priority (used when the rule has no priority)
CLASS_PRIORITY = {
    **dict.fromkeys(("attempted-admin", "attempted-user", "inappropriate-content", "policy-violation",
                     "shellcode-detect", "successful-admin", "successful-user", "trojan-activity",
                     "unsuccessful-user", "web-application-attack", "kickass-porn", "exploit-kit",
                     "domain-c2", "command-and-control", "credential-theft", "targeted-activity"), 1),
    **dict.fromkeys(("attempted-dos", "attempted-recon", "bad-unknown", "default-login-attempt",
                     "denial-of-service", "misc-attack", "non-standard-protocol", "rpc-portmap-decode",
                     "successful-dos", "successful-recon-largescale", "successful-recon-limited",
                     "suspicious-filename-detect", "suspicious-login", "system-call-detect",
                     "unusual-client-port-connection", "web-application-activity", "social-engineering",
                     "coin-mining", "external-ip-check", "pup-activity", "misc-activity-2"), 2),
    **dict.fromkeys(("icmp-event", "misc-activity", "network-scan", "not-suspicious", "protocol-command-decode",
                     "string-detect", "unknown"), 3),
    "tcp-connection": 4,
}
DEFAULT_PRIORITY = 3
ANY = r"[\s\S]"


class Unsupported(ValueError):
    """The rule uses something outside the subset (the message says what): it is not imported."""


@dataclass
class ParsedRule:
    """A rule's text split into its header and options (values unescaped, quotes kept for content/pcre)."""

    action: str
    proto: str
    src: str
    sport: str
    direction: str
    dst: str
    dport: str
    options: list[tuple[str, str | None]]


@dataclass
class Piece:
    """One content or pcre, as a regex fragment with Suricata's position modifiers."""

    regex: str  # the fragment alone (escaped literal or flagged pcre group)
    kind: str  # "content" or "pcre"
    context: str
    forced: str | None = None  # direction the buffer implies
    negate: bool = False
    nocase: bool = False
    length: int = 0  # content bytes (for depth/within)
    literal: bytes = b""
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    relative: bool = False  # pcre R
    anchored: bool = False  # pcre starting with ^ (not multi-line) or with flag A
    startswith: bool = False
    endswith: bool = False


@dataclass
class _Chain:
    context: str
    parts: list[str] = field(default_factory=list)
    negate: bool = False


# ---- text ----

def rule_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, rule text) of every rule: comments and blank lines skipped, lines ending with a
    backslash joined with the next."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if not buf:
            start = no
        if s.endswith("\\"):
            buf.append(s[:-1])
            continue
        buf.append(s)
        out.append((start, " ".join(b.strip() for b in buf).strip()))
        buf = []
    if buf:
        out.append((start, " ".join(b.strip() for b in buf).strip()))
    return out


def _split_header(head: str) -> list[str]:
    """Whitespace-separated fields, brackets kept together ([1.2.3.4, 5.6.7.8])."""
    fields, cur, depth = [], [], 0
    for ch in head:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch.isspace() and depth <= 0:
            if cur:
                fields.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
    if cur:
        fields.append("".join(cur))
    return fields


def parse_rule(text: str) -> ParsedRule:
    """Split one rule. Raises ValueError when it is not a rule."""
    open_at = text.find("(")
    if open_at < 0 or not text.rstrip().endswith(")"):
        raise ValueError("no option list in parentheses")
    head = _split_header(text[:open_at])
    if len(head) != 7:
        raise ValueError(f"header has {len(head)} fields, expected 7 (action proto src sport -> dst dport)")
    if head[4] not in ("->", "<>", "=>"):
        raise ValueError(f"direction {head[4]!r} is not -> or <>")
    return ParsedRule(*head, options=parse_options(text[open_at + 1 : text.rstrip().rfind(")")]))


def parse_options(body: str) -> list[tuple[str, str | None]]:
    """`key; key:value; ...` -> [(key, value or None)]. Values: surrounding whitespace removed, `\\;` `\\"`
    `\\\\` `\\:` left escaped inside quotes (content/pcre decode them), unescaped outside."""
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(body)
    while i < n:
        while i < n and body[i] in " \t;":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and body[j] not in ":;":
            j += 1
        key = body[i:j].strip().lower()
        if j >= n or body[j] == ";":
            out.append((key, None))
            i = j + 1
            continue
        j += 1  # past ':'
        val: list[str] = []
        quoted = False
        while j < n:
            ch = body[j]
            if ch == "\\" and j + 1 < n:
                val.append(body[j : j + 2])
                j += 2
                continue
            if ch == '"':
                quoted = not quoted
            elif ch == ";" and not quoted:
                break
            val.append(ch)
            j += 1
        else:
            if quoted:
                raise ValueError(f"option {key!r}: unterminated quote")
        out.append((key, "".join(val).strip()))
        i = j + 1
    return out


def _unquote(value: str) -> tuple[str, bool]:
    """(text inside the quotes, negated) of a content/pcre value like !"abc"."""
    v = value.strip()
    negate = v.startswith("!")
    if negate:
        v = v[1:].strip()
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise Unsupported(f"value {value!r} is not a quoted string")
    return v[1:-1], negate


def content_bytes(text: str) -> bytes:
    """A content string to bytes: `|41 42|` hex sections, backslash escapes (\\; \\" \\\\ \\:) as the char."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "|":
            end = text.find("|", i + 1)
            if end < 0:
                raise Unsupported(f"content {text!r}: unterminated |hex| section")
            digits = "".join(text[i + 1 : end].split())
            if len(digits) % 2 or not re.fullmatch(r"[0-9A-Fa-f]*", digits):
                raise Unsupported(f"content {text!r}: bad hex {text[i + 1:end]!r}")
            out += bytes.fromhex(digits)
            i = end + 1
        elif ch == "\\" and i + 1 < n:
            out += text[i + 1].encode("utf-8")
            i += 2
        else:
            out += ch.encode("utf-8")
            i += 1
    return bytes(out)


def escape_bytes(data: bytes) -> str:
    """A literal as a regex both Hyperscan and Python read the same (letters/digits as is, the rest \\xNN)."""
    return "".join(chr(b) if (0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A) else f"\\x{b:02x}"
                   for b in data)


def _strip_extended(rx: str) -> str:
    """PCRE /x: drop unescaped whitespace and # comments outside character classes."""
    out: list[str] = []
    i, n, in_class = 0, len(rx), False
    while i < n:
        ch = rx[i]
        if ch == "\\" and i + 1 < n:
            out.append(rx[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch.isspace():
            i += 1
            continue
        elif ch == "#":
            end = rx.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# ---- options -> pieces ----

def _int(key: str, value: str | None, signed: bool = False) -> int:
    v = (value or "").strip()
    if not re.fullmatch(r"-?\d+" if signed else r"\d+", v):
        raise Unsupported(f"{key}:{value} is not a number (byte_extract variables are not supported)")
    return int(v)


def _pcre_piece(value: str, context: str, forced: str | None) -> Piece:
    text, negate = _unquote(value)
    text = text.replace('\\"', '"').replace("\\;", ";")
    if not text.startswith("/") or text.rfind("/") == 0:
        raise Unsupported(f"pcre {value!r} is not /regex/flags")
    end = text.rfind("/")
    rx, flags = text[1:end], text[end + 1 :]
    relative = anchored = False
    caseless = dotall = multiline = extended = False
    for f in flags:
        if f == "i":
            caseless = True
        elif f == "s":
            dotall = True
        elif f == "m":
            multiline = True
        elif f == "x":
            extended = True
        elif f == "R":
            relative = True
        elif f == "A":
            anchored = True
        elif f in "EO":
            pass  # $ at the very end only / match-limit override: no effect worth refusing the rule for
        elif f in PCRE_BUFFERS:
            context, forced = PCRE_BUFFERS[f]
        else:
            raise Unsupported(f"unsupported pcre flag {f!r}")
    if extended:
        rx = _strip_extended(rx)
    if rx.startswith("^") and not multiline:
        anchored = True
        rx = rx[1:]
    on = "i" if caseless else ""
    on += "m" if multiline else ""
    off = "" if caseless else "i"
    off += "" if dotall else "s"
    inline = f"(?{on}-{off}:" if off else f"(?{on}:"
    return Piece(f"{inline}{rx})", "pcre", context, forced, negate, relative=relative, anchored=anchored)


@dataclass
class _State:
    context: str = "packet"
    forced: str | None = None


def compile_rule(parsed: ParsedRule, source: str = "", variables: dict[str, str] | None = None) -> Rule:
    """The nvpcap rule for a parsed Suricata rule. `variables` override Suricata's default address and port
    variables (default: VARS). Raises Unsupported."""
    if parsed.action not in ACTIONS:
        raise Unsupported(f"action {parsed.action!r} (only {', '.join(ACTIONS)})")
    proto = parsed.proto.lower()
    try:
        header = compile_header(proto, parsed.src, parsed.sport, parsed.direction, parsed.dst, parsed.dport,
                                VARS if variables is None else variables)
    except HeaderError as e:
        raise Unsupported(f"header: {e}") from None
    apps: tuple[str, ...] = ()
    if proto not in TRANSPORTS:
        if proto not in APPS:
            raise Unsupported(f"protocol {proto!r} is not identified by nvpcap")
        apps = APPS[proto]
    msg, sid, priority, classtype = "", None, None, None
    directions: set[str] = set()
    pieces: list[Piece] = []
    st = _State()
    for key, value in parsed.options:
        if key == "msg":
            msg = (value or "").strip()
            if len(msg) >= 2 and msg[0] == msg[-1] == '"':
                msg = msg[1:-1]
            msg = re.sub(r"\\(.)", r"\1", msg)
        elif key == "sid":
            sid = _int(key, value)
        elif key == "priority":
            priority = _int(key, value)
        elif key == "classtype":
            classtype = (value or "").strip()
        elif key == "content":
            text, negate = _unquote(value or "")
            data = content_bytes(text)
            if not data:
                raise Unsupported("empty content")
            pieces.append(Piece(escape_bytes(data), "content", st.context, st.forced, negate, length=len(data),
                                literal=data))
        elif key == "pcre":
            pieces.append(_pcre_piece(value or "", st.context, st.forced))
        elif key in ("nocase", "offset", "depth", "distance", "within", "startswith", "endswith"):
            if not pieces or pieces[-1].kind != "content":
                raise Unsupported(f"{key} without a content before it")
            p = pieces[-1]
            if key == "nocase":
                p.nocase = True
            elif key in ("startswith", "endswith"):
                setattr(p, key, True)
            else:
                setattr(p, key, _int(key, value, signed=key == "distance"))
        elif key in MODIFIERS and value is None:
            if not pieces or pieces[-1].kind != "content":
                raise Unsupported(f"{key} without a content before it")
            pieces[-1].context, pieces[-1].forced = MODIFIERS[key]  # applies to the content before
        elif key in STICKY and value is None:
            st.context, st.forced = STICKY[key]
        elif key == "flow":
            for part in (value or "").split(","):
                part = part.strip().lower()
                if part in FLOW_DIRECTIONS:
                    directions.add(FLOW_DIRECTIONS[part])
                elif part not in FLOW_IGNORED:
                    raise Unsupported(f"unsupported flow:{part}")
        elif key == "app-layer-protocol":
            name = (value or "").strip().lower()
            if name not in APPS:
                raise Unsupported(f"unsupported app-layer-protocol:{value} (known: {', '.join(sorted(APPS))})")
            apps = APPS[name]
        elif key in IGNORED:
            continue
        else:
            raise Unsupported(f"unsupported keyword {key!r}")
    if sid is None:
        raise Unsupported("no sid")
    directions |= {p.forced for p in pieces if p.forced}
    if len(directions) > 1:
        raise Unsupported("both directions (flow and buffers disagree)")
    patterns = _patterns(pieces)
    if priority is None:
        priority = CLASS_PRIORITY.get(classtype or "", DEFAULT_PRIORITY)
    severity = {1: 5, 2: 4, 3: 3}.get(priority, 2)
    rule = Rule(rule_id=sid, name=msg or f"sid {sid}", category=CATEGORY, severity=severity, patterns=patterns,
                description=f"sid {sid}" + (f", classtype {classtype}" if classtype else ""), source=source,
                sensor="suricata", direction=directions.pop() if directions else "any", app_proto=apps,
                header=header)
    problem = rule_problem(rule)
    if problem:
        raise Unsupported(problem)
    return rule


def _content_regex(p: Piece) -> str:
    return f"(?{'i' if p.nocase else '-i'}:{p.regex})"


def _anchor(p: Piece) -> str | None:
    """The `^...` prefix of an absolutely placed piece, or None when it may be anywhere."""
    if p.kind == "pcre":
        return "^" if p.anchored else None
    if p.startswith:
        if p.offset or p.depth:
            raise Unsupported("startswith with offset/depth")
        return "^"
    if p.offset is None and p.depth is None:
        return None
    off = p.offset or 0
    if p.depth is None:
        return f"^{ANY}{{{off},}}"
    if p.depth < p.length:
        raise Unsupported(f"depth {p.depth} is shorter than its content ({p.length} bytes)")
    return f"^{ANY}{{{off},{off + p.depth - p.length}}}"


def _gap(p: Piece) -> str:
    """What lies between the previous piece and a relative one."""
    if p.kind == "pcre":
        if p.anchored:  # /^.../R: right after the previous match
            return ""
        return f"{ANY}*"
    d = p.distance or 0
    if d < 0:
        raise Unsupported(f"distance:{d} (negative distances are not supported)")
    if p.within is None:
        return f"{ANY}{{{d},}}" if d else f"{ANY}*"
    if p.within < p.length:
        raise Unsupported(f"within {p.within} is shorter than its content ({p.length} bytes)")
    return f"{ANY}{{{d},{d + p.within - p.length}}}"


def _patterns(pieces: list[Piece]) -> tuple[Pattern, ...]:
    chains: list[_Chain] = []
    current: dict[str, _Chain] = {}  # context -> the chain its last positive piece is in
    for p in pieces:
        body = _content_regex(p) if p.kind == "content" else p.regex
        if p.endswith:
            body += r"\z"
        relative = p.relative or (p.kind == "content" and (p.distance is not None or p.within is not None))
        if relative:
            if p.offset is not None or p.depth is not None:
                raise Unsupported("offset/depth together with distance/within")
            chain = current.get(p.context)
            if chain is None:
                raise Unsupported("distance/within (or pcre R) without a content before it in the same buffer")
            if p.negate:
                raise Unsupported("negated relative content/pcre")
            chain.parts.append(_gap(p) + body)
            continue
        anchor = _anchor(p)
        if p.negate:
            chains.append(_Chain(p.context, [(anchor or "") + body], negate=True))
            continue
        chain = current.get(p.context)
        if chain is None or anchor is not None:
            chain = _Chain(p.context, [(anchor or "") + body])
            chains.append(chain)
            current[p.context] = chain
        else:
            chain.parts.append(f"{ANY}*" + body)
    if not any(not c.negate for c in chains):
        raise Unsupported("no positive content or pcre")
    out = []
    for c in chains:
        regex = "".join(c.parts)
        problem = regex_problem(regex)
        if problem:
            raise Unsupported(f"/{shown_pattern(regex)}/: {problem}")
        out.append(Pattern(regex, c.negate, c.context))
    return tuple(out)


# ---- files ----

def load_text(text: str, source: str, ids: object = None, variables: dict[str, str] | None = None) -> LoadResult:
    """Rules of one file. `ids` (a RuleIds shared by the run) remembers the sids taken, so a duplicate sid in
    another file is reported too. `variables` ({"HOME_NET": "[10.0.0.0/8]", "HTTP_PORTS": "[80,8080]"})
    override Suricata's default header variables; default: the module's VARS."""
    out = LoadResult()
    seen: set[int] = getattr(ids, "sids", set())
    for no, line in rule_lines(text):
        where = f"{source}:{no}"
        try:
            parsed = parse_rule(line)
        except ValueError as e:
            out.problems.append(f"{where}: not a rule ({e}): skipped")
            continue
        sid = next((v for k, v in parsed.options if k == "sid"), None)
        try:
            rule = compile_rule(parsed, where, variables)
        except ValueError as e:
            out.problems.append(f"{where}: sid {sid}: {e}: rule skipped")
            continue
        if rule.rule_id in seen:
            out.problems.append(f"{where}: sid {rule.rule_id} is already loaded: rule skipped")
            continue
        seen.add(rule.rule_id)
        out.rules.append(rule)
    return out


def load_file(path: str | Path, ids: object = None, variables: dict[str, str] | None = None) -> LoadResult:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return LoadResult(problems=[f"{path}: cannot read: {e}"])
    return load_text(text, str(path), ids, variables)
