"""``python -m landmarks.predict`` and ``landmarks.detect``: detector -> crop on a real photo, output files,
the face-synthetics submission, video mode, and the exit codes of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmarks.coords import CropTransform, continuous_to_index, landmark_box
from landmarks.data import read_image, read_pts
from landmarks.detect import BoxCalibration, Detection, calibrated_box, rank_detections
from landmarks.predict import LandmarkPipeline, find_images, main, write_face_files
from landmarks.runtimes import load_predictor
from landmarks.synthetic import generate_face
from landmarks.zoo import load_manifest
from tests.helpers import TinyLandmarkNet, export_onnx, tiny_metadata


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(TinyLandmarkNet(), tmp_path_factory.mktemp("model") / "tiny.onnx", tiny_metadata(input_size=32))


@pytest.fixture
def face_folder(tmp_path: Path) -> Path:
    """Three synthetic face crops (PNG), one in a subfolder."""
    root = tmp_path / "crops"
    for seed, sub in ((0, ""), (1, ""), (2, "more")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        face = generate_face(seed, 96)
        cv2.imwrite(str(root / sub / f"face{seed}.png"), cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR))
    return root


def _crop_square(box: np.ndarray, crop_scale: float) -> np.ndarray:
    t = CropTransform.from_box(box, crop_scale, 1)
    return np.array([t.origin_x, t.origin_y, t.origin_x + 1 / t.scale, t.origin_y + 1 / t.scale])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_calibrated_box_scales_and_shifts_in_detector_units() -> None:
    cal = BoxCalibration(scale=0.9, dx=0.1, dy=-0.2, source="test")
    box = calibrated_box(np.array([100.0, 50.0, 200.0, 150.0]), cal)
    np.testing.assert_allclose(box, [115.0, 35.0, 205.0, 125.0])


def test_rank_detections_prefers_the_largest_then_the_most_central_face() -> None:
    small = Detection(np.array([0.0, 0.0, 10.0, 10.0]), 3.0)
    edge = Detection(np.array([0.0, 0.0, 40.0, 40.0]), 1.0)
    centre = Detection(np.array([30.0, 30.0, 70.0, 70.0]), 0.5)
    assert rank_detections([small, edge, centre], (100, 100, 3)) == [centre, edge, small]


def test_detector_to_crop_on_a_real_300w_photo(shared_data: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    """dlib finds the face in a full 300-W crop; the calibrated crop matches the GT-box crop; files round-trip."""
    from landmarks.detect import load_detector

    detector = load_detector()
    ious = []  # (calibrated, raw detector box) IoU with the GT-box crop, on the first few test photos
    for image_path in sorted((shared_data / "helen/testset").glob("*.jpg"))[:8]:
        gt_crop = _crop_square(landmark_box(read_pts(image_path.with_suffix(".pts"))), 1.25)
        dets = detector.detect(read_image(image_path))
        if dets:
            ious.append((_iou(_crop_square(calibrated_box(dets[0].box, detector.calibration), 1.25), gt_crop),
                         _iou(_crop_square(dets[0].box, 1.25), gt_crop)))
    assert len(ious) >= 6
    calibrated, raw = np.mean(ious, axis=0)
    assert calibrated > 0.75 and calibrated > raw

    image_path = sorted((shared_data / "helen/testset").glob("*.jpg"))[0]
    image = read_image(image_path)
    (det, *_) = detector.detect(image)
    face_box = calibrated_box(det.box, detector.calibration)

    pipeline = LandmarkPipeline(load_predictor(tiny_onnx), detector)
    (face,) = pipeline(image)
    np.testing.assert_allclose(face.box, det.box)
    scale = 1.25 * (face_box[2] - face_box[0])  # the crop the model saw: 1.25 x the calibrated box
    np.testing.assert_allclose(face.crop_box[2] - face.crop_box[0], scale)
    assert np.all((face.points >= face.crop_box[:2]) & (face.points <= face.crop_box[2:]))

    written = write_face_files(tmp_path, image_path.stem, image, [face], {"image": image_path.name})
    assert {p.name for p in written} == {f"{image_path.stem}{s}" for s in (".pts", ".json", "_overlay.png")}
    np.testing.assert_array_equal(read_pts(tmp_path / f"{image_path.stem}.pts"), face.points)  # exact round trip
    record = json.loads((tmp_path / f"{image_path.stem}.json").read_text())
    np.testing.assert_allclose(record["faces"][0]["points"], face.points, atol=1e-3)
    overlay = read_image(tmp_path / f"{image_path.stem}_overlay.png")
    assert overlay.shape == image.shape and not np.array_equal(overlay, image)


def test_cli_writes_pts_json_and_overlay_per_image(face_folder: Path, tiny_onnx: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (face_folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main([str(tiny_onnx), str(face_folder), "--out", str(out), "--no-detect"]) == 0
    captured = capsys.readouterr()
    assert "skipped: " in captured.err and "broken.jpg" in captured.err
    assert "3/4 images with a face" in captured.out
    for rel in ("face0", "face1", "more/face2"):
        points = read_pts(out / f"{rel}.pts")
        assert points.shape == (68, 2)
        assert json.loads((out / f"{rel}.json").read_text())["faces"][0]["box"] is None
        assert read_image(out / f"{rel}_overlay.png").shape == (96, 96, 3)


def test_cli_without_out_prints_one_json_line_per_image(face_folder: Path, tiny_onnx: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tiny_onnx), str(face_folder / "face0.png"), "--no-detect"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["image"] == "face0.png" and len(record["faces"][0]["points"]) == 68


def test_solution_format_is_one_line_per_image_in_crop_pixel_indices(face_folder: Path, tiny_onnx: Path,
                                                                     tmp_path: Path) -> None:
    target = tmp_path / "solution.txt"
    assert main([str(tiny_onnx), str(face_folder), "--format", "solution", "--out", str(target)]) == 0
    lines = target.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["face0.png", "face1.png", "more/face2.png"]
    pipeline = LandmarkPipeline(load_predictor(tiny_onnx))
    (face,) = pipeline(read_image(face_folder / "face1.png"))
    values = np.array(lines[1].split()[1:], dtype=np.float64)
    assert values.shape == (136,)
    np.testing.assert_allclose(values.reshape(68, 2), continuous_to_index(face.points), atol=1e-3)
    assert values.min() >= -0.5 and values.max() <= 95.5  # the tiny model stays inside its 96 px crop


def test_video_mode_prints_fps_and_writes_an_annotated_video(tiny_onnx: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 96))
    for seed in range(5):
        writer.write(cv2.cvtColor(generate_face(seed, 96).image, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    assert main([str(tiny_onnx), "--video", str(video), "--max-frames", "4", "--no-detect", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 frames, 4 with a face" in printed and " FPS " in printed
    frames = json.loads((out / "clip_landmarks.json").read_text())["frames"]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3]
    capture = cv2.VideoCapture(str(out / "clip_overlay.avi"))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 4


@pytest.mark.parametrize("case", ["missing model", "missing image", "unreadable image", "no face", "no video"])
def test_bad_input_is_one_line_and_exit_2(case: str, tiny_onnx: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 128, np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    args = {
        "missing model": [str(tmp_path / "nope.onnx"), str(blank)],
        "missing image": [str(tiny_onnx), str(tmp_path / "nope.jpg")],
        "unreadable image": [str(tiny_onnx), str(broken), "--no-detect"],
        "no face": [str(tiny_onnx), str(blank)],
        "no video": [str(tiny_onnx), "--video", str(tmp_path / "nope.avi")],
    }[case]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m landmarks.predict: error:")


def test_find_images_searches_folders_recursively(face_folder: Path) -> None:
    root, images = find_images(face_folder)
    assert root == face_folder and [p.relative_to(root).as_posix() for p in images] == [
        "face0.png", "face1.png", "more/face2.png"]


# ---------------------------------------------------------------------------- default model, --model, bad input

@pytest.fixture(scope="module")
def obamas(two_faces: Path) -> Path:
    """A photo with two faces (built from the public-domain test painting, tests/conftest.py)."""
    return two_faces


def _one_error_line(capsys: pytest.CaptureFixture[str], call, *, after_skips: bool = False) -> str:
    """The error line of a call that exits 2; alone on stderr, or after a folder's skip/progress lines."""
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    if after_skips:
        assert all(line.startswith(("skipped: ", "predict: ")) for line in lines[:-1]), lines
    else:
        assert len(lines) == 1, lines
    assert lines[-1].startswith("python -m landmarks.predict: error: ")
    return lines[-1]


def test_without_model_the_shipped_one_is_used(obamas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from landmarks.zoo import default_model

    assert load_manifest() is not None, "the package ships a model (landmarks/zoo)"
    assert main([str(obamas)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == str(default_model()) and len(record["faces"]) == 2


def test_without_model_and_no_shipped_one_it_says_so_in_one_line(obamas: Path, tmp_path: Path, monkeypatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import landmarks.zoo

    monkeypatch.setattr(landmarks.zoo, "ZOO_DIR", tmp_path / "empty_zoo")  # the zoo hidden
    assert _one_error_line(capsys, lambda: main([str(obamas)])).endswith("no shipped model; pass --model")


@pytest.mark.parametrize("form", ["--model", "model first"])
def test_every_face_by_default_with_model_flag_or_old_form(form: str, obamas: Path, tiny_onnx: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--model", str(tiny_onnx), str(obamas)] if form == "--model" else [str(tiny_onnx), str(obamas)]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == str(tiny_onnx) and len(record["faces"]) == 2
    assert main([*args, "--max-faces", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["faces"]) == 1


def test_every_face_of_a_photo_with_three_small_ones(three_faces: Path, tiny_onnx: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["--model", str(tiny_onnx), str(three_faces), "--upsample", "1", "--out", str(out)]) == 0
    record = json.loads((out / "three_faces.json").read_text())
    widths = [face["box"][2] - face["box"][0] for face in record["faces"]]
    assert len(widths) == 3 and widths == sorted(widths, reverse=True)  # every face, largest first
    assert len(read_pts(out / "three_faces.pts")) == 68  # the .pts holds the largest face
    assert main(["--model", str(tiny_onnx), str(three_faces), "--upsample", "0"]) == 0  # the default for 760 px
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["faces"]) < 3


@pytest.mark.parametrize("where", ["is a file", "is below the file"])
def test_out_naming_a_file_is_refused_before_any_work(where: str, face_folder: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("mine\n")
    out = blocker if where == "is a file" else blocker / "sub"
    missing_model = tmp_path / "nope.onnx"  # the --out check must come before the model is opened
    line = _one_error_line(capsys, lambda: main(["--model", str(missing_model), str(face_folder), "--out", str(out)]))
    assert f"--out {out} {where}" in line and blocker.read_text() == "mine\n"


def _bad_and_odd_images(folder: Path, photo: Path) -> None:
    """The photo converted to alpha PNG, 16-bit PNG, CMYK JPEG; and files that cannot be used."""
    from tests.test_data_formats import huge_png

    folder.mkdir()
    bgr = cv2.imread(str(photo))
    cv2.imwrite(str(folder / "alpha.png"), np.concatenate([bgr, np.full((*bgr.shape[:2], 1), 200, np.uint8)], 2))
    cv2.imwrite(str(folder / "deep.png"), bgr.astype(np.uint16) * 257)
    from PIL import Image  # pillow comes with matplotlib

    Image.open(photo).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    data = photo.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "fake.jpg").write_text("not a jpeg\n")
    huge_png(folder / "huge.png")
    cv2.imwrite(str(folder / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image\n")


def test_folder_of_odd_and_broken_images(obamas: Path, tiny_onnx: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    _bad_and_odd_images(folder, obamas)
    out = tmp_path / "out"
    assert main(["--model", str(tiny_onnx), str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    for name in ("alpha", "deep", "cmyk"):  # converted and processed: both faces found
        record = json.loads((out / f"{name}.json").read_text())
        assert len(record["faces"]) == 2, name
    skipped = {line.split(": ")[1].rsplit("/", 1)[-1]: line for line in captured.err.splitlines()
               if line.startswith("skipped: ")}
    assert set(skipped) == {"truncated.jpg", "fake.jpg", "huge.png", "dot.png"}
    assert "truncated JPEG" in skipped["truncated.jpg"] and "60000x60000" in skipped["huge.png"]
    assert "no face found" in skipped["dot.png"] and "cannot decode" in skipped["fake.jpg"]
    assert "ignored 1 file(s) that are not" in captured.err and "(.txt)" in captured.err
    assert "predict: 7/7 images (100 %)" in captured.err  # the progress line of a log
    assert "3/7 images with a face (6 faces, 4 skipped)" in captured.out
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("case", ["huge image", "truncated image", "not a video", "nothing usable"])
def test_more_bad_input_is_one_line_and_exit_2(case: str, tiny_onnx: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_data_formats import huge_png

    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    truncated = tmp_path / "cut.png"
    _, data = cv2.imencode(".png", np.full((40, 40, 3), 7, np.uint8))
    truncated.write_bytes(data.tobytes()[:-12])  # without its IEND chunk
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_text("no\n")
    args = {
        "huge image": [str(huge_png(tmp_path / "huge.png"))],
        "truncated image": [str(truncated), "--no-detect"],
        "not a video": ["--video", str(notes)],
        "nothing usable": [str(folder), "--no-detect"],
    }[case]
    line = _one_error_line(capsys, lambda: main(["--model", str(tiny_onnx), *args]),
                           after_skips=case == "nothing usable")
    assert {"huge image": "60000x60000", "truncated image": "truncated PNG", "not a video": "cannot be opened",
            "nothing usable": "no face found in any of 1 images"}[case] in line
