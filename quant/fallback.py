"""Accuracy-aware fallback: keep the most quantization-sensitive nodes in float until the gate passes.

Modelled on NNCF's ``quantize_with_accuracy_control`` (rank, restore greedily, re-validate) but
working directly on onnxruntime QDQ graphs and TFLite denylists:

1. rank: every quantized activation tensor gets a sensitivity score (ORT: the drop in per-channel
   SQNR between float and QDQ activations across the nodes producing it, from
   ``onnxruntime.quantization.qdq_loss_debug``; TFLite: the per-channel SQNR of each op's
   quantized output from ``tf.lite.experimental.QuantizationDebugger``), together with the group
   of nodes that must stay float for that tensor to stay float (its producer and consumers);
2. restore: keep the top 1, 2, 4, ... groups in float, re-convert from the cached calibration,
   re-gate; stop at the first pass or when the next step would exceed ``max_float_nodes``.

Per-channel SQNR (median over channels) rather than whole-tensor SQNR: a per-tensor activation
scale stretched by one outlier channel wipes out the small channels while the tensor's total
noise ratio, dominated by the outlier, still looks fine. Ranking lives in :mod:`quant.ranker`
(ORT) and :func:`quant.tflite_int8.rank`; the SQNR definitions in :mod:`quant.sqnr`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quant.accuracy_gate.gate import GateReport
from quant.ranker import Sensitivity


@dataclass(frozen=True)
class Attempt:
    """One gated candidate of the restore loop."""

    float_nodes: tuple[str, ...]
    nme_candidate: float
    regression: float
    verdict: str

    @classmethod
    def of(cls, report: GateReport) -> Attempt:
        return cls(report.float_nodes, report.nme_candidate, report.regression, report.verdict)


@dataclass(frozen=True)
class FallbackResult:
    """What the restore loop ended with; ``path`` is the last candidate built (pass or not)."""

    report: GateReport
    path: Path
    attempts: tuple[Attempt, ...] = ()
    ranking: tuple[Sensitivity, ...] = field(default=(), repr=False)
    reached_max_float_nodes: bool = False


def restore_until_pass(
    ranking: Sequence[Sensitivity],
    build: Callable[[tuple[str, ...]], Path],
    gate: Callable[[Path, tuple[str, ...]], GateReport],
    *,
    max_float_nodes: int,
    first: tuple[Path, GateReport] | None = None,
    log: Callable[[str], None] = print,
) -> FallbackResult:
    """Greedy restore loop: float groups 1, 2, 4, ... of ``ranking`` until ``gate`` passes.

    ``build(float_nodes)`` writes a candidate and returns its path; ``gate(path, float_nodes)``
    judges it. ``first`` is the already gated all-INT8 candidate, if any.
    """
    attempts: list[Attempt] = []
    if first is None:
        path = build(())
        first = (path, gate(path, ()))
    path, report = first
    attempts.append(Attempt.of(report))
    hit_bound = False
    count = 1
    ranked = [s for s in ranking if s.score > 0]
    while not report.passed and count <= len(ranked):
        nodes = _union(s.nodes for s in ranked[:count])
        if len(nodes) > max_float_nodes:
            hit_bound = True
            log(f"fallback: stop, keeping {len(nodes)} nodes in float would exceed max_float_nodes={max_float_nodes}")
            break
        if nodes != report.float_nodes:
            path = build(nodes)
            report = gate(path, nodes)
            attempts.append(Attempt.of(report))
            log(f"fallback: {len(nodes)} node(s) in float -> {report.verdict_line()}")
        if count == len(ranked):
            break
        count = min(2 * count, len(ranked))
    return FallbackResult(report, path, tuple(attempts), tuple(ranking), hit_bound)


def _union(groups: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))
