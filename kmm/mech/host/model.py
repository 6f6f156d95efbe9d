"""host: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.host`."""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from functools import lru_cache

import numpy as np

from ... import engine as eng
from ...config import check_float, check_int
from ...engine import (S2_WALK_CACHE_ENTRIES, WALK_CACHE_ENTRIES, PageTable, Perm, Replicated,
                       Topology)
from ...errors import ConfigError

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

    def image_va(self, g: eng.Geometry) -> int:
        va = self.top_index * g.entry_bytes(g.start_level)
        if va >= 1 << g.va_bits:
            raise ConfigError(f"top-level entry {self.top_index} is outside {g.name}",
                              "top_index")
        return va


#: Top-level tables of one node's set in the RFC (its ``struct pgtables``, v2 08/16 "add node
#: 0 page table definitions"): ``reserved_pg_dir`` and ``swapper_pg_dir``, plus
#: ``tramp_pg_dir`` with ``CONFIG_UNMAP_KERNEL_AT_EL0``; each ``PTRS_PER_PGD`` descriptors.
def top_tables_per_node(unmap_kernel_at_el0: bool = True) -> int:
    """Top-level tables in one node's ``struct pgtables``: 3 with ``UNMAP_KERNEL_AT_EL0``
    (``tramp_pg_dir``, ``reserved_pg_dir``, ``swapper_pg_dir``), else 2."""
    return 3 if unmap_kernel_at_el0 else 2


def ktr_refusal(g: eng.Geometry) -> str | None:
    """Why KTR cannot replicate the image in ``g``, or None.

    The RFC needs a top-level kernel entry that holds the image and nothing else
    (``ktext_replication_init`` disables replication when the kernel shares its L0 entry
    with vmalloc). The image, modules and the start of vmalloc live in the top
    ``2**(VA_BITS_MIN - 1)`` bytes of the kernel half (``_PAGE_END(VA_BITS_MIN)``,
    arch/arm64/include/asm/memory.h; ``VA_BITS_MIN`` is 48 with 52-bit VAs, so that the
    kernel also boots without LPA/LPA2). Where one top-level entry spans that whole
    window the image shares it with vmalloc and modules: 16K/48 (two level-0 entries; the
    fixmap code notes the kernel mapping and fixmap share one, arch/arm64/mm/fixmap.c
    ``early_fixmap_init_pud``) and LPA2 with 4K or 16K pages (the top level is level -1 with
    4K). Replicating there means a per-node copy of a table that vmalloc and module loads
    keep changing, which the RFC does not do.
    """
    va_min = min(g.va_bits, 48)
    window = 1 << (va_min - 1)
    top = g.entry_bytes(g.start_level)
    if top >= window:
        return (f"{g.name}: one top-level entry (level {g.start_level}, "
                f"{top >> 40} TiB) spans the whole {window >> 40} TiB window of image, modules "
                f"and vmalloc, so the image would share its entry with vmalloc and modules "
                f"(the RFC's ktext_replication_init refuses that case)")
    return None


def build_kernel_tables(image: KernelImage, g: eng.Geometry, nodes: int,
                        placement: ImagePlacement = ImagePlacement()
                        ) -> tuple[PageTable, Replicated | None]:
    """Kernel image mapping (``map_kernel``) and, for ``nodes > 1``, its per-node copies.

    Node 0 keeps ``swapper_pg_dir`` and the boot copy; nodes 1..nodes-1 each get a top-level
    table and a copy of the image subtree (``PageTable.replicate``).
    """
    check_int("nodes", nodes, lo=1, hi=64)
    why = ktr_refusal(g) if nodes > 1 else None
    if why:
        raise ConfigError(why, "geometry")
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


# ---- text patching (K4) --------------------------------------------------------------------
class PatchSync(IntEnum):
    """How a patch is made safe against concurrent execution.

    STOP_MACHINE : ``aarch64_insn_patch_text``: every online CPU spins in ``stop_machine``
        while the last one to arrive patches (arch/arm64/kernel/patching.c). kprobes arm and
        disarm through it (arch/arm64/kernel/probes/kprobes.c ``patch_text``).
    NOSYNC : ``aarch64_insn_patch_text_nosync``: only the patching CPU spends time. Static
        keys (arch/arm64/kernel/jump_label.c ``arch_jump_label_transform``) and ftrace
        (arch/arm64/kernel/ftrace.c ``ftrace_modify_code``; ``arch_ftrace_update_code``
        calls ``ftrace_modify_all_code`` without ``stop_machine``) patch this way.
    """

    STOP_MACHINE = 0
    NOSYNC = 1


#: The synchronisation each text-patching path really issues (see :class:`PatchSync`).
PATCH_PATHS: dict[str, PatchSync] = {"static_key": PatchSync.NOSYNC,
                                     "ftrace": PatchSync.NOSYNC,
                                     "kprobe": PatchSync.STOP_MACHINE}

#: VA of the ``FIX_TEXT_POKE0`` slot in the model (any page-aligned kernel VA: the flush is
#: priced, not applied to a TLB).
_FIXMAP_VA = 0xFFFF_FFFF_FE00_0000


@dataclass(frozen=True)
class PatchCost:
    """Cost parameters of one text patch (all ``assumed`` unless stated).

    Parameters
    ----------
    sites : instructions written by one patch (one static key may own many sites)
    fixmap_ns : ``patch_map``/``patch_unmap`` of ``FIX_TEXT_POKE0`` for one write without the
        invalidation: the lock, the descriptor stores and barriers
    cmo_ns : ``caches_clean_inval_pou`` of one line: DC CVAU, DSB ISH, IC IVAU (broadcast to
        the inner shareable domain), DSB ISH, ISB
    sync_ns : fixed cost of the synchronisation: the ``stop_machine`` rendezvous, or the
        IPI round of a nosync patch
    sync : :class:`PatchSync`
    tlbi_ns, dsb_ish_ns, dsb_ish_per_cpu_ns : the invalidation ``patch_unmap`` issues per
        write: ``clear_fixmap`` -> ``__set_fixmap`` -> ``flush_tlb_kernel_range`` of the
        slot's page (arch/arm64/mm/fixmap.c), a broadcast ``TLBI VAALE1IS`` and the ``DSB
        ISH`` that waits for every CPU (:func:`fixmap_flush_ns`, :mod:`kmm.invalidate`)
    """

    sites: int = 1
    fixmap_ns: float = 300.0
    cmo_ns: float = 500.0
    sync_ns: float = 5000.0
    sync: PatchSync = PatchSync.STOP_MACHINE
    tlbi_ns: float = 10.0
    dsb_ish_ns: float = 200.0
    dsb_ish_per_cpu_ns: float = 5.0

    def __post_init__(self):
        check_int("sites", self.sites, lo=1)
        for f in ("fixmap_ns", "cmo_ns", "sync_ns", "tlbi_ns", "dsb_ish_ns",
                  "dsb_ish_per_cpu_ns"):
            check_float(f, getattr(self, f), lo=0.0)
        object.__setattr__(self, "sync", PatchSync(self.sync))

    def scaled(self, k: float) -> "PatchCost":
        """Every time cost multiplied by ``k``."""
        from dataclasses import replace
        return replace(self, fixmap_ns=self.fixmap_ns * k, cmo_ns=self.cmo_ns * k,
                       sync_ns=self.sync_ns * k, tlbi_ns=self.tlbi_ns * k,
                       dsb_ish_ns=self.dsb_ish_ns * k,
                       dsb_ish_per_cpu_ns=self.dsb_ish_per_cpu_ns * k)


@lru_cache(maxsize=256)
def _fixmap_flush_ns(cpus: int, tlbi_ns: float, dsb_ish_ns: float,
                     dsb_ish_per_cpu_ns: float) -> float:
    costs = eng.InvalidationCosts(tlbi_ns=tlbi_ns, dsb_ish_ns=dsb_ish_ns,
                                  dsb_ish_per_cpu_ns=dsb_ish_per_cpu_ns)
    iv = eng.Invalidator(eng.InvalidationConfig(method=eng.Method.ARM64_TLBI, cpus=cpus,
                                                page_shift=12, costs=costs))
    return float(iv.flush(0, _FIXMAP_VA, _FIXMAP_VA + 4096, kernel=True))


def fixmap_flush_ns(cpus: int, cost: PatchCost = PatchCost()) -> float:
    """The patching CPU's time in ``flush_tlb_kernel_range`` of the fixmap slot on a machine
    of ``cpus`` CPUs (arch/arm64/mm/fixmap.c ``__set_fixmap`` clearing the slot): one
    broadcast TLBI of the page and a ``DSB ISH`` that grows with the CPUs of the domain,
    priced by :class:`kmm.invalidate.Invalidator`."""
    check_int("cpus", cpus, lo=1, hi=4096)
    return _fixmap_flush_ns(int(cpus), float(cost.tlbi_ns), float(cost.dsb_ish_ns),
                            float(cost.dsb_ish_per_cpu_ns))


def patch_write_ns(topo: Topology, copy_nid: int, cost: PatchCost = PatchCost(),
                   patcher_nid: int = 0) -> float:
    """One instruction written into the copy on node ``copy_nid``: fixmap map/unmap, the
    broadcast flush of the slot (:func:`fixmap_flush_ns`), the store that must first own
    the line (a read from the copy's node, ``latency_ns[patcher][copy]``) and the
    clean/invalidate to PoU."""
    lat = np.asarray(topo.latency_ns)
    return (cost.fixmap_ns + fixmap_flush_ns(topo.cpus, cost) + float(lat[patcher_nid, copy_nid])
            + cost.cmo_ns)


def patch_window_ns(topo: Topology, copies: int, cost: PatchCost = PatchCost(),
                    patcher_nid: int = 0) -> float:
    """Time the patching CPU spends on one patch when the text has ``copies`` copies.

    Copy ``n`` lives on node ``n`` (copy 0 is the boot copy on node 0). Each site is written
    once per copy (:func:`patch_write_ns`).
    """
    check_int("copies", copies, lo=1, hi=topo.nodes)
    check_int("patcher_nid", patcher_nid, lo=0, hi=topo.nodes - 1)
    per_site = sum(patch_write_ns(topo, n, cost, patcher_nid) for n in range(copies))
    return cost.sync_ns + cost.sites * per_site


def patch_machine_ns(topo: Topology, copies: int, cost: PatchCost = PatchCost(),
                     patcher_nid: int = 0) -> float:
    """CPU time the whole machine loses to one patch: every online CPU for the window under
    ``stop_machine``; the patching CPU's window otherwise (``sync_ns`` charged once, to the
    patcher)."""
    w = patch_window_ns(topo, copies, cost, patcher_nid)
    if cost.sync == PatchSync.STOP_MACHINE:
        return w * topo.cpus
    return w


def patch_overhead_fraction(topo: Topology, copies: int, rate_per_s: float,
                            cost: PatchCost = PatchCost(), patcher_nid: int = 0) -> float:
    """Fraction of the machine's CPU time spent patching at ``rate_per_s`` patches/s."""
    rate = check_float("rate_per_s", rate_per_s, lo=0.0)
    return rate * patch_machine_ns(topo, copies, cost, patcher_nid) / (topo.cpus * 1e9)


def patch_mix_fraction(topo: Topology, copies: int, rates: dict, cost: PatchCost = PatchCost(),
                       patcher_nid: int = 0) -> float:
    """Fraction of the machine's CPU time spent patching when each path of
    :data:`PATCH_PATHS` patches at ``rates[path]`` per second, each with the
    synchronisation that path really uses (``cost.sync`` is ignored)."""
    from dataclasses import replace
    tot = 0.0
    for path, rate in rates.items():
        if path not in PATCH_PATHS:
            raise ConfigError(f"unknown patch path {path!r}; allowed: {', '.join(PATCH_PATHS)}",
                              "rates")
        tot += patch_overhead_fraction(topo, copies, rate,
                                       replace(cost, sync=PATCH_PATHS[path]), patcher_nid)
    return tot


def pgd_sync_fraction(topo: Topology, copies: int, rate_per_s: float) -> float:
    """Fraction of the machine's CPU time spent copying top-level kernel table updates into
    the ``copies - 1`` extra top-level tables, beyond the one write the baseline makes.

    ``set_swapper_pgd`` (arch/arm64/mm/mmu.c) calls ``ktext_replication_set_swapper_pgd``,
    which stores the new entry into every other node's ``swapper_pg_dir`` with
    ``WRITE_ONCE`` (RFC v3 10/19, "arm64: text replication: create per-node kernel page
    tables"): level-0 entries change at runtime when vmalloc or module space first uses a
    new top-level range. Each store first owns its line on the copy's node, a read at
    ``latency_ns[updater][copy]``; copy ``n`` lives on node ``n`` and the updating CPU is
    on any node with equal probability. ``rate_per_s`` is machine-wide.
    """
    check_int("copies", copies, lo=1, hi=topo.nodes)
    rate = check_float("rate_per_s", rate_per_s, lo=0.0)
    lat = np.asarray(topo.latency_ns)
    per_update = float(np.mean([lat[i, 1:copies].sum() for i in range(topo.nodes)]))
    return rate * per_update / (topo.cpus * 1e9)


# ---- performance model: host workloads on the full path --------------------------------------
#
# One run simulates the CPUs of a node (or of nodes 0 and 1 when the topology is flat, the
# other nodes being copies of node 1) through kmm.walk.Path: TLBs, walks, per-CPU caches and
# one LLC per node. Every line carries a placement *class* instead of a node (see
# :class:`Classes`); a class becomes a node only when the counts are charged, so a single run
# gives the baseline, KTR and every user-space placement: per-node caches see the same lines
# whichever node holds them, and copies keep their set index.


class Region(IntEnum):
    """What an access touches."""

    KTEXT = 0     # kernel text (replicated)
    KRODATA = 1   # kernel rodata (replicated)
    KDATA = 2     # kernel data of a thread through the linear map (node of its home)
    KSHARED = 3   # read-write data of the image (one copy, node 0)
    UTEXT = 4     # user text (node of the thread's home)
    UDATA = 5     # user data (placed by the user NUMA policy)
    HYP = 6       # EL2 text (one copy, node 0)


class UserPolicy(IntEnum):
    """Where user data lives relative to the thread's home node (mm/mempolicy.c)."""

    LOCAL = 0       # first touch by the thread on its home node (MPOL_LOCAL)
    INTERLEAVE = 1  # page i on node i % nodes (MPOL_INTERLEAVE)
    REMOTE = 2      # on the next node: NUMA-unaware placement at its worst
    NODE0 = 3       # everything on node 0 (one loader thread first-touched it all)


class Scheme(IntEnum):
    """Where replicated lines and kernel tables are read from."""

    BASELINE = 0  # text, rodata and kernel tables on node 0
    KTR = 1       # per-node copies and per-node kernel tables below the top level
    STAGE2 = 2    # per-node stage-2 copies; stage-1 kernel tables stay on node 0


@dataclass(frozen=True)
class Workload:
    """A kernel/user phase mix. Every field is a modelling assumption stated with its
    rationale in :data:`WORKLOADS`; none is fitted to a claim.

    Parameters
    ----------
    name : label
    kernel_fraction : share of instructions executed in the kernel
    kernel_entry_insns : instructions of one kernel entry (system call, interrupt)
    kernel_hot_funcs : distinct kernel functions the workload calls
    kernel_zipf : Zipf exponent of their popularity
    user_hot_funcs, user_zipf : the same for user text
    udata_apki : user data accesses per 1000 user instructions that leave the core's
        registers and stack (the stack and locals are part of the base CPI)
    udata_bytes : per-thread user data footprint; ``udata_hot_bytes`` of it gets
        ``udata_hot_fraction`` of the accesses
    kdata_apki : kernel data accesses per 1000 kernel instructions, split into rodata
        (``rodata_fraction``, replicated), image read-write data (``kshared_fraction``,
        node 0) and per-thread kernel objects (``kdata_bytes``, the thread's home node)
    """

    name: str
    kernel_fraction: float
    kernel_entry_insns: int
    kernel_hot_funcs: int
    kernel_zipf: float
    user_hot_funcs: int
    user_zipf: float
    udata_apki: float
    udata_bytes: int
    udata_hot_bytes: int
    udata_hot_fraction: float
    kdata_apki: float
    kdata_bytes: int
    kshared_fraction: float
    rodata_fraction: float
    rodata_hot_bytes: int = 512 * KiB
    kshared_hot_bytes: int = 256 * KiB

    def __post_init__(self):
        check_float("kernel_fraction", self.kernel_fraction, lo=0.0, hi=0.99)
        check_int("kernel_entry_insns", self.kernel_entry_insns, lo=16)
        check_int("kernel_hot_funcs", self.kernel_hot_funcs, lo=1)
        check_int("user_hot_funcs", self.user_hot_funcs, lo=1)
        check_float("kernel_zipf", self.kernel_zipf, lo=0.0, hi=4.0)
        check_float("user_zipf", self.user_zipf, lo=0.0, hi=4.0)
        check_float("udata_apki", self.udata_apki, lo=0.0, hi=1000.0)
        check_float("kdata_apki", self.kdata_apki, lo=0.0, hi=1000.0)
        check_int("udata_bytes", self.udata_bytes, lo=64)
        check_int("udata_hot_bytes", self.udata_hot_bytes, lo=64, hi=self.udata_bytes)
        check_float("udata_hot_fraction", self.udata_hot_fraction, lo=0.0, hi=1.0)
        check_int("kdata_bytes", self.kdata_bytes, lo=64)
        check_float("kshared_fraction", self.kshared_fraction, lo=0.0, hi=1.0)
        check_float("rodata_fraction", self.rodata_fraction, lo=0.0,
                    hi=1.0 - self.kshared_fraction)
        check_int("rodata_hot_bytes", self.rodata_hot_bytes, lo=64)
        check_int("kshared_hot_bytes", self.kshared_hot_bytes, lo=64)

    def with_(self, **changes) -> "Workload":
        from dataclasses import replace
        return replace(self, **changes)


WORKLOADS: dict[str, Workload] = {
    # OLTP database: syscall- and network-heavy (read/write/poll/futex on every request), a
    # kernel instruction footprint spread over networking, VFS, block, scheduler and memory
    # management code. OLTP stalls mostly on instruction misses even with large data sets
    # ("OLTP in Wonderland", DaMoN 2013; "STEPS", VLDB 2004: a code footprint of hundreds of
    # KB for the database alone), so data accesses are mostly to a hot set with a cold tail
    # over a buffer pool far larger than the LLC. The popularity exponents were set once so
    # that L1 I-cache misses land in the range reported for OLTP (a few tens per 1000
    # instructions), before any claim was evaluated.
    "database": Workload("database", kernel_fraction=0.35, kernel_entry_insns=5000,
                         kernel_hot_funcs=2000, kernel_zipf=1.2, user_hot_funcs=1500,
                         user_zipf=1.2, udata_apki=30.0, udata_bytes=512 * MiB,
                         udata_hot_bytes=1 * MiB, udata_hot_fraction=0.9, kdata_apki=30.0,
                         kdata_bytes=512 * KiB, kshared_fraction=0.1, rodata_fraction=0.15,
                         rodata_hot_bytes=512 * KiB, kshared_hot_bytes=256 * KiB),
    # Compute-bound: the kernel runs only for timer ticks and the odd page fault; user code
    # loops over an L2-sized working set.
    "compute": Workload("compute", kernel_fraction=0.02, kernel_entry_insns=3000,
                        kernel_hot_funcs=400, kernel_zipf=1.2, user_hot_funcs=200,
                        user_zipf=1.2, udata_apki=60.0, udata_bytes=8 * MiB,
                        udata_hot_bytes=512 * KiB, udata_hot_fraction=0.95, kdata_apki=30.0,
                        kdata_bytes=128 * KiB, kshared_fraction=0.2, rodata_fraction=0.1,
                        rodata_hot_bytes=64 * KiB, kshared_hot_bytes=64 * KiB),
    # Syscall microbenchmark (a getppid/read-of-/dev/zero loop): nearly all time in a short
    # kernel path of a few dozen functions, which stays in the L1 I-cache.
    "syscall": Workload("syscall", kernel_fraction=0.8, kernel_entry_insns=400,
                        kernel_hot_funcs=40,
                        kernel_zipf=1.0, user_hot_funcs=10, user_zipf=1.0, udata_apki=20.0,
                        udata_bytes=64 * KiB, udata_hot_bytes=16 * KiB,
                        udata_hot_fraction=0.9, kdata_apki=30.0, kdata_bytes=16 * KiB,
                        kshared_fraction=0.2, rodata_fraction=0.1, rodata_hot_bytes=4 * KiB,
                        kshared_hot_bytes=4 * KiB),
}


@dataclass(frozen=True)
class TextModel:
    """Shape of the code images and instruction streams (:func:`kmm.workloads.code_image`,
    :func:`kmm.workloads.instruction_stream`; their defaults, ``assumed``): function sizes
    log-normal with ``median_bytes`` and ``sigma``, starts aligned to ``align_bytes``; fetch
    runs of ``mean_run_insns`` sequential instructions, ``branch_fraction`` of them
    followed by a branch within the function rather than a call or return."""

    median_bytes: int = 256
    sigma: float = 1.2
    align_bytes: int = 16
    mean_run_insns: float = 6.0
    branch_fraction: float = 0.7
    user_text_bytes: int = 16 * MiB

    def __post_init__(self):
        check_int("median_bytes", self.median_bytes, lo=4)
        check_float("sigma", self.sigma, lo=0.0, hi=3.0)
        check_int("align_bytes", self.align_bytes, lo=4)
        check_float("mean_run_insns", self.mean_run_insns, lo=1.0)
        check_float("branch_fraction", self.branch_fraction, lo=0.0, hi=1.0)
        check_int("user_text_bytes", self.user_text_bytes, lo=4096)


@dataclass(frozen=True)
class Machine:
    """The simulated machine: geometry, NUMA nodes and the CPUs simulated per node.

    ``cpus_per_node`` CPUs of a node are simulated, sharing an LLC of ``llc_bytes``. The
    other cores of the node are not simulated: between two uses of a line shared by every
    core (text, rodata) the LLC sees the same number of insertions whatever the core count,
    but the other cores' private footprints also take LLC capacity. ``llc_bytes`` is
    therefore the capacity left to the simulated cores' lines, between the node's LLC
    divided by its cores and the whole LLC, and is swept (``assumed``).
    """

    nodes: int = 2
    cpus_per_node: int = 2
    threads_per_cpu: int = 2
    llc_bytes: int = 8 * MiB
    granule: str = "4K"
    va_bits: int = 48
    linear_map: str = "pte"
    image: KernelImage = KernelImage()
    #: walk-cache sizes of the simulated CPUs (``assumed``: :data:`kmm.tlb.WALK_CACHE_ENTRIES`,
    #: :data:`kmm.tlb.S2_WALK_CACHE_ENTRIES`)
    walk_cache_entries: int = int(WALK_CACHE_ENTRIES)
    s2_walk_cache_entries: int = int(S2_WALK_CACHE_ENTRIES)
    #: where KTR's per-node lower kernel tables live (:func:`ktr_table_node`)
    ktr_tables: str = "rfc"

    def __post_init__(self):
        check_int("nodes", self.nodes, lo=1, hi=16)
        _check_ktr_tables(self.ktr_tables)
        check_int("cpus_per_node", self.cpus_per_node, lo=1, hi=16)
        check_int("threads_per_cpu", self.threads_per_cpu, lo=1, hi=16)
        check_int("llc_bytes", self.llc_bytes, lo=64 * KiB)
        if self.linear_map not in ("pte", "block"):
            raise ConfigError(f"must be 'pte' (rodata=full) or 'block', got "
                              f"{self.linear_map!r}", "linear_map")

    @property
    def geometry(self) -> eng.Geometry:
        return eng.arm64(self.granule, self.va_bits)


@dataclass(frozen=True)
class RunConfig:
    """Trace length and scheduling of one simulation.

    Each simulated CPU runs ``warmup_per_cpu`` accesses that only warm the TLBs and caches,
    then ``accesses_per_cpu`` measured ones. A CPU runs time slices of
    ``slice_instructions``; with probability ``migration`` a slice runs a thread whose home
    node (where its memory was first touched) is another node: the VA stays, the CPU's
    caches do not hold its lines. ``exits_per_kinstr`` exits to EL2 per 1000 instructions
    each fetch ``hyp_text_bytes`` of hypervisor text.
    """

    accesses_per_cpu: int = 40_000
    warmup_per_cpu: int = 40_000
    slice_instructions: int = 50_000
    migration: float = 0.05
    exits_per_kinstr: float = 0.0
    hyp_text_bytes: int = 16 * KiB
    seed: int = 0

    def __post_init__(self):
        check_int("accesses_per_cpu", self.accesses_per_cpu, lo=1000)
        check_int("warmup_per_cpu", self.warmup_per_cpu, lo=0)
        check_int("slice_instructions", self.slice_instructions, lo=1000)
        check_float("migration", self.migration, lo=0.0, hi=1.0)
        check_float("exits_per_kinstr", self.exits_per_kinstr, lo=0.0, hi=100.0)
        check_int("hyp_text_bytes", self.hyp_text_bytes, lo=64)
        check_int("seed", self.seed, lo=0)


KTR_TABLE_PLACEMENTS = ("rfc", "local")


def _check_ktr_tables(v: str) -> str:
    if v not in KTR_TABLE_PLACEMENTS:
        raise ConfigError(f"must be one of {', '.join(KTR_TABLE_PLACEMENTS)}, got {v!r}",
                          "ktr_tables")
    return v


def ktr_table_node(cpu_node: int, nodes: int, placement: str = "rfc") -> int:
    """Node holding the kernel tables below the top level that a CPU of ``cpu_node`` walks
    under KTR.

    Node 0 walks the boot tables (``swapper_pg_dir`` and the image subtree ``map_kernel``
    built, node 0). Node ``n > 0`` walks the subtree ``create_kernel_nid_map`` built (RFC
    v2 13/16), whose tables come from ``early_pgtable_alloc`` (arch/arm64/mm/mmu.c:
    ``memblock_phys_alloc_range`` with no node), and memblock allocates top down: ``rfc``
    puts them on the node at the top of RAM (the last node); ``local`` on node ``n`` (a
    node-aware allocator, the option the review asks for). Its top-level set is node-local
    (``memblock_alloc_node(..., nid)``) but its reads are charged with the lower tables.
    """
    if cpu_node == 0 or _check_ktr_tables(placement) == "local":
        return cpu_node
    return nodes - 1


class Classes:
    """Placement classes of lines and tables for ``nodes`` nodes.

    ``0..nodes-1`` a fixed node; ``TEXT`` replicated text and rodata; ``KTABLE`` kernel
    stage-1 tables that KTR replicates (the top level and the image subtree; under KTR
    read where :func:`ktr_table_node` puts a node's lower tables); ``UTEXT``
    user text (page cache of the binary, on node 0 where it was first read); ``HYP`` EL2
    text (one copy, node 0); ``khome(h)``
    kernel objects of a thread of home ``h`` and ``home(h)`` its page tables (both on that
    node); ``udata(h, q)`` a user page of a thread of home ``h`` whose interleave node is
    ``q``.
    """

    def __init__(self, nodes: int, ktr_tables: str = "rfc"):
        self.nodes = nodes
        self.ktr_tables = _check_ktr_tables(ktr_tables)
        self.TEXT = nodes
        self.KTABLE = nodes + 1
        self.UTEXT = nodes + 2
        self.HYP = nodes + 3
        self.count = 4 + 3 * nodes + nodes * nodes

    def home(self, h):
        return self.nodes + 4 + h

    def khome(self, h):
        return 2 * self.nodes + 4 + h

    def udata(self, h, q):
        return 4 + 3 * self.nodes + h * self.nodes + q

    def resolve(self, scheme: Scheme, policy: UserPolicy, cpu_node: int,
                sim_node: int) -> np.ndarray:
        """Node each class is read from by a CPU on ``cpu_node``, for counts simulated on
        ``sim_node``: nodes are statistically interchangeable except for the lines and
        tables fixed on a node, so ``cpu_node``'s counts are ``sim_node``'s with the two
        nodes swapped in every home and interleave class (fixed nodes stay)."""
        n = self.nodes
        swap = np.arange(n)
        swap[cpu_node], swap[sim_node] = sim_node, cpu_node
        policy = UserPolicy(policy)
        out = np.zeros(self.count, np.int64)
        out[:n] = np.arange(n)
        out[self.TEXT] = 0 if scheme == Scheme.BASELINE else cpu_node
        out[self.KTABLE] = ktr_table_node(cpu_node, n, self.ktr_tables) \
            if scheme == Scheme.KTR else 0
        out[self.UTEXT] = 0
        out[self.HYP] = 0
        for h in range(n):
            hh = swap[h]
            out[self.home(h)] = hh
            out[self.khome(h)] = hh
            for q in range(n):
                out[self.udata(h, q)] = {UserPolicy.LOCAL: hh, UserPolicy.INTERLEAVE: swap[q],
                                         UserPolicy.REMOTE: (hh + 1) % n,
                                         UserPolicy.NODE0: 0}[policy]
        return out


# Virtual and physical layout of the simulated host (4 GiB aligned windows, all in node 0's
# RAM window of the stage-2 map; the node a line is read from is its class, not its PA).
KERNEL_VA_BASE = 0xFFFF_0000_0000_0000
LINEAR_VA_BASE = 0xFFFF_4000_0000_0000
HYP_VA_BASE = 0x0000_2000_0000_0000
USER_TEXT_VA = 0x0000_0000_0040_0000
USER_DATA_VA = 0x0000_1000_0000_0000
KDATA_PA = 8 * GiB
UTEXT_PA = 16 * GiB
UDATA_PA = 32 * GiB
HYP_PA = 4 * GiB
SLOT_SPAN_BYTES = 4 * GiB


@dataclass(frozen=True)
class Stage2Setup:
    """What a stage-2 run needs from :mod:`kmm.mech.pkvm`: the stage-2 geometry, the leaf
    level that maps pages holding stage-1 tables, ``leaf(pa, node) -> (level, cont)``
    giving each access's stage-2 leaf as seen from a CPU on ``node``, and optionally
    ``path(config)``, a path whose ``run`` also takes ``el2`` (the accesses made at EL2,
    which translate in their own regime) instead of :class:`kmm.walk.Path`."""

    geometry: eng.Geometry
    table_leaf_level: int
    leaf: object
    path: object = None
    #: placement class of the stage-2 tables (None: each node's own set, read from the
    #: charged CPU's node)
    table_class: int | None = None
    #: the stage-2 walk cache keeps IPA -> PA page leaves (:class:`kmm.walk.PathConfig`)
    walk_cache_page_leaves: bool = False


@dataclass
class HostCounts:
    """Measured counts of one simulated node (after warm-up).

    ``mem[source, cpu_node, class]`` memory reads, ``served[source, level]`` the level that
    supplied each access, ``l2_tlb_hits``, ``walks``, ``walk_refs``, ``instructions`` (16
    per fetched line of kernel and user text), ``hyp_lines``, ``exits`` and ``cpus`` (the
    simulated CPUs whose work the counts pool). Every node of
    the machine is charged from these counts (:meth:`Classes.resolve`).
    """

    nodes: int
    sim_node: int
    classes: Classes
    mem: np.ndarray
    served: np.ndarray
    l2_tlb_hits: int
    walks: int
    walk_refs: int
    instructions: int
    hyp_lines: int
    exits: int
    tlb_misses: int = 0
    ifetch_tlb_misses: int = 0
    cpus: int = 1
    #: distinct lines of text and rodata the measured accesses touched: what a node's cold
    #: copy has to read again (:class:`ReplicaCosts`)
    replicated_lines: int = 0


def _path_arrays(tr: HostTrace, m: Machine, cls: Classes, image_pt: PageTable,
                 levels: int, slots_per_node: int):
    """Per-access leaf levels, contiguous bits, global flags, ASIDs, line classes and
    table classes (one column per walk level, top first)."""
    g = m.geometry
    n = tr.va.size
    reg = tr.region
    leaf = np.full(n, 3, np.int8)
    cont = np.zeros(n, bool)
    img = (reg == Region.KTEXT) | (reg == Region.KRODATA) | (reg == Region.KSHARED)
    off = (tr.va[img] - np.uint64(KERNEL_VA_BASE)).astype(np.int64)
    _pa, lv, ct, _perm, _nid = image_pt.translate_many(off)
    if (lv < -1).any():
        raise ConfigError("a kernel image access falls outside the image mapping", "trace")
    leaf[img] = lv
    cont[img] = ct.astype(bool)
    if m.linear_map == "block":
        leaf[reg == Region.KDATA] = min(g.block_bytes)
    leaf[reg == Region.HYP] = max(g.block_bytes)
    glob = (reg != Region.UTEXT) & (reg != Region.UDATA)
    asid = np.where(glob, 0, 1).astype(np.int32)
    home = tr.slot.astype(np.int64) // slots_per_node
    node = np.zeros(n, np.int32)
    node[(reg == Region.KTEXT) | (reg == Region.KRODATA)] = cls.TEXT
    node[reg == Region.UTEXT] = cls.UTEXT
    node[reg == Region.HYP] = cls.HYP
    kd = reg == Region.KDATA
    node[kd] = cls.khome(home[kd])
    ud = reg == Region.UDATA
    node[ud] = cls.udata(home[ud], tr.q[ud].astype(np.int64))
    tn = np.zeros((n, levels), np.int32)
    tn[img, :] = cls.KTABLE
    tn[kd, 0] = cls.KTABLE
    user = (reg == Region.UTEXT) | ud
    tn[user, :] = cls.home(home[user])[:, None]
    return leaf, cont, glob, asid, node, tn


#: :func:`node_trace`'s latest traces, by their arguments (oldest dropped first): a study
#: runs one trace under several stage-2 setups and TLB reaches in turn, one seed after
#: another, so a few suffice (a published trace of 600 k accesses takes about 20 MB). At
#: most :data:`_NODE_TRACES_BYTES` are kept: a trace larger than that is not kept at all.
_NODE_TRACES: dict = {}
_NODE_TRACES_BYTES = 256 << 20


#: Machine fields the accesses of a node are drawn without (:mod:`kmm.mech.host.workload`
#: never reads them): they set how the accesses are served, not which
_NOT_DRAWN_FROM = ("llc_bytes", "walk_cache_entries", "s2_walk_cache_entries", "ktr_tables",
                   "linear_map")


def _drawn_from(m: Machine) -> Machine:
    """``m`` with the fields a node's accesses are not drawn from at their defaults: two
    machines that differ only in those draw the same accesses (:func:`node_trace`)."""
    d = Machine()
    return replace(m, **{f: getattr(d, f) for f in _NOT_DRAWN_FROM})


def node_trace(w: Workload, m: Machine, run: RunConfig, model: TextModel, node: int,
               trace: "TraceWorkload | None", layout: "TextLayout | None" = None
               ) -> tuple["HostTrace", np.ndarray]:
    """The accesses :func:`simulate_host` runs on ``node``'s CPUs, interleaved
    (:func:`kmm.mech.host.workload._interleave`), and each access's CPU: every CPU's trace
    (:func:`generate_cpu_trace`, or with ``trace`` :func:`trace_cpu_trace`) drawn from
    ``run.seed``. A function of its arguments (``layout`` is ``text_layout(w, m, model,
    run.seed)``), so the latest few are kept and returned again, read-only: a run under
    another stage-2 setup or TLB reach replays the same accesses without drawing them
    again."""
    key = (w, _drawn_from(m), run, model, node, trace)
    try:
        hit = _NODE_TRACES.get(key)
    except TypeError:  # an argument that cannot be a key (never for kmm's own types)
        key, hit = None, None
    if hit is not None:
        _NODE_TRACES[key] = _NODE_TRACES.pop(key)  # most recently used last
        return hit
    if layout is None:
        layout = text_layout(w, m, model, run.seed)
    if trace is None:
        traces = [generate_cpu_trace(w, m, run, layout, node, c, run.seed, model)
                  for c in range(m.cpus_per_node)]
    else:
        traces = [trace_cpu_trace(trace, w, m, run, layout, node, c, run.seed, model)
                  for c in range(m.cpus_per_node)]
    tr, cpu = _interleave(traces)
    for a in (*tr, cpu):
        a.flags.writeable = False
    size = sum(a.nbytes for a in (*tr, cpu))
    if key is not None and size <= _NODE_TRACES_BYTES:
        kept = sum(a.nbytes for t, c in _NODE_TRACES.values() for a in (*t, c))
        while _NODE_TRACES and kept + size > _NODE_TRACES_BYTES:
            t, c = _NODE_TRACES.pop(next(iter(_NODE_TRACES)))
            kept -= sum(a.nbytes for a in (*t, c))
        _NODE_TRACES[key] = (tr, cpu)
    return tr, cpu


#: :func:`simulate_host`'s ``entry_stage2`` default: a TLB entry covers what the walk's own
#: stages allow (the hardware's combined entry).
WALK_REACH = "walk"


def simulate_host(w: Workload, m: Machine, run: RunConfig, *, stage2: Stage2Setup | None = None,
                  model: TextModel = TextModel(), sim_node: int | None = None,
                  replicas_in_llc: int = 1,
                  trace: "TraceWorkload | None" = None,
                  entry_stage2: "Stage2Setup | None | str" = WALK_REACH) -> HostCounts:
    """Run a workload through the full path (:class:`kmm.walk.Path`) on one node's CPUs.

    The node (node 1 by default, node 0 on a one-node machine) has ``m.cpus_per_node``
    CPUs with Neoverse N1 TLBs and private caches (:meth:`kmm.tlb.TLBConfig.neoverse_n1`,
    :class:`kmm.cache.CacheConfig`) sharing an LLC of ``m.llc_bytes``. Stage-1 tables are
    read from the node their placement class resolves to (``TableNode.GIVEN``); with
    ``trace`` the kernel phases replay captured kernel traces (:func:`trace_cpu_trace`); under
    ``stage2`` every walk is 2D and the node walks its own stage-2 tables (class
    ``khome(node)``, which resolves to the node of whichever CPU is charged).

    ``replicas_in_llc`` > 1 is KTR on nodes that share one LLC (sub-NUMA clustering): the
    simulated CPUs stand for that many nodes' CPUs in turn (CPU ``c`` for node ``c %
    replicas_in_llc`` of the group) and each reads its node's copy of text and rodata, at
    its own physical address (copy ``i`` at ``i * ImagePlacement.node_span_bytes`` above
    the boot copy, as :func:`build_kernel_tables` places them): the copies are distinct
    lines competing for the one LLC. Without replication the same CPUs share one copy
    (``replicas_in_llc`` = 1). Counts are charged as the simulated node's either way.

    ``entry_stage2`` separates what a TLB entry covers from the walk that fills it, for
    counterfactual runs: by default (:data:`WALK_REACH`) an entry is the stage-1 leaf no
    larger than ``stage2``'s leaf (the combined entry, Arm ARM D8.12.2); None bounds it by
    the stage-1 leaf alone (a 2D walk that fills 1D-sized entries); a
    :class:`Stage2Setup` bounds it by that setup's stage-2 leaves whatever the walk (with
    ``stage2`` None: 1D walks that fill entries of the combined size).
    """
    g = m.geometry
    cls = Classes(m.nodes, m.ktr_tables)
    k = (1 if m.nodes > 1 else 0) if sim_node is None else check_int(
        "sim_node", sim_node, lo=0, hi=m.nodes - 1)
    layout = text_layout(w, m, model, run.seed)
    image_pt, _ = build_kernel_tables(m.image, g, 1)
    slots_per_node = m.cpus_per_node * m.threads_per_cpu
    geoms = (g,) if stage2 is None else (g, stage2.geometry)
    levels = max(x.levels for x in geoms)
    reach = _entry_reach(stage2, entry_stage2)
    tlb_geoms = geoms if reach in (None, stage2) else (*geoms, reach.geometry)
    tlb = eng.TLBConfig.neoverse_n1(cpus=m.cpus_per_node, seed=run.seed,
                                    walk_cache_entries=m.walk_cache_entries,
                                    s2_walk_cache_entries=m.s2_walk_cache_entries
                                    ).with_geometry(*tlb_geoms)
    caches = eng.CacheConfig(llc=eng.CacheLevelConfig(m.llc_bytes, 16), cpus=m.cpus_per_node,
                         seed=run.seed)
    tr, cpu = node_trace(w, m, run, model, k, trace, layout)
    leaf, cont, glob, asid, node, tn = _path_arrays(tr, m, cls, image_pt, levels,
                                                    slots_per_node)
    copies = check_int("replicas_in_llc", replicas_in_llc, lo=1, hi=m.cpus_per_node)
    kw = dict(kind=tr.kind, pa=replica_pa(tr.pa, tr.region, cpu, copies), leaf_level=leaf,
              cont=cont, asid=asid, cpu=cpu, global_=glob, node=node, table_nid=tn)
    common = dict(tlb=tlb, caches=caches, stage1=g, nodes=cls.count,
                  cpu_nid=(k,) * m.cpus_per_node, table_node=eng.TableNode.GIVEN)
    if stage2 is None:
        cfg = eng.PathConfig(**common)
    else:
        l2, c2 = stage2.leaf(tr.pa, k)
        kw.update(s2_leaf_level=l2, s2_cont=c2)
        # every node walks its own table set: by default a class that resolves to the
        # charged CPU's node (a fixed node id would charge the other nodes' CPUs a remote
        # read); ``table_class`` puts every set where the setup says
        s2_class = cls.khome(k) if stage2.table_class is None else int(stage2.table_class)
        cfg = eng.PathConfig(**common, stage2=stage2.geometry,
                               s2_table_node=eng.TableNode.FIXED,
                               s2_table_fixed_nid=s2_class,
                               s2_table_leaf_level=stage2.table_leaf_level,
                               s2_walk_cache_page_leaves=stage2.walk_cache_page_leaves)
    if reach is not stage2:
        kw["tlb_shift"] = _entry_shifts(g, leaf, cont, reach, tr.pa, k, tlb.honour_cont)
    if stage2 is not None and stage2.path is not None:
        kw["el2"] = tr.region == Region.HYP
        path = stage2.path(cfg)
    else:
        path = eng.Path(cfg)
    split = run.warmup_per_cpu * m.cpus_per_node
    before = None
    for h in (slice(0, split), slice(split, tr.va.size)):
        if h.stop <= h.start:
            continue
        args = {key: v[h] for key, v in kw.items()}
        r = path.run(tr.va[h], **args)
        if h.stop == split:  # the warm-up slice, only when there is one
            before = r
    if before is None:
        zero = np.zeros_like
        mem0, served0, t0, w0 = zero(r.mem_reads), zero(r.served), r.tlb - r.tlb, r.walk - r.walk
    else:
        mem0, served0, t0, w0 = before.mem_reads, before.served, before.tlb, before.walk
    tlbd = r.tlb - t0
    walkd = r.walk - w0
    meas = slice(split, tr.va.size)
    rk, kd = tr.region[meas], tr.kind[meas]
    fetch = kd == 2
    hyp = fetch & (rk == Region.HYP)
    return HostCounts(
        nodes=m.nodes, sim_node=k, classes=cls, mem=r.mem_reads - mem0,
        served=r.served - served0, l2_tlb_hits=int(tlbd.l2_hits), walks=int(walkd.walks),
        walk_refs=int(walkd.refs),
        instructions=int(tr.insns[meas][fetch & (rk != Region.HYP)].sum()),
        hyp_lines=int(hyp.sum()),
        exits=int(tr.insns[meas][hyp].sum()) // max(1, -(-run.hyp_text_bytes // 4)),
        tlb_misses=int(tlbd.misses), ifetch_tlb_misses=int(tlbd.l1i_misses),
        cpus=m.cpus_per_node,
        replicated_lines=int(np.unique(tr.pa[meas][(rk == Region.KTEXT)
                                                   | (rk == Region.KRODATA)] >> np.uint64(6)).size))


def _entry_reach(stage2: Stage2Setup | None, entry_stage2) -> Stage2Setup | None:
    """The stage-2 setup whose leaves bound the TLB entries (:func:`simulate_host`)."""
    if isinstance(entry_stage2, str):
        if entry_stage2 != WALK_REACH:
            raise ConfigError(f"must be {WALK_REACH!r}, None or a Stage2Setup, got "
                              f"{entry_stage2!r}", "entry_stage2")
        return stage2
    if entry_stage2 is not None and not isinstance(entry_stage2, Stage2Setup):
        raise ConfigError("must be a Stage2Setup, None or 'walk'", "entry_stage2")
    return entry_stage2


def _entry_shifts(g: eng.Geometry, leaf, cont, reach: Stage2Setup | None, pa, node: int,
                  honour_cont: bool) -> np.ndarray:
    """Log2 TLB entry size per access: the stage-1 leaf (or contiguous range), no larger
    than ``reach``'s stage-2 leaf as seen from ``node`` (none: the stage-1 leaf alone)."""
    s1 = eng.leaf_shifts(g, leaf)
    c1 = eng.cont_shifts(g, leaf, cont)
    if reach is None:
        return eng.entry_shift(s1, c1, honour_cont=honour_cont)
    l2, c2 = reach.leaf(pa, node)
    g2 = reach.geometry
    return eng.entry_shift(s1, c1, eng.leaf_shifts(g2, l2), eng.cont_shifts(g2, l2, c2),
                           honour_cont)


def replica_pa(pa: np.ndarray, region: np.ndarray, cpu: np.ndarray, copies: int) -> np.ndarray:
    """Physical addresses with text and rodata read from ``copies`` copies: CPU ``c`` reads
    copy ``c % copies``, ``c % copies`` node spans above the boot copy (the layout of
    :func:`build_kernel_tables`); every other access keeps its address."""
    if copies == 1:
        return pa
    rep = (region == Region.KTEXT) | (region == Region.KRODATA)
    span = np.uint64(ImagePlacement().node_span_bytes)
    out = pa.copy()
    out[rep] += (cpu[rep].astype(np.uint64) % np.uint64(copies)) * span
    return out


def pool(counts: list[HostCounts]) -> HostCounts:
    """Counts of several independent runs of one configuration (different seeds) added
    together, as one longer run drawn from every seed."""
    if not counts:
        raise ConfigError("needs at least one run", "counts")
    c0 = counts[0]
    if any(c.nodes != c0.nodes or c.sim_node != c0.sim_node
           or c.classes.ktr_tables != c0.classes.ktr_tables for c in counts):
        raise ConfigError("runs of different machines cannot be pooled", "counts")
    return HostCounts(
        nodes=c0.nodes, sim_node=c0.sim_node, classes=c0.classes,
        mem=sum(c.mem for c in counts), served=sum(c.served for c in counts),
        l2_tlb_hits=sum(c.l2_tlb_hits for c in counts), walks=sum(c.walks for c in counts),
        walk_refs=sum(c.walk_refs for c in counts),
        instructions=sum(c.instructions for c in counts),
        hyp_lines=sum(c.hyp_lines for c in counts), exits=sum(c.exits for c in counts),
        tlb_misses=sum(c.tlb_misses for c in counts),
        ifetch_tlb_misses=sum(c.ifetch_tlb_misses for c in counts),
        cpus=sum(c.cpus for c in counts),
        replicated_lines=max(c.replicated_lines for c in counts))


def simulate_seeds(w: Workload, m: Machine, run: RunConfig, seeds, **kw) -> HostCounts:
    """:func:`simulate_host` once per seed (each draws its own text layout, hot sets and
    schedule), pooled (:func:`pool`): the hot-function draw moves a single run's result."""
    from dataclasses import replace
    return pool([simulate_host(w, m, replace(run, seed=int(sd)), **kw) for sd in seeds])


def _calibrated() -> dict:
    """The calibration's defaults of the core and of the background load."""
    core = eng.neoverse_core()
    return {"dep_ifetch": core.dep_ifetch, "dep_data": core.dep_data,
            "outstanding": core.outstanding,
            "background": eng.memory_system(np.ones((1, 1))).background}


@dataclass(frozen=True)
class HostCosts:
    """Cost parameters that turn counts into time (see the params file for sources).

    The counts are priced by :func:`kmm.timing.solve` (see the README's "Time model"):
    memory latency at its load (the simulated lines plus ``background``, the share of each
    node's peak the cores that are not simulated draw), and a miss's share of its latency
    that the core does not hide from the first-order interval model: walks are dependent
    reads, a fraction ``dep_data`` of data misses and ``dep_ifetch`` of instruction-fetch
    misses are dependent, the rest overlap up to ``outstanding`` reads. Defaults of the
    last four come from ``kmm/data/calibration.yaml``.
    """

    local_ns: float = 81.0
    cpu_ghz: float = 2.5
    cpi_base: float = 1.0
    l2_cycles: float = 11.0
    llc_ns: float = 30.0
    l2_tlb_cycles: float = 5.0
    dep_ifetch: float | None = None
    dep_data: float | None = None
    background: float | None = None
    outstanding: int | None = None

    def __post_init__(self):
        for f in ("local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles"):
            check_float(f, getattr(self, f), lo=0.0)
        cal = None
        for f in ("dep_ifetch", "dep_data", "background", "outstanding"):
            if getattr(self, f) is None:
                cal = _calibrated() if cal is None else cal
                object.__setattr__(self, f, cal[f])
        for f in ("dep_ifetch", "dep_data"):
            check_float(f, getattr(self, f), lo=0.0, hi=1.0)
        check_float("background", self.background, lo=0.0, hi=0.99)
        object.__setattr__(self, "outstanding", check_int("outstanding",
                                                          int(self.outstanding), lo=1))

    def core(self) -> eng.CoreModel:
        return eng.neoverse_core(ghz=self.cpu_ghz, cpi_base=self.cpi_base,
                                 l2_cycles=self.l2_cycles, llc_ns=self.llc_ns,
                                 l2_tlb_cycles=self.l2_tlb_cycles,
                                 outstanding=self.outstanding, dep_ifetch=self.dep_ifetch,
                                 dep_data=self.dep_data)


@dataclass(frozen=True)
class ReplicaCosts:
    """What replication costs beyond patching, each a placement rule or an event rate
    charged through the time model (every field ``assumed``; the params file gives the
    ranges swept). The defaults charge nothing.

    Parameters
    ----------
    module_text_fraction : share of the memory reads of text and rodata that are module
        text and rodata. The RFC copies the image's text and rodata only; module text is
        allocated once (``execmem_alloc``, one node) and stays where it was loaded, on node
        0 here, under every scheme.
    kobj_remote_fraction : share of the reads of a thread's kernel objects (page cache,
        socket buffers, slab: class ``khome``) that are on the next node rather than the
        thread's home (an object allocated by a CPU of another node: a softirq on the NIC's
        node, a page cache page first read elsewhere), under every scheme.
    cold_share : share of thread migrations after which the destination node's copy of
        text and rodata is cold in its LLC (the node had been idle), each reading the run's
        replicated working set (``HostCounts.replicated_lines``) again. A per-node copy is
        read from the node's memory; the single copy of the baseline from the LLC when
        ``llc_nodes`` > 1 (a sibling node sharing the LLC keeps it warm), else from node 0's
        memory.
    migrations_per_kinstr : thread migrations per 1000 instructions of a node (the run's
        ``migration`` probability per time slice over ``slice_instructions``)
    llc_nodes : nodes sharing one LLC (1: an LLC per node; more: sub-NUMA clustering)
    """

    module_text_fraction: float = 0.0
    kobj_remote_fraction: float = 0.0
    cold_share: float = 0.0
    migrations_per_kinstr: float = 0.0
    llc_nodes: int = 1

    def __post_init__(self):
        check_float("module_text_fraction", self.module_text_fraction, lo=0.0, hi=1.0)
        check_float("kobj_remote_fraction", self.kobj_remote_fraction, lo=0.0, hi=1.0)
        check_float("cold_share", self.cold_share, lo=0.0, hi=1.0)
        check_float("migrations_per_kinstr", self.migrations_per_kinstr, lo=0.0, hi=1000.0)
        check_int("llc_nodes", self.llc_nodes, lo=1, hi=64)


def resolved_mem(c: HostCounts, scheme: Scheme, policy: UserPolicy,
                 rc: ReplicaCosts = ReplicaCosts()) -> np.ndarray:
    """``mem[k, source, j]``: the simulated node's memory reads as a CPU of node ``k``
    makes them, each class resolved to its memory node ``j``
    (:meth:`Classes.resolve`), then the placement rules of ``rc``: a share of text and
    rodata reads moved to node 0 (module text), a share of each home's kernel-object reads
    moved to the node after the one they resolved to."""
    reads = c.mem[:, c.sim_node, :].astype(np.float64)              # [source, class]
    n = c.nodes
    cls = c.classes
    out = np.zeros((n, reads.shape[0], n))
    for k in range(n):
        where = cls.resolve(scheme, policy, k, c.sim_node)
        for j in range(n):
            out[k, :, j] = reads[:, where == j].sum(axis=1)
        if rc.module_text_fraction > 0.0:
            moved = reads[:, cls.TEXT] * rc.module_text_fraction
            out[k, :, where[cls.TEXT]] -= moved
            out[k, :, 0] += moved
        if rc.kobj_remote_fraction > 0.0 and n > 1:
            for h in range(n):
                j = where[cls.khome(h)]
                moved = reads[:, cls.khome(h)] * rc.kobj_remote_fraction
                out[k, :, j] -= moved
                out[k, :, (j + 1) % n] += moved
    return out


def cold_replica_lines(c: HostCounts, scheme: Scheme,
                       rc: ReplicaCosts) -> tuple[np.ndarray, np.ndarray]:
    """Instruction-fetch lines that cold copies read again: ``(served[k, level], mem[k,
    j])`` to add to node ``k``'s counts (:class:`ReplicaCosts`). Each node's work of
    ``c.instructions`` sees ``instructions / 1000 * migrations_per_kinstr * cold_share``
    cold copies of ``c.replicated_lines`` lines each, served by the node's own memory under
    KTR and stage-2 replication, by the shared LLC (``llc_nodes`` > 1) or node 0's memory
    without."""
    n = c.nodes
    served = np.zeros((n, eng.SERVED_MEMORY + 1))
    mem = np.zeros((n, n))
    lines = (c.instructions / 1000.0 * rc.migrations_per_kinstr * rc.cold_share
             * c.replicated_lines)
    if lines <= 0.0:
        return served, mem
    for k in range(n):
        if scheme != Scheme.BASELINE:
            served[k, eng.SERVED_MEMORY] += lines
            mem[k, k] += lines
        elif rc.llc_nodes > 1:
            served[k, eng.SERVED_LLC] += lines
        else:
            served[k, eng.SERVED_MEMORY] += lines
            mem[k, 0] += lines
    return served, mem


def time_counts(c: HostCounts, scheme: Scheme, policy: UserPolicy,
                extra_lines=None, rc: ReplicaCosts = ReplicaCosts()) -> eng.TimeCounts:
    """:class:`kmm.timing.Counts` of the whole machine: every node runs the simulated
    node's work (its ``cpus`` simulated CPUs), its reads resolved per node
    (:func:`resolved_mem`, with the placement rules of ``rc``), plus the fetches of cold
    copies (:func:`cold_replica_lines`); ``extra_lines[i, j]``
    lines moved into node ``i`` from ``j`` outside the simulated misses."""
    n = c.nodes
    served = np.broadcast_to(c.served.astype(np.float64), (n,) + c.served.shape).copy()
    mem = resolved_mem(c, scheme, policy, rc)
    cold_served, cold_mem = cold_replica_lines(c, scheme, rc)
    served[:, eng.SOURCE_IFETCH, :] += cold_served
    mem[:, eng.SOURCE_IFETCH, :] += cold_mem
    return eng.TimeCounts(
        instructions=np.full(n, float(c.instructions)), served=served, mem=mem,
        l2_tlb_hits=np.full(n, float(c.l2_tlb_hits)),
        cpus=np.full(n, float(c.cpus)), extra_lines=extra_lines)


def _check_lat(c: HostCounts, latency_ns) -> np.ndarray:
    return eng.check_latency_matrix(latency_ns, c.nodes)


def solve_host(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
               costs: HostCosts = HostCosts(),
               rc: ReplicaCosts = ReplicaCosts(), extra_lines=None) -> eng.TimeResult:
    """:func:`kmm.timing.solve` of the counts on a machine of idle latencies
    ``latency_ns[cpu node, memory node]`` (peak bandwidth from the calibration), with
    the costs of ``rc`` and ``extra_lines`` (:func:`time_counts`)."""
    lat = _check_lat(c, latency_ns)
    ms = eng.memory_system(lat, background=costs.background)
    return eng.solve_time(time_counts(c, scheme, policy, extra_lines, rc), ms, costs.core())


def _shares(r: eng.TimeResult, costs: HostCosts) -> np.ndarray:
    """``[node, source]``: the share of a miss's latency the core does not hide."""
    d = costs.core().dependent()
    return d[None, :] + (1.0 - d[None, :]) / r.mlp[:, None]


def node_times_ns(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                  costs: HostCosts = HostCosts(),
                  rc: ReplicaCosts = ReplicaCosts(), extra_lines=None) -> np.ndarray:
    """Time (ns) of each node's share of the work at the loaded latencies: base CPI, stalls
    on L2 and LLC hits and on memory reads, L2 TLB hits (:func:`solve_host`), plus the
    node's wait when the run is bandwidth bound. Every node runs the simulated node's
    work."""
    r = solve_host(c, latency_ns, scheme, policy, costs, rc, extra_lines)
    wait = (r.wall_ns * c.cpus - r.node_ns).clip(min=0.0) if r.bound == "bandwidth" \
        else np.zeros(c.nodes)
    return r.node_ns + wait


def system_time_ns(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                   costs: HostCosts = HostCosts(),
                   rc: ReplicaCosts = ReplicaCosts(), extra_lines=None) -> float:
    """Time of the whole machine's work; every scheme runs the same instructions, so time
    ratios are throughput ratios."""
    return float(node_times_ns(c, latency_ns, scheme, policy, costs, rc, extra_lines).sum())


def time_breakdown(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                   costs: HostCosts = HostCosts()) -> dict[str, float]:
    """The machine's time (ns) split into base CPI, cache hits, TLB hits, memory reads
    by what was read (replicated lines (text and rodata), the kernel tables KTR
    replicates, other kernel lines and tables, user text, user data and its tables) at the
    loaded latencies, and the bandwidth wait."""
    r = solve_host(c, latency_ns, scheme, policy, costs)
    share = _shares(r, costs)
    cls = c.classes
    n = c.nodes
    core = costs.core()
    hit = np.array([0.0, core.l2_cycles / core.ghz, core.llc_ns, 0.0])
    out = {"base_ns": r.breakdown["base_ns"],
           "cache_hits_ns": float((share * (c.served.astype(np.float64) @ hit)[None, :]).sum()),
           "tlb_hits_ns": r.breakdown["tlb_hits_ns"]}
    groups = {"mem_replicated_ns": [cls.TEXT], "mem_kernel_tables_ns": [cls.KTABLE],
              "mem_kernel_other_ns": list(range(n)) + [cls.khome(h) for h in range(n)],
              "mem_user_text_ns": [cls.UTEXT],
              "mem_hyp_ns": [cls.HYP],
              "mem_user_data_ns": [cls.home(h) for h in range(n)]
              + [cls.udata(h, q) for h in range(n) for q in range(n)]}
    reads = c.mem[:, c.sim_node, :].astype(np.float64)
    for name, idx in groups.items():
        tot = 0.0
        for k in range(n):
            where = cls.resolve(scheme, policy, k, c.sim_node)
            tot += float(share[k] @ (reads[:, idx] @ r.latency_ns[k, where[idx]]))
        out[name] = tot
    out["bandwidth_wait_ns"] = r.breakdown["bandwidth_wait_ns"]
    return out


def source_times_ns(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                    costs: HostCosts = HostCosts()) -> dict[str, float]:
    """Stall time of the whole machine by source (instruction fetch, data, walk: cache hits
    and memory reads at the loaded latencies), of L2 TLB hits and the bandwidth wait,
    without the base CPI."""
    r = solve_host(c, latency_ns, scheme, policy, costs)
    b = r.breakdown
    per = {s: b[f"{s}_l2_ns"] + b[f"{s}_llc_ns"] + b[f"{s}_memory_ns"]
           for s in ("ifetch", "data", "walk")}
    return {"ifetch_ns": per["ifetch"], "data_ns": per["data"], "walk_ns": per["walk"],
            "tlb_hits_ns": b["tlb_hits_ns"], "bandwidth_wait_ns": b["bandwidth_wait_ns"]}


def class_memory_ns(c: HostCounts, latency_ns, cls_index: int, scheme: Scheme,
                    policy: UserPolicy, costs: HostCosts = HostCosts(),
                    source: int = 0) -> np.ndarray:
    """Per node: stall time of memory reads of one class from one source (default
    instruction fetches) at the loaded latencies of the whole run."""
    r = solve_host(c, latency_ns, scheme, policy, costs)
    share = _shares(r, costs)
    n_reads = float(c.mem[source, c.sim_node, cls_index])
    return np.array([share[k, source] * n_reads * r.latency_ns[
        k, c.classes.resolve(scheme, policy, k, c.sim_node)[cls_index]]
        for k in range(c.nodes)])


# Imported last: these modules build on the definitions above.
from .workload import (_interleave, generate_cpu_trace, HostTrace, text_layout, trace_cpu_trace,
    TraceWorkload)
