"""Zeek TSV logs: conn.log with a real header (zeek-cut and zat read it), notice.log and weird.log beside it, and
one `<protocol>.log` per application protocol (http.log, dns.log, ...).

A Zeek log has fixed columns, declared in its header, but a protocol's events may carry optional fields. The
first PROTOCOL_HEADER_EVENTS events of a protocol are held to learn its columns (in order of first
appearance); a field first seen after that goes into the last column, `extra`, as JSON: nothing is dropped."""
from __future__ import annotations

import json
import os
import time
from typing import IO, Any

import polars as pl

from .base import Sink, open_text

CONN_FIELDS = [
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
    ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"), ("duration", "interval"),
    ("orig_bytes", "count"), ("resp_bytes", "count"), ("conn_state", "string"), ("local_orig", "bool"),
    ("local_resp", "bool"), ("missed_bytes", "count"), ("history", "string"), ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"), ("community_id", "string"), ("vlan", "int"), ("inner_vlan", "int"),
]
NOTICE_FIELDS = [("ts", "time"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
                 ("id.resp_p", "port"), ("proto", "enum"), ("note", "string"), ("msg", "string"), ("n", "count")]
WEIRD_FIELDS = [("ts", "time"), ("name", "string"), ("addl", "string"), ("source", "string")]
ID_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
             ("id.resp_h", "addr"), ("id.resp_p", "port"), ("community_id", "string"), ("frame", "count")]
PROTOCOL_HEADER_EVENTS = 4096
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def zeek_uid(flow_id: int) -> str:
    """A Zeek-looking uid ('C' + base62) derived from the deterministic flow_id."""
    out = []
    n = int(flow_id)
    while n:
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "C" + "".join(reversed(out or ["0"]))


def _header(path: str, fields: list[tuple[str, str]]) -> str:
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
    return (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
        f"#path\t{path}\n#open\t{stamp}\n#fields\t" + "\t".join(f for f, _ in fields) + "\n#types\t"
        + "\t".join(t for _, t in fields) + "\n"
    )


def _clean(value: object) -> str:
    """Zeek escapes separators inside values; '-' marks an unset field."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    text = str(value)
    if text == "":
        return "(empty)"
    return text.replace("\\", "\\\\").replace("\t", "\\x09").replace("\n", "\\x0a")


def _zeek_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "count" if value >= 0 else "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (list, tuple)):
        return "vector[string]"
    return "string"


def _zeek_value(value: Any) -> Any:
    """Zeek's text for a value: T/F, comma-joined vectors, JSON for nested structures."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        return ",".join(json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v).replace(",", "\\x2c")
                        for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str)
    return value


class ZeekSink(Sink):
    def __init__(self, output: str | None):
        self.dir = None
        if output not in (None, "-") and (output.endswith(os.sep) or os.path.isdir(output)):
            os.makedirs(output, exist_ok=True)
            self.dir = output
            output = os.path.join(output, "conn.log")
        elif output not in (None, "-"):
            self.dir = os.path.dirname(output) or "."
        self.stream, self._close = open_text(output)
        self.stream.write(_header("conn", CONN_FIELDS))
        self._extra: dict[str, IO[str]] = {}
        self._held: dict[str, list[dict]] = {}  # protocol -> events waiting for its header to be known
        self._columns: dict[str, list[str]] = {}  # protocol -> its columns, once known

    def write_flows(self, flows: pl.DataFrame) -> None:
        lines = []
        for r in flows.iter_rows(named=True):
            positive = r["duration"] > 0
            vlan = r["vlan"] or []
            row = [
                f"{r['ts']:.6f}", zeek_uid(r["flow_id"]), r["src_ip"], r["src_port"] or 0, r["dest_ip"],
                r["dest_port"] or 0, r["proto"], None if r["app_proto"] == "unknown" else r["app_proto"],
                f"{r['duration']:.6f}" if positive else None,
                r["payload_bytes_toserver"] if positive else None, r["payload_bytes_toclient"] if positive else None,
                r["conn_state"], None, None, r["missed_bytes"], r["history"] or None, r["pkts_toserver"],
                r["ip_bytes_toserver"], r["pkts_toclient"], r["ip_bytes_toclient"], None, r["community_id"],
                vlan[0] if len(vlan) > 0 else None, vlan[1] if len(vlan) > 1 else None,
            ]
            lines.append("\t".join(_clean(v) for v in row))
        if lines:
            self.stream.write("\n".join(lines) + "\n")

    def _log(self, name: str, fields: list[tuple[str, str]]) -> IO[str] | None:
        if self.dir is None:
            return None
        if name not in self._extra:
            fh = open(os.path.join(self.dir, f"{name}.log"), "w", encoding="utf-8")
            fh.write(_header(name, fields))
            self._extra[name] = fh
        return self._extra[name]

    def write_events(self, events: list[dict]) -> None:
        for e in events:
            app = e["event_type"]
            if app not in ("alert", "anomaly"):
                self._app_event(app, e)
                continue
            if e["event_type"] == "alert":
                fh = self._log("notice", NOTICE_FIELDS)
                row = [f"{e['ts']:.6f}", e.get("src_ip"), e.get("src_port"), e.get("dest_ip"), e.get("dest_port"),
                       e.get("proto"), "NeuVector::" + e["rule_name"], e.get("message"), e.get("count")]
            else:
                fh = self._log("weird", WEIRD_FIELDS)
                ts = e.get("ts")
                row = [f"{ts:.6f}" if ts is not None else None, e["anomaly"]["event"], e["anomaly"]["message"],
                       e.get("pcap_filename")]
            if fh is not None:
                fh.write("\t".join(_clean(v) for v in row) + "\n")

    def _app_event(self, app: str, e: dict) -> None:
        if self.dir is None:
            return
        if app in self._columns:
            self._write_app(app, [e])
            return
        held = self._held.setdefault(app, [])
        held.append(e)
        if len(held) >= PROTOCOL_HEADER_EVENTS:
            self._fix_columns(app)

    def _fix_columns(self, app: str) -> None:
        held = self._held.pop(app, [])
        columns: dict[str, str] = {}
        for e in held:
            for k, v in (e.get(app) or {}).items():
                if v is not None and (k not in columns or columns[k] == "string?"):
                    columns[k] = _zeek_type(v)
                columns.setdefault(k, "string?")
        self._columns[app] = list(columns)
        fields = ID_FIELDS + [(k, "string" if t == "string?" else t) for k, t in columns.items()] + \
            [("extra", "string")]
        self._log(app, fields)
        self._write_app(app, held)

    def _write_app(self, app: str, events: list[dict]) -> None:
        fh = self._extra[app]
        cols = self._columns[app]
        lines = []
        for e in events:
            d = e.get(app) or {}
            extra = {k: v for k, v in d.items() if k not in cols}
            row = [f"{e['ts']:.6f}", zeek_uid(e["flow_id"]), e.get("src_ip"), e.get("src_port"), e.get("dest_ip"),
                   e.get("dest_port"), e.get("community_id"), e.get("frame")]
            row += [_zeek_value(d.get(k)) for k in cols]
            row.append(json.dumps(extra, default=str) if extra else None)
            lines.append("\t".join(_clean(v) for v in row))
        fh.write("\n".join(lines) + "\n")

    def close(self, run_summary: dict) -> None:
        for app in list(self._held):
            self._fix_columns(app)
        stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime())
        for fh in [self.stream, *self._extra.values()]:
            fh.write(f"#close\t{stamp}\n")
            fh.flush()
        if self._close:
            self.stream.close()
        for fh in self._extra.values():
            fh.close()
