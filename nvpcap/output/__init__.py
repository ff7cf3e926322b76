"""Record writers: JSON lines (EVE-like), CSV, Parquet, Zeek TSV, and a terminal table."""
from __future__ import annotations

from .base import FORMATS, Sink, format_for_path, open_sink

__all__ = ["FORMATS", "Sink", "format_for_path", "open_sink"]
