"""Small pieces every command line shares."""

from __future__ import annotations

import argparse
import os
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
    version: bool = True,
) -> argparse.ArgumentParser:
    """The ``ArgumentParser`` of a command: its help formatter and the shared ``--version`` flag."""
    parser = _Parser(prog=prog, description=description, epilog=epilog, formatter_class=formatter_class)
    if version:
        parser._version = add_version_flag(parser)._actions[-1]
    return parser


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
