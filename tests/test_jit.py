"""kmm._jit: kernels cached per kmm source tree (an engine edit never runs stale code),
kernels only other kernels call, and calls pruned of dead arguments."""
import ctypes
import os
import subprocess
import sys


def test_cache_folder_is_keyed_by_the_sources(tmp_path):
    code = ("import numba, kmm._jit as j; print(numba.config.CACHE_DIR); print(j.source_digest())")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    cache, digest = out
    assert cache == os.path.join(str(tmp_path), digest) and len(digest) == 16


def test_digest_covers_every_source_of_the_package_subpackages_included(tmp_path):
    import shutil
    from pathlib import Path
    import kmm._jit
    pkg = tmp_path / "kmm"
    (pkg / "mech" / "deep").mkdir(parents=True)
    shutil.copy(kmm._jit.__file__, pkg / "_jit.py")
    (pkg / "__init__.py").write_text("")
    (pkg / "mech" / "__init__.py").write_text("")
    deep = pkg / "mech" / "deep" / "kernels.py"
    deep.write_text("x = 1\n")
    code = "import kmm._jit as j; print(j.source_digest())"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "c")}

    def digest():
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=True, cwd=tmp_path).stdout.strip()
    before = digest()
    deep.write_text("x = 2\n")
    assert digest() != before
    assert Path(kmm._jit.__file__).parent.name == "kmm"


KERNELS = '''
from kmm._jit import njit

@njit(_nrt=False, python=False)
def inner(x):
    return x + 1

@njit(_nrt=False)
def outer(x):
    return inner(x) * 2
'''


def _run_kernels(tmp_path, code, **env):
    (tmp_path / "kernels_only.py").write_text(KERNELS)
    import kmm
    src = os.path.dirname(os.path.dirname(kmm.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), src]),
           "NUMBA_CACHE_DIR": str(tmp_path / "cache"), **env}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd=tmp_path)


CALLS = ("import kernels_only as k\n"
         "print(k.outer(3))\n"
         "try:\n    k.inner(3)\nexcept TypeError as e:\n    print('refused:', e)\n")


def test_a_kernel_only_kernel_runs_in_kernels_is_cached_and_refuses_python(tmp_path):
    """njit(python=False): callable from a kernel, compiled once and cached like any
    kernel, and a call from Python is a TypeError (Numba alone would crash the process)."""
    for _ in range(2):   # the second process loads the kernels from the cache
        r = _run_kernels(tmp_path, CALLS)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            "8", "refused: kernels_only.inner is called only by other kernels "
                 "(compiled with python=False)"]
    assert list((tmp_path / "cache").rglob("*.nbi"))


def test_with_the_jit_disabled_a_kernel_only_kernel_is_plain_python(tmp_path):
    r = _run_kernels(tmp_path, CALLS + "print(k.inner(3))\n", NUMBA_DISABLE_JIT="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["8", "4"]


def _target_machine():
    """The target machine Numba compiles kmm's kernels for."""
    from numba.core.registry import cpu_target
    return cpu_target.target_context.codegen()._tm


LINKED_IR = """
define linkonce_odr i64 @callee(i64 %a, i64 %b, i64 %c, ptr %d) noinline {
  %s = add i64 %a, %c
  ret i64 %s
}
define i64 @entry(i64 %x, i64 %unused) {
  %r = call i64 @callee(i64 %x, i64 1, i64 2, ptr null)
  ret i64 %r
}
"""


def test_pruning_drops_the_dead_arguments_of_linked_copies_only():
    """prune_linked_arguments: a linked copy (linkonce_odr) becomes internal and loses the
    arguments it does not read; the module's own function keeps its signature, dead
    argument included, and the module still computes the same."""
    import llvmlite.binding as ll
    from kmm._jit import prune_linked_arguments
    mod = ll.parse_assembly(LINKED_IR)
    assert prune_linked_arguments(mod, _target_machine()) == (4, 2)
    callee, entry = mod.get_function("callee"), mod.get_function("entry")
    assert callee.linkage == ll.Linkage.internal and len(list(callee.arguments)) == 2
    assert entry.linkage == ll.Linkage.external and len(list(entry.arguments)) == 2
    mod.verify()
    ee = ll.create_mcjit_compiler(mod, _target_machine())
    ee.finalize_object()
    f = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)(
        ee.get_function_address("entry"))
    assert f(40, 7) == 42


def test_a_module_with_no_linked_copies_is_left_alone():
    import llvmlite.binding as ll
    from kmm._jit import prune_linked_arguments
    mod = ll.parse_assembly(LINKED_IR.replace("linkonce_odr ", ""))
    before = str(mod)
    assert prune_linked_arguments(mod, _target_machine()) == (0, 0)
    assert str(mod) == before


STATE_KERNELS = '''
from typing import NamedTuple
import numpy as np
from kmm._jit import njit

class State(NamedTuple):
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray

@njit(_nrt=False, python=False)
def step(st, i):
    j = i % st.a.shape[0]
    st.b[j] = (st.b[j] * 31 + st.a[j]) % 1000003

@njit(_nrt=False)
def run(st, n):
    for i in range(n):
        step(st, i)
    return st.b.sum()

def state():
    return State(*(np.arange(16, dtype=np.int64) * (k + 1) + k for k in range(3)))
'''

PRUNE_CALLS = ("import state_kernels as k\n"
               "print(k.run(k.state(), 1000))\n"
               "for f in (k.run, k.step):\n"
               "    libs = [c.library for c in getattr(f, 'overloads', {}).values()]\n"
               "    print(type(libs[0]).__name__ if libs else '-')\n")


def test_a_python_kernel_is_compiled_into_a_pruned_library(tmp_path):
    """A kernel Python calls is compiled into a PrunedLibrary (and a kernel only kernels call
    is not); the result is the plain Python one, compiled fresh and loaded from the cache."""
    (tmp_path / "state_kernels.py").write_text(STATE_KERNELS)
    import kmm
    src = os.path.dirname(os.path.dirname(kmm.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), src]),
           "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    outs = []
    for extra in ({}, {}, {"NUMBA_DISABLE_JIT": "1"}):   # fresh, cached, plain Python
        r = subprocess.run([sys.executable, "-c", PRUNE_CALLS], env={**env, **extra},
                           capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.splitlines())
    fresh, cached, plain = outs
    assert fresh[0] == cached[0] == plain[0]
    assert fresh[1:] == ["PrunedLibrary", "JITCodeLibrary"]
    assert cached[1:] == ["JITCodeLibrary", "-"]   # loaded from the cache, pruned already
