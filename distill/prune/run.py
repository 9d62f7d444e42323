"""A pruning run: open and check every input, prune step by step, fine-tune, write the checkpoint.

Resumable: each finished step (pruned + recovered) is saved as ``<out>/step<k>.pt`` and every
fine-tuning epoch as ``<out>/<name>.state.pt``. With ``resume``, the pruning decisions of the
finished steps are replayed on the input model (they are deterministic given the weights they
were made on, which the step files hold), the step's weights loaded, and the interrupted
fine-tuning continues from its state file. The step files are removed once ``pruned.pt`` is written.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.config import KDConfig, TrainConfig
from distill.prune.config import PruneConfig, PruneReport, QatReport, StepReport
from distill.prune.measure import checkpoint_bytes, measure
from distill.prune.pruner import Pruner
from landmarks.cli import check_output_dir
from landmarks.data.specs import VAL_SEED_OFFSET
from landmarks.errors import ConfigError, DataError, GateRejected, ModelError


class BudgetError(GateRejected):
    """Not even the first pruning step stayed within the accuracy budget: nothing is pruned (exit 1)."""


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
    from landmarks.data.split import Holdout

    run_dir = check_output_dir(out)
    ckpt, model = _load_student(checkpoint)
    meta = ckpt.metadata
    teacher = _load_teacher(teacher_checkpoint, meta.num_points) if teacher_checkpoint else None
    teacher_size = teacher.config.input_size if teacher is not None else 0
    split = val_data is None and config.val_split > 0 and not _is_synthetic(data)
    if val_data is None and not split and not _is_synthetic(data):
        raise ConfigError("fine-tuning on a folder needs validation data too: pass --val-data PATH")
    val_spec = val_data or (data if split else f"synthetic:{config.synthetic_val}")
    train_ds = open_dataset(data, input_size=meta.input_size, crop_scale=meta.crop_scale,
                            augment=AugmentConfig(), seed=seed, synthetic_count=config.synthetic_train,
                            teacher_size=teacher_size or None, cache_images=True,
                            holdout=Holdout(config.val_split, "train", seed) if split else None)
    if len(train_ds) < config.batch_size and config.finetune_epochs > 0:
        raise DataError(f"{data}: {len(train_ds)} faces, fewer than one batch of {config.batch_size}")
    if train_ds.num_points != meta.num_points:
        raise DataError(f"{data}: faces have {train_ds.num_points} points, the student predicts {meta.num_points}")
    validator = Validator(val_spec, meta.crop_scale, seed if split else seed + VAL_SEED_OFFSET, config.synthetic_val,
                          holdout=Holdout(config.val_split, "val", seed) if split else None)
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
    resume: bool = False,
) -> PruneReport:
    """Prune a PFLD student checkpoint toward ``config``'s target, fine-tuning after each step.

    Writes ``<out>/pruned.pt`` (a plain checkpoint), ``<out>/prune_report.json`` and the
    fine-tuning logs. Input and target are checked first: a bad one raises a
    :class:`~landmarks.errors.LandmarksError` and nothing is written. ``resume`` continues an
    interrupted run of the same inputs in ``out`` (module docstring).
    """
    started = time.perf_counter()
    log = log or _default_log(progress)
    session = _open_session(checkpoint, config, data, val_data, teacher_checkpoint, out, seed, progress, log)
    model, meta = session.model, session.ckpt.metadata
    pruner = Pruner(model, meta.input_size, config.target, importance=config.importance, steps=config.steps,
                    round_to=config.round_to, min_channels=config.min_channels)
    torch.manual_seed(seed)
    session.run_dir.mkdir(parents=True, exist_ok=True)
    nme = session.validator(model, meta)["nme_io"]
    steps = [_step_report(session, model, 0, 0.0, nme, nme, 0.0)]
    log(step_line(steps[0], steps[0], config.steps))
    tried: list[StepReport] = []
    while not pruner.done:
        if config.importance == "taylor":
            _accumulate_gradients(session, model, config)
        sparsity = pruner.step()
        model.zero_grad(set_to_none=True)
        finished = _finished_step(session, model, pruner.current_step) if resume else None
        if finished is not None:
            report = finished
            log(step_line(report, steps[0], config.steps) + " (finished in an earlier run)")
        else:
            pruned_nme = session.validator(model, meta)["nme_io"]
            nme, seconds = _recover(session, model, pruner.current_step, config, resume)
            report = _step_report(session, model, pruner.current_step, sparsity, pruned_nme,
                                  pruned_nme if nme is None else nme, seconds)
            _save_step(session, model, report)
            log(step_line(report, steps[0], config.steps))
        tried.append(report)
        if not within_budget(report, steps[0], config.budget):
            log(budget_line(report, steps[0], config.budget, keeping=steps[-1]))
            if len(steps) == 1:
                raise BudgetError(budget_line(report, steps[0], config.budget, keeping=None))
            model = _restore_step(session, steps[-1].step)
            break
        steps.append(report)
    qat = quantization_aware(session, model, config, resume) if config.qat_epochs else None
    if qat is not None:
        log(qat_line(qat))
    return _finish(session, config, pruner, steps, Path(checkpoint), time.perf_counter() - started, qat,
                   tried=tuple(tried))


def within_budget(step: StepReport, first: StepReport, budget: float | None) -> bool:
    """Whether a recovered step's validation nme_io stays within ``budget`` of the unpruned student's."""
    if budget is None or step.nme_io is None or first.nme_io is None:
        return True
    return (step.nme_io - first.nme_io) / first.nme_io <= budget + 1e-9


def budget_line(step: StepReport, first: StepReport, budget: float | None, keeping: StepReport | None) -> str:
    rise = 100 * (step.nme_io - first.nme_io) / first.nme_io
    line = (f"pruning step {step.step} ({_change(step.params, first.params)} parameters): validation nme_io "
            f"{step.nme_io:.2f}% against {first.nme_io:.2f}% unpruned, {rise:+.2f}%, past the budget of "
            f"{100 * (budget or 0):.2f}%")
    if keeping is None:
        return line + "; no pruning ratio stays within it, nothing is pruned"
    return line + (f"; keeping step {keeping.step} ({_change(keeping.params, first.params)} parameters)"
                   if keeping.step else "; keeping the unpruned student")


def _restore_step(session: _Session, step: int) -> nn.Module:
    """The model of an accepted step, from its step file (the pruner has moved past it)."""
    from landmarks.models import load_checkpoint

    model = load_checkpoint(_step_path(session, step)).build()
    session.model = model
    return model.eval()


def _step_path(session: _Session, step: int) -> Path:
    return session.run_dir / f"step{step}.pt"


def _save_step(session: _Session, model: nn.Module, report: StepReport) -> None:
    """A finished step (pruned and recovered), so an interrupted run resumes after it."""
    from landmarks.models import save_checkpoint

    save_checkpoint(_step_path(session, report.step), _payload(session, model, {"step": dataclasses.asdict(report)}))


def _finished_step(session: _Session, model: nn.Module, step: int) -> StepReport | None:
    """Load step ``step`` of an earlier run into ``model`` when it was saved at the same widths."""
    from landmarks.models import load_checkpoint

    path = _step_path(session, step)
    if not path.is_file():
        return None
    saved = load_checkpoint(path)
    if saved.arch_config.get("channels") != dict(model.channels) or "step" not in saved.extra:
        session.log(f"{path.name}: saved at other widths; this step runs again")
        return None
    model.load_state_dict(saved.state_dict)
    return StepReport(**saved.extra["step"])


def qat_checkpoint(
    checkpoint: str | Path,
    config: PruneConfig,
    *,
    data: str = "synthetic",
    val_data: str | None = None,
    teacher_checkpoint: str | Path | None = None,
    out: str | Path = "runs/qat",
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, QatReport]:
    """Only the quantization-aware epochs of ``config`` on a student checkpoint (pruned or not):
    writes ``<out>/qat.pt`` and returns it with the report. Nothing is pruned."""
    from landmarks.models import save_checkpoint

    if config.qat_epochs < 1:
        raise ConfigError("qat_epochs must be at least 1 for a quantization-aware run")
    log = log or _default_log(progress)
    session = _open_session(checkpoint, config, data, val_data, teacher_checkpoint, out, seed, progress, log)
    session.run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    report = quantization_aware(session, session.model, config)
    log(qat_line(report))
    path = session.run_dir / "qat.pt"
    save_checkpoint(path, _payload(session, session.model, {"qat": dataclasses.asdict(report)}))
    (session.run_dir / "qat.state.pt").unlink(missing_ok=True)  # the trainer's state: spent once saved
    return path, report


def _default_log(progress: bool) -> Callable[[str], None]:
    """Step lines to stderr while progress is shown, else nowhere."""
    return (lambda line: print(line, file=sys.stderr)) if progress else (lambda line: None)


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


def _recover(session: _Session, model: nn.Module, step: int, config: PruneConfig,
             resume: bool = False) -> tuple[float | None, float]:
    """Fine-tune after a pruning step: KD from the teacher when there is one, else ground truth."""
    if config.finetune_epochs == 0:
        return None, 0.0
    train = TrainConfig(epochs=config.finetune_epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, warmup_epochs=0, ema_decay=config.ema_decay)
    return _finetune(session, model, config, train, f"step{step}", session.seed + step, resume=resume)


def quantization_aware(session: _Session, model: nn.Module, config: PruneConfig,
                       resume: bool = False) -> QatReport:
    """``config.qat_epochs`` of fine-tuning with INT8 simulated (distill/qat.py), in fp32 (bf16
    autocast would round more coarsely than the simulation). Leaves ``model`` a float model.

    KD on the outputs only: the feature loss would go through a freshly initialized adapter,
    whose first steps pull the features away from where a few epochs at a small lr can bring
    them back."""
    from distill.qat import quantization_simulated

    meta = session.ckpt.metadata
    train = TrainConfig(epochs=config.qat_epochs, batch_size=config.batch_size, lr=config.qat_lr,
                        weight_decay=config.weight_decay, warmup_epochs=0, precision="fp32")
    with quantization_simulated(model):
        _observe_ranges(session, model, config)
        before = session.validator(model, meta)["nme_io"]
        after, seconds = _finetune(session, model, config, train, "qat", session.seed + 1000,
                                   kd=dataclasses.replace(config.kd, feature_weight=0.0), resume=resume)
    return QatReport(epochs=config.qat_epochs, nme_io_int8_before=before, nme_io_int8_after=float(after or before),
                     nme_io=session.validator(model, meta)["nme_io"], seconds=round(seconds, 1))


@torch.no_grad()
def _observe_ranges(session: _Session, model: nn.Module, config: PruneConfig, batches: int = 8) -> None:
    """Start the activation ranges from a few training batches (batch norm stays frozen)."""
    from distill.tasks import model_input

    meta = session.ckpt.metadata
    loader = torch.utils.data.DataLoader(session.train_ds, batch_size=config.batch_size, shuffle=False)
    model.to(session.device).train()
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        model.forward_landmarks(model_input(batch["image"].to(session.device), meta.input_size, meta))
    model.cpu().eval()


def _finetune(session: _Session, model: nn.Module, config: PruneConfig, train: TrainConfig, name: str,
              seed: int, kd: KDConfig | None = None, resume: bool = False) -> tuple[float | None, float]:
    """KD (``kd``, default ``config.kd``) from the teacher when there is one, else ground truth.

    A fresh task each time: the feature-KD adapter's input width follows the pruned features.
    """
    from distill.engine import Trainer
    from distill.tasks import StudentTask

    meta = session.ckpt.metadata
    teacher = session.teacher.to(session.device) if session.teacher is not None else None
    kd = kd or config.kd
    kd = kd if teacher is not None else dataclasses.replace(kd, enabled=False)
    task = StudentTask(model.to(session.device), meta.input_size, meta, kd,
                       lambda m: session.validator(m, meta), teacher=teacher,
                       teacher_size=teacher.config.input_size if teacher is not None else None)
    task.modules.to(session.device)
    trainer = Trainer(name, task, session.train_ds, train, session.run_dir, seed=seed,
                      device=session.device, num_workers=config.num_workers, progress=session.progress)
    result = trainer.fit(resume=resume and trainer.has_state())
    if trainer.average is not None:  # end on the weight average, the model every epoch validated
        model.load_state_dict(trainer.final_modules["student"].state_dict())
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
    size = checkpoint_bytes(_payload(session, model, {}))
    return StepReport(step=step, channel_sparsity=round(sparsity, 5), params=footprint.params, macs=footprint.macs,
                      fp32_bytes=footprint.fp32_bytes, checkpoint_bytes=size, channels=dict(model.channels),
                      nme_io_pruned=nme_pruned, nme_io=nme, finetune_seconds=round(seconds, 1))


def _finish(session: _Session, config: PruneConfig, pruner: Pruner, steps: list[StepReport], source: Path,
            seconds: float, qat: QatReport | None, tried: tuple[StepReport, ...] = ()) -> PruneReport:
    from landmarks.atomic import write_json
    from landmarks.models import save_checkpoint

    run_dir = session.run_dir
    report = PruneReport(source=source, checkpoint=run_dir / "pruned.pt", report_path=run_dir / "prune_report.json",
                         target=config.target, importance=config.importance, round_to=pruner.round_to,
                         kd=session.teacher is not None, val_data=session.val_spec, steps=tuple(steps),
                         seconds=round(seconds, 1), qat=qat, budget=config.budget, tried=tried)
    summary = {"source": str(source), "config": config.to_dict(), "kd": report.kd, "round_to": pruner.round_to,
               "params": [s.params for s in steps], "macs": [s.macs for s in steps]}
    save_checkpoint(report.checkpoint, _payload(session, session.model, {"pruning": summary}))
    final = dataclasses.replace(steps[-1], checkpoint_bytes=report.checkpoint.stat().st_size)
    report = dataclasses.replace(report, steps=(*steps[:-1], final))
    write_json(report.report_path, report.to_dict())
    for step in (*steps[1:], *tried):  # resume points, spent once pruned.pt is written
        _step_path(session, step.step).unlink(missing_ok=True)
    return report


def step_line(s: StepReport, first: StepReport, steps: int) -> str:
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


def qat_line(q: QatReport) -> str:
    return (f"quantization-aware fine-tuning, {q.epochs} epoch(s): nme_io with INT8 simulated "
            f"{q.nme_io_int8_before:.2f}% -> {q.nme_io_int8_after:.2f}%, as float {q.nme_io:.2f}%")


def _change(now: float, before: float) -> str:
    return f"{100 * (now / before - 1):+.1f}%" if before else "n/a"
