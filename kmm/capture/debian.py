"""The capture's inputs, from Debian's archive by package name, pinned by version and sha256.

``apt-get download NAME:arm64=VERSION`` fetches each package into a cache folder (the arm64
architecture must be added: ``dpkg --add-architecture arm64 && apt-get update``), the file's
sha256 is checked against :data:`PINS`, and ``dpkg -x`` unpacks it. A package the archive no
longer serves, or one whose bytes differ from the pin, is refused in one line: the traces
shipped with kmm were captured from exactly these files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import KmmError

KERNEL_PACKAGE = "linux-image-6.1.0-50-arm64"
KERNEL_RELEASE = "6.1.0-50-arm64"

#: package -> (version, sha256 of the .deb), Debian 12 (bookworm) arm64
PINS: dict[str, tuple[str, str]] = {
    KERNEL_PACKAGE: ("6.1.176-1", "914f75b57a8e165d85fb910c3e2dcc7000a05a9fea3f42f90b26e8dd590d5f06"),
    "busybox-static": ("1:1.35.0-4+deb12u1+b1", "732c9135564fc71337e0e05fb4da4d11e6c28c1834bce3e405e575afef2a52f5"),
    "libc6": ("2.36-9+deb12u14", "01f4330719fd4f65580e16ea5a0527f372fca750e8f588d26deaf09f2d3b1cf4"),
    "memcached": ("1.6.18-1+deb12u1", "76c12fbf1b729165b81a53c86ab84a06b89b83a84760586159fa839c9eefd508"),
    "libevent-2.1-7": ("2.1.12-stable-8+deb12u1", "8f74fe1725164ff6baf861d352795fc166e5b4195356be6c2aeffc229bdc82c8"),
    "libsasl2-2": ("2.1.28+dfsg-10+deb12u1", "b3686e0815d99e5ca6ce9234e486ca0ecd373d491e34457c3b9cba5c6dbba287"),
    "libssl3": ("3.0.22-1~deb12u2", "3d04ecd8d0f57fed50d205abaeedfcc84c1960073ea085719c00add44b0ccd7f"),
    "dmsetup": ("2:1.02.185-2", "5c838de946282ee64c8483886c8bc68276d3fc5a9a28ce23bbfa6577fe0ddac2"),
    "libdevmapper1.02.1": ("2:1.02.185-2", "0b4ffad17467a043dd1cb9cdbbcf8cbaf2ab88e902ae4c110a0b08d74753589b"),
    "libselinux1": ("3.4-1+b6", "29201edf23ebae40844d6c289afdb9bba52f927d55096ed1b1cd37e040135edc"),
    "libpcre2-8-0": ("10.42-1+deb12u2", "8498d2c0bd6747dfc2fc6eec62774a86967079555f7043d5a7b78ee4efbbc0fb"),
    "libudev1": ("252.39-1~deb12u2", "b76444b0259abfa416f8c1d9a652d208a24770667a1181aa52317b74d12a7a72"),
}


def cache_dir() -> Path:
    """Where packages are downloaded and unpacked: ``$KMM_CACHE`` or ``~/.cache/kmm``."""
    root = os.environ.get("KMM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kmm")
    return Path(root) / "debian"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _deb_name(name: str, version: str) -> str:
    return f"{name}_{version.replace(':', '%3a')}_arm64.deb"


def download(name: str, cache: Path | None = None) -> Path:
    """The pinned ``.deb`` of ``name``, downloaded if not cached, sha256 checked."""
    if name not in PINS:
        raise KmmError(f"no pinned version of Debian package {name!r}", "capture")
    version, digest = PINS[name]
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / _deb_name(name, version)
    if not path.is_file():
        if not shutil.which("apt-get"):
            raise KmmError("apt-get is needed to fetch Debian packages", name)
        proc = subprocess.run(["apt-get", "download", f"{name}:arm64={version}"], cwd=cache,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not path.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise KmmError(f"apt-get download {name}:arm64={version} failed ({last}); run "
                           "`dpkg --add-architecture arm64 && apt-get update` first", name)
    got = sha256_file(path)
    if got != digest:
        path.unlink()
        raise KmmError(f"sha256 {got} differs from the pinned {digest}", path.name)
    return path


def unpack(name: str, cache: Path | None = None) -> Path:
    """The unpacked tree of the pinned package (``dpkg -x``), made once."""
    cache = cache or cache_dir()
    deb = download(name, cache)
    dest = cache / "root" / f"{name}_{PINS[name][0].replace(':', '_')}"
    done = dest / ".kmm-unpacked"
    if not done.is_file():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        proc = subprocess.run(["dpkg", "-x", str(deb), str(dest)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise KmmError(f"dpkg -x failed: {proc.stderr.strip()[:200]}", deb.name)
        done.write_text("")
    return dest


def manifest_entry(name: str) -> dict:
    version, digest = PINS[name]
    return {"version": version, "sha256": digest, "architecture": "arm64"}
