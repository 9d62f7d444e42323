"""``manifest.json`` (docs/DESIGN.md, "Manifest"): the single source of truth of a finished run.

It is written atomically and only after every stage finished and the release folder is in
place; while a run is being published the previous manifest is removed first, so a crash
never leaves a manifest describing files that are not there (or claiming success for a
partial run). ``status`` is ``complete`` in every manifest this module writes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import subprocess
import time
from pathlib import Path
from typing import Any

from landmarks.atomic import write_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
VERSIONED = ("torch", "onnx", "onnxruntime", "tensorflow")
ALSO_VERSIONED = ("onnx2tf", "ai-edge-litert", "numpy")


def build_manifest(
    *,
    recipe_name: str,
    recipe_file: str,
    config: dict[str, Any],
    results: dict[str, Any],
    required: tuple[str, ...],
    stages: dict[str, dict[str, Any]],
    checkpoints: dict[str, str | None],
    wall_seconds: float,
    datasets: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The manifest of one run; ``results`` is the gate stage's ``results.json``."""
    artifacts = []
    for entry in results["artifacts"]:
        artifacts.append({**entry, "required": entry["name"] in required})
    rejected = [a["name"] for a in artifacts if a["required"] and a["verdict"] != "pass"]
    if results["references"].get("torch_fp32", {}).get("verdict") == "reject":  # the pruned student's own gate
        rejected.insert(0, "torch_fp32")
    return {
        "format_version": FORMAT_VERSION,
        "status": "complete",
        "passed": not rejected,
        "rejected_required": rejected,
        "recipe": {"name": recipe_name, "file": recipe_file, "config": config},
        "git_commit": git_commit(),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(wall_seconds, 1),
        "datasets": datasets or {},
        "layer_profile": results.get("layer_profile", {}),
        "eval_set": results["eval_set"],
        "metric": results["metric"],
        "checkpoints": checkpoints,
        "references": results["references"],
        "artifacts": artifacts,
        "stages": stages,
    }


def dataset_records(data: Any) -> dict[str, list[dict[str, Any]]]:
    """Every dataset of a recipe's ``data`` section by role, named as the recipe names it (relative to
    the data root; never a machine's absolute path) with the content hash of its files."""
    from landmarks.data.specs import dataset_name, is_synthetic_spec
    from recipes.cache import folder_sha256
    from recipes.schema import DATA_FIELDS, spec_items

    records: dict[str, list[dict[str, Any]]] = {}
    for role in DATA_FIELDS:
        written = getattr(data, role) if role != "calib" or data.calib is not None else data.train
        if not written:
            continue
        records[role] = [
            {"name": name if is_synthetic_spec(name) or not Path(name).is_absolute() else dataset_name(path),
             "content_hash": None if is_synthetic_spec(path) else folder_sha256(path)}
            for name, path in zip(spec_items(written), data.items(role), strict=True)]
    return records


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    return write_json(Path(out) / MANIFEST, manifest)


def git_commit() -> str:
    """``git rev-parse HEAD`` of the code that ran, ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"


def versions() -> dict[str, str | None]:
    """Installed versions (``None`` when absent), read from package metadata without importing."""
    out: dict[str, str | None] = {}
    for name in (*VERSIONED, *ALSO_VERSIONED):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    if out["tensorflow"] is None:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out["tensorflow"] = importlib.metadata.version("tensorflow-cpu")
    return out
