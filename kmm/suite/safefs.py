"""Writing result files without following links, atomically.

Every file kmm writes goes through this module. The folder a user names (``--out``,
``$KMM_DATA_DIR``, ``data/``) may itself be a symbolic link: it is the user's own. Below it,
every folder kmm creates or enters is opened with ``O_NOFOLLOW`` relative to its parent's
descriptor, and every file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under an
unpredictable temporary name (``.<name>.<pid>.<random>.tmp``) and renamed over its final name,
so a link planted at a final name, at an intermediate folder or at a guessed temporary name can
never make kmm create, truncate or append to a file elsewhere. A planted link is refused with
one line (:class:`LinkRefused`), never silently removed. Lock files and append-only logs are
opened with ``O_NOFOLLOW`` and must be regular files with a single hard link.

A kill leaves at most temporary files behind; :func:`clean_temporaries` removes those of
processes that no longer run.

What this does not defend against: someone who can write the folders kmm writes to while it
runs can still replace whole folders or rewrite results; this module only guarantees that kmm
itself never writes outside them.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import ConfigError, KmmError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: ``.<name>.<pid>.<random>.tmp``: the name of every temporary file or folder kmm creates.
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp$")


class LinkRefused(ConfigError):
    """A symbolic link where kmm writes: refused, never followed and never removed."""

    def __init__(self, path: Path | str):
        super().__init__("is a symbolic link; kmm does not write through links (remove it if "
                         "you did not make it)", _shown(path))


def _shown(path: Path | str) -> str:
    from .params import display_path

    p = Path(path)
    try:  # the folder holding the link may be resolved; the link itself never is
        return str(Path(display_path(p.parent)) / p.name)
    except (OSError, ValueError):
        return str(p)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


# ---- folders --------------------------------------------------------------------------------
def _walk(path: Path, root: Path | None, create: bool) -> int:
    """A descriptor of folder ``path``; every component below ``root`` entered without links."""
    path = Path(os.path.abspath(path))
    base = Path(os.path.abspath(root)) if root is not None else path
    try:
        rel = path.relative_to(base)
    except ValueError:
        raise KmmError(f"is not inside {base}", str(path)) from None
    try:
        if create:
            base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base, _DIR_FLAGS)
    except FileNotFoundError:
        raise KmmError("no such folder", str(base)) from None
    except OSError as e:
        raise ConfigError(f"cannot open the folder: {e.strerror or e}", str(base)) from None
    here = base
    try:
        for part in rel.parts:
            here = here / part
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            try:
                nfd = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if _is_link(part, fd):
                    raise LinkRefused(here) from None
                if e.errno == errno.ENOTDIR:
                    raise ConfigError("exists and is not a folder", str(here)) from None
                raise ConfigError(f"cannot open the folder: {e.strerror or e}",
                                  str(here)) from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def opened_dir(path: Path, root: Path | None = None, *, create: bool = True) -> Iterator[int]:
    """A descriptor of folder ``path`` (created if ``create``), closed on exit.

    ``root`` (default ``path`` itself) is the user's folder and may be a link; every component
    of ``path`` below it must be a real folder.
    """
    fd = _walk(Path(path), root, create)
    try:
        yield fd
    finally:
        os.close(fd)


def ensure_dir(path: Path, root: Path | None = None) -> Path:
    """Create folder ``path`` (and its parents below ``root``), refusing links below ``root``."""
    with opened_dir(path, root):
        pass
    return Path(path)


def check_target(path: Path) -> None:
    """Refuse ``path`` if it is a symbolic link or a folder (a file kmm is about to replace)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"cannot inspect: {e.strerror or e}", str(path)) from None
    if stat.S_ISLNK(st.st_mode):
        raise LinkRefused(path)
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a folder where kmm writes a file", str(path))


def _check_name(name: str, dir_fd: int, path: Path) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise LinkRefused(path)
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a folder where kmm writes a file", str(path))


# ---- temporary names ------------------------------------------------------------------------
def temp_name(name: str) -> str:
    """An unpredictable temporary name for ``name``: ``.<name>.<pid>.<random>.tmp``."""
    return f".{name[:180]}.{os.getpid()}.{secrets.token_hex(8)}.tmp"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_temporaries(folder: Path, *, recursive: bool = False, any_pid: bool = False) -> int:
    """Remove temporary files and folders a killed kmm left in ``folder``; return how many.

    Only kmm's own names (``.<name>.<pid>.<random>.tmp``) whose process no longer runs are
    removed (all of them with ``any_pid``, for a caller holding the folder's lock). Links are
    removed, never followed.
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and (any_pid or not _pid_alive(int(m["pid"]))):
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
        elif recursive and entry.is_dir(follow_symlinks=False):
            removed += clean_temporaries(Path(entry.path), recursive=True, any_pid=any_pid)
    return removed


def private_tempdir(parent: Path, name: str) -> Path:
    """A new folder beside ``parent/name`` only this user can enter (``tempfile.mkdtemp``)."""
    return Path(tempfile.mkdtemp(prefix=f".{name[:180]}.{os.getpid()}.", suffix=".tmp",
                                 dir=parent))


# ---- files ----------------------------------------------------------------------------------
@contextlib.contextmanager
def replacing(path: Path, *, root: Path | None = None, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Write ``path`` atomically: yield a new temporary file beside it, then rename it over
    ``path`` (after ``fsync``) if the block finishes; on an exception ``path`` is untouched.

    ``root``: see :func:`opened_dir` (default: ``path``'s folder; only ``path`` is checked).
    """
    path = Path(path)
    with opened_dir(path.parent, root if root is not None else path.parent) as dfd:
        _check_name(path.name, dfd, path)
        tmp = temp_name(path.name)
        fd = os.open(tmp, _NEW_FLAGS, mode, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            _check_name(path.name, dfd, path)
            os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise


def write_bytes(path: Path, data: bytes, *, root: Path | None = None) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`replacing`)."""
    with replacing(path, root=root) as f:
        f.write(data)
    return Path(path)


def write_text(path: Path, text: str, *, root: Path | None = None) -> Path:
    """Replace ``path`` with UTF-8 ``text`` atomically (see :func:`replacing`)."""
    return write_bytes(path, text.encode(), root=root)


def write_with(path: Path, writer: Callable[[BinaryIO], None], *, root: Path | None = None
               ) -> Path:
    """Replace ``path`` with what ``writer(file)`` writes, atomically."""
    with replacing(path, root=root) as f:
        writer(f)
    return Path(path)


def move(src: Path, dest: Path, *, root: Path | None = None) -> Path:
    """Rename file ``src`` over ``dest`` (a link at ``dest`` or below ``root`` is refused)."""
    dest = Path(dest)
    with opened_dir(dest.parent, root if root is not None else dest.parent) as dfd:
        _check_name(dest.name, dfd, dest)
        os.replace(src, dest.name, dst_dir_fd=dfd)
    return dest


def _open_existing_or_new(path: Path, flags: int, root: Path | None, what: str) -> int:
    path = Path(path)
    with opened_dir(path.parent, root if root is not None else path.parent) as dfd:
        try:
            fd = os.open(path.name, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        except OSError as e:
            if _is_link(path.name, dfd):
                raise LinkRefused(path) from None
            raise ConfigError(f"cannot open the {what}: {e.strerror or e}", str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise ConfigError(f"the {what} must be a regular file with one link", str(path))
    os.set_blocking(fd, True)
    return fd


def open_lock(path: Path, *, root: Path | None = None) -> int:
    """A read-write descriptor of lock file ``path`` (created if absent, never through a link)."""
    return _open_existing_or_new(path, os.O_RDWR, root, "lock file")


def open_append(path: Path, *, root: Path | None = None):
    """``path`` opened for appending text (created if absent, never through a link)."""
    fd = _open_existing_or_new(path, os.O_WRONLY | os.O_APPEND, root, "log")
    return os.fdopen(fd, "a", encoding="utf-8")


def read_bytes(path: Path, *, limit: int | None = None) -> bytes:
    """The bytes of regular file ``path``, read without following a link at ``path``.

    Raises ``FileNotFoundError`` if absent; :class:`LinkRefused` for a link;
    :class:`ConfigError` for anything else that is not a readable regular file.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        if os.path.islink(path):
            raise LinkRefused(path) from None
        raise ConfigError(f"cannot read: {e.strerror or e}", str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConfigError("not a regular file", str(path))
    with os.fdopen(fd, "rb") as f:
        if limit is not None and st.st_size > limit:
            raise ConfigError(f"larger than {limit} bytes", str(path))
        try:
            return f.read()
        except OSError as e:
            raise ConfigError(f"cannot read: {e.strerror or e}", str(path)) from None


def remove_tree(path: Path, *, root: Path | None = None) -> None:
    """Remove folder ``path`` and everything in it; a link at ``path`` is refused, links inside
    are removed, never followed."""
    path = Path(path)
    if not os.path.lexists(path.parent):
        return
    with opened_dir(path.parent, root if root is not None else path.parent,
                    create=False) as dfd:
        try:
            st = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise LinkRefused(path)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path.name, dir_fd=dfd)
        else:
            os.unlink(path.name, dir_fd=dfd)


__all__ = ["LinkRefused", "opened_dir", "ensure_dir", "check_target", "temp_name",
           "clean_temporaries", "private_tempdir", "replacing", "write_bytes", "write_text",
           "write_with", "move", "open_lock", "open_append", "read_bytes", "remove_tree"]
