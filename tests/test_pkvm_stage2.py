"""pKVM host stage 2 as the kernel builds it: the read-only text range page-mapped, the
stage-2 walk cache of the Cortex-A76/Neoverse N1 (IPA -> PA entries of blocks only), and
one hypervisor pool at the top of RAM (issue 31)."""
import numpy as np
import pytest

from kmm import geometry, walk
from kmm.cache import CacheConfig
from kmm.errors import ConfigError
from kmm.mech import ktr, pkvm
from kmm.tlb import TLBConfig, TLBLevelConfig
from kmm.walk import PathConfig

GiB = 1 << 30
NO_CACHES = CacheConfig(l1i=None, l1d=None, l2=None, llc=None)


def _last_refs(page_leaves: bool, leaf_level: int) -> int:
    """Stage-2 references of a re-walk of IPA page 0 after the TLB lost it."""
    s2 = geometry.stage2("4K", 40)
    t = TLBConfig(l2=TLBLevelConfig(4, 4), s2_walk_cache=TLBLevelConfig(64, 4)).with_geometry(s2)
    cfg = PathConfig(tlb=t, caches=NO_CACHES, stage2=s2, s2_walk_cache_page_leaves=page_leaves)
    stride = 12 if leaf_level == 3 else 21
    ipa = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0], np.uint64) << np.uint64(stride)
    r = walk.simulate_path(ipa, cfg, s2_leaf_level=leaf_level, record=True)
    return int(r.refs[-1])


def test_stage2_walk_cache_keeps_ipa_to_pa_for_blocks_only_per_the_trm():
    # Cortex-A76 TRM (100798_0300_00_en) A5.2.3, Table A5-3: the L2 TLB stores IPA to PA
    # mappings for 2MB and 1GB blocks (4KB granule), not for pages. Without page leaves the
    # re-walk of a page reads its leaf descriptor again; upper levels still hit.
    assert _last_refs(True, 3) == 0
    assert _last_refs(False, 3) == 1
    # block leaves are kept either way
    assert _last_refs(False, 2) == _last_refs(True, 2) == 0


def test_pkvm_defaults_follow_the_trm_and_the_kernel():
    from kmm.mech.pkvm import study
    assert study.DEFAULTS["s2_walk_cache_page_leaves"] is False
    assert study.DEFAULTS["hyp_pool"] == "top"
    m = ktr.Machine(nodes=2)
    opt = {o.label: o for o in pkvm.stage2_leaf_options("4K")}["4K block 1G"]
    s = pkvm.stage2_setup(m, opt)
    assert s.walk_cache_page_leaves is False


def test_text_range_is_page_mapped_in_every_set_whatever_the_leaf_option():
    # arch/arm64/kvm/hyp/nvhe/mem_protect.c host_stage2_force_pte_cb: prot other than
    # PKVM_HOST_MEM_PROT -> page mappings; the read-only text range of every node's set
    m = ktr.Machine(nodes=2)
    opts = {o.label: o for o in pkvm.stage2_leaf_options("4K")}
    place = ktr.ImagePlacement()
    s = pkvm.stage2_setup(m, opts["4K block 1G"])
    probe = np.array([place.pa_bytes + 0x123000], np.int64)
    for node in (0, 1):
        lv, ct = s.leaf(probe, node)
        assert int(lv[0]) == 3 and not bool(ct[0])
    # user data elsewhere in RAM keeps the 1 GiB block
    lv, _ = s.leaf(np.array([ktr.UDATA_PA + 4096], np.int64), 0)
    assert int(lv[0]) == 1


def test_hyp_pool_is_one_region_at_the_top_of_ram():
    # arch/arm64/kvm/pkvm.c kvm_hyp_reserve: one memblock_phys_alloc (no node) for the hyp
    # stage-1 and host stage-2 table pages: memblock is top down, so the last node
    assert [pkvm.hyp_pool_node(n) for n in (1, 2, 4)] == [0, 1, 3]
    m = ktr.Machine(nodes=4)
    opt = pkvm.stage2_leaf_options("4K")[0]
    top = pkvm.stage2_setup(m, opt)
    assert top.table_class == 3  # a fixed-node class: every node's set read from node 3
    cls = ktr.Classes(4)
    for k in range(4):
        assert cls.resolve(ktr.Scheme.STAGE2, ktr.UserPolicy.LOCAL, k, 1)[top.table_class] == 3
    local = pkvm.stage2_setup(m, opt, pool="local")
    assert local.table_class is None
    with pytest.raises(ConfigError):
        pkvm.stage2_setup(m, opt, pool="per-node")
