"""Assumed constants: a value the model needs and no source gives, with its plausible range.

A constant in code that is assumed rather than sourced is written as an :class:`Assumed`, so
it can be found: ``tests/test_params.py`` checks that every one is exposed by a params file
(``params/<stem>.yaml``) under the same name with the same ``assumed: [lo, hi]`` range, so
that a study can sweep it and the report shows it. A study passes the params file's value
into the model; the :class:`Assumed` is the default a model uses when it is called directly.

>>> a = Assumed("demo_entries", 64, 0, 128, "not published")
>>> int(a), a.range
(64, (0, 128))
>>> DECLARED["demo_entries"] is a
True
>>> _ = DECLARED.pop("demo_entries")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Every :class:`Assumed` constructed so far, by name (modules declare theirs at import).
DECLARED: dict[str, "Assumed"] = {}


@dataclass(frozen=True)
class Assumed:
    """An assumed constant: ``name`` (the params-file parameter that exposes it), ``value``,
    plausible range ``[lo, hi]`` and ``why`` (why it is assumed, and what bounds the range)."""

    name: str
    value: Any
    lo: Any
    hi: Any
    why: str

    def __post_init__(self):
        if not (self.lo <= self.value <= self.hi):
            raise ValueError(f"{self.name}: {self.value} outside its range [{self.lo}, {self.hi}]")
        if not self.why.strip():
            raise ValueError(f"{self.name}: say why it is assumed")
        DECLARED[self.name] = self

    @property
    def range(self) -> tuple[Any, Any]:
        return (self.lo, self.hi)

    def __int__(self) -> int:
        return int(self.value)

    def __float__(self) -> float:
        return float(self.value)
