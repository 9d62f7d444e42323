"""What an INT8 backend offers ``quant.ptq``: build a candidate, rank its nodes, widen its scales.

``quant.ptq`` owns the loop (gate the all-INT8 candidate, widen, keep nodes in float) and the
gate; a backend only knows its format. :func:`open_backend` picks one by format, importing the
heavy converter stack (onnxruntime or TensorFlow) only for the one asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from landmarks.errors import ConfigError
from landmarks.metadata import ArtifactMetadata
from quant.calibration import CalibrationReader
from quant.ranker import Sensitivity

RANK_COUNT = 32  # calibration faces used for the sensitivity pass


class Int8Backend(Protocol):
    """One format's INT8 conversion; ``reference`` is the FP32 model its candidates are gated against."""

    format: str
    reference: Path

    def build(self, float_nodes: tuple[str, ...]) -> Path:
        """Convert (from the one calibration) with ``float_nodes`` kept in float; the candidate's path."""

    def rank(self, first: Path) -> list[Sensitivity]:
        """Quantized tensors by sensitivity, worst first (``first``: the all-INT8 candidate)."""

    def widen(self) -> bool:
        """Switch to finer (per-channel) weight scales; False when that changes nothing."""

    def kind_nodes(self) -> dict[str, tuple[str, ...]]:
        """What ``build`` takes to keep a layer in float, grouped by kind of layer (the speed policy)."""

    def settings(self) -> dict[str, Any]:
        """The report's settings; ``calibration_method`` is one of them."""


def open_backend(
    fmt: str,
    model: Path,
    metadata: ArtifactMetadata,
    reader: CalibrationReader,
    config: Any,
    workdir: Path,
    log: Callable[[str], None],
    *,
    reference: Path | None = None,
    original: Path | None = None,
) -> Int8Backend:
    """Calibrate ``model`` (the FP32 ONNX prepared by :mod:`quant.prepare`) for ``fmt``; ``config`` is a
    ``PtqConfig``.

    ``reference``: the FP32 artifact of ``fmt`` to gate against (an exported ``.tflite``); by
    default the user's ONNX itself (``original``), or a TFLite converted here.
    """
    if fmt == "onnx":
        from quant.onnx_backend import OnnxInt8Backend

        return OnnxInt8Backend(model, metadata, reader, config.onnx, workdir, log,
                               reference=reference or original or model)
    if fmt == "tflite":
        from quant.tflite_backend import TfliteInt8Backend

        return TfliteInt8Backend(model, metadata, reader, config.tflite, workdir, log, reference=reference)
    raise ConfigError(f"no INT8 backend for format {fmt!r} (onnx, tflite)")
