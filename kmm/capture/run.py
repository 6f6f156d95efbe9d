"""``kmm trace capture``: boot the pinned Debian arm64 kernel under QEMU TCG with the kmmtrace
plugin, run a scenario, and write a ``.kmmt`` trace.

Determinism: one vCPU thread in icount mode (``-icount shift=0,align=off,sleep=off``, which
also fixes how vCPUs interleave), a fixed guest clock (``-rtc base=2024-01-01T00:00:00,
clock=vm``), a fixed seed for every guest-visible random number QEMU makes (``-seed 1``,
e.g. the device tree's ``rng-seed`` and so the kernel's CRNG), ``nokaslr`` and ``norandmaps``
in the guest, and an initramfs with fixed bytes. The same scenario, kernel, QEMU, compilers
and packages give the same trace, byte for byte.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import KmmError
from .. import kmmt
from . import debian, initramfs, layout as L
from .scenarios import Scenario

HERE = Path(__file__).parent
PLUGIN_SRC = HERE / "kmmtrace.c"
WORK_SRC = HERE / "kmmwork.c"
MARK_START = 0x4B4D4D000000
MARK_STOP = 0x4B4D4E000000
QEMU = "qemu-system-aarch64"
CROSS_CC = "aarch64-linux-gnu-gcc"
RAW = np.dtype([("va", "<u8"), ("pa", "<u8"), ("info", "<u4"), ("pc", "<u4")])
BASE_CMDLINE = "console=ttyAMA0 nokaslr norandmaps panic=-1 loglevel=1"
DUMPS = """
section vmalloc 'cat /proc/vmallocinfo'
section kallsyms 'cat /proc/kallsyms'
section iomem 'cat /proc/iomem'
section modules 'cat /proc/modules'
section kcore '/bin/kmmwork peek'
section crash-notes 'cat /sys/devices/system/cpu/cpu*/crash_notes'
section dmesg 'dmesg'
section uname 'uname -r; uname -v'
section cmdline 'cat /proc/cmdline'
"""


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise KmmError(f"{name} not found; {hint}", "capture")
    return path


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return (out.strip().splitlines() or ["unknown"])[0]


def tool_versions() -> dict:
    return {"qemu": _first_line([QEMU, "--version"]),
            "cc": _first_line([os.environ.get("CC", "cc"), "--version"]),
            "cross_cc": _first_line([CROSS_CC, "--version"])}


def build_plugin(workdir: Path) -> Path:
    cc = _tool(os.environ.get("CC", "cc"), "install gcc")
    out = workdir / "kmmtrace.so"
    proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(out),
                           str(PLUGIN_SRC)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KmmError(f"building the plugin failed: {proc.stderr.strip()[:300]}", "kmmtrace.c")
    return out


def build_workload(workdir: Path) -> Path:
    cc = _tool(CROSS_CC, "install gcc-aarch64-linux-gnu and libc6-dev-arm64-cross")
    out = workdir / "kmmwork"
    proc = subprocess.run([cc, "-O2", "-static", "-o", str(out), str(WORK_SRC)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise KmmError(f"building kmmwork failed: {proc.stderr.strip()[:300]}", "kmmwork.c")
    return out


def init_script(sc: Scenario, loads: list[tuple[str, str]]) -> str:
    return "\n".join([
        "#!/bin/busybox sh",
        "/bin/busybox --install -s /bin",
        "mount -t proc proc /proc",
        "mount -t sysfs sys /sys",
        "mount -t devtmpfs dev /dev",
        "mount -t tmpfs tmp /tmp",
        "echo 1 > /proc/sys/kernel/kptr_restrict",   # %pK prints real addresses to root
        'section() { echo "@@kmm begin $1"; sh -c "$2"; echo "@@kmm end $1"; }',
        "fail() { echo \"@@kmm failed $1\"; poweroff -f; }",
        # the kernel may have loaded a module already (request_module, CPU-feature aliases)
        *[f"grep -q '^{key} ' /proc/modules || insmod {ld} || fail 'insmod {key}'"
          for key, ld in loads],
        f"{{ {sc.setup}; }} || fail setup" if sc.setup else ":",
        "section vmalloc-before 'cat /proc/vmallocinfo'",
        "echo @@kmm begin work",
        f"{sc.work} || fail work",
        "echo @@kmm end work",
        DUMPS.strip(),
        "echo @@kmm done",
        "poweroff -f",
        ""])


def build_initramfs(sc: Scenario, kmmwork: Path, cache: Path | None) -> tuple[bytes, list[str]]:
    kroot = debian.unpack(debian.KERNEL_PACKAGE, cache)
    bb = debian.unpack("busybox-static", cache)
    cp = initramfs.Cpio()
    for d in ("proc", "sys", "dev", "tmp", "mnt", "run", "sbin", "usr/bin", "usr/sbin"):
        cp.dir(d)
    cp.file("bin/busybox", (bb / "bin" / "busybox").read_bytes(), 0o755)
    cp.file("bin/kmmwork", kmmwork.read_bytes(), 0o755)
    cp.file("etc/kmm.conf", b"kmm\n")
    cp.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    cp.file("etc/group", b"root:x:0:\n")
    for tool in ("modprobe", "insmod", "rmmod", "poweroff", "sh"):
        cp.symlink(f"sbin/{tool}", "/bin/busybox")
    modroot = kroot / "lib" / "modules" / debian.KERNEL_RELEASE / "kernel"
    wanted = [m.split()[0] for m in sc.modules + sc.module_files]
    params = {m.split()[0].replace("-", "_"): " ".join(m.split()[1:]) for m in sc.modules}
    only_files = {m.replace("-", "_") for m in sc.module_files}
    mods = initramfs.add_modules(cp, modroot, debian.KERNEL_RELEASE, wanted) if wanted else []
    loads = [(key, f"/lib/modules/{debian.KERNEL_RELEASE}/{rel} {params.get(key, '')}".rstrip())
             for key, rel in mods if key not in only_files]
    for pkg in sc.packages:
        root = debian.unpack(pkg, cache)
        initramfs.add_tree_files(cp, root, ["bin/*", "sbin/*", "usr/bin/*", "usr/sbin/*",
                                            "lib/*.so*", "lib/aarch64-linux-gnu/*.so*",
                                            "usr/lib/aarch64-linux-gnu/*.so*"])
    cp.file("init", init_script(sc, loads).encode(), 0o755)
    return cp.gzip(), [key for key, _ in mods]


def qemu_argv(sc: Scenario, kernel: Path, initrd: Path, plugin: Path, raw: Path,
              max_refs: int) -> list[str]:
    machine = "virt,virtualization=on" if sc.virtualization else "virt"
    argv = [QEMU, "-M", machine, "-cpu", "neoverse-n1", "-smp", str(sc.smp),
            "-m", f"{sc.mem_mib}M", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "stdio", "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", " ".join(filter(None, [BASE_CMDLINE, sc.cmdline])),
            "-icount", "shift=0,align=off,sleep=off",
            "-rtc", "base=2024-01-01T00:00:00,clock=vm", "-seed", "1"]
    if sc.numa_nodes > 1:
        per = sc.mem_mib // sc.numa_nodes
        cpus = [list(range(sc.smp))[i::sc.numa_nodes] for i in range(sc.numa_nodes)]
        for n in range(sc.numa_nodes):
            argv += ["-object", f"memory-backend-ram,id=m{n},size={per}M",
                     "-numa", f"node,nodeid={n},memdev=m{n}," +
                     ",".join(f"cpus={c}" for c in cpus[n])]
    argv += ["-plugin", f"{plugin},out={raw},start={MARK_START:#x},stop={MARK_STOP:#x},"
             f"max={max_refs}"]
    return argv


def _shown(argv: list[str]) -> list[str]:
    """The command line as recorded: file arguments by name only."""
    out = []
    for a in argv:
        if a.startswith("/") or ",out=" in a:
            a = ",".join(Path(p).name if "/" in p else p for p in a.split(","))
            a = "=".join(Path(p).name if p.startswith("/") else p for p in a.split("="))
        out.append(a)
    return out


def read_raw(path: Path) -> tuple[np.ndarray, dict]:
    with open(path, "rb") as fh:
        head = fh.read(32)
    if len(head) < 32 or head[:8] != b"KMMRAW1\n":
        raise KmmError("the plugin wrote no trace (QEMU failed to load it?)", str(path))
    n, flags, vcpus = np.frombuffer(head[8:32], "<u8").tolist()
    recs = np.fromfile(path, RAW, offset=32)
    if recs.size != n:
        raise KmmError(f"the plugin's trace holds {recs.size} records, its header {n}", str(path))
    return recs, {"truncated": bool(flags & 1), "opened": bool(flags & 2), "vcpus": int(vcpus)}


def decode(recs: np.ndarray, lay: L.Layout) -> dict[str, np.ndarray]:
    """Per-reference columns from the plugin's records and the layout (EL, PA, region)."""
    info = recs["info"]
    va = recs["va"].copy()
    kind = (info & 3).astype(np.uint8)
    size = ((info >> 2) & 7).astype(np.uint8)
    has_pa = ((info >> 5) & 1).astype(bool)
    is_io = ((info >> 6) & 1).astype(bool)
    cpu = (info >> 8).astype(np.uint8)
    fetch = kind == kmmt.KIND_FETCH
    lay.find_hyp_tag(va[fetch])
    fetch_el = lay.fetch_el(va[fetch])
    el = np.zeros(va.size, np.uint8)
    el[fetch] = fetch_el
    # a data access has the level of the last fetch on its vCPU
    for c in np.unique(cpu):
        idx = np.flatnonzero(cpu == c)
        f = fetch[idx]
        last = np.maximum.accumulate(np.where(f, np.arange(idx.size), -1))
        ok = last >= 0
        el[idx[ok]] = el[idx[last[ok]]]
    pa_data, rules = lay.correct_pa(va, recs["pa"], has_pa & ~fetch, is_io)
    pa = np.where(has_pa & ~fetch, pa_data, L.UNKNOWN_PA)
    pa[fetch] = lay.fetch_pa(va[fetch], fetch_el)
    region = lay.attribute(va, el)
    return {"va": va, "kind": kind, "size": size, "cpu": cpu, "el": el, "pa": pa,
            "region": region, "is_io": is_io, "pa_rules": rules}


def region_stats(cols: dict[str, np.ndarray]) -> dict[str, dict]:
    out = {}
    for r in L.Region:
        sel = cols["region"] == r
        n = int(sel.sum())
        if not n:
            continue
        k = cols["kind"][sel]
        pages = np.unique(cols["va"][sel] >> np.uint64(12)).size
        out[L.REGION_NAMES[r]] = {"refs": n, "fetches": int((k == 2).sum()),
                                  "loads": int((k == 0).sum()), "stores": int((k == 1).sum()),
                                  "pages": int(pages), "footprint_bytes": int(pages) * 4096,
                                  "el": {str(e): int(c) for e, c in
                                         zip(*np.unique(cols["el"][sel], return_counts=True))}}
    return out


def capture(sc: Scenario, out: Path, *, cache: Path | None = None, timeout: float = 900,
            max_refs: int | None = None, keep: Path | None = None, log=print) -> dict:
    """Capture ``sc`` into ``out``; returns the manifest (plus ``seconds`` timings)."""
    _tool(QEMU, "install Debian's qemu-system-arm")
    max_refs = max_refs or sc.max_refs
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kmm-capture-") as tmp:
        work = Path(keep) if keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        plugin = build_plugin(work)
        kmmwork = build_workload(work)
        kroot = debian.unpack(debian.KERNEL_PACKAGE, cache)
        kernel = kroot / "boot" / f"vmlinuz-{debian.KERNEL_RELEASE}"
        initrd_bytes, mods = build_initramfs(sc, kmmwork, cache)
        initrd = work / "initrd.gz"
        initrd.write_bytes(initrd_bytes)
        raw = work / "raw.bin"
        argv = qemu_argv(sc, kernel, initrd, plugin, raw, max_refs)
        log(f"capture {sc.name}: booting {debian.KERNEL_PACKAGE} under QEMU TCG")
        t_boot = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise KmmError(f"QEMU did not finish within {timeout:.0f} s", sc.name) from None
        qemu_s = time.perf_counter() - t_boot
        console = proc.stdout.decode("utf-8", "replace")
        (work / "console.txt").write_text(console)
        if "@@kmm done" not in console:
            failed = [ln for ln in console.splitlines() if ln.startswith("@@kmm failed")]
            tail = " | ".join(console.strip().splitlines()[-3:])[-300:]
            err = proc.stderr.decode("utf-8", "replace").strip()[-300:]
            raise KmmError(f"the guest did not finish ({failed[0] if failed else tail}; "
                           f"qemu: {err or 'rc ' + str(proc.returncode)})", sc.name)
        dumps = L.sections(console)
        recs, flags = read_raw(raw)
        if not flags["opened"] or recs.size == 0:
            raise KmmError("the measured window never opened", sc.name)
        lay = L.build(dumps, kernel.read_bytes())
        cols = decode(recs, lay)
        ksyms = L.parse_kallsyms(dumps["kallsyms"])
        fetch_va = cols["va"][(cols["kind"] == 2) & (cols["va"] >= L.TTBR1)]
        manifest = {
            "scenario": {"name": sc.name, "description": sc.description, "setup": sc.setup,
                         "work": sc.work},
            "kernel": {"package": debian.KERNEL_PACKAGE, **debian.manifest_entry(debian.KERNEL_PACKAGE),
                       "uname": dumps.get("uname", ""), "cmdline": dumps.get("cmdline", "")},
            "packages": {p: debian.manifest_entry(p) for p in
                         ["busybox-static", *sc.packages]},
            "modules": mods,
            "tools": tool_versions(),
            "sources": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in (PLUGIN_SRC, WORK_SRC)},
            "initramfs_sha256": hashlib.sha256(initrd_bytes).hexdigest(),
            "command": _shown(argv),
            "machine": {"cpu": "neoverse-n1", "smp": sc.smp, "mem_mib": sc.mem_mib,
                        "numa_nodes": sc.numa_nodes, "virtualization": sc.virtualization,
                        "accel": "tcg", "icount": "shift=0,align=off,sleep=off"},
            "window": {"start": f"first EL1 access to user page {MARK_START:#x} "
                                "(faccessat marker in kmmwork)",
                       "stop": f"first EL1 access to user page {MARK_STOP:#x}",
                       "truncated": flags["truncated"], "max_refs": max_refs},
            "layout": lay.to_json(),
            "pa_corrections": [[f"{lo:#x}", f"{hi:#x}", d] for lo, hi, d in cols["pa_rules"]],
            "region_names": {int(r): n for r, n in L.REGION_NAMES.items()},
            "regions": region_stats(cols),
            "symbols": L.symbolize(fetch_va, ksyms),
            "guest_output": dumps.get("work", ""),
        }
        man = kmmt.write(out, cols["va"], cols["kind"], cols["size"], cols["cpu"], cols["el"],
                         cols["region"], cols["pa"], manifest)
    man["seconds"] = {"total": time.perf_counter() - t0, "qemu": qemu_s}
    return man
