"""One weight scale per tensor where it loses no channel, in a converted full-integer TFLite model.

TFLite's converter has one switch for the whole model: every weight per channel, or none. Per
channel, each weight tensor stores a float32 scale and an int64 zero point per output channel, and
so does its int32 bias: 24 bytes a channel, more than a third of the file on the 300-W student
(382 KB, of which 195 KB weights); :mod:`quant.tflite_flatbuffer` writes the all-zero zero points
once, which leaves the scales' 8 bytes a channel. One scale for every tensor loses badly there (+250 % nme_io):
a few layers need per-channel scales. This pass decides per layer as the ONNX path does
(:mod:`quant.granularity`: one scale when the worst output channel keeps ``min_sqnr_db`` with it)
on the per-channel model the converter wrote, and re-quantizes those layers in place: the weights
``round(w / s)`` with ``s = max|w| / 127``, the bias ``round(b / (s_input * s))``. The model's ops,
activations and every other tensor are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quant.granularity import DEFAULT_MIN_SQNR_DB
from quant.sqnr import weight_sqnr_db

WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


@dataclass(frozen=True)
class TfliteWeightChoice:
    tensor: str
    op: str
    sqnr_per_tensor_db: float
    per_channel: bool


def narrow_weight_scales(model_content: bytes,
                         min_sqnr_db: float = DEFAULT_MIN_SQNR_DB) -> tuple[bytes, list[TfliteWeightChoice]]:
    """The model with per-tensor weight scales wherever the worst channel keeps ``min_sqnr_db``."""
    from tensorflow.lite.python import schema_py_generated as schema

    from quant.tflite_flatbuffer import read_model, write_model

    model = read_model(model_content)
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    choices = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if kind not in WEIGHTED_OPS or len(op.inputs) < 2:
            continue
        weight = graph.tensors[op.inputs[1]]
        quant = weight.quantization
        if quant is None or quant.scale is None or len(quant.scale) <= 1:
            continue
        axis = int(quant.quantizedDimension)
        values = _buffer(model, weight, np.int8)
        shape = [1] * values.ndim
        shape[axis] = -1
        floats = values.astype(np.float64) * np.asarray(quant.scale, np.float64).reshape(shape)
        sqnr = weight_sqnr_db(floats, axis, per_channel=False)
        name = weight.name.decode() if isinstance(weight.name, bytes) else str(weight.name)
        keep = sqnr < min_sqnr_db
        choices.append(TfliteWeightChoice(name, kind, round(float(sqnr), 2), keep))
        if keep:
            continue
        scale = float(np.abs(floats).max()) / 127.0 or 1.0
        _set_buffer(model, weight, np.clip(np.round(floats / scale), -127, 127).astype(np.int8))
        quant.scale, quant.zeroPoint, quant.quantizedDimension = [scale], [0], 0
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            _requantize_bias(model, graph, op, scale)
    return write_model(model), choices


def _requantize_bias(model: Any, graph: Any, op: Any, weight_scale: float) -> None:
    """int32 bias of scale ``s_input * s_channel`` -> one scale ``s_input * s``."""
    bias = graph.tensors[op.inputs[2]]
    if bias.quantization is None or bias.quantization.scale is None:
        return
    input_scale = float(graph.tensors[op.inputs[0]].quantization.scale[0])
    values = _buffer(model, bias, np.int32).astype(np.float64) * np.asarray(bias.quantization.scale, np.float64)
    scale = input_scale * weight_scale
    info = np.iinfo(np.int32)
    _set_buffer(model, bias, np.clip(np.round(values / scale), info.min, info.max).astype(np.int32))
    bias.quantization.scale, bias.quantization.zeroPoint, bias.quantization.quantizedDimension = [scale], [0], 0


def _buffer(model: Any, tensor: Any, dtype: type) -> np.ndarray:
    data = np.asarray(model.buffers[tensor.buffer].data, np.uint8)
    return np.frombuffer(data.tobytes(), dtype).reshape(list(tensor.shape))


def _set_buffer(model: Any, tensor: Any, values: np.ndarray) -> None:
    model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), np.uint8)
