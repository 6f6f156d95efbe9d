"""``kmm params export``: a params file's scenario as the flat YAML papermill takes.

papermill's ``-f FILE`` injects a YAML file's top-level keys as variables, so it needs one
``name: value`` line per parameter; kmm's ``params/<stem>.yaml`` is structured (specs with
sources and ranges, variants, grids) and each notebook refuses it. ``kmm params export STEM
[--variant V] [--out FILE]`` writes the published scenario (or a variant of it), every value
checked as ``kmm run --params`` checks it, plus ``scenario`` labelled as ``kmm run`` labels it
(``published`` or the variant's name)::

    kmm params export ktr --out ktr.params.yaml
    papermill notebooks/ktr.ipynb out.ipynb -f ktr.params.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import argtypes


def flat_parameters(path: Path, variant: str | None = None) -> tuple[dict[str, Any], str]:
    """The checked values of a params file's scenario (or variant) and their label."""
    from . import params as P

    pf = P.load(path)
    values = pf.variant(variant) if variant else pf.scenario()
    label = variant or "published"
    values = pf.validate_values(values, f"{pf.where}: ")
    return {**values, "scenario": label}, label


def render(values: dict[str, Any], header: str) -> str:
    """``values`` as papermill parameters YAML (safe dump, one key per line), after a comment."""
    import yaml

    from .params import safe_load

    body = yaml.safe_dump(values, sort_keys=False, allow_unicode=True, default_flow_style=None,
                          width=100)
    if safe_load(body, "kmm params export") != values:  # pragma: no cover - a YAML corner
        raise ConfigError("the values do not survive a YAML round trip", "kmm params export")
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + body


def handle(args) -> int:
    from .claims import atomic_write_text
    from .params import display_path, project_root

    root = project_root()
    path = root / "params" / f"{args.stem}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in (root / "params").glob("*.yaml"))) or "none"
        raise ConfigError(f"no params file params/{args.stem}.yaml (params files: {known})",
                          "STEM")
    values, label = flat_parameters(path, args.variant)
    from . import params as P

    notebook = display_path(P.load(path).notebook)
    what = f"variant {args.variant} of" if args.variant else "the published scenario of"
    header = (f"papermill parameters: {what} params/{args.stem}.yaml, written by\n"
              f"kmm params export {args.stem}{f' --variant {args.variant}' if args.variant else ''}"
              f". Run it with\n  papermill {notebook} OUT.ipynb -f THIS_FILE\n"
              f"(kmm run {args.stem} --params params/{args.stem}.yaml"
              f"{f' --variant {args.variant}' if args.variant else ''} does the same with kmm's "
              "checks and\nresults folder).")
    text = render(values, header)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError("is a folder; give a file name", f"--out {out}")
    if not out.parent.is_dir():
        raise ConfigError("its folder does not exist", f"--out {out}")
    atomic_write_text(out, text)
    print(display_path(out))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("params", help="params files as papermill parameters",
                              description="Params files in other forms: `kmm params export "
                              "STEM` writes params/STEM.yaml's scenario as the flat YAML that "
                              "papermill -f takes (papermill cannot read the structured file).")
    sub = p.add_subparsers(dest="params_command", metavar="SUBCOMMAND",
                           parser_class=type(p))
    sub.required = True
    e = sub.add_parser("export", help="write a params file's scenario as flat papermill YAML",
                       description="Write the published scenario of params/STEM.yaml (or one "
                       "of its variants) as papermill parameters: one `name: value` per line, "
                       "each value checked, and `scenario` labelled as kmm run labels it.")
    e.add_argument("stem", metavar="STEM", type=argtypes.name,
                   help="a params file's stem (ktr for params/ktr.yaml)")
    e.add_argument("--variant", type=argtypes.name, metavar="NAME",
                   help="one of the file's variants instead of the published scenario")
    e.add_argument("--out", type=argtypes.path, metavar="FILE",
                   help="file to write (default: standard output)")
    e.set_defaults(handler=handle)
