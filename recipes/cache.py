"""Stage records: what a stage was run on (input hash) and what it produced (output hashes).

A stage is skipped when ``stages/<name>.json`` holds the same input hash and every output it
lists still exists with the recorded sha256. The record is written atomically and last, so a
stage killed midway has no record and runs again (resuming from its own state files).

The input hash is sha256 over the stage's config section(s), the hashes of its input files,
the fingerprints of its data sets and the hash of the source code that runs it
(:func:`code_hash`), serialized as sorted JSON; output paths never enter it, so a run folder can
be moved or copied without losing its cache, and a code change re-runs the stages it touches.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landmarks.atomic import write_json, write_text
from landmarks.models.checkpoint import file_sha256

RECORD_VERSION = 3  # the layout of a stage record; 3: the input hash covers the stage's source code

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_SUFFIXES = (".py", ".json")  # code, and the package data the code reads (the synthetic face template)
NOT_CODE = ("zoo",)  # folders of shipped models, which no stage runs


def hash_inputs(obj: Any) -> str:
    """sha256 of a JSON-serializable description of a stage's inputs."""
    text = json.dumps({"record_version": RECORD_VERSION, **obj}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def data_fingerprint(spec_items: tuple[str, ...] | None) -> list[str] | None:
    """Content identity of a data spec: ``synthetic:N`` is itself; a folder hashes its files."""
    if spec_items is None:
        return None
    return [item if item.startswith("synthetic") else folder_sha256(str(Path(item).resolve()))
            for item in spec_items]


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """A file's sha256, recomputed whenever its size or modification time changes."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = file_sha256(path)
    return _FILE_HASHES[key]


def _files_sha256(root: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(_cached_sha256(path).encode())
    return digest.hexdigest()


def folder_sha256(folder: str | os.PathLike[str]) -> str:
    """sha256 over the relative names and bytes of every file under ``folder`` (sorted).

    Each file's hash is kept for the life of the process under its size and modification time,
    so a folder whose files change is hashed anew, and an unchanged one costs a directory walk.
    """
    root = Path(folder)
    return _files_sha256(root, (p for p in root.rglob("*") if p.is_file()))


def code_hash(sources: Iterable[str], root: Path | None = None) -> str:
    """sha256 of the source files behind a stage: each entry of ``sources`` is a package folder
    (every ``.py`` / ``.json`` file below it, shipped models excluded) or one file, relative to the
    repository root (:data:`REPO_ROOT` unless ``root`` is given)."""
    root = REPO_ROOT if root is None else root
    files: set[Path] = set()
    for source in sources:
        path = root / source
        if path.is_file():
            files.add(path)
            continue
        for candidate in path.rglob("*"):
            parts = candidate.relative_to(root).parts
            if (candidate.suffix in SOURCE_SUFFIXES and candidate.is_file() and "__pycache__" not in parts
                    and not any(p in NOT_CODE for p in parts)):
                files.add(candidate)
    if not files:
        raise FileNotFoundError(f"no source files under {', '.join(sources)} in {root}")
    return _files_sha256(root, files)


@dataclass
class StageRecord:
    """``stages/<stage>.json``: written once the stage's outputs are complete."""

    stage: str
    input_hash: str
    outputs: dict[str, str]  # path relative to the run folder -> sha256
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    completed: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "input_hash": self.input_hash,
            "outputs": self.outputs,
            "seconds": round(self.seconds, 2),
            "completed": self.completed,
            "details": self.details,
        }


class StageStore:
    """The ``stages/`` folder of one run and its human-readable log (``stages/log.txt``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "stages"
        self.log_path = self.folder / "log.txt"

    def record_path(self, stage: str) -> Path:
        return self.folder / f"{stage}.json"

    def started_path(self, stage: str) -> Path:
        return self.folder / f"{stage}.started.json"

    def load(self, stage: str) -> StageRecord | None:
        path = self.record_path(stage)
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            return StageRecord(raw["stage"], raw["input_hash"], dict(raw["outputs"]), float(raw["seconds"]),
                               dict(raw.get("details", {})), str(raw.get("completed", "")))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable record: the stage simply runs again

    def valid(self, stage: str, input_hash: str) -> StageRecord | None:
        """The record if the stage can be skipped: same inputs, outputs intact."""
        record = self.load(stage)
        if record is None or record.input_hash != input_hash:
            return None
        for rel, digest in record.outputs.items():
            path = self.run_dir / rel
            if not path.is_file() or file_sha256(path) != digest:
                return None
        return record

    def begin(self, stage: str, input_hash: str) -> bool:
        """Mark ``stage`` as running on ``input_hash``; True if an interrupted run of the same
        inputs was in progress (the stage may resume from its own state files)."""
        started = self.started_path(stage)
        resumable = False
        if started.is_file():
            try:
                resumable = json.loads(started.read_text()).get("input_hash") == input_hash
            except ValueError:
                resumable = False
        self.record_path(stage).unlink(missing_ok=True)
        write_json(started, {"stage": stage, "input_hash": input_hash, "started": _now()})
        return resumable

    def finish(self, record: StageRecord) -> None:
        record.completed = _now()
        write_json(self.record_path(record.stage), record.to_dict())
        self.started_path(record.stage).unlink(missing_ok=True)

    def outputs(self, paths: list[Path]) -> dict[str, str]:
        """``{relative path: sha256}`` of files inside the run folder."""
        return {os.path.relpath(p, self.run_dir): file_sha256(p) for p in paths}

    def log(self, line: str) -> None:
        """Append a line to ``stages/log.txt`` (rewritten atomically) and echo it."""
        print(line, flush=True)
        previous = self.log_path.read_text() if self.log_path.is_file() else ""
        write_text(self.log_path, previous + f"{_now()} {line}\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
