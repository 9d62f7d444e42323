"""``python -m landmarks.eval`` as a user runs it: a real subprocess on artifacts built here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_300W as REAL_300W
from tests.helpers import TinyLandmarkNet, export_onnx, tiny_metadata, write_pts_dataset

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "landmarks.eval", *map(str, args)],
        capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=300,
    )


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    return {
        "model": export_onnx(TinyLandmarkNet(), root / "tiny.onnx", tiny_metadata()),
        "data": write_pts_dataset(root / "faces", count=6),
    }


def test_help_names_model_data_and_options():
    result = run_cli("--help")
    assert result.returncode == 0
    for text in ("model", "data", "--out", "--batch-size", "--limit", "--threads"):
        assert text in result.stdout


def test_evaluates_an_onnx_model_and_writes_outputs(tmp_path, artifacts):
    args = (artifacts["model"], artifacts["data"], "--batch-size", "4", "--threads", "1")
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "eval_tiny"  # the default --out
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["metrics"]["num_images"] == 6 and len(doc["per_image"]) == 6
    assert set(doc["per_image"]["face_000.png"]) == {"nme_io", "nme_box", "nme_img"}
    assert doc["runtime"] == "onnxruntime"
    for name in ("ced.png", "samples.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    for text in ("nme_io", "nme_box", "nme_img", "fr@0.08", "auc@0.10", "inter-ocular", "36-45"):
        assert text in result.stdout
    assert f"{doc['metrics']['nme_io']:.3f}" in result.stdout
    assert "Traceback" not in result.stderr


def test_limit_and_out(tmp_path, artifacts):
    result = run_cli(artifacts["model"], artifacts["data"], "--limit", "3", "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["metrics"]["num_images"] == 3


@pytest.mark.parametrize("case", ["missing model", "not onnx", "missing data", "wrong suffix"])
def test_bad_inputs_exit_2_with_one_line(tmp_path, artifacts, case):
    model, data = artifacts["model"], artifacts["data"]
    if case == "missing model":
        model = tmp_path / "nope.onnx"
    elif case == "not onnx":
        model = tmp_path / "fake.onnx"
        model.write_text("I am a text file\n")
    elif case == "missing data":
        data = tmp_path / "no_such_folder"
    else:
        model = tmp_path / "model.bin"
        model.write_bytes(b"\0")
    result = run_cli(model, data, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m landmarks.eval: error:"), result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_bad_flag_value_is_a_usage_error(artifacts):
    result = run_cli(artifacts["model"], artifacts["data"], "--limit", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL_300W / "helen/testset").is_dir(), reason="300-W helen testset not present")
def test_real_300w_helen_subset(tmp_path, artifacts):
    helen = REAL_300W / "helen/testset"
    result = run_cli(artifacts["model"], helen, "--limit", "40", "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert doc["metrics"]["num_images"] == 40 and len(doc["per_image"]) == 40


@pytest.mark.parametrize("where", ["is a file", "is below the file"])
def test_out_naming_a_file_is_refused_before_any_work(tmp_path, artifacts, where):
    blocker = tmp_path / "taken"
    blocker.write_text("mine\n")
    out = blocker if where == "is a file" else blocker / "sub"
    # the model does not exist: the --out check must come first, before the model is even opened
    result = run_cli(tmp_path / "nope.onnx", artifacts["data"], "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"python -m landmarks.eval: error: --out {out} ") and where in line
    assert blocker.read_text() == "mine\n"


def test_image_declaring_an_enormous_size_is_one_line_exit_2(tmp_path, artifacts):
    from tests.test_data_formats import huge_png

    data = tmp_path / "faces"
    shutil.copytree(artifacts["data"], data)
    victim = sorted(data.glob("*.png"))[0]
    huge_png(victim)
    result = run_cli(artifacts["model"], data, "--out", tmp_path / "o")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "cv2.error" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"{victim.name}: PNG declares 60000x60000 pixels, above the limit" in line


def test_progress_lines_without_a_terminal(tmp_path, artifacts):
    result = run_cli(artifacts["model"], artifacts["data"], "--out", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("evaluating tiny (onnxruntime) on ")
    assert any(line.startswith("evaluated 6 faces in ") for line in lines)
    quiet = run_cli(artifacts["model"], artifacts["data"], "--out", tmp_path / "q", "--no-progress")
    assert not any(line.startswith("evaluat") for line in quiet.stdout.splitlines())
