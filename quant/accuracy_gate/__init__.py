"""The accuracy gate (docs/DESIGN.md, "Gate"), shared by every stage that derives an artifact.

``run_gate`` evaluates a candidate and its reference on one eval set in the candidate's runtime;
``decide`` is the pure pass/reject rule; ``place_artifact`` moves the file to the release
folder or ``rejected/``; ``check_disjoint`` refuses calibration/eval overlap.
"""

from landmarks.evaluate import Evaluator
from quant.accuracy_gate.gate import (
    DEFAULT_MAX_REGRESSION,
    PASS,
    REJECT,
    Decision,
    GateConfig,
    GateReport,
    calculate_regression,
    check_disjoint,
    decide,
    place_artifact,
    run_gate,
)

__all__ = [
    "DEFAULT_MAX_REGRESSION",
    "PASS",
    "REJECT",
    "Decision",
    "Evaluator",
    "GateConfig",
    "GateReport",
    "calculate_regression",
    "check_disjoint",
    "decide",
    "place_artifact",
    "run_gate",
]
