"""What replication costs beyond patching (issue 29): each cost term against a plain-Python
twin and a hand-worked case, and the gain on any latency matrix."""
import numpy as np
import pytest

from kmm import engine as eng
from kmm import numa
from kmm.errors import ConfigError
from kmm.mech import ktr
from kmm.mech.host.model import resolved_mem, time_counts


def _counts(nodes=2, text=100, kobj=50, instructions=1_000_000, lines=1000):
    """Counts of a simulated node 1: ``text`` instruction-fetch memory reads of replicated
    lines and ``kobj`` data reads of kernel objects of threads of home 1."""
    cls = ktr.Classes(nodes)
    mem = np.zeros((3, nodes, cls.count), np.int64)
    mem[0, 1, cls.TEXT] = text
    mem[1, 1, cls.khome(1)] = kobj
    served = np.array([[0, 0, 0, text], [0, 0, 0, kobj], [0, 0, 0, 0]])
    return ktr.HostCounts(nodes=nodes, sim_node=1, classes=cls, mem=mem, served=served,
                          l2_tlb_hits=0, walks=0, walk_refs=0, instructions=instructions,
                          hyp_lines=0, exits=0, cpus=1, replicated_lines=lines)


# ---- placement rules: module text and remote kernel objects ------------------------------
def _naive_resolved(c, scheme, policy, rc):
    """Plain-Python twin of :func:`resolved_mem`: every class's reads, one by one, to the
    node it resolves to, then the module share of text to node 0 and the remote share of
    kernel objects to the next node."""
    n = c.nodes
    cls = c.classes
    out = [[[0.0] * n for _ in range(3)] for _ in range(n)]
    for k in range(n):
        where = cls.resolve(scheme, policy, k, c.sim_node)
        khomes = {cls.khome(h) for h in range(n)}
        for s in range(3):
            for x in range(cls.count):
                v = float(c.mem[s, c.sim_node, x])
                if x == cls.TEXT:
                    out[k][s][0] += v * rc.module_text_fraction
                    out[k][s][where[x]] += v * (1 - rc.module_text_fraction)
                elif x in khomes and n > 1:
                    out[k][s][(where[x] + 1) % n] += v * rc.kobj_remote_fraction
                    out[k][s][where[x]] += v * (1 - rc.kobj_remote_fraction)
                else:
                    out[k][s][where[x]] += v
    return np.array(out)


@pytest.mark.parametrize("nodes", [2, 4])
@pytest.mark.parametrize("scheme", list(ktr.Scheme))
def test_placement_rules_twin(nodes, scheme):
    c = _counts(nodes)
    rng = np.random.default_rng(nodes)
    c.mem[:, 1, :] = rng.integers(0, 50, size=c.mem[:, 1, :].shape)
    rc = ktr.ReplicaCosts(module_text_fraction=0.3, kobj_remote_fraction=0.2)
    for policy in ktr.UserPolicy:
        got = resolved_mem(c, scheme, policy, rc)
        assert got == pytest.approx(_naive_resolved(c, scheme, policy, rc), abs=1e-9)
        # the rules move reads between nodes, never add or drop one
        assert got.sum() == pytest.approx(c.mem[:, 1, :].sum() * nodes)


def test_placement_rules_hand_worked():
    """KTR, CPU node 1 of 2, 100 text fetches and 50 kernel-object reads of home 1.
    Module share 0.1: 90 text reads stay on node 1 (its copy), 10 go to node 0 (module text
    is not copied). Remote share 0.2: 40 kernel-object reads on node 1, 10 on node
    (1 + 1) % 2 = 0. Node 0's CPU (home classes swapped) reads its own copy for 90 and its
    objects on node 0 for 40; the moved 10 + 10 go to node 0 and node 1."""
    c = _counts()
    rc = ktr.ReplicaCosts(module_text_fraction=0.1, kobj_remote_fraction=0.2)
    m = resolved_mem(c, ktr.Scheme.KTR, ktr.UserPolicy.LOCAL, rc)
    assert m[1, 0].tolist() == pytest.approx([10.0, 90.0])
    assert m[1, 1].tolist() == pytest.approx([10.0, 40.0])
    assert m[0, 0].tolist() == pytest.approx([100.0, 0.0])   # 90 own copy + 10 module
    assert m[0, 1].tolist() == pytest.approx([40.0, 10.0])
    # without replication every text read is on node 0 already: the module rule is moot
    b = resolved_mem(c, ktr.Scheme.BASELINE, ktr.UserPolicy.LOCAL, rc)
    assert b[1, 0].tolist() == pytest.approx([100.0, 0.0])
    # no rule: the plain resolution
    assert resolved_mem(c, ktr.Scheme.KTR, ktr.UserPolicy.LOCAL)[1, 0].tolist() == [0.0, 100.0]


def test_replica_costs_are_checked():
    for bad in ({"module_text_fraction": 1.5}, {"kobj_remote_fraction": -0.1},
                {"cold_share": float("nan")}, {"llc_nodes": 0}):
        with pytest.raises(ConfigError):
            ktr.ReplicaCosts(**bad)


# ---- cold copies after a migration --------------------------------------------------------
def test_cold_replica_lines_hand_worked():
    """10^6 instructions, a migration per time slice with probability 0.05 over 50,000
    instructions (0.001 per 1000 instructions: 1 migration), half of them onto a cold copy
    of 1000 lines: 0.5 * 1000 = 500 lines per node. KTR reads them from the node's own
    memory; the baseline from node 0 (an LLC per node) or from the shared LLC (SNC)."""
    c = _counts()
    rc = ktr.ReplicaCosts(cold_share=0.5, migrations_per_kinstr=0.001)
    served, mem = ktr.cold_replica_lines(c, ktr.Scheme.KTR, rc)
    assert mem.tolist() == [[500.0, 0.0], [0.0, 500.0]]
    assert served[:, eng.SERVED_MEMORY].tolist() == [500.0, 500.0]
    served, mem = ktr.cold_replica_lines(c, ktr.Scheme.BASELINE, rc)
    assert mem.tolist() == [[500.0, 0.0], [500.0, 0.0]]
    snc = ktr.ReplicaCosts(cold_share=0.5, migrations_per_kinstr=0.001, llc_nodes=2)
    served, mem = ktr.cold_replica_lines(c, ktr.Scheme.BASELINE, snc)
    assert mem.sum() == 0 and served[:, eng.SERVED_LLC].tolist() == [500.0, 500.0]
    tc = time_counts(c, ktr.Scheme.KTR, ktr.UserPolicy.LOCAL, rc=rc)
    assert tc.served[1, eng.SOURCE_IFETCH, eng.SERVED_MEMORY] == 100 + 500
    assert tc.mem[1, eng.SOURCE_IFETCH].tolist() == [0.0, 600.0]


def test_cold_replicas_cost_replication_only_where_an_llc_is_shared():
    # equal latencies: with an LLC per node both sides re-read from memory (no change in
    # the gain's sign); with a shared LLC the baseline's single copy is warm
    c = _counts()
    lat = [[100.0, 100.0], [100.0, 100.0]]
    costs = ktr.HostCosts(background=0.0)
    pol = ktr.UserPolicy.LOCAL

    def gain(rc):
        return (ktr.system_time_ns(c, lat, ktr.Scheme.BASELINE, pol, costs, rc)
                / ktr.system_time_ns(c, lat, ktr.Scheme.KTR, pol, costs, rc) - 1.0)
    kw = dict(cold_share=1.0, migrations_per_kinstr=0.01)
    assert gain(ktr.ReplicaCosts(**kw, llc_nodes=2)) < gain(ktr.ReplicaCosts(**kw)) - 1e-4


# ---- top-level table updates copied to every node -----------------------------------------
def _naive_pgd(lat, copies, rate, cpus):
    """Plain-Python twin of :func:`pgd_sync_fraction`."""
    n = len(lat)
    per = sum(sum(lat[i][j] for j in range(1, copies)) for i in range(n)) / n
    return rate * per / (cpus * 1e9)


def test_pgd_sync_hand_worked_and_twin():
    """2 nodes of 32 cores, 100 ns local, 200 ns remote, 10 updates/s: the updater is on
    node 0 or 1 with equal probability and stores into node 1's table at 200 or 100 ns:
    150 ns per update, 10 * 150 / 64e9 = 2.34375e-8 of the machine."""
    topo = numa.from_measured("t", [[100.0, 200.0], [200.0, 100.0]], 32, "test")
    assert ktr.pgd_sync_fraction(topo, 2, 10.0) == pytest.approx(2.34375e-8)
    assert ktr.pgd_sync_fraction(topo, 1, 10.0) == 0.0
    t16 = numa.sockets(2, 8, 117.0, 1.55, 2.2, 4)
    for copies in (1, 2, 9, 16):
        assert ktr.pgd_sync_fraction(t16, copies, 7.0) == pytest.approx(
            _naive_pgd(t16.latency_ns, copies, 7.0, t16.cpus))


# ---- copies competing in a shared LLC -----------------------------------------------------
def test_replica_pa_twin():
    rng = np.random.default_rng(1)
    pa = rng.integers(0, 1 << 34, 500).astype(np.uint64)
    region = rng.integers(0, 7, 500).astype(np.uint8)
    cpu = rng.integers(0, 4, 500).astype(np.int32)
    span = ktr.ImagePlacement().node_span_bytes
    for copies in (1, 2, 4):
        got = ktr.replica_pa(pa, region, cpu, copies)
        want = [int(a) + (int(c) % copies) * span if r in (ktr.Region.KTEXT, ktr.Region.KRODATA)
                else int(a) for a, r, c in zip(pa, region, cpu)]
        assert got.tolist() == want
    # hand case: CPU 3 of a 2-copy group reads copy 1, 64 GiB above the boot copy
    one = ktr.replica_pa(np.array([4096], np.uint64), np.array([ktr.Region.KTEXT], np.uint8),
                         np.array([3], np.int32), 2)
    assert one.tolist() == [4096 + 64 * 2**30]


def test_copies_in_a_shared_llc_miss_more():
    # the same trace with one copy and with two copies of text and rodata in one small LLC:
    # the copies are distinct lines, so more of the replicated reads go to memory, and no
    # other line's count changes by more than the LLC contention explains
    w = ktr.WORKLOADS["database"]
    m = ktr.Machine(llc_bytes=1 << 20)
    run = ktr.RunConfig(accesses_per_cpu=6000, warmup_per_cpu=6000, seed=2)
    one = ktr.simulate_host(w, m, run)
    two = ktr.simulate_host(w, m, run, replicas_in_llc=2)
    text = one.classes.TEXT
    assert two.mem[:, 1, text].sum() > one.mem[:, 1, text].sum()
    assert two.instructions == one.instructions
    assert one.replicated_lines > 0
    with pytest.raises(ConfigError):
        ktr.simulate_host(w, m, run, replicas_in_llc=3)   # more copies than simulated CPUs


# ---- the gain on any latency matrix -------------------------------------------------------
def _p(**over):
    from kmm.mech.ktr import study
    return ktr.params_from({**study.DEFAULTS, **over})


def test_gain_on_a_matrix_equals_the_flat_ratio():
    c = _counts()
    p = _p()
    bp = ktr.UserPolicy.INTERLEAVE
    flat = ktr.gain(c, p, 2.0, base_policy=bp, new_policy=bp)
    lat = numa.generic(2, p["local_ns"], 2.0).latency_ns
    assert ktr.gain(c, p, latency_ns=lat, base_policy=bp, new_policy=bp) == pytest.approx(
        flat, rel=1e-12)
    # an asymmetric measured pair is accepted too
    ktr.gain(c, p, latency_ns=[[117.0, 200.0], [230.0, 120.0]], base_policy=bp, new_policy=bp)


@pytest.mark.parametrize("bad,msg", [
    ([[1.0, 2.0]], "square"),
    ([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [3.0, 3.0, 1.0]], "2 x 2"),
    ([[1.0, float("nan")], [2.0, 1.0]], "finite"),
    ([[1.0, float("inf")], [2.0, 1.0]], "finite"),
    ([[1.0, 0.0], [2.0, 1.0]], "> 0"),
    ([[1.0, -5.0], [2.0, 1.0]], "> 0"),
    ([[1.0, "x"], [2.0, 1.0]], "numbers"),
    ([[1.0, 2.0], [2.0]], "numbers"),
])
def test_gain_refuses_a_bad_matrix_in_one_line(bad, msg):
    c = _counts()
    bp = ktr.UserPolicy.INTERLEAVE
    with pytest.raises(ConfigError, match=msg) as e:
        ktr.gain(c, _p(), latency_ns=bad, base_policy=bp, new_policy=bp)
    assert "\n" not in str(e.value)


def test_topologies_are_the_stated_machines():
    p = _p()
    two = ktr.topology_of(p, "2 nodes", 2.0)
    assert np.asarray(two.latency_ns).tolist() == [[117.0, 234.0], [234.0, 117.0]]
    snc = ktr.topology_of(p, "2 SNC nodes, one LLC", 1.1)
    assert snc.latency_ns[0][1] == pytest.approx(128.7)
    big = np.asarray(ktr.topology_of(p, "16 nodes, 2 sockets", 2.2).latency_ns)
    assert big.shape == (16, 16)
    assert big[0, 7] == pytest.approx(117.0 * 1.55) and big[0, 8] == pytest.approx(117.0 * 2.2)
    # the socket sibling ratio never exceeds the cross-socket one
    assert np.asarray(ktr.topology_of(p, "16 nodes, 2 sockets", 1.2).latency_ns)[0, 7] == \
        pytest.approx(117.0 * 1.2)
    with pytest.raises(ConfigError):
        ktr.topology_of(p, "3 nodes", 2.0)
    from kmm.mech.ktr import study
    with pytest.raises(ConfigError, match="unknown topology"):
        study.check_params({**study.DEFAULTS, "topologies": ["ring"]})


def test_stage2_counterpart_takes_any_matrix():
    from kmm.mech.pkvm import study as ps
    p = ps.STUDY.params(dict(ps.DEFAULTS))
    c = _counts()
    runs = {("s1", p["workload"]): c, ("s2", p["workload"], p["pkvm_leaf"]): c}
    lat = numa.generic(2, p["local_ns"], 1.8).latency_ns
    assert ps.stage2_gain(p, runs, latency_ns=lat) == pytest.approx(
        ps.stage2_gain(p, runs, 1.8), rel=1e-12)
    assert ps.overhead_shares(p, latency_ns=lat) == pytest.approx(ps.overhead_shares(p, 1.8))
    assert ps.stage2_net_gain(p, runs, latency_ns=lat, exit_rate=1000.0) == pytest.approx(
        ps.stage2_net_gain(p, runs, 1.8, exit_rate=1000.0), rel=1e-12)
    with pytest.raises(ConfigError, match="finite"):
        ps.stage2_gain(p, runs, latency_ns=[[1.0, float("nan")], [1.0, 1.0]])


def test_k1_sweep_swings_each_placement_rule_alone():
    # the verdict's "decided by" needs one-at-a-time swings of every swept parameter
    from kmm.suite import registry
    p = _p(llc_sweep_bytes=[8388608], kernel_fraction_sweep=[0.35], k1_ratios=[3.0])
    runs = {("sweep", 8388608, 0.35): _counts()}
    sw = ktr.k1_sweep(p, runs)
    swings = registry.swing_points({"sweep": sw, "parameters": p,
                                    "centre": {"kernel_fraction": 0.35}})
    assert swings is not None
    for name, rng in (("module_text_fraction", p["module_text_range"]),
                      ("kobj_remote_fraction", p["kobj_remote_range"])):
        assert {pt["params"][name] for pt in swings[name]} == set(rng)


# ---- the writes that keep the copies equal, as memory traffic (issue 27) ----------------------
def test_write_lines_hand_worked():
    """2 nodes, 8-site patches at 1 static-key flip and 0.1 kprobe patch per second, 10
    top-level table updates per second. Each write moves 2 lines (the read for ownership and
    the writeback). Patching from node 0 writes each site into every copy: 2 * 8 * 1.1 = 17.6
    lines/s between node 0 and each copy's node. An update is made on node 0 or node 1 with
    equal probability and stores into node 1's table: 2 * 10 / 2 = 10 lines/s from each."""
    from kmm.mech.ktr.model import write_lines_per_s
    topo = numa.from_measured("t", [[100.0, 200.0], [200.0, 100.0]], 32, "test")
    rates = {"static_key": 1.0, "kprobe": 0.1}
    cost = ktr.PatchCost(sites=8)
    got = write_lines_per_s(topo, 2, rates, cost, pgd_updates_per_s=10.0)
    assert got == pytest.approx(np.array([[17.6, 27.6], [0.0, 10.0]]))
    # one copy (no replication): the patch writes the one copy, no table is synced
    one = write_lines_per_s(topo, 1, rates, cost, pgd_updates_per_s=10.0)
    assert one == pytest.approx(np.array([[17.6, 0.0], [0.0, 0.0]]))
    # 4 nodes, 3 copies: the fourth node holds none
    t4 = numa.generic(4, 100.0, 2.0, cpus_per_node=8)
    four = write_lines_per_s(t4, 3, {"ftrace": 2.0}, ktr.PatchCost(sites=1), 4.0)
    assert four == pytest.approx(np.array([[4.0, 6.0, 6.0, 0.0], [0.0, 2.0, 2.0, 0.0],
                                           [0.0, 2.0, 2.0, 0.0], [0.0, 2.0, 2.0, 0.0]]))
    with pytest.raises(ConfigError, match="unknown patch path"):
        write_lines_per_s(topo, 2, {"poke": 1.0}, cost)
    with pytest.raises(ConfigError, match="copies"):
        write_lines_per_s(topo, 3, rates, cost)


def test_write_traffic_reaches_the_time_model(monkeypatch):
    """The gain charges the write traffic as ``extra_lines`` over the run's wall time: at
    1e8 lines/s from node 1 into node 0 (a rate no patching reaches, to make it visible)
    node 1's memory carries 6.4 GB/s more: its utilisation rises by 6.4 / peak GB/s, and
    the run is slower. At the published rates the traffic moves the gain, by less than
    1e-9."""
    from kmm.mech.host.model import solve_host
    from kmm.mech.ktr import study
    c = _counts(instructions=1_000_000_000, lines=0)
    c.mem[0, 1, c.classes.TEXT] = 10_000_000
    c.served[0, 3] = 10_000_000
    p = _p()
    costs, rc = study.host_costs(p), ktr.ReplicaCosts()
    lat = numa.generic(2, p["local_ns"], 2.0).latency_ns
    bp = ktr.UserPolicy.INTERLEAVE
    args = (c, lat, ktr.Scheme.KTR, bp, costs, rc)
    lines = np.array([[0.0, 1e8], [0.0, 0.0]])
    none = study.run_time_ns(*args, np.zeros((2, 2)))
    assert none == ktr.system_time_ns(*args)
    r0 = solve_host(*args)
    extra = lines * r0.wall_ns * 1e-9
    with_lines = study.run_time_ns(*args, lines)
    # the wall time is solved to WALL_RTOL, so the lines it spreads are within that of these
    # (at this rate they slow the run by some per cent: the time within 1e-4)
    assert with_lines == pytest.approx(ktr.system_time_ns(*args, extra_lines=extra), rel=1e-4)
    assert with_lines > none
    r1 = solve_host(*args, extra_lines=extra)
    assert r1.bound == r0.bound == "latency"
    ms = eng.memory_system(np.asarray(lat), background=costs.background)
    reads = (r0.node_util[1] - costs.background) * r0.wall_ns / r1.wall_ns
    assert r1.node_util[1] - costs.background == pytest.approx(
        reads + 6.4 * r0.wall_ns / r1.wall_ns / ms.peak_gbps[1], rel=1e-9)
    # the published rates: some tens of lines per second against the run's millions
    g = ktr.gain(c, p, 2.0, base_policy=bp, new_policy=bp)
    monkeypatch.setattr(study, "write_lines_per_s", lambda topo, *a, **k: np.zeros(
        (topo.nodes, topo.nodes)))
    g0 = ktr.gain(c, p, 2.0, base_policy=bp, new_policy=bp)
    assert g != g0 and abs(g - g0) < 1e-9
