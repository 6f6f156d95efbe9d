"""ASI: the posted page-allocator RFC's conversions, init_on_alloc, sensitivity independent
of mobility, the phased stream, and the buddy kernels the posted design uses.

Sources: "[PATCH RFC 10/11] mm/page_alloc: Add support for nonsensitive allocations" and
"[PATCH RFC 11/11] mm/page_alloc: Add support for ASI-unmapping pages", Brendan Jackman,
linux-mm, 2025-03-13 (<20250313-asi-page-alloc-v1-0-04972e046cea@google.com>);
mm/page_alloc.c ``post_alloc_hook`` / ``want_init_on_alloc``."""
import numpy as np
import pytest

from kmm.errors import ConfigError
from kmm.mech import asi
from kmm.mech.asi import AsiConfig, Conversion, Policy, Zeroing
from test_asi import _small, _small61, _wl

U, M = 0, 1

# 16 order-0 sensitive pages, then every page but the first of each pageblock freed: each
# pageblock (4 pages) holds one sensitive page, no pageblock is wholly free
PARTIAL = [("a", i, 0, 1, M) for i in range(16)] + [("f", i) for i in range(16) if i % 4]


def test_posted_nonsensitive_allocation_claims_only_whole_free_pageblocks():
    # patch 10/11, find_suitable_fallback: a MIGRATE_UNMOVABLE_NONSENSITIVE request returns
    # -1 for free areas below pageblock_order, so only whole free pageblocks change type
    ops = PARTIAL + [("a", 16, 0, 0, U)]
    posted = asi.simulate(_small(Policy.TRACKED), _wl(ops))
    assert posted.counts.alloc_failures == 1 and posted.counts.to_nonsensitive == 0
    # v6.1's fallbacks steal from a partly used sensitive pageblock instead
    v61 = asi.simulate(_small61(Policy.TRACKED), _wl(ops))
    assert v61.counts.alloc_failures == 0 and v61.counts.to_nonsensitive == 1
    # with a whole free pageblock (pageblock 3 freed entirely), it is claimed whole
    ops = PARTIAL + [("f", 12), ("a", 16, 0, 0, U)]
    r = asi.simulate(_small(Policy.TRACKED), _wl(ops))
    assert r.counts.alloc_failures == 0 and r.counts.to_nonsensitive == 1
    assert r.counts.violations == 0


def test_posted_sensitive_allocation_takes_a_whole_nonsensitive_block_with_one_shootdown():
    # patch 11/11, __rmqueue_asi_unmap: no fallback from sensitive to nonsensitive types;
    # when the sensitive lists are empty, take a free nonsensitive block of at least a
    # pageblock (__rmqueue_smallest), asi_unmap it and flush with IRQs on, retype it
    # (change_pageblock_range), free the remainder
    ops = ([("a", 0, 0, 0, U)]                          # pageblocks 0-1 turn nonsensitive
           + [("a", i, 0, 1, M) for i in range(1, 9)]   # sensitive fills pageblocks 2-3
           + [("f", 0)]                                 # pageblocks 0-1 wholly free, mapped
           + [("a", 9, 0, 1, M)])                       # sensitive, own lists empty
    r = asi.simulate(_small(Policy.TRACKED), _wl(ops))
    c = r.counts
    assert c.alloc_failures == 0 and c.asi_unmap_allocs == 1 and c.flushes == 1
    assert c.to_sensitive == 1 and c.violations == 0
    # the pageblock's 4 mapped free pages were unmapped in that one shootdown
    assert c.pages_unmapped == 4
    # a nonsensitive pageblock with a live allocation is never taken (not a whole free
    # block): the sensitive allocation fails where v6.1's fallbacks would steal from it
    ops2 = ops[:9] + [("a", 9, 0, 1, M)]
    r2 = asi.simulate(_small(Policy.TRACKED), _wl(ops2))
    assert r2.counts.asi_unmap_allocs == 1  # pageblock 1 is wholly free: taken
    ops3 = ops[:9] + [("a", 10, 2, 0, U), ("a", 9, 0, 1, M)]  # pageblock 1 in use too
    r3 = asi.simulate(_small(Policy.TRACKED), _wl(ops3))
    assert r3.counts.asi_unmap_allocs == 0 and r3.counts.alloc_failures == 1
    r61 = asi.simulate(_small61(Policy.TRACKED), _wl(ops3))
    assert r61.counts.alloc_failures == 0 and r61.counts.to_sensitive == 1


def test_posted_nonsensitive_requests_are_unmovable():
    # patch 9/11: only MIGRATE_UNMOVABLE is split by sensitivity; a nonsensitive request
    # of any mobility lists as MIGRATE_UNMOVABLE_NONSENSITIVE (code 3)
    t = asi.posted_migrate_table()
    assert t.fallbacks[3] == (0, 2, 1) and t.fallbacks[4] == t.fallbacks[5] == ()
    assert all(f < 3 for fb in t.fallbacks[:3] for f in fb)
    bst, _, _, ast = _state([("a", 0, 0, 0, M)])
    assert int(bst.alloc_mt[0]) == 3


def _state(ops, **kw):
    cfg = _small(Policy.TRACKED, **kw)
    wl = _wl(ops)
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    return bst, tst, ist, ast


@pytest.mark.parametrize("policy", [Policy.RFC, Policy.TRACKED])
def test_init_on_alloc_already_zeroes_what_asi_zeroes_at_allocation(policy):
    # post_alloc_hook -> kernel_init_pages when want_init_on_alloc(): every allocated page
    # is zeroed before the allocation returns, so a formerly sensitive page handed to a
    # nonsensitive user needs no second zeroing; Debian's kernel has
    # CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y (linux-headers-6.1.0-57-amd64 6.1.192-3)
    ops = [("a", 0, 0, 1, M), ("f", 0), ("a", 1, 0, 0, U)]
    kw = {"zeroing": Zeroing.LAZY} if policy == Policy.TRACKED else {}
    off = asi.simulate(_small(policy, **kw), _wl(ops))
    on = asi.simulate(_small(policy, init_on_alloc=True, **kw), _wl(ops))
    assert on.counts.init_zeroed == 2 and on.counts.init_zero_ns == 800
    assert on.counts.pages_zeroed + on.counts.zero_by_init == off.counts.pages_zeroed
    if off.counts.pages_zeroed:
        assert on.counts.pages_zeroed == 0 and on.counts.zero_by_init == 1
    # the allocation's latency carries init_on_alloc's zeroing once, not ASI's on top
    assert on.lat_ns.tolist()[1] == off.lat_ns.tolist()[1] + 400 - 400 * off.counts.pages_zeroed
    # init_on_alloc's zeroing is not ASI work
    assert on.metrics()["total_asi_ns"] == off.metrics()["total_asi_ns"] - 400 * \
        off.counts.pages_zeroed


def test_eager_zeroing_at_conversion_is_not_saved_by_init_on_alloc():
    ops = [("a", 0, 2, 1, M), ("f", 0), ("a", 1, 0, 0, U)]  # pages 1-3 zeroed at conversion
    on = asi.simulate(_small61(Policy.TRACKED, init_on_alloc=True), _wl(ops))
    assert on.counts.zeroed_on_conversion == 3 and on.counts.pages_zeroed == 3
    assert on.counts.zero_by_init == 1


def test_mixed_stream_sensitivity_is_independent_of_mobility():
    # the 2025 RFC splits MIGRATE_UNMOVABLE by sensitivity because kernel allocations come
    # in both: unmovable allocations are sensitive with the given share, movable and
    # reclaimable ones always
    wl = asi.make_workload("mixed", 20000, 1, 1 << 18, unmovable_sensitive=0.3)
    a = wl.kind == 0
    mob, sens = wl.mob[a], wl.sens[a]
    assert abs(sens[mob == 0].mean() - 0.3) < 0.02
    assert sens[mob != 0].all() and (mob == 2).any()
    base = asi.make_workload("mixed", 20000, 1, 1 << 18)
    assert not base.sens[(base.kind == 0) & (base.mob == 0)].any()
    with pytest.raises(ConfigError):
        asi.make_workload("mixed", 10, 1, 100, unmovable_sensitive=1.5)


def test_phased_stream_swings_the_nonsensitive_share():
    wl = asi.make_workload("mixed", 20000, 2, 1 << 18, unmovable_sensitive=0.3,
                           phase_allocs=2000, phase_skew=5.0)
    a = wl.kind == 0
    ph = (wl.ref[a] // 2000) % 2
    ns = 1 - wl.sens[a]
    assert ns[ph == 0].mean() > 2 * ns[ph == 1].mean()
    flat = asi.make_workload("mixed", 20000, 2, 1 << 18, unmovable_sensitive=0.3)
    fa = flat.kind == 0
    fph = (flat.ref[fa] // 2000) % 2
    assert abs((1 - flat.sens[fa])[fph == 0].mean() - (1 - flat.sens[fa])[fph == 1].mean()) < 0.03


def test_nofragment_tries_the_asi_unmap_before_a_partial_steal():
    # alloc_flags_nofragment: ALLOC_NOFRAGMENT on the fast path (ZONE_NORMAL with ZONE_DMA32
    # populated); rmqueue_buddy runs __rmqueue_asi_unmap after the first __rmqueue fails, and
    # get_page_from_freelist retries without ALLOC_NOFRAGMENT only after that
    ops = ([("a", 0, 0, 0, U)]                          # pageblocks 0-1 nonsensitive
           + [("a", i, 0, 1, M) for i in range(1, 9)]   # movable fills pageblocks 2-3
           + [("f", 0), ("f", 2), ("f", 3)]             # pageblocks 0-1 free; 2 partly free
           + [("a", 9, 0, 1, U)])                       # sensitive unmovable
    plain = asi.simulate(_small(Policy.TRACKED), _wl(ops))
    nofrag = asi.simulate(_small(Policy.TRACKED, nofragment=True), _wl(ops))
    # without it, the unmovable request steals a free page of the partly free movable
    # pageblock (no shootdown); with it, a whole free nonsensitive block is unmapped first
    assert plain.counts.asi_unmap_allocs == 0 and plain.counts.flushes == 0
    assert nofrag.counts.asi_unmap_allocs == 1 and nofrag.counts.flushes == 1
    assert nofrag.counts.violations == plain.counts.violations == 0
