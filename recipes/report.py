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

TABLE_HEADER = ("artifact", "format", "precision", "size", "params", "nme_io", "regression", "verdict",
                "latency")


def write_figures(out: Path, gate_folder: Path, checkpoints: Path) -> dict[str, str]:
    """``ced.png``, ``samples.png`` and ``training_curves.png`` (when logs exist); returns names."""
    figures = {}
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
            "student_no_kd": "student without KD (torch)"}.get(name, name)


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


def table_rows(manifest: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for a in manifest["artifacts"]:
        latency = f"{a['latency_ms']:.2f} ms" if a.get("latency_ms") is not None else "-"
        regression = a["regression"]
        regression = f"{100 * regression:+.2f}%" if isinstance(regression, float | int) else str(regression)
        verdict = a["verdict"] + (" (required)" if a.get("required") else "")
        rows.append((a["name"], a["format"], a["precision"], f"{a['bytes'] / 1024:.1f} KB", f"{a['params']:,}",
                     f"{a['nme_io']:.3f}%", regression, verdict, latency))
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


def write_report(out: Path, manifest: dict[str, Any], figures: dict[str, str]) -> Path:
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
        "each artifact evaluated in its own runtime. Regression is relative to its reference "
        "(torch student for FP32 exports, FP32 ONNX for INT8 ONNX, FP32 TFLite for INT8 TFLite); latency is "
        "batch 1, median, model alone.",
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
    lines += ["", "## Cumulative error distribution", "", f"![CED]({figures['ced']})", "",
              "## Sample faces", "", "Ground truth green, predictions red "
              f"(`{manifest.get('samples', 'student')}`).", "", f"![samples]({figures['samples']})", ""]
    if "training_curves" in figures:
        lines += ["## Training curves", "", f"![training curves]({figures['training_curves']})", ""]
    lines += ["## Stages", "", "| stage | status | seconds |", "|---|---|---|"]
    for name, stage in manifest["stages"].items():
        lines.append(f"| {name} | {stage['status']} | {stage['seconds']:.1f} |")
    return write_text(out / "report.md", "\n".join(lines) + "\n")
