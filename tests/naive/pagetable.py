"""Plain-Python twin of kmm.pagetable: one dict entry per mapped page.

Every page holds ``[pa, level, cont, perm, nid]`` of the leaf mapping it. Painting picks, page
position by page position, the largest unit (block, contiguous range, page) that is aligned
in VA and PA and fits before the end, as arch/arm64/mm/mmu.c does level by level. A split
rewrites the pages of the leaf (or contiguous range) holding the VA, one step at a time,
until the VA is on a leaf boundary. Tables are counted by listing, for every level k, the
``entry_bytes(k - 1)`` windows that hold a page whose leaf level is >= k.
"""
from __future__ import annotations

from collections import Counter

EINVAL, ENOMEM, EEXIST = 22, 12, 17


class NaivePageTable:
    def __init__(self, g):
        self.g = g
        self.P = g.page_bytes
        self.pages: dict[int, list[int]] = {}
        self.budget: int | None = None
        self.counts: Counter = Counter()

    # ---- geometry helpers ---------------------------------------------------------------
    def leaf(self, lv):
        return self.g.leaf_bytes(lv)

    def cont(self, lv):
        return self.g.cont_bytes(lv) if lv in self.g.leaf_levels else None

    def span(self, lv, c):
        return self.cont(lv) if c else self.leaf(lv)

    def units(self, policy, d):
        out = []
        for lv in self.g.leaf_levels:
            if lv < 3 and policy & 2:
                continue
            cb = self.cont(lv)
            if cb and not policy & 1:
                out.append((cb, lv, 1))
            out.append((self.leaf(lv), lv, 0))
        return [u for u in out if d % u[0] == 0]

    # ---- tables -------------------------------------------------------------------------
    def tables(self):
        g = self.g
        res = {g.start_level: g.concatenated}
        for k in range(g.start_level + 1, 4):
            S = g.entry_bytes(k - 1)
            res[k] = len({va // S for va, e in self.pages.items() if e[1] >= k})
        return res

    def table_total(self):
        t = self.tables()
        return sum(v for lv, v in t.items() if lv != self.g.start_level)

    def _alloc(self):
        if self.budget == 0:
            self.counts["alloc_failures"] += 1
            return False
        if self.budget is not None:
            self.budget -= 1
        self.counts["table_pages_allocated"] += 1
        return True

    # ---- operations ---------------------------------------------------------------------
    def map(self, va, size, pa, perm, policy=0, nid=0):
        end = va + size
        if any(p in self.pages for p in range(va, end, self.P)):
            return -EEXIST
        before = self.table_total()
        units = self.units(policy, pa - va)
        cur = va
        while cur < end:
            for u, lv, c in units:
                if cur % u == 0 and cur + u <= end:
                    for p in range(cur, cur + u, self.P):
                        self.pages[p] = [pa + (p - va), lv, c, perm, nid]
                    cur += u
                    break
        self.counts["table_pages_allocated"] += self.table_total() - before
        self.counts["maps"] += 1
        return 0

    def split(self, va, to_cont=True, _internal=False):
        if va not in self.pages:
            if not _internal:
                self.counts["einval"] += 1
            return -EINVAL
        self.counts["split_requests"] += 1
        entries = self.g.entries_per_table
        while True:
            _, lv, c, _, _ = self.pages[va]
            span = self.span(lv, c)
            gs = va // span * span
            if gs == va:
                return 0
            if c:
                self.counts["cont_splits"] += 1
                self.counts["descriptors_written"] += span // self.leaf(lv)
                for p in range(gs, gs + span, self.P):
                    self.pages[p][2] = 0
            else:
                if not self._alloc():
                    return -ENOMEM
                self.counts["block_splits"] += 1
                self.counts["descriptors_written"] += entries
                nl = lv + 1
                nc = 1 if (to_cont and self.cont(nl)) else 0
                for p in range(gs, gs + span, self.P):
                    self.pages[p][1] = nl
                    self.pages[p][2] = nc

    def _boundaries(self, lo, hi):
        for v in (lo, hi):
            if v in self.pages:
                r = self.split(v, True, _internal=True)
                if r == -ENOMEM:
                    return r
        return 0

    def set_perm(self, lo, hi, perm, mode=0):
        rng = range(lo, hi, self.P)
        if any(p not in self.pages for p in rng):
            self.counts["einval"] += 1
            return -EINVAL
        r = self._boundaries(lo, hi)
        if r:
            return r
        if mode == 1:
            trial = {p: list(e) for p, e in self.pages.items()}
            groups = set()
            for p in rng:
                lv, c = trial[p][1], trial[p][2]
                if c:
                    groups.add((lv, p // self.cont(lv)))
                trial[p][1], trial[p][2] = 3, 0
            saved, self.pages = self.pages, trial
            need = self.table_total()
            self.pages = saved
            need -= self.table_total()
            if self.budget is not None and need > self.budget:
                self.counts["alloc_failures"] += 1
                return -ENOMEM
            if self.budget is not None:
                self.budget -= need
            self.counts["table_pages_allocated"] += need
            self.counts["block_splits"] += need
            self.counts["descriptors_written"] += need * self.g.entries_per_table
            self.counts["cont_splits"] += len(groups)
            for p in rng:
                self.pages[p][1], self.pages[p][2] = 3, 0
        leaves = {(self.pages[p][1], p // self.leaf(self.pages[p][1])) for p in rng}
        self.counts["leaves_changed"] += len(leaves)
        self.counts["descriptors_written"] += len(leaves)
        for p in rng:
            self.pages[p][3] = perm
        self.counts["perm_changes"] += 1
        return 0

    def unmap(self, lo, hi):
        rng = range(lo, hi, self.P)
        if not any(p in self.pages for p in rng):
            self.counts["einval"] += 1
            return -EINVAL
        r = self._boundaries(lo, hi)
        if r:
            return r
        before = self.table_total()
        for p in rng:
            self.pages.pop(p, None)
        self.counts["table_pages_freed"] += before - self.table_total()
        self.counts["unmaps"] += 1
        return 0

    # ---- queries ------------------------------------------------------------------------
    def translate(self, va):
        e = self.pages.get(va // self.P * self.P)
        if e is None:
            return None
        return (e[0] + va % self.P, e[1], bool(e[2]), e[3], e[4])

    def extents(self):
        """Canonical runs: (va, size, pa, level, cont, perm, nid), maximal."""
        out = []
        for va in sorted(self.pages):
            pa, lv, c, perm, nid = self.pages[va]
            if out:
                s, size, spa, slv, sc, sperm, snid = out[-1]
                if (s + size == va and spa + size == pa
                        and (slv, sc, sperm, snid) == (lv, c, perm, nid)):
                    out[-1] = (s, size + self.P, spa, slv, sc, sperm, snid)
                    continue
            out.append((va, self.P, pa, lv, c, perm, nid))
        return out
