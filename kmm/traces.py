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
from dataclasses import dataclass, field

import numpy as np

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
        if path.endswith(".gz"):
            return gzip.open(path, "rt", encoding="ascii", errors="replace"), path
        return open(path, encoding="ascii", errors="replace"), path
    if isinstance(source, io.TextIOBase) or hasattr(source, "readline"):
        return source, getattr(source, "name", "<stream>")
    raise ConfigError(f"cannot read a trace from {type(source).__name__}", "source")


def read_lackey(source, *, modify: str = "both", max_records: int | None = None) -> Trace:
    """Read a valgrind lackey ``--trace-mem=yes`` log into a :class:`Trace`.

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
    fh, name = _open(source)
    addr: list[int] = []
    kind: list[int] = []
    size: list[int] = []
    m_kinds = {"both": (Kind.LOAD, Kind.STORE), "load": (Kind.LOAD,),
               "store": (Kind.STORE,)}[modify]
    codes = {"I": (Kind.IFETCH,), "L": (Kind.LOAD,), "S": (Kind.STORE,), "M": m_kinds}
    records = 0
    try:
        for lineno, line in enumerate(fh, 1):
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
                addr.append(a)
                kind.append(int(k))
                size.append(n)
            records += 1
            if max_records is not None and records >= max_records:
                break
    except UnicodeDecodeError as e:
        raise TraceError(f"not a text trace ({e.reason})", name) from None
    except (OSError, EOFError) as e:
        raise TraceError(f"cannot read: {e}", name) from None
    finally:
        if isinstance(source, (str, os.PathLike)):
            fh.close()
    return Trace(np.array(addr, dtype=np.uint64), np.array(kind, dtype=np.uint8),
                 size=np.array(size, dtype=np.uint16),
                 meta={"source": str(name), "format": "lackey", "records": records,
                       "modify": modify})


__all__ = ["Trace", "read_lackey"]
