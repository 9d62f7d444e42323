"""Pruning configuration and reports: what a run is asked to do, and what it did."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import KDConfig
from landmarks.cli import DEVICES
from landmarks.errors import ConfigError

IMPORTANCES = ("l1", "l2", "taylor", "bn")
TARGETS = ("ratio", "channel_ratio", "params_budget", "flops_budget")


@dataclass(frozen=True)
class PruneConfig:
    """One pruning run; every value is checked here, before anything is read or written.

    Widths are kept multiples of ``round_to`` = 16 and layers of ``min_channels`` = 32 channels
    or fewer are never pruned, because that is what makes a pruned model faster on a CPU:
    onnxruntime's x86 kernels (MLAS) block channels by 16 floats (AVX-512), and pfld025's
    16- and 32-channel bottlenecks are both the most sensitive layers and the ones where a
    partial block costs most. Measured on pfld025 (batch 1, 1 thread, ORT 1.32, same session):
    34 % fewer parameters with widths in multiples of 4 and the bottlenecks pruned too ran no
    faster than the unpruned 1.76 ms; 32 % fewer with the defaults ran in 1.11 ms. For pfld025
    the defaults prune the expansion (hidden) layers of the inverted residuals only.
    """

    ratio: float | None = None
    channel_ratio: float | None = None
    # Accuracy-aware: after each step's recovery, the relative validation nme_io rise against the
    # unpruned student must stay within ``budget``; the run keeps the last step that did (the target
    # is then the largest ratio tried). None: every step is kept.
    budget: float | None = None
    params_budget: int | None = None
    flops_budget: int | None = None
    importance: str = "l1"
    steps: int = 1
    finetune_epochs: int = 3
    # Quantization-aware epochs after the last step (distill/qat.py), at qat_lr, fp32: the pruned
    # model then loses less to the INT8 exporters. 0 = none.
    qat_epochs: int = 0
    qat_lr: float = 1e-4
    round_to: int = 16
    min_channels: int = 32
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    # Recovery keeps a weight average (distill/engine.WeightAverage) and ends on it, as the student's
    # own training does; 0 = the last weights.
    ema_decay: float = 0.0
    importance_batches: int = 4
    num_workers: int = 0
    synthetic_train: int = 2000
    synthetic_val: int = 300
    val_split: float = 0.0  # without val_data: validate on this share of the training photos
    kd: KDConfig = field(default_factory=KDConfig)
    device: str = "auto"

    def __post_init__(self) -> None:
        given = [name for name in TARGETS if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise ConfigError(f"give exactly one pruning target ({', '.join(TARGETS)}); got {got}")
        for name in ("ratio", "channel_ratio"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must be in (0, 1), got {value}")
        for name in ("params_budget", "flops_budget"):
            value = getattr(self, name)
            if value is not None and not value >= 1:
                raise ConfigError(f"{name} must be a positive count, got {value}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"importance must be one of {', '.join(IMPORTANCES)}, got {self.importance!r}")
        self._check_counts()
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"val_split must be in [0, 1), got {self.val_split}")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int | float)
                                        or not 0.0 <= self.budget <= 1.0):
            raise ConfigError(f"budget must be a fraction in [0, 1] (0.03 = 3 %), got {self.budget!r}")
        if self.budget is not None and self.finetune_epochs == 0:
            raise ConfigError("an accuracy budget needs fine-tuning after each step (finetune_epochs >= 1)")

    def _check_counts(self) -> None:
        positive = ("steps", "batch_size", "importance_batches", "synthetic_train", "synthetic_val")
        for name in positive:
            if not getattr(self, name) >= 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("finetune_epochs", "qat_epochs"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.round_to >= 1:
            raise ConfigError(f"round_to must be at least 1, got {self.round_to}")
        if not self.num_workers >= 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if not self.min_channels >= 0:
            raise ConfigError(f"min_channels must be >= 0, got {self.min_channels}")
        if not self.lr > 0 or not self.qat_lr > 0 or not self.weight_decay >= 0:
            raise ConfigError(f"need lr > 0, qat_lr > 0 and weight_decay >= 0, got {self.lr}, {self.qat_lr}, "
                              f"{self.weight_decay}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def target(self) -> tuple[str, float]:
        """``(kind, value)`` of the one target given."""
        kind = next(name for name in TARGETS if getattr(self, name) is not None)
        return kind, float(getattr(self, kind))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Footprint:
    """What the inference path (``forward_landmarks``) carries and computes; the pose branch,
    used only in training, is not counted. ``fp32_bytes``: its float weights and BN buffers."""

    params: int
    macs: int
    fp32_bytes: int


@dataclass(frozen=True)
class StepReport:
    """The model after pruning step ``step`` (0: the input model) and its recovery."""

    step: int
    channel_sparsity: float
    params: int
    macs: int
    fp32_bytes: int
    checkpoint_bytes: int
    channels: dict[str, int]
    nme_io_pruned: float | None  # right after pruning, before fine-tuning
    nme_io: float | None  # after fine-tuning (equals nme_io_pruned without fine-tuning)
    finetune_seconds: float = 0.0


@dataclass(frozen=True)
class QatReport:
    """Quantization-aware fine-tuning after pruning: validation NME with INT8 simulated, before and
    after, and of the float model it leaves (what is saved and exported)."""

    epochs: int
    nme_io_int8_before: float
    nme_io_int8_after: float
    nme_io: float
    seconds: float


@dataclass(frozen=True)
class PruneReport:
    source: Path
    checkpoint: Path
    report_path: Path
    target: tuple[str, float]
    importance: str
    round_to: int
    kd: bool
    val_data: str
    steps: tuple[StepReport, ...]
    seconds: float
    qat: QatReport | None = None  # quantization-aware epochs after the last step, when any ran
    budget: float | None = None  # the accuracy budget of an accuracy-aware run
    tried: tuple[StepReport, ...] = ()  # every step evaluated, the ones past the budget included
    @property
    def before(self) -> StepReport:
        return self.steps[0]

    @property
    def after(self) -> StepReport:
        return self.steps[-1]

    @property
    def param_reduction(self) -> float:
        return 1.0 - self.after.params / self.before.params

    @property
    def mac_reduction(self) -> float:
        return 1.0 - self.after.macs / self.before.macs

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("source", "checkpoint", "report_path"):
            out[key] = str(out[key])
        out["param_reduction"] = self.param_reduction
        out["mac_reduction"] = self.mac_reduction
        return out
