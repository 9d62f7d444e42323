"""Torch datasets of face crops, and :func:`open_dataset`, the one way to name a dataset.

Every sample is the design section-1 crop of the ground-truth landmark box (optionally
jittered by :mod:`landmarks.data.augment`), as the dict of docs/ARCHITECTURE.md:
``image`` uint8 ``[S, S, 3]`` RGB, ``points`` float32 ``[P, 2]`` ``xy_norm``, ``key``, ``pose``.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from landmarks.coords import DEFAULT_CROP_SCALE, crop_face, landmark_box, normalize, warp_continuous
from landmarks.data.augment import AugmentConfig, Augmenter, sample_rng
from landmarks.data.cache import ImageCache
from landmarks.data.formats import FaceRecord, load_records, read_image
from landmarks.data.specs import (
    distinct_labels,
    is_synthetic_spec,
    parse_synthetic_spec,
    split_spec,
    synthetic_canvas_size,
)
from landmarks.data.split import Holdout
from landmarks.errors import ConfigError, DataError

Sample = dict[str, Any]
UNKNOWN_POSE = np.full(3, np.nan, dtype=np.float32)
# landmarks.synthetic: positive roll turns the face clockwise as seen in the image, i.e. the
# rotation ``[[c, -s], [s, c]]`` in y-down image coordinates, the convention of crop_matrix:
# rotating the image by ``a`` adds ``a`` to the roll.
ROLL_SIGN = 1.0


def _check_crop_params(input_size: int, crop_scale: float, seed: int) -> None:
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 8:
        raise ConfigError(f"input_size must be an integer >= 8, got {input_size!r}")
    if not (isinstance(crop_scale, int | float) and math.isfinite(crop_scale) and crop_scale > 0):
        raise ConfigError(f"crop_scale must be a positive number, got {crop_scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def adjust_pose(pose: np.ndarray, matrix: np.ndarray, flipped: bool) -> np.ndarray:
    """Pose of the augmented crop: in-plane rotation changes roll, a mirror negates yaw and roll."""
    yaw, pitch, roll = (float(v) for v in pose)
    linear = matrix[:, :2]
    if flipped:  # undo the mirror to read the rotation angle
        linear = np.array([[-1.0, 0.0], [0.0, 1.0]]) @ linear
    roll += ROLL_SIGN * math.degrees(math.atan2(linear[1, 0], linear[0, 0]))
    if flipped:
        yaw, roll = -yaw, -roll
    roll = (roll + 180.0) % 360.0 - 180.0
    return np.array([yaw, pitch, roll], dtype=np.float32)


class CropDataset(Dataset):
    """Common part of the face datasets: crop, augment, normalize; the per-epoch seed."""

    def __init__(self, num_points: int, input_size: int, crop_scale: float,
                 augment: AugmentConfig | None, seed: int, teacher_size: int | None = None) -> None:
        _check_crop_params(input_size, crop_scale, seed)
        if teacher_size is not None:
            _check_crop_params(teacher_size, crop_scale, seed)
        self.num_points = num_points
        self.input_size = input_size
        self.teacher_size = teacher_size
        self.crop_scale = float(crop_scale)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._augmenter = Augmenter(augment, num_points) if augment is not None else None

    @property
    def crop_size(self) -> int:
        """The largest crop a sample is cut at (what an image cache must keep pixels for)."""
        return max(self.input_size, self.teacher_size or 0)

    def set_epoch(self, epoch: int) -> None:
        """Draw different augmentations each epoch, reproducibly (call before each epoch)."""
        self.epoch = int(epoch)

    def _sample(self, index: int, image: np.ndarray, points: np.ndarray, key: str,
                pose: np.ndarray | None, box: np.ndarray | None = None, labeled: bool = True) -> Sample:
        """One face as the sample dict. ``box`` defaults to the landmarks' box; an unlabeled
        face passes its box and NaN points. With ``teacher_size``, ``teacher_image`` is the
        same view (same geometry, so the same normalized landmarks) at the teacher's input
        size, cut straight from the image and left without photometric changes: the teacher
        labels the clean view, the student learns from the noisy one."""
        box = landmark_box(points) if box is None else np.asarray(box, dtype=np.float64)
        size = self.input_size
        pose = UNKNOWN_POSE.copy() if pose is None else np.asarray(pose, dtype=np.float32)
        if self._augmenter is None:
            crop, transform = crop_face(image, box, self.crop_scale, size)
            crop_points, matrix = transform.to_crop(points), transform.matrix()
        else:
            rng = sample_rng(self.seed, self.epoch, index)
            crop, crop_points, matrix, flipped = self._augmenter(
                image, points, box, self.crop_scale, size, rng)
            pose = adjust_pose(pose, matrix, flipped)
        sample = {
            "image": np.ascontiguousarray(crop, dtype=np.uint8),
            "points": normalize(crop_points, size).astype(np.float32),
            "key": key,
            "pose": pose,
            "labeled": labeled,
        }
        if self.teacher_size is not None:
            teacher_matrix = matrix * (self.teacher_size / size)
            sample["teacher_image"] = warp_continuous(image, teacher_matrix, self.teacher_size)
        return sample


class FaceDataset(CropDataset):
    """Annotated image files (:class:`FaceRecord`), decoded on access."""

    def __init__(self, records: Sequence[FaceRecord], *, input_size: int, crop_scale: float = DEFAULT_CROP_SCALE,
                 augment: AugmentConfig | None = None, seed: int = 0, teacher_size: int | None = None,
                 cache_images: bool = False) -> None:
        self.records = tuple(records)
        if not self.records:
            raise DataError("dataset has no faces")
        _check_uniform(self.records)
        super().__init__(self.records[0].num_points, input_size, crop_scale, augment, seed, teacher_size)
        self.cache: ImageCache | None = None
        if cache_images:
            self.cache = ImageCache([r.image_path for r in self.records],
                                    [landmark_box(r.points) for r in self.records], self.crop_scale, self.crop_size)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        if self.cache is None:
            return self._sample(index, read_image(record.image_path), record.points, record.key, None)
        cached = self.cache[index]
        return self._sample(index, cached.pixels, cached.to_cached(record.points), record.key, None)

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    @cached_property
    def _file_hashes(self) -> dict[Path, str]:
        return {p: _sha256(p.read_bytes()) for p in dict.fromkeys(r.image_path for r in self.records)}

    def item_hashes(self) -> list[str]:
        """sha256 of each face's image file: equal bytes mean the same image (overlap checks)."""
        return [self._file_hashes[r.image_path] for r in self.records]

    def content_hash(self) -> str:
        """sha256 over sorted keys, image bytes and points: the identity of an eval set."""
        h = hashlib.sha256(b"landmarks.FaceDataset/1\n")
        pairs = zip(self.records, self.item_hashes(), strict=True)
        for record, item in sorted(pairs, key=lambda t: t[0].key):
            h.update(record.key.encode("utf-8") + b"\0" + item.encode("ascii"))
            h.update(np.ascontiguousarray(record.points, dtype="<f8").tobytes())
        return h.hexdigest()


def _check_uniform(records: Sequence[FaceRecord]) -> None:
    expected = records[0].num_points
    for record in records:
        if record.num_points != expected:
            raise DataError(f"{record.image_path}: mixed point counts: has {record.num_points} points, "
                            f"{records[0].image_path} has {expected}")
    seen: set[str] = set()
    for record in records:
        if record.key in seen:
            raise DataError(f"{record.image_path}: duplicate dataset key {record.key!r}")
        seen.add(record.key)


class SyntheticFaceDataset(CropDataset):
    """Procedural faces ``seed + i`` from :func:`landmarks.synthetic.generate_face`, pose known."""

    def __init__(self, num_faces: int, input_size: int, crop_scale: float = DEFAULT_CROP_SCALE, seed: int = 0,
                 augment: AugmentConfig | None = None, teacher_size: int | None = None) -> None:
        if isinstance(num_faces, bool) or not isinstance(num_faces, int) or num_faces < 1:
            raise ConfigError(f"synthetic face count must be a positive integer, got {num_faces!r}")
        super().__init__(68, input_size, crop_scale, augment, seed, teacher_size)
        self.num_faces = num_faces
        self.canvas_size = synthetic_canvas_size(self.crop_size)
        self._item_hashes: list[str] | None = None

    def __len__(self) -> int:
        return self.num_faces

    def _face(self, index: int) -> Any:
        from landmarks.synthetic import generate_face

        if not 0 <= index < self.num_faces:
            raise IndexError(f"synthetic face {index} out of range [0, {self.num_faces})")
        return generate_face(self.seed + index, self.canvas_size)

    def __getitem__(self, index: int) -> Sample:
        face = self._face(index)
        return self._sample(index, face.image, face.points, self.keys[index], face.pose)

    @property
    def keys(self) -> list[str]:
        return [f"synthetic:{self.seed + i}" for i in range(self.num_faces)]

    def item_hashes(self) -> list[str]:
        """sha256 of each generated image's pixels (generates every face once, then cached)."""
        if self._item_hashes is None:
            self._item_hashes = [_sha256(self._face(i).image.tobytes()) for i in range(self.num_faces)]
        return list(self._item_hashes)

    def content_hash(self) -> str:
        """The generator is deterministic, so (count, seed, canvas size) identify the set."""
        text = (f"landmarks.SyntheticFaceDataset/1 count={self.num_faces} seed={self.seed} "
                f"size={self.canvas_size}")
        return _sha256(text.encode("ascii"))


class ConcatFaceDataset(Dataset):
    """Several face datasets as one (e.g. ``synthetic`` plus a folder); keys must stay unique."""

    def __init__(self, parts: Sequence[CropDataset]) -> None:
        self.parts = tuple(parts)
        counts = {p.num_points for p in self.parts}
        if len(counts) != 1:
            raise DataError(f"datasets mix point counts ({', '.join(map(str, sorted(counts)))})")
        keys = self.keys
        if len(set(keys)) != len(keys):
            raise DataError("datasets share face keys (the same dataset named twice?)")
        self.num_points = counts.pop()
        self.input_size = self.parts[0].input_size
        self._ends = list(np.cumsum([len(p) for p in self.parts]))

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        part = bisect.bisect_right(self._ends, index)
        start = 0 if part == 0 else int(self._ends[part - 1])
        return self.parts[part][index - start]

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    @property
    def keys(self) -> list[str]:
        return [k for p in self.parts for k in p.keys]

    def item_hashes(self) -> list[str]:
        return [h for p in self.parts for h in p.item_hashes()]

    def content_hash(self) -> str:
        return _sha256("\n".join(p.content_hash() for p in self.parts).encode("ascii"))


AnyFaceDataset = FaceDataset | SyntheticFaceDataset | ConcatFaceDataset


def _prefixed(records: list[FaceRecord], label: str) -> list[FaceRecord]:
    return [FaceRecord(f"{label}/{r.key}", r.image_path, r.points) for r in records]


def open_dataset(
    spec: str | Sequence[str],
    *,
    input_size: int,
    crop_scale: float = DEFAULT_CROP_SCALE,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    synthetic_count: int = 1000,
    teacher_size: int | None = None,
    cache_images: bool = False,
    holdout: Holdout | None = None,
) -> AnyFaceDataset:
    """Open a dataset by name: a path, ``a,b`` (concatenated), ``synthetic`` or ``synthetic:N``.

    Keys of a single path are relative to it; with several paths each key is prefixed with
    the shortest trailing part of its dataset's path that keeps them unique. ``holdout`` keeps
    one side of a validation split of the folders' faces (synthetic faces are not split: their
    validation set comes from other seeds). ``teacher_size`` adds the teacher's view to each
    sample; ``cache_images`` decodes every image once, up front (:mod:`landmarks.data.cache`).
    """
    items = split_spec(spec)
    synthetic = [s for s in items if is_synthetic_spec(s)]
    paths = [Path(s) for s in items if not is_synthetic_spec(s)]
    if len(synthetic) > 1:
        raise ConfigError("'synthetic' named more than once: give one 'synthetic:N' instead")
    _check_crop_params(input_size, crop_scale, seed)
    parts: list[CropDataset] = []
    if paths:
        loaded = [load_records(p) for p in paths]
        if len(paths) > 1:
            loaded = [_prefixed(r, label) for r, label in zip(loaded, distinct_labels(paths), strict=True)]
        records = [r for group in loaded for r in group]
        if holdout is not None:
            records = holdout.select(records, [r.key for r in records])
        parts.append(FaceDataset(records, input_size=input_size, crop_scale=crop_scale, augment=augment,
                                 seed=seed, teacher_size=teacher_size, cache_images=cache_images))
    if synthetic:
        count = parse_synthetic_spec(synthetic[0], synthetic_count)
        parts.append(SyntheticFaceDataset(count, input_size, crop_scale, seed, augment, teacher_size))
    return parts[0] if len(parts) == 1 else ConcatFaceDataset(parts)
