"""The measured module-section table (kmm/data/module_sections_amd64.csv.gz), the loader
layout that produced it (kmm/capture/module_sections.py), and the module mix drawn from it
(issue 32). No network: the table is committed; the capture script is not run here."""
import gzip
from pathlib import Path

import numpy as np

from kmm.capture import module_sections as ms
from kmm.mech import permvmalloc as pv
from kmm.mech.permvmalloc import MeasuredModuleMix, module_table

TABLE = Path(pv.__file__).resolve().parents[2] / "data" / "module_sections_amd64.csv.gz"

#: ``readelf -SW`` of a small synthetic module: the section kinds the loader sorts
READELF = """\
There are 12 section headers, starting at offset 0x1000:

Section Headers:
  [Nr] Name              Type            Address          Off    Size   ES Flg Lk Inf Al
  [ 0]                   NULL            0000000000000000 000000 000000 00      0   0  0
  [ 1] .text             PROGBITS        0000000000000000 000040 001001 00  AX  0   0 16
  [ 2] .init.text        PROGBITS        0000000000000000 001041 000010 00  AX  0   0  1
  [ 3] .rodata           PROGBITS        0000000000000000 001060 000100 00   A  0   0 32
  [ 4] .modinfo          PROGBITS        0000000000000000 001160 000050 00   A  0   0  1
  [ 5] __versions        PROGBITS        0000000000000000 0011c0 000400 00   A  0   0 32
  [ 6] __jump_table      PROGBITS        0000000000000000 0015c0 000030 00  WA  0   0  8
  [ 7] .data             PROGBITS        0000000000000000 0015f0 000020 00  WA  0   0 32
  [ 8] .data..percpu     PROGBITS        0000000000000000 001610 000200 00  WA  0   0 64
  [ 9] .init.data        PROGBITS        0000000000000000 001810 000008 00  WA  0   0  8
  [10] .bss              NOBITS          0000000000000000 001818 000004 00  WA  0   0  4
  [11] .symtab           SYMTAB          0000000000000000 001820 000300 18     12  10  8
  [12] .strtab           STRTAB          0000000000000000 001b20 000100 00      0   0  1
"""


def test_layout_replays_the_v61_loader_on_a_hand_worked_module():
    """v6.1 kernel/module/main.c: ``layout_and_allocate`` marks ``__jump_table`` (and
    ``.data..ro_after_init``) ``SHF_RO_AFTER_INIT`` and drops ``SHF_ALLOC`` from the per-CPU
    section; ``rewrite_section_headers`` drops it from ``.modinfo`` and ``__versions``;
    ``layout_sections`` sorts ``.init*`` into the init layout and the rest by the masks
    text / read-only / ro_after_init / writable, each at ``ALIGN(size, sh_addralign)``;
    ``layout_symtab`` appends the full symbol and string tables to the init layout."""
    secs = ms.sections(READELF)
    assert [s[0] for s in secs][:3] == [".text", ".init.text", ".rodata"] and len(secs) == 12
    lay = ms.layout(secs)
    assert lay == {"text": 0x1001, "ro": 0x100, "rai": 0x30, "rw": 0x20 + 0x4,
                   "init_text": 0x10, "init_ro": 0, "init_rw": 0x8, "symtab": 0x400,
                   "ro_after_init": 0, "jump_table": 0x30, "static_call_sites": 0}
    # a .static_call_sites section (``struct static_call_site``, 8 bytes a site, "WA": v6.1
    # marks only .data..ro_after_init and __jump_table ro_after_init) is measured and laid
    # out with the writable data, before .data (section order)
    with_sites = READELF.replace(
        "  [ 7] .data ",
        "  [ 6] .static_call_sites PROGBITS        0000000000000000 0015f0 000010 00  WA  0   0  1\n"
        "  [ 7] .data ")
    lay2 = ms.layout(ms.sections(with_sites))
    assert lay2["static_call_sites"] == 0x10
    assert lay2["rw"] == 0x10 + 0x10 + 0x20 + 0x4      # .data aligned to 32 after it
    assert {k: v for k, v in lay2.items() if k not in ("rw", "static_call_sites")} == \
        {k: v for k, v in lay.items() if k not in ("rw", "static_call_sites")}


def test_table_schema_source_and_stated_facts():
    """The table names its package; one row per module of linux-image-6.1.0-50-amd64-unsigned
    6.1.176-1 (4022 modules); ro_after_init data exists exactly where the module has
    ``.data..ro_after_init`` or ``__jump_table``; it is under a few hundred KB."""
    assert TABLE.stat().st_size < 300_000
    with gzip.open(TABLE, "rt") as fh:
        head = fh.readline()
    assert head.startswith("# package: linux-image-6.1.0-50-amd64-unsigned 6.1.176-1 ")
    assert pv.MODULE_TABLE_PACKAGE == (ms.PACKAGE, ms.VERSION)
    assert pv.MODULE_TABLE_COLUMNS == ms.COLUMNS
    t = module_table()
    n = t["module"].shape[0]
    assert n == 4022 and len(set(t["module"].tolist())) == n
    for c in ms.COLUMNS[1:]:
        assert (t[c] >= 0).all(), c
    has = (t["ro_after_init"] > 0) | (t["jump_table"] > 0)
    assert np.array_equal(t["rai"] > 0, has)
    assert (t["rai"] >= t["ro_after_init"] + t["jump_table"]).all()
    assert (t["rw"] > 0).all()                    # .gnu.linkonce.this_module: struct module
    # two modules have no code at all (data tables)
    assert sorted(t["module"][t["text"] == 0].tolist()) == [
        "crypto/cast_common", "drivers/media/tuners/tuner-types"]
    i = int(np.flatnonzero(t["module"] == "net/key/af_key")[0])
    # readelf -S of af_key.ko: .text 0x5ee5 + .text.unlikely 0x67 + .exit.text 0x2e
    assert t["text"][i] == 0x5ee5 + 0x67 + 0x2e and t["rai"][i] == 0


def test_the_share_with_ro_after_init_grows_with_module_size():
    """The measured relation the model uses: no 3-page module has an ro_after_init page
    (4 regions need 4 pages), about 60 % of 4-7 page modules do, over 80 % of the largest."""
    t = module_table()
    core, has = t["core_pages"], t["rai_pages"] > 0
    assert core.min() == 3 and not has[core == 3].any()
    small = has[(core >= 4) & (core < 8)].mean()
    mid = has[(core >= 8) & (core < 32)].mean()
    large = has[core >= 64].mean()
    assert 0.5 < small < mid < large and large > 0.8
    assert 0.3 < has.mean() < 0.5


def test_measured_mix_keeps_lsmod_sizes_and_draws_donors_of_that_size():
    sizes = pv.LSMOD_X86_LAPTOP
    a = MeasuredModuleMix().modules(sizes, seed=1)
    b = MeasuredModuleMix().modules(sizes, seed=1)
    assert a == b
    t = module_table()
    for m, s in zip(a, sizes):
        core = -(-s // 4096)
        assert m.core_pages == core and m.text >= 0 and m.rw >= 1
        assert m.init_rw >= 1 and m.elf_pages >= 1
        if core == 3:
            assert m.rai == 0
        if (t["core_pages"] == core).sum() >= pv.MODULE_NEIGHBOURS:   # an exact donor
            d = ((t["core_pages"] == core) & (t["text_pages"] == m.text)
                 & (t["ro_pages"] == m.ro) & (t["rai_pages"] == m.rai))
            assert d.any()
    big = MeasuredModuleMix().modules([16965632], seed=0)[0]    # beyond the table's range
    assert big.core_pages == 16965632 // 4096
