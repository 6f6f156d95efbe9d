"""asi: the Numba kernels (they call and read the engine API only).

Part of :mod:`kmm.mech.asi`."""
from __future__ import annotations

import numpy as np

from ...engine import (alloc_block, alloc_block_min, convert_pageblock, entry_span, FLAG_GLOBAL,
    flush_kernel_range, free_block, HOST_VMID, InvalEvent, KIND_LOAD, MT_MOVABLE, njit,
    pcp_alloc, pcp_alloc_min, pcp_drain, pcp_first, pcp_free, pcp_next, pool_pages,
    split_allocated, structure_entries, tlb_cpus, TLB_L1D, TLB_L1I, TLB_L2, tlb_translate_l2,
    TLBEvent, xorshift64)
from .model import (_C_ALLOC, _C_ENQ, _C_FREE, _C_LOCAL_FLUSH, _C_MAP, _C_MIGRATE, _C_PT,
    _C_RECLAIM, _C_UNMAP, _C_WAKE, _C_ZERO, _K_RECLAIM, _P_MERMAP, _P_MERMAP_BCAST, _P_NPAGES,
    _P_UMOV, _W_LOCAL, _K_SENS, _L_KIND, _L_NSPOS, _L_ORDER, _L_PFN, _NOT_CLEAN, _P_BPL,
    _P_CHECK, _P_CPUS, _P_FREE_MAPPED, _P_INIT, _P_LAZY, _P_LRU, _P_MAX_ORDER, _P_MAXID,
    _P_NBURST, _P_NEXT_WORKER, _P_NOFRAG, _P_NOW, _P_PCP, _P_POSTED,
    _P_NS_N, _P_OP_NS, _P_PAGE_SHIFT, _P_PB_ORDER, _P_PHYSMAP, _P_POLICY, _P_QN, _P_QPAGES,
    _P_RANK, _P_RECLAIM_BATCH, _P_SAMPLE, _P_TARGET, _P_TOUCHES, _P_TRACKED, _P_WORKER_BATCH,
    _P_WORKER_NS, _R_BLOCK, _R_NONE, _R_TABLE, _W_DROPPED, _W_FULL, _W_HANDLER, _W_WORKER,
    AsiEvent, JITTER_WINDOW_NS, BurstSource, F_DIRTY, F_MAPPED, F_QUEUED,
    F_SENS, F_UNMAPPED_NS, F_ZERO_DEFERRED, MAX_RECLAIM_RETRIES, MT_ISOLATE)

_kernel = njit(_nrt=False)
_inner = njit(_nrt=False, python=False)   # called by kernels only

# Flags passed as values, not constants: a constant argument compiles its own copy of the
# helper (and of everything the helper calls) for each constant; a reassigned scalar starts
# as ``np.int64(-1)`` for the same reason (:mod:`kmm._jit`)
_NO, _YES = np.bool_(False), np.bool_(True)
_IPIS, _FULL_FLUSHES, _TARGET_NS, _DROPPED = (
    int(InvalEvent.IPIS), int(InvalEvent.FULL_FLUSHES), int(InvalEvent.TARGET_NS),
    int(InvalEvent.ENTRIES_DROPPED))
_FILLS, _EVICTIONS = int(TLBEvent.FILLS), int(TLBEvent.EVICTIONS)


@_inner
def _get(st, ast, cpu, order, mt):
    """``rmqueue`` with both ``ALLOC_NOFRAGMENT`` passes: through CPU ``cpu``'s per-CPU
    lists (``rmqueue_pcplist``, refilled by ``rmqueue_bulk``) when they are on and the
    order is one they take, else off the free lists."""
    if ast.params[_P_PCP] != 0:
        return pcp_alloc(st, ast.pcp, cpu, order, mt)
    return alloc_block(st, order, mt)


@_inner
def _get_min(st, ast, cpu, order, mt, floor):
    """:func:`_get` in one pass that steals only free blocks of at least ``floor``
    (``rmqueue_bulk`` passes the caller's ``alloc_flags`` to each ``__rmqueue``)."""
    if ast.params[_P_PCP] != 0:
        return pcp_alloc_min(st, ast.pcp, cpu, order, mt, floor)
    return alloc_block_min(st, order, mt, floor)


@_inner
def _put(bst, ast, cpu, pfn, order):
    """Free a block: onto CPU ``cpu``'s per-CPU list of its pageblock's type
    (``free_unref_page_commit``, draining a batch at ``high``) when the lists are on and
    take the order, else to the free lists (``__free_one_page``, merging)."""
    if ast.params[_P_PCP] != 0:
        pcp_free(bst, ast.pcp, cpu, pfn, order)
    else:
        free_block(bst, pfn, order)


@_inner
def _pcp_empty(ast, cpu, order, mt):
    """Whether the per-CPU list an allocation of ``order`` and ``mt`` on ``cpu`` would use
    is empty (the allocation then refills it); False when the lists are off."""
    return ast.params[_P_PCP] != 0 and pcp_first(ast.pcp, cpu, order, mt) < 0


@_inner
def _drain_all(bst, ast):
    """``drain_all_pages``: every CPU's per-CPU lists back to the free lists."""
    for c in range(ast.params[_P_CPUS]):
        pcp_drain(bst, ast.pcp, c)


@_inner
def _unmap_refill(bst, ast, cpu, order, mt):
    """Unmap every mapped page of the blocks a sensitive allocation's refill just put on
    CPU ``cpu``'s list for ``order`` and ``mt`` (the list held nothing before): a list of a
    sensitive type holds only unmapped pages, as the free lists of that type do, so the
    refill's pages join the allocation's own shootdown. Returns (ns, pages unmapped, lo,
    hi) with [lo, hi) the pfn range of the unmapped pages (empty if none)."""
    ns = 0
    k = 0
    lo = pool_pages(bst)
    hi = np.int64(-1)
    n = np.int64(1) << order
    p = pcp_first(ast.pcp, cpu, order, mt)
    while p >= 0:
        u, kk = _unmap_range(bst, ast, p, n, _YES)
        if kk > 0:
            ns += u
            k += kk
            ast.params[_P_FREE_MAPPED] -= kk
            lo = min(lo, p)
            hi = max(hi, p + n)
        p = pcp_next(ast.pcp, p)
    return ns, k, lo, hi


@_inner
def _window(ast):
    """The ``cpu_win`` row of the current operation's time."""
    return min(ast.params[_P_NOW] // JITTER_WINDOW_NS, ast.cpu_win.shape[0] - 1)


@_inner
def _burst(ast, t, ns, source, pages):
    n = ast.params[_P_NBURST]
    if n < ast.bursts.shape[0]:
        ast.bursts[n, 0] = t
        ast.bursts[n, 1] = ns
        ast.bursts[n, 2] = source
        ast.bursts[n, 3] = pages
        ast.params[_P_NBURST] = n + 1


@_inner
def _worker_run(ast, t, ns, source, pages):
    """Count one run of a background worker and log it as a burst."""
    ast.counts[AsiEvent.WORKER_RUNS] += 1
    ast.counts[AsiEvent.WORKER_NS] += ns
    ast.counts[AsiEvent.WORKER_PAGES] += pages
    ast.cpu_win[_window(ast), 0, _W_WORKER] += ns  # the workers run on CPU 0
    _burst(ast, t, ns, source, pages)


@_inner
def _pt_alloc(ast):
    ast.counts[AsiEvent.PT_ALLOCS] += 1
    ast.counts[AsiEvent.PT_ALLOC_NS] += ast.cost[_C_PT]
    return ast.cost[_C_PT]


@_inner
def _region_update(ast, r):
    """The restricted physmap's leaf for region ``r`` after its mapped count changed;
    returns the ns of any page-table allocation it needed."""
    design = ast.params[_P_PHYSMAP]
    m = ast.region_mapped[r]
    if design == 0:  # ON_DEMAND: a PTE table on first mapping, and its upper table
        ns = 0
        if m > 0 and ast.region[r] == _R_NONE:
            ast.region[r] = _R_TABLE
            ns += _pt_alloc(ast)
            u = r >> ast.params[_P_BPL]
            if ast.upper[u] == 0:
                ast.upper[u] = 1
                ns += _pt_alloc(ast)
        return ns
    if design == 1:
        return 0
    full = np.int64(1) << ast.params[_P_PB_ORDER]
    st = ast.region[r]
    if st == _R_TABLE:
        return 0
    if m == full:
        ast.region[r] = _R_BLOCK
        return 0
    if m == 0:
        ast.region[r] = _R_NONE
        return 0
    ast.region[r] = _R_TABLE  # mixed: split the block (or an empty block) into a PTE table
    ast.counts[AsiEvent.BLOCK_SPLITS] += 1
    return _pt_alloc(ast)


@_inner
def _regions_update(ast, pfn, n):
    pb = ast.params[_P_PB_ORDER]
    ns = 0
    for r in range(pfn >> pb, ((pfn + n - 1) >> pb) + 1):
        ns += _region_update(ast, r)
    return ns


@_inner
def _map_range(bst, ast, pfn, n, upd, at_alloc):
    """Map every unmapped page of [pfn, pfn+n), zeroing those holding sensitive data; with
    ``upd`` bring the physmap leaves of its regions up to date (else the caller does, once
    every change of the operation is made). ``at_alloc``: the pages are being allocated, so
    with init_on_alloc their zeroing is already done (``post_alloc_hook``) and costs ASI
    nothing. Returns (ns, pages that were already mapped)."""
    ns = 0
    was = 0
    pb = ast.params[_P_PB_ORDER]
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if f & F_MAPPED:
            was += 1
            continue
        if f & F_DIRTY:
            if at_alloc and ast.params[_P_INIT] != 0:
                ast.counts[AsiEvent.ZERO_BY_INIT] += 1
            else:
                ns += ast.cost[_C_ZERO]
                ast.counts[AsiEvent.PAGES_ZEROED] += 1
                ast.counts[AsiEvent.ZERO_NS] += ast.cost[_C_ZERO]
            if f & F_ZERO_DEFERRED:
                ast.counts[AsiEvent.ZEROED_DEFERRED] += 1
            f &= ~(F_DIRTY | F_ZERO_DEFERRED)
        if f & F_UNMAPPED_NS:
            ast.counts[AsiEvent.POINTLESS_REMAPS] += 1
            f &= ~F_UNMAPPED_NS
        bst.flags[p] = f | F_MAPPED
        ns += ast.cost[_C_MAP]
        ast.counts[AsiEvent.MAP_NS] += ast.cost[_C_MAP]
        ast.counts[AsiEvent.PAGES_MAPPED] += 1
        ast.region_mapped[p >> pb] += 1
    if upd:
        ns += _regions_update(ast, pfn, n)
    return ns, was


@_inner
def _map_clean_range(bst, ast, pfn, n):
    """Lazy conversion to nonsensitive: map the clean unmapped pages of [pfn, pfn+n); leave
    those holding sensitive data unmapped, marked ``F_ZERO_DEFERRED``. Physmap leaves are
    the caller's. Returns (ns, pages that were already mapped, pages deferred)."""
    ns = 0
    was = 0
    deferred = 0
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if f & F_MAPPED:
            was += 1
        elif f & F_DIRTY:
            if not f & F_ZERO_DEFERRED:
                bst.flags[p] = f | F_ZERO_DEFERRED
                ast.counts[AsiEvent.ZERO_DEFERRED] += 1
            deferred += 1
        else:
            ns += _map_range(bst, ast, p, np.int64(1), _NO, _NO)[0]
    return ns, was, deferred


@_inner
def _mark_sensitive(bst, ast, pfn, n):
    """Pages [pfn, pfn+n) now belong to a sensitive allocation: whatever they held is
    overwritten by their owner, so no zeroing is due."""
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if f & F_ZERO_DEFERRED:
            ast.counts[AsiEvent.DEFERRED_TO_SENSITIVE] += 1
        bst.flags[p] = (f & ~(F_DIRTY | F_UNMAPPED_NS | F_ZERO_DEFERRED)) | F_SENS


@_inner
def _unmap_range(bst, ast, pfn, n, upd):
    """Unmap every mapped page of [pfn, pfn+n) (the caller shoots down); ``upd`` as for
    :func:`_map_range`. Returns (ns, pages unmapped)."""
    ns = 0
    k = 0
    pb = ast.params[_P_PB_ORDER]
    for p in range(pfn, pfn + n):
        f = bst.flags[p]
        if not f & F_MAPPED:
            continue
        f &= ~F_MAPPED
        if not f & _NOT_CLEAN:
            f |= F_UNMAPPED_NS
        bst.flags[p] = f
        k += 1
        ast.region_mapped[p >> pb] -= 1
    if k:
        ns = k * ast.cost[_C_UNMAP]
        ast.counts[AsiEvent.PAGES_UNMAPPED] += k
        ast.counts[AsiEvent.UNMAP_NS] += ns
        if upd:
            ns += _regions_update(ast, pfn, n)
    return ns, k


@_kernel
def _held(tst, c):
    """Valid entries of CPU ``c``'s TLB (the model's restricted-space translations)."""
    first, end = structure_entries(tst, TLB_L2)
    n = 0
    for e in range(first, end):
        if entry_span(tst, c, e)[1] >= 0:
            n += 1
    return n


@_inner
def _shootdown(tst, ist, ast, cpu, lo, hi):
    """One kernel-range shootdown of pfns [lo, hi) of the restricted physmap, from CPU
    ``cpu``. Logs, per CPU in the current window, the entries it removed (each walked
    again on its next use), the time each interrupted CPU spent in the flush IPI handler
    (the handler time :mod:`kmm.invalidate` charged, an equal share per IPI; none with
    INVLPGB or TLBI broadcast) and whether it flushed everything. A CPU's entries before
    the flush are ``ast.held`` (:func:`_touch` keeps it); they are counted again after it
    only when the flush removed any (its ``ENTRIES_DROPPED``)."""
    sh = ast.params[_P_PAGE_SHIFT]
    w = _window(ast)
    ncpu = tlb_cpus(tst)
    t0 = ist.counts[_TARGET_NS]
    i0 = ist.counts[_IPIS]
    f0 = ist.counts[_FULL_FLUSHES]
    d0 = ist.counts[_DROPPED]
    ns = flush_kernel_range(tst, ist, cpu, lo << sh, hi << sh, sh)
    full = ist.counts[_FULL_FLUSHES] > f0
    ipis = ist.counts[_IPIS] - i0
    per = (ist.counts[_TARGET_NS] - t0) // ipis if ipis > 0 else 0
    dropped = ist.counts[_DROPPED] > d0
    for c in range(ncpu):
        if dropped:
            h = _held(tst, c)
            ast.cpu_win[w, c, _W_DROPPED] += ast.held[c] - h
            ast.held[c] = h
        if full:
            ast.cpu_win[w, c, _W_FULL] += 1
        if c != cpu:
            ast.cpu_win[w, c, _W_HANDLER] += per
    ast.counts[AsiEvent.FLUSHES] += 1
    ast.counts[AsiEvent.FLUSH_NS] += ns
    return ns


@_inner
def _touch(tst, ast, cpu, pfn):
    """A restricted-space access by ``cpu`` to page ``pfn`` (fills its TLB). Keeps
    ``ast.held[cpu]``, the CPU's valid entries (:func:`_held`): a fill that evicted no
    valid entry adds one (the model's TLBs have no L1 structure: every fill is the L2's)."""
    sh = ast.params[_P_PAGE_SHIFT]
    r = pfn >> ast.params[_P_PB_ORDER]
    shift = sh + ast.params[_P_PB_ORDER] if ast.region[r] == _R_BLOCK else sh
    f0 = ast.tcounts[_FILLS] - ast.tcounts[_EVICTIONS]
    tlb_translate_l2(tst, cpu, pfn << sh, KIND_LOAD | FLAG_GLOBAL, shift, 0, HOST_VMID,
                     ast.tcounts)
    ast.held[cpu] += ast.tcounts[_FILLS] - ast.tcounts[_EVICTIONS] - f0
    ast.counts[AsiEvent.TOUCHES] += 1


@_inner
def _ns_add(ast, ident):
    n = ast.params[_P_NS_N]
    ast.ns_list[n] = ident
    ast.live[ident, 2] = n
    ast.params[_P_NS_N] = n + 1


@_inner
def _ns_remove(ast, ident):
    pos = ast.live[ident, 2]
    if pos < 0:
        return
    n = ast.params[_P_NS_N] - 1
    last = ast.ns_list[n]
    ast.ns_list[pos] = last
    ast.live[last, 2] = pos
    ast.live[ident, 2] = -1
    ast.params[_P_NS_N] = n


@_inner
def _free_mapped_pages_in(bst, base, end):
    """Mapped pages of the free blocks headed in [base, end) (clipped to it); allocated
    blocks are stepped over whole."""
    k = 0
    p = base
    while p < end:
        o = bst.free_order[p]
        if o >= 0:
            for q in range(p, min(p + (np.int64(1) << o), end)):
                if bst.flags[q] & F_MAPPED:
                    k += 1
            p += np.int64(1) << o
        else:
            a = bst.alloc_order[p]
            p += np.int64(1) << a if a >= 0 else 1
    return k


@_inner
def _count_free_mapped(bst, ast, b0, b1):
    """``ast.pb_free_mapped`` of pageblocks [b0, b1): the free mapped pages of each
    nonsensitive one (:func:`_free_mapped_pages_in`), 0 for the others."""
    pb = ast.params[_P_PB_ORDER]
    for b in range(b0, b1):
        ast.pb_free_mapped[b] = (_free_mapped_pages_in(bst, b << pb, (b + 1) << pb)
                                 if bst.pb_mt[b] >= 3 else 0)


@_inner
def _drain_queue(bst, tst, ist, ast, cpu):
    """Unmap every queued block, one shootdown, then free them; returns (ns, pages)."""
    qn = ast.params[_P_QN]
    if qn == 0:
        return 0, 0
    ns = ast.cost[_C_WAKE]
    lo = pool_pages(bst)
    hi = np.int64(-1)
    pages = 0
    for i in range(qn):
        pfn = ast.queue[i, 0]
        n = np.int64(1) << ast.queue[i, 1]
        u, k = _unmap_range(bst, ast, pfn, n, _YES)
        ns += u
        pages += n
        lo = min(lo, pfn)
        hi = max(hi, pfn + n)
    ns += _shootdown(tst, ist, ast, cpu, lo, hi)
    for i in range(qn):
        pfn = ast.queue[i, 0]
        o = ast.queue[i, 1]
        for p in range(pfn, pfn + (np.int64(1) << o)):
            bst.flags[p] &= ~F_QUEUED
        _put(bst, ast, cpu, pfn, o)
        ns += ast.cost[_C_FREE]
    ast.params[_P_QN] = 0
    ast.params[_P_QPAGES] = 0
    return ns, pages


@_inner
def _update_free_blocks(bst, ast, base, end, unmap):
    """Unmap every free buddy block in pfns ``[base, end)`` from the restricted space, or
    (``unmap`` false) zero and map them (lazy zeroing: map the clean ones, defer the rest),
    keeping the free-mapped count; returns (ns, pages unmapped)."""
    ns = 0
    pages = 0
    p = base
    while p < end:
        o = bst.free_order[p]
        if o < 0:
            p += 1
            continue
        n = min(np.int64(1) << o, end - p)
        if unmap:
            u, k = _unmap_range(bst, ast, p, n, _NO)
            ast.params[_P_FREE_MAPPED] -= k
            ns += u
            pages += k
            for q in range(p, p + n):
                if bst.flags[q] & F_ZERO_DEFERRED:
                    ast.counts[AsiEvent.DEFERRED_DROPPED] += 1
                    bst.flags[q] &= ~F_ZERO_DEFERRED
        elif ast.params[_P_LAZY] != 0:
            m, was, deferred = _map_clean_range(bst, ast, p, n)
            ast.params[_P_FREE_MAPPED] += n - was - deferred
            ns += m
        else:
            z0 = ast.counts[AsiEvent.PAGES_ZEROED]
            m, was = _map_range(bst, ast, p, n, _NO, _NO)
            ast.counts[AsiEvent.ZEROED_ON_CONVERSION] += ast.counts[AsiEvent.PAGES_ZEROED] - z0
            ast.params[_P_FREE_MAPPED] += n - was
            ns += m
        p += np.int64(1) << o
    return ns, pages


@_inner
def _target_worker(bst, tst, ist, ast, cpu):
    """Convert nonsensitive pageblocks with the most free mapped pages (the lowest pfn among
    equals) to sensitive until at most the target stays mapped; one shootdown. Returns (ns,
    pages unmapped).

    The free mapped pages of every pageblock are counted once per run
    (:func:`_count_free_mapped`). A conversion changes the count of no other pageblock
    than those of the ``MAX_PAGE_ORDER`` block it lies in: its unmapping stays inside the
    pageblock, and the merge :func:`kmm.buddy.convert_pageblock` may do moves free block
    heads inside that block only; those pageblocks are counted again."""
    pb = ast.params[_P_PB_ORDER]
    npb = bst.pb_mt.shape[0]
    group = np.int64(1) << max(0, ast.params[_P_MAX_ORDER] - pb)
    ns = ast.cost[_C_WAKE]
    lo = pool_pages(bst)
    hi = np.int64(-1)
    pages = 0
    counted = False
    if ast.params[_P_PCP] != 0:
        # drain_all_pages: the free mapped pages parked on per-CPU lists reach the free
        # lists, where a conversion finds them (remote draining since v5.19: no IPI; the
        # pages would reach the free lists at a later drain anyway, so no cost is added)
        _drain_all(bst, ast)
    while ast.params[_P_FREE_MAPPED] > ast.params[_P_TARGET]:
        if not counted:
            _count_free_mapped(bst, ast, np.int64(0), npb)
            counted = True
        best = np.int64(-1)
        best_k = 0
        for b in range(npb):
            if ast.pb_free_mapped[b] > best_k:
                best_k = ast.pb_free_mapped[b]
                best = b
        if best < 0:
            break
        convert_pageblock(bst, best, bst.pb_mt[best] - 3)
        ast.counts[AsiEvent.TARGET_CONVERSIONS] += 1
        base = best << pb
        end = base + (np.int64(1) << pb)
        u, k = _update_free_blocks(bst, ast, base, end, _YES)
        ns += u
        pages += k
        ns += _region_update(ast, best)
        lo = min(lo, base)
        hi = max(hi, end)
        g0 = best // group * group
        _count_free_mapped(bst, ast, g0, min(g0 + group, npb))
    if hi > lo:
        ns += _shootdown(tst, ist, ast, cpu, lo, hi)
    return ns, pages


@_inner
def _convert_after_alloc(bst, ast):
    """Act on the pageblocks the last allocation converted (policy 2/3): to sensitive,
    unmap their free pages; to nonsensitive, zero and map them. The conversion log is kept
    in ``ast.scratch``; physmap leaves and the shootdown are the caller's. Returns (ns, the
    pfn range [lo, hi) of pageblocks whose free pages were unmapped; empty if none)."""
    nconv = bst.ev[0]
    for i in range(1 + 2 * nconv):
        ast.scratch[i] = bst.ev[i]
    pb = ast.params[_P_PB_ORDER]
    ns = 0
    lo = pool_pages(bst)
    hi = np.int64(-1)
    for j in range(nconv):
        b = ast.scratch[1 + 2 * j]
        old = ast.scratch[2 + 2 * j]
        new = bst.pb_mt[b]
        if (old >= 3) == (new >= 3):
            continue
        base = b << pb
        end = base + (np.int64(1) << pb)
        u, k = _update_free_blocks(bst, ast, base, end, new < 3)
        ns += u
        if new < 3:
            ast.counts[AsiEvent.TO_SENSITIVE] += 1
            if k > 0:
                lo = min(lo, base)
                hi = max(hi, end)
        else:
            ast.counts[AsiEvent.TO_NONSENSITIVE] += 1
    return ns, lo, hi


@_inner
def _claim_sensitive(bst, tst, ist, ast, cpu, pfn, n):
    """Hand free pages [pfn, pfn+n) to a sensitive owner outside an allocation's own path
    (a compaction target): unmap any that are mapped, then shoot them down. Returns ns."""
    u, k = _unmap_range(bst, ast, pfn, n, _YES)
    ast.params[_P_FREE_MAPPED] -= k
    _mark_sensitive(bst, ast, pfn, n)
    if k > 0:
        u += _shootdown(tst, ist, ast, cpu, pfn, pfn + n)
    return u


@_inner
def _compactable(bst, ast, s, size):
    """Pages to migrate to empty pfns [s, s+size), or -1 if the range holds anything but
    free blocks and movable sensitive blocks that begin inside it."""
    m = 0
    p = s
    end = s + size
    while p < end:
        fo = bst.free_order[p]
        if fo >= 0:
            p += np.int64(1) << fo
            continue
        a = bst.alloc_order[p]
        if a < 0:
            return -1  # inside a block that begins before the range
        n = np.int64(1) << a
        mt = bst.alloc_mt[p]
        if (p + n > end or not bst.flags[p] & F_SENS or mt < 0
                or bst.mobility[mt] != MT_MOVABLE or ast.owner[p] < 0):
            return -1
        m += n
        p += n
    return m


@_inner
def _compact(bst, tst, ist, ast, order, cpu):
    """Direct compaction for a sensitive allocation of ``order`` (mm/compaction.c, reduced):
    the aligned range of a sensitive pageblock needing the fewest migrations (the lowest pfn
    among equals) is emptied by moving each of its blocks to a free block of the same
    sensitivity outside its pageblock, which is isolated meanwhile. Returns (ns, whether the
    range was emptied)."""
    ast.counts[AsiEvent.COMPACTIONS] += 1
    pb = ast.params[_P_PB_ORDER]
    size = np.int64(1) << order
    best = np.int64(-1)
    best_m = size + 1
    for b in range(bst.pb_mt.shape[0]):
        if bst.pb_mt[b] >= 3:
            continue
        base = np.int64(b) << pb
        for s in range(base, base + (np.int64(1) << pb), size):
            m = _compactable(bst, ast, s, size)
            if m >= 0 and m < best_m:
                best_m = m
                best = s
        if best_m == 0:
            break
    if best < 0:
        return 0, False
    b = best >> pb
    old = bst.pb_mt[b]
    convert_pageblock(bst, b, np.int64(MT_ISOLATE))
    ns = 0
    moved = 0
    ok = True
    p = best
    while p < best + size:
        a = bst.alloc_order[p]
        if a < 0:
            p += 1
            continue
        n = np.int64(1) << a
        dst = alloc_block(ast.own, np.int64(a), np.int64(bst.alloc_mt[p]))
        if dst < 0:
            ok = False
            break
        ident = ast.owner[p]
        ns += _claim_sensitive(bst, tst, ist, ast, cpu, dst, n)
        for q in range(p, p + n):  # the old copy still holds the data
            bst.flags[q] = (bst.flags[q] & ~F_SENS) | F_DIRTY
        ast.owner[dst] = ident
        ast.owner[p] = -1
        ast.live[ident, _L_PFN] = dst
        free_block(bst, p, np.int64(a))
        moved += n
        p += n
    convert_pageblock(bst, b, np.int64(old))
    mns = moved * ast.cost[_C_MIGRATE]
    ast.counts[AsiEvent.PAGES_MIGRATED] += moved
    ast.counts[AsiEvent.MIGRATE_NS] += mns
    return ns + mns, ok


@_inner
def _release(bst, tst, ist, ast, ident, sens, cpu, t):
    """Free allocation ``ident`` by the policy's free path; returns the free's latency."""
    policy = ast.params[_P_POLICY]
    pfn = ast.live[ident, _L_PFN]
    order = ast.live[ident, _L_ORDER]
    n = np.int64(1) << order
    lat = ast.cost[_C_FREE]
    ast.owner[pfn] = -1
    ast.live[ident, _L_PFN] = -1
    if policy == 0:
        _put(bst, ast, cpu, pfn, order)
    elif sens:
        for p in range(pfn, pfn + n):
            bst.flags[p] = (bst.flags[p] & ~F_SENS) | F_DIRTY
        _put(bst, ast, cpu, pfn, order)
    else:
        _ns_remove(ast, ident)
        if policy == 1:
            qn = ast.params[_P_QN]
            ast.queue[qn, 0] = pfn
            ast.queue[qn, 1] = order
            ast.params[_P_QN] = qn + 1
            ast.params[_P_QPAGES] += n
            for p in range(pfn, pfn + n):
                bst.flags[p] |= F_QUEUED
            lat = ast.cost[_C_ENQ]
        elif policy == 4:
            u, k = _unmap_range(bst, ast, pfn, n, _YES)
            s = _shootdown(tst, ist, ast, cpu, pfn, pfn + n)
            _burst(ast, t, u + s, BurstSource.FREE_FLUSH, k)
            lat += u + s
            _put(bst, ast, cpu, pfn, order)
        else:
            _put(bst, ast, cpu, pfn, order)
            ast.params[_P_FREE_MAPPED] += n
    return lat


@_inner
def _reclaim(bst, tst, ist, ast, cpu, t):
    """One direct reclaim round (mm/vmscan.c ``try_to_free_pages``, reduced): free live
    reclaimable allocations, oldest first, until ``reclaim_batch_pages`` pages are freed.
    Returns (ns, pages freed)."""
    ast.counts[AsiEvent.DIRECT_RECLAIMS] += 1
    target = ast.params[_P_RECLAIM_BATCH]
    hi = ast.params[_P_MAXID]
    c = ast.params[_P_LRU]
    pages = 0
    while pages < target and c < hi:
        kind = ast.live[c, _L_KIND]
        if ast.live[c, _L_PFN] >= 0 and kind & _K_RECLAIM:
            pages += np.int64(1) << ast.live[c, _L_ORDER]
            _release(bst, tst, ist, ast, c, (kind & _K_SENS) != 0, cpu, t)
        c += 1
    ast.params[_P_LRU] = c
    ns = pages * ast.cost[_C_RECLAIM]
    ast.counts[AsiEvent.PAGES_RECLAIMED] += pages
    ast.counts[AsiEvent.DIRECT_RECLAIM_NS] += ns
    return ns, pages


@_inner
def _rmqueue_asi_unmap(bst, tst, ist, ast, order, mt, cpu):
    """``__rmqueue_asi_unmap`` of the posted design: take the smallest free nonsensitive
    block of at least a pageblock (``__rmqueue_smallest``), unmap its pages and shoot them
    down (IRQs on, zone lock dropped), give its pageblocks type ``mt``
    (``change_pageblock_range``) and free all but the first ``1 << order`` pages. Returns
    (pfn or -1, ns); the block's pages stay unmapped, so the allocation has nothing left
    to unmap."""
    pb = ast.params[_P_PB_ORDER]
    big = max(order, pb)
    pfn = alloc_block(ast.nofb, big, np.int64(3))
    if pfn < 0:
        return -1, 0
    n = np.int64(1) << big
    ns, k = _unmap_range(bst, ast, pfn, n, _NO)
    ast.params[_P_FREE_MAPPED] -= k
    for q in range(pfn, pfn + n):
        if bst.flags[q] & F_ZERO_DEFERRED:
            ast.counts[AsiEvent.DEFERRED_DROPPED] += 1
            bst.flags[q] &= ~F_ZERO_DEFERRED
    if k > 0:
        ns += _shootdown(tst, ist, ast, cpu, pfn, pfn + n)
    for b in range(pfn >> pb, (pfn + n) >> pb):
        convert_pageblock(bst, b, mt)
        ast.counts[AsiEvent.TO_SENSITIVE] += 1
        ns += _region_update(ast, b)
    split_allocated(bst, pfn, big, order)
    ast.counts[AsiEvent.ASI_UNMAP_ALLOCS] += 1
    return pfn, ns


@_inner
def _mermap_flush(tst, ist, ast, cpu):
    """``arch_mermap_flush_tlb`` before CPU ``cpu`` starts again at the base of its mermap
    region (mm/mermap.c ``mermap_alloc``: "Once an allocation has been freed, the space it
    occupied must be flushed from the TLB before it can be reused"). x86: a local flush of
    everything (``flush_tlb_local``; "No shootdown allowed, IRQs may be off"), priced as
    the CR3 write (``full_flush_ns``) plus, in Python, the re-walk of the CPU's own work
    (:meth:`~kmm.mech.asi.model.AsiRun.local_rewalks`). arm64: include/linux/mermap.h
    says it "will need to be a broadcast TLB flush" (the series implements x86 only):
    one kernel-range shootdown of the CPU's region, which lies outside the simulated pool
    (:func:`_shootdown`: ``TLBI`` broadcast, above ``MAX_DVM_OPS`` a flush of everything
    on every CPU). Returns ns."""
    ast.counts[AsiEvent.MERMAP_FLUSHES] += 1
    if ast.params[_P_MERMAP_BCAST] != 0:
        r = ast.params[_P_MERMAP] + 1
        lo = ast.params[_P_NPAGES] + cpu * r
        ns = _shootdown(tst, ist, ast, cpu, lo, lo + r)
    else:
        ns = ast.cost[_C_LOCAL_FLUSH]
        ast.cpu_win[_window(ast), cpu, _W_LOCAL] += 1
    ast.counts[AsiEvent.MERMAP_NS] += ns
    return ns


@_inner
def _mermap_pages(tst, ist, ast, cpu, n):
    """Map ``n`` pages one after another into CPU ``cpu``'s mermap region and unmap each
    (``mermap_get`` / ``mermap_put``: a PTE store and a PTE clear each, no flush on put),
    as zeroing unmapped pages does ("[PATCH v2 20/22] mm/page_alloc: implement
    __GFP_UNMAPPED|__GFP_ZERO allocations", 2026-03-20: "The pages being zeroed here are
    unmapped, so they can't be zeroed via the direct map ... use the new mermap mechanism
    to zero these pages"). The region is handed out in order and flushed once, when a
    page no longer fits before its end (mm/mermap.c ``mermap_alloc``; the series' test
    ``test_tlb_flushed`` expects exactly one flush per reuse of the region). The zeroing
    itself is the caller's. Returns ns."""
    usable = ast.params[_P_MERMAP]
    pte = ast.cost[_C_MAP] + ast.cost[_C_UNMAP]
    ns = 0
    for _ in range(n):
        if ast.mermap[cpu] + 1 > usable:
            ns += _mermap_flush(tst, ist, ast, cpu)
            ast.mermap[cpu] = 0
        ast.mermap[cpu] += 1
        ns += pte
        ast.counts[AsiEvent.MERMAP_NS] += pte
    ast.counts[AsiEvent.MERMAP_PAGES] += n
    return ns


@_inner
def _rmqueue_direct_map(bst, tst, ist, ast, order, mt, cpu):
    """``__rmqueue_direct_map`` of the 2026 design ("[PATCH RFC 17/19] mm/page_alloc:
    implement __GFP_UNMAPPED allocations", 2026-02-25; v2 of 2026-03-20): when the
    freelists of the allocation's freetype (and its fallbacks of the same flags) are
    empty, take a free block of at least a pageblock ("Need to [un]map a whole pageblock
    (otherwise it might require allocating pagetables)") from the freetype of the other
    flags (its own ``__rmqueue``, whole free blocks only: ``__rmqueue_smallest`` on it and
    its fallbacks), change its mapping with IRQs on and the zone lock dropped, give its
    pageblocks type ``mt`` and free all but the first ``1 << order`` pages. Either way:
    to unmapped (a sensitive allocation), unmap every page and shoot the block down once
    (``flush_tlb_kernel_range``); to mapped, map every page (no flush: a present PTE
    replaces a non-present one), after zeroing those that held sensitive data through the
    mermap (:func:`_mermap_pages`; they are still unmapped, and mapping them unzeroed
    would expose them). Returns (pfn or -1, ns)."""
    pb = ast.params[_P_PB_ORDER]
    big = max(order, pb)
    want_mapped = mt >= 3
    other = mt - 3 if want_mapped else mt + 3
    pfn = alloc_block(ast.nofb, big, other)
    i = 0
    while pfn < 0 and i < bst.fallbacks.shape[1]:
        f = bst.fallbacks[other, i]
        if f < 0:
            break
        pfn = alloc_block(ast.nofb, big, np.int64(f))
        i += 1
    if pfn < 0:
        return -1, 0
    n = np.int64(1) << big
    ns = 0
    if want_mapped:
        dirty = np.int64(0)
        for q in range(pfn, pfn + n):
            f = bst.flags[q]
            if f & F_DIRTY:
                dirty += 1
                if f & F_ZERO_DEFERRED:
                    ast.counts[AsiEvent.ZEROED_DEFERRED] += 1
                bst.flags[q] = f & ~(F_DIRTY | F_ZERO_DEFERRED)
        if dirty > 0:
            z = dirty * ast.cost[_C_ZERO]
            ns += z + _mermap_pages(tst, ist, ast, cpu, dirty)
            ast.counts[AsiEvent.PAGES_ZEROED] += dirty
            ast.counts[AsiEvent.ZERO_NS] += z
            ast.counts[AsiEvent.ZEROED_ON_CONVERSION] += dirty
        m, was = _map_range(bst, ast, pfn, n, _NO, _NO)
        ns += m
        ast.params[_P_FREE_MAPPED] += n - was
        ast.counts[AsiEvent.DIRECT_MAP_MAPS] += 1
    else:
        u, k = _unmap_range(bst, ast, pfn, n, _NO)
        ns += u
        ast.params[_P_FREE_MAPPED] -= k
        if k > 0:
            ns += _shootdown(tst, ist, ast, cpu, pfn, pfn + n)
        ast.counts[AsiEvent.ASI_UNMAP_ALLOCS] += 1
    for b in range(pfn >> pb, (pfn + n) >> pb):
        convert_pageblock(bst, b, mt)
        if want_mapped:
            ast.counts[AsiEvent.TO_NONSENSITIVE] += 1
        else:
            ast.counts[AsiEvent.TO_SENSITIVE] += 1
        ns += _region_update(ast, b)
    split_allocated(bst, pfn, big, order)
    return pfn, ns


@_inner
def _slowpath(bst, tst, ist, ast, order, mt, cpu, t):
    """The slow path of a sensitive allocation whose own-sensitivity fast path failed:
    compaction, reclaim and the cross-sensitivity fallback in the order of the flush rank
    (position of the fallback among the three: rank - 1). The slow path's allocations have
    no ``ALLOC_NOFRAGMENT`` (``gfp_to_alloc_flags`` does not set it). Returns (pfn or -1,
    ns)."""
    ast.counts[AsiEvent.SLOWPATH_ENTRIES] += 1
    flush_at = ast.params[_P_RANK] - 1
    ns = 0
    for step in range(3):
        if step == flush_at:
            if ast.params[_P_POSTED] != 0:
                pfn, c = _rmqueue_asi_unmap(bst, tst, ist, ast, order, mt, cpu)
                ns += c
            else:
                pfn = alloc_block_min(bst, order, mt, order)  # the full fallbacks: convert, unmap
            if pfn >= 0:
                ast.counts[AsiEvent.SLOW_FLUSH_ALLOCS] += 1
                return pfn, ns
        elif (step if step < flush_at else step - 1) == 0:
            if order < 1 or order > ast.params[_P_PB_ORDER]:
                continue
            c, ok = _compact(bst, tst, ist, ast, order, cpu)
            ns += c
            if c > 0:
                _burst(ast, t, c, BurstSource.COMPACTION, np.int64(0))
            if ok:
                pfn = alloc_block_min(ast.own, order, mt, order)
                if pfn >= 0:
                    ast.counts[AsiEvent.COMPACT_ALLOCS] += 1
                    return pfn, ns
        else:
            rns = 0
            rpages = 0
            pfn = np.int64(-1)
            for _r in range(MAX_RECLAIM_RETRIES):
                c, pages = _reclaim(bst, tst, ist, ast, cpu, t)
                if pages == 0:
                    break
                rns += c
                rpages += pages
                # get_page_from_freelist: reclaimed pages may sit on the per-CPU lists
                pfn = _get_min(ast.own, ast, cpu, order, mt, order)
                if pfn >= 0:
                    break
            if pfn < 0 and rpages > 0 and ast.params[_P_PCP] != 0:
                # __alloc_pages_direct_reclaim: reclaim made progress but the retry failed:
                # pages may be pinned on per-CPU lists: drain_all_pages, retry once
                _drain_all(bst, ast)
                pfn = _get_min(ast.own, ast, cpu, order, mt, order)
            if rpages > 0:
                _burst(ast, t, rns, BurstSource.DIRECT_RECLAIM, rpages)
            ns += rns
            if pfn >= 0:
                return pfn, ns
    return -1, ns


@_inner
def _alloc(bst, tst, ist, ast, wl, i, t):
    """One allocation; returns its latency in ns (-1 if it failed)."""
    policy = ast.params[_P_POLICY]
    ident = wl.ref[i]
    order = np.int64(wl.order[i])
    sens = wl.sens[i] != 0
    cpu = np.int64(wl.cpu[i])
    mt = np.int64(wl.mob[i])
    tracked = ast.params[_P_TRACKED] != 0
    posted = ast.params[_P_POSTED] != 0
    unmapped = policy == 5
    if tracked and not sens:
        mt = np.int64(3) if posted else mt + 3  # posted: only unmovable is nonsensitive
    elif unmapped and not sens:
        # mapped freetypes: every mobility's, or (as posted) only unmovable's
        mt = mt + 3 if ast.params[_P_UMOV] != 0 else np.int64(3)
    lat = ast.cost[_C_ALLOC]
    if ident >= ast.params[_P_MAXID]:
        ast.params[_P_MAXID] = ident + 1
    unmap_ns = 0  # the posted unmap path's own conversion work (unmap, shootdown)
    # the posted unmap path converts its pageblocks itself: the conversion log is not read
    c0 = ast.counts[AsiEvent.ASI_UNMAP_ALLOCS] + ast.counts[AsiEvent.DIRECT_MAP_MAPS]
    refill = sens and _pcp_empty(ast, cpu, order, mt)
    if tracked and sens and ast.params[_P_RANK] != 0:
        pfn = _get(ast.own, ast, cpu, order, mt)
        if pfn < 0:
            pfn, s = _slowpath(bst, tst, ist, ast, order, mt, cpu, t)
            lat += s
    elif unmapped:
        # rmqueue_buddy: __rmqueue within the freetype's flags (with ALLOC_NOFRAGMENT if
        # set), then __rmqueue_direct_map (either direction); get_page_from_freelist
        # retries both without ALLOC_NOFRAGMENT
        nofrag = ast.params[_P_NOFRAG] != 0
        pfn = _get_min(bst, ast, cpu, order, mt, ast.params[_P_PB_ORDER] if nofrag else order)
        if pfn < 0:
            pfn, unmap_ns = _rmqueue_direct_map(bst, tst, ist, ast, order, mt, cpu)
        if pfn < 0 and nofrag:
            pfn = _get_min(bst, ast, cpu, order, mt, order)
    elif posted and sens:
        # rmqueue_buddy: __rmqueue (with ALLOC_NOFRAGMENT if set), then __rmqueue_asi_unmap;
        # get_page_from_freelist retries both without ALLOC_NOFRAGMENT
        nofrag = ast.params[_P_NOFRAG] != 0
        pfn = _get_min(ast.own, ast, cpu, order, mt, ast.params[_P_PB_ORDER] if nofrag else order)
        if pfn < 0:
            pfn, unmap_ns = _rmqueue_asi_unmap(bst, tst, ist, ast, order, mt, cpu)
        if pfn < 0 and nofrag:
            pfn = _get_min(ast.own, ast, cpu, order, mt, order)
    elif posted:
        pfn = _get_min(bst, ast, cpu, order, mt, ast.params[_P_PB_ORDER])
    else:
        pfn = _get(bst, ast, cpu, order, mt)
    if pfn < 0 and (policy == 1 or policy == 4) and ast.params[_P_QN] > 0:
        w, pages = _drain_queue(bst, tst, ist, ast, cpu)
        ast.counts[AsiEvent.RECLAIM_WAITS] += 1
        ast.counts[AsiEvent.RECLAIM_WAIT_NS] += w
        _burst(ast, t, w, BurstSource.RECLAIM, pages)
        lat += w
        pfn = _get(bst, ast, cpu, order, mt)
    if pfn < 0:
        ast.counts[AsiEvent.ALLOC_FAILURES] += 1
        ast.lat[ident] = -1
        return -1
    ast.counts[AsiEvent.ALLOCS] += 1
    if sens:
        ast.counts[AsiEvent.SENSITIVE_ALLOCS] += 1
    n = np.int64(1) << order
    ast.live[ident, _L_PFN] = pfn
    ast.live[ident, _L_ORDER] = order
    ast.live[ident, _L_NSPOS] = -1
    ast.live[ident, _L_KIND] = (_K_SENS if sens else 0) | (_K_RECLAIM if wl.reclaim[i] else 0)
    ast.owner[pfn] = ident
    if ast.params[_P_INIT] != 0:  # init_on_alloc: post_alloc_hook zeroes every page
        z = n * ast.cost[_C_ZERO]
        lat += z
        ast.counts[AsiEvent.INIT_ZEROED] += n
        ast.counts[AsiEvent.INIT_ZERO_NS] += z
        if unmapped and sens:  # the block is unmapped: zeroed through the mermap
            lat += _mermap_pages(tst, ist, ast, cpu, n)
    if policy == 0:
        ast.lat[ident] = lat
        ast.counts[AsiEvent.ALLOC_NS] += lat
        return lat
    nconv = 0
    c = unmap_ns
    lo = pool_pages(bst)
    hi = np.int64(-1)
    own_conv = ast.counts[AsiEvent.ASI_UNMAP_ALLOCS] + ast.counts[AsiEvent.DIRECT_MAP_MAPS] != c0
    if tracked and bst.ev[0] > 0 and not own_conv:
        nconv = bst.ev[0]
        c, lo, hi = _convert_after_alloc(bst, ast)
    # the block and the converted pageblocks change together: physmap leaves after both,
    # then one shootdown of every page this allocation unmapped
    blo = pfn
    bhi = pfn + n
    if sens:
        u, k = _unmap_range(bst, ast, pfn, n, _NO)
        ast.params[_P_FREE_MAPPED] -= k
        lat += u
        _mark_sensitive(bst, ast, pfn, n)
        if refill and not own_conv:
            u, kr, rlo, rhi = _unmap_refill(bst, ast, cpu, order, mt)
            if kr > 0:
                lat += u
                k += kr
                blo = min(blo, rlo)
                bhi = max(bhi, rhi)
    else:
        m, was = _map_range(bst, ast, pfn, n, _NO, _YES)
        ast.params[_P_FREE_MAPPED] -= was
        lat += m
        k = 0
    for j in range(nconv):
        c += _region_update(ast, ast.scratch[1 + 2 * j])
    lat += _regions_update(ast, pfn, n)
    if hi > lo:  # a conversion unmapped free pages: the block's pages join its shootdown
        if k > 0:
            lo = min(lo, blo)
            hi = max(hi, bhi)
        c += _shootdown(tst, ist, ast, cpu, lo, hi)
    elif k > 0:
        lat += _shootdown(tst, ist, ast, cpu, blo, bhi)
    if c > 0:
        _burst(ast, t, c, BurstSource.CONVERSION, np.int64(0))
    lat += c
    if not sens:
        _ns_add(ast, ident)
        _touch(tst, ast, cpu, pfn)
    ast.lat[ident] = lat
    ast.counts[AsiEvent.ALLOC_NS] += lat
    return lat


@_inner
def _free(bst, tst, ist, ast, wl, i, t):
    """One free of the stream; returns its latency in ns."""
    ident = wl.ref[i]
    if ast.lat[ident] < 0:
        return 0  # the allocation failed: nothing to free
    if ast.live[ident, _L_PFN] < 0:
        ast.counts[AsiEvent.RECLAIMED_FREES] += 1
        return 0
    ast.counts[AsiEvent.FREES] += 1
    lat = _release(bst, tst, ist, ast, ident, wl.sens[i] != 0, np.int64(wl.cpu[i]), t)
    ast.counts[AsiEvent.FREE_NS] += lat
    return lat


@_kernel
def check_invariant(bst, tst, ast):
    """Count pages holding sensitive data (allocated sensitive, or free and not yet zeroed:
    ``F_DIRTY``, ``F_ZERO_DEFERRED``) that are mapped in the restricted physmap or covered
    by any CPU's TLB entry, and pages marked for deferred zeroing that are not marked as
    holding sensitive data; returns the number of violations found."""
    bad = 0
    npages = pool_pages(bst)
    for p in range(npages):
        f = bst.flags[p]
        if (f & _NOT_CLEAN) and (f & F_MAPPED):
            bad += 1
        elif (f & F_ZERO_DEFERRED) and not (f & F_DIRTY):
            bad += 1
    sh = ast.params[_P_PAGE_SHIFT]
    for c in range(tlb_cpus(tst)):
        for s in (TLB_L1I, TLB_L1D, TLB_L2):
            first, end = structure_entries(tst, s)
            for e in range(first, end):
                va, ps = entry_span(tst, c, e)
                if ps < 0:
                    continue
                lo = va >> sh
                hi = lo + (np.int64(1) << (ps - sh)) if ps >= sh else lo + 1
                for p in range(max(lo, 0), min(hi, npages)):
                    if bst.flags[p] & _NOT_CLEAN:
                        bad += 1
                        break
    return bad


@_inner
def _mixed_pageblocks(ast):
    full = np.int64(1) << ast.params[_P_PB_ORDER]
    k = 0
    for r in range(ast.region_mapped.shape[0]):
        m = ast.region_mapped[r]
        if m > 0 and m < full:
            k += 1
    return k


@_kernel
def run_stream(bst, tst, ist, ast, wl):
    """Run the whole operation stream (see the module docstring for each policy's path)."""
    policy = ast.params[_P_POLICY]
    op_ns = ast.params[_P_OP_NS]
    cpus = ast.params[_P_CPUS]
    for i in range(wl.kind.shape[0]):
        t = i * op_ns
        ast.params[_P_NOW] = t
        if wl.kind[i] == 0:
            _alloc(bst, tst, ist, ast, wl, i, t)
        else:
            _free(bst, tst, ist, ast, wl, i, t)
        if policy != 0:
            # restricted-space accesses to live nonsensitive blocks by random CPUs
            x = np.uint64(wl.rnd[i]) | np.uint64(1)
            for _k in range(ast.params[_P_TOUCHES]):
                nl = ast.params[_P_NS_N]
                if nl == 0:
                    break
                x = xorshift64(x)
                ident = ast.ns_list[np.int64(x % np.uint64(nl))]
                c = np.int64((x >> np.uint64(40)) % np.uint64(cpus))
                pages = np.int64(1) << ast.live[ident, 1]
                off = np.int64((x >> np.uint64(20)) % np.uint64(pages))
                _touch(tst, ast, c, ast.live[ident, 0] + off)
            due = t >= ast.params[_P_NEXT_WORKER]
            if policy == 1 and ast.params[_P_QN] > 0 and (
                    due or ast.params[_P_QPAGES] >= ast.params[_P_WORKER_BATCH]):
                w, pages = _drain_queue(bst, tst, ist, ast, np.int64(0))
                _worker_run(ast, t, w, BurstSource.WORKER, pages)
                ast.params[_P_NEXT_WORKER] = t + ast.params[_P_WORKER_NS]
            elif policy == 3 and due:
                if ast.params[_P_FREE_MAPPED] > ast.params[_P_TARGET]:
                    w, pages = _target_worker(bst, tst, ist, ast, np.int64(0))
                    _worker_run(ast, t, w, BurstSource.TARGET, pages)
                ast.params[_P_NEXT_WORKER] = t + ast.params[_P_WORKER_NS]
            elif due:
                ast.params[_P_NEXT_WORKER] = t + ast.params[_P_WORKER_NS]
        if ast.params[_P_FREE_MAPPED] > ast.counts[AsiEvent.FREE_MAPPED_PEAK]:
            ast.counts[AsiEvent.FREE_MAPPED_PEAK] = ast.params[_P_FREE_MAPPED]
        if ast.params[_P_CHECK] != 0:
            ast.counts[AsiEvent.VIOLATIONS] += check_invariant(bst, tst, ast)
        if i % ast.params[_P_SAMPLE] == 0:
            ast.counts[AsiEvent.MIXED_PAGEBLOCK_SUM] += _mixed_pageblocks(ast)
            ast.counts[AsiEvent.SAMPLES] += 1
