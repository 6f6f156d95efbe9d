"""Worker processes that never outlive the process that started them.

``kmm sweep`` and ``kmm reproduce`` run points and notebooks in spawned worker processes.
:func:`die_with_parent`, their initializer, asks Linux to send the worker SIGKILL when its
parent dies (``prctl(PR_SET_PDEATHSIG)``), so ``kill -9`` of the parent leaves no worker
running; a notebook kernel a worker started exits by itself when the worker is gone (ipykernel
polls its parent process).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make this process die with ``parent_pid`` (its parent); exit now if it is gone already.

    Elsewhere than Linux this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
