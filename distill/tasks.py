"""The two training tasks: the FAN teacher on heatmaps, the PFLD student with distillation.

Both networks see the same augmented view of a face: the dataset cuts it at the student's
input size (``image``, with photometric changes) and, with the same geometry, at the teacher's
(``teacher_image``, clean), so the teacher's soft targets are landmarks of exactly the view the
student sees, and each crop is made the way evaluation makes it (one warp from the photo, no
resize afterwards). Unlabeled faces (``labeled`` False) carry no ground-truth loss.

Mixed precision: the engine runs :meth:`loss` under bf16 autocast where the CPU supports it;
coordinates (the student's head, the teacher's heatmap decoding) and every loss stay fp32.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.config import KDConfig, TeacherConfig
from landmarks.metadata import ArtifactMetadata
from landmarks.models.heatmap import decode_heatmaps, render_gaussian_heatmaps
from landmarks.models.losses import adaptive_wing_loss, heatmap_mse, pfld_loss, wing_error
from landmarks.models.pose import estimate_pose


def model_input(images: Tensor, size: int, metadata: ArtifactMetadata) -> Tensor:
    """uint8 ``[B, S, S, 3]`` RGB batch -> normalized float NCHW at ``size``: the torch twin of
    :func:`landmarks.runtimes.base.preprocess`, which it matches
    when ``S == size`` (the training views are cut at each model's size; a resize only happens
    for a dataset without a teacher view)."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    if metadata.color == "BGR":
        x = x.flip(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(metadata.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(metadata.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _fp32(device: torch.device) -> torch.autocast:
    """A region where autocast is off: coordinates and losses in full precision."""
    return torch.autocast(device.type, enabled=False)


def _conv_in_fp32(conv: nn.Conv2d, x: Tensor) -> Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return conv._conv_forward(x.float(), conv.weight, conv.bias)


def strided_depthwise_in_fp32(model: nn.Module) -> int:
    """Run the model's strided depthwise convolutions outside autocast; returns how many.

    On CPU, oneDNN's bf16 backward of a stride-2 depthwise convolution is several times slower
    than its fp32 one (PFLD's 56 -> 28 px depthwise layer alone took a fifth of a student step);
    in fp32 these few layers cost less, and every other layer keeps bf16. Only the instance's
    ``forward`` changes: weights, state dict and export are untouched.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels \
                and module.stride != (1, 1):
            module.forward = types.MethodType(_conv_in_fp32, module)
            count += 1
    return count


def pose_targets(batch: dict[str, Any], input_size: int) -> Tensor:
    """Yaw/pitch/roll (degrees) per face: from the data when known (synthetic faces), else
    estimated from the ground-truth landmarks with a 3D template, as PFLD does."""
    pose = batch["pose"].float()
    labeled = torch.isfinite(batch["points"].reshape(len(pose), -1)).all(dim=1)
    missing = ~torch.isfinite(pose).all(dim=1) & labeled
    if missing.any():
        points = batch["points"][missing].detach().cpu().numpy() * input_size
        estimated = torch.as_tensor(estimate_pose(points, input_size), dtype=pose.dtype, device=pose.device)
        pose = pose.clone()
        pose[missing] = estimated
    return pose


class TeacherTask:
    """FAN on Gaussian heatmaps with intermediate supervision (a loss on every stack)."""

    def __init__(self, teacher: nn.Module, cfg: TeacherConfig, metadata: ArtifactMetadata, validate_fn: Any) -> None:
        self.modules = nn.ModuleDict({"teacher": teacher})
        self.cfg = cfg
        self.metadata = metadata
        self._validate = validate_fn

    def loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        x = model_input(batch["image"], self.cfg.input_size, self.metadata)
        stacks = self.modules["teacher"](x)
        size = stacks[-1].shape[-1]
        with _fp32(x.device):
            target = render_gaussian_heatmaps(batch["points"], size, self.cfg.heatmap_sigma)
            loss_fn = adaptive_wing_loss if self.cfg.loss == "awing" else heatmap_mse
            per_stack = [loss_fn(h.float(), target) for h in stacks]
        return {"total": torch.stack(per_stack).sum(), "last_stack": per_stack[-1].detach()}

    def validate(self, modules: nn.ModuleDict) -> dict[str, float]:
        return self._validate(modules["teacher"])


class StudentTask:
    """PFLD loss on the ground truth, plus output KD and FitNet feature KD from the teacher.

    * ground truth: PFLD's pose-weighted loss (L2, or Wing with ``loss="wing"``), on labeled
      faces only;
    * output KD: the same point loss between the student's landmarks and the teacher's
      sub-pixel landmarks on the same view, on every face (the only signal of unlabeled ones);
    * feature KD: a 1x1 adapter maps the student's feature map onto the teacher's (pooled to
      the student's grid); both are standardized per channel so the scales match.
    """

    def __init__(
        self,
        student: nn.Module,
        student_size: int,
        metadata: ArtifactMetadata,
        kd: KDConfig,
        validate_fn: Any,
        teacher: nn.Module | None = None,
        teacher_size: int | None = None,
        loss: str = "pfld",
    ) -> None:
        self.kd = kd
        self.point_error = (lambda d: wing_error(d, student_size)) if loss == "wing" else None
        self.metadata = metadata
        self.student_size = student_size
        self.teacher = teacher
        self.teacher_size = teacher_size
        self._validate = validate_fn
        strided_depthwise_in_fp32(student)
        modules: dict[str, nn.Module] = {"student": student}
        if teacher is not None and kd.enabled:
            # channels-last: the teacher runs on every view, and bf16 convolutions want NHWC
            teacher.eval().requires_grad_(False).to(memory_format=torch.channels_last)
            if kd.feature_weight > 0:
                modules["adapter"] = self._build_adapter(student, teacher)
        self.modules = nn.ModuleDict(modules)

    def _build_adapter(self, student: nn.Module, teacher: nn.Module) -> nn.Module:
        probe_s = torch.zeros(1, 3, self.student_size, self.student_size)
        probe_t = torch.zeros(1, 3, self.teacher_size, self.teacher_size)
        was_training = student.training
        student.eval()
        with torch.no_grad():
            c_student = student(probe_s).features.shape[1]
            c_teacher = teacher.forward_with_features(probe_t).features.shape[1]
        student.train(was_training)
        return nn.Conv2d(c_student, c_teacher, kernel_size=1)

    @property
    def uses_teacher(self) -> bool:
        return self.teacher is not None and self.kd.enabled

    def loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        student = self.modules["student"]
        x = model_input(batch["image"], self.student_size, self.metadata)
        mid, features, multi_scale = student.forward_features(x)
        pose = student.aux(mid)
        points = batch["points"].float()
        labeled = _labeled_mask(batch, points)
        with _fp32(x.device):
            landmarks = student.forward_head(multi_scale.float())
            terms: dict[str, Tensor] = {}
            total = landmarks.new_zeros(())
            if labeled.any():
                pose_target = pose_targets({"pose": batch["pose"][labeled], "points": points[labeled]},
                                           self.student_size)
                gt = pfld_loss(landmarks[labeled], points[labeled], pose[labeled].float(), pose_target,
                               point_error=self.point_error)
                terms["gt"] = gt
                total = total + self.kd.gt_weight * gt
        if self.uses_teacher:
            teacher_images = batch.get("teacher_image", batch["image"])
            xt = model_input(teacher_images, self.teacher_size, self.metadata)
            with torch.no_grad():
                t_out = self.teacher.forward_with_features(xt)
                with _fp32(x.device):
                    t_points = decode_heatmaps(t_out.heatmaps[-1].float())
            with _fp32(x.device):
                diff = (landmarks - t_points).flatten(1)
                errors = self.point_error(diff) if self.point_error is not None else diff.square()
                kd_out = errors.sum(dim=1).mean()  # same scale as the ground-truth loss
            terms["kd_output"] = kd_out
            total = total + self.kd.output_weight * kd_out
            if "adapter" in self.modules:
                adapted = self.modules["adapter"](features)
                with _fp32(x.device):
                    kd_feat = _feature_kd(adapted.float(), t_out.features.float())
                terms["kd_feature"] = kd_feat
                total = total + self.kd.feature_weight * kd_feat
        terms["total"] = total
        return terms

    def validate(self, modules: nn.ModuleDict) -> dict[str, float]:
        return self._validate(modules["student"])


def _labeled_mask(batch: dict[str, Any], points: Tensor) -> Tensor:
    """Which faces of the batch carry ground truth (``labeled``, and finite points)."""
    finite = torch.isfinite(points.flatten(1)).any(dim=1)
    if "labeled" not in batch:
        return finite
    return batch["labeled"].to(device=points.device, dtype=torch.bool) & finite


def _standardize(x: Tensor) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True) + 1e-5
    return (x - mean) / std


def _feature_kd(student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
    teacher_feat = F.adaptive_avg_pool2d(teacher_feat, student_feat.shape[-2:])
    return F.mse_loss(_standardize(student_feat), _standardize(teacher_feat))
