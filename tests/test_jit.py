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
