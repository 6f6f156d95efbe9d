"""pKVM host stage-2 alternative: stage-2 memory (S6), 2D walks and the comparison model."""
import pytest

from kmm import geometry
from kmm.errors import ConfigError
from kmm.mech import pkvm

GiB = 1 << 30


def test_hyp_pgtable_max_pages_hand_worked():
    # 256 GiB of 4K pages: 2**26 pages -> 131072 + 256 + 1 + 1 tables
    assert pkvm.hyp_pgtable_max_pages(1 << 26, 512) == 131330
    # 1 GiB of MMIO: 262144 pages -> 512 + 1 + 1 + 1
    assert pkvm.hyp_pgtable_max_pages(1 << 18, 512) == 515
    g = geometry.stage2("4K", 48)
    assert pkvm.host_s2_reserved_pages([256 * GiB], g) == 131330 + 16 + 515


def test_reserved_scales_with_sets_and_used_is_counted_from_tables():
    g = geometry.stage2("4K", 48)
    one = pkvm.stage2_memory(pkvm.HostMemory(ram_bytes=64 * GiB, nodes=1), g, "page")
    two = pkvm.stage2_memory(pkvm.HostMemory(ram_bytes=64 * GiB, nodes=2), g, "page")
    assert two["reserved_bytes"] > one["reserved_bytes"]
    # page leaves: 16M pages of RAM + 256K of I/O in PTE tables, 33 PMD tables, one PUD
    # table per 512 GiB window touched (RAM at 0, I/O at 16 TiB) and the top table
    pte = (64 * GiB >> 12) // 512 + (GiB >> 12) // 512
    assert one["used_bytes"] == (pte + 64 + 1 + 2 + 1) * 4096
    blocks = pkvm.stage2_memory(pkvm.HostMemory(ram_bytes=64 * GiB, nodes=1), g, "block")
    assert blocks["used_bytes"] < one["used_bytes"] <= one["reserved_bytes"]


def test_unaligned_text_copy_costs_tables_on_every_node():
    g = geometry.stage2("4K", 48)
    mem = pkvm.HostMemory(ram_bytes=64 * GiB, nodes=4)
    al = pkvm.stage2_memory(mem, g, "block", text_bytes=22 << 20, text_aligned=True)
    un = pkvm.stage2_memory(mem, g, "block", text_bytes=22 << 20, text_aligned=False)
    assert un["used_bytes"] > al["used_bytes"]
    assert un["reserved_bytes"] == al["reserved_bytes"]


def test_stage2_table_refuses_stage1_geometry():
    with pytest.raises(ConfigError, match="stage-2"):
        pkvm.host_stage2_table(pkvm.HostMemory(), geometry.arm64("4K", 48))


@pytest.mark.parametrize("s1", ["4K", "16K", "64K"])
@pytest.mark.parametrize("s2", ["4K", "16K", "64K"])
def test_nested_references_formula_every_granule_pair(s1, s2):
    g1 = geometry.arm64(s1, 48)
    g2 = geometry.stage2(s2, 48)
    n, m = g1.levels, g2.levels
    assert pkvm.nested_references(g1, g2) == n + (n + 1) * m
    assert pkvm.nested_references(g1, g2) == geometry.nested_walk_references(n, m)
    big = max(g2.block_bytes.values())
    m_block = g2.walk_references(max(g2.block_bytes, key=g2.block_bytes.get))
    assert pkvm.nested_references(g1, g2, s2_leaf_bytes=big) == n + (n + 1) * m_block


def test_vhe_crossover_hand_worked():
    # gain 10 %, 2 us extra per exit: crossover at 0.1 / (1.1 * 2e-6) exits/s
    r = pkvm.vhe_crossover_rate(0.10, 2000.0)
    assert r == pytest.approx(0.1 / (1.1 * 2e-6))
    assert pkvm.net_gain_with_exits(0.10, r, 2000.0) == pytest.approx(0.0, abs=1e-12)
    assert pkvm.net_gain_with_exits(0.10, 0.0, 2000.0) == pytest.approx(0.10)
    assert pkvm.net_gain_with_exits(0.10, 2 * r, 2000.0) < 0
    assert pkvm.vhe_crossover_rate(-0.02, 2000.0) == 0.0
