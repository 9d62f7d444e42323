"""Recipe schema and CLI: every shipped recipe validates; bad keys, types, values and --set are one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from recipes.__main__ import main
from recipes.cache import StageStore, hash_inputs
from recipes.check import check_run
from recipes.schema import Recipe, apply_override, load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def _write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name", ["quickstart", "ci"])
def test_shipped_recipes_validate(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    assert recipe.name == name
    assert set(recipe.artifacts.required) == {"onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_int8"}


def test_real_data_recipe_validates(shared_data, monkeypatch):
    monkeypatch.setenv("LANDMARKS_DATA", str(shared_data.parent))
    recipe = load_recipe(RECIPES / "300w_pfld025.yaml")
    assert recipe.data.train == ("300w/helen/trainset", "300w/lfpw/trainset", "300w/afw")  # names, as written
    assert recipe.data.items("eval") == tuple(str(shared_data.parent / f"300w/{s}/testset") for s in ("helen", "lfpw"))
    assert recipe.prune.enabled and recipe.prune.ratio == pytest.approx(0.3)
    assert recipe.teacher.arch == "fan2" and recipe.student.arch == "pfld025" and not recipe.student.no_kd
    assert recipe.produced() == ("onnx_fp32", "tflite_fp32", "onnx_int8", "tflite_int8")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: t\nstudent:\n  epcohs: 3\n", "student.epcohs: unknown key (did you mean 'epochs'?)"),
        ("name: t\nstudent:\n  epochs: three\n", "student.epochs: must be an integer (got 'three')"),
        ("name: t\nstudent:\n  epochs: 2.5\n", "student.epochs: must be an integer (got 2.5)"),
        ("name: t\ngate:\n  max_regression: 5\n", "gate.max_regression: must be <= 1.0 (got 5)"),
        ("name: t\nteacher:\n  input_size: 66\n", "teacher.input_size: must be a multiple of 4 (got 66)"),
        ("name: t\nquant:\n  method: magic\n", "quant.method: must be one of"),
        ("name: t\nexport:\n  formats: []\n", "export.formats: must not be empty"),
        ("name: t\ndata:\n  train: /no/such/folder\n", "data.train: no such folder '/no/such/folder'"),
        ("name: t\ndata:\n  root: /no/such/root\n", "data.root: no such folder '/no/such/root'"),
        ("name: t\nteacher:\n  arch: fan9\n", "teacher.arch: unknown architecture 'fan9'; valid: fan1, fan2, fan4"),
        ("name: t\nsurprise: 1\n", "surprise: unknown key"),
        ("name: t\nquant:\n  onnx: yes please\n", "quant.onnx: must be true or false"),
        ("name: t\nquant:\n  tflite: false\n", "artifacts.required: 'tflite_int8' is never produced by this recipe"),
        ("name: t\nexport:\n  formats: [onnx]\nquant:\n  tflite: false\nartifacts:\n  required: [onnx_int8]\n"
         "prune:\n  ratio: 1.5\n", "prune.ratio: must be a fraction in (0, 1) or auto (got 1.5)"),
        ("- just\n- a list\n", "a recipe is a mapping of sections"),
        ("name: t\nstudent: [1\n", "not valid YAML (line 3)"),
    ],
)
def test_schema_errors_name_the_file_and_key(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    err = _error(capsys, ["show", str(path)])
    assert err.startswith(f"python -m recipes: error: {path}"), err
    assert message in err, err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("student.epochs", "--set 'student.epochs': expected key=value"),
        ("=3", "expected key=value"),
        ("student..epochs=3", "expected key=value"),
        ("seed.deeper=1", "--set 'seed.deeper=1': seed is a value, not a section"),
        ("student.epcohs=3", "student.epcohs: unknown key (did you mean 'epochs'?)"),
        ("gate.max_regression=-0.1", "gate.max_regression: must be >= 0.0 (got -0.1)"),
        ("student.lr=fast", "student.lr: must be a number (got 'fast')"),
        ("student.kd.output_weight=[1", "the value is not valid YAML"),
    ],
)
def test_bad_overrides_are_one_line_errors(capsys, override, message):
    err = _error(capsys, ["run", str(RECIPES / "ci.yaml"), "--set", override, "--out", "/nonexistent/never"])
    assert message in err, err
    assert not Path("/nonexistent/never").exists()


def test_overrides_are_parsed_as_yaml_and_resolved(capsys):
    assert main(["show", str(RECIPES / "ci.yaml"), "--set", "student.epochs=3", "--set", "export.formats=[onnx]",
                 "--set", "quant.tflite=false", "--set", "artifacts.required=[onnx_int8]",
                 "--set", "gate.max_abs_regression=0.5"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["student"]["epochs"] == 3
    assert resolved["export"]["formats"] == ["onnx"]
    assert resolved["gate"] == {"max_regression": 0.02, "max_abs_regression": 0.5, "max_chain_regression": None,
                                "latency": True, "threads": 2, "latency_threads": 1}
    assert resolved["name"] == "ci" and resolved["prune"]["enabled"] is False


def test_sections_are_the_library_configs_with_their_defaults():
    """A key a library config has takes its default from it; only recipe choices differ."""
    from distill.config import KDConfig, StudentConfig, TeacherConfig
    from distill.prune import PruneConfig
    from quant.ort_int8 import StaticInt8Config
    from quant.ptq import PtqConfig
    from quant.tflite_int8 import TfliteInt8Config

    recipe = Recipe(name="defaults")
    distill = recipe.distill_config(Path("out"), progress=False)
    student, teacher = StudentConfig(), TeacherConfig()
    assert distill.student == replace(student, train=replace(student.train, epochs=12))
    assert distill.teacher == replace(teacher, arch="fan2", train=replace(teacher.train, epochs=8))
    assert distill.kd == KDConfig() and distill.data.crop_scale == 1.25
    ptq, library = recipe.ptq_config("onnx"), PtqConfig()
    assert ptq.onnx == StaticInt8Config() and ptq.onnx.calib_count == 256
    assert (ptq.tflite, ptq.gate, ptq.fallback, ptq.max_float_nodes) == (
        TfliteInt8Config(), library.gate, library.fallback, library.max_float_nodes)
    assert ptq.threads == recipe.gate.threads == 2  # a recipe evaluates on the machine's 2 cores
    prune = recipe.prune_config()
    assert prune == replace(PruneConfig(ratio=0.3), batch_size=32, synthetic_train=1000, synthetic_val=250)


def test_recipe_values_reach_the_library_configs():
    recipe = load_recipe(RECIPES / "quickstart.yaml", overrides=[
        "data.crop_scale=1.4", "student.no_kd=true", "student.kd.feature_weight=0.5", "precision=bf16",
        "quant.calib_count=7", "gate.max_abs_regression=0.5", "prune.importance=taylor", "quant.method=percentile",
        "prune.qat_epochs=3", "quant.reduce_range=true"])
    distill = recipe.distill_config(Path("out"), progress=False)
    assert distill.data.crop_scale == 1.4 and distill.student.train.precision == "bf16"
    assert distill.kd == recipe.prune_config().kd
    assert (distill.kd.enabled, distill.kd.feature_weight, distill.kd.output_weight) == (False, 0.5, 0.25)
    ptq = recipe.ptq_config("tflite")
    assert ptq.format == "tflite" and ptq.onnx.calib_count == 7 and ptq.gate.max_abs_regression == 0.5
    assert ptq.calib == "synthetic:128" and recipe.prune_config().importance == "taylor"
    assert recipe.prune_config().qat_epochs == 3
    assert recipe.ptq_config("onnx").onnx.reduce_range
    # quant.method is ONNX's calibration: a TFLite run keeps its converter's min/max (it refuses others)
    assert (ptq.onnx.method, recipe.ptq_config("onnx").onnx.method) == ("minmax", "percentile")


def test_apply_override_builds_nested_sections():
    data: dict = {"name": "x"}
    apply_override(data, "student.kd.output_weight=0.5")
    apply_override(data, "data.train=[a, b]")
    assert data == {"name": "x", "student": {"kd": {"output_weight": 0.5}}, "data": {"train": ["a", "b"]}}


def test_recipe_is_frozen_and_name_defaults_to_file_stem(tmp_path):
    recipe = load_recipe(_write(tmp_path, "seed: 3\n", name="my-recipe.yaml"))
    assert recipe.name == "my-recipe" and recipe.seed == 3
    with pytest.raises(Exception, match="frozen"):
        recipe.seed = 4  # type: ignore[misc]
    assert Recipe.model_validate(recipe.resolved()) == recipe


def test_missing_recipe_and_help(capsys):
    assert "recipe file not found" in _error(capsys, ["run", "nope.yaml"])
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    assert "--set KEY=VALUE" in capsys.readouterr().out


def test_schema_error_in_a_real_process_is_one_line_exit_2(tmp_path):
    path = _write(tmp_path, "name: t\nstudent:\n  epcohs: 3\n")
    proc = subprocess.run([sys.executable, "-m", "recipes", "run", str(path), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"python -m recipes: error: {path}: student.epcohs: unknown key "
                                   "(did you mean 'epochs'?)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("below", [False, True], ids=["file", "below-file"])
def test_run_out_on_a_file_is_one_line_exit_2_before_any_stage(tmp_path, capsys, below):
    taken = tmp_path / "taken"
    taken.write_text("occupied")
    out = taken / "run" if below else taken
    err = _error(capsys, ["run", str(RECIPES / "ci.yaml"), "--out", str(out)])
    assert err.startswith("python -m recipes: error: --out") and ("below the file" if below else "is a file") in err
    assert taken.read_text() == "occupied"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_input_hash_ignores_key_order_and_sees_values():
    assert hash_inputs({"a": 1, "b": [1, 2]}) == hash_inputs({"b": [1, 2], "a": 1})
    assert hash_inputs({"a": 1}) != hash_inputs({"a": 2})


def test_stage_record_is_invalid_when_an_output_changes(tmp_path):
    from recipes.cache import StageRecord

    store = StageStore(tmp_path)
    out = tmp_path / "work" / "x.bin"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"abc")
    assert store.begin("s", "h1") is False
    assert store.begin("s", "h1") is True  # interrupted run of the same inputs: resumable
    assert store.begin("s", "h2") is False
    store.finish(StageRecord("s", "h2", store.outputs([out]), 1.0))
    assert store.valid("s", "h2") is not None
    assert store.valid("s", "h1") is None
    out.write_bytes(b"abd")
    assert store.valid("s", "h2") is None
    assert not store.started_path("s").exists()


def test_check_reports_missing_manifest(tmp_path, capsys):
    assert "no manifest" in _error(capsys, ["check", str(tmp_path)])


def test_check_finds_tampered_and_stray_files(tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    (release / "a.onnx").write_bytes(b"model")
    (release / "stray.onnx").write_bytes(b"?")
    from landmarks.models.checkpoint import file_sha256

    entry = {"name": "onnx_fp32", "file": "release/a.onnx", "bytes": 5, "sha256": file_sha256(release / "a.onnx"),
             "verdict": "pass", "required": True, "sidecar": None}
    (tmp_path / "manifest.json").write_text(json.dumps({"status": "complete", "artifacts": [entry]}))
    _, problems = check_run(tmp_path)
    assert problems == ["release/stray.onnx is not a passing artifact of the manifest"]
    (release / "stray.onnx").unlink()
    (release / "a.onnx").write_bytes(b"modem")
    _, problems = check_run(tmp_path)
    assert problems == ["onnx_fp32: release/a.onnx sha256 does not match the manifest"]


def test_no_kd_baseline_has_the_kd_runs_steps_and_is_reused_only_when_identical(tmp_path):
    from distill.config import replace as replace_config
    from landmarks.metadata import ArtifactMetadata
    from landmarks.models import Checkpoint, create_model, save_checkpoint
    from recipes.stages import BASELINE_DATA, baseline_config, finished_baseline

    recipe = Recipe.model_validate({"name": "t", "data": {"unlabeled": "synthetic", "unlabeled_ratio": 0.3},
                                    "student": {"epochs": 14, "baseline": True}})
    kd_config = recipe.distill_config(tmp_path, progress=False)
    base = baseline_config(kd_config, tmp_path / "no_kd")
    assert base.data.unlabeled is None and base.student.train.epochs == 20  # 14 / (1 - 0.3)
    assert base.student.train.lr == kd_config.student.train.lr

    data = {"train": "sha-a", "val": None, "val_split": 0.1}
    assert not finished_baseline(base, data)  # nothing trained yet
    folder = Path(base.out)
    folder.mkdir()
    save_checkpoint(folder / "student.pt", Checkpoint("pfld025", {}, create_model("pfld025").state_dict(),
                                                      ArtifactMetadata(), extra={"config": base.to_dict()}))
    (folder / "metrics.json").write_text("{}")
    assert not finished_baseline(base, data)  # no record of the data it was trained on
    (folder / BASELINE_DATA).write_text(json.dumps(data))
    assert finished_baseline(replace_config(base, progress=True), data)
    assert not finished_baseline(base, {**data, "train": "sha-b"})  # same folders, other contents
    assert finished_baseline(replace_config(base, kd=replace_config(base.kd, feature_weight=16.0)), data)
    assert not finished_baseline(replace_config(base, kd=replace_config(base.kd, gt_weight=2.0)), data)
    longer = replace_config(base, student=replace_config(
        base.student, train=replace_config(base.student.train, epochs=21)))
    assert not finished_baseline(longer, data)
    (folder / "student.state.pt").write_bytes(b"")  # a run that did not finish
    assert not finished_baseline(base, data)
