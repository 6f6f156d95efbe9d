"""Every public name of ``kmm.*`` and ``kmm.mech.*`` stays importable with a compatible
signature.

``tests/data/public_api.json`` lists, per module, each public name (its ``__all__``, else
every name not starting with ``_`` that is not a module) with its kind and, for callables,
its parameters. A name may move (an alias where it was is enough) and a callable may gain
parameters with defaults; it may not disappear, lose or rename a parameter, or make an
optional parameter required. The suite (``kmm.suite``) has its own command-line contract
and is not listed.

    python3 tests/test_public_api.py --write   # add today's names to the snapshot
"""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "data" / "public_api.json"


def modules() -> list[str]:
    import kmm
    import kmm.mech
    out = ["kmm"]
    for pkg, prefix in ((kmm, "kmm."), (kmm.mech, "kmm.mech.")):
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_") or info.name == "suite":
                continue
            out.append(prefix + info.name)
    return sorted(set(out) - {"kmm.__main__"})


def _callable(obj):
    return getattr(obj, "py_func", obj)  # a Numba dispatcher: its Python function


def params_of(obj) -> list[list] | None:
    """[[name, kind, has default], ...] of a callable, or None if it has no signature."""
    try:
        sig = inspect.signature(_callable(obj))
    except (TypeError, ValueError):
        return None
    return [[p.name, p.kind.name, p.default is not inspect.Parameter.empty]
            for p in sig.parameters.values()]


def kind_of(obj) -> str:
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "value"


def _assigned_here(mod) -> set[str]:
    """Names a module's source binds at top level by assignment, def or class, or imports
    from a sibling mechanism module."""
    import ast
    tree = ast.parse(Path(mod.__file__).read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for e in ast.walk(t):
                    if isinstance(e, ast.Name):
                        out.add(e.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and node.level == 1 \
                and mod.__name__.startswith("kmm.mech."):
            out.update(a.asname or a.name for a in node.names)
    return out


def public_names(mod) -> list[str]:
    """The module's ``__all__``; without one, the names it defines (or takes from a sibling
    mechanism), not starting with ``_``: a name imported for the module's own use is
    not its API (it stays importable where it lives)."""
    names = getattr(mod, "__all__", None)
    if names is None:
        here = _assigned_here(mod)
        names = [n for n, v in vars(mod).items()
                 if not n.startswith("_") and not inspect.ismodule(v) and n in here]
    return sorted(names)


def describe() -> dict[str, dict[str, dict]]:
    out = {}
    for name in modules():
        mod = importlib.import_module(name)
        entry = {}
        for n in public_names(mod):
            obj = getattr(mod, n)
            d = {"kind": kind_of(obj)}
            if d["kind"] != "value":
                ps = params_of(obj)
                if ps is not None:
                    d["params"] = ps
            entry[n] = d
        out[name] = entry
    return out


def compatible(old: list[list], new: list[list]) -> str | None:
    """Why a call valid against ``old`` may fail against ``new`` (None: compatible)."""
    positional = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
    new_by_name = {p[0]: p for p in new}
    has_varkw = any(p[1] == "VAR_KEYWORD" for p in new)
    has_varpos = any(p[1] == "VAR_POSITIONAL" for p in new)
    old_pos = [p for p in old if p[1] in positional]
    new_pos = [p for p in new if p[1] in positional]
    for i, p in enumerate(old_pos):
        if i >= len(new_pos):
            if not has_varpos:
                return f"positional parameter {p[0]} is gone"
            continue
        if new_pos[i][0] != p[0] and p[1] != "POSITIONAL_ONLY":
            return f"parameter {i} was {p[0]}, is {new_pos[i][0]}"
    for p in old:
        if p[1] in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            if not any(q[1] == p[1] for q in new):
                return f"*{p[0]} is gone"
            continue
        q = new_by_name.get(p[0])
        if q is None:
            if not (has_varkw or (p[1] in positional and has_varpos)):
                return f"parameter {p[0]} is gone"
            continue
        if p[2] and not q[2]:
            return f"parameter {p[0]} lost its default"
    old_names = {p[0] for p in old}
    for q in new:
        if q[0] not in old_names and not q[2] and q[1] not in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            return f"new parameter {q[0]} has no default"
    return None


def problems(snapshot: dict, now: dict) -> list[str]:
    out = []
    for mod, names in snapshot.items():
        if mod not in now:
            out.append(f"{mod}: module gone")
            continue
        for n, d in names.items():
            cur = now[mod].get(n)
            if cur is None:
                try:
                    obj = getattr(importlib.import_module(mod), n)
                except AttributeError:
                    out.append(f"{mod}.{n}: not importable")
                    continue
                cur = {"kind": kind_of(obj)}
                ps = params_of(obj) if cur["kind"] != "value" else None
                if ps is not None:
                    cur["params"] = ps
            if d["kind"] != cur["kind"] and not (d["kind"] == "function"
                                                 and cur["kind"] == "class"):
                out.append(f"{mod}.{n}: was a {d['kind']}, is a {cur['kind']}")
            if "params" in d and "params" in cur:
                why = compatible(d["params"], cur["params"])
                if why:
                    out.append(f"{mod}.{n}: {why}")
    return out


def test_every_public_name_stays_importable_and_compatible():
    snap = json.loads(SNAPSHOT.read_text())
    assert len(snap) >= 20 and "kmm.engine" in snap and "kmm.mech.asi" in snap
    bad = problems(snap, describe())
    assert not bad, "\n".join(bad)


def test_the_compatibility_rule():
    f = [["a", "POSITIONAL_OR_KEYWORD", False], ["b", "POSITIONAL_OR_KEYWORD", True]]
    assert compatible(f, f) is None
    assert compatible(f, f + [["c", "KEYWORD_ONLY", True]]) is None
    assert "no default" in compatible(f, f + [["c", "KEYWORD_ONLY", False]])
    assert "gone" in compatible(f, f[:1])
    assert "lost its default" in compatible(f, [f[0], ["b", "POSITIONAL_OR_KEYWORD", False]])
    assert "was b" in compatible(f, [f[0], ["x", "POSITIONAL_OR_KEYWORD", True], f[1]])
    snap = {"kmm.tlb": {"no_such_name": {"kind": "value"}}}
    assert problems(snap, {"kmm.tlb": {}}) == ["kmm.tlb.no_such_name: not importable"]


if __name__ == "__main__":
    sys.path.insert(0, str(SNAPSHOT.parent.parent.parent))  # this tree's kmm
    if "--write" in sys.argv:
        old = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.is_file() else {}
        now = describe()
        bad = problems(old, now)
        if bad:
            sys.exit("refusing to write: the snapshot's names are not all compatible:\n"
                     + "\n".join(bad))
        merged = {m: {**old.get(m, {}), **now.get(m, {})} for m in sorted(set(old) | set(now))}
        SNAPSHOT.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
        print(f"wrote {sum(map(len, merged.values()))} names of {len(merged)} modules")
