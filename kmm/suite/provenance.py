"""Where an output came from: the code, its state and the parameters, stamped on every output.

Every claim record, saved frame, chart, ``claims.json`` / ``claims.parquet`` and the report
carry the same four fields, so a number found later in a mail or a notebook can be traced to
the code and parameters that made it:

- ``kmm_version``: the package version;
- ``git_commit``: the commit of kmm's source tree, ``None`` for an installed copy outside git;
- ``git_dirty``: whether the files that decide results (``kmm/``, ``params/``, ``notebooks/``,
  ``pyproject.toml``) differ from that commit; ``None`` when unknown;
- ``params_digest``: the first 16 hex digits of the SHA-256 of the parameters as canonical
  JSON (sorted keys, no spaces), ``None`` when the output has no parameters of its own.

>>> s = stamp({"b": 2, "a": [1.5, "x"]})
>>> sorted(s)
['git_commit', 'git_dirty', 'kmm_version', 'params_digest']
>>> s["params_digest"] == digest({"a": [1.5, "x"], "b": 2})
True
>>> stamp()["params_digest"] is None
True
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__

#: The paths whose changes make results differ (the ``git_dirty`` flag looks at these only).
DECIDING_PATHS = ("kmm", "params", "notebooks", "pyproject.toml")
FIELDS = ("kmm_version", "git_commit", "git_dirty", "params_digest")


def digest(parameters: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of ``parameters`` as canonical JSON."""
    text = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _git(root: Path, *args: str) -> str | None:
    """Output of a read-only git command in kmm's own source tree, ``None`` on any failure.
    Hooks and the file-system monitor are switched off; nothing from a data folder is read."""
    git = shutil.which("git")
    if git is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    try:
        out = subprocess.run([git, "-C", str(root), "-c", "core.fsmonitor=false", *args],
                             capture_output=True, text=True, timeout=10, env=env,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def source_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the tree kmm is imported from; computed once per process."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / ".git").exists():
        return None, None
    head = _git(root, "rev-parse", "--verify", "HEAD")
    if not head:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--",
                  *DECIDING_PATHS)
    return head.strip(), None if status is None else bool(status.strip())


def stamp(parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The provenance fields (:data:`FIELDS`) for an output made with ``parameters``."""
    commit, dirty = source_state()
    return {"kmm_version": __version__, "git_commit": commit, "git_dirty": dirty,
            "params_digest": None if parameters is None else digest(parameters)}


def as_text(s: Mapping[str, Any]) -> str:
    """One line for a report footer or a text export."""
    commit = s.get("git_commit")
    code = "no git checkout" if commit is None else (
        commit[:12] + (" (modified)" if s.get("git_dirty") else "")
        + (" (state unknown)" if s.get("git_dirty") is None else ""))
    line = f"kmm {s.get('kmm_version')}, source {code}"
    return line + (f", parameters {s['params_digest']}" if s.get("params_digest") else "")
