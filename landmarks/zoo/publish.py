"""Copy a finished recipe run's release artifacts into the zoo, with a trimmed manifest and a model card.

Reads ``RUN_DIR/manifest.json`` (``recipes/manifest.py``: ``status``, ``recipe``, ``git_commit``,
``eval_set``, ``artifacts`` with ``file``, ``bytes``, ``sha256``, ``nme_io``, ``regression``,
``verdict``, ``latency_ms``, ``sidecar``), checks every shipped file against it, refuses more than
:data:`MAX_ZOO_BYTES` in all, and writes into the zoo folder in this order: the old manifest is
removed, each file is copied atomically, files the old manifest listed and the new one does not
are removed, ``MODEL_CARD.md`` is written, and ``manifest.json`` last, so a crash never leaves a
manifest describing files that are not there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from landmarks import atomic
from landmarks.errors import ModelError
from landmarks.zoo import MANIFEST, MODEL_CARD, ZOO_DIR, listed_files, load_manifest

FORMAT_VERSION = 1
MAX_ZOO_BYTES = 2_000_000  # the whole zoo (artifacts + sidecars) ships inside the wheel
SHIPPED = ("onnx_fp32", "onnx_int8", "tflite_int8")  # artifact names of a recipe manifest, in this order
REQUIRED = ("onnx_fp32", "onnx_int8")  # the default model and the reference it is gated against
DEFAULT = "onnx_int8"
KEPT = ("format", "precision", "runtime", "params", "landmarks.input_size", "landmarks.crop_scale",
        "nme_io", "nme_box", "fr@0.10", "auc@0.10", "reference", "nme_reference", "regression",
        "max_regression", "verdict", "latency_ms", "latency_threads")

# Terms of the training data, recognized from the dataset paths of the recipe (lower case).
DATA_TERMS = (
    (("300w", "helen", "lfpw", "afw"),
     "300-W (Helen, LFPW, AFW): research use only, under the terms of the original datasets "
     "(300-W: Sagonas et al., ICCV-W 2013; Helen: Le et al. 2012; LFPW: Belhumeur et al. 2011; "
     "AFW: Zhu & Ramanan 2012). Models trained on it inherit these terms: not for commercial use."),
    (("face_synthetics", "facesynthetics"),
     "FaceSynthetics (Wood et al., ICCV 2021): Microsoft's non-commercial research licence."),
    (("youtube_faces",), "YouTube Faces (Wolf et al., CVPR 2011): research use only; machine-made labels."),
    (("wflw",), "WFLW (Wu et al., CVPR 2018): research use only."),
    (("synthetic",), "built-in synthetic faces generated in code (landmarks.synthetic): no third-party terms; "
                     "a model trained only on them is a smoke test, not a face model."),
)


def publish(run_dir: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None, *,
            max_bytes: int = MAX_ZOO_BYTES) -> dict[str, Any]:
    """Publish ``run_dir``'s release artifacts into ``dest`` (default: the package's zoo); the new manifest."""
    run_dir, dest = Path(run_dir), Path(dest or ZOO_DIR)
    run = _load_run(run_dir)
    chosen = _choose(run, run_dir)
    total = sum(a["bytes"] + (a["sidecar_entry"]["bytes"] if a["sidecar_entry"] else 0) for a in chosen)
    if total > max_bytes:
        sizes = ", ".join(f"{Path(a['file']).name} {a['bytes'] / 1e6:.2f} MB" for a in chosen)
        raise ModelError(f"the zoo would hold {total / 1e6:.2f} MB ({sizes}), above the limit of "
                         f"{max_bytes / 1e6:.2f} MB; prune or quantize the student further")
    manifest = _zoo_manifest(run, chosen, total)
    old = load_manifest(dest) if (dest / MANIFEST).is_file() else None
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST).unlink(missing_ok=True)
    for artifact in chosen:
        for source in (artifact["file"], artifact["sidecar"]):
            if source:
                with atomic.atomic_path(dest / Path(source).name) as tmp:
                    shutil.copyfile(run_dir / source, tmp)
    keep = {entry["file"] for entry in listed_files(manifest)}
    for entry in listed_files(old) if old else []:
        if entry["file"] not in keep and PurePosixPath(entry["file"]).name == entry["file"]:
            (dest / entry["file"]).unlink(missing_ok=True)
    atomic.write_text(dest / MODEL_CARD, model_card(manifest))
    atomic.write_json(dest / MANIFEST, manifest)
    return manifest


def _load_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    run = atomic.read_json(path, "recipe manifest (no 'artifacts')",
                           lambda r: isinstance(r, dict) and isinstance(r.get("artifacts"), list),
                           missing="no manifest (not a finished recipe run folder)")
    if run.get("status") != "complete":
        raise ModelError(f"{path}: status is {run.get('status')!r}, not 'complete'")
    return run


def _choose(run: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
    """The released artifacts of :data:`SHIPPED`, each file checked against the run manifest."""
    from landmarks.models.checkpoint import file_sha256

    by_name = {a.get("name"): a for a in run["artifacts"]}
    chosen = []
    for name in SHIPPED:
        artifact = by_name.get(name)
        if artifact is None or artifact.get("verdict") != "pass":
            if name in REQUIRED:
                why = "is not in it" if artifact is None else f"was rejected by the gate ({artifact.get('reason', '')})"
                raise ModelError(f"{run_dir / MANIFEST}: artifact {name} {why}; nothing to ship")
            continue
        path = run_dir / artifact["file"]
        if not path.is_file():
            raise ModelError(f"{path}: listed in the run manifest but missing")
        if path.stat().st_size != artifact["bytes"] or file_sha256(path) != artifact["sha256"]:
            raise ModelError(f"{path}: size or sha256 differs from the run manifest; re-run the recipe")
        sidecar = artifact.get("sidecar")
        entry = None
        if sidecar:
            if not (run_dir / sidecar).is_file():
                raise ModelError(f"{run_dir / sidecar}: sidecar listed in the run manifest but missing")
            entry = {"file": Path(sidecar).name, "bytes": (run_dir / sidecar).stat().st_size,
                     "sha256": file_sha256(run_dir / sidecar)}
        chosen.append({**artifact, "sidecar_entry": entry})
    return chosen


def _zoo_manifest(run: dict[str, Any], chosen: list[dict[str, Any]], total: int) -> dict[str, Any]:
    files = []
    for artifact in chosen:
        entry = {"name": artifact["name"], "file": Path(artifact["file"]).name, "bytes": artifact["bytes"],
                 "sha256": artifact["sha256"]}
        entry.update({key: artifact[key] for key in KEPT if artifact.get(key) is not None})
        entry["sidecar"] = artifact["sidecar_entry"]
        files.append(entry)
    recipe = run.get("recipe") or {}
    data = (recipe.get("config") or {}).get("data") or {}
    return {
        "format_version": FORMAT_VERSION,
        "default": next(f["file"] for f in files if f["name"] == DEFAULT),
        "recipe": {"name": recipe.get("name"), "file": recipe.get("file")},
        "git_commit": run.get("git_commit", "unknown"),
        "created": run.get("created"),
        "training_data": {k: data.get(k) for k in ("train", "val", "calib") if data.get(k) is not None},
        "eval_set": run.get("eval_set"),
        "metric": run.get("metric"),
        "total_bytes": total,
        "files": files,
    }


# ---------------------------------------------------------------------------- model card


def _spec_items(spec: Any) -> list[str]:
    items = spec if isinstance(spec, list) else str(spec).split(",")
    return [str(s).strip() for s in items if str(s).strip()]


def _short(spec: str) -> str:
    """A dataset path without the machine's folders: from ``300w`` on, else its last two parts."""
    parts = PurePosixPath(spec.replace("\\", "/")).parts
    lowered = [p.lower() for p in parts]
    for anchor in ("300w", "face_synthetics_sample", "youtube_faces", "wflw"):
        if anchor in lowered:
            return "/".join(parts[lowered.index(anchor):])
    return "/".join(parts[-2:]) if len(parts) > 1 else spec


def data_terms(specs: list[str]) -> list[str]:
    """The terms of each kind of data named in ``specs`` (one line each, unknown data flagged)."""
    terms: list[str] = []
    for spec in specs:
        lowered = spec.lower()
        found = [text for keys, text in DATA_TERMS if any(k in lowered for k in keys)][:1]
        found = found or [f"{_short(spec)}: terms unknown; check the dataset's licence before shipping."]
        terms += [t for t in found if t not in terms]
    return terms


def model_card(manifest: dict[str, Any]) -> str:
    """``MODEL_CARD.md``, generated from the zoo manifest only."""
    recipe, files = manifest["recipe"], manifest["files"]
    train = [s for spec in manifest["training_data"].values() for s in _spec_items(spec)]
    eval_set = manifest.get("eval_set") or {}
    lines = [
        "# Shipped landmark models",
        "",
        "Generated by `python -m landmarks.zoo publish` from `manifest.json`; do not edit by hand.",
        "",
        f"- Recipe: `{recipe.get('name')}` (`{recipe.get('file')}`), code commit `{manifest['git_commit']}`"
        + (f", run {manifest['created']}" if manifest.get("created") else ""),
        f"- Default model (`python -m landmarks.predict PHOTO`): `{manifest['default']}`",
        f"- Total size: {manifest['total_bytes'] / 1e6:.2f} MB",
        "",
        "## Training data and its terms",
        "",
        *[f"- `{_short(s)}` ({role})" for role, spec in manifest["training_data"].items()
          for s in _spec_items(spec)],
        "",
        *[f"- {t}" for t in data_terms(train)],
        "",
        "## Test-set metrics",
        "",
        f"Evaluated by the recipe's gate on `{', '.join(_short(s) for s in _spec_items(eval_set.get('name', '?')))}` "
        f"({eval_set.get('count', '?')} faces, content sha256 `{str(eval_set.get('content_hash', '?'))[:16]}...`). "
        "nme_io: percent of the inter-ocular distance (outer eye corners); regression relative to the reference.",
        "",
        "| file | format | precision | size | nme_io | reference | regression | verdict | latency |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in files:
        latency = (f"{f['latency_ms']:.2f} ms ({f.get('latency_threads', '?')} threads)"
                   if f.get("latency_ms") is not None else "-")
        nme = f"{f['nme_io']:.3f} %" if f.get("nme_io") is not None else "-"
        regression = f"{100 * f['regression']:+.2f} %" if isinstance(f.get("regression"), int | float) else "-"
        lines.append(f"| `{f['file']}` | {f.get('format', '-')} | {f.get('precision', '-')} | "
                     f"{f['bytes'] / 1e6:.2f} MB | {nme} | {f.get('reference', '-')} | {regression} | "
                     f"{f.get('verdict', '-')} | {latency} |")
    lines += ["", "sha256 and sizes of every file are in `manifest.json`; "
                  "`python -m landmarks.zoo check` verifies them.", ""]
    return "\n".join(lines)
