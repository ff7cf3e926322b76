"""Per-conversation packet and byte totals as tshark (Wireshark's dissectors) counts them.

An independent oracle for the flow table: tshark decodes every frame; frames that are fragments of a datagram
reassembled later are attributed to that datagram's conversation (bytes added, one packet for the datagram,
as tshark's own conversation statistics count it).
"""
from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict

FIELDS = ["frame.number", "frame.len", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "ipv6.nxt",
          "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "ip.reassembled_in", "ipv6.reassembled.in",
          "icmp.type", "icmpv6.type"]


def have_tshark() -> bool:
    return shutil.which("tshark") is not None


def _last(v: str) -> str:
    return v.split(",")[-1] if v else ""


def conversations(path: str, exclude_frames: set[int] = frozenset()) -> dict[tuple, list[int]]:
    """{(proto, endpoint_a, endpoint_b): [packets, bytes]} with endpoints sorted, ports None for non-TCP/UDP."""
    cmd = ["tshark", "-2", "-n", "-r", path, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
           "-o", "tcp.analyze_sequence_numbers:FALSE"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    frame_key: dict[int, tuple] = {}
    pending: dict[int, int] = defaultdict(int)  # reassembled-in frame -> bytes of earlier fragments
    result: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    parsed = []
    for r in rows:
        r += [""] * (len(FIELDS) - len(r))
        d = dict(zip(FIELDS, r))
        num, length = int(d["frame.number"]), int(d["frame.len"])
        reasm = _last(d["ip.reassembled_in"]) or _last(d["ipv6.reassembled.in"])
        if reasm and int(reasm) != num:
            pending[int(reasm)] += length
            continue
        parsed.append((num, length, d))
    for num, length, d in parsed:
        if num in exclude_frames:
            continue
        src = _last(d["ipv6.src"]) or _last(d["ip.src"])
        dst = _last(d["ipv6.dst"]) or _last(d["ip.dst"])
        if not src:
            continue
        proto = _last(d["ipv6.nxt"]) if _last(d["ipv6.src"]) and not _last(d["ip.src"]) else _last(d["ip.proto"])
        sp = _last(d["tcp.srcport"]) or _last(d["udp.srcport"])
        dp = _last(d["tcp.dstport"]) or _last(d["udp.dstport"])
        if _last(d["tcp.srcport"]):
            proto = "6"
        elif _last(d["udp.srcport"]):
            proto = "17"
        a, b = (src, int(sp) if sp else None), (dst, int(dp) if dp else None)
        key = (int(proto) if proto else -1, *sorted([a, b], key=lambda e: (e[0], e[1] or 0)))
        frame_key[num] = key
        result[key][0] += 1
        result[key][1] += length + pending.get(num, 0)
    return dict(result)
