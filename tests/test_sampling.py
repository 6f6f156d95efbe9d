"""kmm.sampling: Latin-hypercube points over assumed ranges."""
import numpy as np
import pytest

from kmm.errors import ConfigError
from kmm.sampling import latin_hypercube


def test_every_stratum_is_visited_once_per_parameter():
    specs = {"cpi_base": (0.4, 0.8, None), "l2_tlb_entries": (1024, 4096, (1024, 2048, 4096)),
             "mc_connections": (50, 2000, None)}
    base = {"cpi_base": 0.6, "l2_tlb_entries": 2048, "mc_connections": 400}
    pts = latin_hypercube(specs, 10, 3, base)
    u = sorted((x["cpi_base"] - 0.4) / 0.4 for x in pts)
    assert [int(x * 10) for x in u] == list(range(10))
    assert all(isinstance(x["mc_connections"], int) and 50 <= x["mc_connections"] <= 2000
               for x in pts)
    assert {x["l2_tlb_entries"] for x in pts} == {1024, 2048, 4096}
    assert list(pts[0]) == sorted(specs)


def test_wide_ranges_are_stratified_in_log_space():
    pts = latin_hypercube({"rate": (1.0, 1000.0)}, 8, 5, {"rate": 10.0})
    v = sorted(np.log10(p["rate"]) / 3 for p in pts)
    assert [int(x * 8) for x in v] == list(range(8))


def test_two_element_specs_floats_and_seeds():
    a = latin_hypercube({"x": (1.0, 2.0), "y": (0.0, 1.0)}, 5, [7, 4], {"x": 1.5, "y": 0.5})
    b = latin_hypercube({"x": (1.0, 2.0), "y": (0.0, 1.0)}, 5, [7, 4], {"x": 1.5, "y": 0.5})
    c = latin_hypercube({"x": (1.0, 2.0), "y": (0.0, 1.0)}, 5, [7, 5], {"x": 1.5, "y": 0.5})
    assert a == b and a != c
    assert all(isinstance(p["x"], float) and 1.0 <= p["x"] <= 2.0 for p in a)
    with pytest.raises(ConfigError):
        latin_hypercube({"x": (1.0, 2.0)}, 0, 1, {})
