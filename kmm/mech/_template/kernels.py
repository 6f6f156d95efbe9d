"""The template mechanism's kernels: flat arrays in, counts out; the engine API only."""
from __future__ import annotations

from ...engine import njit


@njit
def charge_reads(cpu_nodes, copy_node, latency_ns, out):
    """``out[0]`` += remote reads, ``out[1]`` += nanoseconds, for reads from ``cpu_nodes``
    of the copy each node reads (``copy_node``)."""
    for i in range(cpu_nodes.size):
        src = cpu_nodes[i]
        dst = copy_node[src]
        if src != dst:
            out[0] += 1
        out[1] += latency_ns[src, dst]
