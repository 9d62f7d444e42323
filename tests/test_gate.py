"""The accuracy gate: the pure decision rule, config validation, placement, overlap refusal."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pytest

from landmarks.errors import ConfigError, DataError
from quant import accuracy_gate as gate


@dataclass(frozen=True)
class Case:
    candidate: float
    reference: float
    max_regression: float
    max_abs: float | None
    passed: bool
    regression: float


CASES = [
    Case(4.12, 4.08, 0.02, None, True, 0.04 / 4.08),  # small rise, within 2 %
    Case(4.20, 4.00, 0.02, None, False, 0.05),  # +5 % > 2 %
    Case(3.90, 4.00, 0.02, None, True, -0.025),  # improvement: negative regression
    Case(4.08, 4.00, 0.02, None, True, 0.02),  # exactly at the threshold passes
    Case(4.10, 4.00, 0.05, 0.05, False, 0.025),  # relative ok, absolute +0.10 points > 0.05
    Case(4.10, 4.00, 0.05, 0.20, True, 0.025),
    Case(0.0, 0.0, 0.02, None, True, 0.0),  # zero reference, equal candidate
    Case(0.1, 0.0, 1.0, None, False, math.inf),  # zero reference, any rise is infinite
    Case(5.0, 5.0, 0.0, None, True, 0.0),  # zero tolerance accepts an identical model
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.candidate}vs{c.reference}@{c.max_regression}")
def test_decide(case: Case) -> None:
    decision = gate.decide(case.candidate, case.reference, gate.GateConfig(case.max_regression, case.max_abs))
    assert decision.passed is case.passed
    assert decision.regression == pytest.approx(case.regression)
    assert gate.calculate_regression(case.candidate, case.reference) == pytest.approx(case.regression)


@pytest.mark.parametrize("bad", [-0.01, 1.5, math.nan, math.inf, "0.02", True])
def test_threshold_out_of_range(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_regression"):
        gate.GateConfig(max_regression=bad)  # type: ignore[arg-type]


def test_abs_threshold_validated() -> None:
    with pytest.raises(ConfigError, match="max_abs_regression"):
        gate.GateConfig(max_abs_regression=-1.0)


def test_negative_nme_is_a_bug() -> None:
    with pytest.raises(ValueError):
        gate.calculate_regression(-1.0, 4.0)


def _report(verdict: str, **kw: object) -> gate.GateReport:
    values = dict(candidate="c.onnx", reference="r.onnx", runtime="onnxruntime", nme_candidate=4.12,
                  nme_reference=4.08, regression=0.04 / 4.08, max_regression=0.02, verdict=verdict, reason="r")
    values.update(kw)
    return gate.GateReport(**values)  # type: ignore[arg-type]


def test_verdict_line() -> None:
    assert _report("pass").verdict_line() == "GATE PASS   int8 nme_io 4.12% vs fp32 4.08% (+0.98%, max +2.00%)"
    line = _report("reject", regression=0.05, reason="too much").verdict_line()
    assert line.startswith("GATE REJECT int8 nme_io 4.12% vs fp32 4.08% (+5.00%, max +2.00%)")
    assert "too much" in line
    assert "2 node(s) kept in float" in _report("pass", float_nodes=("a", "b")).verdict_line()


@pytest.mark.parametrize("verdict", ["pass", "reject"])
def test_place_artifact(tmp_path, verdict: str) -> None:
    staged = tmp_path / "stage" / "m.int8.tflite"
    staged.parent.mkdir()
    staged.write_bytes(b"model")
    (staged.parent / "m.int8.tflite.json").write_text("{}")
    release, rejected = tmp_path / "release", tmp_path / "release" / "rejected"
    final = gate.place_artifact(_report(verdict), staged, release, rejected)
    expected = release if verdict == "pass" else rejected
    assert final == expected / "m.int8.tflite" and final.read_bytes() == b"model"
    assert (expected / "m.int8.tflite.json").is_file()
    assert not staged.exists()
    if verdict == "reject":
        assert not (release / "m.int8.tflite").exists()


class _Faces:
    def __init__(self, images: list[np.ndarray], prefix: str) -> None:
        self.images, self.keys = images, [f"{prefix}/{i}" for i in range(len(images))]

    def __len__(self) -> int:
        return len(self.images)

    def item_hashes(self) -> list[str]:
        return [hashlib.sha256(im.tobytes()).hexdigest() for im in self.images]


def test_check_disjoint() -> None:
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(6)]
    gate.check_disjoint(_Faces(faces[:3], "calib"), _Faces(faces[3:], "eval"))
    with pytest.raises(DataError, match=r"share 2 face\(s\) \(e\.g\. 'calib/1'\)"):
        gate.check_disjoint(_Faces(faces[:3], "calib"), _Faces(faces[1:], "eval"))
