"""TFLite full-integer INT8 through the real converter and LiteRT interpreter, gated and with fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from quant.ptq import PtqConfig, run_ptq
from quant.tflite_int8 import TfliteInt8Config
from tests.test_quant_ptq import COUNT, export_tiny


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tflite_models")
    return {"plain": export_tiny(root / "plain.onnx"), "outlier": export_tiny(root / "outlier.onnx", 1000.0),
            "weight_outlier": export_tiny(root / "weight_outlier.onnx", weight_outlier=1000.0)}


def _config(**kw) -> PtqConfig:
    values = dict(format="tflite", calib=f"synthetic:{COUNT}", eval=f"synthetic:{COUNT}", eval_count=COUNT)
    values.update(kw)
    return PtqConfig(**values)


def test_full_integer_student_passes(models, tmp_path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "release" / "student.int8.tflite"
    result = run_ptq(models["plain"], out, _config(tflite=TfliteInt8Config(io_type="int8")), log=lambda _: None)
    assert result.exit_code == 0 and result.artifact == out
    assert result.gate.runtime == "litert"
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["landmarks.layout"] == "NHWC" and sidecar["landmarks.input_size"] == "64"
    interpreter = Interpreter(model_path=str(out))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    tensor_types = {t["dtype"] for t in interpreter.get_tensor_details() if t["name"].startswith("model")}
    assert np.float32 not in tensor_types  # full integer: no float activations inside
    assert result.report.latency_int8_ms > 0 and result.report.latency_fp32_ms > 0


def test_tflite_fallback_denylists_outlier_ops(models, tmp_path) -> None:
    strict = run_ptq(models["outlier"], tmp_path / "s.int8.tflite", _config(fallback=False, latency=False),
                     log=lambda _: None)
    assert strict.exit_code == 1
    assert (tmp_path / "rejected" / "s.int8.tflite").is_file()
    assert (tmp_path / "rejected" / "s.int8.tflite.json").is_file()
    result = run_ptq(models["outlier"], tmp_path / "f.int8.tflite", _config(latency=False), log=lambda _: None)
    assert result.exit_code == 0, result.gate.verdict_line()
    assert 0 < len(result.gate.float_nodes) <= 16
    assert result.report.regression <= 0.02


def test_tflite_auto_granularity_is_smaller_and_widens_on_reject(models, tmp_path) -> None:
    """``auto``: one scale where a layer keeps 30 dB with it; a gate reject re-converts per-channel
    everywhere before floating ops (forced here by accepting one scale at any SQNR)."""
    def ptq(name: str, granularity: str, min_db: float = 30.0):
        config = _config(tflite=TfliteInt8Config(weight_granularity=granularity, min_weight_sqnr_db=min_db),
                         latency=False)
        return run_ptq(models[name], tmp_path / f"{granularity}{min_db:g}" / f"{name}.int8.tflite", config,
                       log=lambda _: None)

    auto, per_channel = ptq("plain", "auto"), ptq("plain", "per-channel")
    assert auto.gate.passed and per_channel.gate.passed
    assert auto.report.bytes_int8 < per_channel.report.bytes_int8
    assert auto.report.settings["weight_granularity"] == "auto"
    guarded = ptq("weight_outlier", "auto")  # the outlier layer keeps its per-channel scales
    assert guarded.exit_code == 0 and [a["verdict"] for a in guarded.report.attempts] == ["pass"]
    widened = ptq("weight_outlier", "auto", min_db=0.0)
    assert widened.exit_code == 0, widened.gate.verdict_line()
    assert [a["verdict"] for a in widened.report.attempts] == ["reject", "pass"]
    assert widened.gate.float_nodes == () and widened.report.settings["weight_granularity"] == "per-channel"


def test_percentile_ranges_narrow_the_converters_min_max(models, tmp_path) -> None:
    """The TFLite model's activation ranges from percentiles of each tensor's values: never wider than
    the converter's min/max, narrower where a rare value stretched them; the model converts and passes."""
    from tensorflow.lite.python import util

    from landmarks.data import open_dataset
    from landmarks.metadata import ArtifactMetadata
    from quant import tflite_int8
    from quant.calibration import CalibrationReader, representative_dataset

    saved_model = tflite_int8.to_saved_model(models["outlier"], tmp_path)
    faces = open_dataset(f"synthetic:{COUNT}", input_size=64, seed=0, synthetic_count=COUNT)
    reader = CalibrationReader(faces, ArtifactMetadata(input_size=64, layout="NHWC"), "input", limit=COUNT)
    calibrated = tflite_int8.calibrate(saved_model, representative_dataset(reader), tmp_path)
    narrowed = tflite_int8.percentile_ranges(calibrated, representative_dataset(reader), 99.0)

    def ranges(content: bytes) -> dict[str, float]:
        graph = util._convert_model_from_bytearray_to_object(content).subgraphs[0]
        return {t.name: float(t.quantization.max[0] - t.quantization.min[0]) for t in graph.tensors
                if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1}

    before, after = ranges(calibrated), ranges(narrowed)
    assert set(before) == set(after) and len(before) >= 5
    assert all(after[name] <= before[name] * (1 + 1e-6) for name in before)
    assert sum(after[name] < 0.99 * before[name] for name in before) >= 1
    result = run_ptq(models["plain"], tmp_path / "p.int8.tflite",
                     _config(latency=False, tflite=TfliteInt8Config(calibration="percentile")), log=lambda _: None)
    assert result.exit_code == 0 and result.report.calibration_method.startswith("percentile")


def test_auto_weight_scales_give_one_scale_where_no_channel_is_lost(models, tmp_path) -> None:
    """``auto``: the converter's per-channel model, then one scale for every layer whose worst channel
    keeps 30 dB with it; the outlier layer stays per channel, the file shrinks, the outputs barely move."""
    from landmarks.data import open_dataset
    from landmarks.metadata import ArtifactMetadata
    from landmarks.runtimes import load_predictor
    from quant import tflite_int8
    from quant.calibration import CalibrationReader, representative_dataset
    from quant.tflite_granularity import narrow_weight_scales

    saved_model = tflite_int8.to_saved_model(models["weight_outlier"], tmp_path)
    faces = open_dataset(f"synthetic:{COUNT}", input_size=64, seed=0, synthetic_count=COUNT)
    meta = ArtifactMetadata(input_size=64, layout="NHWC")
    reader = CalibrationReader(faces, meta, "input", limit=COUNT)
    calibrated = tflite_int8.calibrate(saved_model, representative_dataset(reader), tmp_path)
    per_channel = tflite_int8.convert(calibrated, tmp_path / "pc.tflite",
                                      TfliteInt8Config(weight_granularity="per-channel"))
    narrowed, choices = narrow_weight_scales(per_channel.read_bytes())
    assert len(choices) == 4  # c1, c2, c3, fc
    worst = min(choices, key=lambda c: c.sqnr_per_tensor_db)
    assert worst.per_channel and worst.sqnr_per_tensor_db < 30  # the outlier conv keeps its channel scales
    assert all(c.per_channel == (c.sqnr_per_tensor_db < 30) for c in choices)
    assert sum(not c.per_channel for c in choices) >= 1
    assert len(narrowed) < per_channel.stat().st_size
    (tmp_path / "auto.tflite").write_bytes(narrowed)
    crops = np.stack([faces[i]["image"] for i in range(8)])
    from landmarks.artifact import write_sidecar

    for path in (per_channel, tmp_path / "auto.tflite"):
        write_sidecar(path, meta)
    before = load_predictor(per_channel, num_threads=1).predict(crops).points
    after = load_predictor(tmp_path / "auto.tflite", num_threads=1).predict(crops).points
    assert np.abs(after - before).max() < 0.02  # re-quantized weights, the same model within rounding


def test_zero_points_are_written_once_and_the_model_runs_bit_identical(models, tmp_path) -> None:
    """The per-channel file shares its all-zero int64 zero-point vectors: smaller by at least 8 bytes
    for every repeated channel, the same quantization read back, the same int8 outputs in LiteRT."""
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import util

    from quant.tflite_flatbuffer import read_model

    result = run_ptq(models["plain"], tmp_path / "pc.int8.tflite",
                     _config(tflite=TfliteInt8Config(weight_granularity="per-channel", io_type="int8"),
                             latency=False), log=lambda _: None)
    assert result.exit_code == 0
    shared = result.artifact.read_bytes()
    unshared = bytes(util._convert_model_from_object_to_bytearray(read_model(shared)))  # one vector per tensor
    zero_points = [t.quantization.zeroPoint for t in read_model(shared).subgraphs[0].tensors
                   if t.quantization is not None and t.quantization.zeroPoint is not None]
    per_channel = [z for z in zero_points if len(z) > 1]
    assert len(per_channel) >= 4 and all(not z.any() for z in per_channel)
    distinct = {z.tobytes() for z in zero_points}
    repeated_bytes = 8 * sum(len(z) for z in zero_points) - sum(len(vector) for vector in distinct)
    assert len(unshared) - len(shared) >= 0.9 * repeated_bytes > 0
    unshared_zero_points = [t.quantization.zeroPoint for t in read_model(unshared).subgraphs[0].tensors
                            if t.quantization is not None and t.quantization.zeroPoint is not None]
    assert all(np.array_equal(a, b) for a, b in zip(zero_points, unshared_zero_points, strict=True))
    image = np.random.default_rng(0).integers(-128, 128, (1, 64, 64, 3), dtype=np.int8)
    outputs = []
    for content in (shared, unshared):
        interpreter = Interpreter(model_content=content)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    assert np.array_equal(outputs[0], outputs[1])
