"""Structured channel pruning of a PFLD student, with distillation-guided recovery.

Usage::

    python -m distill.prune runs/300w/kd/student.pt --ratio 0.3 --teacher runs/300w/kd/teacher.pt \\
        --data DATA/helen/trainset,DATA/lfpw/trainset,DATA/afw --val-data DATA/helen/testset --out runs/prune

    from distill.prune import PruneConfig, prune_checkpoint
    report = prune_checkpoint("student.pt", PruneConfig(ratio=0.3, steps=2), teacher_checkpoint="teacher.pt")

Whole channels are removed with Torch-Pruning's dependency graph (DepGraph), so coupled layers
stay consistent: an expand conv, its depthwise conv and the next projection lose the same hidden
channels; the residual blocks of a stage lose the same output channels; the multi-scale head's
concatenation and the fc input follow the three maps feeding it. The fc output (``2 * points``)
and the training-only pose branch keep their widths (the branch's input follows stage 3). By
default layers of 32 channels or fewer are kept whole and widths stay multiples of 16 (see
:class:`PruneConfig` for why): on pfld025 that prunes the inverted residuals' expansion layers.

Targets (exactly one): ``ratio`` removes that fraction of the *inference* parameters (what an
exported model carries); ``channel_ratio`` removes that fraction of channels from every pruned
layer; ``params_budget`` / ``flops_budget`` are absolute inference parameters / MACs to end at
or below. Every target is met with one uniform channel sparsity over the pruned layers, found by
bisection, so the relative layer widths of the architecture are kept. ``steps`` > 1 approaches
the target linearly; each step re-ranks channels on the fine-tuned weights, then fine-tunes
again with the same losses as distillation (ground truth + output KD + feature KD) when a FAN
teacher is given, or on the ground truth alone without one.

The pruned checkpoint is an ordinary one: ``arch_config`` carries every layer width, so
``load_checkpoint(path).build()`` rebuilds it without Torch-Pruning, and export is unchanged.
Torch-Pruning is imported only when pruning actually runs.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.config import DEVICES, KDConfig, TrainConfig
from landmarks.cli import add_version_flag, check_output_dir
from landmarks.errors import ConfigError, DataError, ModelError, UnsupportedBackendError, cli_errors

IMPORTANCES = ("l1", "l2", "taylor", "bn")
TARGETS = ("ratio", "channel_ratio", "params_budget", "flops_budget")
PROG = "python -m distill.prune"
_BISECT_ITERATIONS = 14  # sparsity resolution 2**-14: finer than one channel of the widest layer
_VAL_SEED_OFFSET = 10_000_000  # synthetic validation faces never overlap the training faces


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
    params_budget: int | None = None
    flops_budget: int | None = None
    importance: str = "l1"
    steps: int = 1
    finetune_epochs: int = 3
    round_to: int = 16
    min_channels: int = 32
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    importance_batches: int = 4
    num_workers: int = 0
    synthetic_train: int = 2000
    synthetic_val: int = 300
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

    def _check_counts(self) -> None:
        positive = ("steps", "batch_size", "importance_batches", "synthetic_train", "synthetic_val")
        for name in positive:
            if not getattr(self, name) >= 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.finetune_epochs >= 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not self.round_to >= 1:
            raise ConfigError(f"round_to must be at least 1, got {self.round_to}")
        if not self.num_workers >= 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if not self.min_channels >= 0:
            raise ConfigError(f"min_channels must be >= 0, got {self.min_channels}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ConfigError(f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")

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


# -- measuring --------------------------------------------------------------------------------


class _LandmarkPath(nn.Module):
    """``forward = forward_landmarks``: what export traces, so MACs are those of the artifact."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_landmarks(x)


def _example(model: nn.Module, input_size: int) -> torch.Tensor:
    param = next(model.parameters())
    return torch.zeros(1, 3, input_size, input_size, device=param.device)


def _inference_modules(model: nn.Module, input_size: int) -> list[nn.Module]:
    """Modules that ``forward_landmarks`` runs, found with forward hooks (eval mode, no grad)."""
    seen: dict[int, nn.Module] = {}

    def record(module: nn.Module, *_: Any) -> None:  # returns None: the output is left alone
        seen.setdefault(id(module), module)

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.forward_landmarks(_example(model, input_size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return list(seen.values())


def measure(model: nn.Module, input_size: int, *, macs: bool = True) -> Footprint:
    """Inference parameters, MACs (Torch-Pruning's counter) and FP32 bytes of ``model``."""
    modules = _inference_modules(model, input_size)
    tensors = [t for m in modules for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))]
    params = sum(p.numel() for m in modules for p in m.parameters(recurse=False))
    fp32 = sum(t.numel() * t.element_size() for t in tensors if t.is_floating_point())
    count = 0
    if macs:  # the counter runs a deep copy, so ``model`` is left as it was
        count = int(_torch_pruning().utils.count_ops_and_params(_LandmarkPath(model), _example(model, input_size))[0])
    return Footprint(params=params, macs=count, fp32_bytes=fp32)


def _checkpoint_bytes(ckpt: Any) -> int:
    """Size of the file :func:`~landmarks.models.save_checkpoint` writes for ``ckpt``."""
    from landmarks.models import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="prune-size-") as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(path, ckpt)
        return path.stat().st_size


# -- pruning ----------------------------------------------------------------------------------


def _torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError:
        raise UnsupportedBackendError("pruning needs Torch-Pruning: pip install torch-pruning") from None
    return torch_pruning


def _importance(name: str) -> Any:
    imp = _torch_pruning().importance
    return {
        "l1": lambda: imp.GroupMagnitudeImportance(p=1),
        "l2": lambda: imp.GroupMagnitudeImportance(p=2),
        "taylor": imp.GroupTaylorImportance,
        "bn": imp.BNScaleImportance,
    }[name]()


def kept_channels(width: int, sparsity: float, round_to: int) -> int:
    """Channels a layer of ``width`` keeps at ``sparsity``: the nearest multiple of ``round_to``
    (nearest, not floor, so a narrow layer is not cut by a whole step at a tiny sparsity),
    between ``round_to`` and ``width``."""
    keep = math.floor(width * (1.0 - sparsity) / round_to + 0.5) * round_to
    return min(width, max(round_to, keep))


def pfld_ignored_layers(model: nn.Module, min_channels: int) -> list[nn.Module]:
    """Layers whose output channels stay: the fc (``2 * points`` outputs), the training-only pose
    branch, and convs with ``min_channels`` outputs or fewer."""
    ignored: list[nn.Module] = [model.fc, *model.aux.modules()]
    ignored += [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels <= min_channels]
    return ignored


class Pruner:
    """Prunes ``model`` in place toward one target in ``steps`` steps (Torch-Pruning's lifecycle:
    configure once, ``step()`` after each round of fine-tuning, ``done`` when finished).

    Every step applies one uniform channel sparsity (relative to the *initial* widths) to all
    prunable groups; for parameter and MAC targets the smallest sparsity meeting the step's
    share of the target is found by bisection on a copy. A target the model cannot reach, even
    with every pruned layer at ``round_to`` channels, is a :class:`ConfigError` at construction.
    """

    def __init__(
        self,
        model: nn.Module,
        input_size: int,
        target: tuple[str, float],
        *,
        importance: str = "l1",
        steps: int = 1,
        ignored_layers: Sequence[nn.Module] | None = None,
        round_to: int = 16,
        min_channels: int = 32,
    ) -> None:
        self.model = model
        self.input_size = input_size
        self.kind, self.value = target
        self.importance = importance
        self.steps = steps
        ignored = pfld_ignored_layers(model, min_channels) if ignored_layers is None else list(ignored_layers)
        self._ignored_names = {n for n, m in model.named_modules() if any(m is i for i in ignored)}
        self.initial_widths = _group_widths(model, self._ignored(model), input_size)
        if not self.initial_widths:
            raise ConfigError("this model has no prunable layers (every layer is ignored or too narrow)")
        self.round_to = round_to
        self.initial = measure(model, input_size, macs=self.kind == "flops_budget")
        self.current_step = 0
        self.sparsity = 0.0
        self._check_reachable()

    @property
    def done(self) -> bool:
        return self.current_step >= self.steps

    def _ignored(self, model: nn.Module) -> list[nn.Module]:
        """The ignored layers of ``model`` or of a deep copy of it, by module name."""
        return [m for n, m in model.named_modules() if n in self._ignored_names]

    def _metric(self, footprint: Footprint) -> float:
        return footprint.macs if self.kind == "flops_budget" else footprint.params

    def _goal(self, step: int) -> float:
        """The step's share of the target, in parameters or MACs (linear schedule)."""
        start = self._metric(self.initial)
        final = {"ratio": start * (1.0 - self.value), "params_budget": self.value,
                 "flops_budget": self.value}[self.kind]
        return start - (start - final) * step / self.steps

    def _what(self) -> str:
        return "MACs" if self.kind == "flops_budget" else "inference parameters"

    def _check_reachable(self) -> None:
        if self.kind == "channel_ratio":
            return
        start, final = self._metric(self.initial), self._goal(self.steps)
        if final >= start:
            raise ConfigError(f"the model already has {start:,.0f} {self._what()}, within the budget of "
                              f"{final:,.0f}; nothing to prune")
        smallest = self._metric(self._trial(1.0))
        if smallest > final:
            raise ConfigError(f"{self.kind} {self.value:,.0f} cannot be reached: with every pruned layer at "
                              f"{self.round_to} channels the model still has {smallest:,.0f} {self._what()}")

    def _trial(self, sparsity: float) -> Footprint:
        trial = copy.deepcopy(self.model)
        self._prune(trial, sparsity, ranked=False)
        return measure(trial, self.input_size, macs=self.kind == "flops_budget")

    def _sparsity_for(self, step: int) -> float:
        if self.kind == "channel_ratio":
            return self.value * step / self.steps
        goal = self._goal(step)
        low, high = self.sparsity, 1.0
        for _ in range(_BISECT_ITERATIONS):
            mid = (low + high) / 2
            if self._metric(self._trial(mid)) <= goal:
                high = mid
            else:
                low = mid
        return high

    def step(self) -> float:
        """Prune to the next step's target; returns the channel sparsity now applied.

        With ``taylor`` importance, gradients of the loss must already be in ``.grad``.
        """
        if self.done:
            raise RuntimeError(f"all {self.steps} pruning steps are done")
        self.current_step += 1
        sparsity = self._sparsity_for(self.current_step)
        self._prune(self.model, sparsity, ranked=True)
        self.sparsity = sparsity
        return sparsity

    def _prune(self, model: nn.Module, sparsity: float, *, ranked: bool) -> None:
        """Cut every prunable group of ``model`` to its width at ``sparsity``; ``ranked=False``
        drops the first channels (sizes only, for the search), else the least important ones."""
        tp = _torch_pruning()
        was_training = model.training
        model.eval()
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=_example(model, self.input_size))
        names = {m: n for n, m in model.named_modules()}
        scorer = _importance(self.importance) if ranked else None
        plan = []
        for group in graph.get_all_groups(ignored_layers=self._ignored(model), root_module_types=[nn.Conv2d]):
            root, handler = group[0].dep.target.module, group[0].dep.handler
            current = graph.get_out_channels(root)
            initial = self.initial_widths.get(names[root])
            drop = 0 if initial is None else current - kept_channels(initial, sparsity, self.round_to)
            if drop <= 0:
                continue
            order = torch.argsort(scorer(group)).tolist() if scorer is not None else list(range(current))
            plan.append((root, handler, sorted(order[:drop])))
        for root, handler, idxs in plan:
            graph.get_pruning_group(root, handler, idxs).prune()
        model.train(was_training)


def _group_widths(model: nn.Module, ignored: list[nn.Module], input_size: int) -> dict[str, int]:
    """Output width of each prunable group, keyed by the name of its root conv."""
    tp = _torch_pruning()
    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=_example(model, input_size))
    model.train(was_training)
    names = {m: n for n, m in model.named_modules()}
    widths = {}
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        widths[names[root]] = graph.get_out_channels(root)
    return widths


# -- the run ----------------------------------------------------------------------------------


@dataclass
class _Session:
    """Everything a pruning run reads, opened and checked before anything is written."""

    ckpt: Any
    model: nn.Module
    teacher: nn.Module | None
    train_ds: Any
    validator: Any
    val_spec: str
    run_dir: Path
    device: torch.device
    seed: int
    progress: bool
    log: Callable[[str], None]


def _load_student(path: str | Path) -> tuple[Any, nn.Module]:
    from landmarks.models import load_checkpoint

    ckpt = load_checkpoint(path)
    if not ckpt.arch.startswith("pfld"):
        raise ModelError(f"{path}: a {ckpt.arch!r} checkpoint is not a PFLD student; prune a student checkpoint")
    try:
        model = ckpt.build()
    except ConfigError as err:
        raise ModelError(f"{path}: cannot build the student ({err})") from None
    return ckpt, model


def _load_teacher(path: str | Path, num_points: int) -> nn.Module:
    from landmarks.models import load_checkpoint

    ckpt = load_checkpoint(path)
    if not ckpt.arch.startswith("fan"):
        raise ModelError(f"{path}: teacher checkpoint is a {ckpt.arch!r}, not a FAN model")
    if ckpt.metadata.num_points != num_points:
        raise ModelError(f"{path}: teacher predicts {ckpt.metadata.num_points} points, the student {num_points}")
    return ckpt.build()


def _is_synthetic(spec: str) -> bool:
    return spec.split(":")[0] == "synthetic"


def _open_session(
    checkpoint: str | Path, config: PruneConfig, data: str, val_data: str | None,
    teacher_checkpoint: str | Path | None, out: str | Path, seed: int, progress: bool,
    log: Callable[[str], None],
) -> _Session:
    from distill.engine import DistEnv, resolve_device
    from distill.pipeline import Validator
    from landmarks.data import AugmentConfig, open_dataset

    run_dir = check_output_dir(out)
    ckpt, model = _load_student(checkpoint)
    meta = ckpt.metadata
    teacher = _load_teacher(teacher_checkpoint, meta.num_points) if teacher_checkpoint else None
    teacher_size = teacher.config.input_size if teacher is not None else 0
    if val_data is None and not _is_synthetic(data):
        raise ConfigError("fine-tuning on a folder needs validation data too: pass --val-data PATH")
    val_spec = val_data or f"synthetic:{config.synthetic_val}"
    train_ds = open_dataset(data, input_size=max(meta.input_size, teacher_size), crop_scale=meta.crop_scale,
                            augment=AugmentConfig(), seed=seed, synthetic_count=config.synthetic_train)
    if len(train_ds) < config.batch_size and config.finetune_epochs > 0:
        raise DataError(f"{data}: {len(train_ds)} faces, fewer than one batch of {config.batch_size}")
    if train_ds.num_points != meta.num_points:
        raise DataError(f"{data}: faces have {train_ds.num_points} points, the student predicts {meta.num_points}")
    validator = Validator(val_spec, meta.crop_scale, seed + _VAL_SEED_OFFSET, config.synthetic_val)
    device = resolve_device(config.device, DistEnv())
    return _Session(ckpt, model, teacher, train_ds, validator, val_spec, run_dir, device, seed, progress, log)


def prune_checkpoint(
    checkpoint: str | Path,
    config: PruneConfig,
    *,
    data: str = "synthetic",
    val_data: str | None = None,
    teacher_checkpoint: str | Path | None = None,
    out: str | Path = "runs/prune",
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PruneReport:
    """Prune a PFLD student checkpoint toward ``config``'s target, fine-tuning after each step.

    Writes ``<out>/pruned.pt`` (a plain checkpoint), ``<out>/prune_report.json`` and the
    fine-tuning logs. Input and target are checked first: a bad one raises a
    :class:`~landmarks.errors.LandmarksError` and nothing is written.
    """
    started = time.perf_counter()
    log = log or ((lambda line: print(line, file=sys.stderr)) if progress else (lambda line: None))
    session = _open_session(checkpoint, config, data, val_data, teacher_checkpoint, out, seed, progress, log)
    model, meta = session.model, session.ckpt.metadata
    pruner = Pruner(model, meta.input_size, config.target, importance=config.importance, steps=config.steps,
                    round_to=config.round_to, min_channels=config.min_channels)
    torch.manual_seed(seed)
    session.run_dir.mkdir(parents=True, exist_ok=True)
    nme = session.validator(model, meta)["nme_io"]
    steps = [_step_report(session, model, 0, 0.0, nme, nme, 0.0)]
    log(_step_line(steps[0], steps[0], config.steps))
    while not pruner.done:
        if config.importance == "taylor":
            _accumulate_gradients(session, model, config)
        sparsity = pruner.step()
        model.zero_grad(set_to_none=True)
        pruned_nme = session.validator(model, meta)["nme_io"]
        nme, seconds = _recover(session, model, pruner.current_step, config)
        steps.append(_step_report(session, model, pruner.current_step, sparsity, pruned_nme,
                                  pruned_nme if nme is None else nme, seconds))
        log(_step_line(steps[-1], steps[0], config.steps))
    return _finish(session, config, pruner, steps, Path(checkpoint), time.perf_counter() - started)


def _accumulate_gradients(session: _Session, model: nn.Module, config: PruneConfig) -> None:
    """Gradients of the ground-truth loss over a few batches, for first-order Taylor importance."""
    from distill.tasks import StudentTask

    meta = session.ckpt.metadata
    task = StudentTask(model, meta.input_size, meta, dataclasses.replace(config.kd, enabled=False), None)
    loader = torch.utils.data.DataLoader(session.train_ds, batch_size=config.batch_size, shuffle=False)
    model.zero_grad(set_to_none=True)
    model.train()
    for i, batch in enumerate(loader):
        if i >= config.importance_batches:
            break
        task.loss(batch)["total"].backward()
    model.eval()


def _recover(session: _Session, model: nn.Module, step: int, config: PruneConfig) -> tuple[float | None, float]:
    """Fine-tune after a pruning step: KD from the teacher when there is one, else ground truth.

    A fresh task per step: the feature-KD adapter's input width follows the pruned features.
    """
    from distill.engine import Trainer
    from distill.tasks import StudentTask

    if config.finetune_epochs == 0:
        return None, 0.0
    meta = session.ckpt.metadata
    teacher = session.teacher.to(session.device) if session.teacher is not None else None
    kd = config.kd if teacher is not None else dataclasses.replace(config.kd, enabled=False)
    task = StudentTask(model.to(session.device), meta.input_size, meta, kd,
                       lambda m: session.validator(m, meta), teacher=teacher,
                       teacher_size=teacher.config.input_size if teacher is not None else None)
    task.modules.to(session.device)
    train = TrainConfig(epochs=config.finetune_epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, warmup_epochs=0)
    trainer = Trainer(f"step{step}", task, session.train_ds, train, session.run_dir, seed=session.seed + step,
                      device=session.device, num_workers=config.num_workers, progress=session.progress)
    result = trainer.fit()
    model.cpu().eval()
    return result.history[-1].val.get("nme_io"), result.seconds


def _payload(session: _Session, model: nn.Module, extra: dict[str, Any]) -> Any:
    from landmarks.models import Checkpoint

    ckpt = session.ckpt
    return Checkpoint(arch=ckpt.arch, arch_config=model.arch_config, state_dict=model.state_dict(),
                      metadata=ckpt.metadata, extra={**ckpt.extra, **extra})


def _step_report(session: _Session, model: nn.Module, step: int, sparsity: float,
                 nme_pruned: float | None, nme: float | None, seconds: float) -> StepReport:
    footprint = measure(model, session.ckpt.metadata.input_size)
    size = _checkpoint_bytes(_payload(session, model, {}))
    return StepReport(step=step, channel_sparsity=round(sparsity, 5), params=footprint.params, macs=footprint.macs,
                      fp32_bytes=footprint.fp32_bytes, checkpoint_bytes=size, channels=dict(model.channels),
                      nme_io_pruned=nme_pruned, nme_io=nme, finetune_seconds=round(seconds, 1))


def _finish(session: _Session, config: PruneConfig, pruner: Pruner, steps: list[StepReport], source: Path,
            seconds: float) -> PruneReport:
    from landmarks.atomic import write_json
    from landmarks.models import save_checkpoint

    run_dir = session.run_dir
    report = PruneReport(source=source, checkpoint=run_dir / "pruned.pt", report_path=run_dir / "prune_report.json",
                         target=config.target, importance=config.importance, round_to=pruner.round_to,
                         kd=session.teacher is not None, val_data=session.val_spec, steps=tuple(steps),
                         seconds=round(seconds, 1))
    summary = {"source": str(source), "config": config.to_dict(), "kd": report.kd, "round_to": pruner.round_to,
               "params": [s.params for s in steps], "macs": [s.macs for s in steps]}
    save_checkpoint(report.checkpoint, _payload(session, session.model, {"pruning": summary}))
    final = dataclasses.replace(steps[-1], checkpoint_bytes=report.checkpoint.stat().st_size)
    report = dataclasses.replace(report, steps=(*steps[:-1], final))
    write_json(report.report_path, report.to_dict())
    return report


def _step_line(s: StepReport, first: StepReport, steps: int) -> str:
    if s.nme_io is None or s.nme_io_pruned is None:
        nme = ""
    elif s.step == 0 or s.finetune_seconds == 0:
        nme = f", nme_io {s.nme_io:.2f}%"
    else:
        nme = f", nme_io {s.nme_io_pruned:.2f}% -> {s.nme_io:.2f}% after fine-tuning"
    return (f"step {s.step}/{steps}: channel sparsity {s.channel_sparsity:.3f}, "
            f"params {s.params:,} ({_change(s.params, first.params)}), MACs {s.macs / 1e6:.2f}M "
            f"({_change(s.macs, first.macs)}), fp32 {s.fp32_bytes / 1024:.0f} KB, "
            f"checkpoint {s.checkpoint_bytes / 1024:.0f} KB{nme}")


def _change(now: float, before: float) -> str:
    return f"{100 * (now / before - 1):+.1f}%" if before else "n/a"


# -- command line -----------------------------------------------------------------------------


def _count(text: str) -> int:
    """``250000``, ``250k``, ``1.5M``, ``2G`` -> an integer count."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1.0)
    number = text[:-1] if scale != 1.0 else text
    try:
        return round(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (e.g. 250000, 250k, 1.5M)") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Structured channel pruning of a PFLD student checkpoint (Torch-Pruning, DepGraph), "
        "fine-tuned after each step with knowledge distillation from a FAN teacher (--teacher) or on the "
        "ground truth alone. Writes OUT/pruned.pt, a plain checkpoint loadable without Torch-Pruning.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="PFLD student checkpoint (python -m distill's student.pt)")
    target = p.add_argument_group("target (exactly one)")
    target.add_argument("--ratio", type=float, help="fraction of inference parameters to remove, in (0, 1)")
    target.add_argument("--channel-ratio", type=float, help="fraction of channels removed per pruned layer")
    target.add_argument("--params-budget", type=_count, help="inference parameters to end at, e.g. 200k")
    target.add_argument("--flops-budget", type=_count, help="inference MACs to end at, e.g. 40M")
    p.add_argument("--importance", choices=IMPORTANCES, default="l1", help="channel ranking criterion")
    p.add_argument("--steps", type=int, default=1, help="prune in this many steps, fine-tuning after each")
    p.add_argument("--finetune-epochs", type=int, default=3, help="fine-tuning epochs after each step (0: none)")
    p.add_argument("--teacher", default=None, help="FAN teacher checkpoint: recover with KD (else ground truth only)")
    p.add_argument("--data", default="synthetic", help="fine-tuning faces: dataset path(s), or synthetic[:N]")
    p.add_argument("--val-data", default=None, help="validation faces (default: held-out synthetic faces)")
    p.add_argument("--round-to", type=int, default=16, help="keep pruned widths multiples of this")
    p.add_argument("--min-channels", type=int, default=32, help="never prune layers this narrow or narrower")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate (cosine decay)")
    p.add_argument("--out", default="runs/prune", help="output folder (pruned.pt, prune_report.json, logs)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars or step lines")
    return add_version_flag(p)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors(PROG):
        check_output_dir(args.out)
        config = PruneConfig(ratio=args.ratio, channel_ratio=args.channel_ratio, params_budget=args.params_budget,
                             flops_budget=args.flops_budget, importance=args.importance, steps=args.steps,
                             finetune_epochs=args.finetune_epochs, round_to=args.round_to,
                             min_channels=args.min_channels, batch_size=args.batch_size, lr=args.lr,
                             device=args.device)
        report = prune_checkpoint(args.checkpoint, config, data=args.data, val_data=args.val_data,
                                  teacher_checkpoint=args.teacher, out=args.out, seed=args.seed,
                                  progress=not args.no_progress)
        for step in report.steps:
            print(_step_line(step, report.before, len(report.steps) - 1))
        print(f"wrote {report.checkpoint} ({100 * report.param_reduction:.1f}% fewer parameters, "
              f"{100 * report.mac_reduction:.1f}% fewer MACs; {_recovery(report.kd, config.finetune_epochs)}); "
              f"report {report.report_path}")
    return 0


def _recovery(kd: bool, epochs: int) -> str:
    if epochs == 0:
        return "no fine-tuning"
    return f"{epochs} epoch(s) of {'KD' if kd else 'ground-truth'} fine-tuning per step"


if __name__ == "__main__":
    sys.exit(main())
