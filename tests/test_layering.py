"""The contract between layers, checked on the source (AST), not by convention.

- Mechanisms (``kmm/mech``) reach the engine only through its API module ``kmm.engine`` (and
  ``kmm.policy``): no engine module imported, no private engine name used.
- A mechanism kernel (an ``@njit`` function of ``kmm/mech``) calls and reads nothing but
  its own module's names, the engine API, numpy and math.
- No engine module uses another engine module's private names.
- ``numba`` is used only in ``kmm/_jit.py`` (the one place that sets its options).
- Neither the engine nor a mechanism imports the suite at module level (but for a
  mechanism's ``study``, which speaks the suite's protocol); a mechanism's
  ``model``, ``kernels`` and ``workload`` modules never import it at all (only its ``study``
  speaks to the suite).
- A mechanism package has fixed roles: its kernels (``@njit`` functions) live in its
  ``kernels`` module, which imports nothing of kmm but the engine API and its own package.

Each rule is also run against a small bad source, so a check that silently passes
everything would fail here.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "kmm"
ENGINE = {"geometry", "pagetable", "tlb", "cache", "walk", "numa", "invalidate", "buddy",
          "workloads", "traces", "policy", "engine", "_jit"}
#: What a mechanism may import from kmm: the engine API and the non-engine helpers.
MECH_ALLOWED = {"kmm", "kmm.engine", "kmm.policy", "kmm.config", "kmm.errors", "kmm.counters",
                "kmm.results", "kmm.sampling", "kmm.metrics"}
#: What a mechanism kernel may read besides its own module's names.
KERNEL_ALLOWED = {"kmm.engine", "kmm.policy", "numpy", "math"}
#: NamedTuple / enum API names that start with an underscore but are public.
PUBLIC_UNDERSCORE = {"_replace", "_fields", "_asdict", "_make", "_value_", "_name_",
                     "__class__", "__name__", "__dict__", "__doc__"}


def modname(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


PACKAGES = {modname(p.parent / "__init__.py") for p in ROOT.rglob("__init__.py")}


def resolve(module: str, node: ast.ImportFrom) -> str:
    """Absolute module name of an ImportFrom's source."""
    if not node.level:
        return node.module or ""
    pkg = module.split(".")
    base = pkg[:len(pkg) - node.level + (1 if module in PACKAGES else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, tree: ast.AST):
    """(absolute module, imported name or None, node, at module level) for every import."""
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, a.asname or a.name.split(".")[0], node, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            src = resolve(module, node)
            for a in node.names:
                yield src, a.name, a.asname or a.name, node, id(node) in top


def engine_module(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] == "kmm" and parts[1] in ENGINE:
        return parts[1]
    return None


def bindings(module: str, tree: ast.AST) -> dict[str, str]:
    """Name bound by a module-level import -> what it names (``kmm.tlb`` or ``kmm.tlb.X``)."""
    out = {}
    for src, name, bound, _node, top in imports(module, tree):
        if not top:
            continue
        if name is None:
            out[bound] = src if bound == src.split(".")[0] and "." not in bound else src
        else:
            out[bound] = f"{src}.{name}"
    return out


def private_engine_attributes() -> set[str]:
    """Private attribute and method names defined by engine classes (``self._x``,
    ``def _x`` in a class), which no code outside the engine may touch."""
    names = set()
    for m in sorted(ENGINE - {"_jit", "engine"}):
        if not (ROOT / f"{m}.py").is_file():
            continue
        tree = ast.parse((ROOT / f"{m}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("_") \
                            and not item.name.startswith("__"):
                        names.add(item.name)
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                names.add(node.attr)
    return names - PUBLIC_UNDERSCORE


# ---- the rules --------------------------------------------------------------------------
def mech_import_problems(module: str, tree: ast.AST) -> list[str]:
    out = []
    for src, name, _bound, node, top in imports(module, tree):
        full = f"{src}.{name}" if name else src
        target = full if engine_module(full) and name and full.count(".") == 1 else src
        if not target.startswith("kmm"):
            continue
        if target.startswith("kmm.mech"):
            continue
        if target.startswith("kmm.suite"):
            if top and not module.endswith(".study"):  # a study speaks to the suite
                out.append(f"{module}:{node.lineno} imports the suite at module level")
            continue
        if target not in MECH_ALLOWED:
            out.append(f"{module}:{node.lineno} imports {target} (use kmm.engine)")
        if name and name.startswith("_"):
            out.append(f"{module}:{node.lineno} imports private {src}.{name}")
    return out


def private_use_problems(module: str, tree: ast.AST, own_engine: str | None,
                         private_attrs: set[str]) -> list[str]:
    """Private engine names used outside their module."""
    out = []
    b = bindings(module, tree)
    for src, name, _bound, node, _top in imports(module, tree):
        m = engine_module(src)
        if m and m != own_engine and name and name.startswith("_") and m != "_jit":
            out.append(f"{module}:{node.lineno} imports private {src}.{name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") \
                or node.attr in PUBLIC_UNDERSCORE or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name):
            target = b.get(node.value.id, "")
            m = engine_module(target)
            if m and m != own_engine and target.count(".") == 1:
                out.append(f"{module}:{node.lineno} uses private {target}.{node.attr}")
                continue
            if node.value.id in ("self", "cls"):
                continue
        if own_engine is None and node.attr in private_attrs:
            out.append(f"{module}:{node.lineno} uses an engine object's private .{node.attr}")
    return out


def _jit_decorated(fn: ast.FunctionDef, kernel_aliases: set[str]) -> bool:
    for d in fn.decorator_list:
        f = d.func if isinstance(d, ast.Call) else d
        if isinstance(f, ast.Name) and (f.id == "njit" or f.id in kernel_aliases):
            return True
    return False


def kernel_problems(module: str, tree: ast.AST) -> list[str]:
    """Globals read by a mechanism's kernels that come from anywhere but the module
    itself, the engine API, numpy or math."""
    b = bindings(module, tree)
    aliases = {t.id for node in tree.body if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
               and node.value.func.id == "njit" for t in node.targets if isinstance(t, ast.Name)}
    out = []
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or not _jit_decorated(fn, aliases):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in b:
                src = b[node.id]
                if src.startswith("kmm.mech"):
                    continue
                if not any(src == a or src.startswith(a + ".") for a in KERNEL_ALLOWED):
                    out.append(f"{module}:{node.lineno} kernel {fn.name} reads {src}")
    return out


def numba_problems(module: str, tree: ast.AST) -> list[str]:
    out = []
    for src, name, _bound, node, _top in imports(module, tree):
        if src.split(".")[0] == "numba":
            out.append(f"{module}:{node.lineno} imports numba (use kmm._jit / kmm.engine.njit)")
    return out


def engine_suite_problems(module: str, tree: ast.AST) -> list[str]:
    return [f"{module}:{node.lineno} imports the suite"
            for src, name, _b, node, _top in imports(module, tree)
            if (f"{src}.{name}" if name else src).startswith("kmm.suite")]


def sources():
    for p in sorted(ROOT.rglob("*.py")):
        yield modname(p), ast.parse(p.read_text())


# ---- the tests over kmm --------------------------------------------------------------------
def test_mechanisms_import_only_the_engine_api():
    problems = [p for m, t in sources() if m.startswith("kmm.mech")
                for p in mech_import_problems(m, t)]
    assert not problems, "\n".join(problems)


def test_no_private_engine_name_outside_its_module():
    attrs = private_engine_attributes()
    problems = []
    for m, t in sources():
        own = engine_module(m) if m.count(".") == 1 else None
        problems += private_use_problems(m, t, own, attrs)
    assert not problems, "\n".join(problems)


def test_mechanism_kernels_read_only_the_engine_api():
    problems = [p for m, t in sources() if m.startswith("kmm.mech")
                for p in kernel_problems(m, t)]
    assert not problems, "\n".join(problems)
    # the check sees kernels at all: every mechanism with kernels has some
    kernels = {m for m, t in sources() if m.startswith("kmm.mech") and any(
        isinstance(f, ast.FunctionDef) and f.decorator_list for f in t.body)}
    assert {"kmm.mech.asi.kernels", "kmm.mech.permvmalloc.kernels",
            "kmm.mech.bbml2.kernels", "kmm.mech.bbml2_perf.kernels"} <= kernels


def test_numba_only_in_the_jit_module():
    problems = [p for m, t in sources() if m != "kmm._jit" for p in numba_problems(m, t)]
    assert not problems, "\n".join(problems)


def test_engine_never_imports_the_suite_and_mechanisms_not_at_module_level():
    problems = [p for m, t in sources() if engine_module(m) and m.count(".") == 1
                for p in engine_suite_problems(m, t)]
    problems += [p for m, t in sources() if m.startswith("kmm.mech")
                 for p in mech_import_problems(m, t) if "suite" in p]
    assert not problems, "\n".join(problems)


ROLES = ("model", "kernels", "workload", "study")


def role_problems(module: str, tree: ast.AST) -> list[str]:
    """A mechanism package's fixed roles: njit only in ``kernels``; ``kernels`` imports only
    the engine API, numpy, math and its own package; no role but ``study`` imports the suite."""
    parts = module.split(".")
    if len(parts) != 4 or parts[:2] != ["kmm", "mech"]:
        return []
    role, pkg = parts[3], ".".join(parts[:3])
    out = []
    if role not in ROLES:
        out.append(f"{module}: a mechanism module is one of {', '.join(ROLES)}")
    aliases = {t.id for node in tree.body if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
               and node.value.func.id == "njit" for t in node.targets if isinstance(t, ast.Name)}
    if role != "kernels":
        out += [f"{module}:{fn.lineno} kernel {fn.name} outside the kernels module"
                for fn in tree.body if isinstance(fn, ast.FunctionDef)
                and _jit_decorated(fn, aliases)]
    for src, name, _b, node, _top in imports(module, tree):
        full = f"{src}.{name}" if name else src
        if role != "study" and full.startswith("kmm.suite"):
            out.append(f"{module}:{node.lineno} imports the suite (only a study may)")
        if role != "study" and (src.endswith(".study") or full.endswith(".study")):
            out.append(f"{module}:{node.lineno} imports a study (only a study may)")
        target = full if full in KERNEL_ALLOWED else src
        if role == "kernels" and src.split(".")[0] == "kmm" and not (
                target in KERNEL_ALLOWED or src == pkg or src.startswith(pkg + ".")):
            out.append(f"{module}:{node.lineno} kernels import {target}")
    return out


def test_mechanism_packages_keep_their_roles():
    mods = [(m, t) for m, t in sources() if m.startswith("kmm.mech.")]
    problems = [p for m, t in mods for p in role_problems(m, t)]
    assert not problems, "\n".join(problems)
    # every mechanism is a package with a model and a study
    pkgs = {m.split(".")[2] for m, _ in mods}
    for pkg in pkgs - {"host"}:
        assert {f"kmm.mech.{pkg}.model", f"kmm.mech.{pkg}.study"} <= {m for m, _ in mods}, pkg


def test_engine_api_names_exist():
    import kmm.engine as e
    assert all(hasattr(e, n) for n in e.__all__)
    # kernels take plain ints: no constant of the API is an enum member
    from enum import Enum
    consts = [n for n in e.__all__ if n.isupper()]
    assert not [n for n in consts if isinstance(getattr(e, n), Enum)]


# ---- the checks catch what they should ------------------------------------------------------
BAD_MECH = '''
from .. import tlb as _tlb
from ..buddy import _P_NPAGES
from ..engine import njit, tlb_translate
from ..suite import params
import numba
from .. import walk

@njit
def k(st, path):
    _tlb.tlb_translate(st, 0, 0, 4, 12, 0, 0, st)
    x = path._out
    return walk.TableNode.FIXED + _P_NPAGES

def f(path):
    return path._out, _tlb._column
'''


@pytest.fixture
def bad():
    return "kmm.mech.bad", ast.parse(BAD_MECH)


def test_role_check_catches_a_misplaced_kernel_and_a_suite_import():
    t = ast.parse(BAD_MECH.replace("from ..", "from ..."))  # one package deeper
    model = role_problems("kmm.mech.bad.model", t)
    assert any("outside the kernels module" in p for p in model)
    assert any("imports the suite" in p for p in model)
    assert any("imports a study" in p for p in
               role_problems("kmm.mech.bad.workload", ast.parse("from .study import x\n")))
    kern = role_problems("kmm.mech.bad.kernels", t)
    assert any("kernels import kmm.buddy" in p for p in kern)
    assert not [p for p in role_problems("kmm.mech.bad.study", t) if "suite" in p]
    assert role_problems("kmm.mech.bad.helpers", t)[0].endswith("one of model, kernels, "
                                                                 "workload, study")


def test_checks_catch_a_bad_mechanism(bad):
    m, t = bad
    imp = mech_import_problems(m, t)
    assert any("imports kmm.tlb" in p for p in imp)
    assert any("private kmm.buddy._P_NPAGES" in p for p in imp)
    assert any("suite at module level" in p for p in imp)
    assert any("imports kmm.walk" in p for p in imp)
    priv = private_use_problems(m, t, None, private_engine_attributes())
    assert any("kmm.tlb._column" in p for p in priv)
    assert any("._out" in p for p in priv)
    assert "_out" in private_engine_attributes()
    ker = kernel_problems(m, t)
    assert any("reads kmm.tlb" in p for p in ker) and any("reads kmm.walk" in p for p in ker)
    assert any("reads kmm.buddy._P_NPAGES" in p for p in ker)
    assert numba_problems(m, t)
    assert engine_suite_problems(m, t)


def test_every_module_imports_first():
    """Any kmm module can be the first one a program imports (no import cycle that only
    works in one order): each is imported in turn with every ``kmm`` module unloaded."""
    import subprocess
    import sys

    mods = sorted(".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__")
                  for p in ROOT.rglob("*.py")
                  if "data" not in p.parts and p.name != "__main__.py")
    code = ("import importlib, sys\n"
            "bad = []\n"
            f"for m in {mods!r}:\n"
            "    for k in [k for k in sys.modules if k == 'kmm' or k.startswith('kmm.')]:\n"
            "        del sys.modules[k]\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except Exception as e:\n"
            "        bad.append(f'{m}: {type(e).__name__}: {e}')\n"
            "print('\\n'.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT.parent, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", out.stdout
    assert len(mods) > 50
