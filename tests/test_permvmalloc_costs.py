"""Flush costs of the permission-vmalloc study: the INVLPGB method and the cost of a full
flush of global entries (issue 32)."""
from kmm.mech import permvmalloc as pv
from kmm.mech.permvmalloc.study import DEFAULTS, invalidation_costs


def test_every_full_flush_is_charged_as_a_global_flush():
    """x86 ``flush_tlb_all`` (and ``flush_tlb_kernel_range`` past the ceiling) drops global
    kernel entries (arch/x86/mm/tlb.c ``do_flush_tlb_all`` -> ``__flush_tlb_all``); the
    CR3-write figure of ``InvalidationCosts.full_flush_ns`` keeps them, so the study charges
    ``global_flush_ns`` for a full flush instead."""
    p = {**DEFAULTS, "global_flush_ns": 777.0}
    c = invalidation_costs(p)
    assert c.full_flush_ns == 777.0
    one = pv.flush_unit_costs(1, "x86", c, [(0, 0), (1, 64), (1, 4)])
    assert one[(0, 0)] == (777, 0) and one[(1, 64)] == (777, 0)   # past the 33-page ceiling
    assert one[(1, 4)] == (4 * 100, 0)                               # INVLPG per page


def test_invlpgb_broadcasts_without_interrupting_other_cpus():
    """The INVLPGB method (AMD broadcast TLB invalidation series, Rik van Riel, v6.15:
    arch/x86/mm/tlb.c ``flush_tlb_kernel_range`` and ``flush_tlb_all`` issue INVLPGB and
    TLBSYNC instead of IPIs when the CPU has it): no IPIs, so no time on other CPUs and a
    cost that does not grow with the CPU count, unlike IPI shootdowns."""
    c = invalidation_costs(DEFAULTS)
    shapes = [(0, 0), (1, 4), (2, 2)]
    small = pv.flush_unit_costs(2, "invlpgb", c, shapes)
    big = pv.flush_unit_costs(512, "invlpgb", c, shapes)
    assert small == big and all(t == 0 for _, t in big.values())
    assert big[(1, 4)][0] == 100 + 500          # one INVLPGB (8 pages each) + TLBSYNC
    ipi = pv.flush_unit_costs(512, "x86", c, shapes)
    assert ipi[(1, 4)][0] > big[(1, 4)][0] and ipi[(1, 4)][1] > 0
    assert pv.FLUSH_METHODS == ("x86", "invlpgb", "arm64")


def _alone(method, cpus, costs, shape):
    """One flush of ``shape`` on a fresh invalidator: (initiator ns, interrupted CPUs' ns)."""
    from kmm.engine import InvalidationConfig, InvalidationCosts, Invalidator, Method

    m = {"x86": Method.X86_IPI, "invlpgb": Method.X86_INVLPGB,
         "arm64": Method.ARM64_TLBI}[method]
    iv = Invalidator(InvalidationConfig(method=m, cpus=cpus,
                                        costs=costs or InvalidationCosts()))
    kind, pages = shape
    if kind == 0:
        iv.flush(0, 0, 0, kernel=True)
    elif kind == 1:
        iv.flush(0, pv.PAGE_OFFSET, pv.PAGE_OFFSET + pages * 4096, kernel=True)
    else:
        iv.flush(0, 0, pages * 4096, local=True)
    return (iv.counters.initiator_ns, iv.counters.target_ns)


def test_unit_costs_of_many_shapes_are_those_of_each_shape_alone():
    """flush_unit_costs replays every shape on one invalidator, kept per machine and costs,
    and reads what each adds to its counters: the same as a fresh invalidator per shape (no
    flush is deferred), in any order and on any earlier call's invalidator."""
    c = invalidation_costs(DEFAULTS)
    shapes = [(0, 0), (1, 4), (1, 40), (2, 1), (2, 3)]
    for method in pv.FLUSH_METHODS:
        want = {s: _alone(method, 64, c, s) for s in shapes}
        assert pv.flush_unit_costs(64, method, c, shapes) == want
        assert pv.flush_unit_costs(64, method, c, shapes[::-1]) == want
        assert {s: pv.flush_unit_costs(64, method, c, [s])[s] for s in shapes} == want
    # other costs are another table, not the kept one's
    dear = invalidation_costs({**DEFAULTS, "global_flush_ns": 5000.0})
    assert pv.flush_unit_costs(1, "x86", dear, [(0, 0)])[(0, 0)] == (5000, 0)


def test_op_costs_reprice_one_flush_table_per_result():
    """op_costs works out a result's distinct flush shapes once and prices them per CPU
    count, method and costs: the same sums as pricing every flush of the log on its own."""
    import polars as pl

    from kmm.engine import InvalidationCosts

    fresh = pv.MachineConfig(ram_bytes=1 << 30, cpus=64, bg_used_fraction=0.0,
                             bg_ops_per_event=0)
    sim = pv.PermVmalloc(fresh, pv.PolicyConfig(pv.Policy.LEGACY))
    progs = [sim.load_bpf(300 + 50 * i, f"p{i}") for i in range(3)]
    sim.free_bpf(progs[1])
    res = pv.RunResult(pv.PolicyConfig(pv.Policy.LEGACY), pl.DataFrame(sim.ops), None,
                       sim.flush_log, [], sim.counts, [], {})
    rows = pv._flush_shapes(res)
    for cpus, method, costs in ((8, "x86", None), (64, "arm64", None),
                                (8, "x86", InvalidationCosts(ipi_base_ns=9000.0))):
        got = pv.op_costs(res, cpus, method, costs)
        for idx in set(int(r[0]) for r in rows):
            want = sum(_alone(method, cpus, costs, (int(k), int(p)))[0]
                       for i, k, p in rows if int(i) == idx)
            assert int(got.filter(pl.col("index") == idx)["initiator_ns"][0]) == want
    assert "_flush_table" in vars(res)   # worked out once, kept on the result
