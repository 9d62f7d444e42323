"""The torch checkpoint format: architecture name and config, weights, artifact metadata.

Saved as plain dicts, lists, strings, numbers and tensors, so that loading works with
``torch.load(weights_only=True)`` (no arbitrary pickles) and needs no pruning library: a
pruned model stores its per-layer channel counts in ``arch_config``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landmarks.atomic import write_bytes
from landmarks.errors import ModelError
from landmarks.metadata import ArtifactMetadata

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    arch: str
    arch_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    metadata: ArtifactMetadata
    extra: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """Instantiate the architecture and load the weights (strict)."""
        from landmarks.models.registry import create_model

        model = create_model(self.arch, **self.arch_config)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ModelError(f"checkpoint weights do not fit {self.arch}: {first}") from None
        model.eval()
        return model


def save_checkpoint(path: str | os.PathLike[str], ckpt: Checkpoint) -> str:
    """Write atomically; returns the sha256 of the bytes written."""
    payload = {
        "format_version": FORMAT_VERSION,
        "arch": ckpt.arch,
        "arch_config": ckpt.arch_config,
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.state_dict.items()},
        "metadata": ckpt.metadata.to_strings(),
        "extra": ckpt.extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load safely (``weights_only=True``); any problem is one :class:`ModelError` line."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load reads only the user's file here, and fails on a
        # corrupt one in many ways (UnpicklingError, RuntimeError, EOFError, IndexError, ...); the cause is chained
        raise ModelError(f"{path}: not a readable checkpoint ({_load_failure(err)})") from err
    if not isinstance(payload, dict) or "arch" not in payload or "state_dict" not in payload:
        raise ModelError(f"{path}: not a landmarks checkpoint (no 'arch'/'state_dict' entries)")
    version = payload.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format {version} is newer than this tool ({FORMAT_VERSION})")
    return Checkpoint(
        arch=str(payload["arch"]),
        arch_config=dict(payload.get("arch_config", {})),
        state_dict=payload["state_dict"],
        metadata=ArtifactMetadata.from_strings(payload.get("metadata", {}), where=str(path)),
        extra=dict(payload.get("extra", {})),
    )


def _load_failure(err: Exception) -> str:
    """A short reason; never torch's hint to retry with ``weights_only=False`` (unsafe)."""
    text = str(err).strip()
    if "Weights only load failed" in text:
        return "it holds objects other than tensors and plain containers, refused by the safe loader"
    first = text.splitlines()[0][:200] if text else type(err).__name__
    return first


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
