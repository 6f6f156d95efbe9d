"""The template mechanism's study: its parameters (the notebook's parameters cell repeats
:data:`DEFAULTS`), the evidence per claim, and the :class:`~kmm.suite.study.Study`."""
from __future__ import annotations

from ...suite.study import Evidence, joint_sweep, replicate_plan, replicates_from, Study
from .model import Config, simulate
from .workload import reads

#: Every parameter with its small default (what the notebook's parameters cell says).
DEFAULTS: dict = {"seed": 1, "nodes": 2, "reads": 10000, "local_ns": 100.0,
                  "remote_ratio": 2.0, "ratio_range": [1.5, 3.0]}


def evidence(p: dict) -> dict:
    """X1: the read time replication saves, over the ``assumed`` ratio range (two
    Latin-hypercube points and the range's ends as one-at-a-time swings), run again at two
    more seeds and at half the reads to show it converged."""
    def point(q: dict) -> dict:
        x = {**p, **q}
        cfg = Config(x["nodes"], x["local_ns"], x["remote_ratio"])
        trace = reads(cfg, x["reads"], x["seed"])
        base = simulate(cfg, trace).read_ns
        replicated = Config(x["nodes"], x["local_ns"], x["remote_ratio"], True)
        return {"X1": 1.0 - simulate(replicated, trace).read_ns / base}

    value = point({})["X1"]
    lo, hi = p["ratio_range"]
    sweep, swings = joint_sweep(point, {"remote_ratio": (lo, hi)}, p, 2, p["seed"])
    reps = replicates_from([(s, n, point({"seed": s, "reads": n}))
                            for s, n in replicate_plan(p["seed"], p["reads"])])
    return {"X1": Evidence(value, "fraction", (
        f"Replication saves {value:.1%} of read time: the remote share of reads moves to local "
        f"copies, each saving (ratio - 1) x {p['local_ns']:g} ns."), None, sweep["X1"],
        swings=swings["X1"], replicates=reps["X1"])}

STUDY = Study("template", ("X1",), DEFAULTS, evidence)
