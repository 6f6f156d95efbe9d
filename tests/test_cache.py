"""kmm.cache against hand-worked cases, pycachesim and the twin (tests/naive/cache.py)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmm import cache
from kmm.cache import CacheConfig, CacheLevelConfig, Served, Source
from kmm.errors import ConfigError
from naive.cache import NaiveCaches

ONLY_L1D = dict(l1i=None, l2=None, llc=None)


def lines(*ids):
    return np.array(ids, dtype=np.uint64) << np.uint64(6)


def test_hand_worked_two_sets_two_ways():
    # 256 B, 2-way, 64 B lines: 2 sets. Lines 0, 2, 4 share set 0; line 1 is in set 1.
    cfg = CacheConfig(l1d=CacheLevelConfig(256, 2), **ONLY_L1D)
    r = cache.simulate_cache(lines(0, 1, 2, 0, 4, 1) + np.uint64(8), cfg, record=True)
    assert r.served.tolist() == [3, 3, 3, 0, 3, 0]
    assert (r.counters.l1d_hits, r.counters.l1d_misses, r.counters.mem_reads) == (2, 4, 4)


def test_eight_descriptors_share_a_line():
    cfg = CacheConfig(l1d=CacheLevelConfig(4096, 4), **ONLY_L1D)
    descriptors = np.arange(16, dtype=np.uint64) * np.uint64(8)   # 16 consecutive pte
    r = cache.simulate_cache(descriptors, cfg, source=Source.DATA)
    assert r.counters.mem_reads == 2


def test_memory_reads_are_charged_to_the_node_holding_the_line():
    cfg = CacheConfig(l1d=CacheLevelConfig(256, 2), **ONLY_L1D, cpus=2)
    pa = lines(0, 1, 2, 3, 0)
    r = cache.simulate_cache(pa, cfg, cpu=np.array([0, 0, 1, 1, 1], np.int32),
                             node=np.array([0, 1, 1, 0, 0], np.int32), nodes=2,
                             cpu_node=[0, 1])
    # CPU 0 (node 0) reads lines on nodes 0 and 1; CPU 1 (node 1) reads 2 (node 1), 3 and 0
    # (node 0): private L1s, so line 0 misses again on CPU 1.
    assert r.mem_reads[Source.DATA].tolist() == [[1, 1], [2, 1]]
    lat = np.array([[100.0, 200.0], [200.0, 100.0]])
    assert r.memory_ns(lat)[Source.DATA] == 100 + 200 + 2 * 200 + 100


def test_instruction_fetches_and_walk_reads_compete_in_l2():
    cfg = CacheConfig(l1i=CacheLevelConfig(128, 2), l1d=CacheLevelConfig(128, 2),
                      l2=CacheLevelConfig(256, 2), llc=None, walk_entry="l2")
    # an L2 of 2 sets x 2 ways: fetches of lines 0 and 2 fill set 0; a walk read of line 4
    # evicts line 0 from the L2, which the L1 I (1 set x 2 ways) still holds
    src = np.array([Source.IFETCH, Source.IFETCH, Source.WALK, Source.IFETCH], np.uint8)
    r = cache.simulate_cache(lines(0, 2, 4, 6), cfg, source=src, record=True)
    assert r.served.tolist() == [Served.MEMORY] * 4
    assert (r.counters.walk_reads, r.counters.mem_walk, r.counters.mem_ifetch) == (1, 1, 3)
    assert r.counters.l1d_hits + r.counters.l1d_misses == 0   # walks skipped the L1 D


@pytest.mark.parametrize("size,ways", [(32 << 10, 8), (4096, 64), (1 << 20, 16)])
def test_single_level_equals_pycachesim(size, ways):
    cachesim = pytest.importorskip("cachesim")
    rng = np.random.default_rng(size + ways)
    pa = rng.integers(0, size * 4, 20000).astype(np.uint64)
    mem = cachesim.MainMemory()
    l1 = cachesim.Cache("L1", size // 64 // ways, ways, 64, "LRU")
    mem.load_to(l1)
    mem.store_from(l1)
    sim = cachesim.CacheSimulator(l1, mem)
    for a in pa.tolist():
        sim.load(a, length=1)
    r = cache.simulate_cache(pa, CacheConfig(l1d=CacheLevelConfig(size, ways), **ONLY_L1D))
    assert r.counters.l1d_misses == l1.backend.MISS_count


def test_three_levels_equal_pycachesim():
    cachesim = pytest.importorskip("cachesim")
    rng = np.random.default_rng(7)
    pa = (rng.zipf(1.3, 30000).astype(np.uint64) % np.uint64(1 << 16)) << np.uint64(6)
    mem = cachesim.MainMemory()
    l3 = cachesim.Cache("L3", 256, 8, 64, "LRU")
    l2 = cachesim.Cache("L2", 64, 8, 64, "LRU", store_to=l3, load_from=l3)
    l1 = cachesim.Cache("L1", 16, 4, 64, "LRU", store_to=l2, load_from=l2)
    mem.load_to(l3)
    mem.store_from(l3)
    sim = cachesim.CacheSimulator(l1, mem)
    for a in pa.tolist():
        sim.load(a, length=1)
    cfg = CacheConfig(l1i=None, l1d=CacheLevelConfig(16 * 4 * 64, 4),
                      l2=CacheLevelConfig(64 * 8 * 64, 8), llc=CacheLevelConfig(256 * 8 * 64, 8))
    r = cache.simulate_cache(pa, cfg).counters
    assert (r.l1d_misses, r.l2_misses, r.llc_misses) == \
        (l1.backend.MISS_count, l2.backend.MISS_count, l3.backend.MISS_count)


@st.composite
def configs(draw):
    def level(max_sets):
        if draw(st.integers(0, 4)) == 0:
            return None
        policy = draw(st.sampled_from(["lru", "fifo", "random", "tree_plru"]))
        ways = draw(st.integers(1, 4))
        if policy == "tree_plru":  # a power of two
            ways = 1 << (ways.bit_length() - 1)
        sets = 1 << draw(st.integers(0, max_sets))
        return CacheLevelConfig(sets * ways * 64, ways, policy)
    return CacheConfig(l1i=level(1), l1d=level(1), l2=level(2), llc=level(3),
                       walk_entry=draw(st.sampled_from(["l1d", "l2"])),
                       cpus=draw(st.integers(1, 3)), seed=draw(st.integers(0, 3)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400))
def test_kernel_matches_twin(cfg, seed, n):
    rng = np.random.default_rng(seed)
    pa = rng.integers(0, 64 * 64, n).astype(np.uint64)
    pa[rng.random(n) < 0.2] |= np.uint64(1 << 63)    # synthetic high (negative) keys too
    src = rng.integers(0, 3, n).astype(np.uint8)
    cpu = rng.integers(0, cfg.cpus, n).astype(np.int32)
    node = rng.integers(0, 2, n).astype(np.int32)
    cpu_node = rng.integers(0, 2, cfg.cpus)
    r = cache.simulate_cache(pa, cfg, source=src, cpu=cpu, node=node, nodes=2,
                             cpu_node=cpu_node, record=True)
    twin = NaiveCaches(cfg, 2, cpu_node)
    assert r.served.tolist() == twin.run(pa, src, cpu, node)
    assert r.counters.as_dict() == twin.counts
    assert np.array_equal(r.mem_reads, twin.mem)


def test_state_persists_across_runs():
    c = cache.Caches(CacheConfig(l1d=CacheLevelConfig(4096, 4), **ONLY_L1D))
    first = c.run(lines(*range(32)))
    second = c.run(lines(*range(32)))
    assert (second.counters - first.counters).mem_reads == 0


def test_config_errors():
    with pytest.raises(ConfigError, match="power of two"):
        CacheConfig(l1d=CacheLevelConfig(3 * 64 * 4, 4))
    with pytest.raises(ConfigError, match="walk_entry"):
        CacheConfig(walk_entry="l3")
    with pytest.raises(ConfigError, match="node"):
        cache.simulate_cache(lines(1), CacheConfig(), node=2, nodes=2)
    with pytest.raises(ConfigError, match="one node per CPU"):
        cache.Caches(CacheConfig(cpus=2), nodes=2, cpu_node=[0])


def test_node_of_regions():
    starts = np.array([0, 1 << 30, 3 << 30], np.uint64)
    nids = np.array([0, 1, 0], np.int32)
    a = np.array([5, (1 << 30) + 7, (2 << 30), (3 << 30), 1 << 40], np.uint64)
    assert cache.node_of(a, starts, nids).tolist() == [0, 1, 1, 0, 0]
    with pytest.raises(ConfigError, match="increasing"):
        cache.node_of(a, starts[::-1], nids)
