"""``python -m recipes check OUT``: does a run folder say what it holds, and did it pass?

Checks that ``manifest.json`` is complete; that every artifact's file exists with the
recorded size and sha256, in ``release/`` when it passed and ``rejected/`` when not; that
``release/`` holds nothing else (:func:`check_run`); and which required artifacts the gate
rejected (:func:`rejected_required`). ``python -m recipes check`` exits 2 on the first kind of
problem (the folder does not match its manifest) and 1 on the second (a gate verdict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landmarks.atomic import read_json
from landmarks.errors import ConfigError
from landmarks.models.checkpoint import file_sha256
from recipes.manifest import MANIFEST


def load_manifest(out: Path) -> dict[str, Any]:
    return read_json(Path(out) / MANIFEST, "recipe manifest (no 'artifacts')",
                     lambda m: isinstance(m, dict) and "artifacts" in m,
                     missing="no manifest (the run did not finish, or OUT is not a recipe run folder)",
                     error=ConfigError)


def check_run(out: Path) -> tuple[dict[str, Any], list[str]]:
    """The manifest and a list of problems (empty when the run is complete and intact)."""
    out = Path(out)
    manifest = load_manifest(out)
    problems = []
    if manifest.get("status") != "complete":
        problems.append(f"manifest status is {manifest.get('status')!r}, not 'complete'")
    listed = set()
    for artifact in manifest["artifacts"]:
        problems += _check_artifact(out, artifact)
        if artifact["verdict"] == "pass":
            listed.add(Path(artifact["file"]).name)
            if artifact.get("sidecar"):
                listed.add(Path(artifact["sidecar"]["file"]).name)
    release = out / "release"
    extra = sorted(p.name for p in release.iterdir() if p.name not in listed) if release.is_dir() else []
    problems += [f"release/{name} is not a passing artifact of the manifest" for name in extra]
    return manifest, problems


def rejected_required(manifest: dict[str, Any]) -> list[str]:
    """One line per required artifact the gate rejected."""
    return [f"required artifact {a['name']} was rejected: {a.get('reason', '')}" for a in manifest["artifacts"]
            if a.get("required") and a.get("verdict") != "pass"]


def _check_artifact(out: Path, artifact: dict[str, Any]) -> list[str]:
    name, rel = artifact["name"], artifact["file"]
    folder = "release" if artifact["verdict"] == "pass" else "rejected"
    path = out / rel
    if Path(rel).parts[0] != folder:
        return [f"{name}: verdict {artifact['verdict']} but the file is {rel}, not in {folder}/"]
    if not path.is_file():
        return [f"{name}: {rel} is missing"]
    problems = []
    if path.stat().st_size != artifact["bytes"]:
        problems.append(f"{name}: {rel} has {path.stat().st_size} bytes, the manifest says {artifact['bytes']}")
    if file_sha256(path) != artifact["sha256"]:
        problems.append(f"{name}: {rel} sha256 does not match the manifest")
    sidecar = artifact.get("sidecar")
    if sidecar:
        path = out / sidecar["file"]
        if not path.is_file():
            problems.append(f"{name}: sidecar {sidecar['file']} is missing")
        elif path.stat().st_size != sidecar["bytes"] or file_sha256(path) != sidecar["sha256"]:
            problems.append(f"{name}: sidecar {sidecar['file']} does not match the manifest")
    return problems
