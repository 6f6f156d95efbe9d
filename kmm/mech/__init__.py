"""The mechanisms, one package each (``model``, ``kernels``, ``workload``, ``study``), composing
the engine through :mod:`kmm.engine`; :mod:`kmm.mech.host` holds the NUMA host model that
kernel text replication and pKVM share, and :mod:`kmm.mech._template` is the package to copy
for a new mechanism."""
