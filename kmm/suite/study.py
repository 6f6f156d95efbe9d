"""The study protocol: what a mechanism's study gives the suite, and what the suite does with it.

A mechanism package's ``study`` module (``kmm/mech/<name>/study.py``) declares one
:class:`Study` per notebook:

- ``stem``: its notebook and params file (``notebooks/<stem>.ipynb``, ``params/<stem>.yaml``);
- ``defaults``: every parameter with its small default. This is the one place they live, so an
  installed kmm runs a study without the notebooks; the notebook's ``parameters`` cell repeats
  them as literals (papermill needs those) and ``tests/test_study.py`` checks that the cell,
  these defaults and ``params/<stem>.yaml`` agree;
- ``assumed``: the plausible range of every ``assumed`` parameter the study's joint sweep
  samples (the params file declares the same ranges; checked by the same test);
- ``evidence(params)``: per claim an :class:`Evidence`: value, unit, one-sentence
  explanation, chart, and the points of the joint sweep of ``assumed`` parameters when the
  verdict depends on them;
- optionally ``check(params)`` (rules beyond types) and ``frame(params, scenario)`` (the tidy
  frame of :mod:`kmm.results`).

The suite does the rest: typed parameters (:meth:`Study.params`, with the types of the
defaults, strictly: ``1e5`` for an integer is refused, never coerced), the records of the
claims (:func:`kmm.suite.claims.record`), the one definition of "decided by"
(:func:`kmm.suite.registry.decided_by`, computed with the verdict when the table is read) and
the saved frame. A notebook's last cell is one call, ``STUDY.finish(p, scenario)``.

>>> s = Study("demo", ("K1",), {"seed": 1, "nodes": 2},
...           lambda p: {"K1": Evidence(0.1 * p["nodes"], "fraction", "Two nodes.")})
>>> s.params({"nodes": 4, "unrelated": "x"})
{'seed': 1, 'nodes': 4}
>>> s.params({"nodes": 1e5})
Traceback (most recent call last):
...
kmm.errors.ConfigError: nodes: must be an integer, got 100000.0 (write integers without a decimal point or exponent)
>>> s.evaluate(s.params())["K1"].value
0.2
"""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, KmmError
from .schema import conform, infer


@dataclass(frozen=True)
class Evidence:
    """What a study found for one claim.

    ``value`` is a number or a mapping of evidence (the keys the registry's test reads);
    ``sweep`` holds the points of the joint sweep of ``assumed`` parameters the verdict
    depends on, ``[{"params": {...}, "value": v}, ...]`` (empty when it depends on none);
    ``chart`` is the file stem of the chart that shows the claim; ``centre`` gives the
    published point's setting of a swept parameter that is not a parameter of the study
    under the same name (e.g. a workload's kernel share); ``swings`` adds one-at-a-time
    points (each differs from the published point in one ``assumed`` parameter) where the
    sweep has none, such as a Latin hypercube: they decide :func:`kmm.suite.registry.decided_by`
    and do not count in the share in band; ``basis`` (``{"basis", "rests_on"}``) declares
    how the verdict is reached where the registry's table does not say it
    (:func:`kmm.suite.registry.basis`); ``replicates`` holds the published point again at
    other seeds and at half the stream length (``[{"seed", "length", "value"}, ...]``), and
    ``deterministic`` says the value depends on neither: the two ways a study shows its verdict
    converged (:func:`kmm.suite.registry.convergence`).
    """

    value: Any
    unit: str
    explanation: str
    chart: str | None = None
    sweep: Sequence[Mapping[str, Any]] = ()
    centre: Mapping[str, Any] | None = None
    swings: Sequence[Mapping[str, Any]] = ()
    basis: Mapping[str, Any] | None = None
    replicates: Sequence[Mapping[str, Any]] = ()
    deterministic: bool = False


@dataclass(frozen=True)
class Study:
    """One notebook's study of its mechanism's claims (see the module docstring)."""

    stem: str
    claims: tuple[str, ...]
    defaults: Mapping[str, Any]
    evidence: Callable[[dict], Mapping[str, Evidence]]
    check: Callable[[dict], dict] | None = None
    frame: Callable[[dict, str], Any] | None = None
    assumed: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def params(self, namespace: Mapping[str, Any] | None = None, **over: Any) -> dict:
        """The study's parameters: each default, replaced by ``namespace``'s value of the same
        name (a notebook's ``globals()``) and by ``over``; every value conformed to the type
        of its default (an int stays an int) and then checked by the study's rules."""
        given = {**(namespace or {}), **over}
        out = {}
        for k, default in self.defaults.items():
            v = given.get(k, default)
            out[k] = conform(v, infer(default, f"{self.stem}: default of {k}"), k)
        return self.check(out) if self.check else out

    def evaluate(self, params: Mapping[str, Any]) -> dict[str, Evidence]:
        """Evidence for every claim of the study, in the order of :attr:`claims`."""
        ev = self.evidence(dict(params))
        if set(ev) != set(self.claims):
            raise KmmError(f"evidence for {sorted(ev)}, claims are {list(self.claims)}", self.stem)
        bad = [c for c, e in ev.items() if not isinstance(e, Evidence)]
        if bad:
            raise KmmError(f"evidence of {bad} is not an Evidence", self.stem)
        return {c: ev[c] for c in self.claims}

    def record(self, params: Mapping[str, Any], scenario: str) -> list[dict]:
        """Evaluate and record every claim (:func:`kmm.suite.claims.record`); the records."""
        from . import claims

        return [claims.record(c, e.value, explanation=e.explanation, parameters=params,
                              scenario=scenario, unit=e.unit, sweep=list(e.sweep),
                              chart=e.chart, centre=e.centre, swings=list(e.swings),
                              basis=e.basis, replicates=list(e.replicates),
                              deterministic=e.deterministic)
                for c, e in self.evaluate(params).items()]

    def finish(self, params: Mapping[str, Any], scenario: str):
        """A notebook's last cell, ``STUDY.finish(p, scenario)``: record every claim at
        ``params`` (the notebook's ``p = STUDY.params(globals())``, read before any cell could
        rebind a parameter's name), save the study's frame, and return a table of the records."""
        import polars as pl

        from . import io

        if not isinstance(scenario, str):
            raise ConfigError(f"must be a string, got {scenario!r}", "scenario")
        p = self.params(params)
        records = self.record(p, scenario)
        if self.frame is not None:
            io.save_frame(self.frame(p, scenario), self.stem, scenario, p)
        return pl.DataFrame([{"id": r["id"], "value": str(r["value"]),
                              "explanation": r["explanation"]} for r in records])


# ---- helpers the studies share ----------------------------------------------------------------
def evidence_from(values: Mapping[str, Mapping[str, Any]],
                  charts: Mapping[str, str | None] = {}) -> dict[str, Evidence]:
    """:class:`Evidence` from ``{claim: {"value", "unit", "explanation", "sweep", "chart",
    "centre", "swings", "basis", "replicates", "deterministic"}}`` (all but value and
    explanation optional; ``charts`` gives a chart per claim)."""
    return {c: Evidence(v["value"], v.get("unit", ""), v["explanation"],
                        v.get("chart", charts.get(c)), v.get("sweep") or [],
                        v.get("centre"), v.get("swings") or [], v.get("basis"),
                        v.get("replicates") or (), bool(v.get("deterministic")))
            for c, v in values.items()}


def per_claim(points: Sequence[Mapping[str, Any]], claim: str,
              key: str = "evidence") -> list[dict]:
    """The sweep of one claim from points that carry every claim's value under ``key``:
    ``[{"params": ..., key: {claim: v, ...}}]`` -> ``[{"params": ..., "value": v}]``."""
    return [{"params": pt["params"], "value": pt[key][claim]} for pt in points]


def most_influential(sweep: Sequence[Mapping[str, Any]]) -> str | None:
    """The swept parameter whose levels move the mean value the most (its main effect), for
    explanations; which parameter decides a verdict is :func:`kmm.suite.registry.decided_by`."""
    if not sweep:
        return None
    best, span = None, -1.0
    for k in sweep[0]["params"]:
        levels: dict = {}
        for pt in sweep:
            levels.setdefault(pt["params"][k], []).append(pt["value"])
        means = [sum(v) / len(v) for v in levels.values()]
        if len(means) > 1 and max(means) - min(means) > span:
            best, span = k, max(means) - min(means)
    return best


def one_at_a_time(specs: Mapping[str, tuple], published: Mapping[str, Any]) -> list[dict]:
    """The one-at-a-time swings of a joint sweep: for each parameter of ``specs``
    (``name -> (lo, hi)`` or ``(lo, hi, choices)``, as :func:`kmm.sampling.latin_hypercube`
    takes them), a point at each end of its range with every other parameter at its
    ``published`` value. An end equal to the published value is left out (that point is the
    published point). A parameter whose published value is an integer takes integer ends; one
    with ``choices`` takes the lowest and highest allowed choice. Evaluated and passed as
    :attr:`Evidence.swings`, they let :func:`kmm.suite.registry.decided_by` check a sweep that
    has no such points of its own (a Latin hypercube).

    >>> one_at_a_time({"a": (0.0, 1.0), "n": (2, 8)}, {"a": 0.5, "n": 2, "other": 1})
    [{'a': 0.0, 'n': 2}, {'a': 1.0, 'n': 2}, {'a': 0.5, 'n': 8}]
    """
    names = sorted(specs)
    missing = [k for k in names if k not in published]
    if missing:
        raise KmmError(f"no published value of {', '.join(missing)}", "swings")
    centre = {k: published[k] for k in names}
    out = []
    for k in names:
        lo, hi, *rest = specs[k]
        if rest and rest[0]:
            allowed = [c for c in rest[0] if lo <= c <= hi]
            lo, hi = min(allowed), max(allowed)
        v = centre[k]
        if isinstance(v, int) and not isinstance(v, bool):
            lo, hi = int(round(lo)), int(round(hi))
        else:
            lo, hi = float(lo), float(hi)
        for end in (lo, hi):
            if end != v:
                out.append({**centre, k: end})
    return out


def evaluate_points(evaluate: Callable[[dict], Mapping[str, Any]],
                    points: Sequence[Mapping[str, Any]]) -> dict[str, list[dict]]:
    """Every claim's value at each point: ``evaluate(point)`` gives ``{claim: value}``; the
    result is ``{claim: [{"params": point, "value": v}, ...]}``, the form of
    :attr:`Evidence.sweep` and :attr:`Evidence.swings`.

    >>> evaluate_points(lambda q: {"K1": q["a"] * 2}, [{"a": 1}, {"a": 3}])["K1"][1]
    {'params': {'a': 3}, 'value': 6}
    """
    out: dict[str, list[dict]] = {}
    for pt in points:
        for c, v in evaluate(dict(pt)).items():
            out.setdefault(c, []).append({"params": dict(pt), "value": v})
    return out


def grid(axes: Mapping[str, Sequence[Any]]) -> list[dict]:
    """Every combination of the levels of ``axes`` (``name -> levels``), the first axis
    varying slowest: the points of a full-factorial sweep, for :func:`evaluate_points`.

    >>> grid({"a": [0, 1], "b": ["x", "y"]})
    [{'a': 0, 'b': 'x'}, {'a': 0, 'b': 'y'}, {'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}]
    """
    import itertools

    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(axes[k] for k in keys))]


def joint_sweep(evaluate: Callable[[dict], Mapping[str, Any]], specs: Mapping[str, tuple],
                published: Mapping[str, Any], n: int, seed) -> tuple[dict, dict]:
    """The joint sweep of ``specs`` (``name -> (lo, hi[, choices])``) for every claim
    ``evaluate`` returns: ``n`` Latin-hypercube points (:func:`kmm.sampling.latin_hypercube`
    from ``seed``, with ``published`` as the base that says which parameters are integers)
    and the :func:`one_at_a_time` swings around ``published`` that decide "decided by".
    ``(sweep, swings)``, each ``{claim: [{"params", "value"}, ...]}``
    (:func:`evaluate_points`).

    >>> sweep, swings = joint_sweep(lambda q: {"K1": q["a"]}, {"a": (0.0, 1.0)},
    ...                             {"a": 0.5}, 4, 0)
    >>> len(sweep["K1"]), [pt["value"] for pt in swings["K1"]]
    (4, [0.0, 1.0])
    """
    from ..sampling import latin_hypercube

    return (evaluate_points(evaluate, latin_hypercube(specs, n, seed, published)),
            evaluate_points(evaluate, one_at_a_time(specs, published)))


#: Seeds besides the published one at which a study runs its published point again: with it,
#: the :data:`kmm.suite.registry.MIN_SEEDS` a convergence check needs.
REPLICATE_SEEDS = 2


def replicate_plan(seed: int, length: int, seeds: int = REPLICATE_SEEDS) -> list[tuple[int, int]]:
    """The runs that show a published value converged (:func:`kmm.suite.registry.convergence`):
    ``(seed, length)`` at ``seed + 1`` ... ``seed + seeds`` with the published stream length,
    then the published seed at half the length.

    >>> replicate_plan(7, 1000)
    [(8, 1000), (9, 1000), (7, 500)]
    """
    return [(int(seed) + k, int(length)) for k in range(1, seeds + 1)] + \
        [(int(seed), int(length) // 2)]


def replicates_from(runs: Sequence[tuple[int, int, Mapping[str, Any]]]) -> dict[str, list[dict]]:
    """:attr:`Evidence.replicates` per claim from ``[(seed, length, {claim: value}), ...]``
    (the runs of :func:`replicate_plan`).

    >>> replicates_from([(8, 10, {"K1": 0.2}), (4, 5, {"K1": 0.3})])["K1"][1]
    {'seed': 4, 'length': 5, 'value': 0.3}
    """
    out: dict[str, list[dict]] = {}
    for seed, length, values in runs:
        for c, v in values.items():
            out.setdefault(c, []).append({"seed": int(seed), "length": int(length), "value": v})
    return out


def cached(maxsize: int = 4):
    """Memoise a study function on its (JSON) arguments, so a notebook's cells and
    :meth:`Study.finish` share one simulation. The result is shared: treat it as read-only."""
    def wrap(fn):
        store: dict[str, Any] = {}

        @functools.wraps(fn)
        def inner(*args, **kw):
            key = json.dumps([args, kw], sort_keys=True, default=repr)
            if key not in store:
                if len(store) >= maxsize:
                    store.pop(next(iter(store)))
                store[key] = fn(*args, **kw)
            return store[key]

        inner.cache_clear = store.clear
        return inner
    return wrap


def studies() -> dict[str, Study]:
    """Every study of the mechanisms in :mod:`kmm.mech`, by stem (packages whose name starts
    with ``_``, such as the template, are not studies of the suite)."""
    import importlib
    import pkgutil

    import kmm.mech

    out: dict[str, Study] = {}
    for info in sorted(pkgutil.iter_modules(kmm.mech.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or not info.ispkg:
            continue
        try:
            mod = importlib.import_module(f"kmm.mech.{info.name}.study")
        except ModuleNotFoundError as e:
            if e.name != f"kmm.mech.{info.name}.study":
                raise
            continue
        for obj in vars(mod).values():
            if isinstance(obj, Study):
                out[obj.stem] = obj
    return dict(sorted(out.items()))
