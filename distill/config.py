"""Typed, validated configuration of a distillation run; checked once, at the edge."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from landmarks.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
HEATMAP_LOSSES = ("awing", "mse")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization budget shared by the teacher and the student."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("lr", self.lr)
        _non_negative("weight_decay", self.weight_decay)
        _non_negative("warmup_epochs", self.warmup_epochs)


@dataclass(frozen=True)
class TeacherConfig:
    """The FAN heatmap teacher. The CPU default (1 stack, width 64, 128 px -> 32x32 heatmaps,
    142 MMACs) trains on 300-W in about half an hour on 2 cores and is cheap enough to run on every
    augmented view during distillation; a stronger one comes from ``checkpoint``."""

    arch: str = "fan1"
    width: int = 64
    input_size: int = 128
    heatmap_sigma: float = 1.0
    loss: str = "awing"
    checkpoint: str | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, batch_size=16, lr=2e-3))

    def __post_init__(self) -> None:
        if not self.arch.startswith("fan"):
            raise ConfigError(f"teacher must be a FAN model (fan1, fan2, fan4), got {self.arch!r}")
        _positive("teacher width", self.width)
        if self.input_size % 4:
            raise ConfigError(f"teacher input_size must be a multiple of 4, got {self.input_size}")
        _positive("heatmap_sigma", self.heatmap_sigma)
        if self.loss not in HEATMAP_LOSSES:
            raise ConfigError(f"teacher loss must be one of {HEATMAP_LOSSES}, got {self.loss!r}")


@dataclass(frozen=True)
class KDConfig:
    """Loss weights of the student: ground truth, teacher landmarks, FitNet features."""

    enabled: bool = True
    gt_weight: float = 1.0
    output_weight: float = 1.0
    feature_weight: float = 2.0

    def __post_init__(self) -> None:
        for name in ("gt_weight", "output_weight", "feature_weight"):
            _non_negative(name, getattr(self, name))


@dataclass(frozen=True)
class StudentConfig:
    arch: str = "pfld025"
    input_size: int = 112
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=4, batch_size=32, lr=2e-3))

    def __post_init__(self) -> None:
        if not self.arch.startswith("pfld"):
            raise ConfigError(f"student must be a PFLD model (pfld025, pfld100), got {self.arch!r}")
        _positive("student input_size", self.input_size)


@dataclass(frozen=True)
class DataConfig:
    """Where faces come from. ``synthetic`` sizes apply when a spec is ``synthetic``."""

    train: str = "synthetic"
    val: str | None = None
    unlabeled: str | None = None
    crop_scale: float = 1.25
    synthetic_train: int = 1500
    synthetic_val: int = 200
    num_workers: int = 1

    def __post_init__(self) -> None:
        _positive("crop_scale", self.crop_scale)
        _positive("synthetic_train", self.synthetic_train)
        _positive("synthetic_val", self.synthetic_val)
        _non_negative("num_workers", self.num_workers)


@dataclass(frozen=True)
class DistillConfig:
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    out: str = "runs/distill"
    device: str = "auto"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def replace(cfg: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for nested frozen configs; values are re-validated."""
    return dataclasses.replace(cfg, **changes)
