"""Appearance parameters (colours, strokes, lighting) and how they are sampled.

Kept apart from the geometry so tests and callers can vary looks without moving landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Color = tuple[float, float, float]

# Skin tones along a dark -> light curve (RGB); a sample interpolates and jitters.
_SKIN_CURVE = np.array([[70, 45, 35], [140, 95, 70], [200, 150, 120], [245, 210, 185]], dtype=np.float64)
_HAIR = np.array([[20, 16, 14], [60, 40, 28], [110, 75, 45], [200, 165, 110], [150, 70, 35], [170, 170, 165]],
                 dtype=np.float64)
_IRIS = np.array([[60, 35, 20], [110, 70, 35], [70, 110, 140], [80, 110, 70], [40, 30, 25]], dtype=np.float64)


@dataclass(frozen=True)
class Appearance:
    """Colours are RGB 0-255; sizes are mm (scaled by the projection's px_per_mm)."""

    skin: Color
    lips: Color
    iris: Color
    brows: Color
    hair: Color
    hair_style: str  # "none", "short", "long"
    sclera: Color = (228.0, 224.0, 218.0)
    brow_thickness_mm: float = 5.0
    light_angle: float = 0.0  # radians, direction the light comes from, in the image plane
    light_strength: float = 0.2  # relative brightness change across the face
    edge_shade: float = 0.25  # darkening of the face toward its silhouette


def _pick(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> Color:
    base = palette[rng.integers(len(palette))]
    return tuple(float(v) for v in np.clip(base * rng.uniform(1 - jitter, 1 + jitter, 3), 0, 255))


def _skin(rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(0, len(_SKIN_CURVE) - 1)
    i = min(int(t), len(_SKIN_CURVE) - 2)
    tone = _SKIN_CURVE[i] + (t - i) * (_SKIN_CURVE[i + 1] - _SKIN_CURVE[i])
    return np.clip(tone * rng.uniform(0.93, 1.07, 3), 0, 255)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Random but plausible colours and lighting for one face."""
    skin = _skin(rng)
    lips = np.clip(skin * (0.78, 0.55, 0.58) + rng.uniform(-12, 12, 3) + (25, 0, 5), 0, 255)
    brows = _pick(rng, _HAIR[:4], 0.15) if rng.random() < 0.8 else tuple(float(v) for v in skin * 0.45)
    return Appearance(
        skin=tuple(float(v) for v in skin),
        lips=tuple(float(v) for v in lips),
        iris=_pick(rng, _IRIS, 0.2),
        brows=brows,
        hair=_pick(rng, _HAIR, 0.15),
        hair_style=("none", "short", "long")[rng.choice(3, p=(0.15, 0.55, 0.30))],
        brow_thickness_mm=float(rng.uniform(3.5, 7.0)),
        light_angle=float(rng.uniform(-np.pi, np.pi)),
        light_strength=float(rng.uniform(0.0, 0.45)),
        edge_shade=float(rng.uniform(0.1, 0.4)),
    )
