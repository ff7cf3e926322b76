#!/usr/bin/env python3
"""Print the regex of the bundled rule.iban (nvpcap/rules/packs/dlp.yaml) from the BBAN structures of SWIFT's
IBAN registry: one alternative per SEPA country, its code, two check digits, then the BBAN in groups of four
characters that a single space may separate (print format). tests/test_rules_engine.py checks the pack's
regex is this one."""
import re
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from nvpcap.rules.validators import IBAN_LENGTHS  # noqa: E402
# IBAN registry (SWIFT, release 2024) BBAN structures of the SEPA countries: n digits, a upper-case letters, c alphanumerics
BBAN = {
 "AT": "16n", "BE": "12n", "BG": "4a6n8c", "CH": "5n12c", "CY": "8n16c", "CZ": "20n", "DE": "18n", "DK": "14n",
 "EE": "16n", "ES": "20n", "FI": "14n", "FR": "10n11c2n", "GB": "4a14n", "GR": "7n16c", "HR": "17n", "HU": "24n",
 "IE": "4a14n", "IS": "22n", "IT": "1a10n12c", "LI": "5n12c", "LT": "16n", "LU": "3n13c", "LV": "4a13c",
 "MC": "10n11c2n", "MT": "4a5n18c", "NL": "4a10n", "NO": "11n", "PL": "24n", "PT": "21n", "RO": "4a16c",
 "SE": "20n", "SI": "15n", "SK": "20n", "SM": "1a10n12c",
}
CLS = {"n": r"\d", "a": "[A-Z]", "c": "[A-Z0-9]"}


def positions(cc, spec):
    out = ["L", "L", "n", "n"]
    for k, t in re.findall(r"(\d+)([nac])", spec):
        out += [t] * int(k)
    return out


def regex(cc, spec):
    pos = positions(cc, spec)
    assert len(pos) == IBAN_LENGTHS[cc], (cc, len(pos), IBAN_LENGTHS[cc])
    parts = [cc, r"\d{2}"]
    i = 4
    while i < len(pos):  # groups of four (print format: a space may separate them)
        grp = pos[i:i + 4]
        s = " ?"
        runs = []
        for t in grp:
            if runs and runs[-1][0] == t:
                runs[-1][1] += 1
            else:
                runs.append([t, 1])
        s += "".join(CLS[t] + (f"{{{n}}}" if n > 1 else "") for t, n in runs)
        parts.append(s)
        i += 4
    return "".join(parts)


def iban_regex():
    return r"\b(?-i:" + "|".join(regex(cc, BBAN[cc]) for cc in sorted(BBAN)) + r")\b"


if __name__ == "__main__":
    print(iban_regex())
