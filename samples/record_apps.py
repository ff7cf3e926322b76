#!/usr/bin/env python3
"""Small application-protocol captures for nvpcap's tests: samples/pcaps/apps/ (+ MANIFEST.csv there).

Two kinds of capture, each marked in MANIFEST.csv (`how`):

RECORDED  real traffic between a real server (a Debian package) and a real client library (PyPI) on the
          loopback interface. For each protocol the script starts the server in the background with a
          throw-away data directory (systemd does not run here), starts `tcpdump -i lo -s 0 -w FILE 'port N'`,
          waits until tcpdump listens, drives a short, realistic client session (a login/handshake, typical
          commands, an error, for SQL an injection-looking query), waits, stops tcpdump with SIGINT and
          stops the server. A protocol whose server or client is missing, or whose server does not start,
          is skipped with a message and its committed capture is left as it is. Recordings are not
          byte-for-byte reproducible (timestamps, ports, random nonces differ per run).

CONSTRUCTED  for protocols without a server in Debian (couchbase, voltdb, consul, spark): every message is
          built byte by byte from the protocol's specification (the section is cited at each message),
          carried in a TCP session (handshake, request/response segments, FIN) or UDP datagrams, Ethernet +
          IPv4 with real checksums (dpkt), fixed addresses and timestamps: deterministic output, named
          `<proto>_constructed.pcap`.

What recording needs (Debian 12, as root: tcpdump on `lo`, the echo service on port 7, servers run as root
or as the `postgres` user):

    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tcpdump redis-server \\
        memcached mariadb-server mariadb-client postgresql etcd-server etcd-client zookeeper \\
        rabbitmq-server inetutils-inetd
    python3 -m pip install redis pymemcache PyMySQL 'psycopg[binary]' kazoo pika

(the client libraries are for recording only, not nvpcap dependencies). The constructed part needs only
dpkt (an nvpcap dependency). The standard server ports must be free on 127.0.0.1 (6379, 11211, 3306, 5432,
2379/2380, 2181, 5672, 7): a protocol whose port is taken is skipped.

Usage:

    python3 samples/record_apps.py [--out samples/pcaps/apps]          # record all, construct all
    python3 samples/record_apps.py --only redis,mysql                   # just these (names below)
    python3 samples/record_apps.py --recorded | --constructed           # one kind only
    python3 samples/record_apps.py --list

Every capture written updates its row in MANIFEST.csv (file, app, how, server_port, notes, xfail_reason);
rows of captures not rewritten stay as they are, and so does a row's `xfail_reason` (set by hand when
nvpcap is known to get a capture wrong; tests/test_app_samples.py then expects the failure). `notes` ends
with how nvpcap labelled the server-port flows when the capture was written (for information only).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.metadata
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "pcaps" / "apps"
FIELDS = ["file", "app", "how", "server_port", "notes", "xfail_reason"]
MAX_SIZE = 100 * 1024
LO = "127.0.0.1"


class Skip(Exception):
    """This protocol cannot be recorded here (missing tool, server did not start, port taken)."""


@dataclass
class Capture:
    file: str
    app: str
    how: str
    server_port: str  # one port, or several joined by ';'
    notes: str


# ----------------------------------------------------------------------------------------------------------
# recording helpers
# ----------------------------------------------------------------------------------------------------------

def need(*tools: str) -> None:
    for tool in tools:
        if not (shutil.which(tool) or Path(tool).exists()):
            raise Skip(f"{tool} is not installed")


def need_module(*names: str) -> None:
    for name in names:
        try:
            __import__(name)
        except ImportError:
            raise Skip(f"python module {name} is not installed (pip install it)") from None


def pkg_version(package: str) -> str:
    """The installed Debian package's version."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def py_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def port_free(port: int, udp: bool = False) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LO, port))
        except OSError:
            return False
    return True


def wait_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until something accepts TCP connections on 127.0.0.1:port (or the server died / timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip(f"server exited with {proc.returncode}: {tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((LO, port)) == 0:
                return
        time.sleep(0.25)
    raise Skip(f"server did not listen on {port} within {timeout:.0f}s: {tail(log)}")


def tail(log: Path, n: int = 400) -> str:
    try:
        return log.read_text(errors="replace")[-n:].replace("\n", " | ")
    except OSError:
        return "(no log)"


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise Skip(f"{' '.join(argv[:3])}... failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-400:]}")
    return proc


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server this script started (it runs in its own process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def server(argv: list[str], port: int, tmp: Path, name: str, timeout: float = 30, env: dict | None = None,
           user: str | None = None) -> Iterator[subprocess.Popen]:
    """Run a server in the background (own process group, output to tmp/<name>.log) until it listens."""
    log = tmp / f"{name}.log"
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=tmp, start_new_session=True)
    try:
        wait_port(port, proc, timeout, log)
        yield proc
    finally:
        stop_group(proc)


@contextlib.contextmanager
def tcpdump(dst: Path, bpf: str) -> Iterator[dict]:
    """Capture on lo into dst (written only when the block succeeds). The block may set `keep` in the dict
    it gets to a BPF filter: only the packets matching it are kept (`tcpdump -r` after the capture)."""
    part = Path(tempfile.mkdtemp(prefix="rec-")) / dst.name
    proc = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-Z", "root", "-w", str(part), bpf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    listening = threading.Event()
    lines: list[str] = []

    def reader() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line.strip())
            if "listening on" in line:
                listening.set()

    threading.Thread(target=reader, daemon=True).start()
    if not listening.wait(10):
        stop_group(proc)
        raise Skip(f"tcpdump did not start: {' | '.join(lines)[-400:]}")
    time.sleep(0.3)
    ok = False
    opts: dict = {}
    try:
        yield opts
        ok = True
    finally:
        time.sleep(0.7)  # the last ACKs/FINs
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_group(proc)
        if ok and opts.get("keep"):
            kept = part.with_suffix(".kept")
            subprocess.run(["tcpdump", "-n", "-Z", "root", "-r", str(part), "-w", str(kept), opts["keep"]], check=True,
                           capture_output=True)
            kept.replace(part)
        if ok:
            shutil.move(str(part), dst)
        shutil.rmtree(part.parent, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# recorded sessions
# ----------------------------------------------------------------------------------------------------------

def rec_redis(out: Path, tmp: Path) -> Capture:
    need("redis-server")
    need_module("redis")
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    port = 6379
    password = "s3cret-pass"
    argv = ["redis-server", "--port", str(port), "--bind", LO, "--save", "", "--appendonly", "no",
            "--dir", str(tmp), "--requirepass", password, "--daemonize", "no"]
    with server(argv, port, tmp, "redis"), tcpdump(out / "redis.pcap", f"tcp port {port}"):
        # redis-py's default RESP3 handshake (HELLO 3 AUTH default ...) with a wrong password, not retried
        bad = redis.Redis(host=LO, port=port, password="wrong-password", socket_timeout=5,
                          retry=Retry(NoBackoff(), 0))
        with contextlib.suppress(redis.AuthenticationError):
            bad.ping()
        bad.close()
        # RESP2: AUTH <password>, then CLIENT SETINFO
        r = redis.Redis(host=LO, port=port, password=password, socket_timeout=5, decode_responses=True,
                        protocol=2)
        r.ping()
        r.set("user:1001:name", "alice")
        r.get("user:1001:name")
        r.incr("page:views")
        r.incr("page:views")
        r.hset("session:42", mapping={"user": "alice", "role": "admin"})
        r.expire("session:42", 300)
        r.hgetall("session:42")
        r.lpush("jobs", "resize:17", "resize:18")
        r.lrange("jobs", 0, -1)
        with contextlib.suppress(redis.ResponseError):
            r.lpush("user:1001:name", "x")  # WRONGTYPE
        r.delete("jobs", "session:42")
        r.close()
    return Capture("redis.pcap", "redis",
                   f"recorded: redis-server {pkg_version('redis-server')}; client redis-py {py_version('redis')}",
                   str(port), "a first connection: RESP3 HELLO 3 AUTH with a wrong password (WRONGPASS); then RESP2: "
                   "AUTH, CLIENT SETINFO (unknown to 7.0: ERR), PING, SET/GET, INCR, HSET/EXPIRE/HGETALL, "
                   "LPUSH/LRANGE, a WRONGTYPE error, DEL")


def rec_memcached(out: Path, tmp: Path) -> Capture:
    need("memcached")
    need_module("pymemcache")
    from pymemcache.client.base import Client

    port = 11211
    argv = ["memcached", "-u", "root", "-l", LO, "-p", str(port), "-U", "0", "-m", "16", "-t", "1"]
    with server(argv, port, tmp, "memcached"), tcpdump(out / "memcached.pcap", f"tcp port {port}"):
        c = Client((LO, port), connect_timeout=5, timeout=5, default_noreply=False)
        c.version()
        c.set("user:1001", "alice", expire=300)
        c.get("user:1001")
        c.set_many({"cfg:theme": "dark", "cfg:lang": "en"})
        c.get_many(["cfg:theme", "cfg:lang", "cfg:missing"])
        c.add("user:1001", "bob")  # NOT_STORED
        c.set("hits", "10")
        c.incr("hits", 5)
        c.decr("hits", 2)
        _value, cas = c.gets("user:1001")
        c.cas("user:1001", "alice2", cas)
        c.delete("cfg:lang")
        c.get("cfg:lang")
        c.quit()
    return Capture("memcached.pcap", "memcached",
                   f"recorded: memcached {pkg_version('memcached')}; client pymemcache {py_version('pymemcache')}",
                   str(port), "text protocol (replies on): version, set/get, get_multi with a miss, add NOT_STORED, "
                   "incr/decr, "
                   "gets/cas, delete, quit")


def rec_mysql(out: Path, tmp: Path) -> Capture:
    need("mariadbd", "mariadb-install-db", "mariadb")
    need_module("pymysql")
    import pymysql

    port = 3306
    data, sock = tmp / "data", tmp / "mysqld.sock"
    run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root", "--skip-test-db",
         "--auth-root-authentication-method=socket"])
    argv = ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
            f"--bind-address={LO}", "--user=root", "--skip-name-resolve", "--skip-log-bin",
            f"--pid-file={tmp / 'mysqld.pid'}", "--innodb-buffer-pool-size=16M", "--skip-ssl"]
    with server(argv, port, tmp, "mariadb", timeout=60):
        run(["mariadb", "--no-defaults", "-S", str(sock), "-u", "root", "-e",
             "CREATE DATABASE shop; CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'app-pass-1'; "
             "GRANT ALL ON shop.* TO 'app'@'127.0.0.1';"])
        with tcpdump(out / "mysql.pcap", f"tcp port {port}"):
            with contextlib.suppress(pymysql.err.OperationalError):  # ERR 1045 access denied
                pymysql.connect(host=LO, port=port, user="app", password="wrong-pass", database="shop").close()
            db = pymysql.connect(host=LO, port=port, user="app", password="app-pass-1", database="shop")
            with db.cursor() as cur:
                cur.execute("CREATE TABLE users (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(64), "
                            "email VARCHAR(128))")
                cur.executemany("INSERT INTO users (name, email) VALUES (%s, %s)",
                                [("alice", "alice@example.com"), ("bob", "bob@example.com")])
                db.commit()
                cur.execute("SELECT id, email FROM users WHERE name = %s", ("alice",))
                cur.fetchall()
                cur.execute("SELECT * FROM users WHERE name='' OR 'a'='a'")
                cur.fetchall()
                with contextlib.suppress(pymysql.err.ProgrammingError):
                    cur.execute("SELECT * FROM orders")  # ERR 1146: table doesn't exist
            db.close()  # COM_QUIT
    return Capture("mysql.pcap", "mysql",
                   f"recorded: mariadb-server {pkg_version('mariadb-server')}; client PyMySQL {py_version('PyMySQL')}",
                   str(port), "two connections: wrong password (ERR 1045), then login (mysql_native_password), "
                   "CREATE TABLE, INSERT, SELECT, injection-looking SELECT ... WHERE name='' OR 'a'='a', "
                   "SELECT on a missing table (ERR 1146), COM_QUIT; no TLS")


def rec_postgresql(out: Path, tmp: Path) -> Capture:
    bindir = Path("/usr/lib/postgresql")
    versions = sorted(bindir.glob("*/bin/postgres"))
    if not versions:
        raise Skip("postgresql is not installed")
    bindir = versions[-1].parent
    need_module("psycopg")
    import psycopg

    port = 5432
    data = tmp / "pgdata"
    shutil.chown(tmp, "postgres")
    pw = tmp / "pw"
    pw.write_text("pg-admin-pass\n")
    shutil.chown(pw, "postgres")
    run(["runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
         "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pw}", "-E", "UTF8", "--locale=C"])
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-c", f"listen_addresses={LO}",
            "-c", f"unix_socket_directories={tmp}", "-c", "ssl=off", "-c", "fsync=off"]
    with server(argv, port, tmp, "postgres", user="postgres"):
        run(["runuser", "-u", "postgres", "--", str(bindir / "psql"), "-h", str(tmp), "-p", str(port), "-U",
             "postgres", "-q", "-c", "CREATE USER app PASSWORD 'app-pass-1'", "-c", "CREATE DATABASE shop OWNER app"])
        with tcpdump(out / "postgresql.pcap", f"tcp port {port}"):
            # libpq's default sslmode=prefer: SSLRequest, 'N', startup, SCRAM, FATAL 28P01
            with contextlib.suppress(psycopg.OperationalError):
                psycopg.connect(host=LO, port=port, user="app", password="wrong-pass", dbname="shop",
                                connect_timeout=5).close()
            with psycopg.connect(host=LO, port=port, user="app", password="app-pass-1", dbname="shop",
                                 sslmode="disable", application_name="record_apps", connect_timeout=5) as db:
                with db.cursor() as cur:
                    cur.execute("CREATE TABLE users (id serial PRIMARY KEY, name text, email text)")
                    cur.executemany("INSERT INTO users (name, email) VALUES (%s, %s)",
                                    [("alice", "alice@example.com"), ("bob", "bob@example.com")])
                    db.commit()
                    cur.execute("SELECT id, email FROM users WHERE name = %s", ("alice",))
                    cur.fetchall()
                    cur.execute("SELECT * FROM users WHERE name='' OR 'a'='a'")
                    cur.fetchall()
                    with contextlib.suppress(psycopg.errors.UndefinedTable):
                        cur.execute("SELECT * FROM orders")  # ERROR 42P01
                    db.rollback()
    return Capture("postgresql.pcap", "postgresql",
                   f"recorded: postgresql-{bindir.parent.name} {pkg_version('postgresql-' + bindir.parent.name)}; "
                   f"client psycopg {py_version('psycopg')} (libpq from psycopg-binary)", str(port),
                   "two connections: sslmode=prefer (SSLRequest answered 'N') with a wrong password (SCRAM-SHA-256, "
                   "FATAL 28P01); then sslmode=disable login, CREATE TABLE, INSERT (extended query protocol), "
                   "SELECT, injection-looking SELECT ... WHERE name='' OR 'a'='a', SELECT on a missing table "
                   "(ERROR 42P01), ROLLBACK, Terminate")


ETCD_NOTE = ("etcd v3.4 JSON gRPC-gateway over HTTP/1.1 (no TLS) with one keep-alive connection (the gateway's "
             "own gRPC connection to the port is filtered out): GET /version, "
             "GET /health, POST /v3/kv/put, POST /v3/kv/range (key and prefix), POST /v3/kv/deleterange, a POST "
             "with a malformed JSON body (400); then the v2 keys API (--enable-v2): PUT and GET /v2/keys/..., "
             "a GET of a missing key (404), answered with X-Etcd-Cluster-Id (NeuVector's etcd marker, "
             "dpi_http.c); the v3 gateway answers alone carry no etcd-specific header. NeuVector/nvpcap treat "
             "etcd as an HTTP server product "
             "(docs/schema.md: app_product etcd), so the expected label is app_proto http with app_product etcd")


@contextlib.contextmanager
def etcd_server(tmp: Path) -> Iterator[None]:
    need("etcd")
    for p in (2379, 2380):
        if not port_free(p):
            raise Skip(f"port {p} is taken")
    url_c, url_p = f"http://{LO}:2379", f"http://{LO}:2380"
    argv = ["etcd", "--name", "rec", "--data-dir", str(tmp / "etcd"), "--listen-client-urls", url_c,
            "--advertise-client-urls", url_c, "--listen-peer-urls", url_p, "--initial-advertise-peer-urls", url_p,
            "--initial-cluster", f"rec={url_p}", "--log-level", "warn", "--enable-v2=true"]
    with server(argv, 2379, tmp, "etcd"):
        time.sleep(1.5)  # leader election
        yield


def rec_etcd(out: Path, tmp: Path) -> Capture:
    import base64
    import http.client
    import json

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    port = 2379
    with etcd_server(tmp), tcpdump(out / "etcd.pcap", f"tcp port {port}") as cap:
        conn = http.client.HTTPConnection(LO, port, timeout=5)
        conn.connect()
        # etcd's gateway forwards each JSON call over its own gRPC connection to the same port: keep only
        # this client's connection
        cap["keep"] = f"tcp port {conn.sock.getsockname()[1]}"
        def call(method: str, path: str, body: dict | bytes | None = None, form: bool = False) -> None:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            headers = {"User-Agent": "record_apps/1.0"}
            if data is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
            conn.request(method, path, body=data, headers=headers)
            conn.getresponse().read()

        call("GET", "/version")
        call("GET", "/health")
        call("POST", "/v3/kv/put", {"key": b64("app/config/db"), "value": b64("postgres://db:5432/shop")})
        call("POST", "/v3/kv/put", {"key": b64("app/config/cache"), "value": b64("redis://cache:6379")})
        call("POST", "/v3/kv/range", {"key": b64("app/config/db")})
        call("POST", "/v3/kv/range", {"key": b64("app/"), "range_end": b64("app0"), "keys_only": True})
        call("POST", "/v3/kv/deleterange", {"key": b64("app/config/cache")})
        call("POST", "/v3/kv/range", b"{not json")  # 400
        # the v2 keys API (etcd 3.4 --enable-v2): its answers carry X-Etcd-Cluster-Id, X-Etcd-Index, X-Raft-*
        call("PUT", "/v2/keys/app/feature-flag", b"value=on", form=True)
        call("GET", "/v2/keys/app/feature-flag")
        call("GET", "/v2/keys/app/missing")  # 404, errorCode 100
        conn.close()
    return Capture("etcd.pcap", "etcd",
                   f"recorded: etcd-server {pkg_version('etcd-server')}; client python http.client "
                   f"{sys.version.split()[0]}", str(port), ETCD_NOTE)


def rec_etcd_grpc(out: Path, tmp: Path) -> Capture:
    need("etcdctl")
    port = 2379
    env = {**os.environ, "ETCDCTL_API": "3"}
    with etcd_server(tmp), tcpdump(out / "etcd_grpc.pcap", f"tcp port {port}"):
        ep = f"--endpoints={LO}:{port}"
        for args in (["put", "app/config/db", "postgres://db:5432/shop"], ["get", "--prefix", "app/"],
                     ["del", "app/config/db"]):
            run(["etcdctl", ep, "--dial-timeout=5s", *args], env=env)
    return Capture("etcd_grpc.pcap", "grpc",
                   f"recorded: etcd-server {pkg_version('etcd-server')}; client etcdctl {pkg_version('etcd-client')} "
                   "(gRPC)", str(port),
                   "etcd v3 native API: three etcdctl runs (put, get --prefix, del), each a cleartext HTTP/2 gRPC "
                   "connection (etcdserverpb.KV/Put, /Range, /DeleteRange). Labelled grpc: its HTTP/2 answers carry no "
                   "etcd marker (no X-Etcd-Cluster-Id header), so nothing names the product")


def rec_zookeeper(out: Path, tmp: Path) -> Capture:
    need("java", "/usr/share/java/zookeeper.jar")
    need_module("kazoo")
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoNodeError

    port = 2181
    cfg = tmp / "zoo.cfg"
    cfg.write_text(f"tickTime=2000\ndataDir={tmp / 'zk'}\nclientPort={port}\nclientPortAddress={LO}\n"
                   "admin.enableServer=false\nmaxClientCnxns=10\n")
    argv = ["java", "-Xmx128m", "-cp", "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
            "-Dzookeeper.root.logger=WARN,CONSOLE", "-Dzookeeper.log.dir=" + str(tmp),
            "org.apache.zookeeper.server.ZooKeeperServerMain", str(cfg)]
    with server(argv, port, tmp, "zookeeper", timeout=60):
        time.sleep(0.5)
        with tcpdump(out / "zookeeper.pcap", f"tcp port {port}"):
            zk = KazooClient(hosts=f"{LO}:{port}", timeout=10)
            zk.start(timeout=10)
            zk.ensure_path("/app/config")
            zk.create("/app/config/db", b"postgres://db:5432/shop")
            zk.get("/app/config/db")
            zk.set("/app/config/db", b"postgres://db2:5432/shop")
            zk.get_children("/app/config")
            zk.create("/app/workers/w-", b"host-a", ephemeral=True, sequence=True, makepath=True)
            zk.exists("/app/missing")
            with contextlib.suppress(NoNodeError):
                zk.get("/app/missing")
            zk.delete("/app/config/db")
            zk.stop()
            zk.close()
    return Capture("zookeeper.pcap", "zookeeper",
                   f"recorded: zookeeper {pkg_version('zookeeper')} (standalone ZooKeeperServerMain); client kazoo "
                   f"{py_version('kazoo')}", str(port),
                   "ConnectRequest/Response, create/exists (ensure_path), create, getData, setData, getChildren2, "
                   "create ephemeral-sequential, exists + getData on a missing node (NONODE), delete, closeSession")


def rec_rabbitmq(out: Path, tmp: Path) -> Capture:
    server_bin = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    need(server_bin, "epmd")
    need_module("pika")
    import pika

    port = 5672
    if not port_free(25672):
        raise Skip("port 25672 (Erlang distribution) is taken")
    (tmp / "enabled_plugins").write_text("[].\n")
    (tmp / "rabbitmq.conf").write_text("cluster_name = rabbit@localhost\n")  # not the machine's host name
    env = {"HOME": str(tmp), "RABBITMQ_NODENAME": "rabbit@localhost", "RABBITMQ_NODE_IP_ADDRESS": LO,
           "RABBITMQ_NODE_PORT": str(port), "RABBITMQ_DIST_PORT": "25672", "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
           "RABBITMQ_LOG_BASE": str(tmp / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
           "RABBITMQ_PID_FILE": str(tmp / "rabbit.pid"), "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq")}
    epmd = None
    if port_free(4369):  # our own epmd in the foreground, stopped with the server (rabbit would daemonize one)
        epmd = subprocess.Popen(["epmd", "-address", LO], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(0.5)
    try:
        with server([server_bin], port, tmp, "rabbitmq", timeout=90, env=env):
            time.sleep(1)
            with tcpdump(out / "rabbitmq.pcap", f"tcp port {port}"):
                with contextlib.suppress(pika.exceptions.AMQPConnectionError):  # 403 ACCESS_REFUSED
                    pika.BlockingConnection(pika.ConnectionParameters(
                        LO, port, credentials=pika.PlainCredentials("guest", "wrong-pass"),
                        connection_attempts=1)).close()
                conn = pika.BlockingConnection(pika.ConnectionParameters(
                    LO, port, credentials=pika.PlainCredentials("guest", "guest"), heartbeat=60))
                ch = conn.channel()
                ch.exchange_declare("orders", exchange_type="direct")
                ch.queue_declare("orders.new")
                ch.queue_bind("orders.new", "orders", routing_key="new")
                props = pika.BasicProperties(content_type="application/json", delivery_mode=2)
                ch.basic_publish("orders", "new", b'{"order": 1001, "sku": "A-17"}', props)
                ch.basic_publish("orders", "new", b'{"order": 1002, "sku": "B-03"}', props)
                for _ in range(2):
                    method, _props, _body = ch.basic_get("orders.new")
                    if method:
                        ch.basic_ack(method.delivery_tag)
                ch.queue_delete("orders.new")
                ch.exchange_delete("orders")
                ch.close()
                conn.close()
    finally:
        if epmd is not None:
            stop_group(epmd)
    return Capture("rabbitmq.pcap", "rabbitmq",
                   f"recorded: rabbitmq-server {pkg_version('rabbitmq-server')}; client pika {py_version('pika')}",
                   str(port), "AMQP 0-9-1: a login with a wrong password (Connection.Close 403 ACCESS_REFUSED), "
                   "then PLAIN login, Channel.Open, Exchange/Queue declare + bind, two Basic.Publish, Basic.Get + "
                   "Ack, Queue/Exchange delete, Channel/Connection close")


def rec_echo(out: Path, tmp: Path) -> Capture:
    need("/usr/sbin/inetutils-inetd")
    port = 7
    if not port_free(port, udp=True):
        raise Skip("udp port 7 is taken")
    conf = tmp / "inetd.conf"
    conf.write_text("echo stream tcp nowait root internal\necho dgram udp wait root internal\n")
    with server(["/usr/sbin/inetutils-inetd", "-d", str(conf)], port, tmp, "inetd"):
        with tcpdump(out / "echo.pcap", f"port {port}"):
            with socket.create_connection((LO, port), timeout=5) as s:
                for line in (b"hello echo server\r\n", b"second line: 0123456789\r\n"):
                    s.sendall(line)
                    got = b""
                    while len(got) < len(line):
                        got += s.recv(4096)
                s.shutdown(socket.SHUT_WR)
                s.recv(4096)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.settimeout(5)
                for msg in (b"ping 1", b"ping 2 with a longer payload"):
                    u.sendto(msg, (LO, port))
                    u.recvfrom(4096)
    return Capture("echo.pcap", "echo",
                   f"recorded: inetutils-inetd {pkg_version('inetutils-inetd')} (internal echo service); client "
                   "python sockets", str(port), "RFC 862 echo on TCP (two lines echoed, client half-close, FIN) and "
                   "UDP (two datagrams echoed)")


RECORDED: dict[str, Callable[[Path, Path], Capture]] = {
    "redis": rec_redis, "memcached": rec_memcached, "mysql": rec_mysql, "postgresql": rec_postgresql,
    "etcd": rec_etcd, "etcd_grpc": rec_etcd_grpc, "zookeeper": rec_zookeeper, "rabbitmq": rec_rabbitmq,
    "echo": rec_echo,
}
RECORDED_PORTS = {"redis": 6379, "memcached": 11211, "mysql": 3306, "postgresql": 5432, "etcd": 2379,
                  "etcd_grpc": 2379, "zookeeper": 2181, "rabbitmq": 5672, "echo": 7}


# ----------------------------------------------------------------------------------------------------------
# constructed captures
# ----------------------------------------------------------------------------------------------------------

BASE_TS = 1_700_000_000.0  # 2023-11-14T22:13:20Z
MAC_CLIENT, MAC_SERVER = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


class Writer:
    """Ethernet/IPv4 frames into a classic pcap (microseconds, linktype 1), timestamps advancing in fixed steps."""

    def __init__(self) -> None:
        import dpkt

        self.dpkt = dpkt
        self.frames: list[tuple[float, bytes]] = []
        self.ts = BASE_TS
        self.ip_id = 0x1000

    def tick(self, seconds: float) -> None:
        self.ts += seconds

    def ip(self, src: str, dst: str, proto: int, l4, to_server: bool) -> None:
        dpkt = self.dpkt
        self.ip_id += 1
        pkt = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, id=self.ip_id,
                         df=1, data=l4)
        # dpkt fills in the IP total length and the IP and TCP/UDP checksums when packed
        eth = dpkt.ethernet.Ethernet(src=MAC_CLIENT if to_server else MAC_SERVER,
                                     dst=MAC_SERVER if to_server else MAC_CLIENT, type=dpkt.ethernet.ETH_TYPE_IP,
                                     data=pkt)
        self.frames.append((round(self.ts, 6), bytes(eth)))
        self.tick(0.000150)

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            w = self.dpkt.pcap.Writer(fh, snaplen=65535, linktype=self.dpkt.pcap.DLT_EN10MB)
            for ts, frame in self.frames:
                w.writepkt(frame, ts=ts)


class Tcp:
    """One TCP connection (RFC 9293): three-way handshake, PSH|ACK data segments each acknowledged by the
    peer's next segment, FIN exchange; MSS-sized segmentation of long messages."""

    MSS = 1448

    def __init__(self, w: Writer, client: str, cport: int, server: str, sport: int, isn_c: int, isn_s: int) -> None:
        self.w, self.addr = w, ((client, cport), (server, sport))
        self.seq = [isn_c, isn_s]  # next sequence number per side (0 client, 1 server)
        self._seg(0, SYN, b"", ack=False, opts=True)
        self.seq[0] += 1
        self._seg(1, SYN | ACK, b"", opts=True)
        self.seq[1] += 1
        self._seg(0, ACK, b"")
        self.pending = -1  # the side whose last data segment is not yet acknowledged

    def _seg(self, side: int, flags: int, payload: bytes, ack: bool = True, opts: bool = False) -> None:
        dpkt = self.w.dpkt
        (src, sp), (dst, dp) = self.addr if side == 0 else self.addr[::-1]
        tcp = dpkt.tcp.TCP(sport=sp, dport=dp, seq=self.seq[side] & 0xFFFFFFFF,
                           ack=self.seq[1 - side] & 0xFFFFFFFF if ack else 0, flags=flags, win=64240 if opts else 502,
                           data=payload)
        if opts:  # MSS 1460, NOP NOP SACK permitted, NOP window scale 7 (RFC 9293 3.2, RFC 2018, RFC 7323)
            tcp.opts = b"\x02\x04\x05\xb4\x01\x01\x04\x02\x01\x03\x03\x07"
            tcp.off = 5 + len(tcp.opts) // 4
        self.w.ip(src, dst, dpkt.ip.IP_PROTO_TCP, tcp, side == 0)

    def send(self, side: int, payload: bytes, think: float = 0.0005) -> None:
        """One application message from side 0 (client) or 1 (server)."""
        self.w.tick(think)
        for i in range(0, len(payload), self.MSS):
            part = payload[i : i + self.MSS]
            self._seg(side, PSH | ACK, part)
            self.seq[side] += len(part)
        self.pending = side

    def close(self) -> None:
        """Client closes first: ACK of the last data, FIN, FIN|ACK, ACK."""
        self.w.tick(0.0005)
        if self.pending >= 0:
            self._seg(1 - self.pending, ACK, b"")
        self._seg(0, FIN | ACK, b"")
        self.seq[0] += 1
        self._seg(1, FIN | ACK, b"")
        self.seq[1] += 1
        self._seg(0, ACK, b"")


def udp(w: Writer, src: tuple[str, int], dst: tuple[str, int], payload: bytes, to_server: bool) -> None:
    dpkt = w.dpkt
    w.ip(src[0], dst[0], dpkt.ip.IP_PROTO_UDP,
         dpkt.udp.UDP(sport=src[1], dport=dst[1], ulen=8 + len(payload), data=payload), to_server)


# --- Couchbase ---------------------------------------------------------------------------------------------
# Spec: Couchbase kv_engine, docs/BinaryProtocol.md ("Request header" / "Response header": magic 0x80 / 0x81,
# opcode, key length u16, extras length u8, data type u8, vbucket id (request) / status (response) u16, total
# body length u32, opaque u32, CAS u64; body = extras, key, value), docs/BinaryProtocol.md "Command Opcodes"
# and "Response Status", docs/SASL.md, and the Couchbase SDK vBucket mapping (CRC32 of the key).

def cb_request(opcode: int, opaque: int, key: bytes = b"", value: bytes = b"", extras: bytes = b"",
               vbucket: int = 0, datatype: int = 0, cas: int = 0) -> bytes:
    """BinaryProtocol.md "Request header" (24 bytes, magic 0x80)."""
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), datatype, vbucket, len(body), opaque,
                       cas) + body


def cb_response(opcode: int, opaque: int, status: int = 0, key: bytes = b"", value: bytes = b"",
                extras: bytes = b"", datatype: int = 0, cas: int = 0) -> bytes:
    """BinaryProtocol.md "Response header" (24 bytes, magic 0x81, status instead of vbucket)."""
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x81, opcode, len(key), len(extras), datatype, status, len(body), opaque,
                       cas) + body


def vbucket_of(key: bytes, vbuckets: int = 1024) -> int:
    """Couchbase SDKs: vbucket = ((crc32(key) >> 16) & 0x7fff) % number of vBuckets."""
    return ((zlib.crc32(key) >> 16) & 0x7FFF) % vbuckets


def build_couchbase(path: Path) -> Capture:
    w = Writer()
    t = Tcp(w, "10.30.0.10", 51210, "10.30.0.20", 11210, 0x1C0FFEE0, 0x5EED0001)
    # HELO (0x1f): BinaryProtocol.md "0x1f Helo": key = user agent (JSON {"a": agent, "i": connection id}),
    # value = requested features, u16 each: 0x03 TCPNODELAY, 0x06 XATTR, 0x07 XERROR, 0x08 Select Bucket,
    # 0x0b JSON. The response's value lists the features the server enabled.
    agent = b'{"a":"libcouchbase/3.3.9 (Linux-6.1; x86_64)","i":"00000000d1a8b7c3/0000000000000001"}'
    features = struct.pack(">5H", 0x03, 0x06, 0x07, 0x08, 0x0B)
    t.send(0, cb_request(0x1F, 1, key=agent, value=features))
    t.send(1, cb_response(0x1F, 1, value=features))
    # SASL List Mechanisms (0x20): docs/SASL.md: no key/value; the response value is the space-separated list
    t.send(0, cb_request(0x20, 2))
    t.send(1, cb_response(0x20, 2, value=b"SCRAM-SHA512 SCRAM-SHA256 SCRAM-SHA1 PLAIN"))
    # SASL Auth (0x21): docs/SASL.md: key = mechanism, value = the initial response; PLAIN (RFC 4616):
    # authzid NUL authcid NUL password. Success: status 0x0000, value "Authenticated".
    t.send(0, cb_request(0x21, 3, key=b"PLAIN", value=b"\x00app\x00app-pass-1"))
    t.send(1, cb_response(0x21, 3, value=b"Authenticated"))
    # Select Bucket (0x89): BinaryProtocol.md "0x89 Select Bucket": key = bucket name, no extras/value
    t.send(0, cb_request(0x89, 4, key=b"travel-sample"))
    t.send(1, cb_response(0x89, 4))
    # Set (0x01): BinaryProtocol.md "0x01 Set": extras = flags u32 + expiration u32, datatype 0x01 JSON
    # (BinaryProtocol.md "Data Types"); the response carries the new CAS.
    key, doc = b"user::1001", b'{"name":"alice","email":"alice@example.com","type":"user"}'
    t.send(0, cb_request(0x01, 5, key=key, value=doc, extras=struct.pack(">II", 0x02000006, 0),
                         vbucket=vbucket_of(key), datatype=0x01))
    t.send(1, cb_response(0x01, 5, cas=0x17A3B2C4D5E60000))
    # Get (0x00): response extras = flags u32, value = the document, datatype JSON, CAS
    t.send(0, cb_request(0x00, 6, key=key, vbucket=vbucket_of(key)))
    t.send(1, cb_response(0x00, 6, value=doc, extras=struct.pack(">I", 0x02000006), datatype=0x01,
                          cas=0x17A3B2C4D5E60000))
    # Get of a missing key: "Response Status" 0x0001 Key not found, value = error text
    missing = b"user::9999"
    t.send(0, cb_request(0x00, 7, key=missing, vbucket=vbucket_of(missing)))
    t.send(1, cb_response(0x00, 7, status=0x0001, value=b"Not found"))
    t.close()
    w.save(path)
    return Capture(path.name, "couchbase", "constructed: spec (Couchbase kv_engine docs/BinaryProtocol.md, "
                   "docs/SASL.md)", "11210", "data service (memcached binary protocol) on 11210: HELO with "
                   "features, SASL_LIST_MECHS, SASL_AUTH PLAIN, SELECT_BUCKET, SET (JSON), GET, GET miss "
                   "(status 0x0001); TCP handshake and FIN")


# --- VoltDB ------------------------------------------------------------------------------------------------
# Spec: VoltDB "Client Wire Protocol" (VoltDB documentation, wire protocol version 1): section "Basic Types"
# (big-endian; string = int32 length + UTF-8, -1 = null), "Message Format" (int32 length not counting itself,
# then a protocol version byte), "Login Message", "Login Response", "Procedure Invocation", "Invocation
# Response", "VoltTable Serialization".

def vstr(s: str | bytes) -> bytes:
    """"Basic Types": String = int32 byte length + UTF-8 bytes."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">i", len(b)) + b


def vmsg(body: bytes) -> bytes:
    """"Message Format": int32 length of what follows, the body starting with its protocol version byte."""
    return struct.pack(">i", len(body)) + body


def volt_table(columns: list[tuple[str, int]], rows: list[bytes], status: int = -128) -> bytes:
    """"VoltTable Serialization": total length, metadata length, status byte, column count, column types,
    column names; row count, rows (int32 length + the values)."""
    meta = struct.pack(">bh", status, len(columns)) + bytes(t & 0xFF for _, t in columns) + \
        b"".join(vstr(name) for name, _ in columns)
    body = struct.pack(">i", len(meta)) + meta + struct.pack(">i", len(rows)) + \
        b"".join(struct.pack(">i", len(r)) + r for r in rows)
    return struct.pack(">i", len(body)) + body


def volt_invocation(proc: str, handle: int, params: list[tuple[int, bytes]]) -> bytes:
    """"Procedure Invocation": version 0, procedure name, client data (8 bytes, echoed in the response),
    parameter set (int16 count, each a type byte then the value). Types: 6 BIGINT, 9 STRING."""
    ps = struct.pack(">h", len(params)) + b"".join(struct.pack(">b", t) + v for t, v in params)
    return vmsg(b"\x00" + vstr(proc) + struct.pack(">q", handle) + ps)


def volt_response(handle: int, status: int, tables: list[bytes], status_string: str | None = None,
                  rtt_ms: int = 2) -> bytes:
    """"Invocation Response": version 0, client data, fields-present bit mask (0x20 status string), status
    (1 SUCCESS, -2 GRACEFUL_FAILURE), [status string], app status (-128 = none), cluster round-trip time
    int32, table count int16, tables."""
    present = 0x20 if status_string is not None else 0
    body = b"\x00" + struct.pack(">qBb", handle, present, status)
    if status_string is not None:
        body += vstr(status_string)
    body += struct.pack(">bih", -128, rtt_ms, len(tables)) + b"".join(tables)
    return vmsg(body)


def build_voltdb(path: Path) -> Capture:
    import hashlib

    w = Writer()
    t = Tcp(w, "10.30.0.11", 52212, "10.30.0.21", 21212, 0x2C0FFEE0, 0x6EED0001)
    # "Login Message" (version 1): protocol version 1, password hash scheme 1 (SHA-256), service "database",
    # user name, SHA-256 digest of the password (32 raw bytes)
    t.send(0, vmsg(b"\x01\x01" + vstr("database") + vstr("app") + hashlib.sha256(b"app-pass-1").digest()))
    # "Login Response": version, auth result 0 (success), host id int32, connection id int64, cluster start
    # timestamp int64 (ms), leader IPv4 int32, build string
    t.send(1, vmsg(b"\x00\x00" + struct.pack(">iqqi", 0, 7, 1_699_999_000_000, 0x0A1E0015) +
                   vstr("13.1.2 voltdb-13.1.2-0-gb7c6d1a-local")))
    # @AdHoc INSERT: one STRING parameter (type 9); the response: one table, one BIGINT column (type 6)
    # "modified_tuples" with one row = 1
    t.send(0, volt_invocation("@AdHoc", 1, [(9, vstr("INSERT INTO votes (phone, state) VALUES (5551234567, 'MA');"))]))
    t.send(1, volt_response(1, 1, [volt_table([("modified_tuples", 6)], [struct.pack(">q", 1)])]))
    # @AdHoc SELECT: STRING column (9) "state", BIGINT column "C2"
    t.send(0, volt_invocation("@AdHoc", 2, [(9, vstr("SELECT state, COUNT(*) FROM votes GROUP BY state;"))]))
    t.send(1, volt_response(2, 1, [volt_table([("STATE", 9), ("C2", 6)],
                                              [vstr("MA") + struct.pack(">q", 1)])]))
    # a stored procedure with two parameters (BIGINT, STRING) that does not exist: GRACEFUL_FAILURE (-2)
    # with a status string and no tables
    t.send(0, volt_invocation("Vote", 3, [(6, struct.pack(">q", 5551234567)), (9, vstr("MA"))]))
    t.send(1, volt_response(3, -2, [], "Procedure Vote was not found"))
    t.close()
    w.save(path)
    return Capture(path.name, "voltdb", "constructed: spec (VoltDB Client Wire Protocol v1)", "21212",
                   "login (protocol v1, SHA-256 password hash, service 'database') and login response, @AdHoc "
                   "INSERT and SELECT with VoltTable results, a missing stored procedure (GRACEFUL_FAILURE)")


# --- Consul (Serf / memberlist gossip) ---------------------------------------------------------------------
# Spec: github.com/hashicorp/memberlist net.go (message types: pingMsg 0, ackRespMsg 2, pushPullMsg 6,
# hasCrcMsg 12; structs ping, ackResp, pushPullHeader, pushNodeState; "sendMsg"/"rawSendMsgPacket": protocol
# version >= 5 prefixes UDP packets with hasCrcMsg + CRC32-IEEE (big-endian) of the message;
# "sendLocalState": type byte, header, node states, user state), encoded with hashicorp/go-msgpack's
# MsgpackHandle (msgpack spec, github.com/msgpack/msgpack/blob/master/spec-old.md: struct = map keyed by
# field name, strings and []byte as raw, unsigned ints in the shortest form); Serf (github.com/hashicorp/serf
# serf/messages.go: messagePushPullType 2, serf/serf.go encodeTags: 0xff magic + msgpack map of tags;
# serf/ping_delegate.go: ack payload = PingVersion 1 + msgpack coordinate.Coordinate).

def mp(v) -> bytes:
    """msgpack (old spec, as go-msgpack writes it): dict, list, str/bytes (raw), bool, int, float."""
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 0x80:
            return bytes([v])
        if 0 <= v <= 0xFF:
            return b"\xcc" + bytes([v])
        if 0 <= v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        raise ValueError(v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, (str, bytes)):
        b = v.encode() if isinstance(v, str) else v
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xda" + struct.pack(">H", len(b))) + b
    if isinstance(v, list):
        return (bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))) + \
            b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return (bytes([0x80 | len(v)]) if len(v) < 16 else b"\xde" + struct.pack(">H", len(v))) + \
            b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(type(v))


def with_crc(msg: bytes) -> bytes:
    """memberlist rawSendMsgPacket: hasCrcMsg (12) + CRC32-IEEE of the message, big-endian."""
    return b"\x0c" + struct.pack(">I", zlib.crc32(msg)) + msg


def consul_node(name: str, ip: str, role: str, node_id: str) -> dict:
    """memberlist pushNodeState (Name, Addr, Port, Meta, Incarnation, State, Vsn); Meta = Serf tags."""
    tags = {"role": role, "dc": "dc1", "segment": "", "id": node_id,
            "vsn": "2", "vsn_min": "2", "vsn_max": "3", "build": "1.15.4:7ec6b6e6"}
    return {"Name": name, "Addr": socket.inet_aton(ip), "Port": 8301, "Meta": b"\xff" + mp(tags),
            "Incarnation": 1, "State": 0, "Vsn": bytes([1, 5, 2, 2, 5, 4])}


def build_consul(path: Path) -> Capture:
    w = Writer()
    a, b = "10.30.0.12", "10.30.0.22"
    # UDP probe: ping (SeqNo, Node, SourceAddr, SourcePort, SourceNode) with CRC, answered by ackResp
    # (SeqNo, Payload = Serf's PingVersion 1 + the sender's network coordinate)
    ping = b"\x00" + mp({"SeqNo": 17, "Node": "consul-server-1", "SourceAddr": socket.inet_aton(a),
                         "SourcePort": 8301, "SourceNode": "consul-client-1"})
    coord = {"Vec": [0.0012, -0.0004, 0.0009, 0.0, -0.0011, 0.0002, 0.0, 0.0007], "Error": 0.35,
             "Adjustment": 0.0001, "Height": 0.00001}
    ack = b"\x02" + mp({"SeqNo": 17, "Payload": b"\x01" + mp(coord)})
    udp(w, (a, 8301), (b, 8301), with_crc(ping), True)
    w.tick(0.0004)
    udp(w, (b, 8301), (a, 8301), with_crc(ack), False)
    w.tick(0.01)
    # TCP push/pull join ("sendLocalState"): pushPullMsg, pushPullHeader{Nodes, UserStateLen, Join}, the node
    # states, then Serf's user state (messagePushPullType 2 + messagePushPull{LTime, StatusLTimes,
    # LeftMembers, EventLTime, Events, QueryLTime}); the server answers with its own state the same way.
    def state(nodes: list[dict], join: bool, ltime: int) -> bytes:
        user = b"\x02" + mp({"LTime": ltime, "StatusLTimes": {n["Name"]: ltime for n in nodes},
                             "LeftMembers": [], "EventLTime": 1, "Events": [], "QueryLTime": 1})
        return b"\x06" + mp({"Nodes": len(nodes), "UserStateLen": len(user), "Join": join}) + \
            b"".join(mp(n) for n in nodes) + user

    client_node = consul_node("consul-client-1", a, "node", "6f0c4b1e-2a8d-4e3f-9c1a-5d2e7b3a9c01")
    server_node = consul_node("consul-server-1", b, "consul", "b2a9e4d7-1c3f-4a6e-8b5d-0e7f2c9a4d11")
    t = Tcp(w, a, 40112, b, 8301, 0x3C0FFEE0, 0x7EED0001)
    t.send(0, state([client_node], True, 1))
    t.send(1, state([server_node, client_node], False, 3))
    t.close()
    w.save(path)
    return Capture(path.name, "consul", "constructed: spec (hashicorp/memberlist net.go, hashicorp/serf messages.go,"
                   " msgpack)", "8301", "LAN gossip on 8301 without encryption: UDP ping + ack (memberlist v5 CRC "
                   "wrapper, Serf coordinate payload) and a TCP push/pull join (both sides' node states + Serf "
                   "user state)")


# --- Spark ---------------------------------------------------------------------------------------------------
# Spec: Apache Spark common/network-common .../protocol/MessageEncoder.java (frame = int64 frame length
# counting itself, type byte, message header, body), Message.Type (RpcRequest 3, RpcResponse 4),
# RpcRequest.java / RpcResponse.java (request id int64 + body length int32), core .../rpc/netty/
# NettyRpcEnv.scala RequestMessage.serialize (sender address, receiver address: writeBoolean + writeUTF(host)
# + writeInt(port); writeUTF(endpoint name); then the content with JavaSerializer), RpcEndpointVerifier.scala
# (CheckExistence(name), answered with a Boolean); Java Object Serialization Specification section 6.4
# (stream grammar: STREAM_MAGIC 0xaced, STREAM_VERSION 5, TC_OBJECT 0x73, TC_CLASSDESC 0x72, TC_STRING 0x74,
# TC_NULL 0x70, TC_ENDBLOCKDATA 0x78, SC_SERIALIZABLE 0x02).

def utf(s: str) -> bytes:
    """java.io.DataOutput.writeUTF: u16 length + (modified) UTF-8."""
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def java_object(class_name: str, uid: int, fields: list[tuple[str, str, str | None]], values: bytes) -> bytes:
    """Java serialization 6.4: newObject = TC_OBJECT classDesc classdata; classDesc = TC_CLASSDESC className
    serialVersionUID flags(SC_SERIALIZABLE) fieldCount fields classAnnotation(TC_ENDBLOCKDATA)
    superClassDesc(TC_NULL). fields: (typecode, name, class name for object fields)."""
    fd = b"".join(code.encode() + utf(name) + (b"\x74" + utf(cls) if cls else b"") for code, name, cls in fields)
    return b"\x73\x72" + utf(class_name) + struct.pack(">qBH", uid, 0x02, len(fields)) + fd + b"\x78\x70" + values


def spark_frame(kind: int, request_id: int, body: bytes) -> bytes:
    """MessageEncoder: frame length (8 + 1 + 12 + body) int64, type, RpcRequest/RpcResponse header, body."""
    return struct.pack(">QBqI", 21 + len(body), kind, request_id, len(body)) + body


def build_spark(path: Path) -> Capture:
    w = Writer()
    t = Tcp(w, "10.30.0.13", 43077, "10.30.0.23", 7077, 0x4C0FFEE0, 0x8EED0001)
    # RequestMessage to the endpoint verifier: sender (the driver's RPC env), receiver (the master), endpoint
    # name, then CheckExistence("Master") java-serialized (case class: one object field `name`; the
    # serialVersionUID here is illustrative: Scala derives it from the class)
    check = java_object("org.apache.spark.rpc.netty.RpcEndpointVerifier$CheckExistence", 0x2B6F3C0A9E5D7F11,
                        [("L", "name", "Ljava/lang/String;")], b"\x74" + utf("Master"))
    request = (b"\x01" + utf("10.30.0.13") + struct.pack(">i", 40511) + b"\x01" + utf("10.30.0.23") +
               struct.pack(">i", 7077) + utf("endpoint-verifier") + b"\xac\xed\x00\x05" + check)
    t.send(0, spark_frame(3, 6181935419216101817, request))
    # RpcResponse with the same request id: java.lang.Boolean TRUE (serialVersionUID -3665804199014368530,
    # one boolean field `value`)
    true = b"\xac\xed\x00\x05" + java_object("java.lang.Boolean", -3665804199014368530, [("Z", "value", None)],
                                               b"\x01")
    t.send(1, spark_frame(4, 6181935419216101817, true))
    t.close()
    w.save(path)
    return Capture(path.name, "spark", "constructed: spec (Spark network-common MessageEncoder/RpcRequest/"
                   "RpcResponse, NettyRpcEnv RequestMessage, Java Object Serialization 6.4)", "7077",
                   "standalone master RPC on 7077: RpcRequest to endpoint-verifier CheckExistence(\"Master\") and "
                   "the RpcResponse (Boolean true) with the same request id")


CONSTRUCTED: dict[str, Callable[[Path], Capture]] = {
    "couchbase": build_couchbase, "voltdb": build_voltdb, "consul": build_consul, "spark": build_spark,
}


# ----------------------------------------------------------------------------------------------------------
# manifest
# ----------------------------------------------------------------------------------------------------------

def nvpcap_label(path: Path, ports: str) -> str:
    """How nvpcap labels the flows to the server port(s) now (for the notes; not an expectation)."""
    try:
        sys.path.insert(0, str(HERE.parent))
        from nvpcap.output.memory import MemorySink
        from nvpcap.pipeline import analyze_file

        sink = MemorySink()
        analyze_file(str(path), sink)
        flows = sink.flows
    except Exception as exc:  # noqa: BLE001 - nvpcap broken or absent: the capture is still fine
        print(f"note: nvpcap could not label {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ""
    wanted = {int(p) for p in ports.split(";")}
    seen = []
    for _, f in flows[flows["dest_port"].isin(wanted)].iterrows():
        product = f.get("app_product")
        label = f"{f['app_proto']}/{f['app_confidence']}" + (f"/{product}" if isinstance(product, str) else "")
        seen.append(f"{f['proto']}:{f['dest_port']} {label}")
    return "; ".join(sorted(set(seen)))


def update_manifest(out: Path, caps: list[Capture]) -> None:
    path = out / "MANIFEST.csv"
    rows: dict[str, dict] = {}
    if path.exists():
        rows = {r["file"]: r for r in csv.DictReader(open(path, newline=""))}
    for cap in caps:
        old = rows.get(cap.file, {})
        label = nvpcap_label(out / cap.file, cap.server_port)
        notes = cap.notes + (f". nvpcap at generation: {label}" if label else "")
        rows[cap.file] = {"file": cap.file, "app": cap.app, "how": cap.how, "server_port": cap.server_port,
                          "notes": notes, "xfail_reason": old.get("xfail_reason", "")}
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS, lineterminator="\n")
        w.writeheader()
        for name in sorted(rows):
            w.writerow({k: rows[name].get(k, "") for k in FIELDS})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", help="comma-separated names: " + ",".join([*RECORDED, *CONSTRUCTED]))
    kind = ap.add_mutually_exclusive_group()
    kind.add_argument("--recorded", action="store_true", help="only record real traffic")
    kind.add_argument("--constructed", action="store_true", help="only build the constructed captures")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        print("recorded:   ", " ".join(RECORDED))
        print("constructed:", " ".join(CONSTRUCTED))
        return 0
    only = set(args.only.split(",")) if args.only else None
    unknown = (only or set()) - set(RECORDED) - set(CONSTRUCTED)
    if unknown:
        ap.error(f"unknown: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    made: list[Capture] = []
    skipped: list[str] = []
    if not args.constructed:
        for name, fn in RECORDED.items():
            if only and name not in only:
                continue
            tmp = Path(tempfile.mkdtemp(prefix=f"record-{name}-"))
            os.chmod(tmp, 0o755)
            try:
                if os.geteuid() != 0:
                    raise Skip("recording needs root (tcpdump on lo, servers as other users, port 7)")
                need("tcpdump")
                port = RECORDED_PORTS[name]
                if not port_free(port):
                    raise Skip(f"port {port} is taken on {LO}")
                cap = fn(args.out, tmp)
                made.append(cap)
                print(f"recorded    {cap.file}: {(args.out / cap.file).stat().st_size} bytes")
            except Skip as exc:
                skipped.append(name)
                print(f"skipped     {name}: {exc}", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - a failed session must not stop the others
                skipped.append(name)
                print(f"failed      {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    if not args.recorded:
        for name, build in CONSTRUCTED.items():
            if only and name not in only:
                continue
            cap = build(args.out / f"{name}_constructed.pcap")
            made.append(cap)
            print(f"constructed {cap.file}: {(args.out / cap.file).stat().st_size} bytes")
    for cap in made:
        size = (args.out / cap.file).stat().st_size
        if size > MAX_SIZE:
            print(f"warning: {cap.file} is {size} bytes (> {MAX_SIZE})", file=sys.stderr)
    if made:
        update_manifest(args.out, made)
    if skipped:
        print(f"not recorded (existing files kept): {', '.join(skipped)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
