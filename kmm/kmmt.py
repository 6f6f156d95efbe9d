"""The ``.kmmt`` kernel-trace format: a manifest and compressed, delta-coded columns.

Layout of a file::

    b"KMMT"  u16 version (1)  u16 0  u32 manifest bytes  u32 0      16-byte header
    manifest: zlib-compressed JSON
    columns, each LZMA-compressed, in the order the manifest lists them

The records are *events*: a data access (load or store) or a run of ``count`` sequential
4-byte instruction fetches on one vCPU (a basic block, split at page boundaries). Per event:
``kind`` (0 load, 1 store, 2 fetch run), ``cpu``, ``el``, ``size`` (log2 bytes), ``region``
(:class:`kmm.capture.layout.Region`), ``count``, ``va`` (delta from the previous event of the
same class, fetch or data) and ``pa_minus_va`` (physical minus virtual address, delta-coded
the same way, so a linear-map run of accesses costs zero bytes; all ones for unknown). Every
numeric column is byte-shuffled (all first bytes, then all second bytes, ...) before LZMA.

The manifest says how the trace was made (kernel, QEMU, packages, command line, scenario,
window), the layout its regions were computed from, per-region counts, the symbols touched,
and for each column its dtype, length and sha256. :func:`read` checks all of it before it
allocates anything large: a file that is truncated, corrupt, hostile or not a trace raises
one :class:`kmm.errors.TraceError` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import TraceError
from .traces import Trace

MAGIC = b"KMMT"
VERSION = 1
HEADER = struct.Struct("<4sHHII")
MAX_MANIFEST = 8 << 20            # compressed and decompressed manifest bytes
MAX_EVENTS = 32 << 20            # bounds what a hostile manifest can make the reader allocate
MAX_REFS = 32 << 20
MAX_RUN = 1024                    # fetches in one run (one 4 KiB page)
UNKNOWN_PA = 0xFFFF_FFFF_FFFF_FFFF

COLUMNS = (("kind", "u1"), ("cpu", "u1"), ("el", "u1"), ("size", "u1"), ("region", "u1"),
           ("count", "<u2"), ("va", "<u8"), ("pa_minus_va", "<u8"))
KIND_LOAD, KIND_STORE, KIND_FETCH = 0, 1, 2


@dataclass(frozen=True)
class KernelTrace(Trace):
    """A :class:`kmm.traces.Trace` of a real kernel, with per-reference physical address,
    exception level, vCPU and region, and the manifest it was stored with.

    ``pa`` is ``UNKNOWN_PA`` (all ones) where neither the plugin nor the layout gives one.
    ``global_`` is True for TTBR1 (kernel) addresses.
    """

    pa: np.ndarray | None = None
    el: np.ndarray | None = None
    cpu: np.ndarray | None = None
    region: np.ndarray | None = None
    manifest: dict = field(default_factory=dict)

    def __getitem__(self, sl: slice) -> "KernelTrace":
        if not isinstance(sl, slice):
            raise TypeError("a Trace is sliced with a slice")
        pick = lambda a: None if a is None else a[sl]  # noqa: E731
        return KernelTrace(self.address[sl], self.kind[sl], pick(self.global_), pick(self.size),
                           dict(self.meta), pick(self.pa), pick(self.el), pick(self.cpu),
                           pick(self.region), self.manifest)

    def region_names(self) -> dict[int, str]:
        return {int(k): v for k, v in self.manifest.get("region_names", {}).items()}


# ---- encoding -------------------------------------------------------------------------------
def _shuffle(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(a.size, a.itemsize).T.tobytes()


def _unshuffle(raw: bytes, dtype: str, n: int) -> np.ndarray:
    dt = np.dtype(dtype)
    return np.frombuffer(raw, np.uint8).reshape(dt.itemsize, n).T.copy().view(dt).reshape(n)


def _class_delta(values: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Each value minus the previous value of the same class (0 or 1); first ones minus 0."""
    out = np.empty_like(values)
    for c in (0, 1):
        sel = np.flatnonzero(cls == c)
        v = values[sel]
        out[sel] = v - np.concatenate([[np.uint64(0)], v[:-1]]).astype(np.uint64)
    return out


def _class_undelta(deltas: np.ndarray, cls: np.ndarray) -> np.ndarray:
    out = np.empty_like(deltas)
    for c in (0, 1):
        sel = np.flatnonzero(cls == c)
        out[sel] = np.cumsum(deltas[sel], dtype=np.uint64)
    return out


def to_events(va, kind, size, cpu, el, region, pa):
    """Group per-reference arrays into events: sequential 4-byte fetches on one vCPU, in one
    page and one region, become one run."""
    n = va.size
    fetch = kind == KIND_FETCH
    if n == 0:
        z = np.zeros(0, np.uint64)
        return {name: z.astype(dt) for name, dt in COLUMNS}
    same = np.zeros(n, bool)
    same[1:] = (fetch[1:] & fetch[:-1] & (va[1:] == va[:-1] + np.uint64(4)) &
                (cpu[1:] == cpu[:-1]) & (el[1:] == el[:-1]) & (region[1:] == region[:-1]) &
                ((va[1:] & np.uint64(0xFFF)) != 0) & (size[1:] == 2) & (size[:-1] == 2) &
                (pa[1:] == np.where(pa[:-1] == np.uint64(UNKNOWN_PA), pa[:-1], pa[:-1] + np.uint64(4))))
    starts = np.flatnonzero(~same)
    # runs longer than MAX_RUN cannot happen (page split), but keep the bound explicit
    counts = np.diff(np.append(starts, n))
    if counts.size and counts.max() > MAX_RUN:
        raise ValueError("run longer than a page")
    ev_va = va[starts]
    ev_pa = pa[starts]
    cls = (kind[starts] == KIND_FETCH).astype(np.uint8)
    pmv = np.where(ev_pa == np.uint64(UNKNOWN_PA), np.uint64(UNKNOWN_PA), ev_pa - ev_va)
    return {"kind": kind[starts].astype(np.uint8), "cpu": cpu[starts].astype(np.uint8),
            "el": el[starts].astype(np.uint8), "size": size[starts].astype(np.uint8),
            "region": region[starts].astype(np.uint8), "count": counts.astype(np.uint16),
            "va": _class_delta(ev_va, cls),
            "pa_minus_va": _class_delta(pmv, cls)}


def write(path, va, kind, size, cpu, el, region, pa, manifest: dict) -> dict:
    """Write a kernel trace; returns the manifest as stored (with ``columns``, ``refs``,
    ``events`` added)."""
    ev = to_events(np.asarray(va, np.uint64), np.asarray(kind, np.uint8),
                   np.asarray(size, np.uint8), np.asarray(cpu, np.uint8),
                   np.asarray(el, np.uint8), np.asarray(region, np.uint8),
                   np.asarray(pa, np.uint64))
    blobs, cols = [], []
    for name, dt in COLUMNS:
        raw = _shuffle(ev[name].astype(dt))
        blob = lzma.compress(raw, preset=9)
        blobs.append(blob)
        cols.append({"name": name, "dtype": dt, "raw_bytes": len(raw), "bytes": len(blob),
                     "sha256": hashlib.sha256(raw).hexdigest()})
    man = dict(manifest)
    man.update(format="kmmt", version=VERSION, refs=int(len(va)), events=int(ev["kind"].size),
               columns=cols)
    mbytes = zlib.compress(json.dumps(man, sort_keys=True, separators=(",", ":")).encode(), 9)
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(HEADER.pack(MAGIC, VERSION, 0, len(mbytes), 0))
        fh.write(mbytes)
        for b in blobs:
            fh.write(b)
    os.replace(tmp, path)
    return man


# ---- decoding -------------------------------------------------------------------------------
def _bounded_inflate(decomp, data: bytes, limit: int, what: str, where: str) -> bytes:
    out = decomp.decompress(data, limit + 1)
    if len(out) > limit:
        raise TraceError(f"{what} decompresses to more than its stated {limit} bytes", where)
    return out


def read_manifest(path) -> tuple[dict, int]:
    """The manifest of a ``.kmmt`` file and the offset of its first column."""
    where = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER.size)
            if len(head) < HEADER.size or head[:4] != MAGIC:
                raise TraceError("not a kmm kernel trace (bad magic)", where)
            _, version, _, mlen, _ = HEADER.unpack(head)
            if version != VERSION:
                raise TraceError(f"format version {version}, this kmm reads {VERSION}", where)
            if not 0 < mlen <= MAX_MANIFEST:
                raise TraceError(f"manifest size {mlen} out of range", where)
            mbytes = fh.read(mlen)
    except OSError as e:
        raise TraceError(f"cannot read: {e.strerror or e}", where) from None
    if len(mbytes) != mlen:
        raise TraceError("truncated in the manifest", where)
    try:
        text = _bounded_inflate(zlib.decompressobj(), mbytes, MAX_MANIFEST, "manifest", where)
        man = json.loads(text)
    except (zlib.error, ValueError, UnicodeDecodeError) as e:
        raise TraceError(f"corrupt manifest ({type(e).__name__})", where) from None
    if not isinstance(man, dict) or man.get("format") != "kmmt":
        raise TraceError("manifest is not a kmmt manifest", where)
    return man, HEADER.size + mlen


def _check_columns(man: dict, where: str, max_refs: int) -> tuple[int, int, list[dict]]:
    cols = man.get("columns")
    refs, events = man.get("refs"), man.get("events")
    if not (isinstance(refs, int) and isinstance(events, int) and 0 <= events <= refs):
        raise TraceError("manifest refs/events missing or inconsistent", where)
    if events > MAX_EVENTS or refs > min(MAX_REFS, max_refs):
        raise TraceError(f"{refs} references exceed the reader's limit", where)
    expected = [n for n, _ in COLUMNS]
    if not isinstance(cols, list) or [c.get("name") if isinstance(c, dict) else None
                                      for c in cols] != expected:
        raise TraceError(f"manifest columns are not {expected}", where)
    for c, (_, dt) in zip(cols, COLUMNS):
        if c.get("dtype") != dt or c.get("raw_bytes") != events * np.dtype(dt).itemsize:
            raise TraceError(f"column {c['name']}: dtype or length disagrees with the events",
                             where)
        if not (isinstance(c.get("bytes"), int) and 0 <= c["bytes"] <= 4 * c["raw_bytes"] + 4096):
            raise TraceError(f"column {c['name']}: stored size out of range", where)
    return refs, events, cols


def read(path, *, max_refs: int | None = None) -> KernelTrace:
    """Read a ``.kmmt`` file into a :class:`KernelTrace` (see the module docstring)."""
    where = os.fspath(path)
    man, offset = read_manifest(path)
    refs, events, cols = _check_columns(man, where, MAX_REFS if max_refs is None else max_refs)
    ev = {}
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            for c, (name, dt) in zip(cols, COLUMNS):
                blob = fh.read(c["bytes"])
                if len(blob) != c["bytes"]:
                    raise TraceError(f"truncated in column {name}", where)
                d = lzma.LZMADecompressor()
                raw = _bounded_inflate(d, blob, c["raw_bytes"], f"column {name}", where)
                if len(raw) != c["raw_bytes"] or not d.eof:
                    raise TraceError(f"column {name} is truncated or corrupt", where)
                if hashlib.sha256(raw).hexdigest() != c.get("sha256"):
                    raise TraceError(f"column {name} fails its sha256", where)
                ev[name] = _unshuffle(raw, dt, events)
            if fh.read(1):
                raise TraceError("trailing bytes after the last column", where)
    except OSError as e:
        raise TraceError(f"cannot read: {e.strerror or e}", where) from None
    except lzma.LZMAError as e:
        raise TraceError(f"corrupt column data ({e})", where) from None
    count = ev["count"].astype(np.int64)
    kind = ev["kind"]
    if events and (count.min() < 1 or count.max() > MAX_RUN or kind.max() > KIND_FETCH or
                   np.any((kind != KIND_FETCH) & (count != 1)) or ev["size"].max() > 4 or
                   ev["el"].max() > 3):
        raise TraceError("event values out of range", where)
    if int(count.sum()) != refs:
        raise TraceError(f"events hold {int(count.sum())} references, the manifest says {refs}",
                         where)
    cls = (kind == KIND_FETCH).astype(np.uint8)
    ev_va = _class_undelta(ev["va"], cls)
    pmv = _class_undelta(ev["pa_minus_va"], cls)
    rep = lambda a: np.repeat(a, count)  # noqa: E731
    first = np.repeat(np.cumsum(count) - count, count)
    step = (np.arange(refs, dtype=np.int64) - first).astype(np.uint64) * np.uint64(4)
    va = rep(ev_va) + step
    unknown = rep(pmv == np.uint64(UNKNOWN_PA))
    pa = np.where(unknown, np.uint64(UNKNOWN_PA), rep(ev_va + pmv) + step)
    sc = man.get("scenario")
    return KernelTrace(va, rep(kind), (va >> np.uint64(63)).astype(bool),
                       (np.uint16(1) << rep(ev["size"]).astype(np.uint16)),
                       {"source": where, "format": "kmmt",
                        "scenario": sc.get("name") if isinstance(sc, dict) else None},
                       pa, rep(ev["el"]), rep(ev["cpu"]), rep(ev["region"]), man)
