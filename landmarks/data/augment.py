"""Training augmentation: one exact affine for geometry, albumentations for photometry.

Rotation, scale and shift jitter of the crop box and the horizontal flip are composed into
a single 2x3 map from the original image to the crop, applied to the pixels (one resampling)
and to the points (exactly), so landmarks never drift from the face. Photometric changes
(colour, blur, noise, JPEG, occluders) touch only pixels and run on the small crop.

Everything is drawn from a per-sample generator seeded by ``(seed, epoch, index)``, so a
sample is the same whichever DataLoader worker draws it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from landmarks.coords import warp_continuous
from landmarks.errors import ConfigError
from landmarks.schemes import LandmarkScheme

_RANGES = {
    "rotation_deg": (0.0, 180.0),
    "scale_jitter": (0.0, 0.9),
    "shift_jitter": (0.0, 1.0),
}


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; jitters are fractions of the face box, ``*_prob`` in [0, 1]."""

    rotation_deg: float = 30.0  # uniform in [-r, r] about the crop centre
    scale_jitter: float = 0.15  # crop side times uniform [1 - s, 1 + s]
    shift_jitter: float = 0.08  # crop centre moved by uniform [-t, t] * face box side, per axis
    flip_prob: float = 0.5
    color_prob: float = 0.5
    blur_prob: float = 0.15
    noise_prob: float = 0.15
    jpeg_prob: float = 0.25
    occlusion_prob: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"augment.{f.name} must be a finite number, got {value!r}")
            low, high = _RANGES.get(f.name, (0.0, 1.0))
            if not low <= value <= high:
                raise ConfigError(f"augment.{f.name} must be in [{low:g}, {high:g}], got {value!r}")

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """Every augmentation off (the plain square face crop, but through this code path)."""
        return cls(**{f.name: 0.0 for f in fields(cls)})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> AugmentConfig:
        """Build from a recipe mapping; unknown keys are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown augment key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**dict(values))

    @property
    def has_photometric(self) -> bool:
        return any(getattr(self, n) > 0 for n in
                   ("color_prob", "blur_prob", "noise_prob", "jpeg_prob", "occlusion_prob"))


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: independent of worker, order and other samples."""
    return np.random.default_rng([seed, epoch, index])


def crop_matrix(
    box: np.ndarray,
    crop_scale: float,
    size: int,
    *,
    angle_deg: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """2x3 map, continuous coordinates, from the image to the (jittered) square face crop (DESIGN.md, "Coordinates").

    With the defaults it equals ``CropTransform.from_box(box, crop_scale, size).matrix()``.
    ``shift`` is in units of the face box's longer side; ``scale`` multiplies the crop side.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    box_side = max(x1 - x0, y1 - y0, 1e-6)
    centre = np.array([(x0 + x1) / 2 + shift[0] * box_side, (y0 + y1) / 2 + shift[1] * box_side])
    k = size / (crop_scale * box_side * scale)
    a = math.radians(angle_deg)
    linear = k * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    matrix = np.hstack([linear, (size / 2 - linear @ centre)[:, None]])
    if flip:
        matrix = np.array([[-1.0, 0.0, size], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    return matrix


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``[P, 2]`` continuous points through a 2x3 affine."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _build_photometric(config: AugmentConfig) -> Any:
    """The albumentations pipeline of the photometric part (imported lazily: it is slow)."""
    import albumentations as A

    colour = A.OneOf([
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=1.0),
    ], p=config.color_prob)
    blur = A.OneOf([
        A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.5), p=1.0),
        A.MotionBlur(blur_limit=(3, 7), p=1.0),
    ], p=config.blur_prob)
    transforms = [
        colour,
        blur,
        A.GaussNoise(std_range=(0.01, 0.06), p=config.noise_prob),
        A.ImageCompression(quality_range=(30, 90), p=config.jpeg_prob),
        A.CoarseDropout(num_holes_range=(1, 2), hole_height_range=(0.1, 0.3),
                        hole_width_range=(0.1, 0.3), fill="random_uniform", p=config.occlusion_prob),
    ]
    return A.Compose([t for t in transforms if t.p > 0], seed=0)


class Augmenter:
    """Applies an :class:`AugmentConfig` to one face: ``(image, points) -> (crop, crop points)``."""

    def __init__(self, config: AugmentConfig, num_points: int) -> None:
        self.config = config
        self._perm = None
        if config.flip_prob > 0:
            try:
                self._perm = LandmarkScheme.from_num_points(num_points).flip_permutation
            except ValueError as err:
                raise ConfigError(f"cannot flip: {err}; set augment flip_prob to 0") from None
        self._photometric = _build_photometric(config) if config.has_photometric else None

    def geometry(self, box: np.ndarray, crop_scale: float, size: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """Draw one jittered crop: its image->crop matrix and whether it is mirrored."""
        c = self.config
        angle = rng.uniform(-c.rotation_deg, c.rotation_deg)
        scale = 1.0 + rng.uniform(-c.scale_jitter, c.scale_jitter)
        shift = tuple(rng.uniform(-c.shift_jitter, c.shift_jitter, size=2))
        flip = bool(rng.random() < c.flip_prob)
        matrix = crop_matrix(box, crop_scale, size, angle_deg=angle, scale=scale, shift=shift, flip=flip)
        return matrix, flip

    def __call__(self, image: np.ndarray, points: np.ndarray, box: np.ndarray, crop_scale: float,
                 size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Crop with jitter; returns ``(crop, crop points, matrix, flipped)``."""
        matrix, flip = self.geometry(box, crop_scale, size, rng)
        crop = warp_continuous(image, matrix, size)
        crop_points = apply_affine(matrix, points)
        if flip:
            crop_points = crop_points[self._perm]
        if self._photometric is not None:
            self._photometric.set_random_seed(int(rng.integers(2**31)))
            crop = self._photometric(image=crop)["image"]
        return crop, crop_points, matrix, flip
