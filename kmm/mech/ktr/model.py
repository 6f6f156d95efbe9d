"""ktr: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.ktr`."""
from __future__ import annotations

import numpy as np

from ... import engine as eng
from ...config import check_float, check_int
from ...engine import Topology
from ...errors import ConfigError
from ..host.model import (build_kernel_tables, ImagePlacement, KernelImage, ktr_table_node,
    patch_machine_ns, PATCH_PATHS, PatchCost, top_tables_per_node)

def replication_bytes_model(image: KernelImage, g: eng.Geometry, nodes: int,
                            placement: ImagePlacement = ImagePlacement(),
                            unmap_kernel_at_el0: bool = True,
                            ktr_tables: str = "rfc") -> dict[str, int]:
    """Memory replication adds, counted from the tables built (:func:`build_kernel_tables`).

    Every extra node gets the RFC's ``struct pgtables`` (:func:`top_tables_per_node`
    top-level tables of ``PTRS_PER_PGD`` descriptors: ``swapper_pg_dir``, whose copy
    :meth:`kmm.pagetable.PageTable.replicate` builds, ``reserved_pg_dir`` and, with
    ``unmap_kernel_at_el0``, ``tramp_pg_dir``) and the image subtree's lower tables.
    Returns ``copy_bytes`` (text+rodata copies), ``table_bytes`` (both),
    ``top_table_bytes`` (the top-level sets), ``total_bytes`` and ``lower_table_bytes_by_node``
    (where the lower tables live, :func:`ktr_table_node`).
    """
    _pt, rep = build_kernel_tables(image, g, nodes, placement)
    if rep is None:
        return {"copy_bytes": 0, "table_bytes": 0, "top_table_bytes": 0, "total_bytes": 0,
                "lower_table_bytes_by_node": {}}
    extra = nodes - 1
    # replicate() builds one top-level table per copy (the swapper copy); the rest of the set
    top = extra * top_tables_per_node(unmap_kernel_at_el0) * g.top_table_bytes
    lower = rep.extra_table_bytes() - extra * g.top_table_bytes
    by_node: dict[int, int] = {}
    for nid, sub in rep.nodes.items():
        where = ktr_table_node(nid, nodes, ktr_tables)
        by_node[where] = by_node.get(where, 0) + sub.table_bytes() - g.top_table_bytes
    c = rep.extra_copy_bytes()
    return {"copy_bytes": c, "table_bytes": top + lower, "top_table_bytes": top,
            "total_bytes": c + top + lower, "lower_table_bytes_by_node": by_node}


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
                              placement: ImagePlacement = ImagePlacement(),
                              unmap_kernel_at_el0: bool = True) -> dict[str, int]:
    """Closed form of :func:`replication_bytes_model`: per extra node one text+rodata copy,
    one ``struct pgtables`` (2 or 3 top-level tables of ``PTRS_PER_PGD`` descriptors) and
    the image subtree's tables."""
    check_int("nodes", nodes, lo=1, hi=64)
    extra = nodes - 1
    lower = sum(image_subtree_tables(image, g, placement).values())
    copy = extra * image.replicated_bytes
    top = extra * top_tables_per_node(unmap_kernel_at_el0) * g.top_table_bytes
    table = top + extra * lower * g.page_bytes
    return {"copy_bytes": copy, "table_bytes": table, "top_table_bytes": top,
            "total_bytes": copy + table}


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


#: Lines one store into another node's line moves: the read for ownership
#: (:func:`kmm.mech.host.model.patch_write_ns` prices its latency) and the eventual writeback
#: of the dirtied line to its node's memory.
LINES_PER_REMOTE_WRITE = 2


def write_lines_per_s(topo: Topology, copies: int, rates: dict, cost: PatchCost = PatchCost(),
                      pgd_updates_per_s: float = 0.0, patcher_nid: int = 0) -> np.ndarray:
    """Memory traffic of the writes that keep the copies equal, as lines per second moved
    into node ``i`` from node ``j`` (``[i, j]``; :class:`kmm.timing.Counts` ``extra_lines``
    once multiplied by a run's wall time).

    The writes are those the CPU-time charges count: each patch of every path of ``rates``
    (:func:`kmm.mech.host.model.patch_mix_fraction`) writes each of ``cost.sites``
    instructions into every copy through the fixmap (``text_poke``; copy ``n`` on node
    ``n``, the patching CPU on ``patcher_nid``); each top-level table update
    (:func:`kmm.mech.host.model.pgd_sync_fraction`) stores into the ``copies - 1`` extra
    tables from a CPU on any node with equal probability (``rate / nodes`` from each).
    Each store moves :data:`LINES_PER_REMOTE_WRITE` lines between the writer's node and the
    copy's. The one copy of a machine without replication (``copies`` = 1) is patched
    too; its top-level table update is in both schemes and is not counted.
    """
    n = topo.nodes
    check_int("copies", copies, lo=1, hi=n)
    check_int("patcher_nid", patcher_nid, lo=0, hi=n - 1)
    pgd = check_float("pgd_updates_per_s", pgd_updates_per_s, lo=0.0)
    for path, rate in rates.items():
        if path not in PATCH_PATHS:
            raise ConfigError(f"unknown patch path {path!r}; allowed: "
                                  f"{', '.join(PATCH_PATHS)}", "rates")
        check_float("rate_per_s", rate, lo=0.0)
    out = np.zeros((n, n))
    out[patcher_nid, :copies] += LINES_PER_REMOTE_WRITE * cost.sites * float(sum(rates.values()))
    out[:, 1:copies] += LINES_PER_REMOTE_WRITE * pgd / n
    return out
