"""Invalidation: stale hits until the covering flush, hand-worked costs, and the twin."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from naive.invalidate import NaiveInvalidator

from kmm import tlb
from kmm.errors import ConfigError
from kmm.invalidate import (InvalidationConfig, InvalidationCosts, Invalidator, Method,
                            _va)

PAGE = 4096
KVA = 0xFFFF_8000_0000_0000  # a kernel (global) address


def _tlb(cpus, entries=64, ways=None, walk=False):
    cfg = tlb.TLBConfig(l2=tlb.TLBLevelConfig(entries, ways or entries),
                        walk_cache=tlb.TLBLevelConfig(16, 16) if walk else None, cpus=cpus)
    return tlb.TLB(cfg, walk_probe_shifts={tlb.Structure.WALK: (21,)} if walk else None)


def _hits(t, va, cpu, asid=1, global_=False):
    """Whether one access of ``cpu`` to ``va`` hits (it fills on a miss)."""
    t.run(np.array([va], dtype=np.uint64), record=True, cpu=cpu, asid=asid, global_=global_)
    return int(t.last_outcome[0]) == 1


@pytest.mark.parametrize("method", list(Method))
def test_stale_hit_until_the_covering_shootdown(method):
    t = _tlb(2)
    va = 0x7000_0000
    assert not _hits(t, va, 0) and not _hits(t, va, 1)
    inv = Invalidator(InvalidationConfig(method=method, cpus=2), t.state)
    inv.set_targets([0, 1])
    # the pte changes on CPU 0; a local flush leaves CPU 1's entry usable: a stale hit
    inv.flush(0, va, va + PAGE, asid=1, local=True)
    assert _hits(t, va, 1)
    assert not _hits(t, va, 0)          # refills CPU 0
    # a flush of a different page leaves it too
    inv.flush(0, va + PAGE, va + 2 * PAGE, asid=1)
    assert _hits(t, va, 1)
    # deferred: still stale until the batch completes
    inv.flush(0, va, va + PAGE, asid=1, defer=True)
    assert _hits(t, va, 1) and inv.pending == 1
    inv.sync(0)
    assert not _hits(t, va, 1) and inv.pending == 0
    # synchronous shootdown: gone at once on every targeted CPU
    _hits(t, va, 0)
    assert _hits(t, va, 0) and _hits(t, va, 1)
    inv.flush(0, va, va + PAGE, asid=1)
    assert not _hits(t, va, 1) and not _hits(t, va, 0)


def test_x86_ipis_reach_only_mm_cpumask_but_broadcasts_reach_every_cpu():
    for method, stale_on_3 in ((Method.X86_IPI, True), (Method.ARM64_TLBI, False),
                               (Method.X86_INVLPGB, False)):
        t = _tlb(4)
        va = 0x4000_0000
        for c in range(4):
            _hits(t, va, c)
        inv = Invalidator(InvalidationConfig(method=method, cpus=4), t.state)
        inv.set_targets([0, 1, 2])   # CPU 3 never ran this mm (but holds an entry here)
        inv.flush(0, va, va + PAGE, asid=1)
        assert _hits(t, va, 3) == stale_on_3
        assert not _hits(t, va, 2)


def test_kernel_range_drops_global_entries_everywhere():
    t = _tlb(3)
    for c in range(3):
        _hits(t, KVA, c, global_=True)
        _hits(t, 0x1000, c, asid=5)
    inv = Invalidator(InvalidationConfig(method=Method.X86_IPI, cpus=3), t.state)
    inv.flush(1, KVA, KVA + PAGE, kernel=True)     # flush_tlb_kernel_range: all CPUs
    assert inv.counters.ipis == 2 and inv.counters.entries_dropped == 3
    assert not any(_hits(t, KVA, c, global_=True) for c in range(3))
    assert all(_hits(t, 0x1000, c, asid=5) for c in range(3))


def test_walk_cache_dropped_unless_last_level_only():
    t = _tlb(1, walk=True)
    counts = np.zeros(len(tlb.TLBEvent), np.int64)
    va = 0x20_0000
    inv = Invalidator(InvalidationConfig(method=Method.ARM64_TLBI, cpus=1), t.state)
    tlb.tlb_fill(t.state, int(tlb.Structure.WALK), 0, va, 21, 1, 0, counts)
    inv.flush(0, va, va + PAGE, asid=1, last_level_only=True)
    assert tlb.occupancy(t.state, 0, int(tlb.Structure.WALK)) == 1
    inv.flush(0, va, va + PAGE, asid=1)
    assert tlb.occupancy(t.state, 0, int(tlb.Structure.WALK)) == 0


def test_x86_ipi_costs_hand_worked():
    inv = Invalidator(InvalidationConfig(method=Method.X86_IPI, cpus=4))
    inv.set_targets([0, 1, 2])
    # 2 pages: local 2 x 100 + IPI base 3000 + 1 extra target x 1500 + remote 2 x 100
    assert inv.flush(0, 0, 2 * PAGE) == 4900
    c = inv.counters
    assert (c.ipis, c.invlpgs, c.target_ns, c.full_flushes) == (2, 6, 2 * (1000 + 200), 0)
    # 33 pages stay per-page (tlb_single_page_flush_ceiling), 34 become a full flush (37 ns)
    assert inv.flush(0, 0, 33 * PAGE) == 3300 + 3000 + 1500 + 3300
    assert inv.flush(0, 0, 34 * PAGE) == 37 + 3000 + 1500 + 37
    assert inv.counters.full_flushes == 1
    # no other CPU in mm_cpumask: a local flush, no IPI
    inv.set_targets([0])
    assert inv.flush(0, 0, PAGE) == 100 and inv.counters.ipis == 6
    # batched: 3 requests gather CPUs; one full flush by IPI at sync
    inv.set_targets([0, 3])
    for i in range(3):
        assert inv.flush(0, i * PAGE, (i + 1) * PAGE, defer=True) == 0
    assert inv.sync(0) == 37 + 3000 + 37
    assert inv.counters.ipis == 7 and inv.sync(0) == 0


def test_arm64_and_invlpgb_costs_hand_worked():
    inv = Invalidator(InvalidationConfig(method=Method.ARM64_TLBI, cpus=4))
    # 3 TLBIs x 10 + DSB ISH 200 + 4 CPUs x 5
    assert inv.flush(0, 0, 3 * PAGE) == 250
    # MAX_TLBI_OPS = PTRS_PER_PTE = 512 with 4K pages: user ranges flush the ASID at 512,
    # kernel ranges flush everything above 512
    assert inv.flush(0, 0, 512 * PAGE) == 10 + 220
    assert inv.flush(0, KVA, KVA + 512 * PAGE, kernel=True) == 5120 + 220
    assert inv.flush(0, KVA, KVA + 513 * PAGE, kernel=True) == 10 + 220
    c = inv.counters
    assert (c.tlbis, c.dsbs, c.full_flushes, c.ipis) == (3 + 1 + 512 + 1, 4, 2, 0)
    # batched: the TLBIs issue at once, one DSB for the batch
    for i in range(5):
        assert inv.flush(0, i * PAGE, (i + 1) * PAGE, defer=True) == 10
    assert inv.sync(0) == 220 and inv.counters.dsbs == 5
    # local: non-broadcast TLBI + DSB NSH
    assert inv.flush(2, 0, 2 * PAGE, local=True) == 2 * 5 + 20
    # 16K pages: PTRS_PER_PTE = 2048
    assert InvalidationConfig(page_shift=14).max_tlbi_ops == 2048

    g = Invalidator(InvalidationConfig(method=Method.X86_INVLPGB, cpus=4))
    assert g.flush(0, 0, 20 * PAGE) == 3 * 100 + 500       # ceil(20 / 8) INVLPGBs + TLBSYNC
    assert g.flush(0, 0, 40 * PAGE) == 100 + 500           # above the ceiling: one full
    assert g.counters.ipis == 0 and g.counters.invlpgbs == 4


def test_costs_have_sources_and_validation():
    k = InvalidationCosts()
    assert "tlbi_ns" in k.assumed() and "invlpg_ns" not in k.assumed()
    with pytest.raises(ConfigError, match="no source"):
        InvalidationCosts(sources={"invlpg_ns": "x"})
    with pytest.raises(ConfigError):
        InvalidationCosts(tlbi_ns=-1.0)
    with pytest.raises(ConfigError, match="CPUs"):
        Invalidator(InvalidationConfig(cpus=2), _tlb(3).state)
    with pytest.raises(ConfigError, match="deferred"):
        Invalidator(InvalidationConfig()).flush(0, 0, PAGE, local=True, defer=True)


def test_arm64_range_tlbi_hand_worked():
    from kmm.invalidate import tlbi_range_ops
    # 7 pages: one TLBI for the odd page, one RVAE1IS of 6; 1000 = 2 x (15 x 32 + 20): two
    assert [tlbi_range_ops(n, 1) for n in (1, 2, 3, 7, 64, 65, 512, 1000)] == [1, 1, 2, 2, 1, 2, 1, 2]
    inv = Invalidator(InvalidationConfig(method=Method.ARM64_TLBI, cpus=2, tlbi_range=True))
    # 512 pages no longer flush the ASID: one range operation
    assert inv.flush(0, 0, 512 * PAGE) == 10 + 210
    assert inv.counters.full_flushes == 0 and inv.counters.tlbis == 1
    # PMD stride over 4 MiB: 1024 base pages in one range op
    assert inv.flush(0, 0, 4 << 20, stride_shift=21) == 10 + 210
    big = (32 << 16) + 1
    assert inv.flush(0, 0, big * PAGE) == 10 + 210 and inv.counters.full_flushes == 1


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(list(Method)), st.integers(0, 2**32 - 1), st.integers(1, 4),
       st.booleans())
def test_random_sequences_match_twin(method, seed, capacity, tlbi_range):
    rng = np.random.default_rng(seed)
    cpus = 4
    cfg = InvalidationConfig(method=method, cpus=cpus, pending_capacity=capacity,
                             single_page_flush_ceiling=6, tlbi_range=tlbi_range)
    t = _tlb(cpus, entries=256)
    inv = Invalidator(cfg, t.state)
    tw = NaiveInvalidator(cfg)
    for _ in range(60):
        op = rng.integers(0, 5)
        if op <= 1:  # accesses fill TLBs: user pages of two ASIDs, or kernel pages
            c = int(rng.integers(0, cpus))
            page = int(rng.integers(0, 16))
            if rng.random() < 0.3:
                va = KVA + page * PAGE
                _hits(t, va, c, global_=True)
                tw.fill(c, _va(va), -1, 0)
            else:
                asid = int(rng.integers(1, 3))
                _hits(t, page * PAGE, c, asid=asid)
                tw.fill(c, page * PAGE, asid, 0)
        elif op == 2:
            mask = [c for c in range(cpus) if rng.random() < 0.6]
            inv.set_targets(mask)
            tw.mm = set(mask)
        elif op == 3:
            ini = int(rng.integers(0, cpus))
            kernel = bool(rng.random() < 0.3)
            base = KVA if kernel else 0
            a = int(rng.integers(0, 16))
            n = int(rng.integers(0, 12)) if rng.random() < 0.8 else int(rng.integers(12, 3000))
            local = bool(rng.random() < 0.2)
            defer = (not local) and bool(rng.random() < 0.4)
            asid = int(rng.integers(1, 3))
            start, end = base + a * PAGE, base + (a + n) * PAGE
            got = inv.flush(ini, start, end, asid=asid, kernel=kernel, local=local, defer=defer)
            want = tw.flush(ini, _va(start), _va(end), 12, asid, 0, kernel, local, defer)
            assert got == want
        else:
            ini = int(rng.integers(0, cpus))
            assert inv.sync(ini) == tw.sync(ini)
        assert inv.counters.as_dict() == tw.c
    for c in range(cpus):
        assert tlb.occupancy(t.state, c, int(tlb.Structure.L2)) == len(tw.tlb[c])
