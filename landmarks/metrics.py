"""Landmark accuracy metrics of docs/DESIGN.md, "Metrics", vectorized over images.

Every NME here is the per-image mean point-to-point L2 error divided by a normalizer,
averaged over images and reported in percent. Failure rates and AUC use ``nme_io`` as a
fraction (0.08 = 8 %).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from landmarks.schemes import LandmarkScheme

THRESHOLDS = (0.08, 0.10)


def point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-point L2 distances, ``[N, P]``; inputs ``[N, P, 2]`` in the same units."""
    pred, gt = _check(pred, gt)
    return np.linalg.norm(pred - gt, axis=-1)


def interocular(gt: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners of each face, ``[N]``."""
    gt = np.asarray(gt, dtype=np.float64)
    a, b = LandmarkScheme.from_num_points(gt.shape[-2]).outer_eye_corners
    return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)


def box_size(gt: np.ndarray) -> np.ndarray:
    """``sqrt(w * h)`` of each face's ground-truth landmark box, ``[N]``."""
    gt = np.asarray(gt, dtype=np.float64)
    wh = gt.max(axis=1) - gt.min(axis=1)
    return np.sqrt(wh[:, 0] * wh[:, 1])


def per_image_nme(pred: np.ndarray, gt: np.ndarray, normalizer: np.ndarray | float) -> np.ndarray:
    """Per-image mean point error over ``normalizer`` (a fraction, not percent), ``[N]``."""
    return point_errors(pred, gt).mean(axis=1) / normalizer


def nme_interocular(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return per_image_nme(pred, gt, interocular(gt))


def nme_box(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return per_image_nme(pred, gt, box_size(gt))


def nme_image(pred: np.ndarray, gt: np.ndarray, image_size: float) -> np.ndarray:
    return per_image_nme(pred, gt, float(image_size))


def failure_rate(errors: np.ndarray, threshold: float) -> float:
    """Fraction of images whose error exceeds ``threshold``."""
    return float(np.mean(np.asarray(errors) > threshold))


def auc(errors: np.ndarray, threshold: float) -> float:
    """Area under the CED curve on ``[0, threshold]``, normalized to ``[0, 1]``.

    Exact for the step-function CED: the integral of ``P(e <= x)`` over ``[0, t]`` equals
    ``mean(max(0, t - e))``, so no sampling grid is involved.
    """
    errors = np.asarray(errors, dtype=np.float64)
    return float(np.mean(np.clip(threshold - errors, 0.0, None)) / threshold)


def ced_curve(errors: np.ndarray, max_error: float = 0.10, steps: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: ``(thresholds, fraction of images with error <= t)``."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    thresholds = np.linspace(0.0, max_error, steps)
    fractions = np.searchsorted(errors, thresholds, side="right") / max(len(errors), 1)
    return thresholds, fractions


@dataclass(frozen=True)
class LandmarkMetrics:
    """The summary table of docs/DESIGN.md, "Metrics" (NMEs in percent, FR and AUC as fractions)."""

    num_images: int
    nme_io: float
    nme_box: float
    nme_img: float
    fr_008: float
    fr_010: float
    auc_008: float
    auc_010: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compute_metrics(
    pred: np.ndarray, gt: np.ndarray, image_size: float
) -> tuple[LandmarkMetrics, dict[str, np.ndarray]]:
    """All metrics of docs/DESIGN.md plus the per-image errors (fractions) they came from."""
    per_image = {
        "nme_io": nme_interocular(pred, gt),
        "nme_box": nme_box(pred, gt),
        "nme_img": nme_image(pred, gt, image_size),
    }
    io = per_image["nme_io"]
    metrics = LandmarkMetrics(
        num_images=len(io),
        nme_io=100 * float(io.mean()),
        nme_box=100 * float(per_image["nme_box"].mean()),
        nme_img=100 * float(per_image["nme_img"].mean()),
        fr_008=failure_rate(io, 0.08),
        fr_010=failure_rate(io, 0.10),
        auc_008=auc(io, 0.08),
        auc_010=auc(io, 0.10),
    )
    return metrics, per_image


def _check(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim == 2:
        pred = pred.reshape(pred.shape[0], -1, 2)
    if pred.shape != gt.shape or gt.ndim != 3 or gt.shape[-1] != 2:
        raise ValueError(f"predictions {pred.shape} and ground truth {gt.shape} must both be [N, P, 2]")
    if len(gt) == 0:
        raise ValueError("no images to evaluate")
    return pred, gt
