"""Plain-Python twin of kmm.cache: each set a list of ways, one dict per line."""
from __future__ import annotations

import numpy as np

from .policy import Policy


class NaiveCaches:
    def __init__(self, config, nodes=1, cpu_node=None):
        self.config = config
        self.line_shift = config.line_bytes.bit_length() - 1
        self.levels = {}
        for name in ("l1i", "l1d", "l2", "llc"):
            c = getattr(config, name)
            if c is None:
                continue
            sets = c.sets(config.line_bytes)
            copies = 1 if name == "llc" else config.cpus
            self.levels[name] = {"sets": sets, "ways": c.ways, "policy": c.policy.name,
                                 "data": [[[None] * c.ways for _ in range(sets)]
                                          for _ in range(copies)]}
        seeds = np.random.SeedSequence([config.seed, 1]).generate_state(config.cpus + 1,
                                                                        np.uint64)
        self.rng = [int(x) | 1 for x in seeds]
        self.clock = [0] * (config.cpus + 1)
        for lv in self.levels.values():
            lv["repl"] = Policy(lv["policy"], self.clock, self.rng)
        self.cpu_node = list(cpu_node) if cpu_node is not None else [0] * config.cpus
        self.mem = np.zeros((3, nodes, nodes), np.int64)
        self.counts = {k: 0 for k in (
            "accesses", "l1i_hits", "l1i_misses", "l1d_hits", "l1d_misses", "l2_hits",
            "l2_misses", "llc_hits", "llc_misses", "mem_reads", "mem_ifetch", "mem_data",
            "mem_walk", "walk_reads")}
        walk = config.walk_entry
        if walk not in self.levels:
            walk = "l2" if "l2" in self.levels else "llc"
        self.walk_entry = walk

    def _touch(self, name, copy, clock_row, line):
        lv = self.levels[name]
        key = (copy, line % lv["sets"])
        ways = lv["data"][copy][line % lv["sets"]]
        for w, e in enumerate(ways):
            if e is not None and e["line"] == line:
                lv["repl"].hit(clock_row, key, ways, w)
                return True
        w, _ = lv["repl"].victim(clock_row, key, ways)
        lv["repl"].fill(clock_row, key, ways, w, {"line": line})
        return False

    def access(self, c, pa, src, node):
        """Returns 0 (L1), 1 (L2), 2 (LLC) or 3 (memory)."""
        line = int(np.int64(np.uint64(pa))) >> self.line_shift
        self.counts["accesses"] += 1
        first = {0: "l1i", 1: "l1d", 2: self.walk_entry}[src]
        if src == 2:
            self.counts["walk_reads"] += 1
        path = ["l1i", "l1d", "l2", "llc"]
        start = path.index(first)
        if first == "l1i":
            path = ["l1i", "l2", "llc"]
            start = 0
        served = {"l1i": 0, "l1d": 0, "l2": 1, "llc": 2}
        for name in path[start:]:
            if name not in self.levels:
                continue
            row = self.config.cpus if name == "llc" else c
            copy = 0 if name == "llc" else c
            if self._touch(name, copy, row, line):
                self.counts[f"{name}_hits"] += 1
                return served[name]
            self.counts[f"{name}_misses"] += 1
        self.counts["mem_reads"] += 1
        self.counts[("mem_ifetch", "mem_data", "mem_walk")[src]] += 1
        self.mem[src, self.cpu_node[c], node] += 1
        return 3

    def run(self, pa, source, cpu, node):
        return [self.access(int(cpu[i]), int(pa[i]), int(source[i]), int(node[i]))
                for i in range(len(pa))]
