"""Weight-scale granularity (quant.granularity) and the slimming passes (quant.onnx_slim), on real ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from quant.granularity import choose, tensor_overrides, weight_sqnr_db
from quant.onnx_slim import compact_names, strip_zero_points


def _weights(seed: int, shape: tuple[int, ...], outlier: float = 1.0) -> np.ndarray:
    w = np.random.default_rng(seed).normal(0, 0.1, shape).astype(np.float32)
    w[0] *= outlier
    return w


def test_worst_channel_sqnr_sees_an_outlier_channel() -> None:
    even = _weights(0, (32, 16, 3, 3))
    spread = _weights(0, (32, 16, 3, 3), outlier=1000.0)
    assert weight_sqnr_db(even, 0, per_channel=False) > 30
    assert weight_sqnr_db(even, 0, per_channel=True) >= weight_sqnr_db(even, 0, per_channel=False)
    # one shared scale rounds every other channel to zero: 0 dB, though the tensor total looks fine
    assert weight_sqnr_db(spread, 0, per_channel=False) == pytest.approx(0.0, abs=1e-6)
    assert weight_sqnr_db(spread, 0, per_channel=True) > 35
    assert weight_sqnr_db(np.zeros((4, 4), np.float32), 0, per_channel=False) == 100.0


def _two_convs_and_gemm() -> onnx.ModelProto:
    """conv_a (even weights) -> conv_b (one outlier channel) -> flatten -> gemm (transB=1)."""
    inits = [
        numpy_helper.from_array(_weights(1, (8, 3, 3, 3)), "w_a"),
        numpy_helper.from_array(_weights(2, (8, 8, 3, 3), outlier=1000.0), "w_b"),
        numpy_helper.from_array(_weights(3, (10, 8 * 4 * 4)), "w_fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w_a"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w_b"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["b"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w_fc"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_auto_makes_only_the_outlier_layer_per_channel() -> None:
    model = _two_convs_and_gemm()
    auto = {c.node: c for c in choose(model, "auto")}
    assert set(auto) == {"conv_a", "conv_b", "fc"}
    assert [n for n, c in auto.items() if c.per_channel] == ["conv_b"]
    assert auto["fc"].axis == 0  # Gemm with transB: output channels are rows
    assert tensor_overrides(list(auto.values())) == {"w_b": [{"axis": 0}]}
    assert all(c.per_channel for c in choose(model, "per-channel"))
    assert not any(c.per_channel for c in choose(model, "per-tensor"))
    assert not any(c.per_channel for c in choose(model, "auto", min_sqnr_db=0.0))


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory) -> Path:
    """A real onnxruntime QDQ model of the three-layer graph, with onnxruntime's own names."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    root = tmp_path_factory.mktemp("slim")
    float_path, qdq_path = root / "float.onnx", root / "qdq.onnx"
    onnx.save(_two_convs_and_gemm(), str(float_path))
    inputs = [{"x": np.random.default_rng(i).uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32)} for i in range(8)]

    class Reader:
        def __init__(self) -> None:
            self.items = iter(inputs)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(qdq_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"WeightSymmetric": True})
    return qdq_path


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_slimming_keeps_outputs_bit_identical(qdq_model) -> None:
    original = onnx.load(str(qdq_model))
    slim = onnx.load(str(qdq_model))
    saved_zero_points = strip_zero_points(slim)
    saved_names = compact_names(slim)
    onnx.checker.check_model(slim)
    assert saved_zero_points > 0 and saved_names > 0
    assert slim.ByteSize() < original.ByteSize() - saved_names // 2
    assert [i.name for i in slim.graph.input] == ["x"] and [o.name for o in slim.graph.output] == ["y"]
    assert {n.name for n in slim.graph.node if n.op_type == "Conv"} == {"conv_a", "conv_b"}
    assert all(not n.name for n in slim.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    assert max(len(t.name) for t in slim.graph.initializer) <= 4
    x = np.random.default_rng(9).uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(_run(slim, x), _run(original, x))


def test_compact_names_never_reuses_a_kept_name() -> None:
    model = _two_convs_and_gemm()
    model.graph.input[0].name = "t0"
    model.graph.node[0].input[0] = "t0"
    compact_names(model)
    onnx.checker.check_model(model)
    produced = [o for n in model.graph.node for o in n.output]
    assert "t0" not in produced and len(set(produced)) == len(produced)
