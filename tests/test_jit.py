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
