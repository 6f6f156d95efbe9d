"""Counters, metrics, config validation and the tidy result frame."""
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import polars as pl
import pytest

from kmm import metrics, results
from kmm.config import check_choice, check_float, check_int, check_pow2, config_hash
from kmm.counters import Counters, new_counts
from kmm.errors import ConfigError


class Ev(IntEnum):
    HITS = 0
    L2_MISSES = 1
    MISSES = 1  # alias: the last level's misses


def test_counters_named_access_alias_and_warmup_difference():
    c = Counters(Ev)
    c.values[Ev.HITS] += 5
    c.values[Ev.L2_MISSES] += 2
    warm = c.snapshot()
    c.values[Ev.HITS] += 7
    c.values[Ev.MISSES] += 1
    measured = c - warm
    assert (measured.hits, measured.l2_misses, measured.misses) == (7, 1, 1)
    assert (c.hits, c.misses) == (12, 3)
    assert measured.as_dict() == {"hits": 7, "l2_misses": 1}
    with pytest.raises(AttributeError):
        _ = c.nonexistent
    assert new_counts(Ev).shape == (2,)


def test_metrics():
    assert metrics.mpki(5, 1000) == 5.0
    assert np.isnan(metrics.hit_rate(0, 0))
    assert metrics.gain(110.0, 100.0) == pytest.approx(0.10)
    assert metrics.relative_change(80.0, 60.0) == pytest.approx(-0.25)


def test_checks():
    assert check_int("n", 3, lo=1) == 3
    assert check_int("n", np.int64(4)) == 4
    for bad in (1.0, "3", True, None):
        with pytest.raises(ConfigError):
            check_int("n", bad)
    with pytest.raises(ConfigError, match="must be >= 1"):
        check_int("n", 0, lo=1)
    with pytest.raises(ConfigError, match="power of two"):
        check_pow2("sets", 12)
    assert check_float("x", 2) == 2.0
    with pytest.raises(ConfigError):
        check_float("x", float("nan"))
    with pytest.raises(ConfigError, match="one of"):
        check_choice("policy", "fifo", ["lru", "random"])


def test_config_hash_is_stable_and_discriminating():
    @dataclass(frozen=True)
    class C:
        a: int
        b: str

    assert config_hash(C(1, "x")) == config_hash(C(1, "x"))
    assert config_hash(C(1, "x")) != config_hash(C(2, "x"))
    assert config_hash({"a": 1}, version="1") != config_hash({"a": 1}, version="2")


def test_result_frame_schema():
    rows = results.rows_for("demo", {"granule": "4K", "nodes": 2}, 7,
                            {"gain": (0.1, "fraction"), "misses": (3, "count")})
    df = results.frame(rows)
    results.validate(df)
    assert df.columns[:7] == list(results.FIXED_COLUMNS)
    assert df.height == 2 and set(df["metric"]) == {"gain", "misses"}
    assert df["seed"].dtype == pl.Int64 and df["granule"][0] == "4K"
    assert df["config_hash"].n_unique() == 1
    empty = results.frame([])
    assert empty.columns == list(results.FIXED_COLUMNS)
