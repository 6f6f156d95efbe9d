"""The NUMA host model shared by kernel text replication (:mod:`kmm.mech.ktr`) and
pKVM stage 2 (:mod:`kmm.mech.pkvm`): the kernel image and its tables, text patching,
kernel/user phase mixes run through the full path, and time as a formula over counts."""

# The model first: it re-exports the workload's names at its end, so importing the workload
# module on its own must find the model already initialised.
from . import model  # noqa: E402,F401
