"""The template mechanism's workload: seeded streams of reads."""
from __future__ import annotations

import numpy as np

from .model import Config


def reads(config: Config, n: int, seed: int) -> np.ndarray:
    """The node of the CPU making each of ``n`` reads, uniform over the nodes."""
    return np.random.default_rng(seed).integers(0, config.nodes, n).astype(np.int64)
