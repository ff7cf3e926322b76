"""Export a baseline as enforceable policy: NeuVector security-rule CRDs or Kubernetes NetworkPolicies.

Inputs are the parsed baseline file (its `rules`) and the parsed groups file (`{"groups": {...}}` or the inner
mapping; short form `name: [members]` or long form `name: {members, namespace, labels}`). Both exports only
allow what the baseline allows; when something cannot be expressed they leave it out (never widen) and say so in
a YAML comment at the top, with one exception: NeuVector apps that have no NeuVector name (see APP_NAMES) are
allowed as `applications: [any]` on the ports they were seen on, also noted in the comment.

NeuVector (`export_neuvector`), after NeuVector's docs "CRD - Custom Resource Definitions" and "Groups" and
the CRD schema in neuvector/manifests (crd-k8s-1.19.yaml):
- one document per source group, in a `kind: List` as NeuVector's own export; `spec.target.selector` is the
  source group and each baseline rule from it is an `egress` entry {selector, action: allow, applications, name,
  ports, priority};
- kind NvSecurityRule (namespaced) when the source group has a namespace, else NvClusterSecurityRule: NeuVector
  rejects an NvSecurityRule whose target has no `domain` matching its namespace (docs: "Supported Resource
  Types"; its export uses NvClusterSecurityRule for groups without a domain, e.g. external);
- a group with labels becomes label criteria (key = label key) plus `domain` = namespace; a group without labels
  becomes `address` criteria (CIDR, IP or DNS name; same-key criteria are ORed, and address criteria cannot be
  mixed with others); `external` is NeuVector's built-in group (empty criteria); `Host:<ip>` becomes an address
  group `nvpcap-host-<ip>`;
- ports: the rule's ports joined "tcp/80,udp/53", or "any"; port rules have `applications: [any]`, app rules the
  NeuVector names of their apps restricted to the ports where they were seen.

Kubernetes (`export_networkpolicy`), networking.k8s.io/v1 NetworkPolicy:
- one policy per destination group that has labels (podSelector.matchLabels; namespace from the group, else
  default), policyTypes [Ingress], one ingress rule per baseline rule into it;
- peers: a source group with labels as podSelector (plus namespaceSelector on kubernetes.io/metadata.name when
  its namespace differs); other groups as one ipBlock per CIDR/IP member (hostnames cannot be expressed);
  `Host:<ip>` as /32 or /128; `external` as 0.0.0.0/0 and ::/0 except the ranges nvpcap does not call external
  (private, loopback, link-local: the `is_private` ranges of Python's ipaddress, as nvpcap.baseline.groups does);
- ports: TCP/UDP/SCTP with port (and endPort for a range); `any` (or no ports) means no `ports` list;
- destination groups without labels (and external, Host:<ip>) cannot be selected: listed in the comment.
A rule whose source cannot be expressed is left out: an ingress rule without `from` would admit every source.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml

from .. import __version__

EXTERNAL = "external"
HOST_PREFIX = "Host:"
ANY = "any"

# nvpcap app_proto -> NeuVector application name (docs "CRD", "Applications (supported values)").
APP_NAMES = {
    "activemq": "ActiveMQ", "apache": "Apache", "cassandra": "Cassandra", "consul": "Consul",
    "couchbase": "Couchbase", "couchdb": "CouchDB", "dhcp": "DHCP", "dns": "DNS", "echo": "Echo",
    "elasticsearch": "ElasticSearch", "etcd": "etcd", "grpc": "GRPC", "http": "HTTP", "jetty": "Jetty",
    "kafka": "Kafka", "memcached": "Memcached", "mongodb": "MongoDB", "mssql": "MSSQL", "mysql": "MySQL",
    "nginx": "nginx", "ntp": "NTP", "oracle": "Oracle", "postgresql": "PostgreSQL", "rabbitmq": "RabbitMQ",
    "radius": "Radius", "redis": "Redis", "rtsp": "RTSP", "sip": "SIP", "spark": "Spark", "ssh": "SSH",
    "ssl": "SSL", "syslog": "Syslog", "tftp": "TFTP", "voltdb": "VoltDB", "wordpress": "Wordpress",
    "zookeeper": "ZooKeeper",
}

# Everything nvpcap does not call external (groups.default_name: is_private, is_loopback, is_link_local), as
# listed for ipaddress.is_private (IANA special-purpose registries); ipBlock.except must lie inside cidr.
NOT_EXTERNAL_V4 = ("0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/29",
                   "192.0.0.170/31", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
                   "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32")
NOT_EXTERNAL_V6 = ("::1/128", "::/128", "::ffff:0:0/96", "100::/64", "2001::/23", "2001:db8::/32",
                   "2001:10::/28", "fc00::/7", "fe80::/10")

_NV_NAME_OK = re.compile(r"^[a-zA-Z0-9]+[.:a-zA-Z0-9_-]*$")          # docs "CRD": group name and criteria key
_NV_RESERVED = ("fed", "workload", "nv.", "host:")                     # docs: reserved prefixes
_PORT = re.compile(r"^(tcp|udp|sctp)/(\d{1,5})(?:-(\d{1,5}))?$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ExportError(ValueError):
    """A baseline or groups document that cannot be exported (the message says which entry)."""


# ---- input ---------------------------------------------------------------------------------------------------------

def _groups(groups: dict | None) -> dict[str, dict]:
    """Normalise the groups document to {name: {"members": [...], "namespace": str|None, "labels": {...}}}."""
    if groups is None:
        return {}
    if not isinstance(groups, dict):
        raise ExportError("groups: expected a mapping (groups: {name: [CIDR, ...]})")
    inner = groups.get("groups") if isinstance(groups.get("groups"), dict) else groups
    out: dict[str, dict] = {}
    for name, spec in inner.items():
        if isinstance(spec, dict):
            members, ns, labels = spec.get("members") or [], spec.get("namespace"), spec.get("labels") or {}
        else:
            members, ns, labels = spec, None, {}
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, list) or not isinstance(labels, dict):
            raise ExportError(f"groups: group {name!r}: members must be a list and labels a mapping")
        out[str(name)] = {"members": [str(m).strip() for m in members], "namespace": str(ns) if ns else None,
                          "labels": {str(k): str(v) for k, v in labels.items()}}
    return out


def _rules(baseline: dict) -> list[dict]:
    if not isinstance(baseline, dict) or not isinstance(baseline.get("rules", []), list):
        raise ExportError("baseline: expected a mapping with a 'rules' list (apiVersion: nvpcap/v1, kind: Baseline)")
    rules = []
    for i, r in enumerate(baseline.get("rules") or []):
        if not isinstance(r, dict) or not r.get("from") or not r.get("to") or r.get("kind") not in ("app", "port"):
            raise ExportError(f"baseline: rule #{i + 1} (id {r.get('id') if isinstance(r, dict) else '?'}): "
                              "needs from, to and kind app|port")
        ports, apps = r.get("ports") or [], r.get("applications") or []
        if not isinstance(ports, list) or not isinstance(apps, list):
            raise ExportError(f"baseline: rule {r.get('id')}: ports and applications must be lists")
        rules.append({**r, "from": str(r["from"]), "to": str(r["to"]), "ports": [str(p).strip().lower() for p in ports],
                      "applications": [str(a).strip().lower() for a in apps]})
    return rules


def _comment(lines: list[str]) -> str:
    """YAML comment lines; names come from hand-edited files, so no line break can end the comment early."""
    return "".join(f"# {_CONTROL.sub('?', line)}\n" for line in lines)


def _host_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name[len(HOST_PREFIX):])
    except ValueError:
        return None


def _any_port(ports: list[str]) -> bool:
    return not ports or ANY in ports


# ---- NeuVector -----------------------------------------------------------------------------------------------------

def _nv_group_name(name: str) -> str:
    """A group name NeuVector accepts: its pattern, and none of the reserved prefixes or names."""
    if name.startswith(HOST_PREFIX):
        name = "nvpcap-host-" + name[len(HOST_PREFIX):]
    safe = re.sub(r"[^.:a-zA-Z0-9_-]", "-", name)
    if not safe or not safe[0].isalnum() or safe.lower().startswith(_NV_RESERVED) or \
            safe.lower() in ("nodes", "containers", EXTERNAL):
        safe = "nvpcap-" + safe.lstrip(".:_-")
    return safe


def _nv_selector(name: str, groups: dict[str, dict], notes: list[str]) -> dict | None:
    if name == EXTERNAL:
        return {"name": EXTERNAL, "criteria": []}
    if name.startswith(HOST_PREFIX):
        ip = _host_ip(name)
        if ip is None:
            notes.append(f"{name}: not an IP address; its rules are left out")
            return None
        return {"name": _nv_group_name(name), "criteria": [{"key": "address", "op": "=", "value": str(ip)}]}
    g = groups.get(name)
    if g is None:
        notes.append(f"group {name}: not in the groups file; its rules are left out")
        return None
    if g["labels"]:
        criteria = [{"key": k, "op": "=", "value": v} for k, v in sorted(g["labels"].items())]
        bad = [k for k in g["labels"] if not _NV_NAME_OK.match(k)]
        if bad:
            notes.append(f"group {name}: label key(s) {', '.join(sorted(bad))} do not match NeuVector's criteria "
                         "key pattern; check them before import")
        if g["namespace"]:
            criteria.append({"key": "domain", "op": "=", "value": g["namespace"]})
    else:
        criteria = [{"key": "address", "op": "=", "value": m} for m in g["members"] if m]
        if not criteria:
            notes.append(f"group {name}: no members and no labels; its rules are left out")
            return None
    return {"name": _nv_group_name(name), "criteria": criteria}


def _nv_ports(ports: list[str]) -> str:
    return ANY if _any_port(ports) else ",".join(ports)


def _dns_name(prefix: str, name: str, used: set[str]) -> str:
    """A unique DNS-1123 subdomain for metadata.name."""
    full = name if name.lower().startswith(prefix + "-") else f"{prefix}-{name}"
    labels = (re.sub(r"[^a-z0-9-]+", "-", part).strip("-") for part in full.lower().split("."))
    base = ".".join(p for p in labels if p)[:240].strip(".-") or prefix
    out, n = base, 1
    while out in used:
        n += 1
        out = f"{base}-{n}"
    used.add(out)
    return out


def neuvector_documents(baseline: dict, groups: dict | None) -> tuple[list[dict], list[str]]:
    """The NeuVector CRD objects for a baseline, and the notes on what was left out or approximated."""
    gs, rules, notes = _groups(groups), _rules(baseline), []
    by_source: dict[str, list[dict]] = {}
    for r in rules:
        by_source.setdefault(r["from"], []).append(r)
    items, used, counter = [], set(), 0
    for source in sorted(by_source):
        target = _nv_selector(source, gs, notes)
        if target is None:
            continue
        egress = []
        for r in sorted(by_source[source], key=lambda r: (r["to"], r["kind"], r.get("id") or 0)):
            dest = _nv_selector(r["to"], gs, notes)
            if dest is None:
                continue
            ports = _nv_ports(r["ports"])
            if r["kind"] == "port":
                variants = [[ANY]]
            else:
                mapped = sorted({APP_NAMES[a] for a in r["applications"] if a in APP_NAMES}, key=str.lower)
                unmapped = sorted(a for a in r["applications"] if a not in APP_NAMES)
                variants = [mapped] if mapped else []
                if unmapped or not r["applications"]:
                    variants.append([ANY])
                    notes.append(f"rule {r.get('id')} ({source} -> {r['to']}): "
                                 f"{', '.join(unmapped) or 'no application'} has no NeuVector application name; "
                                 f"allowed as applications [any] on ports {ports}")
            for apps in variants:
                egress.append({"selector": dest, "action": "allow", "applications": apps,
                               "name": f"{dest['name']}-egress-{counter}", "ports": ports, "priority": 0})
                counter += 1
        ns = gs.get(source, {}).get("namespace")
        items.append({
            "apiVersion": "neuvector.com/v1",
            "kind": "NvSecurityRule" if ns else "NvClusterSecurityRule",
            "metadata": {"name": _dns_name("nvpcap", target["name"], used), "namespace": ns or "default"},
            "spec": {"target": {"selector": target}, "egress": egress, "ingress": [], "process": [], "file": []},
        })
    return items, notes


def export_neuvector(baseline: dict, groups: dict | None) -> str:
    """The baseline as NeuVector network rules: a `kind: List` of NvSecurityRule/NvClusterSecurityRule (YAML)."""
    items, notes = neuvector_documents(baseline, groups)
    notes = list(dict.fromkeys(notes))
    header = [(f"NeuVector network rules exported by nvpcap {__version__} from a baseline "
               f"({len(baseline.get('rules') or [])} rules); apply with kubectl, review first.")]
    if notes:
        header.append("Left out or approximated:")
        header += [f"- {n}" for n in notes]
    body = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}},
                          sort_keys=False, allow_unicode=True, default_flow_style=False)
    return _comment(header) + body


# ---- Kubernetes NetworkPolicy --------------------------------------------------------------------------------------

def _external_peers() -> list[dict]:
    return [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NOT_EXTERNAL_V4)}},
            {"ipBlock": {"cidr": "::/0", "except": list(NOT_EXTERNAL_V6)}}]


def _k8s_peers(name: str, dest_ns: str, gs: dict[str, dict], notes: list[str]) -> list[dict]:
    if name == EXTERNAL:
        return _external_peers()
    if name.startswith(HOST_PREFIX):
        ip = _host_ip(name)
        if ip is None:
            notes.append(f"{name}: not an IP address; its rules are left out")
            return []
        return [{"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}]
    g = gs.get(name)
    if g is None:
        notes.append(f"group {name}: not in the groups file; its rules are left out")
        return []
    if g["labels"]:
        peer: dict[str, Any] = {"podSelector": {"matchLabels": dict(sorted(g["labels"].items()))}}
        src_ns = g["namespace"] or "default"
        if src_ns != dest_ns:
            peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": src_ns}}
        return [peer]
    peers, names = [], []
    for m in g["members"]:
        try:
            peers.append({"ipBlock": {"cidr": str(ipaddress.ip_network(m, strict=False))}})
        except ValueError:
            names.append(m)
    if names:
        notes.append(f"group {name}: hostname member(s) {', '.join(names)} cannot be an ipBlock; left out")
    if not peers:
        notes.append(f"group {name}: no labels and no CIDR/IP members; its rules are left out")
    return peers


def _k8s_ports(r: dict, notes: list[str]) -> list[dict] | None:
    """NetworkPolicyPort list; None = all ports (no `ports` key); [] = nothing expressible (rule left out)."""
    if _any_port(r["ports"]):
        return None
    out, bad = [], []
    for p in r["ports"]:
        m = _PORT.match(p)
        if not m or int(m.group(2)) > 65535 or (m.group(3) and not int(m.group(2)) < int(m.group(3)) <= 65535):
            bad.append(p)
            continue
        entry: dict[str, Any] = {"protocol": m.group(1).upper(), "port": int(m.group(2))}
        if m.group(3):
            entry["endPort"] = int(m.group(3))
        out.append(entry)
    if bad:
        notes.append(f"rule {r.get('id')} ({r['from']} -> {r['to']}): port(s) {', '.join(bad)} cannot be expressed; "
                     "left out")
    return out


def networkpolicy_documents(baseline: dict, groups: dict | None) -> tuple[list[dict], list[str]]:
    """The NetworkPolicy objects for a baseline, and the notes on what was left out."""
    gs, rules, notes = _groups(groups), _rules(baseline), []
    by_dest: dict[str, list[dict]] = {}
    for r in rules:
        by_dest.setdefault(r["to"], []).append(r)
    unselectable = sorted(d for d in by_dest if not gs.get(d, {}).get("labels"))
    policies, used = [], set()
    for dest in sorted(d for d in by_dest if d not in unselectable):
        g = gs[dest]
        ns = g["namespace"] or "default"
        ingress = []
        for r in sorted(by_dest[dest], key=lambda r: (r["from"], r["kind"], r.get("id") or 0)):
            peers = _k8s_peers(r["from"], ns, gs, notes)
            ports = _k8s_ports(r, notes)
            if not peers or ports == []:
                continue          # never emit a rule without `from` (it would admit every source)
            rule: dict[str, Any] = {"from": peers}
            if ports is not None:
                rule["ports"] = ports
            ingress.append(rule)
        policies.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": _dns_name("nvpcap", dest, used), "namespace": ns,
                         "labels": {"app.kubernetes.io/managed-by": "nvpcap"}},
            "spec": {"podSelector": {"matchLabels": dict(sorted(g["labels"].items()))},
                     "policyTypes": ["Ingress"], "ingress": ingress},
        })
    if unselectable:
        notes.insert(0, "destinations without labels cannot be selected by a NetworkPolicy; no policy for: "
                     + ", ".join(unselectable))
    return policies, notes


def export_networkpolicy(baseline: dict, groups: dict | None) -> str:
    """The baseline as Kubernetes NetworkPolicies (multi-document YAML, one policy per labelled destination)."""
    policies, notes = networkpolicy_documents(baseline, groups)
    notes = list(dict.fromkeys(notes))
    header = [(f"Kubernetes NetworkPolicies exported by nvpcap {__version__} from a baseline "
               f"({len(baseline.get('rules') or [])} rules); review before applying.")]
    header += notes
    body = yaml.safe_dump_all(policies, sort_keys=False, allow_unicode=True, default_flow_style=False,
                              explicit_start=True) if policies else ""
    return _comment(header) + body
