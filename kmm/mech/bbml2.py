"""BBML2 block-mapped linear map: the structural half (page-table memory, split strategies,
repaint, break-before-make).

The "arm64: support FEAT_BBM level 2 and large block mapping when rodata=full" series
(Yang Shi, v3 of 2025-03-04, linux-arm-kernel) paints the arm64 linear map with blocks and
contiguous ranges even under
``rodata=full`` on CPUs whose TLBs tolerate a live change of leaf size (BBML2 without
conflict aborts, an allowlist of CPUs), and splits a leaf only where a permission change
needs a boundary. This module builds the linear map on the engine (:mod:`kmm.pagetable`)
and counts what the thread's structural claims are about:

- **B1/B2** page-table memory of the linear map painted at boot under each policy
  (:func:`boot_table_bytes`, :func:`saved_bytes`), over a stated memory map
  (:class:`MemoryMap`);
- **B9** a stream of permission changes shaped like a running kernel's
  (:func:`make_stream`, :func:`run_stream`), applied with boundary-only splits or with the
  series' v1 strategy (every leaf of the range split to PTEs first; modelled favourably to
  v1: leaves outside the range keep their size, as boundary splits leave them);
- **B10** the repaint to PTEs when a secondary CPU lacks BBML2: pages predicted from the
  PUD/PMD mappings created at boot vs pages the repaint builds (:func:`repaint`);
- **B11** a break-before-make concurrent-access model (:func:`bbm_window`).

How the linear map is painted (arch/arm64/mm/mmu.c ``map_mem``)
------------------------------------------------------------------
Every memblock region is mapped with ``NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS`` when
``can_set_direct_map()`` holds without BBML2 (rodata=full, :attr:`LinearMapPolicy.FULL_PTES`)
or when a feature forces PTEs (debug_pagealloc, realm guests: ``force_pte``), and with the
largest legal leaves otherwise; the linear alias of the kernel image ``[_text,
__init_begin)`` is mapped separately with ``NO_CONT_MAPPINGS`` only, under every policy; the
KFENCE pool with PTEs. The linear map's VA is ``PA - memstart`` with ``memstart`` the lowest
DRAM address rounded down to ``ARM64_MEMSTART_ALIGN`` (1 GiB for 4K and 16K, 512 MiB for
64K: arch/arm64/include/asm/kernel-pgtable.h), so VA and PA agree modulo every block size
the linear map can use. Tables are allocated from memblock at boot (``early_pgtable_alloc``):
they are *reserved* memory, absent from MemTotal; tables allocated later by splits come from
the page allocator and lower MemFree only.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .. import engine as eng
from ..config import check_float, check_int, check_pow2
from ..engine import (F_ATTR, F_SIZE, F_VA, OP_SET_PERM, GiB, KiB, MiB, PageTable, Paint, Perm,
                      PermSplit, PtEvent, attr_cont, attr_level, encode_ops, njit)
from ..errors import ConfigError

MEMSTART_ALIGN = {"4K": GiB, "16K": GiB, "64K": 512 * MiB}
VA_BITS = 48
STRUCT_PAGE_BYTES = 64  # sizeof(struct page) on arm64 (include/linux/mm_types.h layout)


class LinearMapPolicy(IntEnum):
    """How the linear map is painted and how a permission change prepares its range."""

    FULL_PTES = 0      # rodata=full without BBML2: PTEs only, changes need no split
    RODATA_ON = 1      # rodata=on: largest leaves; linear aliases are never changed
    FULL_BBML2 = 2     # rodata=full with BBML2: largest leaves, boundary-only splits
    FULL_BBML2_V1 = 3  # the series' v1: largest leaves, whole range split to PTEs first


POLICY_NAMES = {LinearMapPolicy.FULL_PTES: "rodata=full",
                LinearMapPolicy.RODATA_ON: "rodata=on",
                LinearMapPolicy.FULL_BBML2: "rodata=full+BBML2",
                LinearMapPolicy.FULL_BBML2_V1: "rodata=full+BBML2 v1"}


@dataclass(frozen=True)
class MemoryMap:
    """The DRAM the linear map covers.

    ``ram_bytes`` of installed DRAM in ``banks`` equal banks from ``base_pa``, separated by
    ``bank_gap_bytes`` of physical address space; ``nomap_bytes`` of firmware carve-outs
    (memory the kernel never maps: absent from memblock or ``MEMBLOCK_NOMAP``), split evenly
    over the banks and taken from the top of each, in multiples of ``nomap_align_bytes`` (so
    each bank's mapped end is only that aligned); the kernel image's linear alias
    ``kernel_alias_bytes`` starting ``kernel_offset_bytes`` into bank 0; a KFENCE pool of
    ``kfence_pool_bytes`` (0: KFENCE off) right after the image.
    """

    ram_bytes: int
    granule: str = "4K"
    banks: int = 1
    base_pa: int = 2 * GiB
    bank_gap_bytes: int = 0
    nomap_bytes: int = 0
    nomap_align_bytes: int = 64 * KiB
    kernel_alias_bytes: int = 32 * MiB
    kernel_offset_bytes: int = 2 * MiB
    kfence_pool_bytes: int = 0

    def __post_init__(self):
        g = eng.arm64(self.granule, VA_BITS)  # validates the granule
        page = g.page_bytes
        check_int("banks", self.banks, 1, 64)
        ram = check_int("ram_bytes", self.ram_bytes, 1)
        if ram % (self.banks * page):
            raise ConfigError(f"must be a multiple of banks x {page}", "ram_bytes")
        for name in ("base_pa", "bank_gap_bytes", "nomap_bytes", "kernel_alias_bytes",
                     "kernel_offset_bytes", "kfence_pool_bytes"):
            v = check_int(name, getattr(self, name), 0)
            if v % page:
                raise ConfigError(f"must be a multiple of the {self.granule} page", name)
        align = check_pow2("nomap_align_bytes", self.nomap_align_bytes)
        if align < page:
            raise ConfigError(f"must be at least the page ({page})", "nomap_align_bytes")
        bank = ram // self.banks
        if self._carve() >= bank:
            raise ConfigError("carve-outs leave a bank empty", "nomap_bytes")
        end = self.kernel_offset_bytes + self.kernel_alias_bytes + self.kfence_pool_bytes
        if end > bank - self._carve():
            raise ConfigError("kernel image and KFENCE pool must fit in bank 0",
                              "kernel_offset_bytes")
        if self.linear_end_va() > 1 << (VA_BITS - 1):
            raise ConfigError("memory map exceeds the linear map's VA range", "ram_bytes")

    @property
    def geometry(self) -> eng.Geometry:
        return eng.arm64(self.granule, VA_BITS)

    def _carve(self) -> int:
        per_bank = self.nomap_bytes // self.banks
        a = self.nomap_align_bytes
        return -(-per_bank // a) * a

    def banks_pa(self) -> list[tuple[int, int]]:
        """(start PA, mapped bytes) of each bank."""
        bank = self.ram_bytes // self.banks
        return [(self.base_pa + i * (bank + self.bank_gap_bytes), bank - self._carve())
                for i in range(self.banks)]

    @property
    def memstart(self) -> int:
        a = MEMSTART_ALIGN[self.granule]
        return self.base_pa // a * a

    def linear_end_va(self) -> int:
        s, n = self.banks_pa()[-1]
        return s + n - self.memstart

    @property
    def mapped_bytes(self) -> int:
        return sum(n for _, n in self.banks_pa())

    def kernel_alias_pa(self) -> tuple[int, int]:
        s = self.banks_pa()[0][0] + self.kernel_offset_bytes
        return s, s + self.kernel_alias_bytes


def build_linear_map(mm: MemoryMap, policy: LinearMapPolicy, *, force_pte: bool = False
                     ) -> PageTable:
    """The linear map as ``map_mem`` paints it at boot under ``policy``."""
    policy = LinearMapPolicy(policy)
    pt = PageTable(mm.geometry)
    flags = Paint.PTES if (policy == LinearMapPolicy.FULL_PTES or force_pte) else Paint.LARGEST
    ks, ke = mm.kernel_alias_pa()
    kf = ke + mm.kfence_pool_bytes
    for start, size in mm.banks_pa():
        pieces = [(start, start + size)]
        if start <= ks < start + size:
            pieces = [(start, ks), (kf, start + size)]
        for a, b in pieces:
            if b > a:
                pt.map(a - mm.memstart, b - a, a, Perm.RW, policy=flags)
    if ke > ks:
        pt.map(ks - mm.memstart, ke - ks, ks, Perm.RW, policy=Paint.NO_CONT)
    if kf > ke:
        pt.map(ke - mm.memstart, kf - ke, ke, Perm.RW, policy=Paint.PTES)
    return pt


def lower_table_bytes(pt: PageTable) -> int:
    """Bytes of the tables below the top level (the top, ``swapper_pg_dir``, is in the image)."""
    g = pt.geometry
    return sum(v for lv, v in pt.table_pages().items() if lv != g.start_level) * g.page_bytes


def boot_table_bytes(mm: MemoryMap, policy: LinearMapPolicy, *, force_pte: bool = False) -> int:
    """Memblock bytes of linear-map tables allocated at boot under ``policy``."""
    return lower_table_bytes(build_linear_map(mm, policy, force_pte=force_pte))


def saved_bytes(mm: MemoryMap, *, force_pte: bool = False) -> int:
    """Boot-time table bytes rodata=full+BBML2 saves against rodata=full (the MemTotal
    difference the thread measured: both are memblock reservations)."""
    return (boot_table_bytes(mm, LinearMapPolicy.FULL_PTES)
            - boot_table_bytes(mm, LinearMapPolicy.FULL_BBML2, force_pte=force_pte))


def memory_map_from_memtotal(installed_bytes: int, memtotal_bytes: int, *, granule: str = "4K",
                             kernel_image_bytes: int, other_reserved_bytes: int,
                             nomap_align_bytes: int = 64 * KiB, **kw) -> MemoryMap:
    """The memory map whose boot-time reservations leave ``memtotal_bytes`` under rodata=full.

    MemTotal counts pages handed to the page allocator: the mapped DRAM minus memblock
    reservations, here the ``struct page`` array (``STRUCT_PAGE_BYTES`` per page, vmemmap),
    the rodata=full linear-map tables (counted by the engine), the kernel image and
    ``other_reserved_bytes`` (crash kernel, firmware tables, early allocations). Solving for
    the mapped DRAM gives the firmware carve-out ``installed - mapped`` (``nomap_bytes``).
    """
    page = eng.arm64(granule, VA_BITS).page_bytes
    frac = STRUCT_PAGE_BYTES / page
    fixed = memtotal_bytes + kernel_image_bytes + other_reserved_bytes
    mapped = installed_bytes
    mm = None
    for _ in range(8):
        nomap = max(0, installed_bytes - mapped)
        nomap = nomap // nomap_align_bytes * nomap_align_bytes
        mm = MemoryMap(installed_bytes, granule, nomap_bytes=nomap,
                       nomap_align_bytes=nomap_align_bytes, **kw)
        tables = boot_table_bytes(mm, LinearMapPolicy.FULL_PTES)
        new = int((fixed + tables) / (1.0 - frac))
        new = min(installed_bytes, -(-new // page) * page)
        if new == mapped:
            break
        mapped = new
    return mm


# ---- permission-change streams (B9) --------------------------------------------------------
class ChangeKind(IntEnum):
    """Callers of ``__change_memory_common`` on the linear map under rodata=full.

    MODULE     module text/rodata made read-only: ``set_memory_ro``/``set_memory_rox`` on
               vmalloc'd memory also change the linear alias of every backing page
               (arch/arm64/mm/pageattr.c ``change_memory_common`` with ``rodata_full``)
    BPF        a BPF JIT pack (``bpf_prog_pack``) made read-only-executable, same path
    SECRETMEM  one page removed from the direct map (``set_direct_map_invalid_noflush``)
    VMALLOC_RO a vmalloc range made read-only with its linear alias (the thread's test module)
    DIRECT_MAP one page invalidated and restored (``VM_FLUSH_RESET_PERMS`` on vfree)
    LINEAR     a physically contiguous linear-map range (the kernel image alias made
               read-only, ``arch_kexec_protect_crashkres``, realm shared buffers)
    """

    MODULE = 0
    BPF = 1
    SECRETMEM = 2
    VMALLOC_RO = 3
    DIRECT_MAP = 4
    LINEAR = 5


# permission each kind leaves on the alias while the memory is in use
_KIND_PERM = {ChangeKind.MODULE: Perm.R, ChangeKind.BPF: Perm.R, ChangeKind.SECRETMEM: Perm.NONE,
              ChangeKind.VMALLOC_RO: Perm.R, ChangeKind.DIRECT_MAP: Perm.NONE,
              ChangeKind.LINEAR: Perm.R}


@dataclass(frozen=True)
class StreamConfig:
    """A stream of linear-map permission changes.

    ``weights``: relative frequency of each :class:`ChangeKind`; ``pages``: mean pages per
    change of each kind (geometric, at least 1; LINEAR uses ``linear_bytes``);
    ``alias_run_pages``: mean run of physically consecutive pages behind a vmalloc area
    (order-0 pages from the buddy allocator come out consecutive while it splits one large
    free block, scattered once memory is fragmented); ``free_fraction``: share of changes
    undone later (unload, free) by restoring read-write.
    """

    events: int = 2000
    weights: tuple[float, ...] = (0.40, 0.05, 0.20, 0.05, 0.25, 0.05)
    pages: tuple[float, ...] = (64.0, 512.0, 1.0, 256.0, 1.0, 0.0)
    linear_bytes: int = 32 * MiB
    alias_run_pages: float = 8.0
    free_fraction: float = 0.5

    def __post_init__(self):
        check_int("events", self.events, 1)
        if len(self.weights) != len(ChangeKind) or len(self.pages) != len(ChangeKind):
            raise ConfigError(f"needs one value per kind ({len(ChangeKind)})", "weights")
        for w in self.weights:
            check_float("weights", w, 0.0)
        if sum(self.weights) <= 0:
            raise ConfigError("must not all be zero", "weights")
        for p in self.pages:
            check_float("pages", p, 0.0)
        check_int("linear_bytes", self.linear_bytes, 1)
        check_float("alias_run_pages", self.alias_run_pages, 1.0)
        check_float("free_fraction", self.free_fraction, 0.0, 1.0)


def allocatable_ranges(mm: MemoryMap) -> list[tuple[int, int]]:
    """(PA, bytes) of mapped memory the page allocator can hand out: every bank minus the
    kernel image and the KFENCE pool (whose aliases no caller of the stream changes)."""
    ks, _ = mm.kernel_alias_pa()
    kf = ks + mm.kernel_alias_bytes + mm.kfence_pool_bytes
    out = []
    for s, n in mm.banks_pa():
        for a, b in ((s, min(s + n, ks)), (max(s, kf), s + n)):
            if b > a:
                out.append((a, b - a))
    return out


def make_stream(mm: MemoryMap, cfg: StreamConfig, seed: int) -> dict[str, np.ndarray]:
    """Draw the stream: arrays ``event, kind, pa, bytes, perm`` (one row per contiguous
    linear-map range; an event with scattered pages has several rows)."""
    rng = np.random.default_rng(seed)
    page = mm.geometry.page_bytes
    banks = allocatable_ranges(mm)
    sizes = np.array([n for _, n in banks], dtype=np.float64)
    w = np.asarray(cfg.weights, dtype=np.float64)
    kinds = rng.choice(len(ChangeKind), size=cfg.events, p=w / w.sum())
    rows = []
    live = []
    for ev, k in enumerate(kinds.tolist()):
        kind = ChangeKind(k)
        if kind == ChangeKind.LINEAR:
            runs = [max(page, cfg.linear_bytes // page * page)]
        else:
            mean = max(1.0, cfg.pages[k])
            n = int(rng.geometric(1.0 / mean))
            if kind in (ChangeKind.SECRETMEM, ChangeKind.DIRECT_MAP):
                runs = [page] * n
            else:
                runs = []
                while n > 0:
                    r = min(n, int(rng.geometric(1.0 / cfg.alias_run_pages)))
                    runs.append(r * page)
                    n -= r
        for size in runs:
            b = int(rng.choice(len(banks), p=sizes / sizes.sum()))
            start, length = banks[b]
            size = min(size, length)
            off = int(rng.integers(0, (length - size) // page + 1)) * page
            rows.append((ev, k, start + off, size, int(_KIND_PERM[kind])))
        if rng.random() < cfg.free_fraction:
            live.append((len(rows) - len(runs), len(rows)))
    out = np.array(rows, dtype=np.int64).reshape(-1, 5)
    # the freed events are restored read-write after the stream, in event order
    undo = (np.concatenate([out[a:b] for a, b in live]) if live
            else np.empty((0, 5), np.int64))
    if undo.size:
        undo = undo.copy()
        undo[:, 0] += cfg.events
        undo[:, 4] = int(Perm.RW)
    full = np.concatenate([out, undo]) if undo.size else out
    return {"event": full[:, 0], "kind": full[:, 1], "pa": full[:, 2], "bytes": full[:, 3],
            "perm": full[:, 4]}


def map_stats(pt: PageTable) -> dict[str, int]:
    """From one dump of the extents: ``block_leaves`` (leaves above level 3),
    ``block_mapped_bytes``, ``tlb_entries`` (a contiguous range counted once) and
    ``tlb_entries_nocont`` (one per leaf); as :meth:`PageTable.block_leaves` and
    :meth:`PageTable.tlb_entries` compute them."""
    a = pt.extents_array()
    g = pt.geometry
    level = attr_level(a[:, F_ATTR])
    cont = attr_cont(a[:, F_ATTR]).astype(bool)
    leaf = np.zeros(a.shape[0], dtype=np.int64)
    unit = np.zeros(a.shape[0], dtype=np.int64)
    for lv in g.leaf_levels:
        m = level == lv
        leaf[m] = g.leaf_bytes(lv)
        cb = g.cont_bytes(lv) or g.leaf_bytes(lv)
        unit[m] = np.where(cont[m], cb, g.leaf_bytes(lv))
    blk = level < 3
    size = a[:, F_SIZE]
    return {"block_leaves": int((size[blk] // leaf[blk]).sum()),
            "block_mapped_bytes": int(size[blk].sum()),
            "tlb_entries": int((size // unit).sum()),
            "tlb_entries_nocont": int((size // leaf).sum())}


def run_stream(mm: MemoryMap, policy: LinearMapPolicy, stream: dict[str, np.ndarray], *,
               checkpoints: int = 20, force_pte: bool = False):
    """Apply a stream to the boot linear map under ``policy``; a polars frame with, at each
    checkpoint, ``changes, block_leaves, block_mapped_bytes, table_pages_allocated,
    tlb_entries, tlb_entries_nocont, leaves_changed, split_requests``.

    rodata=on never changes linear aliases (``can_set_direct_map()`` is false), so its map
    stays as painted.
    """
    import polars as pl

    policy = LinearMapPolicy(policy)
    pt = build_linear_map(mm, policy, force_pte=force_pte)
    base = pt.counters.snapshot()
    n = stream["pa"].size
    va = stream["pa"] - mm.memstart
    mode = PermSplit.TO_PTES if policy == LinearMapPolicy.FULL_BBML2_V1 else PermSplit.BOUNDARY
    ops = encode_ops(np.full(n, OP_SET_PERM), va, stream["bytes"], None, stream["perm"],
                     np.full(n, int(mode)), geometry=mm.geometry)
    cuts = np.unique(np.linspace(0, n, checkpoints + 1).astype(np.int64))
    rows = []
    for i, end in enumerate(cuts):
        if i and policy != LinearMapPolicy.RODATA_ON:
            res = pt.apply_ops(ops[cuts[i - 1]:end])
            if (res != 0).any():
                raise RuntimeError(f"permission change failed: {res[res != 0][:3]}")
        c = pt.counters - base
        rows.append({"policy": POLICY_NAMES[policy], "changes": int(end), **map_stats(pt),
                     "table_pages_allocated": c[PtEvent.TABLE_PAGES_ALLOCATED],
                     "leaves_changed": c[PtEvent.LEAVES_CHANGED],
                     "split_requests": c[PtEvent.SPLIT_REQUESTS]})
    return pl.DataFrame(rows)


# ---- repaint (B10) ----------------------------------------------------------------------------
def predicted_repaint_pages(pt: PageTable) -> int:
    """Table pages a repaint to PTEs needs, from the block mappings alone (the thread's
    plan: count the PUD and PMD mappings created at boot): a block at level L needs one
    table at each level below it per window of that table's span it covers."""
    g = pt.geometry
    pages = 0
    for (lv, _cont), nbytes in pt.leaf_bytes_by_level().items():
        if lv == 3:
            continue
        blocks = nbytes // g.leaf_bytes(lv)
        per_block = sum(g.leaf_bytes(lv) // g.entry_bytes(k - 1) for k in range(lv + 1, 4))
        pages += blocks * per_block
    return pages


def repaint(mm: MemoryMap) -> dict[str, int]:
    """Repaint the boot-time block-mapped linear map to PTEs (``linear_map_split_to_ptes``):
    ``predicted_pages`` (from the boot mappings), ``built_pages`` (tables the repaint
    allocates in the engine), ``pud_blocks``, ``pmd_blocks`` and the table bytes before and
    after."""
    pt = build_linear_map(mm, LinearMapPolicy.FULL_BBML2)
    before_bytes = lower_table_bytes(pt)
    predicted = predicted_repaint_pages(pt)
    leaves = pt.leaf_bytes_by_level()
    g = mm.geometry
    blocks = {lv: sum(b for (l2, _), b in leaves.items() if l2 == lv) // g.leaf_bytes(lv)
              for lv in g.block_bytes}
    base = pt.counters.snapshot()
    for start, size in mm.banks_pa():
        if pt.split_to_ptes(start - mm.memstart, size) != 0:
            raise RuntimeError("repaint failed")
    built = (pt.counters - base)[PtEvent.TABLE_PAGES_ALLOCATED]
    return {"predicted_pages": int(predicted), "built_pages": int(built),
            "pud_blocks": int(blocks.get(1, 0)), "pmd_blocks": int(blocks.get(2, 0)),
            "table_bytes_before": before_bytes, "table_bytes_after": lower_table_bytes(pt)}


# ---- break-before-make (B11) ------------------------------------------------------------------
class BbmMode(IntEnum):
    """How a live leaf changes size.

    NO_BBML2   break-before-make: invalid descriptor, broadcast TLBI + DSB, new descriptor
               (Arm ARM D8.16 "Break-before-make"); accesses in the window fault
    BBML2      the new descriptor replaces the old one directly on an allowlisted CPU
               (BBML2 without TLB conflict aborts): no window
    BBML2_ABORTS  same, on a CPU that implements BBML2 but may raise a TLB conflict abort
               when it holds the old and a new entry for one address (why BBML2 is used only
               on an allowlist of CPUs)
    """

    NO_BBML2 = 0
    BBML2 = 1
    BBML2_ABORTS = 2


@dataclass(frozen=True)
class BbmConfig:
    """Concurrent accesses while ``changes`` live leaves change size.

    ``cpus`` other CPUs each access the leaf being changed at ``access_rate_per_us``
    (Poisson); a CPU holds the old translation in its TLB with probability
    ``tlb_hold_prob``; the change takes ``tlbi_ns`` from the first store until the broadcast
    TLBI completes (DSB) and ``write_ns`` more until the new descriptor is visible;
    ``conflict_prob`` is the chance that an access by a CPU holding the old entry during the
    change raises a TLB conflict abort on a non-allowlisted CPU.
    """

    cpus: int = 191
    access_rate_per_us: float = 0.05
    tlb_hold_prob: float = 0.5
    tlbi_ns: float = 2000.0
    write_ns: float = 100.0
    changes: int = 1000
    conflict_prob: float = 0.01

    def __post_init__(self):
        check_int("cpus", self.cpus, 1)
        check_float("access_rate_per_us", self.access_rate_per_us, 0.0)
        check_float("tlb_hold_prob", self.tlb_hold_prob, 0.0, 1.0)
        check_float("tlbi_ns", self.tlbi_ns, 0.0)
        check_float("write_ns", self.write_ns, 0.0)
        check_int("changes", self.changes, 1)
        check_float("conflict_prob", self.conflict_prob, 0.0, 1.0)


def bbm_draws(cfg: BbmConfig, seed: int) -> dict[str, np.ndarray]:
    """The random inputs of :func:`bbm_count`: per access its time in the change window
    (``t_ns``), its CPU slot (``cpu``: change * cpus + cpu), whether that CPU held the old
    entry (``held`` per slot) and a uniform draw (``u``) for conflict aborts."""
    rng = np.random.default_rng(seed)
    window = cfg.tlbi_ns + cfg.write_ns
    slots = cfg.changes * cfg.cpus
    n = rng.poisson(cfg.access_rate_per_us * window / 1000.0, slots)
    cpu = np.repeat(np.arange(slots, dtype=np.int64), n)
    t = rng.random(cpu.size) * window
    held = (rng.random(slots) < cfg.tlb_hold_prob).astype(np.int64)
    return {"t_ns": t, "cpu": cpu, "held": held, "u": rng.random(cpu.size)}


@njit
def bbm_count(t_ns, cpu, held, u, tlbi_ns, mode, conflict_prob, out):
    """Count the outcome of each access during a live leaf-size change.

    ``out[0]`` accesses, ``out[1]`` faults (walks that read an invalid descriptor: before
    the TLBI completes only on CPUs without the old entry, after it on every CPU),
    ``out[2]`` TLB conflict aborts. With BBML2 every walk reads a valid descriptor.
    """
    for i in range(t_ns.size):
        out[0] += 1
        h = held[cpu[i]]
        if mode == 0:
            if t_ns[i] >= tlbi_ns or h == 0:
                out[1] += 1
        elif mode == 2:
            if t_ns[i] < tlbi_ns and h == 1 and u[i] < conflict_prob:
                out[2] += 1


def leaf_span(pt: PageTable, va: int) -> tuple[int, int]:
    """``(start, bytes)`` of the descriptor group that must change together to split the leaf
    holding ``va``: the leaf itself, or its whole contiguous range (``CONT`` entries are
    invalidated as a group)."""
    ex = pt.extents_array()
    i = int(np.searchsorted(ex[:, F_VA], va, side="right")) - 1
    if i < 0 or va >= ex[i, F_VA] + ex[i, F_SIZE]:
        raise ConfigError(f"{va:#x} is not mapped", "va")
    attr = int(ex[i, F_ATTR])
    level = int(attr_level(attr))
    g = pt.geometry
    unit = g.cont_bytes(level) if attr_cont(attr) else g.leaf_bytes(level)
    start = int(ex[i, F_VA]) + (va - int(ex[i, F_VA])) // unit * unit
    return start, unit


def split_states(pt: PageTable, va: int, mode: BbmMode, tlbi_ns: float,
                 write_ns: float) -> list[tuple[float, PageTable]]:
    """The descriptor states another CPU's walker can read while the leaf holding ``va``
    is split on the engine's page table, each with the time (ns from the first store) from
    which it is visible; the first is the state before the change (time ``-inf``: what a TLB
    may still hold). ``pt`` is left unchanged.

    Without BBML2, break-before-make: the old descriptor (group) is cleared (an invalid
    descriptor, :attr:`Perm.NONE`), a broadcast TLBI + DSB completes at ``tlbi_ns``, and the
    table descriptor is written ``write_ns`` later (Arm ARM D8.16). With BBML2 the new table
    (every entry valid, same output and attributes) is written and replaces the old
    descriptor with one store, visible at ``write_ns``; no state is ever invalid. This is the
    sequence :func:`bbm_count`'s fault rule summarises (see :func:`walk_outcomes`).
    """
    start, span = leaf_span(pt, va)
    done = pt.copy()
    if done.split(va) != 0:
        raise ConfigError(f"split at {va:#x} failed", "va")
    before = (-np.inf, pt.copy())
    if BbmMode(mode) != BbmMode.NO_BBML2:
        return [before, (float(write_ns), done)]
    cleared = pt.copy()
    if cleared.set_perm(start, span, Perm.NONE) != 0:
        raise ConfigError(f"clearing [{start:#x}, {start + span:#x}) failed", "va")
    return [before, (0.0, cleared), (float(tlbi_ns + write_ns), done)]


def walk_outcomes(states: list[tuple[float, PageTable]], va: np.ndarray, t_ns: np.ndarray,
                  held: np.ndarray, tlbi_ns: float) -> tuple[np.ndarray, np.ndarray]:
    """Per access at ``va[i]``, time ``t_ns[i]`` (>= 0), by a CPU that holds the old
    translation in its TLB (``held[i]``): ``(pa, fault)`` over the :func:`split_states`
    ``states``. A holding CPU translates with the old entry (the first state) until
    the TLBI completes at ``tlbi_ns``; otherwise the access walks the state visible at its
    time, and faults where that state has no valid descriptor."""
    va = np.asarray(va, np.int64)
    t_ns = np.asarray(t_ns, float)
    held = np.asarray(held, bool)
    pa = np.zeros(va.size, np.int64)
    fault = np.zeros(va.size, bool)
    old_pa, _l, _c, _p, _n = states[0][1].translate_many(va)   # what a TLB may hold
    starts = np.array([t for t, _ in states])
    which = np.searchsorted(starts, t_ns, side="right") - 1
    for k, (_t, st) in enumerate(states):
        sel = (which == k) & ~(held & (t_ns < tlbi_ns))
        if sel.any():
            p, level, _c, perm, _n = st.translate_many(va[sel])
            pa[sel] = p
            fault[sel] = (level < -1) | (perm == int(Perm.NONE))
    hit = held & (t_ns < tlbi_ns)
    pa[hit] = old_pa[hit]
    return pa, fault


def bbm_window(cfg: BbmConfig, seed: int) -> dict[str, dict[str, int]]:
    """Accesses, faults and conflict aborts per :class:`BbmMode` (same draws for all)."""
    d = bbm_draws(cfg, seed)
    res = {}
    for mode in BbmMode:
        out = np.zeros(3, dtype=np.int64)
        bbm_count(d["t_ns"], d["cpu"], d["held"], d["u"], float(cfg.tlbi_ns), int(mode),
                  float(cfg.conflict_prob), out)
        res[mode.name.lower()] = {"accesses": int(out[0]), "faults": int(out[1]),
                                  "conflict_aborts": int(out[2])}
    return res


# ---- extension: vmalloc with huge and contiguous leaves by default ------------------------------
def vmalloc_map(sizes_bytes, huge: bool, seed: int, *, granule: str = "4K",
                phys_bytes: int = 256 * GiB) -> PageTable:
    """Map vmalloc areas of ``sizes_bytes`` one after another (a guard page after each, as
    ``__get_vm_area_node`` adds) with order-0 pages, or, with ``huge``, as
    ``VM_ALLOW_HUGE_VMAP`` areas would be mapped once splitting live mappings is safe: an area
    of at least a PMD block is PMD-aligned and backed by PMD-order pages, the rest of an
    area by contiguous-range-order pages (arm64 ``arch_vmap_pte_range_map_size``) and then
    order-0 pages. Physical pages are drawn uniformly over ``phys_bytes`` (a fragmented
    allocator never hands out neighbours); the engine paints each piece with the largest
    leaves its alignment allows."""
    g = eng.arm64(granule, VA_BITS)
    page, pmd = g.page_bytes, g.block_bytes[2]
    cont = g.cont_pte_bytes
    rng = np.random.default_rng(seed)
    va = 0
    rows = []
    for size in np.asarray(sizes_bytes, dtype=np.int64).tolist():
        size = -(-int(size) // page) * page
        if huge and size >= pmd:
            va = -(-va // pmd) * pmd
        elif huge and size >= cont:
            va = -(-va // cont) * cont
        left, cur = size, va
        for unit in ((pmd, cont, page) if huge else (page,)):
            n = left // unit
            if n == 0:
                continue
            pas = rng.integers(0, phys_bytes // unit, n) * unit
            for pa in pas.tolist():
                rows.append((cur, unit, pa))
                cur += unit
            left -= n * unit
        va = cur + page  # guard page
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    pt = PageTable(g, chunks=max(64, arr.shape[0] // 64))
    ops = encode_ops(np.zeros(arr.shape[0], dtype=np.int64), arr[:, 0], arr[:, 1], arr[:, 2],
                     int(Perm.RW), int(Paint.LARGEST), geometry=g)
    res = pt.apply_ops(ops)
    if (res != 0).any():
        raise RuntimeError("vmalloc areas overlap")
    return pt


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


# ---- the notebook's layer: parameters, frames, claim values ------------------------------------
GRANULES = ("4K", "16K", "64K")

#: Notebook parameters and their defaults (the small nbval scenario of
#: notebooks/bbml2_structure.ipynb; the published one is params/bbml2_structure.yaml).
DEFAULTS: dict = {
    "seed": 1,
    "installed_gib": 256, "memtotal_kib": 258_988_984,
    "kernel_image_mib": 48, "other_reserved_mib": 256, "kernel_alias_mib": 32,
    "kernel_offset_mib": 2, "kfence_pool_kib": 0, "nomap_align_kib": 64, "banks": 1,
    "bank_gap_gib": 0,
    "ram_gib_list": [16, 64, 256], "granules": list(GRANULES),
    "stream_ram_gib": 256, "stream_events": 300, "checkpoints": 10,
    "w_module": 0.40, "w_bpf": 0.05, "w_secretmem": 0.20, "w_vmalloc_ro": 0.05,
    "w_direct_map": 0.25, "w_linear": 0.05,
    "module_pages": 64, "bpf_pack_pages": 512, "vmalloc_ro_pages": 256, "linear_mib": 32,
    "alias_run_pages": 8.0, "free_fraction": 0.5,
    "bbm_cpus": 191, "bbm_rate_per_us": 0.05, "bbm_rates_per_us": [0.001, 0.01, 0.1, 1.0],
    "tlbi_ns": 2000.0, "write_ns": 100.0, "tlb_hold_prob": 0.5, "bbm_changes": 200,
    "conflict_prob": 0.01,
    "sweep_points": 6,
    "vmalloc_areas": 500, "vmalloc_median_kib": 64, "vmalloc_sigma": 2.0,
}


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
              "bbm_changes", "sweep_points", "banks", "vmalloc_areas", "vmalloc_median_kib"):
        check_int(k, p[k], 1)
    for k in ("kernel_image_mib", "other_reserved_mib", "kernel_alias_mib", "kernel_offset_mib",
              "kfence_pool_kib", "bank_gap_gib", "linear_mib"):
        check_int(k, p[k], 0)
    check_float("bbm_rate_per_us", p["bbm_rate_per_us"], 0.0)
    check_float("vmalloc_sigma", p["vmalloc_sigma"], 0.0, 4.0)
    return p


def params_from(namespace: dict) -> dict:
    """The notebook's parameters picked from ``namespace`` (its globals), checked."""
    return check_params({k: namespace[k] for k in DEFAULTS if k in namespace})


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
            "tlb_entries_boundary": bd["tlb_entries"], "tlb_entries_v1": v1["tlb_entries"]}


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


def bbm_frame(p: dict):
    """Faults and conflict aborts per mode over the access rates (B11)."""
    import polars as pl

    rows = []
    for rate in p["bbm_rates_per_us"]:
        for mode, r in bbm_window(bbm_config(p, rate), p["seed"]).items():
            rows.append({"rate_per_us": float(rate), "mode": mode, **r})
    return pl.DataFrame(rows)


def b11_points(p: dict) -> list[dict]:
    out = []
    for rate in (0.001, 0.01, 0.1):
        for tlbi in (500.0, 2000.0, 10000.0):
            for hold in (0.0, 0.5, 1.0):
                r = bbm_window(bbm_config(p, rate, tlbi_ns=tlbi, tlb_hold_prob=hold), p["seed"])
                out.append({"params": {"bbm_rate_per_us": rate, "tlbi_ns": tlbi,
                                       "tlb_hold_prob": hold},
                            "value": {"faults_without_bbml2": r["no_bbml2"]["faults"],
                                      "faults_with_bbml2": r["bbml2"]["faults"]}})
    return out


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
        "value": v, "unit": "bytes", "sweep": b1[1:],
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
    out["B2"] = {"value": ev, "unit": "bytes", "sweep": None, "explanation": (
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
        where = (f"; it fails in {len(fails)} of {len(b9_sweep)} stream shapes (w_linear in "
                 f"{wl}, alias runs of {runs} pages), where no change covers a whole block; "
                 f"there v1 still needs up to {tlb:.2f}x the TLB entries")
    out["B9"] = {"value": b9, "unit": "", "sweep": b9_sweep, "explanation": (
        f"boundary-only splits keep {b9['blocks_kept_boundary'] / GiB:.1f} GiB block-mapped "
        f"against {b9['blocks_kept_v1'] / GiB:.1f} GiB for v1 and allocate "
        f"{b9['tables_boundary']} vs {b9['tables_v1']} table pages, because only the leaves "
        f"at a range's ends are split" + where)}
    ev10 = {"predicted_pages": repaints["predicted_pages"].to_list(),
            "built_pages": repaints["built_pages"].to_list(),
            "granule": repaints["granule"].to_list(), "ram_gib": repaints["ram_gib"].to_list()}
    out["B10"] = {"value": ev10, "unit": "pages", "sweep": None, "explanation": (
        "each PUD or PMD block created at boot needs exactly the tables below it that a "
        "repaint to PTEs builds (1 + 512 pages per 1 GiB PUD block and 1 per PMD block with "
        "4K), and nothing else changes, so the count from the boot mappings is exact")}
    r = bbm_window(bbm_config(p), p["seed"])
    out["B11"] = {"value": {"faults_without_bbml2": r["no_bbml2"]["faults"],
                            "faults_with_bbml2": r["bbml2"]["faults"],
                            "conflict_aborts_not_allowlisted": r["bbml2_aborts"]["conflict_aborts"],
                            "accesses": r["no_bbml2"]["accesses"]},
                  "unit": "", "sweep": b11_points(p), "explanation": (
        f"without BBML2 a leaf-size change leaves an invalid descriptor for the TLBI and the "
        f"rewrite, and {r['no_bbml2']['faults']} of {r['no_bbml2']['accesses']} concurrent "
        f"accesses fault in that window; with BBML2 the descriptor is replaced in place and "
        f"none do, while a CPU outside the allowlist that raises TLB conflict aborts would "
        f"take {r['bbml2_aborts']['conflict_aborts']} aborts")}
    return out


def results_frame(p: dict, scenario: str, tables=None, stream=None, repaints=None, bbm=None,
                  vmalloc=None):
    """The tidy frame of everything the notebook shows."""
    from .. import results

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
    return results.frame(rows)
