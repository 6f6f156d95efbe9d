"""ktr: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.ktr`."""
from __future__ import annotations

from ... import engine as eng
from ...config import check_int
from ...engine import Topology
from ..host.model import (build_kernel_tables, ImagePlacement, KernelImage, patch_machine_ns,
    PatchCost)

def replication_bytes_model(image: KernelImage, g: eng.Geometry, nodes: int,
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


def image_subtree_tables(image: KernelImage, g: eng.Geometry,
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


def replication_bytes_formula(image: KernelImage, g: eng.Geometry, nodes: int,
                              placement: ImagePlacement = ImagePlacement()) -> dict[str, int]:
    """Closed form of :func:`replication_bytes_model`: per extra node one text+rodata copy,
    one top-level table of ``PTRS_PER_PGD`` descriptors and the image subtree's tables."""
    check_int("nodes", nodes, lo=1, hi=64)
    extra = nodes - 1
    lower = sum(image_subtree_tables(image, g, placement).values())
    copy = extra * image.replicated_bytes
    table = extra * (g.top_table_bytes + lower * g.page_bytes)
    return {"copy_bytes": copy, "table_bytes": table, "total_bytes": copy + table}


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
