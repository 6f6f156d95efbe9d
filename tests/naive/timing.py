"""Plain-Python twin of kmm.timing: scalar loops, its own fixed-point search, its own set
counting; no numpy arithmetic."""
from __future__ import annotations

LINE = 64


def delay_share(a, k, rho):
    rho = min(1.0, max(0.0, rho))
    x = k * rho
    return a * x / (1.0 - x)


def latency(idle, a, k, la, lk, node_rho, link_rho):
    n = len(idle)
    out = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            v = idle[i][j] + idle[j][j] * delay_share(a, k, node_rho[j])
            if i != j:
                prem = max(idle[i][j] - idle[j][j], 0.0)
                v += prem * delay_share(la, lk, link_rho[i][j])
            out[i][j] = v
    return out


def mlp(instructions, served, dep, outstanding, window):
    out = []
    for k in range(len(instructions)):
        ind = 0.0
        for s in range(3):
            ind += (1.0 - dep[s]) * (served[k][s][1] + served[k][s][2] + served[k][s][3])
        m = ind / instructions[k] if instructions[k] > 0 else 0.0
        out.append(min(float(outstanding), max(1.0, m * window)))
    return out


def work(core, instructions, served, mem, tlb_hits, lat, mlps):
    dep = core["dep"]
    out = []
    for k in range(len(instructions)):
        w = instructions[k] * core["cpi_base"] / core["ghz"]
        w += tlb_hits[k] * core["l2_tlb_cycles"] / core["ghz"]
        for s in range(3):
            share = dep[s] + (1.0 - dep[s]) / mlps[k]
            w += served[k][s][1] * core["l2_cycles"] / core["ghz"] * share
            w += served[k][s][2] * core["llc_ns"] * share
            for j in range(len(instructions)):
                w += mem[k][s][j] * lat[k][j] * share
        out.append(w)
    return out


def solve(core, ms, instructions, served, mem, tlb_hits, cpus, extra):
    """Returns (wall_ns, bound). Own search: grow an upper bound, then halve."""
    n = len(instructions)
    vnode = [0.0] * n
    vlink = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            lines = extra[i][j] + sum(mem[i][s][j] for s in range(3))
            vnode[j] += lines * LINE
            if i != j:
                vlink[i][j] = lines * LINE
    bg = ms["background"]
    mlps = mlp(instructions, served, core["dep"], core["outstanding"], core["window"])

    def g(t):
        rn = [(vnode[j] / t if t else 0.0) / ms["peak"][j] + bg for j in range(n)]
        rl = [[((vlink[i][j] / t if t else 0.0) / ms["link"][i][j] + bg) if i != j else 0.0
               for j in range(n)] for i in range(n)]
        lat = latency(ms["idle"], ms["a"], ms["k"], ms["la"], ms["lk"], rn, rl)
        w = work(core, instructions, served, mem, tlb_hits, lat, mlps)
        return max(w[k] / cpus[k] for k in range(n))

    tbw = 0.0
    for j in range(n):
        tbw = max(tbw, vnode[j] / (ms["peak"][j] * (1.0 - bg)))
        for i in range(n):
            if i != j:
                tbw = max(tbw, vlink[i][j] / (ms["link"][i][j] * (1.0 - bg)))
    if tbw == 0.0:
        return g(0.0), "latency"
    if g(tbw) <= tbw:
        return tbw, "bandwidth"
    lo, hi = tbw, 2.0 * tbw
    while hi - g(hi) < 0.0:
        lo, hi = hi, 2.0 * hi
    for _ in range(300):
        mid = (lo + hi) / 2.0
        if mid - g(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return hi, "latency"


def lost_sets(sets, start, end, full, cap):
    out = []
    for s in sets:
        n = len(set(s))
        if n == 0:
            out.append(0.0)
            continue
        held = min(n, cap)
        if full:
            out.append(float(held))
        else:
            r = len([p for p in set(s) if start <= p < end])
            out.append(r * held / n)
    return out


def rewalk(working_set, refs, memory_refs, cached, mem_lat, cpus, tlb_entries, full, initiator):
    """Every CPU's re-walks of its working set after a flush (none after a ranged one: the
    working set lies outside the range), each walk ``refs`` dependent reads of which
    ``min(memory_refs, refs)`` at ``mem_lat``: (per CPU ns, total, initiator, others,
    re-walks)."""
    held = min(float(working_set), float(tlb_entries)) if full else 0.0
    m = min(float(memory_refs), float(refs))
    walk = (refs - m) * cached + m * mem_lat
    per = [held * walk for _ in range(cpus)]
    total = 0.0
    for v in per:
        total += v
    return per, total, per[initiator], total - per[initiator], held * cpus


def loaded(idle, a, k, rho):
    """A read's latency at a node of idle latency ``idle`` at utilisation ``rho``."""
    return idle * (1.0 + delay_share(a, k, rho))
