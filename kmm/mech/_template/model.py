"""The template mechanism's model: a frozen configuration, its conversion to kernel arrays
(in exactly one place), and the simulation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import check_float, check_int
from ...engine import generic
from .kernels import charge_reads


@dataclass(frozen=True)
class Config:
    """``nodes`` NUMA nodes, ``local_ns`` a local read, ``remote_ratio`` remote/local."""

    nodes: int = 2
    local_ns: float = 100.0
    remote_ratio: float = 2.0
    replicated: bool = False

    def __post_init__(self):
        check_int("nodes", self.nodes, 1)
        check_float("local_ns", self.local_ns, 0.0)
        check_float("remote_ratio", self.remote_ratio, 1.0)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The kernel's inputs: the latency matrix and the node each node reads its copy from."""
        lat = np.asarray(generic(self.nodes, self.local_ns, self.remote_ratio).latency_ns)
        copy = np.arange(self.nodes) if self.replicated else np.zeros(self.nodes, np.int64)
        return lat, copy.astype(np.int64)


@dataclass(frozen=True)
class Run:
    """Counts of one simulation; time is a formula over them."""

    reads: int
    remote_reads: int
    read_ns: float


def simulate(config: Config, cpu_nodes: np.ndarray) -> Run:
    """Charge every read of ``cpu_nodes`` (the node of the reading CPU) at its copy's node."""
    lat, copy = config.arrays()
    out = np.zeros(2, np.float64)
    charge_reads(cpu_nodes, copy, lat, out)
    return Run(int(cpu_nodes.size), int(out[0]), float(out[1]))
