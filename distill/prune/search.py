"""The budget search: the uniform channel sparsity at which a step meets its share of the target.

Targets in parameters or MACs are met by bisection over the sparsity (``BISECT_ITERATIONS``
halvings: finer than one channel of the widest layer); ``channel_ratio`` needs no search. The
search only asks ``trial(sparsity)`` for a footprint; the pruner answers from its one dependency
graph's groups, measuring a fresh model of the trial's widths (no copy, no graph per trial).
"""

from __future__ import annotations

from collections.abc import Callable

from distill.prune.config import Footprint
from landmarks.errors import ConfigError

BISECT_ITERATIONS = 14  # sparsity resolution 2**-14: finer than one channel of the widest layer


class SparsitySearch:
    """``target`` = ``(kind, value)`` of :class:`~distill.prune.config.PruneConfig`, approached
    linearly in ``steps`` steps."""

    def __init__(self, target: tuple[str, float], steps: int, trial: Callable[[float], Footprint],
                 round_to: int) -> None:
        self.kind, self.value = target
        self.steps = steps
        self.trial = trial
        self.round_to = round_to

    @property
    def counts_macs(self) -> bool:
        return self.kind == "flops_budget"

    def metric(self, footprint: Footprint) -> float:
        return footprint.macs if self.counts_macs else footprint.params

    def goal(self, step: int, initial: Footprint) -> float:
        """The step's share of the target, in parameters or MACs (linear schedule)."""
        start = self.metric(initial)
        final = {"ratio": start * (1.0 - self.value), "params_budget": self.value,
                 "flops_budget": self.value}[self.kind]
        return start - (start - final) * step / self.steps

    def what(self) -> str:
        return "MACs" if self.counts_macs else "inference parameters"

    def check_reachable(self, initial: Footprint) -> None:
        """A target already met, or out of reach with every pruned layer at ``round_to``, is a ConfigError."""
        if self.kind == "channel_ratio":
            return
        start, final = self.metric(initial), self.goal(self.steps, initial)
        if final >= start:
            raise ConfigError(f"the model already has {start:,.0f} {self.what()}, within the budget of "
                              f"{final:,.0f}; nothing to prune")
        smallest = self.metric(self.trial(1.0))
        if smallest > final:
            raise ConfigError(f"{self.kind} {self.value:,.0f} cannot be reached: with every pruned layer at "
                              f"{self.round_to} channels the model still has {smallest:,.0f} {self.what()}")

    def sparsity_for(self, step: int, initial: Footprint, current: float) -> float:
        """The smallest sparsity (above ``current``, the one already applied) meeting step ``step``."""
        if self.kind == "channel_ratio":
            return self.value * step / self.steps
        goal = self.goal(step, initial)
        low, high = current, 1.0
        for _ in range(BISECT_ITERATIONS):
            mid = (low + high) / 2
            if self.metric(self.trial(mid)) <= goal:
                high = mid
            else:
                low = mid
        return high
