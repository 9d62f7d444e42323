"""The one place recipe sections become the libraries' frozen configs and opened datasets.

Seeds of synthetic sets (``synthetic:N``): train ``seed``, val ``seed + 10M`` (distill and
prune add it themselves), calibration ``seed`` (the first training faces), eval
``seed + 20M``. Calibration and eval therefore never share a face, as the gate requires.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from landmarks.metadata import ArtifactMetadata
from recipes.schema import DataSpec, Recipe, spec_string

EVAL_SEED_OFFSET = 20_000_000
DEFAULT_SYNTHETIC = 1000  # only used for a bare ``synthetic`` spec


def distill_config(recipe: Recipe, out: Path, progress: bool) -> Any:
    from distill.config import DataConfig, DistillConfig, KDConfig, StudentConfig, TeacherConfig, TrainConfig

    r = recipe
    t, s = r.teacher, r.student
    return DistillConfig(
        data=DataConfig(train=spec_string(r.data.train), val=spec_string(r.data.val) if r.data.val else None,
                        val_split=r.data.val_split,
                        unlabeled=spec_string(r.data.unlabeled) if r.data.unlabeled else None,
                        unlabeled_ratio=r.data.unlabeled_ratio, crop_scale=r.data.crop_scale,
                        synthetic_train=DEFAULT_SYNTHETIC, synthetic_val=DEFAULT_SYNTHETIC // 4,
                        num_workers=r.data.num_workers),
        teacher=TeacherConfig(arch=t.arch, width=t.width, input_size=t.input_size, checkpoint=t.checkpoint,
                              train=TrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
                                                ema_decay=t.ema_decay, precision=r.precision)),
        student=StudentConfig(arch=s.arch, input_size=s.input_size, loss=s.loss,
                              train=TrainConfig(epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                                                ema_decay=s.ema_decay, precision=r.precision)),
        kd=KDConfig(enabled=not s.no_kd, gt_weight=s.kd.gt_weight,
                    output_weight=s.kd.output_weight, feature_weight=s.kd.feature_weight),
        out=str(out),
        device=r.device,
        seed=r.seed,
        progress=progress,
    )


def prune_config(recipe: Recipe) -> Any:
    from distill.config import KDConfig
    from distill.prune import PruneConfig

    p, kd = recipe.prune, recipe.student.kd
    return PruneConfig(ratio=p.ratio, importance=p.importance, steps=p.steps, finetune_epochs=p.finetune_epochs,
                       batch_size=recipe.student.batch_size, lr=p.lr, synthetic_train=DEFAULT_SYNTHETIC,
                       synthetic_val=DEFAULT_SYNTHETIC // 4, val_split=recipe.data.val_split,
                       kd=KDConfig(enabled=not recipe.student.no_kd, gt_weight=kd.gt_weight,
                                   output_weight=kd.output_weight, feature_weight=kd.feature_weight),
                       device=recipe.device)


def prune(recipe: Recipe, student: Path, teacher: Path | None, out: Path, progress: bool, log: Any) -> Any:
    """Run ``distill.prune`` into ``out`` (``pruned.pt``, ``prune_report.json``, logs)."""
    from distill.prune import prune_checkpoint

    teacher = None if recipe.student.no_kd else teacher
    return prune_checkpoint(student, prune_config(recipe), data=spec_string(recipe.data.train),
                            val_data=spec_string(recipe.data.val) if recipe.data.val else None,
                            teacher_checkpoint=teacher, out=out,
                            seed=recipe.seed, progress=progress, log=log)


def calib_spec(recipe: Recipe) -> DataSpec:
    return recipe.data.calib if recipe.data.calib is not None else recipe.data.train


def open_eval(recipe: Recipe, metadata: ArtifactMetadata) -> Any:
    """The eval set, cropped for ``metadata``'s input size and crop scale, never augmented."""
    return _open(recipe.data.eval, metadata, recipe.seed + EVAL_SEED_OFFSET)


def open_calib(recipe: Recipe, metadata: ArtifactMetadata) -> Any:
    return _open(calib_spec(recipe), metadata, recipe.seed)


def _open(spec: DataSpec, metadata: ArtifactMetadata, seed: int) -> Any:
    from landmarks.data import open_dataset

    dataset = open_dataset(spec_string(spec), input_size=metadata.input_size, crop_scale=metadata.crop_scale,
                           seed=seed, synthetic_count=DEFAULT_SYNTHETIC)
    dataset.name = spec_string(spec)
    return dataset


def parity_faces(recipe: Recipe, checkpoint: Path, count: int) -> Any:
    """The first ``count`` eval faces, cropped as the checkpoint expects (export's parity set)."""
    from export.parity import ParityFaces
    from landmarks.models.checkpoint import load_checkpoint

    return ParityFaces.from_dataset(open_eval(recipe, load_checkpoint(checkpoint).metadata), count)


def ptq_config(recipe: Recipe, fmt: str) -> Any:
    from quant.ort_int8 import StaticInt8Config
    from quant.ptq import PtqConfig
    from quant.tflite_int8 import TfliteInt8Config

    q = recipe.quant
    return PtqConfig(
        format=fmt,
        calib=spec_string(calib_spec(recipe)),
        eval=spec_string(recipe.data.eval),
        gate=gate_config(recipe),
        onnx=StaticInt8Config(method=q.method, activation_type=q.activation_type,
                              weight_granularity=q.weight_granularity, calib_count=q.calib_count),
        tflite=TfliteInt8Config(io_type=q.tflite_io_type, weight_granularity=q.weight_granularity),
        fallback=q.fallback,
        max_float_nodes=q.max_float_nodes,
        threads=recipe.gate.threads,
        latency=False,  # the gate stage times every artifact the same way
    )


def gate_config(recipe: Recipe) -> Any:
    from quant.accuracy_gate import GateConfig

    return GateConfig(max_regression=recipe.gate.max_regression, max_abs_regression=recipe.gate.max_abs_regression)


def as_jsonable(obj: Any) -> Any:
    """A report dataclass (or anything with ``to_dict``) as plain JSON values."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return obj


def prune_summary(report: Any) -> str:
    before, after = report.before, report.after
    nme = f", nme_io {before.nme_io:.2f}% -> {after.nme_io:.2f}%" if after.nme_io is not None else ""
    return (f"pruned {100 * report.param_reduction:.1f}% of parameters ({before.params:,} -> {after.params:,}), "
            f"{100 * report.mac_reduction:.1f}% of MACs{nme}")
