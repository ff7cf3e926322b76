"""Groups: who an address is. A user's YAML names groups by CIDRs, IPs and hostnames; the rest is named as
NeuVector names unmanaged peers: `Host:<ip>` inside private ranges, `external` outside.

Assignment is per distinct address (a capture has far fewer addresses than flows), so a million flows cost a
few thousand lookups, then one vectorised map.
"""
from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .model import read_yaml

EXTERNAL = "external"
HOST_PREFIX = "Host:"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class GroupsError(ValueError):
    """A groups file that cannot be used (the message names the file and the entry)."""


@dataclass
class Group:
    name: str
    networks: list[IPNetwork] = field(default_factory=list)
    hostnames: list[str] = field(default_factory=list)  # exact names or shell patterns (*.example.com)
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class GroupMap:
    groups: list[Group] = field(default_factory=list)
    source: str | None = None
    notes: list[str] = field(default_factory=list)  # what an import left out (kubectl lists)

    def __post_init__(self) -> None:
        # longest prefix wins, as a routing table would decide
        self._nets = sorted(((net, g.name) for g in self.groups for net in g.networks),
                            key=lambda x: (-x[0].prefixlen, x[0].version))

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def as_dict(self) -> dict:
        """The parsed groups in the file's long form (what exports read)."""
        return {"groups": {g.name: {"members": [str(n) for n in g.networks] + g.hostnames,
                                    **({"namespace": g.namespace} if g.namespace else {}),
                                    **({"labels": dict(g.labels)} if g.labels else {})} for g in self.groups}}

    def group_of(self, ip: str, names: set[str] | frozenset[str] = frozenset()) -> str:
        """The group of one address; `names` are hostnames seen for it in the same captures."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return EXTERNAL
        for net, name in self._nets:
            if addr.version == net.version and addr in net:
                return name
        if names:
            for g in self.groups:
                for pattern in g.hostnames:
                    if any(fnmatch.fnmatchcase(n, pattern) for n in names):
                        return g.name
        return default_name(addr)

    def assign(self, ips: pd.Series, hostnames: dict[str, list[str]] | None = None) -> pd.Series:
        """Group names for a column of addresses (one lookup per distinct address)."""
        hostnames = hostnames or {}
        codes, uniques = pd.factorize(ips, use_na_sentinel=False)
        names = [self.group_of(str(ip), frozenset(n.lower() for n in hostnames.get(str(ip), ()))) for ip in uniques]
        return pd.Series(np.asarray(names, dtype=object)[codes] if len(names) else [], index=ips.index, dtype=object)


def default_name(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """NeuVector's names for an address in no group."""
    if addr.is_private or addr.is_loopback or addr.is_link_local:
        return f"{HOST_PREFIX}{addr}"
    return EXTERNAL


def is_internal(name: str) -> bool:
    return name != EXTERNAL


def load_groups(path: str | Path | None) -> GroupMap:
    """Read a groups YAML file (docs/baseline.md, "Groups"), or a Kubernetes object list (kubectl -o json/yaml:
    baseline/k8s.py). No path: no groups, every address by its default name."""
    if path is None:
        return GroupMap()
    doc = read_yaml(path, GroupsError)
    if doc is None:
        return GroupMap(source=str(path))
    from .k8s import groups_from_objects, is_object_list

    if is_object_list(doc):  # kubectl get pods,services -A -o json (or -o yaml)
        groups, notes = groups_from_objects(doc, str(path))
        return GroupMap(groups, source=str(path), notes=notes)
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), dict):
        raise GroupsError(f"{path}: expected a mapping with a 'groups' key (groups: {{name: [CIDR, ...]}})")
    groups = [_parse_group(str(path), str(name), spec) for name, spec in doc["groups"].items()]
    return GroupMap(groups, source=str(path))


def _parse_group(path: str, name: str, spec: object) -> Group:
    if name == EXTERNAL or name.startswith(HOST_PREFIX):
        raise GroupsError(f"{path}: group {name!r}: the name is reserved for addresses in no group")
    namespace, labels = None, {}
    if isinstance(spec, dict):
        members = spec.get("members", [])
        namespace = spec.get("namespace")
        labels = spec.get("labels") or {}
        if not isinstance(labels, dict):
            raise GroupsError(f"{path}: group {name!r}: labels must be a mapping")
        unknown = set(spec) - {"members", "namespace", "labels"}
        if unknown:
            raise GroupsError(f"{path}: group {name!r}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    else:
        members = spec
    if isinstance(members, str):
        members = [members]
    if not isinstance(members, list):
        raise GroupsError(f"{path}: group {name!r}: members must be a list of CIDRs, IPs or hostnames")
    group = Group(name, namespace=str(namespace) if namespace else None,
                  labels={str(k): str(v) for k, v in labels.items()})
    for m in members:
        text = str(m).strip()
        try:
            group.networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            if not text or any(c.isspace() for c in text) or "/" in text:
                raise GroupsError(f"{path}: group {name!r}: {text!r} is neither a CIDR, an IP nor a hostname") from None
            group.hostnames.append(text.lower().rstrip("."))
    return group
