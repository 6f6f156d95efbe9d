"""The pKVM host stage-2 alternative to kernel text replication.

Proposed on the "arm64 kernel text replication" RFC thread (2023): boot the host in
protected KVM mode so that the host kernel runs under a stage-2 translation, give every NUMA
node its own host stage-2 tables that map the kernel text/rodata IPA range to a node-local
copy, leave stage 1 unchanged, and map text/rodata read-only at stage 2 so that writes trap
to EL2, which updates every copy. The critique on the same thread: VHE is given up (extra
cost on every guest entry/exit), EL2 code has no stage 2 and stays unreplicated, stage-2
table memory must be reserved for all host memory and I/O per node, and the cost is the 2D
walk rather than the TLB footprint.

The module holds the exact parts of the model and, on top of :mod:`kmm.mech.ktr`'s host
workloads, the performance comparison:

- stage-2 table memory per node (claim S6): the worst case pKVM reserves
  (arch/arm64/include/asm/kvm_pkvm.h ``host_s2_pgtable_pages``: every memblock region at
  page granularity through ``KVM_PGTABLE_MAX_LEVELS`` levels, 16 pages for concatenated
  start-level tables, 1 GiB of MMIO) times the number of table sets, against the tables
  actually used by an identity map of host memory painted with :mod:`kmm.pagetable` over
  :func:`kmm.geometry.stage2` (``host_stage2_idmap`` maps the largest block that fits the
  memory region, arch/arm64/kvm/hyp/nvhe/mem_protect.c ``host_stage2_adjust_range``);
- 2D walk references (Arm ARM D8.2, two-stage translation): a stage-1 walk of ``n``
  descriptor reads, each descriptor address and the final IPA translated by a stage-2 walk
  of ``m`` reads: ``n + (n + 1) m``, with ``n`` and ``m`` shortened by block leaves;
- the comparison (S1-S5): the same workloads with every host access translated in two
  stages (per-node stage-2 tables from :func:`stage2_setup`, every leaf size a granule
  allows) and every access at EL2 in one (:class:`El2Path`: the hypervisor's own stage-1
  tables, no stage 2), the loss against KTR split into more walks and dearer walks
  (:func:`decompose_walks`), EL2 text and tables read from node 0, and the overheads the
  scheme adds beyond the walks, each a count of events times per-event costs: the extra
  cost of every guest exit without VHE, every text write trapped to EL2 and written into
  each node's copy (:func:`trapped_patch_window_ns`, on the same basis as KTR's
  :func:`kmm.mech.ktr.patch_window_ns`), and every host page given away and returned
  updating and invalidating each node's stage-2 table set (:func:`stage2_page_cycle`,
  invalidations charged by :mod:`kmm.invalidate`); :func:`net_gain` combines them and
  :func:`crossover_exit_rate` gives the exit rate at which the gain is gone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import engine as eng
from ..config import check_float, check_int
from ..engine import PageTable, Paint, Perm
from ..errors import ConfigError
from ..sampling import latin_hypercube

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# arch/arm64/include/asm/kvm_pgtable.h before LPA2 support (5 with a level -1 start).
KVM_PGTABLE_MAX_LEVELS = 4
# host_s2_pgtable_pages(): "an extra 16 pages to safely upper-bound the worst case of
# concatenated pgds" and "Allow 1 GiB for MMIO mappings".
HOST_S2_CONCAT_PAGES = 16
HOST_S2_MMIO_BYTES = 1 * GiB


def hyp_pgtable_max_pages(nr_pages: int, entries_per_table: int,
                          max_levels: int = KVM_PGTABLE_MAX_LEVELS) -> int:
    """``__hyp_pgtable_max_pages``: tables to map ``nr_pages`` pages at page granularity,
    provisioned for the worst case at every one of ``max_levels`` levels."""
    check_int("nr_pages", nr_pages, lo=0)
    total = 0
    for _ in range(max_levels):
        nr_pages = -(-nr_pages // entries_per_table)
        total += nr_pages
    return total


def host_s2_reserved_pages(region_bytes: list[int], g: eng.Geometry,
                           max_levels: int = KVM_PGTABLE_MAX_LEVELS) -> int:
    """``host_s2_pgtable_pages()`` for memblock regions of the given sizes, in pages of the
    stage-2 granule ``g``."""
    e = g.entries_per_table
    pages = sum(hyp_pgtable_max_pages(b >> g.page_shift, e, max_levels) for b in region_bytes)
    return pages + HOST_S2_CONCAT_PAGES + hyp_pgtable_max_pages(
        HOST_S2_MMIO_BYTES >> g.page_shift, e, max_levels)


@dataclass(frozen=True)
class HostMemory:
    """The host's physical memory map, one memblock region per node, plus an I/O window.

    Parameters
    ----------
    ram_bytes : total RAM, split evenly over ``nodes`` regions (node ``n`` at
        ``n * node_span_bytes``)
    nodes : NUMA nodes
    io_bytes : MMIO the host touches (mapped on demand, at ``io_base_bytes``)
    node_span_bytes : physical address stride between nodes
    io_base_bytes : base of the I/O window (above every node's RAM)
    """

    ram_bytes: int = 256 * GiB
    nodes: int = 2
    io_bytes: int = 1 * GiB
    node_span_bytes: int = 1 << 40
    io_base_bytes: int = 1 << 44

    def __post_init__(self):
        check_int("nodes", self.nodes, lo=1, hi=64)
        check_int("ram_bytes", self.ram_bytes, lo=self.nodes * 2 * MiB)
        check_int("io_bytes", self.io_bytes, lo=0)
        if self.ram_bytes % (self.nodes * 64 * KiB):
            raise ConfigError("must split into 64 KiB aligned equal node regions", "ram_bytes")
        if self.ram_bytes // self.nodes > self.node_span_bytes:
            raise ConfigError("node RAM exceeds node_span_bytes", "ram_bytes")
        if self.io_base_bytes < self.nodes * self.node_span_bytes:
            raise ConfigError("the I/O window overlaps node RAM", "io_base_bytes")

    def regions(self) -> list[tuple[int, int]]:
        """``(base, size)`` of each node's RAM region."""
        per = self.ram_bytes // self.nodes
        return [(n * self.node_span_bytes, per) for n in range(self.nodes)]


def _paint(leaf: str) -> Paint:
    try:
        return {"page": Paint.PTES, "cont": Paint.NO_BLOCKS, "block": Paint.LARGEST,
                "nocont": Paint.NO_CONT}[leaf]
    except KeyError:
        raise ConfigError(f"unknown stage-2 leaf policy {leaf!r}; allowed: page, cont, "
                          "block, nocont", "leaf") from None


def _leaf_sizes(g: eng.Geometry) -> list[int]:
    """Every leaf and contiguous-range size of a geometry, ascending."""
    out = set()
    for lv in g.leaf_levels:
        out.add(g.leaf_bytes(lv))
        c = g.cont_bytes(lv)
        if c:
            out.add(c)
    return sorted(out)


def _capped_pieces(ipa: int, size: int, pa: int, cap: int | None, g: eng.Geometry):
    """Split [ipa, ipa + size) so that no piece holds an aligned window of the next leaf
    size above ``cap``: every window of that size is cut ``cap`` bytes in."""
    if cap is None:
        return [(ipa, size, pa)]
    bigger = [x for x in _leaf_sizes(g) if x > cap]
    if not bigger:
        return [(ipa, size, pa)]
    nxt = bigger[0]
    cuts = set()
    w = -(-ipa // nxt) * nxt
    while w + cap < ipa + size:
        cuts.add(w + cap)
        w += nxt
    edges = [ipa] + sorted(cuts) + [ipa + size]
    return [(a, b - a, pa + (a - ipa)) for a, b in zip(edges, edges[1:]) if b > a]


def host_stage2_table(mem: HostMemory, g: eng.Geometry, leaf: str = "block",
                      text: tuple[int, int, int] | None = None,
                      max_leaf_bytes: int | None = None) -> PageTable:
    """One host stage-2 table: identity map of every RAM region and the I/O window.

    ``leaf`` limits the leaves (``page``: no blocks or contiguous ranges; ``cont``:
    contiguous pages; ``block``: the largest block that fits; ``nocont``: blocks without
    contiguous ranges); ``max_leaf_bytes`` caps the leaf size (ranges are cut so that no
    larger aligned window exists). ``text`` is ``(ipa, size, pa)``: that IPA range maps to
    ``pa`` (a node's copy) instead of itself.
    """
    if g.stage != 2:
        raise ConfigError(f"needs a stage-2 geometry, got {g.name}", "geometry")
    paint = _paint(leaf)
    pt = PageTable(g)
    limit = 1 << g.va_bits
    ranges = []
    for base, size in mem.regions():
        if text is not None and base <= text[0] < base + size:
            t0, tsz, tpa = text
            if t0 + tsz > base + size:
                raise ConfigError("the text range must lie inside one RAM region", "text")
            ranges += [(base, t0 - base, base, Perm.RW), (t0, tsz, tpa, Perm.RX),
                       (t0 + tsz, base + size - t0 - tsz, t0 + tsz, Perm.RW)]
        else:
            ranges.append((base, size, base, Perm.RW))
    if mem.io_bytes:
        ranges.append((mem.io_base_bytes, mem.io_bytes, mem.io_base_bytes, Perm.RW))
    for ipa, size, pa, perm in ranges:
        if size == 0:
            continue
        if ipa + size > limit:
            raise ConfigError(f"IPA {ipa + size:#x} exceeds the {g.va_bits}-bit IPA space",
                              "ipa_bits")
        for a, sz, p in _capped_pieces(ipa, size, pa, max_leaf_bytes, g):
            pt.map(a, sz, p, perm, policy=paint)
    return pt


def stage2_memory(mem: HostMemory, g: eng.Geometry, leaf: str = "block",
                  text_bytes: int = 0, text_aligned: bool = True,
                  max_levels: int = KVM_PGTABLE_MAX_LEVELS) -> dict[str, int]:
    """Host stage-2 table memory with one table set per node.

    Returns ``reserved_bytes`` (``nodes`` times ``host_s2_pgtable_pages()``),
    ``used_bytes`` (the tables of every node's set, counted from the tables built: node 0
    maps the text IPA range to itself, node ``n`` to its copy in its own RAM) and
    ``used_one_set_bytes``. With ``text_aligned`` the copies keep the original's offset
    modulo 1 GiB (so stage-2 blocks can map them); otherwise they are offset by one
    granule page, which forces page leaves on the text range.
    """
    check_int("text_bytes", text_bytes, lo=0)
    regions = mem.regions()
    reserved = mem.nodes * host_s2_reserved_pages([s for _b, s in regions], g,
                                                  max_levels) * g.page_bytes
    used = 0
    one = 0
    text_size = -(-text_bytes // g.page_bytes) * g.page_bytes
    text_ipa = regions[0][0] + 1 * GiB if text_size else 0
    for n in range(mem.nodes):
        text = None
        if text_size:
            base_n, size_n = regions[n]
            pa = base_n + 2 * GiB + (0 if text_aligned else g.page_bytes)
            if n == 0:
                pa = text_ipa
            if pa + text_size > base_n + size_n:
                raise ConfigError("node RAM too small to hold the text copy", "ram_bytes")
            text = (text_ipa, text_size, pa)
        b = host_stage2_table(mem, g, leaf, text).table_bytes()
        used += b
        if n == 0:
            one = b
    return {"reserved_bytes": reserved, "used_bytes": used, "used_one_set_bytes": one}


# ---- 2D walks --------------------------------------------------------------------------------
def walk_levels(g: eng.Geometry, leaf_bytes: int | None = None) -> int:
    """Descriptor reads of a 1D walk ending at a leaf of ``leaf_bytes`` (None: a page)."""
    if leaf_bytes is None or leaf_bytes == g.page_bytes:
        return g.walk_references(3)
    for lv in g.leaf_levels:
        if g.leaf_bytes(lv) == leaf_bytes:
            return g.walk_references(lv)
    raise ConfigError(f"{leaf_bytes} B is no leaf size of {g.name}", "leaf_bytes")


def nested_references(s1: eng.Geometry, s2: eng.Geometry, s1_leaf_bytes: int | None = None,
                      s2_leaf_bytes: int | None = None) -> int:
    """Memory references of an uncached 2D walk: ``n + (n + 1) m`` with ``n`` stage-1 and
    ``m`` stage-2 descriptor reads (Arm ARM D8.2; block leaves shorten either walk)."""
    n = walk_levels(s1, s1_leaf_bytes)
    m = walk_levels(s2, s2_leaf_bytes)
    return n + (n + 1) * m


# ---- giving up VHE (S4) ---------------------------------------------------------------------
def vhe_crossover_rate(gain: float, extra_exit_ns: float) -> float:
    """Exit rate (per CPU per second) at which :func:`net_gain` with exits alone reaches zero:
    ``gain / ((1 + gain) * extra)``; 0 when replication does not gain to begin with, and
    infinity when exits cost nothing extra."""
    if gain <= 0:
        return 0.0
    if extra_exit_ns <= 0:
        return float("inf")
    return gain / ((1.0 + gain) * extra_exit_ns * 1e-9)


def net_gain(gain: float, exit_rate_per_s: float = 0.0, extra_exit_ns: float = 0.0,
             f_stage2: float = 0.0, f_base: float = 0.0) -> float:
    """Net throughput gain of stage-2 replication over the VHE baseline with every overhead.

    Per unit of work the baseline takes ``1 / (1 - f_base)`` (its own text patching takes a
    share ``f_base`` of the machine) and stage-2 replication ``(1 / (1 + gain) + rate *
    extra) / (1 - f_stage2)``: without VHE each of the baseline's exits
    (``exit_rate_per_s`` per CPU-second of baseline work) adds ``extra_exit_ns`` to the work
    that causes it, and text-write traps and stage-2 table sync take a share ``f_stage2`` of
    the machine's CPU time (:func:`text_write_fraction`, :func:`stage2_sync_fraction`). With
    both shares zero this is ``1 / (1 / (1 + gain) + rate * extra) - 1``.
    """
    if gain <= -1:
        raise ConfigError(f"gain must be > -1, got {gain}", "gain")
    for name, f in (("f_stage2", f_stage2), ("f_base", f_base)):
        if not 0.0 <= f < 1.0:
            raise ConfigError(f"must be a share of CPU time in [0, 1), got {f}", name)
    t = 1.0 / (1.0 + gain) + exit_rate_per_s * extra_exit_ns * 1e-9
    return (1.0 / (1.0 - f_base)) / (t / (1.0 - f_stage2)) - 1.0


def crossover_exit_rate(gain: float, extra_exit_ns: float, f_stage2: float = 0.0,
                        f_base: float = 0.0) -> float:
    """Exit rate at which :func:`net_gain` reaches zero with the other overheads fixed:
    ``(gain / (1 + gain) - (f_stage2 - f_base) / (1 - f_base)) / extra``; 0 when the gain
    is gone before any exit, infinity when exits cost nothing extra. With both shares zero
    this is :func:`vhe_crossover_rate`."""
    if f_stage2 == 0.0 and f_base == 0.0:
        return vhe_crossover_rate(gain, extra_exit_ns)
    margin = gain / (1.0 + gain) - (f_stage2 - f_base) / (1.0 - f_base)
    if margin <= 0:
        return 0.0
    if extra_exit_ns <= 0:
        return float("inf")
    return margin / (extra_exit_ns * 1e-9)


# ---- text writes trap to EL2 (S4) -----------------------------------------------------------
def text_write_events(copies: int, sites: int, trapped: bool) -> dict[str, int]:
    """Counted events of one text patch of ``sites`` instructions when the text has
    ``copies`` copies.

    Under stage-2 replication the text IPA range is read-only at stage 2 in every node's
    tables, so each instruction the host writes (``aarch64_insn_patch_text_nosync`` through
    the ``FIX_TEXT_POKE0`` alias, arch/arm64/kernel/patching.c) takes a stage-2 permission
    fault to EL2 (``traps``); the hypervisor writes the instruction into every copy through
    its own fixmap slot and cleans/invalidates each line to the point of unification. KTR
    (``trapped=False``) makes the same writes at EL1. No TLB invalidation: no mapping
    changes.
    """
    check_int("copies", copies, lo=1)
    check_int("sites", sites, lo=1)
    return {"syncs": 1, "traps": sites if trapped else 0, "copy_writes": sites * copies,
            "fixmaps": sites * copies, "cmo_lines": sites * copies}


def trapped_patch_window_ns(topo, copies: int, cost, trap_ns: float,
                            patcher_nid: int = 0) -> float:
    """Time the patching CPU spends on one patch under stage-2 replication: the
    synchronisation, one EL2 trap round trip per instruction and, per instruction and
    copy, the fixmap map/unmap, the store (owning the line: a read from the node holding
    copy ``n``, ``latency_ns[patcher][n]``) and the clean/invalidate to PoU: the events of
    :func:`text_write_events` times :class:`kmm.mech.ktr.PatchCost` and ``trap_ns``, on
    the same basis as :func:`kmm.mech.ktr.patch_window_ns`."""
    check_int("copies", copies, lo=1, hi=topo.nodes)
    check_int("patcher_nid", patcher_nid, lo=0, hi=topo.nodes - 1)
    check_float("trap_ns", trap_ns, lo=0.0)
    lat = np.asarray(topo.latency_ns, dtype=np.float64)
    ev = text_write_events(copies, cost.sites, True)
    per_site = sum(cost.fixmap_ns + lat[patcher_nid, n] + cost.cmo_ns for n in range(copies))
    return ev["syncs"] * cost.sync_ns + ev["traps"] * trap_ns + cost.sites * per_site


def trapped_patch_machine_ns(topo, copies: int, cost, trap_ns: float,
                             patcher_nid: int = 0) -> float:
    """CPU time the whole machine loses to one trapped patch (every online CPU waits under
    ``stop_machine``, as :func:`kmm.mech.ktr.patch_machine_ns`)."""
    from . import ktr
    w = trapped_patch_window_ns(topo, copies, cost, trap_ns, patcher_nid)
    return w * topo.cpus if cost.sync == ktr.PatchSync.STOP_MACHINE else w


def text_write_fraction(topo, copies: int, rate_per_s: float, cost, trap_ns: float) -> float:
    """Share of the machine's CPU time spent on trapped text patches at ``rate_per_s``."""
    rate = check_float("rate_per_s", rate_per_s, lo=0.0)
    return rate * trapped_patch_machine_ns(topo, copies, cost, trap_ns) / (topo.cpus * 1e9)


# ---- N host stage-2 table sets kept in sync (S4) ---------------------------------------------
@dataclass(frozen=True)
class SyncCost:
    """Cost parameters of host stage-2 updates (every field ``assumed``; see the params file).

    Parameters
    ----------
    tlbi_ns, dsb_ish_ns, dsb_ish_per_cpu_ns : one broadcast TLBI, the ``DSB ISH`` that
        completes it and its growth per CPU of the domain (:class:`kmm.invalidate.
        InvalidationCosts`)
    cached_ns : a descriptor read that hits in the LLC (the upper levels of a set's tables,
        shared by every update)
    trap_ns : a host stage-2 fault's round trip to EL2
    tlbi_per_set : the per-table code (``kvm_pgtable_stage2_*``, which invalidates inside
        its walk) runs once per set; False: one invalidation after every set is written
        (the sets share the host VMID)
    """

    tlbi_ns: float = 10.0
    dsb_ish_ns: float = 200.0
    dsb_ish_per_cpu_ns: float = 5.0
    cached_ns: float = 30.0
    trap_ns: float = 500.0
    tlbi_per_set: bool = True

    def __post_init__(self):
        for f in ("tlbi_ns", "dsb_ish_ns", "dsb_ish_per_cpu_ns", "cached_ns", "trap_ns"):
            check_float(f, getattr(self, f), lo=0.0)


HOST_VMID = 0


def stage2_invalidation(cpus: int, g2: eng.Geometry, sc: SyncCost) -> dict[str, float]:
    """One ``__kvm_tlb_flush_vmid_ipa`` (arch/arm64/kvm/hyp/nvhe/tlb.c) through
    :mod:`kmm.invalidate`: ``TLBI IPAS2E1IS`` of the page's IPA, ``DSB ISH``, ``TLBI
    VMALLE1IS`` (every stage-1 entry of the VMID: combined entries may hold the old
    stage-2 output), ``DSB ISH``, each broadcast to ``cpus`` CPUs. Returns the initiator's
    ``ns`` and the counted ``tlbis`` and ``dsbs``."""
    check_int("cpus", cpus, lo=1, hi=4096)
    costs = eng.InvalidationCosts(tlbi_ns=sc.tlbi_ns, dsb_ish_ns=sc.dsb_ish_ns,
                                  dsb_ish_per_cpu_ns=sc.dsb_ish_per_cpu_ns)
    iv = eng.Invalidator(eng.InvalidationConfig(method=eng.Method.ARM64_TLBI, cpus=cpus,
                                                page_shift=g2.page_shift, costs=costs))
    ipa = 1 << 32
    ns = iv.flush(0, ipa, ipa + g2.page_bytes, vmid=HOST_VMID, last_level_only=True)
    ns += iv.flush(0, 0, 0, vmid=HOST_VMID, kernel=True)
    c = iv.counters
    return {"ns": float(ns), "tlbis": c.tlbis, "dsbs": c.dsbs}


def stage2_page_cycle(latency_ns, sets: int, g2: eng.Geometry, sc: SyncCost,
                      cpus: int) -> dict[str, float]:
    """Counted events and time of one host page given to a guest or the hypervisor and
    later returned, with ``sets`` host stage-2 table sets (set ``k`` on node ``k``).

    - donate/share (``host_donate_guest``, ``host_share_hyp``; arch/arm64/kvm/hyp/nvhe/
      mem_protect.c): in every set the valid entry is replaced (break-before-make): the
      walk to the leaf (upper levels cached), the leaf line written from the initiating
      CPU (owning the line: a read at ``latency_ns[i][k]``, averaged over initiating
      nodes ``i``) and :func:`stage2_invalidation` per set (or once);
    - reclaim (VM teardown, unshare): the annotated invalid entry is written in every set,
      no invalidation (nothing valid was cached);
    - the host's next touch faults in each set that lacks the entry (``host_stage2_idmap``
      on a CPU of the set's node): an EL2 trap, the walk and a local leaf write; counted
      for every set (a page touched from one node only faults once).

    MMIO's lazy mappings fault the same way once per range and set, at boot: not charged.
    """
    lat = np.asarray(latency_ns, dtype=np.float64)
    nodes = lat.shape[0]
    check_int("sets", sets, lo=1, hi=nodes)
    upper = g2.walk_references(3) - 1
    iv = stage2_invalidation(cpus, g2, sc)
    n_inv = sets if sc.tlbi_per_set else 1
    remote = float(np.mean([sum(lat[i, k] for k in range(sets)) for i in range(nodes)]))
    local = float(sum(lat[k, k] for k in range(sets)))
    ev = {"descriptor_writes": 3 * sets, "cached_reads": 3 * sets * upper,
          "invalidations": n_inv, "tlbis": n_inv * iv["tlbis"], "dsbs": n_inv * iv["dsbs"],
          "traps": sets}
    ns = (2 * remote + local + ev["cached_reads"] * sc.cached_ns + n_inv * iv["ns"]
          + ev["traps"] * sc.trap_ns)
    return {**ev, "ns": ns}


def stage2_sync_fraction(latency_ns, sets: int, rate_per_s: float, g2: eng.Geometry,
                         sc: SyncCost, cpus: int) -> float:
    """Share of the machine's CPU time spent keeping ``sets`` host stage-2 table sets up
    to date at ``rate_per_s`` page cycles per second (:func:`stage2_page_cycle`)."""
    rate = check_float("rate_per_s", rate_per_s, lo=0.0)
    return rate * stage2_page_cycle(latency_ns, sets, g2, sc, cpus)["ns"] / (cpus * 1e9)


# ---- the performance comparison (S1-S5) on the full path --------------------------------------
@dataclass(frozen=True)
class S2Leaf:
    """A stage-2 leaf configuration: ``leaf_bytes`` reached with painting policy ``leaf``
    capped at ``leaf_bytes``."""

    granule: str
    leaf_bytes: int
    leaf: str
    label: str


def stage2_leaf_options(granule: str, ipa_bits: int = 48) -> list[S2Leaf]:
    """Every stage-2 leaf size a granule allows, smallest first: the page, the contiguous
    range of pages, each block and the contiguous range of blocks (Arm ARM D8.6.1)."""
    g = eng.stage2(granule, ipa_bits)
    out = []
    for size in _leaf_sizes(g):
        level = next((lv for lv in g.leaf_levels if g.leaf_bytes(lv) == size), None)
        if level == 3:
            leaf, kind = "page", "page"
        elif level is not None:
            leaf, kind = "nocont", "block"
        else:
            is_pte_cont = size == g.cont_pte_bytes
            leaf, kind = ("cont", "cont pages") if is_pte_cont else ("block", "cont blocks")
        out.append(S2Leaf(granule, size, leaf, f"{granule} {kind} {_human(size)}"))
    return out


def _human(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"


def host_memory_for(m, ram_per_node_bytes: int = 256 * GiB) -> HostMemory:
    """The host memory map of a simulated machine (one RAM region per node)."""
    return HostMemory(ram_bytes=ram_per_node_bytes * m.nodes, nodes=m.nodes)


# ---- EL2: its own translation regime (S5) ----------------------------------------------------
#: TLB tag of the EL2 regime's entries: an EL2 translation never matches a host (EL1&0) entry.
HYP_VMID = 0xFFFF
#: Leaf level of the hypervisor text in the hyp stage-1 tables: arch/arm64/kvm/hyp/nvhe/
#: setup.c ``recreate_hyp_mappings`` maps ``__hyp_text_start..__hyp_text_end`` with
#: ``pkvm_create_mappings``, whose walker maps a block only where an aligned block lies
#: inside the range; the hyp text is page aligned and far smaller than a 2 MiB block.
HYP_TEXT_LEAF_LEVEL = 3


class El2Path:
    """The full path of a host under stage 2 whose exits run hypervisor code at EL2.

    nVHE EL2 is a translation regime of its own: one stage, through the hypervisor's
    stage-1 tables (``pkvm_pgtable``), with no stage 2. Host accesses go through
    ``config`` (2D walks); accesses flagged ``el2`` go through the same stage-1 geometry
    without a stage 2 (1D walks), their tables held by placement class ``hyp_table_class``
    (the hypervisor's tables on node 0, with its text), leaves at ``hyp_leaf_level``,
    TLB entries tagged :data:`HYP_VMID`. Both share one machine: the TLBs and walk caches,
    the caches and the table-frame map (so descriptor lines of either regime compete and
    never alias). ``run`` returns the cumulative counts of both, like
    :meth:`kmm.walk.Path.run`; a run with no EL2 access is exactly a
    :class:`kmm.walk.Path` run. The EL2 regime is :meth:`kmm.walk.Path.regime` of the host's
    path.
    """

    def __init__(self, config, hyp_table_class: int, hyp_leaf_level: int = HYP_TEXT_LEAF_LEVEL):
        if config.stage1 is None or config.stage2 is None:
            raise ConfigError("needs a stage-1 and a stage-2 geometry", "config")
        self.main = eng.Path(config)
        self.hyp = self.main.regime(stage2=None, table_node=eng.TableNode.FIXED,
                                    table_fixed_nid=int(hyp_table_class))
        self.hyp_leaf_level = int(hyp_leaf_level)

    def run(self, addresses, *, el2, **per_access):
        va = np.asarray(addresses)
        n = va.shape[0]
        el2 = np.asarray(el2, dtype=bool)
        if el2.shape != (n,):
            raise ConfigError(f"needs one flag per access ({n})", "el2")
        if n == 0:
            raise ConfigError("needs at least one access", "addresses")

        def cut(v, a, b):
            return v[a:b] if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n else v

        edges = np.concatenate([[0], np.flatnonzero(el2[1:] != el2[:-1]) + 1, [n]])
        res = None
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
            if el2[a]:
                res = self.hyp.run(
                    va[a:b], kind=cut(per_access.get("kind"), a, b),
                    pa=cut(per_access.get("pa"), a, b), leaf_level=self.hyp_leaf_level,
                    cont=False, asid=0, vmid=HYP_VMID, cpu=cut(per_access.get("cpu"), a, b),
                    global_=True, node=cut(per_access.get("node"), a, b))
            else:
                res = self.main.run(va[a:b], **{k: cut(v, a, b) for k, v in per_access.items()})
        return res  # both regimes count into the machine's counters


def stage2_setup(m, option: S2Leaf, *, text_aligned: bool = True, ipa_bits: int = 48,
                 ram_per_node_bytes: int = 256 * GiB):
    """Per-node host stage-2 tables for a simulated machine and the leaf lookup the full
    path needs (:class:`kmm.mech.ktr.Stage2Setup`).

    Node 0 maps the text/rodata IPA range to itself, node ``n`` to its copy at the same
    offset in its own RAM (``text_aligned``) or one granule page further, which leaves
    only page leaves to map it.
    """
    from . import ktr
    g2 = eng.stage2(option.granule, ipa_bits)
    mem = host_memory_for(m, ram_per_node_bytes)
    place = ktr.ImagePlacement()
    size = -(-m.image.replicated_bytes // g2.page_bytes) * g2.page_bytes
    # page and contiguous-page painting never exceeds the option's size: no cuts needed
    cap = option.leaf_bytes if option.leaf in ("nocont", "block") else None
    tables = {0: host_stage2_table(mem, g2, option.leaf, None, cap)}
    for n in range(1, m.nodes):
        base = mem.regions()[n][0]
        pa = base + place.pa_bytes + (0 if text_aligned else g2.page_bytes)
        tables[n] = host_stage2_table(mem, g2, option.leaf, (place.pa_bytes, size, pa), cap)
    probe = tables[0].translate(ktr.UDATA_PA)
    if probe is None:
        raise ConfigError("the simulated host layout lies outside the stage-2 RAM map",
                          "ram_per_node_bytes")

    def leaf(pa, node):
        _o, level, cont, _p, _n = tables[node].translate_many(
            np.asarray(pa).astype(np.int64))
        if (level < -1).any():
            raise ConfigError("an access falls outside the host stage-2 map", "pa")
        return level.astype(np.int8), cont.astype(bool)

    hyp_class = ktr.Classes(m.nodes).HYP
    return ktr.Stage2Setup(geometry=g2, table_leaf_level=int(probe.level), leaf=leaf,
                           path=lambda config: El2Path(config, hyp_class))


def decompose_walks(c_ktr, c_s2, latency_ns, policy, costs) -> dict[str, float]:
    """Walk time of stage-2 replication against KTR, split symmetrically (the average of
    both orders) into (a) the change in the number of walks (TLB footprint: smaller combined
    entries) and (b) the change in the cost of a walk (2D references, stage-2 tables), plus
    the extra L2 TLB hits counted with (a); ``c_ns`` is the rest of the loss (the descriptor
    lines' pollution of caches). ``share_a`` = a / (a + b)."""
    from . import ktr
    n = c_ktr.nodes
    t_k = ktr.system_time_ns(c_ktr, latency_ns, ktr.Scheme.KTR, policy, costs)
    t_s = ktr.system_time_ns(c_s2, latency_ns, ktr.Scheme.STAGE2, policy, costs)
    sk = ktr.source_times_ns(c_ktr, latency_ns, ktr.Scheme.KTR, policy, costs)
    ss = ktr.source_times_ns(c_s2, latency_ns, ktr.Scheme.STAGE2, policy, costs)
    wk, ws = n * c_ktr.walks, n * c_s2.walks
    ck = sk["walk_ns"] / wk if wk else 0.0
    cs = ss["walk_ns"] / ws if ws else 0.0
    a = (ws - wk) * (ck + cs) / 2 + (ss["tlb_hits_ns"] - sk["tlb_hits_ns"])
    b = (cs - ck) * (wk + ws) / 2
    loss = t_s - t_k
    tot = a + b
    return {"loss_ns": loss, "a_ns": a, "b_ns": b, "c_ns": loss - a - b,
            "share_a": a / tot if tot > 0 else float("nan"), "ktr_ns": t_k, "stage2_ns": t_s,
            "walk_ns_ktr": sk["walk_ns"], "walk_ns_stage2": ss["walk_ns"]}


NOTEBOOK_KEYS = (
    "seed", "seeds", "workload", "workloads", "remote_ratio", "ratio_range", "local_ns", "cpu_ghz",
    "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles", "stall_ifetch", "stall_data",
    "stall_walk", "stall_walk_range", "stall_ifetch_range", "llc_bytes", "migration",
    "cpus_per_node", "accesses_per_cpu", "warmup_per_cpu", "baseline_user_policy",
    "text_bytes", "rodata_bytes", "s2_granules", "s1_granule", "ipa_bits", "debate_leaf",
    "pkvm_leaf", "text_aligned", "exit_rates", "nvhe_exit_extra_ns", "nvhe_exit_extra_range",
    "el2_exits_per_kinstr", "el2_exit_sweep", "hyp_text_bytes", "s6_nodes",
    "s6_ram_per_node_bytes", "s6_granules", "cores_per_node", "patch_sites", "fixmap_ns",
    "cmo_ns", "sync_ns", "patch_sync", "patches_per_s", "el2_trap_ns", "tlbi_ns",
    "dsb_ish_ns", "dsb_ish_per_cpu_ns", "s2_pages_per_s", "s2_tlbi_per_set",
    "overhead_rates", "overhead_nodes", "s4_overhead_points")

#: ``assumed`` parameters of the text-write and stage-2 sync overheads, sampled jointly
#: (Latin hypercube over their params-file ranges) in S4's sweep.
OVERHEAD_ASSUMED = ("el2_trap_ns", "fixmap_ns", "cmo_ns", "sync_ns", "tlbi_ns", "dsb_ish_ns",
                    "dsb_ish_per_cpu_ns", "cores_per_node", "patches_per_s", "s2_pages_per_s")
_PATCH_SYNC = ("stop_machine", "nosync")


def params_from(ns: dict) -> dict:
    """The notebook's parameters (the names of :data:`NOTEBOOK_KEYS` found in ``ns``)."""
    from . import ktr
    missing = [k for k in NOTEBOOK_KEYS if k not in ns]
    if missing:
        raise ConfigError(f"the parameters cell lacks {', '.join(missing)}", "notebook")
    p = {k: ns[k] for k in NOTEBOOK_KEYS}
    if p["workload"] not in ktr.WORKLOADS:
        raise ConfigError(f"workloads are {', '.join(ktr.WORKLOADS)}", "workload")
    labels = [o.label for g in p["s2_granules"] for o in stage2_leaf_options(g, p["ipa_bits"])]
    for k in ("debate_leaf", "pkvm_leaf"):
        if p[k] not in labels:
            raise ConfigError(f"must be one of {', '.join(labels)}", k)
    if p["patch_sync"] not in _PATCH_SYNC:
        raise ConfigError(f"must be one of {', '.join(_PATCH_SYNC)}", "patch_sync")
    if 2 not in p["overhead_nodes"]:
        raise ConfigError("must include 2 (the comparison's machine)", "overhead_nodes")
    return p


_HOST_KEYS = ("local_ns", "cpu_ghz", "cpi_base", "l2_cycles", "llc_ns", "l2_tlb_cycles",
              "stall_ifetch", "stall_data", "stall_walk")


def _ktr_params(p: dict) -> dict:
    return {k: p[k] for k in _HOST_KEYS}


def _costs(p: dict, **over):
    from . import ktr
    return ktr.HostCosts(**{k: float(over.get(k, v)) for k, v in _ktr_params(p).items()})


def _machine(p: dict):
    from . import ktr
    return ktr.Machine(nodes=2, cpus_per_node=p["cpus_per_node"], llc_bytes=p["llc_bytes"],
                       granule=p["s1_granule"], va_bits=48,
                       image=ktr.KernelImage(text_bytes=p["text_bytes"],
                                             rodata_bytes=p["rodata_bytes"]))


def _run(p: dict, exits: float = 0.0):
    from . import ktr
    return ktr.RunConfig(accesses_per_cpu=p["accesses_per_cpu"],
                         warmup_per_cpu=p["warmup_per_cpu"], migration=p["migration"],
                         exits_per_kinstr=exits, hyp_text_bytes=p["hyp_text_bytes"],
                         seed=p["seed"])


def options_of(p: dict) -> list[S2Leaf]:
    return [o for g in p["s2_granules"] for o in stage2_leaf_options(g, p["ipa_bits"])]


def simulate_all(p: dict) -> dict:
    """Stage-1 runs (baseline and KTR from one run) and stage-2 runs, each pooled over
    ``seeds``: every leaf option on
    the main workload, the debated and pKVM configurations on every workload, and the pKVM
    configuration with exits to EL2 at each swept rate. Keys ``("s1", workload)``,
    ``("s2", workload, label)``, ``("el2", exits_per_kinstr)``."""
    from . import ktr
    m = _machine(p)
    runs = {}
    opts = {o.label: o for o in options_of(p)}
    seeds = p["seeds"]
    for w in p["workloads"]:
        runs[("s1", w)] = ktr.simulate_seeds(ktr.WORKLOADS[w], m, _run(p), seeds)
        labels = list(opts) if w == p["workload"] else [p["debate_leaf"], p["pkvm_leaf"]]
        for lab in labels:
            s2 = stage2_setup(m, opts[lab], text_aligned=p["text_aligned"], ipa_bits=p["ipa_bits"])
            runs[("s2", w, lab)] = ktr.simulate_seeds(ktr.WORKLOADS[w], m, _run(p), seeds,
                                                      stage2=s2)
    s2 = stage2_setup(m, opts[p["pkvm_leaf"]], text_aligned=p["text_aligned"],
                      ipa_bits=p["ipa_bits"])
    for rate in sorted({p["el2_exits_per_kinstr"], *p["el2_exit_sweep"]}):
        runs[("el2", rate)] = ktr.simulate_seeds(ktr.WORKLOADS[p["workload"]], m,
                                                 _run(p, rate), seeds, stage2=s2)
    return runs


def _lat(p: dict, ratio: float | None = None):
    return np.asarray(eng.generic(2, p["local_ns"], p["remote_ratio"] if ratio is None
                                   else ratio).latency_ns)


def _policy(p: dict):
    from . import ktr
    return {"local": ktr.UserPolicy.LOCAL, "interleave": ktr.UserPolicy.INTERLEAVE,
            "remote": ktr.UserPolicy.REMOTE, "node0": ktr.UserPolicy.NODE0}[
        p["baseline_user_policy"]]


def _walk_leaf_bytes(g: eng.Geometry, leaf_bytes: int) -> int | None:
    """The leaf a walk ends at for a leaf (or contiguous range) of ``leaf_bytes``: the
    block it is, or a range of; None for pages and ranges of pages."""
    for lv in g.leaf_levels:
        if lv < 3 and leaf_bytes in (g.leaf_bytes(lv), g.cont_bytes(lv)):
            return g.leaf_bytes(lv)
    return None


def comparison_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Per stage-2 leaf option on the main workload: walks, references per walk against the
    uncached bound ``n + (n+1) m``, walk time, loss against KTR and its decomposition, and
    the gain over the baseline."""
    import polars as pl
    from . import ktr
    pol = _policy(p)
    costs = _costs(p)
    lat = _lat(p)
    w = p["workload"]
    ck = runs[("s1", w)]
    t_base = ktr.system_time_ns(ck, lat, ktr.Scheme.BASELINE, pol, costs)
    g1 = eng.arm64(p["s1_granule"], 48)
    rows = []
    for o in options_of(p):
        cs = runs[("s2", w, o.label)]
        g2 = eng.stage2(o.granule, p["ipa_bits"])
        d = decompose_walks(ck, cs, lat, pol, costs)
        block = _walk_leaf_bytes(g2, o.leaf_bytes)
        rows.append({"label": o.label, "granule": o.granule, "leaf_bytes": o.leaf_bytes,
                     "walks_pki": 1000 * cs.walks / cs.instructions,
                     "refs_per_walk": cs.walk_refs / cs.walks if cs.walks else 0.0,
                     "bound_refs": nested_references(g1, g2, None, block),
                     "s1_levels": g1.levels, "s2_levels": g2.levels,
                     "walk_ns_pki": 1000 * d["walk_ns_stage2"] / (ck.nodes * cs.instructions),
                     "loss_vs_ktr": d["loss_ns"] / d["ktr_ns"], "a_ns": d["a_ns"],
                     "b_ns": d["b_ns"], "c_ns": d["c_ns"], "share_a": d["share_a"],
                     "gain_vs_baseline": t_base / d["stage2_ns"] - 1.0})
    ktr_walk = ktr.source_times_ns(ck, lat, ktr.Scheme.KTR, pol, costs)["walk_ns"]
    rows.append({"label": "KTR (stage 1 only)", "granule": p["s1_granule"], "leaf_bytes": 0,
                 "walks_pki": 1000 * ck.walks / ck.instructions,
                 "refs_per_walk": ck.walk_refs / ck.walks if ck.walks else 0.0,
                 "bound_refs": g1.levels, "s1_levels": g1.levels, "s2_levels": 0,
                 "walk_ns_pki": 1000 * ktr_walk / (ck.nodes * ck.instructions),
                 "loss_vs_ktr": 0.0, "a_ns": 0.0, "b_ns": 0.0, "c_ns": 0.0,
                 "share_a": float("nan"),
                 "gain_vs_baseline": t_base / ktr.system_time_ns(ck, lat, ktr.Scheme.KTR, pol,
                                                                 costs) - 1.0})
    return pl.DataFrame(rows)


# ---- the overheads beyond the walk: exits, text-write traps, stage-2 sync (S4) ----------------
def _patch_cost(p: dict, **over):
    from . import ktr
    v = {k: over.get(k, p[k]) for k in ("patch_sites", "fixmap_ns", "cmo_ns", "sync_ns")}
    return ktr.PatchCost(sites=int(v["patch_sites"]), fixmap_ns=float(v["fixmap_ns"]),
                         cmo_ns=float(v["cmo_ns"]), sync_ns=float(v["sync_ns"]),
                         sync=ktr.PatchSync[p["patch_sync"].upper()])


def _sync_cost(p: dict, **over) -> SyncCost:
    v = {k: float(over.get(k, p[k])) for k in ("tlbi_ns", "dsb_ish_ns", "dsb_ish_per_cpu_ns",
                                                "el2_trap_ns", "llc_ns")}
    return SyncCost(tlbi_ns=v["tlbi_ns"], dsb_ish_ns=v["dsb_ish_ns"],
                    dsb_ish_per_cpu_ns=v["dsb_ish_per_cpu_ns"], cached_ns=v["llc_ns"],
                    trap_ns=v["el2_trap_ns"], tlbi_per_set=bool(p["s2_tlbi_per_set"]))


def _topo(p: dict, nodes: int = 2, ratio: float | None = None, **over):
    return eng.generic(nodes, p["local_ns"], p["remote_ratio"] if ratio is None else ratio,
                        cpus_per_node=int(over.get("cores_per_node", p["cores_per_node"])))


def overhead_shares(p: dict, ratio: float | None = None, nodes: int = 2,
                    **over) -> dict[str, float]:
    """Shares of the machine's CPU time at the given (default: published) rates:
    ``text_base`` the baseline's text patching (one copy, EL1), ``text_ktr`` KTR's (one copy
    per node, EL1), ``text_stage2`` stage-2 replication's (one copy per node, every
    instruction trapped to EL2), ``sync`` keeping one host stage-2 table set per node up
    to date. ``over`` replaces rates and costs (any of :data:`OVERHEAD_ASSUMED`; other
    names are ignored)."""
    from . import ktr
    topo = _topo(p, nodes, ratio, **over)
    cost = _patch_cost(p, **over)
    sc = _sync_cost(p, **over)
    rate = float(over.get("patches_per_s", p["patches_per_s"]))
    pages = float(over.get("s2_pages_per_s", p["s2_pages_per_s"]))
    g2 = eng.stage2(p["s1_granule"], p["ipa_bits"])
    return {"text_base": ktr.patch_overhead_fraction(topo, 1, rate, cost),
            "text_ktr": ktr.patch_overhead_fraction(topo, nodes, rate, cost),
            "text_stage2": text_write_fraction(topo, nodes, rate, cost, sc.trap_ns),
            "sync": stage2_sync_fraction(topo.latency_ns, nodes, pages, g2, sc, topo.cpus)}


def _host_over(over: dict) -> dict:
    return {k: v for k, v in over.items() if k in _HOST_KEYS}


def stage2_net_gain(p: dict, runs: dict, ratio: float | None = None, exit_rate: float = 0.0,
                    extra_exit_ns: float | None = None, **over) -> float:
    """Net gain of stage-2 replication (pKVM leaves) over the VHE baseline with exits at
    ``exit_rate`` per CPU-second, text writes and stage-2 sync at their rates."""
    g = stage2_gain(p, runs, ratio, **_host_over(over))
    sh = overhead_shares(p, ratio, **over)
    extra = p["nvhe_exit_extra_ns"] if extra_exit_ns is None else extra_exit_ns
    return net_gain(g, exit_rate, extra, sh["text_stage2"] + sh["sync"], sh["text_base"])


def schemes_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Throughput relative to the baseline of KTR and of stage-2 replication (debated and
    pKVM leaf configurations) for every workload, against the ratio, no VM exits; every
    scheme pays its text patching at ``patches_per_s`` (the baseline one copy, KTR one per
    node, stage 2 one per node behind a trap) and stage 2 its table sync at
    ``s2_pages_per_s``."""
    import polars as pl
    from . import ktr
    pol = _policy(p)
    costs = _costs(p)
    rows = []
    for w in p["workloads"]:
        ck = runs[("s1", w)]
        for r in sorted({1.0, p["remote_ratio"], *p["ratio_range"]}):
            lat = _lat(p, r)
            sh = overhead_shares(p, r)
            tb = ktr.system_time_ns(ck, lat, ktr.Scheme.BASELINE, pol, costs) / (
                1.0 - sh["text_base"])
            tk = ktr.system_time_ns(ck, lat, ktr.Scheme.KTR, pol, costs) / (1.0 - sh["text_ktr"])
            rows.append({"workload": w, "ratio": r, "scheme": "KTR", "gain": tb / tk - 1})
            for lab in (p["debate_leaf"], p["pkvm_leaf"]):
                ts = ktr.system_time_ns(runs[("s2", w, lab)], lat, ktr.Scheme.STAGE2, pol,
                                        costs) / (1.0 - sh["text_stage2"] - sh["sync"])
                rows.append({"workload": w, "ratio": r, "scheme": f"stage 2, {lab}",
                             "gain": tb / ts - 1})
    return pl.DataFrame(rows)


def stage2_gain(p: dict, runs: dict, ratio: float | None = None, **cost_over) -> float:
    """Gain of stage-2 replication in the pKVM configuration over the VHE baseline from the
    simulated work alone: no exits, text writes or stage-2 sync (see
    :func:`stage2_net_gain`)."""
    from . import ktr
    pol = _policy(p)
    costs = _costs(p, **cost_over)
    lat = _lat(p, ratio)
    w = p["workload"]
    tb = ktr.system_time_ns(runs[("s1", w)], lat, ktr.Scheme.BASELINE, pol, costs)
    ts = ktr.system_time_ns(runs[("s2", w, p["pkvm_leaf"])], lat, ktr.Scheme.STAGE2, pol, costs)
    return tb / ts - 1.0


def exit_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Net gain of stage-2 replication against the VM exit rate per CPU, for the assumed
    range of the extra cost of an exit without VHE: exits alone, and with text-write traps
    and stage-2 sync at their published rates and at the top of their assumed rates."""
    import polars as pl
    g = stage2_gain(p, runs)
    specs = overhead_specs()
    sh = overhead_shares(p)
    top = overhead_shares(p, patches_per_s=specs["patches_per_s"][1],
                          s2_pages_per_s=specs["s2_pages_per_s"][1])
    variants = (("exits only", 0.0, 0.0),
                ("+ traps, sync: published rates", sh["text_stage2"] + sh["sync"],
                 sh["text_base"]),
                ("+ traps, sync: top assumed rates", top["text_stage2"] + top["sync"],
                 top["text_base"]))
    rows = []
    lo, hi = p["nvhe_exit_extra_range"]
    for extra in sorted({lo, p["nvhe_exit_extra_ns"], hi}):
        for rate in p["exit_rates"]:
            for label, fs, fb in variants:
                rows.append({"exit_rate": float(rate), "extra_ns": float(extra),
                             "overheads": label,
                             "net_gain": net_gain(g, rate, extra, fs, fb)})
    return pl.DataFrame(rows)


def params_path():
    """``params/pkvm.yaml`` of the project this package lives in."""
    from pathlib import Path
    return Path(__file__).resolve().parents[2] / "params" / "pkvm.yaml"


def overhead_specs() -> dict[str, tuple[float, float]]:
    """``name -> (lo, hi)``: the assumed ranges of :data:`OVERHEAD_ASSUMED` in the params
    file."""
    from ..suite import params as _params
    assumed = _params.load(params_path()).assumed()
    missing = [k for k in OVERHEAD_ASSUMED if k not in assumed]
    if missing:
        raise ConfigError(f"needs an assumed range for {', '.join(missing)}", "params/pkvm.yaml")
    return {k: tuple(assumed[k]) for k in OVERHEAD_ASSUMED}


def overhead_points(p: dict, n: int, specs: dict | None = None) -> list[dict]:
    """``n`` Latin-hypercube points over the overheads' assumed ranges: each range cut into
    ``n`` strata visited once each in random order (from ``seed``), log scale where a range
    spans a factor of 4 or more, integer parameters rounded."""
    specs = overhead_specs() if specs is None else specs
    return latin_hypercube(specs, n, [p["seed"], 4], p)


def s4_sweep(p: dict, runs: dict) -> list[dict]:
    """Crossover exit rate (every overhead included) over the joint sweep of the assumed
    per-exit cost, walk stall share and ratio range, each crossed with
    ``s4_overhead_points`` Latin-hypercube points of the text-write and stage-2 sync rates
    and costs (:func:`overhead_points`)."""
    out = []
    lo, hi = p["nvhe_exit_extra_range"]
    points = overhead_points(p, p["s4_overhead_points"])
    for sw in sorted({*p["stall_walk_range"], p["stall_walk"]}):
        for r in sorted({*p["ratio_range"], p["remote_ratio"]}):
            g = stage2_gain(p, runs, r, stall_walk=sw)
            shares = [overhead_shares(p, r, **pt) for pt in points]
            for extra in sorted({lo, p["nvhe_exit_extra_ns"], hi}):
                for pt, sh in zip(points, shares):
                    out.append({"params": {"nvhe_exit_extra_ns": float(extra), "stall_walk": sw,
                                           "remote_ratio": float(r), **pt},
                                "value": crossover_exit_rate(g, extra,
                                                             sh["text_stage2"] + sh["sync"],
                                                             sh["text_base"])})
    return out


def s4_zero_causes(p: dict, runs: dict, sweep: list[dict]) -> dict:
    """Why the crossover is 0 at the points of S4's sweep where it is: stage 2 gains
    nothing to begin with (``no_gain``), the text-write traps alone (``text``) or the
    stage-2 sync alone (``sync``) cancel the gain, or only both together do (``both``);
    with the lowest rate of each cause (``text_min_patches_per_s``,
    ``sync_min_pages_per_s``)."""
    out = {"no_gain": 0, "text": 0, "sync": 0, "both": 0,
           "text_min_patches_per_s": float("inf"), "sync_min_pages_per_s": float("inf")}
    gains = {}
    for x in sweep:
        if x["value"] != 0.0:
            continue
        pt = x["params"]
        key = (pt["stall_walk"], pt["remote_ratio"])
        if key not in gains:
            gains[key] = stage2_gain(p, runs, pt["remote_ratio"], stall_walk=pt["stall_walk"])
        g = gains[key]
        if g <= 0:
            out["no_gain"] += 1
            continue
        sh = overhead_shares(p, pt["remote_ratio"], **pt)
        be = g / (1.0 + g)
        if (sh["text_stage2"] - sh["text_base"]) / (1.0 - sh["text_base"]) >= be:
            out["text"] += 1
            out["text_min_patches_per_s"] = min(out["text_min_patches_per_s"],
                                                pt["patches_per_s"])
        elif sh["sync"] >= be:
            out["sync"] += 1
            out["sync_min_pages_per_s"] = min(out["sync_min_pages_per_s"], pt["s2_pages_per_s"])
        else:
            out["both"] += 1
    return out


def overhead_frames(p: dict, runs: dict) -> tuple["pl.DataFrame", "pl.DataFrame"]:
    """Each overhead of stage-2 replication against its own rate on the 2-node machine, as
    the share of time it costs (``loss``): exits (per CPU, at ``nvhe_exit_extra_ns`` each:
    rate x extra), text writes (machine-wide patches per second: the share above the
    baseline's own patching, ``(f - f_base) / (1 - f_base)``, for the trapped writes and,
    for comparison, KTR's) and stage-2 sync (machine-wide page cycles per second). Alone,
    an overhead cancels the gain where its loss reaches ``gain / (1 + gain)``; the second
    frame gives that crossover rate per overhead."""
    import polars as pl
    from . import ktr
    g = stage2_gain(p, runs)
    be = g / (1.0 + g) if g > 0 else 0.0
    topo = _topo(p)
    cost = _patch_cost(p)
    sc = _sync_cost(p)
    g2 = eng.stage2(p["s1_granule"], p["ipa_bits"])
    # shares per event per second
    a_b = ktr.patch_overhead_fraction(topo, 1, 1.0, cost)
    a_s = text_write_fraction(topo, 2, 1.0, cost, sc.trap_ns)
    a_k = ktr.patch_overhead_fraction(topo, 2, 1.0, cost)
    a_y = stage2_sync_fraction(topo.latency_ns, 2, 1.0, g2, sc, topo.cpus)
    a_e = p["nvhe_exit_extra_ns"] * 1e-9
    def text(a_new):
        # the baseline's own patching cannot take the whole machine either
        return lambda r: (a_new - a_b) * r / (1.0 - a_b * r) if a_b * r < 1.0 else None

    comps = (("VHE exits (per CPU)", "exits/s per CPU", lambda r: r * a_e),
             ("text-write traps, stage 2", "patches/s", text(a_s)),
             ("text writes, KTR (no trap)", "patches/s", text(a_k)),
             ("stage-2 sync", "page cycles/s", lambda r: a_y * r))
    rows = []
    for name, unit, loss in comps:
        for r in p["overhead_rates"]:
            x = loss(float(r))
            if x is not None and 0.0 <= x < 1.0:
                rows.append({"overhead": name, "rate_unit": unit, "rate": float(r),
                             "loss": x, "break_even": be})
    cross = {"VHE exits (per CPU)": vhe_crossover_rate(g, p["nvhe_exit_extra_ns"]),
             "text-write traps, stage 2": _text_crossover(be, a_s, a_b),
             "text writes, KTR (no trap)": _text_crossover(be, a_k, a_b),
             "stage-2 sync": be / a_y if a_y > 0 else float("inf")}
    cross_rows = [{"overhead": k, "crossover_rate": float(v), "break_even": be, "gain": g}
                  for k, v in cross.items()]
    return pl.DataFrame(rows), pl.DataFrame(cross_rows)


def _text_crossover(be: float, a_new: float, a_base: float) -> float:
    """Patch rate at which ``(a_new r - a_base r) / (1 - a_base r)`` reaches ``be``."""
    d = a_new - a_base + be * a_base
    if be <= 0:
        return 0.0
    return be / d if d > 0 else float("inf")


def event_cost_frame(p: dict) -> "pl.DataFrame":
    """The cost of one event against the node count, with its counted events: a text patch
    under KTR (EL1, one write per copy) and under stage-2 replication (a trap per
    instruction, then the same writes from EL2), and one page cycle of host stage-2 sync
    (every set written and invalidated)."""
    import polars as pl
    from . import ktr
    cost = _patch_cost(p)
    sc = _sync_cost(p)
    g2 = eng.stage2(p["s1_granule"], p["ipa_bits"])
    rows = []
    for n in p["overhead_nodes"]:
        topo = _topo(p, n)
        ev_k = text_write_events(n, cost.sites, False)
        ev_s = text_write_events(n, cost.sites, True)
        cyc = stage2_page_cycle(topo.latency_ns, n, g2, sc, topo.cpus)
        rows += [
            {"nodes": n, "event": "text patch, KTR", "ns": ktr.patch_window_ns(topo, n, cost),
             "traps": ev_k["traps"], "copy_writes": ev_k["copy_writes"],
             "descriptor_writes": 0, "tlbis": 0},
            {"nodes": n, "event": "text patch, stage 2",
             "ns": trapped_patch_window_ns(topo, n, cost, sc.trap_ns),
             "traps": ev_s["traps"], "copy_writes": ev_s["copy_writes"],
             "descriptor_writes": 0, "tlbis": 0},
            {"nodes": n, "event": "stage-2 page cycle", "ns": cyc["ns"], "traps": cyc["traps"],
             "copy_writes": 0, "descriptor_writes": cyc["descriptor_writes"],
             "tlbis": cyc["tlbis"]}]
    return pl.DataFrame(rows)


def el2_frame(p: dict, runs: dict) -> "pl.DataFrame":
    """Per node and exit rate: memory time per exit of hypervisor text fetches and of the
    walks of the hypervisor's own stage-1 tables (EL2 has no stage 2: one copy of text and
    tables, on node 0), from the runs with exits."""
    import polars as pl
    from . import ktr
    pol = _policy(p)
    rows = []
    for key, c in runs.items():
        if not (isinstance(key, tuple) and key[0] == "el2"):
            continue
        hyp = c.classes.HYP
        fetch = ktr.class_memory_ns(c, _lat(p), hyp, ktr.Scheme.STAGE2, pol, _costs(p),
                                    source=int(eng.Source.IFETCH))
        walks = ktr.class_memory_ns(c, _lat(p), hyp, ktr.Scheme.STAGE2, pol, _costs(p),
                                    source=int(eng.Source.WALK))
        exits = max(c.exits, 1)
        reads = float(c.mem[int(eng.Source.IFETCH), c.sim_node, hyp]) / exits
        wreads = float(c.mem[int(eng.Source.WALK), c.sim_node, hyp]) / exits
        for node in range(c.nodes):
            rows.append({"exits_per_kinstr": float(key[1]), "node": node,
                         "fetch_ns_per_exit": float(fetch[node]) / exits,
                         "walk_ns_per_exit": float(walks[node]) / exits,
                         "ns_per_exit": float(fetch[node] + walks[node]) / exits,
                         "exits": c.exits, "hyp_mem_reads_per_exit": reads,
                         "hyp_walk_mem_reads_per_exit": wreads})
    return pl.DataFrame(rows).sort(["exits_per_kinstr", "node"])


def memory_frame(p: dict) -> "pl.DataFrame":
    """S6: host stage-2 table bytes per node set, reserved (pKVM's worst case) and used,
    per node count, granule and leaf policy, with per-node copies of the text range."""
    import polars as pl
    rows = []
    for gran in p["s6_granules"]:
        g = eng.stage2(gran, p["ipa_bits"])
        for n in p["s6_nodes"]:
            mem = HostMemory(ram_bytes=p["s6_ram_per_node_bytes"] * n, nodes=n)
            for leaf in ("page", "block"):
                r = stage2_memory(mem, g, leaf, text_bytes=p["text_bytes"] + p["rodata_bytes"],
                                  text_aligned=p["text_aligned"])
                rows.append({"granule": gran, "nodes": n, "leaf": leaf,
                             "ram_bytes": mem.ram_bytes, **r})
    return pl.DataFrame(rows)


def claim_values(p: dict, runs: dict, comp, exits, el2, mem) -> dict[str, dict]:
    """Values, units, sweeps and explanations of S1-S6 at these parameters."""
    from . import ktr
    out = {}
    deb = comp.filter(comp["label"] == p["debate_leaf"]).row(0, named=True)
    s2rows = comp.filter(comp["leaf_bytes"] > 0).sort("leaf_bytes")
    a_dom = [r["label"] for r in s2rows.iter_rows(named=True)
             if r["share_a"] == r["share_a"] and r["share_a"] > 0.5]
    b_dom = [r["label"] for r in s2rows.iter_rows(named=True)
             if r["share_a"] == r["share_a"] and r["share_a"] <= 0.5]
    sweep = []
    ck = runs[("s1", p["workload"])]
    cs = runs[("s2", p["workload"], p["debate_leaf"])]
    pol = _policy(p)
    for sw in sorted({*p["stall_walk_range"], p["stall_walk"]}):
        for si in sorted({*p["stall_ifetch_range"], p["stall_ifetch"]}):
            for r in sorted({*p["ratio_range"], p["remote_ratio"]}):
                d = decompose_walks(ck, cs, _lat(p, r), pol, _costs(p, stall_walk=sw,
                                                                    stall_ifetch=si))
                sweep.append({"params": {"stall_walk": sw, "stall_ifetch": si,
                                         "remote_ratio": float(r)}, "value": d["share_a"]})
    common = (f"With {p['debate_leaf']} stage-2 leaves the loss against KTR is "
              f"{deb['loss_vs_ktr']:+.1%} of KTR's time, of which more walks (TLB footprint) "
              f"are a share of {deb['share_a']:.2f} and longer walks the rest "
              f"({deb['refs_per_walk']:.2f} references per walk against a bound of "
              f"{deb['bound_refs']}); footprint dominates at "
              f"{', '.join(a_dom) if a_dom else 'no size'} and walk length at "
              f"{', '.join(b_dom) if b_dom else 'no size'}.")
    out["S1"] = {"value": deb["share_a"], "unit": "", "sweep": sweep, "decided_by": None,
                 "explanation": common}
    out["S2"] = {"value": deb["share_a"], "unit": "", "sweep": sweep, "decided_by": None,
                 "explanation": common}
    g4 = comp.filter((comp["granule"] == p["s2_granules"][0]) & (comp["leaf_bytes"] > 0)
                     ).sort("leaf_bytes")
    wl = g4["walk_ns_pki"].to_list()
    out["S3"] = {"value": {"leaf_bytes": g4["leaf_bytes"].to_list(), "walk_ns": wl},
                 "unit": "ns per 1000 instructions", "sweep": [], "decided_by": None,
                 "explanation": (
                     f"With the {p['s2_granules'][0]} stage-2 granule the walk time falls from "
                     f"{wl[0]:.0f} to {wl[-1]:.0f} ns per 1000 instructions as the leaf grows "
                     f"from {g4['label'][0]} to {g4['label'][-1]}: a larger stage-2 leaf ends "
                     f"the nested walks earlier and lets the combined TLB entries keep the "
                     f"stage-1 size; a range that is not a multiple of the block (the text "
                     f"copy) keeps page leaves.")}
    g = stage2_gain(p, runs)
    sh = overhead_shares(p)
    f_s = sh["text_stage2"] + sh["sync"]
    cross = crossover_exit_rate(g, p["nvhe_exit_extra_ns"], f_s, sh["text_base"])
    cross0 = vhe_crossover_rate(g, p["nvhe_exit_extra_ns"])
    _curves, oc = overhead_frames(p, runs)
    cr = dict(zip(oc["overhead"].to_list(), oc["crossover_rate"].to_list()))
    s4 = s4_sweep(p, runs)
    cv = [x["value"] for x in s4]
    gone = sum(v == 0.0 for v in cv) / len(cv)
    zc = s4_zero_causes(p, runs, s4)
    why = []
    if zc["text"]:
        why.append(f"{zc['text']} where the trapped text writes alone cancel the gain (from "
                   f"{zc['text_min_patches_per_s']:.3g} patches/s)")
    if zc["sync"]:
        why.append(f"{zc['sync']} where stage-2 sync alone does (from "
                   f"{zc['sync_min_pages_per_s']:.3g} page cycles/s)")
    if zc["both"]:
        why.append(f"{zc['both']} where only both together do")
    if zc["no_gain"]:
        why.append(f"{zc['no_gain']} where stage 2 gains nothing to begin with")
    zero_text = (f"; it is 0 (no exit budget left) at {gone:.0%} of the points: "
                 f"{', '.join(why)}" if why else "; it is never 0")
    out["S4"] = {"value": cross, "unit": "exits/s", "sweep": s4,
                 "decided_by": ktr.most_influential(s4),
                 "explanation": (
                     f"Stage-2 replication with {p['pkvm_leaf']} leaves gains {g:+.1%} over the "
                     f"VHE baseline on the simulated work; at the published rates, text writes "
                     f"trapped to EL2 ({p['patches_per_s']:g} patches/s of {p['patch_sites']} "
                     f"instructions, {p['el2_trap_ns']:g} ns per trap) take "
                     f"{sh['text_stage2'] - sh['text_base']:.2g} of the machine beyond the "
                     f"baseline's own patching and keeping one host stage-2 table set per node "
                     f"in sync ({p['s2_pages_per_s']:g} page cycles/s) {sh['sync']:.2g}; with "
                     f"them and {p['nvhe_exit_extra_ns']:g} ns more per exit without VHE the net "
                     f"gain reaches zero at {cross:.3g} exits per second per CPU ({cross0:.3g} "
                     f"with exits alone). Alone, the trapped text writes cancel the gain at "
                     f"{cr['text-write traps, stage 2']:.3g} patches/s (KTR's untrapped writes "
                     f"at {cr['text writes, KTR (no trap)']:.3g}) and stage-2 sync at "
                     f"{cr['stage-2 sync']:.3g} page cycles/s. Over the joint sweep (per-exit "
                     f"cost, walk stall share, ratio range and {p['s4_overhead_points']} "
                     f"Latin-hypercube points of the overheads' assumed rates and costs) the "
                     f"crossover spans {min(cv):.3g} to {max(cv):.3g}{zero_text}.")}
    main = el2.filter(el2["exits_per_kinstr"] == float(p["el2_exits_per_kinstr"])).sort("node")
    nodes = main["node"].to_list()
    ns = main["ns_per_exit"].to_list()
    far = main.filter(main["node"] == max(nodes)).row(0, named=True)
    others = el2.filter(el2["node"] == max(nodes)).sort("exits_per_kinstr")
    spread = ", ".join(f"{r['ns_per_exit']:.0f} ns at {r['exits_per_kinstr']:g}"
                       for r in others.iter_rows(named=True))
    out["S5"] = {"value": {"node": nodes, "ns": ns}, "unit": "ns per exit", "sweep": [],
                 "decided_by": None,
                 "explanation": (
                     f"EL2 text and the hypervisor's own stage-1 tables have one copy, on node "
                     f"0, and EL2 translates in one stage (1D walks of up to "
                     f"{eng.arm64(p['s1_granule'], 48).levels} references, no stage 2): at "
                     f"{p['el2_exits_per_kinstr']:g} exits per 1000 instructions "
                     f"{far['hyp_mem_reads_per_exit']:.2g} text lines and "
                     f"{far['hyp_walk_mem_reads_per_exit']:.2g} table lines per exit come from "
                     f"memory (over {far['exits']} simulated exits), costing {ns[0]:.0f} ns on "
                     f"node 0 and {far['ns_per_exit']:.0f} ns on the remote node, "
                     f"{far['walk_ns_per_exit']:.0f} ns of it walks "
                     f"(remote node: {spread} exits per 1000 instructions): between exits its "
                     f"{p['hyp_text_bytes'] // 1024} KiB stay in the L2 and LLC, whose pressure "
                     f"from the node's other cores the model carries only as a smaller LLC.")}
    b = mem.filter((mem["granule"] == p["s6_granules"][0]) & (mem["leaf"] == "block")
                   ).sort("nodes")
    rb = b["reserved_bytes"].to_list()
    ub = b["used_bytes"].to_list()
    ram = b["ram_bytes"].to_list()
    out["S6"] = {"value": {"nodes": b["nodes"].to_list(), "reserved_bytes": rb},
                 "unit": "bytes", "sweep": [], "decided_by": None,
                 "explanation": (
                     f"pKVM reserves stage-2 tables for every host page at page granularity "
                     f"(host_s2_pgtable_pages) and every node's set covers all of it, so with "
                     f"{p['s6_ram_per_node_bytes'] / 2**30:.0f} GiB per node the reservation "
                     f"grows from {rb[0] / 2**20:.0f} MiB on {b['nodes'][0]} node to "
                     f"{rb[-1] / 2**20:.0f} MiB on {b['nodes'][-1]} ({rb[-1] / ram[-1]:.2%} of "
                     f"RAM), while the block-mapped sets actually use {ub[-1] / 2**20:.2f} MiB.")}
    return out


def results_frame(p: dict, scenario: str, comp, schemes, exits, el2, mem, overheads=None,
                  events=None) -> "pl.DataFrame":
    """The notebook's tidy frame (:mod:`kmm.results`)."""
    from .. import results
    seed = p["seed"]
    rows = []
    for r in comp.iter_rows(named=True):
        rows += results.rows_for(scenario, {"stage2": r["label"], "leaf_bytes": r["leaf_bytes"]},
                                 seed, {k: (float(r[k]), u) for k, u in (
                                     ("walks_pki", "per 1000 instructions"),
                                     ("refs_per_walk", "count"), ("bound_refs", "count"),
                                     ("walk_ns_pki", "ns per 1000 instructions"),
                                     ("loss_vs_ktr", "fraction"), ("a_ns", "ns"),
                                     ("b_ns", "ns"), ("c_ns", "ns"),
                                     ("gain_vs_baseline", "fraction"))
                                     if r[k] == r[k]})
    for r in schemes.iter_rows(named=True):
        rows += results.rows_for(scenario, {"workload": r["workload"], "scheme": r["scheme"],
                                            "latency_ratio": r["ratio"]}, seed,
                                 {"gain": (r["gain"], "fraction")})
    for r in exits.iter_rows(named=True):
        rows += results.rows_for(scenario, {"exit_rate": r["exit_rate"],
                                            "nvhe_exit_extra_ns": r["extra_ns"],
                                            "overheads": r["overheads"]}, seed,
                                 {"net_gain": (r["net_gain"], "fraction")})
    for r in el2.iter_rows(named=True):
        rows += results.rows_for(scenario, {"node": r["node"],
                                            "exits_per_kinstr": r["exits_per_kinstr"]}, seed,
                                 {"el2_ns_per_exit": (r["ns_per_exit"], "ns"),
                                  "el2_fetch_ns_per_exit": (r["fetch_ns_per_exit"], "ns"),
                                  "el2_walk_ns_per_exit": (r["walk_ns_per_exit"], "ns")})
    for r in (overheads.iter_rows(named=True) if overheads is not None else ()):
        rows += results.rows_for(scenario, {"overhead": r["overhead"], "rate": r["rate"]}, seed,
                                 {"overhead_loss": (r["loss"], "fraction")})
    for r in (events.iter_rows(named=True) if events is not None else ()):
        rows += results.rows_for(scenario, {"event": r["event"], "nodes": r["nodes"]}, seed,
                                 {"event_ns": (r["ns"], "ns"), "traps": (r["traps"], "count"),
                                  "copy_writes": (r["copy_writes"], "count"),
                                  "descriptor_writes": (r["descriptor_writes"], "count"),
                                  "tlbis": (r["tlbis"], "count")})
    for r in mem.iter_rows(named=True):
        rows += results.rows_for(scenario, {"granule": r["granule"], "nodes": r["nodes"],
                                            "leaf": r["leaf"]}, seed,
                                 {"reserved_bytes": (r["reserved_bytes"], "bytes"),
                                  "used_bytes": (r["used_bytes"], "bytes")})
    return results.frame(rows)


__all__ = ["S2Leaf", "stage2_leaf_options", "host_memory_for", "stage2_setup", "El2Path",
           "HYP_VMID", "HYP_TEXT_LEAF_LEVEL", "decompose_walks", "params_from", "simulate_all",
           "comparison_frame", "schemes_frame", "stage2_gain", "stage2_net_gain", "exit_frame",
           "s4_sweep", "s4_zero_causes", "overhead_shares", "overhead_points",
           "overhead_specs", "overhead_frames",
           "event_cost_frame", "el2_frame", "memory_frame", "claim_values", "results_frame",
           "net_gain", "vhe_crossover_rate", "crossover_exit_rate",
           "text_write_events", "trapped_patch_window_ns", "trapped_patch_machine_ns",
           "text_write_fraction", "SyncCost", "stage2_invalidation", "stage2_page_cycle",
           "stage2_sync_fraction", "OVERHEAD_ASSUMED", "hyp_pgtable_max_pages",
           "host_s2_reserved_pages", "HostMemory", "host_stage2_table", "stage2_memory",
           "walk_levels", "nested_references", "KVM_PGTABLE_MAX_LEVELS"]
