"""host: the Numba kernels of the synthetic CPU traces (they call and read the engine API only).

Part of :mod:`kmm.mech.host`. Each kernel is one pass over a CPU's instructions that
:func:`kmm.mech.host.workload.generate_cpu_trace` would otherwise make as several whole-array
steps; the results are the same element for element (``tests/test_host_kernels.py`` checks
each against the array form).
"""
from __future__ import annotations

import numpy as np

from ...engine import njit


@njit(_nrt=False)
def fetches_and_data(ia, mode, kd_rate, ud_rate, fetch, data):
    """Which instructions start a fetch and which issue a data access; the events, both
    together.

    Instruction ``i`` fetches when its 64-byte line or its mode differs from instruction
    ``i - 1``'s (the first always fetches). It issues a data access when the running sum
    of its phase's rate (``kd_rate`` in kernel mode 1, ``ud_rate`` in user mode 0, none at
    EL2, mode 2) passes a whole number, summed in instruction order as ``np.cumsum`` sums
    (``floor(sum + 1e-9)``)."""
    n = 0
    acc = 0.0
    prev = np.int64(0)
    shift = np.uint64(6)
    for i in range(ia.shape[0]):
        m = mode[i]
        f = i == 0 or (ia[i] >> shift) != (ia[i - 1] >> shift) or m != mode[i - 1]
        if m == 1:
            acc += kd_rate
        elif m == 0:
            acc += ud_rate
        fl = np.int64(np.floor(acc + 1e-9))
        d = fl != prev
        prev = fl
        fetch[i] = f
        data[i] = d
        n += np.int64(f) + np.int64(d)
    return n


@njit(_nrt=False)
def slots_and_starts(mode, fetch, data, slot_of_slice, slice_instructions, islot, start):
    """Each instruction's running thread and its first event: ``islot[i]`` is the slot of
    the time slice holding instruction ``i`` (slices count workload instructions, modes 0
    and 1, not EL2's); ``start[i]`` the events before it (a fetch and a data access each)."""
    sl = 0  # the slice of instruction i: workload instructions before it // slice_instructions
    w = np.int64(0)  # workload instructions before it in that slice
    s = np.int64(0)
    for i in range(mode.shape[0]):
        islot[i] = slot_of_slice[sl]
        if mode[i] != 2:
            w += 1
            if w == slice_instructions:
                sl += 1
                w = 0
        start[i] = s
        s += np.int64(fetch[i]) + np.int64(data[i])
