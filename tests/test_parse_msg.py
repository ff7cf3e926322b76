"""Parsers of the messaging and NoSQL protocols: MongoDB, Cassandra (CQL), RabbitMQ (AMQP 0-9-1), ActiveMQ
(OpenWire, STOMP), VoltDB, Consul (HTTP API, gossip, RPC) and Elasticsearch (transport, HTTP API).

Expected values come from the protocol specifications (bytes built here by hand, each builder naming its
section) or from tshark 4.0's decoding of the labelled captures in ../shared/pcaps (the command is quoted
beside the test). Every parser is also fed hostile bytes (truncations, mutations, random bytes, absurd
lengths) and must not raise; every flow is also fed one byte at a time (split=1) and must say the same.
"""
from __future__ import annotations

import random
import struct
from pathlib import Path

import pcapgen as g
from conftest import SHARED, run
from parsertest import drive

from nvpcap.protocols.activemq import ActiveMqParser
from nvpcap.protocols.base import CLIENT, SERVER, FlowContext, Verdict
from nvpcap.protocols.cassandra import CassandraParser
from nvpcap.protocols.consul import ConsulParser
from nvpcap.protocols.consul import probe as consul_probe
from nvpcap.protocols.elasticsearch import ElasticsearchParser, version_text
from nvpcap.protocols.elasticsearch import probe as es_probe
from nvpcap.protocols.http import HttpApi
from nvpcap.protocols.mongodb import MongoParser, Nested, bson_elements
from nvpcap.protocols.rabbitmq import AmqpParser
from nvpcap.protocols.voltdb import VoltDbParser


def both_ways(parser_cls, steps, **kw):
    """Drive whole and byte by byte; both must give the same events. Returns the whole-message recorder."""
    whole = drive(parser_cls, steps, **kw)
    split = drive(parser_cls, steps, split=1, **kw)
    assert split.events == whole.events
    assert split.threats == whole.threats
    return whole


def hostile(parser_cls, steps, rounds: int = 150, seed: int = 1, **kw) -> None:
    """Every truncation of every step, random mutations and random splits, random bytes: never raises."""
    for i, (side, data) in enumerate(steps):
        for n in range(0, len(data) + 1, max(1, len(data) // 200)):
            drive(parser_cls, steps[:i] + [(side, data[:n])], **kw)
            drive(parser_cls, steps[:i] + [(side, data[n:])] + steps[i + 1 :], **kw)
    rnd = random.Random(seed)
    for _ in range(rounds):
        mutated = []
        for side, data in steps:
            b = bytearray(data)
            for _ in range(rnd.randint(0, 6)):
                if b:
                    b[rnd.randrange(len(b))] = rnd.randrange(256)
            if b and rnd.random() < 0.2:
                cut = rnd.randrange(len(b))
                b = b[:cut] + bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40))) + b[cut:]
            mutated.append((side, bytes(b)))
        drive(parser_cls, mutated, split=rnd.choice((0, 0, 1, 3, 7)), **kw)
    for _ in range(rounds):
        junk = [(rnd.randint(0, 1), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 120))))
                for _ in range(rnd.randint(1, 5))]
        drive(parser_cls, junk, split=rnd.choice((0, 1, 5)), **kw)


def values_of(events) -> str:
    """Every value of every event as one text (to show a secret appears nowhere)."""
    return repr([sorted(e.items()) for e in events])


# =============================================================================================================
# MongoDB (mongodb.com/docs/manual/reference/mongodb-wire-protocol/, BSON 1.1 bsonspec.org/spec.html)
# =============================================================================================================

def bson(*pairs) -> bytes:
    """A BSON document: str -> 0x02 string, bool -> 0x08, int -> 0x10 int32, float -> 0x01 double,
    bytes -> 0x03 embedded document (already encoded), None -> 0x0A null."""
    body = b""
    for key, value in pairs:
        k = key.encode() + b"\0"
        if isinstance(value, bool):
            body += b"\x08" + k + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            body += b"\x10" + k + struct.pack("<i", value)
        elif isinstance(value, float):
            body += b"\x01" + k + struct.pack("<d", value)
        elif isinstance(value, str):
            v = value.encode() + b"\0"
            body += b"\x02" + k + struct.pack("<i", len(v)) + v
        elif isinstance(value, bytes):
            body += b"\x03" + k + value
        elif value is None:
            body += b"\x0a" + k
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def mongo(op: int, request_id: int, response_to: int, body: bytes) -> bytes:
    """Standard message header (int32 messageLength incl. itself, requestID, responseTo, opCode) + body."""
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, op) + body


def op_msg(request_id: int, response_to: int, doc: bytes, flags: int = 0, sequences: bytes = b"") -> bytes:
    return mongo(2013, request_id, response_to, struct.pack("<I", flags) + b"\x00" + doc + sequences)


def doc_sequence(identifier: str, *docs: bytes) -> bytes:
    """OP_MSG section kind 1: int32 size (itself, identifier, documents), cstring identifier, documents."""
    payload = identifier.encode() + b"\0" + b"".join(docs)
    return b"\x01" + struct.pack("<i", 4 + len(payload)) + payload


def test_mongo_op_msg_find_paired_with_its_reply():
    steps = [(CLIENT, op_msg(7, 0, bson(("find", "users"), ("filter", bson(("age", 30))), ("$db", "shop")))),
             (SERVER, op_msg(99, 7, bson(("cursor", bson(("id", 0))), ("ok", 1.0))))]
    rec = both_ways(MongoParser, steps)
    assert rec.events == [{"opcode": "OP_MSG", "request_id": 7, "command": "find", "database": "shop",
                           "collection": "users", "reply_opcode": "OP_MSG", "ok": 1.0, "errmsg": None, "code": None,
                           "code_name": None}]
    assert rec.frames == [1]


def test_mongo_error_reply_and_out_of_order_pairing():
    steps = [(CLIENT, op_msg(1, 0, bson(("insert", "a"), ("$db", "d1")),
                             sequences=doc_sequence("documents", bson(("x", 1)), bson(("x", 2))))),
             (CLIENT, op_msg(2, 0, bson(("hello", 1), ("$db", "admin")))),
             (SERVER, op_msg(50, 2, bson(("isWritablePrimary", True), ("ok", 1.0)))),
             (SERVER, op_msg(51, 1, bson(("ok", 0.0), ("errmsg", "not authorized on d1"), ("code", 13),
                                         ("codeName", "Unauthorized"))))]
    rec = both_ways(MongoParser, steps)
    hello, insert = rec.events
    assert (hello["command"], hello["database"], hello["collection"], hello["ok"]) == ("hello", "admin", None, 1.0)
    assert (insert["command"], insert["collection"], insert["sequences"]) == ("insert", "a", ["documents"])
    assert (insert["ok"], insert["errmsg"], insert["code"], insert["code_name"]) == \
        (0.0, "not authorized on d1", 13, "Unauthorized")
    assert rec.frames == [2, 1]  # each event carries its request's frame


def test_mongo_more_to_come_checksum_and_unanswered():
    crc = b"\xde\xad\xbe\xef"  # flagBits bit 0: a CRC-32C follows the sections (not checked)
    steps = [(CLIENT, op_msg(3, 0, bson(("insert", "logs"), ("$db", "d")), flags=0x2)),  # moreToCome: no reply
             (CLIENT, mongo(2013, 4, 0, struct.pack("<I", 1) + b"\x00" + bson(("ping", 1), ("$db", "admin")) + crc)),
             (CLIENT, mongo(2013, 5, 0, struct.pack("<I", 1) + b"\x00" + bson(("count", "c"), ("$db", "d")) + crc))]
    rec = both_ways(MongoParser, steps)
    assert [(e["command"], e["reply_opcode"]) for e in rec.events] == \
        [("insert", None), ("ping", None), ("count", None)]
    assert [e["collection"] for e in rec.events] == ["logs", None, "c"]


def test_mongo_legacy_op_query_and_op_reply():
    query = struct.pack("<i", 0) + b"admin.$cmd\0" + struct.pack("<ii", 0, -1) + bson(("isMaster", 1))
    reply_doc = bson(("ismaster", True), ("maxWireVersion", 6), ("ok", 1.0))
    reply = struct.pack("<iqii", 8, 0, 0, 1) + reply_doc  # AwaitCapable, cursor 0, from 0, one document
    failed = struct.pack("<iqii", 2, 0, 0, 1) + bson(("$err", "bad query"), ("code", 2))  # QueryFailure
    q2 = struct.pack("<i", 0) + b"db.people\0" + struct.pack("<ii", 0, 1) + bson(("name", "x"))
    steps = [(CLIENT, mongo(2004, 10, 0, query)), (SERVER, mongo(1, 11, 10, reply)),
             (CLIENT, mongo(2004, 12, 0, q2)), (SERVER, mongo(1, 13, 12, failed))]
    rec = both_ways(MongoParser, steps)
    first, second = rec.events
    assert (first["opcode"], first["command"], first["database"], first["reply_opcode"], first["ok"]) == \
        ("OP_QUERY", "isMaster", "admin", "OP_REPLY", 1.0)
    assert (second["command"], second["database"], second["collection"]) == (None, "db", "people")
    assert (second["ok"], second["errmsg"], second["code"]) == (0, "bad query", 2)


def test_mongo_op_command_and_reply():
    # OP_COMMAND (2010): database, commandName, commandArgs, metadata; OP_COMMANDREPLY (2011): commandReply,
    # metadata, outputDocs (field order as mongo-tools' mongoreplay command_op.go / command_reply.go read them)
    command = b"inventory\0count\0" + bson(("count", "items"), ("query", bson())) + bson()
    reply = bson(("ok", 0.0), ("errmsg", "ns does not exist"), ("code", 26)) + bson(("$gleStats", bson()))
    rec = both_ways(MongoParser, [(CLIENT, mongo(2010, 8, 0, command)), (SERVER, mongo(2011, 9, 8, reply))])
    (e,) = rec.events
    assert (e["opcode"], e["database"], e["command"], e["collection"], e["reply_opcode"]) == \
        ("OP_COMMAND", "inventory", "count", "items", "OP_COMMANDREPLY")
    assert (e["ok"], e["errmsg"], e["code"]) == (0.0, "ns does not exist", 26)


def test_mongo_legacy_writes_are_one_way():
    insert = struct.pack("<i", 0) + b"shop.orders\0" + bson(("item", "pen"))
    delete = struct.pack("<i", 0) + b"shop.orders\0" + struct.pack("<i", 0) + bson(("item", "pen"))
    rec = both_ways(MongoParser, [(CLIENT, mongo(2002, 1, 0, insert)), (CLIENT, mongo(2006, 2, 0, delete))])
    assert [(e["opcode"], e["database"], e["collection"]) for e in rec.events] == \
        [("OP_INSERT", "shop", "orders"), ("OP_DELETE", "shop", "orders")]


def test_mongo_op_compressed_names_the_compressor():
    inner = struct.pack("<I", 0) + b"\x00" + bson(("find", "c"), ("$db", "d"))
    zlib_req = struct.pack("<iiB", 2013, len(inner), 2) + b"\x78\x9c" + bytes(20)  # zlib: not decompressed
    noop_req = struct.pack("<iiB", 2013, len(inner), 0) + inner  # noop: the original message as is
    noop_rep = struct.pack("<iiB", 2013, 0, 0) + struct.pack("<I", 0) + b"\x00" + bson(("ok", 1.0))
    steps = [(CLIENT, mongo(2012, 1, 0, zlib_req)), (SERVER, mongo(2012, 2, 1, zlib_req)),
             (CLIENT, mongo(2012, 3, 0, noop_req)), (SERVER, mongo(2012, 4, 3, noop_rep))]
    rec = both_ways(MongoParser, steps)
    z, n = rec.events
    assert (z["opcode"], z["compressor"], z["original_opcode"], z["command"], z["reply_opcode"], z["ok"]) == \
        ("OP_COMPRESSED", "zlib", "OP_MSG", None, "OP_COMPRESSED", None)
    assert (n["compressor"], n["command"], n["collection"], n["ok"]) == ("noop", "find", "c", 1.0)


def test_bson_reader_types_nesting_and_cuts():
    doc = (bson(("s", "txt"), ("i", -5), ("f", 2.5), ("b", False), ("n", None), ("d", bson(("k", 1))), ("t", "end")))
    elements = bson_elements(doc)
    assert [k for k, _ in elements] == ["s", "i", "f", "b", "n", "d", "t"]
    values = dict(elements)
    assert (values["s"], values["i"], values["f"], values["b"], values["n"], values["t"]) == \
        ("txt", -5, 2.5, False, None, "end")
    assert isinstance(values["d"], Nested) and values["d"].size == len(bson(("k", 1)))
    # int64, ObjectId, binary, array and a regex, built per bsonspec: all skipped or read by their sizes
    extra = (b"\x12L\0" + struct.pack("<q", 1 << 40) + b"\x07o\0" + bytes(range(12)) + b"\x05bin\0" +
             struct.pack("<i", 3) + b"\x00abc" + b"\x04arr\0" + bson(("0", 1)) + b"\x0bre\0a.*\0i\0" + b"\x02z\0" +
             struct.pack("<i", 2) + b"Z\0")
    doc2 = struct.pack("<i", len(extra) + 5) + extra + b"\0"
    got = dict(bson_elements(doc2))
    assert got["L"] == 1 << 40 and got["o"] == bytes(range(12)).hex() and got["bin"] is None and got["z"] == "Z"
    for n in range(len(doc)):  # a cut document gives the elements before the cut, never raises
        keys = [k for k, _ in bson_elements(doc[:n])]
        assert keys == ["s", "i", "f", "b", "n", "d", "t"][: len(keys)]
    assert bson_elements(struct.pack("<i", 0x7FFFFFFF) + b"\x02a\0" + struct.pack("<i", 0x7FFFFFF0)) == [("a", None)]


def test_mongo_gap_inside_a_long_message_resyncs_by_length():
    big = op_msg(1, 0, bson(("insert", "c"), ("$db", "d"), ("pad", "x" * 100_000)))
    after = op_msg(2, 0, bson(("ping", 1), ("$db", "admin")))
    from parsertest import Recorder
    rec = Recorder()
    p = MongoParser(rec, FlowContext("tcp", 40000, 27017, False))
    p.feed(CLIENT, big[:20_000], 1, 1)
    p.gap(CLIENT, 50_000, 2, 2)  # lost inside the long message: its length still frames what follows
    p.feed(CLIENT, big[70_000:] + after, 3, 3)
    p.finish()
    assert [e["command"] for e in rec.events] == ["insert", "ping"] and not p.done
    p.gap(CLIENT, 10, 4, 4)  # lost between messages: this side's framing is gone
    assert p.framers[CLIENT].broken


def test_mongo_hostile_bytes_never_raise():
    steps = [(CLIENT, op_msg(1, 0, bson(("find", "u"), ("$db", "d")), sequences=doc_sequence("documents", bson()))),
             (SERVER, op_msg(2, 1, bson(("ok", 1.0), ("errmsg", "e")))),
             (CLIENT, mongo(2004, 3, 0, struct.pack("<i", 0) + b"a.$cmd\0" + struct.pack("<ii", 0, 1) +
                            bson(("$query", bson(("count", "x"))))))]
    hostile(MongoParser, steps)
    rec = drive(MongoParser, [(CLIENT, struct.pack("<iiii", 0x7FFFFFFF, 1, 0, 2013) + b"x" * 100)])
    assert rec.anomalies == ["mongodb-bad-length"]


def test_mongo_real_capture_matches_tshark(shared_pcaps):
    # tshark -r mongodb__ndpi__mongodb_flowsplit-a.pcap -d tcp.port==27017,mongo -d tcp.port==30000,mongo -Y mongo
    #   -T fields -e frame.number -e mongo.request_id -e mongo.opcode -e mongo.full_collection_name
    #   -e mongo.element.name
    # 6  0x4d6e3698 2004 admin.$cmd                 ismaster,client,driver,...
    # 10 0x00000000 2004 admin.$cmd                 isMaster,client,application,...
    # 17 0x00009187 2004 InactiveUserIdentity.$cmd  getnonce
    # (each flow holds the client's first query only: no replies were captured)
    events = run(SHARED / "mongodb__ndpi__mongodb_flowsplit-a.pcap").app_events("mongodb")
    got = sorted((e["frame"], e["mongodb"]["request_id"], e["mongodb"]["opcode"], e["mongodb"]["database"],
                  e["mongodb"]["command"]) for e in events)
    assert got == [(6, 0x4D6E3698, "OP_QUERY", "admin", "ismaster"), (10, 0, "OP_QUERY", "admin", "isMaster"),
                   (17, 0x9187, "OP_QUERY", "InactiveUserIdentity", "getnonce")]
    assert all(e["mongodb"]["reply_opcode"] is None for e in events)


# =============================================================================================================
# Cassandra CQL (cassandra/doc/native_protocol_v4.spec and v5.spec)
# =============================================================================================================

def cql(opcode: int, body: bytes, stream: int = 0, version: int = 4, response: bool = False, flags: int = 0) -> bytes:
    """§2: version (0x80 = response), flags, stream (int16), opcode, int32 body length."""
    return struct.pack(">BBhBI", version | (0x80 if response else 0), flags, stream, opcode, len(body)) + body


def s_(text: str) -> bytes:  # [string]
    return struct.pack(">H", len(text.encode())) + text.encode()


def ls_(text: str) -> bytes:  # [long string]
    return struct.pack(">i", len(text.encode())) + text.encode()


def smap(**kv: str) -> bytes:  # [string map]
    return struct.pack(">H", len(kv)) + b"".join(s_(k) + s_(v) for k, v in kv.items())


def sbytes(b: bytes) -> bytes:  # [short bytes]
    return struct.pack(">H", len(b)) + b


def rows_result(keyspace: str, table: str, columns: list[tuple[str, int]], rows: int) -> bytes:
    """§4.2.5.2 Rows: kind 2, flags Global_tables_spec, columns, keyspace, table, (name, [option]), rows_count."""
    spec = b"".join(s_(name) + struct.pack(">H", kind) for name, kind in columns)
    return struct.pack(">iii", 2, 0x0001, len(columns)) + s_(keyspace) + s_(table) + spec + struct.pack(">i", rows)


def test_cql_query_rows_and_sql_content():
    query = "SELECT id, name FROM shop.users WHERE id = 1"
    steps = [(CLIENT, cql(0x07, ls_(query) + struct.pack(">HB", 0x0001, 0), stream=5)),  # consistency ONE
             (SERVER, cql(0x08, rows_result("shop", "users", [("id", 0x0009), ("name", 0x000D)], 3), stream=5,
                          response=True))]
    rec = both_ways(CassandraParser, steps)
    (e,) = rec.events
    assert (e["opcode"], e["response_opcode"], e["stream"], e["query"], e["consistency"]) == \
        ("QUERY", "RESULT", 5, query, "ONE")
    assert (e["result_kind"], e["keyspace"], e["table"], e["rows"]) == ("Rows", "shop", "users", 3)
    assert rec.joined("sql", CLIENT) == query.encode()


def test_cql_nested_column_types_are_walked_to_the_row_count():
    # map<text, frozen<list<int>>> (0x21 map, 0x0D varchar, 0x20 list, 0x09 int) and a tuple<int, text>
    spec = s_("m") + struct.pack(">HHHH", 0x21, 0x0D, 0x20, 0x09) + s_("t") + struct.pack(">HHHH", 0x31, 2, 9, 0x0D)
    body = struct.pack(">iii", 2, 0x0001, 2) + s_("ks") + s_("t1") + spec + struct.pack(">i", 7)
    rec = both_ways(CassandraParser, [(CLIENT, cql(0x07, ls_("SELECT * FROM ks.t1") + struct.pack(">HB", 4, 0))),
                                      (SERVER, cql(0x08, body, response=True))])
    assert (rec.events[0]["rows"], rec.events[0]["consistency"]) == (7, "QUORUM")


def test_cql_use_prepare_execute_batch_error():
    prepared_id = bytes.fromhex("c0ffee")
    insert = "INSERT INTO t (k, v) VALUES (?, ?)"
    batch = (struct.pack(">BH", 1, 2) + b"\x00" + ls_("UPDATE t SET v = 1 WHERE k = 2") + struct.pack(">H", 0) +
             b"\x01" + sbytes(prepared_id) + struct.pack(">Hi", 1, 1) + b"\x05" + struct.pack(">HB", 6, 0))
    steps = [(CLIENT, cql(0x07, ls_("USE shop") + struct.pack(">HB", 1, 0), stream=1)),
             (SERVER, cql(0x08, struct.pack(">i", 3) + s_("shop"), stream=1, response=True)),
             (CLIENT, cql(0x09, ls_(insert), stream=2)),
             (SERVER, cql(0x08, struct.pack(">i", 4) + sbytes(prepared_id) + bytes(12), stream=2, response=True)),
             (CLIENT, cql(0x0A, sbytes(prepared_id) + struct.pack(">HB", 10, 0), stream=3)),  # LOCAL_ONE
             (SERVER, cql(0x08, struct.pack(">i", 1), stream=3, response=True)),
             (CLIENT, cql(0x0D, batch, stream=4)),  # UNLOGGED, a query string and the prepared statement
             (SERVER, cql(0x08, struct.pack(">i", 1), stream=4, response=True)),
             (CLIENT, cql(0x07, ls_("SELEC oops") + struct.pack(">HB", 1, 0), stream=6)),
             (SERVER, cql(0x00, struct.pack(">i", 0x2000) + s_("line 1:0 no viable alternative"), stream=6,
                          response=True))]
    rec = both_ways(CassandraParser, steps)
    use, prep, execute, bat, err = rec.events
    assert (use["result_kind"], use["keyspace"]) == ("Set_keyspace", "shop")
    assert (prep["opcode"], prep["query"], prep["result_kind"], prep["prepared_id"]) == \
        ("PREPARE", insert, "Prepared", "c0ffee")
    assert (execute["opcode"], execute["query"], execute["consistency"], execute["result_kind"]) == \
        ("EXECUTE", insert, "LOCAL_ONE", "Void")
    assert (bat["batch_type"], bat["batch_count"], bat["statements"], bat["consistency"]) == \
        ("UNLOGGED", 2, ["UPDATE t SET v = 1 WHERE k = 2", insert], "LOCAL_QUORUM")
    assert (err["response_opcode"], err["error_code"], err["error_name"], err["error_message"]) == \
        ("ERROR", 0x2000, "Syntax_error", "line 1:0 no viable alternative")
    assert b"UPDATE t SET v = 1 WHERE k = 2" in rec.joined("sql") and b"SELEC oops" in rec.joined("sql")


def test_cql_auth_user_but_never_the_password_and_compressed_bodies():
    token = b"\x00cassandra\x00Sup3rSecret"  # SASL PLAIN (RFC 4616) as PasswordAuthenticator expects
    steps = [(CLIENT, cql(0x01, smap(CQL_VERSION="3.0.0", COMPRESSION="lz4"), stream=0)),
             (SERVER, cql(0x03, s_("org.apache.cassandra.auth.PasswordAuthenticator"), stream=0, response=True)),
             (CLIENT, cql(0x0F, struct.pack(">i", len(token)) + token, stream=1)),
             (SERVER, cql(0x10, struct.pack(">i", -1), stream=1, response=True)),
             (CLIENT, cql(0x07, b"\x00\x11\x22 compressed", stream=2, flags=0x01)),  # compression flag: body unread
             (SERVER, cql(0x08, b"\x33\x44 compressed", stream=2, response=True, flags=0x01))]
    rec = both_ways(CassandraParser, steps)
    startup, auth, query = rec.events
    assert (startup["cql_version"], startup["compression"], startup["authenticator"]) == \
        ("3.0.0", "lz4", "org.apache.cassandra.auth.PasswordAuthenticator")
    assert (auth["opcode"], auth["user"], auth["response_opcode"]) == ("AUTH_RESPONSE", "cassandra", "AUTH_SUCCESS")
    assert (query["opcode"], query["response_opcode"], query["query"]) == ("QUERY", "RESULT", None)
    assert "Sup3rSecret" not in values_of(rec.events)


def test_cql_response_flags_events_and_v5_segments():
    warnings = struct.pack(">H", 1) + s_("Aggregation query used without partition key")
    traced = cql(0x08, bytes(range(16)) + warnings + struct.pack(">i", 3) + s_("ks2"), stream=1, response=True,
                 flags=0x02 | 0x08)  # §2.2: tracing id, then warnings, then the body
    event = cql(0x0C, s_("SCHEMA_CHANGE") + s_("CREATED") + s_("KEYSPACE") + s_("ks2"), stream=-1, response=True)
    rec = both_ways(CassandraParser, [(CLIENT, cql(0x0B, struct.pack(">H", 1) + s_("SCHEMA_CHANGE"), stream=0)),
                                      (SERVER, cql(0x02, b"", stream=0, response=True)),
                                      (CLIENT, cql(0x07, ls_("USE ks2") + struct.pack(">HB", 1, 0), stream=1)),
                                      (SERVER, traced), (SERVER, event)])
    register, use, push = rec.events
    assert (register["events"], register["response_opcode"]) == (["SCHEMA_CHANGE"], "READY")
    assert use["keyspace"] == "ks2"
    assert (push["stream"], push["opcode"], push["response_opcode"], push["event_type"]) == \
        (-1, None, "EVENT", "SCHEMA_CHANGE")
    # v5: once READY answers a v5 STARTUP, frames travel in CRC-checked segments: reported so far, then done
    rec = drive(CassandraParser, [(CLIENT, cql(0x01, smap(CQL_VERSION="3.4.6"), version=5)),
                                  (SERVER, cql(0x02, b"", version=5, response=True)),
                                  (CLIENT, bytes.fromhex("0b0002fa3c91") + b"segment payload")])
    assert [(e["opcode"], e["response_opcode"]) for e in rec.events] == [("STARTUP", "READY")]
    assert rec.anomalies == []


def test_cql_v2_frames_have_a_one_byte_stream():
    rec = both_ways(CassandraParser, [(CLIENT, struct.pack(">BBbBI", 2, 0, 3, 0x05, 0)),
                                      (SERVER, struct.pack(">BBbBI", 0x82, 0, 3, 0x06, 2) + b"\x00\x00")])
    assert [(e["version"], e["stream"], e["opcode"], e["response_opcode"]) for e in rec.events] == \
        [(2, 3, "OPTIONS", "SUPPORTED")]


def test_cql_hostile_bytes_never_raise():
    steps = [(CLIENT, cql(0x01, smap(CQL_VERSION="3.0.0"))), (SERVER, cql(0x02, b"", response=True)),
             (CLIENT, cql(0x07, ls_("SELECT 1") + struct.pack(">HB", 1, 0), stream=1)),
             (SERVER, cql(0x08, rows_result("k", "t", [("a", 0x20)], 1), stream=1, response=True, flags=0x0A)),
             (CLIENT, cql(0x0D, struct.pack(">BH", 0, 1) + b"\x00" + ls_("X") + struct.pack(">H", 0), stream=2))]
    hostile(CassandraParser, steps)
    rec = drive(CassandraParser, [(CLIENT, struct.pack(">BBhBI", 4, 0, 1, 7, 0x7FFFFFFF) + b"x" * 64)])
    assert rec.anomalies == ["cassandra-bad-frame"]
    deep = struct.pack(">iii", 2, 1, 1) + s_("k") + s_("t") + s_("c") + struct.pack(">H", 0x20) * 5000
    drive(CassandraParser, [(CLIENT, cql(0x07, ls_("q") + b"\0\1\0")), (SERVER, cql(0x08, deep, response=True))])


def test_cql_real_capture(shared_pcaps):
    # tshark -r cassandra__ndpi__cassandra_flowsplit-a.pcap -d tcp.port==9042,cql -Y cql: nothing — tshark 4.0's
    # CQL dissector stops at v4 and shows these v5 frames as "Data". Decoded by hand per native_protocol_v5.spec:
    #   frame 4  05 00 0000 05 00000000          OPTIONS, stream 0
    #   frame 6  85 00 0000 06 00000066 ...      SUPPORTED: PROTOCOL_VERSIONS [3/v3 4/v4 5/v5 6/v6-beta],
    #                                            COMPRESSION [snappy lz4], CQL_VERSION [3.4.6]
    #   frame 8  05 00 0001 01 00000053 ...      STARTUP, stream 1: DRIVER_NAME "DataStax Python Driver",
    #                                            DRIVER_VERSION "3.25.0", CQL_VERSION "3.4.6" (no answer captured)
    #   frame 12 ca552dfa ...                    port 7000: the internode messaging magic
    events = run(SHARED / "cassandra__ndpi__cassandra_flowsplit-a.pcap").app_events("cassandra")
    by_frame = {e["frame"]: e["cassandra"] for e in events}
    assert sorted(by_frame) == [4, 8, 12]
    options, startup, internode = by_frame[4], by_frame[8], by_frame[12]
    assert (options["opcode"], options["response_opcode"], options["version"], options["stream"]) == \
        ("OPTIONS", "SUPPORTED", 5, 0)
    assert options["supported_protocol_versions"] == ["3/v3", "4/v4", "5/v5", "6/v6-beta"]
    assert (options["supported_compression"], options["supported_cql_versions"]) == (["snappy", "lz4"], ["3.4.6"])
    assert (startup["opcode"], startup["stream"], startup["response_opcode"]) == ("STARTUP", 1, None)
    assert (startup["driver_name"], startup["driver_version"], startup["cql_version"]) == \
        ("DataStax Python Driver", "3.25.0", "3.4.6")
    assert internode == {"protocol": "internode"}


# =============================================================================================================
# AMQP 0-9-1 (amqp0-9-1 specification §4.2 and amqp0-9-1.xml)
# =============================================================================================================

def shortstr(s: str) -> bytes:
    return bytes([len(s.encode())]) + s.encode()


def longstr(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">I", len(b)) + b


def table(**entries) -> bytes:
    """A field table: str -> 'S' long string, bool -> 't', int -> 'I', bytes -> 'F' nested table."""
    body = b""
    for k, v in entries.items():
        if isinstance(v, bool):
            body += shortstr(k) + b"t" + bytes([v])
        elif isinstance(v, int):
            body += shortstr(k) + b"I" + struct.pack(">i", v)
        elif isinstance(v, bytes):
            body += shortstr(k) + b"F" + v
        else:
            body += shortstr(k) + b"S" + longstr(v)
    return longstr(body)


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    """§4.2.3: type, channel, size, payload, frame-end 0xCE."""
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(channel: int, cls: int, meth: int, args: bytes = b"") -> bytes:
    return frame(1, channel, struct.pack(">HH", cls, meth) + args)


def content(channel: int, body: bytes, content_type: str = "text/plain") -> bytes:
    """A content header (§4.2.6: class 60, weight 0, body size, flags: bit 15 content-type) and one body frame."""
    header = struct.pack(">HHQH", 60, 0, len(body), 0x8000) + shortstr(content_type)
    return frame(2, channel, header) + frame(3, channel, body)


def amqp_connection(user: bytes = b"\x00guest\x00S3cret-pw", mechanism: str = "PLAIN") -> list[tuple[int, bytes]]:
    start = b"\x00\x09" + table(product="RabbitMQ", version="3.12.0", capabilities=table(publisher_confirms=True)[4:]) \
        + longstr("PLAIN AMQPLAIN") + longstr("en_US")
    start_ok = table(product="pika") + shortstr(mechanism) + longstr(user) + shortstr("en_US")
    return [(CLIENT, b"AMQP\x00\x00\x09\x01"), (SERVER, method(0, 10, 10, start)),
            (CLIENT, method(0, 10, 11, start_ok)),
            (SERVER, method(0, 10, 30, struct.pack(">HIH", 2047, 131072, 60))),
            (CLIENT, method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 60))),
            (CLIENT, method(0, 10, 40, shortstr("/prod") + shortstr("") + b"\x00")),
            (SERVER, method(0, 10, 41, shortstr("")))]


def test_amqp_session_from_spec_bytes():
    steps = amqp_connection() + [
        (CLIENT, method(1, 20, 10, shortstr(""))), (SERVER, method(1, 20, 11, longstr(""))),
        # Exchange.Declare: reserved short, exchange, type, bits passive/durable/auto-delete/internal/no-wait, args
        (CLIENT, method(1, 40, 10, b"\x00\x00" + shortstr("orders") + shortstr("topic") + b"\x02" + table())),
        (SERVER, method(1, 40, 11)),
        (CLIENT, method(1, 50, 10, b"\x00\x00" + shortstr("billing") + b"\x02" + table())),
        (SERVER, method(1, 50, 11, shortstr("billing") + struct.pack(">II", 4, 1))),
        (CLIENT, method(1, 50, 20, b"\x00\x00" + shortstr("billing") + shortstr("orders") + shortstr("order.*") +
                        b"\x00" + table())),
        (SERVER, method(1, 50, 21)),
        (CLIENT, method(1, 60, 20, b"\x00\x00" + shortstr("billing") + shortstr("ctag-1") + b"\x00" + table())),
        (SERVER, method(1, 60, 21, shortstr("ctag-1"))),
        (CLIENT, method(1, 60, 40, b"\x00\x00" + shortstr("orders") + shortstr("order.new") + b"\x00")),
        (CLIENT, content(1, b'{"id": 1}', "application/json")),
        (SERVER, method(1, 60, 60, shortstr("ctag-1") + struct.pack(">Q", 1) + b"\x00" + shortstr("orders") +
                        shortstr("order.new"))),
        (SERVER, content(1, b'{"id": 1}', "application/json")),
        (CLIENT, method(1, 60, 80, struct.pack(">Q", 1) + b"\x00")),  # Basic.Ack: not an event
        (SERVER, frame(8, 0, b"")),  # heartbeat
        (CLIENT, method(0, 10, 50, struct.pack(">H", 200) + shortstr("Goodbye") + struct.pack(">HH", 0, 0))),
        (SERVER, method(0, 10, 51))]
    rec = both_ways(AmqpParser, steps)
    conn, chan, exch, queue, bind, consume, publish, deliver, close = rec.events
    assert (conn["method"], conn["reply"], conn["version"], conn["vhost"], conn["mechanism"], conn["user"]) == \
        ("Connection.Open", "Connection.OpenOk", "0-9-1", "/prod", "PLAIN", "guest")
    assert (conn["server_product"], conn["server_version"], conn["mechanisms"], conn["client_product"]) == \
        ("RabbitMQ", "3.12.0", ["PLAIN", "AMQPLAIN"], "pika")
    assert rec.products == ["RabbitMQ"] and "S3cret-pw" not in values_of(rec.events)
    assert (chan["method"], chan["reply"], chan["channel"]) == ("Channel.Open", "Channel.OpenOk", 1)
    assert (exch["method"], exch["exchange"], exch["exchange_type"], exch["reply"]) == \
        ("Exchange.Declare", "orders", "topic", "Exchange.DeclareOk")
    assert (queue["queue"], queue["reply"], queue["message_count"], queue["consumer_count"]) == \
        ("billing", "Queue.DeclareOk", 4, 1)
    assert (bind["method"], bind["queue"], bind["exchange"], bind["routing_key"], bind["reply"]) == \
        ("Queue.Bind", "billing", "orders", "order.*", "Queue.BindOk")
    assert (consume["method"], consume["consumer_tag"], consume["reply"]) == \
        ("Basic.Consume", "ctag-1", "Basic.ConsumeOk")
    for e, name in ((publish, "Basic.Publish"), (deliver, "Basic.Deliver")):
        assert (e["method"], e["exchange"], e["routing_key"], e["body_size"], e["content_type"]) == \
            (name, "orders", "order.new", 9, "application/json")
    assert (close["method"], close["reply_code"], close["reply_text"], close["reply"]) == \
        ("Connection.Close", 200, "Goodbye", "Connection.CloseOk")
    assert rec.frames[0] == 1  # the connection event starts with the protocol header


def test_amqp_amqplain_no_wait_refusal_and_bad_frame_end():
    amqplain = table(LOGIN="svc", PASSWORD="hunter2")[4:]  # RabbitMQ's AMQPLAIN: a table without its length
    steps = amqp_connection(amqplain, "AMQPLAIN")[:3] + [
        (SERVER, method(0, 10, 50, struct.pack(">H", 403) + shortstr("ACCESS_REFUSED") + struct.pack(">HH", 10, 11)))]
    rec = both_ways(AmqpParser, steps)
    (conn,) = rec.events
    assert (conn["user"], conn["mechanism"], conn["reply"], conn["reply_code"], conn["reply_text"]) == \
        ("svc", "AMQPLAIN", "Connection.Close", 403, "ACCESS_REFUSED")
    assert "hunter2" not in values_of(rec.events)
    # a refused request: the server closes the channel instead of answering (404 NOT_FOUND for a passive declare)
    rec = both_ways(AmqpParser, [(CLIENT, method(3, 50, 10, b"\x00\x00" + shortstr("missing") + b"\x01" + table())),
                                 (SERVER, method(3, 20, 40, struct.pack(">H", 404) + shortstr("NOT_FOUND - no queue") +
                                                 struct.pack(">HH", 50, 10))),
                                 (CLIENT, method(3, 20, 41))])
    assert [(e["method"], e["queue"], e["reply"], e["reply_code"]) for e in rec.events] == \
        [("Queue.Declare", "missing", "Channel.Close", 404), ("Channel.Close", None, "Channel.CloseOk", 404)]
    # no-wait: no -Ok will come, the declare is reported at once; a broken frame end stops that side
    rec = both_ways(AmqpParser, [(CLIENT, method(2, 50, 10, b"\x00\x00" + shortstr("q") + b"\x10" + table())),
                                 (CLIENT, method(2, 50, 10, b"\x00\x00" + shortstr("q2"))[:-1] + b"\x00")])
    assert [(e["queue"], e["reply"]) for e in rec.events] == [("q", None)]
    assert rec.anomalies == ["amqp-bad-frame-end"]


def test_amqp_10_and_version_refusal():
    rec = both_ways(AmqpParser, [(CLIENT, b"AMQP\x03\x01\x00\x00"), (SERVER, b"AMQP\x03\x01\x00\x00")])
    assert rec.events == [{"method": None, "version": "1.0.0", "layer": "sasl"}]
    # an unsupported version (0-10): the server answers with the header of the one it speaks, and closes
    rec = both_ways(AmqpParser, [(CLIENT, b"AMQP\x01\x01\x00\x0a"), (SERVER, b"AMQP\x00\x00\x09\x01")])
    assert [(e["method"], e["version"], e["server_version_offered"]) for e in rec.events] == [(None, "0-10", "0-9-1")]
    rec = both_ways(AmqpParser, [(CLIENT, b"AMQP\x01\x01\x08\x00"), (SERVER, method(0, 10, 10, b"\x08\x00"))])
    assert [(e["method"], e["version"]) for e in rec.events] == [("Connection.Start", "0-8")]


def test_amqp_hostile_bytes_never_raise():
    steps = amqp_connection() + [(CLIENT, method(1, 60, 40, b"\x00\x00" + shortstr("e") + shortstr("k") + b"\x00")),
                                 (CLIENT, content(1, b"x" * 50))]
    hostile(AmqpParser, steps, rounds=100)
    drive(AmqpParser, [(CLIENT, b"AMQP\x00\x00\x09\x01" + struct.pack(">BHI", 1, 0, 0xFFFFFFFF) + b"x" * 64)])


def test_amqp_real_capture_matches_tshark(shared_pcaps):
    # tshark -r rabbitmq__ndpi__amqp_flowsplit-a.pcap -Y "amqp.method.method==40 or amqp.method.method==60"
    #   -T fields -e frame.number -e amqp.method.method -e amqp.method.arguments.routing_key -e amqp.header.body-size
    # 18 Basic.Publish (60/40) to exchange celeryev from 44205, 8 Basic.Deliver (60/60) from 5672 (exchanges
    # celeryev/default); tshark -Y "amqp.type==2 and tcp.srcport==44205" -e amqp.header.body-size
    #   -e amqp.method.properties.content_type: the publishes' body sizes below, all application/json.
    # Both flows start mid-stream (no protocol header); Basic.Ack (60/80) frames are not events.
    events = run(SHARED / "rabbitmq__ndpi__amqp_flowsplit-a.pcap").app_events("rabbitmq")
    publish = [e["rabbitmq"] for e in events if e["rabbitmq"]["method"] == "Basic.Publish"]
    deliver = [e for e in events if e["rabbitmq"]["method"] == "Basic.Deliver"]
    assert len(events) == 26 and len(publish) == 18 and len(deliver) == 8
    hb, got, start, done = "worker.heartbeat", "task.received", "task.started", "task.succeeded"
    assert [p["routing_key"] for p in publish] == [hb, hb, got, start, done, got, start, done, hb, got, start, got,
                                                   done, start, got, start, done, done]
    assert [p["body_size"] for p in publish] == [295, 295, 321, 197, 251, 321, 197, 252, 295, 321, 197, 321, 252,
                                                 197, 320, 197, 250, 251]
    assert {p["exchange"] for p in publish} == {"celeryev"}
    assert {p["content_type"] for p in publish} == {"application/json"}
    assert [(e["frame"], e["rabbitmq"]["exchange"], e["rabbitmq"]["routing_key"], e["rabbitmq"]["body_size"])
            for e in deliver] == [(7, "celeryev", "worker.heartbeat", 295), (15, "celeryev", "worker.heartbeat", 295),
                                  (17, "default", "tasks.#", 238), (39, "default", "tasks.#", 238),
                                  (66, "celeryev", "worker.heartbeat", 295), (67, "default", "tasks.#", 238),
                                  (75, "default", "tasks.#", 238), (104, "default", "tasks.#", 238)]


# =============================================================================================================
# ActiveMQ: OpenWire (OpenWire Version 2 Specification, loose encoding) and STOMP 1.2
# =============================================================================================================

def ow_string(s: str | None) -> bytes:  # loose: notnull boolean + UTF (u16 length)
    return b"\x00" if s is None else b"\x01" + struct.pack(">H", len(s.encode())) + s.encode()


def ow_command(kind: int, body: bytes) -> bytes:  # int32 size (after itself), data structure type, fields
    return struct.pack(">IB", 1 + len(body), kind) + body


def wireformat(tight: bool, version: int = 12, **more: bool) -> bytes:
    """WIREFORMAT_INFO: magic, version, marshalled properties (a primitive map: count, UTF key, type, value)."""
    props = {"TightEncodingEnabled": tight, "CacheEnabled": False, "SizePrefixDisabled": False, **more}
    pmap = struct.pack(">i", len(props)) + b"".join(struct.pack(">H", len(k)) + k.encode() + b"\x01" + bytes([v])
                                                     for k, v in props.items())
    return ow_command(1, b"ActiveMQ" + struct.pack(">i", version) + b"\x01" + struct.pack(">i", len(pmap)) + pmap)


def test_openwire_loose_commands_from_spec_bytes():
    conn_id = b"\x01\x78" + ow_string("ID:host-1:1")  # ConnectionId (120): value
    consumer_id = b"\x01\x7a" + ow_string("ID:host-1:1") + struct.pack(">qq", 1, 1)  # ConsumerId (122)
    producer_id = b"\x01\x7b" + ow_string("ID:host-1:1") + struct.pack(">qq", 1, 1)  # ProducerId (123)
    queue = b"\x01\x64" + ow_string("orders")  # ActiveMQQueue (100): physicalName
    steps = [(CLIENT, wireformat(False)), (SERVER, wireformat(False, 10)),
             (CLIENT, ow_command(3, struct.pack(">iB", 1, 1) + conn_id + ow_string("client-7") + ow_string("pw-Secret")
                                 + ow_string("alice") + b"\x00" * 4)),
             (SERVER, ow_command(30, struct.pack(">iBi", 0, 0, 1))),
             (CLIENT, ow_command(6, struct.pack(">iB", 2, 1) + producer_id + queue + b"\x00" * 8)),
             (SERVER, ow_command(31, struct.pack(">iBi", 0, 0, 2) + b"\x01" + ow_string("java.lang.SecurityException") +
                                 ow_string("User alice is not authorized to write to: queue://orders"))),
             (CLIENT, ow_command(5, struct.pack(">iB", 3, 0) + consumer_id + b"\x00" + queue + b"\x00" * 8)),
             (CLIENT, ow_command(10, struct.pack(">iB", 4, 0)))]  # KeepAliveInfo: not an event
    rec = both_ways(ActiveMqParser, steps)
    wf, conn, producer, consumer = rec.events
    assert (wf["command"], wf["version"], wf["tight_encoding"], wf["client_version"], wf["server_version"]) == \
        ("WireFormatInfo", 10, False, 12, 10)
    assert (conn["command"], conn["user"], conn["client_id"], conn["response"]) == \
        ("ConnectionInfo", "alice", "client-7", "Response")
    assert "pw-Secret" not in values_of(rec.events)
    assert (producer["command"], producer["destination"], producer["destination_type"], producer["response"]) == \
        ("ProducerInfo", "orders", "queue", "ExceptionResponse")
    assert (producer["error"], producer["error_message"]) == \
        ("java.lang.SecurityException", "User alice is not authorized to write to: queue://orders")
    assert (consumer["command"], consumer["destination"], consumer["response"]) == ("ConsumerInfo", "orders", None)


def test_openwire_tight_encoding_names_only_and_size_prefix_disabled():
    steps = [(CLIENT, wireformat(True)), (SERVER, wireformat(True)),
             (CLIENT, ow_command(5, bytes.fromhex("0d0a") + b"tight-encoded fields"))]
    rec = both_ways(ActiveMqParser, steps)
    assert [(e["command"], e["destination"]) for e in rec.events] == [("WireFormatInfo", None), ("ConsumerInfo", None)]
    assert rec.events[0]["tight_encoding"] is True
    rec = drive(ActiveMqParser, [(CLIENT, wireformat(False, SizePrefixDisabled=True)),
                                 (SERVER, wireformat(False, SizePrefixDisabled=True)), (CLIENT, b"\x03unframed")])
    assert [e["command"] for e in rec.events] == ["WireFormatInfo"]


def test_stomp_frames_from_spec_bytes():
    steps = [(CLIENT, b"CONNECT\naccept-version:1.2\nhost:broker\nlogin:bob\npasscode:St0mpPass\n\n\0"),
             (SERVER, b"CONNECTED\r\nversion:1.2\r\nserver:ActiveMQ/5.18.3\r\nsession:s1\r\n\r\n\0\n\n"),
             (CLIENT, b"SUBSCRIBE\nid:0\ndestination:/queue/a\\cb\nack:client\nreceipt:r1\n\n\0"),
             (SERVER, b"RECEIPT\nreceipt-id:r1\n\n\0"),
             (CLIENT, b"\nSEND\ndestination:/queue/a\ncontent-type:text/plain\ncontent-length:7\n\nab\0cdef\0"),
             (SERVER, b"MESSAGE\ndestination:/queue/a\nsubscription:0\nmessage-id:m-1\n\nhello\0"),
             (CLIENT, b"SEND\ndestination:/queue/b\nreceipt:r2\n\nx\0"),
             (SERVER, b"ERROR\nreceipt-id:r2\nmessage:Not authorized\n\n\0"),
             (CLIENT, b"DISCONNECT\n\n\0")]
    rec = both_ways(ActiveMqParser, steps)
    connect, sub, send, message, send2, disconnect = rec.events
    assert (connect["command"], connect["login"], connect["host"], connect["response"], connect["version"],
            connect["server"]) == ("CONNECT", "bob", "broker", "CONNECTED", "1.2", "ActiveMQ/5.18.3")
    assert "St0mpPass" not in values_of(rec.events)
    assert (sub["destination"], sub["response"], sub["id"]) == ("/queue/a:b", "RECEIPT", "0")  # \c is ':'
    assert (send["command"], send["body_len"], send["content_type"]) == ("SEND", 7, "text/plain")
    assert (message["command"], message["subscription"], message["message_id"], message["body_len"]) == \
        ("MESSAGE", "0", "m-1", 5)
    assert (send2["response"], send2["error_message"]) == ("ERROR", "Not authorized")
    assert disconnect["command"] == "DISCONNECT"


def test_activemq_hostile_bytes_never_raise():
    ow = [(CLIENT, wireformat(False)), (SERVER, wireformat(False)),
          (CLIENT, ow_command(5, struct.pack(">iB", 3, 1) + b"\x01\x7a" + ow_string("x") + bytes(16) + b"\x00\x01\x64" +
                              ow_string("q"))),
          (SERVER, ow_command(31, struct.pack(">iBi", 0, 0, 3) + b"\x01" + ow_string("E") + ow_string("m")))]
    hostile(ActiveMqParser, ow, rounds=100)
    stomp = [(CLIENT, b"CONNECT\nlogin:a\n\n\0"), (SERVER, b"CONNECTED\nversion:1.2\n\n\0"),
             (CLIENT, b"SEND\ndestination:/q\ncontent-length:3\n\nabc\0")]
    hostile(ActiveMqParser, stomp, rounds=100, seed=2)
    rec = drive(ActiveMqParser, [(CLIENT, b"SEND\n" + b"h:" * 20000)])
    assert rec.anomalies == ["stomp-long-header"]
    rec = drive(ActiveMqParser, [(CLIENT, wireformat(False) + struct.pack(">IB", 0x7FFFFFFF, 28) + bytes(40))])
    assert rec.anomalies == ["openwire-bad-size"] and [e["command"] for e in rec.events] == ["WireFormatInfo"]


def test_openwire_real_capture_matches_tshark(shared_pcaps):
    # tshark -r activemq__ndpi__openwire.pcap -Y openwire -T fields -e frame.number -e tcp.srcport
    #   -e openwire.command -e openwire.command.id -e openwire.response.correlationid -e openwire.destination.name
    #   -e openwire.connectioninfo.username
    # 4 c WireFormatInfo(1) / 6 s WireFormatInfo / 8 c ConnectionInfo(3) id 1 user admin / 10 s BrokerInfo(2) /
    # 12 s Response(30) corr 1 / 14 c ConsumerInfo(5) id 2 ActiveMQ.Advisory.TempQueue,ActiveMQ.Advisory.TempTopic /
    # 16 s Response corr 2 / 18 c SessionInfo(4) id 3 / 20 c ConsumerInfo id 4 ActiveMQ.Advisory.MasterBroker /
    # 22 s Response corr 4 / 24 s MessageDispatch(21) / 26 c MessageAck(22) id 5 / 28,30,32,34 c RemoveInfo(12)
    # ids 6-9 / 36 s Response corr 9 / 38 c ShutdownInfo(11) id 10.  WireFormatInfo versions: client 10, server 12.
    events = run(SHARED / "activemq__ndpi__openwire.pcap").app_events("activemq")
    got = sorted((e["frame"], e["activemq"]["command"], e["activemq"].get("command_id"), e["activemq"]["response"],
                  e["activemq"]["destination"]) for e in events)
    advisory = "ActiveMQ.Advisory.MasterBroker"
    assert got == [(4, "WireFormatInfo", None, None, None), (8, "ConnectionInfo", 1, "Response", None),
                   (10, "BrokerInfo", 0, None, None),
                   (14, "ConsumerInfo", 2, "Response", "ActiveMQ.Advisory.TempQueue,ActiveMQ.Advisory.TempTopic"),
                   (18, "SessionInfo", 3, None, None), (20, "ConsumerInfo", 4, "Response", advisory),
                   (24, "MessageDispatch", 0, None, advisory), (26, "MessageAck", 5, None, advisory),
                   (28, "RemoveInfo", 6, None, None), (30, "RemoveInfo", 7, None, None),
                   (32, "RemoveInfo", 8, None, None), (34, "RemoveInfo", 9, "Response", None),
                   (38, "ShutdownInfo", 10, None, None)]
    conn = next(e["activemq"] for e in events if e["activemq"]["command"] == "ConnectionInfo")
    assert conn["user"] == "admin"  # (its password, also "admin" in this capture, is never read)
    wf = next(e["activemq"] for e in events if e["activemq"]["command"] == "WireFormatInfo")
    assert (wf["client_version"], wf["server_version"], wf["version"], wf["tight_encoding"]) == (10, 12, 10, False)


# =============================================================================================================
# VoltDB (no capture available: bytes built from the "Client Wire Protocol" document and the clients' code)
# =============================================================================================================

def vstr(s: str | None) -> bytes:  # int32 length + UTF-8, -1 = null
    return struct.pack(">i", -1) if s is None else struct.pack(">i", len(s.encode())) + s.encode()


def volt(version: int, body: bytes) -> bytes:  # int32 length (version byte included) + version + body
    return struct.pack(">iB", 1 + len(body), version) + body


PASSWORD_HASH = bytes.fromhex("5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8")  # sha256


def volt_login(scheme: int = 1) -> bytes:
    return volt(1, bytes([scheme]) + vstr("database") + vstr("alice") + PASSWORD_HASH)


def volt_login_ok() -> bytes:  # result 0, host id, connection id, cluster start, leader IPv4, build string
    return volt(0, struct.pack(">biqq", 0, 3, 77, 1_700_000_000_000) + bytes([10, 0, 0, 5]) +
                vstr("voltdb-11.4.0-0-gd1e4a7f-community"))


def volt_call(handle: int, proc: str, *params: bytes, version: int = 0) -> bytes:
    head = b"\x00" if version == 1 else b""  # v1: batch timeout type 0 (none)
    ext = b"\x01" + b"\x01\x04" + struct.pack(">i", 5000) if version == 2 else b""  # one extension
    return volt(version, head + vstr(proc) + struct.pack(">q", handle) + ext + struct.pack(">h", len(params)) +
                b"".join(params))


def volt_reply(handle: int, status: int, status_string: str | None = None, results: int = 1) -> bytes:
    present = 0x20 if status_string is not None else 0
    body = struct.pack(">qBb", handle, present, status) + (vstr(status_string) if status_string is not None else b"")
    return volt(0, body + struct.pack(">bih", -128, 3, results))


def test_voltdb_login_and_invocations():
    sql = "SELECT * FROM votes WHERE phone = 5551234"
    steps = [(CLIENT, volt_login()), (SERVER, volt_login_ok()),
             (CLIENT, volt_call(1, "@AdHoc", b"\x09" + vstr(sql))),
             (CLIENT, volt_call(2, "Vote", b"\x06" + struct.pack(">q", 5551234), b"\x05" + struct.pack(">i", 2),
                                version=2)),
             (CLIENT, volt_call(3, "@SystemInformation", b"\x09" + vstr("OVERVIEW"), version=1)),
             (SERVER, volt_reply(2, -2, "VOLTDB ERROR: constraint violation")),
             (SERVER, volt_reply(1, 1)), (SERVER, volt_reply(3, 1, results=2))]
    rec = both_ways(VoltDbParser, steps)
    login, vote, adhoc, sysinfo = rec.events
    assert (login["message_type"], login["user"], login["hash_scheme"], login["status"], login["host_id"],
            login["connection_id"], login["leader"], login["build"]) == \
        ("login", "alice", "SHA-256", "SUCCESS", 3, 77, "10.0.0.5", "voltdb-11.4.0-0-gd1e4a7f-community")
    assert PASSWORD_HASH.hex() not in values_of(rec.events) and "5e88" not in values_of(rec.events)
    assert (vote["procedure"], vote["client_handle"], vote["status"], vote["status_string"]) == \
        ("Vote", 2, "GRACEFUL_FAILURE", "VOLTDB ERROR: constraint violation")
    assert (adhoc["procedure"], adhoc["query"], adhoc["status"], adhoc["results"]) == ("@AdHoc", sql, "SUCCESS", 1)
    assert (sysinfo["procedure"], sysinfo["results"]) == ("@SystemInformation", 2)
    assert rec.joined("sql", CLIENT) == sql.encode()
    assert rec.frames == [1, 4, 3, 5]


def test_voltdb_login_refused_and_unknown_handles():
    refused = volt(0, struct.pack(">b", -1))  # AUTHENTICATION_FAILURE
    rec = both_ways(VoltDbParser, [(CLIENT, volt_login(0)), (SERVER, refused)])
    assert [(e["user"], e["hash_scheme"], e["status"], e["auth_result"]) for e in rec.events] == \
        [("alice", "SHA-1", "AUTHENTICATION_FAILURE", -1)]
    rec = both_ways(VoltDbParser, [(CLIENT, volt_login()), (SERVER, volt_login_ok()),
                                   (SERVER, volt_reply((1 << 63) - 2, 1)), (SERVER, volt_reply(99, 1))])
    assert [(e["message_type"], e.get("notification"), e["client_handle"]) for e in rec.events[1:]] == \
        [("notification", "topology", (1 << 63) - 2), ("response", None, 99)]


def test_voltdb_hostile_bytes_never_raise():
    steps = [(CLIENT, volt_login()), (SERVER, volt_login_ok()), (CLIENT, volt_call(1, "@AdHoc", b"\x09" + vstr("x"))),
             (SERVER, volt_reply(1, -3, "boom"))]
    hostile(VoltDbParser, steps)
    rec = drive(VoltDbParser, [(CLIENT, struct.pack(">I", 0xFFFFFFFF) + b"x" * 40)])
    assert rec.anomalies == ["voltdb-bad-length"]


# =============================================================================================================
# Consul: HTTP API (agent/http.go), memberlist gossip (net.go), server RPC (agent/pool/conn.go)
# =============================================================================================================

def fixstr(s: str) -> bytes:  # msgpack fixstr
    return bytes([0xA0 | len(s)]) + s.encode()


def fixmap(*items: bytes) -> bytes:  # msgpack fixmap of alternating keys and values (already encoded)
    return bytes([0x80 | len(items) // 2]) + b"".join(items)


PING = b"\x00" + fixmap(fixstr("SeqNo"), b"\x07", fixstr("Node"), fixstr("n2"))
ACK = b"\x02" + fixmap(fixstr("SeqNo"), b"\x07", fixstr("Payload"), b"\xc4\x00")
ALIVE = b"\x04" + fixmap(fixstr("Incarnation"), b"\x01", fixstr("Node"), fixstr("n3"))
SUSPECT = b"\x03" + fixmap(fixstr("Incarnation"), b"\x02", fixstr("Node"), fixstr("n4"))
SERF_JOIN = b"\x08\x01" + fixmap(fixstr("LTime"), b"\x05", fixstr("Node"), fixstr("n5"))


def compound(*msgs: bytes) -> bytes:  # type 7, count, u16 lengths, messages
    return bytes([7, len(msgs)]) + b"".join(struct.pack(">H", len(m)) for m in msgs) + b"".join(msgs)


def test_consul_http_api_from_rfc_bytes():
    body = b'[{"Key":"app/config","Value":"dGVzdA=="}]'
    steps = [(CLIENT, (b"GET /v1/kv/app/config?index=41&token=S3cr3t-T0ken&wait=5s HTTP/1.1\r\nHost: consul:8500\r\n"
                       b"User-Agent: Go-http-client/1.1\r\nX-Consul-Token: 0b5c-secret\r\n\r\n"
                       b"PUT /v1/kv/app/flag HTTP/1.1\r\nHost: consul:8500\r\nContent-Length: 4\r\n\r\ntrue")),
             (SERVER, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Consul-Index: 42\r\n"
                      b"X-Consul-Knownleader: true\r\nX-Consul-Lastcontact: 0\r\nContent-Length: " +
                      str(len(body)).encode() + b"\r\n\r\n" + body +
                      b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\ntrue\r\n0\r\n\r\n")]
    rec = both_ways(ConsulParser, steps, server_port=8500)
    get, put = rec.events
    assert (get["method"], get["uri"], get["host"], get["user_agent"], get["status"], get["status_msg"]) == \
        ("GET", "/v1/kv/app/config?index=41&token=REDACTED&wait=5s", "consul:8500", "Go-http-client/1.1", 200, "OK")
    assert (get["consul_index"], get["consul_known_leader"], get["consul_last_contact"], get["token"]) == \
        (42, True, 0, True)
    assert (get["response_body_len"], get["request_body_len"], get["response_content_type"]) == \
        (len(body), 0, "application/json")
    assert (put["method"], put["request_body_len"], put["response_body_len"], put["status"]) == ("PUT", 4, 4, 200)
    text = values_of(rec.events)
    assert "S3cr3t-T0ken" not in text and "0b5c-secret" not in text
    assert rec.joined("body", SERVER) == body + b"true"  # de-chunked
    assert b"token=S3cr3t-T0ken" in rec.joined("url", CLIENT)  # the rules engine sees the real target
    assert rec.frames == [1, 1]


def test_http_api_interim_head_and_unanswered():
    steps = [(CLIENT, b"HEAD /v1/status/leader HTTP/1.1\r\nHost: c\r\n\r\n"),
             (SERVER, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n"),
             (CLIENT, b"GET /v1/agent/self HTTP/1.1\r\nHost: c\r\n\r\n")]
    rec = both_ways(ConsulParser, steps, server_port=8500)
    assert [(e["method"], e["status"], e["response_body_len"]) for e in rec.events] == \
        [("HEAD", 200, 0), ("GET", None, None)]
    rec = drive(ConsulParser, [(CLIENT, b"\x16\x03\x01 not http\r\n\r\n")], server_port=8500)
    assert rec.anomalies == ["http-api-bad-request"] and rec.events == []


def test_http_api_body_length_threats():
    # NeuVector dpi_http.c (reference section 2): 2013 HTTP.Negative.Body.Length (Content-Length:-... or a chunk
    # size with bit 31 set), 2014 HTTP.Request.Smuggling (two Content-Length headers with different values)
    rec = both_ways(ConsulParser, [(CLIENT, b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: -1\r\n\r\nxyz")],
                    server_port=8500)
    assert rec.threats == [(2013, CLIENT)]
    smuggle = b"POST /i/_doc HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc"
    rec = both_ways(ElasticsearchParser, [(CLIENT, smuggle)], server_port=9200)
    assert rec.threats == [(2014, CLIENT)]
    rec = both_ways(ConsulParser, [(CLIENT, b"GET / HTTP/1.1\r\n\r\n"),
                                   (SERVER, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n80000000\r\nab")],
                    server_port=8500)
    assert rec.threats == [(2013, SERVER)] and rec.events[0]["response_body_len"] == 2
    rec = both_ways(ConsulParser, [(CLIENT, b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n")],
                    server_port=8500)
    assert rec.threats == []  # the same value twice is not smuggling


def test_consul_gossip_counts_per_message_type():
    label = b"\xf4\x04dc-1" + PING
    encrypted = b"\x01" + bytes(range(12)) + bytes(range(100, 160))  # version 1, nonce, ciphertext + tag
    datagrams = [(CLIENT, PING), (SERVER, ACK), (CLIENT, compound(ALIVE, SUSPECT, SERF_JOIN)), (CLIENT, PING),
                 (SERVER, label), (CLIENT, encrypted)]
    rec = drive(ConsulParser, datagrams, transport="udp", server_port=8301)
    counts = {(e["message_type"], e["serf_type"]): e["count"] for e in rec.events}
    assert counts == {("ping", None): 3, ("ack", None): 1, ("compound", None): 1, ("alive", None): 1,
                      ("suspect", None): 1, ("user", "join"): 1, ("has-label", None): 1, ("encrypted", None): 1}
    assert {e["label"] for e in rec.events} == {"dc-1"}
    assert dict(zip([e["message_type"] for e in rec.events], rec.frames))["ack"] == 2  # first occurrence


def test_consul_gossip_tcp_stream_and_rpc():
    push_pull = b"\x06" + fixmap(fixstr("Nodes"), b"\x01", fixstr("UserStateLen"), b"\x00", fixstr("Join"), b"\xc3")
    rec = both_ways(ConsulParser, [(CLIENT, push_pull + b"states..."), (SERVER, push_pull), (CLIENT, b"more")],
                    server_port=8301)
    assert [(e["message_type"], e["count"]) for e in rec.events] == [("push-pull", 2)]
    rpc = b"\x00" + fixmap(fixstr("ServiceMethod"), fixstr("Status.Ping"), fixstr("Seq"), b"\x00") + b"\xc0"
    rec = both_ways(ConsulParser, [(CLIENT, rpc)], server_port=8300)
    assert rec.events == [{"rpc_type": "consul", "service_method": "Status.Ping"}]
    rec = both_ways(ConsulParser, [(CLIENT, b"\x04" + struct.pack(">BBHII", 0, 1, 1, 1, 262144))], server_port=8300)
    assert rec.events == [{"rpc_type": "multiplex-v2", "service_method": None}]


def test_consul_probe_claims_http_on_8500_only():
    req = b"GET /v1/catalog/services HTTP/1.1\r\nHost: x\r\n\r\n"
    ctx = FlowContext("tcp", 40000, 8500, False)
    assert consul_probe(req, b"", ctx) == Verdict.YES
    assert consul_probe(req[:10], b"", ctx) == Verdict.MAYBE
    assert consul_probe(b"\x16\x03\x01\x02\x00", b"", ctx) == Verdict.NO
    assert consul_probe(req, b"", FlowContext("tcp", 40000, 8080, False)) == Verdict.NO
    assert es_probe(req, b"", FlowContext("tcp", 40000, 9200, False)) == Verdict.YES
    assert es_probe(req, b"", FlowContext("tcp", 40000, 9300, False)) == Verdict.NO


def conversation(path: Path, sport: int, client: bytes, server: bytes) -> Path:
    """A TCP connection: handshake, the client's bytes, the server's bytes, FINs."""
    c, s = "10.1.0.1", "10.1.0.2"
    pkts = [(0.0, g.tcp(c, 41000, s, sport, "S", seq=100)), (0.001, g.tcp(s, sport, c, 41000, "SA", seq=500, ack=101)),
            (0.002, g.tcp(c, 41000, s, sport, "A", seq=101, ack=501)),
            (0.003, g.tcp(c, 41000, s, sport, "PA", seq=101, ack=501, data=client)),
            (0.004, g.tcp(s, sport, c, 41000, "PA", seq=501, ack=101 + len(client), data=server)),
            (0.005, g.tcp(c, 41000, s, sport, "FA", seq=101 + len(client), ack=501 + len(server))),
            (0.006, g.tcp(s, sport, c, 41000, "FA", seq=501 + len(server), ack=102 + len(client))),
            (0.007, g.tcp(c, 41000, s, sport, "A", seq=102 + len(client), ack=502 + len(server)))]
    return g.write(path, pkts)


def test_http_apis_are_routed_to_consul_and_elasticsearch(tmp_path):
    req = b"GET /_cluster/health HTTP/1.1\r\nHost: es\r\nAuthorization: Basic ZWxhc3RpYzpjaGFuZ2VtZQ==\r\n" \
          b"X-Opaque-Id: job-17\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nX-elastic-product: Elasticsearch\r\ncontent-type: application/json\r\n" \
           b"content-length: 2\r\n\r\n{}"
    res = run(conversation(tmp_path / "es.pcap", 9200, req, resp))
    (e,) = res.app_events("elasticsearch")
    f = e["elasticsearch"]
    assert (f["method"], f["uri"], f["status"], f["auth_scheme"], f["opaque_id"], f["product"]) == \
        ("GET", "/_cluster/health", 200, "Basic", "job-17", "Elasticsearch")
    assert "ZWxhc3RpYzpjaGFuZ2VtZQ" not in values_of([f])
    assert res.flows.iloc[0]["app_proto"] == "elasticsearch" and e["frame"] == 4
    res = run(conversation(tmp_path / "consul.pcap", 8500, b"GET /v1/agent/members HTTP/1.1\r\nHost: c\r\n\r\n",
                           b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
    (e,) = res.app_events("consul")
    assert (e["consul"]["uri"], e["consul"]["status"], e["consul"]["status_msg"]) == \
        ("/v1/agent/members", 403, "Forbidden")
    res = run(conversation(tmp_path / "plain.pcap", 8080, b"GET / HTTP/1.1\r\nHost: c\r\n\r\n",
                           b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert res.flows.iloc[0]["app_proto"] == "http" and res.app_events("consul") == []


def test_consul_hostile_bytes_never_raise():
    http = [(CLIENT, b"GET /v1/kv/x?token=t HTTP/1.1\r\nHost: c\r\nContent-Length: 3\r\n\r\nabc"),
            (SERVER, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")]
    hostile(ConsulParser, http, rounds=100, server_port=8500)
    gossip = [(CLIENT, compound(PING, compound(ALIVE, b"\xf4\x01x" + SERF_JOIN))), (SERVER, b"\x0c\0\0\0\0" + ACK)]
    hostile(ConsulParser, gossip, rounds=100, transport="udp", server_port=8301)
    hostile(ConsulParser, [(CLIENT, b"\x00" + fixmap(fixstr("Seq"), b"\x01", fixstr("ServiceMethod"), fixstr("A.B")))],
            rounds=50, server_port=8300)
    rec = drive(ConsulParser, [(SERVER, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")],
                server_port=8500)
    assert rec.anomalies == ["http-api-bad-chunk"]
    rec = drive(ConsulParser, [(CLIENT, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10000)], server_port=8500)
    assert rec.anomalies == ["http-api-long-head"]
    assert isinstance(HttpApi(rec, {}, {}).feed(CLIENT, b"", 1, 1), bool)


# =============================================================================================================
# Elasticsearch transport (TcpHeader.java, InboundDecoder, ThreadContext.writeTo, StreamOutput.writeString)
# =============================================================================================================

def es_string(s: str) -> bytes:  # vint count of UTF-16 units, then the UTF-8 bytes (ASCII here)
    return bytes([len(s)]) + s.encode()


def es_message(rid: int, status: int, version: int, variable: bytes, body: bytes = b"") -> bytes:
    """'ES', int32 size (after the size field), long request id, status byte, int version, [int32 variable header
    size, from 7.6.0], variable header, body."""
    after = struct.pack(">qBi", rid, status, version)
    if version >= 7_060_099:
        after += struct.pack(">i", len(variable))
    after += variable + body
    return b"ES" + struct.pack(">i", len(after)) + after


def es_request(rid: int, action: str, version: int = 7_100_299, status: int = 0, headers: dict | None = None) -> bytes:
    context = bytes([len(headers or {})]) + b"".join(es_string(k) + es_string(v) for k, v in (headers or {}).items())
    context += b"\x00"  # no response headers
    return es_message(rid, status, version, context + b"\x01" + es_string("x-pack") + es_string(action), b"\x00body")


def test_es_transport_from_spec_bytes():
    steps = [(CLIENT, b"ES\xff\xff\xff\xff"),  # a ping: not an event
             (CLIENT, es_request(5, "indices:data/read/search",
                                 headers={"_xpack_security_authentication": "c2VjcmV0"})),
             (CLIENT, es_request(6, "cluster:monitor/health", status=0x04)),  # compressed, 7.10: header still clear
             (CLIENT, es_request(7, "indices:data/write/bulk", version=6_080_099, status=0x04)),  # 6.8: all compressed
             (SERVER, es_message(6, 0x01 | 0x04, 7_100_299, b"\x00\x00", b"xx")),
             (SERVER, es_message(5, 0x01 | 0x02, 7_100_299, b"\x00\x00", b"exception"))]
    rec = both_ways(ElasticsearchParser, steps, server_port=9300)
    health, search, bulk = rec.events
    assert (health["action"], health["status"], health["compressed"], health["version"]) == \
        ("cluster:monitor/health", "ok", True, "7.10.2")
    assert (search["action"], search["request_id"], search["status"], search["handshake"]) == \
        ("indices:data/read/search", 5, "error", False)
    assert (bulk["action"], bulk["compressed"], bulk["status"], bulk["version"]) == (None, True, None, "6.8.0")
    assert "c2VjcmV0" not in values_of(rec.events)
    assert version_text(7_060_299) == "7.6.2" and version_text(1_000_099 ^ 0x08000000) == "opensearch-1.0.0"


def test_es_hostile_bytes_never_raise():
    steps = [(CLIENT, es_request(1, "internal:tcp/handshake", status=0x08)),
             (SERVER, es_message(1, 0x09, 7_060_299, b"\x00\x00")), (CLIENT, b"ES\xff\xff\xff\xff")]
    hostile(ElasticsearchParser, steps, server_port=9300)
    rec = drive(ElasticsearchParser, [(CLIENT, b"XX" + bytes(30))], server_port=9300)
    assert rec.anomalies == ["elasticsearch-bad-header"]
    http = [(CLIENT, b"POST /idx/_search HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
            (SERVER, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")]
    hostile(ElasticsearchParser, http, rounds=50, server_port=9200)


def test_es_real_capture_matches_tshark(shared_pcaps):
    # tshark -r elasticsearch__ndpi__elasticsearch_flowsplit-a.pcap -Y elasticsearch -T fields -e frame.number
    #   -e tcp.stream -e elasticsearch.header.request_id -e elasticsearch.header.status_flags
    #   -e elasticsearch.header.message_length -e elasticsearch.version -e elasticsearch.action
    # 4 s0 1 0x08 52 6080099 internal:tcp/handshake / 6 s0 1 0x09 19 / 8 s0 4 0x00 169 7060299
    # internal:transport/handshake / 9 s0 4 0x01 383 / 17 s2 26 0x03 1752 (a response alone, error) /
    # 18-29 s1 (not 24) eleven requests internal:cluster/nodes/indices/shard/store[n] ids 774571670 + 9k, no answers /
    # 30 s3 123 0x01 131 (a response alone).  (message_length counts from the request id: ours add the 6-byte prefix)
    events = run(SHARED / "elasticsearch__ndpi__elasticsearch_flowsplit-a.pcap").app_events("elasticsearch")
    by_frame = {e["frame"]: e["elasticsearch"] for e in events}
    assert sorted(by_frame) == [4, 8, 17, 18, 19, 20, 21, 22, 23, 25, 26, 27, 28, 29, 30]
    tcp_hs, transport_hs = by_frame[4], by_frame[8]
    assert (tcp_hs["action"], tcp_hs["request_id"], tcp_hs["handshake"], tcp_hs["status"], tcp_hs["version"]) == \
        ("internal:tcp/handshake", 1, True, "ok", "6.8.0")
    assert (tcp_hs["request_len"], tcp_hs["response_len"]) == (52 + 6, 19 + 6)
    assert (transport_hs["action"], transport_hs["request_id"], transport_hs["status"], transport_hs["version"]) == \
        ("internal:transport/handshake", 4, "ok", "7.6.2")
    assert (transport_hs["request_len"], transport_hs["response_len"]) == (169 + 6, 383 + 6)
    assert (by_frame[17]["request_id"], by_frame[17]["status"], by_frame[17]["action"]) == (26, "error", None)
    assert (by_frame[30]["request_id"], by_frame[30]["status"]) == (123, "ok")
    stores = [by_frame[f] for f in (18, 19, 20, 21, 22, 23, 25, 26, 27, 28, 29)]
    assert {s["action"] for s in stores} == {"internal:cluster/nodes/indices/shard/store[n]"}
    assert [s["request_id"] for s in stores] == [774571670 + 9 * i for i in range(11)]
    assert all(s["status"] is None for s in stores)


# =============================================================================================================
# All of them: lost bytes (gaps) at random places, and the hot loop's bounds
# =============================================================================================================

def test_gaps_at_random_places_never_raise():
    from parsertest import Recorder
    flows = [(MongoParser, "tcp", 27017, [(CLIENT, op_msg(1, 0, bson(("find", "u"), ("$db", "d")))),
                                          (SERVER, op_msg(2, 1, bson(("ok", 1.0))))]),
             (CassandraParser, "tcp", 9042, [(CLIENT, cql(0x07, ls_("SELECT 1") + b"\0\1\0", stream=1)),
                                             (SERVER, cql(0x08, struct.pack(">i", 1), stream=1, response=True))]),
             (AmqpParser, "tcp", 5672, amqp_connection()),
             (ActiveMqParser, "tcp", 61616, [(CLIENT, wireformat(False)), (SERVER, wireformat(False))]),
             (ActiveMqParser, "tcp", 61613, [(CLIENT, b"CONNECT\nlogin:a\n\n\0"), (SERVER, b"CONNECTED\n\n\0")]),
             (VoltDbParser, "tcp", 21212, [(CLIENT, volt_login()), (SERVER, volt_login_ok())]),
             (ConsulParser, "tcp", 8500, [(CLIENT, b"GET / HTTP/1.1\r\n\r\n"), (SERVER, b"HTTP/1.1 200 OK\r\n\r\n")]),
             (ConsulParser, "tcp", 8301, [(CLIENT, PING), (SERVER, ACK)]),
             (ElasticsearchParser, "tcp", 9300, [(CLIENT, es_request(1, "a:b")),
                                                 (SERVER, es_message(1, 1, 7_100_299, b"\0\0"))])]
    rnd = random.Random(5)
    for parser_cls, transport, port, steps in flows:
        for _ in range(60):
            rec = Recorder()
            p = parser_cls(rec, FlowContext(transport, 40000, port, False))
            for i, (side, data) in enumerate(steps * 3):
                if p.done:
                    break
                cut = rnd.randrange(len(data) + 1)
                p.feed(side, data[:cut], i, i)
                if rnd.random() < 0.5 and not p.done:
                    p.gap(side, rnd.choice((1, 7, 100, 1 << 20)), i, i)
                if not p.done:
                    p.feed(side, data[cut:], i, i)
            p.finish()
