"""kmm.timing: twin tests against tests/naive/timing.py on random cases, hand-worked cases
for each term, and the calibration file's sources."""
from __future__ import annotations

import numpy as np
import pytest
from naive import timing as naive
from test_sources import source_problem

from kmm import timing as t
from kmm.errors import ConfigError


# ---- helpers ----------------------------------------------------------------------------
def _ms(idle, a, k, la, peak, link, bg):
    return t.MemorySystem(idle_ns=np.asarray(idle, float), peak_gbps=np.asarray(peak, float),
                          link_gbps=np.asarray(link, float), curve=t.LoadCurve(a=a, k=k),
                          link_curve=t.LoadCurve(a=la, k=k), background=bg)


def _counts(rng, n, scale):
    served = rng.integers(0, 1000, size=(n, 3, 4)).astype(float) * scale
    mem = rng.integers(0, 400, size=(n, 3, n)).astype(float) * scale
    served[:, :, 3] = mem.sum(axis=2)
    return t.Counts(instructions=rng.integers(1, 50000, size=n).astype(float) * scale,
                    served=served, mem=mem,
                    l2_tlb_hits=rng.integers(0, 500, size=n).astype(float) * scale,
                    cpus=rng.integers(1, 4, size=n).astype(float),
                    extra_lines=rng.integers(0, 200, size=(n, n)).astype(float) * scale)


def _core(rng):
    return t.CoreModel(ghz=float(rng.uniform(2.0, 3.0)), cpi_base=float(rng.uniform(0.5, 1.5)),
                       l2_cycles=11.0, llc_ns=float(rng.uniform(20, 45)), l2_tlb_cycles=5.0,
                       outstanding=int(rng.integers(1, 48)), window=int(rng.integers(16, 256)),
                       dep_ifetch=float(rng.uniform()), dep_data=float(rng.uniform()),
                       dep_walk=1.0)


def _naive_core(core):
    return {"ghz": core.ghz, "cpi_base": core.cpi_base, "l2_cycles": core.l2_cycles,
            "llc_ns": core.llc_ns, "l2_tlb_cycles": core.l2_tlb_cycles,
            "outstanding": core.outstanding, "window": core.window,
            "dep": [core.dep_ifetch, core.dep_data, core.dep_walk]}


def _naive_ms(ms):
    return {"idle": ms.idle_ns.tolist(), "a": ms.curve.a, "k": ms.curve.k,
            "la": ms.link_curve.a, "lk": ms.link_curve.k, "peak": ms.peak_gbps.tolist(),
            "link": ms.link_gbps.tolist(), "background": ms.background}


# ---- term 1: loaded latency -------------------------------------------------------------
def test_loaded_latency_twin_random():
    rng = np.random.default_rng(1)
    for _ in range(50):
        n = int(rng.integers(1, 5))
        idle = rng.uniform(60, 300, size=(n, n))
        ms = _ms(idle, rng.uniform(0, 2), rng.uniform(0, 0.9), rng.uniform(0, 2),
                 rng.uniform(10, 200, n), rng.uniform(10, 100, (n, n)), 0.0)
        rn, rl = rng.uniform(0, 1.2, n), rng.uniform(0, 1.2, (n, n))
        np.fill_diagonal(rl, 0.0)
        want = naive.latency(idle.tolist(), ms.curve.a, ms.curve.k, ms.link_curve.a,
                             ms.link_curve.k, rn.tolist(), rl.tolist())
        assert np.allclose(ms.latency(rn, rl), want, rtol=1e-12)


def test_loaded_latency_by_hand():
    # a = 1, k = 0.5: at rho = 1 the delay is 0.5/0.5 = 1 x idle; link premium 50 ns at 0.5
    # utilisation: 50 * 0.25/0.75
    ms = _ms([[100.0, 150.0], [150.0, 100.0]], 1.0, 0.5, 1.0, [10, 10], [[5, 5], [5, 5]], 0.0)
    lat = ms.latency(np.array([1.0, 0.0]), np.array([[0.0, 0.0], [0.5, 0.0]]))
    assert lat[0, 0] == pytest.approx(200.0)
    assert lat[1, 1] == pytest.approx(100.0)
    assert lat[0, 1] == pytest.approx(150.0)
    assert lat[1, 0] == pytest.approx(150.0 + 100.0 + 50.0 / 3.0)


def test_fit_recovers_a_known_curve_and_reproduces_the_published_points():
    b = np.linspace(1.0, 120.0, 15)
    lat = 80.0 + 20.0 * (b / 200.0) / (1.0 - b / 200.0)
    c = t.LoadCurve.fit(b, lat)
    assert c.a == pytest.approx(20.0 / 80.0, rel=1e-3)
    assert c.k == pytest.approx(120.0 / 200.0, rel=1e-3)
    rows = np.asarray(t.calibration()["loaded_latency"]["mlc_curve"]["value"], float)
    pc = t.published_curve()
    bw, meas = rows[:, 2] / 1000.0, rows[:, 1]
    pred = pc.delay_share(bw / bw.max())
    # L = L0 (1 + delay share): the best L0 for the fitted shape leaves < 4 ns anywhere
    l0 = float(np.linalg.lstsq((1 + pred)[:, None], meas, rcond=None)[0][0])
    assert np.abs(l0 * (1 + pred) - meas).max() < 4.0
    assert 0.0 < pc.k < 1.0 and pc.a > 0.0
    # loaded at the measured peak, latency rises by about half (130 ns over an 85 ns fit)
    assert 1.3 < 1 + pc.delay_share(1.0) < 1.7


# ---- term 2: overlap and the fixed point ------------------------------------------------------
def test_solve_twin_random():
    rng = np.random.default_rng(2)
    bounds = set()
    for case in range(40):
        n = int(rng.integers(1, 4))
        c = _counts(rng, n, scale=10.0 ** rng.integers(0, 4))
        core = _core(rng)
        ms = _ms(rng.uniform(60, 250, (n, n)), rng.uniform(0, 2), rng.uniform(0, 0.9),
                 rng.uniform(0, 2), rng.uniform(0.05, 50, n), rng.uniform(0.05, 20, (n, n)),
                 float(rng.uniform(0, 0.8)))
        r = t.solve(c, ms, core)
        want, bound = naive.solve(_naive_core(core), _naive_ms(ms), c.instructions.tolist(),
                                  c.served.tolist(), c.mem.tolist(), c.l2_tlb_hits.tolist(),
                                  c.cpus.tolist(), c.extra_lines.tolist())
        assert r.wall_ns == pytest.approx(want, rel=1e-9), case
        assert r.bound == bound
        bounds.add(bound)
        assert (r.node_util <= 1.0 + 1e-9).all() and (r.link_util <= 1.0 + 1e-9).all()
        wanted_mlp = naive.mlp(c.instructions.tolist(), c.served.tolist(),
                               [core.dep_ifetch, core.dep_data, core.dep_walk],
                               core.outstanding, core.window)
        assert np.allclose(r.mlp, wanted_mlp)
    assert bounds == {"latency", "bandwidth"}  # both regimes exercised


def _one_node(n_misses, instructions, dep_data, outstanding=22, window=128):
    served = np.zeros((1, 3, 4))
    mem = np.zeros((1, 3, 1))
    mem[0, 1, 0] = n_misses
    served[0, 1, 3] = n_misses
    c = t.Counts(instructions=np.array([float(instructions)]), served=served, mem=mem,
                 l2_tlb_hits=np.zeros(1), cpus=np.ones(1))
    core = t.CoreModel(ghz=2.5, cpi_base=1.0, outstanding=outstanding, window=window,
                       dep_data=dep_data)
    return c, core


def test_overlap_by_hand():
    # idle latency, no queueing (a = 0): 100 ns per miss
    ms = _ms([[100.0]], 0.0, 0.5, 0.0, [1e6], [[1e6]], 0.0)
    # 10 misses in 1000 instructions, half independent: 5/1000 * 128 = 0.64 < 1: no overlap
    c, core = _one_node(10, 1000, 0.5)
    r = t.solve(c, ms, core)
    assert r.mlp[0] == 1.0
    assert r.wall_ns == pytest.approx(1000 / 2.5 + 10 * 100.0)
    # 100 misses: 50 independent -> MLP 50/1000*128 = 6.4; stall 50*100 + 50*100/6.4
    c, core = _one_node(100, 1000, 0.5)
    r = t.solve(c, ms, core)
    assert r.mlp[0] == pytest.approx(6.4)
    assert r.wall_ns == pytest.approx(400.0 + 5000.0 + 5000.0 / 6.4)
    assert r.breakdown["data_memory_ns"] == pytest.approx(5000.0 + 5000.0 / 6.4)
    # the outstanding-miss limit caps the overlap: 4 outstanding
    c, core = _one_node(100, 1000, 0.5, outstanding=4)
    assert t.solve(c, ms, core).wall_ns == pytest.approx(400.0 + 5000.0 + 5000.0 / 4)
    # walks are dependent whatever the overlap of data
    served = np.zeros((1, 3, 4))
    served[0, 2, 1] = 100  # 100 walk references served by L2 (11 cycles)
    c2 = t.Counts(instructions=np.array([0.0]), served=served, mem=np.zeros((1, 3, 1)),
                  l2_tlb_hits=np.zeros(1), cpus=np.ones(1))
    assert t.solve(c2, ms, t.CoreModel(ghz=2.5)).wall_ns == pytest.approx(100 * 11 / 2.5)


def test_fixed_point_by_hand():
    # every reference a dependent memory miss, no base time: T = N * L(rho),
    # rho = 64 N / (T P); with a = 1: L = idle / (1 - k rho), so T/N = idle + 64 k / P
    # = 100 + 64 * 0.5 / 0.64 = 150 ns, at rho = 2/3 (latency bound: 64/0.64 = 100 < 150)
    ms = _ms([[100.0]], 1.0, 0.5, 0.0, [0.64], [[1.0]], 0.0)
    c, _ = _one_node(1e6, 0, 1.0)
    r = t.solve(c, ms, t.CoreModel(dep_data=1.0))
    assert r.bound == "latency"
    assert r.wall_ns == pytest.approx(150e6, rel=1e-9)
    assert r.node_util[0] == pytest.approx(2.0 / 3.0, rel=1e-9)
    assert r.latency_ns[0, 0] == pytest.approx(150.0, rel=1e-9)
    # half the bandwidth taken by the other cores: rho = 64/(y*0.64) + 0.5 and
    # y (1 - k rho) = 100 -> y (0.75) - 50 = 100 -> y = 200 ns
    ms_bg = _ms([[100.0]], 1.0, 0.5, 0.0, [0.64], [[1.0]], 0.5)
    assert t.solve(c, ms_bg, t.CoreModel(dep_data=1.0)).wall_ns == pytest.approx(200e6, rel=1e-9)
    # independent misses at full overlap need more bandwidth than there is: bandwidth bound
    c3, core3 = _one_node(1e6, 1e6, 0.0, outstanding=46, window=128)
    r3 = t.solve(c3, ms, core3)
    assert r3.bound == "bandwidth"
    assert r3.wall_ns == pytest.approx(64e6 / 0.64)
    assert r3.breakdown["bandwidth_wait_ns"] > 0.0


def test_time_never_falls_with_background():
    rng = np.random.default_rng(3)
    c = _counts(rng, 2, 100.0)
    core = _core(rng)
    walls = [t.solve(c, _ms([[90, 160], [160, 90]], 0.7, 0.45, 0.7, [50, 50], [[20, 20]] * 2,
                            bg), core).wall_ns for bg in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert all(b >= a for a, b in zip(walls, walls[1:]))
    assert walls[-1] > walls[0]


def test_counts_must_add_up():
    served = np.zeros((1, 3, 4))
    mem = np.zeros((1, 3, 1))
    mem[0, 1, 0] = 5
    with pytest.raises(ConfigError):
        t.Counts(instructions=np.ones(1), served=served, mem=mem, l2_tlb_hits=np.zeros(1),
                 cpus=np.ones(1))


# ---- term 3: invalidation felt by every CPU ----------------------------------------------
def test_invalidation_scope_follows_the_kernel_thresholds():
    assert t.invalidation_scope(t.FlushKind.ARM64_KERNEL_RANGE, 511) == t.Scope.RANGE
    assert t.invalidation_scope(t.FlushKind.ARM64_KERNEL_RANGE, 512) == t.Scope.ALL
    assert t.invalidation_scope(t.FlushKind.X86_KERNEL_RANGE, 33) == t.Scope.RANGE
    assert t.invalidation_scope(t.FlushKind.X86_KERNEL_RANGE, 34) == t.Scope.ALL
    assert t.invalidation_scope(t.FlushKind.PKVM_HOST_STAGE2, 1) == t.Scope.ALL
    assert t.invalidation_scope(t.FlushKind.ARM64_KERNEL_RANGE, 16, max_dvm_ops=16) == t.Scope.ALL


def test_rewalks_by_hand():
    in_use = [1000, 300, 2000]
    lost = t.lost_translations(in_use, [10, 0, 100], t.Scope.ALL, 1280)
    assert lost.tolist() == [1000, 300, 1280]
    r = t.rewalk_time(lost, 200.0, initiator=0)
    assert r.initiator_ns == 200_000.0
    assert r.others_ns == (300 + 1280) * 200.0  # every other CPU re-walks, not only the initiator
    lost = t.lost_translations(in_use, [10, 0, 100], t.Scope.RANGE, 1280)
    assert lost.tolist() == pytest.approx([10, 0, 64])  # 100 * 1280/2000 held
    assert t.walk_ns([3, 1, 0, 1], [2.0, 4.4, 30.0, 120.0]) == pytest.approx(130.4)


def test_rewalk_model_by_hand():
    """One re-walk reads 4 descriptors, 1 from memory at 80 ns and 3 from the LLC at 30 ns:
    170 ns. A CPU holds at most 64 of its 100 translations, so a flush of everything on 4
    CPUs costs the initiator 64 x 170 = 10880 ns and the 3 others 32640 ns; a ranged flush
    costs none (the working set lies outside the range)."""
    rw = t.Rewalk(working_set=100, refs=4, memory_refs=1.0, cached_ns=30.0, memory_ns=80.0)
    assert rw.walk_ns() == pytest.approx(170.0)
    r = rw.after(t.Scope.ALL, 4, 64)
    assert r.per_cpu_ns.tolist() == pytest.approx([10880.0] * 4)
    assert (r.initiator_ns, r.others_ns, r.total_ns, r.rewalks) == \
        pytest.approx((10880.0, 32640.0, 43520.0, 256.0))
    assert rw.after(t.Scope.ALL, 4, 64, initiator=3).initiator_ns == pytest.approx(10880.0)
    assert rw.after(t.Scope.RANGE, 4, 64).total_ns == 0.0
    # more memory reads than the walk has: every read from memory, 4 x 80
    assert t.Rewalk(working_set=1, refs=4, memory_refs=6.0, memory_ns=80.0).walk_ns() == \
        pytest.approx(320.0)
    # the LLC hit defaults to the core model's
    assert t.Rewalk(working_set=1, refs=4, memory_ns=80.0).cached_ns == t.CoreModel().llc_ns
    # from the idle latency: at background 0 the idle one; at 0.5 the calibrated curve's
    # queueing delay on top, 80 x (1 + a*k*0.5 / (1 - k*0.5)) with the published (a, k)
    idle = t.Rewalk(working_set=100, refs=4, mem_idle_ns=80.0, background=0.0)
    assert idle.loaded_ns() == pytest.approx(80.0) and idle.walk_ns() == pytest.approx(170.0)
    c = t.published_curve()
    x = c.k * 0.5
    half = t.Rewalk(working_set=100, refs=4, mem_idle_ns=80.0, background=0.5)
    assert half.loaded_ns() == pytest.approx(80.0 * (1.0 + c.a * x / (1.0 - x)))
    assert half.walk_ns() == pytest.approx(90.0 + half.loaded_ns()) and half.walk_ns() > 170.0
    # no background given: the calibration's
    bg = t.calibration()["background"]["fraction"]["value"]
    assert t.Rewalk(working_set=1, refs=4, mem_idle_ns=80.0).background == bg


def test_rewalk_model_twin_random():
    """:class:`kmm.timing.Rewalk` against the plain-Python re-derivation, from a given loaded
    latency and from an idle one at a background load."""
    rng = np.random.default_rng(5)
    ms = t.memory_system([[80.0]])
    a, k = ms.curve.a, ms.curve.k
    for _ in range(200):
        cpus = int(rng.integers(1, 9))
        ws = int(rng.integers(0, 3000))
        refs = int(rng.integers(1, 25))
        mref = float(rng.uniform(0.0, 6.0))
        cached = float(rng.uniform(0.0, 50.0))
        cap = int(rng.integers(1, 2000))
        ini = int(rng.integers(0, cpus))
        if rng.uniform() < 0.5:
            lat = float(rng.uniform(0.0, 400.0))
            rw = t.Rewalk(working_set=ws, refs=refs, memory_refs=mref, cached_ns=cached,
                          memory_ns=lat)
        else:
            idle, bg = float(rng.uniform(1.0, 300.0)), float(rng.uniform(0.0, 0.99))
            lat = naive.loaded(idle, a, k, bg)
            rw = t.Rewalk(working_set=ws, refs=refs, memory_refs=mref, cached_ns=cached,
                          mem_idle_ns=idle, background=bg)
        assert rw.loaded_ns() == pytest.approx(lat, rel=1e-12)
        for scope in (t.Scope.ALL, t.Scope.RANGE):
            got = rw.after(scope, cpus, cap, initiator=ini)
            per, total, i_ns, o_ns, n = naive.rewalk(ws, refs, mref, cached, lat, cpus, cap,
                                                     scope == t.Scope.ALL, ini)
            assert np.allclose(got.per_cpu_ns, per, rtol=1e-12, atol=0.0)
            assert (got.total_ns, got.initiator_ns, got.others_ns, got.rewalks) == \
                pytest.approx((total, i_ns, o_ns, n), rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("kw, name", [
    (dict(working_set=-1, refs=4, memory_ns=80.0), "rewalk_working_set"),
    (dict(working_set=1, refs=0, memory_ns=80.0), "rewalk_refs"),
    (dict(working_set=1, refs=4, memory_refs=-0.5, memory_ns=80.0), "rewalk_memory_refs"),
    (dict(working_set=1, refs=4, cached_ns=-1.0, memory_ns=80.0), "cached_ns"),
    (dict(working_set=1, refs=4), "memory_ns"),
    (dict(working_set=1, refs=4, mem_idle_ns=80.0, memory_ns=80.0), "memory_ns"),
    (dict(working_set=1, refs=4, memory_ns=80.0, background=0.3), "background"),
    (dict(working_set=1, refs=4, mem_idle_ns=0.5), "mem_idle_ns"),
    (dict(working_set=1, refs=4, mem_idle_ns=80.0, background=1.0), "background"),
])
def test_rewalk_model_inputs_are_checked(kw, name):
    with pytest.raises(ConfigError, match=name):
        t.Rewalk(**kw)
    rw = t.Rewalk(working_set=1, refs=4, memory_ns=80.0)
    with pytest.raises(ConfigError, match="cpus"):
        rw.after(t.Scope.ALL, 0, 64)
    with pytest.raises(ConfigError, match="tlb_entries"):
        rw.after(t.Scope.ALL, 2, 0)
    with pytest.raises(ConfigError, match="initiator"):
        rw.after(t.Scope.ALL, 2, 64, initiator=2)


def test_lost_sets_twin_random():
    rng = np.random.default_rng(4)
    for _ in range(60):
        cpus = int(rng.integers(1, 8))
        sets = [sorted(set(rng.integers(0, 5000, size=int(rng.integers(0, 3000))).tolist()))
                for _ in range(cpus)]
        offsets = np.cumsum([0] + [len(s) for s in sets])
        pages = np.array([p for s in sets for p in s], dtype=np.int64)
        start = int(rng.integers(0, 5000))
        end = start + int(rng.integers(0, 2000))
        cap = int(rng.integers(1, 3000))
        for scope in (t.Scope.RANGE, t.Scope.ALL):
            got = t.lost_translations_sets(offsets, pages, start, end, scope, cap)
            want = naive.lost_sets(sets, start, end, scope == t.Scope.ALL, cap)
            assert np.allclose(got, want)
            in_use = [len(s) for s in sets]
            in_range = [len([p for p in s if start <= p < end]) for s in sets]
            assert np.allclose(t.lost_translations(in_use, in_range, scope, cap), want)


# ---- calibration ------------------------------------------------------------------------
def test_every_calibration_value_is_sourced_or_assumed():
    entries = t.calibration_entries()
    assert len(entries) >= 15
    bad = []
    for path, e in entries:
        if "source" in e:
            problem = source_problem(e["source"])
            if problem:
                bad.append(f"{path}: {problem}")
        elif "assumed" in e:
            lo, hi = e["assumed"]
            if not (lo <= hi and lo <= e["value"] <= hi and e.get("description")):
                bad.append(f"{path}: assumed range, value or description wrong")
        else:
            bad.append(f"{path}: neither source nor assumed")
    assert not bad, "\n".join(bad)


def test_defaults_come_from_the_calibration():
    cal = t.calibration()
    core = t.neoverse_core()
    assert core.outstanding == cal["core"]["neoverse_outstanding"]["value"]
    assert core.outstanding in cal["core"]["read_issuing"]["value"]
    assert core.window == cal["core"]["neoverse_window"]["value"]
    ms = t.memory_system([[81.0]])
    assert ms.peak_gbps[0] == cal["graviton2"]["peak_gbps"]["value"]
    assert ms.background == cal["background"]["fraction"]["value"]
    assert t.ampereone_core().outstanding == cal["core"]["ampereone_outstanding"]["value"]


# ---- overlap of one touch's streamed lines --------------------------------------------------
def _naive_stream_overlap(lines, outstanding):
    """Plain-Python twin of :func:`t.stream_overlap`: the lines of one touch in flight
    together, at least one, at most the outstanding-miss limit."""
    v = float(lines)
    if v < 1.0:
        v = 1.0
    if v > outstanding:
        v = float(outstanding)
    return v


def test_stream_overlap_twin_random():
    rng = np.random.default_rng(11)
    for _ in range(200):
        core = _core(rng)
        lines = rng.uniform(0.0, 200.0, size=int(rng.integers(1, 8)))
        lines[rng.random(lines.size) < 0.2] = 0.0
        got = t.stream_overlap(lines, core)
        want = [_naive_stream_overlap(x, core.outstanding) for x in lines]
        assert got == pytest.approx(want, rel=0, abs=0)
        assert t.stream_overlap(float(lines[0]), core) == want[0]


def test_stream_overlap_by_hand():
    # a 4 KiB copy: 63 further lines, 46 outstanding (AmpereOne-class): 46 in flight
    core = t.CoreModel(outstanding=46)
    assert t.stream_overlap(63, core) == 46.0
    # the Neoverse-class limit (22, calibration core.read_issuing): 22
    assert t.stream_overlap(63, t.neoverse_core()) == 22.0
    # a 2-line touch overlaps its own lines only; a touch of no further line: 1
    assert t.stream_overlap(2, core) == 2.0
    assert t.stream_overlap(0.0, core) == 1.0
    # per operation: an array of the same shape
    got = t.stream_overlap(np.array([0.5, 10.0, 100.0]), core)
    assert isinstance(got, np.ndarray) and got.tolist() == [1.0, 10.0, 46.0]
    # 100 misses each from memory at 100 ns, overlapped by 46: 100 * 100 / 46 ns of stall
    assert 100 * 100.0 / t.stream_overlap(100, core) == pytest.approx(217.3913043, rel=1e-9)
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ConfigError):
            t.stream_overlap(bad, core)
    with pytest.raises(ConfigError):
        t.stream_overlap(10, 46)
    assert "stream_overlap" in t.__all__


def test_memory_system_keeps_its_own_idle_matrix():
    """latency() reads the diagonal and premiums worked out once from the idle matrix: the
    system holds a read-only copy, so an edit of the caller's array changes nothing."""
    idle = np.array([[100.0, 180.0], [170.0, 110.0]])
    ms = t.memory_system(idle, background=0.1)
    before = ms.latency(np.array([0.5, 0.2]), np.full((2, 2), 0.3))
    idle[:] = 1.0
    assert np.array_equal(ms.latency(np.array([0.5, 0.2]), np.full((2, 2), 0.3)), before)
    with pytest.raises(ValueError):
        ms.idle_ns[0, 0] = 1.0
