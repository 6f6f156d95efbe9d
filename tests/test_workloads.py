"""kmm.workloads: determinism, shapes and the statistics each generator promises."""
import numpy as np
import pytest

from kmm import workloads as wl
from kmm.errors import ConfigError
from kmm.tlb import Kind


def test_same_seed_same_trace_other_seed_other_trace():
    for make in (lambda s: wl.uniform(1000, 1 << 30, s),
                 lambda s: wl.zipf_pages(1000, 5000, 1.1, s),
                 lambda s: wl.instruction_stream(wl.code_image(200, s), 1000, s)):
        a, b, c = make(1), make(1), make(2)
        assert np.array_equal(a.address, b.address)
        assert not np.array_equal(a.address, c.address)
        assert a.meta["seed"] == 1


def test_sequential_and_strided():
    t = wl.sequential(5, start=4096, step_bytes=8)
    assert t.address.tolist() == [4096, 4104, 4112, 4120, 4128]
    s = wl.strided(6, stride_bytes=4096, span_bytes=3 * 4096)
    assert s.address.tolist() == [0, 4096, 8192, 0, 4096, 8192]
    assert s.kind.tolist() == [Kind.LOAD] * 6


def test_uniform_stays_in_range_and_aligned():
    t = wl.uniform(10000, 1 << 20, seed=3, start=1 << 32, align_bytes=64)
    a = t.address.astype(np.int64) - (1 << 32)
    assert a.min() >= 0 and a.max() < 1 << 20 and np.all(a % 64 == 0)


def test_zipf_hot_set_is_skewed():
    t = wl.zipf_pages(50000, pages=1000, alpha=1.2, seed=5)
    _, counts = np.unique(t.address >> np.uint64(12), return_counts=True)
    counts = np.sort(counts)[::-1]
    # P(rank 1) / P(rank 2) = 2**1.2 ~ 2.3 for a Zipf(1.2)
    assert 1.9 < counts[0] / counts[1] < 2.8
    assert (t.address >> np.uint64(12)).max() < 1000
    flat = wl.zipf_pages(50000, pages=1000, alpha=0.0, seed=5)
    assert np.unique(flat.address >> np.uint64(12)).size > 990


def test_phased_and_interleave():
    a = wl.sequential(100, start=0)
    b = wl.sequential(50, start=1 << 40)
    p = wl.phased(a, b)
    assert len(p) == 150 and p.address[100] == 1 << 40
    m = wl.interleave(a, b, 10, 5, seed=1, n=1000)
    from_b = m.address >= np.uint64(1 << 40)
    assert len(m) == 1000
    # mean run lengths close to the requested ones
    changes = np.flatnonzero(np.diff(from_b.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], changes, [1000]]))
    first_b = bool(from_b[0])
    a_runs = runs[0::2] if not first_b else runs[1::2]
    assert 7 < a_runs[:-1].mean() < 14
    # each trace is consumed in order
    seq = m.address[~from_b]
    assert np.all(np.diff(seq.astype(np.int64))[:99] == 8)


def test_syscall_mix_marks_kernel_accesses_global():
    user = wl.uniform(1000, 1 << 30, seed=1)
    kern = wl.uniform(1000, 1 << 24, seed=2, start=wl.KERNEL_BASE)
    t = wl.syscall_mix(user, kern, syscall_rate=0.01, kernel_run=200, seed=3, n=20000)
    assert len(t) == 20000
    assert np.array_equal(t.global_, t.address >= np.uint64(wl.KERNEL_BASE))
    share = t.global_.mean()
    assert 0.55 < share < 0.8      # 200 / (100 + 200) expected


def test_instruction_stream_runs_stay_in_functions():
    img = wl.code_image(500, seed=4, median_bytes=256)
    assert np.all(img.start % 16 == 0) and np.all(img.size_bytes % 4 == 0)
    assert np.all(np.diff(img.start.astype(np.int64)) >= img.size_bytes[:-1])
    t = wl.instruction_stream(img, 50000, seed=5, mean_run_insns=6)
    assert np.all(t.kind == Kind.IFETCH) and t.global_.all()
    assert np.all(t.address % 4 == 0)
    fn = np.searchsorted(img.start, t.address, side="right") - 1
    assert np.all(t.address < img.start[fn] + img.size_bytes[fn].astype(np.uint64))
    step = np.diff(t.address.astype(np.int64))
    sequential = np.mean(step == 4)
    assert 0.7 < sequential < 0.9      # runs of ~6 instructions, cut at function ends
    # popular functions are fetched more
    hits = np.bincount(fn, minlength=500)
    top = np.argsort(img.popularity)[::-1]
    assert hits[top[:10]].sum() > hits[top[-250:]].sum()


def test_with_data_interleaves_after_instructions():
    insns = wl.instruction_stream(wl.code_image(50, seed=1), 1000, seed=2)
    data = wl.sequential(10, start=1 << 20)
    t = wl.with_data(insns, data, 0.3, seed=3)
    is_data = t.kind != Kind.IFETCH
    assert np.array_equal(t.address[~is_data], insns.address)
    assert 200 < is_data.sum() < 400
    assert not is_data[0] and not np.any(is_data[1:] & is_data[:-1])
    assert not t.global_[is_data].any() and t.global_[~is_data].all()


def test_errors():
    with pytest.raises(ConfigError):
        wl.uniform(10, 1 << 20, seed=-1)
    with pytest.raises(ConfigError):
        wl.zipf_pages(10, 0, 1.0, seed=1)
    with pytest.raises(ConfigError):
        wl.phased()


def test_empty_traces():
    img = wl.code_image(10, seed=1)
    assert len(wl.instruction_stream(img, 0, seed=1)) == 0
    assert len(wl.interleave(wl.sequential(5), wl.sequential(5), 2, 2, seed=1, n=0)) == 0
    assert len(wl.with_data(wl.instruction_stream(img, 0, seed=1), wl.sequential(3), 0.5,
                            seed=1)) == 0
    assert len(wl.syscall_mix(wl.sequential(5), wl.sequential(5), 0.1, 3, seed=1, n=0)) == 0


def test_instruction_stream_fills_n_when_runs_are_cut_short():
    # tiny functions and long runs: runs cut at function ends fall far short of their draws
    for seed in range(5):
        img = wl.code_image(50, seed=seed, median_bytes=16, sigma=0.5)
        for n in (1, 100, 5000):
            t = wl.instruction_stream(img, n, seed=seed, mean_run_insns=30)
            assert len(t) == n
            fn = np.searchsorted(img.start, t.address, side="right") - 1
            assert np.all(t.address < img.start[fn] + img.size_bytes[fn].astype(np.uint64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_call_draws_the_same_function_searching_the_called_ones_only(seed):
    """instruction_stream searches the cumulative popularity of the functions a workload
    calls, not of the whole image: every draw is the function the whole image's search
    finds (a function of popularity zero is never the first to exceed a draw)."""
    rng = np.random.default_rng(seed)
    img = wl.code_image(5000, seed)
    pop = img.popularity.copy()
    pop[rng.permutation(5000)[:4700]] = 0.0
    pop[0] = 0.0
    img = wl.CodeImage(img.start, img.size_bytes, pop / pop.sum(), img.meta)
    cdf = np.cumsum(img.popularity)
    cdf /= cdf[-1]
    called = np.flatnonzero(img.popularity > 0)
    whole = wl._fetch_runs(img, np.arange(5000), cdf, 200_000, 6.0, 0.7, -1,
                           np.random.default_rng(seed))
    fast = wl._fetch_runs(img, called, cdf[called], 200_000, 6.0, 0.7, -1,
                          np.random.default_rng(seed))
    assert all(np.array_equal(a, b) for a, b in zip(whole, fast))
    assert len(np.unique(fast[0])) > 100
    assert set(np.unique(fast[0])) <= set(called)


@pytest.mark.parametrize("seed", [0, 1])
def test_guided_search_is_searchsorted_right(seed):
    """A call's draw finds the same function as ``np.searchsorted(cdf, u, side="right")``,
    for draws at and next to every bucket edge and at cumulative values themselves."""
    rng = np.random.default_rng(seed)
    pop = rng.pareto(1.0, 3000) * (rng.random(3000) < 0.7)
    cdf = np.cumsum(pop)
    cdf /= cdf[-1]
    edges = np.arange(2048) / 2048
    u = np.concatenate([rng.random(50_000), edges, np.nextafter(edges, 1.0),
                        np.nextafter(edges[1:], 0.0), cdf[:-1], np.nextafter(cdf[:-1], 0.0),
                        [0.0, np.nextafter(1.0, 0.0)]])
    assert (wl._search_right(cdf, u) == np.searchsorted(cdf, u, side="right")).all()
    flat = np.full(10, 0.1).cumsum()  # repeated and exactly representable edges
    assert (wl._search_right(flat, u) == np.searchsorted(flat, u, side="right")).all()
