"""Plain-Python twin of kmm.invalidate: the same flush decisions and costs, with each CPU's
TLB as a set of (page va, asid, vmid) entries of one page size (asid -1: global)."""
from __future__ import annotations

X86_IPI, X86_INVLPGB, ARM64_TLBI = 0, 1, 2


def range_ops(pages, step):
    """Range TLBIs by the 5-bit digits of the page count (plus one for an odd count)."""
    ops = 0
    if pages % 2:
        ops += 1
        pages -= step
    digits = pages >> 1
    while digits:
        ops += (digits & 31) != 0
        digits >>= 5
    return ops


class NaiveInvalidator:
    def __init__(self, config):
        self.m = int(config.method)
        self.cpus = config.cpus
        self.ceiling = config.single_page_flush_ceiling
        self.max_ops = config.max_tlbi_ops
        self.cap = config.pending_capacity
        self.tlbi_range = config.tlbi_range
        self.page_shift = config.page_shift
        k = config.costs
        self.k = {n: int(round(getattr(k, n))) for n in (
            "invlpg_ns", "full_flush_ns", "ipi_base_ns", "ipi_per_extra_target_ns",
            "ipi_handler_ns", "invlpgb_ns", "invlpgb_max_pages", "tlbsync_ns", "tlbi_ns",
            "tlbi_local_ns", "dsb_ish_ns", "dsb_ish_per_cpu_ns", "dsb_nsh_ns")}
        self.c = {n: 0 for n in (
            "flushes", "local_flushes", "shootdowns", "ipis", "invlpgs", "invlpgbs", "tlbsyncs",
            "tlbis", "dsbs", "full_flushes", "entries_dropped", "initiator_ns", "target_ns",
            "pending_overflow")}
        self.tlb = [set() for _ in range(config.cpus)]
        self.mm = set()
        self.batch = set()
        self.pending = []

    def fill(self, cpu, va, asid, vmid):
        self.tlb[cpu].add((va, asid, vmid))

    def _drop(self, cpus, start, end, asid, vmid, kernel, full):
        n = 0
        for c in cpus:
            keep = set()
            for e in self.tlb[c]:
                va, a, v = e
                if full and kernel:
                    hit = v == vmid
                elif full:
                    hit = v == vmid and a == asid and a != -1
                else:
                    hit = v == vmid and (a == asid or a == -1) and start <= va < end
                if hit:
                    n += 1
                else:
                    keep.add(e)
            self.tlb[c] = keep
        self.c["entries_dropped"] += n

    def flush(self, initiator, start, end, shift, asid, vmid, kernel=False, local=False,
              defer=False):
        k, c = self.k, self.c
        asid = -1 if kernel else asid
        c["flushes"] += 1
        pages = (end - start + (1 << shift) - 1) >> shift if end > start else -1
        every = range(self.cpus)
        if self.m == ARM64_TLBI:
            if self.tlbi_range:
                step = 1 << max(shift - self.page_shift, 0)
                full = pages < 0 or pages * step > 32 << 16
                ops = 1 if full else range_ops(pages * step, step)
            else:
                full = pages < 0 or (pages > self.max_ops if kernel else pages >= self.max_ops)
                ops = 1 if full else pages
            c["full_flushes"] += full
            c["tlbis"] += ops
            if local:
                c["local_flushes"] += 1
                c["dsbs"] += 1
                ns = ops * k["tlbi_local_ns"] + k["dsb_nsh_ns"]
                self._drop([initiator], start, end, asid, vmid, kernel, full)
            else:
                c["shootdowns"] += 1
                ns = ops * k["tlbi_ns"]
                if defer:
                    self._queue(initiator, start, end, asid, vmid, kernel, full)
                else:
                    c["dsbs"] += 1
                    ns += k["dsb_ish_ns"] + k["dsb_ish_per_cpu_ns"] * self.cpus
                    self._drop(every, start, end, asid, vmid, kernel, full)
            c["initiator_ns"] += ns
            return ns
        full = pages < 0 or pages > self.ceiling
        if self.m == X86_INVLPGB and not local:
            c["shootdowns"] += 1
            ops = 1 if full else -(-pages // k["invlpgb_max_pages"])
            c["full_flushes"] += full
            c["invlpgbs"] += ops
            ns = ops * k["invlpgb_ns"]
            if defer:
                self._queue(initiator, start, end, asid, vmid, kernel, full)
            else:
                c["tlbsyncs"] += 1
                ns += k["tlbsync_ns"]
                self._drop(every, start, end, asid, vmid, kernel, full)
            c["initiator_ns"] += ns
            return ns
        work = k["full_flush_ns"] if full else pages * k["invlpg_ns"]
        c["full_flushes"] += full
        if local:
            c["local_flushes"] += 1
            c["invlpgs"] += 0 if full else pages
            c["initiator_ns"] += work
            self._drop([initiator], start, end, asid, vmid, kernel, full)
            return work
        if defer:
            self.batch |= set(every) if kernel else set(self.mm)
            self.batch_init = initiator
            self._queue(initiator, start, end, asid, vmid, kernel, True)
            return 0
        targets = [t for t in every if t != initiator and (kernel or t in self.mm)]
        ns = work
        if not full:
            c["invlpgs"] += pages * (1 + len(targets))
        self._drop([initiator] + targets, start, end, asid, vmid, kernel, full)
        if targets:
            c["shootdowns"] += 1
            c["ipis"] += len(targets)
            ns += k["ipi_base_ns"] + k["ipi_per_extra_target_ns"] * (len(targets) - 1) + work
            c["target_ns"] += len(targets) * (k["ipi_handler_ns"] + work)
        else:
            c["local_flushes"] += 1
        c["initiator_ns"] += ns
        return ns

    def _queue(self, initiator, start, end, asid, vmid, kernel, full):
        if len(self.pending) >= self.cap:
            self.c["pending_overflow"] += 1
            s, e, a, v, kr, f = self.pending.pop(0)
            cpus = (set(self.batch) | {self.batch_init}) if self.m == X86_IPI else range(self.cpus)
            self._drop(cpus, s, e, a, v, kr, True if self.m == X86_IPI else f)
        self.pending.append((start, end, asid, vmid, kernel, full))

    def sync(self, initiator):
        if not self.pending:
            return 0
        k, c = self.k, self.c
        ns = 0
        if self.m == ARM64_TLBI:
            c["dsbs"] += 1
            ns = k["dsb_ish_ns"] + k["dsb_ish_per_cpu_ns"] * self.cpus
        elif self.m == X86_INVLPGB:
            c["tlbsyncs"] += 1
            ns = k["tlbsync_ns"]
        for s, e, a, v, kr, f in self.pending:
            if self.m == X86_IPI:
                self._drop(set(self.batch) | {initiator}, s, e, a, v, kr, True)
            else:
                self._drop(range(self.cpus), s, e, a, v, kr, f)
        if self.m == X86_IPI:
            targets = [t for t in self.batch if t != initiator]
            c["full_flushes"] += 1
            c["shootdowns"] += 1
            ns = k["full_flush_ns"]
            if targets:
                c["ipis"] += len(targets)
                ns += (k["ipi_base_ns"] + k["ipi_per_extra_target_ns"] * (len(targets) - 1)
                       + k["full_flush_ns"])
                c["target_ns"] += len(targets) * (k["ipi_handler_ns"] + k["full_flush_ns"])
            self.batch = set()
        self.pending = []
        c["initiator_ns"] += ns
        return ns
