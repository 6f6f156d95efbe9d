"""The benchmark harness agrees with its references (behaviour only: nothing here is timed)."""
import shutil

import numpy as np
import pytest

from kmm.suite import bench


def test_trace_shape_is_the_specified_one():
    a = bench.make_trace(50_000, seed=1)
    pages = a >> np.uint64(12)
    assert a.dtype == np.uint64 and a.size == 50_000
    # 80 % of accesses land on the 2,000 hot pages: the 2,000 most frequent pages cover ~80 %.
    _, counts = np.unique(pages, return_counts=True)
    top = np.sort(counts)[::-1][:2000].sum() / a.size
    assert 0.78 < top < 0.84
    assert np.array_equal(a, bench.make_trace(50_000, seed=1))


def test_python_reference_hand_worked():
    # 2 sets x 2 ways, pages 0, 2, 0, 4, 2, 0 all map to set 0: miss miss hit miss miss miss
    a = np.array([0, 2, 0, 4, 2, 0], dtype=np.uint64) << np.uint64(12)
    assert bench.python_lru_misses(a, sets=2, ways=2) == 5


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="no C compiler")
def test_kmm_c_pycachesim_and_python_agree_on_misses(tmp_path):
    pytest.importorskip("kmm.tlb")
    rows = bench.bench_tlb(30_000, pycachesim_n=30_000, python_n=30_000)
    for r in rows:
        assert r["kmm_misses"] == r["c_stamp_misses"] == r["c_mtf_misses"], r
        assert r["agree_python"], r
        if "agree_pycachesim" in r:
            assert r["agree_pycachesim"], r
