"""The accuracy gate of docs/DESIGN.md, "Gate": compare a candidate with its reference, decide, place.

Two budgets: the **step** regression against the candidate's immediate reference (INT8 against its
FP32 model, an export against the torch model it came from), and the **chain** regression against
the best model the chain made, the distilled student before pruning (``max_chain_regression``; a
pruned student that lost 9 % passes every step gate of its INT8 exports, but not this one).
``calculate_regression`` and ``decide`` are pure functions (NME is lower-is-better); ``run_gate``
evaluates the models on one eval set in the candidate's runtime and returns a :class:`GateReport`;
``place_artifact`` is the only place that decides whether a gated file lands in the release
folder or in ``rejected/``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from landmarks.errors import ConfigError, DataError

PASS = "pass"
REJECT = "reject"
DEFAULT_MAX_REGRESSION = 0.02
_EPS = 1e-9  # a regression equal to the threshold passes, whatever the float rounding


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the gate; ``max_regression`` is relative (0.02 = +2 %), the other absolute.

    ``max_abs_regression`` is in NME percentage points (``nme_io`` is reported in percent).
    """

    max_regression: float = DEFAULT_MAX_REGRESSION
    max_abs_regression: float | None = None
    max_chain_regression: float | None = None  # against the chain reference; None: reported, not enforced

    def __post_init__(self) -> None:
        if self.max_chain_regression is not None and (
            not _is_number(self.max_chain_regression) or not 0.0 <= self.max_chain_regression <= 1.0
        ):
            raise ConfigError(
                f"max_chain_regression must be a fraction in [0, 1] (0.03 = 3 %), got {self.max_chain_regression!r}"
            )
        if not _is_number(self.max_regression) or not 0.0 <= self.max_regression <= 1.0:
            raise ConfigError(
                f"max_regression must be a fraction in [0, 1] (0.02 = 2 %), got {self.max_regression!r}"
            )
        if self.max_abs_regression is not None and (
            not _is_number(self.max_abs_regression) or not 0.0 <= self.max_abs_regression <= 100.0
        ):
            raise ConfigError(
                "max_abs_regression must be NME percentage points in [0, 100], "
                f"got {self.max_abs_regression!r}"
            )


@dataclass(frozen=True)
class Decision:
    """What the gate concluded from two NMEs (``regression`` is relative, may be negative)."""

    passed: bool
    regression: float
    reason: str


def calculate_regression(nme_candidate: float, nme_reference: float) -> float:
    """``(candidate - reference) / reference``; negative is an improvement.

    A zero reference NME makes any positive candidate NME an infinite regression and an equal
    one zero, so a perfect reference is never silently divided by.
    """
    for name, value in (("nme_candidate", nme_candidate), ("nme_reference", nme_reference)):
        if not _is_number(value) or value < 0:
            raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    delta = nme_candidate - nme_reference
    if nme_reference == 0:
        return 0.0 if delta == 0 else math.copysign(math.inf, delta)
    return delta / nme_reference


def decide_chain(nme_candidate: float, nme_chain_reference: float, config: GateConfig) -> Decision:
    """The chain budget: pass when no ``max_chain_regression`` is set or the regression is within it."""
    regression = calculate_regression(nme_candidate, nme_chain_reference)
    limit = config.max_chain_regression
    if limit is not None and regression > limit + _EPS:
        return Decision(False, regression, f"nme_io regression {_pct(regression)} against the unpruned student "
                                           f"exceeds the chain budget {_pct(limit)}")
    within = f"within the chain budget {_pct(limit)}" if limit is not None else "(no chain budget set)"
    return Decision(True, regression, f"chain regression {_pct(regression)} {within}")


def decide(nme_candidate: float, nme_reference: float, config: GateConfig) -> Decision:
    """Pass or reject as docs/DESIGN.md, "Gate" says; the reason names the threshold that failed."""
    regression = calculate_regression(nme_candidate, nme_reference)
    delta = nme_candidate - nme_reference
    if regression > config.max_regression + _EPS:
        return Decision(
            False, regression,
            f"nme_io regression {_pct(regression)} exceeds max {_pct(config.max_regression)}",
        )
    if config.max_abs_regression is not None and delta > config.max_abs_regression + _EPS:
        return Decision(
            False, regression,
            f"nme_io rose by {delta:.3f} points, more than max_abs_regression {config.max_abs_regression:.3f}",
        )
    return Decision(True, regression, f"nme_io regression {_pct(regression)} within max {_pct(config.max_regression)}")


@dataclass(frozen=True)
class GateReport:
    """One gate verdict: both NMEs (percent), the regression, and what was evaluated on what."""

    candidate: str
    reference: str
    runtime: str
    nme_candidate: float
    nme_reference: float
    regression: float
    max_regression: float
    verdict: str
    reason: str
    max_abs_regression: float | None = None
    float_nodes: tuple[str, ...] = ()
    eval_set: str = ""
    eval_count: int = 0
    eval_hash: str = ""
    candidate_label: str = "int8"
    reference_label: str = "fp32"
    # the chain: the same candidate against the distilled student before pruning (None: not evaluated)
    chain_reference_label: str = ""
    nme_chain_reference: float | None = None
    chain_regression: float | None = None
    max_chain_regression: float | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    @property
    def step_passed(self) -> bool:
        """Whether the step budget alone passed (the chain budget may still reject the candidate)."""
        return not (self.regression > self.max_regression + _EPS or (
            self.max_abs_regression is not None
            and self.nme_candidate - self.nme_reference > self.max_abs_regression + _EPS))

    @property
    def chain_failed(self) -> bool:
        limit = self.max_chain_regression
        return limit is not None and self.chain_regression is not None and self.chain_regression > limit + _EPS

    def verdict_line(self) -> str:
        """``GATE PASS  int8 nme_io 4.12% vs fp32 4.08% (+0.98%, max +2.00%)``."""
        word = "PASS  " if self.passed else "REJECT"
        line = (
            f"GATE {word} {self.candidate_label} nme_io {self.nme_candidate:.2f}% vs "
            f"{self.reference_label} {self.nme_reference:.2f}% "
            f"({_pct(self.regression)}, max {_pct(self.max_regression)})"
        )
        if self.chain_regression is not None:
            budget = f", max {_pct(self.max_chain_regression)}" if self.max_chain_regression is not None else ""
            line += f"; chain {_pct(self.chain_regression)} vs {self.chain_reference_label}{budget}"
        if self.float_nodes:
            line += f" [{len(self.float_nodes)} node(s) kept in float]"
        return line if self.passed else f"{line}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["float_nodes"] = list(self.float_nodes)
        for key in ("regression", "chain_regression"):
            if out[key] is not None and not math.isfinite(out[key]):
                out[key] = str(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        """The inverse of :meth:`as_dict` (a verdict handed from one stage to another as JSON)."""
        chain = data.get("chain_regression")
        return cls(**{**data, "float_nodes": tuple(data.get("float_nodes", ())),
                      "regression": float(data["regression"]),
                      "chain_regression": float(chain) if chain is not None else None})


def run_gate(
    candidate: Any,
    reference: Any,
    dataset: Any,
    config: GateConfig,
    *,
    evaluator: Any = None,
    float_nodes: tuple[str, ...] = (),
    labels: tuple[str, str] = ("int8", "fp32"),
    chain_reference: Any = None,
    chain_label: str = "student_unpruned",
) -> GateReport:
    """Evaluate the predictors on ``dataset`` (same runtime as shipped) and decide.

    Pass one :class:`~landmarks.evaluate.Evaluator` across calls to evaluate the references
    only once (the fallback loop gates many candidates against one reference). ``chain_reference``
    (the distilled student before pruning) adds the chain regression, rejected past
    ``config.max_chain_regression``.
    """
    from landmarks.evaluate import Evaluator

    evaluator = evaluator or Evaluator(dataset)
    nme_reference = evaluator.nme(reference)
    nme_candidate = evaluator.nme(candidate)
    decision = decide(nme_candidate, nme_reference, config)
    nme_chain = chain = None
    if chain_reference is not None:
        nme_chain = evaluator.nme(chain_reference)
        chained = decide_chain(nme_candidate, nme_chain, config)
        chain = chained.regression
        if decision.passed and not chained.passed:
            decision = Decision(False, decision.regression, chained.reason)
    return GateReport(
        candidate=str(getattr(candidate, "path", getattr(candidate, "name", candidate))),
        reference=str(getattr(reference, "path", getattr(reference, "name", reference))),
        runtime=getattr(candidate, "runtime", ""),
        nme_candidate=nme_candidate,
        nme_reference=nme_reference,
        regression=decision.regression,
        max_regression=config.max_regression,
        max_abs_regression=config.max_abs_regression,
        verdict=PASS if decision.passed else REJECT,
        reason=decision.reason,
        float_nodes=tuple(float_nodes),
        eval_set=evaluator.name,
        eval_count=evaluator.count,
        eval_hash=evaluator.content_hash,
        candidate_label=labels[0],
        reference_label=labels[1],
        chain_reference_label=chain_label if chain_reference is not None else "",
        nme_chain_reference=nme_chain,
        chain_regression=chain,
        max_chain_regression=config.max_chain_regression,
    )


def check_disjoint(calib_dataset: Any, eval_dataset: Any) -> None:
    """Calibration and eval data must not share a face (by content hash): a :class:`DataError`."""
    calib = _hashes(calib_dataset)
    shared = set(calib) & set(_hashes(eval_dataset))
    if shared:
        keys = [key for key, digest in _keyed_hashes(calib_dataset) if digest in shared]
        example = keys[0] if keys else sorted(shared)[0]
        raise DataError(
            f"calibration and eval data share {len(shared)} face(s) (e.g. {example!r}); "
            "use disjoint sets so the gate measures unseen data (docs/DESIGN.md, 'Gate')"
        )


def place_artifact(
    report: GateReport,
    path: str | os.PathLike[str],
    release_dir: str | os.PathLike[str],
    rejected_dir: str | os.PathLike[str],
) -> Path:
    """Move a gated file (and its sidecar) to release or ``rejected/`` by ``report``'s verdict
    (atomic per file: :func:`landmarks.artifact.place`). Returns the new path."""
    from landmarks.artifact import place

    return place(path, report.passed, release_dir, rejected_dir)


def _hashes(dataset: Any) -> list[str]:
    return [digest for _, digest in _keyed_hashes(dataset)]


def _keyed_hashes(dataset: Any) -> list[tuple[str, str]]:
    hashes = dataset.item_hashes()
    if isinstance(hashes, dict):
        return [(str(k), str(v)) for k, v in hashes.items()]
    keys = getattr(dataset, "keys", None)
    keys = list(keys() if callable(keys) else keys) if keys is not None else [str(i) for i in range(len(hashes))]
    return [(str(k), str(h)) for k, h in zip(keys, hashes, strict=False)]


def _pct(fraction: float) -> str:
    if math.isinf(fraction):
        return "+inf%" if fraction > 0 else "-inf%"
    return f"{100 * fraction:+.2f}%"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
