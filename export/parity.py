"""Does an exported artifact predict what the torch model predicts, on real faces, in its own runtime?

The reference is the torch model behind :class:`~landmarks.runtimes.torch_runtime.TorchPredictor`;
the candidate is loaded with :func:`landmarks.runtimes.load_predictor` from the artifact alone, so
its metadata (layout, mean/std, sidecar) is exercised exactly as a user would. Both run through
the one :class:`~landmarks.evaluate.Evaluator`, which also gives the ``nme_io`` of each.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from export.report import ParityResult
from landmarks.data.specs import data_root
from landmarks.errors import DataError
from landmarks.evaluate import EvalReport, Evaluator
from landmarks.metadata import ArtifactMetadata

# Real faces for ``auto``: the 300-W Helen test crops under the data root ($LANDMARKS_DATA/300w/helen/testset)
# when they are there; synthetic faces otherwise.
HELEN_TEST = ("300w", "helen", "testset")


@dataclass(frozen=True)
class ParityFaces:
    """Crops at the model's input size and their ground truth (``xy_norm``): a small eval set.

    It is a dataset to :class:`~landmarks.evaluate.Evaluator` (``len``, items with ``image``,
    ``points`` and ``key``, ``content_hash``), so parity NMEs come from the one evaluation path.
    """

    crops: np.ndarray
    points: np.ndarray
    source: str

    @classmethod
    def from_dataset(cls, dataset: Any, count: int, source: str | None = None) -> ParityFaces:
        """The first ``count`` faces of an opened dataset (the one parity face loader)."""
        n = min(count, len(dataset))
        name = source or f"{getattr(dataset, 'name', 'eval')} (first {n})"
        if n == 0:
            raise DataError(f"{name}: no faces to check parity on")
        samples = [dataset[i] for i in range(n)]
        points = np.stack([s["points"] for s in samples]).astype(np.float32)
        crops = np.stack([s["image"] for s in samples]).astype(np.uint8)
        return cls(crops, points, name)

    @property
    def name(self) -> str:
        return self.source

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.crops[index], "points": self.points[index], "key": str(index)}

    def content_hash(self) -> str:
        return hashlib.sha256(self.crops.tobytes() + self.points.tobytes()).hexdigest()


def resolve_parity_spec(spec: str) -> str:
    """``auto`` -> the 300-W Helen test faces under the data root when present, else ``synthetic``."""
    if spec != "auto":
        return spec
    helen = data_root().joinpath(*HELEN_TEST)
    return str(helen) if helen.is_dir() else "synthetic"


def load_parity_faces(spec: str, metadata: ArtifactMetadata, count: int) -> ParityFaces:
    """The first ``count`` faces of ``spec``, cropped as the model expects."""
    from landmarks.data import open_dataset

    source = resolve_parity_spec(spec)
    dataset = open_dataset(
        source, input_size=metadata.input_size, crop_scale=metadata.crop_scale, synthetic_count=count
    )
    faces = ParityFaces.from_dataset(dataset, count, source)
    if faces.num_points != metadata.num_points:
        raise DataError(
            f"{source}: faces have {faces.num_points} points but the model predicts {metadata.num_points}"
        )
    return faces


def torch_reference(model: nn.Module, metadata: ArtifactMetadata, evaluator: Evaluator) -> EvalReport:
    """The torch model's evaluation on the parity faces (its landmarks and ``nme_io``)."""
    from landmarks.runtimes.torch_runtime import TorchPredictor

    return evaluator.report(TorchPredictor(model, metadata))


def check_parity(
    artifact: str | os.PathLike[str],
    reference: EvalReport,
    evaluator: Evaluator,
    bound: float,
    *,
    num_threads: int | None = None,
) -> ParityResult:
    """Run ``artifact`` in its runtime on the evaluator's faces and compare with ``reference``."""
    from landmarks.runtimes import load_predictor

    candidate = evaluator.report(load_predictor(artifact, num_threads=num_threads))
    return compare(reference, candidate, bound)


def compare(reference: EvalReport, candidate: EvalReport, bound: float) -> ParityResult:
    """Pure comparison of two evaluations of the same faces: landmark differences and ``nme_io``."""
    ref = np.asarray(reference.pred, np.float64)
    cand = np.asarray(candidate.pred, np.float64)
    if cand.shape != ref.shape:
        diff = np.array([np.inf])
    else:
        diff = np.abs(cand - ref)
        diff = np.where(np.isfinite(diff), diff, np.inf)
    return ParityResult(
        runtime=candidate.runtime,
        data=candidate.dataset,
        num_faces=len(cand),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        nme_io_reference=float(reference.metrics.nme_io),
        nme_io_candidate=float(candidate.metrics.nme_io) if cand.shape == ref.shape else np.inf,
        bound=bound,
    )
