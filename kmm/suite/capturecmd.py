"""``kmm trace capture|info|verify|scenarios``: real arm64 kernel traces.

``kmm trace capture SCENARIO`` boots the pinned Debian arm64 kernel under QEMU TCG with
kmm's plugin and writes ``SCENARIO.kmmt``; ``kmm trace info FILE`` prints its provenance and
per-region references, pages touched and footprints; ``kmm trace verify [FILE ...]`` checks
traces (by default the shipped ones) against their manifests; ``kmm trace scenarios`` lists
the scenarios.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import KmmError

WORDS = ("capture", "info", "verify", "scenarios")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_capture(args) -> int:
    from ..capture import run, scenarios

    sc = scenarios.get(args.scenario)
    out = Path(args.out) if args.out else Path(f"{sc.name}.kmmt")
    if out.is_dir():
        out = out / f"{sc.name}.kmmt"
    if not out.parent.is_dir():
        raise KmmError("no such folder", str(out.parent))
    man = run.capture(sc, out, timeout=args.timeout, max_refs=args.max_refs,
                      keep=Path(args.keep) if args.keep else None,
                      log=lambda m: print(m, flush=True))
    size = out.stat().st_size
    print(f"{out}: {man['refs']} references in {man['events']} events, {_human(size)} "
          f"({size / max(man['refs'], 1):.3f} bytes/reference), "
          f"capture {man['seconds']['total']:.1f} s (QEMU {man['seconds']['qemu']:.1f} s)"
          + ("; window cut at --max-refs" if man["window"]["truncated"] else ""))
    return 0


def info_table(man: dict) -> str:
    lines = []
    sc = man.get("scenario", {})
    k = man.get("kernel", {})
    lines.append(f"scenario  {sc.get('name')}: {sc.get('description')}")
    lines.append(f"kernel    {k.get('package')} {k.get('version')} ({k.get('uname', '').splitlines()[:1]})")
    lines.append(f"qemu      {man.get('tools', {}).get('qemu')}")
    mach = man.get("machine", {})
    lines.append(f"machine   {mach.get('cpu')} x{mach.get('smp')}, {mach.get('mem_mib')} MiB, "
                 f"{mach.get('numa_nodes')} node(s){', EL2 (virtualization=on)' if mach.get('virtualization') else ''}")
    lines.append(f"window    {man.get('refs')} references, {man.get('events')} events"
                 f"{' (cut at max_refs)' if man.get('window', {}).get('truncated') else ''}")
    total = max(int(man.get("refs", 0)), 1)
    lines.append("")
    lines.append(f"{'region':<13}{'refs':>10}{'share':>8}{'fetch':>10}{'load':>10}{'store':>10}"
                 f"{'pages':>8}{'footprint':>12}")
    order = [n for _, n in sorted((int(k), v) for k, v in man.get("region_names", {}).items())]
    regions = man.get("regions", {})
    for name in [n for n in order if n in regions] + [n for n in regions if n not in order]:
        r = regions[name]
        lines.append(f"{name:<13}{r['refs']:>10}{r['refs'] / total:>8.1%}{r['fetches']:>10}"
                     f"{r['loads']:>10}{r['stores']:>10}{r['pages']:>8}"
                     f"{_human(r['footprint_bytes']):>12}")
    lin = man.get("regions", {}).get("linear", {}).get("refs", 0)
    pcpu = man.get("regions", {}).get("percpu", {}).get("refs", 0)
    if pcpu:
        lines.append(f"\nper-CPU areas are embedded in the linear map on this build: a block-mapped "
                     f"linear map also covers the {pcpu} per-CPU references "
                     f"({lin + pcpu} linear-map references in all)")
    return "\n".join(lines)


def cmd_info(args) -> int:
    from .. import kmmt

    man, _ = kmmt.read_manifest(args.file)
    if args.json:
        print(json.dumps({k: v for k, v in man.items() if k not in ("symbols",)}, indent=1))
    else:
        try:
            table = info_table(man)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise KmmError(f"manifest lacks what info prints ({type(e).__name__}: {e})",
                           args.file) from None
        print(f"{args.file}")
        print(table)
    return 0


def verify(path: Path, index: dict | None = None) -> list[str]:
    """Problems of one trace: unreadable, counts that disagree with the manifest, regions
    that its stored layout no longer gives, or a file that differs from the shipped index."""
    from .. import kmmt
    from ..capture import layout as L

    problems = []
    t = kmmt.read(path)
    man = t.manifest
    lay = L.Layout.from_json(man["layout"])
    fetch = t.kind == kmmt.KIND_FETCH
    if not np.array_equal(lay.fetch_el(t.address[fetch]), t.el[fetch]):
        problems.append("exception levels differ from the layout's inference")
    if not np.array_equal(lay.attribute(t.address, t.el), t.region):
        problems.append("regions differ from the layout's attribution")
    for name, r in man.get("regions", {}).items():
        code = next((int(c) for c, n in man["region_names"].items() if n == name), None)
        got = int(np.count_nonzero(t.region == code))
        if got != r["refs"]:
            problems.append(f"region {name}: {got} references, manifest says {r['refs']}")
    if index is not None:
        entry = index.get(path.name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if entry is None:
            problems.append("not in the index of shipped traces")
        elif entry.get("sha256") != digest:
            problems.append("sha256 differs from the index of shipped traces")
    return problems


def cmd_verify(args) -> int:
    from .. import traces

    files = [Path(f) for f in args.files] or traces.shipped_kernel_traces()
    index = None
    if not args.files:
        idx = Path(traces.__file__).parent / "data" / "traces" / "index.json"
        index = json.loads(idx.read_text()) if idx.is_file() else {}
    if not files:
        raise KmmError("no traces to verify")
    bad = 0
    for f in files:
        try:
            problems = verify(f, index)
        except KmmError as e:
            problems = [e.message]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            problems = [f"manifest is incomplete ({type(e).__name__}: {e})"]
        bad += bool(problems)
        print(f"{f}: {'ok' if not problems else '; '.join(problems)}")
    if bad:
        raise KmmError(f"{bad} of {len(files)} traces failed verification")
    return 0


def cmd_scenarios(args) -> int:
    from ..capture import scenarios

    for sc in scenarios.SCENARIOS.values():
        print(f"{sc.name:<10} {sc.description}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("trace", help="capture, inspect and verify real kernel traces",
                              description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="trace_command", metavar="ACTION", required=True)
    c = sub.add_parser("capture", help="boot the Debian arm64 kernel under QEMU and record a scenario")
    c.add_argument("scenario", metavar="SCENARIO", help="see `kmm trace scenarios`")
    c.add_argument("--out", metavar="FILE", help="output file or folder (default SCENARIO.kmmt)")
    c.add_argument("--max-refs", type=int, default=None, metavar="N",
                   help="stop recording after N references (default: the scenario's bound)")
    c.add_argument("--timeout", type=float, default=900, metavar="SECONDS",
                   help="limit on the QEMU run (default 900)")
    c.add_argument("--keep", metavar="DIR", help="keep the initramfs, plugin output and console log here")
    c.set_defaults(handler=cmd_capture)
    i = sub.add_parser("info", help="provenance and per-region references, pages and footprints")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--json", action="store_true", help="print the manifest (without symbols)")
    i.set_defaults(handler=cmd_info)
    v = sub.add_parser("verify", help="check traces against their manifests (default: the shipped ones)")
    v.add_argument("files", nargs="*", metavar="FILE")
    v.set_defaults(handler=cmd_verify)
    s = sub.add_parser("scenarios", help="list the capture scenarios")
    s.set_defaults(handler=cmd_scenarios)
