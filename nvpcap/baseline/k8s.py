"""Groups from a Kubernetes object list (`kubectl get pods,services -A -o json`): the cluster says who an
address is, so a capture taken in a cluster gets NeuVector's workload group names without a hand-written file.

A pod's group is `nv.<service>.<namespace>`, as NeuVector names learned workload groups: the service is the
pod's `app.kubernetes.io/name`, `app` or `k8s-app` label, else its controller (a Deployment's ReplicaSet name
without the pod-template hash, a StatefulSet or DaemonSet name), else the pod name. A Service's cluster IP joins
`nv.<service name>.<namespace>`. Pods on the host network are skipped (their address is the node's). The
label the name came from is kept as the group's selector, with the namespace, for the NetworkPolicy export.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from .groups import Group, GroupsError

NAME_LABELS = ("app.kubernetes.io/name", "app", "k8s-app")


def is_object_list(doc: Any) -> bool:
    """A kubectl list (`kind: List`, or any mapping whose `items` are objects with a `kind`)."""
    return isinstance(doc, dict) and isinstance(doc.get("items"), list) and (
        doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List")
        or all(isinstance(i, dict) and "kind" in i for i in doc["items"]))


def groups_from_objects(doc: dict, source: str) -> tuple[list[Group], list[str]]:
    """The groups of the pods and services in a kubectl list, and notes on what was skipped."""
    groups: dict[str, Group] = {}
    notes: list[str] = []
    for item in doc["items"]:
        if not isinstance(item, dict):
            continue
        kind = item.get("kind")
        meta = item.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        if kind == "Pod":
            if (item.get("spec") or {}).get("hostNetwork"):
                notes.append(f"pod {namespace}/{meta.get('name')}: on the host network, left out")
                continue
            service, selector = _pod_service(meta)
            status = item.get("status") or {}
            addresses = [p.get("ip") for p in status.get("podIPs") or [] if isinstance(p, dict)] or [status.get("podIP")]
        elif kind == "Service":
            spec = item.get("spec") or {}
            service = str(meta.get("name"))
            selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
            addresses = list(spec.get("clusterIPs") or []) or [spec.get("clusterIP")]
        else:
            continue
        name = f"nv.{service}.{namespace}"
        group = groups.setdefault(name, Group(name, namespace=namespace, labels=selector))
        for address in addresses:
            if not address or address == "None":
                continue
            try:
                net = ipaddress.ip_network(str(address))
            except ValueError:
                raise GroupsError(f"{source}: {kind} {namespace}/{meta.get('name')}: bad address {address!r}") from None
            if net not in group.networks:
                group.networks.append(net)
    return [g for g in groups.values() if g.networks], notes


def _pod_service(meta: dict) -> tuple[str, dict[str, str]]:
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    for key in NAME_LABELS:
        if labels.get(key):
            return labels[key], {key: labels[key]}
    owners = meta.get("ownerReferences") or []
    if owners and isinstance(owners[0], dict) and owners[0].get("name"):
        owner = str(owners[0]["name"])
        template_hash = labels.get("pod-template-hash")
        if owners[0].get("kind") == "ReplicaSet" and template_hash and owner.endswith("-" + template_hash):
            owner = owner[: -len(template_hash) - 1]  # the Deployment's name
        return owner, {}
    return str(meta.get("name")), {}
