"""bbml2_perf: the Numba kernels (they call and read the engine API only).

Part of :mod:`kmm.mech.bbml2_perf`."""
from __future__ import annotations

import numpy as np

from ... import engine as eng
from ...engine import KIND_IFETCH, njit, TagEvent
from .model import _CLS_DEMAND, _CLS_STREAMED, N_CLASSES, op_events

# ---------------------------------------------------------------------------------------
# memcached latency: a closed-loop queue driven by the simulated service times
# ---------------------------------------------------------------------------------------
@njit
def closed_loop_kernel(service, think, first_think, warm):
    """One FCFS server and ``first_think.size`` closed-loop clients.

    Client ``c`` issues its first request at ``first_think[c]``; request ``k`` (in arrival
    order) takes ``service[k]`` on the server and its client thinks ``think[k]`` after the
    response before issuing the next. Returns ``(response, busy, span)``: the response time
    of every request, and the server's busy time and the elapsed time over requests
    ``warm..`` (from the start of service of request ``warm`` to the last departure).
    """
    n = service.shape[0]
    arrive = first_think.copy()
    response = np.empty(n)
    free = 0.0
    busy = 0.0
    t0 = 0.0
    for k in range(n):
        c = 0
        for j in range(1, arrive.shape[0]):
            if arrive[j] < arrive[c]:
                c = j
        a = arrive[c]
        start = a if a > free else free
        if k == warm:
            t0 = start
        end = start + service[k]
        response[k] = end - a
        if k >= warm:
            busy += service[k]
        free = end
        arrive[c] = end + think[k]
    return response, busy, free - t0


def path_ops_kernel(tst, cst, ws, out, t, tn, ev):
    """Run every touch of ``t`` on CPU 0 through the engine's path kernel
    (:func:`kmm.walk.run_path`, tagged by operation and class) and add the :class:`OpEvent`
    counts per operation into ``ev`` (int64 ``[ops, events]``).

    One TLB lookup per touch; a walk's descriptor reads are counted by the level that served
    them; every data line of the touch then reads through the caches (instruction lines are
    not simulated in the line caches). :func:`simulate_events` does the same through
    :class:`kmm.walk.Path`; this keeps the earlier kernel-level entry point.
    """
    n_ops = ev.shape[0]
    tag = (t.op * N_CLASSES + t.cls).astype(np.int32)
    lines = np.where((t.flags & eng.FLAG_KIND_MASK) == KIND_IFETCH, 0, t.lines).astype(np.int32)
    one = np.zeros(1, np.int32)
    acc = eng.PathArrays(va=t.va, pa=t.pa, flags=t.flags, shift=t.shift,
                         leaf=t.leaf.astype(np.int8), leaf2=np.full(1, 3, np.int8),
                         asid=t.asid, vmid=one, cpu=one, node=one,
                         table_nid=np.ascontiguousarray(tn, np.int32), tag=tag, lines=lines)
    by_tag = np.zeros((n_ops * N_CLASSES, len(TagEvent)), np.int64)
    eng.run_path(tst, cst, ws, acc, out._replace(refs=np.empty(0, np.int16), by_tag=by_tag))
    ev += op_events(by_tag, n_ops)


# ---------------------------------------------------------------------------------------
# captured kernel traces: references grouped into touches
# ---------------------------------------------------------------------------------------
@njit
def group_touches_kernel(line, kind, key, open_streams):
    """Group per-reference cache lines into touches (runs of consecutive lines in one 4 KiB
    page), in program order.

    ``line`` int64 line number of each reference (VA >> 6), ``kind`` uint8 (0 load, 1
    store, 2 fetch), ``key`` int64 what else must match for two references to share a touch
    (region, exception level, CPU). Up to ``open_streams`` touches are open at once (a copy
    interleaves the loads of its source with the stores of its destination): a reference
    extends the open touch of its page, kind and key if its line lies in
    ``[first, last + 1]`` of that touch (any line of the page for fetches), else it opens a
    new touch, closing the least recently extended one when all are in use.

    Returns ``(touch, first, n_lines)``: per reference the index of its touch; per touch the
    first line and the number of consecutive lines.
    """
    n = line.shape[0]
    touch = np.empty(n, np.int64)
    first = np.empty(n, np.int64)
    last = np.empty(n, np.int64)
    s_touch = np.full(open_streams, -1, np.int64)
    s_used = np.zeros(open_streams, np.int64)
    s_kind = np.zeros(open_streams, np.int64)
    s_key = np.zeros(open_streams, np.int64)
    s_page = np.zeros(open_streams, np.int64)
    n_t = 0
    for i in range(n):
        pg = line[i] >> 6
        k = np.int64(kind[i])
        hit = -1
        for s in range(open_streams):
            t = s_touch[s]
            if t < 0 or s_page[s] != pg or s_kind[s] != k or s_key[s] != key[i]:
                continue
            if k == 2 or (line[i] >= first[t] and line[i] <= last[t] + 1):
                hit = s
                break
        if hit < 0:
            for s in range(open_streams):      # a free slot, else the least recently used
                if s_touch[s] < 0:
                    hit = s
                    break
            if hit < 0:
                hit = 0
                for s in range(1, open_streams):
                    if s_used[s] < s_used[hit]:
                        hit = s
            first[n_t] = line[i]
            last[n_t] = line[i]
            s_touch[hit] = n_t
            s_kind[hit] = k
            s_key[hit] = key[i]
            s_page[hit] = pg
            n_t += 1
        t = s_touch[hit]
        if line[i] > last[t]:
            last[t] = line[i]
        s_used[hit] = i
        touch[i] = t
    return touch, first[:n_t].copy(), (last[:n_t] - first[:n_t] + 1)


# ---------------------------------------------------------------------------------------
# a stream prefetcher with a stated boundary rule
# ---------------------------------------------------------------------------------------
@njit
def stream_prefetch_kernel(pa, lines, data, cpu, entry_shift, mode, streams, ramp):
    """Which touches a per-CPU stream prefetcher covers, in program order.

    Each CPU tracks ``streams`` ascending streams (least recently used replaced). A data
    touch (``data``) whose first byte ``pa`` is the next line of a tracked stream, still
    below that stream's bound, *continues* it: its first line was prefetched. Any other
    data touch starts a stream: its first ``ramp`` lines (at most all of them) are demand
    misses while the prefetcher trains, the rest are prefetched. A stream's bound is the end
    of the region holding its latest touch: the 4 KiB page (``mode`` 1), the translation,
    of ``1 << entry_shift`` bytes (``mode`` 2), or none (``mode`` 3).

    Returns ``(cont, demand)``: per touch whether it continues a stream, and how many of its
    lines after the first are demand misses (0 for a continued touch).
    """
    n = pa.shape[0]
    cont = np.zeros(n, np.bool_)
    demand = np.zeros(n, np.int64)
    n_cpu = 1
    for i in range(n):
        if cpu[i] + 1 > n_cpu:
            n_cpu = cpu[i] + 1
    nxt = np.full((n_cpu, streams), -1, np.int64)
    bound = np.zeros((n_cpu, streams), np.int64)
    used = np.full((n_cpu, streams), -1, np.int64)
    for i in range(n):
        if not data[i] or lines[i] <= 0:
            continue
        c = cpu[i]
        start = pa[i]
        end = start + lines[i] * 64
        if mode == 1:
            region = np.int64(4096)
        else:
            region = np.int64(1) << entry_shift[i]
        hit = -1
        for s in range(streams):
            if nxt[c, s] == start and (mode == 3 or start < bound[c, s]):
                hit = s
                break
        if hit >= 0:
            cont[i] = True
        else:
            demand[i] = min(lines[i], ramp) - 1
            hit = 0
            for s in range(1, streams):
                if used[c, s] < used[c, hit]:
                    hit = s
        nxt[c, hit] = end
        bound[c, hit] = (start // region + 1) * region if mode != 3 else 0
        used[c, hit] = i
    return cont, demand


@njit
def split_streams(lines, cls, data, cont, demand):
    """The touches to run from the prefetcher's verdicts (:func:`stream_prefetch_kernel`):
    a data touch that starts a stream (``data`` and not ``cont``) with more lines than its
    first and its ``demand`` lines is split in two, its demand head and its prefetched tail.

    Returns ``(index, out_lines, out_cls, offset)`` per touch to run: the trace touch it
    comes from, its lines, its class bits (``cls`` with :data:`_CLS_STREAMED` for a
    continued touch and a tail, :data:`_CLS_DEMAND` for the head of a stream that trains
    on demand lines) and its first line's offset in lines from the trace touch's (the
    head's line count for a tail, else 0).
    """
    n = lines.shape[0]
    m = n
    for i in range(n):
        if data[i] and not cont[i] and lines[i] > 1 + demand[i]:
            m += 1
    index = np.empty(m, np.int64)
    out_lines = np.empty(m, np.int64)
    out_cls = np.empty(m, np.int64)
    offset = np.zeros(m, np.int64)
    j = 0
    for i in range(n):
        c = cls[i]
        if cont[i]:
            c |= _CLS_STREAMED
        starts = data[i] and not cont[i]
        if starts and demand[i] > 0:
            c |= _CLS_DEMAND
        split = starts and lines[i] > 1 + demand[i]
        head = 1 + demand[i] if split else lines[i]
        index[j] = i
        out_lines[j] = head
        out_cls[j] = c
        j += 1
        if split:
            index[j] = i
            out_lines[j] = lines[i] - head
            out_cls[j] = (c & ~_CLS_DEMAND) | _CLS_STREAMED
            offset[j] = head
            j += 1
    return index, out_lines, out_cls, offset
