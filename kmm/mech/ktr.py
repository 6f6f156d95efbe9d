"""arm64 kernel text replication (KTR): per-node copies of kernel text and rodata.

The design modelled is the "arm64 kernel text replication" RFC (2023): the kernel image is
placed in a VA range covered by one top-level (level 0 with 4K/48-bit) kernel table entry
that no other mapping shares; every node gets its own top-level kernel table whose entry for
that range points to node-local lower tables mapping a node-local copy of text and rodata,
while read-write data (and every other top-level entry) stays shared. A CPU translates the
same kernel VA through its node's top-level table, so a migrated thread keeps its VA and
fetches from the new node's copy.

The module holds three parts:

- memory (claim K5): bytes of the copies plus the per-node tables, counted from page tables
  built with :mod:`kmm.pagetable` (``PageTable.replicate``) and, independently, by window
  arithmetic on the image layout (:func:`replication_bytes_formula`);
- text patching (claim K4): ``aarch64_insn_patch_text_nosync`` writes each instruction
  through the ``FIX_TEXT_POKE0`` fixmap slot and cleans/invalidates it to the point of
  unification (arch/arm64/kernel/patching.c); with replication every copy gets the write
  and the cache maintenance; ``aarch64_insn_patch_text`` does it inside ``stop_machine``
  so every online CPU waits for the whole patch;
- performance (claims K1-K3): kernel/user phase mixes (:data:`WORKLOADS`) whose text comes
  from :func:`kmm.workloads.code_image`/``instruction_stream``, run through the full path
  (:class:`kmm.walk.Path`: TLBs, walks, caches, NUMA memory) on one node's CPUs; every line
  carries a placement class (:class:`Classes`) resolved to a node only when counts are
  charged, so one run gives the baseline, KTR and stage-2 replication under every user
  placement, and every node's time (nodes are interchangeable but for what is fixed on
  node 0). Time is a formula over the counts (:func:`node_times_ns`).

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
from typing import NamedTuple

import numpy as np

from .. import engine as eng
from ..config import check_float, check_int
from ..engine import PageTable, Perm, Replicated, Topology
from ..errors import ConfigError

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


def build_kernel_tables(image: KernelImage, g: eng.Geometry, nodes: int,
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

    def __post_init__(self):
        check_int("nodes", self.nodes, lo=1, hi=16)
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


class Classes:
    """Placement classes of lines and tables for ``nodes`` nodes.

    ``0..nodes-1`` a fixed node; ``TEXT`` replicated text and rodata; ``KTABLE`` kernel
    stage-1 tables that KTR replicates (the top level and the image subtree); ``UTEXT``
    user text (page cache of the binary, on node 0 where it was first read); ``HYP`` EL2
    text (one copy, node 0); ``khome(h)``
    kernel objects of a thread of home ``h`` and ``home(h)`` its page tables (both on that
    node); ``udata(h, q)`` a user page of a thread of home ``h`` whose interleave node is
    ``q``.
    """

    def __init__(self, nodes: int):
        self.nodes = nodes
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
        out[self.KTABLE] = cpu_node if scheme == Scheme.KTR else 0
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


class HostTrace(NamedTuple):
    """One simulated CPU's accesses in program order. A fetch access stands for the run of
    ``insns`` consecutive instructions fetched from its line (the repeats hit the L1 I-cache
    and L1 I-TLB and change nothing else); data accesses have ``insns`` 0."""

    va: np.ndarray      # uint64
    pa: np.ndarray      # uint64
    kind: np.ndarray    # uint8 kmm.tlb.Kind
    region: np.ndarray  # uint8 Region
    slot: np.ndarray    # int32 thread slot (home node = slot // slots per node)
    q: np.ndarray       # int16 interleave node of a user page
    insns: np.ndarray   # int32 instructions a fetch access stands for


class TextLayout(NamedTuple):
    """Code images of kernel and user text (:func:`kmm.workloads.code_image`) and the hot
    lines of rodata and image data, shared by every CPU of a run."""

    kernel: object
    user: object
    rodata_lines: np.ndarray
    kshared_lines: np.ndarray


def _image(n_bytes: int, base: int, hot: int, alpha: float, model: TextModel, seed: int):
    """A code image filling ``n_bytes`` whose popularity is Zipf(``alpha``) over ``hot``
    functions picked at random (every other function is never called)."""
    mean = model.median_bytes * np.exp(model.sigma ** 2 / 2) + model.align_bytes / 2
    n = max(hot, int(0.95 * n_bytes / mean))
    img = eng.code_image(n, seed, base=base, median_bytes=float(model.median_bytes),
                               sigma=model.sigma, align_bytes=model.align_bytes, alpha=alpha)
    end = (img.start - np.uint64(base)).astype(np.int64) + img.size_bytes
    keep = int(np.searchsorted(end, n_bytes, side="right"))
    if keep < hot:
        raise ConfigError(f"{hot} hot functions do not fit in {n_bytes} bytes of text",
                          "kernel_hot_funcs")
    pop = img.popularity[:keep].copy()
    pop[np.argsort(-pop)[hot:]] = 0.0
    return eng.CodeImage(img.start[:keep], img.size_bytes[:keep], pop / pop.sum(),
                               {**img.meta, "functions": keep, "hot": hot})


def _stream(image, n: int, seed: int, model: TextModel, global_: bool = True) -> np.ndarray:
    """``n`` fetch addresses from :func:`kmm.workloads.instruction_stream`.

    Adapter: that generator raises IndexError when the runs it draws, once cut at function
    ends, add up to fewer than ``n`` instructions; the draw is then repeated with the next
    seed, and after a few failures the request is split in halves."""
    for k in range(4):
        try:
            return eng.instruction_stream(image, n, seed + k, model.mean_run_insns,
                                                model.branch_fraction, global_=global_).address
        except IndexError:
            continue
    if n < 2:
        raise ConfigError("the instruction stream generator failed repeatedly", "text")
    half = n // 2
    return np.concatenate([_stream(image, half, seed + 101, model, global_),
                           _stream(image, n - half, seed + 202, model, global_)])


def text_layout(w: Workload, m: Machine, model: TextModel, seed: int) -> TextLayout:
    """Kernel text (the text segment of the image, at its kernel VA) and user text as code
    images, and the hot lines of rodata and of the image's read-write data."""
    g = m.geometry
    img = m.image
    va_img = KERNEL_VA_BASE + ImagePlacement().image_va(g)
    kernel = _image(_round_up(img.text_bytes, SEGMENT_ALIGN_BYTES), va_img, w.kernel_hot_funcs,
                    w.kernel_zipf, model, seed)
    user = _image(model.user_text_bytes, USER_TEXT_VA, w.user_hot_funcs, w.user_zipf, model,
                  seed + 1)
    rng = np.random.default_rng([seed, 2])
    ro_all = max(1, img.rodata_bytes // 64)
    sh_all = max(1, img.rw_bytes // 64)
    ro_hot = rng.permutation(ro_all)[:max(1, min(ro_all, w.rodata_hot_bytes // 64))]
    sh_hot = rng.permutation(sh_all)[:max(1, min(sh_all, w.kshared_hot_bytes // 64))]
    return TextLayout(kernel, user, ro_hot, sh_hot)


def generate_cpu_trace(w: Workload, m: Machine, run: RunConfig, layout: TextLayout,
                       node: int, cpu: int, seed: int, model: TextModel = TextModel()
                       ) -> HostTrace:
    """Accesses of one CPU.

    Kernel entries of ``kernel_entry_insns`` instructions alternate with user phases sized
    so that the kernel executes ``kernel_fraction`` of the instructions; each phase takes
    the next instructions of its text's stream (:func:`kmm.workloads.instruction_stream`:
    sequential runs ending in branches, calls and returns by popularity); instructions
    issue data accesses at their phase's rate; time slices pick the running thread (one of
    this CPU's own with probability ``1 - migration``, else one whose home is another
    node); exits to EL2 run through the hypervisor text.
    """
    rng = np.random.default_rng([seed, node, cpu])
    img = m.image
    g = m.geometry
    segs = img.segments()
    va_img = KERNEL_VA_BASE + ImagePlacement().image_va(g)
    pa_img = ImagePlacement().pa_bytes
    rodata_off = segs[0][1]
    rw_off = sum(size for _o, size, _p, rep in segs if rep)
    per_node = m.cpus_per_node * m.threads_per_cpu
    target = run.accesses_per_cpu + run.warmup_per_cpu
    kd_rate = w.kdata_apki / 1000.0
    ud_rate = w.udata_apki / 1000.0
    k_len = w.kernel_entry_insns
    u_len = k_len * (1.0 - w.kernel_fraction) / w.kernel_fraction
    hyp_insns = -(-run.hyp_text_bytes // 4)
    n_insns = int(target / 0.3) + 4 * (k_len + int(u_len))
    while True:
        n_phases = max(2, int(n_insns / (k_len + u_len)) + 1)
        ulens = np.floor(u_len + rng.random(n_phases)).astype(np.int64)
        lens = np.column_stack([np.full(n_phases, k_len), ulens]).ravel()
        mode = np.repeat(np.tile(np.array([1, 0], np.int8), n_phases), lens)
        nk = int((mode == 1).sum())
        ia = np.empty(mode.size, np.uint64)
        s_k, s_u = (int(x) for x in rng.integers(0, 2**31, 2))
        ia[mode == 1] = _stream(layout.kernel, nk, s_k, model)
        ia[mode == 0] = _stream(layout.user, mode.size - nk, s_u, model, global_=False)
        if run.exits_per_kinstr > 0:
            ends = np.cumsum(lens)
            n_ex = rng.poisson(run.exits_per_kinstr * lens / 1000.0)
            where = np.repeat(ends, n_ex * hyp_insns)
            hyp_addr = np.tile(np.uint64(HYP_VA_BASE) + np.arange(hyp_insns, dtype=np.uint64)
                               * np.uint64(4), int(n_ex.sum()))
            ia = np.insert(ia, where, hyp_addr)
            mode = np.insert(mode, where, np.int8(2))
        line = ia >> np.uint64(6)
        fetch = np.ones(ia.size, bool)
        fetch[1:] = (line[1:] != line[:-1]) | (mode[1:] != mode[:-1])
        rate = np.where(mode == 1, kd_rate, np.where(mode == 0, ud_rate, 0.0))
        data = np.diff(np.concatenate([[0], np.floor(np.cumsum(rate) + 1e-9).astype(
            np.int64)])).astype(bool)
        per = fetch.astype(np.int64) + data
        n_events = int(per.sum())
        if n_events >= target:
            break
        n_insns = int(n_insns * 1.3 * target / max(n_events, 1)) + 1000
    # time slices (of workload instructions): the running thread's slot
    work = mode != 2
    wcount = np.cumsum(work) - work
    n_slices = int(wcount[-1] // run.slice_instructions) + 1
    # a share ``migration`` of slices, evenly spread from a random phase (a stratified
    # draw: the share is exact in every window, which random draws are not in short runs)
    x = np.arange(n_slices) * run.migration + rng.random()
    mig = np.floor(x) != np.floor(x - run.migration)
    home = np.full(n_slices, node, np.int64)
    if m.nodes > 1:
        other = rng.integers(0, m.nodes - 1, n_slices)
        home = np.where(mig, other + (other >= node), home)
    tcpu = np.where(mig, rng.integers(0, m.cpus_per_node, n_slices), cpu)
    slot_of_slice = home * per_node + tcpu * m.threads_per_cpu + rng.integers(
        0, m.threads_per_cpu, n_slices)
    islot = slot_of_slice[wcount // run.slice_instructions]
    start = np.cumsum(per) - per
    va = np.empty(n_events, np.uint64)
    pa = np.empty(n_events, np.uint64)
    kind = np.zeros(n_events, np.uint8)
    region = np.empty(n_events, np.uint8)
    slot = np.empty(n_events, np.int32)
    q = np.zeros(n_events, np.int16)
    insns = np.zeros(n_events, np.int32)
    fi = np.flatnonzero(fetch)
    fpos = start[fi]
    kind[fpos] = 2
    slot[fpos] = islot[fi]
    insns[fpos] = np.diff(np.concatenate([fi, [ia.size]]))
    faddr = ia[fi] & ~np.uint64(63)
    fmode = mode[fi]
    for mcode, reg, vbase, pbase in ((1, Region.KTEXT, va_img, pa_img),
                                     (0, Region.UTEXT, USER_TEXT_VA, UTEXT_PA),
                                     (2, Region.HYP, HYP_VA_BASE, HYP_PA)):
        sel = fmode == mcode
        pos = fpos[sel]
        region[pos] = reg
        va[pos] = faddr[sel]
        pa[pos] = faddr[sel] - np.uint64(vbase) + np.uint64(pbase)
    di = np.flatnonzero(data)
    dpos = start[di] + fetch[di]
    dmode = mode[di]
    dslot = islot[di].astype(np.int64)
    slot[dpos] = dslot
    u = rng.random(dpos.size)
    v = rng.random(dpos.size)
    kdm = dmode == 1
    ro = kdm & (u < w.rodata_fraction)
    sh = kdm & (u >= w.rodata_fraction) & (u < w.rodata_fraction + w.kshared_fraction)
    ko = kdm & ~ro & ~sh
    for sel, reg, lines, seg_off in ((ro, Region.KRODATA, layout.rodata_lines, rodata_off),
                                     (sh, Region.KSHARED, layout.kshared_lines, rw_off)):
        off = seg_off + lines[eng.zipf_ranks(int(sel.sum()), lines.size, 1.0, rng)] * 64
        region[dpos[sel]] = reg
        va[dpos[sel]] = np.uint64(va_img) + off.astype(np.uint64)
        pa[dpos[sel]] = (pa_img + off).astype(np.uint64)
    ko_pa = KDATA_PA + dslot[ko] * SLOT_SPAN_BYTES + (v[ko] * (w.kdata_bytes // 64)).astype(
        np.int64) * 64
    region[dpos[ko]] = Region.KDATA
    pa[dpos[ko]] = ko_pa.astype(np.uint64)
    va[dpos[ko]] = np.uint64(LINEAR_VA_BASE) + ko_pa.astype(np.uint64)
    ud = dmode == 0
    span = np.where(u < w.udata_hot_fraction, w.udata_hot_bytes, w.udata_bytes) // 64
    uoff = (v * span).astype(np.int64)[ud] * 64
    region[dpos[ud]] = Region.UDATA
    va[dpos[ud]] = (USER_DATA_VA + dslot[ud] * SLOT_SPAN_BYTES + uoff).astype(np.uint64)
    pa[dpos[ud]] = (UDATA_PA + dslot[ud] * SLOT_SPAN_BYTES + uoff).astype(np.uint64)
    q[dpos[ud]] = ((uoff >> 12) % m.nodes).astype(np.int16)
    cut = slice(0, target)
    return HostTrace(va[cut], pa[cut], kind[cut], region[cut], slot[cut], q[cut], insns[cut])


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


@dataclass
class HostCounts:
    """Measured counts of one simulated node (after warm-up).

    ``mem[source, cpu_node, class]`` memory reads, ``served[source, level]`` the level that
    supplied each access, ``l2_tlb_hits``, ``walks``, ``walk_refs``, ``instructions`` (16
    per fetched line of kernel and user text), ``hyp_lines`` and ``exits``. Every node of
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


def _interleave(traces: list[HostTrace], chunk: int = 256) -> tuple[HostTrace, np.ndarray]:
    """Round-robin chunks of the CPUs' traces (the CPUs of a node share its LLC)."""
    n = min(t.va.size for t in traces)
    k = len(traces)
    pos = np.arange(n)
    blk = pos // chunk
    # access i of CPU c goes to slot (block, c, offset in block)
    order = np.lexsort((np.tile(pos % chunk, k), np.repeat(np.arange(k), n),
                        np.tile(blk, k)))
    cpu = np.repeat(np.arange(k, dtype=np.int32), n)[order]
    merged = HostTrace(*[np.concatenate([getattr(t, f)[:n] for t in traces])[order]
                         for f in HostTrace._fields])
    return merged, cpu


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


def simulate_host(w: Workload, m: Machine, run: RunConfig, *, stage2: Stage2Setup | None = None,
                  model: TextModel = TextModel(), sim_node: int | None = None) -> HostCounts:
    """Run a workload through the full path (:class:`kmm.walk.Path`) on one node's CPUs.

    The node (node 1 by default, node 0 on a one-node machine) has ``m.cpus_per_node``
    CPUs with Neoverse N1 TLBs and private caches (:meth:`kmm.tlb.TLBConfig.neoverse_n1`,
    :class:`kmm.cache.CacheConfig`) sharing an LLC of ``m.llc_bytes``. Stage-1 tables are
    read from the node their placement class resolves to (``TableNode.GIVEN``); under
    ``stage2`` every walk is 2D and the node walks its own stage-2 tables (class
    ``khome(node)``, which resolves to the node of whichever CPU is charged).
    """
    g = m.geometry
    cls = Classes(m.nodes)
    k = (1 if m.nodes > 1 else 0) if sim_node is None else check_int(
        "sim_node", sim_node, lo=0, hi=m.nodes - 1)
    layout = text_layout(w, m, model, run.seed)
    image_pt, _ = build_kernel_tables(m.image, g, 1)
    slots_per_node = m.cpus_per_node * m.threads_per_cpu
    geoms = (g,) if stage2 is None else (g, stage2.geometry)
    levels = max(x.levels for x in geoms)
    tlb = eng.TLBConfig.neoverse_n1(cpus=m.cpus_per_node, seed=run.seed).with_geometry(*geoms)
    caches = eng.CacheConfig(llc=eng.CacheLevelConfig(m.llc_bytes, 16), cpus=m.cpus_per_node,
                         seed=run.seed)
    traces = [generate_cpu_trace(w, m, run, layout, k, c, run.seed, model)
              for c in range(m.cpus_per_node)]
    tr, cpu = _interleave(traces)
    leaf, cont, glob, asid, node, tn = _path_arrays(tr, m, cls, image_pt, levels,
                                                    slots_per_node)
    kw = dict(kind=tr.kind, pa=tr.pa, leaf_level=leaf, cont=cont, asid=asid, cpu=cpu,
              global_=glob, node=node, table_nid=tn)
    common = dict(tlb=tlb, caches=caches, stage1=g, nodes=cls.count,
                  cpu_nid=(k,) * m.cpus_per_node, table_node=eng.TableNode.GIVEN)
    if stage2 is None:
        cfg = eng.PathConfig(**common)
    else:
        l2, c2 = stage2.leaf(tr.pa, k)
        kw.update(s2_leaf_level=l2, s2_cont=c2)
        # every node walks its own table set: a class that resolves to the charged CPU's
        # node (a fixed node id would charge the other nodes' CPUs a remote read)
        cfg = eng.PathConfig(**common, stage2=stage2.geometry,
                               s2_table_node=eng.TableNode.FIXED,
                               s2_table_fixed_nid=cls.khome(k),
                               s2_table_leaf_level=stage2.table_leaf_level)
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
        if h.start == 0:
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
        tlb_misses=int(tlbd.misses), ifetch_tlb_misses=int(tlbd.l1i_misses))


def pool(counts: list[HostCounts]) -> HostCounts:
    """Counts of several independent runs of one configuration (different seeds) added
    together, as one longer run drawn from every seed."""
    if not counts:
        raise ConfigError("needs at least one run", "counts")
    c0 = counts[0]
    if any(c.nodes != c0.nodes or c.sim_node != c0.sim_node for c in counts):
        raise ConfigError("runs of different machines cannot be pooled", "counts")
    return HostCounts(
        nodes=c0.nodes, sim_node=c0.sim_node, classes=c0.classes,
        mem=sum(c.mem for c in counts), served=sum(c.served for c in counts),
        l2_tlb_hits=sum(c.l2_tlb_hits for c in counts), walks=sum(c.walks for c in counts),
        walk_refs=sum(c.walk_refs for c in counts),
        instructions=sum(c.instructions for c in counts),
        hyp_lines=sum(c.hyp_lines for c in counts), exits=sum(c.exits for c in counts),
        tlb_misses=sum(c.tlb_misses for c in counts),
        ifetch_tlb_misses=sum(c.ifetch_tlb_misses for c in counts))


def simulate_seeds(w: Workload, m: Machine, run: RunConfig, seeds, **kw) -> HostCounts:
    """:func:`simulate_host` once per seed (each draws its own text layout, hot sets and
    schedule), pooled (:func:`pool`): the hot-function draw moves a single run's result."""
    from dataclasses import replace
    return pool([simulate_host(w, m, replace(run, seed=int(sd)), **kw) for sd in seeds])


@dataclass(frozen=True)
class HostCosts:
    """Cost parameters that turn counts into time (see the params file for sources).

    ``stall_*`` is the share of a miss's latency the core does not hide: instruction
    fetch misses stall the front end once fetch-ahead runs dry, data misses overlap with
    each other (memory-level parallelism), walks are dependent reads.
    """

    local_ns: float = 81.0
    cpu_ghz: float = 2.5
    cpi_base: float = 1.0
    l2_cycles: float = 11.0
    llc_ns: float = 30.0
    l2_tlb_cycles: float = 5.0
    stall_ifetch: float = 0.7
    stall_data: float = 0.4
    stall_walk: float = 1.0

    def __post_init__(self):
        for f in ("local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles"):
            check_float(f, getattr(self, f), lo=0.0)
        for f in ("stall_ifetch", "stall_data", "stall_walk"):
            check_float(f, getattr(self, f), lo=0.0, hi=1.0)

    def stall(self) -> np.ndarray:
        return np.array([self.stall_ifetch, self.stall_data, self.stall_walk])


def node_times_ns(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                  costs: HostCosts = HostCosts()) -> np.ndarray:
    """Time (ns) of each node's share of the work: base CPI, stalls on L2 and LLC hits and
    on memory reads charged at ``latency_ns[cpu node, node of the line's class]``, and L2
    TLB hits. Every node runs the simulated node's work."""
    lat = np.asarray(latency_ns, dtype=np.float64)
    if lat.shape != (c.nodes, c.nodes):
        raise ConfigError(f"needs a {c.nodes}x{c.nodes} latency matrix, got {lat.shape}",
                          "latency_ns")
    st = costs.stall()
    hit = np.array([0.0, costs.l2_cycles / costs.cpu_ghz, costs.llc_ns, 0.0])
    fixed = (c.instructions * costs.cpi_base / costs.cpu_ghz
             + float(st @ (c.served.astype(np.float64) @ hit))
             + c.l2_tlb_hits * costs.l2_tlb_cycles / costs.cpu_ghz)
    reads = c.mem[:, c.sim_node, :].astype(np.float64)  # [source, class]
    out = np.empty(c.nodes)
    for k in range(c.nodes):
        where = c.classes.resolve(scheme, policy, k, c.sim_node)
        out[k] = fixed + float(st @ (reads @ lat[k, where]))
    return out


def system_time_ns(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                   costs: HostCosts = HostCosts()) -> float:
    """Time of the whole machine's work; every scheme runs the same instructions, so time
    ratios are throughput ratios."""
    return float(node_times_ns(c, latency_ns, scheme, policy, costs).sum())



def time_breakdown(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                   costs: HostCosts = HostCosts()) -> dict[str, float]:
    """The machine's time (ns) split into base CPI, cache hits, TLB hits and memory reads
    by what was read: replicated lines (text and rodata), the kernel tables KTR replicates,
    other kernel lines and tables, user text, user data and its tables."""
    lat = np.asarray(latency_ns, dtype=np.float64)
    st = costs.stall()
    cls = c.classes
    hit = np.array([0.0, costs.l2_cycles / costs.cpu_ghz, costs.llc_ns, 0.0])
    n = c.nodes
    out = {"base_ns": n * c.instructions * costs.cpi_base / costs.cpu_ghz,
           "cache_hits_ns": n * float(st @ (c.served.astype(np.float64) @ hit)),
           "tlb_hits_ns": n * c.l2_tlb_hits * costs.l2_tlb_cycles / costs.cpu_ghz}
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
            tot += float(st @ (reads[:, idx] @ lat[k, where[idx]]))
        out[name] = tot
    return out


def source_times_ns(c: HostCounts, latency_ns, scheme: Scheme, policy: UserPolicy,
                    costs: HostCosts = HostCosts()) -> dict[str, float]:
    """Stall time of the whole machine by source (instruction fetch, data, walk) and of L2
    TLB hits, without the base CPI."""
    lat = np.asarray(latency_ns, dtype=np.float64)
    st = costs.stall()
    hit = np.array([0.0, costs.l2_cycles / costs.cpu_ghz, costs.llc_ns, 0.0])
    reads = c.mem[:, c.sim_node, :].astype(np.float64)
    per_src = c.nodes * st * (c.served.astype(np.float64) @ hit)
    for k in range(c.nodes):
        where = c.classes.resolve(scheme, policy, k, c.sim_node)
        per_src = per_src + st * (reads @ lat[k, where])
    return {"ifetch_ns": float(per_src[0]), "data_ns": float(per_src[1]),
            "walk_ns": float(per_src[2]),
            "tlb_hits_ns": c.nodes * c.l2_tlb_hits * costs.l2_tlb_cycles / costs.cpu_ghz}


def class_memory_ns(c: HostCounts, latency_ns, cls_index: int, scheme: Scheme,
                    policy: UserPolicy, costs: HostCosts = HostCosts(),
                    source: int = 0) -> np.ndarray:
    """Per node: stall time of memory reads of one class from one source (default
    instruction fetches)."""
    lat = np.asarray(latency_ns, dtype=np.float64)
    n_reads = float(c.mem[source, c.sim_node, cls_index])
    st = costs.stall()[source]
    return np.array([st * n_reads * lat[k, c.classes.resolve(scheme, policy, k,
                                                              c.sim_node)[cls_index]]
                     for k in range(c.nodes)])


# ---- notebook API ------------------------------------------------------------------------------
# The notebook passes its parameters cell as a dict (``params_from(globals())``); everything it
# shows is computed here.

NOTEBOOK_KEYS = (
    "seed", "seeds", "workloads", "k1_workload", "node_counts", "ratios", "remote_ratio", "k1_ratios",
    "local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles", "stall_ifetch",
    "stall_data", "stall_walk", "stall_ifetch_range", "stall_data_range", "llc_bytes",
    "llc_sweep_bytes", "kernel_fraction_sweep", "migration", "migration_sweep",
    "cpus_per_node", "cores_per_node", "accesses_per_cpu", "warmup_per_cpu",
    "baseline_user_policy", "text_bytes", "rodata_bytes", "rodata_range_bytes", "geometries",
    "patch_sites", "fixmap_ns", "cmo_ns", "sync_ns", "patch_sync", "patches_per_s",
    "patch_rates", "cpi_base_range", "llc_ns_range", "l2_tlb_cycles_range", "stall_walk_range",
    "cpu_ghz_range")

_POLICY = {"local": UserPolicy.LOCAL, "interleave": UserPolicy.INTERLEAVE,
           "remote": UserPolicy.REMOTE, "node0": UserPolicy.NODE0}


def params_from(ns: dict) -> dict:
    """The notebook's parameters (the names of :data:`NOTEBOOK_KEYS` found in ``ns``)."""
    missing = [k for k in NOTEBOOK_KEYS if k not in ns]
    if missing:
        raise ConfigError(f"the parameters cell lacks {', '.join(missing)}", "notebook")
    p = {k: ns[k] for k in NOTEBOOK_KEYS}
    if p["baseline_user_policy"] not in _POLICY:
        raise ConfigError(f"must be one of {', '.join(_POLICY)}", "baseline_user_policy")
    if p["k1_workload"] not in WORKLOADS or any(w not in WORKLOADS for w in p["workloads"]):
        raise ConfigError(f"workloads are {', '.join(WORKLOADS)}", "workloads")
    if 2 not in p["node_counts"]:
        raise ConfigError("node_counts must include 2 (the claims' machine)", "node_counts")
    return p


def host_costs(p: dict, **over) -> HostCosts:
    keys = ("local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles",
            "stall_ifetch", "stall_data", "stall_walk")
    return HostCosts(**{k: float(over.get(k, p[k])) for k in keys})


def image_of(p: dict) -> KernelImage:
    return KernelImage(text_bytes=p["text_bytes"], rodata_bytes=p["rodata_bytes"])


def machine_of(p: dict, nodes: int = 2, llc_bytes: int | None = None) -> Machine:
    return Machine(nodes=nodes, cpus_per_node=p["cpus_per_node"],
                   llc_bytes=p["llc_bytes"] if llc_bytes is None else llc_bytes,
                   image=image_of(p))


def run_of(p: dict, migration: float | None = None) -> RunConfig:
    return RunConfig(accesses_per_cpu=p["accesses_per_cpu"], warmup_per_cpu=p["warmup_per_cpu"],
                     migration=p["migration"] if migration is None else migration,
                     seed=p["seed"])


def patch_cost_of(p: dict) -> PatchCost:
    sync = {"stop_machine": PatchSync.STOP_MACHINE, "nosync": PatchSync.NOSYNC}[p["patch_sync"]]
    return PatchCost(sites=p["patch_sites"], fixmap_ns=p["fixmap_ns"], cmo_ns=p["cmo_ns"],
                     sync_ns=p["sync_ns"], sync=sync)


def simulate_all(p: dict) -> dict:
    """Every simulation the notebook charges, each pooled over ``seeds``: the workloads on
    2 nodes, the K1 workload on every node count, over the LLC and kernel-fraction sweep
    and the migration sweep. Keys: ``("workload", name)``, ``("nodes", n)``, ``("sweep",
    llc_bytes, kernel_fraction)``, ``("migration", m)``."""
    runs = {}
    base_w = WORKLOADS[p["k1_workload"]]
    seeds = p["seeds"]

    def sim(w, mach, run):
        return simulate_seeds(w, mach, run, seeds)

    for name in p["workloads"]:
        runs[("workload", name)] = sim(WORKLOADS[name], machine_of(p), run_of(p))
    db = runs.get(("workload", p["k1_workload"])) or sim(base_w, machine_of(p), run_of(p))
    for n in p["node_counts"]:
        runs[("nodes", n)] = db if n == 2 else sim(base_w, machine_of(p, n), run_of(p))
    for llc in p["llc_sweep_bytes"]:
        for kf in p["kernel_fraction_sweep"]:
            same = llc == p["llc_bytes"] and kf == base_w.kernel_fraction
            runs[("sweep", llc, kf)] = db if same else sim(
                base_w.with_(kernel_fraction=kf), machine_of(p, 2, llc), run_of(p))
    for mg in p["migration_sweep"]:
        runs[("migration", mg)] = db if mg == p["migration"] else sim(
            base_w, machine_of(p), run_of(p, mg))
    return runs


def _latency(nodes: int, local_ns: float, ratio: float) -> np.ndarray:
    return np.asarray(eng.generic(nodes, local_ns, ratio).latency_ns)


def gain(c: HostCounts, p: dict, ratio: float, *, base_policy: UserPolicy,
         new_policy: UserPolicy, scheme: Scheme = Scheme.KTR, costs: HostCosts | None = None,
         patches_per_s: float | None = None) -> float:
    """Throughput gain of ``scheme`` with user data under ``new_policy`` over the baseline
    (no replication, user data under ``base_policy``) for the same work, at a flat
    remote/local ``ratio``. Both sides pay their patching at ``patches_per_s``: one copy
    without replication, one per node with it (:func:`patch_overhead_fraction`)."""
    from .. import metrics
    costs = costs or host_costs(p)
    lat = _latency(c.nodes, costs.local_ns, ratio)
    t_base = system_time_ns(c, lat, Scheme.BASELINE, base_policy, costs)
    t_new = system_time_ns(c, lat, scheme, new_policy, costs)
    rate = p["patches_per_s"] if patches_per_s is None else patches_per_s
    topo = eng.generic(c.nodes, costs.local_ns, ratio, cpus_per_node=p["cores_per_node"])
    cost = patch_cost_of(p)
    f_base = patch_overhead_fraction(topo, 1, rate, cost)
    f_new = patch_overhead_fraction(topo, c.nodes if scheme == Scheme.KTR else 1, rate, cost)
    return metrics.gain(t_base / (1.0 - f_base), t_new / (1.0 - f_new))


def _rows(scenario, params, seed, metrics_):
    from .. import results
    return results.rows_for(scenario, params, seed, metrics_)


def gain_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """KTR's gain against the ratio: per workload on 2 nodes, and per node count for the K1
    workload (user data under the baseline policy on both sides)."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    rows = []
    for name in p["workloads"]:
        for r in p["ratios"]:
            rows.append({"workload": name, "nodes": 2, "ratio": float(r),
                         "gain": gain(runs[("workload", name)], p, r, base_policy=bp,
                                      new_policy=bp)})
    for n in p["node_counts"]:
        if n == 2:
            continue
        for r in p["ratios"]:
            rows.append({"workload": p["k1_workload"], "nodes": n, "ratio": float(r),
                         "gain": gain(runs[("nodes", n)], p, r, base_policy=bp, new_policy=bp)})
    return pl.DataFrame(rows)


def user_numa_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """The K1 workload on every node count: KTR with user data made local, against
    baselines with user data local, interleaved, on the next node or all on node 0."""
    import polars as pl
    rows = []
    for n in p["node_counts"]:
        c = runs[("nodes", n)]
        for bname, bp in _POLICY.items():
            for r in p["ratios"]:
                rows.append({"nodes": n, "baseline_user": bname, "ratio": float(r),
                             "ktr_only": gain(c, p, r, base_policy=bp, new_policy=bp),
                             "ktr_local_user": gain(c, p, r, base_policy=bp,
                                                    new_policy=UserPolicy.LOCAL),
                             "local_user_only": gain(c, p, r, base_policy=bp,
                                                     new_policy=UserPolicy.LOCAL,
                                                     scheme=Scheme.BASELINE)})
    return pl.DataFrame(rows)


def k1_sweep(p: dict, runs: dict, *, combined: bool = False) -> list[dict]:
    """The joint sweep of the ``assumed`` parameters the K1 (``combined``: K2) value depends
    on: LLC capacity and kernel share (simulated), instruction-fetch and data stall shares
    (charged) and the sourced range of cross-socket ratios."""
    bp = _POLICY[p["baseline_user_policy"]]
    newp = UserPolicy.LOCAL if combined else bp
    out = []
    lo_i, hi_i = p["stall_ifetch_range"]
    lo_d, hi_d = p["stall_data_range"]
    for llc in p["llc_sweep_bytes"]:
        for kf in p["kernel_fraction_sweep"]:
            c = runs[("sweep", llc, kf)]
            for si in sorted({lo_i, p["stall_ifetch"], hi_i}):
                for sd in sorted({lo_d, p["stall_data"], hi_d}):
                    costs = host_costs(p, stall_ifetch=si, stall_data=sd)
                    for r in p["k1_ratios"]:
                        out.append({"params": {"llc_bytes": llc, "kernel_fraction": kf,
                                               "stall_ifetch": si, "stall_data": sd,
                                               "remote_ratio": float(r)},
                                    "value": gain(c, p, r, base_policy=bp, new_policy=newp,
                                                  costs=costs)})
    return out


def most_influential(sweep: list[dict]) -> str | None:
    """The swept parameter whose levels move the mean value the most (main effect)."""
    if not sweep:
        return None
    best, span = None, -1.0
    for k in sweep[0]["params"]:
        levels: dict = {}
        for pt in sweep:
            levels.setdefault(pt["params"][k], []).append(pt["value"])
        means = [float(np.mean(v)) for v in levels.values()]
        if len(means) > 1 and max(means) - min(means) > span:
            best, span = k, max(means) - min(means)
    return best


def memory_frame(p: dict) -> "pl.DataFrame":
    """K5: bytes replication adds per node count and geometry, counted from the tables
    built and by the closed form, and its spread over the ``assumed`` rodata size."""
    import polars as pl
    rows = []
    for spec in p["geometries"]:
        gran, va = spec.split("/")
        g = eng.arm64(gran, int(va))
        for rodata in sorted({p["rodata_range_bytes"][0], p["rodata_bytes"],
                              p["rodata_range_bytes"][1]}):
            img = KernelImage(text_bytes=p["text_bytes"], rodata_bytes=rodata)
            for n in (1, 2, 4, 8):
                mb = replication_bytes_model(img, g, n)
                fb = replication_bytes_formula(img, g, n)
                rows.append({"geometry": spec, "rodata_bytes": rodata, "nodes": n,
                             "copy_bytes": mb["copy_bytes"], "table_bytes": mb["table_bytes"],
                             "model_bytes": mb["total_bytes"], "formula_bytes": fb["total_bytes"],
                             "top_table_bytes": g.top_table_bytes})
    return pl.DataFrame(rows)


def patch_frame(p: dict) -> tuple["pl.DataFrame", "pl.DataFrame"]:
    """K4: the patching CPU's time per patch and the machine's, against the node count
    (one copy per node, ``cores_per_node`` cores each) for both synchronisations; and the
    share of machine time spent patching against the patch rate, with and without
    replication, over the ``assumed`` per-write costs."""
    import polars as pl
    cost = patch_cost_of(p)
    rows = []
    for n in (1, 2, 4, 8):
        topo = eng.generic(n, p["local_ns"], p["remote_ratio"], cpus_per_node=p["cores_per_node"])
        for sync in (PatchSync.STOP_MACHINE, PatchSync.NOSYNC):
            c = PatchCost(cost.sites, cost.fixmap_ns, cost.cmo_ns, cost.sync_ns, sync)
            rows.append({"nodes": n, "sync": sync.name.lower(),
                         "patch_ns": patch_window_ns(topo, n, c),
                         "machine_ns": patch_machine_ns(topo, n, c)})
    by_nodes = pl.DataFrame(rows)
    rows = []
    for n in p["node_counts"]:
        topo = eng.generic(n, p["local_ns"], p["remote_ratio"], cpus_per_node=p["cores_per_node"])
        for scale, label in ((0.25, "costs x0.25"), (1.0, "costs as set"), (4.0, "costs x4")):
            c = PatchCost(cost.sites, cost.fixmap_ns * scale, cost.cmo_ns * scale,
                          cost.sync_ns * scale, cost.sync)
            for rate in p["patch_rates"]:
                rows.append({"nodes": n, "costs": label, "rate_per_s": float(rate),
                             "extra_fraction": patch_overhead_fraction(topo, n, rate, c)
                             - patch_overhead_fraction(topo, 1, rate, c)})
    return by_nodes, pl.DataFrame(rows)


def claim_values(p: dict, runs: dict, gains: "pl.DataFrame", mem: "pl.DataFrame",
                 patches: "pl.DataFrame") -> dict[str, dict]:
    """Values, units, sweeps and one-sentence explanations of K1-K5 at these parameters."""
    bp = _POLICY[p["baseline_user_policy"]]
    db = runs[("nodes", 2)]
    costs = host_costs(p)
    r0 = p["remote_ratio"]
    lat = _latency(2, costs.local_ns, r0)
    out = {}
    # K1
    k1 = gain(db, p, r0, base_policy=bp, new_policy=bp)
    sw1 = k1_sweep(p, runs)
    vals = [s["value"] for s in sw1]
    br = time_breakdown(db, lat, Scheme.BASELINE, bp, costs)
    share = br["mem_replicated_ns"] / sum(br.values())
    out["K1"] = {"value": k1, "unit": "fraction", "sweep": sw1,
                 "decided_by": most_influential(sw1),
                 "explanation": (
                     f"On 2 nodes at a {r0:g}x remote/local ratio the {p['k1_workload']} mix "
                     f"gains {k1:+.1%} because only the replicated lines (text, rodata) that "
                     f"miss every cache and are fetched across the socket get cheaper, and "
                     f"they are {share:.1%} of the baseline's time; over the joint sweep of "
                     f"LLC capacity, kernel share, stall shares and the published ratios the "
                     f"gain spans {min(vals):+.1%} to {max(vals):+.1%}, moved most by "
                     f"{most_influential(sw1)}.")}
    # K2
    k2 = gain(db, p, r0, base_policy=bp, new_policy=UserPolicy.LOCAL)
    k2_user = gain(db, p, r0, base_policy=bp, new_policy=UserPolicy.LOCAL,
                   scheme=Scheme.BASELINE)
    sw2 = k1_sweep(p, runs, combined=True)
    v2 = [s["value"] for s in sw2]
    best = {}
    for n in p["node_counts"]:
        c = runs[("nodes", n)]
        for bname, bpol in _POLICY.items():
            for r in p["ratios"]:
                g2 = gain(c, p, r, base_policy=bpol, new_policy=UserPolicy.LOCAL)
                if not best or g2 > best["gain"]:
                    best = {"gain": g2, "nodes": n, "baseline": bname, "ratio": r}
    out["K2"] = {"value": k2, "unit": "fraction", "sweep": sw2,
                 "decided_by": most_influential(sw2),
                 "explanation": (
                     f"Replication plus node-local user data gains {k2:+.1%} over the "
                     f"{p['baseline_user_policy']} baseline on 2 nodes at {r0:g}x (from "
                     f"{min(v2):+.1%} to {max(v2):+.1%} over the joint sweep), of which "
                     f"local user data alone gives {k2_user:+.1%} and replication alone "
                     f"{k1:+.1%}; the largest gain in the whole grid, {best['gain']:+.1%}, "
                     f"takes {best['nodes']} nodes, a ratio of {best['ratio']:g} and a "
                     f"baseline with user data {best['baseline']}, so gains of that size come "
                     f"from where user memory is placed.")}
    # K3
    g3 = gains.filter((gains["workload"] == p["k1_workload"]) & (gains["nodes"] == 2)).sort("ratio")
    ratios = g3["ratio"].to_list()
    gl = g3["gain"].to_list()
    topo1 = eng.generic(2, costs.local_ns, 1.0, cpus_per_node=p["cores_per_node"])
    extra = (patch_overhead_fraction(topo1, 2, p["patches_per_s"], patch_cost_of(p))
             - patch_overhead_fraction(topo1, 1, p["patches_per_s"], patch_cost_of(p)))
    out["K3"] = {"value": {"ratio": ratios, "gain": gl}, "unit": "", "sweep": [],
                 "decided_by": None,
                 "explanation": (
                     f"The gain goes from {gl[0]:+.2%} at ratio {ratios[0]:g} to {gl[-1]:+.1%} "
                     f"at {ratios[-1]:g} because the memory reads of replicated lines and "
                     f"kernel tables are the only terms that change, each costing (ratio - 1) "
                     f"x local latency more when remote; at ratio 1.0 the copies are as fast "
                     f"as the original and what remains is patching every copy "
                     f"({extra:.1e} of machine time at {p['patches_per_s']:g} patches/s).")}
    # K4
    sm = patches.filter(patches["sync"] == p["patch_sync"]).sort("nodes")
    nodes = sm["nodes"].to_list()
    pns = sm["patch_ns"].to_list()
    topo = eng.generic(2, costs.local_ns, r0, cpus_per_node=p["cores_per_node"])
    be = break_even_patch_rate(topo, max(k1, 0.0), patch_cost_of(p))
    out["K4"] = {"value": {"nodes": nodes, "patch_ns": pns}, "unit": "ns", "sweep": [],
                 "decided_by": None,
                 "explanation": (
                     f"Each patched instruction is written and cleaned to the point of "
                     f"unification once per copy, so one {p['patch_sites']}-site patch takes "
                     f"{pns[0] / 1e3:.1f} us on one node and {pns[-1] / 1e3:.1f} us on "
                     f"{nodes[-1]}; with {p['patch_sync']} on 2 nodes of "
                     f"{p['cores_per_node']} cores the extra patching cancels the K1 gain at "
                     f"{be:.3g} patches per second.")}
    # K5
    g0 = p["geometries"][0]
    mk = mem.filter((mem["geometry"] == g0) & (mem["rodata_bytes"] == p["rodata_bytes"])).sort("nodes")
    two = mk.filter(mk["nodes"] == 2).row(0, named=True)
    allm = mem.filter(mem["rodata_bytes"] == p["rodata_bytes"]).sort(["geometry", "nodes"])
    out["K5"] = {"value": {"model_bytes": allm["model_bytes"].to_list(),
                           "formula_bytes": allm["formula_bytes"].to_list()},
                 "unit": "bytes", "sweep": [], "decided_by": None,
                 "explanation": (
                     f"With {g0} each extra node costs one text+rodata copy "
                     f"({two['copy_bytes'] / 2**20:.1f} MiB) and "
                     f"{two['table_bytes']} bytes of tables (a {two['top_table_bytes']}-byte "
                     f"top-level table and the image subtree's lower tables), and the bytes "
                     f"counted from the tables the engine builds equal the closed form for "
                     f"every geometry and node count.")}
    return out


def workloads_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """The phase mixes and what they do on the baseline at the K1 ratio: CPI, L1 I-cache
    misses and replicated-line memory reads per 1000 instructions."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    costs = host_costs(p)
    lat = _latency(2, costs.local_ns, p["remote_ratio"])
    rows = []
    for name in p["workloads"]:
        w = WORKLOADS[name]
        c = runs[("workload", name)]
        t = system_time_ns(c, lat, Scheme.BASELINE, bp, costs)
        ki = c.instructions / 1000.0
        rows.append({"workload": name, "kernel_fraction": w.kernel_fraction,
                     "kernel_entry_insns": w.kernel_entry_insns,
                     "kernel_hot_funcs": w.kernel_hot_funcs, "user_hot_funcs": w.user_hot_funcs,
                     "udata_MiB": w.udata_bytes / MiB,
                     "CPI": t / c.nodes / c.instructions * costs.cpu_ghz,
                     "L1I_MPKI": float(c.served[0, 1:].sum()) / ki,
                     "replicated_mem_PKI": float(c.mem[:, c.sim_node, c.classes.TEXT].sum()) / ki,
                     "TLB_walks_PKI": c.walks / ki})
    return pl.DataFrame(rows)


def breakdown_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Where the time goes, baseline and KTR, per workload on 2 nodes at the K1 ratio."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    costs = host_costs(p)
    lat = _latency(2, costs.local_ns, p["remote_ratio"])
    rows = []
    for name in p["workloads"]:
        c = runs[("workload", name)]
        base_total = system_time_ns(c, lat, Scheme.BASELINE, bp, costs)
        for scheme in (Scheme.BASELINE, Scheme.KTR):
            for part, ns in time_breakdown(c, lat, scheme, bp, costs).items():
                rows.append({"workload": name, "scheme": scheme.name.lower(),
                             "part": part.removesuffix("_ns"), "share_of_baseline": ns / base_total})
    return pl.DataFrame(rows)


def migration_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """The K1 workload's gains against the migration probability (2 nodes, K1 ratio)."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    rows = []
    for mg in sorted(set(p["migration_sweep"]) | {p["migration"]}):
        c = runs.get(("migration", mg)) or runs[("nodes", 2)]
        for label, newp in (("KTR", bp), ("KTR + local user data", UserPolicy.LOCAL)):
            rows.append({"migration": float(mg), "variant": label,
                         "gain": gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=newp)})
    return pl.DataFrame(rows)


def tornado_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """K1's gain with one charged ``assumed`` parameter at a time at the ends of its range
    (the others as set): base CPI, LLC hit time, L2 TLB hit time, walk and fetch/data stall
    shares, clock."""
    import polars as pl
    bp = _POLICY[p["baseline_user_policy"]]
    c = runs[("nodes", 2)]
    ranges = {"cpi_base": p["cpi_base_range"], "llc_ns": p["llc_ns_range"],
              "l2_tlb_cycles": p["l2_tlb_cycles_range"], "stall_walk": p["stall_walk_range"],
              "stall_ifetch": p["stall_ifetch_range"], "stall_data": p["stall_data_range"],
              "cpu_ghz": p["cpu_ghz_range"]}
    base = gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=bp)
    rows = []
    for name, (lo, hi) in ranges.items():
        for end, v in (("low", lo), ("high", hi)):
            g = gain(c, p, p["remote_ratio"], base_policy=bp, new_policy=bp,
                     costs=host_costs(p, **{name: v}))
            rows.append({"parameter": name, "end": end, "value": float(v), "gain": g,
                         "change": g - base})
    return pl.DataFrame(rows)


def sweep_frame(values: dict) -> "pl.DataFrame":
    """The K1 and K2 joint sweeps as rows (one per point)."""
    import polars as pl
    rows = []
    for cid in ("K1", "K2"):
        for pt in values[cid]["sweep"]:
            rows.append({"claim": cid, **pt["params"], "gain": pt["value"]})
    return pl.DataFrame(rows)


def results_frame(p: dict, scenario: str, gains, numa_grid, mem, patch_nodes, patch_rates,
                  values: dict) -> "pl.DataFrame":
    """The notebook's tidy frame (:mod:`kmm.results`)."""
    from .. import results
    rows = []
    seed = p["seed"]
    for r in gains.iter_rows(named=True):
        rows += _rows(scenario, {"workload": r["workload"], "nodes": r["nodes"],
                                 "latency_ratio": r["ratio"]}, seed,
                      {"gain": (r["gain"], "fraction")})
    for r in numa_grid.iter_rows(named=True):
        rows += _rows(scenario, {"nodes": r["nodes"], "baseline_user": r["baseline_user"],
                                 "latency_ratio": r["ratio"]}, seed,
                      {"gain_ktr_only": (r["ktr_only"], "fraction"),
                       "gain_ktr_local_user": (r["ktr_local_user"], "fraction"),
                       "gain_local_user_only": (r["local_user_only"], "fraction")})
    for r in mem.iter_rows(named=True):
        rows += _rows(scenario, {"geometry": r["geometry"], "nodes": r["nodes"],
                                 "rodata_bytes": r["rodata_bytes"]}, seed,
                      {"copy_bytes": (r["copy_bytes"], "bytes"),
                       "table_bytes": (r["table_bytes"], "bytes"),
                       "formula_bytes": (r["formula_bytes"], "bytes")})
    for r in patch_nodes.iter_rows(named=True):
        rows += _rows(scenario, {"nodes": r["nodes"], "sync": r["sync"]}, seed,
                      {"patch_ns": (r["patch_ns"], "ns"), "patch_machine_ns": (r["machine_ns"], "ns")})
    for r in patch_rates.iter_rows(named=True):
        rows += _rows(scenario, {"nodes": r["nodes"], "patch_costs": r["costs"],
                                 "patch_rate_per_s": r["rate_per_s"]}, seed,
                      {"patch_extra_fraction": (r["extra_fraction"], "fraction")})
    for cid in ("K1", "K2"):
        for pt in values[cid]["sweep"]:
            rows += _rows(scenario, {**pt["params"], "claim": cid}, seed,
                          {"gain": (pt["value"], "fraction")})
    return results.frame(rows)

__all__ = ["KernelImage", "ImagePlacement", "build_kernel_tables", "replication_bytes_model",
           "replication_bytes_formula", "image_subtree_tables", "PatchSync", "PatchCost",
           "patch_window_ns", "patch_machine_ns", "patch_overhead_fraction",
           "break_even_patch_rate", "SEGMENT_ALIGN_BYTES", "Region", "UserPolicy", "Scheme",
           "Workload", "WORKLOADS", "TextModel", "Machine", "RunConfig", "Classes",
           "HostTrace", "TextLayout", "text_layout", "generate_cpu_trace", "Stage2Setup",
           "HostCounts", "simulate_host", "HostCosts", "node_times_ns", "system_time_ns",
           "time_breakdown", "source_times_ns", "class_memory_ns", "params_from", "pool",
           "simulate_seeds",
           "simulate_all", "gain", "gain_frame", "user_numa_frame", "k1_sweep",
           "memory_frame", "patch_frame", "claim_values", "results_frame",
           "workloads_frame", "breakdown_frame", "migration_frame", "sweep_frame",
           "tornado_frame"]
