"""kmm.tlb against hand-worked cases, pycachesim and the plain-Python twin (tests/naive/tlb.py)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kmm import geometry, tlb
from kmm.errors import ConfigError
from kmm.tlb import Kind, Outcome, Replacement, Structure, TLBConfig, TLBLevelConfig
from naive.tlb import NaiveTLB
from props import INVARIANT

M, H = Outcome.WALK, Outcome.L2  # single-level TLB: the L2 slot is the only level

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def pages(*vpns, shift=12):
    return np.array(vpns, dtype=np.uint64) << np.uint64(shift)


# ---- hand-worked ------------------------------------------------------------------------
def test_two_sets_two_ways_lru_six_accesses():
    # vpn 0, 2, 4 map to set 0; vpn 1 to set 1. LRU order of set 0 after access 4 is (2, 0),
    # so vpn 4 evicts 2, and vpn 1 is still resident in set 1.
    cfg = TLBConfig.single(entries=4, ways=2)
    out = tlb.trace_outcomes(pages(0, 1, 2, 0, 4, 1), cfg)
    assert out.tolist() == [M, M, M, H, M, H]
    c = tlb.simulate_trace(pages(0, 1, 2, 0, 4, 1), cfg)
    assert (c.accesses, c.misses, c.l2_hits, c.evictions) == (6, 4, 2, 1)


def test_lru_and_fifo_differ_where_expected():
    # set 0 only: 0 M, 2 M, 0 H, 4 M (LRU evicts 2, FIFO evicts 0), 0, 2
    trace = pages(0, 2, 0, 4, 0, 2)
    lru = tlb.trace_outcomes(trace, TLBConfig.single(4, 2, "lru"))
    fifo = tlb.trace_outcomes(trace, TLBConfig.single(4, 2, "fifo"))
    assert lru.tolist() == [M, M, H, M, H, M]
    assert fifo.tolist() == [M, M, H, M, M, M]


def test_random_policy_is_seeded_and_deterministic():
    rng = np.random.default_rng(1)
    trace = pages(*rng.integers(0, 64, 2000))
    a = tlb.simulate_trace(trace, TLBConfig(l2=TLBLevelConfig(16, 4, "random"), seed=3))
    b = tlb.simulate_trace(trace, TLBConfig(l2=TLBLevelConfig(16, 4, "random"), seed=3))
    c = tlb.simulate_trace(trace, TLBConfig(l2=TLBLevelConfig(16, 4, "random"), seed=4))
    assert a == b
    assert a.misses != c.misses  # a different stream evicts differently on this trace


def test_l1_l2_hierarchy_hand_worked():
    # L1 D 2-entry fully associative, L2 4-entry 2-way; loads only.
    cfg = TLBConfig(l1i=TLBLevelConfig(2, 2), l1d=TLBLevelConfig(2, 2), l2=TLBLevelConfig(4, 2))
    out = tlb.trace_outcomes(pages(0, 1, 2, 0, 1, 0), cfg)
    # 0,1,2 walk; L1 D holds (1, 2) after vpn 2, so 0 hits L2; L1 D then (2, 0): 1 hits L2
    # (L2 set 1 holds 1), and 0 hits L1.
    assert out.tolist() == [Outcome.WALK, Outcome.WALK, Outcome.WALK, Outcome.L2, Outcome.L2,
                            Outcome.L1]
    c = tlb.simulate_trace(pages(0, 1, 2, 0, 1, 0), cfg)
    assert (c.l1d_hits, c.l1d_misses, c.l2_hits, c.l2_misses, c.misses) == (1, 5, 2, 3, 3)


def test_ifetch_uses_l1i_and_loads_use_l1d():
    cfg = TLBConfig(l1i=TLBLevelConfig(2, 2), l1d=TLBLevelConfig(2, 2), l2=TLBLevelConfig(8, 2))
    kind = np.array([Kind.IFETCH, Kind.LOAD, Kind.IFETCH, Kind.LOAD], np.uint8)
    c = tlb.simulate_trace(pages(0, 0, 0, 0), cfg, kind=kind)
    # first ifetch walks, the load misses L1 D but hits L2, then both hit their L1
    assert (c.l1i_hits, c.l1i_misses, c.l1d_hits, c.l1d_misses, c.l2_hits, c.misses) == \
        (1, 1, 1, 1, 1, 1)


def test_asid_tags_and_global_entries():
    cfg = TLBConfig.single(entries=8, ways=2)
    va = pages(5, 5, 5, 5)
    asid = np.array([1, 2, 1, 2], np.int32)
    assert tlb.trace_outcomes(va, cfg, asid=asid).tolist() == [M, M, H, H]
    # a global (kernel) translation filled under ASID 1 hits under ASID 2
    assert tlb.trace_outcomes(va, cfg, asid=asid, global_=True).tolist() == [M, H, H, H]
    # never across VMIDs
    vmid = np.array([0, 1, 0, 1], np.int32)
    assert tlb.trace_outcomes(va, cfg, asid=1, vmid=vmid, global_=True).tolist() == \
        [M, M, H, H]


def test_contiguous_range_is_one_entry_when_honoured():
    g = geometry.arm64("4K", 48)
    trace = pages(*range(16))  # one 64K CONT_PTE range
    for honour, misses in ((True, 1), (False, 16)):
        cfg = TLBConfig.single(entries=64, ways=4).with_geometry(g)
        cfg = TLBConfig(l2=cfg.l2, page_shifts=cfg.page_shifts, honour_cont=honour)
        c = tlb.simulate_trace(trace, cfg, page_shift=12, cont_shift=16)
        assert c.misses == misses


def test_combined_entry_no_larger_than_smaller_leaf():
    assert tlb.entry_shift(21, s2_page_shift=12).tolist() == 12
    assert tlb.entry_shift(12, s2_page_shift=30).tolist() == 12
    assert tlb.entry_shift(12, 16, s2_page_shift=21).tolist() == 16
    assert tlb.entry_shift(np.array([21, 30]), s2_page_shift=np.array([30, 21])).tolist() == \
        [21, 21]
    # stage-1 2M block over stage-2 4K pages: 512 entries for one 2M stage-1 block
    cfg = TLBConfig.single(entries=1024, ways=4).with_geometry(geometry.arm64("4K", 48))
    trace = pages(*range(512))
    assert tlb.simulate_trace(trace, cfg, page_shift=21, s2_page_shift=12).misses == 512
    assert tlb.simulate_trace(trace, cfg, page_shift=21, s2_page_shift=21).misses == 1


def test_every_size_is_probed_and_conflicts_are_counted():
    g = geometry.arm64("4K", 48)
    base = TLBConfig.single(entries=64, ways=4).with_geometry(g)
    va = pages(0, 1, 1)
    shift = np.array([21, 12, 12], np.uint8)  # a 2M block split into pages, no TLBI between
    # the stale 2M entry still translates the page: a hit at a size the access did not ask for
    assert tlb.trace_outcomes(va, base, page_shift=shift).tolist() == [M, H, H]
    det = TLBConfig(l2=base.l2, page_shifts=base.page_shifts, detect_conflicts=True)
    t = tlb.TLB(det)
    t.run(pages(0), page_shift=21)
    tlb.invalidate_va(t.state, 0, 0, 0, 0)  # break...
    t.run(pages(1), page_shift=12)           # ...make: the 4K entry of page 1
    t.run(pages(0), page_shift=21)           # and the 2M entry again (a BBM violation)
    c = t.run(pages(1), page_shift=12)
    assert c.conflicts == 1


def test_splintering_to_max_page_shift():
    cfg = TLBConfig(l1i=TLBLevelConfig(4, 4, max_page_shift=12),
                    l1d=TLBLevelConfig(4, 4, max_page_shift=12),
                    l2=TLBLevelConfig(16, 4), page_shifts=(12, 21))
    c = tlb.simulate_trace(pages(0, 1, 2, 0, 1, 2), cfg, page_shift=21)
    # L2 holds one 2M entry; the L1 D holds 4K pieces of it
    assert (c.misses, c.l2_hits, c.l1d_hits) == (1, 2, 3)


# ---- invalidation, hand-worked -----------------------------------------------------------
def test_invalidations_hand_worked():
    cfg = TLBConfig.single(entries=16, ways=4).with_geometry(geometry.arm64("4K", 48))
    t = tlb.TLB(TLBConfig(l2=cfg.l2, page_shifts=cfg.page_shifts, cpus=2))
    t.run(pages(1, 2, 3), asid=7, cpu=0)
    t.run(pages(1), asid=8, cpu=0)
    t.run(pages(9), asid=7, cpu=0, global_=True)
    t.run(pages(0, shift=21) + np.uint64(1 << 30), asid=7, cpu=1, page_shift=21)
    st = t.state
    assert tlb.invalidate_va(st, 0, 1 << 12, 7, 0) == 1            # ASID 8's copy stays
    assert tlb.invalidate_asid(st, 0, 7, 0) == 2                   # pages 2, 3; global 9 stays
    assert tlb.occupancy(st, 0, Structure.L2) == 2
    # a 2M entry overlapping the range on CPU 1; cpu=-1 reaches every CPU
    assert tlb.invalidate_range(st, -1, (1 << 30) + 4096, (1 << 30) + 8192, 7, 0) == 1
    assert tlb.invalidate_vmid(st, -1, 1) == 0
    assert tlb.invalidate_all(st, -1) == 2
    assert tlb.invalidate_all(st, -1) == 0


def test_invalidated_entries_are_refilled_first():
    t = tlb.TLB(TLBConfig.single(entries=2, ways=2))
    t.run(pages(0, 1, 0))               # LRU order (1, 0)
    tlb.invalidate_va(t.state, 0, 0, 0, 0)
    t.run(pages(2))                     # fills the invalidated way, 1 survives
    assert t.run(pages(1)).misses == 3


# ---- pycachesim agreement ------------------------------------------------------------------
@pytest.mark.parametrize("entries,ways", [(4, 2), (64, 4), (1024, 4), (48, 48), (256, 1)])
def test_miss_count_equals_pycachesim(entries, ways):
    cachesim = pytest.importorskip("cachesim")
    rng = np.random.default_rng(entries * 31 + ways)
    hot = rng.integers(0, entries * 2, 6000)
    cold = rng.integers(0, entries * 16, 2000)
    vpn = np.concatenate([hot, cold, hot[:2000]])
    va = vpn.astype(np.uint64) << np.uint64(12)
    va += rng.integers(0, 4096, va.shape[0]).astype(np.uint64)   # any offset in the page
    mem = cachesim.MainMemory()
    l1 = cachesim.Cache("TLB", entries // ways, ways, 4096, "LRU")
    mem.load_to(l1)
    mem.store_from(l1)
    sim = cachesim.CacheSimulator(l1, mem)
    for a in va.tolist():
        sim.load(a, length=1)
    ours = tlb.simulate_trace(va, TLBConfig.single(entries=entries, ways=ways))
    assert ours.misses == l1.backend.MISS_count
    assert ours.l2_hits == l1.backend.HIT_count


def test_fast_path_equals_general_kernel():
    rng = np.random.default_rng(5)
    va = rng.integers(0, 1 << 20, 20000).astype(np.uint64) << np.uint64(12)
    cfg = TLBConfig.single(entries=256, ways=4)
    fast = tlb.simulate_trace(va, cfg)
    general = tlb.simulate_trace(va, cfg, asid=np.zeros(va.shape[0], np.int32))
    assert fast == general
    t = tlb.TLB(cfg)
    t.run(va)
    assert np.array_equal(t.state.filt, tlb.filter_counts(t.state))
    # entries filled by the fast path belong to ASID 0 only
    before = t.counts.snapshot()
    again = t.run(va[-100:], asid=np.ones(100, np.int32)) - before
    assert again.misses == np.unique(va[-100:]).size
    # a warm state continues the same way on either path
    t1, t2 = tlb.TLB(cfg), tlb.TLB(cfg)
    t1.run(va[:10000])
    t2.run(va[:10000], asid=np.zeros(10000, np.int32))
    assert t1.run(va[10000:]) == t2.run(va[10000:], asid=np.zeros(10000, np.int32))


# ---- kernel vs twin on random inputs ----------------------------------------------------
POLICIES = st.sampled_from(["lru", "fifo", "random", "tree_plru"])


@st.composite
def hierarchies(draw):
    def level(max_sets, max_ways):
        policy = draw(POLICIES)
        ways = draw(st.integers(1, max_ways))
        if policy == "tree_plru":  # a power of two
            ways = 1 << (ways.bit_length() - 1)
        sets = 1 << draw(st.integers(0, max_sets))
        return TLBLevelConfig(sets * ways, ways, policy, draw(st.sampled_from([None, 12, 16])))
    with_l1 = draw(st.booleans())
    l1i = level(1, 4) if with_l1 else None
    l1d = level(1, 4) if with_l1 else None
    l2 = level(3, 4) if (not with_l1 or draw(st.booleans())) else None
    return TLBConfig(l1i=l1i, l1d=l1d, l2=l2, page_shifts=(12, 16, 21),
                     detect_conflicts=draw(st.booleans()), cpus=draw(st.integers(1, 2)),
                     seed=draw(st.integers(0, 5)))


@st.composite
def traces(draw, cpus):
    n = draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vpn = rng.integers(0, 96, n)
    kernel = rng.random(n) < 0.3
    va = vpn.astype(np.uint64) << np.uint64(12)
    va[kernel] |= np.uint64(0xFFFF800000000000)  # kernel half: global, negative as int64
    # the leaf size is a function of the address, as a page table makes it
    shift = np.where(vpn % 7 == 0, 21, np.where(vpn % 5 == 0, 16, 12)).astype(np.uint8)
    return dict(va=va, kind=rng.integers(0, 3, n).astype(np.uint8), shift=shift,
                asid=rng.integers(0, 3, n).astype(np.int32),
                vmid=rng.integers(0, 2, n).astype(np.int32),
                cpu=rng.integers(0, cpus, n).astype(np.int32), global_=kernel)


@SETTINGS
@given(data=st.data())
def test_kernel_matches_twin_on_random_traces(data):
    cfg = data.draw(hierarchies())
    tr = data.draw(traces(cfg.cpus))
    t = tlb.TLB(cfg)
    c = t.run(tr["va"], record=True, kind=tr["kind"], page_shift=tr["shift"], asid=tr["asid"],
              vmid=tr["vmid"], cpu=tr["cpu"], global_=tr["global_"])
    twin = NaiveTLB(cfg)
    expected = twin.run(tr["va"], tr["kind"], tr["shift"], tr["asid"], tr["vmid"], tr["cpu"],
                        tr["global_"])
    assert t.last_outcome.tolist() == expected
    assert c.as_dict() == twin.counts


@SETTINGS
@given(data=st.data())
def test_invalidation_matches_twin(data):
    cfg = data.draw(hierarchies())
    tr = data.draw(traces(cfg.cpus))
    t, twin = tlb.TLB(cfg), NaiveTLB(cfg)
    args = (tr["kind"], tr["shift"], tr["asid"], tr["vmid"], tr["cpu"], tr["global_"])
    t.run(tr["va"], kind=tr["kind"], page_shift=tr["shift"], asid=tr["asid"], vmid=tr["vmid"],
          cpu=tr["cpu"], global_=tr["global_"])
    twin.run(tr["va"], *args)
    cpu = data.draw(st.integers(-1, cfg.cpus - 1))
    asid, vmid = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 1))
    va = int(tr["va"].view(np.int64)[data.draw(st.integers(0, len(tr["va"]) - 1))])
    op = data.draw(st.sampled_from(["va", "vale", "range", "asid", "vmid", "all"]))
    if op == "va":
        got, want = tlb.invalidate_va(t.state, cpu, va, asid, vmid), \
            twin.invalidate_va(cpu, va, asid, vmid)
    elif op == "vale":
        got, want = tlb.invalidate_va(t.state, cpu, va, asid, vmid, True), \
            twin.invalidate_va(cpu, va, asid, vmid, True)
    elif op == "range":
        end = va + data.draw(st.integers(1, 1 << 22))
        got, want = tlb.invalidate_range(t.state, cpu, va, end, asid, vmid), \
            twin.invalidate_range(cpu, va, end, asid, vmid)
    elif op == "asid":
        got, want = tlb.invalidate_asid(t.state, cpu, asid, vmid), \
            twin.invalidate_asid(cpu, asid, vmid)
    elif op == "vmid":
        got, want = tlb.invalidate_vmid(t.state, cpu, vmid), twin.invalidate_vmid(cpu, vmid)
    else:
        got, want = tlb.invalidate_all(t.state, cpu), twin.invalidate_all(cpu)
    assert got == want
    # the per-bucket key counts that let probes skip empty sets follow every change
    assert np.array_equal(t.state.filt, tlb.filter_counts(t.state))
    # and the two continue identically after the invalidation
    t.run(tr["va"], record=True, kind=tr["kind"], page_shift=tr["shift"], asid=tr["asid"],
          vmid=tr["vmid"], cpu=tr["cpu"], global_=tr["global_"])
    assert t.last_outcome.tolist() == twin.run(tr["va"], *args)


# ---- validation ----------------------------------------------------------------------------
def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="power of two"):
        TLBConfig.single(entries=12, ways=4)
    with pytest.raises(ConfigError, match="multiple"):
        TLBLevelConfig(10, 4)
    with pytest.raises(ConfigError, match="policy"):
        TLBLevelConfig(8, 2, "plru")
    with pytest.raises(ConfigError, match="not held"):
        tlb.simulate_trace(pages(1), TLBConfig.single(), page_shift=21)
    with pytest.raises(ConfigError, match="one value per access"):
        tlb.simulate_trace(pages(1, 2), TLBConfig.single(), asid=np.zeros(3, np.int32))
    with pytest.raises(ConfigError, match="CPU"):
        tlb.simulate_trace(pages(1), TLBConfig.single(), cpu=1)
    with pytest.raises(ConfigError, match="at least one"):
        TLBConfig()


def test_entry_sizes_cover_every_leaf_of_every_geometry():
    assert tlb.entry_sizes(geometry.arm64("4K", 48)) == (12, 16, 21, 25, 30)
    assert tlb.entry_sizes(geometry.arm64("64K", 48), cont=False) == (16, 29)
    assert tlb.entry_sizes(geometry.x86_64()) == (12, 21, 30)
    cfg = TLBConfig.neoverse_n1().with_geometry(geometry.arm64("16K", 48),
                                                geometry.stage2("4K", 40))
    assert set(cfg.page_shifts) >= {12, 14, 16, 21, 25, 30}


def test_leaf_and_cont_shifts_from_levels():
    g = geometry.arm64("4K", 48)
    assert tlb.leaf_shifts(g, [3, 2, 1]).tolist() == [12, 21, 30]
    assert tlb.cont_shifts(g, [3, 2, 3], [True, True, False]).tolist() == [16, 25, 0]
    with pytest.raises(ConfigError, match="leaf levels"):
        tlb.leaf_shifts(g, [0])
    g64 = geometry.arm64("64K", 48)
    assert tlb.leaf_shifts(g64, [3, 2]).tolist() == [16, 29]


def test_simulate_trace_from_leaf_levels():
    g = geometry.arm64("4K", 48)
    cfg = TLBConfig.single(entries=64, ways=4).with_geometry(g)
    va = pages(*range(32))
    lv = np.array([2] * 16 + [3] * 16, np.int8)   # a 2M block, then pages of the next 2M
    va[16:] += np.uint64(2 << 20)
    cont = np.array([False] * 16 + [True] * 16)
    c = tlb.simulate_trace(va, cfg, leaf_level=lv, cont=cont, geometry=g)
    assert c.misses == 1 + 1      # one 2M entry, one 64K contiguous entry
    with pytest.raises(ConfigError, match="geometry"):
        tlb.simulate_trace(va, cfg, leaf_level=lv)


# ---- invariant: no stale hit after an invalidation that covers the address -------------------
def _copy_state(st):
    return type(st)(*[a.copy() for a in st])


@INVARIANT
@given(data=st.data())
def test_invariant_no_stale_hit_after_a_covering_invalidation(data):
    """A random trace (several CPUs, ASIDs, VMIDs, global kernel entries, three leaf sizes)
    fills the hierarchy; then each TLBI kind drops what it covers: the next access to any
    covered address, on a covered CPU, in the invalidated context, walks (it hits no L1 or
    L2 entry). Each covered address is probed on its own copy of the state, so one probe's
    fill cannot hide another's stale entry."""
    cfg = data.draw(hierarchies())
    tr = data.draw(traces(cfg.cpus))
    t = tlb.TLB(cfg)
    cols = dict(kind=tr["kind"], page_shift=tr["shift"], asid=tr["asid"], vmid=tr["vmid"],
                cpu=tr["cpu"], global_=tr["global_"])
    t.run(tr["va"], **cols)
    n = len(tr["va"])
    va_i = tr["va"].view(np.int64)
    for _ in range(data.draw(st.integers(1, 3))):
        cpu = data.draw(st.integers(-1, cfg.cpus - 1))
        i = k = data.draw(st.integers(0, n - 1))
        asid, vmid = int(tr["asid"][i]), int(tr["vmid"][i])
        op = data.draw(st.sampled_from(["va", "vale", "range", "asid", "vmid", "all"]))
        # covered: (trace index, asid to probe with) pairs
        if op in ("va", "vale"):
            tlb.invalidate_va(t.state, cpu, int(va_i[i]), asid, vmid, op == "vale")
            page = (va_i >> 12) == (va_i[i] >> 12)
            cover = np.flatnonzero(page & ((tr["vmid"] == vmid)))
        elif op == "range":
            start = int(va_i[i]) & ~0xFFF
            k = data.draw(st.integers(0, n - 1))
            last = (int(va_i[k]) & ~0xFFF) + 4096      # often ending just past a used page
            end = last if last > start and data.draw(st.booleans()) else \
                start + data.draw(st.integers(1, 1 << 22))
            tlb.invalidate_range(t.state, cpu, start, end, asid, vmid)
            cover = np.flatnonzero((va_i >= start) & (va_i < end) & (tr["vmid"] == vmid))
        elif op == "asid":
            tlb.invalidate_asid(t.state, cpu, asid, vmid)
            cover = np.flatnonzero(~tr["global_"] & (tr["asid"] == asid) & (tr["vmid"] == vmid))
        elif op == "vmid":
            tlb.invalidate_vmid(t.state, cpu, vmid)
            cover = np.flatnonzero(tr["vmid"] == vmid)
        else:
            tlb.invalidate_all(t.state, cpu)
            cover = np.arange(n)
        event(f"invalidate {op}")
        kept = t.state
        probes = data.draw(st.lists(st.sampled_from(cover.tolist()), max_size=6, unique=True)
                           if cover.size else st.just([]))
        # the addresses that define the invalidation are probed whenever it covers them
        for anchor in (i, k if op == "range" else i):
            if anchor in cover and anchor not in probes:
                probes.append(anchor)
        for j in probes:
            pcpu = cpu if cpu >= 0 else data.draw(st.integers(0, cfg.cpus - 1))
            t.state = _copy_state(kept)
            # range/VA/ASID invalidations match the invalidated ASID or global entries:
            # probe in that ASID; VMID and all invalidations cover every ASID
            pasid = asid if op in ("va", "vale", "range", "asid") else int(tr["asid"][j])
            t.run(tr["va"][j:j + 1], record=True, kind=tr["kind"][j:j + 1],
                  page_shift=tr["shift"][j:j + 1], asid=pasid, vmid=int(tr["vmid"][j]),
                  cpu=pcpu, global_=tr["global_"][j:j + 1])
            assert t.last_outcome[0] == Outcome.WALK, \
                f"stale hit at {int(va_i[j]):#x} after TLBI {op} on CPU {cpu}"
        t.state = kept
        # the hierarchy keeps working after the invalidation
        t.run(tr["va"], **cols)


def test_the_l2_only_translation_equals_the_full_one_on_a_one_level_tlb():
    """:func:`kmm.tlb.tlb_translate_l2` (what a one-level TLB model calls: fewer paths to
    inline) gives the outcomes, counts and entries of :func:`kmm.tlb.tlb_translate` on a
    TLB with an L2 and no L1: every access, two page sizes, global and ASID-tagged
    translations, several CPUs, LRU and tree-PLRU."""
    from kmm._jit import njit

    @njit(_nrt=False)
    def run_l2(st, acc, counts, outcome):
        for i in range(acc.va.shape[0]):
            outcome[i] = tlb.tlb_translate_l2(
                st, np.int64(tlb._at(acc.cpu, i)), acc.va[i], tlb._at(acc.flags, i),
                np.int64(tlb._at(acc.shift, i)), tlb._at(acc.asid, i), tlb._at(acc.vmid, i),
                counts)

    rng = np.random.default_rng(5)
    n = 20_000
    for policy in ("lru", "tree_plru"):
        cfg = TLBConfig(l2=TLBLevelConfig(256, 4, policy), page_shifts=(12, 21), cpus=3)
        va = (rng.zipf(1.3, n).astype(np.uint64) % np.uint64(1 << 14)) << np.uint64(12)
        per = dict(page_shift=np.where(rng.random(n) < 0.2, 21, 12).astype(np.uint8),
                   asid=rng.integers(0, 3, n), cpu=rng.integers(0, 3, n),
                   global_=rng.random(n) < 0.5, kind=np.full(n, int(Kind.LOAD), np.int8))
        full = tlb.TLB(cfg)
        full.run(va, record=True, **per)
        st = cfg.to_state()
        counts = np.zeros_like(full.counts.values)
        out = np.empty(n, np.int8)
        run_l2(st, tlb.make_accesses(cfg, va, **per), counts, out)
        assert (out == full.last_outcome).all() and (out >= 1).all()
        assert (counts == full.counts.values).all()
        for a, b in zip(st, full.state):
            assert np.array_equal(a, b)
