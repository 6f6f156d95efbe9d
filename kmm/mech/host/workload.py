"""host: the access streams and traces the model runs.

Part of :mod:`kmm.mech.host`."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ... import engine as eng
from ...config import check_int
from ...errors import ConfigError
from .kernels import fetches_and_data, slots_and_starts
from .model import (_round_up, GiB, HYP_PA, HYP_VA_BASE, ImagePlacement, KDATA_PA, KERNEL_VA_BASE, KernelImage,
    LINEAR_VA_BASE, Machine, Region, RunConfig, SEGMENT_ALIGN_BYTES, SLOT_SPAN_BYTES, TextModel,
    UDATA_PA, USER_DATA_VA, USER_TEXT_VA, UTEXT_PA, Workload)

class HostTrace(NamedTuple):
    """One simulated CPU's accesses in program order. A fetch access stands for the run of
    ``insns`` consecutive instructions fetched from its line (the repeats hit the L1 I-cache
    and L1 I-TLB and change nothing else); data accesses have ``insns`` 0."""

    va: np.ndarray      # uint64
    pa: np.ndarray      # uint64
    kind: np.ndarray    # uint8 kmm.tlb.Kind
    region: np.ndarray  # uint8 Region
    slot: np.ndarray    # int32 thread slot (home node = slot // slots per node)
    q: np.ndarray       # int16 interleave node of a user page
    insns: np.ndarray   # int32 instructions a fetch access stands for


class TextLayout(NamedTuple):
    """Code images of kernel and user text (:func:`kmm.workloads.code_image`) and the hot
    lines of rodata and image data, shared by every CPU of a run."""

    kernel: object
    user: object
    rodata_lines: np.ndarray
    kshared_lines: np.ndarray


def _image(n_bytes: int, base: int, hot: int, alpha: float, model: TextModel, seed: int):
    """A code image filling ``n_bytes`` whose popularity is Zipf(``alpha``) over ``hot``
    functions picked at random (every other function is never called)."""
    mean = model.median_bytes * np.exp(model.sigma ** 2 / 2) + model.align_bytes / 2
    n = max(hot, int(0.95 * n_bytes / mean))
    img = eng.code_image(n, seed, base=base, median_bytes=float(model.median_bytes),
                               sigma=model.sigma, align_bytes=model.align_bytes, alpha=alpha)
    end = (img.start - np.uint64(base)).astype(np.int64) + img.size_bytes
    keep = int(np.searchsorted(end, n_bytes, side="right"))
    if keep < hot:
        raise ConfigError(f"{hot} hot functions do not fit in {n_bytes} bytes of text",
                          "kernel_hot_funcs")
    pop = img.popularity[:keep].copy()
    pop[np.argsort(-pop)[hot:]] = 0.0
    return eng.CodeImage(img.start[:keep], img.size_bytes[:keep], pop / pop.sum(),
                               {**img.meta, "functions": keep, "hot": hot})


def _stream(image, n: int, seed: int, model: TextModel, global_: bool = True) -> np.ndarray:
    """``n`` fetch addresses from :func:`kmm.workloads.instruction_stream`.

    Adapter: that generator raises IndexError when the runs it draws, once cut at function
    ends, add up to fewer than ``n`` instructions; the draw is then repeated with the next
    seed, and after a few failures the request is split in halves."""
    for k in range(4):
        try:
            return eng.instruction_stream(image, n, seed + k, model.mean_run_insns,
                                                model.branch_fraction, global_=global_).address
        except IndexError:
            continue
    if n < 2:
        raise ConfigError("the instruction stream generator failed repeatedly", "text")
    half = n // 2
    return np.concatenate([_stream(image, half, seed + 101, model, global_),
                           _stream(image, n - half, seed + 202, model, global_)])


def text_layout(w: Workload, m: Machine, model: TextModel, seed: int) -> TextLayout:
    """Kernel text (the text segment of the image, at its kernel VA) and user text as code
    images, and the hot lines of rodata and of the image's read-write data."""
    g = m.geometry
    img = m.image
    va_img = KERNEL_VA_BASE + ImagePlacement().image_va(g)
    kernel = _image(_round_up(img.text_bytes, SEGMENT_ALIGN_BYTES), va_img, w.kernel_hot_funcs,
                    w.kernel_zipf, model, seed)
    user = _image(model.user_text_bytes, USER_TEXT_VA, w.user_hot_funcs, w.user_zipf, model,
                  seed + 1)
    rng = np.random.default_rng([seed, 2])
    ro_all = max(1, img.rodata_bytes // 64)
    sh_all = max(1, img.rw_bytes // 64)
    ro_hot = rng.permutation(ro_all)[:max(1, min(ro_all, w.rodata_hot_bytes // 64))]
    sh_hot = rng.permutation(sh_all)[:max(1, min(sh_all, w.kshared_hot_bytes // 64))]
    return TextLayout(kernel, user, ro_hot, sh_hot)


def generate_cpu_trace(w: Workload, m: Machine, run: RunConfig, layout: TextLayout,
                       node: int, cpu: int, seed: int, model: TextModel = TextModel()
                       ) -> HostTrace:
    """Accesses of one CPU.

    Kernel entries of ``kernel_entry_insns`` instructions alternate with user phases sized
    so that the kernel executes ``kernel_fraction`` of the instructions; each phase takes
    the next instructions of its text's stream (:func:`kmm.workloads.instruction_stream`:
    sequential runs ending in branches, calls and returns by popularity); instructions
    issue data accesses at their phase's rate; time slices pick the running thread (one of
    this CPU's own with probability ``1 - migration``, else one whose home is another
    node); exits to EL2 run through the hypervisor text.
    """
    rng = np.random.default_rng([seed, node, cpu])
    img = m.image
    g = m.geometry
    segs = img.segments()
    va_img = KERNEL_VA_BASE + ImagePlacement().image_va(g)
    pa_img = ImagePlacement().pa_bytes
    rodata_off = segs[0][1]
    rw_off = sum(size for _o, size, _p, rep in segs if rep)
    per_node = m.cpus_per_node * m.threads_per_cpu
    target = run.accesses_per_cpu + run.warmup_per_cpu
    kd_rate = w.kdata_apki / 1000.0
    ud_rate = w.udata_apki / 1000.0
    k_len = w.kernel_entry_insns
    u_len = k_len * (1.0 - w.kernel_fraction) / w.kernel_fraction
    hyp_insns = -(-run.hyp_text_bytes // 4)
    n_insns = int(target / 0.3) + 4 * (k_len + int(u_len))
    while True:
        n_phases = max(2, int(n_insns / (k_len + u_len)) + 1)
        ulens = np.floor(u_len + rng.random(n_phases)).astype(np.int64)
        lens = np.column_stack([np.full(n_phases, k_len), ulens]).ravel()
        mode = np.repeat(np.tile(np.array([1, 0], np.int8), n_phases), lens)
        nk = int((mode == 1).sum())
        ia = np.empty(mode.size, np.uint64)
        s_k, s_u = (int(x) for x in rng.integers(0, 2**31, 2))
        ia[mode == 1] = _stream(layout.kernel, nk, s_k, model)
        ia[mode == 0] = _stream(layout.user, mode.size - nk, s_u, model, global_=False)
        if run.exits_per_kinstr > 0:
            ends = np.cumsum(lens)
            n_ex = rng.poisson(run.exits_per_kinstr * lens / 1000.0)
            where = np.repeat(ends, n_ex * hyp_insns)
            hyp_addr = np.tile(np.uint64(HYP_VA_BASE) + np.arange(hyp_insns, dtype=np.uint64)
                               * np.uint64(4), int(n_ex.sum()))
            ia = np.insert(ia, where, hyp_addr)
            mode = np.insert(mode, where, np.int8(2))
        fetch = np.empty(ia.size, bool)
        data = np.empty(ia.size, bool)
        n_events = int(fetches_and_data(ia, mode, kd_rate, ud_rate, fetch, data))
        if n_events >= target:
            break
        n_insns = int(n_insns * 1.3 * target / max(n_events, 1)) + 1000
    # time slices (of workload instructions): the running thread's slot
    last = int(np.count_nonzero(mode != 2)) - int(mode[-1] != 2)  # workload insns before the last
    n_slices = last // run.slice_instructions + 1
    # a share ``migration`` of slices, evenly spread from a random phase (a stratified
    # draw: the share is exact in every window, which random draws are not in short runs)
    x = np.arange(n_slices) * run.migration + rng.random()
    mig = np.floor(x) != np.floor(x - run.migration)
    home = np.full(n_slices, node, np.int64)
    if m.nodes > 1:
        other = rng.integers(0, m.nodes - 1, n_slices)
        home = np.where(mig, other + (other >= node), home)
    tcpu = np.where(mig, rng.integers(0, m.cpus_per_node, n_slices), cpu)
    slot_of_slice = home * per_node + tcpu * m.threads_per_cpu + rng.integers(
        0, m.threads_per_cpu, n_slices)
    islot = np.empty(ia.size, np.int64)
    start = np.empty(ia.size, np.int64)
    slots_and_starts(mode, fetch, data, slot_of_slice.astype(np.int64, copy=False),
                     np.int64(run.slice_instructions), islot, start)
    va = np.empty(n_events, np.uint64)
    pa = np.empty(n_events, np.uint64)
    kind = np.zeros(n_events, np.uint8)
    region = np.empty(n_events, np.uint8)
    slot = np.empty(n_events, np.int32)
    q = np.zeros(n_events, np.int16)
    insns = np.zeros(n_events, np.int32)
    fi = np.flatnonzero(fetch)
    fpos = start[fi]
    kind[fpos] = 2
    slot[fpos] = islot[fi]
    insns[fpos] = np.diff(np.concatenate([fi, [ia.size]]))
    faddr = ia[fi] & ~np.uint64(63)
    fmode = mode[fi]
    for mcode, reg, vbase, pbase in ((1, Region.KTEXT, va_img, pa_img),
                                     (0, Region.UTEXT, USER_TEXT_VA, UTEXT_PA),
                                     (2, Region.HYP, HYP_VA_BASE, HYP_PA)):
        sel = fmode == mcode
        pos = fpos[sel]
        region[pos] = reg
        va[pos] = faddr[sel]
        pa[pos] = faddr[sel] - np.uint64(vbase) + np.uint64(pbase)
    di = np.flatnonzero(data)
    dpos = start[di] + fetch[di]
    dmode = mode[di]
    dslot = islot[di].astype(np.int64)
    slot[dpos] = dslot
    u = rng.random(dpos.size)
    v = rng.random(dpos.size)
    kdm = dmode == 1
    ro = kdm & (u < w.rodata_fraction)
    sh = kdm & (u >= w.rodata_fraction) & (u < w.rodata_fraction + w.kshared_fraction)
    ko = kdm & ~ro & ~sh
    for sel, reg, lines, seg_off in ((ro, Region.KRODATA, layout.rodata_lines, rodata_off),
                                     (sh, Region.KSHARED, layout.kshared_lines, rw_off)):
        off = seg_off + lines[eng.zipf_ranks(int(sel.sum()), lines.size, 1.0, rng)] * 64
        region[dpos[sel]] = reg
        va[dpos[sel]] = np.uint64(va_img) + off.astype(np.uint64)
        pa[dpos[sel]] = (pa_img + off).astype(np.uint64)
    ko_pa = KDATA_PA + dslot[ko] * SLOT_SPAN_BYTES + (v[ko] * (w.kdata_bytes // 64)).astype(
        np.int64) * 64
    region[dpos[ko]] = Region.KDATA
    pa[dpos[ko]] = ko_pa.astype(np.uint64)
    va[dpos[ko]] = np.uint64(LINEAR_VA_BASE) + ko_pa.astype(np.uint64)
    ud = dmode == 0
    span = np.where(u < w.udata_hot_fraction, w.udata_hot_bytes, w.udata_bytes) // 64
    uoff = (v * span).astype(np.int64)[ud] * 64
    region[dpos[ud]] = Region.UDATA
    va[dpos[ud]] = (USER_DATA_VA + dslot[ud] * SLOT_SPAN_BYTES + uoff).astype(np.uint64)
    pa[dpos[ud]] = (UDATA_PA + dslot[ud] * SLOT_SPAN_BYTES + uoff).astype(np.uint64)
    q[dpos[ud]] = ((uoff >> 12) % m.nodes).astype(np.int16)
    cut = slice(0, target)
    return HostTrace(va[cut], pa[cut], kind[cut], region[cut], slot[cut], q[cut], insns[cut])


def _interleave(traces: list[HostTrace], chunk: int = 256) -> tuple[HostTrace, np.ndarray]:
    """Round-robin chunks of the CPUs' traces (the CPUs of a node share its LLC)."""
    n = min(t.va.size for t in traces)
    k = len(traces)
    # access p of CPU c (c * n + p of the CPUs' traces laid end to end) goes to slot (block,
    # c, offset in block): the full blocks, then the last, shorter one
    nf = n // chunk
    cpus = np.arange(k, dtype=np.int64) * n
    order = np.concatenate([
        ((np.arange(nf, dtype=np.int64) * chunk)[:, None, None] + cpus[None, :, None]
         + np.arange(chunk, dtype=np.int64)[None, None, :]).ravel(),
        (cpus[:, None] + nf * chunk + np.arange(n - nf * chunk, dtype=np.int64)[None, :]).ravel()])
    cpu = (order // n).astype(np.int32)
    merged = HostTrace(*[np.concatenate([getattr(t, f)[:n] for t in traces])[order]
                         for f in HostTrace._fields])
    return merged, cpu


# ---- trace-driven kernel activity -------------------------------------------------------------
#
# The kernel phases of a run can replay a kernel trace captured under QEMU (kmm/data/traces,
# :func:`kmm.traces.read_kernel_trace`) instead of the synthetic kernel stream; the user phases
# and the schedule stay those of the :class:`Workload`.

#: Physical window of trace-driven kernel data (one ``SLOT_SPAN_BYTES`` window per home node,
#: inside node 0's 256 GiB of the host stage-2 map and above the synthetic windows of
#: machines of up to 8 nodes).
TRACE_KDATA_PA = 192 * GiB
#: The first part of each home's window holds the linear-map pages the placement rule
#: scatters (:func:`linear_frame`); kernel data outside the linear map follows it.
LINEAR_WINDOW_BYTES = 2 * GiB
_LINEAR_FRAMES = LINEAR_WINDOW_BYTES >> 12
#: An odd multiplier: ``i -> i * _SCATTER mod 2**19`` is a bijection of the window's frames.
_SCATTER = 0x9E3779B1
#: The fractional golden ratio: successive replays start at well-spread rotations.
_GOLDEN = 0.6180339887498949

#: Host-model class of each captured region (:class:`kmm.capture.layout.Region` names). Not
#: listed (dropped and counted): ``init``, ``modules``, ``bpf``, ``fixmap``, ``pci_io`` and
#: ``kernel_other``, which the host model has no class for (module and BPF text is not
#: part of the image KTR replicates).
TRACE_REGION_CLASS = {"text": Region.KTEXT, "rodata": Region.KRODATA, "data": Region.KSHARED,
                      "bss": Region.KSHARED, "linear": Region.KDATA, "percpu": Region.KDATA,
                      "stack": Region.KDATA, "vmalloc": Region.KDATA, "vmemmap": Region.KDATA,
                      "user": Region.UDATA, "hyp": Region.HYP}


@dataclass(frozen=True)
class TraceWorkload:
    """Kernel phases replayed from captured kernel traces.

    Parameters
    ----------
    scenarios : names of shipped traces (``kmm/data/traces/<name>.kmmt``); their windows are
        replayed one after another
    linear_scale : the placement rule of linear-map pages (``assumed``, swept): a captured
        VM of 1 GiB touches few distinct linear-map pages (page cache, buffers, slab) and
        reuses them, a large machine serving more data touches many more. The window is cut
        into ``linear_scale`` equal parts (by events); in part ``j`` captured page ``p`` is
        modelled page ``p * linear_scale + j`` (:func:`linear_frame`): reuse inside a part
        is kept, a page the VM touched again in a later part is a different page of the
        modelled machine, so the distinct linear-map pages grow up to ``linear_scale``-fold
        with the captured order and line offsets. 1 keeps the captured pages.
        References outside the linear map keep their captured footprint and order.
    """

    scenarios: tuple[str, ...]
    linear_scale: int = 4

    def __post_init__(self):
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        if not self.scenarios:
            raise ConfigError("needs at least one trace scenario", "scenarios")
        for s in self.scenarios:
            eng.shipped_trace_path(s, "scenarios")
        check_int("linear_scale", self.linear_scale, lo=1, hi=1024)


class KernelStream(NamedTuple):
    """A trace's kernel references in host-model terms, one event per line run: every vCPU's
    EL1/EL2 references in program order, vCPU after vCPU.

    ``off`` is the offset inside the event's modelled window (image text, rodata or data
    segment; linear-map page; the VM's RAM for other kernel data; user VA; EL2 VA);
    ``lpage`` the index of the captured linear-map page (-1 elsewhere); ``local`` marks
    per-CPU data (read by the CPU that owns it); ``entries`` the kernel entries (EL0 to
    EL1 transitions, plus a window that starts in the kernel); ``el0_insns`` the user
    instructions captured; ``dropped`` references of regions without a class."""

    region: np.ndarray   # uint8 Region
    kind: np.ndarray     # uint8 kmm.tlb.Kind
    insns: np.ndarray    # int32
    off: np.ndarray      # uint64
    lpage: np.ndarray    # int64
    local: np.ndarray    # bool
    entries: int
    el0_insns: int
    dropped: int

    @property
    def kernel_insns(self) -> int:
        return int(self.insns[self.region != Region.HYP].sum())

    @property
    def entry_insns(self) -> float:
        """Mean kernel instructions per kernel entry."""
        return self.kernel_insns / max(1, self.entries)


def _layout_int(layout: dict, key: str) -> int:
    try:
        return int(layout[key], 16)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"the trace's layout has no usable {key!r}", "trace") from None


def convert_kernel_trace(t, image: KernelImage) -> KernelStream:
    """A :class:`kmm.kmmt.KernelTrace` as a :class:`KernelStream` for ``image``.

    Image references keep their offset from the captured image (text from ``kimage_va``,
    rodata from ``etext``, data and bss from ``sdata``), wrapped into the modelled segment
    when the modelled one is smaller; linear-map references keep their page (``lpage``) and
    offset in it; other kernel data keeps its offset in the VM's RAM; EL2 references their
    offset in the hypervisor's VA range. Consecutive references of one vCPU to one line
    merge into one event (fetches count their instructions; repeated data references of one
    kind hit L1 and change nothing else). EL0 references are dropped (user phases come from
    the :class:`Workload`) and counted."""
    lay = t.manifest.get("layout") or {}
    kimage = _layout_int(lay, "kimage_va")
    etext = _layout_int(lay, "etext")
    sdata = _layout_int(lay, "sdata")
    phys = _layout_int(lay, "phys_offset")
    hyp_mask = int(lay.get("hyp_va_mask", "0x3fffffff"), 16)
    segs = image.segments()
    if len(segs) < 3:
        raise ConfigError("the modelled image needs text, rodata and data segments", "image")
    text_seg, ro_seg, rw_seg = (s[1] for s in segs[:3])
    names = t.region_names()
    code = np.full(256, 255, np.uint8)
    for r, name in names.items():
        if name in TRACE_REGION_CLASS and 0 <= r < 256:
            code[r] = int(TRACE_REGION_CLASS[name])
    order = np.concatenate([np.flatnonzero(t.cpu == c) for c in np.unique(t.cpu)]) \
        if len(t) else np.zeros(0, np.int64)
    cpu, el, kind = t.cpu[order], t.el[order], t.kind[order]
    va, pa, reg = t.address[order], t.pa[order], code[t.region[order]]
    # kernel entries: per vCPU, EL0 -> EL1 transitions and a window starting in the kernel
    kern = el >= 1
    first = np.ones(order.size, bool)
    first[1:] = cpu[1:] != cpu[:-1]
    entries = int((kern & (first | np.concatenate([[False], ~kern[:-1]]))).sum())
    el0_insns = int(((el == 0) & (kind == 2)).sum())
    keep = kern & (reg != 255) & ((el == 2) == (reg == int(Region.HYP)))
    dropped = int((kern & ~keep).sum())
    cpu, kind, va, pa, reg = cpu[keep], kind[keep], va[keep], pa[keep], reg[keep]
    raw = t.region[order][keep]
    line = va >> np.uint64(6)
    fetch = kind == 2
    # a fetch opens an event unless the vCPU's previous fetch was to the same line; a data
    # reference unless its previous data reference was to the same line with the same kind
    new = np.ones(va.size, bool)
    for sel in (fetch, ~fetch):
        i = np.flatnonzero(sel)
        if i.size > 1:
            new[i[1:]] = ((cpu[i[1:]] != cpu[i[:-1]]) | (line[i[1:]] != line[i[:-1]])
                          | (kind[i[1:]] != kind[i[:-1]]) | (reg[i[1:]] != reg[i[:-1]]))
    starts = np.flatnonzero(new)
    # instructions of a fetch event: the vCPU's fetches up to its next fetch event
    f = np.flatnonzero(fetch)
    per_fetch_event = np.bincount(np.cumsum(new[f]) - 1, minlength=int(new[f].sum()))
    insns = np.zeros(va.size, np.int32)
    insns[f[new[f]]] = per_fetch_event
    insns = insns[starts]
    kind, va, pa, reg, raw = kind[starts], va[starts], pa[starts], reg[starts], raw[starts]
    off = np.zeros(va.size, np.uint64)
    lpage = np.full(va.size, -1, np.int64)
    ids = {name: np.array([r for r, n in names.items() if n == name]) for name in
           TRACE_REGION_CLASS}
    src = {name: np.isin(raw, i) for name, i in ids.items()}
    u = np.uint64

    def at(sel, values):
        off[sel] = values[sel]

    at(src["text"], (va - u(kimage)) % u(text_seg))
    at(src["rodata"], (va - u(etext)) % u(ro_seg))
    at(src["data"] | src["bss"], (va - u(sdata)) % u(rw_seg))
    lin = src["linear"]
    at(lin, va & u(0xFFF))
    if lin.any():
        lpage[lin] = np.unique(va[lin] >> u(12), return_inverse=True)[1]
    other = src["percpu"] | src["stack"] | src["vmalloc"] | src["vmemmap"]
    known = pa != u(0xFFFF_FFFF_FFFF_FFFF)
    at(other, np.where(known, pa - u(phys), va) % u(GiB))
    local = src["percpu"]
    at(src["user"], va)
    at(src["hyp"], va & u(hyp_mask))
    return KernelStream(reg.astype(np.uint8), kind.astype(np.uint8), insns, off, lpage,
                        local, entries, el0_insns, dropped)


def _concat_streams(streams: list[KernelStream]) -> KernelStream:
    """Windows one after another (linear-map pages of different windows kept apart)."""
    lp, base = [], 0
    for s in streams:
        lp.append(np.where(s.lpage >= 0, s.lpage + base, -1))
        base += int(s.lpage.max(initial=-1)) + 1
    cat = lambda f: np.concatenate([getattr(s, f) for s in streams])  # noqa: E731
    return KernelStream(cat("region"), cat("kind"), cat("insns"), cat("off"),
                        np.concatenate(lp), cat("local"), sum(s.entries for s in streams),
                        sum(s.el0_insns for s in streams), sum(s.dropped for s in streams))


@lru_cache(maxsize=16)
def read_trace(name: str):
    """The shipped kernel trace of scenario ``name``, read once per process."""
    return eng.read_shipped_trace(name)


@lru_cache(maxsize=32)
def kernel_stream(scenarios: tuple[str, ...], image: KernelImage) -> KernelStream:
    """The shipped traces ``scenarios`` converted (:func:`convert_kernel_trace`) and
    concatenated."""
    return _concat_streams([convert_kernel_trace(read_trace(s), image) for s in scenarios])


def linear_frame(lpage: np.ndarray, part: np.ndarray, scale: int) -> np.ndarray:
    """Page frame (inside a home's linear window) of captured linear-map page ``lpage`` in
    part ``part`` of the window: the rule of :class:`TraceWorkload`, distinct page ``lpage *
    scale + part``, scattered over the window by an odd multiplier (a bijection modulo
    the window's frames) so that neighbouring pages do not share a 2 MiB block or a cache
    set pattern a 1 GiB VM would not have."""
    idx = lpage.astype(np.uint64) * np.uint64(scale) + part.astype(np.uint64)
    return (idx * np.uint64(_SCATTER)) & np.uint64(_LINEAR_FRAMES - 1)


def _replay(stream: KernelStream, need_insns: int, start: float) -> np.ndarray:
    """Event indices of ``stream`` covering at least ``need_insns`` kernel instructions.

    The window starts at the fraction ``start`` of its events and wraps around; replay ``r``
    (when a run needs more than one window) starts at ``start + r * golden ratio``, so that
    the cut points of kernel phases and the pairing of the CPUs move from one replay to the
    next instead of repeating the previous replay's sequence."""
    n = stream.region.size
    per = max(1, int(stream.insns.sum()))
    out, got, r = [], 0, 0
    while got < need_insns or not out:
        o = int(((start + r * _GOLDEN) % 1.0) * n)
        idx = (np.arange(n) + o) % n
        if need_insns - got < per:
            cum = np.cumsum(stream.insns[idx], dtype=np.int64)
            idx = idx[:int(np.searchsorted(cum, need_insns - got, side="left")) + 2]
        out.append(idx)
        got += int(stream.insns[idx].sum())
        r += 1
    return np.concatenate(out)


_KERNEL_REGIONS = np.array([int(Region.KTEXT), int(Region.KRODATA), int(Region.KDATA),
                            int(Region.KSHARED)])


def splice_kernel(syn: HostTrace, stream: KernelStream, tw: TraceWorkload, w: Workload,
                  m: Machine, node: int, cpu: int, start: float) -> HostTrace:
    """``syn`` with each kernel phase (a run of kernel-image and kernel-data accesses)
    replaced by the next events of ``stream`` that hold as many instructions.

    The replaced events take the phase's thread slot, per-CPU data the slot of this CPU's
    own first thread; addresses are placed in the modelled machine (image offsets on the
    modelled image, linear-map pages by :func:`linear_frame` in the home node's window,
    other kernel data after it, user buffers in the thread's user data)."""
    kern = np.isin(syn.region, _KERNEL_REGIONS)
    prev = np.concatenate([[False], kern[:-1]])
    head = kern & ~prev
    phase = np.cumsum(head) - 1
    n_ph = int(head.sum())
    if n_ph == 0:
        return syn
    p_ins = np.bincount(phase[kern], weights=syn.insns[kern], minlength=n_ph).astype(np.int64)
    p_start = np.cumsum(p_ins) - p_ins
    idx = _replay(stream, int(p_ins.sum()), start)
    ins = stream.insns[idx].astype(np.int64)
    before = np.cumsum(ins) - ins
    a = np.searchsorted(before, p_start, side="left")
    b = np.searchsorted(before, p_start + p_ins, side="left")
    cnt = np.where(~kern, 1, 0)
    cnt[head] = b - a
    owner = np.repeat(np.arange(syn.va.size), cnt)
    first_out = np.cumsum(cnt) - cnt
    within = np.arange(owner.size) - first_out[owner]
    from_trace = kern[owner]
    t_idx = np.where(from_trace, a[np.maximum(phase[owner], 0)] + within, 0)
    ev = idx[t_idx]
    out = {f: getattr(syn, f)[owner].copy() for f in HostTrace._fields}
    per_node = m.cpus_per_node * m.threads_per_cpu
    tr = np.flatnonzero(from_trace)
    ev = ev[tr]
    part = (ev.astype(np.int64) * tw.linear_scale) // stream.region.size
    reg = stream.region[ev]
    off = stream.off[ev]
    slot = out["slot"][tr].astype(np.int64)
    slot = np.where(stream.local[ev], node * per_node + cpu * m.threads_per_cpu, slot)
    home = slot // per_node
    g = m.geometry
    segs = m.image.segments()
    va_img = np.uint64(KERNEL_VA_BASE + ImagePlacement().image_va(g))
    pa_img = np.uint64(ImagePlacement().pa_bytes)
    seg_off = {Region.KTEXT: segs[0][0], Region.KRODATA: segs[1][0], Region.KSHARED: segs[2][0]}
    line = ~np.uint64(63)
    va = np.zeros(tr.size, np.uint64)
    pa = np.zeros(tr.size, np.uint64)
    q = np.zeros(tr.size, np.int16)
    for r, so in seg_off.items():
        s = reg == r
        o = (off[s] + np.uint64(so)) & line
        va[s] = va_img + o
        pa[s] = pa_img + o
    win = np.uint64(TRACE_KDATA_PA) + home.astype(np.uint64) * np.uint64(SLOT_SPAN_BYTES)
    lin = (reg == Region.KDATA) & (stream.lpage[ev] >= 0)
    frame = linear_frame(stream.lpage[ev][lin], part[lin], tw.linear_scale)
    pa[lin] = win[lin] + frame * np.uint64(4096) + (off[lin] & line)
    oth = (reg == Region.KDATA) & ~lin
    pa[oth] = win[oth] + np.uint64(LINEAR_WINDOW_BYTES) + (off[oth] & line)
    kd = reg == Region.KDATA
    va[kd] = np.uint64(LINEAR_VA_BASE) + pa[kd]
    ud = reg == Region.UDATA
    uoff = (off[ud] % np.uint64(w.udata_bytes)) & line
    ubase = slot[ud].astype(np.uint64) * np.uint64(SLOT_SPAN_BYTES) + uoff
    va[ud] = np.uint64(USER_DATA_VA) + ubase
    pa[ud] = np.uint64(UDATA_PA) + ubase
    q[ud] = ((uoff >> np.uint64(12)) % np.uint64(m.nodes)).astype(np.int16)
    hy = reg == Region.HYP
    va[hy] = np.uint64(HYP_VA_BASE) + (off[hy] & line)
    pa[hy] = np.uint64(HYP_PA) + (off[hy] & line)
    out["va"][tr], out["pa"][tr], out["region"][tr] = va, pa, reg
    out["kind"][tr], out["insns"][tr] = stream.kind[ev], stream.insns[ev]
    out["slot"][tr], out["q"][tr] = slot.astype(np.int32), q
    return HostTrace(**out)


def trace_cpu_trace(tw: TraceWorkload, w: Workload, m: Machine, run: RunConfig,
                    layout: TextLayout, node: int, cpu: int, seed: int,
                    model: TextModel = TextModel()) -> HostTrace:
    """Accesses of one CPU whose kernel phases replay the captured traces of ``tw``.

    The schedule, user phases and exits to EL2 are those of :func:`generate_cpu_trace`
    for ``w`` with kernel entries as long as the traces' mean entry (EL1 instructions per
    EL0 to EL1 transition); each kernel phase then takes the next captured kernel
    instructions (:func:`splice_kernel`). Each CPU (and seed) starts at its own rotation of
    the window and runs on from there; a run longer than the window replays it rotated
    again (:func:`_replay`), and linear-map pages follow the placement rule of
    :class:`TraceWorkload`. Kernel data per instruction is the captured one (stack and per-CPU data
    included), so a run of ``accesses_per_cpu`` covers fewer instructions than a
    synthetic one."""
    stream = kernel_stream(tw.scenarios, m.image)
    k_len = max(16, int(round(stream.entry_insns)))
    wk = w.with_(kernel_entry_insns=k_len)
    target = run.accesses_per_cpu + run.warmup_per_cpu
    start = float(np.random.default_rng([seed, node, cpu, 24]).random())
    grow = run
    for _ in range(8):
        syn = generate_cpu_trace(wk, m, grow, layout, node, cpu, seed, model)
        out = splice_kernel(syn, stream, tw, wk, m, node, cpu, start)
        if out.va.size >= target:
            return HostTrace(*[a[:target] for a in out])
        short = target / max(1, out.va.size)
        grow = replace(grow, warmup_per_cpu=int(grow.warmup_per_cpu + (short - 1.0) * 1.2
                                                * (grow.warmup_per_cpu
                                                   + grow.accesses_per_cpu)) + 1000)
    raise ConfigError("the trace-driven stream stayed shorter than the run", "trace")


def _zipf_exponent(counts: np.ndarray) -> float:
    """Least-squares slope of log(count) on log(rank) over the ranked counts (the exponent
    of a Zipf law ``count ~ rank ** -alpha``); NaN with fewer than 3 positive counts."""
    c = np.sort(counts[counts > 0])[::-1].astype(np.float64)
    if c.size < 3:
        return float("nan")
    x = np.log(np.arange(1, c.size + 1))
    slope = np.polyfit(x, np.log(c), 1)[0]
    return float(-slope)


def trace_footprint(t) -> dict[str, float]:
    """The synthetic :class:`Workload` footprint parameters measured on a kernel trace:
    ``kernel_fraction`` (EL1 share of fetched instructions), ``kernel_entry_insns`` (EL1
    instructions per kernel entry), ``kernel_hot_funcs`` (functions of the manifest's symbol
    table that fetched at least once), ``kernel_zipf`` (Zipf exponent of the instructions
    fetched per function, :func:`_zipf_exponent`; the synthetic exponent weights calls, so
    this one also carries function lengths), ``kernel_hot_text_bytes`` (distinct text lines
    fetched, bytes), ``rodata_hot_bytes`` and ``kshared_hot_bytes`` (distinct rodata and
    image data/bss lines), ``kdata_apki`` (EL1 kernel-data references per 1000 EL1
    instructions, image data excluded) and ``kdata_apki_no_stack`` (without the stack),
    ``rodata_fraction`` and ``kshared_fraction`` (shares of EL1 data references), and
    ``kdata_bytes`` (distinct lines of other kernel data)."""
    names = t.region_names()
    ids = {n: [r for r, v in names.items() if v == n] for n in TRACE_REGION_CLASS}
    reg = t.region
    el1 = t.el == 1
    fetch = t.kind == 2
    k_f = el1 & fetch & np.isin(reg, ids["text"])
    k_ins = int((el1 & fetch).sum())
    el0_ins = int(((t.el == 0) & fetch).sum())
    order = np.concatenate([np.flatnonzero(t.cpu == c) for c in np.unique(t.cpu)])
    kern = t.el[order] >= 1
    cpu = t.cpu[order]
    first = np.ones(order.size, bool)
    first[1:] = cpu[1:] != cpu[:-1]
    entries = int((kern & (first | np.concatenate([[False], ~kern[:-1]]))).sum())
    data = el1 & ~fetch
    ro = data & np.isin(reg, ids["rodata"])
    sh = data & np.isin(reg, ids["data"] + ids["bss"])
    other_ids = ids["linear"] + ids["percpu"] + ids["stack"] + ids["vmalloc"] + ids["vmemmap"]
    kd = data & np.isin(reg, other_ids)
    kd_ns = kd & ~np.isin(reg, ids["stack"])
    n_data = int((ro | sh | kd).sum())
    lines = lambda sel: int(np.unique(t.address[sel] >> np.uint64(6)).size)  # noqa: E731
    sym = sorted(int(a, 16) for a, _name, *_ in t.manifest.get("symbols", []))
    funcs = float("nan")
    alpha = float("nan")
    if sym:
        fn = np.searchsorted(np.array(sym, np.uint64), t.address[k_f], side="right") - 1
        per = np.bincount(fn[fn >= 0], minlength=len(sym))
        funcs = int((per > 0).sum())
        alpha = _zipf_exponent(per)
    return {"kernel_fraction": k_ins / max(1, k_ins + el0_ins),
            "kernel_entry_insns": k_ins / max(1, entries),
            "kernel_hot_funcs": funcs, "kernel_zipf": alpha,
            "kernel_hot_text_bytes": 64 * lines(k_f),
            "rodata_hot_bytes": 64 * lines(ro), "kshared_hot_bytes": 64 * lines(sh),
            "kdata_apki": 1000.0 * int(kd.sum()) / max(1, k_ins),
            "kdata_apki_no_stack": 1000.0 * int(kd_ns.sum()) / max(1, k_ins),
            "rodata_fraction": int(ro.sum()) / max(1, n_data),
            "kshared_fraction": int(sh.sum()) / max(1, n_data),
            "kdata_bytes": 64 * lines(kd)}


def synthetic_footprint(w: Workload, m: Machine, model: TextModel = TextModel(),
                        seed: int = 1) -> dict[str, float]:
    """The same quantities as :func:`trace_footprint` for a synthetic :class:`Workload`:
    its parameters, and the bytes of its hot kernel functions in the drawn text layout."""
    lay = text_layout(w, m, model, seed)
    hot = lay.kernel.popularity > 0
    data_apki = w.kdata_apki
    return {"kernel_fraction": w.kernel_fraction, "kernel_entry_insns": w.kernel_entry_insns,
            "kernel_hot_funcs": w.kernel_hot_funcs, "kernel_zipf": w.kernel_zipf,
            "kernel_hot_text_bytes": int(lay.kernel.size_bytes[hot].sum()),
            "rodata_hot_bytes": w.rodata_hot_bytes, "kshared_hot_bytes": w.kshared_hot_bytes,
            "kdata_apki": data_apki * (1.0 - w.rodata_fraction - w.kshared_fraction),
            "kdata_apki_no_stack": float("nan"),
            "rodata_fraction": w.rodata_fraction, "kshared_fraction": w.kshared_fraction,
            "kdata_bytes": w.kdata_bytes}


def trace_footprints(scenarios: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """:func:`trace_footprint` of the shipped traces ``scenarios`` (one row per scenario)."""
    return {s: trace_footprint(read_trace(s)) for s in scenarios}


def el2_footprint(t) -> dict[str, float]:
    """Exits to EL2 measured on a kernel trace (the ``pkvm`` scenario): ``exits`` (runs of
    EL2 references on one vCPU), ``exits_per_kinstr`` (per 1000 EL1 instructions),
    ``insns_per_exit`` (EL2 instructions fetched per exit), ``text_bytes_per_exit``
    (distinct EL2 text lines per exit, bytes) and ``text_bytes`` (distinct EL2 text lines of
    the whole window, bytes)."""
    order = np.concatenate([np.flatnonzero(t.cpu == c) for c in np.unique(t.cpu)])
    el, kind, cpu = t.el[order], t.kind[order], t.cpu[order]
    line = t.address[order] >> np.uint64(6)
    e2 = el == 2
    start = e2.copy()
    start[1:] &= ~e2[:-1] | (cpu[1:] != cpu[:-1])
    exits = int(start.sum())
    episode = np.cumsum(start) - 1
    f2 = e2 & (kind == 2)
    per_exit_lines = 0
    if exits:
        pairs = np.unique(np.stack([episode[f2], line[f2].astype(np.int64)]), axis=1)
        per_exit_lines = pairs.shape[1] / exits
    k_ins = int(((el == 1) & (kind == 2)).sum())
    return {"exits": exits, "exits_per_kinstr": 1000.0 * exits / max(1, k_ins),
            "insns_per_exit": int(f2.sum()) / max(1, exits),
            "text_bytes_per_exit": 64.0 * per_exit_lines,
            "text_bytes": 64 * int(np.unique(line[f2]).size)}
