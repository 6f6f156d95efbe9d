"""host: the access streams and traces the model runs.

Part of :mod:`kmm.mech.host`."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ... import engine as eng
from ...errors import ConfigError
from .model import (_round_up, HYP_PA, HYP_VA_BASE, ImagePlacement, KDATA_PA, KERNEL_VA_BASE,
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
        line = ia >> np.uint64(6)
        fetch = np.ones(ia.size, bool)
        fetch[1:] = (line[1:] != line[:-1]) | (mode[1:] != mode[:-1])
        rate = np.where(mode == 1, kd_rate, np.where(mode == 0, ud_rate, 0.0))
        data = np.diff(np.concatenate([[0], np.floor(np.cumsum(rate) + 1e-9).astype(
            np.int64)])).astype(bool)
        per = fetch.astype(np.int64) + data
        n_events = int(per.sum())
        if n_events >= target:
            break
        n_insns = int(n_insns * 1.3 * target / max(n_events, 1)) + 1000
    # time slices (of workload instructions): the running thread's slot
    work = mode != 2
    wcount = np.cumsum(work) - work
    n_slices = int(wcount[-1] // run.slice_instructions) + 1
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
    islot = slot_of_slice[wcount // run.slice_instructions]
    start = np.cumsum(per) - per
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
    pos = np.arange(n)
    blk = pos // chunk
    # access i of CPU c goes to slot (block, c, offset in block)
    order = np.lexsort((np.tile(pos % chunk, k), np.repeat(np.arange(k), n),
                        np.tile(blk, k)))
    cpu = np.repeat(np.arange(k, dtype=np.int32), n)[order]
    merged = HostTrace(*[np.concatenate([getattr(t, f)[:n] for t in traces])[order]
                         for f in HostTrace._fields])
    return merged, cpu
