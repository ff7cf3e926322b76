"""Alert and anomaly records: NeuVector threats and capture/decoder problems, as EVE-like dicts.

Alerts for the same (threat, source, destination, protocol) are aggregated, as NeuVector dp aggregates its
threat log, so a scan of a million bad packets is one alert with a count, not a million lines. Anomaly
records are capped per file and reason; the summary still counts every packet.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..threats import CATALOGUE
from . import addresses
from .flows import iso_timestamps, proto_name

MAX_ANOMALIES_PER_REASON = 1000


@dataclass
class _AlertAgg:
    record: dict
    count: int = 1


@dataclass
class EventCollector:
    """Gathers the alert and anomaly records of one capture file."""

    pcap_filename: str
    # threat id -> on/off, overriding NeuVector's defaults (nvpcap/threats.py)
    overrides: dict[int, bool] = field(default_factory=dict)
    alerts: dict[tuple, _AlertAgg] = field(default_factory=dict)
    anomalies: list[dict] = field(default_factory=list)
    anomaly_counts: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0

    def _base(self, ts_ns: int, frame: int) -> dict:
        return {
            "ts": ts_ns / 1e9,
            "timestamp": str(iso_timestamps(np.array([ts_ns], np.int64))[0]),
            "pcap_filename": self.pcap_filename,
            "frame": frame,
        }

    def enabled(self, threat_id: int) -> bool:
        return self.overrides.get(threat_id, CATALOGUE[threat_id].enabled)

    def threat(self, threat_id: int, ts_ns: int, frame: int, src: tuple[int, int], dst: tuple[int, int],
               proto: int, sport: int | None, dport: int | None, message: str, direction: str = "toserver",
               context: str = "packet", app_proto: str | None = None) -> None:
        """An alert for a NeuVector threat (if enabled), aggregated on (threat, src, dst, proto)."""
        if not self.enabled(threat_id):
            return
        key = (threat_id, src, dst, proto)
        agg = self.alerts.get(key)
        if agg is not None:
            agg.count += 1
            agg.record["last_frame"] = frame
            return
        t = CATALOGUE[threat_id]
        rec = self._base(ts_ns, frame)
        rec.update({
            "event_type": "alert",
            "src_ip": addresses.text(*src), "src_port": sport, "dest_ip": addresses.text(*dst), "dest_port": dport,
            "proto": proto_name(proto),
            "rule_id": threat_id, "rule_name": t.name, "category": "threat", "severity": t.severity,
            "action": t.action, "context": context, "direction": direction, "message": message,
            "first_frame": frame, "last_frame": frame,
        })
        if app_proto is not None:
            rec["app_proto"] = app_proto
        self.alerts[key] = _AlertAgg(rec)

    def anomaly(self, kind: str, reason: str, ts_ns: int | None, frame: int | None, message: str,
                **extra: object) -> None:
        """A decode or capture anomaly (Suricata's anomaly event); capped per reason."""
        n = self.anomaly_counts.get(reason, 0) + 1
        self.anomaly_counts[reason] = n
        if n > MAX_ANOMALIES_PER_REASON:
            self.suppressed += 1
            return
        rec = self._base(ts_ns, frame) if ts_ns is not None else {"pcap_filename": self.pcap_filename,
                                                                   "frame": frame}
        rec.update({"event_type": "anomaly", "anomaly": {"type": kind, "event": reason, "message": message}})
        rec.update(extra)
        self.anomalies.append(rec)

    def alert_records(self) -> list[dict]:
        out = []
        for agg in self.alerts.values():
            rec = dict(agg.record)
            rec["count"] = agg.count
            out.append(rec)
        return out


class MutedEvents(EventCollector):
    """The packet-level events of a worker that owns only some of a file's flows (session/shard.py): worker 0
    writes them, the others record nothing (and the meters, seeing every threat off, do no work)."""

    def enabled(self, threat_id: int) -> bool:
        return False

    def threat(self, *args: object, **kwargs: object) -> None:
        return None

    def anomaly(self, *args: object, **kwargs: object) -> None:
        return None
