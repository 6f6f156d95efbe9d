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
