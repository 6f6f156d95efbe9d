"""kmm: simulation models of Linux kernel memory-mapping mechanisms.

The engine (``kmm.geometry``, ``kmm.pagetable``, ``kmm.tlb``, ``kmm.cache``, ``kmm.walk``,
``kmm.numa``, ``kmm.invalidate``, ``kmm.buddy``, ``kmm.workloads``, ``kmm.traces``,
``kmm.policy``) knows nothing of any mechanism; the mechanisms (``kmm.mech.*``) compose it
through its API module ``kmm.engine``; the suite
(``kmm.suite.*``) validates params, runs notebooks and sweeps, and writes the claims report.

Submodules are imported on demand so that ``import kmm`` stays cheap in notebook kernels.
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("kmm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"

__all__ = ["__version__"]
