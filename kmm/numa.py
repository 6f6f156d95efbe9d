"""NUMA topology: nodes, CPUs per node, a memory latency matrix in ns, and placement policies.

A :class:`Topology` is a validated frozen description of a machine; :meth:`Topology.to_arrays`
turns it into the flat arrays kernels use (``cpu_nid``: CPU -> node, ``latency_ns``: accessing
node x memory node). Placement policies are :class:`Placement` codes that map (page, accessing
CPU, owning CPU) to the node holding the copy that CPU reads, with one kernel shared by every
caller (:func:`placement_nid`).

Latency matrices are built from measured values (:func:`from_measured`), from SLIT distances
as ``numactl --hardware`` prints them (:func:`from_slit`: the ACPI SLIT normalises local
distance to 10, and Linux's ``node_distance()`` reports it unchanged, so latency is modelled
as ``local_ns * distance / 10``), or from a local latency and a remote/local ratio
(:func:`generic`). Presets cover published arm64 and x86 server parts; each names its source
and lists the fields that are ``assumed``.

Sources
-------
- mm/mempolicy.c: ``MPOL_PREFERRED``/``MPOL_BIND`` (one node), ``MPOL_LOCAL`` (the node of
  the allocating CPU), ``MPOL_INTERLEAVE`` (``interleave_nid``: page offset modulo the
  nodes of the policy).
- drivers/acpi/numa/srat.c, ``acpi_numa_slit_init``: SLIT distances, local = 10.
- The Kunpeng 920, Phytium FT-2500, Hygon 7280 and Intel 8269CY presets (lat_mem_rd per node):
  the 2021 benchmark write-up in ``_WRITEUP``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from ._jit import njit
from .config import check_float, check_int
from .errors import ConfigError


class Placement(IntEnum):
    """Where the copy a CPU reads lives (mm/mempolicy.c policies, plus per-node replicas).

    NODE0 : everything on node 0 (``MPOL_BIND`` to node 0; boot-time kernel text and tables).
    LOCAL : on the node of the CPU that allocated the page (``MPOL_LOCAL``, first touch).
    INTERLEAVE : page ``i`` on node ``i % nodes`` (``MPOL_INTERLEAVE``, ``interleave_nid``).
    REPLICATED : one copy per node; every CPU reads its own node's copy.
    """

    NODE0 = 0
    LOCAL = 1
    INTERLEAVE = 2
    REPLICATED = 3


class NumaArrays(NamedTuple):
    """Kernel view of a topology: ``cpu_nid[cpu]`` and ``latency_ns[from_nid, to_nid]``."""

    cpu_nid: np.ndarray
    latency_ns: np.ndarray


@dataclass(frozen=True)
class Topology:
    """A machine's NUMA shape and memory latencies.

    Parameters
    ----------
    name : short machine name
    cpus_per_node : logical CPUs on each node (length = number of nodes)
    latency_ns : ``latency_ns[i][j]`` = load-to-use latency of a DRAM access from a CPU on
        node ``i`` to memory on node ``j``
    source : where the numbers come from (the publication, or ``assumed``)
    assumed : names of the values that have no public source and must be swept
    """

    name: str
    cpus_per_node: tuple[int, ...]
    latency_ns: tuple[tuple[float, ...], ...]
    source: str = "assumed"
    assumed: tuple[str, ...] = field(default=())

    def __post_init__(self):
        n = len(self.cpus_per_node)
        if n < 1:
            raise ConfigError("a topology needs at least one node", "cpus_per_node")
        for i, c in enumerate(self.cpus_per_node):
            check_int(f"cpus_per_node[{i}]", c, lo=1)
        if len(self.latency_ns) != n or any(len(row) != n for row in self.latency_ns):
            raise ConfigError(f"must be a {n} x {n} matrix (one row per node)", "latency_ns")
        for i, row in enumerate(self.latency_ns):
            for j, v in enumerate(row):
                check_float(f"latency_ns[{i}][{j}]", v, lo=1e-3)

    @property
    def nodes(self) -> int:
        return len(self.cpus_per_node)

    @property
    def cpus(self) -> int:
        return int(sum(self.cpus_per_node))

    @property
    def local_ns(self) -> float:
        """Mean of the diagonal (local access latency)."""
        return float(np.mean(np.diag(np.asarray(self.latency_ns))))

    @property
    def max_ratio(self) -> float:
        """Worst remote/local latency ratio over all (node, node) pairs."""
        lat = np.asarray(self.latency_ns)
        return float((lat / np.diag(lat)[:, None]).max())

    def to_arrays(self) -> NumaArrays:
        """The one conversion to kernel arrays: CPUs are numbered node by node."""
        cpu_nid = np.repeat(np.arange(self.nodes, dtype=np.int64),
                            np.asarray(self.cpus_per_node, dtype=np.int64))
        return NumaArrays(cpu_nid=cpu_nid,
                          latency_ns=np.asarray(self.latency_ns, dtype=np.float64))

    def cpus_of(self, nid: int) -> np.ndarray:
        """CPU ids on node ``nid``."""
        check_int("nid", nid, lo=0, hi=self.nodes - 1)
        first = int(sum(self.cpus_per_node[:nid]))
        return np.arange(first, first + self.cpus_per_node[nid], dtype=np.int64)


def _per_node(cpus_per_node: int | tuple[int, ...], nodes: int) -> tuple[int, ...]:
    if isinstance(cpus_per_node, tuple):
        if len(cpus_per_node) != nodes:
            raise ConfigError(f"needs {nodes} entries, got {len(cpus_per_node)}", "cpus_per_node")
        return cpus_per_node
    return (check_int("cpus_per_node", cpus_per_node, lo=1),) * nodes


def from_measured(name: str, latency_ns, cpus_per_node: int | tuple[int, ...],
                  source: str, assumed: tuple[str, ...] = ()) -> Topology:
    """A topology from a measured latency matrix (``latency_ns[from][to]``, ns)."""
    lat = tuple(tuple(float(v) for v in row) for row in latency_ns)
    return Topology(name, _per_node(cpus_per_node, len(lat)), lat, source, assumed)


def from_slit(name: str, distances, local_ns: float, cpus_per_node: int | tuple[int, ...],
              source: str = "assumed", assumed: tuple[str, ...] = ()) -> Topology:
    """A topology from SLIT distances (``numactl --hardware``; local = 10).

    Latency is ``local_ns * distance / 10``: the SLIT is defined as relative latency, though
    firmware tables often only approximate it.
    """
    local_ns = check_float("local_ns", local_ns, lo=1e-3)
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ConfigError(f"must be a square matrix, got shape {d.shape}", "distances")
    if np.any(np.diag(d) != 10):
        raise ConfigError("SLIT local distance must be 10 on the diagonal", "distances")
    if np.any(d < 10):
        raise ConfigError("SLIT distances are >= 10", "distances")
    lat = local_ns * d / 10.0
    return from_measured(name, lat.tolist(), cpus_per_node, source, assumed)


def generic(nodes: int, local_ns: float, ratio: float, cpus_per_node: int = 4) -> Topology:
    """A flat machine: every remote access costs ``ratio * local_ns`` (both ``assumed``).

    ``nodes`` is 1, 2, 4 or 8; ``ratio`` >= 1.
    """
    check_int("nodes", nodes, lo=1)
    if nodes not in (1, 2, 4, 8):
        raise ConfigError(f"must be 1, 2, 4 or 8, got {nodes}", "nodes")
    local_ns = check_float("local_ns", local_ns, lo=1e-3)
    ratio = check_float("ratio", ratio, lo=1.0)
    lat = np.full((nodes, nodes), local_ns * ratio)
    np.fill_diagonal(lat, local_ns)
    return from_measured(f"generic-{nodes}node-r{ratio:g}", lat.tolist(), cpus_per_node,
                         "generic builder", assumed=("local_ns", "ratio"))


def check_latency_matrix(latency_ns, nodes: int | None = None,
                         name: str = "latency_ns") -> np.ndarray:
    """``latency_ns`` as a float array after checking it as untrusted input: a square
    matrix (of ``nodes`` x ``nodes`` when given) of finite, positive latencies in ns
    (``latency_ns[cpu node][memory node]``; a remote entry below the local one is allowed:
    measured matrices carry noise). Raises :class:`ConfigError` with one line naming the first problem."""
    try:
        lat = np.asarray(latency_ns, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("must be a square matrix of numbers (ns)", name) from None
    if lat.ndim != 2 or lat.shape[0] != lat.shape[1] or lat.shape[0] < 1:
        raise ConfigError(f"must be a square matrix, got shape {lat.shape}", name)
    if nodes is not None and lat.shape[0] != nodes:
        raise ConfigError(f"must be {nodes} x {nodes} (one row per node), got "
                          f"{lat.shape[0]} x {lat.shape[1]}", name)
    bad = ~np.isfinite(lat)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ConfigError(f"entry [{i}][{j}] must be finite, got {lat[i, j]}", name)
    if (lat <= 0).any():
        i, j = np.argwhere(lat <= 0)[0]
        raise ConfigError(f"entry [{i}][{j}] must be > 0 ns, got {lat[i, j]}", name)
    return lat


def sockets(sockets: int, nodes_per_socket: int, local_ns: float, sibling_ratio: float,
            remote_ratio: float, cpus_per_node: int = 4) -> Topology:
    """A multi-socket machine of ``sockets`` x ``nodes_per_socket`` nodes (all ``assumed``).

    A node reaches its own memory at ``local_ns``, a sibling node of its socket (another
    sub-NUMA cluster, or another die) at ``sibling_ratio * local_ns`` and a node of another
    socket at ``remote_ratio * local_ns``. Nodes are numbered socket by socket. With
    sub-NUMA clustering the nodes of one socket share its last-level cache
    (:func:`llc_groups`).
    """
    check_int("sockets", sockets, lo=1, hi=8)
    check_int("nodes_per_socket", nodes_per_socket, lo=1, hi=16)
    if sockets * nodes_per_socket > 64:
        raise ConfigError("at most 64 nodes", "nodes_per_socket")
    local_ns = check_float("local_ns", local_ns, lo=1e-3)
    sibling_ratio = check_float("sibling_ratio", sibling_ratio, lo=1.0)
    remote_ratio = check_float("remote_ratio", remote_ratio, lo=1.0)
    n = sockets * nodes_per_socket
    lat = [[local_ns if i == j else local_ns * (sibling_ratio if i // nodes_per_socket
                                                  == j // nodes_per_socket else remote_ratio)
            for j in range(n)] for i in range(n)]
    return from_measured(f"{sockets}s{nodes_per_socket}n-r{sibling_ratio:g}-{remote_ratio:g}",
                         lat, cpus_per_node, "sockets builder",
                         assumed=("local_ns", "sibling_ratio", "remote_ratio"))


def llc_groups(nodes: int, nodes_per_llc: int) -> np.ndarray:
    """``group[nid]``: the last-level cache each node uses when ``nodes_per_llc``
    consecutive nodes share one (sub-NUMA clustering: the clusters of a socket split its
    memory controllers, not its LLC, which every cluster still fills)."""
    check_int("nodes", nodes, lo=1)
    check_int("nodes_per_llc", nodes_per_llc, lo=1, hi=nodes)
    if nodes % nodes_per_llc:
        raise ConfigError(f"{nodes} nodes do not split into LLCs of {nodes_per_llc}",
                          "nodes_per_llc")
    return np.arange(nodes, dtype=np.int64) // nodes_per_llc


# ---- presets: published DRAM latencies of server parts ----------------------------------

_BOUNDS = ("low", "mid", "high")
#: The 2021 write-up the Kunpeng 920, FT-2500, Hygon 7280 and Intel 8269CY latencies come from.
_WRITEUP = ("plantegg, 2021-06-18, https://plantegg.github.io/2021/06/18/"
            "%E5%87%A0%E6%AC%BECPU%E6%80%A7%E8%83%BD%E5%AF%B9%E6%AF%94/")


def _pick(lo: float, hi: float, bound: str) -> float:
    if bound not in _BOUNDS:
        raise ConfigError(f"must be one of {', '.join(_BOUNDS)}, got {bound!r}", "bound")
    return {"low": lo, "mid": (lo + hi) / 2.0, "high": hi}[bound]


def kunpeng920() -> Topology:
    """Kunpeng 920, 2 sockets x 2 dies = 4 nodes, 24 CPUs per node (96 cores).

    Source: SLIT 10/12/20/22 from ``numactl`` output in LKML scheduler threads; lat_mem_rd to
    node 0 from nodes 0..3: 117 / 135 / 198 / 219 ns (2021 public benchmark write-up).
    Only the row to node 0 is measured; the other rows assume the symmetric 2-socket x 2-die
    layout, classing a (node i, node j) pair by ``i XOR j`` (same die, sibling die, other
    socket near die, other socket far die).
    """
    by_class = (117.0, 135.0, 198.0, 219.0)
    lat = [[by_class[i ^ j] for j in range(4)] for i in range(4)]
    return from_measured("kunpeng920-4node", lat, 24,
                         f"web: {_WRITEUP}: Kunpeng 920 lat_mem_rd 117/135/198/219 ns",
                         assumed=("rows 1-3 by symmetry",))


def graviton2() -> Topology:
    """AWS Graviton2 (Neoverse N1), 64 CPUs, one node, local DRAM about 81 ns measured
    (Arm quotes 83 ns) in public Graviton2 review measurements."""
    return from_measured("graviton2", [[81.0]], 64,
                         "web: public Graviton2 review measurements, publication not identified: "
                         "local DRAM 81 ns")


def phytium_ft2500(bound: str = "mid") -> Topology:
    """Phytium FT-2500, 2 sockets x 64 cores, modelled as one node per socket.

    Source: 2021 public benchmark write-up: 150-212 ns in-socket, 426-490 ns cross-socket.
    ``bound`` picks the low end, the midpoint or the high end of both ranges.
    """
    local = _pick(150.0, 212.0, bound)
    remote = _pick(426.0, 490.0, bound)
    return from_measured(f"phytium-ft2500-{bound}", [[local, remote], [remote, local]], 64,
                         f"web: {_WRITEUP}: FT-2500 150-212 ns in-socket, 426-490 ns cross-socket")


def hygon7280(bound: str = "mid") -> Topology:
    """Hygon 7280, 2 sockets x 4 dies = 8 nodes, 16 logical CPUs per node.

    Source: 2021 public benchmark write-up: 107 ns local, 164-169 ns same socket,
    237-292 ns remote socket. Nodes 0-3 are socket 0, 4-7 socket 1. ``bound`` picks the
    ends or midpoints of the ranges.
    """
    same = _pick(164.0, 169.0, bound)
    remote = _pick(237.0, 292.0, bound)
    lat = [[107.0 if i == j else (same if i // 4 == j // 4 else remote) for j in range(8)]
           for i in range(8)]
    return from_measured(f"hygon7280-{bound}", lat, 16,
                         f"web: {_WRITEUP}: Hygon 7280 107 / 164-169 / 237-292 ns")


def intel8269cy() -> Topology:
    """Intel Xeon Platinum 8269CY, 2 sockets x 26 cores x 2 threads: 70 ns local, 93 ns
    remote (1.33x), 2021 public benchmark write-up."""
    return from_measured("intel8269cy", [[70.0, 93.0], [93.0, 70.0]], 52,
                         f"web: {_WRITEUP}: Intel 8269CY 70 vs 93 ns")


def ampereone(nodes: int = 1, ratio: float = 1.5, local_ns: float = 81.0) -> Topology:
    """AmpereOne, 192 cores, one socket, optionally partitioned into ``nodes`` NUMA nodes.

    Neither the local nor the remote latency is published in our sources: ``local_ns``
    defaults to the Graviton2 (Neoverse-class) measurement as a stand-in and ``ratio`` is a
    free parameter; both are ``assumed`` and must be swept.
    """
    check_int("nodes", nodes, lo=1)
    if 192 % nodes:
        raise ConfigError(f"192 cores do not split into {nodes} equal nodes", "nodes")
    local_ns = check_float("local_ns", local_ns, lo=1e-3)
    ratio = check_float("ratio", ratio, lo=1.0)
    lat = np.full((nodes, nodes), local_ns * ratio)
    np.fill_diagonal(lat, local_ns)
    return from_measured(f"ampereone-{nodes}node", lat.tolist(), 192 // nodes,
                         "AmpereOne: no published latency", assumed=("local_ns", "ratio"))


PRESETS = {
    "kunpeng920": kunpeng920,
    "graviton2": graviton2,
    "phytium_ft2500": phytium_ft2500,
    "hygon7280": hygon7280,
    "intel8269cy": intel8269cy,
    "ampereone": ampereone,
}


def preset(name: str, **kwargs) -> Topology:
    """A preset topology by name (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown machine {name!r}; known: {', '.join(PRESETS)}", "machine")
    return PRESETS[name](**kwargs)


# ---- placement kernels ------------------------------------------------------------------

@njit
def placement_nid(policy, page, cpu, owner_cpu, cpu_nid, nodes):
    """Node holding the copy of ``page`` that ``cpu`` reads under ``policy``.

    Parameters
    ----------
    policy : :class:`Placement` code
    page : page index within the object (the interleave offset of mm/mempolicy.c
        ``interleave_nid``)
    cpu : accessing CPU
    owner_cpu : CPU that allocated (first touched) the page, for ``LOCAL``
    cpu_nid : CPU -> node array
    nodes : number of nodes
    """
    if policy == 0:  # NODE0
        return 0
    if policy == 1:  # LOCAL
        return cpu_nid[owner_cpu]
    if policy == 2:  # INTERLEAVE
        return page % nodes
    return cpu_nid[cpu]  # REPLICATED: every node reads its own copy


@njit
def _placement_many(policy, pages, cpus, owner_cpus, cpu_nid, nodes, out):
    for i in range(pages.shape[0]):
        out[i] = placement_nid(policy, pages[i], cpus[i], owner_cpus[i], cpu_nid, nodes)


@njit
def _latency_many(policy, pages, cpus, owner_cpus, cpu_nid, latency_ns, out):
    nodes = latency_ns.shape[0]
    for i in range(pages.shape[0]):
        nid = placement_nid(policy, pages[i], cpus[i], owner_cpus[i], cpu_nid, nodes)
        out[i] = latency_ns[cpu_nid[cpus[i]], nid]


def _check_policy_inputs(topo: Topology, policy, pages, cpus, owner_cpus):
    policy = Placement(policy)
    pages = np.ascontiguousarray(pages, dtype=np.int64)
    cpus = np.broadcast_to(np.asarray(cpus, dtype=np.int64), pages.shape).copy()
    owner = cpus if owner_cpus is None else np.broadcast_to(
        np.asarray(owner_cpus, dtype=np.int64), pages.shape).copy()
    for name, arr in (("cpus", cpus), ("owner_cpus", owner)):
        if arr.size and (arr.min() < 0 or arr.max() >= topo.cpus):
            raise ConfigError(f"CPU ids must be in 0..{topo.cpus - 1}", name)
    if pages.size and pages.min() < 0:
        raise ConfigError("page indices must be >= 0", "pages")
    return int(policy), pages, cpus, owner


def nodes_for(topo: Topology, policy: Placement | int, pages, cpus, owner_cpus=None) -> np.ndarray:
    """Node read by each (page, cpu) access under ``policy`` (vectorised :func:`placement_nid`).

    ``owner_cpus`` (the allocating CPU of each page, for ``LOCAL``) defaults to ``cpus``.
    """
    policy, pages, cpus, owner = _check_policy_inputs(topo, policy, pages, cpus, owner_cpus)
    out = np.empty(pages.shape[0], dtype=np.int64)
    arr = topo.to_arrays()
    _placement_many(policy, pages, cpus, owner, arr.cpu_nid, topo.nodes, out)
    return out


def access_latency_ns(topo: Topology, policy: Placement | int, pages, cpus,
                      owner_cpus=None) -> np.ndarray:
    """DRAM latency of each (page, cpu) access under ``policy``."""
    policy, pages, cpus, owner = _check_policy_inputs(topo, policy, pages, cpus, owner_cpus)
    out = np.empty(pages.shape[0], dtype=np.float64)
    arr = topo.to_arrays()
    _latency_many(policy, pages, cpus, owner, arr.cpu_nid, arr.latency_ns, out)
    return out


def copies(policy: Placement | int, nodes: int) -> int:
    """Copies of each page a policy keeps: ``nodes`` for ``REPLICATED``, else 1."""
    return nodes if Placement(policy) == Placement.REPLICATED else 1


__all__ = ["Placement", "Topology", "NumaArrays", "from_measured", "from_slit", "generic",
           "check_latency_matrix", "sockets", "llc_groups",
           "kunpeng920", "graviton2", "phytium_ft2500", "hygon7280", "intel8269cy", "ampereone",
           "PRESETS", "preset", "placement_nid", "nodes_for", "access_latency_ns", "copies"]
