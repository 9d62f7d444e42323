"""Readers of the formats of docs/DESIGN.md ("Data"): conventions, and a clear error for every bad input."""

from __future__ import annotations

import os
import pickle
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmarks.data import detect_format, load_records, read_image, read_pts, restricted_loads, write_pts
from landmarks.data.formats import scan
from landmarks.errors import DataError
from tests.conftest import grid_points

PTS_HEADER = "version: 1\nn_points: {n}\n{{\n"


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _pts_text(points_on_disk: list[tuple[float, float]], n: int | None = None) -> str:
    body = "".join(f"{x} {y}\n" for x, y in points_on_disk)
    return PTS_HEADER.format(n=len(points_on_disk) if n is None else n) + body + "}\n"


def _tiny_png(path: Path, size: tuple[int, int] = (40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size[1], size[0], 3), 90, np.uint8))
    return path


# ---------------------------------------------------------------------------- .pts


def test_pts_round_trip(tmp_path: Path) -> None:
    points = np.random.default_rng(0).uniform(0, 300, size=(68, 2))
    write_pts(tmp_path / "a.pts", points)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), points, rtol=0, atol=1e-12)
    assert (tmp_path / "a.pts").read_text().startswith("version: 1\nn_points: 68\n{\n")


def test_pts_is_one_based_on_disk(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "a.pts", _pts_text([(1.0, 1.0), (10.0, 3.5)]))
    np.testing.assert_array_equal(read_pts(path), [[0.5, 0.5], [9.5, 3.0]])
    write_pts(tmp_path / "b.pts", np.array([[0.5, 0.5]]))
    assert "1.0 1.0" in (tmp_path / "b.pts").read_text()


def test_pts_wrong_count(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "bad.pts", _pts_text([(1, 2), (3, 4)], n=3))
    with pytest.raises(DataError, match=r"bad\.pts.*n_points is 3 but 2 point lines"):
        read_pts(path)


def test_pts_non_numeric(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "bad.pts", _pts_text([(1, 2), ("abc", 4)]))
    with pytest.raises(DataError, match=r"bad\.pts.*line 5 is not two numbers"):
        read_pts(path)


def test_pts_nan(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "bad.pts", _pts_text([(1, 2), ("nan", 4)]))
    with pytest.raises(DataError, match=r"bad\.pts.*line 5 has a non-finite coordinate"):
        read_pts(path)


def test_pts_bad_header(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "bad.pts", "1 2\n3 4\n")
    with pytest.raises(DataError, match=r"bad\.pts.*version: 1"):
        read_pts(path)


def test_pts_missing_braces(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "bad.pts", "version: 1\nn_points: 1\n1 2\n")
    with pytest.raises(DataError, match=r"bad\.pts.*enclosed"):
        read_pts(path)


def test_pts_folder_loads_recursively_with_path_keys(pts_folder: Path) -> None:
    records = load_records(pts_folder)
    assert [r.key for r in records] == ["face_0.png", "face_1.png", "nested/face_2.png"]
    np.testing.assert_allclose(records[2].points, grid_points(seed=2), atol=1e-12)
    assert detect_format(pts_folder) == "pts"


def test_malformed_pts_in_folder_is_named(pts_folder: Path) -> None:
    _write_text(pts_folder / "face_1.pts", _pts_text([(1, 2)], n=68))
    with pytest.raises(DataError, match=r"face_1\.pts.*n_points is 68 but 1"):
        load_records(pts_folder)


def test_mixed_point_counts_names_offending_file(pts_folder: Path) -> None:
    write_pts(pts_folder / "nested/face_2.pts", grid_points(98))
    with pytest.raises(DataError, match=r"face_2\.pts: mixed point counts: has 98 points.* 68"):
        load_records(pts_folder)


def test_image_without_annotation_is_named(pts_folder: Path) -> None:
    _tiny_png(pts_folder / "orphan.png")
    with pytest.raises(DataError, match=r"orphan\.png: image without annotation"):
        load_records(pts_folder)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such file or folder"):
        load_records(tmp_path / "nowhere")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: empty dataset folder"):
        load_records(tmp_path / "empty")


def test_folder_with_images_but_no_annotations(tmp_path: Path) -> None:
    _tiny_png(tmp_path / "imgs/a.png")
    _tiny_png(tmp_path / "imgs/b.jpg")
    with pytest.raises(DataError, match=r"imgs: 2 images but no annotations"):
        load_records(tmp_path / "imgs")


def test_image_that_does_not_decode(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg: cannot decode image"):
        read_image(tmp_path / "broken.jpg")


def test_read_image_is_rgb(tmp_path: Path) -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    image = read_image(tmp_path / "red.png")
    assert image.shape == (4, 5, 3) and image[0, 0].tolist() == [200, 0, 0]


def test_hidden_files_are_ignored(pts_folder: Path) -> None:
    """Atomic-write temporaries (``.name.xyz.pts``) are not half a dataset."""
    _write_text(pts_folder / ".face_0.pts.tmp123.pts", "garbage")
    assert len(load_records(pts_folder)) == 3


# ---------------------------------------------------------------------------- annot.pkl


def _pkl_dataset(root: Path, names: list[str], arrays: list[np.ndarray], protocol: int = 4) -> Path:
    for name in names:
        _tiny_png(root / name, (100, 100))
    (root / "annot.pkl").write_bytes(pickle.dumps((names, arrays), protocol=protocol))
    return root


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_synthetics_pkl_loads_index_coordinates(tmp_path: Path, protocol: int) -> None:
    arrays = [np.full((68, 2), 10.0), np.arange(136, dtype=np.float32).reshape(68, 2)]
    root = _pkl_dataset(tmp_path / "syn", ["000.png", "sub/001.png"], arrays, protocol)
    assert detect_format(root) == "synthetics_pkl"
    records = load_records(root)
    assert [r.key for r in records] == ["000.png", "sub/001.png"]
    np.testing.assert_array_equal(records[0].points, np.full((68, 2), 10.5))  # index 10 -> centre 10.5
    np.testing.assert_array_equal(records[1].points, arrays[1] + 0.5)
    assert load_records(root / "annot.pkl")[1].image_path == root / "sub/001.png"


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)

    marker = ""


def test_pickle_with_os_system_is_rejected_without_running(tmp_path: Path) -> None:
    exploit = _Exploit()
    exploit.marker = str(tmp_path / "pwned")
    (tmp_path / "annot.pkl").write_bytes(pickle.dumps((["a.png"], [exploit])))
    with pytest.raises(DataError, match=r"annot\.pkl: pickle contains (posix|os)\.system, only lists/tuples"):
        load_records(tmp_path / "annot.pkl")
    assert not (tmp_path / "pwned").exists()


class CustomPoints:
    def __init__(self) -> None:
        self.points = [[0.0, 0.0]] * 68


def test_pickle_with_custom_class_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "annot.pkl").write_bytes(pickle.dumps((["a.png"], [CustomPoints()])))
    with pytest.raises(DataError, match=r"pickle contains tests\.test_data_formats\.CustomPoints"):
        restricted_loads((tmp_path / "annot.pkl").read_bytes())
    with pytest.raises(DataError, match="only lists/tuples/arrays are allowed"):
        load_records(tmp_path)


def test_pickle_with_wrong_structure(tmp_path: Path) -> None:
    (tmp_path / "annot.pkl").write_bytes(pickle.dumps((["a.png", "b.png"], [np.zeros((68, 2))])))
    with pytest.raises(DataError, match=r"annot\.pkl: 2 image names but 1 landmark arrays"):
        load_records(tmp_path)


def test_pickle_with_wrong_array_shape(tmp_path: Path) -> None:
    root = _pkl_dataset(tmp_path, ["a.png"], [np.zeros((5, 2))])
    with pytest.raises(DataError, match=r"a\.png: entry 0: landmarks have shape \(5, 2\)"):
        load_records(root)


def test_corrupt_pickle(tmp_path: Path) -> None:
    (tmp_path / "annot.pkl").write_bytes(pickle.dumps((["a.png"], [np.zeros((68, 2))]))[:-20])
    with pytest.raises(DataError, match=r"annot\.pkl: not a valid pickle"):
        load_records(tmp_path)


def test_folder_mixing_formats(pts_folder: Path) -> None:
    (pts_folder / "annot.pkl").write_bytes(pickle.dumps(([], [])))
    with pytest.raises(DataError, match="mixes dataset formats"):
        detect_format(pts_folder)


# ---------------------------------------------------------------------------- WFLW


def _wflw_line(points_idx: np.ndarray, rel: str) -> str:
    coords = " ".join(f"{v:.3f}" for v in points_idx.reshape(-1))
    return f"{coords} 10 10 90 90 0 1 0 0 0 1 {rel}\n"


def test_wflw_list_loads_98_points(tmp_path: Path) -> None:
    wflw = tmp_path / "WFLW"
    _tiny_png(wflw / "WFLW_images/0--Parade/a.jpg", (100, 100))
    points = np.random.default_rng(1).uniform(10, 90, size=(98, 2)).round(3)
    lst = _write_text(wflw / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt",
                      _wflw_line(points, "0--Parade/a.jpg") + _wflw_line(points + 1, "0--Parade/a.jpg"))
    assert detect_format(lst) == "wflw"
    records = load_records(lst)
    assert len(records) == 2 and records[0].points.shape == (98, 2)
    assert [r.key for r in records] == ["0--Parade/a.jpg#0", "0--Parade/a.jpg#1"]
    assert records[0].image_path == wflw / "WFLW_images/0--Parade/a.jpg"
    np.testing.assert_allclose(records[1].points, points + 1.5)
    assert len(scan(lst.parent).records) == 2  # a folder with one list is detected too


def test_wflw_bad_line_is_named(tmp_path: Path) -> None:
    _tiny_png(tmp_path / "a.jpg")
    lst = _write_text(tmp_path / "list_98pt_test.txt", "1 2 3 a.jpg\n")
    with pytest.raises(DataError, match=r"list_98pt_test\.txt: line 1: expected 207 fields"):
        load_records(lst)


def test_wflw_missing_image_is_named(tmp_path: Path) -> None:
    lst = _write_text(tmp_path / "list.txt", _wflw_line(np.zeros((98, 2)), "x/missing.jpg"))
    with pytest.raises(DataError, match=r"line 1: image x/missing\.jpg not found"):
        load_records(lst)


# ---------------------------------------------------------------------------- FaceSynthetics native

def _ldmks_text(points: np.ndarray) -> str:
    return "".join(f"{x} {y}\n" for x, y in points)


def test_face_synthetics_layout_loads_68_points_at_pixel_centres(face_synthetics_folder: Path) -> None:
    from tests.conftest import FACE_SYNTHETICS_COUNT

    assert detect_format(face_synthetics_folder) == "face_synthetics"
    records = load_records(face_synthetics_folder)
    assert len(records) == FACE_SYNTHETICS_COUNT and {r.num_points for r in records} == {68}
    first = records[0]
    assert first.key == "000000.jpg"
    on_disk = np.loadtxt(face_synthetics_folder / "000000_ldmks.txt")
    assert on_disk.shape == (70, 2)  # 68 iBUG points + 2 pupils, 0-based pixel indices
    np.testing.assert_allclose(first.points, on_disk[:68] + 0.5)
    assert read_image(first.image_path).shape == (160, 160, 3)


def test_face_synthetics_folder_pairs_images_and_ignores_seg_masks(tmp_path: Path) -> None:
    points = np.vstack([grid_points(seed=0), [[150.0, 120.0], [190.0, 121.0]]])
    for name in ("000000", "000001"):
        _tiny_png(tmp_path / f"{name}.png", (320, 300))
        _tiny_png(tmp_path / f"{name}_seg.png", (320, 300))
        _write_text(tmp_path / f"{name}_ldmks.txt", _ldmks_text(points))
    records = load_records(tmp_path)
    assert [r.key for r in records] == ["000000.png", "000001.png"]
    np.testing.assert_allclose(records[1].points, points[:68] + 0.5)


@pytest.mark.parametrize("case", ["69 lines", "not numbers", "no image", "image without ldmks"])
def test_face_synthetics_bad_files_are_named(tmp_path: Path, case: str) -> None:
    points = np.vstack([grid_points(seed=0), [[150.0, 120.0], [190.0, 121.0]]])
    _tiny_png(tmp_path / "000000.png", (320, 300))
    _write_text(tmp_path / "000000_ldmks.txt", _ldmks_text(points))
    ldmks, image = tmp_path / "000001_ldmks.txt", tmp_path / "000001.png"
    if case == "69 lines":
        bad, reason = _write_text(ldmks, _ldmks_text(points[:69])), "malformed _ldmks.txt: expected 70 lines"
        _tiny_png(image, (320, 300))
    elif case == "not numbers":
        bad = _write_text(ldmks, "one 2\n" + _ldmks_text(points[1:]))
        reason = "malformed _ldmks.txt: line 1 is not two numbers: 'one 2'"
        _tiny_png(image, (320, 300))
    elif case == "no image":
        bad, reason = _write_text(ldmks, _ldmks_text(points)), "annotation without an image"
    else:
        bad, reason = _tiny_png(tmp_path / "000001.jpg"), "image without annotation (no 000001_ldmks.txt)"
    result = scan(tmp_path)
    assert result.format == "face_synthetics" and [r.key for r in result.records] == ["000000.png"]
    (problem,) = result.problems
    assert problem.path == bad and problem.reason.startswith(reason)
    with pytest.raises(DataError, match=re.escape(f"{bad}: {reason}")):
        load_records(tmp_path)


# ---------------------------------------------------------------------------- images: header checks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png(path: Path, width: int = 60000, height: int = 60000) -> Path:
    """A ~100-byte PNG whose IHDR (valid CRC) declares ``width`` x ``height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * 8)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path


def test_enormous_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    path = huge_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 1024
    with pytest.raises(DataError, match=r"bomb.png: PNG declares 60000x60000 pixels, above the limit of 100 megapix"):
        read_image(path)


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    _, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg: truncated JPEG"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp"])
def test_header_size_matches_the_decoded_size(tmp_path: Path, suffix: str) -> None:
    from landmarks.data.imageheader import read_header

    path = tmp_path / f"image{suffix}"
    assert cv2.imwrite(str(path), np.full((37, 53, 3), 120, np.uint8))
    header = read_header(path.read_bytes())
    assert header is not None and (header.width, header.height, header.truncated) == (53, 37, False)
    assert read_image(path).shape == (37, 53, 3)


def test_16_bit_and_alpha_pngs_become_8_bit_rgb(tmp_path: Path) -> None:
    deep = np.zeros((20, 30, 3), np.uint16)
    deep[..., 2] = 65535  # BGR: red
    assert cv2.imwrite(str(tmp_path / "deep.png"), deep)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 200, 128  # BGRA: green, half transparent
    assert cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    for name, rgb in (("deep.png", (255, 0, 0)), ("alpha.png", (0, 200, 0))):
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
        np.testing.assert_array_equal(image[5, 5], rgb)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    from PIL import Image  # pillow comes with matplotlib

    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (24, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    rgb = read_image(path)
    assert rgb.shape == (16, 24, 3)
    assert rgb[8, 12, 0] > 200 and rgb[8, 12, 1] < 60 and rgb[8, 12, 2] < 60
