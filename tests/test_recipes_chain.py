"""The whole chain on a tiny recipe: kill and resume (real processes), caching, gate rejection, pruning.

One module fixture trains once: a real ``python -m recipes run`` is killed with SIGTERM during
the teacher's training, re-run (it resumes distill), killed again once the distill stage is
recorded, and re-run to completion. The other tests copy that finished folder and change one
thing, so only the stages downstream of the change run. ONNX only: the TFLite path runs in
``.ci/run`` (recipes/ci.yaml, every artifact kind).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmarks.data.formats import write_pts
from recipes.__main__ import main
from recipes.check import check_run

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--set", "data.train=synthetic:96", "--set", "data.val=synthetic:16", "--set", "data.calib=synthetic:32",
    "--set", "data.eval=synthetic:48", "--set", "teacher.epochs=3", "--set", "student.epochs=1",
    "--set", "export.formats=[onnx]", "--set", "quant.tflite=false", "--set", "quant.calib_count=32",
    "--set", "artifacts.required=[onnx_fp32,onnx_int8]", "--set", "gate.latency=false",
]  # fmt: skip
STAGES = ("distill", "export", "quantize", "gate")


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "recipes", "run", "recipes/ci.yaml", "--out", str(out), "--no-progress",
            *TINY, *extra]


# Exit 130 from the CLI's interrupt handler; on rare runs (seen once in CI-like conditions, during the
# export stage) the process instead ends by SIGINT itself (-2) after the same handler ran and printed.
INTERRUPTED = (130, -signal.SIGINT)


def _run_until(out: Path, marker: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Start a real run, send SIGTERM as soon as ``marker`` exists, wait for the process to exit."""
    proc = subprocess.Popen(_command(out), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            stdout, stderr = proc.communicate()
            pytest.fail(f"the run ended (rc {proc.returncode}) before {marker.name} appeared:\n{stdout}\n{stderr}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{marker} did not appear within {timeout}s")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _log_of_last_run(out: Path) -> list[str]:
    lines = (out / "stages" / "log.txt").read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if " recipe ci " in line)
    entries = [line.split(" ", 1)[1] for line in lines[start + 1 :]]
    return [e for e in entries if not e.startswith("[skip]")]


def _stray_temp_files(out: Path) -> list[str]:
    """Temporary names of atomic writes (``.<name>.<random>``) left behind, outside work folders."""
    found = []
    for path in out.rglob(".*"):
        if path.name == ".lock" or "work" in path.relative_to(out).parts:
            continue
        found.append(str(path.relative_to(out)))
    return found


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("chain") / "run"
    facts: dict = {"out": out}
    # 1. killed while the teacher trains (after its first epoch was logged)
    first = _run_until(out, out / "checkpoints" / "teacher_log.json")
    facts["first"] = first
    facts["after_first"] = {
        "manifest": (out / "manifest.json").exists(),
        "release": (out / "release").exists(),
        "records": sorted(p.name for p in (out / "stages").glob("*.json")),
        "states": sorted(p.name for p in (out / "checkpoints").glob("*.state.pt")),
        "temp": _stray_temp_files(out),
    }
    # 2. resumes distill, killed right after the distill stage is recorded
    second = _run_until(out, out / "stages" / "distill.json")
    facts["second"] = second
    facts["second_log"] = _log_of_last_run(out)
    facts["after_second"] = {
        "manifest": (out / "manifest.json").exists(),
        "release": sorted(p.name for p in (out / "release").iterdir()) if (out / "release").exists() else [],
        "temp": _stray_temp_files(out),
    }
    # 3. completes
    third = subprocess.run(_command(out), cwd=REPO, capture_output=True, text=True, timeout=600)
    facts["third"] = third
    facts["third_log"] = _log_of_last_run(out)
    return facts


def test_kill_during_training_leaves_nothing_claiming_success(resumed):
    first, after = resumed["first"], resumed["after_first"]
    assert first.returncode in INTERRUPTED, first.stderr
    assert "interrupted" in first.stderr
    assert "interrupted" in first.stderr and "Traceback" not in first.stderr
    assert not after["manifest"] and not after["release"]
    assert after["records"] == ["distill.started.json"]  # started, never recorded as done
    assert after["states"] == ["teacher.state.pt"]  # distill saved its state on SIGTERM
    assert after["temp"] == []


def test_rerun_resumes_training_then_a_kill_after_distill_keeps_it(resumed):
    second, log = resumed["second"], resumed["second_log"]
    assert log[0] == "[run] distill (resuming)"
    assert "[done] distill" in " ".join(log)
    assert second.returncode in INTERRUPTED, second.stderr
    assert "interrupted" in second.stderr
    assert resumed["after_second"] == {"manifest": False, "release": [], "temp": []}


def test_final_rerun_completes_from_the_last_completed_stage(resumed):
    third, log = resumed["third"], resumed["third_log"]
    assert third.returncode == 0, third.stderr
    assert log[0] == "[cached] distill"
    assert "[run] export" in log and "[run] gate" in log
    out = resumed["out"]
    manifest, problems = check_run(out)
    assert problems == []
    assert manifest["status"] == "complete" and manifest["passed"]
    assert [a["name"] for a in manifest["artifacts"]] == ["onnx_fp32", "onnx_int8"]
    assert sorted(p.name for p in (out / "release").iterdir()) == ["student.int8.onnx", "student.onnx"]
    report = (out / "report.md").read_text()
    for artifact in manifest["artifacts"]:  # the artifact table, from the manifest's own numbers
        assert f"| {artifact['name']} |" in report and f"{artifact['nme_io']:.3f}%" in report
    for figure in ("ced.png", "samples.png", "training_curves.png"):
        image = cv2.imread(str(out / figure))
        assert image is not None and min(image.shape[:2]) >= 200, figure
        assert f"]({figure})" in report
    assert not list((out / "checkpoints").glob("*.state.pt"))
    _assert_manifest_contract(manifest)


def test_the_run_evaluates_each_artifact_on_the_eval_set_once(resumed):
    out = resumed["out"]
    manifest = json.loads((out / "manifest.json").read_text())
    results = json.loads((out / "work" / "gate" / "results.json").read_text())
    evaluated = [tuple(key) for key in results["evaluations"]]  # (artifact identity, eval-set hash)
    assert evaluated and len(evaluated) == len(set(evaluated))
    eval_hash = manifest["eval_set"]["content_hash"]
    for artifact in manifest["artifacts"]:
        hits = [key for key in evaluated if f"sha256={artifact['sha256']}" in key[0] and key[1] == eval_hash]
        assert len(hits) == 1, (artifact["name"], evaluated)
    # the INT8 verdict is quant.ptq's, against the FP32 file released beside it: one gate per artifact
    quantized = json.loads((out / "stages" / "quantize.json").read_text())["details"]["artifacts"]["onnx_int8"]
    entry = next(a for a in manifest["artifacts"] if a["name"] == "onnx_int8")
    assert quantized["gate"]["verdict"] == entry["verdict"]
    assert quantized["gate"]["nme_candidate"] == entry["nme_io"]
    fp32 = next(a for a in manifest["artifacts"] if a["name"] == "onnx_fp32")
    assert quantized["gate"]["nme_reference"] == entry["nme_reference"] == fp32["nme_io"]


def _assert_manifest_contract(manifest: dict) -> None:
    """docs/DESIGN.md, "Manifest": what every manifest and artifact entry carries."""
    for key in ("recipe", "git_commit", "versions", "eval_set", "artifacts"):
        assert key in manifest
    assert manifest["recipe"]["config"]["student"]["epochs"] == 1  # the resolved config, --set applied
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "tensorflow"}
    assert set(manifest["eval_set"]) == {"name", "count", "content_hash"}
    assert manifest["eval_set"]["count"] == 48
    for artifact in manifest["artifacts"]:
        for key in ("file", "format", "precision", "runtime", "bytes", "sha256", "params", "landmarks.input_size",
                    "landmarks.source", "nme_io", "nme_box", "reference", "nme_reference", "regression",
                    "max_regression", "verdict", "latency_ms"):
            assert key in artifact, key


def _copy(resumed: dict, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(resumed["out"], out)
    return out


def _main(out: Path, *extra: str) -> int:
    try:
        return main(["run", "recipes/ci.yaml", "--out", str(out), "--no-progress", *TINY, *extra])
    except SystemExit as exit_:
        return int(exit_.code)


def test_second_run_skips_every_stage(resumed, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = _copy(resumed, tmp_path)
    before = json.loads((out / "manifest.json").read_text())
    assert _main(out) == 0
    assert _log_of_last_run(out)[:4] == [f"[cached] {stage}" for stage in STAGES]
    after = json.loads((out / "manifest.json").read_text())
    assert [a["sha256"] for a in after["artifacts"]] == [a["sha256"] for a in before["artifacts"]]
    assert {s["status"] for s in after["stages"].values()} == {"cached"}
    assert "onnx_int8" in capsys.readouterr().out  # the table


def test_changing_only_quant_settings_reruns_only_quantize_and_gate(resumed, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = _copy(resumed, tmp_path)
    assert _main(out, "--set", "quant.calib_count=16") == 0
    log = _log_of_last_run(out)
    assert log[:2] == ["[cached] distill", "[cached] export"]
    assert "[run] quantize" in log and "[run] gate" in log
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["config"]["quant"]["calib_count"] == 16
    assert manifest["stages"]["distill"]["status"] == "cached"


def _blank_faces(folder: Path, count: int = 8) -> Path:
    """Black images with plausible 68-point annotations: a calibration set that ruins INT8 ranges."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        points = rng.uniform(40, 120, size=(68, 2))
        cv2.imwrite(str(folder / f"blank_{i}.png"), np.zeros((160, 160, 3), np.uint8))
        write_pts(folder / f"blank_{i}.pts", points)
    return folder


# A student that has learned something: wrecked INT8 ranges can only make a model worse when its
# output depends on the image. TINY's one epoch leaves a near-constant predictor (~57 % nme_io)
# whose INT8 twin moves by +-0.05 % in either direction; 600 faces x 4 epochs give ~21 %, and
# black calibration images then cost +9 % to +17 % (1 and 2 threads measured).
LEARNED = ["--set", "data.train=synthetic:600", "--set", "student.epochs=4", "--set", "student.lr=0.005"]


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learned") / "run"
    proc = subprocess.run(_command(out, *LEARNED), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_gate_rejection_inside_a_recipe(learned, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    shutil.copytree(learned, out)
    blank = _blank_faces(tmp_path / "blank")
    # INT8 ranges calibrated on black images, without fallback, under a strict gate (0.1 %): how much
    # black calibration costs depends on the student (+9..17 % once, +1.06 % after the bf16 / own-view
    # training change), so the bound, not the damage, decides the rejection.
    code = _main(out, *LEARNED, "--set", f"data.calib={blank}", "--set", "quant.fallback=false",
                 "--set", "gate.max_regression=0.001")
    assert code == 1
    assert "required artifact(s) rejected by the gate: onnx_int8" in capsys.readouterr().err
    assert _log_of_last_run(out)[:2] == ["[cached] distill", "[cached] export"]
    manifest = json.loads((out / "manifest.json").read_text())
    verdicts = {a["name"]: (a["verdict"], a["file"]) for a in manifest["artifacts"]}
    assert verdicts == {"onnx_fp32": ("pass", "release/student.onnx"),
                        "onnx_int8": ("reject", "rejected/student.int8.onnx")}
    assert manifest["rejected_required"] == ["onnx_int8"] and not manifest["passed"]
    int8 = manifest["artifacts"][1]
    assert (int8["nme_io"] - int8["nme_reference"]) / int8["nme_reference"] > int8["max_regression"]
    assert "exceeds max" in int8["reason"]
    assert sorted(p.name for p in (out / "release").iterdir()) == ["student.onnx"]
    assert (out / "rejected" / "student.int8.onnx").is_file()
    assert "reject" in (out / "report.md").read_text()
    assert main(["check", str(out)]) == 1


def test_prune_stage_runs_between_distill_and_export(resumed, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = _copy(resumed, tmp_path)
    before = json.loads((out / "manifest.json").read_text())["artifacts"][0]["params"]
    assert _main(out, "--set", "prune.enabled=true", "--set", "prune.ratio=0.3",
                 "--set", "prune.finetune_epochs=1") == 0
    log = _log_of_last_run(out)
    assert log[0] == "[cached] distill" and "[run] prune" in log and "[run] export" in log
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["checkpoints"]["pruned_student"] == "checkpoints/prune/pruned.pt"
    assert manifest["artifacts"][0]["params"] <= 0.75 * before
    assert check_run(out)[1] == []


def test_a_failing_stage_stops_the_run_and_publishes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "run"
    code = _main(out, "--set", f"teacher.checkpoint={bad}")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m recipes: error: stage distill failed:") and "not a readable checkpoint" in err
    assert not (out / "manifest.json").exists() and not (out / "release").exists()
    assert "[failed] distill" in (out / "stages" / "log.txt").read_text()


def test_an_internal_error_exits_3_with_its_traceback_and_publishes_nothing(resumed, tmp_path, monkeypatch, capsys):
    """A bug inside a stage is neither a rejection (1) nor the user's error (2)."""
    import quant.onnx_backend

    def broken_build(self, float_nodes, **kw):
        raise ZeroDivisionError("injected")

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(quant.onnx_backend.OnnxInt8Backend, "build", broken_build)
    out = _copy(resumed, tmp_path)
    code = _main(out, "--set", "quant.calib_count=16")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1, err
    assert err[0].startswith("python -m recipes: internal error in stage quantize, onnx INT8: building a candidate: "
                             "ZeroDivisionError: injected; nothing published")
    assert f"(traceback: {out / 'stages' / 'log.txt'})" in err[0]
    log = (out / "stages" / "log.txt").read_text()
    assert "Traceback (most recent call last)" in log and "broken_build" in log
    assert not (out / "manifest.json").exists()
    assert not (out / "release").exists() or not any((out / "release").iterdir())


def test_a_change_to_a_stages_code_reruns_it(resumed, tmp_path, monkeypatch):
    """The stage records are keyed on the source that runs each stage: editing export/ re-runs export
    (and what depends on its files), not distill. The source is copied to a scratch root first."""
    import recipes.cache

    monkeypatch.chdir(REPO)
    out = _copy(resumed, tmp_path)
    root = tmp_path / "src"
    for package in ("landmarks", "distill", "export", "quant", "recipes"):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.onnx",
                                                                                          "*.tflite"))
    monkeypatch.setattr(recipes.cache, "REPO_ROOT", root)
    assert _main(out) == 0
    assert _log_of_last_run(out)[:4] == [f"[cached] {stage}" for stage in STAGES]  # the same bytes, the same hash
    with open(root / "export" / "onnx_export.py", "a") as source:
        source.write("\n# a change to the exporter\n")
    assert _main(out) == 0
    log = _log_of_last_run(out)
    assert log[0] == "[cached] distill" and "[run] export" in log


def test_a_killed_prune_stage_resumes_from_its_finished_steps(resumed, tmp_path):
    out = _copy(resumed, tmp_path)
    prune = ["--set", "prune.enabled=true", "--set", "prune.ratio=0.3", "--set", "prune.steps=2",
             "--set", "prune.finetune_epochs=2"]
    proc = subprocess.Popen(_command(out, *prune), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    marker = out / "checkpoints" / "prune" / "step1.pt"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode in INTERRUPTED
    assert not (out / "stages" / "prune.json").exists()
    rerun = subprocess.run(_command(out, *prune), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    log = _log_of_last_run(out)
    assert "[run] prune (resuming)" in log
    assert any(line.startswith("step 1/2") and line.endswith("(finished in an earlier run)") for line in
               (entry.strip() for entry in log))
    report = json.loads((out / "checkpoints" / "prune" / "prune_report.json").read_text())
    assert [s["step"] for s in report["steps"]] == [0, 1, 2]
    assert not list((out / "checkpoints" / "prune").glob("step*.pt"))


def test_the_chain_regression_is_against_the_unpruned_student_and_rejects_past_its_budget(learned, tmp_path,
                                                                                         monkeypatch, capsys):
    """Pruning is a gated step: the pruned student (and every artifact made from it) is measured against
    the distilled student before pruning; past gate.max_chain_regression, rejected (exit 1)."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    shutil.copytree(learned, out)
    prune = [*LEARNED, "--set", "prune.enabled=true", "--set", "prune.ratio=0.5", "--set", "prune.finetune_epochs=0"]
    assert _main(out, *prune) == 0  # no chain budget: reported, not enforced
    manifest = json.loads((out / "manifest.json").read_text())
    refs = manifest["references"]
    unpruned, pruned = refs["student_unpruned"]["nme_io"], refs["torch_fp32"]["nme_io"]
    assert unpruned != pruned and refs["torch_fp32"]["chain_reference"] == "student_unpruned"
    assert refs["torch_fp32"]["chain_regression"] == pytest.approx((pruned - unpruned) / unpruned)
    for artifact in manifest["artifacts"]:
        assert artifact["chain_reference"] == "student_unpruned"
        assert artifact["nme_chain_reference"] == pytest.approx(unpruned)
        assert artifact["chain_regression"] == pytest.approx((artifact["nme_io"] - unpruned) / unpruned)
    assert pruned > unpruned  # half the channels gone and no recovery: the chain lost accuracy
    capsys.readouterr()
    budget = 0.5 * (pruned - unpruned) / unpruned
    code = _main(out, *prune, "--set", f"gate.max_chain_regression={budget}")
    assert code == 1
    assert "required artifact(s) rejected by the gate: torch_fp32" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["references"]["torch_fp32"]["verdict"] == "reject" and not manifest["passed"]
    assert "chain budget" in manifest["references"]["torch_fp32"]["reason"]
    fp32 = next(a for a in manifest["artifacts"] if a["name"] == "onnx_fp32")
    assert fp32["verdict"] == "reject" and "chain budget" in fp32["reason"] and fp32["file"].startswith("rejected/")
    assert "pruning.png" not in (out / "report.md").read_text() or (out / "pruning.png").is_file()
