"""The one predictor interface over every runtime, and the one place inputs are preprocessed.

Usage::

    predictor = load_predictor("student.onnx")
    result = predictor.predict(crops)          # uint8 [N, S, S, 3] RGB standard crops
    pixels = result.points * predictor.metadata.input_size

Preprocessing is derived from the artifact's artifact metadata alone (channel order, scaling,
mean/std, layout), so torch, onnxruntime and LiteRT see exactly the same tensor.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.errors import DataError, ModelError
from landmarks.metadata import ArtifactMetadata


@dataclass(frozen=True)
class LandmarkResult:
    """Predicted landmarks, ``points`` float32 ``[N, P, 2]`` normalized to the crop (``xy_norm``)."""

    points: np.ndarray


def check_crops(crops: np.ndarray, metadata: ArtifactMetadata) -> np.ndarray:
    """Crops as uint8 ``[N, S, S, 3]``; a single ``[S, S, 3]`` crop becomes a batch of one."""
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    size = metadata.input_size
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
        raise DataError(
            f"crops must be uint8 [N, {size}, {size}, 3] RGB (the model's input_size is {size}), "
            f"got shape {list(crops.shape)}"
        )
    if crops.dtype != np.uint8:
        raise DataError(f"crops must be uint8 RGB pixels, got dtype {crops.dtype}")
    return crops


def preprocess(crops: np.ndarray, metadata: ArtifactMetadata) -> np.ndarray:
    """uint8 RGB crops -> the model's float32 input tensor, as docs/DESIGN.md ("Artifact metadata") prescribes.

    Channel order, scaling to [0, 1], ``(x - mean) / std`` and layout all come from
    ``metadata``; nothing else in the project converts pixels to model inputs.
    """
    x = check_crops(crops, metadata).astype(np.float32) / np.float32(255.0)
    if metadata.color == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(metadata.mean, np.float32)) / np.asarray(metadata.std, np.float32)
    if metadata.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def as_points(raw: np.ndarray, metadata: ArtifactMetadata, where: str = "model") -> np.ndarray:
    """Model output -> float32 ``[N, P, 2]`` in ``xy_norm``, as the metadata says to read it.

    The output is ``[N, P, 2]`` or anything with ``2P`` values per image; with
    ``metadata.points_slice`` it may hold more (pose angles, flags), of which ``START:END`` are
    the points, x and y interleaved. ``xy_pixels`` outputs are divided by the input size.
    """
    raw = np.asarray(raw)
    num_points = metadata.num_points
    flat = raw.reshape(len(raw), -1) if raw.ndim >= 1 and len(raw) else raw.reshape(0, 2 * num_points)
    if metadata.points_slice is not None:
        start, end = metadata.points_slice
        if end > flat.shape[1]:
            raise ModelError(f"{where}: points slice {start}:{end} lies outside its output of {flat.shape[1]} "
                             f"values per image")
        flat = flat[:, start:end]
    elif raw.ndim < 2 or flat.shape[1] != 2 * num_points:
        more = ("; it holds more: give the slice that holds the points (--points-slice START:END)"
                if raw.ndim >= 2 and flat.shape[1] > 2 * num_points else "")
        raise ModelError(
            f"{where}: output shape {list(raw.shape)} does not hold {num_points} (x, y) points per "
            f"image as its metadata says{more}"
        )
    points = flat.reshape(len(flat), num_points, 2).astype(np.float32)
    return points / np.float32(metadata.input_size) if metadata.output == "xy_pixels" else points


def check_input_shape(shape: Sequence[Any], metadata: ArtifactMetadata, path: os.PathLike[str]) -> None:
    """A static input shape that contradicts the metadata means the metadata is wrong."""
    s = metadata.input_size
    expected = [s, s, 3] if metadata.layout == "NHWC" else [3, s, s]
    actual = list(shape[1:])
    if len(actual) != 3 or any(isinstance(a, int) and a != e for a, e in zip(actual, expected, strict=True)):
        raise ModelError(
            f"{path}: input shape {list(shape)} does not match its metadata "
            f"(layout {metadata.layout}, input_size {s}: expected [N, {', '.join(map(str, expected))}])"
        )


class Predictor(ABC):
    """Runs one landmark model on standard crops; subclasses implement :meth:`_run`.

    ``batch_size`` caps how many crops go into one call of the model (``None``: all at once);
    runtimes with a fixed batch dimension set it to that dimension.
    """

    runtime: str = ""
    batch_size: int | None = None
    path: os.PathLike[str] | None = None  # the artifact file, when the predictor was loaded from one

    def __init__(self, metadata: ArtifactMetadata, name: str) -> None:
        self.metadata = metadata
        self.name = name

    def predict(self, crops: np.ndarray) -> LandmarkResult:
        """Landmarks of uint8 RGB crops ``[N, S, S, 3]``, ``S`` = ``metadata.input_size``."""
        inputs = preprocess(crops, self.metadata)
        step = self.batch_size or max(len(inputs), 1)
        chunks = [
            as_points(self._run(inputs[i : i + step]), self.metadata, self.name)
            for i in range(0, len(inputs), step)
        ]
        if not chunks:
            return LandmarkResult(np.zeros((0, self.metadata.num_points, 2), np.float32))
        return LandmarkResult(np.concatenate(chunks))

    @abstractmethod
    def _run(self, inputs: np.ndarray) -> np.ndarray:
        """Raw model output for one batch of preprocessed inputs (float32, metadata layout)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, runtime={self.runtime!r})"


class FilePredictor(Predictor):
    """A predictor of one artifact file: ``_open`` loads it and returns its metadata (or the
    ``metadata`` override) and ``(input shape, fixed batch size or None)``; the shape is checked
    against the metadata here, so a file whose metadata lies cannot be run."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        num_threads: int | None = None,
        *,
        metadata: ArtifactMetadata | None = None,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        metadata, shape, self.batch_size = self._open(path, num_threads, metadata)
        super().__init__(metadata, path.stem)
        self.path = path
        check_input_shape(shape, metadata, path)

    @abstractmethod
    def _open(self, path: Path, num_threads: int | None,
              metadata: ArtifactMetadata | None) -> tuple[ArtifactMetadata, Sequence[Any], int | None]:
        """Load the model; its metadata, input shape and fixed batch size (None: dynamic)."""
