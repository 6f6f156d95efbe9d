"""pKVM: the counterfactual footprint/walk decomposition (S1/S2), the leaves Linux builds, every
CPU's re-walks after a host stage-2 donation (S4), S4's swings and the replicates."""
import numpy as np
import pytest

from kmm import geometry, numa
from kmm.mech import ktr
from kmm.mech import pkvm


# ---- the decomposition -----------------------------------------------------------------------
def test_parts_hand_worked_and_sum_to_the_full_change():
    # KTR 100, entry reach alone 130, walk alone 110, both 145: 30 + 10 + 5 = 45
    d = pkvm.footprint_walk_parts(100.0, 130.0, 110.0, 145.0)
    assert (d["footprint_ns"], d["walk_ns"], d["interaction_ns"], d["full_ns"]) == (
        30.0, 10.0, 5.0, 45.0)
    assert d["share_footprint"] == 0.75


@pytest.mark.parametrize("reach,walk", [(95.0, 110.0), (130.0, 90.0)])
def test_share_is_undefined_not_clipped_when_a_part_is_negative(reach, walk):
    d = pkvm.footprint_walk_parts(100.0, reach, walk, 120.0)
    assert d["share_footprint"] is None
    assert d["footprint_ns"] + d["walk_ns"] + d["interaction_ns"] == pytest.approx(20.0)
    assert pkvm.footprint_walk_parts(100.0, 100.0, 100.0, 100.0)["share_footprint"] is None


@pytest.fixture(scope="module")
def four_runs():
    m = ktr.Machine()
    run = ktr.RunConfig(accesses_per_cpu=3000, warmup_per_cpu=3000, seed=3)
    w = ktr.WORKLOADS["database"]
    s2 = pkvm.stage2_setup(m, pkvm.stage2_leaf_options("4K")[0])
    return {"ktr": ktr.simulate_host(w, m, run),
            "reach": ktr.simulate_host(w, m, run, entry_stage2=s2),
            "walk": ktr.simulate_host(w, m, run, stage2=s2, entry_stage2=None),
            "full": ktr.simulate_host(w, m, run, stage2=s2),
            "full_given": ktr.simulate_host(w, m, run, stage2=s2, entry_stage2=s2),
            "ktr_none": ktr.simulate_host(w, m, run, entry_stage2=None)}


def _same(a, b):
    return (a.walks, a.walk_refs, a.l2_tlb_hits, a.tlb_misses) == (
        b.walks, b.walk_refs, b.l2_tlb_hits, b.tlb_misses) and (a.mem == b.mem).all()


def test_entry_reach_given_explicitly_is_the_default_run(four_runs):
    # the override path (a TLB entry size per access) reproduces the leaves' own sizes
    assert _same(four_runs["full"], four_runs["full_given"])
    assert _same(four_runs["ktr"], four_runs["ktr_none"])


def test_each_counterfactual_changes_only_its_side(four_runs):
    r = four_runs
    per = {k: c.walk_refs / c.walks for k, c in r.items()}
    # 1D walks (at most 4 references) in KTR and the reach-only run; 2D walks (more
    # references, fewer with the walk caches) in the others
    assert per["ktr"] <= 4 and per["reach"] <= 4
    assert per["walk"] > per["ktr"] and per["full"] > per["reach"]
    # 4K stage-2 pages splinter the kernel's larger stage-1 entries: more walks with the
    # combined reach, whichever walk fills them
    assert r["reach"].walks > r["ktr"].walks
    assert r["full"].walks > r["walk"].walks


def test_decomposition_from_counts_sums_to_the_full_change(four_runs):
    r = four_runs
    lat = np.asarray(numa.generic(2, 117.0, 2.2).latency_ns)
    pol, costs = ktr.UserPolicy.INTERLEAVE, ktr.HostCosts()
    d = pkvm.counterfactual_walks(r["ktr"], r["reach"], r["walk"], r["full"], lat, pol, costs)
    t_k = ktr.system_time_ns(r["ktr"], lat, ktr.Scheme.KTR, pol, costs)
    t_s = ktr.system_time_ns(r["full"], lat, ktr.Scheme.STAGE2, pol, costs)
    assert d["footprint_ns"] + d["walk_ns"] + d["interaction_ns"] == pytest.approx(t_s - t_k)
    assert d["full_ns"] == pytest.approx(t_s - t_k)
    assert d["footprint_ns"] > 0 and d["walk_ns"] > 0
    assert 0.0 < d["share_footprint"] < 1.0


def test_entry_reach_refuses_bad_values():
    from kmm.errors import ConfigError
    m = ktr.Machine()
    run = ktr.RunConfig(accesses_per_cpu=1000, warmup_per_cpu=0)
    with pytest.raises(ConfigError, match="entry_stage2"):
        ktr.simulate_host(ktr.WORKLOADS["database"], m, run, entry_stage2="stage1")


# ---- the leaves Linux builds -----------------------------------------------------------------
def test_hypothetical_leaves_under_4k_host_pages():
    why = {o.label: pkvm.hypothetical_reason(o, "4K")
           for g in ("4K", "16K", "64K") for o in pkvm.stage2_leaf_options(g)}
    built = [k for k, v in why.items() if v is None]
    assert built == ["4K page 4K", "4K block 2M", "4K block 1G"]
    assert "PAGE_SIZE" in why["64K page 64K"] and "PAGE_SIZE" in why["16K block 32M"]
    assert "contiguous" in why["4K cont pages 64K"] and "contiguous" in why["4K cont blocks 32M"]
    # under 64K host pages the 64K pages and blocks are the built ones
    assert pkvm.hypothetical_reason(pkvm.stage2_leaf_options("64K")[0], "64K") is None
    assert pkvm.hypothetical_reason(pkvm.stage2_leaf_options("4K")[0], "64K") is not None


# ---- every CPU's re-walks after a donation ---------------------------------------------------
def test_donation_rewalks_hand_worked():
    # 4 CPUs, each holding 256 translations in use; one re-walk: 23 LLC reads at 30 ns and one
    # memory read at the mean of the latency matrix (100, 200, 200, 100: 150 ns) = 840 ns
    lat = np.array([[100.0, 200.0], [200.0, 100.0]])
    sc = pkvm.SyncCost(cached_ns=30.0, rewalk_working_set=256, rewalk_refs=24,
                       rewalk_memory_refs=1.0)
    rw = pkvm.donation_rewalks(lat, sc, 4)
    assert rw.rewalks == 4 * 256
    assert rw.total_ns == pytest.approx(4 * 256 * 840.0)
    assert rw.initiator_ns == pytest.approx(256 * 840.0)
    # a working set above the TLB's 1280 entries loses only what the TLB holds
    big = pkvm.donation_rewalks(lat, pkvm.SyncCost(cached_ns=30.0, rewalk_working_set=5000), 4)
    assert big.rewalks == 4 * 1280


def test_page_cycle_charges_rewalks_to_the_machine():
    lat = np.asarray(numa.generic(2, 100.0, 2.0).latency_ns)
    g2 = geometry.stage2("4K", 48)
    none = pkvm.SyncCost()  # no working set: the cycle as before
    with_rw = pkvm.SyncCost(rewalk_working_set=256)
    c0 = pkvm.stage2_page_cycle(lat, 2, g2, none, 64)
    c1 = pkvm.stage2_page_cycle(lat, 2, g2, with_rw, 64)
    assert c0["rewalk_ns"] == 0.0 and c0["ns"] == c1["ns"]
    assert c1["rewalk_ns"] == pytest.approx(pkvm.donation_rewalks(lat, with_rw, 64).total_ns)
    f = pkvm.stage2_sync_fraction(lat, 2, 1000.0, g2, with_rw, 64)
    assert f == pytest.approx(1000.0 * (c1["ns"] + c1["rewalk_ns"]) / (64 * 1e9))


# ---- replicates: the published point at other seeds and half the stream ----------------------
def test_replicate_params_draw_disjoint_seeds():
    p = {"seed": 1, "seeds": [1, 2], "accesses_per_cpu": 1000, "other": "x"}
    q = pkvm.replicate_params(p, 2, 1000)
    r = pkvm.replicate_params(p, 3, 1000)
    h = pkvm.replicate_params(p, 1, 500)
    assert q["seeds"] == [3, 4] and r["seeds"] == [5, 6] and h["seeds"] == [1, 2]
    assert h["accesses_per_cpu"] == 500 and q["other"] == "x" and q["seed"] == 2


def test_replicates_cover_every_simulated_claim():
    from pathlib import Path

    from kmm.suite import params as sp
    from kmm.suite import registry
    nb = Path(__file__).resolve().parents[1] / "notebooks" / "pkvm.ipynb"
    p = dict(sp.notebook_parameters(nb))
    p.update(s2_granules=["4K"], accesses_per_cpu=2000, warmup_per_cpu=2000,
             el2_exit_sweep=[0.02], workload_source="synthetic")
    p = pkvm.params_from(p)
    reps = pkvm.replicates(p)
    assert set(reps) == {"S1", "S2", "S3", "S4", "S5"}
    for c, rows in reps.items():
        assert [(r["seed"], r["length"]) for r in rows] == [(2, 2000), (3, 2000), (1, 1000)]
    # a replicate is the same computation at other seeds: S3 keeps the leaves Linux builds
    assert all(r["value"]["leaf_bytes"] == [4096, 2 << 20, 1 << 30] for r in reps["S3"])
    runs = pkvm.simulate_claims(p)
    nums = pkvm.claim_numbers(p, runs, pkvm.comparison_frame(p, runs), pkvm.el2_frame(p, runs))
    rec = {"value": nums["S4"], "scenario": "published", "parameters": p,
           "replicates": reps["S4"]}
    ok, spread = registry.convergence("S4", rec)
    assert ok is not None and len(spread["replicates"]) == 3


def test_tlb_shift_must_be_a_size_the_tlb_holds():
    from kmm import walk
    from kmm.errors import ConfigError
    path = walk.Path(walk.bench_config())
    va = np.arange(4, dtype=np.uint64) << np.uint64(12)
    with pytest.raises(ConfigError, match="tlb_shift"):
        path.run(va, tlb_shift=13)  # 8 KiB: no arm64 4K entry size
    assert path.run(va, tlb_shift=21).walk.walks == 1  # one 2 MiB entry covers all four
