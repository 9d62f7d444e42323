"""Atomic file writes: write to a temporary file beside the target, then rename.

A crashed or killed process therefore never leaves a half-written artifact under its final
name. Every file the project writes for a user goes through here, and :func:`read_json`
reads back the JSON ones (manifests) with one-line errors.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from landmarks.errors import LandmarksError, ModelError


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_PUBLIC_MODE = _umask_mode()


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``.

    For tools that insist on writing a file themselves (onnx.save, converters, savefig).
    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.",
        suffix=suffix if suffix is not None else target.suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, _PUBLIC_MODE)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(
    path: str | os.PathLike[str],
    what: str,
    check: Callable[[Any], bool] | None = None,
    *,
    missing: str | None = None,
    error: type[LandmarksError] = ModelError,
) -> Any:
    """Read a JSON file back; every failure is one line ``error(f"{path}: ...")``.

    ``missing``, when given, is the message for a file that does not exist (otherwise the
    ``OSError`` propagates); a file that does not parse is "not valid JSON"; a value that
    ``check`` rejects is "not a {what}".
    """
    path = Path(path)
    if missing is not None and not path.is_file():
        raise error(f"{path}: {missing}")
    try:
        obj = json.loads(path.read_text())
    except ValueError as err:
        raise error(f"{path}: not valid JSON ({err})") from None
    if check is not None and not check(obj):
        raise error(f"{path}: not a {what}")
    return obj
