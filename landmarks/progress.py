"""Progress for long loops: a tqdm bar on a terminal, a plain line every so often in a log.

tqdm draws nothing useful into a file or a CI log, so without a terminal a command prints
``label: 200/554 faces (36 %), 12 s`` every ``every`` items and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def log_progress(items: Iterable[T], label: str, *, total: int | None = None, every: int = 100,
                 unit: str = "images", stream: TextIO | None = None) -> Iterator[T]:
    """Yield ``items``, writing one line to ``stream`` (stderr) per ``every`` items and at the end."""
    stream = stream or sys.stderr
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    start = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        if done % every == 0 and done != total:
            _line(stream, label, done, total, unit, start)
    _line(stream, label, done, total, unit, start)


def _line(stream: TextIO, label: str, done: int, total: int | None, unit: str, start: float) -> None:
    of = f"/{total} {unit} ({100 * done / total:.0f} %)" if total else f" {unit}"
    print(f"{label}: {done}{of}, {time.monotonic() - start:.0f} s", file=stream, flush=True)


def progress(items: Iterable[T], label: str, *, total: int | None = None, every: int = 100,
             unit: str = "images", enabled: bool | None = None) -> Iterable[T]:
    """tqdm on a terminal (stderr), :func:`log_progress` lines otherwise; ``enabled=False``: nothing."""
    if enabled is False:
        return items
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, desc=label, total=total, unit=unit.rstrip("s"), leave=False)
    return log_progress(items, label, total=total, every=every, unit=unit)
