"""Record fields: address text, timestamps, deterministic ids, EVE names."""
from __future__ import annotations

import ipaddress
import random

from conftest import SAMPLES, run
from nvpcap.records import addresses
from nvpcap.records.flows import FLOW_COLUMNS


def test_address_text_matches_ipaddress():
    rng = random.Random(3)
    samples = [0, 1, (1 << 128) - 1, 0x20010DB8 << 96, (0x20010DB8 << 96) | 1, 0xFE800000 << 96 | 0xABCD,
               0xFFFF << 32 | 0x7F000001] + [rng.getrandbits(128) for _ in range(300)]
    samples += [rng.getrandbits(16) << 112 | rng.getrandbits(16) for _ in range(100)]  # long zero runs
    for v in samples:
        hi, lo = v >> 64, v & ((1 << 64) - 1)
        if addresses.is_v4(hi, lo):
            assert addresses.text(hi, lo) == str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
        else:
            assert addresses.text(hi, lo) == str(ipaddress.IPv6Address(v))


def test_flow_records_have_the_documented_fields_and_stable_ids():
    a = run(SAMPLES / "http_ethernet.pcap").flows
    b = run(SAMPLES / "http_ethernet.pcap").flows
    assert list(a.columns) == FLOW_COLUMNS
    assert a["flow_id"].tolist() == b["flow_id"].tolist()  # same on every run
    assert a["flow_id"].nunique() == len(a)
    assert (a["flow_id"] > 0).all()
    tcp = a[a["proto"] == "tcp"].iloc[0]
    assert tcp["timestamp"] == "2023-11-14T22:13:20.015000+0000"
    assert tcp["ts"] == 1700000000.015
    assert tcp["event_type"] == "flow"
    assert (tcp["app_proto"], tcp["app_confidence"]) == ("http", "dpi")
