"""Export a briefly trained PFLD student (and a small FAN teacher) and check the artifacts as a user would.

The TFLite conversion is the slow part (TensorFlow import + onnx2tf), so one module-scoped
export feeds every test that inspects its results.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from export import ExportConfig, ParityError, export_checkpoint, export_model
from export.onnx_export import INPUT_NAME, OUTPUT_NAME
from export.parity import ParityFaces, load_parity_faces
from landmarks.data import open_dataset
from landmarks.metadata import ArtifactMetadata
from landmarks.models import Checkpoint, create_model, save_checkpoint
from landmarks.models.checkpoint import file_sha256
from landmarks.runtimes import load_predictor
from landmarks.runtimes.base import preprocess

INPUT_SIZE = 112
PARITY_FACES = 32


def _train_student(steps: int = 30) -> nn.Module:
    """pfld025 after a few Adam steps on synthetic faces: spread-out outputs, not the init's 0.5."""
    torch.manual_seed(0)
    model = create_model("pfld025", input_size=INPUT_SIZE)
    data = open_dataset("synthetic:16", input_size=INPUT_SIZE)
    crops = np.stack([data[i]["image"] for i in range(len(data))])
    target = torch.from_numpy(np.stack([data[i]["points"] for i in range(len(data))]))
    x = torch.from_numpy(preprocess(crops, ArtifactMetadata(input_size=INPUT_SIZE)))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: a second thread only spins, badly on a shared CPU
    try:
        for step in range(steps):
            batch = slice(4 * step % len(x), 4 * step % len(x) + 4)
            optimizer.zero_grad()
            loss = (model.forward_landmarks(x[batch]) - target[batch]).abs().mean()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory) -> Path:
    model = _train_student()
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    metadata = ArtifactMetadata(input_size=INPUT_SIZE, source="pfld025@training")
    save_checkpoint(path, Checkpoint("pfld025", model.arch_config, model.state_dict(), metadata))
    return path


@pytest.fixture(scope="module")
def exported(student_checkpoint, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("export")
    config = ExportConfig(formats=("onnx", "tflite"), fp16=True, parity_count=PARITY_FACES)
    artifacts = export_checkpoint(student_checkpoint, out, config)
    return {(a.format, a.precision): a for a in artifacts}


@pytest.fixture(scope="module")
def faces() -> ParityFaces:
    """Faces the tests compare on: real 300-W test faces when present (as the export used)."""
    return load_parity_faces("auto", ArtifactMetadata(input_size=INPUT_SIZE), PARITY_FACES)


@pytest.fixture(scope="module")
def torch_points(student_checkpoint, faces) -> np.ndarray:
    model = create_model("pfld025", input_size=INPUT_SIZE)
    model.load_state_dict(torch.load(student_checkpoint, weights_only=True)["state_dict"])
    x = torch.from_numpy(preprocess(faces.crops, ArtifactMetadata(input_size=INPUT_SIZE)))
    with torch.no_grad():
        return model.eval().forward_landmarks(x).numpy()


def test_files_written_with_reports(exported, student_checkpoint):
    assert set(exported) == {("onnx", "fp32"), ("onnx", "fp16"), ("tflite", "fp32")}
    for artifact in exported.values():
        assert artifact.path.is_file()
        assert artifact.bytes == artifact.path.stat().st_size
        assert artifact.sha256 == file_sha256(artifact.path)
        assert artifact.passed
        assert artifact.parity.num_faces == PARITY_FACES
        assert artifact.metadata.source == f"pfld025@{file_sha256(student_checkpoint)}"
    assert not list(exported["onnx", "fp32"].path.parent.glob(".*")), "temporary files left behind"
    assert exported["onnx", "fp16"].bytes < 0.6 * exported["onnx", "fp32"].bytes


def test_parity_bounds_and_nme(exported, torch_points):
    onnx_fp32, tflite = exported["onnx", "fp32"].parity, exported["tflite", "fp32"].parity
    assert onnx_fp32.max_abs_diff <= 1e-4
    assert tflite.max_abs_diff <= 1e-3
    assert exported["onnx", "fp16"].parity.max_abs_diff <= 5e-3
    for artifact in exported.values():
        assert abs(artifact.parity.nme_io_diff) < 0.05  # percent points
    assert torch_points.std() > 0.02, "the trained student should not predict a constant"


def test_onnx_graph_is_clean(exported):
    model = onnx.load(str(exported["onnx", "fp32"].path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value, "batch dimension must be dynamic"
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim[1:]]
    assert dims == [68, 2]
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node), "not simplified"


def test_pose_branch_absent(exported):
    """Only the landmark path is exported: its convs and one fc, none of the aux (pose) layers."""
    model = onnx.load(str(exported["onnx", "fp32"].path))
    student = create_model("pfld025", input_size=INPUT_SIZE)
    landmark_convs = sum(
        isinstance(m, nn.Conv2d) for name, m in student.named_modules() if not name.startswith("aux")
    )
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == landmark_convs
    assert ops.count("Gemm") + ops.count("MatMul") == 1
    assert not any(n.op_type == "ReduceMax" for n in model.graph.node)  # the pose head's global max
    shapes = {tuple(init.dims) for init in model.graph.initializer}
    assert (3, 32) not in shapes and (32, 3) not in shapes


def test_metadata_present_and_correct(exported, student_checkpoint):
    source = f"pfld025@{file_sha256(student_checkpoint)}"
    expected = ArtifactMetadata(input_size=INPUT_SIZE, source=source)
    model = onnx.load(str(exported["onnx", "fp32"].path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props == expected.replace(layout="NCHW").to_strings()
    tflite = exported["tflite", "fp32"]
    assert tflite.sidecar == tflite.path.with_name("student.tflite.json")
    sidecar = json.loads(tflite.sidecar.read_text())
    assert sidecar == expected.replace(layout="NHWC").to_strings()


def test_dynamic_batch_in_both_runtimes(exported, faces, torch_points):
    for key in (("onnx", "fp32"), ("tflite", "fp32")):
        predictor = load_predictor(exported[key].path)
        assert predictor.batch_size is None
        points = predictor.predict(faces.crops[:3]).points
        assert points.shape == (3, 68, 2)
        np.testing.assert_allclose(points, torch_points[:3], atol=1e-3)


def _user_preprocess(crops: np.ndarray, keys: dict[str, str]) -> np.ndarray:
    """What a user writes from the metadata keys alone (no project code)."""
    x = crops.astype(np.float32) / 255.0
    if keys["landmarks.color"] == "BGR":
        x = x[..., ::-1]
    mean = np.array(keys["landmarks.mean"].split(","), np.float32)
    std = np.array(keys["landmarks.std"].split(","), np.float32)
    x = (x - mean) / std
    if keys["landmarks.layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def test_user_runs_onnx_from_metadata_only(exported, faces, torch_points):
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported["onnx", "fp32"].path), providers=["CPUExecutionProvider"])
    keys = session.get_modelmeta().custom_metadata_map
    size = int(keys["landmarks.input_size"])
    assert faces.crops.shape[1] == size and keys["landmarks.output"] == "xy_norm"
    out = session.run(None, {session.get_inputs()[0].name: _user_preprocess(faces.crops, keys)})[0]
    points = out.reshape(len(out), int(keys["landmarks.num_points"]), 2)
    np.testing.assert_allclose(points, torch_points, atol=1e-4)


def test_user_runs_tflite_from_sidecar_only(exported, faces, torch_points):
    from ai_edge_litert.interpreter import Interpreter

    path = exported["tflite", "fp32"].path
    keys = json.loads(Path(str(path) + ".json").read_text())
    assert keys["landmarks.layout"] == "NHWC"
    x = _user_preprocess(faces.crops, keys)
    interpreter = Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(inp["shape_signature"]) == [-1, INPUT_SIZE, INPUT_SIZE, 3]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    raw = interpreter.get_tensor(out["index"])
    points = raw.reshape(len(raw), int(keys["landmarks.num_points"]), 2)
    np.testing.assert_allclose(points, torch_points, atol=1e-3)


def test_fan_teacher_onnx(tmp_path):
    """The heatmap teacher exports through the same path, soft-argmax decoding included."""
    torch.manual_seed(0)
    teacher = create_model("fan1", width=32, input_size=128).eval()
    checkpoint = tmp_path / "teacher.pt"
    save_checkpoint(checkpoint, Checkpoint("fan1", teacher.arch_config, teacher.state_dict(),
                                           ArtifactMetadata(input_size=128)))
    out = tmp_path / "out"
    (artifact,) = export_checkpoint(checkpoint, out, ExportConfig(formats=("onnx",), parity_count=8))
    assert artifact.path == out / "teacher.onnx" and artifact.passed
    assert artifact.parity.max_abs_diff <= 1e-4
    model = onnx.load(str(artifact.path))
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["landmarks.input_size"] == "128"
    assert props["landmarks.source"] == f"fan1@{file_sha256(checkpoint)}"


def test_export_model_keeps_given_source(tmp_path):
    """The in-memory API: no checkpoint, the caller's provenance string is kept."""
    model = create_model("pfld025", input_size=64).eval()
    metadata = ArtifactMetadata(input_size=64, source="pfld025@in-memory")
    (artifact,) = export_model(model, metadata, tmp_path, ExportConfig(formats=("onnx",), parity_count=4),
                               name="mem")
    props = {p.key: p.value for p in onnx.load(str(artifact.path)).metadata_props}
    assert props["landmarks.source"] == "pfld025@in-memory" and artifact.passed


def test_parity_failure_writes_nothing(student_checkpoint, tmp_path):
    out = tmp_path / "out"
    config = ExportConfig(formats=("onnx",), fp16=True, parity_bound_fp16=1e-12, parity_count=8)
    with pytest.raises(ParityError) as info:
        export_checkpoint(student_checkpoint, out, config)
    verdicts = {a.precision: a.passed for a in info.value.artifacts}
    assert verdicts == {"fp32": True, "fp16": False}
    assert not out.exists() or not any(out.iterdir())
