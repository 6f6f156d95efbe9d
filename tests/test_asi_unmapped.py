"""ASI policy 5: the 2026 ``__GFP_UNMAPPED`` design (freetypes, whole-block direct-map
conversions, zeroing through the mermap).

Sources: "[PATCH RFC 00/19] mm: Add __GFP_UNMAPPED" (Brendan Jackman, linux-mm, 2026-02-25,
https://lkml.iu.edu/hypermail/linux/kernel/2602.3/03398.html) and its patches 10/19 ("mm: add
definitions for allocating unmapped pages") and 17/19 ("mm/page_alloc: implement
__GFP_UNMAPPED allocations", ``__rmqueue_direct_map``, quoted in "Re: [PATCH RFC 17/19]",
2026-02-27, https://lkml.iu.edu/hypermail/linux/kernel/2602.3/07061.html); "[PATCH v2 00/22]
mm: Add __GFP_UNMAPPED" (2026-03-20, <20260320-page_alloc-unmapped-v2-0-28bf1bd54f41@google.com>)
and its patch 20/22 ("mm/page_alloc: implement __GFP_UNMAPPED|__GFP_ZERO allocations", quoted
in Vlastimil Babka's reply of 2026-05-13, https://lkml.iu.edu/hypermail/linux/kernel/2605.1/11242.html);
the series' tree (github.com/bjackman/linux): mm/mermap.c ``mermap_alloc``,
include/linux/mermap.h (``arch_mermap_flush_tlb``), arch/x86/include/asm/mermap.h,
mm/tests/mermap_kunit.c ``test_tlb_flushed`` and mm/tests/page_alloc_kunit.c
``test_alloc_map_unmap``."""
import numpy as np
import pytest

from kmm import engine as eng
from kmm.errors import ConfigError
from kmm.mech import asi
from kmm.mech.asi import Arch, AsiConfig, Policy
from kmm.mech.asi.model import _W_HANDLER, _W_LOCAL
from test_asi import _small, _wl

U, M = 0, 1


def _state(cfg, wl):
    bst, tst, ist, ast = asi.build(cfg, wl)
    asi.run_stream(bst, tst, ist, ast, wl)
    return bst, ast


def _unmapped(**kw):
    return _small(Policy.UNMAPPED, **kw)


def test_boot_every_page_mapped_movable_freetype():
    # page_alloc_kunit.c test_alloc_map_unmap: "Assuming the memory starts out mapped"
    bst, ast = _state(_unmapped(), _wl([]))
    assert (bst.flags & asi.F_MAPPED).all() and (bst.pb_mt == 4).all()
    # as posted (movable memory has no unmapped freetype): movable memory boots unmapped,
    # as policy 2 keeps it
    bst, _ = _state(_unmapped(unmapped_movable=False), _wl([]))
    assert not (bst.flags & asi.F_MAPPED).any() and (bst.pb_mt == 1).all()


def test_freetypes_fall_back_only_within_their_flags():
    # patch 10/19: a freetype is a migratetype plus flags; cross-flag moves are whole blocks
    # through __rmqueue_direct_map only, never a __rmqueue fallback
    t = asi.unmapped_migrate_table(True)
    for code, fb in enumerate(t.fallbacks[:6]):
        assert all((f >= 3) == (code >= 3) for f in fb), (code, fb)
    posted = asi.unmapped_migrate_table(False)
    assert posted.fallbacks[3] == () and posted.fallbacks[4] == () == posted.fallbacks[5]
    assert posted.fallbacks[:3] == t.fallbacks[:3]


def test_a_free_pageblock_is_unmapped_whole_with_one_shootdown():
    # patch 17/19 __rmqueue_direct_map: "Need to [un]map a whole pageblock", taken from the
    # other freetype's lists (alloc_order = max(request_order, pageblock_order)), the
    # shootdown once IRQs are on; the remainder joins the unmapped freetype's lists
    ops = [("a", 0, 0, 1, M), ("a", 1, 0, 1, M)]
    r = asi.simulate(_unmapped(), _wl(ops))
    c = r.counts
    assert (c.asi_unmap_allocs, c.to_sensitive, c.pages_unmapped, c.flushes) == (1, 1, 4, 1)
    assert r.inval.shootdowns == 1 and c.violations == 0
    bst, _ = _state(_unmapped(), _wl(ops))
    assert bst.pb_mt[0] == 1 and not (bst.flags[:4] & asi.F_MAPPED).any()
    assert (bst.flags[4:] & asi.F_MAPPED).all()  # the rest of the pool is untouched
    # the second allocation came from the unmapped pool: no more unmapping, no flush
    assert r.lat_ns.tolist()[1] == 150


def test_freed_unmapped_pages_stay_unmapped_and_free_needs_no_shootdown():
    # cover letter: "pools of already-unmapped pages"; freeing returns a page to its
    # pageblock's freetype, unmapped, with no flush; a later unmapped allocation reuses it
    # without unmapping or zeroing
    ops = [("a", 0, 0, 1, M), ("f", 0), ("a", 1, 0, 1, M), ("a", 2, 0, 0, M), ("f", 2),
           ("f", 1)]
    r = asi.simulate(_unmapped(), _wl(ops))
    c = r.counts
    assert (c.flushes, c.pages_unmapped, c.pages_zeroed, c.violations) == (1, 4, 0, 0)
    assert c.free_ns == 3 * 100  # each free is the base cost: no unmap, no shootdown
    bst, _ = _state(_unmapped(), _wl(ops[:2]))
    assert bst.pb_mt[0] == 1 and not bst.flags[0] & asi.F_MAPPED
    assert bst.flags[0] & asi.F_DIRTY  # still holds the sensitive data, unmapped


def test_a_mapped_allocation_maps_a_whole_free_unmapped_block_zeroed_through_the_mermap():
    # __rmqueue_direct_map is symmetric (want_mapped): with no mapped memory left, a whole
    # free unmapped block is mapped (a present PTE replaces a non-present one: no flush);
    # its formerly sensitive pages are zeroed first, through the mermap, since they are
    # unmapped (patch 20/22: "they can't be zeroed via the direct map")
    ops = [("a", 0, 3, 1, M), ("a", 1, 3, 1, M), ("f", 0), ("f", 1), ("a", 2, 0, 0, U)]
    r = asi.simulate(_unmapped(), _wl(ops))
    c = r.counts
    assert (c.asi_unmap_allocs, c.flushes) == (2, 2)  # two 8-page blocks, a shootdown each
    assert (c.direct_map_maps, c.to_nonsensitive, c.flushes) == (1, 1, 2)
    assert (c.pages_zeroed, c.zeroed_on_conversion, c.mermap_pages) == (4, 4, 4)
    assert c.mermap_flushes == 0 and c.violations == 0
    # the conversion: 4 x (zero 400 + mermap PTE set and clear 20 + 20) + 4 maps of 20
    assert r.lat_ns.tolist()[2] == 150 + 4 * (400 + 40) + 4 * 20


def test_zeroing_through_the_mermap_costs_a_local_flush_per_region_reuse_on_x86():
    # mm/mermap.c mermap_alloc: the region is handed out in order and flushed once when the
    # next mapping no longer fits (test_tlb_flushed: exactly one flush per reuse); the last
    # page is mermap_get_reserved's; arch/x86 arch_mermap_flush_tlb is flush_tlb_local
    # ("No shootdown allowed, IRQs may be off"). init_on_alloc zeroes every sensitive
    # (unmapped) page through it.
    ops = [("a", i, 0, 1, M) for i in range(5)]
    cfg = _unmapped(init_on_alloc=True, mermap_region_pages=3)
    r = asi.simulate(cfg, _wl(ops))
    c = r.counts
    # 2 usable pages: pages 1-2 fit, 3 flushes and fits, 4 fits, 5 flushes
    assert (c.mermap_pages, c.mermap_flushes) == (5, 2)
    assert c.mermap_ns == 5 * (20 + 20) + 2 * 37  # PTE set + clear each, CR3 write per flush
    # only the two pageblocks' unmaps (5 pages need a second 4-page block) are broadcast
    assert r.inval.shootdowns == 2 == c.flushes == c.asi_unmap_allocs
    assert r.cpu_win[:, 0, _W_LOCAL].sum() == 2 and r.cpu_win[:, 1, _W_LOCAL].sum() == 0
    assert r.cpu_win[:, 1, _W_HANDLER].sum() == r.inval.target_ns  # the unmaps' IPIs only
    m = r.metrics()
    walk = cfg.rewalk.walk_ns(cfg.geometry.levels)
    held = min(cfg.rewalk.working_set, cfg.tlb_entries)
    assert m["mermap_rewalk_ns"] == pytest.approx(2 * held * walk)
    assert m["interrupt_ns"] == pytest.approx(float(r.interruption_ns().sum()))
    # not an interruption: the re-walks after the local flushes are the CPU's own work,
    # counted in the total ASI work
    intr_without = r.interruption_ns().sum()
    assert m["mermap_rewalk_ns"] > 0 and intr_without == pytest.approx(
        r.cpu_win[:, :, _W_HANDLER].sum() + float(r.rewalks().sum()) * walk)


def test_nonsensitive_pages_are_zeroed_through_the_direct_map():
    # a mapped allocation's pages are in the direct map: init_on_alloc zeroes them there
    r = asi.simulate(_unmapped(init_on_alloc=True), _wl([("a", 0, 1, 0, U)]))
    assert r.counts.mermap_pages == 0 and r.counts.init_zeroed == 2


def test_on_arm64_the_mermap_flush_is_a_broadcast():
    # include/linux/mermap.h: "On arm64, this will need to be a broadcast TLB flush" (the
    # series implements x86 only): priced as a TLBI broadcast of the CPU's region
    ops = [("a", i, 0, 1, M) for i in range(5)]
    cfg = _unmapped(init_on_alloc=True, mermap_region_pages=3, arch=Arch.ARM64,
                    method=eng.Method.ARM64_TLBI)
    r = asi.simulate(cfg, _wl(ops))
    c = r.counts
    assert (c.mermap_pages, c.mermap_flushes) == (5, 2)
    # the two pageblocks' unmaps and the two mermap flushes
    assert r.inval.shootdowns == 4 == c.flushes and c.asi_unmap_allocs == 2
    assert r.cpu_win[:, :, _W_LOCAL].sum() == 0 and c.violations == 0


def test_unmovable_only_as_posted_maps_whole_blocks_for_nonsensitive_memory():
    # unmapped_movable false: only MIGRATE_UNMOVABLE has a mapped freetype; the pool boots
    # unmapped (sensitive movable memory kept as policy 2 keeps it), and the first
    # nonsensitive allocation maps a whole clean free block: nothing to zero, no flush
    r = asi.simulate(_unmapped(unmapped_movable=False),
                     _wl([("a", 0, 0, 0, U), ("a", 1, 0, 1, M)]))
    c = r.counts
    assert (c.direct_map_maps, c.pages_mapped, c.pages_zeroed, c.mermap_pages) == (1, 4, 0, 0)
    assert (c.flushes, c.asi_unmap_allocs, c.violations) == (0, 0, 0)


@pytest.mark.parametrize("arch", [Arch.X86, Arch.ARM64])
@pytest.mark.parametrize("movable", [True, False])
def test_invariant_holds_over_a_random_stream(arch, movable):
    method = eng.Method.X86_IPI if arch == Arch.X86 else eng.Method.ARM64_TLBI
    cfg = AsiConfig(policy=Policy.UNMAPPED, pool_bytes=1 << 20, max_order=5, pageblock_order=3,
                    cpus=3, tlb_entries=16, check_invariant=True, init_on_alloc=True,
                    nofragment=True, pcp=True, arch=arch, method=method,
                    unmapped_movable=movable, mermap_region_pages=16)
    wl = asi.make_workload("mixed", 1500, 7, 256, occupancy=0.6, pressure=0.4, cpus=3,
                           unmovable_sensitive=0.3)
    wl = wl._replace(order=np.minimum(wl.order, 5).astype(np.int8))
    c = asi.simulate(cfg, wl).counts
    assert c.violations == 0 and c.allocs > 0
    assert c.mermap_flushes > 0 and c.direct_map_maps + c.asi_unmap_allocs > 0


def test_options_of_policy_5_apply_to_it_only():
    with pytest.raises(ConfigError, match="unmapped_movable"):
        AsiConfig(policy=Policy.TRACKED, unmapped_movable=False)
    with pytest.raises(ConfigError, match="mermap_region_pages"):
        AsiConfig(policy=Policy.RFC, mermap_region_pages=64)
    with pytest.raises(ConfigError, match="mermap_region_pages"):
        AsiConfig(policy=Policy.UNMAPPED, mermap_region_pages=1)
    with pytest.raises(ConfigError, match="unmapped_movable"):
        AsiConfig(policy=Policy.UNMAPPED, unmapped_movable=1)


def test_the_claims_never_read_policy_5():
    from kmm.mech.asi import study
    assert "mermap_region_pages" in study.assumed_specs()
    assert "mermap_region_pages" not in study.claim_specs()
    assert "5 unmapped" in study.VARIANTS and "5 unmapped" not in study.EVIDENCE_VARIANTS
    p = asi.check_params({"allocs": 1500, "pool_mib": 8, "mermap_region_pages": 64})
    frame, runs = asi.unmapped_compare(p)
    assert set(frame["machine"]) == {"published", "arm64"}
    assert sorted(set(frame["mermap_region_pages"])) == [64, 512]
    assert all(r.counts.violations == 0 for r in runs.values())
    x86 = frame.filter((frame["machine"] == "published") & (frame["variant"] == "5 unmapped"))
    arm = frame.filter((frame["machine"] == "arm64") & (frame["variant"] == "5 unmapped"))
    assert x86["mermap_pages"][0] > 0 and x86["mermap_flushes"][0] > 0
    assert arm["mermap_rewalk_ns"][0] == 0  # arm64's flush is a broadcast, no local flush
