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
    kw = dict(text_bytes=22 << 20, force_pte=False)
    al = pkvm.stage2_memory(mem, g, "block", text_aligned=True, **kw)
    un = pkvm.stage2_memory(mem, g, "block", text_aligned=False, **kw)
    assert un["used_bytes"] > al["used_bytes"]
    assert un["reserved_bytes"] == al["reserved_bytes"]
    # the kernel page-maps the read-only range whatever its alignment
    al = pkvm.stage2_memory(mem, g, "block", text_bytes=22 << 20, text_aligned=True)
    un = pkvm.stage2_memory(mem, g, "block", text_bytes=22 << 20, text_aligned=False)
    assert un["used_bytes"] == al["used_bytes"]


def test_read_only_text_range_is_page_mapped_in_host_stage2():
    # arch/arm64/kvm/hyp/nvhe/mem_protect.c host_stage2_force_pte_cb: for memory, page
    # mappings wherever prot != PKVM_HOST_MEM_PROT; the host stage 2 is created with it
    # (kvm_host_prepare_stage2 -> __kvm_pgtable_stage2_init(..., host_stage2_force_pte_cb)).
    # The rest of RAM keeps the largest block that fits (host_stage2_adjust_range).
    g = geometry.stage2("4K", 48)
    mem = pkvm.HostMemory(ram_bytes=64 * GiB, nodes=1)
    text = (1 * GiB, 22 << 20, 1 * GiB)
    pt = pkvm.host_stage2_table(mem, g, "block", text)
    assert pt.translate(1 * GiB + 0x123000).level == 3
    assert pt.translate(1 * GiB + (22 << 20) - 4096).level == 3
    assert pt.translate(8 * GiB).level == 1  # default RW memory: a 1 GiB block
    old = pkvm.host_stage2_table(mem, g, "block", text, force_pte=False)
    assert old.translate(1 * GiB + 0x123000).level < 3
    assert pt.table_bytes() > old.table_bytes()


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
    assert pkvm.net_gain(0.10, r, 2000.0) == pytest.approx(0.0, abs=1e-12)
    assert pkvm.net_gain(0.10, 0.0, 2000.0) == pytest.approx(0.10)
    assert pkvm.net_gain(0.10, 2 * r, 2000.0) < 0
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
    # the read-only text range is page-mapped in every set (mem_protect.c
    # host_stage2_force_pte_cb); the leaf option applies to the rest of RAM
    lv, ct = pkvm.stage2_setup(m, opts["4K page 4K"]).leaf(probe, 1)
    assert lv.tolist() == [3, 3] and ct.tolist() == [False, False]
    lv, _ = pkvm.stage2_setup(m, opts["4K block 2M"]).leaf(probe, 1)
    assert lv.tolist() == [2, 3]
    s = pkvm.stage2_setup(m, opts["4K block 1G"])
    assert s.leaf(probe, 0)[0].tolist() == [1, 3]   # node 0's text: read-only, pages
    assert s.leaf(probe, 1)[0].tolist() == [1, 3]   # node 1's copy: the same
    un = pkvm.stage2_setup(m, opts["4K block 2M"], text_aligned=False)
    assert un.leaf(probe, 1)[0].tolist() == [2, 3]
    lv, ct = pkvm.stage2_setup(m, opts["4K cont blocks 32M"]).leaf(probe, 0)
    assert lv.tolist() == [2, 3] and ct.tolist() == [True, False]


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
    # synthetic kernel phases: in a run this short a trace-driven CPU may measure no kernel
    # phase at all; the trace-driven source is checked by test_trace_source_side_by_side
    p.update(s2_granules=["4K"], accesses_per_cpu=3000, warmup_per_cpu=3000, s6_nodes=[1, 2],
             s6_granules=["4K"], s6_ram_per_node_bytes=16 * GiB, el2_exit_sweep=[0.02],
             workload_source="synthetic")
    p = pkvm.params_from(p)
    runs = pkvm.simulate_all(p)
    comp = pkvm.comparison_frame(p, runs)
    exits = pkvm.exit_frame(p, runs)
    el2 = pkvm.el2_frame(p, runs)
    mem = pkvm.memory_frame(p)
    v = pkvm.claim_values(p, runs, comp, exits, el2, mem)
    deb = comp.filter(comp["label"] == p["debate_leaf"]).row(0, named=True)
    assert v["S1"]["value"] == v["S2"]["value"] == deb["share_footprint"]
    assert deb["footprint_ns"] + deb["walk_part_ns"] + deb["interaction_ns"] == pytest.approx(
        deb["loss_vs_ktr"] * deb["ktr_ns"])
    # the assumed stage-2 walk-cache size is in S1/S2's joint sweep, with its own runs
    assert {pt["params"]["s2_walk_cache_entries"] for pt in v["S1"]["sweep"]} == {0, 64, 128}
    centre = {pt["params"]["s2_walk_cache_entries"]: pt["value"] for pt in v["S1"]["sweep"]
              if pt["params"]["background"] == p["background"]
              and pt["params"]["dep_ifetch"] == p["dep_ifetch"]
              and pt["params"]["remote_ratio"] == p["remote_ratio"]}
    assert centre[64] == pytest.approx(deb["share_footprint"])
    assert centre[0] != centre[64]  # the size reaches the simulated TLB
    # hypothetical leaves are labelled, not decomposed, and out of S3's rule
    hyp = comp.filter(~comp["linux_builds"])
    assert set(hyp["label"].to_list()) == {"4K cont pages 64K", "4K cont blocks 32M"}
    assert hyp["share_footprint"].is_null().all() and (hyp["hypothetical"] != "").all()
    assert v["S3"]["value"]["leaf_bytes"] == [4096, 2 << 20, 1 << 30]
    assert "hypothetical" in v["S1"]["explanation"] and "hypothetical" in v["S3"]["explanation"]
    w = v["S3"]["value"]["walk_ns"]
    assert w[-1] < w[0]
    g = pkvm.stage2_gain(p, runs)
    sh = pkvm.overhead_shares(p)
    assert v["S4"]["value"] == pytest.approx(pkvm.crossover_exit_rate(
        g, p["nvhe_exit_extra_ns"], sh["text_stage2"] + sh["sync"], sh["text_base"]))
    # the trapped writes cost more than the baseline's and KTR's; sync costs something
    assert sh["text_stage2"] > sh["text_ktr"] > sh["text_base"] > 0 and sh["sync"] > 0
    assert v["S4"]["value"] < pkvm.vhe_crossover_rate(g, p["nvhe_exit_extra_ns"])
    n_bg = len({*p["background_range"], p["background"]})
    n_r = len({*p["ratio_range"], p["remote_ratio"]})
    assert len(v["S4"]["sweep"]) == n_bg * n_r * 3 * p["s4_overhead_points"]
    assert set(pkvm.OVERHEAD_ASSUMED) <= set(v["S4"]["sweep"][0]["params"])
    # one-at-a-time swings: each moves one parameter of the sweep from its published value
    keys = set(v["S4"]["sweep"][0]["params"])
    assert v["S4"]["swings"] and all(set(x["params"]) == keys for x in v["S4"]["swings"])
    for x in v["S4"]["swings"]:
        assert sum(x["params"][k] != p[k] for k in keys) == 1
    from kmm.suite import registry
    rec = {"value": v["S4"]["value"], "scenario": "published", "parameters": p,
           "sweep": v["S4"]["sweep"], "swings": v["S4"]["swings"]}
    assert registry.decided_by("S4", rec) is not None
    assert v["S6"]["deterministic"]
    ov, cross = pkvm.overhead_frames(p, runs)
    be = g / (1 + g)
    assert (ov["break_even"] == be).all()
    for r in cross.iter_rows(named=True):
        if 0 < r["crossover_rate"] < float("inf") and r["overhead"] == "stage-2 sync":
            one = pkvm.overhead_shares(p, s2_pages_per_s=r["crossover_rate"])["sync"]
            assert one == pytest.approx(be)
    zc = pkvm.s4_zero_causes(p, runs, v["S4"]["sweep"])
    assert zc["no_gain"] + zc["text"] + zc["sync"] + zc["both"] == sum(
        x["value"] == 0.0 for x in v["S4"]["sweep"])
    for (_r, _x), grp in exits.group_by(["exit_rate", "extra_ns"]):
        net = dict(zip(grp["overheads"].to_list(), grp["net_gain"].to_list()))
        # overheads that take the whole machine leave a net gain of -1 (no work done)
        assert (-1.0 <= net["+ traps, sync: top assumed rates"]
                <= net["+ traps, sync: published rates"] < net["exits only"])
        assert net["+ traps, sync: top assumed rates"] < net["+ traps, sync: published rates"] \
            or net["+ traps, sync: published rates"] == -1.0
    # EL2's walks are charged to the hypervisor's tables, its fetches to its text
    assert {"fetch_ns_per_exit", "walk_ns_per_exit"} <= set(el2.columns)
    r = v["S6"]["value"]["reserved_bytes"]
    assert r == sorted(r) and r[0] < r[-1]
    assert len(v["S5"]["value"]["ns"]) == 2 and v["S5"]["value"]["ns"][0] <= v["S5"]["value"]["ns"][1]
    # the uncached bound is never below the measured mean
    s2 = comp.filter(comp["leaf_bytes"] > 0)
    assert (s2["refs_per_walk"] <= s2["bound_refs"]).all()


# ---- text writes trapped to EL2, N stage-2 table sets, EL2's own regime ----------------------
def _topo(nodes, ratio=2.0, cpus_per_node=4):
    return numa.generic(nodes, 100.0, ratio, cpus_per_node=cpus_per_node)


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_trapped_patch_hand_count(nodes):
    """One 3-site patch: 3 traps whatever the node count, 3 x N copy writes, each write a
    fixmap, the broadcast flush of the slot (TLBI VALE2IS + DSB ISH, arch/arm64/kvm/hyp/nvhe/
    mm.c fixmap_clear_slot: 1 + 4 ns here), a store owning the line at the copy's node and
    a clean to PoU."""
    flush = dict(tlbi_ns=1.0, dsb_ish_ns=4.0, dsb_ish_per_cpu_ns=0.0)
    cost = ktr.PatchCost(sites=3, fixmap_ns=10.0, cmo_ns=20.0, sync_ns=1000.0, **flush)
    topo = _topo(nodes)
    ev = pkvm.text_write_events(nodes, 3, trapped=True)
    assert ev["traps"] == 3 and ev["copy_writes"] == 3 * nodes == ev["cmo_lines"]
    assert pkvm.text_write_events(nodes, 3, trapped=False)["traps"] == 0
    # copy 0 is local (100 ns), every other copy remote (200 ns)
    by_hand = {1: 1000 + 3 * 50 + 3 * 135, 2: 1000 + 3 * 50 + 3 * (135 + 235),
               4: 1000 + 3 * 50 + 3 * (135 + 3 * 235)}[nodes]
    w = pkvm.trapped_patch_window_ns(topo, nodes, cost, 50.0)
    assert w == pytest.approx(by_hand)
    # the same basis as KTR's untrapped patch: only the traps differ
    assert w - ktr.patch_window_ns(topo, nodes, cost) == pytest.approx(3 * 50.0)
    assert pkvm.trapped_patch_machine_ns(topo, nodes, cost, 50.0) == pytest.approx(w * topo.cpus)
    nosync = ktr.PatchCost(sites=3, fixmap_ns=10.0, cmo_ns=20.0, sync_ns=1000.0,
                           sync=ktr.PatchSync.NOSYNC, **flush)
    assert pkvm.trapped_patch_machine_ns(topo, nodes, nosync, 50.0) == pytest.approx(w)


def test_trapped_patch_grows_by_one_copy_per_node():
    cost = ktr.PatchCost(sites=2, fixmap_ns=10.0, cmo_ns=20.0, sync_ns=0.0, tlbi_ns=1.0,
                         dsb_ish_ns=4.0, dsb_ish_per_cpu_ns=0.0)
    topo = _topo(8)
    w = [pkvm.trapped_patch_window_ns(topo, n, cost, 70.0) for n in range(1, 9)]
    assert [b - a for a, b in zip(w, w[1:])] == pytest.approx([2 * (10 + 5 + 200 + 20)] * 7)


def test_stage2_invalidation_is_kvm_tlb_flush_vmid_ipa():
    """TLBI IPAS2E1IS, DSB ISH, TLBI VMALLE1IS, DSB ISH, each DSB waiting for every CPU."""
    sc = pkvm.SyncCost(tlbi_ns=10.0, dsb_ish_ns=200.0, dsb_ish_per_cpu_ns=5.0)
    iv = pkvm.stage2_invalidation(64, geometry.stage2("4K", 48), sc)
    assert iv["tlbis"] == 2 and iv["dsbs"] == 2
    assert iv["ns"] == pytest.approx(2 * (10 + 200 + 5 * 64))


@pytest.mark.parametrize("nodes", [1, 2, 4, 8])
def test_stage2_sync_is_n_times_one_set(nodes):
    g2 = geometry.stage2("4K", 48)
    sc = pkvm.SyncCost(tlbi_ns=10.0, dsb_ish_ns=200.0, dsb_ish_per_cpu_ns=5.0, cached_ns=30.0,
                       trap_ns=400.0)
    flat = np.asarray(_topo(nodes, ratio=1.0).latency_ns)
    one = pkvm.stage2_page_cycle(flat, 1, g2, sc, cpus=32)
    n = pkvm.stage2_page_cycle(flat, nodes, g2, sc, cpus=32)
    assert n["ns"] == pytest.approx(nodes * one["ns"])
    for k in ("descriptor_writes", "cached_reads", "tlbis", "dsbs", "traps", "invalidations"):
        assert n[k] == nodes * one[k]
    # hand count per set on a flat machine: 3 leaf writes (donate, reclaim, refault) of
    # 100 ns, 3 walks of 3 cached upper levels, one invalidation, one refault trap
    per_set = 3 * 100 + 3 * 3 * 30 + 2 * (10 + 200 + 5 * 32) + 400
    assert one["ns"] == pytest.approx(per_set)


def test_stage2_sync_charges_each_set_at_its_node():
    g2 = geometry.stage2("4K", 48)
    sc = pkvm.SyncCost(tlbi_ns=0.0, dsb_ish_ns=0.0, dsb_ish_per_cpu_ns=0.0, cached_ns=0.0,
                       trap_ns=0.0)
    lat = np.asarray(_topo(2, ratio=2.5).latency_ns)  # 100 local, 250 remote
    c = pkvm.stage2_page_cycle(lat, 2, g2, sc, cpus=8)
    # donate and reclaim from either node: (100 + 250) each; refault local in each set
    assert c["ns"] == pytest.approx(2 * (100 + 250) + 2 * 100)
    once = pkvm.stage2_page_cycle(lat, 2, g2, pkvm.SyncCost(tlbi_per_set=False), cpus=8)
    assert once["invalidations"] == 1 and once["tlbis"] == 2


def test_new_overheads_vanish_at_zero_rates():
    """With no text writes and no stage-2 changes the net gain and the crossover are the
    exits-only ones, bit for bit."""
    for g, rate, extra in ((0.05, 1e4, 1500.0), (0.12, 0.0, 500.0), (-0.02, 1e3, 2000.0)):
        assert pkvm.net_gain(g, rate, extra) == 1.0 / (1.0 / (1.0 + g) + rate * extra * 1e-9) - 1
        assert pkvm.crossover_exit_rate(g, extra) == pkvm.vhe_crossover_rate(g, extra)
    topo = _topo(2)
    cost = ktr.PatchCost()
    assert pkvm.text_write_fraction(topo, 2, 0.0, cost, 500.0) == 0.0
    assert pkvm.stage2_sync_fraction(topo.latency_ns, 2, 0.0, geometry.stage2("4K", 48),
                                     pkvm.SyncCost(), topo.cpus) == 0.0


def test_net_gain_with_shares_hand_worked():
    # gain 10 %, no exits: a 2 % stage-2 share against a 1 % baseline share
    g = pkvm.net_gain(0.10, 0.0, 0.0, 0.02, 0.01)
    assert g == pytest.approx((1 / 0.99) / ((1 / 1.1) / 0.98) - 1)
    r = pkvm.crossover_exit_rate(0.10, 1000.0, 0.02, 0.01)
    assert r == pytest.approx((0.1 / 1.1 - 0.01 / 0.99) / 1e-6)
    assert pkvm.net_gain(0.10, r, 1000.0, 0.02, 0.01) == pytest.approx(0.0, abs=1e-12)
    assert r < pkvm.vhe_crossover_rate(0.10, 1000.0)
    # overheads that alone cancel the gain leave no exit budget
    assert pkvm.crossover_exit_rate(0.10, 1000.0, 0.2, 0.0) == 0.0


def _el2_config(s1, s2, nodes=4):
    g1 = geometry.arm64(s1, 48)
    g2 = geometry.stage2(s2, 48)
    tlb = TLBConfig.neoverse_n1(walk_cache_entries=0, s2_walk_cache_entries=0).with_geometry(g1, g2)
    return g1, g2, kwalk.PathConfig(tlb=tlb, caches=CacheConfig(), stage1=g1, stage2=g2,
                                    nodes=nodes)


@pytest.mark.parametrize("s1", ["4K", "16K", "64K"])
def test_el2_walks_are_1d_through_the_hyp_tables(s1):
    """An EL2 access misses the TLB and walks the hypervisor's stage-1 tables only: as many
    references as stage-1 levels, none at stage 2, all on the hyp tables' class; a host
    access on the same path makes n + (n+1)m."""
    g1, g2, cfg = _el2_config(s1, "4K")
    path = pkvm.El2Path(cfg, hyp_table_class=3)
    hyp = path.run(np.array([ktr.HYP_VA_BASE], np.uint64), el2=np.array([True]))
    assert hyp.walk.walks == 1
    assert hyp.walk.refs == hyp.walk.s1_refs == g1.levels
    assert hyp.walk.s2_refs == 0
    assert hyp.walk_refs_by_node[0].tolist() == [0, 0, 0, g1.levels]
    both = path.run(np.array([0x1234_5000], np.uint64), el2=np.array([False]))
    assert both.walk.refs - hyp.walk.refs == pkvm.nested_references(g1, g2)


def test_el2path_without_el2_accesses_is_a_plain_path():
    g1, g2, cfg = _el2_config("4K", "4K")
    rng = np.random.default_rng(3)
    va = (rng.integers(0, 1 << 20, 500).astype(np.uint64) << np.uint64(12))
    kw = dict(kind=rng.integers(0, 3, 500).astype(np.uint8), node=rng.integers(0, 4, 500))
    a = kwalk.Path(cfg).run(va, **kw)
    b = pkvm.El2Path(cfg, 3).run(va, el2=np.zeros(500, bool), **kw)
    assert a.walk == b.walk and a.tlb == b.tlb and a.cache == b.cache
    assert (a.mem_reads == b.mem_reads).all() and (a.served == b.served).all()


def test_el2_shares_the_machine_with_the_host():
    """The EL2 accesses' TLB entries and cache lines live in the host path's structures: a
    second EL2 visit to the same line hits the TLB and the cache."""
    g1, g2, cfg = _el2_config("4K", "4K")
    path = pkvm.El2Path(cfg, 3)
    va = np.array([ktr.HYP_VA_BASE, 0x1234_5000, ktr.HYP_VA_BASE], np.uint64)
    r = path.run(va, el2=np.array([True, False, True]), kind=np.full(3, 2, np.uint8))
    assert r.walk.walks == 2
    assert path.hyp.tlb_state is path.main.tlb_state
    assert path.hyp.cache_state is path.main.cache_state


def test_stage2_tables_are_read_from_the_hyp_pool_node(pair):
    """Every node's host stage-2 set comes from the hypervisor's one pool, reserved by
    ``kvm_hyp_reserve`` (arch/arm64/kvm/pkvm.c) with ``memblock_phys_alloc`` and no node,
    top down: on the last node. Node 1 reads its set locally, node 0 remotely."""
    _ck, cs = pair
    cls = cs.classes
    k = cs.sim_node
    pool = pkvm.hyp_pool_node(cs.nodes)
    assert cs.mem[2, k, pool] > 0
    for node in range(cs.nodes):
        where = cls.resolve(ktr.Scheme.STAGE2, ktr.UserPolicy.INTERLEAVE, node, k)
        assert where[pool] == pool
    # a per-node pool (pool="local") would put each set on its node
    for node in range(cs.nodes):
        where = cls.resolve(ktr.Scheme.STAGE2, ktr.UserPolicy.INTERLEAVE, node, k)
        assert where[cls.khome(k)] == node


def test_params_refuse_an_unknown_patch_sync():
    from pathlib import Path

    from kmm.suite import params as sp
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "pkvm.ipynb"
    p = dict(sp.notebook_parameters(nb))
    p["patch_sync"] = "sometimes"
    with pytest.raises(ConfigError, match="stop_machine"):
        pkvm.params_from(p)


def test_overhead_points_cover_the_assumed_ranges():
    from pathlib import Path

    from kmm.suite import params as sp
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "pkvm.ipynb"
    p = pkvm.params_from(dict(sp.notebook_parameters(nb)))
    specs = pkvm.overhead_specs()
    assert set(specs) == set(pkvm.OVERHEAD_ASSUMED)
    pts = pkvm.overhead_points(p, 10, specs)
    for name, (lo, hi) in specs.items():
        xs = sorted(pt[name] for pt in pts)
        assert lo <= xs[0] and xs[-1] <= hi
        assert len(set(xs)) == 10 or isinstance(p[name], int)


def test_trace_source_side_by_side():
    """The trace-driven default: S1 names the captured traces and the synthetic loss, the
    side-by-side frame carries both sources and every scheme, and the captured pKVM run's
    exits lie inside S5's assumed ranges."""
    from pathlib import Path

    from kmm.suite import params as sp
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "pkvm.ipynb"
    p = dict(sp.notebook_parameters(nb))
    p.update(s2_granules=["4K"], accesses_per_cpu=20000, warmup_per_cpu=20000,
             s6_nodes=[1, 2], s6_granules=["4K"], s6_ram_per_node_bytes=16 * GiB,
             el2_exit_sweep=[0.02], s2_walk_cache_range=[64])
    p = pkvm.params_from(p)
    runs = pkvm.simulate_all(p)
    src = pkvm.sources_frame(p, runs)
    assert sorted(set(src["source"].to_list())) == ["synthetic", "trace"]
    assert len(set(src["scheme"].to_list())) == 3
    note = pkvm.study.source_note(p, runs)
    assert "captured memcached, pagecache traces" in note and "synthetic" in note
    el2 = pkvm.el2_trace_frame(p)
    assert ((el2["measured"] >= el2["low"]) & (el2["measured"] <= el2["high"])).all()
