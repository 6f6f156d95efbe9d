"""kmm.mech.bbml2: linear-map painting, table memory, streams, repaint, break-before-make."""
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kmm import geometry
from kmm.engine import OP_SET_PERM, encode_ops
from kmm.errors import ConfigError
from kmm.geometry import GiB, KiB, MiB
from kmm.mech import bbml2 as b
from kmm.mech.bbml2 import study as bstudy
from kmm.mech.bbml2 import BbmConfig, BbmMode, LinearMapPolicy as P, MemoryMap, StreamConfig
from kmm.pagetable import Paint, PageTable, Perm
from props import INVARIANT

MM4 = MemoryMap(4 * GiB)  # DRAM at 2 GiB, kernel alias 32 MiB at +2 MiB


def test_linear_map_shapes_4k():
    pt = b.build_linear_map(MM4, P.FULL_BBML2)
    rows = [(r["va"], r["size_bytes"], r["level"], r["cont"])
            for r in pt.extents().iter_rows(named=True)]
    # [0, 2M) before the image, the image alias (NO_CONT_MAPPINGS) and up to the first
    # 32 MiB boundary are PMD blocks with equal attributes: one extent
    assert rows == [(0, 64 * MiB, 2, False),
                    (64 * MiB, GiB - 64 * MiB, 2, True),
                    (GiB, 3 * GiB, 1, False)]
    assert pt.block_leaves() == 32 + 480 + 3
    assert pt.translate(0).pa == 2 * GiB  # memstart = 2 GiB


def test_boot_table_bytes_hand_count_4k():
    # rodata=full: one PTE table per 2 MiB except the 16 alias PMD blocks, 4 PMD tables,
    # 1 PUD table; with BBML2: the PUD table and the PMD table of the first GiB
    assert b.boot_table_bytes(MM4, P.FULL_PTES) == (2032 + 4 + 1) * 4 * KiB
    assert b.boot_table_bytes(MM4, P.FULL_BBML2) == 2 * 4 * KiB
    assert b.boot_table_bytes(MM4, P.RODATA_ON) == 2 * 4 * KiB
    assert b.saved_bytes(MM4) == 2035 * 4 * KiB
    # a feature forcing PTEs (debug_pagealloc, realm) saves nothing
    assert b.saved_bytes(MM4, force_pte=True) == 0


@pytest.mark.parametrize("granule,full,pte_tables", [
    # 16K/48-bit: 128 PTE tables (one per 32 MiB; the image at +2 MiB is not PMD-aligned),
    # 1 PMD table (64 GiB window), 1 PUD-level table (128 TiB window)
    ("16K", (128 + 1 + 1) * 16 * KiB, 2),
    # 64K/48-bit (3 levels): 8 PTE tables (one per 512 MiB) and 1 PMD table (4 TiB window)
    ("64K", (8 + 1) * 64 * KiB, 1),
])
def test_boot_table_bytes_other_granules(granule, full, pte_tables):
    mm = MemoryMap(4 * GiB, granule)
    assert b.boot_table_bytes(mm, P.FULL_PTES) == full
    pt = b.build_linear_map(mm, P.FULL_BBML2)
    g = mm.geometry
    span = g.entry_bytes(2)
    ptes = set()
    for r in pt.extents().iter_rows(named=True):
        if r["level"] == 3:
            ptes.update(range(r["va"] // span, (r["va"] + r["size_bytes"] - 1) // span + 1))
    # PTE tables only in the PMD windows holding the image's unaligned edges
    assert pt.table_pages()[3] == len(ptes) == pte_tables
    assert b.boot_table_bytes(mm, P.FULL_BBML2) == (len(ptes) + full // g.page_bytes
                                                    - (4 * GiB // span)) * g.page_bytes


def test_saved_bytes_linear_in_ram_and_granule_order():
    s = [b.saved_bytes(MemoryMap(r * GiB)) for r in (16, 64, 256)]
    assert s[1] > s[0] and s[2] > s[1]
    # one 4 KiB PTE table per 2 MiB: saved / RAM tends to 1/512
    assert abs(s[2] / (256 * GiB) - 1 / 512) < 1e-3 / 512 * 10
    g16 = b.saved_bytes(MemoryMap(256 * GiB, "16K"))
    g64 = b.saved_bytes(MemoryMap(256 * GiB, "64K"))
    assert s[2] > g16 > g64 > 0


def test_memtotal_inversion_is_consistent():
    memtotal = 258988984 * KiB
    mm = b.memory_map_from_memtotal(256 * GiB, memtotal, kernel_image_bytes=48 * MiB,
                                    other_reserved_bytes=0)
    mapped = mm.mapped_bytes
    tables = b.boot_table_bytes(mm, P.FULL_PTES)
    back = mapped - mapped // 4096 * 64 - tables - 48 * MiB
    assert abs(back - memtotal) <= 64 * KiB + tables // 512
    assert 0 < mm.nomap_bytes < 16 * GiB


def test_memory_map_validation():
    for kw, where in [({"ram_bytes": 3 * GiB, "banks": 2, "granule": "64K",
                        "kernel_alias_bytes": 32 * MiB + 4 * KiB}, "kernel_alias_bytes"),
                      ({"ram_bytes": 4 * GiB, "nomap_align_bytes": 3 * 4096}, "nomap_align_bytes"),
                      ({"ram_bytes": 4 * GiB, "granule": "8K"}, "granule"),
                      ({"ram_bytes": 4 * GiB, "nomap_bytes": 8 * GiB}, "nomap_bytes")]:
        with pytest.raises(ConfigError) as e:
            MemoryMap(**kw)
        assert e.value.where == where


def test_banks_and_holes():
    mm = MemoryMap(8 * GiB, banks=2, bank_gap_bytes=60 * GiB, nomap_bytes=2 * MiB,
                   nomap_align_bytes=64 * KiB)
    assert mm.banks_pa() == [(2 * GiB, 4 * GiB - MiB), (66 * GiB, 4 * GiB - MiB)]
    pt = b.build_linear_map(mm, P.FULL_BBML2)
    assert pt.translate(64 * GiB).pa == 66 * GiB
    assert pt.translate(4 * GiB - MiB) is None
    # each bank's unaligned end needs PTE-level leaves: cont PTEs to the 1 MiB hole
    assert pt.translate(4 * GiB - MiB - 4096).level == 3


def test_repaint_hand_count_and_equality():
    r = b.repaint(MM4)
    # 3 PUD blocks (1 PMD + 512 PTE tables each), 512 PMD blocks in the first GiB
    assert (r["pud_blocks"], r["pmd_blocks"]) == (3, 512)
    assert r["predicted_pages"] == r["built_pages"] == 3 * 513 + 512
    assert r["table_bytes_after"] == (2048 + 4 + 1) * 4 * KiB
    for granule in ("16K", "64K"):
        for ram in (4 * GiB, 48 * GiB):
            mm = MemoryMap(ram, granule, banks=2, bank_gap_bytes=GiB)
            r = b.repaint(mm)
            assert r["predicted_pages"] == r["built_pages"] > 0
            # the image alias is not PMD-aligned in these granules: the repainted map is
            # exactly what rodata=full paints at boot
            assert r["table_bytes_after"] == b.boot_table_bytes(mm, P.FULL_PTES)


def test_one_linear_change_boundary_vs_v1():
    # a 4 MiB read-only range at a 2 MiB-aligned PA inside the PUD block [3G, 4G) of VA
    pa = 2 * GiB + 3 * GiB + 6 * MiB
    stream = {"event": np.array([0]), "kind": np.array([5]), "pa": np.array([pa]),
              "bytes": np.array([4 * MiB]), "perm": np.array([1])}
    f = {pol: b.run_stream(MM4, pol, stream, checkpoints=1).row(-1, named=True)
         for pol in P}
    bd, v1 = f[P.FULL_BBML2], f[P.FULL_BBML2_V1]
    assert bd["table_pages_allocated"] == 1       # PUD -> cont PMDs; the range is PMD-aligned
    assert v1["table_pages_allocated"] == 3       # plus a PTE table per PMD of the range
    assert bd["block_mapped_bytes"] - v1["block_mapped_bytes"] == 4 * MiB
    assert f[P.FULL_PTES]["table_pages_allocated"] == 0
    assert f[P.RODATA_ON]["leaves_changed"] == 0
    assert v1["leaves_changed"] == 1024 and bd["leaves_changed"] == 2


def test_stream_boundary_keeps_more_blocks_than_v1():
    mm = MemoryMap(16 * GiB)
    s = b.make_stream(mm, StreamConfig(events=150), seed=3)
    assert (s["bytes"] > 0).all() and (s["pa"] % 4096 == 0).all()
    ks, _ = mm.kernel_alias_pa()
    assert not ((s["pa"] < ks + mm.kernel_alias_bytes) & (s["pa"] + s["bytes"] > ks)).any()
    bd = b.run_stream(mm, P.FULL_BBML2, s, checkpoints=4)
    v1 = b.run_stream(mm, P.FULL_BBML2_V1, s, checkpoints=4)
    assert (bd["block_mapped_bytes"] >= v1["block_mapped_bytes"]).all()
    assert bd["block_mapped_bytes"][-1] > v1["block_mapped_bytes"][-1]
    assert (bd["tlb_entries"] <= v1["tlb_entries"]).all()
    assert (bd["table_pages_allocated"] <= v1["table_pages_allocated"]).all()
    assert bd["changes"].to_list() == v1["changes"].to_list()
    full = b.run_stream(mm, P.FULL_PTES, s, checkpoints=1)
    assert full["table_pages_allocated"][-1] == 0
    pt = b.build_linear_map(mm, P.FULL_BBML2)
    pt.apply_ops(encode_ops(np.full(s["pa"].size, OP_SET_PERM), s["pa"] - mm.memstart,
                              s["bytes"], None, s["perm"], 0, geometry=mm.geometry))
    stats = b.map_stats(pt)
    assert stats["block_leaves"] == pt.block_leaves() == bd["block_leaves"][-1]
    assert stats["tlb_entries"] == pt.tlb_entries(True) == bd["tlb_entries"][-1]
    assert stats["tlb_entries_nocont"] == pt.tlb_entries(False)


def test_stream_config_validation():
    with pytest.raises(ConfigError) as e:
        StreamConfig(weights=(1.0,))
    assert e.value.where == "weights"
    with pytest.raises(ConfigError):
        StreamConfig(free_fraction=2.0)


# ---- break-before-make ---------------------------------------------------------------------
def naive_bbm(t_ns, cpu, held, u, tlbi_ns, mode, conflict_prob):
    acc = faults = aborts = 0
    for t, c, x in zip(t_ns, cpu, u):
        acc += 1
        h = held[c]
        if mode == 0 and (t >= tlbi_ns or not h):
            faults += 1
        if mode == 2 and t < tlbi_ns and h and x < conflict_prob:
            aborts += 1
    return [acc, faults, aborts]


def test_bbm_hand_worked():
    t = np.array([10.0, 150.0, 50.0, 120.0])
    cpu = np.array([0, 0, 1, 1])
    held = np.array([1, 0])
    u = np.array([0.001, 0.5, 0.001, 0.001])
    out = {}
    for mode in BbmMode:
        o = np.zeros(3, dtype=np.int64)
        b.bbm_count(t, cpu, held, u, 100.0, int(mode), 0.01, o)
        out[mode] = o.tolist()
    # no BBML2: CPU 0 holds the entry until the TLBI at 100 ns (its access at 150 faults);
    # CPU 1 never held it: both its accesses fault
    assert out[BbmMode.NO_BBML2] == [4, 3, 0]
    assert out[BbmMode.BBML2] == [4, 0, 0]
    assert out[BbmMode.BBML2_ABORTS] == [4, 0, 1]  # CPU 0 at 10 ns, holding, u < p


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.0, 0.5), st.floats(0.0, 1.0))
def test_bbm_kernel_matches_twin(seed, rate, hold):
    cfg = BbmConfig(cpus=7, access_rate_per_us=rate, tlb_hold_prob=hold, changes=30,
                    conflict_prob=0.3)
    d = b.bbm_draws(cfg, seed)
    for mode in BbmMode:
        o = np.zeros(3, dtype=np.int64)
        b.bbm_count(d["t_ns"], d["cpu"], d["held"], d["u"], cfg.tlbi_ns, int(mode),
                    cfg.conflict_prob, o)
        assert o.tolist() == naive_bbm(d["t_ns"], d["cpu"], d["held"], d["u"], cfg.tlbi_ns,
                                        int(mode), cfg.conflict_prob)


def test_bbm_window_direction_and_scaling():
    lo = b.bbm_window(BbmConfig(access_rate_per_us=0.01), seed=1)
    hi = b.bbm_window(BbmConfig(access_rate_per_us=0.1), seed=1)
    assert lo["no_bbml2"]["faults"] > 0 and lo["bbml2"]["faults"] == 0
    assert hi["no_bbml2"]["faults"] > 5 * lo["no_bbml2"]["faults"]
    assert hi["bbml2"] == {"accesses": hi["bbml2"]["accesses"], "faults": 0,
                           "conflict_aborts": 0}
    assert hi["bbml2_aborts"]["conflict_aborts"] > 0
    assert b.bbm_window(BbmConfig(access_rate_per_us=0.0), 1)["no_bbml2"]["faults"] == 0


def test_notebook_layer_small():
    p = b.check_params({"ram_gib_list": [16], "granules": ["4K", "64K"], "stream_ram_gib": 16,
                        "stream_events": 40, "checkpoints": 2, "bbm_changes": 20,
                        "sweep_points": 2, "scenario": "small"})
    with pytest.raises(ConfigError):
        b.check_params({"nonsense": 1})
    with pytest.raises(ConfigError):
        b.check_params({"granules": ["8K"]})
    v = b.claim_values(p)
    assert set(v) == {"B1", "B2", "B9", "B10", "B11"}
    assert v["B1"]["unit"] == "bytes" and len(v["B1"]["sweep"]) == 2 * 2 * 2
    assert set(v["B2"]["value"]) == {"ram_bytes", "saved_bytes", "group"}
    assert {"blocks_kept_boundary", "blocks_kept_v1"} <= set(v["B9"]["value"])
    assert v["B10"]["value"]["predicted_pages"] == v["B10"]["value"]["built_pages"]
    assert v["B11"]["value"]["faults_with_bbml2"] == 0
    assert all(x["explanation"] for x in v.values())
    # convergence: counts of tables built are deterministic; B9 and B11 are replicated at two
    # more seeds and at half length (B9's from the published run's middle checkpoint)
    assert all(v[c].get("deterministic") for c in ("B1", "B2", "B10"))
    for c, n in (("B9", 40), ("B11", 20)):
        reps = v[c]["replicates"]
        assert [(r["seed"], r["length"]) for r in reps] == [(2, n), (3, n), (1, n // 2)], c
    stream = bstudy.stream_frame(p)
    mid = bstudy.b9_replicates(p, stream)[-1]["value"]
    assert mid != v["B9"]["value"] and mid["tables_boundary"] <= v["B9"]["value"]["tables_boundary"]
    df = b.results_frame(p, "small")
    assert set(df["study"].unique()) == {"table_memory", "stream", "repaint", "bbm", "vmalloc",
                                         "uptime", "force_pte"}


def test_vmalloc_huge_mapping_hand_worked():
    # one 4 MiB + 64 KiB + 8 KiB area: PTEs need one PTE table per 2 MiB window touched;
    # huge: 2 PMD blocks, one cont range and 2 PTEs (one PTE table)
    size = 4 * MiB + 64 * KiB + 8 * KiB
    ptes = b.vmalloc_map([size], False, seed=1)
    huge = b.vmalloc_map([size], True, seed=1)
    assert ptes.table_pages()[3] == 3 and ptes.tlb_entries() == size // 4096
    assert huge.table_pages()[3] == 1 and huge.tlb_entries() == 2 + 1 + 2
    assert huge.block_leaves() == 2
    # areas are separated by a guard page and never overlap
    two = b.vmalloc_map([8 * KiB, 8 * KiB], False, seed=2)
    assert two.translate(8 * KiB) is None and two.translate(12 * KiB) is not None
    f = b.vmalloc_frame(b.check_params({"vmalloc_areas": 50}))
    assert f["mapped_bytes"][0] == f["mapped_bytes"][1]
    assert f["tlb_entries"][1] < f["tlb_entries"][0]


# ---- invariant: the BBML2 split never shows an invalid descriptor; break-before-make does -----
SPLIT_GEOMS = {"4K": (geometry.arm64("4K", 48), 64 * MiB),
               "16K": (geometry.arm64("16K", 47), 128 * MiB),
               "64K": (geometry.arm64("64K", 42), GiB)}


@st.composite
def live_splits(draw):
    g, region = SPLIT_GEOMS[draw(st.sampled_from(sorted(SPLIT_GEOMS)))]
    P = g.page_bytes
    pt = PageTable(g)
    skew = draw(st.sampled_from([0, P, g.cont_pte_bytes, g.block_bytes[2]]))
    paint = draw(st.sampled_from([Paint.LARGEST, Paint.LARGEST, Paint.NO_BLOCKS]))
    pt.map(0, region, region + skew, draw(st.sampled_from([Perm.R, Perm.RW, Perm.RX])),
           policy=paint)
    # split inside a large leaf or contiguous range most of the time
    ex = pt.extents_array()
    big = ex[(ex[:, 3] & 7) - 1 < 3] if draw(st.booleans()) else ex
    row = big[draw(st.integers(0, len(big) - 1))] if len(big) else ex[0]
    va = int(row[0]) + draw(st.integers(0, int(row[1]) // P - 1)) * P
    cfg = BbmConfig(cpus=draw(st.integers(1, 16)),
                    access_rate_per_us=draw(st.floats(0.2, 5.0)),
                    tlb_hold_prob=draw(st.floats(0.0, 1.0)),
                    tlbi_ns=draw(st.floats(200.0, 5000.0)), write_ns=draw(st.floats(0.0, 500.0)),
                    changes=1)
    return pt, va, cfg, draw(st.integers(0, 2**31))


@INVARIANT
@given(live_splits())
def test_invariant_no_invalid_descriptor_during_a_bbml2_split(case):
    """Concurrent accesses (Poisson times, CPUs holding the old entry or not) while a live
    leaf of a painted map is split on the engine's page table: with BBML2 every access
    translates to its original output address and none faults; with break-before-make, an
    access faults exactly when it walks during the window (a CPU without the old entry, or
    any CPU after the TLBI), as many as B11's fault count gives on the same draws; only the
    descriptor group being split is ever invalid, and the end state translates as before
    with ``va`` a leaf boundary."""
    pt, va, cfg, seed = case
    g = pt.geometry
    start, span = b.leaf_span(pt, va)
    d = b.bbm_draws(cfg, seed)
    held = d["held"][d["cpu"]].astype(bool)
    rng = np.random.default_rng(seed)
    inside = start + rng.integers(0, span // g.page_bytes, d["t_ns"].size) * g.page_bytes
    outside = np.array([start - g.page_bytes, start + span], np.int64)
    outside = outside[(outside >= 0) & (outside < SPLIT_GEOMS[g.granule][1])]
    want_in = pt.translate_many(inside)[0]
    want_out = pt.translate_many(outside)
    event(f"accesses in the window: {min(d['t_ns'].size, 3)}{'+' if d['t_ns'].size > 3 else ''}")
    for mode in BbmMode:
        states = b.split_states(pt, va, mode, cfg.tlbi_ns, cfg.write_ns)
        pa, fault = b.walk_outcomes(states, inside, d["t_ns"], held, cfg.tlbi_ns)
        if mode == BbmMode.NO_BBML2:
            assert (fault == ((d["t_ns"] >= cfg.tlbi_ns) | ~held)).all()
            o = np.zeros(3, np.int64)
            b.bbm_count(d["t_ns"], d["cpu"], d["held"], d["u"], cfg.tlbi_ns, int(mode),
                        cfg.conflict_prob, o)
            assert o[1] == fault.sum(), "B11's count disagrees with the descriptor states"
        else:
            assert not fault.any(), "an access saw an invalid descriptor during a BBML2 split"
        assert (pa[~fault] == want_in[~fault]).all(), "an access saw a wrong output address"
        for _t, st_ in states:
            got = st_.translate_many(outside)
            assert (got[0] == want_out[0]).all() and (got[3] == want_out[3]).all(), \
                "a descriptor outside the split group changed"
        end = states[-1][1]
        assert (end.translate_many(inside)[0] == want_in).all()
        assert (end.translate_many(inside)[3] == pt.translate_many(inside)[3]).all()
        assert _starts_leaf(end, va)


def _starts_leaf(pt, va):
    s, _span = b.leaf_span(pt, va)
    return s == va
