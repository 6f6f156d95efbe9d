"""kmm.suite.tracestats and notebooks/kernel_traces.ipynb: what the shipped kernel traces
touch, and the TLB and cache misses kmm computes on them per linear-map mapping."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kmm import kmmt, results, traces
from kmm.errors import ConfigError
from kmm.suite import tracestats as T

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {p.stem: p for p in traces.shipped_kernel_traces()}
UNKNOWN = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def synthetic(va, kind, region, cpu=None) -> kmmt.KernelTrace:
    """A kernel trace of the given references, with the layout and region names of the
    shipped bpf capture (its linear map starts at PAGE_OFFSET 0xffff000000000000)."""
    man, _ = kmmt.read_manifest(SHIPPED["bpf"])
    va = np.asarray(va, np.uint64)
    n = va.size
    return kmmt.KernelTrace(
        va, np.asarray(kind, np.uint8), (va >> np.uint64(63)).astype(bool),
        np.full(n, 8, np.uint16), {"source": "synthetic"}, np.full(n, UNKNOWN, np.uint64),
        np.ones(n, np.uint8), np.zeros(n, np.uint8) if cpu is None else np.asarray(cpu, np.uint8),
        np.asarray(region, np.uint8),
        {"layout": man["layout"], "region_names": man["region_names"]})


PAGE_OFFSET = 0xFFFF_0000_0000_0000
TEXT = 0xFFFF_8000_0801_0000   # a kernel-image text address (outside the linear map)
LOAD, FETCH = 0, 2
R_TEXT, R_LINEAR = 1, 6


def hand_trace() -> kmmt.KernelTrace:
    """Four sequential fetches in one text page, then one load in each of 100 consecutive
    linear-map pages (all inside the first 2 MiB block of the linear map)."""
    va = [TEXT + 4 * i for i in range(4)] + [PAGE_OFFSET + 4096 * i for i in range(100)]
    return synthetic(va, [FETCH] * 4 + [LOAD] * 100, [R_TEXT] * 4 + [R_LINEAR] * 100)


@pytest.mark.parametrize("mapping", ["4K", "2M", "1G"])
def test_hand_worked_trace(mapping):
    """One CPU, cold N1 machine, nothing warmed (warm_fraction 0), 4 instructions.

    Pages: text 1, linear 100, in all 101 (footprint 101 x 4 KiB). Translations: 4K needs
    1 + 100 = 101 leaves; 2M and 1G map the 100 linear pages with one block: 1 + 1 = 2.

    iTLB: the 4 fetches share one page: 1 L1 iTLB miss, which also misses the L2 TLB (a
    walk): iTLB MPKI = 1000 x 1 / 4 = 250, whatever the mapping.
    dTLB under 4K: 100 distinct pages, each a cold L1 dTLB and L2 TLB miss: 100 misses and
    100 walks, dTLB MPKI = 1000 x 100 / 4 = 25000, L2 TLB MPKI = 1000 x 101 / 4 = 25250.
    Under 2M: the first load walks and fills one 2 MiB entry that serves the other 99:
    1 miss, dTLB MPKI 250, 2 walks in all, L2 TLB MPKI 500. Under 1G the L2 TLB holds the
    1 GiB block and the L1 dTLB a 2 MiB piece of it (its largest 4K-granule entry): the same
    counts as 2M.
    Caches: the fetches read one line (1 L1 I miss, MPKI 250); the loads 100 distinct lines
    (100 L1 D misses, MPKI 25000), each also cold in the L2 and the LLC, which see the walks'
    descriptor reads besides: at least 101 misses each (MPKI >= 25250).
    """
    m = T.metrics(hand_trace(), mapping, T.Machine(), 0.0)
    tot, text, lin = m[T.ALL], m["text"], m["linear"]
    block = mapping != "4K"
    assert set(m) == {T.ALL, "text", "linear"}
    assert (tot["refs"][0], tot["instructions"][0], tot["loads"][0], tot["stores"][0]) == \
        (104, 4, 100, 0)
    assert (text["pages"][0], lin["pages"][0], tot["pages"][0]) == (1, 100, 101)
    assert tot["footprint_bytes"] == (101 * 4096, "bytes")
    assert (lin["translations"][0], tot["translations"][0]) == ((1, 2) if block else (100, 101))
    assert tot["itlb_mpki"][0] == 250.0
    assert tot["dtlb_mpki"][0] == (250.0 if block else 25000.0)
    assert tot["walks"][0] == (2 if block else 101)
    assert tot["l2tlb_mpki"][0] == (500.0 if block else 25250.0)
    assert (text["walks"][0], lin["walks"][0]) == (1, 1 if block else 100)
    assert lin["walk_pki"][0] == (250.0 if block else 25000.0)
    assert (tot["l1i_mpki"][0], tot["l1d_mpki"][0]) == (250.0, 25000.0)
    assert tot["l2_mpki"][0] >= 25250.0 and tot["llc_mpki"][0] >= 25250.0


def test_warm_up_is_not_counted():
    """The same 104 references twice, the first copy as warm-up (warm_fraction 0.5): every
    page and line is then resident (101 pages fit the 1280-entry L2 TLB, 101 lines the
    caches), so nothing misses the L2 TLB or the L2 cache; only the 48-entry L1 dTLB misses
    again, 100 pages cycling through it in LRU order: 100 misses over 4 instructions."""
    t = hand_trace()
    twice = synthetic(np.tile(t.address, 2), np.tile(t.kind, 2), np.tile(t.region, 2))
    m = T.metrics(twice, "4K", T.Machine(), 0.5)[T.ALL]
    assert (m["instructions"][0], m["walks"][0], m["l2_mpki"][0]) == (4, 0, 0.0)
    assert m["dtlb_mpki"][0] == 25000.0 and m["itlb_mpki"][0] == 0.0
    assert m["refs"][0] == 208   # footprints are of the whole window


def python_window(trace, mapping):
    """Plain-Python reference: pages and leaves per region name with sets."""
    lo = PAGE_OFFSET
    hi = lo + (1 << 30)
    shift = {"4K": 12, "2M": 21, "1G": 30}[mapping]
    names = trace.region_names()
    pages, leaves = {}, {}
    for va, r in zip(trace.address.tolist(), trace.region.tolist()):
        pages.setdefault(names[r], set()).add(va >> 12)
        leaf = (va >> shift, "block") if lo <= va < hi else (va >> 12, "page")
        leaves.setdefault(names[r], set()).add(leaf)
    return pages, leaves


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_window_twin_against_python_sets(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    region = rng.choice([0, 1, 6, 7, 8], n)
    base = {0: 0x40_0000, 1: TEXT, 6: PAGE_OFFSET, 7: PAGE_OFFSET + (1 << 29),
            8: 0xFFFF_8000_1000_0000}
    span = {0: 1 << 20, 1: 1 << 22, 6: 1 << 30, 7: 1 << 23, 8: 1 << 24}
    va = np.array([base[r] + int(rng.integers(0, span[r])) for r in region], np.uint64)
    t = synthetic(va, rng.integers(0, 3, n), region)
    w = T.Window.of(t)
    codes = {v: k for k, v in t.region_names().items()}
    for mapping in T.MAPPINGS:
        pages, leaves = python_window(t, mapping)
        for name in pages:
            assert w.pages(codes[name]) == len(pages[name])
            assert w.translations(mapping, codes[name]) == len(leaves[name])
        assert w.pages() == len(set().union(*pages.values()))
        assert w.translations(mapping) == len(set().union(*leaves.values()))


def test_window_counts_equal_the_manifest_of_a_shipped_trace():
    """What `kmm trace info` prints from the manifest, recomputed from the references."""
    t = traces.read_kernel_trace(SHIPPED["bpf"])
    w = T.Window.of(t)
    for code, name in t.region_names().items():
        r = t.manifest["regions"].get(name)
        if r is None:
            assert code >= w.refs.size or w.refs[code] == 0
            continue
        assert (int(w.refs[code]), int(w.fetches[code]), int(w.loads[code]),
                int(w.stores[code])) == (r["refs"], r["fetches"], r["loads"], r["stores"])
        assert w.pages(code) == r["pages"] and w.pages(code) * 4096 == r["footprint_bytes"]


def test_frame_of_a_shipped_trace_is_tidy_and_only_the_linear_map_changes():
    df = T.trace_frame(["bpf", "pagecache"], ["4K", "2M", "1G"], max_refs=40000,
                       warm_fraction=0.2, machine=T.Machine(), scenario="test")
    results.validate(df)
    wide = T.headline(df)
    assert wide.height == 6 and wide["mapping"].to_list()[:3] == ["4K", "2M", "1G"]
    for name in ("bpf", "pagecache"):
        rows = {r["mapping"]: r for r in wide.filter(pl.col("trace") == name).iter_rows(named=True)}
        # only linear-map translations change: the iTLB and L1 I see the same stream
        assert rows["4K"]["itlb_mpki"] == rows["2M"]["itlb_mpki"] == rows["1G"]["itlb_mpki"]
        assert rows["4K"]["l1i_mpki"] == rows["2M"]["l1i_mpki"]
        assert rows["2M"]["dtlb_mpki"] < rows["4K"]["dtlb_mpki"]
        assert rows["2M"]["translations"] < rows["4K"]["translations"]
        assert rows["4K"]["instructions"] > 0
        walks = df.filter((pl.col("trace") == name) & (pl.col("metric") == "walks")
                          & ~pl.col("region").is_in(["all", "linear", "percpu"]))
        text = walks.filter(pl.col("region") == "text").sort("mapping")["value"].to_list()
        assert len(text) == 3 and min(text) > 0


@pytest.mark.parametrize("call, where", [
    (lambda: T.load("nosuch", 10), "traces"),
    (lambda: T.trace_frame(["bpf"], ["64K"], max_refs=10, warm_fraction=0.0,
                           machine=T.Machine(), scenario="t"), "mappings"),
    (lambda: T.trace_frame([], ["4K"], max_refs=10, warm_fraction=0.0, machine=T.Machine(),
                           scenario="t"), "traces"),
    (lambda: T.Machine(l2_tlb_entries=0), "l2_tlb_entries"),
    (lambda: T.metrics(hand_trace(), "4K", T.Machine(), 0.95), "warm_fraction"),
])
def test_bad_input_is_one_config_error(call, where):
    with pytest.raises(ConfigError) as e:
        call()
    assert e.value.where == where


def test_machine_of_notebook_parameters():
    m = T.Machine.of({"llc_bytes": 8 << 20, "scenario": "small", "max_refs": 5})
    assert m.llc_bytes == 8 << 20 and m.l2_tlb_entries == 1280
    cfg = m.path_config(2)
    assert cfg.tlb.cpus == 2 and cfg.caches.llc.size_bytes == 8 << 20
    assert cfg.tlb.l1d.max_page_shift == 21 and cfg.tlb.l2.max_page_shift is None


@pytest.mark.slow
def test_notebook_runs_at_small_defaults(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KMM_DATA_DIR": str(tmp_path / "data"),
           "KMM_PROGRESS": "off"}
    r = subprocess.run([sys.executable, "-m", "kmm", "run", "kernel_traces", "-p", "max_refs",
                        "20000", "-p", "traces", "[bpf, memcached]", "--out", str(tmp_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    label = r.stdout.strip().rsplit("/", 1)[-1][len("kernel_traces."):-len(".ipynb")]
    assert label.startswith("custom-")   # -p values make a scenario of their own
    frames = list((tmp_path / "data").rglob(f"frames/{label}/kernel_traces.parquet"))
    assert frames
    df = pl.read_parquet(frames[0])
    assert sorted(df["trace"].unique().to_list()) == ["bpf", "memcached"]
    charts = {p.name for p in (tmp_path / "data").rglob(f"charts/{label}/kernel_traces_*.png")}
    assert {"kernel_traces_footprint.png", "kernel_traces_tlb.png", "kernel_traces_walks.png",
            "kernel_traces_caches.png"} <= charts
    nb = json.loads(next(tmp_path.glob("kernel_traces*.ipynb")).read_text())
    assert nb["metadata"]["papermill"]["parameters"]["max_refs"] == 20000
