"""`nvpcap verify`: cross-check nvpcap's flows and application labels against Wireshark's dissectors.

A forensic user should be able to trust a finding before acting on it, so the same capture goes through both
nvpcap's pipeline and tshark (driven by pyshark, the optional `wireshark` extra), and every place where they
differ is printed. Both sides are tallied per conversation: transport protocol plus the two endpoints, sorted
(ports only for TCP/UDP), which is what tshark's conversations are keyed by. nvpcap may end a conversation into
several flows (NeuVector's idle timeouts, TCP port reuse); when their sums equal tshark's, that is shown as an
explained split, not a difference. Frames nvpcap deliberately keeps out of flows (packet-level anomalies:
malformed headers, fragments that never made a datagram) are taken out of tshark's tally too, and counted.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console

EXIT_OK, EXIT_DIFF, EXIT_USAGE = 0, 1, 2
DEFAULT_MAX_PACKETS = 200_000
INSTALL_HINT = "pip install 'nvpcap[wireshark]'"
TSHARK_HINT = "apt-get install tshark (Debian/Ubuntu), or install Wireshark with its command line tools"

# Wireshark dissector name (a frame.protocols token) -> nvpcap app_proto (`nvpcap protocols`). Dissectors not
# listed are shown as Wireshark names them and never counted as disagreements: nvpcap has no name to compare.
WIRESHARK_TO_NVPCAP: dict[str, str] = {
    "http": "http", "http2": "http2", "grpc": "grpc", "tls": "ssl", "ssl": "ssl", "ssh": "ssh", "sshv2": "ssh",
    "dns": "dns", "mdns": "dns", "llmnr": "dns", "dhcp": "dhcp", "bootp": "dhcp", "dhcpv6": "dhcp",
    "ntp": "ntp", "tftp": "tftp", "echo": "echo", "syslog": "syslog", "radius": "radius",
    "memcache": "memcached", "mysql": "mysql", "pgsql": "postgresql", "resp": "redis", "redis": "redis",
    "mongo": "mongodb", "kafka": "kafka", "cql": "cassandra", "zookeeper": "zookeeper", "amqp": "rabbitmq",
    "openwire": "activemq", "stomp": "activemq", "elasticsearch": "elasticsearch", "tns": "oracle",
    "tds": "mssql", "couchbase": "couchbase", "rtsp": "rtsp", "sip": "sip",
}
# Payload carriers and sub-dissectors that say nothing about the application (HTTP bodies, certificates, ...).
GENERIC = frozenset({
    "data", "data-text-lines", "json", "xml", "media", "urlencoded-form", "mime_multipart", "sdp", "eap",
    "x509sat", "x509ce", "x509af", "x509if", "pkix1explicit", "pkix1implicit", "ocsp", "png", "image-gif",
    "image-jfif", "http-urlencoded", "multipart", "tcp.segments", "ipv6.fraghdr", "ipv6.hopopts",
    "ipv6.dstopts", "ipv6.routing", "protobuf",
})
TRANSPORTS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "gre": 47, "esp": 50, "ah": 51,
              "igmp": 2, "ospf": 89, "pim": 103, "vrrp": 112}
PROTO_NAMES = {v: k for k, v in TRANSPORTS.items()}
PACKET_LEVEL = ("decode", "defrag", "capture")  # anomaly types whose frame nvpcap keeps out of every flow
EVIDENCE_CAP = 5

Endpoint = tuple[str, int | None]
Key = tuple[int, Endpoint, Endpoint]


class VerifyError(Exception):
    """A usage problem (missing tool, unreadable input): exit 2 with this message."""


def conversation_key(proto: int, src: str, sport: int | None, dst: str, dport: int | None) -> tuple[Key, int]:
    """The canonical conversation key (endpoints sorted) and the direction of src -> dst in it (0 or 1)."""
    ports = proto in (6, 17)
    a: Endpoint = (src, sport if ports else None)
    b: Endpoint = (dst, dport if ports else None)
    order = lambda e: (e[0], e[1] or 0)
    if order(a) <= order(b):
        return (proto, a, b), 0
    return (proto, b, a), 1


@dataclass
class Tally:
    """Packets and bytes per direction (0: endpoint a -> b, 1: b -> a) of one conversation, one side."""

    pkts: list[int] = field(default_factory=lambda: [0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, direction: int, pkts: int, nbytes: int) -> None:
        self.pkts[direction] += pkts
        self.bytes[direction] += nbytes

    def folded(self, same_endpoints: bool) -> tuple[list[int], list[int]]:
        """Counts to compare: both directions summed when a and b are the same endpoint (no direction exists)."""
        if same_endpoints:
            return [sum(self.pkts), 0], [sum(self.bytes), 0]
        return list(self.pkts), list(self.bytes)


@dataclass
class WiresharkConv:
    tally: Tally = field(default_factory=Tally)
    apps: Counter = field(default_factory=Counter)  # app-layer dissector name -> frames it appeared in
    depth: dict[str, int] = field(default_factory=dict)  # name -> deepest position above the transport
    first_frame: int = 0


@dataclass
class NvpcapConv:
    tally: Tally = field(default_factory=Tally)
    flows: int = 0
    apps: Counter = field(default_factory=Counter)
    end_reasons: Counter = field(default_factory=Counter)
    community_ids: list[str] = field(default_factory=list)
    first_frame: int = 0
    truncated_pkts: int = 0
    by_port: bool = False  # a label nvpcap gave from the server port alone (no payload to judge)


# -- tools ------------------------------------------------------------------------------------------------

def check_tools() -> str:
    """tshark's path; raises VerifyError naming what to install when pyshark or tshark is missing."""
    try:
        import pyshark  # noqa: F401
        from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path
    except ImportError:
        raise VerifyError(f"verify needs pyshark: {INSTALL_HINT}") from None
    try:
        return get_process_path()
    except TSharkNotFoundException:
        raise VerifyError(f"verify needs tshark (Wireshark's command line): {TSHARK_HINT}") from None


def count_packets_upto(path: str, limit: int) -> int:
    """Packets in the capture, counted with nvpcap's own reader and stopping once past `limit`."""
    from .decode.reader import CaptureReader
    from .decode.sources import open_capture

    opened = open_capture(path)
    n = 0
    try:
        reader = CaptureReader(opened.stream, chunk_size=1 << 20, batch_packets=4096)
        for raw in reader.batches():
            n += len(raw)
            if n > limit:
                break
    finally:
        opened.close()
    return n


def cut_capture(path: str, max_packets: int, workdir: str) -> str:
    """The first `max_packets` frames as a new file (editcap -r), so both sides read exactly the same frames."""
    editcap = shutil.which("editcap")
    if editcap is None:
        raise VerifyError("the capture has more than --max-packets frames and editcap (installed with tshark) "
                          "is not on PATH to cut it")
    out = os.path.join(workdir, "cut.pcapng")
    res = subprocess.run([editcap, "-r", path, out, f"1-{max_packets}"], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise VerifyError(f"editcap could not cut the capture: {res.stderr.strip()[:300]}")
    return out


# -- Wireshark's side ---------------------------------------------------------------------------------------

def _layer(layers: dict, name: str, occurrence: int) -> dict | None:
    """The n-th (0-based) top-level layer called `name`: with --no-duplicate-keys tshark lists repeats."""
    value = layers.get(name)
    if isinstance(value, list):
        value = value[min(occurrence, len(value) - 1)] if value else None
    return value if isinstance(value, dict) else None


def _field(layer: dict | None, name: str) -> str | None:
    value = layer.get(name) if layer is not None else None
    if isinstance(value, list):
        value = value[-1] if value else None
    return value if isinstance(value, str) else None


@dataclass
class Frame:
    """What the tally needs from one tshark frame."""

    number: int
    length: int
    proto: int | None = None  # None: no IP layer
    src: str = ""
    dst: str = ""
    sport: int | None = None
    dport: int | None = None
    reassembled_in: int | None = None
    apps: tuple[str, ...] = ()


def frame_from_layers(layers: dict) -> Frame:
    """Read the innermost IP layer, its transport and the application dissectors above it from one frame of
    tshark's JSON (`_source.layers`).

    Tokens of frame.protocols after an ICMP layer are the quoted packet of an ICMP error; tshark nests them
    inside the icmp layer, and the flow is the ICMP one, as nvpcap (and NeuVector) key it.
    """
    info = layers.get("frame") or {}
    frame = Frame(number=int(_field(info, "frame.number") or 0), length=int(_field(info, "frame.len") or 0))
    tokens = (_field(info, "frame.protocols") or "").split(":")
    for i, t in enumerate(tokens):
        if t in ("icmp", "icmpv6"):
            tokens = tokens[:i + 1]
            break
    net_at = max((i for i, t in enumerate(tokens) if t in ("ip", "ipv6")), default=-1)
    if net_at < 0:
        return frame
    net = tokens[net_at]
    layer = _layer(layers, net, tokens[:net_at].count(net))
    if layer is None:
        return frame
    frame.src, frame.dst = _field(layer, f"{net}.src") or "", _field(layer, f"{net}.dst") or ""
    reasm = _field(layer, "ip.reassembled_in" if net == "ip" else "ipv6.reassembled.in")
    frame.reassembled_in = int(reasm) if reasm else None
    rest = tokens[net_at + 1:]
    transport_at = next((i for i, t in enumerate(rest) if t in TRANSPORTS), None)
    if transport_at is not None:
        name = rest[transport_at]
        frame.proto = TRANSPORTS[name]
        if name in ("tcp", "udp"):
            tl = _layer(layers, name, tokens[:net_at + 1 + transport_at].count(name))
            sp, dp = _field(tl, f"{name}.srcport"), _field(tl, f"{name}.dstport")
            frame.sport, frame.dport = (int(sp) if sp else None), (int(dp) if dp else None)
        frame.apps = tuple(t for t in rest[transport_at + 1:] if t not in GENERIC and not t.startswith("_ws."))
    else:
        number = _field(layer, "ip.proto" if net == "ip" else "ipv6.nxt")
        frame.proto = int(number) if number and number.isdigit() else -1
    return frame


def read_wireshark_frames(path: str, decode_as: dict[str, str] | None = None,
                          errors: list[str] | None = None) -> Iterable[Frame]:
    """tshark's frames through pyshark: two-pass (so fragments know the frame they are reassembled in), JSON
    limited to the layers the tally reads, packets not kept (a capture may not fit in memory as objects).

    pyshark runs tshark and splits its JSON stream into frames; each frame's JSON is read straight into a
    Frame instead of pyshark's Packet: 2-3 times faster, and pyshark's Packet cannot be built for a frame
    without a timestamp (pcapng Simple Packet Blocks). When tshark stops on a damaged file, the frames read
    so far are kept and its message is appended to `errors`."""
    import pyshark
    from pyshark.tshark.output_parser.tshark_json import TsharkJsonParser

    class FrameParser(TsharkJsonParser):
        def _parse_single_packet(self, packet: bytes) -> Frame:  # type: ignore[override]
            return frame_from_layers(json.loads(packet)["_source"]["layers"])

        async def get_packets_from_stream(self, stream, existing_data, got_first_packet=True):
            """Every whole frame in the buffer at once (a list): pyshark's loop costs an asyncio round trip
            per item it returns, which was most of the time with one frame per item."""
            frames = []
            while True:
                packet, existing_data = self._extract_packet_from_data(
                    existing_data, got_first_packet=got_first_packet or bool(frames))
                if not packet:
                    break
                frames.append(self._parse_single_packet(packet))
            if frames:
                return frames, existing_data
            new_data = await stream.read(self.DEFAULT_BATCH_SIZE)
            if not new_data:
                raise EOFError()
            return None, existing_data + new_data

    class FrameCapture(pyshark.FileCapture):
        def _setup_tshark_output_parser(self):  # type: ignore[override]
            return FrameParser(self._get_tshark_version())

        def __del__(self) -> None:  # pyshark re-raises tshark's exit status here, at garbage collection
            with contextlib.suppress(Exception):
                super().__del__()

    capture = FrameCapture(
        path, keep_packets=False, use_json=True, decode_as=decode_as or None,
        custom_parameters=["-2", "-j", "frame ip ipv6 tcp tcp.srcport tcp.dstport udp udp.srcport udp.dstport"],
        override_prefs={"tcp.analyze_sequence_numbers": "FALSE"})
    try:
        for batch in capture:
            yield from batch
    except Exception as exc:  # pyshark's TSharkCrashException and friends: tshark's exit status
        if errors is None:
            raise
        errors.append(_tshark_message(exc))
    finally:
        try:
            capture.close()
        except Exception as exc:  # noqa: BLE001 - the same failure, reported again when the process is reaped
            if errors is not None and not errors:
                errors.append(_tshark_message(exc))


def _tshark_message(exc: Exception) -> str:
    """tshark's own last error line from pyshark's exception text (which also suggests a debug mode)."""
    text = str(exc)
    for line in text.splitlines():
        if line.startswith("Last error line:"):
            return line.split(":", 1)[1].strip()[:300]
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


def tally_wireshark(frames: Iterable[Frame], exclude: set[int]) -> tuple[dict[Key, WiresharkConv], int]:
    """Per-conversation totals as tshark sees them; a fragment's bytes go to the frame its datagram is
    reassembled in (one packet, all fragments' bytes: nvpcap's and tshark's conversation statistics' rule).
    Returns the conversations and the number of frames read."""
    convs: dict[Key, WiresharkConv] = {}
    pending: Counter = Counter()  # reassembled-in frame -> bytes of its earlier fragments
    n = 0
    for f in frames:
        n += 1
        if f.reassembled_in is not None and f.reassembled_in != f.number:
            pending[f.reassembled_in] += f.length
            continue
        if f.number in exclude or f.proto is None or not f.src:
            continue
        key, direction = conversation_key(f.proto, f.src, f.sport, f.dst, f.dport)
        conv = convs.get(key)
        if conv is None:
            conv = convs[key] = WiresharkConv(first_frame=f.number)
        conv.tally.add(direction, 1, f.length + pending.pop(f.number, 0))
        for depth, name in enumerate(f.apps):
            conv.apps[name] += 1
            conv.depth[name] = max(depth, conv.depth.get(name, 0))
    return convs, n


# -- nvpcap's side ------------------------------------------------------------------------------------------

@dataclass
class NvpcapSide:
    convs: dict[Key, NvpcapConv]
    left_out: Counter  # anomaly event -> frames nvpcap kept out of flows for it ("_frames": distinct frames)
    excluded: set[int]  # those frame numbers
    file_summary: Any  # nvpcap.pipeline.FileSummary


def run_nvpcap(path: str) -> NvpcapSide:
    """nvpcap's flows per conversation, the frames it kept out of flows (by anomaly), and the file summary.
    Bundled DLP/WAF rules are off: they change no flow or label, only add alerts."""
    from .output.memory import MemorySink
    from .pipeline import AnalyzeConfig, analyze_file

    sink = MemorySink()
    summary = analyze_file(path, sink, AnalyzeConfig())
    convs: dict[Key, NvpcapConv] = {}
    flows = sink.flows_polars
    for r in flows.iter_rows(named=True):
        proto = TRANSPORTS.get(r["proto"])
        if proto is None:
            proto = int(r["proto"]) if str(r["proto"]).isdigit() else -1
        key, direction = conversation_key(proto, r["src_ip"], r["src_port"], r["dest_ip"], r["dest_port"])
        conv = convs.get(key)
        if conv is None:
            conv = convs[key] = NvpcapConv(first_frame=r["first_frame"])
        conv.flows += 1
        conv.tally.add(direction, r["pkts_toserver"], r["bytes_toserver"])
        conv.tally.add(1 - direction, r["pkts_toclient"], r["bytes_toclient"])
        conv.apps[r["app_proto"]] += 1
        conv.truncated_pkts += r["truncated_pkts"] or 0
        conv.by_port = conv.by_port or (r["app_confidence"] == "port" and r["app_proto"] != "unknown")
        conv.end_reasons[r["end_reason"]] += 1
        conv.first_frame = min(conv.first_frame, r["first_frame"])
        if len(conv.community_ids) < EVIDENCE_CAP:
            conv.community_ids.append(r["community_id"])
    left_out: Counter = Counter()
    excluded: set[int] = set()
    for e in sink.events:
        if e.get("event_type") == "anomaly" and e.get("frame") and e["anomaly"]["type"] in PACKET_LEVEL:
            excluded.add(int(e["frame"]))
            left_out[e["anomaly"]["event"]] += 1
    left_out["_frames"] = len(excluded)
    return NvpcapSide(convs, left_out, excluded, summary)


# -- comparison ---------------------------------------------------------------------------------------------

def wireshark_label(conv: WiresharkConv | None, proto: int) -> tuple[set[str], str | None, str | None]:
    """(nvpcap names Wireshark's dissectors map to, the one to show, an unmapped dissector name to show)."""
    if proto in (1, 58):
        return {"icmp"}, "icmp", None
    if conv is None or not conv.apps:
        return set(), None, None
    # the highest layer wins (gRPC over HTTP/2), then the one in more frames
    mapped = [(conv.depth[a], n, WIRESHARK_TO_NVPCAP[a]) for a, n in conv.apps.items() if a in WIRESHARK_TO_NVPCAP]
    if mapped:
        return {m for *_, m in mapped}, max(mapped)[2], None
    return set(), None, conv.apps.most_common(1)[0][0]


def compare(ours: dict[Key, NvpcapConv], theirs: dict[Key, WiresharkConv]) -> list[dict]:
    """One row per conversation: counts on both sides, labels, a flow status and a label status.

    flow status: agree | split (several nvpcap flows, sums agree) | differ | nvpcap-only | wireshark-only;
    label status: agree | differ | unmapped (Wireshark's dissector has no nvpcap name) | nvpcap-only
    (Wireshark found no application layer) | none (neither side labels it).
    """
    rows = []
    for key in sorted(set(ours) | set(theirs), key=lambda k: (k[0], k[1][0], k[1][1] or 0, k[2][0], k[2][1] or 0)):
        proto, a, b = key
        nv, ws = ours.get(key), theirs.get(key)
        same = a == b
        row: dict[str, Any] = {
            "proto": PROTO_NAMES.get(proto, str(proto)), "a": _ep(a), "b": _ep(b),
            "nvpcap": None, "wireshark": None, "nvpcap_flows": nv.flows if nv else 0,
            "first_frame": min(x.first_frame for x in (nv, ws) if x is not None),
            "community_ids": nv.community_ids if nv else [], "end_reasons": dict(nv.end_reasons) if nv else {},
        }
        if nv is not None:
            p, by = nv.tally.folded(same)
            row["nvpcap"] = {"pkts": p, "bytes": by}
        if ws is not None:
            p, by = ws.tally.folded(same)
            row["wireshark"] = {"pkts": p, "bytes": by}
        if nv is None:
            row["status"] = "wireshark-only"
        elif ws is None:
            row["status"] = "nvpcap-only"
        elif row["nvpcap"] != row["wireshark"]:
            row["status"] = "differ"
        elif nv.flows > 1:
            row["status"] = "split"
        else:
            row["status"] = "agree"
        names, shown, unmapped = wireshark_label(ws, proto)
        nv_apps = {x for x in (nv.apps if nv else {}) if x != "unknown"}
        row["nvpcap_app"] = ",".join(sorted(nv_apps)) or ("unknown" if nv else None)
        row["wireshark_app"] = shown or (f"{unmapped} (no nvpcap name)" if unmapped else None)
        row["wireshark_dissectors"] = sorted(ws.apps)[:EVIDENCE_CAP] if ws else []
        if nv is None or ws is None:
            row["label_status"] = "n/a"
        elif names:
            row["label_status"] = "agree" if nv_apps & names else "differ"
        elif unmapped:
            row["label_status"] = "unmapped"
        elif nv_apps:
            row["label_status"] = "nvpcap-only"
        else:
            row["label_status"] = "none"
        row["note"] = _note(row, nv)
        rows.append(row)
    return rows


def _ep(e: Endpoint) -> str:
    ip, port = e
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _note(row: dict, nv: NvpcapConv | None) -> str:
    """Why a row is listed, with the known causes of an expected difference."""
    notes = []
    if row["status"] == "split" and nv is not None:
        why = {"timeout": "idle timeout", "tcp-reuse": "TCP port reuse", "evicted": "flow table eviction"}
        reasons = [why[r] for r in nv.end_reasons if r in why]
        notes.append(f"split by {' and '.join(reasons) or 'nvpcap'} into {nv.flows} flows; sums agree")
    elif row["status"] == "wireshark-only":
        notes.append("no nvpcap flow for these frames")
    elif row["status"] == "nvpcap-only":
        notes.append("tshark has no frame for this conversation")
    elif row["status"] == "differ":
        notes.append("packet or byte counts differ")
    if nv is not None and row.get("label_status") in ("differ", "nvpcap-only", "unmapped"):
        if nv.truncated_pkts:
            notes.append(f"{nv.truncated_pkts} packets cut by snaplen")
        if nv.by_port:
            notes.append("nvpcap: by server port only")
        if row["label_status"] == "nvpcap-only":
            notes.append("Wireshark: no app dissector")
    return "; ".join(notes)


def summarize(rows: list[dict], left_out: Counter) -> dict:
    status = Counter(r["status"] for r in rows)
    labels = Counter(r["label_status"] for r in rows)
    both = sum(status[s] for s in ("agree", "split", "differ"))
    return {
        "flows_compared": both, "counts_agree": status["agree"] + status["split"], "split": status["split"],
        "counts_differ": status["differ"], "nvpcap_only": status["nvpcap-only"],
        "wireshark_only": status["wireshark-only"],
        "labels_compared": labels["agree"] + labels["differ"] + labels["none"],
        "labels_agree": labels["agree"] + labels["none"], "labels_differ": labels["differ"],
        "labels_unmapped": labels["unmapped"], "labels_nvpcap_only": labels["nvpcap-only"],
        "frames_left_out": left_out.get("_frames", 0),
        "left_out_reasons": {k: v for k, v in sorted(left_out.items()) if k != "_frames"},
    }


def is_clean(summary: dict) -> bool:
    return not (summary["counts_differ"] or summary["nvpcap_only"] or summary["wireshark_only"]
                or summary["labels_differ"])


def summary_line(s: dict) -> str:
    parts = [f"{s['flows_compared']} flows compared", f"{s['counts_agree']} agree on packets/bytes"
             + (f" ({s['split']} split by nvpcap, sums agree)" if s["split"] else ""),
             f"{s['labels_agree']} of {s['labels_compared']} labels agree"]
    if s["counts_differ"]:
        parts.append(f"{s['counts_differ']} differ in packets/bytes")
    if s["nvpcap_only"] or s["wireshark_only"]:
        parts.append(f"{s['nvpcap_only']} only in nvpcap, {s['wireshark_only']} only in Wireshark")
    if s["labels_differ"]:
        parts.append(f"{s['labels_differ']} labels differ")
    if s["labels_unmapped"]:
        parts.append(f"{s['labels_unmapped']} Wireshark labels without an nvpcap name (not compared)")
    if s["labels_nvpcap_only"]:
        parts.append(f"{s['labels_nvpcap_only']} labelled by nvpcap only (Wireshark found no application layer)")
    if s["frames_left_out"]:
        parts.append(f"{s['frames_left_out']} frames nvpcap keeps out of flows were left out of Wireshark's side")
    return ", ".join(parts)


@dataclass
class VerifyResult:
    capture: str
    packets: int
    cut: bool
    rows: list[dict]
    summary: dict
    seconds: dict[str, float]
    warnings: list[str] = field(default_factory=list)  # damaged input: where either side stopped reading
    wireshark_frames: int = 0


def verify(path: str, max_packets: int = DEFAULT_MAX_PACKETS, decode_as: dict[str, str] | None = None) -> VerifyResult:
    """Run both sides on the same frames and compare them. Raises VerifyError for usage problems."""
    from .decode.sources import sniff_is_capture

    check_tools()
    if not os.path.isfile(path):
        raise VerifyError(f"{path}: no such file")
    if not sniff_is_capture(Path(path)):
        raise VerifyError(f"{path}: not a capture (pcap or pcapng, optionally compressed)")
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nvpcap-verify-") as workdir:
        t = time.perf_counter()
        cut = count_packets_upto(path, max_packets) > max_packets
        source = cut_capture(path, max_packets, workdir) if cut else path
        seconds["cut"] = time.perf_counter() - t
        t = time.perf_counter()
        side = run_nvpcap(source)
        ours, left_out, excluded, file_summary = side.convs, side.left_out, side.excluded, side.file_summary
        seconds["nvpcap"] = time.perf_counter() - t
        if file_summary.packets == 0 and file_summary.issues:
            raise VerifyError(f"{path}: {file_summary.issues[0].message}")
        t = time.perf_counter()
        errors: list[str] = []
        theirs, n = tally_wireshark(read_wireshark_frames(source, decode_as, errors), excluded)
        if errors and n == 0:
            raise VerifyError(f"tshark could not read {path}: {errors[0]}")
        seconds["wireshark"] = time.perf_counter() - t
    rows = compare(ours, theirs)
    warnings = [f"tshark stopped early: {e}" for e in errors]
    if n != file_summary.packets:
        warnings.append(f"nvpcap read {file_summary.packets} packets, tshark {n} frames")
    warnings += [f"nvpcap: {i.kind} at offset {i.offset}: {i.message}" for i in file_summary.issues[:EVIDENCE_CAP]]
    return VerifyResult(capture=path, packets=file_summary.packets, cut=cut, rows=rows, warnings=warnings,
                        wireshark_frames=n,
                        summary=summarize(rows, left_out), seconds={k: round(v, 3) for k, v in seconds.items()})


# -- output -------------------------------------------------------------------------------------------------

def _counts(side: dict | None) -> str:
    if side is None:
        return "-"
    p, b = side["pkts"], side["bytes"]
    return f"{p[0]}/{p[1]} pkts\n{b[0]}/{b[1]} B"


def _shown(row: dict, everything: bool) -> bool:
    return everything or row["status"] != "agree" or row["label_status"] not in ("agree", "none", "n/a")


def print_table(result: VerifyResult, console: Console, everything: bool, limit: int) -> None:
    from rich.table import Table
    from rich.text import Text

    rows = [r for r in result.rows if _shown(r, everything)]
    title = (f"{result.capture}: nvpcap vs Wireshark ({result.packets} packets"
             + (", cut at --max-packets" if result.cut else "") + ")")
    table = Table(title=Text(title), show_lines=True)
    for col in ("proto", "endpoint a", "endpoint b", "nvpcap a>b/b>a", "Wireshark a>b/b>a", "nvpcap app",
                "Wireshark app", "flows", "labels", "note"):
        table.add_column(col, overflow="fold")
    style = {"agree": "green", "split": "cyan", "differ": "red", "nvpcap-only": "red", "wireshark-only": "red",
             "unmapped": "yellow", "none": "green", "n/a": "dim"}
    for r in rows[:limit]:  # every capture-derived string goes in as Text: no markup is interpreted
        table.add_row(Text(r["proto"]), Text(r["a"]), Text(r["b"]), Text(_counts(r["nvpcap"])),
                      Text(_counts(r["wireshark"])), Text(r["nvpcap_app"] or "-"), Text(r["wireshark_app"] or "-"),
                      Text(r["status"], style=style.get(r["status"], "")),
                      Text(r["label_status"], style=style.get(r["label_status"], "yellow")), Text(r["note"]))
    if rows:
        console.print(table)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit} more rows (raise --limit, or use --format json)", markup=False)
    s = result.summary
    for w in result.warnings:
        console.print(w, style="yellow", markup=False, highlight=False)
    if s["left_out_reasons"]:
        reasons = ", ".join(f"{k} {v}" for k, v in s["left_out_reasons"].items())
        console.print(f"frames nvpcap keeps out of flows (anomaly records): {reasons}", markup=False,
                      highlight=False)
    console.print(summary_line(s), markup=False, highlight=False,
                  style="green" if is_clean(s) else "red")


def as_json(result: VerifyResult, everything: bool) -> dict:
    return {"tool": {"name": "nvpcap", "version": _version()}, "kind": "verify", "capture": result.capture,
            "packets": result.packets, "wireshark_frames": result.wireshark_frames,
            "cut_at_max_packets": result.cut, "warnings": result.warnings, "agree": is_clean(result.summary),
            "summary": result.summary, "seconds": result.seconds,
            "rows": [r for r in result.rows if _shown(r, everything)]}


def _version() -> str:
    from . import __version__

    return __version__


def _parse_decode_as(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        criterion, sep, proto = v.partition(",")
        if not sep or "==" not in criterion or not proto:
            raise VerifyError(f"--decode-as {v!r}: expected LAYER==VALUE,PROTOCOL (e.g. tcp.port==50051,http2)")
        out[criterion.strip()] = proto.strip()
    return out


@click.command("verify")
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--max-packets", type=click.IntRange(min=1), default=DEFAULT_MAX_PACKETS, show_default=True,
              help="Compare only the first N frames (both sides read the same cut of the capture).")
@click.option("--all", "everything", is_flag=True, help="Also list conversations where everything agrees.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="Rows shown in the table (json lists them all).")
@click.option("--decode-as", "decode_as", multiple=True, metavar="LAYER==VALUE,PROTO",
              help="Passed to tshark -d, e.g. tcp.port==50051,http2 for gRPC on a port Wireshark does not "
              "know; repeatable.")
def verify_command(capture: str, fmt: str, max_packets: int, everything: bool, limit: int,
                   decode_as: tuple[str, ...]) -> None:
    """Cross-check nvpcap's flows (packets, bytes per direction) and application labels against Wireshark's
    dissectors (tshark, through pyshark). Exit 0 when they agree, 1 when they differ, 2 on usage errors."""
    err = Console(stderr=True, soft_wrap=True)
    try:
        result = verify(capture, max_packets, _parse_decode_as(decode_as))
    except VerifyError as exc:
        err.print(f"nvpcap: {exc}", style="red", markup=False, highlight=False)
        sys.exit(EXIT_USAGE)
    if fmt == "json":
        click.echo(json.dumps(as_json(result, everything), indent=2))
        for w in result.warnings:
            err.print(f"nvpcap: {w}", style="yellow", markup=False, highlight=False)
        err.print(summary_line(result.summary), markup=False, highlight=False)
    else:
        print_table(result, Console(width=max(160, Console().width)), everything, limit)
    sys.exit(EXIT_OK if is_clean(result.summary) else EXIT_DIFF)
