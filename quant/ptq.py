"""INT8 post-training quantization with an accuracy gate: ``python -m quant.ptq model.onnx``.

Usage::

    python -m quant.ptq student.onnx --calib data/train --eval data/test --max-regression 0.02
    python -m quant.ptq student.onnx --out student.int8.tflite      # TFLite full-integer

The pipeline (:func:`run_ptq`): check the model and its artifact metadata -> open calibration
and eval sets (disjoint by content hash) -> prepare, calibrate once, convert -> gate against
the FP32 reference in the candidate's runtime -> on reject, keep the most sensitive nodes in
float and retry -> measure latency -> write the report -> place the artifact in the release
folder (beside ``--out``) or in ``rejected/``. Exit 0 pass, 1 reject, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from landmarks.artifact import copy_with_sidecar, read_onnx_metadata
from landmarks.cli import check_output_file, new_parser
from landmarks.coords import DEFAULT_CROP_SCALE
from landmarks.errors import EXIT_OK, EXIT_REJECTED, ConfigError, ModelError, cli_errors
from landmarks.evaluate import Evaluator
from landmarks.metadata import ArtifactMetadata
from quant.accuracy_gate.gate import (
    DEFAULT_MAX_REGRESSION,
    GateConfig,
    GateReport,
    check_disjoint,
    place_artifact,
    run_gate,
)
from quant.backend import Int8Backend, open_backend
from quant.calibration import DEFAULT_CALIB_COUNT, CalibrationReader
from quant.fallback import Attempt, FallbackResult, restore_until_pass
from quant.ort_int8 import StaticInt8Config, load_onnx
from quant.report import QuantReport
from quant.tflite_int8 import TfliteInt8Config

FORMATS = ("onnx", "tflite")
DEFAULT_EVAL_COUNT = 128
EVAL_SEED = 1_000_000  # synthetic eval faces start here; calibration starts at seed 0


@dataclass(frozen=True)
class PtqConfig:
    """One PTQ run; every value is checked here, before anything is read or written."""

    format: str = "onnx"
    calib: str = "synthetic"
    eval: str = "synthetic"
    eval_count: int = DEFAULT_EVAL_COUNT
    gate: GateConfig = field(default_factory=GateConfig)
    onnx: StaticInt8Config = field(default_factory=StaticInt8Config)
    tflite: TfliteInt8Config = field(default_factory=TfliteInt8Config)
    fallback: bool = True
    max_float_nodes: int = 16
    threads: int = 2
    latency: bool = True

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.eval_count < 1:
            raise ConfigError(f"eval_count must be at least 1, got {self.eval_count}")
        if self.max_float_nodes < 0:
            raise ConfigError(f"max_float_nodes must be >= 0, got {self.max_float_nodes}")
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class PtqResult:
    report: QuantReport
    gate: GateReport
    artifact: Path
    report_paths: tuple[Path, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.gate.passed else EXIT_REJECTED


def default_output(model: str | Path, fmt: str = "onnx") -> Path:
    model = Path(model)
    return model.with_name(f"{model.stem}.int8.{fmt}")


def run_ptq(
    model: str | Path,
    out: str | Path | None = None,
    config: PtqConfig | None = None,
    *,
    metadata: ArtifactMetadata | None = None,
    calib_dataset: Any = None,
    eval_dataset: Any = None,
    evaluator: Evaluator | None = None,
    reference: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> PtqResult:
    """Quantize ``model`` (FP32 ONNX), gate it, and place the result; see the module docstring.

    ``metadata`` stands in for an ONNX without metadata keys. Datasets may be passed opened
    (tests, the recipe stage); otherwise ``config.calib``/``config.eval`` are opened. A recipe
    passes its run's ``evaluator`` (so no artifact is evaluated twice) and, for TFLite, the
    exported FP32 ``reference`` that ships beside the INT8 file; the verdict returned is final.
    """
    config = config or PtqConfig()
    model = Path(model)
    out = Path(out) if out is not None else default_output(model, config.format)
    if out.suffix != f".{config.format}":
        raise ConfigError(f"--out {out} does not end in .{config.format} (format {config.format})")
    metadata, input_name = _model_metadata(model, metadata)
    calib_dataset = calib_dataset if calib_dataset is not None else _open(
        config.calib, metadata, seed=0, count=config.onnx.calib_count, what="calibration")
    if evaluator is None:
        eval_dataset = eval_dataset if eval_dataset is not None else _open(
            config.eval, metadata, seed=EVAL_SEED, count=config.eval_count, what="eval")
        evaluator = Evaluator(eval_dataset, name=_name(eval_dataset, config.eval))
    check_disjoint(calib_dataset, evaluator.dataset)
    reader = CalibrationReader(calib_dataset, metadata, input_name, limit=config.onnx.calib_count)
    reader.inputs  # noqa: B018 - decode the calibration set now: unreadable data fails before work

    with tempfile.TemporaryDirectory(prefix="quant.ptq.") as tmp:
        workdir = Path(tmp)
        backend = open_backend(config.format, model, metadata, reader, config, workdir, log,
                               reference=Path(reference) if reference is not None else None)
        result = _gate_with_fallback(backend, _gate_against(backend, metadata, evaluator, config), config, log)
        settings = backend.settings()
        staged = copy_with_sidecar(result.path, workdir / "final" / out.name)
        gate = result.report
        latency = _latency(backend.reference, staged, config) if config.latency else (None, None)
        final = place_artifact(gate, staged, out.parent, out.parent / "rejected")
        report = QuantReport(
            model=str(model),
            artifact=str(final),
            format=config.format,
            runtime=gate.runtime,
            verdict=gate.verdict,
            reason=gate.reason,
            verdict_line=gate.verdict_line(),
            nme_fp32=gate.nme_reference,
            nme_int8=gate.nme_candidate,
            regression=gate.regression,
            max_regression=gate.max_regression,
            bytes_fp32=model.stat().st_size,
            bytes_int8=final.stat().st_size,
            float_nodes=gate.float_nodes,
            latency_fp32_ms=latency[0],
            latency_int8_ms=latency[1],
            threads=config.threads,
            calibration_method=settings.pop("calibration_method"),
            calibration_set=_name(calib_dataset, config.calib),
            calibration_count=len(reader),
            eval_set=gate.eval_set,
            eval_count=gate.eval_count,
            eval_hash=gate.eval_hash,
            settings=settings,
            attempts=tuple(asdict(a) for a in result.attempts),
        )
    paths = report.write(final.with_suffix(""))
    log(f"{'wrote' if gate.passed else 'rejected ->'} {final}")
    return PtqResult(report, gate, final, paths)


def _gate_against(backend: Int8Backend, metadata: ArtifactMetadata, evaluator: Evaluator,
                  config: PtqConfig) -> Callable[[Path, tuple[str, ...]], GateReport]:
    """The gate of one candidate against the backend's FP32 reference, in the candidate's runtime."""
    from landmarks.runtimes import load_predictor

    # an ONNX reference may lack metadata keys (then ``metadata`` came from flags); a .tflite has its sidecar
    reference = load_predictor(backend.reference, num_threads=config.threads,
                               metadata=metadata if backend.format == "onnx" else None)

    def gate(path: Path, float_nodes: tuple[str, ...]) -> GateReport:
        candidate = load_predictor(path, num_threads=config.threads)
        return run_gate(candidate, reference, None, config.gate, evaluator=evaluator, float_nodes=float_nodes)

    return gate


def _gate_with_fallback(backend: Int8Backend, gate: Callable[[Path, tuple[str, ...]], GateReport],
                        config: PtqConfig, log: Callable[[str], None]) -> FallbackResult:
    """Gate the all-INT8 candidate; on reject, widen the weight scales (if that applies) and gate
    again, then keep the most sensitive nodes in float."""
    first_path = backend.build(())
    first = gate(first_path, ())
    log(f"all-INT8 candidate: {first.verdict_line()}")
    earlier: tuple[Attempt, ...] = ()
    if not first.passed and config.fallback and backend.widen():
        earlier = (Attempt.of(first),)
        first_path = backend.build(())
        first = gate(first_path, ())
        log(f"all-INT8 candidate: {first.verdict_line()}")
    if first.passed or not config.fallback or config.max_float_nodes == 0:
        return FallbackResult(first, first_path, (*earlier, Attempt.of(first)))
    log("fallback: ranking nodes by quantization sensitivity")
    ranking = backend.rank(first_path)
    result = restore_until_pass(ranking, backend.build, gate, max_float_nodes=config.max_float_nodes,
                                first=(first_path, first), log=log)
    return replace(result, attempts=(*earlier, *result.attempts))


def _latency(reference: Path, candidate: Path, config: PtqConfig) -> tuple[float, float]:
    from quant.latency import measure

    fp32, int8 = measure([reference, candidate], threads=config.threads)
    return fp32.median_ms, int8.median_ms


def _model_metadata(model: Path, override: ArtifactMetadata | None) -> tuple[ArtifactMetadata, str]:
    """The model's artifact metadata (or ``override``) and the name of its image input."""
    proto = load_onnx(model)
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelError(f"{model}: expected one image input, found {len(inputs)} ({', '.join(inputs)})")
    if override is not None:
        return override, inputs[0]
    try:
        return read_onnx_metadata(proto, where=str(model)), inputs[0]
    except ModelError as err:
        raise ModelError(
            f"{err}; give --input-size (and --num-points, --mean, --std, --layout if not the defaults)"
        ) from None


def _open(spec: str, metadata: ArtifactMetadata, *, seed: int, count: int, what: str) -> Any:
    from landmarks.data import open_dataset
    from landmarks.errors import DataError

    dataset = open_dataset(spec, input_size=metadata.input_size, crop_scale=metadata.crop_scale,
                           seed=seed, synthetic_count=count)
    if len(dataset) == 0:
        raise DataError(f"{what} set {spec!r} is empty")
    return dataset


def _name(dataset: Any, spec: str) -> str:
    name = getattr(dataset, "name", None)
    return str(name) if name else f"{spec} ({len(dataset)} faces)"


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("python -m quant.ptq", __doc__.splitlines()[0])
    p.add_argument("model", help="FP32 ONNX model with artifact metadata")
    p.add_argument("--calib", default="synthetic", help="calibration data: a folder, or synthetic[:N]")
    p.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT, help="calibration images used")
    p.add_argument("--eval", default="synthetic", help="eval set for the gate (disjoint from --calib)")
    p.add_argument("--eval-count", type=int, default=DEFAULT_EVAL_COUNT, help="faces of a synthetic eval set")
    p.add_argument("--max-regression", type=float, default=DEFAULT_MAX_REGRESSION,
                   help="max relative nme_io rise (a fraction; default %(default)s)")
    p.add_argument("--max-abs-regression", type=float, default=None, help="max nme_io rise, percent points")
    p.add_argument("--out", default=None, help="output file (default <stem>.int8.onnx beside the model)")
    p.add_argument("--format", choices=FORMATS, default=None, help="onnx (default) or tflite; from --out's suffix")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="ONNX calibration method")
    p.add_argument("--activation-type", choices=("quint8", "qint8"), default="quint8",
                   help="ONNX activation type (quint8: faster u8s8 kernels on x86)")
    p.add_argument("--weight-granularity", choices=("auto", "per-channel", "per-tensor"), default="auto",
                   help="weight scales. auto: ONNX per-channel only on layers where one scale would lose a "
                        "channel (worst-channel SQNR < 30 dB); TFLite one scale per tensor (its converter has one "
                        "switch); per-channel everywhere if the gate rejects that")
    p.add_argument("--io-type", choices=("float", "int8"), default="float", help="TFLite input/output type")
    p.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=True,
                   help="on reject, keep the most sensitive nodes in float and retry")
    p.add_argument("--max-float-nodes", type=int, default=16, help="bound on nodes the fallback keeps float")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for evaluation and latency")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="measure latency")
    meta = p.add_argument_group("metadata for an ONNX without metadata keys")
    meta.add_argument("--input-size", type=int)
    meta.add_argument("--num-points", type=int, default=68)
    meta.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    meta.add_argument("--color", choices=("RGB", "BGR"), default="RGB")
    meta.add_argument("--mean", default="0.5,0.5,0.5")
    meta.add_argument("--std", default="0.5,0.5,0.5")
    meta.add_argument("--crop-scale", type=float, default=DEFAULT_CROP_SCALE)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("quant.ptq"):
        if args.out is not None:
            check_output_file(args.out)
        fmt = args.format or (Path(args.out).suffix.lstrip(".") if args.out else "onnx")
        if fmt not in FORMATS:
            raise ConfigError(f"--out must end in .onnx or .tflite (or give --format), got {args.out}")
        config = PtqConfig(
            format=fmt,
            calib=args.calib,
            eval=args.eval,
            eval_count=args.eval_count,
            gate=GateConfig(args.max_regression, args.max_abs_regression),
            onnx=StaticInt8Config(method=args.method, activation_type=args.activation_type,
                                  weight_granularity=args.weight_granularity, calib_count=args.calib_count),
            tflite=TfliteInt8Config(io_type=args.io_type, weight_granularity=args.weight_granularity),
            fallback=args.fallback,
            max_float_nodes=args.max_float_nodes,
            threads=args.threads,
            latency=args.latency,
        )
        metadata = _cli_metadata(args)
        result = run_ptq(args.model, args.out, config, metadata=metadata,
                         log=lambda line: print(line, file=sys.stderr))
        print(result.gate.verdict_line())
        return result.exit_code


def _cli_metadata(args: argparse.Namespace) -> ArtifactMetadata | None:
    if args.input_size is None:
        return None
    try:
        mean = tuple(float(v) for v in args.mean.split(","))
        std = tuple(float(v) for v in args.std.split(","))
    except ValueError:
        raise ConfigError(
            f"--mean/--std must be three comma-separated numbers, got {args.mean!r}/{args.std!r}"
        ) from None
    try:
        return ArtifactMetadata(num_points=args.num_points, input_size=args.input_size, layout=args.layout,
                                color=args.color, mean=mean, std=std, crop_scale=args.crop_scale,
                                source="unknown")
    except ModelError as err:
        raise ConfigError(str(err)) from None


if __name__ == "__main__":
    raise SystemExit(main())
