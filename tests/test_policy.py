"""kmm.policy: the replacement hooks shared by TLBs and caches, against hand-worked cases and
the plain-Python twin (tests/naive/policy.py). The TLB and cache tests compare whole
structures, every policy included, with their twins on random traces."""
import numpy as np
import pytest

from kmm import cache, policy, tlb
from kmm.errors import ConfigError
from kmm.policy import Replacement
from kmm.tlb import Outcome, TLBConfig, TLBLevelConfig
from naive.policy import xorshift64 as naive_xorshift64

M, H = Outcome.WALK, Outcome.L2


def pages(*vpns):
    return np.array(vpns, dtype=np.uint64) << np.uint64(12)


def test_tree_plru_hand_worked_four_ways():
    # one 4-way set; pages 0-3 fill ways 0-3 (bits then point: root left, left pair to way
    # 0, right pair to way 2). Touching 0 points the root right, so 4 replaces way 2
    # (page 2), not page 1 as LRU would; 1 still hits.
    trace = pages(0, 1, 2, 3, 0, 4, 1)
    plru = tlb.trace_outcomes(trace, TLBConfig.single(4, 4, "tree_plru"))
    lru = tlb.trace_outcomes(trace, TLBConfig.single(4, 4, "lru"))
    assert plru.tolist() == [M, M, M, M, H, M, H]
    assert lru.tolist() == [M, M, M, M, H, M, M]


def test_tree_plru_in_a_cache_level():
    line = 64
    cfg = cache.CacheConfig(l1i=None, l1d=cache.CacheLevelConfig(4 * line, 4, "tree_plru"),
                            l2=None, llc=None)
    r = cache.simulate_cache(np.array([0, 1, 2, 3, 0, 4, 1], np.uint64) * line, cfg,
                             record=True)
    assert r.served.tolist() == [3, 3, 3, 3, 0, 3, 0]


@pytest.mark.parametrize("ways", [1, 2, 4, 8, 16, 64])
def test_plru_bits_point_away_from_the_last_touched_way(ways):
    bits = np.int64(0)
    for w in range(ways):
        bits = policy.plru_touch(bits, w, ways)
        assert ways == 1 or policy.plru_victim(bits, ways) != w
    # touching every way in order leaves the first one as the victim
    assert policy.plru_victim(bits, ways) == 0


def test_one_xorshift64_for_every_structure():
    x = np.uint64(88172645463325252)
    ref = 88172645463325252
    for _ in range(5):
        x = policy.xorshift64(np.uint64(x))  # a uint64 in, as kernels pass it
        ref = naive_xorshift64(ref)
        assert int(x) == ref
    # each structure keeps its own stream: a CPU's state advances only on its own draws
    ctl = np.zeros((2, 2), np.int64)
    ctl[:, policy.CTL_RNG] = policy.seed_streams(3, 2)
    before = ctl.copy()
    policy.next_random(ctl, 1)
    assert ctl[0, policy.CTL_RNG] == before[0, policy.CTL_RNG]
    assert ctl[1, policy.CTL_RNG] != before[1, policy.CTL_RNG]


def test_policy_names_codes_and_limits():
    assert policy.parse("tree_plru") is Replacement.TREE_PLRU
    assert policy.parse(2) is Replacement.RANDOM
    assert tlb.Replacement is Replacement and cache.Replacement is Replacement
    with pytest.raises(ConfigError, match="unknown replacement policy"):
        policy.parse("mru")
    with pytest.raises(ConfigError, match="power-of-two"):
        TLBLevelConfig(12, 3, "tree_plru")
    with pytest.raises(ConfigError, match="power-of-two"):
        cache.CacheLevelConfig(5 * 64 * 2, 5, "tree_plru")
    # the policy field exists only where a level needs it
    assert TLBConfig.single(4, 4).to_state().ent.shape[1] == 3
    assert TLBConfig.single(4, 4, "tree_plru").to_state().ent.shape[1] == 4
