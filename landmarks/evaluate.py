"""The one evaluation path: a predictor on an annotated dataset -> metrics and per-image errors.

Usage::

    from landmarks.evaluate import Evaluator, evaluate
    from landmarks.runtimes import load_predictor

    report = evaluate(load_predictor("student.onnx"), "data/300w/helen/testset")
    print(report.metrics.nme_io)

    evaluator = Evaluator(dataset)              # one eval set, many models (gate, parity, recipes)
    evaluator.nme(load_predictor("student.int8.onnx"))

:class:`Evaluator` caches each report per (artifact hash, eval-set hash) in an :class:`EvalCache`
that callers may share across a whole run, so every (artifact, eval set) pair is evaluated once.
Metrics are defined in ``docs/DESIGN.md`` ("Metrics").

Errors are computed in crop pixels of the crop (``docs/DESIGN.md``, "Coordinates") built from the predictor's own
``input_size`` and ``crop_scale``. The crop is a similarity transform of the image, so
``nme_io`` and ``nme_box`` equal their values in original-image coordinates; ``nme_img`` is
relative to the crop side.
"""

from __future__ import annotations

import hashlib
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


def sweep_crop_scale(
    predictor: Predictor,
    data: str | os.PathLike[str],
    scales: Sequence[float],
    **kwargs: Any,
) -> list[tuple[float, EvalReport]]:
    """``evaluate`` at each crop scale (the dataset re-cropped each time): finds the scale a model was
    trained at. The predictor's own metadata is left as it was; nothing is applied."""
    own = predictor.metadata
    reports = []
    try:
        for scale in scales:
            predictor.metadata = own.replace(crop_scale=float(scale))
            reports.append((float(scale), evaluate(predictor, data, **kwargs)))
    finally:
        predictor.metadata = own
    return reports


def parse_range(text: str) -> list[float]:
    """``"1.0:1.6:0.1"`` -> [1.0, 1.1, ..., 1.6] (the end included, rounded to the step's decimals)."""
    try:
        start, end, step = (float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"expected START:END:STEP, e.g. 1.0:1.6:0.1, got {text!r}") from None
    if not (0 < start <= end and step > 0) or (end - start) / step > 1000:
        raise ConfigError(f"expected 0 < START <= END and 0 < STEP (at most 1000 steps), got {text!r}")
    decimals = max(0, -int(np.floor(np.log10(step))) + 1)
    count = int(np.floor((end - start) / step + 1e-9)) + 1
    return [round(start + i * step, decimals) for i in range(count)]


EvalKey = tuple[str, str]  # (artifact identity, eval-set content hash)
DEFAULT_KEEP_IMAGES = 16


class EvalCache:
    """Evaluation reports of one run, keyed by (artifact identity, eval-set content hash).

    ``evaluated`` lists every key in the order it was actually evaluated (cache misses), so a
    run can show that no (artifact, eval set) pair was evaluated twice.
    """

    def __init__(self) -> None:
        self._reports: dict[EvalKey, EvalReport] = {}
        self.evaluated: list[EvalKey] = []

    def get(self, key: EvalKey) -> EvalReport | None:
        return self._reports.get(key)

    def put(self, key: EvalKey, report: EvalReport) -> None:
        self._reports[key] = report
        self.evaluated.append(key)


class Evaluator:
    """One eval set, named by its content hash; ``report(predictor)`` evaluates each artifact once.

    ``limit`` evaluates the first faces only (export's parity set). Pass one ``cache`` to every
    evaluator of a run to share results across stages. ``progress`` shows a bar per evaluation.
    """

    def __init__(self, dataset: Any, name: str | None = None, *, limit: int | None = None,
                 cache: EvalCache | None = None, progress: bool = False) -> None:
        if len(dataset) == 0:
            raise DataError("the eval set is empty; it needs at least one annotated face")
        self.dataset = dataset
        self.name = name or str(getattr(dataset, "name", "") or getattr(dataset, "spec", "") or "eval")
        self.limit = limit
        self.count = len(dataset) if limit is None else min(limit, len(dataset))
        self.cache = cache if cache is not None else EvalCache()
        self.progress = progress
        self._hash: str | None = None

    @property
    def content_hash(self) -> str:
        """sha256 over the per-face content hashes: names the eval set in reports and manifests."""
        if self._hash is None and callable(getattr(self.dataset, "content_hash", None)):
            self._hash = str(self.dataset.content_hash())
        if self._hash is None:
            digest = hashlib.sha256()
            for item in dataset_hashes(self.dataset):
                digest.update(item.encode())
            self._hash = digest.hexdigest()
        if self.limit is not None and self.count < len(self.dataset):
            return f"{self._hash}[:{self.count}]"
        return self._hash

    def key(self, predictor: Predictor) -> EvalKey:
        return artifact_identity(predictor), self.content_hash

    def report(self, predictor: Predictor) -> EvalReport:
        """The predictor's :class:`EvalReport` on this set, evaluated on first request only."""
        key = self.key(predictor)
        report = self.cache.get(key)
        if report is None:
            report = evaluate(predictor, self.dataset, limit=self.limit, progress=self.progress,
                              keep_images=DEFAULT_KEEP_IMAGES)
            self.cache.put(key, report)
        return report

    def nme(self, predictor: Predictor) -> float:
        """``nme_io`` in percent."""
        return float(self.report(predictor).metrics.nme_io)


def artifact_identity(predictor: Predictor) -> str:
    """What a predictor runs: ``<runtime>:<sha256 of its file>:<metadata>``, or the live module's id."""
    from landmarks.models.checkpoint import file_sha256

    path = getattr(predictor, "path", None)
    source = f"sha256={file_sha256(path)}" if path is not None else f"object={id(predictor)}"
    meta = hashlib.sha256(repr(sorted(predictor.metadata.to_strings().items())).encode()).hexdigest()[:16]
    return f"{predictor.runtime}:{source}:{meta}"


def dataset_hashes(dataset: Any) -> list[str]:
    hashes = dataset.item_hashes()
    return [str(h) for h in (hashes.values() if isinstance(hashes, dict) else hashes)]


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
