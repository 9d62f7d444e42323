"""Face geometry: pose and expression parameters, 3D deformation, perspective projection.

Landmarks are the exact projections of the deformed template, placed in the image by a
similarity (a change of focal length and principal point, so still a true perspective
projection), in 0-based continuous pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from landmarks.synthetic.template import NUM_POINTS, FaceTemplate, load_template

IRIS_RADIUS_MM = 5.6
_EYES = (np.arange(36, 42), np.arange(42, 48))
_IRIS_OFFSETS = np.array([[0.0, 0.0, 0.0], [IRIS_RADIUS_MM, 0.0, 0.0], [0.0, IRIS_RADIUS_MM, 0.0]])


@dataclass(frozen=True)
class FaceParams:
    """Everything that decides where the landmarks land (appearance is sampled separately).

    Angles in degrees: positive yaw turns the nose toward image right, positive pitch turns
    it up, positive roll turns the face clockwise as seen in the image.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    modes: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    box_fraction: float = 0.55  # max side of the landmark box / image side
    offset: tuple[float, float] = (0.0, 0.0)  # face-box centre shift, fraction of the image side
    camera_distance: float = 700.0  # mm from the eye plane: smaller = stronger perspective
    gaze: tuple[float, float] = (0.0, 0.0)  # iris shift in eye widths (x right, y down)

    @property
    def pose(self) -> np.ndarray:
        return np.array([self.yaw, self.pitch, self.roll], dtype=np.float64)


@dataclass(frozen=True)
class Projection:
    """The face in image pixels (continuous coordinates)."""

    points: np.ndarray  # [68, 2]
    depth: np.ndarray  # [68] mm toward the camera after rotation (larger = nearer)
    aux: Mapping[str, np.ndarray]  # name -> [K, 2]
    iris_centres: np.ndarray  # [2, 2] right eye (image left), left eye
    iris_axes: np.ndarray  # [2, 2, 2] per eye: the two projected radius vectors
    px_per_mm: float  # image scale at the eye plane, for sizing strokes


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` in the template axes (x right, y down, z to camera)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def deformed_shape(params: FaceParams, template: FaceTemplate | None = None) -> tuple[np.ndarray, np.ndarray]:
    """3D landmarks ``[68, 3]`` and all aux points ``[K, 3]`` after the mode deformations."""
    template = template or load_template()
    disp = template.deform(params.modes)
    aux = np.concatenate(list(template.aux.values()))
    return template.mean_shape + disp, aux + template.aux_weights @ disp


def _iris_points(shape: np.ndarray, gaze: tuple[float, float]) -> np.ndarray:
    """Per eye: iris centre and the tips of two radius vectors, ``[2, 3, 3]`` in mm."""
    out = np.empty((2, 3, 3))
    for k, idx in enumerate(_EYES):
        eye = shape[idx]
        width = np.linalg.norm(eye[3] - eye[0])
        centre = eye.mean(axis=0) + np.array([gaze[0] * width, gaze[1] * width, 3.0])
        out[k] = centre + _IRIS_OFFSETS
    return out


def project_face(params: FaceParams, size: int, template: FaceTemplate | None = None) -> Projection:
    """Rotate about the head centre, project in perspective, fit the landmark box to the image."""
    template = template or load_template()
    shape, aux = deformed_shape(params, template)
    iris = _iris_points(shape, params.gaze).reshape(-1, 3)
    pts3 = np.concatenate([shape, aux, iris])
    rot = rotation_matrix(params.yaw, params.pitch, params.roll)
    centre = template.head_centre
    rotated = (pts3 - centre) @ rot.T + centre
    dist = params.camera_distance - rotated[:, 2]
    uv = rotated[:, :2] / dist[:, None]
    lo, hi = uv[:NUM_POINTS].min(axis=0), uv[:NUM_POINTS].max(axis=0)
    scale = params.box_fraction * size / max(hi[0] - lo[0], hi[1] - lo[1])
    target = size / 2 + np.asarray(params.offset) * size
    img = (uv - (lo + hi) / 2) * scale + target
    points, rest = img[:NUM_POINTS], img[NUM_POINTS:]
    aux_img, iris_img = rest[: len(aux)], rest[len(aux):].reshape(2, 3, 2)
    splits = np.cumsum([len(v) for v in template.aux.values()])[:-1]
    return Projection(
        points=points,
        depth=rotated[:NUM_POINTS, 2],
        aux=MappingProxyType(dict(zip(template.aux, np.split(aux_img, splits), strict=True))),
        iris_centres=iris_img[:, 0],
        iris_axes=iris_img[:, 1:] - iris_img[:, :1],
        px_per_mm=scale / params.camera_distance,
    )
