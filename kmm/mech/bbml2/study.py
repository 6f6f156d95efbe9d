"""bbml2: the study: parameters, evidence per claim, frames.

Part of :mod:`kmm.mech.bbml2`."""
from __future__ import annotations

import dataclasses

import numpy as np

from ...config import check_float, check_int
from ...engine import GiB, KiB, MiB
from ...errors import ConfigError
from .model import (bbm_window, BbmConfig, boot_table_bytes, build_linear_map,
    FORCE_PTE_NAMES, ForcePte, force_pte_mapping, kfence_late_split, LinearMapPolicy, lower_table_bytes, map_stats,
    memory_map_from_memtotal, MemoryMap, POLICY_NAMES, repaint, run_stream, saved_bytes,
    vmalloc_map)
from ...suite.study import (cached, evidence_from, one_at_a_time, replicate_plan,
                            replicates_from, Study)
from .workload import make_stream, make_uptime_stream, StreamConfig


# ---- the notebook's layer: parameters, frames, claim values ------------------------------------
GRANULES = ("4K", "16K", "64K")

#: The notebook's parameters with their small defaults (notebooks/bbml2_structure.ipynb repeats
#: them; the published scenario is params/bbml2_structure.yaml).
DEFAULTS: dict = {"seed": 1, "installed_gib": 256, "memtotal_kib": 258988984,
    "kernel_image_mib": 48, "other_reserved_mib": 256, "kernel_alias_mib": 32,
    "kernel_offset_mib": 2, "kfence_pool_kib": 0, "nomap_align_kib": 64, "banks": 1,
    "bank_gap_gib": 0, "ram_gib_list": [16, 64, 256], "granules": ["4K", "16K", "64K"],
    "stream_ram_gib": 256, "stream_events": 300, "checkpoints": 10, "w_module": 0.4, "w_bpf": 0.05,
    "w_secretmem": 0.2, "w_vmalloc_ro": 0.05, "w_direct_map": 0.25, "w_linear": 0.05,
    "module_pages": 64, "bpf_pack_pages": 512, "vmalloc_ro_pages": 256, "linear_mib": 32,
    "alias_run_pages": 8.0, "free_fraction": 0.5, "bbm_cpus": 191, "bbm_rate_per_us": 0.05,
    "bbm_rates_per_us": [0.001, 0.01, 0.1, 1.0], "tlbi_ns": 2000.0, "write_ns": 100.0,
    "tlb_hold_prob": 0.5, "bbm_changes": 200, "conflict_prob": 0.01, "sweep_points": 3,
    "vmalloc_areas": 200, "vmalloc_median_kib": 64, "vmalloc_sigma": 2.0,
    "uptime_days": 7, "uptime_events_per_day": 40, "lifetime_hours": 24.0,
    "uptime_checkpoints": 8, "table_alloc_ns": 1000.0, "kfence_late_pool_kib": 2048}


def check_params(params: dict) -> dict:
    """Defaults completed with ``params`` (``scenario`` ignored); unknown keys refused."""
    unknown = sorted(set(params) - set(DEFAULTS) - {"scenario"})
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r}", "bbml2_structure")
    p = {**DEFAULTS, **{k: v for k, v in params.items() if k != "scenario"}}
    for g in p["granules"]:
        if g not in GRANULES:
            raise ConfigError(f"unknown granule {g!r}", "granules")
    for k in ("installed_gib", "memtotal_kib", "stream_events", "checkpoints", "bbm_cpus",
              "bbm_changes", "sweep_points", "banks", "vmalloc_areas", "vmalloc_median_kib",
              "uptime_days", "uptime_events_per_day", "uptime_checkpoints",
              "kfence_late_pool_kib"):
        check_int(k, p[k], 1)
    for k in ("kernel_image_mib", "other_reserved_mib", "kernel_alias_mib", "kernel_offset_mib",
              "kfence_pool_kib", "bank_gap_gib", "linear_mib"):
        check_int(k, p[k], 0)
    check_float("bbm_rate_per_us", p["bbm_rate_per_us"], 0.0)
    check_float("vmalloc_sigma", p["vmalloc_sigma"], 0.0, 4.0)
    check_float("lifetime_hours", p["lifetime_hours"], 0.0)
    check_float("table_alloc_ns", p["table_alloc_ns"], 0.0)
    check_float("tlbi_ns", p["tlbi_ns"], 0.0)
    return p


def params_from(namespace: dict) -> dict:
    """The notebook's parameters picked from ``namespace`` (its globals), checked."""
    return STUDY.params(namespace)


def memory_map(p: dict, ram_bytes: int, granule: str = "4K", nomap_bytes: int = 0,
               nomap_align_bytes: int | None = None) -> MemoryMap:
    """The memory map of the parameters for a RAM size and granule."""
    return MemoryMap(ram_bytes, granule, banks=p["banks"], bank_gap_bytes=p["bank_gap_gib"] * GiB,
                     nomap_bytes=nomap_bytes,
                     nomap_align_bytes=nomap_align_bytes or p["nomap_align_kib"] * KiB,
                     kernel_alias_bytes=p["kernel_alias_mib"] * MiB,
                     kernel_offset_bytes=p["kernel_offset_mib"] * MiB,
                     kfence_pool_bytes=p["kfence_pool_kib"] * KiB)


def thread_machine(p: dict, *, kernel_image_mib: int | None = None,
                   other_reserved_mib: int | None = None,
                   nomap_align_kib: int | None = None) -> MemoryMap:
    """The thread's machine: ``installed_gib`` of 4K-granule DRAM, of which the kernel maps
    what MemTotal under rodata=full implies (:func:`memory_map_from_memtotal`)."""
    img = p["kernel_image_mib"] if kernel_image_mib is None else kernel_image_mib
    other = p["other_reserved_mib"] if other_reserved_mib is None else other_reserved_mib
    align = (p["nomap_align_kib"] if nomap_align_kib is None else nomap_align_kib) * KiB
    return memory_map_from_memtotal(
        p["installed_gib"] * GiB, p["memtotal_kib"] * KiB, granule="4K",
        kernel_image_bytes=img * MiB, other_reserved_bytes=other * MiB,
        nomap_align_bytes=align, banks=p["banks"], bank_gap_bytes=p["bank_gap_gib"] * GiB,
        kernel_alias_bytes=p["kernel_alias_mib"] * MiB,
        kernel_offset_bytes=p["kernel_offset_mib"] * MiB,
        kfence_pool_bytes=p["kfence_pool_kib"] * KiB)


@cached()
def table_memory_frame(p: dict):
    """Boot-time linear-map table bytes per granule, RAM size and policy, with the bytes
    rodata=full+BBML2 saves (B2). Columns ``granule, ram_gib, policy, table_bytes,
    saved_bytes``."""
    import polars as pl

    rows = []
    for g in p["granules"]:
        for ram in p["ram_gib_list"]:
            mm = memory_map(p, ram * GiB, g)
            full = boot_table_bytes(mm, LinearMapPolicy.FULL_PTES)
            for pol in (LinearMapPolicy.FULL_PTES, LinearMapPolicy.RODATA_ON,
                        LinearMapPolicy.FULL_BBML2):
                tb = full if pol == LinearMapPolicy.FULL_PTES else boot_table_bytes(mm, pol)
                rows.append({"granule": g, "ram_gib": ram, "policy": POLICY_NAMES[pol],
                             "table_bytes": tb, "saved_bytes": full - tb})
    return pl.DataFrame(rows)


#: The ``assumed`` inputs of B1 (the thread's machine) and of B11 (the BBM window), with the
#: ranges of ``params/bbml2_structure.yaml``: their one-at-a-time swings decide "decided by".
B1_ASSUMED = {"kernel_image_mib": (24, 96), "other_reserved_mib": (0, 1024),
              "nomap_align_kib": (4, 2048)}
B11_ASSUMED = {"bbm_rate_per_us": (0.001, 1.0), "tlbi_ns": (500.0, 10000.0),
               "tlb_hold_prob": (0.0, 1.0)}


def b1_value(p: dict, **inputs) -> float:
    """B1's saved bytes on the thread's machine with ``inputs`` (of :data:`B1_ASSUMED`)."""
    return float(saved_bytes(thread_machine(p, **inputs)))


def b1_swings(p: dict) -> list[dict]:
    """B1 with each of its assumed inputs alone at the ends of its range."""
    return [{"params": q, "value": b1_value(p, **q)}
            for q in one_at_a_time(B1_ASSUMED, p)]


def b1_points(p: dict) -> list[dict]:
    """Saved bytes on the thread's machine over the joint grid of its ``assumed`` inputs
    (kernel image, other reservations, carve-out alignment), ``sweep_points`` values each
    spread over their ranges; the first point is the scenario itself."""
    img = np.linspace(24, 96, p["sweep_points"]).round().astype(int).tolist()
    other = np.linspace(0, 1024, p["sweep_points"]).round().astype(int).tolist()
    out = [{"params": {"kernel_image_mib": p["kernel_image_mib"],
                       "other_reserved_mib": p["other_reserved_mib"],
                       "nomap_align_kib": p["nomap_align_kib"]},
            "value": None}]
    for i in img:
        for o in other:
            for a in (4, 2048):
                out.append({"params": {"kernel_image_mib": i, "other_reserved_mib": o,
                                       "nomap_align_kib": a}, "value": None})
    for pt in out:
        mm = thread_machine(p, **pt["params"])
        pt["value"] = float(saved_bytes(mm))
        pt["mapped_gib"] = mm.mapped_bytes / GiB
    return out


def stream_config(p: dict, events: int | None = None, **over) -> StreamConfig:
    q = {**p, **over}
    return StreamConfig(
        events=events or q["stream_events"],
        weights=(q["w_module"], q["w_bpf"], q["w_secretmem"], q["w_vmalloc_ro"],
                 q["w_direct_map"], q["w_linear"]),
        pages=(float(q["module_pages"]), float(q["bpf_pack_pages"]), 1.0,
               float(q["vmalloc_ro_pages"]), 1.0, 0.0),
        linear_bytes=q["linear_mib"] * MiB, alias_run_pages=float(q["alias_run_pages"]),
        free_fraction=float(q["free_fraction"]))


@cached()
def stream_frame(p: dict, seed: int | None = None, checkpoints: int | None = None, **over):
    """The permission-change stream on the thread's machine under every policy (B9)."""
    import polars as pl

    mm = memory_map(p, p["stream_ram_gib"] * GiB, "4K")
    s = make_stream(mm, stream_config(p, **over), p["seed"] if seed is None else seed)
    cp = p["checkpoints"] if checkpoints is None else checkpoints
    frames = [run_stream(mm, pol, s, checkpoints=cp) for pol in LinearMapPolicy]
    return pl.concat(frames)


def b9_evidence(frame) -> dict:
    """B9 evidence from a :func:`stream_frame`: the end state of both split strategies."""
    row = {}
    for r in frame.iter_rows(named=True):
        row[r["policy"]] = r  # rows are in checkpoint order: the last one wins
    bd = row[POLICY_NAMES[LinearMapPolicy.FULL_BBML2]]
    v1 = row[POLICY_NAMES[LinearMapPolicy.FULL_BBML2_V1]]
    return {"blocks_kept_boundary": bd["block_mapped_bytes"],
            "blocks_kept_v1": v1["block_mapped_bytes"],
            "block_leaves_boundary": bd["block_leaves"], "block_leaves_v1": v1["block_leaves"],
            "tables_boundary": bd["table_pages_allocated"],
            "tables_v1": v1["table_pages_allocated"],
            "tlb_entries_boundary": bd["tlb_entries"], "tlb_entries_v1": v1["tlb_entries"],
            "flushes": bd["flushes"]}


def b9_points(p: dict) -> list[dict]:
    """B9 evidence over the joint grid of the stream's ``assumed`` shape parameters: the
    physical run behind vmalloc areas and the share of contiguous linear-map ranges."""
    out = []
    for run in (1.0, 8.0, 64.0, 512.0):
        for wl in (0.0, 0.05, 0.2):
            f = stream_frame(p, alias_run_pages=run, w_linear=wl,
                             events=max(50, p["stream_events"] // 4), checkpoints=1)
            out.append({"params": {"alias_run_pages": run, "w_linear": wl},
                        "value": b9_evidence(f)})
    return out


@cached()
def repaint_frame(p: dict):
    """Repaint pages predicted from the boot mappings and built by the repaint, per granule
    and RAM size (B10)."""
    import polars as pl

    rows = []
    for g in p["granules"]:
        for ram in p["ram_gib_list"]:
            r = repaint(memory_map(p, ram * GiB, g))
            rows.append({"granule": g, "ram_gib": ram, **r})
    return pl.DataFrame(rows)


def bbm_config(p: dict, rate: float | None = None, **over) -> BbmConfig:
    q = {**p, **over}
    return BbmConfig(cpus=q["bbm_cpus"],
                     access_rate_per_us=float(q["bbm_rate_per_us"] if rate is None else rate),
                     tlb_hold_prob=float(q["tlb_hold_prob"]), tlbi_ns=float(q["tlbi_ns"]),
                     write_ns=float(q["write_ns"]), changes=q["bbm_changes"],
                     conflict_prob=float(q["conflict_prob"]))


@cached()
def bbm_frame(p: dict):
    """Faults and conflict aborts per mode over the access rates (B11)."""
    import polars as pl

    rows = []
    for rate in p["bbm_rates_per_us"]:
        for mode, r in bbm_window(bbm_config(p, rate), p["seed"]).items():
            rows.append({"rate_per_us": float(rate), "mode": mode, **r})
    return pl.DataFrame(rows)


def b11_value(p: dict, rate: float, tlbi_ns: float, hold: float) -> dict:
    """B11's faults with and without BBML2 in the BBM window at these settings."""
    r = bbm_window(bbm_config(p, rate, tlbi_ns=tlbi_ns, tlb_hold_prob=hold), p["seed"])
    return {"faults_without_bbml2": r["no_bbml2"]["faults"],
            "faults_with_bbml2": r["bbml2"]["faults"]}


def b11_points(p: dict) -> list[dict]:
    """B11 over a grid of its assumed inputs (three levels each)."""
    return [{"params": {"bbm_rate_per_us": rate, "tlbi_ns": tlbi, "tlb_hold_prob": hold},
             "value": b11_value(p, rate, tlbi, hold)}
            for rate in (0.001, 0.01, 0.1) for tlbi in (500.0, 2000.0, 10000.0)
            for hold in (0.0, 0.5, 1.0)]


def b11_swings(p: dict) -> list[dict]:
    """B11 with each of its assumed inputs alone at the ends of its range."""
    return [{"params": q, "value": b11_value(p, q["bbm_rate_per_us"], q["tlbi_ns"],
                                             q["tlb_hold_prob"])}
            for q in one_at_a_time(B11_ASSUMED, p)]


@cached()
def vmalloc_frame(p: dict):
    """Table pages and TLB entries of the same vmalloc areas mapped with PTEs and with huge
    and contiguous leaves (issue 10's extension)."""
    import polars as pl

    rng = np.random.default_rng(p["seed"])
    sizes = np.exp(rng.normal(np.log(p["vmalloc_median_kib"] * KiB), p["vmalloc_sigma"],
                              p["vmalloc_areas"])).astype(np.int64)
    rows = []
    for huge in (False, True):
        pt = vmalloc_map(sizes, huge, p["seed"])
        rows.append({"mapping": "huge+cont" if huge else "PTEs",
                     "mapped_bytes": int(sum(pt.leaf_bytes_by_level().values())),
                     "table_pages": sum(v for lv, v in pt.table_pages().items()
                                        if lv != pt.geometry.start_level),
                     "tlb_entries": pt.tlb_entries(True),
                     "leaves": pt.tlb_entries(False)})
    return pl.DataFrame(rows)


UPTIME_POLICIES = (LinearMapPolicy.FULL_PTES, LinearMapPolicy.FULL_BBML2)


@cached()
def uptime_frame(p: dict):
    """Blocks kept against uptime and what the changes cost (the linear map never
    re-collapses split leaves): :func:`make_uptime_stream` over ``uptime_days`` at
    ``uptime_events_per_day``, freed memory restored after ``Exp(lifetime_hours)``, on the
    stream machine under rodata=full and rodata=full+BBML2. Columns ``policy, hours,
    changes, block_mapped_bytes, tlb_entries, table_pages_allocated, flushes,
    table_alloc_ms`` (table pages x ``table_alloc_ns``: the split's own work) and
    ``flush_ms`` (flushes x ``tlbi_ns``: one TLBI + DSB per flushed change, the same
    under both policies)."""
    import polars as pl

    mm = memory_map(p, p["stream_ram_gib"] * GiB, "4K")
    hours = 24.0 * p["uptime_days"]
    cfg = stream_config(p, events=p["uptime_days"] * p["uptime_events_per_day"])
    s = make_uptime_stream(mm, cfg, p["seed"], hours, float(p["lifetime_hours"]))
    at = np.linspace(0.0, hours, p["uptime_checkpoints"] + 1)
    cuts = np.searchsorted(s["t_h"], at, side="right")
    cuts[-1] = s["pa"].size
    frames = []
    for pol in UPTIME_POLICIES:
        f = run_stream(mm, pol, s, cuts=cuts).with_columns(pl.Series("hours", at))
        frames.append(f.with_columns(
            (pl.col("table_pages_allocated") * float(p["table_alloc_ns"]) / 1e6)
            .alias("table_alloc_ms"),
            (pl.col("flushes") * float(p["tlbi_ns"]) / 1e6).alias("flush_ms")))
    return pl.concat(frames)


def uptime_cost_points(p: dict, frame=None) -> list[dict]:
    """The cost at the end of the uptime over the ``assumed`` ranges of ``table_alloc_ns``
    and ``tlbi_ns`` (their ends and the scenario's value)."""
    f = uptime_frame(p) if frame is None else frame
    end = {r["policy"]: r for r in f.iter_rows(named=True)}
    bd = end[POLICY_NAMES[LinearMapPolicy.FULL_BBML2]]
    out = []
    for alloc in sorted({300.0, float(p["table_alloc_ns"]), 5000.0}):
        for tlbi in sorted({500.0, float(p["tlbi_ns"]), 10000.0}):
            out.append({"table_alloc_ns": alloc, "tlbi_ns": tlbi,
                        "split_ms": bd["table_pages_allocated"] * alloc / 1e6,
                        "flush_ms": bd["flushes"] * tlbi / 1e6})
    return out


@cached()
def force_pte_frame(p: dict):
    """The linear map on the stream machine under each ``force_pte_mapping()`` feature
    (:class:`ForcePte`) and policy: boot-time table bytes (memblock), table bytes and
    block-mapped bytes once the system runs (a late KFENCE pool split to PTEs, from the page
    allocator) and the bytes saved against rodata=full. The KFENCE pool is
    ``kfence_late_pool_kib`` (KFENCE_POOL_SIZE) right after the image alias."""
    import polars as pl

    pool = p["kfence_late_pool_kib"] * KiB
    base = memory_map(p, p["stream_ram_gib"] * GiB, "4K")
    late = dataclasses.replace(base, kfence_pool_bytes=pool)
    maps: dict = {}  # one engine map per distinct paint (PTE maps of 256 GiB are slow)

    def state(mm, pol, cfg):
        ptes = force_pte_mapping(pol, cfg)
        key = (mm == late, ptes, cfg == ForcePte.KFENCE_LATE)
        if key not in maps:
            proto = LinearMapPolicy.FULL_PTES if ptes else LinearMapPolicy.FULL_BBML2
            boot = build_linear_map(mm, proto, config=cfg)
            run = kfence_late_split(mm, proto) if key[2] and not ptes else boot
            maps[key] = (lower_table_bytes(boot), lower_table_bytes(run),
                         map_stats(run)["block_mapped_bytes"])
        return maps[key]

    rows = []
    for cfg in ForcePte:
        mm = late if cfg == ForcePte.KFENCE_LATE else base
        full = state(mm, LinearMapPolicy.FULL_PTES, cfg)[0]
        for pol in (LinearMapPolicy.FULL_PTES, LinearMapPolicy.RODATA_ON,
                    LinearMapPolicy.FULL_BBML2):
            boot, running, blocks = state(mm, pol, cfg)
            rows.append({"config": FORCE_PTE_NAMES[cfg], "policy": POLICY_NAMES[pol],
                         "boot_table_bytes": boot, "running_table_bytes": running,
                         "block_mapped_bytes": blocks, "saved_bytes": full - boot})
    return pl.DataFrame(rows)


def b9_replicates(p: dict, stream) -> list[dict]:
    """B9 at two more seeds (full stream) and at half the published stream, read from the
    published run's checkpoint at half its rows (:func:`kmm.suite.registry.convergence`).
    Lengths are in events; an event's rows are drawn independently, so half the rows is half
    the events on average."""
    n = int(p["stream_events"])
    rows = int(stream["changes"].max())
    cuts = stream["changes"].unique().to_numpy()
    at = int(cuts[np.argmin(np.abs(cuts - rows / 2))])  # the checkpoint nearest the middle
    runs = [(s, length, {"B9": b9_evidence(stream_frame(p, seed=s))})
            for s, length in replicate_plan(p["seed"], n)[:-1]]
    if 0 < at < rows:
        runs.append((p["seed"], round(n * at / rows),
                     {"B9": b9_evidence(stream.filter(stream["changes"] == at))}))
    return replicates_from(runs).get("B9", [])


def b11_replicates(p: dict) -> list[dict]:
    """B11 at two more seeds and at half the live changes (a run of its own: the window
    counts are drawn for the whole run at once)."""
    def value(seed, changes):
        r = bbm_window(bbm_config(p, changes=changes), seed)
        return {"faults_without_bbml2": r["no_bbml2"]["faults"],
                "faults_with_bbml2": r["bbml2"]["faults"],
                "conflict_aborts_not_allowlisted": r["bbml2_aborts"]["conflict_aborts"],
                "accesses": r["no_bbml2"]["accesses"]}

    runs = replicate_plan(p["seed"], int(p["bbm_changes"]))
    return replicates_from([(s, n, {"B11": value(s, n)}) for s, n in runs])["B11"]


def claim_values(p: dict, tables=None, stream=None, repaints=None) -> dict[str, dict]:
    """Value, unit, sweep and a one-sentence explanation for B1, B2, B9, B10 and B11."""
    p = check_params(p)
    tables = table_memory_frame(p) if tables is None else tables
    stream = stream_frame(p) if stream is None else stream
    repaints = repaint_frame(p) if repaints is None else repaints
    out = {}
    b1 = b1_points(p)
    mm = thread_machine(p)
    v = b1[0]["value"]
    vals = [x["value"] for x in b1[1:]]
    out["B1"] = {
        "value": v, "unit": "bytes", "sweep": b1[1:], "swings": b1_swings(p),
        "deterministic": True,
        "explanation": (
            f"rodata=full maps the {mm.mapped_bytes / GiB:.1f} GiB the kernel sees (256 GiB "
            f"installed less a {mm.nomap_bytes / GiB:.2f} GiB firmware carve-out implied by "
            f"MemTotal) with one 4 KiB PTE table per 2 MiB, which block mapping removes: "
            f"{v / MiB:.0f} MiB of memblock tables ({min(vals) / MiB:.0f} to "
            f"{max(vals) / MiB:.0f} MiB over the assumed reservations)")}
    sel = tables.filter(tables["policy"] == POLICY_NAMES[LinearMapPolicy.FULL_BBML2])
    ev = {"ram_bytes": [r * GiB for r in sel["ram_gib"].to_list()],
          "saved_bytes": sel["saved_bytes"].to_list(), "group": sel["granule"].to_list()}
    per = {g: [s / (r * GiB) for r, s, gg in zip(sel["ram_gib"], sel["saved_bytes"],
                                                  sel["granule"]) if gg == g]
           for g in p["granules"]}
    out["B2"] = {"value": ev, "unit": "bytes", "sweep": None, "deterministic": True,
                 "explanation": (
        "the PTE tables rodata=full needs are one page per PMD span of RAM, so the saving is "
        "a fixed share of RAM per granule (" + ", ".join(
            f"{g}: 1/{1 / np.mean(r):.0f}" for g, r in per.items() if r) + ")")}
    b9 = b9_evidence(stream)
    b9_sweep = b9_points(p)
    fails = [pt for pt in b9_sweep
             if not pt["value"]["blocks_kept_boundary"] > pt["value"]["blocks_kept_v1"]]
    where = "; it holds in every stream shape of the sweep"
    if fails:
        runs = sorted({pt["params"]["alias_run_pages"] for pt in fails})
        wl = sorted({pt["params"]["w_linear"] for pt in fails})
        tlb = max(pt["value"]["tlb_entries_v1"] / max(1, pt["value"]["tlb_entries_boundary"])
                  for pt in fails)
        same = all(pt["value"]["tlb_entries_v1"] == pt["value"]["tlb_entries_boundary"]
                   and pt["value"]["tables_v1"] == pt["value"]["tables_boundary"]
                   for pt in fails)
        there = ("where every call changes one page (the kernel changes vmalloc aliases page "
                 "by page), and splitting a page at its ends is splitting it to PTEs, so v1 "
                 "paints the same map" if same else
                 "where no change covers a whole block; there v1 still needs up to "
                 f"{tlb:.2f}x the TLB entries")
        where = (f"; it fails in {len(fails)} of {len(b9_sweep)} stream shapes (w_linear in "
                 f"{wl}, alias runs of {runs} pages), " + there)
    out["B9"] = {"value": b9, "unit": "", "sweep": b9_sweep,
                 "replicates": b9_replicates(p, stream), "explanation": (
        f"boundary-only splits keep {b9['blocks_kept_boundary'] / GiB:.1f} GiB block-mapped "
        f"against {b9['blocks_kept_v1'] / GiB:.1f} GiB for v1 and allocate "
        f"{b9['tables_boundary']} vs {b9['tables_v1']} table pages, because only the leaves "
        f"at a range's ends are split, which only the contiguous linear ranges benefit from "
        f"({b9['flushes']} flushed calls in all)" + where)}
    ev10 = {"predicted_pages": repaints["predicted_pages"].to_list(),
            "built_pages": repaints["built_pages"].to_list(),
            "granule": repaints["granule"].to_list(), "ram_gib": repaints["ram_gib"].to_list()}
    out["B10"] = {"value": ev10, "unit": "pages", "sweep": None, "deterministic": True,
                  "explanation": (
        "each PUD or PMD block created at boot needs exactly the tables below it that a "
        "repaint to PTEs builds (1 + 512 pages per 1 GiB PUD block and 1 per PMD block with "
        "4K), and nothing else changes, so the count from the boot mappings is exact")}
    r = bbm_window(bbm_config(p), p["seed"])
    out["B11"] = {"value": {"faults_without_bbml2": r["no_bbml2"]["faults"],
                            "faults_with_bbml2": r["bbml2"]["faults"],
                            "conflict_aborts_not_allowlisted": r["bbml2_aborts"]["conflict_aborts"],
                            "accesses": r["no_bbml2"]["accesses"]},
                  "unit": "", "sweep": b11_points(p), "swings": b11_swings(p),
                  "replicates": b11_replicates(p),
                  "explanation": (
        f"without BBML2 a leaf-size change leaves an invalid descriptor for the TLBI and the "
        f"rewrite, and {r['no_bbml2']['faults']} of {r['no_bbml2']['accesses']} concurrent "
        f"accesses fault in that window; with BBML2 the descriptor is replaced in place and "
        f"none do, while a CPU outside the allowlist that raises TLB conflict aborts would "
        f"take {r['bbml2_aborts']['conflict_aborts']} aborts")}
    return out


def results_frame(p: dict, scenario: str, tables=None, stream=None, repaints=None, bbm=None,
                  vmalloc=None, uptime=None, force=None):
    """The tidy frame of everything the notebook shows."""
    from ... import results

    p = check_params(p)
    rows = []
    for r in (table_memory_frame(p) if tables is None else tables).iter_rows(named=True):
        rows += results.rows_for(scenario, {"study": "table_memory", "granule": r["granule"],
                                            "ram_gib": r["ram_gib"], "policy": r["policy"]},
                                 p["seed"], {"table_bytes": (r["table_bytes"], "bytes"),
                                             "saved_bytes": (r["saved_bytes"], "bytes")})
    for r in (stream_frame(p) if stream is None else stream).iter_rows(named=True):
        rows += results.rows_for(scenario, {"study": "stream", "policy": r["policy"],
                                            "changes": r["changes"]}, p["seed"],
                                 {k: (r[k], "bytes" if k.endswith("bytes") else "count")
                                  for k in ("block_leaves", "block_mapped_bytes",
                                            "table_pages_allocated", "tlb_entries",
                                            "tlb_entries_nocont", "leaves_changed")})
    for r in (repaint_frame(p) if repaints is None else repaints).iter_rows(named=True):
        rows += results.rows_for(scenario, {"study": "repaint", "granule": r["granule"],
                                            "ram_gib": r["ram_gib"]}, p["seed"],
                                 {"predicted_pages": (r["predicted_pages"], "pages"),
                                  "built_pages": (r["built_pages"], "pages")})
    for r in (bbm_frame(p) if bbm is None else bbm).iter_rows(named=True):
        rows += results.rows_for(scenario, {"study": "bbm", "mode": r["mode"],
                                            "rate_per_us": r["rate_per_us"]}, p["seed"],
                                 {"accesses": (r["accesses"], "count"),
                                  "faults": (r["faults"], "count"),
                                  "conflict_aborts": (r["conflict_aborts"], "count")})
    for r in (vmalloc_frame(p) if vmalloc is None else vmalloc).iter_rows(named=True):
        rows += results.rows_for(scenario, {"study": "vmalloc", "mapping": r["mapping"]},
                                 p["seed"], {"table_pages": (r["table_pages"], "pages"),
                                             "tlb_entries": (r["tlb_entries"], "count"),
                                             "leaves": (r["leaves"], "count")})
    for r in (uptime_frame(p) if uptime is None else uptime).iter_rows(named=True):
        rows += results.rows_for(scenario, {"study": "uptime", "policy": r["policy"],
                                            "hours": r["hours"]}, p["seed"],
                                 {"block_mapped_bytes": (r["block_mapped_bytes"], "bytes"),
                                  "table_pages_allocated": (r["table_pages_allocated"], "pages"),
                                  "flushes": (r["flushes"], "count"),
                                  "table_alloc_ms": (r["table_alloc_ms"], "ms"),
                                  "flush_ms": (r["flush_ms"], "ms")})
    for r in (force_pte_frame(p) if force is None else force).iter_rows(named=True):
        rows += results.rows_for(scenario, {"study": "force_pte", "config": r["config"],
                                            "policy": r["policy"]}, p["seed"],
                                 {k: (r[k], "bytes") for k in (
                                     "boot_table_bytes", "running_table_bytes",
                                     "block_mapped_bytes", "saved_bytes")})
    return results.frame(rows)


CHARTS = {"B1": None, "B2": "bbml2_structure_saved_vs_ram", "B9": "bbml2_structure_stream",
          "B10": "bbml2_structure_repaint", "B11": "bbml2_structure_bbm"}


def evidence(p: dict) -> dict:
    """B1, B2, B9-B11 at parameters ``p`` (:class:`kmm.suite.study.Evidence` per claim)."""
    return evidence_from(claim_values(p, table_memory_frame(p), stream_frame(p),
                                      repaint_frame(p)), CHARTS)


def frame(p: dict, scenario: str):
    """The notebook's tidy frame at parameters ``p``."""
    return results_frame(p, scenario, table_memory_frame(p), stream_frame(p), repaint_frame(p),
                         bbm_frame(p), vmalloc_frame(p), uptime_frame(p), force_pte_frame(p))


STUDY = Study("bbml2_structure", tuple(CHARTS), DEFAULTS, evidence, check_params, frame,
              {**B1_ASSUMED, **B11_ASSUMED})
