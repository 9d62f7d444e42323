"""Training losses: PFLD's pose- and attribute-weighted L2, and two heatmap losses for FAN.

Landmark losses take ``[N, P, 2]`` (or ``[N, 2P]``) ``xy_norm``; points that are not finite in
the target (missing annotations) are left out. Heatmap losses take one ``[N, P, H, W]`` map or
the list of every stack's maps (FAN's intermediate supervision: the per-stack losses are
summed, as in the original training) against one target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def pfld_loss(
    pred: Tensor,
    target: Tensor,
    pose_pred: Tensor,
    pose_target: Tensor,
    attributes: Tensor | None = None,
    attribute_weights: Tensor | None = None,
    angle_floor: float = 1.0,
    point_error: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """PFLD loss (Guo et al. 2019, eq. 2): per-face weights times the squared landmark error.

    weight = ``w_attr * (angle_floor + sum_k (1 - cos(pose_pred_k - pose_target_k)))`` over
    yaw/pitch/roll (degrees in, compared in radians); the squared error is summed over the
    points and averaged over the batch. The gradient reaches the pose branch only through
    this weight, as in the paper.

    ``angle_floor`` departs from the paper (which uses 0) on purpose: with 0 the loss can be
    driven to zero by the pose branch alone and faces whose pose is unknown (NaN, counted as
    no deviation) would not train at all; 1 keeps a plain L2 term under the pose weighting.

    ``attributes``: ``[N, C]`` 0/1 flags (e.g. WFLW's pose, expression, illumination, make-up,
    occlusion, blur). A flag of class ``c`` adds ``attribute_weights[c]``, by default the
    inverse of the class's frequency in the batch as in the authors' code; a face with no flag
    (or ``attributes=None``) weighs 1.

    ``point_error`` maps the coordinate differences to per-coordinate errors (default: the
    square, PFLD's L2; :func:`wing_error` for Wing loss).
    """
    n = pred.shape[0]
    pred, target = pred.reshape(n, -1), target.reshape(n, -1)
    valid = torch.isfinite(target)
    diff = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    sq_error = (point_error(diff) if point_error is not None else diff**2).sum(dim=1)

    delta = torch.deg2rad(pose_pred - torch.nan_to_num(pose_target))
    delta = torch.where(torch.isfinite(pose_target), delta, torch.zeros_like(delta))
    weight = angle_floor + (1 - torch.cos(delta)).sum(dim=1)

    if attributes is not None:
        flags = attributes.to(pred.dtype)
        if attribute_weights is None:
            frequency = flags.mean(dim=0)
            attribute_weights = torch.where(frequency > 0, 1 / frequency.clamp(min=1e-12), 0.0)
        attr_weight = (flags * attribute_weights.to(pred.dtype)).sum(dim=1)
        weight = weight * torch.where(flags.sum(dim=1) > 0, attr_weight, torch.ones_like(attr_weight))
    return (weight * sq_error).mean()


def wing_error(diff: Tensor, input_size: int, width: float = 10.0, curvature: float = 2.0) -> Tensor:
    """Wing loss (Feng et al., CVPR 2018) of ``xy_norm`` differences, per coordinate.

    Measured in pixels of the ``input_size`` crop: logarithmic below ``width`` px (a strong
    gradient on the small and medium errors L2 neglects), linear above; divided by
    ``input_size`` so it stays in crop units like the rest of the losses.
    """
    x = (diff * input_size).abs()
    c = width - width * math.log1p(width / curvature)
    error = torch.where(x < width, width * torch.log1p(x / curvature), x - c)
    return error / input_size


def adaptive_wing_loss(
    pred: Tensor | Sequence[Tensor],
    target: Tensor,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
    foreground_weight: float = 10.0,
) -> Tensor:
    """Adaptive Wing loss (Wang et al., ICCV 2019) with its weighted loss map.

    Near the target it behaves like a log (strong gradient on foreground pixels, where
    ``target`` is close to 1), far from it like L1; the exponent ``alpha - target`` fades the
    log's sharpness out on the background. Pixels of the 3x3-dilated foreground
    (``target > 0.2``) weigh ``foreground_weight + 1``; 0 turns the map off.
    """
    if not isinstance(pred, Tensor):
        return torch.stack(
            [adaptive_wing_loss(p, target, omega, theta, epsilon, alpha, foreground_weight) for p in pred]
        ).sum()
    delta = (pred - target).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega * (1 / (1 + ratio**power)) * power * ratio ** (power - 1) / epsilon
    c = theta * a - omega * torch.log1p(ratio**power)
    loss = torch.where(delta < theta, omega * torch.log1p((delta / epsilon) ** power), a * delta - c)
    if foreground_weight:
        mask = F.max_pool2d((target > 0.2).to(loss.dtype), 3, stride=1, padding=1)
        loss = loss * (foreground_weight * mask + 1)
    return loss.mean()


def heatmap_mse(pred: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
    """Mean squared error per pixel, summed over stacks for a list of heatmaps."""
    if not isinstance(pred, Tensor):
        return torch.stack([F.mse_loss(p, target) for p in pred]).sum()
    return F.mse_loss(pred, target)

