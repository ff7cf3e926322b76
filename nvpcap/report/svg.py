"""Geometry for the reports' inline SVG (graph of groups, timelines), computed here so templates only draw.

Layouts are deterministic (same input, same picture) and bounded: a capture decides how many groups, edges and
violations there are, so every list is capped before it reaches a template.
"""
from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone

MAX_NODES = 60
MAX_EDGES = 400
MAX_DOTS = 1000
BUCKETS = 40
LABEL_CHARS = 24

_KIND_ORDER = {"group": 0, "host": 1, "external": 2}
_EDGE_RANK = {"violation": 0, "new": 1, "baseline": 2, "unused": 3}
EDGE_STATUSES = tuple(_EDGE_RANK)


def short(text: str, limit: int = LABEL_CHARS) -> str:
    """A label cut to fit the picture (the full text goes in a <title>)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def graph_layout(graph: dict | None, width: int = 720, height: int = 520) -> dict:
    """Nodes on a circle (sorted by kind, then name), edges as curves; new and violating edges kept first."""
    graph = graph or {}
    raw_nodes = [n for n in graph.get("nodes") or [] if isinstance(n, dict) and "id" in n]
    raw_edges = [e for e in graph.get("edges") or [] if isinstance(e, dict) and "from" in e and "to" in e]
    raw_edges.sort(key=lambda e: (_EDGE_RANK.get(e.get("status"), 9), -int(e.get("flows") or 0),
                                  str(e["from"]), str(e["to"])))
    kinds = {str(n["id"]): str(n.get("kind") or "group") for n in raw_nodes}
    for e in raw_edges:  # an edge may name a node the node list forgot
        for end in (str(e["from"]), str(e["to"])):
            kinds.setdefault(end, "external" if end == "external" else "host" if end.startswith("Host:") else "group")
    # keep the nodes of the most important edges first, then the rest by name
    keep: list[str] = []
    for e in raw_edges:
        for end in (str(e["from"]), str(e["to"])):
            if end not in keep and len(keep) < MAX_NODES:
                keep.append(end)
    for name in sorted(kinds):
        if name not in keep and len(keep) < MAX_NODES:
            keep.append(name)
    keep.sort(key=lambda n: (_KIND_ORDER.get(kinds[n], 3), n))
    cx, cy = width / 2, height / 2
    radius = min(width, height) / 2 - 110 if len(keep) > 1 else 0
    pos: dict[str, tuple[float, float]] = {}
    nodes = []
    for i, name in enumerate(keep):
        angle = -math.pi / 2 + 2 * math.pi * i / max(len(keep), 1)
        x, y = cx + radius * math.cos(angle), cy + radius * math.sin(angle)
        pos[name] = (x, y)
        cos = math.cos(angle)
        anchor = "middle" if abs(cos) < 0.3 else ("start" if cos > 0 else "end")
        lx, ly = x + 14 * math.cos(angle), y + 14 * math.sin(angle) + 4
        kind = kinds[name] if kinds[name] in _KIND_ORDER else "group"
        nodes.append({"id": name, "label": short(name), "kind": kind, "x": round(x, 1), "y": round(y, 1),
                      "lx": round(lx, 1), "ly": round(ly, 1), "anchor": anchor})
    edges = []
    for e in raw_edges:
        a, b = str(e["from"]), str(e["to"])
        if a not in pos or b not in pos or len(edges) >= MAX_EDGES:
            continue
        status = e.get("status") if e.get("status") in _EDGE_RANK else "baseline"
        (x1, y1), (x2, y2) = pos[a], pos[b]
        if a == b:  # a loop outside the circle
            ox, oy = (x1 - cx, y1 - cy)
            norm = math.hypot(ox, oy) or 1.0
            ux, uy = ox / norm, oy / norm
            px, py = -uy, ux
            path = (f"M {x1:.1f} {y1:.1f} C {x1 + 40 * ux + 16 * px:.1f} {y1 + 40 * uy + 16 * py:.1f} "
                    f"{x1 + 40 * ux - 16 * px:.1f} {y1 + 40 * uy - 16 * py:.1f} {x1:.1f} {y1:.1f}")
        else:
            dx, dy = x2 - x1, y2 - y1
            dist = math.hypot(dx, dy) or 1.0
            # stop short of the target's circle, bend to the right so a->b and b->a stay apart
            x2s, y2s = x2 - dx / dist * 9, y2 - dy / dist * 9
            mx, my = (x1 + x2s) / 2 - dy / dist * dist * 0.12, (y1 + y2s) / 2 + dx / dist * dist * 0.12
            path = f"M {x1:.1f} {y1:.1f} Q {mx:.1f} {my:.1f} {x2s:.1f} {y2s:.1f}"
        edges.append({"from": a, "to": b, "status": status, "path": path, "flows": int(e.get("flows") or 0),
                      "label": str(e.get("label") or "")})
    edges.reverse()  # draw the important (red) edges last, on top
    return {"width": width, "height": height, "nodes": nodes, "edges": edges,
            "omitted_nodes": max(len(kinds) - len(keep), 0), "omitted_edges": max(len(raw_edges) - len(edges), 0)}


def to_float(value) -> float | None:
    """A number from a field that should hold one (None when it does not, or is not finite)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def to_int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def isotime(ts: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC (what every other nvpcap output shows)."""
    if ts is None:
        return ""
    try:
        return datetime.fromtimestamp(float(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(
            ".000000Z", "Z")
    except (ValueError, OverflowError, OSError, TypeError):
        return str(ts)


def timeline(points: list[tuple[float, int, str]], t0: float | None = None, t1: float | None = None,
             width: int = 900, height: int = 170) -> dict:
    """Counts per time bucket (bars) and one dot per point (capped), on a shared capture-time axis.

    `points` are (ts, severity 1..5, label).
    """
    pts = [(t, to_int(sev, 1), str(lbl)) for t, sev, lbl in ((to_float(ts), sev, lbl) for ts, sev, lbl in points)
           if t is not None]
    t0, t1 = to_float(t0), to_float(t1)
    if t0 is None and pts:
        t0 = min(p[0] for p in pts)
    if t1 is None and pts:
        t1 = max(p[0] for p in pts)
    if t0 is None or t1 is None:
        return {"empty": True, "width": width, "height": height}
    t0, t1 = min(t0, t1), max(t0, t1)
    if pts:
        t0, t1 = min(t0, min(p[0] for p in pts)), max(t1, max(p[0] for p in pts))
    span = (t1 - t0) or 1.0
    left, right, top, bar_h = 40, 10, 8, 80
    plot_w = width - left - right
    counts = Counter(min(int((ts - t0) / span * BUCKETS), BUCKETS - 1) for ts, _, _ in pts)
    peak = max(counts.values(), default=1)
    bw = plot_w / BUCKETS
    bars = []
    for b in sorted(counts):
        h = max(counts[b] / peak * bar_h, 1.5)
        bars.append({"x": round(left + b * bw + 1, 1), "y": round(top + bar_h - h, 1), "w": round(bw - 2, 1),
                     "h": round(h, 1), "count": counts[b], "from": isotime(t0 + b * span / BUCKETS),
                     "to": isotime(t0 + (b + 1) * span / BUCKETS)})
    dots_top = top + bar_h + 14
    dots = []
    for ts, sev, lbl in sorted(pts)[:MAX_DOTS]:
        sev = min(max(sev, 1), 5)
        dots.append({"x": round(left + (ts - t0) / span * plot_w, 1), "y": dots_top + (5 - sev) * 9,
                     "sev": sev, "label": lbl, "time": isotime(ts)})
    return {"empty": False, "width": width, "height": height, "left": left, "right": width - right,
            "axis_y": top + bar_h, "bars": bars, "dots": dots, "peak": peak, "start": isotime(t0),
            "end": isotime(t1), "span": round(t1 - t0, 3), "omitted": max(len(pts) - MAX_DOTS, 0),
            "dots_top": dots_top}
