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
               vmalloc'd memory also change the linear alias of every backing page
               (arch/arm64/mm/pageattr.c ``change_memory_common`` with ``rodata_full``)
    BPF        a BPF JIT pack (``bpf_prog_pack``) made read-only-executable, same path
    SECRETMEM  one page removed from the direct map (``set_direct_map_invalid_noflush``)
    VMALLOC_RO a vmalloc range made read-only with its linear alias (the thread's test module)
    DIRECT_MAP one page invalidated and restored (``VM_FLUSH_RESET_PERMS`` on vfree)
    LINEAR     a physically contiguous linear-map range (the kernel image alias made
               read-only, ``arch_kexec_protect_crashkres``, realm shared buffers)
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


def make_stream(mm: MemoryMap, cfg: StreamConfig, seed: int) -> dict[str, np.ndarray]:
    """Draw the stream: arrays ``event, kind, pa, bytes, perm`` (one row per contiguous
    linear-map range; an event with scattered pages has several rows)."""
    rng = np.random.default_rng(seed)
    page = mm.geometry.page_bytes
    banks = allocatable_ranges(mm)
    sizes = np.array([n for _, n in banks], dtype=np.float64)
    w = np.asarray(cfg.weights, dtype=np.float64)
    kinds = rng.choice(len(ChangeKind), size=cfg.events, p=w / w.sum())
    rows = []
    live = []
    for ev, k in enumerate(kinds.tolist()):
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
        for size in runs:
            b = int(rng.choice(len(banks), p=sizes / sizes.sum()))
            start, length = banks[b]
            size = min(size, length)
            off = int(rng.integers(0, (length - size) // page + 1)) * page
            rows.append((ev, k, start + off, size, int(_KIND_PERM[kind])))
        if rng.random() < cfg.free_fraction:
            live.append((len(rows) - len(runs), len(rows)))
    out = np.array(rows, dtype=np.int64).reshape(-1, 5)
    # the freed events are restored read-write after the stream, in event order
    undo = (np.concatenate([out[a:b] for a, b in live]) if live
            else np.empty((0, 5), np.int64))
    if undo.size:
        undo = undo.copy()
        undo[:, 0] += cfg.events
        undo[:, 4] = int(Perm.RW)
    full = np.concatenate([out, undo]) if undo.size else out
    return {"event": full[:, 0], "kind": full[:, 1], "pa": full[:, 2], "bytes": full[:, 3],
            "perm": full[:, 4]}


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
