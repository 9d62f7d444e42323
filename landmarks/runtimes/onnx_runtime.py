"""onnxruntime predictor: reads the section-2 keys from the model's ``metadata_props``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from landmarks.errors import ModelError, UnsupportedBackendError
from landmarks.metadata import ArtifactMetadata
from landmarks.runtimes.base import Predictor


class OnnxPredictor(Predictor):
    """One CPU InferenceSession, sequential execution, ``num_threads`` intra-op threads.

    ``metadata`` overrides what the file carries; without either the model cannot be fed
    correctly, which is a :class:`ModelError` rather than a guess.
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        num_threads: int | None = None,
        *,
        metadata: ArtifactMetadata | None = None,
    ) -> None:
        path = Path(path)
        self.session = _open_session(path, num_threads)
        if metadata is None:
            props = dict(self.session.get_modelmeta().custom_metadata_map)
            metadata = ArtifactMetadata.from_strings(props, where=str(path))
        super().__init__(metadata, path.stem)
        self.path = path
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        _check_input_shape(model_input.shape, metadata, path)
        batch = model_input.shape[0] if model_input.shape else None
        self.batch_size = batch if isinstance(batch, int) and batch > 0 else None

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: inputs})[0]


def _open_session(path: Path, num_threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise UnsupportedBackendError("onnxruntime is not installed: pip install onnxruntime") from None
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if num_threads:
        options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's pybind errors share no base class but Exception
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: not a loadable ONNX model ({reason})") from None


def _check_input_shape(shape: list, metadata: ArtifactMetadata, path: Path) -> None:
    """A static input shape that contradicts the metadata means the metadata is wrong."""
    s = metadata.input_size
    expected = [s, s, 3] if metadata.layout == "NHWC" else [3, s, s]
    actual = list(shape[1:])
    if len(actual) != 3 or any(isinstance(a, int) and a != e for a, e in zip(actual, expected, strict=True)):
        raise ModelError(
            f"{path}: input shape {list(shape)} does not match its metadata "
            f"(layout {metadata.layout}, input_size {s}: expected [N, {', '.join(map(str, expected))}])"
        )
