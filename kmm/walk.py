"""Page walks, 1D and nested 2D, and the full translation + memory-access path.

A walk reads one descriptor per level from the first level not covered by the walk cache
down to the leaf. Under a stage 2, every stage-1 descriptor address and the final output
address are IPAs that need their own stage-2 walk first, so a walk of n stage-1 and m
stage-2 levels makes at most n + (n+1)·m references (Arm ARM D8.2 "Translation table walk",
two-stage translation; :func:`kmm.geometry.nested_walk_references`), fewer with stage-2
blocks, concatenated stage-2 start levels (fewer levels, :func:`kmm.geometry.stage2`) and
stage-2 walk-cache hits.

No page-table object is needed inside the kernel. The table page at level L that holds the
descriptor for input address ``a`` is identified by arithmetic: the top table for
``L == start``, otherwise ``a >> level_shift(L - 1)``; the descriptor is entry
``(a >> level_shift(L)) mod entries`` of it, 8 bytes, so 8 descriptors share a 64-byte
line. Each table page (stage, level, address space, table number, per-node copy) gets a
physical frame the first time a walk touches it, from one contiguous region above every
data address, as a page allocator would hand table pages out; its NUMA node comes from a
placement rule per level
(:class:`TableNode`) or from the caller (``table_nid``, e.g.
:meth:`kmm.pagetable.PageTable.walk_nids`).

:func:`simulate_path` runs the full path: access -> L1 TLB -> L2 TLB -> on a miss, the walk
(walk caches, descriptor reads through the caches, each memory read charged to the node
holding the table page) -> the data or instruction access through the caches -> memory at
the latency of the node holding the line. It returns raw counters; time is
:meth:`PathResult.time_ns` over stated :class:`PathCosts`.

A :class:`Path` is one machine. Accesses may carry a tag (``Path(config, tags=n)``,
``run(..., tag=...)``): :class:`TagEvent` counters are then also kept per tag (an
operation, a privilege level, a region), so a mechanism never copies the path loop to
split its counts. An access may read several consecutive lines (``lines``; 0 for a
translation only). :meth:`Path.regime` gives another translation regime of the same
machine (its own stage-1/stage-2 geometries and table placement, e.g. EL2's own stage 1
next to the host's nested 1+2), sharing the TLBs, walk caches, line caches, table-frame
map and counters; its table pages never alias the other regimes'.

Stage 2 maps IPA to PA one to one here (the identity of pKVM's host stage 2): a table or
data line keeps its identity through stage 2, which only adds the references.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from . import cache as _cache
from . import tlb as _tlb
from ._jit import njit
from .cache import CacheConfig, CacheEvent, Served, Source
from .config import check_float, check_int, check_pow2
from .counters import Counters
from .errors import ConfigError
from .geometry import Geometry
from .tlb import Structure, TLBConfig, TLBEvent


class TableNode(IntEnum):
    """Which NUMA node holds a table page (codes 0 and 1 as
    :class:`kmm.pagetable.TablePlacement`).

    FIXED : one node per level (``fixed_nid``), e.g. boot-time ``memblock`` tables on node 0
    MEMORY : the node of the memory the table maps (the accessed line's node)
    LOCAL : per-node copies; every CPU reads its own node's copy (replicated tables)
    INTERLEAVE : table frame modulo the number of nodes
    GIVEN : the caller's per-access matrix ``table_nid[i, level - start]``
    """

    FIXED = 0
    MEMORY = 1
    LOCAL = 2
    INTERLEAVE = 3
    GIVEN = 4


class WalkEvent(IntEnum):
    WALKS = 0
    REFS = 1
    S1_REFS = 2
    S2_REFS = 3
    WALK_CACHE_HITS = 4
    WALK_CACHE_MISSES = 5
    S2_WALKS = 6
    S2_CACHE_HITS = 7
    S2_CACHE_MISSES = 8


# walk geometry columns (one row per stage)
W_ON, W_START, W_PAGE_SHIFT, W_NODES, W_TABLE_LEAF, W_SPACE, W_REGIME = 0, 1, 2, 3, 4, 5, 6
W_S2_PAGE_LEAVES = 7  # stage-2 row: 1 if the stage-2 walk cache keeps IPA -> PA page leaves
W_SHIFT = 8      # + level + 1: log2 bytes one entry at the level maps
W_IDXBITS = 14   # + level + 1: log2 entries of a table at the level (top: all concatenated)
W_RULE = 20      # + level + 1: TableNode
W_FIXED = 26     # + level + 1: node for TableNode.FIXED
W_LEN = 32
TABLE_BASE = np.int64(1) << 60  # table frames live above every physical address
#: Regimes of one machine are numbered 0 (the path's own) to MAX_REGIMES - 1; the number
#: is part of every table page's identity (bits 20-31 of its key, free of the address space).
MAX_REGIMES = 1 << 12
_REGIME_BIT = 20


class TagEvent(IntEnum):
    """Counters kept per access tag (:attr:`PathResult.by_tag`).

    ``L1_TLB_MISSES`` are accesses the first TLB level did not serve, ``WALKS`` those that
    missed every level; ``WALK_READS_*`` the walks' descriptor reads by the level that
    served them; ``FIRST_*`` the first line each access read and ``REST_*`` its further
    lines, by the level that served them (:class:`kmm.cache.Served` order).
    """

    ACCESSES = 0
    L1_TLB_MISSES = 1
    WALKS = 2
    WALK_REFS = 3
    WALK_READS_L1 = 4
    WALK_READS_L2 = 5
    WALK_READS_LLC = 6
    WALK_READS_MEMORY = 7
    FIRST_L1 = 8
    FIRST_L2 = 9
    FIRST_LLC = 10
    FIRST_MEMORY = 11
    REST_L1 = 12
    REST_L2 = 13
    REST_LLC = 14
    REST_MEMORY = 15


def geometry_row(g: Geometry | None, rule, fixed_nid, nodes: int,
                 table_leaf_level: int = 3, page_leaves: bool = True) -> np.ndarray:
    """One stage's walk-geometry row (the one place a :class:`Geometry` becomes kernel data).

    ``rule`` and ``fixed_nid`` are one value or one per level (top first)."""
    row = np.zeros(W_LEN, np.int64)
    if g is None:
        return row
    levels = list(range(g.start_level, 4))
    rules = _per_level("table_node", rule, len(levels))
    fixed = _per_level("table_fixed_nid", fixed_nid, len(levels))
    for r in rules:
        try:
            TableNode(int(r))
        except ValueError:
            raise ConfigError(f"unknown table placement {r!r}", "table_node") from None
    if any(not 0 <= f < nodes for f in fixed):
        raise ConfigError(f"table nodes must be in 0..{nodes - 1}", "table_fixed_nid")
    if table_leaf_level not in g.leaf_levels:
        raise ConfigError(f"level {table_leaf_level} holds no leaf for {g.name}",
                          "s2_table_leaf_level")
    row[W_ON], row[W_START], row[W_PAGE_SHIFT], row[W_NODES] = 1, g.start_level, g.page_shift, \
        nodes
    row[W_TABLE_LEAF] = table_leaf_level
    row[W_SPACE] = g.stage
    row[W_S2_PAGE_LEAVES] = int(bool(page_leaves))
    for k, lv in enumerate(levels):
        row[W_SHIFT + lv + 1] = g.level_shift(lv)
        entries = g.top_entries if lv == g.start_level else g.entries_per_table
        row[W_IDXBITS + lv + 1] = entries.bit_length() - 1
        row[W_RULE + lv + 1] = int(rules[k])
        row[W_FIXED + lv + 1] = int(fixed[k])
    return row


def _per_level(name, value, n):
    if isinstance(value, (list, tuple, np.ndarray)):
        value = list(value)
        if len(value) != n:
            raise ConfigError(f"needs one value per level ({n}), got {len(value)}", name)
        return value
    return [value] * n


# ---------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------
@njit(inline="always", _nrt=False)
def _mix(x):
    """splitmix64 finaliser: a well-spread non-negative int64 of ``x``."""
    z = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(2))


class WalkState(NamedTuple):
    """Walk geometry and the table-frame map.

    ``geo[stage - 1]`` is a row of :func:`geometry_row`. Table pages get frames in the order
    walks first touch them (as a page allocator hands out pages), from an open-addressing
    map: ``tkeys[j]`` = (table number, packed stage/level/copy/address space) and
    ``tframe[j]`` (−1 = empty); ``meta`` = (next frame, lookups refused because the map
    was full). ``memo[r, level + 1, slot]`` = (table number, packed key, frame) remembers
    recent answers per stage and level (a pure speed-up: upper-level tables repeat).
    """

    geo: np.ndarray
    tkeys: np.ndarray
    tframe: np.ndarray
    meta: np.ndarray
    memo: np.ndarray


MEMO_SLOTS = 64


@njit(inline="always", _nrt=False)
def table_frame(ws, r, level, a, space, copy):
    """Frame number of the level-``level`` table (stage row ``r``) holding the descriptor
    for input address ``a`` in address space ``space``; ``copy`` ≥ 0 names a per-node
    replica. Allocated on first touch."""
    wg = ws.geo
    tid = np.int64(a < 0) if level == wg[r, W_START] else a >> wg[r, W_SHIFT + level]
    k2 = ((r * 8 + level + 1) << 59) | ((copy + 1) << 48) | (wg[r, W_REGIME] << _REGIME_BIT) \
        | space
    h = _mix(tid ^ _mix(k2))
    ur, ul, us = np.uint64(r), np.uint64(level + 1), np.uint64(h & (MEMO_SLOTS - 1))
    memo = ws.memo
    if memo[ur, ul, us, 2] >= 0 and memo[ur, ul, us, 0] == tid and memo[ur, ul, us, 1] == k2:
        return memo[ur, ul, us, 2]
    cap = ws.tframe.shape[0]
    j = np.uint64(h & (cap - 1))
    for _ in range(cap):
        f = ws.tframe[j]
        if f < 0:
            if 4 * ws.meta[0] >= 3 * cap:
                break
            f = ws.meta[0]
            ws.meta[0] += 1
            ws.tkeys[j, 0] = tid
            ws.tkeys[j, 1] = k2
            ws.tframe[j] = f
        elif ws.tkeys[j, 0] != tid or ws.tkeys[j, 1] != k2:
            j = (j + np.uint64(1)) & np.uint64(cap - 1)
            continue
        memo[ur, ul, us, 0] = tid
        memo[ur, ul, us, 1] = k2
        memo[ur, ul, us, 2] = f
        return f
    ws.meta[1] += 1
    return cap + (_mix(tid ^ _mix(k2)) & (cap - 1))


@njit(inline="always", _nrt=False)
def descriptor_pa(wg, r, level, a, frame):
    """Physical address of the descriptor for ``a`` at ``level`` in table ``frame``."""
    idx = (a >> wg[r, W_SHIFT + level + 1]) & ((np.int64(1) << wg[r, W_IDXBITS + level + 1]) - 1)
    return TABLE_BASE + (frame << wg[r, W_PAGE_SHIFT]) + (idx << 3)


class PathArrays(NamedTuple):
    """Per-access kernel arrays of :func:`simulate_path` (length n or 1 = broadcast)."""

    va: np.ndarray        # int64 virtual (or, without stage 1, intermediate) addresses
    pa: np.ndarray        # int64 physical address of the data (length 1: pa = va)
    flags: np.ndarray     # uint8 tlb.Kind | tlb.FLAG_GLOBAL
    shift: np.ndarray     # uint8 TLB entry size
    leaf: np.ndarray      # int8 stage-1 leaf level
    leaf2: np.ndarray     # int8 stage-2 leaf level of the data
    asid: np.ndarray      # int32
    vmid: np.ndarray      # int32
    cpu: np.ndarray       # int32
    node: np.ndarray      # int32 node of the data line
    table_nid: np.ndarray  # int32 [n, levels] for TableNode.GIVEN, else [1, 1]
    tag: np.ndarray = np.zeros(1, np.int32)   # int32 tag of the access (counters by tag)
    lines: np.ndarray = np.ones(1, np.int32)  # int32 consecutive lines read from pa (0: none)


class PathOut(NamedTuple):
    tlb: np.ndarray        # TLBEvent counts
    cache: np.ndarray      # CacheEvent counts
    walk: np.ndarray       # WalkEvent counts
    mem: np.ndarray        # [Source, cpu node, line node] memory reads
    refs_node: np.ndarray  # [cpu node, table node] walk references
    refs_level: np.ndarray  # [stage, level + 1] walk references
    served: np.ndarray     # [Source, Served] accesses per level that supplied them
    refs: np.ndarray       # per-access references of the walk (empty: not recorded)
    cpu_nid: np.ndarray    # node of each CPU
    by_tag: np.ndarray = np.zeros((0, 16), np.int64)  # [tag, TagEvent] (no rows: untagged)
    #: [cpu, LAST_FIELDS] scratch of the last-translation and last-line filters of
    #: :func:`run_path` (no rows: no filters; the result is the same either way)
    last: np.ndarray = np.zeros((0, 6), np.int64)


#: Columns per CPU of :attr:`PathOut.last`: the TLB's, then the caches' filter.
LAST_FIELDS = _tlb.LAST_TLB_FIELDS + _cache.LAST_LINE_FIELDS


@njit(inline="always", _nrt=False)
def _table_nid(wg, r, level, pfn, cnode, mnode, tn, i):
    rule = wg[r, W_RULE + level + 1]
    if rule == TableNode.FIXED:
        return wg[r, W_FIXED + level + 1]
    if rule == TableNode.MEMORY:
        return mnode
    if rule == TableNode.LOCAL:
        return cnode
    if rule == TableNode.INTERLEAVE:
        return pfn % wg[r, W_NODES]
    return np.int64(tn[i if tn.shape[0] > 1 else 0, level - wg[r, W_START]])


@njit(inline="always", _nrt=False)
def _read(cst, out, c, pa, cnode, tnode, r, level):
    out.refs_node[cnode, tnode] += 1
    out.refs_level[r, level + 1] += 1
    s = _cache.cache_access(cst, c, pa, Source.WALK, cnode, tnode, out.cache, out.mem)
    out.served[Source.WALK, s] += 1


@njit(inline="always", _nrt=False)
def _cached_level(tst, s, c, a, first_shift, asid, vmid, wg, r, counts):
    """Deepest level whose walk-cache entry covers ``a`` (probing from ``first_shift``), or
    start − 1 when none does."""
    if tst.geo[s, _tlb.G_SETS] == 0:
        return wg[r, W_START] - 1
    e = _tlb.tlb_lookup(tst, s, c, a, first_shift, asid, vmid, counts)
    if e < 0:
        return wg[r, W_START] - 1
    p = tst.ent[c, _tlb.E_KEY, e] & 63
    for lv in range(wg[r, W_START], 4):
        if wg[r, W_SHIFT + lv + 1] == p:
            return lv
    return 3


@njit(inline="always", _nrt=False)
def _descriptor(ws, r, lv, a, space, cnode, mnode, tn, i):
    """Address and node of the descriptor read for ``a`` at ``lv`` (stage row ``r``)."""
    wg = ws.geo
    copy = cnode if wg[r, W_RULE + lv + 1] == TableNode.LOCAL else -1
    frame = table_frame(ws, r, lv, a, space, copy)
    return descriptor_pa(wg, r, lv, a, frame), _table_nid(wg, r, lv, frame, cnode, mnode, tn, i)


@njit(inline="always", _nrt=False)
def _each(a):
    """Index mask of a per-access column: all ones when it holds one value per access, 0
    when its single value applies to every access (``a[np.uint64(i) & _each(a)]`` is
    access ``i``'s value with one AND in place of a compare and select, and no wraparound)."""
    return np.uint64(0) if a.shape[0] <= 1 else ~np.uint64(0)


@njit(inline="always", _nrt=False)
def _filter_setup(tst, cst, acc):
    """What the loop of :func:`_settled` reads of the machine and of the columns, once per
    call of :func:`run_path` (the machine's geometry does not change during a run): whether
    the last-translation filter applies to L1 I and to L1 D and their largest entry sizes,
    whether L1 I and L1 D line caches exist, the line shift, the columns' :func:`_each`
    masks (cpu, flags, shift, asid, vmid, lines, node), and, when the entry size, ASID, VMID
    and lines are one value for every access (as for a kernel trace), what the filter
    compares of them: ``(fixed, first size in L1 I, in L1 D, context)``, the filter applying
    to neither L1 when that one value of lines is not 1."""
    tg = tst.geo
    cg = cst.geo
    on_i = tg[0, _tlb.G_SETS] != 0 and tg[0, _tlb.G_LAST] == 0
    on_d = tg[1, _tlb.G_SETS] != 0 and tg[1, _tlb.G_LAST] == 0
    max_i, max_d = tg[0, _tlb.G_MAXSHIFT], tg[1, _tlb.G_MAXSHIFT]
    fixed = acc.va.shape[0] > 0 and acc.shift.shape[0] == 1 and acc.asid.shape[0] == 1 \
        and acc.vmid.shape[0] == 1 and acc.lines.shape[0] == 1
    first_i = first_d = want = np.int64(0)
    if fixed:
        first_i = min(np.int64(acc.shift[0]), max_i)
        first_d = min(np.int64(acc.shift[0]), max_d)
        want = _tlb.context(acc.asid[0], acc.vmid[0])
        if acc.lines[0] != 1:
            on_i = on_d = False
    return (on_i, on_d, max_i, max_d,
            cg[_cache.Level.L1I, _cache.K_SETS] > 0, cg[_cache.Level.L1D, _cache.K_SETS] > 0,
            cg[_cache.K_PARAMS, 0],
            (_each(acc.cpu), _each(acc.flags), _each(acc.shift), _each(acc.asid),
             _each(acc.vmid), _each(acc.lines), _each(acc.node)),
            (fixed, first_i, first_d, want))


@njit(inline="always", _nrt=False)
def _settled(cst, acc, out, last, lline, i, pas, setup, counted):
    """The first access from ``i`` on that the last-translation filter of :func:`run_path`
    does not settle. Those before it read one line each and repeat their CPU's last L1 TLB
    lookup: L1 TLB hits, added to ``counted`` (TLB fetch hits, TLB data hits, line filter
    fetch hits, line filter data hits) for :func:`_count_settled` once per call of
    :func:`run_path`, as are the reads that also repeat the CPU's last L1 line (the loop
    keeps its few values in the host's registers: what the filters test of the machine is
    read once per run, ``setup`` of :func:`_filter_setup`, and each column is indexed
    through its :func:`_each` mask); the other reads go through the caches. ``pas`` is the
    column of physical addresses (the addresses themselves when there is none). The tests
    are :func:`kmm.tlb.tlb_repeats_last` and :func:`kmm.cache.cache_repeats_last`, spelled
    out."""
    n = acc.va.shape[0]
    tf, td, cf, cd = counted
    on_i, on_d, max_i, max_d, line_i, line_d, line_shift, masks, one = setup
    m_cpu, m_flags, m_shift, m_asid, m_vmid, m_lines, m_node = masks
    fixed, first_i, first_d, want = one
    ll = np.uint64(_tlb.LAST_TLB_FIELDS)
    while i < n:
        ui = np.uint64(i)
        c = np.uint64(acc.cpu[ui & m_cpu])
        va = acc.va[ui]
        flags = acc.flags[ui & m_flags]
        fetch = (flags & _tlb.FLAG_KIND_MASK) == _tlb.Kind.IFETCH
        k = np.uint64(0) if fetch else np.uint64(2)
        if fixed:   # (the same for the whole run: a branch the host predicts)
            first = first_i if fetch else first_d
            if not (on_i if fetch else on_d) or last[c, k] != (((va >> first) << 6) | first) \
                    or last[c, k + np.uint64(1)] != want:
                break
        else:
            first = min(np.int64(acc.shift[ui & m_shift]), max_i if fetch else max_d)
            if not (on_i if fetch else on_d) or acc.lines[ui & m_lines] != 1 \
                    or last[c, k] != (((va >> first) << 6) | first) \
                    or last[c, k + np.uint64(1)] != _tlb.context(acc.asid[ui & m_asid],
                                                                 acc.vmid[ui & m_vmid]):
                break
        pa = pas[ui]
        lv = np.uint64(0) if fetch else np.uint64(1)
        if (line_i if fetch else line_d) and \
                last[c, ll + lv] == ((pa >> line_shift) << 1) | 1:
            if fetch:
                tf += 1
                cf += 1
            else:
                td += 1
                cd += 1
        else:
            tf += fetch
            td += not fetch
            src = Source.IFETCH if fetch else Source.DATA
            s = _cache.cache_access_last(cst, np.int64(c), pa, src, out.cpu_nid[c],
                                         np.int64(acc.node[ui & m_node]), out.cache, out.mem,
                                         lline)
            out.served[np.uint64(src), np.uint64(s)] += 1
        i += 1
    return i, (tf, td, cf, cd)


@njit(inline="always", _nrt=False)
def _count_settled(out, counted):
    """Add what :func:`_settled` counted to the path's counters."""
    tf, td, cf, cd = counted
    _tlb.count_repeats(out.tlb, tf, td)
    _cache.count_repeats(out.cache, cf, cd)
    out.served[Source.IFETCH, Served.L1] += cf
    out.served[Source.DATA, Served.L1] += cd


# The two walkers are called, not inlined: they run only on a TLB miss, and inlining them
# (stage 2 at two call sites, each with its cache reads and walk-cache fills) made
# ``run_path`` 2.4 times slower to compile (132 s against 54 s, cold, on the 2-core
# reference machine) for 40 % more time only where every access walks (0.28 s against
# 0.40 s for 2 M random accesses to 64 K pages through a 64-entry TLB).
# :func:`kmm.tlb.tlb_translate_last` and :func:`kmm.cache.cache_access_last` are called too
# (compiled once each, not into both loops of ``run_path``): 99 s against 74 s of CPU to
# compile ``run_path`` cold, and the same speed on every benchmark trace (``kmm bench``).
# The replacement policy's hooks are called too (:mod:`kmm.policy`).
@njit(_nrt=False)
def stage2_walk(tst, cst, ws, out, c, ipa, leaf, vmid, cnode, mnode, tn, i):
    """Stage-2 walk of ``ipa`` down to a leaf at ``leaf``, through the stage-2 walk cache
    (which holds IPA -> PA leaves and upper descriptors, tagged by VMID). Returns the
    references made."""
    wg = ws.geo
    out.walk[WalkEvent.S2_WALKS] += 1
    start = wg[1, W_START]
    hit = _cached_level(tst, Structure.S2WALK, c, ipa, wg[1, W_SHIFT + leaf + 1], 0, vmid, wg,
                        1, out.tlb)
    if hit >= leaf:
        out.walk[WalkEvent.S2_CACHE_HITS] += 1
        return 0
    if tst.geo[Structure.S2WALK, _tlb.G_SETS] > 0:
        out.walk[WalkEvent.S2_CACHE_MISSES] += 1
    first = max(hit + 1, start)
    for lv in range(first, leaf + 1):
        dpa, tnode = _descriptor(ws, 1, lv, ipa, np.int64(vmid), cnode, mnode, tn, i)
        _read(cst, out, c, dpa, cnode, tnode, 1, lv)
        if lv == 3 and wg[1, W_S2_PAGE_LEAVES] == 0:
            continue  # an IPA -> PA page leaf is not kept
        if tst.geo[Structure.S2WALK, _tlb.G_SETS] > 0:
            _tlb.tlb_fill(tst, Structure.S2WALK, c, ipa, wg[1, W_SHIFT + lv + 1], 0, vmid,
                          out.tlb)
    n = leaf - first + 1
    out.walk[WalkEvent.S2_REFS] += n
    return n


@njit(_nrt=False)
def stage1_walk(tst, cst, ws, out, c, va, leaf, asid, vmid, glob, cnode, mnode, tn, i):
    """Stage-1 walk of ``va`` (nested under stage 2 when stage 2 is on), through the
    stage-1 walk cache. Returns the references made (stage-1 and stage-2)."""
    wg = ws.geo
    start = wg[0, W_START]
    easid = -1 if glob else asid
    refs = 0
    first = start
    if leaf > start:
        hit = _cached_level(tst, Structure.WALK, c, va, wg[0, W_SHIFT + leaf], asid, vmid, wg,
                            0, out.tlb)
        if hit >= start:
            out.walk[WalkEvent.WALK_CACHE_HITS] += 1
            first = min(hit + 1, leaf)
        elif tst.geo[Structure.WALK, _tlb.G_SETS] > 0:
            out.walk[WalkEvent.WALK_CACHE_MISSES] += 1
    space = (np.int64(vmid) << 32) | (np.int64(easid) + 1)
    nested = wg[1, W_ON] != 0
    for lv in range(first, leaf + 1):
        dpa, tnode = _descriptor(ws, 0, lv, va, space, cnode, mnode, tn, i)
        if nested:
            refs += stage2_walk(tst, cst, ws, out, c, dpa, wg[1, W_TABLE_LEAF], vmid, cnode,
                                tnode, tn, i)
        _read(cst, out, c, dpa, cnode, tnode, 0, lv)
        if lv < leaf and tst.geo[Structure.WALK, _tlb.G_SETS] > 0:
            _tlb.tlb_fill(tst, Structure.WALK, c, va, wg[0, W_SHIFT + lv + 1], easid, vmid,
                          out.tlb)
    n = leaf - first + 1
    out.walk[WalkEvent.S1_REFS] += n
    return refs + n


@njit(_nrt=False)
def run_path(tst, cst, ws, acc, out):
    """Every access: TLB hierarchy; on a miss the stage-1 walk (nested under stage 2) and,
    with a stage 2, the stage-2 walk of the output IPA; then the access's lines through the
    caches. Counts accumulate in ``out`` (and per tag in ``out.by_tag`` when it has rows).

    With a row of ``out.last`` per CPU, an access that repeats its CPU's last L1 TLB lookup
    or last L1 line skips the lookup (:func:`kmm.tlb.tlb_translate_last`,
    :func:`kmm.cache.cache_access_last`): the same counts, fewer host cache misses. Without
    tags or recorded references, runs of accesses the translation filter settles go
    through a loop of their own (:func:`_settled`), whose L1 hits are added to the counters
    once, at the end of the call. The filters start empty on every call, so the machine may
    change between calls."""
    wg = ws.geo
    n = acc.va.shape[0]
    record = out.refs.shape[0] == n
    same_pa = acc.pa.shape[0] == 1 and n > 1
    tagged = out.by_tag.shape[0] > 0
    line_shift = cst.geo[_cache.K_PARAMS, 0]
    bt = out.by_tag
    last = out.last
    filtered = last.shape[0] == tst.ent.shape[0] and last.shape[0] == cst.priv.shape[0] \
        and last.shape[1] >= LAST_FIELDS
    if filtered:
        last[:, :] = 0
    else:
        last = last[:0]   # no rows: the filters are off
    lline = last[:, _tlb.LAST_TLB_FIELDS:]
    settle = filtered and not tagged and not record
    counted = (np.int64(0), np.int64(0), np.int64(0), np.int64(0))
    m_cpu, m_flags, m_shift = _each(acc.cpu), _each(acc.flags), _each(acc.shift)
    m_asid, m_vmid, m_node = _each(acc.asid), _each(acc.vmid), _each(acc.node)
    m_leaf, m_leaf2, m_tag, m_lines = _each(acc.leaf), _each(acc.leaf2), _each(acc.tag), \
        _each(acc.lines)
    pas = acc.va if same_pa else acc.pa
    setup = _filter_setup(tst, cst, acc)
    i = 0
    while i < n:
        if settle:
            i, counted = _settled(cst, acc, out, last, lline, i, pas, setup, counted)
            if i == n:
                break
        ui = np.uint64(i)
        c = np.int64(acc.cpu[ui & m_cpu])
        cnode = out.cpu_nid[np.uint64(c)]
        va = acc.va[ui]
        flags = acc.flags[ui & m_flags]
        asid = acc.asid[ui & m_asid]
        vmid = acc.vmid[ui & m_vmid]
        mnode = np.int64(acc.node[ui & m_node])
        pa = pas[ui]
        refs = 0
        t = np.int64(acc.tag[ui & m_tag]) if tagged else np.int64(0)
        served = _tlb.tlb_translate_last(tst, c, va, flags, np.int64(acc.shift[ui & m_shift]),
                                         asid, vmid, out.tlb, last)
        if tagged:
            bt[t, TagEvent.ACCESSES] += 1
            if served >= 1:
                bt[t, TagEvent.L1_TLB_MISSES] += 1
        if served == 2:
            out.walk[WalkEvent.WALKS] += 1
            if tagged:
                for k in range(4):
                    bt[t, TagEvent.WALK_READS_L1 + k] -= out.served[Source.WALK, k]
            glob = (flags & _tlb.FLAG_GLOBAL) != 0
            if wg[0, W_ON] != 0:
                refs = stage1_walk(tst, cst, ws, out, c, va, np.int64(acc.leaf[ui & m_leaf]),
                                   asid, vmid, glob, cnode, mnode, acc.table_nid, i)
            if wg[1, W_ON] != 0:
                ipa = pa if wg[0, W_ON] != 0 else va
                refs += stage2_walk(tst, cst, ws, out, c, ipa,
                                    np.int64(acc.leaf2[ui & m_leaf2]), vmid, cnode, mnode,
                                    acc.table_nid, i)
            out.walk[WalkEvent.REFS] += refs
            if filtered and cst.geo[_cache.K_PARAMS, 1] == _cache.Level.L1D:
                lline[c, _cache.Level.L1D] = 0   # the walk's reads went through L1 D
            if tagged:
                bt[t, TagEvent.WALKS] += 1
                bt[t, TagEvent.WALK_REFS] += refs
                for k in range(4):
                    bt[t, TagEvent.WALK_READS_L1 + k] += out.served[Source.WALK, k]
        if record:
            out.refs[ui] = refs
        src = Source.IFETCH if (flags & _tlb.FLAG_KIND_MASK) == _tlb.Kind.IFETCH else Source.DATA
        for j in range(acc.lines[ui & m_lines]):
            s = _cache.cache_access_last(cst, c, pa + (np.int64(j) << line_shift), src, cnode,
                                         mnode, out.cache, out.mem, lline)
            out.served[np.uint64(src), np.uint64(s)] += 1
            if tagged:
                bt[t, (TagEvent.FIRST_L1 if j == 0 else TagEvent.REST_L1) + s] += 1
        i += 1
    if settle:   # (no reader of the counters runs inside the loop)
        _count_settled(out, counted)


_run_path = run_path


# ---------------------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------------------
def walk_references(g: Geometry, leaf_level: int = 3, cached_level: int | None = None) -> int:
    """Descriptor reads of a 1D walk to a leaf at ``leaf_level`` when the walk cache holds
    the descriptor of ``cached_level`` (None: nothing cached)."""
    g._check_level(leaf_level)
    first = g.start_level if cached_level is None else min(cached_level + 1, leaf_level)
    return leaf_level - first + 1


def nested_references(s1: Geometry, s2: Geometry, s1_leaf: int = 3, s2_leaf: int = 3,
                      s2_table_leaf: int | None = None) -> int:
    """References of a 2D walk with no walk-cache hits: each of the stage-1 descriptors
    walked needs a stage-2 walk to ``s2_table_leaf`` (default ``s2_leaf``) and the output
    IPA one to ``s2_leaf``. Equals :func:`kmm.geometry.nested_walk_references` for leaves
    at level 3."""
    n = walk_references(s1, s1_leaf)
    m_tables = walk_references(s2, s2_leaf if s2_table_leaf is None else s2_table_leaf)
    return n + n * m_tables + walk_references(s2, s2_leaf)


@dataclass(frozen=True)
class PathConfig:
    """Everything between an address and memory.

    Parameters
    ----------
    tlb : :class:`kmm.tlb.TLBConfig` (its walk caches are used by the walker)
    caches : :class:`kmm.cache.CacheConfig`
    stage1 : stage-1 geometry (None: the addresses are IPAs, stage 2 only)
    stage2 : stage-2 geometry (None: no stage 2)
    nodes : NUMA nodes
    cpu_nid : node of each CPU (default all on node 0)
    table_node, table_fixed_nid : stage-1 :class:`TableNode` rule and fixed node, one value
        or one per level (top first)
    s2_table_node, s2_table_fixed_nid : the same for stage-2 tables
    s2_table_leaf_level : the stage-2 leaf level mapping the pages that hold stage-1 tables
    s2_walk_cache_page_leaves : the stage-2 walk cache keeps IPA -> PA entries of page
        (level-3) leaves as well as blocks and table descriptors (False: blocks only, as
        the Cortex-A76 and Neoverse N1 L2 TLB, TRM table A5-3)
    table_capacity : slots of the table-frame map (a power of two; at most 3/4 are used)
    """

    tlb: TLBConfig
    caches: CacheConfig = field(default_factory=CacheConfig)
    stage1: Geometry | None = None
    stage2: Geometry | None = None
    nodes: int = 1
    cpu_nid: tuple[int, ...] | None = None
    table_node: object = TableNode.FIXED
    table_fixed_nid: object = 0
    s2_table_node: object = TableNode.FIXED
    s2_table_fixed_nid: object = 0
    s2_table_leaf_level: int = 3
    table_capacity: int = 1 << 16
    s2_walk_cache_page_leaves: bool = True

    def __post_init__(self):
        check_int("nodes", self.nodes, lo=1, hi=1024)
        check_pow2("table_capacity", self.table_capacity)
        if self.stage1 is None and self.stage2 is None:
            raise ConfigError("needs a stage-1 or a stage-2 geometry", "stage1")
        if self.stage1 is not None and self.stage1.stage != 1:
            raise ConfigError("must be a stage-1 geometry", "stage1")
        if self.stage2 is not None and self.stage2.stage != 2:
            raise ConfigError("must be a stage-2 geometry (kmm.geometry.stage2)", "stage2")
        if self.tlb.cpus != self.caches.cpus:
            raise ConfigError(f"TLB has {self.tlb.cpus} CPUs, caches {self.caches.cpus}",
                              "caches")
        nid = self.cpu_nid if self.cpu_nid is not None else (0,) * self.tlb.cpus
        if len(nid) != self.tlb.cpus or any(not 0 <= x < self.nodes for x in nid):
            raise ConfigError(f"needs one node in 0..{self.nodes - 1} per CPU "
                              f"({self.tlb.cpus})", "cpu_nid")
        object.__setattr__(self, "cpu_nid", tuple(int(x) for x in nid))
        self.walk_geometry()  # validates the placement rules

    def walk_geometry(self) -> np.ndarray:
        """Kernel walk geometry: row 0 stage 1, row 1 stage 2 (zeros where absent)."""
        return np.stack([
            geometry_row(self.stage1, self.table_node, self.table_fixed_nid, self.nodes),
            geometry_row(self.stage2, self.s2_table_node, self.s2_table_fixed_nid, self.nodes,
                         self.s2_table_leaf_level, self.s2_walk_cache_page_leaves)])

    def walk_probe_shifts(self) -> dict[Structure, tuple[int, ...]]:
        """Tag sizes of the walk caches: the level shifts of the table levels they cache
        (every stage-2 level, leaves included, for the stage-2 walk cache)."""
        out = {}
        if self.stage1 is not None:
            g = self.stage1
            out[Structure.WALK] = tuple(g.level_shift(lv) for lv in range(g.start_level, 3))
        if self.stage2 is not None:
            g = self.stage2
            out[Structure.S2WALK] = tuple(g.level_shift(lv) for lv in range(g.start_level, 4))
        return out


@dataclass(frozen=True)
class PathCosts:
    """Cost parameters turning counts into time. :attr:`SOURCES` names each field's source;
    ``assumed`` ones must be swept.

    ``latency_ns[i][j]`` is a DRAM read from a CPU on node i to memory on node j.
    """

    latency_ns: tuple[tuple[float, ...], ...] = ((81.0,),)
    cpu_ghz: float = 2.5
    l1_cycles: float = 4.0
    l2_cycles: float = 11.0
    llc_ns: float = 30.0
    l2_tlb_cycles: float = 5.0

    SOURCES = {
        "latency_ns": "web: public Graviton2 review measurements: local DRAM ~81 ns",
        "l1_cycles": "web: public Graviton2 review measurements: L1 D 4 cycles",
        "l2_cycles": "web: public Graviton2 review measurements: L2 (1 MB) 11 cycles",
        "cpu_ghz": "assumed",
        "llc_ns": "assumed",
        "l2_tlb_cycles": "assumed",
    }

    def __post_init__(self):
        lat = np.asarray(self.latency_ns, dtype=np.float64)
        if lat.ndim != 2 or lat.shape[0] != lat.shape[1] or not np.all(lat > 0):
            raise ConfigError("must be a square matrix of positive ns", "latency_ns")
        check_float("cpu_ghz", self.cpu_ghz, lo=0.1, hi=10)
        for name in ("l1_cycles", "l2_cycles", "llc_ns", "l2_tlb_cycles"):
            check_float(name, getattr(self, name), lo=0)


@dataclass
class PathResult:
    """Raw counts of a full-path run; time is :meth:`time_ns` over :class:`PathCosts`."""

    tlb: Counters
    cache: Counters
    walk: Counters
    mem_reads: np.ndarray      # [Source, cpu node, line node]
    walk_refs_by_node: np.ndarray   # [cpu node, table node]
    walk_refs_by_level: np.ndarray  # [stage - 1, level + 1]
    served: np.ndarray         # [Source, Served]
    refs: np.ndarray | None = None  # per-access walk references, if recorded
    by_tag: np.ndarray | None = None  # [tag, TagEvent] of a tagged path

    def __sub__(self, other: "PathResult") -> "PathResult":
        """Counts of the run between two snapshots (warm-up subtraction)."""
        by_tag = None if self.by_tag is None or other.by_tag is None else \
            self.by_tag - other.by_tag
        return PathResult(self.tlb - other.tlb, self.cache - other.cache,
                          self.walk - other.walk, self.mem_reads - other.mem_reads,
                          self.walk_refs_by_node - other.walk_refs_by_node,
                          self.walk_refs_by_level - other.walk_refs_by_level,
                          self.served - other.served, None, by_tag)

    def __add__(self, other: "PathResult") -> "PathResult":
        """Counts of two runs together (e.g. of two machines)."""
        by_tag = None if self.by_tag is None or other.by_tag is None else \
            self.by_tag + other.by_tag
        return PathResult(self.tlb + other.tlb, self.cache + other.cache,
                          self.walk + other.walk, self.mem_reads + other.mem_reads,
                          self.walk_refs_by_node + other.walk_refs_by_node,
                          self.walk_refs_by_level + other.walk_refs_by_level,
                          self.served + other.served, None, by_tag)

    def time_ns(self, costs: PathCosts) -> dict[str, float]:
        """Time of the run (ns) by component, and ``memory_ns_by_node`` (array, per node
        holding the line). L1 TLB hits are free (in the load pipeline)."""
        lat = np.asarray(costs.latency_ns, dtype=np.float64)
        if lat.shape[0] < self.mem_reads.shape[1]:
            raise ConfigError(f"latency matrix is {lat.shape[0]}x{lat.shape[0]} for "
                              f"{self.mem_reads.shape[1]} nodes", "latency_ns")
        lat = lat[:self.mem_reads.shape[1], :self.mem_reads.shape[1]]
        hit_ns = np.array([costs.l1_cycles / costs.cpu_ghz, costs.l2_cycles / costs.cpu_ghz,
                           costs.llc_ns, 0.0])
        by_src = self.served.astype(np.float64) @ hit_ns
        mem_src = np.einsum("sij,ij->s", self.mem_reads.astype(np.float64), lat)
        mem_node = np.einsum("sij,ij->j", self.mem_reads.astype(np.float64), lat)
        tlb_ns = self.tlb.l2_hits * costs.l2_tlb_cycles / costs.cpu_ghz
        walk_ns = by_src[Source.WALK] + mem_src[Source.WALK]
        fetch_ns = by_src[Source.IFETCH] + mem_src[Source.IFETCH]
        data_ns = by_src[Source.DATA] + mem_src[Source.DATA]
        total = tlb_ns + walk_ns + fetch_ns + data_ns
        return {"tlb_ns": float(tlb_ns), "walk_ns": float(walk_ns), "ifetch_ns": float(fetch_ns),
                "data_ns": float(data_ns), "total_ns": float(total),
                "total_cycles": float(total * costs.cpu_ghz), "memory_ns_by_node": mem_node}


#: The fields of :class:`PathConfig` a :meth:`Path.regime` may change.
REGIME_FIELDS = ("stage1", "stage2", "table_node", "table_fixed_nid", "s2_table_node",
                 "s2_table_fixed_nid", "s2_table_leaf_level")


class Path:
    """A full translation + memory path with state that persists across runs; each
    :meth:`run` returns the cumulative counts so far (subtract an earlier result for the
    counts of a measured part after a warm-up).

    ``tags``: accesses may carry a tag in ``0..tags-1`` (``run(..., tag=...)``), and
    :class:`TagEvent` counters are kept per tag (:attr:`PathResult.by_tag`).
    """

    def __init__(self, config: PathConfig, tags: int = 0):
        self.config = config
        self.tags = check_int("tags", tags, lo=0, hi=1 << 26)
        self.tlb_state = config.tlb.to_state(config.walk_probe_shifts())
        self.cache_state = config.caches.to_state()
        self.wg = config.walk_geometry()
        self.regime_id = 0
        self._regimes = [self]
        cap = config.table_capacity
        self.walk_state = WalkState(geo=self.wg, tkeys=np.zeros((cap, 2), np.int64),
                                    tframe=np.full(cap, -1, np.int64),
                                    meta=np.zeros(2, np.int64),
                                    memo=np.full((2, 5, MEMO_SLOTS, 3), -1, np.int64))
        k = config.nodes
        self._out = PathOut(
            tlb=np.zeros(len(TLBEvent), np.int64), cache=np.zeros(len(CacheEvent), np.int64),
            walk=np.zeros(len(WalkEvent), np.int64), mem=np.zeros((3, k, k), np.int64),
            refs_node=np.zeros((k, k), np.int64), refs_level=np.zeros((2, 5), np.int64),
            served=np.zeros((3, 4), np.int64), refs=np.empty(0, np.int16),
            cpu_nid=np.asarray(config.cpu_nid, np.int64),
            by_tag=np.zeros((self.tags, len(TagEvent)), np.int64),
            last=np.zeros((config.tlb.cpus, LAST_FIELDS), np.int64))

    @property
    def out(self) -> PathOut:
        """The cumulative kernel counters of this machine (shared by its regimes)."""
        return self._out

    def regime(self, **changes) -> "Path":
        """Another translation regime of this machine: the configuration with ``changes``
        (any of :data:`REGIME_FIELDS`: its own stage-1 and stage-2 geometries and table
        placement), sharing this path's TLBs and walk caches, line caches, table-frame map,
        tags and counters. Its table pages are its own (never another regime's), and the
        TLB must already hold its entry sizes. A run of either regime returns the counts
        of the whole machine.

        Models a CPU switching between translation regimes, such as pKVM's EL2 (its own
        one-stage tables, ``pkvm_pgtable``) and the host's EL1&0 under stage 2 (Arm ARM
        D8.1.2 "Translation regimes").
        """
        bad = sorted(set(changes) - set(REGIME_FIELDS))
        if bad:
            raise ConfigError(f"a regime changes only {', '.join(REGIME_FIELDS)}", bad[0])
        if len(self._regimes) >= MAX_REGIMES:
            raise ConfigError(f"at most {MAX_REGIMES} regimes per machine", "regime")
        cfg = replace(self.config, **changes)
        have = self.config.walk_probe_shifts()
        for st, shifts in cfg.walk_probe_shifts().items():
            if not set(shifts) <= set(have.get(st, ())):
                raise ConfigError(f"the machine's {st.name.lower()} cache holds no entry of "
                                  f"the regime's level sizes {sorted(shifts)}", "stage1")
        p = Path.__new__(Path)
        p.config, p.tags = cfg, self.tags
        p.tlb_state, p.cache_state = self.tlb_state, self.cache_state
        p.regime_id = len(self._regimes)
        p.wg = cfg.walk_geometry()
        p.wg[:, W_REGIME] = p.regime_id
        p._regimes = self._regimes
        p._regimes.append(p)
        p.walk_state = self.walk_state._replace(
            geo=p.wg, memo=np.full((2, 5, MEMO_SLOTS, 3), -1, np.int64))
        p._out = self._out
        return p

    def result(self, refs: np.ndarray | None = None) -> PathResult:
        """A snapshot of the cumulative counts."""
        o = self._out
        return PathResult(Counters(TLBEvent, o.tlb.copy()), Counters(CacheEvent, o.cache.copy()),
                          Counters(WalkEvent, o.walk.copy()), o.mem.copy(), o.refs_node.copy(),
                          o.refs_level.copy(), o.served.copy(), refs,
                          o.by_tag.copy() if self.tags else None)

    def run(self, addresses, *, kind=None, pa=None, leaf_level=None, cont=None,
            s2_leaf_level=None, s2_cont=None, asid=None, vmid=None, cpu=None, global_=None,
            node=None, table_nid=None, tag=None, lines=None, record: bool = False,
            tlb_shift=None) -> PathResult:
        """See :func:`simulate_path`."""
        acc = self._arrays(addresses, kind, pa, leaf_level, cont, s2_leaf_level, s2_cont, asid,
                           vmid, cpu, global_, node, table_nid, tag, lines, tlb_shift)
        n = acc.va.shape[0]
        out = self._out._replace(refs=np.zeros(n if record else 0, np.int16))
        run_path(self.tlb_state, self.cache_state, self.walk_state, acc, out)
        if self.walk_state.meta[1]:
            raise ConfigError(f"more table pages than the table map holds "
                              f"({3 * self.config.table_capacity // 4}); raise it",
                              "table_capacity")
        return self.result(out.refs if record else None)

    def arrays(self, addresses, *, kind=None, pa=None, leaf_level=None, cont=None,
               s2_leaf_level=None, s2_cont=None, asid=None, vmid=None, cpu=None, global_=None,
               node=None, table_nid=None, tag=None, lines=None, tlb_shift=None) -> PathArrays:
        """The validated kernel arrays :meth:`run` would pass to :func:`run_path` for these
        accesses (a column of length 1 applies to every access)."""
        return self._arrays(addresses, kind, pa, leaf_level, cont, s2_leaf_level, s2_cont, asid,
                            vmid, cpu, global_, node, table_nid, tag, lines, tlb_shift)

    def _arrays(self, addresses, kind, pa, leaf_level, cont, s2_leaf_level, s2_cont, asid, vmid,
                cpu, global_, node, table_nid, tag=None, lines=None, tlb_shift=None
                ) -> PathArrays:
        cfg = self.config
        s1, s2 = cfg.stage1, cfg.stage2
        va = np.asarray(addresses)
        n = va.shape[0] if va.ndim == 1 else -1
        if n < 0:
            raise ConfigError("must be one-dimensional", "addresses")
        va = np.ascontiguousarray(va.astype(np.uint64, copy=False)).view(np.int64)
        leaf = _levels("leaf_level", leaf_level, n, s1)
        leaf2 = _levels("s2_leaf_level", s2_leaf_level, n, s2)
        shift = None
        cont_shift = s2_cont_shift = None
        if s1 is not None:
            shift = _tlb.leaf_shifts(s1, leaf)
            if cont is not None:
                cont_shift = _tlb.cont_shifts(s1, leaf, cont)
        if s2 is not None:
            s2_shift = _tlb.leaf_shifts(s2, leaf2)
            if s2_cont is not None:
                s2_cont_shift = _tlb.cont_shifts(s2, leaf2, s2_cont)
            if shift is None:
                shift, cont_shift, s2_shift, s2_cont_shift = s2_shift, s2_cont_shift, None, None
        else:
            s2_shift = None
        tacc = _tlb.make_accesses(cfg.tlb, va.view(np.uint64), kind=kind, page_shift=shift,
                                  asid=asid, vmid=vmid, cpu=cpu, global_=global_,
                                  cont_shift=cont_shift, s2_page_shift=s2_shift,
                                  s2_cont_shift=s2_cont_shift)
        if tlb_shift is not None:
            ts = _tlb.per_access_column("tlb_shift", tlb_shift, n, np.uint8, 0)
            bad = np.setdiff1d(np.unique(ts), np.asarray(cfg.tlb.page_shifts, dtype=np.uint8))
            if bad.size:
                raise ConfigError(f"entry sizes 2**{bad.tolist()} are not held by this TLB",
                                  "tlb_shift")
            tacc = tacc._replace(shift=ts)
        if pa is None:
            pa_a = np.zeros(1, np.int64) if n != 1 else va.copy()
        else:
            pa_a = np.asarray(pa)
            if pa_a.shape != (n,):
                raise ConfigError(f"needs one physical address per access ({n})", "pa")
            pa_a = np.ascontiguousarray(pa_a.astype(np.uint64, copy=False)).view(np.int64)
        for name, col in (("asid", tacc.asid), ("vmid", tacc.vmid)):
            if col.max(initial=0) >= 1 << 16:
                raise ConfigError("must be below 65536 (16-bit ASIDs and VMIDs)", name)
        node_a = _tlb.per_access_column("node", node, n, np.int32, 0, lo=0, hi=cfg.nodes - 1,
                                        message=f"nodes must be in 0..{cfg.nodes - 1}")
        if table_nid is None:
            tn = np.zeros((1, 1), np.int32)
            wg = self.wg
            if np.any(wg[:, W_RULE:W_RULE + 5] == TableNode.GIVEN):
                raise ConfigError("TableNode.GIVEN needs table_nid", "table_nid")
        else:
            tn = np.ascontiguousarray(table_nid, dtype=np.int32)
            levels = max(g.levels for g in (s1, s2) if g is not None)
            if tn.ndim != 2 or tn.shape[0] not in (1, n) or tn.shape[1] < levels:
                raise ConfigError(f"must have shape (n, levels) = ({n}, {levels})",
                                  "table_nid")
            if tn.min() < 0 or tn.max() >= cfg.nodes:
                raise ConfigError(f"nodes must be in 0..{cfg.nodes - 1}", "table_nid")
        if tag is None:
            if self.tags:
                raise ConfigError(f"a path with {self.tags} tags needs a tag per access", "tag")
            tag_a = np.zeros(1, np.int32)
        else:
            if not self.tags:
                raise ConfigError("an untagged path (tags=0) takes no tag", "tag")
            tag_a = _tlb.per_access_column("tag", tag, n, np.int32, 0, lo=0, hi=self.tags - 1,
                                           message=f"tags must be in 0..{self.tags - 1}")
        lines_a = _tlb.per_access_column("lines", 1 if lines is None else lines, n, np.int32, 1,
                                         lo=0, message="must be 0 or more lines")
        cols = PathArrays(va=tacc.va, pa=pa_a, flags=tacc.flags, shift=tacc.shift, leaf=leaf,
                          leaf2=leaf2, asid=tacc.asid, vmid=tacc.vmid, cpu=tacc.cpu,
                          node=node_a, table_nid=tn, tag=tag_a, lines=lines_a)
        # run_path is compiled for writable arrays: a read-only column (a caller's kept
        # trace, kmm.mech.host.model.node_trace) is copied, or Numba would compile the
        # whole path a second time for read-only array types
        return cols._replace(**{f: a.copy() for f, a in zip(cols._fields, cols)
                                if not a.flags.writeable})


def _levels(name, value, n, g) -> np.ndarray:
    if g is None:
        return np.full(1, 3, np.int8)
    a = _tlb.per_access_column(name, 3 if value is None else value, n, np.int8, 3)
    bad = np.setdiff1d(np.unique(a), np.asarray(g.leaf_levels, np.int8))
    if bad.size:
        raise ConfigError(f"levels {bad.tolist()} hold no leaf for {g.name}; leaf levels: "
                          f"{list(g.leaf_levels)}", name)
    return a


def simulate_path(addresses, config: PathConfig, **per_access) -> PathResult:
    """Run ``addresses`` through a fresh full path (TLBs, walks, caches, NUMA memory).

    Per-access arguments (one value per access or one for all): ``kind``
    (:class:`kmm.tlb.Kind`), ``pa`` (physical address of the data; default the address
    itself), ``leaf_level`` and ``cont`` (stage-1 leaf level and contiguous bit, from
    :meth:`kmm.pagetable.PageTable.translate_many`), ``s2_leaf_level`` and ``s2_cont``,
    ``asid``, ``vmid``, ``cpu``, ``global_``, ``node`` (node holding the data line),
    ``table_nid`` (``[n, levels]`` table nodes for :attr:`TableNode.GIVEN`), ``lines``
    (consecutive lines read from ``pa``, default 1; 0 translates only), ``record`` (keep
    per-access walk references in ``PathResult.refs``), ``tlb_shift`` (log2 of the TLB entry
    size each access fills, in place of the one its leaves give: a counterfactual run that
    changes what an entry covers apart from the walk that fills it). For tags, use
    ``Path(config, tags=n).run(..., tag=...)``.
    """
    return Path(config).run(addresses, **per_access)


def bench_config(nodes: int = 2) -> PathConfig:
    """The benchmark path: Neoverse N1 TLBs (every arm64 4K leaf and contiguous size) and
    caches, 4K 48-bit stage 1, tables interleaved over ``nodes``."""
    from . import geometry
    g = geometry.arm64("4K", 48)
    return PathConfig(tlb=TLBConfig.neoverse_n1().with_geometry(g), stage1=g, nodes=nodes,
                      table_node=TableNode.INTERLEAVE)


def bench_full_path_inputs(addresses, nodes: int = 2) -> tuple[PathConfig, dict]:
    """:func:`bench_config` and the per-access arguments of :func:`bench_full_path`."""
    va = np.asarray(addresses, dtype=np.uint64)
    return bench_config(nodes), {"node": ((va >> np.uint64(12)) % np.uint64(nodes))
                                 .astype(np.int32)}


def bench_full_path(addresses, nodes: int = 2) -> PathResult:
    """Run ``addresses`` (loads) through :func:`bench_config`, data interleaved over the
    nodes by 4K page: the call ``kmm bench`` times."""
    cfg, kw = bench_full_path_inputs(addresses, nodes)
    return simulate_path(np.asarray(addresses, dtype=np.uint64), cfg, **kw)


def bench_trace_inputs(trace, nodes: int = 2) -> tuple[PathConfig, dict]:
    """The benchmark path of a recorded trace (:class:`kmm.traces.Trace`; a kernel trace's
    vCPUs and physical addresses are used when it has them): :func:`bench_config` with one
    CPU per vCPU, CPU ``k`` on node ``k mod nodes``, data lines interleaved over the nodes by
    4K physical page (the virtual address where the physical one is unknown). Returns the
    configuration and the per-access arguments of :meth:`Path.run`."""
    va = np.asarray(trace.address, dtype=np.uint64)
    cpu = getattr(trace, "cpu", None)
    cpus = 1 if cpu is None or cpu.size == 0 else int(cpu.max()) + 1
    pa = getattr(trace, "pa", None)
    if pa is None:
        pa = va
    else:
        pa = np.where(pa == np.uint64(0xFFFF_FFFF_FFFF_FFFF), va, pa)
    base = bench_config(nodes)
    cfg = replace(base, tlb=replace(base.tlb, cpus=cpus),
                  caches=replace(base.caches, cpus=cpus),
                  cpu_nid=tuple(k % nodes for k in range(cpus)))
    kw = {"pa": pa, "node": ((pa >> np.uint64(12)) % np.uint64(nodes)).astype(np.int32),
          **trace.kwargs()}
    if cpus > 1:
        kw["cpu"] = cpu
    return cfg, kw


def bench_trace_path(trace, nodes: int = 2) -> PathResult:
    """Run a recorded trace through :func:`bench_trace_inputs`' path: the call ``kmm
    bench`` times on the shipped kernel traces."""
    cfg, kw = bench_trace_inputs(trace, nodes)
    return Path(cfg).run(trace.address, **kw)


def bench_simulate_path(n: int = 5_000_000, seed: int = 0, nodes: int = 2) -> dict:
    """Accesses per second of the full path: Neoverse N1 TLBs and caches, arm64 4K 48-bit,
    a Zipf hot set over 64 GiB with 4K pages, tables interleaved over ``nodes`` (best of 3)."""
    import time
    rng = np.random.default_rng(seed)
    pages = (rng.zipf(1.1, n) % (1 << 24)).astype(np.uint64)
    va = (pages << np.uint64(12)) | rng.integers(0, 4096, n).astype(np.uint64)
    bench_full_path(va[:1000], nodes)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        r = bench_full_path(va, nodes)
        best = min(best, time.perf_counter() - t0)
    return {"accesses": n, "seconds": best, "accesses_per_s": n / best,
            "walks": r.walk.walks, "refs": r.walk.refs}


__all__ = ["TableNode", "WalkEvent", "TagEvent", "PathConfig", "PathOut", "PathArrays",
           "LAST_FIELDS",
           "REGIME_FIELDS", "MAX_REGIMES", "run_path", "PathCosts", "PathResult", "Path",
           "simulate_path", "walk_references", "nested_references", "geometry_row",
           "table_frame", "descriptor_pa", "WalkState", "stage1_walk", "stage2_walk",
           "bench_simulate_path", "bench_full_path", "bench_config", "bench_trace_inputs",
           "bench_trace_path", "bench_full_path_inputs"]
