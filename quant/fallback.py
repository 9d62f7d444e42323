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
noise ratio, dominated by the outlier, still looks fine.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quant.accuracy_gate.gate import GateReport

_SQNR_CAP = 100.0  # dB; a noiseless tensor counts as this, so drops stay finite


@dataclass(frozen=True)
class Sensitivity:
    """One quantized tensor: how much quantizing it hurts, and which nodes keep it float."""

    tensor: str
    score: float
    nodes: tuple[str, ...]


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


def per_channel_sqnr(reference: Sequence[np.ndarray], noisy: Sequence[np.ndarray], axis: int = 1) -> float:
    """Median over channels of each channel's signal-to-quantization-noise ratio, in dB.

    The default ``err_func``. The median, not the minimum: a channel that is nearly constant
    (a saturated sigmoid) has almost no signal and would dominate a minimum, while an outlier
    channel that stretches a per-tensor scale ruins most channels and moves the median.
    Channels with no signal are ignored; without noise the result is capped at 100 dB.
    """
    ref = np.concatenate([np.asarray(r, np.float64) for r in reference])
    out = np.concatenate([np.asarray(n, np.float64) for n in noisy])
    if ref.shape != out.shape or ref.size == 0:
        return _SQNR_CAP
    if ref.ndim < 2:
        ref, out = ref[:, None], out[:, None]
    axis = axis % ref.ndim
    reduce = tuple(i for i in range(ref.ndim) if i != axis)
    signal = np.sum(ref**2, axis=reduce)
    noise = np.sum((ref - out) ** 2, axis=reduce)
    live = signal > 1e-12 * max(float(signal.max()), 1e-30)
    if not live.any():
        return _SQNR_CAP
    with np.errstate(divide="ignore"):
        ratio = 10 * np.log10(signal[live] / np.maximum(noise[live], 1e-30))
    return float(np.clip(np.median(ratio), -_SQNR_CAP, _SQNR_CAP))


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


def rank_ort(
    float_path: str | os.PathLike[str],
    qdq_path: str | os.PathLike[str],
    reader: Any,
    *,
    err_func: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float] = per_channel_sqnr,
) -> list[Sensitivity]:
    """Rank the quantized tensors of an ORT QDQ model by the SQNR they lose, worst first.

    A tensor's score is the per-channel SQNR of its nearest measured upstream tensors minus its
    own (float model vs QDQ model, both on the calibration inputs): where the noise *enters*.
    Its group is the nodes from those upstream tensors to it plus the nodes consuming it.
    """
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as qdq

    with tempfile.TemporaryDirectory(prefix="quant.rank.") as tmp:
        activations = {}
        for tag, path in (("float", float_path), ("qdq", qdq_path)):
            augmented = str(Path(tmp) / f"{tag}.onnx")
            qdq.modify_model_output_intermediate_tensors(str(path), augmented)
            reader.rewind()
            activations[tag] = qdq.collect_activations(augmented, reader)
        reader.rewind()
    matching = qdq.create_activation_matching(activations["qdq"], activations["float"])
    graph = onnx.load(str(float_path)).graph
    shapes = _tensor_shapes(graph)
    sqnr = {}
    for name, match in matching.items():
        noisy = match.get("post_qdq", match.get("pre_qdq"))
        if "float" not in match or noisy is None:
            continue
        shape = shapes.get(name)
        sqnr[name] = err_func(_reshape(match["float"], shape), _reshape(noisy, shape))
    return _rank_graph(graph, sqnr)


def _tensor_shapes(graph: Any) -> dict[str, list[int]]:
    """Per-sample shapes (batch 1) of the graph's tensors, from its shape inference."""
    shapes = {}
    for info in [*graph.value_info, *graph.output, *graph.input]:
        dims = [d.dim_value if d.dim_value > 0 else -1 for d in info.type.tensor_type.shape.dim]
        if dims:
            shapes[info.name] = [1, *dims[1:]]
    return shapes


def _reshape(samples: Sequence[np.ndarray], shape: list[int] | None) -> list[np.ndarray]:
    """qdq_loss_debug flattens activations; restore the channel axis where the shape is known."""
    out = []
    for sample in samples:
        sample = np.asarray(sample)
        if shape and -1 not in shape[1:] and sample.size == int(np.prod(shape)):
            out.append(sample.reshape(shape))
        else:
            out.append(sample.reshape(1, -1))
    return out


_PASS_THROUGH = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Pad"}


def _rank_graph(graph: Any, sqnr: dict[str, float]) -> list[Sensitivity]:
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def consumers(tensor: str) -> list[str]:
        """Nodes reading ``tensor``, followed through shape-only ops that share its QDQ."""
        out = []
        for node in readers.get(tensor, []):
            out.append(node.name)
            if node.op_type in _PASS_THROUGH:
                out.extend(name for o in node.output for name in consumers(o))
        return out

    def upstream(tensor: str, seen: set[str]) -> tuple[float, list[str]]:
        """Worst measured SQNR feeding ``tensor``'s producer chain, and the chain's nodes."""
        node = producer.get(tensor)
        if node is None:
            return sqnr.get(tensor, _SQNR_CAP), []
        nodes, worst = [node.name], _SQNR_CAP
        for name in node.input:
            if not name or name in seen or (name not in producer and name not in sqnr):
                continue  # initializers (weights) and empty optional inputs
            seen.add(name)
            if name in sqnr:
                worst = min(worst, sqnr[name])
            else:
                value, more = upstream(name, seen)
                worst, nodes = min(worst, value), nodes + more
        return worst, nodes

    ranking = []
    for tensor, value in sqnr.items():
        if tensor not in producer:
            continue  # graph inputs: quantizing them is not a node's choice
        incoming, chain = upstream(tensor, {tensor})
        nodes = tuple(dict.fromkeys([*chain, *consumers(tensor)]))
        ranking.append(Sensitivity(tensor, float(incoming - value), nodes))
    return sorted(ranking, key=lambda s: (-s.score, s.tensor))


def _union(groups: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))
