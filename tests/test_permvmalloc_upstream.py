"""The upstream (v6.15) flows of the permission-vmalloc model, hand-worked, and the legacy
(v5.10) after-init step, each against the kernel code it follows (issue 32)."""
import numpy as np
import pytest

from kmm.errors import ConfigError
from kmm.geometry import GiB, MiB
from kmm.mech import permvmalloc as pv
from kmm.mech.permvmalloc import ModuleSpec, Policy, PolicyConfig

FRESH = pv.MachineConfig(ram_bytes=GiB, cpus=64, bg_used_fraction=0.0, bg_ops_per_event=0)
UP = PolicyConfig(Policy.UPSTREAM)
SPEC = ModuleSpec("m", text=2, ro=1, rai=1, rw=1, init_text=1, init_ro=0, init_rw=1, elf_pages=3)
NO_RAI = ModuleSpec("n", text=2, ro=1, rai=0, rw=1, init_text=1, init_ro=0, init_rw=1, elf_pages=3)


def counts(rec: dict) -> dict:
    return {e.name.lower(): rec[e.name.lower()] for e in pv.GLOBAL_EVENTS
            if rec[e.name.lower()]}


def spy(sim, name: str) -> list:
    """Record ``(area kind, lo, hi)`` of every call of ``sim.<name>``."""
    calls, fn = [], getattr(sim, name)

    def wrapped(a, *args, **kw):
        calls.append((a.kind if a is not None else None, *args[:2]))
        return fn(a, *args, **kw)

    setattr(sim, name, wrapped)
    return calls


def test_rox_cache_module_load_follows_the_v615_temp_rw_flow():
    """v6.15: ``module_memory_alloc`` takes text from the ROX cache and calls
    ``execmem_make_temp_rw`` (mm/execmem.c: ``set_memory_nx`` then ``set_memory_rw``), the
    sections are written in place, ``module_enable_text_rox`` calls ``execmem_restore_rox``
    (``set_memory_rox``, which passes ``CPA_COLLAPSE``: arch/x86/mm/pat/set_memory.c
    ``cpa_collapse_large_pages`` re-forms the PMD and ends in ``flush_tlb_all``).

    First load on a fresh 1 GiB machine: the cache is populated (2 MiB RW huge vmalloc,
    ``set_memory_rox`` of the whole block: direct-map 1G leaf split, one flush); text: nx
    (PMD split + flush, then its range flush), rw (direct-map 2M split behind the pages +
    a full flush); init text: nx, rw (one flush each); rodata ``set_memory_ro`` (its
    direct-map 2M split + flush); restore text and init text (a flush each; the second
    leaves the block all-ROX: collapse + flush); after init, ro_after_init ``set_memory_ro``
    whose ``vm_unmap_aliases`` purges the ELF copy. No ``text_poke`` on load."""
    sim = pv.PermVmalloc(FRESH, UP, check=True)
    st = sim.load_module(SPEC)
    r = sim.ops[-1]
    assert counts(r) == {"g_cpa": 9, "g_split": 4, "g_purge": 1, "g_collapse": 1}
    assert (r["primary_splits"], r["primary_collapses"], r["dm_splits"], r["local"]) == (1, 1, 3, 0)
    assert sim.regions["rox"][0].area.huge.tolist() == [True]
    assert st["text"][0][2] == 21                    # the text is mapped by a PMD leaf again
    assert sim.directmap_bytes()["4k"] == 4 * MiB    # the ROX block's and the data pages' 2M
    # a second load into the same block: split, four CPAs on text, restore, collapse again
    sim.load_module(SPEC)
    r = sim.ops[-1]
    assert counts(r) == {"g_cpa": 8, "g_split": 1, "g_purge": 1, "g_collapse": 1}
    assert (r["primary_splits"], r["primary_collapses"], r["dm_splits"]) == (1, 1, 0)
    assert sim.counts.wx_violations == sim.counts.free_violations == 0


def test_rox_cache_free_goes_through_text_poke_set():
    """``execmem_free`` -> ``execmem_cache_free``: the range is filled with INT3 through
    ``text_poke_set`` (arch/x86/mm/init.c ``execmem_fill_trapping_insns``, not writable) and
    kept in the cache: local flushes only; data regions are vfree'd
    (``VM_FLUSH_RESET_PERMS``: one flush each)."""
    sim = pv.PermVmalloc(FRESH, UP, check=True)
    st = sim.load_module(SPEC)
    rec = sim.free_module_init(SPEC, st)
    assert counts(rec) == {"g_vfree_reset": 1} and rec["local"] == 1
    rec = sim.unload_module(SPEC, st)
    assert counts(rec) == {"g_vfree_reset": 3} and rec["local"] == 1
    assert sim.regions["rox"][0].area.huge.tolist() == [True]


def test_v615_do_init_module_makes_only_ro_after_init_read_only():
    """v6.15 kernel/module/main.c ``do_init_module`` calls
    ``module_enable_rodata_ro_after_init`` (kernel/module/strict_rwx.c: ``set_memory_ro``
    of ``MOD_RO_AFTER_INIT`` only), and ``module_set_memory`` does nothing for a region the
    module does not have: without ro_after_init data the after-init step issues no CPA at
    all, so the lazily freed ELF copy is not purged by the load."""
    sim = pv.PermVmalloc(FRESH, UP, check=True)
    sim.load_module(SPEC)                             # warm the cache
    calls = spy(sim, "set_memory_ro")
    elf_free = spy(sim, "vfree")
    sim.load_module(SPEC)
    assert [k for k, _, _ in calls] == ["core ro", "core rai"]
    assert [k for k, *_ in elf_free] == ["elf"]
    calls.clear()
    sim.load_module(NO_RAI)
    assert [k for k, _, _ in calls] == ["core ro"]
    assert counts(sim.ops[-1]) == {"g_cpa": 7, "g_split": 1, "g_collapse": 1}
    assert sim.lazy_pages == NO_RAI.elf_pages


def test_v510_module_enable_ro_after_init_repeats_text_and_rodata():
    """v5.10 kernel/module.c ``do_init_module`` calls ``module_enable_ro(mod, true)``, which
    runs ``set_memory_ro`` on core text, core rodata, init text and init rodata again and
    then on ro_after_init: the legacy flow keeps all five calls (the first four change
    nothing; each still runs ``vm_unmap_aliases``)."""
    sim = pv.PermVmalloc(FRESH, PolicyConfig(Policy.LEGACY), check=True)
    calls = spy(sim, "set_memory_ro")
    sim.load_module(SPEC)
    after = calls[4:]
    assert [(k, lo, hi) for k, lo, hi in after] == [
        ("module core", 0, 2), ("module core", 2, 3), ("module init", 0, 1),
        ("module init", 1, 1), ("module core", 3, 4)]


def test_bpf_pack_mapping_is_a_per_architecture_choice():
    """``alloc_new_pack`` maps ``BPF_PROG_PACK_SIZE`` through ``execmem_alloc(EXECMEM_BPF)``:
    ``PAGE_KERNEL`` without ``EXECMEM_ROX_CACHE`` on x86 and arm64 (v6.15
    ``execmem_arch_setup``), so 4K pages; ``set_memory_rox`` of the pack then changes the
    direct-map alias page by page (1G and 2M leaves split)."""
    assert pv.PACK_HUGE_BY_ARCH == {"x86": False, "arm64": False}
    for arch in ("x86", "arm64"):
        assert PolicyConfig(Policy.UPSTREAM, arch=arch).pack_huge is False
    assert PolicyConfig(Policy.UPSTREAM).label == "upstream"
    assert PolicyConfig(Policy.UPSTREAM, pack_huge=True).label == "upstream-hugepack"
    with pytest.raises(ConfigError, match="arch"):
        PolicyConfig(Policy.UPSTREAM, arch="riscv")
    sim = pv.PermVmalloc(FRESH, UP, check=True)
    st = sim.load_bpf(300, "p0")
    r = sim.ops[-1]
    assert r["dm_splits"] >= 2 and r["g_cpa"] == 1 and r["local"] >= 1
    pack = sim.regions["pack"][0].area
    assert pack.npages == pv.PACK_BYTES // 4096 and not (pack.huge is not None and pack.huge.any())
    assert st["text"][0][2] == 12
    sim.load_bpf(300, "p1")                          # same pack: text_poke_copy only
    assert sim.ops[-1]["global_flushes"] == 0
    huge = pv.PermVmalloc(FRESH, PolicyConfig(Policy.UPSTREAM, pack_huge=True), check=True)
    huge.load_bpf(300, "p0")
    assert huge.ops[-1]["dm_splits"] == 1           # only the 1G leaf: whole-2M alias change


def test_collapse_needs_one_permission_and_contiguous_aligned_pages():
    """``collapse_large_pages`` re-forms a PMD only over 512 PTEs of one permission mapping
    2M-aligned contiguous pfns; a 4K vmalloc (scattered order-0 pages) never collapses."""
    sim = pv.PermVmalloc(FRESH, UP)
    c = sim._rox_alloc(3, "t")                       # split, temporarily RW
    area = c.region.area
    assert area.huge.tolist() == [False]
    sim.set_memory_rox(area, 0, 1)                   # page 1-2 still RW: no collapse
    assert area.huge.tolist() == [False] and sim.counts.primary_collapses == 0
    sim.execmem_restore_rox(c)
    assert area.huge.tolist() == [True] and sim.counts.primary_collapses == 1
    a = sim.vmalloc("modules", 512, flush_reset=True)
    a.pfns = a.pfns[::-1].copy()                     # not contiguous ascending
    sim.set_memory_rox(a, 0, 512)
    assert a.huge is None or not a.huge.any()
    assert sim.counts.g_collapse == 1
