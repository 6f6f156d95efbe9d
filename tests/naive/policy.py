"""Plain-Python twin of kmm.policy: the replacement decisions of one set.

A set is a list of ``ways`` slots, ``None`` (invalid) or a dict with a ``stamp``. Each
structure (a TLB of one CPU, a cache level copy) gives a ``row`` whose clock and xorshift64
stream it owns; tree-PLRU bits live per set, keyed by the set's identity.
"""
from __future__ import annotations

MASK64 = (1 << 64) - 1


def xorshift64(x: int) -> int:
    x ^= (x << 13) & MASK64
    x ^= x >> 7
    x ^= (x << 17) & MASK64
    return x


class Policy:
    """Hooks of one policy over the rows (clocks and random streams) of a structure."""

    def __init__(self, name: str, clock: list[int], rng: list[int]):
        self.name = name
        self.clock = clock    # shared with the owner: one clock per row
        self.rng = rng        # one xorshift64 state per row
        self.bits = {}        # tree-PLRU: set key -> {node: bit}

    # tree-PLRU, written as the textbook tree walk
    def _plru_touch(self, key, ways, w):
        bits = self.bits.setdefault(key, {})
        lo, hi, node = 0, ways, 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if w < mid:             # touched the left half: point right
                bits[node] = 1
                hi, node = mid, 2 * node
            else:                   # touched the right half: point left
                bits[node] = 0
                lo, node = mid, 2 * node + 1

    def _plru_victim(self, key, ways):
        bits = self.bits.get(key, {})
        lo, hi, node = 0, ways, 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if bits.get(node, 0):
                lo, node = mid, 2 * node + 1
            else:
                hi, node = mid, 2 * node
        return lo

    def hit(self, row, key, ways, w):
        if self.name == "LRU":
            self.clock[row] += 1
            ways[w]["stamp"] = self.clock[row]
        elif self.name == "TREE_PLRU":
            self._plru_touch(key, len(ways), w)

    def victim(self, row, key, ways) -> tuple[int, bool]:
        """The way a fill replaces and whether it evicts a valid entry."""
        if None in ways:
            return ways.index(None), False
        if self.name == "RANDOM":
            self.rng[row] = xorshift64(self.rng[row])
            return self.rng[row] % len(ways), True
        if self.name == "TREE_PLRU":
            return self._plru_victim(key, len(ways)), True
        return min(range(len(ways)), key=lambda i: (ways[i]["stamp"], i)), True

    def fill(self, row, key, ways, w, entry):
        self.clock[row] += 1
        entry["stamp"] = self.clock[row]
        ways[w] = entry
        if self.name == "TREE_PLRU":
            self._plru_touch(key, len(ways), w)
