"""Errors, exit codes, and the one place that turns them into a clean exit.

Exit status (the same for every command; README "Exit status", docs/DESIGN.md "Exit status"):

====  ===========================================================================
0     success
1     an artifact was rejected by the accuracy gate (and nothing else)
2     usage or input error: what the user gave is wrong (one line on stderr)
3     internal error: a failure inside the tool (one line naming the step, the
      traceback in a log file whose path the line gives)
====  ===========================================================================

Every CLI wraps its body in :func:`cli_errors`. A :class:`LandmarksError` is the user's (exit 2);
:class:`GateRejected` is a verdict (exit 1); anything else is the tool's (exit 3). Code that works
on the tool's own intermediate files (a quantized candidate, a converted graph) runs inside
:func:`step` with ``own_files=True``, so even an "invalid model" error there is reported as the
tool's, naming the step, never as if the user's input were at fault.
"""

from __future__ import annotations

import contextvars
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

ERROR_LOG = "error.log"


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


class GateRejected(Exception):  # noqa: N818 - a verdict, not an error of the tool or the user
    """An artifact was rejected by an acceptance check (accuracy gate, export parity): exit 1."""


class InternalError(Exception):
    """A failure inside the tool at a named ``step``: a bug, or a broken file the tool made.

    ``log`` is where the full traceback was written, when it was (a recipe's ``stages/log.txt``).
    """

    def __init__(self, step: str, message: str, log: Path | None = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.log = log


_current_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("landmarks_step", default=None)


def describe(err: BaseException) -> str:
    """``Type: first line of the message``, for a one-line report."""
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


@contextmanager
def step(name: str, *, own_files: bool = False) -> Iterator[None]:
    """Name the work inside, for the one-line report of an internal error.

    An unexpected exception becomes an :class:`InternalError` of ``name`` (its traceback kept as
    the cause). With ``own_files``, the work reads only files the tool itself made, so a
    :class:`LandmarksError` there is the tool's too.
    """
    token = _current_step.set(name)
    try:
        yield
    except (InternalError, GateRejected, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except LandmarksError as err:
        if own_files:
            raise InternalError(name, str(err)) from err
        raise
    except Exception as err:
        raise InternalError(name, describe(err)) from err
    finally:
        _current_step.reset(token)


def current_step() -> str | None:
    return _current_step.get()


@dataclass
class ErrorLog:
    """Where :func:`cli_errors` writes the traceback of an internal error; a command sets
    ``folder`` once it knows its output folder (else the system's temp folder is used)."""

    prog: str
    folder: Path | None = None

    def write(self, err: BaseException) -> Path:
        text = "".join(traceback.format_exception(err))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        entry = f"{stamp} {self.prog}\n{text}\n"
        folder = self.folder
        if folder is not None:
            with suppress(OSError):
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / ERROR_LOG
                with open(path, "a") as handle:
                    handle.write(entry)
                return path
        handle, name = tempfile.mkstemp(prefix="edge-landmarks-", suffix=".log")
        with os.fdopen(handle, "w") as f:
            f.write(entry)
        return Path(name)


@contextmanager
def cli_errors(prog: str) -> Iterator[ErrorLog]:
    """The exit codes of the module docstring, each with one line on stderr."""
    errors = ErrorLog(prog)
    try:
        yield errors
    except LandmarksError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except GateRejected as err:
        print(f"{prog}: rejected: {err}", file=sys.stderr)
        raise SystemExit(EXIT_REJECTED) from None
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
            with suppress(ValueError):
                signal.signal(sig, signal.SIG_IGN)
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as err:
        if isinstance(err, InternalError):
            where, message, log = f" in {err.step}", err.message, err.log
        else:
            where, message, log = "", describe(err), None
        if log is None:
            log = errors.write(err)
        print(f"{prog}: internal error{where}: {message} (traceback: {log})", file=sys.stderr)
        raise SystemExit(EXIT_INTERNAL) from None
