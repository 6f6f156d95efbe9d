"""pkvm: enums, frozen configurations, state, the conversion to kernel arrays, and the simulation.

Part of :mod:`kmm.mech.pkvm`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import engine as eng
from ...config import check_float, check_int
from ...engine import PageTable, Paint, Perm
from ...errors import ConfigError
from ..host.model import (Classes, ImagePlacement, patch_write_ns, PatchSync, Scheme, source_times_ns, Stage2Setup,
    system_time_ns, UDATA_PA)

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


#: The host's default stage-2 protection of memory and of MMIO in the model (the kernel's
#: ``PKVM_HOST_MEM_PROT`` is RWX and ``PKVM_HOST_MMIO_PROT`` RW; the model does not track X).
HOST_DEFAULT_PROT = Perm.RW


def host_stage2_table(mem: HostMemory, g: eng.Geometry, leaf: str = "block",
                      text: tuple[int, int, int] | None = None,
                      max_leaf_bytes: int | None = None, force_pte: bool = True) -> PageTable:
    """One host stage-2 table: identity map of every RAM region and the I/O window.

    ``leaf`` limits the leaves (``page``: no blocks or contiguous ranges; ``cont``:
    contiguous pages; ``block``: the largest block that fits; ``nocont``: blocks without
    contiguous ranges); ``max_leaf_bytes`` caps the leaf size (ranges are cut so that no
    larger aligned window exists). ``text`` is ``(ipa, size, pa)``: that IPA range maps to
    ``pa`` (a node's copy, or itself) read-only, so that writes trap to EL2.

    With ``force_pte`` (the kernel's behaviour) a range whose protection is not the
    host's default is mapped with pages whatever ``leaf`` says: the host stage 2 is created
    with ``host_stage2_force_pte_cb`` (arch/arm64/kvm/hyp/nvhe/mem_protect.c), which asks
    for page mappings wherever ``prot`` differs from ``PKVM_HOST_MEM_PROT`` (memory) or
    ``PKVM_HOST_MMIO_PROT`` (MMIO), since the stage-2 table is the only record of that
    state and a later map inside a block would discard it. The read-only text range is
    therefore page-mapped.
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
        if force_pte and perm != HOST_DEFAULT_PROT:
            pt.map(ipa, size, pa, perm, policy=Paint.PTES)
            continue
        for a, sz, p in _capped_pieces(ipa, size, pa, max_leaf_bytes, g):
            pt.map(a, sz, p, perm, policy=paint)
    return pt


def stage2_memory(mem: HostMemory, g: eng.Geometry, leaf: str = "block",
                  text_bytes: int = 0, text_aligned: bool = True,
                  max_levels: int = KVM_PGTABLE_MAX_LEVELS,
                  force_pte: bool = True) -> dict[str, int]:
    """Host stage-2 table memory with one table set per node.

    Returns ``reserved_bytes`` (``nodes`` times ``host_s2_pgtable_pages()``),
    ``used_bytes`` (the tables of every node's set, counted from the tables built: node 0
    maps the text IPA range to itself, node ``n`` to its copy in its own RAM) and
    ``used_one_set_bytes``. With ``text_aligned`` the copies keep the original's offset
    modulo 1 GiB (so stage-2 blocks could map them); otherwise they are offset by one
    granule page. With ``force_pte`` (the kernel's, :func:`host_stage2_table`) the
    read-only text range is page-mapped either way.
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
        b = host_stage2_table(mem, g, leaf, text, force_pte=force_pte).table_bytes()
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
    both shares zero this is ``1 / (1 / (1 + gain) + rate * extra) - 1``. Shares that
    would take the whole machine or more (``f_stage2 >= 1``: stage-2 sync at a high page
    rate, every donation making every CPU re-walk) leave no time for the work: -1.
    """
    if gain <= -1:
        raise ConfigError(f"gain must be > -1, got {gain}", "gain")
    if not 0.0 <= f_base < 1.0:
        raise ConfigError(f"must be a share of CPU time in [0, 1), got {f_base}", "f_base")
    if not f_stage2 >= 0.0:
        raise ConfigError(f"must be a non-negative share of CPU time, got {f_stage2}",
                          "f_stage2")
    if f_stage2 >= 1.0:
        return -1.0
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
    ev = text_write_events(copies, cost.sites, True)
    # the hypervisor's fixmap slot is cleared with a broadcast TLBI VALE2IS and DSB ISH
    # (arch/arm64/kvm/hyp/nvhe/mm.c fixmap_clear_slot), priced as the host's
    per_site = sum(patch_write_ns(topo, n, cost, patcher_nid) for n in range(copies))
    return ev["syncs"] * cost.sync_ns + ev["traps"] * trap_ns + cost.sites * per_site


def trapped_patch_machine_ns(topo, copies: int, cost, trap_ns: float,
                             patcher_nid: int = 0) -> float:
    """CPU time the whole machine loses to one trapped patch (every online CPU waits under
    ``stop_machine``, as :func:`kmm.mech.ktr.patch_machine_ns`)."""
    w = trapped_patch_window_ns(topo, copies, cost, trap_ns, patcher_nid)
    return w * topo.cpus if cost.sync == PatchSync.STOP_MACHINE else w


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
    rewalk_working_set : translations of its own work each CPU uses, of which the ``TLBI
        VMALLE1IS`` of a donation removes what it holds (at most ``tlb_entries``) and the
        CPU walks again (0: re-walks not charged)
    rewalk_refs : descriptor reads of one re-walk, a 2D walk (:func:`nested_references`)
    rewalk_memory_refs : of those, the reads served by memory (the rest by the LLC at
        ``cached_ns``; the reads are dependent, :func:`kmm.timing.walk_ns`)
    tlb_entries : the translations a CPU's TLB holds (the Neoverse N1 L2 TLB's 1280)
    """

    tlbi_ns: float = 10.0
    dsb_ish_ns: float = 200.0
    dsb_ish_per_cpu_ns: float = 5.0
    cached_ns: float = 30.0
    trap_ns: float = 500.0
    tlbi_per_set: bool = True
    rewalk_working_set: int = 0
    rewalk_refs: int = 24
    rewalk_memory_refs: float = 1.0
    tlb_entries: int = 1280

    def __post_init__(self):
        for f in ("tlbi_ns", "dsb_ish_ns", "dsb_ish_per_cpu_ns", "cached_ns", "trap_ns"):
            check_float(f, getattr(self, f), lo=0.0)
        check_int("rewalk_working_set", self.rewalk_working_set, lo=0)
        check_int("rewalk_refs", self.rewalk_refs, lo=1)
        check_float("rewalk_memory_refs", self.rewalk_memory_refs, lo=0.0)
        check_int("tlb_entries", self.tlb_entries, lo=1)


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


def donation_rewalks(latency_ns, sc: SyncCost, cpus: int) -> eng.InvalidationTime:
    """Every CPU's re-walks after one host stage-2 entry is replaced (a page donated or
    shared): ``__kvm_tlb_flush_vmid_ipa``'s ``TLBI VMALLE1IS`` empties every CPU's host
    stage-1 (combined) entries (:func:`kmm.timing.invalidation_scope`), each CPU holding
    ``min(rewalk_working_set, tlb_entries)`` of its translations in use
    (:func:`kmm.timing.lost_translations`), and each lost translation is walked again in
    two stages: ``rewalk_refs`` dependent reads, ``rewalk_memory_refs`` of them from memory
    at the mean latency of the machine's node pairs (the tables lie on one node, the CPUs on
    all), the rest from the LLC at ``cached_ns`` (:func:`kmm.timing.walk_ns`), charged to
    each CPU (:func:`kmm.timing.rewalk_time`, CPU 0 initiating): :class:`kmm.timing.Rewalk`
    with the mean latency given as the loaded one. The per-set invalidations of one
    donation follow each other within microseconds: the entries are lost once."""
    lat = np.asarray(latency_ns, dtype=np.float64)
    check_int("cpus", cpus, lo=1, hi=4096)
    scope = eng.invalidation_scope(eng.FlushKind.PKVM_HOST_STAGE2, 1)
    rw = eng.Rewalk(working_set=sc.rewalk_working_set, refs=sc.rewalk_refs,
                    memory_refs=sc.rewalk_memory_refs, cached_ns=sc.cached_ns,
                    memory_ns=float(lat.mean()))
    return rw.after(scope, cpus, sc.tlb_entries, initiator=0)


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

    ``ns`` is the time of the CPUs doing it (initiator, faulting CPUs) and ``rewalk_ns``
    every CPU's re-walks after the donation's invalidation (:func:`donation_rewalks`),
    ``rewalks`` their count: the machine loses ``ns + rewalk_ns``.
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
    rw = donation_rewalks(lat, sc, cpus)
    return {**ev, "ns": ns, "rewalks": rw.rewalks, "rewalk_ns": rw.total_ns}


def stage2_sync_fraction(latency_ns, sets: int, rate_per_s: float, g2: eng.Geometry,
                         sc: SyncCost, cpus: int) -> float:
    """Share of the machine's CPU time spent keeping ``sets`` host stage-2 table sets up
    to date at ``rate_per_s`` page cycles per second (:func:`stage2_page_cycle`)."""
    rate = check_float("rate_per_s", rate_per_s, lo=0.0)
    cyc = stage2_page_cycle(latency_ns, sets, g2, sc, cpus)
    return rate * (cyc["ns"] + cyc["rewalk_ns"]) / (cpus * 1e9)


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


def hypothetical_reason(option: S2Leaf, host_granule: str) -> str | None:
    """Why Linux builds no host stage 2 with this leaf; None when it does.

    KVM's host stage 2 uses the host's page size: ``prepare_host_vtcr``
    (arch/arm64/kvm/hyp/nvhe/mem_protect.c) takes its VTCR_EL2 from ``kvm_get_vtcr``
    (arch/arm64/kvm/hyp/pgtable.c), whose ``VTCR_EL2_FLAGS`` carry ``VTCR_EL2_TGRAN``, the
    granule of the kernel's ``PAGE_SIZE`` (``CONFIG_ARM64_*K_PAGES``,
    arch/arm64/include/asm/kvm_arm.h), and the table walker
    indexes with ``PAGE_SHIFT`` (``kvm_pgtable_idx``, ``kvm_granule_shift``): another
    stage-2 granule is hypothetical. Its leaves are pages and the blocks
    ``kvm_level_supports_block_mapping`` allows (``host_stage2_adjust_range``); no
    contiguous bit is set (``stage2_set_prot_attr``, arch/arm64/kvm/hyp/pgtable.c, writes
    memory type, permissions, shareability, AF and software bits only): contiguous ranges
    are hypothetical too. (Read in mainline: gregkh/linux, mem_protect.c at 2519003dd5fb,
    pgtable.c at 735d394779c9.)"""
    if option.granule != host_granule:
        return (f"{option.granule} stage-2 granule under {host_granule} host pages (KVM's "
                f"host stage 2 uses PAGE_SIZE)")
    if option.leaf in ("cont", "block"):
        return "contiguous range (KVM's stage-2 code sets no contiguous bit)"
    return None


def footprint_walk_parts(t_ktr: float, t_reach: float, t_walk: float,
                         t_full: float) -> dict[str, float | None]:
    """Stage 2's change against KTR split by counterfactual runs: ``t_reach`` changes only
    what a TLB entry covers (1D walks filling entries of the combined stage-1+2 size),
    ``t_walk`` only the walk (2D walks filling entries of the stage-1 size), ``t_full``
    both. ``footprint_ns = t_reach - t_ktr``, ``walk_ns = t_walk - t_ktr``,
    ``interaction_ns`` the rest of ``full_ns = t_full - t_ktr`` (the parts sum to it).
    ``share_footprint = footprint / (footprint + walk)``, None (undefined, never clipped)
    when either part is negative or both are zero.

    >>> footprint_walk_parts(100.0, 130.0, 110.0, 145.0)["share_footprint"]
    0.75
    """
    fp, wk, full = t_reach - t_ktr, t_walk - t_ktr, t_full - t_ktr
    share = fp / (fp + wk) if fp >= 0 and wk >= 0 and fp + wk > 0 else None
    return {"footprint_ns": fp, "walk_ns": wk, "interaction_ns": full - fp - wk,
            "full_ns": full, "share_footprint": share}


def counterfactual_walks(c_ktr, c_reach, c_walk, c_full, latency_ns, policy,
                         costs) -> dict[str, float | None]:
    """:func:`footprint_walk_parts` from the counts of the four runs (KTR, entries of the
    combined size over 1D walks, 2D walks filling stage-1-sized entries, stage 2), each
    timed with the tables its walk reads (``Scheme.KTR`` for 1D walks, ``Scheme.STAGE2``
    for 2D walks: the stage-1 kernel tables unreplicated)."""
    def t(c, scheme):
        return system_time_ns(c, latency_ns, scheme, policy, costs)
    return footprint_walk_parts(t(c_ktr, Scheme.KTR), t(c_reach, Scheme.KTR),
                                t(c_walk, Scheme.STAGE2), t(c_full, Scheme.STAGE2))


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


HYP_POOLS = ("top", "local")


def hyp_pool_node(nodes: int) -> int:
    """Node of the hypervisor's memory pool: ``kvm_hyp_reserve`` (arch/arm64/kvm/pkvm.c)
    reserves the hyp stage-1 and host stage-2 table pages (``hyp_s1_pgtable_pages``,
    ``host_s2_pgtable_pages``) and the rest of the pool as one ``memblock_phys_alloc``
    region with no node; memblock allocates top down, so the pool lies at the top of RAM
    (a TCG boot of a Debian kernel with ``kvm-arm.mode=protected`` reserves it there):
    the last node."""
    check_int("nodes", nodes, lo=1)
    return nodes - 1


def stage2_setup(m, option: S2Leaf, *, text_aligned: bool = True, ipa_bits: int = 48,
                 ram_per_node_bytes: int = 256 * GiB, pool: str = "top",
                 walk_cache_page_leaves: bool = False):
    """Per-node host stage-2 tables for a simulated machine and the leaf lookup the full
    path needs (:class:`kmm.mech.ktr.Stage2Setup`).

    Node 0 maps the text/rodata IPA range to itself, node ``n`` to its copy at the same
    offset in its own RAM (``text_aligned``) or one granule page further; every set maps
    that range read-only, hence with pages (:func:`host_stage2_table`).

    ``pool``: where every node's stage-2 set and the hypervisor's own stage-1 tables are
    read from: ``top``, the one hyp pool at the top of RAM (:func:`hyp_pool_node`, the
    kernel's placement); ``local``, each node's set on its node and the hyp tables on node
    0 with the hyp text (a per-node pool pKVM does not have). ``walk_cache_page_leaves``:
    the stage-2 walk cache keeps IPA -> PA page leaves (False: blocks only, as the
    Cortex-A76/Neoverse N1 L2 TLB, :class:`kmm.walk.PathConfig`).
    """
    if pool not in HYP_POOLS:
        raise ConfigError(f"must be one of {', '.join(HYP_POOLS)}, got {pool!r}", "pool")
    g2 = eng.stage2(option.granule, ipa_bits)
    mem = host_memory_for(m, ram_per_node_bytes)
    place = ImagePlacement()
    size = -(-m.image.replicated_bytes // g2.page_bytes) * g2.page_bytes
    # page and contiguous-page painting never exceeds the option's size: no cuts needed
    cap = option.leaf_bytes if option.leaf in ("nocont", "block") else None
    # every set maps the text/rodata range read-only (writes trap to EL2), node 0 onto itself
    tables = {0: host_stage2_table(mem, g2, option.leaf, (place.pa_bytes, size, place.pa_bytes),
                                   cap)}
    for n in range(1, m.nodes):
        base = mem.regions()[n][0]
        pa = base + place.pa_bytes + (0 if text_aligned else g2.page_bytes)
        tables[n] = host_stage2_table(mem, g2, option.leaf, (place.pa_bytes, size, pa), cap)
    probe = tables[0].translate(UDATA_PA)
    if probe is None:
        raise ConfigError("the simulated host layout lies outside the stage-2 RAM map",
                          "ram_per_node_bytes")

    def leaf(pa, node):
        _o, level, cont, _p, _n = tables[node].translate_many(
            np.asarray(pa).astype(np.int64))
        if (level < -1).any():
            raise ConfigError("an access falls outside the host stage-2 map", "pa")
        return level.astype(np.int8), cont.astype(bool)

    if pool == "top":
        table_class = hyp_class = hyp_pool_node(m.nodes)  # a fixed-node class
    else:
        table_class, hyp_class = None, Classes(m.nodes).HYP
    return Stage2Setup(geometry=g2, table_leaf_level=int(probe.level), leaf=leaf,
                       path=lambda config: El2Path(config, hyp_class),
                       table_class=table_class,
                       walk_cache_page_leaves=bool(walk_cache_page_leaves))


def decompose_walks(c_ktr, c_s2, latency_ns, policy, costs) -> dict[str, float]:
    """Walk time of stage-2 replication against KTR, split symmetrically (the average of
    both orders) into (a) the change in the number of walks (TLB footprint: smaller combined
    entries) and (b) the change in the cost of a walk (2D references, stage-2 tables), plus
    the extra L2 TLB hits counted with (a); ``c_ns`` is the rest of the loss (the descriptor
    lines' pollution of caches). ``share_a`` = a / (a + b). Priced at mean walk costs, the
    parts can have either sign and the share can leave [0, 1]: the claims split the change
    by counterfactual runs instead (:func:`counterfactual_walks`); the study reads the loss
    and the walk times here."""
    n = c_ktr.nodes
    t_k = system_time_ns(c_ktr, latency_ns, Scheme.KTR, policy, costs)
    t_s = system_time_ns(c_s2, latency_ns, Scheme.STAGE2, policy, costs)
    sk = source_times_ns(c_ktr, latency_ns, Scheme.KTR, policy, costs)
    ss = source_times_ns(c_s2, latency_ns, Scheme.STAGE2, policy, costs)
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
