"""Files that are either whole or absent: written under a hidden temporary name, then renamed (a reader, or a
resumed run, never sees half a file)."""
from __future__ import annotations

import os


def hidden_tmp(path: str) -> str:
    """The temporary name `path` is written under: hidden, beside it (same file system), per process."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{os.getpid()}.tmp")


def write_atomic(path: str, data: bytes) -> None:
    """`data` to `path` via a hidden temporary name and a rename."""
    tmp = hidden_tmp(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
