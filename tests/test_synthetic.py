"""The synthetic-face generator: determinism, geometry conventions and real face properties."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from landmarks.schemes import LandmarkScheme
from landmarks.synthetic import (
    FaceParams,
    generate_face,
    load_template,
    project_face,
    render_face,
    sample_appearance,
)
from landmarks.synthetic.render import SUPERSAMPLE, fill_polygon

SEEDS = range(150)


@pytest.fixture(scope="module")
def faces():
    return [generate_face(seed) for seed in SEEDS]


def _eye_opening(points: np.ndarray, upper: tuple[int, int], lower: tuple[int, int]) -> float:
    return float(np.mean(np.linalg.norm(points[list(upper)] - points[list(lower)], axis=1)))


def test_same_seed_same_face_regardless_of_call_order():
    first = generate_face(5)
    generate_face(6)
    again = generate_face(5)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.points, again.points)
    np.testing.assert_array_equal(first.pose, again.pose)


def test_different_seeds_differ():
    a, b = generate_face(1), generate_face(2)
    assert not np.array_equal(a.image, b.image)
    assert np.abs(a.points - b.points).max() > 1.0


@pytest.mark.parametrize("size", [64, 128])
def test_shapes_and_dtypes(size):
    face = generate_face(3, size)
    assert face.image.shape == (size, size, 3) and face.image.dtype == np.uint8
    assert face.points.shape == (68, 2) and face.points.dtype == np.float64
    assert face.pose.shape == (3,) and face.pose.dtype == np.float64


def test_points_inside_image_and_face_sized_as_specified(faces):
    for face in faces:
        assert face.points.min() >= 0 and face.points.max() < 128
        side = (face.points.max(axis=0) - face.points.min(axis=0)).max()
        assert 0.45 * 128 - 1e-6 <= side <= 0.65 * 128 + 1e-6
        centre = (face.points.max(axis=0) + face.points.min(axis=0)) / 2
        crop_half = 1.25 * side / 2
        assert np.all(centre - crop_half > -0.05 * 128) and np.all(centre + crop_half < 1.05 * 128)


def test_pose_within_limits_and_covers_the_range(faces):
    poses = np.array([face.pose for face in faces])
    assert np.all(np.abs(poses) <= (60, 30, 30))
    assert np.abs(poses[:, 0]).max() > 45 and np.abs(poses[:, 1]).max() > 15


def test_template_loads_with_consistent_shapes():
    template = load_template()
    assert template is load_template()
    assert template.mean_shape.shape == (68, 3)
    assert len(template.modes) >= 7
    for mode in template.modes.values():
        assert mode.displacement.shape == (68, 3)
        assert mode.range[0] < mode.range[1]
    assert not template.mean_shape.flags.writeable
    nose_tip, contour = template.mean_shape[30, 2], template.mean_shape[[0, 16], 2]
    assert np.all(nose_tip - contour > 60), "depth must put the nose in front of the contour"


def test_frontal_neutral_face_is_mirror_symmetric():
    points = project_face(FaceParams(), 128).points
    mirrored = points.copy()
    mirrored[:, 0] = 128 - mirrored[:, 0]
    perm = LandmarkScheme.IBUG68.flip_permutation
    np.testing.assert_allclose(mirrored[perm], points, atol=1e-6)


def test_positive_yaw_turns_the_nose_to_image_right():
    for yaw, sign in ((30.0, 1), (-30.0, -1)):
        p = project_face(FaceParams(yaw=yaw), 128).points
        eyes_mid = (p[36] + p[45]) / 2
        assert sign * (p[30, 0] - eyes_mid[0]) > 3


def test_closing_eyes_collapses_the_lids():
    neutral = project_face(FaceParams(), 128).points
    closed = project_face(FaceParams(modes={"eye_close_right": 1.0, "eye_close_left": 1.0}), 128).points
    half = project_face(FaceParams(modes={"eye_close_right": 0.5}), 128).points
    right, left = ((37, 38), (41, 40)), ((43, 44), (47, 46))
    assert _eye_opening(neutral, *right) > 3
    assert _eye_opening(closed, *right) < 0.05 and _eye_opening(closed, *left) < 0.05
    assert _eye_opening(closed, *right) < _eye_opening(half, *right) < _eye_opening(neutral, *right)
    assert _eye_opening(half, *left) == pytest.approx(_eye_opening(neutral, *left))


def test_opening_the_mouth_separates_the_lips():
    neutral = project_face(FaceParams(), 128).points
    opened = project_face(FaceParams(modes={"mouth_open": 1.0}), 128, ).points
    gap = lambda p: float(np.linalg.norm(p[66] - p[62]))  # noqa: E731
    assert gap(neutral) < 0.5
    assert gap(opened) > gap(neutral) + 5
    assert opened[8, 1] - opened[27, 1] > neutral[8, 1] - neutral[27, 1], "the chin drops too"


def test_occluders_and_looks_never_move_landmarks():
    params = FaceParams(yaw=20.0, modes={"smile": 0.5})
    look = sample_appearance(np.random.default_rng(0))
    a = render_face(params, 128, np.random.default_rng(1), appearance=look, occlude=False)
    b = render_face(params, 128, np.random.default_rng(2), occlude=True)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.array_equal(a.image, b.image)


def test_landmarks_scale_with_image_size():
    params = FaceParams(yaw=10.0, pitch=-5.0, roll=7.0)
    np.testing.assert_allclose(project_face(params, 256).points, 2 * project_face(params, 128).points)


@pytest.mark.parametrize("offset", [0.0, 0.25, 0.5, 0.75])
def test_drawing_uses_continuous_coordinates(offset):
    """A drawn square's mass centre is its true centre (pixel k spans [k, k+1)) within 0.3 px."""
    square = np.array([[10.0, 10.0], [21.0, 10.0], [21.0, 17.0], [10.0, 17.0]]) + offset
    canvas = np.zeros((32 * SUPERSAMPLE, 32 * SUPERSAMPLE), np.uint8)
    fill_polygon(canvas, square * SUPERSAMPLE, 255)
    image = cv2.resize(canvas, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    centres = np.arange(32) + 0.5
    cx = (image.sum(axis=0) * centres).sum() / image.sum()
    cy = (image.sum(axis=1) * centres).sum() / image.sum()
    np.testing.assert_allclose([cx, cy], square.mean(axis=0), atol=0.3)


def test_unknown_mode_is_an_error():
    with pytest.raises(KeyError, match="unknown deformation mode"):
        project_face(FaceParams(modes={"wink_harder": 1.0}), 128)
