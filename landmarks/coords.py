"""The coordinate conventions of docs/DESIGN.md, "Coordinates", each in one place.

* On disk (iBUG ``.pts``): 1-based pixel indices.
* In memory: 0-based continuous coordinates; pixel column ``k`` spans ``[k, k+1)``.
* Model outputs: normalized to the input crop, ``x / W``, ``y / H``.
* Model input: a square crop centred on the face box, side ``crop_scale * max(w, h)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_CROP_SCALE = 1.25  # crop side / longer side of the face box, unless a model says otherwise


def pts_to_continuous(points_pts: np.ndarray) -> np.ndarray:
    """iBUG 1-based pixel indices -> 0-based continuous coordinates (``x - 1 + 0.5``)."""
    return np.asarray(points_pts, dtype=np.float64) - 0.5


def continuous_to_pts(points: np.ndarray) -> np.ndarray:
    """0-based continuous coordinates -> iBUG 1-based pixel indices (inverse of the above)."""
    return np.asarray(points, dtype=np.float64) + 0.5


def index_to_continuous(points_idx: np.ndarray) -> np.ndarray:
    """0-based pixel indices (pixel centres at integers, e.g. face-synthetics) -> continuous."""
    return np.asarray(points_idx, dtype=np.float64) + 0.5


def continuous_to_index(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) - 0.5


def landmark_box(points: np.ndarray) -> np.ndarray:
    """``[x0, y0, x1, y1]`` of the landmarks (last two axes ``[P, 2]``)."""
    points = np.asarray(points)
    return np.concatenate([points.min(axis=-2), points.max(axis=-2)], axis=-1)


@dataclass(frozen=True)
class CropTransform:
    """A square crop: ``crop = (image - origin) * scale`` in continuous coordinates."""

    origin_x: float
    origin_y: float
    scale: float
    size: int

    @classmethod
    def from_box(cls, box: np.ndarray, crop_scale: float, size: int) -> CropTransform:
        """The standard crop of a face box: centred, side ``crop_scale * max(w, h)``."""
        x0, y0, x1, y1 = (float(v) for v in box)
        side = crop_scale * max(x1 - x0, y1 - y0, 1e-6)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return cls(cx - side / 2, cy - side / 2, size / side, size)

    def matrix(self) -> np.ndarray:
        """2x3 affine matrix from image to crop, continuous coordinates."""
        s = self.scale
        return np.array([[s, 0.0, -self.origin_x * s], [0.0, s, -self.origin_y * s]])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - (self.origin_x, self.origin_y)) * self.scale

    def to_image(self, crop_points: np.ndarray) -> np.ndarray:
        return np.asarray(crop_points, dtype=np.float64) / self.scale + (self.origin_x, self.origin_y)


def warp_continuous(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp with an affine map given in continuous coordinates (pixel centres at k + 0.5).

    OpenCV works on pixel indices (centres at integers), so the map is conjugated by the
    half-pixel shift here, once, instead of at every call site.
    """
    m = np.asarray(matrix, dtype=np.float64)
    shift = m[:, :2].sum(axis=1) * 0.5 - 0.5  # index_out = A (index_in + 0.5) + b - 0.5
    m_idx = m.copy()
    m_idx[:, 2] += shift
    return cv2.warpAffine(image, m_idx, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def crop_face(image: np.ndarray, box: np.ndarray, crop_scale: float, size: int) -> tuple[np.ndarray, CropTransform]:
    """Cut the standard crop of ``box`` out of ``image``; returns the crop and its transform."""
    transform = CropTransform.from_box(box, crop_scale, size)
    return warp_continuous(image, transform.matrix(), size), transform


def normalize(crop_points: np.ndarray, size: int) -> np.ndarray:
    """Crop pixel coordinates -> model output convention ``xy_norm``."""
    return np.asarray(crop_points, dtype=np.float64) / size


def denormalize(norm_points: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(norm_points, dtype=np.float64) * size
