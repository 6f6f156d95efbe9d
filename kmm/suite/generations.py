"""Published results as generations: a reader sees one whole run's results, never a mix.

Layout of a data folder ``<data>``::

    <data>/generations/<id>/             one published result set: claims/, charts/, frames/,
                                         notebooks/, provenance.json, claims.json, report.html
    <data>/current -> generations/<id>   the published generation (a symbolic link)
    <data>/report.html -> current/report.html    a stable name for each entry of a generation
    <data>/claims -> current/claims      (and charts, frames, notebooks, claims.json, ...)

:func:`building` makes the next generation in a hidden folder ``generations/.build-<id>-<random>``
that starts as hard links of every file of the current one, so unchanged files cost nothing and
stay the same files. The caller replaces what its run changed (renames only) and writes the
report there. When the block ends the folder is renamed ``generations/<id>`` and one
``rename`` of a new link over ``<data>/current`` publishes it. A kill at any instant leaves
``current`` naming a complete generation: the one before, or the new one; the next build
removes what an unfinished one left. The newest :data:`KEEP` generations are kept (the current
one always), so a reader still holding an older one can finish.

Readers resolve ``current`` once (:func:`resolve`) and read everything from that folder, so
the report, ``claims.json`` and ``kmm claims`` always describe the same generation. Results
written outside kmm's commands (a notebook run in JupyterLab records a small-run value) go into
the current generation, through :func:`resolve`, and are carried into the next; so does any
new kind of output: every entry of a generation gets its stable name.

A folder left by an older kmm (``<data>/claims/`` and the rest as plain folders) becomes the
first generation's content and is then replaced by the stable links.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, warn
from . import safefs

CURRENT = "current"
GENERATIONS = "generations"
KEEP = 3
#: The entries a published result set had before generations (moved into the first one).
RESULT_NAMES = ("claims", "charts", "frames", "notebooks", "provenance.json", "claims.json",
                "claims.parquet", "report.html")
#: Names in ``<data>`` that are never a generation's entry (they have their own rules).
RESERVED = frozenset({CURRENT, GENERATIONS, "sweeps", "bench", "README.md"})
_ID = re.compile(r"^[0-9]{6,}$")


@dataclass(frozen=True)
class Build:
    """A generation being built: write the run's results into ``dir``."""

    data: Path
    dir: Path
    id: str
    parent: Path | None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def resolve(data: Path) -> Path:
    """The folder holding ``data``'s published results: the generation ``current`` names,
    else ``data`` itself (a data folder without generations).

    Raises
    ------
    ConfigError : ``current`` exists but is not a link to an existing ``generations/<id>``
        (one line; kmm never follows it elsewhere)
    """
    data = Path(data)
    cur = data / CURRENT
    try:
        target = os.readlink(cur)
    except FileNotFoundError:
        return data
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise ConfigError("is not kmm's link to the published generation "
                              f"({GENERATIONS}/<id>); move it away", str(cur)) from None
        raise ConfigError(f"cannot read: {e.strerror or e}", str(cur)) from None
    parts = target.split("/")
    if len(parts) != 2 or parts[0] != GENERATIONS or not _ID.match(parts[1]):
        raise ConfigError(f"points to {target!r}, not to a generation ({GENERATIONS}/<id>); "
                          "kmm does not follow it", str(cur))
    for p in (data / GENERATIONS, data / target):
        st = _lstat(p)
        if st is None:
            raise ConfigError("the published generation is missing", str(p))
        if stat.S_ISLNK(st.st_mode):
            raise safefs.LinkRefused(p)
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError("is not a folder", str(p))
    return data / target


def current_id(data: Path) -> str | None:
    """The id of the published generation, or None."""
    path = resolve(data)
    return path.name if path != Path(data) else None


def _own_link(data: Path, name: str) -> bool:
    try:
        return os.readlink(data / name) == f"{CURRENT}/{name}"
    except OSError:
        return False


def check(data: Path, names: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, what would stop publishing: a ``current`` or ``generations``
    that is not kmm's, or a link kmm did not make at a stable name."""
    data = Path(data)
    gen = resolve(data)
    st = _lstat(data / GENERATIONS)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        if stat.S_ISLNK(st.st_mode):
            raise safefs.LinkRefused(data / GENERATIONS)
        raise ConfigError("is not a folder", str(data / GENERATIONS))
    entries = set(RESULT_NAMES) | set(names)
    if gen != data:
        entries |= {e.name for e in os.scandir(gen) if not e.name.startswith(".")}
    for name in sorted(entries - RESERVED):
        p = data / name
        if os.path.islink(p) and not _own_link(data, name):
            raise safefs.LinkRefused(p)


def _link_tree(src: Path, dst: Path, *, keep_existing: bool = False) -> None:
    """Hard-link every regular file under ``src`` to the same place under ``dst``.

    Hidden names (temporaries, checkpoints) and links are not carried; a filesystem without
    hard links gets copies.
    """
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        target = dst / entry.name
        if entry.is_symlink():
            warn(f"{entry.path}: a symbolic link in published results; not carried forward")
        elif entry.is_dir(follow_symlinks=False):
            with contextlib.suppress(FileExistsError):
                target.mkdir()
            _link_tree(Path(entry.path), target, keep_existing=keep_existing)
        elif entry.is_file(follow_symlinks=False):
            if keep_existing and os.path.lexists(target):
                continue
            try:
                os.link(entry.path, target, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                    raise
                shutil.copy2(entry.path, target, follow_symlinks=False)


def _next_id(gens: Path) -> str:
    ids = [int(e.name) for e in os.scandir(gens) if _ID.match(e.name)]
    return f"{max(ids, default=0) + 1:06d}"


def _legacy_entries(data: Path) -> list[Path]:
    """Result entries of ``data`` that are plain files or folders (an older layout)."""
    out = []
    for name in RESULT_NAMES:
        st = _lstat(data / name)
        if st is not None and not stat.S_ISLNK(st.st_mode):
            out.append(data / name)
    return out


def _clean(data: Path, gens: Path, current: Path | None) -> None:
    """Remove what killed builds and writers left (the caller holds the data lock)."""
    for e in os.scandir(gens):
        if e.name.startswith((".build-", ".legacy-")) and not e.is_symlink():
            shutil.rmtree(e.path, ignore_errors=True)
    safefs.clean_temporaries(data)
    if current is not None:
        safefs.clean_temporaries(current, recursive=True)


@contextlib.contextmanager
def building(data: Path) -> Iterator[Build]:
    """Build the next generation of ``data`` and publish it when the block ends.

    The caller must hold ``data``'s lock (:func:`kmm.suite.reproduce.lock`). If the block
    raises, nothing is published and the build is removed.
    """
    data = Path(data)
    check(data)
    gens = safefs.ensure_dir(data / GENERATIONS, root=data)
    parent = resolve(data)
    parent = parent if parent != data else None
    _clean(data, gens, parent)
    gid = _next_id(gens)
    bdir = gens / f".build-{gid}-{secrets.token_hex(4)}"
    bdir.mkdir()
    try:
        if parent is not None:
            _link_tree(parent, bdir)
        for entry in _legacy_entries(data):
            if entry.is_dir():
                (bdir / entry.name).mkdir(exist_ok=True)
                _link_tree(entry, bdir / entry.name, keep_existing=True)
            elif not (bdir / entry.name).exists():
                os.link(entry, bdir / entry.name)
        yield Build(data=data, dir=bdir, id=gid, parent=parent)
        _publish(data, gens, bdir, gid)
    finally:
        if bdir.exists():
            shutil.rmtree(bdir, ignore_errors=True)


def _replace_link(data: Path, name: str, target: str) -> None:
    tmp = data / safefs.temp_name(name)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, data / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish(data: Path, gens: Path, bdir: Path, gid: str) -> None:
    final = gens / gid
    os.rename(bdir, final)
    _replace_link(data, CURRENT, f"{GENERATIONS}/{gid}")
    stable_links(data)
    _prune(gens, gid)


def stable_links(data: Path) -> None:
    """Give every entry of the current generation its stable name ``<data>/<name>``.

    A plain file or folder of an older layout under that name is moved away (it was carried
    into a generation); a link kmm did not make is left alone, with a warning.
    """
    data = Path(data)
    gen = resolve(data)
    if gen == data:
        return
    names = {e.name for e in os.scandir(gen) if not e.name.startswith(".")} - RESERVED
    aside = None
    for name in sorted(names):
        p = data / name
        st = _lstat(p)
        if st is not None and stat.S_ISLNK(st.st_mode):
            if not _own_link(data, name):
                warn(f"{p}: a symbolic link kmm did not make; left alone (remove it)")
            continue
        if st is not None:  # an older layout's plain entry, already carried into a generation
            if aside is None:
                aside = data / GENERATIONS / f".legacy-{secrets.token_hex(4)}"
                aside.mkdir()
            os.rename(p, aside / name)
        _replace_link(data, name, f"{CURRENT}/{name}")
    for e in os.scandir(data):  # stable names of entries the generation no longer has
        if e.name not in names and e.is_symlink() and _own_link(data, e.name):
            os.unlink(e.path)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _prune(gens: Path, current: str) -> None:
    ids = sorted((e.name for e in os.scandir(gens)
                  if _ID.match(e.name) and e.is_dir(follow_symlinks=False)), key=int)
    keep = set(ids[-KEEP:]) | {current}
    for gid in ids:
        if gid not in keep:
            shutil.rmtree(gens / gid, ignore_errors=True)


__all__ = ["Build", "building", "resolve", "current_id", "check", "stable_links", "CURRENT",
           "GENERATIONS", "KEEP"]
