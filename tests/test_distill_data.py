"""Distillation data and training features: the image cache, the photo-level validation split,
unlabeled faces (no ground-truth loss), the weight average that is saved, mixed precision."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from distill.config import DataConfig, DistillConfig, KDConfig, StudentConfig, TeacherConfig, TrainConfig
from distill.engine import Trainer, WeightAverage, resolve_precision
from distill.pipeline import run_distillation
from distill.tasks import StudentTask
from landmarks.coords import landmark_box
from landmarks.data import AugmentConfig, open_dataset, read_image
from landmarks.data.cache import ImageCache, cache_image
from landmarks.data.split import Holdout, group_of
from landmarks.data.unlabeled import MixedFaceDataset, UnlabeledFaceDataset, scan_unlabeled
from landmarks.errors import ConfigError, DataError
from landmarks.metadata import ArtifactMetadata
from landmarks.models import create_model, load_checkpoint
from landmarks.models.losses import wing_error
from tests.conftest import grid_points, render_blobs
from tests.helpers import write_pts, write_pts_dataset

REPO = Path(__file__).resolve().parents[1]


def _no_validation(_: torch.nn.Module) -> dict[str, float]:
    return {}


# -- cache ------------------------------------------------------------------------------------------


def test_cache_returns_the_decoded_pixels(pts_folder: Path) -> None:
    """A face whose crop needs all its pixels is cached as decoded, byte for byte; the samples
    of a cached dataset are then identical to those of one that decodes every time."""
    plain = open_dataset(str(pts_folder), input_size=224, augment=AugmentConfig(), seed=2)
    cached = open_dataset(str(pts_folder), input_size=224, augment=AugmentConfig(), seed=2, cache_images=True)
    for i, record in enumerate(cached.records):
        item = cached.cache[i]
        assert (item.scale_x, item.scale_y) == (1.0, 1.0)
        np.testing.assert_array_equal(item.pixels, read_image(record.image_path))
        a, b = plain[i], cached[i]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["points"], b["points"])


def test_cache_downscales_only_spare_pixels(pts_folder: Path) -> None:
    """For a small crop, the cache keeps the INTER_AREA-downscaled image and maps points exactly."""
    ds = open_dataset(str(pts_folder), input_size=32, cache_images=True)
    record, item = ds.records[0], ds.cache[0]
    image = read_image(record.image_path)
    h, w = item.pixels.shape[:2]
    assert w < image.shape[1] and h < image.shape[0]
    scale = item.scale_x
    assert item.scale_y == scale < 1
    np.testing.assert_array_equal(item.pixels, cv2.resize(image, (0, 0), fx=scale, fy=scale,
                                                          interpolation=cv2.INTER_AREA))
    np.testing.assert_allclose(item.to_cached(record.points), record.points * scale)
    crop_side = 1.25 * np.ptp(item.to_cached(record.points), axis=0).max()
    assert crop_side >= 1.49 * 32  # still 1.5 x the crop's resolution
    plain = open_dataset(str(pts_folder), input_size=32)
    np.testing.assert_allclose(ds[0]["points"], plain[0]["points"], atol=1e-5)


def test_cache_decodes_each_photo_once(tmp_path: Path) -> None:
    calls: list[Path] = []
    image = np.zeros((100, 100, 3), np.uint8)

    def decode(path: Path) -> np.ndarray:
        calls.append(path)
        return image

    box = np.array([20.0, 20.0, 80.0, 80.0])
    cache = ImageCache([tmp_path / "a.jpg", tmp_path / "a.jpg", tmp_path / "b.jpg"], [box] * 3, 1.25, 112,
                       decode=decode)
    assert len(cache) == 3 and calls == [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    assert not cache_image(image, box, 1.25, 112).pixels.flags.writeable


# -- validation split -----------------------------------------------------------------------------


def test_split_keeps_photos_and_people_together() -> None:
    assert group_of("helen/trainset/100032540_1.jpg") == group_of("helen/trainset/100032540_2.jpg")
    assert group_of("lfpw/trainset/image_0001.png") != group_of("lfpw/trainset/image_0002.png")
    assert group_of("t_Abdel_Aziz_00.jpg") == group_of("t_Abdel_Aziz_17.jpg")
    keys = [f"set/photo{p}_{f}.jpg" for p in range(300) for f in (1, 2)]
    val = Holdout(0.2, "val", seed=0)
    train = Holdout(0.2, "train", seed=0)
    chosen_val = set(val.select(keys, keys))
    chosen_train = set(train.select(keys, keys))
    assert chosen_val.isdisjoint(chosen_train) and len(chosen_val) + len(chosen_train) == len(keys)
    assert 0.12 < len(chosen_val) / len(keys) < 0.28
    for p in range(300):  # both faces of a photo land on the same side
        assert (f"set/photo{p}_1.jpg" in chosen_val) == (f"set/photo{p}_2.jpg" in chosen_val)
    assert chosen_val != set(Holdout(0.2, "val", seed=1).select(keys, keys))


def test_split_reaches_open_dataset(tmp_path: Path) -> None:
    root = write_pts_dataset(tmp_path / "faces", count=40)
    train = open_dataset(str(root), input_size=32, holdout=Holdout(0.3, "train"))
    val = open_dataset(str(root), input_size=32, holdout=Holdout(0.3, "val"))
    assert len(train) + len(val) == 40 and set(train.keys).isdisjoint(val.keys)
    with pytest.raises(DataError, match="leaves no val faces"):
        open_dataset(str(root), input_size=32, holdout=Holdout(0.001, "val"))


# -- unlabeled faces --------------------------------------------------------------------------------


def _unlabeled_folder(root: Path, count: int = 3) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        points = grid_points(seed=i)
        cv2.imwrite(str(root / f"u_{i}.jpg"), render_blobs(points, 320, 300))
        write_pts(root / f"u_{i}.pts", points)
    return root


def test_unlabeled_faces_come_from_their_pts_box_and_carry_nan_points(tmp_path: Path) -> None:
    root = _unlabeled_folder(tmp_path / "u")
    noise = np.random.default_rng(0).integers(0, 255, (60, 80), dtype=np.uint8)
    cv2.imwrite(str(root / "grey_noise.png"), noise)  # grey, no .pts, no face: skipped with a reason
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    scan = scan_unlabeled(root)
    assert len(scan.records) == 3 and scan.images == 5
    assert sorted(b.path.name for b in scan.skipped) == ["broken.jpg", "grey_noise.png"]
    assert any(b.reason == "no face found" for b in scan.skipped)
    np.testing.assert_allclose(scan.records[0].box, landmark_box(grid_points(seed=0)), atol=1e-3)
    ds = UnlabeledFaceDataset(scan.records, 68, input_size=64, augment=AugmentConfig(), teacher_size=80)
    sample = ds[0]
    assert sample["labeled"] is False and np.isnan(sample["points"]).all()
    assert sample["image"].shape == (64, 64, 3) and sample["teacher_image"].shape == (80, 80, 3)


def test_mixed_dataset_holds_the_ratio_and_walks_the_pool(tmp_path: Path) -> None:
    labeled = open_dataset(str(write_pts_dataset(tmp_path / "l", count=12)), input_size=32)
    scan = scan_unlabeled(_unlabeled_folder(tmp_path / "u", count=5))
    unlabeled = UnlabeledFaceDataset(scan.records, 68, input_size=32)
    mixed = MixedFaceDataset(labeled, unlabeled, ratio=0.25)
    assert len(mixed) == 16 and mixed.num_unlabeled == 4
    flags = [mixed[i]["labeled"] for i in range(len(mixed))]
    assert flags.count(False) == 4
    seen = set()
    for epoch in range(5):  # 4 per epoch from a pool of 5: every face is drawn within two epochs
        mixed.set_epoch(epoch)
        seen |= {mixed[i]["key"] for i in range(12, 16)}
    assert seen == set(unlabeled.keys)


def test_unlabeled_faces_carry_no_ground_truth_loss() -> None:
    """Unlabeled faces whose points hold garbage must give exactly the loss they give with NaN
    points: only the teacher's targets reach them. Without the mask the garbage would count."""
    torch.manual_seed(0)
    teacher = create_model("fan1", width=16, input_size=64).eval()
    student = create_model("pfld025").eval()  # eval: batch norm does not mix the faces
    task = StudentTask(student, 112, ArtifactMetadata(), KDConfig(), _no_validation, teacher=teacher,
                       teacher_size=64)
    loader = DataLoader(open_dataset("synthetic:4", input_size=112, teacher_size=64), batch_size=4)
    batch = next(iter(loader))
    batch["labeled"] = torch.tensor([True, True, False, False])
    garbage = dict(batch, points=batch["points"].clone())
    garbage["points"][2:] = torch.rand(2, 68, 2) * 5
    nan = dict(batch, points=batch["points"].clone())
    nan["points"][2:] = float("nan")
    loss_garbage, loss_nan = task.loss(garbage), task.loss(nan)
    assert torch.allclose(loss_garbage["gt"], loss_nan["gt"]) and torch.allclose(loss_garbage["total"],
                                                                                    loss_nan["total"])
    assert not torch.allclose(task.loss(dict(garbage, labeled=torch.ones(4, dtype=torch.bool)))["gt"],
                              loss_nan["gt"])
    only_unlabeled = task.loss(dict(nan, labeled=torch.zeros(4, dtype=torch.bool)))
    assert "gt" not in only_unlabeled and only_unlabeled["kd_output"] > 0
    only_unlabeled["total"].backward()
    assert student.fc.weight.grad is not None and student.fc.weight.grad.abs().sum() > 0


def _distill_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "distill", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


@pytest.mark.parametrize("case", ["empty", "no_faces", "missing"])
def test_unlabeled_bad_folders_exit_2_with_one_line(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "unlabeled"
    if case != "missing":
        folder.mkdir()
    if case == "no_faces":
        cv2.imwrite(str(folder / "noise.png"), np.random.default_rng(0).integers(0, 255, (50, 50, 3), np.uint8))
        (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "run"
    proc = _distill_cli("--data", "synthetic:8", "--unlabeled", str(folder), "--epochs", "1", "--teacher-epochs",
                        "1", "--out", str(out), "--no-progress", "--teacher-width", "8", "--teacher-input-size", "64")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--unlabeled" in lines[0], proc.stderr
    assert not out.exists()  # validated before anything was created or trained


def test_distill_refuses_bad_out_and_resume_before_creating_anything(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    proc = _distill_cli("--out", str(afile / "run"), "--epochs", "1")
    assert proc.returncode == 2 and "is below the file" in proc.stderr
    missing = tmp_path / "nothing_here"
    proc = _distill_cli("--out", str(missing), "--resume")
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr and not missing.exists()


# -- weight average, precision, wing --------------------------------------------------------------


def test_the_weight_average_is_what_gets_saved(tmp_path: Path) -> None:
    cfg = DistillConfig(
        data=DataConfig(train="synthetic:16", synthetic_val=8),
        teacher=TeacherConfig(width=8, input_size=64),
        student=StudentConfig(train=TrainConfig(epochs=2, batch_size=8, lr=3e-3, ema_decay=0.5, warmup_epochs=0)),
        kd=KDConfig(enabled=False),
        out=str(tmp_path / "run"),
        progress=False,
    )
    result = run_distillation(cfg, no_kd=True)
    saved = load_checkpoint(result.student_path)
    state = torch.load(tmp_path / "run" / "student.state.pt", weights_only=True)
    averaged = {k.removeprefix("student."): v for k, v in state["average"]["module"].items()}
    raw = {k.removeprefix("student."): v for k, v in state["modules"].items()}
    assert saved.extra["weights"] == "ema"
    for key, value in saved.state_dict.items():
        torch.testing.assert_close(value, averaged[key])
    assert any(not torch.equal(saved.state_dict[k], raw[k]) for k in saved.state_dict if "weight" in k)


def test_weight_average_follows_the_weights() -> None:
    model = torch.nn.Linear(2, 2)
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = average.module.weight.clone()
    average.update(model)
    first_decay = 2 / 11  # the warm-up decay (1 + n) / (10 + n) at n = 1
    torch.testing.assert_close(average.module.weight, first_decay * before + (1 - first_decay) * model.weight)


def test_bf16_training_steps_keep_fp32_weights_and_coordinates(tmp_path: Path) -> None:
    """bf16 autocast where the CPU has it (``auto``); elsewhere ``bf16`` is refused in one line, and the
    same steps run with bf16 autocast forced (emulated, slower), so the code path is tested on every CPU."""
    assert resolve_precision("fp32", torch.device("cpu")) is None
    native = resolve_precision("auto", torch.device("cpu")) is not None
    if not native:
        with pytest.raises(ConfigError, match="no bf16 support"):
            resolve_precision("bf16", torch.device("cpu"))
    student = create_model("pfld025")
    task = StudentTask(student, 112, ArtifactMetadata(), KDConfig(enabled=False), _no_validation)
    dataset = open_dataset("synthetic:16", input_size=112, seed=3)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=3e-3, warmup_epochs=0, precision="bf16" if native else "fp32")
    trainer = Trainer("student", task, dataset, cfg, tmp_path, progress=False)
    trainer.autocast_dtype = torch.bfloat16
    result = trainer.fit()
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert np.isfinite(result.history[-1].losses["total"])
    assert student.fc.weight.is_contiguous() and student.conv1[0].weight.is_contiguous(
        memory_format=torch.channels_last)


def test_wing_error_is_log_then_linear() -> None:
    px = torch.tensor([0.0, 1.0, 9.99, 10.0, 30.0]) / 112
    error = (wing_error(px, 112) * 112).tolist()
    assert error[0] == 0
    assert error[1] == pytest.approx(10 * np.log1p(0.5), rel=1e-5)
    assert error[4] - error[3] == pytest.approx(20.0, rel=1e-4)  # slope 1 above the width
    assert error[3] == pytest.approx(error[2], abs=0.05)  # continuous at the width
