"""Small pieces every command line shares."""

from __future__ import annotations

import argparse

from landmarks import __version__


def add_version_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--version`` prints the toolkit version (the same for every command)."""
    parser.add_argument("--version", action="version", version=f"%(prog)s (edge-landmarks {__version__})")
    return parser
