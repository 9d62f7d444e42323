"""Small pieces every command line shares: the parser, ``--version``, and the options that mean the
same in every command (``--threads``, ``--progress``, ``--device``, ``--seed``, ``--data``,
``--out``): one name, one default and one help text each, defined here only."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from landmarks import __version__
from landmarks.errors import ConfigError


def add_version_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--version`` prints the toolkit version (the same for every command)."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (edge-landmarks {__version__})")
    return parser


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that shows ``--version`` after the command's own options.

    :func:`new_parser` adds the flag first; help and usage still list it last, as they did when
    every command added it once its options were defined.
    """

    _version: argparse.Action | None = None

    def _version_last(self) -> None:
        if self._version is not None:
            for actions in (self._actions, self._optionals._group_actions):
                if self._version in actions:
                    actions.remove(self._version)
                    actions.append(self._version)

    def format_usage(self) -> str:
        self._version_last()
        return super().format_usage()

    def format_help(self) -> str:
        self._version_last()
        return super().format_help()


def new_parser(
    prog: str,
    description: str,
    epilog: str | None = None,
    formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter,
) -> argparse.ArgumentParser:
    """The ``ArgumentParser`` of a command: its help formatter and the shared ``--version`` flag."""
    parser = _Parser(prog=prog, description=description, epilog=epilog, formatter_class=formatter_class)
    parser._version = add_version_flag(parser)._actions[-1]
    return parser


DEVICES = ("auto", "cpu", "cuda")


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_threads(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--threads N``: inference threads; default the runtime's own choice."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="inference threads (default: the runtime's choice)")


def add_progress(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--progress/--no-progress``; default: bars when stderr is a terminal (see :func:`show_progress`)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress on stderr (default: bars on a terminal, a line now and then in a log)")


def show_progress(flag: bool | None) -> bool:
    """The value of ``--progress``: as given, else whether stderr is a terminal."""
    return sys.stderr.isatty() if flag is None else flag


def add_device(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="torch device for training (auto: CUDA when available, else CPU)")


def add_seed(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed; a run is deterministic for a seed")


def add_data(parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "training faces") -> None:
    """``--data``: a dataset path (several joined by commas) or ``synthetic[:N]``."""
    parser.add_argument("--data", default="synthetic",
                        help=f"{what}: a dataset path (comma-separated for several), or synthetic[:N]")


def add_out(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None, what: str) -> None:
    """``--out``: where the command writes (``what`` says which files, and the default when it is None)."""
    parser.add_argument("--out", default=default, help=what if default is None else f"{what} (default: {default})")


def check_output_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be one, before any work is done.

    A path that is an existing regular file, or that lies below one, raises
    :class:`~landmarks.errors.ConfigError` (one line, exit 2). Nothing is created here:
    commands create the folder only once their inputs are validated.
    """
    out = Path(path)
    for candidate in (out, *out.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == out else f"is below the file {candidate}"
                raise ConfigError(f"{flag} {out} {where}, not a folder")
            if not os.access(candidate, os.W_OK):
                raise ConfigError(f"{flag} {out}: {candidate} is not writable")
            break
    return out


def check_output_file(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Like :func:`check_output_dir` for a file target: it may exist as a file, not as a folder."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"{flag} {out} is a folder, not a file")
    check_output_dir(out.parent, flag)
    return out
