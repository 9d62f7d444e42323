"""Shipped models: the published files match their manifest, the shipped INT8 artifacts still pass the
accuracy gate on 300-W, and ``publish`` on a real (tiny) recipe run: sha256s, the card, the size limit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from landmarks.errors import ModelError
from landmarks.models.checkpoint import file_sha256
from landmarks.zoo import MANIFEST, MODEL_CARD, NO_MODEL, ZOO_DIR, default_model, load_manifest, verify
from landmarks.zoo.publish import MAX_ZOO_BYTES, model_card, publish
from tests.test_recipes_chain import REPO, _command

COMMON_TEST = ("helen/testset", "lfpw/testset")  # the 300-W common test set, 554 faces


def gate_shipped(zoo: Path, data: str | list[str], seed: int = 0) -> dict[str, object]:
    """Re-run the accuracy gate: every shipped INT8 artifact against the shipped FP32 ONNX on ``data``."""
    from landmarks.data import open_dataset
    from landmarks.runtimes import load_predictor
    from quant.accuracy_gate import Evaluator, GateConfig, run_gate

    manifest = load_manifest(zoo)
    assert manifest is not None
    files = {entry["name"]: entry for entry in manifest["artifacts"]}
    reference = load_predictor(zoo / files["onnx_fp32"]["file"], num_threads=1)
    meta = reference.metadata
    dataset = open_dataset(data, input_size=meta.input_size, crop_scale=meta.crop_scale, augment=None,
                           seed=seed)
    evaluator = Evaluator(dataset)
    reports = {}
    for name, entry in files.items():
        if entry.get("precision") == "int8":
            config = GateConfig(max_regression=entry.get("max_regression", 0.02))
            candidate = load_predictor(zoo / entry["file"], num_threads=1)
            reports[name] = run_gate(candidate, reference, dataset, config, evaluator=evaluator)
    return reports


# ---------------------------------------------------------------------------- the shipped zoo


def test_shipped_files_match_their_sha256_and_size() -> None:
    assert load_manifest() is not None, f"the package ships models: {ZOO_DIR}"
    assert verify() == []
    assert default_model() == ZOO_DIR / load_manifest()["default"]


@pytest.mark.realdata
def test_shipped_int8_artifacts_pass_the_gate_on_the_300w_common_test_set(shared_data: Path) -> None:
    reports = gate_shipped(ZOO_DIR, ",".join(str(shared_data / f) for f in COMMON_TEST))
    assert "onnx_int8" in reports
    for report in reports.values():
        assert report.eval_count == 554
        assert report.passed, report.verdict_line()


def test_empty_zoo_has_no_default_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"^{NO_MODEL}$"):
        default_model(tmp_path)


# ---------------------------------------------------------------------------- publish on a real run

TFLITE = ["--set", "export.formats=[onnx,tflite]", "--set", "quant.tflite=true"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny CI-recipe run (the settings of test_recipes_chain, plus the TFLite artifacts)."""
    out = tmp_path_factory.mktemp("zoo_run") / "run"
    proc = subprocess.run(_command(out, *TFLITE), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_publish_copies_release_artifacts_with_their_sha256(tiny_run: Path, tmp_path: Path) -> None:
    zoo = tmp_path / "zoo"
    manifest = publish(tiny_run, zoo)
    run = json.loads((tiny_run / "manifest.json").read_text())
    released = {a["name"]: a for a in run["artifacts"]}
    assert [f["name"] for f in manifest["artifacts"]] == ["onnx_fp32", "onnx_int8", "tflite_int8"]
    assert sorted(p.name for p in zoo.iterdir()) == sorted(
        [MANIFEST, MODEL_CARD, "student.onnx", "student.int8.onnx", "student.int8.tflite", "student.int8.tflite.json"])
    for entry in manifest["artifacts"]:  # the run's entries, unchanged but for the file names
        assert entry["sha256"] == released[entry["name"]]["sha256"] == file_sha256(zoo / entry["file"])
        run_entry = released[entry["name"]]
        assert {k: v for k, v in entry.items() if k not in ("file", "sidecar")} == {
            k: v for k, v in run_entry.items() if k not in ("file", "sidecar")}
    assert set(manifest) == (set(run) - {"checkpoints", "stages", "samples"}) | {"default", "total_bytes"}
    assert manifest["datasets"] == run["datasets"] and manifest["datasets"]["train"] == [
        {"name": "synthetic:96", "content_hash": None}]
    sidecar = manifest["artifacts"][2]["sidecar"]
    assert sidecar["sha256"] == file_sha256(tiny_run / "release" / "student.int8.tflite.json")
    assert manifest["total_bytes"] == sum((zoo / n).stat().st_size for n in (
        "student.onnx", "student.int8.onnx", "student.int8.tflite", "student.int8.tflite.json"))
    assert manifest["git_commit"] == run["git_commit"] and manifest["recipe"]["name"] == "ci"
    assert json.loads((zoo / MANIFEST).read_text()) == manifest
    assert verify(zoo) == [] and default_model(zoo) == zoo / "student.int8.onnx"

    (zoo / "student.int8.onnx").write_bytes(b"tampered")
    assert verify(zoo) == ["student.int8.onnx has 8 bytes, the manifest says "
                           f"{manifest['artifacts'][1]['bytes']}"]


def test_model_card_is_generated_from_the_manifest(tiny_run: Path, tmp_path: Path) -> None:
    manifest = publish(tiny_run, tmp_path)
    card = (tmp_path / MODEL_CARD).read_text()
    assert card == model_card(manifest)
    assert manifest["git_commit"] in card and "`ci` (`recipes/ci.yaml`)" in card
    assert "`synthetic:96` (train)" in card and "no third-party terms" in card
    for entry in manifest["artifacts"]:
        assert f"`{entry['file']}`" in card and f"{entry['nme_io']:.3f} %" in card
    assert "`synthetic:48` (48 faces" in card  # the recipe's eval set
    assert "300-W" not in card  # no research-only data went into this one


def test_publish_refuses_a_zoo_above_the_size_limit(tiny_run: Path, tmp_path: Path) -> None:
    assert MAX_ZOO_BYTES == 2_000_000
    zoo = tmp_path / "zoo"
    with pytest.raises(ModelError, match=r"above the limit of 0\.50 MB"):
        publish(tiny_run, zoo, max_bytes=500_000)
    assert not zoo.exists() or not any(zoo.iterdir())  # refused before anything was written


def test_gate_rerun_on_published_artifacts_reproduces_the_recipe_gate(tiny_run: Path, tmp_path: Path) -> None:
    """The helper behind the 300-W test, on the recipe's own eval set: the same NMEs as the run recorded."""
    manifest = publish(tiny_run, tmp_path)
    files = {entry["name"]: entry for entry in manifest["artifacts"]}
    from landmarks.data.specs import EVAL_SEED_OFFSET

    seed = json.loads((tiny_run / "manifest.json").read_text())["recipe"]["config"]["seed"] + EVAL_SEED_OFFSET
    reports = gate_shipped(tmp_path, manifest["eval_set"]["name"], seed=seed)
    assert set(reports) == {"onnx_int8", "tflite_int8"}
    int8 = reports["onnx_int8"]
    assert int8.eval_hash == manifest["eval_set"]["content_hash"]
    np.testing.assert_allclose([int8.nme_candidate, int8.nme_reference],
                               [files["onnx_int8"]["nme_io"], files["onnx_fp32"]["nme_io"]], rtol=1e-4)
    assert int8.passed
