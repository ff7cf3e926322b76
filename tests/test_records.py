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


def test_record_json_writes_what_json_writes():
    """orjson writes the JSON-lines records (output/jsontext.py): the same values as json for what records hold,
    json's text for what orjson refuses (an integer beyond 64 bits, a lone surrogate), numpy float64 a number."""
    import json

    import numpy as np

    from nvpcap.output.jsontext import record_json

    def as_json(v):
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)

    record = {"event_type": "dns", "ts": 1700000000.001626, "precision": 1.1920928955078125e-07, "ok": True,
              "none": None, "text": "é\u2028\x01\"\\", "nested": {"answers": [{"rdata": "1.2.3.4", "ttl": 60}]},
              "raw": b"\x00ab", 7: "int key", "n64": np.int64(5), "f64": np.float64(1.25)}
    assert json.loads(record_json(record)) == json.loads(as_json(record))
    for refused in ({"big": 2**70}, {"lone": "\udcff"}):
        assert record_json(refused) == as_json(refused)
    assert record_json({"nan": float("nan")}) in ('{"nan":null}', as_json({"nan": float("nan")}))
