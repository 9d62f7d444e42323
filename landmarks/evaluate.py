"""Evaluate one predictor on one annotated dataset: the section-3 metrics and per-image errors.

Usage::

    from landmarks.evaluate import evaluate
    from landmarks.runtimes import load_predictor

    report = evaluate(load_predictor("student.onnx"), "data/300w/helen/testset")
    print(report.metrics.nme_io)

Errors are computed in crop pixels of the section-1 crop built from the predictor's own
``input_size`` and ``crop_scale``. The crop is a similarity transform of the image, so
``nme_io`` and ``nme_box`` equal their values in original-image coordinates; ``nme_img`` is
relative to the crop side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from landmarks.errors import ConfigError, DataError
from landmarks.metadata import ArtifactMetadata
from landmarks.metrics import LandmarkMetrics, compute_metrics
from landmarks.runtimes.base import Predictor
from landmarks.schemes import LandmarkScheme


def normalizers(num_points: int, input_size: int) -> dict[str, str]:
    """What each NME is divided by, in words, so every report can name its normalizer."""
    try:
        a, b = LandmarkScheme.from_num_points(num_points).outer_eye_corners
        eyes = f"outer eye corners {a}-{b}"
    except ValueError:
        eyes = "outer eye corners"
    return {
        "nme_io": f"inter-ocular distance ({eyes})",
        "nme_box": "sqrt(w*h) of the ground-truth landmark box",
        "nme_img": f"crop side ({input_size} px)",
    }


@dataclass
class EvalReport:
    """Everything one evaluation produced; ``pred``/``gt`` are ``[N, P, 2]`` in ``xy_norm``."""

    metrics: LandmarkMetrics
    per_image: dict[str, np.ndarray]
    keys: list[str]
    pred: np.ndarray
    gt: np.ndarray
    model_name: str
    runtime: str
    dataset: str
    metadata: ArtifactMetadata
    images: np.ndarray

    def to_json(self) -> dict[str, Any]:
        """Summary plus per-image errors (fractions) keyed by image key; JSON-serializable."""
        return {
            "model": self.model_name,
            "runtime": self.runtime,
            "dataset": self.dataset,
            "metadata": self.metadata.to_strings(),
            "normalizers": normalizers(self.metadata.num_points, self.metadata.input_size),
            "metrics": self.metrics.as_dict(),
            "per_image": {
                key: {name: float(errors[i]) for name, errors in self.per_image.items()}
                for i, key in enumerate(self.keys)
            },
        }


def evaluate(
    predictor: Predictor,
    data: str | os.PathLike[str] | Sequence[dict[str, Any]],
    *,
    batch_size: int = 32,
    limit: int | None = None,
    progress: bool = True,
    keep_images: int = 16,
) -> EvalReport:
    """Run ``predictor`` over a dataset (spec or opened dataset) and score it.

    A spec is opened at the predictor's ``input_size`` and ``crop_scale`` without augmentation,
    so every model compared on the same spec sees its own correct crop of the same faces.
    The first ``keep_images`` crops are kept in the report for sample overlays.
    """
    if batch_size <= 0:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    if limit is not None and limit <= 0:
        raise ConfigError(f"limit must be positive, got {limit}")
    meta = predictor.metadata
    dataset, description = _open(data, meta)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise DataError(f"{description}: no images to evaluate")
    _check_dataset(dataset, meta, description)

    preds, gts, keys, kept = [], [], [], []
    for start in _progress(range(0, count, batch_size), progress, predictor.name):
        items = [dataset[i] for i in range(start, min(start + batch_size, count))]
        crops = np.stack([np.asarray(item["image"]) for item in items])
        preds.append(predictor.predict(crops).points)
        gts.append(np.stack([np.asarray(item["points"], dtype=np.float32) for item in items]))
        keys.extend(str(item["key"]) for item in items)
        kept.append(crops[: max(keep_images - start, 0)])

    pred, gt = np.concatenate(preds), np.concatenate(gts)
    size = meta.input_size
    metrics, per_image = compute_metrics(pred.astype(np.float64) * size, gt.astype(np.float64) * size, size)
    return EvalReport(
        metrics=metrics,
        per_image=per_image,
        keys=keys,
        pred=pred,
        gt=gt,
        model_name=predictor.name,
        runtime=predictor.runtime,
        dataset=description,
        metadata=meta,
        images=np.concatenate(kept),
    )


def _open(data: Any, meta: ArtifactMetadata) -> tuple[Any, str]:
    if isinstance(data, str | os.PathLike):
        from landmarks.data import open_dataset

        dataset = open_dataset(data, input_size=meta.input_size, crop_scale=meta.crop_scale, augment=None)
        return dataset, str(data)
    return data, str(getattr(data, "name", type(data).__name__))


def _check_dataset(dataset: Any, meta: ArtifactMetadata, description: str) -> None:
    """An opened dataset must crop the way this model expects, or its NME means nothing."""
    num_points = getattr(dataset, "num_points", None)
    if num_points is None:
        num_points = len(dataset[0]["points"])
    if num_points != meta.num_points:
        raise DataError(
            f"{description} has {num_points}-point annotations but the model predicts {meta.num_points}"
        )
    for name in ("input_size", "crop_scale"):
        value = getattr(dataset, name, None)
        if value is not None and not np.isclose(value, getattr(meta, name)):
            raise DataError(f"{description} was opened with {name}={value} but the model expects "
                            f"{getattr(meta, name)}; pass the dataset spec instead")
    if getattr(dataset, "augment", None) is not None:
        raise DataError(f"{description} applies augmentation; evaluate on an unaugmented dataset")


def _progress(batches: range, enabled: bool, name: str):
    if not enabled:
        return batches
    from tqdm import tqdm

    return tqdm(batches, total=len(batches), desc=f"eval {name}", unit="batch", leave=False)
