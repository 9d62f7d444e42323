"""Errors a user can cause, and the one place that turns them into a clean exit.

Every CLI wraps its body in :func:`cli_errors`: a :class:`LandmarksError` becomes one line
on stderr and exit status 2 (usage or input error, docs/DESIGN.md, "Gate"); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


class LandmarksError(Exception):
    """Base class of errors caused by user input; the message is shown as-is."""


class DataError(LandmarksError):
    """A dataset, image or annotation file is missing, malformed or inconsistent."""


class ConfigError(LandmarksError):
    """A configuration value (CLI flag, recipe key) is invalid."""


class ModelError(LandmarksError):
    """A checkpoint or model artifact is missing, corrupt or of the wrong kind."""


class UnsupportedBackendError(LandmarksError):
    """An optional runtime or converter is not installed."""


@contextmanager
def cli_errors(prog: str) -> Iterator[None]:
    """Turn user errors into one line and exit 2; Ctrl-C into exit 130 without a traceback."""
    try:
        yield
    except LandmarksError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
            with suppress(ValueError):
                signal.signal(sig, signal.SIG_IGN)
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
