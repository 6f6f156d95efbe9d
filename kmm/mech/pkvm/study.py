"""pkvm: the study: parameters, evidence per claim, frames.

Part of :mod:`kmm.mech.pkvm`."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ... import engine as eng
from ...errors import ConfigError
from ...sampling import latin_hypercube
from ..host.model import (class_memory_ns, HostCosts, KernelImage, Machine, ReplicaCosts,
    patch_overhead_fraction, PATCH_PATHS, patch_window_ns, PatchCost, PatchSync, RunConfig, Scheme,
    simulate_seeds, source_times_ns, system_time_ns, UserPolicy, WORKLOADS)
from .model import (counterfactual_walks, crossover_exit_rate, decompose_walks, HostMemory,
    HYP_POOLS, hypothetical_reason, nested_references, net_gain, S2Leaf, stage2_leaf_options,
    stage2_memory, stage2_page_cycle, stage2_setup, stage2_sync_fraction, SyncCost,
    text_write_events, text_write_fraction, trapped_patch_window_ns, vhe_crossover_rate)
from ...suite.study import (cached, evidence_from, grid, one_at_a_time, replicate_plan,
    replicates_from, Study)
from ..host.workload import TraceWorkload

#: The notebook's parameters with their small defaults (the cell repeats them).
DEFAULTS: dict = {"seed": 1, "seeds": [1], "workload": "database", "workloads": ["database"],
    "remote_ratio": 2.2, "ratio_range": [1.69, 3.0], "local_ns": 117.0, "cpu_ghz": 2.5,
    "cpi_base": 1.0, "l2_cycles": 11.0, "llc_ns": 30.0, "l2_tlb_cycles": 5.0, "dep_ifetch": 0.8,
    "dep_data": 0.5, "background": 0.3, "outstanding": 22, "background_range": [0.0, 0.8],
    "dep_ifetch_range": [0.5, 1.0], "s2_walk_cache_entries": 64,
    "s2_walk_cache_range": [0, 128], "s2_walk_cache_page_leaves": False, "hyp_pool": "top", "llc_bytes": 8388608, "migration": 0.05, "cpus_per_node": 2,
    "accesses_per_cpu": 8000, "warmup_per_cpu": 8000, "baseline_user_policy": "interleave",
    "text_bytes": 16570322, "rodata_bytes": 6291456, "s2_granules": ["4K", "64K"],
    "s1_granule": "4K", "ipa_bits": 48, "debate_leaf": "4K page 4K", "pkvm_leaf": "4K block 1G",
    "text_aligned": True, "exit_rates": [100.0, 1000.0, 10000.0, 100000.0, 1000000.0],
    "nvhe_exit_extra_ns": 1500.0, "nvhe_exit_extra_range": [500.0, 5000.0],
    "el2_exits_per_kinstr": 0.02, "el2_exit_sweep": [0.02], "hyp_text_bytes": 16384,
    "s6_nodes": [1, 2, 4, 8], "s6_ram_per_node_bytes": 68719476736, "s6_granules": ["4K", "64K"],
    "cores_per_node": 32, "patch_sites": 8, "fixmap_ns": 300.0, "cmo_ns": 500.0, "sync_ns": 5000.0,
    "patch_sync": "nosync", "patches_per_s": 1.0, "kprobe_patches_per_s": 0.1, "el2_trap_ns": 500.0, "tlbi_ns": 10.0,
    "dsb_ish_ns": 200.0, "dsb_ish_per_cpu_ns": 5.0, "s2_pages_per_s": 10000.0,
    "s2_tlbi_per_set": True, "rewalk_working_set": 256, "rewalk_memory_refs": 1.0,
    "overhead_rates": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0],
    "overhead_nodes": [1, 2, 4, 8], "s4_overhead_points": 4, "workload_source": "trace",
    "trace_database": ["memcached", "pagecache"], "trace_syscall": ["syscalls"],
    "linear_scale": 4}
NOTEBOOK_KEYS = tuple(DEFAULTS)

#: The plausible ranges of the ``assumed`` overhead parameters S4's sweep samples, in the
#: order sampled (params/pkvm.yaml declares the same ranges).
ASSUMED: dict = {"el2_trap_ns": (150.0, 2000.0), "fixmap_ns": (75.0, 1200.0),
    "cmo_ns": (125.0, 2000.0), "sync_ns": (1250.0, 20000.0), "tlbi_ns": (5.0, 50.0),
    "dsb_ish_ns": (50.0, 1000.0), "dsb_ish_per_cpu_ns": (0.0, 20.0), "cores_per_node": (16, 64),
    "patches_per_s": (0.01, 1000.0), "s2_pages_per_s": (10.0, 1000000.0),
    "kprobe_patches_per_s": (0.01, 10.0), "rewalk_working_set": (64, 1536),
    "rewalk_memory_refs": (0.5, 2.0)}
#: ``assumed`` parameters of the text-write and stage-2 sync overheads, sampled jointly
#: (Latin hypercube over their ranges, :data:`ASSUMED`) in S4's sweep.
OVERHEAD_ASSUMED = tuple(ASSUMED)
_PATCH_SYNC = ("stop_machine", "nosync")


def check_params(p: dict) -> dict:
    """The rules beyond types: known workload, leaves and patch sync, the 2-node machine."""
    if p["workload"] not in WORKLOADS:
        raise ConfigError(f"workloads are {', '.join(WORKLOADS)}", "workload")
    labels = [o.label for g in p["s2_granules"] for o in stage2_leaf_options(g, p["ipa_bits"])]
    for k in ("debate_leaf", "pkvm_leaf"):
        if p[k] not in labels:
            raise ConfigError(f"must be one of {', '.join(labels)}", k)
    if p["hyp_pool"] not in HYP_POOLS:
        raise ConfigError(f"must be one of {', '.join(HYP_POOLS)}", "hyp_pool")
    if p["patch_sync"] not in _PATCH_SYNC:
        raise ConfigError(f"must be one of {', '.join(_PATCH_SYNC)}", "patch_sync")
    if 2 not in p["overhead_nodes"]:
        raise ConfigError("must include 2 (the comparison's machine)", "overhead_nodes")
    if p["workload_source"] not in WORKLOAD_SOURCES:
        raise ConfigError(f"must be one of {', '.join(WORKLOAD_SOURCES)}", "workload_source")
    for name in TRACED:
        trace_workload(p, name, "trace")  # a scenario that is not shipped is refused here
    return p


#: As in :mod:`kmm.mech.ktr`: ``trace`` replays captured kernel traces in the kernel phases
#: of the mixes that have them (:func:`trace_workload`), ``synthetic`` draws every one.
WORKLOAD_SOURCES = ("trace", "synthetic")
TRACED = {"database": "trace_database", "syscall": "trace_syscall"}


def trace_workload(p: dict, name: str, source: str | None = None) -> TraceWorkload | None:
    """The captured kernel activity workload ``name`` replays under ``source`` (default
    ``workload_source``), or None where it stays synthetic. Under stage 2 every replayed
    EL1 reference (fetches included) translates in two stages."""
    if (source or p["workload_source"]) != "trace" or name not in TRACED:
        return None
    return TraceWorkload(tuple(p[TRACED[name]]), p["linear_scale"])


def params_from(ns: dict) -> dict:
    """The notebook's parameters from ``ns`` (its globals): :meth:`STUDY.params`."""
    return STUDY.params(ns)


_HOST_KEYS = ("local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles",
              "dep_ifetch", "dep_data", "background")


def _ktr_params(p: dict) -> dict:
    return {k: p[k] for k in _HOST_KEYS}


def _costs(p: dict, **over):
    return HostCosts(**{k: float(over.get(k, v)) for k, v in _ktr_params(p).items()},
                     outstanding=int(over.get("outstanding", p["outstanding"])))


def _machine(p: dict, s2_walk_cache_entries: int | None = None):
    wc = p["s2_walk_cache_entries"] if s2_walk_cache_entries is None else s2_walk_cache_entries
    return Machine(nodes=2, cpus_per_node=p["cpus_per_node"], llc_bytes=p["llc_bytes"],
                       granule=p["s1_granule"], va_bits=48, s2_walk_cache_entries=wc,
                       image=KernelImage(text_bytes=p["text_bytes"],
                                             rodata_bytes=p["rodata_bytes"]))


def _run(p: dict, exits: float = 0.0):
    return RunConfig(accesses_per_cpu=p["accesses_per_cpu"],
                         warmup_per_cpu=p["warmup_per_cpu"], migration=p["migration"],
                         exits_per_kinstr=exits, hyp_text_bytes=p["hyp_text_bytes"],
                         seed=p["seed"])


def options_of(p: dict) -> list[S2Leaf]:
    return [o for g in p["s2_granules"] for o in stage2_leaf_options(g, p["ipa_bits"])]


def built_options(p: dict) -> list[S2Leaf]:
    """The leaf options Linux builds under ``s1_granule`` host pages
    (:func:`kmm.mech.pkvm.model.hypothetical_reason`): the others are hypothetical."""
    return [o for o in options_of(p) if hypothetical_reason(o, p["s1_granule"]) is None]


def _s2(p: dict, m, option: S2Leaf):
    return stage2_setup(m, option, text_aligned=p["text_aligned"], ipa_bits=p["ipa_bits"],
                        pool=p["hyp_pool"],
                        walk_cache_page_leaves=p["s2_walk_cache_page_leaves"])


def _simulator(p: dict):
    """``sim(workload, machine, run, source=None, **kw)``: one configuration pooled over
    ``seeds`` (:func:`kmm.mech.host.model.simulate_seeds`), replaying the workload's traces
    under ``source`` (default ``workload_source``)."""
    def sim(name, mach, run, source=None, **kw):
        return simulate_seeds(WORKLOADS[name], mach, run, p["seeds"],
                              trace=trace_workload(p, name, source), **kw)
    return sim


def _claim_runs(p: dict, m, setups: dict, decompose) -> dict:
    """The runs S1-S5's values read, on the main workload: KTR (``("s1", workload)``), stage
    2 with the debated and pKVM leaves and every leaf Linux builds (``("s2", workload,
    label)``), the counterfactual runs of the labels in ``decompose`` (``("reach", label)``:
    1D walks filling entries of the combined stage-1+2 size; ``("walk", label)``: 2D walks
    filling stage-1-sized entries; :func:`kmm.mech.pkvm.model.counterfactual_walks`) and
    the pKVM leaves with exits to EL2 at ``el2_exits_per_kinstr`` (``("el2", rate)``,
    synthetic kernel phases: see :func:`simulate_all`)."""
    sim = _simulator(p)
    main = p["workload"]
    runs = {("s1", main): sim(main, m, _run(p))}
    wanted = {p["debate_leaf"], p["pkvm_leaf"], *(o.label for o in built_options(p))}
    for lab in (o.label for o in options_of(p) if o.label in wanted):
        runs[("s2", main, lab)] = sim(main, m, _run(p), stage2=setups[lab])
    for lab in decompose:
        runs[("reach", lab)] = sim(main, m, _run(p), entry_stage2=setups[lab])
        runs[("walk", lab)] = sim(main, m, _run(p), stage2=setups[lab], entry_stage2=None)
    rate = p["el2_exits_per_kinstr"]
    runs[("el2", rate)] = sim(main, m, _run(p, rate), "synthetic",
                              stage2=setups[p["pkvm_leaf"]])
    return runs


def _setups(p: dict, m) -> dict:
    return {o.label: _s2(p, m, o) for o in options_of(p)}


@cached()
def simulate_claims(p: dict) -> dict:
    """The runs of :func:`_claim_runs` alone, the debated leaf decomposed when Linux builds
    it: what a replicate of the published point needs (:func:`replicates`)."""
    m = _machine(p)
    deb = [p["debate_leaf"]] if p["debate_leaf"] in {o.label for o in built_options(p)} else []
    return _claim_runs(p, m, _setups(p, m), deb)


@cached()
def simulate_all(p: dict) -> dict:
    """Stage-1 runs (baseline and KTR from one run) and stage-2 runs, each pooled over
    ``seeds``: the runs S1-S5 read (:func:`_claim_runs`, every leaf Linux builds decomposed
    by counterfactual runs), every other leaf option on the main workload, the debated and
    pKVM configurations on every workload, the pKVM configuration with exits to EL2 at each
    swept rate, and the debated leaf on the main workload at the ends of the ``assumed``
    stage-2 walk-cache range with its walk-only counterfactual run. Keys ``("s1",
    workload)``, ``("s2", workload, label)``, ``("reach", label)``, ``("walk", label)``,
    ``("el2", exits_per_kinstr)``, ``("s2wc", entries)``, ``("s2wc_walk", entries)`` (the
    ``el2`` runs with synthetic kernel phases under both sources); ``("other", "s1")`` and
    ``("other", label)`` (the debated and pKVM leaves) for the main workload under the
    source ``workload_source`` does not select, when it has a captured counterpart."""
    m = _machine(p)
    setups = _setups(p, m)
    built = {o.label for o in built_options(p)}
    runs = _claim_runs(p, m, setups, [o.label for o in options_of(p) if o.label in built])
    sim = _simulator(p)
    main = p["workload"]
    for o in options_of(p):
        if ("s2", main, o.label) not in runs:
            runs[("s2", main, o.label)] = sim(main, m, _run(p), stage2=setups[o.label])
    for w in p["workloads"]:
        if w == main:
            continue
        runs[("s1", w)] = sim(w, m, _run(p))
        for lab in (p["debate_leaf"], p["pkvm_leaf"]):
            runs[("s2", w, lab)] = sim(w, m, _run(p), stage2=setups[lab])
    opts = {o.label: o for o in options_of(p)}
    for wc in sorted(set(p["s2_walk_cache_range"]) - {p["s2_walk_cache_entries"]}):
        mw = _machine(p, wc)
        s2w = _s2(p, mw, opts[p["debate_leaf"]])
        runs[("s2wc", wc)] = sim(main, mw, _run(p), stage2=s2w)
        if p["debate_leaf"] in built:
            runs[("s2wc_walk", wc)] = sim(main, mw, _run(p), stage2=s2w, entry_stage2=None)
    # S5 prices the assumed exits and EL2 text (el2_trace_frame compares them with the
    # captured pKVM run): its runs keep synthetic kernel phases, whose instruction count per
    # access does not depend on the captured kernel-data rate
    for rate in sorted(set(p["el2_exit_sweep"]) - {p["el2_exits_per_kinstr"]}):
        runs[("el2", rate)] = sim(main, m, _run(p, rate), "synthetic",
                                  stage2=setups[p["pkvm_leaf"]])
    # the main workload under the other source, for the side-by-side comparison
    if trace_workload(p, main, "trace") is not None:
        other = "synthetic" if p["workload_source"] == "trace" else "trace"
        runs[("other", "s1")] = sim(main, m, _run(p), other)
        for lab in (p["debate_leaf"], p["pkvm_leaf"]):
            runs[("other", lab)] = sim(main, m, _run(p), other, stage2=setups[lab])
    return runs


def _lat(p: dict, ratio: float | None = None):
    return np.asarray(eng.generic(2, p["local_ns"], p["remote_ratio"] if ratio is None
                                   else ratio).latency_ns)


def _policy(p: dict):
    return {"local": UserPolicy.LOCAL, "interleave": UserPolicy.INTERLEAVE,
            "remote": UserPolicy.REMOTE, "node0": UserPolicy.NODE0}[
        p["baseline_user_policy"]]


def _walk_leaf_bytes(g: eng.Geometry, leaf_bytes: int) -> int | None:
    """The leaf a walk ends at for a leaf (or contiguous range) of ``leaf_bytes``: the
    block it is, or a range of; None for pages and ranges of pages."""
    for lv in g.leaf_levels:
        if lv < 3 and leaf_bytes in (g.leaf_bytes(lv), g.cont_bytes(lv)):
            return g.leaf_bytes(lv)
    return None


def comparison_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Per stage-2 leaf option simulated on the main workload: whether Linux builds it
    (``linux_builds``; else ``hypothetical`` says why), walks, references per walk against
    the uncached bound ``n + (n+1) m``, walk time, loss against KTR, the gain over the
    baseline and, for the leaves decomposed by counterfactual runs, the change against KTR
    from what a TLB entry covers alone (``footprint_ns``), from the walk alone
    (``walk_part_ns``), their ``interaction_ns`` and ``share_footprint``
    (:func:`kmm.mech.pkvm.model.counterfactual_walks`; None where a part is negative or the
    leaf was not decomposed)."""
    import polars as pl
    pol = _policy(p)
    costs = _costs(p)
    lat = _lat(p)
    w = p["workload"]
    ck = runs[("s1", w)]
    t_base = system_time_ns(ck, lat, Scheme.BASELINE, pol, costs)
    g1 = eng.arm64(p["s1_granule"], 48)
    rows = []
    for o in options_of(p):
        if ("s2", w, o.label) not in runs:
            continue
        cs = runs[("s2", w, o.label)]
        g2 = eng.stage2(o.granule, p["ipa_bits"])
        d = decompose_walks(ck, cs, lat, pol, costs)
        cf = (counterfactual_walks(ck, runs[("reach", o.label)], runs[("walk", o.label)], cs,
                                   lat, pol, costs) if ("reach", o.label) in runs else {})
        block = _walk_leaf_bytes(g2, o.leaf_bytes)
        why = hypothetical_reason(o, p["s1_granule"])
        rows.append({"label": o.label, "granule": o.granule, "leaf_bytes": o.leaf_bytes,
                     "linux_builds": why is None, "hypothetical": why or "",
                     "walks_pki": 1000 * cs.walks / cs.instructions,
                     "refs_per_walk": cs.walk_refs / cs.walks if cs.walks else 0.0,
                     "bound_refs": nested_references(g1, g2, None, block),
                     "s1_levels": g1.levels, "s2_levels": g2.levels,
                     "walk_ns_pki": 1000 * d["walk_ns_stage2"] / (ck.nodes * cs.instructions),
                     "loss_vs_ktr": d["loss_ns"] / d["ktr_ns"], "ktr_ns": d["ktr_ns"],
                     "footprint_ns": cf.get("footprint_ns"), "walk_part_ns": cf.get("walk_ns"),
                     "interaction_ns": cf.get("interaction_ns"),
                     "share_footprint": cf.get("share_footprint"),
                     "gain_vs_baseline": t_base / d["stage2_ns"] - 1.0})
    ktr_walk = source_times_ns(ck, lat, Scheme.KTR, pol, costs)["walk_ns"]
    t_ktr = system_time_ns(ck, lat, Scheme.KTR, pol, costs)
    rows.append({"label": "KTR (stage 1 only)", "granule": p["s1_granule"], "leaf_bytes": 0,
                 "linux_builds": True, "hypothetical": "",
                 "walks_pki": 1000 * ck.walks / ck.instructions,
                 "refs_per_walk": ck.walk_refs / ck.walks if ck.walks else 0.0,
                 "bound_refs": g1.levels, "s1_levels": g1.levels, "s2_levels": 0,
                 "walk_ns_pki": 1000 * ktr_walk / (ck.nodes * ck.instructions),
                 "loss_vs_ktr": 0.0, "ktr_ns": t_ktr, "footprint_ns": None,
                 "walk_part_ns": None, "interaction_ns": None, "share_footprint": None,
                 "gain_vs_baseline": t_base / t_ktr - 1.0})
    schema = {"footprint_ns": pl.Float64, "walk_part_ns": pl.Float64,
              "interaction_ns": pl.Float64, "share_footprint": pl.Float64}
    return pl.DataFrame(rows, schema_overrides=schema)


# ---- the overheads beyond the walk: exits, text-write traps, stage-2 sync (S4) ----------------
def _patch_cost(p: dict, **over):
    v = {k: over.get(k, p[k]) for k in ("patch_sites", "fixmap_ns", "cmo_ns", "sync_ns",
                                         "tlbi_ns", "dsb_ish_ns", "dsb_ish_per_cpu_ns")}
    return PatchCost(sites=int(v["patch_sites"]), fixmap_ns=float(v["fixmap_ns"]),
                     cmo_ns=float(v["cmo_ns"]), sync_ns=float(v["sync_ns"]),
                     sync=PatchSync[p["patch_sync"].upper()], tlbi_ns=float(v["tlbi_ns"]),
                     dsb_ish_ns=float(v["dsb_ish_ns"]),
                     dsb_ish_per_cpu_ns=float(v["dsb_ish_per_cpu_ns"]))


def _patch_rates(p: dict, **over) -> dict[str, float]:
    """Patches per second per path (:data:`kmm.mech.host.model.PATCH_PATHS`): static-key
    flips and ftrace toggles (nosync) and kprobe arm/disarm (``stop_machine``)."""
    return {"static_key": float(over.get("patches_per_s", p["patches_per_s"])),
            "kprobe": float(over.get("kprobe_patches_per_s", p["kprobe_patches_per_s"]))}


def _text_fractions(topo, nodes: int, rates: dict, cost, trap_ns: float) -> dict[str, float]:
    """Shares of machine time of text patching at ``rates``, each path with its own
    synchronisation: baseline (one copy), KTR (one per node), stage 2 (trapped)."""
    out = {"text_base": 0.0, "text_ktr": 0.0, "text_stage2": 0.0}
    for path, rate in rates.items():
        c = replace(cost, sync=PATCH_PATHS[path])
        out["text_base"] += patch_overhead_fraction(topo, 1, rate, c)
        out["text_ktr"] += patch_overhead_fraction(topo, nodes, rate, c)
        out["text_stage2"] += text_write_fraction(topo, nodes, rate, c, trap_ns)
    return out


def _sync_cost(p: dict, **over) -> SyncCost:
    v = {k: float(over.get(k, p[k])) for k in ("tlbi_ns", "dsb_ish_ns", "dsb_ish_per_cpu_ns",
                                                "el2_trap_ns", "llc_ns", "rewalk_memory_refs")}
    return SyncCost(tlbi_ns=v["tlbi_ns"], dsb_ish_ns=v["dsb_ish_ns"],
                    dsb_ish_per_cpu_ns=v["dsb_ish_per_cpu_ns"], cached_ns=v["llc_ns"],
                    trap_ns=v["el2_trap_ns"], tlbi_per_set=bool(p["s2_tlbi_per_set"]),
                    rewalk_working_set=int(over.get("rewalk_working_set",
                                                    p["rewalk_working_set"])),
                    rewalk_refs=_rewalk_refs(p), rewalk_memory_refs=v["rewalk_memory_refs"])


def _rewalk_refs(p: dict) -> int:
    """References of one re-walk after a donation's ``TLBI VMALLE1IS``: the uncached 2D
    walk of a stage-1 page through the pKVM leaves (the stage-1 walk cache is emptied with
    the entries)."""
    o = next(o for o in options_of(p) if o.label == p["pkvm_leaf"])
    g2 = eng.stage2(o.granule, p["ipa_bits"])
    return nested_references(eng.arm64(p["s1_granule"], 48), g2, None,
                             _walk_leaf_bytes(g2, o.leaf_bytes))


def _topo(p: dict, nodes: int = 2, ratio: float | None = None, latency_ns=None, **over):
    cores = int(over.get("cores_per_node", p["cores_per_node"]))
    if latency_ns is not None:
        lat = eng.check_latency_matrix(latency_ns, nodes)
        return eng.from_measured("machine", lat.tolist(), cores, "given")
    return eng.generic(nodes, p["local_ns"], p["remote_ratio"] if ratio is None else ratio,
                        cpus_per_node=cores)


def overhead_shares(p: dict, ratio: float | None = None, nodes: int = 2, latency_ns=None,
                    **over) -> dict[str, float]:
    """Shares of the machine's CPU time at the given (default: published) rates:
    ``text_base`` the baseline's text patching (one copy, EL1), ``text_ktr`` KTR's (one copy
    per node, EL1), ``text_stage2`` stage-2 replication's (one copy per node, every
    instruction trapped to EL2), ``sync`` keeping one host stage-2 table set per node up
    to date. ``over`` replaces rates and costs (any of :data:`OVERHEAD_ASSUMED`; other
    names are ignored); ``latency_ns``, a latency matrix of ``nodes`` nodes, replaces the
    flat machine at ``ratio``."""
    topo = _topo(p, nodes, ratio, latency_ns, **over)
    cost = _patch_cost(p, **over)
    sc = _sync_cost(p, **over)
    pages = float(over.get("s2_pages_per_s", p["s2_pages_per_s"]))
    g2 = eng.stage2(p["s1_granule"], p["ipa_bits"])
    return {**_text_fractions(topo, nodes, _patch_rates(p, **over), cost, sc.trap_ns),
            "sync": stage2_sync_fraction(topo.latency_ns, nodes, pages, g2, sc, topo.cpus)}


def _host_over(over: dict) -> dict:
    return {k: v for k, v in over.items() if k in _HOST_KEYS}


def stage2_net_gain(p: dict, runs: dict, ratio: float | None = None, exit_rate: float = 0.0,
                    extra_exit_ns: float | None = None, *, latency_ns=None,
                    replica: ReplicaCosts = ReplicaCosts(), **over) -> float:
    """Net gain of stage-2 replication (pKVM leaves) over the VHE baseline with exits at
    ``exit_rate`` per CPU-second, text writes and stage-2 sync at their rates, on a flat
    machine at ``ratio`` or on the latency matrix ``latency_ns``."""
    g = stage2_gain(p, runs, ratio, latency_ns=latency_ns, replica=replica, **_host_over(over))
    sh = overhead_shares(p, ratio, latency_ns=latency_ns, **over)
    extra = p["nvhe_exit_extra_ns"] if extra_exit_ns is None else extra_exit_ns
    return net_gain(g, exit_rate, extra, sh["text_stage2"] + sh["sync"], sh["text_base"])


def schemes_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Throughput relative to the baseline of KTR and of stage-2 replication (debated and
    pKVM leaf configurations) for every workload, against the ratio, no VM exits; every
    scheme pays its text patching at ``patches_per_s`` (the baseline one copy, KTR one per
    node, stage 2 one per node behind a trap) and stage 2 its table sync at
    ``s2_pages_per_s``."""
    import polars as pl
    pol = _policy(p)
    costs = _costs(p)
    rows = []
    for w in p["workloads"]:
        ck = runs[("s1", w)]
        for r in sorted({1.0, p["remote_ratio"], *p["ratio_range"]}):
            lat = _lat(p, r)
            sh = overhead_shares(p, r)
            tb = system_time_ns(ck, lat, Scheme.BASELINE, pol, costs)
            tk = system_time_ns(ck, lat, Scheme.KTR, pol, costs)
            rows.append({"workload": w, "ratio": r, "scheme": "KTR",
                         "gain": net_gain(tb / tk - 1, f_stage2=sh["text_ktr"],
                                          f_base=sh["text_base"])})
            for lab in (p["debate_leaf"], p["pkvm_leaf"]):
                ts = system_time_ns(runs[("s2", w, lab)], lat, Scheme.STAGE2, pol, costs)
                rows.append({"workload": w, "ratio": r, "scheme": f"stage 2, {lab}",
                             "gain": net_gain(tb / ts - 1,
                                              f_stage2=sh["text_stage2"] + sh["sync"],
                                              f_base=sh["text_base"])})
    return pl.DataFrame(rows)


def stage2_gain(p: dict, runs: dict, ratio: float | None = None, *, latency_ns=None,
                replica: ReplicaCosts = ReplicaCosts(), **cost_over) -> float:
    """Gain of stage-2 replication in the pKVM configuration over the VHE baseline from the
    simulated work alone: no exits, text writes or stage-2 sync (see
    :func:`stage2_net_gain`), on a flat machine at ``ratio`` (default ``remote_ratio``) or
    on any latency matrix ``latency_ns`` of the runs' nodes (checked: square, finite,
    positive). ``replica`` charges the placement rules and cold copies of
    :class:`kmm.mech.host.model.ReplicaCosts` on both sides (none by default: which pages
    a per-node stage 2 copies, modules included or not, the debated design leaves open)."""
    pol = _policy(p)
    costs = _costs(p, **cost_over)
    w = p["workload"]
    cb, cs = runs[("s1", w)], runs[("s2", w, p["pkvm_leaf"])]
    lat = _lat(p, ratio) if latency_ns is None else eng.check_latency_matrix(latency_ns, cb.nodes)
    tb = system_time_ns(cb, lat, Scheme.BASELINE, pol, costs, replica)
    ts = system_time_ns(cs, lat, Scheme.STAGE2, pol, costs, replica)
    return tb / ts - 1.0


def exit_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Net gain of stage-2 replication against the VM exit rate per CPU, for the assumed
    range of the extra cost of an exit without VHE: exits alone, and with text-write traps
    and stage-2 sync at their published rates and at the top of their assumed rates."""
    import polars as pl
    g = stage2_gain(p, runs)
    specs = overhead_specs()
    sh = overhead_shares(p)
    top = overhead_shares(p, patches_per_s=specs["patches_per_s"][1],
                          s2_pages_per_s=specs["s2_pages_per_s"][1])
    variants = (("exits only", 0.0, 0.0),
                ("+ traps, sync: published rates", sh["text_stage2"] + sh["sync"],
                 sh["text_base"]),
                ("+ traps, sync: top assumed rates", top["text_stage2"] + top["sync"],
                 top["text_base"]))
    rows = []
    lo, hi = p["nvhe_exit_extra_range"]
    for extra in sorted({lo, p["nvhe_exit_extra_ns"], hi}):
        for rate in p["exit_rates"]:
            for label, fs, fb in variants:
                rows.append({"exit_rate": float(rate), "extra_ns": float(extra),
                             "overheads": label,
                             "net_gain": net_gain(g, rate, extra, fs, fb)})
    return pl.DataFrame(rows)


def overhead_specs() -> dict[str, tuple[float, float]]:
    """``name -> (lo, hi)``: the assumed ranges of :data:`OVERHEAD_ASSUMED`."""
    return dict(ASSUMED)


def overhead_points(p: dict, n: int, specs: dict | None = None) -> list[dict]:
    """``n`` Latin-hypercube points over the overheads' assumed ranges: each range cut into
    ``n`` strata visited once each in random order (from ``seed``), log scale where a range
    spans a factor of 4 or more, integer parameters rounded."""
    specs = overhead_specs() if specs is None else specs
    return latin_hypercube(specs, n, [p["seed"], 4], p)


def s4_specs(p: dict) -> dict[str, tuple]:
    """``name -> (lo, hi)`` of every ``assumed`` parameter S4's sweep varies: the per-exit
    cost, the background load, the ratio range and the overheads' (:func:`overhead_specs`)."""
    return {"nvhe_exit_extra_ns": tuple(p["nvhe_exit_extra_range"]),
            "background": tuple(p["background_range"]),
            "remote_ratio": tuple(p["ratio_range"]), **overhead_specs()}


def s4_swings(p: dict, runs: dict) -> list[dict]:
    """S4's one-at-a-time swings (:func:`kmm.suite.study.one_at_a_time` over
    :func:`s4_specs`), each evaluated as a point of :func:`s4_sweep`: the Latin hypercube
    has no point where one parameter alone moves."""
    gains: dict = {}
    out = []
    for pt in one_at_a_time(s4_specs(p), p):
        key = (pt["background"], pt["remote_ratio"])
        if key not in gains:
            gains[key] = stage2_gain(p, runs, pt["remote_ratio"], background=pt["background"])
        sh = overhead_shares(p, pt["remote_ratio"], **pt)
        out.append({"params": pt, "value": crossover_exit_rate(
            gains[key], pt["nvhe_exit_extra_ns"], sh["text_stage2"] + sh["sync"],
            sh["text_base"])})
    return out


def s4_sweep(p: dict, runs: dict) -> list[dict]:
    """Crossover exit rate (every overhead included) over the joint sweep of the assumed
    per-exit cost, background load and ratio range, each crossed with
    ``s4_overhead_points`` Latin-hypercube points of the text-write and stage-2 sync rates
    and costs (:func:`overhead_points`)."""
    out = []
    lo, hi = p["nvhe_exit_extra_range"]
    points = overhead_points(p, p["s4_overhead_points"])
    for sw in sorted({*p["background_range"], p["background"]}):
        for r in sorted({*p["ratio_range"], p["remote_ratio"]}):
            g = stage2_gain(p, runs, r, background=sw)
            shares = [overhead_shares(p, r, **pt) for pt in points]
            for extra in sorted({lo, p["nvhe_exit_extra_ns"], hi}):
                for pt, sh in zip(points, shares):
                    out.append({"params": {"nvhe_exit_extra_ns": float(extra), "background": sw,
                                           "remote_ratio": float(r), **pt},
                                "value": crossover_exit_rate(g, extra,
                                                             sh["text_stage2"] + sh["sync"],
                                                             sh["text_base"])})
    return out


def s4_zero_causes(p: dict, runs: dict, sweep: list[dict]) -> dict:
    """Why the crossover is 0 at the points of S4's sweep where it is: stage 2 gains
    nothing to begin with (``no_gain``), the text-write traps alone (``text``) or the
    stage-2 sync alone (``sync``) cancel the gain, or only both together do (``both``);
    with the lowest rate of each cause (``text_min_patches_per_s``,
    ``sync_min_pages_per_s``)."""
    out = {"no_gain": 0, "text": 0, "sync": 0, "both": 0,
           "text_min_patches_per_s": float("inf"), "sync_min_pages_per_s": float("inf")}
    gains = {}
    for x in sweep:
        if x["value"] != 0.0:
            continue
        pt = x["params"]
        key = (pt["background"], pt["remote_ratio"])
        if key not in gains:
            gains[key] = stage2_gain(p, runs, pt["remote_ratio"], background=pt["background"])
        g = gains[key]
        if g <= 0:
            out["no_gain"] += 1
            continue
        sh = overhead_shares(p, pt["remote_ratio"], **pt)
        be = g / (1.0 + g)
        if (sh["text_stage2"] - sh["text_base"]) / (1.0 - sh["text_base"]) >= be:
            out["text"] += 1
            out["text_min_patches_per_s"] = min(out["text_min_patches_per_s"],
                                                pt["patches_per_s"])
        elif sh["sync"] >= be:
            out["sync"] += 1
            out["sync_min_pages_per_s"] = min(out["sync_min_pages_per_s"], pt["s2_pages_per_s"])
        else:
            out["both"] += 1
    return out


def overhead_frames(p: dict, runs: dict) -> tuple["pl.DataFrame", "pl.DataFrame"]:
    """Each overhead of stage-2 replication against its own rate on the 2-node machine, as
    the share of time it costs (``loss``): exits (per CPU, at ``nvhe_exit_extra_ns`` each:
    rate x extra), text writes (machine-wide patches per second: the share above the
    baseline's own patching, ``(f - f_base) / (1 - f_base)``, for the trapped writes and,
    for comparison, KTR's) and stage-2 sync (machine-wide page cycles per second). Alone,
    an overhead cancels the gain where its loss reaches ``gain / (1 + gain)``; the second
    frame gives that crossover rate per overhead."""
    import polars as pl
    g = stage2_gain(p, runs)
    be = g / (1.0 + g) if g > 0 else 0.0
    topo = _topo(p)
    # the swept patch rate is the static-key path's (nosync, arch/arm64/kernel/jump_label.c)
    cost = replace(_patch_cost(p), sync=PATCH_PATHS["static_key"])
    sc = _sync_cost(p)
    g2 = eng.stage2(p["s1_granule"], p["ipa_bits"])
    # shares per event per second
    a_b = patch_overhead_fraction(topo, 1, 1.0, cost)
    a_s = text_write_fraction(topo, 2, 1.0, cost, sc.trap_ns)
    a_k = patch_overhead_fraction(topo, 2, 1.0, cost)
    a_y = stage2_sync_fraction(topo.latency_ns, 2, 1.0, g2, sc, topo.cpus)
    a_e = p["nvhe_exit_extra_ns"] * 1e-9
    def text(a_new):
        # the baseline's own patching cannot take the whole machine either
        return lambda r: (a_new - a_b) * r / (1.0 - a_b * r) if a_b * r < 1.0 else None

    comps = (("VHE exits (per CPU)", "exits/s per CPU", lambda r: r * a_e),
             ("text-write traps, stage 2", "patches/s", text(a_s)),
             ("text writes, KTR (no trap)", "patches/s", text(a_k)),
             ("stage-2 sync", "page cycles/s", lambda r: a_y * r))
    rows = []
    for name, unit, loss in comps:
        for r in p["overhead_rates"]:
            x = loss(float(r))
            if x is not None and 0.0 <= x < 1.0:
                rows.append({"overhead": name, "rate_unit": unit, "rate": float(r),
                             "loss": x, "break_even": be})
    cross = {"VHE exits (per CPU)": vhe_crossover_rate(g, p["nvhe_exit_extra_ns"]),
             "text-write traps, stage 2": _text_crossover(be, a_s, a_b),
             "text writes, KTR (no trap)": _text_crossover(be, a_k, a_b),
             "stage-2 sync": be / a_y if a_y > 0 else float("inf")}
    cross_rows = [{"overhead": k, "crossover_rate": float(v), "break_even": be, "gain": g}
                  for k, v in cross.items()]
    return pl.DataFrame(rows), pl.DataFrame(cross_rows)


def _text_crossover(be: float, a_new: float, a_base: float) -> float:
    """Patch rate at which ``(a_new r - a_base r) / (1 - a_base r)`` reaches ``be``."""
    d = a_new - a_base + be * a_base
    if be <= 0:
        return 0.0
    return be / d if d > 0 else float("inf")


def event_cost_frame(p: dict) -> "pl.DataFrame":
    """The cost of one event against the node count, with its counted events: a text patch
    under KTR (EL1, one write per copy) and under stage-2 replication (a trap per
    instruction, then the same writes from EL2), one page cycle of host stage-2 sync
    (every set written and invalidated) and, apart, every CPU's re-walks after the
    donation's ``TLBI VMALLE1IS`` (:func:`kmm.mech.pkvm.model.donation_rewalks`)."""
    import polars as pl
    cost = _patch_cost(p)
    sc = _sync_cost(p)
    g2 = eng.stage2(p["s1_granule"], p["ipa_bits"])
    rows = []
    for n in p["overhead_nodes"]:
        topo = _topo(p, n)
        ev_k = text_write_events(n, cost.sites, False)
        ev_s = text_write_events(n, cost.sites, True)
        cyc = stage2_page_cycle(topo.latency_ns, n, g2, sc, topo.cpus)
        rows += [
            {"nodes": n, "event": "text patch, KTR", "ns": patch_window_ns(topo, n, cost),
             "traps": ev_k["traps"], "copy_writes": ev_k["copy_writes"],
             "descriptor_writes": 0, "tlbis": 0},
            {"nodes": n, "event": "text patch, stage 2",
             "ns": trapped_patch_window_ns(topo, n, cost, sc.trap_ns),
             "traps": ev_s["traps"], "copy_writes": ev_s["copy_writes"],
             "descriptor_writes": 0, "tlbis": 0},
            {"nodes": n, "event": "stage-2 page cycle", "ns": cyc["ns"], "traps": cyc["traps"],
             "copy_writes": 0, "descriptor_writes": cyc["descriptor_writes"],
             "tlbis": cyc["tlbis"]},
            {"nodes": n, "event": "stage-2 page cycle: every CPU's re-walks",
             "ns": cyc["rewalk_ns"], "traps": 0, "copy_writes": 0, "descriptor_writes": 0,
             "tlbis": 0}]
    return pl.DataFrame(rows)


def el2_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Per node and exit rate: memory time per exit of hypervisor text fetches and of the
    walks of the hypervisor's own stage-1 tables (EL2 has no stage 2: one copy of the text, on
    node 0, and of the tables, in the hyp pool (``hyp_pool``)), from the runs with exits."""
    import polars as pl
    pol = _policy(p)
    rows = []
    for key, c in runs.items():
        if not (isinstance(key, tuple) and key[0] == "el2"):
            continue
        hyp = c.classes.HYP
        fetch = class_memory_ns(c, _lat(p), hyp, Scheme.STAGE2, pol, _costs(p),
                                    source=int(eng.Source.IFETCH))
        walks = class_memory_ns(c, _lat(p), hyp, Scheme.STAGE2, pol, _costs(p),
                                    source=int(eng.Source.WALK))
        exits = max(c.exits, 1)
        reads = float(c.mem[int(eng.Source.IFETCH), c.sim_node, hyp]) / exits
        wreads = float(c.mem[int(eng.Source.WALK), c.sim_node, hyp]) / exits
        for node in range(c.nodes):
            rows.append({"exits_per_kinstr": float(key[1]), "node": node,
                         "fetch_ns_per_exit": float(fetch[node]) / exits,
                         "walk_ns_per_exit": float(walks[node]) / exits,
                         "ns_per_exit": float(fetch[node] + walks[node]) / exits,
                         "exits": c.exits, "hyp_mem_reads_per_exit": reads,
                         "hyp_walk_mem_reads_per_exit": wreads})
    return pl.DataFrame(rows).sort(["exits_per_kinstr", "node"])


def memory_frame(p: dict) -> "pl.DataFrame":
    """S6: host stage-2 table bytes per node set, reserved (pKVM's worst case) and used,
    per node count, granule and leaf policy, with per-node copies of the text range."""
    import polars as pl
    rows = []
    for gran in p["s6_granules"]:
        g = eng.stage2(gran, p["ipa_bits"])
        for n in p["s6_nodes"]:
            mem = HostMemory(ram_bytes=p["s6_ram_per_node_bytes"] * n, nodes=n)
            for leaf in ("page", "block"):
                r = stage2_memory(mem, g, leaf, text_bytes=p["text_bytes"] + p["rodata_bytes"],
                                  text_aligned=p["text_aligned"])
                rows.append({"granule": gran, "nodes": n, "leaf": leaf,
                             "ram_bytes": mem.ram_bytes, **r})
    return pl.DataFrame(rows)


def sources_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Trace-driven and synthetic kernel phases side by side on the main workload (when it
    has a captured counterpart): per source and scheme (KTR, stage 2 with the debated and
    the pKVM leaves) the gain over the baseline against the ratio, and at the debated leaf
    the loss against KTR, walks per 1000 instructions and references per walk."""
    import polars as pl
    if ("other", "s1") not in runs:
        return pl.DataFrame()
    pol = _policy(p)
    costs = _costs(p)
    w = p["workload"]
    other = "synthetic" if p["workload_source"] == "trace" else "trace"
    sets = {p["workload_source"]: (runs[("s1", w)], {lab: runs[("s2", w, lab)] for lab in
                                                      (p["debate_leaf"], p["pkvm_leaf"])}),
            other: (runs[("other", "s1")], {lab: runs[("other", lab)] for lab in
                                            (p["debate_leaf"], p["pkvm_leaf"])})}
    rows = []
    for source, (ck, s2) in sets.items():
        d = decompose_walks(ck, s2[p["debate_leaf"]], _lat(p), pol, costs)
        cs = s2[p["debate_leaf"]]
        stats = {"debate_loss_vs_ktr": d["loss_ns"] / d["ktr_ns"],
                 "debate_walks_pki": 1000 * cs.walks / cs.instructions,
                 "debate_refs_per_walk": cs.walk_refs / cs.walks if cs.walks else 0.0}
        for r in sorted({*p["ratio_range"], p["remote_ratio"]}):
            lat = _lat(p, r)
            tb = system_time_ns(ck, lat, Scheme.BASELINE, pol, costs)
            schemes = {"KTR": system_time_ns(ck, lat, Scheme.KTR, pol, costs)}
            for lab, c in s2.items():
                schemes[f"stage 2, {lab}"] = system_time_ns(c, lat, Scheme.STAGE2, pol, costs)
            for name, t in schemes.items():
                rows.append({"workload": w, "source": source, "ratio": float(r),
                             "scheme": name, "gain": tb / t - 1.0, **stats})
    return pl.DataFrame(rows)


def el2_trace_frame(p: dict) -> "pl.DataFrame":
    """S5's ``assumed`` exit parameters next to their values measured on the captured pKVM
    trace (:func:`kmm.mech.host.workload.el2_footprint`: host stage-2 faults reaching EL2
    while the host first touches fresh memory)."""
    import polars as pl
    from ..host.workload import el2_footprint, read_trace
    f = el2_footprint(read_trace("pkvm"))
    return pl.DataFrame([
        {"parameter": "el2_exits_per_kinstr", "assumed": float(p["el2_exits_per_kinstr"]),
         "low": float(ASSUMED_EL2["el2_exits_per_kinstr"][0]),
         "high": float(ASSUMED_EL2["el2_exits_per_kinstr"][1]),
         "measured": f["exits_per_kinstr"]},
        {"parameter": "hyp_text_bytes", "assumed": float(p["hyp_text_bytes"]),
         "low": float(ASSUMED_EL2["hyp_text_bytes"][0]),
         "high": float(ASSUMED_EL2["hyp_text_bytes"][1]),
         "measured": f["text_bytes_per_exit"]}]).with_columns(
        pl.lit(int(f["exits"])).alias("exits_captured"),
        pl.lit(f["insns_per_exit"]).alias("insns_per_exit_captured"))


#: The ``assumed`` ranges of the exit parameters (params/pkvm.yaml).
ASSUMED_EL2 = {"el2_exits_per_kinstr": (0.002, 0.2), "hyp_text_bytes": (4096, 65536)}


def source_note(p: dict, runs: dict) -> str:
    """How the main workload's kernel phases were made, and the debated leaf's loss against
    KTR under the other source, for the explanations."""
    if ("other", "s1") not in runs:
        return " (synthetic kernel stream)"
    d = decompose_walks(runs[("other", "s1")], runs[("other", p["debate_leaf"])], _lat(p),
                        _policy(p), _costs(p))
    loss = d["loss_ns"] / d["ktr_ns"]
    traces = ", ".join(p[TRACED[p["workload"]]])
    if p["workload_source"] == "trace":
        return (f" (kernel phases replayed from the captured {traces} traces; with the "
                f"synthetic kernel stream the loss against KTR is {loss:+.1%})")
    return (f" (synthetic kernel stream; replaying the captured {traces} traces gives a "
            f"loss against KTR of {loss:+.1%})")


def s12_sweep(p: dict, runs: dict) -> list[dict]:
    """S1/S2's footprint share at the debated leaf over the joint sweep of the stage-2 walk
    cache, the background load, the dependent share of fetch misses and the ratio range;
    empty when the debated leaf was not decomposed (Linux does not build it). The walk
    cache's ends have their own stage-2 and walk-only runs; the footprint-only run walks in
    one stage, which no stage-2 walk cache serves."""
    deb = p["debate_leaf"]
    if ("reach", deb) not in runs:
        return []
    w = p["workload"]
    ck, reach = runs[("s1", w)], runs[("reach", deb)]
    pol = _policy(p)
    wc0 = p["s2_walk_cache_entries"]
    sweep = []
    for wc in sorted({*p["s2_walk_cache_range"], wc0}):
        full = runs[("s2", w, deb)] if wc == wc0 else runs[("s2wc", wc)]
        walk = runs[("walk", deb)] if wc == wc0 else runs[("s2wc_walk", wc)]
        for q in grid({"background": sorted({*p["background_range"], p["background"]}),
                       "dep_ifetch": sorted({*p["dep_ifetch_range"], p["dep_ifetch"]}),
                       "remote_ratio": sorted({*p["ratio_range"], p["remote_ratio"]})}):
            d = counterfactual_walks(ck, reach, walk, full, _lat(p, q["remote_ratio"]), pol,
                                     _costs(p, background=q["background"],
                                            dep_ifetch=q["dep_ifetch"]))
            sweep.append({"params": {**q, "remote_ratio": float(q["remote_ratio"]),
                                     "s2_walk_cache_entries": wc},
                          "value": d["share_footprint"]})
    return sweep


def _s3_rows(p: dict, comp):
    """S3's points: the leaves Linux builds under ``s1_granule`` host pages, by size."""
    return comp.filter((comp["granule"] == p["s1_granule"]) & comp["linux_builds"]
                       & (comp["leaf_bytes"] > 0)).sort("leaf_bytes")


def claim_numbers(p: dict, runs: dict, comp, el2) -> dict:
    """S1-S5's values from the runs S1-S5 read (:func:`simulate_claims` or
    :func:`simulate_all`) and their frames: what :func:`claim_values` records and what
    :func:`replicates` records again at other seeds and lengths."""
    deb = comp.filter(comp["label"] == p["debate_leaf"]).row(0, named=True)
    share = deb["share_footprint"] if deb["linux_builds"] else None
    s3 = _s3_rows(p, comp)
    g = stage2_gain(p, runs)
    sh = overhead_shares(p)
    main = el2.filter(el2["exits_per_kinstr"] == float(p["el2_exits_per_kinstr"])).sort("node")
    return {"S1": share, "S2": share,
            "S3": {"leaf_bytes": s3["leaf_bytes"].to_list(),
                   "walk_ns": s3["walk_ns_pki"].to_list()},
            "S4": crossover_exit_rate(g, p["nvhe_exit_extra_ns"], sh["text_stage2"] + sh["sync"],
                                      sh["text_base"]),
            "S5": {"node": main["node"].to_list(), "ns": main["ns_per_exit"].to_list()}}


def replicate_params(p: dict, seed: int, length: int) -> dict:
    """The published point rerun at ``seed`` and ``length`` measured accesses per CPU: as
    many seeds as the published point pools, disjoint from its (each shifted by ``(seed -
    p["seed"]) * len(seeds)``), and the same warm-up."""
    shift = (int(seed) - p["seed"]) * len(p["seeds"])
    return {**p, "seed": int(seed), "seeds": [x + shift for x in p["seeds"]],
            "accesses_per_cpu": int(length)}


def replicates(p: dict) -> dict[str, list[dict]]:
    """:attr:`kmm.suite.study.Evidence.replicates` of S1-S5: :func:`claim_numbers` at the
    runs of :func:`kmm.suite.study.replicate_plan` (two more seeds, half the stream)."""
    out = []
    for seed, length in replicate_plan(p["seed"], p["accesses_per_cpu"]):
        q = replicate_params(p, seed, length)
        runs = simulate_claims(q)
        out.append((seed, length, claim_numbers(q, runs, comparison_frame(q, runs),
                                                el2_frame(q, runs))))
    return replicates_from(out)


def _sides(p: dict, comp) -> str:
    """Where each side of S1/S2 holds, over the leaves decomposed, and which leaves are
    hypothetical, for the explanation."""
    built = comp.filter(comp["linux_builds"] & (comp["leaf_bytes"] > 0)).sort("leaf_bytes")
    fp, wk, undef = [], [], []
    for r in built.iter_rows(named=True):
        x = r["share_footprint"]
        if x is not None:
            (fp if x > 0.5 else wk).append(r["label"])
        elif r["footprint_ns"] is not None:
            neg = [n for n in ("footprint", "walk_part") if r[f"{n}_ns"] < 0]
            undef.append(f"{r['label']} (" + (f"{' and '.join(n.split('_')[0] for n in neg)} "
                                              f"part{'s' if len(neg) > 1 else ''} negative"
                                              if neg else "both parts zero") + ")")
    hyp = comp.filter(~comp["linux_builds"]).sort("leaf_bytes")
    reasons = sorted(set(hyp["hypothetical"].to_list()))
    text = (f"Among the leaves Linux builds under {p['s1_granule']} host pages, footprint "
            f"dominates at {', '.join(fp) or 'no size'} and walk length at "
            f"{', '.join(wk) or 'no size'}")
    if undef:
        text += f"; the share is undefined at {', '.join(undef)}"
    if hyp.height:
        text += (f"; {', '.join(hyp['label'].to_list())} are hypothetical "
                 f"({'; '.join(reasons)}): charted, labelled, not decomposed and not in the "
                 f"verdict")
    return text + "."


def claim_values(p: dict, runs: dict, comp, exits, el2, mem) -> dict[str, dict]:
    """Values, units, sweeps, swings and explanations of S1-S6 at these parameters.

    S1-S5 come from simulated runs, so they depend on the seeds and the stream length
    (their replicates are :func:`replicates`); S6 is counted from the stage-2 tables built
    and the closed form of ``host_s2_pgtable_pages``, with no seed and no stream:
    ``deterministic``."""
    out = {}
    nums = claim_numbers(p, runs, comp, el2)
    deb = comp.filter(comp["label"] == p["debate_leaf"]).row(0, named=True)
    share = nums["S1"]
    if not deb["linux_builds"]:
        split = (f"{p['debate_leaf']} is hypothetical ({deb['hypothetical']}): the share is "
                 f"not evaluated")
    else:
        k = deb["ktr_ns"]
        split = (f"counterfactual runs split it into what a TLB entry covers alone (entries "
                 f"of the combined stage-1+2 size over KTR's 1D walks: "
                 f"{deb['footprint_ns'] / k:+.2%}), the walk alone (2D walks filling "
                 f"stage-1-sized entries: {deb['walk_part_ns'] / k:+.2%}) and their "
                 f"interaction ({deb['interaction_ns'] / k:+.2%}), so the footprint share is "
                 + (f"{share:.2f}" if share is not None else
                    "undefined (a part is negative): no verdict"))
    common = (f"On the {p['workload']} mix{source_note(p, runs)}, with "
              f"{p['debate_leaf']} stage-2 leaves the loss against KTR is "
              f"{deb['loss_vs_ktr']:+.1%} of KTR's time ({deb['refs_per_walk']:.2f} "
              f"references per walk against a bound of {deb['bound_refs']}); {split}. "
              + _sides(p, comp))
    sweep = s12_sweep(p, runs)
    out["S1"] = {"value": share, "unit": "", "sweep": sweep, "explanation": common}
    out["S2"] = {"value": share, "unit": "", "sweep": sweep, "explanation": common}
    g4 = _s3_rows(p, comp)
    wl = nums["S3"]["walk_ns"]
    hyp = comp.filter(~comp["linux_builds"] & (comp["leaf_bytes"] > 0))
    out["S3"] = {"value": nums["S3"], "unit": "ns per 1000 instructions", "sweep": [],
                 "explanation": (
                     f"With the {p['s1_granule']} stage-2 granule KVM builds under "
                     f"{p['s1_granule']} host pages, the walk time falls from {wl[0]:.0f} to "
                     f"{wl[-1]:.0f} ns per 1000 instructions as the leaf grows from "
                     f"{g4['label'][0]} to {g4['label'][-1]} "
                     f"({', '.join(g4['label'].to_list())}): a larger stage-2 leaf ends "
                     f"the nested walks earlier and lets the combined TLB entries keep the "
                     f"stage-1 size; a range that is not a multiple of the block (the text "
                     f"copy) keeps page leaves. The rule reads only these leaves"
                     + (f"; the hypothetical ones ({', '.join(hyp['label'].to_list())}) are "
                        f"charted and labelled, not used" if hyp.height else "") + ".")}
    g = stage2_gain(p, runs)
    sh = overhead_shares(p)
    cross = nums["S4"]
    cross0 = vhe_crossover_rate(g, p["nvhe_exit_extra_ns"])
    _curves, oc = overhead_frames(p, runs)
    cr = dict(zip(oc["overhead"].to_list(), oc["crossover_rate"].to_list()))
    s4 = s4_sweep(p, runs)
    cv = [x["value"] for x in s4]
    gone = sum(v == 0.0 for v in cv) / len(cv)
    zc = s4_zero_causes(p, runs, s4)
    why = []
    if zc["text"]:
        why.append(f"{zc['text']} where the trapped text writes alone cancel the gain (from "
                   f"{zc['text_min_patches_per_s']:.3g} patches/s)")
    if zc["sync"]:
        why.append(f"{zc['sync']} where stage-2 sync alone does (from "
                   f"{zc['sync_min_pages_per_s']:.3g} page cycles/s)")
    if zc["both"]:
        why.append(f"{zc['both']} where only both together do")
    if zc["no_gain"]:
        why.append(f"{zc['no_gain']} where stage 2 gains nothing to begin with")
    zero_text = (f"; it is 0 (no exit budget left) at {gone:.0%} of the points: "
                 f"{', '.join(why)}" if why else "; it is never 0")
    out["S4"] = {"value": nums["S4"], "unit": "exits/s", "sweep": s4,
                 "swings": s4_swings(p, runs),
                 "explanation": (
                     f"Stage-2 replication with {p['pkvm_leaf']} leaves gains {g:+.1%} over the "
                     f"VHE baseline on the simulated work; at the published rates, text writes "
                     f"trapped to EL2 ({p['patches_per_s']:g} patches/s of {p['patch_sites']} "
                     f"instructions, {p['el2_trap_ns']:g} ns per trap) take "
                     f"{sh['text_stage2'] - sh['text_base']:.2g} of the machine beyond the "
                     f"baseline's own patching and keeping one host stage-2 table set per node "
                     f"in sync ({p['s2_pages_per_s']:g} page cycles/s, each donation's TLBI "
                     f"VMALLE1IS making every CPU re-walk up to {p['rewalk_working_set']} "
                     f"translations in two stages) {sh['sync']:.2g}"
                     + (" (more than the whole machine: no time is left for the work)"
                        if sh["sync"] >= 1.0 else "") + "; with "
                     f"them and {p['nvhe_exit_extra_ns']:g} ns more per exit without VHE the net "
                     f"gain reaches zero at {cross:.3g} exits per second per CPU ({cross0:.3g} "
                     f"with exits alone). Alone, the trapped text writes cancel the gain at "
                     f"{cr['text-write traps, stage 2']:.3g} patches/s (KTR's untrapped writes "
                     f"at {cr['text writes, KTR (no trap)']:.3g}) and stage-2 sync at "
                     f"{cr['stage-2 sync']:.3g} page cycles/s. Over the joint sweep (per-exit "
                     f"cost, background load, ratio range and {p['s4_overhead_points']} "
                     f"Latin-hypercube points of the overheads' assumed rates and costs) the "
                     f"crossover spans {min(cv):.3g} to {max(cv):.3g}{zero_text}.")}
    main = el2.filter(el2["exits_per_kinstr"] == float(p["el2_exits_per_kinstr"])).sort("node")
    nodes = nums["S5"]["node"]
    ns = nums["S5"]["ns"]
    far = main.filter(main["node"] == max(nodes)).row(0, named=True)
    others = el2.filter(el2["node"] == max(nodes)).sort("exits_per_kinstr")
    spread = ", ".join(f"{r['ns_per_exit']:.0f} ns at {r['exits_per_kinstr']:g}"
                       for r in others.iter_rows(named=True))
    out["S5"] = {"value": nums["S5"], "unit": "ns per exit", "sweep": [],
                 "explanation": (
                     f"With the synthetic kernel phases and the assumed exits (the captured "
                     f"pKVM run's are compared in the notebook), "
                     f"EL2 text has one copy, on node 0, the hypervisor's own stage-1 tables "
                     f"one, in the hyp pool "
                     f"({'the last node' if p['hyp_pool'] == 'top' else 'node 0'}), and EL2 "
                     f"translates in one stage (1D walks of up to "
                     f"{eng.arm64(p['s1_granule'], 48).levels} references, no stage 2): at "
                     f"{p['el2_exits_per_kinstr']:g} exits per 1000 instructions "
                     f"{far['hyp_mem_reads_per_exit']:.2g} text lines and "
                     f"{far['hyp_walk_mem_reads_per_exit']:.2g} table lines per exit come from "
                     f"memory (over {far['exits']} simulated exits), costing {ns[0]:.0f} ns on "
                     f"node 0 and {far['ns_per_exit']:.0f} ns on the remote node, "
                     f"{far['walk_ns_per_exit']:.0f} ns of it walks "
                     f"(remote node: {spread} exits per 1000 instructions): between exits its "
                     f"{p['hyp_text_bytes'] // 1024} KiB stay in the L2 and LLC, whose pressure "
                     f"from the node's other cores the model carries only as a smaller LLC.")}
    b = mem.filter((mem["granule"] == p["s6_granules"][0]) & (mem["leaf"] == "block")
                   ).sort("nodes")
    rb = b["reserved_bytes"].to_list()
    ub = b["used_bytes"].to_list()
    ram = b["ram_bytes"].to_list()
    out["S6"] = {"value": {"nodes": b["nodes"].to_list(), "reserved_bytes": rb},
                 "unit": "bytes", "sweep": [], "deterministic": True,
                 "explanation": (
                     f"pKVM reserves stage-2 tables for every host page at page granularity "
                     f"(host_s2_pgtable_pages) and every node's set covers all of it, so with "
                     f"{p['s6_ram_per_node_bytes'] / 2**30:.0f} GiB per node the reservation "
                     f"grows from {rb[0] / 2**20:.0f} MiB on {b['nodes'][0]} node to "
                     f"{rb[-1] / 2**20:.0f} MiB on {b['nodes'][-1]} ({rb[-1] / ram[-1]:.2%} of "
                     f"RAM), while the block-mapped sets actually use {ub[-1] / 2**20:.2f} MiB.")}
    return out


def results_frame(p: dict, scenario: str, comp, schemes, exits, el2, mem, overheads=None,
                  events=None) -> "pl.DataFrame":
    """The notebook's tidy frame (:mod:`kmm.results`)."""
    from ... import results
    seed = p["seeds"]  # the simulations pool every seed: rows list them all
    rows = []
    for r in comp.iter_rows(named=True):
        rows += results.rows_for(scenario, {"stage2": r["label"], "leaf_bytes": r["leaf_bytes"],
                                            "linux_builds": r["linux_builds"]},
                                 seed, {k: (float(r[k]), u) for k, u in (
                                     ("walks_pki", "per 1000 instructions"),
                                     ("refs_per_walk", "count"), ("bound_refs", "count"),
                                     ("walk_ns_pki", "ns per 1000 instructions"),
                                     ("loss_vs_ktr", "fraction"), ("footprint_ns", "ns"),
                                     ("walk_part_ns", "ns"), ("interaction_ns", "ns"),
                                     ("share_footprint", "fraction"),
                                     ("gain_vs_baseline", "fraction"))
                                     if r[k] is not None and r[k] == r[k]})
    for r in schemes.iter_rows(named=True):
        rows += results.rows_for(scenario, {"workload": r["workload"], "scheme": r["scheme"],
                                            "latency_ratio": r["ratio"]}, seed,
                                 {"gain": (r["gain"], "fraction")})
    for r in exits.iter_rows(named=True):
        rows += results.rows_for(scenario, {"exit_rate": r["exit_rate"],
                                            "nvhe_exit_extra_ns": r["extra_ns"],
                                            "overheads": r["overheads"]}, seed,
                                 {"net_gain": (r["net_gain"], "fraction")})
    for r in el2.iter_rows(named=True):
        rows += results.rows_for(scenario, {"node": r["node"],
                                            "exits_per_kinstr": r["exits_per_kinstr"]}, seed,
                                 {"el2_ns_per_exit": (r["ns_per_exit"], "ns"),
                                  "el2_fetch_ns_per_exit": (r["fetch_ns_per_exit"], "ns"),
                                  "el2_walk_ns_per_exit": (r["walk_ns_per_exit"], "ns")})
    for r in (overheads.iter_rows(named=True) if overheads is not None else ()):
        rows += results.rows_for(scenario, {"overhead": r["overhead"], "rate": r["rate"]}, seed,
                                 {"overhead_loss": (r["loss"], "fraction")})
    for r in (events.iter_rows(named=True) if events is not None else ()):
        rows += results.rows_for(scenario, {"event": r["event"], "nodes": r["nodes"]}, seed,
                                 {"event_ns": (r["ns"], "ns"), "traps": (r["traps"], "count"),
                                  "copy_writes": (r["copy_writes"], "count"),
                                  "descriptor_writes": (r["descriptor_writes"], "count"),
                                  "tlbis": (r["tlbis"], "count")})
    for r in mem.iter_rows(named=True):
        rows += results.rows_for(scenario, {"granule": r["granule"], "nodes": r["nodes"],
                                            "leaf": r["leaf"]}, seed,
                                 {"reserved_bytes": (r["reserved_bytes"], "bytes"),
                                  "used_bytes": (r["used_bytes"], "bytes")})
    return results.frame(rows)


CHARTS = {"S1": "pkvm_decomposition", "S2": "pkvm_decomposition", "S3": "pkvm_walk_time",
          "S4": "pkvm_vhe_crossover", "S5": "pkvm_el2_text", "S6": "pkvm_stage2_memory"}


@cached()
def _computed(p: dict) -> tuple:
    """What both the evidence and the frame read: runs, frames and claim values."""
    runs = simulate_all(p)
    comp, exits = comparison_frame(p, runs), exit_frame(p, runs)
    el2, mem = el2_frame(p, runs), memory_frame(p)
    return runs, comp, exits, el2, mem, claim_values(p, runs, comp, exits, el2, mem)


def evidence(p: dict) -> dict:
    """S1-S6 at parameters ``p`` (:class:`kmm.suite.study.Evidence` per claim), S1-S5 with
    their :func:`replicates`."""
    reps = replicates(p)
    values = {c: {**v, "replicates": reps.get(c, ())} for c, v in _computed(p)[-1].items()}
    return evidence_from(values, CHARTS)


def frame(p: dict, scenario: str) -> "pl.DataFrame":
    """The notebook's tidy frame at parameters ``p``."""
    runs, comp, exits, el2, mem, _values = _computed(p)
    overheads, _crossovers = overhead_frames(p, runs)
    return results_frame(p, scenario, comp, schemes_frame(p, runs), exits, el2, mem, overheads,
                         event_cost_frame(p))


STUDY = Study("pkvm", tuple(CHARTS), DEFAULTS, evidence, check_params, frame, ASSUMED)
