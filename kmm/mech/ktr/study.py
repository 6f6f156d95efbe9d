"""ktr: the study: parameters, evidence per claim, frames.

Part of :mod:`kmm.mech.ktr`."""
from __future__ import annotations

import weakref
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from ... import engine as eng
from ...errors import ConfigError
from ..host.workload import TraceWorkload
from ..host.model import (HostCosts, HostCounts, KernelImage, ktr_refusal, KTR_TABLE_PLACEMENTS,
    Machine, MiB, fixmap_flush_ns, patch_machine_ns, patch_mix_fraction, PATCH_PATHS,
    pgd_sync_fraction, ReplicaCosts, simulate_host, time_counts, top_tables_per_node,
    patch_overhead_fraction, patch_window_ns, PatchCost, PatchSync, RunConfig, Scheme,
    simulate_seeds, system_time_ns, time_breakdown, UserPolicy, WORKLOADS)
from ...suite.study import (cached, evidence_from, grid, most_influential, replicate_plan,
    replicates_from, Study)
from .model import (break_even_patch_rate, replication_bytes_formula, replication_bytes_model,
    write_lines_per_s)

# ---- the study: the notebook passes its parameters cell (``STUDY.params(globals())``) and
# everything it shows is computed here.

#: The notebook's parameters with their small defaults (the cell repeats them).
DEFAULTS: dict = {"seed": 1, "seeds": [1], "workloads": ["database", "compute", "syscall"],
    "k1_workload": "database", "node_counts": [2, 4], "ratios": [1.0, 1.5, 2.0, 3.0, 4.0],
    "remote_ratio": 2.2, "k1_ratios": [1.69, 3.0], "local_ns": 117.0, "cpu_ghz": 2.5,
    "cpi_base": 1.0, "l2_cycles": 11.0, "llc_ns": 30.0, "l2_tlb_cycles": 5.0, "dep_ifetch": 0.8,
    "dep_data": 0.5, "background": 0.3, "outstanding": 22, "dep_ifetch_range": [0.5, 1.0],
    "dep_data_range": [0.1, 0.9], "background_range": [0.0, 0.8], "outstanding_range": [22, 46],
    "llc_bytes": 8388608, "llc_sweep_bytes": [8388608],
    "kernel_fraction_sweep": [0.35], "migration": 0.05, "migration_sweep": [0.05],
    "cpus_per_node": 2, "cores_per_node": 32, "accesses_per_cpu": 15000, "warmup_per_cpu": 15000,
    "baseline_user_policy": "interleave", "text_bytes": 16570322, "rodata_bytes": 6291456,
    "rodata_range_bytes": [4194304, 10485760],
    "geometries": ["4K/48", "16K/47", "64K/42", "64K/48"], "unmap_kernel_at_el0": True,
    "ktr_tables": "rfc", "patch_sites": 8, "fixmap_ns": 300.0,
    "cmo_ns": 500.0, "sync_ns": 5000.0, "tlbi_ns": 10.0, "dsb_ish_ns": 200.0,
    "dsb_ish_per_cpu_ns": 5.0, "patch_sync": "nosync", "patches_per_s": 1.0,
    "kprobe_patches_per_s": 0.1,
    "patch_rates": [0.1, 10.0, 1000.0, 100000.0], "cpi_base_range": [0.6, 1.5],
    "llc_ns_range": [20.0, 45.0], "l2_tlb_cycles_range": [3.0, 8.0],
    "cpu_ghz_range": [2.0, 3.0], "module_text_fraction": 0.1,
    "module_text_range": [0.0, 0.3], "kobj_remote_fraction": 0.1,
    "kobj_remote_range": [0.0, 0.5], "cold_share": 0.01,
    "cold_share_range": [0.0, 0.5], "pgd_updates_per_s": 1.0,
    "pgd_updates_range": [0.0, 100.0],
    "topologies": ["2 nodes", "2 SNC nodes, one LLC"],
    "snc_ratios": [1.0, 1.1, 1.25, 1.5], "socket_sibling_ratio": 1.55,
    "workload_source": "trace",
    "trace_database": ["memcached", "pagecache"], "trace_syscall": ["syscalls"],
    "linear_scale": 4, "linear_scale_range": [1, 16]}

NOTEBOOK_KEYS = tuple(DEFAULTS)

_POLICY = {"local": UserPolicy.LOCAL, "interleave": UserPolicy.INTERLEAVE,
           "remote": UserPolicy.REMOTE, "node0": UserPolicy.NODE0}


def _geometry(spec: str) -> eng.Geometry:
    try:
        gran, va = spec.split("/")
        return eng.arm64(gran, int(va))
    except ValueError:
        raise ConfigError(f"{spec!r} is not GRANULE/VA_BITS", "geometries") from None


def check_params(p: dict) -> dict:
    """The rules beyond types: known policy and workloads, and the claims' 2-node machine."""
    if p["baseline_user_policy"] not in _POLICY:
        raise ConfigError(f"must be one of {', '.join(_POLICY)}", "baseline_user_policy")
    if p["k1_workload"] not in WORKLOADS or any(w not in WORKLOADS for w in p["workloads"]):
        raise ConfigError(f"workloads are {', '.join(WORKLOADS)}", "workloads")
    if 2 not in p["node_counts"]:
        raise ConfigError("node_counts must include 2 (the claims' machine)", "node_counts")
    for spec in p["geometries"]:
        why = ktr_refusal(_geometry(spec))
        if why:
            raise ConfigError(f"KTR is refused there: {why}", "geometries")
    if p["ktr_tables"] not in KTR_TABLE_PLACEMENTS:
        raise ConfigError(f"must be one of {', '.join(KTR_TABLE_PLACEMENTS)}", "ktr_tables")
    for t in p["topologies"]:
        if t not in TOPOLOGIES:
            raise ConfigError(f"unknown topology {t!r}; known: {', '.join(TOPOLOGIES)}",
                              "topologies")
    if p["workload_source"] not in WORKLOAD_SOURCES:
        raise ConfigError(f"must be one of {', '.join(WORKLOAD_SOURCES)}", "workload_source")
    for name in TRACED:
        trace_workload(p, name, "trace")  # a scenario that is not shipped is refused here
    return p


#: ``trace``: the kernel phases of the workloads with a captured counterpart replay it
#: (:func:`trace_workload`); ``synthetic``: every workload is synthetic.
WORKLOAD_SOURCES = ("trace", "synthetic")
#: The workloads with captured kernel activity and the parameter naming their traces (the
#: compute mix, whose kernel runs timer ticks and the odd fault, has none).
TRACED = {"database": "trace_database", "syscall": "trace_syscall"}


def trace_workload(p: dict, name: str, source: str | None = None,
                   linear_scale: int | None = None) -> TraceWorkload | None:
    """The captured kernel activity workload ``name`` replays under ``source`` (default
    ``workload_source``), or None where it stays synthetic."""
    if (source or p["workload_source"]) != "trace" or name not in TRACED:
        return None
    return TraceWorkload(tuple(p[TRACED[name]]), p["linear_scale"] if linear_scale is None
                         else int(linear_scale))


def params_from(ns: dict) -> dict:
    """The notebook's parameters from ``ns`` (its globals): :meth:`STUDY.params`."""
    return STUDY.params(ns)


def host_costs(p: dict, **over) -> HostCosts:
    keys = ("local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles",
            "dep_ifetch", "dep_data", "background")
    return HostCosts(**{k: float(over.get(k, p[k])) for k in keys},
                     outstanding=int(over.get("outstanding", p["outstanding"])))


def replica_costs(p: dict, llc_nodes: int = 1, migration: float | None = None,
                  **over) -> ReplicaCosts:
    """The costs of replication beyond patching (:class:`ReplicaCosts`) at ``p``'s values,
    any replaced by ``over``, on a machine whose LLCs each serve ``llc_nodes`` nodes, with
    threads migrating at ``migration`` (default ``p``'s) per time slice of the run."""
    keys = ("module_text_fraction", "kobj_remote_fraction", "cold_share")
    mg = p["migration"] if migration is None else migration
    return ReplicaCosts(**{k: float(over.get(k, p[k])) for k in keys},
                        migrations_per_kinstr=1000.0 * mg / RunConfig().slice_instructions,
                        llc_nodes=llc_nodes)


#: Machine families of the topology chart: ``name -> (nodes, nodes per LLC)``; each is
#: built at a ratio by :func:`topology_of`.
TOPOLOGIES: dict[str, tuple[int, int]] = {"2 nodes": (2, 1), "2 SNC nodes, one LLC": (2, 2),
                                          "16 nodes, 2 sockets": (16, 1)}


def topology_of(p: dict, name: str, ratio: float) -> eng.Topology:
    """The machine ``name`` of :data:`TOPOLOGIES` at ``ratio``: "2 nodes", two sockets with
    an LLC each, ``ratio`` the remote/local latency; "2 SNC nodes, one LLC", one socket in
    sub-NUMA clustering (two nodes, each with its own memory controllers, sharing the
    socket's LLC), ``ratio`` the sibling/local latency; "16 nodes, 2 sockets", eight nodes
    per socket with an LLC each (Hygon 7280 class dies), ``socket_sibling_ratio`` within a
    socket (at most ``ratio``) and ``ratio`` across."""
    local = p["local_ns"]
    cores = p["cores_per_node"]
    if name == "2 nodes":
        return eng.sockets(2, 1, local, ratio, ratio, cores)
    if name == "2 SNC nodes, one LLC":
        return eng.sockets(1, 2, local, ratio, ratio, cores)
    if name == "16 nodes, 2 sockets":
        return eng.sockets(2, 8, local, min(p["socket_sibling_ratio"], ratio), ratio, cores)
    raise ConfigError(f"unknown topology {name!r}; known: {', '.join(TOPOLOGIES)}", "topologies")


def image_of(p: dict) -> KernelImage:
    return KernelImage(text_bytes=p["text_bytes"], rodata_bytes=p["rodata_bytes"])


def machine_of(p: dict, nodes: int = 2, llc_bytes: int | None = None) -> Machine:
    return Machine(nodes=nodes, cpus_per_node=p["cpus_per_node"],
                   llc_bytes=p["llc_bytes"] if llc_bytes is None else llc_bytes,
                   image=image_of(p), ktr_tables=p["ktr_tables"])


def run_of(p: dict, migration: float | None = None) -> RunConfig:
    return RunConfig(accesses_per_cpu=p["accesses_per_cpu"], warmup_per_cpu=p["warmup_per_cpu"],
                     migration=p["migration"] if migration is None else migration,
                     seed=p["seed"])


def patch_cost_of(p: dict) -> PatchCost:
    """The per-patch costs; ``sync`` is the one K4's headline shows (``patch_sync``): the
    machine pays each path with its own (:func:`patch_rates_of`)."""
    sync = {"stop_machine": PatchSync.STOP_MACHINE, "nosync": PatchSync.NOSYNC}[p["patch_sync"]]
    return PatchCost(sites=p["patch_sites"], fixmap_ns=p["fixmap_ns"], cmo_ns=p["cmo_ns"],
                     sync_ns=p["sync_ns"], sync=sync, tlbi_ns=p["tlbi_ns"],
                     dsb_ish_ns=p["dsb_ish_ns"], dsb_ish_per_cpu_ns=p["dsb_ish_per_cpu_ns"])


def patch_rates_of(p: dict, patches_per_s: float | None = None) -> dict[str, float]:
    """Patches per second per path: static-key flips and ftrace toggles (``patches_per_s``,
    nosync) and kprobe arm/disarm (``kprobe_patches_per_s``, ``stop_machine``)."""
    rate = p["patches_per_s"] if patches_per_s is None else patches_per_s
    return {"static_key": float(rate), "kprobe": float(p["kprobe_patches_per_s"])}


@cached()
def simulate_all(p: dict) -> dict:
    """Every simulation the notebook charges, each pooled over ``seeds``: the workloads on
    2 nodes, the K1 workload on every node count, over the LLC and kernel-fraction sweep
    and the migration sweep. Keys: ``("workload", name)``, ``("nodes", n)``, ``("sweep",
    llc_bytes, kernel_fraction)``, ``("migration", m)``; with a trace-driven K1 workload
    ``("linear", linear_scale)`` at the ends of its range, and ``("other", name)`` every
    workload with a captured counterpart under the source not selected
    (``workload_source``), for the side-by-side comparison."""
    runs = {}
    base_w = WORKLOADS[p["k1_workload"]]
    seeds = p["seeds"]

    k1 = p["k1_workload"]

    def sim(w, mach, run, name=k1, **tw):
        return simulate_seeds(w, mach, run, seeds, trace=trace_workload(p, name, **tw))

    for name in p["workloads"]:
        runs[("workload", name)] = sim(WORKLOADS[name], machine_of(p), run_of(p), name)
    db = runs.get(("workload", k1)) or sim(base_w, machine_of(p), run_of(p))
    for n in p["node_counts"]:
        runs[("nodes", n)] = db if n == 2 else sim(base_w, machine_of(p, n), run_of(p))
    for llc in p["llc_sweep_bytes"]:
        for kf in p["kernel_fraction_sweep"]:
            same = llc == p["llc_bytes"] and kf == base_w.kernel_fraction
            runs[("sweep", llc, kf)] = db if same else sim(
                base_w.with_(kernel_fraction=kf), machine_of(p, 2, llc), run_of(p))
    for mg in p["migration_sweep"]:
        runs[("migration", mg)] = db if mg == p["migration"] else sim(
            base_w, machine_of(p), run_of(p, mg))
    for t in p["topologies"]:
        nodes, per_llc = TOPOLOGIES[t]
        names = p["workloads"] if nodes == 2 else [p["k1_workload"]]
        for name in names:
            c = runs.get(("workload", name)) if nodes == 2 else runs.get(("nodes", nodes))
            runs[("topology", t, name)] = c or sim(WORKLOADS[name], machine_of(p, nodes),
                                                   run_of(p), name)
            if per_llc > 1:
                # KTR's copies as distinct lines in the shared LLC: its own run
                runs[("topology_ktr", t, name)] = simulate_seeds(
                    WORKLOADS[name], machine_of(p, nodes), run_of(p), seeds,
                    replicas_in_llc=per_llc, trace=trace_workload(p, name))
    if trace_workload(p, k1) is not None:
        for ls in sorted(set(p["linear_scale_range"]) - {p["linear_scale"]}):
            runs[("linear", ls)] = sim(base_w, machine_of(p), run_of(p), linear_scale=ls)
    # the other source of every workload, for the side-by-side comparison
    other = "synthetic" if p["workload_source"] == "trace" else "trace"
    for name in p["workloads"]:
        if trace_workload(p, name, "trace") is not None:
            runs[("other", name)] = sim(WORKLOADS[name], machine_of(p), run_of(p), name,
                                        source=other)
    return runs


def _latency(nodes: int, local_ns: float, ratio: float) -> np.ndarray:
    return np.asarray(eng.generic(nodes, local_ns, ratio).latency_ns)


def gain(c: HostCounts, p: dict, ratio: float | None = None, *, base_policy: UserPolicy,
         new_policy: UserPolicy, scheme: Scheme = Scheme.KTR, costs: HostCosts | None = None,
         patches_per_s: float | None = None, latency_ns=None,
         counts_new: HostCounts | None = None, replica: ReplicaCosts | None = None,
         pgd_updates_per_s: float | None = None) -> float:
    """Throughput gain of ``scheme`` with user data under ``new_policy`` over the baseline
    (no replication, user data under ``base_policy``) for the same work.

    The machine is a flat one at remote/local ``ratio`` or, given ``latency_ns``, any
    latency matrix of ``c.nodes`` nodes (checked: square, finite, positive). Both sides
    pay their patching at the rates of :func:`patch_rates_of`, each path with its own
    synchronisation: one copy without replication, one per node with it
    (:func:`patch_mix_fraction`); KTR also copies top-level kernel table updates into every
    node's table (:func:`pgd_sync_fraction`). ``replica`` (default :func:`replica_costs`
    of ``p``) places module text and kernel objects and charges cold copies on both sides;
    ``counts_new`` are the scheme's own counts when they differ from the baseline's (KTR
    with its copies in a shared LLC, :func:`simulate_host` ``replicas_in_llc``)."""
    from ... import metrics
    costs = costs or host_costs(p)
    if latency_ns is None:
        if ratio is None:
            raise ConfigError("needs a ratio or a latency matrix", "ratio")
        lat = _latency(c.nodes, costs.local_ns, ratio)
    else:
        lat = eng.check_latency_matrix(latency_ns, c.nodes)
    rc = replica_costs(p) if replica is None else replica
    rates = patch_rates_of(p, patches_per_s)
    topo = eng.from_measured("machine", lat.tolist(), p["cores_per_node"], "given")
    cost = patch_cost_of(p)
    copies = c.nodes if scheme == Scheme.KTR else 1
    pgd = p["pgd_updates_per_s"] if pgd_updates_per_s is None else pgd_updates_per_s
    t_base = run_time_ns(c, lat, Scheme.BASELINE, base_policy, costs, rc,
                         write_lines_per_s(topo, 1, rates, cost))
    t_new = run_time_ns(c if counts_new is None else counts_new, lat, scheme, new_policy,
                        costs, rc, write_lines_per_s(topo, copies, rates, cost, pgd))
    f_base = patch_mix_fraction(topo, 1, rates, cost)
    f_new = patch_mix_fraction(topo, copies, rates, cost) + pgd_sync_fraction(topo, copies, pgd)
    return metrics.gain(t_base / (1.0 - f_base), t_new / (1.0 - f_new))


#: :func:`run_time_ns` per counts object (by identity, dropped with it): the sweeps price
#: the same side of a comparison many times (K1's and K2's baselines are the same).
_TIMES: dict[int, tuple] = {}
#: Relative tolerance of the wall time over which :func:`run_time_ns` spreads the write
#: traffic: it scales lines a million times fewer than the run's own.
WALL_RTOL = 1e-3


def run_time_ns(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                costs: HostCosts, rc: ReplicaCosts, lines_per_s: np.ndarray) -> float:
    """:func:`kmm.mech.host.model.system_time_ns` with the memory traffic ``lines_per_s``
    (:func:`kmm.mech.ktr.model.write_lines_per_s`) moved over the run's wall time, as
    ``extra_lines`` of :class:`kmm.timing.Counts`. The wall time is the run's without them,
    solved to :data:`WALL_RTOL`: at the patch and update rates modelled they are some lines
    per second against the run's millions, so solving again with them would not move it.
    Memoised per counts object, which is read-only once simulated."""
    lat = np.asarray(latency_ns, dtype=np.float64)
    lines = np.asarray(lines_per_s, dtype=np.float64)
    key = (lat.shape, lat.tobytes(), int(scheme), int(policy), costs, rc, lines.tobytes())
    entry = _TIMES.get(id(c))
    if entry is None or entry[0]() is not c:
        entry = (weakref.ref(c, lambda _ref, k=id(c): _TIMES.pop(k, None)), {})
        _TIMES[id(c)] = entry
    memo = entry[1]
    if key not in memo:
        if not lines.any():
            memo[key] = system_time_ns(c, lat, scheme, policy, costs, rc)
        else:
            wall_ns = eng.solve_time(time_counts(c, scheme, policy, rc=rc),
                                     eng.memory_system(lat, background=costs.background),
                                     costs.core(), rtol=WALL_RTOL).wall_ns
            memo[key] = system_time_ns(c, lat, scheme, policy, costs, rc,
                                       extra_lines=lines * wall_ns * 1e-9)
    return memo[key]


def _rows(scenario, params, seed, metrics_):
    from ... import results
    return results.rows_for(scenario, params, seed, metrics_)


def gain_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """KTR's gain against the ratio: per workload on 2 nodes, and per node count for the K1
    workload (user data under the baseline policy on both sides)."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    rows = []
    for name in p["workloads"]:
        for r in p["ratios"]:
            rows.append({"workload": name, "nodes": 2, "ratio": float(r),
                         "gain": gain(runs[("workload", name)], p, r, base_policy=bp,
                                      new_policy=bp)})
    for n in p["node_counts"]:
        if n == 2:
            continue
        for r in p["ratios"]:
            rows.append({"workload": p["k1_workload"], "nodes": n, "ratio": float(r),
                         "gain": gain(runs[("nodes", n)], p, r, base_policy=bp, new_policy=bp)})
    return pl.DataFrame(rows)


#: Each cost of replication and how :func:`topology_frame` switches it off.
COSTS: dict[str, dict] = {
    "copies in the LLC": {"counts_new": None},
    "module text": {"module_text_fraction": 0.0},
    "remote kernel objects": {"kobj_remote_fraction": 0.0},
    "cold replicas": {"cold_share": 0.0},
    "top-level table sync": {"pgd_updates_per_s": 0.0},
    "patching": {"patches_per_s": 0.0, "kprobe_patches_per_s": 0.0},
}


def _topology_gain(p: dict, runs: dict, t: str, name: str, ratio: float,
                   off: str | None = None) -> float:
    """KTR's gain on topology ``t`` at ``ratio`` for workload ``name`` (user data under the
    baseline policy on both sides), with the cost ``off`` of :data:`COSTS` switched off."""
    bp = _POLICY[p["baseline_user_policy"]]
    nodes, per_llc = TOPOLOGIES[t]
    c = runs[("topology", t, name)]
    drop = COSTS.get(off, {})
    q = {**p, **{k: v for k, v in drop.items() if k in p}}
    c_new = None if "counts_new" in drop else runs.get(("topology_ktr", t, name))
    return gain(c, q, latency_ns=topology_of(p, t, ratio).latency_ns, base_policy=bp,
                new_policy=bp, counts_new=c_new, replica=replica_costs(q, per_llc))


def topology_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """KTR's gain over the ratio per topology (:data:`TOPOLOGIES`) and workload, every cost
    charged, and what each cost of :data:`COSTS` takes from it (``cost_<name>``: the gain
    with that cost switched off minus the gain with every cost; positive: the cost lowers
    the gain). ``worst_cost`` names the largest."""
    import polars as pl
    rows = []
    for t in p["topologies"]:
        nodes, per_llc = TOPOLOGIES[t]
        ratios = p["snc_ratios"] if per_llc > 1 else p["ratios"]
        names = p["workloads"] if nodes == 2 else [p["k1_workload"]]
        for name in names:
            for r in ratios:
                g = _topology_gain(p, runs, t, name, r)
                row = {"topology": t, "workload": name, "nodes": nodes,
                       "nodes_per_llc": per_llc, "ratio": float(r), "gain": g}
                for cost in COSTS:
                    # with an LLC per node KTR's counts are the baseline's: nothing to drop
                    row[f"cost_{cost}"] = 0.0 if cost == "copies in the LLC" and per_llc == 1 \
                        else _topology_gain(p, runs, t, name, r, cost) - g
                row["worst_cost"] = max(COSTS, key=lambda k: row[f"cost_{k}"])
                rows.append(row)
    return pl.DataFrame(rows)


def user_numa_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """The K1 workload on every node count: KTR with user data made local, against
    baselines with user data local, interleaved, on the next node or all on node 0."""
    import polars as pl
    rows = []
    for n in p["node_counts"]:
        c = runs[("nodes", n)]
        for bname, bp in _POLICY.items():
            for r in p["ratios"]:
                rows.append({"nodes": n, "baseline_user": bname, "ratio": float(r),
                             "ktr_only": gain(c, p, r, base_policy=bp, new_policy=bp),
                             "ktr_local_user": gain(c, p, r, base_policy=bp,
                                                    new_policy=UserPolicy.LOCAL),
                             "local_user_only": gain(c, p, r, base_policy=bp,
                                                     new_policy=UserPolicy.LOCAL,
                                                     scheme=Scheme.BASELINE)})
    return pl.DataFrame(rows)


def k1_sweep(p: dict, runs: dict, *, combined: bool = False) -> list[dict]:
    """The joint sweep of the ``assumed`` parameters the K1 (``combined``: K2) value depends
    on: LLC capacity and kernel share (simulated), the dependent fractions of instruction-fetch
    and data misses and the background load (charged) and the sourced range of
    cross-socket ratios; with a trace-driven K1 workload also the linear-map placement rule
    (``linear_scale`` at the ends of its range, the rest at the centre)."""
    bp = _POLICY[p["baseline_user_policy"]]
    newp = UserPolicy.LOCAL if combined else bp
    out = []
    lo_i, hi_i = p["dep_ifetch_range"]
    lo_d, hi_d = p["dep_data_range"]
    lo_b, hi_b = p["background_range"]
    mt, ko = p["module_text_fraction"], p["kobj_remote_fraction"]
    ratios = sorted({*(float(r) for r in p["k1_ratios"]), float(p["remote_ratio"])})
    kf0 = WORKLOADS[p["k1_workload"]].kernel_fraction
    centred = p["llc_bytes"] in p["llc_sweep_bytes"] and kf0 in p["kernel_fraction_sweep"]
    traced = ({"linear_scale": p["linear_scale"]}
              if trace_workload(p, p["k1_workload"]) is not None else {})
    for llc in p["llc_sweep_bytes"]:
        for kf in p["kernel_fraction_sweep"]:
            c = runs[("sweep", llc, kf)]
            for q in grid({"dep_ifetch": sorted({lo_i, p["dep_ifetch"], hi_i}),
                           "dep_data": sorted({lo_d, p["dep_data"], hi_d}),
                           "background": sorted({lo_b, p["background"], hi_b}),
                           "remote_ratio": ratios}):
                out.append({"params": {"llc_bytes": llc, "kernel_fraction": kf, **q,
                                       "module_text_fraction": mt, "kobj_remote_fraction": ko,
                                       **traced},
                            "value": gain(c, p, q["remote_ratio"], base_policy=bp,
                                          new_policy=newp, costs=host_costs(p, **q))})
            # the placement rules of replication's costs: each alone at the ends of its
            # range and both at their corners, the other parameters at their published
            # values (each point is two solves: crossing them with the rest of the sweep
            # would triple its time)
            if centred and (llc, kf) != (p["llc_bytes"], kf0):
                continue
            pairs = {(m, ko) for m in p["module_text_range"]} \
                | {(mt, k) for k in p["kobj_remote_range"]} \
                | {(m, k) for m in p["module_text_range"] for k in p["kobj_remote_range"]}
            for m, k in sorted(pairs - {(mt, ko)}):
                rc = replica_costs(p, module_text_fraction=m, kobj_remote_fraction=k)
                for r in ratios:
                    out.append({"params": {"llc_bytes": llc, "kernel_fraction": kf,
                                           "dep_ifetch": p["dep_ifetch"],
                                           "dep_data": p["dep_data"],
                                           "background": p["background"],
                                           "remote_ratio": float(r),
                                           "module_text_fraction": float(m),
                                           "kobj_remote_fraction": float(k), **traced},
                                "value": gain(c, p, r, base_policy=bp, new_policy=newp,
                                              replica=rc)})
    # the linear-map placement rule of the trace-driven workload, the others at their centre
    for key, c in runs.items():
        if key[0] != "linear":
            continue
        for r in ratios:
            out.append({"params": {"llc_bytes": p["llc_bytes"],
                                   "kernel_fraction": WORKLOADS[p["k1_workload"]].kernel_fraction,
                                   "dep_ifetch": p["dep_ifetch"], "dep_data": p["dep_data"],
                                   "background": p["background"], "remote_ratio": float(r),
                                   "module_text_fraction": mt, "kobj_remote_fraction": ko,
                                   "linear_scale": key[1]},
                        "value": gain(c, p, r, base_policy=bp, new_policy=newp)})
    return out


@cached()
def memory_frame(p: dict) -> "pl.DataFrame":
    """K5: bytes replication adds per node count and geometry, counted from the tables
    built and by the closed form, and its spread over the ``assumed`` rodata size."""
    import polars as pl
    rows = []
    kpti = bool(p["unmap_kernel_at_el0"])
    for spec in p["geometries"]:
        g = _geometry(spec)
        for rodata in sorted({p["rodata_range_bytes"][0], p["rodata_bytes"],
                              p["rodata_range_bytes"][1]}):
            img = KernelImage(text_bytes=p["text_bytes"], rodata_bytes=rodata)
            for n in (1, 2, 4, 8):
                mb = replication_bytes_model(img, g, n, unmap_kernel_at_el0=kpti,
                                             ktr_tables=p["ktr_tables"])
                fb = replication_bytes_formula(img, g, n, unmap_kernel_at_el0=kpti)
                by_node = mb["lower_table_bytes_by_node"]
                rows.append({"geometry": spec, "rodata_bytes": rodata, "nodes": n,
                             "copy_bytes": mb["copy_bytes"], "table_bytes": mb["table_bytes"],
                             "model_bytes": mb["total_bytes"], "formula_bytes": fb["total_bytes"],
                             "top_table_bytes": g.top_table_bytes,
                             "top_tables_per_node": top_tables_per_node(kpti),
                             "lower_tables_max_node_bytes": max(by_node.values(), default=0)})
    return pl.DataFrame(rows)


@cached()
def patch_frame(p: dict) -> tuple["pl.DataFrame", "pl.DataFrame"]:
    """K4: the patching CPU's time per patch and the machine's, against the node count
    (one copy per node, ``cores_per_node`` cores each) for both synchronisations; and the
    share of machine time spent patching against the patch rate, with and without
    replication, per patching path with the synchronisation it really uses
    (:data:`PATCH_PATHS`: static keys and ftrace nosync, kprobes under ``stop_machine``),
    over the ``assumed`` per-write costs."""
    import polars as pl
    cost = patch_cost_of(p)
    rows = []
    for n in (1, 2, 4, 8):
        topo = eng.generic(n, p["local_ns"], p["remote_ratio"], cpus_per_node=p["cores_per_node"])
        for sync in (PatchSync.STOP_MACHINE, PatchSync.NOSYNC):
            c = replace(cost, sync=sync)
            rows.append({"nodes": n, "sync": sync.name.lower(),
                         "patch_ns": patch_window_ns(topo, n, c),
                         "machine_ns": patch_machine_ns(topo, n, c)})
    by_nodes = pl.DataFrame(rows)
    rows = []
    for n in p["node_counts"]:
        topo = eng.generic(n, p["local_ns"], p["remote_ratio"], cpus_per_node=p["cores_per_node"])
        for scale, label in ((0.25, "costs x0.25"), (1.0, "costs as set"), (4.0, "costs x4")):
            c = cost.scaled(scale)
            for path in ("static_key", "kprobe"):
                for rate in p["patch_rates"]:
                    mix = {path: rate}
                    rows.append({"nodes": n, "costs": label, "path": path,
                                 "rate_per_s": float(rate),
                                 "extra_fraction": patch_mix_fraction(topo, n, mix, c)
                                 - patch_mix_fraction(topo, 1, mix, c)})
    return by_nodes, pl.DataFrame(rows)


def headline_values(p: dict, c: HostCounts, gains: "pl.DataFrame | None" = None) -> dict:
    """The values of K1, K2 and K3 from ``c``, a run of the K1 workload on 2 nodes: KTR's
    gain at ``remote_ratio`` with user data under the baseline policy (K1) and made local
    (K2), and its 2-node gain at every ratio of ``ratios`` (K3, ``{"ratio", "gain"}``) read
    from ``gains`` (:func:`gain_frame`; made from ``c`` when not given)."""
    bp = _POLICY[p["baseline_user_policy"]]
    r0 = p["remote_ratio"]
    k1 = p["k1_workload"]
    if gains is None:
        gains = gain_frame({**p, "workloads": [k1], "node_counts": [2]}, {("workload", k1): c})
    g3 = gains.filter((gains["workload"] == k1) & (gains["nodes"] == 2)).sort("ratio")
    return {"K1": gain(c, p, r0, base_policy=bp, new_policy=bp),
            "K2": gain(c, p, r0, base_policy=bp, new_policy=UserPolicy.LOCAL),
            "K3": {"ratio": g3["ratio"].to_list(), "gain": g3["gain"].to_list()}}


@cached()
def replicates(p: dict) -> dict[str, list[dict]]:
    """K1-K3 again (:func:`kmm.suite.registry.convergence`): the K1 workload on 2 nodes at
    the runs of :func:`kmm.suite.study.replicate_plan`, each through
    :func:`headline_values`. The published value pools the runs of ``seeds``; the
    replicate at ``seed + k`` pools them shifted by ``k * len(seeds)`` (draws disjoint from
    the published ones) and is recorded under its first seed. The length is
    ``accesses_per_cpu``, the measured accesses per simulated CPU; the half-length
    replicate keeps the warm-up (a run of its own: the kernels give their counts once, at
    the end of a run). K4 and K5 are deterministic (:func:`evidence`)."""
    k1 = p["k1_workload"]
    seeds = [int(s) for s in p["seeds"]]
    runs = []
    for seed, length in replicate_plan(p["seed"], p["accesses_per_cpu"]):
        pool = [s + (seed - p["seed"]) * len(seeds) for s in seeds]
        c = simulate_seeds(WORKLOADS[k1], machine_of(p), replace(run_of(p),
                           accesses_per_cpu=length), pool, trace=trace_workload(p, k1))
        runs.append((pool[0], length, headline_values(p, c)))
    return replicates_from(runs)


def claim_values(p: dict, runs: dict, gains: "pl.DataFrame", mem: "pl.DataFrame",
                 patches: "pl.DataFrame", topo: "pl.DataFrame | None" = None) -> dict[str, dict]:
    """Values, units, sweeps and one-sentence explanations of K1-K5 at these parameters
    (``topo``, :func:`topology_frame`, adds where the gain turns negative to K3's)."""
    bp = _POLICY[p["baseline_user_policy"]]
    db = runs[("nodes", 2)]
    costs = host_costs(p)
    r0 = p["remote_ratio"]
    lat = _latency(2, costs.local_ns, r0)
    headline = headline_values(p, db, gains)
    out = {}
    # K1
    k1 = headline["K1"]
    sw1 = k1_sweep(p, runs)
    vals = [s["value"] for s in sw1]
    br = time_breakdown(db, lat, Scheme.BASELINE, bp, costs)
    share = br["mem_replicated_ns"] / sum(br.values())
    centre = {"kernel_fraction": WORKLOADS[p["k1_workload"]].kernel_fraction}
    out["K1"] = {"value": k1, "unit": "fraction", "sweep": sw1, "centre": centre,
                 "explanation": (
                     f"On 2 nodes at a {r0:g}x remote/local ratio the {p['k1_workload']} mix"
                     f"{source_note(p, runs, r0)} gains {k1:+.1%} because only the replicated lines (text, rodata) that "
                     f"miss every cache and are fetched across the socket get cheaper, and "
                     f"they are {share:.1%} of the baseline's time (less the "
                     f"{p['module_text_fraction']:.0%} of them that are module text, not "
                     f"copied; kernel objects {p['kobj_remote_fraction']:.0%} remote, cold "
                     f"copies after {p['cold_share']:.0%} of migrations and top-level table "
                     f"updates charged on both sides); over the joint sweep of "
                     f"LLC capacity, kernel share, the dependent shares of fetch and data misses, "
                     f"background load, the published ratios and the module and kernel-object "
                     f"shares the "
                     f"gain spans {min(vals):+.1%} to {max(vals):+.1%}, moved most by "
                     f"{most_influential(sw1)}.")}
    # K2
    k2 = headline["K2"]
    k2_user = gain(db, p, r0, base_policy=bp, new_policy=UserPolicy.LOCAL,
                   scheme=Scheme.BASELINE)
    sw2 = k1_sweep(p, runs, combined=True)
    v2 = [s["value"] for s in sw2]
    best = {}
    for n in p["node_counts"]:
        c = runs[("nodes", n)]
        for bname, bpol in _POLICY.items():
            for r in p["ratios"]:
                g2 = gain(c, p, r, base_policy=bpol, new_policy=UserPolicy.LOCAL)
                if not best or g2 > best["gain"]:
                    best = {"gain": g2, "nodes": n, "baseline": bname, "ratio": r}
    out["K2"] = {"value": k2, "unit": "fraction", "sweep": sw2, "centre": centre,
                 "explanation": (
                     f"Replication plus node-local user data gains {k2:+.1%} over the "
                     f"{p['baseline_user_policy']} baseline on 2 nodes at {r0:g}x (from "
                     f"{min(v2):+.1%} to {max(v2):+.1%} over the joint sweep), of which "
                     f"local user data alone gives {k2_user:+.1%} and replication alone "
                     f"{k1:+.1%}; the largest gain in the whole grid, {best['gain']:+.1%}, "
                     f"takes {best['nodes']} nodes, a ratio of {best['ratio']:g} and a "
                     f"baseline with user data {best['baseline']}, so gains of that size come "
                     f"from where user memory is placed.")}
    # K3
    ratios, gl = headline["K3"]["ratio"], headline["K3"]["gain"]
    topo1 = eng.generic(2, costs.local_ns, 1.0, cpus_per_node=p["cores_per_node"])
    extra = (patch_mix_fraction(topo1, 2, patch_rates_of(p), patch_cost_of(p))
             - patch_mix_fraction(topo1, 1, patch_rates_of(p), patch_cost_of(p)))
    sync = pgd_sync_fraction(topo1, 2, p["pgd_updates_per_s"])
    neg = ""
    if topo is not None:
        worst = topo.filter(topo["nodes_per_llc"] > 1).sort("gain")
        if worst.height and worst["gain"][0] < 0:
            w = worst.row(0, named=True)
            neg = (f" Where nodes share an LLC it turns negative: on {w['topology']} the "
                   f"{w['workload']} mix loses {-w['gain']:.1%} at a sibling ratio of "
                   f"{w['ratio']:g}, made so by {w['worst_cost']} "
                   f"({w['cost_' + w['worst_cost']]:+.1%} of gain).")
    out["K3"] = {"value": {"ratio": ratios, "gain": gl}, "unit": "", "sweep": [],
                 "explanation": (
                     f"On 2 nodes with an LLC each the gain goes from {gl[0]:+.2%} at ratio "
                     f"{ratios[0]:g} to {gl[-1]:+.1%} at {ratios[-1]:g} because the memory "
                     f"reads of replicated lines and kernel tables get cheaper by (ratio - 1) x "
                     f"local latency, less the {p['module_text_fraction']:.0%} of them that are "
                     f"module text and stay on node 0; at ratio 1.0 the copies are as fast as "
                     f"the original and what remains is patching every copy ({extra:.1e} of "
                     f"machine time at {p['patches_per_s']:g} static-key flips/s and "
                     f"{p['kprobe_patches_per_s']:g} kprobe patches/s), copying top-level "
                     f"table updates ({sync:.1e} at {p['pgd_updates_per_s']:g}/s) and the "
                     f"shift of memory load off node 0.{neg}")}
    # K4
    sm = patches.filter(patches["sync"] == p["patch_sync"]).sort("nodes")
    nodes = sm["nodes"].to_list()
    pns = sm["patch_ns"].to_list()
    topo = eng.generic(2, costs.local_ns, r0, cpus_per_node=p["cores_per_node"])
    be = {path: break_even_patch_rate(topo, max(k1, 0.0),
                                      replace(patch_cost_of(p), sync=PATCH_PATHS[path]))
          for path in ("static_key", "kprobe")}
    flush = fixmap_flush_ns(topo.cpus, patch_cost_of(p))
    out["K4"] = {"value": {"nodes": nodes, "patch_ns": pns}, "unit": "ns", "sweep": [],
                 "explanation": (
                     f"Each patched instruction is written through the fixmap slot (whose "
                     f"unmap is a broadcast flush_tlb_kernel_range, {flush:.0f} ns on "
                     f"{topo.cpus} CPUs) and cleaned to the point of unification once per "
                     f"copy, so one {p['patch_sites']}-site {p['patch_sync']} patch takes "
                     f"{pns[0] / 1e3:.1f} us on one node and {pns[-1] / 1e3:.1f} us on "
                     f"{nodes[-1]}; on 2 nodes of {p['cores_per_node']} cores the extra "
                     f"patching cancels the K1 gain at {be['static_key']:.3g} static-key "
                     f"flips per second (nosync, as static keys and ftrace patch) or "
                     f"{be['kprobe']:.3g} kprobe patches per second (under stop_machine).")}
    # K5
    g0 = p["geometries"][0]
    mk = mem.filter((mem["geometry"] == g0) & (mem["rodata_bytes"] == p["rodata_bytes"])).sort("nodes")
    two = mk.filter(mk["nodes"] == 2).row(0, named=True)
    allm = mem.filter(mem["rodata_bytes"] == p["rodata_bytes"]).sort(["geometry", "nodes"])
    out["K5"] = {"value": {"model_bytes": allm["model_bytes"].to_list(),
                           "formula_bytes": allm["formula_bytes"].to_list()},
                 "unit": "bytes", "sweep": [],
                 "explanation": (
                     f"With {g0} each extra node costs one text+rodata copy "
                     f"({two['copy_bytes'] / 2**20:.1f} MiB) and "
                     f"{two['table_bytes']} bytes of tables (the RFC's per-node set of "
                     f"{two['top_tables_per_node']} top-level tables of "
                     f"{two['top_table_bytes']} bytes, with tramp_pg_dir "
                     f"{'included' if p['unmap_kernel_at_el0'] else 'left out'}, and the "
                     f"image subtree's lower tables), and the bytes "
                     f"counted from the tables the engine builds equal the closed form for "
                     f"every geometry and node count.")}
    return out


def source_note(p: dict, runs: dict, ratio: float) -> str:
    """How the K1 workload's kernel phases were made, and the K1 gain under the other
    source, for the explanations."""
    k1 = p["k1_workload"]
    other = runs.get(("other", k1))
    if other is None:
        return " (synthetic kernel stream)"
    bp = _POLICY[p["baseline_user_policy"]]
    g = gain(other, p, ratio, base_policy=bp, new_policy=bp)
    if p["workload_source"] == "trace":
        return (f" (kernel phases replayed from the captured {', '.join(p[TRACED[k1]])} "
                f"traces; the synthetic kernel stream gives {g:+.1%})")
    return (f" (synthetic kernel stream; replaying the captured {', '.join(p[TRACED[k1]])} "
            f"traces gives {g:+.1%})")


def sources_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Trace-driven and synthetic kernel phases side by side, per workload with a captured
    counterpart: KTR's gain against the ratio, and at every ratio the baseline's CPI, L1
    I-cache misses, replicated-line memory reads and walks per 1000 instructions at the K1
    ratio."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    costs = host_costs(p)
    lat = _latency(2, costs.local_ns, p["remote_ratio"])
    rows = []
    for name in p["workloads"]:
        if ("other", name) not in runs:
            continue
        other = "synthetic" if p["workload_source"] == "trace" else "trace"
        for source, c in ((p["workload_source"], runs[("workload", name)]),
                          (other, runs[("other", name)])):
            t = system_time_ns(c, lat, Scheme.BASELINE, bp, costs)
            ki = c.instructions / 1000.0
            stats = {"CPI": t / c.nodes / c.instructions * costs.cpu_ghz,
                     "L1I_MPKI": float(c.served[0, 1:].sum()) / ki,
                     "replicated_mem_PKI": float(c.mem[:, c.sim_node, c.classes.TEXT].sum()) / ki,
                     "TLB_walks_PKI": c.walks / ki}
            for r in p["ratios"]:
                rows.append({"workload": name, "source": source, "ratio": float(r),
                             "gain": gain(c, p, r, base_policy=bp, new_policy=bp), **stats})
    return pl.DataFrame(rows)


def footprint_frame(p: dict) -> "pl.DataFrame":
    """Synthetic against real: each footprint parameter of the workloads with a captured
    counterpart (:func:`kmm.mech.host.workload.synthetic_footprint`, with the hot kernel
    text of the drawn layout) next to its value measured on each of their traces
    (:func:`kmm.mech.host.workload.trace_footprint`) and the ratio of the two."""
    import polars as pl
    from ..host.workload import synthetic_footprint, trace_footprints
    rows = []
    for name in p["workloads"]:
        if name not in TRACED:
            continue
        syn = synthetic_footprint(WORKLOADS[name], machine_of(p), seed=p["seed"])
        for scen, meas in trace_footprints(tuple(p[TRACED[name]])).items():
            for key, v in syn.items():
                m = float(meas[key])
                rows.append({"workload": name, "trace": scen, "parameter": key,
                             "synthetic": float(v), "measured": m,
                             "measured_over_synthetic": m / float(v) if v else float("nan")})
    return pl.DataFrame(rows)


def workloads_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """The phase mixes and what they do on the baseline at the K1 ratio: CPI, L1 I-cache
    misses and replicated-line memory reads per 1000 instructions."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    costs = host_costs(p)
    lat = _latency(2, costs.local_ns, p["remote_ratio"])
    rows = []
    for name in p["workloads"]:
        w = WORKLOADS[name]
        c = runs[("workload", name)]
        t = system_time_ns(c, lat, Scheme.BASELINE, bp, costs)
        ki = c.instructions / 1000.0
        rows.append({"workload": name, "kernel_fraction": w.kernel_fraction,
                     "kernel_entry_insns": w.kernel_entry_insns,
                     "kernel_hot_funcs": w.kernel_hot_funcs, "user_hot_funcs": w.user_hot_funcs,
                     "udata_MiB": w.udata_bytes / MiB,
                     "CPI": t / c.nodes / c.instructions * costs.cpu_ghz,
                     "L1I_MPKI": float(c.served[0, 1:].sum()) / ki,
                     "replicated_mem_PKI": float(c.mem[:, c.sim_node, c.classes.TEXT].sum()) / ki,
                     "TLB_walks_PKI": c.walks / ki})
    return pl.DataFrame(rows)


def breakdown_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Where the time goes, baseline and KTR, per workload on 2 nodes at the K1 ratio."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    costs = host_costs(p)
    lat = _latency(2, costs.local_ns, p["remote_ratio"])
    rows = []
    for name in p["workloads"]:
        c = runs[("workload", name)]
        base_total = system_time_ns(c, lat, Scheme.BASELINE, bp, costs)
        for scheme in (Scheme.BASELINE, Scheme.KTR):
            for part, ns in time_breakdown(c, lat, scheme, bp, costs).items():
                rows.append({"workload": name, "scheme": scheme.name.lower(),
                             "part": part.removesuffix("_ns"), "share_of_baseline": ns / base_total})
    return pl.DataFrame(rows)


def migration_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """The K1 workload's gains against the migration probability (2 nodes, K1 ratio)."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    rows = []
    for mg in sorted(set(p["migration_sweep"]) | {p["migration"]}):
        c = runs.get(("migration", mg)) or runs[("nodes", 2)]
        rc = replica_costs(p, migration=mg)
        for label, newp in (("KTR", bp), ("KTR + local user data", UserPolicy.LOCAL)):
            rows.append({"migration": float(mg), "variant": label,
                         "gain": gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=newp,
                                      replica=rc)})
    return pl.DataFrame(rows)


def tornado_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """K1's gain with one charged ``assumed`` parameter at a time at the ends of its range
    (the others as set): base CPI, LLC hit time, L2 TLB hit time, dependent fractions of
    fetch and data misses, background load, outstanding-read limit, clock, and the costs of
    replication (module text share, remote kernel objects, cold copies after migration,
    top-level table updates)."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    c = runs[("nodes", 2)]
    ranges = {"cpi_base": p["cpi_base_range"], "llc_ns": p["llc_ns_range"],
              "l2_tlb_cycles": p["l2_tlb_cycles_range"], "dep_ifetch": p["dep_ifetch_range"],
              "dep_data": p["dep_data_range"], "background": p["background_range"],
              "outstanding": p["outstanding_range"], "cpu_ghz": p["cpu_ghz_range"]}
    base = gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=bp)
    rows = []
    for name, (lo, hi) in ranges.items():
        for end, v in (("low", lo), ("high", hi)):
            g = gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=bp,
                     costs=host_costs(p, **{name: v}))
            rows.append({"parameter": name, "end": end, "value": float(v), "gain": g,
                         "change": g - base})
    # the costs of replication beyond patching (:class:`ReplicaCosts`, the table sync)
    for name, rng in (("module_text_fraction", p["module_text_range"]),
                      ("kobj_remote_fraction", p["kobj_remote_range"]),
                      ("cold_share", p["cold_share_range"]),
                      ("pgd_updates_per_s", p["pgd_updates_range"])):
        for end, v in zip(("low", "high"), rng):
            if name == "pgd_updates_per_s":
                g = gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=bp,
                         pgd_updates_per_s=v)
            else:
                g = gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=bp,
                         replica=replica_costs(p, **{name: v}))
            rows.append({"parameter": name, "end": end, "value": float(v), "gain": g,
                         "change": g - base})
    return pl.DataFrame(rows)


def sweep_frame(values: dict) -> "pl.DataFrame":
    """The K1 and K2 joint sweeps as rows (one per point)."""
    import polars as pl
    rows = []
    for cid in ("K1", "K2"):
        for pt in values[cid]["sweep"]:
            rows.append({"claim": cid, **pt["params"], "gain": pt["value"]})
    return pl.DataFrame(rows)


def results_frame(p: dict, scenario: str, gains, numa_grid, mem, patch_nodes, patch_rates,
                  values: dict, topo=None) -> "pl.DataFrame":
    """The notebook's tidy frame (:mod:`kmm.results`)."""
    from ... import results
    rows = []
    seed = p["seeds"]  # the simulations pool every seed: rows list them all
    for r in ([] if topo is None else topo.iter_rows(named=True)):
        rows += _rows(scenario, {"topology": r["topology"], "workload": r["workload"],
                                 "nodes": r["nodes"], "latency_ratio": r["ratio"]}, seed,
                      {"gain": (r["gain"], "fraction"),
                       **{f"gain_lost_to_{k.replace(' ', '_').replace('-', '_')}":
                          (r[f"cost_{k}"], "fraction") for k in COSTS}})
    for r in gains.iter_rows(named=True):
        rows += _rows(scenario, {"workload": r["workload"], "nodes": r["nodes"],
                                 "latency_ratio": r["ratio"]}, seed,
                      {"gain": (r["gain"], "fraction")})
    for r in numa_grid.iter_rows(named=True):
        rows += _rows(scenario, {"nodes": r["nodes"], "baseline_user": r["baseline_user"],
                                 "latency_ratio": r["ratio"]}, seed,
                      {"gain_ktr_only": (r["ktr_only"], "fraction"),
                       "gain_ktr_local_user": (r["ktr_local_user"], "fraction"),
                       "gain_local_user_only": (r["local_user_only"], "fraction")})
    for r in mem.iter_rows(named=True):
        rows += _rows(scenario, {"geometry": r["geometry"], "nodes": r["nodes"],
                                 "rodata_bytes": r["rodata_bytes"]}, seed,
                      {"copy_bytes": (r["copy_bytes"], "bytes"),
                       "table_bytes": (r["table_bytes"], "bytes"),
                       "formula_bytes": (r["formula_bytes"], "bytes")})
    for r in patch_nodes.iter_rows(named=True):
        rows += _rows(scenario, {"nodes": r["nodes"], "sync": r["sync"]}, seed,
                      {"patch_ns": (r["patch_ns"], "ns"), "patch_machine_ns": (r["machine_ns"], "ns")})
    for r in patch_rates.iter_rows(named=True):
        rows += _rows(scenario, {"nodes": r["nodes"], "patch_costs": r["costs"],
                                 "patch_path": r["path"],
                                 "patch_rate_per_s": r["rate_per_s"]}, seed,
                      {"patch_extra_fraction": (r["extra_fraction"], "fraction")})
    for cid in ("K1", "K2"):
        for pt in values[cid]["sweep"]:
            rows += _rows(scenario, {**pt["params"], "claim": cid}, seed,
                          {"gain": (pt["value"], "fraction")})
    return results.frame(rows)


CHARTS = {"K1": "ktr_sensitivity", "K2": "ktr_user_numa", "K3": "ktr_gain_vs_ratio",
          "K4": "ktr_patch_vs_nodes", "K5": "ktr_memory_vs_nodes"}


class Computed(NamedTuple):
    """What the evidence, the frame and the notebook's later cells read (:func:`computed`)."""

    runs: dict
    gains: "pl.DataFrame"
    mem: "pl.DataFrame"
    patch_nodes: "pl.DataFrame"
    patch_rates: "pl.DataFrame"
    values: dict
    topo: "pl.DataFrame"


@cached()
def computed(p: dict) -> Computed:
    """Runs, frames and claim values at parameters ``p``, computed once for the notebook's
    cells, the evidence and the frame (memoised: treat as read-only)."""
    runs = simulate_all(p)
    gains, mem = gain_frame(p, runs), memory_frame(p)
    patch_nodes, patch_rates = patch_frame(p)
    topo = topology_frame(p, runs)
    values = claim_values(p, runs, gains, mem, patch_nodes, topo)
    return Computed(runs, gains, mem, patch_nodes, patch_rates, values, topo)


def evidence(p: dict) -> dict:
    """K1-K5 at parameters ``p`` (:class:`kmm.suite.study.Evidence` per claim), K1-K3 with
    their :func:`replicates`. K4 and K5 are deterministic: the patch time is a closed form
    of the per-write costs and the machine (:func:`patch_frame`), and the bytes are counted
    from page tables built from the image layout (:func:`memory_frame`); neither draws
    anything or runs a stream."""
    values = {c: dict(v) for c, v in computed(p).values.items()}
    for c, reps in replicates(p).items():
        values[c]["replicates"] = reps
    for c in ("K4", "K5"):
        values[c]["deterministic"] = True
    return evidence_from(values, CHARTS)


def frame(p: dict, scenario: str) -> "pl.DataFrame":
    """The notebook's tidy frame at parameters ``p``."""
    runs, gains, mem, patch_nodes, patch_rates, values, topo = computed(p)
    return results_frame(p, scenario, gains, user_numa_frame(p, runs), mem, patch_nodes,
                         patch_rates, values, topo)


STUDY = Study("ktr", tuple(CHARTS), DEFAULTS, evidence, check_params, frame)
