"""The rule packs shipped with nvpcap (nvpcap/rules/packs/*.yaml, NeuVector CRD format), read with
importlib.resources so they load from a wheel or a zip as well as from the source tree."""
from __future__ import annotations

from importlib import resources

from .model import LoadResult
from .neuvector import RuleIds, load_text

PACKS = ("dlp.yaml", "secrets.yaml", "waf.yaml")  # load order fixes the rule ids


def pack_text(name: str) -> str:
    return resources.files("nvpcap.rules").joinpath("packs", name).read_text(encoding="utf-8")


def load_bundled(ids: RuleIds | None = None, packs: tuple[str, ...] = PACKS) -> LoadResult:
    """NeuVector's predefined DLP sensors (ids from 30000), nvpcap's secret detectors (after them) and WAF rules
    (ids from 49000). Pass the run's RuleIds to load user sensors alongside without id clashes."""
    ids = ids or RuleIds()
    out = LoadResult()
    for name in packs:
        out.extend(load_text(pack_text(name), f"bundled:{name}", ids, bundled=True))
    return out
