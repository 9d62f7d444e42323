"""``python -m distill --teacher fan --student pfld025``: teacher -> distilled student."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from distill.config import (
    PRECISIONS,
    STUDENT_LOSSES,
    DataConfig,
    DistillConfig,
    KDConfig,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
)
from landmarks.cli import add_data, add_device, add_out, add_progress, add_seed, new_parser, show_progress
from landmarks.errors import ConfigError, cli_errors

# OpenMP threads that spin while waiting make every torch step several times slower on shared,
# busy cores; passive waiting costs nothing on an idle machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TEACHER_ALIASES = {"fan": "fan1"}
_DEFAULTS = DistillConfig()
_TEACHER, _STUDENT, _DATA = _DEFAULTS.teacher.train, _DEFAULTS.student.train, _DEFAULTS.data
PROG = "python -m distill"


def build_parser() -> argparse.ArgumentParser:
    from landmarks.models import list_models

    teachers = ["fan", *list_models("fan*")]
    students = list_models("pfld*")
    p = new_parser(
        PROG,
        "Train (or load) a FAN heatmap teacher and distill it into a PFLD student. "
        "With no --data, trains on built-in synthetic faces and finishes in a few minutes on a CPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--teacher", default="fan", help=f"teacher architecture: {', '.join(teachers)} (fan = fan1, sized for a CPU)"
    )
    p.add_argument("--student", default="pfld025", help=f"student architecture: {', '.join(students)}")
    add_data(p)
    p.add_argument("--val-data", default=None, help="validation faces (default: held-out synthetic faces)")
    p.add_argument(
        "--val-split",
        type=float,
        default=_DATA.val_split,
        help="without --val-data: carve this fraction of the training folders' source photos as validation",
    )
    p.add_argument(
        "--extra-data",
        default=None,
        metavar="PATH",
        help="labeled folders for training only, never split into validation (e.g. machine-made labels)",
    )
    p.add_argument(
        "--unlabeled",
        default=None,
        metavar="PATH",
        help="folders of photos or face crops without labels (comma-separated); the teacher labels every view",
    )
    p.add_argument(
        "--unlabeled-ratio", type=float, default=_DATA.unlabeled_ratio, help="share of unlabeled faces per epoch"
    )
    p.add_argument("--teacher-checkpoint", default=None, help="load this FAN checkpoint instead of training one")
    p.add_argument("--epochs", type=int, default=_STUDENT.epochs, help="student epochs")
    p.add_argument("--teacher-epochs", type=int, default=_TEACHER.epochs, help="teacher epochs")
    p.add_argument("--batch-size", type=int, default=_STUDENT.batch_size, help="student batch size")
    p.add_argument("--lr", type=float, default=_STUDENT.lr, help="student learning rate")
    p.add_argument("--teacher-lr", type=float, default=_TEACHER.lr, help="teacher learning rate")
    p.add_argument(
        "--ema-decay",
        type=float,
        default=_STUDENT.ema_decay,
        help="average the weights of both models with this decay (0 = off); the average is validated and saved",
    )
    p.add_argument("--student-loss", default=_DEFAULTS.student.loss, choices=STUDENT_LOSSES,
                   help="ground-truth point loss of the student")
    p.add_argument("--precision", default=_STUDENT.precision, choices=PRECISIONS,
                   help="autocast precision (auto = bf16 where the CPU supports it)")
    p.add_argument("--no-cache", action="store_true", help="decode images on every access instead of caching them")
    p.add_argument("--teacher-width", type=int, default=64, help="teacher channels (256 = original FAN)")
    p.add_argument("--teacher-input-size", type=int, default=128, help="teacher input side, pixels")
    p.add_argument("--no-kd", action="store_true", help="train the same student without a teacher")
    p.add_argument("--kd-output-weight", type=float, default=1.0, help="weight of the teacher-landmark loss")
    p.add_argument(
        "--kd-feature-weight", type=float, default=_DEFAULTS.kd.feature_weight, help="weight of the FitNet feature loss"
    )
    p.add_argument("--synthetic-train", type=int, default=_DATA.synthetic_train, help="synthetic training faces")
    p.add_argument("--synthetic-val", type=int, default=_DATA.synthetic_val, help="synthetic validation faces")
    p.add_argument("--workers", type=int, default=_DATA.num_workers, help="data-loading processes (0: in-process)")
    add_out(p, "runs/distill", "run folder for checkpoints, logs and metrics")
    add_device(p)
    add_seed(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out exactly")
    add_progress(p)
    return p


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    """Validate the flags once and turn them into the typed config the library takes."""
    from landmarks.models import is_model, list_models

    teacher_arch = TEACHER_ALIASES.get(args.teacher, args.teacher)
    if not teacher_arch.startswith("fan") or not is_model(teacher_arch):
        raise ConfigError(f"unknown --teacher {args.teacher!r}; valid: fan, {', '.join(list_models('fan*'))}")
    if not args.student.startswith("pfld") or not is_model(args.student):
        raise ConfigError(f"unknown --student {args.student!r}; valid: {', '.join(list_models('pfld*'))}")
    speed = {"ema_decay": args.ema_decay, "precision": args.precision}
    student_train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, **speed)
    teacher_train = TrainConfig(epochs=args.teacher_epochs, batch_size=_TEACHER.batch_size, lr=args.teacher_lr,
                                **speed)
    return DistillConfig(
        data=DataConfig(
            train=args.data,
            val=args.val_data,
            val_split=args.val_split,
            extra_train=args.extra_data,
            unlabeled=args.unlabeled,
            unlabeled_ratio=args.unlabeled_ratio,
            cache_images=not args.no_cache,
            synthetic_train=args.synthetic_train,
            synthetic_val=args.synthetic_val,
            num_workers=args.workers,
        ),
        teacher=TeacherConfig(
            arch=teacher_arch,
            width=args.teacher_width,
            input_size=args.teacher_input_size,
            checkpoint=args.teacher_checkpoint,
            train=teacher_train,
        ),
        student=StudentConfig(arch=args.student, loss=args.student_loss, train=student_train),
        kd=KDConfig(enabled=not args.no_kd, output_weight=args.kd_output_weight, feature_weight=args.kd_feature_weight),
        out=args.out,
        device=args.device,
        seed=args.seed,
        progress=show_progress(args.progress),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors(PROG) as errors:
        from distill.pipeline import run_distillation

        errors.folder = Path(args.out)
        cfg = config_from_args(args)
        result = run_distillation(cfg, resume=args.resume, no_kd=args.no_kd)
        if result.metrics:
            _print_summary(result)
    return 0


def _print_summary(result: object) -> None:
    metrics = result.metrics
    student = metrics["student"]
    print(
        f"student {student['arch']} ({'KD' if student['kd'] else 'no KD'}): nme_io {student['nme_io']:.2f}% "
        f"on {metrics['val_data']}, {student['params']:,} params, {student['fp32_mb']:.2f} MB fp32"
    )
    if "teacher" in metrics:
        t = metrics["teacher"]
        print(f"teacher {t['arch']} ({result.teacher_source}): nme_io {t['nme_io']:.2f}%, {t['params']:,} params")
    print(f"outputs in {result.run_dir}/: student.pt, teacher.pt, *_log.csv, metrics.json")


if __name__ == "__main__":
    sys.exit(main())
