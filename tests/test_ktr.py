"""Kernel text replication: memory (K5), patching (K4) and the performance model."""
import pytest
from hypothesis import given, settings, strategies as st

from kmm import geometry, numa
from kmm.errors import ConfigError
from kmm.mech import ktr

GEOMS = [("4K", 48), ("4K", 39), ("16K", 47), ("16K", 48), ("64K", 42), ("64K", 48)]


# ---- K5: replication memory ------------------------------------------------------------
def test_image_segments_are_segment_aligned_and_defaults_sum_to_size_columns():
    img = ktr.KernelImage()
    segs = img.segments()
    assert [s[0] for s in segs] == [0, 16_580_608, 22_872_064]
    assert all(off % (64 << 10) == 0 and size % (64 << 10) == 0 for off, size, _, _ in segs)
    assert img.replicated_bytes == 16_580_608 + 6 * 2**20
    assert img.rw_bytes == 10_998_617 - 6 * 2**20 + 506_468


def test_hand_worked_4k_48bit_two_nodes():
    # Text [0, 15.81 MiB), rodata to 21.81 MiB, rw to 26.81 MiB in 2 MiB windows: the PTE
    # tables are the three windows holding a segment edge (7, 10 and 13); one PMD and one
    # PUD table; plus the 4 KiB top-level table of the second node.
    img = ktr.KernelImage()
    g = geometry.arm64("4K", 48)
    assert ktr.image_subtree_tables(img, g) == {1: 1, 2: 1, 3: 3}
    m = ktr.replication_bytes_model(img, g, 2)
    assert m == {"copy_bytes": 22_872_064, "table_bytes": 4096 + 5 * 4096,
                 "total_bytes": 22_872_064 + 24_576}


def test_top_level_table_smaller_than_a_page_16k_48bit():
    g = geometry.arm64("16K", 48)
    assert g.top_table_bytes == 16
    m = ktr.replication_bytes_model(ktr.KernelImage(), g, 2)
    assert m["table_bytes"] == 16 + 3 * 16384


@pytest.mark.parametrize("granule,va_bits", GEOMS)
def test_model_bytes_equal_formula_at_every_node_count(granule, va_bits):
    g = geometry.arm64(granule, va_bits)
    img = ktr.KernelImage()
    for n in (1, 2, 4, 8):
        assert ktr.replication_bytes_model(img, g, n) == ktr.replication_bytes_formula(img, g, n)
    assert ktr.replication_bytes_model(img, g, 1)["total_bytes"] == 0


@settings(max_examples=15, deadline=None)
@given(text=st.integers(64 << 10, 40 << 20), rodata=st.integers(0, 10 << 20),
       rw=st.integers(0, 20 << 20), which=st.integers(0, len(GEOMS) - 1),
       nodes=st.sampled_from([2, 3, 8]))
def test_model_equals_formula_random_images(text, rodata, rw, which, nodes):
    g = geometry.arm64(*GEOMS[which])
    img = ktr.KernelImage(text_bytes=text, rodata_bytes=rodata, rw_bytes=rw)
    m = ktr.replication_bytes_model(img, g, nodes)
    assert m == ktr.replication_bytes_formula(img, g, nodes)
    # one copy and one set of tables per extra node
    assert m["copy_bytes"] == (nodes - 1) * img.replicated_bytes
    assert m["table_bytes"] % (nodes - 1) == 0


def test_replicated_translation_points_each_node_at_its_copy():
    g = geometry.arm64("4K", 48)
    place = ktr.ImagePlacement()
    pt, rep = ktr.build_kernel_tables(ktr.KernelImage(), g, 4, place)
    va = place.image_va(g) + 0x1234000
    assert rep.translate(va, 0).pa == pt.translate(va).pa
    for n in (1, 2, 3):
        assert rep.translate(va, n).pa == pt.translate(va).pa + n * place.node_span_bytes
    rw_va = place.image_va(g) + ktr.KernelImage().replicated_bytes + 4096
    assert rep.translate(rw_va, 3).pa == pt.translate(rw_va).pa  # rw data stays shared


def test_image_must_fit_one_top_level_entry():
    g = geometry.arm64("64K", 42)  # 512 MiB per top-level entry
    with pytest.raises(ConfigError, match="top-level entry"):
        ktr.build_kernel_tables(ktr.KernelImage(text_bytes=600 << 20), g, 2)


# ---- K4: patching ----------------------------------------------------------------------
def _topo():
    return numa.generic(2, 100.0, 2.0, cpus_per_node=4)


def test_patch_window_hand_worked():
    cost = ktr.PatchCost(sites=2, fixmap_ns=300.0, cmo_ns=500.0, sync_ns=5000.0)
    t = _topo()
    assert ktr.patch_window_ns(t, 1, cost) == 5000 + 2 * (300 + 100 + 500)
    assert ktr.patch_window_ns(t, 2, cost) == 5000 + 2 * (900 + 300 + 200 + 500)
    assert ktr.patch_machine_ns(t, 2, cost) == 8 * 8800
    nosync = ktr.PatchCost(sites=2, fixmap_ns=300.0, cmo_ns=500.0, sync_ns=5000.0,
                           sync=ktr.PatchSync.NOSYNC)
    assert ktr.patch_machine_ns(t, 2, nosync) == 8800


def test_break_even_rate_hand_worked():
    cost = ktr.PatchCost(sites=2, fixmap_ns=300.0, cmo_ns=500.0, sync_ns=5000.0)
    t = _topo()
    # extra machine time per patch (8800 - 6800) * 8 CPUs; gain 10 % is cancelled when the
    # patch CPU fraction reaches 0.1 / 1.1
    rate = ktr.break_even_patch_rate(t, 0.10, cost)
    assert rate == pytest.approx((0.1 / 1.1) * 8e9 / 16000)
    f = ktr.patch_overhead_fraction(t, 2, rate, cost) - ktr.patch_overhead_fraction(t, 1, rate, cost)
    assert f == pytest.approx(0.1 / 1.1)
    assert ktr.break_even_patch_rate(t, -0.01, cost) == 0.0


def test_patch_cost_strictly_increases_with_copies():
    t = numa.generic(8, 90.0, 1.0, cpus_per_node=2)  # even at ratio 1.0
    w = [ktr.patch_window_ns(t, n) for n in (1, 2, 4, 8)]
    assert all(b > a for a, b in zip(w, w[1:]))
