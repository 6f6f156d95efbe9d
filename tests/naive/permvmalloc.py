"""Plain-Python twins of the kernels of :mod:`kmm.mech.permvmalloc`.

Each twin drives the same buddy pool through :class:`kmm.buddy.Buddy`'s validated Python
methods, one call per page or operation, and keeps its live set in Python lists.
"""
from __future__ import annotations

from kmm.buddy import Buddy


def bg_churn(buddy: Buddy, live: list[tuple[int, int]], capacity: int, kind, order, mt,
             pick) -> None:
    """Twin of ``bg_churn``: ``live`` is a list of (pfn, order), updated in place."""
    for k, o, m, p in zip(kind, order, mt, pick):
        if k == 0:
            if len(live) >= capacity:
                continue
            pfn = buddy.alloc(int(o), int(m))
            if pfn >= 0:
                live.append((pfn, int(o)))
        elif live:
            j = int(p) % len(live)
            pfn, o2 = live[j]
            buddy.free(pfn, o2)
            live[j] = live[-1]
            live.pop()


def alloc_order0(buddy: Buddy, n: int, mt: int) -> list[int]:
    """Twin of ``alloc_order0``: the pfns obtained before the pool ran dry."""
    out = []
    for _ in range(n):
        pfn = buddy.alloc(0, mt)
        if pfn < 0:
            break
        out.append(pfn)
    return out


def free_order0(buddy: Buddy, pfns) -> int:
    """Twin of ``free_order0``."""
    for i, p in enumerate(pfns):
        st = buddy.state
        if st.alloc_order[int(p)] != 0:
            return i
        buddy.free(int(p), 0)
    return len(pfns)


def split_block(buddy: Buddy, pfn: int, order: int) -> None:
    """Twin of ``split_block``."""
    st = buddy.state
    mt = int(st.alloc_mt[pfn])
    for p in range(pfn, pfn + (1 << order)):
        st.alloc_order[p] = 0
        st.alloc_mt[p] = mt


def traced_fetches(trace) -> dict:
    """Twin of ``traced_fetches``, one reference at a time: per vCPU in order, its kernel-mode
    fetches into kernel, module and BPF text, cut to its first..last fetch into a module or
    BPF object, consecutive fetches into one 4 KiB page merged; objects are listed areas
    (``layout.areas``) or the stretches between them, ordered by address (an area before the
    stretch after it), a stretch based at the page of its lowest fetch."""
    codes = {v: int(k) for k, v in trace.manifest["region_names"].items()}
    text, mods, bpf = codes["text"], codes["modules"], codes["bpf"]
    lay = trace.manifest["layout"]
    stext = int(lay["stext"], 16)
    areas = sorted((int(a, 16), int(b, 16)) for a, b, r in lay["areas"] if int(r, 16) in (mods, bpf))

    def key(va, region):
        below = [i for i, (lo, _) in enumerate(areas) if lo <= va]
        i = below[-1] if below else -1
        if i >= 0 and va < areas[i][1]:
            return (2 * i + 1, region)
        return (2 * (i + 1), region)

    refs = []   # (cpu, va, key or None)
    el1 = outside = 0
    for va, kind, el, cpu, reg in zip(trace.address.tolist(), trace.kind.tolist(),
                                      trace.el.tolist(), trace.cpu.tolist(),
                                      trace.region.tolist()):
        if kind != 2 or el != 1:
            continue
        el1 += 1
        if reg not in (text, mods, bpf):
            outside += 1
            continue
        refs.append((cpu, va, None if reg == text else key(va, reg)))
    keys = sorted({k for _, _, k in refs if k is not None})
    lowest = {}
    for _, va, k in refs:
        if k is not None:
            lowest[k] = min(lowest.get(k, va), va)
    base = {}
    for k in keys:
        if k[0] % 2:
            base[k] = areas[k[0] // 2][0]
        else:
            base[k] = lowest[k] & ~0xFFF
    obj, off, weight, units, lines = [], [], [], [], []
    for cpu in sorted({c for c, _, _ in refs}):
        mine = [(va, k) for c, va, k in refs if c == cpu]
        hit = [i for i, (_, k) in enumerate(mine) if k is not None]
        if not hit:
            continue
        mine = mine[hit[0]:hit[-1] + 1]
        prev_page, prev_obj = None, False
        visit_lines = None
        for va, k in mine:
            is_obj = k is not None
            if is_obj and not prev_obj:
                if visit_lines is not None:
                    lines.append(len(visit_lines))
                visit_lines = set()
            if not is_obj and prev_obj:
                units.append(len(obj))      # a gap starts a unit
            if is_obj:
                visit_lines.add(va >> 6)
            if (va >> 12) != prev_page:
                obj.append(keys.index(k) if is_obj else -1)
                off.append(va - (base[k] if is_obj else stext))
                weight.append(1)
                if prev_page is None:
                    units.append(len(obj) - 1)  # each vCPU's stream starts a unit
            else:
                weight[-1] += 1
            prev_page, prev_obj = va >> 12, is_obj
        lines.append(len(visit_lines))
    return {"obj": obj, "offset": off, "weight": weight, "units": units + [len(obj)],
            "visit_lines": lines, "el1_fetches": el1, "outside": outside, "keys": keys}
