"""The pKVM host stage-2 alternative to kernel text replication.

Proposed on the "arm64 kernel text replication" RFC thread (2023): boot the host in
protected KVM mode so that the host kernel runs under a stage-2 translation, give every NUMA
node its own host stage-2 tables that map the kernel text/rodata IPA range to a node-local
copy, leave stage 1 unchanged, and map text/rodata read-only at stage 2 so that writes trap
to EL2, which updates every copy. The critique on the same thread: VHE is given up (extra
cost on every guest entry/exit), EL2 code has no stage 2 and stays unreplicated, stage-2
table memory must be reserved for all host memory and I/O per node, and the cost is the 2D
walk rather than the TLB footprint.

This module holds the exact parts of the model:

- stage-2 table memory per node (claim S6): the worst case pKVM reserves
  (arch/arm64/include/asm/kvm_pkvm.h ``host_s2_pgtable_pages``: every memblock region at
  page granularity through ``KVM_PGTABLE_MAX_LEVELS`` levels, 16 pages for concatenated
  start-level tables, 1 GiB of MMIO) times the number of table sets, against the tables
  actually used by an identity map of host memory painted with :mod:`kmm.pagetable` over
  :func:`kmm.geometry.stage2` (``host_stage2_idmap`` maps the largest block that fits the
  memory region, arch/arm64/kvm/hyp/nvhe/mem_protect.c ``host_stage2_adjust_range``);
- 2D walk references (Arm ARM D8.2, two-stage translation): a stage-1 walk of ``n``
  descriptor reads, each descriptor address and the final IPA translated by a stage-2 walk
  of ``m`` reads: ``n + (n + 1) m``, with ``n`` and ``m`` shortened by block leaves.
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


__all__ = ["S2Leaf", "stage2_leaf_options", "host_memory_for", "stage2_setup",
           "decompose_loss", "net_gain_with_exits", "vhe_crossover_rate", "hyp_pgtable_max_pages", "host_s2_reserved_pages", "HostMemory",
           "host_stage2_table", "stage2_memory", "walk_levels", "nested_references",
           "KVM_PGTABLE_MAX_LEVELS"]
