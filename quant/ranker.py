"""The sensitivity ranker: which quantized tensors of an ORT QDQ model lose the most SQNR.

The fallback (:mod:`quant.fallback`) keeps the top-ranked groups in float; the TFLite ranking
(:func:`quant.tflite_int8.rank`) returns the same :class:`Sensitivity` records.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quant.sqnr import SQNR_CAP, per_channel_sqnr


@dataclass(frozen=True)
class Sensitivity:
    """One quantized tensor: how much quantizing it hurts, and which nodes keep it float."""

    tensor: str
    score: float
    nodes: tuple[str, ...]


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
            return sqnr.get(tensor, SQNR_CAP), []
        nodes, worst = [node.name], SQNR_CAP
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
