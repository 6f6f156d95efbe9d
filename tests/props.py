"""Shared hypothesis settings for the checked invariants (README "What kmm guarantees").

Each invariant property runs ``INVARIANT_EXAMPLES`` cases (default 2000); the examples are
kept small (a few hundred operations on a small pool, table or TLB) so that thousands of them
fit in the suite's time. ``KMM_INVARIANT_EXAMPLES`` raises the count for a long soak, e.g.
``KMM_INVARIANT_EXAMPLES=50000 python3 -m pytest -k invariant``.
"""
import os

from hypothesis import HealthCheck, settings

INVARIANT_EXAMPLES = int(os.environ.get("KMM_INVARIANT_EXAMPLES", "2000"))

INVARIANT = settings(max_examples=INVARIANT_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
