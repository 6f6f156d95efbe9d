"""``kmm trace``: run a real address trace (valgrind lackey) through a TLB hierarchy.

Record a trace with ``valgrind --tool=lackey --trace-mem=yes --log-file=trace.txt PROG``,
then ``kmm trace trace.txt`` prints hits and misses per TLB level, the miss rate and misses
per thousand instructions. A malformed or truncated trace, a TLB shape whose set count is not
a power of two, or an unknown granule is refused in one line naming the file, line or option.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, KmmError
from . import argtypes

GRANULE_SHIFT = {"4K": 12, "16K": 14, "64K": 16}


def _tlb_config(args):
    from .. import tlb

    if args.granule not in GRANULE_SHIFT:
        raise ConfigError(f"unknown granule {args.granule!r}; allowed: "
                          f"{', '.join(GRANULE_SHIFT)}", "--granule")
    shift = GRANULE_SHIFT[args.granule]
    try:
        if args.tlb == "neoverse-n1":
            return tlb.TLBConfig.neoverse_n1(page_shifts=(shift,), walk_cache_entries=0,
                                             s2_walk_cache_entries=0, policy=args.policy)
        return tlb.TLBConfig.single(entries=args.entries, ways=args.ways, policy=args.policy,
                                    page_shift=shift)
    except ConfigError as e:
        where = {"sets": "--entries/--ways (sets = entries / ways)", "entries": "--entries",
                 "ways": "--ways", "policy": "--policy"}.get(e.where, "--tlb")
        raise ConfigError(e.message, where) from None


def summarise(trace, config) -> dict:
    """Counters of ``trace`` through ``config`` with miss rate and MPKI."""
    from .. import metrics, tlb

    c = tlb.simulate_trace(trace.address, config, **trace.kwargs())
    out = {k: v for k, v in c.as_dict().items() if v}
    out["misses"] = c.misses
    out["miss_rate"] = metrics.miss_rate(c.misses, c.accesses)
    out["instructions"] = trace.instructions
    out["mpki"] = metrics.mpki(c.misses, trace.instructions)
    return out


def handle(args) -> int:
    from .. import traces

    path = Path(args.trace)
    if not path.is_file():
        raise KmmError("no such trace file", str(path))
    config = _tlb_config(args)
    trace = traces.read_lackey(path, max_records=args.max_records)
    if len(trace) == 0:
        raise KmmError("the trace holds no memory accesses", str(path))
    out = summarise(trace, config)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{path}: {len(trace)} accesses, {trace.instructions} instruction fetches "
          f"({args.tlb}, {args.granule} pages)")
    for k, v in out.items():
        print(f"  {k:>14}: {v:.4g}" if isinstance(v, float) else f"  {k:>14}: {v}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("trace", help="run a valgrind lackey trace through a TLB hierarchy",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("trace", metavar="FILE", type=argtypes.path, help="valgrind lackey --trace-mem=yes log (.gz ok)")
    p.add_argument("--tlb", choices=("single", "neoverse-n1"), default="neoverse-n1",
                   help="one set-associative TLB (--entries, --ways) or the Neoverse N1 "
                   "hierarchy: 48-entry L1 I and D, 1280-entry 5-way L2 (default)")
    p.add_argument("--entries", type=argtypes.int_in(1, 1 << 20), default=1024,
                   help="entries of the single TLB")
    p.add_argument("--ways", type=argtypes.int_in(1, 1 << 10), default=4,
                   help="ways of the single TLB")
    p.add_argument("--policy", default="lru", help="replacement policy (lru, random, ...)")
    p.add_argument("--granule", default="4K", help="page size: 4K, 16K or 64K")
    p.add_argument("--max-records", type=argtypes.int_in(1, 1 << 40), default=None, metavar="N",
                   help="read at most N records")
    p.add_argument("--json", action="store_true", help="print the counters as JSON")
    p.set_defaults(handler=handle)
