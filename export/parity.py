"""Does an exported artifact predict what the torch model predicts, on real faces, in its own runtime?

The reference is the torch model behind :class:`~landmarks.runtimes.torch_runtime.TorchPredictor`;
the candidate is loaded with :func:`landmarks.runtimes.load_predictor` from the artifact alone, so
its section-2 metadata (layout, mean/std, sidecar) is exercised exactly as a user would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from export.report import ParityResult
from landmarks.errors import DataError
from landmarks.metadata import ArtifactMetadata
from landmarks.metrics import nme_interocular

# The shared 300-W test faces (never copied into the repository); synthetic faces otherwise.
SHARED_TEST_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "300w" / "helen" / "testset"


@dataclass(frozen=True)
class ParityFaces:
    """Section-1 crops at the model's input size and their ground truth (``xy_norm``)."""

    crops: np.ndarray
    points: np.ndarray
    source: str


def resolve_parity_spec(spec: str) -> str:
    """``auto`` -> the shared Helen test faces when present, else ``synthetic``."""
    if spec != "auto":
        return spec
    return str(SHARED_TEST_FACES) if SHARED_TEST_FACES.is_dir() else "synthetic"


def load_parity_faces(spec: str, metadata: ArtifactMetadata, count: int) -> ParityFaces:
    """The first ``count`` faces of ``spec``, cropped as the model expects."""
    from landmarks.data import open_dataset

    source = resolve_parity_spec(spec)
    dataset = open_dataset(
        source, input_size=metadata.input_size, crop_scale=metadata.crop_scale, synthetic_count=count
    )
    n = min(count, len(dataset))
    if n == 0:
        raise DataError(f"{source}: no faces to check parity on")
    samples = [dataset[i] for i in range(n)]
    points = np.stack([s["points"] for s in samples]).astype(np.float32)
    if points.shape[1] != metadata.num_points:
        raise DataError(
            f"{source}: faces have {points.shape[1]} points but the model predicts {metadata.num_points}"
        )
    crops = np.stack([s["image"] for s in samples]).astype(np.uint8)
    return ParityFaces(crops, points, source)


def torch_reference(model: nn.Module, metadata: ArtifactMetadata, faces: ParityFaces) -> np.ndarray:
    """The torch model's landmarks on ``faces``, ``[N, P, 2]``."""
    from landmarks.runtimes.torch_runtime import TorchPredictor

    return TorchPredictor(model, metadata).predict(faces.crops).points


def check_parity(
    artifact: str | os.PathLike[str],
    reference: np.ndarray,
    faces: ParityFaces,
    bound: float,
    *,
    num_threads: int | None = None,
) -> ParityResult:
    """Run ``artifact`` in its runtime on ``faces`` and compare with ``reference``."""
    from landmarks.runtimes import load_predictor

    predictor = load_predictor(artifact, num_threads=num_threads)
    candidate = predictor.predict(faces.crops).points
    return compare(reference, candidate, faces, bound, runtime=predictor.runtime)


def compare(
    reference: np.ndarray, candidate: np.ndarray, faces: ParityFaces, bound: float, *, runtime: str
) -> ParityResult:
    """Pure comparison: landmark differences and ``nme_io`` (percent) of each against ground truth."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if candidate.shape != reference.shape:
        diff = np.array([np.inf])
    else:
        diff = np.abs(candidate - reference)
        diff = np.where(np.isfinite(diff), diff, np.inf)
    return ParityResult(
        runtime=runtime,
        data=faces.source,
        num_faces=len(faces.crops),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        nme_io_reference=_nme_io(reference, faces.points),
        nme_io_candidate=_nme_io(candidate, faces.points) if candidate.shape == reference.shape else np.inf,
        bound=bound,
    )


def _nme_io(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean(nme_interocular(pred, gt)) * 100.0)
