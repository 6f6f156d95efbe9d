"""Page tables as leaf extents, like ``ptdump`` prints them.

A :class:`PageTable` stores runs of leaves (VA start, size, output address, leaf level,
contiguous bit, permissions, node of the mapped memory). An extent is a run of same-level,
same-permission, same-cont leaves whose output addresses are contiguous, so a 4 TiB linear
map painted with 4K PTEs is one extent and a split adds a few: memory grows with the number
of distinct extents, never with the mapped size. Table pages are not stored: they are
counted by arithmetic on the extents (a table at level ``L`` exists for every
``entry_bytes(L-1)``-aligned window in which some leaf lives at a level ``>= L``).

Addresses are input addresses in ``[0, 2**va_bits)`` (an offset from the base of the
translated region, e.g. from ``PAGE_OFFSET`` for the linear map); ``ptdump(va_base=...)``
adds a base for display. Levels use Arm numbering (leaf table = level 3).

Modelled behaviour
------------------
- Painting: arch/arm64/mm/mmu.c ``alloc_init_pud`` / ``alloc_init_cont_pmd`` /
  ``init_pmd`` / ``alloc_init_cont_pte``: a block or contiguous range is used where VA, PA
  and the end of the range are all aligned to it; ``NO_BLOCK_MAPPINGS`` and
  ``NO_CONT_MAPPINGS`` remove blocks and contiguous ranges (:class:`Paint`).
- Split: the BBML2 split primitive of the "FEAT_BBM level 2 and large block mapping when
  rodata=full" series (upstream ``split_kernel_leaf_mapping``): the leaf holding a VA is
  split so that the VA lands on a leaf boundary; a PUD block becomes a table of contiguous
  PMD blocks (``split_pud(..., to_cont=true)``), the contiguous range holding the VA loses
  its cont bit (``split_contpmd``), the PMD block holding the VA becomes a table of
  contiguous PTEs (``split_pmd``) and the contiguous PTE range holding it loses its cont
  bit (``split_contpte``). Returns 0, ``-EINVAL`` when the VA is not mapped, ``-ENOMEM``
  when a table page cannot be allocated; every translation is intact in all three cases.
- Permission change: ``__change_memory_common`` over ``walk_page_range_novma`` (boundary
  splits at start and end, then every leaf inside is rewritten, blocks kept), or the v1
  strategy of the same series (every leaf in the range split to PTEs first).
- Unmap frees tables left empty, as memory hot-remove does (``unmap_hotplug_range`` then
  ``free_empty_tables``).
- Replication: per-node copies of a subtree under per-node top-level tables that share
  every other top-level entry, as arm64 kernel text replication builds them.

Data structure
--------------
Extents live in a chunked sorted array: chunks of ``CHUNK_ROWS`` rows (``va, size, pa,
attr``; ``attr`` packs level, cont, permissions and node), chunks kept in VA order by an
index with each chunk's first VA. Lookup is two binary searches; insertion moves at most
one chunk's rows and, when a chunk is full, splits it (moving part of the index).
Kernels are Numba functions over that state; :class:`PageTable` validates arguments and
grows the arrays.
"""
from __future__ import annotations

import time
from enum import IntEnum, IntFlag
from typing import NamedTuple

import numpy as np

from ._jit import njit
from .config import check_int
from .counters import Counters
from .errors import ConfigError
from .geometry import Geometry

EINVAL = 22
ENOMEM = 12
EEXIST = 17


class Paint(IntEnum):
    """Painting policy: the kernel's ``NO_CONT_MAPPINGS`` / ``NO_BLOCK_MAPPINGS`` flags.

    ``LARGEST`` uses blocks and contiguous ranges wherever VA and PA alignment allow
    (rodata=on, or rodata=full with BBML2); ``PTES`` uses both flags (rodata=full without
    BBML2, ``can_set_direct_map()``); ``NO_BLOCKS`` still allows contiguous PTEs.
    """

    LARGEST = 0
    NO_CONT = 1
    NO_BLOCKS = 2
    PTES = 3


class PermSplit(IntEnum):
    """How a permission change prepares the range.

    ``BOUNDARY``: split only at the start and end of the range, keep every larger leaf
    inside (the BBML2 series with Dev Jain's ``__change_memory_common``). ``TO_PTES``: split
    every leaf in the range to non-contiguous PTEs first (the series' v1).
    """

    BOUNDARY = 0
    TO_PTES = 1


class TablePlacement(IntEnum):
    """Which NUMA node a table page lives on.

    ``FIXED_NODE``: every table on one node (early ``memblock`` allocations, node 0 by
    default). ``MEMORY_NODE``: a table lives on the node of the lowest-addressed leaf it
    maps (node-local tables). Per-node copies are built with :meth:`PageTable.replicate`.
    The top-level table is always on the fixed node (``swapper_pg_dir`` is in the image).
    """

    FIXED_NODE = 0
    MEMORY_NODE = 1


class Perm(IntFlag):
    """Leaf permission bits. ``NONE`` is a non-valid descriptor (``PTE_VALID`` clear, as
    ``set_direct_map_invalid_noflush`` leaves it): still a leaf, but any access faults."""

    NONE = 0
    R = 1
    W = 2
    X = 4
    RW = 3
    RX = 5
    RWX = 7


class PtEvent(IntEnum):
    """Page-table event counters."""

    MAPS = 0
    UNMAPS = 1
    SPLIT_REQUESTS = 2        # split calls on a mapped VA (including no-op ones)
    BLOCK_SPLITS = 3          # block leaves replaced by a table of smaller leaves
    CONT_SPLITS = 4           # contiguous ranges whose cont bit was cleared
    TABLE_PAGES_ALLOCATED = 5
    TABLE_PAGES_FREED = 6
    ALLOC_FAILURES = 7        # table allocations that failed (-ENOMEM)
    PERM_CHANGES = 8          # successful permission-change calls
    LEAVES_CHANGED = 9        # leaf descriptors rewritten by permission changes
    DESCRIPTORS_WRITTEN = 10  # every descriptor store: splits, cont clears, permissions
    EINVAL = 11               # calls refused because the VA or range was not mapped


# ---- state layout ------------------------------------------------------------------------
CHUNK_ROWS = 128
F_VA, F_SIZE, F_PA, F_ATTR = 0, 1, 2, 3
NFIELDS = 4
M_NCHUNKS, M_FREE_TOP, M_BUDGET, M_NEXT = 0, 1, 2, 3
M_LEN = 4
_GROW_MARGIN = 48  # free chunks kept before every operation (one op inserts < 48 rows)

# geometry vector: scalar slots, then per-level tables indexed by level + 1 (levels -1..3)
G_START, G_PAGE_SHIFT, G_VA_BITS, G_TOP_TABLES = 0, 1, 2, 3
G_LEAF, G_CONT, G_ENTRY = 8, 13, 18
G_LEN = 24

# attr packing: level + 1 (3 bits) | cont (1 bit) | perm (8 bits) | nid (16 bits)
A_CONT_SHIFT, A_PERM_SHIFT, A_NID_SHIFT = 3, 4, 12
MAX_NODES = 1 << 16

OP_MAP, OP_UNMAP, OP_SPLIT, OP_SET_PERM = 0, 1, 2, 3
KEEP_PERM = 256  # permission argument of OP_SET_PERM that keeps every leaf's permissions
OP_FIELDS = 6  # kind, va, size, pa, perm, aux
# columns of an op row (encode_ops)
OP_KIND, OP_VA, OP_SIZE, OP_PA, OP_PERM, OP_AUX = 0, 1, 2, 3, 4, 5

_LEVEL_NAMES = {3: "PTE", 2: "PMD", 1: "PUD", 0: "P4D", -1: "PGD"}


class _Tree(NamedTuple):
    """Kernel state: the chunked sorted array of extents."""

    ext: np.ndarray    # int64[chunks, CHUNK_ROWS, NFIELDS]
    clen: np.ndarray   # int64[chunks] rows used in each chunk
    order: np.ndarray  # int64[chunks] chunk ids in VA order (first meta[M_NCHUNKS] used)
    ckey: np.ndarray   # int64[chunks] first VA of the chunk at each order position
    freel: np.ndarray  # int64[chunks] stack of free chunk ids
    meta: np.ndarray   # int64[M_LEN]


def _new_tree(chunks: int) -> _Tree:
    meta = np.zeros(M_LEN, dtype=np.int64)
    meta[M_FREE_TOP] = chunks
    meta[M_BUDGET] = -1
    return _Tree(np.zeros((chunks, CHUNK_ROWS, NFIELDS), dtype=np.int64),
                 np.zeros(chunks, dtype=np.int64), np.zeros(chunks, dtype=np.int64),
                 np.zeros(chunks, dtype=np.int64),
                 np.arange(chunks - 1, -1, -1, dtype=np.int64), meta)


def _grow_tree(t: _Tree, chunks: int) -> _Tree:
    old = t.ext.shape[0]
    ext = np.zeros((chunks, CHUNK_ROWS, NFIELDS), dtype=np.int64)
    ext[:old] = t.ext
    clen = np.zeros(chunks, dtype=np.int64)
    clen[:old] = t.clen
    order = np.zeros(chunks, dtype=np.int64)
    order[:old] = t.order
    ckey = np.zeros(chunks, dtype=np.int64)
    ckey[:old] = t.ckey
    freel = np.zeros(chunks, dtype=np.int64)
    top = int(t.meta[M_FREE_TOP])
    added = np.arange(chunks - 1, old - 1, -1, dtype=np.int64)
    freel[:added.size] = added
    freel[added.size:added.size + top] = t.freel[:top]
    meta = t.meta.copy()
    meta[M_FREE_TOP] = top + added.size
    return _Tree(ext, clen, order, ckey, freel, meta)


def geometry_vector(g: Geometry) -> np.ndarray:
    """The one conversion of a :class:`~kmm.geometry.Geometry` into the kernels' vector."""
    v = np.zeros(G_LEN, dtype=np.int64)
    v[G_START] = g.start_level
    v[G_PAGE_SHIFT] = g.page_shift
    v[G_VA_BITS] = g.va_bits
    v[G_TOP_TABLES] = g.concatenated
    for lv in range(g.start_level, 4):
        i = lv + 1
        v[G_ENTRY + i] = g.entry_bytes(lv)
        if lv in g.leaf_levels:
            v[G_LEAF + i] = g.leaf_bytes(lv)
            cb = g.cont_bytes(lv)
            v[G_CONT + i] = cb or 0
    return v


# ---- attr helpers ------------------------------------------------------------------------
@njit(python=False)
def _attr(level, cont, perm, nid):
    return (level + 1) | (cont << A_CONT_SHIFT) | (perm << A_PERM_SHIFT) | (nid << A_NID_SHIFT)


@njit
def attr_level(a):
    """Leaf level of an extent's ``attr`` word (scalar or array)."""
    return (a & 7) - 1


@njit
def attr_cont(a):
    """1 if the extent's leaves have the contiguous bit, else 0."""
    return (a >> A_CONT_SHIFT) & 1


@njit
def attr_perm(a):
    """:class:`Perm` bits of an extent's ``attr`` word."""
    return (a >> A_PERM_SHIFT) & 0xFF


@njit
def attr_nid(a):
    """NUMA node of the memory an extent maps."""
    return (a >> A_NID_SHIFT) & 0xFFFF


_a_level, _a_cont, _a_perm, _a_nid = attr_level, attr_cont, attr_perm, attr_nid


@njit(python=False)
def _with_shape(a, level, cont):
    return _attr(level, cont, _a_perm(a), _a_nid(a))


@njit(python=False)
def _with_perm(a, perm):
    return _attr(_a_level(a), _a_cont(a), perm, _a_nid(a))


@njit(python=False)
def _span(g, a):
    """Bytes of the smallest unit a leaf attr can be split at: a cont range or one leaf."""
    i = _a_level(a) + 1
    if _a_cont(a):
        return g[G_CONT + i]
    return g[G_LEAF + i]


# ---- chunked sorted array ---------------------------------------------------------------
# constants passed between kernels are typed: ``np.int64(0)``, not ``0`` (:mod:`kmm._jit`)
@njit(python=False)
def _locate(t, va):
    """Order position and row of the extent with the greatest start <= va, or (-1, -1)."""
    n = t.meta[M_NCHUNKS]
    if n == 0 or t.ckey[0] > va:
        return -1, -1
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if t.ckey[mid] <= va:
            lo = mid
        else:
            hi = mid - 1
    c = t.order[lo]
    a, b = 0, t.clen[c] - 1
    while a < b:
        mid = (a + b + 1) >> 1
        if t.ext[c, mid, F_VA] <= va:
            a = mid
        else:
            b = mid - 1
    return lo, a


@njit(python=False)
def _next(t, p, r):
    if r + 1 < t.clen[t.order[p]]:
        return p, r + 1
    if p + 1 < t.meta[M_NCHUNKS]:
        return p + 1, 0
    return -1, -1


@njit(python=False)
def _prev(t, p, r):
    if r > 0:
        return p, r - 1
    if p > 0:
        return p - 1, t.clen[t.order[p - 1]] - 1
    return -1, -1


@njit(python=False)
def _first_from(t, w):
    """Position of the first extent ending after ``w`` (the one holding w, or the next)."""
    p, r = _locate(t, w)
    if p < 0:
        if t.meta[M_NCHUNKS] == 0:
            return -1, -1
        return 0, 0
    c = t.order[p]
    if t.ext[c, r, F_VA] + t.ext[c, r, F_SIZE] > w:
        return p, r
    return _next(t, p, r)


@njit(python=False)
def _insert(t, p, r, va, size, pa, attr):
    """Insert a row before row ``r`` of the chunk at order position ``p``; returns its
    position. ``p == meta[M_NCHUNKS]`` with ``r == 0`` appends a chunk (empty tree)."""
    n = t.meta[M_NCHUNKS]
    if n == 0:
        top = t.meta[M_FREE_TOP] - 1
        c = t.freel[top]
        t.meta[M_FREE_TOP] = top
        t.order[0] = c
        t.clen[c] = 0
        t.meta[M_NCHUNKS] = 1
        p, r = 0, 0
    c = t.order[p]
    if t.clen[c] == CHUNK_ROWS:
        half = CHUNK_ROWS // 2
        top = t.meta[M_FREE_TOP] - 1
        c2 = t.freel[top]
        t.meta[M_FREE_TOP] = top
        for i in range(half, CHUNK_ROWS):
            for f in range(NFIELDS):
                t.ext[c2, i - half, f] = t.ext[c, i, f]
        t.clen[c2] = CHUNK_ROWS - half
        t.clen[c] = half
        n = t.meta[M_NCHUNKS]
        for q in range(n, p + 1, -1):
            t.order[q] = t.order[q - 1]
            t.ckey[q] = t.ckey[q - 1]
        t.order[p + 1] = c2
        t.ckey[p + 1] = t.ext[c2, 0, F_VA]
        t.meta[M_NCHUNKS] = n + 1
        if r > half:
            p += 1
            r -= half
            c = c2
    m = t.clen[c]
    for i in range(m, r, -1):
        for f in range(NFIELDS):
            t.ext[c, i, f] = t.ext[c, i - 1, f]
    t.ext[c, r, F_VA] = va
    t.ext[c, r, F_SIZE] = size
    t.ext[c, r, F_PA] = pa
    t.ext[c, r, F_ATTR] = attr
    t.clen[c] = m + 1
    if r == 0:
        t.ckey[p] = va
    t.meta[M_NEXT] += 1
    return p, r


@njit(python=False)
def _insert_after(t, p, r, va, size, pa, attr):
    """Insert a row right after position (p, r); (-1, -1) means at the very beginning."""
    if p < 0:
        return _insert(t, np.int64(0), np.int64(0), va, size, pa, attr)
    return _insert(t, p, r + 1, va, size, pa, attr)


@njit(python=False)
def _insert_many(t, p, r, vas, sizes, pas, attrs, k):
    """Insert ``k`` rows, in order, right after position (p, r) (p >= 0); returns the
    position of the last. One shift of the chunk's tail when they fit in the chunk."""
    c = t.order[p]
    m = t.clen[c]
    if m + k > CHUNK_ROWS:
        for j in range(k):
            p, r = _insert(t, p, r + 1, vas[j], sizes[j], pas[j], attrs[j])
        return p, r
    for i in range(m - 1, r, -1):
        for f in range(NFIELDS):
            t.ext[c, i + k, f] = t.ext[c, i, f]
    for j in range(k):
        t.ext[c, r + 1 + j, F_VA] = vas[j]
        t.ext[c, r + 1 + j, F_SIZE] = sizes[j]
        t.ext[c, r + 1 + j, F_PA] = pas[j]
        t.ext[c, r + 1 + j, F_ATTR] = attrs[j]
    t.clen[c] = m + k
    t.meta[M_NEXT] += k
    return p, r + k


@njit(python=False)
def _delete(t, p, r):
    c = t.order[p]
    m = t.clen[c]
    for i in range(r, m - 1):
        for f in range(NFIELDS):
            t.ext[c, i, f] = t.ext[c, i + 1, f]
    t.clen[c] = m - 1
    t.meta[M_NEXT] -= 1
    if m - 1 == 0:
        n = t.meta[M_NCHUNKS]
        for q in range(p, n - 1):
            t.order[q] = t.order[q + 1]
            t.ckey[q] = t.ckey[q + 1]
        t.meta[M_NCHUNKS] = n - 1
        top = t.meta[M_FREE_TOP]
        t.freel[top] = c
        t.meta[M_FREE_TOP] = top + 1
    elif r == 0:
        t.ckey[p] = t.ext[c, 0, F_VA]


@njit(python=False)
def _mergeable(t, p, r, q, s):
    c, d = t.order[p], t.order[q]
    return (t.ext[c, r, F_ATTR] == t.ext[d, s, F_ATTR]
            and t.ext[c, r, F_VA] + t.ext[c, r, F_SIZE] == t.ext[d, s, F_VA]
            and t.ext[c, r, F_PA] + t.ext[c, r, F_SIZE] == t.ext[d, s, F_PA])


@njit(python=False)
def _merge_span(t, lo, hi):
    """Merge every mergeable neighbour pair from the extent before ``lo`` up to the one
    starting at ``hi``. Invariant afterwards: no two adjacent extents in that span could be
    one extent (same attr, adjacent VA, contiguous PA)."""
    p, r = _locate(t, lo)
    if p < 0:
        if t.meta[M_NCHUNKS] == 0:
            return
        p, r = 0, 0
    else:
        pp, pr = _prev(t, p, r)
        if pp >= 0:
            p, r = pp, pr
    while p >= 0:
        c = t.order[p]
        if t.ext[c, r, F_VA] > hi:
            break
        q, s = _next(t, p, r)
        if q < 0:
            break
        if _mergeable(t, p, r, q, s):
            t.ext[c, r, F_SIZE] += t.ext[t.order[q], s, F_SIZE]
            _delete(t, q, s)
        else:
            p, r = q, s


# ---- table counting ----------------------------------------------------------------------
@njit(python=False)
def _table_node(t, p, r, rule, fixed_nid):
    if rule == 1:
        return _a_nid(t.ext[t.order[p], r, F_ATTR])
    return fixed_nid


@njit
def _count_windows(t, g, lo, hi, out, bynode, rule, fixed_nid):
    """Add to ``out[level + 1]`` the tables below the top whose window overlaps [lo, hi).

    A table at level k exists for a window of ``entry_bytes(k - 1)`` bytes iff a leaf of
    level >= k lies in it; a leaf of a lower level overlapping the window covers all of it,
    so a window partly outside [lo, hi) is decided by its first extent alone.
    ``bynode[level + 1, nid]`` gets the same counts split by the placement rule.
    """
    start = g[G_START]
    for k in range(start + 1, 4):
        S = g[G_ENTRY + k]  # entry_bytes(k - 1): slot (k - 1) + 1
        wlo = (lo // S) * S
        for edge in range(2):
            if edge == 0:
                if lo % S == 0:
                    continue
                W = wlo
            else:
                if hi % S == 0:
                    continue
                W = (hi // S) * S
                if lo % S != 0 and W == wlo:
                    continue
            p, r = _first_from(t, W)
            if p < 0:
                continue
            c = t.order[p]
            if t.ext[c, r, F_VA] >= W + S or _a_level(t.ext[c, r, F_ATTR]) < k:
                continue
            out[k + 1] += 1
            bynode[k + 1, _table_node(t, p, r, rule, fixed_nid)] += 1
        A = ((lo + S - 1) // S) * S
        B = (hi // S) * S
        if A >= B:
            continue
        last = -1
        p, r = _first_from(t, A)
        while p >= 0:
            c = t.order[p]
            s = t.ext[c, r, F_VA]
            if s >= B:
                break
            if _a_level(t.ext[c, r, F_ATTR]) >= k:
                a = max(s, A)
                b = min(s + t.ext[c, r, F_SIZE], B)
                wa = (a - A) // S
                wb = (b - 1 - A) // S
                if wa <= last:
                    wa = last + 1
                if wa <= wb:
                    out[k + 1] += wb - wa + 1
                    bynode[k + 1, _table_node(t, p, r, rule, fixed_nid)] += wb - wa + 1
                    last = wb
            p, r = _next(t, p, r)


@njit(python=False)
def _tables_near(t, g, lo, hi):
    out = np.zeros(5, dtype=np.int64)
    bynode = np.zeros((5, 1), dtype=np.int64)
    _count_windows(t, g, lo, hi, out, bynode, np.int64(0), np.int64(0))
    return out.sum()


# ---- operations --------------------------------------------------------------------------
@njit(python=False)
def _alloc_table(t, counts):
    b = t.meta[M_BUDGET]
    if b == 0:
        counts[PtEvent.ALLOC_FAILURES] += 1
        return False
    if b > 0:
        t.meta[M_BUDGET] = b - 1
    counts[PtEvent.TABLE_PAGES_ALLOCATED] += 1
    return True


@njit(python=False)
def _split(t, g, counts, va, to_cont):
    """Make ``va`` a leaf boundary (split_kernel_leaf_mapping); 0, -EINVAL or -ENOMEM."""
    p, r = _locate(t, va)
    if p < 0:
        counts[PtEvent.EINVAL] += 1
        return -EINVAL
    c = t.order[p]
    s = t.ext[c, r, F_VA]
    size = t.ext[c, r, F_SIZE]
    pa0 = t.ext[c, r, F_PA]
    a0 = t.ext[c, r, F_ATTR]
    if va >= s + size:
        counts[PtEvent.EINVAL] += 1
        return -EINVAL
    counts[PtEvent.SPLIT_REQUESTS] += 1
    span = _span(g, a0)
    if va % span == 0:
        return 0
    # pieces: left stack grows up, right stack (reversed) grows up; all in VA order
    lstart = np.empty(16, dtype=np.int64)
    lsize = np.empty(16, dtype=np.int64)
    lattr = np.empty(16, dtype=np.int64)
    rstart = np.empty(16, dtype=np.int64)
    rsize = np.empty(16, dtype=np.int64)
    rattr = np.empty(16, dtype=np.int64)
    nl, nr = 0, 0
    gs = (va // span) * span
    ge = gs + span
    if gs > s:
        lstart[nl], lsize[nl], lattr[nl] = s, gs - s, a0
        nl += 1
    if ge < s + size:
        rstart[nr], rsize[nr], rattr[nr] = ge, s + size - ge, a0
        nr += 1
    level = _a_level(a0)
    cont = _a_cont(a0)
    ret = 0
    entries = np.int64(1) << (g[G_PAGE_SHIFT] - 3)
    while True:
        i = level + 1
        if cont:
            counts[PtEvent.CONT_SPLITS] += 1
            counts[PtEvent.DESCRIPTORS_WRITTEN] += (ge - gs) // g[G_LEAF + i]
            cont = 0
            sub = g[G_LEAF + i]
        else:
            if not _alloc_table(t, counts):
                ret = -ENOMEM
                break
            counts[PtEvent.BLOCK_SPLITS] += 1
            counts[PtEvent.DESCRIPTORS_WRITTEN] += entries
            level += 1
            i = level + 1
            cont = 1 if (to_cont and g[G_CONT + i] > 0) else 0
            sub = g[G_CONT + i] if cont else g[G_LEAF + i]
        a = _with_shape(a0, level, cont)
        ns = (va // sub) * sub
        if ns > gs:
            lstart[nl], lsize[nl], lattr[nl] = gs, ns - gs, a
            nl += 1
        if ns + sub < ge:
            rstart[nr], rsize[nr], rattr[nr] = ns + sub, ge - ns - sub, a
            nr += 1
        gs, ge = ns, ns + sub
        if va == gs:
            break
    a = _with_shape(a0, level, cont)
    lstart[nl], lsize[nl], lattr[nl] = gs, ge - gs, a
    nl += 1
    for j in range(nr - 1, -1, -1):
        lstart[nl], lsize[nl], lattr[nl] = rstart[j], rsize[j], rattr[j]
        nl += 1
    # replace the extent by the pieces (adjacent equal attrs merged), then merge neighbours
    k = 0
    for j in range(1, nl):
        if lattr[j] == lattr[k]:
            lsize[k] += lsize[j]
        else:
            k += 1
            lstart[k], lsize[k], lattr[k] = lstart[j], lsize[j], lattr[j]
    k += 1
    t.ext[c, r, F_VA] = lstart[0]
    t.ext[c, r, F_SIZE] = lsize[0]
    t.ext[c, r, F_PA] = pa0 + (lstart[0] - s)
    t.ext[c, r, F_ATTR] = lattr[0]
    if k > 1:
        for j in range(1, k):
            rstart[j] = pa0 + (lstart[j] - s)
        _insert_many(t, p, r, lstart[1:], lsize[1:], rstart[1:], lattr[1:], k - 1)
    _merge_span(t, s, s + size)
    return ret


@njit(python=False)
def _range_mapped(t, lo, hi):
    """True iff every byte of [lo, hi) is mapped."""
    p, r = _locate(t, lo)
    if p < 0:
        return False
    c = t.order[p]
    end = t.ext[c, r, F_VA] + t.ext[c, r, F_SIZE]
    if end <= lo:
        return False
    while end < hi:
        p, r = _next(t, p, r)
        if p < 0:
            return False
        c = t.order[p]
        if t.ext[c, r, F_VA] != end:
            return False
        end += t.ext[c, r, F_SIZE]
    return True


@njit(python=False)
def _cut(t, va):
    """Cut the extent holding ``va`` in two at ``va`` (a leaf boundary): same leaves, two
    rows, so that a range operation can address [va, ...) alone."""
    p, r = _locate(t, va)
    if p < 0:
        return
    c = t.order[p]
    s = t.ext[c, r, F_VA]
    size = t.ext[c, r, F_SIZE]
    if va == s or va >= s + size:
        return
    t.ext[c, r, F_SIZE] = va - s
    _insert_after(t, p, r, va, s + size - va, t.ext[c, r, F_PA] + (va - s), t.ext[c, r, F_ATTR])


@njit(python=False)
def _boundary_splits(t, g, counts, lo, hi, to_cont):
    """Make lo and hi leaf boundaries and extent boundaries; 0 or -ENOMEM."""
    ret = _split(t, g, counts, lo, to_cont)
    if ret == -ENOMEM:
        return ret
    if ret == -EINVAL:
        counts[PtEvent.EINVAL] -= 1  # an unmapped boundary is already a leaf boundary
    ret = _split(t, g, counts, hi, to_cont)
    if ret == -EINVAL:
        counts[PtEvent.EINVAL] -= 1
        ret = 0
    if ret == 0:
        _cut(t, lo)
        _cut(t, hi)
    return ret


@njit(python=False)
def _set_perm(t, g, counts, lo, hi, perm, mode):
    """Change permissions of every leaf in [lo, hi) (``__change_memory_common``)."""
    if not _range_mapped(t, lo, hi):
        counts[PtEvent.EINVAL] += 1
        return -EINVAL
    ret = _boundary_splits(t, g, counts, lo, hi, np.bool_(True))
    if ret < 0:
        return ret
    if mode == 1:
        need = 0
        p, r = _locate(t, lo)
        while p >= 0:
            c = t.order[p]
            s = t.ext[c, r, F_VA]
            if s >= hi:
                break
            lv = _a_level(t.ext[c, r, F_ATTR])
            for k in range(lv + 1, 4):
                need += t.ext[c, r, F_SIZE] // g[G_ENTRY + k]
            p, r = _next(t, p, r)
        b = t.meta[M_BUDGET]
        if b >= 0 and need > b:
            counts[PtEvent.ALLOC_FAILURES] += 1
            _merge_span(t, lo, hi)  # undo the cuts: extents stay maximal
            return -ENOMEM
        if b >= 0:
            t.meta[M_BUDGET] = b - need
        counts[PtEvent.TABLE_PAGES_ALLOCATED] += need
    entries = np.int64(1) << (g[G_PAGE_SHIFT] - 3)
    p, r = _locate(t, lo)
    while p >= 0:
        c = t.order[p]
        s = t.ext[c, r, F_VA]
        if s >= hi:
            break
        a = t.ext[c, r, F_ATTR]
        size = t.ext[c, r, F_SIZE]
        if mode == 1:
            lv = _a_level(a)
            if lv < 3:
                tables = 0
                for k in range(lv + 1, 4):
                    tables += size // g[G_ENTRY + k]
                counts[PtEvent.BLOCK_SPLITS] += tables
                counts[PtEvent.DESCRIPTORS_WRITTEN] += tables * entries
            if _a_cont(a):
                counts[PtEvent.CONT_SPLITS] += size // g[G_CONT + lv + 1]
            a = _with_shape(a, 3, 0)
        n = size // g[G_LEAF + _a_level(a) + 1]
        counts[PtEvent.LEAVES_CHANGED] += n
        counts[PtEvent.DESCRIPTORS_WRITTEN] += n
        t.ext[c, r, F_ATTR] = a if perm == KEEP_PERM else _with_perm(a, perm)
        p, r = _next(t, p, r)
    _merge_span(t, lo, hi)
    counts[PtEvent.PERM_CHANGES] += 1
    return 0


@njit(python=False)
def _unmap(t, g, counts, lo, hi):
    """Remove every leaf in [lo, hi), freeing tables left empty; 0, -EINVAL or -ENOMEM."""
    p, r = _first_from(t, lo)
    if p < 0 or t.ext[t.order[p], r, F_VA] >= hi:
        counts[PtEvent.EINVAL] += 1
        return -EINVAL
    ret = _boundary_splits(t, g, counts, lo, hi, np.bool_(True))
    if ret < 0:
        return ret
    before = _tables_near(t, g, lo, hi)
    p, r = _first_from(t, lo)
    while p >= 0:
        if t.ext[t.order[p], r, F_VA] >= hi:
            break
        _delete(t, p, r)
        # the row after the deleted one is now at (p, r), or starts the next chunk
        if p >= t.meta[M_NCHUNKS]:
            break
        if r >= t.clen[t.order[p]]:
            p, r = p + 1, 0
            if p >= t.meta[M_NCHUNKS]:
                break
    after = _tables_near(t, g, lo, hi)
    counts[PtEvent.TABLE_PAGES_FREED] += before - after
    counts[PtEvent.UNMAPS] += 1
    return 0


@njit(python=False)
def _paint_units(g, policy, d):
    """Leaf units usable for a mapping with PA - VA = d, largest first: (bytes, level, cont)."""
    ub = np.zeros(12, dtype=np.int64)
    ul = np.zeros(12, dtype=np.int64)
    uc = np.zeros(12, dtype=np.int64)
    n = 0
    for lv in range(g[G_START], 4):
        i = lv + 1
        lb = g[G_LEAF + i]
        if lb == 0 or (lv < 3 and (policy & 2)):
            continue
        cb = g[G_CONT + i]
        if cb > 0 and (policy & 1) == 0 and d % cb == 0:
            ub[n], ul[n], uc[n] = cb, lv, 1
            n += 1
        if d % lb == 0:
            ub[n], ul[n], uc[n] = lb, lv, 0
            n += 1
    return ub[:n], ul[:n], uc[:n]


@njit
def _map(t, g, counts, lo, hi, pa, perm, nid, policy):
    """Paint [lo, hi) -> pa with the largest leaves the policy allows (``__create_pgd_mapping``)."""
    p, r = _first_from(t, lo)
    if p >= 0 and t.ext[t.order[p], r, F_VA] < hi:
        return -EEXIST
    before = _tables_near(t, g, lo, hi)
    d = pa - lo
    ub, ul, uc = _paint_units(g, policy, d)
    rs = np.empty(24, dtype=np.int64)
    re = np.empty(24, dtype=np.int64)
    ra = np.empty(24, dtype=np.int64)
    n = 0
    # largest unit with a non-empty aligned region, then smaller units outwards
    top = -1
    A, B = lo, hi
    for j in range(ub.size):
        u = ub[j]
        a = ((lo + u - 1) // u) * u
        b = (hi // u) * u
        if a < b:
            top = j
            A, B = a, b
            break
    left_s = np.empty(24, dtype=np.int64)
    left_e = np.empty(24, dtype=np.int64)
    left_a = np.empty(24, dtype=np.int64)
    nleft = 0
    edge = A
    for j in range(top + 1, ub.size):
        u = ub[j]
        a = ((lo + u - 1) // u) * u
        if a < edge:
            left_s[nleft], left_e[nleft] = a, edge
            left_a[nleft] = _attr(ul[j], uc[j], perm, nid)
            nleft += 1
            edge = a
    for j in range(nleft - 1, -1, -1):
        rs[n], re[n], ra[n] = left_s[j], left_e[j], left_a[j]
        n += 1
    rs[n], re[n], ra[n] = A, B, _attr(ul[top], uc[top], perm, nid)
    n += 1
    edge = B
    for j in range(top + 1, ub.size):
        u = ub[j]
        b = (hi // u) * u
        if b > edge:
            rs[n], re[n], ra[n] = edge, b, _attr(ul[j], uc[j], perm, nid)
            n += 1
            edge = b
    pp, pr = _locate(t, lo)
    for j in range(n):
        left_s[j] = re[j] - rs[j]
        left_e[j] = pa + (rs[j] - lo)
    if pp < 0:
        for j in range(n):
            pp, pr = _insert_after(t, pp, pr, rs[j], left_s[j], left_e[j], ra[j])
    else:
        _insert_many(t, pp, pr, rs, left_s, left_e, ra, n)
    _merge_span(t, lo, hi)
    after = _tables_near(t, g, lo, hi)
    counts[PtEvent.TABLE_PAGES_ALLOCATED] += after - before
    counts[PtEvent.MAPS] += 1
    return 0


@njit
def _run_ops(t, g, counts, ops, res, first):
    """Apply ``ops[first:]`` in order, writing each return code to ``res``; stop early and
    return the index of the next op when fewer than ``_GROW_MARGIN`` chunks are free."""
    for k in range(first, ops.shape[0]):
        if t.meta[M_FREE_TOP] < _GROW_MARGIN:
            return k
        kind = ops[k, 0]
        va = ops[k, 1]
        size = ops[k, 2]
        if kind == OP_MAP:
            aux = ops[k, 5]
            res[k] = _map(t, g, counts, va, va + size, ops[k, 3], ops[k, 4], aux >> 8, aux & 0xFF)
        elif kind == OP_UNMAP:
            res[k] = _unmap(t, g, counts, va, va + size)
        elif kind == OP_SPLIT:
            res[k] = _split(t, g, counts, va, ops[k, 5] == 0)
        else:
            res[k] = _set_perm(t, g, counts, va, va + size, ops[k, 4], ops[k, 5])
    return ops.shape[0]


# ---- queries -----------------------------------------------------------------------------
@njit
def _translate_many(t, vas, pa, level, cont, perm, nid):
    # extents are disjoint: a va inside the last extent found is in no other, so the search
    # is skipped for the runs of a trace that stay in one mapping
    c, r, s, e = -1, -1, 0, 0
    for k in range(vas.size):
        va = vas[k]
        if c < 0 or va < s or va >= e:
            p, r = _locate(t, va)
            level[k] = -2
            if p < 0:
                c = -1
                continue
            c = t.order[p]
            s = t.ext[c, r, F_VA]
            e = s + t.ext[c, r, F_SIZE]
            if va >= e:
                c = -1
                continue
        a = t.ext[c, r, F_ATTR]
        pa[k] = t.ext[c, r, F_PA] + (va - s)
        level[k] = _a_level(a)
        cont[k] = _a_cont(a)
        perm[k] = _a_perm(a)
        nid[k] = _a_nid(a)


@njit
def _walk_nids(t, g, vas, rule, fixed_nid, out):
    """``out[k, j]``: node of the table read at walk step j (top level first) for ``vas[k]``,
    -1 below the leaf or when unmapped past that step."""
    start = g[G_START]
    for k in range(vas.size):
        va = vas[k]
        for j in range(out.shape[1]):
            out[k, j] = -1
        out[k, 0] = fixed_nid
        p, r = _locate(t, va)
        if p < 0:
            continue
        c = t.order[p]
        if va >= t.ext[c, r, F_VA] + t.ext[c, r, F_SIZE]:
            continue
        leaf = _a_level(t.ext[c, r, F_ATTR])
        for lv in range(start + 1, leaf + 1):
            if rule == 1:
                S = g[G_ENTRY + lv]
                q, s = _first_from(t, (va // S) * S)
                out[k, lv - start] = _a_nid(t.ext[t.order[q], s, F_ATTR])
            else:
                out[k, lv - start] = fixed_nid


@njit
def _dump(t, out):
    k = 0
    for p in range(t.meta[M_NCHUNKS]):
        c = t.order[p]
        for r in range(t.clen[c]):
            for f in range(NFIELDS):
                out[k, f] = t.ext[c, r, f]
            k += 1
    return k


@njit
def _copy_range(t, out, lo, hi):
    """Rows of extents overlapping [lo, hi), clipped to it."""
    k = 0
    p, r = _first_from(t, lo)
    while p >= 0:
        c = t.order[p]
        s = t.ext[c, r, F_VA]
        if s >= hi:
            break
        e = s + t.ext[c, r, F_SIZE]
        a = max(s, lo)
        b = min(e, hi)
        if k < out.shape[0]:
            out[k, F_VA] = a
            out[k, F_SIZE] = b - a
            out[k, F_PA] = t.ext[c, r, F_PA] + (a - s)
            out[k, F_ATTR] = t.ext[c, r, F_ATTR]
        k += 1
        p, r = _next(t, p, r)
    return k


class Translation(NamedTuple):
    """One VA's translation: output address, leaf level, cont bit, permissions, node."""

    pa: int
    level: int
    cont: bool
    perm: Perm
    nid: int


class PageTable:
    """A translation table stored as leaf extents, over one :class:`Geometry`.

    Parameters
    ----------
    geometry : the translation regime (``kmm.geometry.arm64/x86_64/stage2``)
    placement : :class:`TablePlacement` rule giving each table page's node
    table_nid : node of every table under ``FIXED_NODE`` and of the top-level table
    chunks : initial capacity in chunks of ``CHUNK_ROWS`` extents (grows as needed)

    Examples
    --------
    >>> from kmm import geometry
    >>> pt = PageTable(geometry.arm64("4K", 48))
    >>> pt.map(0, 1 << 30, 0, Perm.RW)           # one PUD block
    >>> pt.split(4096)
    0
    >>> pt.table_pages()                         # top, PUD table, PMD table, PTE table
    {0: 1, 1: 1, 2: 1, 3: 1}
    """

    def __init__(self, geometry: Geometry, *, placement: TablePlacement = TablePlacement.FIXED_NODE,
                 table_nid: int = 0, chunks: int = 64):
        if not isinstance(geometry, Geometry):
            raise ConfigError(f"must be a kmm.geometry.Geometry, got {type(geometry).__name__}",
                              "geometry")
        self.geometry = geometry
        self.placement = TablePlacement(placement)
        self.table_nid = check_int("table_nid", table_nid, 0, MAX_NODES - 1)
        chunks = check_int("chunks", chunks, 1)
        self._g = geometry_vector(geometry)
        self._t = _new_tree(chunks + _GROW_MARGIN)
        self.counters = Counters(PtEvent)
        self._limit = 1 << geometry.va_bits

    # ---- validation --------------------------------------------------------------------
    def _check_va(self, name: str, va, *, end: bool = False) -> int:
        va = check_int(name, va, 0, self._limit)
        if not end and va == self._limit:
            raise ConfigError(f"must be < 2**{self.geometry.va_bits}, got {va:#x}", name)
        if va % self.geometry.page_bytes:
            raise ConfigError(f"must be {self.geometry.page_bytes}-byte aligned, got {va:#x}",
                              name)
        return va

    def _check_range(self, va, size_bytes) -> tuple[int, int]:
        va = self._check_va("va", va)
        size = check_int("size_bytes", size_bytes, 1)
        if size % self.geometry.page_bytes:
            raise ConfigError(f"must be a multiple of {self.geometry.page_bytes}, got {size}",
                              "size_bytes")
        if va + size > self._limit:
            raise ConfigError(f"range ends past 2**{self.geometry.va_bits}", "size_bytes")
        return va, size

    @staticmethod
    def _check_perm(perm) -> int:
        return check_int("perm", int(perm) if isinstance(perm, IntFlag) else perm, 0, 255)

    # ---- running ops -------------------------------------------------------------------
    def apply_ops(self, ops: np.ndarray) -> np.ndarray:
        """Apply a batch of encoded operations (see :func:`encode_ops`) in one kernel call
        per growth step; returns each op's return code (0 or a negative errno).

        Arguments are not validated here beyond shape: build ``ops`` with
        :func:`encode_ops`, which validates every field.
        """
        ops = np.ascontiguousarray(ops, dtype=np.int64)
        if ops.ndim != 2 or ops.shape[1] != OP_FIELDS:
            raise ConfigError(f"must have shape (n, {OP_FIELDS}), got {ops.shape}", "ops")
        res = np.zeros(ops.shape[0], dtype=np.int64)
        k = 0
        while k < ops.shape[0]:
            if self._t.meta[M_FREE_TOP] < _GROW_MARGIN:
                self._t = _grow_tree(self._t, 2 * self._t.ext.shape[0])
            k = _run_ops(self._t, self._g, self.counters.values, ops, res, k)
        return res

    def _one(self, kind, va, size, pa, perm, aux) -> int:
        op = np.array([[kind, va, size, pa, perm, aux]], dtype=np.int64)
        return int(self.apply_ops(op)[0])

    # ---- public operations -------------------------------------------------------------
    def map(self, va: int, size_bytes: int, pa: int, perm: int = Perm.RW, *,
            policy: Paint = Paint.LARGEST, nid: int = 0) -> None:
        """Map [va, va + size_bytes) to ``pa`` under a painting policy.

        Raises :class:`ConfigError` if any of the range is already mapped.
        """
        va, size = self._check_range(va, size_bytes)
        pa = check_int("pa", pa, 0, (1 << 62) - 1)
        if pa % self.geometry.page_bytes:
            raise ConfigError(f"must be {self.geometry.page_bytes}-byte aligned, got {pa:#x}",
                              "pa")
        perm = self._check_perm(perm)
        nid = check_int("nid", nid, 0, MAX_NODES - 1)
        policy = Paint(policy)
        ret = self._one(OP_MAP, va, size, pa, perm, (nid << 8) | int(policy))
        if ret == -EEXIST:
            raise ConfigError(f"[{va:#x}, {va + size:#x}) overlaps an existing mapping", "va")

    def split(self, va: int, *, to_cont: bool = True) -> int:
        """Split the leaf holding ``va`` so that ``va`` is a leaf boundary.

        Returns 0, ``-EINVAL`` if ``va`` is not mapped, ``-ENOMEM`` if a table page could
        not be allocated (translations intact; splits done before the failure stay).
        ``to_cont`` fills new tables with contiguous ranges where aligned, as
        ``split_pud``/``split_pmd`` do.
        """
        va = self._check_va("va", va)
        return self._one(OP_SPLIT, va, 0, 0, 0, 0 if to_cont else 1)

    def set_perm(self, va: int, size_bytes: int, perm: int, *,
                 mode: PermSplit = PermSplit.BOUNDARY) -> int:
        """Change permissions of every leaf in [va, va + size_bytes).

        Returns 0, ``-EINVAL`` if part of the range is unmapped (nothing changed), or
        ``-ENOMEM`` (translations and permissions intact).
        """
        va, size = self._check_range(va, size_bytes)
        return self._one(OP_SET_PERM, va, size, 0, self._check_perm(perm), int(PermSplit(mode)))

    def split_to_ptes(self, va: int, size_bytes: int) -> int:
        """Split every leaf in [va, va + size_bytes) to non-contiguous PTEs, keeping each
        leaf's permissions (the linear-map repaint of arch/arm64/mm/mmu.c
        ``linear_map_split_to_ptes``; the v1 preparation of a permission change).

        Returns 0, ``-EINVAL`` if part of the range is unmapped, or ``-ENOMEM``.
        """
        va, size = self._check_range(va, size_bytes)
        return self._one(OP_SET_PERM, va, size, 0, KEEP_PERM, int(PermSplit.TO_PTES))

    def unmap(self, va: int, size_bytes: int) -> int:
        """Unmap every leaf in [va, va + size_bytes), freeing tables left empty.

        Returns 0, ``-EINVAL`` if nothing in the range is mapped, or ``-ENOMEM`` when a
        boundary split fails (nothing unmapped).
        """
        va, size = self._check_range(va, size_bytes)
        return self._one(OP_UNMAP, va, size, 0, 0, 0)

    def fail_table_alloc_after(self, n: int | None) -> None:
        """Let the next ``n`` table allocations by splits succeed and fail every later one
        with ``-ENOMEM``; ``None`` removes the limit."""
        self._t.meta[M_BUDGET] = -1 if n is None else check_int("n", n, 0)

    # ---- queries -----------------------------------------------------------------------
    def translate(self, va: int) -> Translation | None:
        """The translation of ``va`` or None if unmapped."""
        va = check_int("va", va, 0, self._limit - 1)
        pa, level, cont, perm, nid = self.translate_many(np.array([va], dtype=np.int64))
        if level[0] < -1:
            return None
        return Translation(int(pa[0]), int(level[0]), bool(cont[0]), Perm(int(perm[0])),
                           int(nid[0]))

    def translate_many(self, vas: np.ndarray):
        """Vectorised translation: arrays ``(pa, level, cont, perm, nid)``; ``level`` is -2
        where a VA is unmapped (the other fields are 0 there)."""
        vas = np.ascontiguousarray(vas, dtype=np.int64)
        n = vas.size
        pa = np.zeros(n, dtype=np.int64)
        level = np.zeros(n, dtype=np.int64)
        cont = np.zeros(n, dtype=np.int64)
        perm = np.zeros(n, dtype=np.int64)
        nid = np.zeros(n, dtype=np.int64)
        _translate_many(self._t, vas.ravel(), pa, level, cont, perm, nid)
        return pa, level, cont, perm, nid

    def walk_nids(self, vas: np.ndarray) -> np.ndarray:
        """Node of the table read at each walk step (top level first) for each VA, under the
        placement rule; -1 past the leaf. Shape ``(n, levels)``."""
        vas = np.ascontiguousarray(vas, dtype=np.int64).ravel()
        out = np.empty((vas.size, self.geometry.levels), dtype=np.int64)
        _walk_nids(self._t, self._g, vas, int(self.placement), self.table_nid, out)
        return out

    @property
    def n_extents(self) -> int:
        return int(self._t.meta[M_NEXT])

    def extents_array(self) -> np.ndarray:
        """All extents as an int64 array of rows ``(va, size, pa, attr)`` in VA order."""
        out = np.empty((self.n_extents, NFIELDS), dtype=np.int64)
        _dump(self._t, out)
        return out

    def extents(self):
        """A polars frame of extents: ``va, end, size_bytes, pa, level, level_name, cont,
        perm, nid``."""
        import polars as pl

        a = self.extents_array()
        attr = a[:, F_ATTR]
        level = (attr & 7) - 1
        names = np.array([_level_name(self.geometry, lv) for lv in range(-1, 4)])
        return pl.DataFrame({
            "va": a[:, F_VA], "end": a[:, F_VA] + a[:, F_SIZE], "size_bytes": a[:, F_SIZE],
            "pa": a[:, F_PA], "level": level, "level_name": names[level + 1],
            "cont": ((attr >> A_CONT_SHIFT) & 1).astype(bool),
            "perm": (attr >> A_PERM_SHIFT) & 0xFF, "nid": (attr >> A_NID_SHIFT) & 0xFFFF,
        })

    def _counts(self, lo: int = 0, hi: int | None = None, nodes: int = 1):
        hi = self._limit if hi is None else hi
        out = np.zeros(5, dtype=np.int64)
        nodes = max(nodes, self.table_nid + 1, self._max_nid() + 1)
        bynode = np.zeros((5, nodes), dtype=np.int64)
        _count_windows(self._t, self._g, lo, hi, out, bynode, int(self.placement),
                       self.table_nid)
        return out, bynode

    def _max_nid(self) -> int:
        a = self.extents_array()
        return int(((a[:, F_ATTR] >> A_NID_SHIFT) & 0xFFFF).max()) if a.shape[0] else 0

    def table_pages(self) -> dict[int, int]:
        """Tables per level, top level first, as the kernel allocates them.

        The top level counts its table(s) (``Geometry.concatenated`` for stage 2, else 1),
        which may be smaller than a page: use :meth:`table_bytes` for memory.
        """
        out, _ = self._counts()
        g = self.geometry
        d = {g.start_level: g.concatenated}
        for lv in range(g.start_level + 1, 4):
            d[lv] = int(out[lv + 1])
        return d

    def table_pages_by_node(self, nodes: int = 1) -> dict[int, dict[int, int]]:
        """Tables per node and level under the placement rule: ``{nid: {level: count}}``."""
        _, bynode = self._counts(nodes=nodes)
        g = self.geometry
        res = {}
        for nid in range(bynode.shape[1]):
            d = {g.start_level: g.concatenated if nid == self.table_nid else 0}
            for lv in range(g.start_level + 1, 4):
                d[lv] = int(bynode[lv + 1, nid])
            res[nid] = d
        return res

    def table_bytes(self) -> int:
        """Bytes of translation tables: the top-level table(s) plus one page per lower table."""
        t = self.table_pages()
        g = self.geometry
        lower = sum(v for lv, v in t.items() if lv != g.start_level)
        return g.top_table_bytes + lower * g.page_bytes

    def leaf_bytes_by_level(self) -> dict[tuple[int, bool], int]:
        """Mapped bytes per (leaf level, cont)."""
        a = self.extents_array()
        res: dict[tuple[int, bool], int] = {}
        for lv, c, s in zip(((a[:, F_ATTR] & 7) - 1).tolist(),
                            ((a[:, F_ATTR] >> A_CONT_SHIFT) & 1).tolist(), a[:, F_SIZE].tolist()):
            res[(lv, bool(c))] = res.get((lv, bool(c)), 0) + s
        return res

    def block_leaves(self) -> int:
        """Block descriptors (leaves above level 3), cont or not."""
        a = self.extents_array()
        level = (a[:, F_ATTR] & 7) - 1
        g = self._g
        sizes = g[G_LEAF + level + 1]
        blk = level < 3
        return int((a[blk, F_SIZE] // sizes[blk]).sum())

    def tlb_entries(self, cont_as_one: bool = True) -> int:
        """TLB entries needed to hold every translation of the table at once: one per leaf,
        or one per contiguous range when ``cont_as_one`` (the contiguous hint lets an
        implementation cache a range as one entry; Arm ARM D8 "the Contiguous bit")."""
        a = self.extents_array()
        level = (a[:, F_ATTR] & 7) - 1
        cont = ((a[:, F_ATTR] >> A_CONT_SHIFT) & 1).astype(bool)
        unit = self._g[G_LEAF + level + 1].copy()
        if cont_as_one:
            unit[cont] = self._g[G_CONT + level[cont] + 1]
        return int((a[:, F_SIZE] // unit).sum())

    def ptdump(self, va_base: int = 0) -> str:
        """A listing like arch/arm64/mm/ptdump.c: range, size, level, CON, permissions."""
        lines = []
        for va, size, pa, attr in self.extents_array().tolist():
            lv = (attr & 7) - 1
            perm = (attr >> A_PERM_SHIFT) & 0xFF
            con = "CON" if (attr >> A_CONT_SHIFT) & 1 else "   "
            prot = ("R" if perm & 1 else "-") + ("W" if perm & 2 else "-") + \
                   ("X" if perm & 4 else "-")
            lines.append(f"0x{va_base + va:016x}-0x{va_base + va + size:016x} "
                         f"{_human(size):>9} {_level_name(self.geometry, lv)} {con} {prot} "
                         f"pa=0x{pa:x} nid={(attr >> A_NID_SHIFT) & 0xFFFF}")
        return "\n".join(lines)

    def copy(self) -> "PageTable":
        """An independent copy (counters included)."""
        new = PageTable.__new__(PageTable)
        new.geometry, new.placement, new.table_nid = self.geometry, self.placement, self.table_nid
        new._g, new._limit = self._g, self._limit
        new._t = _Tree(*(a.copy() for a in self._t))
        new.counters = self.counters.snapshot()
        return new

    def replicate(self, va: int, size_bytes: int, copies: dict[int, int]) -> "Replicated":
        """Per-node copies of [va, va + size_bytes) (kernel text replication).

        ``copies`` maps a node to the output address of its copy of the range. Each such
        node gets its own top-level table; the top-level entries covering the range point to
        node-local lower tables (a copy of this table's subtree there, with the range
        remapped to the node's copy, same leaf shapes and permissions); every other entry is
        shared with this table. Copy addresses must keep the alignment of the original
        output addresses modulo the largest leaf in the range.
        """
        return Replicated(self, va, size_bytes, copies)


def _level_name(g: Geometry, level: int) -> str:
    if level == g.start_level:
        return "PGD"
    return _LEVEL_NAMES[level]


def _human(n: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B" if n < 1024 else f"{n / 1024:.0f}K"


class Replicated:
    """A base page table plus per-node copies of one subtree (see
    :meth:`PageTable.replicate`)."""

    def __init__(self, base: PageTable, va: int, size_bytes: int, copies: dict[int, int]):
        g = base.geometry
        va, size = base._check_range(va, size_bytes)
        if not copies:
            raise ConfigError("needs at least one node copy", "copies")
        self.base = base
        self.lo, self.hi = va, va + size
        top = g.entry_bytes(g.start_level)
        self.region = (va // top * top, -(-(va + size) // top) * top)
        rows = np.empty((base.n_extents, NFIELDS), dtype=np.int64)
        n = _copy_range(base._t, rows, va, va + size)
        rows = rows[:n]
        if rows[:, F_SIZE].sum() != size:
            raise ConfigError("the replicated range must be fully mapped", "va")
        region_rows = np.empty((base.n_extents, NFIELDS), dtype=np.int64)
        m = _copy_range(base._t, region_rows, *self.region)
        region_rows = region_rows[:m]
        pa_lo = int(rows[0, F_PA])
        if va % _unit_bytes(g, int(rows[0, F_ATTR])) or \
                (va + size) % _unit_bytes(g, int(rows[-1, F_ATTR])):
            raise ConfigError("the range must start and end on leaf boundaries; split there "
                              "first", "va")
        align = max(_unit_bytes(g, int(a)) for a in rows[:, F_ATTR])
        self.nodes: dict[int, PageTable] = {}
        for nid, pa in copies.items():
            nid = check_int("copies node", nid, 0, MAX_NODES - 1)
            pa = check_int(f"copies[{nid}]", pa, 0, (1 << 62) - 1)
            if (pa - pa_lo) % align:
                raise ConfigError(f"copy address {pa:#x} must equal the original's "
                                  f"({pa_lo:#x}) modulo {align:#x}", f"copies[{nid}]")
            sub = PageTable(g, placement=TablePlacement.FIXED_NODE, table_nid=nid)
            out = _clip_rows(region_rows, self.lo, self.hi, pa, pa_lo, nid)
            _load_rows(sub, out)
            self.nodes[nid] = sub

    def table(self, nid: int) -> PageTable | None:
        """The node's subtree table, or None when the node uses the base table."""
        return self.nodes.get(nid)

    def translate(self, va: int, nid: int) -> Translation | None:
        """Translation of ``va`` as seen from a CPU on node ``nid``."""
        sub = self.nodes.get(nid)
        if sub is not None and self.region[0] <= va < self.region[1]:
            return sub.translate(va)
        return self.base.translate(va)

    def table_pages_by_node(self) -> dict[int, dict[int, int]]:
        """Tables each node owns: the base table's (on its placement) plus, for every copy
        node, its top-level table and the subtree below it."""
        res = self.base.table_pages_by_node(nodes=max(self.nodes) + 1)
        g = self.base.geometry
        for nid, sub in self.nodes.items():
            d = res.setdefault(nid, {lv: 0 for lv in range(g.start_level, 4)})
            for lv, v in sub.table_pages().items():
                d[lv] = d.get(lv, 0) + v
        return res

    def extra_table_bytes(self) -> int:
        """Translation-table bytes replication adds: each copy's top-level table (possibly
        smaller than a page) plus its lower tables."""
        return sum(sub.table_bytes() for sub in self.nodes.values())

    def extra_copy_bytes(self) -> int:
        """Bytes of the node-local copies of the range."""
        return (self.hi - self.lo) * len(self.nodes)


def _unit_bytes(g: Geometry, attr: int) -> int:
    lv = (attr & 7) - 1
    if (attr >> A_CONT_SHIFT) & 1:
        return g.cont_bytes(lv)
    return g.leaf_bytes(lv)


def _clip_rows(rows: np.ndarray, lo: int, hi: int, pa: int, pa_lo: int, nid: int) -> list:
    out = []
    for s, sz, opa, attr in rows.tolist():
        e = s + sz
        for a, b, inside in ((s, min(e, lo), False), (max(s, lo), min(e, hi), True),
                             (max(s, hi), e, False)):
            if a >= b:
                continue
            p = opa + (a - s)
            at = attr
            if inside:
                p = pa + (p - pa_lo)
                at = (attr & ~(0xFFFF << A_NID_SHIFT)) | (nid << A_NID_SHIFT)
            out.append((a, b - a, p, at))
    return out


@njit
def _load_sorted(t, rows):
    p, r = -1, -1
    for k in range(rows.shape[0]):
        p, r = _insert_after(t, p, r, rows[k, 0], rows[k, 1], rows[k, 2], rows[k, 3])
    _merge_span(t, rows[0, 0], rows[rows.shape[0] - 1, 0])


def _load_rows(pt: PageTable, rows: list) -> None:
    """Load already-valid extent rows (sorted, disjoint) into an empty table."""
    if not rows:
        return
    arr = np.array(rows, dtype=np.int64)
    need = arr.shape[0] // (CHUNK_ROWS // 2) + 2 * _GROW_MARGIN
    if pt._t.ext.shape[0] < need:
        pt._t = _grow_tree(pt._t, need)
    _load_sorted(pt._t, arr)


# ---- ops encoding and the benchmark ------------------------------------------------------
def encode_ops(kind: np.ndarray, va: np.ndarray, size_bytes: np.ndarray | None = None,
               pa: np.ndarray | None = None, perm: np.ndarray | None = None,
               aux: np.ndarray | None = None, *, geometry: Geometry) -> np.ndarray:
    """Validate and pack operations for :meth:`PageTable.apply_ops`.

    ``kind``: ``OP_MAP``, ``OP_UNMAP``, ``OP_SPLIT``, ``OP_SET_PERM``; ``aux``: for maps
    ``nid << 8 | Paint``, for permission changes a :class:`PermSplit`, for splits 1 to
    refill without contiguous ranges.
    """
    kind = np.asarray(kind, dtype=np.int64).ravel()
    n = kind.size

    def col(x, name):
        if x is None:
            return np.zeros(n, dtype=np.int64)
        x = np.broadcast_to(np.asarray(x, dtype=np.int64), (n,))
        if (x < 0).any():
            raise ConfigError("must be >= 0", name)
        return x

    va, size, pa, perm, aux = (col(va, "va"), col(size_bytes, "size_bytes"), col(pa, "pa"),
                               col(perm, "perm"), col(aux, "aux"))
    if ((kind < OP_MAP) | (kind > OP_SET_PERM)).any():
        raise ConfigError("unknown operation code", "kind")
    page = geometry.page_bytes
    if (va % page).any() or (size % page).any() or (pa % page).any():
        raise ConfigError(f"addresses and sizes must be {page}-byte aligned", "va")
    if (va + size > (1 << geometry.va_bits)).any():
        raise ConfigError(f"range ends past 2**{geometry.va_bits}", "size_bytes")
    if ((size == 0) & (kind != OP_SPLIT)).any():
        raise ConfigError("must be > 0 for map, unmap and permission changes", "size_bytes")
    if ((perm > 255) & ((kind != OP_SET_PERM) | (perm != KEEP_PERM))).any():
        raise ConfigError("must be <= 255 (or KEEP_PERM for a permission change)", "perm")
    return np.stack([kind, va, size, pa, perm, aux], axis=1)


def bench_random_ops(n_ops: int, seed: int, *, policy: Paint = Paint.PTES,
                     granule: str = "4K", map_bytes: int = 4 << 40) -> tuple[float, int]:
    """Measure a linear map of ``map_bytes`` painted under ``policy`` plus ``n_ops`` random
    operations: half splits at random pages, half permission changes of 1 to 64 pages.

    Returns ``(seconds, extents)``: wall time of the painting and the operations (compiled
    kernels, compilation excluded) and the number of extents at the end.
    """
    from .geometry import arm64

    n_ops = check_int("n_ops", n_ops, 0)
    g = arm64(granule, 48)
    rng = np.random.default_rng(seed)
    pages = map_bytes // g.page_bytes
    warm = PageTable(g)
    warm.map(0, 1024 * g.page_bytes, 0)
    warm.apply_ops(_random_ops(np.random.default_rng(0), 16, 1024, g))
    ops = _random_ops(rng, n_ops, pages, g)
    t0 = time.perf_counter()
    pt = PageTable(g, chunks=max(64, n_ops // 32))
    pt.map(0, map_bytes, 0, Perm.RW, policy=policy)
    pt.apply_ops(ops)
    return time.perf_counter() - t0, pt.n_extents


def _random_ops(rng, n, pages, g):
    kind = np.where(rng.random(n) < 0.5, OP_SPLIT, OP_SET_PERM).astype(np.int64)
    length = rng.integers(1, 65, n)
    start = rng.integers(0, pages - 64, n)
    perm = rng.choice(np.array([1, 3, 5], dtype=np.int64), n)
    return encode_ops(kind, start * g.page_bytes, np.where(kind == OP_SPLIT, 0, length) *
                      g.page_bytes, None, perm, None, geometry=g)
