"""The pruner: Torch-Pruning's dependency graph and importance criteria, one uniform sparsity.

Torch-Pruning's ``DependencyGraph`` finds the coupled layers (groups); its importance classes
rank channels; the graph is built once per model. What is ours: widths are the nearest multiple
of ``round_to`` of the *initial* width (:func:`kept_channels`), PFLD's ignored layers
(:func:`pfld_ignored_layers`), and the step schedule toward a parameter or MAC target
(:mod:`distill.prune.search`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from distill.prune.config import Footprint
from distill.prune.measure import example_input, measure, torch_pruning
from distill.prune.search import SparsitySearch
from landmarks.errors import ConfigError
from landmarks.models.pfld import out_width


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
    share of the target is found by bisection. The dependency graph is built once: it gives the
    groups, the layers whose output width each group sets, and prunes every step. A bisection
    trial needs no graph: its widths follow from the groups, and its footprint is measured on a
    fresh model of those widths (``model.with_channels``; ``model.channel_layers()`` names the
    layer behind each width). A target the model cannot reach, even with every pruned layer at
    ``round_to`` channels, is a :class:`ConfigError` at construction.
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
        self.ignored = pfld_ignored_layers(model, min_channels) if ignored_layers is None else list(ignored_layers)
        self.graph = _dependency_graph(model, input_size)
        modules = dict(model.named_modules())
        names = {m: n for n, m in modules.items()}
        # root conv name -> names of the layers whose output width the group sets
        self.groups = {names[g[0].dep.target.module]: tuple(_out_layers(self.graph, g, names)) for g in self._groups()}
        if not self.groups:
            raise ConfigError("this model has no prunable layers (every layer is ignored or too narrow)")
        self.initial_widths = {root: out_width(modules[root]) for root in self.groups}
        self.round_to = round_to
        self.search = SparsitySearch(target, steps, self._trial, round_to)
        self.initial = measure(model, input_size, macs=self.search.counts_macs)
        self.current_step = 0
        self.sparsity = 0.0
        self.search.check_reachable(self.initial)

    @property
    def done(self) -> bool:
        return self.current_step >= self.steps

    def _groups(self) -> list[Any]:
        return self.graph.get_all_groups(ignored_layers=self.ignored, root_module_types=[nn.Conv2d])

    def widths(self, sparsity: float) -> dict[str, int]:
        """``model.channels`` as they would be after pruning to ``sparsity`` (never wider than now)."""
        modules = dict(self.model.named_modules())
        layer_widths = {}
        for root, layers in self.groups.items():
            width = min(out_width(modules[root]), kept_channels(self.initial_widths[root], sparsity, self.round_to))
            layer_widths |= dict.fromkeys(layers, width)
        return {key: layer_widths.get(name, out_width(modules[name]))
                for key, name in self.model.channel_layers().items()}

    def _trial(self, sparsity: float) -> Footprint:
        """The footprint ``model`` would have at ``sparsity``, measured on a fresh model of those widths."""
        return measure(self.model.with_channels(self.widths(sparsity)), self.input_size,
                       macs=self.search.counts_macs)

    def step(self) -> float:
        """Prune to the next step's target; returns the channel sparsity now applied.

        With ``taylor`` importance, gradients of the loss must already be in ``.grad``.
        """
        if self.done:
            raise RuntimeError(f"all {self.steps} pruning steps are done")
        self.current_step += 1
        sparsity = self.search.sparsity_for(self.current_step, self.initial, self.sparsity)
        self._prune(sparsity)
        self.sparsity = sparsity
        return sparsity

    def _prune(self, sparsity: float) -> None:
        """Cut every prunable group to its width at ``sparsity``, dropping the least important channels."""
        names = {m: n for n, m in self.model.named_modules()}
        scorer = _importance(self.importance)
        plan = []
        for group in self._groups():
            root, handler = group[0].dep.target.module, group[0].dep.handler
            current = self.graph.get_out_channels(root)
            drop = current - kept_channels(self.initial_widths[names[root]], sparsity, self.round_to)
            if drop <= 0:
                continue
            order = torch.argsort(scorer(group)).tolist()
            plan.append((root, handler, sorted(order[:drop])))
        for root, handler, idxs in plan:
            self.graph.get_pruning_group(root, handler, idxs).prune()


def _dependency_graph(model: nn.Module, input_size: int) -> Any:
    """Torch-Pruning's dependency graph of ``model``, traced in eval mode."""
    was_training = model.training
    model.eval()
    try:
        return torch_pruning().DependencyGraph().build_dependency(
            model, example_inputs=example_input(model, input_size))
    finally:
        model.train(was_training)


def _out_layers(graph: Any, group: Any, names: dict[nn.Module, str]) -> list[str]:
    """Names of the convs and linear layers whose output channels ``group`` prunes."""
    return [names[item.dep.target.module] for item in group
            if isinstance(item.dep.target.module, (nn.Conv2d, nn.Linear))
            and graph.is_out_channel_pruning_fn(item.dep.handler)]
