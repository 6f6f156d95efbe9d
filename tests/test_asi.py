"""ASI page allocation: hand-worked sequences per policy, physmap designs, the invariant."""
import numpy as np
import pytest
from hypothesis import event, given, strategies as st
from props import INVARIANT

from kmm import buddy
from kmm import engine as eng
from kmm.errors import ConfigError
from kmm.mech import asi
from kmm.mech.asi import Arch, AsiConfig, Conversion, FlushRank, Physmap, Policy, Zeroing
from naive.asi import NaiveAsi

U, M = 0, 1


def _wl(ops, cpus=1):
    """ops: ("a", id, order, sens, mob[, reclaimable]) or ("f", id)."""
    meta = {}
    kind, ref, order, sens, mob, rec = [], [], [], [], [], []
    for op in ops:
        if op[0] == "a":
            i, o, s, m = op[1:5]
            meta[i] = (o, s, m, op[5] if len(op) > 5 else 0)
            kind.append(0)
        else:
            i = op[1]
            kind.append(1)
        o, s, m, r = meta[i]
        ref.append(i)
        order.append(o)
        sens.append(s)
        mob.append(m)
        rec.append(r)
    n = len(kind)
    return asi.Workload(kind=np.array(kind, np.int8), ref=np.array(ref, np.int64),
                        order=np.array(order, np.int8), sens=np.array(sens, np.int8),
                        mob=np.array(mob, np.int8), cpu=np.zeros(n, np.int32),
                        rnd=np.arange(1, n + 1, dtype=np.int64),
                        reclaim=np.array(rec, np.int8))


def _check_cpu_win(r, tw):
    """The per-CPU interruption log equals the twin's (IPI handler ns, worker ns, flushes
    of everything, per window and CPU), and the TLB entries it says the shootdowns removed
    add up to the invalidation counter's (the twin has no TLB)."""
    from kmm.mech.asi.model import _W_DROPPED, _W_FULL, _W_HANDLER, _W_LOCAL, _W_WORKER
    got = r.cpu_win[:, :, [_W_HANDLER, _W_WORKER, _W_FULL, _W_LOCAL]]
    assert (got == tw.cpu_win(r.cpu_win.shape[:2])).all()
    assert r.cpu_win[:, :, _W_DROPPED].sum() == r.inval.entries_dropped
    assert r.cpu_win[:, :, _W_HANDLER].sum() == r.inval.target_ns


def _small(policy, physmap=Physmap.ON_DEMAND, **kw):
    # 16 pages, MAX_PAGE_ORDER 3, pageblocks of 4 pages; the worker runs after every op
    base = dict(policy=policy, physmap=physmap, pool_bytes=16 * 4096, max_order=3,
                pageblock_order=2, cpus=2, touches_per_op=0, worker_interval_ns=1000,
                op_interval_ns=1000, check_invariant=True, sample_every=1)
    base.update(kw)
    return AsiConfig(**base)


def _small61(policy, physmap=Physmap.ON_DEMAND, **kw):
    """:func:`_small` with v6.1's fallbacks across sensitivity and eager zeroing (the
    variant the hand-worked sequences below were written for)."""
    kw.setdefault("zeroing", Zeroing.EAGER)
    return _small(policy, physmap, conversion=Conversion.FALLBACK, **kw)


def _phased_stream(seed, nops, phase=200, p_free=0.45, max_order=3, cpus=3):
    """A random stream whose allocations are mostly sensitive and mostly nonsensitive in
    alternating phases of ``phase`` operations (what makes pageblocks change sensitivity
    back and forth); a third of allocations above order 0, sensitive movable ones half
    reclaimable. Frees pick a random live allocation."""
    rng = np.random.default_rng(seed)
    u = rng.random((nops, 6))
    pick = rng.integers(0, 1 << 30, nops)
    ords = rng.integers(0, max_order + 1, nops)
    mobs = rng.integers(0, 3, nops)
    cpu = rng.integers(0, cpus, nops).astype(np.int32)
    kind, ref, order, sens, mob, rec = [], [], [], [], [], []
    live, meta = [], []
    for i in range(nops):
        if live and u[i, 0] < p_free:
            j = int(pick[i]) % len(live)
            ident = live[j]
            live[j] = live[-1]
            live.pop()
            kind.append(1)
        else:
            ident = len(meta)
            sn = int(u[i, 1] < (0.85 if (i // phase) % 2 == 0 else 0.15))
            m = int(mobs[i]) if not sn or u[i, 3] < 0.2 else M
            meta.append((int(ords[i]) if u[i, 2] < 0.3 else 0, sn, m,
                         int(sn and m == M and u[i, 4] < 0.5)))
            live.append(ident)
            kind.append(0)
        o, sn, m, r = meta[ident]
        ref.append(ident)
        order.append(o)
        sens.append(sn)
        mob.append(m)
        rec.append(r)
    return asi.Workload(kind=np.array(kind, np.int8), ref=np.array(ref, np.int64),
                        order=np.array(order, np.int8), sens=np.array(sens, np.int8),
                        mob=np.array(mob, np.int8), cpu=cpu,
                        rnd=rng.integers(1, 1 << 62, nops, dtype=np.int64),
                        reclaim=np.array(rec, np.int8))


REUSE = [("a", 0, 0, 0, U), ("f", 0), ("a", 1, 0, 0, U)]


def test_rfc_unmaps_on_free_and_remaps_pointlessly():
    r = asi.simulate(_small(Policy.RFC), _wl(REUSE))
    c = r.counts
    # map page 0 (a PTE table and its upper table allocated while allocating), queue it,
    # the worker unmaps it with one shootdown, the next nonsensitive allocation maps it again
    assert (c.pages_mapped, c.pages_unmapped, c.flushes, c.pointless_remaps) == (2, 1, 1, 1)
    assert (c.pt_allocs, c.worker_runs, c.violations) == (2, 1, 0)
    assert r.inval.shootdowns == 1 and r.inval.ipis == 1  # x86: the other CPU is interrupted


def test_tracked_keeps_free_nonsensitive_pages_mapped():
    r = asi.simulate(_small61(Policy.TRACKED), _wl(REUSE))
    c = r.counts
    # the nonsensitive allocation falls back into the boot (sensitive, movable) pageblocks:
    # pageblocks 0 and 1 turn nonsensitive, their 7 free pages are mapped with page 0
    assert (c.to_nonsensitive, c.pages_mapped, c.pt_allocs) == (2, 8, 3)
    assert (c.pages_unmapped, c.flushes, c.pointless_remaps, c.violations) == (0, 0, 0, 0)
    assert r.lat_ns.tolist()[1] == 150  # the reused page is mapped already


def test_sync_flush_shoots_down_every_free():
    ops = REUSE + [("f", 1), ("a", 2, 0, 0, U), ("f", 2)]
    r = asi.simulate(_small(Policy.SYNC_FLUSH), _wl(ops))
    assert (r.counts.flushes, r.counts.pages_unmapped, r.counts.pointless_remaps) == (3, 3, 2)
    assert r.bursts[:, 2].tolist() == [int(asi.BurstSource.FREE_FLUSH)] * 3


def test_formerly_sensitive_page_is_zeroed_only_without_same_sensitivity_reuse():
    ops = [("a", 0, 0, 0, M), ("a", 1, 0, 1, M), ("f", 1), ("a", 2, 0, 0, M)]
    # RFC: the sensitive page freed last is the first the nonsensitive request gets
    rfc = asi.simulate(_small(Policy.RFC), _wl(ops))
    assert rfc.counts.pages_zeroed == 1
    # tracked: the sensitive page went back to a sensitive pageblock; the nonsensitive
    # request is served from the nonsensitive pageblock's mapped free pages
    tracked = asi.simulate(_small61(Policy.TRACKED), _wl(ops))
    assert tracked.counts.pages_zeroed == 0 and tracked.lat_ns.tolist()[2] == 150
    none = asi.simulate(_small(Policy.NONE), _wl(ops))
    assert none.counts.pages_zeroed == 0 and none.counts.pages_mapped == 0
    # but converting a pageblock that holds formerly sensitive free pages zeroes them
    conv = asi.simulate(_small61(Policy.TRACKED), _wl([("a", 0, 0, 1, M), ("f", 0),
                                                    ("a", 1, 0, 0, M)]))
    assert conv.counts.to_nonsensitive == 2 and conv.counts.pages_zeroed == 1


def test_sensitive_allocation_of_a_mapped_page_is_shot_down_first():
    # tracked: nonsensitive pages fill pageblocks 0-1; a sensitive allocation that must fall
    # back into them converts a pageblock to sensitive and unmaps its free pages
    ops = [("a", 0, 0, 0, U), ("a", 1, 3, 1, M), ("a", 2, 1, 1, M)]
    r = asi.simulate(_small61(Policy.TRACKED), _wl(ops))
    c = r.counts
    assert c.to_sensitive >= 1 and c.flushes >= 1 and c.violations == 0


def test_physmap_designs_page_table_allocations():
    ops = [("a", 0, 0, 0, U), ("a", 1, 0, 0, U), ("f", 0), ("f", 1)]
    synced = asi.simulate(_small(Policy.RFC, Physmap.SYNCED), _wl(ops))
    assert synced.counts.pt_allocs == 0 and synced.pt_pages_boot == 4 + 1
    demand = asi.simulate(_small(Policy.RFC, Physmap.ON_DEMAND), _wl(ops))
    assert demand.counts.pt_allocs == 2 and demand.pt_pages_boot == 0
    # block leaves: a single page mapped in a pageblock forces a split (a table page)
    blocks = asi.simulate(_small(Policy.RFC, Physmap.SYNCED_BLOCKS), _wl(ops))
    assert blocks.counts.block_splits == 1 and blocks.counts.pt_allocs == 1
    # tracked sensitivity maps whole pageblocks: they stay block leaves
    tb = asi.simulate(_small61(Policy.TRACKED, Physmap.SYNCED_BLOCKS), _wl(ops))
    assert tb.counts.block_splits == 0 and tb.counts.pt_allocs == 0


def test_target_worker_unmaps_down_to_the_target():
    ops = [("a", i, 0, 0, U) for i in range(6)] + [("f", i) for i in range(6)]
    free_all = asi.simulate(_small61(Policy.TRACKED_TARGET, target_free_mapped_pages=100),
                            _wl(ops))
    assert free_all.counts.target_conversions == 0
    tight = asi.simulate(_small61(Policy.TRACKED_TARGET, target_free_mapped_pages=0), _wl(ops))
    c = tight.counts
    assert c.target_conversions >= 1 and c.pages_unmapped >= 1 and c.flushes >= 1
    assert c.violations == 0


def test_stale_tlb_entry_of_a_sensitive_page_is_a_violation():
    cfg = _small(Policy.RFC)
    wl = _wl([("a", 0, 0, 1, M)])
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    assert asi.check_invariant(bst, tst, ast) == 0
    # a restricted-space TLB entry left for the sensitive page: the checker must see it
    from kmm import tlb
    counts = np.zeros(len(tlb.TLBEvent), np.int64)
    tlb.tlb_fill(tst, 2, 1, 0, 12, -1, 0, counts)
    assert asi.check_invariant(bst, tst, ast) == 1
    bst.flags[0] |= asi.F_MAPPED
    assert asi.check_invariant(bst, tst, ast) == 2


def _conserved(cfg, wl):
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    nt = cfg.buddy_config().table.n_types
    orders = np.repeat(np.arange(cfg.buddy_config().max_order + 1), nt)
    free = int((bst.nr_free << orders).sum())
    used = int(sum(1 << int(o) for o in bst.alloc_order if o >= 0))
    return free + used, bst.params[4], int(ast.counts[asi.AsiEvent.VIOLATIONS])


#: every policy with the default options, and every option of the tracked policies (v6.1's
#: fallbacks with policy 2 only)
_DEFAULT_OPTIONS = (FlushRank.FAST_PATH, Zeroing.LAZY, Conversion.POSTED)
_OPTION_CASES = [(pol, rank, z, conv) for pol in (Policy.TRACKED, Policy.TRACKED_TARGET)
                 for rank in FlushRank for z in Zeroing for conv in Conversion
                 if (rank, z, conv) != _DEFAULT_OPTIONS
                 and (pol == Policy.TRACKED or conv == Conversion.POSTED)]
_ALL_CASES = [(pol, *_DEFAULT_OPTIONS) for pol in Policy] + _OPTION_CASES


@pytest.mark.parametrize("policy,rank,zeroing,conversion", _ALL_CASES)
@pytest.mark.parametrize("physmap", [Physmap.ON_DEMAND, Physmap.SYNCED_BLOCKS])
def test_invariant_holds_over_a_long_random_workload(policy, rank, zeroing, conversion, physmap):
    # a 2 MiB pool of 512 pages in 32 pageblocks, 4 CPUs touching nonsensitive blocks,
    # a memory-pressure phase (and a phased stream), the invariant checked after every
    # operation
    cfg = AsiConfig(policy=policy, physmap=physmap, pool_bytes=2 << 20, max_order=6,
                    pageblock_order=4, cpus=4, touches_per_op=2, worker_interval_ns=20_000,
                    worker_batch_pages=16, op_interval_ns=1000, check_invariant=True,
                    target_free_mapped_pages=32, tlb_entries=32, tlb_ways=4,
                    flush_rank=rank, zeroing=zeroing, conversion=conversion,
                    reclaim_batch_pages=8, init_on_alloc=True,
                    nofragment=physmap == Physmap.SYNCED_BLOCKS)
    streams = [asi.make_workload(mix, 3000, 11, 512, occupancy=0.5, pressure=0.3, cpus=4,
                                 unmovable_sensitive=0.3 if mix == "mixed" else None)
               for mix in ("mixed", "pathological")]
    streams.append(_phased_stream(11, 6000, phase=500, max_order=4, cpus=4))
    for wl in streams:
        wl = wl._replace(order=np.minimum(wl.order, 6).astype(np.int8))
        total, npages, violations = _conserved(cfg, wl)
        assert violations == 0
        assert total == npages


def test_workload_stream_is_well_formed_and_seeded():
    a = asi.make_workload("mixed", 5000, 3, 1 << 14, occupancy=0.5, pressure=0.2)
    b = asi.make_workload("mixed", 5000, 3, 1 << 14, occupancy=0.5, pressure=0.2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    seen = set()
    for k, r in zip(a.kind.tolist(), a.ref.tolist()):
        if k == 0:
            assert r not in seen
            seen.add(r)
        else:
            assert r in seen   # a free follows its allocation
    allocs = int((a.kind == 0).sum())
    assert allocs == 5000 + int(0.2 * (1 << 14))
    assert sorted(a.ref[a.kind == 0].tolist()) == list(range(allocs))
    c = asi.make_workload("mixed", 5000, 4, 1 << 14)
    assert not np.array_equal(a.ref, c.ref)
    with pytest.raises(ConfigError, match="unknown mix"):
        asi.make_workload("nope", 10, 0, 100)
    # a stream drawn for more CPUs than the configuration has is refused, not run
    wl = asi.make_workload("mixed", 200, 1, 256, cpus=8)
    wl = wl._replace(order=np.minimum(wl.order, 5).astype(np.int8))
    with pytest.raises(ConfigError, match="CPU outside"):
        asi.simulate(AsiConfig(pool_bytes=1 << 20, max_order=5, pageblock_order=3, cpus=2), wl)


def test_tracked_table_and_config_validation():
    t = asi.tracked_migrate_table()
    assert t.names == ("s_unmovable", "s_movable", "s_reclaimable", "n_unmovable",
                       "n_movable", "n_reclaimable", "isolate")
    # nothing falls back to the isolated type, and it never merges above the pageblock
    assert t.fallbacks[asi.MT_ISOLATE] == () and not t.mergeable[asi.MT_ISOLATE]
    assert all(asi.MT_ISOLATE not in fb for fb in t.fallbacks)
    # n_movable: kernel order within nonsensitive (reclaimable, unmovable), then movable
    # sensitive, then the sensitive fallbacks
    assert t.fallbacks[4] == (5, 3, 1, 2, 0)
    assert t.fallbacks[0] == (2, 1, 3, 5, 4)
    with pytest.raises(ConfigError):
        AsiConfig(granule="8K")
    with pytest.raises(ConfigError, match="multiple"):
        AsiConfig(pool_bytes=(2 << 20) + 100)
    from kmm.invalidate import Method
    cfg = AsiConfig(granule="64K", pool_bytes=4 << 30, arch=Arch.ARM64, method=Method.ARM64_TLBI)
    assert cfg.buddy_config().pageblock_order == 13 and cfg.buddy_config().pageblocks == 8
    # each machine with its own shootdowns (x86: IPI or INVLPGB, arm64: TLBI broadcast) and
    # geometry (x86-64: 4K pages, MAX_PAGE_ORDER 10, 2 MiB pageblocks)
    for arch, method in ((Arch.X86, Method.ARM64_TLBI), (Arch.ARM64, Method.X86_IPI),
                         (Arch.ARM64, Method.X86_INVLPGB)):
        with pytest.raises(ConfigError, match="method"):
            AsiConfig(arch=arch, method=method)
    with pytest.raises(ConfigError, match="4K"):
        AsiConfig(granule="16K")
    x86 = AsiConfig(pool_bytes=64 << 20)
    assert x86.geometry.arch == "x86_64" and x86.buddy_config().max_order == 10
    assert x86.buddy_config().pageblock_order == 9
    assert isinstance(buddy.kernel_migrate_table(), buddy.MigrateTable)


def test_evaluate_gives_evidence_for_every_claim():
    p = asi.check_params({"allocs": 2000, "pool_mib": 8, "target_points": 3,
                          "sweep_allocs": 500})
    ev = asi.evaluate(p)
    assert sorted(ev["evidence"]) == [f"A{i}" for i in range(1, 8)]
    assert len(ev["evidence"]["A6"]["target"]) == 3 == len(ev["evidence"]["A6"]["cost"])
    assert ev["evidence"]["A6"]["target"][0] == 0
    assert all(r.counts.violations == 0 for r in ev["runs"].values())
    text = asi.explanations(ev["evidence"], ev["notes"])
    assert all(text[c].strip() for c in ev["evidence"])
    with pytest.raises(ConfigError, match="unknown parameter"):
        asi.check_params({"bogus": 1})


@pytest.mark.parametrize("policy", list(Policy))
def test_kernel_matches_twin_on_random_streams(policy):
    from kmm.invalidate import Method
    total = {}
    cases = ((1, Physmap.ON_DEMAND, Method.X86_IPI, 7000, 8, 0.6, 0.3),
             (2, Physmap.SYNCED_BLOCKS, Method.ARM64_TLBI, 7000, 8, 0.6, 0.3),
             (3, Physmap.SYNCED, Method.X86_INVLPGB, 7000, 8, 0.6, 0.3),
             # a slow worker under heavy pressure: allocations wait on the queue
             (4, Physmap.ON_DEMAND, Method.X86_IPI, 10**6, 10**4, 0.7, 0.6))
    for seed, physmap, method, interval, batch, occupancy, pressure in cases:
        cfg = AsiConfig(policy=policy, physmap=physmap, pool_bytes=1 << 20, max_order=5,
                        pageblock_order=3, cpus=3, touches_per_op=2,
                        worker_interval_ns=interval, worker_batch_pages=batch,
                        op_interval_ns=1000, target_free_mapped_pages=12, tlb_entries=16,
                        tlb_ways=4, sample_every=7, method=method,
                        arch=Arch.ARM64 if method == Method.ARM64_TLBI else Arch.X86,
                        init_on_alloc=seed % 2 == 1, nofragment=seed in (2, 4),
                        **({"mermap_region_pages": 8, "unmapped_movable": seed != 3}
                           if policy == Policy.UNMAPPED else {}))
        for mix in ("mixed", "pathological"):
            wl = asi.make_workload(mix, 800, seed, 256, occupancy=occupancy, pressure=pressure,
                                   cpus=3, unmovable_sensitive=0.3 if mix == "mixed" else None,
                                   phase_allocs=100 if seed == 3 else 0, phase_skew=4.0)
            wl = wl._replace(order=np.minimum(wl.order, 5).astype(np.int8))
            r = asi.simulate(cfg, wl)
            tw = NaiveAsi(cfg, wl).run()
            assert r.counts.as_dict() == tw.c, (mix, physmap)
            want_lat = [tw.lat[i] for i in sorted(tw.lat) if tw.lat[i] >= 0]
            assert r.lat_ns.tolist() == want_lat
            assert [tuple(b) for b in r.bursts.tolist()] == tw.bursts
            inv = r.inval.as_dict()
            inv.pop("entries_dropped")
            twc = dict(tw.inv.c)
            twc.pop("entries_dropped")
            assert inv == twc
            assert r.buddy.as_dict() == tw.b.c
            _check_cpu_win(r, tw)
            for k, v in r.counts.as_dict().items():
                total[k] = total.get(k, 0) + v
    # the streams reach each policy's own paths
    need = {Policy.RFC: ("reclaim_waits", "pointless_remaps", "worker_runs", "pages_zeroed",
                         "block_splits", "pt_allocs"),
            Policy.TRACKED: ("to_nonsensitive", "to_sensitive", "asi_unmap_allocs",
                             "zeroed_deferred", "zero_by_init"),
            Policy.TRACKED_TARGET: ("target_conversions", "worker_runs", "to_nonsensitive"),
            Policy.SYNC_FLUSH: ("flushes", "pointless_remaps"),
            Policy.UNMAPPED: ("asi_unmap_allocs", "direct_map_maps", "mermap_pages",
                              "mermap_flushes", "zeroed_on_conversion", "to_nonsensitive"),
            Policy.NONE: ("allocs",)}[policy]
    assert all(total[k] > 0 for k in need), {k: total[k] for k in need}



@pytest.mark.parametrize("policy", [Policy.RFC, Policy.TRACKED_TARGET, Policy.SYNC_FLUSH])
def test_held_entries_kept_by_touches_equal_a_count_of_the_tlb(policy):
    # ast.held, kept by each touch's fills and evictions and recounted after a flush that
    # removed entries, is every CPU's count of valid TLB entries at the end of a stream
    from kmm.invalidate import InvalEvent
    from kmm.mech.asi.kernels import _held
    held = dropped = 0
    for seed in (1, 2):
        cfg = AsiConfig(policy=policy, pool_bytes=1 << 20, max_order=5, pageblock_order=3,
                        cpus=3, touches_per_op=2, worker_interval_ns=7000,
                        target_free_mapped_pages=12, tlb_entries=16, tlb_ways=4)
        full = _phased_stream(seed, 2500)
        for n in (400, 900, 1600, 2500):  # streams ending at different points
            wl = asi.Workload(*(a[:n] for a in full))
            bst, tst, ist, ast = asi.build(cfg, wl)
            asi.run_stream(bst, tst, ist, ast, wl)
            assert ast.held.tolist() == [_held(tst, c) for c in range(cfg.cpus)]
            held += int(ast.held.sum())
            dropped += int(ist.counts[int(InvalEvent.ENTRIES_DROPPED)])
    assert held > 0 and dropped > 0

# ---- slow-path flush rank and lazy zeroing ------------------------------------------------

# one nonsensitive page converts pageblocks 0-1 (pages 0-7) to nonsensitive; sensitive order-0
# allocations 1-8 fill pageblocks 2-3 (pages 8-15, in id order)
FILL = [("a", 0, 0, 0, U)] + [("a", i, 0, 1, M) for i in range(1, 9)]


def _counts(r, *names):
    return tuple(getattr(r.counts, n) for n in names)


@pytest.mark.parametrize("rank", list(FlushRank))
def test_flush_rank_order1_compaction_avoids_the_flush(rank):
    # pages 9 and 13 freed: two free sensitive pages, no free order-1 sensitive block; the
    # range [8, 9] needs one page migrated (8 -> 13), while nonsensitive pageblock 1 is free
    ops = FILL + [("f", 2), ("f", 6), ("a", 9, 1, 1, M), ("f", 1), ("f", 9)]
    r = asi.simulate(_small61(Policy.TRACKED, flush_rank=rank), _wl(ops))
    names = ("slowpath_entries", "slow_flush_allocs", "compactions", "compact_allocs",
             "pages_migrated", "to_sensitive", "flushes", "pages_reclaimed", "violations")
    want = {
        # the fallback takes pageblock 1: its 4 mapped pages are unmapped, one shootdown
        FlushRank.FAST_PATH: (0, 0, 0, 0, 0, 1, 1, 0, 0),
        FlushRank.FIRST: (1, 1, 0, 0, 0, 1, 1, 0, 0),
        # compaction moves page 8 to 13 and the allocation takes [8, 9]: no shootdown
        FlushRank.AFTER_COMPACTION: (1, 0, 1, 1, 1, 0, 0, 0, 0),
        FlushRank.AFTER_RECLAIM: (1, 0, 1, 1, 1, 0, 0, 0, 0),
    }[rank]
    assert _counts(r, *names) == want
    if rank >= FlushRank.AFTER_COMPACTION:
        assert r.lat_ns.tolist()[9] == 150 + 2000  # base + one page migrated
        # allocation 0's conversion (mapping pageblocks 0-1), then the compaction
        assert r.bursts[:, 2].tolist() == [int(asi.BurstSource.CONVERSION),
                                           int(asi.BurstSource.COMPACTION)]
        assert r.counts.frees == 4 and r.buddy.frees == 5  # the migration freed page 8
    # allocations 0, 3, 4, 5, 7 and 8 stay (6 pages; allocation 1 freed where it moved to)
    bst, _, _, ast = _state_after(_small61(Policy.TRACKED, flush_rank=rank), _wl(ops))
    nt = asi.tracked_migrate_table().n_types
    assert int((bst.nr_free << np.repeat(np.arange(4), nt)).sum()) == 10
    assert sorted(ast.owner[ast.owner >= 0].tolist()) == [0, 3, 4, 5, 7, 8]
    assert set(bst.pb_mt.tolist()) <= {1, 3}


def _state_after(cfg, wl):
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    return bst, tst, ist, ast


@pytest.mark.parametrize("rank", list(FlushRank))
def test_flush_rank_failed_compaction_falls_through_to_the_flush(rank):
    # pages 9 and 11 freed: the best range [8, 9] lies in the only pageblock with free
    # sensitive pages, which compaction isolates: page 8 has nowhere to go
    ops = FILL + [("f", 2), ("f", 4), ("a", 9, 1, 1, M)]
    r = asi.simulate(_small61(Policy.TRACKED, flush_rank=rank), _wl(ops))
    c = _counts(r, "compactions", "pages_migrated", "slow_flush_allocs", "to_sensitive",
                "flushes", "direct_reclaims", "alloc_failures", "violations")
    compactions = 1 if rank >= FlushRank.AFTER_COMPACTION else 0
    reclaims = 1 if rank == FlushRank.AFTER_RECLAIM else 0  # nothing reclaimable: one round
    slow = 1 if rank != FlushRank.FAST_PATH else 0
    assert c == (compactions, 0, slow, 1, 1, reclaims, 0, 0)
    # the isolated pageblock got its type back and its free pages their lists
    assert r.buddy.pageblock_conversions == 2 + 1 + 2 * compactions


@pytest.mark.parametrize("rank", list(FlushRank))
@pytest.mark.parametrize("batch", [32, 1])
def test_flush_rank_order0_reclaim_avoids_the_flush(rank, batch):
    # allocations 3 and 5 (pages 10 and 12) are clean page cache; the pool's sensitive
    # pageblocks are full when a sensitive order-0 allocation comes (compaction cannot help
    # order 0); id 3 is freed by the stream afterwards
    ops = ([("a", 0, 0, 0, U)] + [("a", i, 0, 1, M, int(i in (3, 5))) for i in range(1, 9)]
           + [("a", 9, 0, 1, M), ("f", 3)])
    r = asi.simulate(_small61(Policy.TRACKED, flush_rank=rank, reclaim_batch_pages=batch),
                     _wl(ops))
    c = _counts(r, "compactions", "slow_flush_allocs", "flushes", "direct_reclaims",
                "pages_reclaimed", "reclaimed_frees", "frees", "violations")
    if rank == FlushRank.AFTER_RECLAIM:
        # oldest first: id 3, then (batch 32) id 5; the stream's free of id 3 is skipped
        assert c == (0, 0, 0, 1, 2 if batch == 32 else 1, 1, 0, 0)
        assert r.bursts[:, 2].tolist() == [int(asi.BurstSource.CONVERSION),
                                           int(asi.BurstSource.DIRECT_RECLAIM)]
        assert r.lat_ns.tolist()[9] == 150 + 1000 * (2 if batch == 32 else 1)
    else:
        assert c == (0, int(rank != FlushRank.FAST_PATH), 1, 0, 0, 0, 1, 0)


def test_lazy_zeroing_hand_example():
    ops = [("a", 0, 2, 1, M), ("f", 0),    # pages 0-3 hold sensitive data, free
           ("a", 1, 0, 0, U),              # takes page 0: pageblocks 0-1 turn nonsensitive
           ("a", 2, 0, 0, U),              # page 1
           ("a", 3, 2, 0, U),              # pages 4-7 (clean)
           ("a", 4, 0, 1, M), ("a", 5, 2, 1, M), ("a", 6, 1, 1, M), ("a", 7, 0, 1, M),
           ("a", 8, 0, 1, M),              # sensitive lists empty: claims pageblock 0, page 2
           ("a", 9, 0, 0, U)]              # pageblock 0 back to nonsensitive: page 3
    names = ("pages_zeroed", "zeroed_on_conversion", "zero_deferred", "zeroed_deferred",
             "deferred_to_sensitive", "deferred_dropped", "flushes", "pages_unmapped",
             "pointless_remaps", "to_sensitive", "to_nonsensitive", "violations")
    eager = asi.simulate(_small61(Policy.TRACKED), _wl(ops))
    lazy = asi.simulate(_small61(Policy.TRACKED, zeroing=Zeroing.LAZY), _wl(ops))
    # eager: pages 1-3 zeroed and mapped at the first conversion, page 0 on allocation;
    # turning pageblock 0 sensitive unmaps pages 2 and 3 (one shootdown); page 3 is mapped
    # again, clean, for allocation 9
    assert _counts(eager, *names) == (4, 3, 0, 0, 0, 0, 1, 2, 1, 1, 3, 0)
    # lazy: pages 1-3 stay unmapped; page 1 is zeroed when allocation 2 takes it, page 2
    # goes to a sensitive allocation without zeroing, page 3 (deferred mark dropped when
    # its pageblock turned sensitive) is zeroed when allocation 9 takes it: exactly the
    # pages that held sensitive data and were handed to nonsensitive users (0, 1, 3)
    assert _counts(lazy, *names) == (3, 0, 3, 1, 1, 1, 0, 0, 0, 1, 3, 0)
    assert eager.buddy.as_dict() == lazy.buddy.as_dict()
    assert lazy.deferred_pending == eager.deferred_pending == 0
    # stopped before allocation 2, pages 1-3 are still pending
    assert asi.simulate(_small61(Policy.TRACKED, zeroing=Zeroing.LAZY), _wl(ops[:3])) \
        .deferred_pending == 3


def test_lazy_zeroing_leaves_deferred_pages_unmapped_and_checked():
    ops = [("a", 0, 2, 1, M), ("f", 0), ("a", 1, 0, 0, U)]
    bst, tst, ist, ast = _state_after(_small61(Policy.TRACKED, zeroing=Zeroing.LAZY), _wl(ops))
    flags = bst.flags[:8].tolist()
    deferred = asi.F_DIRTY | asi.F_ZERO_DEFERRED
    assert flags[:4] == [asi.F_MAPPED, deferred, deferred, deferred]
    assert flags[4:] == [asi.F_MAPPED] * 4
    assert asi.check_invariant(bst, tst, ast) == 0
    bst.flags[1] |= asi.F_MAPPED           # a deferred page mapped before zeroing
    assert asi.check_invariant(bst, tst, ast) == 1
    bst.flags[1] = asi.F_ZERO_DEFERRED     # a deferred mark without the data's dirty bit
    assert asi.check_invariant(bst, tst, ast) == 1


def test_options_apply_to_tracked_policies_only():
    for pol in (Policy.NONE, Policy.RFC, Policy.SYNC_FLUSH):
        with pytest.raises(ConfigError, match="tracked policies"):
            AsiConfig(policy=pol, flush_rank=FlushRank.FIRST)
        with pytest.raises(ConfigError, match="tracked policies"):
            AsiConfig(policy=pol, zeroing=Zeroing.EAGER)
        with pytest.raises(ConfigError, match="tracked policies"):
            AsiConfig(policy=pol, conversion=Conversion.FALLBACK)
    with pytest.raises(ConfigError):
        AsiConfig(policy=Policy.TRACKED, reclaim_batch_pages=0)
    fb = asi.own_sensitivity_fallbacks(AsiConfig(policy=Policy.TRACKED,
                                                 conversion=Conversion.FALLBACK)
                                       .buddy_config().build().fallbacks)
    assert fb[1].tolist() == [2, 0, -1, -1, -1]   # s_movable: reclaimable, unmovable
    assert fb[4].tolist() == [5, 3, 1, 2, 0]      # nonsensitive types keep every fallback


def _slow_stream(mix, seed, pages, orders, occupancy=0.7, pressure=0.6, cpus=3):
    wl = asi.make_workload(mix, 800, seed, pages, occupancy=occupancy, pressure=pressure,
                           cpus=cpus, unmovable_sensitive=0.3 if mix == "mixed" else None)
    return wl._replace(order=np.minimum(wl.order, orders).astype(np.int8))


def test_lazy_zeroes_no_more_than_eager_on_the_same_stream():
    # lazy zeroing changes no allocator decision under policy 2: the same blocks, and a page
    # is zeroed lazily only where the eager policy zeroed it too, at a conversion or then
    for rank in FlushRank:
        for seed in (1, 2, 3):
            cfg = dict(policy=Policy.TRACKED, pool_bytes=1 << 20, max_order=5, pageblock_order=3,
                       cpus=3, touches_per_op=1, flush_rank=rank,
                       conversion=(Conversion.FALLBACK, Conversion.POSTED)[seed % 2])
            wl = _phased_stream(seed, 3000)
            eager = asi.simulate(AsiConfig(**cfg, zeroing=Zeroing.EAGER), wl)
            lazy = asi.simulate(AsiConfig(**cfg, zeroing=Zeroing.LAZY), wl)
            assert lazy.buddy.as_dict() == eager.buddy.as_dict()
            assert lazy.counts.pages_zeroed <= eager.counts.pages_zeroed
            assert eager.counts.zeroed_on_conversion > 0 and lazy.counts.zero_deferred > 0
            c = lazy.counts  # every deferred page is accounted for once
            assert c.zero_deferred == (c.zeroed_deferred + c.deferred_to_sensitive
                                       + c.deferred_dropped + lazy.deferred_pending)


@pytest.mark.parametrize("policy,rank,zeroing,conversion", _OPTION_CASES)
def test_options_match_twin_on_random_streams(policy, rank, zeroing, conversion):
    total = {}
    for seed, physmap in ((5, Physmap.ON_DEMAND), (6, Physmap.SYNCED_BLOCKS)):
        cfg = AsiConfig(policy=policy, physmap=physmap, pool_bytes=1 << 20, max_order=5,
                        pageblock_order=3, cpus=3, touches_per_op=2, worker_interval_ns=7000,
                        target_free_mapped_pages=12, tlb_entries=16, tlb_ways=4, sample_every=7,
                        flush_rank=rank, zeroing=zeroing, conversion=conversion,
                        reclaim_batch_pages=8, init_on_alloc=seed == 5, nofragment=seed == 6)
        for wl in (_slow_stream("mixed", seed, 256, 3), _slow_stream("pathological", seed, 256, 3),
                   _phased_stream(seed, 2500)):
            mix = int(wl.kind.shape[0])
            r = asi.simulate(cfg, wl)
            tw = NaiveAsi(cfg, wl).run()
            assert r.counts.as_dict() == tw.c, (mix, physmap)
            assert r.lat_ns.tolist() == [tw.lat[i] for i in sorted(tw.lat) if tw.lat[i] >= 0]
            assert [tuple(b) for b in r.bursts.tolist()] == tw.bursts
            assert r.buddy.as_dict() == tw.b.c
            _check_cpu_win(r, tw)
            inv = r.inval.as_dict()
            twc = dict(tw.inv.c)
            inv.pop("entries_dropped")
            twc.pop("entries_dropped")
            assert inv == twc
            for k, v in r.counts.as_dict().items():
                total[k] = total.get(k, 0) + v
    # the streams reach the option's own paths
    need = {FlushRank.FAST_PATH: (), FlushRank.FIRST: ("slow_flush_allocs", "pages_reclaimed"),
            FlushRank.AFTER_COMPACTION: ("pages_migrated", "compact_allocs", "slow_flush_allocs"),
            FlushRank.AFTER_RECLAIM: ("pages_migrated", "pages_reclaimed", "reclaimed_frees",
                                      "slow_flush_allocs")}[rank]
    need += (("zero_deferred", "zeroed_deferred")
             + (("deferred_dropped",) if conversion == Conversion.FALLBACK else ())
             if zeroing == Zeroing.LAZY else ())
    # (policy 3's worker keeps too few free nonsensitive pages for a whole free block)
    need += (("asi_unmap_allocs",) if conversion == Conversion.POSTED
             and policy == Policy.TRACKED else ())
    if policy == Policy.TRACKED_TARGET and conversion == Conversion.POSTED:
        need = tuple(k for k in need if k != "slow_flush_allocs")
    assert all(total[k] > 0 for k in need), {k: total[k] for k in need}


# ---- property: the ASI invariant over random small streams, every policy and option ---------

# 64 pages in 8 pageblocks, MAX_PAGE_ORDER 4, 2 CPUs; configurations built once
_PROP_CONFIGS = [AsiConfig(policy=pol, flush_rank=rank, zeroing=z, conversion=conv, physmap=pm,
                           pool_bytes=64 * 4096, max_order=4, pageblock_order=3, cpus=2,
                           touches_per_op=1, worker_interval_ns=5000, worker_batch_pages=8,
                           target_free_mapped_pages=4, tlb_entries=16, tlb_ways=4,
                           reclaim_batch_pages=4, check_invariant=True)
                 for pol, rank, z, conv in _ALL_CASES
                 for pm in (Physmap.ON_DEMAND, Physmap.SYNCED_BLOCKS)]


@INVARIANT
@given(cfg=st.sampled_from(_PROP_CONFIGS), seed=st.integers(0, 2**32 - 1),
       nops=st.integers(1, 300), phase=st.integers(4, 120), p_free=st.floats(0.1, 0.7),
       max_order=st.integers(0, 4))
def test_invariant_no_sensitive_page_reachable_from_the_restricted_space(cfg, seed, nops, phase,
                                                                         p_free, max_order):
    """Random allocation/free streams on a small pool under every policy and option: after
    every operation no page holding sensitive data (allocated sensitive, freed and not yet
    zeroed, or deferred for zeroing) is mapped in the restricted physmap or covered by any
    CPU's TLB entry, a deferred page is marked as holding sensitive data, every page is
    free or in exactly one live allocation, and each live allocation's block is where its
    record (moved by compaction) says; RFC queues count as in neither."""
    wl = _phased_stream(seed, nops, phase=phase, p_free=p_free, max_order=max_order, cpus=2)
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    c = ast.counts
    event(f"policy {cfg.policy.name}")
    event(f"slow path entered {c[asi.AsiEvent.SLOWPATH_ENTRIES] > 0}, pages migrated "
          f"{c[asi.AsiEvent.PAGES_MIGRATED] > 0}, reclaimed {c[asi.AsiEvent.PAGES_RECLAIMED] > 0}")
    event(f"zeroing deferred {c[asi.AsiEvent.ZERO_DEFERRED] > 0}, failures "
          f"{c[asi.AsiEvent.ALLOC_FAILURES] > 0}")
    assert c[asi.AsiEvent.VIOLATIONS] == 0
    nt = cfg.buddy_config().table.n_types
    free = int((bst.nr_free << np.repeat(np.arange(cfg.max_order + 1), nt)).sum())
    live = ast.live[ast.live[:, 0] >= 0]
    queued = ast.queue[:int(ast.params[asi._P_QN])]  # RFC: freed, waiting for the worker
    assert free + int((1 << live[:, 1]).sum()) + int((1 << queued[:, 1]).sum()) == 64
    assert (bst.alloc_order[live[:, 0]] == live[:, 1]).all()
    assert (ast.owner[live[:, 0]] == np.flatnonzero(ast.live[:, 0] >= 0)).all()
    assert int((ast.owner >= 0).sum()) == live.shape[0]


def test_replicates_run_the_published_point_at_two_more_seeds_and_half_the_stream():
    """A1-A7 are replicated at seeds 6 and 7 with the published 2000 allocations per stream
    and at seed 5 with 1000. The replicates run only the evidence variants and no slow path:
    at the published seed and length that gives exactly the published evidence. No claim is
    deterministic: seed 6 draws another pathological stream, on which the RFC design makes
    another number of pointless remaps (A1). The replicates make a convergence check (three seeds, a half length).
    :func:`claim_evidence`, which the replicates, the sweep and the swings run, gives the
    published evidence at the published point."""
    from kmm.mech.asi import study
    from kmm.suite import registry
    p = asi.check_params({"allocs": 2000, "pool_mib": 8, "target_points": 3, "seed": 5})
    reps = study.replicates(p)
    assert set(reps) == set(asi.CHARTS)
    for rs in reps.values():
        assert [(r["seed"], r["length"]) for r in rs] == [(6, 2000), (7, 2000), (5, 1000)]
    published = asi.evaluate(p, slowpath=True)["evidence"]
    assert study.claim_evidence(p, 2000) == published
    assert reps["A1"][0]["value"]["pointless_rfc"] != published["A1"]["pointless_rfc"]
    assert all(set(r["value"]) == set(published[c]) for c, rs in reps.items() for r in rs)
    rec = {"value": published["A3"], "scenario": "published", "parameters": p,
           "replicates": reps["A3"]}
    assert registry.convergence("A3", rec)[0] is not None


def _small_stream_config(policy, **kw):
    return AsiConfig(policy=policy, pool_bytes=1 << 20, max_order=5, pageblock_order=3, cpus=3,
                     touches_per_op=2, worker_interval_ns=7000, worker_batch_pages=8,
                     op_interval_ns=1000, target_free_mapped_pages=12, tlb_entries=16,
                     tlb_ways=4, sample_every=7, **kw)


def _kernel_outputs(run):
    return (run.counts.values.tolist(), run.inval.values.tolist(), run.lat_ns.tolist(),
            run.bursts.tolist(), run.cpu_win.tolist())


@pytest.mark.parametrize("policy", list(Policy))
def test_kernel_inputs_leave_out_only_what_the_policy_never_reads(policy):
    """The runs a study shares (``Sims``) are keyed by what the kernels read: re-walk
    pricing never (it prices a run's counts in Python); the RFC queue's batch and enqueue
    cost only policy 1 (``_release``, ``run_stream``); the worker period and wake-up cost
    only policies 1 and 3, which have a worker. A field left out of the key must leave
    every kernel output unchanged; a field kept in it changes some (so this can fail)."""
    from dataclasses import replace
    from kmm.mech.asi import study
    wl = _phased_stream(11, 600, phase=40, p_free=0.45, max_order=3, cpus=3)
    base = _small_stream_config(policy)
    ref = _kernel_outputs(asi.simulate(base, wl))
    rfc, worker = policy == Policy.RFC, policy in (Policy.RFC, Policy.TRACKED_TARGET)
    changes = (  # (field, value, whether the policy's kernels read it)
        ("rewalk", asi.Rewalk(working_set=1000, memory_refs=2.0, background=0.7), False),
        ("worker_batch_pages", 2, rfc),
        ("costs", replace(base.costs, enqueue_ns=333.0), rfc),
        ("worker_interval_ns", 3000, worker),
        ("costs", replace(base.costs, worker_wake_ns=7777.0), worker))
    for name, value, reads in changes:
        cfg = replace(base, **{name: value})
        same_key = study._kernel_inputs(cfg) == study._kernel_inputs(base)
        assert same_key == (not reads), (name, value)
        if same_key:
            assert _kernel_outputs(asi.simulate(cfg, wl)) == ref, (name, value)
    if policy == Policy.RFC:  # the batch the RFC worker drains at does change its runs
        assert _kernel_outputs(asi.simulate(replace(base, worker_batch_pages=2), wl)) != ref


def test_sims_run_once_and_price_a_hit_with_the_asked_configuration():
    """``Sims`` runs a configuration once per workload; a configuration that differs only in
    the re-walk pricing gets the same kernel run priced by itself: its re-walk time is what
    :meth:`AsiRun.rewalks` prices with its own memory reads and load."""
    from dataclasses import replace
    from kmm.mech.asi import study
    wl = _phased_stream(3, 500, phase=30, p_free=0.4, max_order=3, cpus=3)
    cfg = _small_stream_config(Policy.RFC)
    sims = study.Sims()
    a = sims(cfg, wl)
    assert sims(cfg, wl) is a and len(sims.runs) == 1
    other = replace(cfg, rewalk=asi.Rewalk(memory_refs=3.0, background=0.8))
    b = study.Sims(sims)(other, wl)
    assert b.config == other and b.counts is a.counts and len(sims.runs) == 1
    fresh = asi.simulate(other, wl).metrics()
    assert b.metrics() == fresh
    assert a.metrics()["rewalk_ns"] != fresh["rewalk_ns"]


def test_the_largest_target_is_policy_2s_run():
    """At the most free pages policy 2 kept mapped, policy 3's worker never converts: the
    target sweep's last row (policy 2's run) equals a policy 3 run at that target."""
    from kmm.mech.asi import study
    p = asi.check_params({"allocs": 2000, "pool_mib": 8, "target_points": 3})
    rows = study.target_sweep(p)
    peak = int(rows["target_pages"][-1])
    wl = study.workload_for(p, "mixed", study.config_for(p, Policy.TRACKED_TARGET), None,
                            phases=True)
    m = asi.simulate(study.config_for(p, Policy.TRACKED_TARGET, target_free_mapped_pages=peak),
                     wl).metrics()
    assert m["target_conversions"] == 0
    assert rows.row(-1, named=True) == {"target_pages": peak, **m}
    assert rows["target_conversions"][0] > 0  # a target of 0 does convert


def test_swings_move_one_assumed_parameter_each_and_decide_verdicts():
    """The swings are :func:`kmm.suite.study.one_at_a_time` of the claims' ``assumed``
    parameters (both ends of each range, a TLB size rounded as the sweep rounds it), each
    evaluated like a sweep point; with them every claim's "decided by" is checked (a list,
    not None), and a swing that reuses the published point's runs gives what running it
    afresh gives."""
    from kmm.mech.asi import study
    from kmm.suite import registry
    p = asi.check_params({"allocs": 1500, "pool_mib": 8, "target_points": 3,
                          "sweep_allocs": 400, "sweep_points": 2})
    specs = study.claim_specs()
    sw = study.swings(p, specs)
    assert len(sw) == 2 * len(specs)
    for pt in sw:
        moved = [k for k in specs if pt["params"][k] != p[k]]
        assert len(moved) == 1
    tlb = [pt["params"]["tlb_entries"] for pt in sw if pt["params"]["tlb_entries"] != 512]
    assert tlb == [64, 1024]
    burst = next(pt for pt in sw if pt["params"]["a6_burst"] != p["a6_burst"])
    q = {**p, **burst["params"]}
    assert burst["evidence"] == study.claim_evidence(q, 400)
    ev = study.evidence(p)
    for c, e in ev.items():
        rec = {"value": e.value, "scenario": "published", "parameters": p,
               "sweep": list(e.sweep), "swings": list(e.swings)}
        assert registry.decided_by(c, rec) is not None, c


def _every_output(run):
    return (_kernel_outputs(run), run.buddy.values.tolist(), run.tlb.values.tolist(),
            run.pcp.values.tolist(), run.pt_pages_boot, run.deferred_pending)


_PRICE_VARIANTS = [  # (policy, options, method): every path that charges a price
    (Policy.NONE, {}, eng.Method.X86_IPI),
    (Policy.RFC, {}, eng.Method.X86_IPI),
    (Policy.TRACKED, {}, eng.Method.X86_IPI),
    (Policy.TRACKED, {"flush_rank": FlushRank.AFTER_COMPACTION}, eng.Method.X86_IPI),
    (Policy.TRACKED, {"flush_rank": FlushRank.AFTER_RECLAIM, "zeroing": Zeroing.LAZY},
     eng.Method.X86_IPI),
    (Policy.TRACKED, {"conversion": Conversion.POSTED, "arch": Arch.ARM64},
     eng.Method.ARM64_TLBI),
    (Policy.TRACKED, {}, eng.Method.X86_INVLPGB),
    (Policy.TRACKED_TARGET, {}, eng.Method.X86_IPI),
    (Policy.UNMAPPED, {}, eng.Method.X86_IPI),
    (Policy.UNMAPPED, {"arch": Arch.ARM64}, eng.Method.ARM64_TLBI),
]


@pytest.mark.parametrize("policy,options,method", _PRICE_VARIANTS)
def test_a_run_priced_from_two_runs_of_its_trajectory_equals_the_run(policy, options, method):
    """``Sims`` prices a run that differs from one it ran in one price only, once another
    run of that trajectory differs in that price alone: for every price the kernels read
    (each cost of :class:`AsiCosts` and each ns cost of the invalidation), the priced run
    equals the simulated one in every output, exactly. The stream reaches the slow path
    (compaction, reclaim) and phases of both sensitivities."""
    from dataclasses import fields, replace
    from kmm.mech.asi import study
    wl = _phased_stream(17, 1500, phase=60, p_free=0.42, max_order=3, cpus=3)
    base = _small_stream_config(policy, method=method, **options)
    prices = [("costs", f.name) for f in fields(asi.AsiCosts) if f.name != "sources"] + \
        [("inval_costs", f.name) for f in fields(eng.InvalidationCosts)
         if f.name.endswith("_ns")]
    moved = 0
    for part, name in prices:
        def at(x):
            return replace(base, **{part: replace(getattr(base, part), **{name: x})})
        v = float(getattr(getattr(base, part), name))
        sims = study.Sims()
        sims(base, wl)
        sims(at(v * 3 + 7), wl)
        third = at(v * 11 + 13)
        priced = sims(third, wl)
        if name == "full_flush_ns" or study._kernel_inputs(third) == study._kernel_inputs(base):
            # two slots (the local flush's and the invalidation's), or a price this policy
            # never reads (the run is the first one)
            assert sims.priced == 0
            continue
        assert sims.priced == 1, name
        want = asi.simulate(third, wl)
        assert _every_output(priced) == _every_output(want), name
        assert priced.metrics() == want.metrics(), name
        moved += _every_output(want) != _every_output(asi.simulate(base, wl))
    assert moved >= 2  # some prices move this variant's outputs (so the check can fail)


def test_a_price_move_that_is_not_linear_is_run():
    """A run that is not its trajectory's first plus a whole multiple of the moved price is
    not used to price another: the third run is simulated."""
    from dataclasses import replace
    from kmm.mech.asi import study
    wl = _phased_stream(5, 400, phase=30, p_free=0.4, max_order=3, cpus=3)
    base = _small_stream_config(Policy.TRACKED)
    sims = study.Sims()
    sims(base, wl)
    probe = replace(base, costs=replace(base.costs, zero_page_ns=999.0))
    b = sims(probe, wl)
    b.lat_ns[0] += 1  # no longer a whole multiple of the step apart
    third = replace(base, costs=replace(base.costs, zero_page_ns=1500.0))
    got = sims(third, wl)
    assert sims.priced == 0
    assert _every_output(got) == _every_output(asi.simulate(third, wl))
