"""Every published claim record (value, sweep, explanation, verdict) is the one in
``tests/data/golden_claims.json``: a refactoring of the engine or a mechanism changes no
claim. Several minutes (every published scenario), so it runs only when asked:

    python3 -m pytest -m golden tests/test_golden.py      # or -m slow
"""
import pytest

import golden


@pytest.mark.slow
@pytest.mark.golden
def test_every_published_claim_record_is_unchanged():
    new = golden.compute()
    old = golden.load()
    diff = golden.differences(old, new)
    assert not diff, "\n".join(diff)
    assert len(new) == len(old) >= 30


def test_golden_file_has_every_claim_of_the_registry():
    from kmm.suite import registry
    old = golden.load()
    assert set(old) == set(registry.CLAIMS)
    assert all({"value", "sweep", "explanation", "verdict"} <= set(r) for r in old.values())


def test_every_published_verdict_says_how_it_was_reached():
    """Issue of the verdict rules, on the published records the golden test keeps equal to
    the studies' output: a claim whose sweep moves with an ``assumed`` parameter has its
    "decided by" computed (one-at-a-time swings exist), and every claim with a value was
    checked for convergence (replicates or deterministic). A claim without a value
    (not-evaluated) has neither."""
    old = golden.load()
    unchecked = sorted(c for c, r in old.items() if r.get("sweep") and r.get("value") is not None
                       and r.get("decided_by") is None)
    assert not unchecked, f"decided by not checked: {unchecked}"
    unconverged = sorted(c for c, r in old.items()
                         if r.get("value") is not None and r.get("converged") is None)
    assert not unconverged, f"convergence not checked: {unconverged}"
