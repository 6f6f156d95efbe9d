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
    assert df.columns[:len(results.FIXED_COLUMNS)] == list(results.FIXED_COLUMNS)
    assert df.height == 2 and set(df["metric"]) == {"gain", "misses"}
    assert df["seed"].dtype == pl.Int64 and df["granule"][0] == "4K"
    assert df["config_hash"].n_unique() == 1
    assert set(df["experiment"]) == {"granule+nodes"} and set(df["seeds"]) == {"7"}


def test_rows_name_their_experiment_and_pooled_seeds():
    """Two experiments in one frame: a parameter one of them does not set is null there, and
    the experiment column keeps the groups apart; pooled seeds are all listed."""
    rows = (results.rows_for("s", {"nodes": 2, "latency_ratio": 1.5}, [1, 2, 3], {"gain": (0.1, "")})
            + results.rows_for("s", {"nodes": 2}, 1, {"bytes": (4.0, "")}, experiment="replication"))
    df = results.frame(rows)
    assert df["experiment"].to_list() == ["latency_ratio+nodes", "replication"]
    assert df["seeds"].to_list() == ["1,2,3", "1"] and df["seed"].to_list() == [1, 1]
    assert df["config_hash"].n_unique() == 2  # pooled seeds are another configuration
    gain = df.filter(pl.col("experiment") == "latency_ratio+nodes").group_by("nodes").len()
    assert gain["len"].to_list() == [1]  # no null group from the other experiment
    with pytest.raises(ValueError):
        results.rows_for("s", {}, [], {"m": (1.0, "")})
    empty = results.frame([])
    assert empty.columns == list(results.FIXED_COLUMNS)
