"""The one place that sets Numba options for every kernel in kmm.

Kernels are compiled with ``cache=True`` (compiled code is reused across processes, which
matters for papermill sweeps that start a fresh kernel per point), ``nogil=True`` and
``boundscheck=False``. Set ``KMM_NUMBA_BOUNDSCHECK=1`` to compile with bounds checks while
debugging a kernel.
"""
import os

import numba

_BOUNDSCHECK = os.environ.get("KMM_NUMBA_BOUNDSCHECK", "") == "1"

JIT_OPTIONS = dict(cache=True, nogil=True, boundscheck=_BOUNDSCHECK, error_model="numpy")


def njit(*args, **kwargs):
    """``numba.njit`` with kmm's options; use as ``@njit`` or ``@njit(...)``."""
    options = {**JIT_OPTIONS, **kwargs}
    if args and callable(args[0]) and len(args) == 1 and not kwargs:
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)
