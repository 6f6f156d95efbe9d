"""The template mechanism's study: its parameters (the notebook's parameters cell repeats
:data:`DEFAULTS`), the evidence per claim, and the :class:`~kmm.suite.study.Study`."""
from __future__ import annotations

from ...suite.study import Evidence, Study
from .model import Config, simulate
from .workload import reads

#: Every parameter with its small default (what the notebook's parameters cell says).
DEFAULTS: dict = {"seed": 1, "nodes": 2, "reads": 10000, "local_ns": 100.0,
                  "remote_ratio": 2.0, "ratio_range": [1.5, 3.0]}


def evidence(p: dict) -> dict:
    """X1: the read time replication saves, over the ``assumed`` ratio range."""
    def saving(ratio: float) -> float:
        cfg = Config(p["nodes"], p["local_ns"], ratio)
        trace = reads(cfg, p["reads"], p["seed"])
        base = simulate(cfg, trace).read_ns
        return 1.0 - simulate(Config(p["nodes"], p["local_ns"], ratio, True), trace).read_ns / base

    value = saving(p["remote_ratio"])
    sweep = [{"params": {"remote_ratio": r}, "value": saving(r)} for r in p["ratio_range"]]
    return {"X1": Evidence(value, "fraction", (
        f"Replication saves {value:.1%} of read time: the remote share of reads moves to local "
        f"copies, each saving (ratio - 1) x {p['local_ns']:g} ns."), None, sweep)}


STUDY = Study("template", ("X1",), DEFAULTS, evidence)
