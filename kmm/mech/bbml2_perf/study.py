"""bbml2_perf: the study: parameters, evidence per claim, frames.

Part of :mod:`kmm.mech.bbml2_perf`."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...config import check_float, check_int
from ...engine import attr_cont, attr_level, PageTable
from ...errors import ConfigError
from ...sampling import latin_hypercube
from ...suite.study import (cached, Evidence, one_at_a_time, replicate_plan, replicates_from,
    Study)
from .workload import (BlockIOShape, CAPTURES, load_capture, MemcachedShape, MODULE_AREA_BYTES, placed_capture,
    TraceDrivenShape, workload_trace)
from .model import (_kernel_table, CacheSpec, CHUNK_BYTES, closed_loop, CostSpec, GiB,
    KernelLayout, KiB, MemorySpec, module_alias_ranges, op_cycles, OpEvent, POLICIES, POLICY_LABELS,
    price_ops, Region, simulate_events, TlbSpec, trace_leaves, Workload)
from ..bbml2.model import ForcePte, LinearMapPolicy as Policy

# ---------------------------------------------------------------------------------------
# scenarios: the notebook's parameters, evaluated per policy
# ---------------------------------------------------------------------------------------
#: The notebook's parameters with their small defaults (notebooks/bbml2_perf.ipynb repeats
#: them; the published values live in params/bbml2_perf.yaml).
DEFAULTS: dict = {"seed": 1, "memcached_ops": 1000, "blockio_ops": 500, "warm_fraction": 0.2,
    "queue_requests": 20000, "ram_gib": 256, "boot_used_kib": 4167284, "granule": "4K",
    "l1_tlb_entries": 48, "l2_tlb_entries": 2048, "l2_tlb_ways": 8, "tlb_honours_cont": 1,
    "tlb_max_entry_shift": 30, "walk_cache_entries": 64, "l1i_bytes": 16384, "l1d_bytes": 65536,
    "l2_bytes": 2097152, "slc_bytes": 67108864, "memcached_busy_cores": 4, "blockio_busy_cores": 2,
    "cpu_ghz": 3.0, "cpi_base": 0.6, "l2_tlb_hit_cycles": 5.0, "l2_hit_cycles": 11.0,
    "llc_hit_ns": 35.0, "dram_idle_ns": 81.0, "background": 0.3, "ampereone_outstanding": 46,
    "ampereone_window": 160, "dependent_first": 0.5,
    "mc_connections": 50, "mc_value_bytes": 32, "mc_rx_ring_pages": 512,
    "mc_instructions_per_op": 20000, "mc_el1_fraction": 0.88, "mc_think_us": 50.0,
    "kernel_spread_gib": 4, "module_ro_pages": 5000, "module_alias_shared": 0,
    "dmcrypt_instructions_per_op": 25000, "dmcrypt_run_pages": 32,
    "seqread_instructions_per_op": 3000, "seqread_run_pages": 32, "read_bytes": 4096,
    "n_event_points": 2, "n_cost_points": 2, "sweep_memcached_ops": 600, "sweep_blockio_ops": 300,
    "think_curve_us": [20.0, 100.0, 200.0, 300.0, 400.0, 600.0], "granules": ["4K", "16K", "64K"],
    "force_pte": "none", "workload_source": "trace", "trace_windows": 2,
    "sweep_trace_windows": 1, "trace_data_fresh": 1.0, "prefetch_boundary": 1,
    "prefetch_ramp_lines": 2, "prefetch_streams": 8, "store_no_read": 1, "blockio_cpus": 2}

#: The ``workload_source`` parameter's values: each benchmark driven by its shipped kernel
#: capture (:func:`placed_capture`) or by the benchmark-shaped synthetic trace.
WORKLOAD_SOURCES = ("trace", "synthetic")

#: The ``force_pte`` parameter's values: the ``force_pte_mapping()`` feature the kernel runs with.
FORCE_PTE = {"none": ForcePte.NONE, "debug_pagealloc": ForcePte.DEBUG_PAGEALLOC,
             "kfence_late": ForcePte.KFENCE_LATE, "realm": ForcePte.REALM}

#: The plausible range of every ``assumed`` parameter, in the order sampled
#: (params/bbml2_perf.yaml declares the same ranges).
ASSUMED: dict = {"l1_tlb_entries": (32, 96), "l2_tlb_entries": (1024, 4096), "l2_tlb_ways": (4, 8),
    "tlb_honours_cont": (0, 1), "tlb_max_entry_shift": (21, 30), "walk_cache_entries": (32, 128),
    "blockio_busy_cores": (1, 4), "cpi_base": (0.35, 1.0), "l2_tlb_hit_cycles": (2.0, 10.0),
    "l2_hit_cycles": (11.0, 16.0), "llc_hit_ns": (25.0, 50.0), "dram_idle_ns": (81.0, 130.0),
    "background": (0.0, 0.8), "ampereone_outstanding": (22, 64),
    "ampereone_window": (128, 256), "dependent_first": (0.1, 0.9),
    "mc_connections": (50, 2000),
    "mc_rx_ring_pages": (128, 2048), "mc_instructions_per_op": (8000, 40000),
    "mc_el1_fraction": (0.6, 0.9), "mc_think_us": (10.0, 400.0), "kernel_spread_gib": (1, 64),
    "module_ro_pages": (1000, 20000), "module_alias_shared": (0, 1),
    "dmcrypt_instructions_per_op": (8000, 40000), "dmcrypt_run_pages": (1, 512),
    "seqread_instructions_per_op": (1500, 8000), "seqread_run_pages": (1, 512),
    "trace_data_fresh": (0.0, 1.0), "prefetch_boundary": (1, 3), "prefetch_ramp_lines": (1, 8),
    "prefetch_streams": (4, 16), "store_no_read": (0, 1), "blockio_cpus": (1, 3)}
#: The values an ``assumed`` parameter may take, where it takes only some of its range.
CHOICES: dict = {"l2_tlb_entries": (1024, 2048, 4096), "l2_tlb_ways": (4, 8),
                 "tlb_honours_cont": (0, 1), "tlb_max_entry_shift": (21, 30),
                 "walk_cache_entries": (32, 64, 128), "module_alias_shared": (0, 1),
                 "prefetch_boundary": (1, 2, 3), "prefetch_streams": (4, 8, 16),
                 "store_no_read": (0, 1), "blockio_cpus": (1, 2, 3)}

#: Parameters that change the simulated events (the rest only price them).
EVENT_KEYS = frozenset({
    "seed", "memcached_ops", "blockio_ops", "warm_fraction", "ram_gib", "granule", "boot_used_kib", "l1_tlb_entries",
    "l2_tlb_entries", "l2_tlb_ways", "tlb_honours_cont", "tlb_max_entry_shift",
    "walk_cache_entries", "l1i_bytes", "l1d_bytes", "l2_bytes", "slc_bytes",
    "memcached_busy_cores", "blockio_busy_cores", "mc_connections", "mc_value_bytes",
    "mc_rx_ring_pages", "kernel_spread_gib", "module_ro_pages", "module_alias_shared",
    "dmcrypt_run_pages", "seqread_run_pages", "read_bytes", "force_pte", "workload_source",
    "trace_windows", "trace_data_fresh", "prefetch_boundary", "prefetch_ramp_lines",
    "prefetch_streams", "store_no_read", "blockio_cpus"})
#: Event parameters that reach only their own workload's events: the others' simulations
#: do not read them (:func:`event_keys`).
_WORKLOAD_EVENT_KEYS = {
    Workload.MEMCACHED: frozenset({"memcached_ops", "memcached_busy_cores", "mc_connections",
                                   "mc_value_bytes", "mc_rx_ring_pages"}),
    Workload.DMCRYPT: frozenset({"blockio_ops", "blockio_busy_cores", "dmcrypt_run_pages",
                                 "blockio_cpus"}),
    Workload.SEQREAD: frozenset({"blockio_ops", "blockio_busy_cores", "seqread_run_pages",
                                 "read_bytes", "blockio_cpus"})}
#: Event parameters that only one ``workload_source`` reads: the capture's repetitions and
#: data-page rule, the synthetic traces' lengths, warm-up and shapes.
_SOURCE_EVENT_KEYS = {
    "trace": frozenset({"trace_windows", "trace_data_fresh"}),
    "synthetic": frozenset({"memcached_ops", "blockio_ops", "warm_fraction", "mc_connections",
                            "mc_value_bytes", "mc_rx_ring_pages", "read_bytes"})}


def event_keys(workload: Workload, source: str) -> frozenset:
    """The parameters of :data:`EVENT_KEYS` that the simulation of ``workload`` under
    ``workload_source`` ``source`` reads: those of the other workloads and of the other
    source left out (memcached's connections, for one, set its closed loop but not the
    captured events). :func:`workload_events` memoises on them, so a swing of one
    workload's parameter simulates that workload alone."""
    own = _WORKLOAD_EVENT_KEYS[workload]
    others = set().union(*_WORKLOAD_EVENT_KEYS.values()) - own
    own_source = _SOURCE_EVENT_KEYS.get(source, frozenset())
    other_source = set().union(*_SOURCE_EVENT_KEYS.values()) - own_source
    return frozenset(EVENT_KEYS - others - other_source)


def check_params(params: dict) -> dict:
    """Defaults completed with ``params``; unknown keys refused."""
    unknown = sorted(set(params) - set(DEFAULTS) - {"scenario"})
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r}", "bbml2_perf")
    p = {**DEFAULTS, **{k: v for k, v in params.items() if k != "scenario"}}
    check_float("warm_fraction", p["warm_fraction"], lo=0.0, hi=0.9)
    check_int("queue_requests", p["queue_requests"], lo=1000)
    check_choice_int("tlb_honours_cont", p["tlb_honours_cont"])
    check_choice_int("module_alias_shared", p["module_alias_shared"])
    if p["force_pte"] not in FORCE_PTE:
        raise ConfigError(f"must be one of {sorted(FORCE_PTE)}", "force_pte")
    if p["workload_source"] not in WORKLOAD_SOURCES:
        raise ConfigError(f"must be one of {list(WORKLOAD_SOURCES)}", "workload_source")
    check_int("trace_windows", p["trace_windows"], lo=1, hi=1000)
    check_int("sweep_trace_windows", p["sweep_trace_windows"], lo=1, hi=1000)
    check_float("trace_data_fresh", p["trace_data_fresh"], lo=0.0, hi=1.0)
    check_int("prefetch_boundary", p["prefetch_boundary"], lo=0, hi=3)
    check_choice_int("store_no_read", p["store_no_read"])
    check_int("blockio_cpus", p["blockio_cpus"], lo=1, hi=3)
    return p


def check_choice_int(name: str, v) -> int:
    if v not in (0, 1) or isinstance(v, float):
        raise ConfigError(f"must be 0 or 1, got {v!r}", name)
    return int(v)


def _layout(p) -> KernelLayout:
    return KernelLayout(ram_bytes=int(p["ram_gib"]) * GiB,
                        boot_used_bytes=int(p["boot_used_kib"]) * KiB, granule=p["granule"])


def _in_pages(chunks: int, layout: KernelLayout) -> int:
    """A count of 4 KiB units expressed in pages of the layout's granule (at least 1)."""
    return max(1, int(chunks) * CHUNK_BYTES // layout.page_bytes)


def memory_spec(p) -> MemorySpec:
    """The prefetcher and store rules of parameters ``p``."""
    return MemorySpec(prefetch=int(p["prefetch_boundary"]),
                      prefetch_streams=int(p["prefetch_streams"]),
                      prefetch_ramp_lines=int(p["prefetch_ramp_lines"]),
                      store_no_read=bool(p["store_no_read"]))


def _tlb_spec(p) -> TlbSpec:
    return TlbSpec(l1i_entries=p["l1_tlb_entries"], l1d_entries=p["l1_tlb_entries"],
                   l2_entries=p["l2_tlb_entries"], l2_ways=p["l2_tlb_ways"],
                   honour_cont=bool(p["tlb_honours_cont"]),
                   max_entry_shift=p["tlb_max_entry_shift"],
                   walk_cache_entries=p["walk_cache_entries"])


def _cache_spec(p, workload: Workload) -> CacheSpec:
    busy = p["memcached_busy_cores"] if workload == Workload.MEMCACHED else p["blockio_busy_cores"]
    share = int(p["slc_bytes"]) // check_int("busy_cores", busy, lo=1)
    share = 1 << (share.bit_length() - 1)   # the LLC model needs a power-of-two set count
    return CacheSpec(l1i_bytes=p["l1i_bytes"], l1d_bytes=p["l1d_bytes"], l2_bytes=p["l2_bytes"],
                     llc_share_bytes=share)


def cost_spec(p) -> CostSpec:
    """The pricing of parameters ``p`` (:func:`price_ops`: through :mod:`kmm.timing`, memory
    at its loaded latency, misses overlapping on an AmpereOne-class core)."""
    return CostSpec(cpu_ghz=p["cpu_ghz"], cpi_base=p["cpi_base"],
                    l2_tlb_hit_cycles=p["l2_tlb_hit_cycles"], l2_hit_cycles=p["l2_hit_cycles"],
                    llc_hit_ns=p["llc_hit_ns"], dram_ns=p["dram_idle_ns"],
                    background=p["background"], outstanding=p["ampereone_outstanding"],
                    window=p["ampereone_window"], dependent_first=p["dependent_first"])


def _shape(p, workload: Workload, layout: KernelLayout):
    """The workload shape of parameters ``p``; run lengths and ring sizes in the params are
    4 KiB units, converted here to pages of the layout's granule."""
    if workload == Workload.MEMCACHED:
        return MemcachedShape(connections=p["mc_connections"], value_bytes=p["mc_value_bytes"],
                              rx_ring_pages=p["mc_rx_ring_pages"],
                              kernel_spread_bytes=int(p["kernel_spread_gib"]) * GiB,
                              instructions_per_op=p["mc_instructions_per_op"],
                              el1_instruction_fraction=p["mc_el1_fraction"])
    if workload == Workload.DMCRYPT:
        return BlockIOShape(run_pages=_in_pages(p["dmcrypt_run_pages"], layout),
                            kernel_spread_bytes=int(p["kernel_spread_gib"]) * GiB,
                            instructions_per_op=p["dmcrypt_instructions_per_op"],
                            cpus=int(p["blockio_cpus"]))
    return BlockIOShape(run_pages=_in_pages(p["seqread_run_pages"], layout),
                        kernel_spread_bytes=int(p["kernel_spread_gib"]) * GiB,
                        instructions_per_op=p["seqread_instructions_per_op"],
                        read_bytes=p["read_bytes"], module_text_granules=6,
                        kernel_text_granules=24)


def _ro_ranges(p, layout: KernelLayout) -> np.ndarray:
    rng = np.random.default_rng([int(p["seed"]), 7])
    window = (layout.runtime_window(int(p["kernel_spread_gib"]) * GiB)
              if p["module_alias_shared"] else layout.boot_window())
    return module_alias_ranges(rng, _in_pages(p["module_ro_pages"], layout), window,
                               layout.page_bytes)


def warmup_ops(p: dict, workload: Workload) -> tuple[int, int]:
    """(warm-up, measured) operations of a simulation. ``memcached_ops`` / ``blockio_ops``
    are measured operations; the warm-up before them is ``warm_fraction`` of that and at
    least long enough to reach the steady state of the recurring structures: one pass of
    memcached's receive ring (every buffer page and its PTE line touched), or, for the block
    workloads, twice as many operations as 1 GiB blocks of RAM (new pages land at random over
    RAM, so every block's translation has been loaded once)."""
    if Workload(workload) == Workload.MEMCACHED:
        measured = check_int("memcached_ops", p["memcached_ops"], lo=10)
        floor = 2 * int(p["mc_rx_ring_pages"])   # two 2 KiB buffers per 4 KiB
    else:
        measured = check_int("blockio_ops", p["blockio_ops"], lo=10)
        floor = 2 * int(p["ram_gib"])
    return max(int(measured * p["warm_fraction"]), floor), measured


class PolicyEvents(NamedTuple):
    """Per-operation events of one workload under each policy (measured operations only,
    warm-up dropped), and the trace's operation count including the warm-up;
    ``captured``: the instruction counts are the capture's own (trace-driven)."""

    workload: Workload
    events: dict
    n_ops: int
    captured: bool = False


def trace_shape(p: dict, workload: Workload, windows: int) -> TraceDrivenShape:
    """How the capture of ``workload`` is placed for parameters ``p``: ``windows``
    repetitions, data pages fresh at ``trace_data_fresh``, in runs of the workload's
    ``*_run_pages`` (memcached's page-pool and fragment pages: 1), object pages in the
    kernel spread."""
    run = {Workload.MEMCACHED: 1, Workload.DMCRYPT: p["dmcrypt_run_pages"],
           Workload.SEQREAD: p["seqread_run_pages"]}[Workload(workload)]
    return TraceDrivenShape(windows=windows, fresh_data=float(p["trace_data_fresh"]),
                            run_pages=int(run),
                            kernel_spread_bytes=int(p["kernel_spread_gib"]) * GiB,
                            one_cpu=Workload(workload) == Workload.MEMCACHED
                            or int(p["blockio_cpus"]) == 1)


_EVENT_CACHE: dict = {}

#: Event parameters that configure only the simulated core (TLBs, walk cache, caches, the
#: prefetcher and stores): the trace, the page tables and each touch's leaf do not depend on
#: them, so :func:`workload_events` reuses those (:func:`placed_trace`).
CORE_KEYS = frozenset({"l1_tlb_entries", "l2_tlb_entries", "l2_tlb_ways", "tlb_honours_cont",
                       "tlb_max_entry_shift", "walk_cache_entries", "l1i_bytes", "l1d_bytes",
                       "l2_bytes", "slc_bytes", "memcached_busy_cores", "blockio_busy_cores",
                       "prefetch_boundary", "prefetch_ramp_lines", "prefetch_streams",
                       "store_no_read"})
_PLACED_CACHE: dict = {}
#: Placed traces kept (each holds a trace and its leaves under every policy).
_PLACED_KEEP = 12


class PlacedTrace(NamedTuple):
    """A workload's trace in the modelled machine: the trace, its warm-up and total
    operations, and per :class:`Policy` each touch's leaf (:func:`trace_leaves`)."""

    trace: object
    warm: int
    n_ops: int
    leaves: dict


def placed_trace(p: dict, workload: Workload) -> PlacedTrace:
    """The trace ``workload`` runs under parameters ``p`` and its leaves under every policy,
    memoised on the event parameters it reads but those of the core (:data:`CORE_KEYS`);
    the most recently used :data:`_PLACED_KEEP` are kept."""
    key = (workload, tuple(sorted((k, p[k]) for k in event_keys(workload, p["workload_source"])
                                  - CORE_KEYS)))
    if key in _PLACED_CACHE:
        _PLACED_CACHE[key] = _PLACED_CACHE.pop(key)   # most recently used last
        return _PLACED_CACHE[key]
    layout = _layout(p)
    if p["workload_source"] == "trace":
        # the first window is the warm-up: every recurring page and line has been loaded once
        trace, spans = placed_capture(workload, trace_shape(p, workload,
                                      1 + int(p["trace_windows"])), layout, int(p["seed"]))
        warm = CAPTURES[workload][1]
        n = trace.n_ops
    else:
        warm, measured = warmup_ops(p, workload)
        n = warm + measured
        trace = workload_trace(workload, _shape(p, workload, layout), layout, n,
                               int(p["seed"]))
        spans = {"image": None, "modules": MODULE_AREA_BYTES, "vmalloc": 4 * layout.stack_bytes}
    ro = _ro_ranges(p, layout)
    leaves = {pol: trace_leaves(trace, _kernel_table(layout, pol, ro, spans["vmalloc"],
                                                     spans["modules"], FORCE_PTE[p["force_pte"]],
                                                     image_bytes=spans["image"]))
              for pol in POLICIES}
    while len(_PLACED_CACHE) >= _PLACED_KEEP:
        _PLACED_CACHE.pop(next(iter(_PLACED_CACHE)))
    _PLACED_CACHE[key] = PlacedTrace(trace, warm, n, leaves)
    return _PLACED_CACHE[key]


def workload_events(p: dict, workload: Workload) -> PolicyEvents:
    """Simulate ``workload`` under every :class:`Policy` for parameters ``p`` (completed by
    :func:`check_params`). Results are memoised on the event-changing parameters the
    workload reads (:func:`event_keys`), so cost-only sweeps re-price the same events; the
    trace and its leaves on those but the core's (:func:`placed_trace`)."""
    workload = Workload(workload)
    key = (workload, tuple(sorted((k, p[k]) for k in event_keys(workload,
                                                                 p["workload_source"]))))
    if key in _EVENT_CACHE:
        return _EVENT_CACHE[key]
    trace, warm, n, leaves_of = placed_trace(p, workload)
    layout = _layout(p)
    tspec, cspec, mem = _tlb_spec(p), _cache_spec(p, workload), memory_spec(p)
    out = {}
    done = []   # (leaves, events): the events depend on the policy only through the leaves
    for pol in POLICIES:
        leaves = leaves_of[pol]
        same = next((ev for lv, ev in done if all(np.array_equal(a, b)
                                                   for a, b in zip(lv, leaves))), None)
        ev = same if same is not None else simulate_events(trace, leaves, layout, tspec,
                                                           cspec, mem)
        done.append((leaves, ev))
        out[pol] = ev[warm:]
    res = PolicyEvents(workload, out, n, p["workload_source"] == "trace")
    if len(_EVENT_CACHE) > 256:
        _EVENT_CACHE.clear()
    _EVENT_CACHE[key] = res
    return res


def priced_events(pe: PolicyEvents, p: dict) -> PolicyEvents:
    """``pe`` with the instruction counts of parameters ``p`` (instructions per operation are
    a cost-side parameter: they do not change the simulated translation and cache events).
    A trace-driven ``pe`` keeps the capture's own instruction counts."""
    if pe.captured:
        return pe
    if pe.workload == Workload.MEMCACHED:
        ins, frac = p["mc_instructions_per_op"], p["mc_el1_fraction"]
    elif pe.workload == Workload.DMCRYPT:
        ins, frac = p["dmcrypt_instructions_per_op"], BlockIOShape().el1_instruction_fraction
    else:
        ins, frac = p["seqread_instructions_per_op"], BlockIOShape().el1_instruction_fraction
    check_int("instructions_per_op", ins, lo=1)
    check_float("el1_fraction", frac, lo=0.0, hi=1.0)
    out = {}
    for pol, ev in pe.events.items():
        ev = ev.copy()
        ev[:, OpEvent.INSTRUCTIONS] = int(ins)
        ev[:, OpEvent.EL1_INSTRUCTIONS] = int(round(ins * frac))
        out[pol] = ev
    return PolicyEvents(pe.workload, out, pe.n_ops, pe.captured)


def policy_metrics(pe: PolicyEvents, cost: CostSpec) -> dict:
    """Per policy: kernel TLB MPKI (walks of EL1 touches per 1000 kernel instructions),
    kernel L1 TLB refill MPKI, all-mode walk MPKI, cycles and translation cycles per
    operation, operations per second of one core, and the resolution of the MPKI (one
    miss over the measured kernel instructions)."""
    out = {}
    for pol, ev in pe.events.items():
        e = ev.sum(axis=0).astype(np.float64)
        priced = price_ops(ev, cost)
        cyc = priced.cycles
        kins = e[OpEvent.EL1_INSTRUCTIONS] / 1000.0
        out[pol] = {
            "kernel_tlb_mpki": e[OpEvent.EL1_WALKS] / kins,
            "kernel_l1_tlb_mpki": e[OpEvent.EL1_L1TLB_MISSES] / kins,
            "walk_mpki": 1000.0 * e[OpEvent.WALKS] / e[OpEvent.INSTRUCTIONS],
            "linear_walks_per_op": e[OpEvent.LINEAR_WALKS] / ev.shape[0],
            "cycles_per_op": float(cyc.mean()),
            "translation_cycles_per_op": float(priced.translation_cycles.mean()),
            "ops_per_s": cost.cpu_ghz * 1e9 / float(cyc.mean()),
            "mpki_resolution": 1.0 / kins,
            "kernel_walks": float(e[OpEvent.EL1_WALKS]),
            "memory_latency_ns": priced.memory_ns,
            "miss_overlap": priced.mlp,
        }
    return out


def memcached_queue(pe: PolicyEvents, p: dict, cost: CostSpec) -> dict:
    """Closed-loop operating point per policy: ``mc_connections`` clients of one worker,
    think time ``mc_think_us``, service times from the simulated requests. Returns
    throughput (requests/s), utilisation and mean and P99 response time (us)."""
    out = {}
    for pol, ev in pe.events.items():
        service_us = op_cycles(ev, cost) / (cost.cpu_ghz * 1e3)
        q = closed_loop(service_us, int(p["mc_connections"]), float(p["mc_think_us"]),
                        int(p["queue_requests"]), int(p["seed"]))
        out[pol] = {"throughput": q.throughput * 1e6, "utilisation": q.utilisation,
                    "mean_us": q.mean, "p99_us": q.p99}
    return out


def _rel(new: float, base: float) -> float:
    return float(new / base - 1.0)


def claim_values(p: dict, events: dict | None = None) -> dict:
    """Values of B3-B8 for parameters ``p``: relative changes of rodata=full+BBML2 against
    rodata=full (B3, B4, B5, B7, B8) and against rodata=on (B6: ``ops_rel``, ``mpki_rel``),
    from ``events`` (:class:`PolicyEvents` per :class:`Workload`; default
    :func:`workload_events` of ``p``).

    ``mpki_rel`` is measured against rodata=on's MPKI floored at the MPKI resolution (one
    miss over the measured kernel instructions), so a rodata=on count of zero gives a finite
    value; B5 floors both MPKIs the same way (a short trace-driven window can leave
    rodata=full with no kernel walk). B6 also carries each policy's kernel walks in the
    window (``on_walks``, ``bbml2_walks``: :func:`b6_resolved`).
    """
    p = check_params(p)
    events = {w: workload_events(p, w) for w in Workload} if events is None else events
    cost = cost_spec(p)
    mc = priced_events(events[Workload.MEMCACHED], p)
    m = policy_metrics(mc, cost)
    q = memcached_queue(mc, p, cost)
    F, O, B = Policy.FULL_PTES, Policy.RODATA_ON, Policy.FULL_BBML2
    dm = policy_metrics(priced_events(events[Workload.DMCRYPT], p), cost)
    sr = policy_metrics(priced_events(events[Workload.SEQREAD], p), cost)
    on_mpki = max(m[O]["kernel_tlb_mpki"], m[O]["mpki_resolution"])
    return {
        "B3": _rel(q[B]["throughput"], q[F]["throughput"]),
        "B4": _rel(q[B]["p99_us"], q[F]["p99_us"]),
        "B5": _rel(max(m[B]["kernel_tlb_mpki"], m[F]["mpki_resolution"]),
                   max(m[F]["kernel_tlb_mpki"], m[F]["mpki_resolution"])),
        "B6": {"ops_rel": _rel(q[B]["throughput"], q[O]["throughput"]),
               "mpki_rel": _rel(max(m[B]["kernel_tlb_mpki"], m[O]["mpki_resolution"]), on_mpki),
               "on_walks": m[O]["kernel_walks"], "bbml2_walks": m[B]["kernel_walks"]},
        "B7": _rel(dm[B]["ops_per_s"], dm[F]["ops_per_s"]),
        "B8": _rel(sr[B]["ops_per_s"], sr[F]["ops_per_s"]),
    }


# ---------------------------------------------------------------------------------------
# joint sweeps of the assumed parameters
# ---------------------------------------------------------------------------------------
def params_path():
    """``params/bbml2_perf.yaml`` of a source checkout (kmm reads :data:`ASSUMED` instead)."""
    from pathlib import Path
    return Path(__file__).resolve().parents[3] / "params" / "bbml2_perf.yaml"


def assumed_specs() -> dict:
    """``name -> (lo, hi, choices)`` of every ``assumed`` parameter (:data:`ASSUMED`)."""
    return {k: (lo, hi, CHOICES.get(k)) for k, (lo, hi) in ASSUMED.items()}


@cached()
def joint_sweep(base: dict, specs: dict, n_event: int, n_cost: int, seed: int,
                event_ops: tuple[int, int] | None = None):
    """Claim values over a joint sweep of the assumed parameters.

    Parameters that change the simulated events (:data:`EVENT_KEYS`) are sampled at
    ``n_event`` points, the pricing parameters at ``n_cost`` points, and every pair is
    evaluated (``n_event * n_cost`` joint points, each simulation reused ``n_cost``
    times). ``event_ops`` = (memcached, block I/O) operations per synthetic simulation and
    capture windows per trace-driven one in the sweep.

    Returns a polars frame: one row per point, the sampled parameters and one column per
    claim value (``B3``... ``B6_ops_rel``, ``B6_mpki_rel``).
    """
    import polars as pl
    base = check_params(base)
    ev_specs = {k: v for k, v in specs.items() if k in EVENT_KEYS}
    cost_specs = {k: v for k, v in specs.items() if k not in EVENT_KEYS}
    ev_pts = latin_hypercube(ev_specs, n_event, seed, base) if ev_specs else [{}]
    cost_pts = latin_hypercube(cost_specs, n_cost, seed + 1, base) if cost_specs else [{}]
    rows = []
    for i, e in enumerate(ev_pts):
        for j, c in enumerate(cost_pts):
            pt = {**e, **c}
            rows.append({"point": i * len(cost_pts) + j, "event_point": i, **pt,
                         **_claim_row(claim_values({**base, **_sizes(event_ops), **pt}))})
    return pl.DataFrame(rows)


def _sizes(event_ops: tuple[int, int, int] | None) -> dict:
    """The parameters of a sweep point's simulation lengths (:func:`joint_sweep`)."""
    return {} if event_ops is None else {"memcached_ops": event_ops[0],
                                         "blockio_ops": event_ops[1],
                                         "trace_windows": event_ops[2]}


def _claim_row(values: dict) -> dict:
    """:func:`claim_values` as one row: B6's evidence as ``B6_<key>`` columns."""
    row = {}
    for cid, val in values.items():
        if isinstance(val, dict):
            row.update({f"{cid}_{k}": x for k, x in val.items()})
        else:
            row[cid] = val
    return row


@cached()
def swing_sweep(base: dict, specs: dict, event_ops: tuple[int, int, int] | None = None):
    """Claim values at the one-at-a-time swings of the assumed parameters
    (:func:`kmm.suite.study.one_at_a_time` around ``base``), each simulated and priced as
    :func:`joint_sweep`'s points (``event_ops`` the same lengths): the points
    :func:`kmm.suite.registry.decided_by` reads, which a Latin hypercube lacks. A polars
    frame in :func:`joint_sweep`'s columns, without ``point`` and ``event_point``."""
    import polars as pl
    base = check_params(base)
    return pl.DataFrame([{**pt, **_claim_row(claim_values({**base, **_sizes(event_ops), **pt}))}
                         for pt in one_at_a_time(specs, base)])


def sweep_records(frame, claim: str, params: list[str] | None = None) -> list[dict]:
    """``claims.record(sweep=...)`` entries of one claim from :func:`joint_sweep`'s frame
    (B6 gives its evidence mapping per point)."""
    skip = {"point", "event_point"}
    names = params or [c for c in frame.columns if c not in skip and not c.startswith("B")]
    out = []
    for r in frame.iter_rows(named=True):
        if claim == "B6":
            value = {"ops_rel": r["B6_ops_rel"], "mpki_rel": r["B6_mpki_rel"]}
            if min(r["B6_on_walks"], r["B6_bbml2_walks"]) < B6_MIN_WALKS:
                value = None
        else:
            value = r[claim]
        out.append({"params": {k: r[k] for k in names}, "value": value})
    return out


# ---------------------------------------------------------------------------------------
# notebook helpers: tidy frames, curves, sensitivity, explanations
# ---------------------------------------------------------------------------------------
def params_from(namespace: dict) -> dict:
    """The notebook's parameters from ``namespace`` (its globals): :meth:`STUDY.params`."""
    return STUDY.params(namespace)


def evaluate(p: dict) -> dict:
    """Everything the notebook shows for parameters ``p``: per workload the per-policy
    metrics, and memcached's closed-loop results per policy."""
    p = check_params(p)
    cost = cost_spec(p)
    out = {}
    for w in Workload:
        out[w] = policy_metrics(priced_events(workload_events(p, w), p), cost)
    out["queue"] = memcached_queue(priced_events(workload_events(p, Workload.MEMCACHED), p), p,
                                   cost)
    return out


_UNITS = {"kernel_tlb_mpki": "MPKI", "kernel_l1_tlb_mpki": "MPKI", "walk_mpki": "MPKI",
          "linear_walks_per_op": "count", "cycles_per_op": "cycles",
          "translation_cycles_per_op": "cycles", "ops_per_s": "ops/s",
          "mpki_resolution": "MPKI", "kernel_walks": "count", "memory_latency_ns": "ns",
          "miss_overlap": "count", "throughput": "requests/s", "utilisation": "fraction",
          "mean_us": "us", "p99_us": "us"}


def results_frame(p: dict, scenario: str):
    """Tidy frame (:mod:`kmm.results`) of :func:`evaluate`: one row per workload, policy and
    metric."""
    from ...results import frame, rows_for
    p = check_params(p)
    res = evaluate(p)
    rows = []
    for w in Workload:
        for pol, m in res[w].items():
            rows += rows_for(scenario, {"workload": w.name.lower(), "policy": POLICY_LABELS[pol]},
                             int(p["seed"]), {k: (v, _UNITS[k]) for k, v in m.items()})
    for pol, m in res["queue"].items():
        rows += rows_for(scenario, {"workload": "memcached", "policy": POLICY_LABELS[pol]},
                         int(p["seed"]), {k: (v, _UNITS[k]) for k, v in m.items()})
    return frame(rows)


def table_summary(p: dict):
    """Linear-map page-table bytes and leaf counts per policy (the tables the model walks)."""
    import polars as pl
    p = check_params(p)
    layout = _layout(p)
    ro = _ro_ranges(p, layout)
    rows = []
    for pol in POLICIES:
        pt = _kernel_table(layout, pol, ro, 4 * layout.stack_bytes, MODULE_AREA_BYTES,
                           FORCE_PTE[p["force_pte"]])
        lin_hi = layout.ram_base_bytes + layout.ram_bytes - layout.memstart_bytes
        by_level = {}
        for va, size, _pa, level, cont in _extents(pt):
            if va >= lin_hi:
                continue
            name = {1: "PUD block", 2: "PMD block", 3: "PTE"}[level] + (" cont" if cont else "")
            by_level[name] = by_level.get(name, 0) + size
        rows.append({"policy": POLICY_LABELS[pol], "table_bytes": pt.table_bytes(),
                     "extents": pt.n_extents, **{f"GiB {k}": v / GiB for k, v in
                                                  sorted(by_level.items())}})
    return pl.DataFrame(rows)


def _extents(pt: PageTable):
    for va, size, pa, attr in pt.extents_array():
        yield int(va), int(size), int(pa), int(attr_level(attr)), bool(attr_cont(attr))


def utilisation_curve(p: dict, think_us: list[float]):
    """memcached throughput and P99 change of rodata=full+BBML2 against rodata=full as the
    closed loop's think time (hence utilisation) varies."""
    import polars as pl
    p = check_params(p)
    cost = cost_spec(p)
    mc = priced_events(workload_events(p, Workload.MEMCACHED), p)
    rows = []
    for z in think_us:
        q = memcached_queue(mc, {**p, "mc_think_us": float(z)}, cost)
        F, B = q[Policy.FULL_PTES], q[Policy.FULL_BBML2]
        rows.append({"think_us": float(z), "utilisation": F["utilisation"],
                     "throughput_change": _rel(B["throughput"], F["throughput"]),
                     "p99_change": _rel(B["p99_us"], F["p99_us"])})
    return pl.DataFrame(rows)


CLAIM_COLUMNS = ("B3", "B4", "B5", "B6_ops_rel", "B6_mpki_rel", "B7", "B8")


_WORKLOAD_PREFIX = {"mc_": ("B3", "B4", "B5", "B6"), "module_": ("B3", "B4", "B5", "B6"),
                    "memcached_": ("B3", "B4", "B5", "B6"), "dmcrypt_": ("B7",),
                    "seqread_": ("B8",), "read_bytes": ("B8",), "blockio_": ("B7", "B8")}


def relevant(claim: str, parameter: str) -> bool:
    """Whether ``parameter`` can change ``claim``: workload-specific parameters only reach
    their own workload's claims; machine and cost parameters reach every claim."""
    cid = claim.split("_")[0]
    for prefix, claims_of in _WORKLOAD_PREFIX.items():
        if parameter.startswith(prefix):
            return cid in claims_of
    return True


def sensitivity(sweep):
    """Spearman rank correlation of every claim value with every swept parameter that can
    change it (:func:`relevant`), from :func:`joint_sweep`'s frame (long format: ``claim,
    parameter, rho``)."""
    import polars as pl
    skip = {"point", "event_point", *CLAIM_COLUMNS}
    params = [c for c in sweep.columns if c not in skip]
    rows = []
    for cid in CLAIM_COLUMNS:
        y = sweep[cid].rank().to_numpy()
        for name in params:
            if not relevant(cid, name):
                continue
            x = sweep[name].cast(pl.Float64).rank().to_numpy()
            if np.std(x) == 0 or np.std(y) == 0:
                rho = 0.0
            else:
                rho = float(np.corrcoef(x, y)[0, 1])
            rows.append({"claim": cid, "parameter": name, "rho": rho})
    return pl.DataFrame(rows)


def dominant_parameter(sens, claim: str) -> str:
    """The swept parameter with the largest absolute rank correlation with ``claim``."""
    import polars as pl
    s = sens.filter(pl.col("claim") == claim).with_columns(pl.col("rho").abs().alias("a"))
    return str(s.sort("a", descending=True)["parameter"][0])


_PREFETCH_TEXT = {0: "not modelled (the plain charging)", 1: "stopping at every 4 KiB page",
                  2: "stopping at the translation's size", 3: "never stopping"}


def explanations(p: dict, res: dict, values: dict, sens=None) -> dict:
    """One sentence per claim saying why the model gives its value (numbers from the model;
    the sweep's most influential parameter where a sweep is given)."""
    F, O, B = Policy.FULL_PTES, Policy.RODATA_ON, Policy.FULL_BBML2
    mc, dm, sr, q = res[Workload.MEMCACHED], res[Workload.DMCRYPT], res[Workload.SEQREAD], res["queue"]

    def dom(c):
        return f"; across the joint sweep it moves most with {dominant_parameter(sens, c)}" \
            if sens is not None else ""

    def share(m):
        return m["translation_cycles_per_op"] / m["cycles_per_op"]

    src = ("driven by the captured kernel trace" if p["workload_source"] == "trace"
           else "synthetic trace")
    mech = (f"the stream prefetcher {_PREFETCH_TEXT[int(p['prefetch_boundary'])]}, "
            f"whole-line stores {'without' if p['store_no_read'] else 'with'} a read and "
            f"{int(p['blockio_cpus'])} CPU(s) per block")

    return {
        "B3": (f"Under rodata=full translation takes {share(mc[F]):.1%} of a request's "
               f"{mc[F]['cycles_per_op']:.0f} cycles ({mc[F]['linear_walks_per_op']:.2f} linear-map "
               f"walks per request, mostly receive-buffer pages), block mappings save "
               f"{mc[F]['cycles_per_op'] - mc[B]['cycles_per_op']:.0f} cycles per request and the "
               f"closed loop at utilisation {q[F]['utilisation']:.2f} turns that into "
               f"{values['B3']:+.2%} ops/s{dom('B3')}."),
        "B4": (f"P99 follows the service-time change through the closed loop at utilisation "
               f"{q[F]['utilisation']:.2f} ({q[F]['p99_us']:.1f} us -> {q[B]['p99_us']:.1f} us, "
               f"{values['B4']:+.2%}), because the modelled service-time saving is "
               f"{mc[F]['cycles_per_op'] - mc[B]['cycles_per_op']:.0f} of "
               f"{mc[F]['cycles_per_op']:.0f} cycles per request{dom('B4')}."),
        "B5": (f"Kernel walks per kilo-instruction fall from {mc[F]['kernel_tlb_mpki']:.4f} to "
               f"{mc[B]['kernel_tlb_mpki']:.4f} ({values['B5']:+.1%}) because in the modelled "
               f"request path almost every kernel walk is a linear-map page (receive buffers, "
               f"slab objects) that one block entry covers, while the kernel's misses outside "
               f"the linear map (stack, module text, vmemmap) are rare{dom('B5')}."),
        "B6": (f"rodata=full+BBML2 differs from rodata=on only around the read-only module "
               f"aliases it split: ops/s {values['B6']['ops_rel']:+.3%} and kernel walk MPKI "
               f"{mc[B]['kernel_tlb_mpki']:.5f} vs {mc[O]['kernel_tlb_mpki']:.5f} "
               f"(relative {values['B6']['mpki_rel']:+.1%} against the larger of rodata=on's "
               f"MPKI and one miss per measured window){dom('B6_mpki_rel')}."),
        "B7": (f"A 4 KiB dm-crypt block ({src}) costs {dm[F]['cycles_per_op']:.0f} cycles "
               f"under rodata=full, of which translation is "
               f"{dm[F]['translation_cycles_per_op']:.0f} ({share(dm[F]):.1%}; "
               f"{dm[F]['linear_walks_per_op']:.2f} linear-map walks per block), with {mech}; "
               f"blocks give {values['B7']:+.2%} IOPS{dom('B7')}."),
        "B8": (f"A cached 4 KiB read ({src}) costs {sr[F]['cycles_per_op']:.0f} cycles, its "
               f"{sr[F]['linear_walks_per_op']:.2f} linear-map walks "
               f"{sr[F]['translation_cycles_per_op']:.0f} cycles ({share(sr[F]):.1%}), with "
               f"{mech}; blocks give {values['B8']:+.2%} bandwidth{dom('B8')}."),
    }


def trace_summary(p: dict):
    """Per workload and region: touches and lines per operation, and the share made at EL1
    (what one operation of each benchmark-shaped trace does)."""
    import polars as pl
    p = check_params(p)
    layout = _layout(p)
    rows = []
    for w in Workload:
        n = 200
        tr = workload_trace(w, _shape(p, w, layout), layout, n, int(p["seed"]))
        for r in Region:
            m = tr.region == r
            if not m.any():
                continue
            rows.append({"workload": w.name.lower(), "region": r.name.lower(),
                         "touches_per_op": float(m.sum()) / n,
                         "lines_per_op": float(tr.lines[m].sum()) / n,
                         "el1_share": float(tr.el1[m].mean())})
    return pl.DataFrame(rows)


def run_point(**params):
    """Library runner of the params/ grids: the tidy frame of :func:`results_frame` plus one
    row per claim value (``workload`` = ``claims``, ``policy`` = the comparison)."""
    from ...results import frame, rows_for
    scenario = str(params.pop("scenario", "grid"))
    p = check_params({k: v for k, v in params.items() if k in DEFAULTS})
    df = results_frame(p, scenario)
    vals = claim_values(p)
    flat = {}
    for cid, v in vals.items():
        if isinstance(v, dict):
            flat.update({f"{cid}_{k}": (x, "fraction") for k, x in v.items()})
        else:
            flat[cid] = (v, "fraction")
    extra = frame(rows_for(scenario, {"workload": "claims", "policy": "rodata=full+BBML2"},
                           int(p["seed"]), flat))
    import polars as pl
    return pl.concat([df, extra], how="vertical_relaxed")


def granule_frame(p: dict, granules: list[str], ops: tuple[int, int, int] | None = None):
    """Claim values and kernel TLB MPKI per policy for each granule (the thread measured
    4K; 16K and 64K pages map more per PTE, so blocks save less). ``ops`` = (memcached,
    block I/O) measured operations per synthetic simulation and capture windows per
    trace-driven one, as :func:`joint_sweep`'s ``event_ops``."""
    import polars as pl
    rows = []
    for gr in granules:
        q = check_params({**p, "granule": gr, **_sizes(ops)})
        vals = claim_values(q)
        res = evaluate(q)
        for cid, v in vals.items():
            if isinstance(v, dict):
                rows += [{"granule": gr, "quantity": f"{cid}_{k}", "value": x} for k, x in v.items()]
            else:
                rows.append({"granule": gr, "quantity": cid, "value": v})
        for w in Workload:
            for pol, m in res[w].items():
                rows.append({"granule": gr, "quantity": f"{w.name.lower()} kernel TLB MPKI, "
                             f"{POLICY_LABELS[pol]}", "value": m["kernel_tlb_mpki"]})
    return pl.DataFrame(rows)


CHARTS = {"B3": "bbml2_perf_throughput", "B4": "bbml2_perf_latency_vs_utilisation",
          "B5": "bbml2_perf_kernel_mpki", "B6": "bbml2_perf_throughput",
          "B7": "bbml2_perf_cycles", "B8": "bbml2_perf_cycles"}


#: The claims each workload's events give.
WORKLOAD_CLAIMS = {Workload.MEMCACHED: ("B3", "B4", "B5", "B6"), Workload.DMCRYPT: ("B7",),
                   Workload.SEQREAD: ("B8",)}


def first_half(pe: PolicyEvents) -> PolicyEvents:
    """``pe`` cut at the midpoint of its measured operations: what the same run had
    measured halfway (the events are per operation, in the order simulated)."""
    half = {pol: ev[: ev.shape[0] // 2] for pol, ev in pe.events.items()}
    cut = next(iter(pe.events.values())).shape[0] - next(iter(half.values())).shape[0]
    return PolicyEvents(pe.workload, half, pe.n_ops - cut, pe.captured)


def b6_value(b6: dict) -> dict | None:
    """B6's evidence, or None where too few kernel walks leave it unresolved
    (:func:`b6_resolved`)."""
    return b6 if b6_resolved(b6) else None


@cached()
def replicates(p: dict) -> dict[str, list[dict]]:
    """B3-B8 again (:func:`kmm.suite.registry.convergence`) at the runs of
    :func:`kmm.suite.study.replicate_plan`: every workload simulated again at seeds
    ``seed + 1`` and ``seed + 2`` (the placement of the captured pages, the read-only module
    aliases and the closed loop's draws), and the published run cut at the midpoint of its
    measured operations (:func:`first_half`) with a closed loop of half the
    ``queue_requests``. A claim's length is the measured operations of its workload
    (:data:`WORKLOAD_CLAIMS`: memcached requests, dm-crypt blocks, 4 KiB reads); B6 is None
    where unresolved, as its published value. No claim is deterministic: each is a ratio of
    event counts drawn from a seeded placement over a finite stream."""
    p = check_params(p)
    full = {w: workload_events(p, w) for w in Workload}
    measured = {w: next(iter(pe.events.values())).shape[0] for w, pe in full.items()}
    plans = {w: replicate_plan(p["seed"], n) for w, n in measured.items()}
    runs = []
    for i, (seed, length) in enumerate(plans[Workload.MEMCACHED]):
        if length == measured[Workload.MEMCACHED]:
            values = claim_values({**p, "seed": seed})
        else:
            values = claim_values({**p, "queue_requests": p["queue_requests"] // 2},
                                  {w: first_half(pe) for w, pe in full.items()})
        values["B6"] = b6_value(values["B6"])
        for w, claims in WORKLOAD_CLAIMS.items():
            runs.append((*plans[w][i], {c: values[c] for c in claims}))
    return replicates_from(runs)


def evidence(p: dict) -> dict:
    """B3-B8 at parameters ``p``, with their joint sweep of the ``assumed`` parameters, its
    one-at-a-time swings (:func:`swing_sweep`) and their :func:`replicates`
    (:class:`kmm.suite.study.Evidence` per claim)."""
    specs = assumed_specs()
    sizes = (p["sweep_memcached_ops"], p["sweep_blockio_ops"], p["sweep_trace_windows"])
    sweep = joint_sweep(p, specs, p["n_event_points"], p["n_cost_points"], p["seed"], sizes)
    swings = swing_sweep(p, specs, sizes)
    reps = replicates(p)
    values = claim_values(p)
    text = explanations(p, evaluate(p), values, sensitivity(sweep))
    if not b6_resolved(values["B6"]):
        b6 = values["B6"]
        values["B6"] = None
        text["B6"] = (f"Not evaluated: in memcached's measured window rodata=on makes "
                      f"{b6['on_walks']:.0f} and rodata=full+BBML2 {b6['bbml2_walks']:.0f} "
                      f"kernel walks, fewer than the {B6_MIN_WALKS} each policy needs before "
                      f"a relative MPKI is meaningful (ops/s {b6['ops_rel']:+.3%}).")
    return {c: Evidence(values[c], "" if c == "B6" else "fraction", text[c], CHARTS[c],
                        sweep_records(sweep, c, sorted(specs)),
                        swings=sweep_records(swings, c, sorted(specs)),
                        basis=claim_basis(p, c), replicates=reps[c])
            for c in CHARTS}


#: Kernel walks each policy must make in B6's measured window before its MPKI ratio is
#: evaluated (a ratio of a handful of misses is noise).
B6_MIN_WALKS = 100


def b6_resolved(b6: dict) -> bool:
    """Whether both rodata=on and rodata=full+BBML2 made at least :data:`B6_MIN_WALKS`
    kernel walks in the measured window."""
    return min(b6["on_walks"], b6["bbml2_walks"]) >= B6_MIN_WALKS



def memory_mechanisms_on(p: dict) -> bool:
    """Whether any cost beyond translation depends on the linear map's mapping or on the
    CPUs sharing a block: a prefetcher bounded by the translation or the page, stores that
    skip the read, or several CPUs per block."""
    return (int(p["prefetch_boundary"]) != 0 or bool(p["store_no_read"])
            or int(p["blockio_cpus"]) > 1)


def claim_basis(p: dict, claim: str) -> dict | None:
    """The basis B7 and B8 declare: ``not-modelled`` when only translation depends on the
    policy (the gain could not exceed translation's share of an operation), else the
    registry's ``measured``."""
    if claim in ("B7", "B8") and not memory_mechanisms_on(p):
        return {"basis": "not-modelled",
                "rests_on": "only translation depends on the linear map's mapping with the "
                            "prefetcher, whole-line stores and several CPUs per block off, so "
                            "the gain is capped at translation's share of an operation"}
    return None


#: The mechanism settings :func:`mechanism_contributions` compares: none, each alone over
#: its range, and all together.
MECHANISM_SETTINGS = {
    "none": {"prefetch_boundary": 0, "store_no_read": 0, "blockio_cpus": 1},
    "prefetch 4K": {"prefetch_boundary": 1, "store_no_read": 0, "blockio_cpus": 1},
    "prefetch translation": {"prefetch_boundary": 2, "store_no_read": 0, "blockio_cpus": 1},
    "prefetch never stops": {"prefetch_boundary": 3, "store_no_read": 0, "blockio_cpus": 1},
    "whole-line stores": {"prefetch_boundary": 0, "store_no_read": 1, "blockio_cpus": 1},
    "2 CPUs per block": {"prefetch_boundary": 0, "store_no_read": 0, "blockio_cpus": 2},
    "3 CPUs per block": {"prefetch_boundary": 0, "store_no_read": 0, "blockio_cpus": 3},
    "all, prefetch 4K": {"prefetch_boundary": 1, "store_no_read": 1, "blockio_cpus": 2},
    "all, prefetch translation": {"prefetch_boundary": 2, "store_no_read": 1, "blockio_cpus": 2},
    "all, prefetch never stops": {"prefetch_boundary": 3, "store_no_read": 1, "blockio_cpus": 2},
}


def mechanism_contributions(p: dict, settings: dict | None = None,
                            event_ops: tuple[int, int, int] | None = None):
    """B3-B8 with each prefetch/store/CPU mechanism alone and together
    (:data:`MECHANISM_SETTINGS`; the other parameters of ``p``, the simulations' lengths
    ``event_ops`` as :func:`joint_sweep`'s where given), one row per setting and claim value
    (long frame)."""
    import polars as pl
    rows = []
    for name, over in (settings or MECHANISM_SETTINGS).items():
        q = check_params({**p, **_sizes(event_ops), **over})
        for cid, v in claim_values(q).items():
            items = v.items() if isinstance(v, dict) else [("", v)]
            for k, x in items:
                rows.append({"setting": name, "claim": f"{cid}_{k}" if k else cid, "value": x})
    return pl.DataFrame(rows)


STUDY = Study("bbml2_perf", tuple(CHARTS), DEFAULTS, evidence, check_params, results_frame,
              ASSUMED)


# ---------------------------------------------------------------------------------------
# synthetic footprints against the captured traces
# ---------------------------------------------------------------------------------------
def _per_op_footprint(trace) -> dict:
    """Per-operation footprint of a trace: instructions, kernel share, and distinct 4 KiB
    pages and touches per operation by region (averaged over operations)."""
    out = {"instructions per op": float(trace.instructions.mean()),
           "kernel instruction share": float(trace.el1_instructions.sum()
                                             / trace.instructions.sum())}
    page = (trace.va >> np.uint64(12)).astype(np.int64)
    fetch = trace.kind == 2
    for reg in Region:
        for what, m in (("fetch", fetch), ("data", ~fetch)):
            sel = (trace.region == reg) & m
            if not sel.any():
                continue
            pairs = np.unique(np.stack([trace.op[sel].astype(np.int64), page[sel]]), axis=1)
            out[f"{reg.name.lower()} {what} pages per op"] = pairs.shape[1] / trace.n_ops
            out[f"{reg.name.lower()} {what} touches per op"] = float(sel.sum()) / trace.n_ops
    return out


#: Synthetic parameters and the footprint quantity of the nearest capture they stand for.
_FOOTPRINT_PARAMS = {
    Workload.MEMCACHED: {"mc_instructions_per_op": "instructions per op",
                         "mc_el1_fraction": "kernel instruction share"},
    Workload.DMCRYPT: {"dmcrypt_instructions_per_op": "instructions per op"},
    Workload.SEQREAD: {"seqread_instructions_per_op": "instructions per op"},
}


def _data_runs(workload: Workload) -> float:
    """Mean physically contiguous run (4 KiB pages) of the capture's data pages, taken in
    order of first touch, as the VM's allocator handed them out."""
    cap = load_capture(workload)
    lin = (cap.region == Region.LINEAR) & (cap.lines >= 8) & (cap.pa >= 0)
    pages = cap.pa[lin] >> 12
    _, first = np.unique(pages, return_index=True)
    seq = pages[np.sort(first)]
    if seq.size < 2:
        return float(seq.size)
    breaks = np.count_nonzero(np.diff(seq) != 1)
    return seq.size / (breaks + 1)


def footprint_comparison(p: dict):
    """Per workload and footprint quantity: the synthetic trace's value at parameters ``p``
    and the value measured on the nearest capture (``CAPTURES``), with the synthetic
    parameter that sets it where one does (long frame)."""
    import polars as pl
    p = check_params({**p, "workload_source": "synthetic"})
    layout = _layout(p)
    rows = []
    for w in Workload:
        syn = workload_trace(w, _shape(p, w, layout), layout, 400, int(p["seed"]))
        syn_fp = _per_op_footprint(syn)
        if w == Workload.MEMCACHED:
            syn_fp["instructions per op"] = float(p["mc_instructions_per_op"])
            syn_fp["kernel instruction share"] = float(p["mc_el1_fraction"])
        else:
            key = "dmcrypt" if w == Workload.DMCRYPT else "seqread"
            syn_fp["instructions per op"] = float(p[f"{key}_instructions_per_op"])
            syn_fp["kernel instruction share"] = BlockIOShape().el1_instruction_fraction
        cap, _ = placed_capture(w, trace_shape(p, w, 1), layout, int(p["seed"]))
        cap_fp = _per_op_footprint(cap)
        if w != Workload.MEMCACHED:
            name = "dmcrypt_run_pages" if w == Workload.DMCRYPT else "seqread_run_pages"
            syn_fp["data-page run (4 KiB pages)"] = float(p[name])
            cap_fp["data-page run (4 KiB pages)"] = _data_runs(w)
        params_of = {v: k for k, v in _FOOTPRINT_PARAMS[w].items()}
        if w != Workload.MEMCACHED:
            params_of["data-page run (4 KiB pages)"] = name
        for q in sorted(set(syn_fp) | set(cap_fp)):
            rows.append({"workload": w.name.lower(), "capture": CAPTURES[w][0],
                         "quantity": q, "parameter": params_of.get(q, ""),
                         "synthetic": syn_fp.get(q, 0.0), "trace": cap_fp.get(q, 0.0)})
    return pl.DataFrame(rows)
