"""The trace-driven fetch workload of permvmalloc: the conversion of a captured kernel trace
(hand-worked and against its plain-Python twin), the replay onto a run's live text
(hand-worked), the exactness of merging a page's consecutive fetches, and the trace-cited
parameters against the traces."""
import numpy as np
import pytest

import naive.permvmalloc as twin
from kmm.engine import TLB, Kind, TLB_L1_HIT, TLB_WALK
from kmm.errors import ConfigError
from kmm.kmmt import KernelTrace
from kmm.mech import permvmalloc as pv
from kmm.suite import params as kparams

STEXT = 0xFFFF800008010000
AREA = 0xFFFF800000D00000
REGIONS = {"1": "text", "6": "linear", "8": "vmalloc", "10": "modules", "11": "bpf"}


def kernel_trace(rows, areas=((AREA, AREA + 0x4000, 10),), symbols=()):
    """A KernelTrace from rows ``(va, kind, el, cpu, region)``."""
    va = np.array([r[0] for r in rows], np.uint64)
    kind, el, cpu, reg = (np.array(c) for c in list(zip(*rows))[1:])
    man = {"region_names": REGIONS,
           "layout": {"stext": hex(STEXT), "areas": [[hex(a), hex(b), hex(r)] for a, b, r in areas]},
           "symbols": [list(s) for s in symbols], "scenario": {"name": "hand"}}
    return KernelTrace(va, kind.astype(np.uint8), (va >> np.uint64(63)).astype(bool),
                       np.full(va.shape, 4, np.uint16), {"scenario": "hand"},
                       np.full(va.shape, 0xFFFFFFFFFFFFFFFF, np.uint64), el.astype(np.uint8),
                       cpu.astype(np.uint8), reg.astype(np.uint8), man)


F, L = 2, 0
HAND = [
    (STEXT + 0x0, F, 1, 0, 1),             # before the first object fetch: cut
    (STEXT + 0x4, F, 1, 0, 1),
    (AREA + 0x100, F, 1, 0, 10),           # visit 0 (object dm_x), page 0 of the area
    (AREA + 0x104, F, 1, 0, 10),
    (0xFFFF000000001000, L, 1, 0, 6),      # a load: not a fetch
    (AREA + 0x1040, F, 1, 0, 10),          # page 1 of the area: a new reference
    (STEXT + 0x2000, F, 1, 0, 1),          # the gap: kernel text, two pages
    (STEXT + 0x2004, F, 1, 0, 1),
    (STEXT + 0x3000, F, 1, 0, 1),
    (AREA + 0x6010, F, 1, 0, 10),          # visit 1: past the area, an unlisted object
    (STEXT + 0x8, F, 1, 0, 1),             # after the last object fetch: cut
    (STEXT + 0x10, F, 1, 1, 1),            # vCPU 1: no object fetch, left out
    (0x400000, F, 0, 1, 0),                # EL0: not kernel mode
    (0xFFFF800009000000, F, 1, 1, 8),      # EL1 fetch outside kernel/module/BPF text
]


def test_conversion_hand_worked():
    """The hand-built trace above: vCPU 0's stream is cut to rows 2..9 and its fetches
    merged per page: (dm_x +0x100, 2 fetches), (dm_x +0x1040, 1), (kernel +0x2000, 2),
    (kernel +0x3000, 1), (object 2 +0x10, 1): the unlisted object starts at the page of its
    lowest fetch, AREA + 0x6000. Units: [0, 2) is visit 0, [2, 5) the gap and visit 1.
    Visit 0 fetched 2 distinct lines (0x100 and 0x104 share one), visit 1 one. EL1 fetches: 10
    on vCPU 0 (all rows but the load) + 2 on vCPU 1 = 12; 1 of them outside the text regions."""
    tf = pv.traced_fetches(kernel_trace(HAND, symbols=[(hex(AREA + 0x100), "foo", "dm_x")]))
    assert tf.objects == ("dm_x", f"mod@{AREA + 0x6000:#x}") and tf.groups == ("mod", "mod")
    assert tf.obj.tolist() == [0, 0, -1, -1, 1]
    assert tf.offset.tolist() == [0x100, 0x1040, 0x2000, 0x3000, 0x10]
    assert tf.weight.tolist() == [2, 1, 2, 1, 1]
    assert tf.units.tolist() == [0, 2, 5]
    assert tf.visit_lines.tolist() == [2, 1]
    assert (tf.el1_fetches, tf.outside) == (12, 1)
    assert tf.object_fetches.tolist() == [3, 1]
    s = tf.summary()
    assert (s["visits"], s["object_fetches"], s["kernel_fetches"], s["lines_per_visit"]) == (2, 4, 3, 1.5)


def _same_as_twin(trace):
    tf = pv.traced_fetches(trace)
    ref = twin.traced_fetches(trace)
    assert tf.obj.tolist() == ref["obj"]
    assert tf.offset.tolist() == ref["offset"]
    assert tf.weight.tolist() == ref["weight"]
    assert tf.units.tolist() == ref["units"]
    assert tf.visit_lines.tolist() == ref["visit_lines"]
    assert (tf.el1_fetches, tf.outside) == (ref["el1_fetches"], ref["outside"])
    assert len(tf.objects) == len(ref["keys"])


@pytest.mark.parametrize("seed", range(6))
def test_conversion_matches_twin_on_random_traces(seed):
    rng = np.random.default_rng(seed)
    n = 400
    places = [(STEXT, 1), (AREA, 10), (AREA + 0x8000, 10), (AREA + 0x20000, 11), (0xFFFF000000000000, 6),
              (0xFFFF800009000000, 8)]
    rows = []
    for _ in range(n):
        base, reg = places[int(rng.integers(0, len(places)))]
        va = base + int(rng.integers(0, 6)) * 0x1000 + 4 * int(rng.integers(0, 40))
        kind = F if reg != 6 else int(rng.integers(0, 2))
        rows.append((va, kind, int(rng.random() < 0.95), int(rng.integers(0, 2)), reg))
        if rng.random() < 0.6:          # runs of sequential fetches
            rows.append((va + 4, kind, rows[-1][2], rows[-1][3], reg))
    areas = ((AREA, AREA + 0x3000, 10), (AREA + 0x20000, AREA + 0x22000, 11))
    _same_as_twin(kernel_trace(rows, areas=areas))


@pytest.mark.parametrize("name", ["module", "bpf"])
def test_conversion_matches_twin_on_the_shipped_traces(name):
    from kmm.engine import read_kernel_trace, shipped_kernel_traces

    path = next(p for p in shipped_kernel_traces() if p.name == pv.FETCH_TRACES[name])
    _same_as_twin(read_kernel_trace(path))


def test_a_trace_without_module_or_bpf_fetches_is_refused():
    rows = [(STEXT, F, 1, 0, 1), (STEXT + 4, F, 1, 0, 1)]
    with pytest.raises(ConfigError):
        pv.traced_fetches(kernel_trace(rows))


MOD = pv.TracedFetches("hand", ("x",), ("mod",), np.array([0, -1, 0], np.int32),
                       np.array([0x10, 0x100, 0x1010], np.int64), np.array([3, 5, 2], np.int64),
                       np.array([0, 1, 3], np.int64), np.array([1, 1], np.int64), 10, 0)
M0 = 0xFFFFFFFFC0000000
K = pv.KERNEL_TEXT_VA


def test_replay_hand_worked():
    """One traced object, one live module (so every pass lands on it), 12 fetches into module
    text: pass 1 is unit 0 (m0 + 0x10, 3 fetches) and unit 1 (kernel + 0x100, 5; m0 + 0x1010,
    2): 5 module fetches; pass 2 the same: 10; pass 3's unit 0 reaches 13 and is cut to 2."""
    text = [("m0", M0, 0x2000, 12)]
    cfg = pv.ItlbConfig(fetches=12, bpf_share=0.0)
    va, sh, w, obj = pv.trace_fetch_trace(text, cfg, {"mod": MOD})
    a, b, k = M0 + 0x10, M0 + 0x1010, K + 0x100
    assert va.tolist() == [a, k, b, a, k, b, a]
    assert w.tolist() == [3, 5, 2, 3, 5, 2, 2]
    assert obj.tolist() == [True, False, True, True, False, True, True]
    assert sh.tolist() == [12, 21, 12, 12, 21, 12, 12]
    # a live module shorter than the traced offsets: they wrap (0x1010 % 0x1000 = 0x10)
    va, *_ = pv.trace_fetch_trace([("m0", M0, 0x1000, 21)], cfg, {"mod": MOD})
    assert va.tolist() == [a, k, a, a, k, a, a]


def test_replay_places_objects_on_live_objects_of_their_kind():
    text = [(f"m{i}", M0 + i * 0x10000, 0x3000, 12) for i in range(20)]
    text += [(f"bpf{i}", 0xFFFFFFFFE0000000 + i * 0x1000, 300, 12) for i in range(30)]
    traces = {"mod": pv.load_traced_fetches("module"), "bpf": pv.load_traced_fetches("bpf")}
    cfg = pv.ItlbConfig(fetches=30_000, bpf_share=0.4, zipf=1.0, seed=3)
    va, sh, w, obj = pv.trace_fetch_trace(text, cfg, traces)
    assert int(w[obj].sum()) == 30_000 and (w > 0).all()
    ins_mod = np.zeros(va.shape, bool)
    ins_bpf = np.zeros(va.shape, bool)
    for n, v, s, _ in text:
        hit = (va >= v) & (va < v + s)
        if n.startswith("bpf"):
            ins_bpf |= hit
        else:
            ins_mod |= hit
    assert (obj == (ins_mod | ins_bpf)).all()
    kernel = ~obj
    assert ((va[kernel] >= K) & (va[kernel] < K + (16 << 20))).all()
    assert (sh[kernel] == 21).all() and (sh[obj] == 12).all()
    # about bpf_share of the fetches come from BPF units
    share = w[obj & ins_bpf].sum() / w[obj].sum()
    assert 0.3 < share < 0.5


def test_merged_page_fetches_give_the_counts_of_the_full_stream():
    """Each merged reference expanded back into its ``weight`` fetches (4 bytes apart,
    wrapping inside its page) gives the same L1 misses and walks of module and BPF text."""
    text = [(f"m{i}", M0 + i * 0x10000, 0x5000, 12) for i in range(300)]
    text += [(f"bpf{i}", 0xFFFFFFFFE0000000 + i * 0x1000, 700, 12) for i in range(100)]
    traces = {"mod": pv.load_traced_fetches("module"), "bpf": pv.load_traced_fetches("bpf")}
    cfg = pv.ItlbConfig(l1_entries=16, l1_ways=4, stlb_entries=64, stlb_ways=4,
                        fetches=20_000, bpf_share=0.5, zipf=0.6)
    va, sh, w, obj = pv.trace_fetch_trace(text, cfg, traces)
    rep = np.repeat(np.arange(va.size), w)
    k = np.arange(rep.size) - np.repeat(np.cumsum(w) - w, w)
    page = va[rep] & ~np.uint64(0xFFF)
    full = page | ((va[rep] + (4 * k).astype(np.uint64)) & np.uint64(0xFFF))

    def outcomes(addr, shift):
        t = TLB(cfg.tlb())
        t.run(addr, record=True, kind=int(Kind.IFETCH), page_shift=shift, global_=True)
        return t.last_outcome

    a, b = outcomes(va, sh), outcomes(full, sh[rep])
    fo = obj[rep]
    assert np.count_nonzero(obj & (a == TLB_WALK)) == np.count_nonzero(fo & (b == TLB_WALK)) > 0
    assert np.count_nonzero(obj & (a != TLB_L1_HIT)) == np.count_nonzero(fo & (b != TLB_L1_HIT))
    m = pv.itlb_trace_misses(text, cfg, traces)
    assert m["misses"] == np.count_nonzero(obj & (a == TLB_WALK)) and m["fetches"] == 20_000
    # every distinct page is walked on its first fetch; the rest are re-walks after evictions
    assert m["pages"] == np.unique(va[obj] >> np.uint64(12)).size and m["misses"] >= m["pages"]


def test_trace_cited_parameters_match_the_traces():
    """params/permvmalloc.yaml cites itlb_run_lines from the traces: each trace's visits and
    mean lines per visit, as its source states them, are what the conversion measures."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "params" / "permvmalloc.yaml"
    spec = kparams.safe_load(path.read_text(), str(path))["parameters"]["itlb_run_lines"]
    src = spec["source"]
    for name, f in pv.FETCH_TRACES.items():
        s = pv.load_traced_fetches(name).summary()
        assert f"kmm/data/traces/{f}" in src
        assert f"{s['visits']} visits" in src and f"{s['lines_per_visit']:.1f}" in src, name
    assert spec["value"] == round(pv.load_traced_fetches("module").summary()["lines_per_visit"])


def test_footprint_comparison_and_workload_choice():
    df = pv.footprint_comparison(pv.DEFAULTS)
    run = df.filter(df["parameter"] == "itlb_run_lines")
    assert run["measured"].null_count() == 0 and set(run["trace"]) == set(pv.FETCH_TRACES.values())
    assert df.filter(df["parameter"] != "itlb_run_lines")["measured"].null_count() == 6
    with pytest.raises(ConfigError):
        pv.fetch_misses([("m0", M0, 0x1000, 12)], {**pv.DEFAULTS, "itlb_workload": "lackey"})
