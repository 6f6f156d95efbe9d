"""Time from counted events: loaded latency, overlap of misses, and invalidation felt by
every CPU.

Each term rests on a measurement of that one mechanism, listed with its source in
``kmm/data/calibration.yaml`` (:func:`calibration`); what has no source there is
``assumed`` with a range to sweep.

Loaded latency and bandwidth
----------------------------
A memory node's latency rises with its utilisation along a queueing curve::

    L(rho) = L_idle * (1 + scale * a * k*rho / (1 - k*rho)),   rho = traffic / peak

fitted (:meth:`LoadCurve.fit`: ``L = L0 + s*x/(1-x)``, ``x = B/B_sat``, least squares, so
``a = s/L0`` and ``k = B_max/B_sat`` with ``B_max`` the largest measured bandwidth) to a
published latency-versus-bandwidth table (Intel MLC ``--loaded_latency``). ``k < 1``: the
fitted curve stays finite at the measured peak, which no traffic may exceed. A remote read
from CPU node ``i`` to memory node ``j`` pays ``idle[i, j]``, node ``j``'s memory delay,
and the link's delay: the same shape applied to the remote premium
``idle[i, j] - idle[j, j]`` at the link's utilisation. The traffic is the simulated lines
(every memory read by source and node, plus ``extra_lines``: replica copies, writebacks)
over the run's wall time, plus the lines of the cores that are not simulated
(``background`` x peak, assumed and swept).

Overlap of misses (first-order interval model)
---------------------------------------------
Following the first-order superscalar model (Karkhanis and Smith, "A First-Order
Superscalar Processor Model", ISCA 2004) and interval analysis (Eyerman, Eeckhout, Karkhanis
and Smith, "A Mechanistic Performance Model for Superscalar Out-of-Order Processors", ACM
TOCS 27(2), 2009), a core's time is its base CPI plus, per source ``s`` (instruction fetch,
data, walk) and level served ``l`` (L2, LLC, memory node)::

    stall = n[s, l] * d[s] * lat[l]  +  n[s, l] * (1 - d[s]) * lat[l] / MLP

with ``d[s]`` the dependent fraction (walk descriptors: 1, each level's table address is
the previous descriptor's output; data: a parameter; instruction fetch: assumed) and
``MLP = min(outstanding, max(1, m * window))`` where ``m`` is the independent misses beyond
L1 per instruction: misses overlap only when they fall within one reorder window of each
other, and never more than the core keeps outstanding. This replaces fixed ``stall_*``
shares.

Fixed point
-----------
Latency depends on utilisation, utilisation on the run's time, time on latency. Each node's
work ``W_k`` is linear in the latencies with non-negative coefficients (``MLP`` does not
depend on time), latency is non-decreasing in utilisation and utilisation non-increasing
in the wall time ``T``; so ``g(T) = max_k W_k / cpus_k`` is continuous and non-increasing
and ``h(T) = T - g(T)`` is strictly increasing: the fixed point is unique. No resource may
carry more than its peak, so ``T >= T_bw = max over resources of V / (peak - background)``.
If ``h(T_bw) >= 0`` the run is bandwidth bound (``T = T_bw``, the difference reported as
``bandwidth_wait_ns``); else the root lies in ``[T_bw, g(T_bw)]`` (``g(T_bw) > T_bw`` and
``h(g(T_bw)) >= 0``) and bisection converges to it.

Invalidation felt by every CPU
------------------------------
A broadcast invalidation empties other CPUs' TLBs too, and each CPU re-walks, on its next
use, what it held of its translations in use. :func:`invalidation_scope` says which
entries go: an arm64 kernel range (``flush_tlb_kernel_range``) of at least ``MAX_DVM_OPS``
pages becomes ``flush_tlb_all`` (``TLBI VMALLE1IS``); an x86 kernel range above
``tlb_single_page_flush_ceiling`` becomes ``flush_tlb_all``; a pKVM host stage-2 entry
replaced (a page donated or shared) runs ``__kvm_tlb_flush_vmid_ipa``, whose ``TLBI
VMALLE1IS`` empties every CPU's host stage-1 entries. :func:`lost_translations` (counts)
and :func:`lost_translations_sets` (per-CPU sets of translations, a Numba kernel over flat
arrays) give each CPU's lost entries (a CPU holds at most ``tlb_entries`` of its
translations in use, a range's share in proportion), and :func:`rewalk_time` charges each
CPU its re-walks, reporting the initiator and the others apart. :class:`Rewalk` is the one
price of the re-walks after a flush of everything that every mechanism uses: each CPU's
working set, what of it a TLB holds, and one walk's dependent reads from the LLC and from
memory at a loaded latency (the calibrated curve at a background utilisation, or given).

How a mechanism calls it
------------------------
1. Build :class:`Counts` per CPU node ``k`` from the simulation: ``instructions[k]``,
   ``served[k, source, level]`` (``SOURCE_*`` by ``SERVED_*``, lines read),
   ``mem[k, source, j]`` (memory reads of CPU node ``k``'s lines resolved to memory node
   ``j``: for ktr, ``HostCounts.mem[:, sim_node, class]`` summed through
   ``classes.resolve(scheme, policy, k, sim_node)``), ``l2_tlb_hits[k]``, ``cpus[k]`` (the
   simulated CPUs pooled in node ``k``'s counts) and ``extra_lines[i, j]`` (lines moved
   into node ``i`` from node ``j`` outside the simulated misses: replica copies,
   writebacks).
2. Build a :class:`MemorySystem` from the topology's idle latency matrix
   (:func:`memory_system`, peak bandwidth and background from the calibration) and a
   :class:`CoreModel` (:func:`neoverse_core` or :func:`ampereone_core`, with the
   dependent fraction of data as a parameter).
3. ``r = solve(counts, memory, core)``: ``r.wall_ns``, ``r.breakdown`` (base, TLB hits,
   stalls by source and level, local and remote memory, bandwidth wait), ``r.latency_ns``
   (loaded), ``r.node_util``, ``r.link_util``, ``r.mlp``.
4. For an invalidation: ``scope = invalidation_scope(kind, pages)``; per CPU the distinct
   translations in use and those in the range; ``lost = lost_translations(in_use,
   in_range, scope, tlb_entries)``; ``rewalk_time(lost, walk_ns, initiator)`` with
   ``walk_ns`` per CPU from :func:`walk_ns` (the walk's descriptor reads by level served,
   at the loaded latencies of ``r``; under pKVM, the 2D walk's references). For a flush of
   everything whose lost translations are the CPUs' working sets: ``Rewalk(working_set,
   refs, memory_refs, mem_idle_ns=..., background=...).after(scope, cpus, tlb_entries)``
   (or ``memory_ns=`` a loaded latency in place of the idle one and the background).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import numpy as np
import yaml

from ._jit import njit
from .config import check_float, check_int
from .errors import ConfigError

#: Bytes of one line moved.
LINE_BYTES = 64
#: Sources (as ``SOURCE_*``) and levels served (as ``SERVED_*``) of the count arrays.
N_SOURCES, N_LEVELS = 3, 4
SOURCE_NAMES = ("ifetch", "data", "walk")
_L2, _LLC, _MEM = 1, 2, 3


# ---- calibration ------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _calibration_text() -> str:
    return resources.files("kmm").joinpath("data/calibration.yaml").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _calibration_data() -> dict:
    """The parsed calibration file, parsed once per process; never handed out (callers of
    :func:`calibration` get their own copy)."""
    return yaml.safe_load(_calibration_text())


def calibration() -> dict:
    """The calibration file (``kmm/data/calibration.yaml``) as nested dicts; every leaf
    entry has a ``value`` and a ``source`` or an ``assumed`` range."""
    return copy.deepcopy(_calibration_data())


def calibration_entries() -> list[tuple[str, dict]]:
    """Every entry of the calibration file as (dotted path, entry)."""
    out = []

    def walk(prefix, node):
        if isinstance(node, dict) and "value" in node:
            out.append((prefix, node))
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
    walk("", calibration())
    return out


def _value(path: str):
    node = _calibration_data()
    for part in path.split("."):
        node = node[part]
    return copy.deepcopy(node["value"])


# ---- loaded latency ---------------------------------------------------------------------
@dataclass(frozen=True)
class LoadCurve:
    """Queueing delay as a share of idle latency: ``a * k*rho / (1 - k*rho)`` at
    utilisation ``rho`` of the measured peak (``0 <= k < 1``)."""

    a: float
    k: float

    def __post_init__(self):
        check_float("a", self.a, lo=0.0)
        check_float("k", self.k, lo=0.0, hi=0.999)

    def delay_share(self, rho):
        """Delay over idle latency at utilisation ``rho`` (clipped to [0, 1])."""
        x = self.k * np.clip(np.asarray(rho, dtype=np.float64), 0.0, 1.0)
        return self.a * x / (1.0 - x)

    @classmethod
    def fit(cls, bandwidth, latency_ns) -> "LoadCurve":
        """Least-squares fit of ``L = L0 + s*x/(1-x)``, ``x = B/B_sat``, to measured
        (bandwidth, latency) points: ``B_sat`` over a log grid above the largest measured
        bandwidth, refined; ``L0, s >= 0`` by linear least squares for each."""
        b = np.asarray(bandwidth, dtype=np.float64)
        lat = np.asarray(latency_ns, dtype=np.float64)
        if b.shape != lat.shape or b.size < 3 or (b <= 0).any():
            raise ConfigError("needs at least 3 (bandwidth > 0, latency) points", "bandwidth")
        bmax = float(b.max())
        best = _fit_grid(b, lat, np.geomspace(bmax * 1.001, bmax * 1000.0, 2000))
        for _ in range(3):
            lo, hi = best[1] / 1.01, best[1] * 1.01
            best = min(best, _fit_grid(b, lat, np.linspace(max(lo, bmax * 1.0001), hi, 400)))
        _err, bsat, l0, s = best
        return cls(a=s / l0, k=bmax / bsat)


def _fit_grid(b, lat, grid):
    best = None
    for bsat in grid:
        x = b / bsat
        basis = np.stack([np.ones_like(x), x / (1.0 - x)], axis=1)
        coef, *_ = np.linalg.lstsq(basis, lat, rcond=None)
        if coef[1] < 0.0 or coef[0] <= 0.0:
            coef = np.array([lat.mean(), 0.0])
        err = float(((basis @ coef - lat) ** 2).sum())
        cand = (err, float(bsat), float(coef[0]), float(coef[1]))
        if best is None or cand < best:
            best = cand
    return best


@lru_cache(maxsize=1)
def published_curve() -> LoadCurve:
    """The curve fitted to the calibration file's published MLC table (fitted once per
    process: the fit scans 3,200 saturation points)."""
    rows = np.asarray(_value("loaded_latency.mlc_curve"), dtype=np.float64)
    return LoadCurve.fit(rows[:, 2] / 1000.0, rows[:, 1])


@dataclass(frozen=True)
class MemorySystem:
    """Idle latencies, peak bandwidths and the load curves of a machine's memory nodes
    and inter-node links. Bandwidths in GB/s (bytes per ns)."""

    idle_ns: np.ndarray
    peak_gbps: np.ndarray
    link_gbps: np.ndarray
    curve: LoadCurve
    link_curve: LoadCurve
    background: float = 0.0

    def __post_init__(self):
        idle = np.asarray(self.idle_ns, dtype=np.float64)
        n = idle.shape[0] if idle.ndim == 2 else 0
        if idle.ndim != 2 or idle.shape != (n, n) or n < 1 or not np.isfinite(idle).all() \
                or (idle <= 0).any():
            raise ConfigError("needs a square matrix of positive latencies", "idle_ns")
        peak = np.asarray(self.peak_gbps, dtype=np.float64)
        link = np.asarray(self.link_gbps, dtype=np.float64)
        if peak.shape != (n,) or (peak <= 0).any():
            raise ConfigError(f"needs {n} positive bandwidths", "peak_gbps")
        if link.shape != (n, n) or (link <= 0).any():
            raise ConfigError(f"needs a {n}x{n} matrix of positive bandwidths", "link_gbps")
        check_float("background", self.background, lo=0.0, hi=0.99)
        # latency() reads the idle matrix's diagonal and premiums worked out here, at every
        # step of a solve: the matrix is kept as a read-only copy, so that an edit of the
        # caller's array cannot make them disagree
        idle = idle.copy()
        idle.flags.writeable = False
        object.__setattr__(self, "idle_ns", idle)
        object.__setattr__(self, "peak_gbps", peak)
        object.__setattr__(self, "link_gbps", link)
        local = np.diag(idle)
        object.__setattr__(self, "_local", local)
        object.__setattr__(self, "_premium", np.maximum(idle - local[None, :], 0.0))

    @property
    def nodes(self) -> int:
        return self.idle_ns.shape[0]

    def latency(self, node_rho, link_rho) -> np.ndarray:
        """Loaded latency ``[cpu node, memory node]`` at utilisations ``node_rho[j]`` and
        ``link_rho[i, j]`` (each including the background)."""
        mem = self._local * self.curve.delay_share(node_rho)
        link = self._premium * self.link_curve.delay_share(link_rho)
        np.fill_diagonal(link, 0.0)
        return self.idle_ns + mem[None, :] + link


def memory_system(idle_ns, peak_gbps=None, link_fraction=None, background=None,
                  shape_scale=None, link_shape_scale=None,
                  curve: LoadCurve | None = None) -> MemorySystem:
    """A :class:`MemorySystem` from an idle latency matrix, every other value from the
    calibration file unless given: each node's peak (Graviton2's measured all-reads peak),
    each link's peak (``links.peak_fraction`` of a node's), the background fraction and the
    shape scales (assumed, swept)."""
    idle = np.asarray(idle_ns, dtype=np.float64)
    n = idle.shape[0] if idle.ndim == 2 else 1
    peak = np.full(n, _value("graviton2.peak_gbps")) if peak_gbps is None \
        else np.broadcast_to(np.asarray(peak_gbps, dtype=np.float64), (n,)).copy()
    frac = _value("links.peak_fraction") if link_fraction is None else link_fraction
    check_float("link_fraction", frac, lo=1e-6)
    link = np.minimum(peak[:, None], peak[None, :]) * frac
    base = published_curve() if curve is None else curve
    s = _value("loaded_latency.shape_scale") if shape_scale is None else shape_scale
    ls = _value("loaded_latency.link_shape_scale") if link_shape_scale is None \
        else link_shape_scale
    check_float("shape_scale", s, lo=0.0)
    check_float("link_shape_scale", ls, lo=0.0)
    bg = _value("background.fraction") if background is None else background
    return MemorySystem(idle_ns=idle, peak_gbps=peak, link_gbps=link,
                        curve=LoadCurve(a=base.a * s, k=base.k),
                        link_curve=LoadCurve(a=base.a * ls, k=base.k), background=bg)


# ---- the core -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CoreModel:
    """One core: base CPI, hit latencies, the outstanding-miss limit and reorder window
    that bound overlap, and the dependent fraction of each source's misses."""

    ghz: float = 2.5
    cpi_base: float = 1.0
    l2_cycles: float = 11.0
    llc_ns: float = 30.0
    l2_tlb_cycles: float = 5.0
    outstanding: int = 22
    window: int = 128
    dep_ifetch: float = 0.8
    dep_data: float = 0.5
    dep_walk: float = 1.0

    def __post_init__(self):
        check_float("ghz", self.ghz, lo=1e-3)
        for f in ("cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles"):
            check_float(f, getattr(self, f), lo=0.0)
        check_int("outstanding", self.outstanding, lo=1)
        check_int("window", self.window, lo=1)
        for f in ("dep_ifetch", "dep_data", "dep_walk"):
            check_float(f, getattr(self, f), lo=0.0, hi=1.0)

    def dependent(self) -> np.ndarray:
        return np.array([self.dep_ifetch, self.dep_data, self.dep_walk])


def neoverse_core(**over) -> CoreModel:
    """A Neoverse N1-class core: outstanding-miss limit, window and dependent fractions
    from the calibration file (``over`` replaces any field)."""
    kw = dict(outstanding=int(_value("core.neoverse_outstanding")),
              window=int(_value("core.neoverse_window")),
              dep_ifetch=float(_value("core.dependent_ifetch")),
              dep_data=float(_value("core.dependent_data")),
              dep_walk=float(_value("core.dependent_walk")))
    kw.update(over)
    return CoreModel(**kw)


def ampereone_core(**over) -> CoreModel:
    """An AmpereOne-class core (its limit and window are assumed: not published)."""
    kw = dict(outstanding=int(_value("core.ampereone_outstanding")),
              window=int(_value("core.ampereone_window")))
    kw.update(over)
    return neoverse_core(**kw)


# ---- counts and the solve -------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    """Counted events per CPU node ``k`` (pooled over ``cpus[k]`` simulated CPUs)."""

    instructions: np.ndarray   # [n]
    served: np.ndarray         # [n, source, level]: lines read, by source and level served
    mem: np.ndarray            # [n, source, memory node]: memory reads (sum = served MEMORY)
    l2_tlb_hits: np.ndarray    # [n]
    cpus: np.ndarray           # [n]
    extra_lines: np.ndarray | None = None  # [n, n]: lines moved into i from j outside misses

    def __post_init__(self):
        ins = np.asarray(self.instructions, dtype=np.float64)
        n = ins.shape[0] if ins.ndim == 1 else 0
        if n < 1 or (ins < 0).any():
            raise ConfigError("needs one non-negative count per node", "instructions")
        served = np.asarray(self.served, dtype=np.float64)
        mem = np.asarray(self.mem, dtype=np.float64)
        if served.shape != (n, N_SOURCES, N_LEVELS) or (served < 0).any():
            raise ConfigError(f"needs non-negative counts of shape {(n, 3, 4)}", "served")
        if mem.shape != (n, N_SOURCES, n) or (mem < 0).any():
            raise ConfigError(f"needs non-negative counts of shape {(n, 3, n)}", "mem")
        if not np.allclose(mem.sum(axis=2), served[:, :, _MEM]):
            raise ConfigError("memory reads by node do not add up to the lines served by "
                              "memory", "mem")
        hits = np.asarray(self.l2_tlb_hits, dtype=np.float64)
        cpus = np.asarray(self.cpus, dtype=np.float64)
        if hits.shape != (n,) or (hits < 0).any():
            raise ConfigError(f"needs {n} non-negative counts", "l2_tlb_hits")
        if cpus.shape != (n,) or (cpus < 1).any():
            raise ConfigError(f"needs {n} counts of at least 1", "cpus")
        extra = np.zeros((n, n)) if self.extra_lines is None \
            else np.asarray(self.extra_lines, dtype=np.float64)
        if extra.shape != (n, n) or (extra < 0).any():
            raise ConfigError(f"needs a {n}x{n} matrix of non-negative counts", "extra_lines")
        for name, v in (("instructions", ins), ("served", served), ("mem", mem),
                        ("l2_tlb_hits", hits), ("cpus", cpus), ("extra_lines", extra)):
            object.__setattr__(self, name, v)

    @property
    def nodes(self) -> int:
        return self.instructions.shape[0]


class TimeResult(NamedTuple):
    wall_ns: float            # the run's time: its slowest node's time per CPU
    node_ns: np.ndarray       # [n] work of each node's simulated CPUs (sum over CPUs)
    latency_ns: np.ndarray    # [n, n] loaded latency at the fixed point
    node_util: np.ndarray     # [n] memory utilisation (with background)
    link_util: np.ndarray     # [n, n] link utilisation (with background; diagonal 0)
    mlp: np.ndarray           # [n] effective overlap of independent misses
    breakdown: dict           # machine totals (ns, summed over nodes' work)
    bound: str                # "latency" or "bandwidth"
    iterations: int


def mlp_eff(c: Counts, core: CoreModel) -> np.ndarray:
    """Per node: ``min(outstanding, max(1, m * window))``, ``m`` the independent misses
    beyond L1 per instruction."""
    beyond = c.served[:, :, 1:].sum(axis=2)                       # [n, source]
    indep = (beyond * (1.0 - core.dependent())[None, :]).sum(axis=1)
    m = np.divide(indep, c.instructions, out=np.zeros_like(indep), where=c.instructions > 0)
    return np.minimum(float(core.outstanding), np.maximum(1.0, m * core.window))


def _fixed_work(c: Counts, core: CoreModel, mlp: np.ndarray):
    """What of :func:`_work` does not depend on the latency matrix: each source's stall share
    ``[n, source]``, cache hit stalls ``[n, source, level]``, base and TLB-hit ns ``[n]``, and
    their sum ``[n]``."""
    d = core.dependent()
    share = d[None, :] + (1.0 - d[None, :]) / mlp[:, None]          # [n, source]
    hit = np.array([core.l2_cycles / core.ghz, core.llc_ns])
    cache = c.served[:, :, _L2:_MEM] * hit[None, None, :] * share[:, :, None]  # [n, s, 2]
    base = c.instructions * core.cpi_base / core.ghz
    tlb = c.l2_tlb_hits * core.l2_tlb_cycles / core.ghz
    return share, cache, base, tlb, base + tlb + cache.sum(axis=(1, 2))


def _memory_stalls(c: Counts, share: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Memory stall ns ``[n, source, memory node]`` at latency matrix ``lat``."""
    return c.mem * lat[:, None, :] * share[:, :, None]


def _work(c: Counts, core: CoreModel, lat: np.ndarray, mlp: np.ndarray):
    """Per node work (ns) and its parts at latency matrix ``lat``."""
    n = c.nodes
    share, cache, base, tlb, fixed = _fixed_work(c, core, mlp)
    memst = _memory_stalls(c, share, lat)
    work = fixed + memst.sum(axis=(1, 2))
    local = np.eye(n, dtype=bool)
    parts = {"base_ns": float(base.sum()), "tlb_hits_ns": float(tlb.sum())}
    for s, name in enumerate(SOURCE_NAMES):
        parts[f"{name}_l2_ns"] = float(cache[:, s, 0].sum())
        parts[f"{name}_llc_ns"] = float(cache[:, s, 1].sum())
        parts[f"{name}_memory_ns"] = float(memst[:, s, :].sum())
    parts["memory_local_ns"] = float(memst.sum(axis=1)[local].sum())
    parts["memory_remote_ns"] = float(memst.sum(axis=1)[~local].sum())
    return work, parts


def traffic_bytes(c: Counts) -> tuple[np.ndarray, np.ndarray]:
    """Simulated bytes on each memory node ``[j]`` and link ``[i, j]`` (reads of node
    ``i`` from node ``j``; diagonal 0) during the run."""
    lines = c.mem.sum(axis=1) + c.extra_lines                        # [i, j]
    node = lines.sum(axis=0) * LINE_BYTES
    link = lines * LINE_BYTES
    np.fill_diagonal(link, 0.0)
    return node, link


def solve(c: Counts, ms: MemorySystem, core: CoreModel, rtol: float = 1e-12,
          max_iter: int = 200) -> TimeResult:
    """The run's time at the fixed point of latency and load (see the module doc)."""
    n = c.nodes
    if ms.nodes != n:
        raise ConfigError(f"memory system has {ms.nodes} nodes, counts {n}", "ms")
    mlp = mlp_eff(c, core)
    vnode, vlink = traffic_bytes(c)
    bg = ms.background
    offdiag = ~np.eye(n, dtype=bool)

    def util(t):
        if np.isinf(t):
            rn, rl = np.full(n, bg), np.full((n, n), bg)
        else:
            rn = vnode / t / ms.peak_gbps + bg
            rl = vlink / t / ms.link_gbps + bg
        rl = np.where(offdiag, rl, 0.0)
        return rn, rl

    share, _, _, _, fixed = _fixed_work(c, core, mlp)

    def g(t):  # the bisection's function: only the work, its latency-free part computed once
        rn, rl = util(t)
        w = fixed + _memory_stalls(c, share, ms.latency(rn, rl)).sum(axis=(1, 2))
        return float((w / c.cpus).max())

    cap = (1.0 - bg)
    t_bw = max(float((vnode / (ms.peak_gbps * cap)).max()),
               float((vlink[offdiag] / (ms.link_gbps[offdiag] * cap)).max()) if n > 1 else 0.0)
    it = 0
    if t_bw <= 0.0:
        t = g(np.inf)
        bound = "latency"
    else:
        g_lo = g(t_bw)
        if g_lo <= t_bw:
            t, bound = t_bw, "bandwidth"
        else:
            lo, hi, bound = t_bw, g_lo, "latency"
            while it < max_iter and hi - lo > rtol * hi:
                mid = 0.5 * (lo + hi)
                if mid - g(mid) < 0.0:
                    lo = mid
                else:
                    hi = mid
                it += 1
            t = hi
    rn, rl = util(t)
    lat = ms.latency(rn, rl)
    work, parts = _work(c, core, lat, mlp)
    parts["bandwidth_wait_ns"] = float((t * c.cpus - work).clip(min=0.0).sum()) \
        if bound == "bandwidth" else 0.0
    return TimeResult(wall_ns=float(t), node_ns=work, latency_ns=lat, node_util=rn,
                      link_util=rl, mlp=mlp, breakdown=parts, bound=bound, iterations=it)


# ---- invalidation felt by every CPU ----------------------------------------------------------
class Scope(IntEnum):
    """Which entries a flush removes from every targeted CPU."""

    RANGE = 0   # only the range's translations
    ALL = 1     # every translation of the context (flush_tlb_all, TLBI VMALLE1IS)


class FlushKind(IntEnum):
    ARM64_KERNEL_RANGE = 0   # flush_tlb_kernel_range on arm64
    X86_KERNEL_RANGE = 1     # flush_tlb_kernel_range on x86
    PKVM_HOST_STAGE2 = 2     # a host stage-2 entry replaced under pKVM (donate, share)


def invalidation_scope(kind: FlushKind | int, pages: int, max_dvm_ops: int | None = None,
                       ceiling: int | None = None) -> Scope:
    """What a flush of ``pages`` pages removes: arm64 ``flush_tlb_kernel_range`` flushes
    all at ``pages >= MAX_DVM_OPS``; x86 at ``pages > tlb_single_page_flush_ceiling``; a
    pKVM host stage-2 change always empties the host's stage-1 entries."""
    check_int("pages", pages, lo=0)
    kind = FlushKind(int(kind))
    if kind == FlushKind.ARM64_KERNEL_RANGE:
        limit = int(_value("invalidation.arm64_max_dvm_ops")) if max_dvm_ops is None \
            else check_int("max_dvm_ops", max_dvm_ops, lo=1)
        return Scope.ALL if pages >= limit else Scope.RANGE
    if kind == FlushKind.X86_KERNEL_RANGE:
        limit = int(_value("invalidation.x86_single_page_flush_ceiling")) if ceiling is None \
            else check_int("ceiling", ceiling, lo=0)
        return Scope.ALL if pages > limit else Scope.RANGE
    return Scope.ALL


def lost_translations(in_use, in_range, scope: Scope | int, tlb_entries: int) -> np.ndarray:
    """Per CPU: translations a flush removes that the CPU will walk again. A CPU holds at
    most ``tlb_entries`` of its ``in_use`` translations (a range's share in proportion);
    ``Scope.ALL`` removes all it holds, ``Scope.RANGE`` those of ``in_range``."""
    use = np.asarray(in_use, dtype=np.float64)
    rng = np.asarray(in_range, dtype=np.float64)
    check_int("tlb_entries", tlb_entries, lo=1)
    if use.ndim != 1 or rng.shape != use.shape or (use < 0).any() or (rng < 0).any() \
            or (rng > use).any():
        raise ConfigError("needs per-CPU counts with 0 <= in_range <= in_use", "in_range")
    held = np.minimum(use, float(tlb_entries))
    if int(scope) == Scope.ALL:
        return held
    frac = np.divide(held, use, out=np.zeros_like(use), where=use > 0)
    return rng * frac


@njit
def _lost_sets(offsets, pages, start, end, full, tlb_entries, out):
    for c in range(offsets.size - 1):
        a, b = offsets[c], offsets[c + 1]
        n = b - a
        if n == 0:
            out[c] = 0.0
            continue
        held = n if n < tlb_entries else tlb_entries
        if full:
            out[c] = float(held)
            continue
        r = 0
        for i in range(a, b):
            p = pages[i]
            if p >= start and p < end:
                r += 1
        out[c] = r * (held / n)


def lost_translations_sets(offsets, pages, start: int, end: int, scope: Scope | int,
                           tlb_entries: int) -> np.ndarray:
    """:func:`lost_translations` from per-CPU sets of distinct translations in use: CPU
    ``c``'s are ``pages[offsets[c]:offsets[c + 1]]`` (page numbers, distinct within a
    CPU); the flushed range is ``[start, end)``."""
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    pg = np.ascontiguousarray(pages, dtype=np.int64)
    check_int("tlb_entries", tlb_entries, lo=1)
    if off.ndim != 1 or off.size < 1 or off[0] != 0 or off[-1] != pg.size \
            or (np.diff(off) < 0).any():
        raise ConfigError("offsets must rise from 0 to len(pages)", "offsets")
    out = np.zeros(off.size - 1)
    _lost_sets(off, pg, int(start), int(end), int(scope) == Scope.ALL, int(tlb_entries), out)
    return out


class InvalidationTime(NamedTuple):
    per_cpu_ns: np.ndarray
    total_ns: float
    initiator_ns: float
    others_ns: float
    rewalks: float


def walk_ns(refs_by_level, level_ns) -> np.ndarray:
    """Time of one walk whose descriptor reads are dependent: the sum over levels of
    references served there times that level's latency (per CPU if 2-D)."""
    refs = np.asarray(refs_by_level, dtype=np.float64)
    lat = np.asarray(level_ns, dtype=np.float64)
    if (refs < 0).any() or (lat < 0).any():
        raise ConfigError("needs non-negative references and latencies", "refs_by_level")
    return (refs * lat).sum(axis=-1)


def rewalk_time(lost, walk_cost_ns, initiator: int) -> InvalidationTime:
    """Each CPU's re-walks of what it lost, charged to that CPU (``walk_cost_ns`` per
    walk, one value or one per CPU); the initiator and the others reported apart."""
    lost = np.asarray(lost, dtype=np.float64)
    cost = np.broadcast_to(np.asarray(walk_cost_ns, dtype=np.float64), lost.shape)
    check_int("initiator", initiator, lo=0, hi=lost.size - 1)
    if (cost < 0).any() or (lost < 0).any():
        raise ConfigError("needs non-negative losses and walk costs", "walk_cost_ns")
    per = lost * cost
    total = float(per.sum())
    return InvalidationTime(per_cpu_ns=per, total_ns=total, initiator_ns=float(per[initiator]),
                            others_ns=total - float(per[initiator]), rewalks=float(lost.sum()))


@dataclass(frozen=True)
class Rewalk:
    """How the re-walks every CPU makes after a broadcast invalidation are priced: the one
    model of asi's shootdowns, permvmalloc's flushes of everything and pKVM's host stage-2
    donations.

    A flush of everything (``Scope.ALL``: ``flush_tlb_all``, ``TLBI VMALLE1IS``) removes
    from each CPU what it holds of the ``working_set`` translations of its own work, at
    most ``tlb_entries`` (:func:`lost_translations`); a ranged flush (``Scope.RANGE``)
    removes none of them. Each CPU walks every lost translation again on its next use,
    charged to that CPU (:func:`rewalk_time`). One walk reads its ``refs`` descriptors one
    after another (:func:`walk_ns`: the levels of a stage-1 walk, the references of a 2D
    walk under stage 2): ``memory_refs`` of them (at most ``refs``) from memory, the rest
    from the LLC at ``cached_ns`` (:class:`CoreModel`'s ``llc_ns`` unless given).

    The memory read is priced at ``memory_ns`` when given (a loaded latency the caller
    already has, e.g. from :func:`solve`); else at the loaded latency of a node at
    utilisation ``background`` (the calibration's ``background.fraction`` unless given)
    from its idle latency ``mem_idle_ns``, through the calibrated load curve of
    :func:`memory_system` (the re-walks' own traffic, a few lines per flush, is left out
    of the load)."""

    working_set: int
    refs: int
    memory_refs: float = 1.0
    cached_ns: float = CoreModel.llc_ns
    mem_idle_ns: float | None = None
    background: float | None = None
    memory_ns: float | None = None

    def __post_init__(self):
        check_int("rewalk_working_set", self.working_set, lo=0)
        check_int("rewalk_refs", self.refs, lo=1)
        check_float("rewalk_memory_refs", self.memory_refs, lo=0.0)
        check_float("cached_ns", self.cached_ns, lo=0.0)
        if (self.memory_ns is None) == (self.mem_idle_ns is None):
            raise ConfigError("give the idle latency (priced at the background load) or the "
                              "loaded latency, not both nor neither", "memory_ns")
        if self.memory_ns is not None:
            check_float("memory_ns", self.memory_ns, lo=0.0)
            if self.background is not None:
                raise ConfigError("a given loaded latency takes no background", "background")
        else:
            check_float("mem_idle_ns", self.mem_idle_ns, lo=1.0)
            bg = _value("background.fraction") if self.background is None else self.background
            object.__setattr__(self, "background", check_float("background", bg, lo=0.0,
                                                               hi=0.99))

    def loaded_ns(self) -> float:
        """The latency of one descriptor read from memory: ``memory_ns``, or the calibrated
        curve's loaded latency at ``background`` from ``mem_idle_ns``."""
        if self.memory_ns is not None:
            return float(self.memory_ns)
        ms = memory_system(np.array([[self.mem_idle_ns]]), background=self.background)
        return float(ms.latency(np.array([self.background]), np.zeros((1, 1)))[0, 0])

    def walk_ns(self) -> float:
        """One re-walk: ``refs - m`` reads at ``cached_ns`` and ``m = min(memory_refs,
        refs)`` at :meth:`loaded_ns`, one after another."""
        m = min(float(self.memory_refs), float(self.refs))
        return float(walk_ns([self.refs - m, m], [self.cached_ns, self.loaded_ns()]))

    def after(self, scope: Scope | int, cpus: int, tlb_entries: int,
              initiator: int = 0) -> InvalidationTime:
        """Every CPU's re-walks after one flush of ``scope`` on ``cpus`` CPUs, each holding
        at most ``tlb_entries`` translations: :func:`lost_translations` of the working set
        (none in the flushed range), each priced at :meth:`walk_ns`."""
        n = check_int("cpus", cpus, lo=1)
        lost = lost_translations(np.full(n, float(self.working_set)), np.zeros(n), scope,
                                 tlb_entries)
        return rewalk_time(lost, self.walk_ns(), initiator)


__all__ = ["LINE_BYTES", "N_SOURCES", "N_LEVELS", "SOURCE_NAMES", "calibration",
           "calibration_entries", "LoadCurve", "published_curve", "MemorySystem",
           "memory_system", "CoreModel", "neoverse_core", "ampereone_core", "Counts",
           "TimeResult", "mlp_eff", "traffic_bytes", "solve", "Scope", "FlushKind",
           "invalidation_scope", "lost_translations", "lost_translations_sets",
           "InvalidationTime", "walk_ns", "rewalk_time", "Rewalk"]


# ---- overlap of one touch's streamed lines ---------------------------------------------------
def stream_overlap(lines_per_touch, core: CoreModel):
    """Overlap of the further (streamed) lines of one touch: ``min(outstanding, max(1,
    lines_per_touch))``.

    The lines after a touch's first line (a 4 KiB copy's other 63) are issued by one loop
    (or followed by a stream prefetcher) within one reorder window, and no line's address
    depends on another's, so they are independent misses: all of them are in flight at
    once, up to the core's outstanding-miss limit (``core.outstanding``; the basis of that
    limit is ``core.read_issuing`` in ``kmm/data/calibration.yaml``: Arm Cortex-A76 Core
    Technical Reference Manual, 100798_0300_00_en, Table A7-1, read issuing capability of
    the private L2, 22/34/46 outstanding reads; ``core.neoverse_outstanding`` and
    ``core.ampereone_outstanding`` are the limits taken from it). This is the interval
    model's ``MLP`` (:func:`mlp_eff`) with the touch as the window: a touch of fewer lines
    than the limit overlaps only its own lines; fewer than one line overlaps nothing (1).

    ``lines_per_touch``: non-negative, one value or an array (per operation); returns a
    float or a float64 array of the same shape.
    """
    if not isinstance(core, CoreModel):
        raise ConfigError(f"needs a CoreModel, got {type(core).__name__}", "core")
    x = np.asarray(lines_per_touch, dtype=np.float64)
    if not np.isfinite(x).all() or (x < 0).any():
        raise ConfigError("needs finite, non-negative lines per touch", "lines_per_touch")
    out = np.minimum(float(core.outstanding), np.maximum(1.0, x))
    return float(out) if out.ndim == 0 else out


__all__ += ["stream_overlap"]
