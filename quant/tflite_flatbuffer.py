"""Read a TFLite flatbuffer into TFLite's object API, and write it back with each zero-point vector once.

A per-channel int8 tensor stores an int64 zero point per channel, and LiteRT refuses a model with
fewer zero points than scales. TFLite's int8 weights and biases are symmetric, so those vectors are
all zeros: 16 bytes a channel (weight and bias), 94 KB of the 300-W student's 383 KB per-channel
INT8 file at prune ratio 0.3. A flatbuffer may point any number of tables at one vector, so this
writer stores each distinct zero-point vector once: every reader still finds the same values at the
same fields (the outputs are bit-identical), and the file loses those bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TFLITE_FILE_IDENTIFIER = b"TFL3"


def read_model(content: bytes) -> Any:
    """The model as TFLite's mutable object tree (``schema_py_generated.ModelT``)."""
    from tensorflow.lite.python import util

    return util._convert_model_from_bytearray_to_object(content)


def write_model(model: Any) -> bytes:
    """The model's flatbuffer, each distinct zero-point vector written once and shared."""
    import flatbuffers

    class SharedZeroPointBuilder(flatbuffers.Builder):
        """Zero points are the model's only int64 vectors: identical ones get one offset."""

        def __init__(self, size: int) -> None:
            super().__init__(size)
            self.written: dict[bytes, int] = {}

        def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 (flatbuffers' name)
            if x.dtype != np.int64:
                return super().CreateNumpyVector(x)
            key = x.tobytes()
            if key not in self.written:
                self.written[key] = super().CreateNumpyVector(x)
            return self.written[key]

    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            quant = tensor.quantization
            if quant is not None and quant.zeroPoint is not None:  # lists would bypass the shared path
                quant.zeroPoint = np.asarray(quant.zeroPoint, np.int64)
    builder = SharedZeroPointBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def share_zero_points(content: bytes) -> bytes:
    """``content`` rewritten by :func:`write_model`: the same model, smaller when it is per-channel."""
    return write_model(read_model(content))
