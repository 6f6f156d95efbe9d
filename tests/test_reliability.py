"""End-to-end guarantees: bad input is refused in one line, results are deterministic.

The per-area guarantees live with their areas: params and notebook-run mistakes in
tests/test_cli.py and tests/test_params.py, sweep resumption after SIGKILL, concurrent sweeps
and failing points in tests/test_sweep.py, the ENOMEM split in tests/test_pagetable.py, and
each mechanism's safety invariant in its own test file. This file adds the trace and engine
shapes through the CLI and the determinism of results.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
KMM = [shutil.which("kmm")] if shutil.which("kmm") else [sys.executable, "-m", "kmm.suite.cli"]


def kmm(cwd, *args):
    env = {**os.environ, "KMM_DATA_DIR": str(Path(cwd) / "data")}
    return subprocess.run([*KMM, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


TRACE_BAD = {
    "malformed trace": (["trace", "{d}/lackey_malformed.txt"], "lackey_malformed.txt:"),
    "truncated trace": (["trace", "{d}/lackey_truncated.txt"], "lackey_truncated.txt:41:"),
    "missing trace": (["trace", "{d}/absent.txt"], "absent.txt: no such trace file"),
    "non-power-of-two TLB sets": (["trace", "{d}/lackey_true.txt", "--tlb", "single",
                                   "--entries", "1000", "--ways", "4"], "must be a power of two"),
    "ways do not divide entries": (["trace", "{d}/lackey_true.txt", "--tlb", "single",
                                    "--entries", "1024", "--ways", "3"], "--entries"),
    "granule that does not exist": (["trace", "{d}/lackey_true.txt", "--granule", "8K"],
                                    "--granule: unknown granule '8K'"),
    "unknown replacement policy": (["trace", "{d}/lackey_true.txt", "--policy", "mru"],
                                   "--policy: unknown replacement policy"),
    "negative record limit": (["trace", "{d}/lackey_true.txt", "--max-records", "-5"],
                              "must be between 1 and"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(TRACE_BAD))
def test_bad_trace_and_tlb_input_is_one_line(tmp_path, case):
    args, expected = TRACE_BAD[case]
    args = [a.format(d=DATA) for a in args]
    r = kmm(tmp_path, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_real_trace_runs_through_a_tlb_hierarchy(tmp_path):
    r = kmm(tmp_path, "trace", str(DATA / "lackey_true.txt"), "--json")
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["accesses"] == out["l1i_hits"] + out["l1i_misses"] + out["l1d_hits"] + out["l1d_misses"]
    assert 0 < out["misses"] <= out["l1i_misses"] + out["l1d_misses"]


def test_geometry_mistakes_name_the_field():
    from kmm import geometry
    from kmm.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed: 39, 48, 52") as e:
        geometry.arm64("4K", 47)
    assert e.value.where == "va_bits"


def test_engine_results_are_deterministic():
    """Same inputs and seed, same counters: kernels hold no hidden state between runs."""
    from kmm import tlb, workloads

    t1 = workloads.zipf_pages(20_000, pages=5_000, alpha=0.9, seed=7)
    t2 = workloads.zipf_pages(20_000, pages=5_000, alpha=0.9, seed=7)
    t3 = workloads.zipf_pages(20_000, pages=5_000, alpha=0.9, seed=8)
    assert np.array_equal(t1.address, t2.address) and not np.array_equal(t1.address, t3.address)
    cfg = tlb.TLBConfig.neoverse_n1(policy="random", seed=3)
    a = tlb.simulate_trace(t1.address, cfg, **t1.kwargs())
    b = tlb.simulate_trace(t2.address, cfg, **t2.kwargs())
    assert a == b and a.misses > 0
