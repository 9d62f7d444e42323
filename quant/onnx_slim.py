"""Byte-level passes on a quantized ONNX model that change nothing it computes.

A QDQ graph of a small net carries a surprising share of bookkeeping: onnxruntime names every
inserted tensor after its source (``/stage5/stage5.3/dw/dw.0/Conv_output_0_QuantizeLinear_Output``)
and every Q/DQ node after that, and each name is stored again in every node that reads it.
On pfld025 that is ~57 KB of a 405 KB INT8 file; the int8 weights are 289 KB. The passes here
drop what the runtime never reads. Outputs stay bit-identical (tested), and the gate evaluates
the slimmed file, the one that ships.
"""

from __future__ import annotations

from typing import Any

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def strip_zero_points(model: Any) -> int:
    """Drop all-zero zero-point initializers of weight/bias DequantizeLinear nodes; returns bytes saved.

    Symmetric weights and int32 biases carry one zero per output channel (1 + 4 bytes), which on
    depthwise layers (9 weights per channel) is a visible share of the file. ONNX defines an
    absent zero point as 0, and onnxruntime fuses the QDQ groups the same way.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if (node.op_type == "DequantizeLinear" and len(node.input) == 3 and node.input[0] in inits
                and node.input[2] in inits and not numpy_helper.to_array(inits[node.input[2]]).any()):
            del node.input[2]
    used = {name for node in model.graph.node for name in node.input}
    dropped = [t for t in model.graph.initializer if t.name not in used]
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return sum(t.ByteSize() for t in dropped)


def compact_names(model: Any) -> int:
    """Rename internal tensors to short ids and unname Q/DQ nodes; returns bytes saved.

    Kept: the graph's input and output names (callers feed and read them) and the names of the
    compute nodes (``/stage5/stage5.3/dw/dw.0/Conv``), so the model still reads in Netron and
    its float nodes can be matched with the quantization report. Node names are optional in
    ONNX; tensor names only have to be unique.
    """
    graph = model.graph
    if any(attr.g.node or attr.graphs for node in graph.node for attr in node.attribute):
        return 0  # subgraphs (If, Loop) may read outer names: leave such models as they are
    before = model.ByteSize()
    kept = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    short: dict[str, str] = {}
    ids = (f"t{_base36(i)}" for i in range(1 << 62))

    def rename(name: str) -> str:
        if name in kept:
            return name
        if name not in short:
            short[name] = next(i for i in ids if i not in kept)
        return short[name]

    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
    for node in graph.node:
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
        if node.op_type in QDQ_OPS:
            node.name = ""
    for info in graph.value_info:
        info.name = rename(info.name)
    return before - model.ByteSize()


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 36)
        digits = _DIGITS[rest] + digits
        if number == 0:
            return digits
