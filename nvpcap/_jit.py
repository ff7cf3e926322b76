"""One place that decides whether hot loops are compiled.

numba turns the per-packet loops into machine code; without it the very same functions run as plain
Python (slow, but identical results), so a machine without numba still analyses captures correctly.
Set NVPCAP_NO_JIT=1 to force the Python path (tests use it to check that both paths agree).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable


def _import_numba_without_blas() -> Any:
    """Import numba with its array-math module, hiding scipy.linalg meanwhile. numba probes for SciPy's BLAS
    when that module loads, which costs ~16 MiB of resident memory and ~0.14 s per process; nvpcap's kernels
    use no linear algebra. The hiding is undone afterwards, so scipy.linalg imports normally later."""
    hide = "scipy.linalg" not in sys.modules
    if hide:
        sys.modules["scipy.linalg"] = None  # type: ignore[assignment]  # import raises ImportError meanwhile
    try:
        import numba
        import numba.np.arraymath  # noqa: F401 - the module that probes for BLAS, loaded while it is hidden
    finally:
        if hide and sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]
    return numba


try:  # pragma: no cover - depends on the environment
    if os.environ.get("NVPCAP_NO_JIT"):
        raise ImportError("disabled by NVPCAP_NO_JIT")
    _numba = _import_numba_without_blas()

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _numba = None
    HAVE_NUMBA = False


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile `fn` with numba in nopython mode (cached on disk), or return it unchanged."""
    if _numba is None:
        return fn
    return _numba.njit(cache=True, nogil=True)(fn)
