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
from recipes.schema import SYNTHETIC_COUNT, Recipe


def open_eval(recipe: Recipe, metadata: ArtifactMetadata) -> Any:
    """The eval set, cropped for ``metadata``'s input size and crop scale, never augmented."""
    return _open(recipe, "eval", metadata, recipe.seed + EVAL_SEED_OFFSET)


def open_calib(recipe: Recipe, metadata: ArtifactMetadata) -> Any:
    return _open(recipe, "calib", metadata, recipe.seed)


def _open(recipe: Recipe, role: str, metadata: ArtifactMetadata, seed: int) -> Any:
    """The datasets of ``recipe.data.<role>``, named as the recipe names them (not by path)."""
    from landmarks.data import open_dataset

    dataset = open_dataset(recipe.data.spec(role), input_size=metadata.input_size, crop_scale=metadata.crop_scale,
                           seed=seed, synthetic_count=SYNTHETIC_COUNT)
    dataset.name = recipe.data.name(role)
    return dataset


def parity_faces(recipe: Recipe, checkpoint: Path, count: int) -> Any:
    """The first ``count`` eval faces, cropped as the checkpoint expects (export's parity set)."""
    from export.parity import ParityFaces
    from landmarks.models.checkpoint import load_checkpoint

    return ParityFaces.from_dataset(open_eval(recipe, load_checkpoint(checkpoint).metadata), count)
