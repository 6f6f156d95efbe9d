"""arm64 kernel text replication (KTR): per-node copies of kernel text and rodata.

The design modelled is the "arm64 kernel text replication" RFC (2023): the kernel image is
placed in a VA range covered by one top-level (level 0 with 4K/48-bit) kernel table entry
that no other mapping shares; every node gets its own top-level kernel table whose entry for
that range points to node-local lower tables mapping a node-local copy of text and rodata,
while read-write data (and every other top-level entry) stays shared. A CPU translates the
same kernel VA through its node's top-level table, so a migrated thread keeps its VA and
fetches from the new node's copy.

This module holds the exact parts of the model:

- memory (claim K5): bytes of the copies plus the per-node tables, counted from page tables
  built with :mod:`kmm.pagetable` (``PageTable.replicate``) and, independently, by window
  arithmetic on the image layout (:func:`replication_bytes_formula`);
- text patching (claim K4): ``aarch64_insn_patch_text_nosync`` writes each instruction
  through the ``FIX_TEXT_POKE0`` fixmap slot and cleans/invalidates it to the point of
  unification (arch/arm64/kernel/patching.c); with replication every copy gets the write
  and the cache maintenance; ``aarch64_insn_patch_text`` does it inside ``stop_machine``
  so every online CPU waits for the whole patch.

Sources
-------
- Kernel image size: ``size`` of an arm64 defconfig vmlinux built with clang, LKML
  2021-02 (Arnd Bergmann, "arm64: enable HAVE_LD_DEAD_CODE_DATA_ELIMINATION"): text
  16,570,322 B, data 10,998,617 B, bss 506,468 B. arm64 links ``.rodata`` as a writable
  output section (it holds ``.data..ro_after_init``), so ``size`` counts it under *data*;
  the text/rodata split of that build is not published and rodata is an ``assumed``
  parameter (:class:`KernelImage`).
- Segment alignment: arch/arm64/kernel/vmlinux.lds.S ``SEGMENT_ALIGN`` (64 KiB); segments
  mapped separately by arch/arm64/mm/mmu.c ``map_kernel_segment`` with blocks and
  contiguous ranges where aligned.
- Top-level table smaller than a page: arch/arm64/mm/pgd.c ``pgd_alloc`` (a ``pgd_cache``
  object of ``PGD_SIZE`` when ``PGD_SIZE < PAGE_SIZE``).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .. import geometry as geom
from ..config import check_float, check_int
from ..errors import ConfigError
from ..numa import Topology
from ..pagetable import PageTable, Perm, Replicated

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

SEGMENT_ALIGN_BYTES = 64 * KiB

# `size` columns of the arm64 defconfig vmlinux (clang) quoted in the module docstring.
DEFCONFIG_SIZE_TEXT_BYTES = 16_570_322
DEFCONFIG_SIZE_DATA_BYTES = 10_998_617
DEFCONFIG_SIZE_BSS_BYTES = 506_468


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


@dataclass(frozen=True)
class KernelImage:
    """Sizes of the kernel image segments that matter to replication.

    Parameters
    ----------
    text_bytes : executable text (replicated). Default: the ``size`` *text* column of the
        arm64 defconfig vmlinux (module docstring), which also holds the small read-only
        non-writable sections (``__ksymtab``, ``__bug_table``...).
    rodata_bytes : ``.rodata`` (replicated). ``assumed``: it is part of the ``size`` *data*
        column, whose split is not published.
    rw_bytes : read-write data and bss (shared, but mapped by the per-node subtree).
        Default: the *data* column minus ``rodata_bytes`` plus *bss*.
    """

    text_bytes: int = DEFCONFIG_SIZE_TEXT_BYTES
    rodata_bytes: int = 6 * MiB
    rw_bytes: int | None = None

    def __post_init__(self):
        check_int("text_bytes", self.text_bytes, lo=1)
        check_int("rodata_bytes", self.rodata_bytes, lo=0, hi=DEFCONFIG_SIZE_DATA_BYTES
                  if self.rw_bytes is None else None)
        if self.rw_bytes is None:
            object.__setattr__(self, "rw_bytes", DEFCONFIG_SIZE_DATA_BYTES - self.rodata_bytes
                               + DEFCONFIG_SIZE_BSS_BYTES)
        check_int("rw_bytes", self.rw_bytes, lo=0)

    def segments(self) -> list[tuple[int, int, int, bool]]:
        """``(offset, size, perm, replicated)`` of text (RX), rodata (R) and rw data (RW),
        each rounded up to ``SEGMENT_ALIGN`` and laid out back to back from the image base."""
        out = []
        off = 0
        for size, perm, rep in ((self.text_bytes, Perm.RX, True),
                                (self.rodata_bytes, Perm.R, True),
                                (self.rw_bytes, Perm.RW, False)):
            size = _round_up(size, SEGMENT_ALIGN_BYTES)
            if size:
                out.append((off, size, int(perm), rep))
            off += size
        return out

    @property
    def replicated_bytes(self) -> int:
        """Bytes of one copy: text and rodata, segment aligned."""
        return sum(s for _, s, _, rep in self.segments() if rep)


@dataclass(frozen=True)
class ImagePlacement:
    """Where the image sits: its VA (the start of top-level entry ``top_index``) and PA.

    ``pa_bytes`` is 1 GiB aligned by default so that the VA-PA offset allows every block
    size; ``node_span_bytes`` separates the node-local copies (copy ``n`` at
    ``pa_bytes + n * node_span_bytes``, which keeps the alignment).
    """

    top_index: int = 1
    pa_bytes: int = 1 * GiB
    node_span_bytes: int = 64 * GiB

    def __post_init__(self):
        check_int("top_index", self.top_index, lo=0)
        check_int("pa_bytes", self.pa_bytes, lo=0)
        check_int("node_span_bytes", self.node_span_bytes, lo=GiB)
        if self.node_span_bytes % GiB or self.pa_bytes % (2 * MiB):
            raise ConfigError("node_span_bytes must be GiB aligned and pa_bytes 2 MiB aligned",
                              "pa_bytes")

    def image_va(self, g: geom.Geometry) -> int:
        va = self.top_index * g.entry_bytes(g.start_level)
        if va >= 1 << g.va_bits:
            raise ConfigError(f"top-level entry {self.top_index} is outside {g.name}",
                              "top_index")
        return va


def build_kernel_tables(image: KernelImage, g: geom.Geometry, nodes: int,
                        placement: ImagePlacement = ImagePlacement()
                        ) -> tuple[PageTable, Replicated | None]:
    """Kernel image mapping (``map_kernel``) and, for ``nodes > 1``, its per-node copies.

    Node 0 keeps ``swapper_pg_dir`` and the boot copy; nodes 1..nodes-1 each get a top-level
    table and a copy of the image subtree (``PageTable.replicate``).
    """
    check_int("nodes", nodes, lo=1, hi=64)
    pt = PageTable(g)
    va0 = placement.image_va(g)
    end = va0
    for off, size, perm, _rep in image.segments():
        pt.map(va0 + off, size, placement.pa_bytes + off, perm)
        end = va0 + off + size
    if end > va0 + g.entry_bytes(g.start_level):
        raise ConfigError(f"the image ({end - va0} B) does not fit in one top-level entry of "
                          f"{g.name}", "image")
    if nodes == 1:
        return pt, None
    copies = {n: placement.pa_bytes + n * placement.node_span_bytes for n in range(1, nodes)}
    return pt, pt.replicate(va0, image.replicated_bytes, copies)


def replication_bytes_model(image: KernelImage, g: geom.Geometry, nodes: int,
                            placement: ImagePlacement = ImagePlacement()) -> dict[str, int]:
    """Memory replication adds, counted from the tables built (:func:`build_kernel_tables`).

    Returns ``copy_bytes`` (text+rodata copies), ``table_bytes`` (per-node top-level tables,
    possibly smaller than a page, plus their lower tables) and ``total_bytes``.
    """
    _pt, rep = build_kernel_tables(image, g, nodes, placement)
    if rep is None:
        return {"copy_bytes": 0, "table_bytes": 0, "total_bytes": 0}
    c, t = rep.extra_copy_bytes(), rep.extra_table_bytes()
    return {"copy_bytes": c, "table_bytes": t, "total_bytes": c + t}


def image_subtree_tables(image: KernelImage, g: geom.Geometry,
                         placement: ImagePlacement = ImagePlacement()) -> dict[int, int]:
    """Lower tables (per level below the top) of the image's top-level entry, by arithmetic.

    A table at level ``L`` exists for every ``entry_bytes(L - 1)`` window the image touches
    unless a block leaf of a level ``< L`` covers that window; a block of level ``b`` is
    painted where its aligned window lies inside one segment and the VA-PA offset is a
    multiple of its size (arch/arm64/mm/mmu.c ``init_pmd``/``alloc_init_pud``:
    ``(addr | next | phys) & ~SECT_MASK) == 0``).
    """
    va0 = placement.image_va(g)
    delta = placement.pa_bytes - va0
    segs = [(va0 + off, va0 + off + size) for off, size, _p, _r in image.segments()]
    blocks = sorted(lv for lv in g.block_bytes if delta % g.block_bytes[lv] == 0)

    def covered_by_block(w_lo: int, level: int) -> bool:
        for b in blocks:
            if b >= level:
                continue
            size = g.entry_bytes(b)
            lo = w_lo // size * size
            if any(s <= lo and lo + size <= e for s, e in segs):
                return True
        return False

    out = {}
    for level in range(g.start_level + 1, 4):
        span = g.entry_bytes(level - 1)
        windows = set()
        for s, e in segs:
            windows.update(range(s // span, (e - 1) // span + 1))
        out[level] = sum(1 for w in windows if not covered_by_block(w * span, level))
    return out


def replication_bytes_formula(image: KernelImage, g: geom.Geometry, nodes: int,
                              placement: ImagePlacement = ImagePlacement()) -> dict[str, int]:
    """Closed form of :func:`replication_bytes_model`: per extra node one text+rodata copy,
    one top-level table of ``PTRS_PER_PGD`` descriptors and the image subtree's tables."""
    check_int("nodes", nodes, lo=1, hi=64)
    extra = nodes - 1
    lower = sum(image_subtree_tables(image, g, placement).values())
    copy = extra * image.replicated_bytes
    table = extra * (g.top_table_bytes + lower * g.page_bytes)
    return {"copy_bytes": copy, "table_bytes": table, "total_bytes": copy + table}


# ---- text patching (K4) --------------------------------------------------------------------
class PatchSync(IntEnum):
    """How a patch is made safe against concurrent execution.

    STOP_MACHINE : ``aarch64_insn_patch_text``: every online CPU spins in ``stop_machine``
        while the last one to arrive patches (arch/arm64/kernel/patching.c).
    NOSYNC : ``aarch64_insn_patch_text_nosync`` (alternatives at boot, patch sites that are
        safe to change live): only the patching CPU spends time, plus one IPI round to
        synchronise the other CPUs' instruction streams.
    """

    STOP_MACHINE = 0
    NOSYNC = 1


@dataclass(frozen=True)
class PatchCost:
    """Cost parameters of one text patch (all ``assumed`` unless stated).

    Parameters
    ----------
    sites : instructions written by one patch (one static key may own many sites)
    fixmap_ns : ``patch_map``/``patch_unmap`` of ``FIX_TEXT_POKE0`` for one write: the
        descriptor stores and the local TLBI+DSB of ``clear_fixmap``
    cmo_ns : ``caches_clean_inval_pou`` of one line: DC CVAU, DSB ISH, IC IVAU (broadcast to
        the inner shareable domain), DSB ISH, ISB
    sync_ns : fixed cost of the synchronisation: the ``stop_machine`` rendezvous, or the
        IPI round of a nosync patch
    sync : :class:`PatchSync`
    """

    sites: int = 1
    fixmap_ns: float = 300.0
    cmo_ns: float = 500.0
    sync_ns: float = 5000.0
    sync: PatchSync = PatchSync.STOP_MACHINE

    def __post_init__(self):
        check_int("sites", self.sites, lo=1)
        check_float("fixmap_ns", self.fixmap_ns, lo=0.0)
        check_float("cmo_ns", self.cmo_ns, lo=0.0)
        check_float("sync_ns", self.sync_ns, lo=0.0)
        object.__setattr__(self, "sync", PatchSync(self.sync))


def patch_window_ns(topo: Topology, copies: int, cost: PatchCost = PatchCost(),
                    patcher_nid: int = 0) -> float:
    """Time the patching CPU spends on one patch when the text has ``copies`` copies.

    Copy ``n`` lives on node ``n`` (copy 0 is the boot copy on node 0). Each site is written
    once per copy: fixmap map/unmap, a store that must first own the line (a read from the
    node holding the copy, ``latency_ns[patcher][n]``) and the clean/invalidate to PoU.
    """
    check_int("copies", copies, lo=1, hi=topo.nodes)
    check_int("patcher_nid", patcher_nid, lo=0, hi=topo.nodes - 1)
    lat = np.asarray(topo.latency_ns)
    per_site = sum(cost.fixmap_ns + lat[patcher_nid, n] + cost.cmo_ns for n in range(copies))
    return cost.sync_ns + cost.sites * per_site


def patch_machine_ns(topo: Topology, copies: int, cost: PatchCost = PatchCost(),
                     patcher_nid: int = 0) -> float:
    """CPU time the whole machine loses to one patch: every online CPU for the window under
    ``stop_machine``; the patching CPU's window plus one IPI handler per other CPU
    (``sync_ns`` each is charged once, to the patcher, as the IPI round) otherwise."""
    w = patch_window_ns(topo, copies, cost, patcher_nid)
    if cost.sync == PatchSync.STOP_MACHINE:
        return w * topo.cpus
    return w


def patch_overhead_fraction(topo: Topology, copies: int, rate_per_s: float,
                            cost: PatchCost = PatchCost(), patcher_nid: int = 0) -> float:
    """Fraction of the machine's CPU time spent patching at ``rate_per_s`` patches/s."""
    rate = check_float("rate_per_s", rate_per_s, lo=0.0)
    return rate * patch_machine_ns(topo, copies, cost, patcher_nid) / (topo.cpus * 1e9)


def break_even_patch_rate(topo: Topology, gain: float, cost: PatchCost = PatchCost(),
                          patcher_nid: int = 0) -> float:
    """Patches per second at which the extra patching work of ``topo.nodes`` copies (over
    one) cancels a replication throughput gain ``gain`` (0.05 = +5 %).

    With time per unit of work ``T`` without replication and ``T / (1 + gain)`` with it, the
    gain is cancelled when the added CPU fraction ``f`` satisfies
    ``1 / (1 + gain) / (1 - f) = 1``, i.e. ``f = gain / (1 + gain)``. Returns 0 when the
    gain is not positive and infinity when extra copies cost nothing.
    """
    if gain <= 0:
        return 0.0
    extra = (patch_machine_ns(topo, topo.nodes, cost, patcher_nid)
             - patch_machine_ns(topo, 1, cost, patcher_nid))
    if extra <= 0:
        return float("inf")
    f = gain / (1.0 + gain)
    return f * topo.cpus * 1e9 / extra


__all__ = ["KernelImage", "ImagePlacement", "build_kernel_tables", "replication_bytes_model",
           "replication_bytes_formula", "image_subtree_tables", "PatchSync", "PatchCost",
           "patch_window_ns", "patch_machine_ns", "patch_overhead_fraction",
           "break_even_patch_rate", "SEGMENT_ALIGN_BYTES"]
