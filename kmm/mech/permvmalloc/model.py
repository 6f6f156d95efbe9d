"""permvmalloc: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.permvmalloc`."""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from enum import IntEnum
from typing import Any

import numpy as np

from ... import engine as eng
from ...config import check_choice, check_float, check_int
from ...counters import Counters
from ...engine import (Buddy, BuddyConfig, GiB, MiB, MigrateType, OP_AUX, OP_FIELDS, OP_KIND,
    OP_PERM, OP_SET_PERM, OP_SIZE, OP_VA, PageTable, Perm, PermSplit, x86_64)
from ...errors import ConfigError

# ---- x86-64 constants (4-level paging) ----------------------------------------------------
PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT
PMD_PAGES = 512
#: arch/x86/include/asm/page_64_types.h (``__PAGE_OFFSET_BASE_L4``)
PAGE_OFFSET = 0xFFFF888000000000
#: arch/x86/include/asm/pgtable_64_types.h (``VMALLOC_START`` L4, 32 TiB)
VMALLOC_START = 0xFFFFC90000000000
VMALLOC_END = VMALLOC_START + (32 << 40)
#: ``MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE``; ``MODULES_END``
MODULES_VADDR = 0xFFFFFFFFC0000000
MODULES_END = 0xFFFFFFFFFF000000
#: arch/x86/mm/tlb.c ``tlb_single_page_flush_ceiling``
FLUSH_CEILING_PAGES = 33
#: mm/vmalloc.c ``lazy_max_pages``: ``fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)``
LAZY_UNIT_PAGES = (32 * MiB) >> PAGE_SHIFT
#: kernel/bpf/core.c ``BPF_PROG_CHUNK_SIZE``; a pack is ``BPF_PROG_PACK_SIZE = SZ_2M *
#: num_possible_nodes()``: 2 MiB on the modelled one-node machine
BPF_CHUNK_BYTES = 64
PACK_BYTES = 2 * MiB
#: Does a ``bpf_prog_pack`` get 2 MiB leaves, per architecture? ``alloc_new_pack`` calls
#: ``bpf_jit_alloc_exec`` -> ``execmem_alloc(EXECMEM_BPF)``, whose range is ``PAGE_KERNEL``
#: without ``EXECMEM_ROX_CACHE`` on x86 (v6.15 arch/x86/mm/init.c ``execmem_arch_setup``) and
#: without flags on arm64 (v6.15 arch/arm64/mm/init.c ``execmem_arch_setup``); only the ROX
#: cache asks ``VM_ALLOW_HUGE_VMAP`` (mm/execmem.c ``execmem_cache_populate``). So both map
#: packs with 4K pages; a huge pack is the counterfactual ``PolicyConfig(pack_huge=True)``.
PACK_HUGE_BY_ARCH = {"x86": False, "arm64": False}
#: include/linux/filter.h ``struct bpf_binary_header`` (u32 size) and the 128-byte minimum
#: hole of ``bpf_jit_binary_alloc``; ``bpf_jit_binary_pack_alloc`` keeps 16 bytes of hole
BPF_HDR_BYTES = 4
BPF_HOLE_BYTES = 128
BPF_PACK_HOLE_BYTES = 16

R, W, X = int(Perm.R), int(Perm.W), int(Perm.X)
RO, RW, RX, NONE = R, R | W, R | X, 0
UNMOVABLE = int(MigrateType.UNMOVABLE)
MOVABLE = int(MigrateType.MOVABLE)

#: Module sizes of an x86-64 laptop running a 6.x kernel, bytes as ``lsmod`` prints them
#: (``/proc/modules``: page-rounded core size). Source: github.com/aalpereny/laptop-lts-kernel
#: ``lsmod.txt`` (commit 7f00ee0256b3fa99006322dc7efe33f5426cd694), 169 modules.
LSMOD_X86_LAPTOP = (
    28672, 110592, 12288, 12288, 139264, 16384, 57344, 12288, 16384, 12288, 32768, 36864,
    12288, 12288, 16384, 16384, 16384, 16384, 12288, 16384, 372736, 16384, 65536, 69632,
    24576, 131072, 16384, 176128, 495616, 12288, 1228800, 16384, 20480, 1794048, 36864,
    16384, 12288, 49152, 20480, 16384, 45056, 1212416, 135168, 442368, 12288, 94208,
    1519616, 61440, 2400256, 20480, 20480, 28672, 421888, 28672, 90112, 24576, 32768,
    12288, 16384, 53248, 36864, 159744, 16965632, 20480, 73728, 126976, 94208, 16384,
    12288, 12288, 20480, 16384, 12288, 12288, 20480, 12288, 61440, 32768, 20480, 12288,
    12288, 20480, 290816, 102400, 249856, 77824, 118784, 16384, 65536, 610304, 20480,
    1536000, 16384, 233472, 155648, 49152, 16384, 24576, 221184, 20480, 57344, 81920,
    159744, 16384, 45056, 81920, 12288, 24576, 20480, 16384, 12288, 36864, 24576, 32768,
    77824, 32768, 36864, 1163264, 12288, 45056, 12288, 61440, 20480, 57344, 20480, 20480,
    200704, 20480, 233472, 12288, 73728, 57344, 45056, 12288, 20480, 159744, 2048000,
    15536128, 20480, 126976, 69632, 6623232, 20480, 159744, 12288, 24576, 12288, 20480,
    69632, 16384, 24576, 20480, 24576, 241664, 98304, 40960, 65536, 90112, 237568, 73728,
    172032, 36864, 61440, 274432, 94208, 12288, 106496, 20480, 20480, 192512, 32768,
    81920, 65536, 12288, 36864,
)


class Policy(IntEnum):
    """How executable and read-only kernel allocations are made.

    ``LEGACY``: ``vmalloc`` + ``set_memory_ro/x`` (v5.10); ``PERM_ALLOC``: the RFC's
    interface (ideas 1 and 2; ideas 3 and 4 as options of :class:`PolicyConfig`);
    ``UPSTREAM``: ``bpf_prog_pack`` for BPF and the execmem ROX cache for module text.
    """

    LEGACY = 0
    PERM_ALLOC = 1
    UPSTREAM = 2


class OpKind(IntEnum):
    """One high-level operation; counters are attributed to the operation that issued them."""

    MODULE_LOAD = 0        # init_module syscall: allocation through do_init_module
    MODULE_INIT_FREE = 1   # do_free_init: the deferred free of the init regions
    MODULE_UNLOAD = 2      # free_module
    BPF_LOAD = 3           # bpf_prog_load: allocation, JIT, lock
    BPF_FREE = 4           # bpf_prog_free
    SHRINK = 5             # the perm_alloc cache shrinker under memory pressure


class PvEvent(IntEnum):
    """Counters. ``G_*`` are global (all-CPU) TLB shootdowns, by the code path that issued
    them; their sum is the shootdown count the claims speak of."""

    G_CPA = 0             # cpa_flush at the end of a set_memory_*() that changed something
    G_SPLIT = 1           # __split_large_page: flush_tlb_all per direct-map split
    G_PURGE = 2           # vm_unmap_aliases purging lazily freed vmap areas
    G_LAZY_THRESHOLD = 3  # free_vmap_area_noflush past lazy_max_pages
    G_VFREE_RESET = 4     # vm_remove_mappings of a VM_FLUSH_RESET_PERMS area
    G_PERM_CHANGE = 5     # perm_change of a live mapping (ro_after_init)
    G_PERM_FREE = 6       # perm_free of an executable mapping
    G_CACHE_FILL = 7      # pages unmapped from the direct map entering a cache
    G_LIVE_EVICT = 8      # idea 3: cached live mappings torn down for another use
    LOCAL = 9             # local flushes (text_poke's poking mm)
    PAGES_MAPPED = 10     # pages given a new live mapping
    CACHE_FILLS = 11      # 2 MiB blocks (or single pages) taken into a cache
    LAZY_PURGES = 12      # purges of the lazy list
    WX_VIOLATIONS = 13    # invariant 1 failures seen by the checker
    FREE_VIOLATIONS = 14  # invariant 2 failures seen by the checker
    LOAD_STEP_GLOBAL = 15  # global flushes while copying contents into the final mapping
    LOAD_STEP_LOCAL = 16   # local flushes while copying contents into the final mapping
    LOAD_STEP_LAZY = 17    # lazy-threshold purges that happened to fall in that step
    G_COLLAPSE = 18       # cpa_collapse_large_pages: flush_tlb_all after a PMD collapse
    PRIMARY_SPLITS = 19   # 2M leaves of a module-space mapping split by a partial CPA
    PRIMARY_COLLAPSES = 20  # 2M leaves of a module-space mapping restored (set_memory_rox)
    DM_SPLITS = 21        # direct-map leaf splits (vmstat direct_map_level{2,3}_splits)


GLOBAL_EVENTS = tuple(e for e in PvEvent if e.name.startswith("G_"))
GLOBAL_IDX = np.array([int(e) for e in GLOBAL_EVENTS], dtype=np.int64)
_EVENT_NAMES = tuple(e.name.lower() for e in PvEvent)


# ---- configuration ------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyConfig:
    """A policy and its options.

    Parameters
    ----------
    policy : :class:`Policy`
    cache_live : idea 3 (perm_alloc only): freed read-only and executable mappings are
        zeroed through ``text_poke`` and kept live for a later allocation of the same
        permission and size; torn down with one flush when their pages are needed elsewhere
    module_2m : idea 4 (perm_alloc only): module text and rodata and BPF programs carved
        from 2 MiB same-permission regions mapped with one PMD leaf each
    rw_from_cache : perm_alloc as posted: writable regions also draw from the unmapped cache
        (and are freed back to it without a flush). Off by default, as the RFC's TODO in
        ``perm_alloc`` proposes: with it on, the checker reports the W^X hole of a freed
        writable mapping still cached in a TLB while its page is mapped executable again
    shrink_flush : flush after the shrinker re-maps pages (the posted code does; the cover
        letter says NP->RW needs none)
    pack_huge : upstream ``bpf_prog_pack`` mapped with 2 MiB leaves when an order-9 block is
        available. Default: what the kernel of ``arch`` does (:data:`PACK_HUGE_BY_ARCH`: 4K
        pages on x86 and arm64); ``True`` is a counterfactual. The ROX cache of module text is
        always huge-mapped when it can be (``execmem_cache_populate``)
    arch : the architecture whose pack mapping is the default (``x86`` or ``arm64``); the
        modelled direct map and CPA paths are x86's either way
    """

    policy: Policy = Policy.LEGACY
    cache_live: bool = False
    module_2m: bool = False
    rw_from_cache: bool = False
    shrink_flush: bool = False
    pack_huge: bool | None = None
    arch: str = "x86"

    def __post_init__(self):
        check_choice("arch", self.arch, tuple(PACK_HUGE_BY_ARCH))
        if self.pack_huge is None:
            object.__setattr__(self, "pack_huge", PACK_HUGE_BY_ARCH[self.arch])
        try:
            object.__setattr__(self, "policy", Policy(self.policy) if not isinstance(
                self.policy, str) else Policy[self.policy.upper()])
        except (KeyError, ValueError):
            raise ConfigError(f"unknown policy {self.policy!r}; allowed: "
                              f"{', '.join(p.name.lower() for p in Policy)}", "policy") from None
        if self.policy != Policy.PERM_ALLOC and (self.cache_live or self.module_2m
                                                 or self.rw_from_cache):
            raise ConfigError("cache_live, module_2m and rw_from_cache are perm_alloc options",
                              "policy")

    @property
    def label(self) -> str:
        """A short name for charts: ``legacy``, ``perm_alloc``, ``perm_alloc+3``,
        ``perm_alloc+3+4``, ``upstream``..."""
        if self.policy == Policy.LEGACY:
            return "legacy"
        if self.policy == Policy.UPSTREAM:
            return "upstream" + ("-hugepack" if self.pack_huge else "")
        s = "perm_alloc"
        if self.cache_live:
            s += "+3"
        if self.module_2m:
            s += "+4"
        if self.rw_from_cache:
            s += "(posted)"
        return s


#: The policies every chart compares, in order.
STANDARD_POLICIES = (
    PolicyConfig(Policy.LEGACY),
    PolicyConfig(Policy.PERM_ALLOC),
    PolicyConfig(Policy.PERM_ALLOC, cache_live=True),
    PolicyConfig(Policy.PERM_ALLOC, cache_live=True, module_2m=True),
    PolicyConfig(Policy.UPSTREAM),
)


@dataclass(frozen=True)
class MachineConfig:
    """The machine and the background that ages its page allocator.

    Parameters
    ----------
    ram_bytes : RAM under the direct map and in the buddy pool (a multiple of 1 GiB)
    cpus : online CPUs (``lazy_max_pages`` grows with ``fls(cpus)``)
    bg_used_fraction : share of RAM held by other allocations when the workload starts
    bg_unmovable_share : share of those allocations that are unmovable (slab, page tables,
        kernel stacks); the rest are movable (page cache, anonymous memory)
    bg_ops_per_event : other allocations and frees between two modelled operations
    seed : seed of every random draw
    pcp : allocations and frees of the orders ``pcp_allowed_order`` admits (0 to
        ``PAGE_ALLOC_COSTLY_ORDER``, and pageblock_order with THP) go through per-CPU page
        lists (v6.1 ``rmqueue_pcplist``, ``free_unref_page_commit``;
        :func:`kmm.buddy.pcp_alloc_min`, :func:`kmm.buddy.pcp_free`), the background's
        and vmalloc's alike: each background operation runs on a CPU drawn uniformly among
        the ``cpus`` online CPUs, each modelled operation on one CPU drawn the same way.
        Every CPU has its own lists (the state grows by two words per CPU and list, so all
        of them are kept); ``batch`` is ``zone_batchsize`` of the pool and ``high``
        ``zone_highsize`` (:meth:`pcp_config`). A freed page waits unmerged on its CPU's
        list until the CPU holds ``high`` pages and ``free_pcppages_bulk`` returns a batch
    nofragment : ``ALLOC_NOFRAGMENT`` on the fast path (v6.1 ``alloc_flags_nofragment``:
        with ``CONFIG_ZONE_DMA32``, set for a ZONE_NORMAL preferred zone unless the machine
        has several nodes and ZONE_DMA32 is empty): the first pass steals from another
        migratetype only whole free pageblocks, then ``get_page_from_freelist`` retries
        without the flag. The modelled pool is one zone: the kernel would try ZONE_DMA32
        between the two passes
    """

    ram_bytes: int = 1 * GiB
    cpus: int = 64
    bg_used_fraction: float = 0.6
    bg_unmovable_share: float = 0.25
    bg_ops_per_event: int = 64
    seed: int = 0
    pcp: bool = False
    nofragment: bool = False

    def __post_init__(self):
        check_int("ram_bytes", self.ram_bytes, lo=GiB, hi=1 << 40)
        if self.ram_bytes % GiB:
            raise ConfigError(f"must be a multiple of 1 GiB, got {self.ram_bytes}", "ram_bytes")
        check_int("cpus", self.cpus, lo=1, hi=8192)
        check_float("bg_used_fraction", self.bg_used_fraction, 0.0, 0.95)
        check_float("bg_unmovable_share", self.bg_unmovable_share, 0.0, 1.0)
        check_int("bg_ops_per_event", self.bg_ops_per_event, lo=0, hi=1 << 20)
        check_int("seed", self.seed, lo=0)
        for name in ("pcp", "nofragment"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError("must be true or false", name)
        if self.pcp and self.cpus > PCP_MAX_CPUS:
            raise ConfigError(f"per-CPU lists are modelled for up to {PCP_MAX_CPUS} CPUs",
                              "cpus")

    @property
    def pages(self) -> int:
        return self.ram_bytes >> PAGE_SHIFT

    def pcp_config(self) -> eng.PcpConfig:
        """The per-CPU lists of the pool (one zone): ``batch`` = ``zone_batchsize`` (63 with
        4K pages above 256 MiB), ``high`` = :func:`zone_highsize`; with ``pcp`` off, one
        CPU's lists that are never used."""
        batch = eng.zone_batchsize(self.pages, PAGE)
        return eng.PcpConfig(cpus=self.cpus if self.pcp else 1, batch=batch,
                             high=zone_highsize(self.pages, self.cpus, batch))

    def buddy_config(self) -> BuddyConfig:
        """The pool. ``ALLOC_NOFRAGMENT`` is not the pool's (``BuddyConfig.nofragment``)
        but each allocation's (:func:`kmm.mech.permvmalloc.kernels.get_block`): vmalloc's
        bulk allocator runs without it."""
        return BuddyConfig.from_geometry(x86_64(4), self.ram_bytes)

    @property
    def lazy_max_pages(self) -> int:
        """``lazy_max_pages()``: ``fls(num_online_cpus()) * 32 MiB`` in pages."""
        return self.cpus.bit_length() * LAZY_UNIT_PAGES


#: :class:`kmm.buddy.PcpConfig`'s largest CPU count
PCP_MAX_CPUS = 4096
#: the pool the unused per-CPU lists of a machine without them are built over (their
#: per-page arrays are never read)
_NO_POOL = BuddyConfig(pool_pages=512)


def zone_highsize(pages: int, cpus: int, batch: int) -> int:
    """``pcp->high`` of a zone of ``pages`` 4K pages, the only zone of one node with
    ``cpus`` CPUs (mm/page_alloc.c v6.1 ``zone_highsize`` with
    ``percpu_pagelist_high_fraction`` 0): the low watermark split over the node's CPUs, at
    least ``batch << 2``. The low watermark is that of ``__setup_per_zone_wmarks``: min =
    ``min_free_kbytes`` pages (``calculate_min_free_kbytes``: ``int_sqrt(lowmem_kbytes *
    16)`` clamped to [128, 262144] KiB), plus ``max(min / 4, managed *
    watermark_scale_factor / 10000)`` with the default factor 10. On 64 CPUs the floor of
    four batches decides for any RAM up to 64 GiB."""
    check_int("pages", pages, lo=1)
    check_int("cpus", cpus, lo=1)
    kib = pages * (PAGE >> 10)
    min_kib = min(max(math.isqrt(kib * 16), 128), 262144)
    wmin = min_kib >> (PAGE_SHIFT - 10)
    low = wmin + max(wmin >> 2, pages * 10 // 10000)
    return max(low // cpus, batch << 2)


class _Ager:
    """Background allocations on a fresh pool (shares :meth:`PermVmalloc._bg_ops`)."""

    def __init__(self, machine: MachineConfig):
        self.machine = machine
        bcfg = machine.buddy_config()
        self.buddy = Buddy(bcfg)
        self._pst = machine.pcp_config().build(bcfg if machine.pcp else _NO_POOL)
        self.rng = np.random.default_rng(machine.seed)
        self._cpu_rng = np.random.default_rng([machine.seed, 1])
        n = machine.pages
        self._bg_pfn = np.empty(n, np.int32)
        self._bg_order = np.empty(n, np.int8)
        self._bg_live = 0
        self._bg_buf = tuple(np.zeros(0, np.int64) for _ in range(5))
        self._bg_pos = 0

    def _bg_stream(self, n: int, fill: bool):
        return PermVmalloc._bg_stream(self, n, fill)


@functools.lru_cache(maxsize=4)
def _aged_pool(machine: MachineConfig):
    """The pool after boot-time background: ``bg_used_fraction`` of RAM filled by other
    allocations (orders 0-3, unmovable or movable), then as many frees and allocations again
    so that free pages interleave with used ones (through the per-CPU lists when
    ``machine.pcp``). Memoised per machine: use :func:`_aged_copy`, which copies it.
    Returns ``(BuddyState, PcpState, live pfns, live orders, live count, seed for what
    follows)``."""
    a = _Ager(machine)
    target = int(machine.bg_used_fraction * machine.pages)
    fills = int(target / (0.8 + 0.05 * 2 + 0.1 * 4 + 0.05 * 8))
    PermVmalloc._bg_ops(a, fills, fill=True)
    PermVmalloc._bg_ops(a, fills)
    for arr in (*a.buddy.state, *a._pst, a._bg_pfn, a._bg_order):  # memoised and shared
        arr.flags.writeable = False
    return (a.buddy.state, a._pst, a._bg_pfn, a._bg_order, a._bg_live,
            int(a.rng.integers(0, 1 << 62)))


def _aged_copy(machine: MachineConfig):
    """A private copy of :func:`_aged_pool` for ``machine``: the ageing reads neither the
    churn between operations nor, without per-CPU lists, the CPU count, so machines that
    differ only there share one memoised pool; every array is copied (a caller's run never
    changes the memoised pool or another caller's)."""
    key = replace(machine, bg_ops_per_event=0, cpus=machine.cpus if machine.pcp else 1)
    st, pst, pfn, order, live, seed = _aged_pool(key)
    return (type(st)(*(a.copy() for a in st)), type(pst)(*(a.copy() for a in pst)),
            pfn.copy(), order.copy(), live, seed)


# ---- bookkeeping -----------------------------------------------------------------------------
class _VaSpace:
    """First-fit virtual address allocator of one range (``alloc_vmap_area``)."""

    def __init__(self, start: int, end: int):
        self.free: list[list[int]] = [[start, end]]

    def alloc(self, size: int, align: int = PAGE) -> int:
        for i, (s, e) in enumerate(self.free):
            a = -(-s // align) * align
            if a + size <= e:
                if a > s and a + size < e:
                    self.free[i:i + 1] = [[s, a], [a + size, e]]
                elif a > s:
                    self.free[i][1] = a
                elif a + size < e:
                    self.free[i][0] = a + size
                else:
                    del self.free[i]
                return a
        raise ConfigError("virtual address space exhausted", "va")

    def release(self, va: int, size: int) -> None:
        end = va + size
        lo, hi = 0, len(self.free)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.free[mid][0] < va:
                lo = mid + 1
            else:
                hi = mid
        self.free.insert(lo, [va, end])
        if lo + 1 < len(self.free) and self.free[lo][1] == self.free[lo + 1][0]:
            self.free[lo][1] = self.free[lo + 1][1]
            del self.free[lo + 1]
        if lo > 0 and self.free[lo - 1][1] == self.free[lo][0]:
            self.free[lo - 1][1] = self.free[lo][1]
            del self.free[lo]


@dataclass(eq=False)
class Area:
    """A vmap area with its pages (``struct vm_struct``): one live mapping of ``pfns`` at
    ``va`` with a permission per page and a leaf size."""

    va: int
    pfns: np.ndarray
    perm: np.ndarray
    space: str
    leaf_shift: int = PAGE_SHIFT
    flush_reset: bool = False
    blocks: list | None = None   # (pfn, order) to free; None: every page is order 0
    kind: str = ""
    #: per 2 MiB block of a ``leaf_shift = 21`` mapping: still one PMD leaf (True) or split
    #: into PTEs by a partial permission change (False)
    huge: np.ndarray | None = None

    def __post_init__(self):
        if self.leaf_shift > PAGE_SHIFT and self.huge is None:
            self.huge = np.ones(-(-self.npages // PMD_PAGES), bool)

    @property
    def npages(self) -> int:
        return int(self.pfns.shape[0])

    @property
    def end(self) -> int:
        return self.va + (self.npages << PAGE_SHIFT)


@dataclass(eq=False)
class _Lazy:
    va: int
    end: int
    pfns: np.ndarray
    w: np.ndarray       # pages whose stale translation is writable
    x: np.ndarray       # pages whose stale translation is executable
    dirty: bool = True


@dataclass(eq=False)
class Chunk:
    """An allocation carved from a shared region (arena, pack, ROX cache): ``npages`` pages
    (or ``nbytes`` bytes) at ``va`` inside ``region``."""

    region: Any
    va: int
    npages: int
    nbytes: int = 0
    first: int = 0      # first page index in the region (or first chunk for packs)


@dataclass(eq=False)
class Region:
    """A shared, permanently mapped region: a 2 MiB arena (idea 4), a bpf_prog_pack or a
    ROX cache region. ``used`` marks pages (or 64 B chunks for packs) in use."""

    area: Area
    used: np.ndarray
    perm: int


# ---- the simulator ----------------------------------------------------------------------------
class PermVmalloc:
    """One machine running one policy. Operations are :meth:`load_module`,
    :meth:`free_module_init`, :meth:`unload_module`, :meth:`load_bpf`, :meth:`free_bpf` and
    :meth:`shrink`; :attr:`ops` records what each cost.

    Parameters
    ----------
    machine : :class:`MachineConfig`
    policy : :class:`PolicyConfig`
    check : run the invariant checker after every step (slower; tests)
    snapshot_every : record DirectMap and cache sizes every this many operations
    """

    def __init__(self, machine: MachineConfig, policy: PolicyConfig, *, check: bool = False,
                 snapshot_every: int = 1):
        self.machine = machine
        self.policy = policy
        self.check = bool(check)
        self.snapshot_every = check_int("snapshot_every", snapshot_every, lo=1)
        self.g = x86_64(4)
        n = machine.pages
        self.npages = n
        self.dm = PageTable(self.g)
        self.dm.map(0, machine.ram_bytes, 0, Perm.RW)
        self.buddy = Buddy(machine.buddy_config())
        self._bg_buf = tuple(np.zeros(0, np.int64) for _ in range(5))
        self._bg_pos = 0
        (self.buddy.state, self._pst, self._bg_pfn, self._bg_order, self._bg_live,
         seed) = _aged_copy(machine)
        self.rng = np.random.default_rng(seed)
        #: CPU draws (per-CPU lists only) come from their own stream, so that the
        #: background's operations are the same with and without the lists
        self._cpu_rng = np.random.default_rng([seed, 1])
        self._cpu = 0   # the CPU of the current operation
        # per-page alias state (invariant checker and live-alias bookkeeping)
        self.live = np.full(n, -1, np.int8)        # perm of the one live mapping, -1 none
        self.stale_w = np.zeros(n, np.int16)       # lazy areas still cached writable
        self.stale_x = np.zeros(n, np.int16)       # lazy areas still cached executable
        self.dm_pend = np.zeros(n, np.int16)       # direct-map W dropped, not yet flushed
        self._dm_pending: list[np.ndarray] = []
        self.spaces = {"modules": _VaSpace(MODULES_VADDR, MODULES_END),
                       "vmalloc": _VaSpace(VMALLOC_START, VMALLOC_END)}
        self.lazy: list[_Lazy] = []
        self._dirty: list[_Lazy] = []    # lazy areas possibly still cached in a TLB
        self.lazy_pages = 0
        self.counts = Counters(PvEvent)
        # perm_alloc: cache of (pfn, protected) pages unmapped from the direct map
        self.cache: list[tuple[int, bool]] = []
        self.live_cache: dict[tuple[int, int], list[Area]] = {}
        self.regions: dict[str, list[Region]] = {"arena_rx": [], "arena_r": [], "pack": [],
                                                 "rox": []}
        self.ops: list[dict] = []
        self.snapshots: list[dict] = []
        #: every TLB flush as (operation index, kind, start VA, end VA): kind 0 a full
        #: all-CPU flush, 1 an all-CPU kernel range flush, 2 a local flush
        self.flush_log: list[tuple[int, int, int, int]] = []
        self.violations: list[str] = []
        self._op: dict | None = None
        self._before: np.ndarray | None = None
        self._snapshot(force=True)

    # ---- background ---------------------------------------------------------------------
    def _bg_stream(self, n: int, fill: bool) -> tuple[np.ndarray, ...]:
        rng = self.rng
        kind = np.zeros(n, np.int64) if fill else rng.integers(0, 2, n)
        order = rng.choice(np.array([0, 1, 2, 3]), n, p=[0.8, 0.05, 0.1, 0.05]).astype(np.int64)
        mt = np.where(rng.random(n) < self.machine.bg_unmovable_share, UNMOVABLE,
                      MOVABLE).astype(np.int64)
        pick = rng.integers(0, 1 << 40, n)
        m = self.machine
        cpu = (self._cpu_rng.integers(0, m.cpus, n) if m.pcp else np.zeros(n, np.int64))
        return kind, order, mt, pick, cpu

    def _bg_ops(self, n: int, fill: bool = False) -> None:
        """``n`` background operations; between modelled operations they come from a
        pre-drawn stream so that each costs one kernel call."""
        if n <= 0:
            return
        if fill or n > 4096:
            stream = self._bg_stream(n, fill)
        else:
            if self._bg_pos + n > self._bg_buf[0].shape[0]:
                self._bg_buf = self._bg_stream(max(65536, n), False)
                self._bg_pos = 0
            i = self._bg_pos
            stream = tuple(a[i:i + n] for a in self._bg_buf)
            self._bg_pos += n
        m = self.machine
        self._bg_live = int(bg_churn_pcp(self.buddy.state, self._pst, self._bg_pfn,
                                         self._bg_order, np.int64(self._bg_live), *stream,
                                         np.int64(m.pcp), np.int64(m.nofragment)))

    # ---- operations bookkeeping ------------------------------------------------------------
    def _begin(self, kind: OpKind, obj: str, **extra) -> None:
        self._bg_ops(self.machine.bg_ops_per_event)
        if self.machine.pcp:
            self._cpu = int(self._cpu_rng.integers(0, self.machine.cpus))
        self._op = {"op": kind.name.lower(), "object": obj, **extra}
        self._before = self.counts.values.copy()

    def _end(self) -> dict:
        d = self.counts.values - self._before
        rec = self._op
        rec.update(zip(_EVENT_NAMES, d.tolist()))
        rec["global_flushes"] = int(d[GLOBAL_IDX].sum())
        rec["index"] = len(self.ops)
        self.ops.append(rec)
        self._op = None
        self._snapshot()
        return rec

    def directmap_bytes(self) -> dict[str, int]:
        """DirectMap4k/2M/1G as /proc/meminfo reports them (bytes)."""
        by = self.dm.leaf_bytes_by_level()
        out = {"4k": 0, "2m": 0, "1g": 0}
        for (lv, _c), b in by.items():
            out[{3: "4k", 2: "2m", 1: "1g"}[lv]] += b
        return out

    def cache_bytes(self) -> dict[str, int]:
        """Memory held by the policy's caches, by cache (free pages only)."""
        live = sum(a.npages for lst in self.live_cache.values() for a in lst)
        out = {"unmapped_cache": len(self.cache) * PAGE, "live_cache": live * PAGE}
        for name, regs in self.regions.items():
            if name == "pack":
                free = sum(int((~r.used).sum()) * BPF_CHUNK_BYTES for r in regs)
            else:
                free = sum(int((~r.used).sum()) * PAGE for r in regs)
            out[name] = free
        return out

    def _snapshot(self, force: bool = False) -> None:
        if not force and len(self.ops) % self.snapshot_every:
            return
        dmb = self.directmap_bytes()
        st = self.buddy.state
        nt = self.buddy.config.table.n_types
        nr = st.nr_free.reshape(-1, nt).sum(axis=1)
        high = int(sum(int(nr[o]) << o for o in range(9, nr.shape[0]))) * PAGE
        cb = self.cache_bytes()
        self.snapshots.append({"index": len(self.ops), "directmap_4k": dmb["4k"],
                               "directmap_2m": dmb["2m"], "directmap_1g": dmb["1g"],
                               "cache_bytes": sum(cb.values()), "free_order9_bytes": high,
                               "table_bytes": self.dm.table_bytes()})

    # ---- invariant checker -----------------------------------------------------------------
    def _dm_perm(self, pfns: np.ndarray) -> np.ndarray:
        _pa, level, _c, perm, _n = self.dm.translate_many(np.asarray(pfns, np.int64) << PAGE_SHIFT)
        return perm

    def _check(self, pfns: np.ndarray, where: str) -> None:
        if not self.check or pfns.size == 0:
            return
        pfns = np.asarray(pfns, np.int64)
        live = self.live[pfns].astype(np.int64)
        has = live >= 0
        wsrc = ((self._dm_perm(pfns) & W) != 0) | (has & ((live & W) != 0)) | \
            (self.stale_w[pfns] > 0) | (self.dm_pend[pfns] > 0)
        xsrc = (has & ((live & X) != 0)) | (self.stale_x[pfns] > 0)
        bad = wsrc & xsrc
        if bad.any():
            self.counts.values[PvEvent.WX_VIOLATIONS] += int(bad.sum())
            if len(self.violations) < 20:
                self.violations.append(f"W^X at pfn {int(pfns[bad][0])} after {where}")

    def _check_free(self, pfns: np.ndarray, where: str) -> None:
        if not self.check or pfns.size == 0:
            return
        pfns = np.asarray(pfns, np.int64)
        live = self.live[pfns].astype(np.int64)
        bad = ((live >= 0) & ((live & X) != 0)) | (self.stale_x[pfns] > 0)
        if bad.any():
            self.counts.values[PvEvent.FREE_VIOLATIONS] += int(bad.sum())
            if len(self.violations) < 20:
                self.violations.append(f"executable alias of freed pfn {int(pfns[bad][0])} "
                                       f"at {where}")

    # ---- TLB maintenance -----------------------------------------------------------------
    def _clean(self, lz: _Lazy) -> None:
        if lz.dirty:
            self.stale_w[lz.pfns[lz.w]] -= 1
            self.stale_x[lz.pfns[lz.x]] -= 1
            lz.dirty = False

    def _flush_all(self, cause: PvEvent, log: bool = True) -> None:
        """``flush_tlb_all`` (or a ranged flush past the ceiling): every CPU, everything."""
        self.counts.values[cause] += 1
        if log:
            self.flush_log.append((len(self.ops), 0, 0, 0))
        for lz in self._dirty:
            self._clean(lz)
        self._dirty = []
        for a in self._dm_pending:
            self.dm_pend[a] -= 1
        self._dm_pending = []

    def _flush_range(self, lo: int, hi: int, cause: PvEvent) -> None:
        """``flush_tlb_kernel_range(lo, hi)``: an IPI to every CPU; a full flush past
        ``tlb_single_page_flush_ceiling`` pages, else INVLPG of each page."""
        self.flush_log.append((len(self.ops), 1, lo, hi))
        if (hi - lo) >> PAGE_SHIFT > FLUSH_CEILING_PAGES:
            self._flush_all(cause, log=False)
            return
        self.counts.values[cause] += 1
        keep_dirty = []
        for lz in self._dirty:
            if lz.va >= lo and lz.end <= hi:
                self._clean(lz)
            else:
                keep_dirty.append(lz)
        self._dirty = keep_dirty
        keep = []
        plo = (lo - PAGE_OFFSET) >> PAGE_SHIFT
        phi = (hi - PAGE_OFFSET) >> PAGE_SHIFT
        for a in self._dm_pending:
            if phi <= 0 or plo >= self.npages:
                keep.append(a)
                continue
            inside = (a >= plo) & (a < phi)
            self.dm_pend[a[inside]] -= 1
            if (~inside).any():
                keep.append(a[~inside])
        self._dm_pending = keep

    def _local(self, n: int = 1, pages: int = 1) -> None:
        """``n`` flushes of ``pages`` pages of the poking mm, on this CPU only."""
        self.counts.values[PvEvent.LOCAL] += n
        self.flush_log.extend([(len(self.ops), 2, 0, pages << PAGE_SHIFT)] * n)

    # ---- direct map (arch/x86/mm/pat/set_memory.c) -------------------------------------
    def _dm_change(self, pfns: np.ndarray, clr: int, set_: int, per_page: bool) -> int:
        """Change direct-map permissions of ``pfns``; splits flush. ``per_page``: one CPA
        call per page (``numpages = 1``: any large leaf holding a changed page is split);
        otherwise one call per 2 MiB-aligned block (a whole large leaf is kept).
        Returns the number of pages changed."""
        pfns = np.unique(np.asarray(pfns, np.int64))
        if pfns.size == 0:
            return 0
        cur = self._dm_perm(pfns)
        new = (cur & ~clr) | set_
        # a non-present PTE keeps its other bits unchanged by W changes (stays non-present)
        if not (set_ & R) and not (clr & R):
            new = np.where(cur == NONE, NONE, new)
        ch = new != cur
        if not ch.any():
            return 0
        before = self.dm.counters.block_splits
        todo = pfns[ch]
        newp = new[ch]
        lost_w = todo[((cur[ch] & W) != 0) & ((newp & W) == 0)]
        # maximal runs of consecutive pfns with the same new permission, one op each
        cut = np.flatnonzero((np.diff(todo) != 1) | (np.diff(newp) != 0)) + 1
        starts = np.concatenate([[0], cut])
        lens = np.diff(np.concatenate([starts, [todo.shape[0]]]))
        mode = int(PermSplit.TO_PTES if per_page else PermSplit.BOUNDARY)
        # op rows as kmm.pagetable.encode_ops lays them out; every field is page aligned
        # and in range by construction
        ops = np.zeros((starts.shape[0], OP_FIELDS), np.int64)
        ops[:, OP_KIND] = OP_SET_PERM
        ops[:, OP_VA] = todo[starts] << PAGE_SHIFT
        ops[:, OP_SIZE] = lens << PAGE_SHIFT
        ops[:, OP_PERM] = newp[starts]
        ops[:, OP_AUX] = mode
        ret = self.dm.apply_ops(ops)
        if ret.any():
            raise ConfigError(f"direct-map change failed ({int(ret[ret != 0][0])})", "direct map")
        for _ in range(self.dm.counters.block_splits - before):
            self.counts.values[PvEvent.DM_SPLITS] += 1
            self._flush_all(PvEvent.G_SPLIT)
        if lost_w.size:
            self.dm_pend[lost_w] += 1
            self._dm_pending.append(lost_w)
        return int(todo.shape[0])

    def _dm_range(self, pfns: np.ndarray) -> tuple[int, int]:
        return (PAGE_OFFSET + (int(pfns.min()) << PAGE_SHIFT),
                PAGE_OFFSET + ((int(pfns.max()) + 1) << PAGE_SHIFT))

    # ---- vmap layer (mm/vmalloc.c) -------------------------------------------------------
    def _pages(self, n: int) -> np.ndarray:
        out = np.empty(n, np.int64)
        m = self.machine
        got = alloc_order0_pcp(self.buddy.state, self._pst, np.int64(self._cpu), np.int64(n),
                           np.int64(UNMOVABLE), out, np.int64(m.pcp), np.int64(m.nofragment))
        if got < n:
            self._free_pages(out[:got])
            raise ConfigError(f"page pool exhausted allocating {n} pages", "ram_bytes")
        return out

    def _block(self) -> int:
        """An order-9 unmovable block split into pages, or -1 (``alloc_pages(GFP_KERNEL,
        9)``: with per-CPU lists, through the CPU's THP list, ``pcp_allowed_order``)."""
        m = self.machine
        pfn = int(get_block(self.buddy.state, self._pst, np.int64(self._cpu), np.int64(9),
                            np.int64(UNMOVABLE), np.int64(m.pcp), np.int64(m.nofragment)))
        if pfn >= 0:
            split_block(self.buddy.state, np.int64(pfn), np.int64(9))
        return pfn

    def _map(self, space: str, pfns: np.ndarray, perm: int, *, leaf_shift: int = PAGE_SHIFT,
             flush_reset: bool = False, align: int = PAGE, kind: str = "",
             va: int | None = None) -> Area:
        n = int(pfns.shape[0])
        if va is None:
            va = self.spaces[space].alloc(n << PAGE_SHIFT, align)
        if self.check and (self.live[pfns] >= 0).any():
            raise AssertionError("page mapped twice")
        a = Area(va, np.asarray(pfns, np.int64), np.full(n, perm, np.int8), space,
                 leaf_shift, flush_reset, None, kind)
        self.live[a.pfns] = perm
        self.counts.values[PvEvent.PAGES_MAPPED] += n
        self._check(a.pfns, f"map {kind}")
        return a

    def vmalloc(self, space: str, npages: int, *, flush_reset: bool = False,
                kind: str = "") -> Area:
        """``__vmalloc_node_range(..., PAGE_KERNEL)``: order-0 pages, mapped RW+NX; no flush."""
        return self._map(space, self._pages(npages), RW, flush_reset=flush_reset, kind=kind)

    def _unmap_lazy(self, a: Area) -> None:
        """``remove_vm_area`` -> ``free_unmap_vmap_area``: PTEs cleared, area on the lazy
        purge list; a purge when the list passes ``lazy_max_pages``."""
        w = (a.perm & W) != 0
        x = (a.perm & X) != 0
        self.stale_w[a.pfns[w]] += 1
        self.stale_x[a.pfns[x]] += 1
        self.live[a.pfns] = -1
        lz = _Lazy(a.va, a.end, a.pfns, w, x)
        self.lazy.append(lz)
        self._dirty.append(lz)
        self.lazy_pages += a.npages
        if self.lazy_pages > self.machine.lazy_max_pages:
            self._purge(PvEvent.G_LAZY_THRESHOLD)

    def _purge(self, cause: PvEvent) -> bool:
        """``__purge_vmap_area_lazy``: one flush over the union of lazy areas, if any."""
        if not self.lazy:
            return False
        lo = min(lz.va for lz in self.lazy)
        hi = max(lz.end for lz in self.lazy)
        self._flush_range(lo, hi, cause)
        for lz in self.lazy:
            self._clean(lz)
        self._dirty = [lz for lz in self._dirty if lz.dirty]
        for lz in self.lazy:
            space = "modules" if lz.va >= MODULES_VADDR else "vmalloc"
            self.spaces[space].release(lz.va, lz.end - lz.va)
        self.lazy = []
        self.lazy_pages = 0
        self.counts.values[PvEvent.LAZY_PURGES] += 1
        return True

    def vm_unmap_aliases(self) -> None:
        """``vm_unmap_aliases()``: purge lazily freed areas (dirty vmap blocks are not
        modelled: nothing here uses ``vm_map_ram``)."""
        self._purge(PvEvent.G_PURGE)

    def _free_blocks(self, a: Area, where: str) -> None:
        self._check_free(a.pfns, where)
        if a.blocks is None:
            self._free_pages(a.pfns)
        else:
            for pfn, order in a.blocks:
                if not put_block(self.buddy.state, self._pst, np.int64(self._cpu),
                                 np.int64(pfn), np.int64(order), np.int64(self.machine.pcp)):
                    raise ConfigError(f"no allocated order-{order} block at pfn {pfn}", "pfn")

    def _free_pages(self, pfns: np.ndarray) -> None:
        if free_order0_pcp(self.buddy.state, self._pst, np.int64(self._cpu),
                       np.asarray(pfns, np.int64), np.int64(self.machine.pcp)) != pfns.shape[0]:
            raise ConfigError("freed a page that was not allocated", "pfn")

    def vfree(self, a: Area) -> None:
        """``vfree`` (``__vunmap`` -> ``vm_remove_mappings``): lazy unmap; for a
        ``VM_FLUSH_RESET_PERMS`` area the direct map is made invalid page by page, one flush
        covers both aliases, then the direct map is reset to RW; pages return to the
        allocator."""
        self._unmap_lazy(a)
        if a.flush_reset:
            self._dm_change(a.pfns, RW, NONE, per_page=True)
            lo, hi = self._dm_range(a.pfns)
            if not self._purge(PvEvent.G_VFREE_RESET):
                self._flush_range(lo, hi, PvEvent.G_VFREE_RESET)
            self._dm_change(a.pfns, NONE, RW, per_page=True)
        self._free_blocks(a, f"vfree {a.kind}")

    # ---- set_memory_*() -------------------------------------------------------------------
    def _cpa(self, a: Area | None, lo: int, hi: int, set_: int, clr: int,
             collapse: bool = False) -> None:
        """``change_page_attr_set_clr`` on pages ``[lo, hi)`` of ``a`` (an empty range, or
        no area, still runs ``vm_unmap_aliases``).

        A 2 MiB leaf of ``a`` that the change covers only in part is split first
        (``__change_page_attr`` -> ``__split_large_page``: ``flush_tlb_all``); the direct-map
        alias of pages behind a 4K primary is changed page by page, behind a 2M primary a
        whole 2M at a time. ``collapse`` (``CPA_COLLAPSE``, ``set_memory_rox`` only, v6.15
        arch/x86/mm/pat/set_memory.c ``cpa_collapse_large_pages``): after the flush, each
        2 MiB block of the primary range whose 512 PTEs map 2M-aligned contiguous pages with
        one permission becomes a PMD leaf again, and one ``flush_tlb_all`` follows if any
        did. The direct-map alias is never collapsed (the collapse walks the primary range
        only)."""
        self.vm_unmap_aliases()
        if a is None or hi <= lo:
            return
        old = a.perm[lo:hi].astype(np.int64)
        new = (old & ~clr) | set_
        ch = new != old
        if not ch.any():   # no CPA_FLUSHTLB: no cpa_flush, so no collapse either
            return
        if a.huge is not None:
            for b in np.unique((lo + np.flatnonzero(ch)) // PMD_PAGES).tolist():
                blo, bhi = b * PMD_PAGES, min((b + 1) * PMD_PAGES, a.npages)
                if a.huge[b] and not (lo <= blo and hi >= bhi):
                    a.huge[b] = False
                    self.counts.values[PvEvent.PRIMARY_SPLITS] += 1
                    self._flush_all(PvEvent.G_SPLIT)
        a.perm[lo:hi] = new
        self.live[a.pfns[lo:hi]] = new
        force_all = False
        wbits = (set_ | clr) & W
        if wbits:  # alias processing: W (and present) only, never NX
            idx = lo + np.flatnonzero(((old ^ new) & W) != 0)
            big = (a.huge[idx // PMD_PAGES] if a.huge is not None
                   else np.zeros(idx.shape[0], bool))
            pf = a.pfns[idx]
            if (~big).any():
                self._dm_change(pf[~big], clr & W, set_ & W, per_page=True)
            if big.any():
                self._dm_change(pf[big], clr & W, set_ & W, per_page=False)
            force_all = True
        if force_all or hi - lo > FLUSH_CEILING_PAGES:
            self._flush_all(PvEvent.G_CPA)
        else:
            self._flush_range(a.va + (lo << PAGE_SHIFT), a.va + (hi << PAGE_SHIFT),
                              PvEvent.G_CPA)
        self._check(a.pfns[lo:hi], f"set_memory on {a.kind}")
        if collapse:
            self._collapse(a, lo, hi)

    def _collapse(self, a: Area, lo: int, hi: int) -> None:
        """``cpa_collapse_large_pages`` over pages ``[lo, hi)`` of ``a`` (2 MiB blocks
        counted from the area's start, which the modelled huge mappings align to 2 MiB)."""
        if a.va % PACK_BYTES:
            return
        if a.huge is None:
            a.huge = np.zeros(-(-a.npages // PMD_PAGES), bool)
        done = 0
        for b in range(lo // PMD_PAGES, -(-hi // PMD_PAGES)):
            blo, bhi = b * PMD_PAGES, (b + 1) * PMD_PAGES
            if a.huge[b] or bhi > a.npages:
                continue
            pf = a.pfns[blo:bhi]
            if pf[0] % PMD_PAGES or (np.diff(pf) != 1).any() or (a.perm[blo:bhi] != a.perm[blo]).any():
                continue
            a.huge[b] = True
            done += 1
        if done:
            self.counts.values[PvEvent.PRIMARY_COLLAPSES] += done
            self._flush_all(PvEvent.G_COLLAPSE)

    def set_memory_ro(self, a: Area | None, lo: int, hi: int) -> None:
        self._cpa(a, lo, hi, 0, W)

    def set_memory_rw(self, a: Area | None, lo: int, hi: int) -> None:
        self._cpa(a, lo, hi, W, 0)

    def set_memory_x(self, a: Area | None, lo: int, hi: int) -> None:
        self._cpa(a, lo, hi, X, 0)

    def set_memory_nx(self, a: Area | None, lo: int, hi: int) -> None:
        self._cpa(a, lo, hi, 0, X)

    def set_memory_rox(self, a: Area | None, lo: int, hi: int, collapse: bool = True) -> None:
        """``set_memory_rox``; ``collapse``: with ``CPA_COLLAPSE`` (v6.15 and later; not in
        the v6.14 flows)."""
        self._cpa(a, lo, hi, X, W, collapse=collapse)

    # ---- perm_alloc (RFC arch/x86/mm/vmalloc.c) -------------------------------------------
    def _replenish(self) -> None:
        """``replenish_pages``: an order-9 block unmapped from the direct map page by page,
        one flush, ``vm_unmap_aliases``; a single page marked unprotected as fallback."""
        pfn = self._block()
        self.counts.values[PvEvent.CACHE_FILLS] += 1
        if pfn < 0:
            self.cache.append((int(self._pages(1)[0]), False))
            return
        pfns = np.arange(pfn, pfn + PMD_PAGES, dtype=np.int64)
        self._dm_change(pfns, RW, NONE, per_page=True)
        self.cache.extend((int(p), True) for p in pfns)
        self._flush_range(*self._dm_range(pfns), PvEvent.G_CACHE_FILL)
        self.vm_unmap_aliases()

    def _evict_live(self) -> bool:
        """Idea 3: tear every cached live mapping down with one flush; pages to the cache."""
        areas = [a for lst in self.live_cache.values() for a in lst]
        if not areas:
            return False
        self.live_cache = {}
        for a in areas:
            self._unmap_lazy(a)
        self._flush_all(PvEvent.G_LIVE_EVICT)
        for a in areas:
            self._check_free(a.pfns, "live-cache eviction")
            self.cache.extend((int(p), True) for p in a.pfns)
        return True

    def _get_perm_page(self) -> tuple[int, bool]:
        if not self.cache:
            if not (self.policy.cache_live and self._evict_live()):
                self._replenish()
        return self.cache.pop()

    def perm_alloc(self, npages: int, perm: int, kind: str = "") -> Area | None:
        """``perm_alloc``: pages from the unmapped cache, mapped at their final permission
        (no flush unless unprotected pages had to leave the direct map)."""
        if npages <= 0:
            return None
        if self.policy.cache_live and not perm & W:
            lst = self.live_cache.get((perm, npages))
            if lst:
                a = lst.pop()
                a.kind = kind
                return a
        got = [self._get_perm_page() for _ in range(npages)]
        pfns = np.array([p for p, _ in got], np.int64)
        unprot = np.array([p for p, prot in got if not prot], np.int64)
        if unprot.size:
            self._dm_change(unprot, RW, NONE, per_page=True)
            self._flush_range(*self._dm_range(unprot), PvEvent.G_CACHE_FILL)
            self.vm_unmap_aliases()
        a = self._map("modules", pfns, perm, kind=kind)
        a.blocks = []   # pages return to the cache, not to the allocator
        return a

    def perm_change(self, a: Area | None, perm: int) -> None:
        """``perm_change``: ``set_memory_noalias_noflush`` + ``flush_tlb_kernel_range``."""
        if a is None or (a.perm == perm).all():
            return
        a.perm[:] = perm
        self.live[a.pfns] = perm
        self._flush_range(a.va, a.end, PvEvent.G_PERM_CHANGE)
        self._check(a.pfns, f"perm_change {a.kind}")

    def perm_free(self, a: Area | None) -> None:
        """``perm_free``: lazy unmap, a flush only for an executable mapping, pages back to
        the cache (idea 3: zeroed through text_poke and kept live instead)."""
        if a is None:
            return
        perm = int(a.perm[0])
        if self.policy.cache_live and not perm & W:
            self._local(a.npages)
            self.live_cache.setdefault((perm, a.npages), []).append(a)
            return
        self._unmap_lazy(a)
        if perm & X:
            self._flush_range(a.va, a.end, PvEvent.G_PERM_FREE)
        self._check_free(a.pfns, f"perm_free {a.kind}")
        self.cache.extend((int(p), True) for p in a.pfns)

    def text_poke_load(self, a: Area | None) -> None:
        """``perm_writable_finish``: a staging vmalloc buffer copied page by page with
        ``text_poke`` (local flush each), then freed lazily."""
        if a is None or int(a.perm[0]) & W:
            return
        stage = self.vmalloc("vmalloc", a.npages, kind="staging")
        self._local(a.npages)
        self.vfree(stage)

    def shrink(self) -> int:
        """The perm_alloc shrinker: every cached page re-mapped NP->RW in the direct map
        (no flush needed; ``shrink_flush`` flushes as the posted code does) and freed."""
        self._begin(OpKind.SHRINK, "shrinker")
        if self.cache:
            pfns = np.array([p for p, _ in self.cache], np.int64)
            self.cache = []
            self._dm_change(pfns, NONE, RW, per_page=True)
            if self.policy.shrink_flush:
                self._flush_range(*self._dm_range(pfns), PvEvent.G_CACHE_FILL)
            self._check_free(pfns, "shrink")
            self._free_pages(pfns)
            n = int(pfns.shape[0])
        else:
            n = 0
        self._end()
        return n

    # ---- shared regions: idea-4 arenas, bpf_prog_pack, ROX cache -----------------------
    def _new_region(self, kind: str, blocks: int, perm: int, *,
                    unit_bytes: int = PAGE) -> Region | None:
        """``blocks`` x 2 MiB of contiguous module space backed by order-9 blocks and mapped
        with PMD leaves; None if no order-9 block is free.

        Idea-4 arenas: the direct-map alias is invalidated one 2 MiB block per call (no
        split of a 2M leaf), one flush, ``vm_unmap_aliases``, then the final mapping.
        ``bpf_prog_pack`` and the ROX cache (``alloc_new_pack``, ``execmem_cache_populate``
        after "execmem: don't remove ROX cache from the direct map"): a RW huge vmalloc
        filled with traps, then ``set_memory_rox`` (direct-map alias read-only)."""
        pf = []
        for _ in range(blocks):
            b = self._block()
            if b < 0:
                for q in pf:
                    self._free_pages(np.arange(q, q + PMD_PAGES, dtype=np.int64))
                return None
            pf.append(b)
        self.counts.values[PvEvent.CACHE_FILLS] += blocks
        pfns = np.concatenate([np.arange(b, b + PMD_PAGES, dtype=np.int64) for b in pf])
        va = self.spaces["modules"].alloc(blocks * PACK_BYTES, PACK_BYTES)
        if kind in ("pack", "rox"):
            a = self._map("modules", pfns, RW, leaf_shift=21, flush_reset=True, kind=kind,
                          va=va)
            self.set_memory_rox(a, 0, a.npages)
        else:
            for b in pf:
                self._dm_change(np.arange(b, b + PMD_PAGES), RW, NONE, per_page=False)
            self._flush_range(*self._dm_range(pfns), PvEvent.G_CACHE_FILL)
            self.vm_unmap_aliases()
            a = self._map("modules", pfns, perm, leaf_shift=21, kind=kind, va=va)
        return Region(a, np.zeros((blocks * PACK_BYTES) // unit_bytes, bool), perm)

    @staticmethod
    def _first_fit(used: np.ndarray, n: int) -> int:
        free = ~used
        if n == 1:
            idx = np.flatnonzero(free)
            return int(idx[0]) if idx.size else -1
        c = np.concatenate([[0], np.cumsum(free)])
        ok = np.flatnonzero(c[n:] - c[:-n] == n)
        return int(ok[0]) if ok.size else -1

    def _region_alloc(self, kind: str, n: int, perm: int, *,
                      unit_bytes: int = PAGE) -> Chunk | None:
        regs = self.regions[kind]
        for r in regs:
            i = self._first_fit(r.used, n)
            if i >= 0:
                r.used[i:i + n] = True
                return Chunk(r, r.area.va + i * unit_bytes, n, first=i)
        per = PACK_BYTES // unit_bytes
        r = self._new_region(kind, -(-n // per), perm, unit_bytes=unit_bytes)
        if r is None:
            return None
        regs.append(r)
        r.used[:n] = True
        return Chunk(r, r.area.va, n, first=0)

    def _region_free(self, c: Chunk) -> None:
        c.region.used[c.first:c.first + c.npages] = False

    @staticmethod
    def _pokes(va: int, nbytes: int) -> int:
        """``__text_poke`` calls of ``text_poke_copy``/``text_poke_set``: at most two pages
        each."""
        n, done = 0, 0
        while done < nbytes:
            off = (va + done) % PAGE
            done += min(2 * PAGE - off, nbytes - done)
            n += 1
        return n

    @staticmethod
    def _text(x, nbytes: int | None = None) -> list[tuple[int, int, int]]:
        """``(va, bytes, leaf_shift)`` of the executable code of an allocation."""
        if x is None:
            return []
        if isinstance(x, Chunk):
            n = nbytes or x.nbytes or (x.npages << PAGE_SHIFT)
            return [(x.va, n, PermVmalloc._leaf_at(x.region.area, x.va, n))]
        n = nbytes or (x.npages << PAGE_SHIFT)
        return [(x.va, n, PermVmalloc._leaf_at(x, x.va, n))]

    @staticmethod
    def _leaf_at(a: Area, va: int, nbytes: int) -> int:
        """The leaf shift mapping ``[va, va + nbytes)`` of ``a`` now: 21 if every 2 MiB
        block it touches is a PMD leaf, else 12."""
        if a.huge is None:
            return PAGE_SHIFT
        b0 = (va - a.va) >> 21
        b1 = (va + max(nbytes, 1) - 1 - a.va) >> 21
        return 21 if a.huge[b0:b1 + 1].all() else PAGE_SHIFT

    # ---- module loading ---------------------------------------------------------------------
    def load_module(self, m: ModuleSpec) -> dict:
        """``init_module``: from the ELF copy through ``do_init_module`` (the deferred init
        free is :meth:`free_module_init`). The record keeps the module's ``jump_entries``
        and ``static_call_sites``: the patching of its static branches and static calls once
        its text is mapped read-only and executable is priced by :func:`op_costs`
        (:func:`text_poke_batches`, :func:`static_call_batches`), not simulated here."""
        self._begin(OpKind.MODULE_LOAD, m.name, pages=m.core_pages + m.init_pages,
                    jump_entries=int(getattr(m, "jump_entries", 0)),
                    static_call_sites=int(getattr(m, "static_call_sites", 0)))
        elf = self.vmalloc("vmalloc", m.elf_pages, kind="elf")
        p = self.policy.policy
        if p == Policy.LEGACY:
            st = self._load_module_legacy(m, elf)
        elif p == Policy.PERM_ALLOC:
            st = self._load_module_perm(m, elf)
        else:
            st = self._load_module_upstream(m, elf)
        self._end()
        return st

    def _load_module_legacy(self, m: ModuleSpec, elf: Area) -> dict:
        core = self.vmalloc("modules", m.core_pages, flush_reset=True, kind="module core")
        init = (self.vmalloc("modules", m.init_pages, flush_reset=True, kind="module init")
                if m.init_pages else None)
        t, ro, rai = m.text, m.text + m.ro, m.text + m.ro + m.rai
        it, iro = m.init_text, m.init_text + m.init_ro
        ro_, nx_, x_ = self.set_memory_ro, self.set_memory_nx, self.set_memory_x
        ilen = init.npages if init is not None else 0
        # complete_formation: module_enable_ro(mod, false)
        for a, lo, hi in ((core, 0, t), (core, t, ro), (init, 0, it), (init, it, iro)):
            ro_(a, lo, hi)
        # module_enable_nx: rodata, ro_after_init, data (core); rodata, data (init)
        for a, lo, hi in ((core, t, ro), (core, ro, rai), (core, rai, core.npages),
                          (init, it, iro), (init, iro, ilen)):
            nx_(a, lo, hi)
        # module_enable_x
        x_(core, 0, t)
        x_(init, 0, it)
        self.vfree(elf)                                   # free_copy
        # do_init_module: module_enable_ro(mod, true)
        for a, lo, hi in ((core, 0, t), (core, t, ro), (init, 0, it), (init, it, iro),
                          (core, ro, rai)):
            ro_(a, lo, hi)
        return {"core": core, "init": init, "text": [(core.va, t << PAGE_SHIFT, PAGE_SHIFT)]}

    def _perm_region(self, n: int, perm: int, kind: str, *, later_ro: bool = False):
        """One module region under perm_alloc: idea 4 regions for text and rodata, the
        unmapped cache for read-only (or later read-only) regions, plain vmalloc for data
        unless ``rw_from_cache``."""
        if n <= 0:
            return None
        if self.policy.module_2m and perm in (RX, RO):
            c = self._region_alloc("arena_rx" if perm == RX else "arena_r", n, perm)
            if c is not None:
                return c
        if perm & W and not later_ro and not self.policy.rw_from_cache:
            return self.vmalloc("modules", n, kind=kind)
        return self.perm_alloc(n, perm, kind)

    def _load_step(self, fn, *args) -> None:
        """Run the copy of contents into a final mapping and book its flushes: those the
        step issues itself, and lazy-list threshold purges that fell inside it."""
        before = self.counts.values.copy()
        fn(*args)
        d = self.counts.values - before
        lazy = int(d[PvEvent.G_LAZY_THRESHOLD])
        self.counts.values[PvEvent.LOAD_STEP_GLOBAL] += int(d[GLOBAL_IDX].sum()) - lazy
        self.counts.values[PvEvent.LOAD_STEP_LAZY] += lazy
        self.counts.values[PvEvent.LOAD_STEP_LOCAL] += int(d[PvEvent.LOCAL])

    def _perm_load(self, x) -> None:
        if x is not None:
            self._load_step(self._perm_load_now, x)

    def _perm_load_now(self, x) -> None:
        if isinstance(x, Chunk):
            self._local(x.npages)     # text_poke into the 2 MiB mapping
            stage = self.vmalloc("vmalloc", x.npages, kind="staging")
            self.vfree(stage)
        else:
            self.text_poke_load(x)

    def _perm_release(self, x) -> None:
        if x is None:
            return
        if isinstance(x, Chunk):
            self._local(x.npages)     # zeroed through text_poke, kept mapped
            self._region_free(x)
        elif int(x.perm[0]) & W and not self.policy.rw_from_cache and x.kind.endswith("rw"):
            self.vfree(x)
        else:
            self.perm_free(x)

    def _load_module_perm(self, m: ModuleSpec, elf: Area) -> dict:
        core = {"text": self._perm_region(m.text, RX, "core text"),
                "ro": self._perm_region(m.ro, RO, "core ro"),
                "rai": self._perm_region(m.rai, RW, "core rai", later_ro=True),
                "rw": self._perm_region(m.rw, RW, "core rw")}
        init = {"text": self._perm_region(m.init_text, RX, "init text"),
                "ro": self._perm_region(m.init_ro, RO, "init ro"),
                "rw": self._perm_region(m.init_rw, RW, "init rw")}
        # module_map(mod, false): perm_writable_finish of text and ro, core then init
        for x in (core["text"], core["ro"], init["text"], init["ro"]):
            if x is not None:
                self._perm_load(x)
        self.vfree(elf)                                   # free_copy
        # do_init_module: module_map(mod, true): ro_after_init becomes read-only
        self.perm_change(core["rai"], RO)
        return {"core": core, "init": init, "text": self._text(core["text"])}

    def _load_module_upstream(self, m: ModuleSpec, elf: Area) -> dict:
        """The v6.15 flow. ``module_memory_alloc``: text and init text from the ROX cache,
        each made temporarily writable (``execmem_make_temp_rw``); data regions from
        ``execmem_alloc(EXECMEM_MODULE_DATA)`` (4K ``PAGE_KERNEL`` vmalloc). ``move_module``
        writes the sections through the writable mapping (no ``text_poke``).
        ``complete_formation``: ``module_enable_rodata_ro`` (rodata, init rodata),
        ``module_enable_data_nx``, ``module_enable_text_rox`` (``execmem_restore_rox``);
        ``free_copy``; ``do_init_module``: ``module_enable_rodata_ro_after_init`` makes
        ro_after_init read-only and nothing else (kernel/module/strict_rwx.c)."""
        def data(n, kind):
            return self.vmalloc("modules", n, flush_reset=True, kind=kind) if n > 0 else None

        text = self._rox_alloc(m.text, "core text")
        itext = self._rox_alloc(m.init_text, "init text")
        core = {"text": text, "ro": data(m.ro, "core ro"), "rai": data(m.rai, "core rai"),
                "rw": data(m.rw, "core rw")}
        init = {"text": itext, "ro": data(m.init_ro, "init ro"), "rw": data(m.init_rw, "init rw")}

        def mod_set(fn, a):
            # module_set_memory: nothing for a region the module does not have (no base)
            if a is not None:
                fn(a, 0, a.npages)

        for a in (core["ro"], init["ro"]):                # module_enable_rodata_ro
            mod_set(self.set_memory_ro, a)
        for a in (core["ro"], core["rai"], core["rw"], init["ro"], init["rw"]):
            mod_set(self.set_memory_nx, a)                # module_enable_data_nx
        for c in (text, itext):                           # module_enable_text_rox
            if c is not None:
                self.execmem_restore_rox(c)
        self.vfree(elf)                                   # free_copy
        mod_set(self.set_memory_ro, core["rai"])          # ..._rodata_ro_after_init
        return {"core": core, "init": init, "text": self._text(text)}

    def execmem_make_temp_rw(self, c: Chunk) -> None:
        """``execmem_make_temp_rw``: ``set_memory_nx`` then ``set_memory_rw`` of the range,
        each a CPA ending in a flush (mm/execmem.c, v6.15)."""
        a, lo = c.region.area, c.first
        self.set_memory_nx(a, lo, lo + c.npages)
        self.set_memory_rw(a, lo, lo + c.npages)

    def execmem_restore_rox(self, c: Chunk) -> None:
        """``execmem_restore_rox``: ``set_memory_rox`` with large-page restoration."""
        a, lo = c.region.area, c.first
        self.set_memory_rox(a, lo, lo + c.npages)

    def _rox_alloc(self, n: int, kind: str) -> Chunk | None:
        """``execmem_alloc(EXECMEM_MODULE_TEXT)`` from the ROX cache (populated 2 MiB at a
        time, :meth:`_new_region`; a 4K ``vmalloc`` + ``set_memory_rox`` of the exact size
        when no order-9 block is free, ``execmem_cache_populate``'s fallback), then
        :meth:`execmem_make_temp_rw` (``module_memory_alloc``, ``mem->is_rox``)."""
        if n <= 0:
            return None
        c = self._region_alloc("rox", n, RX)
        if c is None:
            a = self.vmalloc("modules", n, flush_reset=True, kind=kind)
            self.set_memory_rox(a, 0, a.npages)
            r = Region(a, np.ones(n, bool), RX)
            c = Chunk(r, a.va, n, first=0)
        self.execmem_make_temp_rw(c)
        return c

    def free_module_init(self, m: ModuleSpec, st: dict) -> dict:
        """``do_free_init``: the init regions freed after init."""
        self._begin(OpKind.MODULE_INIT_FREE, m.name, pages=m.init_pages)
        p = self.policy.policy
        init = st["init"]
        if p == Policy.LEGACY:
            if init is not None:
                self.vfree(init)
        elif p == Policy.PERM_ALLOC:
            for x in (init["text"], init["ro"], init["rw"]):
                self._perm_release(x)
        else:
            self._upstream_release(init)
        st["init"] = None
        return self._end()

    def _upstream_release(self, regions: dict | None) -> None:
        if not regions:
            return
        for key in ("text", "ro", "rai", "rw"):
            x = regions.get(key)
            if x is None:
                continue
            if isinstance(x, Chunk):
                if x.region in self.regions["rox"]:
                    self._local(self._pokes(x.va, x.npages << PAGE_SHIFT), pages=2)  # traps
                    self._region_free(x)
                else:   # fallback 4K text allocation
                    self.vfree(x.region.area)
            else:
                self.vfree(x)

    def unload_module(self, m: ModuleSpec, st: dict) -> dict:
        """``free_module`` after the init regions are gone."""
        if st.get("init"):
            self.free_module_init(m, st)
        self._begin(OpKind.MODULE_UNLOAD, m.name, pages=m.core_pages)
        p = self.policy.policy
        if p == Policy.LEGACY:
            self.vfree(st["core"])
        elif p == Policy.PERM_ALLOC:
            for key in ("text", "ro", "rai", "rw"):
                self._perm_release(st["core"][key])
        else:
            self._upstream_release(st["core"])
        return self._end()

    # ---- BPF JIT ---------------------------------------------------------------------------
    def load_bpf(self, nbytes: int, name: str = "", realloc: bool = True) -> dict:
        """``bpf_prog_load``: the program struct (vmalloc, reallocated by the verifier's
        patching and the old copy freed lazily), the JIT image and its locking."""
        self._begin(OpKind.BPF_LOAD, name, nbytes=int(nbytes))
        prog_pages = -(-(2 * int(nbytes) + 128) // PAGE)
        prog = self.vmalloc("vmalloc", prog_pages, kind="bpf_prog")
        if realloc:   # bpf_prog_realloc during bpf_patch_insn_data
            prog2 = self.vmalloc("vmalloc", prog_pages, kind="bpf_prog")
            self.vfree(prog)
            prog = prog2
        img_pages = -(-(int(nbytes) + BPF_HDR_BYTES + BPF_HOLE_BYTES) // PAGE)
        p = self.policy.policy
        if p == Policy.LEGACY:
            img = self.vmalloc("modules", img_pages, kind="bpf image")
            img.flush_reset = True                        # set_vm_flush_reset_perms
            self.set_memory_ro(img, 0, img.npages)        # bpf_jit_binary_lock_ro
            self.set_memory_x(img, 0, img.npages)
        elif p == Policy.PERM_ALLOC:
            img = self._perm_region(img_pages, RX, "bpf image")
            self._perm_load(img)
        else:
            img = self._pack_alloc(int(nbytes))
        text = self._text(img, int(nbytes))
        self._end()
        return {"prog": prog, "img": img, "nbytes": int(nbytes), "text": text}

    def _pack_alloc(self, nbytes: int) -> Chunk:
        """``bpf_jit_binary_pack_alloc`` + ``bpf_jit_binary_pack_finalize``: 64 B chunks in a
        2 MiB pack (a new pack: ``set_memory_rox`` once), copied with ``text_poke_copy``."""
        size = -(-(nbytes + BPF_HDR_BYTES + BPF_PACK_HOLE_BYTES) // BPF_CHUNK_BYTES) \
            * BPF_CHUNK_BYTES
        if size > PACK_BYTES:
            pages = -(-size // PAGE)
            a = self.vmalloc("modules", pages, flush_reset=True, kind="bpf image")
            self.set_memory_rox(a, 0, a.npages)
            self._local(self._pokes(a.va, size), pages=2)
            r = Region(a, np.ones(1, bool), RX)
            return Chunk(r, a.va, pages, nbytes=size)
        n = size // BPF_CHUNK_BYTES
        c = None
        for r in self.regions["pack"]:
            i = self._first_fit(r.used, n)
            if i >= 0:
                r.used[i:i + n] = True
                c = Chunk(r, r.area.va + i * BPF_CHUNK_BYTES, n, nbytes=size, first=i)
                break
        if c is None:
            r = self._new_pack()
            self.regions["pack"].append(r)
            r.used[:n] = True
            c = Chunk(r, r.area.va, n, nbytes=size, first=0)
        self._load_step(self._local, self._pokes(c.va, size), 2)
        return c

    def _new_pack(self) -> Region:
        r = None
        if self.policy.pack_huge:
            r = self._new_region("pack", 1, RX, unit_bytes=BPF_CHUNK_BYTES)
        if r is None:   # 4K pages: per-page direct-map alias changes
            a = self.vmalloc("modules", PMD_PAGES, flush_reset=True, kind="pack")
            self.set_memory_rox(a, 0, a.npages)
            r = Region(a, np.zeros(PACK_BYTES // BPF_CHUNK_BYTES, bool), RX)
        return r

    def free_bpf(self, st: dict) -> dict:
        """``bpf_prog_free``: the JIT image (policy specific) and the program struct."""
        self._begin(OpKind.BPF_FREE, "", nbytes=st["nbytes"])
        p = self.policy.policy
        img = st["img"]
        if p == Policy.LEGACY:
            self.vfree(img)
        elif p == Policy.PERM_ALLOC:
            self._perm_release(img)
        else:
            r = img.region
            if r not in self.regions["pack"]:
                self.vfree(r.area)
            else:
                self._local(self._pokes(img.va, img.nbytes), pages=2)   # text_poke_set int3
                r.used[img.first:img.first + img.npages] = False
                if not r.used.any():
                    self.regions["pack"].remove(r)
                    self.vfree(r.area)
        self.vfree(st["prog"])
        return self._end()


def invariant_table(machine: MachineConfig, n_ops: int, seed: int,
                    policies: Sequence[PolicyConfig] = (
                        *STANDARD_POLICIES, PolicyConfig(Policy.UPSTREAM, pack_huge=True),
                        PolicyConfig(Policy.PERM_ALLOC, rw_from_cache=True))):
    """Run :func:`random_ops` with the checker on for each policy: ``policy, operations,
    wx_violations, free_violations, first`` (the first finding, if any)."""
    import polars as pl

    rows = []
    for pol in policies:
        sim = PermVmalloc(machine, pol, check=True, snapshot_every=max(1, n_ops))
        random_ops(sim, n_ops, seed)
        rows.append({"policy": pol.label, "operations": len(sim.ops),
                     "wx_violations": sim.counts.wx_violations,
                     "free_violations": sim.counts.free_violations,
                     "first": sim.violations[0] if sim.violations else ""})
    return pl.DataFrame(rows)


@dataclass
class RunResult:
    """One policy's run: ``ops`` (one row per operation, a column per :class:`PvEvent`,
    ``global_flushes``), ``snapshots`` (DirectMap and cache sizes over time),
    ``flush_log`` (see :attr:`PermVmalloc.flush_log`), the live ``text`` at the end as
    ``(object, va, bytes, leaf_shift)`` and the checker's findings."""

    policy: PolicyConfig
    ops: Any
    snapshots: Any
    flush_log: list
    text: list
    counts: Counters
    violations: list
    cache_end: dict

    @functools.cached_property
    def _flush_table(self) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
        """:func:`_flush_shapes` as ``(operation index, distinct shapes, each row's shape)``,
        worked out once per result (:func:`op_costs` prices it per method, CPU count and
        costs)."""
        log = _flush_shapes(self)
        shapes, inv = np.unique(log[:, 1:], axis=0, return_inverse=True)
        return (log[:, 0], [tuple(int(v) for v in r) for r in shapes], np.asarray(inv).ravel())


def run(machine: MachineConfig, policy: PolicyConfig, workload: Workload, *,
        check: bool = False, snapshots: int = 100) -> RunResult:
    """Run ``workload`` on a fresh (aged) machine under ``policy``, recording about
    ``snapshots`` DirectMap/cache snapshots."""
    import polars as pl

    n_ops = 2 * (len(workload.modules) + len(workload.bpf_sizes))
    sim = PermVmalloc(machine, policy, check=check,
                      snapshot_every=max(1, n_ops // max(1, snapshots)))
    states = boot(sim, workload.modules)
    live = bpf_churn(sim, np.asarray(workload.bpf_sizes, np.int64), workload.bpf_live,
                     workload.seed, workload.realloc_probability, workload.shrink_every)
    text = [(m.name, va, n, sh) for m, st in zip(workload.modules, states)
            for (va, n, sh) in st["text"]]
    for i, p in enumerate(live):
        for va, n, sh in p["text"]:
            text.append((f"bpf{i}", va, n, sh))
    sim._snapshot(force=True)
    ops = pl.DataFrame(sim.ops, infer_schema_length=None)
    if "nbytes" not in ops.columns:
        ops = ops.with_columns(pl.lit(None, pl.Int64).alias("nbytes"))
    for col in ("jump_entries", "static_call_sites"):
        if col not in ops.columns:
            ops = ops.with_columns(pl.lit(None, pl.Int64).alias(col))
    return RunResult(policy, ops.with_columns(pl.lit(policy.label).alias("policy")),
                     pl.DataFrame(sim.snapshots).with_columns(pl.lit(policy.label).alias("policy")),
                     sim.flush_log, text, sim.counts, list(sim.violations), sim.cache_bytes())


def median_flushes(res: RunResult, op: OpKind) -> float:
    """Median all-CPU shootdowns per operation of kind ``op`` (NaN if none ran)."""
    v = res.ops.filter(res.ops["op"] == op.name.lower())["global_flushes"]
    return float(v.median()) if v.len() else float("nan")


def flush_histogram(results: Sequence[RunResult], ops: Sequence[OpKind] = (
        OpKind.MODULE_LOAD, OpKind.BPF_LOAD)):
    """Distribution of shootdowns per operation: ``policy, op, global_flushes, count,
    share``, one row per observed value."""
    import polars as pl

    names = [o.name.lower() for o in ops]
    df = pl.concat([r.ops.select("policy", "op", "global_flushes") for r in results])
    df = df.filter(pl.col("op").is_in(names))
    h = df.group_by("policy", "op", "global_flushes").agg(pl.len().alias("count"))
    tot = h.group_by("policy", "op").agg(pl.col("count").sum().alias("total"))
    return (h.join(tot, on=["policy", "op"]).with_columns(
        (pl.col("count") / pl.col("total")).alias("share")).drop("total")
        .sort("policy", "op", "global_flushes"))


def load_step_evidence(res: RunResult) -> dict:
    """P5 evidence: flushes per load issued while contents are copied into the final
    mapping (``perm_writable_finish``: ``text_poke`` and the staging buffer's free), and the
    lazy-list threshold purges that happened to fall inside that step, per load."""
    loads = int(res.ops.filter(res.ops["op"].is_in(["module_load", "bpf_load"])).height)
    c = res.counts
    return {"global_flushes_per_load": c.load_step_global / loads if loads else float("nan"),
            "local_flushes_per_load": c.load_step_local / loads if loads else float("nan"),
            "lazy_threshold_purges_per_load": c.load_step_lazy / loads if loads else float("nan"),
            "loads": loads}


def directmap_end(res: RunResult) -> dict[str, int]:
    """DirectMap4k/2M/1G (bytes) after the workload."""
    last = res.snapshots.row(-1, named=True)
    return {"4k": last["directmap_4k"], "2m": last["directmap_2m"], "1g": last["directmap_1g"]}


# ---- costs through kmm.invalidate -------------------------------------------------------------
#: flush methods of the cost chart: x86 IPI shootdowns, AMD INVLPGB broadcasts (the x86
#: broadcast TLB invalidation series, v6.15), arm64 broadcast TLBI
FLUSH_METHODS = ("x86", "invlpgb", "arm64")
def flush_unit_costs(cpus: int, method: str = "x86", costs=None,
                     shapes: Iterable[tuple[int, int]] = ()) -> dict[tuple[int, int], tuple[int, int]]:
    """Cost of one flush of each shape ``(kind, pages)`` on ``cpus`` CPUs: ``(initiator
    ns, ns spent by interrupted CPUs)``, from :class:`kmm.invalidate.Invalidator` (x86 IPI
    shootdown, AMD ``INVLPGB`` + ``TLBSYNC`` broadcast, or arm64 broadcast ``TLBI`` +
    ``DSB``). Kind 0 flushes everything, 1 is a kernel range of ``pages``, 2 a local flush
    of ``pages``. Every full flush the model issues is of kernel (global) entries, so
    ``costs.full_flush_ns`` must be the cost of a global flush (the study passes
    ``global_flush_ns``). A shape's cost is a function of the machine and the costs alone
    (below), so each is worked out once per ``(cpus, method, costs)`` and kept
    (:func:`_unit_cost_table`)."""
    from ...engine import InvalidationCosts

    check_choice("method", method, FLUSH_METHODS)
    c = costs or InvalidationCosts()
    key = tuple(getattr(c, f.name) for f in fields(c) if f.name != "sources")
    table = _unit_cost_table(check_int("cpus", cpus, lo=1), method, key)
    return {s: table(*s) for s in set(shapes)}


@functools.lru_cache(maxsize=64)
def _unit_cost_table(cpus: int, method: str, costs: tuple):
    """``cost(kind, pages)`` of :func:`flush_unit_costs` on one invalidator for every shape:
    none of these flushes is deferred or depends on what the TLBs hold, so each one's cost
    is the growth of the counters it causes, whatever ran before it on the invalidator
    (``tests/test_permvmalloc_costs.py`` checks it); each shape's is kept."""
    from ...engine import InvalidationConfig, InvalidationCosts, Invalidator, Method

    m = {"x86": Method.X86_IPI, "invlpgb": Method.X86_INVLPGB,
         "arm64": Method.ARM64_TLBI}[method]
    names = [f.name for f in fields(InvalidationCosts) if f.name != "sources"]
    iv = Invalidator(InvalidationConfig(method=m, cpus=cpus,
                                        costs=InvalidationCosts(**dict(zip(names, costs)))))

    @functools.cache
    def cost(kind: int, pages: int) -> tuple[int, int]:
        c = iv.counters
        before = (c.initiator_ns, c.target_ns)
        if kind == 0:
            iv.flush(0, 0, 0, kernel=True)
        elif kind == 1:
            iv.flush(0, PAGE_OFFSET, PAGE_OFFSET + (pages << PAGE_SHIFT), kernel=True)
        else:
            iv.flush(0, 0, pages << PAGE_SHIFT, local=True)
        c = iv.counters
        return (c.initiator_ns - before[0], c.target_ns - before[1])
    return cost


def _flush_shapes(res: RunResult) -> np.ndarray:
    """The flush log as rows ``(operation index, kind, pages)``."""
    if not res.flush_log:
        return np.zeros((0, 3), np.int64)
    log = np.array(res.flush_log, dtype=object)
    kind = log[:, 1].astype(np.int64)
    pages = np.where(kind == 1, [(int(e) - int(s)) >> PAGE_SHIFT for s, e in log[:, 2:4]],
                     np.where(kind == 2, [int(e) >> PAGE_SHIFT for e in log[:, 3]], 0))
    return np.stack([log[:, 0].astype(np.int64), kind, pages.astype(np.int64)], axis=1)


@dataclass(frozen=True)
class Rewalk:
    """What a flush of everything costs every CPU after it (:mod:`kmm.timing`, "Invalidation
    felt by every CPU"). ``flush_tlb_all`` (a direct-map split or collapse, a kernel range
    above ``tlb_single_page_flush_ceiling``, on arm64 above ``MAX_DVM_OPS``) empties every
    CPU's TLB, global (kernel) entries included: unlike a CR3 write it keeps none. Each CPU
    then walks again, on its next use, the translations of its own work it held: at most
    ``tlb_entries`` of its ``working_set`` (:func:`kmm.timing.lost_translations`). A ranged
    flush below the ceiling removes only the range's translations, pages being made
    read-only, executable or freed that no other CPU has in use, and a local flush only the
    poking mm's: neither costs a re-walk. One re-walk reads the ``levels`` descriptors one
    after another (:func:`kmm.timing.walk_ns`): ``memory_refs`` of them from memory at the
    loaded latency (the calibrated load curve at utilisation ``background``,
    :func:`kmm.timing.memory_system`, from the idle latency ``mem_ns``), the rest from the
    LLC (:class:`kmm.timing.CoreModel`'s ``llc_ns``): :class:`kmm.timing.Rewalk`
    (:meth:`timing`) with this study's parameters, priced as asi's."""

    working_set: int = 256
    memory_refs: float = 1.0
    mem_ns: float = 81.96
    tlb_entries: int = 1536
    levels: int = 4
    background: float = 0.3

    def __post_init__(self):
        check_int("rewalk_working_set", self.working_set, lo=0)
        check_float("rewalk_memory_refs", self.memory_refs, lo=0.0, hi=5.0)
        check_float("mem_idle_ns", self.mem_ns, lo=1.0)
        check_int("stlb_entries", self.tlb_entries, lo=1)
        check_int("levels", self.levels, lo=1, hi=5)
        check_float("background", self.background, lo=0.0, hi=0.99)

    def timing(self) -> eng.Rewalk:
        """This price as :class:`kmm.timing.Rewalk`."""
        return eng.Rewalk(working_set=self.working_set, refs=self.levels,
                          memory_refs=self.memory_refs, mem_idle_ns=self.mem_ns,
                          background=self.background)

    def loaded_ns(self) -> float:
        """Memory latency of a re-walk's descriptor read at the background load."""
        return self.timing().loaded_ns()

    def walk_ns(self) -> float:
        """One re-walk."""
        return self.timing().walk_ns()


#: How a flush of the flush log reaches the CPUs' TLBs per method, for
#: :func:`kmm.timing.invalidation_scope` (x86 IPIs and INVLPGB share x86's ceiling)
_SCOPE_KIND = {"x86": eng.FlushKind.X86_KERNEL_RANGE, "invlpgb": eng.FlushKind.X86_KERNEL_RANGE,
               "arm64": eng.FlushKind.ARM64_KERNEL_RANGE}


def flush_rewalks(cpus: int, method: str = "x86", rewalk: Rewalk | None = None,
                  shapes: Iterable[tuple[int, int]] = ()) -> dict[tuple[int, int], tuple[float, float]]:
    """Re-walk time after one flush of each shape ``(kind, pages)`` (as
    :func:`flush_unit_costs` takes them) on ``cpus`` CPUs: ``(initiator ns, ns of the other
    CPUs)`` (:class:`Rewalk`). Kind 0 (``flush_tlb_all``) and a kernel range (kind 1) whose
    scope is everything (:func:`kmm.timing.invalidation_scope`, x86's ceiling
    :data:`FLUSH_CEILING_PAGES`) cost each CPU ``min(working_set, tlb_entries)`` re-walks;
    other flushes none."""
    check_choice("method", method, FLUSH_METHODS)
    rw = rewalk or Rewalk()
    t = rw.timing()
    # the loaded latency once, not per flush shape (each walk_ns would price it again)
    model = eng.Rewalk(working_set=t.working_set, refs=t.refs, memory_refs=t.memory_refs,
                       cached_ns=t.cached_ns, memory_ns=t.loaded_ns())
    check_int("cpus", cpus, lo=1)
    out, by_scope = {}, {}
    for kind, pages in set(shapes):
        if kind == 0:
            scope = eng.Scope.ALL
        elif kind == 1:
            scope = eng.invalidation_scope(_SCOPE_KIND[method], int(pages),
                                           ceiling=FLUSH_CEILING_PAGES)
        else:
            scope = eng.Scope.RANGE
        if scope not in by_scope:  # the shapes of one scope cost the same
            t = model.after(scope, cpus, rw.tlb_entries, initiator=0)
            by_scope[scope] = (t.initiator_ns, t.others_ns)
        out[(kind, pages)] = by_scope[scope]
    return out


# ---- live patching of a loaded module's static branches (text_poke_bp) ------------------------
#: entries of one ``text_poke_bp_batch``: ``TP_VEC_MAX = PAGE_SIZE / sizeof(struct
#: text_poke_loc)`` (arch/x86/kernel/alternative.c; ``s32 rel_addr; s32 disp; u8 len; u8
#: opcode; u8 text[5]; u8 old``, 16 bytes: 256 in v6.1 and v6.15; named
#: ``TEXT_POKE_ARRAY_MAX`` of ``struct smp_text_poke_loc`` from v6.16, same size)
TP_VEC_MAX = 4096 // 16
#: ``text_poke_sync()`` calls per batch: after the int3 writes, after the tail writes and
#: after the first-byte writes (``text_poke_bp_batch``); a jump label's instruction is 2 or 5
#: bytes, so the tail step always writes and the second sync always happens
SYNCS_PER_BATCH = 3
#: ``text_poke()`` writes per patched entry, each through the poking mm with a local flush
#: (``__text_poke``): the int3, the tail, the first byte
POKES_PER_ENTRY = 3


@dataclass(frozen=True)
class TextPoke:
    """How many of a loading module's static branches the kernel patches live, and in how
    many batches (both ``assumed``: no measurement of the keys' states at load is cited).

    On ``MODULE_STATE_COMING`` (``prepare_coming_module``, after ``complete_formation`` has
    made the text read-only and executable in every policy: ``module_enable_ro``/``_x`` in
    v5.10-v6.1, the perm_alloc RFC's final mapping, ``execmem_restore_rox`` in v6.15),
    kernel/jump_label.c ``jump_label_module_notify`` -> ``jump_label_add_module`` walks the
    module's sorted ``__jump_table`` one key at a time. A key the module defines itself is
    skipped (``within_module``: at its initial state); for any other key whose state is not
    its default (``jump_label_type(iter) != jump_label_init_type(iter)``) it calls
    ``__jump_label_update`` for that key's entries, which queues each with
    ``arch_jump_label_transform_queue`` -> ``text_poke_queue`` and ends with
    ``arch_jump_label_transform_apply`` -> ``text_poke_finish`` -> ``text_poke_bp_batch``
    (``HAVE_JUMP_LABEL_BATCH``, x86 since v5.5; v6.16 renames these
    ``smp_text_poke_batch_add``/``_finish``): one batch per patched key, split every
    :data:`TP_VEC_MAX` entries (``text_poke_flush``). Each batch calls ``text_poke_sync()``,
    ``on_each_cpu(do_sync_core, NULL, 1)`` (v6.16: ``smp_text_poke_sync_each_cpu``),
    :data:`SYNCS_PER_BATCH` times.

    ``patched_share``: share of a module's jump entries whose key is defined elsewhere and
    is not at its default when the module loads; ``entries_per_key``: the module's entries
    per such key (so a module's batches are ``patched_share * entries / entries_per_key``
    times ``ceil(entries_per_key / TP_VEC_MAX)``, an expectation, :func:`text_poke_batches`).

    Static calls (v6.1 kernel/static_call_inline.c): at the same notifier
    ``static_call_module_notify`` -> ``static_call_add_module`` -> ``__static_call_init``
    calls x86 ``arch_static_call_transform`` for every site of the module's
    ``.static_call_sites``, init sites included, one at a time; arch/x86/kernel/static_call.c
    ``__static_call_transform(site, ..., modinit=false)`` returns when the instruction is
    already the wanted one (``memcmp``) and otherwise calls ``text_poke_bp``, a
    ``text_poke_bp_batch`` of one entry: three syncs and three writes per changed site, no
    batching. ``static_call_share``: share of a module's sites whose instruction changes
    (:func:`static_call_batches`). A site is compiled as a call (or tail jump) to the key's
    trampoline and rewritten to a direct call of the key's function, a 5-byte NOP for a
    NULL function, or their tail forms, none of which is the compiled instruction.

    Not modelled: ftrace's patching of the module (``ftrace_module_enable``, only while a
    tracer is on).
    """

    patched_share: float = 0.1
    entries_per_key: float = 2.0
    static_call_share: float = 1.0

    def __post_init__(self):
        check_float("jump_patched_share", self.patched_share, 0.0, 1.0)
        check_float("jump_entries_per_key", self.entries_per_key, 1.0, 1e6)
        check_float("static_call_changed_share", self.static_call_share, 0.0, 1.0)


def text_poke_batches(entries, tp: TextPoke | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expected ``(patched entries, text_poke_bp_batch calls)`` of a module load with
    ``entries`` jump-table entries (:class:`TextPoke`)."""
    tp = tp or TextPoke()
    n = np.asarray(entries, dtype=np.float64)
    if (n < 0).any():
        raise ConfigError("jump entries must be >= 0", "entries")
    patched = tp.patched_share * n
    per_key_batches = -(-tp.entries_per_key // TP_VEC_MAX)
    return patched, patched / tp.entries_per_key * per_key_batches


def static_call_batches(sites, tp: TextPoke | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Expected ``(patched sites, text_poke_bp_batch calls)`` of a module load with ``sites``
    inline static call sites (:class:`TextPoke`): each changed site is its own batch
    (``text_poke_bp``), so both are ``static_call_share * sites``."""
    tp = tp or TextPoke()
    n = np.asarray(sites, dtype=np.float64)
    if (n < 0).any():
        raise ConfigError("static call sites must be >= 0", "sites")
    patched = tp.static_call_share * n
    return patched, patched.copy()


def text_poke_unit_costs(cpus: int, method: str = "x86", costs=None) -> dict[str, tuple[float, float]]:
    """What the live patching costs on ``cpus`` CPUs as ``(initiator ns, ns of the other
    CPUs)``: ``"batch"``, the :data:`SYNCS_PER_BATCH` synchronous all-CPU IPIs of one
    ``text_poke_bp_batch``, and ``"entry"``, the :data:`POKES_PER_ENTRY` local writes of one
    patched entry. A sync IPI is priced as :mod:`kmm.invalidate` prices a shootdown's IPI
    (``flush_range``, x86): the initiator waits ``ipi_base_ns + ipi_per_extra_target_ns *
    (targets - 1)`` for its ``cpus - 1`` targets, each interrupted for ``ipi_handler_ns``;
    it flushes nothing, so it adds no invalidation work and no re-walk. A write is a local
    flush of one page of the poking mm (:func:`flush_unit_costs` shape ``(2, 1)``). The
    ``invlpgb`` method patches as ``x86`` does (INVLPGB replaces only TLB-flush IPIs);
    ``arm64`` patches jump labels another way (arch/arm64/kernel/jump_label.c, not checked
    here) and costs 0."""
    from ...engine import InvalidationCosts

    check_choice("method", method, FLUSH_METHODS)
    check_int("cpus", cpus, lo=1)
    if method == "arm64":
        return {"batch": (0.0, 0.0), "entry": (0.0, 0.0)}
    c = costs or InvalidationCosts()
    t = cpus - 1
    ipi = (c.ipi_base_ns + c.ipi_per_extra_target_ns * (t - 1), t * c.ipi_handler_ns) if t else (0.0, 0.0)
    poke = flush_unit_costs(cpus, method, costs, [(2, 1)])[(2, 1)]
    return {"batch": (SYNCS_PER_BATCH * ipi[0], SYNCS_PER_BATCH * ipi[1]),
            "entry": (POKES_PER_ENTRY * float(poke[0]), POKES_PER_ENTRY * float(poke[1]))}


def text_poke_costs(res: RunResult, cpus: int, method: str = "x86", costs=None,
                    text_poke: TextPoke | None = None):
    """Each module load's live patching (:class:`TextPoke`) on ``cpus`` CPUs: a frame
    ``index, poke_batches, poke_initiator_ns, poke_target_ns`` (expectations), jump labels
    (:func:`text_poke_batches`) and static calls (:func:`static_call_batches`) together."""
    import polars as pl

    ops = res.ops.filter(pl.col("op") == OpKind.MODULE_LOAD.name.lower())

    def col(name):
        return (ops[name].fill_null(0).to_numpy() if name in ops.columns
                else np.zeros(ops.height))

    patched, batches = text_poke_batches(col("jump_entries"), text_poke)
    sc_patched, sc_batches = static_call_batches(col("static_call_sites"), text_poke)
    patched, batches = patched + sc_patched, batches + sc_batches
    u = text_poke_unit_costs(cpus, method, costs)
    return pl.DataFrame({
        "index": ops["index"].cast(pl.Int64),
        "poke_batches": batches,
        "poke_initiator_ns": batches * u["batch"][0] + patched * u["entry"][0],
        "poke_target_ns": batches * u["batch"][1] + patched * u["entry"][1]})


def op_costs(res: RunResult, cpus: int, method: str = "x86", costs=None,
             rewalk: Rewalk | None = None, text_poke: TextPoke | None = None):
    """Time each operation spent in TLB maintenance on ``cpus`` CPUs: a frame ``index,
    initiator_ns, target_ns, rewalk_ns`` (the initiating CPU's time; the time interrupted
    CPUs spent; every CPU's re-walks after its flushes of everything, :func:`flush_rewalks`)
    and, apart, ``poke_initiator_ns, poke_target_ns``: a module load's live patching of its
    static branches (:func:`text_poke_costs`; 0 for other operations)."""
    import polars as pl

    index, keys, inv = res._flush_table
    unit = flush_unit_costs(cpus, method, costs, keys)
    walks = flush_rewalks(cpus, method, rewalk, keys)
    u = np.array([unit[k] for k in keys], dtype=np.int64).reshape(-1, 2)
    w = np.array([sum(walks[k]) for k in keys], dtype=np.float64)
    df = pl.DataFrame({"index": index, "initiator_ns": u[inv, 0], "target_ns": u[inv, 1],
                       "rewalk_ns": w[inv]})
    df = df.group_by("index").agg(pl.col("initiator_ns").sum(), pl.col("target_ns").sum(),
                                  pl.col("rewalk_ns").sum())
    poke = text_poke_costs(res, cpus, method, costs, text_poke).drop("poke_batches")
    out = df.join(poke, on="index", how="full", coalesce=True)
    return out.with_columns(pl.col("initiator_ns", "target_ns").fill_null(0).cast(pl.Int64),
                            pl.col("rewalk_ns", "poke_initiator_ns", "poke_target_ns")
                            .fill_null(0.0).cast(pl.Float64)).sort("index")


def cost_vs_cpus(results: Sequence[RunResult], cpus_list: Sequence[int],
                 methods: Sequence[str] = ("x86", "invlpgb", "arm64"), costs=None,
                 ops: Sequence[OpKind] = (OpKind.MODULE_LOAD, OpKind.BPF_LOAD),
                 rewalk: Rewalk | None = None, text_poke: TextPoke | None = None):
    """Mean TLB-maintenance time per operation vs CPU count: ``policy, op, method, cpus,
    initiator_ns, rewalk_ns, text_poke_ns, cpu_ns`` (``text_poke_ns``: every CPU's time in a
    module load's ``text_poke_bp`` batches, :func:`text_poke_costs`; ``cpu_ns`` adds the
    time of every interrupted CPU, every CPU's re-walks, ``rewalk_ns``, and
    ``text_poke_ns``; ``initiator_ns`` is the flushes' alone)."""
    import polars as pl

    names = [o.name.lower() for o in ops]
    rows = []
    for r in results:
        sel = r.ops.filter(pl.col("op").is_in(names)).select("index", "op")
        for method in methods:
            for n in cpus_list:
                c = op_costs(r, n, method, costs, rewalk, text_poke)
                j = sel.join(c, on="index", how="left").fill_null(0)
                for op in names:
                    part = j.filter(pl.col("op") == op)
                    if part.height == 0:
                        continue
                    rows.append({"policy": r.policy.label, "op": op, "method": method, "cpus": n,
                                 "initiator_ns": float(part["initiator_ns"].mean()),
                                 "rewalk_ns": float(part["rewalk_ns"].mean()),
                                 "text_poke_ns": float((part["poke_initiator_ns"]
                                                        + part["poke_target_ns"]).mean()),
                                 "cpu_ns": float((part["initiator_ns"] + part["target_ns"]
                                                  + part["rewalk_ns"] + part["poke_initiator_ns"]
                                                  + part["poke_target_ns"]).mean())})
    return pl.DataFrame(rows)


# ---- iTLB misses of module and BPF text through kmm.tlb --------------------------------------
@dataclass(frozen=True)
class ItlbConfig:
    """An x86 instruction-side TLB and a fetch workload over module and BPF text.

    ``l1_entries``/``l1_ways``: L1 ITLB for 4K pages (2 MiB leaves are splintered into 4K
    entries there, so the 8-entry 2M ITLB is not credited); ``stlb_entries``/``stlb_ways``:
    the shared STLB holding 4K and 2M entries (Intel Optimization Reference Manual
    248966-045, Table 2-15, Skylake: ITLB 128 x 8-way, STLB 1536 x 12-way). Workload
    (``assumed``): calls pick a module or a program (``bpf_share``) by Zipf(``zipf``)
    popularity, then fetch ``run_lines`` consecutive 64 B lines from a random offset.
    """

    l1_entries: int = 128
    l1_ways: int = 8
    stlb_entries: int = 1536
    stlb_ways: int = 12
    fetches: int = 200_000
    zipf: float = 1.0
    run_lines: int = 8
    bpf_share: float = 0.3
    seed: int = 0

    def __post_init__(self):
        check_int("fetches", self.fetches, lo=1)
        check_float("zipf", self.zipf, 0.0, 4.0)
        check_int("run_lines", self.run_lines, lo=1, hi=4096)
        check_float("bpf_share", self.bpf_share, 0.0, 1.0)

    def tlb(self):
        from ...engine import TLBConfig, TLBLevelConfig

        return TLBConfig(l1i=TLBLevelConfig(self.l1_entries, self.l1_ways, max_page_shift=12),
                         l2=TLBLevelConfig(self.stlb_entries, self.stlb_ways),
                         page_shifts=(12, 21))


def itlb_misses(text: Sequence[tuple[str, int, int, int]], cfg: ItlbConfig) -> dict:
    """Run the fetch trace of ``text`` through :func:`kmm.tlb.simulate_trace`; returns
    ``fetches``, ``l1_misses`` and ``misses`` (STLB misses: page walks)."""
    from ...engine import Kind, simulate_trace

    va, sh = fetch_trace(text, cfg)
    c = simulate_trace(va, cfg.tlb(), kind=int(Kind.IFETCH), page_shift=sh, global_=True)
    return {"fetches": int(va.shape[0]), "l1_misses": c.l1i_misses, "misses": c.misses}


def itlb_trace_misses(text: Sequence[tuple[str, int, int, int]], cfg: ItlbConfig,
                      traces: dict) -> dict:
    """Run the trace-driven fetch stream of ``text`` (:func:`trace_fetch_trace` over
    ``traces``) through the same TLBs as :func:`itlb_misses`; counts only references into
    module and BPF text, each standing for its ``weight`` fetches: ``fetches``,
    ``l1_misses``, ``misses`` (page walks), ``pages`` (distinct 4 KiB pages of module and BPF
    text fetched: the walks 4K leaves cannot avoid), and ``kernel_fetches`` and
    ``kernel_misses`` of the kernel text between them (whose translations compete for the
    same entries); ``half``: ``fetches`` and ``misses`` of the same run up to the reference
    that brings the fetches into module and BPF text to half of ``fetches`` (its midpoint
    snapshot, for :func:`kmm.suite.registry.convergence`)."""
    from ...engine import Kind, TLB, TLB_L1_HIT, TLB_WALK

    va, sh, w, is_obj = trace_fetch_trace(text, cfg, traces)
    t = TLB(cfg.tlb())
    t.run(va, record=True, kind=int(Kind.IFETCH), page_shift=sh, global_=True)
    out = t.last_outcome
    obj_fetches = np.cumsum(np.where(is_obj, w, 0))
    mid = int(np.searchsorted(obj_fetches, obj_fetches[-1] / 2)) + 1 if va.size else 0
    return {"half": {"fetches": int(obj_fetches[mid - 1]) if mid else 0,
                     "misses": int(np.count_nonzero(is_obj[:mid] & (out[:mid] == TLB_WALK)))},
            "fetches": int(w[is_obj].sum()),
            "l1_misses": int(np.count_nonzero(is_obj & (out != TLB_L1_HIT))),
            "misses": int(np.count_nonzero(is_obj & (out == TLB_WALK))),
            "kernel_fetches": int(w[~is_obj].sum()),
            "kernel_misses": int(np.count_nonzero(~is_obj & (out == TLB_WALK))),
            "pages": int(np.unique(va[is_obj] >> np.uint64(PAGE_SHIFT)).size)}


# Imported last: these modules build on the definitions above.
from .workload import boot, bpf_churn, fetch_trace, ModuleSpec, random_ops, trace_fetch_trace, Workload
from .kernels import (alloc_order0_pcp, bg_churn_pcp, free_order0_pcp, get_block, put_block,
    split_block)
