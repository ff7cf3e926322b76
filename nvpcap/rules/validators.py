"""Checks run on a pattern's matched text before a DLP rule fires, to drop look-alikes a regex cannot rule out
(a 16-digit order number is not a card unless its Luhn digit holds). Each is `str -> bool`, never raises."""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Rule

# -- Luhn (ISO/IEC 7812 card numbers) --
LUHN_MIN_DIGITS = 13
LUHN_MAX_DIGITS = 19
_CARD_SEPARATORS = str.maketrans("", "", " -")


def luhn(text: str) -> bool:
    """A payment card number: 13-19 digits (spaces and dashes ignored) whose Luhn check digit holds."""
    digits = text.strip().translate(_CARD_SEPARATORS)
    if not (LUHN_MIN_DIGITS <= len(digits) <= LUHN_MAX_DIGITS) or not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# -- US Social Security Number (SSA rules since 2011 randomisation) --
_SSN = re.compile(r"(\d{3})[- ]?(\d{2})[- ]?(\d{4})", re.ASCII)


def ssn(text: str) -> bool:
    """A US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000. Well-known published numbers
    (078-05-1120, the Woolworth wallet card) are accepted: they are valid in form and DLP tests use them (the
    bundled NeuVector rule.ssn regex excludes three of them itself, as NeuVector does)."""
    m = _SSN.fullmatch(text.strip())
    if m is None:
        return False
    area, group, serial = (int(g) for g in m.groups())
    return area not in (0, 666) and area < 900 and group != 0 and serial != 0


# -- IBAN (ISO 13616): length per country, then mod-97 == 1 --
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24,
    "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+", re.ASCII)


def iban(text: str) -> bool:
    """An IBAN of a country in IBAN_LENGTHS, of that country's length, whose mod-97 check holds (spaces ignored)."""
    s = text.replace(" ", "").upper()
    if not _IBAN.fullmatch(s) or IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# -- Shannon entropy of a token (generated secrets are near-random; words and placeholders are not) --
ENTROPY_MIN_LENGTH = 20  # shorter tokens carry too few symbols for the estimate to mean anything
ENTROPY_MIN_BITS = 3.5  # bits per character; random base64 of 40 chars scores ~4.9, English words ~3
_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]+")


def shannon_entropy(s: str) -> float:
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def entropy(text: str) -> bool:
    """The longest token of the match (base64/hex/url-safe characters, so `key = "..."` around a secret does not
    count) has at least ENTROPY_MIN_LENGTH characters and ENTROPY_MIN_BITS bits of entropy per character."""
    token = max(_TOKEN.findall(text), key=len, default="")
    return len(token) >= ENTROPY_MIN_LENGTH and shannon_entropy(token) >= ENTROPY_MIN_BITS


VALIDATORS: dict[str, Callable[[str], bool]] = {"luhn": luhn, "ssn": ssn, "iban": iban, "entropy": entropy}


# -- a rule's whole check (validator plus the gitleaks extensions of nvpcap/rules/gitleaks.py) --

def rule_validator(rule: Rule) -> Callable[[str], bool] | None:
    """The check the engine runs on the matched text of a rule's first positive pattern: its named validator,
    or, for a rule with gitleaks extensions (entropy threshold, keywords, allowlists), gitleaks' own checks on
    the secret (the rule's `secret_group`, else the first non-empty group, else the whole match). None when the
    text needs no check. Never raises (allowlist regexes Python cannot compile are ignored: the loader
    reported them)."""
    base = VALIDATORS.get(rule.validator) if rule.validator else None
    if rule.entropy is None and not rule.keywords and not rule.allowlists:
        return base
    from .regex import compile_python  # late: plain validators need no regex machinery

    try:
        rx: re.Pattern[bytes] | None = compile_python(rule.positive[0].regex)
    except (re.error, IndexError):
        rx = None
    keywords = tuple(k.lower() for k in rule.keywords if k)
    allows = []
    for a in rule.allowlists:
        regexes = []
        for r in a.regexes:
            try:
                regexes.append(re.compile(r))
            except re.error:
                continue
        allows.append((tuple(regexes), tuple(w.lower() for w in a.stopwords if w), a.target, a.condition))
    threshold = rule.entropy
    generic = rule.name.startswith("generic")
    named = base if (base is not None and not (rule.validator == "entropy" and threshold is not None)) else None

    def check(text: str) -> bool:
        if keywords:
            low = text.lower()
            if not any(k in low for k in keywords):
                return False
        secret = _secret(rx, rule.secret_group, text)
        if named is not None and not named(secret):
            return False
        if threshold is not None:
            if shannon_entropy(secret) <= threshold:
                return False
            if generic and not any(c.isdigit() for c in secret):  # gitleaks' rule for "generic*" ids
                return False
        for regexes, stopwords, target, condition in allows:
            hay = secret if target == "secret" else text
            hits = []
            if regexes:
                hits.append(any(r.search(hay) for r in regexes))
            if stopwords:
                low_secret = secret.lower()
                hits.append(any(w in low_secret for w in stopwords))
            if hits and (all(hits) if condition == "AND" else any(hits)):
                return False
        return True

    return check


def _secret(rx: re.Pattern[bytes] | None, group: int, text: str) -> str:
    """gitleaks' secret of a match: group `group` if set, else the first non-empty group, else the match."""
    if rx is None:
        return text
    m = rx.search(text.encode("latin-1", "replace"))
    if m is None:
        return text
    if group > 0:
        if group > rx.groups:
            return text
        g = m.group(group)
        return g.decode("latin-1") if g else ""
    for g in m.groups():
        if g:
            return g.decode("latin-1")
    return text
