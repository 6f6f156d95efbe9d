"""Buddy allocator kernels against hand-worked cases, the plain-Python twin and invariants."""
import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st
from naive.buddy import NaiveBuddy
from props import INVARIANT

from kmm import buddy, geometry
from kmm.buddy import Buddy, BuddyConfig, MigrateTable, MigrateType
from kmm.errors import ConfigError

U, M, R = int(MigrateType.UNMOVABLE), int(MigrateType.MOVABLE), int(MigrateType.RECLAIMABLE)


def test_boot_split_and_merge_hand_worked():
    # 8 pages, MAX_PAGE_ORDER 3, pageblocks of 4 pages, all MOVABLE at boot
    b = Buddy(BuddyConfig(pool_pages=8, max_order=3, pageblock_order=2))
    assert b.free_blocks() == [(0, 3, M)]
    assert b.alloc(0, M) == 0
    assert b.free_blocks() == [(1, 0, M), (2, 1, M), (4, 2, M)]
    assert b.counters.splits == 3
    b.free(0, 0)
    assert b.free_blocks() == [(0, 3, M)]
    assert b.counters.merges == 3 and b.free_page_count() == 8


def test_fallback_takes_over_pageblocks_hand_worked():
    b = Buddy(BuddyConfig(pool_pages=8, max_order=3, pageblock_order=2))
    # unmovable request in an all-movable pool: the order-3 block is stolen whole
    # (order >= pageblock_order), both pageblocks become UNMOVABLE (change_pageblock_range)
    assert b.alloc(0, U) == 0
    assert b.conversions() == [(0, M), (1, M)]
    assert b.pageblock_types().tolist() == [U, U]
    assert b.free_blocks() == [(1, 0, U), (2, 1, U), (4, 2, U)]
    # a movable request now falls back to UNMOVABLE: the order-2 block takes pageblock 1
    assert b.alloc(0, M) == 4
    assert b.conversions() == [(1, U)]
    assert b.pageblock_types().tolist() == [U, M]
    assert b.free_blocks() == [(1, 0, U), (5, 0, M), (2, 1, U), (6, 1, M)]
    c = b.counters
    assert (c.fallbacks, c.pageblock_conversions, c.splits) == (2, 3, 5)


def test_move_freepages_block_without_claim_hand_worked():
    # 32 pages, MAX_PAGE_ORDER 5, pageblocks of 16 pages, every pageblock UNMOVABLE at boot
    b = Buddy(BuddyConfig(pool_pages=32, max_order=5, pageblock_order=4, initial_type=U))
    assert b.alloc(0, U) == 0
    assert b.alloc(0, M) == 16          # order-4 fallback: pageblock 1 becomes MOVABLE
    assert b.pageblock_types().tolist() == [U, M]
    assert b.alloc(3, U) == 8
    assert [b.alloc(o, M) for o in (3, 2, 1, 0)] == [24, 20, 18, 17]
    before = b.counters.snapshot()
    # movable lists are empty; the largest fallback is the order-2 UNMOVABLE block at 4;
    # can_steal (order 2 >= pageblock_order / 2) moves all 7 free pages of pageblock 0,
    # but 7 free + 0 movable < 8 = half a pageblock, so the pageblock stays UNMOVABLE
    assert b.alloc(0, M) == 1
    d = b.counters - before
    assert (d.fallbacks, d.free_pages_moved, d.pageblock_conversions, d.block_claims) == (1, 7, 0, 0)
    assert b.pageblock_types().tolist() == [U, M]
    assert b.free_blocks() == [(2, 1, M), (4, 2, M)]
    assert b.alloc(0, M) == 2 and b.free_blocks() == [(3, 0, M), (4, 2, M)]


def test_movable_single_page_steal_hand_worked():
    # pageblock_order 4: a movable request may not steal a block of order < 2
    b = Buddy(BuddyConfig(pool_pages=16, max_order=4, pageblock_order=4, initial_type=U))
    blocks = [b.alloc(0, U) for _ in range(16)]
    assert blocks == list(range(16))
    for p in (3, 9, 10, 11):
        b.free(p, 0)
    # free: order 0 at 3, order 1 at 10 (merged), order 0 at 9
    assert sorted(b.free_blocks()) == [(3, 0, U), (9, 0, U), (10, 1, U)]
    before = b.counters.snapshot()
    # largest fallback is order 1 (cannot steal): find_smallest picks an order-0 block
    # (list head: 9, freed last among order-0 blocks) and moves it alone
    assert b.alloc(0, M) == 9
    d = b.counters - before
    assert (d.fallbacks, d.steal_single, d.free_pages_moved, d.splits) == (1, 1, 0, 0)
    assert b.pageblock_types().tolist() == [U]


def test_alloc_failure_double_free_and_flags():
    b = Buddy(BuddyConfig(pool_pages=4, max_order=2, pageblock_order=1))
    assert b.alloc(2, M) == 0
    assert b.alloc(0, M) == -1 and b.counters.failures == 1
    with pytest.raises(ConfigError, match="no allocated order-1"):
        b.free(0, 1)
    b.free(0, 2)
    with pytest.raises(ConfigError):
        b.free(0, 2)
    st_ = b.state
    assert buddy.flags_update(st_, 0, 1, 0b101, 0) == 0
    assert buddy.flags_update(st_, 1, 1, 0b010, 0b001) == 0b101
    assert st_.flags.tolist() == [0b101, 0b110, 0b010, 0]


def test_config_validation_and_geometry():
    with pytest.raises(ConfigError, match="multiple of the pageblock"):
        BuddyConfig(pool_pages=1000)
    with pytest.raises(ConfigError, match="pageblock_order"):
        BuddyConfig(pool_pages=4096, max_order=8, pageblock_order=9)
    with pytest.raises(ConfigError, match="itself"):
        MigrateTable(("a", "b"), (0, 1), ((0,), (0,)), (True, True))
    for granule, pb in (("4K", 9), ("16K", 11), ("64K", 13)):
        g = geometry.arm64(granule, 48)
        cfg = BuddyConfig.from_geometry(g, 2 * g.pageblock_bytes)
        assert cfg.pageblock_order == pb == g.pageblock_order
        assert cfg.max_order == g.max_page_order and cfg.pageblocks == 2
        b = Buddy(cfg)
        assert b.free_page_count() == cfg.pool_pages


# ---- random sequences against the twin, and invariants ---------------------------------

def _ops(seed, n, max_order, ntypes, free_share=0.45, order_weights=None):
    rng = np.random.default_rng(seed)
    kind = (rng.random(n) < free_share).astype(np.int8)
    w = np.asarray(order_weights or [2.0 ** -o for o in range(max_order + 1)], dtype=float)
    orders = rng.choice(max_order + 1, size=n, p=w / w.sum())
    a = np.where(kind == 0, orders, rng.integers(0, 1 << 30, n)).astype(np.int64)
    b = rng.integers(0, ntypes, n).astype(np.int64)
    return kind, a, b


def _run_both(cfg, kind, a, b):
    k = Buddy(cfg)
    live_pfn = np.empty(kind.shape[0], np.int64)
    live_order = np.empty(kind.shape[0], np.int64)
    out = np.empty(kind.shape[0], np.int64)
    nlive = buddy.replay(k.state, kind, a, b, live_pfn, live_order, out)
    tw = NaiveBuddy(cfg)
    want, live = tw.replay(kind, a, b)
    return k, tw, out, want, list(zip(live_pfn[:nlive].tolist(), live_order[:nlive].tolist())), live


def _check_invariants(k: Buddy, live):
    cfg = k.config
    owner = np.full(cfg.pool_pages, -1)
    for i, (pfn, order) in enumerate(live):
        assert pfn % (1 << order) == 0
        assert (owner[pfn:pfn + (1 << order)] == -1).all(), "page handed out twice"
        owner[pfn:pfn + (1 << order)] = i
    free = k.free_blocks()
    free_heads = {}
    for pfn, order, _mt in free:
        assert pfn % (1 << order) == 0, "misaligned free block"
        assert (owner[pfn:pfn + (1 << order)] == -1).all(), "free block overlaps"
        owner[pfn:pfn + (1 << order)] = -2
        free_heads[pfn] = order
    assert (owner != -1).all(), "pages lost"
    assert k.free_page_count() + sum(1 << o for _, o in live) == cfg.pool_pages
    pb_types = k.pageblock_types()
    for pfn, order in free_heads.items():
        bud = pfn ^ (1 << order)
        if order < cfg.max_order and free_heads.get(bud) == order:
            # buddies stay apart only across a pageblock boundary into an unmergeable type
            # (an isolated pageblock: ``__free_one_page`` stops at ``is_migrate_isolate``)
            types = {int(pb_types[pfn >> cfg.pageblock_order]),
                     int(pb_types[bud >> cfg.pageblock_order])}
            assert order >= cfg.pageblock_order and \
                not all(cfg.table.mergeable[t] for t in types), "unmerged free buddies"


CONFIGS = [
    BuddyConfig(pool_pages=64, max_order=4, pageblock_order=3),
    BuddyConfig(pool_pages=256, max_order=6, pageblock_order=4, nofragment=True),
    BuddyConfig(pool_pages=96, max_order=5, pageblock_order=2),  # not a multiple of 2^max
]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(CONFIGS) - 1), st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_random_sequences_match_twin(ci, seed, n):
    cfg = CONFIGS[ci]
    kind, a, b = _ops(seed, n, cfg.max_order, cfg.table.n_types)
    k, tw, out, want, live, tlive = _run_both(cfg, kind, a, b)
    assert out.tolist() == want
    assert live == tlive
    assert k.free_blocks() == tw.free_blocks()
    assert k.pageblock_types().tolist() == tw.pb
    assert k.counters.as_dict() == tw.c
    _check_invariants(k, live)


def test_long_sequence_exercises_every_path():
    # a long workload under memory pressure (more allocations than frees, mostly order 0)
    # must reach every fallback path the twin models
    cfg = BuddyConfig(pool_pages=1024, max_order=7, pageblock_order=5)
    kind, a, b = _ops(7, 20000, cfg.max_order, 3, free_share=0.45,
                      order_weights=[8, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.05])
    k, tw, out, want, live, _ = _run_both(cfg, kind, a, b)
    assert out.tolist() == want and k.counters.as_dict() == tw.c
    c = k.counters
    assert c.fallbacks and c.steal_single and c.block_claims and c.failures and c.merges
    _check_invariants(k, live)


def test_mechanism_defined_types_match_twin():
    # five types: the kernel's three plus two of a mechanism, one of them unmergeable
    table = MigrateTable(names=("u", "m", "r", "m_x", "iso"), mobility=(U, M, R, M, U),
                         fallbacks=((2, 1), (3, 2, 0), (0, 1), (1,), ()),
                         mergeable=(True, True, True, True, False))
    cfg = BuddyConfig(pool_pages=512, max_order=6, pageblock_order=3, table=table,
                      initial_type=3)
    for seed in range(5):
        kind, a, b = _ops(seed, 1500, cfg.max_order, 5)
        k, tw, out, want, live, _ = _run_both(cfg, kind, a, b)
        assert out.tolist() == want
        assert k.free_blocks() == tw.free_blocks() and k.counters.as_dict() == tw.c
        assert k.pageblock_types().tolist() == tw.pb


def test_merge_stops_at_unmergeable_pageblock():
    table = MigrateTable(names=("m", "iso"), mobility=(M, U), fallbacks=((), ()),
                         mergeable=(True, False))
    b = Buddy(BuddyConfig(pool_pages=8, max_order=3, pageblock_order=2, table=table,
                          initial_type=0))
    b.state.pb_mt[1] = 1  # pageblock 1 isolated after boot, its free block still listed
    p = b.alloc(2, 0)
    assert p == 0
    # pageblock 1's half was put back on type 0's list by expand; free pfn 0 again:
    b.free(0, 2)
    assert b.counters.merge_blocked == 1
    assert sorted(b.free_blocks()) == [(0, 2, 0), (4, 2, 0)]


def test_convert_pageblock_matches_twin():
    cfg = BuddyConfig(pool_pages=256, max_order=5, pageblock_order=4)
    for seed in range(4):
        kind, a, b = _ops(seed, 300, cfg.max_order, 3)
        k, tw, *_ = _run_both(cfg, kind, a, b)
        rng = np.random.default_rng(seed)
        for _ in range(10):
            pb, mt = int(rng.integers(0, cfg.pageblocks)), int(rng.integers(0, 3))
            assert buddy.convert_pageblock(k.state, pb, mt) == tw.convert_pageblock(pb, mt)
            assert k.conversions() == tw.conversions
        assert k.free_blocks() == tw.free_blocks() and k.counters.as_dict() == tw.c
        assert k.pageblock_types().tolist() == tw.pb



# ---- per-CPU page lists -------------------------------------------------------------------

def test_pcp_refill_and_drain_hand_worked():
    from kmm.buddy import PcpConfig, pcp_alloc, pcp_free, pcp_drain
    cfg = BuddyConfig(pool_pages=16, max_order=4, pageblock_order=4)
    st_ = cfg.build()
    pst = PcpConfig(cpus=2, batch=4, high=6).build(cfg)
    # an empty list is refilled with 4 order-0 pages in free-list order, head returned
    assert pcp_alloc(st_, pst, 0, 0, M) == 0
    assert pst.count.tolist() == [3, 0] and pst.counts[1] == 1
    assert [pcp_alloc(st_, pst, 0, 0, M) for _ in range(3)] == [1, 2, 3]
    # CPU 1 has its own list: it refills from the buddy
    assert [pcp_alloc(st_, pst, 1, 0, M) for _ in range(3)] == [4, 5, 6]
    # frees go to the list head; at high (6) nr_pcp_free drains min(batch, high - batch) = 2
    for p in (0, 1, 2, 3):
        assert pcp_free(st_, pst, 0, p, 0)
    assert pst.count[0] == 4 and pst.counts[4] == 0
    # CPU 0 list head->tail: 3 2 1 0; two more frees (of CPU 1's pages) reach high
    assert pcp_free(st_, pst, 0, 5, 0) and pcp_free(st_, pst, 0, 6, 0)
    assert pst.counts[4] == 1 and pst.counts[5] == 2 and pst.count[0] == 4
    # the two oldest (tail) pages 0 and 1 merged back into the buddy as an order-1 block
    assert st_.free_order[0] == 1
    pcp_drain(st_, pst, 0)
    pcp_drain(st_, pst, 1)
    assert pst.count.tolist() == [0, 0]
    assert not pcp_free(st_, pst, 0, 0, 0)   # already free


PCP_CONFIGS = [
    (BuddyConfig(pool_pages=256, max_order=6, pageblock_order=4), (2, 4, 12)),
    (BuddyConfig(pool_pages=512, max_order=6, pageblock_order=5, nofragment=True), (3, 7, 40)),
    (BuddyConfig(pool_pages=128, max_order=5, pageblock_order=3), (2, 1, 0)),
]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, len(PCP_CONFIGS) - 1), st.integers(0, 2**32 - 1), st.integers(1, 500))
def test_pcp_random_sequences_match_twin(ci, seed, n):
    from naive.buddy import NaivePcp
    from kmm.buddy import PcpConfig, pcp_replay, pcp_drain
    cfg, (cpus, batch, high) = PCP_CONFIGS[ci]
    pcfg = PcpConfig(cpus=cpus, batch=batch, high=high)
    kind, a, b = _ops(seed, n, cfg.max_order, cfg.table.n_types)
    cpu = np.random.default_rng(seed + 1).integers(0, cpus, n)
    ops = np.stack([kind.astype(np.int64), a, b, cpu], axis=1)
    k = Buddy(cfg)
    pst = pcfg.build(cfg)
    live = np.zeros((n, 2), np.int64)
    out = np.zeros(n, np.int64)
    nlive = pcp_replay(k.state, pst, ops, live, out)
    tb = NaiveBuddy(cfg)
    tp = NaivePcp(tb, pcfg)
    want, tlive = tp.replay([tuple(int(x) for x in row) for row in ops])
    assert out.tolist() == want
    assert [tuple(x) for x in live[:nlive].tolist()] == tlive
    assert k.free_blocks() == tb.free_blocks() and k.counters.as_dict() == tb.c
    assert pst.counts.tolist() == list(tp.c.values()) and pst.count.tolist() == tp.count
    for c in range(cpus):
        pcp_drain(k.state, pst, c)
        tp.drain(c)
    assert k.free_blocks() == tb.free_blocks() and k.counters.as_dict() == tb.c
    _check_invariants(k, tlive)


# ---- invariants: pages conserved, never handed out twice (README "What kmm guarantees") -------
MECH_TABLE = MigrateTable(names=("u", "m", "r", "m_x", "iso"), mobility=(U, M, R, M, U),
                          fallbacks=((2, 1), (3, 2, 0), (0, 1), (1,), ()),
                          mergeable=(True, True, True, True, False))


def _check_handouts(pool_pages, kind, a, out, owner=None, live=None):
    """Replay the live set the kernel kept (swap-remove frees) and assert that each allocation
    returned an aligned block no live block holds; returns the owner map and live list."""
    owner = np.full(pool_pages, -1, np.int64) if owner is None else owner
    live = [] if live is None else live
    for i in range(kind.shape[0]):
        pfn = int(out[i])
        if kind[i] == 0:
            if pfn < 0:
                continue
            n = 1 << int(a[i])
            assert pfn % n == 0 and pfn + n <= pool_pages, f"op {i}: misaligned block {pfn}"
            assert (owner[pfn:pfn + n] == -1).all(), f"op {i}: pfn {pfn} handed out twice"
            owner[pfn:pfn + n] = i
            live.append((pfn, int(a[i])))
        elif live:
            j = int(a[i]) % len(live)
            p, o = live[j]
            assert pfn == p, f"op {i}: freed {pfn}, expected live block {p}"
            owner[p:p + (1 << o)] = -1
            live[j] = live[-1]
            live.pop()
        else:
            assert pfn == -1
    return owner, live


@st.composite
def buddy_runs(draw):
    pb = draw(st.integers(1, 4))
    max_order = draw(st.integers(pb, pb + 3))
    blocks = draw(st.integers(1, 16))
    table = draw(st.sampled_from([None, MECH_TABLE]))
    kw = dict(table=table, initial_type=3) if table else {}
    cfg = BuddyConfig(pool_pages=blocks << pb, max_order=max_order, pageblock_order=pb,
                      nofragment=draw(st.booleans()), **kw)
    n = draw(st.integers(1, 400))
    weights = [draw(st.floats(0.0, 1.0)) for _ in range(max_order + 1)]
    weights[0] += 0.01
    kind, a, b = _ops(draw(st.integers(0, 2**32 - 1)), n, max_order, cfg.table.n_types,
                      free_share=draw(st.floats(0.1, 0.7)), order_weights=weights)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    converts = [(draw(st.integers(0, cfg.pageblocks - 1)),
                 draw(st.integers(0, cfg.table.n_types - 1))) for _ in cuts]
    pcp = draw(st.sampled_from([None, (1, 1, 0), (2, 3, 9), (3, 7, 40)]))
    return cfg, kind, a, b, cuts, converts, pcp


@INVARIANT
@given(buddy_runs())
def test_invariant_pages_conserved_and_never_handed_out_twice(run):
    """Random allocation/free streams over random pools (orders, pageblock sizes, kernel or
    mechanism-defined migratetypes with an unmergeable one, with and without per-CPU lists),
    with pageblock conversions between chunks: no allocation returns a page that is live, and
    at every checkpoint free blocks plus live blocks (plus pages on per-CPU lists) account for
    every page exactly once, with no unmerged free buddies."""
    from kmm.buddy import PcpConfig, pcp_drain, pcp_replay
    cfg, kind, a, b, cuts, converts, pcp = run
    k = Buddy(cfg)
    n = kind.shape[0]
    event(f"pcp {pcp is not None}, {len(cuts)} conversions")
    if pcp is None:
        live_pfn, live_order = np.empty(n, np.int64), np.empty(n, np.int64)
        out = np.empty(n, np.int64)
        nlive, start, owner, live = 0, 0, None, None
        for cut, (pb, mt) in [*zip(cuts, converts), (n, (0, None))]:
            nlive = buddy._replay_from(k.state, kind[start:cut], a[start:cut], b[start:cut],
                                       live_pfn, live_order, out[start:cut], nlive)
            owner, live = _check_handouts(cfg.pool_pages, kind[start:cut], a[start:cut],
                                          out[start:cut], owner, live)
            assert sorted(live) == sorted(zip(live_pfn[:nlive].tolist(),
                                              live_order[:nlive].tolist()))
            _check_invariants(k, live)
            if mt is not None:
                buddy.convert_pageblock(k.state, pb, mt)
                _check_invariants(k, live)
            start = cut
    else:
        cpus, batch, high = pcp
        pst = PcpConfig(cpus=cpus, batch=batch, high=high).build(cfg)
        cpu = np.random.default_rng(int(a[0])).integers(0, cpus, n)
        ops = np.stack([kind.astype(np.int64), a, b, cpu], axis=1)
        live_arr, out = np.zeros((n, 2), np.int64), np.zeros(n, np.int64)
        nlive = pcp_replay(k.state, pst, ops, live_arr, out)
        _owner, live = _check_handouts(cfg.pool_pages, kind, a, out)
        assert sorted(live) == sorted(map(tuple, live_arr[:nlive].tolist()))
        # pages held on the lists are neither free in the buddy nor live
        assert k.free_page_count() + sum(1 << o for _, o in live) + int(pst.count.sum()) \
            == cfg.pool_pages
        for c in range(cpus):
            pcp_drain(k.state, pst, c)
        _check_invariants(k, live)


def test_leaving_an_unmergeable_type_merges_a_free_pageblock_with_its_buddy():
    # isolation keeps a free pageblock apart from its free buddy; un-isolating puts it back
    # through __putback_isolated_page, which merges (the kernel's unset_migratetype_isolate)
    table = MigrateTable(names=("m", "iso"), mobility=(M, U), fallbacks=((), ()),
                         mergeable=(True, False))
    cfg = BuddyConfig(pool_pages=4, max_order=2, pageblock_order=1, table=table,
                      initial_type=0)
    k, tw = Buddy(cfg), NaiveBuddy(cfg)
    assert k.alloc(0, 0) == tw.alloc_pages(0, 0) == 0
    assert buddy.convert_pageblock(k.state, 1, 1) == tw.convert_pageblock(1, 1) == 2
    k.free(0, 0)
    tw.free_pages(0, 0)
    assert k.free_blocks() == tw.free_blocks() == [(0, 1, 0), (2, 1, 1)]
    assert buddy.convert_pageblock(k.state, 1, 0) == tw.convert_pageblock(1, 0) == 2
    assert k.free_blocks() == tw.free_blocks() == [(0, 2, 0)]
    assert k.counters.as_dict() == tw.c
    assert k.counters.frees == 1   # the put-back is not a free


def test_alloc_block_min_steals_only_blocks_of_the_floor_hand_worked():
    # the ASI page-allocator RFC (patch 10/11, find_suitable_fallback): a type whose fallback
    # may only take whole free pageblocks; 16 pages, pageblocks of 4, all MOVABLE at boot
    cfg = BuddyConfig(pool_pages=16, max_order=3, pageblock_order=2)
    st = cfg.build()
    # fill pageblocks 0-3 with one movable page each (pages 0, 4, 8, 12)
    live = [buddy.alloc_block(st, 0, M) for _ in range(16)]
    for p in live:
        if p % 4:
            buddy.free_block(st, p, 0)
    # no free block of a pageblock or more: an unmovable request with floor pageblock_order
    # finds nothing, where the ordinary path steals a partial pageblock
    assert buddy.alloc_block_min(st, 0, U, 2) == -1
    assert st.ev[0] == 0 and st.pb_mt.tolist() == [M] * 4
    assert buddy.alloc_block(st, 0, U) >= 0 and st.ev[0] == 1
    # free pageblock 3 entirely: the floored request takes the whole pageblock over
    st = cfg.build()
    live = [buddy.alloc_block(st, 0, M) for _ in range(16)]
    for p in live:
        if p % 4 or p == 12:
            buddy.free_block(st, p, 0)
    assert buddy.alloc_block_min(st, 0, U, 2) == 12
    assert st.pb_mt.tolist() == [M, M, M, U] and st.ev[0] == 1
    # the twin agrees
    nb = NaiveBuddy(cfg)
    for p in [nb.alloc_pages(0, M) for _ in range(16)]:
        if p % 4 or p == 12:
            nb.free_pages(p, 0)
    assert nb.alloc_min(0, U, 2) == 12 and nb.pb == [M, M, M, U]


def test_split_allocated_frees_the_remainder_hand_worked():
    # __rmqueue_asi_unmap: allocate a whole block, keep 1 << order pages, free the rest
    # one block per order (each as its pageblock's type)
    cfg = BuddyConfig(pool_pages=8, max_order=3, pageblock_order=2)
    st = cfg.build()
    assert buddy.alloc_block(st, 3, M) == 0
    assert not buddy.split_allocated(st, 0, 2, 0)    # no order-2 block there
    assert buddy.split_allocated(st, 0, 3, 0)
    assert int(st.alloc_order[0]) == 0
    free = sorted((p, int(st.free_order[p])) for p in range(8) if st.free_order[p] >= 0)
    assert free == [(1, 0), (2, 1), (4, 2)]
    assert int(st.counts[buddy.BuddyEvent.ALLOC_PAGES]) == 1
    assert buddy.free_block(st, 0, 0)                 # merges back to one order-3 block
    assert [(p, int(st.free_order[p])) for p in range(8) if st.free_order[p] >= 0] == [(0, 3)]
    nb = NaiveBuddy(cfg)
    assert nb.alloc_pages(3, M) == 0 and nb.split_allocated(0, 3, 0)
    assert sorted((p, o) for p, (o, _mt) in nb.free.items()) == [(1, 0), (2, 1), (4, 2)]
