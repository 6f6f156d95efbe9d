"""Invalidation felt by every CPU in the permission-vmalloc cost chart (issue 27): every flush
of everything this model issues (``flush_tlb_all`` on a direct-map split or collapse, a kernel
range above x86's ``tlb_single_page_flush_ceiling``, execmem's all-CPU flushes) empties every
CPU's TLB, global (kernel) entries included, and each CPU walks again what it held."""
import numpy as np
import polars as pl
import pytest

from kmm.errors import ConfigError
from kmm.mech import permvmalloc as pv
from kmm.mech.permvmalloc.study import DEFAULTS, rewalk_config

#: 100 translations of each CPU's own work; a re-walk reads 3 descriptors from the LLC (30 ns
#: each, ``kmm.timing.CoreModel``) and 1 from memory at 80 ns (no background load: the idle
#: latency): 170 ns
RW = pv.Rewalk(working_set=100, memory_refs=1.0, mem_ns=80.0, tlb_entries=1536, background=0.0)


def test_rewalks_hand_worked():
    """On 4 CPUs, a ``flush_tlb_all`` (kind 0) and a 40-page kernel range (above the 33-page
    ceiling) cost the initiator 100 re-walks of 170 ns = 17000 ns and the 3 others 51000 ns;
    a 33-page range (INVLPG per page, only pages no CPU has in use) and a local flush of the
    poking mm cost none."""
    assert RW.walk_ns() == pytest.approx(3 * 30.0 + 80.0)
    w = pv.flush_rewalks(4, "x86", RW, [(0, 0), (1, 40), (1, 33), (2, 1)])
    assert w[(0, 0)] == pytest.approx((17000.0, 51000.0))
    assert w[(1, 40)] == pytest.approx((17000.0, 51000.0))
    assert w[(1, 33)] == (0.0, 0.0) and w[(2, 1)] == (0.0, 0.0)
    # INVLPGB keeps x86's ceiling; arm64 flushes everything only from MAX_DVM_OPS (512) pages
    assert pv.flush_rewalks(4, "invlpgb", RW, [(1, 40), (1, 33)]) == \
        {(1, 40): w[(1, 40)], (1, 33): (0.0, 0.0)}
    arm = pv.flush_rewalks(4, "arm64", RW, [(1, 40), (1, 512), (0, 0)])
    assert arm[(1, 40)] == (0.0, 0.0) and arm[(1, 512)] == arm[(0, 0)] == w[(0, 0)]


def test_a_cpu_rewalks_at_most_what_its_tlb_held():
    """A working set larger than the STLB: each CPU held only ``tlb_entries`` of it, global
    (kernel) entries among them, and a flush of everything drops them all."""
    big = pv.Rewalk(working_set=5000, memory_refs=2.0, mem_ns=100.0, tlb_entries=1536,
                    background=0.0)
    (ini, others), = pv.flush_rewalks(2, "x86", big, [(0, 0)]).values()
    assert ini == pytest.approx(1536 * (2 * 30.0 + 2 * 100.0)) and others == pytest.approx(ini)


def test_rewalk_memory_reads_are_priced_at_the_loaded_latency():
    """As asi's: the descriptor read from memory pays the calibrated curve's queueing delay at
    the ``background`` load, 80 x (1 + a*k*0.5 / (1 - k*0.5)) at 0.5 with the published
    curve's (a, k); :class:`kmm.timing.Rewalk` prices it, asi's re-walk the same."""
    from kmm import timing
    from kmm.mech import asi

    c = timing.published_curve()
    x = c.k * 0.5
    loaded = 80.0 * (1.0 + c.a * x / (1.0 - x))
    rw = pv.Rewalk(working_set=100, memory_refs=1.0, mem_ns=80.0, background=0.5)
    assert rw.loaded_ns() == pytest.approx(loaded)
    assert rw.walk_ns() == pytest.approx(90.0 + loaded) and rw.walk_ns() > RW.walk_ns()
    assert rw.timing() == timing.Rewalk(working_set=100, refs=4, memory_refs=1.0,
                                        mem_idle_ns=80.0, background=0.5)
    a = asi.Rewalk(working_set=100, memory_refs=1.0, mem_idle_ns=80.0, background=0.5)
    assert rw.walk_ns() == a.walk_ns(4)
    (ini, others), = pv.flush_rewalks(4, "x86", rw, [(0, 0)]).values()
    assert ini == pytest.approx(100 * (90.0 + loaded)) and others == pytest.approx(3 * ini)


def test_rewalk_inputs_are_checked():
    with pytest.raises(ConfigError, match="rewalk_working_set"):
        pv.Rewalk(working_set=-1)
    with pytest.raises(ConfigError, match="rewalk_memory_refs"):
        pv.Rewalk(memory_refs=9.0)
    with pytest.raises(ConfigError, match="background"):
        pv.Rewalk(background=1.0)
    with pytest.raises(ConfigError, match="method"):
        pv.flush_rewalks(4, "sparc", RW, [(0, 0)])


def test_rewalk_config_reads_the_study_parameters():
    r = rewalk_config({**DEFAULTS, "rewalk_working_set": 64, "stlb_entries": 1024,
                       "background": 0.5})
    assert (r.working_set, r.tlb_entries, r.memory_refs, r.mem_ns, r.background) == \
        (64, 1024, 1.0, 81.96, 0.5)


def _legacy_bpf_load():
    """One legacy BPF load on a fresh machine: its flush log and operations."""
    sim = pv.PermVmalloc(pv.MachineConfig(ram_bytes=1 << 30, cpus=8, bg_used_fraction=0.0,
                                          bg_ops_per_event=0, seed=0), pv.PolicyConfig(pv.Policy.LEGACY))
    sim.load_bpf(300, "p0")
    sim.load_bpf(300, "p1")
    return pv.RunResult(pv.PolicyConfig(pv.Policy.LEGACY), pl.DataFrame(sim.ops), None,
                        sim.flush_log, [], sim.counts, [], {})


def test_op_costs_charge_every_cpu_for_each_flush_of_everything():
    """Per operation, the re-walk time is the number of its flushes of everything (kind 0, or
    a kernel range above 33 pages) times every CPU's re-walks; the cost chart adds it to the
    CPU time, and it grows in proportion to the CPU count."""
    res = _legacy_bpf_load()
    shapes = pv._flush_shapes(res)
    full = (shapes[:, 1] == 0) | ((shapes[:, 1] == 1) & (shapes[:, 2] > pv.FLUSH_CEILING_PAGES))
    assert full.any()
    c = pv.op_costs(res, 8, "x86", rewalk=RW).sort("index")
    per_op = np.bincount(shapes[full, 0], minlength=int(shapes[:, 0].max()) + 1)
    for idx, ns in zip(c["index"], c["rewalk_ns"]):
        assert ns == pytest.approx(per_op[idx] * 8 * 100 * 170.0)
    cv = pv.cost_vs_cpus([res], [2, 8], methods=("x86",), rewalk=RW, ops=(pv.OpKind.BPF_LOAD,))
    assert cv["rewalk_ns"][1] == pytest.approx(4 * cv["rewalk_ns"][0]) and cv["rewalk_ns"][0] > 0
    plain = pv.cost_vs_cpus([res], [2, 8], methods=("x86",), rewalk=pv.Rewalk(working_set=0),
                            ops=(pv.OpKind.BPF_LOAD,))
    assert (cv["cpu_ns"] - plain["cpu_ns"] - cv["rewalk_ns"]).abs().max() < 1e-6
