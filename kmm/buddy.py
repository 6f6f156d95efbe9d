"""The buddy page allocator of mm/page_alloc.c over a pool of a stated size, as Numba kernels.

Modelled on mm/page_alloc.c as of v6.1-v6.9 (before the 6.10 rework that keeps every free
page on the list of its pageblock's type):

- free lists per (order, migratetype) for orders 0..MAX_PAGE_ORDER inclusive, intrusive
  doubly-linked lists in int32 arrays indexed by pfn; blocks are taken from the head
  (``get_page_from_free_area``) and added at the head, or at the tail when
  ``buddy_merge_likely`` says the block's buddy will soon merge (``__free_one_page``);
- ``__rmqueue_smallest`` + ``expand``: the smallest free block of the requested type, split
  down, upper halves back on the free lists;
- ``__rmqueue_fallback`` with the ``fallbacks`` table: largest free block of a fallback type
  first, or the smallest for a movable request that may not steal (``find_smallest``);
  ``can_steal_fallback`` (order >= pageblock_order / 2, or an unmovable/reclaimable
  request); ``steal_suitable_fallback``: blocks of pageblock_order or more take their
  pageblocks over (``change_pageblock_range``), smaller ones move every free page of the
  pageblock (``move_freepages_block``) and claim the pageblock when free plus compatible
  pages reach half of it (``alike_pages``), else the block alone moves (``single_page``);
  ``ALLOC_NOFRAGMENT`` (no stealing below pageblock_order on the first pass) as an option;
- ``__free_one_page``: merge with free buddies up to MAX_PAGE_ORDER, never across
  pageblocks of unmergeable types (``migratetype_is_mergeable``) at or above pageblock_order;
  the freed block goes to the list of its pageblock's type (``get_pfnblock_migratetype``);
- boot: every pageblock starts ``MIGRATE_MOVABLE`` (``memmap_init_range``) and memory is
  freed in the largest aligned blocks (``__free_pages_memory``, ``FPI_TO_TAIL``).

Migratetypes are data (:class:`MigrateTable`): the kernel's three PCP types by default, and
mechanisms may define more (for example per-sensitivity types) with their own fallbacks
table; each type has a mobility class that the steal heuristics read.

Mechanisms act at allocation and free by composing these kernels: their own ``@njit`` code
calls :func:`alloc_pages` and :func:`free_pages`, acts on the returned pfn, reads the
pageblock conversion log that every allocation leaves in ``state.ev`` (the pageblocks whose
type changed and their old types), and keeps per-page state in the ``flags`` bitfield
(:func:`flags_update`), whose bits the mechanism defines.

Per-CPU page lists (:class:`PcpConfig`, :func:`pcp_alloc`, :func:`pcp_free`) follow v6.1's
``rmqueue_pcplist`` and ``free_unref_page_commit`` with static ``high`` and ``batch``.

Not modelled: zones and watermarks, highatomic reserves, CMA,
compaction, guard pages, page shuffling. A higher-order movable allocation counts all its
pages as movable when a pageblock is scanned (as compound pages do).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from ._jit import njit
from .config import check_int
from .counters import Counters, new_counts
from .errors import ConfigError


# The allocator's kernels never create arrays, so they are compiled without the Numba runtime:
# with it, every call that touches the state pays reference counting on each of its arrays,
# which made order-0 alloc+free about 40x slower.
_kernel = njit(_nrt=False)
_inner = njit(_nrt=False, python=False)   # called by kernels only
# a reassigned scalar starts as ``np.int64(-1)``, not ``-1`` (:mod:`kmm._jit`)
# The hot path is inlined into its callers: a call passes every array of the state
# separately, which costs more than an order-0 allocation itself.
_inline = njit(_nrt=False, inline="always")


class MigrateType(IntEnum):
    """The kernel's PCP migratetypes (include/linux/mmzone.h), also the mobility classes."""

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2


class BuddyEvent(IntEnum):
    """Allocator counters (one int64 slot each)."""

    ALLOCS = 0               # successful allocations
    ALLOC_PAGES = 1          # pages handed out
    FREES = 2
    FREE_PAGES = 3           # pages returned
    FAILURES = 4             # allocations that found no block
    SPLITS = 5               # halves put back on a free list by expand()
    MERGES = 6               # buddy pairs merged by __free_one_page
    MERGE_BLOCKED = 7        # merges refused between unmergeable pageblock types
    FALLBACKS = 8            # __rmqueue_fallback steals (mm_page_alloc_extfrag events)
    STEAL_SINGLE = 9         # fallbacks that moved only the block (single_page)
    BLOCK_CLAIMS = 10        # pageblocks claimed through move_freepages_block
    PAGEBLOCK_CONVERSIONS = 11  # pageblocks whose type changed (any path)
    FREE_PAGES_MOVED = 12    # free pages moved between lists by move_freepages_block


@dataclass(frozen=True)
class MigrateTable:
    """Migratetypes as data: names, mobility class, fallbacks order, mergeability.

    Parameters
    ----------
    names : one name per type; type ``i`` is code ``i``
    mobility : :class:`MigrateType` class of each type: ``can_steal_fallback`` lets
        unmovable/reclaimable requests steal whole pageblocks at any order, and
        ``steal_suitable_fallback`` counts in-use pages of movable class as "movable pages"
    fallbacks : per type, the types tried in order when its own lists are empty
        (mm/page_alloc.c ``fallbacks[]``)
    mergeable : whether blocks of this type may merge with another type's pageblock at or
        above pageblock_order (``migratetype_is_mergeable``: the PCP types are)
    """

    names: tuple[str, ...]
    mobility: tuple[int, ...]
    fallbacks: tuple[tuple[int, ...], ...]
    mergeable: tuple[bool, ...]

    def __post_init__(self):
        n = len(self.names)
        if n < 1 or n > 32:
            raise ConfigError(f"between 1 and 32 migratetypes, got {n}", "names")
        for name, seq in (("mobility", self.mobility), ("fallbacks", self.fallbacks),
                          ("mergeable", self.mergeable)):
            if len(seq) != n:
                raise ConfigError(f"needs one entry per migratetype ({n}), got {len(seq)}", name)
        for i, m in enumerate(self.mobility):
            if m not in tuple(MigrateType):
                raise ConfigError(f"must be a MigrateType code, got {m!r}", f"mobility[{i}]")
        for i, fb in enumerate(self.fallbacks):
            for t in fb:
                check_int(f"fallbacks[{i}]", t, lo=0, hi=n - 1)
                if t == i:
                    raise ConfigError("a type cannot fall back to itself", f"fallbacks[{i}]")
            if len(set(fb)) != len(fb):
                raise ConfigError("repeated fallback type", f"fallbacks[{i}]")

    @property
    def n_types(self) -> int:
        return len(self.names)

    def code(self, name: str) -> int:
        """Type code of ``name``."""
        if name not in self.names:
            raise ConfigError(f"unknown migratetype {name!r}; known: {', '.join(self.names)}",
                              "migratetype")
        return self.names.index(name)


def kernel_migrate_table() -> MigrateTable:
    """The kernel's table: ``fallbacks[MIGRATE_PCPTYPES][MIGRATE_PCPTYPES - 1]``."""
    U, M, R = MigrateType.UNMOVABLE, MigrateType.MOVABLE, MigrateType.RECLAIMABLE
    return MigrateTable(names=("unmovable", "movable", "reclaimable"),
                        mobility=(int(U), int(M), int(R)),
                        fallbacks=((int(R), int(M)), (int(R), int(U)), (int(U), int(M))),
                        mergeable=(True, True, True))


# params[] slots
_P_MAX_ORDER, _P_PB_ORDER, _P_NTYPES, _P_NOFRAG, _P_NPAGES, _P_LEN = 0, 1, 2, 3, 4, 5


class BuddyState(NamedTuple):
    """Kernel state of one pool (all arrays; built only by :meth:`BuddyConfig.build`).

    ``free_order[pfn]`` is the order of the free block headed at pfn (PageBuddy) or -1;
    ``alloc_order[pfn]`` the order of the allocated block headed at pfn or -1;
    list ``order * ntypes + mt`` is threaded through ``nxt``/``prv``; ``ev[0]`` is the number
    of pageblock conversions the last allocation made, ``ev[1 + 2k]`` their pageblock
    indices and ``ev[2 + 2k]`` their previous types.
    """

    params: np.ndarray      # int64[_P_LEN]
    head: np.ndarray        # int32[(max_order+1) * ntypes]
    tail: np.ndarray        # int32[...]
    nr_free: np.ndarray     # int64[...] blocks on each list
    nxt: np.ndarray         # int32[pages]
    prv: np.ndarray         # int32[pages]
    free_order: np.ndarray  # int8[pages]
    free_mt: np.ndarray     # int8[pages] list a free head is on
    alloc_order: np.ndarray  # int8[pages]
    alloc_mt: np.ndarray    # int8[pages] type an allocated head was requested as
    flags: np.ndarray       # uint16[pages], bits defined by mechanisms
    pb_mt: np.ndarray       # int8[pageblocks]
    fallbacks: np.ndarray   # int8[ntypes, max fallbacks], -1 padded
    mobility: np.ndarray    # int8[ntypes]
    mergeable: np.ndarray   # uint8[ntypes]
    counts: np.ndarray      # int64[len(BuddyEvent)]
    ev: np.ndarray          # int64[1 + 2 * max conversions per allocation]


@dataclass(frozen=True)
class BuddyConfig:
    """A buddy pool.

    Parameters
    ----------
    pool_pages : pages in the pool, a positive multiple of the pageblock
    max_order : ``MAX_PAGE_ORDER`` (inclusive largest order); see ``Geometry.max_page_order``
    pageblock_order : ``pageblock_order``; see ``Geometry.pageblock_order``
    table : migratetypes, fallbacks and mobility (default: the kernel's three types)
    initial_type : type code of every pageblock at boot (``MIGRATE_MOVABLE``)
    nofragment : first try without stealing below pageblock_order (``ALLOC_NOFRAGMENT``,
        set when the zone below ZONE_NORMAL is populated), then retry without it
    """

    pool_pages: int
    max_order: int = 10
    pageblock_order: int = 9
    table: MigrateTable = field(default_factory=kernel_migrate_table)
    initial_type: int = int(MigrateType.MOVABLE)
    nofragment: bool = False

    def __post_init__(self):
        check_int("max_order", self.max_order, lo=0, hi=20)
        check_int("pageblock_order", self.pageblock_order, lo=1, hi=self.max_order)
        check_int("pool_pages", self.pool_pages, lo=1 << self.pageblock_order, hi=(1 << 31) - 1)
        if self.pool_pages % (1 << self.pageblock_order):
            raise ConfigError(f"must be a multiple of the pageblock ({1 << self.pageblock_order}"
                              f" pages), got {self.pool_pages}", "pool_pages")
        check_int("initial_type", self.initial_type, lo=0, hi=self.table.n_types - 1)

    @classmethod
    def from_geometry(cls, geometry, pool_bytes: int, **kwargs) -> "BuddyConfig":
        """A pool of ``pool_bytes`` with the geometry's page size, MAX_PAGE_ORDER and
        pageblock order."""
        check_int("pool_bytes", pool_bytes, lo=1)
        if pool_bytes % geometry.page_bytes:
            raise ConfigError(f"must be a multiple of the page size {geometry.page_bytes}",
                              "pool_bytes")
        return cls(pool_pages=pool_bytes >> geometry.page_shift, max_order=geometry.max_page_order,
                   pageblock_order=geometry.pageblock_order, **kwargs)

    @property
    def pageblocks(self) -> int:
        return self.pool_pages >> self.pageblock_order

    def build(self) -> BuddyState:
        """The one conversion to kernel arrays: an empty pool, every page free."""
        n, nt = self.pool_pages, self.table.n_types
        nlists = (self.max_order + 1) * nt
        params = np.zeros(_P_LEN, dtype=np.int64)
        params[[_P_MAX_ORDER, _P_PB_ORDER, _P_NTYPES, _P_NOFRAG, _P_NPAGES]] = (
            self.max_order, self.pageblock_order, nt, int(self.nofragment), n)
        width = max(1, max(len(f) for f in self.table.fallbacks))
        fb = np.full((nt, width), -1, dtype=np.int8)
        for i, f in enumerate(self.table.fallbacks):
            fb[i, :len(f)] = f
        max_conv = (1 << max(0, self.max_order - self.pageblock_order)) + 1
        st = BuddyState(
            params=params,
            head=np.full(nlists, -1, dtype=np.int32), tail=np.full(nlists, -1, dtype=np.int32),
            nr_free=np.zeros(nlists, dtype=np.int64),
            nxt=np.full(n, -1, dtype=np.int32), prv=np.full(n, -1, dtype=np.int32),
            free_order=np.full(n, -1, dtype=np.int8), free_mt=np.full(n, -1, dtype=np.int8),
            alloc_order=np.full(n, -1, dtype=np.int8), alloc_mt=np.full(n, -1, dtype=np.int8),
            flags=np.zeros(n, dtype=np.uint16),
            pb_mt=np.full(self.pageblocks, self.initial_type, dtype=np.int8),
            fallbacks=fb, mobility=np.asarray(self.table.mobility, dtype=np.int8),
            mergeable=np.asarray(self.table.mergeable, dtype=np.uint8),
            counts=new_counts(BuddyEvent), ev=np.zeros(1 + 2 * max_conv, dtype=np.int64))
        _boot_free(st)
        return st


# ---- free lists ---------------------------------------------------------------------------

@_inline
def _dl_add(head, tail, nxt, prv, li, pfn, to_tail):
    """Insert ``pfn`` at the head or tail of intrusive doubly-linked list ``li``."""
    if to_tail:
        t = tail[li]
        prv[pfn] = t
        nxt[pfn] = -1
        if t >= 0:
            nxt[t] = pfn
        else:
            head[li] = pfn
        tail[li] = pfn
    else:
        h = head[li]
        nxt[pfn] = h
        prv[pfn] = -1
        if h >= 0:
            prv[h] = pfn
        else:
            tail[li] = pfn
        head[li] = pfn


@_inline
def _dl_del(head, tail, nxt, prv, li, pfn):
    """Unlink ``pfn`` from intrusive doubly-linked list ``li``."""
    p = prv[pfn]
    q = nxt[pfn]
    if p >= 0:
        nxt[p] = q
    else:
        head[li] = q
    if q >= 0:
        prv[q] = p
    else:
        tail[li] = p


@_inline
def _list_add(st, pfn, order, mt, to_tail):
    nt = st.params[_P_NTYPES]
    li = order * nt + mt
    _dl_add(st.head, st.tail, st.nxt, st.prv, li, pfn, to_tail)
    st.nr_free[li] += 1
    st.free_order[pfn] = order
    st.free_mt[pfn] = mt


@_inline
def _list_del(st, pfn):
    nt = st.params[_P_NTYPES]
    li = st.free_order[pfn] * nt + st.free_mt[pfn]
    _dl_del(st.head, st.tail, st.nxt, st.prv, li, pfn)
    st.nr_free[li] -= 1
    st.free_order[pfn] = -1
    st.free_mt[pfn] = -1


@_kernel
def _boot_free(st):
    """``__free_pages_memory``: the largest aligned blocks, each added at the tail."""
    n = st.params[_P_NPAGES]
    max_order = st.params[_P_MAX_ORDER]
    pb_order = st.params[_P_PB_ORDER]
    start = 0
    while start < n:
        order = max_order
        while order > 0 and (start & ((1 << order) - 1)) != 0:
            order -= 1
        while start + (1 << order) > n:
            order -= 1
        _list_add(st, start, order, st.pb_mt[start >> pb_order], True)
        start += 1 << order


@_inner
def _pb_set(st, pb, mt):
    """``set_pageblock_migratetype``; logs and counts a real change."""
    old = st.pb_mt[pb]
    if old != mt:
        st.pb_mt[pb] = mt
        st.counts[11] += 1  # PAGEBLOCK_CONVERSIONS
        k = st.ev[0]
        if 1 + 2 * k + 1 < st.ev.shape[0]:
            st.ev[1 + 2 * k] = pb
            st.ev[2 + 2 * k] = old
            st.ev[0] = k + 1


# ---- allocation ---------------------------------------------------------------------------

@_inline
def _expand(st, pfn, low, high, mt):
    """``expand``: keep the low half, put each upper half back on ``mt``'s list."""
    while high > low:
        high -= 1
        _list_add(st, pfn + (1 << high), high, mt, False)
        st.counts[5] += 1  # SPLITS


@_inline
def _rmqueue_smallest(st, order, mt):
    """``__rmqueue_smallest``: the smallest free block of type ``mt`` of at least ``order``."""
    nt = st.params[_P_NTYPES]
    max_order = st.params[_P_MAX_ORDER]
    for cur in range(order, max_order + 1):
        pfn = st.head[cur * nt + mt]
        if pfn >= 0:
            _list_del(st, pfn)
            _expand(st, pfn, order, cur, mt)
            return pfn
    return -1


@_inner
def _can_steal(st, order, start_mt):
    """``can_steal_fallback``."""
    pb_order = st.params[_P_PB_ORDER]
    if order >= pb_order:
        return True
    mob = st.mobility[start_mt]
    return order >= pb_order // 2 or mob == 2 or mob == 0  # RECLAIMABLE, UNMOVABLE


@_inner
def _find_suitable_fallback(st, order, mt):
    """``find_suitable_fallback(only_stealable=false)``: (fallback type or -1, can_steal)."""
    nt = st.params[_P_NTYPES]
    for i in range(st.fallbacks.shape[1]):
        fmt = st.fallbacks[mt, i]
        if fmt < 0:
            break
        if st.head[order * nt + fmt] < 0:
            continue
        return fmt, _can_steal(st, order, mt)
    return -1, False


@_inner
def _move_freepages_block(st, pfn, new_mt):
    """``move_freepages_block``: every free block of pfn's pageblock to ``new_mt``'s lists.

    Returns (free pages, in-use pages of movable class) in the pageblock.
    """
    pb_order = st.params[_P_PB_ORDER]
    start = (pfn >> pb_order) << pb_order
    end = start + (1 << pb_order)
    free_pages = 0
    movable = 0
    p = start
    while p < end:
        o = st.free_order[p]
        if o >= 0:
            _list_del(st, p)
            _list_add(st, p, o, new_mt, False)
            free_pages += 1 << o
            p += 1 << o
            continue
        a = st.alloc_order[p]
        if a >= 0:
            # pages on per-CPU lists (alloc_mt -1) are neither free nor movable
            if st.alloc_mt[p] >= 0 and st.mobility[st.alloc_mt[p]] == 1:  # MOVABLE
                movable += 1 << a
            p += 1 << a
            continue
        p += 1
    st.counts[12] += free_pages  # FREE_PAGES_MOVED
    return free_pages, movable


@_inner
def _steal_suitable_fallback(st, pfn, start_mt, whole_block):
    """``steal_suitable_fallback``: take the pageblock or move just this block."""
    pb_order = st.params[_P_PB_ORDER]
    cur = st.free_order[pfn]
    old_mt = st.pb_mt[pfn >> pb_order]
    if cur >= pb_order:
        # change_pageblock_range, then single_page
        for pb in range(pfn >> pb_order, (pfn + (1 << cur)) >> pb_order):
            _pb_set(st, pb, start_mt)
    elif whole_block:
        free_pages, movable = _move_freepages_block(st, pfn, start_mt)
        if st.mobility[start_mt] == 1:
            alike = movable
        elif st.mobility[old_mt] == 1:
            alike = (1 << pb_order) - (free_pages + movable)
        else:
            alike = 0
        if free_pages + alike >= (1 << (pb_order - 1)):
            if old_mt != start_mt:
                st.counts[10] += 1  # BLOCK_CLAIMS
            _pb_set(st, pfn >> pb_order, start_mt)
        return
    else:
        st.counts[9] += 1  # STEAL_SINGLE
    _list_del(st, pfn)
    _list_add(st, pfn, cur, start_mt, False)


@_inner
def _rmqueue_fallback(st, order, start_mt, min_order):
    """``__rmqueue_fallback``: steal from a fallback type; False if nothing found."""
    max_order = st.params[_P_MAX_ORDER]
    nt = st.params[_P_NTYPES]
    found = np.int64(-1)
    fmt = np.int64(-1)
    can_steal = False
    cur = max_order
    while cur >= min_order:
        fmt, can_steal = _find_suitable_fallback(st, cur, start_mt)
        if fmt >= 0:
            found = cur
            break
        cur -= 1
    if found < 0:
        return False
    if not can_steal and st.mobility[start_mt] == 1 and found > order:
        # find_smallest
        for c in range(order, max_order + 1):
            fmt, can_steal = _find_suitable_fallback(st, c, start_mt)
            if fmt >= 0:
                found = c
                break
    pfn = st.head[found * nt + fmt]
    _steal_suitable_fallback(st, pfn, start_mt, can_steal)
    st.counts[8] += 1  # FALLBACKS
    return True


@_inline
def _rmqueue(st, order, mt, min_order):
    """``__rmqueue``: own lists first, then fallbacks until a block appears."""
    pfn = _rmqueue_smallest(st, order, mt)
    while pfn < 0:
        if not _rmqueue_fallback(st, order, mt, min_order):
            return -1
        pfn = _rmqueue_smallest(st, order, mt)
    return pfn


@_inline
def _take(st, order, mt):
    """One block off the free lists (both ``ALLOC_NOFRAGMENT`` passes), marked allocated
    as type ``mt``; -1 if none. Conversions append to ``st.ev``."""
    pb_order = st.params[_P_PB_ORDER]
    pfn = np.int64(-1)
    if st.params[_P_NOFRAG] != 0 and order < pb_order:
        pfn = _rmqueue(st, order, mt, pb_order)
    if pfn < 0:
        pfn = _rmqueue(st, order, mt, order)
    if pfn >= 0:
        _mark_allocated(st, pfn, order, mt)
    return pfn


@_inline
def _mark_allocated(st, pfn, order, mt):
    """Record the block at ``pfn`` as allocated (its order and type) and count it."""
    st.alloc_order[pfn] = order
    st.alloc_mt[pfn] = mt
    st.counts[0] += 1
    st.counts[1] += 1 << order


@_inline
def alloc_pages(st, order, mt):
    """Allocate a block of ``1 << order`` pages of migratetype ``mt``; its pfn, or -1.

    ``rmqueue`` -> ``__rmqueue`` (mm/page_alloc.c), with the ``ALLOC_NOFRAGMENT`` first
    pass when enabled. ``st.ev`` logs the pageblocks this call converted.
    """
    st.ev[0] = 0
    pfn = _take(st, order, mt)
    if pfn < 0:
        st.counts[4] += 1  # FAILURES
    return pfn


@_kernel
def alloc_block_min(st, order, mt, min_order):
    """Allocate like :func:`alloc_pages`, but steal from a fallback type only free blocks of
    at least ``min_order`` (one ``__rmqueue`` pass with that floor, no ``ALLOC_NOFRAGMENT``
    retry below it): with ``min_order`` = pageblock_order, only whole free pageblocks change
    type, as the ASI page-allocator RFC's ``find_suitable_fallback`` allows for its
    nonsensitive type. Its pfn, or -1."""
    st.ev[0] = 0
    pfn = _rmqueue(st, order, mt, max(order, min_order))
    if pfn < 0:
        st.counts[4] += 1  # FAILURES
        return -1
    _mark_allocated(st, pfn, order, mt)
    return pfn


@_kernel
def split_allocated(st, pfn, order, keep_order):
    """Keep the first ``1 << keep_order`` pages of the allocated block of ``order`` at
    ``pfn`` and free the rest, one block per order from ``keep_order`` up (each through
    ``__free_one_page`` as its pageblock's type), as ``__rmqueue_asi_unmap`` returns the
    remainder of the block it took. False if no allocated block of that order starts there.
    The remainder is not counted as a free of the caller's."""
    if pfn < 0 or pfn >= st.params[_P_NPAGES] or st.alloc_order[pfn] != order \
            or keep_order > order:
        return False
    st.alloc_order[pfn] = keep_order
    pb_order = st.params[_P_PB_ORDER]
    for i in range(keep_order, order):
        q = pfn + (1 << i)
        _merge_and_list(st, q, i, st.pb_mt[q >> pb_order])
    st.counts[1] -= (1 << order) - (1 << keep_order)  # ALLOC_PAGES: pages handed out
    return True


@_kernel
def convert_pageblock(st, pb, mt):
    """Give pageblock ``pb`` type ``mt`` and move its free blocks to ``mt``'s lists
    (``move_freepages_block`` + ``set_pageblock_migratetype``, as pageblock isolation does).

    Free blocks larger than a pageblock that contain it are left alone (the caller converts
    every pageblock of such a block). Leaving an unmergeable type (isolation), a free block
    of at least a pageblock that starts at the pageblock merges with its free buddies.
    Returns the number of free pages moved; the change is counted and logged in ``st.ev``
    like a fallback conversion (the log is reset first).
    """
    st.ev[0] = 0
    pb_order = st.params[_P_PB_ORDER]
    base = pb << pb_order
    old = st.pb_mt[pb]
    free_pages, _movable = _move_freepages_block(st, base, mt)
    _pb_set(st, pb, mt)
    order = st.free_order[base]
    if st.mergeable[old] == 0 and st.mergeable[mt] != 0 and order >= pb_order:
        # unset_migratetype_isolate: a free block of at least a pageblock heading it goes
        # back through __putback_isolated_page, merging with the neighbours isolation kept
        # apart
        _list_del(st, base)
        _merge_and_list(st, base, order, mt)
    return free_pages


# ---- free ---------------------------------------------------------------------------------

@_inline
def _is_buddy(st, b, order):
    """``page_is_buddy``: b is in the pool and heads a free block of exactly ``order``."""
    return b < st.params[_P_NPAGES] and st.free_order[b] == order


@_inline
def free_pages(st, pfn, order):
    """Free the block at ``pfn`` (``__free_pages`` -> ``__free_one_page``); False if no
    allocated block of that order starts there (a double or mismatched free)."""
    if pfn < 0 or pfn >= st.params[_P_NPAGES] or st.alloc_order[pfn] != order:
        return False
    st.alloc_order[pfn] = -1
    st.alloc_mt[pfn] = -1
    _free_one_page(st, pfn, order, st.pb_mt[pfn >> st.params[_P_PB_ORDER]])
    return True


@_inline
def _free_one_page(st, pfn, order, mt):
    """``__free_one_page``: merge with free buddies and list the block as type ``mt``."""
    st.counts[2] += 1
    st.counts[3] += 1 << order
    _merge_and_list(st, pfn, order, mt)


@_inline
def _merge_and_list(st, pfn, order, mt):
    """The merge loop of ``__free_one_page`` and the listing of the merged block."""
    max_order = st.params[_P_MAX_ORDER]
    pb_order = st.params[_P_PB_ORDER]
    buddy = pfn ^ (1 << order)
    while order < max_order:
        buddy = pfn ^ (1 << order)
        if not _is_buddy(st, buddy, order):
            break
        if order >= pb_order:
            bmt = st.pb_mt[buddy >> pb_order]
            if mt != bmt and (st.mergeable[mt] == 0 or st.mergeable[bmt] == 0):
                st.counts[7] += 1  # MERGE_BLOCKED
                break
        _list_del(st, buddy)
        st.counts[6] += 1  # MERGES
        pfn = pfn & buddy
        order += 1
    # buddy_merge_likely: the block's parent has a free buddy one order up
    to_tail = False
    if order < max_order - 1:
        higher = (pfn ^ (1 << order)) & pfn
        to_tail = _is_buddy(st, higher ^ (1 << (order + 1)), order + 1)
    _list_add(st, pfn, order, mt, to_tail)


@_inline
def pool_pages(st):
    """Pages in the pool (pfns ``0 .. pool_pages - 1``)."""
    return st.params[_P_NPAGES]


@_inline
def pageblock_order(st):
    """``pageblock_order`` of the pool."""
    return st.params[_P_PB_ORDER]


@_kernel
def alloc_block(st, order, mt):
    """:func:`alloc_pages` as a called (not inlined) kernel, for code where compile time
    matters more than the call's cost."""
    return alloc_pages(st, order, mt)


@_kernel
def free_block(st, pfn, order):
    """:func:`free_pages` as a called (not inlined) kernel."""
    return free_pages(st, pfn, order)


@_kernel
def flags_update(st, pfn, order, set_mask, clear_mask):
    """OR of the flags of the block's pages before the update; then set and clear bits."""
    before = np.uint16(0)
    keep = np.uint16(~np.uint16(clear_mask))
    add = np.uint16(set_mask)
    for p in range(pfn, pfn + (1 << order)):
        before |= st.flags[p]
        st.flags[p] = (st.flags[p] & keep) | add
    return before


# ---- per-CPU page lists -------------------------------------------------------------------

#: ``PAGE_ALLOC_COSTLY_ORDER``: orders up to it (and pageblock_order, for THPs) use pcp lists
PAGE_ALLOC_COSTLY_ORDER = 3


class PcpEvent(IntEnum):
    """Per-CPU page list counters."""

    ALLOCS = 0          # allocations served through a pcp list
    REFILLS = 1         # rmqueue_bulk calls
    REFILL_PAGES = 2    # pages moved from the free lists to pcp lists
    FREES = 3           # frees that went to a pcp list
    DRAINS = 4          # free_pcppages_bulk calls
    DRAINED_PAGES = 5
    FAILURES = 6        # pcp allocations that found no page


@dataclass(frozen=True)
class PcpConfig:
    """Per-CPU page lists (``struct per_cpu_pages``) over a :class:`BuddyConfig`'s pool.

    Parameters
    ----------
    cpus : CPUs, each with its own lists
    batch : pages moved per refill or drain (``zone_batchsize``: a quarter of 1 MiB of
        pages, rounded down to 2**n - 1, is 63 with 4K pages in zones above 256 MiB)
    high : pages a CPU may hold before draining (``6 * batch``, the pre-5.14
        ``pageset_set_batch`` rule; later kernels size it from the low watermark: assumed)
    """

    cpus: int = 1
    batch: int = 63
    high: int = 378

    def __post_init__(self):
        check_int("cpus", self.cpus, lo=1, hi=4096)
        check_int("batch", self.batch, lo=1)
        check_int("high", self.high, lo=0)

    def build(self, buddy_config: BuddyConfig) -> "PcpState":
        """The one conversion to kernel arrays: empty lists for every CPU."""
        nt = buddy_config.table.n_types
        nlists = nt * (PAGE_ALLOC_COSTLY_ORDER + 1) + 1
        params = np.array([self.cpus, self.high, self.batch, nlists, nt,
                           buddy_config.pageblock_order], dtype=np.int64)
        n = buddy_config.pool_pages
        return PcpState(params=params,
                        head=np.full(self.cpus * nlists, -1, np.int32),
                        tail=np.full(self.cpus * nlists, -1, np.int32),
                        nxt=np.full(n, -1, np.int32), prv=np.full(n, -1, np.int32),
                        pmt=np.full(n, -1, np.int8), count=np.zeros(self.cpus, np.int64),
                        free_factor=np.zeros(self.cpus, np.int64),
                        counts=new_counts(PcpEvent))


_Q_CPUS, _Q_HIGH, _Q_BATCH, _Q_NLISTS, _Q_NT, _Q_PB = 0, 1, 2, 3, 4, 5


class PcpState(NamedTuple):
    """Kernel state of the pcp lists: list ``cpu * nlists + pindex`` threaded through
    ``nxt``/``prv``; ``pmt[pfn]`` the migratetype a listed page was stored with
    (``get_pcppage_migratetype``); pages on a list are allocated as far as the free lists
    are concerned, with ``alloc_mt`` -1."""

    params: np.ndarray
    head: np.ndarray
    tail: np.ndarray
    nxt: np.ndarray
    prv: np.ndarray
    pmt: np.ndarray
    count: np.ndarray
    free_factor: np.ndarray
    counts: np.ndarray


@_inline
def _pcp_allowed(pst, order):
    """``pcp_allowed_order``."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == pst.params[_Q_PB]


@_inline
def _pindex(pst, mt, order):
    """``order_to_pindex``: one list per (order, type) up to the costly order, one for THPs."""
    nt = pst.params[_Q_NT]
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return nt * (PAGE_ALLOC_COSTLY_ORDER + 1)
    return order * nt + mt


@_inline
def _pindex_order(pst, li):
    nt = pst.params[_Q_NT]
    if li >= nt * (PAGE_ALLOC_COSTLY_ORDER + 1):
        return pst.params[_Q_PB]
    return li // nt


@_inline
def _pcp_add(pst, gi, pfn, to_tail):
    _dl_add(pst.head, pst.tail, pst.nxt, pst.prv, gi, pfn, to_tail)


@_inline
def _pcp_del(pst, gi, pfn):
    _dl_del(pst.head, pst.tail, pst.nxt, pst.prv, gi, pfn)


@_inner
def _pcp_get(st, pst, cpu, order, mt, floor):
    """The list side of :func:`pcp_alloc` (``floor`` < 0: each refill block through both
    ``ALLOC_NOFRAGMENT`` passes, :func:`_take`) and :func:`pcp_alloc_min` (one pass that
    steals only free blocks of at least ``max(order, floor)``)."""
    st.ev[0] = 0
    pst.free_factor[cpu] >>= 1
    gi = cpu * pst.params[_Q_NLISTS] + _pindex(pst, mt, order)
    if pst.head[gi] < 0:
        batch = pst.params[_Q_BATCH]
        if batch > 1:
            batch = max(batch >> order, 2)
        n = 0
        for _i in range(batch):
            if floor < 0:
                pfn = _take(st, order, mt)
            else:
                pfn = _rmqueue(st, order, mt, max(order, floor))
                if pfn >= 0:
                    _mark_allocated(st, pfn, order, mt)
            if pfn < 0:
                break
            st.alloc_mt[pfn] = -1
            pst.pmt[pfn] = mt
            _pcp_add(pst, gi, pfn, True)
            n += 1
        pst.counts[1] += 1
        pst.counts[2] += n << order
        pst.count[cpu] += n << order
        if pst.head[gi] < 0:
            pst.counts[6] += 1
            return -1
    pfn = pst.head[gi]
    _pcp_del(pst, gi, pfn)
    pst.count[cpu] -= 1 << order
    pst.pmt[pfn] = -1
    st.alloc_mt[pfn] = mt
    pst.counts[0] += 1
    return np.int64(pfn)


@_kernel
def pcp_alloc(st, pst, cpu, order, mt):
    """Allocate through CPU ``cpu``'s lists (``rmqueue_pcplist`` / ``__rmqueue_pcplist``);
    orders the lists do not take go to :func:`alloc_pages`. An empty list is refilled with
    ``max(batch >> order, 2)`` blocks (``rmqueue_bulk``, each added at the tail); the head
    is returned. ``st.ev`` logs every pageblock conversion of the refill."""
    if not _pcp_allowed(pst, order):
        return alloc_pages(st, order, mt)
    return _pcp_get(st, pst, cpu, order, mt, np.int64(-1))


@_kernel
def pcp_alloc_min(st, pst, cpu, order, mt, min_order):
    """:func:`pcp_alloc` whose refill steals from a fallback type only free blocks of at
    least ``min_order`` (``rmqueue_bulk`` calls ``__rmqueue`` with the caller's
    ``alloc_flags``: one pass with that floor per block, as :func:`alloc_block_min`; with
    ``ALLOC_NOFRAGMENT`` the floor is pageblock_order and ``get_page_from_freelist``'s
    retry without it is the caller's). Orders the lists do not take go to
    :func:`alloc_block_min`. ``st.ev`` logs every pageblock conversion of the refill."""
    if not _pcp_allowed(pst, order):
        return alloc_block_min(st, order, mt, min_order)
    return _pcp_get(st, pst, cpu, order, mt, max(order, min_order))


@_kernel
def pcp_first(pst, cpu, order, mt):
    """The block at the head of CPU ``cpu``'s list for ``order`` and ``mt`` (the next one
    :func:`pcp_alloc` hands out), or -1 if the list is empty; :func:`pcp_next` walks on."""
    if not _pcp_allowed(pst, order):
        return np.int64(-1)
    return np.int64(pst.head[cpu * pst.params[_Q_NLISTS] + _pindex(pst, mt, order)])


@_kernel
def pcp_next(pst, pfn):
    """The block after ``pfn`` on its pcp list, or -1."""
    return np.int64(pst.nxt[pfn])


def zone_batchsize(pool_pages: int, page_bytes: int) -> int:
    """``zone_batchsize`` (mm/page_alloc.c, v6.1) of a zone of ``pool_pages`` pages: a
    1024th of the zone, at most 1 MiB of pages, divided by 4 (at least 1), then
    ``rounddown_pow_of_two(batch + batch / 2) - 1`` (63 with 4K pages above 256 MiB), at
    least 1 (``zone_set_pageset_high_and_batch``: ``max(1, zone_batchsize(zone))``)."""
    check_int("pool_pages", pool_pages, lo=1)
    check_int("page_bytes", page_bytes, lo=1)
    batch = min(pool_pages >> 10, (1 << 20) // page_bytes) // 4
    batch = max(batch, 1)
    x = batch + batch // 2
    return max(1, (1 << (x.bit_length() - 1)) - 1)


@_inner
def _free_pcppages_bulk(st, pst, cpu, count, pindex):
    """``free_pcppages_bulk``: ``count`` pages from the tails of the lists, round robin from
    ``pindex``, back to the free lists with their stored types."""
    count = min(pst.count[cpu], count)
    nl = pst.params[_Q_NLISTS]
    li = pindex - 1
    pst.counts[4] += 1
    while count > 0:
        while True:
            li += 1
            if li > nl - 1:
                li = 0
            if pst.head[cpu * nl + li] >= 0:
                break
        gi = cpu * nl + li
        order = _pindex_order(pst, li)
        while True:
            pfn = pst.tail[gi]
            _pcp_del(pst, gi, pfn)
            mt = pst.pmt[pfn]
            pst.pmt[pfn] = -1
            count -= 1 << order
            pst.count[cpu] -= 1 << order
            pst.counts[5] += 1 << order
            st.alloc_order[pfn] = -1
            _free_one_page(st, pfn, order, mt)
            if count <= 0 or pst.head[gi] < 0:
                break


@_kernel
def pcp_free(st, pst, cpu, pfn, order):
    """Free through CPU ``cpu``'s lists (``free_unref_page`` / ``free_unref_page_commit``):
    the block goes to the head of the list of its pageblock's type; at ``high`` pages
    (0 after frees of orders 1..3 with no allocation in between, ``free_high``) the CPU
    drains ``nr_pcp_free`` pages. Orders the lists do not take go to :func:`free_pages`.
    False for a double or mismatched free."""
    if not _pcp_allowed(pst, order):
        return free_pages(st, pfn, order)
    if pfn < 0 or pfn >= st.params[_P_NPAGES] or st.alloc_order[pfn] != order \
            or st.alloc_mt[pfn] < 0:
        return False
    mt = st.pb_mt[pfn >> st.params[_P_PB_ORDER]]
    st.alloc_mt[pfn] = -1
    li = _pindex(pst, mt, order)
    _pcp_add(pst, cpu * pst.params[_Q_NLISTS] + li, pfn, False)
    pst.pmt[pfn] = mt
    pst.count[cpu] += 1 << order
    pst.counts[3] += 1
    free_high = pst.free_factor[cpu] > 0 and order > 0 and order <= PAGE_ALLOC_COSTLY_ORDER
    high = 0 if free_high else pst.params[_Q_HIGH]
    if pst.count[cpu] >= high:
        batch = pst.params[_Q_BATCH]
        # nr_pcp_free
        if free_high:
            nr = pst.count[cpu]
        elif high < batch:
            nr = 1
        else:
            hi = high - batch
            b = batch << pst.free_factor[cpu]
            if b < hi:
                pst.free_factor[cpu] += 1
            nr = min(max(b, batch), hi)
        _free_pcppages_bulk(st, pst, cpu, nr, li)
    return True


@_kernel
def pcp_drain(st, pst, cpu):
    """Return every page on CPU ``cpu``'s lists to the free lists (``drain_pages``)."""
    if pst.count[cpu] > 0:
        _free_pcppages_bulk(st, pst, cpu, pst.count[cpu], np.int64(0))


@_kernel
def pcp_replay(st, pst, ops, live, out):
    """:func:`replay` through pcp lists: ``ops[i] = (kind, a, b, cpu)``; ``live[k]`` holds
    (pfn, order) of live blocks. Returns the number live at the end."""
    nlive = 0
    for i in range(ops.shape[0]):
        cpu = ops[i, 3]
        if ops[i, 0] == 0:
            pfn = pcp_alloc(st, pst, cpu, ops[i, 1], ops[i, 2])
            out[i] = pfn
            if pfn >= 0:
                live[nlive, 0] = pfn
                live[nlive, 1] = ops[i, 1]
                nlive += 1
        else:
            if nlive == 0:
                out[i] = -1
                continue
            j = ops[i, 1] % nlive
            pfn = live[j, 0]
            pcp_free(st, pst, cpu, pfn, live[j, 1])
            out[i] = pfn
            nlive -= 1
            live[j, 0] = live[nlive, 0]
            live[j, 1] = live[nlive, 1]
    return nlive


# ---- batch replay (tests, benchmarks) -------------------------------------------------------

OP_ALLOC, OP_FREE = 0, 1


@_kernel
def replay(st, kind, a, b, live_pfn, live_order, out):
    """Run a sequence of operations; return the number of live blocks at the end.

    Op ``i`` is ``alloc_pages(order=a[i], mt=b[i])`` when ``kind[i] == 0`` (the block joins
    the live set) or a free of live block ``a[i] % live`` when ``kind[i] == 1`` (the last live
    block takes its slot). ``out[i]`` is the pfn allocated or freed, -1 for a failed
    allocation or a free with nothing live. ``live_*`` must hold every block kept live.
    """
    return _replay_from(st, kind, a, b, live_pfn, live_order, out, np.int64(0))


# ---- Python side --------------------------------------------------------------------------

class Buddy:
    """A pool with its kernel state and validated Python entry points.

    Kernels should call :func:`alloc_pages` / :func:`free_pages` on ``buddy.state`` directly;
    these methods are for tests, notebooks and setup code.
    """

    def __init__(self, config: BuddyConfig):
        self.config = config
        self.state = config.build()

    @property
    def counters(self) -> Counters:
        return Counters(BuddyEvent, self.state.counts)

    def _check(self, order: int, mt: int) -> None:
        check_int("order", order, lo=0, hi=self.config.max_order)
        check_int("migratetype", mt, lo=0, hi=self.config.table.n_types - 1)

    def alloc(self, order: int, mt: int = int(MigrateType.MOVABLE)) -> int:
        """pfn of a new block, or -1 when the pool has none."""
        self._check(order, mt)
        return int(alloc_pages(self.state, order, mt))

    def free(self, pfn: int, order: int) -> None:
        check_int("order", order, lo=0, hi=self.config.max_order)
        if not free_pages(self.state, int(pfn), order):
            raise ConfigError(f"no allocated order-{order} block at pfn {pfn}", "pfn")

    def conversions(self) -> list[tuple[int, int]]:
        """(pageblock, previous type) for each conversion made by the last allocation."""
        ev = self.state.ev
        return [(int(ev[1 + 2 * k]), int(ev[2 + 2 * k])) for k in range(int(ev[0]))]

    def free_blocks(self) -> list[tuple[int, int, int]]:
        """Every free block as (pfn, order, list type), walking the lists head to tail."""
        st, nt = self.state, self.config.table.n_types
        out = []
        for order in range(self.config.max_order + 1):
            for mt in range(nt):
                p = int(st.head[order * nt + mt])
                while p >= 0:
                    out.append((p, order, mt))
                    p = int(st.nxt[p])
        return out

    def free_page_count(self) -> int:
        nt = self.config.table.n_types
        orders = np.repeat(np.arange(self.config.max_order + 1), nt)
        return int((self.state.nr_free << orders).sum())

    def pageblock_types(self) -> np.ndarray:
        return self.state.pb_mt.copy()


def bench_order0_churn(n: int = 10_000_000, seed: int = 0, pool_pages: int = 1 << 18,
                       live_fraction: float = 0.5) -> float:
    """Order-0 alloc+free operations per second on one core (a benchmark, not a test).

    Fills ``live_fraction`` of a ``pool_pages`` pool with order-0 movable pages, then runs
    ``n`` operations alternating at random between an allocation and the free of a random
    live page (mixed migratetypes: 80 % movable, 10 % unmovable, 10 % reclaimable). The op
    stream is drawn from ``seed`` before timing; compilation is excluded.
    """
    check_int("n", n, lo=1)
    rng = np.random.default_rng(seed)
    cfg = BuddyConfig(pool_pages=pool_pages)
    fill = int(pool_pages * live_fraction)
    kind = np.concatenate([np.zeros(fill, np.int8), rng.integers(0, 2, n).astype(np.int8)])
    a = np.concatenate([np.zeros(fill, np.int64), rng.integers(0, 1 << 40, n)])
    mts = rng.choice(3, size=n, p=[0.1, 0.8, 0.1]).astype(np.int64)
    b = np.concatenate([np.full(fill, int(MigrateType.MOVABLE), np.int64), mts])
    a[fill:][kind[fill:] == 0] = 0  # allocations are order 0
    live_pfn = np.empty(pool_pages, np.int64)
    live_order = np.empty(pool_pages, np.int64)
    # compile on a small pool, then time the real run
    small = BuddyConfig(pool_pages=1 << cfg.pageblock_order).build()
    _replay_from(small, kind[:4], a[:4], b[:4], live_pfn, live_order, np.empty(4, np.int64), 0)
    st = cfg.build()
    out = np.empty(kind.shape[0], np.int64)
    replay(st, kind[:fill], a[:fill], b[:fill], live_pfn, live_order, out[:fill])
    t0 = time.perf_counter()
    _replay_from(st, kind[fill:], a[fill:], b[fill:], live_pfn, live_order, out[fill:], fill)
    dt = time.perf_counter() - t0
    return n / dt


@_kernel
def _replay_from(st, kind, a, b, live_pfn, live_order, out, nlive):
    """:func:`replay` starting with ``nlive`` blocks already live."""
    for i in range(kind.shape[0]):
        if kind[i] == 0:
            pfn = alloc_pages(st, a[i], b[i])
            out[i] = pfn
            if pfn >= 0:
                live_pfn[nlive] = pfn
                live_order[nlive] = a[i]
                nlive += 1
        else:
            if nlive == 0:
                out[i] = -1
                continue
            j = a[i] % nlive
            pfn = live_pfn[j]
            free_pages(st, pfn, live_order[j])
            out[i] = pfn
            nlive -= 1
            live_pfn[j] = live_pfn[nlive]
            live_order[j] = live_order[nlive]
    return nlive


__all__ = ["pool_pages", "pageblock_order", "MigrateType", "BuddyEvent", "MigrateTable", "kernel_migrate_table", "BuddyConfig",
           "BuddyState", "Buddy", "alloc_pages", "free_pages", "flags_update", "replay",
           "convert_pageblock", "alloc_block", "free_block", "PAGE_ALLOC_COSTLY_ORDER",
           "PcpEvent", "PcpConfig", "PcpState", "pcp_alloc", "pcp_free", "pcp_drain", "pcp_replay",
           "pcp_alloc_min", "pcp_first", "pcp_next", "zone_batchsize",
           "OP_ALLOC", "OP_FREE", "bench_order0_churn"]
