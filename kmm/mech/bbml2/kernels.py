"""bbml2: the Numba kernels (they call and read the engine API only).

Part of :mod:`kmm.mech.bbml2`."""
from __future__ import annotations

from ...engine import njit

@njit
def bbm_count(t_ns, cpu, held, u, tlbi_ns, mode, conflict_prob, out):
    """Count the outcome of each access during a live leaf-size change.

    ``out[0]`` accesses, ``out[1]`` faults (walks that read an invalid descriptor: before
    the TLBI completes only on CPUs without the old entry, after it on every CPU),
    ``out[2]`` TLB conflict aborts. With BBML2 every walk reads a valid descriptor.
    """
    for i in range(t_ns.size):
        out[0] += 1
        h = held[cpu[i]]
        if mode == 0:
            if t_ns[i] >= tlbi_ns or h == 0:
                out[1] += 1
        elif mode == 2:
            if t_ns[i] < tlbi_ns and h == 1 and u[i] < conflict_prob:
                out[2] += 1
