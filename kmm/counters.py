"""Event counters: one int64 array indexed by an ``IntEnum``.

Kernels increment ``counts[Event.X]`` in a flat int64 array; Python wraps the array in
:class:`Counters`, which gives named accessors (``c.l2_misses`` for ``Event.L2_MISSES``,
including enum aliases such as ``MISSES``), snapshots and differences. Warm-up is handled as
a difference of snapshots: run the warm-up part of a trace, ``snapshot()``, run the measured
part, subtract. Derived metrics are formulas in :mod:`kmm.metrics`, never stored counters.
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np


def new_counts(kind: type[IntEnum]) -> np.ndarray:
    """A zeroed int64 array with one slot per member of ``kind`` (aliases share a slot)."""
    return np.zeros(max(int(m) for m in kind) + 1, dtype=np.int64)


class Counters:
    """A read-mostly view of an int64 counter array, indexed by the IntEnum ``kind``."""

    __slots__ = ("kind", "values")

    def __init__(self, kind: type[IntEnum], values: np.ndarray | None = None):
        self.kind = kind
        if values is None:
            values = new_counts(kind)
        values = np.asarray(values, dtype=np.int64)
        if values.ndim != 1 or values.shape[0] != max(int(m) for m in kind) + 1:
            raise ValueError(f"counter array of shape {values.shape} does not match {kind.__name__}")
        self.values = values

    def __getattr__(self, name: str) -> int:
        try:
            member = self.kind[name.upper()]
        except KeyError:
            raise AttributeError(f"{self.kind.__name__} has no counter {name!r}") from None
        return int(self.values[member])

    def __getitem__(self, member: IntEnum | str) -> int:
        if isinstance(member, str):
            member = self.kind[member.upper()]
        return int(self.values[int(member)])

    def snapshot(self) -> "Counters":
        """An independent copy, for warm-up subtraction."""
        return Counters(self.kind, self.values.copy())

    def _check(self, other: "Counters") -> None:
        if other.kind is not self.kind:
            raise TypeError(f"cannot combine {self.kind.__name__} with {other.kind.__name__}")

    def __sub__(self, other: "Counters") -> "Counters":
        self._check(other)
        return Counters(self.kind, self.values - other.values)

    def __add__(self, other: "Counters") -> "Counters":
        self._check(other)
        return Counters(self.kind, self.values + other.values)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Counters) and other.kind is self.kind
                and bool(np.array_equal(self.values, other.values)))

    def as_dict(self) -> dict[str, int]:
        """Counter name (lower case, canonical members only) -> value."""
        return {m.name.lower(): int(self.values[m]) for m in self.kind}

    def __repr__(self) -> str:
        nonzero = ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v)
        return f"Counters[{self.kind.__name__}]({nonzero})"
