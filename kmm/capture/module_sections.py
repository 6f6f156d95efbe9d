"""Measure the memory regions of every module of a Debian x86-64 kernel package.

Regenerates ``kmm/data/module_sections_amd64.csv.gz`` (the permission-vmalloc model's module
mix). Not run by the main job or the tests; it needs the package from Debian's archive::

    apt-get download linux-image-6.1.0-50-amd64-unsigned      # 6.1.176-1
    dpkg-deb -x linux-image-6.1.0-50-amd64-unsigned_6.1.176-1_amd64.deb x
    python3 -m kmm.capture.module_sections x/lib/modules/6.1.0-50-amd64 \\
        kmm/data/module_sections_amd64.csv.gz

``readelf -SW`` (binutils) lists each ``.ko``'s section headers (``.ko.xz`` files are
decompressed first); the module loader of that kernel (v6.1 kernel/module/main.c) is
replayed over them:

- ``layout_and_allocate``: ``.data..ro_after_init`` and ``__jump_table`` get
  ``SHF_RO_AFTER_INIT``; the per-CPU section (``.data..percpu``) loses ``SHF_ALLOC``
  (allocated apart); ``rewrite_section_headers`` drops ``SHF_ALLOC`` from ``.modinfo`` and
  ``__versions``;
- ``layout_sections``: sections named ``.init*`` go to the init layout, the others (``.exit*``
  included: Debian builds with ``CONFIG_MODULE_UNLOAD``) to the core layout; within each,
  passes over the masks text (``SHF_EXECINSTR``), read-only (``SHF_ALLOC`` without
  ``SHF_WRITE``), ro_after_init, writable, each section at ``ALIGN(size, sh_addralign)``
  (``module_get_offset``), each region ending page aligned (``CONFIG_STRICT_MODULE_RWX``);
- ``layout_symtab``: the full ``.symtab`` and ``.strtab`` go to the init layout's writable
  part (the core keeps only the core symbols, not counted here).

Columns (bytes, a region's content before its page alignment): ``module`` (path under
``kernel/`` without ``.ko``), ``file`` (the ELF image ``init_module`` copies into a vmalloc
buffer), ``text, ro, rai, rw`` (core), ``init_text, init_ro, init_rw``, ``symtab``,
``ro_after_init``, ``jump_table`` and ``static_call_sites`` (the sizes of
``.data..ro_after_init``, ``__jump_table`` and ``.static_call_sites``, 0 when absent; the
last is the array of ``struct static_call_site``, two ``s32`` per inline static call site,
that v6.1 kernel/module/main.c ``find_module_sections`` hands to ``static_call_add_module``).
"""
from __future__ import annotations

import csv
import gzip
import io
import lzma
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "linux-image-6.1.0-50-amd64-unsigned"
VERSION = "6.1.176-1"
SHA256 = "439422e41d2dbb840b60b81e3bf5e5955bfa56b7a8c268aec83c9ff882d421e6"

COLUMNS = ("module", "file", "text", "ro", "rai", "rw", "init_text", "init_ro", "init_rw",
           "symtab", "ro_after_init", "jump_table", "static_call_sites")

_ALLOC, _WRITE, _EXEC, _RAI = 1, 2, 4, 8     # our own bits (SHF_RO_AFTER_INIT is kernel-only)
_ROW = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S+)\s+(\S+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+"
                  r"[0-9a-f]+\s+([A-Za-z]*)\s+\d+\s+\d+\s+(\d+)\s*$")


def sections(readelf_out: str) -> list[tuple[str, str, int, str, int]]:
    """``(name, type, size, flags, align)`` per section header of ``readelf -SW`` output."""
    out = []
    for line in readelf_out.splitlines():
        m = _ROW.match(line)
        if m and m.group(1) != "0":
            out.append((m.group(2), m.group(3), int(m.group(4), 16), m.group(5),
                        int(m.group(6))))
    return out


def _align(x: int, a: int) -> int:
    a = a or 1
    return -(-x // a) * a


def layout(secs: list[tuple[str, str, int, str, int]]) -> dict[str, int]:
    """Region sizes of one module (see the module docstring)."""
    flags = []
    for name, _typ, _size, fl, _al in secs:
        f = (_ALLOC if "A" in fl else 0) | (_WRITE if "W" in fl else 0) | \
            (_EXEC if "X" in fl else 0)
        if name in (".data..ro_after_init", "__jump_table"):
            f |= _RAI
        if name in (".data..percpu", ".modinfo", "__versions"):
            f &= ~_ALLOC
        flags.append(f)
    masks = ((_EXEC | _ALLOC, 0), (_ALLOC, _WRITE), (_RAI | _ALLOC, 0), (_WRITE | _ALLOC, 0),
             (_ALLOC, 0))
    out = {}
    for init, keys in ((False, ("text", "ro", "rai", "rw", "rw")),
                       (True, ("init_text", "init_ro", "init_rw", "init_rw", "init_rw"))):
        placed = [False] * len(secs)
        size = 0
        for m, ((want, skip), key) in enumerate(zip(masks, keys)):
            start = size
            for i, (name, _typ, sz, _fl, al) in enumerate(secs):
                f = flags[i]
                if placed[i] or (f & want) != want or (f & skip) or \
                        name.startswith(".init") != init:
                    continue
                size = _align(size, al) + sz
                placed[i] = True
            out[key] = out.get(key, 0) + size - start
            if m < 3:   # text, read-only and ro_after_init end page aligned
                size = _align(size, 4096)
    sizes = {name: sz for name, _t, sz, _f, _a in secs}
    out["symtab"] = sizes.get(".symtab", 0) + sizes.get(".strtab", 0)
    out["ro_after_init"] = sizes.get(".data..ro_after_init", 0)
    out["jump_table"] = sizes.get("__jump_table", 0)
    out["static_call_sites"] = sizes.get(".static_call_sites", 0)
    return out


def measure(root: Path) -> list[dict]:
    """One row per ``.ko`` / ``.ko.xz`` under ``root`` (a ``lib/modules/<release>``)."""
    rows = []
    files = sorted(p for p in root.rglob("*") if p.name.endswith((".ko", ".ko.xz")))
    with tempfile.TemporaryDirectory() as tmp:
        for p in files:
            path = p
            if p.name.endswith(".xz"):
                path = Path(tmp) / p.name[:-3]
                path.write_bytes(lzma.decompress(p.read_bytes()))
            res = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True,
                                 check=True)
            rel = p.relative_to(root)
            parts = rel.parts[1:] if rel.parts and rel.parts[0] == "kernel" else rel.parts
            name = "/".join(parts)
            name = name[: -len(".ko.xz")] if name.endswith(".xz") else name[: -len(".ko")]
            rows.append({"module": name, "file": path.stat().st_size,
                         **layout(sections(res.stdout))})
    return rows


def write(rows: list[dict], out: Path) -> None:
    buf = io.StringIO()
    buf.write(f"# package: {PACKAGE} {VERSION} (Debian 12 bookworm, amd64), "
              f"sha256 {SHA256}; kmm/capture/module_sections.py\n")
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in COLUMNS})
    with gzip.GzipFile(out, "wb", mtime=0) as fh:
        fh.write(buf.getvalue().encode())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    rows = measure(Path(argv[0]))
    write(rows, Path(argv[1]))
    print(f"{len(rows)} modules -> {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
