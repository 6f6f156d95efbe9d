"""``kmm bench``: measure kmm against the plain-C limit and pycachesim, and the suite's speed.

Benchmarks measure and report; they never assert. Each figure is measured side by side in one
run, so ratios cancel machine noise; absolute rates are reported too. Results are printed as
a table and written to ``<data>/bench/latest.json`` (and a timestamped copy);
``notebooks/bench.ipynb`` charts the latest file.

What is measured
----------------
1. single-level LRU TLB over a fixed 10-million-access trace (80 % from 2,000 hot pages,
   20 % uniform over a million pages, seed 1) in four configurations, ``kmm.tlb.simulate_trace``
   against two plain C LRUs (timestamps, move-to-front) compiled now with ``cc -O2``,
   pycachesim (miss counts must agree) and a pure-Python LRU on a prefix;
2. the engine's full translation path (:class:`kmm.walk.Path`: N1 TLBs, walk cache, walks,
   L1/L2/LLC, NUMA-charged references) against a plain-C reference of the same model
   (``bench_c/path.c``, compiled now with ``cc -O2``; every count must agree), on the
   walk-heavy trace of part 1 and on each shipped kernel trace (CPU time of the simulating
   thread on both sides);
3. page-table operations: a 4 TiB linear map of 4K PTEs plus one million random
   split/permission operations (time and peak resident memory, in a child process);
4. the buddy allocator: order-0 allocations plus frees per second;
5. a real trace recorded now with valgrind's lackey from the Python interpreter, through kmm
   and pycachesim;
6. with ``--suite``: ``kmm reproduce`` cold and warm, and a 16-point sweep on 1 and 2 workers;
7. the shipped real kernel traces (``kmm/data/traces``): stored bytes per reference and read
   speed of each, and (not with ``--quick``, and only where QEMU is installed) capture
   throughput: references recorded per second of ``kmm trace capture bpf``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import KmmError

if TYPE_CHECKING:
    import numpy as np

TLB_CONFIGS = [(48, 48), (1024, 4), (1024, 8), (1536, 12)]  # (entries, ways)
PAGE_SHIFT = 12


def make_trace(n: int = 10_000_000, seed: int = 1, hot_pages: int = 2000,
               universe_pages: int = 1 << 20, hot_share: float = 0.8) -> np.ndarray:
    """The benchmark trace: ``hot_share`` of accesses to ``hot_pages`` pages, the rest uniform."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hot = rng.integers(0, universe_pages, hot_pages)
    pick = rng.random(n) < hot_share
    pages = np.where(pick, hot[rng.integers(0, hot_pages, n)], rng.integers(0, universe_pages, n))
    offs = rng.integers(0, 1 << PAGE_SHIFT, n).astype(np.uint64)
    return (pages.astype(np.uint64) << np.uint64(PAGE_SHIFT)) | offs


def python_lru_misses(addrs: np.ndarray, sets: int, ways: int) -> int:
    """Reference LRU in pure Python (OrderedDict per set)."""
    table = [OrderedDict() for _ in range(sets)]
    misses = 0
    for a in addrs.tolist():
        vpn = a >> PAGE_SHIFT
        s = table[vpn & (sets - 1)]
        if vpn in s:
            s.move_to_end(vpn)
        else:
            misses += 1
            if len(s) >= ways:
                s.popitem(last=False)
            s[vpn] = True
    return misses


def _best(fn, repeats: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _compile_c(workdir: Path, name: str = "lru") -> Path | None:
    """``bench_c/<name>.c`` compiled now with the system ``cc -O2`` (None: no compiler)."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        return None
    src = Path(__file__).with_name("bench_c") / f"{name}.c"
    exe = workdir / name
    subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True, capture_output=True)
    return exe


def _c_lru(exe: Path, trace_file: Path, n: int, sets: int, ways: int, policy: str) -> tuple[float, int]:
    out = subprocess.run([str(exe), str(trace_file), str(n), str(sets), str(ways), str(PAGE_SHIFT),
                          policy, "3"], check=True, capture_output=True, text=True).stdout
    kv = dict(p.split("=") for p in out.split())
    return int(kv["ns"]) / 1e9, int(kv["misses"])


def _pycachesim_misses(addrs: np.ndarray, sets: int, ways: int) -> tuple[float, int] | None:
    try:
        from cachesim import Cache, CacheSimulator, MainMemory
    except ImportError:
        return None
    mem = MainMemory()
    tlb = Cache("TLB", sets, ways, 1 << PAGE_SHIFT, "LRU")
    mem.load_to(tlb)
    mem.store_from(tlb)
    sim = CacheSimulator(tlb, mem)
    t0 = time.perf_counter()
    for a in addrs.tolist():
        sim.load(a, length=1)
    return time.perf_counter() - t0, int(tlb.backend.MISS_count)


def bench_tlb(n: int, pycachesim_n: int, python_n: int) -> list[dict]:
    """Part 1: single-level LRU TLB, kmm vs C vs pycachesim vs Python."""
    from .. import tlb

    addrs = make_trace(n)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trace_file = tmp / "trace.bin"
        addrs.astype("<u8").tofile(trace_file)
        exe = _compile_c(tmp)
        for entries, ways in TLB_CONFIGS:
            sets = entries // ways
            cfg = tlb.TLBConfig.single(entries=entries, ways=ways)
            tlb.simulate_trace(addrs[:1000], cfg)  # compile beforehand
            t_kmm, counters = _best(lambda: tlb.simulate_trace(addrs, cfg))
            row = {"config": f"{entries}x{ways}", "accesses": n, "kmm_s": t_kmm,
                   "kmm_maps": n / t_kmm / 1e6, "kmm_misses": int(counters.misses)}
            if exe is not None:
                for pol in ("stamp", "mtf"):
                    t, m = _c_lru(exe, trace_file, n, sets, ways, pol)
                    row[f"c_{pol}_s"], row[f"c_{pol}_misses"] = t, m
                best_c = min(row["c_stamp_s"], row["c_mtf_s"])
                row["kmm_vs_best_c"] = best_c / t_kmm  # >1: kmm faster
            pc = _pycachesim_misses(addrs[:pycachesim_n], sets, ways)
            if pc is not None:
                kmm_prefix = tlb.simulate_trace(addrs[:pycachesim_n], cfg).misses
                row["pycachesim_s"], row["pycachesim_misses"] = pc
                row["pycachesim_accesses"] = pycachesim_n
                row["pycachesim_maps"] = pycachesim_n / pc[0] / 1e6
                row["kmm_misses_on_pycachesim_prefix"] = int(kmm_prefix)
                row["agree_pycachesim"] = int(kmm_prefix) == pc[1]
            t_py, m_py = _best(lambda: python_lru_misses(addrs[:python_n], sets, ways), 1)
            row["python_maps"] = python_n / t_py / 1e6
            row["agree_python"] = m_py == tlb.simulate_trace(addrs[:python_n], cfg).misses
            rows.append(row)
    return rows


def _optional(fn_path: str):
    mod, _, name = fn_path.rpartition(".")
    try:
        module = __import__(mod, fromlist=[name])
        return getattr(module, name)
    except (ImportError, AttributeError):
        return None


def _child_peak_rss(code: str) -> tuple[dict, float]:
    """Run ``code`` in a fresh interpreter; return its JSON stdout and peak RSS in MiB."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KmmError(f"benchmark child failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, out.pop("peak_rss_mib")


def bench_pagetable(n_ops: int) -> dict | None:
    if _optional("kmm.pagetable.bench_random_ops") is None:
        return None
    # Compile in one child (LLVM's memory is not the page table's), measure in a second.
    subprocess.run([sys.executable, "-c", "from kmm.pagetable import bench_random_ops; "
                    "bench_random_ops(1000, 0)"], check=True, capture_output=True)
    code = (
        "import json, resource\n"
        "from kmm.pagetable import bench_random_ops\n"
        "bench_random_ops(1000, 0)\n"
        f"s, ext = bench_random_ops({n_ops}, 1)\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'seconds': s, 'extents': int(ext), 'peak_rss_mib': rss}))\n")
    out, rss = _child_peak_rss(code)
    base, base_rss = _child_peak_rss(
        "import json, resource\nfrom kmm.pagetable import bench_random_ops\n"
        "bench_random_ops(1000, 0)\n"
        "print(json.dumps({'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    return {"ops": n_ops, **out, "peak_rss_mib": rss, "baseline_rss_mib": base_rss}


def bench_allocator(n: int) -> dict | None:
    fn = _optional("kmm.buddy.bench_order0_churn")
    if fn is None:
        return None
    fn(1000, 0)
    rate = fn(n, 1)
    return {"ops": n, "ops_per_s": float(rate)}


# ---- the full translation path against its plain-C reference (bench_c/path.c) ----------
#: Rows of the counts the C reference prints, as (name, PathResult attribute).
PATH_COUNTS = (("tlb", "tlb"), ("cache", "cache"), ("walk", "walk"), ("mem", "mem_reads"),
               ("refs_node", "walk_refs_by_node"), ("refs_level", "walk_refs_by_level"),
               ("served", "served"))


def path_counts(result) -> dict[str, list[int]]:
    """A :class:`kmm.walk.PathResult`'s counts in the C reference's rows."""
    import numpy as np

    out = {}
    for name, attr in PATH_COUNTS:
        v = getattr(result, attr)
        out[name] = np.asarray(getattr(v, "values", v), dtype=np.int64).ravel().tolist()
    return out


def c_path_supports(config) -> str | None:
    """Why the C reference cannot run ``config`` (None: it can): it models a stage-1
    machine with LRU replacement everywhere and no conflict detection."""
    from .. import walk
    from ..policy import Replacement

    if config.stage2 is not None or config.stage1 is None:
        return "stage 2"
    if config.tlb.detect_conflicts:
        return "conflict detection"
    levels = list(config.tlb.levels().values()) + [
        lv for lv in (config.caches.l1i, config.caches.l1d, config.caches.l2, config.caches.llc)
        if lv is not None]
    if any(lv.policy != Replacement.LRU for lv in levels):
        return "a replacement policy other than LRU"
    rules = config.walk_geometry()[0, walk.W_RULE:walk.W_RULE + 5]
    if any(r == walk.TableNode.GIVEN for r in rules):
        return "per-access table nodes"
    return None


def write_path_job(path: Path, config, addresses, **per_access) -> int:
    """Write the C reference's job file for ``addresses`` through ``config`` (the arrays kmm's
    own run would use, each broadcast to one value per access). Returns the accesses."""
    import numpy as np

    from .. import walk

    why = c_path_supports(config)
    if why is not None:
        raise KmmError(f"the C reference does not model {why}")
    p = walk.Path(config)
    acc = p.arrays(addresses, **per_access)
    if acc.tag.shape[0] > 1 or int(acc.lines.max(initial=1)) != 1 or \
            int(acc.lines.min(initial=1)) != 1:
        raise KmmError("the C reference reads exactly one line per access")
    n = acc.va.shape[0]
    pa = acc.va if acc.pa.shape[0] == 1 and n > 1 else acc.pa

    def col(a, dtype):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(a).astype(dtype), (n,)))

    hdr = np.array([n, config.tlb.cpus, config.nodes, config.table_capacity], "<i8")
    parts = [hdr, p.tlb_state.geo.astype("<i8"), p.cache_state.geo.astype("<i8"),
             p.wg[0].astype("<i8"), np.asarray(config.cpu_nid, "<i8"),
             col(acc.va, "<i8"), col(pa, "<i8"), col(acc.flags, "u1"), col(acc.shift, "u1"),
             col(acc.leaf, "u1"), col(acc.asid, "<i4"), col(acc.vmid, "<i4"),
             col(acc.cpu, "<i4"), col(acc.node, "<i4")]
    with open(path, "wb") as fh:
        for a in parts:
            fh.write(np.ascontiguousarray(a).tobytes())
    return n


def c_path(exe: Path, job: Path, repeats: int = 3) -> tuple[float, dict[str, list[int]]]:
    """Run the C reference on a job file: (best seconds of the simulation loop, counts)."""
    proc = subprocess.run([str(exe), str(job), str(repeats)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KmmError(f"C path reference failed: {proc.stderr.strip()}")
    kv = dict(line.split("=", 1) for line in proc.stdout.split())
    counts = {name: [int(x) for x in kv[name].split(",")] for name, _ in PATH_COUNTS}
    return int(kv["ns"]) / 1e9, counts


def _path_row(label: str, exe: Path | None, tmp: Path, config, addresses, kw,
              repeats: int) -> dict:
    """kmm and C side by side on one trace: rates, ratios, and whether every count agrees.
    kmm's time is that of the public call ``Path(config).run(addresses, **kw)``, input checks
    included (``kmm_*``), and of its kernel alone (``kernel_*``); C's that of its simulation
    loop. Both start from empty state allocated outside the timing; best of ``repeats``. Both
    are CPU time of the simulating thread (``time.thread_time``, ``CLOCK_THREAD_CPUTIME_ID``):
    on a shared machine, wall time would measure the other work too."""
    from .. import walk

    n = len(addresses)
    best, best_kernel, res = float("inf"), float("inf"), None
    walk.Path(config).run(addresses, **kw)  # compiled (or loaded from the cache) beforehand
    for _ in range(repeats):
        p = walk.Path(config)                # fresh state, allocated outside the timing
        t0 = time.thread_time()
        res = p.run(addresses, **kw)
        best = min(best, time.thread_time() - t0)
        p = walk.Path(config)
        acc = p.arrays(addresses, **kw)
        t0 = time.thread_time()
        walk.run_path(p.tlb_state, p.cache_state, p.walk_state, acc, p.out)
        best_kernel = min(best_kernel, time.thread_time() - t0)
    t_kmm = best
    row = {"trace": label, "accesses": n, "kmm_s": t_kmm, "kmm_maps": n / t_kmm / 1e6,
           "kernel_s": best_kernel, "kernel_maps": n / best_kernel / 1e6,
           "walks": int(res.walk.walks), "walk_refs": int(res.walk.refs)}
    if exe is not None:
        job = tmp / f"{label}.job"
        write_path_job(job, config, addresses, **kw)
        t_c, counts = c_path(exe, job, repeats)
        job.unlink()
        row.update(c_s=t_c, c_maps=n / t_c / 1e6, kmm_vs_c=t_c / t_kmm,
                   kernel_vs_c=t_c / best_kernel, counts_equal=counts == path_counts(res))
    return row


def bench_full_path(n: int, kernel_traces: bool = True, repeats: int = 3,
                    trace_refs: int | None = None) -> dict | None:
    """Part 2: the full translation path (kmm's :class:`kmm.walk.Path`) against the plain-C
    reference, on the walk-heavy benchmark trace and on each shipped kernel trace (its first
    ``trace_refs`` references; None: all)."""
    from .. import traces, walk

    addrs = make_trace(n)
    out: dict[str, Any] = {"accesses": n}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            exe = _compile_c(tmp, "path")
        except subprocess.CalledProcessError as e:
            raise KmmError(f"cannot compile bench_c/path.c: {e.stderr.decode().strip()}") \
                from None
        cfg, kw = walk.bench_full_path_inputs(addrs)
        rows = [_path_row("walk-heavy", exe, tmp, cfg, addrs, kw, repeats)]
        for p in traces.shipped_kernel_traces() if kernel_traces else []:
            t = traces.read_kernel_trace(p)
            if trace_refs is not None:
                t = t[:trace_refs]
            cfg, kw = walk.bench_trace_inputs(t)
            rows.append(_path_row(p.stem, exe, tmp, cfg, t.address, kw, repeats))
    out["rows"] = rows
    out["seconds"], out["maps"] = rows[0]["kmm_s"], rows[0]["kmm_maps"]
    kt = rows[1:]
    if kt:
        refs = sum(r["accesses"] for r in kt)
        out["kernel_maps"] = refs / sum(r["kmm_s"] for r in kt) / 1e6
        if all("c_s" in r for r in kt):
            out["kernel_c_maps"] = refs / sum(r["c_s"] for r in kt) / 1e6
    return out


def bench_real_trace() -> dict | None:
    """A lackey trace of the Python interpreter, through kmm and pycachesim."""
    import numpy as np

    if not shutil.which("valgrind"):
        return None
    from .. import tlb, traces

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "lackey.txt"
        prog = "s=0\nfor i in range(2000): s+=i*i\n"
        t0 = time.perf_counter()
        subprocess.run(["valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={log}",
                        sys.executable, "-S", "-c", prog], capture_output=True, check=False)
        record_s = time.perf_counter() - t0
        tr = traces.read_lackey(log)
    addrs = tr.address
    sets, ways = 256, 4
    cfg = tlb.TLBConfig.single(entries=sets * ways, ways=ways)
    tlb.simulate_trace(addrs[:1000], cfg)
    t_kmm, c = _best(lambda: tlb.simulate_trace(addrs, cfg))
    n1 = tlb.TLBConfig.neoverse_n1()
    t_n1, c_n1 = _best(lambda: tlb.simulate_trace(addrs, n1, **tr.kwargs()))
    pc = _pycachesim_misses(addrs, sets, ways)
    out = {"accesses": int(addrs.size), "record_s": record_s, "kmm_s": t_kmm,
           "kmm_misses": int(c.misses), "neoverse_n1_s": t_n1, "neoverse_n1_misses": int(c_n1.misses)}
    if pc:
        out.update(pycachesim_s=pc[0], pycachesim_misses=pc[1], agree=pc[1] == int(c.misses))
    return out


def bench_kernel_traces(capture: bool) -> dict | None:
    """Part 7: bytes per reference and read speed of the shipped kernel traces; capture
    throughput of one real capture."""
    from .. import traces

    paths = traces.shipped_kernel_traces()
    if not paths:
        return None
    rows = []
    for p in paths:
        t0 = time.perf_counter()
        t = traces.read_kernel_trace(p)
        dt = time.perf_counter() - t0
        size = p.stat().st_size
        rows.append({"trace": p.stem, "refs": len(t), "bytes": size,
                     "bytes_per_ref": size / max(len(t), 1), "read_s": dt,
                     "read_mrefs_per_s": len(t) / dt / 1e6})
    out: dict[str, Any] = {"traces": rows}
    if capture and shutil.which("qemu-system-aarch64"):
        from ..capture import run as capture_run, scenarios

        with tempfile.TemporaryDirectory() as tmp:
            try:
                man = capture_run.capture(scenarios.get("bpf"), Path(tmp) / "bpf.kmmt",
                                          log=lambda m: None)
            except KmmError as e:
                out["capture_error"] = e.line()
            else:
                sec = man["seconds"]
                out["capture"] = {"scenario": "bpf", "refs": man["refs"],
                                  "seconds": sec["total"], "qemu_s": sec["qemu"],
                                  "refs_per_s": man["refs"] / sec["total"]}
    return out


def bench_suite(reproduce_args: Sequence[str] = ("reproduce",), **sweep) -> dict:
    """Part 6: ``kmm reproduce`` cold and warm, and a 16-point sweep on 1 and 2 workers.

    ``reproduce_args`` is the command line given to ``kmm`` (another, shorter command times
    the same way: the tests use one); ``sweep`` overrides arguments of
    :func:`kmm.suite.sweep.bench_sweep`. Each ``reproduce_*_rc`` is the command's exit
    status: a time is only the suite's when it is 0."""
    out: dict[str, Any] = {"reproduce_args": list(reproduce_args)}
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold", "warm"):   # the second run finds the first run's kernels
            with tempfile.TemporaryDirectory() as data:
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "kmm.suite.cli", *reproduce_args],
                                      env={**os.environ, "NUMBA_CACHE_DIR": cache,
                                           "KMM_DATA_DIR": data},
                                      capture_output=True, text=True)
                out[f"reproduce_{label}_s"] = time.perf_counter() - t0
                out[f"reproduce_{label}_rc"] = proc.returncode
    fn = _optional("kmm.suite.sweep.bench_sweep")
    if fn is not None:
        out["sweep"] = fn(**{"points": 16, "workers": (1, 2), **sweep})
    return out


def run(*, quick: bool = False, suite: bool = False, out_dir: Path | None = None) -> dict:
    """Run the benchmarks; ``quick`` shrinks every size (for notebooks and smoke tests)."""
    n = 200_000 if quick else 10_000_000
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": sys.platform},
        "quick": quick,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["tlb"] = bench_tlb(n, pycachesim_n=min(n, 1_000_000), python_n=min(n, 200_000))
    result["full_path"] = bench_full_path(n, trace_refs=n if quick else None,
                                          repeats=1 if quick else 3)
    result["pagetable"] = bench_pagetable(20_000 if quick else 1_000_000)
    result["allocator"] = bench_allocator(200_000 if quick else 10_000_000)
    result["real_trace"] = None if quick else bench_real_trace()
    result["kernel_traces"] = bench_kernel_traces(capture=not quick)
    if suite:
        result["suite"] = bench_suite()
    if out_dir is not None:
        from .claims import atomic_write_text

        out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(result, indent=1, default=float)
        atomic_write_text(out_dir / f"bench-{result['when'].replace(':', '')}.json", text)
        atomic_write_text(out_dir / "latest.json", text)
    return result


def format_table(result: dict) -> str:
    """The printed summary: one line per figure, with its ratio to the reference."""
    lines = ["single-level LRU TLB (M accesses/s; ratio = best C time / kmm time, >= 0.9 is the target)"]
    for r in result["tlb"]:
        c = (f" C stamp {r['accesses'] / r['c_stamp_s'] / 1e6:7.1f}  C mtf {r['accesses'] / r['c_mtf_s'] / 1e6:7.1f}"
             f"  ratio {r['kmm_vs_best_c']:.2f}") if "c_mtf_s" in r else " (no C compiler)"
        pc = (f"  pycachesim {r['pycachesim_maps']:.2f} agree={r['agree_pycachesim']}"
              if "pycachesim_maps" in r else "")
        lines.append(f"  {r['config']:>8}: kmm {r['kmm_maps']:7.1f}{c}{pc}  python {r['python_maps']:.2f}")
    fp = result.get("full_path")
    if fp and fp.get("rows"):
        lines.append("full translation path (M references per CPU second of the simulating "
                     "thread; ratio = C time / kmm time, >= 0.8 is the target; run = Path.run "
                     "with input checks, kernel = run_path alone)")
        for r in fp["rows"]:
            c = (f"  C {r['c_maps']:6.1f}  ratio run {r['kmm_vs_c']:.2f} kernel "
                 f"{r['kernel_vs_c']:.2f}  counts equal={r['counts_equal']}"
                 if "c_s" in r else " (no C compiler)")
            lines.append(f"  {r['trace']:>10}: kmm run {r['kmm_maps']:6.1f} kernel "
                         f"{r['kernel_maps']:6.1f}{c}")
        if "kernel_maps" in fp:
            lines.append(f"  kernel traces together: kmm {fp['kernel_maps']:.1f} M references/s "
                         "(target >= 20)")
    else:
        lines.append("full translation path: not available")
    pt = result.get("pagetable")
    lines.append(f"page tables: {pt['ops']} random ops on a 4 TiB PTE map in {pt['seconds']:.2f} s, "
                 f"{pt['extents']} extents, peak RSS {pt['peak_rss_mib']:.0f} MiB of which "
                 f"{pt.get('baseline_rss_mib', 0):.0f} MiB interpreter and Numba (target < 10 s, < 1024 MiB)"
                 if pt else "page tables: not available")
    al = result.get("allocator")
    lines.append(f"buddy allocator: {al['ops_per_s'] / 1e6:.1f} M order-0 alloc+free/s (target >= 10)"
                 if al else "buddy allocator: not available")
    rt = result.get("real_trace")
    if rt:
        lines.append(f"real lackey trace: {rt['accesses']} accesses, kmm {rt['kmm_s'] * 1e3:.1f} ms, "
                     f"pycachesim {rt.get('pycachesim_s', float('nan')) * 1e3:.0f} ms, agree={rt.get('agree')}")
    kt = result.get("kernel_traces")
    if kt:
        per = ", ".join(f"{r['trace']} {r['bytes_per_ref']:.2f}" for r in kt["traces"])
        rate = sum(r["refs"] for r in kt["traces"]) / sum(r["read_s"] for r in kt["traces"]) / 1e6
        lines.append(f"kernel traces: bytes/reference {per}; read {rate:.1f} M references/s")
        if kt.get("capture"):
            c = kt["capture"]
            lines.append(f"kernel trace capture ({c['scenario']}): {c['refs']} references in "
                         f"{c['seconds']:.1f} s ({c['refs_per_s'] / 1e3:.0f} k references/s, "
                         f"QEMU {c['qemu_s']:.1f} s)")
        elif kt.get("capture_error"):
            lines.append(f"kernel trace capture: {kt['capture_error']}")
    st = result.get("suite")
    if st:
        runs = ", ".join(f"{label} {st[f'reproduce_{label}_s']:.0f} s"
                         + ("" if st.get(f"reproduce_{label}_rc", 0) == 0 else
                            f" (failed: exit {st[f'reproduce_{label}_rc']})")
                         for label in ("cold", "warm"))
        cmd = " ".join(st.get("reproduce_args", ["reproduce"]))
        lines.append(f"kmm {cmd}: {runs} (targets < 300 s, < 180 s)")
        sw = st.get("sweep")
        if sw:
            walls = ", ".join(f"{w} worker{'s' if int(w) > 1 else ''} {sec:.1f} s"
                              for w, sec in sw.get("wall_s", {}).items())
            lines.append(f"{sw.get('points', 16)}-point sweep: {walls}"
                         + (f" (speedup {sw['speedup']:.2f})" if "speedup" in sw else ""))
    return "\n".join(lines)


def latest(root: Path | None = None, *, quick_if_missing: bool = True) -> dict:
    """The newest ``latest.json`` under ``<data>/bench``, or a quick run if there is none."""
    from .claims import data_dir

    path = (root or data_dir() / "bench") / "latest.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise KmmError(f"unreadable benchmark results: {e}", str(path)) from None
    if not quick_if_missing:
        raise KmmError("no benchmark results yet: run `kmm bench`", str(path))
    return run(quick=True)


def frame(result: dict):
    """The TLB part of a result as a tidy polars frame: one row per (config, implementation).

    Columns: ``config``, ``implementation`` (kmm, C timestamps, C move-to-front, pycachesim,
    Python), ``maps`` (million accesses per second), ``ratio_to_best_c``, ``quick``.
    """
    import polars as pl

    rows = []
    for r in result["tlb"]:
        best_c = min(r.get("c_stamp_s", float("inf")), r.get("c_mtf_s", float("inf")))
        rates = {"kmm": r["kmm_maps"], "python": r["python_maps"]}
        if "c_stamp_s" in r:
            rates["C timestamps"] = r["accesses"] / r["c_stamp_s"] / 1e6
            rates["C move-to-front"] = r["accesses"] / r["c_mtf_s"] / 1e6
        if "pycachesim_maps" in r:
            rates["pycachesim"] = r["pycachesim_maps"]
        for impl, maps in rates.items():
            rows.append({"config": r["config"], "implementation": impl, "maps": float(maps),
                         "ratio_to_best_c": float(maps * best_c / r["accesses"] * 1e6)
                         if best_c != float("inf") else float("nan"),
                         "quick": bool(result.get("quick", False))})
    return pl.DataFrame(rows)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure kmm's speed against plain C and pycachesim",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", action="store_true", help="also time kmm reproduce and a sweep")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds, for smoke tests)")
    p.add_argument("--out", type=Path, default=None, help="folder for the JSON (default data/bench)")
    p.set_defaults(handler=_main)


def _main(args) -> int:
    from .claims import data_dir

    out = args.out or (data_dir() / "bench")
    result = run(quick=args.quick, suite=args.suite, out_dir=out)
    print(format_table(result))
    print(f"written: {out / 'latest.json'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(prog="kmm")
    add_parser(ap.add_subparsers())
    a = ap.parse_args(["bench", *sys.argv[1:]])
    sys.exit(a.handler(a))
