"""Deterministic workload generators: every one takes a ``seed`` and draws all its
randomness from ``np.random.default_rng(seed)`` created here, in Python; the kernels that
consume the traces are deterministic. Each returns a :class:`kmm.traces.Trace` whose
``meta`` records the generator, its parameters and the seed.

Generators
----------
- :func:`sequential`, :func:`strided`, :func:`uniform`: the classic patterns.
- :func:`zipf_pages`: a hot set, page ``k`` (in a random order) touched with probability
  proportional to ``1 / k**alpha`` over a bounded support.
- :func:`phased`: phases of other traces, one after another; :func:`interleave`: runs of
  two traces alternated with geometric run lengths.
- :func:`syscall_mix`: user work interrupted by system calls: user runs of geometric length
  with mean ``1 / syscall_rate`` accesses, each followed by a kernel run (global
  translations), the shape of syscall-heavy code.
- :func:`code_image` and :func:`instruction_stream`: a code image of functions with
  log-normal sizes and Zipf popularity, fetched in runs of sequential 4-byte instructions
  that end in a taken branch (same function) or a call/return (another function).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._jit import njit
from .config import check_float, check_int
from .errors import ConfigError
from .tlb import Kind
from .traces import Trace

INSN_BYTES = 4   # arm64 instructions are 4 bytes (Arm ARM C1)
KERNEL_BASE = 0xFFFF_8000_0000_0000  # arm64 48-bit kernel half (TTBR1)


def _rng(seed) -> np.random.Generator:
    check_int("seed", seed, lo=0)
    return np.random.default_rng(seed)


def _n(n) -> int:
    return check_int("n", n, lo=0, hi=1 << 34)


def _trace(address, kind, meta, global_=None) -> Trace:
    return Trace(np.ascontiguousarray(address, dtype=np.uint64),
                 np.ascontiguousarray(kind, dtype=np.uint8), global_, None, meta)


def _kind(n, kind) -> np.ndarray:
    k = Kind(kind)
    return np.full(n, int(k), np.uint8)


def sequential(n: int, start: int = 0, step_bytes: int = 8, kind: Kind = Kind.LOAD) -> Trace:
    """``n`` accesses ``start, start + step_bytes, ...`` (no randomness)."""
    n = _n(n)
    check_int("step_bytes", step_bytes, lo=1)
    addr = np.uint64(start) + np.arange(n, dtype=np.uint64) * np.uint64(step_bytes)
    return _trace(addr, _kind(n, kind), {"generator": "sequential", "start": start,
                                         "step_bytes": step_bytes, "seed": None})


def strided(n: int, stride_bytes: int, span_bytes: int, start: int = 0,
            kind: Kind = Kind.LOAD) -> Trace:
    """``n`` accesses striding by ``stride_bytes`` through ``span_bytes`` and wrapping."""
    n = _n(n)
    check_int("stride_bytes", stride_bytes, lo=1)
    check_int("span_bytes", span_bytes, lo=stride_bytes)
    steps = span_bytes // stride_bytes
    addr = np.uint64(start) + (np.arange(n, dtype=np.uint64) % np.uint64(steps)) * \
        np.uint64(stride_bytes)
    return _trace(addr, _kind(n, kind), {"generator": "strided", "stride_bytes": stride_bytes,
                                         "span_bytes": span_bytes, "start": start,
                                         "seed": None})


def uniform(n: int, span_bytes: int, seed: int, start: int = 0, align_bytes: int = 8,
            kind: Kind = Kind.LOAD) -> Trace:
    """``n`` accesses uniform over ``[start, start + span_bytes)``, ``align_bytes``-aligned."""
    n = _n(n)
    rng = _rng(seed)
    check_int("align_bytes", align_bytes, lo=1)
    slots = check_int("span_bytes", span_bytes, lo=align_bytes) // align_bytes
    addr = np.uint64(start) + rng.integers(0, slots, n, dtype=np.uint64) * np.uint64(align_bytes)
    return _trace(addr, _kind(n, kind), {"generator": "uniform", "span_bytes": span_bytes,
                                         "start": start, "seed": seed})


def zipf_ranks(n: int, support: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of ranks ``0..support-1`` with P(k) proportional to ``1 / (k+1)**alpha``
    (inverse CDF over the bounded support; any ``alpha`` >= 0)."""
    check_int("support", support, lo=1, hi=1 << 26)
    check_float("alpha", alpha, lo=0.0, hi=10.0)
    w = np.arange(1, support + 1, dtype=np.float64) ** -alpha
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), support - 1)


def zipf_pages(n: int, pages: int, alpha: float, seed: int, start: int = 0,
               page_bytes: int = 4096, kind: Kind = Kind.LOAD) -> Trace:
    """A hot set: page ranks drawn from a bounded Zipf(``alpha``) over ``pages`` pages,
    ranks placed at random pages of ``[start, start + pages * page_bytes)``, 8-byte aligned
    offsets uniform within the page."""
    n = _n(n)
    rng = _rng(seed)
    check_int("page_bytes", page_bytes, lo=8)
    rank = zipf_ranks(n, pages, alpha, rng)
    page = rng.permutation(pages)[rank].astype(np.uint64)
    off = rng.integers(0, page_bytes // 8, n, dtype=np.uint64) * np.uint64(8)
    addr = np.uint64(start) + page * np.uint64(page_bytes) + off
    return _trace(addr, _kind(n, kind), {"generator": "zipf_pages", "pages": pages,
                                         "alpha": alpha, "page_bytes": page_bytes,
                                         "start": start, "seed": seed})


def _global(t: Trace) -> np.ndarray:
    return t.global_ if t.global_ is not None else np.zeros(len(t), bool)


def phased(*phases: Trace) -> Trace:
    """The given traces one after another (a program's phases)."""
    if not phases:
        raise ConfigError("needs at least one phase", "phases")
    glob = None
    if any(p.global_ is not None for p in phases):
        glob = np.concatenate([_global(p) for p in phases])
    return _trace(np.concatenate([p.address for p in phases]),
                  np.concatenate([p.kind for p in phases]),
                  {"generator": "phased", "phases": [p.meta for p in phases]}, glob)


def _runs(total: int, mean: float, rng: np.random.Generator) -> np.ndarray:
    """Geometric run lengths (mean ``mean``, at least 1) summing to at least ``total``."""
    p = 1.0 / max(mean, 1.0)
    out = [np.zeros(0, np.int64)]
    got = 0
    while got < total:
        k = max(16, int(1.2 * (total - got) / max(mean, 1.0)) + 16)
        r = rng.geometric(p, k)
        out.append(r)
        got += int(r.sum())
    return np.concatenate(out)


def interleave(a: Trace, b: Trace, mean_run_a: float, mean_run_b: float, seed: int,
               n: int | None = None) -> Trace:
    """Alternate runs of ``a`` and ``b`` (geometric lengths with the given means), each
    trace consumed in order and wrapped around when exhausted; ``n`` accesses in all
    (default ``len(a) + len(b)``)."""
    rng = _rng(seed)
    if len(a) == 0 or len(b) == 0:
        raise ConfigError("both traces need accesses", "a")
    check_float("mean_run_a", mean_run_a, lo=1.0)
    check_float("mean_run_b", mean_run_b, lo=1.0)
    n = _n(len(a) + len(b) if n is None else n)
    if n == 0:
        glob0 = None if a.global_ is None and b.global_ is None else np.zeros(0, bool)
        return _trace(np.zeros(0, np.uint64), np.zeros(0, np.uint8),
                      {"generator": "interleave", "a": a.meta, "b": b.meta,
                       "mean_run_a": mean_run_a, "mean_run_b": mean_run_b, "seed": seed},
                      glob0)
    ra = _runs(n, mean_run_a, rng)
    rb = _runs(n, mean_run_b, rng)
    m = min(len(ra), len(rb))
    lengths = np.empty(2 * m, np.int64)
    lengths[0::2], lengths[1::2] = ra[:m], rb[:m]
    ends = np.cumsum(lengths)
    keep = int(np.searchsorted(ends, n, side="left")) + 1
    lengths = lengths[:keep]
    lengths[-1] -= int(ends[keep - 1] - n)
    which = np.repeat(np.arange(keep) % 2, lengths).astype(bool)   # True: from b
    pos = np.empty(n, np.int64)
    pos[~which] = np.arange(int((~which).sum())) % len(a)
    pos[which] = np.arange(int(which.sum())) % len(b)
    addr = np.where(which, b.address[pos % len(b)], a.address[pos % len(a)])
    kind = np.where(which, b.kind[pos % len(b)], a.kind[pos % len(a)])
    glob = None
    if a.global_ is not None or b.global_ is not None:
        glob = np.where(which, _global(b)[pos % len(b)], _global(a)[pos % len(a)])
    return _trace(addr, kind, {"generator": "interleave", "a": a.meta, "b": b.meta,
                               "mean_run_a": mean_run_a, "mean_run_b": mean_run_b,
                               "seed": seed}, glob)


def syscall_mix(user: Trace, kernel: Trace, syscall_rate: float, kernel_run: float,
                seed: int, n: int | None = None) -> Trace:
    """User work interrupted by system calls.

    A user run has a geometric length with mean ``1 / syscall_rate`` accesses and is
    followed by a kernel run of mean ``kernel_run`` accesses; kernel accesses are marked
    global (kernel mappings are nG = 0). Both rates are workload parameters (``assumed``
    unless measured, e.g. with ``perf stat -e raw_syscalls:sys_enter``).
    """
    check_float("syscall_rate", syscall_rate, lo=1e-9, hi=1.0)
    k = Trace(kernel.address, kernel.kind, np.ones(len(kernel), bool), kernel.size,
              kernel.meta)
    u = Trace(user.address, user.kind, np.zeros(len(user), bool), user.size, user.meta)
    t = interleave(u, k, 1.0 / syscall_rate, kernel_run, seed, n)
    meta = {"generator": "syscall_mix", "syscall_rate": syscall_rate,
            "kernel_run": kernel_run, "seed": seed, "user": user.meta, "kernel": kernel.meta}
    return Trace(t.address, t.kind, t.global_, None, meta)


@dataclass(frozen=True)
class CodeImage:
    """A code image: function ``i`` spans ``[start[i], start[i] + size_bytes[i])``;
    ``popularity[i]`` is its call probability (Zipf over a random order of functions)."""

    start: np.ndarray
    size_bytes: np.ndarray
    popularity: np.ndarray
    meta: dict

    @property
    def text_bytes(self) -> int:
        return int(self.start[-1] - self.start[0]) + int(self.size_bytes[-1])


def code_image(functions: int, seed: int, base: int = KERNEL_BASE + (0x80 << 20),
               median_bytes: float = 256.0, sigma: float = 1.2, align_bytes: int = 16,
               alpha: float = 1.0) -> CodeImage:
    """``functions`` functions laid out back to back from ``base``, sizes log-normal with
    the given median (a multiple of 4 bytes, at least one instruction), each start aligned
    to ``align_bytes`` (``-falign-functions``), popularity Zipf(``alpha``) over a random
    order. The defaults are ``assumed``; measure a real image with ``nm --size-sort``."""
    functions = check_int("functions", functions, lo=1, hi=1 << 22)
    rng = _rng(seed)
    check_float("median_bytes", median_bytes, lo=INSN_BYTES)
    check_float("sigma", sigma, lo=0.0, hi=5.0)
    check_int("align_bytes", align_bytes, lo=INSN_BYTES)
    sizes = np.maximum(INSN_BYTES, (rng.lognormal(np.log(median_bytes), sigma, functions)
                                    // INSN_BYTES).astype(np.int64) * INSN_BYTES)
    padded = (sizes + align_bytes - 1) // align_bytes * align_bytes
    starts = np.uint64(base) + np.concatenate([[0], np.cumsum(padded)[:-1]]).astype(np.uint64)
    w = np.arange(1, functions + 1, dtype=np.float64) ** -check_float("alpha", alpha, lo=0.0)
    pop = np.empty(functions)
    pop[rng.permutation(functions)] = w / w.sum()
    return CodeImage(starts, sizes, pop,
                     {"functions": functions, "median_bytes": median_bytes, "sigma": sigma,
                      "align_bytes": align_bytes, "alpha": alpha, "base": base, "seed": seed})


def _search_right(cdf: np.ndarray, u: np.ndarray, guide: np.ndarray | None = None
                  ) -> np.ndarray:
    """``np.searchsorted(cdf, u, side="right")`` for a non-decreasing ``cdf`` and draws in
    [0, 1): each search starts from ``guide`` (:func:`_bucket_guide` of ``cdf``, built here
    if not given), which a Zipf head narrows to a few entries."""
    if guide is None:
        guide = _bucket_guide(cdf)
    out = np.empty(u.size, np.int64)
    _guided_search(cdf, guide, u, out)
    return out


def _bucket_guide(cdf: np.ndarray) -> np.ndarray:
    """Where every multiple of ``1 / G`` falls in ``cdf`` (:func:`_cdf_guide`), ``G`` a power
    of two: ``u * G`` and ``b / G`` are then exact, so a draw's bucket ``b`` holds its answer
    between two entries of the table."""
    g = 1 << max(10, min(20, (2 * cdf.size - 1).bit_length()))
    guide = np.empty(g + 1, np.int64)
    _cdf_guide(cdf, guide)
    return guide


@njit(_nrt=False)
def _cdf_guide(cdf, guide):
    """``guide[b]``: the first index whose ``cdf`` exceeds ``b / G`` (``G = guide.size - 1``)."""
    g = guide.shape[0] - 1
    i = 0
    for b in range(g + 1):
        x = b / g
        while i < cdf.shape[0] and cdf[i] <= x:
            i += 1
        guide[b] = i


@njit(_nrt=False)
def _guided_search(cdf, guide, u, out):
    """``out[k]``: the first index whose ``cdf`` exceeds ``u[k]``, between ``guide[b]`` and
    ``guide[b + 1]`` for ``b = floor(u[k] * G)``."""
    g = guide.shape[0] - 1
    for k in range(u.shape[0]):
        x = u[k]
        b = min(int(x * g), g - 1)
        lo = guide[b]
        hi = guide[b + 1]
        while lo < hi:
            mid = (lo + hi) >> 1
            if cdf[mid] > x:
                hi = mid
            else:
                lo = mid + 1
        out[k] = lo


def _fetch_runs(image, called, cdf, want, mean_run_insns, branch_fraction, prev_fn, rng,
                guide=None):
    """Runs (function, first instruction, length) whose uncut lengths cover ``want``;
    before the first call/return of the batch, runs stay in ``prev_fn`` (if ≥ 0). A call
    draws function ``called[i]`` for the first ``i`` with ``cdf[i]`` above a uniform draw
    (``called``: the functions of nonzero popularity; ``cdf``: their cumulative popularity):
    the draw of the first function whose cumulative popularity over the whole image exceeds
    it, which is never one of popularity zero, with a search over the called functions only
    (``guide``: :func:`_bucket_guide` of ``cdf``, built here if not given)."""
    runs = _runs(want, mean_run_insns, rng)
    r = len(runs)
    new_fn = rng.random(r) >= branch_fraction
    if prev_fn < 0:
        new_fn[0] = True
    drawn = called[np.minimum(_search_right(cdf, rng.random(r), guide), len(called) - 1)]
    # a run that stays in its function inherits the function of the last call/return
    last = np.maximum.accumulate(np.where(new_fn, np.arange(r), -1))
    fn = np.where(last >= 0, drawn[np.maximum(last, 0)], prev_fn)
    insns = image.size_bytes[fn] // INSN_BYTES
    entry = new_fn & (rng.random(r) < 0.5)
    first = np.where(entry, 0, (rng.random(r) * insns).astype(np.int64))
    return fn, first, np.minimum(runs, insns - first)


@njit(_nrt=False)
def _expand_runs(run_start, length, out):
    """The fetches of runs laid end to end: run ``r`` is ``length[r]`` sequential
    instructions from ``run_start[r]``."""
    k = 0
    for r in range(length.shape[0]):
        a = run_start[r]
        for j in range(length[r]):
            out[k] = a + np.uint64(j * INSN_BYTES)
            k += 1


def instruction_stream(image: CodeImage, n: int, seed: int, mean_run_insns: float = 6.0,
                       branch_fraction: float = 0.7, global_: bool = True) -> Trace:
    """``n`` instruction fetches over ``image``.

    Fetch runs of sequential 4-byte instructions end in a taken branch. With probability
    ``branch_fraction`` the next run stays in the same function (a branch to a random
    instruction of it), otherwise it is a call or return into another function drawn by
    popularity (a call enters at the entry, a return lands mid-function: each half of the
    time). Runs stop at the end of their function. ``global_`` marks the fetches as
    kernel text.
    """
    n = _n(n)
    rng = _rng(seed)
    check_float("mean_run_insns", mean_run_insns, lo=1.0)
    check_float("branch_fraction", branch_fraction, lo=0.0, hi=1.0)
    meta = {"generator": "instruction_stream", "image": image.meta,
            "mean_run_insns": mean_run_insns, "branch_fraction": branch_fraction,
            "seed": seed}
    if n == 0:
        return _trace(np.zeros(0, np.uint64), np.zeros(0, np.uint8), meta,
                      np.zeros(0, bool) if global_ else None)
    cdf = np.cumsum(image.popularity)
    cdf /= cdf[-1]
    called = np.flatnonzero(image.popularity > 0)
    cdf = cdf[called]
    guide = _bucket_guide(cdf)   # one table for every batch of runs
    parts = []
    total = 0
    prev_fn = -1
    while total < n:
        # runs cut at function ends can fall short of n: draw more until they cover it
        fn, first, length = _fetch_runs(image, called, cdf, n - total, mean_run_insns,
                                        branch_fraction, prev_fn, rng, guide)
        parts.append((fn, first, length))
        total += int(length.sum())
        prev_fn = int(fn[-1])
    fn = np.concatenate([p[0] for p in parts])
    first = np.concatenate([p[1] for p in parts])
    length = np.concatenate([p[2] for p in parts])
    ends = np.cumsum(length)
    keep = int(np.searchsorted(ends, n, side="left")) + 1
    length = length[:keep].copy()
    length[-1] -= int(ends[keep - 1] - n)
    run_start = image.start[fn[:keep]] + first[:keep].astype(np.uint64) * np.uint64(INSN_BYTES)
    addr = np.empty(n, np.uint64)
    _expand_runs(run_start, length, addr)
    return _trace(addr, _kind(n, Kind.IFETCH), meta,
                  np.full(n, bool(global_)) if global_ else None)


def with_data(insns: Trace, data: Trace, loads_per_insn: float, seed: int) -> Trace:
    """Instruction fetches with data accesses after a random share of them
    (``loads_per_insn`` data accesses per instruction on average, at most one each), the
    data stream consumed in order and wrapped."""
    rng = _rng(seed)
    check_float("loads_per_insn", loads_per_insn, lo=0.0, hi=1.0)
    if len(data) == 0:
        raise ConfigError("needs data accesses", "data")
    has = rng.random(len(insns)) < loads_per_insn
    m = int(has.sum())
    total = len(insns) + m
    slot = np.arange(len(insns)) + np.concatenate([[0], np.cumsum(has)[:-1]]).astype(np.int64)[
        :len(insns)]
    is_data = np.zeros(total, bool)
    is_data[slot[has] + 1] = True
    addr = np.empty(total, np.uint64)
    kind = np.empty(total, np.uint8)
    addr[~is_data], kind[~is_data] = insns.address, insns.kind
    di = np.arange(m) % len(data)
    addr[is_data], kind[is_data] = data.address[di], data.kind[di]
    glob = None
    if insns.global_ is not None or data.global_ is not None:
        glob = np.empty(total, bool)
        glob[~is_data] = _global(insns)
        glob[is_data] = _global(data)[di]
    return _trace(addr, kind, {"generator": "with_data", "insns": insns.meta,
                               "data": data.meta, "loads_per_insn": loads_per_insn,
                               "seed": seed}, glob)


__all__ = ["sequential", "strided", "uniform", "zipf_ranks", "zipf_pages", "phased",
           "interleave", "syscall_mix", "CodeImage", "code_image", "instruction_stream",
           "with_data", "INSN_BYTES", "KERNEL_BASE"]
