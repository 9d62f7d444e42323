"""``python -m landmarks.data`` as a user runs it: a real subprocess, exit codes, clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "landmarks.data", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_help() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "DATASET" in result.stdout and "Exit status" in result.stdout


def test_missing_path_is_one_line_exit_2(tmp_path: Path) -> None:
    result = _run(str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"python -m landmarks.data: error: {tmp_path / 'nowhere'}: no such file or folder"]


def test_good_folder_exits_0(pts_folder: Path) -> None:
    result = _run(str(pts_folder), "--input-size", "64")
    assert result.returncode == 0, result.stderr
    assert "format:   pts" in result.stdout and "faces:    3" in result.stdout
    assert "points:   68" in result.stdout and "BAD" not in result.stdout


def test_every_bad_file_is_listed_exit_2(pts_folder: Path) -> None:
    (pts_folder / "face_0.png").write_bytes(b"not an image")
    (pts_folder / "face_1.pts").write_text("version: 1\nn_points: 2\n{\n1 2\n}\n")
    (pts_folder / "orphan.jpg").write_bytes(b"")
    result = _run(str(pts_folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    bad = [line for line in result.stdout.splitlines() if line.startswith("BAD")]
    assert len(bad) == 3
    assert any("face_0.png: cannot decode image" in line for line in bad)
    assert any("face_1.pts: malformed .pts" in line for line in bad)
    assert any("orphan.jpg: image without annotation" in line for line in bad)


@pytest.mark.realdata
def test_real_helen_testset_exits_0(shared_data: Path) -> None:
    result = _run(str(shared_data / "helen/testset"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "faces:    330" in result.stdout


def test_face_synthetics_layout_has_its_faces_of_68_points(face_synthetics_folder: Path) -> None:
    from tests.conftest import FACE_SYNTHETICS_COUNT as COUNT

    result = _run(str(face_synthetics_folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "format:   face_synthetics" in result.stdout and f"faces:    {COUNT}\n" in result.stdout
    assert "points:   68" in result.stdout and "BAD" not in result.stdout
    assert "checking " in result.stderr and f"{COUNT}/{COUNT} faces (100 %)" in result.stderr  # progress in a log


def test_image_declaring_an_enormous_size_is_a_bad_file_not_a_crash(pts_folder: Path) -> None:
    from tests.test_data_formats import huge_png

    huge_png(pts_folder / "face_0.png")
    result = _run(str(pts_folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "cv2.error" not in result.stderr
    bad = [line for line in result.stdout.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and "face_0.png: PNG declares 60000x60000 pixels, above the limit" in bad[0]
    assert "faces:    2 usable, 1 bad file(s)" in result.stdout
