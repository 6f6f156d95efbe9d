"""Latin-hypercube points over the ``assumed`` ranges of cost parameters.

Every cost parameter without a source is marked ``assumed: [lo, hi]`` in its params file, and
each claim is evaluated over a joint sweep of those ranges. :func:`latin_hypercube` draws the
points: each range is cut into ``n`` strata, each stratum is visited once, in an independent
random order per parameter, so ``n`` points cover every range evenly whatever ``n`` is.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .config import check_int


def latin_hypercube(specs: Mapping[str, tuple], n: int, seed, base: Mapping) -> list[dict]:
    """``n`` points over ``specs`` (``name -> (lo, hi)`` or ``(lo, hi, choices)``).

    Ranges spanning a factor of 4 or more are sampled on a log scale; a parameter whose value
    in ``base`` is an integer is rounded; a parameter with ``choices`` takes the allowed
    choice (within ``[lo, hi]``) of its stratum. ``seed`` is anything
    :func:`numpy.random.default_rng` takes. Parameters are drawn in sorted name order, and
    each point lists them in that order.

    >>> pts = latin_hypercube({"a": (0.0, 1.0)}, 4, 0, {"a": 0.5})
    >>> sorted(int(p["a"] * 4) for p in pts)
    [0, 1, 2, 3]
    """
    check_int("n", n, lo=1)
    rng = np.random.default_rng(seed)
    cols = {}
    for name in sorted(specs):
        lo, hi, *rest = specs[name]
        choices = rest[0] if rest else None
        u = (rng.permutation(n) + rng.random(n)) / n
        if choices:
            allowed = [c for c in choices if lo <= c <= hi]
            cols[name] = [allowed[min(int(x * len(allowed)), len(allowed) - 1)] for x in u]
            continue
        if lo > 0 and hi / lo >= 4:
            x = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
        else:
            x = lo + u * (hi - lo)
        value = base.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            cols[name] = [int(round(v)) for v in x]
        else:
            cols[name] = [float(v) for v in x]
    return [{k: cols[k][i] for k in cols} for i in range(n)]


__all__ = ["latin_hypercube"]
