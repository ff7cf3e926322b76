"""A readable terminal summary (rich): per-file accounting, the protocol and application mix, the largest flows,
application events per protocol and alerts."""
from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

from .base import Sink

TOP_FLOWS = 15


class TableSink(Sink):
    def __init__(self, output: str | None):
        self._file = open(output, "w", encoding="utf-8") if output not in (None, "-") else None  # noqa: SIM115
        self.console = Console(file=self._file)
        self.top = pd.DataFrame()
        self.states: dict[tuple[str, str], int] = {}
        self.alerts: dict[str, int] = {}
        self.apps: dict[tuple[str, str], list[int]] = {}  # (app, confidence) -> [flows, bytes]
        self.app_events: dict[str, int] = {}

    def write_flows(self, flows) -> None:
        f = flows.to_pandas().assign(total_bytes=flows["bytes_toserver"] + flows["bytes_toclient"])
        for key, n in f.groupby(["proto", "conn_state"]).size().items():
            self.states[key] = self.states.get(key, 0) + int(n)
        for key, (n, b) in f.groupby(["app_proto", "app_confidence"])["total_bytes"].agg(["size", "sum"]).iterrows():
            acc = self.apps.setdefault(key, [0, 0])
            acc[0] += int(n)
            acc[1] += int(b)
        keep = ["pcap_filename", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "conn_state",
                "pkts_toserver", "pkts_toclient", "total_bytes", "duration"]
        self.top = pd.concat([self.top, f.nlargest(TOP_FLOWS, "total_bytes")[keep]]).nlargest(TOP_FLOWS, "total_bytes")

    def write_events(self, events: list[dict]) -> None:
        for e in events:
            kind = e["event_type"]
            if kind == "alert":
                self.alerts[e["rule_name"]] = self.alerts.get(e["rule_name"], 0) + int(e.get("count", 1))
            elif kind != "anomaly":
                self.app_events[kind] = self.app_events.get(kind, 0) + 1

    def close(self, run_summary: dict) -> None:
        c = self.console
        files = Table(title="Captures", title_justify="left")
        for col in ("file", "format", "packets", "flows", "outcomes"):
            files.add_column(col, overflow="fold")
        for f in run_summary["files"]:
            outcomes = ", ".join(f"{k} {v}" for k, v in f["outcomes"].items())
            files.add_row(f["file"], f["format"] + (f"+{f['compression']}" if f["compression"] else ""),
                          str(f["packets"]), str(f["flows"]), outcomes)
        c.print(files)
        if self.states:
            mix = Table(title="Flows by protocol and state", title_justify="left")
            for col in ("proto", "conn_state", "flows"):
                mix.add_column(col)
            for (proto, state), n in sorted(self.states.items(), key=lambda kv: -kv[1]):
                mix.add_row(proto, state, str(n))
            c.print(mix)
        if self.apps:
            apps = Table(title="Flows by application", title_justify="left")
            for col in ("app_proto", "confidence", "flows", "bytes", "events"):
                apps.add_column(col)
            for (app, conf), (n, b) in sorted(self.apps.items(), key=lambda kv: -kv[1][1]):
                apps.add_row(app, conf, str(n), str(b), str(self.app_events.get(app, "")) if conf == "dpi" else "")
            c.print(apps)
        if len(self.top):
            top = Table(title=f"Largest {len(self.top)} flows", title_justify="left")
            for col in ("file", "client", "server", "proto", "state", "pkts c>s", "pkts s>c", "bytes", "secs"):
                top.add_column(col, overflow="fold")
            for r in self.top.itertuples(index=False):
                cport = "" if r.src_port is pd.NA else f":{r.src_port}"
                sport = "" if r.dest_port is pd.NA else f":{r.dest_port}"
                top.add_row(r.pcap_filename, f"{r.src_ip}{cport}", f"{r.dest_ip}{sport}", r.proto, r.conn_state,
                            str(r.pkts_toserver), str(r.pkts_toclient), str(r.total_bytes), f"{r.duration:.3f}")
            c.print(top)
        if self.alerts:
            al = Table(title="Alerts", title_justify="left")
            al.add_column("threat")
            al.add_column("count")
            for name, n in sorted(self.alerts.items(), key=lambda kv: -kv[1]):
                al.add_row(name, str(n))
            c.print(al)
        t = run_summary["totals"]
        c.print(f"[bold]{t['packets']}[/] packets in {len(run_summary['files'])} file(s), "
                f"[bold]{t['flows']}[/] flows, {t['alerts']} alerts, {t['anomalies']} anomalies; "
                f"every packet accounted: {'yes' if t['accounted'] else '[red]NO[/]'}")
        if self._file is not None:  # written in full now, not whenever the interpreter gets to it
            self._file.close()
