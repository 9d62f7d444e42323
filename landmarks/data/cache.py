"""Decode each training image once: an in-memory uint8 cache of the pixels a crop needs.

Training draws a fresh augmented view of every face each epoch; decoding its JPEG each time
costs as much as the warp and the photometric changes together. The cache decodes every
image once, when the dataset is built (before any DataLoader worker forks, so workers share
the pages), and keeps it at no more resolution than the largest crop needs: an image whose
face would be shrunk by more than :data:`HEADROOM` is stored downscaled (``cv2.INTER_AREA``),
with the scale it was stored at, so landmarks and boxes map exactly into cached pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from landmarks.data.formats import read_image

# A cached face keeps at least this many times the pixels its largest crop samples: room for
# the scale jitter of augmentation (crops up to 1 / (1 - scale_jitter) larger) and for a
# bilinear warp that still averages neighbouring pixels.
HEADROOM = 1.5


@dataclass(frozen=True)
class CachedImage:
    """Pixels as stored, and the factors that map original coordinates into them."""

    pixels: np.ndarray  # uint8 [H, W, 3] RGB, read-only
    scale_x: float = 1.0
    scale_y: float = 1.0

    def to_cached(self, xy: np.ndarray) -> np.ndarray:
        """Original continuous ``[..., 2]`` coordinates -> coordinates in :attr:`pixels`."""
        return np.asarray(xy, dtype=np.float64) * (self.scale_x, self.scale_y)

    def box_to_cached(self, box: np.ndarray) -> np.ndarray:
        return np.asarray(box, dtype=np.float64) * (self.scale_x, self.scale_y, self.scale_x, self.scale_y)

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)


def stored_scale(box: np.ndarray, crop_scale: float, crop_size: int) -> float:
    """Largest downscale that still leaves :data:`HEADROOM` x the crop's resolution (<= 1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    crop_side = crop_scale * max(x1 - x0, y1 - y0, 1e-6)
    return min(1.0, HEADROOM * crop_size / crop_side)


def cache_image(image: np.ndarray, box: np.ndarray, crop_scale: float, crop_size: int) -> CachedImage:
    """Store ``image`` for crops of ``box``: as is, or downscaled when it has pixels to spare."""
    scale = stored_scale(box, crop_scale, crop_size)
    height, width = image.shape[:2]
    if round(width * scale) < width and round(height * scale) >= 1 and round(width * scale) >= 1:
        # fx = fy: one exact scale on both axes (a target size would round each axis differently)
        image = cv2.resize(image, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cached = CachedImage(image, scale, scale)
    else:
        cached = CachedImage(np.ascontiguousarray(image))
    cached.pixels.flags.writeable = False
    return cached


class ImageCache:
    """Every image of a dataset, decoded once, indexed like the dataset's records."""

    def __init__(
        self,
        paths: Sequence[Path],
        boxes: Sequence[np.ndarray],
        crop_scale: float,
        crop_size: int,
        *,
        decode: Callable[[Path], np.ndarray] = read_image,
    ) -> None:
        by_path: dict[Path, np.ndarray] = {}
        self.items: list[CachedImage] = []
        for path, box in zip(paths, boxes, strict=True):
            if path not in by_path:  # several faces of one photo share one decode
                by_path[path] = decode(path)
            self.items.append(cache_image(by_path[path], box, crop_scale, crop_size))

    def __getitem__(self, index: int) -> CachedImage:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def nbytes(self) -> int:
        return sum({id(c.pixels): c.nbytes for c in self.items}.values())
