"""Torch model -> ONNX: inference graph only, dynamic batch, simplified, with artifact metadata.

The legacy TorchScript exporter (``dynamo=False``) is used: it exports these conv nets cleanly
and does not need onnxscript, which the dynamo exporter does.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from landmarks.artifact import write_onnx_metadata
from landmarks.errors import ModelError, UnsupportedBackendError
from landmarks.metadata import ArtifactMetadata

INPUT_NAME = "input"
OUTPUT_NAME = "landmarks"


class LandmarkGraph(nn.Module):
    """``forward = model.forward_landmarks``: training-only branches (PFLD's pose head, FAN's
    intermediate heatmaps) are never traced, so they cannot reach the exported graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(model, "forward_landmarks", None)):
            raise ModelError(f"{type(model).__name__} has no forward_landmarks(x); cannot export it")
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_landmarks(x)


def export_onnx(
    model: nn.Module,
    metadata: ArtifactMetadata,
    out_path: str | os.PathLike[str],
    *,
    opset: int = 17,
    simplify: bool = True,
) -> Path:
    """Write an FP32 ONNX of ``model.forward_landmarks`` to ``out_path`` (not atomic: a staging path).

    Input ``input`` ``[N, 3, S, S]`` and output ``landmarks`` ``[N, P, 2]``, batch dynamic.
    The model is deep-copied so its train/eval mode and weights are left as they were (the
    exporter switches the traced module's mode and back, which can leave submodules training).
    """
    out_path = Path(out_path)
    graph = LandmarkGraph(copy.deepcopy(model).cpu().float()).eval()
    size = metadata.input_size
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        graph,
        (dummy,),
        str(out_path),
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        do_constant_folding=True,
    )
    proto = onnx.load(str(out_path))
    if simplify:
        proto = simplify_onnx(proto)
    write_onnx_metadata(proto, metadata.replace(layout="NCHW"))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out_path))
    return out_path


def simplify_onnx(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold and fuse with onnxsim; its own numeric check must pass."""
    try:
        import onnxsim
    except ImportError:
        raise UnsupportedBackendError("ONNX export needs onnxsim: pip install onnxsim") from None
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        raise ModelError("onnxsim produced a graph that does not match the original; export aborted")
    # onnxsim records its rewrites in metadata_props; the artifact's props are for its users.
    notes = [p for p in simplified.metadata_props if not p.key.startswith("onnxsim.")]
    del simplified.metadata_props[:]
    simplified.metadata_props.extend(notes)
    return simplified


def to_fp16_weights(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Store float weights as FP16, cast back to FP32 in the graph; input and output stay FP32.

    Halves the file while every runtime computes in FP32 (onnxruntime folds the casts when the
    session loads), the same trade as TFLite's float16 weight quantization; a true FP16-compute
    graph would fail on x86 CPUs, whose onnxruntime lacks FP16 conv kernels.
    """
    out = copy.deepcopy(proto)
    graph = out.graph
    casts = []
    kept = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or _numel(init) < 16:
            kept.append(init)
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(out, full_check=True)
    return out


def _numel(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims)) if tensor.dims else 1


def write_fp16_variant(fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    proto = onnx.load(str(fp32_path))
    onnx.save(to_fp16_weights(proto), str(out_path))
    return Path(out_path)
