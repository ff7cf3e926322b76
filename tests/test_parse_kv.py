"""Parsers of the key-value / messaging group: Redis, memcached, Couchbase (memcached binary, EPMD, Erlang
distribution handshake), Kafka, ZooKeeper, Spark RPC.

Expected values come from the protocol specifications (bytes built here by hand, field by field, citing the
spec) or from tshark's decoding of the shared captures (command in the test). Every parser is also fed each
sample one byte at a time (split=1), hostile random bytes, and every truncation of the samples.
"""
from __future__ import annotations

import json
import random
import struct

import pytest

import pcapgen as g
from conftest import SAMPLES, SHARED, run
from parsertest import drive
from nvpcap.protocols.base import CLIENT, SERVER
from nvpcap.protocols.couchbase import CouchbaseParser
from nvpcap.protocols.framing import Framer as PrefixFramer
from nvpcap.protocols.kafka import KafkaParser
from nvpcap.protocols.memcached import MemcachedParser
from nvpcap.protocols.redis import RedisParser
from nvpcap.protocols.spark import SparkParser
from nvpcap.protocols.zookeeper import ZooKeeperParser


def both_splits(parser, steps, **kw):
    """Drive whole and byte by byte: a parser must give the same events however TCP cuts the stream."""
    whole = drive(parser, steps, **kw)
    tiny = drive(parser, steps, split=1, **kw)
    assert tiny.events == whole.events
    assert tiny.anomalies == whole.anomalies
    return whole


def hostile(parser, samples: list[list[tuple[int, bytes]]], rounds: int = 300, seed: int = 11, **kw) -> None:
    """No exception on: random bytes after a valid start, random bytes alone, and every truncation of each
    sample (the steps cut at every byte of the concatenated stream)."""
    rnd = random.Random(seed)
    for _ in range(rounds):
        sample = rnd.choice(samples)
        steps = [(side, bytes(b)) for side, b in sample[: rnd.randint(0, len(sample))]]
        steps += [(rnd.randint(0, 1), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 120))))
                  for _ in range(rnd.randint(1, 4))]
        drive(parser, steps, split=rnd.choice((0, 1, 3, 17)), **kw)
        mutated = [(side, bytes(x ^ (rnd.randrange(256) if rnd.random() < 0.05 else 0) for x in b))
                   for side, b in sample]
        drive(parser, mutated, split=rnd.choice((0, 1, 5)), **kw)
    for sample in samples:
        for i, (side, b) in enumerate(sample):
            for cut in range(len(b) + 1):
                drive(parser, sample[:i] + [(side, b[:cut])], **kw)


def capture_steps(path, server_port: int) -> list[list[tuple[int, bytes]]]:
    """The TCP payloads of each flow of a capture as (side, bytes) steps, in capture order (retransmissions of
    an already seen sequence number dropped)."""
    import dpkt
    flows: dict[tuple, list[tuple[int, bytes]]] = {}
    seen: set[tuple] = set()
    with open(path, "rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
                continue
            side = CLIENT if tcp.dport == server_port else SERVER
            port = tcp.sport if side == CLIENT else tcp.dport
            if (port, side, tcp.seq) in seen:
                continue
            seen.add((port, side, tcp.seq))
            flows.setdefault(port, []).append((side, bytes(tcp.data)))
    return list(flows.values())


def conversation(steps: list[tuple[int, bytes]], sport: int, dport: int) -> list[tuple[float, bytes]]:
    """A TCP conversation with a handshake carrying the steps (one segment each), then FINs."""
    c, s = "10.0.0.1", "10.0.0.2"
    seq = {CLIENT: 101, SERVER: 501}
    pkts = [(0.0, g.tcp(c, sport, s, dport, "S", seq=100)), (0.001, g.tcp(s, dport, c, sport, "SA", seq=500, ack=101)),
            (0.002, g.tcp(c, sport, s, dport, "A", seq=101, ack=501))]
    t = 0.003
    for side, data in steps:
        src, sp, dst, dp = (c, sport, s, dport) if side == CLIENT else (s, dport, c, sport)
        pkts.append((t, g.tcp(src, sp, dst, dp, "PA", seq=seq[side], ack=seq[1 - side], data=data)))
        seq[side] += len(data)
        t += 0.001
    pkts += [(t, g.tcp(c, sport, s, dport, "FA", seq=seq[CLIENT], ack=seq[SERVER])),
             (t + 0.001, g.tcp(s, dport, c, sport, "FA", seq=seq[SERVER], ack=seq[CLIENT] + 1)),
             (t + 0.002, g.tcp(c, sport, s, dport, "A", seq=seq[CLIENT] + 1, ack=seq[SERVER] + 1))]
    return pkts


REAL = [("redis", RedisParser, "apps/redis.pcap", 6379), ("memcached", MemcachedParser, "apps/memcached.pcap", 11211),
        ("couchbase", CouchbaseParser, "apps/couchbase_constructed.pcap", 11210),
        ("spark", SparkParser, "apps/spark_constructed.pcap", 7077),
        ("zookeeper", ZooKeeperParser, "apps/zookeeper.pcap", 2181)]
SHARED_REAL = [("redis", RedisParser, "redis__ndpi__resp.pcap", 6379),
               ("memcached", MemcachedParser, "memcached__ndpi__memcached.pcap", 11211),
               ("kafka", KafkaParser, "kafka__ndpi__kafka_flowsplit-a.pcap", 9092),
               ("zookeeper", ZooKeeperParser, "zookeeper__zktraffic__connect_replies.pcap", 2181),
               ("zookeeper", ZooKeeperParser, "zookeeper__zktraffic__create.pcap", 2181)]


@pytest.mark.parametrize("name,parser,path,port", REAL, ids=[r[0] for r in REAL])
def test_real_samples_byte_by_byte_and_truncated(name, parser, path, port):
    """The project's recorded/constructed captures: the same events whole and byte by byte, and no exception
    at any truncation point."""
    for steps in capture_steps(SAMPLES / path, port):
        rec = both_splits(parser, steps)
        assert rec.events and rec.anomalies == []
        hostile(parser, [steps], rounds=20)


@pytest.mark.parametrize("name,parser,path,port", SHARED_REAL, ids=[r[2] for r in SHARED_REAL])
def test_shared_captures_byte_by_byte_and_truncated(shared_pcaps, name, parser, path, port):
    for steps in capture_steps(SHARED / path, port):
        both_splits(parser, steps)
        if sum(len(b) for _, b in steps) <= 8192:
            hostile(parser, [steps], rounds=10)


# ---------------------------------------------------------------- the shared framer


def test_prefix_framer_keeps_a_prefix_and_skips_the_rest():
    got = []
    f = PrefixFramer(4, lambda h: 4 + struct.unpack(">i", h)[0], keep=10)
    big = struct.pack(">i", 1000) + b"A" * 1000
    small = struct.pack(">i", 3) + b"xyz"
    for i in range(0, len(big + small), 7):  # 7-byte pieces
        assert f.feed((big + small)[i:i + 7], i, i, lambda m, t, fr, ts: got.append((m, t, fr)) or 0)
    assert got == [(big[:10], 1004, 0), (small, 7, 1001)]  # the prefix, the whole length, the first piece's frame
    assert len(f.buf) == 0
    bad = PrefixFramer(4, lambda h: None, keep=10)
    assert bad.feed(b"\xff\xff\xff\xff", 0, 0, lambda *a: 0) is False


# ---------------------------------------------------------------- Redis (RESP2/RESP3)


def resp(*args: bytes) -> bytes:
    """A client command: an array of bulk strings (RESP spec, "Sending commands to a Redis server")."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_redis_pipelined_commands_and_reply_types():
    steps = [
        (CLIENT, resp(b"SET", b"k1", b"v1") + resp(b"get", b"k1") + resp(b"INCR", b"n") + resp(b"GET", b"missing")
         + resp(b"LRANGE", b"l", b"0", b"-1") + resp(b"BAD") + b"PING\r\n"),  # pipelined; the last is inline
        (SERVER, b"+OK\r\n$2\r\nv1\r\n:42\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n"
         b"-ERR unknown command 'BAD'\r\n+PONG\r\n"),
    ]
    rec = both_splits(RedisParser, steps)
    assert rec.events == [
        {"cmd": "SET", "argc": 3, "key": "k1", "reply_type": "+", "reply": "OK", "success": True},
        {"cmd": "GET", "argc": 2, "key": "k1", "reply_type": "$", "reply_len": 2, "success": True},
        {"cmd": "INCR", "argc": 2, "key": "n", "reply_type": ":", "reply": "42", "success": True},
        {"cmd": "GET", "argc": 2, "key": "missing", "reply_type": "$", "reply_len": -1, "success": True},
        {"cmd": "LRANGE", "argc": 4, "key": "l", "reply_type": "*", "reply_count": 2, "success": True},
        {"cmd": "BAD", "argc": 1, "reply_type": "-", "reply": "ERR unknown command 'BAD'",
         "error": "ERR unknown command 'BAD'", "success": False},
        {"cmd": "PING", "argc": 1, "reply_type": "+", "reply": "PONG", "success": True},
    ]
    assert rec.frames == [1] * 7 and rec.anomalies == []


def test_redis_resp3_types_attribute_and_pushes():
    # RESP3 (spec "RESP3 types"): map %, double ",", boolean #, verbatim =, big number (, null _, set ~;
    # an attribute | precedes the reply it describes; a push > is out of band
    steps = [
        (CLIENT, resp(b"HELLO", b"3") + resp(b"ZSCORE", b"z", b"m") + resp(b"EXISTS", b"k")
         + resp(b"LOLWUT") + resp(b"GET", b"big") + resp(b"GET", b"nil") + resp(b"SMEMBERS", b"s")),
        (SERVER, b"%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n"
         b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"  # a push between replies
         b",3.5\r\n|1\r\n+ttl\r\n:10\r\n#t\r\n=15\r\ntxt:Some string\r\n"
         b"(3492890328409238509324850943850943825024385\r\n"
         b"_\r\n~2\r\n+a\r\n+b\r\n"),
    ]
    rec = both_splits(RedisParser, steps)
    got = [(e["cmd"], e.get("reply_type"), e.get("reply"), e.get("reply_count"), e.get("reply_len"))
           for e in rec.events]
    assert got == [("HELLO", "%", None, 2, None), ("ZSCORE", ",", "3.5", None, None),
                   ("EXISTS", "#", "t", None, None), ("LOLWUT", "=", None, None, 15),
                   ("GET", "(", "3492890328409238509324850943850943825024385", None, None),
                   ("GET", "_", None, None, None), ("SMEMBERS", "~", None, 2, None),
                   (None, None, None, None, None)]
    assert rec.events[-1] == {"cmd": None, "pushes": 1}
    assert "key" not in rec.events[0]  # HELLO's argument is a protocol version, not a key


def test_redis_bulk_error_text():
    # RESP3 "Bulk errors": !<length>\r\n<error>\r\n
    rec = both_splits(RedisParser, [(CLIENT, resp(b"EVAL", b"x", b"0")),
                                    (SERVER, b"!21\r\nSYNTAX invalid syntax\r\n")])
    assert rec.events == [{"cmd": "EVAL", "argc": 3, "reply_type": "!", "reply_len": 21,
                           "error": "SYNTAX invalid syntax", "success": False}]


def test_redis_auth_arguments_are_never_logged():
    secret = b"s3cr3t-Pa55"
    steps = [(CLIENT, resp(b"AUTH", b"alice", secret) + b"AUTH " + secret + b"\r\n"),
             (SERVER, b"-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n")]
    rec = both_splits(RedisParser, steps)
    assert [e["key"] for e in rec.events] == ["[redacted]", "[redacted]"]
    assert rec.events[0]["error"].startswith("WRONGPASS")
    assert "s3cr3t" not in json.dumps(rec.events) and "alice" not in json.dumps(rec.events)


def test_redis_subscribe_confirmations_then_messages_are_counted():
    steps = [(CLIENT, resp(b"SUBSCRIBE", b"a", b"b")),
             (SERVER, b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
              b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$2\r\nyo\r\n")]
    rec = both_splits(RedisParser, steps)
    assert rec.events == [{"cmd": "SUBSCRIBE", "argc": 3, "reply_type": "*", "reply_count": 3, "success": True},
                          {"cmd": None, "pushes": 2}]


def test_redis_huge_bulk_reply_is_counted_not_buffered():
    size = 3 << 20
    parser_out = drive(RedisParser, [(CLIENT, resp(b"GET", b"blob")), (SERVER, b"$%d\r\n" % size),
                                     *[(SERVER, b"x" * 65536) for _ in range(size // 65536)], (SERVER, b"\r\n"),
                                     (CLIENT, resp(b"PING")), (SERVER, b"+PONG\r\n")])
    assert [e.get("reply_len", e.get("reply")) for e in parser_out.events] == [size, "PONG"]
    p = RedisParser(parser_out, None)
    p.feed(SERVER, b"+" + b"a" * 200_000, 1, 1)  # a simple string with no end: the line buffer stays bounded
    assert len(p.readers[SERVER].line) <= 64 * 1024


def test_redis_hostile_nesting_and_garbage_stop_cleanly():
    rec = drive(RedisParser, [(CLIENT, resp(b"GET", b"x")), (SERVER, b"*1\r\n" * 10_000)])
    assert rec.anomalies == ["redis-bad-reply"]
    assert rec.events == [{"cmd": "GET", "argc": 2, "key": "x"}]  # emitted unanswered at the end
    rec = drive(RedisParser, [(CLIENT, resp(b"GET", b"x")), (SERVER, b"$-7\r\n")])
    assert rec.anomalies == ["redis-bad-reply"]
    hostile(RedisParser, [[(CLIENT, resp(b"SET", b"a", b"b") + b"PING\r\n"),
                           (SERVER, b"+OK\r\n*2\r\n$1\r\na\r\n%1\r\n+k\r\n:1\r\n")]])


def test_redis_real_capture_matches_tshark(shared_pcaps):
    # tshark -r redis__ndpi__resp.pcap -Y resp -T fields -e frame.number -e resp.array.length
    #   -e resp.bulk_string.value -e resp.string -e resp.bulk_string.length
    # frame 4: array 1 "COMMAND" -> frame 6.. array of 240; 26: "ping" -> 27 "PONG"; 31: set test "Hello world!"
    # -> 32 "OK"; 34: get test -> 35 bulk string of 12 bytes
    events = run(SHARED / "redis__ndpi__resp.pcap").app_events("redis")
    got = [(e["frame"], e["redis"]["cmd"], e["redis"].get("key"), e["redis"]["reply_type"],
            e["redis"].get("reply", e["redis"].get("reply_count", e["redis"].get("reply_len")))) for e in events]
    assert got == [(4, "COMMAND", None, "*", 240), (26, "PING", None, "+", "PONG"), (31, "SET", "test", "+", "OK"),
                   (34, "GET", "test", "$", 12)]


def test_redis_real_capture_every_truncation(shared_pcaps):
    steps = [(CLIENT, resp(b"ping")), (SERVER, b"+PONG\r\n"), (CLIENT, resp(b"set", b"test", b"Hello world!")),
             (SERVER, b"+OK\r\n"), (CLIENT, resp(b"get", b"test")), (SERVER, b"$12\r\nHello world!\r\n")]
    hostile(RedisParser, [steps], rounds=50)


def test_redis_sample_capture_matches_tshark():
    # tshark -r samples/pcaps/apps/redis.pcap -Y resp -T fields -e frame.number -e resp.bulk_string.value
    #   -e resp.string -e resp.error: 4 HELLO 3 AUTH default wrong-password -> 6 WRONGPASS ...; 14 AUTH
    #   s3cret-pass -> 16 OK; 18/20 CLIENT SETINFO ... -> ERR unknown subcommand; 22 PING -> PONG; 24 SET
    #   user:1001:name alice -> OK; ... 42 LPUSH user:1001:name -> WRONGTYPE ...
    events = run(SAMPLES / "apps" / "redis.pcap").app_events("redis")
    got = {e["frame"]: e["redis"] for e in events}
    assert got[4]["cmd"] == "HELLO" and got[4]["error"].startswith("WRONGPASS") and "key" not in got[4]
    assert (got[14]["cmd"], got[14]["key"], got[14]["reply"]) == ("AUTH", "[redacted]", "OK")
    assert got[18]["error"] == "ERR unknown subcommand 'SETINFO'. Try CLIENT HELP."
    assert (got[22]["reply"], got[24]["key"], got[24]["reply"]) == ("PONG", "user:1001:name", "OK")
    assert got[42]["error"].startswith("WRONGTYPE") and got[42]["success"] is False
    assert len(events) == 16
    text = json.dumps(events)
    assert "s3cret" not in text and "wrong-password" not in text


# ---------------------------------------------------------------- memcached


def test_memcached_text_commands_data_blocks_and_answers():
    # protocol.txt: storage "set <key> <flags> <exptime> <bytes> [noreply]\r\n<data block>\r\n"; retrieval
    # "VALUE <key> <flags> <bytes> [<cas unique>]\r\n<data block>\r\n" ... "END\r\n"
    tricky = b"line1\r\nEND\r\nSTORED\r\n"  # a data block that looks like answers: must be skipped by length
    steps = [
        (CLIENT, b"set k1 0 0 %d\r\n%s\r\n" % (len(tricky), tricky) + b"get k1 k2 k3\r\n"
         b"delete k2 noreply\r\nincr n 5\r\ncas k1 0 0 1 99\r\nz\r\nbogus\r\nversion\r\nstats items\r\n"),
        (SERVER, b"STORED\r\nVALUE k1 0 %d\r\n%s\r\nVALUE k3 5 2 77\r\nab\r\nEND\r\n" % (len(tricky), tricky)
         + b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\nEXISTS\r\nERROR\r\nVERSION 1.6.21\r\n"
         b"STAT items:1:number 2\r\nSTAT items:1:age 9\r\nEND\r\n"),
    ]
    rec = both_splits(MemcachedParser, steps)
    assert rec.events == [
        {"protocol": "text", "command": "delete", "key": "k2", "noreply": True},  # no answer: emitted at once
        {"protocol": "text", "command": "set", "key": "k1", "value_bytes": len(tricky), "response": "STORED"},
        {"protocol": "text", "command": "get", "key": "k1", "key_count": 3, "hits": 2,
         "value_bytes": len(tricky) + 2, "response": "END"},
        {"protocol": "text", "command": "incr", "key": "n", "response": "CLIENT_ERROR",
         "error": "cannot increment or decrement non-numeric value"},
        {"protocol": "text", "command": "cas", "key": "k1", "value_bytes": 1, "response": "EXISTS"},
        {"protocol": "text", "command": "bogus", "response": "ERROR"},
        {"protocol": "text", "command": "version", "response": "VERSION", "version": "1.6.21"},
        {"protocol": "text", "command": "stats", "args": "items", "stat_count": 2, "response": "END"},
    ]
    assert rec.anomalies == []


def test_memcached_meta_commands_and_quiet_mode():
    # protocol.txt "Meta Commands": ms <key> <datalen> <flags>*\r\n<data>\r\n -> HD; mg -> VA <size> ... data;
    # quiet flag q suppresses HD/EN, and mn (answered MN) marks the end of a quiet pipeline
    steps = [(CLIENT, b"ms foo 3 T60\r\nbar\r\nmg foo v\r\nmg nope v q\r\nmd foo q\r\nmn\r\n"),
             (SERVER, b"HD\r\nVA 3\r\nbar\r\nMN\r\n")]
    rec = both_splits(MemcachedParser, steps)
    assert rec.events == [
        {"protocol": "text", "command": "ms", "key": "foo", "value_bytes": 3, "response": "HD"},
        {"protocol": "text", "command": "mg", "key": "foo", "response": "VA", "value_bytes": 3},
        {"protocol": "text", "command": "mg", "key": "nope"},  # quiet miss: no answer
        {"protocol": "text", "command": "md", "key": "foo"},  # quiet success: no answer
        {"protocol": "text", "command": "mn", "response": "MN"},
    ]


def mc_bin(magic: int, opcode: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"", status: int = 0,
           opaque: int = 0, cas: int = 0) -> bytes:
    """protocol-binary.txt "Packet Structure": 24-byte header then extras, key, value."""
    body = extras + key + value
    return struct.pack("!BBHBBHIIQ", magic, opcode, len(key), len(extras), 0, status, len(body), opaque, cas) + body


def test_memcached_binary_quiet_multiget_pairs_by_opaque():
    # protocol-binary.txt: multi-get as GETKQ (0x0d) requests + NOOP (0x0a); misses get no response
    req = (mc_bin(0x80, 0x0D, b"a", opaque=1) + mc_bin(0x80, 0x0D, b"b", opaque=2) + mc_bin(0x80, 0x0A, opaque=3)
           + mc_bin(0x80, 0x01, b"k", extras=b"\0" * 8, value=b"v" * 5000, opaque=4)
           + mc_bin(0x80, 0x00, b"gone", opaque=5))
    resp_ = (mc_bin(0x81, 0x0D, b"b", extras=b"\0\0\0\0", value=b"BBB", opaque=2) + mc_bin(0x81, 0x0A, opaque=3)
             + mc_bin(0x81, 0x01, opaque=4, cas=7) + mc_bin(0x81, 0x00, value=b"Not found", status=1, opaque=5))
    rec = both_splits(MemcachedParser, [(CLIENT, req), (SERVER, resp_)])
    assert rec.events == [
        {"protocol": "binary", "command": "getkq", "opcode": 13, "key": "a"},  # quiet miss
        {"protocol": "binary", "command": "getkq", "opcode": 13, "key": "b", "status": "no_error", "status_code": 0,
         "value_bytes": 3},
        {"protocol": "binary", "command": "noop", "opcode": 10, "status": "no_error", "status_code": 0},
        {"protocol": "binary", "command": "set", "opcode": 1, "key": "k", "value_bytes": 5000, "status": "no_error",
         "status_code": 0},
        {"protocol": "binary", "command": "get", "opcode": 0, "key": "gone", "status": "key_not_found",
         "status_code": 1, "error": "Not found"},
    ]


def test_memcached_udp_frames():
    # protocol.txt "UDP protocol": request id, sequence number, total datagrams, reserved (0), then the data
    rec = drive(MemcachedParser, [(CLIENT, struct.pack("!HHHH", 7, 0, 1, 0) + b"get foo\r\n"),
                                  (SERVER, struct.pack("!HHHH", 7, 0, 1, 0) + b"VALUE foo 0 1\r\nx\r\nEND\r\n")],
                transport="udp")
    assert rec.events == [{"protocol": "text", "command": "get", "key": "foo", "response": "VALUE"}]


def test_memcached_bad_data_length_stops():
    rec = drive(MemcachedParser, [(CLIENT, b"set k 0 0 lots\r\nxx\r\n")])
    assert rec.anomalies == ["memcached-bad-length"] and rec.events == []


def test_memcached_hostile():
    hostile(MemcachedParser, [[(CLIENT, b"set a 0 0 2\r\nhi\r\nget a b\r\n"),
                               (SERVER, b"STORED\r\nVALUE a 0 2\r\nhi\r\nEND\r\n")],
                              [(CLIENT, mc_bin(0x80, 0x00, b"key", opaque=9)),
                               (SERVER, mc_bin(0x81, 0x00, extras=b"\0" * 4, value=b"val", opaque=9))]])
    hostile(MemcachedParser, [[(CLIENT, struct.pack("!HHHH", 1, 0, 1, 0) + b"get a\r\n")]], rounds=100,
            transport="udp")


def test_memcached_real_capture_matches_tshark(shared_pcaps):
    # tshark -r memcached__ndpi__memcached.pcap -d tcp.port==11211,memcache -Y memcache -T fields -e frame.number
    #   -e memcache.command -e memcache.name: frame 4 "stats", frame 6: 48 STAT names (pid ... reclaimed), END
    (event,) = run(SHARED / "memcached__ndpi__memcached.pcap").app_events("memcached")
    assert event["frame"] == 4
    assert event["memcached"] == {"protocol": "text", "command": "stats", "stat_count": 48, "response": "END"}


def test_memcached_sample_capture_matches_tshark():
    # tshark -r samples/pcaps/apps/memcached.pcap -d tcp.port==11211,memcache -T fields -e frame.number
    #   -e memcache.command -e memcache.key -e memcache.response: 4 version; 8 set user:1001 (9 STORED); 10 get
    #   user:1001; 12 set cfg:theme (tshark decodes only the first of the two pipelined sets: the bytes hold
    #   "set cfg:theme 0 0 4 / dark / set cfg:lang 0 0 2 / en" and frame 13 "STORED STORED"); 14 get
    #   cfg:theme,cfg:lang,cfg:missing (15: two values); 16 add -> NOT_STORED; 20 incr hits 5 -> "15";
    #   22 decr hits 2 -> "13"; 26 cas -> STORED; 28 delete cfg:lang -> DELETED; 30 get cfg:lang -> END; 32 quit
    events = [(e["frame"], e["memcached"]["command"], e["memcached"].get("key"), e["memcached"].get("response"))
              for e in run(SAMPLES / "apps" / "memcached.pcap").app_events("memcached")]
    assert events == [(4, "version", None, "VERSION"), (8, "set", "user:1001", "STORED"),
                      (10, "get", "user:1001", "END"), (12, "set", "cfg:theme", "STORED"),
                      (12, "set", "cfg:lang", "STORED"), (14, "get", "cfg:theme", "END"),
                      (16, "add", "user:1001", "NOT_STORED"), (18, "set", "hits", "STORED"),
                      (20, "incr", "hits", "15"), (22, "decr", "hits", "13"), (24, "gets", "user:1001", "END"),
                      (26, "cas", "user:1001", "STORED"), (28, "delete", "cfg:lang", "DELETED"),
                      (30, "get", "cfg:lang", "END"), (32, "quit", None, None)]


# ---------------------------------------------------------------- Couchbase


def test_couchbase_sasl_hello_and_bucket():
    # kv_engine docs/BinaryProtocol.md + docs/sasl.md: HELO (0x1f) key = agent, value = u16 features;
    # SASL_LIST_MECHS (0x20) answered with space-separated names; SASL_AUTH (0x21) key = mechanism, value =
    # the SASL message (PLAIN, RFC 4616: authzid NUL authcid NUL password); SELECT_BUCKET (0x89) key = bucket
    plain = b"\0alice\0hunter2-secret"
    req = (mc_bin(0x80, 0x1F, b'{"a":"gocbcore/v10"}', value=struct.pack(">3H", 0x0B, 0x0C, 0x12), opaque=1)
           + mc_bin(0x80, 0x20, opaque=2) + mc_bin(0x80, 0x21, b"PLAIN", value=plain, opaque=3)
           + mc_bin(0x80, 0x21, b"PLAIN", value=plain, opaque=4) + mc_bin(0x80, 0x89, b"travel-sample", opaque=5))
    resp_ = (mc_bin(0x81, 0x1F, value=struct.pack(">2H", 0x0B, 0x12), opaque=1)
             + mc_bin(0x81, 0x20, value=b"SCRAM-SHA512 SCRAM-SHA256 SCRAM-SHA1 PLAIN", opaque=2)
             + mc_bin(0x81, 0x21, value=b"Auth failure", status=0x20, opaque=3)
             + mc_bin(0x81, 0x21, opaque=4) + mc_bin(0x81, 0x89, opaque=5))
    rec = both_splits(CouchbaseParser, [(CLIENT, req), (SERVER, resp_)])
    ok = {"status": "no_error", "status_code": 0}
    assert rec.events == [
        {"protocol": "binary", "command": "hello", "opcode": 0x1F, "agent": '{"a":"gocbcore/v10"}',
         "features": [0x0B, 0x0C, 0x12], **ok, "features_accepted": [0x0B, 0x12]},
        {"protocol": "binary", "command": "sasl_list_mechs", "opcode": 0x20, **ok,
         "mechanisms": ["SCRAM-SHA512", "SCRAM-SHA256", "SCRAM-SHA1", "PLAIN"]},
        {"protocol": "binary", "command": "sasl_auth", "opcode": 0x21, "sasl_mechanism": "PLAIN", "user": "alice",
         "status": "authentication_error", "status_code": 0x20},
        {"protocol": "binary", "command": "sasl_auth", "opcode": 0x21, "sasl_mechanism": "PLAIN", "user": "alice",
         **ok},
        {"protocol": "binary", "command": "select_bucket", "opcode": 0x89, "bucket": "travel-sample", **ok},
    ]
    assert "hunter2" not in json.dumps(rec.events)


def test_couchbase_scram_user_and_flexible_framing():
    # RFC 5802 client-first-message "n,,n=user,r=nonce"; magic 0x08 = request with flexible framing extras
    # (byte 2 = framing extras length, byte 3 = key length)
    scram = mc_bin(0x80, 0x21, b"SCRAM-SHA512", value=b"n,,n=bob,r=fyko+d2lbbFgONRv9qkxdawL", opaque=1)
    key, framing = b"doc-1", b"\x11\x01"  # FrameInfo id 1 (durability), length 1, level majority
    body = framing + key + b"{}"
    flex = struct.pack("!BBBBBBHIIQ", 0x08, 0x01, len(framing), len(key), 0, 0, 0, len(body), 2, 0) + body
    rec = both_splits(CouchbaseParser, [(CLIENT, scram + flex),
                                        (SERVER, mc_bin(0x81, 0x21, value=b"r=x,s=y,i=4096", status=0x21, opaque=1)
                                         + mc_bin(0x81, 0x01, opaque=2))])
    assert rec.events[0]["user"] == "bob" and rec.events[0]["status"] == "authentication_continue"
    assert "error" not in rec.events[0]  # a SASL challenge is not an error message
    assert rec.events[1] == {"protocol": "binary", "command": "set", "opcode": 1, "key": "doc-1", "value_bytes": 2,
                             "status": "no_error", "status_code": 0}


def epmd_req(tag: bytes, body: bytes = b"") -> bytes:
    """erts "Distribution Protocol": EPMD requests are a 2-byte length then the request."""
    return struct.pack(">H", 1 + len(body)) + tag + body


def test_couchbase_epmd_port_please_names_alive():
    # PORT2_RESP 'w': result 0, PortNo, NodeType 77 (normal), Protocol 0, Highest 6, Lowest 5, Nlen, Name, Elen
    found = b"w\x00" + struct.pack(">HBBHHH", 21100, 77, 0, 6, 5, 6) + b"ns_1\x00\x00" + b"\x00\x00"
    rec = both_splits(CouchbaseParser, [(CLIENT, epmd_req(b"z", b"ns_1")), (SERVER, found)])
    assert rec.events == [{"protocol": "epmd", "request": "PORT_PLEASE2_REQ", "node": "ns_1", "result": 0,
                           "port": 21100, "node_type": 77, "highest_version": 6, "lowest_version": 5}]
    rec = drive(CouchbaseParser, [(CLIENT, epmd_req(b"z", b"nobody")), (SERVER, b"w\x01")])
    assert rec.events == [{"protocol": "epmd", "request": "PORT_PLEASE2_REQ", "node": "nobody", "result": 1}]
    names = struct.pack(">I", 4369) + b"name ns_1 at port 21100\nname babysitter_of_ns_1 at port 21101\n"
    rec = both_splits(CouchbaseParser, [(CLIENT, epmd_req(b"n")), (SERVER, names)])
    assert rec.events == [{"protocol": "epmd", "request": "NAMES_REQ", "names": ["ns_1", "babysitter_of_ns_1"],
                           "ports": [21100, 21101]}]
    # ALIVE2_REQ 'x': PortNo, NodeType, Protocol, Highest, Lowest, Nlen, NodeName, Elen; ALIVE2_X_RESP 'v'
    alive = struct.pack(">HBBHHH", 21100, 77, 0, 6, 5, 4) + b"ns_1" + b"\x00\x00"
    rec = both_splits(CouchbaseParser, [(CLIENT, epmd_req(b"x", alive)), (SERVER, b"v\x00\x00\x00\x00\x03")])
    assert rec.events == [{"protocol": "epmd", "request": "ALIVE2_REQ", "node": "ns_1", "port": 21100,
                           "node_type": 77, "highest_version": 6, "lowest_version": 5, "result": 0, "creation": 3}]


def test_couchbase_erlang_distribution_handshake():
    # erts "Distribution Handshake": send_name 'N' (flags u64, creation u32, nlen u16, name), recv_status 's' "ok",
    # recv_challenge 'N' (flags u64, challenge u32, creation u32, nlen u16, name), challenge reply 'r', ack 'a'
    def msg(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b
    me, peer = b"ns_1@10.0.0.1", b"ns_1@10.0.0.2"
    steps = [(CLIENT, msg(b"N" + struct.pack(">QIH", 0x3499FFFFD, 7, len(me)) + me)), (SERVER, msg(b"sok")),
             (SERVER, msg(b"N" + struct.pack(">QIIH", 0x3499FFFFD, 0xDEADBEEF, 9, len(peer)) + peer)),
             (CLIENT, msg(b"r" + b"\0\0\0\1" + b"D" * 16)), (SERVER, msg(b"a" + b"E" * 16)),
             (CLIENT, b"\x00\x00\x00\x00")]  # a distribution tick: not read
    rec = both_splits(CouchbaseParser, steps)
    assert rec.events == [{"protocol": "erlang_dist", "version": 6, "node": "ns_1@10.0.0.1", "flags": "0x3499ffffd",
                           "status": "ok", "peer_node": "ns_1@10.0.0.2", "challenge_reply": True,
                           "handshake_complete": True}]
    old = [(CLIENT, msg(b"n\x00\x05" + struct.pack(">I", 0x7FFFD) + b"a@h")), (SERVER, msg(b"snot_allowed"))]
    rec = both_splits(CouchbaseParser, old)
    assert rec.events == [{"protocol": "erlang_dist", "version": 5, "node": "a@h", "flags": "0x7fffd",
                           "status": "not_allowed", "handshake_complete": False}]


def test_couchbase_sample_capture_matches_tshark():
    # tshark -r samples/pcaps/apps/couchbase_constructed.pcap -Y couchbase -T fields -e frame.number
    #   -e couchbase.opcode -e couchbase.key -e couchbase.status -e couchbase.value: 4 0x1f {"a":"libcouchbase/
    #   3.3.9 ..."} -> 0x0000; 6 0x20 -> "SCRAM-SHA512 SCRAM-SHA256 SCRAM-SHA1 PLAIN"; 8 0x21 PLAIN -> 0x0000;
    #   10 0x89 travel-sample; 12 0x01 user::1001 (58-byte JSON); 14 0x00 user::1001 -> 0x0000 (58 bytes);
    #   16 0x00 user::9999 -> 0x0001 "Not found"
    events = [e["couchbase"] for e in run(SAMPLES / "apps" / "couchbase_constructed.pcap").app_events("couchbase")]
    assert [(e["opcode"], e.get("key", e.get("agent", e.get("bucket", e.get("sasl_mechanism")))), e["status_code"])
            for e in events] == [
        (0x1F, '{"a":"libcouchbase/3.3.9 (Linux-6.1; x86_64)","i":"00000000d1a8b7c3/0000000000000001"}', 0),
        (0x20, None, 0), (0x21, "PLAIN", 0), (0x89, "travel-sample", 0), (0x01, "user::1001", 0),
        (0x00, "user::1001", 0), (0x00, "user::9999", 1)]
    assert events[1]["mechanisms"] == ["SCRAM-SHA512", "SCRAM-SHA256", "SCRAM-SHA1", "PLAIN"]
    assert events[4]["value_bytes"] == events[5]["value_bytes"] == len('{"name":"alice","email":"alice@example.com",'
                                                                       '"type":"user"}')
    assert events[6]["error"] == "Not found"


def test_couchbase_through_the_pipeline(tmp_path):
    steps = [(CLIENT, mc_bin(0x80, 0x20, opaque=0xAB)), (SERVER, mc_bin(0x81, 0x20, value=b"PLAIN", opaque=0xAB))]
    events = run(g.write(tmp_path / "cb.pcap", conversation(steps, 40001, 11210))).app_events("couchbase")
    assert [e["couchbase"]["mechanisms"] for e in events] == [["PLAIN"]] and events[0]["frame"] == 4


def test_couchbase_hostile():
    hostile(CouchbaseParser, [[(CLIENT, mc_bin(0x80, 0x21, b"PLAIN", value=b"\0u\0p", opaque=1)),
                               (SERVER, mc_bin(0x81, 0x21, opaque=1))],
                              [(CLIENT, epmd_req(b"z", b"ns_1")), (SERVER, b"w\x00\x52\x6c\x4d\x00")],
                              [(CLIENT, epmd_req(b"n")), (SERVER, b"\0\0\x11\x11name x at port 1\n")],
                              [(CLIENT, b"\x00\x0cN" + b"\0" * 8 + b"x@y"), (SERVER, b"\x00\x03sok")]])


# ---------------------------------------------------------------- Kafka


def kstr(s: bytes | None) -> bytes:
    """STRING / NULLABLE_STRING: int16 length (-1 null)."""
    return b"\xff\xff" if s is None else struct.pack(">h", len(s)) + s


def kcompact(s: bytes | None) -> bytes:
    """COMPACT_(NULLABLE_)STRING: unsigned varint length + 1 (lengths < 127 here: one byte)."""
    return b"\x00" if s is None else bytes([len(s) + 1]) + s


def krequest(key: int, version: int, corr: int, client: bytes | None, body: bytes, flexible: bool = False) -> bytes:
    """size, then request header v1 (api_key, api_version, correlation_id, client_id) [+ tagged fields: v2]."""
    head = struct.pack(">hhi", key, version, corr) + kstr(client) + (b"\x00" if flexible else b"")
    return struct.pack(">i", len(head + body)) + head + body


def kresponse(corr: int, body: bytes) -> bytes:
    return struct.pack(">ii", 4 + len(body), corr) + body


def test_kafka_requests_topics_and_pairing_by_correlation_id():
    # MetadataRequest v1: topics ARRAY of STRING; ProduceRequest v3: transactional_id, acks, timeout,
    # [name, [index, records]]; FetchRequest v4: replica, max_wait, min_bytes, max_bytes, isolation,
    # [topic, [partition, fetch_offset, max_bytes]]; ListOffsets v1: replica, [name, [partition, timestamp]]
    metadata = krequest(3, 1, 10, b"cli", struct.pack(">i", 2) + kstr(b"orders") + kstr(b"payments"))
    records = b"R" * 300
    produce = krequest(0, 3, 11, b"cli", kstr(None) + struct.pack(">hi", 1, 30000) + struct.pack(">i", 1)
                       + kstr(b"orders") + struct.pack(">i", 1) + struct.pack(">ii", 0, len(records)) + records)
    fetch = krequest(1, 4, 12, b"cli", struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0) + struct.pack(">i", 2)
                     + kstr(b"a") + struct.pack(">i", 1) + struct.pack(">iqi", 0, 5, 1024)
                     + kstr(b"b") + struct.pack(">i", 0))
    offsets = krequest(2, 1, 13, None, struct.pack(">i", -1) + struct.pack(">i", 1) + kstr(b"t")
                       + struct.pack(">i", 1) + struct.pack(">iq", 0, -1))
    acks0 = krequest(0, 2, 14, b"cli", struct.pack(">hi", 0, 100) + struct.pack(">i", 1) + kstr(b"fire")
                     + struct.pack(">i", 0))
    steps = [(CLIENT, metadata + produce + fetch + offsets + acks0),
             (SERVER, kresponse(12, b"F" * 10) + kresponse(10, b"M" * 20) + kresponse(11, b"P") + kresponse(13, b""))]
    rec = both_splits(KafkaParser, steps)
    base = {"client_id": "cli"}
    assert rec.events == [
        {"api": "Produce", "api_key": 0, "api_version": 2, "correlation_id": 14, **base, "request_size": len(acks0) - 4,
         "acks": 0, "topics": ["fire"]},  # acks=0: the broker does not answer
        {"api": "Fetch", "api_key": 1, "api_version": 4, "correlation_id": 12, **base, "request_size": len(fetch) - 4,
         "topics": ["a", "b"], "response_size": 14},
        {"api": "Metadata", "api_key": 3, "api_version": 1, "correlation_id": 10, **base,
         "request_size": len(metadata) - 4, "topics": ["orders", "payments"], "response_size": 24},
        {"api": "Produce", "api_key": 0, "api_version": 3, "correlation_id": 11, **base,
         "request_size": len(produce) - 4, "acks": 1, "topics": ["orders"], "response_size": 5},
        {"api": "ListOffsets", "api_key": 2, "api_version": 1, "correlation_id": 13, "client_id": None,
         "request_size": len(offsets) - 4, "topics": ["t"], "response_size": 4},
    ]


def test_kafka_flexible_versions():
    # MetadataRequest v12 (flexible, "9+"): topics COMPACT_NULLABLE_ARRAY of {topic_id uuid, name
    # COMPACT_NULLABLE_STRING, tagged fields}; ProduceRequest v9: compact strings/arrays, COMPACT_RECORDS;
    # ApiVersions v3: client_software_name/version compact strings; a tagged field with data in the header
    metadata = krequest(3, 12, 1, b"c", b"\x03" + b"\0" * 16 + kcompact(b"x") + b"\x00" + b"\x11" * 16
                        + kcompact(None) + b"\x00" + b"\x01\x00\x00", flexible=True)
    produce = krequest(0, 9, 2, b"c", kcompact(None) + struct.pack(">hi", -1, 1500) + b"\x02" + kcompact(b"logs")
                       + b"\x02" + struct.pack(">i", 0) + b"\x05" + b"RRRR" + b"\x00" + b"\x00" + b"\x00",
                       flexible=True)
    versions = krequest(18, 3, 3, b"c", kcompact(b"librdkafka") + kcompact(b"2.3.0") + b"\x00", flexible=True)
    head_tag = struct.pack(">hhi", 3, 9, 4) + kstr(b"c") + b"\x01\x00\x02zz"  # one tagged field, 2 bytes
    body = b"\x02" + kcompact(b"tagged") + b"\x00\x01\x00\x00\x00"
    tagged = struct.pack(">i", len(head_tag + body)) + head_tag + body
    # FetchRequest v12: replica, max_wait, min_bytes, max_bytes, isolation, session id/epoch, topics COMPACT
    # [topic, partitions [partition, leader epoch, fetch offset, last fetched epoch, log start, max bytes, tags]]
    part = struct.pack(">iiqiqi", 0, 1, 100, 1, 0, 1 << 20) + b"\x00"
    fetch = krequest(1, 12, 5, b"c", struct.pack(">iiiibii", -1, 500, 1, 1 << 20, 0, 0, -1) + b"\x03"
                     + kcompact(b"f1") + b"\x02" + part + b"\x00" + kcompact(b"f2") + b"\x01" + b"\x00"
                     + b"\x01" + kcompact(b"") + b"\x00", flexible=True)
    # ListOffsetsRequest v7 (flexible "6+"): replica, isolation, topics COMPACT [name, partitions [partition,
    # leader epoch, timestamp, tags], tags]
    offsets = krequest(2, 7, 6, b"c", struct.pack(">ib", -1, 0) + b"\x02" + kcompact(b"o1") + b"\x02"
                       + struct.pack(">iiq", 0, -1, -1) + b"\x00" + b"\x00" + b"\x00", flexible=True)
    rec = both_splits(KafkaParser, [(CLIENT, metadata + produce + versions + tagged + fetch + offsets)])
    assert [e.get("topics") for e in rec.events] == [["x"], ["logs"], None, ["tagged"], ["f1", "f2"], ["o1"]]
    assert rec.events[1]["acks"] == -1
    assert (rec.events[2]["client_software_name"], rec.events[2]["client_software_version"]) == ("librdkafka", "2.3.0")


def test_kafka_big_produce_is_skipped_not_buffered_and_topics_capped():
    records = b"R" * (3 << 20)
    produce = krequest(0, 3, 1, b"c", kstr(None) + struct.pack(">hi", 1, 100) + struct.pack(">i", 1) + kstr(b"big")
                       + struct.pack(">i", 1) + struct.pack(">ii", 0, len(records)) + records)
    p_rec = drive(KafkaParser, [(CLIENT, produce[i:i + 65536]) for i in range(0, len(produce), 65536)]
                  + [(SERVER, kresponse(1, b""))])
    assert p_rec.events[0]["topics"] == ["big"] and p_rec.events[0]["request_size"] == len(produce) - 4
    many = krequest(3, 1, 2, b"c", struct.pack(">i", 500) + b"".join(kstr(b"t%d" % i) for i in range(500)))
    (event,) = drive(KafkaParser, [(CLIENT, many)]).events
    assert len(event["topics"]) == 100 and event["topics"][99] == "t99"


def test_kafka_bad_length_and_bad_header():
    rec = drive(KafkaParser, [(CLIENT, b"\xff\xff\xff\xff" + b"x" * 20)])
    assert rec.anomalies == ["kafka-bad-length"] and rec.events == []
    rec = drive(KafkaParser, [(CLIENT, struct.pack(">i", 10) + struct.pack(">hhih", 999, 0, 1, 0)
                               + krequest(18, 0, 2, b"ok", b""))])
    assert rec.anomalies == ["kafka-bad-header"] and [e["api"] for e in rec.events] == ["ApiVersions"]


def test_kafka_hostile():
    sample = [(CLIENT, krequest(3, 1, 1, b"cli", struct.pack(">i", 1) + kstr(b"t"))
               + krequest(0, 9, 2, b"c", kcompact(None) + struct.pack(">hi", 1, 1) + b"\x02" + kcompact(b"x")
                          + b"\x02" + b"\0\0\0\0" + b"\x02R" + b"\0\0\0", flexible=True)),
              (SERVER, kresponse(1, b"abc") + kresponse(2, b""))]
    hostile(KafkaParser, [sample])


def test_kafka_real_capture_matches_tshark(shared_pcaps):
    # tshark -r kafka__ndpi__kafka_flowsplit-a.pcap -Y kafka -T fields -e frame.number -e kafka.request_key
    #   -e kafka.api_version -e kafka.correlation_id -e kafka.client_id -e kafka.topic_name -e kafka.len
    # 1: 3 v2 corr 164 rdkafka LB_MAIN_LOG_INPUT len 40 (response frame 2, len 116); 3: 0 v3 corr 2 (len 444,
    # response len 57); 5: 0 v3 corr 3 (377, 57); 7: 3 v2 corr 212 (no response); 12: 18 v3 corr 3
    # console-producer (52, 442); 16: 22 v4 corr 4 (43, 22); 19: 3 v12 corr 5 (60, 122) topic "[ Null ]": tshark
    # 4.0 supports Metadata up to v9 only; the bytes (0x02 count, 16-byte zero topic id, 0x0c + "sampleTopic")
    # name sampleTopic, which the response (frame 20) also names; 22: 0 v9 corr 6 (136, 58), bytes: compact topic
    # array 0x02, 0x0c "sampleTopic" (tshark: "Unsupported Produce version", the response names sampleTopic)
    events = run(SHARED / "kafka__ndpi__kafka_flowsplit-a.pcap").app_events("kafka")
    got = sorted((e["frame"], e["kafka"]["api_key"], e["kafka"]["api_version"], e["kafka"]["correlation_id"],
                  e["kafka"]["client_id"], e["kafka"].get("topics"), e["kafka"]["request_size"],
                  e["kafka"].get("response_size")) for e in events)
    topic = ["LB_MAIN_LOG_INPUT"]
    assert got == [(1, 3, 2, 164, "rdkafka", topic, 40, 116), (3, 0, 3, 2, "rdkafka", topic, 444, 57),
                   (5, 0, 3, 3, "rdkafka", topic, 377, 57), (7, 3, 2, 212, "rdkafka", topic, 40, None),
                   (12, 18, 3, 3, "console-producer", None, 52, 442), (16, 22, 4, 4, "console-producer", None, 43, 22),
                   (19, 3, 12, 5, "console-producer", ["sampleTopic"], 60, 122),
                   (22, 0, 9, 6, "console-producer", ["sampleTopic"], 136, 58)]


# ---------------------------------------------------------------- ZooKeeper


def jstr(s: bytes | None) -> bytes:
    """jute ustring/buffer: int32 length (-1 null) + bytes."""
    return b"\xff\xff\xff\xff" if s is None else struct.pack(">i", len(s)) + s


def zpacket(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def test_zookeeper_connect_requests_replies_pings_notifications():
    # zookeeper.jute: ConnectRequest {int protocolVersion, long lastZxidSeen, int timeOut, long sessionId,
    # buffer passwd, boolean readOnly}; ConnectResponse {int protocolVersion, int timeOut, long sessionId,
    # buffer passwd, boolean readOnly}; RequestHeader {int xid, int type}; ReplyHeader {int xid, long zxid,
    # int err}; CreateRequest {path, data, acl, flags}; WatcherEvent {int type, int state, ustring path}
    connect = zpacket(struct.pack(">iqiq", 0, 0, 30000, 0) + jstr(b"\0" * 16) + b"\x00")
    connected = zpacket(struct.pack(">iiq", 0, 20000, 0x1000ABCD0000001) + jstr(b"\1" * 16) + b"\x00")
    create = zpacket(struct.pack(">ii", 1, 1) + jstr(b"/app/node") + jstr(b"data") + struct.pack(">i", 1)
                     + struct.pack(">i", 31) + jstr(b"world") + jstr(b"anyone") + struct.pack(">i", 0))
    get = zpacket(struct.pack(">ii", 2, 4) + jstr(b"/missing") + b"\x01")
    ping = zpacket(struct.pack(">ii", -2, 11))
    auth = zpacket(struct.pack(">ii", -4, 100) + struct.pack(">i", 0) + jstr(b"digest") + jstr(b"user:pw-secret"))
    created = zpacket(struct.pack(">iqi", 1, 0x100, 0) + jstr(b"/app/node"))
    nonode = zpacket(struct.pack(">iqi", 2, 0x101, -101))
    pong = zpacket(struct.pack(">iqi", -2, 0x101, 0))
    watch = zpacket(struct.pack(">iqi", -1, -1, 0) + struct.pack(">ii", 3, 3) + jstr(b"/app/node"))
    steps = [(CLIENT, connect), (SERVER, connected), (CLIENT, create + get + ping + ping + auth),
             (SERVER, created + nonode + pong + pong + watch)]
    rec = both_splits(ZooKeeperParser, steps)
    assert rec.events == [
        {"op": "connect", "protocol_version": 0, "last_zxid_seen": 0, "timeout": 30000, "session_id": "0x0",
         "read_only": False, "resp_timeout": 20000, "resp_session_id": "0x1000abcd0000001", "resp_read_only": False},
        {"op": "create", "xid": 1, "path": "/app/node", "zxid": 0x100, "err": "OK"},
        {"op": "getData", "xid": 2, "path": "/missing", "zxid": 0x101, "err": "NONODE"},
        {"op": "notification", "xid": -1, "zxid": -1, "event": "NodeDataChanged", "state": "SyncConnected",
         "path": "/app/node"},
        {"op": "auth", "xid": -4, "scheme": "digest"},  # never answered here; the credential is not logged
        {"op": "ping", "count": 2, "replies": 2},
    ]
    assert rec.frames[0] == 1 and rec.frames[1] == 3
    assert "secret" not in json.dumps(rec.events)


def test_zookeeper_sample_capture():
    # samples/pcaps/apps/zookeeper.pcap (kazoo against ZooKeeper 3.8), bytes read against zookeeper.jute with
    # tshark -r F -Y tcp.len>0 -T fields -e frame.number -e tcp.payload: frame 8 = xid 1 type 3 (exists)
    # "/app/config", reply 9 zxid 1 err 0xffffff9b (-101); frame 24 = xid 9 type 8 (getChildren) "/app/config";
    # frame 26 = xid 10 type 1 (create) "/app/workers/w-", reply 27 err -101; frame 42 = xid 18 type -11
    # (closeSession), reply 43 zxid 10 err 0
    events = {e["frame"]: e["zookeeper"] for e in run(SAMPLES / "apps" / "zookeeper.pcap").app_events("zookeeper")}
    assert events[4]["resp_session_id"] == "0x1000083a28d0000"  # frame 6: sessionId 0x01000083a28d0000
    assert events[8] == {"op": "exists", "xid": 1, "path": "/app/config", "zxid": 1, "err": "NONODE"}
    assert events[24] == {"op": "getChildren", "xid": 9, "path": "/app/config", "zxid": 5, "err": "OK"}
    assert events[26] == {"op": "create", "xid": 10, "path": "/app/workers/w-", "zxid": 6, "err": "NONODE"}
    assert events[42] == {"op": "closeSession", "xid": 18, "zxid": 10, "err": "OK"}
    assert len(events) == 19


def test_zookeeper_election_and_bad_length():
    # QuorumCnxManager initial message: long protocol version (-65536), long server id, int length, "host:port"
    addr = b"10.0.0.5:3888"
    rec = both_splits(ZooKeeperParser, [(CLIENT, struct.pack(">qqi", -65536, 3, len(addr)) + addr + b"\0" * 8)])
    assert rec.events == [{"op": "election", "protocol_version": -65536, "server_id": 3, "address": "10.0.0.5:3888"}]
    rec = drive(ZooKeeperParser, [(CLIENT, b"\x7f\xff\xff\xff" + b"\0" * 40)])
    assert rec.anomalies == ["zookeeper-bad-length"]


def test_zookeeper_hostile():
    sample = [(CLIENT, zpacket(struct.pack(">iqiq", 0, 0, 1000, 0) + jstr(b"") + b"\x01")
               + zpacket(struct.pack(">ii", 1, 3) + jstr(b"/a") + b"\x00")),
              (SERVER, zpacket(struct.pack(">iiq", 0, 1000, 5) + jstr(b"") + b"\x00")
               + zpacket(struct.pack(">iqi", 1, 9, 0)))]
    hostile(ZooKeeperParser, [sample])


def test_zookeeper_real_captures(shared_pcaps):
    # No zookeeper dissector in tshark 4.0; bytes read against zookeeper.jute (tshark -r F -Y tcp.len>0 -T fields
    # -e tcp.payload): connect_replies frame 4 = ConnectRequest len 0x2d, version 0, zxid 0, timeOut 0x2710,
    # session 0, passwd 16 zero bytes, readOnly 0; frame 6 = ConnectResponse len 0x25, timeOut 0x2710, session
    # 0x1001113200f0001 (then ...0002, ...0003 on the next two connections)
    events = run(SHARED / "zookeeper__zktraffic__connect_replies.pcap").app_events("zookeeper")
    assert [(e["frame"], e["zookeeper"]["timeout"], e["zookeeper"]["resp_timeout"], e["zookeeper"]["resp_session_id"])
            for e in events] == [(4, 10000, 10000, "0x1001113200f0001"), (14, 10000, 10000, "0x1001113200f0002"),
                                 (24, 10000, 10000, "0x1001113200f0003")]
    # create.pcap (client side only): port 60335 frames 5-9 = len 0x1c, xid 1..5, type 3 (exists), path
    # "/load-testing/0".."/4", watch 0; frame 47 = ping (len 8, xid -2, type 11). Port 60336: delete (type 2)
    # xid 1,3,5,7,9 and create (type 1, len 0x241) xid 2,4,...,10 on "/load-testing/0"
    events = run(SHARED / "zookeeper__zktraffic__create.pcap").app_events("zookeeper")
    by_port: dict[int, list] = {}
    for e in events:
        by_port.setdefault(e["src_port"], []).append((e["frame"], e["zookeeper"]["op"], e["zookeeper"].get("xid"),
                                                      e["zookeeper"].get("path")))
    assert by_port[60335] == [(3, "connect", None, None)] + [
        (5 + i, "exists", i + 1, f"/load-testing/{i}") for i in range(5)] + [(47, "ping", None, None)]
    assert [x[1:] for x in by_port[60336][1:]] == [("delete" if x % 2 else "create", x, "/load-testing/0")
                                                    for x in range(1, 11)]
    assert all(e["zookeeper"].get("read_only") for e in events if e["zookeeper"]["op"] == "connect")


# ---------------------------------------------------------------- Spark RPC


def sframe(kind: int, header: bytes, body: bytes = b"", body_in_frame: bool = True) -> bytes:
    """MessageEncoder: int64 frame length (8 + 1 + header [+ body when in frame]), type byte, header, body."""
    size = 8 + 1 + len(header) + (len(body) if body_in_frame else 0)
    return struct.pack(">qb", size, kind) + header + body


def sstr(s: bytes) -> bytes:
    """Encoders.Strings: int32 length + UTF-8."""
    return struct.pack(">i", len(s)) + s


def test_spark_rpc_chunk_stream_and_one_way():
    rpc = sframe(3, struct.pack(">qi", 77, 5), b"hello")  # RpcRequest: request id, body size, body
    rpc2 = sframe(3, struct.pack(">qi", 78, 0))
    chunk = sframe(0, struct.pack(">qi", 9, 2))  # ChunkFetchRequest: stream id, chunk index
    stream = sframe(6, sstr(b"/jars/app.jar"))  # StreamRequest: stream id string
    oneway = sframe(9, struct.pack(">i", 3), b"abc")  # OneWayMessage: body size, body
    data = b"J" * 5000
    steps = [(CLIENT, rpc + rpc2 + chunk + stream + oneway),
             (SERVER, sframe(4, struct.pack(">qi", 77, 2), b"ok")  # RpcResponse
              + sframe(5, struct.pack(">q", 78) + sstr(b"java.lang.IllegalStateException: boom"))  # RpcFailure
              + sframe(1, struct.pack(">qi", 9, 2), b"C" * 100)  # ChunkFetchSuccess: body in the frame
              + sframe(7, sstr(b"/jars/app.jar") + struct.pack(">q", len(data)), data, body_in_frame=False)
              + sframe(3, struct.pack(">qi", 5, 1), b"s"))]  # the server asks too; the client answers
    steps.append((CLIENT, sframe(4, struct.pack(">qi", 5, 0))))
    rec = both_splits(SparkParser, steps)
    assert rec.events == [
        {"type": "OneWayMessage", "body_len": 3},
        {"type": "RpcRequest", "body_len": 5, "request_id": 77, "response_type": "RpcResponse",
         "response_body_len": 2},
        {"type": "RpcRequest", "body_len": 0, "request_id": 78, "response_type": "RpcFailure",
         "error": "java.lang.IllegalStateException: boom"},
        {"type": "ChunkFetchRequest", "stream_id": 9, "chunk_index": 2, "response_type": "ChunkFetchSuccess",
         "response_body_len": 100},
        {"type": "StreamRequest", "stream": "/jars/app.jar", "response_type": "StreamResponse",
         "response_body_len": 5000},
        {"type": "RpcRequest", "body_len": 1, "request_id": 5, "response_type": "RpcResponse",
         "response_body_len": 0},
    ]
    assert rec.anomalies == []


def test_spark_sample_capture():
    # samples/pcaps/apps/spark_constructed.pcap, bytes (tshark -Y tcp.len>0 -e tcp.payload): frame 4 = frame
    # length 0xc1, type 3, request id 0x55caa582aec801b9, body 0xac; frame 5 = length 0x44, type 4, same id, 0x2f
    (event,) = run(SAMPLES / "apps" / "spark_constructed.pcap").app_events("spark")
    assert event["frame"] == 4
    assert event["spark"] == {"type": "RpcRequest", "body_len": 0xAC, "request_id": 0x55CAA582AEC801B9,
                              "response_type": "RpcResponse", "response_body_len": 0x2F}


def test_spark_upload_stream_data_outside_the_frame():
    # UploadStream: request id, meta size, meta, body byte count; the body follows the frame
    up = sframe(10, struct.pack(">qi", 1, 4) + b"meta" + struct.pack(">q", 3000), b"U" * 3000, body_in_frame=False)
    rec = both_splits(SparkParser, [(CLIENT, up + sframe(9, struct.pack(">i", 0))),
                                    (SERVER, sframe(4, struct.pack(">qi", 1, 0)))])
    assert rec.events == [{"type": "OneWayMessage", "body_len": 0},
                          {"type": "UploadStream", "request_id": 1, "meta_len": 4, "body_len": 3000,
                           "response_type": "RpcResponse", "response_body_len": 0}]


def test_spark_bad_frame_stops_and_pipeline(tmp_path):
    rec = drive(SparkParser, [(CLIENT, struct.pack(">qb", 5, 3) + b"x" * 20)])
    assert rec.anomalies == ["spark-bad-frame"]
    steps = [(CLIENT, sframe(3, struct.pack(">qi", 1, 2), b"hi")), (SERVER, sframe(4, struct.pack(">qi", 1, 0)))]
    events = run(g.write(tmp_path / "spark.pcap", conversation(steps, 40002, 7077))).app_events("spark")
    assert [e["spark"]["response_type"] for e in events] == ["RpcResponse"]


def test_spark_hostile():
    sample = [(CLIENT, sframe(3, struct.pack(">qi", 1, 2), b"hi") + sframe(6, sstr(b"s"))),
              (SERVER, sframe(5, struct.pack(">q", 1) + sstr(b"err"))
               + sframe(7, sstr(b"s") + struct.pack(">q", 4), b"dddd", body_in_frame=False))]
    hostile(SparkParser, [sample])
