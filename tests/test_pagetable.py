"""kmm.pagetable against hand-worked cases and the per-page twin in tests/naive/pagetable.py."""
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kmm import geometry
from kmm.errors import ConfigError
from kmm.geometry import GiB, KiB, MiB, TiB
from kmm.pagetable import (EINVAL, ENOMEM, OP_MAP, OP_SET_PERM, OP_SPLIT, Paint, PageTable,
                           Perm, PermSplit, PtEvent, TablePlacement, bench_random_ops,
                           encode_ops)
from naive.pagetable import NaivePageTable
from props import INVARIANT

G4 = geometry.arm64("4K", 48)


def rows(pt):
    """Kernel extents in the twin's tuple form."""
    df = pt.extents()
    return [(r["va"], r["size_bytes"], r["pa"], r["level"], int(r["cont"]), r["perm"], r["nid"])
            for r in df.iter_rows(named=True)]


def shapes(pt):
    return [(r[0], r[1], r[3], r[4]) for r in rows(pt)]


# ---- hand-worked painting -------------------------------------------------------------
def test_one_gib_plus_one_page_is_one_pud_block_and_one_pte():
    pt = PageTable(G4)
    pt.map(GiB, GiB + 4 * KiB, GiB, Perm.RW)
    assert shapes(pt) == [(GiB, GiB, 1, 0), (2 * GiB, 4 * KiB, 3, 0)]
    # top PGD (4 KiB); one PUD table for the 512 GiB window; one PMD table for [2G, 3G);
    # one PTE table for [2G, 2G + 2M)
    assert pt.table_pages() == {0: 1, 1: 1, 2: 1, 3: 1}
    assert pt.table_bytes() == 4096 + 3 * 4096
    assert pt.counters.table_pages_allocated == 3


def test_largest_leaves_follow_va_and_pa_alignment():
    pt = PageTable(G4)
    # VA 2M-aligned, PA only 64K-aligned relative to it: no PMD blocks, cont PTEs inside
    pt.map(2 * MiB, 4 * MiB, 2 * MiB + 64 * KiB, Perm.RW)
    assert shapes(pt) == [(2 * MiB, 4 * MiB, 3, 1)]
    pt2 = PageTable(G4)
    # 4K-skewed PA: PTEs only
    pt2.map(2 * MiB, 4 * MiB, 2 * MiB + 4 * KiB, Perm.RW)
    assert shapes(pt2) == [(2 * MiB, 4 * MiB, 3, 0)]
    pt3 = PageTable(G4)
    # [4K, 66M): PTEs to 64K, cont PTEs to 2M, PMDs to 32M, cont PMD to 64M, PMD, cont PTE
    pt3.map(4 * KiB, 66 * MiB + 60 * KiB, 4 * KiB, Perm.R)
    assert shapes(pt3) == [
        (4 * KiB, 60 * KiB, 3, 0), (64 * KiB, 2 * MiB - 64 * KiB, 3, 1),
        (2 * MiB, 30 * MiB, 2, 0), (32 * MiB, 32 * MiB, 2, 1), (64 * MiB, 2 * MiB, 2, 0),
        (66 * MiB, 64 * KiB, 3, 1)]


@pytest.mark.parametrize("policy,expected", [
    (Paint.LARGEST, [(0, GiB, 1, 0), (GiB, 32 * MiB, 2, 1), (GiB + 32 * MiB, 2 * MiB, 2, 0)]),
    (Paint.NO_CONT, [(0, GiB, 1, 0), (GiB, 34 * MiB, 2, 0)]),
    (Paint.NO_BLOCKS, [(0, GiB + 34 * MiB, 3, 1)]),
    (Paint.PTES, [(0, GiB + 34 * MiB, 3, 0)]),
])
def test_painting_policies(policy, expected):
    pt = PageTable(G4)
    pt.map(0, GiB + 34 * MiB, 0, Perm.RW, policy=policy)
    assert shapes(pt) == expected


def test_four_tib_of_ptes_is_one_extent_and_counts_its_tables():
    pt = PageTable(G4)
    pt.map(0, 4 * TiB, 0, Perm.RW, policy=Paint.PTES)
    assert pt.n_extents == 1
    # 8 PUD tables (512 GiB each), 4096 PMD tables (1 GiB), 2M PTE tables (2 MiB)
    assert pt.table_pages() == {0: 1, 1: 8, 2: 4096, 3: 2 * 1024 * 1024}
    assert pt.split(12345 * 4096) == 0 and pt.n_extents == 1


# table bytes per granule, hand counted: (geometry, va, size, pa, policy, {level: tables}, bytes)
HAND_TABLES = [
    # 16K 47-bit: top is level 1 with 2048 entries (16 KiB); 1 GiB aligned = 32 cont PMDs
    (geometry.arm64("16K", 47), 0, GiB, 0, Paint.LARGEST, {1: 1, 2: 1, 3: 0}, 2 * 16 * KiB),
    # same with PTEs: 32 PTE tables (one per 32 MiB PMD window)
    (geometry.arm64("16K", 47), 0, GiB, 0, Paint.PTES, {1: 1, 2: 1, 3: 32}, 34 * 16 * KiB),
    # 64K 42-bit: 2 levels, top 8192 entries (64 KiB); 1 GiB = 2 PMD blocks; +64K -> 1 PTE table
    (geometry.arm64("64K", 42), 0, GiB + 64 * KiB, 0, Paint.LARGEST, {2: 1, 3: 1}, 128 * KiB),
    # 4K 52-bit LPA2: top level -1 has 16 entries (128 bytes), then 4 full tables
    (geometry.arm64("4K", 52), 0, 4 * KiB, 0, Paint.LARGEST, {-1: 1, 0: 1, 1: 1, 2: 1, 3: 1},
     128 + 4 * 4 * KiB),
    # 4K 39-bit: 3 levels from level 1; 3 GiB straddling nothing = 3 PUD blocks, no tables
    (geometry.arm64("4K", 39), 0, 3 * GiB, 0, Paint.LARGEST, {1: 1, 2: 0, 3: 0}, 4 * KiB),
    # stage 2, 4K, 40-bit IPA: 2 concatenated level-1 tables (8 KiB) + a PMD table
    (geometry.stage2("4K", 40), 0, 2 * MiB, 0, Paint.LARGEST, {1: 2, 2: 1, 3: 0}, 12 * KiB),
    # x86-64 5-level: 2 MiB + 4 KiB at 2M -> 1 PMD leaf + 1 PTE: P4D, PUD, PMD, PTE tables
    (geometry.x86_64(5), 2 * MiB, 2 * MiB + 4 * KiB, 2 * MiB, Paint.LARGEST,
     {-1: 1, 0: 1, 1: 1, 2: 1, 3: 1}, 5 * 4 * KiB),
    # PTEs straddling a 1 GiB boundary need two PMD tables and two PTE tables
    (G4, GiB - 4 * KiB, 8 * KiB, GiB - 4 * KiB, Paint.LARGEST, {0: 1, 1: 1, 2: 2, 3: 2},
     6 * 4 * KiB),
]


@pytest.mark.parametrize("case", HAND_TABLES,
                         ids=[f"{c[0].name}-{i}" for i, c in enumerate(HAND_TABLES)])
def test_table_counts_hand_worked(case):
    g, va, size, pa, policy, expected, nbytes = case
    pt = PageTable(g)
    pt.map(va, size, pa, Perm.RW, policy=policy)
    assert pt.table_pages() == expected
    assert pt.table_bytes() == nbytes
    tw = NaivePageTable(g)
    if size // g.page_bytes <= 1 << 17:
        tw.map(va, size, pa, 3, int(policy))
        assert tw.tables() == expected


# ---- split ------------------------------------------------------------------------------
def test_split_pud_keeps_every_larger_leaf_that_fits():
    pt = PageTable(G4)
    pt.map(0, GiB, 0, Perm.RW)
    va = 40 * MiB + 68 * KiB  # inside cont-PMD range 1, PMD 20, cont-PTE range 1
    assert pt.split(va) == 0
    assert shapes(pt) == [
        (0, 32 * MiB, 2, 1),                      # cont-PMD range 0 kept
        (32 * MiB, 8 * MiB, 2, 0),                # range 1 lost its cont bit: 4 PMDs
        (40 * MiB, 64 * KiB, 3, 1),               # PTE table: cont range before the VA
        (40 * MiB + 64 * KiB, 64 * KiB, 3, 0),    # the cont range holding the VA
        (40 * MiB + 128 * KiB, 2 * MiB - 128 * KiB, 3, 1),
        (42 * MiB, 22 * MiB, 2, 0),
        (64 * MiB, GiB - 64 * MiB, 2, 1)]
    c = pt.counters
    assert (c.block_splits, c.cont_splits, c.table_pages_allocated) == (2, 2, 3)
    assert pt.table_pages() == {0: 1, 1: 1, 2: 1, 3: 1}
    for v in (0, va - 4096, va, va + 4096, GiB - 4096):
        assert pt.translate(v).pa == v


def test_split_on_boundaries_is_a_noop_and_unmapped_is_einval():
    pt = PageTable(G4)
    pt.map(0, GiB, 0, Perm.RW)
    assert pt.split(0) == 0 and shapes(pt) == [(0, GiB, 1, 0)]
    assert pt.split(GiB) == -EINVAL
    assert pt.counters.einval == 1 and pt.counters.block_splits == 0
    assert pt.split(512 * MiB) == 0  # cont-PMD aligned: PUD -> cont PMDs only
    assert shapes(pt) == [(0, GiB, 2, 1)] and pt.counters.block_splits == 1
    assert pt.split(32 * MiB) == 0 and pt.counters.block_splits == 1
    assert pt.counters.cont_splits == 0


def test_split_without_cont_refill():
    pt = PageTable(G4)
    pt.map(0, GiB, 0, Perm.RW)
    assert pt.split(4 * KiB, to_cont=False) == 0
    assert shapes(pt) == [(0, 2 * MiB, 3, 0), (2 * MiB, GiB - 2 * MiB, 2, 0)]


def test_enomem_leaves_translations_intact():
    pt = PageTable(G4)
    pt.map(0, GiB, 0, Perm.RW)
    before = rows(pt)
    pt.fail_table_alloc_after(0)
    assert pt.split(4 * KiB) == -ENOMEM
    assert rows(pt) == before and pt.counters.alloc_failures == 1
    pt.fail_table_alloc_after(1)   # PUD -> PMDs succeeds, PMD -> PTEs fails
    assert pt.split(4 * KiB) == -ENOMEM
    assert pt.table_pages()[2] == 1 and pt.table_pages()[3] == 0
    vas = np.arange(0, GiB, 4 * MiB + 4096, dtype=np.int64)
    pa, level, *_ = pt.translate_many(vas)
    assert (pa == vas).all() and (level >= 1).all()
    assert pt.set_perm(4 * KiB, 4 * KiB, Perm.R) == -ENOMEM
    assert pt.translate(4 * KiB).perm == Perm.RW
    pt.fail_table_alloc_after(None)
    assert pt.set_perm(4 * KiB, 4 * KiB, Perm.R) == 0
    assert pt.translate(4 * KiB).perm == Perm.R and pt.translate(0).perm == Perm.RW


# ---- permission changes -------------------------------------------------------------------
def test_boundary_perm_change_keeps_blocks_inside_and_v1_splits_them():
    pt = PageTable(G4)
    pt.map(0, 2 * GiB, 0, Perm.RW)
    v1 = pt.copy()
    lo, size = 4 * KiB, GiB + 2 * MiB - 4 * KiB
    assert pt.set_perm(lo, size, Perm.R) == 0
    assert (3, True) in pt.leaf_bytes_by_level() and (2, True) in pt.leaf_bytes_by_level()
    assert pt.translate(GiB - 4096).level == 2   # block kept inside the range
    assert pt.counters.table_pages_allocated - 1 == 3  # PMD + PTE at lo, PMD at hi
    assert v1.set_perm(lo, size, Perm.R, mode=PermSplit.TO_PTES) == 0
    assert v1.translate(GiB - 4096).level == 3
    # v1: every byte of the range in PTEs: 512 + 1 PTE tables + the PMD table of [1G, 2G)
    assert v1.table_pages() == {0: 1, 1: 1, 2: 2, 3: 513}
    assert v1.counters.leaves_changed == size // 4096
    for p in (pt, v1):
        assert p.translate(lo).perm == Perm.R and p.translate(0).perm == Perm.RW
        assert p.translate(lo + size).perm == Perm.RW
        assert p.translate(lo + size - 4096).perm == Perm.R


def test_split_to_ptes_keeps_permissions_and_counts_tables():
    pt = PageTable(G4)
    pt.map(0, 2 * GiB, 0, Perm.RW)
    pt.set_perm(GiB, GiB, Perm.R)
    assert pt.block_leaves() == 2 and pt.tlb_entries() == 2
    assert pt.split_to_ptes(0, 2 * GiB) == 0
    # per PUD block: one PMD table and 512 PTE tables, as counted from the boot mappings
    assert pt.counters.table_pages_allocated == 1 + 2 * (1 + 512)
    assert shapes(pt) == [(0, GiB, 3, 0), (GiB, GiB, 3, 0)]
    assert pt.translate(GiB - 4096).perm == Perm.RW and pt.translate(GiB).perm == Perm.R
    assert pt.block_leaves() == 0 and pt.tlb_entries() == 2 * GiB // 4096
    c = PageTable(G4)
    c.map(0, 4 * MiB, 0, Perm.RW, policy=Paint.NO_BLOCKS)
    assert c.tlb_entries() == 4 * MiB // (64 * KiB)
    assert c.tlb_entries(cont_as_one=False) == 1024


def test_perm_change_over_unmapped_is_einval_and_changes_nothing():
    pt = PageTable(G4)
    pt.map(0, 2 * MiB, 0, Perm.RW)
    before = rows(pt)
    assert pt.set_perm(MiB, 2 * MiB, Perm.R) == -EINVAL
    assert rows(pt) == before


def test_unmap_frees_empty_tables():
    pt = PageTable(G4)
    pt.map(0, 4 * MiB, 0, Perm.RW, policy=Paint.PTES)
    assert pt.table_pages() == {0: 1, 1: 1, 2: 1, 3: 2}
    assert pt.unmap(2 * MiB, 2 * MiB) == 0
    assert pt.table_pages() == {0: 1, 1: 1, 2: 1, 3: 1}
    assert pt.counters.table_pages_freed == 1
    assert pt.unmap(0, 4 * KiB) == 0 and pt.counters.table_pages_freed == 1
    assert pt.unmap(4 * KiB, 2 * MiB - 4 * KiB) == 0
    assert pt.table_pages() == {0: 1, 1: 0, 2: 0, 3: 0}
    assert pt.counters.table_pages_freed == 4
    assert pt.unmap(0, 4 * KiB) == -EINVAL


# ---- translate, nodes, listing ------------------------------------------------------------
def test_translate_many_and_walk_nodes():
    pt = PageTable(G4, placement=TablePlacement.MEMORY_NODE, table_nid=0)
    pt.map(0, 2 * MiB, 8 * GiB, Perm.RW, nid=1, policy=Paint.PTES)
    pt.map(GiB, 4 * KiB, 16 * GiB, Perm.RX, nid=2)
    pa, level, cont, perm, nid = pt.translate_many(np.array([4096, GiB, 3 * GiB]))
    assert pa[:2].tolist() == [8 * GiB + 4096, 16 * GiB]
    assert level.tolist() == [3, 3, -2] and nid[:2].tolist() == [1, 2]
    assert perm[:2].tolist() == [3, 5]
    assert pt.translate(3 * GiB) is None
    w = pt.walk_nids(np.array([4096, GiB, 3 * GiB]))
    # top on table_nid; the PUD table maps first the node-1 leaves; the rest node-local
    assert w.tolist() == [[0, 1, 1, 1], [0, 1, 2, 2], [0, -1, -1, -1]]
    by = pt.table_pages_by_node(3)
    assert by[0] == {0: 1, 1: 0, 2: 0, 3: 0}
    assert by[1] == {0: 0, 1: 1, 2: 1, 3: 1} and by[2] == {0: 0, 1: 0, 2: 1, 3: 1}
    fixed = PageTable(G4, table_nid=1)
    fixed.map(0, 4 * KiB, 0, Perm.RW, nid=0)
    assert fixed.walk_nids(np.array([0])).tolist() == [[1, 1, 1, 1]]


def test_ptdump_and_frame():
    pt = PageTable(G4)
    pt.map(0, GiB + 64 * KiB, 0, Perm.RW)
    pt.set_perm(GiB, 4 * KiB, Perm.R)
    text = pt.ptdump(va_base=0xFFFF000000000000).splitlines()
    assert text[0].startswith("0xffff000000000000-0xffff000040000000")
    assert "1G PUD" in text[0] and "RW-" in text[0]
    assert "4K PTE" in text[1] and "R--" in text[1]
    assert "60K PTE" in text[2] and "CON" not in text[2]
    df = pt.extents()
    assert df.columns == ["va", "end", "size_bytes", "pa", "level", "level_name", "cont",
                          "perm", "nid"]
    assert df["level_name"].to_list() == ["PUD", "PTE", "PTE"]


def test_replication_per_node_top_tables():
    pt = PageTable(G4)
    text = 512 * GiB + 16 * MiB            # second top-level entry: kernel image region
    pt.map(0, 2 * GiB, 0, Perm.RW)         # linear map in entry 0, shared
    pt.map(text, 32 * MiB, 64 * MiB, Perm.RX, policy=Paint.NO_CONT)
    pt.map(text + 32 * MiB, 4 * MiB, 96 * MiB, Perm.R)
    rep = pt.replicate(text, 32 * MiB, {1: 8 * GiB + 64 * MiB})
    assert rep.translate(text + 4096, 1).pa == 8 * GiB + 64 * MiB + 4096
    assert rep.translate(text + 4096, 1).nid == 1
    assert rep.translate(text + 4096, 0).pa == 64 * MiB + 4096
    assert rep.translate(4096, 1).pa == 4096                   # other entries shared
    assert rep.translate(text + 32 * MiB, 1).pa == 96 * MiB    # same entry, not the range
    # node 1: its own PGD page + a PUD table + a PMD table for the 1G window of the text
    assert rep.table(1).table_pages() == {0: 1, 1: 1, 2: 1, 3: 0}
    assert rep.extra_table_bytes() == 3 * 4096
    assert rep.extra_copy_bytes() == 32 * MiB
    by = rep.table_pages_by_node()
    assert by[1] == {0: 1, 1: 1, 2: 1, 3: 0}
    with pytest.raises(ConfigError):
        pt.replicate(text, 32 * MiB, {1: 8 * GiB + 4096})      # breaks the PMD blocks


def test_validation_names_fields():
    pt = PageTable(G4)
    for call, where in [(lambda: pt.map(1, 4096, 0), "va"),
                        (lambda: pt.map(0, 100, 0), "size_bytes"),
                        (lambda: pt.map(0, 4096, 3), "pa"),
                        (lambda: pt.map(0, 4096, 0, 300), "perm"),
                        (lambda: pt.split(1 << 48), "va"),
                        (lambda: PageTable("4K"), "geometry")]:
        with pytest.raises(ConfigError) as e:
            call()
        assert e.value.where == where
    pt.map(0, 8192, 0)
    with pytest.raises(ConfigError, match="overlaps"):
        pt.map(4096, 8192, 0)


def test_apply_ops_batch_grows_storage():
    pt = PageTable(G4, chunks=1)
    pt.map(0, GiB, 0, Perm.RW, policy=Paint.PTES)
    n = 3000
    vas = np.arange(n, dtype=np.int64) * 2 * 4096
    ops = encode_ops(np.full(n, OP_SET_PERM), vas, 4096, None, np.array([1]), None,
                     geometry=G4)
    assert (pt.apply_ops(ops) == 0).all()
    assert pt.n_extents == 2 * n
    _, _, _, perm, _ = pt.translate_many(np.arange(2 * n, dtype=np.int64) * 4096)
    assert perm.tolist() == [1, 3] * n
    with pytest.raises(ConfigError):
        encode_ops(np.array([OP_MAP]), np.array([4096]), np.array([0]), geometry=G4)


def test_bench_runs_small():
    sec, ext = bench_random_ops(2000, 1, map_bytes=GiB)
    assert sec > 0 and ext > 1


# ---- random operation sequences against the twin -------------------------------------------
GEOMS = {
    "4K": (geometry.arm64("4K", 48), 64 * MiB),
    "4K-52": (geometry.arm64("4K", 52), 64 * MiB),       # LPA2: top level -1, 16 entries
    "16K": (geometry.arm64("16K", 47), 128 * MiB),
    "16K-36": (geometry.arm64("16K", 36), 128 * MiB),    # 2 levels: PMD blocks in the top table
    "64K": (geometry.arm64("64K", 42), GiB),
    "s2-4K": (geometry.stage2("4K", 40), 64 * MiB),      # 2 concatenated level-1 tables
    "x86": (geometry.x86_64(4), 16 * MiB),
    "x86-5": (geometry.x86_64(5), 16 * MiB),
}


@st.composite
def scenario(draw):
    name = draw(st.sampled_from(sorted(GEOMS)))
    g, region = GEOMS[name]
    P = g.page_bytes
    npages = region // P
    aligns = [P, 16 * P, g.block_bytes[2] if 2 in g.block_bytes else P]

    def addr():
        a = draw(st.sampled_from(aligns))
        return draw(st.integers(0, region // a - 1)) * a

    # start from one large mapping so that later operations mostly hit mapped blocks
    first = draw(st.sampled_from([0, 0, aligns[2], 16 * P, P]))
    ops = [("map", first, max(P, region - first - draw(st.sampled_from([0, P, aligns[2]]))),
            first + draw(st.sampled_from([0, 0, P, 16 * P])) + region, 3,
            draw(st.sampled_from([Paint.LARGEST, Paint.LARGEST, Paint.NO_CONT,
                                  Paint.NO_BLOCKS, Paint.PTES])), 0)]
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["map", "split", "split", "perm", "perm", "perm",
                                     "unmap", "fail"]))
        va = addr()
        size = max(P, min(region - va, draw(st.sampled_from(
            [P, 3 * P, 17 * P, npages // 4 * P, region]))))
        if kind == "map":
            skew = draw(st.sampled_from([0, 0, P, 16 * P]))
            ops.append(("map", va, size, va + skew + region, draw(st.sampled_from([1, 3, 5])),
                        draw(st.sampled_from(list(Paint))), draw(st.integers(0, 1))))
        elif kind == "split":
            ops.append(("split", va, draw(st.booleans())))
        elif kind == "perm":
            ops.append(("perm", va, size, draw(st.sampled_from([0, 1, 3])),
                        draw(st.sampled_from(list(PermSplit)))))
        elif kind == "unmap":
            ops.append(("unmap", va, size))
        else:
            ops.append(("fail", draw(st.sampled_from([None, 0, 1, 2]))))
    return name, ops


def _counter_dict(pt):
    return {k: v for k, v in pt.counters.as_dict().items() if v}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_random_sequences_match_twin(sc):
    name, ops = sc
    _run_against_twin(GEOMS[name][0], ops)


@st.composite
def block_scenario(draw):
    """A largest-leaves map of the whole region, then splits and permission changes at
    page-granular addresses (most of them land inside blocks or contiguous ranges)."""
    name = draw(st.sampled_from(sorted(GEOMS)))
    g, region = GEOMS[name]
    P = g.page_bytes
    ops = [("map", 0, region, region, 3, Paint.LARGEST, 0)]
    for _ in range(draw(st.integers(1, 12))):
        va = draw(st.integers(0, region // P - 1)) * P
        if draw(st.booleans()):
            ops.append(("split", va, draw(st.booleans())))
        else:
            size = min(region - va, draw(st.integers(1, 40)) * P)
            ops.append(("perm", va, size, draw(st.sampled_from([0, 1, 5])),
                        draw(st.sampled_from(list(PermSplit)))))
    return name, ops


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_scenario())
def test_random_splits_of_block_maps_match_twin(sc):
    name, ops = sc
    _run_against_twin(GEOMS[name][0], ops)


def _run_against_twin(g, ops):
    pt, tw = PageTable(g), NaivePageTable(g)
    for op in ops:
        before = {va: e[0] for va, e in tw.pages.items()}
        if op[0] == "map":
            _, va, size, pa, perm, policy, nid = op
            r = tw.map(va, size, pa, perm, int(policy), nid)
            if r:
                with pytest.raises(ConfigError):
                    pt.map(va, size, pa, perm, policy=policy, nid=nid)
            else:
                pt.map(va, size, pa, perm, policy=policy, nid=nid)
        elif op[0] == "split":
            assert pt.split(op[1], to_cont=op[2]) == tw.split(op[1], op[2])
        elif op[0] == "perm":
            _, va, size, perm, mode = op
            assert pt.set_perm(va, size, perm, mode=mode) == tw.set_perm(va, va + size, perm,
                                                                          int(mode))
        elif op[0] == "unmap":
            assert pt.unmap(op[1], op[2]) == tw.unmap(op[1], op[1] + op[2])
        else:
            pt.fail_table_alloc_after(op[1])
            tw.budget = op[1]
        assert rows(pt) == tw.extents()
        assert pt.table_pages() == tw.tables()
        assert _counter_dict(pt) == {k: v for k, v in tw.counts.items() if v}
        # every VA that stays mapped keeps its output address
        if op[0] in ("split", "perm", "fail"):
            assert {va: e[0] for va, e in tw.pages.items()} == before
    ex = pt.extents_array()
    assert (ex[1:, 0] >= ex[:-1, 0] + ex[:-1, 1]).all()  # sorted, never overlapping
    if tw.pages:
        vas = np.array(sorted(tw.pages), dtype=np.int64)
        pa, level, cont, perm, nid = pt.translate_many(vas)
        assert pa.tolist() == [tw.pages[v][0] for v in vas.tolist()]
        assert level.tolist() == [tw.pages[v][1] for v in vas.tolist()]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31))
def test_table_allocations_equal_the_change_in_table_count(seed):
    rng = np.random.default_rng(seed)
    pt = PageTable(G4)
    pt.map(0, 4 * GiB, 0, Perm.RW)
    start = sum(v for lv, v in pt.table_pages().items() if lv > 0)
    n = 200
    kind = np.where(rng.random(n) < 0.5, OP_SPLIT, OP_SET_PERM)
    vas = rng.integers(0, 4 * GiB // 4096 - 64, n) * 4096
    ops = encode_ops(kind, vas, np.where(kind == OP_SPLIT, 0, rng.integers(1, 64, n) * 4096),
                     None, rng.choice([1, 3], n), rng.integers(0, 2, n) * (kind == OP_SET_PERM),
                     geometry=G4)
    assert (pt.apply_ops(ops) == 0).all()
    now = sum(v for lv, v in pt.table_pages().items() if lv > 0)
    c = pt.counters
    assert now - start == c.table_pages_allocated - 1 - c.table_pages_freed
    assert c[PtEvent.SPLIT_REQUESTS] >= (kind == OP_SPLIT).sum()


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["4K", "16K", "64K"]))
def test_replicas_translate_like_the_base_outside_the_range(seed, granule):
    g = geometry.arm64(granule, 48)
    rng = np.random.default_rng(seed)
    blk = g.block_bytes[2]
    top = g.entry_bytes(g.start_level)
    pt = PageTable(g)
    lo = top + int(rng.integers(0, 8)) * blk              # text in the second top-level entry
    size = int(rng.integers(1, 4)) * blk
    pt.map(0, 4 * blk, 64 * blk, Perm.RW)                 # shared linear map, entry 0
    pt.map(lo - blk, blk, 8 * blk, Perm.RW)               # same entry, outside the range
    pt.map(lo, size, 16 * blk, Perm.RX, policy=Paint(int(rng.integers(0, 4))))
    copy_pa = (32 + int(rng.integers(0, 8))) * blk
    rep = pt.replicate(lo, size, {1: copy_pa, 2: copy_pa + 16 * blk})
    vas = np.concatenate([rng.integers(0, 4 * blk // g.page_bytes, 50) * g.page_bytes,
                          lo - blk + rng.integers(0, (size + blk) // g.page_bytes, 50)
                          * g.page_bytes])
    for va in vas.tolist():
        base = pt.translate(va)
        for nid, off in ((0, None), (1, copy_pa), (2, copy_pa + 16 * blk)):
            t = rep.translate(va, nid)
            if off is not None and lo <= va < lo + size:
                assert (t.pa, t.level, t.perm, t.nid) == (off + va - lo, base.level, base.perm,
                                                          nid)
            else:
                assert t == base
    # each copy: its own top-level table plus the tables below the replicated entry
    sub_tables = rep.table(1).table_pages()
    assert sub_tables == rep.table(2).table_pages()
    assert rep.extra_table_bytes() == 2 * rep.table(1).table_bytes()
    assert rep.extra_copy_bytes() == 2 * size


# ---- invariants over random operation sequences (README "What kmm guarantees") ----------------
class _Reference:
    """What the page table must translate: disjoint intervals ``[va, end) -> pa, perm``."""

    def __init__(self):
        self.iv: list[list[int]] = []          # [va, end, pa, perm], sorted by va

    def overlaps(self, lo, hi):
        return any(a < hi and lo < b for a, b, _, _ in self.iv)

    def covered(self, lo, hi):
        got = sorted((max(a, lo), min(b, hi)) for a, b, _, _ in self.iv if a < hi and lo < b)
        at = lo
        for a, b in got:
            if a > at:
                return False
            at = max(at, b)
        return at >= hi

    def map(self, lo, hi, pa, perm):
        self.iv = sorted(self.iv + [[lo, hi, pa, perm]])

    def _cut(self, lo, hi):
        """Split intervals at lo and hi; return those inside [lo, hi)."""
        out = []
        for a, b, pa, perm in self.iv:
            for x, y in ((a, min(b, lo)), (max(a, lo), min(b, hi)), (max(a, hi), b)):
                if x < y:
                    out.append([x, y, pa + (x - a), perm])
        self.iv = sorted(out)
        return [r for r in self.iv if lo <= r[0] and r[1] <= hi]

    def set_perm(self, lo, hi, perm):
        for r in self._cut(lo, hi):
            r[3] = perm

    def unmap(self, lo, hi):
        self._cut(lo, hi)
        self.iv = [r for r in self.iv if not (lo <= r[0] and r[1] <= hi)]

    def lookup(self, vas):
        pa = np.full(vas.size, -1, np.int64)
        perm = np.full(vas.size, -1, np.int64)
        for a, b, base, p in self.iv:
            m = (vas >= a) & (vas < b)
            pa[m] = base + (vas[m] - a)
            perm[m] = p
        return pa, perm

    def union(self):
        out = []
        for a, b, _, _ in self.iv:
            if out and out[-1][1] == a:
                out[-1][1] = b
            else:
                out.append([a, b])
        return out


def _is_leaf_boundary(pt, va):
    """Whether ``va`` starts a leaf, outside any contiguous range (an extent is a run of
    equal leaves)."""
    ex = pt.extents_array()
    i = int(np.searchsorted(ex[:, 0], va, side="right")) - 1
    level, cont = int(ex[i, 3] & 7) - 1, (int(ex[i, 3]) >> 3) & 1
    unit = pt.geometry.cont_bytes(level) if cont else pt.geometry.leaf_bytes(level)
    return (va - int(ex[i, 0])) % unit == 0


@st.composite
def invariant_ops(draw):
    name = draw(st.sampled_from(sorted(GEOMS)))
    g, region = GEOMS[name]
    P = g.page_bytes
    blk = g.block_bytes.get(2, 16 * P)
    npages = region // P

    def addr():
        unit = draw(st.sampled_from([P, 16 * P, blk]))
        return draw(st.integers(0, npages * P // unit - 1)) * unit

    def size(va):
        return max(P, min(region - va, draw(st.sampled_from([P, 3 * P, 17 * P, blk, region]))))

    # one large mapping first, so that most later operations land inside blocks and runs
    first = draw(st.sampled_from([0, 0, P, 16 * P, blk]))
    ops = [("map", first, region - first - draw(st.sampled_from([0, P, blk])) or P,
            first + draw(st.sampled_from([0, P, 16 * P])), draw(st.sampled_from([1, 3])),
            draw(st.sampled_from([Paint.LARGEST, Paint.LARGEST, Paint.NO_CONT, Paint.PTES])))]
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["map", "split", "split", "perm", "perm", "perm",
                                     "unmap", "fail", "fail"]))
        va = addr()
        if kind == "map":
            ops.append(("map", va, size(va), va + draw(st.sampled_from([0, P, 16 * P, blk])),
                        draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from(list(Paint)))))
        elif kind == "split":
            ops.append(("split", va, draw(st.booleans())))
        elif kind == "perm":
            ops.append(("perm", va, size(va), draw(st.sampled_from([0, 1, 3, 5])),
                        draw(st.sampled_from(list(PermSplit)))))
        elif kind == "unmap":
            ops.append(("unmap", va, size(va)))
        else:
            ops.append(("fail", draw(st.sampled_from([None, 0, 1, 2]))))
    return name, ops


@INVARIANT
@given(invariant_ops())
def test_invariant_translations_survive_every_operation(sc):
    """Maps, splits (with table allocations failing on demand), permission changes and unmaps:
    after each, every VA translates to exactly what was mapped there with the permission last
    set (splits and failed operations change nothing), leaf extents never overlap, and they
    cover exactly the mapped ranges, each a linear piece of one mapping."""
    name, ops = sc
    g, region = GEOMS[name]
    P = g.page_bytes
    pt, ref = PageTable(g), _Reference()
    edges = {0, region - P}
    for op in ops:
        if op[0] == "map":
            _, va, size, pa, perm, paint = op
            if ref.overlaps(va, va + size):
                with pytest.raises(ConfigError):
                    pt.map(va, size, pa, perm, policy=paint)
            else:
                pt.map(va, size, pa, perm, policy=paint)
                ref.map(va, va + size, pa, perm)
        elif op[0] == "split":
            r = pt.split(op[1], to_cont=op[2])
            event(f"split returned {r}")
            mapped = ref.covered(op[1], op[1] + P)
            assert r == (0 if mapped else -EINVAL) or (mapped and r == -ENOMEM)
            if r == 0:
                assert _is_leaf_boundary(pt, op[1]), "split left no leaf boundary at the VA"
        elif op[0] == "perm":
            _, va, size, perm, mode = op
            r = pt.set_perm(va, size, perm, mode=mode)
            event(f"set_perm returned {r}")
            full = ref.covered(va, va + size)
            assert (r == -EINVAL) == (not full)
            if r == 0:
                ref.set_perm(va, va + size, perm)
            else:
                assert r in (-EINVAL, -ENOMEM)
        elif op[0] == "unmap":
            _, va, size = op
            r = pt.unmap(va, size)
            assert (r == -EINVAL) == (not ref.overlaps(va, va + size))
            if r == 0:
                ref.unmap(va, va + size)
            else:
                assert r in (-EINVAL, -ENOMEM)
        else:
            pt.fail_table_alloc_after(op[1])
        if op[0] != "fail":
            edges.update({op[1], op[1] + (op[2] if op[0] in ("map", "perm", "unmap") else P)})

        # every VA at an edge of anything done so far, and on either side of it
        probes = np.array(sorted({min(max(e + d, 0), region - P) for e in edges
                                  for d in (-P, 0, P)}), dtype=np.int64)
        pa, level, _cont, perm, _nid = pt.translate_many(probes)
        want_pa, want_perm = ref.lookup(probes)
        mapped = want_pa >= 0
        assert ((level >= -1) == mapped).all(), "a VA's presence changed"
        assert (pa[mapped] == want_pa[mapped]).all(), "a VA's output address changed"
        assert (perm[mapped] == want_perm[mapped]).all(), "a permission is not what was set"

        ex = pt.extents_array()
        va0, end0 = ex[:, 0], ex[:, 0] + ex[:, 1]
        assert (va0[1:] >= end0[:-1]).all(), "leaf extents overlap"
        covered = []
        for a, b in zip(va0.tolist(), end0.tolist()):
            if covered and covered[-1][1] == a:
                covered[-1][1] = b
            else:
                covered.append([a, b])
        assert covered == ref.union(), "leaf extents do not cover exactly the mapped ranges"
        lo_pa, lo_perm = ref.lookup(va0)
        hi_pa, hi_perm = ref.lookup(end0 - P)
        assert (lo_pa == ex[:, 2]).all() and (hi_pa - lo_pa == ex[:, 1] - P).all()
        assert (lo_perm == hi_perm).all()


def test_translate_many_of_runs_and_holes_is_each_translation_alone():
    """translate_many skips the extent search while a trace stays in one mapping: across
    holes, neighbouring extents of other sizes and permissions, and jumps back, every VA
    gets what translating it alone gives."""
    rng = np.random.default_rng(5)
    pt = PageTable(G4)
    pt.map(0, 8 * MiB, 0, Perm.RX)
    pt.map(8 * MiB, 4 * MiB, 64 * MiB, Perm.R)       # adjacent, another permission
    pt.map(16 * MiB, 2 * MiB + 12 * 4096, 128 * MiB, Perm.RW)  # a hole before it
    pt.map(GiB, GiB, 2 * GiB, Perm.RW)              # a block
    pt.split(GiB + 4096)
    starts = rng.integers(0, 3 * GiB // 4096, 300) * 4096
    runs = np.concatenate([s + np.arange(rng.integers(1, 40)) * 64 for s in starts])
    # across every extent's ends, from inside it: its last byte, then the next extent's
    # first (or a hole), and back
    ex = pt.extents_array()
    ends = np.concatenate([[e - 64, e - 1, e, e + 1, e - 1, s - 1, s] for s, e in
                           zip(ex[:, 0].tolist(), (ex[:, 0] + ex[:, 1]).tolist())])
    probes = np.concatenate([runs, ends[ends >= 0], rng.integers(0, 3 * GiB, 2000)]
                            ).astype(np.int64)
    pa, level, cont, perm, nid = pt.translate_many(probes)
    for k, va in enumerate(probes.tolist()):
        t = pt.translate(va)
        if t is None:
            assert level[k] == -2 and pa[k] == 0
        else:
            assert (pa[k], level[k], bool(cont[k]), perm[k], nid[k]) == \
                (t.pa, t.level, t.cont, int(t.perm), t.nid)
    assert (level == -2).any() and (level >= 0).sum() > 1000
