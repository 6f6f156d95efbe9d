"""Plain-Python twins of the kernels of kmm.mech.bbml2_perf."""


def closed_loop(service, think, first_think, warm):
    """Twin of ``closed_loop_kernel``: a list of pending (arrival, client) pairs, served
    one at a time in arrival order (ties to the lowest client)."""
    pending = {c: a for c, a in enumerate(first_think)}
    free = 0.0
    busy = 0.0
    t0 = 0.0
    response = []
    for k, s in enumerate(service):
        c = min(pending, key=lambda j: (pending[j], j))
        a = pending.pop(c)
        start = max(a, free)
        if k == warm:
            t0 = start
        end = start + s
        response.append(end - a)
        if k >= warm:
            busy += s
        free = end
        pending[c] = end + think[k]
    return response, busy, free - t0


def path_ops(config, touches, n_ops, n_events):
    """Twin of ``path_ops_kernel`` built on the engine's twins (``naive.walk.NaivePath``):
    per touch one TLB lookup, the walk's descriptor reads counted by serving level, then the
    data lines through the caches. Returns a list of per-op event lists."""
    import numpy as np
    from naive.walk import NaivePath

    from kmm.mech.bbml2_perf import OpEvent as E

    path = NaivePath(config)
    ev = [[0] * n_events for _ in range(n_ops)]
    t = touches
    for i in range(len(t.va)):
        o = int(t.op[i])
        el1 = bool(int(t.cls[i]) & 1)
        flags = int(t.flags[i])
        kind = flags & 3
        glob = bool(flags & 4)
        va = int(np.int64(t.va[i]))
        ev[o][E.TOUCHES] += 1
        r = path.tlb.translate(0, va, kind, int(t.shift[i]), int(t.asid[i]), 0, glob)
        if r >= 1:
            ev[o][E.L1TLB_MISSES] += 1
            ev[o][E.EL1_L1TLB_MISSES] += el1
        if r == 2:
            ev[o][E.WALKS] += 1
            ev[o][E.EL1_WALKS] += el1
            ev[o][E.LINEAR_WALKS] += bool(int(t.cls[i]) & 2)
            before = path.served[2].copy()
            path.stage1_walk(0, va, int(t.leaf[i]), int(t.asid[i]), 0, glob, 0, 0, None)
            d = path.served[2] - before
            for lvl, col in enumerate((E.WALK_READS_L1, E.WALK_READS_L2, E.WALK_READS_LLC,
                                       E.WALK_READS_MEM)):
                ev[o][col] += int(d[lvl])
        if kind == 2:
            continue
        for j in range(int(t.lines[i])):
            s = path.caches.access(0, int(t.pa[i]) + 64 * j, 1, 0)
            if s == 0:
                continue
            base = E.FIRST_L2 if j == 0 else E.REST_L2
            ev[o][base + s - 1] += 1
    return ev
