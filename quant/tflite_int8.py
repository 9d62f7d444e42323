"""TFLite full-integer INT8: calibrate once, then quantize (optionally with ops kept in float).

The SavedModel comes from the export stage (:func:`export.tflite_export.onnx_to_saved_model`,
onnx2tf graph translation only; onnx2tf's own INT8 mode downloads calibration data, so it is
not used). Passes:

``calibrate`` runs ``tf.lite.TFLiteConverter`` with our representative dataset in
calibrate-only mode and returns a float model annotated with tensor ranges; ``convert`` turns
it into the full-integer model with ``mlir_quantize`` -- the same call the converter makes
internally and ``tf.lite.experimental.QuantizationDebugger`` makes for selective
quantization -- with int8 or float input/output and ``denylisted_nodes`` kept in float.
Re-quantizing with another denylist therefore costs no new calibration.
``rank`` scores each quantized op output with the QuantizationDebugger (layer-wise numeric
verification) for the fallback loop.

TensorFlow takes seconds to import and is imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.atomic import write_bytes
from landmarks.errors import ConfigError
from quant.granularity import DEFAULT_MIN_SQNR_DB, GRANULARITIES
from quant.ranker import Sensitivity
from quant.sqnr import SQNR_CAP, per_channel_sqnr

IO_TYPES = ("int8", "float")
CALIBRATIONS = ("minmax", "percentile")


@dataclass(frozen=True)
class TfliteInt8Config:
    """Full-integer INT8: int8 weights and activations; ``io_type`` picks the model's I/O tensors.

    The converter has one weight-scale switch for the whole model; ``auto`` converts per channel
    and then gives one scale to every layer whose worst channel keeps ``min_weight_sqnr_db`` with it
    (:mod:`quant.tflite_granularity`, the ONNX path's rule), and ``quant.ptq`` re-converts per
    channel everywhere when that candidate fails the gate. ``per-tensor`` is the converter's switch
    off (on the 300-W student it costs over 250 % ``nme_io``).
    """

    io_type: str = "float"
    weight_granularity: str = "auto"
    # minmax: the converter's own ranges; percentile: each activation's range from percentiles of its
    # values (percentile_ranges), which the converter then quantizes with
    calibration: str = "minmax"
    percentile: float = 99.999
    min_weight_sqnr_db: float = DEFAULT_MIN_SQNR_DB

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"TFLite calibration must be one of {', '.join(CALIBRATIONS)} (entropy is ONNX's "
                              f"only), got {self.calibration!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile}")
        if self.io_type not in IO_TYPES:
            raise ConfigError(f"io_type must be one of {', '.join(IO_TYPES)}, got {self.io_type!r}")
        if self.weight_granularity not in GRANULARITIES:
            raise ConfigError(f"weight_granularity must be one of {', '.join(GRANULARITIES)}, "
                              f"got {self.weight_granularity!r}")

    @property
    def per_channel(self) -> bool:
        """Whether the converter writes per-channel weights (``auto`` narrows them afterwards)."""
        return self.weight_granularity != "per-tensor"


def to_saved_model(onnx_path: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> Path:
    """The export stage's ONNX -> SavedModel translation (one converter for the project)."""
    from export.tflite_export import onnx_to_saved_model

    return onnx_to_saved_model(onnx_path, workdir)


def convert_float(saved_model: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """The FP32 ``.tflite`` reference the INT8 model is gated against (same runtime)."""
    from export.tflite_export import saved_model_to_tflite

    return saved_model_to_tflite(saved_model, out_path)


def calibrate(
    saved_model: str | os.PathLike[str],
    representative: Callable[[], Iterable[list[np.ndarray]]],
    workdir: str | os.PathLike[str],
) -> bytes:
    """Run the converter's calibration only; the result is a float model with tensor ranges."""
    from export.tflite_export import saved_model_to_tflite

    def configure(converter: Any) -> None:
        import tensorflow as tf

        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter._experimental_calibrate_only = True

    path = Path(workdir) / "calibrated.tflite"
    saved_model_to_tflite(saved_model, path, int8_calibration=representative, configure=configure)
    return path.read_bytes()


def percentile_ranges(
    calibrated: bytes,
    representative: Callable[[], Iterable[list[np.ndarray]]],
    percentile: float = 99.999,
) -> bytes:
    """The calibrated model with each activation's min/max replaced by percentiles of its values.

    The converter calibrates with the plain min and max of each tensor over the representative
    set: one outlier stretches a range and coarsens every other value's rounding. This runs the
    calibrated (float) model on the same inputs, keeps every intermediate tensor, and writes the
    ``100 - percentile`` and ``percentile`` quantiles (within the recorded min and max) as the range the quantizer uses,
    as onnxruntime's percentile calibration does for the ONNX model.
    """
    from landmarks.runtimes.tflite_runtime import interpreter_class
    from quant.tflite_flatbuffer import read_model, write_model

    model = read_model(calibrated)
    graph = model.subgraphs[0]
    ranged = {i: t for i, t in enumerate(graph.tensors)
              if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1}
    interpreter = interpreter_class()(model_content=calibrated, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    values: dict[int, list[np.ndarray]] = {i: [] for i in ranged}
    for inputs in representative():
        interpreter.set_tensor(input_index, np.asarray(inputs[0], np.float32))
        interpreter.invoke()
        for i in ranged:
            values[i].append(np.asarray(interpreter.get_tensor(i), np.float32).reshape(-1))
    q = percentile / 100.0
    for i, tensor in ranged.items():
        data = np.concatenate(values[i])
        low, high = float(np.quantile(data, 1.0 - q)), float(np.quantile(data, q))
        recorded_low, recorded_high = float(tensor.quantization.min[0]), float(tensor.quantization.max[0])
        tensor.quantization.min = np.array([min(max(low, recorded_low), recorded_high)], np.float32)
        tensor.quantization.max = np.array([max(min(high, recorded_high), recorded_low)], np.float32)
    return write_model(model)


def convert(
    calibrated: bytes,
    out_path: str | os.PathLike[str],
    config: TfliteInt8Config,
    *,
    denylisted_nodes: tuple[str, ...] = (),
    debug: bool = False,
) -> Path:
    """Quantize a calibrated model to full integer and write it atomically.

    ``denylisted_nodes`` are op output tensor names whose ops stay float (with quantize and
    dequantize ops around them). ``debug`` adds NumericVerify ops for :func:`rank`.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert as tfl_convert

    io_dtype = tf.int8 if config.io_type == "int8" else tf.float32
    # a quantizer failure is the tool's (exit 3 with its traceback), not the user's input
    flatbuffer = tfl_convert.mlir_quantize(
        calibrated,
        disable_per_channel=not config.per_channel,
        input_data_type=io_dtype,
        output_data_type=io_dtype,
        enable_numeric_verify=debug,
        denylisted_nodes=list(denylisted_nodes) or None,
    )
    if config.weight_granularity == "auto" and not debug:
        from quant.tflite_granularity import narrow_weight_scales

        flatbuffer, _ = narrow_weight_scales(flatbuffer, config.min_weight_sqnr_db)
    elif not debug:
        from quant.tflite_flatbuffer import share_zero_points

        flatbuffer = share_zero_points(flatbuffer)
    return write_bytes(out_path, flatbuffer)


def rank(
    calibrated: bytes,
    config: TfliteInt8Config,
    representative: Callable[[], Iterable[list[np.ndarray]]],
    workdir: str | os.PathLike[str],
) -> list[Sensitivity]:
    """Score each quantized op output by its per-channel SQNR against the float op, worst first.

    Layer-wise: the debugger runs every float op on the same (dequantized) input as its
    quantized twin, so the score says where the noise enters. The group of a tensor is the op
    producing it and the ops consuming it (their output names: what ``denylisted_nodes`` takes).
    """
    import tensorflow as tf

    debug_path = convert(calibrated, Path(workdir) / "debug.tflite", replace(config, io_type="float"),
                         debug=True)
    options = tf.lite.experimental.QuantizationDebugOptions(
        layer_direct_compare_metrics={"channel_sqnr": _channel_sqnr_nhwc}
    )
    debugger = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=debug_path.read_bytes(),
        debug_dataset=_float32_inputs(representative),
        debug_options=options,
    )
    debugger.run()
    groups = _op_groups(calibrated)
    ranking = []
    for name, stats in debugger.layer_statistics.items():
        tensor = _verified_tensor(name, groups)
        if tensor is None:
            continue
        sqnr = float(stats.get("channel_sqnr", SQNR_CAP))
        ranking.append(Sensitivity(tensor, SQNR_CAP - sqnr if np.isfinite(sqnr) else 0.0, groups[tensor]))
    return sorted(ranking, key=lambda s: (-s.score, s.tensor))


def kind_nodes(model_content: bytes) -> dict[str, tuple[str, ...]]:
    """Op output tensor names by kind of layer (the kinds of :mod:`quant.profile`), read off each op's
    type and filter shape (``CONV_2D`` filters are ``[out, kh, kw, in]``)."""
    from landmarks.runtimes.tflite_runtime import interpreter_class

    interpreter = interpreter_class()(model_content=model_content)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds: dict[str, list[str]] = {}
    for op in interpreter._get_ops_details():
        name, inputs, outputs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if not outputs or outputs[0] not in tensors:
            continue
        kind = None
        if name == "DEPTHWISE_CONV_2D":
            kind = "depthwise conv"
        elif name == "CONV_2D" and len(inputs) > 1 and inputs[1] in tensors:
            out_channels, kh, kw, in_channels = (int(d) for d in tensors[inputs[1]]["shape"])
            if in_channels == 3:
                kind = "first conv"
            elif kh == 1 and kw == 1:
                kind = "pointwise expand" if out_channels > in_channels else "pointwise project"
            else:
                kind = "conv"
        elif name == "ADD":
            kind = "add"
        elif name == "FULLY_CONNECTED":
            kind = "fully connected"
        if kind is not None:
            kinds.setdefault(kind, []).append(tensors[outputs[0]]["name"])
    return {k: tuple(v) for k, v in kinds.items()}


def _verified_tensor(name: str, tensors: dict[str, Any]) -> str | None:
    """``NumericVerify/<tensor><n>:<index>`` -> ``<tensor>`` (the longest known name it starts with)."""
    stem = name.removeprefix("NumericVerify/").rsplit(":", 1)[0]
    matches = [t for t in tensors if stem.startswith(t)]
    return max(matches, key=len) if matches else None


def _channel_sqnr_nhwc(float_values: np.ndarray, quant_values: np.ndarray, scale: float, zero_point: int) -> float:
    dequantized = (np.asarray(quant_values, np.float32) - zero_point) * scale
    return per_channel_sqnr([np.asarray(float_values)], [dequantized], axis=-1)


def _float32_inputs(representative: Callable[[], Iterable[list[np.ndarray]]]) -> Callable[[], Any]:
    def generate() -> Any:
        for inputs in representative():
            yield [np.asarray(x, np.float32) for x in inputs]

    return generate


_PASS_THROUGH = {"PAD", "PADV2", "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS"}


def _op_groups(model_content: bytes) -> dict[str, tuple[str, ...]]:
    """For each op output tensor: itself plus the outputs of the ops that consume it.

    Consumers are followed through shape-only ops (a Pad before a conv shares its input's
    quantization), so the op that actually re-quantizes the tensor joins the group.
    """
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=model_content)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    readers: dict[int, list[dict]] = {}
    for op in ops:
        for index in op["inputs"]:
            readers.setdefault(int(index), []).append(op)

    def consumers(index: int) -> list[str]:
        out = []
        for op in readers.get(index, []):
            for out_index in op["outputs"]:
                out.append(names[out_index])
                if op["op_name"] in _PASS_THROUGH:
                    out.extend(consumers(int(out_index)))
        return out

    return {
        names[index]: tuple(dict.fromkeys([names[index], *consumers(int(index))]))
        for op in ops
        for index in op["outputs"]
        if index in names
    }
