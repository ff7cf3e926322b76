"""Application-protocol identification on real recordings and spec-built captures: samples/pcaps/apps/.

samples/record_apps.py records real servers (Debian packages) talking to real client libraries on loopback,
and builds the protocols without a Debian server (couchbase, voltdb, consul, spark) byte by byte from their
specifications; MANIFEST.csv there gives each file's expected app and server port(s). Every flow in these
files goes to a server port, and each must be identified by its payload (confidence `dpi`). etcd is an HTTP
server product for NeuVector (its X-Etcd-Cluster-Id header) and so for nvpcap: app_proto http with
app_product etcd counts as etcd.

A row with `xfail_reason` is a known nvpcap misidentification: the test expects it to fail, and fails itself
once it passes (so the note gets removed). tshark and ndpiReader, where installed and where they have a
dissector for the protocol, check the captures themselves: the same conversations, the expected dissector
on every conversation.
"""
from __future__ import annotations

import csv
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import SAMPLES, run

APPS = SAMPLES / "apps"
ROWS = list(csv.DictReader(open(APPS / "MANIFEST.csv", newline="")))
IDS = [r["file"] for r in ROWS]

# tshark 4.0 dissector (frame.protocols name) per app; zookeeper, voltdb, consul and spark have none (tshark
# decodes port 2181 as SMPP)
TSHARK = {"redis": "resp", "memcached": "memcache", "mysql": "mysql", "postgresql": "pgsql", "rabbitmq": "amqp",
          "echo": "echo", "etcd": "http", "grpc": "grpc", "couchbase": "couchbase"}
TSHARK_DECODE_AS = {"grpc": ["-d", "tcp.port==2379,http2"]}  # cleartext HTTP/2 on a non-standard port
# nDPI 4.2 protocol names; it misses some flows (RESP3 HELLO, a PostgreSQL SSLRequest), so only the flows
# it detects are compared
NDPI = {"redis": "Redis", "memcached": "Memcached", "mysql": "MySQL", "postgresql": "PostgreSQL",
        "rabbitmq": "AMQP", "etcd": "HTTP"}


def ports(row: dict) -> set[int]:
    return {int(p) for p in row["server_port"].split(";")}


def label_ok(app: str, flow) -> bool:
    if flow.app_confidence != "dpi":
        return False
    return flow.app_proto == app or (flow.app_proto == "http" and flow.app_product == app)


def test_manifest_lists_every_capture():
    on_disk = {p.name for p in APPS.glob("*.pcap*")}
    assert on_disk == set(IDS)
    for row in ROWS:
        assert row["how"].split(":")[0] in ("recorded", "constructed"), row["file"]
        assert ("constructed" in row["file"]) == row["how"].startswith("constructed"), row["file"]
        assert (APPS / row["file"]).stat().st_size < 100 * 1024, row["file"]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_server_flows_identified(row):
    res = run(APPS / row["file"])
    assert res.summary.check_accounting()
    flows = res.flows
    assert len(flows) > 0
    # the captures hold only the sessions to the server port(s)
    assert set(flows["dest_port"]) <= ports(row), flows[["src_port", "dest_port"]].to_dict("records")
    wrong = [f"{f.proto} {f.src_port}->{f.dest_port}: {f.app_proto}/{f.app_confidence}"
             + (f"/{f.app_product}" if isinstance(f.app_product, str) else "")
             for f in flows.itertuples() if not label_ok(row["app"], f)]
    if row["xfail_reason"]:
        if wrong:
            pytest.xfail(f"{row['xfail_reason']} (got {'; '.join(wrong)})")
        pytest.fail(f"{row['file']} is now identified as {row['app']}: remove its xfail_reason from MANIFEST.csv")
    assert not wrong, f"expected {row['app']}/dpi"


def _tshark_conversations(path: Path, extra: list[str]) -> tuple[dict[tuple[str, str], set[str]], dict[str, int]]:
    """One tshark run: the protocols seen per stream ((transport, stream) -> frame.protocols names) and the
    number of conversations per transport (-z conv)."""
    out = subprocess.run(["tshark", "-r", str(path), "-n", *extra, "-T", "fields", "-e", "tcp.stream",
                          "-e", "udp.stream", "-e", "frame.protocols", "-z", "conv,tcp", "-z", "conv,udp"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    streams: dict[tuple[str, str], set[str]] = defaultdict(set)
    conv = {"tcp": 0, "udp": 0}
    section = None
    for line in out.splitlines():
        if line.startswith("TCP Conversations"):
            section = "tcp"
        elif line.startswith("UDP Conversations"):
            section = "udp"
        elif section and "<->" in line:
            conv[section] += 1
        elif section is None and "\t" in line:
            tcp, udp, protocols = (line.split("\t") + ["", ""])[:3]
            key = ("tcp", tcp) if tcp else ("udp", udp)
            streams[key].update(protocols.split(":"))
    return streams, conv


@pytest.mark.oracle
@pytest.mark.parametrize("row", [r for r in ROWS if r["app"] in TSHARK], ids=[r["file"] for r in ROWS
                                                                             if r["app"] in TSHARK])
def test_tshark_agrees(row, tshark):
    path = APPS / row["file"]
    streams, conv = _tshark_conversations(path, TSHARK_DECODE_AS.get(row["app"], []))
    assert streams
    flows = run(path).flows
    by_proto = flows["proto"].value_counts().to_dict()
    assert conv == {"tcp": by_proto.get("tcp", 0), "udp": by_proto.get("udp", 0)}
    dissector = TSHARK[row["app"]]
    missing = [k for k, protocols in streams.items() if dissector not in protocols]
    assert not missing, f"tshark does not see {dissector} on {missing}"


@pytest.mark.oracle
@pytest.mark.parametrize("row", [r for r in ROWS if r["app"] in NDPI], ids=[r["file"] for r in ROWS
                                                                          if r["app"] in NDPI])
def test_ndpi_agrees(row, tmp_path):
    if not shutil.which("ndpiReader"):
        pytest.skip("ndpiReader is not installed")
    out = tmp_path / "ndpi.csv"
    subprocess.run(["ndpiReader", "-d", "-i", str(APPS / row["file"]), "-C", str(out)], capture_output=True,
                   timeout=60, check=True)
    detected = [(int(r["dst_port"]), r["ndpi_proto"])
                for r in csv.DictReader(open(out, newline="").read().lstrip("#").splitlines())]
    on_port = [name for port, name in detected if port in ports(row)]
    assert on_port, f"nDPI detects nothing on {row['server_port']}"
    # "HTTP" also matches nDPI's HTTP sub-protocols ("HTTP.xxx")
    assert all(name.split(".")[0] == NDPI[row["app"]] for name in on_port), on_port
