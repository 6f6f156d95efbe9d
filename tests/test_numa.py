"""NUMA topologies, presets and placement kernels."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kmm import numa
from kmm.errors import ConfigError
from kmm.numa import Placement


def naive_nid(policy, page, cpu, owner, cpu_nid, nodes):
    """Plain-Python twin of :func:`kmm.numa.placement_nid`."""
    if policy == Placement.NODE0:
        return 0
    if policy == Placement.LOCAL:
        return int(cpu_nid[owner])
    if policy == Placement.INTERLEAVE:
        return page % nodes
    return int(cpu_nid[cpu])


def test_kunpeng_matrix_row0_is_measured_and_symmetric():
    t = numa.kunpeng920()
    lat = np.asarray(t.latency_ns)
    assert t.nodes == 4 and t.cpus == 96
    assert lat[:, 0].tolist() == [117.0, 135.0, 198.0, 219.0]
    assert np.array_equal(lat, lat.T)
    assert lat[1, 3] == 198.0 and lat[2, 3] == 135.0
    assert t.max_ratio == pytest.approx(219 / 117)


def test_presets_shapes_and_sources():
    for name in numa.PRESETS:
        t = numa.preset(name)
        assert t.source and len(t.latency_ns) == t.nodes
    assert numa.graviton2().local_ns == 81.0
    assert numa.intel8269cy().max_ratio == pytest.approx(93 / 70)
    p = numa.phytium_ft2500("low")
    assert p.latency_ns[0][1] == 426.0 and p.latency_ns[0][0] == 150.0
    h = numa.hygon7280("high")
    assert h.nodes == 8 and h.latency_ns[0][3] == 169.0 and h.latency_ns[0][4] == 292.0
    a = numa.ampereone(nodes=2, ratio=2.0)
    assert a.cpus == 192 and a.latency_ns[0][1] == 162.0 and "ratio" in a.assumed
    with pytest.raises(ConfigError):
        numa.ampereone(nodes=5)
    with pytest.raises(ConfigError, match="unknown machine"):
        numa.preset("m1")
    with pytest.raises(ConfigError, match="bound"):
        numa.hygon7280("max")


def test_from_slit_and_generic():
    t = numa.from_slit("x", [[10, 20], [20, 10]], 100.0, 2)
    assert t.latency_ns == ((100.0, 200.0), (200.0, 100.0))
    with pytest.raises(ConfigError, match="diagonal"):
        numa.from_slit("x", [[11, 20], [20, 10]], 100.0, 2)
    g = numa.generic(4, 90.0, 2.5, cpus_per_node=3)
    assert g.cpus == 12 and g.latency_ns[2][1] == 225.0 and g.latency_ns[3][3] == 90.0
    with pytest.raises(ConfigError, match="1, 2, 4 or 8"):
        numa.generic(3, 90.0, 2.0)
    with pytest.raises(ConfigError, match="ratio"):
        numa.generic(2, 90.0, 0.5)
    with pytest.raises(ConfigError, match="latency_ns"):
        numa.Topology("bad", (1, 1), ((1.0,),))


def test_placement_hand_worked():
    # 2 nodes x 2 CPUs: cpus 0,1 on node 0; 2,3 on node 1
    t = numa.generic(2, 100.0, 2.0, cpus_per_node=2)
    pages = [0, 1, 2, 3]
    cpus = [3, 3, 0, 2]
    owner = [0, 2, 2, 1]
    assert numa.nodes_for(t, Placement.NODE0, pages, cpus, owner).tolist() == [0, 0, 0, 0]
    assert numa.nodes_for(t, Placement.LOCAL, pages, cpus, owner).tolist() == [0, 1, 1, 0]
    assert numa.nodes_for(t, Placement.INTERLEAVE, pages, cpus, owner).tolist() == [0, 1, 0, 1]
    assert numa.nodes_for(t, Placement.REPLICATED, pages, cpus, owner).tolist() == [1, 1, 0, 1]
    lat = numa.access_latency_ns(t, Placement.LOCAL, pages, cpus, owner)
    assert lat.tolist() == [200.0, 100.0, 200.0, 200.0]
    assert numa.access_latency_ns(t, Placement.REPLICATED, pages, cpus).tolist() == [100.0] * 4
    assert numa.copies(Placement.REPLICATED, 4) == 4 and numa.copies(Placement.LOCAL, 4) == 1
    with pytest.raises(ConfigError, match="CPU ids"):
        numa.nodes_for(t, Placement.LOCAL, [0], [4])


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["kunpeng920", "hygon7280", "intel8269cy"]), st.sampled_from(list(Placement)),
       st.integers(0, 2**32))
def test_placement_matches_twin(machine, policy, seed):
    t = numa.preset(machine)
    rng = np.random.default_rng(seed)
    pages = rng.integers(0, 1 << 20, 50)
    cpus = rng.integers(0, t.cpus, 50)
    owner = rng.integers(0, t.cpus, 50)
    got = numa.nodes_for(t, policy, pages, cpus, owner)
    arr = t.to_arrays()
    want = [naive_nid(policy, p, c, o, arr.cpu_nid, t.nodes) for p, c, o in zip(pages, cpus, owner)]
    assert got.tolist() == want
    lat = numa.access_latency_ns(t, policy, pages, cpus, owner)
    assert lat.tolist() == [t.latency_ns[arr.cpu_nid[c]][n] for c, n in zip(cpus, want)]


# ---- any latency matrix, checked as untrusted input; multi-socket and SNC machines ------
@pytest.mark.parametrize("bad,msg", [
    ([1.0, 2.0], "square"), ([[1.0, 2.0]], "square"), ([], "square"),
    ([[1.0, float("nan")], [1.0, 1.0]], r"\[0\]\[1\] must be finite"),
    ([[1.0, 1.0], [float("-inf"), 1.0]], r"\[1\]\[0\] must be finite"),
    ([[0.0, 1.0], [1.0, 1.0]], r"\[0\]\[0\] must be > 0"),
    ([[1.0, 1.0], [1.0, -1.0]], r"\[1\]\[1\] must be > 0"),
    ([["a", 1.0], [1.0, 1.0]], "numbers"), ([[1.0, 2.0], [1.0]], "numbers"), (None, "square"),
])
def test_latency_matrix_refused_in_one_line(bad, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        numa.check_latency_matrix(bad)
    assert "\n" not in str(e.value) and "latency_ns" in str(e.value)


def test_latency_matrix_accepted_and_sized():
    lat = numa.check_latency_matrix([[100, 130], [125, 98]])
    assert lat.dtype == np.float64 and lat.tolist() == [[100.0, 130.0], [125.0, 98.0]]
    with pytest.raises(ConfigError, match="must be 3 x 3"):
        numa.check_latency_matrix(lat, nodes=3)


def test_sockets_hand_worked():
    # 2 sockets x 2 nodes, 100 ns local, 1.2 to the sibling node of the socket, 2.5 across
    t = numa.sockets(2, 2, 100.0, 1.2, 2.5, cpus_per_node=3)
    assert t.nodes == 4 and t.cpus == 12
    assert np.asarray(t.latency_ns).tolist() == [[100.0, 120.0, 250.0, 250.0],
                                                 [120.0, 100.0, 250.0, 250.0],
                                                 [250.0, 250.0, 100.0, 120.0],
                                                 [250.0, 250.0, 120.0, 100.0]]
    assert numa.sockets(2, 8, 117.0, 1.55, 2.2).nodes == 16
    with pytest.raises(ConfigError):
        numa.sockets(2, 2, 100.0, 0.9, 2.0)
    assert numa.llc_groups(4, 2).tolist() == [0, 0, 1, 1]
    with pytest.raises(ConfigError):
        numa.llc_groups(4, 3)
