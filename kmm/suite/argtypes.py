"""Argument types of the ``kmm`` commands: every argument is checked before any work starts.

Each function is an argparse ``type=``: it returns the parsed value or raises
``argparse.ArgumentTypeError`` with a one-line reason, which the CLI prints as
``kmm: error: <command>: argument <name>: <reason>`` with exit status 2.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

#: Longest time limit accepted, in seconds (a week): beyond it a typo, not a limit.
MAX_SECONDS = 7 * 24 * 3600.0
_SCHEDULER_RE = re.compile(
    r"^(tcp|tls|inproc|ucx|ws|wss)://"        # a dask.distributed address with its protocol
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"   # host, name or [IPv6]
    r"(:\d{1,5})?/?$")


def _printable(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in ``[lo, hi]``."""
    def parse(text: str) -> int:
        t = text.strip()
        if not re.fullmatch(r"[+-]?\d{1,20}", t):
            raise argparse.ArgumentTypeError(f"must be an integer, got {_printable(text)!r}")
        n = int(t)
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {n}")
        return n
    parse.__name__ = "integer"
    return parse


def seconds(text: str) -> float:
    """A time limit: a finite number of seconds, > 0 and at most a week."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got "
                                         f"{_printable(text)!r}") from None
    if not math.isfinite(x) or not 0 < x <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds in (0, "
                                         f"{MAX_SECONDS:.0f}], got {_printable(text)}")
    return x


def name(text: str) -> str:
    """A plain name (a variant, a grid, a params stem): see :func:`kmm.suite.params.check_name`."""
    from ..errors import ConfigError
    from .params import check_name

    try:
        return check_name(text, "", "")
    except ConfigError as e:
        raise argparse.ArgumentTypeError(e.message.replace("a  name", "a name")) from None


def text(value: str) -> str:
    """A non-empty argument without NUL or newline characters, at most 4096 characters."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    if "\0" in value or "\n" in value or "\r" in value:
        raise argparse.ArgumentTypeError("must not contain NUL or newline characters")
    if len(value) > 4096:
        raise argparse.ArgumentTypeError("is longer than 4096 characters")
    return value


def path(value: str):
    """A file-system path without NUL or newline characters."""
    from pathlib import Path

    return Path(text(value))


def scheduler(text: str) -> str:
    """A dask.distributed scheduler address: ``tcp://host:port`` (or tls, inproc, ucx, ws)."""
    if not _SCHEDULER_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"must be a scheduler address like tcp://host:8786, got {_printable(text)!r}")
    return text
