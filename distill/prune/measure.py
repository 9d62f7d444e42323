"""What a model's inference path carries and computes: parameters, MACs, FP32 bytes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.prune.config import Footprint
from landmarks.errors import UnsupportedBackendError


def torch_pruning() -> Any:
    """The Torch-Pruning module, imported only when pruning or counting MACs actually runs."""
    try:
        import torch_pruning
    except ImportError:
        raise UnsupportedBackendError("pruning needs Torch-Pruning: pip install torch-pruning") from None
    return torch_pruning


class LandmarkPath(nn.Module):
    """``forward = forward_landmarks``: what export traces, so MACs are those of the artifact."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_landmarks(x)


def example_input(model: nn.Module, input_size: int) -> torch.Tensor:
    param = next(model.parameters())
    return torch.zeros(1, 3, input_size, input_size, device=param.device)


def _inference_modules(model: nn.Module, input_size: int) -> list[nn.Module]:
    """Modules that ``forward_landmarks`` runs, found with forward hooks (eval mode, no grad)."""
    seen: dict[int, nn.Module] = {}

    def record(module: nn.Module, *_: Any) -> None:  # returns None: the output is left alone
        seen.setdefault(id(module), module)

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.forward_landmarks(example_input(model, input_size))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return list(seen.values())


def measure(model: nn.Module, input_size: int, *, macs: bool = True) -> Footprint:
    """Inference parameters, MACs (Torch-Pruning's counter) and FP32 bytes of ``model``."""
    modules = _inference_modules(model, input_size)
    tensors = [t for m in modules for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))]
    params = sum(p.numel() for m in modules for p in m.parameters(recurse=False))
    fp32 = sum(t.numel() * t.element_size() for t in tensors if t.is_floating_point())
    count = 0
    if macs:  # the counter runs a deep copy, so ``model`` is left as it was
        counter = torch_pruning().utils.count_ops_and_params
        count = int(counter(LandmarkPath(model), example_input(model, input_size))[0])
    return Footprint(params=params, macs=count, fp32_bytes=fp32)


def checkpoint_bytes(ckpt: Any) -> int:
    """Size of the file :func:`~landmarks.models.save_checkpoint` writes for ``ckpt``."""
    from landmarks.models import save_checkpoint

    with tempfile.TemporaryDirectory(prefix="prune-size-") as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(path, ckpt)
        return path.stat().st_size
