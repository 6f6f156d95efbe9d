"""bbml2_perf: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.bbml2_perf`."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from ... import engine as eng
from ...config import check_float, check_int
from ...engine import encode_ops, OP_SET_PERM, PageTable, Paint, Perm, PermSplit, TagEvent
from ...errors import ConfigError
from ..bbml2.model import (build_linear_map, ForcePte, kfence_late_split, LinearMapPolicy as Policy,
    MemoryMap, POLICY_NAMES)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
LINE_BYTES = 64
#: Touches are cut into 4 KiB chunks (a page of the thread's 4K kernel, one I/O block):
#: a chunk never straddles a page of any granule, so one TLB lookup serves a touch.
CHUNK_BYTES = 4 * KiB
LINES_PER_CHUNK = CHUNK_BYTES // LINE_BYTES

# arm64, 48-bit VA, 4K (arch/arm64/include/asm/memory.h): the kernel half starts at
# PAGE_OFFSET = -(1 << VA_BITS); the linear map fills its lower half, modules, the image and
# vmalloc follow at _PAGE_END(VA_BITS_MIN), vmemmap sits below the top.
KERNEL_VA_BASE = 0xFFFF_0000_0000_0000
MODULES_OFFSET = 1 << 47                      # MODULES_VADDR
IMAGE_OFFSET = MODULES_OFFSET + 2 * GiB        # KIMAGE_VADDR = MODULES_END
VMALLOC_OFFSET = IMAGE_OFFSET + 2 * GiB
STRUCT_PAGE_BYTES = 64
USER_VA_BASE = 0x0000_AAAA_0000_0000
USER_ASID = 1
# nominal backing addresses (above any modelled RAM) of the regions not in the linear map
MODULES_BACKING_PA = 1 << 50
VMALLOC_BACKING_PA = MODULES_BACKING_PA + (1 << 40)
# vmemmap is populated one PMD block per 2 MiB of struct pages, from separate allocations
# (vmemmap_populate with section maps): its backing is offset by 2 MiB from any 1 GiB
# alignment so that painting gives PMD blocks, never PUD blocks
VMEMMAP_BACKING_PA = VMALLOC_BACKING_PA + (1 << 40) + 2 * MiB
USER_BACKING_PA = VMEMMAP_BACKING_PA + (1 << 40)


#: The linear-map policies compared here (the structural model's codes, :mod:`.bbml2`).
POLICIES = (Policy.FULL_PTES, Policy.RODATA_ON, Policy.FULL_BBML2)
POLICY_LABELS = {pol: POLICY_NAMES[pol] for pol in POLICIES}


class Workload(IntEnum):
    MEMCACHED = 0
    DMCRYPT = 1
    SEQREAD = 2


class Region(IntEnum):
    """Where a touch lands; every region but ``LINEAR`` is mapped the same under every
    policy."""

    LINEAR = 0
    KTEXT = 1
    MODULES = 2
    VMALLOC = 3
    VMEMMAP = 4
    USER = 5


class Kind(IntEnum):
    """Touch kind; the values are :class:`kmm.tlb.Kind`'s."""

    LOAD = 0
    STORE = 1
    IFETCH = 2


# ---------------------------------------------------------------------------------------
# the machine's kernel address space
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelLayout:
    """Physical memory and the kernel image of the modelled machine.

    Parameters
    ----------
    ram_bytes : RAM mapped by the linear map (the thread: 256 GB installed)
    ram_base_bytes : physical address of the start of RAM (1 GiB aligned here, so every
        policy that allows PUD blocks uses them; the structural BBML2 model treats holes)
    image_text_bytes : ``[_stext, __init_begin)``: text and rodata of the image, whose
        linear alias is mapped without contiguous ranges under rodata=on
    image_pa_offset_bytes : where the image sits in RAM (offset from ``ram_base_bytes``)
    boot_used_bytes : memory in use once the machine has booted (the thread's meminfo
        before the series: MemTotal - MemFree = 4,167,284 kB); boot-time allocations, module
        memory among them, fill it from the bottom of RAM up, since boot memory is queued
        at the tail of the free lists (mm/page_alloc.c ``__free_pages_core``,
        ``FPI_TO_TAIL``) and allocations take the head, the lowest addresses first
    granule, va_bits : translation geometry (the thread: 4K, 48-bit)
    """

    ram_bytes: int = 256 * GiB
    ram_base_bytes: int = 2 * GiB
    image_text_bytes: int = 32 * MiB
    image_pa_offset_bytes: int = 2 * MiB
    boot_used_bytes: int = 4_167_284 * KiB
    granule: str = "4K"
    va_bits: int = 48

    def __post_init__(self):
        check_int("ram_bytes", self.ram_bytes, lo=GiB, hi=1 << 46)
        check_int("ram_base_bytes", self.ram_base_bytes, lo=0)
        if self.ram_bytes % (2 * MiB) or self.ram_base_bytes % (2 * MiB):
            raise ConfigError("RAM start and size must be 2 MiB aligned", "ram_bytes")
        check_int("image_pa_offset_bytes", self.image_pa_offset_bytes, lo=0)
        check_int("boot_used_bytes", self.boot_used_bytes, lo=0, hi=self.ram_bytes // 2)
        if self.va_bits != 48:
            raise ConfigError("the kernel layout models a 48-bit VA", "va_bits")
        page = eng.arm64(self.granule, self.va_bits).page_bytes  # validates the granule
        for name in ("image_text_bytes", "image_pa_offset_bytes"):
            if getattr(self, name) % page or getattr(self, name) < 0:
                raise ConfigError(f"must be a multiple of the {self.granule} page", name)
        check_int("image_text_bytes", self.image_text_bytes, lo=page)

    @property
    def page_bytes(self) -> int:
        return self.geometry.page_bytes

    @property
    def stack_bytes(self) -> int:
        """``THREAD_SIZE`` with ``VMAP_STACK``: 16 KiB, or one page when pages are larger
        (arch/arm64/include/asm/memory.h ``THREAD_SHIFT``)."""
        return max(16 * KiB, self.page_bytes)

    @property
    def vmemmap_base(self) -> int:
        """``VMEMMAP_START`` = -(1 << (VA_BITS - VMEMMAP_SHIFT)), ``VMEMMAP_SHIFT`` =
        ``PAGE_SHIFT - STRUCT_PAGE_MAX_SHIFT`` (arch/arm64/include/asm/memory.h)."""
        shift = self.geometry.page_shift - 6
        return (1 << 64) - (1 << (self.va_bits - shift))

    @property
    def geometry(self) -> eng.Geometry:
        return eng.arm64(self.granule, self.va_bits)

    @property
    def memstart_bytes(self) -> int:
        """``memstart_addr``: RAM start rounded down to ``ARM64_MEMSTART_ALIGN``."""
        return self.memory_map().memstart

    def linear_va(self, pa: np.ndarray) -> np.ndarray:
        """``__phys_to_virt``: the linear-map VA (full 64-bit, as uint64) of ``pa``."""
        off = np.asarray(pa, dtype=np.uint64) - np.uint64(self.memstart_bytes)
        return off + np.uint64(KERNEL_VA_BASE)

    def vmemmap_va(self, pa: np.ndarray) -> np.ndarray:
        """VA of the ``struct page`` of the page holding ``pa``."""
        pfn = ((np.asarray(pa, dtype=np.uint64) - np.uint64(self.memstart_bytes))
               >> np.uint64(self.geometry.page_shift))
        return np.uint64(self.vmemmap_base) + pfn * np.uint64(STRUCT_PAGE_BYTES)

    def memory_map(self) -> MemoryMap:
        """The structural model's :class:`~kmm.mech.bbml2.MemoryMap` of this layout."""
        return MemoryMap(ram_bytes=self.ram_bytes, granule=self.granule,
                         base_pa=self.ram_base_bytes, kernel_alias_bytes=self.image_text_bytes,
                         kernel_offset_bytes=self.image_pa_offset_bytes)

    def boot_window(self) -> tuple[int, int]:
        """Physical range filled at boot: from the end of the image (2 MiB aligned) up by
        ``boot_used_bytes``."""
        lo = self.ram_base_bytes + self.image_pa_offset_bytes + self.image_text_bytes
        lo = -(-lo // (2 * MiB)) * (2 * MiB)
        page = self.page_bytes
        return lo, lo + -(-self.boot_used_bytes // page) * page

    def runtime_window(self, spread_bytes: int) -> tuple[int, int]:
        """Physical range a benchmark's kernel allocations come from: ``spread_bytes``
        above the boot window (clipped to RAM)."""
        lo = self.boot_window()[1]
        return lo, min(lo + spread_bytes, self.ram_base_bytes + self.ram_bytes)

    def vmemmap_unit_bytes(self) -> int:
        """What ``vmemmap_populate`` maps the struct pages with: PMD blocks with 4K pages
        (``vmemmap_populate_hugepages``), base pages otherwise."""
        return self.geometry.block_bytes[2] if self.granule == "4K" else self.page_bytes

    def vmemmap_span(self) -> tuple[int, int]:
        """VA range of the vmemmap of RAM, rounded out to its mapping unit."""
        page = self.page_bytes
        unit = self.vmemmap_unit_bytes()
        first = (self.ram_base_bytes - self.memstart_bytes) // page
        last = first + self.ram_bytes // page
        lo = self.vmemmap_base + first * STRUCT_PAGE_BYTES // unit * unit
        hi = self.vmemmap_base + -(-(last * STRUCT_PAGE_BYTES) // unit) * unit
        return lo, hi


#: KFENCE_POOL_SIZE with the default 255 objects (include/linux/kfence.h): 512 pages of 4 KiB.
KFENCE_POOL_BYTES = 2 * MiB


def _linear_map(layout: KernelLayout, policy: Policy, config: ForcePte) -> PageTable:
    """The structural model's boot linear map under ``config`` (:class:`ForcePte`); with a
    late KFENCE pool, the pool (after the image alias) already split as KFENCE starts."""
    mm = layout.memory_map()
    if ForcePte(config) == ForcePte.KFENCE_LATE:
        pool = -(-KFENCE_POOL_BYTES // layout.page_bytes) * layout.page_bytes
        return kfence_late_split(dataclasses.replace(mm, kfence_pool_bytes=pool), policy)
    return build_linear_map(mm, policy, config=config)


def _kernel_table(layout: KernelLayout, policy: Policy, ro_ranges_pa: np.ndarray,
                  vmalloc_bytes: int, modules_bytes: int,
                  config: ForcePte = ForcePte.NONE, image_bytes: int | None = None) -> PageTable:
    """The kernel (TTBR1) page table of one policy, as leaf extents.

    Offsets are from :data:`KERNEL_VA_BASE`. The linear map is the structural model's
    (:func:`kmm.mech.bbml2.build_linear_map`: ``map_mem`` at boot). ``ro_ranges_pa`` (rows
    ``pa, size``) are the linear-alias ranges the running kernel made read-only (module text
    and rodata under rodata=full, ``set_memory_ro`` -> ``__change_memory_common`` on the
    alias): under ``FULL_BBML2`` they split their boundaries; under ``RODATA_ON`` the alias
    is not touched (rodata=on does not protect linear aliases); under ``FULL_PTES`` every
    leaf is already a page. ``config`` is the ``force_pte_mapping()`` feature
    (:class:`~kmm.mech.bbml2.ForcePte`) the kernel runs with. ``image_bytes`` is the kernel
    image's mapped span (default ``image_text_bytes``; a captured trace's image sections
    may need more).
    """
    g = layout.geometry
    policy = Policy(policy)
    if policy not in POLICIES:
        raise ConfigError(f"policy must be one of {[POLICY_NAMES[x] for x in POLICIES]}",
                          "policy")
    pt = _linear_map(layout, policy, config)
    mem0 = layout.memstart_bytes
    img_lo = layout.ram_base_bytes + layout.image_pa_offset_bytes
    ro = np.asarray(ro_ranges_pa, dtype=np.int64).reshape(-1, 2)
    if policy == Policy.FULL_BBML2 and ro.shape[0]:
        ops = encode_ops(np.full(ro.shape[0], OP_SET_PERM), ro[:, 0] - mem0, ro[:, 1],
                         perm=int(Perm.R), aux=int(PermSplit.BOUNDARY), geometry=g)
        ret = pt.apply_ops(ops)
        if np.any(ret):
            k = int(np.argmax(ret != 0))
            raise ConfigError(f"permission change at pa {int(ro[k, 0]):#x} failed "
                              f"({int(ret[k])})", "ro_ranges")
    # regions mapped the same way under every policy; their backing pages get distinct
    # nominal physical addresses above RAM so that no two regions alias in a cache
    pt.map(MODULES_OFFSET, modules_bytes, MODULES_BACKING_PA, Perm.RX, policy=Paint.PTES)
    pt.map(IMAGE_OFFSET, image_bytes or layout.image_text_bytes, img_lo, Perm.RX,
           policy=Paint.NO_CONT)
    pt.map(VMALLOC_OFFSET, vmalloc_bytes, VMALLOC_BACKING_PA, Perm.RW, policy=Paint.PTES)
    lo, hi = layout.vmemmap_span()
    paint = Paint.NO_CONT if layout.granule == "4K" else Paint.PTES
    pt.map(lo - KERNEL_VA_BASE, hi - lo, VMEMMAP_BACKING_PA, Perm.RW, policy=paint)
    return pt



def module_alias_ranges(rng: np.random.Generator, pages: int, window: tuple[int, int],
                        page_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Linear-alias ranges (rows ``pa, size``) made read-only by loading modules under
    rodata=full: ``set_memory_ro`` on a module's text and rodata changes the alias of each
    backing page separately (arch/arm64/mm/pageattr.c ``change_memory_common``:
    ``__change_memory_common`` per ``area->pages[i]`` when ``rodata_full``). The backing
    pages are order-0 allocations scattered over ``window`` (the boot window for modules
    loaded at boot, :meth:`KernelLayout.boot_window`)."""
    check_int("pages", pages, lo=0)
    lo, hi = window
    pa = scatter_blocks(rng, pages, page_bytes, lo, hi - lo)
    return np.stack([np.sort(pa), np.full(pages, page_bytes, np.int64)], axis=1)


@dataclass(frozen=True)
class QueueResult:
    """Closed-loop results: ``throughput`` (requests per time unit of ``service``),
    ``utilisation``, mean and ``p99`` response time (same unit)."""

    throughput: float
    utilisation: float
    mean: float
    p99: float


def closed_loop(service_samples: np.ndarray, clients: int, think_mean: float, n_requests: int,
                seed: int, warm_fraction: float = 0.1) -> QueueResult:
    """Closed-loop (memtier-style) queue: ``clients`` connections with one outstanding
    request each and exponential think times of mean ``think_mean`` (network round trip and
    client time), one FCFS worker whose service times are drawn with replacement from
    ``service_samples`` (the simulated per-request service times)."""
    s = np.asarray(service_samples, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or np.any(s <= 0):
        raise ConfigError("needs positive service-time samples", "service_samples")
    check_int("clients", clients, lo=1)
    check_float("think_mean", think_mean, lo=0.0)
    check_int("n_requests", n_requests, lo=100)
    rng = np.random.default_rng(seed)
    service = s[rng.integers(0, s.size, n_requests)]
    think = rng.exponential(think_mean, n_requests) if think_mean > 0 else np.zeros(n_requests)
    first = rng.exponential(think_mean, clients) if think_mean > 0 else np.zeros(clients)
    warm = int(n_requests * warm_fraction)
    resp, busy, span = closed_loop_kernel(service, think, first, warm)
    r = resp[warm:]
    return QueueResult(throughput=(n_requests - warm) / span, utilisation=busy / span,
                       mean=float(r.mean()), p99=float(np.quantile(r, 0.99)))


def think_for_utilisation(service_samples: np.ndarray, clients: int, utilisation: float,
                          n_requests: int, seed: int) -> float:
    """The mean think time at which the closed loop runs the server at ``utilisation``
    (bisection on the simulated queue with the same seed)."""
    check_float("utilisation", utilisation, lo=0.05, hi=0.999)
    mean_s = float(np.mean(service_samples))
    lo, hi = 0.0, clients * mean_s / utilisation * 4
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        u = closed_loop(service_samples, clients, mid, n_requests, seed).utilisation
        if u > utilisation:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------
# translation: leaf sizes per touch, TLB outcomes
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlbSpec:
    """The per-core TLB hierarchy assumed for AmpereOne (its sizes are not published:
    every field is an ``assumed`` parameter).

    Parameters
    ----------
    l1i_entries, l1d_entries : fully associative L1 TLBs
    l2_entries, l2_ways : unified L2 TLB
    honour_cont : the contiguous hint gives one entry per range (IMPLEMENTATION DEFINED)
    max_entry_shift : largest entry a structure holds (30: 1 GiB blocks are held whole,
        as AmpereOne's size-agnostic TLB entries suggest; 21: split to 2 MiB entries)
    walk_cache_entries : stage-1 walk cache of table descriptors above the leaf
    """

    l1i_entries: int = 48
    l1d_entries: int = 48
    l2_entries: int = 2048
    l2_ways: int = 8
    honour_cont: bool = True
    max_entry_shift: int = 30
    walk_cache_entries: int = 64

    def __post_init__(self):
        check_int("l1i_entries", self.l1i_entries, lo=4, hi=512)
        check_int("l1d_entries", self.l1d_entries, lo=4, hi=512)
        check_int("l2_entries", self.l2_entries, lo=64, hi=1 << 16)
        check_int("l2_ways", self.l2_ways, lo=1, hi=64)
        check_int("max_entry_shift", self.max_entry_shift, lo=12, hi=30)
        check_int("walk_cache_entries", self.walk_cache_entries, lo=0, hi=1 << 12)
        if not isinstance(self.honour_cont, bool):
            raise ConfigError(f"must be a bool, got {self.honour_cont!r}", "honour_cont")

    def tlb_config(self, layout: KernelLayout, cpus: int = 1):
        """The :class:`kmm.tlb.TLBConfig` of ``cpus`` cores, each with its own TLBs (the one
        conversion to the engine)."""
        cap = self.max_entry_shift
        l1i = eng.TLBLevelConfig(self.l1i_entries, self.l1i_entries, max_page_shift=cap)
        l1d = eng.TLBLevelConfig(self.l1d_entries, self.l1d_entries, max_page_shift=cap)
        l2 = eng.TLBLevelConfig(self.l2_entries, self.l2_ways, max_page_shift=cap)
        wc = (eng.TLBLevelConfig(self.walk_cache_entries, min(4, self.walk_cache_entries))
              if self.walk_cache_entries else None)
        cfg = eng.TLBConfig(l1i=l1i, l1d=l1d, l2=l2, walk_cache=wc,
                            honour_cont=self.honour_cont, cpus=cpus)
        return cfg.with_geometry(layout.geometry)


class Leaves(NamedTuple):
    """Per-touch translation: leaf ``level`` (Arm numbering), ``cont`` bit, and the log2
    sizes ``page_shift`` (the leaf) and ``cont_shift`` (its contiguous range, 0 if none)."""

    level: np.ndarray
    cont: np.ndarray
    page_shift: np.ndarray
    cont_shift: np.ndarray


def _shift_tables(g: eng.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """log2 leaf bytes and log2 contiguous-range bytes, indexed by level + 1."""
    leaf = np.zeros(5, np.int64)
    cont = np.zeros(5, np.int64)
    for lv in g.leaf_levels:
        leaf[lv + 1] = g.leaf_bytes(lv).bit_length() - 1
        c = g.cont_bytes(lv)
        cont[lv + 1] = c.bit_length() - 1 if c else 0
    return leaf, cont


def trace_leaves(trace: Trace, kernel_pt: PageTable) -> Leaves:
    """Leaf level and sizes of every touch, from the kernel page table; user touches use
    base pages of the same granule (memcached's malloc'd memory, no THP)."""
    g = kernel_pt.geometry
    leaf_shift, cont_shift = _shift_tables(g)
    n = trace.va.shape[0]
    level = np.full(n, 3, np.int64)
    cont = np.zeros(n, np.int64)
    k = trace.region != Region.USER
    off = (trace.va[k] - np.uint64(KERNEL_VA_BASE)).astype(np.int64)
    _pa, lv, ct, _perm, _nid = kernel_pt.translate_many(off)
    if np.any(lv < -1):
        bad = int(off[np.argmax(lv < -1)])
        raise ConfigError(f"touch at kernel offset {bad:#x} is not mapped", "trace")
    level[k] = lv
    cont[k] = ct
    return Leaves(level, cont, leaf_shift[level + 1], np.where(cont != 0, cont_shift[level + 1], 0))


def tlb_outcomes(trace: Trace, leaves: Leaves, spec: TlbSpec, layout: KernelLayout):
    """Run every touch through one core's TLB hierarchy (:mod:`kmm.tlb`).

    Returns ``(outcome, counters)``: per touch 0 (L1 hit), 1 (L2 hit) or 2 (walk), and the
    engine's counters over the whole trace.
    """
    cfg = spec.tlb_config(layout)
    t = eng.TLB(cfg)
    user = trace.region == Region.USER
    counts = t.run(trace.va, record=True, kind=trace.kind, page_shift=leaves.page_shift,
                   cont_shift=leaves.cont_shift, asid=np.where(user, USER_ASID, 0),
                   global_=~user)
    return t.last_outcome.copy(), counts


# ---------------------------------------------------------------------------------------
# per-operation events and their cost
# ---------------------------------------------------------------------------------------
class OpEvent(IntEnum):
    """Per-operation counters (one int64 row per operation).

    ``L1TLB_MISSES`` are L1 I/D TLB refills (each probes the L2 TLB), ``WALKS`` the L2 TLB
    misses; the ``EL1_`` variants count kernel-mode touches only. ``WALK_READS_*`` are the
    descriptor reads of walks by the cache level that served them; ``FIRST_*`` the first
    line of each data touch and ``REST_*`` its other lines, by serving level (L1 hits are
    part of the base CPI and not counted). Instruction fetches occupy no line cache here.
    ``FURTHER_LINES`` and ``FURTHER_LINES_SQ`` are the sum over the operation's data touches
    of each touch's further (streamed) lines ``f`` and of ``f * f``, whatever level served
    them (:func:`simulate_events` counts them from the trace; :func:`stream_lines_per_touch`).
    """

    INSTRUCTIONS = 0
    EL1_INSTRUCTIONS = 1
    TOUCHES = 2
    L1TLB_MISSES = 3
    EL1_L1TLB_MISSES = 4
    WALKS = 5
    EL1_WALKS = 6
    LINEAR_WALKS = 7
    WALK_READS_L1 = 8
    WALK_READS_L2 = 9
    WALK_READS_LLC = 10
    WALK_READS_MEM = 11
    FIRST_L2 = 12
    FIRST_LLC = 13
    FIRST_MEM = 14
    REST_L2 = 15
    REST_LLC = 16
    REST_MEM = 17
    FURTHER_LINES = 18
    FURTHER_LINES_SQ = 19


@dataclass(frozen=True)
class CostSpec:
    """Cost parameters turning events into time, priced through :mod:`kmm.timing` (see the
    README's "Time model"; every one ``assumed`` unless a source is given in params/).

    Parameters
    ----------
    cpu_ghz : core clock
    cpi_base : cycles per instruction with every modelled stall removed (includes L1
        hits and instruction supply)
    l2_tlb_hit_cycles : added by an L1 TLB miss that hits the L2 TLB
    l1_hit_cycles, l2_hit_cycles : load-to-use latency of an L1 D / L2 hit (walker reads
        that hit L1 D pay ``l1_hit_cycles``)
    llc_hit_ns : latency of a system-level-cache hit
    dram_ns : idle latency of local DRAM: the floor of the loaded-latency curve
        (:func:`kmm.timing.memory_system`), which raises it with the simulated traffic and
        ``background``
    scatter_mlp, stream_mlp : deprecated and not read: the fixed overlap factors of the
        idle-latency pricing :func:`op_cycles` used before; kept so that existing calls
        construct (overlap now comes from the core model)
    background : share of the memory peak drawn by the cores that are not simulated
        (default: ``kmm/data/calibration.yaml`` ``background.fraction``)
    outstanding, window : misses beyond L1 the core keeps outstanding and its reorder
        window (defaults: :func:`kmm.timing.ampereone_core`)
    dependent_first : share of the touches' first lines whose address depends on an earlier
        miss (a hash chain, a list walk), which cannot overlap: the traces do not show it,
        so it is assumed and swept (default: ``kmm/data/calibration.yaml``
        ``core.dependent_data``)

    A walk's descriptor reads are dependent and charged in full; the touch that needed the
    walk waits for it. Data lines overlap at two levels: of the first lines of the data
    touches, ``dependent_first`` are dependent (charged in full) and the rest overlap by the
    first-order interval model's run-average ``MLP`` (:func:`kmm.timing.mlp_eff`, at most
    ``outstanding``); a touch's further, streamed
    lines (one loop or one prefetcher stream within one reorder window) with each other,
    ``min(outstanding, lines per touch)`` (:func:`kmm.timing.stream_overlap`), never less
    than the run's ``MLP``.
    """

    cpu_ghz: float = 3.0
    cpi_base: float = 0.6
    l2_tlb_hit_cycles: float = 5.0
    l1_hit_cycles: float = 4.0
    l2_hit_cycles: float = 11.0
    llc_hit_ns: float = 35.0
    dram_ns: float = 81.0
    scatter_mlp: float = 1.5
    stream_mlp: float = 16.0
    background: float | None = None
    outstanding: int | None = None
    window: int | None = None
    dependent_first: float | None = None

    def __post_init__(self):
        check_float("cpu_ghz", self.cpu_ghz, lo=0.5, hi=6.0)
        check_float("cpi_base", self.cpi_base, lo=0.1, hi=5.0)
        for name in ("l2_tlb_hit_cycles", "l1_hit_cycles", "l2_hit_cycles"):
            check_float(name, getattr(self, name), lo=0.0, hi=200.0)
        check_float("llc_hit_ns", self.llc_hit_ns, lo=1.0, hi=500.0)
        check_float("dram_ns", self.dram_ns, lo=10.0, hi=1000.0)
        check_float("scatter_mlp", self.scatter_mlp, lo=1.0, hi=64.0)
        check_float("stream_mlp", self.stream_mlp, lo=1.0, hi=256.0)
        if (self.scatter_mlp, self.stream_mlp) != (1.5, 16.0):
            warnings.warn("CostSpec.scatter_mlp and stream_mlp are not read: overlap comes "
                          "from the core model (outstanding, window)", DeprecationWarning,
                          stacklevel=3)
        core = eng.ampereone_core()
        if self.background is None:
            object.__setattr__(self, "background",
                               eng.memory_system(np.ones((1, 1))).background)
        if self.outstanding is None:
            object.__setattr__(self, "outstanding", core.outstanding)
        if self.window is None:
            object.__setattr__(self, "window", core.window)
        if self.dependent_first is None:
            object.__setattr__(self, "dependent_first", core.dep_data)
        check_float("dependent_first", self.dependent_first, lo=0.0, hi=1.0)
        check_float("background", self.background, lo=0.0, hi=0.99)
        object.__setattr__(self, "outstanding",
                           check_int("outstanding", int(self.outstanding), lo=1, hi=1024))
        object.__setattr__(self, "window", check_int("window", int(self.window), lo=1,
                                                     hi=4096))

    def latency_cycles(self) -> tuple[float, float, float, float]:
        """Cycles of a read served by L1, L2, the LLC and (idle) DRAM."""
        g = self.cpu_ghz
        return (self.l1_hit_cycles, self.l2_hit_cycles, self.llc_hit_ns * g, self.dram_ns * g)

    def core(self, cpi_base: float | None = None) -> eng.CoreModel:
        """The AmpereOne-class :class:`kmm.timing.CoreModel` of these costs: walks
        dependent; the data counts it is given are independent lines (:func:`price_ops`
        leaves the dependent first lines out of them; instruction lines are not simulated
        here)."""
        return eng.ampereone_core(ghz=self.cpu_ghz,
                                  cpi_base=self.cpi_base if cpi_base is None else cpi_base,
                                  l2_cycles=self.l2_hit_cycles, llc_ns=self.llc_hit_ns,
                                  l2_tlb_cycles=self.l2_tlb_hit_cycles,
                                  outstanding=self.outstanding, window=self.window,
                                  dep_data=0.0, dep_walk=1.0)

    def memory(self) -> eng.MemorySystem:
        """One memory node (the thread's machine is one socket) of idle latency
        ``dram_ns``, peak and load curve from the calibration, at ``background``."""
        return eng.memory_system(np.array([[self.dram_ns]]), background=self.background)


class OpPricing(NamedTuple):
    """:func:`price_ops`: per operation ``cycles`` and ``translation_cycles``; the run's
    loaded memory latency (ns), the overlap of its independent misses, and the
    :class:`kmm.timing.TimeResult` of the run."""

    cycles: np.ndarray
    translation_cycles: np.ndarray
    memory_ns: float
    mlp: float
    time: object


def run_counts(events: np.ndarray) -> eng.TimeCounts:
    """:class:`kmm.timing.Counts` of a run of operations (``events`` rows, one core): walk
    descriptor reads by level served (source walk), the first and further lines of data
    touches (source data), L1 TLB refills as L2 TLB hits; memory is one node."""
    e = np.asarray(events, dtype=np.float64).reshape(-1, len(OpEvent)).sum(axis=0)
    E = OpEvent
    served = np.zeros((1, 3, 4))
    served[0, eng.SOURCE_WALK, :] = e[E.WALK_READS_L1:E.WALK_READS_MEM + 1]
    served[0, eng.SOURCE_DATA, eng.SERVED_L2:] = (e[E.FIRST_L2:E.FIRST_MEM + 1]
                                                   + e[E.REST_L2:E.REST_MEM + 1])
    mem = served[:, :, eng.SERVED_MEMORY][:, :, None].copy()
    return eng.TimeCounts(instructions=np.array([e[E.INSTRUCTIONS]]), served=served, mem=mem,
                          l2_tlb_hits=np.array([e[E.L1TLB_MISSES]]), cpus=np.ones(1))


def stream_lines_per_touch(events: np.ndarray) -> np.ndarray:
    """Per operation: the further (streamed) lines of the touch a further line belongs to,
    averaged over the operation's further lines (``FURTHER_LINES_SQ / FURTHER_LINES``; 0
    when it has none): a 4 KiB copy's 63 further lines each see a touch of 63, an
    operation of one such copy and 20 two-line touches sees (63*63 + 20) / 83 = 48."""
    ev = np.asarray(events, dtype=np.float64).reshape(-1, len(OpEvent))
    E = OpEvent
    f = ev[:, E.FURTHER_LINES]
    return np.divide(ev[:, E.FURTHER_LINES_SQ], f, out=np.zeros_like(f), where=f > 0)


def price_ops(events: np.ndarray, cost: CostSpec) -> OpPricing:
    """Price every operation of a run through :func:`kmm.timing.solve`.

    The run is ``events``' operations back to back on one core; its memory traffic and
    ``background`` load the memory latency (the fixed point of latency and time). Per
    operation (ns): instructions x ``cpi_base``, L1 TLB refills x ``l2_tlb_hit_cycles``, walk
    descriptor reads at the latency of the level that served them (dependent: in full; an
    L1 D hit ``l1_hit_cycles``, which :mod:`kmm.timing` leaves in the base and this folds
    into it exactly), and data lines at their level's latency over two overlaps: the first
    line of each touch in full for the ``dependent_first`` share, the rest over the run's
    ``MLP`` (:func:`kmm.timing.mlp_eff` of the run's independent data lines: those first
    lines and every further line), the further (streamed) lines of a touch, independent of
    each other and within one reorder window, over :func:`kmm.timing.stream_overlap` of the
    operation's :func:`stream_lines_per_touch` (``min(outstanding, lines)``), never less
    than the run's ``MLP`` (they are independent misses of the run too).

    The solve sees every line's traffic and this work: its data counts are the lines'
    full-latency equivalents (first lines x (d + (1 - d) / ``MLP``) + streamed lines / their
    overlap, dependent), the rest of their memory lines are ``extra_lines`` (traffic, no stall); so
    the operations' times add up to the solve's work (its ``mlp`` is 1: the overlaps are
    applied here), and a bandwidth-bound run stretches each in proportion."""
    ev = np.asarray(events, dtype=np.float64).reshape(-1, len(OpEvent))
    E = OpEvent
    g = cost.cpu_ghz
    c = run_counts(ev)
    ins = float(c.instructions[0])
    l1_walk = float(ev[:, E.WALK_READS_L1].sum()) * cost.l1_hit_cycles
    if l1_walk > 0.0 and ins <= 0.0:
        raise ConfigError("walk reads in a run of no instructions", "events")
    cpi = cost.cpi_base + (l1_walk / ins if ins > 0.0 else 0.0)
    core = cost.core(cpi_base=cpi)
    first = ev[:, E.FIRST_L2:E.FIRST_MEM + 1]
    rest = ev[:, E.REST_L2:E.REST_MEM + 1]
    d = float(cost.dependent_first)
    indep = c.served.copy()             # the run's independent data lines set its MLP
    indep[0, eng.SOURCE_DATA, eng.SERVED_L2:] = (1.0 - d) * first.sum(axis=0) + rest.sum(axis=0)
    mlp = float(eng.mlp_eff(eng.TimeCounts(
        instructions=c.instructions, served=indep,
        mem=indep[:, :, eng.SERVED_MEMORY][:, :, None].copy(), l2_tlb_hits=c.l2_tlb_hits,
        cpus=c.cpus), core)[0])
    # streamed lines are independent misses too: never less overlap than the run's MLP
    stream = np.maximum(mlp, np.asarray(eng.stream_overlap(stream_lines_per_touch(ev), core),
                                        np.float64))
    equiv = first * (d + (1.0 - d) / mlp) + rest / stream[:, None]   # [op, L2/LLC/memory]
    served = c.served.copy()
    served[0, eng.SOURCE_DATA, eng.SERVED_L2:] = equiv.sum(axis=0)
    mem = served[:, :, eng.SERVED_MEMORY][:, :, None].copy()
    lines_mem = float(first[:, 2].sum() + rest[:, 2].sum())
    extra = np.array([[max(lines_mem - float(mem[0, eng.SOURCE_DATA, 0]), 0.0)]])
    solve_counts = eng.TimeCounts(instructions=c.instructions, served=served, mem=mem,
                                  l2_tlb_hits=c.l2_tlb_hits, cpus=c.cpus, extra_lines=extra)
    r = eng.solve_time(solve_counts, cost.memory(), dataclasses.replace(core, dep_data=1.0))
    lat = float(r.latency_ns[0, 0])
    hit_ns = np.array([cost.l1_hit_cycles / g, cost.l2_hit_cycles / g, cost.llc_hit_ns, lat])
    walk = ev[:, E.WALK_READS_L1:E.WALK_READS_MEM + 1] @ hit_ns
    tlb = ev[:, E.L1TLB_MISSES] * cost.l2_tlb_hit_cycles / g
    ns = ev[:, E.INSTRUCTIONS] * cost.cpi_base / g + tlb + walk + equiv @ hit_ns[1:]
    total = float(ns.sum())
    stretch = r.wall_ns / total if r.bound == "bandwidth" and total > 0.0 else 1.0
    return OpPricing(cycles=ns * stretch * g, translation_cycles=(tlb + walk) * g,
                     memory_ns=lat, mlp=mlp, time=r)


def op_cycles(events: np.ndarray, cost: CostSpec) -> np.ndarray:
    """Cycles of every operation of a run (:func:`price_ops`)."""
    return price_ops(events, cost).cycles


def translation_cycles(events: np.ndarray, cost: CostSpec) -> np.ndarray:
    """The part of :func:`op_cycles` spent on translation (L2 TLB hits and walks, at the
    run's loaded memory latency)."""
    return price_ops(events, cost).translation_cycles


# ---------------------------------------------------------------------------------------
# the full path per operation: the engine's TLB, walk and cache kernels, touch by touch
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CacheSpec:
    """One core's caches and its share of the system-level cache.

    Sizes from the AmpereOne product brief (16 KiB L1 I, 64 KiB L1 D, 2 MiB 8-way L2 per
    core, 64 MiB system-level cache); associativities not published there are ``assumed``.
    ``llc_share_bytes``: the part of the shared cache one busy core can hold (the SLC
    divided among the cores the benchmark keeps busy).
    """

    l1i_bytes: int = 16 * KiB
    l1d_bytes: int = 64 * KiB
    l1_ways: int = 4
    l2_bytes: int = 2 * MiB
    l2_ways: int = 8
    llc_share_bytes: int = 16 * MiB
    llc_ways: int = 16

    def __post_init__(self):
        for name in ("l1i_bytes", "l1d_bytes", "l2_bytes", "llc_share_bytes"):
            check_int(name, getattr(self, name), lo=4 * KiB)
        for name in ("l1_ways", "l2_ways", "llc_ways"):
            check_int(name, getattr(self, name), lo=1, hi=64)

    def cache_config(self, cpus: int = 1):
        """The :class:`kmm.cache.CacheConfig` of ``cpus`` cores with private L1 and L2 and
        the shared cache (walker reads enter at L2)."""
        return eng.CacheConfig(l1i=eng.CacheLevelConfig(self.l1i_bytes, self.l1_ways),
                               l1d=eng.CacheLevelConfig(self.l1d_bytes, self.l1_ways),
                               l2=eng.CacheLevelConfig(self.l2_bytes, self.l2_ways),
                               llc=eng.CacheLevelConfig(self.llc_share_bytes, self.llc_ways),
                               cpus=cpus)


class OpTouches(NamedTuple):
    """Kernel view of a trace: per touch ``va`` int64 (uint64 view), ``pa`` int64,
    ``flags`` uint8 (:mod:`kmm.tlb` kind | global), ``shift`` uint8 (TLB entry size),
    ``leaf`` int64 (leaf level), ``asid`` int32, ``lines`` int64, ``op`` int64 and ``cls``
    int64 (bit 0: EL1, bit 1: linear map)."""

    va: np.ndarray
    pa: np.ndarray
    flags: np.ndarray
    shift: np.ndarray
    leaf: np.ndarray
    asid: np.ndarray
    lines: np.ndarray
    op: np.ndarray
    cls: np.ndarray


_CLS_EL1, _CLS_LINEAR, _CLS_STREAMED, _CLS_NO_READ, _CLS_DEMAND = 1, 2, 4, 8, 16


#: Tag of a touch on the engine's path: ``op * N_CLASSES + cls`` (``cls`` bit 0: EL1, bit 1:
#: linear map, bit 2: its first line was prefetched, bit 3: a store that reads nothing, bit 4:
#: its further lines are demand misses), so :class:`kmm.walk.TagEvent` counters come back
#: per operation and class.
N_CLASSES = 32


class Prefetch(IntEnum):
    """Where a stream prefetcher stops (:class:`MemorySpec`): ``OFF`` keeps the plain
    charging (first line of a touch a demand miss, the rest streamed); the others run
    :func:`stream_prefetch_kernel` with a stream's bound at every 4 KiB page, at the
    translation's size, or nowhere."""

    OFF = 0
    PAGE_4K = 1
    TRANSLATION = 2
    NEVER = 3


#: A store touch of at least this many consecutive lines (1 KiB: a block copy or clear)
#: writes whole lines; shorter stores update objects whose lines are partly written.
STREAM_STORE_LINES = 16


@dataclass(frozen=True)
class MemorySpec:
    """Memory-system mechanisms beyond the caches (issue "prefetch and stores").

    Parameters
    ----------
    prefetch : :class:`Prefetch` boundary rule of the stream prefetcher
    prefetch_streams : streams tracked per CPU
    prefetch_ramp_lines : lines of a new stream that are demand misses while the prefetcher
        trains (the first line included)
    store_no_read : stores of whole lines (``DC ZVA`` in ``clear_page``, the ``stnp``
        pairs of ``copy_page``, copies of at least :data:`STREAM_STORE_LINES` lines) do not
        read the line first (write streaming mode), so they cost no miss latency
    """

    prefetch: int = 0
    prefetch_streams: int = 8
    prefetch_ramp_lines: int = 2
    store_no_read: bool = False

    def __post_init__(self):
        check_int("prefetch", int(self.prefetch), lo=0, hi=3)
        check_int("prefetch_streams", self.prefetch_streams, lo=1, hi=64)
        check_int("prefetch_ramp_lines", self.prefetch_ramp_lines, lo=1, hi=64)
        if not isinstance(self.store_no_read, bool):
            raise ConfigError(f"must be a bool, got {self.store_no_read!r}", "store_no_read")


def memory_classes(trace: Trace, leaves: Leaves, mem: MemorySpec):
    """Apply :class:`MemorySpec` to a trace: returns ``(index, lines, extra_cls)`` where
    ``index`` picks the touches of the trace to run (a touch that starts a prefetch stream
    appears twice: its demand head and its prefetched tail), ``lines`` their lines and
    ``extra_cls`` their class bits (streamed, no-read, demand)."""
    return _memory_classes(trace, leaves, mem)[:3]


def _memory_classes(trace: Trace, leaves: Leaves, mem: MemorySpec):
    """:func:`memory_classes` and each touch's first-line offset in lines from its trace
    touch's (a prefetched tail's: its head's lines; else 0)."""
    n = trace.va.shape[0]
    lines = trace.lines.astype(np.int64)
    store_stream = np.zeros(n, bool)
    if mem.store_no_read:
        store_stream = (trace.kind == Kind.STORE) & (lines >= STREAM_STORE_LINES)
    cls = np.where(store_stream, _CLS_NO_READ, 0).astype(np.int64)
    if Prefetch(mem.prefetch) == Prefetch.OFF:
        return np.arange(n), lines, cls, np.zeros(n, np.int64)
    data = (trace.kind != Kind.IFETCH) & ~store_stream
    shift = np.where(leaves.cont_shift > 0, leaves.cont_shift, leaves.page_shift)
    cpu = np.zeros(n, np.int64) if trace.cpu is None else trace.cpu.astype(np.int64)
    cont, demand = stream_prefetch_kernel(np.ascontiguousarray(trace.pa, np.int64), lines,
                                          data, cpu, shift.astype(np.int64), int(mem.prefetch),
                                          int(mem.prefetch_streams),
                                          int(mem.prefetch_ramp_lines))
    # a new stream: its first 1 + demand lines are demand misses, the rest prefetched
    return split_streams(lines, cls, data, cont, demand)


def op_events(by_tag: np.ndarray, n_ops: int) -> np.ndarray:
    """Per-operation :class:`OpEvent` counters (all but the instruction counts) from the
    path's counters per tag ``op * N_CLASSES + cls``."""
    T = TagEvent
    b = np.asarray(by_tag, np.int64).reshape(n_ops, N_CLASSES, len(T))
    el1 = [c for c in range(N_CLASSES) if c & _CLS_EL1]
    linear = [c for c in range(N_CLASSES) if c & _CLS_LINEAR]
    b = b.copy()
    streamed = [c for c in range(N_CLASSES) if c & _CLS_STREAMED]
    demand = [c for c in range(N_CLASSES) if c & _CLS_DEMAND]
    no_read = [c for c in range(N_CLASSES) if c & _CLS_NO_READ]
    for k in range(4):
        f, r = T.FIRST_L1 + k, T.REST_L1 + k
        b[:, streamed, r] += b[:, streamed, f]      # a prefetched first line streams
        b[:, streamed, f] = 0
        b[:, demand, f] += b[:, demand, r]          # lines of a training stream wait
        b[:, demand, r] = 0
        b[:, no_read, f] = 0                        # whole-line stores read nothing
        b[:, no_read, r] = 0
    ev = np.zeros((n_ops, len(OpEvent)), np.int64)
    E = OpEvent
    ev[:, E.TOUCHES] = b[:, :, T.ACCESSES].sum(1)
    ev[:, E.L1TLB_MISSES] = b[:, :, T.L1_TLB_MISSES].sum(1)
    ev[:, E.EL1_L1TLB_MISSES] = b[:, el1, T.L1_TLB_MISSES].sum(1)
    ev[:, E.WALKS] = b[:, :, T.WALKS].sum(1)
    ev[:, E.EL1_WALKS] = b[:, el1, T.WALKS].sum(1)
    ev[:, E.LINEAR_WALKS] = b[:, linear, T.WALKS].sum(1)
    for k in range(4):  # served by L1, L2, LLC, memory
        ev[:, E.WALK_READS_L1 + k] = b[:, :, T.WALK_READS_L1 + k].sum(1)
    for k in range(3):  # L1 line hits are part of the base CPI
        ev[:, E.FIRST_L2 + k] = b[:, :, T.FIRST_L2 + k].sum(1)
        ev[:, E.REST_L2 + k] = b[:, :, T.REST_L2 + k].sum(1)
    return ev


def path_config(layout: KernelLayout, tlb_spec: TlbSpec, cache_spec: CacheSpec,
                cpus: int = 1):
    """The engine's :class:`kmm.walk.PathConfig` of ``cpus`` cores of the modelled machine."""
    return eng.PathConfig(tlb=tlb_spec.tlb_config(layout, cpus),
                          caches=cache_spec.cache_config(cpus), stage1=layout.geometry)


def op_touches(trace: Trace, leaves: Leaves, tlb_config) -> OpTouches:
    """Validate the per-touch TLB inputs with the engine (:func:`kmm.tlb.make_accesses`) and
    pack the kernel arrays (the one conversion of a trace)."""
    user = trace.region == Region.USER
    acc = eng.make_accesses(tlb_config, trace.va, kind=trace.kind, page_shift=leaves.page_shift,
                            cont_shift=leaves.cont_shift, asid=np.where(user, USER_ASID, 0),
                            global_=~user)
    cls = trace.el1.astype(np.int64) * _CLS_EL1 + (trace.region == Region.LINEAR) * _CLS_LINEAR
    return OpTouches(va=acc.va, pa=np.ascontiguousarray(trace.pa, np.int64), flags=acc.flags,
                     shift=acc.shift, leaf=np.ascontiguousarray(leaves.level, np.int64),
                     asid=acc.asid, lines=trace.lines.astype(np.int64),
                     op=trace.op.astype(np.int64), cls=cls.astype(np.int64))


def simulate_events(trace: Trace, leaves: Leaves, layout: KernelLayout, tlb_spec: TlbSpec,
                    cache_spec: CacheSpec, mem: MemorySpec = MemorySpec()) -> np.ndarray:
    """Per-operation :class:`OpEvent` counters of ``trace`` (fresh TLBs, walk cache and
    caches; one core, or one per CPU of ``trace.cpu``, each with its own TLBs and private
    caches, the operation's events summed over them), int64 ``[n_ops, len(OpEvent)]``.
    ``mem`` adds the prefetcher and store rules (:func:`memory_classes`)."""
    cpus = 1 if trace.cpu is None else int(trace.cpu.max(initial=0)) + 1
    cfg = path_config(layout, tlb_spec, cache_spec, cpus)
    # fresh engine state (TLBs, walk cache, table-frame map, caches), counters per tag
    path = eng.Path(cfg, tags=trace.n_ops * N_CLASSES)
    idx, lines, extra, offset = _memory_classes(trace, leaves, mem)
    region = trace.region[idx]
    user = region == Region.USER
    cls = (trace.el1[idx].astype(np.int64) * _CLS_EL1
           + (region == Region.LINEAR) * _CLS_LINEAR + extra)
    kind = trace.kind[idx]
    step = offset * LINE_BYTES
    pa = trace.pa[idx] + step
    va = trace.va[idx] + step.astype(np.uint64)
    res = path.run(va, kind=kind, pa=pa, leaf_level=leaves.level[idx],
                   cont=leaves.cont[idx], asid=np.where(user, USER_ASID, 0), global_=~user,
                   cpu=None if trace.cpu is None else trace.cpu[idx].astype(np.int64),
                   tag=trace.op[idx].astype(np.int64) * N_CLASSES + cls,
                   lines=np.where(kind == Kind.IFETCH, 0, lines))
    ev = op_events(res.by_tag, trace.n_ops)
    # each data touch's further lines (a prefetched tail: all its lines; a training stream's
    # head and a whole-line store: none, as op_events charges them)
    further = np.where(extra & _CLS_STREAMED, lines, lines - 1)
    further = np.where((kind == Kind.IFETCH) | ((extra & (_CLS_NO_READ | _CLS_DEMAND)) != 0),
                       0, np.maximum(further, 0)).astype(np.int64)
    op = trace.op[idx].astype(np.int64)
    ev[:, OpEvent.FURTHER_LINES] = np.bincount(op, weights=further, minlength=trace.n_ops)
    ev[:, OpEvent.FURTHER_LINES_SQ] = np.bincount(op, weights=further * further,
                                                  minlength=trace.n_ops)
    ev[:, OpEvent.INSTRUCTIONS] = np.rint(trace.instructions).astype(np.int64)
    ev[:, OpEvent.EL1_INSTRUCTIONS] = np.rint(trace.el1_instructions).astype(np.int64)
    return ev


# Imported last: these modules build on the definitions above.
from .workload import scatter_blocks, Trace
from .kernels import closed_loop_kernel, split_streams, stream_prefetch_kernel
