"""Translation lookaside buffers: per-CPU L1 I, L1 D and unified L2, plus page-walk caches.

A TLB is a set-associative cache of translations (ChampSim, gem5 ``ArmISA::TLB``). Every
structure of every CPU lives in one set of flat arrays (:class:`TLBState`), so one Numba
kernel serves every hierarchy and :mod:`kmm.invalidate` can drop entries without knowing
how they were filled.

Modelled behaviour
------------------
- Entries are tagged with the size they map. A lookup probes every size the structure can
  hold, each with its own set index, as multi-size TLBs do (Arm ARM D8.12 "Translation
  Lookaside Buffers"; a structure may splinter leaves larger than its ``max_page_shift``
  into entries of that size, as the Cortex-A76 L1 TLBs do). With ``detect_conflicts``, a
  lookup that matches entries of more than one size counts a conflict: Arm ARM D8.16.1
  "TLB conflict abort", the situation break-before-make avoids (arch/arm64/mm/mmu.c,
  ``BBML2_NOABORT``).
- A contiguous range (``PTE_CONT``, Arm ARM D8.6.1 "the Contiguous bit") may be held as one
  entry of the whole range when the configuration honours the hint (it is
  IMPLEMENTATION DEFINED whether an implementation does).
- Entries carry an ASID and a VMID. Global entries (nG = 0: kernel mappings, Arm ARM
  D8.14 "Global and process-specific translation table entries") match any ASID, never a
  different VMID.
- A combined stage-1 + stage-2 entry maps no more than the smaller of the two leaves
  (Arm ARM D8.12.2 "TLB entries for two stages of translation").
- Replacement: :class:`kmm.policy.Replacement` (LRU, FIFO, seeded random, tree-PLRU), through
  the policy hooks of :mod:`kmm.policy` shared with the line caches.
- Invalidation by VA, range, ASID, VMID and all (``TLBI VAE1``/``VALE1``, ``RVAE1``,
  ``ASIDE1``, ``VMALLS12E1``, ``ALLE1``; Arm ARM C5.5 "A64 system instructions for TLB
  maintenance"), per CPU or for every CPU (the broadcast ``...IS`` forms). The stage-2
  walk cache is indexed by IPA and dropped only by VMID or all (``TLBI IPAS2E1`` by IPA is
  not modelled).

Addresses are handled as int64 (a uint64 view): kernel VAs are negative, which keeps every
tag unique and every range test consistent, since no range straddles the two halves.

Examples
--------
>>> import numpy as np
>>> from kmm import tlb
>>> pages = np.array([0, 1, 2, 0, 4, 1], dtype=np.uint64) << np.uint64(12)
>>> tlb.simulate_trace(pages, tlb.TLBConfig.single(entries=4, ways=2)).misses
4
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from . import policy as _policy
from ._jit import njit
from .assumed import Assumed
from .config import check_int, check_pow2
from .counters import Counters
from .errors import ConfigError
from .policy import Replacement


class Structure(IntEnum):
    """Index of a structure in :class:`TLBState` (the same for every CPU)."""

    L1I = 0
    L1D = 1
    L2 = 2
    WALK = 3      # stage-1 walk cache: table descriptors of levels above the leaf, by VA
    S2WALK = 4    # stage-2 walk cache: IPA -> PA leaves and upper descriptors, by IPA


N_STRUCTURES = len(Structure)
MAX_PROBES = 8
GLOBAL_ASID = -1


class Kind(IntEnum):
    """Access kind, bits 0-1 of the per-access ``flags`` byte."""

    LOAD = 0
    STORE = 1
    IFETCH = 2


FLAG_KIND_MASK = 3
FLAG_GLOBAL = 4   # the access maps through a global (nG = 0) translation


class Outcome(IntEnum):
    """Where :func:`trace_outcomes` found each access's translation."""

    L1 = 0
    L2 = 1
    WALK = 2


class TLBEvent(IntEnum):
    """TLB counters. ``MISSES`` counts accesses that missed every TLB level (walks)."""

    ACCESSES = 0
    L1I_HITS = 1
    L1I_MISSES = 2
    L1D_HITS = 3
    L1D_MISSES = 4
    L2_HITS = 5
    L2_MISSES = 6
    MISSES = 7
    CONFLICTS = 8
    FILLS = 9
    EVICTIONS = 10


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TLBLevelConfig:
    """One set-associative structure.

    Parameters
    ----------
    entries : total entries (``entries // ways`` sets, a power of two)
    ways : associativity (``ways == entries`` is fully associative)
    policy : :class:`Replacement`
    max_page_shift : the largest entry this structure holds; a larger leaf is splintered
        into an entry of this size (None: every size the configuration holds)
    """

    entries: int
    ways: int
    policy: Replacement = Replacement.LRU
    max_page_shift: int | None = None

    def __post_init__(self):
        check_int("entries", self.entries, lo=1)
        check_int("ways", self.ways, lo=1, hi=min(self.entries, 1 << 15))
        if self.entries % self.ways:
            raise ConfigError(f"{self.entries} entries are not a multiple of {self.ways} ways",
                              "entries")
        check_pow2("sets", self.entries // self.ways)
        object.__setattr__(self, "policy", _policy.parse(self.policy))
        _policy.check_ways(self.policy, self.ways)
        if self.max_page_shift is not None:
            check_int("max_page_shift", self.max_page_shift, lo=10, hi=48)

    @property
    def sets(self) -> int:
        return self.entries // self.ways


#: Entries of the stage-1 walk cache (table descriptors above the leaf): not published.
WALK_CACHE_ENTRIES = Assumed(
    "walk_cache_entries", 64, 32, 128,
    "Neoverse N1 / Cortex-A76 walk-cache sizes are not published; half to twice the 64 "
    "entries assumed")
#: Entries of the stage-2 walk cache (IPA -> PA of stage-2 table descriptors): not published;
#: 0 is a core without one.
S2_WALK_CACHE_ENTRIES = Assumed(
    "s2_walk_cache_entries", 64, 0, 128,
    "the stage-2 walk cache size is not published; from none (0) to twice the stage-1 walk "
    "cache's assumed size")


@dataclass(frozen=True)
class TLBConfig:
    """A per-CPU TLB hierarchy and its page-walk caches.

    Parameters
    ----------
    l1i, l1d : L1 instruction and data TLBs (None: absent; accesses go straight to ``l2``)
    l2 : unified L2 TLB (None: absent; an L1 miss is a walk)
    walk_cache : stage-1 page-walk cache of upper-level table descriptors (used by
        :mod:`kmm.walk`)
    s2_walk_cache : stage-2 walk cache of IPA -> PA leaves and upper descriptors
    page_shifts : every entry size the configuration holds: leaf sizes of every geometry in
        use and, when the contiguous hint is honoured, contiguous-range sizes
    honour_cont : hold a contiguous range as one entry (IMPLEMENTATION DEFINED)
    detect_conflicts : probe every size on every lookup and count multiple matches
        (``TLBEvent.CONFLICTS``); otherwise a lookup stops at its first match, which gives
        the same hits and misses whenever no two entries overlap
    cpus : number of CPUs, each with its own copy of every structure
    seed : seed of the per-CPU xorshift64 streams of random replacement
    """

    l1i: TLBLevelConfig | None = None
    l1d: TLBLevelConfig | None = None
    l2: TLBLevelConfig | None = None
    walk_cache: TLBLevelConfig | None = None
    s2_walk_cache: TLBLevelConfig | None = None
    page_shifts: tuple[int, ...] = (12,)
    honour_cont: bool = True
    detect_conflicts: bool = False
    cpus: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.l1i is None and self.l1d is None and self.l2 is None:
            raise ConfigError("a TLB hierarchy needs at least one of l1i, l1d, l2", "l2")
        if (self.l1i is None) != (self.l1d is None) and self.l2 is None:
            raise ConfigError("with no l2, give both l1i and l1d", "l1i")
        shifts = tuple(sorted({check_int("page_shifts", s, lo=10, hi=48)
                               for s in self.page_shifts}))
        if not shifts:
            raise ConfigError("at least one page size is needed", "page_shifts")
        if len(shifts) > MAX_PROBES:
            raise ConfigError(f"at most {MAX_PROBES} entry sizes, got {len(shifts)}",
                              "page_shifts")
        object.__setattr__(self, "page_shifts", shifts)
        check_int("cpus", self.cpus, lo=1, hi=4096)
        check_int("seed", self.seed, lo=0)

    # ---- factories ------------------------------------------------------------------
    @classmethod
    def single(cls, entries: int = 1024, ways: int = 4,
               policy: Replacement | str = Replacement.LRU, page_shift: int = 12) -> "TLBConfig":
        """One unified TLB of ``entries`` entries, ``ways``-way, one page size (4K default)."""
        return cls(l2=TLBLevelConfig(entries, ways, policy), page_shifts=(page_shift,))

    @classmethod
    def neoverse_n1(cls, page_shifts: tuple[int, ...] = (12,), cpus: int = 1,
                    walk_cache_entries: int = int(WALK_CACHE_ENTRIES),
                    s2_walk_cache_entries: int = int(S2_WALK_CACHE_ENTRIES),
                    policy: Replacement | str = Replacement.LRU, seed: int = 0,
                    honour_cont: bool = True) -> "TLBConfig":
        """Neoverse N1 / Cortex-A76 class: 48-entry fully associative L1 I and D, 1280-entry
        5-way L2 (Arm Cortex-A76 Core Technical Reference Manual, MMU chapter).

        The walk-cache sizes are not published: ``assumed`` (:data:`WALK_CACHE_ENTRIES`,
        :data:`S2_WALK_CACHE_ENTRIES`), 4-way.
        """
        wc = TLBLevelConfig(walk_cache_entries, 4, policy) if walk_cache_entries else None
        s2 = TLBLevelConfig(s2_walk_cache_entries, 4, policy) if s2_walk_cache_entries else None
        return cls(l1i=TLBLevelConfig(48, 48, policy), l1d=TLBLevelConfig(48, 48, policy),
                   l2=TLBLevelConfig(1280, 5, policy), walk_cache=wc, s2_walk_cache=s2,
                   page_shifts=page_shifts, honour_cont=honour_cont, cpus=cpus, seed=seed)

    def with_geometry(self, *geometries) -> "TLBConfig":
        """This configuration holding every leaf (and contiguous, if honoured) size of the
        given :class:`kmm.geometry.Geometry` objects."""
        return _replace(self, page_shifts=tuple(sorted(set(self.page_shifts) | set(
            entry_sizes(*geometries, cont=self.honour_cont)))))

    def levels(self) -> dict[Structure, TLBLevelConfig]:
        out = {Structure.L1I: self.l1i, Structure.L1D: self.l1d, Structure.L2: self.l2,
               Structure.WALK: self.walk_cache, Structure.S2WALK: self.s2_walk_cache}
        return {k: v for k, v in out.items() if v is not None}

    # ---- the one place configuration becomes kernel arrays -------------------------
    def to_state(self, walk_probe_shifts: dict[Structure, tuple[int, ...]] | None = None
                 ) -> "TLBState":
        """Fresh (empty) kernel state for this configuration.

        ``walk_probe_shifts`` gives the tag sizes the walk caches hold (the level shifts of
        the table levels they cache); :mod:`kmm.walk` supplies it.
        """
        walk_probe_shifts = walk_probe_shifts or {}
        geo = np.zeros((N_STRUCTURES, G_PROBES + MAX_PROBES), np.int64)
        geo[:, G_MAXSHIFT] = 63
        total = 0
        for s, lv in self.levels().items():
            geo[s, G_SETS], geo[s, G_WAYS], geo[s, G_BASE] = lv.sets, lv.ways, total
            geo[s, G_POLICY] = int(lv.policy)
            geo[s, G_LAST] = int(self.detect_conflicts)
            total += lv.entries
            if s in (Structure.WALK, Structure.S2WALK):
                shifts = tuple(sorted(set(walk_probe_shifts.get(s, ()))))
            else:
                cap = lv.max_page_shift if lv.max_page_shift is not None else 63
                geo[s, G_MAXSHIFT] = cap
                shifts = tuple(sorted({min(p, cap) for p in self.page_shifts}))
            if len(shifts) > MAX_PROBES:
                raise ConfigError(f"at most {MAX_PROBES} tag sizes per structure",
                                  Structure(s).name.lower())
            geo[s, G_NPROBE] = len(shifts)
            geo[s, G_PROBES:G_PROBES + len(shifts)] = shifts
        cpu = np.zeros((self.cpus, C_HINT + N_STRUCTURES * HINT_SLOTS), np.int64)
        cpu[:, C_RNG] = _policy.seed_streams(self.seed, self.cpus)
        cpu[:, C_HINT:] = np.repeat(geo[:, G_BASE], HINT_SLOTS)
        fields = 4 if _policy.needs_policy_field(lv.policy for lv in self.levels().values()) \
            else 3
        return TLBState(geo=geo, ent=np.zeros((self.cpus, fields, max(total, 1)), np.int64),
                        cpu=cpu, filt=np.zeros((self.cpus, N_STRUCTURES, FILTER_BUCKETS),
                                               np.int32))


def _replace(obj, **changes):
    from dataclasses import replace
    return replace(obj, **changes)


def entry_sizes(*geometries, cont: bool = True) -> tuple[int, ...]:
    """Every entry size (log2 bytes) the leaves of ``geometries`` can need: page and block
    sizes and, with ``cont``, contiguous-range spans."""
    out = set()
    for g in geometries:
        for lv in g.leaf_levels:
            out.add(g.leaf_bytes(lv).bit_length() - 1)
            c = g.cont_bytes(lv)
            if cont and c:
                out.add(c.bit_length() - 1)
    return tuple(sorted(out))


# columns of TLBState.geo (one row per structure)
G_SETS, G_WAYS, G_BASE, G_POLICY, G_NPROBE, G_MAXSHIFT, G_LAST = 0, 1, 2, 3, 4, 5, 6
G_PROBES = 8
# fields of TLBState.ent (ent[cpu, field, entry]); E_POLICY only with a tree-PLRU structure
E_KEY, E_CTX, E_STAMP, E_POLICY = 0, 1, 2, 3
# columns of TLBState.cpu (the policy hooks' control row)
C_CLOCK, C_RNG = _policy.CTL_CLOCK, _policy.CTL_RNG
# per-CPU hints start at this column of TLBState.cpu: HINT_SLOTS per structure, slot
# (va >> size) mod HINT_SLOTS holds the column of the last entry hit or filled there
C_HINT = 2
HINT_SLOTS = 64
FILTER_BUCKETS = 1024
_FILTER_SHIFT = np.uint64(64 - 10)


@njit(inline="always", _nrt=False)
def _bucket(key):
    return (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> _FILTER_SHIFT


def filter_counts(st: "TLBState") -> np.ndarray:
    """The ``filt`` array recomputed from the entries (for checks and after the fast path)."""
    f = np.zeros_like(st.filt)
    for s in range(st.geo.shape[0]):
        b, n = int(st.geo[s, G_BASE]), int(st.geo[s, G_SETS] * st.geo[s, G_WAYS])
        keys = st.ent[:, E_KEY, b:b + n]
        h = ((keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> _FILTER_SHIFT)
        for c in range(keys.shape[0]):
            valid = keys[c] != 0
            f[c, s] = np.bincount(h[c][valid].astype(np.int64), minlength=FILTER_BUCKETS)
    return f


class TLBState(NamedTuple):
    """Flat kernel state of every structure of every CPU (three arrays, so kernels that take
    it stay cheap to call).

    ``geo[s]`` (int64, one row per :class:`Structure`): sets (a power of two; 0 = absent),
    ways, first entry column, :class:`Replacement`, number of tag sizes, largest entry size,
    conflict detection flag, then the tag sizes (log2 bytes, ascending).
    ``ent[c, f, e]`` (int64): for CPU ``c`` and entry ``e``, ``f`` = 0 the key
    ``(va >> size) << 6 | size`` (0 = invalid; read it with :func:`key_start` and
    :func:`key_shift`), 1 the context ``vmid << 32 | (asid + 1)`` (``asid + 1`` = 0 for a
    global entry), 2 the replacement stamp, 3 (only if a structure uses tree-PLRU) the
    policy's per-set state (:mod:`kmm.policy`).
    ``cpu[c]`` (int64): clock, xorshift64 state, then ``HINT_SLOTS`` hints per structure
    (the column of the last entry hit or filled for a tag, probed first; a pure speed-up:
    a hint is only taken after checking the entry's key and context, so it changes no
    outcome).
    ``filt[c, s, b]`` (int32): how many valid entries of structure ``s`` have a key hashing
    to bucket ``b``; a probe whose bucket is empty cannot match and skips the set scan
    (another pure speed-up: misses and absent sizes cost O(1)).
    """

    geo: np.ndarray
    ent: np.ndarray
    cpu: np.ndarray
    filt: np.ndarray


class Accesses(NamedTuple):
    """Per-access kernel arrays. Each is either one value per access or a single value that
    applies to every access.

    ``va`` int64 (uint64 view), ``flags`` uint8 (:class:`Kind` | ``FLAG_GLOBAL``),
    ``shift`` uint8 (log2 of the entry size this access can use), ``asid`` int32, ``vmid``
    int32, ``cpu`` int32.
    """

    va: np.ndarray
    flags: np.ndarray
    shift: np.ndarray
    asid: np.ndarray
    vmid: np.ndarray
    cpu: np.ndarray


# ---------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------
@njit(inline="always", _nrt=False)
def _at(a, i):
    return a[i] if a.shape[0] > 1 else a[0]


@njit(inline="always", _nrt=False)
def context(asid, vmid):
    """The context word an entry is tagged with (``asid`` −1: global)."""
    return (np.int64(vmid) << 32) | (np.int64(asid) + 1)


@njit(inline="always", _nrt=False)
def key_shift(key):
    """Log2 of the bytes an entry with key ``key`` maps (0 for an invalid key)."""
    return key & 63


@njit(inline="always", _nrt=False)
def key_start(key):
    """First address an entry with key ``key`` maps."""
    return (key >> 6) << (key & 63)


@njit(inline="always", _nrt=False)
def tlb_cpus(st):
    """CPUs of a :class:`TLBState`."""
    return st.ent.shape[0]


@njit(inline="always", _nrt=False)
def structure_entries(st, s):
    """Entry columns ``[first, end)`` of structure ``s`` (empty when it is absent)."""
    b = st.geo[s, G_BASE]
    return b, b + st.geo[s, G_SETS] * st.geo[s, G_WAYS]


@njit(inline="always", _nrt=False)
def entry_span(st, c, e):
    """``(start, log2 bytes)`` of what entry column ``e`` of CPU ``c`` maps; ``(0, -1)`` if
    the entry is invalid."""
    k = st.ent[c, E_KEY, e]
    if k == 0:
        return np.int64(0), np.int64(-1)
    return key_start(k), key_shift(k)


@njit(inline="always", _nrt=False)
def _u(x):
    """An index as uint64: Numba skips negative-index wraparound for unsigned indices."""
    return np.uint64(x)


@njit(inline="always", _nrt=False)
def _row(st, s, tag):
    """First entry column of the set of ``tag`` in structure ``s``."""
    return _u(st.geo[s, G_BASE]) + (_u(tag) & _u(st.geo[s, G_SETS] - 1)) * _u(st.geo[s, G_WAYS])


@njit(inline="always", _nrt=False)
def _probe(st, s, c, key, row, ways, want, glob):
    if st.filt[c, s, _bucket(key)] == 0:
        return np.int64(-1)
    ent = st.ent
    for w in range(ways):
        e = row + w
        if ent[c, E_KEY, e] == key:
            x = ent[c, E_CTX, e]
            if x == want or x == glob:
                return np.int64(e)
    return np.int64(-1)


@njit(inline="always", _nrt=False)
def tlb_lookup(st, s, c, va, shift, asid, vmid, counts):
    """Probe structure ``s`` of CPU ``c`` for ``va`` at every size it holds.

    The access's own entry size ``shift`` (clipped to the structure's largest) is probed
    first, then the others; without conflict detection the first match is the hit. With it
    (``geo[s, G_LAST]``), every size is probed and a second match counts
    ``TLBEvent.CONFLICTS`` (Arm ARM D8.16.1). Returns the entry column of the hit or −1; a
    hit refreshes its LRU stamp.
    """
    geo = st.geo
    ent = st.ent
    c = _u(c)
    ways = _u(geo[s, G_WAYS])
    want = context(asid, vmid)
    glob = np.int64(vmid) << 32
    first = min(shift, geo[s, G_MAXSHIFT])
    detect = geo[s, G_LAST] != 0
    hit = np.int64(-1)
    slot = C_HINT + s * HINT_SLOTS + ((va >> first) & (HINT_SLOTS - 1))
    h = _u(st.cpu[c, slot])
    x = ent[c, E_CTX, h]
    if ent[c, E_KEY, h] == (((va >> first) << 6) | first) and (x == want or x == glob) \
            and not detect:
        hit = np.int64(h)
    else:
        tag = va >> first
        hit = _probe(st, s, c, (tag << 6) | first, _row(st, s, tag), ways, want, glob)
        if hit < 0 or detect:
            for k in range(geo[s, G_NPROBE]):
                p = geo[s, G_PROBES + k]
                if p == first:
                    continue
                tag = va >> p
                e = _probe(st, s, c, (tag << 6) | p, _row(st, s, tag), ways, want, glob)
                if e >= 0:
                    if hit < 0:
                        hit = e
                        if not detect:
                            break
                    else:
                        counts[TLBEvent.CONFLICTS] += 1
    if hit >= 0:
        st.cpu[c, slot] = hit
        _policy.on_hit(geo[s, G_POLICY], ent, c, E_STAMP, E_POLICY, _u(hit), _u(geo[s, G_BASE]),
                       ways, st.cpu, c)
    return hit


@njit(inline="always", _nrt=False)
def tlb_fill(st, s, c, va, shift, asid, vmid, counts):
    """Insert the translation of ``va`` as an entry of ``min(shift, largest)`` bytes (log2)
    into structure ``s`` of CPU ``c``; ``asid`` −1 makes it global. An invalid way is used
    first, else the policy's victim. Returns the entry column."""
    geo = st.geo
    ent = st.ent
    c = _u(c)
    p = min(shift, geo[s, G_MAXSHIFT])
    ways = _u(geo[s, G_WAYS])
    tag = va >> p
    row = _row(st, s, tag)
    policy = geo[s, G_POLICY]
    victim, ms = _policy.victim(policy, ent, c, E_STAMP, E_POLICY, row, ways, st.cpu, c)
    if ms != 0:
        counts[TLBEvent.EVICTIONS] += 1
    counts[TLBEvent.FILLS] += 1
    st.cpu[c, C_HINT + s * HINT_SLOTS + (tag & (HINT_SLOTS - 1))] = victim
    old = ent[c, E_KEY, victim]
    if old != 0:
        st.filt[c, s, _bucket(old)] -= 1
    key = (tag << 6) | p
    st.filt[c, s, _bucket(key)] += 1
    ent[c, E_KEY, victim] = key
    ent[c, E_CTX, victim] = context(asid, vmid)
    _policy.on_fill(policy, ent, c, E_STAMP, E_POLICY, victim, row, ways, st.cpu, c)
    return np.int64(victim)


@njit(inline="always", _nrt=False)
def tlb_translate(st, c, va, flags, shift, asid, vmid, counts):
    """One access through L1 (I or D by kind) and L2 of CPU ``c``; fills on a miss.

    Returns the :class:`Outcome` code: 0 L1 hit, 1 L2 hit, 2 walk needed.
    """
    ifetch = (flags & FLAG_KIND_MASK) == Kind.IFETCH
    easid = GLOBAL_ASID if flags & FLAG_GLOBAL else np.int64(asid)
    counts[TLBEvent.ACCESSES] += 1
    l1 = 0 if ifetch else 1
    has_l1 = st.geo[l1, G_SETS] > 0
    if has_l1:
        if tlb_lookup(st, l1, c, va, shift, asid, vmid, counts) >= 0:
            counts[TLBEvent.L1I_HITS if ifetch else TLBEvent.L1D_HITS] += 1
            return 0
        counts[TLBEvent.L1I_MISSES if ifetch else TLBEvent.L1D_MISSES] += 1
    if st.geo[2, G_SETS] > 0:
        if tlb_lookup(st, 2, c, va, shift, asid, vmid, counts) >= 0:
            counts[TLBEvent.L2_HITS] += 1
            if has_l1:
                tlb_fill(st, l1, c, va, shift, easid, vmid, counts)
            return 1
        counts[TLBEvent.L2_MISSES] += 1
        tlb_fill(st, 2, c, va, shift, easid, vmid, counts)
    counts[TLBEvent.MISSES] += 1
    if has_l1:
        tlb_fill(st, l1, c, va, shift, easid, vmid, counts)
    return 2


@njit(inline="always", _nrt=False)
def tlb_translate_l2(st, c, va, flags, shift, asid, vmid, counts):
    """:func:`tlb_translate` for a TLB configured with an L2 and no L1 structures (a model
    whose TLB is one level): the same outcome (1 L2 hit, 2 walk needed), counts and
    entries, with one lookup and one fill to inline instead of two and three, which makes a
    kernel calling it compile several times faster. The caller guarantees the
    configuration (``st.geo`` rows 0 and 1 without sets, row 2 with sets)."""
    counts[TLBEvent.ACCESSES] += 1
    if tlb_lookup(st, 2, c, va, shift, asid, vmid, counts) >= 0:
        counts[TLBEvent.L2_HITS] += 1
        return 1
    counts[TLBEvent.L2_MISSES] += 1
    easid = GLOBAL_ASID if flags & FLAG_GLOBAL else np.int64(asid)
    tlb_fill(st, 2, c, va, shift, easid, vmid, counts)
    counts[TLBEvent.MISSES] += 1
    return 2


#: Columns per CPU of a last-translation filter (:func:`tlb_translate_last`): the key and
#: context of the last lookup in L1 I, then in L1 D.
LAST_TLB_FIELDS = 4


@njit(inline="always", _nrt=False)
def _last_probe(st, va, flags, shift, asid, vmid, last):
    """The filter of :func:`tlb_translate_last` for one access: ``(on, column, key,
    context)``, ``on`` when it applies to the access's L1 structure, ``column`` that
    structure's first column of ``last``."""
    l1 = _u(0) if (flags & FLAG_KIND_MASK) == Kind.IFETCH else _u(1)
    geo = st.geo
    on = last.shape[0] > 0 and geo[l1, G_SETS] != 0 and geo[l1, G_LAST] == 0
    first = min(shift, geo[l1, G_MAXSHIFT])
    return on, l1 + l1, ((va >> first) << 6) | first, context(asid, vmid)


@njit(inline="always", _nrt=False)
def tlb_repeats_last(st, c, va, flags, shift, asid, vmid, last):
    """Whether the access repeats CPU ``c``'s last lookup in its L1 structure as
    :func:`tlb_translate_last` records it: an L1 hit that changes no state (counted by
    :func:`count_repeats`)."""
    on, k, key, want = _last_probe(st, va, flags, shift, asid, vmid, last)
    uc = _u(c)
    return on and last[uc, k] == key and last[uc, k + _u(1)] == want


@njit(inline="always", _nrt=False)
def count_repeats(counts, fetches, data):
    """Count accesses :func:`tlb_repeats_last` settled: ``fetches`` L1 I hits and ``data``
    L1 D hits."""
    counts[TLBEvent.ACCESSES] += fetches + data
    counts[TLBEvent.L1I_HITS] += fetches
    counts[TLBEvent.L1D_HITS] += data


@njit(_nrt=False)
def tlb_translate_last(st, c, va, flags, shift, asid, vmid, counts, last):
    """:func:`tlb_translate` behind a last-translation filter: the same outcome, counts and
    entries, faster when an access repeats the previous lookup of its L1 structure.

    ``last[c]`` (int64, :data:`LAST_TLB_FIELDS` columns, zeroed to start) holds, per L1
    structure, the key and context of CPU ``c``'s last lookup there when that lookup ended
    with the entry of exactly that key (hit or filled). An access with the same key and
    context would hit the same entry, which is already its set's most recent: replacement
    hooks make no change a second time (an LRU stamp only moves up to the top again, a
    tree-PLRU touch is idempotent), so the hit is counted without the lookup. Zero ``last``
    whenever the TLB changes otherwise (an invalidation, another kernel's fill). With
    conflict detection, or a ``last`` of no rows, every lookup is made.
    """
    if tlb_repeats_last(st, c, va, flags, shift, asid, vmid, last):
        fetch = (flags & FLAG_KIND_MASK) == Kind.IFETCH
        count_repeats(counts, np.int64(fetch), np.int64(not fetch))
        return 0
    r = tlb_translate(st, c, va, flags, shift, asid, vmid, counts)
    on, k, key, want = _last_probe(st, va, flags, shift, asid, vmid, last)
    if on:
        # the entry the lookup hit or the fill wrote is in the hint slot of (va >> first)
        uc = _u(c)
        e = _u(st.cpu[uc, _u(C_HINT) + (k >> _u(1)) * _u(HINT_SLOTS)
                      + _u((key >> 6) & (HINT_SLOTS - 1))])
        x = st.ent[uc, E_CTX, e]
        if st.ent[uc, E_KEY, e] == key and (x == want or x == (np.int64(vmid) << 32)):
            last[uc, k] = key
            last[uc, k + _u(1)] = want
        else:
            last[uc, k] = 0
    return r


@njit(_nrt=False)
def _run(st, acc, counts, outcome):
    n = acc.va.shape[0]
    record = outcome.shape[0] == n
    for i in range(n):
        r = tlb_translate(st, np.int64(_at(acc.cpu, i)), acc.va[i], _at(acc.flags, i),
                          np.int64(_at(acc.shift, i)), _at(acc.asid, i), _at(acc.vmid, i),
                          counts)
        if record:
            outcome[i] = r


@njit(_nrt=False)
def _run_lru_single(key, stamp, va, p, mask, ways, clock, counts):
    """Fast path: one LRU structure, one size, one CPU, ASID 0, VMID 0, no L1; the same
    decisions as :func:`tlb_translate`. Returns the advanced clock."""
    miss = 0
    evict = 0
    uways = _u(ways)
    umask = _u(mask)
    for i in range(va.shape[0]):
        tag = va[i] >> p
        k = (tag << 6) | p
        row = (_u(tag) & umask) * uways
        clock += 1
        hit = False
        victim = row
        ms = stamp[row]
        for w in range(uways):
            e = row + w
            if key[e] == k:
                stamp[e] = clock
                hit = True
                break
            x = stamp[e]
            victim = e if x < ms else victim
            ms = min(x, ms)
        if not hit:
            miss += 1
            evict += ms != 0
            key[victim] = k
            stamp[victim] = clock
    counts[TLBEvent.ACCESSES] += va.shape[0]
    counts[TLBEvent.EVICTIONS] += evict
    counts[TLBEvent.L2_HITS] += va.shape[0] - miss
    counts[TLBEvent.L2_MISSES] += miss
    counts[TLBEvent.MISSES] += miss
    counts[TLBEvent.FILLS] += miss
    return clock


# ---- invalidation ---------------------------------------------------------------------
@njit(inline="always", _nrt=False)
def _cpu_range(st, cpu):
    if cpu < 0:
        return 0, st.ent.shape[0]
    return cpu, cpu + 1


@njit(inline="always", _nrt=False)
def _reached(st, s, last_level_only):
    """Whether a VA-based invalidation reaches structure ``s`` (the stage-2 walk cache is
    indexed by IPA and only dropped by VMID or all)."""
    if st.geo[s, G_SETS] == 0 or s == Structure.S2WALK:
        return False
    if s == Structure.WALK and last_level_only:
        return False
    return True


@njit(inline="always", _nrt=False)
def _ctx_matches(x, asid, vmid):
    return (x >> 32) == vmid and ((x & 0xFFFFFFFF) == asid + 1 or (x & 0xFFFFFFFF) == 0)


@njit(inline="always", _nrt=False)
def _drop(st, s, c, e):
    # an invalid entry has key 0 and stamp 0, so every policy refills it first
    st.filt[c, s, _bucket(st.ent[c, E_KEY, e])] -= 1
    st.ent[c, E_KEY, e] = 0
    st.ent[c, E_STAMP, e] = 0


@njit(_nrt=False)
def invalidate_va(st, cpu, va, asid, vmid, last_level_only=False):
    """``TLBI VAE1`` (``VALE1`` with ``last_level_only``): drop entries covering ``va``
    whose ASID is ``asid`` or that are global, in VMID ``vmid``, on CPU ``cpu`` (−1: every
    CPU, the ``...IS`` broadcast). Upper-level walk-cache entries covering ``va`` go too
    unless ``last_level_only`` (Arm ARM C5.5.x "TLBI VAE1, VALE1"). Returns the number of
    entries dropped."""
    dropped = 0
    c0, c1 = _cpu_range(st, cpu)
    ent = st.ent
    for c in range(c0, c1):
        for s in range(st.geo.shape[0]):
            if not _reached(st, s, last_level_only):
                continue
            ways = st.geo[s, G_WAYS]
            mask = st.geo[s, G_SETS] - 1
            for k in range(st.geo[s, G_NPROBE]):
                p = st.geo[s, G_PROBES + k]
                tag = va >> p
                key = (tag << 6) | p
                row = st.geo[s, G_BASE] + (tag & mask) * ways
                for w in range(ways):
                    e = row + w
                    if ent[c, E_KEY, e] == key and _ctx_matches(ent[c, E_CTX, e], asid, vmid):
                        _drop(st, s, c, e)
                        dropped += 1
    return dropped


@njit(_nrt=False)
def invalidate_range(st, cpu, start, end, asid, vmid, last_level_only=False):
    """``TLBI RVAE1`` (``RVALE1``): drop entries overlapping ``[start, end)`` with ASID
    ``asid`` or global, in VMID ``vmid``, on CPU ``cpu`` (−1: every CPU). Returns the number
    of entries dropped."""
    dropped = 0
    c0, c1 = _cpu_range(st, cpu)
    ent = st.ent
    for c in range(c0, c1):
        for s in range(st.geo.shape[0]):
            if not _reached(st, s, last_level_only):
                continue
            b = st.geo[s, G_BASE]
            for e in range(b, b + st.geo[s, G_SETS] * st.geo[s, G_WAYS]):
                k = ent[c, E_KEY, e]
                if k == 0 or not _ctx_matches(ent[c, E_CTX, e], asid, vmid):
                    continue
                p = k & 63
                lo = (k >> 6) << p
                hi = lo + (np.int64(1) << p)
                if lo < end and start < hi:
                    _drop(st, s, c, e)
                    dropped += 1
    return dropped


@njit(_nrt=False)
def invalidate_asid(st, cpu, asid, vmid):
    """``TLBI ASIDE1``: drop the non-global entries of ``asid`` in ``vmid`` (global entries
    survive) on CPU ``cpu`` (−1: every CPU). Returns the number of entries dropped."""
    dropped = 0
    c0, c1 = _cpu_range(st, cpu)
    want = context(asid, vmid)
    for c in range(c0, c1):
        for s in range(st.geo.shape[0]):
            if st.geo[s, G_SETS] == 0 or s == Structure.S2WALK:
                continue
            b = st.geo[s, G_BASE]
            for e in range(b, b + st.geo[s, G_SETS] * st.geo[s, G_WAYS]):
                if st.ent[c, E_KEY, e] != 0 and st.ent[c, E_CTX, e] == want:
                    _drop(st, s, c, e)
                    dropped += 1
    return dropped


@njit(_nrt=False)
def invalidate_vmid(st, cpu, vmid):
    """``TLBI VMALLS12E1``: drop every stage-1, combined and stage-2 entry of ``vmid`` on
    CPU ``cpu`` (−1: every CPU). Returns the number of entries dropped."""
    dropped = 0
    c0, c1 = _cpu_range(st, cpu)
    for c in range(c0, c1):
        for s in range(st.geo.shape[0]):
            b = st.geo[s, G_BASE]
            for e in range(b, b + st.geo[s, G_SETS] * st.geo[s, G_WAYS]):
                if st.ent[c, E_KEY, e] != 0 and (st.ent[c, E_CTX, e] >> 32) == vmid:
                    _drop(st, s, c, e)
                    dropped += 1
    return dropped


@njit(_nrt=False)
def invalidate_all(st, cpu):
    """``TLBI ALLE1``: drop every entry on CPU ``cpu`` (−1: every CPU). Returns the number
    of entries dropped."""
    dropped = 0
    c0, c1 = _cpu_range(st, cpu)
    for c in range(c0, c1):
        for s in range(st.geo.shape[0]):
            b = st.geo[s, G_BASE]
            for e in range(b, b + st.geo[s, G_SETS] * st.geo[s, G_WAYS]):
                if st.ent[c, E_KEY, e] != 0:
                    _drop(st, s, c, e)
                    dropped += 1
    return dropped


@njit(_nrt=False)
def occupancy(st, cpu, s):
    """Valid entries of structure ``s`` on CPU ``cpu``."""
    n = 0
    b = st.geo[s, G_BASE]
    for e in range(b, b + st.geo[s, G_SETS] * st.geo[s, G_WAYS]):
        if st.ent[cpu, E_KEY, e] != 0:
            n += 1
    return n


# ---------------------------------------------------------------------------------------
# Python entry points
# ---------------------------------------------------------------------------------------
@njit(_nrt=False)
def _value_range(a):
    lo = a[0]
    hi = a[0]
    for i in range(a.shape[0]):
        lo = min(lo, a[i])
        hi = max(hi, a[i])
    return lo, hi


def value_range(a: np.ndarray) -> tuple:
    """``(min, max)`` of a non-empty numeric array in one pass (numpy's ``min`` and ``max``
    take one each)."""
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iuf" or a.shape[0] < 64:
        return a.min(), a.max()
    return _value_range(a)


@njit(_nrt=False)
def _converted_range(a, out):
    """``out[:] = a`` (cast to ``out``'s integer type) and ``(min, max)`` of ``a``, in one
    pass."""
    lo = a[0]
    hi = a[0]
    for i in range(a.shape[0]):
        x = a[i]
        lo = min(lo, x)
        hi = max(hi, x)
        out[i] = x
    return lo, hi


@njit(_nrt=False)
def _kind_flags(kind, glob, out):
    """``out[:] = kind | FLAG_GLOBAL * glob`` (uint8) and ``(min, max)`` of ``kind``, in one
    pass (``kind`` integer, ``glob`` bool, both one value per access)."""
    lo = kind[0]
    hi = kind[0]
    for i in range(kind.shape[0]):
        k = kind[i]
        lo = min(lo, k)
        hi = max(hi, k)
        out[i] = np.uint8(k) | (np.uint8(FLAG_GLOBAL) if glob[i] else np.uint8(0))
    return lo, hi


def _fused(arr: np.ndarray, n: int) -> bool:
    """Whether a per-access integer column is checked and converted in one pass (one value
    per access, enough of them for the compiled pass to pay)."""
    return arr.ndim == 1 and arr.shape[0] == n and n >= 64 and arr.dtype.kind in "iu"


def per_access_column(name: str, value, n: int, dtype, default, lo=None, hi=None,
                      message: str | None = None) -> np.ndarray:
    """A per-access kernel column: ``default`` or a scalar as one broadcast value, else one
    value per access (``n``), contiguous, of ``dtype``. With ``lo`` or ``hi``, a value
    outside ``[lo, hi]`` (checked on the values given, before the conversion to ``dtype``)
    raises ``ConfigError(message, name)``. An integer column that needs both the check and
    a conversion to another integer ``dtype`` gets them in one pass."""
    if value is None:
        return np.full(1, default, dtype)
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    elif arr.ndim != 1 or arr.shape[0] != n:
        raise ConfigError(f"must be a scalar or have one value per access ({n}), "
                          f"got shape {arr.shape}", name)
    if (lo is not None or hi is not None) and arr.size:
        if arr.dtype != dtype and np.dtype(dtype).kind in "iu" and _fused(arr, n):
            out = np.empty(n, dtype)
            vlo, vhi = _converted_range(arr, out)
            if (lo is not None and vlo < lo) or (hi is not None and vhi > hi):
                raise ConfigError(message, name)
            return out
        vlo, vhi = value_range(arr)
        if (lo is not None and vlo < lo) or (hi is not None and vhi > hi):
            raise ConfigError(message, name)
    return np.ascontiguousarray(arr, dtype=dtype)


def entry_shift(page_shift, cont_shift=None, s2_page_shift=None, s2_cont_shift=None,
                honour_cont: bool = True) -> np.ndarray:
    """Log2 of the entry size each access can use: the leaf (or, honoured, contiguous range)
    of stage 1, no larger than that of stage 2 when there is one (Arm ARM D8.12.2)."""
    s = np.asarray(page_shift, dtype=np.int64)
    if honour_cont and cont_shift is not None:
        c = np.asarray(cont_shift, dtype=np.int64)
        s = np.where(c > 0, np.maximum(c, s), s)
    if s2_page_shift is not None:
        s2 = np.asarray(s2_page_shift, dtype=np.int64)
        if honour_cont and s2_cont_shift is not None:
            c2 = np.asarray(s2_cont_shift, dtype=np.int64)
            s2 = np.where(c2 > 0, np.maximum(c2, s2), s2)
        s = np.minimum(s, s2)
    return s.astype(np.uint8)


def leaf_shifts(geometry, leaf_level) -> np.ndarray:
    """Log2 leaf size per access from its leaf level (as
    :meth:`kmm.pagetable.PageTable.translate_many` reports it) in ``geometry``."""
    lv = np.asarray(leaf_level, dtype=np.int64)
    table = np.full(5, -1, np.int64)
    for level in geometry.leaf_levels:
        table[level + 1] = geometry.leaf_bytes(level).bit_length() - 1
    bad = (lv < -1) | (lv > 3)
    out = table[np.where(bad, 0, lv) + 1]
    if np.any(bad) or np.any(out < 0):
        raise ConfigError(f"leaf levels must be among {list(geometry.leaf_levels)} for "
                          f"{geometry.name}", "leaf_level")
    return out


def cont_shifts(geometry, leaf_level, cont) -> np.ndarray:
    """Log2 span of the contiguous range of each access's leaf (0 where ``cont`` is false
    or the level has no contiguous hint)."""
    lv = np.asarray(leaf_level, dtype=np.int64)
    table = np.zeros(5, np.int64)
    for level in geometry.leaf_levels:
        c = geometry.cont_bytes(level)
        table[level + 1] = (c.bit_length() - 1) if c else 0
    return np.where(np.asarray(cont, bool), table[np.clip(lv, -1, 3) + 1], 0)


def make_accesses(config: TLBConfig, addresses, kind=None, page_shift=None, asid=None,
                  vmid=None, cpu=None, global_=None, cont_shift=None, s2_page_shift=None,
                  s2_cont_shift=None) -> Accesses:
    """Validate per-access inputs against ``config`` and build :class:`Accesses`.

    ``kind`` is :class:`Kind` per access (or one value); ``page_shift`` the log2 leaf size
    per access (default: the smallest size ``config`` holds); ``cont_shift`` the span of the
    contiguous range an access's leaf belongs to (0 = none); ``s2_*`` the same for stage 2;
    ``global_`` marks accesses through global (kernel) mappings.
    """
    va = np.asarray(addresses)
    if va.ndim != 1:
        raise ConfigError(f"must be one-dimensional, got shape {va.shape}", "addresses")
    if va.dtype != np.uint64:
        if not np.issubdtype(va.dtype, np.integer):
            raise ConfigError(f"must be integer addresses, got {va.dtype}", "addresses")
        va = va.astype(np.uint64)
    va = np.ascontiguousarray(va).view(np.int64)
    n = va.shape[0]
    if page_shift is None:
        page_shift = config.page_shifts[0]
    shift = entry_shift(page_shift, cont_shift, s2_page_shift, s2_cont_shift, config.honour_cont)
    bad = np.setdiff1d(np.unique(shift), np.asarray(config.page_shifts, dtype=np.uint8))
    if bad.size:
        raise ConfigError(f"entry sizes 2**{bad.tolist()} are not held by this TLB "
                          f"(page_shifts={list(config.page_shifts)}); use with_geometry()",
                          "page_shift")
    kinds = None if kind is None else np.asarray(kind)
    globs = None if global_ is None else np.asarray(global_)
    fused = kinds is not None and globs is not None and _fused(kinds, n) and \
        globs.shape == (n,) and globs.dtype == np.bool_
    if fused:   # the kind's check, its conversion and the global bit in one pass
        flags = np.empty(n, np.uint8)
        klo, khi = _kind_flags(kinds, globs, flags)
        if klo < 0 or khi > Kind.IFETCH:
            raise ConfigError("kinds are 0 (load), 1 (store), 2 (ifetch)", "kind")
    else:
        flags = per_access_column("kind", kind, n, np.uint8, Kind.LOAD, lo=0, hi=Kind.IFETCH,
                                  message="kinds are 0 (load), 1 (store), 2 (ifetch)")
    if global_ is not None and not fused:
        g = per_access_column("global_", global_, n, np.bool_, False)
        flags = flags | (g.view(np.uint8) * np.uint8(FLAG_GLOBAL))   # broadcasts to n
    asid_a = per_access_column("asid", asid, n, np.int32, 0, lo=0,
                               message="ASIDs are non-negative (use global_ for global "
                                       "mappings)")
    vmid_a = per_access_column("vmid", vmid, n, np.int32, 0)
    cpu_a = per_access_column("cpu", cpu, n, np.int32, 0, lo=0, hi=config.cpus - 1,
                              message=f"CPU numbers must be in 0..{config.cpus - 1}")
    return Accesses(va=va, flags=flags, shift=shift.reshape(-1) if shift.ndim else
                    shift.reshape(1), asid=asid_a, vmid=vmid_a, cpu=cpu_a)


class TLB:
    """A TLB hierarchy with state that persists across traces (warm-up, invalidation).

    Examples
    --------
    >>> import numpy as np
    >>> t = TLB(TLBConfig.single(entries=64, ways=4))
    >>> warm = t.run(np.arange(64, dtype=np.uint64) << np.uint64(12))
    >>> measured = t.run(np.arange(64, dtype=np.uint64) << np.uint64(12)) - warm
    >>> measured.misses
    0
    """

    def __init__(self, config: TLBConfig,
                 walk_probe_shifts: dict[Structure, tuple[int, ...]] | None = None):
        self.config = config
        self.state = config.to_state(walk_probe_shifts)
        self.counts = Counters(TLBEvent)

    def _fast_path_ok(self, acc: Accesses) -> bool:
        c = self.config
        return (c.l1i is None and c.l1d is None and c.cpus == 1 and len(c.page_shifts) == 1
                and c.l2.policy == Replacement.LRU and c.l2.max_page_shift is None
                and acc.asid.shape[0] == 1 and acc.vmid.shape[0] == 1
                and acc.flags.shape[0] == 1 and acc.cpu.shape[0] == 1
                and int(acc.asid[0]) == 0 and int(acc.vmid[0]) == 0
                and not (int(acc.flags[0]) & FLAG_GLOBAL)
                and not np.any((self.state.ent[0, E_KEY] != 0)
                               & (self.state.ent[0, E_CTX] != 1)))

    def run(self, addresses, record: bool = False, **per_access) -> Counters:
        """Run a trace; return a snapshot of the cumulative counters (see
        :func:`simulate_trace` for the per-access arguments). With ``record`` the per-access
        :class:`Outcome` codes are kept in ``self.last_outcome``."""
        acc = make_accesses(self.config, addresses, **per_access)
        n = acc.va.shape[0]
        outcome = np.empty(n if record else 0, np.int8)
        if not record and self._fast_path_ok(acc):
            st = self.state
            s = Structure.L2
            st.cpu[0, C_CLOCK] = _run_lru_single(
                st.ent[0, E_KEY], st.ent[0, E_STAMP], acc.va,
                np.int64(self.config.page_shifts[0]), np.int64(st.geo[s, G_SETS] - 1),
                np.int64(st.geo[s, G_WAYS]), np.int64(st.cpu[0, C_CLOCK]), self.counts.values)
            # the fast path writes keys and stamps only: its entries are ASID 0, VMID 0
            st.ent[0, E_CTX, st.ent[0, E_KEY] != 0] = 1
            st.filt[:] = filter_counts(st)
        else:
            _run(self.state, acc, self.counts.values, outcome)
        self.last_outcome = outcome if record else None
        return self.counts.snapshot()


def simulate_trace(addresses, config: TLBConfig, *, kind=None, page_shift=None, asid=None,
                   vmid=None, cpu=None, global_=None, cont_shift=None, s2_page_shift=None,
                   s2_cont_shift=None, leaf_level=None, cont=None,
                   geometry=None) -> Counters:
    """Run ``addresses`` through a fresh TLB hierarchy and count hits and misses.

    Parameters
    ----------
    addresses : uint64 array of virtual addresses
    config : :class:`TLBConfig`; ``TLBConfig.single(entries=1024, ways=4)`` is a 4-way LRU
        TLB of 1024 4K entries
    kind : :class:`Kind` per access (ifetch goes to L1 I, loads and stores to L1 D)
    page_shift : log2 leaf size per access
    leaf_level, cont, geometry : alternatively, the leaf level and contiguous bit per access
        (as :meth:`kmm.pagetable.PageTable.translate_many` returns them) in ``geometry``
    asid, vmid, cpu : per access or one value
    global_ : bool per access: the translation is global (kernel)
    cont_shift : log2 span of the contiguous range holding each access's leaf (0: none)
    s2_page_shift, s2_cont_shift : the same for the stage-2 leaf (combined entries)

    Returns
    -------
    Counters of :class:`TLBEvent`; ``.misses`` are misses of the last level (walks).
    """
    if leaf_level is not None:
        if geometry is None or page_shift is not None:
            raise ConfigError("leaf_level needs a geometry and no page_shift", "leaf_level")
        page_shift = leaf_shifts(geometry, leaf_level)
        if cont is not None:
            cont_shift = cont_shifts(geometry, leaf_level, cont)
    return TLB(config).run(addresses, kind=kind, page_shift=page_shift, asid=asid, vmid=vmid,
                           cpu=cpu, global_=global_, cont_shift=cont_shift,
                           s2_page_shift=s2_page_shift, s2_cont_shift=s2_cont_shift)


def trace_outcomes(addresses, config: TLBConfig, **per_access) -> np.ndarray:
    """Per-access :class:`Outcome` codes (0 L1 hit, 1 L2 hit, 2 walk) of a fresh hierarchy;
    for a single-level TLB, 1 is a hit and 2 a miss."""
    t = TLB(config)
    t.run(addresses, record=True, **per_access)
    return t.last_outcome


def bench_simulate_trace(n: int = 10_000_000, entries: int = 1024, ways: int = 4,
                         pages: int = 1 << 16, seed: int = 0, general: bool = False) -> dict:
    """Measure ``simulate_trace`` on a uniform random trace over ``pages`` 4K pages.

    Returns accesses per second (best of 3 after a compile run) and the miss count.
    ``general`` forces the general hierarchy kernel instead of the single-LRU fast path.
    """
    import time
    rng = np.random.default_rng(seed)
    va = (rng.integers(0, pages, n, dtype=np.uint64) << np.uint64(12))
    cfg = TLBConfig.single(entries=entries, ways=ways)
    asid = np.zeros(n, np.int32) if general else None  # a per-access ASID defeats the fast path
    simulate_trace(va[:1000], cfg, asid=None if asid is None else asid[:1000])
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        c = simulate_trace(va, cfg, asid=asid)
        best = min(best, time.perf_counter() - t0)
    return {"accesses": n, "seconds": best, "accesses_per_s": n / best, "misses": c.misses,
            "path": "general" if general else "fast"}


__all__ = ["Replacement", "Structure", "Kind", "Outcome", "TLBEvent", "TLBLevelConfig",
           "TLBConfig", "TLBState", "Accesses", "TLB", "simulate_trace", "trace_outcomes",
           "entry_shift", "entry_sizes", "make_accesses", "tlb_lookup", "tlb_fill",
           "tlb_translate", "tlb_translate_l2", "tlb_translate_last", "tlb_repeats_last",
           "count_repeats",
           "LAST_TLB_FIELDS", "invalidate_va", "invalidate_range", "invalidate_asid",
           "invalidate_vmid", "invalidate_all", "occupancy", "bench_simulate_trace",
           "FLAG_GLOBAL", "GLOBAL_ASID", "filter_counts", "leaf_shifts", "cont_shifts",
           "per_access_column", "value_range", "key_start", "key_shift", "entry_span",
           "structure_entries", "tlb_cpus"]
