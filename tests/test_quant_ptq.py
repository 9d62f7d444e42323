"""ONNX static INT8 end to end with real onnxruntime: pass, reject, fallback, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from landmarks.errors import DataError
from landmarks.metadata import ArtifactMetadata
from quant.ptq import EVAL_SEED, PtqConfig, main, run_ptq

SIZE = 64
COUNT = 32
TRAIN_SEED = 50_000


class TinyStudent(nn.Module):
    """Three random convs and a linear head fitted in closed form (ridge) on synthetic faces.

    ``outlier`` scales one conv2 channel up and conv3's use of it down by the same factor: the
    float function is unchanged, but that channel's range then dwarfs the others, and a
    per-tensor activation scale wipes them out (the fallback's constructed failure).

    ``weight_outlier`` makes one conv2 channel's weights that much larger but keeps it dead
    (always negative before the ReLU): activations are untouched, yet one weight scale for
    conv2 rounds all its other channels to zero (the granularity's constructed failure).
    """

    def __init__(self, outlier: float = 0.0, weight_outlier: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.c2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.c3 = nn.Conv2d(16, 8, 3, 2, 1)
        self.fc = nn.Linear(8 * (SIZE // 8) ** 2, 136)
        if outlier:
            with torch.no_grad():
                self.c2.weight[0] *= outlier
                self.c2.bias[0] = abs(self.c2.bias[0]) * outlier
                self.c3.weight[:, 0] /= outlier
        if weight_outlier:
            with torch.no_grad():
                self.c2.weight[0] = -self.c2.weight[0].abs() * weight_outlier
                self.c2.bias[0] = -1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.c3(torch.relu(self.c2(torch.relu(self.c1(x)))))).flatten(1)

    def forward_landmarks(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(self.features(x))).view(-1, 68, 2)

    @torch.no_grad()
    def fit_head(self, images: np.ndarray, points: np.ndarray, ridge: float = 0.1) -> None:
        from landmarks.runtimes.base import preprocess

        x = torch.from_numpy(preprocess(images, ArtifactMetadata(num_points=68, input_size=SIZE)))
        f = np.concatenate([self.features(x).double().numpy(), np.ones((len(x), 1))], axis=1)
        p = np.clip(points.reshape(len(points), -1), 0.02, 0.98)
        w = np.linalg.solve(f.T @ f + ridge * np.eye(f.shape[1]), f.T @ np.log(p / (1 - p)))
        self.fc.weight.copy_(torch.from_numpy(w[:-1].T))
        self.fc.bias.copy_(torch.from_numpy(w[-1]))


def open_faces(spec: str, seed: int):
    from landmarks.data import open_dataset

    return open_dataset(spec, input_size=SIZE, seed=seed, synthetic_count=COUNT)


def export_tiny(path: Path, outlier: float = 0.0, *, weight_outlier: float = 0.0, with_metadata: bool = True) -> Path:
    """A tiny student fitted on 256 synthetic faces (seeds apart from calibration and eval)."""
    from export.onnx_export import export_onnx

    train = open_faces("synthetic:256", TRAIN_SEED)
    images = np.stack([train[i]["image"] for i in range(len(train))])
    points = np.stack([train[i]["points"] for i in range(len(train))])
    model = TinyStudent(outlier, weight_outlier)
    model.fit_head(images, points)
    export_onnx(model.eval(), ArtifactMetadata(num_points=68, input_size=SIZE, source="tiny@test"), path)
    if not with_metadata:
        proto = onnx.load(str(path))
        del proto.metadata_props[:]
        onnx.save(proto, str(path))
    return path


def small_config(**kw) -> PtqConfig:
    values = dict(calib=f"synthetic:{COUNT}", eval=f"synthetic:{COUNT}", eval_count=COUNT, latency=False)
    values.update(kw)
    return PtqConfig(**values)


def cli(*args: str) -> list[str]:
    return [*args, "--calib", f"synthetic:{COUNT}", "--eval-count", str(COUNT), "--no-latency"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "plain": export_tiny(root / "plain.onnx"),
        "outlier": export_tiny(root / "outlier.onnx", outlier=1000.0),
        "weight_outlier": export_tiny(root / "weight_outlier.onnx", weight_outlier=1000.0),
        "bare": export_tiny(root / "bare.onnx", with_metadata=False),
    }


def _copy(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / src.name
    dst.write_bytes(src.read_bytes())
    return dst


def test_int8_student_passes(models, tmp_path) -> None:
    model = _copy(models["plain"], tmp_path)
    result = run_ptq(model, None, small_config(latency=True), log=lambda _: None)
    assert result.exit_code == 0 and result.gate.passed
    out = tmp_path / "plain.int8.onnx"
    assert result.artifact == out and out.is_file()
    assert not (tmp_path / "rejected").exists()
    proto = onnx.load(str(out))
    assert {n.op_type for n in proto.graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    props = {p.key: p.value for p in proto.metadata_props if p.key.startswith("landmarks.")}
    assert props == ArtifactMetadata(num_points=68, input_size=SIZE, source="tiny@test").to_strings()
    report = json.loads((tmp_path / "plain.int8.report.json").read_text())
    assert report["verdict"] == "pass" and report["calibration_method"] == "minmax"
    assert report["calibration_count"] == COUNT and report["eval_count"] == COUNT
    assert report["bytes_int8"] < report["bytes_fp32"]
    assert report["latency_fp32_ms"] > 0 and report["latency_int8_ms"] > 0
    assert report["settings"]["activation_type"] == "quint8"
    assert "GATE PASS" in (tmp_path / "plain.int8.report.md").read_text()


def _ranges(model: Path, method: str, folder: Path) -> dict[str, tuple[float, float]]:
    """The activation ranges one calibration method finds, per tensor."""
    from quant import ort_int8
    from quant.calibration import CalibrationReader
    from quant.ort_int8 import StaticInt8Config

    config = StaticInt8Config(method=method, calib_count=COUNT)
    folder.mkdir()
    prepared = ort_int8.prepare(model, folder / "prepared.onnx")
    reader = CalibrationReader(open_faces(f"synthetic:{COUNT}", 0), ArtifactMetadata(num_points=68, input_size=SIZE),
                               "input", limit=COUNT)
    cache = json.loads(ort_int8.calibrate(prepared, reader, config, folder / "cache.json").read_text())["data"]
    return {name: (_number(t["lowest"]), _number(t["highest"])) for name, t in cache.items()}


def _number(value) -> float:
    """A range end in ORT's calibration cache: a number, or ``{"data": number or [number]}``."""
    value = value["data"] if isinstance(value, dict) else value
    return float(np.asarray(value).reshape(-1)[0])


def test_calibration_methods_find_their_own_ranges(models, tmp_path) -> None:
    """percentile clips the extremes minmax covers; entropy's thresholds lie within them; the report
    names the method that made the model."""
    from quant.ort_int8 import StaticInt8Config

    model = _copy(models["plain"], tmp_path)
    ranges = {m: _ranges(model, m, tmp_path / m) for m in ("minmax", "percentile", "entropy")}
    common = set(ranges["minmax"]) & set(ranges["percentile"]) & set(ranges["entropy"])
    assert len(common) >= 8  # every activation the three have in common
    width = {m: {t: high - low for t, (low, high) in r.items() if t in common} for m, r in ranges.items()}
    assert all(width["percentile"][t] <= width["minmax"][t] + 1e-6 for t in width["minmax"])
    assert sum(width["percentile"][t] < 0.999 * width["minmax"][t] for t in width["minmax"]) >= 1
    assert all(width["entropy"][t] <= width["minmax"][t] + 1e-6 for t in common)  # thresholds inside the data
    config = small_config(onnx=StaticInt8Config(method="percentile", calib_count=COUNT), fallback=False)
    result = run_ptq(model, None, config, log=lambda _: None)
    assert result.report.calibration_method == "percentile" and result.gate.passed


def _blank_faces(folder: Path, count: int) -> Path:
    """Uniform grey images with valid landmarks: a calibration set that sees no real pixels."""
    import cv2

    from landmarks.data import write_pts

    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(count):
        cv2.imwrite(str(folder / f"blank{i}.png"), np.full((96, 96, 3), 128, np.uint8))
        write_pts(folder / f"blank{i}.pts", rng.uniform(30, 66, (68, 2)))
    return folder


def test_damaged_candidate_rejected(models, tmp_path, capsys) -> None:
    model = _copy(models["plain"], tmp_path / "rel")
    blank = _blank_faces(tmp_path / "blank", 8)
    code = main([str(model), "--calib", str(blank), "--eval-count", str(COUNT), "--no-latency", "--no-fallback"])
    assert code == 1
    assert "GATE REJECT" in capsys.readouterr().out
    assert not (tmp_path / "rel" / "plain.int8.onnx").exists()
    assert (tmp_path / "rel" / "rejected" / "plain.int8.onnx").is_file()
    report = json.loads((tmp_path / "rel" / "rejected" / "plain.int8.report.json").read_text())
    assert report["verdict"] == "reject"


def test_fallback_turns_reject_into_pass(models, tmp_path) -> None:
    model = _copy(models["outlier"], tmp_path)
    strict = run_ptq(model, tmp_path / "strict.int8.onnx", small_config(fallback=False), log=lambda _: None)
    assert strict.exit_code == 1 and strict.artifact.parent.name == "rejected"
    logs: list[str] = []
    result = run_ptq(model, None, small_config(), log=logs.append)
    assert result.exit_code == 0, logs
    assert {"/c2/Conv", "/c3/Conv"} <= set(result.gate.float_nodes)
    assert len(result.report.attempts) >= 2 and result.report.attempts[0]["verdict"] == "reject"
    proto = onnx.load(str(result.artifact))
    assert "Conv" in {n.op_type for n in proto.graph.node}
    assert result.report.regression <= 0.02


def test_auto_granularity_is_smaller_and_guards_outlier_weights(models, tmp_path) -> None:
    from quant.ort_int8 import StaticInt8Config

    def ptq(name: str, folder: str, **onnx_kw):
        config = small_config(onnx=StaticInt8Config(calib_count=COUNT, **onnx_kw), fallback=False)
        return run_ptq(_copy(models[name], tmp_path / folder), None, config, log=lambda _: None)

    auto, per_channel = ptq("plain", "auto"), ptq("plain", "pc", weight_granularity="per-channel")
    assert auto.gate.passed and per_channel.gate.passed
    assert auto.report.bytes_int8 < per_channel.report.bytes_int8
    assert auto.report.settings["per_tensor_weights"] > 0 and per_channel.report.settings["per_tensor_weights"] == 0
    # one scale for the outlier conv zeroes its live channels: rejected; auto sees it in the weights
    assert not ptq("weight_outlier", "pt", weight_granularity="per-tensor").gate.passed
    guarded = ptq("weight_outlier", "guarded")
    assert guarded.gate.passed and "/c2/Conv" in guarded.report.settings["per_channel_weights"]


def _weight_ranges(path: Path) -> dict[str, int]:
    """The largest |q| of each INT8 weight, keyed per-tensor or per-channel by its scale's rank."""
    from onnx import numpy_helper

    model = onnx.load(str(path))
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    ranges: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and tensors.get(node.input[0], np.zeros(0)).dtype == np.int8:
            kind = "per-channel" if tensors[node.input[1]].ndim else "per-tensor"
            ranges[kind] = max(ranges.get(kind, 0), int(np.abs(tensors[node.input[0]].astype(np.int32)).max()))
    return ranges


def test_reduce_range_stores_7_bit_weights_per_tensor_and_per_channel(models, tmp_path) -> None:
    """--reduce-range: every weight within [-64, 64], the per-channel ones of the auto granularity too
    (AVX2's 16-bit pair sums cannot saturate); without it the full 8-bit range is used."""
    wide = _copy(models["weight_outlier"], tmp_path / "wide")
    assert main(cli(str(wide), "--no-fallback")) == 0
    narrow = _copy(models["weight_outlier"], tmp_path / "narrow")
    assert main(cli(str(narrow), "--no-fallback", "--reduce-range")) == 0
    full, reduced = (_weight_ranges(p.with_suffix(".int8.onnx")) for p in (wide, narrow))
    assert set(full) == set(reduced) == {"per-tensor", "per-channel"}
    assert all(value == 127 for value in full.values())
    assert all(60 <= value <= 64 for value in reduced.values())


def test_auto_granularity_widens_before_floating_nodes(models, tmp_path) -> None:
    """An ``auto`` model that fails the gate is retried per-channel everywhere, with no float node."""
    from quant.ort_int8 import StaticInt8Config

    logs: list[str] = []
    config = small_config(onnx=StaticInt8Config(calib_count=COUNT, min_weight_sqnr_db=0.0))
    result = run_ptq(_copy(models["weight_outlier"], tmp_path), None, config, log=logs.append)
    assert result.exit_code == 0, logs
    assert [a["verdict"] for a in result.report.attempts] == ["reject", "pass"]
    assert result.gate.float_nodes == () and result.report.settings["weight_granularity"] == "per-channel"
    assert any("per-channel" in line for line in logs)


def test_fallback_respects_bound(models, tmp_path) -> None:
    result = run_ptq(_copy(models["outlier"], tmp_path), None, small_config(max_float_nodes=1),
                     log=lambda _: None)
    assert result.exit_code == 1 and result.gate.float_nodes == ()


def test_metadata_from_flags(models, tmp_path) -> None:
    model = _copy(models["bare"], tmp_path)
    assert main(cli(str(model), "--input-size", str(SIZE), "--crop-scale", "1.3")) == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "bare.int8.onnx")).metadata_props}
    assert props["landmarks.input_size"] == str(SIZE) and props["landmarks.crop_scale"] == "1.3"


def test_a_model_without_metadata_and_a_static_input_needs_no_flags(models, tmp_path) -> None:
    """Input size and layout are read off a static input shape [1, 3, 64, 64]; the rest are the defaults."""
    model = _copy(models["bare"], tmp_path)
    assert main(cli(str(model))) == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "bare.int8.onnx")).metadata_props}
    assert props["landmarks.input_size"] == str(SIZE) and props["landmarks.layout"] == "NCHW"


def _bad_inputs(models, tmp: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp / "notes.onnx"
    text.write_text("not a model")
    broken = onnx.load(str(models["plain"]))
    broken.graph.node[0].input[0] = "missing_tensor"
    onnx.save(broken, str(tmp / "broken.onnx"))
    (tmp / "empty").mkdir()
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    (corrupt / "a.jpg").write_bytes(b"not a jpeg")
    (corrupt / "a.pts").write_text("version: 1\nn_points: 68\n{\n" + "1 1\n" * 68 + "}\n")
    plain = str(models["plain"])
    return {
        "not a file": ([str(tmp / "nope.onnx")], "not a file"),
        "a folder": ([str(tmp)], "not a file"),
        "not onnx": ([str(text)], "not an ONNX model"),
        "invalid graph": ([str(tmp / "broken.onnx")], "invalid ONNX graph"),
        "empty calib": ([plain, "--calib", str(tmp / "empty")], "empty dataset folder"),
        "unreadable calib": ([plain, "--calib", str(corrupt)], "a.jpg: cannot decode image"),
        "overlap": ([plain, "--calib", "synthetic:8", "--eval", "synthetic:8"], "share"),
        "threshold": ([plain, "--max-regression", "1.5"], "max_regression"),
        "negative threshold": ([plain, "--max-regression", "-0.1"], "max_regression"),
    }


def test_bad_inputs_exit_2_and_write_nothing(models, tmp_path, capsys, monkeypatch) -> None:
    import quant.ptq as ptq

    # "overlap": make the default eval seed collide with calibration to provoke the check
    monkeypatch.setattr(ptq, "EVAL_SEED", 0)
    cases = _bad_inputs(models, tmp_path)
    before = {p for p in tmp_path.rglob("*")} | {p for p in models["plain"].parent.rglob("*")}
    for name, (args, message) in cases.items():
        argv = [*args, "--no-latency"] if name == "overlap" else [*args, "--eval-count", "8", "--no-latency"]
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2, name
        assert len(err) == 1 and err[0].startswith("python -m quant.ptq: error:"), (name, err)
        assert message in err[0], (name, err)
    after = {p for p in tmp_path.rglob("*")} | {p for p in models["plain"].parent.rglob("*")}
    assert after == before


@pytest.mark.parametrize("below", [False, True], ids=["folder", "below-file"])
def test_out_that_cannot_be_a_file_fails_before_calibrating(models, tmp_path, capsys, below: bool) -> None:
    taken = tmp_path / "taken.onnx"
    taken.write_bytes(b"occupied")
    folder = tmp_path / "folder.int8.onnx"
    folder.mkdir()
    out = taken / "student.int8.onnx" if below else folder
    with pytest.raises(SystemExit) as exc:
        main([str(models["plain"]), "--out", str(out), "--eval-count", "8", "--no-latency"])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1 and err[0].startswith("python -m quant.ptq: error: --out"), err
    assert "GATE" not in captured.out and "GATE" not in captured.err  # refused before any work
    assert taken.read_bytes() == b"occupied"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["folder.int8.onnx", "taken.onnx"]


def test_overlap_refused_in_library(tmp_path, models) -> None:
    calib = open_faces("synthetic:8", 0)
    with pytest.raises(DataError, match="share 8 face"):
        run_ptq(models["plain"], tmp_path / "x.int8.onnx", small_config(), calib_dataset=calib,
                eval_dataset=open_faces("synthetic:8", 0), log=lambda _: None)
    assert not list(tmp_path.iterdir())
    assert EVAL_SEED > COUNT


def test_a_broken_candidate_is_the_tools_error_naming_the_step(models, tmp_path, capsys, monkeypatch) -> None:
    """A candidate the tool itself broke: exit 3 (not 2: the user's model is fine; not 1: no verdict),
    one line naming the step, the traceback beside --out, and nothing placed."""
    from quant.onnx_backend import OnnxInt8Backend

    build = OnnxInt8Backend.build

    def corrupting_build(self, float_nodes, **kw):
        path = build(self, float_nodes, **kw)
        path.write_bytes(b"\x08\x07truncated protobuf")
        return path

    monkeypatch.setattr(OnnxInt8Backend, "build", corrupting_build)
    model = _copy(models["plain"], tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(cli(str(model)))
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 3
    assert err[-1].startswith("python -m quant.ptq: internal error in checking the INT8 candidate candidate0.onnx:")
    assert "invalid ONNX graph" in err[-1] and f"(traceback: {tmp_path / 'error.log'})" in err[-1]
    assert "Traceback (most recent call last)" in (tmp_path / "error.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["error.log", "plain.onnx"]
