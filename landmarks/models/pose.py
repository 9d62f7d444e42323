"""Head pose (yaw, pitch, roll) from 2D landmarks, for PFLD's pose-weighted loss.

As in the PFLD authors' data preparation: solve PnP between 14 detected points (brow ends,
eye corners, nostrils, mouth corners, lower lip, chin) and a generic 3D face, with a pinhole
camera centred on the image.

The 3D face and the angle convention are those of the synthetic faces
(:mod:`landmarks.synthetic`), so estimated labels and rendered ones mean the same: template
axes x to image right, y down, z toward the camera; ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)``;
positive yaw turns the nose toward image right, positive pitch turns it up, positive roll
turns the face clockwise in the image.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from landmarks.errors import ConfigError
from landmarks.synthetic import load_template, rotation_matrix

# The same 14 facial features in each scheme (PFLD's tracked points), in the same order.
_TRACKED = {
    68: (17, 21, 22, 26, 36, 39, 42, 45, 31, 35, 48, 54, 57, 8),
    98: (33, 38, 50, 46, 60, 64, 68, 72, 55, 59, 76, 82, 85, 16),
}
# Template axes (z toward the camera) <-> OpenCV camera axes (z away from it).
_FLIP_Z = np.diag([1.0, 1.0, -1.0])

__all__ = ["camera_matrix", "estimate_pose", "euler_angles", "face_model_3d", "rotation_matrix",
           "tracked_indices"]


def euler_angles(rotation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_matrix`: ``[yaw, pitch, roll]`` degrees."""
    r = rotation
    yaw = math.atan2(-r[2, 0], r[2, 2])
    pitch = math.atan2(r[2, 1], math.hypot(r[2, 0], r[2, 2]))
    roll = math.atan2(-r[0, 1], r[1, 1])
    return np.degrees([yaw, pitch, roll])


def camera_matrix(image_size: int | tuple[int, int], fov_degrees: float = 30.0) -> np.ndarray:
    """Pinhole intrinsics in continuous pixel coordinates (the principal point is ``size / 2``)."""
    w, h = (image_size, image_size) if isinstance(image_size, int) else image_size
    focal = (w / 2) / math.tan(math.radians(fov_degrees) / 2)
    return np.array([[focal, 0.0, w / 2], [0.0, focal, h / 2], [0.0, 0.0, 1.0]])


@functools.cache
def _face_3d() -> np.ndarray:
    return np.ascontiguousarray(load_template().mean_shape[list(_TRACKED[68])], dtype=np.float64)


def face_model_3d() -> np.ndarray:
    """The 14 reference points ``[14, 3]`` (mm, template axes), in :func:`tracked_indices` order."""
    return _face_3d().copy()


def tracked_indices(num_points: int) -> tuple[int, ...]:
    if num_points not in _TRACKED:
        raise ConfigError(f"pose estimation supports 68 or 98 landmarks, got {num_points}")
    return _TRACKED[num_points]


def estimate_pose(
    points: np.ndarray, image_size: int | tuple[int, int], fov_degrees: float = 30.0
) -> np.ndarray:
    """``[N, P, 2]`` (or ``[P, 2]``) continuous image coordinates -> ``[N, 3]`` yaw/pitch/roll.

    Degrees; ``[3]`` for a single face. A face whose 14 tracked points are not all finite, or
    for which PnP fails, gets NaN (the data contract's "pose unknown"). SQPnP finds the global
    optimum; the default iterative solver lands on a face turned 180 degrees for ~3% of faces.
    ``fov_degrees`` is the assumed field of view of ``image_size``; the true one of a face crop
    is unknown but narrow. 30 (PFLD's authors used 60) recovers the synthetic faces' yaw within
    1 degree; pitch keeps a ~4 degree bias (their optical axis is not the crop centre).
    """
    pts = np.asarray(points, dtype=np.float64)
    single = pts.ndim == 2
    pts = pts[None] if single else pts
    index = list(tracked_indices(pts.shape[1]))
    cam = camera_matrix(image_size, fov_degrees)
    model = _face_3d() @ _FLIP_Z  # the template in OpenCV's axes
    out = np.full((pts.shape[0], 3), np.nan)
    for i, face in enumerate(pts[:, index]):
        if not np.isfinite(face).all():
            continue
        face = np.ascontiguousarray(face)  # advanced indexing may leave strides OpenCV rejects
        ok, rvec, _ = cv2.solvePnP(model, face, cam, None, flags=cv2.SOLVEPNP_SQPNP)
        if ok:
            out[i] = euler_angles(_FLIP_Z @ cv2.Rodrigues(rvec)[0] @ _FLIP_Z)
    return out[0] if single else out
