"""A template mechanism: copy this package to ``kmm/mech/<name>/`` to add one.

The toy modelled here replicates one read-only region per NUMA node: each read of the region
is charged at the latency between the reading CPU's node and the node holding the copy it
reads (node 0 without replication, its own node with it). Every role of a mechanism package
is here, each a few lines long:

- :mod:`.model`: enums, frozen configurations, the one conversion to kernel arrays, simulate;
- :mod:`.kernels`: Numba kernels, reading nothing but the engine API (:mod:`kmm.engine`);
- :mod:`.workload`: the access streams;
- :mod:`.study`: the parameters, the evidence per claim and the :class:`kmm.suite.study.Study`.

>>> from kmm.mech import _template as t
>>> run = t.simulate(t.Config(nodes=2), t.reads(t.Config(nodes=2), 1000, seed=1))
>>> run.remote_reads > 0, t.simulate(t.Config(nodes=2, replicated=True),
...                                  t.reads(t.Config(nodes=2), 1000, seed=1)).remote_reads
(True, 0)
>>> ev = t.STUDY.evaluate(t.STUDY.params())
>>> 0 < ev["X1"].value < 1, ev["X1"].unit
(True, 'fraction')
"""
from .model import Config, Run, simulate
from .study import DEFAULTS, STUDY, evidence
from .workload import reads
