"""The ``kmm`` command: run a notebook, print the claims table, reproduce everything.

::

    kmm run NOTEBOOK [-p key=value | -p key value ...] [--params FILE] [--variant NAME] [--out DIR]
    kmm claims [--format table|text|markdown|json] [--scenario NAME]
    kmm reproduce [--only STEM ...] [--jobs N]
    kmm sweep / bench / trace / params ...   (registered by kmm.suite.sweep, .bench, .tracecmd,
                                              .capturecmd for trace capture|info|verify|scenarios,
                                              .paramscmd)

Exit status: 0 on success; 1 when a notebook failed to run; 2 for a user mistake (a bad
argument, params file, value or path), printed as one line ``kmm: error: <where>: <problem>``
with no traceback. Heavy modules (papermill, polars, altair) are imported by the commands
that need them, so ``kmm --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..errors import ConfigError, KmmError, RunFailed
from . import argtypes

PROG = "kmm"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with kmm's one-line errors."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.replace(f"{PROG} ", "", 1) if self.prog != PROG else "arguments"
        print(f"{PROG}: error: {where}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# ---- kmm run --------------------------------------------------------------------------------
def _resolve_notebook(arg: str, root: Path) -> Path:
    """``NOTEBOOK`` as a path, or as a stem/name in ``<root>/notebooks``."""
    if not arg or "\0" in arg or "\n" in arg or "\r" in arg:
        raise ConfigError("must be a notebook name or path without NUL or newline characters",
                          "NOTEBOOK")
    p = Path(arg)
    candidates = [p]
    if not p.is_absolute() and len(p.parts) == 1:
        name = p.name if p.suffix == ".ipynb" else f"{p.name}.ipynb"
        candidates.append(root / "notebooks" / name)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    if p.suffix and p.suffix != ".ipynb":
        raise ConfigError("not a notebook (expected a .ipynb file or a notebook name)", arg)
    raise ConfigError(f"no such notebook (looked for {', '.join(str(c) for c in candidates)})", arg)


def _shown(text: str, limit: int = 60) -> str:
    """``text`` fit for a one-line message: quoted if it holds unprintable characters."""
    short = text if len(text) <= limit else text[:limit - 3] + "..."
    return short if short.isprintable() else repr(short)


def _override(item: str | Sequence[str]) -> tuple[str, str, str]:
    """One ``-p``: ``key=value`` (kmm's form) or ``key value`` (papermill's form), as
    ``(key, value text, the argument as shown in messages)``."""
    parts = [item] if isinstance(item, str) else list(item)
    shown = _shown(" ".join(parts))
    if len(parts) == 2 and "=" not in parts[0]:
        return parts[0].strip(), parts[1], shown
    if len(parts) == 1:
        key, sep, text = parts[0].partition("=")
        if sep and key.strip():
            return key.strip(), text, shown
    raise ConfigError("expected key=value or key value (one parameter per -p)", f"-p {shown}")


def _parse_overrides(items: Sequence[str | Sequence[str]]) -> dict[str, Any]:
    from .params import parse_cli_value

    out: dict[str, Any] = {}
    for item in items:
        key, text, shown = _override(item)
        if not key:
            raise ConfigError("expected key=value or key value", f"-p {shown}")
        if not key.isidentifier() or len(key) > 100:
            raise ConfigError("the key must be a parameter name (letters, digits, _)",
                              f"-p {_shown(key)}")
        if key in out:
            raise ConfigError("given twice", f"-p {key}")
        out[key] = parse_cli_value(text, f"-p {key}")
    return out


def check_writable_dir(path: Path, what: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there; ConfigError if not."""
    import tempfile

    where = f"{what} {path}"
    if path.exists() and not path.is_dir():
        raise ConfigError("exists and is not a folder", where)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # a nameless file: no name to plant a link at
            pass
    except OSError as e:
        raise ConfigError(f"not writable: {e.strerror or e}", where) from None
    return path


def plan_run(args: argparse.Namespace, root: Path) -> tuple[Path, dict[str, Any], str]:
    """Validate a ``kmm run`` request: ``(notebook, parameters, label)``, nothing run yet.

    The label names the executed copy and the notebook's ``scenario``: ``published`` for a
    params file's scenario as published, the variant's name for ``--variant``, ``small`` for
    the notebook's own defaults, ``custom-<hash>`` when ``-p`` overrides anything.
    """
    from ..config import config_hash
    from . import params as P

    notebook = _resolve_notebook(args.notebook, root)
    overrides = _parse_overrides(args.param or [])
    pf = None
    own = root / "params" / f"{notebook.stem}.yaml"
    published = "published"
    if args.params is not None:
        pf = P.load(args.params)
        if pf.notebook != notebook:
            raise ConfigError(f"is the params file of {pf.notebook.name}, not of {notebook.name}",
                              str(args.params))
        if not _same_file(Path(args.params), own):
            # a scenario from elsewhere is never presented as the published one
            stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(args.params).stem)[:40]
            published = f"file-{stem}-{_file_digest(pf)[:8]}"
    else:
        implicit = root / "params" / f"{notebook.stem}.yaml"
        if implicit.is_file() and implicit.resolve().parent.parent == notebook.parent.parent:
            pf = P.load(implicit)
    if pf is not None:
        if args.variant:
            values, label = pf.variant(args.variant), args.variant
        elif args.params is not None:
            values, label = pf.scenario(), published
        else:
            values, label = {}, None
        checked = pf.validate_values(overrides, "-p ")
    else:
        if args.variant:
            raise ConfigError(f"needs a params file (no params/{notebook.stem}.yaml)", "--variant")
        values, label = {}, None
        checked = P.check_values(overrides, P.notebook_parameters(notebook), {}, "-p ",
                                 notebook=f"{notebook.name}'s parameters cell",
                                 schemas=P.notebook_schemas(notebook))
    if label is None:
        label = str(P.notebook_parameters(notebook).get("scenario", "small"))
    if {k: v for k, v in checked.items() if k != "scenario"}:
        label = "custom-" + config_hash({"base": label, "values": {**values, **checked}})[:8]
    values = {**values, **checked}
    if "scenario" in checked:
        label = str(checked["scenario"])
        if label == "published":
            raise ConfigError("'published' is reserved for a params file's scenario as published "
                              "(use --params FILE without -p)", "-p scenario")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", label) or label.startswith("."):
        raise ConfigError(f"must be a plain name (letters, digits, _ . -), got {label!r}",
                          "-p scenario" if "scenario" in checked else "--variant")
    values["scenario"] = label
    return notebook, values, label


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.is_file() and os.path.samefile(a, b)
    except OSError:
        return False


def _file_digest(pf) -> str:
    """Hash of a params file's published scenario and the notebook it names."""
    from ..config import config_hash

    return config_hash({"notebook": pf.notebook.name, "values": pf.scenario()})


def executed_name(stem: str, label: str) -> str:
    """File name of an executed copy: ``<stem>.ipynb`` when published, else ``<stem>.<label>.ipynb``."""
    return f"{stem}.ipynb" if label == "published" else f"{stem}.{label}.ipynb"


def cmd_run(args: argparse.Namespace) -> int:
    """Run one notebook. Its results are written to a staging folder and published (as a new
    generation of the data folder) only if it finishes, so a failed run leaves no partial
    results. A run of a params file's published scenario also refreshes the report."""
    from . import reproduce
    from .params import display_path, project_root

    root = project_root()
    notebook, values, label = plan_run(args, root)
    out_dir = check_writable_dir(Path(args.out), "--out") if args.out else None
    data = check_writable_dir(reproduce.data_folder(root), "data folder")
    shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
    print(f"running {display_path(notebook)} ({shown})", file=sys.stderr, flush=True)
    from . import progress

    if note := progress.cold_cache_note():
        progress.say(note)
    with progress.cells(notebook.stem):
        out = reproduce.run_one(notebook, values, label, root=root, data=data, out_dir=out_dir,
                                timeout=args.timeout)
    print(out)
    return EXIT_OK


# ---- kmm claims -----------------------------------------------------------------------------
def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _said_by(src: dict | None) -> str:
    """Who made a claim and when, from its citation (``kmm/data/sources.yaml``)."""
    if not src:
        return "-"
    who = src.get("said_by") or src.get("author", "?")
    return f"{who}, {src.get('date', '?')}"


def format_claims(rows: list[dict], sources: bool = False) -> str:
    """The claims table as fixed-width text, one line per claim.

    Rows that carry their citation get a ``said by`` column (author and date); with
    ``sources`` the full citation of each claim (list, subject, date, archive link) follows
    the table.
    """
    from .report import converged_text, decided_text, format_value

    cited = any("source" in r for r in rows)
    head = ("id", "verdict", "basis", "converged", "share", "decided by", "value", "band") \
        + (("said by",) if cited else ())
    lines = [(r["id"], r["verdict"], r.get("basis") or "-",
              {None: "-", True: "yes", False: "no"}.get(r.get("converged"), "-"),
              "-" if r.get("share_in_band") is None else f"{r['share_in_band']:.0%}",
              _short(decided_text(r.get("decided_by")), 30),
              _short(format_value(r["value"], r.get("unit", "")), 28), _short(r["band"], 44))
             + ((_said_by(r.get("source")),) if cited else ())
             for r in rows]
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*head).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    out += [fmt.format(*x).rstrip() for x in lines]
    rests = [f"{r['id']}: {r['basis']}: {r['rests_on']}" for r in rows
             if r.get("rests_on") and r.get("value") is not None]
    if rests:
        out += ["", "What structural verdicts rest on (the model could not contradict them):"]
        out += rests
    unconv = [f"{r['id']}: {converged_text(r)}" for r in rows if r.get("converged") is False]
    out += (["", "Not converged:"] + unconv) if unconv else []
    if sources:
        out += ["", "Sources (who said it, where):"]
        out += [f"{r['id']}: {r['cited']}" for r in rows if r.get("cited")]
    return "\n".join(out)


def format_claims_text(rows: list[dict]) -> str:
    """Every claim as a block of ``label: text`` lines, nothing cut (for a mail)."""
    from .report import claim_fields

    blocks = []
    for r in rows:
        fields = claim_fields(r)
        width = max(len(k) for k, _ in fields)
        blocks.append("\n".join([f"{r['id']} ({r['mechanism']})"]
                                + [f"  {k + ':':{width + 1}} {v}" for k, v in fields]))
    return "\n\n".join(blocks)


def format_claims_markdown(rows: list[dict]) -> str:
    """A summary table and a section per claim in Markdown, nothing cut."""
    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    from .report import claim_fields, decided_text, format_value

    out = ["| id | verdict | value | band | decided by |", "|---|---|---|---|---|"]
    out += [f"| {r['id']} | {cell(r['verdict'])} | {cell(format_value(r['value'], r.get('unit', ''), limit=None))}"
            f" | {cell(r['band'])} | {cell(decided_text(r.get('decided_by')))} |" for r in rows]
    for r in rows:
        out += ["", f"### {r['id']}: {cell(r['statement'])}", ""]
        out += [f"- **{k}**: {cell(v)}" for k, v in claim_fields(r)[1:]]
    return "\n".join(out)


def cmd_claims(args: argparse.Namespace) -> int:
    from . import claims

    rows = claims.table(scenario=args.scenario)
    fmt = "json" if args.json else args.format
    if fmt == "json":
        print(json.dumps(rows, indent=1, default=str))
    elif fmt == "text":
        print(format_claims_text(rows))
    elif fmt == "markdown":
        print(format_claims_markdown(rows))
    else:
        print(format_claims(rows, sources=args.sources))
    return EXIT_OK


# ---- kmm reproduce --------------------------------------------------------------------------
def cmd_reproduce(args: argparse.Namespace) -> int:
    from . import reproduce

    return reproduce.main(only=args.only, jobs=args.jobs, timeout=args.timeout)


# ---- the parser -----------------------------------------------------------------------------
def _register_optional(sub, module: str) -> None:
    """Let ``kmm.suite.<module>`` add its command, if that module exists."""
    name = f"kmm.suite.{module}"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return
        raise
    add = getattr(mod, "add_parser", None)
    if callable(add):
        add(sub)


OWN_COMMANDS = ("run", "claims", "reproduce")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``kmm`` parser. The sweep and bench commands are registered by their modules, which
    are imported only when ``argv`` does not name one of this module's own commands."""
    ap = _Parser(prog=PROG, description="Model Linux kernel memory-mapping mechanisms and test "
                 "their published claims.")
    from .. import __version__

    ap.add_argument("--version", action="version", version=f"kmm {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("run", help="execute one notebook with papermill",
                       description="Execute one notebook. Without --params it runs at the "
                       "notebook's own small defaults; --params runs a params file's published "
                       "scenario, --variant one of its variants; -p overrides single values "
                       "(YAML syntax, checked against the notebook's types and the params "
                       "file's ranges and choices). The executed copy goes to --out.")
    p.add_argument("notebook", metavar="NOTEBOOK", type=argtypes.text,
                   help="a notebook file, or a name in notebooks/ (ktr or ktr.ipynb)")
    p.add_argument("-p", "--param", action="append", nargs="+",
                   metavar=("KEY=VALUE|KEY", "VALUE"),
                   help="override one parameter (repeatable), as -p key=value or, as papermill "
                   "takes it, -p key value; VALUE is read as YAML: 4, 2.5, true, [1, 2], text")
    p.add_argument("--params", type=argtypes.path, metavar="FILE",
                   help="params file whose published scenario to run (params/<stem>.yaml)")
    p.add_argument("--variant", type=argtypes.name, metavar="NAME",
                   help="a variant of the params file")
    p.add_argument("--out", type=argtypes.path, metavar="DIR",
                   help="folder for the executed copy (default data/notebooks)")
    p.add_argument("--timeout", type=argtypes.seconds, metavar="SECONDS",
                   help="time limit per cell (default: none)")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("claims", help="print the claims table with computed verdicts",
                       description="Print every claim kmm evaluates with the value it recorded, "
                       "its band, the verdict computed from them and who made the claim.")
    p.add_argument("--format", choices=("table", "text", "markdown", "json"), default="table",
                   help="table: one line per claim (long fields shortened); text: every field "
                   "of every claim, nothing cut (for a mail); markdown: a summary table and a "
                   "section per claim; json: every field as a JSON list")
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument("--scenario", type=argtypes.name, metavar="NAME",
                   help="only this scenario's records (e.g. small); default: the published "
                   "ones, a small run's value where a claim has none")
    p.add_argument("--sources", action="store_true",
                   help="after the table, cite each claim's message: author, subject, list, "
                   "date, archive link")
    p.set_defaults(handler=cmd_claims)

    p = sub.add_parser("reproduce", help="run every notebook's published scenario and write the report",
                       description="Execute every notebook that has a params/*.yaml with its "
                       "published scenario, in parallel, then write data/claims.json and the "
                       "self-contained data/report.html. Exits 1 only if a notebook failed to run.")
    p.add_argument("--only", nargs="+", type=argtypes.name, metavar="STEM",
                   help="run only these notebooks (params stems)")
    p.add_argument("--jobs", type=argtypes.int_in(1, 256), default=2, metavar="N",
                   help="notebooks run in parallel (default 2)")
    p.add_argument("--timeout", type=argtypes.seconds, metavar="SECONDS",
                   help="time limit per cell (default: none)")
    p.set_defaults(handler=cmd_reproduce)

    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    if not words or words[0] not in OWN_COMMANDS:
        # `kmm trace capture|info|verify|scenarios` (real kernel traces) or `kmm trace FILE`
        capture = words[:1] == ["trace"] and words[1:2] in (["capture"], ["info"], ["verify"],
                                                               ["scenarios"])
        for module in ("sweep", "bench", "capturecmd" if capture else "tracecmd", "paramscmd"):
            _register_optional(sub, module)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kmm``; returns the exit status."""
    try:
        args = build_parser(argv).parse_args(argv)
        return int(args.handler(args) or 0)
    except RunFailed as e:
        print(f"{PROG}: error: {e.line()}", file=sys.stderr)
        return EXIT_FAILED
    except KmmError as e:
        print(f"{PROG}: error: {e.line()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kmm claims | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as e:  # a full disk, a vanished folder: the work stopped, not the user
        if os.environ.get("KMM_DEBUG"):
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - a bug still gets one line; KMM_DEBUG=1 shows it
        if os.environ.get("KMM_DEBUG"):
            raise
        text = " ".join(str(e).split())[:300]
        print(f"{PROG}: error: internal error ({type(e).__name__}: {text}); "
              f"rerun with KMM_DEBUG=1 for the traceback", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
