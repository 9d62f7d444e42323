"""Teacher -> student: get a teacher (load, reuse from the run folder, or train), then train
the student with knowledge distillation, and write checkpoints, logs and final metrics.

Run folder layout::

    <out>/teacher.pt            FAN checkpoint (reused by the next run with the same config)
    <out>/student.pt            PFLD checkpoint
    <out>/{teacher,student}_log.{csv,json}   losses and validation NME per epoch
    <out>/{teacher,student}.state.pt         resumable training state
    <out>/metrics.json          final validation metrics of both models
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.config import DistillConfig
from distill.engine import DistEnv, Trainer, init_distributed, resolve_device
from distill.tasks import StudentTask, TeacherTask
from landmarks.atomic import write_json
from landmarks.data import AugmentConfig, ConcatFaceDataset, open_dataset
from landmarks.data.specs import VAL_SEED_OFFSET
from landmarks.data.split import Holdout
from landmarks.errors import ConfigError, ModelError
from landmarks.metadata import ArtifactMetadata
from landmarks.models import Checkpoint, create_model, load_checkpoint, save_checkpoint


@dataclass
class DistillResult:
    run_dir: Path
    teacher_path: Path | None
    student_path: Path
    teacher_source: str  # "checkpoint", "cached", "trained" or "none"
    metrics: dict[str, Any] = field(default_factory=dict)


def _config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _metadata(arch: str, input_size: int, crop_scale: float, num_points: int) -> ArtifactMetadata:
    return ArtifactMetadata(num_points=num_points, input_size=input_size, crop_scale=crop_scale, source=arch)


class Validator:
    """Validation NME of a model on the held-out set, through the torch predictor."""

    def __init__(self, spec: str, crop_scale: float, seed: int, count: int, limit: int | None = None,
                 holdout: Holdout | None = None) -> None:
        self.spec, self.crop_scale, self.seed, self.count, self.limit = spec, crop_scale, seed, count, limit
        self.holdout = holdout
        self._datasets: dict[int, Any] = {}

    def dataset(self, input_size: int) -> Any:
        if input_size not in self._datasets:
            self._datasets[input_size] = open_dataset(
                self.spec,
                input_size=input_size,
                crop_scale=self.crop_scale,
                seed=self.seed,
                synthetic_count=self.count,
                holdout=self.holdout,
            )
        return self._datasets[input_size]

    def describe(self) -> str:
        return f"{self.spec} ({self.holdout.describe()})" if self.holdout else self.spec

    def __call__(self, model: nn.Module, metadata: ArtifactMetadata) -> dict[str, float]:
        from landmarks.evaluate import evaluate
        from landmarks.runtimes.torch_runtime import TorchPredictor

        report = evaluate(
            TorchPredictor(model, metadata),
            self.dataset(metadata.input_size),
            batch_size=64,
            limit=self.limit,
            progress=False,
        )
        m = report.metrics
        return {"nme_io": m.nme_io, "fr_010": m.fr_010, "auc_008": m.auc_008}


def _val_spec(cfg: DistillConfig) -> tuple[str, int, Holdout | None]:
    """Validation data, its synthetic seed, and the side of a split of the training folders.

    Synthetic validation faces never overlap training faces (seeds far apart); with
    ``val_split`` the training folders are split by source photo (:mod:`landmarks.data.split`).
    """
    if cfg.data.val:
        return cfg.data.val, cfg.seed + VAL_SEED_OFFSET, None
    if cfg.data.val_split > 0:
        return cfg.data.train, cfg.seed, Holdout(cfg.data.val_split, "val", cfg.seed)
    if cfg.data.train.split(":")[0] == "synthetic":
        return f"synthetic:{cfg.data.synthetic_val}", cfg.seed + VAL_SEED_OFFSET, None
    raise ConfigError("training on a folder needs validation data too: pass --val-data PATH or --val-split 0.1")


def _train_holdout(cfg: DistillConfig) -> Holdout | None:
    return Holdout(cfg.data.val_split, "train", cfg.seed) if not cfg.data.val and cfg.data.val_split > 0 else None


def check_run_folder(cfg: DistillConfig, resume: bool) -> Path:
    """Refuse a bad ``--out`` or ``--resume`` before anything is created or trained."""
    from landmarks.cli import check_output_dir

    run_dir = check_output_dir(cfg.out)
    if resume and not (run_dir.is_dir() and any(run_dir.glob("*.state.pt"))):
        raise ConfigError(f"--resume: nothing to resume in {run_dir} (no *.state.pt files)")
    return run_dir


def _train_dataset(cfg: DistillConfig, input_size: int, teacher_size: int | None) -> Any:
    common = {"input_size": input_size, "crop_scale": cfg.data.crop_scale, "augment": AugmentConfig(),
              "seed": cfg.seed, "teacher_size": teacher_size, "cache_images": cfg.data.cache_images}
    train = open_dataset(cfg.data.train, synthetic_count=cfg.data.synthetic_train, holdout=_train_holdout(cfg),
                         **common)
    if not cfg.data.extra_train:
        return train
    return ConcatFaceDataset([train, open_dataset(cfg.data.extra_train, **common)])


def _scan_unlabeled(cfg: DistillConfig, log: Any = print) -> list[Any]:
    """Find the ``--unlabeled`` faces (before anything is trained: a folder without any is an error)."""
    from landmarks.data.unlabeled import load_unlabeled

    scans = load_unlabeled(cfg.data.unlabeled)
    for scan in scans:
        log(f"[distill] {scan.summary()}")
        for bad in scan.skipped[:5]:
            log(f"[distill]   skipped {bad}")
        if len(scan.skipped) > 5:
            log(f"[distill]   ... and {len(scan.skipped) - 5} more skipped")
    return scans


def _with_unlabeled(cfg: DistillConfig, labeled: Any, scans: list[Any], teacher_size: int | None) -> Any:
    """Mix the unlabeled faces into the student's training set (the teacher labels them)."""
    from landmarks.data.unlabeled import MixedFaceDataset, UnlabeledFaceDataset

    records = [r for scan in scans for r in scan.records]
    unlabeled = UnlabeledFaceDataset(records, labeled.num_points, input_size=cfg.student.input_size,
                                     crop_scale=cfg.data.crop_scale, augment=AugmentConfig(), seed=cfg.seed,
                                     teacher_size=teacher_size, cache_images=cfg.data.cache_images)
    return MixedFaceDataset(labeled, unlabeled, cfg.data.unlabeled_ratio, seed=cfg.seed)


def run_distillation(cfg: DistillConfig, *, resume: bool = False, no_kd: bool = False) -> DistillResult:
    """The whole teacher -> student run of ``python -m distill``; see the module docstring."""
    env = DistEnv.from_environ()
    device = resolve_device(cfg.device, env)
    run_dir = check_run_folder(cfg, resume)
    use_teacher = cfg.kd.enabled and not no_kd
    if cfg.data.unlabeled and not use_teacher:
        raise ConfigError("--unlabeled faces are labelled by the teacher: it needs knowledge distillation (no --no-kd)")
    teacher_size = _teacher_input_size(cfg)
    val_spec, val_seed, val_holdout = _val_spec(cfg)
    validator = Validator(val_spec, cfg.data.crop_scale, val_seed, cfg.data.synthetic_val, holdout=val_holdout)
    validator.dataset(cfg.student.input_size)  # a bad validation folder fails before any training
    unlabeled_scans = _scan_unlabeled(cfg) if cfg.data.unlabeled else None
    init_distributed(env, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    common = {
        "seed": cfg.seed,
        "device": device,
        "env": env,
        "num_workers": cfg.data.num_workers,
        "progress": cfg.progress,
    }

    teacher, teacher_path, teacher_source = None, None, "none"
    if use_teacher:
        teacher, teacher_path, teacher_source = _get_teacher(cfg, validator, resume, common)

    # The student's views, cut at its own input size; the teacher's view of each comes with it.
    train_ds = _train_dataset(cfg, cfg.student.input_size, teacher_size if teacher is not None else None)
    num_points = train_ds.num_points
    if teacher is not None:
        _check_teacher_points(teacher_path, num_points)
    if unlabeled_scans:
        train_ds = _with_unlabeled(cfg, train_ds, unlabeled_scans, teacher_size)
    student_meta = _metadata(cfg.student.arch, cfg.student.input_size, cfg.data.crop_scale, num_points)
    student = create_model(cfg.student.arch, num_points=num_points, input_size=cfg.student.input_size).to(device)
    task = StudentTask(
        student,
        cfg.student.input_size,
        student_meta,
        cfg.kd if use_teacher else _no_kd(cfg),
        lambda m: validator(m, student_meta),
        teacher=teacher,
        teacher_size=teacher_size if teacher is not None else None,
        loss=cfg.student.loss,
    )
    task.modules.to(device)
    trainer = Trainer("student", task, train_ds, cfg.student.train, run_dir, **common)
    student_result = trainer.fit(resume=resume and trainer.has_state())
    student = trainer.final_modules["student"]
    student_path = run_dir / "student.pt"
    metrics: dict[str, Any] = {}
    if env.is_main:
        save_checkpoint(
            student_path,
            Checkpoint(
                arch=cfg.student.arch,
                arch_config=student.arch_config,
                state_dict=_contiguous(student.state_dict()),
                metadata=student_meta,
                extra={"kd": use_teacher, "teacher": teacher_source, "config": cfg.to_dict(),
                       "weights": "ema" if cfg.student.train.ema_decay > 0 else "last"},
            ),
        )
        metrics = _final_metrics(cfg, validator, student, student_meta, teacher, student_result, teacher_path)
        write_json(run_dir / "metrics.json", metrics)
        for warning in metrics.get("warnings", []):
            print(f"[distill] WARNING: {warning}", flush=True)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return DistillResult(run_dir, teacher_path, student_path, teacher_source, metrics)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain NCHW tensors in checkpoints, whatever memory format training used."""
    return {k: v.contiguous() for k, v in state.items()}


def _no_kd(cfg: DistillConfig) -> Any:
    from distill.config import replace

    return replace(cfg.kd, enabled=False)


def _teacher_input_size(cfg: DistillConfig) -> int:
    """A loaded teacher's own input size (its metadata), else the configured one."""
    if cfg.teacher.checkpoint:
        return load_checkpoint(cfg.teacher.checkpoint).metadata.input_size
    return cfg.teacher.input_size


def _get_teacher(
    cfg: DistillConfig,
    validator: Validator,
    resume: bool,
    common: dict[str, Any],
) -> tuple[nn.Module, Path, str]:
    device = common["device"]
    if cfg.teacher.checkpoint:
        ckpt = load_checkpoint(cfg.teacher.checkpoint)
        _check_teacher(ckpt, None, cfg.teacher.checkpoint)
        return ckpt.build().to(device).eval(), Path(cfg.teacher.checkpoint), "checkpoint"

    run_dir = Path(cfg.out)
    teacher_path = run_dir / "teacher.pt"
    key = _config_hash({"teacher": asdict(cfg.teacher), "data": _teacher_data_key(cfg), "seed": cfg.seed})
    if teacher_path.is_file():
        ckpt = load_checkpoint(teacher_path)
        if ckpt.extra.get("config_hash") == key:
            _check_teacher(ckpt, None, teacher_path)
            return ckpt.build().to(device).eval(), teacher_path, "cached"

    train_ds = _train_dataset(cfg, cfg.teacher.input_size, None)
    num_points = train_ds.num_points
    meta = _metadata(cfg.teacher.arch, cfg.teacher.input_size, cfg.data.crop_scale, num_points)
    arch_config = {"width": cfg.teacher.width, "num_points": num_points, "input_size": cfg.teacher.input_size}
    teacher = create_model(cfg.teacher.arch, **arch_config).to(device)
    task = TeacherTask(teacher, cfg.teacher, meta, lambda m: validator(m, meta))
    trainer = Trainer("teacher", task, train_ds, cfg.teacher.train, run_dir, **common)
    result = trainer.fit(resume=resume and trainer.has_state())
    teacher = trainer.final_modules["teacher"]
    if common["env"].is_main:
        save_checkpoint(
            teacher_path,
            Checkpoint(
                arch=cfg.teacher.arch,
                arch_config=arch_config,
                state_dict=_contiguous(teacher.state_dict()),
                metadata=meta,
                extra={"config_hash": key, "train_seconds": result.seconds, "config": cfg.to_dict(),
                       "weights": "ema" if cfg.teacher.train.ema_decay > 0 else "last"},
            ),
        )
    return teacher.eval(), teacher_path, "trained"


def _teacher_data_key(cfg: DistillConfig) -> dict[str, Any]:
    """What of the data config decides the teacher (not the student's unlabeled faces)."""
    student_only = ("unlabeled", "unlabeled_ratio", "num_workers", "cache_images")
    return {k: v for k, v in asdict(cfg.data).items() if k not in student_only}


def _check_teacher_points(teacher_path: Path | None, num_points: int) -> None:
    if teacher_path is not None:
        _check_teacher(load_checkpoint(teacher_path), num_points, teacher_path)


def _check_teacher(ckpt: Checkpoint, num_points: int | None, where: Any) -> None:
    if not ckpt.arch.startswith("fan"):
        raise ModelError(f"{where}: teacher checkpoint is a {ckpt.arch!r}, not a FAN model")
    if num_points is not None and ckpt.metadata.num_points != num_points:
        raise ModelError(f"{where}: teacher predicts {ckpt.metadata.num_points} points but the data has {num_points}")


def _model_mb(model: nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6


def _final_metrics(
    cfg: DistillConfig,
    validator: Validator,
    student: nn.Module,
    student_meta: ArtifactMetadata,
    teacher: nn.Module | None,
    student_result: Any,
    teacher_path: Path | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "val_data": validator.describe(),
        "student": {
            "arch": cfg.student.arch,
            "kd": teacher is not None,
            "params": sum(p.numel() for p in student.parameters()),
            "fp32_mb": round(_model_mb(student), 3),
            "train_seconds": round(student_result.seconds, 1),
            **validator(student, student_meta),
        },
        "weight_checksums": student_result.weight_checksums,
    }
    if teacher is not None and teacher_path is not None:
        teacher_ckpt = load_checkpoint(teacher_path)
        meta = teacher_ckpt.metadata
        out["teacher"] = {
            "arch": teacher_ckpt.arch,
            "train_seconds": teacher_ckpt.extra.get("train_seconds"),
            "params": sum(p.numel() for p in teacher.parameters()),
            "fp32_mb": round(_model_mb(teacher), 3),
            **validator(teacher, meta),
        }
        out["warnings"] = teacher_warnings(out["teacher"]["nme_io"], out["student"]["nme_io"])
    return out


def teacher_warnings(teacher_nme: float, student_nme: float) -> list[str]:
    """A teacher no better than its student on validation cannot help it: say so loudly."""
    if teacher_nme < student_nme:
        return []
    return [f"the teacher (val nme_io {teacher_nme:.2f}%) is not better than the student ({student_nme:.2f}%): "
            "knowledge distillation cannot help; train the teacher longer or load a stronger one"]
