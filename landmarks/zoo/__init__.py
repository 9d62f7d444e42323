"""Shipped models: the release artifacts of one recipe run, copied into the package.

``landmarks/zoo/`` holds the FP32 ONNX, INT8 ONNX and INT8 TFLite (+ sidecar) files of one
finished recipe run, a trimmed ``manifest.json`` (each file's sha256 and size, its test-set
metrics and gate verdict, the recipe and commit that made it) and a ``MODEL_CARD.md``
generated from that manifest. :func:`default_model` is what ``python -m landmarks.predict``
and :class:`landmarks.api.FaceLandmarker` use when no model is given. The folder is filled by
``python -m landmarks.zoo publish RUN_DIR`` (:mod:`landmarks.zoo.publish`), never by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from landmarks.atomic import read_json
from landmarks.errors import ModelError

ZOO_DIR = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
MODEL_CARD = "MODEL_CARD.md"
NO_MODEL = "no shipped model; pass --model"


def load_manifest(zoo_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The zoo's trimmed manifest, or ``None`` while nothing has been published."""
    path = Path(zoo_dir or ZOO_DIR) / MANIFEST
    if not path.is_file():
        return None
    return read_json(path, "zoo manifest (no 'artifacts' list)",
                     lambda m: isinstance(m, dict) and isinstance(m.get("artifacts"), list))


def default_model(zoo_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the shipped INT8 ONNX model; a :class:`ModelError` when the zoo is empty."""
    zoo = Path(zoo_dir or ZOO_DIR)
    manifest = load_manifest(zoo)
    if manifest is None or not manifest.get("default"):
        raise ModelError(NO_MODEL)
    path = zoo / manifest["default"]
    if not path.is_file():
        raise ModelError(f"{path}: the shipped model listed in {zoo / MANIFEST} is missing; pass --model")
    return path


def listed_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file the manifest lists (artifacts and their sidecars): ``file``, ``bytes``, ``sha256``."""
    out = []
    for entry in manifest["artifacts"]:
        out.append(entry)
        if entry.get("sidecar"):
            out.append(entry["sidecar"])
    return out


def verify(zoo_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Problems of a published zoo: a listed file missing, or with another size or sha256."""
    from landmarks.models.checkpoint import file_sha256

    zoo = Path(zoo_dir or ZOO_DIR)
    manifest = load_manifest(zoo)
    if manifest is None:
        return [f"{zoo}: no {MANIFEST} (nothing published)"]
    problems = []
    for entry in listed_files(manifest):
        path = zoo / entry["file"]
        if not path.is_file():
            problems.append(f"{entry['file']} is missing")
        elif path.stat().st_size != entry["bytes"]:
            problems.append(f"{entry['file']} has {path.stat().st_size} bytes, the manifest says {entry['bytes']}")
        elif file_sha256(path) != entry["sha256"]:
            problems.append(f"{entry['file']}: sha256 does not match the manifest")
    return problems


__all__ = ["MANIFEST", "MODEL_CARD", "NO_MODEL", "ZOO_DIR", "default_model", "listed_files", "load_manifest",
           "verify"]
