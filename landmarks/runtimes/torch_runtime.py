"""Torch predictor: an in-memory module or a checkpoint, called through ``forward_landmarks``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landmarks.errors import ModelError
from landmarks.metadata import ArtifactMetadata
from landmarks.runtimes.base import Predictor


class TorchPredictor(Predictor):
    """Wraps a module with ``forward_landmarks``; the reference every exported artifact matches.

    The module's train/eval mode is restored after each call, so a training loop can validate
    through this predictor without its dropout or batch-norm state being changed behind its back.
    """

    runtime = "torch"

    def __init__(
        self,
        module: nn.Module,
        metadata: ArtifactMetadata,
        *,
        name: str | None = None,
        num_threads: int | None = None,
    ) -> None:
        if not callable(getattr(module, "forward_landmarks", None)):
            raise ModelError(f"{type(module).__name__} has no forward_landmarks(x) method")
        super().__init__(metadata, name or type(module).__name__)
        self.module = module
        if num_threads:
            torch.set_num_threads(num_threads)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        metadata: ArtifactMetadata | None = None,
        num_threads: int | None = None,
    ) -> TorchPredictor:
        """Build the checkpoint's architecture; its stored metadata unless ``metadata`` overrides it."""
        from landmarks.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        predictor = cls(ckpt.build(), metadata or ckpt.metadata, name=Path(path).stem, num_threads=num_threads)
        predictor.path = Path(path)
        return predictor

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        param = next(self.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode():
                out = self.module.forward_landmarks(torch.from_numpy(inputs).to(device))
        finally:
            self.module.train(was_training)
        return out.float().cpu().numpy()
