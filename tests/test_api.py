"""``landmarks.api.FaceLandmarker`` on real photos: every face, largest first, small images upsampled."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from landmarks.api import Face, FaceLandmarker
from landmarks.data import read_image
from landmarks.detect import auto_upsample
from landmarks.errors import ModelError
from landmarks.zoo import NO_MODEL, load_manifest
from tests.conftest import MONA_LISA
from tests.helpers import TinyLandmarkNet, export_onnx, tiny_metadata


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(TinyLandmarkNet(), tmp_path_factory.mktemp("model") / "tiny.onnx", tiny_metadata(input_size=32))


def _area(face: Face) -> float:
    assert face.box is not None
    return float((face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))


def test_two_faces_largest_first(two_faces: Path, tiny_onnx: Path) -> None:
    landmarker = FaceLandmarker(tiny_onnx)
    image = read_image(two_faces)
    faces = landmarker.detect(image)
    assert len(faces) == 2 and _area(faces[0]) >= _area(faces[1])
    for face in faces:
        assert face.points.shape == (68, 2) and isinstance(face.score, float) and face.score > 0
        assert np.all((face.points >= face.crop_box[:2]) & (face.points <= face.crop_box[2:]))
    assert faces[0].box[0] > faces[1].box[0]  # the larger face is the one on the right
    (only,) = FaceLandmarker(tiny_onnx, max_faces=1).detect(image)
    np.testing.assert_array_equal(only.points, faces[0].points)
    with pytest.raises(dataclasses.FrozenInstanceError):
        faces[0].score = 1.0  # type: ignore[misc]


def test_one_small_face_in_mona_lisa_without_flags(tiny_onnx: Path) -> None:
    image = read_image(MONA_LISA)
    assert image.shape[:2] == (274, 184) and auto_upsample(image.shape) == 1
    (face,) = FaceLandmarker(tiny_onnx).detect(image)
    assert face.box is not None and 35 <= face.box[2] - face.box[0] <= 70  # a ~50 px face
    assert FaceLandmarker(tiny_onnx, upsample=0).detect(image) == []  # found thanks to the upsampling


def test_grey_alpha_and_16_bit_arrays_give_the_rgb_result(two_faces: Path, tiny_onnx: Path) -> None:
    landmarker = FaceLandmarker(tiny_onnx)
    rgb = read_image(two_faces)
    expected = landmarker.detect(rgb)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    deep = rgb.astype(np.uint16) * 257
    for variant in (rgba, deep):
        faces = landmarker(variant)
        assert len(faces) == 2
        np.testing.assert_allclose(faces[0].points, expected[0].points)
    grey = rgb.mean(axis=2).astype(np.uint8)
    assert len(landmarker.detect(grey)) == 2


def test_auto_upsample_by_image_size() -> None:
    assert [auto_upsample(shape) for shape in ((500, 759), (274, 184), (184, 184), (1, 1))] == [0, 1, 2, 2]


def test_no_model_uses_the_shipped_one(two_faces: Path) -> None:
    from landmarks.zoo import default_model

    assert load_manifest() is not None, "the package ships a model (landmarks/zoo)"
    landmarker = FaceLandmarker()
    assert landmarker.model_path == default_model()
    faces = landmarker.detect(read_image(two_faces))
    assert len(faces) == 2
    for face in faces:  # a trained model puts the eyes above the mouth, inside the face box
        eyes, mouth = face.points[36:48].mean(axis=0), face.points[48:68].mean(axis=0)
        assert eyes[1] < mouth[1]
        assert face.box[0] <= eyes[0] <= face.box[2] and face.box[1] <= mouth[1] <= face.box[3] + 0.2 * (
            face.box[3] - face.box[1])


def test_with_the_zoo_hidden_there_is_no_default_model(tmp_path: Path, monkeypatch) -> None:
    import landmarks.zoo

    monkeypatch.setattr(landmarks.zoo, "ZOO_DIR", tmp_path / "empty_zoo")
    with pytest.raises(ModelError, match=f"^{NO_MODEL}$"):
        FaceLandmarker()
