"""permvmalloc's allocator paths through per-CPU page lists and with ALLOC_NOFRAGMENT.

Kernel behaviour stated by each test (mm/page_alloc.c, v6.1):

- ``free_unref_page_commit``: a freed order-0 page is added to the freeing CPU's list for
  its pageblock's migratetype and ``pcp->count`` grows; nothing merges until ``pcp->count >=
  high``, when ``free_pcppages_bulk(zone, nr_pcp_free(pcp, high, batch, free_high), ...)``
  returns a batch to the free lists (``__free_one_page``, which merges).
- ``__rmqueue_pcplist``: an empty list is refilled by one ``rmqueue_bulk`` call of
  ``batch`` blocks (``max(batch >> order, 2)`` above order 0); the following allocations
  take the list's pages without touching the free lists.
- ``__rmqueue_fallback``: under ``ALLOC_NOFRAGMENT`` (``alloc_flags_nofragment``)
  ``min_order = pageblock_order``, so the first pass steals no fallback block below a
  pageblock; ``rmqueue_bulk`` stops at the first block ``__rmqueue`` cannot find;
  ``get_page_from_freelist`` retries without the flag when the pass found nothing.
- mm/vmalloc.c ``vm_area_alloc_pages`` takes order-0 pages from ``__alloc_pages_bulk``
  (the CPU's list, no ``ALLOC_NOFRAGMENT``) at most 100 per call.
"""
import numpy as np
import pytest

from kmm.buddy import Buddy, BuddyConfig, MigrateType, PcpConfig, PcpEvent
from kmm.buddy import convert_pageblock
from kmm.errors import ConfigError
from kmm.geometry import GiB
from kmm.mech import permvmalloc as pv
from kmm.mech.permvmalloc.kernels import BULK_MAX, get_block, put_block
from kmm.mech.permvmalloc.model import _aged_copy, _aged_pool, zone_highsize

UNMOV, MOV = int(MigrateType.UNMOVABLE), int(MigrateType.MOVABLE)
I = np.int64
ON, OFF = I(1), I(0)


def test_without_lists_or_nofragment_the_kernels_are_the_free_list_ones():
    """pcp and nofrag 0: the same pool states as the free-list kernels (which
    tests/test_permvmalloc.py checks against their twins)."""
    rng = np.random.default_rng(7)
    n = 3000
    kind = rng.integers(0, 2, n)
    kind[:1000] = 0
    order, mt = rng.integers(0, 4, n), rng.integers(0, 3, n)
    pick = rng.integers(0, 1 << 40, n)
    (a, pst), (b, _) = _pools(4096), _pools(4096)
    lp, lo = np.empty(2000, np.int32), np.empty(2000, np.int8)
    lq, lr = np.empty(2000, np.int32), np.empty(2000, np.int8)
    na = pv.bg_churn_pcp(a.state, pst, lp, lo, I(0), kind, order, mt, pick,
                         np.zeros(n, np.int64), OFF, OFF)
    nb = pv.bg_churn(b.state, lq, lr, I(0), kind, order, mt, pick)
    assert na == nb and np.array_equal(lp[:na], lq[:nb])
    out_a, out_b = np.zeros(300, np.int64), np.zeros(300, np.int64)
    got = pv.alloc_order0_pcp(a.state, pst, I(1), I(300), I(UNMOV), out_a, OFF, OFF)
    assert got == pv.alloc_order0(b.state, I(300), I(UNMOV), out_b) and got > 100
    assert np.array_equal(out_a, out_b)
    half = out_a[:got:2]
    assert (pv.free_order0_pcp(a.state, pst, I(1), half, OFF)
            == pv.free_order0(b.state, half) == half.size)
    for x, y in zip(a.state, b.state):
        assert np.array_equal(x, y)
    assert pst.counts.sum() == 0


def _pools(pages=2048, **pcp):
    cfg = BuddyConfig(pool_pages=pages)
    return Buddy(cfg), PcpConfig(**{"cpus": 2, "batch": 63, "high": 252, **pcp}).build(cfg)


def test_a_freed_page_waits_unmerged_on_its_cpu_list_until_the_cpu_holds_high():
    b, pst = _pools(batch=4, high=8)
    pages = [int(get_block(b.state, pst, I(0), I(0), I(MOV), OFF, OFF)) for _ in range(16)]
    assert pages == list(range(16))     # off the free lists, low pfns first
    merges = b.counters.merges
    free0 = b.free_page_count()
    for k, p in enumerate(pages[:7]):
        assert put_block(b.state, pst, I(1), I(p), I(0), ON)
        assert pst.count[1] == k + 1 and pst.count[0] == 0     # the freeing CPU's list
        assert b.state.free_order[p] == -1                      # not on a free list
    # pages 0 and 1 are buddies, both free, neither merged: they wait on CPU 1's list
    assert b.counters.merges == merges and b.free_page_count() == free0
    assert pst.counts[PcpEvent.DRAINS] == 0
    # the eighth free brings the count to high: nr_pcp_free(high 8, batch 4) = 4 pages go
    # back to the free lists (from the list's tail: the first ones freed) and merge
    assert put_block(b.state, pst, I(1), I(pages[7]), I(0), ON)
    assert pst.counts[PcpEvent.DRAINS] == 1 and pst.counts[PcpEvent.DRAINED_PAGES] == 4
    assert pst.count[1] == 4
    assert b.free_page_count() == free0 + 4
    assert b.counters.merges > merges
    assert (b.state.free_order[pages[:4]] >= 0).any()


def test_a_double_free_through_the_lists_is_refused():
    b, pst = _pools()
    p = get_block(b.state, pst, I(0), I(0), I(MOV), ON, OFF)
    assert put_block(b.state, pst, I(0), p, I(0), ON)
    assert not put_block(b.state, pst, I(0), p, I(0), ON)


def test_a_refill_takes_a_batch_in_one_go():
    b, pst = _pools()
    first = get_block(b.state, pst, I(0), I(0), I(UNMOV), ON, ON)
    assert first >= 0
    assert pst.counts[PcpEvent.REFILLS] == 1 and pst.counts[PcpEvent.REFILL_PAGES] == 63
    assert pst.count[0] == 62
    # the buddy handed out the whole batch at once
    assert b.counters.alloc_pages == 63
    for _ in range(62):
        assert get_block(b.state, pst, I(0), I(0), I(UNMOV), ON, ON) >= 0
    assert pst.counts[PcpEvent.REFILLS] == 1 and b.counters.alloc_pages == 63
    assert get_block(b.state, pst, I(0), I(0), I(UNMOV), ON, ON) >= 0
    assert pst.counts[PcpEvent.REFILLS] == 2 and b.counters.alloc_pages == 126
    # another CPU has its own, empty, lists
    assert get_block(b.state, pst, I(1), I(0), I(UNMOV), ON, ON) >= 0
    assert pst.counts[PcpEvent.REFILLS] == 3 and pst.count[1] == 62
    # higher orders: max(batch >> order, 2) blocks, the THP list included
    get_block(b.state, pst, I(1), I(2), I(UNMOV), ON, ON)
    assert pst.counts[PcpEvent.REFILL_PAGES] == 3 * 63 + (63 >> 2) * 4
    b2, pst2 = _pools(pages=4096)
    get_block(b2.state, pst2, I(0), I(9), I(UNMOV), ON, ON)
    assert pst2.counts[PcpEvent.REFILL_PAGES] == 2 * 512 and pst2.count[0] == 512


def _mixed_pool(nofrag_pages=10, movable_hole=100):
    """Four pageblocks, every page allocated; pageblock 0 made unmovable with
    ``nofrag_pages`` free pages; pageblock 1 movable with ``movable_hole`` free pages (blocks
    below a pageblock). No free pageblock anywhere."""
    b, pst = _pools()
    st = b.state
    blocks = [int(get_block(st, pst, I(0), I(9), I(MOV), OFF, OFF)) for _ in range(4)]
    assert blocks == [0, 512, 1024, 1536]
    convert_pageblock(st, 0, UNMOV)
    for blk in blocks[:2]:
        pv.split_block(st, I(blk), I(9))
    for p in range(nofrag_pages):
        assert put_block(st, pst, I(0), I(p), I(0), OFF)
    for p in range(600, 600 + movable_hole):
        assert put_block(st, pst, I(0), I(p), I(0), OFF)
    return b, pst


def test_nofragment_refuses_a_sub_pageblock_steal_on_the_first_pass():
    b, pst = _mixed_pool()
    fb = b.counters.fallbacks
    # the refill's first pass takes the 10 unmovable pages and stops: no fallback below a
    # pageblock, pageblock 1 stays movable
    assert get_block(b.state, pst, I(0), I(0), I(UNMOV), ON, ON) >= 0
    assert pst.counts[PcpEvent.REFILL_PAGES] == 10 and pst.count[0] == 9
    assert b.counters.fallbacks == fb and b.state.pb_mt[1] == MOV
    for _ in range(9):
        assert get_block(b.state, pst, I(0), I(0), I(UNMOV), ON, ON) >= 0
    # the list is empty and the first pass finds nothing: get_page_from_freelist's retry
    # without ALLOC_NOFRAGMENT steals from the movable pageblock
    assert get_block(b.state, pst, I(0), I(0), I(UNMOV), ON, ON) >= 0
    assert b.counters.fallbacks > fb

    # without the flag the first refill already steals to fill its batch
    b, pst = _mixed_pool()
    assert get_block(b.state, pst, I(0), I(0), I(UNMOV), ON, OFF) >= 0
    assert pst.counts[PcpEvent.REFILL_PAGES] == 63 and b.counters.fallbacks > fb

    # one allocation off the free lists: the first pass refuses, the retry steals
    b, pst = _mixed_pool(nofrag_pages=0)
    assert get_block(b.state, pst, I(0), I(0), I(UNMOV), OFF, ON) >= 600
    assert b.counters.fallbacks > fb


def test_vmalloc_takes_bulk_requests_without_nofragment():
    """A 10-page vmalloc is one bulk request: its refill (no ALLOC_NOFRAGMENT) steals to fill
    the batch; a 1-page vmalloc goes to the single-page allocator, whose first pass does not."""
    b, pst = _mixed_pool()
    out = np.zeros(10, np.int64)
    assert pv.alloc_order0_pcp(b.state, pst, I(0), I(10), I(UNMOV), out, ON, ON) == 10
    assert pst.counts[PcpEvent.REFILL_PAGES] == 63
    b, pst = _mixed_pool()
    fb = b.counters.fallbacks
    assert pv.alloc_order0_pcp(b.state, pst, I(0), I(1), I(UNMOV), out, ON, ON) == 1
    assert pst.counts[PcpEvent.REFILL_PAGES] == 10 and b.counters.fallbacks == fb
    assert BULK_MAX == 100


def test_pcp_high_and_batch_follow_the_kernel():
    m = pv.MachineConfig(ram_bytes=8 * GiB, cpus=64, pcp=True)
    c = m.pcp_config()
    assert (c.cpus, c.batch, c.high) == (64, 63, 252)      # four batches bind at 64 CPUs
    # 8 GiB: min_free_kbytes = isqrt(8 GiB in KiB * 16) = 11585 -> 2896 pages; low =
    # 2896 + max(724, 2097) = 4993; 4993 / 8 CPUs = 624 > 252
    assert zone_highsize(8 * GiB >> 12, 8, 63) == 624
    assert pv.MachineConfig(cpus=64).pcp_config().cpus == 1    # lists off: unused
    with pytest.raises(ConfigError, match="^pcp:"):
        pv.MachineConfig(pcp=1)
    with pytest.raises(ConfigError, match="^cpus:"):
        pv.MachineConfig(cpus=8192, pcp=True)


SMALL = pv.MachineConfig(ram_bytes=GiB, cpus=4, bg_used_fraction=0.2, bg_ops_per_event=8,
                         seed=5, pcp=True, nofragment=True)


def test_aged_pool_copies_are_independent_and_keyed_by_cpus_with_pcp():
    a, b = _aged_copy(SMALL), _aged_copy(SMALL)
    memo = _aged_pool(pv.MachineConfig(ram_bytes=GiB, cpus=4, bg_used_fraction=0.2,
                                       bg_ops_per_event=0, seed=5, pcp=True, nofragment=True))
    for x, y, z in zip(a[0] + a[1], b[0] + b[1], memo[0] + memo[1]):
        assert not np.shares_memory(x, y) and not np.shares_memory(x, z)
        assert np.array_equal(x, y)
    assert a[1].count.sum() > 0            # the ageing left pages on the CPUs' lists
    s1 = pv.PermVmalloc(SMALL, pv.PolicyConfig(pv.Policy.LEGACY))
    before = [x.copy() for x in memo[0] + memo[1]]
    s1._free_pages(s1._pages(300))
    s1._bg_ops(500)
    for x, y in zip(memo[0] + memo[1], before):
        assert np.array_equal(x, y)         # the memoised pool did not move
    s2 = pv.PermVmalloc(SMALL, pv.PolicyConfig(pv.Policy.LEGACY))
    for x, y in zip(s2.buddy.state + s2._pst, a[0] + a[1]):
        assert np.array_equal(x, y)
    # with the lists the ageing draws CPUs among the machine's: another CPU count is
    # another pool; without them machines that differ in cpus share one
    other = _aged_copy(pv.MachineConfig(ram_bytes=GiB, cpus=8, bg_used_fraction=0.2,
                                        seed=5, pcp=True, nofragment=True))
    assert other[1].count.shape[0] == 8 and not np.array_equal(other[0].nxt, a[0].nxt)


def test_pcp_machine_keeps_the_invariants_over_random_operations():
    for pol in (pv.PolicyConfig(pv.Policy.LEGACY), pv.PolicyConfig(pv.Policy.PERM_ALLOC),
                pv.PolicyConfig(pv.Policy.UPSTREAM)):
        sim = pv.PermVmalloc(SMALL, pol, check=True, snapshot_every=1000)
        pv.random_ops(sim, 40, 1)
        assert sim.counts.wx_violations == 0 and sim.counts.free_violations == 0
        assert sim._pst.counts[PcpEvent.FREES] > 0
