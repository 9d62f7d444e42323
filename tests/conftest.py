"""Shared fixtures: the real 300-W data (skipped when absent) and small synthetic face files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmarks.data.formats import write_pts

WriteFace = Callable[..., tuple[Path, Path]]
SHARED_300W = Path(__file__).resolve().parents[2] / "shared/data/300w"
SHARED_300W_FOLDERS = {  # folder -> faces, from shared/data/README.md
    "helen/trainset": 870,
    "helen/testset": 330,
    "lfpw/trainset": 805,
    "lfpw/testset": 224,
    "afw": 337,
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real 300-W crops beside the repository; tests using it skip cleanly when absent."""
    if not SHARED_300W.is_dir():
        pytest.skip(f"real data not found at {SHARED_300W}")
    return SHARED_300W


def grid_points(num_points: int = 68, origin: tuple[float, float] = (120.0, 100.0),
                spacing: float = 20.0, seed: int = 0) -> np.ndarray:
    """Landmarks on a jittered grid: far enough apart that each blob can be located alone."""
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(num_points)))
    idx = np.arange(num_points)
    base = np.stack([idx % cols, idx // cols], axis=1) * spacing + np.asarray(origin)
    return base + rng.uniform(-3, 3, size=base.shape)


def render_blobs(points: np.ndarray, width: int, height: int, sigma: float = 2.5) -> np.ndarray:
    """Black RGB image with a bright Gaussian blob centred on each continuous-coordinate point."""
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    image = np.zeros((height, width), dtype=np.float64)
    for x, y in points:
        gx = np.exp(-((xs - x) ** 2) / (2 * sigma**2))
        gy = np.exp(-((ys - y) ** 2) / (2 * sigma**2))
        image = np.maximum(image, gy[:, None] * gx[None, :])
    grey = np.round(image * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def blob_centroids(image: np.ndarray, points: np.ndarray, radius: float = 4.0) -> np.ndarray:
    """Intensity centroid (continuous coordinates) of the blob nearest each expected point."""
    grey = image[..., 0].astype(np.float64) if image.ndim == 3 else image.astype(np.float64)
    h, w = grey.shape
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    found = []
    for x, y in points:
        weights = grey * (((xs - x) ** 2 + (ys - y) ** 2) <= radius**2)
        total = weights.sum()
        found.append((np.nan, np.nan) if total == 0 else
                     ((weights * xs).sum() / total, (weights * ys).sum() / total))
    return np.array(found)


@pytest.fixture
def write_face() -> WriteFace:
    """Write ``<folder>/<name>.png`` (or .jpg) and its ``.pts``; returns both paths."""

    def write(folder: Path, name: str, image: np.ndarray, points: np.ndarray,
              suffix: str = ".png") -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        image_path = folder / f"{name}{suffix}"
        assert cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return image_path, write_pts(folder / f"{name}.pts", points)

    return write


@pytest.fixture
def pts_folder(tmp_path: Path, write_face: WriteFace) -> Path:
    """A valid .pts dataset of three small blob faces, one in a subfolder."""
    root = tmp_path / "faces"
    for i, sub in enumerate(["", "", "nested"]):
        points = grid_points(seed=i)
        write_face(root / sub, f"face_{i}", render_blobs(points, 320, 300), points)
    return root


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tests run tiny models on a shared 2-core machine: one intra-op thread is faster there
    than two competing ones, and keeps timings of parallel test workers independent."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
