"""ASI through per-CPU page lists: what a page keeps while it sits on a list, which list it
goes to, and what it is kept from until a drain.

Sources: mm/page_alloc.c (v6.1) ``rmqueue_pcplist`` / ``__rmqueue_pcplist`` (the head of
the list of the requested migratetype and order; an empty list is refilled by
``rmqueue_bulk``), ``free_unref_page_commit`` (the page goes to the head of the list of its
pageblock's type, not to the free lists: it is not ``PageBuddy`` and not merged until
``free_pcppages_bulk`` drains it), ``pcp_allowed_order`` (orders up to
``PAGE_ALLOC_COSTLY_ORDER`` and pageblock_order), ``zone_batchsize``,
``__alloc_pages_direct_reclaim`` (``drain_all_pages`` and one retry when the allocation
still fails); "[PATCH RFC 09/11] mm/page_alloc: Split MIGRATE_UNMOVABLE by sensitivity",
Brendan Jackman, linux-mm, 2025-03-13 (<20250313-asi-page-alloc-v1-9-04972e046cea@google.com>):
``MIGRATE_UNMOVABLE_NONSENSITIVE`` lies below ``MIGRATE_PCPTYPES``, so it has per-CPU lists
of its own, apart from the sensitive types'; "[PATCH RFC 11/11] mm/page_alloc: Add support
for ASI-unmapping pages" (same thread): ``__rmqueue_asi_unmap`` takes a whole free block off
the free lists (``__rmqueue_smallest`` under the zone lock), which a page parked on a per-CPU
list is not part of."""
import numpy as np
import pytest

from kmm import buddy
from kmm.mech import asi
from kmm.mech.asi import AsiConfig, Conversion, Policy, Zeroing
from test_asi import _small, _wl

U, M = 0, 1


def _run(cfg, ops):
    wl = _wl(ops)
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    return bst, ast


def _pfn(ast, ident):
    return int(ast.live[ident, 0])


def test_zone_batchsize_as_v61():
    # zone_batchsize: min(pages >> 10, 1 MiB / PAGE_SIZE) / 4, rounddown_pow_of_two(b + b/2) - 1,
    # at least 1 (zone_set_pageset_high_and_batch)
    assert buddy.zone_batchsize(1 << 18, 4096) == 63      # 1 GiB of 4K pages
    assert buddy.zone_batchsize(1 << 16, 16384) == 15     # 1 GiB of 16K pages
    assert buddy.zone_batchsize(1 << 14, 65536) == 3      # 1 GiB of 64K pages
    assert buddy.zone_batchsize(16, 4096) == 1            # a tiny pool
    cfg = AsiConfig(pool_bytes=1 << 30, pcp=True)
    assert cfg.pcp_config().batch == 63 and cfg.pcp_config().high == 378


@pytest.mark.parametrize("policy", [Policy.NONE, Policy.TRACKED])
def test_a_freed_page_waits_on_its_cpu_list_unmerged_and_is_handed_out_first(policy):
    # free_unref_page_commit: to the head of the list, not PageBuddy; __rmqueue_pcplist: the
    # head. The page is neither merged nor moved, and (tracked) keeps its mapping: the next
    # nonsensitive order-0 allocation on that CPU gets it with nothing to map
    ops = [("a", 0, 0, 0, U), ("f", 0), ("a", 1, 0, 0, U)]
    bst, ast = _run(_small(policy, pcp=True), ops[:2])
    p0 = int(np.flatnonzero(bst.alloc_order >= 0)[0])  # the page, parked on the list
    assert bst.free_order[p0] == -1 and bst.alloc_mt[p0] == -1
    if policy == Policy.TRACKED:
        assert bst.flags[p0] & asi.F_MAPPED
    mapped0 = ast.counts[asi.AsiEvent.PAGES_MAPPED]  # the conversion mapped its pageblocks
    bst, ast = _run(_small(policy, pcp=True), ops)
    assert _pfn(ast, 1) == p0
    if policy == Policy.TRACKED:
        assert ast.counts[asi.AsiEvent.PAGES_MAPPED] == mapped0  # nothing mapped again
        assert ast.counts[asi.AsiEvent.VIOLATIONS] == 0
    # without the lists the page returns to the free lists and merges
    bst, ast = _run(_small(policy), ops[:2])
    assert (bst.alloc_order >= 0).sum() == 0


def test_pcp_lists_are_split_by_sensitivity():
    # patch 09/11: MIGRATE_UNMOVABLE_NONSENSITIVE is a pcp type: a mapped nonsensitive page on
    # CPU 0's list is never handed to a sensitive (unmovable) allocation on CPU 0, which
    # refills its own list from sensitive free memory and needs no shootdown
    ops = [("a", 0, 0, 0, U), ("f", 0), ("a", 1, 0, 1, U)]
    bst, ast = _run(_small(Policy.TRACKED, pcp=True), ops)
    assert _pfn(ast, 1) >= 0
    assert bst.pb_mt[_pfn(ast, 1) >> 2] < 3  # a sensitive pageblock
    c = ast.counts
    assert c[asi.AsiEvent.FLUSHES] == 0 and c[asi.AsiEvent.VIOLATIONS] == 0
    # the nonsensitive page is still parked, mapped, on its own list
    p0 = int(ast.pcp.head[ast.pcp.head >= 0][0]) if (ast.pcp.head >= 0).any() else -1
    assert p0 >= 0 and bst.pb_mt[p0 >> 2] == 3 and bst.flags[p0] & asi.F_MAPPED


def test_a_parked_page_keeps_its_pageblock_from_asi_unmap():
    # patch 11/11: __rmqueue_asi_unmap takes only a whole free nonsensitive block off the free
    # lists; a block of it parked on a per-CPU list breaks it up, so the sensitive allocation
    # finds none and fails its fast path (the slow path would reclaim, then drain_all_pages);
    # without the lists the freed block merges at once and is taken with one shootdown of
    # its 4 mapped pages
    ops = ([("a", 0, 2, 0, U), ("a", 1, 0, 0, U)]      # pageblocks 0-1 nonsensitive, in use
           + [("a", i, 0, 1, M) for i in range(2, 10)]  # sensitive fills pageblocks 2-3
           + [("f", 0)]                                 # pageblock 0's block parked on CPU 0
           + [("a", 10, 0, 1, M)])                      # sensitive, own lists empty
    r = asi.simulate(_small(Policy.TRACKED, pcp=True), _wl(ops))
    c = r.counts
    assert c.alloc_failures == 1 and c.asi_unmap_allocs == 0 and c.flushes == 0
    assert c.violations == 0
    r0 = asi.simulate(_small(Policy.TRACKED), _wl(ops))
    c = r0.counts
    assert c.alloc_failures == 0 and c.asi_unmap_allocs == 1 and c.flushes == 1
    assert c.pages_unmapped == 4


_PCP_CASES = [(Policy.NONE, Conversion.POSTED), (Policy.RFC, Conversion.POSTED),
              (Policy.TRACKED, Conversion.POSTED), (Policy.TRACKED, Conversion.FALLBACK),
              (Policy.TRACKED_TARGET, Conversion.POSTED), (Policy.SYNC_FLUSH, Conversion.POSTED)]


@pytest.mark.parametrize("policy,conversion", _PCP_CASES)
def test_invariant_and_conservation_with_pcp_lists_over_a_random_workload(policy, conversion):
    # every page is free, parked on a list, queued or in one live allocation; no page holding
    # sensitive data is mapped or in a TLB after any operation
    cfg = AsiConfig(policy=policy, conversion=conversion, pool_bytes=2 << 20, max_order=6,
                    pageblock_order=4, cpus=4, touches_per_op=2, worker_interval_ns=20_000,
                    worker_batch_pages=16, target_free_mapped_pages=32, tlb_entries=32,
                    check_invariant=True, init_on_alloc=True, nofragment=True, pcp=True)
    wl = asi.make_workload("mixed", 3000, 11, 512, occupancy=0.5, pressure=0.3, cpus=4,
                           unmovable_sensitive=0.3)
    wl = wl._replace(order=np.minimum(wl.order, 6).astype(np.int8))
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    assert ast.counts[asi.AsiEvent.VIOLATIONS] == 0
    nt = cfg.buddy_config().table.n_types
    free = int((bst.nr_free << np.repeat(np.arange(7), nt)).sum())
    used = int(sum(1 << int(o) for o in bst.alloc_order if o >= 0))
    assert free + used == 512
    assert ast.pcp.counts[int(buddy.PcpEvent.ALLOCS)] > 0
