"""The gate stage's work: every artifact against its reference, metrics, latency, placement.

References (design section 4): the torch student for an FP32 export, the FP32 ONNX for the
INT8 ONNX, the FP32 TFLite for the INT8 TFLite. Both sides run on the same eval set; the
candidate in the runtime that ships it. Results land in ``<folder>/``::

    release/  rejected/     the placed artifacts (sidecars travel with them)
    results.json            one entry per artifact + the torch references + the eval set
    errors.json             per-image nme_io (fractions) of every model, for the CED plot
    samples.npz             crops, predictions and ground truth of the shipped student
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.atomic import write_bytes, write_json
from landmarks.models.checkpoint import file_sha256
from recipes import adapters
from recipes.schema import Recipe, spec_string

REFERENCE = {"onnx_fp32": "torch_fp32", "tflite_fp32": "torch_fp32", "onnx_int8": "onnx_fp32",
             "tflite_int8": "tflite_fp32"}
# Which artifact's predictions the sample grid shows: the smallest one that was released.
SAMPLE_PREFERENCE = ("tflite_int8", "onnx_int8", "tflite_fp32", "onnx_fp32")
SAMPLE_COUNT = 8


def gate_all(
    recipe: Recipe,
    candidates: dict[str, Path],
    student_checkpoint: Path,
    teacher_checkpoint: Path | None,
    folder: Path,
    *,
    float_nodes: dict[str, list[str]] | None = None,
    root: Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Gate, place and time every candidate; returns the path of ``results.json``.

    Checkpoint paths in the results are relative to ``root`` (the run folder) when inside it.
    """
    from landmarks.evaluate import evaluate
    from landmarks.runtimes import load_predictor
    from quant.accuracy_gate import Evaluator, place_artifact, run_gate

    threads = recipe.gate.threads
    student = load_predictor(student_checkpoint, num_threads=threads)
    evalset = adapters.open_eval(recipe, student.metadata)
    evaluator = Evaluator(evalset, name=spec_string(recipe.data.eval))
    predictors: dict[str, Any] = {"torch_fp32": student}
    predictors |= {name: load_predictor(path, num_threads=threads) for name, path in candidates.items()}
    evals = {name: evaluate(p, evalset, progress=False, keep_images=SAMPLE_COUNT) for name, p in predictors.items()}
    params = _inference_params(student.module, student.metadata.input_size)
    config = adapters.gate_config(recipe)

    entries: list[dict[str, Any]] = []
    for name, path in candidates.items():
        reference = REFERENCE[name]
        if reference not in predictors:
            raise KeyError(f"{name} needs its reference {reference}, which this recipe does not produce")
        report = run_gate(predictors[name], predictors[reference], None, config, evaluator=evaluator,
                          float_nodes=tuple((float_nodes or {}).get(name, ())), labels=(name, reference))
        log(report.verdict_line())
        staged = folder / "staging" / path.name
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, staged)
        sidecar = path.with_name(path.name + ".json")
        if sidecar.is_file():
            shutil.copyfile(sidecar, staged.with_name(sidecar.name))
        placed = place_artifact(report, staged, folder / "release", folder / "rejected")
        entries.append(_entry(name, placed, folder, predictors[name], evals[name], report, params))
    shutil.rmtree(folder / "staging", ignore_errors=True)

    if recipe.gate.latency and entries:
        from quant.latency import measure

        timings = measure([folder / e["file"] for e in entries], threads=threads)
        for entry, timing in zip(entries, timings, strict=True):
            entry["latency_ms"] = round(timing.median_ms, 4)
            entry["latency_p90_ms"] = round(timing.p90_ms, 4)
            entry["latency_threads"] = timing.threads

    errors = {name: evals[name].per_image["nme_io"].tolist() for name in predictors}
    references = {"torch_fp32": _reference(student_checkpoint, evals["torch_fp32"], params, root)}
    if teacher_checkpoint is not None:
        teacher = load_predictor(teacher_checkpoint, num_threads=threads)
        teacher_eval = evaluate(teacher, adapters.open_eval(recipe, teacher.metadata), progress=False, keep_images=0)
        references["teacher"] = _reference(teacher_checkpoint, teacher_eval,
                                           sum(p.numel() for p in teacher.module.parameters()), root)
        errors["teacher"] = teacher_eval.per_image["nme_io"].tolist()

    shown = next((e["name"] for name in SAMPLE_PREFERENCE for e in entries
                  if e["name"] == name and e["verdict"] == "pass"), "torch_fp32")
    _write_samples(folder / "samples.npz", evals[shown])
    results = {
        "metric": "nme_io: percent, inter-ocular normalizer (outer eye corners); design section 3",
        "eval_set": {"name": evaluator.name, "count": evaluator.count, "content_hash": evaluator.content_hash},
        "references": references,
        "artifacts": entries,
        "samples": shown,
    }
    write_json(folder / "errors.json", errors)
    return write_json(folder / "results.json", results)


def _entry(name: str, placed: Path, folder: Path, predictor: Any, evaluation: Any, report: Any,
           params: int) -> dict[str, Any]:
    fmt, precision = name.split("_")
    sidecar = placed.with_name(placed.name + ".json")
    regression = report.regression if np.isfinite(report.regression) else str(report.regression)
    return {
        "name": name,
        "file": str(placed.relative_to(folder)),
        "format": fmt,
        "precision": precision,
        "runtime": predictor.runtime,
        "bytes": placed.stat().st_size,
        "sha256": file_sha256(placed),
        "sidecar": str(sidecar.relative_to(folder)) if sidecar.is_file() else None,
        "params": params,
        **predictor.metadata.to_strings(),
        **_metrics(evaluation),
        "reference": report.reference_label,
        "nme_reference": report.nme_reference,
        "regression": regression,
        "max_regression": report.max_regression,
        "max_abs_regression": report.max_abs_regression,
        "verdict": report.verdict,
        "reason": report.reason,
        "float_nodes": list(report.float_nodes),
        "latency_ms": None,
    }


def _metrics(evaluation: Any) -> dict[str, float]:
    m = evaluation.metrics
    return {"nme_io": m.nme_io, "nme_box": m.nme_box, "nme_img": m.nme_img, "fr@0.08": m.fr_008,
            "fr@0.10": m.fr_010, "auc@0.08": m.auc_008, "auc@0.10": m.auc_010}


def _reference(checkpoint: Path, evaluation: Any, params: int, root: Path | None) -> dict[str, Any]:
    shown = Path(checkpoint).resolve()
    if root is not None and shown.is_relative_to(Path(root).resolve()):
        shown = shown.relative_to(Path(root).resolve())
    return {"checkpoint": str(shown), "sha256": file_sha256(checkpoint), "runtime": "torch", "params": params,
            **_metrics(evaluation)}


def _inference_params(module: Any, input_size: int) -> int:
    """Parameters of what export traces (``forward_landmarks``), without PFLD's training-only pose branch."""
    from distill.prune import measure

    return measure(module, input_size, macs=False).params


def _write_samples(path: Path, evaluation: Any) -> None:
    count = min(SAMPLE_COUNT, len(evaluation.images))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=evaluation.images[:count], pred=evaluation.pred[:count],
                        gt=evaluation.gt[:count], model=np.array(evaluation.model_name))
    write_bytes(path, buffer.getvalue())
