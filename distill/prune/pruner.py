"""The pruner: Torch-Pruning's dependency graph and importance criteria, one uniform sparsity.

Torch-Pruning's ``DependencyGraph`` finds the coupled layers (groups); its importance classes
rank channels. What is ours: widths are the nearest multiple of ``round_to`` of the *initial*
width (:func:`kept_channels`), PFLD's ignored layers (:func:`pfld_ignored_layers`), and the
step schedule toward a parameter or MAC target (:mod:`distill.prune.search`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from distill.prune.config import Footprint
from distill.prune.measure import example_input, measure, torch_pruning
from distill.prune.search import SparsitySearch
from landmarks.errors import ConfigError


def _importance(name: str) -> Any:
    imp = torch_pruning().importance
    return {
        "l1": lambda: imp.GroupMagnitudeImportance(p=1),
        "l2": lambda: imp.GroupMagnitudeImportance(p=2),
        "taylor": imp.GroupTaylorImportance,
        "bn": imp.BNScaleImportance,
    }[name]()


def kept_channels(width: int, sparsity: float, round_to: int) -> int:
    """Channels a layer of ``width`` keeps at ``sparsity``: the nearest multiple of ``round_to``
    (nearest, not floor, so a narrow layer is not cut by a whole step at a tiny sparsity),
    between ``round_to`` and ``width``."""
    keep = math.floor(width * (1.0 - sparsity) / round_to + 0.5) * round_to
    return min(width, max(round_to, keep))


def pfld_ignored_layers(model: nn.Module, min_channels: int) -> list[nn.Module]:
    """Layers whose output channels stay: the fc (``2 * points`` outputs), the training-only pose
    branch, and convs with ``min_channels`` outputs or fewer."""
    ignored: list[nn.Module] = [model.fc, *model.aux.modules()]
    ignored += [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels <= min_channels]
    return ignored


class Pruner:
    """Prunes ``model`` in place toward one target in ``steps`` steps (Torch-Pruning's lifecycle:
    configure once, ``step()`` after each round of fine-tuning, ``done`` when finished).

    Every step applies one uniform channel sparsity (relative to the *initial* widths) to all
    prunable groups; for parameter and MAC targets the smallest sparsity meeting the step's
    share of the target is found by bisection on a copy. A target the model cannot reach, even
    with every pruned layer at ``round_to`` channels, is a :class:`ConfigError` at construction.
    """

    def __init__(
        self,
        model: nn.Module,
        input_size: int,
        target: tuple[str, float],
        *,
        importance: str = "l1",
        steps: int = 1,
        ignored_layers: Sequence[nn.Module] | None = None,
        round_to: int = 16,
        min_channels: int = 32,
    ) -> None:
        self.model = model
        self.input_size = input_size
        self.kind, self.value = target
        self.importance = importance
        self.steps = steps
        ignored = pfld_ignored_layers(model, min_channels) if ignored_layers is None else list(ignored_layers)
        self._ignored_names = {n for n, m in model.named_modules() if any(m is i for i in ignored)}
        self.initial_widths = _group_widths(model, self._ignored(model), input_size)
        if not self.initial_widths:
            raise ConfigError("this model has no prunable layers (every layer is ignored or too narrow)")
        self.round_to = round_to
        self.search = SparsitySearch(target, steps, self._trial, round_to)
        self.initial = measure(model, input_size, macs=self.search.counts_macs)
        self.current_step = 0
        self.sparsity = 0.0
        self.search.check_reachable(self.initial)

    @property
    def done(self) -> bool:
        return self.current_step >= self.steps

    def _ignored(self, model: nn.Module) -> list[nn.Module]:
        """The ignored layers of ``model`` or of a deep copy of it, by module name."""
        return [m for n, m in model.named_modules() if n in self._ignored_names]

    def _trial(self, sparsity: float) -> Footprint:
        """The footprint ``model`` would have at ``sparsity`` (pruned on a copy, sizes only)."""
        trial = copy.deepcopy(self.model)
        self._prune(trial, sparsity, ranked=False)
        return measure(trial, self.input_size, macs=self.search.counts_macs)

    def step(self) -> float:
        """Prune to the next step's target; returns the channel sparsity now applied.

        With ``taylor`` importance, gradients of the loss must already be in ``.grad``.
        """
        if self.done:
            raise RuntimeError(f"all {self.steps} pruning steps are done")
        self.current_step += 1
        sparsity = self.search.sparsity_for(self.current_step, self.initial, self.sparsity)
        self._prune(self.model, sparsity, ranked=True)
        self.sparsity = sparsity
        return sparsity

    def _prune(self, model: nn.Module, sparsity: float, *, ranked: bool) -> None:
        """Cut every prunable group of ``model`` to its width at ``sparsity``; ``ranked=False``
        drops the first channels (sizes only, for the search), else the least important ones."""
        tp = torch_pruning()
        was_training = model.training
        model.eval()
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input(model, self.input_size))
        names = {m: n for n, m in model.named_modules()}
        scorer = _importance(self.importance) if ranked else None
        plan = []
        for group in graph.get_all_groups(ignored_layers=self._ignored(model), root_module_types=[nn.Conv2d]):
            root, handler = group[0].dep.target.module, group[0].dep.handler
            current = graph.get_out_channels(root)
            initial = self.initial_widths.get(names[root])
            drop = 0 if initial is None else current - kept_channels(initial, sparsity, self.round_to)
            if drop <= 0:
                continue
            order = torch.argsort(scorer(group)).tolist() if scorer is not None else list(range(current))
            plan.append((root, handler, sorted(order[:drop])))
        for root, handler, idxs in plan:
            graph.get_pruning_group(root, handler, idxs).prune()
        model.train(was_training)


def _group_widths(model: nn.Module, ignored: list[nn.Module], input_size: int) -> dict[str, int]:
    """Output width of each prunable group, keyed by the name of its root conv."""
    tp = torch_pruning()
    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input(model, input_size))
    model.train(was_training)
    names = {m: n for n, m in model.named_modules()}
    widths = {}
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        widths[names[root]] = graph.get_out_channels(root)
    return widths
