"""The ONNX INT8 backend: ORT static QDQ from one calibration, nodes excluded by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from landmarks.metadata import ArtifactMetadata
from quant import ort_int8
from quant.backend import RANK_COUNT
from quant.calibration import CalibrationReader
from quant.ort_int8 import StaticInt8Config
from quant.ranker import Sensitivity, rank_ort


class OnnxInt8Backend:
    """Candidates ``candidate<N>.onnx`` in ``workdir``, gated against ``reference`` (the user's FP32 ONNX)."""

    format = "onnx"

    def __init__(self, model: Path, metadata: ArtifactMetadata, reader: CalibrationReader,
                 config: StaticInt8Config, workdir: Path, log: Callable[[str], None], *,
                 reference: Path | None = None) -> None:
        self.reference, self.metadata, self.reader = reference or model, metadata, reader
        self.config, self.workdir, self.log = config, workdir, log
        self.prepared = ort_int8.prepare(model, workdir / "prepared.onnx")
        self.cache = ort_int8.calibrate(self.prepared, reader, config, workdir / "calibration.json")
        self._count = 0

    def build(self, float_nodes: tuple[str, ...], *, compact: bool = True) -> Path:
        out = self.workdir / f"candidate{self._count}.onnx"
        self._count += 1
        return ort_int8.convert(self.prepared, out, None, self.config, cache_path=self.cache,
                                nodes_to_exclude=float_nodes, metadata=self.metadata, compact=compact)

    def kind_nodes(self) -> dict[str, tuple[str, ...]]:
        """Node names of the prepared model by kind of layer (:mod:`quant.profile`), for the speed policy."""
        import onnx

        from quant.profile import static_kinds

        kinds: dict[str, list[str]] = {}
        for name, kind in static_kinds(self.prepared).items():
            kinds.setdefault(kind, []).append(name)
        for node in onnx.load(str(self.prepared)).graph.node:
            kind = {"Add": "add", "Gemm": "fully connected", "MatMul": "fully connected"}.get(node.op_type)
            if kind and node.name:
                kinds.setdefault(kind, []).append(node.name)
        return {k: tuple(v) for k, v in kinds.items()}

    def rank(self, first: Path) -> list[Sensitivity]:
        return rank_ort(self.prepared, self.build((), compact=False), self.reader.head(RANK_COUNT))

    def widen(self) -> bool:
        """After a failed ``auto`` candidate: per-channel scales on every weight."""
        choices = ort_int8.weight_choices(self.prepared, self.config)
        if self.config.weight_granularity != "auto" or all(c.per_channel for c in choices):
            return False
        self.config = replace(self.config, weight_granularity="per-channel")
        self.log("retrying with per-channel weight scales on every layer")
        return True

    def settings(self) -> dict[str, Any]:
        config = self.config
        choices = ort_int8.weight_choices(self.prepared, config)
        return {
            "calibration_method": config.method,
            "quant_format": "QDQ",
            "activation_type": config.activation_type,
            "weight_type": config.weight_type,
            "weight_granularity": config.weight_granularity,
            "min_weight_sqnr_db": config.min_weight_sqnr_db,
            "per_channel_weights": [c.node or c.name for c in choices if c.per_channel],
            "per_tensor_weights": len([c for c in choices if not c.per_channel]),
            "reduce_range": config.reduce_range,
            "quant_pre_process": True,
        }
