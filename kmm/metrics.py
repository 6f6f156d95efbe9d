"""Derived metrics: Python formulas over raw counters (never stored as counters)."""
from __future__ import annotations


def ratio(num: float, den: float) -> float:
    """``num / den``, or NaN when ``den`` is zero (an empty measurement, not a zero rate)."""
    return float(num) / float(den) if den else float("nan")


def hit_rate(hits: float, accesses: float) -> float:
    return ratio(hits, accesses)


def miss_rate(misses: float, accesses: float) -> float:
    return ratio(misses, accesses)


def mpki(misses: float, instructions: float) -> float:
    """Misses per thousand instructions."""
    return 1000.0 * ratio(misses, instructions)


def gain(baseline_time: float, new_time: float) -> float:
    """Throughput gain of ``new`` over ``baseline`` for a fixed amount of work (0.10 = +10 %)."""
    return ratio(baseline_time, new_time) - 1.0


def relative_change(baseline: float, new: float) -> float:
    """``new / baseline - 1`` (−0.25 = 25 % lower)."""
    return ratio(new, baseline) - 1.0
