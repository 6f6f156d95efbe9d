"""Replacement policies of set-associative structures, as hooks shared by TLBs and caches.

A TLB structure (:mod:`kmm.tlb`) and a line cache level (:mod:`kmm.cache`) are both sets of
``ways`` entries in a flat int64 array ``ent[row, field, entry]`` with a control array
``ctl[row]`` per CPU (or shared cache) whose column :data:`CTL_CLOCK` is a clock and
:data:`CTL_RNG` the state of a xorshift64 stream. Each structure keeps its own clock and
stream, so adding a structure never shifts another's random sequence. A structure asks its
policy three things, as gem5's ``replacement_policy`` and ChampSim's ``replacement/``
modules do:

- :func:`on_hit` after a lookup hit an entry,
- :func:`victim` for the way a fill replaces (an invalid way is always taken first;
  :func:`choose` when the structure found the set's oldest entry during its own scan),
- :func:`on_fill` after an entry was written.

An entry's stamp field is 0 while it is invalid and positive once filled (the clock value of
its last fill, or of its last hit for LRU), which is all LRU and FIFO need. Tree-PLRU keeps
``ways - 1`` direction bits per set in the policy field of the set's first entry (the field
exists only in structures that have a tree-PLRU level). A new policy is a code in
:class:`Replacement`, a branch in each hook, and its twin in ``tests/naive/policy.py``.

Policies
--------
LRU        the least recently used way (hits refresh the stamp)
FIFO       the way filled longest ago (hits do not)
RANDOM     a way drawn from the structure's xorshift64 stream (Marsaglia 2003, shifts
           13, 7, 17), after any invalid way
TREE_PLRU  tree pseudo-LRU over a power-of-two number of ways (at most 64): each touch
           points the bits on its path away from it; the victim follows the bits
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from ._jit import njit
from .errors import ConfigError


class Replacement(IntEnum):
    """Replacement policy of one structure (an invalid way is always filled first)."""

    LRU = 0
    FIFO = 1
    RANDOM = 2
    TREE_PLRU = 3


#: Columns of a structure's control row.
CTL_CLOCK, CTL_RNG = 0, 1
#: Plain-int codes for kernels (an IntEnum member never enters a kernel's signature).
LRU, FIFO, RANDOM, TREE_PLRU = (int(p) for p in Replacement)
#: Tree-PLRU keeps its bits in one int64 per set.
PLRU_MAX_WAYS = 64


def parse(policy, where: str = "policy") -> Replacement:
    """A :class:`Replacement` from a member, its code or its name (any case)."""
    if isinstance(policy, Replacement):
        return policy
    if isinstance(policy, (int, np.integer)) and not isinstance(policy, bool):
        try:
            return Replacement(int(policy))
        except ValueError:
            pass
    else:
        try:
            return Replacement[str(policy).upper()]
        except KeyError:
            pass
    raise ConfigError(f"unknown replacement policy {policy!r}; allowed: "
                      f"{', '.join(p.name.lower() for p in Replacement)}", where)


def check_ways(policy: Replacement, ways: int, where: str = "ways") -> None:
    """Refuse an associativity the policy cannot manage."""
    if policy == Replacement.TREE_PLRU and (ways & (ways - 1) or ways > PLRU_MAX_WAYS):
        raise ConfigError(f"tree-PLRU needs a power-of-two number of ways up to "
                          f"{PLRU_MAX_WAYS}, got {ways}", where)


def needs_policy_field(policies) -> bool:
    """Whether structures with these policies need the per-set policy field."""
    return any(Replacement(p) == Replacement.TREE_PLRU for p in policies)


def seed_streams(seed, n: int) -> np.ndarray:
    """``n`` nonzero xorshift64 states (int64 view) from a ``numpy`` seed sequence entropy."""
    seeds = np.random.SeedSequence(seed).generate_state(n, np.uint64)
    return (seeds | np.uint64(1)).view(np.int64)  # xorshift64 needs a nonzero state


# ---------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------
# The small helpers are inlined; the four hooks (on_hit, choose, victim, on_fill) are called:
# each is compiled once instead of into every lookup and fill of every TLB and cache kernel,
# which made the full translation path compile in 26 s against 51 s (cold, 2-core reference
# machine) at the same speed against the plain-C path (``kmm bench``).
@njit(inline="always", _nrt=False)
def xorshift64(x):
    """The next state of a xorshift64 stream (uint64 in, uint64 out)."""
    x ^= x << np.uint64(13)
    x ^= x >> np.uint64(7)
    x ^= x << np.uint64(17)
    return x


@njit(inline="always", _nrt=False)
def next_random(ctl, r):
    """Advance row ``r``'s xorshift64 stream (``ctl[r, CTL_RNG]``); returns the new state."""
    x = xorshift64(np.uint64(ctl[r, CTL_RNG]))
    ctl[r, CTL_RNG] = np.int64(x)
    return x


@njit(inline="always", _nrt=False)
def oldest(ent, r, sf, row, ways):
    """Way of the smallest stamp in the set (the first on ties), without branches: an
    invalid way has stamp 0, every valid one a positive stamp. Returns (entry, its stamp)."""
    if ways <= 8:
        victim = row
        ms = ent[r, sf, row]
        for w in range(np.uint64(1), ways):
            e = row + w
            x = ent[r, sf, e]
            victim = e if x < ms else victim
            ms = min(x, ms)
        return victim, ms
    # wide sets: one min-reduction over (stamp, way) packed in an int64, which vectorises
    # (ways < 2**16, stamps stay far below 2**46)
    best = np.int64(1) << 62
    for w in range(ways):
        best = min(best, (ent[r, sf, row + w] << 16) | np.int64(w))
    return row + np.uint64(best & 0xFFFF), best >> 16


@njit(inline="always", _nrt=False)
def plru_touch(bits, way, ways):
    """Tree-PLRU bits of a set after touching ``way``: every node on the way's path points
    to the other half (heap numbering, node 1 the root, bit ``k`` node ``k``)."""
    node = np.int64(1)
    half = np.int64(ways) >> 1
    w = np.int64(way)
    while half > 0:
        right = (w & half) != 0
        if right:
            bits &= ~(np.int64(1) << node)
        else:
            bits |= np.int64(1) << node
        node = 2 * node + (1 if right else 0)
        half >>= 1
    return bits


@njit(inline="always", _nrt=False)
def plru_victim(bits, ways):
    """The way the tree-PLRU bits point to."""
    node = np.int64(1)
    n = np.int64(ways)
    while node < n:
        node = 2 * node + ((bits >> node) & 1)
    return np.uint64(node - n)


@njit(_nrt=False)
def on_hit(policy, ent, r, sf, pf, e, base, ways, ctl, cr):
    """A lookup of row ``r`` hit entry ``e`` (``base``: first entry of the structure or of
    the set; sets are ``ways`` entries from it)."""
    if policy == LRU:
        ctl[cr, CTL_CLOCK] += 1
        ent[r, sf, e] = ctl[cr, CTL_CLOCK]
    elif policy == TREE_PLRU:
        way = (np.int64(e) - np.int64(base)) % np.int64(ways)
        row = np.int64(e) - way
        ent[r, pf, row] = plru_touch(ent[r, pf, row], way, ways)


@njit(_nrt=False)
def choose(policy, e, ms, ent, r, pf, row, ways, ctl, cr):
    """The entry of set ``row`` a fill replaces, given the set's :func:`oldest` entry ``e``
    and its stamp ``ms`` (a structure that scans stamps during its lookup passes them)."""
    if ms != 0:
        if policy == RANDOM:
            e = row + next_random(ctl, cr) % ways
        elif policy == TREE_PLRU:
            e = row + plru_victim(ent[r, pf, row], ways)
    return e


@njit(_nrt=False)
def victim(policy, ent, r, sf, pf, row, ways, ctl, cr):
    """The entry of set ``row`` (its first entry) a fill replaces, and the smallest stamp
    of the set (0: the entry is invalid, nothing valid is evicted)."""
    e, ms = oldest(ent, r, sf, row, ways)
    return choose(policy, e, ms, ent, r, pf, row, ways, ctl, cr), ms


@njit(_nrt=False)
def on_fill(policy, ent, r, sf, pf, e, row, ways, ctl, cr):
    """Entry ``e`` of set ``row`` was just written: stamp it with the advanced clock."""
    ctl[cr, CTL_CLOCK] += 1
    ent[r, sf, e] = ctl[cr, CTL_CLOCK]
    if policy == TREE_PLRU:
        ent[r, pf, row] = plru_touch(ent[r, pf, row], e - row, ways)


__all__ = ["Replacement", "CTL_CLOCK", "CTL_RNG", "LRU", "FIFO", "RANDOM", "TREE_PLRU",
           "PLRU_MAX_WAYS", "parse", "check_ways", "needs_policy_field", "seed_streams",
           "xorshift64", "next_random", "oldest", "plru_touch", "plru_victim", "on_hit",
           "choose", "victim", "on_fill"]
