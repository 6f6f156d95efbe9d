"""kmm.walk: reference counts against n + (n+1)m, NUMA charging, and the full-path twin."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmm import geometry, tlb, walk
from kmm.cache import CacheConfig, CacheLevelConfig, Source
from kmm.errors import ConfigError
from kmm.geometry import nested_walk_references
from kmm.tlb import TLBConfig, TLBLevelConfig
from kmm.walk import PathConfig, PathCosts, TableNode
from naive.walk import NaivePath

NO_CACHES = CacheConfig(l1i=None, l1d=None, l2=None, llc=None)
TINY_TLB = TLBConfig.single(entries=4, ways=4)   # no walk caches


def far_pages(n, shift=39):
    """Addresses that share no table below the top: one per 512 GiB (4K) region."""
    return np.arange(n, dtype=np.uint64) << np.uint64(shift)


S1 = [geometry.arm64(g, va) for g, va in (("4K", 39), ("4K", 48), ("16K", 47), ("16K", 48),
                                         ("64K", 42), ("64K", 48))]
S2 = [geometry.stage2(g, ipa, c) for g in ("4K", "16K", "64K") for ipa, c in
      ((40, True), (40, False), (44, True), (48, False))]


def _tlb_for(*gs):
    return TinyTLB.with_geometry(*gs)


TinyTLB = TINY_TLB


@pytest.mark.parametrize("s1", S1, ids=lambda g: g.name)
def test_one_dimensional_walk_reads_every_level(s1):
    cfg = PathConfig(tlb=_tlb_for(s1), caches=NO_CACHES, stage1=s1)
    r = walk.simulate_path(far_pages(8, 20), cfg, record=True)
    assert r.refs.tolist() == [s1.levels] * 8
    assert r.walk.refs == 8 * s1.levels == 8 * walk.walk_references(s1)
    for leaf in s1.leaf_levels:
        r = walk.simulate_path(far_pages(3, 31), cfg, leaf_level=leaf, record=True)
        assert r.refs.tolist() == [leaf - s1.start_level + 1] * 3


@pytest.mark.parametrize("s2", S2, ids=lambda g: g.name + (" concat" if g.concatenated > 1
                                                          else ""))
@pytest.mark.parametrize("s1", S1, ids=lambda g: g.name)
def test_nested_walk_is_n_plus_n_plus_one_m(s1, s2):
    cfg = PathConfig(tlb=_tlb_for(s1, s2), caches=NO_CACHES, stage1=s1, stage2=s2)
    r = walk.simulate_path(far_pages(6, 20), cfg, record=True)
    n, m = s1.levels, s2.levels
    assert r.refs.tolist() == [n + (n + 1) * m] * 6
    assert n + (n + 1) * m == nested_walk_references(n, m) == walk.nested_references(s1, s2)
    assert r.walk.s1_refs == 6 * n and r.walk.s2_refs == 6 * (n + 1) * m
    # stage-2 blocks for the data and for the pages holding stage-1 tables: fewer
    block = max(lv for lv in s2.leaf_levels if lv < 3)
    cfg_b = PathConfig(tlb=_tlb_for(s1, s2), caches=NO_CACHES, stage1=s1, stage2=s2,
                       s2_table_leaf_level=block)
    r = walk.simulate_path(far_pages(6, 20), cfg_b, s2_leaf_level=block, record=True)
    m_b = block - s2.start_level + 1
    assert r.refs.tolist() == [n + (n + 1) * m_b] * 6
    assert m_b < m
    assert r.refs[0] == walk.nested_references(s1, s2, 3, block, block)


def test_concatenation_removes_a_stage2_level():
    assert geometry.stage2("4K", 40, True).levels == 3
    assert geometry.stage2("4K", 40, False).levels == 4
    s1 = geometry.arm64("4K", 48)
    counts = []
    for concat in (True, False):
        s2 = geometry.stage2("4K", 40, concat)
        cfg = PathConfig(tlb=_tlb_for(s1, s2), caches=NO_CACHES, stage1=s1, stage2=s2)
        counts.append(walk.simulate_path(far_pages(1), cfg).walk.refs)
    assert counts == [4 + 5 * 3, 4 + 5 * 4]


def test_stage2_only_walk():
    s2 = geometry.stage2("4K", 40)
    cfg = PathConfig(tlb=_tlb_for(s2), caches=NO_CACHES, stage2=s2)
    r = walk.simulate_path(far_pages(4, 20), cfg, record=True)
    assert r.refs.tolist() == [3] * 4


def test_walk_cache_hits_shorten_walks():
    s1 = geometry.arm64("4K", 48)
    t = TLBConfig(l2=TLBLevelConfig(4, 4), walk_cache=TLBLevelConfig(16, 4)).with_geometry(s1)
    cfg = PathConfig(tlb=t, caches=NO_CACHES, stage1=s1)
    # pages 0 and 1 share every table; page 512 shares the level-0..1 tables (new pmd entry)
    va = np.array([0, 1, 512, 1 << 18], dtype=np.uint64) << np.uint64(12)
    r = walk.simulate_path(va, cfg, record=True)
    assert r.refs.tolist() == [4, 1, 2, 3]
    assert (r.walk.walk_cache_hits, r.walk.walk_cache_misses) == (3, 1)
    # TLBI VAE1 drops the walk-cache entries that cover the VA; VALE1 keeps them
    p = walk.Path(cfg)
    p.run(va[:1])
    assert tlb.invalidate_va(p.tlb_state, 0, 0, 0, 0, last_level_only=True) == 1
    assert p.run(va[:1], record=True).refs.tolist() == [1]
    assert tlb.invalidate_va(p.tlb_state, 0, 0, 0, 0) == 4   # leaf + 3 table levels
    assert p.run(va[:1], record=True).refs.tolist() == [4]


def test_stage2_walk_cache_hits():
    s1, s2 = geometry.arm64("4K", 48), geometry.stage2("4K", 40)
    t = TLBConfig(l2=TLBLevelConfig(4, 4), s2_walk_cache=TLBLevelConfig(64, 4)).with_geometry(
        s1, s2)
    cfg = PathConfig(tlb=t, caches=NO_CACHES, stage1=s1, stage2=s2)
    r = walk.simulate_path(np.array([0, 1], np.uint64) << np.uint64(12), cfg, record=True)
    first, second = r.refs.tolist()
    assert first < 4 + 5 * 3          # stage-2 entries filled by earlier references hit
    assert second < first
    assert r.walk.s2_cache_hits > 0


def test_descriptors_of_one_table_share_lines():
    s1 = geometry.arm64("4K", 48)
    caches = CacheConfig(l1i=None, l1d=None, l2=CacheLevelConfig(1 << 20, 8), llc=None)
    cfg = PathConfig(tlb=TINY_TLB.with_geometry(s1), caches=caches, stage1=s1)
    # 64 consecutive pages, TLB of 4: every access walks; level-3 descriptors 8 per line
    r = walk.simulate_path(np.arange(64, dtype=np.uint64) << np.uint64(12), cfg)
    assert r.walk.refs == 64 * 4
    assert r.cache.mem_walk == 3 + 64 // 8   # top three levels once, then one line per 8


def test_walk_references_are_charged_to_the_table_node():
    s1 = geometry.arm64("4K", 48)
    va = far_pages(4, 30)
    base = dict(tlb=TINY_TLB.with_geometry(s1), caches=NO_CACHES, stage1=s1, nodes=2)
    fixed = walk.simulate_path(va, PathConfig(**base, table_fixed_nid=1))
    assert fixed.walk_refs_by_node.tolist() == [[0, 16], [0, 0]]
    assert fixed.mem_reads[Source.WALK].tolist() == [[0, 16], [0, 0]]
    # the top level on node 0, the rest on the node of the memory they map
    mem = walk.simulate_path(va, PathConfig(**base, table_node=[0, 1, 1, 1]), node=1)
    assert mem.walk_refs_by_node.tolist() == [[4, 12], [0, 0]]
    # per-node copies: each CPU reads its own node's tables
    t2 = TLBConfig(l2=TLBLevelConfig(4, 4), cpus=2).with_geometry(s1)
    rep = PathConfig(tlb=t2, caches=CacheConfig(l1i=None, l1d=None, l2=None, llc=None, cpus=2),
                     stage1=s1, nodes=2, cpu_nid=(0, 1), table_node=TableNode.LOCAL)
    r = walk.simulate_path(va, rep, cpu=np.array([0, 1, 0, 1], np.int32))
    assert r.walk_refs_by_node.tolist() == [[8, 0], [0, 8]]
    # given per access, as PageTable.walk_nids returns them
    given = PathConfig(**base, table_node=TableNode.GIVEN)
    tn = np.array([[0, 1, 1, 0]] * 4, np.int32)
    assert walk.simulate_path(va, given, table_nid=tn).walk_refs_by_node.tolist() == \
        [[8, 8], [0, 0]]


def test_time_is_counts_times_costs():
    s1 = geometry.arm64("4K", 48)
    caches = CacheConfig(l1i=None, l1d=CacheLevelConfig(4096, 4), l2=None, llc=None)
    cfg = PathConfig(tlb=TINY_TLB.with_geometry(s1), caches=caches, stage1=s1, nodes=2,
                     table_fixed_nid=1)
    r = walk.simulate_path(np.zeros(2, np.uint64), cfg, node=0)
    # access 1: walk of 4 references (memory on node 1, walk reads enter at the absent
    # L2 so go to memory), data line from node 0; access 2: TLB hit and L1 D hit.
    costs = PathCosts(latency_ns=((80.0, 160.0), (160.0, 80.0)), cpu_ghz=2.0, l1_cycles=4,
                      l2_tlb_cycles=6)
    t = r.time_ns(costs)
    assert r.served[Source.WALK].tolist() == [0, 0, 0, 4]
    assert r.served[Source.DATA].tolist() == [1, 0, 0, 1]
    assert t["walk_ns"] == 4 * 160.0
    assert t["data_ns"] == 80.0 + 4 / 2.0
    assert t["tlb_ns"] == 6 / 2.0          # the second access hit the (only, L2) TLB
    assert t["total_ns"] == pytest.approx(640 + 82 + 3)
    assert t["memory_ns_by_node"].tolist() == [80.0, 640.0]


@st.composite
def path_configs(draw):
    s1 = draw(st.sampled_from([None, geometry.arm64("4K", 48), geometry.arm64("64K", 42)]))
    s2 = draw(st.sampled_from([None, geometry.stage2("4K", 40), geometry.stage2("16K", 40)]))
    if s1 is None and s2 is None:
        s1 = geometry.arm64("4K", 39)
    gs = [g for g in (s1, s2) if g is not None]
    cpus = draw(st.integers(1, 2))
    small = lambda n: TLBLevelConfig(n, draw(st.sampled_from([1, 2, n])))  # noqa: E731
    t = TLBConfig(l1i=small(4), l1d=small(4), l2=small(8) if draw(st.booleans()) else None,
                  walk_cache=small(4) if draw(st.booleans()) else None,
                  s2_walk_cache=small(8) if draw(st.booleans()) else None,
                  cpus=cpus).with_geometry(*gs)
    caches = CacheConfig(l1i=CacheLevelConfig(256, 2), l1d=CacheLevelConfig(256, 2),
                         l2=CacheLevelConfig(1024, 4), llc=CacheLevelConfig(4096, 4),
                         walk_entry=draw(st.sampled_from(["l1d", "l2"])), cpus=cpus)
    nodes = 2
    rules = draw(st.lists(st.sampled_from([0, 1, 2, 3]), min_size=1, max_size=1))[0]
    s2_leaf_table = 3
    if s2 is not None and draw(st.booleans()):
        s2_leaf_table = max(lv for lv in s2.leaf_levels if lv < 3)
    return PathConfig(tlb=t, caches=caches, stage1=s1, stage2=s2, nodes=nodes,
                      cpu_nid=tuple(range(cpus)), table_node=rules,
                      table_fixed_nid=draw(st.integers(0, 1)),
                      s2_table_node=draw(st.sampled_from([0, 1, 2, 3])),
                      s2_table_leaf_level=s2_leaf_table)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=path_configs(), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200))
def test_full_path_matches_twin(cfg, seed, n):
    rng = np.random.default_rng(seed)
    g = cfg.stage1 or cfg.stage2
    pages = rng.integers(0, 64, n)
    va = (pages.astype(np.uint64) << np.uint64(g.page_shift + 3))
    va += rng.integers(0, 8, n).astype(np.uint64) << np.uint64(g.page_shift)
    kind = rng.integers(0, 3, n).astype(np.uint8)
    leaf = np.full(n, 3, np.int8)
    leaf2 = np.full(n, 3, np.int8)
    if cfg.stage1 is not None:
        leaf = np.where(pages % 5 == 0, max(cfg.stage1.leaf_levels[:-1]), 3).astype(np.int8)
    if cfg.stage2 is not None:
        leaf2 = np.where(pages % 3 == 0, max(cfg.stage2.leaf_levels[:-1]), 3).astype(np.int8)
    asid = rng.integers(0, 2, n).astype(np.int32)
    vmid = np.zeros(n, np.int32)
    cpu = rng.integers(0, cfg.tlb.cpus, n).astype(np.int32)
    glob = (pages % 4 == 0)
    node = (pages % 2).astype(np.int32)
    p = walk.Path(cfg)
    r = p.run(va, kind=kind, leaf_level=leaf, s2_leaf_level=leaf2, asid=asid, vmid=vmid,
              cpu=cpu, global_=glob, node=node, record=True)
    acc = p._arrays(va, kind, None, leaf, None, leaf2, None, asid, vmid, cpu, glob, node, None)
    twin = NaivePath(cfg)
    expected = twin.run(va, kind, acc.shift, leaf, leaf2, asid, vmid, cpu, glob, node)
    assert r.refs.tolist() == expected
    assert r.walk.as_dict() == twin.walk
    assert r.tlb.as_dict() == twin.tlb.counts
    assert r.cache.as_dict() == twin.caches.counts
    assert np.array_equal(r.walk_refs_by_node, twin.refs_node)
    assert np.array_equal(r.served, twin.served)
    assert np.array_equal(r.mem_reads, twin.caches.mem)


def test_config_errors():
    s1 = geometry.arm64("4K", 48)
    with pytest.raises(ConfigError, match="stage-1 or a stage-2"):
        PathConfig(tlb=TINY_TLB)
    with pytest.raises(ConfigError, match="stage-2 geometry"):
        PathConfig(tlb=TINY_TLB, stage2=s1)
    with pytest.raises(ConfigError, match="per level"):
        PathConfig(tlb=TINY_TLB, stage1=s1, table_node=[0, 1])
    with pytest.raises(ConfigError, match="table_nid"):
        walk.simulate_path(far_pages(1), PathConfig(tlb=TINY_TLB, stage1=s1,
                                                    table_node=TableNode.GIVEN))
    with pytest.raises(ConfigError, match="hold no leaf"):
        walk.simulate_path(far_pages(1), PathConfig(tlb=TINY_TLB.with_geometry(s1), stage1=s1),
                           leaf_level=0)
    with pytest.raises(ConfigError, match="per CPU"):
        PathConfig(tlb=TINY_TLB, stage1=s1, nodes=2, cpu_nid=(3,))


def test_warm_up_is_a_difference_of_results():
    s1 = geometry.arm64("4K", 48)
    cfg = PathConfig(tlb=TLBConfig.single(64, 4).with_geometry(s1), stage1=s1)
    p = walk.Path(cfg)
    i = np.arange(32, dtype=np.uint64)
    va = (i << np.uint64(12)) + (i << np.uint64(6))   # 32 pages, 32 different L1 D sets
    warm = p.run(va)
    measured = p.run(va) - warm
    assert measured.tlb.accesses == 32 and measured.walk.walks == 0
    assert measured.cache.mem_reads == 0 and measured.served[Source.DATA, 0] == 32
    assert warm.walk.walks == 32


# ---- tags, lines and regimes ------------------------------------------------------------
def _tagged_setup(n=3000, seed=5):
    g = geometry.arm64("4K", 48)
    cfg = PathConfig(tlb=TLBConfig.neoverse_n1(walk_cache_entries=8).with_geometry(g),
                     caches=CacheConfig(l1i=CacheLevelConfig(4096, 2),
                                        l1d=CacheLevelConfig(4096, 2),
                                        l2=CacheLevelConfig(16384, 4), llc=None),
                     stage1=g, nodes=2, table_node=TableNode.INTERLEAVE)
    rng = np.random.default_rng(seed)
    va = (rng.integers(0, 1 << 14, n).astype(np.uint64) << np.uint64(12)) \
        | rng.integers(0, 4096, n).astype(np.uint64)
    kw = dict(kind=rng.integers(0, 3, n).astype(np.uint8), node=rng.integers(0, 2, n),
              lines=rng.integers(0, 4, n))
    return cfg, va, kw, rng.integers(0, 5, n)


def test_tags_split_every_counter_and_change_nothing():
    cfg, va, kw, tag = _tagged_setup()
    plain = walk.Path(cfg).run(va, **kw)
    tagged = walk.Path(cfg, tags=5).run(va, tag=tag, **kw)
    assert plain.tlb == tagged.tlb and plain.walk == tagged.walk and plain.cache == tagged.cache
    assert (plain.served == tagged.served).all() and plain.by_tag is None
    T, b = walk.TagEvent, tagged.by_tag
    assert b.shape == (5, len(T))
    assert b[:, T.ACCESSES].tolist() == np.bincount(tag, minlength=5).tolist()
    assert b[:, T.WALKS].sum() == tagged.walk.walks and b[:, T.WALK_REFS].sum() == tagged.walk.refs
    assert b[:, T.L1_TLB_MISSES].sum() == tagged.tlb.l1i_misses + tagged.tlb.l1d_misses
    assert b[:, T.WALK_READS_L1:T.WALK_READS_MEMORY + 1].sum(0).tolist() == \
        tagged.served[Source.WALK].tolist()
    lines = b[:, T.FIRST_L1:].reshape(5, 2, 4).sum(1).sum(0)
    assert lines.tolist() == (tagged.served[Source.IFETCH] + tagged.served[Source.DATA]).tolist()
    assert b[:, T.FIRST_L1:T.FIRST_MEMORY + 1].sum() == int((kw["lines"] > 0).sum())
    # each tag's counts are those of running its accesses alone... in the same machine order:
    # here, at least, the counts of tag 0 do not depend on how the other accesses are tagged
    retag = walk.Path(cfg, tags=2).run(va, tag=(tag != 0).astype(int), **kw)
    assert retag.by_tag[0].tolist() == b[0].tolist()


def test_lines_read_consecutive_lines_and_zero_translates_only():
    g = geometry.arm64("4K", 48)
    cfg = PathConfig(tlb=TINY_TLB.with_geometry(g), caches=NO_CACHES, stage1=g)
    r = walk.Path(cfg).run(np.array([0x1000, 0x1000], np.uint64), lines=np.array([3, 0]))
    assert r.tlb.accesses == 2 and r.walk.walks == 1
    assert r.mem_reads[Source.DATA].sum() == 3 and r.cache.accesses == 3 + r.walk.refs
    with pytest.raises(ConfigError, match="lines"):
        walk.Path(cfg).run(np.array([0x1000], np.uint64), lines=-1)
    with pytest.raises(ConfigError, match="tag"):
        walk.Path(cfg).run(np.array([0x1000], np.uint64), tag=0)
    with pytest.raises(ConfigError, match="tag"):
        walk.Path(cfg, tags=2).run(np.array([0x1000], np.uint64), tag=2)


def test_regimes_share_the_machine_but_not_the_tables():
    g1, g2 = geometry.arm64("4K", 48), geometry.stage2("4K", 40)
    cfg = PathConfig(tlb=TINY_TLB.with_geometry(g1, g2), caches=NO_CACHES, stage1=g1, stage2=g2)
    host = walk.Path(cfg)
    el2 = host.regime(stage2=None)
    assert el2.tlb_state is host.tlb_state and el2.cache_state is host.cache_state
    assert el2.out is host.out
    va = np.array([0x1234_5000], np.uint64)
    a = host.run(va, global_=True)
    frames = int(host.walk_state.meta[0])
    tlb.invalidate_all(host.tlb_state, -1)
    b = el2.run(va, global_=True)  # a 1D walk through the regime's own tables
    assert b.walk.walks == 2 and b.walk.refs - a.walk.refs == g1.levels
    assert int(host.walk_state.meta[0]) == frames + g1.levels
    tlb.invalidate_all(host.tlb_state, -1)
    c = host.run(va, global_=True)  # the host's tables are still its own
    assert int(host.walk_state.meta[0]) == frames + g1.levels
    assert c.walk.refs - b.walk.refs == a.walk.refs
    with pytest.raises(ConfigError, match="regime changes only"):
        host.regime(tlb=cfg.tlb)


def _without_filters(path: walk.Path) -> walk.Path:
    path._out = path._out._replace(last=np.zeros((0, walk.LAST_FIELDS), np.int64))
    return path


def filter_case(policy: str, walk_entry: str, seed: int):
    """A stream whose filters matter: runs of repeats (as in real fetch streams) on two CPUs,
    kernel and user mappings of two ASIDs, 4K and 2M leaves with contiguous ranges; its
    machine (small TLBs and caches of ``policy``) and stage 1 and 2 geometries.
    ``(g, s2, tlb config, cache config, rng, n, va, per-access keywords)``; ``rng`` goes on
    to draw what a test adds."""
    g, s2 = geometry.arm64("4K", 48), geometry.stage2("4K", 40)
    lv = lambda e, w: TLBLevelConfig(e, w, policy)  # noqa: E731
    t = TLBConfig(l1i=lv(32, 32), l1d=lv(32, 32), l2=lv(512, 4), walk_cache=lv(64, 4),
                  s2_walk_cache=lv(64, 4), cpus=2).with_geometry(g, s2)
    caches = CacheConfig(l1i=CacheLevelConfig(4096, 4, policy),
                         l1d=CacheLevelConfig(4096, 4, policy),
                         l2=CacheLevelConfig(16384, 8, policy), llc=CacheLevelConfig(65536, 16),
                         walk_entry=walk_entry, cpus=2)
    rng = np.random.default_rng(seed)
    n = 30_000
    base = rng.integers(0, 1 << 16, n // 10).astype(np.uint64) << np.uint64(12)
    va = np.repeat(base, 10) + rng.integers(0, 256, n).astype(np.uint64)
    kw = dict(kind=np.repeat(rng.integers(0, 3, n // 10), 10),
              cpu=np.repeat(rng.integers(0, 2, n // 10), 10),
              asid=np.repeat(rng.integers(1, 3, n // 10), 10),
              global_=np.repeat(rng.random(n // 10) < 0.3, 10),
              leaf_level=np.repeat(rng.choice([2, 3], n // 10), 10),
              cont=np.repeat(rng.random(n // 10) < 0.3, 10))
    return g, s2, t, caches, rng, n, va, kw


@pytest.mark.parametrize("policy", ["lru", "fifo", "random", "tree_plru"])
@pytest.mark.parametrize("walk_entry", ["l2", "l1d"])
def test_last_translation_and_line_filters_change_no_count(policy, walk_entry):
    # the stream of filter_case with several lines and tags, nested stage 2 or not
    g, s2, t, caches, rng, n, va, kw = filter_case(policy, walk_entry, 7)
    kw.update(lines=np.repeat(rng.integers(0, 3, n // 10), 10).astype(np.int32),
              tag=np.repeat(rng.integers(0, 3, n // 10), 10))
    for s2cfg in (None, s2):
        cfg = PathConfig(tlb=t, caches=caches, stage1=g, stage2=s2cfg, nodes=2,
                         cpu_nid=(0, 1), table_node=TableNode.INTERLEAVE)
        a = walk.Path(cfg, tags=3).run(va, **kw)
        b = _without_filters(walk.Path(cfg, tags=3)).run(va, **kw)
        for name in ("tlb", "cache", "walk"):
            assert np.array_equal(getattr(a, name).values, getattr(b, name).values), name
        for name in ("mem_reads", "walk_refs_by_node", "walk_refs_by_level", "served",
                     "by_tag"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert a.tlb.l1d_hits + a.tlb.l1i_hits > n // 2 and a.walk.walks > 100


def test_filters_restart_with_every_run():
    # an invalidation between two runs must reach the next run's first access
    cfg = walk.bench_config(1)
    p = walk.Path(cfg)
    va = np.full(4, 0x1234000, np.uint64)
    p.run(va)
    tlb.invalidate_all(p.tlb_state, -1)
    r = p.run(va)
    assert r.walk.walks == 2
