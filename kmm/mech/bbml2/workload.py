"""bbml2: the access streams and traces the model runs.

Part of :mod:`kmm.mech.bbml2`."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ...config import check_float, check_int
from ...engine import MiB, Perm
from ...errors import ConfigError
from .model import BbmConfig, MemoryMap

# ---- permission-change streams (B9) --------------------------------------------------------
class ChangeKind(IntEnum):
    """Callers of ``__change_memory_common`` on the linear map under rodata=full.

    MODULE     module text/rodata made read-only: ``set_memory_ro``/``set_memory_rox`` on
               vmalloc'd memory also change the linear alias of every backing page, one
               page per call, each with its own ``flush_tlb_kernel_range``
               (arch/arm64/mm/pageattr.c ``change_memory_common`` with ``rodata_full``:
               ``__change_memory_common(page_address(area->pages[i]), PAGE_SIZE, ...)``)
    BPF        a BPF JIT pack (``bpf_prog_pack``) made read-only-executable, same path;
               programs placed in a pack change nothing more (kernel/bpf/core.c
               ``bpf_prog_pack_alloc``), while a program too large for a pack gets its own
               area down the same path (a MODULE-like event)
    SECRETMEM  one page removed from the direct map (``set_direct_map_invalid_noflush``)
    VMALLOC_RO a vmalloc range made read-only with its linear alias (the thread's test module)
    DIRECT_MAP one page invalidated and restored (``VM_FLUSH_RESET_PERMS`` on vfree,
               ``vm_reset_perms`` -> ``set_direct_map_invalid_noflush`` and
               ``set_direct_map_default_noflush``, one flush for the area)
    LINEAR     a physically contiguous linear-map range (the kernel image alias made
               read-only, ``arch_kexec_protect_crashkres``, realm shared buffers), one call
    """

    MODULE = 0
    BPF = 1
    SECRETMEM = 2
    VMALLOC_RO = 3
    DIRECT_MAP = 4
    LINEAR = 5


# permission each kind leaves on the alias while the memory is in use
_KIND_PERM = {ChangeKind.MODULE: Perm.R, ChangeKind.BPF: Perm.R, ChangeKind.SECRETMEM: Perm.NONE,
              ChangeKind.VMALLOC_RO: Perm.R, ChangeKind.DIRECT_MAP: Perm.NONE,
              ChangeKind.LINEAR: Perm.R}


@dataclass(frozen=True)
class StreamConfig:
    """A stream of linear-map permission changes.

    ``weights``: relative frequency of each :class:`ChangeKind`; ``pages``: mean pages per
    change of each kind (geometric, at least 1; LINEAR uses ``linear_bytes``);
    ``alias_run_pages``: mean run of physically consecutive pages behind a vmalloc area
    (order-0 pages from the buddy allocator come out consecutive while it splits one large
    free block, scattered once memory is fragmented); ``free_fraction``: share of changes
    undone later (unload, free) by restoring read-write.
    """

    events: int = 2000
    weights: tuple[float, ...] = (0.40, 0.05, 0.20, 0.05, 0.25, 0.05)
    pages: tuple[float, ...] = (64.0, 512.0, 1.0, 256.0, 1.0, 0.0)
    linear_bytes: int = 32 * MiB
    alias_run_pages: float = 8.0
    free_fraction: float = 0.5

    def __post_init__(self):
        check_int("events", self.events, 1)
        if len(self.weights) != len(ChangeKind) or len(self.pages) != len(ChangeKind):
            raise ConfigError(f"needs one value per kind ({len(ChangeKind)})", "weights")
        for w in self.weights:
            check_float("weights", w, 0.0)
        if sum(self.weights) <= 0:
            raise ConfigError("must not all be zero", "weights")
        for p in self.pages:
            check_float("pages", p, 0.0)
        check_int("linear_bytes", self.linear_bytes, 1)
        check_float("alias_run_pages", self.alias_run_pages, 1.0)
        check_float("free_fraction", self.free_fraction, 0.0, 1.0)


def allocatable_ranges(mm: MemoryMap) -> list[tuple[int, int]]:
    """(PA, bytes) of mapped memory the page allocator can hand out: every bank minus the
    kernel image and the KFENCE pool (whose aliases no caller of the stream changes)."""
    ks, _ = mm.kernel_alias_pa()
    kf = ks + mm.kernel_alias_bytes + mm.kfence_pool_bytes
    out = []
    for s, n in mm.banks_pa():
        for a, b in ((s, min(s + n, ks)), (max(s, kf), s + n)):
            if b > a:
                out.append((a, b - a))
    return out


#: Kinds whose linear-alias change the kernel makes one page per call
#: (``change_memory_common``'s loop over ``area->pages``).
PER_PAGE_KINDS = frozenset({ChangeKind.MODULE, ChangeKind.BPF, ChangeKind.VMALLOC_RO})
_COLUMNS = ("event", "kind", "pa", "bytes", "perm", "flush")


def _events(mm: MemoryMap, cfg: StreamConfig, rng: np.random.Generator, per_page: bool):
    """Per event: ``(kind, rows, freed)``, ``rows`` a list of ``(pa, bytes, flush)`` calls
    in the order the kernel makes them. A vmalloc-backed kind's physical runs of
    ``alias_run_pages`` become one call per page (each flushed) when ``per_page``, else one
    call per run (the merged stream the model used before)."""
    page = mm.geometry.page_bytes
    banks = allocatable_ranges(mm)
    sizes = np.array([n for _, n in banks], dtype=np.float64)
    w = np.asarray(cfg.weights, dtype=np.float64)
    kinds = rng.choice(len(ChangeKind), size=cfg.events, p=w / w.sum())
    out = []
    for k in kinds.tolist():
        kind = ChangeKind(k)
        if kind == ChangeKind.LINEAR:
            runs = [max(page, cfg.linear_bytes // page * page)]
        else:
            mean = max(1.0, cfg.pages[k])
            n = int(rng.geometric(1.0 / mean))
            if kind in (ChangeKind.SECRETMEM, ChangeKind.DIRECT_MAP):
                runs = [page] * n
            else:
                runs = []
                while n > 0:
                    r = min(n, int(rng.geometric(1.0 / cfg.alias_run_pages)))
                    runs.append(r * page)
                    n -= r
        rows = []
        for size in runs:
            b = int(rng.choice(len(banks), p=sizes / sizes.sum()))
            start, length = banks[b]
            size = min(size, length)
            off = int(rng.integers(0, (length - size) // page + 1)) * page
            if per_page and kind in PER_PAGE_KINDS:
                rows += [(start + off + i * page, page, 1) for i in range(size // page)]
            else:
                rows.append((start + off, size, 1))
        if kind == ChangeKind.DIRECT_MAP:
            # vm_reset_perms: every page invalidated, then one flush for the whole area
            rows = [(a, n, int(i == 0)) for i, (a, n, _f) in enumerate(rows)]
        out.append((kind, rows, rng.random() < cfg.free_fraction))
    return out


def _undo_rows(kind: ChangeKind, rows):
    """The calls that restore an event's aliases read-write when its memory is freed:
    vmalloc-backed kinds through ``VM_FLUSH_RESET_PERMS`` (``vm_reset_perms``: page by page,
    one flush for the area), secretmem and direct-map pages made valid again (no flush: a
    non-valid entry is never cached), a linear range with one flushed call."""
    if kind in PER_PAGE_KINDS:
        return [(a, n, int(i == 0)) for i, (a, n, _f) in enumerate(rows)]
    if kind in (ChangeKind.SECRETMEM, ChangeKind.DIRECT_MAP):
        return [(a, n, 0) for a, n, _f in rows]
    return [(a, n, 1) for a, n, _f in rows]


def _arrays(rows) -> dict[str, np.ndarray]:
    a = np.array(rows, dtype=np.int64).reshape(-1, len(_COLUMNS))
    return {c: a[:, i].copy() for i, c in enumerate(_COLUMNS)}


def make_stream(mm: MemoryMap, cfg: StreamConfig, seed: int, *,
                per_page: bool = True) -> dict[str, np.ndarray]:
    """Draw the stream: arrays ``event, kind, pa, bytes, perm, flush``, one row per call
    that changes a linear-map range (``update_range_prot``), ``flush`` 1 where the kernel
    follows it with a ``flush_tlb_kernel_range`` (TLBI + DSB). The changes come first in
    event order, then the freed events' restores in event order. ``per_page=False`` merges
    a vmalloc area's physically consecutive pages into one call (not what the kernel does;
    kept to measure the difference)."""
    rng = np.random.default_rng(seed)
    evs = _events(mm, cfg, rng, per_page)
    rows, undo = [], []
    for ev, (kind, calls, freed) in enumerate(evs):
        perm = int(_KIND_PERM[kind])
        rows += [(ev, int(kind), a, n, perm, f) for a, n, f in calls]
        if freed:
            undo += [(cfg.events + ev, int(kind), a, n, int(Perm.RW), f)
                     for a, n, f in _undo_rows(kind, calls)]
    return _arrays(rows + undo)


def make_uptime_stream(mm: MemoryMap, cfg: StreamConfig, seed: int, hours: float,
                       lifetime_hours: float) -> dict[str, np.ndarray]:
    """:func:`make_stream`'s events spread uniformly over ``hours`` of uptime, each freed
    event restored ``Exp(lifetime_hours)`` later if that falls inside the uptime; rows in
    time order with their time ``t_h`` (hours). Nothing ever merges split leaves back
    (the series has no collapse), so the map only loses blocks."""
    check_float("hours", hours, 0.0)
    check_float("lifetime_hours", lifetime_hours, 0.0)
    rng = np.random.default_rng(seed)
    evs = _events(mm, cfg, rng, True)
    t = np.sort(rng.random(len(evs)) * hours)
    life = rng.exponential(lifetime_hours, len(evs)) if lifetime_hours > 0 \
        else np.zeros(len(evs))
    rows, times = [], []
    for ev, (kind, calls, freed) in enumerate(evs):
        perm = int(_KIND_PERM[kind])
        rows += [(ev, int(kind), a, n, perm, f) for a, n, f in calls]
        times += [t[ev]] * len(calls)
        if freed and t[ev] + life[ev] < hours:
            undo = _undo_rows(kind, calls)
            rows += [(cfg.events + ev, int(kind), a, n, int(Perm.RW), f) for a, n, f in undo]
            times += [t[ev] + life[ev]] * len(undo)
    out = _arrays(rows)
    th = np.asarray(times, dtype=np.float64)
    order = np.argsort(th, kind="stable")
    out = {k: v[order] for k, v in out.items()}
    out["t_h"] = th[order]
    return out


def bbm_draws(cfg: BbmConfig, seed: int) -> dict[str, np.ndarray]:
    """The random inputs of :func:`bbm_count`: per access its time in the change window
    (``t_ns``), its CPU slot (``cpu``: change * cpus + cpu), whether that CPU held the old
    entry (``held`` per slot) and a uniform draw (``u``) for conflict aborts."""
    rng = np.random.default_rng(seed)
    window = cfg.tlbi_ns + cfg.write_ns
    slots = cfg.changes * cfg.cpus
    n = rng.poisson(cfg.access_rate_per_us * window / 1000.0, slots)
    cpu = np.repeat(np.arange(slots, dtype=np.int64), n)
    t = rng.random(cpu.size) * window
    held = (rng.random(slots) < cfg.tlb_hold_prob).astype(np.int64)
    return {"t_ns": t, "cpu": cpu, "held": held, "u": rng.random(cpu.size)}
