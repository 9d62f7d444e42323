"""Shared fixtures: the real 300-W data (skipped when absent) and small synthetic face files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmarks.data.formats import write_pts

WriteFace = Callable[..., tuple[Path, Path]]
# The development machines keep real data beside the checkout (README, "Working on this repository");
# LANDMARKS_SHARED_DATA points elsewhere, or at nothing to see what a fresh clone skips.
SHARED_DATA = Path(os.environ.get("LANDMARKS_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
SHARED_300W = SHARED_DATA / "300w"
MONA_LISA = Path(__file__).resolve().parent / "data" / "mona_lisa.jpg"  # public domain; tests/data/README.md
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


def faces_canvas(scales: tuple[float, ...], size: tuple[int, int], background: int = 40) -> np.ndarray:
    """RGB ``size`` (height, width) canvas with one copy of ``MONA_LISA`` per scale, left to right."""
    painting = cv2.cvtColor(cv2.imread(str(MONA_LISA)), cv2.COLOR_BGR2RGB)
    height, width = size
    canvas = np.full((height, width, 3), background, np.uint8)
    x = 10
    for scale in scales:
        copy = cv2.resize(painting, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        h, w = copy.shape[:2]
        assert x + w <= width and h <= height, "the copies must fit the canvas"
        y = (height - h) // 2
        canvas[y:y + h, x:x + w] = copy
        x += w + 20
    return canvas


def _save(image: np.ndarray, path: Path) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


@pytest.fixture(scope="session")
def two_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1000x760 photo with two faces found without upsampling: about 73 px (left) and 104 px (right)."""
    return _save(faces_canvas((1.6, 2.4), (760, 1000)), tmp_path_factory.mktemp("photos") / "two_faces.jpg")


@pytest.fixture(scope="session")
def three_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 760x480 photo with three small faces (about 45, 52 and 63 px): found with ``upsample=1``."""
    return _save(faces_canvas((0.9, 1.2, 1.5), (480, 760)), tmp_path_factory.mktemp("photos") / "three_faces.jpg")


FACE_SYNTHETICS_COUNT = 12


@pytest.fixture(scope="session")
def face_synthetics_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FaceSynthetics' native layout: ``NNNNNN.jpg`` (160x160) + ``NNNNNN_ldmks.txt`` (70 lines ``x y``,
    0-based pixel indices: 68 iBUG points, then the two pupils) + ``NNNNNN_seg.png`` masks."""
    root = tmp_path_factory.mktemp("face_synthetics")
    rng = np.random.default_rng(7)
    for i in range(FACE_SYNTHETICS_COUNT):
        name = f"{i:06d}"
        points = np.vstack([grid_points(origin=(40.0, 30.0), spacing=10.0, seed=i), rng.uniform(60, 100, (2, 2))])
        image = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
        assert cv2.imwrite(str(root / f"{name}.jpg"), image)
        assert cv2.imwrite(str(root / f"{name}_seg.png"), np.zeros((160, 160), np.uint8))
        (root / f"{name}_ldmks.txt").write_text("".join(f"{x:.3f} {y:.3f}\n" for x, y in points))
    return root


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
