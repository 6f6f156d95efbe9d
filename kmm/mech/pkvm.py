"""The pKVM host stage-2 alternative to kernel text replication.

Proposed on the "arm64 kernel text replication" RFC thread (2023): boot the host in
protected KVM mode so that the host kernel runs under a stage-2 translation, give every NUMA
node its own host stage-2 tables that map the kernel text/rodata IPA range to a node-local
copy, leave stage 1 unchanged, and map text/rodata read-only at stage 2 so that writes trap
to EL2, which updates every copy. The critique on the same thread: VHE is given up (extra
cost on every guest entry/exit), EL2 code has no stage 2 and stays unreplicated, stage-2
table memory must be reserved for all host memory and I/O per node, and the cost is the 2D
walk rather than the TLB footprint.

The module holds the exact parts of the model and, on top of :mod:`kmm.mech.ktr`'s host
workloads, the performance comparison:

- stage-2 table memory per node (claim S6): the worst case pKVM reserves
  (arch/arm64/include/asm/kvm_pkvm.h ``host_s2_pgtable_pages``: every memblock region at
  page granularity through ``KVM_PGTABLE_MAX_LEVELS`` levels, 16 pages for concatenated
  start-level tables, 1 GiB of MMIO) times the number of table sets, against the tables
  actually used by an identity map of host memory painted with :mod:`kmm.pagetable` over
  :func:`kmm.geometry.stage2` (``host_stage2_idmap`` maps the largest block that fits the
  memory region, arch/arm64/kvm/hyp/nvhe/mem_protect.c ``host_stage2_adjust_range``);
- 2D walk references (Arm ARM D8.2, two-stage translation): a stage-1 walk of ``n``
  descriptor reads, each descriptor address and the final IPA translated by a stage-2 walk
  of ``m`` reads: ``n + (n + 1) m``, with ``n`` and ``m`` shortened by block leaves;
- the comparison (S1-S5): the same workloads with every host access translated in two
  stages (per-node stage-2 tables from :func:`stage2_setup`, every leaf size a granule
  allows), the loss against KTR split into more walks and dearer walks
  (:func:`decompose_walks`), the exit rate at which losing VHE cancels the gain
  (:func:`vhe_crossover_rate`) and EL2 text fetched from node 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry as geom
from ..config import check_int
from ..errors import ConfigError
from ..pagetable import PageTable, Paint, Perm

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# arch/arm64/include/asm/kvm_pgtable.h before LPA2 support (5 with a level -1 start).
KVM_PGTABLE_MAX_LEVELS = 4
# host_s2_pgtable_pages(): "an extra 16 pages to safely upper-bound the worst case of
# concatenated pgds" and "Allow 1 GiB for MMIO mappings".
HOST_S2_CONCAT_PAGES = 16
HOST_S2_MMIO_BYTES = 1 * GiB


def hyp_pgtable_max_pages(nr_pages: int, entries_per_table: int,
                          max_levels: int = KVM_PGTABLE_MAX_LEVELS) -> int:
    """``__hyp_pgtable_max_pages``: tables to map ``nr_pages`` pages at page granularity,
    provisioned for the worst case at every one of ``max_levels`` levels."""
    check_int("nr_pages", nr_pages, lo=0)
    total = 0
    for _ in range(max_levels):
        nr_pages = -(-nr_pages // entries_per_table)
        total += nr_pages
    return total


def host_s2_reserved_pages(region_bytes: list[int], g: geom.Geometry,
                           max_levels: int = KVM_PGTABLE_MAX_LEVELS) -> int:
    """``host_s2_pgtable_pages()`` for memblock regions of the given sizes, in pages of the
    stage-2 granule ``g``."""
    e = g.entries_per_table
    pages = sum(hyp_pgtable_max_pages(b >> g.page_shift, e, max_levels) for b in region_bytes)
    return pages + HOST_S2_CONCAT_PAGES + hyp_pgtable_max_pages(
        HOST_S2_MMIO_BYTES >> g.page_shift, e, max_levels)


@dataclass(frozen=True)
class HostMemory:
    """The host's physical memory map, one memblock region per node, plus an I/O window.

    Parameters
    ----------
    ram_bytes : total RAM, split evenly over ``nodes`` regions (node ``n`` at
        ``n * node_span_bytes``)
    nodes : NUMA nodes
    io_bytes : MMIO the host touches (mapped on demand, at ``io_base_bytes``)
    node_span_bytes : physical address stride between nodes
    io_base_bytes : base of the I/O window (above every node's RAM)
    """

    ram_bytes: int = 256 * GiB
    nodes: int = 2
    io_bytes: int = 1 * GiB
    node_span_bytes: int = 1 << 40
    io_base_bytes: int = 1 << 44

    def __post_init__(self):
        check_int("nodes", self.nodes, lo=1, hi=64)
        check_int("ram_bytes", self.ram_bytes, lo=self.nodes * 2 * MiB)
        check_int("io_bytes", self.io_bytes, lo=0)
        if self.ram_bytes % (self.nodes * 64 * KiB):
            raise ConfigError("must split into 64 KiB aligned equal node regions", "ram_bytes")
        if self.ram_bytes // self.nodes > self.node_span_bytes:
            raise ConfigError("node RAM exceeds node_span_bytes", "ram_bytes")
        if self.io_base_bytes < self.nodes * self.node_span_bytes:
            raise ConfigError("the I/O window overlaps node RAM", "io_base_bytes")

    def regions(self) -> list[tuple[int, int]]:
        """``(base, size)`` of each node's RAM region."""
        per = self.ram_bytes // self.nodes
        return [(n * self.node_span_bytes, per) for n in range(self.nodes)]


def _paint(leaf: str) -> Paint:
    try:
        return {"page": Paint.PTES, "cont": Paint.NO_BLOCKS, "block": Paint.LARGEST,
                "nocont": Paint.NO_CONT}[leaf]
    except KeyError:
        raise ConfigError(f"unknown stage-2 leaf policy {leaf!r}; allowed: page, cont, "
                          "block, nocont", "leaf") from None


def _leaf_sizes(g: geom.Geometry) -> list[int]:
    """Every leaf and contiguous-range size of a geometry, ascending."""
    out = set()
    for lv in g.leaf_levels:
        out.add(g.leaf_bytes(lv))
        c = g.cont_bytes(lv)
        if c:
            out.add(c)
    return sorted(out)


def _capped_pieces(ipa: int, size: int, pa: int, cap: int | None, g: geom.Geometry):
    """Split [ipa, ipa + size) so that no piece holds an aligned window of the next leaf
    size above ``cap``: every window of that size is cut ``cap`` bytes in."""
    if cap is None:
        return [(ipa, size, pa)]
    bigger = [x for x in _leaf_sizes(g) if x > cap]
    if not bigger:
        return [(ipa, size, pa)]
    nxt = bigger[0]
    cuts = set()
    w = -(-ipa // nxt) * nxt
    while w + cap < ipa + size:
        cuts.add(w + cap)
        w += nxt
    edges = [ipa] + sorted(cuts) + [ipa + size]
    return [(a, b - a, pa + (a - ipa)) for a, b in zip(edges, edges[1:]) if b > a]


def host_stage2_table(mem: HostMemory, g: geom.Geometry, leaf: str = "block",
                      text: tuple[int, int, int] | None = None,
                      max_leaf_bytes: int | None = None) -> PageTable:
    """One host stage-2 table: identity map of every RAM region and the I/O window.

    ``leaf`` limits the leaves (``page``: no blocks or contiguous ranges; ``cont``:
    contiguous pages; ``block``: the largest block that fits; ``nocont``: blocks without
    contiguous ranges); ``max_leaf_bytes`` caps the leaf size (ranges are cut so that no
    larger aligned window exists). ``text`` is ``(ipa, size, pa)``: that IPA range maps to
    ``pa`` (a node's copy) instead of itself.
    """
    if g.stage != 2:
        raise ConfigError(f"needs a stage-2 geometry, got {g.name}", "geometry")
    paint = _paint(leaf)
    pt = PageTable(g)
    limit = 1 << g.va_bits
    ranges = []
    for base, size in mem.regions():
        if text is not None and base <= text[0] < base + size:
            t0, tsz, tpa = text
            if t0 + tsz > base + size:
                raise ConfigError("the text range must lie inside one RAM region", "text")
            ranges += [(base, t0 - base, base, Perm.RW), (t0, tsz, tpa, Perm.RX),
                       (t0 + tsz, base + size - t0 - tsz, t0 + tsz, Perm.RW)]
        else:
            ranges.append((base, size, base, Perm.RW))
    if mem.io_bytes:
        ranges.append((mem.io_base_bytes, mem.io_bytes, mem.io_base_bytes, Perm.RW))
    for ipa, size, pa, perm in ranges:
        if size == 0:
            continue
        if ipa + size > limit:
            raise ConfigError(f"IPA {ipa + size:#x} exceeds the {g.va_bits}-bit IPA space",
                              "ipa_bits")
        for a, sz, p in _capped_pieces(ipa, size, pa, max_leaf_bytes, g):
            pt.map(a, sz, p, perm, policy=paint)
    return pt


def stage2_memory(mem: HostMemory, g: geom.Geometry, leaf: str = "block",
                  text_bytes: int = 0, text_aligned: bool = True,
                  max_levels: int = KVM_PGTABLE_MAX_LEVELS) -> dict[str, int]:
    """Host stage-2 table memory with one table set per node.

    Returns ``reserved_bytes`` (``nodes`` times ``host_s2_pgtable_pages()``),
    ``used_bytes`` (the tables of every node's set, counted from the tables built: node 0
    maps the text IPA range to itself, node ``n`` to its copy in its own RAM) and
    ``used_one_set_bytes``. With ``text_aligned`` the copies keep the original's offset
    modulo 1 GiB (so stage-2 blocks can map them); otherwise they are offset by one
    granule page, which forces page leaves on the text range.
    """
    check_int("text_bytes", text_bytes, lo=0)
    regions = mem.regions()
    reserved = mem.nodes * host_s2_reserved_pages([s for _b, s in regions], g,
                                                  max_levels) * g.page_bytes
    used = 0
    one = 0
    text_size = -(-text_bytes // g.page_bytes) * g.page_bytes
    text_ipa = regions[0][0] + 1 * GiB if text_size else 0
    for n in range(mem.nodes):
        text = None
        if text_size:
            base_n, size_n = regions[n]
            pa = base_n + 2 * GiB + (0 if text_aligned else g.page_bytes)
            if n == 0:
                pa = text_ipa
            if pa + text_size > base_n + size_n:
                raise ConfigError("node RAM too small to hold the text copy", "ram_bytes")
            text = (text_ipa, text_size, pa)
        b = host_stage2_table(mem, g, leaf, text).table_bytes()
        used += b
        if n == 0:
            one = b
    return {"reserved_bytes": reserved, "used_bytes": used, "used_one_set_bytes": one}


# ---- 2D walks --------------------------------------------------------------------------------
def walk_levels(g: geom.Geometry, leaf_bytes: int | None = None) -> int:
    """Descriptor reads of a 1D walk ending at a leaf of ``leaf_bytes`` (None: a page)."""
    if leaf_bytes is None or leaf_bytes == g.page_bytes:
        return g.walk_references(3)
    for lv in g.leaf_levels:
        if g.leaf_bytes(lv) == leaf_bytes:
            return g.walk_references(lv)
    raise ConfigError(f"{leaf_bytes} B is no leaf size of {g.name}", "leaf_bytes")


def nested_references(s1: geom.Geometry, s2: geom.Geometry, s1_leaf_bytes: int | None = None,
                      s2_leaf_bytes: int | None = None) -> int:
    """Memory references of an uncached 2D walk: ``n + (n + 1) m`` with ``n`` stage-1 and
    ``m`` stage-2 descriptor reads (Arm ARM D8.2; block leaves shorten either walk)."""
    n = walk_levels(s1, s1_leaf_bytes)
    m = walk_levels(s2, s2_leaf_bytes)
    return n + (n + 1) * m


# ---- giving up VHE (S4) ---------------------------------------------------------------------
def net_gain_with_exits(gain: float, exit_rate_per_s: float, extra_exit_ns: float) -> float:
    """Net throughput gain of stage-2 replication over the VHE baseline when every guest
    exit costs ``extra_exit_ns`` more without VHE.

    Per unit of work the baseline takes time 1 and replication ``1 / (1 + gain)``; the
    baseline's exits (``exit_rate_per_s`` per CPU-second of baseline work) each add
    ``extra_exit_ns``: ``net = 1 / (1 / (1 + gain) + rate * extra) - 1``.
    """
    if gain <= -1:
        raise ConfigError(f"gain must be > -1, got {gain}", "gain")
    t = 1.0 / (1.0 + gain) + exit_rate_per_s * extra_exit_ns * 1e-9
    return 1.0 / t - 1.0


def vhe_crossover_rate(gain: float, extra_exit_ns: float) -> float:
    """Exit rate (per CPU per second) at which :func:`net_gain_with_exits` reaches zero:
    ``gain / ((1 + gain) * extra)``; 0 when replication does not gain to begin with, and
    infinity when exits cost nothing extra."""
    if gain <= 0:
        return 0.0
    if extra_exit_ns <= 0:
        return float("inf")
    return gain / ((1.0 + gain) * extra_exit_ns * 1e-9)


# ---- the performance comparison (S1-S5) on the full path --------------------------------------
@dataclass(frozen=True)
class S2Leaf:
    """A stage-2 leaf configuration: ``leaf_bytes`` reached with painting policy ``leaf``
    capped at ``leaf_bytes``."""

    granule: str
    leaf_bytes: int
    leaf: str
    label: str


def stage2_leaf_options(granule: str, ipa_bits: int = 48) -> list[S2Leaf]:
    """Every stage-2 leaf size a granule allows, smallest first: the page, the contiguous
    range of pages, each block and the contiguous range of blocks (Arm ARM D8.6.1)."""
    g = geom.stage2(granule, ipa_bits)
    out = []
    for size in _leaf_sizes(g):
        level = next((lv for lv in g.leaf_levels if g.leaf_bytes(lv) == size), None)
        if level == 3:
            leaf, kind = "page", "page"
        elif level is not None:
            leaf, kind = "nocont", "block"
        else:
            is_pte_cont = size == g.cont_pte_bytes
            leaf, kind = ("cont", "cont pages") if is_pte_cont else ("block", "cont blocks")
        out.append(S2Leaf(granule, size, leaf, f"{granule} {kind} {_human(size)}"))
    return out


def _human(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"


def host_memory_for(m, ram_per_node_bytes: int = 256 * GiB) -> HostMemory:
    """The host memory map of a simulated machine (one RAM region per node)."""
    return HostMemory(ram_bytes=ram_per_node_bytes * m.nodes, nodes=m.nodes)


def stage2_setup(m, option: S2Leaf, *, text_aligned: bool = True, ipa_bits: int = 48,
                 ram_per_node_bytes: int = 256 * GiB):
    """Per-node host stage-2 tables for a simulated machine and the leaf lookup the full
    path needs (:class:`kmm.mech.ktr.Stage2Setup`).

    Node 0 maps the text/rodata IPA range to itself, node ``n`` to its copy at the same
    offset in its own RAM (``text_aligned``) or one granule page further, which leaves
    only page leaves to map it.
    """
    from . import ktr
    g2 = geom.stage2(option.granule, ipa_bits)
    mem = host_memory_for(m, ram_per_node_bytes)
    place = ktr.ImagePlacement()
    size = -(-m.image.replicated_bytes // g2.page_bytes) * g2.page_bytes
    # page and contiguous-page painting never exceeds the option's size: no cuts needed
    cap = option.leaf_bytes if option.leaf in ("nocont", "block") else None
    tables = {0: host_stage2_table(mem, g2, option.leaf, None, cap)}
    for n in range(1, m.nodes):
        base = mem.regions()[n][0]
        pa = base + place.pa_bytes + (0 if text_aligned else g2.page_bytes)
        tables[n] = host_stage2_table(mem, g2, option.leaf, (place.pa_bytes, size, pa), cap)
    probe = tables[0].translate(ktr.UDATA_PA)
    if probe is None:
        raise ConfigError("the simulated host layout lies outside the stage-2 RAM map",
                          "ram_per_node_bytes")

    def leaf(pa, node):
        _o, level, cont, _p, _n = tables[node].translate_many(
            np.asarray(pa).astype(np.int64))
        if (level < -1).any():
            raise ConfigError("an access falls outside the host stage-2 map", "pa")
        return level.astype(np.int8), cont.astype(bool)

    return ktr.Stage2Setup(geometry=g2, table_leaf_level=int(probe.level), leaf=leaf)


def decompose_loss(c_ktr, c_s2, latency_ns, policy, costs) -> dict[str, float]:
    """Stage-2 replication's loss against KTR on the same work, split into (a) more TLB
    misses from smaller combined entries (the extra walks, each at KTR's mean walk cost,
    plus the extra L2 TLB hits) and (b) longer walks (the rest: 2D references, stage-2
    tables, their cache pollution).

    Returns ``loss_ns``, ``a_ns``, ``b_ns`` and ``share_a`` = a / loss (NaN without a
    loss).
    """
    from . import ktr
    t_k = ktr.system_time_ns(c_ktr, latency_ns, ktr.Scheme.KTR, policy, costs)
    t_s = ktr.system_time_ns(c_s2, latency_ns, ktr.Scheme.STAGE2, policy, costs)
    src_k = ktr.source_times_ns(c_ktr, latency_ns, ktr.Scheme.KTR, policy, costs)
    src_s = ktr.source_times_ns(c_s2, latency_ns, ktr.Scheme.STAGE2, policy, costs)
    n = c_ktr.nodes
    per_walk = src_k["walk_ns"] / (n * c_ktr.walks) if c_ktr.walks else 0.0
    a = n * (c_s2.walks - c_ktr.walks) * per_walk + (src_s["tlb_hits_ns"] - src_k["tlb_hits_ns"])
    loss = t_s - t_k
    return {"loss_ns": loss, "a_ns": a, "b_ns": loss - a,
            "share_a": a / loss if loss > 0 else float("nan"),
            "ktr_ns": t_k, "stage2_ns": t_s}




def decompose_walks(c_ktr, c_s2, latency_ns, policy, costs) -> dict[str, float]:
    """Walk time of stage-2 replication against KTR, split symmetrically (the average of
    both orders) into (a) the change in the number of walks (TLB footprint: smaller combined
    entries) and (b) the change in the cost of a walk (2D references, stage-2 tables), plus
    the extra L2 TLB hits counted with (a); ``c_ns`` is the rest of the loss (the descriptor
    lines' pollution of caches). ``share_a`` = a / (a + b)."""
    from . import ktr
    n = c_ktr.nodes
    t_k = ktr.system_time_ns(c_ktr, latency_ns, ktr.Scheme.KTR, policy, costs)
    t_s = ktr.system_time_ns(c_s2, latency_ns, ktr.Scheme.STAGE2, policy, costs)
    sk = ktr.source_times_ns(c_ktr, latency_ns, ktr.Scheme.KTR, policy, costs)
    ss = ktr.source_times_ns(c_s2, latency_ns, ktr.Scheme.STAGE2, policy, costs)
    wk, ws = n * c_ktr.walks, n * c_s2.walks
    ck = sk["walk_ns"] / wk if wk else 0.0
    cs = ss["walk_ns"] / ws if ws else 0.0
    a = (ws - wk) * (ck + cs) / 2 + (ss["tlb_hits_ns"] - sk["tlb_hits_ns"])
    b = (cs - ck) * (wk + ws) / 2
    loss = t_s - t_k
    tot = a + b
    return {"loss_ns": loss, "a_ns": a, "b_ns": b, "c_ns": loss - a - b,
            "share_a": a / tot if tot > 0 else float("nan"), "ktr_ns": t_k, "stage2_ns": t_s,
            "walk_ns_ktr": sk["walk_ns"], "walk_ns_stage2": ss["walk_ns"]}


NOTEBOOK_KEYS = (
    "seed", "seeds", "workload", "workloads", "remote_ratio", "ratio_range", "local_ns", "cpu_ghz",
    "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles", "stall_ifetch", "stall_data",
    "stall_walk", "stall_walk_range", "stall_ifetch_range", "llc_bytes", "migration",
    "cpus_per_node", "accesses_per_cpu", "warmup_per_cpu", "baseline_user_policy",
    "text_bytes", "rodata_bytes", "s2_granules", "s1_granule", "ipa_bits", "debate_leaf",
    "pkvm_leaf", "text_aligned", "exit_rates", "nvhe_exit_extra_ns", "nvhe_exit_extra_range",
    "el2_exits_per_kinstr", "el2_exit_sweep", "hyp_text_bytes", "s6_nodes",
    "s6_ram_per_node_bytes", "s6_granules")


def params_from(ns: dict) -> dict:
    """The notebook's parameters (the names of :data:`NOTEBOOK_KEYS` found in ``ns``)."""
    from . import ktr
    missing = [k for k in NOTEBOOK_KEYS if k not in ns]
    if missing:
        raise ConfigError(f"the parameters cell lacks {', '.join(missing)}", "notebook")
    p = {k: ns[k] for k in NOTEBOOK_KEYS}
    if p["workload"] not in ktr.WORKLOADS:
        raise ConfigError(f"workloads are {', '.join(ktr.WORKLOADS)}", "workload")
    labels = [o.label for g in p["s2_granules"] for o in stage2_leaf_options(g, p["ipa_bits"])]
    for k in ("debate_leaf", "pkvm_leaf"):
        if p[k] not in labels:
            raise ConfigError(f"must be one of {', '.join(labels)}", k)
    return p


def _ktr_params(p: dict) -> dict:
    keys = ("local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles",
            "stall_ifetch", "stall_data", "stall_walk")
    return {k: p[k] for k in keys}


def _costs(p: dict, **over):
    from . import ktr
    return ktr.HostCosts(**{k: float(over.get(k, v)) for k, v in _ktr_params(p).items()})


def _machine(p: dict):
    from . import ktr
    return ktr.Machine(nodes=2, cpus_per_node=p["cpus_per_node"], llc_bytes=p["llc_bytes"],
                       granule=p["s1_granule"], va_bits=48,
                       image=ktr.KernelImage(text_bytes=p["text_bytes"],
                                             rodata_bytes=p["rodata_bytes"]))


def _run(p: dict, exits: float = 0.0):
    from . import ktr
    return ktr.RunConfig(accesses_per_cpu=p["accesses_per_cpu"],
                         warmup_per_cpu=p["warmup_per_cpu"], migration=p["migration"],
                         exits_per_kinstr=exits, hyp_text_bytes=p["hyp_text_bytes"],
                         seed=p["seed"])


def options_of(p: dict) -> list[S2Leaf]:
    return [o for g in p["s2_granules"] for o in stage2_leaf_options(g, p["ipa_bits"])]


def simulate_all(p: dict) -> dict:
    """Stage-1 runs (baseline and KTR from one run) and stage-2 runs, each pooled over
    ``seeds``: every leaf option on
    the main workload, the debated and pKVM configurations on every workload, and the pKVM
    configuration with exits to EL2 at each swept rate. Keys ``("s1", workload)``,
    ``("s2", workload, label)``, ``("el2", exits_per_kinstr)``."""
    from . import ktr
    m = _machine(p)
    runs = {}
    opts = {o.label: o for o in options_of(p)}
    seeds = p["seeds"]
    for w in p["workloads"]:
        runs[("s1", w)] = ktr.simulate_seeds(ktr.WORKLOADS[w], m, _run(p), seeds)
        labels = list(opts) if w == p["workload"] else [p["debate_leaf"], p["pkvm_leaf"]]
        for lab in labels:
            s2 = stage2_setup(m, opts[lab], text_aligned=p["text_aligned"], ipa_bits=p["ipa_bits"])
            runs[("s2", w, lab)] = ktr.simulate_seeds(ktr.WORKLOADS[w], m, _run(p), seeds,
                                                      stage2=s2)
    s2 = stage2_setup(m, opts[p["pkvm_leaf"]], text_aligned=p["text_aligned"],
                      ipa_bits=p["ipa_bits"])
    for rate in sorted({p["el2_exits_per_kinstr"], *p["el2_exit_sweep"]}):
        runs[("el2", rate)] = ktr.simulate_seeds(ktr.WORKLOADS[p["workload"]], m,
                                                 _run(p, rate), seeds, stage2=s2)
    return runs


def _lat(p: dict, ratio: float | None = None):
    from .. import numa
    return np.asarray(numa.generic(2, p["local_ns"], p["remote_ratio"] if ratio is None
                                   else ratio).latency_ns)


def _policy(p: dict):
    from . import ktr
    return {"local": ktr.UserPolicy.LOCAL, "interleave": ktr.UserPolicy.INTERLEAVE,
            "remote": ktr.UserPolicy.REMOTE, "node0": ktr.UserPolicy.NODE0}[
        p["baseline_user_policy"]]


def _walk_leaf_bytes(g: geom.Geometry, leaf_bytes: int) -> int | None:
    """The leaf a walk ends at for a leaf (or contiguous range) of ``leaf_bytes``: the
    block it is, or a range of; None for pages and ranges of pages."""
    for lv in g.leaf_levels:
        if lv < 3 and leaf_bytes in (g.leaf_bytes(lv), g.cont_bytes(lv)):
            return g.leaf_bytes(lv)
    return None


def comparison_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Per stage-2 leaf option on the main workload: walks, references per walk against the
    uncached bound ``n + (n+1) m``, walk time, loss against KTR and its decomposition, and
    the gain over the baseline."""
    import polars as pl
    from . import ktr
    pol = _policy(p)
    costs = _costs(p)
    lat = _lat(p)
    w = p["workload"]
    ck = runs[("s1", w)]
    t_base = ktr.system_time_ns(ck, lat, ktr.Scheme.BASELINE, pol, costs)
    g1 = geom.arm64(p["s1_granule"], 48)
    rows = []
    for o in options_of(p):
        cs = runs[("s2", w, o.label)]
        g2 = geom.stage2(o.granule, p["ipa_bits"])
        d = decompose_walks(ck, cs, lat, pol, costs)
        block = _walk_leaf_bytes(g2, o.leaf_bytes)
        rows.append({"label": o.label, "granule": o.granule, "leaf_bytes": o.leaf_bytes,
                     "walks_pki": 1000 * cs.walks / cs.instructions,
                     "refs_per_walk": cs.walk_refs / cs.walks if cs.walks else 0.0,
                     "bound_refs": nested_references(g1, g2, None, block),
                     "s1_levels": g1.levels, "s2_levels": g2.levels,
                     "walk_ns_pki": 1000 * d["walk_ns_stage2"] / (ck.nodes * cs.instructions),
                     "loss_vs_ktr": d["loss_ns"] / d["ktr_ns"], "a_ns": d["a_ns"],
                     "b_ns": d["b_ns"], "c_ns": d["c_ns"], "share_a": d["share_a"],
                     "gain_vs_baseline": t_base / d["stage2_ns"] - 1.0})
    ktr_walk = ktr.source_times_ns(ck, lat, ktr.Scheme.KTR, pol, costs)["walk_ns"]
    rows.append({"label": "KTR (stage 1 only)", "granule": p["s1_granule"], "leaf_bytes": 0,
                 "walks_pki": 1000 * ck.walks / ck.instructions,
                 "refs_per_walk": ck.walk_refs / ck.walks if ck.walks else 0.0,
                 "bound_refs": g1.levels, "s1_levels": g1.levels, "s2_levels": 0,
                 "walk_ns_pki": 1000 * ktr_walk / (ck.nodes * ck.instructions),
                 "loss_vs_ktr": 0.0, "a_ns": 0.0, "b_ns": 0.0, "c_ns": 0.0,
                 "share_a": float("nan"),
                 "gain_vs_baseline": t_base / ktr.system_time_ns(ck, lat, ktr.Scheme.KTR, pol,
                                                                 costs) - 1.0})
    return pl.DataFrame(rows)


def schemes_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Throughput relative to the baseline of KTR and of stage-2 replication (debated and
    pKVM leaf configurations) for every workload, against the ratio."""
    import polars as pl
    from . import ktr
    pol = _policy(p)
    costs = _costs(p)
    rows = []
    for w in p["workloads"]:
        ck = runs[("s1", w)]
        for r in sorted({1.0, p["remote_ratio"], *p["ratio_range"]}):
            lat = _lat(p, r)
            tb = ktr.system_time_ns(ck, lat, ktr.Scheme.BASELINE, pol, costs)
            rows.append({"workload": w, "ratio": r, "scheme": "KTR",
                         "gain": tb / ktr.system_time_ns(ck, lat, ktr.Scheme.KTR, pol, costs) - 1})
            for lab in (p["debate_leaf"], p["pkvm_leaf"]):
                ts = ktr.system_time_ns(runs[("s2", w, lab)], lat, ktr.Scheme.STAGE2, pol, costs)
                rows.append({"workload": w, "ratio": r, "scheme": f"stage 2, {lab}",
                             "gain": tb / ts - 1})
    return pl.DataFrame(rows)


def stage2_gain(p: dict, runs: dict, ratio: float | None = None, **cost_over) -> float:
    """Gain of stage-2 replication in the pKVM configuration over the VHE baseline, no
    exits."""
    from . import ktr
    pol = _policy(p)
    costs = _costs(p, **cost_over)
    lat = _lat(p, ratio)
    w = p["workload"]
    tb = ktr.system_time_ns(runs[("s1", w)], lat, ktr.Scheme.BASELINE, pol, costs)
    ts = ktr.system_time_ns(runs[("s2", w, p["pkvm_leaf"])], lat, ktr.Scheme.STAGE2, pol, costs)
    return tb / ts - 1.0


def exit_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Net gain of stage-2 replication against the VM exit rate per CPU, for the assumed
    range of the extra cost of an exit without VHE."""
    import polars as pl
    g = stage2_gain(p, runs)
    rows = []
    lo, hi = p["nvhe_exit_extra_range"]
    for extra in sorted({lo, p["nvhe_exit_extra_ns"], hi}):
        for rate in p["exit_rates"]:
            rows.append({"exit_rate": float(rate), "extra_ns": float(extra),
                         "net_gain": net_gain_with_exits(g, rate, extra)})
    return pl.DataFrame(rows)


def s4_sweep(p: dict, runs: dict) -> list[dict]:
    """Crossover exit rate over the joint sweep of the assumed per-exit cost, walk stall
    share and the ratio range."""
    out = []
    lo, hi = p["nvhe_exit_extra_range"]
    for extra in sorted({lo, p["nvhe_exit_extra_ns"], hi}):
        for sw in sorted({*p["stall_walk_range"], p["stall_walk"]}):
            for r in sorted({*p["ratio_range"], p["remote_ratio"]}):
                g = stage2_gain(p, runs, r, stall_walk=sw)
                out.append({"params": {"nvhe_exit_extra_ns": float(extra), "stall_walk": sw,
                                       "remote_ratio": float(r)},
                            "value": vhe_crossover_rate(g, extra)})
    return out


def el2_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Per node and exit rate: memory time of hypervisor text fetches per exit (EL2 has no
    stage 2: one copy, on node 0), from the runs with exits."""
    import polars as pl
    from . import ktr
    pol = _policy(p)
    rows = []
    for key, c in runs.items():
        if not (isinstance(key, tuple) and key[0] == "el2"):
            continue
        ns = ktr.class_memory_ns(c, _lat(p), c.classes.HYP, ktr.Scheme.STAGE2, pol, _costs(p))
        exits = max(c.exits, 1)
        reads = float(c.mem[0, c.sim_node, c.classes.HYP]) / exits
        for node in range(c.nodes):
            rows.append({"exits_per_kinstr": float(key[1]), "node": node,
                         "ns_per_exit": float(ns[node]) / exits, "exits": c.exits,
                         "hyp_mem_reads_per_exit": reads})
    return pl.DataFrame(rows).sort(["exits_per_kinstr", "node"])


def memory_frame(p: dict) -> "pl.DataFrame":
    """S6: host stage-2 table bytes per node set, reserved (pKVM's worst case) and used,
    per node count, granule and leaf policy, with per-node copies of the text range."""
    import polars as pl
    rows = []
    for gran in p["s6_granules"]:
        g = geom.stage2(gran, p["ipa_bits"])
        for n in p["s6_nodes"]:
            mem = HostMemory(ram_bytes=p["s6_ram_per_node_bytes"] * n, nodes=n)
            for leaf in ("page", "block"):
                r = stage2_memory(mem, g, leaf, text_bytes=p["text_bytes"] + p["rodata_bytes"],
                                  text_aligned=p["text_aligned"])
                rows.append({"granule": gran, "nodes": n, "leaf": leaf,
                             "ram_bytes": mem.ram_bytes, **r})
    return pl.DataFrame(rows)


def claim_values(p: dict, runs: dict, comp, exits, el2, mem) -> dict[str, dict]:
    """Values, units, sweeps and explanations of S1-S6 at these parameters."""
    from . import ktr
    out = {}
    deb = comp.filter(comp["label"] == p["debate_leaf"]).row(0, named=True)
    s2rows = comp.filter(comp["leaf_bytes"] > 0).sort("leaf_bytes")
    a_dom = [r["label"] for r in s2rows.iter_rows(named=True)
             if r["share_a"] == r["share_a"] and r["share_a"] > 0.5]
    b_dom = [r["label"] for r in s2rows.iter_rows(named=True)
             if r["share_a"] == r["share_a"] and r["share_a"] <= 0.5]
    sweep = []
    ck = runs[("s1", p["workload"])]
    cs = runs[("s2", p["workload"], p["debate_leaf"])]
    pol = _policy(p)
    for sw in sorted({*p["stall_walk_range"], p["stall_walk"]}):
        for si in sorted({*p["stall_ifetch_range"], p["stall_ifetch"]}):
            for r in sorted({*p["ratio_range"], p["remote_ratio"]}):
                d = decompose_walks(ck, cs, _lat(p, r), pol, _costs(p, stall_walk=sw,
                                                                    stall_ifetch=si))
                sweep.append({"params": {"stall_walk": sw, "stall_ifetch": si,
                                         "remote_ratio": float(r)}, "value": d["share_a"]})
    common = (f"With {p['debate_leaf']} stage-2 leaves the loss against KTR is "
              f"{deb['loss_vs_ktr']:+.1%} of KTR's time, of which more walks (TLB footprint) "
              f"are a share of {deb['share_a']:.2f} and longer walks the rest "
              f"({deb['refs_per_walk']:.2f} references per walk against a bound of "
              f"{deb['bound_refs']}); footprint dominates at "
              f"{', '.join(a_dom) if a_dom else 'no size'} and walk length at "
              f"{', '.join(b_dom) if b_dom else 'no size'}.")
    out["S1"] = {"value": deb["share_a"], "unit": "", "sweep": sweep, "decided_by": None,
                 "explanation": common}
    out["S2"] = {"value": deb["share_a"], "unit": "", "sweep": sweep, "decided_by": None,
                 "explanation": common}
    g4 = comp.filter((comp["granule"] == p["s2_granules"][0]) & (comp["leaf_bytes"] > 0)
                     ).sort("leaf_bytes")
    wl = g4["walk_ns_pki"].to_list()
    out["S3"] = {"value": {"leaf_bytes": g4["leaf_bytes"].to_list(), "walk_ns": wl},
                 "unit": "ns per 1000 instructions", "sweep": [], "decided_by": None,
                 "explanation": (
                     f"With the {p['s2_granules'][0]} stage-2 granule the walk time falls from "
                     f"{wl[0]:.0f} to {wl[-1]:.0f} ns per 1000 instructions as the leaf grows "
                     f"from {g4['label'][0]} to {g4['label'][-1]}: a larger stage-2 leaf ends "
                     f"the nested walks earlier and lets the combined TLB entries keep the "
                     f"stage-1 size; a range that is not a multiple of the block (the text "
                     f"copy) keeps page leaves.")}
    g = stage2_gain(p, runs)
    cross = vhe_crossover_rate(g, p["nvhe_exit_extra_ns"])
    s4 = s4_sweep(p, runs)
    cv = [x["value"] for x in s4]
    out["S4"] = {"value": cross, "unit": "exits/s", "sweep": s4,
                 "decided_by": ktr.most_influential(s4),
                 "explanation": (
                     f"Stage-2 replication with {p['pkvm_leaf']} leaves gains {g:+.1%} over the "
                     f"VHE baseline without exits; at {p['nvhe_exit_extra_ns']:g} ns more per "
                     f"exit without VHE the net gain reaches zero at {cross:.3g} exits per "
                     f"second per CPU ({min(cv):.3g} to {max(cv):.3g} over the assumed "
                     f"per-exit cost, walk stall share and ratio range).")}
    main = el2.filter(el2["exits_per_kinstr"] == float(p["el2_exits_per_kinstr"])).sort("node")
    nodes = main["node"].to_list()
    ns = main["ns_per_exit"].to_list()
    others = el2.filter(el2["node"] == max(nodes)).sort("exits_per_kinstr")
    spread = ", ".join(f"{r['ns_per_exit']:.0f} ns at {r['exits_per_kinstr']:g}"
                       for r in others.iter_rows(named=True))
    out["S5"] = {"value": {"node": nodes, "ns": ns}, "unit": "ns per exit", "sweep": [],
                 "decided_by": None,
                 "explanation": (
                     f"EL2 text has one copy, on node 0: at {p['el2_exits_per_kinstr']:g} exits "
                     f"per 1000 instructions {main['hyp_mem_reads_per_exit'][0]:.2g} of its "
                     f"lines per exit come from memory, costing {ns[0]:.0f} ns on node 0 and "
                     f"{max(ns):.0f} ns on the remote node (remote node: {spread} exits per "
                     f"1000 instructions): between exits its {p['hyp_text_bytes'] // 1024} KiB "
                     f"stay in the L2 and LLC, whose pressure from the node's other cores the "
                     f"model carries only as a smaller LLC.")}
    b = mem.filter((mem["granule"] == p["s6_granules"][0]) & (mem["leaf"] == "block")
                   ).sort("nodes")
    rb = b["reserved_bytes"].to_list()
    ub = b["used_bytes"].to_list()
    ram = b["ram_bytes"].to_list()
    out["S6"] = {"value": {"nodes": b["nodes"].to_list(), "reserved_bytes": rb},
                 "unit": "bytes", "sweep": [], "decided_by": None,
                 "explanation": (
                     f"pKVM reserves stage-2 tables for every host page at page granularity "
                     f"(host_s2_pgtable_pages) and every node's set covers all of it, so with "
                     f"{p['s6_ram_per_node_bytes'] / 2**30:.0f} GiB per node the reservation "
                     f"grows from {rb[0] / 2**20:.0f} MiB on {b['nodes'][0]} node to "
                     f"{rb[-1] / 2**20:.0f} MiB on {b['nodes'][-1]} ({rb[-1] / ram[-1]:.2%} of "
                     f"RAM), while the block-mapped sets actually use {ub[-1] / 2**20:.2f} MiB.")}
    return out


def results_frame(p: dict, scenario: str, comp, schemes, exits, el2, mem) -> "pl.DataFrame":
    """The notebook's tidy frame (:mod:`kmm.results`)."""
    from .. import results
    seed = p["seed"]
    rows = []
    for r in comp.iter_rows(named=True):
        rows += results.rows_for(scenario, {"stage2": r["label"], "leaf_bytes": r["leaf_bytes"]},
                                 seed, {k: (float(r[k]), u) for k, u in (
                                     ("walks_pki", "per 1000 instructions"),
                                     ("refs_per_walk", "count"), ("bound_refs", "count"),
                                     ("walk_ns_pki", "ns per 1000 instructions"),
                                     ("loss_vs_ktr", "fraction"), ("a_ns", "ns"),
                                     ("b_ns", "ns"), ("c_ns", "ns"),
                                     ("gain_vs_baseline", "fraction"))
                                     if r[k] == r[k]})
    for r in schemes.iter_rows(named=True):
        rows += results.rows_for(scenario, {"workload": r["workload"], "scheme": r["scheme"],
                                            "latency_ratio": r["ratio"]}, seed,
                                 {"gain": (r["gain"], "fraction")})
    for r in exits.iter_rows(named=True):
        rows += results.rows_for(scenario, {"exit_rate": r["exit_rate"],
                                            "nvhe_exit_extra_ns": r["extra_ns"]}, seed,
                                 {"net_gain": (r["net_gain"], "fraction")})
    for r in el2.iter_rows(named=True):
        rows += results.rows_for(scenario, {"node": r["node"],
                                            "exits_per_kinstr": r["exits_per_kinstr"]}, seed,
                                 {"el2_ns_per_exit": (r["ns_per_exit"], "ns")})
    for r in mem.iter_rows(named=True):
        rows += results.rows_for(scenario, {"granule": r["granule"], "nodes": r["nodes"],
                                            "leaf": r["leaf"]}, seed,
                                 {"reserved_bytes": (r["reserved_bytes"], "bytes"),
                                  "used_bytes": (r["used_bytes"], "bytes")})
    return results.frame(rows)


__all__ = ["S2Leaf", "stage2_leaf_options", "host_memory_for", "stage2_setup",
           "decompose_walks", "params_from", "simulate_all",
           "comparison_frame", "schemes_frame", "stage2_gain", "exit_frame", "s4_sweep",
           "el2_frame", "memory_frame", "claim_values", "results_frame", "net_gain_with_exits", "vhe_crossover_rate", "hyp_pgtable_max_pages", "host_s2_reserved_pages", "HostMemory",
           "host_stage2_table", "stage2_memory", "walk_levels", "nested_references",
           "KVM_PGTABLE_MAX_LEVELS"]
