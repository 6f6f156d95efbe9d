"""ASI page allocation: hand-worked sequences per policy, physmap designs, the invariant."""
import numpy as np
import pytest

from kmm import buddy
from kmm.errors import ConfigError
from kmm.mech import asi
from kmm.mech.asi import AsiConfig, Physmap, Policy

U, M = 0, 1


def _wl(ops, cpus=1):
    """ops: ("a", id, order, sens, mob) or ("f", id)."""
    meta = {}
    kind, ref, order, sens, mob = [], [], [], [], []
    for op in ops:
        if op[0] == "a":
            _, i, o, s, m = op
            meta[i] = (o, s, m)
            kind.append(0)
        else:
            _, i = op
            o, s, m = meta[i]
            kind.append(1)
        ref.append(i)
        order.append(o)
        sens.append(s)
        mob.append(m)
    n = len(kind)
    return asi.Workload(kind=np.array(kind, np.int8), ref=np.array(ref, np.int64),
                        order=np.array(order, np.int8), sens=np.array(sens, np.int8),
                        mob=np.array(mob, np.int8), cpu=np.zeros(n, np.int32),
                        rnd=np.arange(1, n + 1, dtype=np.int64))


def _small(policy, physmap=Physmap.ON_DEMAND, **kw):
    # 16 pages, MAX_PAGE_ORDER 3, pageblocks of 4 pages; the worker runs after every op
    base = dict(policy=policy, physmap=physmap, pool_bytes=16 * 4096, max_order=3,
                pageblock_order=2, cpus=2, touches_per_op=0, worker_interval_ns=1000,
                op_interval_ns=1000, check_invariant=True, sample_every=1)
    base.update(kw)
    return AsiConfig(**base)


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
    r = asi.simulate(_small(Policy.TRACKED), _wl(REUSE))
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
    tracked = asi.simulate(_small(Policy.TRACKED), _wl(ops))
    assert tracked.counts.pages_zeroed == 0 and tracked.lat_ns.tolist()[2] == 150
    none = asi.simulate(_small(Policy.NONE), _wl(ops))
    assert none.counts.pages_zeroed == 0 and none.counts.pages_mapped == 0
    # but converting a pageblock that holds formerly sensitive free pages zeroes them
    conv = asi.simulate(_small(Policy.TRACKED), _wl([("a", 0, 0, 1, M), ("f", 0),
                                                    ("a", 1, 0, 0, M)]))
    assert conv.counts.to_nonsensitive == 2 and conv.counts.pages_zeroed == 1


def test_sensitive_allocation_of_a_mapped_page_is_shot_down_first():
    # tracked: nonsensitive pages fill pageblocks 0-1; a sensitive allocation that must fall
    # back into them converts a pageblock to sensitive and unmaps its free pages
    ops = [("a", 0, 0, 0, U), ("a", 1, 3, 1, M), ("a", 2, 1, 1, M)]
    r = asi.simulate(_small(Policy.TRACKED), _wl(ops))
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
    tb = asi.simulate(_small(Policy.TRACKED, Physmap.SYNCED_BLOCKS), _wl(ops))
    assert tb.counts.block_splits == 0 and tb.counts.pt_allocs == 0


def test_target_worker_unmaps_down_to_the_target():
    ops = [("a", i, 0, 0, U) for i in range(6)] + [("f", i) for i in range(6)]
    free_all = asi.simulate(_small(Policy.TRACKED_TARGET, target_free_mapped_pages=100),
                            _wl(ops))
    assert free_all.counts.target_conversions == 0
    tight = asi.simulate(_small(Policy.TRACKED_TARGET, target_free_mapped_pages=0), _wl(ops))
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


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("physmap", [Physmap.ON_DEMAND, Physmap.SYNCED_BLOCKS])
def test_invariant_holds_over_a_long_random_workload(policy, physmap):
    # a 2 MiB pool of 512 pages in 32 pageblocks, 4 CPUs touching nonsensitive blocks,
    # a memory-pressure phase, the invariant checked after every operation
    cfg = AsiConfig(policy=policy, physmap=physmap, pool_bytes=2 << 20, max_order=6,
                    pageblock_order=4, cpus=4, touches_per_op=2, worker_interval_ns=20_000,
                    worker_batch_pages=16, op_interval_ns=1000, check_invariant=True,
                    target_free_mapped_pages=32, tlb_entries=32, tlb_ways=4)
    for mix in ("mixed", "pathological"):
        wl = asi.make_workload(mix, 3000, 11, 512, occupancy=0.5, pressure=0.3, cpus=4)
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


def test_tracked_table_and_config_validation():
    t = asi.tracked_migrate_table()
    assert t.names == ("s_unmovable", "s_movable", "s_reclaimable", "n_unmovable",
                       "n_movable", "n_reclaimable")
    # n_movable: kernel order within nonsensitive (reclaimable, unmovable), then movable
    # sensitive, then the sensitive fallbacks
    assert t.fallbacks[4] == (5, 3, 1, 2, 0)
    assert t.fallbacks[0] == (2, 1, 3, 5, 4)
    with pytest.raises(ConfigError):
        AsiConfig(granule="8K")
    with pytest.raises(ConfigError, match="multiple"):
        AsiConfig(pool_bytes=(2 << 20) + 100)
    cfg = AsiConfig(granule="64K", pool_bytes=4 << 30)
    assert cfg.buddy_config().pageblock_order == 13 and cfg.buddy_config().pageblocks == 8
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


# ---- plain-Python twin of run_stream ----------------------------------------------------
# (kept here: the twin reuses the buddy and invalidation twins of tests/naive)

class NaiveAsi:
    def __init__(self, cfg, wl):
        from naive.buddy import NaiveBuddy
        from naive.invalidate import NaiveInvalidator
        from kmm.invalidate import InvalidationConfig
        g = cfg.geometry
        bc = cfg.buddy_config()
        self.cfg, self.wl = cfg, wl
        self.b = NaiveBuddy(bc)
        self.n = bc.pool_pages
        self.pb = bc.pageblock_order
        self.sh = g.page_shift
        self.bpl = g.bits_per_level
        self.flags = [0] * self.n
        self.inv = NaiveInvalidator(InvalidationConfig(method=cfg.method, cpus=cfg.cpus,
                                                       page_shift=g.page_shift,
                                                       costs=cfg.inval_costs))
        self.inv.mm = set(range(cfg.cpus))
        npb = bc.pageblocks
        self.region = [1 if cfg.physmap == Physmap.SYNCED else 0] * npb
        self.rmapped = [0] * npb
        self.upper = [0] * ((npb >> self.bpl) + 1)
        k = cfg.costs
        scale = 1 << (g.page_shift - 12)
        self.k = {"alloc": round(k.alloc_base_ns), "free": round(k.free_base_ns),
                  "map": round(k.map_page_ns), "unmap": round(k.unmap_page_ns),
                  "zero": round(k.zero_page_ns * scale), "pt": round(k.pt_alloc_ns),
                  "enq": round(k.enqueue_ns), "wake": round(k.worker_wake_ns)}
        self.c = {e.name.lower(): 0 for e in asi.AsiEvent}
        nup = len(self.upper)
        self.c["pt_pages_boot"] = {Physmap.SYNCED: npb + nup, Physmap.SYNCED_BLOCKS: nup}.get(
            cfg.physmap, 0) if cfg.policy != Policy.NONE else 0
        self.tracked = cfg.policy in (Policy.TRACKED, Policy.TRACKED_TARGET)
        self.queue, self.live, self.lat, self.bursts = [], {}, {}, []
        self.ns_live = set()
        self.free_mapped = 0
        self.next_worker = cfg.worker_interval_ns

    def _pt(self):
        self.c["pt_allocs"] += 1
        self.c["pt_alloc_ns"] += self.k["pt"]
        return self.k["pt"]

    def _region(self, r):
        d, m, full = self.cfg.physmap, self.rmapped[r], 1 << self.pb
        if d == Physmap.ON_DEMAND:
            ns = 0
            if m > 0 and self.region[r] == 0:
                self.region[r] = 1
                ns += self._pt()
                if not self.upper[r >> self.bpl]:
                    self.upper[r >> self.bpl] = 1
                    ns += self._pt()
            return ns
        if d == Physmap.SYNCED or self.region[r] == 1:
            return 0
        if m == full:
            self.region[r] = 2
            return 0
        if m == 0:
            self.region[r] = 0
            return 0
        self.region[r] = 1
        self.c["block_splits"] += 1
        return self._pt()

    def _regions(self, pfn, n):
        return sum(self._region(r) for r in range(pfn >> self.pb, ((pfn + n - 1) >> self.pb) + 1))

    def _map(self, pfn, n, upd):
        ns = was = 0
        for p in range(pfn, pfn + n):
            f = self.flags[p]
            if f & asi.F_MAPPED:
                was += 1
                continue
            if f & asi.F_DIRTY:
                ns += self.k["zero"]
                self.c["pages_zeroed"] += 1
                self.c["zero_ns"] += self.k["zero"]
                f &= ~asi.F_DIRTY
            if f & asi.F_UNMAPPED_NS:
                self.c["pointless_remaps"] += 1
                f &= ~asi.F_UNMAPPED_NS
            self.flags[p] = f | asi.F_MAPPED
            ns += self.k["map"]
            self.c["map_ns"] += self.k["map"]
            self.c["pages_mapped"] += 1
            self.rmapped[p >> self.pb] += 1
        if upd:
            ns += self._regions(pfn, n)
        return ns, was

    def _unmap(self, pfn, n, upd):
        k = 0
        for p in range(pfn, pfn + n):
            f = self.flags[p]
            if not f & asi.F_MAPPED:
                continue
            f &= ~asi.F_MAPPED
            if not f & (asi.F_DIRTY | asi.F_SENS):
                f |= asi.F_UNMAPPED_NS
            self.flags[p] = f
            k += 1
            self.rmapped[p >> self.pb] -= 1
        ns = 0
        if k:
            ns = k * self.k["unmap"]
            self.c["pages_unmapped"] += k
            self.c["unmap_ns"] += ns
            if upd:
                ns += self._regions(pfn, n)
        return ns, k

    def _shootdown(self, cpu, lo, hi):
        ns = self.inv.flush(cpu, lo << self.sh, hi << self.sh, self.sh, -1, 0, kernel=True)
        self.c["flushes"] += 1
        self.c["flush_ns"] += ns
        return ns

    def _heads(self, base, end):
        p = base
        while p < end:
            if p in self.b.free:
                o = self.b.free[p][0]
                yield p, min(1 << o, end - p)
                p += 1 << o
            else:
                p += 1

    def _drain(self, cpu):
        if not self.queue:
            return 0, 0
        ns, lo, hi, pages = self.k["wake"], self.n, -1, 0
        for pfn, o in self.queue:
            u, _ = self._unmap(pfn, 1 << o, True)
            ns += u
            pages += 1 << o
            lo, hi = min(lo, pfn), max(hi, pfn + (1 << o))
        ns += self._shootdown(cpu, lo, hi)
        for pfn, o in self.queue:
            for p in range(pfn, pfn + (1 << o)):
                self.flags[p] &= ~asi.F_QUEUED
            self.b.free_pages(pfn, o)
            ns += self.k["free"]
        self.queue = []
        return ns, pages

    def _target(self, cpu):
        ns, lo, hi, pages = self.k["wake"], self.n, -1, 0
        while self.free_mapped > self.cfg.target_free_mapped_pages:
            best, best_k = -1, 0
            for b in range(len(self.b.pb)):
                if self.b.pb[b] >= 3:
                    k = sum(1 for p, n in self._heads(b << self.pb, (b + 1) << self.pb)
                            for q in range(p, p + n) if self.flags[q] & asi.F_MAPPED)
                    if k > best_k:
                        best, best_k = b, k
            if best < 0:
                break
            self.b.convert_pageblock(best, self.b.pb[best] - 3)
            self.c["target_conversions"] += 1
            base, end = best << self.pb, (best + 1) << self.pb
            for p, n in list(self._heads(base, end)):
                u, k = self._unmap(p, n, False)
                ns += u
                pages += k
                self.free_mapped -= k
            ns += self._region(best)
            lo, hi = min(lo, base), max(hi, end)
        if hi > lo:
            ns += self._shootdown(cpu, lo, hi)
        return ns, pages

    def _convert(self, conv, cpu):
        ns, lo, hi = 0, self.n, -1
        for b, old in conv:
            new = self.b.pb[b]
            if (old >= 3) == (new >= 3):
                continue
            base, end = b << self.pb, (b + 1) << self.pb
            for p, n in list(self._heads(base, end)):
                if new < 3:
                    u, k = self._unmap(p, n, False)
                    self.free_mapped -= k
                    ns += u
                else:
                    z0 = self.c["pages_zeroed"]
                    m, was = self._map(p, n, False)
                    self.c["zeroed_on_conversion"] += self.c["pages_zeroed"] - z0
                    self.free_mapped += n - was
                    ns += m
            if new < 3:
                self.c["to_sensitive"] += 1
                lo, hi = min(lo, base), max(hi, end)
            else:
                self.c["to_nonsensitive"] += 1
        if hi > lo:
            ns += self._shootdown(cpu, lo, hi)
        return ns

    def _alloc(self, i, t):
        wl, pol = self.wl, self.cfg.policy
        ident, order, sens = int(wl.ref[i]), int(wl.order[i]), bool(wl.sens[i])
        cpu, mt = int(wl.cpu[i]), int(wl.mob[i]) + (3 if self.tracked and not sens else 0)
        lat = self.k["alloc"]
        pfn = self.b.alloc_pages(order, mt)
        if pfn < 0 and pol in (Policy.RFC, Policy.SYNC_FLUSH) and self.queue:
            w, pages = self._drain(cpu)
            self.c["reclaim_waits"] += 1
            self.c["reclaim_wait_ns"] += w
            self.bursts.append((t, w, 4, pages))
            lat += w
            pfn = self.b.alloc_pages(order, mt)
        if pfn < 0:
            self.c["alloc_failures"] += 1
            self.lat[ident] = -1
            return
        self.c["allocs"] += 1
        self.c["sensitive_allocs"] += sens
        n = 1 << order
        self.live[ident] = (pfn, order)
        if pol == Policy.NONE:
            self.lat[ident] = lat
            self.c["alloc_ns"] += lat
            return
        conv = list(self.b.conversions) if self.tracked else []
        c = self._convert(conv, cpu) if conv else 0
        k = 0
        if sens:
            u, k = self._unmap(pfn, n, False)
            self.free_mapped -= k
            lat += u
            for p in range(pfn, pfn + n):
                self.flags[p] = (self.flags[p] & ~(asi.F_DIRTY | asi.F_UNMAPPED_NS)) | asi.F_SENS
        else:
            m, was = self._map(pfn, n, False)
            self.free_mapped -= was
            lat += m
        for b, _old in conv:
            c += self._region(b)
        lat += self._regions(pfn, n)
        if sens and k > 0:
            lat += self._shootdown(cpu, pfn, pfn + n)
        if c > 0:
            self.bursts.append((t, c, 2, 0))
        lat += c
        if not sens:
            self.ns_live.add(ident)
            self.c["touches"] += 1
        self.lat[ident] = lat
        self.c["alloc_ns"] += lat

    def _free(self, i, t):
        wl, pol = self.wl, self.cfg.policy
        ident = int(wl.ref[i])
        if self.lat[ident] < 0:
            return
        pfn, order = self.live[ident]
        n, sens, cpu = 1 << order, bool(wl.sens[i]), int(wl.cpu[i])
        self.c["frees"] += 1
        lat = self.k["free"]
        if pol == Policy.NONE:
            self.b.free_pages(pfn, order)
        elif sens:
            for p in range(pfn, pfn + n):
                self.flags[p] = (self.flags[p] & ~asi.F_SENS) | asi.F_DIRTY
            self.b.free_pages(pfn, order)
        else:
            self.ns_live.discard(ident)
            if pol == Policy.RFC:
                self.queue.append((pfn, order))
                for p in range(pfn, pfn + n):
                    self.flags[p] |= asi.F_QUEUED
                lat = self.k["enq"]
            elif pol == Policy.SYNC_FLUSH:
                u, k = self._unmap(pfn, n, True)
                s = self._shootdown(cpu, pfn, pfn + n)
                self.bursts.append((t, u + s, 3, k))
                lat += u + s
                self.b.free_pages(pfn, order)
            else:
                self.b.free_pages(pfn, order)
                self.free_mapped += n
        self.c["free_ns"] += lat

    def run(self):
        cfg = self.cfg
        for i in range(self.wl.kind.shape[0]):
            t = i * cfg.op_interval_ns
            (self._alloc if self.wl.kind[i] == 0 else self._free)(i, t)
            if cfg.policy != Policy.NONE:
                if self.ns_live:
                    self.c["touches"] += cfg.touches_per_op
                due = t >= self.next_worker
                qpages = sum(1 << o for _, o in self.queue)
                if cfg.policy == Policy.RFC and self.queue and (
                        due or qpages >= cfg.worker_batch_pages):
                    w, pages = self._drain(0)
                    self.c["worker_runs"] += 1
                    self.c["worker_ns"] += w
                    self.c["worker_pages"] += pages
                    self.bursts.append((t, w, 0, pages))
                    self.next_worker = t + cfg.worker_interval_ns
                elif cfg.policy == Policy.TRACKED_TARGET and due:
                    if self.free_mapped > cfg.target_free_mapped_pages:
                        w, pages = self._target(0)
                        self.c["worker_runs"] += 1
                        self.c["worker_ns"] += w
                        self.c["worker_pages"] += pages
                        self.bursts.append((t, w, 1, pages))
                    self.next_worker = t + cfg.worker_interval_ns
                elif due:
                    self.next_worker = t + cfg.worker_interval_ns
            if i % cfg.sample_every == 0:
                full = 1 << self.pb
                self.c["mixed_pageblock_sum"] += sum(1 for m in self.rmapped if 0 < m < full)
                self.c["samples"] += 1
        return self


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
                        tlb_ways=4, sample_every=7, method=method)
        for mix in ("mixed", "pathological"):
            wl = asi.make_workload(mix, 800, seed, 256, occupancy=occupancy, pressure=pressure,
                                   cpus=3)
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
            for k, v in r.counts.as_dict().items():
                total[k] = total.get(k, 0) + v
    # the streams reach each policy's own paths
    need = {Policy.RFC: ("reclaim_waits", "pointless_remaps", "worker_runs", "pages_zeroed",
                         "block_splits", "pt_allocs"),
            Policy.TRACKED: ("to_nonsensitive", "to_sensitive", "zeroed_on_conversion"),
            Policy.TRACKED_TARGET: ("target_conversions", "worker_runs", "to_nonsensitive"),
            Policy.SYNC_FLUSH: ("flushes", "pointless_remaps"),
            Policy.NONE: ("allocs",)}[policy]
    assert all(total[k] > 0 for k in need), {k: total[k] for k in need}
