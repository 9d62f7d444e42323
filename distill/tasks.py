"""The two training tasks: the FAN teacher on heatmaps, the PFLD student with distillation.

Both read the same augmented views: the dataset crops each face once at the larger of the two
input sizes, and :func:`model_input` resizes the batch for each network, so the teacher's soft
targets are landmarks of exactly the view the student sees (normalized coordinates do not
change under a resize of the whole crop).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.config import KDConfig, TeacherConfig
from landmarks.metadata import ArtifactMetadata
from landmarks.models.heatmap import decode_heatmaps, render_gaussian_heatmaps
from landmarks.models.losses import adaptive_wing_loss, heatmap_mse, pfld_loss
from landmarks.models.pose import estimate_pose


def model_input(images: Tensor, size: int, metadata: ArtifactMetadata) -> Tensor:
    """uint8 ``[B, S, S, 3]`` RGB batch -> normalized float NCHW at ``size`` (torch twin of
    :func:`landmarks.runtimes.base.preprocess`, which it matches when ``S == size``)."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    if metadata.color == "BGR":
        x = x.flip(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(metadata.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(metadata.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def pose_targets(batch: dict[str, Any], input_size: int) -> Tensor:
    """Yaw/pitch/roll (degrees) per face: from the data when known (synthetic faces), else
    estimated from the ground-truth landmarks with a 3D template, as PFLD does."""
    pose = batch["pose"].float()
    missing = ~torch.isfinite(pose).all(dim=1)
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
        target = render_gaussian_heatmaps(batch["points"], size, self.cfg.heatmap_sigma)
        loss_fn = adaptive_wing_loss if self.cfg.loss == "awing" else heatmap_mse
        per_stack = [loss_fn(h, target) for h in stacks]
        return {"total": torch.stack(per_stack).sum(), "last_stack": per_stack[-1].detach()}

    def validate(self) -> dict[str, float]:
        return self._validate(self.modules["teacher"])


class StudentTask:
    """PFLD loss on the ground truth, plus output KD and FitNet feature KD from the teacher.

    * output KD: L2 between the student's landmarks and the teacher's sub-pixel landmarks on
      the same augmented view (works on unlabeled images too);
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
    ) -> None:
        self.kd = kd
        self.metadata = metadata
        self.student_size = student_size
        self.teacher = teacher
        self.teacher_size = teacher_size
        self._validate = validate_fn
        modules: dict[str, nn.Module] = {"student": student}
        if teacher is not None and kd.enabled:
            teacher.eval().requires_grad_(False)
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
        out = student(x)
        pose_target = pose_targets(batch, self.student_size)
        gt = pfld_loss(out.landmarks, batch["points"].float(), out.pose, pose_target)
        terms = {"gt": gt}
        total = self.kd.gt_weight * gt
        if self.uses_teacher:
            xt = model_input(batch["image"], self.teacher_size, self.metadata)
            with torch.no_grad():
                t_out = self.teacher.forward_with_features(xt)
                t_features = t_out.features
                t_points = decode_heatmaps(t_out.heatmaps[-1])
            kd_out = (out.landmarks - t_points).square().sum(dim=(1, 2)).mean()  # same scale as pfld_loss
            terms["kd_output"] = kd_out
            total = total + self.kd.output_weight * kd_out
            if "adapter" in self.modules:
                kd_feat = _feature_kd(self.modules["adapter"](out.features), t_features)
                terms["kd_feature"] = kd_feat
                total = total + self.kd.feature_weight * kd_feat
        terms["total"] = total
        return terms

    def validate(self) -> dict[str, float]:
        return self._validate(self.modules["student"])


def _standardize(x: Tensor) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True) + 1e-5
    return (x - mean) / std


def _feature_kd(student_feat: Tensor, teacher_feat: Tensor) -> Tensor:
    teacher_feat = F.adaptive_avg_pool2d(teacher_feat, student_feat.shape[-2:])
    return F.mse_loss(_standardize(student_feat), _standardize(teacher_feat))
