"""Errors a user can cause. The CLI prints each as one line and exits non-zero."""


class KmmError(Exception):
    """A user-facing error: ``where`` names the file, key or argument at fault."""

    def __init__(self, message: str, where: str | None = None):
        self.message = message
        self.where = where
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigError(KmmError, ValueError):
    """A configuration value of the wrong type or outside its allowed range or set."""


class RunFailed(KmmError):
    """A notebook that started but did not finish (exit status 1, not a user mistake)."""


class TraceError(KmmError, ValueError):
    """A malformed or truncated address trace; ``where`` is ``file:line``."""


def warn(text: str) -> None:
    """Print a warning as one line ``kmm: warning: <text>`` on stderr (never raises)."""
    import sys

    line = " ".join(str(text).split())
    try:
        print(f"kmm: warning: {line}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
