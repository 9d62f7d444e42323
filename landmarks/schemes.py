"""Landmark schemes: how many points, which are the outer eye corners, how a flip permutes them."""

from __future__ import annotations

import enum

import numpy as np


def _ibug68_flip() -> np.ndarray:
    pairs = (
        [(i, 16 - i) for i in range(8)]  # jaw
        + [(17 + i, 26 - i) for i in range(5)]  # brows
        + [(31, 35), (32, 34)]  # nostrils
        + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
        + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56)]  # outer lips
        + [(60, 64), (61, 63), (67, 65)]  # inner lips
    )
    return _perm_from_pairs(68, pairs)


def _wflw98_flip() -> np.ndarray:
    pairs = (
        [(i, 32 - i) for i in range(16)]  # contour
        + [(33 + i, 46 - i) for i in range(5)]  # upper brows
        + [(38 + i, 50 - i) for i in range(4)]  # lower brows
        + [(55, 59), (56, 58)]  # nostrils
        + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
        + [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84)]  # outer lips
        + [(88, 92), (89, 91), (95, 93)]  # inner lips
        + [(96, 97)]  # pupils
    )
    return _perm_from_pairs(98, pairs)


def _perm_from_pairs(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


class LandmarkScheme(enum.Enum):
    """A landmark annotation scheme, identified by its point count."""

    IBUG68 = 68
    WFLW98 = 98

    @property
    def num_points(self) -> int:
        return self.value

    @property
    def outer_eye_corners(self) -> tuple[int, int]:
        """0-based indices of the outer eye corners: the inter-ocular normalizer of nme_io."""
        return {68: (36, 45), 98: (60, 72)}[self.value]

    @property
    def flip_permutation(self) -> np.ndarray:
        """Index map so that ``flipped[i] = mirrored(points[perm[i]])`` keeps point semantics."""
        return {68: _ibug68_flip, 98: _wflw98_flip}[self.value]()

    @classmethod
    def from_num_points(cls, num_points: int) -> LandmarkScheme:
        try:
            return cls(num_points)
        except ValueError:
            known = ", ".join(str(s.value) for s in cls)
            raise ValueError(f"no landmark scheme has {num_points} points (known: {known})") from None
