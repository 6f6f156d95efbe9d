"""TLB invalidation: local flushes, x86 IPI shootdowns, AMD INVLPGB broadcasts and arm64
broadcast TLBI + DSB, with batching, as cost-counting kernels that really drop entries.

Every flush decides, as the kernel code does, between per-page invalidations and a full
flush, charges its cost in ns to the initiating CPU and to the CPUs it interrupts, counts
IPIs, invalidation instructions, barriers and full flushes, and removes the entries from
the targeted CPUs' modelled TLBs and walk caches through :mod:`kmm.tlb`'s invalidation
kernels. A translation therefore stays observable (a stale hit) exactly until the flush that
covers it completes: at once for a synchronous flush, at :func:`flush_sync` for a deferred
(batched) one, whose invalidations are only guaranteed complete after the barrier (the
``DSB ISH`` that ends arm64's ``arch_tlbbatch_flush``, the ``TLBSYNC`` after AMD's
``INVLPGB``, the IPIs of x86's ``arch_tlbbatch_flush``).

Modelled code
-------------
- x86 (arch/x86/mm/tlb.c): ``flush_tlb_mm_range`` flushes page by page (``INVLPG`` locally,
  ``flush_tlb_func`` in the IPI handler) when ``(end - start) >> stride_shift <=
  tlb_single_page_flush_ceiling`` (33), else the whole context (CR3 reload);
  ``flush_tlb_multi`` sends one IPI to each other CPU in ``mm_cpumask`` and waits for every
  ack; ``flush_tlb_kernel_range`` targets every CPU and falls back to ``flush_tlb_all``
  above the ceiling; ``arch_tlbbatch_flush`` does one full flush of every CPU gathered by
  the batch.
- AMD INVLPGB (x86 broadcast TLB invalidation series, 2025): ``INVLPGB`` broadcasts to every
  CPU without interrupts, each instruction covering up to ``invlpgb_count_max`` pages, and
  ``TLBSYNC`` waits for completion; same ceiling as above.
- arm64 (arch/arm64/include/asm/tlbflush.h): ``__flush_tlb_range`` issues one
  ``TLBI VAE1IS`` (``VALE1IS`` for last-level only) per stride, broadcast in hardware to
  every CPU of the inner-shareable domain, then ``DSB ISH``; at ``MAX_TLBI_OPS``
  (``PTRS_PER_PTE``) pages or more it flushes the ASID (``TLBI ASIDE1IS``);
  ``flush_tlb_kernel_range`` flushes everything (``TLBI VMALLE1IS``) beyond
  ``MAX_TLBI_OPS`` pages; ``arch_tlbbatch_add_pending`` issues the TLBIs without a barrier
  and ``arch_tlbbatch_flush`` issues one ``DSB ISH`` for the batch. With range TLBI
  (FEAT_TLBIRANGE, ``tlbi_range``), ``__flush_tlb_range_op`` covers the range with
  ``TLBI RVAE1IS`` operations of ``(num + 1) << (5 * scale + 1)`` pages (one per non-zero
  5-bit digit of the page count, plus a single ``TLBI`` for an odd page) and the whole
  ASID (or, for kernel ranges, everything) is flushed only above ``MAX_TLBI_RANGE_PAGES``
  (``__TLBI_RANGE_PAGES(31, 3)``, 2 Mi pages), for user and kernel ranges alike
  (``__flush_tlb_range_limit_excess``).

Costs come from :class:`InvalidationCosts`, each field with its primary source or marked
``assumed`` (see ``InvalidationCosts.sources``). Costs are counted in whole ns.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from . import tlb as _tlb
from ._jit import njit
from .config import check_float, check_int
from .counters import Counters, new_counts
from .errors import ConfigError


class Method(IntEnum):
    """How a flush reaches other CPUs."""

    X86_IPI = 0       # INVLPG / CR3 reload, remote CPUs by IPI
    X86_INVLPGB = 1   # AMD broadcast INVLPGB + TLBSYNC
    ARM64_TLBI = 2    # broadcast TLBI ...IS + DSB ISH


class FlushFlag(IntEnum):
    """Bits of a flush request's ``flags``."""

    KERNEL = 1        # a kernel (global) range: flush_tlb_kernel_range
    LAST_LEVEL = 2    # only leaf entries changed (TLBI VALE1; walk caches kept)
    LOCAL = 4         # this CPU only (local_flush_tlb_*; text_poke's per-CPU mm)
    DEFER = 8         # batched: complete at flush_sync (arch_tlbbatch_add_pending)


#: Plain-int flag and context of a kernel (global) range of the host, for kernels.
FLUSH_KERNEL = int(FlushFlag.KERNEL)
HOST_VMID = 0


class InvalEvent(IntEnum):
    """Invalidation counters."""

    FLUSHES = 0          # flush requests
    LOCAL_FLUSHES = 1    # requests that stayed on the initiating CPU
    SHOOTDOWNS = 2       # requests (or batch syncs) that reached other CPUs
    IPIS = 3             # IPIs sent
    INVLPGS = 4          # x86 INVLPG executed (initiator and IPI handlers)
    INVLPGBS = 5         # AMD INVLPGB issued
    TLBSYNCS = 6
    TLBIS = 7            # arm64 TLBI instructions issued
    DSBS = 8             # arm64 DSB barriers
    FULL_FLUSHES = 9     # requests turned into a whole-context / whole-TLB flush
    ENTRIES_DROPPED = 10  # TLB and walk-cache entries removed, summed over CPUs
    INITIATOR_NS = 11    # time the initiating CPUs spent (issuing, waiting for acks/sync)
    TARGET_NS = 12       # time interrupted CPUs spent in IPI handlers
    PENDING_OVERFLOW = 13  # deferred requests applied early because the batch was full


class Cost(IntEnum):
    """Slots of the kernel cost array (ns, except INVLPGB_MAX_PAGES)."""

    INVLPG_NS = 0
    FULL_FLUSH_NS = 1
    IPI_BASE_NS = 2
    IPI_PER_EXTRA_TARGET_NS = 3
    IPI_HANDLER_NS = 4
    INVLPGB_NS = 5
    INVLPGB_MAX_PAGES = 6
    TLBSYNC_NS = 7
    TLBI_NS = 8
    TLBI_LOCAL_NS = 9
    DSB_ISH_NS = 10
    DSB_ISH_PER_CPU_NS = 11
    DSB_NSH_NS = 12


_SOURCES_X86 = ('thread: linux-mm, linux-kernel, "[PATCH 7/7] x86: mm: set TLB flush tunable to '
                'sane value (33)", Dave Hansen, 2014-07-01, '
                '<20140701164856.3020D644@viggo.jf.intel.com>: each single-page flush about 100 ns')
_SOURCES_CR3 = ('thread: linux-mm, linux-kernel, "Re: [PATCH 0/3] TLB flush multiple pages per IPI '
                'v5", Ingo Molnar, 2015-06-08, <20150608195237.GA15429@gmail.com>: CR3 flush 96 '
                'cycles, INVLPG 260 cycles')


@dataclass(frozen=True)
class InvalidationCosts:
    """Cost parameters of invalidation, in ns.

    Every field's source is in :attr:`sources`; ``assumed`` ones must be swept.
    """

    invlpg_ns: float = 100.0
    full_flush_ns: float = 37.0
    ipi_base_ns: float = 3000.0
    ipi_per_extra_target_ns: float = 1500.0
    ipi_handler_ns: float = 1000.0
    invlpgb_ns: float = 100.0
    invlpgb_max_pages: int = 8
    tlbsync_ns: float = 500.0
    tlbi_ns: float = 10.0
    tlbi_local_ns: float = 5.0
    dsb_ish_ns: float = 200.0
    dsb_ish_per_cpu_ns: float = 5.0
    dsb_nsh_ns: float = 20.0
    sources: dict = field(default_factory=lambda: {
        "invlpg_ns": _SOURCES_X86,
        "full_flush_ns": _SOURCES_CR3 + ", taken at the 2.6 GHz that 260 cycles = 100 ns "
                         "implies (the refill cost is modelled by TLB misses)",
        "ipi_base_ns": "assumed ('a few us' per shootdown: a secondary-source rule of thumb)",
        "ipi_per_extra_target_ns": "assumed (1-2 us per extra target: a secondary-source "
                                   "rule of thumb)",
        "ipi_handler_ns": "assumed",
        "invlpgb_ns": "assumed",
        "invlpgb_max_pages": "assumed (CPUID 0x80000008 EDX invlpgb_count_max is per part)",
        "tlbsync_ns": "assumed",
        "tlbi_ns": "assumed",
        "tlbi_local_ns": "assumed",
        "dsb_ish_ns": "assumed",
        "dsb_ish_per_cpu_ns": "assumed (the DSB waits for every CPU of the domain; "
                              "the arm64 batched TLB flush series (2022-2023) reports TLBI+DSB "
                              "at 17 % of CPU time on about 100 cores vs 5 % on 8)",
        "dsb_nsh_ns": "assumed",
    })

    def __post_init__(self):
        for f in fields(self):
            if f.name == "sources":
                continue
            if f.name == "invlpgb_max_pages":
                check_int(f.name, getattr(self, f.name), lo=1)
            else:
                check_float(f.name, getattr(self, f.name), lo=0.0)
        missing = [f.name for f in fields(self) if f.name != "sources" and f.name not in self.sources]
        if missing:
            raise ConfigError(f"no source given for {missing}", "sources")

    def assumed(self) -> tuple[str, ...]:
        """Fields whose source is ``assumed``."""
        return tuple(k for k, v in self.sources.items() if v.startswith("assumed"))

    def to_array(self) -> np.ndarray:
        """Kernel cost array, indexed by :class:`Cost` (whole ns)."""
        out = np.zeros(len(Cost), dtype=np.int64)
        for c in Cost:
            out[c] = int(round(getattr(self, c.name.lower())))
        return out


@dataclass(frozen=True)
class InvalidationConfig:
    """How invalidation works on the modelled machine.

    Parameters
    ----------
    method : :class:`Method`
    cpus : CPUs in the machine (and in the TLB state used with it)
    page_shift : base page size, log2 (``PTRS_PER_PTE = 2 ** (page_shift - 3)``)
    single_page_flush_ceiling : x86 ``tlb_single_page_flush_ceiling`` (33)
    tlbi_range : arm64 CPUs implement FEAT_TLBIRANGE (range TLBI operations)
    costs : :class:`InvalidationCosts`
    pending_capacity : deferred requests a batch can hold before it must be synced
    """

    method: Method = Method.ARM64_TLBI
    cpus: int = 1
    page_shift: int = 12
    single_page_flush_ceiling: int = 33
    tlbi_range: bool = False
    costs: InvalidationCosts = field(default_factory=InvalidationCosts)
    pending_capacity: int = 4096

    def __post_init__(self):
        object.__setattr__(self, "method", Method(self.method))
        check_int("cpus", self.cpus, lo=1, hi=4096)
        check_int("page_shift", self.page_shift, lo=12, hi=16)
        check_int("single_page_flush_ceiling", self.single_page_flush_ceiling, lo=0)
        check_int("pending_capacity", self.pending_capacity, lo=1)

    @property
    def max_tlbi_ops(self) -> int:
        """arm64 ``MAX_TLBI_OPS`` = ``PTRS_PER_PTE``."""
        return 1 << (self.page_shift - 3)

    def build(self) -> "InvalState":
        """The one conversion to kernel arrays."""
        params = np.zeros(_P_LEN, dtype=np.int64)
        params[_P_METHOD] = int(self.method)
        params[_P_CEILING] = self.single_page_flush_ceiling
        params[_P_MAX_TLBI_OPS] = self.max_tlbi_ops
        params[_P_CPUS] = self.cpus
        params[_P_PAGE_SHIFT] = self.page_shift
        params[_P_TLBI_RANGE] = int(self.tlbi_range)
        return InvalState(params=params, cost=self.costs.to_array(),
                          counts=new_counts(InvalEvent),
                          pend=np.zeros((self.pending_capacity, _Q_LEN), dtype=np.int64),
                          mm_mask=np.zeros(self.cpus, dtype=np.uint8),
                          batch_mask=np.zeros(self.cpus, dtype=np.uint8))


# params slots; pend[] columns
(_P_METHOD, _P_CEILING, _P_MAX_TLBI_OPS, _P_CPUS, _P_NPEND, _P_PEND_INIT, _P_PAGE_SHIFT,
 _P_TLBI_RANGE, _P_LEN) = range(9)
#: arm64 ``MAX_TLBI_RANGE_PAGES`` = ``__TLBI_RANGE_PAGES(31, 3)``
MAX_TLBI_RANGE_PAGES = 32 << 16
_Q_START, _Q_END, _Q_ASID, _Q_VMID, _Q_FLAGS, _Q_FULL, _Q_LEN = range(7)


class InvalState(NamedTuple):
    """Kernel state: parameters, costs, counters, the pending (deferred) batch, the CPUs an
    x86 user flush interrupts (``mm_cpumask``) and the CPUs an x86 batch has gathered
    (``arch_tlbflush_unmap_batch.cpumask``)."""

    params: np.ndarray
    cost: np.ndarray
    counts: np.ndarray
    pend: np.ndarray
    mm_mask: np.ndarray
    batch_mask: np.ndarray


_kernel = njit(_nrt=False)
_inner = njit(_nrt=False, python=False)   # called by kernels only


@_inner
def _apply(tst, cpu, start, end, asid, vmid, flags, full):
    """Drop the entries a completed flush removes on CPU ``cpu`` (-1: every CPU)."""
    llo = (flags & 2) != 0
    if full:
        if flags & 1:  # kernel: flush_tlb_all / TLBI VMALLE1IS
            return _tlb.invalidate_vmid(tst, cpu, vmid)
        return _tlb.invalidate_asid(tst, cpu, asid, vmid)
    return _tlb.invalidate_range(tst, cpu, start, end, asid, vmid, llo)


@_inner
def _apply_targets(tst, ist, initiator, start, end, asid, vmid, flags, full):
    """Apply a completed flush on the initiator and every CPU of the x86 batch."""
    dropped = 0
    for c in range(ist.params[_P_CPUS]):
        if c == initiator or ist.batch_mask[c] != 0:
            dropped += _apply(tst, c, start, end, asid, vmid, flags, full)
    return dropped


@_inner
def _queue(tst, ist, start, end, asid, vmid, flags, full):
    n = ist.params[_P_NPEND]
    if n >= ist.pend.shape[0]:
        # batch full: the oldest request completes now
        ist.counts[13] += 1
        if ist.params[_P_METHOD] == 0:
            ist.counts[10] += _apply_targets(tst, ist, ist.params[_P_PEND_INIT], ist.pend[0, 0],
                                             ist.pend[0, 1], ist.pend[0, 2], ist.pend[0, 3],
                                             ist.pend[0, 4], np.bool_(True))
        else:
            ist.counts[10] += _apply(tst, np.int64(-1), ist.pend[0, 0], ist.pend[0, 1],
                                     ist.pend[0, 2], ist.pend[0, 3], ist.pend[0, 4],
                                     ist.pend[0, 5] != 0)
        for i in range(1, n):
            for k in range(_Q_LEN):
                ist.pend[i - 1, k] = ist.pend[i, k]
        n -= 1
    ist.pend[n, 0] = start
    ist.pend[n, 1] = end
    ist.pend[n, 2] = asid
    ist.pend[n, 3] = vmid
    ist.pend[n, 4] = flags
    ist.pend[n, 5] = 1 if full else 0
    ist.params[_P_NPEND] = n + 1


@_kernel
def tlbi_range_ops(pages, stride_pages):
    """TLBI instructions ``__flush_tlb_range_op`` issues for ``pages`` base pages with
    FEAT_TLBIRANGE (arch/arm64/include/asm/tlbflush.h, ``__TLBI_RANGE_NUM``)."""
    ops = 0
    scale = 0
    while pages > 0:
        if pages % 2 == 1:
            ops += 1
            pages -= stride_pages
            continue
        num = ((pages >> (5 * scale + 1)) & 31) - 1
        if num >= 0:
            ops += 1
            pages -= (num + 1) << (5 * scale + 1)
        scale += 1
    return ops


@_kernel
def flush_range(tst, ist, initiator, start, end, stride_shift, asid, vmid, flags):
    """Invalidate ``[start, end)`` of context (``asid``, ``vmid``) from CPU ``initiator``.

    Parameters
    ----------
    tst : :class:`kmm.tlb.TLBState` of every CPU
    ist : :class:`InvalState`; for x86 IPIs, ``ist.mm_mask`` holds the CPUs to interrupt
        (``mm_cpumask``; ignored for kernel ranges, which go to every CPU)
    initiator : CPU issuing the flush
    start, end : VA range (int64, uint64 view); ``end <= start`` flushes the whole context
        (``TLB_FLUSH_ALL``)
    stride_shift : log2 of the invalidation stride (the leaf size of the range)
    asid, vmid : context; ``asid`` -1 for kernel (global) mappings
    flags : :class:`FlushFlag` bits

    Returns the initiator's time in ns for this request (0 for a deferred one whose cost
    lands at :func:`flush_sync`, except arm64's TLBIs, which issue at once).
    """
    cnt = ist.counts
    cost = ist.cost
    # one type whatever the caller passes (a constant would compile the helpers again)
    asid, vmid, flags = np.int64(asid), np.int64(vmid), np.int64(flags)
    method = ist.params[_P_METHOD]
    ncpu = ist.params[_P_CPUS]
    kernel = (flags & 1) != 0
    local = (flags & 4) != 0
    defer = (flags & 8) != 0
    cnt[0] += 1
    if end > start:
        pages = (end - start + (np.int64(1) << stride_shift) - 1) >> stride_shift
    else:
        pages = -1  # TLB_FLUSH_ALL
    ns = 0
    if method == 2:  # ARM64_TLBI
        if ist.params[_P_TLBI_RANGE] != 0:
            step = np.int64(1) << max(stride_shift - ist.params[_P_PAGE_SHIFT], 0)
            base_pages = pages * step
            full = pages < 0 or base_pages > MAX_TLBI_RANGE_PAGES
            ops = 1 if full else tlbi_range_ops(base_pages, step)
        else:
            limit = ist.params[_P_MAX_TLBI_OPS]
            full = pages < 0 or (pages > limit if kernel else pages >= limit)
            ops = 1 if full else pages
        if full:
            cnt[9] += 1
        cnt[7] += ops
        if local:
            cnt[1] += 1
            cnt[8] += 1
            ns = ops * cost[9] + cost[12]
            cnt[10] += _apply(tst, initiator, start, end, asid, vmid, flags, full)
        else:
            cnt[2] += 1
            ns = ops * cost[8]
            if defer:
                _queue(tst, ist, start, end, asid, vmid, flags, full)
            else:
                cnt[8] += 1
                ns += cost[10] + cost[11] * ncpu
                cnt[10] += _apply(tst, np.int64(-1), start, end, asid, vmid, flags, full)
        cnt[11] += ns
        return ns
    ceiling = ist.params[_P_CEILING]
    full = pages < 0 or pages > ceiling
    if method == 1 and not local:  # X86_INVLPGB
        cnt[2] += 1
        if full:
            cnt[9] += 1
            ops = 1
        else:
            per = cost[6]
            ops = (pages + per - 1) // per
        cnt[5] += ops
        ns = ops * cost[5]
        if defer:
            _queue(tst, ist, start, end, asid, vmid, flags, full)
        else:
            cnt[6] += 1
            ns += cost[7]
            cnt[10] += _apply(tst, np.int64(-1), start, end, asid, vmid, flags, full)
        cnt[11] += ns
        return ns
    # X86_IPI (and local x86 flushes of either x86 method)
    work = cost[1] if full else pages * cost[0]
    if full:
        cnt[9] += 1
    if local:
        cnt[1] += 1
        if not full:
            cnt[4] += pages
        cnt[11] += work
        cnt[10] += _apply(tst, initiator, start, end, asid, vmid, flags, full)
        return work
    if defer:
        # arch_tlbbatch_add_pending: gather the CPUs; the flush happens at flush_sync
        for c in range(ncpu):
            if kernel or ist.mm_mask[c] != 0:
                ist.batch_mask[c] = 1
        ist.params[_P_PEND_INIT] = initiator
        _queue(tst, ist, start, end, asid, vmid, flags, np.bool_(True))
        return 0
    targets = 0
    for c in range(ncpu):
        if c != initiator and (kernel or ist.mm_mask[c] != 0):
            targets += 1
    ns = work
    if not full:
        cnt[4] += pages * (1 + targets)
    cnt[10] += _apply(tst, initiator, start, end, asid, vmid, flags, full)
    if targets > 0:
        cnt[2] += 1
        cnt[3] += targets
        ns += cost[2] + cost[3] * (targets - 1) + work
        cnt[12] += targets * (cost[4] + work)
        for c in range(ncpu):
            if c != initiator and (kernel or ist.mm_mask[c] != 0):
                cnt[10] += _apply(tst, c, start, end, asid, vmid, flags, full)
    else:
        cnt[1] += 1
    cnt[11] += ns
    return ns


@njit(_nrt=False, inline="always")
def flush_kernel_range(tst, ist, initiator, start, end, stride_shift):
    """:func:`flush_range` of a kernel (global) range of the host: ``flush_tlb_kernel_range``
    (ASID :data:`kmm.tlb.GLOBAL_ASID`, VMID 0, :attr:`FlushFlag.KERNEL`)."""
    return flush_range(tst, ist, initiator, start, end, stride_shift, _tlb.GLOBAL_ASID, HOST_VMID,
                       FLUSH_KERNEL)


@_kernel
def flush_sync(tst, ist, initiator):
    """Complete every deferred flush (``arch_tlbbatch_flush``); returns the initiator's ns.

    arm64: one ``DSB ISH``; INVLPGB: one ``TLBSYNC``; x86 IPIs: one full flush of every CPU
    gathered in the batch (``flush_tlb_multi`` with ``TLB_FLUSH_ALL``). A no-op when
    nothing is pending.
    """
    n = ist.params[_P_NPEND]
    if n == 0:
        return 0
    cnt = ist.counts
    cost = ist.cost
    method = ist.params[_P_METHOD]
    ncpu = ist.params[_P_CPUS]
    ns = 0
    if method == 2:
        cnt[8] += 1
        ns = cost[10] + cost[11] * ncpu
    elif method == 1:
        cnt[6] += 1
        ns = cost[7]
    for i in range(n):
        if method == 0:
            cnt[10] += _apply_targets(tst, ist, initiator, ist.pend[i, 0], ist.pend[i, 1],
                                      ist.pend[i, 2], ist.pend[i, 3], ist.pend[i, 4],
                                      np.bool_(True))
        else:
            cnt[10] += _apply(tst, np.int64(-1), ist.pend[i, 0], ist.pend[i, 1], ist.pend[i, 2],
                              ist.pend[i, 3], ist.pend[i, 4], ist.pend[i, 5] != 0)
    if method == 0:
        targets = 0
        for c in range(ncpu):
            if c != initiator and ist.batch_mask[c] != 0:
                targets += 1
        cnt[9] += 1
        ns = cost[1]
        cnt[2] += 1
        if targets > 0:
            cnt[3] += targets
            ns += cost[2] + cost[3] * (targets - 1) + cost[1]
            cnt[12] += targets * (cost[4] + cost[1])
        for c in range(ncpu):
            ist.batch_mask[c] = 0
    ist.params[_P_NPEND] = 0
    cnt[11] += ns
    return ns


def _va(x: int) -> int:
    """An address as the int64 (uint64 view) the TLB kernels use."""
    x = int(x)
    if x < 0:
        return x
    return int(np.array([x], dtype=np.uint64).view(np.int64)[0])


class Invalidator:
    """Validated Python front end over one :class:`InvalState` and one TLB state.

    ``tlb_state`` is the :class:`kmm.tlb.TLBState` (for example ``kmm.tlb.TLB(cfg).state``)
    whose entries flushes remove; with None a one-entry TLB per CPU is made, so only the
    costs and counters mean anything.
    """

    def __init__(self, config: InvalidationConfig, tlb_state: "_tlb.TLBState | None" = None):
        self.config = config
        if tlb_state is None:
            tlb_state = _tlb.TLBConfig(l2=_tlb.TLBLevelConfig(1, 1), cpus=config.cpus).to_state()
        if tlb_state.ent.shape[0] != config.cpus:
            raise ConfigError(f"TLB state has {tlb_state.ent.shape[0]} CPUs, the invalidation "
                              f"config {config.cpus}", "cpus")
        self.tlb_state = tlb_state
        self.state = config.build()

    @property
    def counters(self) -> Counters:
        return Counters(InvalEvent, self.state.counts)

    def _cpu(self, name: str, cpu: int) -> int:
        return check_int(name, cpu, lo=0, hi=self.config.cpus - 1)

    def set_targets(self, cpus) -> None:
        """Set the CPUs an x86 user flush interrupts (``mm_cpumask``)."""
        mask = np.zeros(self.config.cpus, dtype=np.uint8)
        for c in cpus:
            mask[self._cpu("targets", int(c))] = 1
        self.state.mm_mask[:] = mask

    def flush(self, initiator: int, start: int, end: int, *, asid: int = 0, vmid: int = 0,
              stride_shift: int | None = None, kernel: bool = False,
              last_level_only: bool = False, local: bool = False, defer: bool = False) -> int:
        """Flush ``[start, end)`` (``end <= start``: the whole context); the initiator's ns.

        Kernel ranges use ``asid = -1`` (global entries) whatever ``asid`` says.
        """
        self._cpu("initiator", initiator)
        if stride_shift is None:
            stride_shift = self.config.page_shift
        check_int("stride_shift", stride_shift, lo=12, hi=40)
        if local and defer:
            raise ConfigError("a local flush cannot be deferred", "defer")
        flags = ((FlushFlag.KERNEL if kernel else 0) | (FlushFlag.LAST_LEVEL if last_level_only
                 else 0) | (FlushFlag.LOCAL if local else 0) | (FlushFlag.DEFER if defer else 0))
        return int(flush_range(self.tlb_state, self.state, initiator, _va(start), _va(end),
                               stride_shift, -1 if kernel else asid, vmid, int(flags)))

    def sync(self, initiator: int) -> int:
        """Complete the deferred batch; the initiator's ns."""
        self._cpu("initiator", initiator)
        return int(flush_sync(self.tlb_state, self.state, initiator))

    @property
    def pending(self) -> int:
        return int(self.state.params[_P_NPEND])


__all__ = ["flush_kernel_range", "HOST_VMID", "FLUSH_KERNEL", "Method", "FlushFlag", "InvalEvent", "Cost", "InvalidationCosts",
           "InvalidationConfig", "InvalState", "flush_range", "flush_sync", "Invalidator",
           "tlbi_range_ops", "MAX_TLBI_RANGE_PAGES"]
