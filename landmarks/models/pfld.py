"""PFLD student: Guo et al. 2019, "PFLD: A Practical Facial Landmark Detector".

MobileNetV2 inverted-residual backbone on a 112 px crop, a multi-scale fully-connected head
(S1: the 14x14 map averaged, S2: the 7x7 conv output averaged, S3: the 1x1 conv output,
concatenated -> fc -> ``2 * num_points``) and an auxiliary yaw/pitch/roll branch fed from the
28x28 map, used only by the training loss (:func:`landmarks.models.losses.pfld_loss`).

Layer widths follow the authors' TensorFlow code: the width multiplier scales each stage's
output channels; the expansion (hidden) widths stay 128 / 512 / 256, as there. Every width is
a named entry of ``channels`` (see :func:`default_channels`), and ``model.arch_config`` reads
the widths back from the layers, so a model pruned in place by Torch-Pruning is rebuilt from
its checkpoint with ``create_model(arch, **arch_config)`` alone.

Outputs: ``forward`` -> :class:`PFLDOutput` (landmarks ``[N, P, 2]`` ``xy_norm``, pose
``[N, 3]`` degrees, features = the stage-5 map ``[N, C5, 14, 14]`` for feature KD);
``forward_landmarks`` -> landmarks only, without the auxiliary branch (what export traces).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from landmarks.errors import ConfigError
from landmarks.models.registry import register_model

# (name, output width at 1x, expansion widths of its blocks, first stride); blocks after the
# first of a stage are residual, as in the authors' code.
_STAGES: tuple[tuple[str, int, tuple[int, ...], int], ...] = (
    ("stage3", 64, (128,) * 5, 2),
    ("stage4", 128, (128,), 2),
    ("stage5", 128, (512,) * 6, 1),
    ("stage6", 16, (256,), 1),
)
_SCALED = {"conv1": 64, "conv7": 32, "conv8": 128} | {name: out for name, out, _, _ in _STAGES}
_AUX = {"aux.conv1": 128, "aux.conv2": 128, "aux.conv3": 32, "aux.conv4": 128, "aux.fc1": 32}


def default_channels(width: float = 1.0) -> dict[str, int]:
    """Every configurable width by name: ``conv1``, ``stage3``, ``stage3.0.hidden``, ..., ``aux.fc1``."""
    channels = {name: max(1, round(base * width)) for name, base in _SCALED.items()}
    for name, _, hidden, _ in _STAGES:
        channels |= {f"{name}.{i}.hidden": h for i, h in enumerate(hidden)}
    return channels | _AUX


@dataclass(frozen=True)
class PFLDConfig:
    width: float = 1.0
    num_points: int = 68
    input_size: int = 112
    channels: Mapping[str, int] = field(default_factory=dict)  # overrides of default_channels

    def __post_init__(self) -> None:
        if self.width <= 0 or self.num_points < 1:
            raise ConfigError(f"PFLD needs width > 0, num_points >= 1; got {self.width}, {self.num_points}")
        if self.input_size < 32 or self.input_size % 16:
            raise ConfigError(f"PFLD input_size must be a multiple of 16 (>= 32), got {self.input_size}")
        valid = default_channels()
        unknown = sorted(set(self.channels) - set(valid))
        if unknown:
            raise ConfigError(f"unknown PFLD channel name(s) {unknown}; valid: {sorted(valid)}")
        bad = {k: v for k, v in self.channels.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ConfigError(f"PFLD channel counts must be positive integers, got {bad}")

    def resolved_channels(self) -> dict[str, int]:
        return default_channels(self.width) | dict(self.channels)


class PFLDOutput(NamedTuple):
    landmarks: Tensor  # [N, P, 2] xy_norm
    pose: Tensor  # [N, 3] yaw, pitch, roll in degrees
    features: Tensor  # [N, C, 14, 14] stage-5 output, for feature distillation


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                  padding: int | None = None) -> nn.Sequential:
    pad = kernel // 2 if padding is None else padding
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (carries the stride), linear 1x1 project."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int, stride: int, residual: bool) -> None:
        super().__init__()
        if residual and (stride != 1 or in_ch != out_ch):
            raise ConfigError(f"a residual block needs stride 1 and in == out, got {in_ch}->{out_ch}")
        self.residual = residual
        self.expand = _conv_bn_relu(in_ch, hidden, 1)
        self.dw = _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.dw(self.expand(x)))
        return x + out if self.residual else out


class AuxiliaryNet(nn.Module):
    """Pose branch (training only): four convs, global max, two fc -> yaw/pitch/roll degrees."""

    def __init__(self, in_ch: int, c: Mapping[str, int]) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_ch, c["aux.conv1"], 3, 2)
        self.conv2 = _conv_bn_relu(c["aux.conv1"], c["aux.conv2"], 3, 1)
        self.conv3 = _conv_bn_relu(c["aux.conv2"], c["aux.conv3"], 3, 2)
        self.conv4 = _conv_bn_relu(c["aux.conv3"], c["aux.conv4"], 7, 1)
        self.fc1 = nn.Linear(c["aux.conv4"], c["aux.fc1"])
        self.fc2 = nn.Linear(c["aux.fc1"], 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv4(self.conv3(self.conv2(self.conv1(x)))).amax((2, 3))
        # The fc works in radians (outputs of order 1); the interface is degrees like the data.
        return self.fc2(torch.relu(self.fc1(x))) * (180.0 / math.pi)


class PFLD(nn.Module):
    def __init__(self, config: PFLDConfig) -> None:
        super().__init__()
        self.config = config
        c = config.resolved_channels()
        self.conv1 = _conv_bn_relu(3, c["conv1"], 3, 2)
        self.conv2 = _conv_bn_relu(c["conv1"], c["conv1"], 3, 1, groups=c["conv1"])  # depthwise
        in_ch = c["conv1"]
        stages = []
        for name, _, hidden, stride in _STAGES:
            blocks = []
            for i in range(len(hidden)):
                blocks.append(InvertedResidual(in_ch, c[f"{name}.{i}.hidden"], c[name],
                                               stride if i == 0 else 1, residual=i > 0))
                in_ch = c[name]
            stages.append(nn.Sequential(*blocks))
        self.stage3, self.stage4, self.stage5, self.stage6 = stages
        self.conv7 = _conv_bn_relu(c["stage6"], c["conv7"], 3, 2)
        # A "valid" conv over the whole remaining map (7x7 at 112 px) gives S3 at 1x1.
        self.conv8 = _conv_bn_relu(c["conv7"], c["conv8"], config.input_size // 16, 1, padding=0)
        self.fc = nn.Linear(c["stage6"] + c["conv7"] + c["conv8"], 2 * config.num_points)
        self.aux = AuxiliaryNet(c["stage3"], c)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # Start every landmark at the crop centre: a plain linear output then stays well scaled.
        nn.init.constant_(self.fc.bias, 0.5)

    @staticmethod
    def channel_layers() -> dict[str, str]:
        """The layer each width of ``channels`` is the output width of, by module name."""
        layers = {"conv1": "conv1.0", "conv7": "conv7.0", "conv8": "conv8.0"}
        for name, _, hidden, _ in _STAGES:
            layers[name] = f"{name}.{len(hidden) - 1}.project.0"
            layers |= {f"{name}.{i}.hidden": f"{name}.{i}.expand.0" for i in range(len(hidden))}
        return layers | {f"aux.conv{i}": f"aux.conv{i}.0" for i in range(1, 5)} | {"aux.fc1": "aux.fc1"}

    @property
    def channels(self) -> dict[str, int]:
        """Widths read from the layers themselves, so they stay true after in-place pruning."""
        modules = dict(self.named_modules())
        return {key: out_width(modules[name]) for key, name in self.channel_layers().items()}

    def with_channels(self, channels: Mapping[str, int]) -> PFLD:
        """A freshly initialized model like this one with the given widths (e.g. a pruning trial's)."""
        return PFLD(dataclasses.replace(self.config, channels=dict(channels)))

    @property
    def arch_config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this exact model (pruned or not) under its arch name."""
        return {"num_points": self.config.num_points, "input_size": self.config.input_size,
                "channels": self.channels}

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> (28x28 stage-3 map for the pose branch, 14x14 stage-5 map, pooled multi-scale vector)."""
        x = self.stage3(self.conv2(self.conv1(x)))
        mid = x
        feat = self.stage5(self.stage4(x))
        s1 = self.stage6(feat)
        s2 = self.conv7(s1)
        s3 = self.conv8(s2)
        # mean((2, 3)), not adaptive_avg_pool2d(...).flatten(1): Torch-Pruning's tracer
        # mis-maps the latter's channels into the following cat + linear.
        multi_scale = torch.cat((s1.mean((2, 3)), s2.mean((2, 3)), s3.mean((2, 3))), 1)
        return mid, feat, multi_scale

    def forward_head(self, multi_scale: Tensor) -> Tensor:
        """Pooled features -> ``[N, P, 2]`` ``xy_norm`` (kept in fp32 by mixed-precision training:
        bf16 would round the coordinates to about 1/256 of the crop)."""
        return self.fc(multi_scale).reshape(-1, self.config.num_points, 2)

    def forward(self, x: Tensor) -> PFLDOutput:
        mid, feat, multi_scale = self.forward_features(x)
        return PFLDOutput(self.forward_head(multi_scale), self.aux(mid), feat)

    def forward_landmarks(self, x: Tensor) -> Tensor:
        """``[N, P, 2]`` ``xy_norm``; the pose branch is not run."""
        return self.forward_head(self.forward_features(x)[2])


def out_width(layer: nn.Module) -> int:
    """Output channels of a conv, output features of a linear layer."""
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _create_pfld(width: float, /, **kwargs: Any) -> PFLD:
    allowed = {"num_points", "input_size", "channels"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"unknown PFLD option(s) {unknown}; valid: {sorted(allowed)}")
    channels = kwargs.pop("channels", None) or {}
    return PFLD(PFLDConfig(width=width, channels=dict(channels), **kwargs))


@register_model
def pfld025(**kwargs: Any) -> PFLD:
    """PFLD 0.25X; ``channels`` overrides widths by name (a pruned model's ``arch_config``)."""
    return _create_pfld(0.25, **kwargs)


@register_model
def pfld100(**kwargs: Any) -> PFLD:
    """PFLD 1X."""
    return _create_pfld(1.0, **kwargs)
