"""Stage records: what a stage was run on (input hash) and what it produced (output hashes).

A stage is skipped when ``stages/<name>.json`` holds the same input hash and every output it
lists still exists with the recorded sha256. The record is written atomically and last, so a
stage killed midway has no record and runs again (resuming from its own state files).

The input hash is sha256 over the stage's config section(s), the hashes of its input files
and the fingerprints of its data sets, serialized as sorted JSON; output paths never enter it,
so a run folder can be moved or copied without losing its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from landmarks.atomic import write_json, write_text
from landmarks.models.checkpoint import file_sha256

RECORD_VERSION = 2  # 2: the quantize record carries each INT8 verdict ("gate"), which the gate stage uses


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


@cache
def folder_sha256(folder: str) -> str:
    """sha256 over the relative names and bytes of every file under ``folder`` (sorted)."""
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


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
