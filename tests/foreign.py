"""Landmark models "from other projects", built here: small torch nets exported the ways other toolchains
export them (old opsets, initializers listed as graph inputs, Flatten + Gemm heads, outputs with pose
values after the points, BGR or [0, 1] or (x - 127) / 127 inputs, NHWC, dynamic sizes), with no
``landmarks.*`` metadata. Each is fitted in closed form on synthetic faces seen through its own
preprocessing, so a tool that feeds it wrongly gets a clearly worse NME.

Also used by ``benchmarks/foreign_models.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

NUM_POINTS = 68
EXTRA = 7  # pose angles and flags after the points, as some public PFLD exports have


@dataclass(frozen=True)
class Foreign:
    """How one fixture is exported and how a user would describe it with the flags."""

    name: str
    opset: int
    size: int = 64
    layout: str = "NCHW"
    color: str = "RGB"
    scale: str = "half"  # half: (x/255 - 0.5) / 0.5; unit: x/255; 127: (x - 127) / 127
    extra: int = 0  # values after the points in the output
    unit: str = "norm"  # norm or pixels
    initializers_as_inputs: bool = False
    dynamic_size: bool = False
    crop_scale: float = 1.25

    def flags(self) -> list[str]:
        mean, std = {"half": ("0.5,0.5,0.5", "0.5,0.5,0.5"), "unit": ("0,0,0", "1,1,1"),
                     "127": ("127,127,127", "127,127,127")}[self.scale]
        flags = ["--input-size", str(self.size), "--num-points", str(NUM_POINTS), "--layout", self.layout,
                 "--color", self.color, "--mean", mean, "--std", std, "--crop-scale", str(self.crop_scale),
                 "--points-unit", self.unit]
        if self.extra:
            flags += ["--points-slice", f"0:{2 * NUM_POINTS}"]
        return flags

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """uint8 RGB crops -> this model's input, written out independently of landmarks.runtimes."""
        x = crops.astype(np.float32)
        if self.color == "BGR":
            x = x[..., ::-1]
        x = {"half": (x / 255.0 - 0.5) / 0.5, "unit": x / 255.0, "127": (x - 127.0) / 127.0}[self.scale]
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def points(self, output: np.ndarray) -> np.ndarray:
        """This model's output -> points normalized to the crop, ``[N, P, 2]``."""
        flat = output.reshape(len(output), -1)[:, : 2 * NUM_POINTS].reshape(-1, NUM_POINTS, 2)
        return flat / self.size if self.unit == "pixels" else flat


FIXTURES = (
    Foreign("opset9_initializers_rgb01_pose", opset=9, scale="unit", extra=EXTRA, initializers_as_inputs=True,
            crop_scale=1.2),
    Foreign("opset11_bgr127_nhwc_pixels", opset=11, layout="NHWC", color="BGR", scale="127", unit="pixels"),
    Foreign("opset13_dynamic_size", opset=13, dynamic_size=True),
)


class ForeignNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> conv -> ReLU -> Flatten -> Gemm (+ pose values)."""

    def __init__(self, spec: Foreign) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.spec = spec
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.c2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.c3 = nn.Conv2d(16, 8, 3, 2, 1)
        self.fc = nn.Linear(8 * (spec.size // 8) ** 2, 2 * NUM_POINTS + spec.extra)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        return torch.flatten(torch.relu(self.c3(torch.relu(self.c2(torch.relu(self.c1(x)))))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    @torch.no_grad()
    def fit(self, crops: np.ndarray, points: np.ndarray, ridge: float = 0.1) -> ForeignNet:
        """The head in closed form: ridge regression of the points on the features."""
        f = self.features(torch.from_numpy(self.spec.preprocess(crops))).double().numpy()
        f = np.concatenate([f, np.ones((len(f), 1))], axis=1)
        target = points.reshape(len(points), -1) * (self.spec.size if self.spec.unit == "pixels" else 1.0)
        target = np.concatenate([target, np.zeros((len(target), self.spec.extra))], axis=1)
        w = np.linalg.solve(f.T @ f + ridge * np.eye(f.shape[1]), f.T @ target)
        self.fc.weight.copy_(torch.from_numpy(w[:-1].T))
        self.fc.bias.copy_(torch.from_numpy(w[-1]))
        if self.spec.extra:
            self.fc.bias[2 * NUM_POINTS:] = torch.arange(1.0, self.spec.extra + 1)  # "pose" values
        return self.eval()


def synthetic_faces(spec: str, size: int, seed: int, crop_scale: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Crops and points (normalized) of a dataset spec, as the toolkit crops them."""
    from landmarks.data import open_dataset

    dataset = open_dataset(spec, input_size=size, seed=seed, crop_scale=crop_scale, synthetic_count=256)
    crops = np.stack([dataset[i]["image"] for i in range(len(dataset))])
    points = np.stack([dataset[i]["points"] for i in range(len(dataset))])
    return crops, points


def write_faces(folder: Path, count: int, seed: int) -> Path:
    """``count`` synthetic faces as a folder of images + iBUG ``.pts`` (a user's labelled set)."""
    import cv2

    from landmarks.data import write_pts
    from landmarks.synthetic import generate_face

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        face = generate_face(seed + i)
        cv2.imwrite(str(folder / f"face{i:03d}.png"), cv2.cvtColor(face.image, cv2.COLOR_RGB2BGR))
        write_pts(folder / f"face{i:03d}.pts", face.points)
    return folder


def build(spec: Foreign, folder: Path, train_count: int = 256) -> tuple[Path, ForeignNet]:
    """Fit and export one fixture to ``folder/<name>.onnx``, no metadata; returns it and the torch model."""
    folder.mkdir(parents=True, exist_ok=True)
    crops, points = synthetic_faces(f"synthetic:{train_count}", spec.size, seed=50_000, crop_scale=spec.crop_scale)
    model = ForeignNet(spec).fit(crops, points)
    shape = (1, 3, spec.size, spec.size) if spec.layout == "NCHW" else (1, spec.size, spec.size, 3)
    axes = {0: "batch"}
    if spec.dynamic_size:
        axes |= {2: "height", 3: "width"} if spec.layout == "NCHW" else {1: "height", 2: "width"}
    path = folder / f"{spec.name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=spec.opset,
                          input_names=["data"], output_names=["output"],
                          dynamic_axes={"data": axes, "output": {0: "batch"}},
                          keep_initializers_as_inputs=spec.initializers_as_inputs)
    return path, model


@dataclass
class Reference:
    """What the torch model scores on given crops, computed without the toolkit's runtimes."""

    nme_io: float
    points: np.ndarray = field(repr=False)


@torch.no_grad()
def torch_reference(spec: Foreign, model: ForeignNet, crops: np.ndarray, gt: np.ndarray) -> Reference:
    from landmarks.metrics import compute_metrics

    pred = spec.points(model(torch.from_numpy(spec.preprocess(crops))).numpy())
    metrics, _ = compute_metrics(pred.astype(np.float64) * spec.size, gt.astype(np.float64) * spec.size, spec.size)
    return Reference(float(metrics.nme_io), pred)
