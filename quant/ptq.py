"""INT8 post-training quantization with an accuracy gate: ``python -m quant.ptq model.onnx``.

Usage::

    python -m quant.ptq student.onnx --calib data/train --eval data/test --max-regression 0.02
    python -m quant.ptq student.onnx --out student.int8.tflite      # TFLite full-integer

The pipeline (:func:`run_ptq`): check the model and its artifact metadata (or the description
flags of :mod:`landmarks.describe`, for a model exported elsewhere) -> open calibration and eval
sets (disjoint by content hash) -> prepare it for INT8 (:mod:`quant.prepare`: opset, initializers,
input size, the points output) -> calibrate once, convert -> check every candidate and gate it
against the FP32 reference in the candidate's runtime -> on reject, keep the most sensitive nodes
in float and retry -> measure latency -> write the report -> place the artifact in the release
folder (beside ``--out``) or in ``rejected/``. The INT8 model carries the metadata (described
models too, so it describes itself from then on). Exit 0 pass, 1 reject, 2 usage or input error, 3 an
internal error (one line naming the step; the traceback in ``error.log`` beside ``--out``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from landmarks.artifact import copy_with_sidecar
from landmarks.cli import add_progress, add_threads, check_output_file, new_parser, show_progress
from landmarks.describe import add_description_flags, description_from_args
from landmarks.errors import EXIT_OK, EXIT_REJECTED, ConfigError, ModelError, cli_errors, step
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
from quant.ort_int8 import StaticInt8Config
from quant.report import QuantReport
from quant.tflite_int8 import TfliteInt8Config

PROG = "python -m quant.ptq"
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
    threads: int | None = None  # evaluation threads (None: the runtime's choice); latency: this, else 1
    latency: bool = True
    progress: bool = False
    # size: every layer INT8 unless the gate needs float (smallest file); speed: kinds of layers measured
    # slower in INT8 stay float (quant/speed.py), here or per a timing file from the target
    precision_policy: str = "size"
    timings: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.eval_count < 1:
            raise ConfigError(f"eval_count must be at least 1, got {self.eval_count}")
        if self.max_float_nodes < 0:
            raise ConfigError(f"max_float_nodes must be >= 0, got {self.max_float_nodes}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        from quant.speed import check_policy

        check_policy(self.precision_policy)
        if self.timings is not None and self.precision_policy != "speed":
            raise ConfigError("--timings is the speed policy's: add --precision-policy speed")
        if self.timings is not None and not Path(self.timings).is_file():
            raise ConfigError(f"--timings {self.timings}: file not found")


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
    chain_reference: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> PtqResult:
    """Quantize ``model`` (FP32 ONNX), gate it, and place the result; see the module docstring.

    ``metadata`` stands in for an ONNX without metadata keys. Datasets may be passed opened
    (tests, the recipe stage); otherwise ``config.calib``/``config.eval`` are opened. A recipe
    passes its run's ``evaluator`` (so no artifact is evaluated twice) and, for TFLite, the
    exported FP32 ``reference`` that ships beside the INT8 file; the verdict returned is final.
    ``chain_reference`` (the distilled student before pruning: a checkpoint or artifact) adds the
    chain regression, rejected past ``config.gate.max_chain_regression``.
    """
    from landmarks.describe import check_reads_points, model_metadata
    from quant.prepare import load_user_model, prepare_onnx

    config = config or PtqConfig()
    model = Path(model)
    out = Path(out) if out is not None else default_output(model, config.format)
    if out.suffix != f".{config.format}":
        raise ConfigError(f"--out {out} does not end in .{config.format} (format {config.format})")
    proto = load_user_model(model)
    metadata = metadata or model_metadata(model)
    check_reads_points(model, metadata)
    input_name = _image_input(proto)
    calib_dataset = calib_dataset if calib_dataset is not None else _open(
        config.calib, metadata, seed=0, count=config.onnx.calib_count, what="calibration")
    if evaluator is None:
        eval_dataset = eval_dataset if eval_dataset is not None else _open(
            config.eval, metadata, seed=EVAL_SEED, count=config.eval_count, what="eval")
        evaluator = Evaluator(eval_dataset, name=_name(eval_dataset, config.eval), progress=config.progress)
    check_disjoint(calib_dataset, evaluator.dataset)
    reader = CalibrationReader(calib_dataset, metadata, input_name, limit=config.onnx.calib_count)
    reader.inputs  # noqa: B018 - decode the calibration set now: unreadable data fails before work

    with tempfile.TemporaryDirectory(prefix="quant.ptq.") as tmp:
        workdir = Path(tmp)
        prepared = prepare_onnx(model, workdir / "prepared.fp32.onnx", metadata, log)
        with step(f"{config.format} INT8: preparing and calibrating", own_files=True):
            backend = open_backend(config.format, prepared, metadata, reader, config, workdir, log,
                                   reference=Path(reference) if reference is not None else None,
                                   original=model)
        if config.format == "tflite" and reference is None:  # the FP32 TFLite made here must compute the model
            with step("tflite INT8: checking the FP32 TFLite conversion against the ONNX model", own_files=True):
                _check_conversion(model, backend.reference, metadata, calib_dataset)
        gate_one = _gate_against(backend, metadata, evaluator, config, chain_reference)
        result, speed = _gate_with_fallback(backend, gate_one, config, metadata, log)
        settings = {**backend.settings(), "precision_policy": config.precision_policy}
        if speed is not None:
            settings["speed"] = speed.to_dict()
        staged = copy_with_sidecar(result.path, workdir / "final" / out.name)
        gate = result.report
        with step("measuring latency"):
            latency = _latency(backend.reference, staged, config, metadata) if config.latency else (None, None)
        layers = _layer_profile(backend.reference, staged, config, metadata) if config.latency else {}
        if layers:
            log(_layer_table(layers))
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
            threads=_latency_threads(config),
            calibration_method=settings.pop("calibration_method"),
            calibration_set=_name(calib_dataset, config.calib),
            calibration_count=len(reader),
            eval_set=gate.eval_set,
            eval_count=gate.eval_count,
            eval_hash=gate.eval_hash,
            settings=settings,
            attempts=tuple(asdict(a) for a in result.attempts),
            layer_profile=layers,
            chain_reference=gate.chain_reference_label and str(chain_reference),
            nme_chain_reference=gate.nme_chain_reference,
            chain_regression=gate.chain_regression,
            max_chain_regression=gate.max_chain_regression,
        )
    paths = report.write(final.with_suffix(""))
    log(f"{'wrote' if gate.passed else 'rejected ->'} {final}")
    return PtqResult(report, gate, final, paths)


def _gate_against(backend: Int8Backend, metadata: ArtifactMetadata, evaluator: Evaluator, config: PtqConfig,
                  chain_reference: str | Path | None = None) -> Callable[[Path, tuple[str, ...]], GateReport]:
    """The gate of one candidate against the backend's FP32 reference, in the candidate's runtime (and
    against the chain reference, when there is one)."""
    from landmarks.runtimes import load_predictor

    # an ONNX reference may lack metadata keys (then ``metadata`` came from flags); a .tflite has its sidecar
    reference = load_predictor(backend.reference, num_threads=config.threads,
                               metadata=metadata if backend.format == "onnx" else None)
    chain = load_predictor(chain_reference, num_threads=config.threads) if chain_reference is not None else None

    def gate(path: Path, float_nodes: tuple[str, ...]) -> GateReport:
        with step(f"checking the INT8 candidate {path.name}", own_files=True):
            if path.suffix == ".onnx":
                from quant.prepare import check_candidate

                check_candidate(path)
            candidate = load_predictor(path, num_threads=config.threads)
        return run_gate(candidate, reference, None, config.gate, evaluator=evaluator, float_nodes=float_nodes,
                        chain_reference=chain)

    return gate


def _gate_with_fallback(backend: Int8Backend, gate_nodes: Callable[[Path, tuple[str, ...]], GateReport],
                        config: PtqConfig, metadata: ArtifactMetadata,
                        log: Callable[[str], None]) -> tuple[FallbackResult, Any]:
    """Gate the first candidate (all INT8, or what the speed policy keeps float); on reject, widen the
    weight scales (if that applies) and gate again, then keep the most sensitive nodes in float. The
    policy's float layers stay float in every candidate."""
    speed = None
    policy: tuple[str, ...] = ()
    if config.precision_policy == "speed":
        with step(f"{backend.format} INT8: speed policy (timing kinds of layers)", own_files=True):
            speed = _speed_choice(backend, config, metadata, log)
        policy = speed.float_nodes

    def build(nodes: tuple[str, ...]) -> Path:
        return _build(backend, tuple(dict.fromkeys((*policy, *nodes))))

    def gate(path: Path, nodes: tuple[str, ...]) -> GateReport:
        return gate_nodes(path, tuple(dict.fromkeys((*policy, *nodes))))

    return _fallback(backend, build, gate, config, log), speed


def _speed_choice(backend: Int8Backend, config: PtqConfig, metadata: ArtifactMetadata,
                  log: Callable[[str], None]) -> Any:
    from quant.latency import measure
    from quant.speed import choose_by_measurement, choose_from_timings

    kinds = backend.kind_nodes()
    if config.timings is not None:
        return choose_from_timings(config.timings, kinds, log)

    def time(paths: Sequence[Path]) -> list[list[float]]:
        timings = measure(list(paths), threads=_latency_threads(config), input_size=metadata.input_size, rounds=20)
        return [list(t.round_ms) for t in timings]

    return choose_by_measurement(kinds, lambda nodes: _build(backend, nodes), _build(backend, ()), time, log)


def _fallback(backend: Int8Backend, build: Callable[[tuple[str, ...]], Path],
              gate: Callable[[Path, tuple[str, ...]], GateReport], config: PtqConfig,
              log: Callable[[str], None]) -> FallbackResult:
    first_path = build(())
    first = gate(first_path, ())
    log(f"all-INT8 candidate: {first.verdict_line()}")
    if not first.passed and first.step_passed and _reference_past_chain(first):
        log("the FP32 model is itself past the chain budget: keeping nodes in float cannot bring INT8 within it")
        return FallbackResult(first, first_path, (Attempt.of(first),))
    earlier: tuple[Attempt, ...] = ()
    if not first.passed and config.fallback and backend.widen():
        earlier = (Attempt.of(first),)
        first_path = build(())
        first = gate(first_path, ())
        log(f"all-INT8 candidate: {first.verdict_line()}")
    if first.passed or not config.fallback or config.max_float_nodes == 0:
        return FallbackResult(first, first_path, (*earlier, Attempt.of(first)))
    log("fallback: ranking nodes by quantization sensitivity")
    with step(f"{backend.format} INT8: ranking nodes by sensitivity", own_files=True):
        ranking = backend.rank(first_path)
    result = restore_until_pass(ranking, build, gate, max_float_nodes=config.max_float_nodes,
                                first=(first_path, first), log=log)
    return replace(result, attempts=(*earlier, *result.attempts))


def _check_conversion(onnx_model: Path, tflite_model: Path, metadata: ArtifactMetadata, faces: Any,
                      count: int = 16) -> None:
    """The FP32 TFLite converted here against the user's ONNX on a few calibration crops: a conversion
    that changes the model would otherwise pass the gate (the INT8 model is compared with it)."""
    import numpy as np

    from export.config import DEFAULT_BOUND_TFLITE
    from landmarks.runtimes import load_predictor

    crops = np.stack([np.asarray(faces[i]["image"]) for i in range(min(count, len(faces)))])
    expected = load_predictor(onnx_model, num_threads=1, metadata=metadata).predict(crops).points
    got = load_predictor(tflite_model, num_threads=1).predict(crops).points
    worst = float(np.abs(expected - got).max())
    if worst > DEFAULT_BOUND_TFLITE:
        raise ModelError(f"the FP32 TFLite differs from the ONNX model by {worst:.2e} of the crop "
                         f"(bound {DEFAULT_BOUND_TFLITE:.0e}); onnx2tf did not translate it faithfully")


def _layer_profile(reference: Path, candidate: Path, config: PtqConfig,
                   metadata: ArtifactMetadata) -> dict[str, Any]:
    """Batch-1 time per kind of layer of the FP32 reference and the INT8 model, side by side in the
    runtime that ships them (onnxruntime's profiler); "not measured", with the reason, where it cannot be."""
    from quant.profile import LayerProfile, profile_onnx

    threads = _latency_threads(config)
    if candidate.suffix != ".onnx":
        reason = "LiteRT's Python interpreter has no per-op profiler (the speed policy times kinds of layers instead)"
        profiles = {"fp32": LayerProfile(str(reference), "litert", threads, 0, reason=reason),
                    "int8": LayerProfile(str(candidate), "litert", threads, 0, reason=reason)}
    else:
        profiles = {"fp32": profile_onnx(reference, threads=threads, input_size=metadata.input_size),
                    "int8": profile_onnx(candidate, threads=threads, input_size=metadata.input_size)}
    return {name: {"kinds": p.kinds, "total_us": p.total_us, "reason": p.reason, "threads": threads}
            for name, p in profiles.items()}


def _layer_table(layers: dict[str, Any]) -> str:
    from quant.profile import LayerProfile, kind_table

    return kind_table({name: LayerProfile(name, "", v["threads"], 1, kinds=v["kinds"], reason=v["reason"])
                       for name, v in layers.items()})


def _reference_past_chain(report: GateReport) -> bool:
    if report.nme_chain_reference is None or report.max_chain_regression is None:
        return False
    regression = (report.nme_reference - report.nme_chain_reference) / max(report.nme_chain_reference, 1e-12)
    return regression > report.max_chain_regression


def _build(backend: Int8Backend, float_nodes: tuple[str, ...]) -> Path:
    """One INT8 candidate; whatever fails here fails inside the tool (exit 3, naming the step)."""
    kept = f", {len(float_nodes)} node(s) in float" if float_nodes else ""
    with step(f"{backend.format} INT8: building a candidate{kept}", own_files=True):
        return backend.build(float_nodes)


def _latency(reference: Path, candidate: Path, config: PtqConfig, metadata: ArtifactMetadata) -> tuple[float, float]:
    from quant.latency import measure

    fp32, int8 = measure([reference, candidate], threads=_latency_threads(config), input_size=metadata.input_size)
    return fp32.median_ms, int8.median_ms


def _latency_threads(config: PtqConfig) -> int:
    """Batch-1 latency on one thread unless ``--threads`` says otherwise: an edge device's number."""
    return config.threads or 1


def _image_input(proto: Any) -> str:
    """The name of the model's one image input (load_user_model checked there is one)."""
    weights = {t.name for t in proto.graph.initializer}
    return next(i.name for i in proto.graph.input if i.name not in weights)


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
    p = new_parser(PROG, __doc__.splitlines()[0])
    p.add_argument("model", help="FP32 ONNX model with artifact metadata")
    p.add_argument("--calib", default="synthetic", help="calibration data: a folder, or synthetic[:N]")
    p.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT, help="calibration images used")
    p.add_argument("--eval", default="synthetic", help="eval set for the gate (disjoint from --calib)")
    p.add_argument("--eval-count", type=int, default=DEFAULT_EVAL_COUNT, help="faces of a synthetic eval set")
    p.add_argument("--max-regression", type=float, default=DEFAULT_MAX_REGRESSION,
                   help="max relative nme_io rise (a fraction; default %(default)s)")
    p.add_argument("--max-abs-regression", type=float, default=None, help="max nme_io rise, percent points")
    p.add_argument("--chain-reference", default=None, metavar="MODEL",
                   help="the best model of the chain (the distilled student before pruning): also report the "
                        "regression against it")
    p.add_argument("--max-chain-regression", type=float, default=None,
                   help="reject when the regression against --chain-reference exceeds this fraction")
    p.add_argument("--out", default=None, help="output file (default <stem>.int8.onnx beside the model)")
    p.add_argument("--format", choices=FORMATS, default=None, help="onnx (default) or tflite; from --out's suffix")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="calibration method (TFLite: minmax or percentile)")
    p.add_argument("--activation-type", choices=("quint8", "qint8"), default="quint8",
                   help="ONNX activation type (quint8: faster u8s8 kernels on x86)")
    p.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=False,
                   help="ONNX 7-bit weights: x86 CPUs without VNNI (AVX2 only) add u8 x s8 products in 16 bits, "
                        "which saturate with 8-bit weights; the same file runs on any CPU")
    p.add_argument("--weight-granularity", choices=("auto", "per-channel", "per-tensor"), default="auto",
                   help="weight scales. auto: ONNX per-channel only on layers where one scale would lose a "
                        "channel (worst-channel SQNR < 30 dB); TFLite one scale per tensor (its converter has one "
                        "switch); per-channel everywhere if the gate rejects that")
    p.add_argument("--io-type", choices=("float", "int8"), default="float", help="TFLite input/output type")
    p.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=True,
                   help="on reject, keep the most sensitive nodes in float and retry")
    p.add_argument("--max-float-nodes", type=int, default=16, help="bound on nodes the fallback keeps float")
    p.add_argument("--precision-policy", choices=("size", "speed"), default="size",
                   help="size: every layer INT8 unless the gate needs float (smallest file; default); speed: kinds of "
                        "layers measured slower in INT8 stay float (timed here, or from --timings)")
    p.add_argument("--timings", default=None, metavar="FILE",
                   help="speed policy: per-kind timings of the FP32 and INT8 models measured on the target device "
                        "(python -m quant.profile FP32 INT8 --out FILE there)")
    add_threads(p)
    add_progress(p)
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="measure latency")
    add_description_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors(PROG) as errors:
        errors.folder = (Path(args.out) if args.out else default_output(args.model)).resolve().parent
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
            gate=GateConfig(args.max_regression, args.max_abs_regression, args.max_chain_regression),
            onnx=StaticInt8Config(method=args.method, activation_type=args.activation_type,
                                  weight_granularity=args.weight_granularity, reduce_range=args.reduce_range,
                                  calib_count=args.calib_count),
            tflite=TfliteInt8Config(io_type=args.io_type, weight_granularity=args.weight_granularity,
                                    calibration=args.method if fmt == "tflite" else "minmax"),
            fallback=args.fallback,
            max_float_nodes=args.max_float_nodes,
            threads=args.threads,
            latency=args.latency,
            progress=show_progress(args.progress),
            precision_policy=args.precision_policy,
            timings=args.timings,
        )
        from landmarks.describe import model_metadata

        metadata = model_metadata(args.model, description_from_args(args)) if Path(args.model).is_file() else None
        if args.max_chain_regression is not None and args.chain_reference is None:
            raise ConfigError("--max-chain-regression needs --chain-reference MODEL (what the chain is measured from)")
        result = run_ptq(args.model, args.out, config, metadata=metadata, chain_reference=args.chain_reference,
                         log=lambda line: print(line, file=sys.stderr))
        print(result.gate.verdict_line())
        return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
