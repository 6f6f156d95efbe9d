"""kmm.mech.bbml2 against the kernel paths the review named (issue 31, BBML2 part): one
linear-alias change per page where the kernel makes one, the flushes each path issues,
fragmentation over uptime, and the ``force_pte_mapping()`` configurations."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmm.errors import ConfigError
from kmm.geometry import GiB, KiB, MiB
from kmm.mech import bbml2 as b
from kmm.mech.bbml2 import ChangeKind as K, ForcePte as F, LinearMapPolicy as P, MemoryMap
from kmm.mech.bbml2 import StreamConfig

MM4 = MemoryMap(4 * GiB)  # DRAM at 2 GiB, kernel alias 32 MiB at +2 MiB
PAGE = 4096


def _one_kind(kind, **over):
    w = [0.0] * len(K)
    w[int(kind)] = 1.0
    return StreamConfig(weights=tuple(w), **over)


# ---- B9: one change per page ----------------------------------------------------------------
def test_vmalloc_alias_changes_are_one_page_per_call():
    """arch/arm64/mm/pageattr.c change_memory_common: under rodata_full, a read-only change
    of a vmalloc area calls __change_memory_common(page_address(area->pages[i]), PAGE_SIZE)
    for each backing page, each followed by flush_tlb_kernel_range; physically consecutive
    pages are never merged into one call."""
    for kind in (K.MODULE, K.BPF, K.VMALLOC_RO):
        cfg = _one_kind(kind, events=30, alias_run_pages=16.0, free_fraction=0.0)
        s = b.make_stream(MM4, cfg, seed=5)
        merged = b.make_stream(MM4, cfg, seed=5, per_page=False)
        assert (s["bytes"] == PAGE).all() and (s["flush"] == 1).all()
        assert merged["bytes"].max() > PAGE  # the runs the old stream merged
        # the same pages, in the same order, with the same permission
        pages = np.concatenate([np.arange(a, a + n, PAGE)
                                for a, n in zip(merged["pa"], merged["bytes"])])
        assert (pages == s["pa"]).all()
        assert s["bytes"].sum() == merged["bytes"].sum()
        assert (s["event"][1:] >= s["event"][:-1]).all()


def test_one_call_per_page_breaks_every_contiguous_range_it_touches():
    """A 32-page run at a 64 KiB-aligned PA inside a PMD block: one call for the range
    (the merged stream) splits the PMD to contiguous PTEs and keeps both 16-page contiguous
    ranges; one call per page, as change_memory_common makes them, splits the contiguous
    range holding each page (arch/arm64/mm/mmu.c split_kernel_leaf_mapping: the least
    aligned end of a one-page range, then split_contpte), leaving 32 PTEs; the table
    pages are the same and the flushes are one per call."""
    pa = MM4.base_pa + 3 * GiB + 6 * MiB
    runs = {"merged": ([pa], [32 * PAGE]),
            "per page": (list(range(pa, pa + 32 * PAGE, PAGE)), [PAGE] * 32)}
    out = {}
    for name, (pas, sizes) in runs.items():
        n = len(pas)
        s = {"event": np.zeros(n, np.int64), "kind": np.zeros(n, np.int64),
             "pa": np.array(pas, np.int64), "bytes": np.array(sizes, np.int64),
             "perm": np.ones(n, np.int64), "flush": np.ones(n, np.int64)}
        out[name] = b.run_stream(MM4, P.FULL_BBML2, s, checkpoints=1).row(-1, named=True)
    m, pp = out["merged"], out["per page"]
    boot = b.map_stats(b.build_linear_map(MM4, P.FULL_BBML2))["tlb_entries"]
    # PUD [3G, 4G) -> cont PMDs; the cont-PMD range and the PMD holding the run -> cont PTEs
    assert m["table_pages_allocated"] == pp["table_pages_allocated"] == 2
    assert pp["tlb_entries"] - m["tlb_entries"] == 32 - 2
    assert m["tlb_entries"] > boot
    assert (m["flushes"], pp["flushes"]) == (1, 32)
    assert m["block_mapped_bytes"] == pp["block_mapped_bytes"]


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([1.0, 8.0, 64.0, 600.0]))
def test_per_page_calls_refine_the_merged_stream(seed, run):
    """Per-page calls make every boundary the merged calls make and more, with the same
    permissions in the same order: the per-page map's leaves refine the merged map's, so it
    keeps no more block-mapped bytes, needs no fewer TLB entries or table pages, and the
    permissions agree everywhere."""
    mm = MemoryMap(4 * GiB)
    cfg = StreamConfig(events=25, alias_run_pages=run, linear_bytes=4 * MiB)
    s = b.make_stream(mm, cfg, seed)
    m = b.make_stream(mm, cfg, seed, per_page=False)
    a = b.run_stream(mm, P.FULL_BBML2, s, checkpoints=1).row(-1, named=True)
    c = b.run_stream(mm, P.FULL_BBML2, m, checkpoints=1).row(-1, named=True)
    assert a["block_mapped_bytes"] <= c["block_mapped_bytes"]
    assert a["tlb_entries"] >= c["tlb_entries"]
    assert a["table_pages_allocated"] >= c["table_pages_allocated"]
    assert a["flushes"] >= c["flushes"]


def test_flushes_follow_each_kernel_path():
    """Where each path issues flush_tlb_kernel_range (one TLBI + DSB):
    - pageattr.c __change_memory_common: after every call (one per page for a vmalloc
      area's aliases);
    - mm/secretmem.c secretmem_fault: one per page made invalid; secretmem_free_folio
      restores with set_direct_map_default_noflush and no flush (pageattr.c
      __change_memory_common: making an entry valid needs no TLBI);
    - mm/vmalloc.c vm_reset_perms (VM_FLUSH_RESET_PERMS on vfree): every page invalid and
      back, with one flush of the area."""
    s = b.make_stream(MM4, _one_kind(K.SECRETMEM, events=40, free_fraction=1.0), seed=2)
    fwd = s["perm"] == 0
    assert (s["flush"][fwd] == 1).all() and (s["flush"][~fwd] == 0).all()
    s = b.make_stream(MM4, _one_kind(K.MODULE, events=20, free_fraction=1.0), seed=2)
    undo = s["event"] >= 20
    assert (s["flush"][~undo] == 1).all()
    assert s["flush"][undo].sum() == 20  # one per freed module
    assert sorted(set(s["event"][undo] - 20)) == list(range(20))
    s = b.make_stream(MM4, _one_kind(K.LINEAR, events=10, linear_bytes=8 * MiB), seed=2)
    assert (s["flush"] == 1).all() and (s["bytes"] == 8 * MiB).all()


# ---- uptime ---------------------------------------------------------------------------------
def test_uptime_stream_only_loses_blocks():
    """arch/arm64/mm/mmu.c has no path that merges split linear-map leaves back (only
    split_kernel_leaf_mapping and range_split_to_ptes change leaf sizes after boot): over
    uptime the blocks kept only fall and the tables allocated only rise, though freed memory
    is restored read-write; rodata=full allocates nothing and flushes as often."""
    mm = MemoryMap(8 * GiB)
    cfg = StreamConfig(events=120, free_fraction=0.8, linear_bytes=4 * MiB)
    s = b.make_uptime_stream(mm, cfg, seed=4, hours=240.0, lifetime_hours=48.0)
    assert (np.diff(s["t_h"]) >= 0).all() and s["t_h"].max() < 240.0
    restores = s["event"] >= cfg.events
    assert restores.any() and (s["perm"][restores] == 3).all()
    for ev in np.unique(s["event"][restores]):  # a restore follows its change
        assert s["t_h"][s["event"] == ev].min() > s["t_h"][s["event"] == ev - cfg.events].max()
    cuts = np.searchsorted(s["t_h"], np.linspace(0, 240.0, 9), side="right")
    bd = b.run_stream(mm, P.FULL_BBML2, s, cuts=cuts)
    full = b.run_stream(mm, P.FULL_PTES, s, cuts=cuts)
    assert (np.diff(bd["block_mapped_bytes"].to_numpy()) <= 0).all()
    assert bd["block_mapped_bytes"][-1] < bd["block_mapped_bytes"][0]
    assert (np.diff(bd["table_pages_allocated"].to_numpy()) >= 0).all()
    assert (full["table_pages_allocated"] == 0).all()
    assert bd["flushes"].to_list() == full["flushes"].to_list()
    assert full["flushes"][-1] == int(s["flush"].sum())
    with pytest.raises(ConfigError):
        b.run_stream(mm, P.FULL_BBML2, s, cuts=[0, s["pa"].size + 1])


def test_uptime_frame_costs():
    p = b.check_params({"stream_ram_gib": 8, "uptime_days": 3, "uptime_events_per_day": 20,
                        "uptime_checkpoints": 3, "table_alloc_ns": 2000.0, "tlbi_ns": 1000.0})
    f = b.uptime_frame(p)
    assert f["hours"].unique().sort().to_list() == [0.0, 24.0, 48.0, 72.0]
    end = {r["policy"]: r for r in f.iter_rows(named=True)}
    bd = end["rodata=full+BBML2"]
    assert bd["table_alloc_ms"] == pytest.approx(bd["table_pages_allocated"] * 2000.0 / 1e6)
    assert bd["flush_ms"] == pytest.approx(bd["flushes"] * 1000.0 / 1e6)
    assert end["rodata=full"]["table_alloc_ms"] == 0.0
    pts = b.uptime_cost_points(p, f)
    assert {(x["table_alloc_ns"], x["tlbi_ns"]) for x in pts} >= {(300.0, 500.0),
                                                                  (5000.0, 10000.0)}


# ---- force_pte_mapping() --------------------------------------------------------------------
def test_force_pte_mapping_truth_table():
    """arch/arm64/mm/mmu.c force_pte_mapping(): debug_pagealloc forces PTEs on any CPU;
    with BBML2 (no abort) nothing else does; without BBML2, rodata_full, a late KFENCE pool
    (arm64_kfence_can_set_direct_map) or a realm (is_realm_world) do."""
    want = {F.NONE: [True, False, False, False],
            F.DEBUG_PAGEALLOC: [True, True, True, True],
            F.KFENCE_LATE: [True, True, False, False],
            F.REALM: [True, True, False, False]}
    for cfg, row in want.items():
        assert [b.force_pte_mapping(pol, cfg) for pol in P] == row


def test_force_pte_configurations_paint_the_map():
    """arch/arm64/mm/mmu.c map_mem: NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS for every memblock
    region when force_pte_mapping(); the image alias [_text, __init_begin) with
    NO_CONT_MAPPINGS only, whatever the configuration. arch_kfence_init_pool: with BBML2 a
    pool allocated after boot is split to PTEs (range_split_to_ptes)."""
    ptes = b.boot_table_bytes(MM4, P.FULL_PTES)
    assert ptes == (2032 + 4 + 1) * 4 * KiB  # the 16 alias PMD blocks stay
    for pol in P:
        assert b.boot_table_bytes(MM4, pol, config=F.DEBUG_PAGEALLOC) == ptes
    for cfg in (F.REALM,):
        assert b.boot_table_bytes(MM4, P.RODATA_ON, config=cfg) == ptes
        assert b.boot_table_bytes(MM4, P.FULL_BBML2, config=cfg) == 2 * 4 * KiB
    mm = MemoryMap(4 * GiB, kfence_pool_bytes=2 * MiB)  # at PA 2G + 34M: one PMD block
    assert b.boot_table_bytes(mm, P.RODATA_ON, config=F.KFENCE_LATE) == ptes
    boot = b.build_linear_map(mm, P.FULL_BBML2, config=F.KFENCE_LATE)
    assert boot.table_pages().get(3, 0) == 0
    run = b.kfence_late_split(mm, P.FULL_BBML2)
    assert run.table_pages()[3] == 1
    assert run.translate(34 * MiB + 5 * PAGE).level == 3
    assert run.translate(36 * MiB).level < 3
    # an early pool is PTE-mapped at boot under every policy and forces nothing
    early = b.build_linear_map(mm, P.FULL_BBML2)
    assert early.table_pages()[3] == 1 and early.translate(34 * MiB).level == 3
    with pytest.raises(ConfigError):
        b.build_linear_map(MM4, P.FULL_BBML2, config=F.KFENCE_LATE)


def test_force_pte_frame_small():
    p = b.check_params({"stream_ram_gib": 16})
    f = b.force_pte_frame(p)
    rows = {(r["config"], r["policy"]): r for r in f.iter_rows(named=True)}
    full = rows[("none", "rodata=full")]["boot_table_bytes"]
    assert rows[("debug_pagealloc", "rodata=full+BBML2")]["saved_bytes"] == 0
    assert rows[("realm", "rodata=on")]["boot_table_bytes"] == full
    assert rows[("realm", "rodata=full+BBML2")]["saved_bytes"] == \
        rows[("none", "rodata=full+BBML2")]["saved_bytes"] > 0
    k = rows[("KFENCE (late pool)", "rodata=full+BBML2")]
    assert k["running_table_bytes"] - k["boot_table_bytes"] == 4 * KiB


def test_without_linear_ranges_boundary_splits_equal_v1():
    """B9 re-read with one call per page: a one-page range has no leaf inside it but the
    page itself, so splitting at its ends (split_kernel_leaf_mapping) and splitting the range
    to PTEs (v1) paint the same map; only multi-page calls (LINEAR: a physically contiguous
    range in one __change_memory_common call) can keep blocks that v1 would split."""
    mm = MemoryMap(8 * GiB)
    cfg = StreamConfig(events=80, weights=(0.4, 0.05, 0.2, 0.1, 0.25, 0.0),
                       alias_run_pages=64.0)
    s = b.make_stream(mm, cfg, seed=9)
    assert (s["bytes"] == PAGE).all()
    bd = b.run_stream(mm, P.FULL_BBML2, s, checkpoints=1).row(-1, named=True)
    v1 = b.run_stream(mm, P.FULL_BBML2_V1, s, checkpoints=1).row(-1, named=True)
    for k in ("block_mapped_bytes", "tlb_entries", "table_pages_allocated", "flushes"):
        assert bd[k] == v1[k], k
    lin = b.make_stream(mm, StreamConfig(events=80, linear_bytes=4 * MiB), seed=9)
    bd = b.run_stream(mm, P.FULL_BBML2, lin, checkpoints=1).row(-1, named=True)
    v1 = b.run_stream(mm, P.FULL_BBML2_V1, lin, checkpoints=1).row(-1, named=True)
    assert bd["block_mapped_bytes"] > v1["block_mapped_bytes"]
