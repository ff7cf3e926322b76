"""The baseline file: learned rules in a readable, versioned YAML that people review and edit by hand.

Shape (docs/baseline.md): per (from group, to group) at most one `app` rule (applications, and the ports they
were seen on) and one `port` rule (ports, or `any`), each with first/last seen, flow and byte counts and a few
example flows, as NeuVector's learned rules (ids from 10000).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from .. import __version__

API_VERSION = "nvpcap/v1"
KIND = "Baseline"
FIRST_LEARNED_ID = 10000  # NeuVector's learned rules start here
MAX_PORTS = 20  # NeuVector's MaxSvcPortNum: more ports collapse to `any`
MAX_EXAMPLES = 3
ANY = "any"
_PORT = re.compile(r"^(tcp|udp|sctp)/(\d{1,5})$")


class BaselineError(ValueError):
    """A baseline file that cannot be used (the message names the file and the rule)."""


@dataclass
class Rule:
    id: int
    from_group: str
    to_group: str
    kind: str  # "app" or "port"
    applications: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # "tcp/80", or ["any"]
    first_seen: float | None = None
    last_seen: float | None = None
    flows: int = 0
    bytes: int = 0
    examples: list[dict] = field(default_factory=list)

    @property
    def any_port(self) -> bool:
        return ANY in self.ports

    def summary(self) -> dict:
        """The rule as shown beside a violation (closest rule)."""
        return {"id": self.id, "from": self.from_group, "to": self.to_group, "kind": self.kind,
                "ports": list(self.ports), "applications": list(self.applications)}

    def to_yaml(self) -> dict:
        return {"id": self.id, "from": self.from_group, "to": self.to_group, "kind": self.kind,
                "applications": list(self.applications), "ports": list(self.ports),
                "first_seen": iso(self.first_seen), "last_seen": iso(self.last_seen), "flows": int(self.flows),
                "bytes": int(self.bytes), "examples": list(self.examples)}


@dataclass
class Baseline:
    rules: list[Rule] = field(default_factory=list)
    learned_from: list[dict] = field(default_factory=list)
    groups_file: str | None = None
    path: str | None = None

    def next_id(self) -> int:
        return max((r.id for r in self.rules), default=FIRST_LEARNED_ID - 1) + 1

    def rule(self, from_group: str, to_group: str, kind: str) -> Rule | None:
        for r in self.rules:
            if r.from_group == from_group and r.to_group == to_group and r.kind == kind:
                return r
        return None

    def to_yaml(self) -> str:
        doc = {"apiVersion": API_VERSION, "kind": KIND,
               "metadata": {"generator": f"nvpcap {__version__}", "learned_from": self.learned_from,
                            **({"groups_file": self.groups_file} if self.groups_file else {})},
               "rules": [r.to_yaml() for r in sorted(self.rules, key=lambda r: r.id)]}
        return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(value: object) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    text = str(value).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def read_yaml(path: str | Path, error: type[ValueError]) -> object:
    """A YAML (or JSON) file's document; `error` (naming the file) when it cannot be read or parsed."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file; every problem names the rule it is in."""
    doc = read_yaml(path, BaselineError)
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise BaselineError(f"{path}: not an nvpcap baseline (expected kind: {KIND})")
    if doc.get("apiVersion") != API_VERSION:
        raise BaselineError(f"{path}: apiVersion {doc.get('apiVersion')!r} is not supported (this nvpcap reads "
                            f"{API_VERSION})")
    meta = doc.get("metadata") or {}
    baseline = Baseline(learned_from=list(meta.get("learned_from") or []), groups_file=meta.get("groups_file"),
                        path=str(path))
    seen: set[tuple[str, str, str]] = set()
    ids: set[int] = set()
    for i, raw in enumerate(doc.get("rules") or []):
        rule = _parse_rule(str(path), i, raw)
        key = (rule.from_group, rule.to_group, rule.kind)
        if key in seen:
            raise BaselineError(f"{path}: rule {rule.id}: a second {rule.kind} rule for {rule.from_group} -> "
                                f"{rule.to_group} (merge them: one app rule and one port rule per pair)")
        if rule.id in ids:
            raise BaselineError(f"{path}: rule id {rule.id} is used twice")
        seen.add(key)
        ids.add(rule.id)
        baseline.rules.append(rule)
    return baseline


def _parse_rule(path: str, index: int, raw: object) -> Rule:
    where = f"{path}: rule #{index + 1}"
    if not isinstance(raw, dict):
        raise BaselineError(f"{where}: expected a mapping")
    try:
        rule = Rule(id=int(raw.get("id", FIRST_LEARNED_ID + index)), from_group=str(raw["from"]),
                    to_group=str(raw["to"]), kind=str(raw.get("kind") or ("app" if raw.get("applications") else "port")),
                    applications=[str(a).lower() for a in _listed(raw.get("applications"))],
                    ports=[str(p).lower() for p in _listed(raw.get("ports"))],
                    first_seen=from_iso(raw.get("first_seen")), last_seen=from_iso(raw.get("last_seen")),
                    flows=int(raw.get("flows") or 0), bytes=int(raw.get("bytes") or 0),
                    examples=list(raw.get("examples") or []))
    except KeyError as exc:
        raise BaselineError(f"{where}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise BaselineError(f"{where}: {exc}") from None
    where = f"{path}: rule {rule.id}"
    if rule.kind not in ("app", "port"):
        raise BaselineError(f"{where}: kind must be app or port, not {rule.kind!r}")
    if rule.kind == "app" and not rule.applications:
        raise BaselineError(f"{where}: an app rule needs applications")
    if rule.kind == "port" and not rule.ports:
        raise BaselineError(f"{where}: a port rule needs ports (e.g. [tcp/80] or [any])")
    for p in rule.ports:
        m = _PORT.match(p)
        if p != ANY and not (m and 0 <= int(m.group(2)) <= 65535):
            raise BaselineError(f"{where}: port {p!r} is not proto/number (tcp/80) or any")
    return rule


def _listed(value: object) -> list:
    """A YAML list, or one value written without brackets (`ports: tcp/80`, `ports: "tcp/80, tcp/443"`)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def port_key(proto: str, port: int) -> str:
    return f"{proto}/{int(port)}"


def sort_ports(ports: set[str] | list[str]) -> list[str]:
    if ANY in ports:
        return [ANY]
    return sorted(ports, key=lambda p: (p.split("/")[0], int(p.split("/")[1])))
