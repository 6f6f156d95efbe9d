"""Run one notebook with papermill: parameters injected, executed copy written atomically.

:func:`execute` is the one place kmm starts a notebook kernel (``kmm run``, ``kmm reproduce``
and the notebook sweep runner all call it). papermill is imported inside it so that importing
this module stays cheap.
"""
from __future__ import annotations

import contextlib
import copy
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, KmmError, warn
from .params import display_path

KERNEL = "python3"
#: Markers of a kernel that never came up (port clash between parallel starts, slow start);
#: a run that fails this way is retried once.
_START_FAILURES = ("kernel died before replying to kernel_info", "kernel didn't respond",
                   "address already in use", "kernel_info")


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the kernel papermill launches, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _is_start_failure(e: BaseException) -> bool:
    name = type(e).__name__
    if name in ("CellTimeoutError", "DeadKernelError", "PapermillExecutionError"):
        return False
    if name == "ZMQError":
        return True
    msg = str(e).lower()
    return isinstance(e, (RuntimeError, TimeoutError, OSError)) and any(m in msg for m in _START_FAILURES)


def failed_path(out_path: Path) -> Path:
    """Where the executed copy of a failed run is kept: ``<stem>.failed.ipynb``."""
    return out_path.with_name(f"{out_path.stem}.failed.ipynb")


INJECTED_TAG = "injected-parameters"


def parameterize(notebook: Path, parameters: Mapping[str, Any]):
    """The notebook as an ``nbformat`` node with kmm's injected parameters cell.

    The cell is rendered by :func:`kmm.suite.schema.render_cell` from plain values, right after
    the cell tagged ``parameters`` (as papermill places it), and tagged ``injected-parameters``;
    the values are also kept in the notebook's ``papermill.parameters`` metadata. A value that
    is not plain data is refused (ConfigError), so nothing but literals enters the notebook.
    """
    import nbformat

    from .params import MAX_NOTEBOOK_BYTES, parameters_cell, read_regular_file
    from .schema import render_cell

    where = display_path(notebook)
    try:
        source = render_cell(parameters)
    except TypeError as e:
        raise ConfigError(f"parameters must be plain data: {e}", where) from None
    try:
        nb = nbformat.reads(read_regular_file(notebook, where, MAX_NOTEBOOK_BYTES, "notebook"),
                            as_version=4)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 (nbformat raises several types for a bad file)
        raise ConfigError(f"not a notebook: {_one_line(e, 120)}", where) from None
    found = parameters_cell(nb)
    cell = nbformat.v4.new_code_cell(source=source, metadata={"tags": [INJECTED_TAG]})
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    nb.cells.insert(found[0] + 1 if found else 0, cell)
    nb.metadata.setdefault("papermill", {})["parameters"] = dict(parameters)
    return nb


def _cell_progress(node) -> dict[str, Any]:
    """nbclient's ``on_cell_start`` hook reporting to :func:`kmm.suite.progress.cell_hook`
    (position among the code cells, their number, the source), if one is active. (papermill
    calls no notebook-level hooks: :func:`execute` reports the end itself.)"""
    from .progress import cell_hook

    report = cell_hook()
    if report is None:
        return {}
    code = [i for i, c in enumerate(node.cells) if c.cell_type == "code" and c.source.strip()]
    position = {i: k + 1 for k, i in enumerate(code)}

    def on_cell_start(cell, cell_index, **_):
        if cell_index in position:  # nbclient calls it for markdown cells too
            report(position[cell_index], len(code), cell.source)

    return {"on_cell_start": on_cell_start}


def _whole_notebook(path: Path) -> bool:
    """Whether ``path`` is a complete notebook file (not absent, empty or cut short)."""
    import json

    try:
        with open(path, "rb") as f:
            return isinstance(json.load(f).get("cells"), list)
    except (OSError, ValueError, AttributeError):
        return False


#: How much of a kernel's stderr is kept (:class:`_StderrTail`).
TAIL_BYTES = 4096


class _StderrTail:
    """A kernel's stderr, read through a pipe by a thread that keeps only its last
    :data:`TAIL_BYTES`: nothing of it reaches kmm's stderr or the disk, however much a kernel
    writes, and its last line is quoted when the kernel fails (:meth:`last_line`)."""

    def __init__(self):
        self._read, self.write_fd = os.pipe()
        self._tail = bytearray()
        self._done = threading.Event()
        threading.Thread(target=self._drain, name="kernel-stderr", daemon=True).start()

    def _drain(self) -> None:
        try:
            while chunk := os.read(self._read, 65536):
                self._tail += chunk
                if len(self._tail) > 2 * TAIL_BYTES:
                    del self._tail[:-TAIL_BYTES]
        finally:
            os.close(self._read)
            self._done.set()

    def close_writer(self) -> None:
        """Close kmm's copy of the pipe's write end (the kernel keeps its own), so that the
        reader sees the end of the stream when the kernel exits."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def last_line(self, wait: float = 2.0) -> str:
        """The last non-blank line the kernel wrote (of its last :data:`TAIL_BYTES`), or '';
        waits up to ``wait`` seconds for a dead kernel's last writes to be read."""
        self.close_writer()
        self._done.wait(wait)
        return _last_line(bytes(self._tail[-TAIL_BYTES:]))


def _kernel_manager(tail: _StderrTail) -> type:
    """nbclient's kernel manager with the kernel's stderr sent to ``tail``, not inherited.

    A kernel's own messages (under load, pyzmq's "Uncaught exception in ZMQStream callback"
    traceback as the kernel shuts down, or a crash report) would otherwise reach kmm's
    stderr, where every failure is one line. What a cell prints still reaches the executed
    copy (ipykernel captures it)."""
    from jupyter_client import AsyncKernelManager

    class TailedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            kw["stderr"] = tail.write_fd
            try:
                await super()._async_launch_kernel(kernel_cmd, **kw)
            finally:
                tail.close_writer()   # the kernel holds its own copy of the descriptor

    return TailedKernelManager


def _last_line(text: bytes) -> str:
    """The last non-blank line of ``text`` (a kernel's stderr), shortened to one line, or ''."""
    lines = text.decode(errors="replace").splitlines()
    return next((_one_line(x, 160) for x in reversed(lines) if x.strip()), "")


def _literal_path(path: Path) -> str:
    """``path`` as papermill must be given it: it formats output paths with the parameters
    (``str.format``), so braces are doubled to stay literal."""
    return str(path).replace("{", "{{").replace("}", "}}")


def execute(notebook: Path, parameters: Mapping[str, Any], out_path: Path, *, cwd: Path,
            timeout: float | None = None, data_dir: Path | None = None,
            start_timeout: float = 120, html: bool = True) -> Path:
    """Execute ``notebook`` with ``parameters`` and write the executed copy to ``out_path``.

    Parameters
    ----------
    notebook : the stored notebook (its ``parameters`` cell is overridden by an injected cell)
    parameters : plain values, already validated (:mod:`kmm.suite.params`)
    out_path : the executed copy; written in a private temporary folder beside it and renamed,
        so it is either the complete new copy or untouched (a link there is refused)
    cwd : the kernel's working directory (the project root)
    timeout : seconds allowed per cell (None: no limit)
    data_dir : the kernel's ``KMM_DATA_DIR`` (where claims, frames and charts go); default
        ``$KMM_DATA_DIR`` or ``<cwd>/data``
    start_timeout : seconds to wait for the kernel to start
    html : also write ``<stem>.html`` beside the copy (:func:`render_html`)

    Returns
    -------
    ``out_path``.

    Raises
    ------
    KmmError
        one line naming the notebook and the failing cell's error; the executed copy of a
        failed run is kept as ``<stem>.failed.ipynb`` beside ``out_path``.
    """
    notebook = Path(notebook)
    out_path = Path(out_path)
    where = display_path(notebook)
    if not notebook.is_file():
        raise ConfigError("no such notebook", where)
    data = Path(data_dir or os.environ.get("KMM_DATA_DIR") or Path(cwd) / "data").resolve()
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output folder: {e.strerror}",
                          display_path(out_path.parent)) from None
    from . import safefs

    safefs.check_target(out_path)
    safefs.check_target(failed_path(out_path))
    node = parameterize(notebook, parameters)
    tmpdir = safefs.private_tempdir(out_path.parent, out_path.name)
    tmp = tmpdir / out_path.name

    import logging
    import sys

    # nbformat's jsonschema optionally imports rfc3987_syntax, which builds a parser at import
    # (about 1.3 s of CPU); only the JSON Schema `iri` format needs it, and nbformat never does.
    sys.modules.setdefault("rfc3987_syntax", None)
    import papermill
    from papermill.exceptions import PapermillExecutionError

    # every failure is raised and reported in one line (nbclient logs a dead kernel too)
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    from .progress import cell_hook

    hooks = _cell_progress(node)
    failure: KmmError | None = None
    try:
        for attempt in (1, 2):
            tail = _StderrTail()
            try:
                with _env(KMM_DATA_DIR=str(data)):
                    # the parameters are already in the node: papermill injects nothing
                    papermill.execute_notebook(
                        copy.deepcopy(node), _literal_path(tmp), parameters=None,
                        kernel_name=KERNEL, language="python", cwd=str(cwd),
                        progress_bar=False, log_output=False, start_timeout=start_timeout,
                        execution_timeout=timeout,
                        extra_arguments=["--IPKernelApp.log_level=ERROR"],
                        kernel_manager_class=_kernel_manager(tail), **hooks)
                break
            except PapermillExecutionError as e:
                failure = KmmError(f"cell [{e.exec_count}]: {e.ename}: {_one_line(e.evalue)}", where)
                break
            except Exception as e:  # noqa: BLE001 (any kernel failure becomes one line)
                if attempt == 1 and _is_start_failure(e):
                    tmp.unlink(missing_ok=True)
                    continue
                kind = "timed out" if type(e).__name__ == "CellTimeoutError" else type(e).__name__
                said = tail.last_line()
                failure = KmmError(f"{kind}: {_one_line(e)}"
                                   + (f" (kernel stderr: {said})" if said else ""), where)
                break
            finally:
                tail.close_writer()   # a kernel that never started still has it open here
        if hooks:
            cell_hook()(0, 0, "")  # the notebook stopped: no cell is running
        if failure is not None:
            if _whole_notebook(tmp):  # a copy cut short (a full disk) is not kept
                kept = safefs.move(tmp, failed_path(out_path))
                failure = KmmError(f"{failure.message} (executed copy: {display_path(kept)})", where)
            raise failure
        if html:
            render_html(tmp)
        html_tmp = tmp.with_suffix(".html")
        safefs.move(tmp, out_path)
        if html_tmp.is_file():
            safefs.move(html_tmp, out_path.with_suffix(".html"))
        failed_path(out_path).unlink(missing_ok=True)
    finally:
        safefs.remove_tree(tmpdir)
    return out_path


#: ``<script src=...>`` elements that load from the network (nbconvert's require.js and MathJax).
_REMOTE_SCRIPT = re.compile(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>', re.I)


def render_html(ipynb: Path) -> Path | None:
    """Write ``<stem>.html`` beside an executed notebook: its cells and outputs (each chart as
    its PNG) in one page that loads nothing from the network (nbconvert's require.js and
    MathJax links are dropped: math shows as its TeX). The report links it. A notebook that
    cannot be rendered gets a one-line warning and no page; its run still counts."""
    try:
        import nbformat
        from nbconvert import HTMLExporter

        nb = nbformat.read(str(ipynb), as_version=4)
        body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(nb)
    except Exception as e:  # noqa: BLE001 (a rendering is a convenience, never a failure)
        warn(f"{display_path(ipynb)}: no HTML rendering ({_one_line(e, 160)})")
        return None
    from . import safefs

    out = ipynb.with_suffix(".html")
    safefs.write_bytes(out, _REMOTE_SCRIPT.sub("", body).encode(), root=ipynb.parent)
    return out
