"""permvmalloc: the Numba kernels (they call and read the engine API only).

Part of :mod:`kmm.mech.permvmalloc`."""
from __future__ import annotations

from ...engine import alloc_pages, free_pages, njit

# ---- kernels composing the buddy allocator -------------------------------------------------
@njit
def bg_churn(st, live_pfn, live_order, nlive, kind, order, mt, pick):
    """Background allocations and frees on a buddy pool; returns the live count after.

    Op ``i`` allocates a block of ``order[i]`` with migratetype ``mt[i]`` when
    ``kind[i] == 0`` (it joins the live set, unless the pool is exhausted) or frees live
    block ``pick[i] % nlive`` when ``kind[i] == 1`` (the last live block takes its slot).
    The other users of the page allocator (slab, page cache) are modelled only through
    this churn, which scatters the free order-0 pages (mm/page_alloc.c ``rmqueue``,
    ``__free_one_page``).
    """
    for i in range(kind.shape[0]):
        if kind[i] == 0:
            if nlive >= live_pfn.shape[0]:
                continue
            pfn = alloc_pages(st, order[i], mt[i])
            if pfn >= 0:
                live_pfn[nlive] = pfn
                live_order[nlive] = order[i]
                nlive += 1
        elif nlive > 0:
            j = pick[i] % nlive
            free_pages(st, live_pfn[j], live_order[j])
            nlive -= 1
            live_pfn[j] = live_pfn[nlive]
            live_order[j] = live_order[nlive]
    return nlive


@njit
def alloc_order0(st, n, mt, out):
    """``n`` order-0 pages of migratetype ``mt`` into ``out`` (``__vmalloc_area_node``'s
    ``alloc_page`` loop); returns how many were allocated before the pool ran dry."""
    for i in range(n):
        pfn = alloc_pages(st, 0, mt)
        if pfn < 0:
            return i
        out[i] = pfn
    return n


@njit
def free_order0(st, pfns):
    """Free order-0 pages (``__free_pages(page, 0)`` in a loop); returns how many were
    freed (a page that is not an allocated order-0 block stops the loop)."""
    for i in range(pfns.shape[0]):
        if not free_pages(st, pfns[i], 0):
            return i
    return pfns.shape[0]


@njit
def split_block(st, pfn, order):
    """``split_page()``: an allocated order-``order`` block becomes ``1 << order`` allocated
    order-0 pages that can be freed one by one."""
    mt = st.alloc_mt[pfn]
    for p in range(pfn, pfn + (1 << order)):
        st.alloc_order[p] = 0
        st.alloc_mt[p] = mt
