"""Quantization-aware fine-tuning: train the float student while its forward pass sees INT8 rounding.

Post-training INT8 of a well-trained PFLD student can lose several percent NME, spread over the
whole network (no single layer to keep in float; ``benchmarks/results/tuned_student_300w.md``).
A few epochs with simulated quantization teach the weights to sit where rounding costs little;
the model that comes out is a plain float model (same architecture, same checkpoint format) that
the usual post-training quantizers (``quant.ptq``: onnxruntime QDQ, TFLite full-integer) then
calibrate and convert with much less loss.

What is simulated is what both runtimes do to this network:

* **weights**: symmetric INT8, one scale per output channel. Batch norm is frozen (it uses its
  running statistics), so the folded weight the exporter writes is the conv weight times a fixed
  per-channel factor, and per-channel rounding of one is exactly per-channel rounding of the other.
* **activations**: affine UINT8, one scale per tensor, from a moving average of each batch's min
  and max: the input of every conv and linear layer (which covers every ReLU and residual-add
  output that feeds one), the linear-bottleneck outputs, every residual block's output (it also
  travels the skip connection to the next add, so its rounding accumulates along a stage) and the
  landmark output.

Gradients pass the rounding straight through (``torch.fake_quantize_*``). The pose branch is
training-only and never exported, so it is not quantized.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

WEIGHT_QMAX = 127          # symmetric int8 weights, [-127, 127]
ACTIVATION_LEVELS = 255    # affine uint8 activations, [0, 255]
OBSERVER_MOMENTUM = 0.01   # the moving average of batch ranges spans about the last 100 steps


class PerChannelWeightQuant(nn.Module):
    """Parametrization of a conv/linear weight: rounded to symmetric 8 bits, one scale per output channel."""

    def forward(self, weight: Tensor) -> Tensor:
        flat = weight.detach().abs().flatten(1).amax(1)
        scale = (flat / WEIGHT_QMAX).clamp_min(1e-12).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -WEIGHT_QMAX, WEIGHT_QMAX)


class ActivationQuant(nn.Module):
    """Affine uint8 rounding of one tensor, its range a moving average of batch ranges.

    The range moves only while the hooked layer is in training mode (``observe``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def observe(self, x: Tensor) -> None:
        low, high = x.min().float().clamp(max=0.0), x.max().float().clamp(min=0.0)
        if not bool(self.seen):
            self.low.copy_(low)
            self.high.copy_(high)
            self.seen.fill_(True)
        else:
            self.low.lerp_(low, OBSERVER_MOMENTUM)
            self.high.lerp_(high, OBSERVER_MOMENTUM)

    def forward(self, x: Tensor, observe: bool) -> Tensor:
        if observe:
            self.observe(x)
        if not bool(self.seen):
            return x
        scale = float((self.high - self.low).clamp_min(1e-8)) / ACTIVATION_LEVELS
        zero_point = round(-float(self.low) / scale)
        return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, ACTIVATION_LEVELS).to(x.dtype)


def _exported(name: str) -> bool:
    return not (name == "aux" or name.startswith("aux."))


@contextmanager
def quantization_simulated(model: nn.Module) -> Iterator[nn.ModuleDict]:
    """Inside the block, ``model``'s forward rounds weights and activations as INT8 does.

    Yields the activation quantizers (their ranges follow the training batches). On exit the hooks
    and parametrizations are removed and the float weights the optimizer trained are kept, so the
    model is again a plain float model of its own architecture.
    """
    quantizers = nn.ModuleDict()
    handles: list[Any] = []
    weighted: list[nn.Module] = []

    def add(key: str) -> ActivationQuant:
        quantizers[key.replace(".", "_")] = quantizer = ActivationQuant()
        return quantizer

    for name, module in model.named_modules():
        if not name or not _exported(name):
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            quantizer = add(f"{name}.input")
            hook = _input_hook(quantizer)
            handles.append(module.register_forward_pre_hook(hook))
            parametrize.register_parametrization(module, "weight", PerChannelWeightQuant())
            weighted.append(module)
        if isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(_freeze_batchnorm))
        if name.endswith("project") or name == "fc" or getattr(module, "residual", False):
            quantizer = add(f"{name}.output")
            handles.append(module.register_forward_hook(lambda m, _a, out, q=quantizer: q(out, m.training)))
    quantizers.to(next(model.parameters()).device)
    try:
        yield quantizers
    finally:
        for handle in handles:
            handle.remove()
        for module in weighted:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def _input_hook(quantizer: ActivationQuant) -> Any:
    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (quantizer(args[0], module.training), *args[1:])
    return hook


def _freeze_batchnorm(module: nn.Module, args: tuple[Tensor, ...]) -> None:
    """Batch norm normalizes with its running statistics and does not update them, train or eval:
    the folded weight export writes then differs from the trained one by a fixed per-channel factor."""
    module.training = False
