"""The recipe's datasets, opened for one model: the eval set, the calibration faces, parity faces.

Seeds of synthetic sets (``synthetic:N``, :mod:`landmarks.data.specs`): calibration ``seed``
(the first training faces), eval ``seed + EVAL_SEED_OFFSET``, so calibration and eval never share
a face, as the gate requires. Training and validation sets are opened by ``distill`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landmarks.data.specs import EVAL_SEED_OFFSET
from landmarks.metadata import ArtifactMetadata
from recipes.schema import SYNTHETIC_COUNT, DataSpec, Recipe, spec_string


def open_eval(recipe: Recipe, metadata: ArtifactMetadata) -> Any:
    """The eval set, cropped for ``metadata``'s input size and crop scale, never augmented."""
    return _open(recipe.data.eval, metadata, recipe.seed + EVAL_SEED_OFFSET)


def open_calib(recipe: Recipe, metadata: ArtifactMetadata) -> Any:
    return _open(recipe.data.calib_spec, metadata, recipe.seed)


def _open(spec: DataSpec, metadata: ArtifactMetadata, seed: int) -> Any:
    from landmarks.data import open_dataset

    dataset = open_dataset(spec_string(spec), input_size=metadata.input_size, crop_scale=metadata.crop_scale,
                           seed=seed, synthetic_count=SYNTHETIC_COUNT)
    dataset.name = spec_string(spec)
    return dataset


def parity_faces(recipe: Recipe, checkpoint: Path, count: int) -> Any:
    """The first ``count`` eval faces, cropped as the checkpoint expects (export's parity set)."""
    from export.parity import ParityFaces
    from landmarks.models.checkpoint import load_checkpoint

    return ParityFaces.from_dataset(open_eval(recipe, load_checkpoint(checkpoint).metadata), count)
