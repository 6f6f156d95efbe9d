"""Plain-Python twin of kmm.buddy: the same mm/page_alloc.c rules with dicts and lists.

Free lists are Python lists whose index 0 is the list head; pages are dict entries. Nothing
here is shared with the kernels except the configuration object.
"""
from __future__ import annotations

UNMOVABLE, MOVABLE, RECLAIMABLE = 0, 1, 2


class NaiveBuddy:
    def __init__(self, config):
        self.n = config.pool_pages
        self.max_order = config.max_order
        self.pb_order = config.pageblock_order
        self.nt = config.table.n_types
        self.fallbacks = [list(f) for f in config.table.fallbacks]
        self.mobility = list(config.table.mobility)
        self.mergeable = list(config.table.mergeable)
        self.nofragment = config.nofragment
        self.lists = {(o, t): [] for o in range(self.max_order + 1) for t in range(self.nt)}
        self.free = {}    # head pfn -> (order, list type)
        self.alloc = {}   # head pfn -> (order, requested type)
        self.pb = [config.initial_type] * (self.n >> self.pb_order)
        self.c = {k: 0 for k in ("allocs", "alloc_pages", "frees", "free_pages", "failures",
                                 "splits", "merges", "merge_blocked", "fallbacks", "steal_single",
                                 "block_claims", "pageblock_conversions", "free_pages_moved")}
        self.conversions = []
        start = 0
        while start < self.n:
            order = self.max_order
            while order > 0 and start % (1 << order):
                order -= 1
            while start + (1 << order) > self.n:
                order -= 1
            self._add(start, order, self.pb[start >> self.pb_order], tail=True)
            start += 1 << order

    # lists
    def _add(self, pfn, order, mt, tail=False):
        lst = self.lists[(order, mt)]
        if tail:
            lst.append(pfn)
        else:
            lst.insert(0, pfn)
        self.free[pfn] = (order, mt)

    def _del(self, pfn):
        order, mt = self.free.pop(pfn)
        self.lists[(order, mt)].remove(pfn)

    def _set_pb(self, pb, mt):
        if self.pb[pb] != mt:
            self.conversions.append((pb, self.pb[pb]))
            self.pb[pb] = mt
            self.c["pageblock_conversions"] += 1

    # allocation
    def _smallest(self, order, mt):
        for cur in range(order, self.max_order + 1):
            lst = self.lists[(cur, mt)]
            if lst:
                pfn = lst[0]
                self._del(pfn)
                while cur > order:
                    cur -= 1
                    self._add(pfn + (1 << cur), cur, mt)
                    self.c["splits"] += 1
                return pfn
        return None

    def _can_steal(self, order, start):
        if order >= self.pb_order:
            return True
        return order >= self.pb_order // 2 or self.mobility[start] in (UNMOVABLE, RECLAIMABLE)

    def _suitable(self, order, start):
        for f in self.fallbacks[start]:
            if self.lists[(order, f)]:
                return f, self._can_steal(order, start)
        return None, False

    def _steal(self, pfn, start, whole):
        cur = self.free[pfn][0]
        pb = pfn >> self.pb_order
        old = self.pb[pb]
        if cur >= self.pb_order:
            for b in range(pb, (pfn + (1 << cur)) >> self.pb_order):
                self._set_pb(b, start)
        elif whole:
            base = pb << self.pb_order
            free_pages = movable = 0
            for p in range(base, base + (1 << self.pb_order)):
                if p in self.free:
                    o = self.free[p][0]
                    self._del(p)
                    self._add(p, o, start)
                    free_pages += 1 << o
            for p, (o, t) in self.alloc.items():
                if (base <= p < base + (1 << self.pb_order) and t is not None
                        and self.mobility[t] == MOVABLE):
                    movable += 1 << o
            self.c["free_pages_moved"] += free_pages
            if self.mobility[start] == MOVABLE:
                alike = movable
            elif self.mobility[old] == MOVABLE:
                alike = (1 << self.pb_order) - free_pages - movable
            else:
                alike = 0
            if free_pages + alike >= 1 << (self.pb_order - 1):
                if old != start:
                    self.c["block_claims"] += 1
                self._set_pb(pb, start)
            return
        else:
            self.c["steal_single"] += 1
        self._del(pfn)
        self._add(pfn, cur, start)

    def _fallback(self, order, start, min_order):
        found = None
        for cur in range(self.max_order, min_order - 1, -1):
            f, can = self._suitable(cur, start)
            if f is not None:
                found = cur
                break
        if found is None:
            return False
        if not can and self.mobility[start] == MOVABLE and found > order:
            for cur in range(order, self.max_order + 1):
                f, can = self._suitable(cur, start)
                if f is not None:
                    found = cur
                    break
        self._steal(self.lists[(found, f)][0], start, can)
        self.c["fallbacks"] += 1
        return True

    def _rmqueue(self, order, mt, min_order):
        pfn = self._smallest(order, mt)
        while pfn is None:
            if not self._fallback(order, mt, min_order):
                return None
            pfn = self._smallest(order, mt)
        return pfn

    def take(self, order, mt):
        pfn = None
        if self.nofragment and order < self.pb_order:
            pfn = self._rmqueue(order, mt, self.pb_order)
        if pfn is None:
            pfn = self._rmqueue(order, mt, order)
        if pfn is None:
            return -1
        self.alloc[pfn] = (order, mt)
        self.c["allocs"] += 1
        self.c["alloc_pages"] += 1 << order
        return pfn

    def alloc_pages(self, order, mt):
        self.conversions = []
        pfn = self.take(order, mt)
        if pfn < 0:
            self.c["failures"] += 1
        return pfn

    def alloc_min(self, order, mt, min_order):
        self.conversions = []
        pfn = self._rmqueue(order, mt, max(order, min_order))
        if pfn is None:
            self.c["failures"] += 1
            return -1
        self.alloc[pfn] = (order, mt)
        self.c["allocs"] += 1
        self.c["alloc_pages"] += 1 << order
        return pfn

    def split_allocated(self, pfn, order, keep):
        if self.alloc.get(pfn, (None,))[0] != order or keep > order:
            return False
        self.alloc[pfn] = (keep, self.alloc[pfn][1])
        for i in range(keep, order):
            q = pfn + (1 << i)
            self._merge(q, i, self.pb[q >> self.pb_order])
        self.c["alloc_pages"] -= (1 << order) - (1 << keep)
        return True

    def convert_pageblock(self, pb, mt):
        self.conversions = []
        base = pb << self.pb_order
        moved = 0
        p = base
        while p < base + (1 << self.pb_order):
            if p in self.free:
                o = self.free[p][0]
                self._del(p)
                self._add(p, o, mt)
                moved += 1 << o
                p += 1 << o
            elif p in self.alloc:
                p += 1 << self.alloc[p][0]
            else:
                p += 1
        self.c["free_pages_moved"] += moved
        old = self.pb[pb]
        self._set_pb(pb, mt)
        if not self.mergeable[old] and self.mergeable[mt] and base in self.free \
                and self.free[base][0] >= self.pb_order:
            order = self.free[base][0]
            self._del(base)
            self._merge(base, order, mt)
        return moved

    # free
    def _is_buddy(self, b, order):
        return b < self.n and b in self.free and self.free[b][0] == order

    def free_pages(self, pfn, order):
        if self.alloc.get(pfn, (None,))[0] != order:
            return False
        del self.alloc[pfn]
        self.free_one(pfn, order, self.pb[pfn >> self.pb_order])
        return True

    def free_one(self, pfn, order, mt):
        self.c["frees"] += 1
        self.c["free_pages"] += 1 << order
        self._merge(pfn, order, mt)

    def _merge(self, pfn, order, mt):
        while order < self.max_order:
            b = pfn ^ (1 << order)
            if not self._is_buddy(b, order):
                break
            if order >= self.pb_order:
                bmt = self.pb[b >> self.pb_order]
                if mt != bmt and not (self.mergeable[mt] and self.mergeable[bmt]):
                    self.c["merge_blocked"] += 1
                    break
            self._del(b)
            self.c["merges"] += 1
            pfn = min(pfn, b)
            order += 1
        tail = False
        if order < self.max_order - 1:
            parent = pfn & ~(1 << order)
            tail = self._is_buddy(parent ^ (1 << (order + 1)), order + 1)
        self._add(pfn, order, mt, tail)

    def replay(self, kind, a, b):
        live = []
        out = []
        for k, x, y in zip(kind, a, b):
            if k == 0:
                pfn = self.alloc_pages(int(x), int(y))
                out.append(pfn)
                if pfn >= 0:
                    live.append((pfn, int(x)))
            else:
                if not live:
                    out.append(-1)
                    continue
                j = int(x) % len(live)
                pfn, order = live[j]
                self.free_pages(pfn, order)
                out.append(pfn)
                live[j] = live[-1]
                live.pop()
        return out, live

    def free_blocks(self):
        return [(p, o, t) for o in range(self.max_order + 1) for t in range(self.nt)
                for p in self.lists[(o, t)]]


COSTLY = 3


class NaivePcp:
    """Per-CPU page lists over a NaiveBuddy: lists are Python lists, index 0 the head."""

    def __init__(self, buddy, config):
        self.b = buddy
        self.cpus, self.batch, self.high = config.cpus, config.batch, config.high
        self.nt = buddy.nt
        self.nl = self.nt * (COSTLY + 1) + 1
        self.lists = [[[] for _ in range(self.nl)] for _ in range(self.cpus)]
        self.pmt = {}
        self.count = [0] * self.cpus
        self.ff = [0] * self.cpus
        self.c = {k: 0 for k in ("allocs", "refills", "refill_pages", "frees", "drains",
                                 "drained_pages", "failures")}

    def allowed(self, order):
        return order <= COSTLY or order == self.b.pb_order

    def pindex(self, mt, order):
        return self.nt * (COSTLY + 1) if order > COSTLY else order * self.nt + mt

    def porder(self, li):
        return self.b.pb_order if li >= self.nt * (COSTLY + 1) else li // self.nt

    def alloc(self, cpu, order, mt):
        if not self.allowed(order):
            return self.b.alloc_pages(order, mt)
        self.b.conversions = []
        self.ff[cpu] >>= 1
        lst = self.lists[cpu][self.pindex(mt, order)]
        if not lst:
            batch = max(self.batch >> order, 2) if self.batch > 1 else self.batch
            n = 0
            for _ in range(batch):
                pfn = self.b.take(order, mt)
                if pfn < 0:
                    break
                self.b.alloc[pfn] = (order, None)
                self.pmt[pfn] = mt
                lst.append(pfn)
                n += 1
            self.c["refills"] += 1
            self.c["refill_pages"] += n << order
            self.count[cpu] += n << order
            if not lst:
                self.c["failures"] += 1
                return -1
        pfn = lst.pop(0)
        self.count[cpu] -= 1 << order
        del self.pmt[pfn]
        self.b.alloc[pfn] = (order, mt)
        self.c["allocs"] += 1
        return pfn

    def _bulk(self, cpu, count, pindex):
        count = min(self.count[cpu], count)
        li = pindex - 1
        self.c["drains"] += 1
        while count > 0:
            while True:
                li = (li + 1) % self.nl
                if self.lists[cpu][li]:
                    break
            lst = self.lists[cpu][li]
            order = self.porder(li)
            while True:
                pfn = lst.pop()
                mt = self.pmt.pop(pfn)
                count -= 1 << order
                self.count[cpu] -= 1 << order
                self.c["drained_pages"] += 1 << order
                del self.b.alloc[pfn]
                self.b.free_one(pfn, order, mt)
                if count <= 0 or not lst:
                    break

    def free(self, cpu, pfn, order):
        if not self.allowed(order):
            return self.b.free_pages(pfn, order)
        if self.b.alloc.get(pfn, (None, None)) [0] != order or self.b.alloc[pfn][1] is None:
            return False
        mt = self.b.pb[pfn >> self.b.pb_order]
        self.b.alloc[pfn] = (order, None)
        li = self.pindex(mt, order)
        self.lists[cpu][li].insert(0, pfn)
        self.pmt[pfn] = mt
        self.count[cpu] += 1 << order
        self.c["frees"] += 1
        free_high = self.ff[cpu] > 0 and 0 < order <= COSTLY
        high = 0 if free_high else self.high
        if self.count[cpu] >= high:
            if free_high:
                nr = self.count[cpu]
            elif high < self.batch:
                nr = 1
            else:
                hi = high - self.batch
                b = self.batch << self.ff[cpu]
                if b < hi:
                    self.ff[cpu] += 1
                nr = min(max(b, self.batch), hi)
            self._bulk(cpu, nr, li)
        return True

    def drain(self, cpu):
        if self.count[cpu] > 0:
            self._bulk(cpu, self.count[cpu], 0)

    def replay(self, ops):
        live, out = [], []
        for kind, a, b, cpu in ops:
            if kind == 0:
                pfn = self.alloc(cpu, a, b)
                out.append(pfn)
                if pfn >= 0:
                    live.append((pfn, a))
            else:
                if not live:
                    out.append(-1)
                    continue
                j = a % len(live)
                pfn, order = live[j]
                self.free(cpu, pfn, order)
                out.append(pfn)
                live[j] = live[-1]
                live.pop()
        return out, live
