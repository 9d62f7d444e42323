"""The quantization report: one dataclass, written as JSON (for manifests) and markdown (for people)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from landmarks.atomic import write_json, write_text


@dataclass(frozen=True)
class QuantReport:
    """Everything one PTQ run measured; NMEs in percent (``nme_io``), sizes in bytes."""

    model: str
    artifact: str
    format: str
    runtime: str
    verdict: str
    reason: str
    verdict_line: str
    nme_fp32: float
    nme_int8: float
    regression: float
    max_regression: float
    bytes_fp32: int
    bytes_int8: int
    float_nodes: tuple[str, ...] = ()
    latency_fp32_ms: float | None = None
    latency_int8_ms: float | None = None
    threads: int = 0
    calibration_method: str = ""
    calibration_set: str = ""
    calibration_count: int = 0
    eval_set: str = ""
    eval_count: int = 0
    eval_hash: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    attempts: tuple[dict[str, Any], ...] = ()
    layer_profile: dict[str, Any] = field(default_factory=dict)  # fp32 / int8 -> microseconds per kind of layer
    chain_reference: str = ""  # the distilled student before pruning, when given
    nme_chain_reference: float | None = None
    chain_regression: float | None = None
    max_chain_regression: float | None = None

    @property
    def size_ratio(self) -> float:
        return self.bytes_int8 / self.bytes_fp32 if self.bytes_fp32 else math.nan

    @property
    def latency_ratio(self) -> float | None:
        if not self.latency_fp32_ms or self.latency_int8_ms is None:
            return None
        return self.latency_int8_ms / self.latency_fp32_ms

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["float_nodes"] = list(self.float_nodes)
        out["attempts"] = [
            {**a, "regression": a["regression"] if math.isfinite(a["regression"]) else str(a["regression"])}
            for a in self.attempts
        ]
        out["size_ratio"] = self.size_ratio
        out["latency_ratio"] = self.latency_ratio
        out["metric"] = "nme_io (percent, inter-ocular normalizer: outer eye corners)"
        if not math.isfinite(self.regression):
            out["regression"] = str(self.regression)
        return out

    def to_markdown(self) -> str:
        lat = (
            f"{self.latency_fp32_ms:.3f} ms | {self.latency_int8_ms:.3f} ms | x{self.latency_ratio:.2f}"
            if self.latency_ratio is not None
            else "not measured | not measured | -"
        )
        floats = ", ".join(f"`{n}`" for n in self.float_nodes) or "none (fully INT8)"
        lines = [
            f"# INT8 quantization report: {Path(self.artifact).name}",
            "",
            f"**{self.verdict_line}**",
            "",
            "| | FP32 | INT8 | INT8/FP32 |",
            "|---|---|---|---|",
            f"| size | {self.bytes_fp32 / 1024:.1f} KB | {self.bytes_int8 / 1024:.1f} KB | {self.size_ratio:.1%} |",
            f"| nme_io | {self.nme_fp32:.3f}% | {self.nme_int8:.3f}% | {_signed_pct(self.regression)} |",
            *self._chain_rows(),
            f"| latency (batch 1, median, {self.threads} threads) | {lat} |",
            "",
            f"- verdict: **{self.verdict}** ({self.reason}); max regression {_signed_pct(self.max_regression)}",
            f"- format / runtime: {self.format} / {self.runtime}",
            f"- nodes kept in float: {floats}",
            f"- calibration: {self.calibration_method}, {self.calibration_count} images from `{self.calibration_set}`",
            f"- eval set: `{self.eval_set}`, {self.eval_count} faces, content sha256 `{self.eval_hash[:16]}`",
            f"- model: `{self.model}`; artifact: `{self.artifact}`",
            f"- settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}",
            "- latency is the model alone (no preprocessing), FP32 and INT8 timed interleaved in one process",
        ]
        if self.layer_profile:
            lines += ["", f"Batch-1 time per kind of layer ({self.threads} thread(s), microseconds per run, "
                          "the runtime's profiler):", "", *_layer_lines(self.layer_profile)]
        speed = self.settings.get("speed")
        if speed and speed.get("rows"):
            lines += ["", f"Speed policy ({speed['source']}): {', '.join(speed['float_kinds']) or 'no kind'} kept in "
                          "float.", "", "| kind | layers | timing |", "|---|---|---|"]
            lines += [f"| {r['kind']} | {r['layers']} | {_speed_timing(r)} |" for r in speed["rows"]]
        if len(self.attempts) > 1:
            lines += ["", "| fallback attempt | float nodes | nme_io | regression | verdict |", "|---|---|---|---|---|"]
            for i, a in enumerate(self.attempts):
                lines.append(
                    f"| {i} | {len(a['float_nodes'])} | {a['nme_candidate']:.3f}% | "
                    f"{_signed_pct(float(a['regression']))} | {a['verdict']} |"
                )
        return "\n".join(lines) + "\n"

    def _chain_rows(self) -> list[str]:
        """The regression of FP32 and INT8 against the chain reference (the unpruned student), when given."""
        if self.chain_regression is None or not self.nme_chain_reference:
            return []
        fp32 = (self.nme_fp32 - self.nme_chain_reference) / self.nme_chain_reference
        budget = f"max {_signed_pct(self.max_chain_regression)}" if self.max_chain_regression is not None else "-"
        return [f"| vs chain reference ({self.nme_chain_reference:.3f}%) | {_signed_pct(fp32)} | "
                f"{_signed_pct(self.chain_regression)} | {budget} |"]

    def write(self, stem: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``<stem>.report.json`` and ``<stem>.report.md`` atomically."""
        stem = Path(stem)
        json_path = write_json(stem.with_name(stem.name + ".report.json"), self.as_dict())
        md_path = write_text(stem.with_name(stem.name + ".report.md"), self.to_markdown())
        return json_path, md_path


def _speed_timing(row: dict[str, Any]) -> str:
    if "gain" in row:
        return (f"all INT8 {row['all_int8_ms']:.3f} ms, this kind in float {row['kind_in_float_ms']:.3f} ms "
                f"({100 * row['gain']:+.1f} %)")
    return f"FP32 {row['fp32_us']:.0f} us, INT8 {row['int8_us']:.0f} us (timing file)"


def _layer_lines(layers: dict[str, Any]) -> list[str]:
    from quant.profile import KINDS

    names = list(layers)
    lines = ["| layers | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for kind in (k for k in KINDS if any(k in v["kinds"] for v in layers.values())):
        lines.append(f"| {kind} | " + " | ".join(f"{v['kinds'][kind]:.0f}" if kind in v["kinds"] else "-"
                                                  for v in layers.values()) + " |")
    lines.append("| total | " + " | ".join(f"{v['total_us']:.0f}" if not v["reason"] else
                                           f"not measured: {v['reason']}" for v in layers.values()) + " |")
    return lines


def _signed_pct(fraction: float) -> str:
    return f"{100 * fraction:+.2f}%" if math.isfinite(fraction) else str(fraction)
