"""Per-layer time and the speed policy: where INT8 is slower, the layer stays float; the gate still judges."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from quant.latency import Latency
from quant.ptq import main, run_ptq
from tests.test_quant_ptq import COUNT, _copy, export_tiny, small_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("speed") / "plain.onnx")


def _float_convs(path: Path) -> set[str]:
    """Convolutions left in float in a QDQ model: their weight does not come out of a DequantizeLinear."""
    graph = onnx.load(str(path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in graph.node if n.op_type == "Conv" and n.input[1] not in dequantized}


def test_the_profile_puts_each_kernel_in_a_kind_of_layer(tiny, tmp_path):
    from quant.profile import profile_onnx

    int8 = run_ptq(_copy(tiny, tmp_path), None, small_config(), log=lambda _: None).artifact
    fp32, quantized = profile_onnx(tiny, runs=20), profile_onnx(int8, runs=20)
    assert fp32.measured and quantized.measured
    assert {"first conv", "conv", "fully connected"} <= set(fp32.kinds)  # c1 sees the image; c2, c3 are 3x3
    assert "first conv" in quantized.kinds and "conversion" in quantized.kinds  # QLinearConv, Quantize...
    assert all(v > 0 for v in fp32.kinds.values()) and fp32.total_us == pytest.approx(sum(fp32.kinds.values()))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    assert not profile_onnx(broken).measured and profile_onnx(broken).reason  # "not measured", with the reason


def _timing_says_first_conv_is_slower_in_int8(monkeypatch) -> None:
    """Fake measurements: a candidate with the image's convolution in float runs 20 % faster."""
    import quant.latency

    def measure(paths, rounds=10, **kwargs):
        ms = [0.8 if "/c1/Conv" in _float_convs(Path(p)) else 1.0 for p in paths]
        return [Latency(m, m, rounds, 1, (m,) * rounds) for m in ms]

    monkeypatch.setattr(quant.latency, "measure", measure)


def test_the_speed_policy_keeps_in_float_what_int8_makes_slower(tiny, tmp_path, monkeypatch):
    _timing_says_first_conv_is_slower_in_int8(monkeypatch)
    result = run_ptq(_copy(tiny, tmp_path), None, small_config(precision_policy="speed"), log=lambda _: None)
    assert result.gate.passed
    assert _float_convs(result.artifact) == {"/c1/Conv"}  # the first conv in float, c2 and c3 INT8
    speed = result.report.settings["speed"]
    assert speed["float_kinds"] == ["first conv"] and speed["source"] == "measured here"
    assert {r["kind"] for r in speed["rows"]} >= {"first conv", "conv"}
    size = run_ptq(_copy(tiny, tmp_path / "size"), None, small_config(), log=lambda _: None)
    assert _float_convs(size.artifact) == set()  # the default policy: every layer INT8
    assert size.report.bytes_int8 < result.report.bytes_int8


def test_the_gate_still_rejects_what_the_speed_policy_made(tmp_path, monkeypatch):
    """A faster model is no excuse: the policy keeps the first convolution in float, which does not save
    a model whose INT8 error sits elsewhere (an outlier channel in c2): rejected (exit 1), into rejected/."""
    _timing_says_first_conv_is_slower_in_int8(monkeypatch)
    model = export_tiny(tmp_path / "outlier.onnx", outlier=1000.0)
    result = run_ptq(model, None, small_config(precision_policy="speed", fallback=False), log=lambda _: None)
    assert result.report.settings["speed"]["float_kinds"] == ["first conv"]
    assert _float_convs(result.artifact) == {"/c1/Conv"}
    assert result.exit_code == 1 and result.artifact.parent.name == "rejected"
    assert result.gate.regression > result.gate.max_regression


def test_a_timing_file_from_the_target_decides(tiny, tmp_path, monkeypatch):
    """The per-kind profile written on the target (python -m quant.profile FP32 INT8 --out FILE): a kind
    whose INT8 kernels were slower there stays float, whatever this machine measures."""
    from quant.profile import main as profile

    int8 = run_ptq(_copy(tiny, tmp_path / "made"), None, small_config(), log=lambda _: None).artifact
    timings = tmp_path / "target.json"
    assert profile([str(tiny), str(int8), "--runs", "10", "--out", str(timings)]) == 0
    data = json.loads(timings.read_text())
    for profile_ in data["profiles"].values():  # as on a target where INT8 3x3 convolutions are slow
        is_int8 = any(n["op"].startswith("QLinear") for n in profile_["nodes"].values())
        profile_["kinds"]["conv"] = 500.0 if is_int8 else 100.0
        profile_["kinds"]["first conv"] = 10.0 if is_int8 else 100.0
    timings.write_text(json.dumps(data))
    model = _copy(tiny, tmp_path / "policy")
    code = main([str(model), "--calib", f"synthetic:{COUNT}", "--eval-count", str(COUNT), "--no-latency",
                 "--precision-policy", "speed", "--timings", str(timings)])
    assert code == 0
    assert _float_convs(tmp_path / "policy" / "plain.int8.onnx") == {"/c2/Conv", "/c3/Conv"}


def test_timings_without_the_speed_policy_are_a_usage_error(tiny, tmp_path, capsys):
    timings = tmp_path / "t.json"
    timings.write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main([str(tiny), "--timings", str(timings), "--no-latency"])
    assert exc.value.code == 2 and "--precision-policy speed" in capsys.readouterr().err
