"""Community ID: the spec's test vectors, and agreement with the reference package on random flows."""
from __future__ import annotations

import ipaddress
import random

import communityid
import pytest

from nvpcap.records.community import community_id

V4 = lambda s: ipaddress.IPv4Address(s).packed  # noqa: E731


@pytest.mark.parametrize("proto,src,dst,sport,dport,expected", [
    (6, "127.0.0.1", "10.0.0.1", 1234, 80, "1:mgRgpIZSu0KHDp/QrtcWZpkJpMU="),
    (17, "192.168.1.42", "8.8.8.8", 4242, 53, "1:vTdrngJjlP5eZ9mw9JtnKyn99KM="),
    (6, "10.0.0.1", "10.0.0.2", 10, 20, "1:9j2Dzwrw7T9E+IZi4b4IVT66HBI="),
])
def test_spec_vectors(proto, src, dst, sport, dport, expected):
    assert community_id(proto, V4(src), V4(dst), sport, dport) == expected
    # the direction of the flow does not change the id
    assert community_id(proto, V4(dst), V4(src), dport, sport) == expected


def _reference(proto, s, d, sp, dp):
    cid = communityid.CommunityID(seed=0)
    make = {6: communityid.FlowTuple.make_tcp, 17: communityid.FlowTuple.make_udp,
            1: communityid.FlowTuple.make_icmp, 58: communityid.FlowTuple.make_icmp6}[proto]
    return cid.calc(make(str(s), str(d), sp, dp))


def test_agrees_with_reference_package():
    rng = random.Random(7)
    for _ in range(400):
        proto = rng.choice([6, 17, 1, 58])
        v6 = proto == 58 or (proto != 1 and rng.random() < 0.4)
        mk = (lambda: ipaddress.IPv6Address(rng.getrandbits(128))) if v6 else (lambda: ipaddress.IPv4Address(rng.getrandbits(32)))
        s, d = mk(), mk()
        if rng.random() < 0.1:
            d = s  # same address both ends: ports decide the order
        if proto in (1, 58):
            sp, dp = rng.choice([0, 3, 8, 11, 128, 129, 133, 135, 200]), rng.randrange(0, 16)
        else:
            sp, dp = rng.randrange(65536), rng.randrange(65536)
        assert community_id(proto, s.packed, d.packed, sp, dp) == _reference(proto, s, d, sp, dp)


def test_compiled_sha1_matches_hashlib():
    import hashlib

    import numpy as np

    from nvpcap.records.community import sha1_short

    rng = np.random.default_rng(5)
    msgs = rng.integers(0, 256, size=(300, 55), dtype=np.uint8)
    lengths = rng.integers(0, 56, size=300).astype(np.int64)
    out = np.empty((300, 20), np.uint8)
    sha1_short(msgs, lengths, out)
    for i in range(300):
        assert out[i].tobytes() == hashlib.sha1(msgs[i, : lengths[i]].tobytes()).digest()
