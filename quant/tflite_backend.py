"""The TFLite INT8 backend: onnx2tf SavedModel, the converter's calibration once, ops denylisted by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from landmarks.artifact import write_sidecar
from landmarks.metadata import ArtifactMetadata
from quant import tflite_int8
from quant.backend import RANK_COUNT
from quant.calibration import CalibrationReader, representative_dataset
from quant.ranker import Sensitivity
from quant.tflite_int8 import TfliteInt8Config


class TfliteInt8Backend:
    """Candidates ``candidate<N>.tflite`` (+ sidecar) in ``workdir``.

    ``reference``: the FP32 ``.tflite`` the candidates are gated against -- the exported one that
    ships beside them when given, else one converted here from the same SavedModel.
    """

    format = "tflite"

    def __init__(self, model: Path, metadata: ArtifactMetadata, reader: CalibrationReader,
                 config: TfliteInt8Config, workdir: Path, log: Callable[[str], None], *,
                 reference: Path | None = None) -> None:
        self.metadata, self.config, self.workdir, self.log = metadata, config, workdir, log
        if metadata.layout == "NHWC":  # onnx2tf reads a 4-D input as NCHW: give it one
            from quant.prepare import nchw_input

            model = nchw_input(model, workdir / "prepared.nchw.onnx")
        saved_model = tflite_int8.to_saved_model(model, workdir)
        if reference is None:
            reference = tflite_int8.convert_float(saved_model, workdir / "reference.fp32.tflite")
            write_sidecar(reference, metadata)
        self.reference = reference
        self.reader = reader.with_input("input", metadata.replace(layout="NHWC"))
        self.calibrated = tflite_int8.calibrate(saved_model, representative_dataset(self.reader), workdir)
        if config.calibration == "percentile":
            self.calibrated = tflite_int8.percentile_ranges(self.calibrated, representative_dataset(self.reader),
                                                            config.percentile)
        self._count = 0

    def build(self, float_nodes: tuple[str, ...]) -> Path:
        out = self.workdir / f"candidate{self._count}.tflite"
        self._count += 1
        tflite_int8.convert(self.calibrated, out, self.config, denylisted_nodes=float_nodes)
        write_sidecar(out, self.metadata)
        return out

    def kind_nodes(self) -> dict[str, tuple[str, ...]]:
        """Op output tensor names (what the converter's denylist takes) by kind of layer."""
        return tflite_int8.kind_nodes(self.calibrated)

    def rank(self, first: Path) -> list[Sensitivity]:
        subset = representative_dataset(self.reader.head(RANK_COUNT))
        return tflite_int8.rank(self.calibrated, self.config, subset, self.workdir)

    def widen(self) -> bool:
        """After a failed ``auto`` candidate (one scale where a layer allows): per-channel everywhere."""
        if self.config.weight_granularity != "auto":
            return False
        self.config = replace(self.config, weight_granularity="per-channel")
        self.log("retrying with per-channel weight scales")
        return True

    def settings(self) -> dict[str, Any]:
        return {
            "calibration_method": ("minmax (TFLite converter)" if self.config.calibration == "minmax" else
                                   f"percentile {self.config.percentile:g} (ranges rewritten before conversion)"),
            "converter": "onnx2tf SavedModel + tf.lite.TFLiteConverter, mlir_quantize",
            "io_type": self.config.io_type,
            "weight_granularity": self.config.weight_granularity,
            "per_channel_weights": {"per-channel": "all layers", "per-tensor": "none",
                                    "auto": f"layers below {self.config.min_weight_sqnr_db:g} dB with one scale"}[
                                        self.config.weight_granularity],
            "activations": "int8",
            "weights": "int8",
        }
