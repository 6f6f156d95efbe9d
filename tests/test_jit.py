"""Compiled kernels are cached per kmm source tree, so an engine edit never runs stale code."""
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
