"""``python -m export`` as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from landmarks.metadata import ArtifactMetadata
from landmarks.models import Checkpoint, create_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, prelude: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter; ``prelude`` is Python run first (to hide a module)."""
    if prelude is None:
        cmd = [sys.executable, "-m", "export", *args]
    else:
        code = f"{prelude}\nimport runpy, sys\nsys.argv = ['export', *{list(args)!r}]\n" \
               "runpy.run_module('export', run_name='__main__', alter_sys=True)"
        cmd = [sys.executable, "-c", code]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _assert_usage_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """pfld025 with a random head, so outputs vary and FP16 rounding shows (init predicts 0.5)."""
    torch.manual_seed(0)
    model = create_model("pfld025")
    with torch.no_grad():
        model.fc.weight.normal_(std=0.05)
        model.fc.bias.uniform_(0.2, 0.8)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    save_checkpoint(path, Checkpoint("pfld025", model.arch_config, model.state_dict(), ArtifactMetadata()))
    return path


def test_help():
    result = _run("--help")
    assert result.returncode == 0
    flags = ("--formats", "--out", "--fp16", "--parity-data", "--parity-bound-onnx", "--parity-bound-tflite")
    for flag in flags:
        assert flag in result.stdout


def test_success_writes_onnx(checkpoint, tmp_path):
    out = tmp_path / "out"
    result = _run(str(checkpoint), "--formats", "onnx", "--out", str(out), "--parity-count", "8")
    assert result.returncode == 0, result.stderr
    from landmarks.runtimes import load_predictor

    predictor = load_predictor(out / "student.onnx", num_threads=1)  # loads, and describes itself
    assert predictor.metadata.input_size == 112 and predictor.metadata.source.startswith("pfld025@")
    assert "student.onnx" in result.stdout and "ok" in result.stdout


def test_parity_failure_exits_1_and_writes_nothing(checkpoint, tmp_path):
    out = tmp_path / "out"
    result = _run(str(checkpoint), "--formats", "onnx", "--fp16", "--parity-bound-fp16", "1e-12",
                  "--out", str(out), "--parity-count", "8")
    assert result.returncode == 1, result.stderr
    assert "parity" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_missing_checkpoint(tmp_path):
    _assert_usage_error(_run(str(tmp_path / "nope.pt"), "--out", str(tmp_path / "out")), "not found")
    assert not (tmp_path / "out").exists()


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(os.urandom(4096))
    _assert_usage_error(_run(str(path), "--out", str(tmp_path / "out")), "corrupt.pt")
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_unknown_architecture(checkpoint, tmp_path):
    model = create_model("pfld025")
    path = tmp_path / "alien.pt"
    save_checkpoint(path, Checkpoint("resnet9000", model.arch_config, model.state_dict(), ArtifactMetadata()))
    _assert_usage_error(_run(str(path), "--out", str(tmp_path / "out")), "resnet9000")
    assert not (tmp_path / "out").exists()


def test_checkpoint_weights_of_another_architecture(tmp_path):
    model = create_model("pfld025")
    path = tmp_path / "mislabelled.pt"
    save_checkpoint(path, Checkpoint("fan1", {}, model.state_dict(), ArtifactMetadata()))
    _assert_usage_error(_run(str(path), "--out", str(tmp_path / "out")), "fan1")


def test_unknown_format(checkpoint, tmp_path):
    _assert_usage_error(_run(str(checkpoint), "--formats", "onnx,coreml", "--out", str(tmp_path / "o")),
                        "coreml")
    assert not (tmp_path / "o").exists()


def test_out_is_a_file(checkpoint, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    _assert_usage_error(_run(str(checkpoint), "--out", str(target)), "is a file, not a folder")
    assert target.read_text() == "not a folder"


def test_out_below_a_file_fails_before_any_work(checkpoint, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = _run(str(checkpoint), "--out", str(target / "sub"))
    _assert_usage_error(result, f"is below the file {target}")
    assert result.stdout == ""
    assert target.read_text() == "not a folder"


def test_converter_not_installed(checkpoint, tmp_path):
    result = _run(str(checkpoint), "--formats", "onnx,tflite", "--out", str(tmp_path / "o"),
                  prelude="import sys; sys.modules['onnx2tf'] = None")
    _assert_usage_error(result, "onnx2tf")
    assert not (tmp_path / "o").exists()
