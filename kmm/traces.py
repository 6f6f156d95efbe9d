"""Address traces: the :class:`Trace` arrays every generator returns, and a reader for real
traces recorded with valgrind's lackey tool.

``valgrind --tool=lackey --trace-mem=yes prog`` prints one record per memory access
(valgrind ``lackey/lk_main.c``, ``trace_instr``/``trace_load``/``trace_store``/
``trace_modify``)::

    I  0401ab70,3        instruction fetch of 3 bytes
     L 1fff000770,8      data load
     S 1fff000778,8      data store
     M 0421f1f0,4        modify (a load and a store of the same bytes)

Lines starting with ``==`` are valgrind's own messages and are skipped, as are blank lines.
Any other line is an error: :class:`kmm.errors.TraceError` names ``file:line``, so a
truncated or corrupted trace is reported, never half-read.

Examples
--------
>>> import io
>>> t = read_lackey(io.StringIO("==1== Lackey\\nI  0401ab70,3\\n S 7ff0,8\\n M 10,4\\n"))
>>> t.address.tolist(), t.kind.tolist(), t.instructions
([67218288, 32752, 16, 16], [2, 1, 0, 1], 1)
"""
from __future__ import annotations

import gzip
import io
import os
import re
import stat
import zlib
from dataclasses import dataclass, field

import numpy as np

from .config import check_int
from .errors import ConfigError, TraceError
from .tlb import Kind

_RECORD = re.compile(r"(I | [LSM]) ([0-9a-fA-F]+),([0-9]+)\s*$")


@dataclass(frozen=True)
class Trace:
    """A memory-access trace.

    Attributes
    ----------
    address : uint64 virtual addresses
    kind : uint8 :class:`kmm.tlb.Kind` per access
    global_ : bool per access (kernel, global translations) or None
    size : uint16 bytes per access or None
    meta : how it was made (generator name, seed, parameters, or source file)
    """

    address: np.ndarray
    kind: np.ndarray
    global_: np.ndarray | None = None
    size: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.address.dtype != np.uint64 or self.address.ndim != 1:
            raise ConfigError("addresses must be a 1-D uint64 array", "address")
        for name in ("kind", "global_", "size"):
            a = getattr(self, name)
            if a is not None and a.shape != self.address.shape:
                raise ConfigError(f"needs one value per access ({self.address.shape[0]})", name)

    def __len__(self) -> int:
        return int(self.address.shape[0])

    @property
    def addresses(self) -> np.ndarray:
        """Alias of :attr:`address`."""
        return self.address

    @property
    def instructions(self) -> int:
        """Instruction fetches in the trace (the denominator of MPKI)."""
        return int(np.count_nonzero(self.kind == Kind.IFETCH))

    def kwargs(self) -> dict:
        """Per-access keyword arguments for :func:`kmm.tlb.simulate_trace` and
        :func:`kmm.walk.simulate_path`."""
        out = {"kind": self.kind}
        if self.global_ is not None:
            out["global_"] = self.global_
        return out

    def __getitem__(self, sl: slice) -> "Trace":
        if not isinstance(sl, slice):
            raise TypeError("a Trace is sliced with a slice")
        pick = lambda a: None if a is None else a[sl]  # noqa: E731
        return Trace(self.address[sl], self.kind[sl], pick(self.global_), pick(self.size),
                     dict(self.meta))


def _open(source):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:  # O_NONBLOCK: a FIFO given as a trace must not hang the open
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise TraceError(f"cannot open: {e.strerror or e}", path) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise TraceError("not a regular file", path)
        raw = os.fdopen(fd, "rb")
        if path.endswith(".gz"):
            raw = gzip.GzipFile(fileobj=raw, mode="rb")
        return io.TextIOWrapper(raw, encoding="ascii", errors="replace"), path
    if isinstance(source, io.TextIOBase) or hasattr(source, "readline"):
        return source, getattr(source, "name", "<stream>")
    raise ConfigError(f"cannot read a trace from {type(source).__name__}", "source")


_BLOCK_RECORD = re.compile(r"^(I | [LSM]) ([0-9a-fA-F]{1,16}),([0-9]{1,5})[ \t\r\f\v]*$", re.M)
_BLOCK_LINES = 1 << 18
#: Longest trace line read; a lackey record is under 40 characters and a valgrind message
#: under a few hundred, so a longer line is a damaged or hostile file, not a trace.
MAX_LINE = 4096


def _read_lines(fh, n: int, lineno: int, name) -> list[str]:
    """Up to ``n`` lines of ``fh``, none longer than :data:`MAX_LINE` (TraceError if one is)."""
    out = []
    readline = fh.readline
    for i in range(n):
        ln = readline(MAX_LINE + 1)
        if not ln:
            break
        if len(ln) > MAX_LINE:
            raise TraceError(f"line longer than {MAX_LINE} characters; not a lackey trace",
                             f"{name}:{lineno + i}")
        out.append(ln)
    return out
_HEX = np.zeros(256, np.uint64)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def _hex_to_u64(digits: list[str]) -> np.ndarray:
    """Vectorised hex decoding of strings of 1 to 16 digits."""
    raw = np.array(digits, dtype="S16").view(np.uint8).reshape(len(digits), 16)
    acc = np.zeros(len(digits), np.uint64)
    for col in range(16):
        c = raw[:, col]
        acc = np.where(c != 0, acc * np.uint64(16) + _HEX[c], acc)
    return acc


def _slow_block(lines, first_lineno, name, codes, addr, kind, size):
    """Record-by-record parsing: used when a block holds a bad line, to name it."""
    records = 0
    for lineno, line in enumerate(lines, first_lineno):
        if line.startswith("==") or not line.strip():
            continue
        m = _RECORD.match(line)
        if m is None:
            shown = line.rstrip("\n")
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise TraceError(f"not a lackey record: {shown!r}", f"{name}:{lineno}")
        a = int(m.group(2), 16)
        n = int(m.group(3))
        if a >= 1 << 64 or not 0 < n < 1 << 16:
            raise TraceError(f"address or size out of range: {line.strip()!r}",
                             f"{name}:{lineno}")
        for k in codes[m.group(1).strip()]:
            addr.append(np.array([a], np.uint64))
            kind.append(np.array([int(k)], np.uint8))
            size.append(np.array([n], np.int64))
        records += 1
    return records


def _fast_block(lines, modify):
    """Arrays of a block whose every line is a record, a message or blank; None if not."""
    expected = sum(1 for ln in lines if not (ln.startswith("==") or not ln.strip()))
    recs = _BLOCK_RECORD.findall("".join(lines))
    if len(recs) != expected:
        return None
    if not recs:
        return (np.zeros(0, np.uint64), np.zeros(0, np.uint8), np.zeros(0, np.int64), 0)
    n = np.array([r[2] for r in recs]).astype(np.int64)
    if np.any(n <= 0) or np.any(n >= 1 << 16):
        return None
    a = _hex_to_u64([r[1] for r in recs])
    t = np.array([r[0] for r in recs])
    k = np.full(len(recs), int(Kind.LOAD), np.uint8)
    k[t == "I "] = Kind.IFETCH
    k[t == " S"] = Kind.STORE
    is_m = t == " M"
    if modify == "store":
        k[is_m] = Kind.STORE
    elif modify == "both" and is_m.any():
        reps = np.where(is_m, 2, 1)
        a, n, k = np.repeat(a, reps), np.repeat(n, reps), np.repeat(k, reps)
        second = np.cumsum(reps) - 1
        k[second[is_m]] = Kind.STORE
    return a, k, n, len(recs)


def read_lackey(source, *, modify: str = "both", max_records: int | None = None) -> Trace:
    """Read a valgrind lackey ``--trace-mem=yes`` log into a :class:`Trace`.

    Blocks of lines are parsed with one regular-expression pass and vectorised hex
    decoding; a block with a bad line is re-read line by line to name it.

    Parameters
    ----------
    source : path (``.gz`` is decompressed) or open text stream
    modify : an ``M`` record becomes a load then a store (``"both"``), or one ``"load"`` or
        ``"store"``
    max_records : stop after this many records (None: read to the end)

    Raises
    ------
    TraceError
        naming ``file:line`` for a line that is neither a valgrind message nor a record
        (including a last line cut short).
    """
    if modify not in ("both", "load", "store"):
        raise ConfigError(f"must be 'both', 'load' or 'store', got {modify!r}", "modify")
    if max_records is not None:
        check_int("max_records", max_records, lo=1)
    fh, name = _open(source)
    addr: list[np.ndarray] = []
    kind: list[np.ndarray] = []
    size: list[np.ndarray] = []
    m_kinds = {"both": (Kind.LOAD, Kind.STORE), "load": (Kind.LOAD,),
               "store": (Kind.STORE,)}[modify]
    codes = {"I": (Kind.IFETCH,), "L": (Kind.LOAD,), "S": (Kind.STORE,), "M": m_kinds}
    records = 0
    lineno = 1
    try:
        while max_records is None or records < max_records:
            lines = _read_lines(fh, _BLOCK_LINES, lineno, name)
            if not lines:
                break
            if max_records is not None:
                lines = _first_records(lines, max_records - records)
            fast = _fast_block(lines, modify)
            if fast is None:
                records += _slow_block(lines, lineno, name, codes, addr, kind, size)
            else:
                a, k, n, r = fast
                addr.append(a)
                kind.append(k)
                size.append(n)
                records += r
            lineno += len(lines)
    except UnicodeDecodeError as e:
        raise TraceError(f"not a text trace ({e.reason})", name) from None
    except (OSError, EOFError, zlib.error) as e:  # a corrupt gzip body among them
        raise TraceError(f"cannot read: {' '.join(str(e).split())[:200]}", name) from None
    finally:
        if isinstance(source, (str, os.PathLike)):
            fh.close()
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return Trace(cat(addr, np.uint64), cat(kind, np.uint8), size=cat(size, np.uint16),
                 meta={"source": str(name), "format": "lackey", "records": records,
                       "modify": modify})


def _first_records(lines: list[str], wanted: int) -> list[str]:
    """The prefix of ``lines`` holding at most ``wanted`` records."""
    seen = 0
    for i, ln in enumerate(lines):
        if not (ln.startswith("==") or not ln.strip()):
            seen += 1
            if seen == wanted:
                return lines[:i + 1]
    return lines


__all__ = ["Trace", "read_lackey", "read_kernel_trace", "shipped_kernel_traces"]


def read_kernel_trace(path, *, max_refs: int | None = None):
    """Read a kernel trace captured by ``kmm trace capture`` (a ``.kmmt`` file) into a
    :class:`kmm.kmmt.KernelTrace`: a :class:`Trace` with per-reference physical address,
    exception level, vCPU and region, and the capture's manifest. A corrupt, truncated or
    hostile file raises one :class:`kmm.errors.TraceError`."""
    from .kmmt import read

    return read(path, max_refs=max_refs)


def shipped_kernel_traces() -> list:
    """Paths of the kernel traces shipped with kmm (``kmm/data/traces/*.kmmt``)."""
    from pathlib import Path

    return sorted((Path(__file__).parent / "data" / "traces").glob("*.kmmt"))


def shipped_trace_path(name: str, where: str = "trace"):
    """The path of the shipped kernel trace of scenario ``name`` (``<name>.kmmt``); an
    unknown name raises one :class:`kmm.errors.ConfigError` listing the shipped ones."""
    from .errors import ConfigError

    paths = {p.stem: p for p in shipped_kernel_traces()}
    if name not in paths:
        raise ConfigError(f"no shipped trace {name!r}; shipped: "
                          f"{', '.join(sorted(paths))}", where)
    return paths[name]


def read_shipped_trace(name: str, *, max_refs: int | None = None, where: str = "trace"):
    """:func:`read_kernel_trace` of the shipped trace of scenario ``name``
    (:func:`shipped_trace_path`)."""
    return read_kernel_trace(shipped_trace_path(name, where), max_refs=max_refs)
