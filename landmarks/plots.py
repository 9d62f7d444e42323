"""CED curves and sample overlays as PNG files, for the eval CLI and the recipe reports.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through
``pyplot``, so no global backend is switched and nothing needs a display.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from landmarks.atomic import atomic_path
from landmarks.metrics import auc, ced_curve

GT_COLOR = "#2ca02c"
PRED_COLOR = "#d62728"


def plot_ced(
    curves: dict[str, np.ndarray],
    path: str | os.PathLike[str],
    max_error: float = 0.10,
    title: str = "Cumulative error distribution",
) -> Path:
    """One CED curve per model (per-image ``nme_io`` fractions), legend with AUC@0.08 and NME."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for name, errors in curves.items():
        errors = np.asarray(errors, dtype=np.float64)
        thresholds, fractions = ced_curve(errors, max_error=max_error)
        label = f"{name}  (NME {100 * errors.mean():.2f}%, AUC@0.08 {auc(errors, 0.08):.3f})"
        ax.step(100 * thresholds, fractions, where="post", label=label)
    if max_error >= 0.08:
        ax.axvline(8.0, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 100 * max_error)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("NME, inter-ocular normalized (%)")
    ax.set_ylabel("fraction of images")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_samples(
    images: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray | None,
    path: str | os.PathLike[str],
    cols: int = 4,
) -> Path:
    """A grid of crops with ground truth (green) and predictions (red), points in ``xy_norm``."""
    from matplotlib.figure import Figure

    images = np.asarray(images)
    count = len(images)
    if count == 0:
        raise ValueError("plot_samples needs at least one image")
    if len(pred) != count or (gt is not None and len(gt) != count):
        raise ValueError(f"{count} images but {len(pred)} predictions / {0 if gt is None else len(gt)} GT")
    cols = max(1, min(cols, count))
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows), dpi=100, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= count:
            continue
        height, width = images[i].shape[:2]
        # extent puts pixel k over [k, k+1): the continuous coordinates of docs/DESIGN.md, "Coordinates"
        ax.imshow(images[i], extent=(0, width, height, 0), interpolation="nearest")
        if gt is not None:
            ax.scatter(gt[i][:, 0] * width, gt[i][:, 1] * height, s=8, c=GT_COLOR, linewidths=0)
        ax.scatter(pred[i][:, 0] * width, pred[i][:, 1] * height, s=8, c=PRED_COLOR, linewidths=0)
    return _save(fig, path)


def _save(fig, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
