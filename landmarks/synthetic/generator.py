"""Procedural synthetic faces with exact 68-point landmarks: the project's built-in data.

``generate_face(seed)`` is a pure function of its seed: one ``np.random.default_rng(seed)``
drives pose, expression, shape, appearance, background and occluders, in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from landmarks.synthetic.appearance import Appearance, sample_appearance
from landmarks.synthetic.geometry import FaceParams, project_face
from landmarks.synthetic.render import render
from landmarks.synthetic.template import load_template

MAX_YAW, MAX_PITCH, MAX_ROLL = 60.0, 30.0, 30.0
OCCLUSION_PROBABILITY = 0.35
_SHAPE_MODES = ("face_width", "jaw_width", "face_length", "nose_length", "nose_width", "eye_size",
                "mouth_width")


@dataclass(frozen=True)
class SyntheticFace:
    image: np.ndarray  # uint8 [size, size, 3], RGB
    points: np.ndarray  # float64 [68, 2], 0-based continuous pixel coordinates
    pose: np.ndarray  # float64 [3]: yaw, pitch, roll in degrees


def _angle(rng: np.random.Generator, sd: float, limit: float, p_uniform: float) -> float:
    """Mostly near-frontal (normal), with a uniform share that covers the extremes."""
    value = rng.uniform(-limit, limit) if rng.random() < p_uniform else rng.normal(0, sd)
    return float(np.clip(value, -limit, limit))


def _expression(rng: np.random.Generator) -> dict[str, float]:
    modes = {
        "mouth_open": rng.uniform(0.05, 1.3) if rng.random() < 0.45 else 0.0,
        "smile": rng.uniform(-0.4, 1.0) if rng.random() < 0.6 else 0.0,
        "brow_raise": rng.uniform(-0.5, 1.0) if rng.random() < 0.5 else 0.0,
        "brow_furrow": rng.uniform(0.0, 1.0) if rng.random() < 0.2 else 0.0,
    }
    closing = rng.random()
    if closing < 0.15:
        both = rng.uniform(0.2, 1.0)
        modes["eye_close_right"] = both
        modes["eye_close_left"] = float(np.clip(both + rng.normal(0, 0.05), 0, 1))
    elif closing < 0.2:
        modes["eye_close_right" if rng.random() < 0.5 else "eye_close_left"] = rng.uniform(0.6, 1.0)
    return {k: float(v) for k, v in modes.items()}


def sample_params(rng: np.random.Generator) -> FaceParams:
    """Pose, expression, face shape, placement and camera for one random face."""
    yaw = _angle(rng, 18.0, MAX_YAW, 0.15)
    pitch = _angle(rng, 9.0, MAX_PITCH, 0.1)
    roll = _angle(rng, 9.0, MAX_ROLL, 0.1)
    modes = _expression(rng)
    for name in _SHAPE_MODES:
        modes[name] = float(np.clip(rng.normal(0, 0.45), -1.0, 1.0))
    return FaceParams(
        yaw=yaw, pitch=pitch, roll=roll,
        modes=MappingProxyType(modes),
        box_fraction=float(rng.uniform(0.45, 0.65)),
        offset=tuple(float(v) for v in rng.uniform(-0.05, 0.05, 2)),
        camera_distance=float(rng.uniform(400.0, 1000.0)),
        gaze=(float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-0.08, 0.08))),
    )


def render_face(params: FaceParams, size: int = 128, rng: np.random.Generator | None = None,
                appearance: Appearance | None = None, occlude: bool | None = None) -> SyntheticFace:
    """Render chosen geometry; looks, background and occluders come from ``rng`` unless given."""
    rng = rng if rng is not None else np.random.default_rng(0)
    appearance = appearance if appearance is not None else sample_appearance(rng)
    occlude = bool(rng.random() < OCCLUSION_PROBABILITY) if occlude is None else occlude
    proj = project_face(params, size, load_template())
    image = render(proj, params, appearance, rng, size, occlude)
    return SyntheticFace(image=image, points=proj.points.astype(np.float64), pose=params.pose)


def generate_face(seed: int, size: int = 128) -> SyntheticFace:
    """The synthetic face of ``seed``: identical for the same seed, whatever was generated before."""
    rng = np.random.default_rng(seed)
    return render_face(sample_params(rng), size, rng)
