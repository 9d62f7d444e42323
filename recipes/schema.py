"""The recipe schema: typed, frozen sections validated once, when the YAML file is loaded.

Usage::

    from recipes.schema import load_recipe

    recipe = load_recipe("recipes/quickstart.yaml", overrides=["student.epochs=3"])
    print(recipe.student.epochs)

Unknown keys, wrong types and impossible values raise :class:`~landmarks.errors.ConfigError`
with one line naming the file and the dotted key (``recipes/q.yaml: student.epcohs: unknown
key (did you mean 'epochs'?)``). Values are strict: YAML ``"3"`` is not an integer.
Relative data paths are below ``data.root`` (default ``$LANDMARKS_DATA``, else the current folder).

Sections are the libraries' configs as YAML: a key that a library config has takes its default
from it, and ``to_config()`` (``Recipe.distill_config``, ``prune_config``, ``ptq_config``) builds
that config from the section. Only what a recipe chooses differently is written here.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from distill.config import DataConfig, DistillConfig, KDConfig, StudentConfig, TeacherConfig, TrainConfig
from distill.prune.config import PruneConfig
from landmarks.data.specs import DATA_ROOT_ENV, is_synthetic_spec
from landmarks.errors import ConfigError
from quant.accuracy_gate.gate import GateConfig
from quant.ort_int8 import StaticInt8Config
from quant.ptq import PtqConfig
from quant.tflite_int8 import TfliteInt8Config

ARTIFACTS = ("onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_int8")
# A bare ``synthetic`` spec: this many faces (training), a quarter of it for validation.
SYNTHETIC_COUNT = 1000

# The libraries' defaults, read from their frozen configs: each is written there, once. What a
# recipe chooses differently (a bigger teacher, longer training, real validation sets) is
# written below, in its section.
_DATA, _TEACHER, _STUDENT, _KD = DataConfig(), TeacherConfig(), StudentConfig(), KDConfig()
_ONNX_INT8, _TFLITE_INT8, _GATE = StaticInt8Config(), TfliteInt8Config(), GateConfig()
_PTQ = PtqConfig()


def _prune_default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(PruneConfig) if f.name == name)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


DataSpec = str | Annotated[tuple[str, ...], Strict(False)]  # YAML lists are accepted as tuples


def spec_items(spec: DataSpec) -> tuple[str, ...]:
    """A data spec as its parts: ``"a"`` -> ``("a",)``; a list stays a list."""
    return (spec,) if isinstance(spec, str) else tuple(spec)


def spec_string(spec: DataSpec) -> str:
    """The comma-joined form ``landmarks.data.open_dataset`` and ``distill`` take."""
    return ",".join(spec_items(spec))


def _check_spec(spec: DataSpec) -> DataSpec:
    items = spec_items(spec)
    if not items:
        raise ValueError("needs at least one dataset")
    for item in items:
        if item == "synthetic" or item.startswith("synthetic:"):
            count = item.removeprefix("synthetic").removeprefix(":")
            if count and (not count.isdigit() or int(count) < 1):
                raise ValueError(f"expected 'synthetic' or 'synthetic:N' with N >= 1, got {item!r}")
    return spec


DATA_FIELDS = ("train", "val", "unlabeled", "calib", "eval")


class DataSection(_Section):
    """Where faces come from: a folder (or list of folders) or ``synthetic:N``.

    Relative folders are below ``root``: the recipe's ``data.root``, else ``$LANDMARKS_DATA``, else
    the current folder. The config keeps the names as written (what the manifest records); the
    stages read :meth:`items` / :meth:`spec`, the resolved paths.

    Synthetic seeds (:mod:`landmarks.data.specs`): train ``seed``, val ``seed + VAL_SEED_OFFSET``
    (distill's own), calib ``seed`` (the first training faces), eval ``seed + EVAL_SEED_OFFSET``;
    calibration and eval never share a face.
    """

    root: str | None = None  # folder of the relative dataset paths below; default $LANDMARKS_DATA, else "."
    train: DataSpec = "synthetic:1500"
    val: DataSpec | None = "synthetic:200"  # null: carve val_split of the training folders instead
    val_split: float = Field(_DATA.val_split, ge=0.0, lt=1.0)
    unlabeled: DataSpec | None = _DATA.unlabeled  # folders of faces without labels, labelled by the teacher
    unlabeled_ratio: float = Field(_DATA.unlabeled_ratio, gt=0.0, lt=1.0)
    calib: DataSpec | None = None  # default: the training data
    eval: DataSpec = "synthetic:200"
    crop_scale: float = Field(_DATA.crop_scale, gt=0.5, le=4.0)
    num_workers: int = Field(_DATA.num_workers, ge=0, le=16)

    @model_validator(mode="after")
    def _has_validation(self) -> DataSection:
        if self.val is None and self.val_split == 0 and not all(
                s.startswith("synthetic") for s in spec_items(self.train)):
            raise _KeyError("data.val", "training folders need validation: name data.val or set data.val_split")
        return self

    @field_validator(*DATA_FIELDS)
    @classmethod
    def _specs(cls, value: DataSpec | None) -> DataSpec | None:
        return value if value is None else _check_spec(value)

    @model_validator(mode="after")
    def _folders_exist(self) -> DataSection:
        base = self.base()
        if self.root is not None and not base.is_dir():
            raise _KeyError("data.root", f"no such folder {self.root!r}")
        for name in DATA_FIELDS:
            if getattr(self, name) is None:
                continue
            for written, path in zip(spec_items(getattr(self, name)), self.items(name), strict=True):
                if not is_synthetic_spec(path) and not Path(path).is_dir():
                    where = f"{base}, from {'data.root' if self.root is not None else '$' + DATA_ROOT_ENV}" if (
                        self.root is not None or os.environ.get(DATA_ROOT_ENV)) else (
                        f"{os.getcwd()}; set data.root or ${DATA_ROOT_ENV} to the folder of your datasets")
                    raise _KeyError(f"data.{name}", f"no such folder {written!r} (relative to {where})")
        return self

    def base(self) -> Path:
        """The folder relative dataset paths are below."""
        return Path(self.root or os.environ.get(DATA_ROOT_ENV) or ".")

    def items(self, name: str) -> tuple[str, ...] | None:
        """The datasets of field ``name`` (``train``, ``val``, ``calib``, ...) as paths to open; ``calib``
        defaults to the training data."""
        spec = getattr(self, name)
        if name == "calib" and spec is None:
            spec = self.train
        if spec is None:
            return None
        base = self.base()
        return tuple(item if is_synthetic_spec(item) or Path(item).is_absolute() else str(base / item)
                     for item in spec_items(spec))

    def spec(self, name: str) -> str | None:
        """:meth:`items` in the comma-joined form ``open_dataset`` and ``distill`` take."""
        items = self.items(name)
        return ",".join(items) if items else None

    def name(self, name: str) -> str | None:
        """The datasets of field ``name`` as the recipe names them, comma-joined (reports, manifests)."""
        spec = getattr(self, name) if name != "calib" or self.calib is not None else self.train
        return spec_string(spec) if spec else None

    def to_config(self) -> DataConfig:
        return DataConfig(train=self.spec("train"), val=self.spec("val"), val_split=self.val_split,
                          unlabeled=self.spec("unlabeled"), unlabeled_ratio=self.unlabeled_ratio,
                          crop_scale=self.crop_scale, synthetic_train=SYNTHETIC_COUNT,
                          synthetic_val=SYNTHETIC_COUNT // 4, num_workers=self.num_workers)


def _existing_file(value: str | None) -> str | None:
    if value is not None and not Path(value).is_file():
        raise ValueError(f"no such file {value!r}")
    return value


ExistingFile = Annotated[str | None, AfterValidator(_existing_file)]


def _train_config(section: TeacherSection | StudentSection, precision: str) -> TrainConfig:
    """The training budget of the teacher or student section (the rest: TrainConfig's defaults)."""
    return TrainConfig(epochs=section.epochs, batch_size=section.batch_size, lr=section.lr,
                       ema_decay=section.ema_decay, precision=precision)


class TeacherSection(_Section):
    """The FAN heatmap teacher; ``checkpoint`` loads one instead of training."""

    arch: str = "fan2"
    width: int = Field(_TEACHER.width, ge=8, le=256)
    input_size: int = Field(_TEACHER.input_size, ge=32, le=512, multiple_of=4)
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(_TEACHER.train.batch_size, ge=1)
    lr: float = Field(_TEACHER.train.lr, gt=0.0, le=1.0)
    ema_decay: float = Field(_TEACHER.train.ema_decay, ge=0.0, lt=1.0)
    checkpoint: ExistingFile = _TEACHER.checkpoint

    @field_validator("arch")
    @classmethod
    def _arch(cls, value: str) -> str:
        return _check_arch(value, "fan*")

    def to_config(self, precision: str) -> TeacherConfig:
        return TeacherConfig(arch=self.arch, width=self.width, input_size=self.input_size,
                             checkpoint=self.checkpoint, train=_train_config(self, precision))


class KDSection(_Section):
    """Student loss weights: ground truth, teacher landmarks, FitNet features."""

    gt_weight: float = Field(_KD.gt_weight, ge=0.0)
    output_weight: float = Field(_KD.output_weight, ge=0.0)
    feature_weight: float = Field(_KD.feature_weight, ge=0.0)

    def to_config(self, enabled: bool) -> KDConfig:
        return KDConfig(enabled=enabled, gt_weight=self.gt_weight, output_weight=self.output_weight,
                        feature_weight=self.feature_weight)


class StudentSection(_Section):
    """The PFLD student; ``checkpoint`` starts the chain from an already distilled student."""

    arch: str = _STUDENT.arch
    input_size: int = Field(_STUDENT.input_size, ge=32, le=512)
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(_STUDENT.train.batch_size, ge=1)
    lr: float = Field(_STUDENT.train.lr, gt=0.0, le=1.0)
    ema_decay: float = Field(_STUDENT.train.ema_decay, ge=0.0, lt=1.0)
    loss: Literal["pfld", "wing"] = _STUDENT.loss
    no_kd: bool = not _KD.enabled
    # Also train the same student without KD (no unlabeled faces, the same optimizer steps: stages.baseline_config);
    # the report compares the three models.
    baseline: bool = False
    kd: KDSection = KDSection()
    checkpoint: ExistingFile = None

    @field_validator("arch")
    @classmethod
    def _arch(cls, value: str) -> str:
        return _check_arch(value, "pfld*")

    def to_config(self, precision: str) -> StudentConfig:
        return StudentConfig(arch=self.arch, input_size=self.input_size, loss=self.loss,
                             train=_train_config(self, precision))

    def kd_config(self) -> KDConfig:
        return self.kd.to_config(enabled=not self.no_kd)


class PruneSection(_Section):
    """Structured channel pruning of the student, with KD fine-tuning to recover.

    ``ratio: auto`` is accuracy-aware: the student is pruned toward ``max_ratio`` in ``steps`` steps
    (gradually, recovering with KD after each), and the run keeps the last step whose validation
    nme_io stays within ``budget`` of the unpruned student's (never the test set). A number with a
    ``budget`` does the same toward that ratio; without one, every step is kept.
    """

    enabled: bool = False
    ratio: Annotated[float, Field(gt=0.0, lt=1.0)] | Literal["auto"] = 0.3
    budget: float | None = Field(None, ge=0.0, le=1.0)
    max_ratio: float = Field(0.6, gt=0.0, lt=1.0)
    importance: Literal["l1", "l2", "taylor", "bn"] = _prune_default("importance")
    steps: int = Field(_prune_default("steps"), ge=1, le=100)
    finetune_epochs: int = Field(_prune_default("finetune_epochs"), ge=0)
    lr: float = Field(_prune_default("lr"), gt=0.0, le=1.0)
    ema_decay: float = Field(_prune_default("ema_decay"), ge=0.0, lt=1.0)  # recovery ends on the weight average
    # Quantization-aware epochs at the end (distill/qat.py): the INT8 exporters then lose less.
    qat_epochs: int = Field(_prune_default("qat_epochs"), ge=0)
    qat_lr: float = Field(_prune_default("qat_lr"), gt=0.0, le=1.0)

    def to_config(self, student: StudentSection, data: DataSection, device: str) -> PruneConfig:
        """Fine-tuning uses the student's batch size and KD weights, validation the data's split."""
        return PruneConfig(ratio=self.max_ratio if self.ratio == "auto" else self.ratio, budget=self.budget,
                           importance=self.importance, steps=self.steps,
                           finetune_epochs=self.finetune_epochs, qat_epochs=self.qat_epochs, qat_lr=self.qat_lr,
                           batch_size=student.batch_size, lr=self.lr, ema_decay=self.ema_decay,
                           synthetic_train=SYNTHETIC_COUNT, synthetic_val=SYNTHETIC_COUNT // 4,
                           val_split=data.val_split, kd=student.kd_config(), device=device)


class ExportSection(_Section):
    formats: Annotated[tuple[Literal["onnx", "tflite"], ...], Strict(False)] = Field(("onnx", "tflite"), min_length=1)
    opset: int = Field(17, ge=17)
    parity_count: int = Field(32, ge=1)

    @field_validator("formats")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"format listed twice: {', '.join(value)}")
        return value


class QuantSection(_Section):
    """INT8 post-training quantization of the FP32 ONNX (ORT QDQ) and to TFLite full-integer."""

    onnx: bool = True
    tflite: bool = True
    method: Literal["minmax", "entropy", "percentile"] = _ONNX_INT8.method  # both formats; entropy: ONNX only
    activation_type: Literal["quint8", "qint8"] = _ONNX_INT8.activation_type
    weight_granularity: Literal["auto", "per-channel", "per-tensor"] = _ONNX_INT8.weight_granularity
    calib_count: int = Field(_ONNX_INT8.calib_count, ge=1)
    # ONNX 7-bit weights: x86 without VNNI adds u8 x s8 pairs in saturating 16 bits (quant/ort_int8.py)
    reduce_range: bool = _ONNX_INT8.reduce_range
    tflite_io_type: Literal["float", "int8"] = _TFLITE_INT8.io_type
    # weight_granularity auto: the worst-channel SQNR from which a TFLite layer gets one weight scale
    # (a TFLite per-channel tensor costs 24 bytes a channel, against 8 in ONNX)
    tflite_min_weight_sqnr_db: float = Field(_TFLITE_INT8.min_weight_sqnr_db, ge=0.0, le=100.0)
    fallback: bool = _PTQ.fallback
    max_float_nodes: int = Field(_PTQ.max_float_nodes, ge=0)

    def onnx_config(self, fmt: str = "onnx") -> StaticInt8Config:
        """The ORT settings; for a TFLite run only its calibration count counts."""
        return StaticInt8Config(method=self.method if fmt == "onnx" else "minmax",
                                activation_type=self.activation_type,
                                weight_granularity=self.weight_granularity, reduce_range=self.reduce_range,
                                calib_count=self.calib_count)

    def tflite_config(self) -> TfliteInt8Config:
        return TfliteInt8Config(io_type=self.tflite_io_type, weight_granularity=self.weight_granularity,
                                min_weight_sqnr_db=self.tflite_min_weight_sqnr_db,
                                calibration="percentile" if self.method == "percentile" else "minmax")


class GateSection(_Section):
    """docs/DESIGN.md, "Gate": relative (and optionally absolute, NME points) regression bounds."""

    max_regression: float = Field(_GATE.max_regression, ge=0.0, le=1.0)
    max_abs_regression: float | None = Field(_GATE.max_abs_regression, ge=0.0, le=100.0)
    # against the distilled student before pruning (the chain); null: reported, not enforced
    max_chain_regression: float | None = Field(_GATE.max_chain_regression, ge=0.0, le=1.0)
    latency: bool = True
    threads: int = Field(2, ge=1, le=64)  # evaluation threads
    latency_threads: int = Field(1, ge=1, le=64)  # batch-1 latency: one thread, as on a phone's core

    def to_config(self) -> GateConfig:
        return GateConfig(max_regression=self.max_regression, max_abs_regression=self.max_abs_regression,
                          max_chain_regression=self.max_chain_regression)


class ArtifactsSection(_Section):
    required: Annotated[tuple[Literal["onnx_fp32", "onnx_int8", "tflite_fp32", "tflite_int8"], ...], Strict(False)] = (
        ARTIFACTS
    )


class Recipe(_Section):
    """A whole chain: teacher -> distill -> prune -> export -> quantize -> gate."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    data: DataSection = DataSection()
    teacher: TeacherSection = TeacherSection()
    student: StudentSection = StudentSection()
    prune: PruneSection = PruneSection()
    export: ExportSection = ExportSection()
    quant: QuantSection = QuantSection()
    gate: GateSection = GateSection()
    artifacts: ArtifactsSection = ArtifactsSection()

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.quant.tflite and self.quant.method == "entropy":
            raise _KeyError("quant.method", "entropy calibration is ONNX's only; with quant.tflite use minmax or "
                            "percentile")
        if self.prune.ratio == "auto" and self.prune.budget is None:
            raise _KeyError("prune.budget", "prune.ratio: auto needs a budget (the largest validation nme_io "
                            "rise to accept, e.g. 0.03)")
        formats = self.export.formats
        if (self.quant.onnx or self.quant.tflite) and "onnx" not in formats:
            raise _KeyError("export.formats", "INT8 quantization starts from the FP32 ONNX: add onnx")
        if self.quant.tflite and "tflite" not in formats:
            raise _KeyError("export.formats", "quant.tflite gates INT8 TFLite against the FP32 TFLite: add tflite")
        produced = set(self.produced())
        for name in self.artifacts.required:
            if name not in produced:
                raise _KeyError("artifacts.required", f"{name!r} is never produced by this recipe "
                                f"(produced: {', '.join(self.produced()) or 'none'})")
        return self

    def produced(self) -> tuple[str, ...]:
        """Names of the artifacts this recipe makes, in report order."""
        out = [f"{fmt}_fp32" for fmt in ("onnx", "tflite") if fmt in self.export.formats]
        out += [f"{fmt}_int8" for fmt in ("onnx", "tflite") if getattr(self.quant, fmt)]
        return tuple(out)

    def resolved(self) -> dict[str, Any]:
        """The config after defaults and overrides, JSON-ready (for the manifest)."""
        return self.model_dump(mode="json")

    # -- the libraries' configs ----------------------------------------------------------------

    def distill_config(self, out: Path, progress: bool) -> DistillConfig:
        return DistillConfig(data=self.data.to_config(), teacher=self.teacher.to_config(self.precision),
                             student=self.student.to_config(self.precision), kd=self.student.kd_config(),
                             out=str(out), device=self.device, seed=self.seed, progress=progress)

    def prune_config(self) -> PruneConfig:
        return self.prune.to_config(self.student, self.data, self.device)

    def ptq_config(self, fmt: str) -> PtqConfig:
        """``quant.ptq`` for one format; latency is left to the gate stage, which times every artifact alike."""
        return PtqConfig(format=fmt, calib=self.data.spec("calib"), eval=self.data.spec("eval"),
                         gate=self.gate.to_config(), onnx=self.quant.onnx_config(fmt),
                         tflite=self.quant.tflite_config(), fallback=self.quant.fallback,
                         max_float_nodes=self.quant.max_float_nodes, threads=self.gate.threads, latency=False)


class _KeyError(ValueError):
    """A cross-field problem attributed to one dotted key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


def _check_arch(value: str, pattern: str) -> str:
    from landmarks.models import is_model, list_models

    valid = list_models(pattern)
    if value not in valid or not is_model(value):
        raise ValueError(f"unknown architecture {value!r}; valid: {', '.join(valid)}")
    return value


# -- loading -----------------------------------------------------------------------------------


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, apply ``key=value`` overrides, validate; every problem is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got a {type(data).__name__}")
    data.setdefault("name", path.stem)
    for override in overrides:
        apply_override(data, override)
    return validate(data, str(path))


def apply_override(data: dict[str, Any], override: str) -> None:
    """``student.epochs=3`` sets ``data["student"]["epochs"] = 3`` (value parsed as YAML)."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {override!r}: expected key=value, e.g. student.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {override!r}: the value is not valid YAML") from None
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {override!r}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def validate(data: dict[str, Any], source: str) -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        first = _describe(errors[0], data)
        others = len({_describe(e, data).split(":")[0] for e in errors[1:]} - {first.split(":")[0]})
        more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
        raise ConfigError(f"{source}: {first}{more}") from None


def _describe(error: dict[str, Any], data: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    original = ctx.get("error")
    if isinstance(original, _KeyError):
        return f"{original.key}: {original.message}"
    union = any(p == "str" or p.startswith("tuple[") for p in loc)
    if loc and loc[-1] in ("constrained-float", "literal['auto']"):  # prune.ratio: a fraction or auto
        key = ".".join(p for p in loc if p not in ("constrained-float", "literal['auto']"))
        return f"{key}: must be a fraction in (0, 1) or auto (got {value!r})"
    loc = [p for p in loc if p != "str" and not p.startswith("tuple[")]  # union member tags
    key = ".".join(_index(p) for p in loc).replace(".[", "[") or "(top level)"
    got = f" (got {value!r})"
    if union and kind in ("string_type", "tuple_type"):
        return f"{key}: must be a dataset (a folder or synthetic:N) or a list of them{got}"
    if kind == "extra_forbidden":
        return f"{key}: unknown key{_suggest(loc, data)}"
    if kind == "missing":
        return f"{key}: required key missing"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{key}: must be {bounds[kind]} {limit}{got}"
    if kind == "multiple_of":
        return f"{key}: must be a multiple of {ctx.get('multiple_of')}{got}"
    if kind == "literal_error":
        return f"{key}: must be one of {ctx.get('expected')}{got}"
    types = {"int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
             "string_type": "a string", "tuple_type": "a list", "model_type": "a section (mapping)",
             "model_attributes_type": "a section (mapping)", "dict_type": "a section (mapping)"}
    if kind in types:
        return f"{key}: must be {types[kind]}{got}"
    if kind == "too_short":
        return f"{key}: must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{key}: must be letters, digits, '_', '.', '-'{got}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message}"


def _index(part: str) -> str:
    return f"[{part}]" if part.isdigit() else part


def _suggest(loc: list[str], data: dict[str, Any]) -> str:
    section = Recipe
    for part in loc[:-1]:
        field = section.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        section = annotation
    close = difflib.get_close_matches(loc[-1], list(section.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(section.model_fields)}"
