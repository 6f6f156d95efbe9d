"""A generated initramfs: busybox-static, kmm's guest program, the scenario's kernel modules
and Debian userspace, and an ``/init`` script, as a deterministic gzip'd cpio ("newc").

Every member has mtime 0, uid/gid 0 and a sorted position, and gzip's header time is 0, so the
same inputs give the same bytes. Module dependencies come from each ``.ko``'s ``.modinfo``
section (the Debian package ships no ``modules.dep``); ``modules.dep`` and ``modules.alias``
are written for busybox ``modprobe`` and the kernel's ``request_module``.
"""
from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

from ..errors import KmmError


class Cpio:
    """An in-memory newc archive of directories, files and symlinks."""

    def __init__(self):
        self.entries: dict[str, tuple[int, bytes]] = {}

    def dir(self, path: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), (0o040755, b""))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        if "/" in path:
            self.dir(path.rsplit("/", 1)[0])
        self.entries[path] = (0o100000 | mode, data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        if "/" in path:
            self.dir(path.rsplit("/", 1)[0])
        self.entries[path] = (0o120777, target.encode())

    def bytes(self) -> bytes:
        out = io.BytesIO()

        def pad():
            out.write(b"\0" * (-out.tell() % 4))

        for ino, name in enumerate(sorted(self.entries) + ["TRAILER!!!"], 1):
            mode, data = self.entries.get(name, (0, b""))
            raw = name.encode() + b"\0"
            fields = [ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data), 0, 0, 0, 0,
                      len(raw), 0]
            out.write(b"070701" + b"".join(b"%08x" % f for f in fields))
            out.write(raw)
            pad()
            out.write(data)
            pad()
        return out.getvalue()

    def gzip(self) -> bytes:
        return gzip.compress(self.bytes(), compresslevel=6, mtime=0)


# ---- kernel modules -------------------------------------------------------------------------
def modinfo(ko: Path) -> dict[str, list[str]]:
    """The ``.modinfo`` section of an ELF64 little-endian kernel module."""
    data = ko.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise KmmError("not an ELF64 little-endian module", str(ko))
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_off = sections[shstrndx][4]
    out: dict[str, list[str]] = {}
    for sh in sections:
        end = data.index(b"\0", names_off + sh[0])
        if data[names_off + sh[0]:end] == b".modinfo":
            for item in data[sh[4]:sh[4] + sh[5]].split(b"\0"):
                key, sep, value = item.decode("utf-8", "replace").partition("=")
                if sep:
                    out.setdefault(key, []).append(value)
    return out


def module_closure(modroot: Path, names: list[str]) -> list[tuple[str, Path, dict]]:
    """``(name, path, modinfo)`` of ``names`` and their dependencies, dependencies first."""
    index = {}
    for ko in sorted(modroot.rglob("*.ko")):
        index.setdefault(ko.stem.replace("-", "_"), ko)
    order: list[tuple[str, Path, dict]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]):
        key = name.replace("-", "_")
        if key in seen:
            return
        if key not in index:
            raise KmmError(f"no module {name!r} in the kernel package", " -> ".join(chain + (name,)))
        info = modinfo(index[key])
        for dep in filter(None, ",".join(info.get("depends", [""])).split(",")):
            visit(dep, chain + (name,))
        seen.add(key)
        order.append((key, index[key], info))

    for n in names:
        visit(n, ())
    return order


def add_modules(cpio: Cpio, modroot: Path, release: str,
                names: list[str]) -> list[tuple[str, str]]:
    """Put ``names`` and their dependencies under ``/lib/modules/<release>``; returns
    ``(name, path below /lib/modules/<release>)`` in load order."""
    mods = module_closure(modroot, names)
    base = f"lib/modules/{release}"
    dep_lines, alias_lines = [], []
    for key, ko, info in mods:
        rel = ko.relative_to(modroot.parent).as_posix()      # kernel/...
        cpio.file(f"{base}/{rel}", ko.read_bytes())
        deps = [m for m in filter(None, ",".join(info.get("depends", [""])).split(","))]
        dep_paths = [next(p for k, p, _ in mods if k == d.replace("-", "_"))
                     .relative_to(modroot.parent).as_posix() for d in deps]
        dep_lines.append(f"{rel}: {' '.join(dep_paths)}".rstrip())
        for alias in info.get("alias", []):
            alias_lines.append(f"alias {alias} {key}")
    cpio.file(f"{base}/modules.dep", ("\n".join(dep_lines) + "\n").encode())
    cpio.file(f"{base}/modules.alias", ("\n".join(sorted(alias_lines)) + "\n").encode())
    return [(k, ko.relative_to(modroot.parent).as_posix()) for k, ko, _ in mods]


# ---- Debian userspace ---------------------------------------------------------------------
def add_tree_files(cpio: Cpio, root: Path, patterns: list[str]) -> None:
    """Copy files of an unpacked package matching glob ``patterns`` (symlinks kept)."""
    for pat in patterns:
        for p in sorted(root.glob(pat)):
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                cpio.symlink(rel, str(p.readlink()))
            elif p.is_file():
                cpio.file(rel, p.read_bytes(), 0o755 if p.stat().st_mode & 0o111 else 0o644)
