"""permvmalloc: the study: parameters, evidence per claim, frames.

Part of :mod:`kmm.mech.permvmalloc`."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...config import check_int
from ...engine import GiB, MiB
from .model import (_aged_pool, cost_vs_cpus, directmap_end, flush_histogram, GLOBAL_EVENTS,
    itlb_misses, itlb_trace_misses, ItlbConfig, load_step_evidence, LSMOD_X86_LAPTOP, MachineConfig, median_flushes,
    OpKind, PACK_BYTES, PAGE, PAGE_SHIFT, Policy, PolicyConfig, Rewalk, run, RunResult,
    STANDARD_POLICIES, TextPoke)
from ...suite.study import (cached, evaluate_points, evidence_from, grid, one_at_a_time,
    replicate_plan, replicates_from, Study)
from .workload import (bpf_sizes, FETCH_TRACES, load_traced_fetches, MeasuredModuleMix,
    MODULE_TABLE_PACKAGE, module_table, Workload)

# ---- the notebook's scenario -------------------------------------------------------------------
#: parameters of the notebook that are not scalar model inputs
_LIST_PARAMS = ("cost_cpus", "bg_sweep", "itlb_sweep_zipf", "itlb_sweep_run_lines",
                "itlb_sweep_bpf_share", "itlb_sweep_module_trace")
#: the fetch workloads of the iTLB comparison: replayed captured traces, or the synthetic
#: Zipf-popularity stream (:func:`fetch_trace`)
ITLB_WORKLOADS = ("trace", "synthetic")
#: the parameters an iTLB count depends on (besides the policy's live text)
_ITLB_KEYS = ("itlb_workload", "itlb_module_trace", "itlb_fetches", "itlb_zipf",
              "itlb_run_lines", "itlb_bpf_share", "itlb_l1_entries", "itlb_l1_ways",
              "stlb_entries", "stlb_ways", "seed")


def machine_config(p: dict, **over) -> MachineConfig:
    q = {**p, **over}
    return MachineConfig(ram_bytes=int(q["ram_gib"]) * GiB, cpus=int(q["cpus"]),
                         bg_used_fraction=float(q["bg_used_fraction"]),
                         bg_unmovable_share=float(q["bg_unmovable_share"]),
                         bg_ops_per_event=int(q["bg_ops_per_event"]), seed=int(q["seed"]),
                         pcp=bool(q["pcp"]), nofragment=bool(q["nofragment"]))


def module_mix(p: dict | None = None, **over) -> MeasuredModuleMix:
    """The module mix: region layouts measured from a Debian x86-64 kernel package's modules
    (:class:`MeasuredModuleMix`); it has no parameters."""
    return MeasuredModuleMix()


def workload(p: dict, *, bpf: bool = True, **over) -> Workload:
    """The boot module set (the first ``module_count`` modules of :data:`LSMOD_X86_LAPTOP`,
    laid out as measured modules of their size, :class:`MeasuredModuleMix`) and the BPF
    churn of the parameters ``p``."""
    q = {**p, **over}
    n = check_int("module_count", int(q["module_count"]), lo=0, hi=len(LSMOD_X86_LAPTOP))
    seed = int(q["seed"])
    mods = tuple(module_mix(q).modules(LSMOD_X86_LAPTOP[:n], seed + 1))
    sizes = ()
    if bpf:
        sizes = tuple(int(x) for x in bpf_sizes(int(q["bpf_programs"]),
                                                float(q["bpf_median_bytes"]),
                                                float(q["bpf_p75_bytes"]),
                                                int(q["bpf_cap_bytes"]), seed + 2))
    return Workload(mods, sizes, int(q["bpf_live"]), float(q["bpf_realloc_probability"]),
                    int(q["shrink_every"]), seed + 3)


def itlb_config(p: dict, **over) -> ItlbConfig:
    q = {**p, **over}
    return ItlbConfig(int(q["itlb_l1_entries"]), int(q["itlb_l1_ways"]), int(q["stlb_entries"]),
                      int(q["stlb_ways"]), int(q["itlb_fetches"]), float(q["itlb_zipf"]),
                      int(q["itlb_run_lines"]), float(q["itlb_bpf_share"]), int(q["seed"]))


def fetch_traces(p: dict, **over) -> dict:
    """The captured traces that drive the trace-driven fetch workload: ``itlb_module_trace``
    for calls into module text, ``bpf`` for calls into BPF programs."""
    q = {**p, **over}
    return {"mod": load_traced_fetches(str(q["itlb_module_trace"])),
            "bpf": load_traced_fetches("bpf")}


def fetch_misses(text, p: dict, **over) -> dict:
    """iTLB misses of ``text`` under the fetch workload ``itlb_workload`` of ``p``."""
    from ...config import check_choice

    q = {**p, **over}
    check_choice("itlb_workload", q["itlb_workload"], ITLB_WORKLOADS)
    cfg = itlb_config(q)
    if q["itlb_workload"] == "trace":
        return itlb_trace_misses(text, cfg, fetch_traces(q))
    return itlb_misses(text, cfg)


def invalidation_costs(p: dict):
    from ...engine import InvalidationCosts

    # every full flush of this model is a global (kernel) flush: global_flush_ns, not the
    # CR3-write figure that keeps global entries
    return InvalidationCosts(invlpg_ns=float(p["invlpg_ns"]), ipi_base_ns=float(p["ipi_base_ns"]),
                             full_flush_ns=float(p["global_flush_ns"]),
                             ipi_per_extra_target_ns=float(p["ipi_per_extra_target_ns"]),
                             ipi_handler_ns=float(p["ipi_handler_ns"]),
                             invlpgb_ns=float(p["invlpgb_ns"]), tlbsync_ns=float(p["tlbsync_ns"]),
                             tlbi_ns=float(p["tlbi_ns"]), dsb_ish_ns=float(p["dsb_ish_ns"]),
                             dsb_ish_per_cpu_ns=float(p["dsb_ish_per_cpu_ns"]))


def rewalk_config(p: dict) -> Rewalk:
    """How every CPU's re-walks after a flush of everything are priced (:class:`Rewalk`):
    ``rewalk_working_set`` translations of its own work per CPU, at most ``stlb_entries``
    of them held, ``rewalk_memory_refs`` of a walk's descriptors from memory at the loaded
    latency of ``mem_idle_ns`` at utilisation ``background``."""
    return Rewalk(working_set=int(p["rewalk_working_set"]),
                  memory_refs=float(p["rewalk_memory_refs"]), mem_ns=float(p["mem_idle_ns"]),
                  background=float(p["background"]),
                  tlb_entries=int(p["stlb_entries"]))


def text_poke_config(p: dict) -> TextPoke:
    """How a module load's live patching of its static branches is priced
    (:class:`TextPoke`): ``jump_patched_share`` of its jump entries patched, in batches of
    ``jump_entries_per_key`` entries, and ``static_call_changed_share`` of its static call
    sites, one batch each."""
    return TextPoke(patched_share=float(p["jump_patched_share"]),
                    entries_per_key=float(p["jump_entries_per_key"]),
                    static_call_share=float(p["static_call_changed_share"]))


def decided_by(sweep: Sequence[dict]) -> str | None:
    """The one swept parameter that alone determines the recorded values, if one does:
    the values are constant within each of its settings and differ between them. Read
    from the values only (no band); what the report calls "decided by" is
    :func:`kmm.suite.registry.decided_by`."""
    if not sweep:
        return None
    vals = [repr(pt["value"]) for pt in sweep]
    if len(set(vals)) < 2:
        return None
    for k in sweep[0]["params"]:
        groups: dict = {}
        for pt, v in zip(sweep, vals):
            groups.setdefault(repr(pt["params"][k]), set()).add(v)
        if all(len(g) == 1 for g in groups.values()) and len(groups) > 1:
            return k
    return None


@dataclass
class ScenarioResult:
    """Everything the notebook charts and records, for one parameter set."""

    params: dict
    results: list
    sweeps: dict
    #: iTLB counts already computed, by policy and fetch-workload parameters
    _itlb: dict = field(default_factory=dict, repr=False)
    #: one-at-a-time points of the sweeps, by claim (:attr:`kmm.suite.study.Evidence.swings`)
    swings: dict = field(default_factory=dict)

    def fetch_misses(self, label: str, **over) -> dict:
        """:func:`fetch_misses` of policy ``label``'s live text, computed once per setting."""
        q = {**self.params, **over}
        key = (label, *(repr(q[k]) for k in _ITLB_KEYS))
        if key not in self._itlb:
            self._itlb[key] = fetch_misses(self.result(label).text, q)
        return self._itlb[key]

    def result(self, label: str) -> RunResult:
        for r in self.results:
            if r.policy.label == label:
                return r
        raise KeyError(label)

    @property
    def ops(self):
        import polars as pl

        return pl.concat([r.ops.select("policy", "op", "index", "global_flushes", "local",
                                       "g_split", "pages_mapped") for r in self.results])

    @property
    def snapshots(self):
        import polars as pl

        return pl.concat([r.snapshots for r in self.results])

    def histogram(self):
        return flush_histogram(self.results)

    def costs(self):
        return cost_vs_cpus(self.results, list(self.params["cost_cpus"]),
                            costs=invalidation_costs(self.params),
                            rewalk=rewalk_config(self.params),
                            text_poke=text_poke_config(self.params))

    def itlb(self):
        """iTLB misses of each policy's live module and BPF text under both fetch workloads
        (``workload``: ``trace`` or ``synthetic``), the same number of fetches into that text;
        ``kernel_fetches`` are the kernel-text fetches the trace-driven stream interleaves."""
        import polars as pl

        rows = []
        for w in ITLB_WORKLOADS:
            for r in self.results:
                m = self.fetch_misses(r.policy.label, itlb_workload=w)
                rows.append({"workload": w, "policy": r.policy.label,
                             "text_leaf": "2M" if any(t[3] > PAGE_SHIFT for t in r.text) else "4K",
                             "fetches": m["fetches"], "l1_misses": m["l1_misses"],
                             "misses": m["misses"], "kernel_fetches": m.get("kernel_fetches", 0)})
        return pl.DataFrame(rows)

    def caches(self):
        import polars as pl

        return pl.DataFrame([{"policy": r.policy.label, "cache": k, "bytes": v}
                             for r in self.results for k, v in r.cache_end.items()])

    # ---- claim values ---------------------------------------------------------------------
    def p1(self) -> float:
        return median_flushes(self.result("legacy"), OpKind.MODULE_LOAD)

    def p2(self) -> float:
        return median_flushes(self.result("perm_alloc"), OpKind.MODULE_LOAD)

    def p3(self) -> float:
        return median_flushes(self.result("perm_alloc"), OpKind.BPF_LOAD)

    def p4(self) -> dict:
        return {"directmap4k_legacy": directmap_end(self.result("legacy"))["4k"],
                "directmap4k_grouped": directmap_end(self.result("perm_alloc"))["4k"]}

    def p5(self) -> dict:
        return load_step_evidence(self.result("perm_alloc"))

    def p6(self, **over) -> dict:
        m4 = self.fetch_misses("perm_alloc", **over)
        m2 = self.fetch_misses("perm_alloc+3+4", **over)
        return {"itlb_misses_4k": m4["misses"], "itlb_misses_2m": m2["misses"],
                "fetches": m4["fetches"]}

    def tidy(self, scenario: str):
        """The tidy result frame (kmm.results schema): per policy and operation kind the
        median and mean shootdowns and local flushes, DirectMap and cache bytes at the end,
        iTLB misses, and the claim values."""
        import polars as pl

        from ...results import frame, rows_for

        scalars = {k: v for k, v in self.params.items()
                   if k not in _LIST_PARAMS and k != "scenario"}
        rows = []
        seed = int(self.params["seed"])
        for r in self.results:
            for op in sorted(set(r.ops["op"].to_list())):
                part = r.ops.filter(pl.col("op") == op)
                rows += rows_for(scenario, {**scalars, "policy": r.policy.label, "op": op}, seed, {
                    "global_flushes_median": (float(part["global_flushes"].median()), "count"),
                    "global_flushes_mean": (float(part["global_flushes"].mean()), "count"),
                    "local_flushes_mean": (float(part["local"].mean()), "count"),
                    "direct_map_splits_mean": (float(part["g_split"].mean()), "count"),
                    "operations": (float(part.height), "count")})
            dmb = directmap_end(r)
            rows += rows_for(scenario, {**scalars, "policy": r.policy.label, "op": "end"}, seed, {
                "directmap_4k": (dmb["4k"], "bytes"), "directmap_2m": (dmb["2m"], "bytes"),
                "directmap_1g": (dmb["1g"], "bytes"),
                "cache_bytes": (float(sum(r.cache_end.values())), "bytes"),
                "wx_violations": (float(r.counts.wx_violations), "count")})
        for row in self.itlb().iter_rows(named=True):
            op = "itlb" if row["workload"] == self.params["itlb_workload"] else f"itlb_{row['workload']}"
            rows += rows_for(scenario, {**scalars, "policy": row["policy"], "op": op}, seed, {
                "itlb_walks": (float(row["misses"]), "count"),
                "itlb_l1_misses": (float(row["l1_misses"]), "count"),
                "fetches": (float(row["fetches"]), "count")})
        return frame(rows)


#: ``assumed`` ranges (as params/permvmalloc.yaml declares them) of the background sweep
#: (P1-P5) and of the fetch workload's sweep (P6)
BG_RANGES = {"bg_used_fraction": (0.3, 0.85), "bg_unmovable_share": (0.1, 0.5),
             "bg_ops_per_event": (0, 512)}
ITLB_RANGES = {"itlb_zipf": (0.6, 1.4), "itlb_bpf_share": (0.0, 0.9)}


def swing_points(p: dict, axes: dict, ranges: dict) -> list[dict]:
    """The one-at-a-time points of a sweep over ``axes`` (name -> its levels in the sweep),
    every other swept parameter at its value in ``p``: each end of an ``assumed`` parameter's
    range (``ranges``, :func:`kmm.suite.study.one_at_a_time`), each other level of a swept
    parameter that has a source or choices (a captured trace).

    >>> swing_points({"a": 0.5, "t": "x", "n": 3}, {"a": [0.0, 1.0], "t": ["x", "y"]},
    ...              {"a": (0.0, 1.0)})
    [{'a': 0.0, 't': 'x'}, {'a': 1.0, 't': 'x'}, {'a': 0.5, 't': 'y'}]
    """
    centre = {k: p[k] for k in axes}
    pts = [{**centre, **q} for q in one_at_a_time({k: r for k, r in ranges.items() if k in axes},
                                                   centre)]
    for k, levels in axes.items():
        if k not in ranges:
            pts += [{**centre, k: v} for v in dict.fromkeys(levels) if v != centre[k]]
    return pts


@cached()
def run_scenario(params: dict, *, policies: Sequence[PolicyConfig] = STANDARD_POLICIES,
                 sweeps: bool = True) -> ScenarioResult:
    """Run every policy on the workload of ``params`` (the notebook's parameters) and, with
    ``sweeps``, the joint sweeps of the ``assumed`` parameters the claims depend on:

    - background ageing (``bg_sweep``: points ``[bg_used_fraction, bg_unmovable_share,
      bg_ops_per_event]``, e.g. a two-level fractional factorial): the whole workload,
      legacy and perm_alloc, whose boot gives P1 and P2 and whole run P3, P4 and P5. The
      module mix is measured (:class:`MeasuredModuleMix`), not swept;
    - fetch workload: the published layouts -> P6. Trace-driven (``itlb_workload`` trace):
      the popularity of objects (``itlb_sweep_zipf``), the share of calls into BPF
      (``itlb_sweep_bpf_share``) and the captured module trace (``itlb_sweep_module_trace``);
      the synthetic workload's own sweep (with ``itlb_sweep_run_lines``) is kept beside it
      as ``P6-synthetic``;
    - the one-at-a-time swings of both sweeps (:func:`swing_points`; ``swings``), which
      :func:`kmm.suite.registry.decided_by` reads: neither sweep has points that differ from
      the published one in one parameter alone.
    """
    p = dict(params)
    mach = machine_config(p)
    wl = workload(p)
    results = [run(mach, pol, wl, snapshots=200) for pol in policies]
    out = ScenarioResult(p, results, {})
    if not sweeps:
        return out
    legacy, perm = PolicyConfig(Policy.LEGACY), PolicyConfig(Policy.PERM_ALLOC)

    def bg_point(pt: dict) -> dict:
        """P1-P5 with the background of ``pt``: the whole workload, legacy and perm_alloc
        (the boot's module loads, P1 and P2, are its first operations)."""
        m = machine_config(p, **pt)
        a, b = run(m, legacy, wl, snapshots=1), run(m, perm, wl, snapshots=1)
        return {"P1": median_flushes(a, OpKind.MODULE_LOAD),
                "P2": median_flushes(b, OpKind.MODULE_LOAD), "P3": median_flushes(b, OpKind.BPF_LOAD),
                "P4": {"directmap4k_legacy": directmap_end(a)["4k"],
                       "directmap4k_grouped": directmap_end(b)["4k"]},
                "P5": load_step_evidence(b)}

    bg_axes = {"bg_used_fraction": [float(x[0]) for x in p["bg_sweep"]],
               "bg_unmovable_share": [float(x[1]) for x in p["bg_sweep"]],
               "bg_ops_per_event": [int(x[2]) for x in p["bg_sweep"]]}
    # the swings first: those of bg_ops_per_event age the pool as the published runs did, and
    # reuse it (:func:`_aged_pool` keeps the last 4)
    out.swings = evaluate_points(bg_point, swing_points(p, bg_axes, BG_RANGES))
    out.sweeps = evaluate_points(bg_point, [dict(zip(bg_axes, pt))
                                            for pt in zip(*bg_axes.values())])
    _aged_pool.cache_clear()
    axes = {"trace": {"itlb_zipf": p["itlb_sweep_zipf"], "itlb_bpf_share": p["itlb_sweep_bpf_share"],
                      "itlb_module_trace": p["itlb_sweep_module_trace"]},
            "synthetic": {"itlb_zipf": p["itlb_sweep_zipf"], "itlb_run_lines": p["itlb_sweep_run_lines"],
                          "itlb_bpf_share": p["itlb_sweep_bpf_share"]}}
    own = p["itlb_workload"]
    for w in (own, "synthetic" if own == "trace" else "trace"):  # the sweep of each workload
        name = "P6" if w == own else f"P6-{w}"
        out.sweeps[name] = evaluate_points(lambda pt: {name: out.p6(itlb_workload=w, **pt)},
                                           grid(axes[w])).get(name, [])
    out.swings.update(evaluate_points(lambda pt: {"P6": out.p6(**pt)},
                                      swing_points(p, axes[own], ITLB_RANGES)))
    return out


#: The policies the claims read: legacy, perm_alloc and perm_alloc with ideas 3 and 4 (P6)
CLAIM_POLICIES = tuple(pol for pol in STANDARD_POLICIES
                       if pol.label in ("legacy", "perm_alloc", "perm_alloc+3+4"))


def claim_point(sr: ScenarioResult) -> dict:
    """The values of P1-P6 of ``sr`` (what :func:`claim_values` records as each value)."""
    return {"P1": sr.p1(), "P2": sr.p2(), "P3": sr.p3(), "P4": sr.p4(), "P5": sr.p5(),
            "P6": sr.p6()}


def stream_lengths(p: dict) -> dict:
    """The stream each claim's value comes from, by its length at parameters ``p``: module
    loads (P1, P2: the boot), BPF loads (P3), loads of both kinds (P4, P5: the whole
    workload) and instruction fetches into module and BPF text (P6)."""
    loads = int(p["module_count"]) + int(p["bpf_programs"])
    return {"P1": int(p["module_count"]), "P2": int(p["module_count"]),
            "P3": int(p["bpf_programs"]), "P4": loads, "P5": loads, "P6": int(p["itlb_fetches"])}


def _ops_to(res: RunResult, kinds: Sequence[str], n: int):
    """The operations of ``res`` up to and including its ``n``-th operation of ``kinds``."""
    import polars as pl

    ops = res.ops.with_row_index("_row")
    rows = ops.filter(pl.col("op").is_in(list(kinds)))["_row"]
    return ops.head(int(rows[n - 1]) + 1) if 0 < n <= rows.len() else ops.head(0)


def _median_to(res: RunResult, kind: OpKind, n: int) -> float:
    """:func:`median_flushes` over the first ``n`` operations of kind ``kind``."""
    v = _ops_to(res, [kind.name.lower()], n)
    v = v.filter(v["op"] == kind.name.lower())["global_flushes"]
    return float(v.median()) if v.len() else float("nan")


def half_point(sr: ScenarioResult) -> dict:
    """P1-P6 at half of each claim's stream (:func:`stream_lengths`), read from the runs of
    ``sr`` themselves (their midpoint snapshots): the median over the first half of the
    module (P1, P2) or BPF loads (P3); DirectMap4k at the snapshot nearest the middle load
    (P4); the load step's flushes over the operations up to the middle load (P5); iTLB
    counts up to half the fetches (P6; the synthetic fetch workload, which keeps no
    per-fetch outcome, by a run of its own with half the fetches).
    ``{claim: (length, value)}``."""
    p = sr.params
    n = {c: v // 2 for c, v in stream_lengths(p).items()}
    legacy, perm = sr.result("legacy"), sr.result("perm_alloc")
    loads = ("module_load", "bpf_load")

    def dm4k(res):
        at = _ops_to(res, loads, n["P4"]).height
        snaps = res.snapshots
        return int(snaps["directmap_4k"][int((snaps["index"] - at).abs().arg_min())])

    step = _ops_to(perm, loads, n["P5"])
    per = max(n["P5"], 1)
    p5 = {"global_flushes_per_load": float(step["load_step_global"].sum()) / per,
          "local_flushes_per_load": float(step["load_step_local"].sum()) / per,
          "lazy_threshold_purges_per_load": float(step["load_step_lazy"].sum()) / per,
          "loads": n["P5"]}
    if p["itlb_workload"] == "trace":
        m4, m2 = (sr.fetch_misses(lab)["half"] for lab in ("perm_alloc", "perm_alloc+3+4"))
    else:
        m4, m2 = (fetch_misses(sr.result(lab).text, {**p, "itlb_fetches": n["P6"]})
                  for lab in ("perm_alloc", "perm_alloc+3+4"))
    return {
        "P1": (n["P1"], _median_to(legacy, OpKind.MODULE_LOAD, n["P1"])),
        "P2": (n["P2"], _median_to(perm, OpKind.MODULE_LOAD, n["P2"])),
        "P3": (n["P3"], _median_to(perm, OpKind.BPF_LOAD, n["P3"])),
        "P4": (n["P4"], {"directmap4k_legacy": dm4k(legacy),
                         "directmap4k_grouped": dm4k(perm)}),
        "P5": (n["P5"], p5),
        "P6": (n["P6"], {"itlb_misses_4k": m4["misses"], "itlb_misses_2m": m2["misses"],
                         "fetches": m4["fetches"]}),
    }


def replicates(sr: ScenarioResult) -> dict[str, list[dict]]:
    """The published point of P1-P6 again (:func:`kmm.suite.registry.convergence`), at the
    runs of :func:`kmm.suite.study.replicate_plan`: at the next seeds over the whole workload
    (the policies the claims read, :data:`CLAIM_POLICIES`, on a machine aged, modules laid
    out, BPF sizes drawn and fetches placed by that seed; one run per seed serves every
    claim), and at half of each claim's stream from the published runs' midpoint snapshots
    (:func:`half_point`). Lengths are those of :func:`stream_lengths` (module loads, BPF
    loads, loads, fetches). No claim is deterministic: every value depends on the seed
    through the aged page allocator, the module layouts drawn from the measured table or the
    BPF image sizes. ``{claim: [{"seed", "length", "value"}, ...]}``."""
    p = sr.params
    half = half_point(sr)
    at_seed: dict[int, dict] = {}
    runs = []
    for c, n in stream_lengths(p).items():
        for seed, length in replicate_plan(int(p["seed"]), n):
            if length < n:
                runs.append((seed, half[c][0], {c: half[c][1]}))
                continue
            if seed not in at_seed:
                other = run_scenario.__wrapped__({**p, "seed": seed}, policies=CLAIM_POLICIES,
                                                 sweeps=False)
                at_seed[seed] = claim_point(other)
                _aged_pool.cache_clear()
            runs.append((seed, length, {c: at_seed[seed][c]}))
    return replicates_from(runs)


def run_point(**params):
    """Library runner for ``kmm sweep``: one parameter point, every policy, no claim
    sweeps; returns the tidy frame (scenario ``sweep``)."""
    return run_scenario(params, sweeps=False).tidy(str(params.get("scenario", "sweep")))


#: the notebook's parameters (its ``parameters`` cell) other than ``scenario``
#: The notebook's parameters with their small defaults (notebooks/permvmalloc.ipynb repeats
#: them; the published scenario is params/permvmalloc.yaml).
DEFAULTS: dict = {"ram_gib": 1, "cpus": 64, "bg_used_fraction": 0.6, "bg_unmovable_share": 0.25,
    "bg_ops_per_event": 64, "pcp": True, "nofragment": True, "module_count": 20, "bpf_programs": 150, "bpf_live": 50,
    "bpf_median_bytes": 500.0, "bpf_p75_bytes": 2000.0, "bpf_cap_bytes": 1048576,
    "bpf_realloc_probability": 1.0, "shrink_every": 0, "cost_cpus": [2, 8, 32, 128, 512],
    "invlpg_ns": 100.0, "ipi_base_ns": 675.0, "ipi_per_extra_target_ns": 67.5,
    "ipi_handler_ns": 1000.0, "global_flush_ns": 500.0, "invlpgb_ns": 100.0,
    "tlbsync_ns": 500.0, "tlbi_ns": 10.0, "dsb_ish_ns": 200.0, "dsb_ish_per_cpu_ns": 5.0,
    "rewalk_working_set": 256, "rewalk_memory_refs": 1.0, "mem_idle_ns": 81.96,
    "background": 0.3, "jump_patched_share": 0.1, "jump_entries_per_key": 2.0,
    "static_call_changed_share": 1.0, "itlb_workload": "trace", "itlb_module_trace": "module",
    "itlb_fetches": 50000, "itlb_zipf": 1.0, "itlb_run_lines": 2, "itlb_bpf_share": 0.3,
    "itlb_l1_entries": 128, "itlb_l1_ways": 8, "stlb_entries": 1536, "stlb_ways": 12,
    "bg_sweep": [[0.6, 0.25, 64.0]], "itlb_sweep_zipf": [0.6, 1.4], "itlb_sweep_run_lines": [2],
    "itlb_sweep_bpf_share": [0.3], "itlb_sweep_module_trace": ["module"], "invariant_ops": 100,
    "seed": 0}
NOTEBOOK_PARAMS = tuple(DEFAULTS)

#: ``assumed`` cost parameters and their plausible ranges (as params/permvmalloc.yaml
#: declares them), for the cost sensitivity chart
COST_RANGES = {"ipi_base_ns": (500.0, 5000.0), "ipi_per_extra_target_ns": (50.0, 2000.0),
               "ipi_handler_ns": (300.0, 3000.0), "global_flush_ns": (100.0, 2000.0),
               "invlpgb_ns": (50.0, 500.0), "tlbsync_ns": (100.0, 2000.0), "tlbi_ns": (5.0, 50.0),
               "dsb_ish_ns": (50.0, 1000.0), "dsb_ish_per_cpu_ns": (0.0, 20.0),
               "rewalk_working_set": (64, 1536), "rewalk_memory_refs": (0.5, 2.0),
               "background": (0.0, 0.8), "jump_patched_share": (0.0, 0.5),
               "jump_entries_per_key": (1.0, 8.0), "static_call_changed_share": (0.5, 1.0)}


def params_from(namespace: dict) -> dict:
    """The notebook's parameters from ``namespace`` (its globals): :meth:`STUDY.params`."""
    return STUDY.params(namespace)


def cost_sensitivity(sr: ScenarioResult, cpus: int, ranges: dict | None = None):
    """Mean TLB-maintenance CPU time per load with each ``assumed`` cost parameter at the
    low and the high end of its range, the others at their values: ``parameter, end,
    policy, op, method, cpu_ns``."""
    import polars as pl

    rows = []
    for name, (lo, hi) in (ranges or COST_RANGES).items():
        for end, v in (("low", lo), ("high", hi)):
            q = {**sr.params, name: v}
            c = cost_vs_cpus(sr.results, [cpus], costs=invalidation_costs(q),
                             rewalk=rewalk_config(q), text_poke=text_poke_config(q))
            rows.append(c.with_columns(pl.lit(name).alias("parameter"), pl.lit(end).alias("end")))
    return pl.concat(rows)


def rai_by_size(cap: int = 64):
    """The measured relation of the module mix: per core size in pages (``cap`` or more
    pooled as ``cap``), the Debian package's ``modules`` of that size and the ``share``
    with an ro_after_init region (``__jump_table`` or ``.data..ro_after_init``)."""
    import polars as pl

    tab = module_table()
    return (pl.DataFrame({"core": np.minimum(tab["core_pages"], cap),
                          "has_rai": tab["rai_pages"] > 0})
            .group_by("core").agg(pl.col("has_rai").mean().alias("share"),
                                  pl.len().alias("modules")).sort("core"))


def _fmt(x: float) -> str:
    return f"{x:g}"


def _p6_workload(p: dict) -> str:
    """The fetch workload of ``p`` in words, with what the traces measured."""
    if p["itlb_workload"] != "trace":
        return (f"called by Zipf({_fmt(p['itlb_zipf'])}) popularity in runs of "
                f"{_fmt(p['itlb_run_lines'])} lines ({_fmt(round(100 * p['itlb_bpf_share']))} % "
                f"into BPF; the synthetic workload)")
    m, b = (load_traced_fetches(n).summary() for n in (p["itlb_module_trace"], "bpf"))
    return (f"called as the captured traces call them (module text: "
            f"{FETCH_TRACES[p['itlb_module_trace']]}, {m['visits']} visits of "
            f"{m['fetches_per_visit']:.1f} fetches over {m['lines_per_visit']:.1f} lines, "
            f"{m['kernel_fetches'] / max(m['object_fetches'], 1):.0f} kernel-text fetches per "
            f"module-text fetch between them; BPF: bpf.kmmt, {b['visits']} visits of "
            f"{b['fetches_per_visit']:.1f} fetches over {b['lines_per_visit']:.1f} lines, "
            f"{b['kernel_fetches'] / max(b['object_fetches'], 1):.1f} kernel-text fetches per "
            f"BPF fetch), each pass over a trace landing on live objects by Zipf("
            f"{_fmt(p['itlb_zipf'])}) popularity, {_fmt(round(100 * p['itlb_bpf_share']))} % of "
            f"calls into BPF")


def _first_touches(sr: "ScenarioResult") -> str:
    """How many of the 4K walks of the trace-driven stream are first touches of a page."""
    if sr.params["itlb_workload"] != "trace":
        return ""
    m = sr.fetch_misses("perm_alloc")
    again = m["misses"] - m["pages"]
    return (f"; the calls reach {_fmt(m['pages'])} distinct 4K pages of that text, each "
            f"walked on its first fetch, and {_fmt(again)} walks are repeats after an eviction")


#: The synthetic fetch workload's footprint parameters, what each trace measures of them,
#: and why a parameter keeps its assumed range where it does
FOOTPRINT_PARAMS = (
    ("itlb_run_lines", "lines_per_visit",
     "distinct 64-byte lines fetched per visit into module or BPF text"),
    ("itlb_zipf", None,
     "not measured: each VM runs one scenario with 1 BPF program or 3-4 modules, so it "
     "cannot show how calls spread over a machine's 169 modules and 300 programs"),
    ("itlb_bpf_share", None,
     "not measured: each trace calls one kind of text (module.kmmt and dmcrypt.kmmt no BPF, "
     "bpf.kmmt no module), so the mix is the modelled machine's, not a VM's"),
)


def footprint_comparison(p: dict):
    """Synthetic vs real: each footprint parameter of the synthetic fetch workload at ``p``
    beside what every fetch trace measures of it (``measured`` null where a trace cannot
    measure it, ``note`` says why)."""
    import polars as pl

    rows = []
    for name, key, note in FOOTPRINT_PARAMS:
        for t in FETCH_TRACES:
            sm = load_traced_fetches(t).summary()
            rows.append({"parameter": name, "synthetic": float(p[name]), "trace": FETCH_TRACES[t],
                         "measured": float(sm[key]) if key else None,
                         "visits": sm["visits"], "note": note})
    return pl.DataFrame(rows)


def claim_values(sr: ScenarioResult) -> dict[str, dict]:
    """Value, unit, chart, explanation and sweep of P1-P6, from the runs."""
    legacy, perm = sr.result("legacy"), sr.result("perm_alloc")
    init_l = median_flushes(legacy, OpKind.MODULE_INIT_FREE)
    init_p = median_flushes(perm, OpKind.MODULE_INIT_FREE)
    lops = legacy.ops.filter(legacy.ops["op"] == "module_load")
    causes = {e.name.lower(): float(lops[e.name.lower()].mean()) for e in GLOBAL_EVENTS}
    share_rai = float(np.mean([m.rai > 0 for m in workload(sr.params, bpf=False).modules]))
    pops = perm.ops.filter(perm.ops["op"] == "module_load")
    loads_flushing = float((pops["global_flushes"] > 0).mean()) if pops.height else float("nan")
    half_n = stream_lengths(sr.params)["P2"] // 2
    half_flushing = float((pops.head(half_n)["global_flushes"] > 0).mean()) if half_n else float("nan")
    tab = module_table()
    has = tab["rai_pages"] > 0
    rai_small = float(has[(tab["core_pages"] >= 4) & (tab["core_pages"] < 8)].mean())
    rai_large = float(has[tab["core_pages"] >= 32].mean())
    bpf_l = median_flushes(legacy, OpKind.BPF_LOAD)
    p4, p5, p6 = sr.p4(), sr.p5(), sr.p6()
    other_w = next(w for w in ITLB_WORKLOADS if w != sr.params["itlb_workload"])
    p6o = sr.p6(itlb_workload=other_w)
    icfg = itlb_config(sr.params)
    text_mib = sum(t[2] for t in perm.text) / MiB
    reach4k_mib = icfg.stlb_entries * PAGE / MiB
    reach2m_mib = icfg.stlb_entries * PACK_BYTES / MiB
    sw = sr.sweeps
    out = {
        "P1": {"value": sr.p1(), "unit": "shootdowns", "chart": "permvmalloc_shootdowns",
               "explanation": (
                   f"The modelled v5.10 flow issues a median of {_fmt(sr.p1())} all-CPU "
                   f"flushes per module load (mean {_fmt(round(causes['g_cpa'], 2))} from "
                   f"set_memory_ro/x calls that change a live translation, "
                   f"{_fmt(round(causes['g_purge'], 2))} from vm_unmap_aliases purging the "
                   f"lazily freed ELF copy, {_fmt(round(causes['g_split'], 2))} from "
                   f"flush_tlb_all on direct-map splits), the deferred init free adds a median "
                   f"of {_fmt(init_l)}, and a BPF JIT load costs {_fmt(bpf_l)}.")},
        "P2": {"value": sr.p2(), "unit": "shootdowns", "chart": "permvmalloc_shootdowns",
               "explanation": (
                   f"With perm_alloc a module load's only usual shootdown is the "
                   f"ro_after_init perm_change: {_fmt(round(100 * share_rai))} % of the "
                   f"booted modules have that region (laid out as the modules of Debian's "
                   f"{MODULE_TABLE_PACKAGE[0]} {MODULE_TABLE_PACKAGE[1]} of the same size: "
                   f"none of 3 pages has one, {_fmt(round(100 * rai_small))} % of those of 4-7 "
                   f"pages, {_fmt(round(100 * rai_large))} % of those of 32 pages or more); "
                   f"cache refills add one now and then: {_fmt(round(100 * loads_flushing))} "
                   f"% of the loads issue at least one shootdown, so the median over the "
                   f"syscall is {_fmt(sr.p2())}; counting the deferred init free (a flush for "
                   f"the executable init text) adds a median of {_fmt(init_p)}. The median "
                   f"sits on the share of booted modules with ro_after_init data, which the "
                   f"measured layouts tie to module size; over the first {half_n} loads of "
                   f"lsmod's order {_fmt(round(100 * half_flushing))} % flush and the median "
                   f"is {_fmt(_median_to(perm, OpKind.MODULE_LOAD, half_n))}: a median of "
                   f"counts that are 0 or 1 for most loads flips where that share crosses "
                   f"50 %, and the boot has no more modules than lsmod lists to lengthen it.")},
        "P3": {"value": sr.p3(), "unit": "shootdowns", "chart": "permvmalloc_shootdowns",
               "explanation": (
                   f"A perm_alloc BPF load maps cached, already unmapped pages at their final "
                   f"permission and copies through text_poke, so the median is "
                   f"{_fmt(sr.p3())}; only loads that refill the cache with a 2 MiB block "
                   f"({_fmt(round(100 * float((perm.ops.filter(perm.ops['op'] == 'bpf_load')['global_flushes'] > 0).mean()), 2))} "
                   f"% of loads) flush.")},
        "P4": {"value": p4, "unit": "bytes", "chart": "permvmalloc_directmap",
               "explanation": (
                   f"Legacy pages come one by one from the aged page allocator and each "
                   f"direct-map alias change splits the 2M leaf that holds it, leaving "
                   f"{_fmt(round(p4['directmap4k_legacy'] / MiB))} MiB of DirectMap4k after "
                   f"the workload, while perm_alloc breaks only the 2 MiB blocks it takes "
                   f"into its cache ({_fmt(round(p4['directmap4k_grouped'] / MiB))} MiB).")},
        "P5": {"value": p5, "unit": "flushes per load", "chart": "permvmalloc_shootdowns",
               "explanation": (
                   f"Copying contents into a mapping made at its final permission goes "
                   f"through text_poke's per-CPU mm, {_fmt(round(p5['local_flushes_per_load'], 2))} "
                   f"local flushes and {_fmt(p5['global_flushes_per_load'])} global ones per "
                   f"load; lazy-purge thresholds crossed by the staging buffers' frees add "
                   f"{_fmt(round(p5['lazy_threshold_purges_per_load'], 4))} per load."),
               "basis": {"basis": "structural", "rests_on": (
                   "the load step's global-flush count cannot leave 0: text_poke flushes only "
                   "the poking CPU's private mm and the staging buffer is freed lazily, and the "
                   "one global flush the step can trigger, a lazy-list purge when that free "
                   "crosses lazy_max_pages, is booked apart (lazy_threshold_purges_per_load "
                   f"= {_fmt(round(p5['lazy_threshold_purges_per_load'], 4))}), so the value "
                   "says what the modelled load path is built to do")}},
        "P6": {"value": p6, "unit": "page walks", "chart": "permvmalloc_itlb",
               "explanation": (
                   f"Over the same {_fmt(p6['fetches'])} instruction fetches into "
                   f"{_fmt(round(text_mib, 1))} MiB of live module and BPF text, "
                   f"{_p6_workload(sr.params)}, 4K mappings "
                   f"need {_fmt(p6['itlb_misses_4k'])} page walks and idea 4's shared 2 MiB "
                   f"mappings {_fmt(p6['itlb_misses_2m'])}{_first_touches(sr)} ({other_w} workload: "
                   f"{_fmt(p6o['itlb_misses_4k'])} and {_fmt(p6o['itlb_misses_2m'])}): the "
                   f"STLB reaches {_fmt(round(reach4k_mib, 1))} MiB with 4K entries and "
                   f"{_fmt(round(reach2m_mib))} MiB with 2 MiB ones.")},
    }
    for cid, v in out.items():
        v["sweep"] = sw.get(cid, [])
        v["swings"] = sr.swings.get(cid, [])
    return out


def evidence(p: dict) -> dict:
    """P1-P6 at parameters ``p`` (:class:`kmm.suite.study.Evidence` per claim), each with
    its published point's :func:`replicates`."""
    sr = run_scenario(p)
    values = claim_values(sr)
    for c, reps in replicates(sr).items():
        values[c]["replicates"] = reps
    return evidence_from(values)


def frame(p: dict, scenario: str):
    """The notebook's tidy frame at parameters ``p``."""
    return run_scenario(p).tidy(scenario)


STUDY = Study("permvmalloc", ("P1", "P2", "P3", "P4", "P5", "P6"), DEFAULTS, evidence,
              frame=frame, assumed={**BG_RANGES, **ITLB_RANGES})
