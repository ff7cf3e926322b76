"""Every application protocol nvpcap identifies, registered in one place.

The order matters only on ties: when two probes say YES on the same bytes, the earlier one wins (gRPC before
plain HTTP/2, RTSP and SIP before HTTP, which share its request-line shape).
"""
from __future__ import annotations

import importlib

from .base import ProtocolSpec

# module names under nvpcap/protocols/, in precedence order
MODULES = (
    "grpc", "http2", "rtsp", "sip", "http", "ssl", "ssh", "dns", "dhcp", "ntp", "tftp", "echo", "syslog", "radius",
    "memcached", "mysql", "postgresql", "redis", "mongodb", "kafka", "cassandra", "zookeeper", "rabbitmq",
    "activemq", "elasticsearch", "oracle", "mssql", "couchbase", "spark", "voltdb", "consul",
)


def load() -> tuple[ProtocolSpec, ...]:
    """The registered protocols' specs (each module exports SPEC)."""
    return tuple(importlib.import_module(f"{__package__}.{name}").SPEC for name in MODULES)


PROTOCOLS: tuple[ProtocolSpec, ...] = load()
