"""permvmalloc: the access streams and traces the model runs.

Part of :mod:`kmm.mech.permvmalloc`."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ...config import check_float, check_int
from ...errors import ConfigError
from .model import ItlbConfig, PAGE, PermVmalloc, Policy

# ---- modules and BPF programs --------------------------------------------------------------
@dataclass(frozen=True)
class ModuleSpec:
    """Page counts of one module's regions (kernel/module.c ``layout_sections``).

    ``text, ro, rai, rw``: core text, read-only data, ro_after_init data, writable data;
    ``init_text, init_ro, init_rw``: the init layout (``init_rw`` holds the full symbol and
    string tables, ``layout_symtab``); ``elf_pages``: the vmalloc'ed copy of the ELF image.
    """

    name: str
    text: int
    ro: int
    rai: int
    rw: int
    init_text: int
    init_ro: int
    init_rw: int
    elf_pages: int

    @property
    def core_pages(self) -> int:
        return self.text + self.ro + self.rai + self.rw

    @property
    def init_pages(self) -> int:
        return self.init_text + self.init_ro + self.init_rw


@dataclass(frozen=True)
class ModuleMix:
    """How module core sizes (``lsmod``) are split into regions; every share is ``assumed``.

    Parameters
    ----------
    text_fraction, ro_fraction : shares of the core pages that are text and read-only data
    rai_probability : chance that a module has an ro_after_init region (``__jump_table``
        and ``.data..ro_after_init`` are marked ``SHF_RO_AFTER_INIT``): one page
    init_text_probability, init_ro_probability : chance of an init text / init rodata region
    symtab_fraction : init writable pages (symbol and string tables) per core page
    elf_ratio : ELF image pages per core page
    """

    text_fraction: float = 0.55
    ro_fraction: float = 0.2
    rai_probability: float = 0.75
    init_text_probability: float = 0.95
    init_ro_probability: float = 0.3
    symtab_fraction: float = 0.1
    elf_ratio: float = 1.5

    def __post_init__(self):
        check_float("text_fraction", self.text_fraction, 0.05, 0.9)
        check_float("ro_fraction", self.ro_fraction, 0.0, 0.9)
        if self.text_fraction + self.ro_fraction > 0.95:
            raise ConfigError("text_fraction + ro_fraction must leave room for data",
                              "ro_fraction")
        for name in ("rai_probability", "init_text_probability", "init_ro_probability"):
            check_float(name, getattr(self, name), 0.0, 1.0)
        check_float("symtab_fraction", self.symtab_fraction, 0.0, 1.0)
        check_float("elf_ratio", self.elf_ratio, 1.0, 10.0)

    def modules(self, sizes_bytes: Sequence[int], seed: int) -> list[ModuleSpec]:
        """One :class:`ModuleSpec` per size, drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        out = []
        for i, size in enumerate(sizes_bytes):
            check_int("sizes_bytes", size, lo=PAGE)
            core = -(-int(size) // PAGE)
            rai = 1 if (core >= 3 and rng.random() < self.rai_probability) else 0
            text = max(1, round(self.text_fraction * core))
            ro = round(self.ro_fraction * core)
            rw = core - text - ro - rai
            if rw < 1:  # struct module lives in the writable region
                short = 1 - rw
                take = min(short, ro)
                ro -= take
                text -= short - take
                rw = 1
            init_text = max(1, round(core / 200)) if rng.random() < self.init_text_probability else 0
            init_ro = 1 if rng.random() < self.init_ro_probability else 0
            init_rw = max(1, math.ceil(core * self.symtab_fraction))
            elf = max(1, math.ceil(core * self.elf_ratio))
            out.append(ModuleSpec(f"m{i}", text, ro, rai, rw, init_text, init_ro, init_rw, elf))
        return out


def bpf_sizes(n: int, median_bytes: float, p75_bytes: float, cap_bytes: int,
              seed: int) -> np.ndarray:
    """JIT image sizes of ``n`` BPF programs: a lognormal with the given median and 75th
    percentile (50 % under 500 B, 75 % under 2 KB on a production server: Song Liu,
    "[PATCH bpf-next v5 0/6] execmem_alloc for BPF programs", bpf and linux-mm, 2022-11-28),
    capped at ``cap_bytes``."""
    check_int("n", n, lo=0)
    median_bytes = check_float("median_bytes", median_bytes, 16.0)
    p75_bytes = check_float("p75_bytes", p75_bytes, median_bytes)
    check_int("cap_bytes", cap_bytes, lo=64)
    sigma = math.log(p75_bytes / median_bytes) / 0.6744897501960817
    rng = np.random.default_rng(seed)
    s = np.exp(math.log(median_bytes) + sigma * rng.standard_normal(n))
    return np.clip(np.ceil(s), 16, cap_bytes).astype(np.int64)


# ---- workloads ------------------------------------------------------------------------------
def boot(sim: PermVmalloc, modules: Iterable[ModuleSpec]) -> list[dict]:
    """Load every module in order, each followed by its deferred init free; returns the
    per-module state (for later unloads or text layouts)."""
    states = []
    for m in modules:
        st = sim.load_module(m)
        sim.free_module_init(m, st)
        states.append(st)
    return states


def bpf_churn(sim: PermVmalloc, sizes: np.ndarray, live_target: int, seed: int,
              realloc_probability: float = 1.0, shrink_every: int = 0) -> list[dict]:
    """Load one program per size; once ``live_target`` programs are live, each load is
    followed by the free of a random live one. ``shrink_every`` > 0 runs the shrinker every
    that many loads (memory pressure). Returns the programs still live."""
    rng = np.random.default_rng(seed)
    live: list[dict] = []
    for i, b in enumerate(np.asarray(sizes).tolist()):
        live.append(sim.load_bpf(int(b), f"p{i}", realloc=bool(rng.random() < realloc_probability)))
        if len(live) > live_target:
            j = int(rng.integers(0, len(live)))
            live[j], live[-1] = live[-1], live[j]
            sim.free_bpf(live.pop())
        if shrink_every and (i + 1) % shrink_every == 0 and sim.policy.policy == Policy.PERM_ALLOC:
            sim.shrink()
    return live


def random_ops(sim: PermVmalloc, n: int, seed: int) -> None:
    """A random mix of module loads (most followed by their init free), module unloads, BPF
    loads and frees, and (perm_alloc) shrinker runs, for the invariant checks."""
    rng = np.random.default_rng(seed)
    specs = ModuleMix().modules([12288, 16384, 28672, 65536, 139264, 20480], seed)
    mods, progs = [], []
    for _ in range(n):
        u = rng.random()
        if u < 0.2 and len(mods) < 6:
            m = specs[int(rng.integers(0, len(specs)))]
            st = sim.load_module(m)
            if rng.random() < 0.8:
                sim.free_module_init(m, st)
            mods.append((m, st))
        elif u < 0.3 and mods:
            m, st = mods.pop(int(rng.integers(0, len(mods))))
            sim.unload_module(m, st)
        elif u < 0.7:
            progs.append(sim.load_bpf(int(rng.choice([100, 500, 3000, 9000, 70000])), "p"))
        elif progs:
            sim.free_bpf(progs.pop(int(rng.integers(0, len(progs)))))
        if u > 0.995 and sim.policy.policy == Policy.PERM_ALLOC:
            sim.shrink()



# ---- runs and results -----------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What the machine does: a boot loading ``modules`` in order (each followed by its init
    free), then BPF churn over ``bpf_sizes`` with ``bpf_live`` programs kept live."""

    modules: tuple[ModuleSpec, ...] = ()
    bpf_sizes: tuple[int, ...] = ()
    bpf_live: int = 100
    realloc_probability: float = 1.0
    shrink_every: int = 0
    seed: int = 0

    def __post_init__(self):
        check_int("bpf_live", self.bpf_live, lo=1)
        check_float("realloc_probability", self.realloc_probability, 0.0, 1.0)
        check_int("shrink_every", self.shrink_every, lo=0)
        check_int("seed", self.seed, lo=0)


def fetch_trace(text: Sequence[tuple[str, int, int, int]], cfg: ItlbConfig):
    """Instruction-fetch addresses and leaf shifts over ``text`` (see :class:`ItlbConfig`).
    Objects are ranked by a seeded permutation of their names, so two layouts of the same
    objects get the same popularity."""
    objs = sorted(text, key=lambda t: (t[0], t[1]))
    names = sorted({t[0] for t in objs})
    rng = np.random.default_rng(cfg.seed)
    rank = {nm: int(r) for nm, r in zip(names, rng.permutation(len(names)))}
    groups = {"bpf": [t for t in objs if t[0].startswith("bpf")],
              "mod": [t for t in objs if not t[0].startswith("bpf")]}
    calls = -(-cfg.fetches // cfg.run_lines)
    out_va, out_sh = [], []
    shares = {"bpf": cfg.bpf_share if groups["mod"] else 1.0,
              "mod": 1.0 - cfg.bpf_share if groups["bpf"] else 1.0}
    for g, items in groups.items():
        if not items:
            continue
        n = int(round(calls * shares[g]))
        order = sorted(items, key=lambda t: rank[t[0]])
        w = 1.0 / np.arange(1, len(order) + 1) ** cfg.zipf
        pick = rng.choice(len(order), n, p=w / w.sum())
        base = np.array([t[1] for t in order], dtype=np.uint64)
        size = np.array([t[2] for t in order], dtype=np.int64)
        shift = np.array([t[3] for t in order], dtype=np.uint8)
        lines = np.maximum(size // 64, 1)
        start = (rng.random(n) * lines[pick]).astype(np.int64)
        k = np.arange(cfg.run_lines)
        line = np.minimum(start[:, None] + k[None, :], (lines[pick] - 1)[:, None])
        out_va.append((base[pick][:, None] + (line * 64).astype(np.uint64)).ravel())
        out_sh.append(np.repeat(shift[pick], cfg.run_lines))
    va = np.concatenate(out_va) if out_va else np.zeros(0, np.uint64)
    sh = np.concatenate(out_sh) if out_sh else np.zeros(0, np.uint8)
    perm = rng.permutation(calls if va.shape[0] == calls * cfg.run_lines else
                           va.shape[0] // cfg.run_lines)
    idx = (perm[:, None] * cfg.run_lines + np.arange(cfg.run_lines)[None, :]).ravel()
    return va[idx], sh[idx]
