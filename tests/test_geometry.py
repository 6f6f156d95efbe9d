"""Every geometry value against the kernel's (arch/arm64/Kconfig, pgtable-hwdef.h)."""
import pytest

from kmm import geometry
from kmm.errors import ConfigError
from kmm.geometry import GiB, KiB, MiB, TiB

# granule, va_bits -> levels, start level, PTRS_PER_PGD
ARM64_SHAPES = {
    ("4K", 39): (3, 1, 512),
    ("4K", 48): (4, 0, 512),
    ("4K", 52): (5, -1, 16),
    ("16K", 36): (2, 2, 2048),
    ("16K", 47): (3, 1, 2048),
    ("16K", 48): (4, 0, 2),
    ("16K", 52): (4, 0, 32),
    ("64K", 42): (2, 2, 8192),
    ("64K", 48): (3, 1, 64),
    ("64K", 52): (3, 1, 1024),
}


@pytest.mark.parametrize("key", sorted(ARM64_SHAPES))
def test_arm64_levels_and_top_table(key):
    granule, va = key
    g = geometry.arm64(granule, va)
    levels, start, ptrs_per_pgd = ARM64_SHAPES[key]
    assert g.levels == levels == (va - 4) // (g.page_shift - 3)
    assert g.start_level == start
    assert g.top_entries == ptrs_per_pgd
    assert g.top_table_bytes == ptrs_per_pgd * 8


def test_lpa2_top_table_is_level_minus_one_and_smaller_than_a_page():
    g = geometry.arm64("4K", 52)
    assert g.start_level == -1
    assert g.top_table_bytes == 128 < g.page_bytes


@pytest.mark.parametrize("granule,page,entries,blocks,cont_pte,cont_pmd,max_order,pageblock", [
    ("4K", 4 * KiB, 512, {1: GiB, 2: 2 * MiB}, 64 * KiB, 32 * MiB, 10, 2 * MiB),
    ("16K", 16 * KiB, 2048, {2: 32 * MiB}, 2 * MiB, GiB, 11, 32 * MiB),
    ("64K", 64 * KiB, 8192, {2: 512 * MiB}, 2 * MiB, 16 * GiB, 13, 512 * MiB),
])
def test_arm64_granule_constants(granule, page, entries, blocks, cont_pte, cont_pmd, max_order,
                                 pageblock):
    g = geometry.arm64(granule, 48)
    assert g.page_bytes == page
    assert g.entries_per_table == entries
    assert g.block_bytes == blocks
    assert g.cont_pte_bytes == cont_pte
    assert g.cont_pmd_bytes == cont_pmd
    assert g.max_page_order == max_order
    assert g.pageblock_bytes == pageblock
    assert g.leaf_bytes(3) == page


def test_level_shifts_4k():
    g = geometry.arm64("4K", 48)
    assert [g.entry_bytes(lv) for lv in (0, 1, 2, 3)] == [512 * GiB, GiB, 2 * MiB, 4 * KiB]
    assert g.table_span_bytes(3) == 2 * MiB
    assert g.walk_references(3) == 4 and g.walk_references(2) == 3


def test_x86_64():
    g4 = geometry.x86_64(4)
    assert (g4.levels, g4.start_level, g4.va_bits) == (4, 0, 48)
    assert g4.block_bytes == {1: GiB, 2: 2 * MiB}
    assert g4.cont_pte_bytes is None and g4.cont_pmd_bytes is None
    assert g4.pageblock_bytes == 2 * MiB and g4.max_page_order == 10
    g5 = geometry.x86_64(5)
    assert (g5.levels, g5.start_level, g5.va_bits) == (5, -1, 57)
    assert g5.entry_bytes(-1) == 256 * TiB


@pytest.mark.parametrize("granule,ipa,levels,start,concat", [
    ("4K", 40, 3, 1, 2),     # KVM: 40-bit IPA, 4K: 2 concatenated level-1 tables
    ("4K", 44, 4, 0, 1),
    ("4K", 48, 4, 0, 1),
    ("16K", 40, 2, 2, 16),   # 16 concatenated level-2 tables
    ("16K", 48, 3, 1, 2),
    ("64K", 44, 2, 2, 4),
    ("64K", 48, 3, 1, 1),
])
def test_stage2_concatenation(granule, ipa, levels, start, concat):
    s = geometry.stage2(granule, ipa)
    assert (s.levels, s.start_level, s.concatenated) == (levels, start, concat)
    assert s.stage == 2


def test_stage2_without_concatenation_walks_more_levels():
    assert geometry.stage2("4K", 40, concatenate=False).levels == 4
    assert geometry.stage2("4K", 40, concatenate=True).levels == 3


def test_nested_walk_bound():
    assert geometry.nested_walk_references(4, 4) == 24
    assert geometry.nested_walk_references(3, 2) == 3 + 4 * 2


@pytest.mark.parametrize("call,where", [
    (lambda: geometry.arm64("8K", 48), "granule"),
    (lambda: geometry.arm64("4K", 47), "va_bits"),
    (lambda: geometry.arm64("64K", 39), "va_bits"),
    (lambda: geometry.x86_64(3), "levels"),
    (lambda: geometry.stage2("4K", 60), "ipa_bits"),
    (lambda: geometry.arm64("16K", 48).leaf_bytes(1), "level"),
])
def test_bad_geometry_names_the_field(call, where):
    with pytest.raises(ConfigError) as e:
        call()
    assert e.value.where == where
    assert "allowed" in str(e.value) or "must" in str(e.value) or "level" in str(e.value)
