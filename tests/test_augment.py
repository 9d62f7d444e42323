"""Augmentation: geometry stays exact (points follow pixels), flips keep point semantics,
everything is reproducible per (seed, epoch, index)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from landmarks.coords import CropTransform, landmark_box
from landmarks.data import AugmentConfig, FaceDataset, FaceRecord, crop_matrix
from landmarks.data.augment import apply_affine
from landmarks.data.dataset import adjust_pose
from landmarks.errors import ConfigError
from landmarks.schemes import LandmarkScheme
from tests.conftest import WriteFace, blob_centroids, grid_points, render_blobs

GEOMETRY_ONLY = AugmentConfig(rotation_deg=30, scale_jitter=0.15, shift_jitter=0.08, flip_prob=0.5,
                              color_prob=0, blur_prob=0, noise_prob=0, jpeg_prob=0, occlusion_prob=0)
FLIP_ONLY = replace(AugmentConfig.disabled(), flip_prob=1.0)


def _one_face(tmp_path: Path, write_face: WriteFace,
              points: np.ndarray | None = None, image: np.ndarray | None = None) -> FaceRecord:
    points = grid_points() if points is None else points
    image = render_blobs(points, 320, 300) if image is None else image
    image_path, _ = write_face(tmp_path, "face", image, points)
    return FaceRecord("face.png", image_path, points)


def test_config_defaults_and_validation() -> None:
    config = AugmentConfig()
    assert (config.rotation_deg, config.scale_jitter, config.shift_jitter, config.flip_prob) == (
        30, 0.15, 0.08, 0.5)
    with pytest.raises(ConfigError, match=r"augment\.flip_prob must be in \[0, 1\]"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ConfigError, match=r"augment\.rotation_deg must be a finite number"):
        AugmentConfig(rotation_deg=float("nan"))
    with pytest.raises(ConfigError, match=r"augment\.noise_prob must be a finite number"):
        AugmentConfig(noise_prob="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"unknown augment key.*rotation"):
        AugmentConfig.from_dict({"rotation": 10})
    assert AugmentConfig.from_dict({"rotation_deg": 10}).rotation_deg == 10


def test_crop_matrix_without_jitter_is_the_section1_crop() -> None:
    box = np.array([30.0, 40.0, 130.0, 180.0])
    expected = CropTransform.from_box(box, 1.25, 112).matrix()
    np.testing.assert_allclose(crop_matrix(box, 1.25, 112), expected, atol=1e-12)


@pytest.mark.parametrize("num_points", [68, 98])
def test_flip_twice_is_identity(num_points: int) -> None:
    perm = LandmarkScheme.from_num_points(num_points).flip_permutation
    points = np.random.default_rng(0).uniform(0, 112, size=(num_points, 2))
    box = landmark_box(points)
    once = apply_affine(crop_matrix(box, 1.0, 112, flip=True), points)[perm]
    twice = apply_affine(crop_matrix(landmark_box(once), 1.0, 112, flip=True), once)[perm]
    np.testing.assert_allclose(twice, apply_affine(crop_matrix(box, 1.0, 112), points), atol=1e-9)
    np.testing.assert_array_equal(perm[perm], np.arange(num_points))


def test_flipped_sample_matches_mirrored_image(tmp_path: Path, write_face: WriteFace) -> None:
    """Flip-augmenting a face equals cropping the mirrored image with permuted points."""
    points = grid_points(seed=3)
    image = render_blobs(points, 320, 300)
    image[150:200, 20:60] = (200, 50, 10)  # an asymmetric patch so a missing mirror would show
    perm = LandmarkScheme.IBUG68.flip_permutation
    mirrored_points = np.stack([320 - points[:, 0], points[:, 1]], axis=1)[perm]
    original = _one_face(tmp_path / "a", write_face, points, image)
    mirrored = _one_face(tmp_path / "b", write_face, mirrored_points, image[:, ::-1].copy())
    flipped = FaceDataset([original], input_size=96, augment=FLIP_ONLY)[0]
    reference = FaceDataset([mirrored], input_size=96)[0]
    np.testing.assert_allclose(flipped["points"], reference["points"], atol=1e-5)
    diff = np.abs(flipped["image"].astype(int) - reference["image"].astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 2


def test_flip_keeps_point_semantics(tmp_path: Path, write_face: WriteFace) -> None:
    """After a flip, point 36 (outer corner of the image-left eye) is still on the image left."""
    points = grid_points(seed=4)
    points[36], points[45] = (150.0, 150.0), (250.0, 150.0)
    sample = FaceDataset([_one_face(tmp_path, write_face, points)], input_size=96, augment=FLIP_ONLY)[0]
    assert sample["points"][36, 0] < sample["points"][45, 0]


def test_rotated_crop_points_land_on_the_marks(tmp_path: Path,
                                               write_face: WriteFace) -> None:
    dataset = FaceDataset([_one_face(tmp_path, write_face)], input_size=128, augment=GEOMETRY_ONLY, seed=5)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        expected = sample["points"] * 128
        inside = ((expected > 4) & (expected < 124)).all(axis=1)
        found = blob_centroids(sample["image"], expected[inside])
        assert inside.sum() > 40
        np.testing.assert_allclose(found, expected[inside], atol=0.25)  # a half-pixel slip fails


def test_augmentation_is_deterministic_per_seed_epoch_index(
        tmp_path: Path, write_face: WriteFace) -> None:
    record = _one_face(tmp_path, write_face)
    a = FaceDataset([record], input_size=64, augment=AugmentConfig(), seed=1)
    b = FaceDataset([record], input_size=64, augment=AugmentConfig(), seed=1)
    first, again = a[0], b[0]
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["points"], again["points"])
    a.set_epoch(1)
    assert not np.array_equal(a[0]["points"], first["points"])
    c = FaceDataset([record], input_size=64, augment=AugmentConfig(), seed=2)
    assert not np.array_equal(c[0]["points"], first["points"])


def test_photometric_is_deterministic_and_keeps_shape(
        tmp_path: Path, write_face: WriteFace) -> None:
    heavy = AugmentConfig(color_prob=1, blur_prob=1, noise_prob=1, jpeg_prob=1, occlusion_prob=1)
    record = _one_face(tmp_path, write_face)
    samples = [FaceDataset([record], input_size=64, augment=heavy, seed=7)[0] for _ in range(2)]
    assert samples[0]["image"].shape == (64, 64, 3) and samples[0]["image"].dtype == np.uint8
    np.testing.assert_array_equal(samples[0]["image"], samples[1]["image"])


def test_same_samples_with_dataloader_workers(tmp_path: Path,
                                              write_face: WriteFace) -> None:
    record = _one_face(tmp_path, write_face)
    records = [FaceRecord(f"k{i}", record.image_path, record.points) for i in range(4)]
    dataset = FaceDataset(records, input_size=48, augment=AugmentConfig(), seed=3)
    serial = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    parallel = torch.cat([b["points"] for b in torch.utils.data.DataLoader(
        dataset, batch_size=1, num_workers=2, multiprocessing_context="fork")])
    torch.testing.assert_close(serial["points"], parallel)


def test_flip_needs_a_known_scheme(tmp_path: Path, write_face: WriteFace) -> None:
    record = _one_face(tmp_path, write_face, grid_points(5))
    with pytest.raises(ConfigError, match=r"cannot flip.*5 points"):
        FaceDataset([record], input_size=64, augment=AugmentConfig())
    no_flip = replace(GEOMETRY_ONLY, flip_prob=0.0)
    assert FaceDataset([record], input_size=64, augment=no_flip)[0]["points"].shape == (5, 2)


def test_pose_follows_rotation_and_flip() -> None:
    pose = np.array([20.0, 5.0, 10.0])
    box = np.array([0.0, 0.0, 100.0, 100.0])
    rotated = adjust_pose(pose, crop_matrix(box, 1.25, 64, angle_deg=15), flipped=False)
    np.testing.assert_allclose(rotated, [20, 5, 25], atol=1e-4)
    flipped = adjust_pose(pose, crop_matrix(box, 1.25, 64, angle_deg=15, flip=True), flipped=True)
    np.testing.assert_allclose(flipped, [-20, 5, -25], atol=1e-4)
