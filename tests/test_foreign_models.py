"""Models this project did not make (tests/foreign.py): described by flags, evaluated exactly as their own
torch model scores, quantized to INT8 ONNX and TFLite with a verdict, and every bad description refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from landmarks.runtimes import load_predictor
from tests.foreign import FIXTURES, Foreign, build, synthetic_faces, torch_reference, write_faces

IDS = [spec.name for spec in FIXTURES]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("foreign")
    faces = write_faces(root / "faces", 32, seed=9_000_000)
    calib = write_faces(root / "calib", 24, seed=8_000_000)
    models = {spec.name: build(spec, root / "models") for spec in FIXTURES}
    return {"root": root, "faces": faces, "calib": calib, "models": models}


def _copy(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / path.name).write_bytes(path.read_bytes())
    return folder / path.name


@pytest.mark.parametrize("spec", FIXTURES, ids=IDS)
def test_eval_gives_the_torch_models_nme(spec: Foreign, world, tmp_path):
    from landmarks.eval import main

    path, model = world["models"][spec.name]
    crops, gt = synthetic_faces(str(world["faces"]), spec.size, seed=0, crop_scale=spec.crop_scale)
    expected = torch_reference(spec, model, crops, gt).nme_io
    assert main([str(path), str(world["faces"]), "--out", str(tmp_path / "eval"), "--no-progress",
                 *spec.flags()]) == 0
    measured = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["nme_io"]
    assert abs(measured - expected) < 0.01, (measured, expected)
    assert measured < 30.0  # the fitted model is fed right: a wrong channel order costs ~10 points here


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("spec", FIXTURES, ids=IDS)
def test_ptq_makes_an_int8_model_that_loads_and_gets_a_verdict(spec: Foreign, fmt: str, world, tmp_path):
    from quant.ptq import main

    model = _copy(world["models"][spec.name][0], tmp_path)
    out = tmp_path / f"{spec.name}.int8.{fmt}"
    code = main([str(model), "--calib", str(world["calib"]), "--eval", str(world["faces"]), "--out", str(out),
                 "--no-latency", *spec.flags()])
    assert code in (0, 1)
    placed = out if code == 0 else tmp_path / "rejected" / out.name
    report = json.loads(placed.with_suffix(".report.json").read_text())
    assert report["verdict"] == ("pass" if code == 0 else "reject")
    int8 = load_predictor(placed, num_threads=1)  # no flags: the INT8 model describes itself
    assert int8.metadata.input_size == spec.size and int8.metadata.layout == ("NHWC" if fmt == "tflite"
                                                                             else spec.layout)
    assert int8.metadata.color == spec.color and int8.metadata.crop_scale == pytest.approx(spec.crop_scale)
    crops, _ = synthetic_faces(str(world["faces"]), spec.size, seed=0, crop_scale=spec.crop_scale)
    points = int8.predict(crops[:4]).points
    assert points.shape == (4, 68, 2) and np.isfinite(points).all()
    if fmt == "onnx":
        ops = {n.op_type for n in onnx.load(str(placed)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops or "QLinearConv" in ops


def test_describe_writes_the_flags_into_a_copy_that_needs_none(world, tmp_path):
    from export.describe import main as describe
    from landmarks.eval import main as evaluate

    spec = FIXTURES[0]
    path = world["models"][spec.name][0]
    described = tmp_path / "described.onnx"
    assert describe([str(path), "--out", str(described), *spec.flags()]) == 0
    props = {p.key: p.value for p in onnx.load(str(described)).metadata_props}
    assert props["landmarks.points_slice"] == "0:136" and props["landmarks.mean"] == "0,0,0"
    assert not onnx.load(str(path)).metadata_props  # the model itself is untouched
    assert evaluate([str(described), str(world["faces"]), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert evaluate([str(path), str(world["faces"]), "--out", str(tmp_path / "b"), "--no-progress",
                     *spec.flags()]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text())["metrics"]["nme_io"] for d in "ab")
    assert a == b


def test_the_crop_scale_sweep_finds_the_training_scale(world, capsys):
    from landmarks.eval import main

    spec = FIXTURES[0]  # fitted at crop scale 1.2
    flags = [f for f in spec.flags()]
    flags[flags.index("--crop-scale") + 1] = "1.4"  # described with a wrong scale
    assert main([str(world["models"][spec.name][0]), str(world["faces"]), "--sweep-crop-scale", "1.0:1.6:0.1",
                 "--no-progress", *flags]) == 0
    out = capsys.readouterr().out
    assert "lowest nme_io at crop scale 1.2;" in out and "described with 1.4" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [float(r[0]) for r in rows] == [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]


def _two_inputs(path: Path) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"]), helper.make_node("Flatten", ["c"], ["out"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("a", "b")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 192])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _newer_opset(source: Path, path: Path) -> Path:
    model = onnx.load(str(source))
    model.opset_import[0].version = 99
    onnx.save(model, str(path))
    return path


BAD = {
    "output holds fewer than 2N values": (2, ["--num-points", "98"], "does not hold 98 (x, y) points"),
    "slice outside the output": (0, ["--points-slice", "10:146"], "points slice 10:146 lies outside"),
    "two image inputs": ("two", [], "2 inputs"),
    "dynamic size without --input-size": (2, ["--input-size", None], "give --input-size"),
    "newer opset": ("newer", [], "opset 99 is newer"),
    "a flag that contradicts the metadata": ("described", ["--color", "BGR"], "contradicts the model's own metadata"),
    "a name that is no output": (0, ["--output", "pose"], "no output named 'pose'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_descriptions_are_one_line_exit_2_and_write_nothing(case: str, world, tmp_path, capsys):
    from export.describe import main as describe
    from quant.ptq import main

    which, changes, message = BAD[case]
    spec = FIXTURES[which] if isinstance(which, int) else FIXTURES[0]
    flags = list(spec.flags())
    for i in range(0, len(changes), 2):
        key, value = changes[i], changes[i + 1]
        if key in flags:
            at = flags.index(key)
            flags[at:at + 2] = [] if value is None else [key, value]
        elif value is not None:
            flags += [key, value]
    folder = tmp_path / "work"
    model = _copy(world["models"][spec.name][0], folder)
    if which == "two":
        model = _two_inputs(folder / "two.onnx")
    elif which == "newer":
        model = _newer_opset(model, folder / "newer.onnx")
    elif which == "described":
        described = folder / "described.onnx"
        assert describe([str(model), "--out", str(described), *spec.flags()]) == 0
        model, flags = described, changes
    capsys.readouterr()
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(SystemExit) as exc:
        main([str(model), "--calib", str(world["calib"]), "--eval", str(world["faces"]), "--no-latency", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2, err
    assert len(err) == 1 and err[0].startswith("python -m quant.ptq: error: ") and message in err[0], err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_face_landmarker_and_predict_take_the_same_description(world, two_faces, tmp_path, capsys):
    from landmarks.api import FaceLandmarker
    from landmarks.data import read_image
    from landmarks.describe import ModelDescription
    from landmarks.predict import main as predict

    spec = FIXTURES[1]  # BGR, (x - 127) / 127, NHWC, pixel outputs
    path = world["models"][spec.name][0]
    description = ModelDescription(input_size=spec.size, layout="NHWC", color="BGR", mean=(127 / 255,) * 3,
                                   std=(127 / 255,) * 3, output="xy_pixels")
    landmarker = FaceLandmarker(path, description=description)
    meta = landmarker.predictor.metadata
    assert (meta.color, meta.layout, meta.output) == ("BGR", "NHWC", "xy_pixels")
    faces = landmarker.detect(read_image(two_faces))
    assert len(faces) == 2
    assert predict(["--model", str(path), str(two_faces), *spec.flags()]) == 0
    printed = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(printed["faces"][0]["points"], faces[0].points, atol=1e-3)
