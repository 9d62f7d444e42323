"""Faces without labels, for distillation: the teacher labels every augmented view.

A folder of photos or face crops becomes one record per face. The face box comes from an
existing ``.pts`` file beside the image when there is one (its box only: the points are ignored,
so machine-made or noisy labels never reach the loss), otherwise from the packaged detector
(its calibrated box, :func:`landmarks.detect.calibrated_box`). Unreadable images and images
without a face are skipped with a reason; only a folder with no usable face is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from landmarks.coords import DEFAULT_CROP_SCALE, landmark_box
from landmarks.data.augment import AugmentConfig
from landmarks.data.cache import ImageCache
from landmarks.data.dataset import CropDataset, Sample
from landmarks.data.formats import IMAGE_SUFFIXES, BadFile, read_image, read_pts
from landmarks.data.specs import split_spec
from landmarks.errors import ConfigError, DataError, LandmarksError


@dataclass(frozen=True, eq=False)
class UnlabeledRecord:
    """One face without labels: ``box`` is its landmark-box equivalent, continuous coordinates."""

    key: str
    image_path: Path
    box: np.ndarray


@dataclass
class UnlabeledScan:
    root: Path
    images: int
    records: list[UnlabeledRecord] = field(default_factory=list)
    skipped: list[BadFile] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.root}: {len(self.records)} unlabeled faces from {self.images} images"
                + (f", {len(self.skipped)} skipped" if self.skipped else ""))


def _images_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def scan_unlabeled(path: str | Path, *, detector: Any = None, max_faces: int = 4) -> UnlabeledScan:
    """Every usable face under ``path``; ``detector`` (lazily the default one) is only run on
    images without a ``.pts`` beside them."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"--unlabeled {root}: no such folder")
    images = _images_under(root)
    if not images:
        raise DataError(f"--unlabeled {root}: no images (.jpg/.png/.bmp/.webp/.tif) found")
    scan = UnlabeledScan(root, len(images))
    for image_path in images:
        key = image_path.relative_to(root).as_posix()
        pts = image_path.with_suffix(".pts")
        if pts.is_file():
            try:
                scan.records.append(UnlabeledRecord(key, image_path, landmark_box(read_pts(pts))))
                continue
            except LandmarksError:
                pass  # an unreadable .pts only loses its box; the detector may still find the face
        try:
            image = read_image(image_path)
        except LandmarksError as err:
            scan.skipped.append(BadFile(image_path, str(err).removeprefix(f"{image_path}: ")))
            continue
        if detector is None:
            from landmarks.detect import load_detector

            detector = load_detector()
        detections = detector.detect(image)[:max_faces]
        if not detections:
            scan.skipped.append(BadFile(image_path, "no face found"))
        from landmarks.detect import calibrated_box

        for k, det in enumerate(detections):
            scan.records.append(UnlabeledRecord(key if k == 0 else f"{key}#{k}", image_path,
                                                calibrated_box(det.box, detector.calibration)))
    if not scan.records:
        reasons = sorted({b.reason for b in scan.skipped})
        raise DataError(f"--unlabeled {root}: no usable face in {len(images)} images ({'; '.join(reasons)})")
    return scan


def load_unlabeled(spec: str | Sequence[str], *, detector: Any = None) -> list[UnlabeledScan]:
    """Scan each folder of a (comma-separated) spec; keys are prefixed when there are several."""
    folders = split_spec(spec)
    if any(f.startswith("synthetic") for f in folders):
        raise ConfigError("--unlabeled takes folders of photos or face crops, not 'synthetic'")
    scans = [scan_unlabeled(f, detector=detector) for f in folders]
    if len(scans) > 1:
        for scan in scans:
            scan.records = [UnlabeledRecord(f"{scan.root.name}/{r.key}", r.image_path, r.box) for r in scan.records]
    return scans


class UnlabeledFaceDataset(CropDataset):
    """Augmented crops of unlabeled faces: NaN points, ``labeled`` False, images cached."""

    def __init__(self, records: Sequence[UnlabeledRecord], num_points: int, *, input_size: int,
                 crop_scale: float = DEFAULT_CROP_SCALE, augment: AugmentConfig | None = None, seed: int = 0,
                 teacher_size: int | None = None, cache_images: bool = True) -> None:
        self.records = tuple(records)
        if not self.records:
            raise DataError("no unlabeled faces")
        super().__init__(num_points, input_size, crop_scale, augment, seed, teacher_size)
        self._nan_points = np.full((num_points, 2), np.nan)
        self.cache = (ImageCache([r.image_path for r in self.records], [r.box for r in self.records],
                                 self.crop_scale, self.crop_size) if cache_images else None)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        if self.cache is None:
            image, box = read_image(record.image_path), record.box
        else:
            cached = self.cache[index]
            image, box = cached.pixels, cached.box_to_cached(record.box)
        return self._sample(index, image, self._nan_points, record.key, None, box=box, labeled=False)

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.records]


class MixedFaceDataset(Dataset):
    """Labeled faces plus unlabeled ones in a set ratio: ``ratio`` of every epoch's samples are
    unlabeled, drawn without repetition from the pool (a different part of it each epoch when the
    pool is larger than needed). An epoch still visits every labeled face once."""

    def __init__(self, labeled: Dataset, unlabeled: UnlabeledFaceDataset, ratio: float, seed: int = 0) -> None:
        if not 0.0 < ratio < 1.0:
            raise ConfigError(f"unlabeled ratio must be in (0, 1), got {ratio!r}")
        self.labeled, self.unlabeled, self.ratio, self.seed = labeled, unlabeled, ratio, seed
        self.num_points = labeled.num_points
        self.input_size = labeled.input_size
        self.num_labeled = len(labeled)
        self.num_unlabeled = max(1, round(self.num_labeled * ratio / (1.0 - ratio)))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        for part in (self.labeled, self.unlabeled):
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_labeled + self.num_unlabeled

    def _unlabeled_index(self, slot: int) -> int:
        pool = len(self.unlabeled)
        draw = self.epoch * self.num_unlabeled + slot  # walk through the pool across epochs
        cycle, position = divmod(draw, pool)
        order = np.random.default_rng([self.seed, 7, cycle]).permutation(pool)
        return int(order[position])

    def __getitem__(self, index: int) -> Sample:
        if index < self.num_labeled:
            return self.labeled[index]
        return self.unlabeled[self._unlabeled_index(index - self.num_labeled)]
