"""Kernel text replication: memory (K5), patching (K4) and the performance model."""
import pytest
from hypothesis import given, settings, strategies as st

from kmm import geometry, numa
from kmm.errors import ConfigError
from kmm.mech import ktr

GEOMS = [("4K", 48), ("4K", 39), ("16K", 47), ("64K", 42), ("64K", 48), ("64K", 52)]


# ---- K5: replication memory ------------------------------------------------------------
def _model(*a, **kw):
    """The byte counts of the model (without where the lower tables live)."""
    m = ktr.replication_bytes_model(*a, **kw)
    m.pop("lower_table_bytes_by_node")
    return m


def test_image_segments_are_segment_aligned_and_defaults_sum_to_size_columns():
    img = ktr.KernelImage()
    segs = img.segments()
    assert [s[0] for s in segs] == [0, 16_580_608, 22_872_064]
    assert all(off % (64 << 10) == 0 and size % (64 << 10) == 0 for off, size, _, _ in segs)
    assert img.replicated_bytes == 16_580_608 + 6 * 2**20
    assert img.rw_bytes == 10_998_617 - 6 * 2**20 + 506_468


def test_hand_worked_4k_48bit_two_nodes():
    # Text [0, 15.81 MiB), rodata to 21.81 MiB, rw to 26.81 MiB in 2 MiB windows: the PTE
    # tables are the three windows holding a segment edge (7, 10 and 13); one PMD and one
    # PUD table; plus the second node's struct pgtables (RFC v2 08/16, arch/arm64/include/
    # asm/pgtable.h): tramp_pg_dir (UNMAP_KERNEL_AT_EL0), reserved_pg_dir, swapper_pg_dir,
    # 4 KiB each.
    img = ktr.KernelImage()
    g = geometry.arm64("4K", 48)
    assert ktr.image_subtree_tables(img, g) == {1: 1, 2: 1, 3: 3}
    m = ktr.replication_bytes_model(img, g, 2)
    assert m == {"copy_bytes": 22_872_064, "table_bytes": 3 * 4096 + 5 * 4096,
                 "top_table_bytes": 3 * 4096, "total_bytes": 22_872_064 + 32_768,
                 "lower_table_bytes_by_node": {1: 5 * 4096}}
    # without UNMAP_KERNEL_AT_EL0 the set is reserved_pg_dir and swapper_pg_dir
    m2 = ktr.replication_bytes_model(img, g, 2, unmap_kernel_at_el0=False)
    assert m2["table_bytes"] == 2 * 4096 + 5 * 4096
    assert _model(img, g, 2, unmap_kernel_at_el0=False) == ktr.replication_bytes_formula(
        img, g, 2, unmap_kernel_at_el0=False)


def test_lower_tables_come_from_the_top_of_ram_as_early_pgtable_alloc_leaves_them():
    # RFC v2 13/16 create_kernel_nid_map maps each node's image through
    # __create_pgd_mapping(..., early_pgtable_alloc, ...); arch/arm64/mm/mmu.c
    # early_pgtable_alloc takes memblock_phys_alloc_range() with no node, and memblock
    # allocates top down: every extra node's lower tables land on the last node.
    img = ktr.KernelImage()
    g = geometry.arm64("4K", 48)
    rfc = ktr.replication_bytes_model(img, g, 4)
    assert rfc["lower_table_bytes_by_node"] == {3: 3 * 5 * 4096}
    local = ktr.replication_bytes_model(img, g, 4, ktr_tables="local")
    assert local["lower_table_bytes_by_node"] == {1: 5 * 4096, 2: 5 * 4096, 3: 5 * 4096}
    assert local["total_bytes"] == rfc["total_bytes"]
    from kmm.mech.host.model import ktr_table_node
    assert [ktr_table_node(k, 4) for k in range(4)] == [0, 3, 3, 3]
    assert [ktr_table_node(k, 2) for k in range(2)] == [0, 1]  # 2 nodes: both local
    cls = ktr.Classes(4)
    assert cls.resolve(ktr.Scheme.KTR, ktr.UserPolicy.LOCAL, 1, 1)[cls.KTABLE] == 3
    assert ktr.Classes(4, "local").resolve(ktr.Scheme.KTR, ktr.UserPolicy.LOCAL, 1,
                                           1)[cls.KTABLE] == 1
    with pytest.raises(ConfigError):
        ktr.Classes(2, "nearest")


@pytest.mark.parametrize("granule,va_bits", [("16K", 48), ("4K", 52), ("16K", 52)])
def test_ktr_refused_where_the_image_shares_its_top_level_entry(granule, va_bits):
    # 16K/48: two level-0 entries, the upper one holds vmalloc, modules, fixmap and the image
    # (arch/arm64/mm/fixmap.c early_fixmap_init_pud: "the kernel mapping and the fixmap
    # share the top level pgd entry ... 16k/4 levels"); LPA2 (52-bit VA with 4K or 16K):
    # VA_BITS_MIN is 48 and one top-level entry (level -1 with 4K) spans the whole image/
    # modules/vmalloc window. The RFC's ktext_replication_init refuses a kernel that shares
    # its L0 entry with vmalloc.
    g = geometry.arm64(granule, va_bits)
    with pytest.raises(ConfigError, match="share its entry with vmalloc"):
        ktr.build_kernel_tables(ktr.KernelImage(), g, 2)
    assert ktr.build_kernel_tables(ktr.KernelImage(), g, 1)[1] is None  # no replication
    from kmm.mech.ktr import study
    with pytest.raises(ConfigError, match="refused"):
        study.check_params({**study.DEFAULTS, "geometries": [f"{granule}/{va_bits}"]})


@pytest.mark.parametrize("granule,va_bits", GEOMS)
def test_model_bytes_equal_formula_at_every_node_count(granule, va_bits):
    g = geometry.arm64(granule, va_bits)
    img = ktr.KernelImage()
    for n in (1, 2, 4, 8):
        assert _model(img, g, n) == ktr.replication_bytes_formula(img, g, n)
    assert ktr.replication_bytes_model(img, g, 1)["total_bytes"] == 0


@settings(max_examples=15, deadline=None)
@given(text=st.integers(64 << 10, 40 << 20), rodata=st.integers(0, 10 << 20),
       rw=st.integers(0, 20 << 20), which=st.integers(0, len(GEOMS) - 1),
       nodes=st.sampled_from([2, 3, 8]))
def test_model_equals_formula_random_images(text, rodata, rw, which, nodes):
    g = geometry.arm64(*GEOMS[which])
    img = ktr.KernelImage(text_bytes=text, rodata_bytes=rodata, rw_bytes=rw)
    m = _model(img, g, nodes)
    assert m == ktr.replication_bytes_formula(img, g, nodes)
    # one copy and one set of tables per extra node
    assert m["copy_bytes"] == (nodes - 1) * img.replicated_bytes
    assert m["table_bytes"] % (nodes - 1) == 0


def test_replicated_translation_points_each_node_at_its_copy():
    g = geometry.arm64("4K", 48)
    place = ktr.ImagePlacement()
    pt, rep = ktr.build_kernel_tables(ktr.KernelImage(), g, 4, place)
    va = place.image_va(g) + 0x1234000
    assert rep.translate(va, 0).pa == pt.translate(va).pa
    for n in (1, 2, 3):
        assert rep.translate(va, n).pa == pt.translate(va).pa + n * place.node_span_bytes
    rw_va = place.image_va(g) + ktr.KernelImage().replicated_bytes + 4096
    assert rep.translate(rw_va, 3).pa == pt.translate(rw_va).pa  # rw data stays shared


def test_image_must_fit_one_top_level_entry():
    g = geometry.arm64("64K", 42)  # 512 MiB per top-level entry
    with pytest.raises(ConfigError, match="top-level entry"):
        ktr.build_kernel_tables(ktr.KernelImage(text_bytes=600 << 20), g, 2)


# ---- K4: patching ----------------------------------------------------------------------
def _topo():
    return numa.generic(2, 100.0, 2.0, cpus_per_node=4)


def test_patch_window_hand_worked():
    # per write: fixmap map/unmap 300, the broadcast flush of the slot (TLBI 10 + DSB ISH
    # 200 + 5 per CPU of 8 = 250), the line's owning read 100 or 200, the clean to PoU 500
    cost = ktr.PatchCost(sites=2, fixmap_ns=300.0, cmo_ns=500.0, sync_ns=5000.0)
    t = _topo()
    assert ktr.fixmap_flush_ns(8, cost) == 10 + 200 + 5 * 8
    assert ktr.patch_window_ns(t, 1, cost) == 5000 + 2 * (300 + 250 + 100 + 500)
    assert ktr.patch_window_ns(t, 2, cost) == 5000 + 2 * (1150 + 300 + 250 + 200 + 500)
    assert ktr.patch_machine_ns(t, 2, cost) == 8 * 9800
    nosync = ktr.PatchCost(sites=2, fixmap_ns=300.0, cmo_ns=500.0, sync_ns=5000.0,
                           sync=ktr.PatchSync.NOSYNC)
    assert ktr.patch_machine_ns(t, 2, nosync) == 9800


def test_fixmap_unmap_flush_is_broadcast_and_grows_with_the_machine():
    # arch/arm64/mm/fixmap.c __set_fixmap: clearing a slot calls flush_tlb_kernel_range
    # (TLBI VAALE1IS + DSB ISH), not a local TLBI, so its cost follows the CPU count
    cost = ktr.PatchCost()
    assert ktr.fixmap_flush_ns(256, cost) > ktr.fixmap_flush_ns(8, cost) > 0
    big = numa.generic(2, 100.0, 2.0, cpus_per_node=128)
    small = numa.generic(2, 100.0, 2.0, cpus_per_node=4)
    assert ktr.patch_window_ns(big, 2, cost) > ktr.patch_window_ns(small, 2, cost)


def test_each_patch_path_is_charged_with_its_own_synchronisation():
    # static keys: arch/arm64/kernel/jump_label.c arch_jump_label_transform ->
    # aarch64_insn_patch_text_nosync; ftrace: arch/arm64/kernel/ftrace.c ftrace_modify_code
    # (nosync) and arch_ftrace_update_code (no stop_machine); kprobes:
    # arch/arm64/kernel/probes/kprobes.c patch_text -> aarch64_insn_patch_text (stop_machine)
    assert ktr.PATCH_PATHS == {"static_key": ktr.PatchSync.NOSYNC,
                               "ftrace": ktr.PatchSync.NOSYNC,
                               "kprobe": ktr.PatchSync.STOP_MACHINE}
    t = _topo()
    cost = ktr.PatchCost(sites=2, sync=ktr.PatchSync.STOP_MACHINE)  # ignored by the mix
    nosync = ktr.PatchCost(sites=2, sync=ktr.PatchSync.NOSYNC)
    f_key = ktr.patch_mix_fraction(t, 2, {"static_key": 10.0}, cost)
    assert f_key == pytest.approx(ktr.patch_overhead_fraction(t, 2, 10.0, nosync))
    f_kp = ktr.patch_mix_fraction(t, 2, {"kprobe": 10.0}, cost)
    assert f_kp == pytest.approx(t.cpus * f_key)  # every CPU held for the window
    assert ktr.patch_mix_fraction(t, 2, {"static_key": 10.0, "kprobe": 10.0}, cost) == \
        pytest.approx(f_key + f_kp)
    with pytest.raises(ConfigError):
        ktr.patch_mix_fraction(t, 2, {"alternatives": 1.0}, cost)


def test_break_even_rate_hand_worked():
    cost = ktr.PatchCost(sites=2, fixmap_ns=300.0, cmo_ns=500.0, sync_ns=5000.0)
    t = _topo()
    # extra machine time per patch (9800 - 7300) * 8 CPUs; gain 10 % is cancelled when the
    # patch CPU fraction reaches 0.1 / 1.1
    rate = ktr.break_even_patch_rate(t, 0.10, cost)
    assert rate == pytest.approx((0.1 / 1.1) * 8e9 / 20000)
    f = ktr.patch_overhead_fraction(t, 2, rate, cost) - ktr.patch_overhead_fraction(t, 1, rate, cost)
    assert f == pytest.approx(0.1 / 1.1)
    assert ktr.break_even_patch_rate(t, -0.01, cost) == 0.0


def test_patch_cost_strictly_increases_with_copies():
    t = numa.generic(8, 90.0, 1.0, cpus_per_node=2)  # even at ratio 1.0
    w = [ktr.patch_window_ns(t, n) for n in (1, 2, 4, 8)]
    assert all(b > a for a, b in zip(w, w[1:]))


# ---- the performance model ---------------------------------------------------------------
import numpy as np  # noqa: E402

from kmm.suite import params as _params  # noqa: E402

SMALL_RUN = ktr.RunConfig(accesses_per_cpu=4000, warmup_per_cpu=4000, seed=3)


def test_classes_resolve_hand_worked():
    cls = ktr.Classes(2)
    base = cls.resolve(ktr.Scheme.BASELINE, ktr.UserPolicy.LOCAL, cpu_node=1, sim_node=1)
    rep = cls.resolve(ktr.Scheme.KTR, ktr.UserPolicy.LOCAL, cpu_node=1, sim_node=1)
    s2 = cls.resolve(ktr.Scheme.STAGE2, ktr.UserPolicy.LOCAL, cpu_node=1, sim_node=1)
    assert (base[cls.TEXT], rep[cls.TEXT], s2[cls.TEXT]) == (0, 1, 1)
    assert (base[cls.KTABLE], rep[cls.KTABLE], s2[cls.KTABLE]) == (0, 1, 0)
    assert base[cls.UTEXT] == base[cls.HYP] == 0
    # node 0 is charged from node 1's counts with the two nodes swapped in home classes
    n0 = cls.resolve(ktr.Scheme.KTR, ktr.UserPolicy.LOCAL, cpu_node=0, sim_node=1)
    assert n0[cls.home(1)] == 0 and n0[cls.home(0)] == 1 and n0[cls.TEXT] == 0
    inter = cls.resolve(ktr.Scheme.KTR, ktr.UserPolicy.INTERLEAVE, cpu_node=0, sim_node=1)
    assert inter[cls.udata(1, 1)] == 0 and inter[cls.udata(1, 0)] == 1
    remote = cls.resolve(ktr.Scheme.KTR, ktr.UserPolicy.REMOTE, cpu_node=1, sim_node=1)
    assert remote[cls.udata(1, 0)] == 0 and remote[cls.udata(0, 1)] == 1
    assert cls.resolve(ktr.Scheme.KTR, ktr.UserPolicy.NODE0, 1, 1)[cls.udata(1, 1)] == 0


def test_interleave_keeps_each_cpus_order():
    def tr(c, n):
        a = np.arange(n, dtype=np.uint64) + np.uint64(1000 * c)
        z = np.zeros(n)
        return ktr.HostTrace(a, a, z.astype(np.uint8), z.astype(np.uint8), z.astype(np.int32),
                             z.astype(np.int16), z.astype(np.int32))
    merged, cpu = ktr._interleave([tr(0, 600), tr(1, 600)], chunk=256)
    assert merged.va.size == 1200
    assert cpu[:256].tolist() == [0] * 256 and cpu[256:512].tolist() == [1] * 256
    for c in (0, 1):
        got = merged.va[cpu == c]
        assert got.tolist() == sorted(got.tolist()) and got.size == 600


def test_trace_kernel_share_fetch_runs_and_no_migration():
    w = ktr.WORKLOADS["database"]
    m = ktr.Machine()
    run = ktr.RunConfig(accesses_per_cpu=20000, warmup_per_cpu=0, migration=0.0, seed=5)
    layout = ktr.text_layout(w, m, ktr.TextModel(), run.seed)
    t = ktr.generate_cpu_trace(w, m, run, layout, 1, 0, run.seed)
    assert t.va.size == 20000
    fetch = t.kind == 2
    k = t.insns[fetch & (t.region == ktr.Region.KTEXT)].sum()
    u = t.insns[fetch & (t.region == ktr.Region.UTEXT)].sum()
    assert abs(k / (k + u) - w.kernel_fraction) < 0.05
    assert (t.insns[~fetch] == 0).all() and (t.insns[fetch] >= 1).all()
    # consecutive fetches of one mode never repeat a line
    f = np.flatnonzero(fetch)
    same = (t.va[f][1:] == t.va[f][:-1]) & (t.region[f][1:] == t.region[f][:-1])
    assert not same.any()
    per_node = m.cpus_per_node * m.threads_per_cpu
    assert (t.slot // per_node == 1).all()  # every slice runs a thread of its own node
    ktext = t.region == ktr.Region.KTEXT
    off = (t.va[ktext] - np.uint64(ktr.KERNEL_VA_BASE)).astype(np.int64)
    assert (t.pa[ktext].astype(np.int64) - off == ktr.ImagePlacement().pa_bytes
            - ktr.ImagePlacement().image_va(m.geometry)).all()


def test_cold_run_counts_every_access_of_the_trace():
    # warmup_per_cpu=0: nothing warms the TLBs and caches, so the measured slice is the
    # whole trace and its counts are the run's full counts (not a difference with itself)
    w, m = ktr.WORKLOADS["database"], ktr.Machine()
    cold = ktr.simulate_host(w, m, ktr.RunConfig(accesses_per_cpu=8000, warmup_per_cpu=0,
                                                  seed=3))
    warm = ktr.simulate_host(w, m, ktr.RunConfig(accesses_per_cpu=4000, warmup_per_cpu=4000,
                                                  seed=3))
    assert int(cold.served[:2].sum()) == 8000 * m.cpus_per_node  # every fetch and data access
    assert cold.mem.sum() == cold.served[:, 3].sum() > 0
    assert cold.walks > 0 and cold.walk_refs >= cold.walks
    # the same trace (same seed and length): the cold run's counts hold the warm run's
    # measured slice plus the warm-up slice
    assert (cold.mem >= warm.mem).all() and cold.mem.sum() > warm.mem.sum()
    assert cold.walks > warm.walks and cold.instructions > warm.instructions


@pytest.fixture(scope="module")
def small_counts():
    return ktr.simulate_host(ktr.WORKLOADS["database"], ktr.Machine(), SMALL_RUN)


def test_machines_that_differ_in_how_accesses_are_served_share_their_node_traces():
    # node_trace keys a machine without the fields the accesses are not drawn from (LLC
    # size, walk caches, KTR table placement, linear map): such machines share one draw,
    # and a fresh draw under each is the same (so the key loses nothing); a field the draw
    # reads (CPUs per node) keys another draw
    from dataclasses import replace
    from kmm.mech.host import model as host
    w, m = ktr.WORKLOADS["syscall"], ktr.Machine()
    others = [replace(m, llc_bytes=1 << 20), replace(m, walk_cache_entries=4),
              replace(m, s2_walk_cache_entries=0), replace(m, ktr_tables="local"),
              replace(m, linear_map="block")]
    assert set(host._NOT_DRAWN_FROM) == {"llc_bytes", "walk_cache_entries",
                                         "s2_walk_cache_entries", "ktr_tables", "linear_map"}
    host._NODE_TRACES.clear()
    a = host.node_trace(w, m, SMALL_RUN, ktr.TextModel(), 1, None)
    for o in others:
        assert host.node_trace(w, o, SMALL_RUN, ktr.TextModel(), 1, None)[0] is a[0]
        host._NODE_TRACES.clear()
        fresh = host.node_trace(w, o, SMALL_RUN, ktr.TextModel(), 1, None)
        assert all(np.array_equal(x, y) for x, y in zip((*fresh[0], fresh[1]), (*a[0], a[1])))
        host._NODE_TRACES.clear()
        a = host.node_trace(w, m, SMALL_RUN, ktr.TextModel(), 1, None)
    assert host.node_trace(w, replace(m, cpus_per_node=1), SMALL_RUN, ktr.TextModel(), 1,
                           None)[0] is not a[0]


def test_a_node_trace_is_drawn_once_and_replayed_read_only(small_counts):
    # node_trace is a function of its arguments: the same arguments return the same
    # (read-only) accesses, and a run that draws them afresh counts the same
    from kmm.mech.host import model as host
    w, m = ktr.WORKLOADS["database"], ktr.Machine()
    a = host.node_trace(w, m, SMALL_RUN, ktr.TextModel(), 1, None)
    b = host.node_trace(w, m, SMALL_RUN, ktr.TextModel(), 1, None)
    assert a[0] is b[0] and a[1] is b[1]
    assert not any(x.flags.writeable for x in (*a[0], a[1]))
    host._NODE_TRACES.clear()
    again = ktr.simulate_host(w, m, SMALL_RUN)
    assert (again.mem == small_counts.mem).all() and (again.served == small_counts.served).all()
    assert again.walks == small_counts.walks and again.instructions == small_counts.instructions
    other = host.node_trace(w, m, SMALL_RUN.__class__(**{**SMALL_RUN.__dict__, "seed": 4}),
                            ktr.TextModel(), 1, None)
    assert not np.array_equal(other[0].va, a[0].va)
    # at most _NODE_TRACES_BYTES are kept: with room for none, nothing is kept
    keep = host._NODE_TRACES_BYTES
    try:
        host._NODE_TRACES.clear()
        host._NODE_TRACES_BYTES = a[0].va.nbytes
        c = host.node_trace(w, m, SMALL_RUN, ktr.TextModel(), 1, None)
        assert not host._NODE_TRACES and c[0] is not a[0]
        assert np.array_equal(c[0].va, a[0].va) and np.array_equal(c[1], a[1])
    finally:
        host._NODE_TRACES_BYTES = keep
    # the path copies read-only columns: run_path keeps its one (writable) specialisation
    from kmm import walk
    assert not any("readonly" in str(sig) for sig in walk.run_path.signatures)


def test_breakdown_sums_to_system_time(small_counts):
    c = small_counts
    lat = numa.generic(2, 117.0, 2.0).latency_ns
    for scheme in ktr.Scheme:
        total = ktr.system_time_ns(c, lat, scheme, ktr.UserPolicy.INTERLEAVE)
        parts = ktr.time_breakdown(c, lat, scheme, ktr.UserPolicy.INTERLEAVE)
        assert sum(parts.values()) == pytest.approx(total, rel=1e-12)
        src = ktr.source_times_ns(c, lat, scheme, ktr.UserPolicy.INTERLEAVE)
        base = c.nodes * c.instructions / 2.5
        assert base + sum(src.values()) == pytest.approx(total, rel=1e-12)


def _p_small(**over):
    p = dict(_params.notebook_parameters(
        __import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks" / "ktr.ipynb"))
    p.update(over)
    return ktr.params_from(p)


def test_gain_is_near_zero_at_ratio_one_and_rises(small_counts):
    # 100 kprobe patches/s: every CPU held in stop_machine for each (kprobes.c patch_text)
    p = _p_small(patches_per_s=0.0, kprobe_patches_per_s=100.0)
    bp = ktr.UserPolicy.INTERLEAVE
    gains = [ktr.gain(small_counts, p, r, base_policy=bp, new_policy=bp)
             for r in (1.0, 1.5, 2.0, 3.0, 4.0)]
    assert -0.02 <= gains[0] <= 0.0
    assert gains[0] < 0  # patching every copy costs something at any rate above zero
    assert all(b > a for a, b in zip(gains, gains[1:]))
    # the same rate of static-key flips (nosync: only the patching CPU) costs far less
    keys = _p_small(patches_per_s=100.0, kprobe_patches_per_s=0.0)
    assert ktr.gain(small_counts, keys, 1.0, base_policy=bp, new_policy=bp) > gains[0]
    # with no patching and equal latencies, replication gains only what spreading the text
    # reads over every node's memory takes off the loaded latency of the node holding the
    # single copy: a small gain, never a loss
    p0 = _p_small(patches_per_s=0.0, kprobe_patches_per_s=0.0)
    g0 = ktr.gain(small_counts, p0, 1.0, base_policy=bp, new_policy=bp)
    assert 0.0 <= g0 < 0.005
    idle = _p_small(patches_per_s=0.0, kprobe_patches_per_s=0.0, background=0.0)
    assert ktr.gain(small_counts, idle, 1.0, base_policy=bp, new_policy=bp) <= g0


def test_local_user_data_and_replication_add_up_in_direction(small_counts):
    p = _p_small(patches_per_s=0.0, kprobe_patches_per_s=0.0)
    bp = ktr.UserPolicy.INTERLEAVE
    ktr_only = ktr.gain(small_counts, p, 2.0, base_policy=bp, new_policy=bp)
    both = ktr.gain(small_counts, p, 2.0, base_policy=bp, new_policy=ktr.UserPolicy.LOCAL)
    assert ktr_only > 0 and both > ktr_only


def test_notebook_functions_give_the_stated_directions():
    # synthetic kernel phases: in a run this short a trace-driven CPU may measure no kernel
    # phase at all (its mean captured entry is thousands of instructions); the trace-driven
    # source is checked in tests/test_host_traces.py and by test_trace_source_directions
    p = _p_small(workloads=["database"], node_counts=[2], ratios=[1.0, 2.0, 4.0],
                 k1_ratios=[2.0], accesses_per_cpu=3000, warmup_per_cpu=3000,
                 geometries=["4K/48"], migration_sweep=[0.05], workload_source="synthetic")
    runs = ktr.simulate_all(p)
    gains = ktr.gain_frame(p, runs)
    mem = ktr.memory_frame(p)
    pn, _pr = ktr.patch_frame(p)
    v = ktr.claim_values(p, runs, gains, mem, pn)
    g = v["K3"]["value"]["gain"]
    # near zero at equal latencies (patching costs a little, spreading the text reads over
    # every node's memory relieves the loaded latency a little), rising with the ratio
    assert abs(g[0]) <= 0.02 and g == sorted(g)
    pns = v["K4"]["value"]["patch_ns"]
    assert all(b > a for a, b in zip(pns, pns[1:]))
    assert v["K5"]["value"]["model_bytes"] == v["K5"]["value"]["formula_bytes"]
    assert len(v["K1"]["sweep"]) == len(v["K2"]["sweep"]) > 0
    assert v["K2"]["value"] > v["K1"]["value"]
    # explanations quote the values computed, not constants
    assert f"{v['K1']['value']:+.1%}" in v["K1"]["explanation"]
    assert f"{v['K2']['value']:+.1%}" in v["K2"]["explanation"]


def test_trace_source_directions():
    """The trace-driven default: K1 and the side-by-side frame carry both sources, the gain
    rises with the ratio, and the K1 sweep holds the linear-map placement rule's ends."""
    p = _p_small(workloads=["database"], node_counts=[2], ratios=[1.0, 4.0], k1_ratios=[2.0],
                 accesses_per_cpu=20000, warmup_per_cpu=20000, geometries=["4K/48"],
                 migration_sweep=[0.05], linear_scale_range=[1, 16])
    runs = ktr.simulate_all(p)
    assert ("other", "database") in runs and ("linear", 16) in runs
    src = ktr.sources_frame(p, runs)
    assert sorted(set(src["source"].to_list())) == ["synthetic", "trace"]
    for s in ("trace", "synthetic"):
        g = src.filter(src["source"] == s).sort("ratio")["gain"].to_list()
        assert g[-1] > g[0]
    sw = ktr.k1_sweep(p, runs)
    assert {pt["params"]["linear_scale"] for pt in sw} == {1, 4, 16}
    assert "captured memcached, pagecache traces" in ktr.study.source_note(p, runs, 2.0)


def test_migrated_share_is_stratified_and_pooling_adds_counts():
    w = ktr.WORKLOADS["syscall"]
    m = ktr.Machine(nodes=4)
    run = ktr.RunConfig(accesses_per_cpu=40000, warmup_per_cpu=0, migration=0.25,
                        slice_instructions=1000, seed=9)
    layout = ktr.text_layout(w, m, ktr.TextModel(), run.seed)
    t = ktr.generate_cpu_trace(w, m, run, layout, 2, 0, run.seed)
    per_node = m.cpus_per_node * m.threads_per_cpu
    fetch = t.kind == 2
    away = t.insns[fetch & (t.slot // per_node != 2)].sum() / t.insns[fetch].sum()
    assert abs(away - 0.25) < 0.02
    assert set((t.slot // per_node).tolist()) == {0, 1, 2, 3}
    small = ktr.RunConfig(accesses_per_cpu=2000, warmup_per_cpu=2000)
    a = ktr.simulate_host(w, ktr.Machine(), small)
    both = ktr.pool([a, a])
    assert both.instructions == 2 * a.instructions and (both.mem == 2 * a.mem).all()


def test_k1_sweep_follows_an_overridden_remote_ratio(small_counts):
    """``-p remote_ratio=...`` moves the K1/K2 sweep too, not only the value (issue 25)."""
    for r0 in (1.2, 3.6):
        p = _p_small(remote_ratio=r0, k1_ratios=[1.69, 3.0], llc_sweep_bytes=[8388608],
                     kernel_fraction_sweep=[0.35])
        runs = {("sweep", 8388608, 0.35): small_counts}
        for combined in (False, True):
            sw = ktr.k1_sweep(p, runs, combined=combined)
            swept = {pt["params"]["remote_ratio"] for pt in sw}
            assert swept == {1.69, 3.0, r0}
            bp = ktr.UserPolicy.INTERLEAVE
            newp = ktr.UserPolicy.LOCAL if combined else bp
            at = [pt for pt in sw if pt["params"]["remote_ratio"] == r0
                  and pt["params"]["dep_ifetch"] == p["dep_ifetch"]
                  and pt["params"]["dep_data"] == p["dep_data"]
                  and pt["params"]["background"] == p["background"]
                  and pt["params"]["module_text_fraction"] == p["module_text_fraction"]
                  and pt["params"]["kobj_remote_fraction"] == p["kobj_remote_fraction"]]
            assert len(at) == 1
            assert at[0]["value"] == pytest.approx(
                ktr.gain(small_counts, p, r0, base_policy=bp, new_policy=newp), rel=1e-12)


# ---- time model: loaded latency and overlap (kmm.timing) on host counts -----------------------
def _hand_counts(cpus=1):
    cls = ktr.Classes(2)
    mem = np.zeros((3, 2, cls.count), np.int64)
    mem[1, 1, cls.TEXT] = 1000     # data reads of replicated lines
    mem[2, 1, cls.KTABLE] = 200    # walk reads of kernel tables
    served = np.array([[0, 0, 0, 0], [0, 0, 0, 1000], [0, 0, 0, 200]])
    return ktr.HostCounts(nodes=2, sim_node=1, classes=cls, mem=mem, served=served,
                          l2_tlb_hits=0, walks=200, walk_refs=200, instructions=20000,
                          hyp_lines=0, exits=0, cpus=cpus)


def test_host_time_hand_worked_overlap_and_load():
    # MLP = min(22, max(1, 1000 * (1 - 0.5) / 20000 * 128)) = 3.2: a data miss costs
    # 0.5 + 0.5 / 3.2 = 0.65625 of its latency, a walk read all of it (dependent).
    # Baseline: text and tables on node 0; node 0 pays 100 ns, node 1 200 ns (idle):
    # 20000 / 2 + 1000 * lat * 0.65625 + 200 * lat.
    c = _hand_counts()
    lat = [[100.0, 200.0], [200.0, 100.0]]
    costs = ktr.HostCosts(cpu_ghz=2.0, cpi_base=1.0, dep_data=0.5, dep_ifetch=0.8,
                          background=0.0, outstanding=22)
    idle = [10000 + 65625 + 20000, 10000 + 131250 + 40000]
    t = ktr.node_times_ns(c, lat, ktr.Scheme.BASELINE, ktr.UserPolicy.LOCAL, costs)
    # the run's own traffic loads node 0 a little: above idle, within 1%
    assert (t > np.array(idle)).all()
    assert t == pytest.approx(idle, rel=1e-2)
    # replication: every node reads its own copy and tables at 100 ns
    tk = ktr.node_times_ns(c, lat, ktr.Scheme.KTR, ktr.UserPolicy.LOCAL, costs)
    assert tk == pytest.approx([idle[0], idle[0]], rel=1e-2)
    # one outstanding read: nothing overlaps, every miss pays its whole latency
    one = ktr.node_times_ns(c, lat, ktr.Scheme.BASELINE, ktr.UserPolicy.LOCAL,
                            ktr.HostCosts(cpu_ghz=2.0, background=0.0, outstanding=1))
    assert one == pytest.approx([10000 + 100000 + 20000, 10000 + 200000 + 40000], rel=1e-2)
    # the background load of the cores not simulated raises every read's latency
    busy = ktr.node_times_ns(c, lat, ktr.Scheme.BASELINE, ktr.UserPolicy.LOCAL,
                             ktr.HostCosts(cpu_ghz=2.0, dep_data=0.5, background=0.6,
                                           outstanding=22))
    assert (busy > t * 1.01).all()


def test_host_time_twin_of_timing_solve():
    # the host wiring equals kmm.timing.solve on counts resolved by hand
    from kmm import engine as eng
    c = _hand_counts(cpus=2)
    lat = np.array([[100.0, 150.0], [150.0, 100.0]])
    costs = ktr.HostCosts(cpu_ghz=2.0, dep_data=0.3, background=0.2, outstanding=34)
    core = eng.neoverse_core(ghz=2.0, cpi_base=1.0, l2_cycles=11.0, llc_ns=30.0,
                             l2_tlb_cycles=5.0, outstanding=34, dep_ifetch=costs.dep_ifetch,
                             dep_data=0.3)
    ms = eng.memory_system(lat, background=0.2)
    for scheme, home in ((ktr.Scheme.BASELINE, (0, 0)), (ktr.Scheme.KTR, (0, 1))):
        mem = np.zeros((2, 3, 2))
        for k in range(2):
            mem[k, 1, home[k]] = 1000
            mem[k, 2, home[k]] = 200
        tc = eng.TimeCounts(instructions=[20000, 20000], served=[c.served, c.served], mem=mem,
                            l2_tlb_hits=[0, 0], cpus=[2, 2])
        r = eng.solve_time(tc, ms, core)
        assert ktr.system_time_ns(c, lat, scheme, ktr.UserPolicy.LOCAL, costs) == \
            pytest.approx(r.node_ns.sum(), rel=1e-12)
        src = ktr.source_times_ns(c, lat, scheme, ktr.UserPolicy.LOCAL, costs)
        assert src["walk_ns"] == pytest.approx(r.breakdown["walk_memory_ns"], rel=1e-12)
        mine = ktr.class_memory_ns(c, lat, c.classes.TEXT, scheme, ktr.UserPolicy.LOCAL,
                                   costs, source=1)
        assert mine.sum() == pytest.approx(r.breakdown["data_memory_ns"], rel=1e-12)


def test_replicates_pool_disjoint_seeds_and_half_the_measured_accesses():
    """K1-K3 again: the published point pools seeds [1, 2]; the replicates pool [3, 4] and
    [5, 6] (recorded under their first seed) with the published 3000 measured accesses,
    and [1, 2] with 1500 (the warm-up kept). At the published seeds and length the values
    are the published ones; other seeds draw other hot sets, and the gain moves. K4 and K5
    are deterministic. The replicates make a convergence check."""
    from kmm.mech.ktr import study
    from kmm.suite import registry
    p = _p_small(seeds=[1, 2], workloads=["database"], node_counts=[2], ratios=[1.0, 2.0],
                 k1_ratios=[2.0], accesses_per_cpu=3000, warmup_per_cpu=3000,
                 geometries=["4K/48"], workload_source="synthetic")
    reps = study.replicates(p)
    assert set(reps) == {"K1", "K2", "K3"}
    for rs in reps.values():
        assert [(r["seed"], r["length"]) for r in rs] == [(3, 3000), (5, 3000), (1, 1500)]
    runs = ktr.simulate_all(p)
    published = study.headline_values(p, runs[("nodes", 2)])
    c3 = ktr.simulate_seeds(ktr.WORKLOADS["database"], study.machine_of(p), study.run_of(p),
                            [3, 4])
    assert reps["K1"][0]["value"] == pytest.approx(study.headline_values(p, c3)["K1"], rel=1e-12)
    assert reps["K1"][0]["value"] != published["K1"]
    assert reps["K3"][2]["value"]["ratio"] == published["K3"]["ratio"] == [1.0, 2.0]
    ev = study.STUDY.evaluate(p)
    assert ev["K1"].value == published["K1"] and ev["K3"].value == published["K3"]
    assert ev["K4"].deterministic and ev["K5"].deterministic
    assert not any(ev[c].deterministic for c in ("K1", "K2", "K3"))
    for c in ("K1", "K2", "K3"):
        rec = {"value": ev[c].value, "scenario": "published", "parameters": p,
               "replicates": list(ev[c].replicates)}
        assert registry.convergence(c, rec)[0] is not None
