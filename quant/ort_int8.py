"""ONNX static INT8 with onnxruntime's quantization tooling, as three small passes.

``prepare`` (``quant_pre_process``: shape inference + graph optimization) -> ``calibrate``
(tensor ranges from a :class:`~quant.calibration.CalibrationReader`, cached as JSON so the
fallback loop re-quantizes without re-running calibration) -> ``convert`` (QDQ graph with
per-tensor or per-channel weight scales chosen per layer by :mod:`quant.granularity`, slimmed
by :mod:`quant.onnx_slim`, artifact metadata copied from the FP32 model).

Default types: QUInt8 activations with QInt8 weights (U8S8). Measured on pfld025
(onnxruntime 1.32, x86 with AVX-512 VNNI): with U8S8 the CPU provider fuses every QDQ conv and
add into QLinearConv/QLinearAdd (43 + 9 nodes), and INT8 takes 0.64x FP32's time (300-W
student, 1 thread, ``benchmarks/results/quant_int8.md``). With S8S8 it fuses only 29 convs:
the depthwise convs and the residual adds stay as DequantizeLinear -> float op ->
QuantizeLinear (75 DQ, 36 Q nodes) and 24 layout Transposes are added, so INT8 runs slower
than FP32 (1.1x-3x FP32's time across our runs). x86 integer kernels are built around
``u8 x s8`` multiply-accumulate (AVX2 ``vpmaddubsw``, VNNI ``vpdpbusd``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landmarks.artifact import write_onnx_metadata
from landmarks.atomic import atomic_path
from landmarks.errors import ConfigError, ModelError
from landmarks.metadata import ArtifactMetadata
from quant.calibration import DEFAULT_CALIB_COUNT
from quant.granularity import DEFAULT_MIN_SQNR_DB, GRANULARITIES, WeightChoice, choose, tensor_overrides
from quant.onnx_slim import compact_names, strip_zero_points

METHODS = ("minmax", "entropy", "percentile")
QTYPES = ("quint8", "qint8")


@dataclass(frozen=True)
class StaticInt8Config:
    """How ONNX static INT8 is done; a bad value is a :class:`ConfigError` here, before any work."""

    method: str = "minmax"
    activation_type: str = "quint8"
    weight_type: str = "qint8"
    weight_granularity: str = "auto"
    min_weight_sqnr_db: float = DEFAULT_MIN_SQNR_DB
    reduce_range: bool = False
    percentile: float = 99.999
    calib_count: int = DEFAULT_CALIB_COUNT

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", str(self.method).lower())
        if self.method not in METHODS:
            raise ConfigError(f"unknown calibration method {self.method!r}; valid: {', '.join(METHODS)}")
        for name in ("activation_type", "weight_type"):
            value = str(getattr(self, name)).lower()
            if value not in QTYPES:
                raise ConfigError(f"{name} must be one of {', '.join(QTYPES)}, got {value!r}")
            object.__setattr__(self, name, value)
        if self.weight_granularity not in GRANULARITIES:
            raise ConfigError(f"weight_granularity must be one of {', '.join(GRANULARITIES)}, "
                              f"got {self.weight_granularity!r}")
        if not 0.0 <= self.min_weight_sqnr_db <= 100.0:
            raise ConfigError(f"min_weight_sqnr_db must be in [0, 100], got {self.min_weight_sqnr_db}")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.calib_count < 1:
            raise ConfigError(f"calib_count must be at least 1, got {self.calib_count}")


def load_onnx(path: str | os.PathLike[str]) -> Any:
    """Load and check an ONNX file; not a file, not ONNX or an invalid graph is a ModelError."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf raises DecodeError, onnx its own; all mean "not ONNX"
        raise ModelError(f"{path}: not an ONNX model ({_first_line(err)})") from None
    if not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (no graph nodes)")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ModelError(f"{path}: invalid ONNX graph ({_first_line(err)})") from None
    return model


def prepare(model_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """``quant_pre_process``: shape inference and graph optimization ORT recommends before INT8."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(model_path), str(out_path), skip_symbolic_shape=False)
    except Exception as err:  # shape inference raises many types on a malformed graph
        raise ModelError(f"{model_path}: quantization pre-processing failed ({_first_line(err)})") from None
    return Path(out_path)


def calibrate(
    prepared_path: str | os.PathLike[str],
    reader: Any,
    config: StaticInt8Config,
    cache_path: str | os.PathLike[str],
) -> Path:
    """Collect tensor ranges once and save them to ``cache_path`` (ORT's calibration cache)."""
    with tempfile.TemporaryDirectory(prefix="quant.calib.") as tmp:
        convert(prepared_path, Path(tmp) / "calib.onnx", reader, config, cache_path=cache_path)
    return Path(cache_path)


def convert(
    prepared_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    reader: Any,
    config: StaticInt8Config,
    *,
    cache_path: str | os.PathLike[str] | None = None,
    nodes_to_exclude: tuple[str, ...] = (),
    metadata: ArtifactMetadata | None = None,
    compact: bool = True,
) -> Path:
    """Write the QDQ INT8 model atomically, keeping ``nodes_to_exclude`` in float.

    With an existing ``cache_path`` the stored ranges are used and ``reader`` is not read.
    ``compact=False`` keeps onnxruntime's tensor names, which ``qdq_loss_debug`` matches on.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config.method]
    qtype = {"quint8": QuantType.QUInt8, "qint8": QuantType.QInt8}
    extra: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": False}
    overrides = tensor_overrides(weight_choices(prepared_path, config))
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    if config.method == "percentile":
        extra["CalibPercentile"] = config.percentile
    if reader is not None:
        reader.rewind()
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        quantize_static(
            str(prepared_path),
            str(tmp),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=False,  # per-channel weights come from the overrides
            reduce_range=config.reduce_range,
            activation_type=qtype[config.activation_type],
            weight_type=qtype[config.weight_type],
            nodes_to_exclude=list(nodes_to_exclude),
            calibrate_method=method,
            extra_options=extra,
            calibration_cache_path=str(cache_path) if cache_path is not None else None,
        )
        model = onnx.load(str(tmp))
        strip_zero_points(model)
        if compact:
            compact_names(model)
        if metadata is not None:
            write_onnx_metadata(model, metadata)
        onnx.save(model, str(tmp))
    return out_path


def weight_choices(prepared_path: str | os.PathLike[str], config: StaticInt8Config) -> list[WeightChoice]:
    """Per-tensor or per-channel scale for each weight of the prepared model (:mod:`quant.granularity`)."""
    import onnx

    return choose(onnx.load(str(prepared_path)), config.weight_granularity, config.min_weight_sqnr_db)


def quantized_node_names(model_path: str | os.PathLike[str]) -> list[str]:
    """Names of nodes that ORT's QDQ quantizer may quantize (the fallback's search space)."""
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry

    model = onnx.load(str(model_path))
    return [n.name for n in model.graph.node if n.op_type in QDQRegistry and n.name]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
