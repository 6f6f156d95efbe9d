"""The trace-driven host workload: captured kernel references in host-model terms, the
placement rule of linear-map pages, and kernel phases replayed from a shipped trace."""
import numpy as np
import pytest

from kmm.errors import ConfigError
from kmm.kmmt import KernelTrace
from kmm.mech import ktr
from kmm.mech.host import workload as W

R = ktr.Region
KIMAGE = 0xFFFF_8000_0800_0000
ETEXT = KIMAGE + 0xD0_0000
SDATA = KIMAGE + 0x1CB_0000
PAGE_OFFSET = 0xFFFF_0000_0000_0000
PHYS = 0x4000_0000
NAMES = {"0": "user", "1": "text", "2": "rodata", "4": "data", "6": "linear", "7": "percpu",
         "10": "modules", "15": "hyp"}
LAYOUT = {"kimage_va": hex(KIMAGE), "etext": hex(ETEXT), "sdata": hex(SDATA),
          "phys_offset": hex(PHYS), "hyp_va_mask": "0x3fffffff"}


def tiny_trace(refs):
    """A KernelTrace of ``refs``: (cpu, el, kind, region code, va, pa or None)."""
    cpu, el, kind, reg, va, pa = zip(*refs)
    va = np.array(va, np.uint64)
    pa = np.array([0xFFFF_FFFF_FFFF_FFFF if p is None else p for p in pa], np.uint64)
    n = va.size
    return KernelTrace(va, np.array(kind, np.uint8), (va >> np.uint64(63)).astype(bool),
                       np.full(n, 4, np.uint16), {}, pa, np.array(el, np.uint8),
                       np.array(cpu, np.uint8), np.array(reg, np.uint8),
                       {"layout": LAYOUT, "region_names": NAMES,
                        "symbols": [[hex(KIMAGE + 0x10000), "f", ""],
                                    [hex(KIMAGE + 0x10080), "g", ""]]})


def lin(off):
    """A linear-map VA and its PA."""
    return PAGE_OFFSET + off, PHYS + off


# cpu 0: two fetches of one line with a rodata load between them, a fetch of the next line,
# a load of image data, two loads of one linear-map line, an EL0 fetch, a module fetch
# (no class), then a kernel entry: a fetch of g; cpu 1: a per-CPU store, an EL2 fetch
REFS = [(0, 1, 2, 1, KIMAGE + 0x10000, PHYS + 0x20_0000 + 0x10000),
        (0, 1, 0, 2, ETEXT + 0x100, PHYS + 0xF0_0100),
        (0, 1, 2, 1, KIMAGE + 0x10004, PHYS + 0x20_0000 + 0x10004),
        (0, 1, 2, 1, KIMAGE + 0x10040, PHYS + 0x20_0000 + 0x10040),
        (0, 1, 0, 4, SDATA + 0x88, PHYS + 0x1EB_0088),
        (0, 1, 0, 6, *lin(0x5010)),
        (0, 1, 0, 6, *lin(0x5018)),
        (0, 0, 2, 0, 0x40_0000, None),
        (0, 1, 2, 10, 0xFFFF_8000_0000_1000, None),
        (0, 1, 2, 1, KIMAGE + 0x10080, PHYS + 0x20_0000 + 0x10080),
        (1, 1, 1, 7, *lin(0x3FD9_0040)),
        (1, 2, 2, 15, 0xD133_0000_1BC0, PHYS + 0xEE_4000)]


def test_conversion_hand_worked():
    """Events by hand: the two fetches of line 0x10000 merge across the rodata load (2
    instructions); 0x10040 and 0x10080 are new lines (1 each); the two linear loads of one
    line merge; the EL0 fetch and the module fetch are dropped (the module one counted);
    cpu 1's per-CPU store is local, its EL2 fetch keeps ``va & hyp_va_mask``.

    Offsets: text from kimage_va (0x10000, 0x10040, 0x10080), rodata from etext (0x100),
    data from sdata (0x88), linear: offset in page 0x010 and page index 0, per-CPU: PA minus
    phys_offset (0x3FD90040), EL2: 0x1BC0. Kernel entries: cpu 0 starts in the kernel (1) and
    re-enters after its EL0 fetch (2), cpu 1 starts in the kernel (3)."""
    s = W.convert_kernel_trace(tiny_trace(REFS), ktr.KernelImage())
    assert s.region.tolist() == [R.KTEXT, R.KRODATA, R.KTEXT, R.KSHARED, R.KDATA, R.KTEXT,
                                 R.KDATA, R.HYP]
    assert s.kind.tolist() == [2, 0, 2, 0, 0, 2, 1, 2]
    assert s.insns.tolist() == [2, 0, 1, 0, 0, 1, 0, 1]
    assert s.off.tolist() == [0x10000, 0x100, 0x10040, 0x88, 0x010, 0x10080, 0x3FD90040,
                              0x1BC0]
    assert s.lpage.tolist() == [-1, -1, -1, -1, 0, -1, -1, -1]
    assert s.local.tolist() == [False] * 6 + [True, False]
    assert (s.entries, s.el0_insns, s.dropped) == (3, 1, 1)
    assert s.kernel_insns == 4


def test_footprint_hand_worked():
    """On the tiny trace: 5 EL1 fetches (4 of text, 1 of a module) and 1 EL0 fetch (kernel
    share 5/6) in 3 entries (5/3 per entry); f gets 3 text fetches (0x10000, 0x10004,
    0x10040), g 1; text lines 0x10000, 0x10040, 0x10080 (3 x 64 B); one rodata line, one
    data line; EL1 data references: rodata 1, data 1, linear 2, per-CPU 1, so other kernel
    data 3 per 5 EL1 instructions (600 per 1000) in 2 lines, and shares 1/5 and 1/5. The
    Zipf fit needs 3 functions: NaN."""
    f = W.trace_footprint(tiny_trace(REFS))
    assert f["kernel_fraction"] == pytest.approx(5 / 6)
    assert f["kernel_entry_insns"] == pytest.approx(5 / 3)
    assert f["kernel_hot_funcs"] == 2 and np.isnan(f["kernel_zipf"])
    assert f["kernel_hot_text_bytes"] == 3 * 64
    assert f["rodata_hot_bytes"] == 64 and f["kshared_hot_bytes"] == 64
    assert f["kdata_apki"] == pytest.approx(1000 * 3 / 5)
    assert f["rodata_fraction"] == pytest.approx(1 / 5)
    assert f["kshared_fraction"] == pytest.approx(1 / 5)
    assert f["kdata_bytes"] == 2 * 64


def test_zipf_exponent_recovers_an_exact_power_law():
    counts = 1e6 * np.arange(1, 200, dtype=float) ** -1.3
    assert W._zipf_exponent(counts) == pytest.approx(1.3, abs=1e-9)


def test_linear_frame_hand_worked_and_a_bijection():
    """Page 3 in part 1 with scale 4 is distinct page 3 * 4 + 1 = 13, at frame
    13 * 0x9E3779B1 mod 2**19 = 0x8_08D1_2DFD mod 0x80000 = 0x12DFD. Distinct pages map to
    distinct frames (an odd multiplier modulo a power of two)."""
    f = W.linear_frame(np.array([3]), np.array([1]), 4)
    assert int(f[0]) == 0x12DFD
    idx = np.arange(1 << 12)
    frames = W.linear_frame(idx // 4, idx % 4, 4)
    assert np.unique(frames).size == idx.size


def _syn(regions, insns, slots=None):
    n = len(regions)
    z = np.zeros(n)
    return ktr.HostTrace(np.arange(n, dtype=np.uint64) * np.uint64(64),
                         np.arange(n, dtype=np.uint64) * np.uint64(64),
                         np.array([2 if i else 0 for i in insns], np.uint8),
                         np.array(regions, np.uint8),
                         np.array(slots if slots is not None else [0] * n, np.int32),
                         z.astype(np.int16), np.array(insns, np.int32))


def _stream(regions, insns, lpage=None, local=None):
    n = len(regions)
    return W.KernelStream(np.array(regions, np.uint8),
                          np.array([2 if i else 0 for i in insns], np.uint8),
                          np.array(insns, np.int32), np.arange(n, dtype=np.uint64) * np.uint64(64),
                          np.array(lpage if lpage is not None else [-1] * n, np.int64),
                          np.array(local if local is not None else [False] * n, bool),
                          1, 0, 0)


def reference_splice(syn, stream, start):
    """Plain-Python splice: walk ``syn``; a kernel phase of I instructions takes stream
    events while the kernel instructions taken so far are below the phase's end (data
    events after the last fetch wait for the next phase). The stream is read from the
    rotation ``start``; after every full window from ``start + r * golden ratio``."""
    n = stream.region.size

    def events():
        r = 0
        while True:
            o = int(((start + r * 0.6180339887498949) % 1.0) * n)
            for k in range(n):
                yield (o + k) % n
            r += 1

    it = events()
    nxt = next(it)
    taken, goal, out, i = 0, 0, [], 0
    kernel = {int(R.KTEXT), int(R.KRODATA), int(R.KDATA), int(R.KSHARED)}
    while i < syn.va.size:
        if int(syn.region[i]) not in kernel:
            out.append(("syn", i))
            i += 1
            continue
        j = i
        while j < syn.va.size and int(syn.region[j]) in kernel:
            goal += int(syn.insns[j])
            j += 1
        while taken < goal:
            out.append(("trace", nxt))
            taken += int(stream.insns[nxt])
            nxt = next(it)
        i = j
    return out


def test_splice_twin_of_plain_python():
    syn = _syn([R.UTEXT, R.KTEXT, R.KDATA, R.KTEXT, R.UDATA, R.UTEXT, R.KTEXT, R.UTEXT],
               [3, 2, 0, 5, 0, 1, 4, 2])
    stream = _stream([R.KTEXT, R.KDATA, R.KTEXT, R.KRODATA, R.KTEXT, R.KTEXT],
                     [2, 0, 3, 0, 1, 4])
    m = ktr.Machine()
    tw = W.TraceWorkload(("syscalls",), linear_scale=1)
    w = ktr.WORKLOADS["database"]
    for start in (0.0, 0.34, 0.9):
        got = W.splice_kernel(syn, stream, tw, w, m, 1, 0, start)
        ref = reference_splice(syn, stream, start)
        want_regions = [int(syn.region[i]) if s == "syn" else int(stream.region[i])
                        for s, i in ref]
        want_insns = [int(syn.insns[i]) if s == "syn" else int(stream.insns[i])
                      for s, i in ref]
        assert got.region.tolist() == want_regions, start
        assert got.insns.tolist() == want_insns, start


def test_splice_places_addresses_hand_worked():
    """One kernel phase of 3 instructions on node 1 (slot 5 of 4 per node: home 1) takes a
    text fetch of 2 instructions (offset 0x40), a linear load (page 0, offset 0x40), a
    per-CPU load (offset 0x1000, local: the slot of CPU 0 of node 1, 4) and a fetch of 1.
    Text: image VA + 0x40; linear: the trace window of home 1 plus frame
    linear_frame(0, 0, 1) = 0; per-CPU: home 1's window after the linear window."""
    syn = _syn([R.UTEXT, R.KTEXT, R.UTEXT], [1, 3, 1], slots=[5, 5, 5])
    stream = W.KernelStream(np.array([R.KTEXT, R.KDATA, R.KDATA, R.KTEXT], np.uint8),
                            np.array([2, 0, 0, 2], np.uint8), np.array([2, 0, 0, 1], np.int32),
                            np.array([0x40, 0x40, 0x1000, 0x80], np.uint64),
                            np.array([-1, 0, -1, -1], np.int64),
                            np.array([False, False, True, False]), 1, 0, 0)
    m = ktr.Machine()
    tw = W.TraceWorkload(("syscalls",), linear_scale=1)
    t = W.splice_kernel(syn, stream, tw, ktr.WORKLOADS["database"], m, 1, 0, 0.0)
    va_img = ktr.KERNEL_VA_BASE + ktr.ImagePlacement().image_va(m.geometry)
    win = W.TRACE_KDATA_PA + 1 * ktr.SLOT_SPAN_BYTES
    assert t.region.tolist() == [R.UTEXT, R.KTEXT, R.KDATA, R.KDATA, R.KTEXT, R.UTEXT]
    assert int(t.va[1]) == va_img + 0x40
    assert int(t.pa[1]) == ktr.ImagePlacement().pa_bytes + 0x40
    assert int(t.pa[2]) == win + 0x40
    assert int(t.pa[3]) == win + W.LINEAR_WINDOW_BYTES + 0x1000
    assert int(t.va[2]) == ktr.LINEAR_VA_BASE + win + 0x40
    assert t.slot.tolist() == [5, 5, 5, 4, 5, 5]


def test_placement_rule_multiplies_distinct_linear_pages():
    """A window of 8 events: 7 linear loads of pages 0, 1, 0, 1, 0, 1, 0 and a fetch, all
    taken by one kernel phase of 1 instruction. With scale 1, two distinct pages; with scale
    4 the window is 4 parts of 2 events (part = event * 4 // 8), pairs (page, part) (0, 0),
    (1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 3): 7 distinct pages."""
    n = 8
    region = np.array([R.KDATA] * 7 + [R.KTEXT], np.uint8)
    stream = W.KernelStream(region, np.array([0] * 7 + [2], np.uint8),
                            np.array([0] * 7 + [1], np.int32), np.zeros(n, np.uint64),
                            np.array([0, 1, 0, 1, 0, 1, 0, -1], np.int64), np.zeros(n, bool),
                            1, 0, 0)
    syn = _syn([R.UTEXT, R.KTEXT, R.UTEXT], [1, 1, 1])
    m = ktr.Machine()
    for scale, distinct in ((1, 2), (4, 7)):
        tw = W.TraceWorkload(("syscalls",), linear_scale=scale)
        t = W.splice_kernel(syn, stream, tw, ktr.WORKLOADS["database"], m, 1, 0, 0.0)
        kd = t.region == R.KDATA
        assert kd.sum() == 7
        assert np.unique(t.pa[kd] >> np.uint64(12)).size == distinct


def test_replay_wraps_and_covers_the_need():
    stream = _stream([R.KTEXT] * 5, [1, 2, 3, 4, 5])
    idx = W._replay(stream, 40, 0.4)
    assert idx[:5].tolist() == [2, 3, 4, 0, 1]
    assert stream.insns[idx].sum() >= 40
    # the second replay starts at another rotation
    assert idx[5] != idx[0]


def test_trace_cpu_trace_on_a_shipped_trace():
    """Kernel phases from the syscalls trace: every kernel-image address inside the modelled
    image, the kernel share of instructions near the mix's, no synthetic kernel data left
    (all kernel data in the trace window), and the run length exact."""
    w = ktr.WORKLOADS["database"]
    m = ktr.Machine()
    run = ktr.RunConfig(accesses_per_cpu=20000, warmup_per_cpu=0, migration=0.0, seed=3)
    layout = ktr.text_layout(w, m, ktr.TextModel(), run.seed)
    tw = W.TraceWorkload(("syscalls",))
    t = W.trace_cpu_trace(tw, w, m, run, layout, 1, 0, run.seed)
    assert t.va.size == 20000
    fetch = t.kind == 2
    k = t.insns[fetch & (t.region == R.KTEXT)].sum()
    u = t.insns[fetch & (t.region == R.UTEXT)].sum()
    assert abs(k / (k + u) - w.kernel_fraction) < 0.1
    va_img = ktr.KERNEL_VA_BASE + ktr.ImagePlacement().image_va(m.geometry)
    img = np.isin(t.region, [R.KTEXT, R.KRODATA, R.KSHARED])
    end = va_img + sum(s for _o, s, _p, _r in m.image.segments())
    assert ((t.va[img] >= va_img) & (t.va[img] < end)).all()
    kd = t.region == R.KDATA
    assert (t.pa[kd] >= W.TRACE_KDATA_PA).all()
    # the counts run through the full path
    c = ktr.simulate_host(w, m, ktr.RunConfig(accesses_per_cpu=3000, warmup_per_cpu=3000,
                                              seed=1), trace=tw)
    assert c.instructions > 0 and c.mem.sum() > 0


def test_unknown_scenario_and_bad_scale_are_refused():
    with pytest.raises(ConfigError, match="no shipped trace"):
        W.TraceWorkload(("nosuch",))
    with pytest.raises(ConfigError):
        W.TraceWorkload(("syscalls",), linear_scale=0)
    p = dict(ktr.DEFAULTS, trace_database=["nosuch"])
    with pytest.raises(ConfigError, match="no shipped trace"):
        ktr.check_params(p)
