"""Evidence snippets for alerts. DLP evidence is the very data the rule protects, so it is masked before it
reaches any record; WAF evidence is the attack text, shown as is (escaped) so an analyst can judge it."""
from __future__ import annotations

SNIPPET_MAX = 120  # characters of a snippet, after escaping
KEEP_LAST_DIGITS = 4  # cards, SSNs: like a receipt
KEEP_FIRST_CHARS = 4  # other secrets: enough to tell an AWS key (AKIA) from a GitHub token (ghp_)
MASK = "*"
_NUMERIC_VALIDATORS = ("luhn", "ssn", "iban")


_PLAIN = bytes(b for b in range(0x20, 0x7F) if b != 0x5C)  # shown as they are


def printable(data: bytes) -> str:
    """Bytes as printable ASCII: \\n \\r \\t and \\xNN for the rest, backslash doubled."""
    if not data.translate(None, _PLAIN):  # the common case: nothing to escape
        return data.decode("ascii")
    out: list[str] = []
    for b in data:
        if 0x20 <= b < 0x7F:
            out.append("\\\\" if b == 0x5C else chr(b))
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x09:
            out.append("\\t")
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def cap(text: str, limit: int = SNIPPET_MAX) -> str:
    """At most `limit` characters, "..." marking a cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mostly_digits(data: bytes) -> bool:
    alnum = sum(1 for b in data if chr(b).isalnum())
    digits = sum(1 for b in data if 0x30 <= b <= 0x39)
    return digits >= 6 and digits * 10 >= alnum * 6


def mask_digits(data: bytes, keep_last: int = KEEP_LAST_DIGITS) -> bytes:
    total = sum(1 for b in data if 0x30 <= b <= 0x39)
    seen = 0
    out = bytearray()
    for b in data:
        if 0x30 <= b <= 0x39:
            seen += 1
            out.append(b if seen > total - keep_last else ord(MASK))
        else:
            out.append(b)
    return bytes(out)


def mask_secret(data: bytes, keep_first: int = KEEP_FIRST_CHARS) -> bytes:
    """Keep the first characters, mask every later letter or digit (punctuation stays, to show the shape)."""
    head, tail = data[:keep_first], data[keep_first:]
    return head + bytes(ord(MASK) if chr(b).isalnum() else b for b in tail)


def snippet(category: str, validator: str | None, text: bytes) -> str:
    """The alert's snippet for the matched text of a rule of this category."""
    if category in ("waf", "ids"):
        # every byte shows as at least one character: bytes past SNIPPET_MAX + 1 can only be cut off
        return cap(printable(text[: SNIPPET_MAX + 1]))
    if validator in _NUMERIC_VALIDATORS or (validator is None and _mostly_digits(text)):
        return cap(printable(mask_digits(text)))
    return cap(printable(mask_secret(text)))
