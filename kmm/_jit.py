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

Numba passes a NamedTuple of arrays to a kernel it does not inline as every field of every
array, one argument each (meminfo, parent, size, item size, data pointer, shape, strides):
asi's ``_alloc(bst, tst, ist, ast, wl, i, t)`` took about 700 arguments, written to the stack
on every call though it reads a few dozen. So a kernel that Python calls is compiled into a
:class:`PrunedLibrary`: once LLVM has optimised the kernel with everything it calls linked in
(and inlined what it chose to), the private copies of the kernels it calls become
``internal`` and LLVM's dead-argument elimination drops every argument no copy reads
(:func:`prune_linked_arguments`). Nothing is inlined that was not before, so compile time
does not grow (asi's kernels: 65.7 s cold against 70.9 s, side by side); the simulation is
the same code, with shorter calls. On A6's stream at the
sweep length (399 843 operations) asi ran 1.8 to 3.1 times as fast, every count identical:
policy 0 from 374 to 121 ns per operation, policy 2 from 485 to 238, policy 3 from 528 to
287 (best of three, back to back on the 2-core reference machine).
"""
import hashlib
import os
from pathlib import Path

import llvmlite.binding as ll
import numba
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler import Compiler
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


#: llvmlite's new pass manager (0.44 and later); without it nothing is pruned (same results,
#: longer calls)
_NEW_PASS_MANAGER = hasattr(ll, "create_new_module_pass_manager")


def prune_linked_arguments(module: ll.ModuleRef, target_machine) -> tuple[int, int]:
    """Make the private copies of the kernels linked into ``module`` (``linkonce_odr``, as
    Numba links them) ``internal`` and drop their dead arguments (LLVM's dead-argument
    elimination; the module's own exported functions keep their signatures). Returns the
    copies' argument count before and after."""
    linked = [f for f in module.functions
              if not f.is_declaration and f.linkage == ll.Linkage.linkonce_odr]
    if not linked or not _NEW_PASS_MANAGER:
        return 0, 0
    names = {f.name for f in linked}
    before = sum(len(list(f.arguments)) for f in linked)
    for f in linked:
        f.linkage = ll.Linkage.internal
    pm = ll.create_new_module_pass_manager()
    pm.add_dead_arg_elimination_pass()
    pm.run(module, ll.create_pass_builder(target_machine,
                                          ll.create_pipeline_tuning_options(speed_level=0)))
    after = sum(len(list(f.arguments)) for f in module.functions
                if not f.is_declaration and f.name in names)
    return before, after


class PrunedLibrary(JITCodeLibrary):
    """The code library of a kernel Python calls: Numba's, with the dead arguments of the
    kernels it calls dropped after optimisation (:func:`prune_linked_arguments`). A kernel
    only other kernels call keeps Numba's library: its own code is never run, only linked
    into its callers' and optimised there again."""

    def _optimize_final_module(self):
        super()._optimize_final_module()
        prune_linked_arguments(self._final_module, self._codegen._tm)


class _PrunedCompiler(Compiler):
    """Numba's pipeline, lowering into a :class:`PrunedLibrary`."""

    def compile_extra(self, func):
        if self.state.library is None:
            self.state.library = PrunedLibrary(self.state.targetctx.codegen(),
                                               func.__qualname__)
            self.state.library.enable_object_caching()
        return super().compile_extra(func)


def njit(*args, python: bool = True, **kwargs):
    """``numba.njit`` with kmm's options; use as ``@njit`` or ``@njit(...)``. With
    ``python=False`` the kernel is callable from other kernels only (module docstring)."""
    options = {**JIT_OPTIONS, **kwargs}
    if not python:
        if args and callable(args[0]) and len(args) == 1 and not kwargs:
            return _kernel_only(options)(args[0])
        if args:
            raise TypeError("njit(python=False) takes options only, no signatures")
        return _kernel_only(options)
    options.setdefault("pipeline_class", _PrunedCompiler)
    if args and callable(args[0]) and len(args) == 1 and not kwargs:
        return numba.njit(**options)(args[0])
    return numba.njit(*args, **options)
