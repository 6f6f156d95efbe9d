"""Plain-Python twin of kmm.tlb: each set is a list of ways holding dicts, recency is a list.

Reads only the configuration dataclasses of kmm.tlb (never its kernels or state arrays).
"""
from __future__ import annotations

import numpy as np

from .policy import Policy


class NaiveTLB:
    """The same hierarchy as ``kmm.tlb.TLB(config)``, one Python object per entry."""

    def __init__(self, config, walk_probe_shifts=None):
        self.config = config
        walk_probe_shifts = walk_probe_shifts or {}
        self.structs = {}
        for s, lv in config.levels().items():
            name = s.name
            if name in ("WALK", "S2WALK"):
                sizes = sorted(set(walk_probe_shifts.get(s, ())))
                cap = 63
            else:
                cap = lv.max_page_shift if lv.max_page_shift is not None else 63
                sizes = sorted({min(p, cap) for p in config.page_shifts})
            self.structs[name] = {
                "sets": lv.sets, "ways": lv.ways, "policy": lv.policy.name, "sizes": sizes,
                "cap": cap,
                # per cpu: list of sets; each set a list of `ways` slots (None or entry dict)
                "cpus": [[[None] * lv.ways for _ in range(lv.sets)] for _ in range(config.cpus)],
            }
        seeds = np.random.SeedSequence(config.seed).generate_state(config.cpus, np.uint64)
        self.rng = [int(x) | 1 for x in seeds]
        self.clock = [0] * config.cpus
        for name, st in self.structs.items():
            st["repl"] = Policy(st["policy"], self.clock, self.rng)
        self.counts = {k: 0 for k in ("accesses", "l1i_hits", "l1i_misses", "l1d_hits",
                                      "l1d_misses", "l2_hits", "l2_misses", "misses",
                                      "conflicts", "fills", "evictions")}

    # ---- primitives -------------------------------------------------------------------
    @staticmethod
    def _matches(e, tag, p, asid, vmid):
        return (e is not None and e["tag"] == tag and e["p"] == p and e["vmid"] == vmid
                and (e["asid"] is None or e["asid"] == asid))

    def lookup(self, name, c, va, shift, asid, vmid):
        st = self.structs[name]
        first = min(shift, st["cap"])
        order = [first] + [p for p in st["sizes"] if p != first]
        found = []
        for p in order:
            tag = va >> p
            ways = st["cpus"][c][tag % st["sets"]]
            for e in ways:
                if self._matches(e, tag, p, asid, vmid):
                    found.append((e, ways, tag % st["sets"]))
                    break
        if not found:
            return None
        if self.config.detect_conflicts:
            self.counts["conflicts"] += len(found) - 1
        hit, ways, s = found[0]
        st["repl"].hit(c, (c, s), ways, ways.index(hit))
        return hit

    def fill(self, name, c, va, shift, asid, vmid):
        st = self.structs[name]
        p = min(shift, st["cap"])
        tag = va >> p
        ways = st["cpus"][c][tag % st["sets"]]
        w, evicts = st["repl"].victim(c, (c, tag % st["sets"]), ways)
        self.counts["evictions"] += evicts
        self.counts["fills"] += 1
        st["repl"].fill(c, (c, tag % st["sets"]), ways, w,
                        {"tag": tag, "p": p, "asid": asid, "vmid": vmid})

    # ---- one access -------------------------------------------------------------------
    def translate(self, c, va, kind, shift, asid, vmid, global_):
        """Returns 0 (L1 hit), 1 (L2 hit) or 2 (walk)."""
        easid = None if global_ else asid
        self.counts["accesses"] += 1
        l1 = "L1I" if kind == 2 else "L1D"
        tag = "l1i" if kind == 2 else "l1d"
        if l1 in self.structs:
            if self.lookup(l1, c, va, shift, asid, vmid) is not None:
                self.counts[f"{tag}_hits"] += 1
                return 0
            self.counts[f"{tag}_misses"] += 1
        if "L2" in self.structs:
            if self.lookup("L2", c, va, shift, asid, vmid) is not None:
                self.counts["l2_hits"] += 1
                if l1 in self.structs:
                    self.fill(l1, c, va, shift, easid, vmid)
                return 1
            self.counts["l2_misses"] += 1
            self.fill("L2", c, va, shift, easid, vmid)
        self.counts["misses"] += 1
        if l1 in self.structs:
            self.fill(l1, c, va, shift, easid, vmid)
        return 2

    def run(self, va, kind=None, shift=None, asid=None, vmid=None, cpu=None, global_=None):
        n = len(va)

        def col(x, default):
            if x is None:
                return [default] * n
            x = np.asarray(x)
            return [x.item()] * n if x.ndim == 0 else [int(v) for v in x]

        kind, asid, vmid, cpu = col(kind, 0), col(asid, 0), col(vmid, 0), col(cpu, 0)
        shift = col(shift, self.config.page_shifts[0])
        global_ = col(global_, False)
        out = []
        for i in range(n):
            v = int(np.int64(np.uint64(va[i])))  # addresses are signed, as in the kernel
            out.append(self.translate(cpu[i], v, kind[i], shift[i], asid[i], vmid[i],
                                      bool(global_[i])))
        return out

    # ---- invalidation -----------------------------------------------------------------
    def _entries(self, cpu, names):
        cpus = range(self.config.cpus) if cpu < 0 else [cpu]
        for c in cpus:
            for name in names:
                if name not in self.structs:
                    continue
                for ways in self.structs[name]["cpus"][c]:
                    for w, e in enumerate(ways):
                        if e is not None:
                            yield ways, w, e

    def _va_names(self, last_level_only):
        return ["L1I", "L1D", "L2"] + ([] if last_level_only else ["WALK"])

    def invalidate_va(self, cpu, va, asid, vmid, last_level_only=False):
        n = 0
        for ways, w, e in list(self._entries(cpu, self._va_names(last_level_only))):
            if (e["tag"] == va >> e["p"] and e["vmid"] == vmid
                    and (e["asid"] is None or e["asid"] == asid)):
                ways[w] = None
                n += 1
        return n

    def invalidate_range(self, cpu, start, end, asid, vmid, last_level_only=False):
        n = 0
        for ways, w, e in list(self._entries(cpu, self._va_names(last_level_only))):
            lo = e["tag"] << e["p"]
            hi = lo + (1 << e["p"])
            if (lo < end and start < hi and e["vmid"] == vmid
                    and (e["asid"] is None or e["asid"] == asid)):
                ways[w] = None
                n += 1
        return n

    def invalidate_asid(self, cpu, asid, vmid):
        n = 0
        for ways, w, e in list(self._entries(cpu, ["L1I", "L1D", "L2", "WALK"])):
            if e["asid"] == asid and e["vmid"] == vmid:
                ways[w] = None
                n += 1
        return n

    def invalidate_vmid(self, cpu, vmid):
        n = 0
        for ways, w, e in list(self._entries(cpu, list(self.structs))):
            if e["vmid"] == vmid:
                ways[w] = None
                n += 1
        return n

    def invalidate_all(self, cpu):
        n = 0
        for ways, w, _e in list(self._entries(cpu, list(self.structs))):
            ways[w] = None
            n += 1
        return n
