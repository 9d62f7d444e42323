"""Contact sheet of synthetic faces with their landmarks: the quickest visual check."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from landmarks.synthetic.generator import generate_face

_GROUP_COLORS = ((0, 255, 0), (255, 200, 0), (255, 80, 80), (0, 200, 255), (255, 0, 255))
_GROUPS = (range(0, 17), range(17, 27), range(27, 36), range(36, 48), range(48, 68))


def draw_points(image: np.ndarray, points: np.ndarray, scale: int) -> np.ndarray:
    """Upscale ``image`` by ``scale`` and mark each landmark group in its own colour."""
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    for group, color in zip(_GROUPS, _GROUP_COLORS, strict=True):
        for p in points[list(group)]:
            centre = np.round((p * scale - 0.5) * 16).astype(np.int32)
            cv2.circle(big, tuple(int(v) for v in centre), 2 * 16, color, -1, cv2.LINE_AA, 4)
    return big


def contact_sheet(seeds: Sequence[int], size: int = 128, columns: int = 4, scale: int = 2) -> np.ndarray:
    """RGB grid of the faces of ``seeds`` with landmarks drawn."""
    tiles = []
    for seed in seeds:
        face = generate_face(seed, size)
        tiles.append(draw_points(face.image, face.points, scale))
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)
