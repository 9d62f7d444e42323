"""onnxruntime predictor: reads the metadata keys from the model's ``metadata_props``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from landmarks.artifact import metadata_from_props
from landmarks.errors import ModelError, UnsupportedBackendError
from landmarks.metadata import ArtifactMetadata
from landmarks.runtimes.base import FilePredictor


class OnnxPredictor(FilePredictor):
    """One CPU InferenceSession, sequential execution, ``num_threads`` intra-op threads.

    ``metadata`` overrides what the file carries; without either the model cannot be fed
    correctly, which is a :class:`ModelError` rather than a guess.
    """

    runtime = "onnxruntime"

    def _open(self, path: Path, num_threads: int | None,
              metadata: ArtifactMetadata | None) -> tuple[ArtifactMetadata, list[Any], int | None]:
        self.session = _open_session(path, num_threads)
        if metadata is None:
            metadata = metadata_from_props(self.session.get_modelmeta().custom_metadata_map, str(path))
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        outputs = [o.name for o in self.session.get_outputs()]
        if metadata.output_name and metadata.output_name not in outputs:
            raise ModelError(f"{path}: no output named {metadata.output_name!r} (outputs: {', '.join(outputs)})")
        self.output_name = metadata.output_name or outputs[0]
        batch = model_input.shape[0] if model_input.shape else None
        return metadata, model_input.shape, batch if isinstance(batch, int) and batch > 0 else None

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: inputs})[0]


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
    options.log_severity_level = 3  # errors only: ORT's advice on older exports is not the user's business here
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's pybind errors share no base class but Exception
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: not a loadable ONNX model ({reason})") from err

