"""FAN teacher: stacked hourglass network of Bulat & Tzimiropoulos (ICCV 2017).

``fan4`` at the default width 256 is state-dict compatible with face-alignment's public
2DFAN-4 weights: same module names, same shapes, same order. The module names below (``m0``,
``top_m_0``, ``conv_last0``, ``b2_plus_1``, ...) are fixed by that checkpoint, which is why this
file attaches stack and hourglass modules with ``add_module`` under those names instead of
``nn.ModuleList`` (the project's usual choice).

Outputs: ``forward`` -> list of every stack's heatmaps ``[N, P, S/4, S/4]`` (intermediate
supervision); ``forward_with_features`` -> the same plus the last stack's ``width``-channel
feature map (input of the last heatmap head, for feature KD); ``forward_landmarks`` ->
``[N, P, 2]`` ``xy_norm`` decoded from the last stack by soft-argmax.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from landmarks.errors import ConfigError
from landmarks.models.heatmap import DEFAULT_BETA, DecodeMethod, decode_heatmaps
from landmarks.models.registry import register_model


@dataclass(frozen=True)
class FANConfig:
    """``width`` is 256 in the original; every ConvBlock width scales with it."""

    num_stacks: int = 4
    width: int = 256
    num_points: int = 68
    input_size: int = 256
    depth: int = 4

    def __post_init__(self) -> None:
        if self.num_stacks < 1 or self.depth < 1 or self.num_points < 1:
            raise ConfigError(f"FAN needs num_stacks, depth, num_points >= 1, got {self}")
        if self.width < 8 or self.width % 8:
            raise ConfigError(f"FAN width must be a positive multiple of 8, got {self.width}")
        multiple = 4 * 2**self.depth  # stride-4 stem, then `depth` poolings in each hourglass
        if self.input_size % multiple:
            raise ConfigError(f"FAN input_size must be a multiple of {multiple}, got {self.input_size}")


class FANOutput(NamedTuple):
    heatmaps: list[Tensor]
    features: Tensor


class ConvBlock(nn.Module):
    """Multi-scale residual block: three pre-activation 3x3 convs (out/2, out/4, out/4), concat."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        half, quarter = out_ch // 2, out_ch // 4
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(True), nn.Conv2d(in_ch, out_ch, 1, bias=False))
            if in_ch != out_ch
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass; level ``k`` owns ``b1_k`` (skip), ``b2_k`` (down), ``b3_k`` (up)."""

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.depth = depth
        self._add_level(depth, width)

    def _add_level(self, level: int, width: int) -> None:
        # Registration order matches face-alignment's, so state_dict keys come out in its order.
        self.add_module(f"b1_{level}", ConvBlock(width, width))
        self.add_module(f"b2_{level}", ConvBlock(width, width))
        if level > 1:
            self._add_level(level - 1, width)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(width, width))
        self.add_module(f"b3_{level}", ConvBlock(width, width))

    def _level(self, level: int, x: Tensor) -> Tensor:
        up = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else getattr(self, f"b2_plus_{level}")(low)
        low = getattr(self, f"b3_{level}")(low)
        return up + F.interpolate(low, scale_factor=2.0, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """Stacked hourglass heatmap regressor; heatmaps at 1/4 of the input resolution."""

    def __init__(self, config: FANConfig) -> None:
        super().__init__()
        self.config = config
        w, p = config.width, config.num_points
        self.conv1 = nn.Conv2d(3, w // 4, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(w // 4)
        self.conv2 = ConvBlock(w // 4, w // 2)
        self.conv3 = ConvBlock(w // 2, w // 2)
        self.conv4 = ConvBlock(w // 2, w)
        for i in range(config.num_stacks):
            self.add_module(f"m{i}", HourGlass(config.depth, w))
            self.add_module(f"top_m_{i}", ConvBlock(w, w))
            self.add_module(f"conv_last{i}", nn.Conv2d(w, w, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(w))
            self.add_module(f"l{i}", nn.Conv2d(w, p, 1))
            if i < config.num_stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(w, w, 1))
                self.add_module(f"al{i}", nn.Conv2d(p, w, 1))

    @property
    def arch_config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model with ``create_model(arch, **...)``."""
        config = dataclasses.asdict(self.config)
        del config["num_stacks"]  # fixed by the builder's name
        return config

    @property
    def heatmap_size(self) -> int:
        return self.config.input_size // 4

    def forward_with_features(self, x: Tensor) -> FANOutput:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        heatmaps: list[Tensor] = []
        features = previous
        for i in range(self.config.num_stacks):
            ll = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(previous))
            features = F.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(ll)))
            heatmaps.append(getattr(self, f"l{i}")(features))
            if i < self.config.num_stacks - 1:
                merged = getattr(self, f"bl{i}")(features) + getattr(self, f"al{i}")(heatmaps[-1])
                previous = previous + merged
        return FANOutput(heatmaps, features)

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.forward_with_features(x).heatmaps

    def forward_landmarks(
        self, x: Tensor, method: DecodeMethod = "soft_argmax", beta: float = DEFAULT_BETA
    ) -> Tensor:
        """``[N, P, 2]`` ``xy_norm`` from the last stack's heatmaps."""
        return decode_heatmaps(self.forward(x)[-1], method=method, beta=beta)


def _create_fan(num_stacks: int, /, **kwargs: Any) -> FAN:
    allowed = {f.name for f in dataclasses.fields(FANConfig)} - {"num_stacks"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(f"unknown FAN option(s) {unknown}; valid: {sorted(allowed)}")
    return FAN(FANConfig(num_stacks=num_stacks, **kwargs))


@register_model
def fan1(**kwargs: Any) -> FAN:
    return _create_fan(1, **kwargs)


@register_model
def fan2(**kwargs: Any) -> FAN:
    return _create_fan(2, **kwargs)


@register_model
def fan4(**kwargs: Any) -> FAN:
    """2DFAN-4 layout; at width 256 and 68 points it loads face-alignment's weights."""
    return _create_fan(4, **kwargs)
