"""pKVM host stage-2 alternative: stage-2 memory (S6), 2D walks and the comparison model."""
import pytest

from kmm import numa

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


# ---- the full-path comparison --------------------------------------------------------------
import numpy as np  # noqa: E402

from kmm import walk as kwalk  # noqa: E402
from kmm.cache import CacheConfig  # noqa: E402
from kmm.mech import ktr  # noqa: E402
from kmm.tlb import TLBConfig  # noqa: E402


@pytest.mark.parametrize("s1", ["4K", "16K", "64K"])
@pytest.mark.parametrize("s2", ["4K", "16K", "64K"])
def test_engine_walk_references_equal_the_bound_for_every_granule_pair(s1, s2):
    """An uncached 2D walk through kmm.walk makes n + (n+1)m references (m shorter with a
    stage-2 block), as pkvm.nested_references counts them."""
    g1 = geometry.arm64(s1, 48)
    g2 = geometry.stage2(s2, 48)
    tlb = TLBConfig.neoverse_n1(walk_cache_entries=0, s2_walk_cache_entries=0).with_geometry(g1, g2)
    for s2_leaf in (3, min(g2.block_bytes)):
        cfg = kwalk.PathConfig(tlb=tlb, caches=CacheConfig(), stage1=g1, stage2=g2,
                               s2_table_leaf_level=s2_leaf)
        r = kwalk.simulate_path(np.array([0x1234_5000], np.uint64), cfg, leaf_level=3,
                                s2_leaf_level=s2_leaf)
        block = None if s2_leaf == 3 else g2.block_bytes[s2_leaf]
        assert r.walk.walks == 1
        assert r.walk.refs == pkvm.nested_references(g1, g2, None, block)
    n, m = g1.levels, g2.levels
    assert pkvm.nested_references(g1, g2) == n + (n + 1) * m


def test_stage2_setup_leaves_hand_worked():
    m = ktr.Machine()
    ipa_text = ktr.ImagePlacement().pa_bytes + 8 * 2**20
    probe = np.array([ktr.UDATA_PA, ipa_text], np.uint64)
    opts = {o.label: o for o in pkvm.stage2_leaf_options("4K")}
    lv, ct = pkvm.stage2_setup(m, opts["4K page 4K"]).leaf(probe, 1)
    assert lv.tolist() == [3, 3] and ct.tolist() == [False, False]
    lv, _ = pkvm.stage2_setup(m, opts["4K block 2M"]).leaf(probe, 1)
    assert lv.tolist() == [2, 2]
    s = pkvm.stage2_setup(m, opts["4K block 1G"])
    assert s.leaf(probe, 0)[0].tolist() == [1, 1]   # node 0 maps its text as RAM
    assert s.leaf(probe, 1)[0].tolist() == [1, 2]   # node 1's copy: 2M blocks inside
    un = pkvm.stage2_setup(m, opts["4K block 2M"], text_aligned=False)
    assert un.leaf(probe, 1)[0].tolist() == [2, 3]  # an unaligned copy keeps pages
    lv, ct = pkvm.stage2_setup(m, opts["4K cont blocks 32M"]).leaf(probe, 0)
    assert lv.tolist() == [2, 2] and ct.tolist() == [True, True]


@pytest.fixture(scope="module")
def pair():
    m = ktr.Machine()
    run = ktr.RunConfig(accesses_per_cpu=4000, warmup_per_cpu=4000, seed=2)
    w = ktr.WORKLOADS["database"]
    ck = ktr.simulate_host(w, m, run)
    opt = pkvm.stage2_leaf_options("4K")[0]
    cs = ktr.simulate_host(w, m, run, stage2=pkvm.stage2_setup(m, opt))
    return ck, cs


def test_decomposition_adds_up_and_stage2_pages_cost_more(pair):
    ck, cs = pair
    lat = np.asarray(numa.generic(2, 117.0, 2.0).latency_ns)
    d = pkvm.decompose_walks(ck, cs, lat, ktr.UserPolicy.INTERLEAVE, ktr.HostCosts())
    assert d["a_ns"] + d["b_ns"] + d["c_ns"] == pytest.approx(d["loss_ns"])
    assert d["loss_ns"] > 0 and d["a_ns"] > 0 and d["b_ns"] > 0
    assert cs.walks > ck.walks and cs.walk_refs / cs.walks > ck.walk_refs / ck.walks
    same = pkvm.decompose_walks(ck, ck, lat, ktr.UserPolicy.INTERLEAVE, ktr.HostCosts())
    # KTR against itself under the stage-2 charging differs only by where text tables live
    assert same["a_ns"] == pytest.approx(0.0)


def test_stage2_memory_reserved_grows_with_sets_and_bounds_use():
    g = geometry.stage2("4K", 48)
    res = [pkvm.stage2_memory(pkvm.HostMemory(ram_bytes=16 * GiB * n, nodes=n), g, "block",
                              text_bytes=22 << 20) for n in (1, 2, 4)]
    r = [x["reserved_bytes"] for x in res]
    assert all(b > a for a, b in zip(r, r[1:]))
    assert all(x["used_bytes"] <= x["reserved_bytes"] for x in res)


def test_notebook_functions_give_the_stated_directions():
    from pathlib import Path

    from kmm.suite import params as sp
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "pkvm.ipynb"
    p = dict(sp.notebook_parameters(nb))
    p.update(s2_granules=["4K"], accesses_per_cpu=3000, warmup_per_cpu=3000, s6_nodes=[1, 2],
             s6_granules=["4K"], s6_ram_per_node_bytes=16 * GiB, el2_exit_sweep=[0.02])
    p = pkvm.params_from(p)
    runs = pkvm.simulate_all(p)
    comp = pkvm.comparison_frame(p, runs)
    exits = pkvm.exit_frame(p, runs)
    el2 = pkvm.el2_frame(p, runs)
    mem = pkvm.memory_frame(p)
    v = pkvm.claim_values(p, runs, comp, exits, el2, mem)
    deb = comp.filter(comp["label"] == p["debate_leaf"]).row(0, named=True)
    assert v["S1"]["value"] == v["S2"]["value"] == deb["share_a"]
    w = v["S3"]["value"]["walk_ns"]
    assert w[-1] < w[0]
    g = pkvm.stage2_gain(p, runs)
    assert v["S4"]["value"] == pytest.approx(pkvm.vhe_crossover_rate(g, p["nvhe_exit_extra_ns"]))
    r = v["S6"]["value"]["reserved_bytes"]
    assert r == sorted(r) and r[0] < r[-1]
    assert len(v["S5"]["value"]["ns"]) == 2 and v["S5"]["value"]["ns"][0] <= v["S5"]["value"]["ns"][1]
    # the uncached bound is never below the measured mean
    s2 = comp.filter(comp["leaf_bytes"] > 0)
    assert (s2["refs_per_walk"] <= s2["bound_refs"]).all()
