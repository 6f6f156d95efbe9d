"""How many lines of each mechanism are plumbing: parameters, claims and sweeps.

    python3 tests/plumbing_lines.py              # the working tree
    python3 tests/plumbing_lines.py --rev REV    # a revision (a single kmm/mech/<m>.py or a
                                                 # package kmm/mech/<m>/, whichever it has)
    python3 tests/plumbing_lines.py --compare    # the pre-package revision and the tree

A mechanism's files are ``kmm/mech/<m>.py`` (before the packages) or every ``*.py`` of
``kmm/mech/<m>/`` (after); the model shared by ktr and pkvm (``kmm/mech/host/``, which was part
of ``kmm/mech/ktr.py`` before) is its own row. The suite's study protocol
(``kmm/suite/study.py``) is classified by the same rule and shown as its own row: plumbing that
moved there counts as the suite's, not a mechanism's.

The rule (the same at every revision). The units are the top-level statements of a file and
the statements of a class body. Line spans run from a definition's first decorator to its
last line; blank and comment lines between units belong to none.

1. A unit is plumbing as a whole when its name says its role is plumbing:

   - parameters: the constants ``DEFAULTS``, ``NOTEBOOK_KEYS``, ``NOTEBOOK_PARAMS``,
     ``_LIST_PARAMS`` and any upper-case name containing ``ASSUMED``; the functions
     ``params_from``, ``params_path``, ``params`` (the suite's), ``check_params``,
     ``check_choice_*`` and any ``*_params`` (parameter copies and conversions);
   - sweeps: a function whose name contains ``sweep`` or ``swing`` and that builds sweep
     points (a dict literal with the keys ``"params"`` and ``"value"``) or calls a sweep
     helper (below); any ``*_specs`` or ``assumed*`` function (the ranges a sweep samples);
   - "decided by": ``decided_by``, ``most_influential``, ``dominant_parameter``;
   - convergence: any name containing ``replicates``, ``replicate_`` or ending in
     ``replicate`` (not ``replicated``: the replicated bytes of a model are content);
   - claims and recording: ``claim_values``, ``claim_numbers``, ``claim_specs``,
     ``CLAIM_COLUMNS``, ``CHARTS``, ``STUDY``, ``evidence``, ``evidence_from``, ``per_claim``,
     ``*_evidence``, ``EVIDENCE_*``, ``sweep_records``, ``record*``, ``computed``,
     ``_computed``, ``Computed``, ``Evidence``, ``Study``, ``finish``, ``evaluate``,
     ``cached``, ``studies``; in the suite also ``one_at_a_time``, ``evaluate_points``,
     ``joint_sweep``, ``grid``, ``REPLICATE_SEEDS`` (the helpers below).

2. In any other unit, a statement is plumbing when it calls a plumbing helper: the suite's
   ``joint_sweep``, ``one_at_a_time``, ``evaluate_points``, ``grid``, ``per_claim``,
   ``replicate_plan``, ``replicates_from``, ``evidence_from``, ``most_influential``,
   ``decided_by``, ``Evidence``, ``Study``, ``record``/``claims.record``, ``params_from``,
   ``latin_hypercube``. The statement counted is the innermost simple statement (an
   assignment, a return, an expression) holding the call; so is the innermost simple
   statement that builds sweep points (a dict literal with the keys ``"params"`` and
   ``"value"``). A dict entry whose key is ``"sweep"``, ``"swings"``, ``"decided_by"``,
   ``"replicates"``, ``"deterministic"``, ``"centre"`` or ``"basis"`` is plumbing too (its
   lines).

3. Explanations are not plumbing: the lines of the value of an ``"explanation"`` dict entry
   and of the explanation argument of ``Evidence(...)`` (third positional or
   ``explanation=``) are content wherever they stand, since each is a claim's sentence
   written for that claim.

Docstrings and comments inside a unit count with the unit. The totals are every line of the
files. The rule is read off the AST: no file lists, no line ranges; a reviewer can check each
unit with ``--units``.
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MECHANISMS = ("asi", "bbml2", "bbml2_perf", "ktr", "permvmalloc", "pkvm")
#: The last revision with one file per mechanism (the packages came in fc45ccb).
BEFORE = "fc45ccb^"

_PARAM_CONSTANTS = re.compile(
    r"^(DEFAULTS|NOTEBOOK_KEYS|NOTEBOOK_PARAMS|_LIST_PARAMS|[A-Z_0-9]*ASSUMED[A-Z_0-9]*)$")
_PARAM_FUNCTIONS = re.compile(
    r"^(params_from|params_path|params|check_params|check_choice_\w+|\w+_params)$")
_SPEC_NAMES = re.compile(r"^(\w+_specs|assumed\w*)$")
_DECIDED_NAMES = re.compile(r"^(decided_by|most_influential|dominant_parameter)$")
_REPLICATE_NAMES = re.compile(r"replicate(s|_|$)|REPLICATE_")
_CLAIM_NAMES = re.compile(
    r"^(claim_values|claim_numbers|claim_specs|CLAIM_COLUMNS|CHARTS|STUDY|evidence"
    r"|evidence_from|per_claim|_?\w*_evidence|EVIDENCE_\w+|sweep_records|record\w*|_?computed"
    r"|Computed|Evidence|Study|finish|evaluate|cached|studies)$")
#: Names that are plumbing only in the suite's protocol module (a mechanism's function of the
#: same name is judged by rule 1's sweep test).
_SUITE_NAMES = re.compile(r"^(one_at_a_time|evaluate_points|joint_sweep|grid|REPLICATE_SEEDS)$")
_SWEEP_HELPERS = {"joint_sweep", "one_at_a_time", "evaluate_points", "per_claim", "grid",
                  "latin_hypercube", "replicate_plan", "replicates_from"}
_HELPERS = _SWEEP_HELPERS | {"evidence_from", "most_influential", "decided_by", "Evidence",
                             "Study", "record", "params_from"}
_PLUMBING_KEYS = {"sweep", "swings", "decided_by", "replicates", "deterministic", "centre",
                  "basis"}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _called(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            out.add(f.id if isinstance(f, ast.Name) else
                    f.attr if isinstance(f, ast.Attribute) else "")
    return out


def _builds_points(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Dict):
            keys = {k.value for k in n.keys if isinstance(k, ast.Constant)}
            if {"params", "value"} <= keys:
                return True
    return False


def _span(node: ast.AST) -> range:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return range(first, node.end_lineno + 1)


def _role(node: ast.AST, suite: bool) -> str | None:
    """Rule 1: the role of a whole unit, or None."""
    name = _name(node)
    if name is None:
        return None
    is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    if (_PARAM_FUNCTIONS if is_def else _PARAM_CONSTANTS).match(name):
        return "params"
    if is_def and _SPEC_NAMES.match(name):
        return "sweep"
    if is_def and re.search("sweep|swing", name) and (
            _builds_points(node) or _called(node) & _SWEEP_HELPERS):
        return "sweep"
    if _DECIDED_NAMES.match(name):
        return "decided_by"
    if _REPLICATE_NAMES.search(name):
        return "replicates"
    if _CLAIM_NAMES.match(name) or (suite and _SUITE_NAMES.match(name)):
        return "claims"
    return None


def _explanation_lines(node: ast.AST) -> set[int]:
    """Rule 3: the lines of explanations within ``node``."""
    out: set[int] = set()
    for n in ast.walk(node):
        vals = []
        if isinstance(n, ast.Dict):
            vals = [v for k, v in zip(n.keys, n.values)
                    if isinstance(k, ast.Constant) and k.value == "explanation"]
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Evidence":
            vals = n.args[2:3] + [k.value for k in n.keywords if k.arg == "explanation"]
        for v in vals:
            out.update(range(v.lineno, v.end_lineno + 1))
    return out


def _partial_lines(node: ast.AST) -> set[int]:
    """Rule 2: the plumbing statements and dict entries of a unit that is not plumbing."""
    out: set[int] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.stmt) and not isinstance(
                n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For,
                    ast.While, ast.With, ast.Try)) and (_called(n) & _HELPERS
                                                        or _builds_points(n)):
            out.update(range(n.lineno, n.end_lineno + 1))
        if isinstance(n, ast.Dict):
            for k, v in zip(n.keys, n.values):
                if isinstance(k, ast.Constant) and k.value in _PLUMBING_KEYS:
                    out.update(range(k.lineno, v.end_lineno + 1))
    return out


def _units(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and _role(node, False) is None:
            # a class that is not plumbing as a whole: its body statements are the units
            # (the class line and its docstring belong to none)
            yield from node.body
        else:
            yield node


def classify(source: str, suite: bool = False) -> dict:
    """``{"total", "plumbing", "by_role": {role: lines}, "units": [(name, role, lines)]}`` of
    one file's source."""
    tree = ast.parse(source)
    plumbing: set[int] = set()
    by_role: dict[str, int] = {}
    units = []
    for node in _units(tree):
        role = _role(node, suite)
        if role is not None:
            lines = set(_span(node))
        else:
            lines, role = _partial_lines(node), "statements"
        lines -= _explanation_lines(node)
        if lines:
            plumbing |= lines
            by_role[role] = by_role.get(role, 0) + len(lines)
            units.append((_name(node) or type(node).__name__, role, len(lines)))
    return {"total": len(source.splitlines()), "plumbing": len(plumbing), "by_role": by_role,
            "units": units}


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout


def sources(rev: str | None, mechanism: str) -> dict[str, str]:
    """``{path: source}`` of a mechanism (or ``host``, or ``suite``: the protocol module) at
    ``rev`` (None: the working tree)."""
    if mechanism == "suite":
        paths = ["kmm/suite/study.py"]
    elif rev is None:
        pkg = ROOT / "kmm" / "mech" / mechanism
        paths = ([str(p.relative_to(ROOT)) for p in sorted(pkg.glob("*.py"))] if pkg.is_dir()
                 else [f"kmm/mech/{mechanism}.py"])
    else:
        listed = _git("ls-tree", "-r", "--name-only", rev, "kmm/mech/").split()
        paths = [p for p in listed if p == f"kmm/mech/{mechanism}.py"
                 or (p.startswith(f"kmm/mech/{mechanism}/") and p.endswith(".py")
                     and p.count("/") == 3)]
    out = {}
    for p in paths:
        if rev is None:
            f = ROOT / p
            if f.exists():
                out[p] = f.read_text()
        else:
            try:
                out[p] = _git("show", f"{rev}:{p}")
            except subprocess.CalledProcessError:
                pass
    return out


def measure(rev: str | None = None) -> dict[str, dict]:
    """Per mechanism (and ``host``, ``suite``): ``{"total", "plumbing", "by_role", "units"}``,
    summed over its files."""
    out = {}
    for m in (*MECHANISMS, "host", "suite"):
        agg = {"total": 0, "plumbing": 0, "by_role": {}, "units": []}
        for path, src in sources(rev, m).items():
            c = classify(src, suite=(m == "suite"))
            agg["total"] += c["total"]
            agg["plumbing"] += c["plumbing"]
            for r, n in c["by_role"].items():
                agg["by_role"][r] = agg["by_role"].get(r, 0) + n
            agg["units"] += [(f"{path}:{u}", r, n) for u, r, n in c["units"]]
        out[m] = agg
    return out


def _table(res: dict, label: str) -> list[str]:
    rows = [f"{label}", f"  {'mechanism':<12} {'total':>7} {'plumbing':>9} {'share':>7}  by role"]
    tot = plb = 0
    for m, r in res.items():
        if m == "suite":
            continue
        share = r["plumbing"] / r["total"] if r["total"] else 0.0
        roles = ", ".join(f"{k} {v}" for k, v in sorted(r["by_role"].items()))
        rows.append(f"  {m:<12} {r['total']:>7} {r['plumbing']:>9} {share:>7.1%}  {roles}")
        tot += r["total"]
        plb += r["plumbing"]
    rows.append(f"  {'mechanisms':<12} {tot:>7} {plb:>9} {plb / max(tot, 1):>7.1%}")
    s = res["suite"]
    rows.append(f"  {'suite':<12} {s['total']:>7} {s['plumbing']:>9}"
                f" {s['plumbing'] / max(s['total'], 1):>7.1%}  (kmm/suite/study.py: plumbing "
                f"moved out of the mechanisms counts here, not above)")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", help="a git revision (default: the working tree)")
    ap.add_argument("--compare", action="store_true",
                    help=f"the pre-package revision ({BEFORE}) and then the working tree")
    ap.add_argument("--units", action="store_true", help="list every plumbing unit")
    a = ap.parse_args(argv)
    runs = [(BEFORE, measure(BEFORE)), (None, measure())] if a.compare else \
        [(a.rev, measure(a.rev))]
    for rev, res in runs:
        print("\n".join(_table(res, f"at {rev or 'the working tree'}")))
        if a.units:
            for m, r in res.items():
                for u, role, n in r["units"]:
                    print(f"    {m:<12} {role:<11} {n:>4}  {u}")
    if a.compare:
        before, after = runs[0][1], runs[1][1]
        print("plumbing lines, before -> after (ktr's before includes the host model it held)")
        for m in (*MECHANISMS, "host"):
            b, n = before[m]["plumbing"], after[m]["plumbing"]
            print(f"  {m:<12} {b:>5} -> {n:>5}  ({(n - b) / b:+.0%})" if b else
                  f"  {m:<12} {b:>5} -> {n:>5}")
        bt = sum(before[m]["plumbing"] for m in (*MECHANISMS, "host"))
        at = sum(after[m]["plumbing"] for m in (*MECHANISMS, "host"))
        print(f"  {'total':<12} {bt:>5} -> {at:>5}  ({(at - bt) / bt:+.0%}); suite "
              f"{before['suite']['plumbing']} -> {after['suite']['plumbing']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
