"""The permission vmalloc model: kernels vs twins, hand-worked flush counts, invariants under
random load/free sequences for every policy, costs, iTLB traces and the notebook's values."""
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import naive.permvmalloc as twin
from props import INVARIANT
from kmm.buddy import Buddy, BuddyConfig, MigrateType
from kmm.errors import ConfigError
from kmm.geometry import GiB, MiB
from kmm.mech import permvmalloc as pv
from kmm.mech.permvmalloc import ModuleSpec, Policy, PolicyConfig, PvEvent

FRESH = pv.MachineConfig(ram_bytes=GiB, cpus=64, bg_used_fraction=0.0, bg_ops_per_event=0)
AGED = pv.MachineConfig(ram_bytes=GiB, cpus=4, bg_used_fraction=0.5, bg_ops_per_event=16,
                        seed=3)
LEGACY = PolicyConfig(Policy.LEGACY)
PERM = PolicyConfig(Policy.PERM_ALLOC)
UNMOV = int(MigrateType.UNMOVABLE)


def counts(rec: dict) -> dict:
    """The non-zero global-flush causes of one operation record."""
    return {e.name.lower(): rec[e.name.lower()] for e in pv.GLOBAL_EVENTS
            if rec[e.name.lower()]}


# ---- kernels against their twins ------------------------------------------------------------
def _pool(pages=1 << 12):
    return BuddyConfig(pool_pages=pages)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31), st.integers(1, 400))
def test_bg_churn_matches_twin(seed, n):
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    kind[: n // 3] = 0
    order = rng.integers(0, 4, n)
    mt = rng.integers(0, 3, n)
    pick = rng.integers(0, 1 << 40, n)
    a, b = Buddy(_pool()), Buddy(_pool())
    cap = 300
    lp, lo = np.empty(cap, np.int32), np.empty(cap, np.int8)
    nlive = pv.bg_churn(a.state, lp, lo, np.int64(0), kind, order, mt, pick)
    live: list = []
    twin.bg_churn(b, live, cap, kind, order, mt, pick)
    assert nlive == len(live)
    assert [(int(p), int(o)) for p, o in zip(lp[:nlive], lo[:nlive])] == live
    for x, y in zip(a.state, b.state):
        assert np.array_equal(x, y)


def test_bg_churn_hand_worked():
    """Two order-0 allocations then a free of live block 0: the second takes its slot."""
    b = Buddy(_pool(1 << 9))
    lp, lo = np.empty(4, np.int32), np.empty(4, np.int8)
    n = pv.bg_churn(b.state, lp, lo, np.int64(0), np.array([0, 0, 1]), np.array([0, 0, 0]),
                    np.array([1, 1, 1]), np.array([0, 0, 2]))
    assert n == 1
    first = b.alloc(0)
    b.free(first, 0)
    assert b.state.alloc_order[lp[0]] == 0 and b.counters.frees == 2


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 600), st.integers(0, 2**31))
def test_alloc_free_order0_and_split_match_twins(n, seed):
    a, b = Buddy(_pool(1 << 9)), Buddy(_pool(1 << 9))
    out = np.zeros(max(n, 1), np.int64)
    got = pv.alloc_order0(a.state, np.int64(n), np.int64(UNMOV), out)
    ref = twin.alloc_order0(b, n, UNMOV)
    assert got == len(ref) == min(n, 512)
    assert out[:got].tolist() == ref
    rng = np.random.default_rng(seed)
    sel = rng.permutation(got)[: got // 2]
    assert pv.free_order0(a.state, out[sel]) == twin.free_order0(b, out[sel].tolist()) == sel.size
    for x, y in zip(a.state, b.state):
        assert np.array_equal(x, y)


def test_free_order0_stops_at_a_page_not_allocated_and_split_block():
    a, b = Buddy(_pool(1 << 10)), Buddy(_pool(1 << 10))
    pa, pb = a.alloc(9, UNMOV), b.alloc(9, UNMOV)
    pv.split_block(a.state, np.int64(pa), np.int64(9))
    twin.split_block(b, pb, 9)
    assert np.array_equal(a.state.alloc_order, b.state.alloc_order)
    assert (a.state.alloc_order[pa:pa + 512] == 0).all()
    pages = np.arange(pa, pa + 512, dtype=np.int64)
    assert pv.free_order0(a.state, np.concatenate([pages[:3], pages[:1]])) == 3
    assert twin.free_order0(b, [pb, pb + 1, pb + 2, pb]) == 3


# ---- bookkeeping pieces ------------------------------------------------------------------
def test_va_space_first_fit_alignment_and_merge():
    s = pv._VaSpace(0, 16 << 20)
    a = s.alloc(8192)
    b = s.alloc(4096, align=2 << 20)
    assert (a, b) == (0, 2 << 20)
    assert s.free == [[8192, 2 << 20], [(2 << 20) + 4096, 16 << 20]]
    s.release(b, 4096)
    s.release(a, 8192)
    assert s.free == [[0, 16 << 20]]
    with pytest.raises(ConfigError, match="exhausted"):
        s.alloc(32 << 20)


def test_module_mix_regions_add_up():
    mods = pv.ModuleMix(rai_probability=1.0, init_text_probability=1.0,
                        init_ro_probability=0.0).modules([12288, 65536, 1 << 22], seed=1)
    for m, size in zip(mods, [12288, 65536, 1 << 22]):
        assert m.core_pages == size // 4096 and m.rw >= 1 and m.text >= 1
        assert m.rai == 1 and m.init_text >= 1 and m.init_ro == 0 and m.init_rw >= 1
    assert (mods[1].text, mods[1].ro, mods[1].rai, mods[1].rw) == (9, 3, 1, 3)
    with pytest.raises(ConfigError, match="text_fraction"):
        pv.ModuleMix(text_fraction=2.0)


def test_bpf_sizes_follow_the_calibrated_quantiles():
    s = pv.bpf_sizes(200_000, 500.0, 2000.0, 1 << 20, seed=0)
    assert abs(np.median(s) / 500 - 1) < 0.03
    assert abs(np.quantile(s, 0.75) / 2000 - 1) < 0.03
    assert s.max() <= 1 << 20 and s.min() >= 16


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="ram_bytes"):
        pv.MachineConfig(ram_bytes=GiB + 4096)
    with pytest.raises(ConfigError, match="policy"):
        PolicyConfig("nonsense")
    with pytest.raises(ConfigError, match="perm_alloc options"):
        PolicyConfig(Policy.LEGACY, cache_live=True)
    assert PolicyConfig("perm_alloc", cache_live=True, module_2m=True).label == "perm_alloc+3+4"
    assert pv.MachineConfig(cpus=64).lazy_max_pages == 7 * 8192


def test_decided_by_reads_values_only():
    sw = [{"params": {"a": 1, "b": 1}, "value": 0.0}, {"params": {"a": 1, "b": 2}, "value": 0.0},
          {"params": {"a": 2, "b": 1}, "value": 1.0}, {"params": {"a": 2, "b": 2}, "value": 1.0}]
    assert pv.decided_by(sw) == "a"
    sw[3]["value"] = 2.0
    assert pv.decided_by(sw) is None
    assert pv.decided_by([{"params": {"a": 1}, "value": 3}]) is None


# ---- hand-worked flush counts on a fresh 1 GiB machine (one 1G direct-map leaf) ---------
def test_legacy_bpf_load_hand_worked():
    """set_memory_ro: vm_unmap_aliases purges the verifier's freed copy (1), the direct-map
    alias splits 1G -> 2M -> 4K (2 flush_tlb_all), cpa_flush (1); set_memory_x (1)."""
    sim = pv.PermVmalloc(FRESH, LEGACY, check=True)
    st = sim.load_bpf(300, "p0")
    r = sim.ops[-1]
    assert counts(r) == {"g_cpa": 2, "g_split": 2, "g_purge": 1} and r["global_flushes"] == 5
    assert sim.directmap_bytes() == {"4k": 2 * MiB, "2m": 1022 * MiB, "1g": 0}
    sim.load_bpf(300, "p1")                       # same 2M region: no split any more
    assert counts(sim.ops[-1]) == {"g_cpa": 2, "g_purge": 1}
    sim.free_bpf(st)                              # VM_FLUSH_RESET_PERMS: one flush
    assert counts(sim.ops[-1]) == {"g_vfree_reset": 1}
    assert sim.counts.wx_violations == sim.counts.free_violations == 0


def test_perm_alloc_bpf_load_hand_worked():
    """First load refills the cache: 512 pages leave the direct map page by page (splits
    1G and 2M), one flush, vm_unmap_aliases purges the freed copy; later loads: none."""
    sim = pv.PermVmalloc(FRESH, PERM, check=True)
    st = sim.load_bpf(300, "p0")
    r = sim.ops[-1]
    assert counts(r) == {"g_split": 2, "g_cache_fill": 1, "g_purge": 1}
    assert r["local"] == 1 and r["cache_fills"] == 1
    sim.load_bpf(300, "p1")
    assert sim.ops[-1]["global_flushes"] == 0 and sim.ops[-1]["local"] == 1
    assert sim.directmap_bytes()["4k"] == 2 * MiB
    assert sim.cache_bytes()["unmapped_cache"] == 510 * 4096
    sim.free_bpf(st)                              # perm_free of an executable mapping
    assert counts(sim.ops[-1]) == {"g_perm_free": 1}
    ev = pv.load_step_evidence(pv.RunResult(PERM, pl.DataFrame(sim.ops), None, [], [],
                                            sim.counts, [], {}))
    assert ev["global_flushes_per_load"] == 0 and ev["local_flushes_per_load"] == 1.0


SPEC = ModuleSpec("m", text=2, ro=1, rai=1, rw=1, init_text=1, init_ro=0, init_rw=1, elf_pages=3)


def test_legacy_module_load_hand_worked():
    """4 set_memory_ro (one empty), 5 NX no-ops, 2 set_memory_x, free_copy, then
    module_enable_ro(true): its first vm_unmap_aliases purges the ELF copy, ro_after_init."""
    sim = pv.PermVmalloc(FRESH, LEGACY, check=True)
    st = sim.load_module(SPEC)
    assert counts(sim.ops[-1]) == {"g_cpa": 6, "g_split": 2, "g_purge": 1}
    rec = sim.free_module_init(SPEC, st)
    assert counts(rec) == {"g_vfree_reset": 1}
    sim.unload_module(SPEC, st)
    assert counts(sim.ops[-1]) == {"g_vfree_reset": 1}
    assert sim.counts.wx_violations == sim.counts.free_violations == 0


def test_perm_alloc_module_load_hand_worked():
    sim = pv.PermVmalloc(FRESH, PERM, check=True)
    st = sim.load_module(SPEC)
    assert counts(sim.ops[-1]) == {"g_split": 2, "g_cache_fill": 1, "g_perm_change": 1}
    assert sim.ops[-1]["local"] == 4              # text 2 + ro 1 + init text 1 pages
    assert counts(sim.free_module_init(SPEC, st)) == {"g_perm_free": 1}
    st2 = sim.load_module(SPEC)                   # warm cache: only ro_after_init
    assert counts(sim.ops[-1]) == {"g_perm_change": 1}
    no_rai = ModuleSpec("n", 2, 1, 0, 1, 1, 0, 1, 3)
    sim.load_module(no_rai)
    assert sim.ops[-1]["global_flushes"] == 0
    sim.unload_module(SPEC, st2)
    assert counts(sim.ops[-2]) == {"g_perm_free": 1}   # init text
    assert counts(sim.ops[-1]) == {"g_perm_free": 1}   # core text; ro/rai/rw: lazy only


def test_idea3_keeps_freed_executable_mappings_live():
    sim = pv.PermVmalloc(FRESH, PolicyConfig(Policy.PERM_ALLOC, cache_live=True), check=True)
    st = sim.load_bpf(300, "p0")
    sim.free_bpf(st)
    assert sim.ops[-1]["global_flushes"] == 0 and sim.ops[-1]["local"] == 1
    assert sim.cache_bytes()["live_cache"] == 4096
    sim.load_bpf(200, "p1")                       # reuses the live mapping
    assert sim.ops[-1]["global_flushes"] == 0 and sim.cache_bytes()["live_cache"] == 0


def test_idea4_and_a_huge_pack_keep_the_2m_direct_map_leaf():
    """A 2 MiB block unmapped (idea 4) or made read-only (a huge-mapped bpf_prog_pack, the
    counterfactual) in one call keeps its direct-map 2M leaf; only the 1G leaf above it
    splits."""
    for pol in (PolicyConfig(Policy.PERM_ALLOC, cache_live=True, module_2m=True),
                PolicyConfig(Policy.UPSTREAM, pack_huge=True)):
        sim = pv.PermVmalloc(FRESH, pol, check=True)
        sim.load_bpf(300, "p0")
        assert sim.directmap_bytes() == {"4k": 0, "2m": 1024 * MiB, "1g": 0}, pol.label
        assert sim.ops[-1]["g_split"] == 1
        sim.load_bpf(300, "p1")
        assert sim.ops[-1]["global_flushes"] == 0


def test_lazy_threshold_and_flush_ceiling():
    m = pv.MachineConfig(ram_bytes=GiB, cpus=1, bg_used_fraction=0.0, bg_ops_per_event=0)
    sim = pv.PermVmalloc(m, LEGACY)
    assert m.lazy_max_pages == 8192
    a = sim.vmalloc("vmalloc", 8192)
    sim.vfree(a)
    assert sim.counts.g_lazy_threshold == 0 and sim.lazy_pages == 8192
    sim.vfree(sim.vmalloc("vmalloc", 1))
    assert sim.counts.g_lazy_threshold == 1 and sim.lazy == []
    # a ranged flush of <= 33 pages clears only the lazy areas it covers
    x, y = sim.vmalloc("modules", 2), sim.vmalloc("modules", 2)
    sim._unmap_lazy(x)
    sim._unmap_lazy(y)
    sim._flush_range(x.va, x.end, PvEvent.G_PERM_FREE)
    assert [lz.dirty for lz in sim.lazy] == [False, True]
    sim._flush_range(x.va, x.va + (34 << 12), PvEvent.G_PERM_FREE)   # past the ceiling
    assert [lz.dirty for lz in sim.lazy] == [False, False]
    assert [k for _, k, _, _ in sim.flush_log[-2:]] == [1, 1]


# ---- the checker catches what it must --------------------------------------------------------
def test_checker_flags_stale_writable_alias_and_executable_free():
    sim = pv.PermVmalloc(FRESH, LEGACY, check=True)
    a = sim.vmalloc("vmalloc", 2)
    pfns = a.pfns.copy()
    sim._unmap_lazy(a)                 # lazily unmapped: a CPU may still cache it writable
    sim._map("modules", pfns, pv.RX, kind="reuse")
    assert sim.counts.wx_violations == 2
    b = sim.vmalloc("modules", 1)
    sim.set_memory_rox(b, 0, 1)
    sim._unmap_lazy(b)                 # freed while executable translations may be cached
    sim._free_blocks(b, "test")
    assert sim.counts.free_violations == 1
    assert any("W^X" in v for v in sim.violations)


def test_posted_rfc_reuses_freed_writable_pages_as_text():
    """perm_alloc as posted returns writable pages to the shared cache with no flush; the
    next text allocation maps them executable while a stale writable translation lives."""
    sim = pv.PermVmalloc(FRESH, PolicyConfig(Policy.PERM_ALLOC, rw_from_cache=True), check=True)
    st = sim.load_module(SPEC)
    sim.free_module_init(SPEC, st)     # init rw pages back to the cache, lazily unmapped
    sim.load_module(SPEC)
    assert sim.counts.wx_violations > 0


@pytest.mark.parametrize("pol", [*pv.STANDARD_POLICIES, PolicyConfig(Policy.UPSTREAM, pack_huge=True),
                                 PolicyConfig(Policy.PERM_ALLOC, module_2m=True)],
                         ids=lambda p: p.label)
def test_invariants_hold_over_random_loads_and_frees(pol):
    sim = pv.PermVmalloc(AGED, pol, check=True, snapshot_every=100)
    pv.random_ops(sim, 2000, seed=11)
    assert len(sim.ops) > 2000
    assert sim.violations == []
    assert sim.counts.wx_violations == sim.counts.free_violations == 0


# ---- costs through kmm.invalidate -------------------------------------------------------------
def test_costs_grow_with_cpus_for_ipis_and_sum_per_operation():
    u8 = pv.flush_unit_costs(8, "x86", shapes=[(0, 0), (1, 4), (2, 1)])
    u64 = pv.flush_unit_costs(64, "x86", shapes=[(0, 0), (1, 4), (2, 1)])
    assert u64[(0, 0)][0] > u8[(0, 0)][0] and u64[(0, 0)][1] > u8[(0, 0)][1]
    assert u8[(2, 1)][1] == 0                       # a local flush interrupts nobody
    a8 = pv.flush_unit_costs(8, "arm64", shapes=[(0, 0)])
    assert a8[(0, 0)][1] == 0                       # broadcast TLBI: no IPI handlers
    sim = pv.PermVmalloc(FRESH, LEGACY)
    sim.load_bpf(300, "p0")
    res = pv.RunResult(LEGACY, pl.DataFrame(sim.ops), None, sim.flush_log, [], sim.counts, [], {})
    c = pv.op_costs(res, 8, "x86")
    shapes = pv._flush_shapes(res)
    unit = pv.flush_unit_costs(8, "x86", shapes=[tuple(int(v) for v in r[1:]) for r in shapes])
    assert int(c["initiator_ns"][0]) == sum(unit[(int(k), int(p))][0] for _, k, p in shapes)


# ---- iTLB ------------------------------------------------------------------------------------
def test_fetch_trace_stays_inside_objects_and_ranks_by_name():
    text = [("a", 0xFFFFFFFF00000000, 3 * 4096, 12), ("bpf0", 0xFFFFFFFF00200000, 200, 12)]
    cfg = pv.ItlbConfig(fetches=4000, run_lines=4, bpf_share=0.5, seed=2)
    va, sh = pv.fetch_trace(text, cfg)
    assert va.shape[0] == 4000 and (sh == 12).all()
    inside = ((va >= text[0][1]) & (va < text[0][1] + text[0][2])) | \
        ((va >= text[1][1]) & (va < text[1][1] + 200))
    assert inside.all()
    moved = [(n, v + (1 << 30), s, 21) for n, v, s, _ in text]
    va2, sh2 = pv.fetch_trace(moved, cfg)
    assert np.array_equal(va2 - va, np.full_like(va, 1 << 30)) and (sh2 == 21).all()


def test_2m_text_mappings_need_fewer_walks():
    text = [(f"m{i}", 0xFFFFFFFFC0000000 + i * (64 << 12), 64 << 12, 12) for i in range(64)]
    big = [(n, v, s, 21) for n, v, s, _ in text]
    cfg = pv.ItlbConfig(stlb_entries=256, stlb_ways=4, fetches=40_000, bpf_share=0.0)
    assert pv.itlb_misses(big, cfg)["misses"] < pv.itlb_misses(text, cfg)["misses"]


# ---- the notebook's model functions on small inputs --------------------------------------------
SMALL = dict(
    scenario="small", ram_gib=1, cpus=64, bg_used_fraction=0.5, bg_unmovable_share=0.25,
    bg_ops_per_event=16, pcp=True, nofragment=True, module_count=20, bpf_programs=120, bpf_live=30, bpf_median_bytes=500.0,
    bpf_p75_bytes=2000.0, bpf_cap_bytes=1 << 20, bpf_realloc_probability=1.0, shrink_every=0,
    cost_cpus=[2, 64], invlpg_ns=100.0, ipi_base_ns=3000.0, ipi_per_extra_target_ns=1500.0,
    ipi_handler_ns=1000.0, global_flush_ns=500.0, invlpgb_ns=100.0, tlbsync_ns=500.0,
    tlbi_ns=10.0, dsb_ish_ns=200.0, dsb_ish_per_cpu_ns=5.0,
    rewalk_working_set=256, rewalk_memory_refs=1.0, mem_idle_ns=81.96, background=0.3,
    jump_patched_share=0.1, jump_entries_per_key=2.0, static_call_changed_share=1.0,
    itlb_workload="trace", itlb_module_trace="module",
    itlb_fetches=20000, itlb_zipf=1.0, itlb_run_lines=2, itlb_bpf_share=0.3,
    itlb_l1_entries=128, itlb_l1_ways=8, stlb_entries=1536, stlb_ways=12,
    bg_sweep=[[0.5, 0.25, 16.0]], itlb_sweep_zipf=[1.0], itlb_sweep_run_lines=[2],
    itlb_sweep_bpf_share=[0.3], itlb_sweep_module_trace=["module"], invariant_ops=50, seed=0)


@pytest.fixture(scope="module")
def small_scenario():
    return pv.run_scenario(SMALL)


def test_scenario_values_have_the_directions_the_explanations_state(small_scenario):
    sr = small_scenario
    assert sr.p1() > sr.p2()                      # legacy module loads cost more shootdowns
    assert sr.p3() == 0                           # perm_alloc BPF loads: none in the median
    p4 = sr.p4()
    assert p4["directmap4k_grouped"] < p4["directmap4k_legacy"]
    p5 = sr.p5()
    assert p5["global_flushes_per_load"] == 0 and p5["local_flushes_per_load"] > 0
    p6 = sr.p6()
    assert p6["itlb_misses_2m"] < p6["itlb_misses_4k"]
    synth = sr.p6(itlb_workload="synthetic")
    assert synth["itlb_misses_2m"] < synth["itlb_misses_4k"]
    assert p6["fetches"] == synth["fetches"] == SMALL["itlb_fetches"]
    assert set(sr.sweeps) == {"P1", "P2", "P3", "P4", "P5", "P6", "P6-synthetic"}
    assert sr.sweeps["P2"][0]["value"] == sr.p2()


def test_scenario_frames(small_scenario):
    sr = small_scenario
    h = sr.histogram()
    assert set(h["policy"]) == {p.label for p in pv.STANDARD_POLICIES}
    assert (h.group_by("policy", "op").agg(pl.col("share").sum())["share"] - 1).abs().max() < 1e-9
    c = sr.costs()
    x86 = c.filter((pl.col("policy") == "legacy") & (pl.col("op") == "module_load")
                   & (pl.col("method") == "x86")).sort("cpus")
    assert x86["cpu_ns"][1] > x86["cpu_ns"][0]
    df = sr.tidy("small")
    assert {"scenario", "metric", "value", "policy", "op"} <= set(df.columns)
    assert df.filter(pl.col("metric") == "wx_violations")["value"].sum() == 0
    snaps = sr.snapshots
    assert (snaps["directmap_4k"] + snaps["directmap_2m"] + snaps["directmap_1g"] == GiB).all()


# ---- invariant: never writable and executable through any alias (README "What kmm guarantees")
INVARIANT_POLICIES = [*pv.STANDARD_POLICIES, PolicyConfig(Policy.UPSTREAM, pack_huge=True),
                      PolicyConfig(Policy.PERM_ALLOC, module_2m=True)]


# four machines (an aged pool takes ~0.1 s to build and is cached, four at a time)
INVARIANT_MACHINES = [FRESH, AGED,
                      pv.MachineConfig(ram_bytes=GiB, cpus=2, bg_used_fraction=0.3,
                                       bg_ops_per_event=4, seed=7),
                      pv.MachineConfig(ram_bytes=GiB, cpus=16, bg_used_fraction=0.8,
                                       bg_ops_per_event=1, seed=11)]


@INVARIANT
@given(pol=st.sampled_from(INVARIANT_POLICIES), m=st.sampled_from(INVARIANT_MACHINES),
       n=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_invariant_no_page_writable_and_executable_through_any_alias(pol, m, n, seed):
    """Random module loads, init frees, unloads, BPF loads and frees (and perm_alloc shrinker
    runs) on fresh and aged machines, for every policy: after every step no page is writable
    through one mapping (the direct map, a live vmalloc alias, a stale TLB entry of a lazily
    unmapped alias, or a direct-map change not yet flushed) while executable through another,
    and no freed page keeps an executable alias."""
    sim = pv.PermVmalloc(m, pol, check=True, snapshot_every=1000)
    pv.random_ops(sim, n, seed)
    assert sim.violations == []
    assert sim.counts.wx_violations == sim.counts.free_violations == 0


# ---- convergence: the published point at other seeds and at half its stream ------------------
def test_replicates_at_two_more_seeds_and_half_of_each_stream(small_scenario):
    """Every claim is replicated at seeds 1 and 2 over its whole stream and at seed 0 over
    half of it. SMALL boots 20 modules and loads 120 BPF programs, so the streams are 20
    module loads (P1, P2), 120 BPF loads (P3), 140 loads (P4, P5) and 20000 fetches (P6),
    and their halves 10, 60, 70 and 10000. No claim is deterministic, and the seed does
    move the values: seed 1 draws other BPF image sizes and module layouts, so perm_alloc's
    copies through text_poke make another number of local flushes per load (P5)."""
    from kmm.mech.permvmalloc import study
    sr = small_scenario
    reps = study.replicates(sr)
    full = {"P1": 20, "P2": 20, "P3": 120, "P4": 140, "P5": 140, "P6": 20000}
    assert study.stream_lengths(SMALL) == full
    for c, rs in reps.items():
        assert [(r["seed"], r["length"]) for r in rs] == [(1, full[c]), (2, full[c]),
                                                          (0, full[c] // 2)]
    assert (reps["P5"][0]["value"]["local_flushes_per_load"]
            != sr.p5()["local_flushes_per_load"])
    assert set(reps["P6"][0]["value"]) == set(sr.p6()) and reps["P5"][2]["value"]["loads"] == 70
    ev = study.evidence(SMALL)
    assert not any(e.deterministic for e in ev.values())
    assert all(list(e.replicates) == reps[c] for c, e in ev.items())


def test_midpoint_snapshots_read_the_published_runs(small_scenario):
    """The snapshots over a whole stream are the published values (same runs, same rule):
    the median over all 20 module loads is P1/P2, over all 120 BPF loads P3, the load
    step's flushes over every operation up to the last load P5's counters. P6's midpoint
    stops at the reference that brings module and BPF fetches to 10000, so it counts at
    least 10000 fetches and at most one reference's weight more, and no more walks than the
    whole stream."""
    from kmm.mech.permvmalloc import study
    sr = small_scenario
    legacy, perm = sr.result("legacy"), sr.result("perm_alloc")
    assert study._median_to(legacy, pv.OpKind.MODULE_LOAD, 20) == sr.p1()
    assert study._median_to(perm, pv.OpKind.MODULE_LOAD, 20) == sr.p2()
    assert study._median_to(perm, pv.OpKind.BPF_LOAD, 120) == sr.p3()
    step = study._ops_to(perm, ("module_load", "bpf_load"), 140)
    assert step["load_step_local"].sum() == perm.counts.load_step_local
    assert step["load_step_global"].sum() == perm.counts.load_step_global
    half = sr.fetch_misses("perm_alloc")["half"]
    assert 10000 <= half["fetches"] < 10000 + 64 * 1000
    assert half["misses"] <= sr.p6()["itlb_misses_4k"]
    # the synthetic fetch workload keeps no per-fetch outcome: a run of its own, 10000 fetches
    synth = pv.ScenarioResult({**SMALL, "itlb_workload": "synthetic"}, sr.results, {})
    assert study.half_point(synth)["P6"][0] == 10000
    assert study.half_point(synth)["P6"][1]["fetches"] == 10000


# ---- decided by: the one-at-a-time swings of both sweeps -------------------------------------
def test_swings_move_one_parameter_and_give_every_claim_a_decided_by(small_scenario):
    """Neither sweep (the background's fractional factorial, the fetch workload's grid) has a
    point that differs from the published one in one parameter alone, so the study adds the
    swings: each end of every assumed range, the rest at the published values. With them
    the registry computes "decided by" for every claim (a list, not None)."""
    from kmm.mech.permvmalloc import study
    from kmm.suite import registry
    sr = small_scenario
    bg = sr.swings["P1"]
    assert [pt["params"] for pt in bg] == [
        {"bg_used_fraction": 0.5, "bg_unmovable_share": 0.25, "bg_ops_per_event": 0},
        {"bg_used_fraction": 0.5, "bg_unmovable_share": 0.25, "bg_ops_per_event": 512},
        {"bg_used_fraction": 0.5, "bg_unmovable_share": 0.1, "bg_ops_per_event": 16},
        {"bg_used_fraction": 0.5, "bg_unmovable_share": 0.5, "bg_ops_per_event": 16},
        {"bg_used_fraction": 0.3, "bg_unmovable_share": 0.25, "bg_ops_per_event": 16},
        {"bg_used_fraction": 0.85, "bg_unmovable_share": 0.25, "bg_ops_per_event": 16}]
    assert all(len(sr.swings[c]) == 6 for c in ("P2", "P3", "P4", "P5"))
    assert [pt["params"] for pt in sr.swings["P6"]] == [
        {"itlb_zipf": 1.0, "itlb_bpf_share": 0.0, "itlb_module_trace": "module"},
        {"itlb_zipf": 1.0, "itlb_bpf_share": 0.9, "itlb_module_trace": "module"},
        {"itlb_zipf": 0.6, "itlb_bpf_share": 0.3, "itlb_module_trace": "module"},
        {"itlb_zipf": 1.4, "itlb_bpf_share": 0.3, "itlb_module_trace": "module"}]
    values = study.claim_values(sr)
    for c, v in values.items():
        rec = {"value": v["value"], "scenario": "published", "parameters": SMALL,
               "sweep": v["sweep"], "swings": v["swings"]}
        assert registry.decided_by(c, rec) is not None, c
    # a swing that lands outside the band where the published value is inside decides it
    moved = [{**pt, "value": 0.0 if i == 1 else 1.0} for i, pt in enumerate(values["P2"]["swings"])]
    rec = {"value": 1.0, "scenario": "published", "parameters": SMALL,
           "sweep": [{**pt, "value": 1.0} for pt in values["P2"]["sweep"]], "swings": moved}
    assert registry.decided_by("P2", rec) == ["bg_ops_per_event"]


def test_a_sweep_point_reads_the_boot_from_the_whole_workload():
    """P1 and P2 of a sweep point come from the whole workload's runs: the boot is their
    first operations, run exactly as a boot alone (same machine, same streams)."""
    from kmm.mech.permvmalloc import study
    m = study.machine_config(SMALL)
    for pol in (PolicyConfig(Policy.LEGACY), PolicyConfig(Policy.PERM_ALLOC)):
        boot = pv.run(m, pol, study.workload(SMALL, bpf=False), snapshots=1)
        whole = pv.run(m, pol, study.workload(SMALL), snapshots=1)
        loads = [r.ops.filter(pl.col("op") == "module_load")["global_flushes"].to_list()
                 for r in (boot, whole)]
        assert loads[0] == loads[1] and len(loads[0]) == SMALL["module_count"]
