"""Copy a finished recipe run's release artifacts into the zoo, with its manifest filtered and a model card.

The zoo's ``manifest.json`` is the run's (``recipes/manifest.py``, docs/DESIGN.md "Manifest"),
filtered: ``artifacts`` keeps the shipped ones (:data:`SHIPPED`), each entry unchanged but for its
``file`` and ``sidecar.file``, now names in the zoo folder; what stays on the machine that ran the
recipe is dropped (``checkpoints``, ``stages``, ``samples``, the references' checkpoint paths); and
``default`` (the file :func:`landmarks.zoo.default_model` opens) and ``total_bytes`` are added.
Every shipped file is checked against the run manifest first, more than :data:`MAX_ZOO_BYTES` in all
is refused, and the zoo is written in this order: the old manifest is removed, each file is copied
atomically, files the old manifest listed and the new one does not are removed, ``MODEL_CARD.md``
is written, and ``manifest.json`` last, so a crash never leaves a manifest describing files that
are not there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from landmarks import atomic
from landmarks.errors import ModelError
from landmarks.zoo import MANIFEST, MODEL_CARD, ZOO_DIR, listed_files, load_manifest

MAX_ZOO_BYTES = 2_000_000  # the whole zoo (artifacts + sidecars) ships inside the wheel
SHIPPED = ("onnx_fp32", "onnx_int8", "tflite_int8")  # artifact names of a recipe manifest, in this order
REQUIRED = ("onnx_fp32", "onnx_int8")  # the default model and the reference it is gated against
DEFAULT = "onnx_int8"
NOT_SHIPPED = ("checkpoints", "stages", "samples")  # run-folder details, meaningless outside the run

# Terms of the training data, recognized from the dataset names of the recipe (lower case).
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
    total = sum(a["bytes"] + (a["sidecar"]["bytes"] if a.get("sidecar") else 0) for a in chosen)
    if total > max_bytes:
        sizes = ", ".join(f"{Path(a['file']).name} {a['bytes'] / 1e6:.2f} MB" for a in chosen)
        raise ModelError(f"the zoo would hold {total / 1e6:.2f} MB ({sizes}), above the limit of "
                         f"{max_bytes / 1e6:.2f} MB; prune or quantize the student further")
    manifest = zoo_manifest(run, chosen, total)
    old = load_manifest(dest) if (dest / MANIFEST).is_file() else None
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST).unlink(missing_ok=True)
    for artifact in chosen:
        sources = [artifact["file"], *([artifact["sidecar"]["file"]] if artifact.get("sidecar") else [])]
        for source in sources:
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
    """The released artifacts of :data:`SHIPPED`, each file (and sidecar) checked against the run manifest."""
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
        for entry in (artifact, artifact.get("sidecar")):
            if not entry:
                continue
            path = run_dir / entry["file"]
            if not path.is_file():
                raise ModelError(f"{path}: listed in the run manifest but missing")
            if path.stat().st_size != entry["bytes"] or file_sha256(path) != entry["sha256"]:
                raise ModelError(f"{path}: size or sha256 differs from the run manifest; re-run the recipe")
        chosen.append(artifact)
    return chosen


def zoo_manifest(run: dict[str, Any], chosen: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """The run's manifest, filtered to what ships (module docstring)."""
    artifacts = []
    for artifact in chosen:
        entry = {**artifact, "file": Path(artifact["file"]).name}
        if artifact.get("sidecar"):
            entry["sidecar"] = {**artifact["sidecar"], "file": Path(artifact["sidecar"]["file"]).name}
        artifacts.append(entry)
    references = {name: {k: v for k, v in ref.items() if k != "checkpoint"}
                  for name, ref in (run.get("references") or {}).items()}
    kept = {k: v for k, v in run.items() if k not in (*NOT_SHIPPED, "artifacts", "references")}
    return {**kept, "references": references, "artifacts": artifacts,
            "default": next(a["file"] for a in artifacts if a["name"] == DEFAULT), "total_bytes": total}


# ---------------------------------------------------------------------------- model card


def data_terms(names: list[str]) -> list[str]:
    """The terms of each kind of data named in ``names`` (one line each, unknown data flagged)."""
    terms: list[str] = []
    for name in names:
        lowered = name.lower()
        found = [text for keys, text in DATA_TERMS if any(k in lowered for k in keys)][:1]
        found = found or [f"{name}: terms unknown; check the dataset's licence before shipping."]
        terms += [t for t in found if t not in terms]
    return terms


def model_card(manifest: dict[str, Any]) -> str:
    """``MODEL_CARD.md``, generated from the zoo manifest only."""
    recipe, files = manifest["recipe"], manifest["artifacts"]
    datasets = manifest.get("datasets") or {}
    trained_on = [d["name"] for role in ("train", "val", "unlabeled") for d in datasets.get(role) or []]
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
        *[f"- `{d['name']}` ({role}" + (f", content sha256 `{d['content_hash'][:16]}...`)" if d.get("content_hash")
                                       else ")") for role, items in datasets.items() for d in items or []
          if role != "eval" and not (role == "calib" and items == datasets.get("train"))],
        "",
        *[f"- {t}" for t in data_terms(trained_on)],
        "",
        "## Test-set metrics",
        "",
        f"Evaluated by the recipe's gate on `{eval_set.get('name', '?')}` "
        f"({eval_set.get('count', '?')} faces, content sha256 `{str(eval_set.get('content_hash', '?'))[:16]}...`). "
        "nme_io: percent of the inter-ocular distance (outer eye corners); regression relative to the reference; "
        "the last regression against the distilled student before pruning (the chain: what shipping this file "
        "instead of the best model the chain made costs).",
        "",
        "| file | format | precision | size | nme_io | reference | regression | vs distilled student | verdict | "
        "latency |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in files:
        latency = (f"{f['latency_ms']:.2f} ms ({f.get('latency_threads', '?')} threads)"
                   if f.get("latency_ms") is not None else "-")
        nme = f"{f['nme_io']:.3f} %" if f.get("nme_io") is not None else "-"
        regression = f"{100 * f['regression']:+.2f} %" if isinstance(f.get("regression"), int | float) else "-"
        chain = f"{100 * f['chain_regression']:+.2f} %" if isinstance(f.get("chain_regression"), int | float) else "-"
        lines.append(f"| `{f['file']}` | {f.get('format', '-')} | {f.get('precision', '-')} | "
                     f"{f['bytes'] / 1e6:.2f} MB | {nme} | {f.get('reference', '-')} | {regression} | {chain} | "
                     f"{f.get('verdict', '-')} | {latency} |")
    lines += ["", "sha256 and sizes of every file are in `manifest.json`; "
                  "`python -m landmarks.zoo check` verifies them.", ""]
    return "\n".join(lines)
