"""Heatmap targets and decoders, all in the continuous convention of docs/DESIGN.md, "Coordinates".

Heatmap pixel ``j`` spans ``[j, j + 1)`` of the heatmap grid, so its centre is at
``(j + 0.5) / H`` in ``xy_norm`` (the fraction of the input crop). Rendering and both decoders
use that one convention, so a point rendered by :func:`render_gaussian_heatmaps` decodes back
to itself and ``xy_norm`` means the same for a 64 px heatmap and a 256 px crop.

Usage::

    target = render_gaussian_heatmaps(points_norm, size=64, sigma=1.5)   # [N, P, 64, 64]
    xy = decode_heatmaps(heatmaps)                                       # [N, P, 2] xy_norm
    xy = decode_heatmaps(heatmaps, method="argmax")                      # FAN's own decoder
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from landmarks.errors import ConfigError

DecodeMethod = Literal["soft_argmax", "argmax"]

DEFAULT_BETA = 4.0
_EPS = 1e-6


def render_gaussian_heatmaps(points_norm: Tensor, size: int, sigma: float = 1.5) -> Tensor:
    """Unit-peak Gaussians ``[N, P, size, size]`` centred at ``points_norm * size``.

    ``sigma`` is in heatmap pixels. A point that is not finite (missing annotation) gets an
    all-zero map, so it contributes nothing to a heatmap loss that is zero on both sides.
    """
    if sigma <= 0:
        raise ConfigError(f"heatmap sigma must be positive, got {sigma}")
    points = points_norm.float() * size  # continuous heatmap coordinates
    finite = torch.isfinite(points).all(dim=-1, keepdim=True)  # [N, P, 1]
    points = torch.where(finite, points, torch.zeros_like(points))
    centres = torch.arange(size, dtype=points.dtype, device=points.device) + 0.5
    gx = torch.exp(-((centres - points[..., 0:1]) ** 2) / (2 * sigma**2))  # [N, P, W]
    gy = torch.exp(-((centres - points[..., 1:2]) ** 2) / (2 * sigma**2))  # [N, P, H]
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)
    return maps * finite.unsqueeze(-1).to(maps.dtype)


def soft_argmax(heatmaps: Tensor, beta: float = DEFAULT_BETA, logits: bool = False) -> Tensor:
    """Differentiable sub-pixel decoder: spatial softmax, then the expected pixel centre.

    ``logits=False`` (heatmaps as FAN outputs them, unit-peak Gaussians on a ~0 background):
    the softmax runs over ``beta * log(relu(h))``, i.e. the weights are ``relu(h) ** beta``
    normalized. A Gaussian raised to a power is still a Gaussian about the same centre, so the
    decode is exact (no pull towards the map centre from the background, which a softmax over
    ``beta * h`` has: every background pixel would weigh ``exp(0) = 1``), and it does not
    depend on the peak height. ``beta > 1`` suppresses low background noise (the default 4
    keeps a 0.02-of-peak noise floor from pulling the estimate) but narrows the effective
    Gaussian to ``sigma / sqrt(beta)``: below ~0.7 heatmap px the sampling error exceeds
    0.01 px (sigma 1.5 at beta 4 decodes to ~1e-4 px; sigma 1 to ~0.02 px).

    ``logits=True`` (maps trained as logits, integral-regression style): softmax over
    ``beta * h``.
    """
    n, p, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, p, h * w)
    if not logits:
        flat = torch.log(flat.clamp(min=0) + _EPS)
    weights = torch.softmax(beta * flat, dim=-1).reshape(n, p, h, w)
    xs = (torch.arange(w, dtype=weights.dtype, device=weights.device) + 0.5) / w
    ys = (torch.arange(h, dtype=weights.dtype, device=weights.device) + 0.5) / h
    x = (weights.sum(dim=2) * xs).sum(dim=-1)
    y = (weights.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def argmax_quarter_offset(heatmaps: Tensor) -> Tensor:
    """FAN's decoder: the peak pixel, moved a quarter pixel towards the higher neighbour.

    As in face-alignment's ``get_preds_fromhm`` (which skips the border pixels, where a
    neighbour is missing; here the offset is skipped per axis). Error is at most 0.25 heatmap
    pixels on a clean Gaussian, and it is not differentiable.
    """
    n, p, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, p, h * w)
    idx = flat.argmax(dim=-1)
    px, py = idx % w, torch.div(idx, w, rounding_mode="floor")

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        lin = yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)
        return flat.gather(-1, lin.unsqueeze(-1)).squeeze(-1)

    dx = torch.sign(at(py, px + 1) - at(py, px - 1)) * ((px > 0) & (px < w - 1))
    dy = torch.sign(at(py + 1, px) - at(py - 1, px)) * ((py > 0) & (py < h - 1))
    x = (px.to(heatmaps.dtype) + 0.5 + 0.25 * dx) / w
    y = (py.to(heatmaps.dtype) + 0.5 + 0.25 * dy) / h
    return torch.stack([x, y], dim=-1)


def decode_heatmaps(
    heatmaps: Tensor, method: DecodeMethod = "soft_argmax", beta: float = DEFAULT_BETA
) -> Tensor:
    """``[N, P, H, W]`` heatmaps -> ``[N, P, 2]`` ``xy_norm`` by the named method."""
    if method == "soft_argmax":
        return soft_argmax(heatmaps, beta=beta)
    if method == "argmax":
        return argmax_quarter_offset(heatmaps)
    raise ConfigError(f"unknown heatmap decoder {method!r}; valid: soft_argmax, argmax")
