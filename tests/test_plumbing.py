"""The lines each mechanism spends on plumbing (parameters, claims, sweeps, "decided by",
convergence), measured by ``tests/plumbing_lines.py`` (its docstring states the rule), against
the last revision with one file per mechanism.

Issue 22's target is half the plumbing lines of that revision. Measured by the rule, the
mechanisms do not meet it yet: the studies have since gained one-at-a-time swings,
replicates at other seeds and lengths, and their defaults (which the notebooks alone held
before), and those lines outweigh what moved into :mod:`kmm.suite.study`. The target test
is an expected failure, strict: once the target is met it passes, fails as unexpected, and
its mark goes.
"""
from __future__ import annotations

import subprocess

import pytest

import plumbing_lines as pl

#: The revision the "before" counts come from: the parent of fc45ccb, the last with one
#: ``kmm/mech/<m>.py`` per mechanism.
BEFORE_REV = "02c3f2dc73dc1ee7b42190a5932536050965e92d"
#: Plumbing lines per mechanism at :data:`BEFORE_REV`, by the rule of ``plumbing_lines.py``
#: (``python3 tests/plumbing_lines.py --rev 02c3f2dc``). The host model was part of ktr's file.
BEFORE = {"asi": 119, "bbml2": 110, "bbml2_perf": 136, "ktr": 122, "permvmalloc": 86,
          "pkvm": 150, "host": 0}


def _have_rev() -> bool:
    try:
        pl._git("cat-file", "-e", f"{BEFORE_REV}^{{commit}}")
        return True
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False


@pytest.mark.skipif(not _have_rev(), reason="not a git checkout with the pre-package history")
def test_the_recorded_before_counts_are_the_rules():
    """The constants are what the rule gives at :data:`BEFORE_REV`: a change of the rule
    changes the before counts with the after counts, or this fails."""
    got = pl.measure(BEFORE_REV)
    assert {m: got[m]["plumbing"] for m in BEFORE} == BEFORE
    assert got["suite"]["total"] == 0  # the protocol module did not exist yet


@pytest.mark.xfail(strict=True, reason="issue 22's target is not met: the studies' swings, "
                   "replicates and defaults added more plumbing than the suite took over "
                   "(python3 tests/plumbing_lines.py --compare)")
def test_mechanism_plumbing_is_at_most_half_of_before():
    now = pl.measure()
    over = {m: (now[m]["plumbing"], BEFORE[m]) for m in BEFORE
            if now[m]["plumbing"] > BEFORE[m] / 2}
    assert sum(now[m]["plumbing"] for m in BEFORE) <= sum(BEFORE.values()) / 2
    assert not over, f"plumbing lines now, before: {over}"


def test_the_rule_on_a_small_module():
    src = '''
DEFAULTS = {"seed": 1,
            "n": 2}
LEVELS = (1, 2)


def params_from(ns):
    return {k: ns[k] for k in DEFAULTS}


def simulate(p):
    return p["n"] * 2


def k1_sweep(p):
    return [{"params": {"n": n}, "value": simulate({**p, "n": n})} for n in LEVELS]


def claim_values(p):
    v = simulate(p)
    return {"K1": {"value": v, "sweep": k1_sweep(p),
                   "explanation": (
                       f"Twice {p['n']}.")}}


def frame(p):
    rows = [simulate(p)]
    pts = evaluate_points(simulate, [p])
    return {"rows": rows,
            "sweep": pts}
'''
    c = pl.classify(src)
    assert c["by_role"] == {"params": 2 + 2, "sweep": 2, "claims": 6 - 2, "statements": 2}
    assert c["plumbing"] == 12
    assert c["total"] == len(src.splitlines())
    # the suite's helpers count as plumbing there (and only there by their own names)
    helper = "def one_at_a_time(specs, published):\n    return sorted(specs)\n"
    assert pl.classify(helper, suite=True)["plumbing"] == 2
    assert pl.classify(helper)["plumbing"] == 0


def test_the_report_runs_on_the_tree(capsys):
    assert pl.main([]) == 0
    out = capsys.readouterr().out
    assert "suite" in out and "ktr" in out
