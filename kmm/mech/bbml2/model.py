"""bbml2: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.bbml2`."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ... import engine as eng
from ...config import check_float, check_int, check_pow2
from ...engine import (attr_cont, attr_level, encode_ops, F_ATTR, F_SIZE, F_VA, GiB, KiB, MiB,
    OP_SET_PERM, PageTable, Paint, Perm, PermSplit, PtEvent)
from ...errors import ConfigError

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


class ForcePte(IntEnum):
    """The features ``force_pte_mapping()`` tests (arch/arm64/mm/mmu.c): with any of them a
    CPU without BBML2 paints the whole linear map with PTEs (``NO_BLOCK_MAPPINGS |
    NO_CONT_MAPPINGS`` in ``map_mem``) even under rodata=on, since ``can_set_direct_map()``
    holds and a live leaf could not be split later.

    NONE            none of them
    DEBUG_PAGEALLOC ``debug_pagealloc_enabled()``: PTEs even with BBML2 (tested before the
                    BBML2 check: every page is mapped and unmapped as it is allocated and
                    freed)
    KFENCE_LATE     KFENCE whose pool is allocated after boot (``kfence.sample_interval=0``
                    at boot, ``arm64_kfence_can_set_direct_map()``): without BBML2 all PTEs;
                    with BBML2 blocks, and the pool's range is split to PTEs when KFENCE
                    starts (``arch_kfence_init_pool`` -> ``range_split_to_ptes``). An early
                    pool (``kfence_pool_bytes`` of :class:`MemoryMap`) is PTE-mapped at boot
                    by ``arm64_kfence_map_pool`` under every policy and forces nothing
    REALM           a realm guest (``is_realm_world()``): without BBML2 all PTEs; with BBML2
                    blocks, split on demand as pages are shared with the host
                    (``__set_memory_enc_dec`` -> ``__change_memory_common``)
    """

    NONE = 0
    DEBUG_PAGEALLOC = 1
    KFENCE_LATE = 2
    REALM = 3


FORCE_PTE_NAMES = {ForcePte.NONE: "none", ForcePte.DEBUG_PAGEALLOC: "debug_pagealloc",
                   ForcePte.KFENCE_LATE: "KFENCE (late pool)", ForcePte.REALM: "realm"}


def force_pte_mapping(policy: LinearMapPolicy, config: ForcePte = ForcePte.NONE) -> bool:
    """``force_pte_mapping()`` for a policy's CPU and kernel: the BBML2 policies run on a
    CPU with BBML2 (no abort), rodata=full and rodata=on on one without it."""
    policy, config = LinearMapPolicy(policy), ForcePte(config)
    if config == ForcePte.DEBUG_PAGEALLOC:
        return True
    if policy in (LinearMapPolicy.FULL_BBML2, LinearMapPolicy.FULL_BBML2_V1):
        return False
    return policy == LinearMapPolicy.FULL_PTES or config != ForcePte.NONE


def build_linear_map(mm: MemoryMap, policy: LinearMapPolicy, *, force_pte: bool = False,
                     config: ForcePte | None = None) -> PageTable:
    """The linear map as ``map_mem`` paints it at boot under ``policy`` and the
    ``force_pte_mapping()`` feature ``config`` (:class:`ForcePte`); ``force_pte`` forces
    PTEs whatever the policy. With :attr:`ForcePte.KFENCE_LATE` on a block-mapped map, the
    KFENCE pool (``kfence_pool_bytes`` after the image alias) is painted with the rest and
    then split to PTEs, as its late initialisation does."""
    policy = LinearMapPolicy(policy)
    config = ForcePte.NONE if config is None else ForcePte(config)
    pt = PageTable(mm.geometry)
    ptes = force_pte or force_pte_mapping(policy, config)
    flags = Paint.PTES if ptes else Paint.LARGEST
    late = config == ForcePte.KFENCE_LATE
    if late and mm.kfence_pool_bytes == 0:
        raise ConfigError("a late KFENCE pool needs kfence_pool_bytes > 0", "kfence_pool_bytes")
    ks, ke = mm.kernel_alias_pa()
    kf = ke + mm.kfence_pool_bytes
    for start, size in mm.banks_pa():
        pieces = [(start, start + size)]
        if start <= ks < start + size:
            pieces = [(start, ks), (ke if late else kf, start + size)]
        for a, b in pieces:
            if b > a:
                pt.map(a - mm.memstart, b - a, a, Perm.RW, policy=flags)
    if ke > ks:
        pt.map(ks - mm.memstart, ke - ks, ks, Perm.RW, policy=Paint.NO_CONT)
    if kf > ke and not late:
        pt.map(ke - mm.memstart, kf - ke, ke, Perm.RW, policy=Paint.PTES)
    return pt


def kfence_late_split(mm: MemoryMap, policy: LinearMapPolicy) -> PageTable:
    """The boot map of :attr:`ForcePte.KFENCE_LATE` after KFENCE has started: on a
    block-mapped map, the pool's range split to PTEs (``arch_kfence_init_pool`` ->
    ``range_split_to_ptes``; tables from the page allocator); otherwise as painted."""
    pt = build_linear_map(mm, policy, config=ForcePte.KFENCE_LATE)
    if not force_pte_mapping(policy, ForcePte.KFENCE_LATE):
        _ks, ke = mm.kernel_alias_pa()
        if pt.split_to_ptes(ke - mm.memstart, mm.kfence_pool_bytes) != 0:
            raise RuntimeError("splitting the KFENCE pool failed")
    return pt


def lower_table_bytes(pt: PageTable) -> int:
    """Bytes of the tables below the top level (the top, ``swapper_pg_dir``, is in the image)."""
    g = pt.geometry
    return sum(v for lv, v in pt.table_pages().items() if lv != g.start_level) * g.page_bytes


def boot_table_bytes(mm: MemoryMap, policy: LinearMapPolicy, *, force_pte: bool = False,
                     config: ForcePte | None = None) -> int:
    """Memblock bytes of linear-map tables allocated at boot under ``policy`` and
    ``config``."""
    return lower_table_bytes(build_linear_map(mm, policy, force_pte=force_pte, config=config))


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
               checkpoints: int = 20, force_pte: bool = False, cuts=None,
               config: ForcePte | None = None):
    """Apply a stream to the boot linear map under ``policy``; a polars frame with, at each
    checkpoint, ``changes, block_leaves, block_mapped_bytes, table_pages_allocated,
    tlb_entries, tlb_entries_nocont, leaves_changed, split_requests, flushes``.

    ``flushes`` counts the ``flush_tlb_kernel_range`` calls (TLBI + DSB) the applied rows
    carry (the stream's ``flush`` column; one per row if it has none). ``cuts`` (row counts,
    rising, ending at the stream's length) replaces the ``checkpoints`` evenly spaced ones.
    rodata=on never changes linear aliases (``change_memory_common`` tests ``rodata_full``),
    so its map stays as painted and it flushes nothing.
    """
    import polars as pl

    policy = LinearMapPolicy(policy)
    if config is not None and ForcePte(config) == ForcePte.KFENCE_LATE and not force_pte:
        pt = kfence_late_split(mm, policy)
    else:
        pt = build_linear_map(mm, policy, force_pte=force_pte, config=config)
    base = pt.counters.snapshot()
    n = stream["pa"].size
    va = stream["pa"] - mm.memstart
    flush = np.cumsum(np.concatenate([[0], np.asarray(stream.get("flush", np.ones(n)),
                                                      dtype=np.int64)]))
    mode = PermSplit.TO_PTES if policy == LinearMapPolicy.FULL_BBML2_V1 else PermSplit.BOUNDARY
    ops = encode_ops(np.full(n, OP_SET_PERM), va, stream["bytes"], None, stream["perm"],
                     np.full(n, int(mode)), geometry=mm.geometry)
    if cuts is None:
        cuts = np.unique(np.linspace(0, n, checkpoints + 1).astype(np.int64))
    else:
        cuts = np.asarray(cuts, dtype=np.int64)
        if cuts.size == 0 or (np.diff(cuts) < 0).any() or cuts[0] < 0 or cuts[-1] > n:
            raise ConfigError("cuts must rise from 0 to the stream's length", "cuts")
    applies = policy != LinearMapPolicy.RODATA_ON
    rows = []
    for i, end in enumerate(cuts):
        if i and applies and end > cuts[i - 1]:
            res = pt.apply_ops(ops[cuts[i - 1]:end])
            if (res != 0).any():
                raise RuntimeError(f"permission change failed: {res[res != 0][:3]}")
        c = pt.counters - base
        rows.append({"policy": POLICY_NAMES[policy], "changes": int(end), **map_stats(pt),
                     "table_pages_allocated": c[PtEvent.TABLE_PAGES_ALLOCATED],
                     "leaves_changed": c[PtEvent.LEAVES_CHANGED],
                     "split_requests": c[PtEvent.SPLIT_REQUESTS],
                     "flushes": int(flush[end]) if applies else 0})
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


# Imported last: these modules build on the definitions above.
from .kernels import bbm_count
from .workload import bbm_draws
