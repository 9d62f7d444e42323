"""Architectures, heatmap codecs, losses and pose: shapes, checkpoint compatibility, export."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from landmarks.errors import ConfigError
from landmarks.metadata import ArtifactMetadata
from landmarks.models import Checkpoint, create_model, list_models, load_checkpoint, save_checkpoint
from landmarks.models.heatmap import (
    argmax_quarter_offset,
    decode_heatmaps,
    render_gaussian_heatmaps,
    soft_argmax,
)
from landmarks.models.losses import adaptive_wing_loss, heatmap_mse, pfld_loss
from landmarks.models.pfld import PFLDOutput, default_channels
from landmarks.models.pose import (
    camera_matrix,
    estimate_pose,
    face_model_3d,
    rotation_matrix,
    tracked_indices,
)
from landmarks.synthetic import FaceParams, project_face

FAN2D4_KEYS = Path(__file__).parent / "data" / "fan2d4_keys.json"


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    # One intra-op thread: on a small shared machine, torch's thread pool contending for the
    # cores makes these tiny models ~10x slower, not faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _n_params(model: torch.nn.Module, skip_prefix: str | None = None) -> int:
    """Parameters, leaving out those under ``skip_prefix`` (e.g. the training-only pose branch)."""
    named = model.named_parameters()
    return sum(p.numel() for k, p in named if not skip_prefix or not k.startswith(skip_prefix))


def test_registry_lists_architectures() -> None:
    assert {"fan1", "fan2", "fan4", "pfld025", "pfld100"} <= set(list_models())
    assert list_models("pfld*") == ["pfld025", "pfld100"]


# --- FAN ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "stacks"), [("fan1", 1), ("fan2", 2)])
def test_fan_output_shapes(arch: str, stacks: int) -> None:
    model = create_model(arch, width=64, input_size=128)
    x = torch.randn(2, 3, 128, 128)
    heatmaps, features = model.forward_with_features(x)
    assert len(heatmaps) == stacks
    assert all(h.shape == (2, 68, 32, 32) for h in heatmaps)
    assert features.shape == (2, 64, 32, 32)
    assert torch.equal(model(x)[-1], heatmaps[-1])
    model.eval()
    with torch.no_grad():
        points = model.forward_landmarks(x)
    assert points.shape == (2, 68, 2)
    assert ((points >= 0) & (points <= 1)).all()
    rebuilt = create_model(arch, **model.arch_config)
    rebuilt.load_state_dict(model.state_dict())


def test_fan4_is_state_dict_compatible_with_2dfan4() -> None:
    """Keys, order and shapes of face-alignment 1.5.0's FAN(4) (tests/data, see its "source")."""
    reference = json.loads(FAN2D4_KEYS.read_text())
    model = create_model("fan4")
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == reference["keys"]
    assert _n_params(model) == reference["num_parameters"]
    state = {k: torch.zeros(shape) for k, shape in reference["keys"]}
    model.load_state_dict(state)  # strict


def test_fan_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="multiple of 8"):
        create_model("fan1", width=60)
    with pytest.raises(ConfigError, match="input_size"):
        create_model("fan1", input_size=100)
    with pytest.raises(ConfigError, match="num_stacks"):
        create_model("fan2", num_stacks=3)


# --- PFLD --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["pfld025", "pfld100"])
def test_pfld_output_shapes(arch: str) -> None:
    model = create_model(arch)
    x = torch.randn(2, 3, 112, 112)
    out = model(x)
    assert isinstance(out, PFLDOutput)
    assert out.landmarks.shape == (2, 68, 2)
    assert out.pose.shape == (2, 3)
    assert out.features.shape == (2, model.channels["stage5"], 14, 14)
    model.eval()
    with torch.no_grad():
        assert model.forward_landmarks(x).shape == (2, 68, 2)
    assert create_model(arch, num_points=98).forward_landmarks(x).shape == (2, 98, 2)


# Paper (Guo et al. 2019, table 5): 0.25X 2.1 MB, 1X 12.5 MB. The layers of its table 1 (and
# the authors' code) give 1.2 MB and 4.9 MB fp32 for the landmark path; the paper's figures
# cannot be reproduced from the published layer list, so the bands only catch gross drift.
@pytest.mark.parametrize(("arch", "paper_mb", "low_mb", "high_mb"),
                         [("pfld025", 2.1, 0.8, 2.5), ("pfld100", 12.5, 3.5, 13.0)])
def test_pfld_size_near_paper(arch: str, paper_mb: float, low_mb: float, high_mb: float) -> None:
    model = create_model(arch)
    landmark_path = _n_params(model, skip_prefix="aux.")
    size_mb = landmark_path * 4 / 1e6
    print(f"{arch}: {landmark_path} params, {size_mb:.2f} MB fp32 (paper {paper_mb} MB), "
          f"{_n_params(model)} with the pose branch")
    assert low_mb < size_mb < high_mb


def test_pfld_channels_override_runs_and_round_trips() -> None:
    small = {name: max(1, c // 2) for name, c in default_channels(0.25).items()}
    model = create_model("pfld025", channels=small)
    assert model.channels == small
    out = model(torch.randn(2, 3, 112, 112))
    assert out.landmarks.shape == (2, 68, 2)
    rebuilt = create_model("pfld025", **model.arch_config)
    rebuilt.load_state_dict(model.state_dict())  # strict
    with pytest.raises(RuntimeError):
        create_model("pfld025").load_state_dict(model.state_dict())
    with pytest.raises(ConfigError, match="unknown PFLD channel"):
        create_model("pfld025", channels={"stage9": 4})
    with pytest.raises(ConfigError, match="positive integers"):
        create_model("pfld025", channels={"conv1": 0})


def test_pfld_pruned_by_torch_pruning_rebuilds_from_checkpoint(tmp_path: Path) -> None:
    """The mechanism pruning relies on: widths read off the pruned layers rebuild the model."""
    import torch_pruning as tp

    model = create_model("pfld025").eval()
    x = torch.randn(2, 3, 112, 112)
    pruner = tp.pruner.MagnitudePruner(
        model, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
        ignored_layers=[model.fc, model.aux.fc2], round_to=4,
    )
    pruner.step()
    assert model.channels["stage5.0.hidden"] < default_channels(0.25)["stage5.0.hidden"]
    ckpt = Checkpoint("pfld025", model.arch_config, model.state_dict(), ArtifactMetadata())
    save_checkpoint(tmp_path / "pruned.pt", ckpt)
    rebuilt = load_checkpoint(tmp_path / "pruned.pt").build()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.forward_landmarks(x), model.forward_landmarks(x))


class _Landmarks(torch.nn.Module):
    """What an exporter traces: ``forward_landmarks`` only."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.forward_landmarks(x)


def test_pfld_exports_to_onnx_with_parity(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = create_model("pfld025")
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    # Batch statistics as running statistics, and a larger head, so that the outputs move
    # with the input (a fresh model in eval mode answers ~0.5 everywhere).
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    torch.nn.init.normal_(model.fc.weight, std=0.1)
    with torch.no_grad():
        model(torch.rand(8, 3, 112, 112) * 2 - 1)
    # eval() on the wrapper: the exporter restores the wrapper's mode afterwards, and a fresh
    # wrapper is in training mode, which would flip the model's BatchNorms back to training.
    wrapper = _Landmarks(model).eval()
    with torch.no_grad():
        torch_out = wrapper(x).numpy()
    assert torch_out.std() > 0.01
    path = tmp_path / "pfld025.onnx"
    torch.onnx.export(wrapper, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["landmarks"],
                      dynamic_axes={"input": {0: "batch"}, "landmarks": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"input": x.numpy()})
    assert onnx_out.shape == (2, 68, 2)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4, rtol=0)


# --- few-step training -------------------------------------------------------------------


def _train(
    model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module], torch.Tensor], steps: int = 20
) -> tuple[float, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_pfld025_training_lowers_loss() -> None:
    model = create_model("pfld025")
    x = torch.randn(2, 3, 112, 112)
    target = torch.rand(2, 68, 2) * 0.6 + 0.2
    pose = torch.tensor([[10.0, -5.0, 0.0], [-30.0, 10.0, 5.0]])

    def loss_fn(m: torch.nn.Module) -> torch.Tensor:
        out = m(x)
        return pfld_loss(out.landmarks, target, out.pose, pose)

    first, last = _train(model, loss_fn)
    assert last < 0.5 * first


def test_tiny_fan1_training_lowers_loss() -> None:
    model = create_model("fan1", width=32, input_size=64)
    x = torch.randn(2, 3, 64, 64)
    target = render_gaussian_heatmaps(torch.rand(2, 68, 2) * 0.6 + 0.2, size=16, sigma=1.0)

    first, last = _train(model, lambda m: adaptive_wing_loss(m(x), target))
    assert last < 0.8 * first


# --- heatmaps ----------------------------------------------------------------------------


def test_soft_argmax_is_exact_on_rendered_gaussians() -> None:
    points = torch.rand(3, 68, 2) * 0.8 + 0.1  # sub-pixel positions, clear of the border
    # Exact while sigma / sqrt(beta) >= ~0.7 heatmap px (sampling); sigma 1 at beta 4 errs ~0.02.
    for size, sigma in [(64, 1.5), (64, 2.0), (32, 1.5)]:
        heatmaps = render_gaussian_heatmaps(points, size, sigma) * 0.7  # any peak height
        error_px = (soft_argmax(heatmaps) - points).abs().max().item() * size
        assert error_px < 0.01, (size, sigma, error_px)
    centres = points * 64
    grid = torch.arange(64) + 0.5
    dy2, dx2 = (grid - centres[..., 1:2]) ** 2, (grid - centres[..., 0:1]) ** 2
    logits = -(dy2.unsqueeze(-1) + dx2.unsqueeze(-2)) / 8  # log of a Gaussian, sigma 2
    error_px = (soft_argmax(logits, beta=1.0, logits=True) - points).abs().max().item() * 64
    assert error_px < 0.01


def test_argmax_quarter_offset_within_a_quarter_pixel() -> None:
    points = torch.rand(3, 68, 2) * 0.9 + 0.05
    heatmaps = render_gaussian_heatmaps(points, 64, 1.5)
    decoded = decode_heatmaps(heatmaps, method="argmax")
    assert torch.equal(decoded, argmax_quarter_offset(heatmaps))
    assert (decoded - points).abs().max().item() * 64 <= 0.25 + 1e-4
    centre = torch.tensor([[[10.5, 20.5]]]) / 64  # exactly on a pixel centre: no offset
    assert torch.allclose(argmax_quarter_offset(render_gaussian_heatmaps(centre, 64, 1.5)), centre)
    with pytest.raises(ConfigError, match="unknown heatmap decoder"):
        decode_heatmaps(heatmaps, method="centroid")  # type: ignore[arg-type]


def test_render_gaussian_heatmaps_convention_and_missing_points() -> None:
    points = torch.tensor([[[2.5 / 8, 5.5 / 8], [float("nan"), 0.5]]])
    maps = render_gaussian_heatmaps(points, 8, sigma=1.0)
    assert maps.shape == (1, 2, 8, 8)
    assert maps[0, 0, 5, 2] == 1.0  # pixel (x=2, y=5) has its centre at (2.5, 5.5)
    assert maps[0, 1].abs().sum() == 0
    with pytest.raises(ConfigError):
        render_gaussian_heatmaps(points, 8, sigma=0.0)


# --- losses ------------------------------------------------------------------------------


def test_pfld_loss_weights() -> None:
    pred, target = torch.zeros(2, 68, 2), torch.full((2, 68, 2), 0.1)
    pose = torch.tensor([[10.0, 20.0, -5.0], [0.0, 0.0, 0.0]])
    plain = ((pred - target) ** 2).sum(dim=(1, 2)).mean()
    torch.testing.assert_close(pfld_loss(pred, target, pose, pose), plain)
    off = pose + torch.tensor([60.0, 0.0, 0.0])
    torch.testing.assert_close(pfld_loss(pred, target, off, pose), plain * 1.5)  # 1 - cos 60 = 0.5
    unknown = torch.full_like(pose, float("nan"))
    torch.testing.assert_close(pfld_loss(pred, target, off, unknown), plain)
    missing = target.clone()
    missing[1] = float("nan")
    torch.testing.assert_close(pfld_loss(pred, missing, pose, pose), plain / 2)
    flags = torch.tensor([[1, 0], [0, 0]])  # class 0 in half the batch -> weight 2; no flag -> 1
    torch.testing.assert_close(pfld_loss(pred, target, pose, pose, attributes=flags), plain * 1.5)


def test_heatmap_losses() -> None:
    target = render_gaussian_heatmaps(torch.rand(2, 5, 2), 16, 1.5)
    assert adaptive_wing_loss(target, target).item() == 0.0
    assert heatmap_mse(target, target).item() == 0.0
    pred = target + 0.1
    assert adaptive_wing_loss(pred, target).item() > 0
    torch.testing.assert_close(heatmap_mse([pred, pred], target), 2 * heatmap_mse(pred, target))
    torch.testing.assert_close(adaptive_wing_loss([pred, target], target), adaptive_wing_loss(pred, target))
    far = target + 2.0  # beyond theta: the linear branch, continuous with the log branch
    assert torch.isfinite(adaptive_wing_loss(far, target))


# --- pose --------------------------------------------------------------------------------


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (30.0, -15.0, 10.0), (-45.0, 20.0, -25.0)])
def test_estimate_pose_recovers_a_projected_rotation(angles: tuple[float, float, float]) -> None:
    size = 112
    cam = camera_matrix(size)
    world = face_model_3d() @ rotation_matrix(*angles).T + np.array([0.0, 0.0, -300.0])
    world[:, 2] *= -1  # template axes (z toward the camera) -> OpenCV's (z away from it)
    projected = world @ cam.T
    points = np.full((68, 2), np.nan)  # untracked points are ignored
    points[list(tracked_indices(68))] = projected[:, :2] / projected[:, 2:]
    np.testing.assert_allclose(estimate_pose(points, size), angles, atol=1.0)
    batch = np.stack([points, np.full((68, 2), np.nan)])
    result = estimate_pose(batch, size)
    assert result.shape == (2, 3)
    assert np.isnan(result[1]).all()
    with pytest.raises(ConfigError):
        estimate_pose(np.zeros((5, 2)), size)


def test_estimate_pose_agrees_with_synthetic_face_labels() -> None:
    """Same sign convention as the rendered faces' labels; pitch has a known few-degree bias."""
    for angles in [(30.0, 0.0, 0.0), (-25.0, -10.0, 10.0), (45.0, 10.0, -15.0), (0.0, 15.0, 0.0)]:
        face = project_face(FaceParams(*angles), 112)
        error = np.abs(estimate_pose(face.points, 112) - angles)
        assert (error < (3.0, 8.0, 2.0)).all(), (angles, error)
