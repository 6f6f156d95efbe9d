"""bbml2_perf: the Numba kernels (they call and read the engine API only).

Part of :mod:`kmm.mech.bbml2_perf`."""
from __future__ import annotations

import numpy as np

from ... import engine as eng
from ...engine import KIND_IFETCH, njit, TagEvent
from .model import N_CLASSES, op_events

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
