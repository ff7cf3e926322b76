"""In-order TCP delivery (session/stream.py): reordering, retransmission, overlap, gaps, wrap-around, bounds."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as hs

from nvpcap.session import stream
from nvpcap.session.stream import TcpReassembler


def _bytes(chunks) -> bytes:
    return b"".join(c.data for c in chunks)


def test_out_of_order_segments_are_delivered_in_order():
    r = TcpReassembler()
    out = r.add(100, b"AB", 1, 0)
    out += r.add(104, b"EF", 2, 0)  # ahead of a gap: held
    assert _bytes(out) == b"AB"
    out += r.add(102, b"CD", 3, 0)
    assert _bytes(out) == b"ABCDEF"
    assert [c.frame for c in out] == [1, 3, 2]


def test_retransmissions_and_overlaps_keep_the_first_copy():
    r = TcpReassembler()
    out = r.add(0, b"hello", 1, 0) + r.add(0, b"HELLO", 2, 0) + r.add(3, b"LO wor", 3, 0)
    assert _bytes(out) == b"hello wor"


def test_sequence_numbers_wrap():
    r = TcpReassembler()
    start = 0xFFFFFFFE
    out = r.add(start, b"ab", 1, 0) + r.add(2, b"ef", 3, 0) + r.add(0, b"cd", 2, 0)
    assert _bytes(out) == b"abcdef"


def test_a_gap_that_never_fills_is_reported_and_the_stream_goes_on(monkeypatch):
    monkeypatch.setattr(stream, "MAX_HELD_SEGMENTS", 2)
    r = TcpReassembler()
    out = r.add(0, b"a", 1, 0)
    for i in range(3):  # segments 10, 11, 12 arrive; 1..9 never do
        out += r.add(10 + i, b"xyz"[i:i + 1], 2 + i, 0)
    gaps = [c.missing for c in out if c.missing]
    assert gaps == [9]
    assert _bytes(out) == b"axyz"
    assert r.missing == 9 and r.held == {}


def test_held_bytes_are_bounded():
    r = TcpReassembler()
    r.add(0, b"a", 1, 0)
    for i in range(1000):
        r.add(10 + i * 2000, b"z" * 1000, i, 0)  # every segment behind its own gap
        assert len(r.held) <= stream.MAX_HELD_SEGMENTS and r.held_bytes <= stream.MAX_HELD_BYTES


def test_flush_delivers_what_is_held_after_its_gap():
    r = TcpReassembler()
    r.add(0, b"ab", 1, 0)
    r.add(5, b"fg", 2, 0)
    out = r.flush()
    assert [(c.data, c.missing) for c in out] == [(b"", 3), (b"fg", 0)]


@settings(max_examples=200, deadline=None)
@given(hs.binary(min_size=1, max_size=400), hs.data())
def test_any_segmentation_order_and_duplication_gives_the_stream(payload, data):
    """Cut the stream into segments, shuffle them, repeat some: the bytes come out exactly once, in order
    (the first segment, which fixes the stream start, comes first as a SYN would)."""
    cuts = sorted(set(data.draw(hs.lists(hs.integers(1, len(payload)), max_size=12))))
    edges = [0] + [c for c in cuts if c < len(payload)] + [len(payload)]
    segs = [(edges[i], payload[edges[i]:edges[i + 1]]) for i in range(len(edges) - 1)]
    rest = data.draw(hs.permutations(segs[1:]))
    dups = data.draw(hs.lists(hs.sampled_from(segs), max_size=4))
    isn = data.draw(hs.integers(0, 0xFFFFFFFF))
    r = TcpReassembler()
    out = []
    for off, seg in [segs[0], *rest, *dups]:
        out += r.add((isn + off) & 0xFFFFFFFF, seg, 0, 0)
    out += r.flush()
    assert _bytes(out) == payload
    assert not any(c.missing for c in out)


def test_a_known_start_orders_segments_that_arrive_before_the_first_one():
    r = TcpReassembler(start=1000)  # from the handshake: the first data byte is 1000
    out = r.add(1003, b"DEF", 1, 0)  # arrives first, but is not the start: held
    assert out == []
    out = r.add(1000, b"ABC", 2, 0)
    assert _bytes(out) == b"ABCDEF"


def _take_or_add(r: TcpReassembler, seq: int, payload: bytes, frame: int) -> list[tuple[bytes, int, int]]:
    """What the app layer does per segment: `take` for the common case, `add` for the rest."""
    if r.take(seq, payload):
        return [(payload, 0, frame)]
    return [(c.data, c.missing, c.frame) for c in r.add(seq, payload, frame, 0)]


@settings(max_examples=300, deadline=None)
@given(hs.binary(min_size=1, max_size=300), hs.data())
def test_take_then_add_delivers_what_add_alone_delivers(payload, data):
    """The fast path (`take`: the segment continues the stream, nothing held) and `add` agree on any arrival:
    in order, reordered, retransmitted, overlapping, across the 32-bit wrap, with or without a known start."""
    cuts = sorted(set(data.draw(hs.lists(hs.integers(1, len(payload)), max_size=10))))
    edges = [0] + [c for c in cuts if c < len(payload)] + [len(payload)]
    segs = [(edges[i], payload[edges[i]:edges[i + 1]]) for i in range(len(edges) - 1)]
    order = data.draw(hs.permutations(segs)) if data.draw(hs.booleans()) else segs
    extra = data.draw(hs.lists(hs.tuples(hs.integers(0, len(payload)), hs.integers(1, 40)), max_size=4))
    arrivals = list(order) + [(off, payload[off:off + n]) for off, n in extra if payload[off:off + n]]
    isn = data.draw(hs.sampled_from([0, 1000, 0xFFFFFFFF - 50, 0xFFFFFFFF]))
    start = isn if data.draw(hs.booleans()) else -1
    plain, fast = TcpReassembler(start), TcpReassembler(start)
    got_plain, got_fast = [], []
    for frame, (off, seg) in enumerate(arrivals):
        seq = (isn + off) & 0xFFFFFFFF
        got_plain += [(c.data, c.missing, c.frame) for c in plain.add(seq, seg, frame, 0)]
        got_fast += _take_or_add(fast, seq, seg, frame)
    got_plain += [(c.data, c.missing, c.frame) for c in plain.flush()]
    got_fast += [(c.data, c.missing, c.frame) for c in fast.flush()]
    assert got_fast == got_plain
    assert (fast.next_seq, fast.delivered, fast.missing) == (plain.next_seq, plain.delivered, plain.missing)


def test_take_declines_what_it_cannot_deliver_as_is():
    r = TcpReassembler()
    assert not r.take(100, b"AB")  # no start yet: add fixes it
    assert [c.data for c in r.add(100, b"AB", 1, 0)] == [b"AB"]
    assert r.take(102, b"CD") and r.next_seq == 104 and r.delivered == 4
    assert not r.take(102, b"CD")  # a retransmission
    assert not r.take(106, b"GH")  # ahead of a gap
    assert r.add(106, b"GH", 2, 0) == []
    assert not r.take(104, b"EF")  # continues the stream, but a segment is held: add drains it too
    assert [c.data for c in r.add(104, b"EF", 3, 0)] == [b"EF", b"GH"]
