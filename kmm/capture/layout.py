"""A kernel's memory layout as the running guest shows it, and attribution of every reference
to a region.

arm64 6.1 prints no virtual memory layout, and the Debian package's ``System.map`` is a stub,
so the layout is computed from what the guest exposes after the measured window:

- ``/proc/kcore``'s program headers: the kernel image (virtual and physical start, so
  ``kimage_voffset``), the linear map (``PAGE_OFFSET`` and ``PHYS_OFFSET``), the vmalloc
  range, the modules range and the vmemmap ranges (fs/proc/kcore.c ``kcore_update_ram``,
  arch/arm64 ``kclist_add`` calls);
- ``/proc/kallsyms``: text symbols, ``_stext``, ``_etext``, ``__init_begin`` and the nVHE
  hypervisor's ``__hyp_text_start`` / ``__hyp_text_end`` (this build has no
  ``CONFIG_KALLSYMS_ALL``, so no data symbols);
- ``/proc/iomem``: ``Kernel code`` and ``Kernel data`` (physical), System RAM;
- ``/proc/vmallocinfo`` before and after the window: each area's caller names module text
  (``module_alloc``), BPF JIT images (``bpf_jit_alloc_exec``), task stacks
  (``alloc_thread_stack_node``) and dynamic per-CPU chunks (``pcpu_get_vm_areas``);
- the kernel Image's PE/COFF ``.data`` section: ``_edata``, where ``.bss`` begins;
- ``/sys/devices/system/cpu/cpuN/crash_notes`` (a per-CPU allocation's physical address per
  CPU) and the boot log's ``percpu: Embedded ... sS rR dD uU`` line: the first per-CPU chunk,
  which this build embeds in the linear map.

Fixmap and PCI I/O are not in kcore; they sit between ``VMALLOC_END`` and ``VMEMMAP_START``
at the offsets of arch/arm64/include/asm/memory.h (v6.1): ``PCI_IO_END = VMEMMAP_START -
8 MiB``, ``PCI_IO_START = PCI_IO_END - 16 MiB``, ``FIXADDR_TOP = VMEMMAP_START - 32 MiB``,
``VMALLOC_END = VMEMMAP_START - 256 MiB``.

Exception level and fetch physical addresses
--------------------------------------------
QEMU 7.2's plugin API reads no registers and gives no physical address for instruction
fetches, so both are inferred. An instruction at a TTBR1 address (bit 63 set) runs at EL1;
one in the hypervisor's text at its EL2 address runs at EL2; any other at EL0. A data access
has the level of the instruction that made it (the plugin reports it right after that
instruction's fetch on the same vCPU). The nVHE hypervisor maps its text at ``hyp VA = tag |
(linear-map VA & va_mask)`` (arch/arm64/kvm/va_layout.c ``compute_layout``) with ``va_mask =
2^tag_lsb - 1``, ``tag_lsb = fls64(linear start ^ linear end - 1)`` and a tag that is random
per boot (fixed here by QEMU's ``-seed``); the tag is found as the common high part of the
non-TTBR1 fetches whose low ``tag_lsb`` bits fall in the hypervisor text's linear-map offsets.
Fetch physical addresses: kernel image ``va - kimage_voffset``; linear map ``va - PAGE_OFFSET
+ PHYS_OFFSET``; hypervisor text ``PHYS_OFFSET + (va & va_mask)``; elsewhere unknown.

NUMA physical addresses
-----------------------
With ``-numa node,memdev=`` QEMU 7.2's ``qemu_plugin_hwaddr_phys_addr`` returns the RAM
block's ram_addr offset plus the backend region's offset inside the machine's RAM container,
not the guest physical address. Linear-map accesses carry their true physical address in
their virtual address, so each block's correction is measured on them (one constant per
block) and applied to every reported address in that block's reported range.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

from ..errors import KmmError

UNKNOWN_PA = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
TTBR1 = np.uint64(1 << 63)


class Region(IntEnum):
    """Where a reference went (the ``region`` column of a kernel trace)."""

    USER = 0
    TEXT = 1          # kernel image: _stext.._etext (nVHE hypervisor text included)
    RODATA = 2        # _etext..__init_begin
    INIT = 3          # __init_begin.._sdata
    DATA = 4          # _sdata.._edata
    BSS = 5           # _edata.._end
    LINEAR = 6        # linear map, outside the per-CPU first chunk
    PERCPU = 7        # per-CPU areas (first chunk in the linear map, later chunks in vmalloc)
    VMALLOC = 8
    STACK = 9         # vmalloc'd task stacks
    MODULES = 10      # module text and data (module_alloc)
    BPF = 11          # BPF JIT images
    VMEMMAP = 12      # struct page array
    FIXMAP = 13
    PCI_IO = 14
    HYP = 15          # references made at EL2
    KERNEL_OTHER = 16  # a TTBR1 address outside every range above


REGION_NAMES = {r: r.name.lower() for r in Region}


@dataclass
class Layout:
    """Address ranges of one boot, all ``[lo, hi)``; JSON-able via :meth:`to_json`."""

    kimage_va: int
    kimage_pa: int
    image_end: int
    stext: int
    etext: int
    init_begin: int
    sdata: int
    edata: int
    page_offset: int
    phys_offset: int
    linear_size: int
    vmalloc: tuple[int, int]
    modules: tuple[int, int]
    vmemmap: list[tuple[int, int]]
    fixmap: tuple[int, int]
    pci_io: tuple[int, int]
    hyp_text: tuple[int, int] | None = None       # kernel VAs of __hyp_text_start/end
    hyp_va_mask: int = 0
    hyp_tag: int | None = None
    areas: list[tuple[int, int, int]] = field(default_factory=list)   # (lo, hi, Region)
    percpu_units: list[tuple[int, int]] = field(default_factory=list)
    ram: list[tuple[int, int]] = field(default_factory=list)          # physical System RAM
    nodes: list[tuple[int, int, int]] = field(default_factory=list)   # (nid, pa lo, pa hi)

    def to_json(self) -> dict:
        def h(x):
            if isinstance(x, (list, tuple)):
                return [h(v) for v in x]
            return f"{x:#x}" if isinstance(x, int) and not isinstance(x, bool) else x

        return {k: h(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, d: dict) -> "Layout":
        def u(x):
            if isinstance(x, list):
                return [u(v) for v in x]
            return int(x, 16) if isinstance(x, str) and x.startswith("0x") else x

        try:
            kw = {k: u(v) for k, v in d.items()}
            for k in ("vmalloc", "modules", "fixmap", "pci_io", "hyp_text"):
                if kw.get(k) is not None:
                    kw[k] = tuple(kw[k])
            for k in ("vmemmap", "areas", "percpu_units", "ram", "nodes"):
                kw[k] = [tuple(v) for v in kw.get(k, [])]
            return cls(**kw)
        except (TypeError, ValueError, AttributeError) as e:
            raise KmmError(f"bad layout in the manifest: {e}") from None

    # ---- inference -------------------------------------------------------------------------
    def fetch_el(self, va: np.ndarray) -> np.ndarray:
        """Exception level of instructions at ``va``."""
        el = np.where((va & TTBR1) != 0, 1, 0).astype(np.uint8)
        if self.hyp_tag is not None and self.hyp_text is not None:
            lo, hi = self.hyp_va_range()
            el[(va >= np.uint64(lo)) & (va < np.uint64(hi))] = 2
        return el

    def hyp_va_range(self) -> tuple[int, int]:
        lo_pa = self.hyp_text[0] - self.kimage_va + self.kimage_pa
        hi_pa = self.hyp_text[1] - self.kimage_va + self.kimage_pa
        off = lambda pa: (pa - self.phys_offset) & self.hyp_va_mask  # noqa: E731
        return self.hyp_tag | off(lo_pa), self.hyp_tag | off(hi_pa)

    def fetch_pa(self, va: np.ndarray, el: np.ndarray) -> np.ndarray:
        """Inferred physical addresses of instruction fetches (UNKNOWN_PA where none)."""
        pa = np.full(va.shape, UNKNOWN_PA, np.uint64)
        img = (va >= np.uint64(self.kimage_va)) & (va < np.uint64(self.image_end))
        pa[img] = va[img] - np.uint64(self.kimage_va) + np.uint64(self.kimage_pa)
        lin = (va >= np.uint64(self.page_offset)) & \
            (va < np.uint64(self.page_offset + self.linear_size))
        pa[lin] = va[lin] - np.uint64(self.page_offset) + np.uint64(self.phys_offset)
        if self.hyp_va_mask:
            hyp = el == 2
            pa[hyp] = (va[hyp] & np.uint64(self.hyp_va_mask)) + np.uint64(self.phys_offset)
        return pa

    def linear_pa(self, va: np.ndarray) -> np.ndarray:
        lin = (va >= np.uint64(self.page_offset)) & \
            (va < np.uint64(self.page_offset + self.linear_size))
        return np.where(lin, va - np.uint64(self.page_offset) + np.uint64(self.phys_offset),
                        UNKNOWN_PA)

    def find_hyp_tag(self, fetch_va: np.ndarray) -> None:
        """Set :attr:`hyp_tag` from fetches at the hypervisor's own addresses, if any."""
        if self.hyp_text is None or not self.hyp_va_mask:
            return
        lo_pa = self.hyp_text[0] - self.kimage_va + self.kimage_pa - self.phys_offset
        hi_pa = self.hyp_text[1] - self.kimage_va + self.kimage_pa - self.phys_offset
        m = np.uint64(self.hyp_va_mask)
        low = fetch_va[(fetch_va & TTBR1) == 0]
        cand = low[((low & m) >= np.uint64(lo_pa & self.hyp_va_mask)) &
                   ((low & m) < np.uint64(hi_pa & self.hyp_va_mask)) &
                   ((low & ~m) != 0)]
        if cand.size == 0:
            return
        tags, counts = np.unique(cand & ~m, return_counts=True)
        self.hyp_tag = int(tags[np.argmax(counts)])

    # ---- attribution -----------------------------------------------------------------------
    def attribute(self, va: np.ndarray, el: np.ndarray) -> np.ndarray:
        """:class:`Region` code of each reference."""
        va = np.asarray(va, np.uint64)
        reg = np.full(va.shape, int(Region.KERNEL_OTHER), np.uint8)
        kern = (va & TTBR1) != 0
        reg[~kern] = Region.USER

        def put(lo, hi, r):
            sel = (va >= np.uint64(lo)) & (va < np.uint64(hi))
            reg[sel] = r

        put(self.page_offset, self.page_offset + self.linear_size, Region.LINEAR)
        put(*self.vmalloc, Region.VMALLOC)
        put(*self.modules, Region.MODULES)
        for lo, hi in self.vmemmap:
            put(lo, hi, Region.VMEMMAP)
        put(*self.fixmap, Region.FIXMAP)
        put(*self.pci_io, Region.PCI_IO)
        # the image inside the vmalloc range, then its sections
        put(self.stext, self.etext, Region.TEXT)
        put(self.etext, self.init_begin, Region.RODATA)
        put(self.init_begin, self.sdata, Region.INIT)
        put(self.sdata, self.edata, Region.DATA)
        put(self.edata, self.image_end, Region.BSS)
        for lo, hi, r in self.areas:
            put(lo, hi, r)
        for lo, hi in self.percpu_units:
            put(lo, hi, Region.PERCPU)
        reg[el == 2] = Region.HYP
        return reg

    def correct_pa(self, va, pa, has_pa, is_io) -> tuple[np.ndarray, list[list[int]]]:
        """Reported data physical addresses corrected to guest physical addresses (see the
        module docstring); returns the corrected array and the ``[lo, hi, delta]`` rules."""
        pa = pa.copy()
        ok = has_pa & ~is_io
        true = self.linear_pa(va)
        cal = ok & (true != UNKNOWN_PA)
        if not cal.any():
            return pa, []
        delta = (pa[cal] - true[cal]).astype(np.int64)
        blocks = [(lo, hi) for _, lo, hi in self.nodes] or list(self.ram)
        rules = []
        for d in np.unique(delta):
            sample = int(true[cal][delta == d][0])
            lo, hi = next(((lo, hi) for lo, hi in blocks if lo <= sample < hi),
                          (sample & ~0xFFF, (sample | 0xFFF) + 1))
            rules.append([(lo + int(d)) & 0xFFFF_FFFF_FFFF_FFFF,
                          (hi + int(d)) & 0xFFFF_FFFF_FFFF_FFFF, int(d)])
        rules.sort()
        reported = pa.copy()
        for lo, hi, d in rules:
            sel = ok & (reported >= np.uint64(lo)) & (reported < np.uint64(hi))
            pa[sel] = reported[sel] - np.uint64(d & 0xFFFF_FFFF_FFFF_FFFF)
        return pa, rules


# ---- parsing the guest's dumps --------------------------------------------------------------
SECTION = re.compile(r"^@@kmm begin (\S+)\r?$(.*?)^@@kmm end \1\r?$", re.M | re.S)


def sections(console: str) -> dict[str, str]:
    """``@@kmm begin NAME`` ... ``@@kmm end NAME`` blocks of the guest's console output."""
    return {m.group(1): m.group(2).replace("\r", "").strip("\n") for m in SECTION.finditer(console)}


def parse_kallsyms(text: str) -> list[tuple[int, str, str, str]]:
    """``(address, type, name, module)`` of each line of ``/proc/kallsyms``."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            try:
                out.append((int(parts[0], 16), parts[1], parts[2],
                            parts[3].strip("[]") if len(parts) > 3 else ""))
            except ValueError:
                continue
    return out


def parse_iomem(text: str) -> list[tuple[int, int, str, int]]:
    """``(lo, hi, name, depth)`` of ``/proc/iomem``, hi exclusive."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^( *)([0-9a-f]+)-([0-9a-f]+) : (.*)$", line)
        if m:
            out.append((int(m.group(2), 16), int(m.group(3), 16) + 1, m.group(4).strip(),
                        len(m.group(1)) // 2))
    return out


def parse_vmallocinfo(text: str) -> list[tuple[int, int, str]]:
    out = []
    for line in text.splitlines():
        m = re.match(r"^0x([0-9a-f]+)-0x([0-9a-f]+)\s+\d+\s+(\S+)", line)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3).split("+")[0]))
    return out


def image_edata(image: bytes) -> int | None:
    """``_edata - _text`` from the arm64 Image's PE/COFF ``.data`` section (VirtualAddress +
    SizeOfRawData; arch/arm64/kernel/efi-header.S)."""
    if len(image) < 0x40 or image[0x38:0x3C] != b"ARM\x64":
        return None
    pe, = struct.unpack_from("<I", image, 0x3C)
    if image[pe:pe + 4] != b"PE\0\0":
        return None
    nsec, = struct.unpack_from("<H", image, pe + 6)
    optsz, = struct.unpack_from("<H", image, pe + 20)
    sec = pe + 24 + optsz
    for i in range(nsec):
        name = image[sec + 40 * i:sec + 40 * i + 8].rstrip(b"\0")
        vsize, vaddr, rawsize = struct.unpack_from("<III", image, sec + 40 * i + 8)
        if name == b".data":
            return vaddr + rawsize
    return None


#: vmallocinfo caller -> region. Task stacks are allocated in alloc_thread_stack_node(), which
#: this build inlines into kernel_clone(); start_kernel() allocates the per-CPU IRQ stacks.
VMALLOC_CALLERS = {"module_alloc": Region.MODULES, "bpf_jit_alloc_exec": Region.BPF,
                   "bpf_prog_alloc_no_stats": Region.BPF, "bpf_prog_realloc": Region.BPF,
                   "alloc_thread_stack_node": Region.STACK, "kernel_clone": Region.STACK,
                   "copy_process": Region.STACK, "dup_task_struct": Region.STACK,
                   "start_kernel": Region.STACK, "init_irq_stacks": Region.STACK,
                   "arch_alloc_vmap_stack": Region.STACK, "scs_alloc": Region.STACK,
                   "pcpu_get_vm_areas": Region.PERCPU}


def build(dumps: dict[str, str], image: bytes) -> Layout:
    """The :class:`Layout` of a boot from its console sections and the kernel Image."""
    try:
        return _build(dumps, image)
    except (KeyError, StopIteration, ValueError, IndexError) as e:
        raise KmmError(f"the guest's layout dump is incomplete ({type(e).__name__}: {e})",
                       "capture") from None


def _build(dumps: dict[str, str], image: bytes) -> Layout:
    kcore = []
    for line in dumps["kcore"].splitlines():
        p = line.split()
        if p and p[0] == "kcore":
            kcore.append((int(p[1], 16), int(p[2], 16), int(p[3], 16)))
    syms = {name: addr for addr, _, name, mod in parse_kallsyms(dumps["kallsyms"]) if not mod}
    iomem = parse_iomem(dumps["iomem"])
    code = next(r for r in iomem if r[2] == "Kernel code")
    data = next(r for r in iomem if r[2] == "Kernel data")
    stext = syms["_stext"]
    voff = stext - code[0]
    text_hdr = next(k for k in kcore if k[1] != 0xFFFF_FFFF_FFFF_FFFF and k[0] >> 63 and
                    k[0] - k[1] == voff)
    kimage_va, kimage_pa, image_size = text_hdr
    ram = [k for k in kcore if k[1] != 0xFFFF_FFFF_FFFF_FFFF and k is not text_hdr]
    lin_delta = ram[0][0] - ram[0][1]           # PAGE_OFFSET - PHYS_OFFSET
    page_offset = min(k[0] for k in ram) & ~((1 << 47) - 1)    # -(1 << VA_BITS), VA_BITS 48
    linear = (page_offset, page_offset - lin_delta,
              max(k[0] + k[2] for k in ram) - page_offset)
    others = [k for k in kcore if k[1] == 0xFFFF_FFFF_FFFF_FFFF]
    vm = max(others, key=lambda k: k[2])
    vmalloc = (vm[0], vm[0] + vm[2])
    mod = next(k for k in others if k[0] + k[2] == kimage_va)
    vmemmap = sorted((k[0], k[0] + k[2]) for k in others if k[0] >= vmalloc[1])
    vmemmap_start = vmalloc[1] + (256 << 20)
    pci_end = vmemmap_start - (8 << 20)
    edata_off = image_edata(image)
    edata = kimage_va + edata_off if edata_off else data[1] - kimage_pa + kimage_va
    lay = Layout(
        kimage_va=kimage_va, kimage_pa=kimage_pa, image_end=kimage_va + image_size,
        stext=stext, etext=syms["_etext"], init_begin=syms["__init_begin"],
        sdata=data[0] + voff, edata=min(edata, data[1] + voff),
        page_offset=linear[0], phys_offset=linear[1], linear_size=linear[2],
        vmalloc=vmalloc, modules=(mod[0], mod[0] + mod[2]), vmemmap=vmemmap,
        fixmap=(vmalloc[1], pci_end - (16 << 20)), pci_io=(pci_end - (16 << 20), pci_end),
        ram=[(lo, hi) for lo, hi, name, depth in iomem if name == "System RAM" and depth == 0],
    )
    if "__hyp_text_start" in syms and "__hyp_text_end" in syms:
        lay.hyp_text = (syms["__hyp_text_start"], syms["__hyp_text_end"])
        lin_lo, lin_hi = lay.page_offset, lay.page_offset + lay.linear_size - 1
        lay.hyp_va_mask = (1 << (lin_lo ^ lin_hi).bit_length()) - 1
    areas = {}
    for key in ("vmalloc-before", "vmalloc"):
        for lo, hi, caller in parse_vmallocinfo(dumps.get(key, "")):
            r = VMALLOC_CALLERS.get(caller)
            if r is not None:
                areas[(lo, hi)] = int(r)
    for line in dumps.get("modules", "").splitlines():      # name size refs deps state addr
        p = line.split()
        if len(p) >= 6 and p[5].startswith("0x"):
            lo = int(p[5], 16)
            if lo:
                areas.setdefault((lo, lo + int(p[1])), int(Region.MODULES))
    lay.areas = sorted((lo, hi, r) for (lo, hi), r in areas.items())
    m = re.search(r"percpu: Embedded \d+ pages/cpu s(\d+) r(\d+) d(\d+) u(\d+)", dumps.get("dmesg", ""))
    notes = [int(x, 16) for x in dumps.get("crash-notes", "").split()]
    if m and notes:
        s, r, d, u = (int(x) for x in m.groups())
        for pa in notes:
            # crash_notes is an early dynamic allocation: the unit starts at the page-aligned
            # address at least s + r bytes below it (accurate to within d bytes).
            base = (pa - s - r) & ~0xFFF
            va = base - lay.phys_offset + lay.page_offset
            lay.percpu_units.append((va, va + u))
    for nid, lo, hi in re.findall(r"node\s+(\d+): \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]",
                                  dumps.get("dmesg", "")):
        lay.nodes.append((int(nid), int(lo, 16), int(hi, 16) + 1))
    return lay


def symbolize(addrs: np.ndarray, ksyms: list[tuple[int, str, str, str]]) -> list[list]:
    """Text symbols (``[address, name, module]``) that contain at least one of ``addrs``."""
    text = sorted((a, n, m) for a, t, n, m in ksyms if t in "tTwW")
    if not text or addrs.size == 0:
        return []
    starts = np.array([a for a, _, _ in text], np.uint64)
    idx = np.searchsorted(starts, np.unique(addrs), side="right") - 1
    idx = np.unique(idx[idx >= 0])
    return [[f"{text[i][0]:#x}", text[i][1], text[i][2]] for i in idx.tolist()]


def read_image(path: Path) -> bytes:
    return Path(path).read_bytes()
