"""A module load's live patching of its static branches in the permission-vmalloc cost chart
(issue 32, ``text_poke_bp`` synchronisation IPIs).

Kernel behaviour (v6.1 and v6.15; renamed ``smp_text_poke_*`` from v6.16): at
``MODULE_STATE_COMING``, after the text is mapped read-only and executable in every design,
kernel/jump_label.c ``jump_label_module_notify`` -> ``jump_label_add_module`` patches, key by
key, the entries of keys defined outside the module whose state is not their default
(``jump_label_type(iter) != jump_label_init_type(iter)``): ``__jump_label_update`` queues the
key's entries (x86 ``arch_jump_label_transform_queue`` -> ``text_poke_queue``) and applies them
(``arch_jump_label_transform_apply`` -> ``text_poke_finish`` -> ``text_poke_bp_batch``), at most
``TP_VEC_MAX = PAGE_SIZE / sizeof(struct text_poke_loc)`` = 4096 / 16 entries a batch. A batch
writes an int3, the tail and the first byte of every entry through ``text_poke`` (a local flush
each) and calls ``text_poke_sync()`` (``on_each_cpu(do_sync_core, NULL, 1)``: an IPI to every
other CPU, waited for) after each of the three steps (arch/x86/kernel/alternative.c)."""
import numpy as np
import polars as pl
import pytest

from kmm.engine import InvalidationCosts
from kmm.errors import ConfigError
from kmm.mech import permvmalloc as pv
from kmm.mech.permvmalloc.study import DEFAULTS, text_poke_config

#: the study's sourced IPI costs (Nadav Amit, 2019) and an assumed handler time
COSTS = InvalidationCosts(invlpg_ns=100.0, ipi_base_ns=675.0, ipi_per_extra_target_ns=67.5,
                          ipi_handler_ns=1000.0)


def test_kernel_constants():
    """``struct text_poke_loc`` is 16 bytes (s32 rel_addr, s32 disp, u8 len, u8 opcode,
    u8 text[5], u8 old): 256 entries a batch; three syncs a batch, three writes an entry; an
    x86-64 ``struct jump_entry`` is 16 bytes (relative: s32 code, s32 target, long key)."""
    assert pv.TP_VEC_MAX == 256
    assert pv.SYNCS_PER_BATCH == 3 and pv.POKES_PER_ENTRY == 3
    assert pv.JUMP_ENTRY_BYTES == 16


def test_hand_worked_batch_on_4_cpus():
    """On 4 CPUs a batch sends 3 IPIs to 3 targets: the initiator waits 3 * (675 + 67.5 * 2)
    = 2430 ns and the 3 interrupted CPUs spend 3 * 3 * 1000 = 9000 ns; each patched entry
    costs 3 local one-page flushes of 100 ns on the initiator. A module of 40 entries with 10 %
    patched, 2 entries a key: 4 entries, 2 batches: 2 * 2430 + 4 * 300 = 6060 ns on the
    initiator, 18000 ns on the others."""
    u = pv.text_poke_unit_costs(4, "x86", COSTS)
    assert u["batch"] == pytest.approx((2430.0, 9000.0))
    assert u["entry"] == pytest.approx((300.0, 0.0))
    patched, batches = pv.text_poke_batches([40], pv.TextPoke(0.1, 2.0))
    assert patched[0] == pytest.approx(4.0) and batches[0] == pytest.approx(2.0)
    # INVLPGB leaves the sync IPIs as they are; one CPU sends none
    assert pv.text_poke_unit_costs(4, "invlpgb", COSTS)["batch"] == u["batch"]
    assert pv.text_poke_unit_costs(1, "x86", COSTS)["batch"] == (0.0, 0.0)
    assert pv.text_poke_unit_costs(4, "arm64", COSTS) == {"batch": (0.0, 0.0),
                                                          "entry": (0.0, 0.0)}


def test_batches_split_at_tp_vec_max():
    """A key with more entries than one batch holds is flushed every 256 entries
    (``text_poke_flush``): 300 entries of one key are 2 batches."""
    patched, batches = pv.text_poke_batches([300], pv.TextPoke(1.0, 300.0))
    assert patched[0] == 300 and batches[0] == pytest.approx(2.0)
    assert pv.text_poke_batches([0], pv.TextPoke())[1][0] == 0
    with pytest.raises(ConfigError):
        pv.TextPoke(patched_share=1.5)
    with pytest.raises(ConfigError):
        pv.TextPoke(entries_per_key=0.5)


def test_measured_modules_carry_their_jump_tables():
    """The measured mix gives a module of a Debian size its donor's jump-table entries
    (``__jump_table`` bytes / 16)."""
    t = pv.module_table()
    assert (t["jump_entries"] * 16 == t["jump_table"]).all()
    assert (t["jump_entries"] > 0).mean() > 0.2
    mods = pv.MeasuredModuleMix().modules([int(s) for s in t["core_pages"][:200] * 4096], seed=0)
    assert sum(m.jump_entries for m in mods) > 0


def _loads(policy, entries):
    sim = pv.PermVmalloc(pv.MachineConfig(ram_bytes=1 << 30, cpus=4), pv.PolicyConfig(policy))
    for i, n in enumerate(entries):
        sim.load_module(pv.ModuleSpec(f"m{i}", 2, 1, 1, 1, 1, 0, 1, 3, jump_entries=n))
    return pv.RunResult(pv.PolicyConfig(policy), pl.DataFrame(sim.ops, infer_schema_length=None),
                        None, sim.flush_log, [], sim.counts, [], {})


@pytest.mark.parametrize("policy", list(pv.Policy))
def test_every_policy_pays_the_patching_and_cpu_ns_adds_it(policy):
    """Every policy patches the loaded text live: the per-operation frame carries the
    patching apart from the flushes, and the chart's CPU time adds it (no re-walks)."""
    res = _loads(policy, [40, 0])
    tp = pv.TextPoke(0.1, 2.0)
    c = pv.op_costs(res, 4, "x86", COSTS, pv.Rewalk(working_set=0), tp).sort("index")
    assert c["poke_initiator_ns"].to_list() == pytest.approx([6060.0, 0.0])
    assert c["poke_target_ns"].to_list() == pytest.approx([18000.0, 0.0])
    cv = pv.cost_vs_cpus([res], [4], methods=("x86",), costs=COSTS,
                         rewalk=pv.Rewalk(working_set=0), text_poke=tp,
                         ops=(pv.OpKind.MODULE_LOAD,))
    none = pv.cost_vs_cpus([res], [4], methods=("x86",), costs=COSTS,
                           rewalk=pv.Rewalk(working_set=0), text_poke=pv.TextPoke(0.0, 2.0),
                           ops=(pv.OpKind.MODULE_LOAD,))
    assert cv["text_poke_ns"][0] == pytest.approx((6060.0 + 18000.0) / 2)
    assert cv["cpu_ns"][0] - none["cpu_ns"][0] == pytest.approx(cv["text_poke_ns"][0])
    assert cv["initiator_ns"][0] == none["initiator_ns"][0]


def test_study_parameters():
    """The study prices the patching from its three assumed parameters."""
    tp = text_poke_config(DEFAULTS)
    assert tp == pv.TextPoke(DEFAULTS["jump_patched_share"], DEFAULTS["jump_entries_per_key"],
                             DEFAULTS["static_call_changed_share"])
    assert {"jump_patched_share", "jump_entries_per_key",
            "static_call_changed_share"} <= set(pv.COST_RANGES)
    assert np.isfinite(pv.text_poke_batches([10], tp)[1]).all()


# ---- static calls ---------------------------------------------------------------------------
# v6.1 kernel/static_call_inline.c: static_call_module_notify(MODULE_STATE_COMING) ->
# static_call_add_module -> __static_call_init: arch_static_call_transform(site, NULL, func,
# tail) for every site of .static_call_sites, one at a time; arch/x86/kernel/static_call.c
# __static_call_transform(site, ..., modinit=false): memcmp with the wanted instruction, else
# text_poke_bp(insn, code, size, emulate) -> text_poke_bp_batch of one entry.

def test_static_call_site_is_two_s32():
    """``struct static_call_site { s32 addr; s32 key; }``: 8 bytes a site."""
    assert pv.STATIC_CALL_SITE_BYTES == 8
    t = pv.module_table()
    assert (t["static_call_entries"] * 8 == t["static_call_sites"]).all()


def test_each_changed_static_call_site_is_a_batch_of_one():
    """10 sites, all changed: 10 batches of 3 syncs and 10 entries of 3 writes; on 4 CPUs
    10 * 2430 + 10 * 300 = 27300 ns on the initiator, 10 * 9000 on the others. Half changed:
    half of that."""
    patched, batches = pv.static_call_batches([10], pv.TextPoke())
    assert patched[0] == 10 and batches[0] == 10
    patched, batches = pv.static_call_batches([10], pv.TextPoke(static_call_share=0.5))
    assert patched[0] == 5 and batches[0] == 5
    with pytest.raises(ConfigError):
        pv.TextPoke(static_call_share=1.5)
    with pytest.raises(ConfigError):
        pv.static_call_batches([-1])
    sim = pv.PermVmalloc(pv.MachineConfig(ram_bytes=1 << 30, cpus=4),
                         pv.PolicyConfig(pv.Policy.LEGACY))
    sim.load_module(pv.ModuleSpec("m0", 2, 1, 1, 1, 1, 0, 1, 3, jump_entries=40,
                                  static_call_sites=10))
    sim.load_module(pv.ModuleSpec("m1", 2, 1, 1, 1, 1, 0, 1, 3))
    res = pv.RunResult(pv.PolicyConfig(pv.Policy.LEGACY),
                       pl.DataFrame(sim.ops, infer_schema_length=None), None, sim.flush_log,
                       [], sim.counts, [], {})
    c = pv.text_poke_costs(res, 4, "x86", COSTS, pv.TextPoke(0.1, 2.0, 1.0)).sort("index")
    assert c["poke_batches"].to_list() == pytest.approx([2.0 + 10.0, 0.0])
    assert c["poke_initiator_ns"].to_list() == pytest.approx([6060.0 + 27300.0, 0.0])
    assert c["poke_target_ns"].to_list() == pytest.approx([18000.0 + 90000.0, 0.0])


def test_measured_modules_carry_their_static_call_sites():
    """readelf -S of the package's nf_tables.ko: ``.static_call_sites`` 0xa0 bytes, 20 sites;
    the measured mix hands a donor's sites to the module that takes its layout."""
    t = pv.module_table()
    i = int(np.flatnonzero(t["module"] == "net/netfilter/nf_tables")[0])
    assert t["static_call_sites"][i] == 0xa0 and t["static_call_entries"][i] == 20
    assert (t["static_call_entries"] > 0).any()
    mods = pv.MeasuredModuleMix().modules([int(s) for s in t["core_pages"][:400] * 4096], seed=0)
    assert sum(m.static_call_sites for m in mods) > 0
