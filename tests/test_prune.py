"""Pruning: targets are met, shapes kept, the checkpoint reloads without Torch-Pruning and
exports with parity, KD recovery uses the teacher, and bad input exits 2 with nothing written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.prune import PruneConfig, PruneReport, kept_channels, main, measure, prune_checkpoint
from landmarks.errors import ConfigError
from landmarks.metadata import ArtifactMetadata
from landmarks.models import Checkpoint, create_model, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = {"data": "synthetic:16", "val_data": "synthetic:8", "progress": False}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random-weight pfld025 student, a tiny FAN teacher, and a corrupt file."""
    root = tmp_path_factory.mktemp("prune_inputs")
    torch.manual_seed(0)
    student = create_model("pfld025")
    save_checkpoint(root / "student.pt", Checkpoint("pfld025", {"num_points": 68}, student.state_dict(),
                                                    ArtifactMetadata(source="pfld025")))
    teacher_config = {"width": 16, "input_size": 64, "num_points": 68}
    teacher = create_model("fan1", **teacher_config)
    save_checkpoint(root / "teacher.pt", Checkpoint("fan1", teacher_config, teacher.state_dict(),
                                                    ArtifactMetadata(input_size=64, source="fan1")))
    (root / "corrupt.pt").write_bytes(b"this is not a checkpoint")
    return {"student": root / "student.pt", "teacher": root / "teacher.pt", "corrupt": root / "corrupt.pt"}


@pytest.fixture(scope="module")
def pruned(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> PruneReport:
    """ratio 0.3 in two steps, one KD fine-tuning epoch after each."""
    torch.set_num_threads(1)
    config = PruneConfig(ratio=0.3, steps=2, finetune_epochs=1, batch_size=8)
    return prune_checkpoint(files["student"], config, teacher_checkpoint=files["teacher"],
                            out=tmp_path_factory.mktemp("prune_run") / "out", **TINY)


def _inference_params(model: torch.nn.Module) -> int:
    """Independent count: everything but the training-only pose branch."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("aux."))


def test_ratio_removes_about_that_share_of_parameters_and_macs(pruned: PruneReport) -> None:
    original = create_model("pfld025")
    rebuilt = load_checkpoint(pruned.checkpoint).build()
    assert pruned.before.params == _inference_params(original)
    assert pruned.after.params == _inference_params(rebuilt)
    assert 0.3 <= pruned.param_reduction <= 0.4  # at least the target; round_to makes it coarse
    assert 0.2 <= pruned.mac_reduction <= 0.4
    assert pruned.before.params > pruned.steps[1].params > pruned.after.params
    assert pruned.after.fp32_bytes < 0.75 * pruned.before.fp32_bytes
    assert pruned.after.checkpoint_bytes < pruned.before.checkpoint_bytes
    assert measure(rebuilt, 112).macs == pruned.after.macs


def test_forward_shapes_are_unchanged_and_widths_kernel_friendly(pruned: PruneReport) -> None:
    model = load_checkpoint(pruned.checkpoint).build()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        out = model(x)
        assert model.forward_landmarks(x).shape == (2, 68, 2)
    assert out.landmarks.shape == (2, 68, 2) and out.pose.shape == (2, 3)
    channels, default = model.channels, create_model("pfld025").channels
    assert out.features.shape[1] == channels["stage5"]
    hidden = [k for k in default if k.endswith("hidden")]
    assert all(channels[k] < default[k] and channels[k] % pruned.round_to == 0 for k in hidden)
    # pfld025's bottlenecks (<= 32 channels) and the training-only pose branch keep their widths
    assert all(channels[k] == default[k] for k in default if k not in hidden)


def test_bottlenecks_and_the_multiscale_head_stay_consistent_when_pruned(files: dict[str, Path]) -> None:
    """With nothing protected, DepGraph cuts residual stages, the stem's depthwise conv, the head's
    concatenation and the pose branch input together, and the model still runs and rebuilds."""
    from distill.prune import Pruner

    model = load_checkpoint(files["student"]).build()
    Pruner(model, 112, ("channel_ratio", 0.5), round_to=4, min_channels=0).step()
    channels, default = model.channels, create_model("pfld025").channels
    assert [channels[k] for k in ("conv1", "stage3", "stage5", "conv8")] == [8, 8, 16, 16]
    assert channels["stage6"] == default["stage6"] and channels["aux.conv1"] == default["aux.conv1"]
    x = torch.randn(2, 3, 112, 112)
    rebuilt = create_model("pfld025", **model.arch_config).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x).landmarks, model.eval()(x).landmarks)
        assert model(x).pose.shape == (2, 3)


def _hidden(stages34: int, stage5: int, stage6: int) -> dict[str, int]:
    """Expansion widths of pfld025's inverted residuals: stages 3-4, stage 5, stage 6."""
    widths = dict.fromkeys([f"stage3.{i}.hidden" for i in range(5)] + ["stage4.0.hidden"], stages34)
    return widths | dict.fromkeys([f"stage5.{i}.hidden" for i in range(6)], stage5) | {"stage6.0.hidden": stage6}


@pytest.mark.parametrize(
    ("target", "options", "sparsities", "changed"),
    [
        (("params_budget", 200_000), {}, (0.18756103515625, 0.35938116535544395),
         _hidden(80, 320, 160)),
        (("flops_budget", 50_000_000), {}, (0.18756103515625, 0.4375308118760586),
         _hidden(64, 288, 144)),
        (("ratio", 0.4), {"round_to": 4, "min_channels": 0}, (0.12506103515625, 0.2500218003988266),
         {"conv1": 12, "conv7": 4, "conv8": 24, "stage3": 12, "stage4": 24, "stage5": 24}
         | _hidden(96, 384, 192)),
    ],
)
def test_budget_search_chooses_the_same_widths_as_pruning_a_copy_per_trial(
        target: tuple[str, float], options: dict, sparsities: tuple[float, float], changed: dict[str, int]) -> None:
    """Pinned from the search that pruned a deep copy (and rebuilt the DepGraph) for every trial."""
    from distill.prune import Pruner

    torch.manual_seed(0)
    model = create_model("pfld025")
    pruner = Pruner(model, 112, target, steps=2, **options)
    assert (pruner.step(), pruner.step()) == pytest.approx(sparsities, abs=0, rel=0)
    default = create_model("pfld025").channels
    assert {k: v for k, v in model.channels.items() if v != default[k]} == changed


def test_kd_recovery_uses_the_teacher_and_reports_each_step(pruned: PruneReport) -> None:
    assert pruned.kd and [s.step for s in pruned.steps] == [0, 1, 2]
    with open(pruned.checkpoint.parent / "step1_log.csv") as f:
        columns = next(csv.reader(f))
    assert {"loss_gt", "loss_kd_output", "loss_kd_feature", "val_nme_io"} <= set(columns)
    saved = json.loads(pruned.report_path.read_text())
    assert saved["steps"][-1]["params"] == pruned.after.params and saved["kd"] is True
    assert all(s.nme_io is not None and s.nme_io_pruned is not None for s in pruned.steps)
    assert load_checkpoint(pruned.checkpoint).extra["pruning"]["params"][-1] == pruned.after.params


def test_recovery_with_a_weight_average_ships_the_average_it_validated(files: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """ema_decay: every epoch validates the weight average, so pruned.pt must hold it, not the last weights."""
    from distill.pipeline import Validator
    from landmarks.data.specs import VAL_SEED_OFFSET

    config = PruneConfig(ratio=0.3, finetune_epochs=2, batch_size=8, lr=0.05, ema_decay=0.9)
    report = prune_checkpoint(files["student"], config, out=tmp_path / "out", seed=0, **TINY)
    saved = load_checkpoint(report.checkpoint)
    validator = Validator(TINY["val_data"], saved.metadata.crop_scale, VAL_SEED_OFFSET, config.synthetic_val)
    assert validator(saved.build(), saved.metadata)["nme_io"] == pytest.approx(report.steps[-1].nme_io, abs=1e-4)
    with pytest.raises(ConfigError, match=r"ema_decay must be in \[0, 1\)"):
        PruneConfig(ratio=0.3, ema_decay=1.0)


def test_pruned_checkpoint_reloads_in_a_fresh_process_without_torch_pruning(pruned: PruneReport,
                                                                              tmp_path: Path) -> None:
    model = load_checkpoint(pruned.checkpoint).build()
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        expected = model.forward_landmarks(x).numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import torch
        from landmarks.models import load_checkpoint
        model = load_checkpoint({str(pruned.checkpoint)!r}).build()
        x = torch.from_numpy(np.load({str(tmp_path / "x.npy")!r}))
        with torch.no_grad():
            got = model.forward_landmarks(x).numpy()
        np.testing.assert_allclose(got, np.load({str(tmp_path / "expected.npy")!r}), atol=1e-5)
        assert "torch_pruning" not in sys.modules, "loading a pruned checkpoint imported torch_pruning"
        print("ok", model.channels["stage5.0.hidden"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", str(model.channels["stage5.0.hidden"])]


def test_pruned_checkpoint_exports_to_onnx_with_parity_and_is_smaller(pruned: PruneReport, files: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    from export import ExportConfig, export_checkpoint

    config = ExportConfig(formats=("onnx",), parity_data="synthetic", parity_count=8, num_threads=1)
    (small,) = export_checkpoint(pruned.checkpoint, tmp_path / "pruned", config)
    (full,) = export_checkpoint(files["student"], tmp_path / "full", config)
    assert small.passed and small.parity.max_abs_diff < config.parity_bound_onnx
    assert small.bytes < 0.8 * full.bytes


@pytest.mark.parametrize(
    ("target", "importance"),
    [({"params_budget": 200_000}, "taylor"), ({"flops_budget": 50_000_000}, "bn"), ({"channel_ratio": 0.5}, "l2")],
)
def test_budgets_and_channel_ratio_are_met_step_by_step(files: dict[str, Path], tmp_path: Path, target: dict,
                                                        importance: str) -> None:
    config = PruneConfig(**target, importance=importance, steps=2, finetune_epochs=0, batch_size=8)
    report = prune_checkpoint(files["student"], config, out=tmp_path / "out", **TINY)
    params, macs = [s.params for s in report.steps], [s.macs for s in report.steps]
    assert params[0] > params[1] > params[2] and macs[0] > macs[1] > macs[2]
    if "params_budget" in target:
        assert 0.85 * 200_000 <= params[-1] <= 200_000
    elif "flops_budget" in target:
        assert 0.85 * 50_000_000 <= macs[-1] <= 50_000_000
    else:
        assert report.after.channels["stage5.0.hidden"] == 256 and report.after.channels["stage3.0.hidden"] == 64
    assert report.after.nme_io == report.after.nme_io_pruned  # no fine-tuning asked for
    assert load_checkpoint(report.checkpoint).build().channels == report.after.channels


@pytest.mark.parametrize(
    ("width", "sparsity", "round_to", "kept"),
    [(128, 0.0, 4, 128), (128, 0.5, 8, 64), (16, 0.2, 4, 12), (16, 0.1, 4, 16), (16, 0.99, 4, 4),
     (20, 0.0, 8, 20), (6, 0.0, 4, 6), (512, 0.3, 8, 360)],
)
def test_kept_channels_rounds_to_the_nearest_multiple_within_bounds(width: int, sparsity: float, round_to: int,
                                                                    kept: int) -> None:
    assert kept_channels(width, sparsity, round_to) == kept


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.5}, r"ratio must be in \(0, 1\)"),
        ({"ratio": 0.0}, r"ratio must be in \(0, 1\)"),
        ({"channel_ratio": 1.0}, r"channel_ratio must be in \(0, 1\)"),
        ({}, "exactly one pruning target"),
        ({"ratio": 0.3, "params_budget": 1000}, "exactly one pruning target"),
        ({"params_budget": 0}, "params_budget must be a positive count"),
        ({"ratio": 0.3, "importance": "l3"}, "importance must be one of"),
        ({"ratio": 0.3, "steps": 0}, "steps must be at least 1"),
        ({"ratio": 0.3, "finetune_epochs": -1}, "finetune_epochs must be >= 0"),
        ({"ratio": 0.3, "round_to": 0}, "round_to must be at least 1"),
        ({"ratio": 0.3, "device": "tpu"}, "device must be one of"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PruneConfig(**kwargs)


def test_a_budget_already_met_is_rejected_before_writing(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to prune"):
        config = PruneConfig(params_budget=10**9, finetune_epochs=0)
        prune_checkpoint(files["student"], config, out=tmp_path / "out", **TINY)
    assert not (tmp_path / "out").exists()


def test_cli_prunes_and_prints_a_summary(files: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main([str(files["student"]), "--channel-ratio", "0.25", "--finetune-epochs", "0", "--data", "synthetic:8",
               "--val-data", "synthetic:8", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    pruned = load_checkpoint(out / "pruned.pt").build()
    assert pruned.channels["stage5.0.hidden"] < create_model("pfld025").channels["stage5.0.hidden"]
    assert "fewer parameters" in printed and "step 1/1" in printed


def test_cli_out_below_a_file_fails_before_loading_anything(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("occupied")
    cmd = [sys.executable, "-m", "distill.prune", str(tmp_path / "missing.pt"), "--ratio", "0.3",
           "--out", str(taken / "run"), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # the --out check runs first: the (missing) checkpoint is never looked at
    assert len(lines) == 1 and f"is below the file {taken}" in lines[0], lines
    assert taken.read_text() == "occupied"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("--ratio 1.5", "ratio must be in (0, 1)"),
        ("--ratio 0", "ratio must be in (0, 1)"),
        ("--params-budget 10", "cannot be reached"),
        ("--ratio 0.3 --student-is-teacher", "not a PFLD student"),
        ("--ratio 0.3 --missing", "checkpoint not found"),
        ("--ratio 0.3 --corrupt", "not a readable checkpoint"),
        ("", "exactly one pruning target"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(files: dict[str, Path], tmp_path: Path,
                                                                case: str, message: str) -> None:
    flags = case.split()
    checkpoint = files["student"]
    if "--student-is-teacher" in flags:
        checkpoint = files["teacher"]
    elif "--missing" in flags:
        checkpoint = tmp_path / "missing.pt"
    elif "--corrupt" in flags:
        checkpoint = files["corrupt"]
    flags = [f for f in flags if f not in ("--student-is-teacher", "--missing", "--corrupt")]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "distill.prune", str(checkpoint), *flags, "--finetune-epochs", "0",
           "--data", "synthetic:8", "--val-data", "synthetic:8", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=ONE_THREAD)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("python -m distill.prune: error:")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pfld025 student trained a little on synthetic faces: pruning it without recovery costs accuracy."""
    from distill.config import DataConfig, DistillConfig, KDConfig, StudentConfig, TrainConfig
    from distill.pipeline import run_distillation

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("trained")
    config = DistillConfig(data=DataConfig(synthetic_train=256, synthetic_val=32),
                           student=StudentConfig(train=TrainConfig(epochs=4, batch_size=16, lr=3e-3, warmup_epochs=0,
                                                                   ema_decay=0.0)),
                           kd=KDConfig(enabled=False), out=str(out), progress=False)
    return run_distillation(config, no_kd=True).student_path


def _auto(student: Path, tmp_path: Path, name: str, budget: float) -> PruneReport:
    """Toward 60 % of the parameters in 3 steps, no recovery to speak of (lr 1e-12): each step loses more."""
    config = PruneConfig(ratio=0.6, steps=3, budget=budget, finetune_epochs=1, batch_size=8, lr=1e-12)
    return prune_checkpoint(student, config, out=tmp_path / name, **TINY)


def test_accuracy_aware_pruning_keeps_the_largest_ratio_within_its_budget(trained: Path, tmp_path: Path) -> None:
    everything = _auto(trained, tmp_path, "all", budget=1.0)
    first = everything.steps[0].nme_io
    rises = [(s.nme_io - first) / first for s in everything.steps[1:]]
    assert [s.step for s in everything.tried] == [1, 2, 3] and len(rises) == 3
    assert 0 < rises[0] < rises[1] < rises[2]  # the more is pruned, the more is lost
    budget = (rises[0] + rises[1]) / 2  # step 1 is within it, step 2 is not
    report = _auto(trained, tmp_path, "budget", budget=budget)
    assert [s.step for s in report.steps] == [0, 1] and [s.step for s in report.tried] == [1, 2]
    assert report.steps[1].nme_io == pytest.approx(everything.steps[1].nme_io)  # the same step, deterministic
    saved = load_checkpoint(report.checkpoint).build()
    assert saved.channels == report.steps[-1].channels  # the shipped model is the last step kept
    assert report.budget == budget and json.loads(report.report_path.read_text())["budget"] == budget
    assert not list((tmp_path / "budget").glob("step[0-9].pt"))  # the resume points are spent


def test_accuracy_aware_pruning_with_no_ratio_in_budget_prunes_nothing(trained: Path, tmp_path: Path) -> None:
    from distill.prune.run import BudgetError

    with pytest.raises(BudgetError, match="no pruning ratio stays within it"):
        _auto(trained, tmp_path, "none", budget=0.0)
    assert not (tmp_path / "none" / "pruned.pt").exists()
    proc = subprocess.run([sys.executable, "-m", "distill.prune", str(trained), "--ratio", "0.6", "--steps", "3",
                           "--budget", "0", "--lr", "1e-12", "--finetune-epochs", "1", "--batch-size", "8",
                           "--data", "synthetic:16", "--val-data", "synthetic:8", "--out", str(tmp_path / "cli"),
                           "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("python -m distill.prune: rejected: pruning step 1")
    assert not (tmp_path / "cli" / "pruned.pt").exists()
