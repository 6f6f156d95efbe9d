"""What the full path does for speed changes no count (the loop of settled accesses);
per-access input checks (one pass each, on the values given); the suite part of ``kmm
bench`` run end to end on a short command."""
import numpy as np
import pytest

from kmm import tlb, walk
from kmm.errors import ConfigError
from kmm.suite import bench
from kmm.walk import PathConfig, TableNode
from test_walk import _without_filters, filter_case


@pytest.mark.parametrize("policy", ["lru", "tree_plru", "random"])
@pytest.mark.parametrize("walk_entry", ["l2", "l1d"])
def test_settled_accesses_loop_changes_no_count(policy, walk_entry):
    # untagged, unrecorded runs take the loop of settled accesses; without the filters, or
    # recording references, every access goes through the general loop: the same counts
    g, s2, t, caches, rng, n, va, kw = filter_case(policy, walk_entry, 11)
    kw.update(node=rng.integers(0, 2, n), pa=va ^ np.uint64(1 << 30))
    for lines in (None, np.repeat(rng.integers(0, 3, n // 10), 10)):
        for s2cfg in (None, s2):
            cfg = PathConfig(tlb=t, caches=caches, stage1=g, stage2=s2cfg, nodes=2,
                             cpu_nid=(0, 1), table_node=TableNode.INTERLEAVE)
            a = walk.Path(cfg).run(va, lines=lines, **kw)
            b = _without_filters(walk.Path(cfg)).run(va, lines=lines, **kw)
            c = walk.Path(cfg).run(va, lines=lines, record=True, **kw)
            for r in (b, c):
                for name in ("tlb", "cache", "walk"):
                    assert np.array_equal(getattr(a, name).values, getattr(r, name).values)
                for name in ("mem_reads", "walk_refs_by_node", "walk_refs_by_level", "served"):
                    assert np.array_equal(getattr(a, name), getattr(r, name)), name
            assert a.tlb.l1d_hits + a.tlb.l1i_hits > n // 2 and a.walk.walks > 100


@pytest.mark.parametrize("policy", ["lru", "tree_plru"])
@pytest.mark.parametrize("walk_entry", ["l2", "l1d"])
def test_settled_loop_with_one_size_context_and_lines_for_all_changes_no_count(policy,
                                                                             walk_entry):
    # one entry size, ASID, VMID and line count for every access (a kernel trace's case):
    # the loop reads them once; with one value of lines other than 1 nothing settles
    g, s2, t, caches, rng, n, va, kw = filter_case(policy, walk_entry, 12)
    for key in ("asid", "leaf_level", "cont"):
        kw.pop(key)
    kw.update(node=rng.integers(0, 2, n), pa=va ^ np.uint64(1 << 30))
    cfg = PathConfig(tlb=t, caches=caches, stage1=g, nodes=2, cpu_nid=(0, 1),
                     table_node=TableNode.INTERLEAVE)
    for extra in ({}, {"lines": 1}, {"lines": 2}, {"lines": 0}, {"asid": 5, "vmid": 3}):
        a = walk.Path(cfg).run(va, **extra, **kw)
        b = _without_filters(walk.Path(cfg)).run(va, **extra, **kw)
        for name in ("tlb", "cache", "walk"):
            assert np.array_equal(getattr(a, name).values, getattr(b, name).values), name
        for name in ("mem_reads", "walk_refs_by_node", "walk_refs_by_level", "served"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert a.tlb.l1d_hits + a.tlb.l1i_hits > n // 2


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.int64, np.uint64,
                                   np.float64, np.bool_])
@pytest.mark.parametrize("n", [1, 63, 64, 1000])
def test_value_range_is_min_and_max(dtype, n):
    rng = np.random.default_rng(n)
    a = rng.integers(0, 2 if dtype is np.bool_ else 100, n).astype(dtype)
    a[n // 2] = 1 if dtype is np.bool_ else 7
    assert tlb.value_range(a) == (a.min(), a.max())


def test_values_are_checked_before_the_conversion():
    # 2**32 and 258 would wrap to 0 and 2 in the kernel's int32 and uint8 columns
    cfg = walk.bench_config()
    p = walk.Path(cfg)
    a = np.arange(100, dtype=np.uint64) << np.uint64(12)
    big = np.zeros(100, np.int64)
    big[-1] = 1 << 32
    with pytest.raises(ConfigError, match="nodes must be in 0..1"):
        p.arrays(a, node=big)
    with pytest.raises(ConfigError, match="CPU numbers"):
        p.arrays(a, cpu=big)
    with pytest.raises(ConfigError, match="kinds are"):
        p.arrays(a, kind=np.where(big > 0, 258, 0))
    with pytest.raises(ConfigError, match="kinds are"):
        p.arrays(a, kind=-1)
    with pytest.raises(ConfigError, match="0 or more lines"):
        p.arrays(a, lines=-big)
    with pytest.raises(ConfigError, match="tags must be in 0..2"):
        walk.Path(cfg, tags=3).arrays(a, tag=np.minimum(big, 3))
    ok = p.arrays(a, node=np.ones(100, np.int64), cpu=0, kind=np.full(100, 2))
    assert ok.node.dtype == np.int32 and ok.node.tolist() == [1] * 100
    assert ok.flags.dtype == np.uint8 and set(ok.flags.tolist()) == {2}


@pytest.mark.parametrize("kind_n,global_n", [(1, 1), (1, 50), (50, 1), (50, 50)])
def test_flags_combine_kind_and_global_either_broadcast(kind_n, global_n):
    cfg = tlb.TLBConfig.neoverse_n1()
    rng = np.random.default_rng(kind_n + global_n)
    kind = rng.integers(0, 3, kind_n).astype(np.uint8)
    glob = rng.random(global_n) < 0.5
    acc = tlb.make_accesses(cfg, np.zeros(50, np.uint64), kind=kind if kind_n > 1 else kind[0],
                            global_=glob if global_n > 1 else bool(glob[0]))
    want = np.broadcast_to(kind, (max(kind_n, global_n),)) | np.where(glob, tlb.FLAG_GLOBAL, 0)
    assert acc.flags.dtype == np.uint8 and acc.flags.tolist() == want.tolist()


@pytest.mark.parametrize("kind_dtype", [np.uint8, np.int64])
@pytest.mark.parametrize("cpu_dtype", [np.uint8, np.int64, np.uint64])
def test_one_pass_checks_and_conversions_give_the_same_columns(kind_dtype, cpu_dtype):
    # a trace's per-access kind, global bit and vCPU (one byte each) are checked and
    # converted in one pass each: the same columns and the same refusals as the numpy way
    cfg = tlb.TLBConfig.neoverse_n1(cpus=3)
    rng = np.random.default_rng(7)
    n = 1000
    kind = rng.integers(0, 3, n).astype(kind_dtype)
    glob = rng.random(n) < 0.5
    cpu = rng.integers(0, 3, n).astype(cpu_dtype)
    acc = tlb.make_accesses(cfg, np.zeros(n, np.uint64), kind=kind, global_=glob, cpu=cpu)
    want = kind.astype(np.uint8) | np.where(glob, tlb.FLAG_GLOBAL, 0).astype(np.uint8)
    assert acc.flags.dtype == np.uint8 and acc.flags.tolist() == want.tolist()
    assert acc.cpu.dtype == np.int32 and acc.cpu.tolist() == cpu.tolist()
    for bad_kind in (3, 258 if kind_dtype is np.int64 else 255):
        k = kind.copy()
        k[-1] = bad_kind
        with pytest.raises(ConfigError, match="kinds are"):
            tlb.make_accesses(cfg, np.zeros(n, np.uint64), kind=k, global_=glob)
    c = cpu.copy()
    c[-1] = 3
    with pytest.raises(ConfigError, match="CPU numbers"):
        tlb.make_accesses(cfg, np.zeros(n, np.uint64), cpu=c)
    if cpu_dtype is np.int64:
        c[-1] = -1
        with pytest.raises(ConfigError, match="CPU numbers"):
            tlb.make_accesses(cfg, np.zeros(n, np.uint64), cpu=c)
        c[-1] = (1 << 32) + 1   # would wrap to 1 in int32: refused before the conversion
        with pytest.raises(ConfigError, match="CPU numbers"):
            tlb.make_accesses(cfg, np.zeros(n, np.uint64), cpu=c)


@pytest.mark.slow
def test_suite_part_runs_end_to_end_on_a_short_command():
    # the real part runs `kmm reproduce` twice (minutes); the same code path with its help
    out = bench.bench_suite(("reproduce", "--help"), points=2, workers=(1,), n_values=1000,
                            rounds=1, notebook=False)
    assert out["reproduce_cold_rc"] == out["reproduce_warm_rc"] == 0
    assert out["reproduce_cold_s"] > 0 and out["reproduce_warm_s"] > 0
    assert out["sweep"]["points"] == 2 and set(out["sweep"]["wall_s"]) == {1}
    text = bench.format_table({"tlb": [], "suite": out})
    assert "kmm reproduce --help: cold" in text and "failed" not in text
    assert "2-point sweep: 1 worker" in text
    failed = bench.format_table({"tlb": [], "suite": {**out, "reproduce_warm_rc": 2}})
    assert "warm" in failed and "(failed: exit 2)" in failed
