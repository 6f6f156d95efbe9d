"""Plain-Python twin of kmm.mech.asi.run_stream, over the buddy and invalidation twins.

Per-page flags are a list, live allocations and block owners dicts, the RFC queue a list;
the own-sensitivity fast path swaps the buddy twin's fallbacks lists for the call.
"""
from __future__ import annotations

from collections import defaultdict

from naive.buddy import MOVABLE, NaiveBuddy
from naive.invalidate import NaiveInvalidator

from kmm.invalidate import InvalidationConfig, Method
from kmm.mech import asi
from kmm.mech.asi import Conversion, FlushRank, Physmap, Policy, Zeroing

F_MAPPED, F_DIRTY, F_SENS = asi.F_MAPPED, asi.F_DIRTY, asi.F_SENS
F_UNMAPPED_NS, F_QUEUED, F_ZERO_DEFERRED = asi.F_UNMAPPED_NS, asi.F_QUEUED, asi.F_ZERO_DEFERRED


class NaiveAsi:
    def __init__(self, cfg, wl):
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
                  "enq": round(k.enqueue_ns), "wake": round(k.worker_wake_ns),
                  "migrate": round(k.migrate_page_ns * scale),
                  "reclaim": round(k.reclaim_page_ns)}
        self.c = {e.name.lower(): 0 for e in asi.AsiEvent}
        nup = len(self.upper)
        self.c["pt_pages_boot"] = {Physmap.SYNCED: npb + nup, Physmap.SYNCED_BLOCKS: nup}.get(
            cfg.physmap, 0) if cfg.policy != Policy.NONE else 0
        self.tracked = cfg.policy in (Policy.TRACKED, Policy.TRACKED_TARGET)
        self.unmapped = cfg.policy == Policy.UNMAPPED
        self.k["local_flush"] = round(cfg.inval_costs.full_flush_ns)
        self.mermap = [0] * cfg.cpus  # next page of each CPU's mermap region
        self.bcast = cfg.method == Method.ARM64_TLBI
        if cfg.boot_mapped:  # policy 5: the direct map starts with every page present
            self.flags = [F_MAPPED] * self.n
            self.rmapped = [1 << self.pb] * npb
            self.region = [2 if cfg.physmap == Physmap.SYNCED_BLOCKS else 1] * npb
            self.upper = [1] * len(self.upper)
            if cfg.physmap == Physmap.ON_DEMAND:
                self.c["pt_pages_boot"] = npb + nup
        self.rank = cfg.flush_rank
        self.lazy = cfg.zeroing == Zeroing.LAZY
        self.posted = self.tracked and cfg.conversion == Conversion.POSTED
        self.init = cfg.init_on_alloc
        # sensitive types keep only their own-sensitivity fallbacks
        self.own_fb = [[f for f in fb if f < 3] if mt < 3 else list(fb)
                       for mt, fb in enumerate(self.b.fallbacks)]
        self.queue, self.lat, self.bursts = [], {}, []
        self.live = {}    # id -> (pfn, order) while allocated
        self.kind = {}    # id -> (sensitive, reclaimable)
        self.owner = {}   # head pfn -> id
        self.ns_live = set()
        self.free_mapped = self.n if cfg.boot_mapped else 0
        self.next_worker = cfg.worker_interval_ns
        self.lru = 0
        self.maxid = 0
        self.unmapped_now = 0
        self.now = 0
        # (window, cpu, "handler" | "worker" | "full") -> what AsiRun.cpu_win holds
        self.win = defaultdict(int)

    # ---- restricted physmap ----------------------------------------------------------------
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

    def _map(self, pfn, n, upd, at_alloc=False):
        ns = was = 0
        for p in range(pfn, pfn + n):
            f = self.flags[p]
            if f & F_MAPPED:
                was += 1
                continue
            if f & F_DIRTY:
                if at_alloc and self.init:
                    self.c["zero_by_init"] += 1
                else:
                    ns += self.k["zero"]
                    self.c["pages_zeroed"] += 1
                    self.c["zero_ns"] += self.k["zero"]
                if f & F_ZERO_DEFERRED:
                    self.c["zeroed_deferred"] += 1
                f &= ~(F_DIRTY | F_ZERO_DEFERRED)
            if f & F_UNMAPPED_NS:
                self.c["pointless_remaps"] += 1
                f &= ~F_UNMAPPED_NS
            self.flags[p] = f | F_MAPPED
            ns += self.k["map"]
            self.c["map_ns"] += self.k["map"]
            self.c["pages_mapped"] += 1
            self.rmapped[p >> self.pb] += 1
        if upd:
            ns += self._regions(pfn, n)
        return ns, was

    def _map_clean(self, pfn, n):
        ns = was = deferred = 0
        for p in range(pfn, pfn + n):
            f = self.flags[p]
            if f & F_MAPPED:
                was += 1
            elif f & F_DIRTY:
                if not f & F_ZERO_DEFERRED:
                    self.flags[p] = f | F_ZERO_DEFERRED
                    self.c["zero_deferred"] += 1
                deferred += 1
            else:
                ns += self._map(p, 1, False)[0]
        return ns, was, deferred

    def _mark_sensitive(self, pfn, n):
        for p in range(pfn, pfn + n):
            if self.flags[p] & F_ZERO_DEFERRED:
                self.c["deferred_to_sensitive"] += 1
            self.flags[p] = (self.flags[p] & ~(F_DIRTY | F_UNMAPPED_NS | F_ZERO_DEFERRED)) | F_SENS

    def _unmap(self, pfn, n, upd):
        k = 0
        for p in range(pfn, pfn + n):
            f = self.flags[p]
            if not f & F_MAPPED:
                continue
            f &= ~F_MAPPED
            if not f & (F_DIRTY | F_SENS):
                f |= F_UNMAPPED_NS
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
        c0 = dict(self.inv.c)
        ns = self.inv.flush(cpu, lo << self.sh, hi << self.sh, self.sh, -1, 0, kernel=True)
        w = self.now // asi.JITTER_WINDOW_NS
        ipis = self.inv.c["ipis"] - c0["ipis"]
        for c in range(self.cfg.cpus):
            if c != cpu and ipis:
                self.win[(w, c, "handler")] += (self.inv.c["target_ns"] - c0["target_ns"]) // ipis
            if self.inv.c["full_flushes"] > c0["full_flushes"]:
                self.win[(w, c, "full")] += 1
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

    # ---- workers and conversions -------------------------------------------------------------
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
                self.flags[p] &= ~F_QUEUED
            self.b.free_pages(pfn, o)
            ns += self.k["free"]
        self.queue = []
        return ns, pages

    def _free_blocks(self, base, end, unmap):
        ns = 0
        for p, n in list(self._heads(base, end)):
            if unmap:
                u, k = self._unmap(p, n, False)
                self.free_mapped -= k
                self.unmapped_now += k
                ns += u
                for q in range(p, p + n):
                    if self.flags[q] & F_ZERO_DEFERRED:
                        self.c["deferred_dropped"] += 1
                        self.flags[q] &= ~F_ZERO_DEFERRED
            elif self.lazy:
                m, was, deferred = self._map_clean(p, n)
                self.free_mapped += n - was - deferred
                ns += m
            else:
                z0 = self.c["pages_zeroed"]
                m, was = self._map(p, n, False)
                self.c["zeroed_on_conversion"] += self.c["pages_zeroed"] - z0
                self.free_mapped += n - was
                ns += m
        return ns

    def _target(self, cpu):
        ns, lo, hi, pages = self.k["wake"], self.n, -1, 0
        while self.free_mapped > self.cfg.target_free_mapped_pages:
            best, best_k = -1, 0
            for b in range(len(self.b.pb)):
                if self.b.pb[b] >= 3:
                    k = sum(1 for p, n in self._heads(b << self.pb, (b + 1) << self.pb)
                            for q in range(p, p + n) if self.flags[q] & F_MAPPED)
                    if k > best_k:
                        best, best_k = b, k
            if best < 0:
                break
            self.b.convert_pageblock(best, self.b.pb[best] - 3)
            self.c["target_conversions"] += 1
            base, end = best << self.pb, (best + 1) << self.pb
            self.unmapped_now = 0
            ns += self._free_blocks(base, end, True)
            pages += self.unmapped_now
            ns += self._region(best)
            lo, hi = min(lo, base), max(hi, end)
        if hi > lo:
            ns += self._shootdown(cpu, lo, hi)
        return ns, pages

    def _convert(self, conv):
        ns, lo, hi = 0, self.n, -1
        for b, old in conv:
            new = self.b.pb[b]
            if (old >= 3) == (new >= 3):
                continue
            base, end = b << self.pb, (b + 1) << self.pb
            self.unmapped_now = 0
            ns += self._free_blocks(base, end, new < 3)
            if new < 3:
                self.c["to_sensitive"] += 1
                if self.unmapped_now:
                    lo, hi = min(lo, base), max(hi, end)
            else:
                self.c["to_nonsensitive"] += 1
        return ns, lo, hi

    # ---- the slow path of sensitive allocations ------------------------------------------------
    def _own_alloc(self, order, mt, min_order=None):
        """Own-sensitivity allocation: both ALLOC_NOFRAGMENT passes, or with ``min_order``
        one pass with that fallback floor."""
        full = self.b.fallbacks
        self.b.fallbacks = self.own_fb
        try:
            if min_order is None:
                return self.b.alloc_pages(order, mt)
            return self.b.alloc_min(order, mt, min_order)
        finally:
            self.b.fallbacks = full

    def _claim_sensitive(self, cpu, pfn, n):
        u, k = self._unmap(pfn, n, True)
        self.free_mapped -= k
        self._mark_sensitive(pfn, n)
        if k:
            u += self._shootdown(cpu, pfn, pfn + n)
        return u

    def _compactable(self, s, size):
        m, p, end = 0, s, s + size
        while p < end:
            if p in self.b.free:
                p += 1 << self.b.free[p][0]
                continue
            if p not in self.b.alloc:
                return -1
            a, mt = self.b.alloc[p]
            n = 1 << a
            if (p + n > end or not self.flags[p] & F_SENS or mt is None
                    or self.b.mobility[mt] != MOVABLE or p not in self.owner):
                return -1
            m += n
            p += n
        return m

    def _compact(self, order, cpu):
        self.c["compactions"] += 1
        size = 1 << order
        best, best_m = -1, size + 1
        for b in range(len(self.b.pb)):
            if self.b.pb[b] >= 3:
                continue
            for s in range(b << self.pb, (b + 1) << self.pb, size):
                m = self._compactable(s, size)
                if 0 <= m < best_m:
                    best, best_m = s, m
            if best_m == 0:
                break
        if best < 0:
            return 0, False
        b = best >> self.pb
        old = self.b.pb[b]
        self.b.convert_pageblock(b, asi.MT_ISOLATE)
        ns = moved = 0
        ok = True
        p = best
        while p < best + size:
            if p not in self.b.alloc:
                p += 1
                continue
            a, mt = self.b.alloc[p]
            n = 1 << a
            dst = self._own_alloc(a, mt)
            if dst < 0:
                ok = False
                break
            ident = self.owner.pop(p)
            ns += self._claim_sensitive(cpu, dst, n)
            for q in range(p, p + n):
                self.flags[q] = (self.flags[q] & ~F_SENS) | F_DIRTY
            self.owner[dst] = ident
            self.live[ident] = (dst, a)
            self.b.free_pages(p, a)
            moved += n
            p += n
        self.b.convert_pageblock(b, old)
        self.c["pages_migrated"] += moved
        self.c["migrate_ns"] += moved * self.k["migrate"]
        return ns + moved * self.k["migrate"], ok

    def _reclaim(self, cpu, t):
        self.c["direct_reclaims"] += 1
        pages = 0
        while pages < self.cfg.reclaim_batch_pages and self.lru < self.maxid:
            c = self.lru
            if c in self.live and self.kind[c][1]:
                pages += 1 << self.live[c][1]
                self._release(c, self.kind[c][0], cpu, t)
            self.lru += 1
        ns = pages * self.k["reclaim"]
        self.c["pages_reclaimed"] += pages
        self.c["direct_reclaim_ns"] += ns
        return ns, pages

    def _asi_unmap(self, order, mt, cpu):
        """__rmqueue_asi_unmap: a whole free nonsensitive block, unmapped, shot down,
        retyped, its remainder freed."""
        big = max(order, self.pb)
        full = self.b.fallbacks
        self.b.fallbacks = [[] for _ in full]
        try:
            pfn = self.b.alloc_pages(big, 3)
        finally:
            self.b.fallbacks = full
        if pfn < 0:
            return -1, 0
        n = 1 << big
        ns, k = self._unmap(pfn, n, False)
        self.free_mapped -= k
        for q in range(pfn, pfn + n):
            if self.flags[q] & F_ZERO_DEFERRED:
                self.c["deferred_dropped"] += 1
                self.flags[q] &= ~F_ZERO_DEFERRED
        if k:
            ns += self._shootdown(cpu, pfn, pfn + n)
        for b in range(pfn >> self.pb, (pfn + n) >> self.pb):
            self.b.convert_pageblock(b, mt)
            self.c["to_sensitive"] += 1
            ns += self._region(b)
        self.b.split_allocated(pfn, big, order)
        self.c["asi_unmap_allocs"] += 1
        return pfn, ns

    def _mermap_pages(self, cpu, n):
        """n pages through CPU ``cpu``'s mermap region: a PTE store and clear each, and a
        flush whenever the next page would pass the region's last usable page."""
        ns = 0
        usable = self.cfg.mermap_region_pages - 1
        pte = self.k["map"] + self.k["unmap"]
        for _ in range(n):
            if self.mermap[cpu] + 1 > usable:
                self.c["mermap_flushes"] += 1
                if self.bcast:
                    r = self.cfg.mermap_region_pages
                    f = self._shootdown(cpu, self.n + cpu * r, self.n + (cpu + 1) * r)
                else:
                    f = self.k["local_flush"]
                    self.win[(self.now // asi.JITTER_WINDOW_NS, cpu, "local")] += 1
                self.c["mermap_ns"] += f
                ns += f
                self.mermap[cpu] = 0
            self.mermap[cpu] += 1
            ns += pte
            self.c["mermap_ns"] += pte
        self.c["mermap_pages"] += n
        return ns

    def _direct_map(self, order, mt, cpu):
        """__rmqueue_direct_map: a whole free block of the other flags (its freetype, then
        that freetype's fallbacks), unmapped and shot down or zeroed (through the mermap)
        and mapped, retyped, its remainder freed."""
        big = max(order, self.pb)
        want_mapped = mt >= 3
        other = mt - 3 if want_mapped else mt + 3
        full = self.b.fallbacks
        self.b.fallbacks = [[] for _ in full]
        try:
            pfn = -1
            for f in [other] + list(full[other]):
                pfn = self.b.alloc_pages(big, f)
                if pfn >= 0:
                    break
        finally:
            self.b.fallbacks = full
        if pfn < 0:
            return -1, 0
        n = 1 << big
        ns = 0
        if want_mapped:
            dirty = 0
            for q in range(pfn, pfn + n):
                if self.flags[q] & F_DIRTY:
                    dirty += 1
                    if self.flags[q] & F_ZERO_DEFERRED:
                        self.c["zeroed_deferred"] += 1
                    self.flags[q] &= ~(F_DIRTY | F_ZERO_DEFERRED)
            if dirty:
                ns += dirty * self.k["zero"] + self._mermap_pages(cpu, dirty)
                self.c["pages_zeroed"] += dirty
                self.c["zero_ns"] += dirty * self.k["zero"]
                self.c["zeroed_on_conversion"] += dirty
            m, was = self._map(pfn, n, False)
            ns += m
            self.free_mapped += n - was
            self.c["direct_map_maps"] += 1
        else:
            u, k = self._unmap(pfn, n, False)
            ns += u
            self.free_mapped -= k
            if k:
                ns += self._shootdown(cpu, pfn, pfn + n)
            self.c["asi_unmap_allocs"] += 1
        for b in range(pfn >> self.pb, (pfn + n) >> self.pb):
            self.b.convert_pageblock(b, mt)
            self.c["to_nonsensitive" if want_mapped else "to_sensitive"] += 1
            ns += self._region(b)
        self.b.split_allocated(pfn, big, order)
        return pfn, ns

    def _slowpath(self, order, mt, cpu, t):
        self.c["slowpath_entries"] += 1
        steps = {FlushRank.FIRST: ("flush", "compact", "reclaim"),
                 FlushRank.AFTER_COMPACTION: ("compact", "flush", "reclaim"),
                 FlushRank.AFTER_RECLAIM: ("compact", "reclaim", "flush")}[self.rank]
        ns = 0
        for step in steps:
            if step == "flush":
                if self.posted:
                    pfn, c = self._asi_unmap(order, mt, cpu)
                    ns += c
                else:
                    pfn = self.b.alloc_min(order, mt, order)
                if pfn >= 0:
                    self.c["slow_flush_allocs"] += 1
                    return pfn, ns
            elif step == "compact":
                if not 1 <= order <= self.pb:
                    continue
                c, ok = self._compact(order, cpu)
                ns += c
                if c > 0:
                    self.bursts.append((t, c, int(asi.BurstSource.COMPACTION), 0))
                if ok:
                    pfn = self._own_alloc(order, mt, order)
                    if pfn >= 0:
                        self.c["compact_allocs"] += 1
                        return pfn, ns
            else:
                rns = rpages = 0
                pfn = -1
                for _ in range(asi.MAX_RECLAIM_RETRIES):
                    c, pages = self._reclaim(cpu, t)
                    if pages == 0:
                        break
                    rns += c
                    rpages += pages
                    pfn = self._own_alloc(order, mt, order)
                    if pfn >= 0:
                        break
                if rpages:
                    self.bursts.append((t, rns, int(asi.BurstSource.DIRECT_RECLAIM), rpages))
                ns += rns
                if pfn >= 0:
                    return pfn, ns
        return -1, ns

    # ---- operations -----------------------------------------------------------------------------
    def _alloc(self, i, t):
        wl, pol = self.wl, self.cfg.policy
        ident, order, sens = int(wl.ref[i]), int(wl.order[i]), bool(wl.sens[i])
        cpu, mt = int(wl.cpu[i]), int(wl.mob[i]) + (3 if self.tracked and not sens else 0)
        if self.posted and not sens:
            mt = 3
        if self.unmapped and not sens:
            mt = mt + 3 if self.cfg.unmapped_movable else 3
        lat = self.k["alloc"]
        self.maxid = max(self.maxid, ident + 1)
        unmap_ns = 0
        u0 = self.c["asi_unmap_allocs"]
        if self.unmapped:
            nofrag = self.cfg.nofragment
            pfn = self.b.alloc_min(order, mt, self.pb if nofrag else order)
            if pfn < 0:
                pfn, unmap_ns = self._direct_map(order, mt, cpu)
            if pfn < 0 and nofrag:
                pfn = self.b.alloc_min(order, mt, order)
        elif self.tracked and sens and self.rank != FlushRank.FAST_PATH:
            pfn = self._own_alloc(order, mt)
            if pfn < 0:
                pfn, s = self._slowpath(order, mt, cpu, t)
                lat += s
        elif self.posted and sens:
            nofrag = self.cfg.nofragment
            pfn = self._own_alloc(order, mt, self.pb if nofrag else order)
            if pfn < 0:
                pfn, unmap_ns = self._asi_unmap(order, mt, cpu)
            if pfn < 0 and nofrag:
                pfn = self._own_alloc(order, mt, order)
        elif self.posted:
            pfn = self.b.alloc_min(order, mt, self.pb)
        else:
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
        self.kind[ident] = (sens, bool(wl.reclaim[i]))
        self.owner[pfn] = ident
        if self.init:
            lat += n * self.k["zero"]
            self.c["init_zeroed"] += n
            self.c["init_zero_ns"] += n * self.k["zero"]
            if self.unmapped and sens:
                lat += self._mermap_pages(cpu, n)
        if pol == Policy.NONE:
            self.lat[ident] = lat
            self.c["alloc_ns"] += lat
            return
        conv = (list(self.b.conversions)
                if self.tracked and self.c["asi_unmap_allocs"] == u0 else [])
        c, lo, hi = self._convert(conv) if conv else (0, self.n, -1)
        c += unmap_ns
        k = 0
        if sens:
            u, k = self._unmap(pfn, n, False)
            self.free_mapped -= k
            lat += u
            self._mark_sensitive(pfn, n)
        else:
            m, was = self._map(pfn, n, False, at_alloc=True)
            self.free_mapped -= was
            lat += m
        for b, _old in conv:
            c += self._region(b)
        lat += self._regions(pfn, n)
        if hi > lo:
            if k:
                lo, hi = min(lo, pfn), max(hi, pfn + n)
            c += self._shootdown(cpu, lo, hi)
        elif k:
            lat += self._shootdown(cpu, pfn, pfn + n)
        if c > 0:
            self.bursts.append((t, c, 2, 0))
        lat += c
        if not sens:
            self.ns_live.add(ident)
            self.c["touches"] += 1
        self.lat[ident] = lat
        self.c["alloc_ns"] += lat

    def _release(self, ident, sens, cpu, t):
        pol = self.cfg.policy
        pfn, order = self.live.pop(ident)
        del self.owner[pfn]
        n = 1 << order
        lat = self.k["free"]
        if pol == Policy.NONE:
            self.b.free_pages(pfn, order)
        elif sens:
            for p in range(pfn, pfn + n):
                self.flags[p] = (self.flags[p] & ~F_SENS) | F_DIRTY
            self.b.free_pages(pfn, order)
        else:
            self.ns_live.discard(ident)
            if pol == Policy.RFC:
                self.queue.append((pfn, order))
                for p in range(pfn, pfn + n):
                    self.flags[p] |= F_QUEUED
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
        return lat

    def _free(self, i, t):
        wl = self.wl
        ident = int(wl.ref[i])
        if self.lat[ident] < 0:
            return
        if ident not in self.live:
            self.c["reclaimed_frees"] += 1
            return
        self.c["frees"] += 1
        self.c["free_ns"] += self._release(ident, bool(wl.sens[i]), int(wl.cpu[i]), t)

    def run(self):
        cfg = self.cfg
        for i in range(self.wl.kind.shape[0]):
            t = i * cfg.op_interval_ns
            self.now = t
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
                    self.win[(t // asi.JITTER_WINDOW_NS, 0, "worker")] += w
                    self.bursts.append((t, w, 0, pages))
                    self.next_worker = t + cfg.worker_interval_ns
                elif cfg.policy == Policy.TRACKED_TARGET and due:
                    if self.free_mapped > cfg.target_free_mapped_pages:
                        w, pages = self._target(0)
                        self.c["worker_runs"] += 1
                        self.c["worker_ns"] += w
                        self.c["worker_pages"] += pages
                        self.win[(t // asi.JITTER_WINDOW_NS, 0, "worker")] += w
                        self.bursts.append((t, w, 1, pages))
                    self.next_worker = t + cfg.worker_interval_ns
                elif due:
                    self.next_worker = t + cfg.worker_interval_ns
            self.c["free_mapped_peak"] = max(self.c["free_mapped_peak"], self.free_mapped)
            if i % cfg.sample_every == 0:
                full = 1 << self.pb
                self.c["mixed_pageblock_sum"] += sum(1 for m in self.rmapped if 0 < m < full)
                self.c["samples"] += 1
        return self

    def cpu_win(self, shape):
        """The handler, worker, full-flush and local-flush columns of ``AsiRun.cpu_win`` (``shape``:
        windows, cpus), the last window taking any later time as the kernel does."""
        import numpy as np
        out = np.zeros(shape + (4,), np.int64)
        col = {"handler": 0, "worker": 1, "full": 2, "local": 3}
        for (w, c, k), v in self.win.items():
            out[min(w, shape[0] - 1), c, col[k]] += v
        return out
