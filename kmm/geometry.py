"""Translation geometry: granules, levels, block and contiguous sizes, as data.

Level numbers follow Arm's convention for every architecture: the leaf table is level 3, its
parent level 2, and so on; a 5-level arm64 (LPA2) or x86-64 (LA57) table starts at level −1.
So an x86-64 2M leaf is at level 2 and a 1G leaf at level 1.

Sources
-------
- arm64: arch/arm64/Kconfig (``ARM64_VA_BITS_*``, ``ARCH_FORCE_MAX_ORDER``),
  arch/arm64/include/asm/pgtable-hwdef.h (``ARM64_HW_PGTABLE_LEVELS``,
  ``ARM64_HW_PGTABLE_LEVEL_SHIFT``, ``PTRS_PER_PGD``, ``CONT_PTE_SHIFT``/``CONT_PMD_SHIFT``),
  arch/arm64/include/asm/pgtable.h (``pud_sect_supported()``: PUD blocks only with 4K),
  include/linux/pageblock-flags.h (``pageblock_order = min(HPAGE_PMD_ORDER, MAX_PAGE_ORDER)``).
- Stage 2: arch/arm64/include/asm/kvm_pgtable.h / kvm_arm.h (``kvm_get_vtcr``: levels from
  ``ARM64_HW_PGTABLE_LEVELS(ipa - 4)``, i.e. up to 16 concatenated tables at the start
  level, at least 2 levels); Arm ARM D8.2 "Translation table walk", concatenated tables.
- x86-64: arch/x86/include/asm/pgtable_64_types.h (4-level 48-bit, 5-level 57-bit),
  ``MAX_PAGE_ORDER`` 10, pageblock order 9 (2 MiB).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

DESCRIPTOR_BYTES = 8

# granule name -> (page_shift, VA sizes Linux supports, CONT_PTE entries, CONT_PMD entries,
#                  MAX_PAGE_ORDER, levels that may hold a block leaf in Linux's use)
_ARM64_GRANULES: dict[str, tuple[int, tuple[int, ...], int, int, int, tuple[int, ...]]] = {
    "4K": (12, (39, 48, 52), 16, 16, 10, (1, 2)),
    "16K": (14, (36, 47, 48, 52), 128, 32, 11, (2,)),
    "64K": (16, (42, 48, 52), 32, 32, 13, (2,)),
}

GRANULES = tuple(_ARM64_GRANULES)


def _hw_levels(bits: int, page_shift: int) -> int:
    """``ARM64_HW_PGTABLE_LEVELS(bits)``: levels needed to translate ``bits`` of address."""
    return (bits - 4) // (page_shift - 3)


@dataclass(frozen=True)
class Geometry:
    """One translation regime's shape. Build with :func:`arm64`, :func:`x86_64`, :func:`stage2`.

    Attributes
    ----------
    arch : ``"arm64"`` or ``"x86_64"``
    stage : 1 or 2
    granule : ``"4K"``, ``"16K"`` or ``"64K"``
    va_bits : input address bits (the IPA size for stage 2)
    page_shift : log2 of the granule (page) size
    levels : table levels walked, from ``start_level`` down to 3
    start_level : the top level (``4 - levels``): 0 for 4-level, −1 for LPA2/LA57
    block_bytes : level -> bytes mapped by a block (non-leaf-level) leaf, only for levels
        where Linux creates blocks
    cont_pte_bytes, cont_pmd_bytes : span of a contiguous PTE / PMD range (None where the
        architecture has no contiguous hint, i.e. x86-64)
    max_page_order : ``MAX_PAGE_ORDER`` (inclusive, the largest buddy order)
    pageblock_bytes : default pageblock size
    top_entries : descriptors in the top-level table (``PTRS_PER_PGD`` for stage 1; all
        concatenated tables together for stage 2)
    concatenated : number of concatenated start-level tables (stage 2; 1 otherwise)
    """

    arch: str
    stage: int
    granule: str
    va_bits: int
    page_shift: int
    levels: int
    start_level: int
    block_bytes: dict[int, int]
    cont_pte_bytes: int | None
    cont_pmd_bytes: int | None
    max_page_order: int
    pageblock_bytes: int
    top_entries: int
    concatenated: int = 1
    cont_pte_entries: int = field(default=1)
    cont_pmd_entries: int = field(default=1)

    # ---- derived, all by arithmetic --------------------------------------------------
    @property
    def page_bytes(self) -> int:
        return 1 << self.page_shift

    @property
    def bits_per_level(self) -> int:
        return self.page_shift - 3

    @property
    def entries_per_table(self) -> int:
        """Descriptors in one full (non-top) table page."""
        return 1 << self.bits_per_level

    def level_shift(self, level: int) -> int:
        """``ARM64_HW_PGTABLE_LEVEL_SHIFT``: log2 of the bytes one entry at ``level`` maps."""
        self._check_level(level)
        return self.bits_per_level * (3 - level) + self.page_shift

    def entry_bytes(self, level: int) -> int:
        """Bytes mapped by one descriptor at ``level`` (a page at level 3)."""
        return 1 << self.level_shift(level)

    def table_span_bytes(self, level: int) -> int:
        """Bytes of input address covered by one table at ``level`` (below the top)."""
        return self.entry_bytes(level) << self.bits_per_level

    @property
    def top_table_bytes(self) -> int:
        """Size of the top-level table(s): smaller than a page where ``top_entries`` is."""
        return self.top_entries * DESCRIPTOR_BYTES

    @property
    def leaf_levels(self) -> tuple[int, ...]:
        """Levels that may hold a leaf, largest first (block levels, then 3)."""
        return tuple(sorted(self.block_bytes)) + (3,)

    def leaf_bytes(self, level: int) -> int:
        """Bytes one leaf at ``level`` maps; raises if no leaf may live there."""
        if level == 3:
            return self.page_bytes
        if level not in self.block_bytes:
            allowed = ", ".join(str(lv) for lv in self.leaf_levels)
            raise ConfigError(f"level {level} holds no leaf for {self.name}; leaf levels: {allowed}",
                              "level")
        return self.block_bytes[level]

    def cont_bytes(self, level: int) -> int | None:
        """Span of a contiguous range of leaves at ``level`` (None if not supported)."""
        if level == 3:
            return self.cont_pte_bytes
        if level == 2 and 2 in self.block_bytes:
            return self.cont_pmd_bytes
        return None

    @property
    def pageblock_order(self) -> int:
        return (self.pageblock_bytes >> self.page_shift).bit_length() - 1

    @property
    def name(self) -> str:
        s2 = " stage-2" if self.stage == 2 else ""
        return f"{self.arch} {self.granule}{s2} {self.va_bits}-bit"

    def _check_level(self, level: int) -> None:
        if not self.start_level <= level <= 3:
            raise ConfigError(f"level {level} outside {self.start_level}..3 for {self.name}",
                              "level")

    def walk_references(self, leaf_level: int = 3) -> int:
        """Descriptor reads of a 1D walk from the top level down to a leaf at ``leaf_level``."""
        self._check_level(leaf_level)
        return leaf_level - self.start_level + 1


def arm64(granule: str = "4K", va_bits: int = 48) -> Geometry:
    """arm64 stage-1 geometry for a Linux kernel built with this granule and VA size.

    Examples
    --------
    >>> g = arm64("4K", 48)
    >>> g.levels, g.block_bytes[2] >> 20, g.cont_pte_bytes >> 10
    (4, 2, 64)
    """
    if granule not in _ARM64_GRANULES:
        raise ConfigError(f"unknown granule {granule!r}; allowed: {', '.join(GRANULES)}",
                          "granule")
    shift, vas, cont_pte, cont_pmd, max_order, block_levels = _ARM64_GRANULES[granule]
    if va_bits not in vas:
        raise ConfigError(
            f"{granule} granule cannot have a {va_bits}-bit VA; allowed: "
            f"{', '.join(map(str, vas))}", "va_bits")
    levels = _hw_levels(va_bits, shift)
    start = 4 - levels
    bits = shift - 3
    pgdir_shift = bits * levels + 3  # ARM64_HW_PGTABLE_LEVEL_SHIFT(4 - levels)
    blocks = {lv: 1 << (bits * (3 - lv) + shift) for lv in block_levels}
    pmd_order = bits  # HPAGE_PMD_ORDER
    return Geometry(
        arch="arm64", stage=1, granule=granule, va_bits=va_bits, page_shift=shift,
        levels=levels, start_level=start, block_bytes=blocks,
        cont_pte_bytes=cont_pte << shift, cont_pmd_bytes=cont_pmd * blocks[2],
        max_page_order=max_order, pageblock_bytes=1 << (min(pmd_order, max_order) + shift),
        top_entries=1 << (va_bits - pgdir_shift), cont_pte_entries=cont_pte,
        cont_pmd_entries=cont_pmd)


def x86_64(levels: int = 4) -> Geometry:
    """x86-64 geometry: 4-level (48-bit) or 5-level (57-bit), 4K pages, 2M and 1G leaves."""
    if levels not in (4, 5):
        raise ConfigError(f"x86-64 has 4 or 5 paging levels, got {levels!r}", "levels")
    va_bits = 48 if levels == 4 else 57
    return Geometry(
        arch="x86_64", stage=1, granule="4K", va_bits=va_bits, page_shift=12, levels=levels,
        start_level=4 - levels, block_bytes={1: GiB, 2: 2 * MiB}, cont_pte_bytes=None,
        cont_pmd_bytes=None, max_page_order=10, pageblock_bytes=2 * MiB, top_entries=512)


def stage2(granule: str = "4K", ipa_bits: int = 40, concatenate: bool = True) -> Geometry:
    """arm64 stage-2 geometry for an IPA size, as KVM builds it.

    With ``concatenate`` (KVM's behaviour) up to 16 tables are concatenated at the start
    level, which removes a level wherever 4 extra address bits suffice
    (``kvm_get_vtcr``: ``ARM64_HW_PGTABLE_LEVELS(ipa - 4)``, at least 2 levels).
    """
    if granule not in _ARM64_GRANULES:
        raise ConfigError(f"unknown granule {granule!r}; allowed: {', '.join(GRANULES)}",
                          "granule")
    if not 32 <= ipa_bits <= 52:
        raise ConfigError(f"IPA size must be 32..52 bits, got {ipa_bits!r}", "ipa_bits")
    shift, _vas, cont_pte, cont_pmd, max_order, block_levels = _ARM64_GRANULES[granule]
    bits = shift - 3
    levels = _hw_levels(ipa_bits - 4 if concatenate else ipa_bits, shift)
    levels = max(levels, 2)
    start = 4 - levels
    start_entry_shift = bits * (3 - start) + shift
    top_entries = 1 << (ipa_bits - start_entry_shift)
    concatenated = max(1, top_entries >> bits)
    if concatenated > 16:
        raise ConfigError(f"{ipa_bits}-bit IPA needs {concatenated} concatenated tables "
                          f"at level {start} (at most 16)", "ipa_bits")
    blocks = {lv: 1 << (bits * (3 - lv) + shift) for lv in block_levels}
    return Geometry(
        arch="arm64", stage=2, granule=granule, va_bits=ipa_bits, page_shift=shift,
        levels=levels, start_level=start, block_bytes=blocks,
        cont_pte_bytes=cont_pte << shift, cont_pmd_bytes=cont_pmd * blocks[2],
        max_page_order=max_order, pageblock_bytes=1 << (min(bits, max_order) + shift),
        top_entries=top_entries, concatenated=concatenated, cont_pte_entries=cont_pte,
        cont_pmd_entries=cont_pmd)


def nested_walk_references(s1_levels: int, s2_levels: int) -> int:
    """Upper bound of memory references of a 2D (stage 1 × stage 2) walk: n + (n+1)·m.

    Each of the n stage-1 descriptor addresses and the final output IPA needs its own
    stage-2 walk of m references (Arm ARM D8, two-stage translation); 24 for 4 + 4.
    """
    return s1_levels + (s1_levels + 1) * s2_levels
