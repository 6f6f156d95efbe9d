"""The README's Python examples and every docstring example of kmm run as doctests."""
from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    out = []
    for p in sorted((ROOT / "kmm").rglob("*.py")):
        if ">>> " in p.read_text():
            rel = p.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append(".".join(parts))
    return out


MODULES = _modules_with_examples()


def test_the_readme_examples_run():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    examples = "\n".join(b for b in blocks if ">>> " in b)
    assert examples.count(">>> ") >= 10
    test = doctest.DocTestParser().get_doctest(examples, {}, "README.md", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test)
    res = runner.summarize(verbose=False)
    assert res.failed == 0 and res.attempted == len(test.examples)


def test_modules_with_examples_are_found():
    assert {"kmm.pagetable", "kmm.suite.study", "kmm.mech._template"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    res = doctest.testmod(importlib.import_module(name), optionflags=FLAGS, report=True)
    assert res.failed == 0 and res.attempted > 0
