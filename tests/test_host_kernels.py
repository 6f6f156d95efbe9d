"""The one-pass kernels of the synthetic CPU traces give, element for element, what the
whole-array steps they replace give (kmm.mech.host.kernels, kmm.workloads._expand_runs)."""
import numpy as np
import pytest

from kmm.mech.host.kernels import fetches_and_data, slots_and_starts
from kmm.mech.host.workload import _interleave, HostTrace
from kmm.workloads import _expand_runs, INSN_BYTES


def _modes(rng, n):
    # phases of kernel (1) and user (0) instructions with EL2 runs (2) between some
    lens = rng.integers(1, 60, n // 20 + 2)
    mode = np.repeat(rng.integers(0, 3, lens.size).astype(np.int8), lens)[:n]
    return mode


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fetches_and_data_are_the_array_form(seed):
    rng = np.random.default_rng(seed)
    n = 20000
    mode = _modes(rng, n)
    n = mode.size
    # sequential runs with jumps, so lines repeat and change
    ia = (np.uint64(0xFFFF000010000000) + np.cumsum(
        np.where(rng.random(n) < 0.8, 4, rng.integers(-4096, 4096, n) * 4)).astype(np.uint64))
    kd, ud = 0.37 + 0.01 * seed, 0.21
    line = ia >> np.uint64(6)
    want_f = np.ones(n, bool)
    want_f[1:] = (line[1:] != line[:-1]) | (mode[1:] != mode[:-1])
    rate = np.where(mode == 1, kd, np.where(mode == 0, ud, 0.0))
    want_d = np.diff(np.concatenate([[0], np.floor(np.cumsum(rate) + 1e-9).astype(
        np.int64)])).astype(bool)
    fetch, data = np.empty(n, bool), np.empty(n, bool)
    got = fetches_and_data(ia, mode, kd, ud, fetch, data)
    assert (fetch == want_f).all() and (data == want_d).all()
    assert got == int(want_f.sum() + want_d.sum())
    assert 0 < want_d.sum() < n and 0 < want_f.sum() < n  # both kinds of event occur


@pytest.mark.parametrize("seed", [0, 1])
def test_slots_and_starts_are_the_array_form(seed):
    rng = np.random.default_rng(seed)
    mode = _modes(rng, 30000)
    n = mode.size
    fetch, data = rng.random(n) < 0.4, rng.random(n) < 0.3
    slice_insns = 997
    work = mode != 2
    wcount = np.cumsum(work) - work
    slots = rng.integers(0, 16, int(wcount[-1] // slice_insns) + 1).astype(np.int64)
    per = fetch.astype(np.int64) + data
    islot, start = np.empty(n, np.int64), np.empty(n, np.int64)
    slots_and_starts(mode, fetch, data, slots, np.int64(slice_insns), islot, start)
    assert (islot == slots[wcount // slice_insns]).all()
    assert (start == np.cumsum(per) - per).all()


def test_expand_runs_is_the_repeat_form():
    rng = np.random.default_rng(3)
    length = rng.geometric(1 / 6, 5000).astype(np.int64)
    run_start = (np.uint64(0xFFFF800008000000)
                 + rng.integers(0, 1 << 24, length.size).astype(np.uint64) * np.uint64(4))
    n = int(length.sum())
    offs = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(length) - length, length)
    want = np.repeat(run_start, length) + offs.astype(np.uint64) * np.uint64(INSN_BYTES)
    got = np.empty(n, np.uint64)
    _expand_runs(run_start, length, got)
    assert (got == want).all()


@pytest.mark.parametrize("n,k", [(1000, 2), (512, 3), (7, 2), (70000, 4)])
def test_interleave_is_round_robin_chunks(n, k):
    """Round-robin chunks of 256 accesses per CPU (the sort it replaces, by block, CPU and
    offset in the block)."""
    traces = [HostTrace(*[np.arange(n + c, dtype=np.int64) * 10 + c] * len(HostTrace._fields))
              for c in range(k)]
    merged, cpu = _interleave(traces)
    pos = np.arange(n)
    order = np.lexsort((np.tile(pos % 256, k), np.repeat(np.arange(k), n),
                        np.tile(pos // 256, k)))
    assert (cpu == np.repeat(np.arange(k, dtype=np.int32), n)[order]).all()
    assert (merged.va == np.concatenate([t.va[:n] for t in traces])[order]).all()
