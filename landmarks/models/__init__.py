"""Landmark models: the FAN heatmap teacher and the PFLD regression students.

Every model implements ``forward_landmarks(x) -> [N, P, 2]`` (normalized to the input crop,
docs/DESIGN.md, "Coordinates") which runtimes and exporters call; ``forward`` may return training extras.
"""

from landmarks.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from landmarks.models.registry import create_model, is_model, list_models, register_model

__all__ = [
    "Checkpoint",
    "create_model",
    "is_model",
    "list_models",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
]
