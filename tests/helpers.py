"""Shared test helpers: tiny landmark models and their ONNX / TFLite exports, tiny .pts datasets.

Everything is built in code, in a temp dir, in well under a second (TFLite conversion: a few
seconds, the TensorFlow import included), so tests need no downloads and no trained weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from landmarks.metadata import ArtifactMetadata


class TinyLandmarkNet(nn.Module):
    """conv3x3 -> ReLU -> global mean -> linear -> sigmoid -> ``[N, P, 2]`` in ``xy_norm``.

    Small enough to rebuild op-for-op in TensorFlow, so all three runtimes can be compared on
    the same weights. The head is scaled up so outputs spread over [0, 1] instead of sitting
    at 0.5, which keeps agreement tests sensitive to preprocessing mistakes.
    """

    def __init__(self, num_points: int = 68, channels: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.num_points = num_points
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.head = nn.Linear(channels, 2 * num_points)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator) * 0.3)
            self.conv.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator) * 2.0)
            self.head.bias.copy_(torch.randn(2 * num_points, generator=generator) * 0.5)
        self.eval()

    def forward_landmarks(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return torch.sigmoid(self.head(y)).reshape(-1, self.num_points, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_landmarks(x)


def tiny_metadata(num_points: int = 68, input_size: int = 32, **changes) -> ArtifactMetadata:
    """Section-2 metadata of a tiny test model; non-default color/mean/std via ``changes``."""
    return ArtifactMetadata(num_points=num_points, input_size=input_size, source="tiny@test", **changes)


class _ExportWrapper(nn.Module):
    """What an exporter traces: NHWC input if asked, flat ``[N, 2P]`` output if asked."""

    def __init__(self, model: nn.Module, nhwc: bool, flat: bool) -> None:
        super().__init__()
        self.model, self.nhwc, self.flat = model, nhwc, flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        out = self.model.forward_landmarks(x)
        return out.flatten(1) if self.flat else out


def export_onnx(
    model: nn.Module,
    path: Path,
    metadata: ArtifactMetadata | None,
    *,
    flat: bool = False,
    layout: str | None = None,
) -> Path:
    """Export with a dynamic batch; ``metadata`` goes into ``metadata_props`` (None: no keys)."""
    import onnx

    layout = layout or (metadata.layout if metadata else "NCHW")
    size = metadata.input_size if metadata else 32
    shape = (1, size, size, 3) if layout == "NHWC" else (1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _ExportWrapper(model, layout == "NHWC", flat).eval(),
            (torch.zeros(shape),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["landmarks"],
            dynamic_axes={"input": {0: "batch"}, "landmarks": {0: "batch"}},
            opset_version=17,
        )
    proto = onnx.load(str(path))
    for key, value in (metadata.to_strings() if metadata else {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def make_tflite(
    model: TinyLandmarkNet,
    path: Path,
    metadata: ArtifactMetadata,
    *,
    int8: bool = False,
    calibration: np.ndarray | None = None,
) -> Path:
    """Rebuild ``model`` in TensorFlow (NHWC), convert to TFLite, write the JSON sidecar.

    With ``int8`` the model is fully integer (int8 input and output tensors), calibrated on
    ``calibration`` (preprocessed float inputs, NHWC).
    """
    import tensorflow as tf

    if metadata.layout != "NHWC":
        raise ValueError("TFLite test models take NHWC input")
    conv_w = model.conv.weight.detach().numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
    conv_b = model.conv.bias.detach().numpy()
    head_w = model.head.weight.detach().numpy().T
    head_b = model.head.bias.detach().numpy()
    size, num_points = metadata.input_size, model.num_points

    class _Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
        @tf.autograph.experimental.do_not_convert
        def __call__(self, x):
            y = tf.nn.relu(tf.nn.conv2d(x, conv_w, 1, "SAME") + conv_b)
            y = tf.reduce_mean(y, axis=[1, 2])
            return tf.reshape(tf.sigmoid(tf.matmul(y, head_w) + head_b), [-1, num_points, 2])

    net = _Net()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.__call__.get_concrete_function()], net)
    if int8:
        samples = np.asarray(calibration, dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s[None]] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    write_sidecar(path, metadata)
    return path


def write_sidecar(path: Path, metadata: ArtifactMetadata) -> Path:
    sidecar = path.with_name(path.name + ".json")
    sidecar.write_text(json.dumps(metadata.to_strings(), indent=2))
    return sidecar


def random_crops(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random uint8 RGB crops (noise blurred, so convolutions see structure)."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    return np.stack([cv2.GaussianBlur(c, (5, 5), 1.5) for c in crops])


# A 68-point face layout (continuous coordinates relative to the box centre): box exactly
# 100 x 80, outer eye corners 36 / 45 at (-30, -10) and (30, -10), so inter-ocular = 60.
def face_template(num_points: int = 68, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.integers(-45, 46, size=(num_points, 2)).astype(np.float64)
    points[:, 1] = np.clip(points[:, 1], -35, 35)
    points[0] = (-50, 0)
    points[16] = (50, 0)
    points[8] = (0, 40)
    points[19] = (-20, -40)
    points[36] = (-30, -10)
    points[45] = (30, -10)
    return points


def write_pts(path: Path, points: np.ndarray) -> None:
    """iBUG .pts: 1-based pixel indices, so continuous ``x`` is written as ``x + 0.5``."""
    lines = [f"{x + 0.5:.3f} {y + 0.5:.3f}" for x, y in points]
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n" + "\n".join(lines) + "\n}\n")


def write_pts_dataset(root: Path, count: int = 6, image_size: int = 200, seed: int = 0) -> Path:
    """``count`` PNG images with .pts files: the template at varying position and scale."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    template = face_template(seed=seed)
    for i in range(count):
        scale = (1.0, 1.5, 0.8)[i % 3]
        centre = np.array([image_size / 2, image_size / 2]) + rng.integers(-10, 11, size=2)
        image = random_crops(1, image_size, seed=seed + i)[0]
        cv2.imwrite(str(root / f"face_{i:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_pts(root / f"face_{i:03d}.pts", template * scale + centre)
    return root
