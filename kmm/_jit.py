"""The one place that sets Numba options for every kernel in kmm.

Kernels are compiled with ``cache=True`` (compiled code is reused across processes, which
matters for papermill sweeps that start a fresh kernel per point), ``nogil=True`` and
``boundscheck=False``. Set ``KMM_NUMBA_BOUNDSCHECK=1`` to compile with bounds checks while
debugging a kernel.

Compiled code is cached under a folder named by a hash of kmm's own sources:
``$NUMBA_CACHE_DIR/<hash>`` if that variable is set, else ``~/.cache/kmm/numba/<hash>``
(``$XDG_CACHE_HOME`` honoured). Numba invalidates a cached kernel only when its own file
changes, not when a kernel it inlines from another module does; keying the folder by every
source file of the package means an edited engine can never run stale machine code in a
mechanism.

Hot kernels that take many arrays (NamedTuples of state) may pass ``_nrt=False``: Numba then
does not reference-count the arrays on every inlined call, which is several times faster.

A kernel that only other kernels call passes ``python=False``: Numba then builds no Python
entry point for it (the wrapper that unboxes every field of every state NamedTuple from Python
objects), which was 31 % of the time to compile asi's kernels cold (69 s against 100 s on the
2-core reference machine, back to back) for the same machine code. Calling such a kernel from Python raises
``TypeError`` (Numba itself would crash the process).

A constant that one kernel passes to another, and a scalar that a loop reassigns, start typed
(``np.int64(-1)``, ``np.bool_(True)``), never as a bare ``-1`` or ``True``: Numba compiles the
callee, and everything it calls, once more for ``Literal[int](-1)`` or ``Literal[bool](True)``
(it may type a call on a loop's scalar before the loop's type is known). Six asi and buddy
kernels and four pagetable kernels were compiled twice that way.
"""
import hashlib
import os
from pathlib import Path

import numba
from numba.core.registry import CPUDispatcher

_BOUNDSCHECK = os.environ.get("KMM_NUMBA_BOUNDSCHECK", "") == "1"

JIT_OPTIONS = dict(cache=True, nogil=True, boundscheck=_BOUNDSCHECK, error_model="numpy")


def source_digest() -> str:
    """A hash of every kmm source file (``kmm/**/*.py``: the engine, the mechanisms in any
    subpackage, and the suite), so code moved into a subpackage can never run a stale
    cached kernel."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> str:
    """Where compiled kernels of this exact kmm source tree are cached."""
    base = os.environ.get("NUMBA_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "kmm", "numba")
    return os.path.join(base, source_digest())


numba.config.CACHE_DIR = cache_dir()


class KernelOnly(CPUDispatcher):
    """A dispatcher compiled without a Python entry point (``njit(python=False)``): other
    kernels call and inline it, Python cannot."""

    def add_overload(self, cres):
        # no entry point to register for calls from Python: keep the compiled result only
        self.overloads[tuple(cres.signature.args)] = cres

    def _compile_for_args(self, *args, **kws):
        raise TypeError(f"{self.py_func.__module__}.{self.py_func.__qualname__} is called "
                        f"only by other kernels (compiled with python=False)")


def _kernel_only(options: dict):
    """A decorator that compiles with ``options`` into a :class:`KernelOnly`."""
    cache = options.pop("cache")
    targetoptions = {**options, "nopython": True, "no_cpython_wrapper": True,
                     "no_cfunc_wrapper": True}

    def wrap(fn):
        if numba.config.DISABLE_JIT:   # NUMBA_DISABLE_JIT=1: every kernel is plain Python
            return fn
        disp = KernelOnly(py_func=fn, locals={}, targetoptions=targetoptions)
        if cache:
            disp.enable_caching()
        return disp
    return wrap


def njit(*args, python: bool = True, **kwargs):
    """``numba.njit`` with kmm's options; use as ``@njit`` or ``@njit(...)``. With
    ``python=False`` the kernel is callable from other kernels only (module docstring)."""
    options = {**JIT_OPTIONS, **kwargs}
    if args and callable(args[0]) and len(args) == 1 and not kwargs:
        return numba.njit(**options)(args[0]) if python else _kernel_only(options)(args[0])
    if not python:
        if args:
            raise TypeError("njit(python=False) takes options only, no signatures")
        return _kernel_only(options)
    return numba.njit(*args, **options)
