import os
import sys

# tests/naive is imported as ``naive`` by the tests.
sys.path.insert(0, os.path.dirname(__file__))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``golden`` run only when a ``-m`` expression asks for them (``-m golden``
    or ``-m slow``); the default run leaves them out and says so."""
    if config.option.markexpr:
        return
    keep, skipped = [], []
    for item in items:
        (skipped if item.get_closest_marker("golden") else keep).append(item)
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = keep
