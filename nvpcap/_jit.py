"""One place that decides whether hot loops are compiled.

numba turns the per-packet loops into machine code; without it the very same functions run as plain
Python (slow, but identical results), so a machine without numba still analyses captures correctly.
Set NVPCAP_NO_JIT=1 to force the Python path (tests use it to check that both paths agree).
"""
from __future__ import annotations

import os
from typing import Any, Callable

try:  # pragma: no cover - depends on the environment
    if os.environ.get("NVPCAP_NO_JIT"):
        raise ImportError("disabled by NVPCAP_NO_JIT")
    import numba as _numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _numba = None
    HAVE_NUMBA = False


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile `fn` with numba in nopython mode (cached on disk), or return it unchanged."""
    if _numba is None:
        return fn
    return _numba.njit(cache=True, nogil=True)(fn)
