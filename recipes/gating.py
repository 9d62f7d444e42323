"""The gate stage's work: every artifact against its reference, metrics, latency, placement.

References (``docs/DESIGN.md``, "Gate"): the torch student for an FP32 export, the FP32 ONNX for
the INT8 ONNX, the FP32 TFLite for the INT8 TFLite (the step regression); and for every artifact
the chain reference, the distilled student before pruning (the chain regression, rejected past
``gate.max_chain_regression``). The pruned torch student is gated too, against the same chain
reference. Both sides run on the same eval set; the candidate in the runtime that ships it. Each
artifact is gated once: an INT8 artifact's verdict is the one ``quant.ptq`` reached (against the
same exported FP32 file and the same chain reference) and is handed in as ``verdicts``; the FP32
exports are gated here. Every (artifact, eval set) pair is evaluated once
through one :class:`~landmarks.evaluate.Evaluator` whose cache the whole run shares. Results
land in ``<folder>/``::

    release/  rejected/     the placed artifacts (sidecars travel with them)
    results.json            one entry per artifact + the torch references + the eval set
    errors.json             per-image nme_io (fractions) of every model, for the CED plot
    samples.npz             crops, predictions and ground truth of the shipped student
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.artifact import copy_with_sidecar, sidecar_path
from landmarks.atomic import write_bytes, write_json
from landmarks.evaluate import EvalCache, Evaluator
from landmarks.metadata import ArtifactMetadata
from landmarks.models.checkpoint import file_sha256
from recipes import data
from recipes.schema import Recipe

REFERENCE = {"onnx_fp32": "torch_fp32", "tflite_fp32": "torch_fp32", "onnx_int8": "onnx_fp32",
             "tflite_int8": "tflite_fp32"}
CHAIN = "student_unpruned"  # the chain reference when pruning ran: the distilled student before it
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
    baseline_checkpoint: Path | None = None,
    chain_checkpoint: Path | None = None,
    verdicts: dict[str, dict[str, Any]] | None = None,
    cache: EvalCache | None = None,
    root: Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Gate (those without a verdict), place and time every candidate; returns ``results.json``.

    ``verdicts``: :meth:`GateReport.as_dict` of artifacts already gated (INT8, by ``quant.ptq``).
    ``baseline_checkpoint``: the same student trained without KD, evaluated as a reference.
    ``chain_checkpoint``: the distilled student before pruning (default: the student itself).
    Checkpoint paths in the results are relative to ``root`` (the run folder) when inside it.
    """
    from landmarks.runtimes import load_predictor
    from quant.accuracy_gate import GateReport, place_artifact, run_gate
    from quant.accuracy_gate.gate import decide_chain

    threads = recipe.gate.threads
    cache = cache if cache is not None else EvalCache()
    student = load_predictor(student_checkpoint, num_threads=threads)
    evaluator = eval_set(recipe, student.metadata, cache)
    predictors: dict[str, Any] = {"torch_fp32": student}
    predictors |= {name: load_predictor(path, num_threads=threads) for name, path in candidates.items()}
    evals = {name: evaluator.report(p) for name, p in predictors.items()}
    params = _inference_params(student.module, student.metadata.input_size)
    config = recipe.gate.to_config()
    pruned = chain_checkpoint is not None and Path(chain_checkpoint) != Path(student_checkpoint)
    chain = load_predictor(chain_checkpoint, num_threads=threads) if pruned else student
    chain_eval = evaluator.report(chain)
    chain_label = CHAIN if pruned else "torch_fp32"

    entries: list[dict[str, Any]] = []
    for name, path in candidates.items():
        reference = REFERENCE[name]
        if reference not in predictors:
            raise KeyError(f"{name} needs its reference {reference}, which this recipe does not produce")
        if name in (verdicts or {}):
            report = replace(GateReport.from_dict(verdicts[name]), candidate_label=name, reference_label=reference)
        else:
            report = run_gate(predictors[name], predictors[reference], None, config, evaluator=evaluator,
                              labels=(name, reference), chain_reference=chain, chain_label=chain_label)
        log(report.verdict_line())
        staged = copy_with_sidecar(path, folder / "staging" / path.name)
        placed = place_artifact(report, staged, folder / "release", folder / "rejected")
        entries.append(_entry(name, placed, folder, predictors[name], evals[name], report, params))
    shutil.rmtree(folder / "staging", ignore_errors=True)

    if recipe.gate.latency and entries:
        from quant.latency import measure

        timings = measure([folder / e["file"] for e in entries], threads=recipe.gate.latency_threads)
        for entry, timing in zip(entries, timings, strict=True):
            entry["latency_ms"] = round(timing.median_ms, 4)
            entry["latency_p90_ms"] = round(timing.p90_ms, 4)
            entry["latency_threads"] = timing.threads
        base = next((e["latency_ms"] for e in entries if e["name"] == "onnx_fp32"), None)
        for entry in entries:  # measured side by side in one run: the ratio holds whatever else the machine did
            entry["latency_vs_onnx_fp32"] = round(entry["latency_ms"] / base, 4) if base else None
    layer_profile = _layer_profile(entries, folder, recipe.gate.latency_threads, student.metadata.input_size) \
        if recipe.gate.latency else {}

    errors = {name: evals[name].per_image["nme_io"].tolist() for name in predictors}
    references = {"torch_fp32": _reference(student_checkpoint, evals["torch_fp32"], params, root)}
    decision = decide_chain(evals["torch_fp32"].metrics.nme_io, chain_eval.metrics.nme_io, config)
    references["torch_fp32"] |= {"chain_reference": chain_label, "chain_regression": decision.regression,
                                 "max_chain_regression": config.max_chain_regression,
                                 "verdict": "pass" if decision.passed else "reject", "reason": decision.reason}
    if pruned:
        references[CHAIN] = _reference(chain_checkpoint, chain_eval, _inference_params(chain.module,
                                       chain.metadata.input_size), root)
        errors[CHAIN] = chain_eval.per_image["nme_io"].tolist()
        log(f"GATE {'PASS  ' if decision.passed else 'REJECT'} pruned student (torch) nme_io "
            f"{evals['torch_fp32'].metrics.nme_io:.2f}% vs {CHAIN} {chain_eval.metrics.nme_io:.2f}%: {decision.reason}")
    if teacher_checkpoint is not None:
        teacher = load_predictor(teacher_checkpoint, num_threads=threads)
        teacher_eval = eval_set(recipe, teacher.metadata, cache).report(teacher)
        references["teacher"] = _reference(teacher_checkpoint, teacher_eval,
                                           sum(p.numel() for p in teacher.module.parameters()), root)
        errors["teacher"] = teacher_eval.per_image["nme_io"].tolist()
    if baseline_checkpoint is not None:
        baseline = load_predictor(baseline_checkpoint, num_threads=threads)
        references["student_no_kd"] = _reference(baseline_checkpoint, evaluator.report(baseline),
                                                 _inference_params(baseline.module, baseline.metadata.input_size),
                                                 root)

    shown = next((e["name"] for name in SAMPLE_PREFERENCE for e in entries
                  if e["name"] == name and e["verdict"] == "pass"), "torch_fp32")
    _write_samples(folder / "samples.npz", evals[shown])
    results = {
        "metric": "nme_io: percent, inter-ocular normalizer (outer eye corners); docs/DESIGN.md, Metrics",
        "eval_set": {"name": evaluator.name, "count": evaluator.count, "content_hash": evaluator.content_hash},
        "references": references,
        "artifacts": entries,
        "samples": shown,
        "evaluations": [list(key) for key in cache.evaluated],
        "layer_profile": layer_profile,
    }
    write_json(folder / "errors.json", errors)
    return write_json(folder / "results.json", results)


def _layer_profile(entries: list[dict[str, Any]], folder: Path, threads: int, input_size: int) -> dict[str, Any]:
    """Time per kind of layer of each ONNX artifact (onnxruntime's profiler); TFLite ones are not measured
    (LiteRT's Python interpreter has no per-op profiler)."""
    from quant.profile import profile_onnx

    out = {}
    for entry in entries:
        if entry["format"] == "onnx":
            profile = profile_onnx(folder / entry["file"], threads=threads, input_size=input_size)
            out[entry["name"]] = {"kinds": profile.kinds, "total_us": profile.total_us, "reason": profile.reason}
        else:
            out[entry["name"]] = {"kinds": {}, "total_us": 0.0,
                                  "reason": "LiteRT's Python interpreter has no per-op profiler"}
    return out


def eval_set(recipe: Recipe, metadata: ArtifactMetadata, cache: EvalCache) -> Evaluator:
    """The recipe's eval set cropped for ``metadata``, evaluated through the run's ``cache``."""
    return Evaluator(data.open_eval(recipe, metadata), name=recipe.data.name("eval"), cache=cache)


def _entry(name: str, placed: Path, folder: Path, predictor: Any, evaluation: Any, report: Any,
           params: int) -> dict[str, Any]:
    fmt, precision = name.split("_")
    sidecar = sidecar_path(placed)
    regression = report.regression if np.isfinite(report.regression) else str(report.regression)
    return {
        "name": name,
        "file": str(placed.relative_to(folder)),
        "format": fmt,
        "precision": precision,
        "runtime": predictor.runtime,
        "bytes": placed.stat().st_size,
        "sha256": file_sha256(placed),
        "sidecar": {"file": str(sidecar.relative_to(folder)), "bytes": sidecar.stat().st_size,
                    "sha256": file_sha256(sidecar)} if sidecar.is_file() else None,
        "params": params,
        **predictor.metadata.to_strings(),
        **_metrics(evaluation),
        "reference": report.reference_label,
        "nme_reference": report.nme_reference,
        "regression": regression,
        "max_regression": report.max_regression,
        "max_abs_regression": report.max_abs_regression,
        "chain_reference": report.chain_reference_label or None,
        "nme_chain_reference": report.nme_chain_reference,
        "chain_regression": report.chain_regression,
        "max_chain_regression": report.max_chain_regression,
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
