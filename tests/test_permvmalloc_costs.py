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


def test_unit_costs_of_many_shapes_are_those_of_each_shape_alone():
    """flush_unit_costs replays every shape on one invalidator and reads what each adds to
    its counters: the same as a fresh invalidator per shape (no flush is deferred)."""
    c = invalidation_costs(DEFAULTS)
    shapes = [(0, 0), (1, 4), (1, 40), (2, 1), (2, 3)]
    for method in pv.FLUSH_METHODS:
        together = pv.flush_unit_costs(64, method, c, shapes)
        assert together == {s: pv.flush_unit_costs(64, method, c, [s])[s] for s in shapes}
