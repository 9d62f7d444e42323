"""FaceDataset / open_dataset: crops put points on the marks, keys and hashes, real 300-W data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from landmarks.data import (
    ConcatFaceDataset,
    FaceDataset,
    SyntheticFaceDataset,
    inspect_dataset,
    load_records,
    open_dataset,
    write_pts,
)
from landmarks.errors import ConfigError, DataError
from tests.conftest import SHARED_300W_FOLDERS, WriteFace, blob_centroids, grid_points, render_blobs


def test_sample_layout(pts_folder: Path) -> None:
    sample = open_dataset(str(pts_folder), input_size=112)[0]
    assert set(sample) == {"image", "points", "key", "pose", "labeled"}
    assert sample["image"].shape == (112, 112, 3) and sample["image"].dtype == np.uint8
    assert sample["points"].shape == (68, 2) and sample["points"].dtype == np.float32
    assert sample["key"] == "face_0.png"
    assert sample["pose"].dtype == np.float32 and np.isnan(sample["pose"]).all()


@pytest.mark.parametrize("input_size", [64, 112])
def test_crop_points_land_on_the_marks(pts_folder: Path, input_size: int) -> None:
    dataset = open_dataset(str(pts_folder), input_size=input_size, crop_scale=1.4)
    sample = dataset[1]
    expected = sample["points"] * input_size
    np.testing.assert_allclose(blob_centroids(sample["image"], expected, radius=3), expected, atol=0.25)
    x0, y0, x1, y1 = expected.min(0).tolist() + expected.max(0).tolist()
    side = max(x1 - x0, y1 - y0)
    assert side == pytest.approx(input_size / 1.4, rel=1e-5)  # DESIGN.md: crop side = 1.4 x box
    assert (x0 + x1) / 2 == pytest.approx(input_size / 2) and (y0 + y1) / 2 == pytest.approx(input_size / 2)


def test_undecodable_image_is_named_on_access(pts_folder: Path) -> None:
    (pts_folder / "face_0.png").write_bytes(b"\x89PNG broken")
    dataset = open_dataset(str(pts_folder), input_size=64)
    with pytest.raises(DataError, match=r"face_0\.png: cannot decode image"):
        dataset[0]


def test_comma_separated_specs_concatenate_with_unique_keys(
        tmp_path: Path, write_face: WriteFace) -> None:
    for split in ("a/trainset", "b/trainset"):
        points = grid_points()
        write_face(tmp_path / split, "image_0001", render_blobs(points, 320, 300), points)
    dataset = open_dataset(f"{tmp_path / 'a/trainset'},{tmp_path / 'b/trainset'}", input_size=64)
    assert len(dataset) == 2 and dataset.num_points == 68
    assert dataset.keys == ["a/trainset/image_0001.png", "b/trainset/image_0001.png"]
    same = open_dataset([str(tmp_path / "a/trainset"), str(tmp_path / "b/trainset")], input_size=64)
    assert same.keys == dataset.keys


def test_same_dataset_twice_is_an_error(pts_folder: Path) -> None:
    with pytest.raises(DataError, match="named twice"):
        open_dataset(f"{pts_folder},{pts_folder}", input_size=64)


def test_bad_parameters_are_config_errors(pts_folder: Path) -> None:
    with pytest.raises(ConfigError, match="input_size"):
        open_dataset(str(pts_folder), input_size=0)
    with pytest.raises(ConfigError, match="crop_scale"):
        open_dataset(str(pts_folder), input_size=64, crop_scale=-1)
    with pytest.raises(ConfigError, match="synthetic:N"):
        open_dataset("synthetic:many", input_size=64)


def test_content_hash_tracks_images_and_points(pts_folder: Path) -> None:
    dataset = open_dataset(str(pts_folder), input_size=64)
    first = dataset.content_hash()
    assert first == open_dataset(str(pts_folder), input_size=112).content_hash()
    assert len(set(dataset.item_hashes())) == 3
    write_pts(pts_folder / "face_1.pts", load_records(pts_folder)[1].points + 1)
    assert open_dataset(str(pts_folder), input_size=64).content_hash() != first


def test_item_hashes_find_the_same_image_under_another_name(
        pts_folder: Path, tmp_path: Path, write_face: WriteFace) -> None:
    points = grid_points(seed=1)
    write_face(tmp_path / "copy", "renamed", render_blobs(points, 320, 300), points)
    calib = open_dataset(str(tmp_path / "copy"), input_size=64)
    evaluation = open_dataset(str(pts_folder), input_size=64)
    assert set(calib.item_hashes()) & set(evaluation.item_hashes())


def test_synthetic_dataset() -> None:
    dataset = open_dataset("synthetic:3", input_size=64, seed=10)
    assert isinstance(dataset, SyntheticFaceDataset) and len(dataset) == 3
    sample = dataset[2]
    assert sample["key"] == "synthetic:12" and sample["image"].shape == (64, 64, 3)
    assert np.isfinite(sample["pose"]).all()
    assert ((sample["points"] > 0) & (sample["points"] < 1)).all()
    again = open_dataset("synthetic:3", input_size=64, seed=10)
    np.testing.assert_array_equal(again[2]["image"], sample["image"])
    assert again.content_hash() == dataset.content_hash()
    assert again.item_hashes() == dataset.item_hashes() and len(set(dataset.item_hashes())) == 3
    assert open_dataset("synthetic:3", input_size=64, seed=11).content_hash() != dataset.content_hash()


def test_synthetic_plus_folder(pts_folder: Path) -> None:
    dataset = open_dataset(f"{pts_folder},synthetic:2", input_size=64)
    assert isinstance(dataset, ConcatFaceDataset) and len(dataset) == 5
    assert dataset[4]["key"] == "synthetic:1" and dataset[0]["key"] == "face_0.png"


def test_face_dataset_refuses_empty() -> None:
    with pytest.raises(DataError, match="no faces"):
        FaceDataset([], input_size=64)


# ---------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.parametrize("folder", sorted(SHARED_300W_FOLDERS))
def test_real_300w_folders_are_clean(shared_data: Path, folder: str) -> None:
    report = inspect_dataset(shared_data / folder)
    assert report.ok, "\n".join(map(str, report.problems[:5]))
    assert report.format == "pts" and report.num_points == 68
    assert report.num_faces == SHARED_300W_FOLDERS[folder]


@pytest.mark.realdata
def test_real_300w_train_split_opens_with_unique_keys(shared_data: Path) -> None:
    spec = ",".join(str(shared_data / f) for f in ("helen/trainset", "lfpw/trainset", "afw"))
    dataset = open_dataset(spec, input_size=112)
    assert len(dataset) == 870 + 805 + 337 and len(set(dataset.keys)) == len(dataset)
    sample = dataset[0]
    assert sample["key"].startswith("helen/trainset/")
    assert ((sample["points"] > 0) & (sample["points"] < 1)).all()
