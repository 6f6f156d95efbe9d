"""BBML2 block-mapped linear map: kernel TLB pressure and the thread's benchmarks.

The "arm64: support FEAT_BBM level 2 and large block mapping when rodata=full" series lets
the kernel paint the linear map with blocks and contiguous ranges under ``rodata=full``,
splitting a leaf only where a permission change needs a boundary. Without it,
``rodata=full`` forces ``NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS`` on the whole linear map
(arch/arm64/mm/mmu.c ``map_mem``, ``can_set_direct_map()``), i.e. 4K PTEs: 512 MiB of PTE
tables for 256 GiB, and one TLB entry per 4K page the kernel touches.

This module evaluates the thread's benchmark claims on its machine (AmpereOne, 192 cores,
one socket, 256 GB, 4K pages, 48-bit VA): for each linear-map :class:`Policy` the kernel's
data-side accesses of a benchmark-shaped workload run through the engine's TLB hierarchy
(:mod:`kmm.tlb`), and the misses through page walks whose descriptor reads compete with
data for the caches; counted events times cost parameters give cycles per operation,
throughput, kernel TLB MPKI and, for memcached, a per-request service-time distribution
that drives a closed-loop queue (:func:`closed_loop`) for P99 latency.

Policies (:class:`Policy`)
--------------------------
``FULL_PTES``   rodata=full without BBML2: the linear map is PTEs only, no contiguous hint.
``RODATA_ON``  rodata=on: PUD/PMD blocks and contiguous ranges wherever aligned; the linear
               alias of the kernel image ``[_stext, __init_begin)`` without contiguous
               ranges (``map_mem``: ``NO_CONT_MAPPINGS`` for that interval).
``FULL_BBML2`` rodata=full with the series: painted as rodata=on, then every permission
               change made by the running kernel (module text and rodata made read-only,
               with their linear aliases under rodata=full) splits only at its boundaries
               (``PermSplit.BOUNDARY`` of :mod:`kmm.pagetable`).

The rest of the kernel's address space is the same under every policy: kernel text in the
image (2M blocks, ``map_kernel_segment``), module text (4K PTEs in the module area),
vmalloc'd thread stacks (``VMAP_STACK``, 4K PTEs), vmemmap (PMD blocks,
``vmemmap_populate`` with section maps) and user memory (4K PTEs, ASID-tagged).

Workload access patterns (derived from the code paths, fixed before any result was read)
-----------------------------------------------------------------------------------------
Each operation is a list of *touches*: a run of consecutive 64-byte lines inside one 4 KiB
page, with a kind (load, store, instruction fetch), the exception level making it (EL1 for
kernel, EL0 for user code) and the region holding it. The TLB sees one lookup per touch
(later lines of the same touch hit the L1 TLB entry just filled); the caches see every line.

memcached (B3-B6), one request per operation, memtier_benchmark defaults (4 client threads
x 50 connections, ``--ratio 1:10`` SET:GET, 32-byte values, random keys, one outstanding
request per connection) against memcached defaults (4 worker threads, ``-m 64`` MiB of item
memory), so one worker core serves ``connections`` = 50 connections:

- receive softirq: the NIC's completion-ring entry (linear map, advancing), the receive
  buffer in a ``page_pool`` page (linear map; ``rx_ring_pages`` pages cycling, two
  buffers per page) and its ``struct page`` (vmemmap), an ``sk_buff`` from the per-CPU
  slab (a small hot pool), the connection's ``tcp_sock`` (``TCP`` slab, 2.3 KiB objects
  packed 13 to a 32 KiB slab) and ``epitem`` (128 B), the ``eventpoll`` and task;
- ``epoll_wait`` + ``read``: the thread's vmalloc'd stack, the connection's ``file``
  (256 B, ``filp``) and socket inode (``sock_inode_cache``, 0.7 KiB), ``tcp_sock`` again,
  ``copy_to_user`` of the request (about 70 B) from the receive buffer into the
  connection's read buffer (user memory, touched at EL1);
- memcached itself (EL0): the connection structure and read buffer, one hash bucket
  (random over an 8 MiB table: 2^20 buckets once 64 MiB of small items are stored), the
  item (random over 64 MiB of items);
- ``sendmsg``: stack, ``file``, socket inode, ``tcp_sock``, an ``sk_buff`` (fclone slab,
  hot), ``copy_from_user`` of the response from the item into the task's page fragment
  (order-3 pages filled sequentially), route/neighbour/qdisc objects (a few hot pages),
  the transmit descriptor ring, the doorbell (ioremap, vmalloc area);
- transmit completion: completion-ring entry, ``sk_buff`` free, fragment ``struct page``;
- instruction fetch: the network stack's path through the kernel image (about 100 4 KiB
  text granules, 2M-block mapped) and the NIC driver's module text (16 granules, 4K PTEs);
  memcached's own text (user, 4K PTEs).

Physical placement: boot-time allocations fill the bottom of RAM (the boot window, the
4 GiB the thread's meminfo shows in use on the idle machine); the slab pages of the
connection objects and network buffers a benchmark allocates come from the
``kernel_spread_bytes`` above it (:meth:`KernelLayout.runtime_window`). Under
``FULL_BBML2`` the linear aliases of module memory made read-only at load sit in the boot
window (modules loaded at boot) or, as a sensitivity case, among the benchmark's objects.

dm-crypt (B7), one 4 KiB block per operation, the v3 cover letter's fio job (``--rw=write --bs=4k
--ioengine=sync --iodepth=1 --numjobs=1``, buffered, ext4 on dm-crypt on a 128 GB ``brd``
ramdisk, 100 GB written): the writer's ``write`` (stack, file and inode, page-cache xarray
node, a new page-cache page and its ``struct page``, ``copy_from_user`` of 4 KiB from fio's
buffer, a ``buffer_head``); writeback of the block written ``writeback_lag_ops`` earlier
(the dirty limit keeps tens of GB in flight, so the page is cold): dm-crypt reads the
page-cache page and writes a bounce page (``crypt_alloc_buffer``: mempool pages recycled
LIFO, hot), brd zeroes a newly allocated page (``__GFP_ZERO``) and copies the bounce page
into it, xarray nodes of brd and of the page cache, ``struct page`` of each page; module
text of dm-crypt and brd. Every op's work is charged to one core (the writer is throttled to
writeback once the dirty limit is reached).

Sequential read (B8), one ``read`` of ``read_bytes`` (xfs_io ``pread`` default 4 KiB) per
operation from a cached 100 GB XFS file: stack, file and inode, the page-cache xarray node,
the folio's ``struct page``, ``copy_page_to_iter`` of the page (cold: 100 GB does not fit
any cache) into xfs_io's user buffer (hot, touched at EL1), XFS module text.

Page-cache, brd and bounce pages come from the page allocator in physically contiguous runs
of ``run_pages`` pages (:func:`page_runs`) placed at random over all of RAM (200 GB of
page cache and ramdisk cover most of it). Other granules: touches stay cut in 4 KiB chunks,
allocations are pages of the granule (consecutive 4 KiB blocks share a page-cache and a
ramdisk page), ``THREAD_SIZE`` is a page when pages exceed 16 KiB, vmemmap uses base pages.

From events to the claims
-------------------------
:func:`simulate_events` runs every touch of one core through the engine's full path
(:class:`kmm.walk.Path`: TLBs, ``stage1_walk`` with its walk cache and table frames, the line
caches), each touch tagged by its operation and class, and folds the path's counters per
tag into :class:`OpEvent` per operation (:func:`op_events`). Cycles per operation
(:func:`op_cycles`) = instructions x ``cpi_base`` + L1 TLB misses x ``l2_tlb_hit_cycles`` +
every walk's descriptor reads at the latency of the level that served them (dependent,
charged in full) + the first line of each data touch at its latency / ``scatter_mlp`` + the
further lines / ``stream_mlp``. Instruction lines are not simulated in the line caches
(``cpi_base`` covers instruction supply); instruction fetches do go through the TLBs.

- Kernel TLB MPKI: walks (L2 TLB misses) of kernel-mode touches per 1000 kernel
  instructions, as Arm's ``DTLB_WALK``/``ITLB_WALK`` per kilo-instruction metrics; the L1
  refill rate is reported beside it.
- Throughput: operations per second of one core (dm-crypt IOPS, read bandwidth); memcached's
  is the closed loop's (:func:`closed_loop`: the worker's connections, one request
  outstanding each, exponential think time, service times drawn from the simulated
  requests); P99 comes from the same loop, so B3 and B4 share one operating point.
- B6 compares rodata=full+BBML2 with rodata=on; its MPKI ratio uses rodata=on's MPKI floored
  at one miss per measured window, since the modelled rodata=on kernel makes almost none.
- Every ``assumed`` parameter of params/bbml2_perf.yaml is swept jointly
  (:func:`joint_sweep`, a Latin hypercube) and each claim is recorded with its values over
  the sweep.

Not modelled: kernel activity outside the benchmark paths (timers, scheduler, other
softirqs), hardware prefetchers and their behaviour at translation boundaries, other cores.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from .. import engine as eng
from ..config import check_float, check_int
from ..engine import (KIND_IFETCH, OP_SET_PERM, PageTable, Paint, Perm, PermSplit, TagEvent,
                      attr_cont, attr_level, encode_ops, njit)
from ..errors import ConfigError
from ..sampling import latin_hypercube
from .bbml2 import POLICY_NAMES, MemoryMap, build_linear_map
from .bbml2 import LinearMapPolicy as Policy

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


def _kernel_table(layout: KernelLayout, policy: Policy, ro_ranges_pa: np.ndarray,
                  vmalloc_bytes: int, modules_bytes: int) -> PageTable:
    """The kernel (TTBR1) page table of one policy, as leaf extents.

    Offsets are from :data:`KERNEL_VA_BASE`. The linear map is the structural model's
    (:func:`kmm.mech.bbml2.build_linear_map`: ``map_mem`` at boot). ``ro_ranges_pa`` (rows
    ``pa, size``) are the linear-alias ranges the running kernel made read-only (module text
    and rodata under rodata=full, ``set_memory_ro`` -> ``__change_memory_common`` on the
    alias): under ``FULL_BBML2`` they split their boundaries; under ``RODATA_ON`` the alias
    is not touched (rodata=on does not protect linear aliases); under ``FULL_PTES`` every
    leaf is already a page.
    """
    g = layout.geometry
    policy = Policy(policy)
    if policy not in POLICIES:
        raise ConfigError(f"policy must be one of {[POLICY_NAMES[x] for x in POLICIES]}",
                          "policy")
    pt = build_linear_map(layout.memory_map(), policy)
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
    pt.map(IMAGE_OFFSET, layout.image_text_bytes, img_lo, Perm.RX, policy=Paint.NO_CONT)
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


# ---------------------------------------------------------------------------------------
# traces: touches of benchmark-shaped operations
# ---------------------------------------------------------------------------------------
class Trace(NamedTuple):
    """Touches of ``n_ops`` operations, in program order.

    ``va`` uint64 VA of the first byte touched; ``pa`` int64 its physical address (nominal
    outside the linear map and the image); ``lines`` int16 consecutive 64-byte lines touched
    from there (all inside one 4 KiB page); ``kind`` uint8 :class:`Kind`; ``region`` uint8
    :class:`Region`; ``el1`` bool (kernel-mode access); ``op`` int32 operation index.
    Per operation: ``instructions`` and ``el1_instructions`` (float64).
    """

    va: np.ndarray
    pa: np.ndarray
    lines: np.ndarray
    kind: np.ndarray
    region: np.ndarray
    el1: np.ndarray
    op: np.ndarray
    instructions: np.ndarray
    el1_instructions: np.ndarray

    @property
    def n_ops(self) -> int:
        return int(self.instructions.shape[0])

    @property
    def n_lines(self) -> int:
        return int(self.lines.sum())


class _Touches:
    """Accumulates one column per step (one value per op, or a scalar) and interleaves the
    steps of each op in step order. A step whose ``lines`` is 0 for an op is dropped."""

    def __init__(self, layout: KernelLayout, n_ops: int):
        self.layout = layout
        self.n = n_ops
        self.steps: list[tuple] = []

    def _add(self, va, pa, lines, kind, region, el1):
        n = self.n
        va = np.broadcast_to(np.asarray(va, dtype=np.uint64), (n,))
        pa = np.broadcast_to(np.asarray(pa, dtype=np.int64), (n,))
        lines = np.broadcast_to(np.asarray(lines, dtype=np.int16), (n,))
        if np.any((lines < 0) | (lines > LINES_PER_CHUNK)):
            raise ValueError("a touch spans 0..64 lines of one page")
        first = (pa % CHUNK_BYTES) // LINE_BYTES
        if np.any((lines > 0) & (first + lines > LINES_PER_CHUNK)):
            raise ValueError("a touch crosses a page boundary")
        self.steps.append((va, pa, lines, int(kind), int(region), bool(el1)))

    # ---- one helper per region: addresses in, both VA and PA out ---------------------
    def linear(self, pa, lines, kind, el1=True):
        """Bytes at physical ``pa`` through the linear map; a run crossing into the next
        page is split into two touches."""
        pa = np.asarray(pa, dtype=np.int64)
        lines = np.broadcast_to(np.asarray(lines, dtype=np.int64), np.broadcast(pa, 0).shape)
        first = (pa % CHUNK_BYTES) // LINE_BYTES
        head = np.minimum(lines, LINES_PER_CHUNK - first)
        pa_line = pa - pa % LINE_BYTES
        self._add(self.layout.linear_va(pa_line), pa_line, head, kind, Region.LINEAR, el1)
        tail = lines - head
        if np.any(tail > 0):
            nxt = pa - pa % CHUNK_BYTES + CHUNK_BYTES
            self._add(self.layout.linear_va(nxt), nxt, tail, kind, Region.LINEAR, el1)

    def struct_page(self, pa, lines=1, kind=Kind.STORE):
        va = self.layout.vmemmap_va(pa)
        lo, _ = self.layout.vmemmap_span()
        bpa = (va - np.uint64(lo)).astype(np.int64) + VMEMMAP_BACKING_PA
        va = va - va % np.uint64(LINE_BYTES)
        bpa = bpa - bpa % LINE_BYTES
        self._add(va, bpa, lines, kind, Region.VMEMMAP, True)

    def kva(self, region: Region, offset, lines, kind, el1=True):
        """Bytes at ``offset`` inside a region mapped the same under every policy."""
        base, backing = {Region.MODULES: (MODULES_OFFSET, MODULES_BACKING_PA),
                         Region.VMALLOC: (VMALLOC_OFFSET, VMALLOC_BACKING_PA),
                         Region.KTEXT: (IMAGE_OFFSET, self.layout.ram_base_bytes
                                        + self.layout.image_pa_offset_bytes)}[region]
        off = np.asarray(offset, dtype=np.int64)
        off = off - off % LINE_BYTES
        self._add(np.uint64(KERNEL_VA_BASE + base) + off.astype(np.uint64), backing + off,
                  lines, kind, region, el1)

    def user(self, offset, lines, kind, el1):
        off = np.asarray(offset, dtype=np.int64)
        off = off - off % LINE_BYTES
        self._add(np.uint64(USER_VA_BASE) + off.astype(np.uint64), USER_BACKING_PA + off,
                  lines, kind, Region.USER, el1)

    def build(self, instructions, el1_instructions) -> Trace:
        k = len(self.steps)
        n = self.n
        cols = [np.stack([s[i] for s in self.steps], axis=1).ravel() for i in range(3)]
        kind = np.tile(np.array([s[3] for s in self.steps], np.uint8), n)
        region = np.tile(np.array([s[4] for s in self.steps], np.uint8), n)
        el1 = np.tile(np.array([s[5] for s in self.steps], np.bool_), n)
        op = np.repeat(np.arange(n, dtype=np.int32), k)
        keep = cols[2] > 0
        return Trace(va=cols[0][keep], pa=cols[1][keep], lines=cols[2][keep], kind=kind[keep],
                     region=region[keep], el1=el1[keep], op=op[keep],
                     instructions=np.broadcast_to(np.asarray(instructions, np.float64),
                                                  (n,)).copy(),
                     el1_instructions=np.broadcast_to(np.asarray(el1_instructions, np.float64),
                                                      (n,)).copy())


def scatter_blocks(rng: np.random.Generator, n: int, block_bytes: int, lo_bytes: int,
                   window_bytes: int) -> np.ndarray:
    """Physical addresses of ``n`` distinct ``block_bytes``-aligned blocks drawn uniformly
    from ``[lo_bytes, lo_bytes + window_bytes)`` (slab and page-pool pages of a kernel whose
    allocations come from that window)."""
    slots = window_bytes // block_bytes
    if n > slots:
        raise ConfigError(f"{n} blocks of {block_bytes} B do not fit a window of "
                          f"{window_bytes} B", "kernel_spread_bytes")
    first = -(-lo_bytes // block_bytes)
    idx = rng.choice(slots, size=n, replace=False) if n else np.zeros(0, np.int64)
    return (first + idx.astype(np.int64)) * block_bytes


def page_runs(rng: np.random.Generator, n_pages: int, run_pages: int, lo_bytes: int,
              hi_bytes: int, page_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Physical addresses of ``n_pages`` pages handed out in allocation order as runs of
    ``run_pages`` physically contiguous pages, each run at a distinct random run-aligned
    place in ``[lo_bytes, hi_bytes)`` (the buddy allocator splitting free blocks of that
    order: mm/page_alloc.c ``expand``)."""
    check_int("run_pages", run_pages, lo=1)
    runs = -(-n_pages // run_pages)
    starts = scatter_blocks(rng, runs, run_pages * page_bytes, lo_bytes, hi_bytes - lo_bytes)
    pages = (starts[:, None] + page_bytes * np.arange(run_pages, dtype=np.int64)[None, :]).ravel()
    return pages[:n_pages]


def slab_objects(rng: np.random.Generator, n_objs: int, obj_bytes: int, slab_order: int,
                 lo_bytes: int, window_bytes: int, page_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Physical addresses of ``n_objs`` objects of a slab cache, packed in allocation order
    into slabs of ``2**slab_order`` 4 KiB pages (one page when pages are larger) that sit at
    random in the window (mm/slub.c: objects of one slab are consecutive, ``oo_objects``)."""
    slab_bytes = max(CHUNK_BYTES << slab_order, page_bytes)
    per = slab_bytes // obj_bytes
    if per < 1:
        raise ConfigError(f"a {obj_bytes} B object does not fit an order-{slab_order} slab",
                          "obj_bytes")
    slabs = scatter_blocks(rng, -(-n_objs // per), slab_bytes, lo_bytes, window_bytes)
    j = np.arange(n_objs, dtype=np.int64)
    return slabs[j // per] + (j % per) * obj_bytes


def _granules(rng, n, span_bytes):
    """``n`` distinct 4 KiB granules (byte offsets) of a ``span_bytes`` code region."""
    return np.sort(rng.choice(span_bytes // CHUNK_BYTES, size=n, replace=False)).astype(np.int64) * CHUNK_BYTES


def _fetch(t: _Touches, region: Region, granules: np.ndarray, lines: int, el1: bool = True):
    for g in granules:
        if region == Region.USER:
            t.user(int(g), lines, Kind.IFETCH, el1)
        else:
            t.kva(region, int(g), lines, Kind.IFETCH, el1)


def _lines(nbytes) -> np.ndarray:
    return -(-np.asarray(nbytes, dtype=np.int64) // LINE_BYTES)


# ---- memcached --------------------------------------------------------------------------
@dataclass(frozen=True)
class MemcachedShape:
    """One memcached worker core serving memtier_benchmark (module docstring).

    Parameters
    ----------
    connections : connections served by the worker (memtier 4 x 50 over memcached's 4
        workers)
    get_fraction : share of GETs (memtier ``--ratio 1:10``)
    value_bytes : item value size (memtier ``-d 32``)
    item_memory_bytes : memcached item memory (``-m 64``)
    hash_bytes : hash table (2^20 8-byte buckets)
    rx_ring_pages : ``page_pool`` pages cycling through the receive ring (two 2 KiB
        buffers per page)
    kernel_spread_bytes : physical window the kernel's slab and network pages come from
    instructions_per_op : instructions per request, kernel and user
    el1_instruction_fraction : share of them executed in the kernel
    kernel_text_granules, module_text_granules, user_text_granules : 4 KiB code granules
        each request fetches from
    """

    connections: int = 50
    get_fraction: float = 10 / 11
    value_bytes: int = 32
    item_memory_bytes: int = 64 * MiB
    hash_bytes: int = 8 * MiB
    rx_ring_pages: int = 512
    kernel_spread_bytes: int = 4 * GiB
    instructions_per_op: int = 20_000
    el1_instruction_fraction: float = 0.75
    kernel_text_granules: int = 40
    module_text_granules: int = 12
    user_text_granules: int = 10

    def __post_init__(self):
        check_int("connections", self.connections, lo=1, hi=1 << 20)
        check_float("get_fraction", self.get_fraction, lo=0.0, hi=1.0)
        check_int("value_bytes", self.value_bytes, lo=1, hi=CHUNK_BYTES // 2)
        check_int("item_memory_bytes", self.item_memory_bytes, lo=MiB)
        check_int("hash_bytes", self.hash_bytes, lo=CHUNK_BYTES)
        check_int("rx_ring_pages", self.rx_ring_pages, lo=1)
        check_int("kernel_spread_bytes", self.kernel_spread_bytes, lo=64 * MiB)
        check_int("instructions_per_op", self.instructions_per_op, lo=1)
        check_float("el1_instruction_fraction", self.el1_instruction_fraction, lo=0.0, hi=1.0)
        check_int("kernel_text_granules", self.kernel_text_granules, lo=0, hi=4096)
        check_int("module_text_granules", self.module_text_granules, lo=0, hi=512)
        check_int("user_text_granules", self.user_text_granules, lo=0, hi=512)


# object sizes (bytes) and slab orders of the caches a request touches (slabinfo of a 6.x
# arm64 kernel: TCP 2368 B order 3, sock_inode_cache 704 B order 2, filp 256 B order 1,
# eventpoll_epi 128 B order 0, skbuff_head_cache 256 B, skbuff_fclone_cache 512 B)
_TCP_SOCK = (2368, 3)
_SOCK_INODE = (704, 2)
_FILP = (256, 1)
_EPITEM = (128, 0)
_RING_ENTRIES = 1024
_RING_ENTRY_BYTES = 64
_FRAG_BYTES = 32 * KiB   # SKB_FRAG_PAGE_ORDER: task page fragments of 32 KiB (or a page)
_RX_BUF_BYTES = 2 * KiB  # receive buffer per packet in a page_pool page
_HEADER_BYTES = 66       # Ethernet + IPv4 + TCP with timestamps
#: bytes of the module area and of the vmalloc area the model maps (text granules of the
#: NIC, dm-crypt, brd and XFS modules; thread stacks and the doorbell)
MODULE_AREA_BYTES = 256 * KiB


def memcached_trace(shape: MemcachedShape, layout: KernelLayout, n_ops: int,
                    seed: int) -> Trace:
    """Touches of ``n_ops`` memcached requests served by one worker core (module docstring).

    Requests arrive from connections drawn uniformly (closed-loop clients, one outstanding
    request each, served in arrival order).
    """
    check_int("n_ops", n_ops, lo=1)
    rng = np.random.default_rng(seed)
    t = _Touches(layout, n_ops)
    win_lo, win_hi = layout.runtime_window(shape.kernel_spread_bytes)
    win = win_hi - win_lo
    pg = layout.page_bytes
    C = shape.connections
    tcp = slab_objects(rng, C, *_TCP_SOCK, win_lo, win, pg)
    inode = slab_objects(rng, C, *_SOCK_INODE, win_lo, win, pg)
    filp = slab_objects(rng, C, *_FILP, win_lo, win, pg)
    epi = slab_objects(rng, C, *_EPITEM, win_lo, win, pg)
    hot = scatter_blocks(rng, 8, pg, win_lo, win)                  # percpu, task, eventpoll,
    skb = slab_objects(rng, 32, 256, 0, win_lo, win, pg)           # dst, neigh, qdisc...
    fclone = slab_objects(rng, 32, 512, 0, win_lo, win, pg)
    ring_bytes = max(_RING_ENTRIES * _RING_ENTRY_BYTES, pg)
    rings = scatter_blocks(rng, 3, ring_bytes, win_lo, win)        # rx cq, tx, tx cq
    # receive buffers: 2 KiB each, as many per page_pool page as fit; the ring holds the
    # same bytes whatever the page size (rx_ring_pages counts 4 KiB of buffers)
    per_rx_page = pg // _RX_BUF_BYTES
    n_bufs = shape.rx_ring_pages * (CHUNK_BYTES // _RX_BUF_BYTES)
    rx_pages = scatter_blocks(rng, -(-n_bufs // per_rx_page), pg, win_lo, win)
    conn = rng.integers(0, C, n_ops)
    is_get = rng.random(n_ops) < shape.get_fraction
    req_bytes = np.where(is_get, 30, 40 + shape.value_bytes)
    resp_bytes = np.where(is_get, 40 + shape.value_bytes, 8)
    # task page fragment: responses packed sequentially into order-3 pages
    frag_bytes = _lines(resp_bytes) * LINE_BYTES
    frag_end = np.cumsum(frag_bytes)
    frag_unit = max(_FRAG_BYTES, pg)
    frag_chunk = (frag_end - frag_bytes) // frag_unit
    frag_off = (frag_end - frag_bytes) % frag_unit
    # a response never straddles a fragment page: skb_page_frag_refill starts a new one
    over = frag_off + frag_bytes > frag_unit
    frag_off = np.where(over, 0, frag_off)
    frag_chunk = frag_chunk + over
    chunks = scatter_blocks(rng, int(frag_chunk.max()) + 1, frag_unit, win_lo, win)
    frag = chunks[frag_chunk] + frag_off
    slot = np.arange(n_ops, dtype=np.int64) % n_bufs
    rxbuf = rx_pages[slot // per_rx_page] + (slot % per_rx_page) * _RX_BUF_BYTES
    ring_slot = (np.arange(n_ops, dtype=np.int64) % _RING_ENTRIES) * _RING_ENTRY_BYTES
    pool = np.arange(n_ops) % 32
    # user memory layout: conn structs, per-connection read buffers, events, hash, items
    u_conn = 0
    u_rbuf = u_conn + C * 512
    u_events = -(-(u_rbuf + C * 2048) // CHUNK_BYTES) * CHUNK_BYTES
    u_hash = u_events + CHUNK_BYTES
    u_items = u_hash + shape.hash_bytes
    u_text = u_items + shape.item_memory_bytes
    bucket = u_hash + rng.integers(0, shape.hash_bytes // 8, n_ops) * 8
    item_chunk = 96 if shape.value_bytes <= 32 else -(-(56 + shape.value_bytes) // 64) * 64
    per_chunk = CHUNK_BYTES // item_chunk
    n_items = shape.item_memory_bytes // CHUNK_BYTES * per_chunk
    it = rng.integers(0, n_items, n_ops)
    item = u_items + (it // per_chunk) * CHUNK_BYTES + (it % per_chunk) * item_chunk
    item_lines = _lines(item % LINE_BYTES + item_chunk)
    item_lines = np.minimum(item_lines, LINES_PER_CHUNK - (item % CHUNK_BYTES) // LINE_BYTES)
    ktext = _granules(rng, shape.kernel_text_granules, layout.image_text_bytes)
    mtext = _granules(rng, shape.module_text_granules, MODULE_AREA_BYTES)
    utext = u_text + _granules(rng, shape.user_text_granules, 256 * CHUNK_BYTES)
    kq = np.array_split(ktext, 4)
    mq = np.array_split(mtext, 2)
    stack_top = layout.stack_bytes - CHUNK_BYTES

    # receive softirq
    _fetch(t, Region.KTEXT, kq[0], 16)
    _fetch(t, Region.MODULES, mq[0], 16)
    t.linear(rings[0] + ring_slot, 1, Kind.LOAD)
    t.linear(rxbuf, _lines(_HEADER_BYTES + req_bytes), Kind.LOAD)
    t.struct_page(rxbuf, 1, Kind.STORE)
    t.linear(skb[pool], 4, Kind.STORE)
    t.linear(tcp[conn], 4, Kind.STORE)
    t.linear(tcp[conn] + 1280, 4, Kind.STORE)
    t.linear(epi[conn], 1, Kind.LOAD)
    t.linear(hot[0], 2, Kind.STORE)
    # epoll_wait + read
    _fetch(t, Region.KTEXT, kq[1], 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.linear(hot[1], 2, Kind.STORE)
    t.user(u_events, 1, Kind.STORE, el1=True)
    t.linear(filp[conn], 1, Kind.LOAD)
    t.linear(inode[conn], 2, Kind.LOAD)
    t.linear(tcp[conn], 4, Kind.STORE)
    t.linear(skb[pool], 4, Kind.LOAD)
    t.linear(rxbuf + _HEADER_BYTES, _lines(req_bytes), Kind.LOAD)
    t.user(u_rbuf + conn * 2048, _lines(req_bytes), Kind.STORE, el1=True)
    t.struct_page(rxbuf, 1, Kind.STORE)
    # memcached (EL0)
    _fetch(t, Region.USER, utext, 16, el1=False)
    t.user(u_conn + conn * 512, 2, Kind.STORE, el1=False)
    t.user(u_rbuf + conn * 2048, _lines(req_bytes), Kind.LOAD, el1=False)
    t.user(bucket, 1, Kind.LOAD, el1=False)
    t.user(item, np.where(is_get, item_lines, 0), Kind.LOAD, el1=False)
    t.user(item, np.where(is_get, 0, item_lines), Kind.STORE, el1=False)
    # sendmsg
    _fetch(t, Region.KTEXT, kq[2], 16)
    _fetch(t, Region.MODULES, mq[1], 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.kva(Region.VMALLOC, stack_top - CHUNK_BYTES, 4, Kind.STORE)
    t.linear(filp[conn], 1, Kind.LOAD)
    t.linear(inode[conn], 2, Kind.LOAD)
    t.linear(tcp[conn], 4, Kind.STORE)
    t.linear(tcp[conn] + 1280, 4, Kind.STORE)
    t.linear(fclone[pool], 8, Kind.STORE)
    t.user(np.where(is_get, item, u_rbuf + conn * 2048), np.where(is_get, item_lines, 1),
           Kind.LOAD, el1=True)
    t.linear(frag, _lines(resp_bytes), Kind.STORE)
    t.linear(hot[2], 2, Kind.LOAD)
    t.linear(hot[3], 2, Kind.STORE)
    t.linear(hot[4], 1, Kind.STORE)
    t.linear(rings[1] + ring_slot, 1, Kind.STORE)
    t.kva(Region.VMALLOC, 2 * layout.stack_bytes, 1, Kind.STORE)      # doorbell (ioremap)
    # transmit completion
    _fetch(t, Region.KTEXT, kq[3], 16)
    t.linear(rings[2] + ring_slot, 1, Kind.LOAD)
    t.linear(fclone[pool], 2, Kind.STORE)
    t.struct_page(frag, 1, Kind.STORE)
    t.linear(tcp[conn], 2, Kind.STORE)
    n_ins = float(shape.instructions_per_op)
    return t.build(n_ins, n_ins * shape.el1_instruction_fraction)


# ---- dm-crypt and sequential read -------------------------------------------------------
@dataclass(frozen=True)
class BlockIOShape:
    """A 4 KiB-block I/O benchmark on one core (module docstring).

    Parameters
    ----------
    run_pages : physically contiguous pages per allocator run (page cache, brd)
    kernel_spread_bytes : window of the kernel's slab pages (xarray nodes, buffer heads)
    instructions_per_op : instructions per 4 KiB operation (all in the kernel but the
        benchmark's loop)
    el1_instruction_fraction : share executed in the kernel
    kernel_text_granules, module_text_granules : code granules per operation
    read_bytes : bytes per ``read`` (sequential read only)
    """

    run_pages: int = 16
    kernel_spread_bytes: int = 4 * GiB
    instructions_per_op: int = 20_000
    el1_instruction_fraction: float = 0.97
    kernel_text_granules: int = 40
    module_text_granules: int = 8
    read_bytes: int = 4 * KiB

    def __post_init__(self):
        check_int("run_pages", self.run_pages, lo=1, hi=1 << 18)
        check_int("kernel_spread_bytes", self.kernel_spread_bytes, lo=64 * MiB)
        check_int("instructions_per_op", self.instructions_per_op, lo=1)
        check_float("el1_instruction_fraction", self.el1_instruction_fraction, lo=0.0, hi=1.0)
        check_int("kernel_text_granules", self.kernel_text_granules, lo=0, hi=4096)
        check_int("module_text_granules", self.module_text_granules, lo=0, hi=512)
        check_int("read_bytes", self.read_bytes, lo=CHUNK_BYTES, hi=1 * MiB)
        if self.read_bytes % CHUNK_BYTES:
            raise ConfigError("read_bytes must be a multiple of 4 KiB", "read_bytes")


_XA_NODE = (576, 2)      # radix_tree_node: 64 slots
_BUFFER_HEAD = (104, 0)
_BOUNCE_POOL = 2         # mempool/pcp pages reused LIFO by crypt_alloc_buffer


def _windows(layout: KernelLayout, spread_bytes: int) -> tuple[int, int, int]:
    """(start of the runtime kernel window, its size, end of RAM): page-cache and ramdisk
    pages come from anywhere above the boot window, slab pages from the runtime window."""
    lo, hi = layout.runtime_window(spread_bytes)
    return lo, hi - lo, layout.ram_base_bytes + layout.ram_bytes


def dmcrypt_trace(shape: BlockIOShape, layout: KernelLayout, n_ops: int, seed: int) -> Trace:
    """Touches of ``n_ops`` 4 KiB buffered writes through ext4 on dm-crypt on brd, each
    charged with the writeback of a block written long before (module docstring). With pages
    larger than 4 KiB, consecutive blocks share a page-cache page and a ramdisk page, and
    brd zeroes a whole page when its first block arrives."""
    check_int("n_ops", n_ops, lo=1)
    rng = np.random.default_rng(seed)
    t = _Touches(layout, n_ops)
    lo, win, hi = _windows(layout, shape.kernel_spread_bytes)
    pg = layout.page_bytes
    k = pg // CHUNK_BYTES                  # 4 KiB blocks per page
    i = np.arange(n_ops, dtype=np.int64)
    n_pages = -(-n_ops // k)
    # allocation order: the pages being written back were allocated before the trace
    # (writeback lags far behind the writer), then the writer's page-cache pages and brd's
    # pages, interleaved
    pages = page_runs(rng, 3 * n_pages, shape.run_pages, lo, hi, pg)
    wb_page = pages[:n_pages]
    new_page = pages[n_pages::2]
    brd_page = pages[n_pages + 1::2]
    off = (i % k) * CHUNK_BYTES
    new_pc = new_page[i // k] + off
    wb_pc = wb_page[i // k] + off
    brd = brd_page[i // k] + off
    bounce = scatter_blocks(rng, _BOUNCE_POOL, pg, lo, win)[i % _BOUNCE_POOL]
    hot = scatter_blocks(rng, 6, pg, lo, win)
    n_nodes = n_pages // 64 + 2
    pc_nodes = slab_objects(rng, n_nodes, *_XA_NODE, lo, win, pg)
    wb_nodes = slab_objects(rng, n_nodes, *_XA_NODE, lo, win, pg)
    brd_nodes = slab_objects(rng, n_nodes, *_XA_NODE, lo, win, pg)
    bh = slab_objects(rng, n_ops, *_BUFFER_HEAD, lo, win, pg)
    ktext = _granules(rng, shape.kernel_text_granules, layout.image_text_bytes)
    mtext = _granules(rng, shape.module_text_granules, MODULE_AREA_BYTES)
    kq = np.array_split(ktext, 3)
    mq = np.array_split(mtext, 2)
    stack_top = layout.stack_bytes - CHUNK_BYTES
    fio_buf = 0
    node = (i // k) // 64
    # the writer: write(2) of 4 KiB into the page cache
    _fetch(t, Region.KTEXT, kq[0], 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.linear(hot[0], 2, Kind.LOAD)                       # file, inode
    t.linear(hot[1], 2, Kind.STORE)                      # ext4 inode info, jbd2 handle
    t.linear(pc_nodes[node], 2, Kind.STORE)
    t.struct_page(new_pc, 1, Kind.STORE)
    t.user(fio_buf, LINES_PER_CHUNK, Kind.LOAD, el1=True)
    t.linear(new_pc, LINES_PER_CHUNK, Kind.STORE)
    t.linear(bh, 2, Kind.STORE)
    # writeback of an old block: dm-crypt encrypts it into a bounce page
    _fetch(t, Region.KTEXT, kq[1], 16)
    _fetch(t, Region.MODULES, mq[0], 16)
    t.kva(Region.VMALLOC, layout.stack_bytes + stack_top, 8, Kind.STORE)   # kworker stack
    t.struct_page(wb_pc, 1, Kind.STORE)
    t.linear(wb_nodes[node], 1, Kind.STORE)
    t.linear(hot[2], 4, Kind.STORE)                      # bio, dm_crypt_io, request
    t.struct_page(bounce, 1, Kind.STORE)
    t.linear(wb_pc, LINES_PER_CHUNK, Kind.LOAD)
    t.linear(bounce, LINES_PER_CHUNK, Kind.STORE)
    # brd: a new page is allocated and zeroed (__GFP_ZERO) when its first block arrives,
    # then the bounce page is copied in
    _fetch(t, Region.KTEXT, kq[2], 16)
    _fetch(t, Region.MODULES, mq[1], 16)
    t.linear(brd_nodes[node], 2, Kind.STORE)
    t.struct_page(brd, 1, Kind.STORE)
    first = (i % k) == 0
    for j in range(k):
        t.linear(brd_page[i // k] + j * CHUNK_BYTES, np.where(first, LINES_PER_CHUNK, 0),
                 Kind.STORE)
    t.linear(bounce, LINES_PER_CHUNK, Kind.LOAD)
    t.linear(brd, LINES_PER_CHUNK, Kind.STORE)
    # completion
    t.struct_page(bounce, 1, Kind.STORE)
    t.struct_page(wb_pc, 1, Kind.STORE)
    t.linear(hot[3], 2, Kind.STORE)
    n_ins = float(shape.instructions_per_op)
    return t.build(n_ins, n_ins * shape.el1_instruction_fraction)


def seqread_trace(shape: BlockIOShape, layout: KernelLayout, n_ops: int, seed: int) -> Trace:
    """Touches of ``n_ops`` sequential ``read`` calls of ``read_bytes`` from a cached file
    (module docstring); with pages larger than 4 KiB consecutive reads share a page."""
    check_int("n_ops", n_ops, lo=1)
    rng = np.random.default_rng(seed)
    t = _Touches(layout, n_ops)
    lo, win, hi = _windows(layout, shape.kernel_spread_bytes)
    pg = layout.page_bytes
    k = pg // CHUNK_BYTES
    per_op = shape.read_bytes // CHUNK_BYTES
    n_chunks = n_ops * per_op
    pages = page_runs(rng, -(-n_chunks // k), shape.run_pages, lo, hi, pg)
    nodes = slab_objects(rng, n_chunks // k // 64 + 2, *_XA_NODE, lo, win, pg)
    hot = scatter_blocks(rng, 4, pg, lo, win)
    ktext = _granules(rng, shape.kernel_text_granules, layout.image_text_bytes)
    mtext = _granules(rng, shape.module_text_granules, MODULE_AREA_BYTES)
    i = np.arange(n_ops, dtype=np.int64)
    stack_top = layout.stack_bytes - CHUNK_BYTES
    _fetch(t, Region.KTEXT, ktext, 16)
    _fetch(t, Region.MODULES, mtext, 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.linear(hot[0], 2, Kind.LOAD)                       # file, inode
    t.linear(hot[1], 2, Kind.STORE)                      # xfs inode, readahead state
    for c in range(per_op):
        g = i * per_op + c
        pc = pages[g // k] + (g % k) * CHUNK_BYTES
        t.linear(nodes[g // k // 64], 1, Kind.LOAD)
        t.struct_page(pc, 1, Kind.STORE)
        t.linear(pc, LINES_PER_CHUNK, Kind.LOAD)
        t.user(c * CHUNK_BYTES, LINES_PER_CHUNK, Kind.STORE, el1=True)
    t.user(1 * MiB, 4, Kind.IFETCH, el1=False)           # xfs_io's loop
    n_ins = float(shape.instructions_per_op)
    return t.build(n_ins, n_ins * shape.el1_instruction_fraction)


def workload_trace(workload: Workload, shape, layout: KernelLayout, n_ops: int,
                   seed: int) -> Trace:
    """Dispatch to the trace generator of ``workload``."""
    workload = Workload(workload)
    if workload == Workload.MEMCACHED:
        if not isinstance(shape, MemcachedShape):
            raise ConfigError("memcached needs a MemcachedShape", "shape")
        return memcached_trace(shape, layout, n_ops, seed)
    if not isinstance(shape, BlockIOShape):
        raise ConfigError(f"{workload.name.lower()} needs a BlockIOShape", "shape")
    gen = dmcrypt_trace if workload == Workload.DMCRYPT else seqread_trace
    return gen(shape, layout, n_ops, seed)


# ---------------------------------------------------------------------------------------
# memcached latency: a closed-loop queue driven by the simulated service times
# ---------------------------------------------------------------------------------------
@njit
def closed_loop_kernel(service, think, first_think, warm):
    """One FCFS server and ``first_think.size`` closed-loop clients.

    Client ``c`` issues its first request at ``first_think[c]``; request ``k`` (in arrival
    order) takes ``service[k]`` on the server and its client thinks ``think[k]`` after the
    response before issuing the next. Returns ``(response, busy, span)``: the response time
    of every request, and the server's busy time and the elapsed time over requests
    ``warm..`` (from the start of service of request ``warm`` to the last departure).
    """
    n = service.shape[0]
    arrive = first_think.copy()
    response = np.empty(n)
    free = 0.0
    busy = 0.0
    t0 = 0.0
    for k in range(n):
        c = 0
        for j in range(1, arrive.shape[0]):
            if arrive[j] < arrive[c]:
                c = j
        a = arrive[c]
        start = a if a > free else free
        if k == warm:
            t0 = start
        end = start + service[k]
        response[k] = end - a
        if k >= warm:
            busy += service[k]
        free = end
        arrive[c] = end + think[k]
    return response, busy, free - t0


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

    def tlb_config(self, layout: KernelLayout):
        """The :class:`kmm.tlb.TLBConfig` of one core (the one conversion to the engine)."""
        cap = self.max_entry_shift
        l1i = eng.TLBLevelConfig(self.l1i_entries, self.l1i_entries, max_page_shift=cap)
        l1d = eng.TLBLevelConfig(self.l1d_entries, self.l1d_entries, max_page_shift=cap)
        l2 = eng.TLBLevelConfig(self.l2_entries, self.l2_ways, max_page_shift=cap)
        wc = (eng.TLBLevelConfig(self.walk_cache_entries, min(4, self.walk_cache_entries))
              if self.walk_cache_entries else None)
        cfg = eng.TLBConfig(l1i=l1i, l1d=l1d, l2=l2, walk_cache=wc,
                            honour_cont=self.honour_cont)
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


@dataclass(frozen=True)
class CostSpec:
    """Cost parameters turning events into cycles (every one ``assumed`` unless a source
    is given in params/).

    Parameters
    ----------
    cpu_ghz : core clock
    cpi_base : cycles per instruction with every modelled stall removed (includes L1
        hits and instruction supply)
    l2_tlb_hit_cycles : added by an L1 TLB miss that hits the L2 TLB
    l1_hit_cycles, l2_hit_cycles : load-to-use latency of an L1 D / L2 hit (walker reads
        that hit L1 D pay ``l1_hit_cycles``)
    llc_hit_ns, dram_ns : latency of a system-level-cache hit and of local DRAM
    scatter_mlp : overlap of the first-line misses of separate touches (1: none)
    stream_mlp : overlap of the further lines of a touch (streams the prefetchers follow)

    A walk's descriptor reads are dependent and charged in full; the touch that needed the
    walk waits for it.
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

    def __post_init__(self):
        check_float("cpu_ghz", self.cpu_ghz, lo=0.5, hi=6.0)
        check_float("cpi_base", self.cpi_base, lo=0.1, hi=5.0)
        for name in ("l2_tlb_hit_cycles", "l1_hit_cycles", "l2_hit_cycles"):
            check_float(name, getattr(self, name), lo=0.0, hi=200.0)
        check_float("llc_hit_ns", self.llc_hit_ns, lo=1.0, hi=500.0)
        check_float("dram_ns", self.dram_ns, lo=10.0, hi=1000.0)
        check_float("scatter_mlp", self.scatter_mlp, lo=1.0, hi=64.0)
        check_float("stream_mlp", self.stream_mlp, lo=1.0, hi=256.0)

    def latency_cycles(self) -> tuple[float, float, float, float]:
        """Cycles of a read served by L1, L2, the LLC and DRAM."""
        g = self.cpu_ghz
        return (self.l1_hit_cycles, self.l2_hit_cycles, self.llc_hit_ns * g, self.dram_ns * g)


def op_cycles(events: np.ndarray, cost: CostSpec) -> np.ndarray:
    """Cycles of every operation: a formula over the per-operation counters."""
    e = np.asarray(events, dtype=np.float64)
    l1, l2, llc, mem = cost.latency_cycles()
    E = OpEvent
    walk = (e[:, E.WALK_READS_L1] * l1 + e[:, E.WALK_READS_L2] * l2
            + e[:, E.WALK_READS_LLC] * llc + e[:, E.WALK_READS_MEM] * mem)
    first = (e[:, E.FIRST_L2] * l2 + e[:, E.FIRST_LLC] * llc + e[:, E.FIRST_MEM] * mem)
    rest = (e[:, E.REST_L2] * l2 + e[:, E.REST_LLC] * llc + e[:, E.REST_MEM] * mem)
    return (e[:, E.INSTRUCTIONS] * cost.cpi_base + e[:, E.L1TLB_MISSES] * cost.l2_tlb_hit_cycles
            + walk + first / cost.scatter_mlp + rest / cost.stream_mlp)


def translation_cycles(events: np.ndarray, cost: CostSpec) -> np.ndarray:
    """The part of :func:`op_cycles` spent on translation (L2 TLB hits and walks)."""
    e = np.asarray(events, dtype=np.float64)
    l1, l2, llc, mem = cost.latency_cycles()
    E = OpEvent
    return (e[:, E.L1TLB_MISSES] * cost.l2_tlb_hit_cycles + e[:, E.WALK_READS_L1] * l1
            + e[:, E.WALK_READS_L2] * l2 + e[:, E.WALK_READS_LLC] * llc
            + e[:, E.WALK_READS_MEM] * mem)


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

    def cache_config(self):
        """The :class:`kmm.cache.CacheConfig` of one core (walker reads enter at L2)."""
        return eng.CacheConfig(l1i=eng.CacheLevelConfig(self.l1i_bytes, self.l1_ways),
                               l1d=eng.CacheLevelConfig(self.l1d_bytes, self.l1_ways),
                               l2=eng.CacheLevelConfig(self.l2_bytes, self.l2_ways),
                               llc=eng.CacheLevelConfig(self.llc_share_bytes, self.llc_ways))


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


_CLS_EL1, _CLS_LINEAR = 1, 2


#: Tag of a touch on the engine's path: ``op * N_CLASSES + cls`` (``cls`` bit 0: EL1, bit 1:
#: linear map), so :class:`kmm.walk.TagEvent` counters come back per operation and class.
N_CLASSES = 4


def op_events(by_tag: np.ndarray, n_ops: int) -> np.ndarray:
    """Per-operation :class:`OpEvent` counters (all but the instruction counts) from the
    path's counters per tag ``op * N_CLASSES + cls``."""
    T = TagEvent
    b = np.asarray(by_tag, np.int64).reshape(n_ops, N_CLASSES, len(T))
    el1 = [c for c in range(N_CLASSES) if c & _CLS_EL1]
    linear = [c for c in range(N_CLASSES) if c & _CLS_LINEAR]
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


def path_ops_kernel(tst, cst, ws, out, t, tn, ev):
    """Run every touch of ``t`` on CPU 0 through the engine's path kernel
    (:func:`kmm.walk.run_path`, tagged by operation and class) and add the :class:`OpEvent`
    counts per operation into ``ev`` (int64 ``[ops, events]``).

    One TLB lookup per touch; a walk's descriptor reads are counted by the level that served
    them; every data line of the touch then reads through the caches (instruction lines are
    not simulated in the line caches). :func:`simulate_events` does the same through
    :class:`kmm.walk.Path`; this keeps the earlier kernel-level entry point.
    """
    n_ops = ev.shape[0]
    tag = (t.op * N_CLASSES + t.cls).astype(np.int32)
    lines = np.where((t.flags & eng.FLAG_KIND_MASK) == KIND_IFETCH, 0, t.lines).astype(np.int32)
    one = np.zeros(1, np.int32)
    acc = eng.PathArrays(va=t.va, pa=t.pa, flags=t.flags, shift=t.shift,
                         leaf=t.leaf.astype(np.int8), leaf2=np.full(1, 3, np.int8),
                         asid=t.asid, vmid=one, cpu=one, node=one,
                         table_nid=np.ascontiguousarray(tn, np.int32), tag=tag, lines=lines)
    by_tag = np.zeros((n_ops * N_CLASSES, len(TagEvent)), np.int64)
    eng.run_path(tst, cst, ws, acc, out._replace(refs=np.empty(0, np.int16), by_tag=by_tag))
    ev += op_events(by_tag, n_ops)


def path_config(layout: KernelLayout, tlb_spec: TlbSpec, cache_spec: CacheSpec):
    """The engine's :class:`kmm.walk.PathConfig` of one core of the modelled machine."""
    return eng.PathConfig(tlb=tlb_spec.tlb_config(layout), caches=cache_spec.cache_config(),
                      stage1=layout.geometry)


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
                    cache_spec: CacheSpec) -> np.ndarray:
    """Per-operation :class:`OpEvent` counters of ``trace`` on one core (fresh TLBs, walk
    cache and caches), int64 ``[n_ops, len(OpEvent)]``."""
    cfg = path_config(layout, tlb_spec, cache_spec)
    # fresh engine state (TLBs, walk cache, table-frame map, caches), counters per tag
    path = eng.Path(cfg, tags=trace.n_ops * N_CLASSES)
    user = trace.region == Region.USER
    cls = trace.el1.astype(np.int64) * _CLS_EL1 + (trace.region == Region.LINEAR) * _CLS_LINEAR
    res = path.run(trace.va, kind=trace.kind, pa=trace.pa, leaf_level=leaves.level,
                   cont=leaves.cont, asid=np.where(user, USER_ASID, 0), global_=~user,
                   tag=trace.op.astype(np.int64) * N_CLASSES + cls,
                   lines=np.where(trace.kind == Kind.IFETCH, 0, trace.lines))
    ev = op_events(res.by_tag, trace.n_ops)
    ev[:, OpEvent.INSTRUCTIONS] = np.rint(trace.instructions).astype(np.int64)
    ev[:, OpEvent.EL1_INSTRUCTIONS] = np.rint(trace.el1_instructions).astype(np.int64)
    return ev


# ---------------------------------------------------------------------------------------
# scenarios: the notebook's parameters, evaluated per policy
# ---------------------------------------------------------------------------------------
#: The notebook's parameters and their defaults (the published values live in params/).
DEFAULTS: dict = {
    "seed": 1, "memcached_ops": 1500, "blockio_ops": 800, "warm_fraction": 0.2,
    "queue_requests": 20000,
    "ram_gib": 256, "boot_used_kib": 4_167_284, "granule": "4K",
    "l1_tlb_entries": 48, "l2_tlb_entries": 2048, "l2_tlb_ways": 8, "tlb_honours_cont": 1,
    "tlb_max_entry_shift": 30, "walk_cache_entries": 64,
    "l1i_bytes": 16 * KiB, "l1d_bytes": 64 * KiB, "l2_bytes": 2 * MiB, "slc_bytes": 64 * MiB,
    "memcached_busy_cores": 4, "blockio_busy_cores": 2,
    "cpu_ghz": 3.0, "cpi_base": 0.6, "l2_tlb_hit_cycles": 5.0, "l2_hit_cycles": 11.0,
    "llc_hit_ns": 35.0, "dram_ns": 81.0, "scatter_mlp": 1.5, "stream_mlp": 16.0,
    "mc_connections": 50, "mc_value_bytes": 32, "mc_rx_ring_pages": 512,
    "mc_instructions_per_op": 20000, "mc_el1_fraction": 0.75, "mc_think_us": 50.0,
    "kernel_spread_gib": 4, "module_ro_pages": 5000, "module_alias_shared": 0,
    "dmcrypt_instructions_per_op": 20000, "dmcrypt_run_pages": 32,
    "seqread_instructions_per_op": 3000, "seqread_run_pages": 32, "read_bytes": 4096,
}

#: Parameters that change the simulated events (the rest only price them).
EVENT_KEYS = frozenset({
    "seed", "memcached_ops", "blockio_ops", "warm_fraction", "ram_gib", "granule", "boot_used_kib", "l1_tlb_entries",
    "l2_tlb_entries", "l2_tlb_ways", "tlb_honours_cont", "tlb_max_entry_shift",
    "walk_cache_entries", "l1i_bytes", "l1d_bytes", "l2_bytes", "slc_bytes",
    "memcached_busy_cores", "blockio_busy_cores", "mc_connections", "mc_value_bytes",
    "mc_rx_ring_pages", "kernel_spread_gib", "module_ro_pages", "module_alias_shared",
    "dmcrypt_run_pages", "seqread_run_pages", "read_bytes"})


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
    return CostSpec(cpu_ghz=p["cpu_ghz"], cpi_base=p["cpi_base"],
                    l2_tlb_hit_cycles=p["l2_tlb_hit_cycles"], l2_hit_cycles=p["l2_hit_cycles"],
                    llc_hit_ns=p["llc_hit_ns"], dram_ns=p["dram_ns"],
                    scatter_mlp=p["scatter_mlp"], stream_mlp=p["stream_mlp"])


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
                            instructions_per_op=p["dmcrypt_instructions_per_op"])
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
    warm-up dropped), and the trace's operation count including the warm-up."""

    workload: Workload
    events: dict
    n_ops: int


_EVENT_CACHE: dict = {}


def workload_events(p: dict, workload: Workload) -> PolicyEvents:
    """Simulate ``workload`` under every :class:`Policy` for parameters ``p`` (completed by
    :func:`check_params`). Results are memoised on the event-changing parameters, so cost-only
    sweeps re-price the same events."""
    workload = Workload(workload)
    key = (workload, tuple(sorted((k, p[k]) for k in EVENT_KEYS)))
    if key in _EVENT_CACHE:
        return _EVENT_CACHE[key]
    layout = _layout(p)
    warm, measured = warmup_ops(p, workload)
    n = warm + measured
    trace = workload_trace(workload, _shape(p, workload, layout), layout, n, int(p["seed"]))
    ro = _ro_ranges(p, layout)
    tspec, cspec = _tlb_spec(p), _cache_spec(p, workload)
    out = {}
    for pol in POLICIES:
        pt = _kernel_table(layout, pol, ro, 4 * layout.stack_bytes, MODULE_AREA_BYTES)
        ev = simulate_events(trace, trace_leaves(trace, pt), layout, tspec, cspec)
        out[pol] = ev[warm:]
    res = PolicyEvents(workload, out, n)
    if len(_EVENT_CACHE) > 256:
        _EVENT_CACHE.clear()
    _EVENT_CACHE[key] = res
    return res


def priced_events(pe: PolicyEvents, p: dict) -> PolicyEvents:
    """``pe`` with the instruction counts of parameters ``p`` (instructions per operation are
    a cost-side parameter: they do not change the simulated translation and cache events)."""
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
    return PolicyEvents(pe.workload, out, pe.n_ops)


def policy_metrics(pe: PolicyEvents, cost: CostSpec) -> dict:
    """Per policy: kernel TLB MPKI (walks of EL1 touches per 1000 kernel instructions),
    kernel L1 TLB refill MPKI, all-mode walk MPKI, cycles and translation cycles per
    operation, operations per second of one core, and the resolution of the MPKI (one
    miss over the measured kernel instructions)."""
    out = {}
    for pol, ev in pe.events.items():
        e = ev.sum(axis=0).astype(np.float64)
        cyc = op_cycles(ev, cost)
        kins = e[OpEvent.EL1_INSTRUCTIONS] / 1000.0
        out[pol] = {
            "kernel_tlb_mpki": e[OpEvent.EL1_WALKS] / kins,
            "kernel_l1_tlb_mpki": e[OpEvent.EL1_L1TLB_MISSES] / kins,
            "walk_mpki": 1000.0 * e[OpEvent.WALKS] / e[OpEvent.INSTRUCTIONS],
            "linear_walks_per_op": e[OpEvent.LINEAR_WALKS] / ev.shape[0],
            "cycles_per_op": float(cyc.mean()),
            "translation_cycles_per_op": float(translation_cycles(ev, cost).mean()),
            "ops_per_s": cost.cpu_ghz * 1e9 / float(cyc.mean()),
            "mpki_resolution": 1.0 / kins,
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


def claim_values(p: dict) -> dict:
    """Values of B3-B8 for parameters ``p``: relative changes of rodata=full+BBML2 against
    rodata=full (B3, B4, B5, B7, B8) and against rodata=on (B6: ``ops_rel``, ``mpki_rel``).

    ``mpki_rel`` is measured against rodata=on's MPKI floored at the MPKI resolution (one
    miss over the measured kernel instructions), so a rodata=on count of zero gives a finite
    value.
    """
    p = check_params(p)
    cost = cost_spec(p)
    mc = priced_events(workload_events(p, Workload.MEMCACHED), p)
    m = policy_metrics(mc, cost)
    q = memcached_queue(mc, p, cost)
    F, O, B = Policy.FULL_PTES, Policy.RODATA_ON, Policy.FULL_BBML2
    dm = policy_metrics(priced_events(workload_events(p, Workload.DMCRYPT), p), cost)
    sr = policy_metrics(priced_events(workload_events(p, Workload.SEQREAD), p), cost)
    on_mpki = max(m[O]["kernel_tlb_mpki"], m[O]["mpki_resolution"])
    return {
        "B3": _rel(q[B]["throughput"], q[F]["throughput"]),
        "B4": _rel(q[B]["p99_us"], q[F]["p99_us"]),
        "B5": _rel(m[B]["kernel_tlb_mpki"], m[F]["kernel_tlb_mpki"]),
        "B6": {"ops_rel": _rel(q[B]["throughput"], q[O]["throughput"]),
               "mpki_rel": _rel(max(m[B]["kernel_tlb_mpki"], m[O]["mpki_resolution"]), on_mpki)},
        "B7": _rel(dm[B]["ops_per_s"], dm[F]["ops_per_s"]),
        "B8": _rel(sr[B]["ops_per_s"], sr[F]["ops_per_s"]),
    }


# ---------------------------------------------------------------------------------------
# joint sweeps of the assumed parameters
# ---------------------------------------------------------------------------------------
def params_path():
    """``params/bbml2_perf.yaml`` of the project this package lives in."""
    from pathlib import Path
    return Path(__file__).resolve().parents[2] / "params" / "bbml2_perf.yaml"


def assumed_specs() -> dict:
    """``name -> (lo, hi, choices)`` of every ``assumed`` parameter of params/bbml2_perf.yaml."""
    from ..suite import params as _params
    pf = _params.load(params_path())
    out = {}
    for name, (lo, hi) in pf.assumed().items():
        spec = pf.specs[name]
        out[name] = (lo, hi, tuple(spec.choices) if spec.choices else None)
    return out


def joint_sweep(base: dict, specs: dict, n_event: int, n_cost: int, seed: int,
                event_ops: tuple[int, int] | None = None):
    """Claim values over a joint sweep of the assumed parameters.

    Parameters that change the simulated events (:data:`EVENT_KEYS`) are sampled at
    ``n_event`` points, the pricing parameters at ``n_cost`` points, and every pair is
    evaluated (``n_event * n_cost`` joint points, each simulation reused ``n_cost``
    times). ``event_ops`` = (memcached, block I/O) operations per simulation in the sweep.

    Returns a polars frame: one row per point, the sampled parameters and one column per
    claim value (``B3``... ``B6_ops_rel``, ``B6_mpki_rel``).
    """
    import polars as pl
    base = check_params(base)
    ev_specs = {k: v for k, v in specs.items() if k in EVENT_KEYS}
    cost_specs = {k: v for k, v in specs.items() if k not in EVENT_KEYS}
    ev_pts = latin_hypercube(ev_specs, n_event, seed, base) if ev_specs else [{}]
    cost_pts = latin_hypercube(cost_specs, n_cost, seed + 1, base) if cost_specs else [{}]
    sizes = {} if event_ops is None else {"memcached_ops": event_ops[0],
                                          "blockio_ops": event_ops[1]}
    rows = []
    for i, e in enumerate(ev_pts):
        for j, c in enumerate(cost_pts):
            pt = {**e, **c}
            v = claim_values({**base, **sizes, **pt})
            row = {"point": i * len(cost_pts) + j, "event_point": i, **pt}
            for cid, val in v.items():
                if isinstance(val, dict):
                    row.update({f"{cid}_{k}": x for k, x in val.items()})
                else:
                    row[cid] = val
            rows.append(row)
    return pl.DataFrame(rows)


def sweep_records(frame, claim: str, params: list[str] | None = None) -> list[dict]:
    """``claims.record(sweep=...)`` entries of one claim from :func:`joint_sweep`'s frame
    (B6 gives its evidence mapping per point)."""
    skip = {"point", "event_point"}
    names = params or [c for c in frame.columns if c not in skip and not c.startswith("B")]
    out = []
    for r in frame.iter_rows(named=True):
        if claim == "B6":
            value = {"ops_rel": r["B6_ops_rel"], "mpki_rel": r["B6_mpki_rel"]}
        else:
            value = r[claim]
        out.append({"params": {k: r[k] for k in names}, "value": value})
    return out


# ---------------------------------------------------------------------------------------
# notebook helpers: tidy frames, curves, sensitivity, explanations
# ---------------------------------------------------------------------------------------
def params_from(namespace: dict) -> dict:
    """The notebook's parameters picked from ``namespace`` (its globals), checked."""
    return check_params({k: namespace[k] for k in DEFAULTS if k in namespace})


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
          "mpki_resolution": "MPKI", "throughput": "requests/s", "utilisation": "fraction",
          "mean_us": "us", "p99_us": "us"}


def results_frame(p: dict, scenario: str):
    """Tidy frame (:mod:`kmm.results`) of :func:`evaluate`: one row per workload, policy and
    metric."""
    from ..results import frame, rows_for
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
        pt = _kernel_table(layout, pol, ro, 4 * layout.stack_bytes, MODULE_AREA_BYTES)
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
        "B7": (f"A 4 KiB dm-crypt block costs {dm[F]['cycles_per_op']:.0f} cycles under "
               f"rodata=full, of which translation is {dm[F]['translation_cycles_per_op']:.0f} "
               f"({share(dm[F]):.1%}; {dm[F]['linear_walks_per_op']:.2f} linear-map walks per "
               f"block, new page-cache and ramdisk pages whose PTE lines are shared by eight "
               f"neighbours), so blocks give {values['B7']:+.2%} IOPS, a gain bounded by that "
               f"translation share{dom('B7')}."),
        "B8": (f"A cached {int(p['read_bytes'])} B read costs {sr[F]['cycles_per_op']:.0f} "
               f"cycles, mostly streaming the page from DRAM; its "
               f"{sr[F]['linear_walks_per_op']:.2f} linear-map walks cost "
               f"{sr[F]['translation_cycles_per_op']:.0f} cycles ({share(sr[F]):.1%}), so blocks "
               f"give {values['B8']:+.2%} bandwidth, a gain bounded by that translation share; "
               f"costs at 4 KiB boundaries outside the TLB (prefetchers that stop at a "
               f"translation boundary) are not modelled{dom('B8')}."),
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
    from ..results import frame, rows_for
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


def granule_frame(p: dict, granules: list[str], ops: tuple[int, int] | None = None):
    """Claim values and kernel TLB MPKI per policy for each granule (the thread measured
    4K; 16K and 64K pages map more per PTE, so blocks save less). ``ops`` = (memcached,
    block I/O) measured operations per simulation."""
    import polars as pl
    rows = []
    for gr in granules:
        q = check_params({**p, "granule": gr, **({} if ops is None else
                                                 {"memcached_ops": ops[0], "blockio_ops": ops[1]})})
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
