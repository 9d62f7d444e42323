"""The stages of a recipe, each a small class: what its output depends on, and how to make it.

``inputs(ctx)`` returns a JSON-serializable description of everything the stage's outputs
depend on (config sections, sha256 of input files, data fingerprints); the runner hashes it
to decide whether the stage's record is still valid. ``run(ctx, resume)`` does the work and
returns the files it wrote (inside the run folder) and details for downstream stages.

Stages: ``distill`` (teacher + KD student, :func:`distill.pipeline.run_distillation`),
``prune`` (optional, :mod:`distill.prune`), ``export`` (FP32 ONNX / TFLite with parity),
``quantize`` (INT8 ONNX / TFLite, :func:`quant.ptq.run_ptq`), ``gate`` (every artifact against
its reference on the eval set, in the candidate's runtime; release or rejected).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import DataConfig, DistillConfig
from distill.config import replace as replace_config
from landmarks.atomic import write_json
from landmarks.errors import ConfigError, ModelError
from landmarks.evaluate import EvalCache
from landmarks.models.checkpoint import file_sha256
from recipes import data
from recipes.cache import StageRecord, data_fingerprint
from recipes.schema import Recipe

Outputs = tuple[list[Path], dict[str, Any]]


def baseline_config(config: DistillConfig, out: Path) -> DistillConfig:
    """The no-KD twin of a KD run, for ``student.baseline``: same student and data, no teacher,
    no unlabeled faces (nothing could label them), and the same number of optimizer steps, so
    its epochs grow by ``1 / (1 - unlabeled_ratio)`` when the KD run mixes unlabeled faces in."""
    epochs = config.student.train.epochs
    if config.data.unlabeled:
        epochs = round(epochs / (1.0 - config.data.unlabeled_ratio))
    data = replace_config(config.data, unlabeled=None, unlabeled_ratio=DataConfig.unlabeled_ratio)
    student = replace_config(config.student, train=replace_config(config.student.train, epochs=epochs))
    return replace_config(config, out=str(out), data=data, student=student)


def _no_kd_key(config: dict[str, Any]) -> dict[str, Any]:
    """What of a distill config decides a student trained without KD: not the teacher, not the KD
    loss weights (only the ground-truth weight), not the progress bar."""
    return {"data": config["data"], "student": config["student"], "gt_weight": config["kd"]["gt_weight"],
            "seed": config["seed"], "device": config["device"], "out": config["out"]}


BASELINE_DATA = "data_fingerprint.json"


def finished_baseline(config: DistillConfig, data: dict[str, Any]) -> bool:
    """Whether ``config.out`` already holds this baseline, trained to the end on the same data: its
    checkpoint records the config it was trained with (what of it decides a no-KD student must
    match) and ``BASELINE_DATA`` the fingerprints of its folders (``data``). Training is
    deterministic, so retraining it (as long as the KD student) would give the same weights."""
    from landmarks.models.checkpoint import load_checkpoint

    folder = Path(config.out)
    if not all((folder / name).is_file() for name in ("student.pt", "metrics.json", BASELINE_DATA)):
        return False
    if any(folder.glob("*.state.pt")):
        return False
    try:
        same_data = json.loads((folder / BASELINE_DATA).read_text()) == data
        saved = load_checkpoint(folder / "student.pt").extra.get("config")
        return same_data and _no_kd_key(saved) == _no_kd_key(config.to_dict())
    except (ValueError, ModelError, KeyError, TypeError):  # unreadable, or without a distill config
        return False


@dataclass
class Context:
    """What every stage sees: the recipe, the run folder, finished upstream records, a logger."""

    recipe: Recipe
    out: Path
    records: dict[str, StageRecord]
    progress: bool
    log: Callable[[str], None]
    evaluations: EvalCache = field(default_factory=EvalCache)  # every evaluation of this run, once each

    def path(self, rel: str) -> Path:
        return self.out / rel

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.out.resolve()))

    def detail(self, stage: str, key: str) -> Any:
        return self.records[stage].details[key]

    def student_checkpoint(self) -> Path:
        """The student every artifact is exported from: pruned if pruning ran."""
        stage = "prune" if "prune" in self.records else "distill"
        return self.path(self.detail(stage, "student"))

    def work(self, stage: str) -> Path:
        """``work/<stage>/``, emptied: a re-run never mixes its files with an earlier run's."""
        return self.clean_folder(f"work/{stage}")

    def clean_folder(self, rel: str) -> Path:
        folder = self.out / rel
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return folder


# The source behind every stage: the core package and the recipe code that configures stages.
COMMON_CODE = ("landmarks", "recipes/stages.py", "recipes/schema.py", "recipes/data.py", "recipes/cache.py")


class Stage:
    name = ""
    resumable = False  # continues from its own state files after an interrupted run of the same inputs
    code: tuple[str, ...] = COMMON_CODE  # source folders/files whose change invalidates the stage's record

    def enabled(self, recipe: Recipe) -> bool:
        return True

    def inputs(self, ctx: Context) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, ctx: Context, resume: bool) -> Outputs:
        raise NotImplementedError


class DistillStage(Stage):
    """Teacher (trained, reused or loaded) -> KD student; resumes from distill's state files."""

    name = "distill"
    resumable = True
    code = (*COMMON_CODE, "distill")

    def inputs(self, ctx: Context) -> dict[str, Any]:
        r = ctx.recipe
        teacher = r.teacher.model_dump(mode="json")
        if r.teacher.checkpoint:
            teacher["checkpoint"] = file_sha256(r.teacher.checkpoint)
        student = r.student.model_dump(mode="json")
        if r.student.checkpoint:
            student["checkpoint"] = file_sha256(r.student.checkpoint)
        return {
            "seed": r.seed,
            "train": data_fingerprint(r.data.items("train")),
            "val": data_fingerprint(r.data.items("val")),
            "val_split": r.data.val_split,
            "unlabeled": data_fingerprint(r.data.items("unlabeled")),
            "unlabeled_ratio": r.data.unlabeled_ratio,
            "precision": r.precision,
            "crop_scale": r.data.crop_scale,
            "teacher": teacher,
            "student": student,
        }

    def run(self, ctx: Context, resume: bool) -> Outputs:
        from distill.pipeline import run_distillation

        folder = ctx.path("checkpoints")
        folder.mkdir(parents=True, exist_ok=True)
        if ctx.recipe.student.checkpoint:
            return self._from_checkpoint(ctx, folder)
        states = sorted(folder.glob("*.state.pt"))
        if states and not resume:  # left by a run of other inputs: never resume from those
            for state in states:
                state.unlink()
        resume = resume and bool(states)
        if resume:
            ctx.log(f"  resuming training from {', '.join(ctx.rel(s) for s in states)}")
        config = ctx.recipe.distill_config(folder, ctx.progress)
        result = run_distillation(config, resume=resume, no_kd=ctx.recipe.student.no_kd)
        outputs = [result.student_path, folder / "metrics.json"]
        outputs += [p for p in (folder / "teacher_log.json", folder / "student_log.json") if p.is_file()]
        teacher = None
        if result.teacher_path is not None:
            inside = result.teacher_path.resolve().is_relative_to(ctx.out.resolve())
            teacher = ctx.rel(result.teacher_path) if inside else str(result.teacher_path)
            if inside:
                outputs.append(result.teacher_path)
        baseline = None
        if ctx.recipe.student.baseline and not ctx.recipe.student.no_kd:
            base_config = baseline_config(config, folder / "no_kd")
            base_path = base_config.out + "/student.pt"
            inputs = self.inputs(ctx)
            base_data = {k: inputs[k] for k in ("train", "val", "val_split")}
            if finished_baseline(base_config, base_data):
                ctx.log(f"[run] distill: no-KD baseline {base_path} reused (same config and data, finished)")
            else:
                ctx.log(f"[run] distill: the same student without KD, {base_config.student.train.epochs} epochs "
                        "(student.baseline)")
                run_distillation(base_config, resume=resume, no_kd=True)
                write_json(Path(base_config.out) / BASELINE_DATA, base_data)
            baseline = ctx.rel(Path(base_path))
            outputs += [Path(base_path), folder / "no_kd" / "metrics.json"]
        for state in folder.rglob("*.state.pt"):  # training finished: the state files are spent
            state.unlink()
        ctx.log(f"  teacher: {result.teacher_source}; student nme_io {result.metrics['student']['nme_io']:.2f}% (val)")
        for warning in result.metrics.get("warnings", []):
            ctx.log(f"  WARNING: {warning}")
        details = {
            "student": ctx.rel(result.student_path),
            "teacher": teacher,
            "teacher_source": result.teacher_source,
            "baseline": baseline,
            "metrics": result.metrics,
        }
        return outputs, details


    def _from_checkpoint(self, ctx: Context, folder: Path) -> Outputs:
        """A distilled student given by the recipe: copied in with its training logs, not retrained."""
        from landmarks.atomic import write_bytes
        from landmarks.models.checkpoint import load_checkpoint

        r = ctx.recipe
        source = Path(r.student.checkpoint)
        ckpt = load_checkpoint(source)
        if not ckpt.arch.startswith("pfld"):
            raise ModelError(f"{source}: student.checkpoint is a {ckpt.arch!r}, not a PFLD student")
        student = folder / "student.pt"
        write_bytes(student, source.read_bytes())
        outputs = [student]
        for log in ("teacher_log.json", "student_log.json", "metrics.json"):
            if (source.parent / log).is_file():
                write_bytes(folder / log, (source.parent / log).read_bytes())
                outputs.append(folder / log)
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
        ctx.log(f"  student: loaded {source} ({ckpt.arch}); not retrained")
        details = {
            "student": ctx.rel(student),
            "teacher": str(Path(r.teacher.checkpoint).resolve()) if r.teacher.checkpoint else None,
            "teacher_source": "checkpoint" if r.teacher.checkpoint else "none",
            "metrics": metrics,
        }
        return outputs, details


class PruneStage(Stage):
    """Structured channel pruning of the student with KD recovery (``distill.prune``); resumes from
    its finished steps and fine-tuning state files."""

    name = "prune"
    resumable = True
    code = (*COMMON_CODE, "distill")

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.prune.enabled

    def inputs(self, ctx: Context) -> dict[str, Any]:
        r = ctx.recipe
        teacher = ctx.detail("distill", "teacher")
        return {
            "seed": r.seed,
            "student": file_sha256(ctx.path(ctx.detail("distill", "student"))),
            "teacher": file_sha256(_resolve(ctx, teacher)) if teacher else None,
            "prune": r.prune.model_dump(mode="json"),
            "train": data_fingerprint(r.data.items("train")),
            "val": data_fingerprint(r.data.items("val")),
            "val_split": r.data.val_split,
            "crop_scale": r.data.crop_scale,
        }

    def run(self, ctx: Context, resume: bool) -> Outputs:
        teacher = ctx.detail("distill", "teacher")
        folder = ctx.path("checkpoints/prune") if resume else ctx.clean_folder("checkpoints/prune")
        folder.mkdir(parents=True, exist_ok=True)
        if resume:
            ctx.log("  resuming pruning from its finished steps and state files")
        from distill.prune import prune_checkpoint

        r = ctx.recipe
        report = prune_checkpoint(
            ctx.path(ctx.detail("distill", "student")), r.prune_config(), data=r.data.spec("train"),
            val_data=r.data.spec("val"),
            teacher_checkpoint=_resolve(ctx, teacher) if teacher and not r.student.no_kd else None,
            out=folder, seed=r.seed, progress=ctx.progress, log=lambda line: ctx.log(f"  {line}"), resume=resume,
        )
        ctx.log(f"  {_prune_summary(report)}")
        for state in folder.glob("*.state.pt"):  # fine-tuning states: spent once pruning finished
            state.unlink()
        outputs = [report.checkpoint, report.report_path, *sorted(folder.glob("step*_log.json")),
                   *folder.glob("qat_log.json")]
        return outputs, {"student": ctx.rel(report.checkpoint), "report": report.to_dict()}


class ExportStage(Stage):
    """FP32 ONNX and TFLite of the student, each within its parity bound of the torch model."""

    name = "export"
    code = (*COMMON_CODE, "export")

    def inputs(self, ctx: Context) -> dict[str, Any]:
        r = ctx.recipe
        return {
            "student": file_sha256(ctx.student_checkpoint()),
            "export": r.export.model_dump(mode="json"),
            "parity_faces": data_fingerprint(r.data.items("eval")),
            "seed": r.seed,
        }

    def run(self, ctx: Context, resume: bool) -> Outputs:
        from export import ExportConfig, export_checkpoint

        r = ctx.recipe
        folder = ctx.work(self.name)
        checkpoint = ctx.student_checkpoint()
        config = ExportConfig(formats=r.export.formats, opset=r.export.opset, parity_count=r.export.parity_count,
                              num_threads=r.gate.threads)
        faces = data.parity_faces(r, checkpoint, r.export.parity_count)
        artifacts = export_checkpoint(checkpoint, folder, config, name="student", faces=faces)
        outputs, details = [], {}
        for artifact in artifacts:
            key = f"{artifact.format}_{artifact.precision}"
            outputs.append(artifact.path)
            if artifact.sidecar is not None:
                outputs.append(artifact.sidecar)
            details[key] = {"file": ctx.rel(artifact.path), "parity": artifact.parity.to_dict()}
            ctx.log(f"  {artifact.summary()}")
        return outputs, {"artifacts": details}


class QuantizeStage(Stage):
    """INT8 ONNX (ORT QDQ) and INT8 TFLite (full integer) from the FP32 ONNX, with fallback."""

    name = "quantize"
    code = (*COMMON_CODE, "export", "quant")

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.quant.onnx or recipe.quant.tflite

    def inputs(self, ctx: Context) -> dict[str, Any]:
        r = ctx.recipe
        onnx = ctx.path(ctx.detail("export", "artifacts")["onnx_fp32"]["file"])
        return {
            "onnx_fp32": file_sha256(onnx),
            "chain_reference": file_sha256(ctx.path(ctx.detail("distill", "student"))),
            "quant": r.quant.model_dump(mode="json"),
            "gate": r.gate.model_dump(mode="json", exclude={"latency"}),
            "calib": data_fingerprint(r.data.items("calib")),
            "eval": data_fingerprint(r.data.items("eval")),
            "crop_scale": r.data.crop_scale,
            "seed": r.seed,
        }

    def run(self, ctx: Context, resume: bool) -> Outputs:
        from landmarks.artifact import read_onnx_metadata, sidecars
        from quant.ptq import run_ptq
        from recipes.gating import eval_set

        r = ctx.recipe
        folder = ctx.work(self.name)
        exported = ctx.detail("export", "artifacts")
        onnx = ctx.path(exported["onnx_fp32"]["file"])
        metadata = read_onnx_metadata(onnx)
        calib = data.open_calib(r, metadata)
        evaluator = eval_set(r, metadata, ctx.evaluations)
        outputs: list[Path] = []
        details: dict[str, Any] = {}
        for fmt in ("onnx", "tflite"):
            if not getattr(r.quant, fmt):
                continue
            # gated against the FP32 file of its format that ships beside it (the gate stage's reference)
            reference = ctx.path(exported[f"{fmt}_fp32"]["file"]) if f"{fmt}_fp32" in exported else None
            result = run_ptq(onnx, folder / f"student.int8.{fmt}", r.ptq_config(fmt),
                             calib_dataset=calib, evaluator=evaluator, reference=reference,
                             chain_reference=ctx.path(ctx.detail("distill", "student")),
                             log=lambda line: ctx.log(f"  {line}"))
            outputs.append(result.artifact)
            outputs += sidecars(result.artifact)
            outputs += list(result.report_paths)
            details[f"{fmt}_int8"] = {
                "file": ctx.rel(result.artifact),
                "float_nodes": list(result.gate.float_nodes),
                "gate": result.gate.as_dict(),  # the artifact's one verdict; the gate stage places by it
                "calibration": {"set": result.report.calibration_set, "count": result.report.calibration_count,
                                "method": result.report.calibration_method},
                "report": ctx.rel(result.report_paths[0]),
            }
        return outputs, {"artifacts": details}


class GateStage(Stage):
    """Every artifact against its reference on the eval set, in the candidate's runtime."""

    name = "gate"
    code = (*COMMON_CODE, "quant", "recipes/gating.py", "distill/prune/measure.py")

    def inputs(self, ctx: Context) -> dict[str, Any]:
        r = ctx.recipe
        files = {"student": file_sha256(ctx.student_checkpoint()),
                 "chain_reference": file_sha256(ctx.path(ctx.detail("distill", "student")))}
        teacher = ctx.detail("distill", "teacher")
        files["teacher"] = file_sha256(_resolve(ctx, teacher)) if teacher else None
        for stage in ("export", "quantize"):
            if stage in ctx.records:
                for key, item in ctx.detail(stage, "artifacts").items():
                    files[key] = file_sha256(ctx.path(item["file"]))
        return {
            "files": files,
            "gate": r.gate.model_dump(mode="json"),
            "eval": data_fingerprint(r.data.items("eval")),
            "crop_scale": r.data.crop_scale,
            "seed": r.seed,
        }

    def run(self, ctx: Context, resume: bool) -> Outputs:
        from recipes.gating import gate_all

        folder = ctx.work(self.name)
        candidates = {}
        for stage in ("export", "quantize"):
            if stage in ctx.records:
                for key, item in ctx.detail(stage, "artifacts").items():
                    candidates[key] = ctx.path(item["file"])
        quantized = ctx.detail("quantize", "artifacts") if "quantize" in ctx.records else {}
        teacher = ctx.detail("distill", "teacher")
        result = gate_all(
            ctx.recipe,
            candidates,
            ctx.student_checkpoint(),
            _resolve(ctx, teacher) if teacher else None,
            folder,
            baseline_checkpoint=_baseline(ctx),
            chain_checkpoint=ctx.path(ctx.detail("distill", "student")),
            verdicts={name: item["gate"] for name, item in quantized.items() if "gate" in item},
            cache=ctx.evaluations,
            root=ctx.out,
            log=lambda line: ctx.log(f"  {line}"),
        )
        outputs = [p for p in folder.rglob("*") if p.is_file()]
        return outputs, {"results": ctx.rel(result)}


STAGES: tuple[Stage, ...] = (DistillStage(), PruneStage(), ExportStage(), QuantizeStage(), GateStage())


def _baseline(ctx: Context) -> Path | None:
    """The no-KD student of ``student.baseline``, when the distill stage trained one."""
    record = ctx.records.get("distill")
    path = record.details.get("baseline") if record is not None else None
    return ctx.path(path) if path else None


def _prune_summary(report: Any) -> str:
    before, after = report.before, report.after
    nme = f", nme_io {before.nme_io:.2f}% -> {after.nme_io:.2f}%" if after.nme_io is not None else ""
    return (f"pruned {100 * report.param_reduction:.1f}% of parameters ({before.params:,} -> {after.params:,}), "
            f"{100 * report.mac_reduction:.1f}% of MACs{nme}")


def _resolve(ctx: Context, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else ctx.path(path)


def prune_available() -> bool:
    """``distill/prune.py`` is being written alongside; the stage needs it only when enabled."""
    return importlib.util.find_spec("distill.prune") is not None


def check_available(recipe: Recipe) -> None:
    if recipe.prune.enabled and not prune_available():
        raise ConfigError("prune.enabled: this checkout has no distill.prune module yet; set prune.enabled=false")
