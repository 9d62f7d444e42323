"""``benchmarks/results_page.py``: the results page builds from a tiny manifest and tiny benchmark files,
marks missing sources as pending, and evaluates checkpoints into the CED figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.results_page import Sources, build_page, main
from landmarks.data import read_image

COMMON = "300w/helen/testset,300w/lfpw/testset"


def _metrics(nme: float) -> dict[str, float]:
    return {"nme_io": nme, "nme_box": nme / 2, "nme_img": nme / 4, "fr@0.08": 0.05, "fr@0.10": 0.02,
            "auc@0.08": 0.55, "auc@0.10": 0.62}


def write_tiny_run(root: Path) -> Path:
    """A recipe folder with a two-artifact manifest and its gate's per-image errors."""
    run = root / "runs" / "tiny_recipe"
    (run / "work" / "gate").mkdir(parents=True)
    artifacts = [
        {"name": name, "file": f"release/student.{name}", "format": name.split("_")[0], "precision": "int8",
         "bytes": size, "params": 200_000, "verdict": "pass", "regression": 0.004, "latency_ms": lat, **_metrics(nme)}
        for name, size, lat, nme in (("onnx_int8", 480_000, 1.2, 4.1), ("tflite_int8", 520_000, 1.3, 4.2))
    ]
    manifest = {"status": "complete", "recipe": {"name": "tiny"}, "git_commit": "0123456789abcdef",
                "eval_set": {"name": COMMON, "count": 554}, "references": {"torch_fp32": {"params": 200_000,
                                                                                          **_metrics(4.0)}},
                "artifacts": artifacts}
    (run / "manifest.json").write_text(json.dumps(manifest))
    rng = np.random.default_rng(0)
    errors = {name: rng.gamma(4.0, 0.01, 554).tolist() for name in ("torch_fp32", "onnx_int8", "tflite_int8")}
    (run / "work" / "gate" / "errors.json").write_text(json.dumps(errors))
    return run


def write_tiny_results(results: Path) -> None:
    results.mkdir(parents=True)
    block = {"nme_io": 4.5, "fr_010": 0.03, "auc_008": 0.5, "params": 300_000}
    (results / "distill_300w.json").write_text(json.dumps({
        "test_set": "300-W common (helen/testset + lfpw/testset), 554 faces",
        "teacher": {**block, "nme_io": 3.9, "arch": "fan1"}, "student_kd": block,
        "student_nokd": {**block, "nme_io": 4.9}, "config": {"out": "/nonexistent/kd"}}))
    (results / "suite.json").write_text(json.dumps({
        "source": "tiny", "cpu": "test CPU",
        "latency_ms": {t: {"torch": 9.0, "onnx_fp32": 2.0, "onnx_int8": 1.0, "tflite_fp32": 2.2, "tflite_int8": 1.1}
                       for t in ("1", "2")},
        "training": {"threads": 2, "teacher": {"images_per_s": 10.0}, "student": {"images_per_s": 90.0},
                     "student_kd": {"images_per_s": 8.0}},
        "synthetic": {"images_per_s_cpu": 500.0, "image_size": 128}}))


def test_page_builds_from_a_tiny_manifest_and_marks_missing_sources_pending(tmp_path: Path) -> None:
    write_tiny_run(tmp_path)
    write_tiny_results(tmp_path / "results")
    out, png = tmp_path / "docs" / "RESULTS.md", tmp_path / "docs" / "img" / "ced_300w.png"
    sources = Sources(results=tmp_path / "results", runs=tmp_path / "runs", data=None)
    build_page(sources, out, png, evaluate=False, log=lambda _: None)
    page = out.read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in page.splitlines() if line.startswith("| ")}
    assert "| 4.10 | 0.020 | 0.550 | 469 KB | 200,000 |" in rows["INT8 ONNX (onnxruntime)"]
    assert "1.00 ms | 1.00 ms" in rows["INT8 ONNX (onnxruntime)"]  # suite latency, 1 and 2 threads
    assert "| 4.20 |" in rows["INT8 TFLite (LiteRT)"] and "(tiny_recipe/manifest.json)" in rows["INT8 TFLite (LiteRT)"]
    assert str(tmp_path) not in page  # no machine path in a committed page
    assert "| 3.90 | 0.030 | 0.500 |" in rows["Teacher (FAN)"]
    assert "pending: benchmarks/results/prune_300w.json" in rows["Pruned (30 %, KD recovery)"]
    assert "![CED on the 300-W common test set](img/ced_300w.png)" in page
    assert read_image(png).shape[2] == 3
    assert "| onnx_int8 | 4.10 |" in page and "+0.40 %" in page  # the recipe section, straight from the manifest
    assert "x0.50" in page  # suite ratios vs ONNX FP32
    assert "Published reference points" in page and "python benchmarks/results_page.py" in page


def test_page_with_no_sources_at_all_is_all_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "RESULTS.md"
    assert main(["--results", str(tmp_path / "none"), "--runs", str(tmp_path / "none"), "--no-eval",
                 "--out", str(out), "--figure", str(tmp_path / "ced.png")]) == 0
    page = out.read_text()
    assert page.count("pending:") >= 8 and not (tmp_path / "ced.png").exists()


def test_checkpoints_are_evaluated_into_the_ced_and_cached(tmp_path: Path) -> None:
    """A student checkpoint under runs/300w/kd is scored on the (tiny) test folders; the second build uses the cache."""
    import torch

    from landmarks.metadata import ArtifactMetadata
    from landmarks.models import create_model
    from landmarks.models.checkpoint import Checkpoint, save_checkpoint
    from tests.helpers import write_pts_dataset

    data = tmp_path / "300w"
    write_pts_dataset(data / "helen/testset", count=3, seed=0)
    write_pts_dataset(data / "lfpw/testset", count=2, seed=1)
    torch.manual_seed(0)
    model = create_model("pfld025", input_size=64)
    save_checkpoint(tmp_path / "runs/300w/kd/student.pt",
                    Checkpoint("pfld025", {"input_size": 64}, model.state_dict(), ArtifactMetadata(input_size=64)))
    results = tmp_path / "results"
    results.mkdir()
    sources = Sources(results=results, runs=tmp_path / "runs", data=data)
    out, png = tmp_path / "RESULTS.md", tmp_path / "ced.png"
    build_page(sources, out, png, log=lambda _: None)
    cache = json.loads((results / "ced_300w.json").read_text())
    (entry,) = cache["models"].values()
    assert len(entry["nme_io_per_image"]) == 5 and png.is_file()
    build_page(Sources(results=results, runs=tmp_path / "runs", data=None), out, png, evaluate=False,
               log=lambda _: None)
    assert "![CED" in out.read_text()  # cached curves still drawn without evaluating
