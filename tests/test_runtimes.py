"""Runtimes: one preprocessing, metadata read from the artifact, torch / ONNX / LiteRT agree."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from landmarks.errors import DataError, ModelError, UnsupportedBackendError
from landmarks.models.checkpoint import Checkpoint, save_checkpoint
from landmarks.models.registry import create_model, register_model
from landmarks.runtimes import LandmarkResult, load_predictor, preprocess
from landmarks.runtimes.onnx_runtime import OnnxPredictor
from landmarks.runtimes.torch_runtime import TorchPredictor
from tests.helpers import TinyLandmarkNet, export_onnx, make_tflite, random_crops, tiny_metadata

SIZE = 32
ODD = {"color": "BGR", "mean": (0.2, 0.4, 0.6), "std": (0.25, 0.5, 0.75)}  # catches channel mix-ups


@pytest.fixture(scope="module")
def model() -> TinyLandmarkNet:
    return TinyLandmarkNet()


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return random_crops(5, SIZE, seed=3)


@pytest.fixture(scope="module")
def reference(model, crops) -> np.ndarray:
    return TorchPredictor(model, tiny_metadata(**ODD)).predict(crops).points


# --- preprocessing ---------------------------------------------------------------------------


def test_preprocess_nchw_rgb_scales_and_normalizes():
    crops = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    crops[..., 0], crops[..., 1], crops[..., 2] = 255, 51, 0  # R = 1.0, G = 0.2, B = 0
    x = preprocess(crops, tiny_metadata())  # mean = std = 0.5: (v - 0.5) / 0.5
    assert x.shape == (2, 3, SIZE, SIZE) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, :, 5, 7], [[1.0, -0.6, -1.0]] * 2, atol=1e-6)


def test_preprocess_bgr_nhwc_applies_mean_std_in_model_channel_order():
    crops = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    crops[..., 0], crops[..., 1], crops[..., 2] = 255, 51, 0
    x = preprocess(crops, tiny_metadata(layout="NHWC", **ODD))
    assert x.shape == (1, SIZE, SIZE, 3)
    # BGR order: (B, G, R) = (0, 0.2, 1.0); ((0-0.2)/0.25, (0.2-0.4)/0.5, (1.0-0.6)/0.75)
    np.testing.assert_allclose(x[0, 3, 3], [-0.8, -0.4, 0.4 / 0.75], atol=1e-6)


def test_crop_of_wrong_size_is_a_clear_error(model):
    predictor = TorchPredictor(model, tiny_metadata())
    with pytest.raises(DataError, match=r"input_size is 32.*\[2, 40, 40, 3\]"):
        predictor.predict(np.zeros((2, 40, 40, 3), np.uint8))
    with pytest.raises(DataError, match="uint8"):
        predictor.predict(np.zeros((2, SIZE, SIZE, 3), np.float32))


def test_single_crop_and_empty_batch(model, crops):
    predictor = TorchPredictor(model, tiny_metadata())
    assert predictor.predict(crops[0]).points.shape == (1, 68, 2)
    assert predictor.predict(crops[:0]).points.shape == (0, 68, 2)


# --- torch ---------------------------------------------------------------------------------


def test_torch_predictor_matches_module_and_restores_mode(model, crops):
    meta = tiny_metadata()
    result = TorchPredictor(model, meta).predict(crops)
    assert isinstance(result, LandmarkResult) and result.points.dtype == np.float32
    expected = model.forward_landmarks(torch.from_numpy(preprocess(crops, meta))).detach().numpy()
    np.testing.assert_allclose(result.points, expected, atol=1e-6)
    model.train()
    TorchPredictor(model, meta).predict(crops)
    assert model.training
    model.eval()


def test_batched_loop_matches_single_batch(model, crops, reference):
    predictor = TorchPredictor(model, tiny_metadata(**ODD))
    predictor.batch_size = 2  # 5 crops -> batches of 2, 2, 1
    np.testing.assert_allclose(predictor.predict(crops).points, reference, atol=1e-6)


@register_model
def tiny_runtime_test_net(**kwargs) -> TinyLandmarkNet:
    return TinyLandmarkNet(**kwargs)


def test_checkpoint_loads_with_its_metadata(tmp_path, model, crops, reference):
    meta = tiny_metadata(**ODD)
    net = create_model("tiny_runtime_test_net")
    net.load_state_dict(model.state_dict())
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, Checkpoint("tiny_runtime_test_net", {}, net.state_dict(), meta))
    predictor = load_predictor(path)
    assert isinstance(predictor, TorchPredictor) and predictor.runtime == "torch"
    assert predictor.metadata == meta and predictor.name == "tiny"
    np.testing.assert_allclose(predictor.predict(crops).points, reference, atol=1e-6)


# --- onnxruntime ---------------------------------------------------------------------------


def test_onnx_matches_torch_and_reads_metadata_from_the_file(tmp_path, model, crops, reference):
    meta = tiny_metadata(**ODD)
    path = export_onnx(model, tmp_path / "tiny.onnx", meta)
    predictor = load_predictor(path, num_threads=1)
    assert isinstance(predictor, OnnxPredictor) and predictor.runtime == "onnxruntime"
    assert predictor.metadata == meta
    np.testing.assert_allclose(predictor.predict(crops).points, reference, atol=1e-4)


def test_a_user_with_only_onnxruntime_and_the_keys_gets_the_same_points(tmp_path, model, crops):
    """docs/DESIGN.md, "Artifact metadata": the artifact's keys alone say how to feed it (no project code here)."""
    import onnxruntime as ort

    path = export_onnx(model, tmp_path / "tiny.onnx", tiny_metadata(**ODD))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    keys = session.get_modelmeta().custom_metadata_map
    size, points = int(keys["landmarks.input_size"]), int(keys["landmarks.num_points"])
    mean = np.array([float(v) for v in keys["landmarks.mean"].split(",")], np.float32)
    std = np.array([float(v) for v in keys["landmarks.std"].split(",")], np.float32)
    x = crops.astype(np.float32) / 255.0
    if keys["landmarks.color"] == "BGR":
        x = x[..., ::-1]
    x = (x - mean) / std
    if keys["landmarks.layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    assert crops.shape[1] == size and keys["landmarks.output"] == "xy_norm"
    by_hand = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x)})[0]
    by_hand = by_hand.reshape(len(crops), points, 2)
    np.testing.assert_allclose(OnnxPredictor(path).predict(crops).points, by_hand, atol=1e-6)


def test_onnx_nhwc_input_and_flat_output(tmp_path, model, crops, reference):
    meta = tiny_metadata(layout="NHWC", **ODD)
    path = export_onnx(model, tmp_path / "nhwc.onnx", meta, flat=True)
    predictor = OnnxPredictor(path)
    assert predictor.metadata.layout == "NHWC"
    np.testing.assert_allclose(predictor.predict(crops).points, reference, atol=1e-4)


def test_onnx_without_metadata_needs_an_explicit_override(tmp_path, model, crops, reference):
    path = export_onnx(model, tmp_path / "bare.onnx", None)
    with pytest.raises(ModelError, match=r"missing metadata key 'landmarks\.num_points'"):
        load_predictor(path)
    predictor = load_predictor(path, metadata=tiny_metadata(**ODD))
    np.testing.assert_allclose(predictor.predict(crops).points, reference, atol=1e-4)


def test_onnx_metadata_that_contradicts_the_input_shape_is_rejected(tmp_path, model):
    path = export_onnx(model, tmp_path / "tiny.onnx", tiny_metadata())
    with pytest.raises(ModelError, match="does not match its metadata"):
        OnnxPredictor(path, metadata=tiny_metadata(layout="NHWC"))


def test_corrupt_onnx_is_one_model_error_line(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelError, match="not a loadable ONNX model") as info:
        load_predictor(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["missing.onnx", "missing.tflite", "missing.pt", "model.h5", "model"])
def test_missing_file_or_unknown_suffix_is_a_model_error(tmp_path, name):
    if name in ("model.h5", "model"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ModelError):
        load_predictor(tmp_path / name)


def test_bare_module_needs_metadata(model, crops, reference):
    with pytest.raises(ModelError, match="metadata="):
        load_predictor(model)
    predictor = load_predictor(model, metadata=tiny_metadata(**ODD))
    np.testing.assert_allclose(predictor.predict(crops).points, reference, atol=1e-6)


def test_importing_runtimes_pulls_in_no_backend():
    code = (
        "import sys, landmarks.runtimes, landmarks.evaluate; "
        "print(sorted(m for m in ('onnxruntime', 'tensorflow', 'ai_edge_litert') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- LiteRT --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory, model):
    """Float and full-integer TFLite versions of ``model`` (one TensorFlow import for all)."""
    folder = tmp_path_factory.mktemp("tflite")
    meta = tiny_metadata(layout="NHWC", **ODD)
    calibration = preprocess(random_crops(32, SIZE, seed=11), meta)
    return {
        "float": make_tflite(model, folder / "tiny.tflite", meta),
        "int8": make_tflite(model, folder / "tiny_int8.tflite", meta, int8=True, calibration=calibration),
    }


def test_tflite_matches_torch(tflite_models, crops, reference):
    from landmarks.runtimes.tflite_runtime import TFLitePredictor

    predictor = load_predictor(tflite_models["float"], num_threads=1)
    assert isinstance(predictor, TFLitePredictor) and predictor.runtime == "litert"
    assert predictor.metadata == tiny_metadata(layout="NHWC", **ODD)
    np.testing.assert_allclose(predictor.predict(crops).points, reference, atol=1e-4)
    np.testing.assert_allclose(predictor.predict(crops[:2]).points, reference[:2], atol=1e-4)  # resized


def test_full_integer_tflite_runs_close_to_float(tflite_models, crops, reference):
    predictor = load_predictor(tflite_models["int8"])
    assert predictor.interpreter.get_input_details()[0]["dtype"] == np.int8
    assert predictor.interpreter.get_output_details()[0]["dtype"] == np.int8
    points = predictor.predict(crops).points
    assert points.dtype == np.float32 and points.shape == reference.shape
    spread = reference.std()  # outputs vary far more than the quantization error
    assert spread > 0.1
    assert np.abs(points - reference).max() < 0.04


def test_tflite_without_sidecar_wrong_layout_or_corrupt_is_a_model_error(tmp_path, tflite_models):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(tflite_models["float"].read_bytes())
    with pytest.raises(ModelError, match="no metadata sidecar"):
        load_predictor(bare)
    with pytest.raises(ModelError, match="does not match its metadata"):
        load_predictor(bare, metadata=tiny_metadata(layout="NCHW"))
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        load_predictor(corrupt, metadata=tiny_metadata(layout="NHWC"))


def test_tflite_without_any_interpreter_is_unsupported_backend(monkeypatch):
    from landmarks.runtimes import tflite_runtime

    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tensorflow", "tensorflow.lite"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UnsupportedBackendError, match="ai-edge-litert"):
        tflite_runtime.interpreter_class()
