"""asi: the access streams and traces the model runs.

Part of :mod:`kmm.mech.asi`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...config import check_float, check_int
from ...errors import ConfigError

class Workload(NamedTuple):
    """An operation stream: ``kind`` 0 alloc / 1 free, ``ref`` the allocation's id (ids are
    0..allocs-1 in allocation order), ``order``, ``sens`` (1 sensitive), ``mob``
    (:class:`kmm.buddy.MigrateType`), ``cpu``, ``rnd`` (a random word per operation),
    ``reclaim`` (1: direct reclaim may free the allocation, as clean page cache)."""

    kind: np.ndarray
    ref: np.ndarray
    order: np.ndarray
    sens: np.ndarray
    mob: np.ndarray
    cpu: np.ndarray
    rnd: np.ndarray
    reclaim: np.ndarray


# ---- workloads ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AllocClass:
    """One kind of allocation in a stream.

    ``orders`` are probabilities of orders 0, 1, 2... in 4 KiB pages (reduced by the page
    shift for larger granules); ``lifetime`` is the mean lifetime in allocation events
    (exponential), scaled by the generator to reach the stream's occupancy; ``reclaimable``
    allocations (clean page cache) may be freed early by direct reclaim.
    """

    name: str
    weight: float
    orders: tuple[float, ...]
    sensitive: float
    mobility: int
    lifetime: float
    reclaimable: bool = False


#: The workload mixes (sensitivity by class is a modelling choice, ``assumed``): page cache,
#: anonymous memory and reclaimable slab sensitive (the ASI page-allocator RFC of 2025-03-13
#: makes all movable memory sensitive, and its "[RFC HACKS] mm/slub: Set __GFP_SENSITIVE for
#: reclaimable slabs" the reclaimable slabs); unmovable kernel allocations (network buffers,
#: kernel objects) come in both sensitivities, which is why that RFC splits
#: ``MIGRATE_UNMOVABLE``: :func:`make_workload`'s ``unmovable_sensitive`` sets their share
#: (the classes below give 0, every unmovable allocation nonsensitive, when it is not given).
MIXES: dict[str, tuple[AllocClass, ...]] = {
    "mixed": (
        AllocClass("netbuf", 0.35, (0.7, 0.2, 0.1), 0.0, 0, 8.0),
        AllocClass("pagecache", 0.25, (1.0,), 1.0, 1, 400.0, reclaimable=True),
        AllocClass("anon", 0.25, (0.97,) + (0.0,) * 8 + (0.03,), 1.0, 1, 200.0),
        AllocClass("kobj", 0.10, (0.6, 0.3, 0.1), 0.0, 0, 2000.0),
        AllocClass("rslab", 0.05, (0.9, 0.1), 1.0, 2, 300.0),
    ),
    # pages freed as nonsensitive are wanted again at once
    "pathological": (
        AllocClass("nsburst", 0.85, (1.0,), 0.0, 0, 2.0),
        AllocClass("anon", 0.15, (1.0,), 1.0, 1, 200.0),
    ),
}


#: Order of the burst allocations of a phased stream (:func:`make_workload`): 32 KiB,
#: ``PAGE_FRAG_CACHE_MAX_ORDER`` (include/linux/page_frag_cache.h, get_order(32768)), the
#: order ``page_frag_alloc`` refills network buffers with; the sensitive bursts use it too.
BURST_ORDER = 3


def make_workload(mix: str, allocs: int, seed: int, pool_pages: int, page_shift: int = 12,
                  occupancy: float = 0.5, pressure: float = 0.0, cpus: int = 8,
                  unmovable_sensitive: float | None = None, phase_allocs: int = 0,
                  phase_skew: float = 1.0, phase_burst: float = 0.0) -> Workload:
    """An operation stream of ``allocs`` allocations and their frees.

    ``unmovable_sensitive`` (if given) is the probability that an allocation of an
    unmovable class is sensitive, replacing the classes' own: sensitivity is then drawn
    independently of mobility for kernel allocations. ``phase_allocs`` > 0 alternates
    phases of that many allocations: in even phases the classes that are mostly
    nonsensitive are ``phase_skew`` times as likely as usual, in odd phases the mostly
    sensitive ones (the swings of nonsensitive demand that a free-mapped target is for).
    ``phase_burst`` > 0 (with phases) adds to each phase a burst of ``phase_burst`` x pool
    pages of the phase's sensitivity in order-3 blocks (:data:`BURST_ORDER`), allocated
    over the phase's first half and all freed at its end: nonsensitive unmovable ones in
    a nonsensitive phase (network receive buffers: ``page_frag`` refills its cache with
    order-3 pages), sensitive movable ones (anonymous memory) in a sensitive phase. A
    nonsensitive burst leaves that much free memory mapped when it ends, which the next
    sensitive burst needs back as sensitive memory (not reclaimable).
    Lifetimes are scaled so that the expected live memory is ``occupancy`` of the pool.
    ``pressure`` > 0 adds a memory-pressure phase: during the middle fifth of the stream,
    sensitive movable order-0 allocations of ``pressure`` x pool pages in total, all freed
    at its end (not reclaimable: anonymous memory). Blocks still live at the end are never
    freed.
    """
    if mix not in MIXES:
        raise ConfigError(f"unknown mix {mix!r}; known: {', '.join(MIXES)}", "mix")
    check_int("allocs", allocs, lo=1)
    check_float("occupancy", occupancy, lo=0.0, hi=1.0)
    check_float("pressure", pressure, lo=0.0, hi=2.0)
    check_int("phase_allocs", phase_allocs, lo=0)
    check_float("phase_skew", phase_skew, lo=1.0, hi=1000.0)
    check_float("phase_burst", phase_burst, lo=0.0, hi=1.0)
    if unmovable_sensitive is not None:
        check_float("unmovable_sensitive", unmovable_sensitive, lo=0.0, hi=1.0)
    rng = np.random.default_rng(seed)
    classes = MIXES[mix]
    sens_p = np.array([c.sensitive if unmovable_sensitive is None or c.mobility != 0
                       else float(unmovable_sensitive) for c in classes])
    w = np.array([c.weight for c in classes])
    if phase_allocs > 0:
        mostly_ns = sens_p < 0.5
        w_ns = w * np.where(mostly_ns, phase_skew, 1.0)
        w_s = w * np.where(mostly_ns, 1.0, phase_skew)
        w_ns, w_s = w_ns / w_ns.sum(), w_s / w_s.sum()
        phase = (np.arange(allocs) // phase_allocs) % 2
        u = rng.random(allocs)
        cls = np.where(phase == 0, np.searchsorted(np.cumsum(w_ns), u, side="right"),
                       np.searchsorted(np.cumsum(w_s), u, side="right"))
        cls = np.minimum(cls, len(classes) - 1)
        w = (w_ns + w_s) / 2  # the time-average mix, for the lifetime scale
    else:
        cls = rng.choice(len(classes), size=allocs, p=w / w.sum())
    red = page_shift - 12
    order = np.zeros(allocs, np.int64)
    mean_pages = 0.0
    for k, c in enumerate(classes):
        sel = cls == k
        p = np.asarray(c.orders, float)
        o = rng.choice(len(p), size=int(sel.sum()), p=p / p.sum())
        order[sel] = np.maximum(0, o - red)
        pages_k = float((p / p.sum() * (2.0 ** np.maximum(0, np.arange(len(p)) - red))).sum())
        mean_pages += c.weight / w.sum() * pages_k * c.lifetime
    scale = occupancy * pool_pages / mean_pages if mean_pages > 0 else 1.0
    life = np.empty(allocs)
    sens = np.zeros(allocs, np.int8)
    mob = np.zeros(allocs, np.int8)
    rec = np.zeros(allocs, np.int8)
    for k, c in enumerate(classes):
        sel = cls == k
        life[sel] = rng.exponential(c.lifetime * scale, int(sel.sum()))
        sens[sel] = (rng.random(int(sel.sum())) < sens_p[k]).astype(np.int8)
        mob[sel] = c.mobility
        rec[sel] = int(c.reclaimable)
    life = np.maximum(life, 1.0)
    t_alloc = np.arange(allocs, dtype=float)
    t_free = t_alloc + life
    if phase_burst > 0 and phase_allocs > 0:
        bo = max(0, BURST_ORDER - red)
        nb = int(phase_burst * pool_pages) >> bo
        nph = (allocs + phase_allocs - 1) // phase_allocs
        for k in range(nph):
            start = k * phase_allocs
            if nb == 0 or start >= allocs:
                break
            end = min(allocs, start + phase_allocs)
            tb = np.linspace(start, start + (end - start) / 2, nb, endpoint=False) + 0.5
            s_k = k % 2  # even phases nonsensitive, odd sensitive
            t_alloc = np.concatenate([t_alloc, tb])
            t_free = np.concatenate([t_free, np.full(nb, end - 0.25)])
            order = np.concatenate([order, np.full(nb, bo, np.int64)])
            sens = np.concatenate([sens, np.full(nb, s_k, np.int8)])
            mob = np.concatenate([mob, np.full(nb, s_k, np.int8)])
            rec = np.concatenate([rec, np.zeros(nb, np.int8)])
    if pressure > 0:
        npress = int(pressure * pool_pages)
        a0, a1 = 0.4 * allocs, 0.6 * allocs
        tp = np.linspace(a0, a1, npress, endpoint=False) + 0.5
        t_alloc = np.concatenate([t_alloc, tp])
        t_free = np.concatenate([t_free, np.full(npress, a1 + 0.25)])
        order = np.concatenate([order, np.zeros(npress, np.int64)])
        sens = np.concatenate([sens, np.ones(npress, np.int8)])
        mob = np.concatenate([mob, np.full(npress, 1, np.int8)])
        rec = np.concatenate([rec, np.zeros(npress, np.int8)])
    # ids in allocation order
    ids_order = np.argsort(t_alloc, kind="stable")
    t_alloc, t_free = t_alloc[ids_order], t_free[ids_order]
    order, sens, mob, rec = order[ids_order], sens[ids_order], mob[ids_order], rec[ids_order]
    n = t_alloc.shape[0]
    horizon = t_alloc[-1] + 1.0
    freed = t_free < horizon
    ev_t = np.concatenate([t_alloc, t_free[freed]])
    ev_kind = np.concatenate([np.zeros(n, np.int8), np.ones(int(freed.sum()), np.int8)])
    ev_ref = np.concatenate([np.arange(n), np.nonzero(freed)[0]])
    idx = np.lexsort((ev_kind, ev_t))
    ref = ev_ref[idx].astype(np.int64)
    kind = ev_kind[idx]
    cpu_of = rng.integers(0, cpus, n).astype(np.int32)
    m = kind.shape[0]
    return Workload(kind=kind, ref=ref, order=order[ref].astype(np.int8), sens=sens[ref],
                    mob=mob[ref], cpu=cpu_of[ref],
                    rnd=rng.integers(1, np.iinfo(np.int64).max, m, dtype=np.int64),
                    reclaim=rec[ref])
