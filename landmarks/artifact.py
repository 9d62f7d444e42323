"""The one place artifact metadata is read and written, and artifacts are placed.

Usage::

    from landmarks import artifact

    meta = artifact.read_metadata("student.int8.onnx")      # ONNX metadata_props or TFLite sidecar
    artifact.write_onnx_metadata(proto, meta)                 # before onnx.save
    artifact.write_sidecar("student.tflite", meta)            # student.tflite.json, layout NHWC
    final = artifact.place("work/student.tflite", passed=True, release_dir="release",
                           rejected_dir="rejected")          # sidecar travels with it

The keys and their string encoding are :class:`~landmarks.metadata.ArtifactMetadata`'s
(``docs/DESIGN.md``, "Artifact metadata"); this module knows where each format keeps them:
ONNX in ``metadata_props``, TFLite in a sidecar JSON named ``<file>.json`` (``model.tflite.json``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from landmarks.atomic import atomic_path, write_json
from landmarks.errors import ModelError
from landmarks.metadata import PREFIX, ArtifactMetadata

SIDECAR_SUFFIX = ".json"


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """Where the metadata of ``model.tflite`` lives: ``model.tflite.json``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sidecars(path: str | os.PathLike[str]) -> list[Path]:
    """The sidecar files that exist beside ``path`` and travel with it (zero or one)."""
    return [p for p in (sidecar_path(path),) if p.is_file()]


def metadata_from_props(props: Mapping[str, str], where: str) -> ArtifactMetadata:
    """Metadata from ONNX ``metadata_props`` (or onnxruntime's ``custom_metadata_map``)."""
    return ArtifactMetadata.from_strings(dict(props), where=where)


def read_onnx_metadata(model: str | os.PathLike[str] | Any, where: str | None = None) -> ArtifactMetadata:
    """Metadata of an ONNX file or loaded ``ModelProto``; a missing key is a :class:`ModelError`."""
    if isinstance(model, str | os.PathLike):
        import onnx

        where = where or str(model)
        model = onnx.load(str(model), load_external_data=False)
    return metadata_from_props({p.key: p.value for p in model.metadata_props}, where or "ONNX model")


def write_onnx_metadata(model: Any, metadata: ArtifactMetadata) -> None:
    """Replace the metadata keys in a ``ModelProto``'s ``metadata_props``, keeping any other keys."""
    strings = metadata.to_strings()
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*kept, *strings.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_sidecar(path: str | os.PathLike[str]) -> ArtifactMetadata:
    """Metadata of a ``.tflite`` file (``model.tflite.json``, else ``model.json``)."""
    path = Path(path)
    candidates = [sidecar_path(path), path.with_suffix(SIDECAR_SUFFIX)]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ModelError(
            f"{path}: no metadata sidecar ({candidates[0].name}) beside the model; "
            "pass metadata= explicitly to run it anyway"
        )
    try:
        data = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{found}: unreadable metadata sidecar ({err})") from None
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
        data = data["metadata"]
    if not isinstance(data, dict):
        raise ModelError(f"{found}: metadata sidecar must be a JSON object of metadata keys")
    return ArtifactMetadata.from_strings(
        {k: _as_string(v) for k, v in data.items() if k.startswith(PREFIX)}, where=str(found)
    )


def write_sidecar(tflite_path: str | os.PathLike[str], metadata: ArtifactMetadata) -> Path:
    """The metadata of a ``.tflite`` file, in ``<file>.tflite.json`` beside it (atomic); TFLite is NHWC."""
    return write_json(sidecar_path(tflite_path), metadata.replace(layout="NHWC").to_strings())


def read_metadata(path: str | os.PathLike[str]) -> ArtifactMetadata:
    """Metadata of an ``.onnx`` or ``.tflite`` artifact, by suffix."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return read_onnx_metadata(path)
    if path.suffix.lower() == ".tflite":
        return read_sidecar(path)
    raise ModelError(f"{path}: no artifact metadata for a {path.suffix or 'suffix-less'} file (.onnx or .tflite)")


def copy_with_sidecar(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy an artifact (and its sidecar, renamed to match) to ``dst``; sidecar first."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for sidecar in sidecars(src):
        shutil.copyfile(sidecar, sidecar_path(dst))
    shutil.copyfile(src, dst)
    return dst


def place(
    path: str | os.PathLike[str],
    passed: bool,
    release_dir: str | os.PathLike[str],
    rejected_dir: str | os.PathLike[str],
) -> Path:
    """Move a gated file (and its sidecar) to ``release_dir`` when it passed, else ``rejected_dir``.

    Each move is atomic (a rename, or a copy to a temporary name beside the target and a rename),
    sidecar first, so a crash never leaves a half-copied artifact under its final name, nor a
    model without its metadata. Returns the new path.
    """
    path = Path(path)
    dest_dir = Path(release_dir if passed else rejected_dir)
    dest = dest_dir / path.name
    for src, dst in [*[(s, dest_dir / s.name) for s in sidecars(path)], (path, dest)]:
        _atomic_move(src, dst)
    return dest


def _atomic_move(src: Path, dst: Path) -> None:
    if src.resolve() == dst.resolve():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError:  # another filesystem: copy to a temp name beside dst, then rename
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        src.unlink()


def _as_string(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)
