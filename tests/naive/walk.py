"""Plain-Python twin of kmm.walk's full path, built on the TLB and cache twins.

Reads only configuration objects and geometry (never kernel state), and recomputes table
identities with Python integers.
"""
from __future__ import annotations

import numpy as np

from naive.cache import NaiveCaches
from naive.tlb import NaiveTLB

FIXED, MEMORY, LOCAL, INTERLEAVE, GIVEN = range(5)


class Frames:
    """Table frames handed out in first-touch order."""

    def __init__(self):
        self.frames = {}

    def get(self, key):
        if key not in self.frames:
            self.frames[key] = len(self.frames)
        return self.frames[key]


class Stage:
    def __init__(self, g, rule, fixed, row, frames):
        self.g = g
        self.row = row
        self.frames = frames
        levels = list(range(g.start_level, 4))
        rule = rule if isinstance(rule, (list, tuple)) else [rule] * len(levels)
        fixed = fixed if isinstance(fixed, (list, tuple)) else [fixed] * len(levels)
        self.rule = {lv: int(r) for lv, r in zip(levels, rule)}
        self.fixed = {lv: int(f) for lv, f in zip(levels, fixed)}

    def shift(self, level):
        return self.g.level_shift(level)

    def table_pfn(self, level, a, space, copy):
        g = self.g
        tid = int(a < 0) if level == g.start_level else a >> self.shift(level - 1)
        return self.frames.get((self.row, level, copy, space, tid))

    def descriptor_pa(self, level, a, pfn):
        g = self.g
        entries = g.top_entries if level == g.start_level else g.entries_per_table
        idx = (a >> self.shift(level)) & (entries - 1)
        return (1 << 60) + (pfn << g.page_shift) + (idx << 3)

    def node(self, level, pfn, cnode, mnode, given):
        r = self.rule[level]
        if r == FIXED:
            return self.fixed[level]
        if r == MEMORY:
            return mnode
        if r == LOCAL:
            return cnode
        if r == INTERLEAVE:
            return pfn % self.nodes
        return int(given[level - self.g.start_level])


class NaivePath:
    def __init__(self, config):
        self.config = config
        self.tlb = NaiveTLB(config.tlb, config.walk_probe_shifts())
        self.caches = NaiveCaches(config.caches, config.nodes, config.cpu_nid)
        self.s1 = self.s2 = None
        frames = Frames()
        if config.stage1 is not None:
            self.s1 = Stage(config.stage1, config.table_node, config.table_fixed_nid, 0, frames)
            self.s1.nodes = config.nodes
        if config.stage2 is not None:
            self.s2 = Stage(config.stage2, config.s2_table_node, config.s2_table_fixed_nid, 1,
                            frames)
            self.s2.nodes = config.nodes
        k = config.nodes
        self.walk = {k_: 0 for k_ in ("walks", "refs", "s1_refs", "s2_refs", "walk_cache_hits",
                                      "walk_cache_misses", "s2_walks", "s2_cache_hits",
                                      "s2_cache_misses")}
        self.refs_node = np.zeros((k, k), np.int64)
        self.served = np.zeros((3, 4), np.int64)

    def _read(self, c, pa, cnode, tnode):
        self.refs_node[cnode, tnode] += 1
        self.served[2, self.caches.access(c, pa, 2, tnode)] += 1

    def _cached_level(self, name, c, a, first_shift, asid, vmid, stage):
        if name not in self.tlb.structs:
            return stage.g.start_level - 1
        e = self.tlb.lookup(name, c, a, first_shift, asid, vmid)
        if e is None:
            return stage.g.start_level - 1
        for lv in range(stage.g.start_level, 4):
            if stage.shift(lv) == e["p"]:
                return lv
        return 3

    def stage2_walk(self, c, ipa, leaf, vmid, cnode, mnode, given):
        s2 = self.s2
        self.walk["s2_walks"] += 1
        hit = self._cached_level("S2WALK", c, ipa, s2.shift(leaf), 0, vmid, s2)
        if hit >= leaf:
            self.walk["s2_cache_hits"] += 1
            return 0
        if "S2WALK" in self.tlb.structs:
            self.walk["s2_cache_misses"] += 1
        first = max(hit + 1, s2.g.start_level)
        for lv in range(first, leaf + 1):
            pfn = s2.table_pfn(lv, ipa, vmid, cnode if s2.rule[lv] == LOCAL else -1)
            tnode = s2.node(lv, pfn, cnode, mnode, given)
            self._read(c, s2.descriptor_pa(lv, ipa, pfn), cnode, tnode)
            if "S2WALK" in self.tlb.structs:
                self.tlb.fill("S2WALK", c, ipa, s2.shift(lv), 0, vmid)
        self.walk["s2_refs"] += leaf - first + 1
        return leaf - first + 1

    def stage1_walk(self, c, va, leaf, asid, vmid, glob, cnode, mnode, given):
        s1 = self.s1
        start = s1.g.start_level
        easid = None if glob else asid
        first = start
        if leaf > start:
            hit = self._cached_level("WALK", c, va, s1.shift(leaf - 1), asid, vmid, s1)
            if hit >= start:
                self.walk["walk_cache_hits"] += 1
                first = min(hit + 1, leaf)
            elif "WALK" in self.tlb.structs:
                self.walk["walk_cache_misses"] += 1
        space = (vmid << 32) | ((-1 if glob else asid) + 1)
        refs = 0
        for lv in range(first, leaf + 1):
            pfn = s1.table_pfn(lv, va, space, cnode if s1.rule[lv] == LOCAL else -1)
            tnode = s1.node(lv, pfn, cnode, mnode, given)
            dpa = s1.descriptor_pa(lv, va, pfn)
            if self.s2 is not None:
                refs += self.stage2_walk(c, dpa, self.config.s2_table_leaf_level, vmid, cnode,
                                         tnode, given)
            self._read(c, dpa, cnode, tnode)
            if lv < leaf and "WALK" in self.tlb.structs:
                self.tlb.fill("WALK", c, va, s1.shift(lv), easid, vmid)
        self.walk["s1_refs"] += leaf - first + 1
        return refs + leaf - first + 1

    def run(self, va, kind, shift, leaf, leaf2, asid, vmid, cpu, global_, node, given=None):
        """Per-access walk references; arrays are one value per access."""
        out = []
        for i in range(len(va)):
            v = int(np.int64(np.uint64(va[i])))
            c = int(cpu[i])
            cnode = self.config.cpu_nid[c]
            g = bool(global_[i])
            tn = None if given is None else given[i]
            refs = 0
            if self.tlb.translate(c, v, int(kind[i]), int(shift[i]), int(asid[i]), int(vmid[i]),
                                  g) == 2:
                self.walk["walks"] += 1
                if self.s1 is not None:
                    refs = self.stage1_walk(c, v, int(leaf[i]), int(asid[i]), int(vmid[i]), g,
                                            cnode, int(node[i]), tn)
                if self.s2 is not None:
                    refs += self.stage2_walk(c, v, int(leaf2[i]), int(vmid[i]), cnode,
                                             int(node[i]), tn)
                self.walk["refs"] += refs
            out.append(refs)
            src = 0 if int(kind[i]) == 2 else 1
            self.served[src, self.caches.access(c, v, src, int(node[i]))] += 1
        return out
