"""LiteRT (TFLite) predictor: metadata from the sidecar (:mod:`landmarks.artifact`), integer I/O via quant params.

``ai_edge_litert`` is preferred; ``tensorflow.lite`` is the fallback. Both import lazily, on
first use, because TensorFlow takes seconds to import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landmarks.artifact import read_sidecar
from landmarks.errors import ModelError, UnsupportedBackendError
from landmarks.metadata import ArtifactMetadata
from landmarks.runtimes.base import FilePredictor


def interpreter_class() -> type:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tensorflow.lite import Interpreter
        except ImportError:
            raise UnsupportedBackendError(
                "running .tflite models needs ai-edge-litert (pip install ai-edge-litert) or tensorflow"
            ) from None
    return Interpreter


class TFLitePredictor(FilePredictor):
    """A LiteRT interpreter; float, int8 and uint8 input/output tensors all take float crops."""

    runtime = "litert"

    def _open(self, path: Path, num_threads: int | None,
              metadata: ArtifactMetadata | None) -> tuple[ArtifactMetadata, list[int], int | None]:
        metadata = metadata or read_sidecar(path)
        interpreter_cls = interpreter_class()
        try:
            self.interpreter = interpreter_cls(model_path=str(path), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise ModelError(f"{path}: not a loadable TFLite model ({reason})") from None
        self._input = self.interpreter.get_input_details()[0]
        self._output = _points_output(self.interpreter.get_output_details(), metadata, path)
        signature = self._input.get("shape_signature", self._input["shape"])
        return metadata, [int(d) for d in self._input["shape"]], None if signature[0] < 0 else int(signature[0])

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        current = self.interpreter.get_input_details()[0]["shape"]
        if tuple(current) != inputs.shape:
            self.interpreter.resize_tensor_input(self._input["index"], list(inputs.shape))
            self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(self._input["index"], _quantize(inputs, self._input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self._output["index"]), self._output)


def _points_output(outputs: list[dict], metadata: ArtifactMetadata, path: Path) -> dict:
    """The output tensor that holds the points: named by the metadata, else the only (or first) one."""
    if metadata.output_name:
        named = [o for o in outputs if o["name"] == metadata.output_name]
        if named:
            return named[0]
        if len(outputs) > 1:
            names = ", ".join(o["name"] for o in outputs)
            raise ModelError(f"{path}: no output named {metadata.output_name!r} (outputs: {names})")
    return outputs[0]


def _quantize(x: np.ndarray, details: dict) -> np.ndarray:
    """Float input -> the tensor's dtype; integer tensors use their (scale, zero_point)."""
    dtype = np.dtype(details["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype, copy=False)
    scale, zero_point = details["quantization"]
    if not scale:
        raise ModelError(f"integer input tensor {details['name']!r} has no quantization parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, details: dict) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer):
        return y.astype(np.float32, copy=False)
    scale, zero_point = details["quantization"]
    if not scale:
        raise ModelError(f"integer output tensor {details['name']!r} has no quantization parameters")
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
