"""asi: the study: parameters, evidence per claim, frames.

Part of :mod:`kmm.mech.asi`."""
from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from typing import NamedTuple

import numpy as np

from ... import engine as eng
from ...config import check_choice, check_float, check_int
from ...errors import ConfigError
from ...sampling import latin_hypercube
from ...suite.study import (cached, Evidence, one_at_a_time, per_claim, replicate_plan,
    replicates_from, Study)
from ...counters import Counters
from .model import (Arch, AsiConfig, AsiCosts, AsiRun, BurstSource, Conversion, FlushRank,
    kernel_costs, Physmap, Policy, Rewalk, simulate, Zeroing)
from .workload import make_workload, MIXES, Workload

# ---- notebook functions -------------------------------------------------------------------

#: The notebook's parameters with their small defaults (notebooks/asi.ipynb repeats them; the
#: published scenario is params/asi.yaml).
DEFAULTS: dict = {"seed": 1, "allocs": 10000, "pool_mib": 32, "occupancy": 0.6, "pressure": 0.3,
    "cpus": 8, "arch": "x86", "granule": "4K", "method": "x86_ipi", "physmap": "on_demand",
    "unmovable_sensitive": 0.3, "init_on_alloc": True, "nofragment": True, "pcp": True,
    "a6_phases": 10,
    "a6_phase_skew": 4.0, "a6_burst": 0.3,
    "worker_interval_ns": 1000000, "worker_batch_pages": 512, "op_interval_ns": 1000,
    "touches_per_op": 1, "tlb_entries": 512, "tlb_ways": 4, "alloc_base_ns": 150.0,
    "free_base_ns": 100.0, "map_page_ns": 20.0, "unmap_page_ns": 20.0, "zero_page_ns": 400.0,
    "pt_alloc_ns": 700.0, "enqueue_ns": 30.0, "worker_wake_ns": 2000.0, "migrate_page_ns": 2000.0,
    "reclaim_page_ns": 1000.0, "reclaim_batch_pages": 32, "invlpg_ns": 100.0,
    "full_flush_ns": 37.0, "ipi_base_ns": 675.0, "ipi_per_extra_target_ns": 67.5,
    "ipi_handler_ns": 1000.0, "rewalk_working_set": 256, "rewalk_memory_refs": 1.0,
    "mem_idle_ns": 81.96, "background": 0.3, "target_points": 4, "granule_pool_mib": 1024, "granule_allocs": 4000,
    "sweep_points": 2, "sweep_allocs": 3000, "slowpath_pressures": [0.3, 0.6],
    "slowpath_cost_points": 2, "unmapped_movable": True, "mermap_region_pages": 512}

#: The plausible range of every ``assumed`` parameter, in the order sampled (params/asi.yaml
#: declares the same ranges).
ASSUMED: dict = {"occupancy": (0.3, 0.8), "pressure": (0.0, 0.4), "cpus": (4, 64),
    "unmovable_sensitive": (0.1, 0.6), "a6_phase_skew": (2.0, 10.0),
    "a6_burst": (0.1, 0.4),
    "worker_interval_ns": (100000, 10000000), "worker_batch_pages": (64, 4096),
    "op_interval_ns": (250, 4000), "touches_per_op": (0, 4), "tlb_entries": (64, 1536),
    "alloc_base_ns": (80.0, 400.0), "free_base_ns": (50.0, 300.0), "map_page_ns": (5.0, 100.0),
    "unmap_page_ns": (5.0, 100.0), "zero_page_ns": (150.0, 1000.0), "pt_alloc_ns": (300.0, 2000.0),
    "enqueue_ns": (10.0, 100.0), "worker_wake_ns": (1000.0, 10000.0),
    "migrate_page_ns": (1000.0, 10000.0), "reclaim_page_ns": (300.0, 5000.0),
    "ipi_base_ns": (500.0, 5000.0), "ipi_per_extra_target_ns": (50.0, 2000.0),
    "ipi_handler_ns": (300.0, 3000.0), "rewalk_working_set": (64, 1536),
    "rewalk_memory_refs": (0.5, 2.0), "background": (0.0, 0.8),
    "mermap_region_pages": (64, 512)}

_ARCHES = {"x86": Arch.X86, "arm64": Arch.ARM64}
_METHODS = {"x86_ipi": eng.Method.X86_IPI, "x86_invlpgb": eng.Method.X86_INVLPGB,
            "arm64_tlbi": eng.Method.ARM64_TLBI}
_PHYSMAPS = {"on_demand": Physmap.ON_DEMAND, "synced": Physmap.SYNCED,
             "synced_blocks": Physmap.SYNCED_BLOCKS}
POLICY_NAMES = {Policy.NONE: "0 no ASI", Policy.RFC: "1 RFC", Policy.TRACKED: "2 tracked",
                Policy.TRACKED_TARGET: "3 tracked+target", Policy.SYNC_FLUSH: "4 sync flush",
                Policy.UNMAPPED: "5 unmapped"}
RANK_NAMES = {FlushRank.FAST_PATH: "fast path", FlushRank.FIRST: "first",
              FlushRank.AFTER_COMPACTION: "after compaction",
              FlushRank.AFTER_RECLAIM: "after reclaim"}
ZEROING_NAMES = {Zeroing.EAGER: "eager", Zeroing.LAZY: "lazy"}
CONVERSION_NAMES = {Conversion.POSTED: "posted", Conversion.FALLBACK: "6.1 fallbacks"}


class Variant(NamedTuple):
    """A policy with its options (the options apply to policies 2 and 3 only)."""

    policy: Policy
    flush_rank: FlushRank = FlushRank.FAST_PATH
    zeroing: Zeroing = Zeroing.LAZY
    conversion: Conversion = Conversion.POSTED


#: The policy comparison: every policy with the default options (policies 2 and 3: the
#: posted RFC's conversion, zeroing per page when mapped), and policy 2 with v6.1's
#: fallbacks across sensitivity, zeroing eagerly (the design the topic sketched) or per page
#: (label -> variant)
VARIANTS: dict[str, Variant] = {
    "0 no ASI": Variant(Policy.NONE),
    "1 RFC": Variant(Policy.RFC),
    "2 tracked": Variant(Policy.TRACKED),
    "2 tracked, 6.1 fallbacks": Variant(Policy.TRACKED, zeroing=Zeroing.EAGER,
                                        conversion=Conversion.FALLBACK),
    "2 tracked, 6.1 fallbacks, lazy zeroing": Variant(Policy.TRACKED,
                                                      conversion=Conversion.FALLBACK),
    "3 tracked+target": Variant(Policy.TRACKED_TARGET),
    "4 sync flush": Variant(Policy.SYNC_FLUSH),
    "5 unmapped": Variant(Policy.UNMAPPED),
}
_RFC, _TRACKED, _T61 = "1 RFC", "2 tracked", "2 tracked, 6.1 fallbacks"
#: the variants the claims' evidence and explanations read
EVIDENCE_VARIANTS = ("0 no ASI", _RFC, _TRACKED, _T61)
#: assumed costs that only the slow path of policies 2 and 3 reads: no claim's evidence
#: depends on them (the claims' joint sweep leaves them out; slowpath_cost_sweep sweeps them)
SLOWPATH_COSTS = ("migrate_page_ns", "reclaim_page_ns")
#: assumed parameters that only policy 5 reads: no claim's evidence depends on them (the
#: claims' joint sweep leaves them out; unmapped_compare sweeps them)
UNMAPPED_ONLY = ("mermap_region_pages",)
_ASI_COSTS = tuple(f.name for f in fields(AsiCosts) if f.name != "sources")
_INV_COSTS = ("invlpg_ns", "full_flush_ns", "ipi_base_ns", "ipi_per_extra_target_ns",
              "ipi_handler_ns")


def check_params(params: dict) -> dict:
    """Defaults completed with ``params``; unknown keys refused."""
    unknown = sorted(set(params) - set(DEFAULTS) - {"scenario"})
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r}", "asi")
    p = {**DEFAULTS, **{k: v for k, v in params.items() if k != "scenario"}}
    check_choice("method", p["method"], _METHODS)
    check_choice("arch", p["arch"], _ARCHES)
    check_float("unmovable_sensitive", p["unmovable_sensitive"], lo=0.0, hi=1.0)
    for name in ("init_on_alloc", "nofragment", "pcp", "unmapped_movable"):
        if not isinstance(p[name], bool):
            raise ConfigError("must be true or false", name)
    check_int("mermap_region_pages", p["mermap_region_pages"], lo=2, hi=1 << 20)
    check_int("a6_phases", p["a6_phases"], lo=0)
    check_float("a6_phase_skew", p["a6_phase_skew"], lo=1.0, hi=1000.0)
    check_float("a6_burst", p["a6_burst"], lo=0.0, hi=1.0)
    check_choice("physmap", p["physmap"], _PHYSMAPS)
    check_int("allocs", p["allocs"], lo=100)
    check_int("pool_mib", p["pool_mib"], lo=2)
    check_int("target_points", p["target_points"], lo=2)
    check_int("sweep_points", p["sweep_points"], lo=1)
    check_int("reclaim_batch_pages", p["reclaim_batch_pages"], lo=1)
    check_int("slowpath_cost_points", p["slowpath_cost_points"], lo=2)
    pr = p["slowpath_pressures"]
    if not isinstance(pr, (list, tuple)) or not pr:
        raise ConfigError("must be a non-empty list of pressures", "slowpath_pressures")
    for x in pr:
        check_float("slowpath_pressures", x, lo=0.0, hi=2.0)
    return p


def params_from(namespace: dict) -> dict:
    """The notebook's parameters from ``namespace`` (its globals): :meth:`STUDY.params`."""
    return STUDY.params(namespace)


def config_for(p: dict, policy: Policy, **over) -> AsiConfig:
    """The :class:`AsiConfig` of parameters ``p`` for ``policy`` (``over`` replaces fields)."""
    costs = AsiCosts(**{k: float(p[k]) for k in _ASI_COSTS})
    inv_costs = eng.InvalidationCosts(**{k: float(p[k]) for k in _INV_COSTS})
    kw = dict(policy=policy, physmap=_PHYSMAPS[p["physmap"]], granule=p["granule"],
              arch=_ARCHES[p["arch"]], init_on_alloc=bool(p["init_on_alloc"]),
              nofragment=bool(p["nofragment"]), pcp=bool(p["pcp"]),
              pool_bytes=int(p["pool_mib"]) << 20, cpus=int(p["cpus"]),
              method=_METHODS[p["method"]], costs=costs, inval_costs=inv_costs,
              worker_interval_ns=int(p["worker_interval_ns"]),
              worker_batch_pages=int(p["worker_batch_pages"]),
              op_interval_ns=int(p["op_interval_ns"]), touches_per_op=int(p["touches_per_op"]),
              tlb_entries=int(p["tlb_entries"]), tlb_ways=int(p["tlb_ways"]),
              reclaim_batch_pages=int(p["reclaim_batch_pages"]),
              rewalk=Rewalk(working_set=int(p["rewalk_working_set"]),
                            memory_refs=float(p["rewalk_memory_refs"]),
                            mem_idle_ns=float(p["mem_idle_ns"]),
                            background=float(p["background"])))
    if policy == Policy.UNMAPPED:
        kw.update(unmapped_movable=bool(p["unmapped_movable"]),
                  mermap_region_pages=int(p["mermap_region_pages"]))
    kw.update(over)
    return AsiConfig(**kw)


def _stream_args(p: dict, mix: str, cfg: AsiConfig, allocs: int | None = None,
                 phases: bool = False) -> tuple[tuple, dict]:
    """The arguments of :func:`make_workload` for :func:`workload_for`."""
    g = cfg.geometry
    mixed = mix == "mixed"
    n = int(allocs or p["allocs"])
    nph = int(p["a6_phases"])
    return ((mix, n, int(p["seed"]), cfg.pool_bytes >> g.page_shift, g.page_shift,
             float(p["occupancy"]), float(p["pressure"]), cfg.cpus),
            {"unmovable_sensitive": float(p["unmovable_sensitive"]) if mixed else None,
             "phase_allocs": max(1, n // nph) if phases and nph > 0 else 0,
             "phase_skew": float(p["a6_phase_skew"]) if phases else 1.0,
             "phase_burst": float(p["a6_burst"]) if phases else 0.0})


def workload_for(p: dict, mix: str, cfg: AsiConfig, allocs: int | None = None,
                 phases: bool = False) -> Workload:
    """The stream of mix ``mix`` sized for ``cfg``'s pool; the mixed stream draws unmovable
    allocations sensitive with probability ``unmovable_sensitive``; with ``phases``, it
    alternates ``a6_phases`` nonsensitive- and sensitive-heavy phases (``a6_phase_skew``)."""
    args, kw = _stream_args(p, mix, cfg, allocs, phases)
    return make_workload(*args, **kw)


def variant_config(p: dict, v: Variant, **over) -> AsiConfig:
    """:func:`config_for` of a :class:`Variant`."""
    return config_for(p, v.policy, flush_rank=v.flush_rank, zeroing=v.zeroing,
                      conversion=v.conversion, **over)


def _kernel_config(cfg: AsiConfig) -> AsiConfig:
    """What the kernels of a run read of ``cfg``: ``cfg`` with the fields its policy never
    reads set to their defaults. The re-walk pricing (:class:`Rewalk`) is applied to a run's
    counts in Python (:meth:`AsiRun.rewalks`), never in the kernels; the RFC queue's batch
    and enqueue cost are read by policy 1 only (``_release``, ``run_stream``); the worker
    period and wake-up cost by the two policies with a worker (1: the queue worker; 3: the
    target worker). ``tests/test_asi.py`` checks each of these by running both values."""
    d, k = AsiConfig(), cfg.costs
    over: dict = {"rewalk": d.rewalk}
    if cfg.policy != Policy.RFC:
        over["worker_batch_pages"] = d.worker_batch_pages
        k = replace(k, enqueue_ns=d.costs.enqueue_ns)
    if cfg.policy not in (Policy.RFC, Policy.TRACKED_TARGET):
        over["worker_interval_ns"] = d.worker_interval_ns
        k = replace(k, worker_wake_ns=d.costs.worker_wake_ns)
    return replace(cfg, costs=k, **over)


def _kernel_inputs(cfg: AsiConfig) -> str:
    """:func:`_kernel_config` as a key."""
    return repr(_kernel_config(cfg))


def _prices(cfg: AsiConfig) -> np.ndarray:
    """The cost slots the kernels of a run read, as they read them (whole ns): their cost
    array (:func:`kernel_costs`) and the invalidation's
    (:meth:`kmm.engine.InvalidationCosts.to_array`). Its one slot that is not a price, the
    INVLPGB page limit, is part of :func:`_trajectory`, so two runs that differ in it are
    never priced from each other."""
    return np.concatenate([kernel_costs(cfg), cfg.inval_costs.to_array()])


def _trajectory(cfg: AsiConfig) -> str:
    """:func:`_kernel_config` without its prices, as a key: runs of one workload whose
    trajectories agree. The kernels' clock is the operation's index (``run_stream``: ``t =
    i * op_interval_ns``), never a sum of prices, and no decision reads a price, so two
    runs that differ only in prices take the same allocations, conversions, flushes and
    windows: each price enters every ns count, latency, burst and window total as
    ``price * events``, in whole ns (:func:`_repriced`)."""
    kc = _kernel_config(cfg)
    inv = eng.InvalidationCosts(invlpgb_max_pages=kc.inval_costs.invlpgb_max_pages)
    return repr(replace(kc, costs=AsiCosts(), inval_costs=inv))


class _NotLinear(Exception):
    """A run's counts are not a whole multiple of a price apart (:func:`_repriced`)."""


def _moved(a: np.ndarray, b: np.ndarray, step: int, by: int) -> np.ndarray:
    """``a`` moved ``by`` along the line through ``a`` and ``b``, which are ``step`` apart in
    one price: ``a + (b - a) / step * by``, in whole numbers."""
    d = b - a
    if (d % step).any():
        raise _NotLinear
    return a + d // step * by


def _repriced(a: AsiRun, pa: np.ndarray, b: AsiRun, pb: np.ndarray, cfg: AsiConfig,
              p: np.ndarray) -> AsiRun:
    """The run of ``cfg``, whose prices ``p`` differ from ``a``'s prices ``pa`` in one
    slot only, from runs ``a`` and ``b`` of the same trajectory whose prices differ in
    that slot only: every int64 output moves along the line through ``a``'s and ``b``'s
    (:func:`_trajectory`; the count arrays that no price reaches do not move). Raises
    :class:`_NotLinear` if ``b`` is not ``a`` plus a whole multiple of the slot's step."""
    j = int(np.flatnonzero(pb != pa)[0])
    step, by = int(pb[j] - pa[j]), int(p[j] - pa[j])

    def counters(x: Counters, y: Counters) -> Counters:
        return Counters(x.kind, _moved(x.values, y.values, step, by))

    return AsiRun(config=cfg, counts=counters(a.counts, b.counts),
                  inval=counters(a.inval, b.inval), buddy=counters(a.buddy, b.buddy),
                  tlb=counters(a.tlb, b.tlb),
                  lat_ns=_moved(a.lat_ns, b.lat_ns, step, by),
                  bursts=_moved(a.bursts, b.bursts, step, by),
                  pt_pages_boot=int(_moved(np.array([a.pt_pages_boot]),
                                           np.array([b.pt_pages_boot]), step, by)[0]),
                  deferred_pending=int(_moved(np.array([a.deferred_pending]),
                                              np.array([b.deferred_pending]), step, by)[0]),
                  cpu_win=_moved(a.cpu_win, b.cpu_win, step, by),
                  pcp=counters(a.pcp, b.pcp) if a.pcp is not None else None)


def _digest(wl: Workload) -> str:
    """A digest of a workload's arrays (two streams drawn alike have the same digest)."""
    h = hashlib.blake2b(digest_size=16)
    for a in wl:
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


class Sims:
    """The simulations of one evaluation, shared: a run is looked up by what its kernels read
    (:func:`_kernel_inputs`) and its workload's :func:`_digest`, so that two parts asking for
    the same run (the physmap table's on-demand rows and the policy comparison, the slow-path
    comparison at the published pressure and the policy comparison, a swing of a parameter a
    run does not read and the published point) run it once; streams are drawn once per
    set of :func:`make_workload` arguments (:meth:`stream`). A hit for another
    configuration with the same kernel inputs is returned with that configuration (its
    pricing in Python). ``base``: a finished :class:`Sims` to look up in as well (its runs
    and streams are not added to; its trajectories' priced-from runs are, below).

    A run that differs from one already run only in one price (:func:`_prices`) is priced
    rather than run once another run of its trajectory differs in that price alone
    (:func:`_repriced`): the swings of a cost parameter run its first end and price the
    second. Each trajectory's first run is kept by the :class:`Sims` that ran it, with one
    run per price that moved alone from it (kept there too, so that the swings' throwaway
    :class:`Sims` share them)."""

    def __init__(self, base: "Sims | None" = None):
        self.runs: dict = {}
        self.streams: dict = {}
        self.base = base
        #: (trajectory, digest) -> [prices, run, {slot: (prices, run)}]
        self.trajectories: dict = {}
        self.priced = 0  # runs priced rather than run

    def _get(self, table: str, key):
        hit = getattr(self, table).get(key)
        return hit if hit is not None or self.base is None else self.base._get(table, key)

    def stream(self, p: dict, mix: str, cfg: AsiConfig, allocs: int | None = None,
               phases: bool = False) -> Workload:
        """:func:`workload_for`, drawn once per set of arguments."""
        args, kw = _stream_args(p, mix, cfg, allocs, phases)
        key = repr((args, sorted(kw.items())))
        hit = self._get("streams", key)
        if hit is None:
            wl = make_workload(*args, **kw)
            hit = self.streams[key] = (wl, _digest(wl))
        return hit[0]

    def _digest(self, wl: Workload) -> str:
        for sims in (self, self.base):
            for w, d in (sims.streams.values() if sims is not None else ()):
                if w is wl:
                    return d
        return _digest(wl)

    def _run(self, cfg: AsiConfig, digest: str, wl: Workload) -> AsiRun:
        """Price the run of ``cfg`` from two of its trajectory's, or run it."""
        key, prices = (_trajectory(cfg), digest), _prices(cfg)
        first = self._get("trajectories", key)
        if first is not None:
            pa, a, moved = first
            slots = np.flatnonzero(prices != pa)
            if slots.size == 1 and int(slots[0]) in moved:
                pb, b = moved[int(slots[0])]
                try:
                    run = _repriced(a, pa, b, pb, cfg, prices)
                    self.priced += 1
                    return run
                except _NotLinear:  # never for kmm's kernels (tests/test_asi.py)
                    pass
        run = simulate(cfg, wl)
        if first is None:
            self.trajectories[key] = [prices, run, {}]
        elif slots.size == 1:
            first[2].setdefault(int(slots[0]), (prices, run))
        return run

    def __call__(self, cfg: AsiConfig, wl: Workload) -> AsiRun:
        digest = self._digest(wl)
        key = (_kernel_inputs(cfg), digest)
        run = self._get("runs", key)
        if run is None:
            run = self.runs[key] = self._run(cfg, digest, wl)
        return run if run.config == cfg else replace(run, config=cfg)


def compare_policies(p: dict, allocs: int | None = None, labels=None,
                     sims: Sims | None = None) -> dict:
    """Every variant of :data:`VARIANTS` (or those of ``labels``, per mix a collection or a
    mapping ``{mix: labels}``) on both mixes: ``{(mix, label): AsiRun}``."""
    sims = sims or Sims()
    out = {}
    for mix in MIXES:
        want = labels.get(mix, ()) if isinstance(labels, dict) else labels
        wl = None
        for label, v in VARIANTS.items():
            if want is not None and label not in want:
                continue
            cfg = variant_config(p, v)
            wl = wl if wl is not None else sims.stream(p, mix, cfg, allocs)
            out[(mix, label)] = sims(cfg, wl)
    return out


_SLOW_METRICS = ("allocs", "alloc_failures", "shootdowns_per_million_allocs", "to_sensitive",
                 "slowpath_entries", "slow_flush_allocs", "compactions", "pages_migrated",
                 "pages_reclaimed", "pages_zeroed", "zero_deferred", "zeroed_deferred",
                 "deferred_to_sensitive", "alloc_p50_ns", "alloc_p99_ns", "alloc_p999_ns",
                 "alloc_max_ns", "slowpath_ns", "total_asi_ns", "mixed_pageblocks_mean",
                 "violations")


def slowpath_compare(p: dict, allocs: int | None = None, sims: Sims | None = None):
    """Policy 2 under every flush rank and zeroing, with the RFC design for reference, on the
    mixed stream at each pressure of ``slowpath_pressures`` (the slow path is entered only
    when a sensitivity runs out of free memory). Returns ``(frame, runs)``: one row per
    pressure and variant, and ``{(pressure, label): AsiRun}``."""
    import polars as pl
    sims = sims or Sims()
    rows, runs = [], {}
    variants = {_RFC: Variant(Policy.RFC)}
    for rank in FlushRank:
        for z in Zeroing:
            variants[f"2 tracked, {RANK_NAMES[rank]}, {ZEROING_NAMES[z]}"] = \
                Variant(Policy.TRACKED, rank, z)
        variants[f"2 tracked, {RANK_NAMES[rank]}, 6.1 fallbacks"] = \
            Variant(Policy.TRACKED, rank, Zeroing.EAGER, Conversion.FALLBACK)
    for pressure in p["slowpath_pressures"]:
        q = {**p, "pressure": float(pressure)}
        wl = None
        for label, v in variants.items():
            cfg = variant_config(q, v)
            wl = wl if wl is not None else sims.stream(q, "mixed", cfg, allocs)
            r = sims(cfg, wl)
            runs[(float(pressure), label)] = r
            m = r.metrics()
            rows.append({"pressure": float(pressure), "variant": label,
                         "policy": POLICY_NAMES[v.policy],
                         "flush_rank": RANK_NAMES[v.flush_rank] if cfg.tracked else "-",
                         "zeroing": ZEROING_NAMES[v.zeroing] if cfg.tracked else "-",
                         "conversion": CONVERSION_NAMES[v.conversion] if cfg.tracked else "-",
                         "option": (f"{CONVERSION_NAMES[v.conversion]}, {ZEROING_NAMES[v.zeroing]}"
                                    if cfg.tracked else "-"),
                         **{k: m[k] for k in _SLOW_METRICS}})
    return pl.DataFrame(rows), runs


def slowpath_cost_sweep(p: dict, allocs: int | None = None):
    """The slow path's ``assumed`` costs (:data:`SLOWPATH_COSTS`) swept one at a time over
    their ranges (``slowpath_cost_points`` log-spaced points), each for policy 2 with the
    rank that spends it before the flush (migration: after compaction; reclaim: after
    reclaim), at the highest of ``slowpath_pressures``: allocation latency tail and total
    ASI work per point (a polars frame)."""
    import polars as pl
    specs = assumed_specs()
    q = {**p, "pressure": float(max(p["slowpath_pressures"]))}
    wl = workload_for(q, "mixed", config_for(q, Policy.TRACKED), allocs)
    rows = []
    ranks = {"migrate_page_ns": FlushRank.AFTER_COMPACTION,
             "reclaim_page_ns": FlushRank.AFTER_RECLAIM}
    for name in SLOWPATH_COSTS:
        lo, hi = specs.get(name, (float(p[name]), float(p[name])))
        rank = ranks[name]
        for x in np.geomspace(lo, hi, int(p["slowpath_cost_points"])):
            cfg = variant_config({**q, name: float(x)}, Variant(Policy.TRACKED, rank))
            m = simulate(cfg, wl).metrics()
            rows.append({"parameter": name, "value_ns": float(x), "flush_rank": RANK_NAMES[rank],
                         **{k: m[k] for k in ("alloc_p999_ns", "alloc_max_ns", "slowpath_ns",
                                              "total_asi_ns")}})
    return pl.DataFrame(rows)


_UNMAPPED_METRICS = ("allocs", "alloc_failures", "shootdowns", "asi_unmap_allocs",
                     "direct_map_maps", "to_sensitive", "to_nonsensitive", "pages_zeroed",
                     "init_zeroed", "mermap_pages", "mermap_flushes", "mermap_ns",
                     "mermap_rewalk_ns", "rewalk_ns", "interrupt_window_max_ns",
                     "alloc_p50_ns", "alloc_p99_ns", "alloc_p999_ns", "total_asi_ns",
                     "mixed_pageblocks_mean", "violations")


def unmapped_compare(p: dict, allocs: int | None = None, sims: Sims | None = None):
    """Policy 5 (the 2026 ``__GFP_UNMAPPED`` design) against policy 2 (the 2025 RFC as
    posted) on the mixed stream: on the machine of ``arch`` and ``method``, and on arm64
    (4K granule, TLBI broadcast, so that the mermap's broadcast flush is priced); policy
    5 at the ends of ``mermap_region_pages``'s ``assumed`` range besides its published
    value, and with ``unmapped_movable`` flipped. Returns ``(frame, runs)``: one row per
    machine and variant, and ``{(machine, label): AsiRun}``."""
    import polars as pl
    sims = sims or Sims()
    lo, hi = assumed_specs()["mermap_region_pages"]
    rows, runs = [], {}
    machines = {"published": {}, "arm64": {"arch": "arm64", "method": "arm64_tlbi",
                                           "granule": "4K"}}
    for machine, over in machines.items():
        q = {**p, **over}
        variants = {"2 tracked": (Policy.TRACKED, {}),
                    "5 unmapped": (Policy.UNMAPPED, {})}
        for r in sorted({int(lo), int(hi)} - {int(q["mermap_region_pages"])}):
            variants[f"5 unmapped, mermap {r} pages"] = (Policy.UNMAPPED,
                                                        {"mermap_region_pages": r})
        flip = not q["unmapped_movable"]
        variants["5 unmapped, " + ("movable unmapped freetype" if flip else
                                   "unmovable only (as posted)")] = (
            Policy.UNMAPPED, {"unmapped_movable": flip})
        wl = None
        for label, (pol, extra) in variants.items():
            cfg = config_for({**q, **extra}, pol)
            wl = wl if wl is not None else sims.stream(q, "mixed", cfg, allocs)
            run = sims(cfg, wl)
            runs[(machine, label)] = run
            m = run.metrics()
            rows.append({"machine": machine, "variant": label, "policy": POLICY_NAMES[pol],
                         "mermap_region_pages": cfg.mermap_region_pages,
                         "unmapped_movable": cfg.unmapped_movable,
                         **{k: m[k] for k in _UNMAPPED_METRICS}})
    return pl.DataFrame(rows), runs


def _target_pages(p: dict, peak: int) -> list[int]:
    """Free-mapped targets: evenly spaced from 0 to ``peak``, the most free pages policy 2
    (no target) kept mapped on the same stream; a target at or above it never binds, so
    the largest target is policy 2 itself."""
    n = int(p["target_points"])
    return [int(round(peak * k / (n - 1))) for k in range(n)]


def target_sweep(p: dict, allocs: int | None = None, sims: Sims | None = None):
    """Policy 3 over the free-mapped target (claim A6) on the mixed stream in phases
    (``a6_phases`` of them, nonsensitive- and sensitive-heavy in turn by
    ``a6_phase_skew``, each with a burst of ``a6_burst`` of the pool of its sensitivity,
    freed at its end): the free nonsensitive pages a nonsensitive phase leaves are what
    the target returns to sensitive before the next sensitive phase wants them; without
    the target, that phase's sensitive allocations take them back in line, one
    ``__rmqueue_asi_unmap`` (unmap, shootdown) per block. Targets
    from 0 to the most free pages policy 2 kept mapped on that stream. The largest target is
    that run itself: policy 3 differs from policy 2 only by its worker, which converts only
    while more free pages than the target are mapped (``run_stream``), so at the peak it
    never does. A polars frame, one row per target."""
    import polars as pl
    sims = sims or Sims()
    rows = []
    base = config_for(p, Policy.TRACKED_TARGET)
    wl = sims.stream(p, "mixed", base, allocs, phases=True)
    top = sims(config_for(p, Policy.TRACKED), wl)
    peak = int(top.counts.free_mapped_peak)
    for t in _target_pages(p, peak):
        r = top if t >= peak else sims(config_for(p, Policy.TRACKED_TARGET,
                                                  target_free_mapped_pages=t), wl)
        rows.append({"target_pages": t, **r.metrics()})
    return pl.DataFrame(rows)


def granule_sweep(p: dict):
    """The RFC design and tracked pageblocks on the mixed stream for each arm64 granule
    (pageblocks of 2, 32 and 512 MiB) over a pool of ``granule_pool_mib``, with arm64's
    TLBI broadcast shootdowns whatever ``arch`` and ``method`` say."""
    import polars as pl
    rows = []
    for gran in eng.GRANULES:
        q = {**p, "granule": gran, "pool_mib": int(p["granule_pool_mib"]), "arch": "arm64",
             "method": "arm64_tlbi"}
        cfg0 = config_for(q, Policy.RFC)
        wl = workload_for(q, "mixed", cfg0, int(p["granule_allocs"]))
        for pol in (Policy.RFC, Policy.TRACKED):
            cfg = config_for(q, pol)
            m = simulate(cfg, wl).metrics()
            rows.append({"granule": gran, "policy": POLICY_NAMES[pol],
                         "pageblock_mib": cfg.geometry.pageblock_bytes >> 20, **m})
    return pl.DataFrame(rows)


def physmap_compare(p: dict, allocs: int | None = None, sims: Sims | None = None,
                    designs=tuple(_PHYSMAPS), policies=(Policy.RFC, Policy.TRACKED)):
    """Page-table allocations while allocating, boot table pages and block splits for each
    restricted-physmap design of ``designs`` (claim A7) and policy of ``policies``, mixed
    stream."""
    import polars as pl
    sims = sims or Sims()
    rows = []
    wl = None
    for design in designs:
        for pol in policies:
            cfg = config_for(p, pol, physmap=_PHYSMAPS[design])
            wl = wl if wl is not None else sims.stream(p, "mixed", cfg, allocs)
            m = sims(cfg, wl).metrics()
            rows.append({"physmap": design, "policy": POLICY_NAMES[pol], **m})
    return pl.DataFrame(rows)


def policy_frame(runs: dict, p: dict, scenario: str):
    """Tidy result frame of :func:`compare_policies` (one row per mix, policy and metric)."""
    from ... import results
    rows = []
    for (mix, label), r in runs.items():
        params = {**{k: v for k, v in p.items() if not isinstance(v, (list, dict))},
                  "mix": mix, "policy": label}
        m = r.metrics()
        rows += results.rows_for("asi", params, int(p["seed"]),
                                 {k: (v, "ns" if k.endswith("_ns") else "count")
                                  for k, v in m.items()})
    return results.frame(rows)


def latency_cdf(runs: dict, mix: str = "mixed"):
    """Allocation latency quantiles per run whose key's first item is ``mix`` (0 .. 1, the
    tail finely), for a CDF chart: ``runs`` as :func:`compare_policies` or
    :func:`slowpath_compare` return them (``mix`` a pressure for the latter)."""
    import polars as pl
    qs = np.concatenate([np.linspace(0.0, 0.99, 100), [0.995, 0.999, 0.9995, 0.9999, 1.0]])
    rows = []
    for (m, label), r in runs.items():
        if m != mix or not r.lat_ns.size:
            continue
        for q, v in zip(qs, np.quantile(r.lat_ns, qs)):
            rows.append({"policy": label, "quantile": float(q), "ns": float(v)})
    return pl.DataFrame(rows)


def burst_frame(runs: dict, mix: str = "mixed", window_ns: int = 1_000_000):
    """ASI housekeeping work per time window and policy (worker runs, conversions, flushes
    on free, reclaim waits), the jitter other work sees."""
    import polars as pl
    rows = []
    for (m, label), r in runs.items():
        if m != mix or r.bursts.shape[0] == 0:
            continue
        b = r.bursts
        win = b[:, 0] // window_ns
        for w in np.unique(win):
            sel = win == w
            rows.append({"policy": label, "t_ms": float(w * window_ns / 1e6),
                         "work_us": float(b[sel, 1].sum() / 1e3),
                         "largest_us": float(b[sel, 1].max() / 1e3)})
    return pl.DataFrame(rows, schema={"policy": pl.Utf8, "t_ms": pl.Float64,
                                      "work_us": pl.Float64, "largest_us": pl.Float64})


def _evidence(runs: dict, targets, physmap) -> dict:
    """Claim evidence (the keys the claims registry's tests read) from the runs: ``runs``
    holds :data:`EVIDENCE_VARIANTS` on the mixed stream and the RFC design and tracked
    pageblocks on the pathological one; ``physmap`` the RFC design's rows of
    :func:`physmap_compare` for the on-demand and synced designs at least.

    A3 compares the RFC design with tracked pageblocks that zero lazily: both then zero a
    page only when a nonsensitive allocation takes it, so the difference is the
    same-sensitivity reuse the claim names; eager zeroing's count stays in the evidence.
    The other claims use the tracked policy with its default options. A6's evidence also
    lists the allocations that failed at each target (``failures``): total ASI work prices
    the work done, and a failed allocation did none of ASI's (it found no free block of
    any type it may take, so nothing was mapped, unmapped or zeroed for it); the count
    shows where a target trades ASI work for failures.
    """
    mx = {label: runs[("mixed", label)].metrics() for label in EVIDENCE_VARIANTS}
    pa = {label: runs[("pathological", label)].metrics() for label in (_RFC, _TRACKED)}

    def five(m):
        return {"shootdowns": m["shootdowns"], "pages_zeroed": m["pages_zeroed"],
                "housekeeping_ns": m["worker_ns"] + m["burst_ns"],
                "alloc_p99_ns": m["alloc_p99_ns"]}

    pm = {(r["physmap"], r["policy"]): r for r in physmap.iter_rows(named=True)}
    rfc = POLICY_NAMES[Policy.RFC]
    return {
        "A1": {"pointless_rfc": pa[_RFC]["pointless_remaps"],
               "pointless_tracked": pa[_TRACKED]["pointless_remaps"]},
        "A2": {"interrupt_rfc_ns": mx[_RFC]["interrupt_window_max_ns"],
               "interrupt_tracked_ns": mx[_TRACKED]["interrupt_window_max_ns"]},
        "A3": {"zeroed_rfc": mx[_RFC]["pages_zeroed"],
               "zeroed_tracked": mx[_TRACKED]["pages_zeroed"],
               "zeroed_tracked_eager": mx[_T61]["pages_zeroed"]},
        "A4": {"p99_rfc_ns": mx[_RFC]["alloc_p99_ns"],
               "p99_none_ns": mx["0 no ASI"]["alloc_p99_ns"]},
        "A5": {"rfc": five(mx[_RFC]), "tracked": five(mx[_TRACKED]),
               "tracked_61": five(mx[_T61])},
        "A6": {"target": targets["target_pages"].to_list(),
               "cost": targets["total_asi_ns"].to_list(),
               "failures": targets["alloc_failures"].to_list()},
        "A7": {"pt_allocs_synced": pm[("synced", rfc)]["pt_allocs_during_alloc"],
               "pt_allocs_rfc": pm[("on_demand", rfc)]["pt_allocs_during_alloc"]},
    }


#: The runs each claim's evidence reads, per mix (:func:`claim_evidence`)
_CLAIM_RUNS = {"mixed": EVIDENCE_VARIANTS, "pathological": (_RFC, _TRACKED)}


def claim_evidence(p: dict, allocs: int | None = None, sims: Sims | None = None) -> dict:
    """The evidence of A1-A7 at parameters ``p`` and nothing else: the runs of
    :data:`_CLAIM_RUNS`, the target sweep and the RFC design's on-demand and synced physmaps
    (no slow-path comparison, no other variant or design): what the joint sweep, the swings
    and the replicates run. At the same parameters it equals :func:`evaluate`'s evidence."""
    sims = sims or Sims()
    runs = compare_policies(p, allocs, _CLAIM_RUNS, sims)
    targets = target_sweep(p, allocs, sims)
    physmap = physmap_compare(p, allocs, sims, ("on_demand", "synced"), (Policy.RFC,))
    return _evidence(runs, targets, physmap)


@cached()
def evaluate(p: dict, allocs: int | None = None, slowpath: bool = False,
             every_variant: bool = True) -> dict:
    """Everything the claims and the notebook need at parameters ``p``: runs (every variant,
    or with ``every_variant`` false only :data:`EVIDENCE_VARIANTS`), target sweep, physmap
    designs and the evidence of A1-A7; with ``slowpath`` also :func:`slowpath_compare`
    (``slow``, ``slow_runs``), whose facts the explanations then cite. The parts share their
    runs (:class:`Sims`)."""
    sims = Sims()
    runs = compare_policies(p, allocs, None if every_variant else EVIDENCE_VARIANTS, sims)
    targets = target_sweep(p, allocs, sims)
    physmap = physmap_compare(p, allocs, sims)
    out = {"runs": runs, "targets": targets, "physmap": physmap,
           "evidence": _evidence(runs, targets, physmap)}
    slow = None
    if slowpath:
        slow, out["slow_runs"] = slowpath_compare(p, allocs, sims)
        out["slow"] = slow
    out["notes"] = notes(runs, targets, slow)
    out["notes"]["a6_phases"] = int(p["a6_phases"])
    out["notes"]["a6_burst"] = float(p["a6_burst"])
    return out


def assumed_specs() -> dict:
    """``name -> (lo, hi)`` of every ``assumed`` parameter (:data:`ASSUMED`)."""
    return dict(ASSUMED)


def claim_specs() -> dict:
    """:func:`assumed_specs` without :data:`SLOWPATH_COSTS` and :data:`UNMAPPED_ONLY`, which
    no claim's evidence reads: the claims' joint sweep."""
    return {k: v for k, v in assumed_specs().items()
            if k not in SLOWPATH_COSTS and k not in UNMAPPED_ONLY}


def _at(p: dict, point: dict) -> tuple[dict, dict]:
    """Parameters ``p`` moved to a sweep ``point``, and the point as run: a TLB size is
    rounded down to a power-of-two number of sets."""
    q, point = {**p, **point}, dict(point)
    if "tlb_entries" in point:
        ways = int(q["tlb_ways"])
        q["tlb_entries"] = ways * (1 << max(0, int(np.log2(max(q["tlb_entries"] // ways, 1)))))
        point["tlb_entries"] = q["tlb_entries"]
    return q, point


@cached()
def joint_sweep(p: dict, specs: dict, n: int, seed: int) -> list[dict]:
    """Evidence of every claim (:func:`claim_evidence`) at ``n`` Latin-hypercube points over
    the ``assumed`` ranges (log scale where a range spans a factor of 4 or more), each on
    streams of ``sweep_allocs`` allocations: ``[{"params": {...}, "evidence": {...}}]``."""
    out = []
    for point in latin_hypercube(specs, n, seed, p):
        q, point = _at(p, point)
        out.append({"params": point, "evidence": claim_evidence(q, int(p["sweep_allocs"]))})
    return out


@cached()
def swings(p: dict, specs: dict) -> list[dict]:
    """The one-at-a-time swings of the joint sweep (:func:`kmm.suite.study.one_at_a_time`):
    each ``assumed`` parameter of ``specs`` alone at each end of its range, the others at
    ``p``, evaluated like the sweep's points (:func:`claim_evidence` on streams of
    ``sweep_allocs``), so that :func:`kmm.suite.registry.decided_by` can tell which
    parameter decides a verdict. The published point on those streams is run first and a
    swing reuses each of its runs that the swung parameter does not reach (:class:`Sims`;
    e.g. the re-walk pricing, or a6_burst for every stream but A6's). Same shape as
    :func:`joint_sweep`."""
    n = int(p["sweep_allocs"])
    centre = Sims()
    claim_evidence(p, n, centre)
    out = []
    for point in one_at_a_time(specs, p):
        q, point = _at(p, point)
        out.append({"params": point, "evidence": claim_evidence(q, n, Sims(centre))})
    return out


def replicates(p: dict) -> dict[str, list[dict]]:
    """The published point of A1-A7 again (:func:`kmm.suite.registry.convergence`) at the
    runs of :func:`kmm.suite.study.replicate_plan`: seeds ``seed + 1`` and ``seed + 2`` with
    streams of ``allocs`` allocations, and the published seed with streams of
    ``allocs // 2`` (runs of their own: the kernels read their counters once, at the end of
    a stream; a shorter stream keeps its shape, the pressure phase in its middle fifth and
    A6's ``a6_phases`` phases, each half as long). Lengths are allocations per stream (each
    with its free). Each replicate runs only what the claims read (:func:`claim_evidence`).
    No claim is deterministic: every value is a count, a total, a maximum or a percentile
    over seeded streams, and grows with or moves along them.
    ``{claim: [{"seed", "length", "value"}, ...]}``."""
    return replicates_from([(seed, n, claim_evidence({**p, "seed": seed}, n))
                            for seed, n in replicate_plan(p["seed"], p["allocs"])])


def sweep_records(sweep: list[dict], claim: str) -> list[dict]:
    """``claims.record(sweep=...)`` entries of one claim: :func:`kmm.suite.study.per_claim`."""
    return per_claim(sweep, claim)


def interruption_parts(run) -> dict:
    """The worst CPU-window of ``run``'s per-CPU interruption
    (:meth:`~kmm.mech.asi.model.AsiRun.interruption_ns`) split into its parts: ns in flush
    IPI handlers, in worker runs and in re-walks, with the window's CPU and start, and
    every CPU's total."""
    from .model import _W_HANDLER, _W_WORKER, JITTER_WINDOW_NS
    intr = run.interruption_ns()
    if not intr.size or intr.max() <= 0:
        return {"ns": 0.0, "cpu": 0, "t_ms": 0.0, "handler_ns": 0.0, "worker_ns": 0.0,
                "rewalk_ns": 0.0, "rewalks": 0.0, "total_ns": 0.0}
    w, c = np.unravel_index(int(np.argmax(intr)), intr.shape)
    walks = float(run.rewalks()[w, c])
    return {"ns": float(intr[w, c]), "cpu": int(c), "t_ms": w * JITTER_WINDOW_NS / 1e6,
            "handler_ns": float(run.cpu_win[w, c, _W_HANDLER]),
            "worker_ns": float(run.cpu_win[w, c, _W_WORKER]),
            "rewalk_ns": walks * run.config.rewalk.walk_ns(run.config.geometry.levels),
            "rewalks": walks, "total_ns": float(intr.sum())}


def notes(runs: dict, targets, slow=None) -> dict:
    """Facts the explanations cite besides the evidence: burst sources, where zeroing
    happened, the flat part of the target curve, lazy zeroing's deferred pages and (with the
    :func:`slowpath_compare` frame ``slow``) the slow path's counts per flush rank."""
    out = {}
    for pol, label in ((Policy.RFC, _RFC), (Policy.TRACKED, _TRACKED)):
        b = runs[("mixed", label)].bursts
        out[f"burst_source_{pol.name.lower()}"] = (
            BurstSource(int(b[np.argmax(b[:, 1]), 2])).name.lower().replace("_", " ")
            if b.shape[0] else "none")
        out[f"zeroed_on_conversion_{pol.name.lower()}"] = \
            runs[("mixed", label)].metrics()["zeroed_on_conversion"]
        out[f"interrupt_{pol.name.lower()}"] = interruption_parts(runs[("mixed", label)])
        out[f"max_burst_{pol.name.lower()}"] = runs[("mixed", label)].metrics()["max_burst_ns"]
        out[f"shootdowns_{pol.name.lower()}"] = runs[("mixed", label)].metrics()["shootdowns"]
    lazy = runs[("mixed", _TRACKED)].metrics()
    out["lazy"] = {k: lazy[k] for k in ("zero_deferred", "zeroed_deferred",
                                        "deferred_to_sensitive", "deferred_dropped",
                                        "deferred_pending", "alloc_p999_ns",
                                        "mixed_pageblocks_mean")}
    out["eager_p999_ns"] = runs[("mixed", _T61)].metrics()["alloc_p999_ns"]
    out["zeroed_on_conversion_t61"] = runs[("mixed", _T61)].metrics()["zeroed_on_conversion"]
    out["asi_unmap_allocs"] = runs[("mixed", _TRACKED)].metrics()["asi_unmap_allocs"]
    for label in (_RFC, _TRACKED, _T61):
        m = runs[("mixed", label)].metrics()
        out.setdefault("zero_by_init", {})[label] = m["zero_by_init"]
    if slow is not None:
        rows = slow.filter((slow["zeroing"] == "lazy")
                           & (slow["conversion"] == "posted")).to_dicts()
        out["slow"] = {(r["pressure"], r["flush_rank"]): r for r in rows}
        out["slow_pressures"] = sorted({r["pressure"] for r in rows})
    cost = np.asarray(targets["total_asi_ns"].to_list(), float)
    tp = targets["target_pages"].to_list()
    near = [t for t, c in zip(tp, cost) if c <= 1.01 * cost.min()]
    out["a6_near_min"] = (min(near), max(near))
    out["a6_cost_at_zero"] = float(cost[0])
    out["a6_cost_min"] = float(cost.min())
    out["a6_peak"] = float(tp[-1])
    for key in ("shootdowns", "asi_unmap_allocs", "target_conversions", "alloc_failures"):
        col = targets[key].to_list()
        out[f"a6_{key}"] = (float(col[0]), float(col[int(np.argmin(cost))]), float(col[-1]))
    return out


def _cmp(a: float, b: float) -> str:
    return "more than" if a > b else ("fewer than" if a < b else "as many as")


def _a2_text(e: dict, nt: dict) -> str:
    """A2's sentence: the worst CPU-window of each design and what it was made of."""
    def part(key):
        d = nt.get(f"interrupt_{key}", {})
        return (f"{d.get('ns', 0) / 1e3:.1f} us on CPU {d.get('cpu', 0)} (flush IPI handlers "
                f"{d.get('handler_ns', 0) / 1e3:.1f} us, worker {d.get('worker_ns', 0) / 1e3:.1f} "
                f"us, {d.get('rewalks', 0):.0f} re-walks {d.get('rewalk_ns', 0) / 1e3:.1f} us; "
                f"{d.get('total_ns', 0) / 1e6:.2f} ms over all CPUs and the stream, "
                f"{nt.get(f'shootdowns_{key}', 0):.0f} shootdowns)")
    return (f"The most time one CPU lost to ASI work it did not run, in any 1 ms window, was "
            f"{part('rfc')} with the RFC design and {part('tracked')} with tracked pageblocks. "
            f"Remote CPUs feel a shootdown as its IPI handler and as the re-walks of what it "
            f"removed (a flush above the single-page ceiling empties their TLBs), and the RFC "
            f"worker as the CPU it runs on; work done inside an allocation (the largest such "
            f"burst: RFC {nt.get('max_burst_rfc', 0) / 1e3:.1f} us, tracked "
            f"{nt.get('max_burst_tracked', 0) / 1e3:.1f} us) is that allocation's latency, and "
            f"only its shootdowns reach other CPUs.")


def explanations(ev: dict, nt: dict) -> dict:
    """One sentence per claim from the evidence and :func:`notes` (never the bands)."""
    e = ev
    a5r, a5t = e["A5"]["rfc"], e["A5"]["tracked"]
    better = [k for k in a5r if a5t[k] < a5r[k]]
    worse = [k for k in a5r if a5t[k] > a5r[k]]
    best = e["A6"]["target"][int(np.argmin(e["A6"]["cost"]))]
    lo, hi = nt["a6_near_min"]
    zr, zt, ze = e["A3"]["zeroed_rfc"], e["A3"]["zeroed_tracked"], e["A3"]["zeroed_tracked_eager"]
    lz = nt["lazy"]
    zi = nt.get("zero_by_init", {})
    a5l = e["A5"].get("tracked_61")
    lazy_a5 = ""
    if a5l is not None:
        lbetter = [k for k in a5r if a5l[k] < a5r[k]]
        lworse = [k for k in a5r if a5l[k] > a5r[k]]
        lazy_a5 = (f" With v6.1's fallbacks across sensitivity instead (partial steals, the "
                   f"shootdown in line, eager zeroing), tracked pageblocks against the RFC design "
                   f"are lower on {', '.join(lbetter) or 'nothing'} and higher on "
                   f"{', '.join(lworse) or 'nothing'} (shootdowns {a5l['shootdowns']:.0f}, pages "
                   f"zeroed {a5l['pages_zeroed']:.0f}, p99 {a5l['alloc_p99_ns']:.0f} ns).")
    slow_a5 = ""
    if "slow" in nt:
        sl, prs = nt["slow"], nt["slow_pressures"]
        hi_p = prs[-1]
        parts = []
        for rank in FlushRank:
            r = sl[(hi_p, RANK_NAMES[rank])]
            parts.append(f"{RANK_NAMES[rank]}: {r['shootdowns_per_million_allocs']:.0f} shootdowns "
                         f"per million allocations, {r['pages_migrated']:.0f} pages migrated, "
                         f"{r['pages_reclaimed']:.0f} reclaimed, {r['alloc_failures']:.0f} "
                         f"allocations failed, p99.9 {r['alloc_p999_ns']:.0f} ns, largest "
                         f"{r['alloc_max_ns']:.0f} ns")
        entries = {pr: sl[(pr, RANK_NAMES[FlushRank.AFTER_RECLAIM])]["slowpath_entries"]
                   for pr in prs}
        slow_a5 = (f" Where the flush ranks in the slow path matters only when a sensitivity runs "
                   f"out of free memory: sensitive allocations entered the slow path "
                   + ", ".join(f"{v:.0f} times at pressure {k:g}" for k, v in entries.items())
                   + f"; at pressure {hi_p:g} (the posted conversion) " + "; ".join(parts)
                   + ". The fast-path rank (the default) has no compaction or reclaim at all, so "
                     "its failures are allocations the slow path would retry; the other ranks "
                     "also keep the fast path within the allocation's sensitivity, and their "
                     "reclaim lowers later pressure: both cut the pageblocks taken from the other "
                     "sensitivity, and these runs do not separate the two.")
    return {
        "A1": (f"On the pathological stream the RFC design remapped {e['A1']['pointless_rfc']:.0f} "
               f"pages it had unmapped while they held no sensitive data, tracked pageblocks "
               f"{e['A1']['pointless_tracked']:.0f}: the RFC worker unmaps every freed "
               f"nonsensitive page and the allocator hands the same pages out again, while "
               f"tracked pageblocks leave free nonsensitive pages mapped."),
        "A2": _a2_text(e["A2"], nt),
        "A3": (f"Counting only the zeroing ASI adds to init_on_alloc's (which zeroes every "
               f"allocated page anyway when enabled), the RFC design zeroed {zr:.0f} pages, "
               f"{_cmp(zr, zt)} tracked pageblocks ({zt:.0f}); init_on_alloc had already zeroed "
               f"{zi.get(_RFC, 0):.0f} and {zi.get(_TRACKED, 0):.0f} of the pages each would "
               f"have zeroed while allocating. Tracked pageblocks zero per page when it is "
               f"mapped, as the RFC design does, so the difference is the same-sensitivity reuse "
               f"the claim is about. Of the "
               f"{lz['zero_deferred']:.0f} formerly sensitive free pages that conversions to "
               f"nonsensitive left unmapped, {lz['zeroed_deferred']:.0f} were zeroed later when a "
               f"nonsensitive allocation took them, {lz['deferred_to_sensitive']:.0f} went to "
               f"sensitive allocations unzeroed, {lz['deferred_dropped']:.0f} returned to a "
               f"sensitive pageblock, and {lz['deferred_pending']:.0f} were still free and "
               f"unzeroed when the stream ended: lazy zeroing mostly defers this work rather than "
               f"avoiding it, and moves it into allocations (p99.9 {lz['alloc_p999_ns']:.0f} ns "
               f"against {nt['eager_p999_ns']:.0f} ns for v6.1's fallbacks zeroing eagerly). "
               f"That variant zeroed {ze:.0f}, {_cmp(ze, zr)} the RFC design, "
               f"{nt['zeroed_on_conversion_t61']:.0f} of them when a pageblock turned "
               f"nonsensitive (all its free formerly sensitive pages at once, work init_on_alloc "
               f"does not save)."),
        "A4": (f"p99 allocation latency is {e['A4']['p99_rfc_ns']:.0f} ns with the RFC design "
               f"and {e['A4']['p99_none_ns']:.0f} ns without ASI: the RFC design maps (and where "
               f"needed zeroes, and allocates page tables for) every nonsensitive allocation, "
               f"and waits on the queue under memory pressure."),
        "A5": (f"Tracked pageblocks against the RFC design: shootdowns {a5t['shootdowns']:.0f} vs "
               f"{a5r['shootdowns']:.0f}, pages zeroed {a5t['pages_zeroed']:.0f} vs "
               f"{a5r['pages_zeroed']:.0f}, housekeeping {a5t['housekeeping_ns'] / 1e6:.2f} vs "
               f"{a5r['housekeeping_ns'] / 1e6:.2f} ms, p99 {a5t['alloc_p99_ns']:.0f} vs "
               f"{a5r['alloc_p99_ns']:.0f} ns; lower on {', '.join(better) or 'nothing'}, "
               f"higher on {', '.join(worse) or 'nothing'} (the value: policy 2 as posted, "
               f"whole free pageblocks turning nonsensitive and {nt.get('asi_unmap_allocs', 0):.0f} "
               f"sensitive allocations taking a whole free nonsensitive block, unmapped and shot "
               f"down with IRQs on; zeroing per page when mapped)." + lazy_a5
               + slow_a5),
        "A6": (f"Total ASI work is lowest at a target of {best} free mapped pages and within 1 % "
               f"of that minimum for targets {lo}-{hi}; at target 0 it is "
               f"{nt['a6_cost_at_zero'] / 1e6:.1f} ms against {nt['a6_cost_min'] / 1e6:.1f} ms, "
               f"on a stream whose nonsensitive share swings over "
               f"{nt.get('a6_phases', 0)} phases, each allocating {nt.get('a6_burst', 0):.0%} of "
               f"the pool of its sensitivity and freeing it at its end. Shootdowns at target 0, "
               f"at the "
               f"minimum and at the largest target: "
               + ", ".join(f"{x:.0f}" for x in nt.get("a6_shootdowns", ()))
               + "; pageblocks the target worker returned to sensitive: "
               + ", ".join(f"{x:.0f}" for x in nt.get("a6_target_conversions", ()))
               + "; sensitive allocations that took a free nonsensitive block in line (unmap, "
                 "shoot down): " + ", ".join(f"{x:.0f}" for x in nt.get("a6_asi_unmap_allocs", ()))
               + "; allocations that failed (the evidence lists them per target; total ASI "
                 "work does not price them, as a failed allocation found no block to map, "
                 "unmap or zero): "
               + ", ".join(f"{x:.0f}" for x in nt.get("a6_alloc_failures", ()))
               + ". At a low target the worker returns pageblocks to sensitive while "
                 "nonsensitive allocations still live in them; their pages, freed later, lie "
                 "mapped on sensitive free lists, and each sensitive allocation that takes one "
                 "shoots it down in line. Targets run from 0 to the most free pages policy 2 "
                 "(no target) kept mapped on this stream, "
               + f"{nt.get('a6_peak', 0):.0f}."),
        "A7": (f"While allocating, the RFC's on-demand restricted physmap allocated "
               f"{e['A7']['pt_allocs_rfc']:.0f} page-table pages and the synced one "
               f"{e['A7']['pt_allocs_synced']:.0f}, its tables being built at boot; with block "
               f"leaves, a page flipped inside a block forces a split (see the physmap table)."),
    }


#: Claims the model could not have contradicted, with the identity each verdict rests on
#: (:func:`kmm.suite.registry.basis`).
STRUCTURAL_BASIS = {
    "A1": {"basis": "structural",
           "rests_on": "the RFC design unmaps every freed nonsensitive page while it holds no "
                       "sensitive data, so every later nonsensitive allocation of such a page "
                       "is a pointless remap; tracked pageblocks unmap a free clean page only "
                       "when its pageblock turns sensitive, which a stream whose nonsensitive "
                       "frees are reused at once never asks for"},
    "A4": {"basis": "structural",
           "rests_on": "without ASI the model's allocation costs alloc_base_ns plus "
                       "init_on_alloc's zeroing of its pages, a constant per order; the RFC "
                       "design adds its mapping, table, zeroing and queue-wait costs to the "
                       "same path and removes none, so its p99 is at least no-ASI's, and above "
                       "it once the 99th-percentile allocation maps a page"},
}

CHARTS = {"A1": "asi_counts", "A2": "asi_bursts", "A3": "asi_lazy_zeroing",
          "A4": "asi_latency_cdf", "A5": "asi_counts", "A6": "asi_target", "A7": "asi_counts"}


def evidence(p: dict) -> dict:
    """A1-A7 at parameters ``p``, with their joint sweep of the ``assumed`` parameters, its
    one-at-a-time :func:`swings` and their published point's :func:`replicates`
    (:class:`kmm.suite.study.Evidence` per claim)."""
    ev = evaluate(p, slowpath=True)
    specs = claim_specs()
    sweep = joint_sweep(p, specs, p["sweep_points"], p["seed"])
    swung = swings(p, specs)
    text = explanations(ev["evidence"], ev["notes"])
    reps = replicates(p)
    return {c: Evidence(ev["evidence"][c], "", text[c], CHARTS[c], per_claim(sweep, c),
                        swings=per_claim(swung, c), basis=STRUCTURAL_BASIS.get(c),
                        replicates=reps[c])
            for c in CHARTS}


def frame(p: dict, scenario: str):
    """The notebook's tidy frame at parameters ``p``."""
    return policy_frame(evaluate(p, slowpath=True)["runs"], p, scenario)


STUDY = Study("asi", tuple(CHARTS), DEFAULTS, evidence, check_params, frame, ASSUMED)
