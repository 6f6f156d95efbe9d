"""Line caches: per-CPU L1 I, L1 D and L2, and one LLC shared by every CPU.

Instruction fetches, data accesses and the descriptor reads of page walks all go through
the same set-associative line caches (64-byte lines, so one line holds 8 descriptors), so
kernel text and page tables compete for capacity and only their misses reach memory. A
miss in the last level is a memory read charged to the pair (node of the reading CPU, node
holding the line): :class:`CacheResult` keeps those counts per source so that time is a
formula over counts and a latency matrix, never a constant in a kernel.

Modelled behaviour
------------------
- Allocate on every miss in every level on the path (non-inclusive, no back-invalidation),
  physically indexed: set = line number mod sets (a power of two), as pycachesim and
  ChampSim index.
- Descriptor reads of the table walker enter at L1 D or L2 (``walk_entry``); on Neoverse
  cores the walker reads through the L2 (Arm Neoverse N1 TRM, "Memory management unit":
  walk requests are handled by the L2 memory system), which is the default.
- Replacement per level: :class:`kmm.policy.Replacement` (LRU, FIFO, seeded random,
  tree-PLRU), through the policy hooks of :mod:`kmm.policy` shared with the TLBs.

Examples
--------
>>> import numpy as np
>>> from kmm import cache
>>> cfg = cache.CacheConfig(l1d=cache.CacheLevelConfig(4096, 4), llc=None, l2=None, l1i=None)
>>> r = cache.simulate_cache(np.arange(0, 8192, 8, dtype=np.uint64), cfg)
>>> r.counters.l1d_misses, r.counters.mem_reads   # one miss per 64-byte line
(128, 128)
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from . import policy as _policy
from ._jit import njit
from .config import check_choice, check_int, check_pow2
from .counters import Counters
from .errors import ConfigError
from .policy import Replacement


class Level(IntEnum):
    """Cache levels, rows of :attr:`CacheState.geo`."""

    L1I = 0
    L1D = 1
    L2 = 2
    LLC = 3


class Source(IntEnum):
    """Who reads a line: the first index of :attr:`CacheResult.mem_reads`."""

    IFETCH = 0
    DATA = 1
    WALK = 2


class Served(IntEnum):
    """The level that supplied a line."""

    L1 = 0
    L2 = 1
    LLC = 2
    MEMORY = 3


class CacheEvent(IntEnum):
    ACCESSES = 0
    L1I_HITS = 1
    L1I_MISSES = 2
    L1D_HITS = 3
    L1D_MISSES = 4
    L2_HITS = 5
    L2_MISSES = 6
    LLC_HITS = 7
    LLC_MISSES = 8
    MEM_READS = 9
    MEM_IFETCH = 10
    MEM_DATA = 11
    MEM_WALK = 12
    WALK_READS = 13


_HITS = (CacheEvent.L1I_HITS, CacheEvent.L1D_HITS, CacheEvent.L2_HITS, CacheEvent.LLC_HITS)

# geo columns
K_SETS, K_WAYS, K_BASE, K_POLICY = 0, 1, 2, 3
# scalar parameters, geo row 4: line shift, walk entry level, number of CPUs
K_PARAMS = 4


@dataclass(frozen=True)
class CacheLevelConfig:
    """One set-associative line cache of ``size_bytes`` with ``ways`` ways."""

    size_bytes: int
    ways: int
    policy: Replacement = Replacement.LRU

    def __post_init__(self):
        check_int("size_bytes", self.size_bytes, lo=64)
        check_int("ways", self.ways, lo=1)
        object.__setattr__(self, "policy", _policy.parse(self.policy))
        _policy.check_ways(self.policy, self.ways)

    def sets(self, line_bytes: int) -> int:
        lines = self.size_bytes // line_bytes
        if lines % self.ways or lines < self.ways:
            raise ConfigError(f"{self.size_bytes} bytes in {line_bytes}-byte lines do not "
                              f"divide into {self.ways} ways", "size_bytes")
        return check_pow2("sets", lines // self.ways)


@dataclass(frozen=True)
class CacheConfig:
    """Per-CPU L1 I, L1 D, L2 and a shared LLC (any level may be None: absent).

    Defaults are a Neoverse N1 class core: 64 KiB 4-way L1 I and L1 D, 1 MiB 8-way L2
    (Arm Neoverse N1 TRM), and a 32 MiB 16-way LLC (system level cache size depends on the
    SoC: ``assumed``).
    """

    l1i: CacheLevelConfig | None = CacheLevelConfig(64 << 10, 4)
    l1d: CacheLevelConfig | None = CacheLevelConfig(64 << 10, 4)
    l2: CacheLevelConfig | None = CacheLevelConfig(1 << 20, 8)
    llc: CacheLevelConfig | None = CacheLevelConfig(32 << 20, 16)
    line_bytes: int = 64
    walk_entry: str = "l2"
    cpus: int = 1
    seed: int = 0

    def __post_init__(self):
        check_pow2("line_bytes", self.line_bytes)
        check_choice("walk_entry", self.walk_entry, ("l1d", "l2"))
        check_int("cpus", self.cpus, lo=1, hi=4096)
        check_int("seed", self.seed, lo=0)
        for name in ("l1i", "l1d", "l2", "llc"):
            lv = getattr(self, name)
            if lv is not None:
                lv.sets(self.line_bytes)

    def to_state(self) -> "CacheState":
        """Fresh (empty) kernel state: the one place this configuration becomes arrays."""
        geo = np.zeros((5, 4), np.int64)
        private = 0
        for lv, c in ((Level.L1I, self.l1i), (Level.L1D, self.l1d), (Level.L2, self.l2),
                      (Level.LLC, self.llc)):
            if c is None:
                continue
            geo[lv] = (c.sets(self.line_bytes), c.ways, 0 if lv == Level.LLC else private,
                       int(c.policy))
            if lv != Level.LLC:
                private += c.sets(self.line_bytes) * c.ways
        entry = Level.L1D if self.walk_entry == "l1d" else Level.L2
        if geo[entry, K_SETS] == 0:
            entry = Level.L2 if geo[Level.L2, K_SETS] else Level.LLC
        geo[K_PARAMS] = (self.line_bytes.bit_length() - 1, int(entry), self.cpus, 0)
        llc_entries = int(geo[Level.LLC, K_SETS] * geo[Level.LLC, K_WAYS])
        clk = np.zeros((self.cpus + 1, 2), np.int64)
        clk[:, _policy.CTL_RNG] = _policy.seed_streams([self.seed, 1], self.cpus + 1)
        levels = [c for c in (self.l1i, self.l1d, self.l2, self.llc) if c is not None]
        fields = 3 if _policy.needs_policy_field(c.policy for c in levels) else 2
        return CacheState(geo=geo, priv=np.zeros((self.cpus, fields, max(private, 1)), np.int64),
                          llc=np.zeros((1, fields, max(llc_entries, 1)), np.int64), clk=clk)


class CacheState(NamedTuple):
    """Kernel state. ``geo[level]`` = (sets, ways, first entry, policy), ``geo[4]`` =
    (line shift, walk entry level, CPUs, 0); ``priv[cpu, f, e]`` private levels and
    ``llc[0, f, e]`` the shared LLC, ``f`` = 0 key ``line << 1 | 1`` (0 = invalid), 1
    the replacement stamp and 2 (only if a level uses tree-PLRU) the policy's per-set
    state; ``clk[row]`` = (clock, xorshift64 state), the control row of :mod:`kmm.policy`,
    row ``cpus`` for the LLC.
    """

    geo: np.ndarray
    priv: np.ndarray
    llc: np.ndarray
    clk: np.ndarray


# ---------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------
# fields of CacheState.priv and .llc: key, replacement stamp, policy state (tree-PLRU only)
F_KEY, F_STAMP, F_POLICY = 0, 1, 2


@njit(inline="always", _nrt=False)
def _touch(ent, r, geo, lv, key, clk, cr):
    """Look ``key`` up in level ``lv`` (row ``r`` of ``ent``); allocate it on a miss.
    Returns True on a hit. An invalid way has stamp 0 and every valid one a positive
    stamp, so the smallest stamp (first on ties) is a free way if there is one."""
    r = np.uint64(r)
    ways = np.uint64(geo[lv, K_WAYS])
    row = np.uint64(geo[lv, K_BASE]) + (np.uint64(key >> 1) & np.uint64(geo[lv, K_SETS] - 1)) \
        * ways
    policy = geo[lv, K_POLICY]
    # one pass: the lookup, and the set's oldest entry (:func:`kmm.policy.oldest`) on the way
    victim = row
    ms = ent[r, F_STAMP, row]
    for w in range(ways):
        e = row + w
        if ent[r, F_KEY, e] == key:
            _policy.on_hit(policy, ent, r, F_STAMP, F_POLICY, e, row, ways, clk, cr)
            return True
        x = ent[r, F_STAMP, e]
        victim = e if x < ms else victim
        ms = min(x, ms)
    victim = _policy.choose(policy, victim, ms, ent, r, F_POLICY, row, ways, clk, cr)
    ent[r, F_KEY, victim] = key
    _policy.on_fill(policy, ent, r, F_STAMP, F_POLICY, victim, row, ways, clk, cr)
    return False


@njit(inline="always", _nrt=False)
def cache_access(cs, c, pa, src, cpu_node, line_node, counts, mem):
    """One read of physical address ``pa`` by CPU ``c`` from ``src`` (:class:`Source`).

    Probes from the entry level (L1 I for fetches, L1 D for data, the walk entry level for
    descriptors) down to the LLC; a miss everywhere counts one memory read in
    ``mem[src, cpu_node, line_node]``. Returns the :class:`Served` level.
    """
    geo = cs.geo
    key = ((pa >> geo[K_PARAMS, 0]) << 1) | 1
    counts[CacheEvent.ACCESSES] += 1
    if src == Source.IFETCH:
        lv = Level.L1I
    elif src == Source.DATA:
        lv = Level.L1D
    else:
        lv = geo[K_PARAMS, 1]
        counts[CacheEvent.WALK_READS] += 1
    if lv <= Level.L1D:
        if geo[lv, K_SETS] > 0:
            if _touch(cs.priv, c, geo, lv, key, cs.clk, c):
                counts[CacheEvent.L1I_HITS if lv == Level.L1I else CacheEvent.L1D_HITS] += 1
                return Served.L1
            counts[CacheEvent.L1I_MISSES if lv == Level.L1I else CacheEvent.L1D_MISSES] += 1
        lv = Level.L2
    if lv == Level.L2:
        if geo[Level.L2, K_SETS] > 0:
            if _touch(cs.priv, c, geo, Level.L2, key, cs.clk, c):
                counts[CacheEvent.L2_HITS] += 1
                return Served.L2
            counts[CacheEvent.L2_MISSES] += 1
    if geo[Level.LLC, K_SETS] > 0:
        if _touch(cs.llc, 0, geo, Level.LLC, key, cs.clk, geo[K_PARAMS, 2]):
            counts[CacheEvent.LLC_HITS] += 1
            return Served.LLC
        counts[CacheEvent.LLC_MISSES] += 1
    counts[CacheEvent.MEM_READS] += 1
    counts[CacheEvent.MEM_IFETCH + src] += 1
    mem[src, cpu_node, line_node] += 1
    return Served.MEMORY


#: Columns per CPU of a last-line filter (:func:`cache_access_last`): the key of the last
#: line read through L1 I, then through L1 D.
LAST_LINE_FIELDS = 2


@njit(inline="always", _nrt=False)
def cache_repeats_last(cs, c, pa, src, last):
    """Whether a fetch or data read of ``pa`` repeats CPU ``c``'s last line in its L1 as
    :func:`cache_access_last` records it: an L1 hit that changes no state (counted by
    :func:`count_repeats`)."""
    if src == Source.WALK or last.shape[0] == 0:
        return False
    lv = np.uint64(0) if src == Source.IFETCH else np.uint64(1)
    geo = cs.geo
    return geo[lv, K_SETS] > 0 and last[np.uint64(c), lv] == ((pa >> geo[K_PARAMS, 0]) << 1) | 1


@njit(inline="always", _nrt=False)
def count_repeats(counts, fetches, data):
    """Count reads :func:`cache_repeats_last` settled: ``fetches`` L1 I hits and ``data``
    L1 D hits."""
    counts[CacheEvent.ACCESSES] += fetches + data
    counts[CacheEvent.L1I_HITS] += fetches
    counts[CacheEvent.L1D_HITS] += data


@njit(_nrt=False)
def cache_access_last(cs, c, pa, src, cpu_node, line_node, counts, mem, last):
    """:func:`cache_access` behind a last-line filter: the same served level, counts and
    state, faster when a fetch or data read repeats CPU ``c``'s last line in its L1.

    ``last[c, k]`` (int64, zeroed to start) is the key of the line last read through L1 I
    (k = 0) or L1 D (k = 1); that line is its set's most recent, so reading it again is an
    L1 hit whose replacement hooks change nothing (:func:`kmm.tlb.tlb_translate_last`).
    Walk reads that enter at L1 D keep ``last`` current; zero it whenever the caches change
    otherwise. A ``last`` of no rows turns the filter off.
    """
    if cache_repeats_last(cs, c, pa, src, last):
        count_repeats(counts, np.int64(src == Source.IFETCH), np.int64(src != Source.IFETCH))
        return Served.L1
    geo = cs.geo
    lv = np.uint64(0) if src == Source.IFETCH else np.uint64(1)
    on = src != Source.WALK or geo[K_PARAMS, 1] == Level.L1D   # a walk read entering at L1 D
    if on and last.shape[0] > 0 and geo[lv, K_SETS] > 0:
        last[np.uint64(c), lv] = ((pa >> geo[K_PARAMS, 0]) << 1) | 1
    return cache_access(cs, c, pa, src, cpu_node, line_node, counts, mem)


@njit(inline="always", _nrt=False)
def _at(a, i):
    return a[i] if a.shape[0] > 1 else a[0]


@njit(_nrt=False)
def _run(cs, pa, src, cpu, cpu_node, line_node, counts, mem, served):
    record = served.shape[0] == pa.shape[0]
    for i in range(pa.shape[0]):
        c = np.int64(_at(cpu, i))
        r = cache_access(cs, c, pa[i], np.int64(_at(src, i)), np.int64(cpu_node[c]),
                         np.int64(_at(line_node, i)), counts, mem)
        if record:
            served[i] = r


# ---------------------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------------------
@dataclass
class CacheResult:
    """Counters and memory reads per (source, CPU node, line node) of a cache run."""

    counters: Counters
    mem_reads: np.ndarray   # int64 [Source, nodes, nodes]
    served: np.ndarray | None = None

    def memory_ns(self, latency_ns: np.ndarray) -> np.ndarray:
        """Memory time per source (ns): reads times ``latency_ns[cpu_node, line_node]``."""
        lat = np.asarray(latency_ns, dtype=np.float64)
        return np.einsum("sij,ij->s", self.mem_reads.astype(np.float64), lat)


def _per_access(name, value, n, dtype, default):
    if value is None:
        return np.full(1, default, dtype)
    a = np.asarray(value)
    if a.ndim == 0:
        return a.astype(dtype).reshape(1)
    if a.shape != (n,):
        raise ConfigError(f"must be a scalar or one value per access ({n}), got {a.shape}",
                          name)
    return np.ascontiguousarray(a, dtype=dtype)


class Caches:
    """A cache hierarchy with state that persists across runs."""

    def __init__(self, config: CacheConfig, nodes: int = 1, cpu_node=None):
        self.config = config
        self.nodes = check_int("nodes", nodes, lo=1, hi=1024)
        self.cpu_node = _cpu_nodes(cpu_node, config.cpus, self.nodes)
        self.state = config.to_state()
        self.counts = Counters(CacheEvent)
        self.mem = np.zeros((len(Source), self.nodes, self.nodes), np.int64)

    def run(self, addresses, source=None, cpu=None, node=None, record=False) -> CacheResult:
        """Read ``addresses`` (physical, uint64); ``source`` :class:`Source` per access
        (default data), ``node`` the NUMA node holding each line (default 0)."""
        pa = np.ascontiguousarray(np.asarray(addresses).astype(np.uint64, copy=False)).view(
            np.int64)
        n = pa.shape[0]
        src = _per_access("source", source, n, np.uint8, Source.DATA)
        if src.size and src.max(initial=0) > Source.WALK:
            raise ConfigError("sources are 0 (ifetch), 1 (data), 2 (walk)", "source")
        cpu_a = _per_access("cpu", cpu, n, np.int32, 0)
        if cpu_a.min(initial=0) < 0 or cpu_a.max(initial=0) >= self.config.cpus:
            raise ConfigError(f"CPU numbers must be in 0..{self.config.cpus - 1}", "cpu")
        node_a = _per_access("node", node, n, np.int32, 0)
        if node_a.min(initial=0) < 0 or node_a.max(initial=0) >= self.nodes:
            raise ConfigError(f"nodes must be in 0..{self.nodes - 1}", "node")
        served = np.empty(n if record else 0, np.int8)
        _run(self.state, pa, src, cpu_a, self.cpu_node, node_a, self.counts.values, self.mem,
             served)
        return CacheResult(self.counts.snapshot(), self.mem.copy(), served if record else None)


def _cpu_nodes(cpu_node, cpus: int, nodes: int) -> np.ndarray:
    if cpu_node is None:
        return np.zeros(cpus, np.int64)
    a = np.asarray(cpu_node, dtype=np.int64).reshape(-1)
    if a.shape[0] != cpus:
        raise ConfigError(f"needs one node per CPU ({cpus}), got {a.shape[0]}", "cpu_node")
    if a.min() < 0 or a.max() >= nodes:
        raise ConfigError(f"nodes must be in 0..{nodes - 1}", "cpu_node")
    return np.ascontiguousarray(a)


def node_of(addresses, region_starts, region_nids) -> np.ndarray:
    """Node holding each address, from sorted region starts and the node of each region
    (an address below the first start belongs to the first region)."""
    a = np.asarray(addresses).astype(np.uint64, copy=False)
    starts = np.asarray(region_starts, dtype=np.uint64)
    nids = np.asarray(region_nids, dtype=np.int32)
    if starts.ndim != 1 or starts.shape != nids.shape or starts.size == 0:
        raise ConfigError("needs one node per region start", "region_nids")
    if np.any(starts[1:] <= starts[:-1]):
        raise ConfigError("region starts must be increasing", "region_starts")
    i = np.searchsorted(starts, a, side="right") - 1
    return nids[np.maximum(i, 0)]


def simulate_cache(addresses, config: CacheConfig, *, source=None, cpu=None, node=None,
                   nodes: int = 1, cpu_node=None, record: bool = False) -> CacheResult:
    """Run physical ``addresses`` through a fresh cache hierarchy.

    Parameters
    ----------
    addresses : uint64 physical addresses
    config : :class:`CacheConfig`
    source : :class:`Source` per access (or one value; default data)
    cpu : reading CPU per access; ``cpu_node`` the node of each CPU
    node : NUMA node holding each line (per access or one value)
    nodes : number of NUMA nodes (size of the memory-read matrix)
    record : keep the :class:`Served` level of every access
    """
    return Caches(config, nodes, cpu_node).run(addresses, source, cpu, node, record)


def bench_simulate_cache(n: int = 5_000_000, seed: int = 0) -> dict:
    """Accesses per second of the default hierarchy on a Zipf-like mix of lines (best of 3)."""
    import time
    rng = np.random.default_rng(seed)
    pa = (rng.zipf(1.2, n).astype(np.uint64) % np.uint64(1 << 22)) << np.uint64(6)
    simulate_cache(pa[:1000], CacheConfig())
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        r = simulate_cache(pa, CacheConfig())
        best = min(best, time.perf_counter() - t0)
    return {"accesses": n, "seconds": best, "accesses_per_s": n / best,
            "mem_reads": r.counters.mem_reads}


__all__ = ["Level", "Source", "Served", "CacheEvent", "CacheLevelConfig", "CacheConfig", "node_of",
           "CacheState", "CacheResult", "Caches", "cache_access", "cache_access_last",
           "cache_repeats_last", "count_repeats", "LAST_LINE_FIELDS", "simulate_cache",
           "bench_simulate_cache"]
