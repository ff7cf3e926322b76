"""Bad input gets a clear message, never a traceback, and the rest is still analysed.

Captures arrive cut short, bit-rotted, half-downloaded or not captures at all. Whatever the bytes, the
analyser must finish the file, say what was wrong and where, keep everything before the damage, and count
every packet it read in exactly one outcome. The expected counts here come from walking the record headers
with `struct`, independently of nvpcap's reader. Property tests throw arbitrary bytes at the reader and at
the compiled decoder, whose offsets must never leave the packet (numba does no bounds checks).
"""
from __future__ import annotations

import functools
import gzip
import json
import random
import re
import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES, run
from nvpcap.decode import status as pkt_status
from nvpcap.decode.decoder import decode
from nvpcap.decode.reader import RawBatch

HTTP = (SAMPLES / "http_ethernet.pcap").read_bytes()  # 11 packets, all decode
PCAPNG = (SAMPLES / "multi_interface.pcapng").read_bytes()  # 16 packets in 2 sections, all decode

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}
MAX_RECORD_LEN = 1 << 20  # a record claiming more is corrupt (libpcap allows 256 KiB; nvpcap leaves headroom)
PACKET_BLOCKS = {2, 3, 6}  # pcapng: obsolete packet block, simple packet block, enhanced packet block
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- independent oracles: walk the file's own headers ---------------------------------------------------------
def pcap_walk(data: bytes) -> tuple[int, int, int | None]:
    """(complete records, unreadable records (0 or 1), offset of the unreadable one) of a classic pcap."""
    if len(data) < 24 or data[:4] not in PCAP_MAGICS:
        return 0, 0, None
    e = PCAP_MAGICS[data[:4]]
    pos, n = 24, 0
    while pos < len(data):
        if pos + 16 > len(data):
            return n, 1, pos
        incl = struct.unpack_from(e + "I", data, pos + 8)[0]
        if incl > MAX_RECORD_LEN or pos + 16 + incl > len(data):
            return n, 1, pos
        n += 1
        pos += 16 + incl
    return n, 0, None


def pcapng_walk(data: bytes) -> tuple[int, int]:
    """(complete packet blocks, 1 when a partial block is left at the end) of an undamaged, cut pcapng."""
    pos = n = 0
    e = "<"
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
            e = ">" if data[pos + 8:pos + 12] == b"\x1a\x2b\x3c\x4d" else "<"
        btype, blen = struct.unpack_from(e + "II", data, pos)
        if pos + blen > len(data):
            break
        n += btype in PACKET_BLOCKS
        pos += blen
    partial = len(data) >= 4 and pos < len(data)  # fewer than 4 bytes is not recognisable as pcapng at all
    return n, int(partial)


def outcomes_of_cut(complete: int, partial: int) -> Counter:
    """Outcomes of a cut copy of a sample whose packets all decode (zero counts dropped)."""
    return Counter({"decoded": complete, "unreadable-record": partial}) - Counter()


# -- corpus -----------------------------------------------------------------------------------------------------
def cut_points(size: int) -> list[int]:
    return list(range(min(size, 100))) + list(range(100, size, 7))


def bit_flips(data: bytes, seed: int, count: int) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    out = []
    for bit in rng.sample(range(len(data) * 8), count):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        out.append((bit, bytes(flipped)))
    return out


def with_record_len(data: bytes, record: int, incl: int) -> bytes:
    """A copy of a little-endian classic pcap whose record number `record` (0-based) claims `incl` bytes."""
    pos = 24
    for _ in range(record):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    out = bytearray(data)
    struct.pack_into("<I", out, pos + 8, incl)
    return bytes(out)


def analyse(path: Path, data: bytes):
    """Write `data` to `path` and analyse it; raising is itself the failure being tested."""
    path.write_bytes(data)
    return run(path)


def sample_big_pcap(records: int = 300) -> bytes:
    """A pcap of incompressible frames (noise after an Ethernet header: only the reader matters here),
    large enough that zstd and gzip emit several blocks."""
    rng = random.Random(5)
    ether = HTTP[40:54]
    body = bytearray(HTTP[:24])
    for i in range(records):
        frame = ether + rng.randbytes(1000)
        body += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    return bytes(body)


# -- truncations and bit flips ------------------------------------------------------------------------------
def test_truncated_pcap_counts_complete_records_plus_one_unreadable(tmp_path):
    wrong = []
    for cut in cut_points(len(HTTP)):
        s = analyse(tmp_path / "cut.pcap", HTTP[:cut]).summary
        complete, partial, _ = pcap_walk(HTTP[:cut])
        reported = bool(s.issues) == (cut < 24 or partial == 1)  # a header-only file is valid, just empty
        if not (s.check_accounting() and s.packets == complete + partial and reported
                and s.outcomes == outcomes_of_cut(complete, partial)):
            wrong.append((cut, s.packets, complete + partial, dict(s.outcomes), [i.kind for i in s.issues]))
    assert not wrong, f"(cut, packets, expected, outcomes, issues): {wrong}"


def test_truncated_pcapng_counts_complete_packet_blocks_plus_one_unreadable(tmp_path):
    wrong = []
    for cut in cut_points(len(PCAPNG)):
        s = analyse(tmp_path / "cut.pcapng", PCAPNG[:cut]).summary
        complete, partial = pcapng_walk(PCAPNG[:cut])
        reported = bool(s.issues) == (cut < 4 or partial == 1)
        if not (s.check_accounting() and s.packets == complete + partial and reported
                and s.outcomes == outcomes_of_cut(complete, partial)):
            wrong.append((cut, s.packets, complete + partial, dict(s.outcomes), [i.kind for i in s.issues]))
    assert not wrong, f"(cut, packets, expected, outcomes, issues): {wrong}"


def test_bit_flipped_pcap_reads_exactly_the_records_its_headers_describe(tmp_path):
    wrong = []
    for bit, data in bit_flips(HTTP, seed=11, count=200):
        s = analyse(tmp_path / "flip.pcap", data).summary
        complete, unreadable, _ = pcap_walk(data)
        if not s.check_accounting() or s.packets != complete + unreadable:
            wrong.append((bit, s.packets, complete + unreadable, dict(s.outcomes)))
    assert not wrong, f"(bit, packets, expected, outcomes): {wrong}"


def test_bit_flipped_pcapng_never_raises_and_accounts_every_packet(tmp_path):
    wrong = []
    for bit, data in bit_flips(PCAPNG, seed=12, count=200):
        s = analyse(tmp_path / "flip.pcapng", data).summary
        if not s.check_accounting():
            wrong.append((bit, s.packets, dict(s.outcomes)))
    assert not wrong, f"(bit, packets, outcomes): {wrong}"


# -- whole-file damage ----------------------------------------------------------------------------------------
def test_zero_length_file_is_reported_empty(tmp_path):
    s = analyse(tmp_path / "empty.pcap", b"").summary
    assert s.packets == 0 and s.check_accounting()
    assert [(i.kind, i.offset) for i in s.issues] == [("empty-file", 0)]


def test_random_bytes_are_not_a_capture(tmp_path):
    s = analyse(tmp_path / "noise.pcap", random.Random(3).randbytes(5000)).summary
    assert s.packets == 0 and s.check_accounting()
    assert [(i.kind, i.offset) for i in s.issues] == [("bad-magic", 0)]


@pytest.mark.parametrize("incl", [MAX_RECORD_LEN + 1, 0xFFFFFFF0])
def test_huge_record_length_keeps_the_records_before_it(tmp_path, incl):
    data = with_record_len(HTTP, 3, incl)
    r = analyse(tmp_path / "huge.pcap", data)
    complete, unreadable, offset = pcap_walk(data)
    assert (complete, unreadable) == (3, 1)
    assert r.summary.packets == 4 and r.summary.check_accounting()
    assert r.summary.outcomes == Counter({"decoded": 3, "unreadable-record": 1})
    assert [(i.kind, i.offset) for i in r.summary.issues] == [("corrupt-record", offset)]
    assert r.anomalies("corrupt-record")


def test_gzip_of_a_truncated_pcap_is_read_like_the_truncated_pcap(tmp_path):
    cut = HTTP[:700]
    s = analyse(tmp_path / "cut.pcap.gz", gzip.compress(cut)).summary
    complete, partial, offset = pcap_walk(cut)
    assert s.compression == "gzip"
    assert s.packets == complete + partial and s.check_accounting()
    assert s.outcomes == outcomes_of_cut(complete, partial)
    assert [(i.kind, i.offset) for i in s.issues] == [("truncated-record", offset)]


@functools.cache
def gzip_cuts() -> dict[str, bytes]:
    small, big = gzip.compress(HTTP, mtime=0), gzip.compress(sample_big_pcap(), mtime=0)
    return {"small-middle": small[:len(small) // 2], "small-no-trailer": small[:-8], "big-middle": big[:len(big) // 2]}


@functools.cache
def zstd_cuts() -> dict[str, bytes]:
    small, big = (zstandard.ZstdCompressor().compress(d) for d in (HTTP, sample_big_pcap()))
    return {"small-middle": small[:len(small) // 2], "big-middle": big[:len(big) // 2]}


@pytest.mark.parametrize("case", sorted(gzip_cuts()))
def test_cut_gzip_stream_is_reported_without_a_traceback(tmp_path, case):
    s = analyse(tmp_path / "cut.pcap.gz", gzip_cuts()[case]).summary
    assert s.compression == "gzip" and s.check_accounting()
    assert any(i.kind == "read-error" for i in s.issues)


@pytest.mark.parametrize("case", sorted(gzip_cuts()))
def test_cut_gzip_stream_keeps_the_packets_before_the_cut(tmp_path, case):
    data = gzip_cuts()[case]
    s = analyse(tmp_path / "cut.pcap.gz", data).summary
    complete, partial, _ = pcap_walk(zlib.decompressobj(wbits=31).decompress(data))
    assert complete > 0
    assert s.packets == complete + partial


@pytest.mark.parametrize("case", sorted(zstd_cuts()))
def test_cut_zstd_stream_keeps_the_packets_before_the_cut(tmp_path, case):
    data = zstd_cuts()[case]
    s = analyse(tmp_path / "cut.pcap.zst", data).summary
    complete, partial, _ = pcap_walk(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    assert s.compression == "zstd" and s.check_accounting()
    assert s.packets == complete + partial


@pytest.mark.parametrize("case", sorted(zstd_cuts()))
def test_cut_zstd_stream_is_reported_as_a_read_error(tmp_path, case):
    s = analyse(tmp_path / "cut.pcap.zst", zstd_cuts()[case]).summary
    assert any(i.kind == "read-error" for i in s.issues), [(i.kind, i.message) for i in s.issues]


def test_corrupt_pcapng_packet_block_counts_as_one_unreadable_record(tmp_path):
    # the first EPB of multi_interface.pcapng starts at 248; break its trailing length copy
    assert struct.unpack_from("<I", PCAPNG, 248)[0] == 6
    blen = struct.unpack_from("<I", PCAPNG, 252)[0]
    data = bytearray(PCAPNG)
    struct.pack_into("<I", data, 248 + blen - 4, blen + 4)
    s = analyse(tmp_path / "corrupt.pcapng", bytes(data)).summary
    assert [i.kind for i in s.issues] == ["corrupt-block"]
    assert s.outcomes == Counter({"unreadable-record": 1}) and s.packets == 1


# -- the command line on corrupt files ----------------------------------------------------------------------
CORRUPT_FILES = {
    "truncated.pcap": lambda: HTTP[:500],
    "huge_record.pcap": lambda: with_record_len(HTTP, 3, 0xFFFFFFF0),
    "noise.pcap": lambda: random.Random(3).randbytes(3000),
    "cut.pcap.gz": lambda: gzip.compress(HTTP, mtime=0)[:300],
}


def nvpcap(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nvpcap", "analyze", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_corrupt_files(folder: Path) -> list[str]:
    for name, make in CORRUPT_FILES.items():
        (folder / name).write_bytes(make())
    return sorted(CORRUPT_FILES)


def names_file_and_offset(stderr: str, name: str) -> bool:
    flat = " ".join(stderr.split())  # the message may be wrapped (see test_cli.py)
    return re.search(rf"{re.escape(name)}: offset \d+: \S", flat) is not None


@pytest.mark.parametrize("name", sorted(CORRUPT_FILES))
def test_cli_strict_exits_3_on_a_corrupt_file(tmp_path, name):
    write_corrupt_files(tmp_path)
    done = nvpcap(tmp_path, name, "-o", "out.jsonl", "-q", "--strict")
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and names_file_and_offset(done.stderr, name), done.stderr
    assert records(tmp_path / "out.jsonl")[-1]["event_type"] == "stats"


def test_cli_reports_corrupt_files_and_still_analyses_the_good_one(tmp_path):
    corrupt = write_corrupt_files(tmp_path)
    (tmp_path / "good.pcap").write_bytes(HTTP)
    done = nvpcap(tmp_path, *corrupt, "good.pcap", "-o", "out.jsonl", "-q")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [n for n in corrupt if not names_file_and_offset(done.stderr, n)] == []
    out = records(tmp_path / "out.jsonl")
    good = [r for r in out if r["event_type"] == "flow" and r["pcap_filename"] == "good.pcap"]
    assert sorted(r["pkts_toserver"] + r["pkts_toclient"] for r in good) == [2, 9]
    stats = {f["file"]: f for f in out[-1]["files"]}
    assert stats["good.pcap"]["packets"] == 11 and stats["truncated.pcap"]["packets"] == 6
    assert out[-1]["totals"]["accounted"] is True


# -- property tests: the reader ---------------------------------------------------------------------------
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
PCAPNG_SHB_IDB = PCAPNG[:108]  # section header and first interface of the sample


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop") / "input"


def assert_read_and_accounted(path: Path, data: bytes):
    s = analyse(path, data).summary
    assert s.check_accounting(), (s.packets, dict(s.outcomes))
    return s


@PROPERTY
@given(tail=st.binary(max_size=600))
def test_any_bytes_after_a_pcap_header(scratch, tail):
    s = assert_read_and_accounted(scratch, PCAP_HEADER + tail)
    complete, unreadable, _ = pcap_walk(PCAP_HEADER + tail)
    assert s.packets == complete + unreadable


@PROPERTY
@given(tail=st.binary(max_size=600))
def test_any_bytes_after_a_pcapng_section_and_interface(scratch, tail):
    assert_read_and_accounted(scratch, PCAPNG_SHB_IDB + tail)


# -- property tests: frames for every link type ----------------------------------------------------------------
LINKTYPES = (1, 113, 276, 101, 0)
PORTS = st.one_of(st.sampled_from([53, 80, 443, 4789, 0]), st.integers(0, 65535))
u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)


def usually(draw, value, other: st.SearchStrategy):
    """`value` three times in four, else a draw from `other`: mostly consistent headers, sometimes lies."""
    return value if draw(st.integers(0, 3)) else draw(other)


@st.composite
def transport(draw, proto: int) -> bytes:
    if proto == 6:
        doff = draw(st.sampled_from([5, 5, 6, 8, 15, 4, 0]))
        head = struct.pack("!HHIIBBHHH", draw(PORTS), draw(PORTS), draw(u32), draw(u32), doff << 4,
                           draw(st.integers(0, 255)), draw(u16), 0, 0)
        return head + draw(st.binary(max_size=64))
    if proto == 17:
        body = draw(st.one_of(st.binary(max_size=64), st.binary(min_size=7, max_size=64).map(lambda b: b"\x08" + b)))
        ulen = usually(draw, 8 + len(body), u16)
        return struct.pack("!HHHH", draw(PORTS), draw(PORTS), ulen, 0) + body
    if proto == 47:
        gre = struct.pack("!HH", draw(st.sampled_from([0, 0x8000, 0x2000, 0xB000, 7])),
                          draw(st.sampled_from([0x0800, 0x86DD, 0x6558, 0x1234])))
        return gre + draw(st.binary(max_size=80))
    return draw(st.binary(max_size=64))


@st.composite
def ip_packet(draw) -> bytes:
    proto = draw(st.sampled_from([6, 6, 6, 17, 17, 17, 1, 58, 47, 4, 41, 0, 43, 44, 60, 51, 255]))
    l4 = draw(transport(proto))
    addrs = draw(st.binary(min_size=32, max_size=32))
    if draw(st.booleans()):
        ihl = draw(st.sampled_from([5, 5, 5, 6, 15, 4]))
        opts = draw(st.binary(min_size=max(ihl - 5, 0) * 4, max_size=max(ihl - 5, 0) * 4))
        tot = usually(draw, 20 + len(opts) + len(l4), u16)
        frag = draw(st.sampled_from([0, 0x4000, 0x2000, 0x0001, 0x2003]))
        return struct.pack("!BBHHHBBH", 0x40 | ihl, 0, tot, draw(u16), frag, 64, proto, 0) + addrs[:8] + opts + l4
    plen = usually(draw, len(l4), u16)
    return struct.pack("!IHBB", 0x60000000, plen, proto, 64) + addrs + l4


@st.composite
def frame(draw, linktype: int) -> bytes:
    """A frame of `linktype`: mostly a plausible header stack with random fields, else arbitrary bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=128))
    ip = draw(ip_packet())
    et = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    if linktype == 1:
        shim = draw(st.sampled_from(["", "vlan", "qinq", "pppoe", "mpls", "arp"]))
        mid = {"": b"", "vlan": struct.pack("!HH", 0x8100, 7), "qinq": struct.pack("!HHHH", 0x88A8, 5, 0x8100, 6),
               "pppoe": struct.pack("!H6sH", 0x8864, bytes(6), 0x0021 if et == 0x0800 else 0x0057),
               "mpls": struct.pack("!HI", 0x8847, 0x00001100), "arp": struct.pack("!H", 0x0806)}[shim]
        tail = struct.pack("!H", et) if shim in ("", "vlan", "qinq") else b""  # pppoe, mpls, arp name their own
        return bytes(12) + mid + tail + ip
    if linktype == 113:
        return bytes(14) + struct.pack("!H", et) + ip
    if linktype == 276:
        return struct.pack("!H", et) + bytes(18) + ip
    if linktype == 0:
        af = usually(draw, 2 if et == 0x0800 else draw(st.sampled_from([24, 28, 30])), st.sampled_from([2, 24, 7]))
        return struct.pack(draw(st.sampled_from(["<I", ">I"])), af) + ip
    return ip


def captured(draw, data: bytes) -> tuple[bytes, int]:
    """Maybe cut `data` short as a snaplen would; returns (captured bytes, length on the wire)."""
    if draw(st.booleans()):
        return data, len(data)
    return data[:draw(st.integers(0, len(data)))], len(data)


@st.composite
def link_frames(draw, linktypes: tuple[int, ...] = LINKTYPES) -> tuple[int, bytes, int]:
    lt = draw(st.sampled_from(linktypes))
    data, wire = captured(draw, draw(frame(lt)))
    return lt, data, wire


@pytest.mark.parametrize("linktype", LINKTYPES)
def test_frame_strategy_reaches_decoded_packets(linktype):
    """Guard for the properties below: the generated frames really decode for every link type."""
    @settings(max_examples=50, derandomize=True, database=None, deadline=None)
    @given(frame(linktype))
    def collect(data):
        seen.update(decode(one_packet(data, len(data), linktype)).status.tolist())

    seen: set[int] = set()
    collect()
    assert pkt_status.OK in seen


@pytest.mark.parametrize("linktype", LINKTYPES)
@PROPERTY
@given(draws=st.data())
def test_any_frame_in_a_well_formed_record(scratch, linktype, draws):
    _, data, wire = draws.draw(link_frames((linktype,)))
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    s = assert_read_and_accounted(scratch, header + struct.pack("<IIII", 1_700_000_000, 0, len(data), wire) + data)
    assert s.packets == 1 and not s.issues


# -- property tests: the decoder stays inside the packet ----------------------------------------------------
def one_packet(data: bytes, wire: int, linktype: int, pad: int = 0, after: bytes = b"") -> RawBatch:
    """A RawBatch of one packet that starts `pad` bytes into the buffer and is followed by `after`."""
    buf = np.frombuffer(b"\xee" * pad + data + after, np.uint8)

    def col(v, t=np.int64):
        return np.array([v], t)

    return RawBatch(buf, col(pad), col(len(data)), col(wire), col(1_700_000_000 * 10**9), col(linktype, np.int32),
                    col(0, np.int32), col(1))


def raw_ipv4(proto: int, l4: bytes, total: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0, b"\x0a\0\0\1", b"\x0a\0\0\2") + l4


# Packets a snaplen cut short that broke the decoder, as (link type, captured bytes, length on the wire).
# A TCP header whose data offset (60) runs past the 20 captured header bytes:
CUT_TCP = (101, raw_ipv4(6, struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 0xF0, 0x10, 100, 0, 0), 100), 100)
# A UDP header to the VXLAN port with nothing captured after it:
CUT_VXLAN = (101, raw_ipv4(17, struct.pack("!HHHH", 1111, 4789, 100, 0), 120), 120)
# A 24-byte TCP header (NOP, SACK-permitted, then one byte) whose last option byte was not captured:
CUT_TCP_OPTION = (101, raw_ipv4(6, struct.pack("!HHIIBBHHH", 1234, 80, 1, 0, 0x60, 0x02, 100, 0, 0) + b"\x01\x04\x02",
                                 44), 44)


def offsets_out_of_bounds(pb, start: int, end: int) -> list[str]:
    """Names of offsets of a decoded (status OK) packet that leave [start, end] or run backwards."""
    l3, l4, po, pc = (int(pb.l3_off[0]), int(pb.l4_off[0]), int(pb.payload_off[0]), int(pb.payload_cap[0]))
    checks = {"l3_off": start <= l3 <= end, "l4_off": l3 <= l4 <= end, "payload_off": l4 <= po <= end,
              "payload_cap": pc >= 0 and po + pc <= end}
    return [name for name, ok in checks.items() if not ok]


def assert_offsets_inside(linktype: int, data: bytes, wire: int, pad: int) -> None:
    pb = decode(one_packet(data, wire, linktype, pad=pad))
    if pb.status[0] == pkt_status.OK:
        bad = offsets_out_of_bounds(pb, pad, pad + len(data))
        assert not bad, (bad, pb.l3_off, pb.l4_off, pb.payload_off, pb.payload_cap, pad + len(data))


@PROPERTY
@given(sample=link_frames(), pad=st.integers(0, 8))
def test_decoded_offsets_stay_inside_whole_packets(sample, pad):
    """Packets captured whole (no snaplen cut)."""
    linktype, data, _ = sample
    assert_offsets_inside(linktype, data, len(data), pad)


@PROPERTY
@example(sample=CUT_TCP, pad=0)
@given(sample=link_frames(), pad=st.integers(0, 8))
def test_decoded_offsets_stay_inside_cut_packets(sample, pad):
    """Packets a snaplen may have cut short (length on the wire above the captured length)."""
    assert_offsets_inside(*sample, pad)


@PROPERTY
@example(sample=CUT_VXLAN)
@example(sample=CUT_TCP_OPTION)
@given(sample=link_frames())
def test_decoding_depends_only_on_the_captured_bytes(sample):
    linktype, data, wire = sample
    a, b = (decode(one_packet(data, wire, linktype, after=fill * 64)) for fill in (b"\x00", b"\x0d"))
    for name in ("status", "l3_off", "l4_off", "payload_off", "payload_cap", "sport", "dport", "proto"):
        assert getattr(a, name)[0] == getattr(b, name)[0], name


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "zeek", "parquet"])
def test_a_file_name_that_is_not_utf8_is_analysed(tmp_path, fmt):
    """Linux file names are bytes: one that is not UTF-8 (Python holds it with a lone surrogate) is analysed
    like any other, and records and the summary show it with U+FFFD (they used to fail on writing it)."""
    import os
    import shutil

    folder = tmp_path / "caps"
    folder.mkdir()
    shutil.copy(SAMPLES / "http_ethernet.pcap", os.fsdecode(bytes(folder) + b"/caf\xff.pcap"))
    out = tmp_path / "out" / f"records.{fmt}"
    r = subprocess.run([sys.executable, "-m", "nvpcap", "analyze", str(folder), "--format", fmt, "-o", str(out),
                        "--summary-json", str(tmp_path / "summary.json"), "-q"], capture_output=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    (entry,) = summary["files"]
    assert entry["file"].endswith("caf\ufffd.pcap") and entry["flows"] == 2
    if fmt == "jsonl":
        names = {json.loads(line).get("pcap_filename") for line in out.read_text(encoding="utf-8").splitlines()}
        assert "caf\ufffd.pcap" in names
