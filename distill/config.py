"""Typed, validated configuration of a distillation run; checked once, at the edge."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from landmarks.cli import DEVICES
from landmarks.coords import DEFAULT_CROP_SCALE
from landmarks.errors import ConfigError

HEATMAP_LOSSES = ("awing", "mse")
STUDENT_LOSSES = ("pfld", "wing")
PRECISIONS = ("auto", "fp32", "bf16")


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
    # Exponential moving average of the weights (0 = off): validated, saved and exported in place
    # of the raw weights. 0.999 averages over the last ~1000 steps.
    ema_decay: float = 0.0
    # Autocast precision of the forward pass: bf16 halves the step time on CPUs with AVX512-BF16
    # (auto picks it there) while weights, optimizer and losses stay fp32.
    precision: str = "auto"
    channels_last: bool = True  # NHWC activations: oneDNN's fast convolution layout

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("lr", self.lr)
        _non_negative("weight_decay", self.weight_decay)
        _non_negative("warmup_epochs", self.warmup_epochs)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


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
    """The PFLD student; ``loss`` is its ground-truth landmark loss (PFLD's pose-weighted L2, or
    the same weighting over Wing loss, which keeps a strong gradient on small errors)."""

    arch: str = "pfld025"
    input_size: int = 112
    loss: str = "pfld"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=4, batch_size=32, lr=2e-3))

    def __post_init__(self) -> None:
        if not self.arch.startswith("pfld"):
            raise ConfigError(f"student must be a PFLD model (pfld025, pfld100), got {self.arch!r}")
        _positive("student input_size", self.input_size)
        if self.loss not in STUDENT_LOSSES:
            raise ConfigError(f"student loss must be one of {STUDENT_LOSSES}, got {self.loss!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where faces come from. ``synthetic`` sizes apply when a spec is ``synthetic``.

    ``val_split`` carves validation from the training folders by source photo
    (:mod:`landmarks.data.split`) when ``val`` is not given. ``unlabeled``: folders of faces
    without labels, labelled by the teacher on every view; ``unlabeled_ratio`` of each epoch's
    samples come from them. ``extra_train``: labeled folders used for training only, never split
    into validation (e.g. machine-made labels).
    """

    train: str = "synthetic"
    val: str | None = None
    val_split: float = 0.0
    extra_train: str | None = None
    unlabeled: str | None = None
    unlabeled_ratio: float = 0.5
    crop_scale: float = DEFAULT_CROP_SCALE
    synthetic_train: int = 1500
    synthetic_val: int = 200
    num_workers: int = 0  # 2 cores: a loader worker competes with torch (benchmarks/results/train_throughput.md)
    cache_images: bool = True

    def __post_init__(self) -> None:
        _positive("crop_scale", self.crop_scale)
        _positive("synthetic_train", self.synthetic_train)
        _positive("synthetic_val", self.synthetic_val)
        _non_negative("num_workers", self.num_workers)
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"val_split must be in [0, 1), got {self.val_split}")
        if not 0.0 < self.unlabeled_ratio < 1.0:
            raise ConfigError(f"unlabeled_ratio must be in (0, 1), got {self.unlabeled_ratio}")


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
