"""Plain-Python twins of the kernels of :mod:`kmm.mech.permvmalloc`.

Each twin drives the same buddy pool through :class:`kmm.buddy.Buddy`'s validated Python
methods, one call per page or operation, and keeps its live set in Python lists.
"""
from __future__ import annotations

from kmm.buddy import Buddy


def bg_churn(buddy: Buddy, live: list[tuple[int, int]], capacity: int, kind, order, mt,
             pick) -> None:
    """Twin of ``bg_churn``: ``live`` is a list of (pfn, order), updated in place."""
    for k, o, m, p in zip(kind, order, mt, pick):
        if k == 0:
            if len(live) >= capacity:
                continue
            pfn = buddy.alloc(int(o), int(m))
            if pfn >= 0:
                live.append((pfn, int(o)))
        elif live:
            j = int(p) % len(live)
            pfn, o2 = live[j]
            buddy.free(pfn, o2)
            live[j] = live[-1]
            live.pop()


def alloc_order0(buddy: Buddy, n: int, mt: int) -> list[int]:
    """Twin of ``alloc_order0``: the pfns obtained before the pool ran dry."""
    out = []
    for _ in range(n):
        pfn = buddy.alloc(0, mt)
        if pfn < 0:
            break
        out.append(pfn)
    return out


def free_order0(buddy: Buddy, pfns) -> int:
    """Twin of ``free_order0``."""
    for i, p in enumerate(pfns):
        st = buddy.state
        if st.alloc_order[int(p)] != 0:
            return i
        buddy.free(int(p), 0)
    return len(pfns)


def split_block(buddy: Buddy, pfn: int, order: int) -> None:
    """Twin of ``split_block``."""
    st = buddy.state
    mt = int(st.alloc_mt[pfn])
    for p in range(pfn, pfn + (1 << order)):
        st.alloc_order[p] = 0
        st.alloc_mt[p] = mt
