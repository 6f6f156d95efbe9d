"""permvmalloc: the Numba kernels (they call and read the engine API only).

Part of :mod:`kmm.mech.permvmalloc`.

Every allocation and free goes through :func:`get_block` / :func:`put_block`: with ``pcp``
off they are the buddy free lists (``alloc_pages`` / ``free_pages``); with it on, the orders
``pcp_allowed_order`` admits go through CPU ``cpu``'s per-CPU lists (mm/page_alloc.c v6.1
``rmqueue_pcplist`` -> ``__rmqueue_pcplist`` -> ``rmqueue_bulk``; ``free_unref_page`` ->
``free_unref_page_commit`` -> ``free_pcppages_bulk``). ``nofrag`` is ``ALLOC_NOFRAGMENT``
(``alloc_flags_nofragment``): the first pass steals nothing from a fallback type below
pageblock_order, and ``get_page_from_freelist`` retries without it.
"""
from __future__ import annotations

import functools

import numpy as np

from ...engine import (alloc_block_min, alloc_pages, BuddyConfig, free_pages, njit,
    pageblock_order, pcp_alloc_min, pcp_free, PcpConfig)

#: mm/vmalloc.c v6.1 ``vm_area_alloc_pages``: order-0 pages come from the bulk allocator
#: at most 100 per call ("to prevent a long preemption off scenario")
BULK_MAX = 100


# ---- the allocator entry points ------------------------------------------------------------
@njit(_nrt=False)
def get_block(st, pst, cpu, order, mt, pcp, nofrag):
    """A block of ``order`` and migratetype ``mt`` (``__alloc_pages`` fast path); its pfn or -1.

    ``nofrag``: the first pass steals from a fallback type only free blocks of at least
    pageblock_order (``__rmqueue_fallback``'s ``min_order`` under ``ALLOC_NOFRAGMENT``);
    if it finds nothing, a second pass without the flag (``get_page_from_freelist``: "if
    (no_fallback) { alloc_flags &= ~ALLOC_NOFRAGMENT; goto retry; }"). ``pcp``: through
    CPU ``cpu``'s lists, whose refill (``rmqueue_bulk``) runs ``__rmqueue`` with the pass's
    ``alloc_flags`` for each of up to ``max(batch >> order, 2)`` blocks and stops at the
    first it cannot find; an empty refill fails the pass."""
    pb = pageblock_order(st)
    floor = pb if nofrag != 0 and order < pb else order
    if pcp != 0:
        pfn = pcp_alloc_min(st, pst, cpu, order, mt, floor)
        if pfn < 0 and floor > order:
            pfn = pcp_alloc_min(st, pst, cpu, order, mt, order)
        return pfn
    if floor == order:
        return alloc_pages(st, order, mt)
    pfn = alloc_block_min(st, order, mt, floor)
    if pfn < 0:
        pfn = alloc_block_min(st, order, mt, order)
    return pfn


@njit(_nrt=False)
def put_block(st, pst, cpu, pfn, order, pcp):
    """Free the block at ``pfn`` (``__free_pages``): onto CPU ``cpu``'s list of its
    pageblock's type, unmerged, draining a batch once the CPU holds ``high`` pages
    (:func:`kmm.buddy.pcp_free`), or straight to the free lists (``__free_one_page``).
    False for a double or mismatched free."""
    if pcp != 0:
        return pcp_free(st, pst, cpu, pfn, order)
    return free_pages(st, pfn, order)


# ---- kernels composing the buddy allocator -------------------------------------------------
@njit(_nrt=False)
def bg_churn_pcp(st, pst, live_pfn, live_order, nlive, kind, order, mt, pick, cpu, pcp, nofrag):
    """Background allocations and frees on a buddy pool; returns the live count after.

    Op ``i`` allocates a block of ``order[i]`` with migratetype ``mt[i]`` on CPU ``cpu[i]``
    when ``kind[i] == 0`` (it joins the live set, unless the pool is exhausted) or frees
    live block ``pick[i] % nlive`` on CPU ``cpu[i]`` when ``kind[i] == 1`` (the last live
    block takes its slot), through :func:`get_block` / :func:`put_block`. The other users
    of the page allocator (slab, page cache) are modelled only through this churn, which
    scatters the free order-0 pages (mm/page_alloc.c ``rmqueue``, ``__free_one_page``).
    """
    for i in range(kind.shape[0]):
        if kind[i] == 0:
            if nlive >= live_pfn.shape[0]:
                continue
            pfn = get_block(st, pst, np.int64(cpu[i]), np.int64(order[i]), np.int64(mt[i]), pcp,
                            nofrag)
            if pfn >= 0:
                live_pfn[nlive] = pfn
                live_order[nlive] = order[i]
                nlive += 1
        elif nlive > 0:
            j = pick[i] % nlive
            put_block(st, pst, np.int64(cpu[i]), np.int64(live_pfn[j]), np.int64(live_order[j]),
                      pcp)
            nlive -= 1
            live_pfn[j] = live_pfn[nlive]
            live_order[j] = live_order[nlive]
    return nlive


@njit(_nrt=False)
def alloc_order0_pcp(st, pst, cpu, n, mt, out, pcp, nofrag):
    """``n`` order-0 pages of migratetype ``mt`` into ``out`` on CPU ``cpu``
    (``__vmalloc_area_node`` -> ``vm_area_alloc_pages``, v6.1); returns how many were
    allocated before the pool ran dry.

    The pages come from the bulk allocator in requests of at most :data:`BULK_MAX`
    (``alloc_pages_bulk_array_mempolicy`` -> ``__alloc_pages_bulk``), which takes them one
    by one off the CPU's list (``__rmqueue_pcplist``) with ``ALLOC_WMARK_LOW`` and no
    ``ALLOC_NOFRAGMENT``; a request of one page, and a page the bulk pass cannot get, go
    to the single-page allocator (``__alloc_pages``, with ``ALLOC_NOFRAGMENT``)."""
    i = 0
    while i < n:
        req = min(BULK_MAX, n - i)
        for k in range(req):
            if req > 1:
                # no ALLOC_NOFRAGMENT in the bulk pass
                pfn = get_block(st, pst, cpu, np.int64(0), mt, pcp, np.int64(0))
                if pfn < 0 and nofrag != 0:
                    pfn = get_block(st, pst, cpu, np.int64(0), mt, pcp, nofrag)
            else:
                pfn = get_block(st, pst, cpu, np.int64(0), mt, pcp, nofrag)
            if pfn < 0:
                return i + k
            out[i + k] = pfn
        i += req
    return n


@njit(_nrt=False)
def free_order0_pcp(st, pst, cpu, pfns, pcp):
    """Free order-0 pages on CPU ``cpu`` (``__free_pages(page, 0)`` in a loop); returns how
    many were freed (a page that is not an allocated order-0 block stops the loop)."""
    for i in range(pfns.shape[0]):
        if not put_block(st, pst, cpu, pfns[i], np.int64(0), pcp):
            return i
    return pfns.shape[0]


# ---- the same on the free lists alone (pcp and nofrag 0) -------------------------------------
@functools.cache
def _no_lists():
    """Per-CPU lists that a run with ``pcp`` 0 passes and never reads."""
    return PcpConfig().build(BuddyConfig(pool_pages=512))


def bg_churn(st, live_pfn, live_order, nlive, kind, order, mt, pick):
    """:func:`bg_churn_pcp` on the free lists alone (``alloc_pages`` / ``free_pages``)."""
    return bg_churn_pcp(st, _no_lists(), live_pfn, live_order, nlive, kind, order, mt, pick,
                        np.zeros(kind.shape[0], np.int64), np.int64(0), np.int64(0))


def alloc_order0(st, n, mt, out):
    """``n`` order-0 pages of migratetype ``mt`` into ``out`` off the free lists alone
    (:func:`alloc_order0_pcp` without lists or ``ALLOC_NOFRAGMENT``); returns how many were
    allocated before the pool ran dry."""
    return alloc_order0_pcp(st, _no_lists(), np.int64(0), np.int64(n), np.int64(mt), out,
                            np.int64(0), np.int64(0))


def free_order0(st, pfns):
    """Free order-0 pages to the free lists (:func:`free_order0_pcp` without lists);
    returns how many were freed (a page that is not an allocated order-0 block stops the
    loop)."""
    return free_order0_pcp(st, _no_lists(), np.int64(0), pfns, np.int64(0))


@njit(_nrt=False)
def split_block(st, pfn, order):
    """``split_page()``: an allocated order-``order`` block becomes ``1 << order`` allocated
    order-0 pages that can be freed one by one."""
    mt = st.alloc_mt[pfn]
    for p in range(pfn, pfn + (1 << order)):
        st.alloc_order[p] = 0
        st.alloc_mt[p] = mt
