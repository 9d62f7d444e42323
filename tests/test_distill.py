"""Distillation: training lowers the loss, resume is exact, DDP ranks agree, bad input exits 2."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.__main__ import main
from distill.config import KDConfig, TeacherConfig, TrainConfig
from distill.engine import Trainer, lr_at
from distill.tasks import StudentTask, TeacherTask
from landmarks.data import AugmentConfig, open_dataset
from landmarks.metadata import ArtifactMetadata
from landmarks.models import Checkpoint, create_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = ["--synthetic-train", "32", "--synthetic-val", "16", "--batch-size", "8", "--workers", "0", "--no-progress"]


def _no_validation(model: torch.nn.Module) -> dict[str, float]:
    return {}


def _student_trainer(run_dir: Path, dataset, epochs: int = 2) -> tuple[Trainer, torch.nn.Module]:
    torch.manual_seed(0)
    student = create_model("pfld025")
    meta = ArtifactMetadata(input_size=112)
    task = StudentTask(student, 112, meta, KDConfig(enabled=False), _no_validation)
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-3, warmup_epochs=0)
    return Trainer("student", task, dataset, cfg, run_dir, seed=0, progress=False), student


class _InterruptAt(torch.utils.data.Dataset):
    """Delivers a real SIGINT to this process when the ``at``-th item is fetched."""

    def __init__(self, inner, at: int) -> None:
        self.inner, self.at, self.fetched = inner, at, 0

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __getitem__(self, i: int):
        self.fetched += 1
        if self.fetched == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner[i]


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] < 0.05


def test_student_training_lowers_loss(tmp_path):
    dataset = open_dataset("synthetic:16", input_size=112, seed=3)
    trainer, _ = _student_trainer(tmp_path, dataset, epochs=8)
    trainer.cfg = TrainConfig(epochs=8, batch_size=8, lr=3e-3, warmup_epochs=0)
    result = trainer.fit()
    first, last = result.history[0].losses["total"], result.history[-1].losses["total"]
    assert last < 0.5 * first, (first, last)


def test_teacher_task_lowers_heatmap_loss(tmp_path):
    torch.manual_seed(0)
    teacher = create_model("fan1", width=16, input_size=64)
    meta = ArtifactMetadata(input_size=64)
    cfg = TeacherConfig(arch="fan1", width=16, input_size=64)
    task = TeacherTask(teacher, cfg, meta, _no_validation)
    dataset = open_dataset("synthetic:16", input_size=64, seed=1)
    train = TrainConfig(epochs=6, batch_size=8, lr=3e-3, warmup_epochs=0)
    result = Trainer("teacher", task, dataset, train, tmp_path, progress=False).fit()
    assert result.history[-1].losses["total"] < result.history[0].losses["total"]


def test_kd_student_uses_teacher_terms(tmp_path):
    torch.manual_seed(0)
    teacher = create_model("fan1", width=16, input_size=128).eval()
    student = create_model("pfld025")
    task = StudentTask(student, 112, ArtifactMetadata(), KDConfig(), _no_validation, teacher=teacher, teacher_size=128)
    batch = next(iter(torch.utils.data.DataLoader(open_dataset("synthetic:4", input_size=128), batch_size=4)))
    terms = task.loss(batch)
    assert {"gt", "kd_output", "kd_feature", "total"} <= set(terms)
    terms["total"].backward()
    assert task.modules["adapter"].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_resume_after_sigint_is_exact(tmp_path):
    dataset = open_dataset("synthetic:24", input_size=112, augment=AugmentConfig(), seed=5)
    straight, straight_model = _student_trainer(tmp_path / "straight", dataset)
    straight.fit()
    expected = _weights(straight_model)

    # 3 steps of 8 faces per epoch; the 30th fetched face lies inside the second epoch.
    interrupted, _ = _student_trainer(tmp_path / "resumed", _InterruptAt(dataset, at=30))
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert interrupted.state_path.is_file()

    resumed, resumed_model = _student_trainer(tmp_path / "resumed", dataset)
    resumed.fit(resume=True)
    got = _weights(resumed_model)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def test_cli_trains_and_reuses_cached_teacher(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY, "--epochs", "1", "--teacher-epochs", "1", "--teacher-width", "16", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["student"]["kd"] is True and np.isfinite(metrics["student"]["nme_io"])
    assert {"student.pt", "teacher.pt", "student_log.csv", "teacher_log.csv"} <= {p.name for p in out.iterdir()}
    assert "teacher fan1 (trained)" in capsys.readouterr().out

    assert main(args) == 0  # same teacher config: the cached teacher is reused, not retrained
    assert "teacher fan1 (cached)" in capsys.readouterr().out


def _exit_code_and_error(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--teacher", "resnet"], "unknown --teacher 'resnet'; valid: fan, fan1"),
        (["--student", "mobilenet"], "unknown --student 'mobilenet'; valid: pfld025"),
        (["--epochs", "0"], "epochs must be positive"),
        (["--batch-size", "-4"], "batch_size must be positive"),
    ],
)
def test_cli_rejects_bad_flags(tmp_path, capsys, args, message):
    code, err = _exit_code_and_error([*args, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_rejects_bad_teacher_checkpoints(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(os.urandom(256))
    code, err = _exit_code_and_error(
        ["--teacher-checkpoint", str(corrupt), *TINY, "--out", str(tmp_path / "a")], capsys
    )
    assert code == 2 and "not a readable checkpoint" in err

    student_ckpt = tmp_path / "student.pt"
    model = create_model("pfld025")
    save_checkpoint(student_ckpt, Checkpoint("pfld025", {}, model.state_dict(), ArtifactMetadata()))
    code, err = _exit_code_and_error(
        ["--teacher-checkpoint", str(student_ckpt), *TINY, "--out", str(tmp_path / "b")], capsys
    )
    assert code == 2 and "not a FAN model" in err

    fan98 = tmp_path / "fan98.pt"
    teacher = create_model("fan1", width=16, input_size=128, num_points=98)
    save_checkpoint(
        fan98,
        Checkpoint(
            "fan1",
            {"width": 16, "input_size": 128, "num_points": 98},
            teacher.state_dict(),
            ArtifactMetadata(num_points=98, input_size=128),
        ),
    )
    code, err = _exit_code_and_error(["--teacher-checkpoint", str(fan98), *TINY, "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and "teacher predicts 98 points but the data has 68" in err


def test_cli_rejects_empty_data_and_nothing_to_resume(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _exit_code_and_error(
        ["--data", str(empty), "--val-data", str(empty), "--out", str(tmp_path / "a")], capsys
    )
    assert code == 2 and str(empty) in err
    code, err = _exit_code_and_error(["--resume", "--out", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "nothing to resume" in err


def test_cli_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "distill", "--student", "pfld999", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "unknown --student 'pfld999'" in proc.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "-m",
        "distill",
        "--no-kd",
        *TINY,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    checksums = json.loads((out / "metrics.json").read_text())["weight_checksums"]
    assert len(checksums) == 2 and checksums[0] == checksums[1]


def test_strided_depthwise_layers_run_in_fp32_under_bf16_autocast():
    from distill.tasks import strided_depthwise_in_fp32

    torch.manual_seed(0)
    model = create_model("pfld025").eval()
    x = torch.randn(2, 3, 112, 112)
    before = model(x).landmarks
    assert strided_depthwise_in_fp32(model) == 2  # PFLD's two stride-2 depthwise layers
    patched = [m for m in model.modules() if "forward" in vars(m)]
    assert all(m.stride == (2, 2) and m.groups == m.in_channels for m in patched)
    torch.testing.assert_close(model(x).landmarks, before, rtol=0, atol=0)  # fp32: the same numbers
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert patched[0](torch.randn(1, patched[0].in_channels, 8, 8)).dtype == torch.float32
        assert model.conv1[0](x).dtype == torch.bfloat16  # every other layer keeps bf16
