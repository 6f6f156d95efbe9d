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


needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler")


def _c_counts(tmp_path, config, addresses, **kw):
    exe = bench._compile_c(tmp_path, "path")
    job = tmp_path / "job"
    bench.write_path_job(job, config, addresses, **kw)
    return bench.c_path(exe, job, 1)[1]


@needs_cc
def test_c_full_path_gives_kmm_counts_on_the_walk_heavy_trace(tmp_path):
    from kmm import walk

    a = bench.make_trace(40_000, seed=3)
    cfg, kw = walk.bench_full_path_inputs(a)
    res = walk.Path(cfg).run(a, **kw)
    assert res.walk.walks > 10_000 and res.cache.mem_reads > 0   # the trace does walk
    assert _c_counts(tmp_path, cfg, a, **kw) == bench.path_counts(res)


@needs_cc
def test_c_full_path_gives_kmm_counts_on_a_kernel_trace(tmp_path):
    from kmm import traces, walk

    t = traces.read_kernel_trace(traces.shipped_kernel_traces()[0])[:60_000]
    cfg, kw = walk.bench_trace_inputs(t)
    assert cfg.tlb.cpus == 2 and "cpu" in kw        # both vCPUs, global and user mappings
    res = walk.Path(cfg).run(t.address, **kw)
    assert _c_counts(tmp_path, cfg, t.address, **kw) == bench.path_counts(res)


@needs_cc
def test_c_full_path_counts_differ_when_the_model_differs(tmp_path):
    # the comparison can fail: a smaller LLC in kmm only changes its counts
    from dataclasses import replace

    from kmm import cache, walk

    a = bench.make_trace(20_000, seed=4)
    cfg, kw = walk.bench_full_path_inputs(a)
    small = replace(cfg, caches=replace(cfg.caches, llc=cache.CacheLevelConfig(1 << 16, 4)))
    assert _c_counts(tmp_path, cfg, a, **kw) != bench.path_counts(walk.Path(small).run(a, **kw))


def test_c_full_path_refuses_what_it_does_not_model(tmp_path):
    from dataclasses import replace

    from kmm import geometry, walk
    from kmm.errors import KmmError

    cfg = walk.bench_config()
    assert bench.c_path_supports(cfg) is None
    nested = replace(cfg, stage2=geometry.stage2("4K", 40))
    assert bench.c_path_supports(nested) == "stage 2"
    fifo = replace(cfg, tlb=replace(cfg.tlb, l2=replace(cfg.tlb.l2, policy="fifo")))
    assert "LRU" in bench.c_path_supports(fifo)
    with pytest.raises(KmmError):
        bench.write_path_job(tmp_path / "j", fifo, np.zeros(4, np.uint64))
