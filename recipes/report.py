"""``report.md`` and its figures: the artifact table, CED of every model, sample faces, training curves.

Figures are drawn with ``matplotlib.figure.Figure`` (no pyplot, no display) and saved
atomically; CED and sample overlays come from :mod:`landmarks.plots`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.atomic import atomic_path, write_text
from landmarks.plots import plot_ced, plot_samples

TABLE_HEADER = ("artifact", "format", "precision", "size", "params", "nme_io", "regression", "chain", "verdict",
                "latency")


def write_figures(out: Path, gate_folder: Path, checkpoints: Path,
                  prune: dict[str, Any] | None = None) -> dict[str, str]:
    """``ced.png``, ``samples.png``, ``training_curves.png`` (when logs exist) and ``pruning.png`` (when
    pruning ran: ``prune`` is its report); returns names."""
    figures = {}
    if prune is not None and plot_pruning(prune, out / "pruning.png"):
        figures["pruning"] = "pruning.png"
    errors = json.loads((gate_folder / "errors.json").read_text())
    curves = {_label(name): np.asarray(values) for name, values in errors.items()}
    plot_ced(curves, out / "ced.png", max_error=ced_range(curves),
             title="Cumulative error distribution (nme_io), eval set")
    figures["ced"] = "ced.png"
    with np.load(gate_folder / "samples.npz") as samples:
        plot_samples(samples["images"], samples["pred"], samples["gt"], out / "samples.png")
    figures["samples"] = "samples.png"
    if plot_training_curves(checkpoints, out / "training_curves.png"):
        figures["training_curves"] = "training_curves.png"
    return figures


def ced_range(curves: dict[str, np.ndarray]) -> float:
    """The usual 0-10% axis, widened (in 5% steps) until it shows 95% of the faces of every model."""
    finite = [np.asarray(c)[np.isfinite(c)] for c in curves.values()]
    worst = max((float(np.quantile(c, 0.95)) for c in finite if c.size), default=0.0)
    return float(min(1.0, max(0.10, math.ceil(worst * 20) / 20)))


def _label(name: str) -> str:
    return {"torch_fp32": "student (torch)", "teacher": "teacher (torch)",
            "student_no_kd": "student without KD (torch)",
            "student_unpruned": "student before pruning (torch)"}.get(name, name)


def training_logs(checkpoints: Path) -> dict[str, list[dict[str, Any]]]:
    """Per-epoch rows of every training log in the run: teacher, student, pruning fine-tuning."""
    logs = {}
    for name, path in (("teacher", checkpoints / "teacher_log.json"), ("student", checkpoints / "student_log.json")):
        if path.is_file():
            logs[name] = json.loads(path.read_text())
    for path in sorted((checkpoints / "prune").glob("step*_log.json")):
        logs[f"prune {path.stem.removesuffix('_log')}"] = json.loads(path.read_text())
    return logs


def plot_training_curves(checkpoints: Path, path: Path) -> bool:
    """Loss and validation nme_io per epoch, one line per training run; False if there are no logs."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    logs = training_logs(checkpoints)
    if not logs:
        return False
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    loss_ax, nme_ax = fig.subplots(1, 2)
    for name, rows in logs.items():
        epochs = [row["epoch"] for row in rows]
        loss_ax.plot(epochs, [row.get("loss_total", math.nan) for row in rows], marker="o", label=name)
        nme_ax.plot(epochs, [row.get("val_nme_io", math.nan) for row in rows], marker="o", label=name)
    loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="training loss (total)", title="Training loss")
    nme_ax.set(xlabel="epoch", ylabel="validation nme_io (%)", title="Validation NME (inter-ocular)")
    for ax in (loss_ax, nme_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return True


def _signed(value: Any) -> str:
    return f"{100 * value:+.2f}%" if isinstance(value, float | int) else ("-" if value is None else str(value))


def pruning_points(prune: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pruning step the run evaluated (the unpruned student first): parameters, FP32 size,
    validation nme_io, and whether it was kept."""
    kept = {s["step"] for s in prune["steps"]}
    tried = {s["step"]: s for s in (*prune["steps"], *prune.get("tried", ()))}
    return [{"step": s["step"], "params": s["params"], "fp32_bytes": s["fp32_bytes"], "val_nme_io": s["nme_io"],
             "kept": s["step"] in kept} for _, s in sorted(tried.items())]


def plot_pruning(prune: dict[str, Any], path: Path) -> bool:
    """Validation nme_io against FP32 size per pruning step, the shipped step marked, the budget drawn."""
    from matplotlib.figure import Figure

    points = pruning_points(prune)
    if len(points) < 2 or any(p["val_nme_io"] is None for p in points):
        return False
    fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    ax = fig.subplots()
    sizes = [p["fp32_bytes"] / 1024 for p in points]
    nmes = [p["val_nme_io"] for p in points]
    ax.plot(sizes, nmes, marker="o", color="tab:blue", label="pruning steps (recovered, before QAT)")
    for p, x, y in zip(points, sizes, nmes, strict=True):
        ax.annotate(f"step {p['step']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    shipped = max((p for p in points if p["kept"]), key=lambda p: p["step"])
    ax.plot([shipped["fp32_bytes"] / 1024], [shipped["val_nme_io"]], marker="*", markersize=16, color="tab:red",
            linestyle="none", label=f"shipped: step {shipped['step']}")
    budget = prune.get("budget")
    if budget is not None:
        ax.axhline(points[0]["val_nme_io"] * (1 + budget), color="tab:gray", linestyle="--",
                   label=f"budget: +{100 * budget:.1f} % over unpruned")
    ax.set(xlabel="FP32 inference weights (KB)", ylabel="validation nme_io (%)",
           title="Pruning: accuracy against size (validation split)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return True


def pruning_lines(prune: dict[str, Any] | None, figures: dict[str, str]) -> list[str]:
    """The report's pruning section: each step, the one shipped, and why."""
    if prune is None:
        return []
    points = pruning_points(prune)
    first = points[0]
    shipped = max((p for p in points if p["kept"]), key=lambda p: p["step"])
    budget = prune.get("budget")
    lines = ["## Pruning", "", "| step | params | FP32 weights | validation nme_io | vs unpruned | kept |",
             "|---|---|---|---|---|---|"]
    for p in points:
        rise = (p["val_nme_io"] - first["val_nme_io"]) / first["val_nme_io"] if p["val_nme_io"] else None
        lines.append(f"| {p['step']} | {p['params']:,} | {p['fp32_bytes'] / 1024:.0f} KB | "
                     f"{_pct(p['val_nme_io'])} | {_signed(rise)} | {'yes' if p['kept'] else 'no'} |")
    why = (f"the largest step whose validation nme_io stayed within the budget of +{100 * budget:.1f} %"
           if budget is not None else "the recipe's fixed ratio")
    lines += ["", f"Shipped: step {shipped['step']} ({why}); the test set was not used to choose it."]
    if "pruning" in figures:
        lines += ["", f"![pruning]({figures['pruning']})"]
    return [*lines, ""]


def layer_lines(layers: dict[str, Any]) -> list[str]:
    """Where each artifact's batch-1 time goes, per kind of layer (microseconds per run)."""
    from quant.profile import KINDS

    measured = {name: v for name, v in layers.items() if not v.get("reason")}
    if not measured:
        return []
    reasons = sorted({v["reason"] for v in layers.values() if v.get("reason")})
    caption = "Batch 1, microseconds per run, onnxruntime's profiler" + (
        f" (not measured for TFLite: {'; '.join(reasons)})." if reasons else ".")
    lines = ["## Time per kind of layer", "", caption, "",
             "| layers | " + " | ".join(measured) + " |", "|---|" + "---:|" * len(measured)]
    for kind in (k for k in KINDS if any(k in v["kinds"] for v in measured.values())):
        lines.append(f"| {kind} | " + " | ".join(f"{v['kinds'][kind]:.0f}" if kind in v["kinds"] else "-"
                                                  for v in measured.values()) + " |")
    lines.append("| total | " + " | ".join(f"{v['total_us']:.0f}" for v in measured.values()) + " |")
    return [*lines, ""]


def _pct(value: Any) -> str:
    return f"{value:.3f}%" if isinstance(value, float | int) else "-"


def table_rows(manifest: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per artifact; ``regression`` against its step reference, ``chain`` against the distilled
    student before pruning. The pruned torch student's own gate comes first when pruning ran."""
    rows = []
    pruned = manifest.get("references", {}).get("torch_fp32", {})
    if "student_unpruned" in manifest.get("references", {}):
        rows.append(("pruned student", "torch", "fp32", "-", f"{pruned.get('params', 0):,}",
                     f"{pruned['nme_io']:.3f}%", "-", _signed(pruned.get("chain_regression")),
                     pruned.get("verdict", "-"), "-"))
    for a in manifest["artifacts"]:
        latency = f"{a['latency_ms']:.2f} ms" if a.get("latency_ms") is not None else "-"
        verdict = a["verdict"] + (" (required)" if a.get("required") else "")
        rows.append((a["name"], a["format"], a["precision"], f"{a['bytes'] / 1024:.1f} KB", f"{a['params']:,}",
                     f"{a['nme_io']:.3f}%", _signed(a["regression"]), _signed(a.get("chain_regression")), verdict,
                     latency))
    return rows


def markdown_table(manifest: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(manifest)]
    return "\n".join(lines)


def text_table(manifest: dict[str, Any]) -> str:
    """The artifact table for a terminal (fixed-width columns)."""
    rows = [TABLE_HEADER, *table_rows(manifest)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def distillation_warnings(references: dict[str, Any]) -> list[str]:
    """Knowledge distillation can only help a student whose teacher is better than it is."""
    teacher = references.get("teacher", {}).get("nme_io")
    if teacher is None:
        return []
    students = {"the student": references["torch_fp32"]["nme_io"]}
    if "student_no_kd" in references:
        students["the same student trained without KD"] = references["student_no_kd"]["nme_io"]
    return [f"the teacher ({teacher:.2f}%) is not better than {name} ({nme:.2f}%): KD cannot help"
            for name, nme in students.items() if teacher >= nme]


def distillation_check(references: dict[str, Any]) -> list[str]:
    """The report's lines on the teacher against the students (warnings included)."""
    if "teacher" not in references:
        return []
    warnings = distillation_warnings(references)
    if not warnings:
        better = "the student trained without KD" if "student_no_kd" in references else "the student"
        return ["", f"Teacher check: the teacher is better than {better} on this eval set, as KD needs."]
    return ["", *[f"**WARNING: {w}.**" for w in warnings]]


def write_report(out: Path, manifest: dict[str, Any], figures: dict[str, str],
                 prune: dict[str, Any] | None = None) -> Path:
    recipe = manifest["recipe"]
    evalset = manifest["eval_set"]
    verdict = "all required artifacts passed the gate" if manifest["passed"] else (
        "REJECTED required artifact(s): " + ", ".join(manifest["rejected_required"]))
    lines = [
        f"# Recipe `{recipe['name']}`",
        "",
        f"**{verdict}.** Recipe file `{recipe['file']}`, git commit `{manifest['git_commit'][:12]}`, "
        f"{manifest['wall_seconds']:.0f} s wall time for this run.",
        "",
        "## Artifacts",
        "",
        markdown_table(manifest),
        "",
        f"nme_io in percent (inter-ocular: outer eye corners, docs/DESIGN.md) on the eval set "
        f"`{evalset['name']}` ({evalset['count']} faces, content sha256 `{evalset['content_hash'][:16]}`); "
        "each artifact evaluated in its own runtime. Regression is relative to its step reference "
        "(torch student for FP32 exports, FP32 ONNX for INT8 ONNX, FP32 TFLite for INT8 TFLite); chain is "
        "relative to the distilled student before pruning (the best model the chain made: what a user "
        "gives up by shipping this file instead); latency is batch 1, median, model alone.",
        "",
        "| artifact | reference | nme_reference | max regression | verdict reason | file |",
        "|---|---|---|---|---|---|",
    ]
    for a in manifest["artifacts"]:
        lines.append(f"| {a['name']} | {a['reference']} | {a['nme_reference']:.3f}% | "
                     f"{100 * a['max_regression']:.1f}% | {a['reason']} | `{a['file']}` |")
    lines += ["", "## Reference models (torch, same eval set)", "", "| model | params | nme_io | nme_box | auc@0.08 |",
              "|---|---|---|---|---|"]
    for name, ref in manifest["references"].items():
        lines.append(f"| {_label(name)} | {ref['params']:,} | {ref['nme_io']:.3f}% | {ref['nme_box']:.3f}% | "
                     f"{ref['auc@0.08']:.3f} |")
    lines += distillation_check(manifest["references"])
    lines += ["", *pruning_lines(prune, figures)]
    lines += layer_lines(manifest.get("layer_profile") or {})
    lines += ["", "## Cumulative error distribution", "", f"![CED]({figures['ced']})", "",
              "## Sample faces", "", "Ground truth green, predictions red "
              f"(`{manifest.get('samples', 'student')}`).", "", f"![samples]({figures['samples']})", ""]
    if "training_curves" in figures:
        lines += ["## Training curves", "", f"![training curves]({figures['training_curves']})", ""]
    lines += ["## Stages", "", "| stage | status | seconds |", "|---|---|---|"]
    for name, stage in manifest["stages"].items():
        lines.append(f"| {name} | {stage['status']} | {stage['seconds']:.1f} |")
    return write_text(out / "report.md", "\n".join(lines) + "\n")
