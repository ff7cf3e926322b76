"""SQL protocol parsers (mysql, postgresql, mssql, oracle) and NeuVector's SQL-injection check.

Expected values come from the protocol specifications (bytes built here by hand, each builder names its
section) or from tshark 4.0's decoding of the labelled captures in ../shared/pcaps (each test cites its
command and what it showed). Every parser is also driven byte by byte (split=1), with hostile bytes, and
with every truncation of the real samples.
"""
from __future__ import annotations

import random
import struct

import dpkt
import pytest
from conftest import SHARED, run
from parsertest import Recorder, drive

from nvpcap.protocols.base import CLIENT, SERVER, FlowContext
from nvpcap.protocols.framing import Framer
from nvpcap.protocols.mssql import TdsParser
from nvpcap.protocols.mysql import MysqlParser
from nvpcap.protocols.oracle import TnsParser, connect_data
from nvpcap.protocols.postgresql import PostgresParser, tag_rows
from nvpcap.protocols.sqlinjection import PATTERNS, check

PARSERS = (MysqlParser, PostgresParser, TdsParser, TnsParser)


def drive_mid(parser_cls, steps: list[tuple[int, bytes]], split: int = 0) -> Recorder:
    """As parsertest.drive, on a flow whose handshake was not captured (ctx.midstream)."""
    rec = Recorder()
    parser = parser_cls(rec, FlowContext("tcp", 40000, 0, True))
    for i, (side, data) in enumerate(steps):
        for j in range(0, len(data), split or max(len(data), 1)):
            if parser.done:
                break
            parser.feed(side, data[j : j + (split or len(data))], i + 1, i)
    parser.finish()
    return rec


def both(parser_cls, steps: list[tuple[int, bytes]]) -> Recorder:
    """Drive whole and byte by byte: the two must agree (segmentation never changes what is read)."""
    whole, split = drive(parser_cls, steps), drive(parser_cls, steps, split=1)
    assert (whole.events, whole.threats, whole.anomalies) == (split.events, split.threats, split.anomalies)
    assert whole.frames == split.frames
    return whole


def tcp_flows(path, server_port: int) -> list[list[tuple[int, bytes]]]:
    """The payloads of each TCP flow of a capture, in packet order (these captures have no loss or
    reordering), as (side, bytes) steps."""
    flows: dict[tuple, list[tuple[int, bytes]]] = {}
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP) or not tcp.data:
                continue
            side = CLIENT if tcp.dport == server_port else SERVER
            key = (tcp.sport, tcp.dport) if side == CLIENT else (tcp.dport, tcp.sport)
            flows.setdefault(key, []).append((side, bytes(tcp.data)))
    return list(flows.values())


# =============================================================================================================
# NeuVector's SQL-injection patterns (dpi_sqlinjection.c; ../shared/reference/neuvector-dp.md section 1)
# =============================================================================================================

# (pattern number, a statement it must catch, a near miss it must not)
INJECTIONS = [
    (1, "SELECT * FROM users WHERE name='adam' or 'x' = 'x'", "SELECT * FROM users WHERE name='adam' or 'x' = 'y'"),
    (2, "SELECT * FROM t WHERE id=1 or sleep(5)='", "SELECT pg_sleep(5)"),
    (3, "SELECT benchmark(10000000,MD5(1))", "SELECT benchmark(9999,MD5(1))"),
    (4, "SELECT benchmark(1000,MD5(1))#", "SELECT benchmark(1000,MD5(1))"),
    (5, "SELECT 1;waitfor delay '0:0:5'--", "WAITFOR DELAY '0:0:5'"),
    (6, "SELECT a FROM t WHERE b='' union (select @@version) --", "SELECT a FROM t UNION SELECT b FROM u"),
    (7, "SELECT 1; exec master..xp_cmdshell 'dir' --", "EXEC sp_who"),
    (8, "DELETE FROM t WHERE a=0 or 1=1 --", "SELECT * FROM t WHERE a=1 OR b=2 -- note"),
]


@pytest.mark.parametrize("number,positive,negative", INJECTIONS)
def test_each_injection_pattern_and_its_near_miss(number, positive, negative):
    assert number in check(positive)
    assert number not in check(negative)
    assert number in check(positive.swapcase())  # every pattern is case-insensitive


def test_ordinary_statements_do_not_match():
    for sql in ("SELECT * FROM t WHERE a='x' AND b=2", "select @@version_comment limit 1",
                "INSERT INTO t (a, b) VALUES ('first', 'second')", "UPDATE t SET a = 1 WHERE id = 7",
                "select u.id, u.login from users u where u.login=$1 and u.id=a.id",
                "SELECT a FROM t -- a comment", "BEGIN; COMMIT;"):
        assert check(sql) == [], sql


def test_the_check_reads_the_first_4000_characters_only():
    attack = "' or sleep(5)='"
    assert check("SELECT " + " " * 3900 + attack) == [2]
    assert check("SELECT " + " " * 4000 + attack) == []


def test_pcre_semantics_kept_dot_stops_at_newline_caret_is_start():
    assert check("SELECT a FROM t WHERE b='' union\n select 1 --") == []  # `.` does not cross the newline
    assert check("x\nSELECT * FROM u WHERE n='a' or 'x'='x'") == []  # `^SELECT` is the statement's start


def test_the_word_screen_gives_what_running_every_pattern_gives():
    """check runs on an ASCII statement only the patterns whose word it contains: never a different result
    from running all eight (statements built from pieces of injections, near misses, case changes, and
    non-ASCII letters IGNORECASE folds onto ASCII ones: U+017F long s, U+212A Kelvin sign, U+0131 dotless i)."""
    def every(sql: str) -> list[int]:
        return [n for n, _, pattern, _ in PATTERNS if pattern.search(sql[:4000])]

    assert all(word in pattern.pattern.lower() for _, word, pattern, _ in PATTERNS)
    pieces = ["SELECT * FROM t WHERE a=", "select", "'", '"', " ", "\n", "\t", "\x1c", " or ", "OR", "Or", "1", "=",
              "'x'", "x", "--", "#", "/*", "='", "union", "UNION ", "exec ", "EXEC\n", "sleep(5)", "SLEEP (1)",
              "benchmark(", "10000000,", "99,", "waitfor delay", "WAITFOR", "(", ")", "\u017fleep(2)", "benchmar\u212a(",
              "\u0131", "\xe9", "xor", "order", "for", "oR\u017f"]
    pieces += [sql for _, pos, neg in INJECTIONS for sql in (pos, neg, pos.swapcase())]
    rng = random.Random(2022)
    hits = 0
    for _ in range(4000):
        sql = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 10)))
        assert check(sql) == every(sql), sql
        hits += bool(every(sql))
    assert hits > 400  # the statements do reach the patterns


def test_patterns_are_linear_enough_on_hostile_statements():
    import time
    start = time.perf_counter()
    for s in ("1 union " * 600, "benchmark(1," * 400, "exec " * 900, "SELECT '" + " or a=a" * 600, "'" * 4000):
        check(s)
    assert time.perf_counter() - start < 2.0


# =============================================================================================================
# Framer: bounded, skips over-long messages by their length
# =============================================================================================================

def test_framer_delivers_whole_messages_and_skips_long_ones_by_count():
    framer = Framer(4, lambda h: 4 + struct.unpack("<I", h)[0], limit=64, keep=8)
    stream = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 1000) + b"x" * 1000 + struct.pack("<I", 2) + b"ok"
    got = []
    for i in range(0, len(stream), 7):
        got += [(m.data, m.length, m.truncated, m.frame) for m in framer.push(stream[i : i + 7], i // 7, 0)]
    assert got[0] == (struct.pack("<I", 3) + b"abc", 7, False, 0)
    assert got[1] == (struct.pack("<I", 1000) + b"xxxx", 1004, True, 1)  # first 8 bytes, rest skipped
    assert got[2][:3] == (struct.pack("<I", 2) + b"ok", 6, False)
    assert got[2][3] == (7 + 1004) // 7  # the frame of the chunk holding its first byte
    assert len(framer.buf) == 0


def test_framer_stops_on_a_length_below_its_header():
    framer = Framer(4, lambda h: struct.unpack("<I", h)[0])
    assert list(framer.push(struct.pack("<I", 2) + b"zz", 1, 0)) == []
    assert framer.broken and not framer.buf


# =============================================================================================================
# MySQL (MySQL Internals, Client/Server Protocol)
# =============================================================================================================

CAP_CONNECT_WITH_DB, CAP_PROTOCOL_41, CAP_SSL, CAP_SECURE = 0x8, 0x200, 0x800, 0x8000
CAP_PLUGIN_AUTH, CAP_LENENC_DATA, CAP_DEPRECATE_EOF = 0x80000, 0x200000, 0x1000000
CAP_QUERY_ATTRIBUTES = 0x8000000
CLIENT_CAPS = CAP_PROTOCOL_41 | CAP_SECURE | CAP_PLUGIN_AUTH | CAP_LENENC_DATA


def my(seq: int, payload: bytes) -> bytes:
    """A packet: payload length (3, LE), sequence id, payload."""
    return len(payload).to_bytes(3, "little") + bytes([seq & 0xFF]) + payload


def my_lenenc(n: int) -> bytes:
    return bytes([n]) if n < 251 else b"\xfc" + struct.pack("<H", n)


def my_str(s: bytes) -> bytes:
    return my_lenenc(len(s)) + s


def my_greeting(version: bytes = b"8.0.36", thread: int = 12, caps: int = 0xFFFFF7FF,
                plugin: bytes = b"caching_sha2_password") -> bytes:
    """Protocol::HandshakeV10: 10, version NUL, thread id(4), auth data 1 (8), filler 0, caps low(2), charset,
    status(2), caps high(2), auth data length, reserved(10), auth data 2 (13), plugin name NUL."""
    return my(0, b"\x0a" + version + b"\0" + struct.pack("<I", thread) + b"12345678\0" + struct.pack("<H", caps & 0xFFFF)
              + b"\xff" + struct.pack("<HH", 2, caps >> 16) + bytes([21]) + b"\0" * 10 + b"abcdefghijkl\0" + plugin
              + b"\0")


def my_login(user: bytes, caps: int = CLIENT_CAPS, db: bytes | None = None, seq: int = 1,
             auth: bytes = b"\x5a" * 20) -> bytes:
    """HandshakeResponse41: caps(4), max packet(4), charset, filler(23), user NUL, auth data, [db NUL],
    [plugin NUL]."""
    if db is not None:
        caps |= CAP_CONNECT_WITH_DB
    p = struct.pack("<IIB", caps, 1 << 24, 0x21) + b"\0" * 23 + user + b"\0" + my_str(auth)
    if db is not None:
        p += db + b"\0"
    return my(seq, p + b"mysql_native_password\0")


def my_ok(seq: int, affected: int = 0, status: int = 2, header: bytes = b"\x00") -> bytes:
    return my(seq, header + my_lenenc(affected) + b"\0" + struct.pack("<HH", status, 0))


def my_err(seq: int, code: int, state: bytes, msg: bytes) -> bytes:
    return my(seq, b"\xff" + struct.pack("<H", code) + b"#" + state + msg)


def my_eof(seq: int, status: int = 2) -> bytes:
    return my(seq, b"\xfe" + struct.pack("<HH", 0, status))


def my_column(seq: int, name: bytes) -> bytes:
    """ColumnDefinition41: catalog "def", schema, table, org table, name, org name, 0x0c, charset(2),
    length(4), type, flags(2), decimals, filler(2)."""
    return my(seq, my_str(b"def") + my_str(b"db") + my_str(b"t") + my_str(b"t") + my_str(name) + my_str(name)
              + b"\x0c" + struct.pack("<HIBHB", 33, 255, 253, 0, 0) + b"\0\0")


def my_result(seq: int, columns: list[bytes], rows: list[list[bytes]], eof: bool = True, status: int = 2):
    """A text resultset: column count, definitions, [EOF], rows, EOF (or OK with the 0xFE header)."""
    out = [my(seq, my_lenenc(len(columns)))]
    for c in columns:
        seq += 1
        out.append(my_column(seq, c))
    if eof:
        seq += 1
        out.append(my_eof(seq))
    for r in rows:
        seq += 1
        out.append(my(seq, b"".join(my_str(v) for v in r)))
    seq += 1
    out.append(my_eof(seq, status) if eof else my_ok(seq, 0, status, b"\xfe"))
    return b"".join(out)


def my_session(*commands: tuple[bytes, bytes], caps: int = CLIENT_CAPS, server_caps: int = 0xFFFFF7FF):
    steps = [(SERVER, my_greeting(caps=server_caps)), (CLIENT, my_login(b"alice", caps, db=b"shop")),
             (SERVER, my_ok(2))]
    for request, answer in commands:
        steps.append((CLIENT, request))
        if answer:
            steps.append((SERVER, answer))
    return steps


def test_mysql_login_query_resultset_quit():
    steps = my_session(
        (my(0, b"\x03select id, name from users"), my_result(1, [b"id", b"name"], [[b"1", b"ann"], [b"2", b"bob"]])),
        (my(0, b"\x02shop"), my_ok(1)),
        (my(0, b"\x03update users set name='x' where id<3"), my_ok(1, affected=2)),
        (my(0, b"\x01"), b""))
    rec = both(MysqlParser, steps)
    login, select, init_db, update, quit_ = rec.events
    assert login == {"cmd": "login", "arg": "alice", "success": True, "response": None, "error_code": None,
                     "server_version": "8.0.36", "connection_id": 12, "auth_plugin": "mysql_native_password",
                     "database": "shop", "client_capabilities": CLIENT_CAPS | CAP_CONNECT_WITH_DB, "ssl": False}
    assert select == {"cmd": "query", "arg": "select id, name from users", "success": True, "rows": 2,
                      "response": None, "error_code": None}
    assert (init_db["cmd"], init_db["arg"], init_db["success"]) == ("init_db", "shop", True)
    assert (update["rows"], update["success"]) == (2, True)
    assert quit_["cmd"] == "quit"
    assert rec.frames == [1, 4, 6, 8, 10]  # login from the greeting; each command from its request
    assert rec.joined("sql", CLIENT) == b"select id, name from usersupdate users set name='x' where id<3"
    assert rec.threats == []


def test_mysql_access_denied_raises_2018_from_the_server_side():
    for code, threat in ((1045, True), (1044, True), (1040, False)):
        steps = [(SERVER, my_greeting()), (CLIENT, my_login(b"root")),
                 (SERVER, my_err(2, code, b"28000", b"Access denied for user 'root'@'10.0.0.1'"))]
        rec = both(MysqlParser, steps)
        assert rec.threats == ([(2018, SERVER)] if threat else [])
        assert rec.events[0]["success"] is False and rec.events[0]["error_code"] == code
        assert rec.events[0]["response"] == "Access denied for user 'root'@'10.0.0.1'"


def test_mysql_auth_switch_then_ok():
    steps = [(SERVER, my_greeting()), (CLIENT, my_login(b"bob")),
             (SERVER, my(2, b"\xfemysql_native_password\0" + b"s" * 20 + b"\0")), (CLIENT, my(3, b"h" * 20)),
             (SERVER, my_ok(4)), (CLIENT, my(0, b"\x0e")), (SERVER, my_ok(1))]
    rec = both(MysqlParser, steps)
    assert rec.events[0]["success"] is True and rec.events[0]["auth_plugin"] == "mysql_native_password"
    assert rec.events[1]["cmd"] == "ping" and rec.events[1]["success"] is True


def test_mysql_ssl_request_ends_parsing():
    ssl = my(1, struct.pack("<IIB", CLIENT_CAPS | CAP_SSL, 1 << 24, 0x21) + b"\0" * 23)  # SSLRequest: 32 bytes
    rec = both(MysqlParser, [(SERVER, my_greeting()), (CLIENT, ssl), (CLIENT, b"\x16\x03\x01\x00\x05hello")])
    assert rec.events == [{"cmd": "login", "arg": None, "success": None, "response": None, "error_code": None,
                           "server_version": "8.0.36", "connection_id": 12, "auth_plugin": "caching_sha2_password",
                           "database": None, "client_capabilities": CLIENT_CAPS | CAP_SSL, "ssl": True}]


def test_mysql_query_error_and_injection_threat():
    attack = b"SELECT * FROM users WHERE name='' or 'x'='x'"
    steps = my_session((my(0, b"\x03" + attack), my_err(1, 1146, b"42S02", b"Table 'shop.users' doesn't exist")))
    rec = both(MysqlParser, steps)
    q = rec.events[1]
    assert (q["success"], q["error_code"], q["response"]) == (False, 1146, "Table 'shop.users' doesn't exist")
    assert rec.threats == [(2022, CLIENT)]


def test_mysql_deprecate_eof_multi_results_and_query_attributes():
    caps = CLIENT_CAPS | CAP_DEPRECATE_EOF | CAP_QUERY_ATTRIBUTES
    more = 0x0008 | 2  # SERVER_MORE_RESULTS_EXISTS
    answer = my_result(1, [b"a"], [[b"1"]], eof=False, status=more)[:-11]
    answer += my_ok(3, 0, more, b"\xfe") + my_result(4, [b"b"], [[b"x"], [b"y"]], eof=False)
    # COM_QUERY with query attributes: parameter_count 0, parameter_set_count 1, then the statement
    steps = my_session((my(0, b"\x03\x00\x01call p()"), answer), caps=caps, server_caps=0xFFFFFFFF)
    rec = both(MysqlParser, steps)
    assert rec.events[1] == {"cmd": "query", "arg": "call p()", "success": True, "rows": 3, "response": None,
                             "error_code": None}


def test_mysql_prepared_statement_execute_names_its_text():
    prepare_ok = my(1, b"\x00" + struct.pack("<IHHBH", 7, 1, 1, 0, 0))  # stmt id 7, 1 column, 1 param
    defs = my_column(2, b"?") + my_eof(3) + my_column(4, b"id") + my_eof(5)
    binary_rows = my(1, b"\x01") + my_column(2, b"id") + my_eof(3) + my(4, b"\x00\x00\x05") + my_eof(5)
    steps = my_session((my(0, b"\x16select id from t where id=?"), prepare_ok + defs),
                       (my(0, b"\x17" + struct.pack("<IBI", 7, 0, 1) + b"\x00\x01\x03\x00\x05\0\0\0"), binary_rows),
                       (my(0, b"\x19" + struct.pack("<I", 7)), b""))
    rec = both(MysqlParser, steps)
    prep, execute, close = rec.events[1:]
    assert (prep["cmd"], prep["success"]) == ("stmt_prepare", True)
    assert (execute["cmd"], execute["arg"], execute["rows"]) == ("stmt_execute", "select id from t where id=?", 1)
    assert close["cmd"] == "stmt_close" and close["arg"] == "select id from t where id=?"


def test_mysql_midstream_starts_with_commands():
    steps = [(CLIENT, my(0, b"\x03select 1")), (SERVER, my_result(1, [b"1"], [[b"1"]])),
             (CLIENT, my(0, b"\x03select 2")), (SERVER, my_err(1, 1064, b"42000", b"syntax"))]
    rec = drive_mid(MysqlParser, steps, split=1)
    assert [(e["arg"], e["success"], e["rows"]) for e in rec.events] == [("select 1", True, 1), ("select 2", False, None)]


def test_mysql_midstream_query_attributes():
    # COM_QUERY with CLIENT_QUERY_ATTRIBUTES: parameter_count 0, parameter_set_count 1, then the statement
    rec = drive_mid(MysqlParser, [(CLIENT, my(0, b"\x03\x00\x01select 3")), (SERVER, my_ok(1))])
    assert rec.events[0]["arg"] == "select 3"


def test_mysql_long_packet_is_skipped_by_its_length():
    big = b"insert into blobs values ('" + b"z" * 200_000 + b"')"
    rec = both(MysqlParser, my_session((my(0, b"\x03" + big), my_ok(1, 1)), (my(0, b"\x0e"), my_ok(1))))
    assert rec.events[1]["arg"] == big[:4000].decode()
    assert (rec.events[2]["cmd"], rec.events[2]["success"]) == ("ping", True)


def test_mysql_real_capture_matches_tshark(shared_pcaps):
    # tshark -r mysql__ndpi__mysql.pcap -Y mysql -T fields -e frame.number -e mysql.version -e mysql.thread_id
    #   -e mysql.user -e mysql.query -e mysql.command -e mysql.caps.client:
    #   4  5.5.5-10.6.12-MariaDB-0ubuntu0.22.04.1  32      (server greeting)
    #   6  admin  caps 0xa684 (+ extended 0x20ff)          (login request), 8 OK
    #   9  "select @@version_comment limit 1"  command 3; 10 one column, one row packet "Ubuntu 22.04", EOF
    #   12 command 1 (quit)
    #   19 8.0.36 thread 12; 21 SSL handshake request, caps 0xae85 (+ extended 0x19ff), then TLS
    events = run(SHARED / "mysql__ndpi__mysql.pcap").app_events("mysql")
    got = [(e["frame"], e["mysql"]["cmd"], e["mysql"]["arg"]) for e in events]
    assert got == [(4, "login", "admin"), (9, "query", "select @@version_comment limit 1"), (12, "quit", None),
                   (19, "login", None)]
    login, query, _, ssl = (e["mysql"] for e in events)
    assert (login["server_version"], login["connection_id"], login["success"]) == \
        ("5.5.5-10.6.12-MariaDB-0ubuntu0.22.04.1", 32, True)
    assert login["client_capabilities"] == 0x20FFA684
    assert (query["success"], query["rows"]) == (True, 1)
    assert (ssl["server_version"], ssl["connection_id"], ssl["ssl"], ssl["client_capabilities"]) == \
        ("8.0.36", 12, True, 0x19FFAE85)


# =============================================================================================================
# PostgreSQL (docs, chapter "Frontend/Backend Protocol")
# =============================================================================================================

def pg(kind: bytes, body: bytes = b"") -> bytes:
    """A typed message: type byte, int32 length counting itself, body."""
    return kind + struct.pack(">I", len(body) + 4) + body


def pg_startup(**params: str) -> bytes:
    body = struct.pack(">I", 0x00030000) + b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                                                    for k, v in params.items()) + b"\0"
    return struct.pack(">I", len(body) + 4) + body


def pg_auth(code: int, extra: bytes = b"") -> bytes:
    return pg(b"R", struct.pack(">I", code) + extra)


def pg_error(severity: str, code: str, message: str) -> bytes:
    fields = [("S", severity), ("V", severity), ("C", code), ("M", message)]
    return pg(b"E", b"".join(k.encode() + v.encode() + b"\0" for k, v in fields) + b"\0")


def pg_row(*values: bytes) -> bytes:
    return pg(b"D", struct.pack(">H", len(values)) + b"".join(struct.pack(">i", len(v)) + v for v in values))


def pg_ready(status: bytes = b"I") -> bytes:
    return pg(b"Z", status)


PG_LOGIN = [(CLIENT, pg_startup(user="carol", database="books", application_name="psql")),
            (SERVER, pg_auth(5, b"salt")), (CLIENT, pg(b"p", b"md5" + b"9" * 32 + b"\0")),
            (SERVER, pg_auth(0) + pg(b"S", b"server_version\x0016.2\0") + pg(b"K", b"\0\0\0\x07\0\0\0\x09")
             + pg_ready())]


def test_pg_login_and_simple_query():
    steps = PG_LOGIN + [(CLIENT, pg(b"Q", b"select title from book\0")),
                        (SERVER, pg(b"T", b"\0\x01title\0" + b"\0" * 18) + pg_row(b"a") + pg_row(b"b")
                         + pg(b"C", b"SELECT 2\0") + pg_ready()),
                        (CLIENT, pg(b"X"))]
    rec = both(PostgresParser, steps)
    login, query = rec.events
    assert login == {"frontend": "startup", "user": "carol", "database": "books", "application_name": "psql",
                     "auth_method": "md5", "sasl_mechanism": None, "success": True, "error_severity": None,
                     "error_code": None, "error": None, "server_version": "16.2", "ssl": None, "gssenc": None,
                     "protocol_version": "3.0"}
    assert query == {"frontend": "simple_query", "statement": "select title from book", "command_tag": "SELECT 2",
                     "rows": 2, "success": True, "error_severity": None, "error_code": None, "error": None}
    assert rec.frames == [1, 5]
    assert b"9999" not in repr(rec.events).encode()  # the password hash is never kept


def test_pg_ssl_request_accepted_or_refused():
    ssl_request = struct.pack(">II", 8, 80877103)
    rec = both(PostgresParser, [(CLIENT, ssl_request), (SERVER, b"S"), (CLIENT, b"\x16\x03\x01\x00\x10" + b"x" * 16)])
    assert [(e["ssl"], e["user"]) for e in rec.events] == [(True, None)]
    steps = [(CLIENT, ssl_request), (SERVER, b"N")] + PG_LOGIN
    rec = both(PostgresParser, steps)
    assert [(e["ssl"], e["user"], e["success"]) for e in rec.events] == [(False, "carol", True)]


def test_pg_login_failure():
    steps = [(CLIENT, pg_startup(user="mallory", database="x")), (SERVER, pg_auth(10, b"SCRAM-SHA-256\0\0")),
             (CLIENT, pg(b"p", b"SCRAM-SHA-256\0" + struct.pack(">I", 8) + b"n,,n=,r=")),
             (SERVER, pg_error("FATAL", "28P01", 'password authentication failed for user "mallory"'))]
    rec = both(PostgresParser, steps)
    e = rec.events[0]
    assert (e["auth_method"], e["sasl_mechanism"], e["success"]) == ("sasl", "SCRAM-SHA-256", False)
    assert (e["error_severity"], e["error_code"]) == ("FATAL", "28P01")
    assert e["error"] == 'password authentication failed for user "mallory"'


def test_pg_extended_pipeline_named_statement_and_errors():
    parse = pg(b"P", b"s1\0select * from t where id=$1\0\0\0")
    bind = pg(b"B", b"\0s1\0\0\0\0\x01\0\0\0\x017\0\0")
    execute, sync = pg(b"E", b"\0\0\0\0\0"), pg(b"S")
    bad_parse = pg(b"P", b"\0selec oops\0\0\0")
    steps = PG_LOGIN + [
        (CLIENT, parse + bind + pg(b"D", b"P\0") + execute + sync + bind + execute + sync + bad_parse + sync),
        (SERVER, pg(b"1") + pg(b"2") + pg(b"T", b"\0\0") + pg_row(b"x") + pg(b"C", b"SELECT 1\0") + pg_ready()
         + pg(b"2") + pg(b"C", b"SELECT 0\0") + pg_ready()
         + pg_error("ERROR", "42601", 'syntax error at or near "selec"') + pg_ready())]
    rec = both(PostgresParser, steps)
    first, second, failed = rec.events[1:]
    assert (first["frontend"], first["statement"], first["rows"]) == ("execute", "select * from t where id=$1", 1)
    assert (second["statement"], second["command_tag"], second["rows"]) == ("select * from t where id=$1",
                                                                           "SELECT 0", 0)
    assert (failed["frontend"], failed["statement"], failed["success"], failed["error_code"]) == \
        ("parse", "selec oops", False, "42601")


def test_pg_error_skips_the_rest_of_its_group_only():
    execute = pg(b"P", b"\0select 1/0\0\0\0") + pg(b"B", b"\0\0\0\0\0\0\0\0") + pg(b"E", b"\0\0\0\0\0")
    execute2 = pg(b"P", b"\0select 2\0\0\0") + pg(b"B", b"\0\0\0\0\0\0\0\0") + pg(b"E", b"\0\0\0\0\0")
    steps = PG_LOGIN + [(CLIENT, execute + execute2 + pg(b"S") + execute2 + pg(b"S")),
                        (SERVER, pg(b"1") + pg(b"2") + pg_error("ERROR", "22012", "division by zero") + pg_ready()
                         + pg(b"1") + pg(b"2") + pg_row(b"2") + pg(b"C", b"SELECT 1\0") + pg_ready())]
    rec = both(PostgresParser, steps)
    got = [(e["statement"], e["success"], e["error_code"], e["rows"]) for e in rec.events[1:]]
    assert got == [("select 1/0", False, "22012", None), ("select 2", None, None, None), ("select 2", True, None, 1)]


def test_pg_injection_in_query_and_parse_raises_2022():
    attack = b"SELECT * FROM users WHERE name='' OR 1=1 --"
    steps = PG_LOGIN + [(CLIENT, pg(b"Q", attack + b"\0")), (CLIENT, pg(b"P", b"\0" + attack + b"\0\0\0"))]
    rec = both(PostgresParser, steps)
    assert rec.threats == [(2022, CLIENT), (2022, CLIENT)]
    assert rec.joined("sql", CLIENT) == attack * 2


def test_pg_long_message_skipped_by_its_length():
    steps = PG_LOGIN + [(CLIENT, pg(b"Q", b"copy t from stdin\0")),
                        (SERVER, pg(b"G", b"\0\0\0")),
                        (CLIENT, pg(b"d", b"r" * 300_000) + pg(b"c")),
                        (SERVER, pg(b"C", b"COPY 1000\0") + pg_ready()),
                        (CLIENT, b"d" + struct.pack(">I", 0x7FFFFFFF) + b"x" * 1000)]  # hostile length: skipped
    rec = both(PostgresParser, steps)
    assert (rec.events[1]["command_tag"], rec.events[1]["rows"]) == ("COPY 1000", 1000)
    assert rec.anomalies == []


def test_pg_midstream_typed_messages():
    steps = [(CLIENT, pg(b"Q", b"select now()\0")), (SERVER, pg_row(b"t") + pg(b"C", b"SELECT 1\0") + pg_ready())]
    rec = drive_mid(PostgresParser, steps, split=1)
    assert [(e["statement"], e["rows"], e["success"]) for e in rec.events] == [("select now()", 1, True)]


def test_pg_real_capture_matches_tshark(shared_pcaps):
    # tshark -r postgresql__ndpi__pgsql.pcap -Y pgsql -T fields -e frame.number -e tcp.stream -e pgsql.type
    #   -e pgsql.query -e pgsql.parameter_name -e pgsql.parameter_value -e pgsql.authtype -e pgsql.tag:
    #   7/9 Startup user=oryx database=mailstore; 11/13 Authentication request 5 (MD5); 19/20 ... server_version
    #   7.4.6 ... Ready for query; 21 Parse "select * from mailboxes", "select id,name from flag_names where id>0"
    #   (answers 28/29: Row description, Command completion "SELECT", no Data row); 23 "begin", "select revision
    #   from mailstore for update" (25: BEGIN; one Data row, SELECT); 26 "commit" (27: COMMIT); 32 Parse of
    #   statement "4" + Execute, 36 Bind statement "4" + Execute (no Parse); 43/66 GSS encrypt request answered
    #   'G' (payload 0x47); 51/74 SSL request answered 'N' (0x4e), then Startup user=test database=postgres
    #   application_name=psql; 58/81 Authentication request 10 (SASL); 83 SASLInitialResponse; 87 auth 12, 0,
    #   server_version 13devel
    events = run(SHARED / "postgresql__ndpi__pgsql.pcap").app_events("postgresql")
    logins = sorted((e["frame"], e["postgresql"]["user"], e["postgresql"]["auth_method"], e["postgresql"]["success"],
                     e["postgresql"]["server_version"], e["postgresql"]["ssl"], e["postgresql"]["gssenc"])
                    for e in events if e["postgresql"]["frontend"] == "startup")
    assert logins == [(7, "oryx", "md5", True, "7.4.6", None, None), (9, "oryx", "md5", True, "7.4.6", None, None),
                      (43, None, None, None, None, None, True), (55, "test", "sasl", None, None, False, None),
                      (66, None, None, None, None, None, True), (80, "test", "sasl", True, "13devel", False, None)]
    queries = sorted((e["frame"], e["postgresql"]["statement"], e["postgresql"]["command_tag"], e["postgresql"]["rows"])
                     for e in events if e["postgresql"]["frontend"] == "execute")
    long_select = ("select u.id, u.address, u.inbox, n.name as parentspace, u.login, u.id, u.secret, a.name, "
                   "a.localpart, a.domain from users u, addresses a, namespaces n where u.login=$1 and u.id=a.id "
                   "and n.id=u.parentspace")
    assert queries == [(21, "select * from mailboxes", "SELECT", 0),
                       (21, "select id,name from flag_names where id>0", "SELECT", 0),
                       (23, "begin", "BEGIN", 0), (23, "select revision from mailstore for update", "SELECT", 1),
                       (26, "commit", "COMMIT", 0), (32, long_select, "SELECT", 0), (36, long_select, "SELECT", 0)]
    sasl = next(e["postgresql"] for e in events if e["frame"] == 80)
    assert (sasl["database"], sasl["application_name"], sasl["sasl_mechanism"]) == ("postgres", "psql",
                                                                                    "SCRAM-SHA-256")


# =============================================================================================================
# MS-SQL TDS ([MS-TDS])
# =============================================================================================================

def tds(kind: int, payload: bytes, status: int = 1, packet: int = 1) -> bytes:
    """2.2.3.1 packet header: type, status (0x01 EOM), length (BE, header included), SPID, packet id, window."""
    return struct.pack(">BBHHBB", kind, status, len(payload) + 8, 0, packet, 0) + payload


def u16s(s: str) -> bytes:
    return s.encode("utf-16-le")


def b_varchar(s: str) -> bytes:
    return bytes([len(s)]) + u16s(s)


ALL_HEADERS = struct.pack("<IIHQI", 22, 18, 2, 0, 1)  # 2.2.5.3: total, transaction descriptor header
COLLATION = b"\x09\x04\xd0\x00\x34"


def tds_prelogin(version: bytes, encryption: int) -> bytes:
    """2.2.6.5: option table (token, offset BE, length BE) ... 0xFF, then the option data."""
    table_len = 2 * 5 + 1
    return (b"\x00" + struct.pack(">HH", table_len, 6) + b"\x01" + struct.pack(">HH", table_len + 6, 1) + b"\xff"
            + version + bytes([encryption]))


PASSWORD = "Secr3t!"


def tds_login7(host: str, user: str, app: str, server: str, library: str, database: str) -> bytes:
    """2.2.6.4 LOGIN7: 36 fixed bytes, then (offset, character count) pairs, ClientID, SSPI, AttachDB,
    ChangePassword, cbSSPILong (94 bytes), then the UCS-2 strings. The password is scrambled per spec."""
    scrambled = bytes(((b << 4 | b >> 4) & 0xFF) ^ 0xA5 for b in u16s(PASSWORD))
    strings = [u16s(host), u16s(user), scrambled, u16s(app), u16s(server), b"", u16s(library), b"", u16s(database)]
    offsets, data, at = b"", b"", 94
    for s in strings:
        offsets += struct.pack("<HH", at if s else 0, len(s) // 2)
        data, at = data + s, at + len(s)
    fixed = struct.pack("<IIIIIIBBBBiI", 94 + len(data), 0x74000004, 4096, 7, 1234, 0, 0xE0, 0x03, 0, 0, 0, 0x409)
    rest = b"\x00" * 6 + struct.pack("<HHHHHHI", 0, 0, 0, 0, 0, 0, 0)
    return fixed + offsets + rest + data


def tds_done(status: int = 0, rows: int = 0, token: int = 0xFD) -> bytes:
    return struct.pack("<BHHQ", token, status, 0xC1, rows)


def tds_error(number: int, klass: int, message: str) -> bytes:
    body = struct.pack("<iBB", number, 1, klass) + struct.pack("<H", len(message)) + u16s(message)
    body += b_varchar("SRV") + b_varchar("") + struct.pack("<I", 1)
    return b"\xaa" + struct.pack("<H", len(body)) + body


def tds_loginack(program: str = "Microsoft SQL Server") -> bytes:
    body = b"\x01" + struct.pack(">I", 0x74000004) + b_varchar(program) + bytes([16, 0, 0x10, 0x73])
    return b"\xad" + struct.pack("<H", len(body)) + body


def tds_envchange_database(name: str) -> bytes:
    body = b"\x01" + b_varchar(name) + b_varchar("master")
    return b"\xe3" + struct.pack("<H", len(body)) + body


def tds_two_columns() -> bytes:
    """COLMETADATA: id INTN(4), name NVARCHAR(100); user type (4, TDS 7.2+), flags (2), TYPE_INFO, name."""
    return (b"\x81" + struct.pack("<H", 2) + struct.pack("<IH", 0, 0) + b"\x26\x04" + b_varchar("id")
            + struct.pack("<IH", 0, 1) + b"\xe7" + struct.pack("<H", 200) + COLLATION + b_varchar("name"))


def tds_row(i: int, name: str | None) -> bytes:
    if name is None:  # NBCROW: null bitmap, then the non-null values
        return b"\xd2\x02" + b"\x04" + struct.pack("<i", i)
    return b"\xd1" + b"\x04" + struct.pack("<i", i) + struct.pack("<H", 2 * len(name)) + u16s(name)


TDS_LOGIN = [(CLIENT, tds(0x12, tds_prelogin(bytes([16, 0, 0x10, 0x73, 0, 0]), 2))),
             (SERVER, tds(0x04, tds_prelogin(bytes([15, 0, 0x07, 0xD0, 0, 0]), 2))),
             (CLIENT, tds(0x10, tds_login7("WKS01", "sa", "sqlcmd", "db01", "ODBC", "sales"))),
             (SERVER, tds(0x04, tds_envchange_database("sales") + tds_loginack() + tds_done()))]


def test_tds_login_from_spec_bytes():
    rec = both(TdsParser, TDS_LOGIN)
    assert rec.events == [{
        "cmd": "login", "hostname": "WKS01", "username": "sa", "appname": "sqlcmd", "servername": "db01",
        "database": "sales", "library": "ODBC", "tds_version": "7.4", "client_version": "16.0.4211",
        "server_version": "16.0.4211", "server_program": "Microsoft SQL Server", "encryption": "not_supported",
        "login_encrypted": False, "success": True, "error_code": None, "error": None}]
    assert rec.frames == [1]
    assert PASSWORD not in repr(rec.events)


def test_tds_login_failure():
    steps = TDS_LOGIN[:3] + [(SERVER, tds(0x04, tds_error(18456, 14, "Login failed for user 'sa'.")
                                          + tds_done(0x02)))]
    rec = both(TdsParser, steps)
    e = rec.events[0]
    assert (e["success"], e["error_code"], e["error"]) == (False, 18456, "Login failed for user 'sa'.")


def test_tds_sql_batch_across_packets_with_rows():
    sql = "SELECT id, name FROM dbo.customers"
    payload = ALL_HEADERS + u16s(sql)
    request = tds(0x01, payload[:30], status=0, packet=1) + tds(0x01, payload[30:], status=1, packet=2)
    response = tds_two_columns() + tds_row(1, "ann") + tds_row(2, None) + tds_done(0x10, 2)
    steps = TDS_LOGIN + [(CLIENT, request), (SERVER, tds(0x04, response[:40], 0) + tds(0x04, response[40:]))]
    rec = both(TdsParser, steps)
    assert rec.events[1] == {"cmd": "sql_batch", "statement": sql, "procedure": None, "rows": 2, "success": True,
                             "error_code": None, "error_class": None, "error": None}
    assert rec.frames[1] == 5
    assert rec.joined("sql", CLIENT) == sql.encode()  # decoded from UTF-16LE, as NeuVector's decoded_pkt


def test_tds_response_longer_than_the_walk_limit_still_counts_rows():
    """Beyond 256 KiB the token walk stops; the closing DONE (2.2.7.6, the message's last 13 bytes) is read."""
    rows = b"".join(tds_row(i, f"customer-{i:06d}") for i in range(12000))
    response = tds_two_columns() + rows + tds_done(0x10, 12000)
    packets = b"".join(tds(0x04, response[i : i + 4088], 0 if i + 4088 < len(response) else 1)
                       for i in range(0, len(response), 4088))
    steps = TDS_LOGIN + [(CLIENT, tds(0x01, ALL_HEADERS + u16s("select * from c"))), (SERVER, packets)]
    assert len(response) > 1 << 18
    rec = drive(TdsParser, steps)
    assert (rec.events[1]["rows"], rec.events[1]["success"]) == (12000, True)


def test_tds_error_response_and_injection_threat():
    sql = "SELECT * FROM users WHERE id=1; WAITFOR DELAY '0:0:5'--"
    steps = TDS_LOGIN + [(CLIENT, tds(0x01, ALL_HEADERS + u16s(sql))),
                         (SERVER, tds(0x04, tds_error(208, 16, "Invalid object name 'users'.") + tds_done(0x02)))]
    rec = both(TdsParser, steps)
    e = rec.events[1]
    assert (e["success"], e["error_code"], e["error_class"], e["error"]) == \
        (False, 208, 16, "Invalid object name 'users'.")
    assert rec.threats == [(2022, CLIENT)]


def test_tds_rpc_sp_executesql_by_name_reads_its_statement():
    sql = "select * from t where a = @p"
    params = (b_varchar("") + b"\x00" + b"\xe7" + struct.pack("<H", 8000) + COLLATION
              + struct.pack("<H", 2 * len(sql)) + u16s(sql))
    rpc = ALL_HEADERS + struct.pack("<H", 13) + u16s("sp_executesql") + struct.pack("<H", 0) + params
    steps = TDS_LOGIN + [(CLIENT, tds(0x03, rpc)), (SERVER, tds(0x04, tds_done(0x10, 0, 0xFE)))]
    rec = both(TdsParser, steps)
    assert (rec.events[1]["procedure"], rec.events[1]["statement"], rec.events[1]["rows"]) == \
        ("sp_executesql", sql, 0)
    assert rec.joined("sql", CLIENT) == sql.encode()


def test_tds_sspi_challenge_does_not_end_the_login():
    sspi = b"\xed" + struct.pack("<H", 4) + b"NTLM"  # 2.2.7.22 SSPI token: the server's challenge
    steps = TDS_LOGIN[:3] + [(SERVER, tds(0x04, sspi)), (CLIENT, tds(0x11, b"NTLMSSP\0" + b"r" * 16)),
                             (SERVER, tds(0x04, tds_loginack() + tds_done())),
                             (CLIENT, tds(0x01, ALL_HEADERS + u16s("select 1"))), (SERVER, tds(0x04, tds_done(0x10, 1)))]
    rec = both(TdsParser, steps)
    assert [(e["cmd"], e["success"], e.get("rows")) for e in rec.events] == [("login", True, None),
                                                                             ("sql_batch", True, 1)]


def test_tds_encryption_on_ends_parsing_after_login_event():
    steps = [(CLIENT, tds(0x12, tds_prelogin(bytes(6), 1))), (SERVER, tds(0x04, tds_prelogin(bytes(6), 1))),
             (CLIENT, tds(0x12, b"\x16\x03\x01\x00\x20" + b"h" * 32))]
    rec = both(TdsParser, steps)
    assert [(e["cmd"], e["encryption"], e["username"]) for e in rec.events] == [("login", "on", None)]


def test_tds_encryption_off_login_encrypted_then_clear():
    steps = [(CLIENT, tds(0x12, tds_prelogin(bytes(6), 0))), (SERVER, tds(0x04, tds_prelogin(bytes(6), 0))),
             (CLIENT, tds(0x12, b"\x16\x03\x01\x00\x04" + b"h" * 4)), (SERVER, tds(0x12, b"\x16\x03\x03\x00\x02ok")),
             (CLIENT, b"\x17\x03\x03\x00\x30" + b"e" * 48),  # the LOGIN7, in a raw TLS record
             (SERVER, tds(0x04, tds_loginack() + tds_done())),
             (CLIENT, tds(0x01, ALL_HEADERS + u16s("select 1"))), (SERVER, tds(0x04, tds_done(0x10, 1)))]
    rec = both(TdsParser, steps)
    login, batch = rec.events
    assert (login["encryption"], login["login_encrypted"], login["success"], login["username"]) == \
        ("off", True, True, None)
    assert (batch["statement"], batch["rows"]) == ("select 1", 1)


def test_tds_real_capture_matches_tshark(shared_pcaps):
    # tshark -r mssql__ndpi__mssql_tds_flowsplit-a.pcap -d tcp.port==1433,tds -T fields -e frame.number
    #   -e tcp.srcport -e tds.type -e tds.query -e tds.rpc.name -e tds.rpc.proc_id:
    #   1 (1111) SQL batch " set transaction isolation level  read committed  set implicit_transactions off "
    #   3 RPC proc id 13 (sp_prepexec; -O tds shows its 3rd parameter "select * from test_table_1 where name =
    #   @P0 and id = @P1" padded with spaces), 5 (3333) RPC p_GetBogusData, 8/10/15/21 proc 13, 12/18 proc 12,
    #   30 p_SetBogusSample, 31 proc_GetMyExampleTableSampleMetaData
    # ... -Y tds.type==4 -e tds.done.status -e tds.done.donerowcount64 -e tds.doneproc.* -e tds.doneinproc.*:
    #   4: DONEINPROC 0x0011 rows 1; 13: DONEINPROC 0x0011 1 and 0x0011 1; 16: 0x0011 3; 19: 0x0011 3;
    #   11: 0x0011 1; 2, 7, 9, 22: no count flag
    events = run(SHARED / "mssql__ndpi__mssql_tds_flowsplit-a.pcap").app_events("mssql")
    got = {e["frame"]: (e["mssql"]["cmd"], e["mssql"]["procedure"], e["mssql"]["rows"]) for e in events}
    assert got == {1: ("sql_batch", None, None), 3: ("rpc", "sp_prepexec", 1), 5: ("rpc", "p_GetBogusData", None),
                   6: ("sql_batch", None, None), 8: ("rpc", "sp_prepexec", None), 10: ("rpc", "sp_prepexec", 1),
                   12: ("rpc", "sp_execute", 2), 15: ("rpc", "sp_prepexec", 3), 18: ("rpc", "sp_execute", 3),
                   21: ("rpc", "sp_prepexec", None), 23: ("rpc", "p_SaveExample", None),
                   30: ("rpc", "p_SetBogusSample", None), 31: ("rpc", "proc_GetMyExampleTableSampleMetaData", None)}
    by_frame = {e["frame"]: e["mssql"] for e in events}
    assert by_frame[1]["statement"] == " set transaction isolation level  read committed  set implicit_transactions off "
    assert by_frame[3]["statement"].rstrip() == "select * from test_table_1 where name = @P0 and id = @P1"
    assert by_frame[3]["success"] is True


# =============================================================================================================
# Oracle TNS (Wireshark packet-tns.c layout; NeuVector dpi_tns.c)
# =============================================================================================================

def tns(kind: int, body: bytes, large: bool = False) -> bytes:
    """Header: length (2, or 4 from version 315 after ACCEPT), checksum (2), type, flags, header checksum."""
    total = 8 + len(body)
    return (struct.pack(">I", total) if large else struct.pack(">HH", total, 0)) + bytes([kind, 0]) + b"\0\0" + body


def tns_connect(data: bytes, version: int = 315, inline: bool = True) -> bytes:
    """CONNECT: version, compatible version, service options, SDU, TDU, protocol characteristics, line
    turnaround, value of one, connect data length, offset (from the packet start), max receivable, flags."""
    offset = 58
    head = struct.pack(">HHHHHHHHHHIBB", version, 300, 0x0C41, 8192, 65535, 0x7F08, 0, 0x0100, len(data), offset,
                       0, 0x41, 0x41)
    body = head + b"\0" * (offset - 8 - len(head))
    return tns(1, body + (data if inline else b""))


def tns_accept(version: int = 315) -> bytes:
    return tns(2, struct.pack(">HHHHHHHBB", version, 0x0C41, 8192, 65535, 0x0100, 0, 32, 0x41, 0x41) + b"\0" * 9)


def tns_data(payload: bytes, large: bool = True, flags: int = 0) -> bytes:
    return tns(6, struct.pack(">H", flags) + payload, large)


DESCRIPTOR = (b"(DESCRIPTION=(CONNECT_DATA=(SERVICE_NAME=ORCLPDB1)(CID=(PROGRAM=JDBC Thin Client)(HOST=app01)"
              b"(USER=svc)))(ADDRESS=(PROTOCOL=TCP)(HOST=10.1.2.3)(PORT=1521)))")


def oall8(sql: bytes) -> bytes:
    """A TTC OALL8 call (function 0x03, call 0x5E) with marshalled options, then the SQL text (NeuVector reads
    the SELECT text up to a 0x00 / 0x01 byte)."""
    return b"\x03\x5e\x07\x02\x80\x21\x00\x01\x01" + bytes([len(sql)]) + b"\x01\x01\x0d" + sql + b"\x01\x01\x00\x00"


def test_tns_connect_accept_and_statements_with_large_lengths():
    attack = b"SELECT * FROM users WHERE name='' OR 1=1 --"
    steps = [(CLIENT, tns_connect(DESCRIPTOR)), (SERVER, tns_accept(315)),
             (CLIENT, tns_data(oall8(b"select ename from emp where deptno = :1"))),
             (SERVER, tns_data(b"\x08\x01\x06" + b"\0" * 20 + b"ORA-01403: no data found\n")),
             (CLIENT, tns_data(oall8(attack))),
             (SERVER, tns_data(b"\x04\x01\x02" + b"\0" * 20 + b"ORA-00942: table or view does not exist\n")),
             (CLIENT, tns_data(b"\x03\x0e\x00", flags=0x40))]
    rec = both(TnsParser, steps)
    connect, first, second = rec.events
    assert connect == {"cmd": "connect", "service_name": "ORCLPDB1", "sid": None, "host": "10.1.2.3", "port": 1521,
                       "program": "JDBC Thin Client", "client_host": "app01", "user": "svc", "version": 315,
                       "result": "accept", "error_code": None, "redirect": None,
                       "connect_data": DESCRIPTOR.decode()}
    assert first == {"cmd": "statement", "statement": "select ename from emp where deptno = :1",
                     "function": "oci:0x5e", "success": True, "error_code": None, "error": None}
    assert (second["statement"], second["success"], second["error_code"], second["error"]) == \
        (attack.decode(), False, 942, "table or view does not exist")
    assert rec.frames == [1, 3, 5]
    assert rec.threats == [(2022, CLIENT)]


def test_tns_before_315_keeps_16_bit_lengths():
    steps = [(CLIENT, tns_connect(DESCRIPTOR, version=314)), (SERVER, tns_accept(314)),
             (CLIENT, tns_data(oall8(b"update emp set sal = sal * 2"), large=False))]
    rec = both(TnsParser, steps)
    assert [e["cmd"] for e in rec.events] == ["connect", "statement"]
    assert rec.events[1]["statement"] == "update emp set sal = sal * 2"


def test_tns_refuse_and_resend():
    refusal = b"(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR=12514)(ERROR_STACK=(ERROR=(CODE=12514)(EMFI=4))))"
    steps = [(CLIENT, tns_connect(DESCRIPTOR)), (SERVER, tns(11, b"")), (CLIENT, tns_connect(DESCRIPTOR)),
             (SERVER, tns(4, b"\x22\x00" + struct.pack(">H", len(refusal)) + refusal))]
    rec = both(TnsParser, steps)
    assert [(e["result"], e["error_code"]) for e in rec.events] == [("refuse", 12514)]
    assert rec.frames == [1]


def test_tns_connect_data_in_the_next_data_packet():
    long_descriptor = DESCRIPTOR.replace(b"JDBC Thin Client", b"P" * 200)
    steps = [(CLIENT, tns_connect(long_descriptor, inline=False)), (CLIENT, tns_data(long_descriptor, large=False)),
             (SERVER, tns_accept(312))]
    rec = both(TnsParser, steps)
    assert (rec.events[0]["program"], rec.events[0]["service_name"]) == ("P" * 200, "ORCLPDB1")


def test_connect_descriptor_parsing_is_bounded():
    assert connect_data("(A=" * 10000) == {}
    items = connect_data("(DESCRIPTION=(ADDRESS_LIST=(ADDRESS=(PROTOCOL=tcp)(HOST=h1)(PORT=1)))(x=1)")
    assert items["ADDRESS.HOST"] == "h1" and items["DESCRIPTION.X"] == "1"


def test_tns_real_capture_matches_tshark(shared_pcaps):
    # tshark -r oracle__ndpi__oracle12.pcap -T fields -e frame.number -e tns.type -e tns.length -e tns.version
    #   -e tns.connect_data: 4 Connect (1) 212 315 "(DESCRIPTION=(CONNECT_DATA=(SID=igor)(CID=(PROGRAM=
    #   sqlplus@kali)(HOST=kali)(USER=root)))(ADDRESS=(PROTOCOL=TCP)(HOST=10.0.72.139)(PORT=1521)))"; 6 Resend
    #   (11); 8 the same Connect; 10 Accept (2) version 315; 11-20 Data (6) with 4-byte lengths (164, 127, ...):
    #   Secure Network Services, Set Protocol, Set Datatypes, User OCI Functions (session key) -- no SQL text
    events = run(SHARED / "oracle__ndpi__oracle12.pcap").app_events("oracle")
    assert [e["frame"] for e in events] == [4]
    e = events[0]["oracle"]
    assert (e["sid"], e["program"], e["client_host"], e["user"], e["host"], e["port"]) == \
        ("igor", "sqlplus@kali", "kali", "root", "10.0.72.139", 1521)
    assert (e["version"], e["result"]) == (315, "accept")


def test_tns_real_capture_framing_with_32_bit_lengths(shared_pcaps):
    """The 12c DATA packets after ACCEPT 315 are framed by their 4-byte length: no anomaly, and every byte
    of both directions is consumed (split=1 agrees)."""
    (flow,) = tcp_flows(SHARED / "oracle__ndpi__oracle12.pcap", 1521)
    rec = both(TnsParser, flow)
    assert rec.anomalies == [] and len(rec.events) == 1


# =============================================================================================================
# Through the whole pipeline: events and alert records
# =============================================================================================================

def conversation(path, steps: list[tuple[int, bytes]], server_port: int):
    """A capture of one TCP connection (handshake, the steps as segments, FINs), written with pcapgen."""
    import pcapgen
    c, s, cp = "10.0.0.1", "10.0.0.2", 40001
    seq, t = [1001, 5001], 1.0
    pkts = [(t, pcapgen.tcp(c, cp, s, server_port, "S", seq=1000)),
            (t + 0.001, pcapgen.tcp(s, server_port, c, cp, "SA", seq=5000, ack=1001)),
            (t + 0.002, pcapgen.tcp(c, cp, s, server_port, "A", seq=1001, ack=5001))]
    for i, (side, data) in enumerate(steps):
        src, sp, dst, dp = (c, cp, s, server_port) if side == CLIENT else (s, server_port, c, cp)
        pkts.append((t + 0.01 * (i + 1), pcapgen.tcp(src, sp, dst, dp, "PA", seq=seq[side], ack=seq[1 - side],
                                                     data=data)))
        seq[side] += len(data)
    pkts.append((t + 1, pcapgen.tcp(c, cp, s, server_port, "FA", seq=seq[0], ack=seq[1])))
    pkts.append((t + 1.001, pcapgen.tcp(s, server_port, c, cp, "FA", seq=seq[1], ack=seq[0] + 1)))
    return run(pcapgen.write(path, pkts))


def test_pipeline_mysql_threats_become_alerts(tmp_path):
    attack = b"SELECT * FROM users WHERE name='' or 'x'='x'"
    steps = [(SERVER, my_greeting()), (CLIENT, my_login(b"root")),
             (SERVER, my_err(2, 1045, b"28000", b"Access denied for user 'root'@'10.0.0.1'"))]
    denied = conversation(tmp_path / "denied.pcap", steps, 3306)
    (alert,) = denied.alerts(2018)
    assert (alert["src_ip"], alert["dest_ip"], alert["direction"], alert["app_proto"]) == \
        ("10.0.0.2", "10.0.0.1", "toclient", "mysql")
    assert alert["message"] == "user=root"
    injected = conversation(tmp_path / "injected.pcap", my_session((my(0, b"\x03" + attack), my_ok(1))), 3306)
    (alert,) = injected.alerts(2022)
    assert (alert["src_ip"], alert["direction"], alert["frame"]) == ("10.0.0.1", "toserver", 7)
    assert [e["mysql"]["cmd"] for e in injected.app_events("mysql")] == ["login", "query"]


# =============================================================================================================
# All four: hostile bytes never raise, truncations of the real samples, bounded buffers
# =============================================================================================================

REAL = {MysqlParser: ("mysql__ndpi__mysql.pcap", 3306), PostgresParser: ("postgresql__ndpi__pgsql.pcap", 5432),
        TdsParser: ("mssql__ndpi__mssql_tds_flowsplit-a.pcap", 1433), TnsParser: ("oracle__ndpi__oracle12.pcap", 1521)}
SPEC_SAMPLES = {MysqlParser: my_session((my(0, b"\x03select 1"), my_result(1, [b"1"], [[b"1"]]))),
                PostgresParser: PG_LOGIN + [(CLIENT, pg(b"Q", b"select 1\0")), (SERVER, pg(b"C", b"SELECT 1\0"))],
                TdsParser: TDS_LOGIN + [(CLIENT, tds(0x01, ALL_HEADERS + u16s("select 1")))],
                TnsParser: [(CLIENT, tns_connect(DESCRIPTOR)), (SERVER, tns_accept()),
                            (CLIENT, tns_data(oall8(b"select 1 from dual")))]}


@pytest.mark.parametrize("cls", PARSERS, ids=lambda c: c.__name__)
def test_hostile_bytes_never_raise(cls):
    rnd = random.Random(cls.__name__)
    base = SPEC_SAMPLES[cls]
    for i in range(400):
        steps = []
        for side, data in base:
            data = bytearray(data)
            r = rnd.random()
            if r < 0.35 and data:
                for _ in range(rnd.randint(1, 6)):
                    data[rnd.randrange(len(data))] = rnd.choice((0, 0xFF, 0xFE, 0x7F, rnd.randrange(256)))
            elif r < 0.5:
                data = data[: rnd.randrange(len(data) + 1)]
            elif r < 0.6:
                data = bytearray(rnd.randbytes(rnd.randint(0, 80)))
            steps.append((side if rnd.random() > 0.05 else 1 - side, bytes(data)))
        split = rnd.choice((0, 0, 1, 5))
        (drive_mid if i % 4 == 0 else drive)(cls, steps, split=split)
    for blob in (b"\xff" * 64, b"\x00" * 64, struct.pack(">I", 0xFFFFFFFF) * 8, b"\x16\x03" * 20):
        drive(cls, [(CLIENT, blob), (SERVER, blob)])
        drive_mid(cls, [(SERVER, blob), (CLIENT, blob)])


@pytest.mark.parametrize("cls", PARSERS, ids=lambda c: c.__name__)
def test_every_truncation_of_the_real_samples(cls, shared_pcaps):
    name, port = REAL[cls]
    for flow in tcp_flows(SHARED / name, port):
        steps = flow[:12]
        for i, (side, data) in enumerate(steps):
            if len(data) > 600:
                continue
            for cut in range(len(data)):
                drive(cls, steps[:i] + [(side, data[:cut])])


@pytest.mark.parametrize("cls", PARSERS, ids=lambda c: c.__name__)
def test_real_samples_split_into_single_bytes_read_the_same(cls, shared_pcaps):
    name, port = REAL[cls]
    for flow in tcp_flows(SHARED / name, port):
        both(cls, flow)


@pytest.mark.parametrize("cls", PARSERS, ids=lambda c: c.__name__)
def test_buffers_stay_bounded_on_endless_messages(cls):
    """A message announcing a huge length is skipped by count: the parser never holds more than its limit."""
    rec = Recorder()
    parser = cls(rec, FlowContext("tcp", 40000, 0, True))
    heads = {MysqlParser: b"\xff\xff\xff\x00\x03", PostgresParser: b"Q\x7f\xff\xff\xff",
             TdsParser: b"\x01\x00\xff\xff\x00\x00\x01\x00", TnsParser: b"\x7f\xff\xff\xff\x06\x00\x00\x00"}
    parser.feed(CLIENT, heads[cls], 1, 0)
    for i in range(200):
        parser.feed(CLIENT, b"select " * 1000, i + 2, 0)
    framers = [v for v in vars(parser).values() if isinstance(v, Framer)]
    framers += [f for v in vars(parser).values() if isinstance(v, tuple) for f in v if isinstance(f, Framer)]
    assert framers and all(len(f.buf) <= 1 << 16 for f in framers)
    messages = [m for m in getattr(parser, "msgs", []) if m is not None]  # TDS: packets joined into a message
    assert all(len(m[1]) <= 1 << 18 for m in messages)
    parser.finish()


def test_command_tags_with_non_ascii_digits_have_no_row_count():
    assert (tag_rows("SELECT 5"), tag_rows("INSERT 0 12"), tag_rows("SELECT ²"), tag_rows("BEGIN")) == (5, 12, None, None)
