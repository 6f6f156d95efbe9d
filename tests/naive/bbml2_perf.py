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
