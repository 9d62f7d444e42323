"""One predictor interface over torch, onnxruntime and LiteRT (see :mod:`landmarks.runtimes.base`).

Backends import lazily in :func:`load_predictor`, so ``import landmarks.runtimes`` pulls in
neither onnxruntime nor TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from landmarks.errors import ModelError
from landmarks.metadata import ArtifactMetadata
from landmarks.runtimes.base import LandmarkResult, Predictor, preprocess

__all__ = ["MODEL_SUFFIXES", "LandmarkResult", "Predictor", "load_predictor", "preprocess"]

MODEL_SUFFIXES = (".onnx", ".tflite", ".pt", ".pth")  # the model files every command takes


def load_predictor(
    model: str | os.PathLike[str] | Any,
    *,
    num_threads: int | None = None,
    metadata: ArtifactMetadata | None = None,
) -> Predictor:
    """A predictor for an artifact path (by suffix) or an ``nn.Module`` with ``forward_landmarks``.

    ``metadata`` overrides what the artifact carries; a bare module has none, so needs it.
    """
    if not isinstance(model, str | os.PathLike):
        from landmarks.runtimes.torch_runtime import TorchPredictor

        metadata = metadata or getattr(model, "metadata", None)
        if not isinstance(metadata, ArtifactMetadata):
            raise ModelError(f"a {type(model).__name__} module carries no metadata; pass metadata=")
        return TorchPredictor(model, metadata, num_threads=num_threads)
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        known = ", ".join(MODEL_SUFFIXES)
        raise ModelError(f"{path}: unknown model format {suffix or '(no suffix)'!r}; expected {known}")
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if suffix == ".onnx":
        from landmarks.runtimes.onnx_runtime import OnnxPredictor

        return OnnxPredictor(path, num_threads, metadata=metadata)
    if suffix == ".tflite":
        from landmarks.runtimes.tflite_runtime import TFLitePredictor

        return TFLitePredictor(path, num_threads, metadata=metadata)
    from landmarks.runtimes.torch_runtime import TorchPredictor

    return TorchPredictor.from_checkpoint(path, metadata=metadata, num_threads=num_threads)
