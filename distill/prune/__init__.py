"""Structured channel pruning of a PFLD student, with distillation-guided recovery.

Usage::

    python -m distill.prune runs/300w/kd/student.pt --ratio 0.3 --teacher runs/300w/kd/teacher.pt \\
        --data DATA/helen/trainset,DATA/lfpw/trainset,DATA/afw --val-data DATA/helen/testset --out runs/prune

    from distill.prune import PruneConfig, prune_checkpoint
    report = prune_checkpoint("student.pt", PruneConfig(ratio=0.3, steps=2), teacher_checkpoint="teacher.pt")

Whole channels are removed with Torch-Pruning's dependency graph (DepGraph), so coupled layers
stay consistent: an expand conv, its depthwise conv and the next projection lose the same hidden
channels; the residual blocks of a stage lose the same output channels; the multi-scale head's
concatenation and the fc input follow the three maps feeding it. The fc output (``2 * points``)
and the training-only pose branch keep their widths (the branch's input follows stage 3). By
default layers of 32 channels or fewer are kept whole and widths stay multiples of 16 (see
:class:`PruneConfig` for why): on pfld025 that prunes the inverted residuals' expansion layers.

Targets (exactly one): ``ratio`` removes that fraction of the *inference* parameters (what an
exported model carries); ``channel_ratio`` removes that fraction of channels from every pruned
layer; ``params_budget`` / ``flops_budget`` are absolute inference parameters / MACs to end at
or below. Every target is met with one uniform channel sparsity over the pruned layers, found by
bisection, so the relative layer widths of the architecture are kept. ``steps`` > 1 approaches
the target linearly; each step re-ranks channels on the fine-tuned weights, then fine-tunes
again with the same losses as distillation (ground truth + output KD + feature KD) when a FAN
teacher is given, or on the ground truth alone without one.

The pruned checkpoint is an ordinary one: ``arch_config`` carries every layer width, so
``load_checkpoint(path).build()`` rebuilds it without Torch-Pruning, and export is unchanged.
Torch-Pruning is imported only when pruning actually runs.

Modules: ``config`` (:class:`PruneConfig`, reports), ``measure`` (inference footprint),
``pruner`` (:class:`Pruner` on Torch-Pruning's dependency graph and importances), ``search``
(the sparsity that meets a budget), ``run`` (:func:`prune_checkpoint`), ``cli``.
"""

from distill.prune.cli import build_parser, main
from distill.prune.config import IMPORTANCES, TARGETS, Footprint, PruneConfig, PruneReport, QatReport, StepReport
from distill.prune.measure import measure
from distill.prune.pruner import Pruner, kept_channels, pfld_ignored_layers
from distill.prune.run import prune_checkpoint, qat_checkpoint

__all__ = [
    "IMPORTANCES",
    "TARGETS",
    "Footprint",
    "PruneConfig",
    "PruneReport",
    "Pruner",
    "QatReport",
    "StepReport",
    "build_parser",
    "kept_channels",
    "main",
    "measure",
    "pfld_ignored_layers",
    "prune_checkpoint",
    "qat_checkpoint",
]
