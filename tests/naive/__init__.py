"""Plain-Python twins of every Numba kernel, one module per engine area.

Each twin computes the same thing as its kernel with the simplest possible code (dicts,
lists, per-page loops), so tests can compare the kernel against it on hand-worked and random
inputs. Twins are never imported by kmm itself.
"""
