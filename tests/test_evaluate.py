"""evaluate(): a known synthetic case reproduces hand-computed NMEs; the report and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from landmarks.errors import ConfigError, DataError
from landmarks.evaluate import EvalReport, evaluate
from landmarks.metadata import ArtifactMetadata
from landmarks.plots import plot_ced, plot_samples
from landmarks.runtimes import load_predictor
from landmarks.runtimes.base import Predictor
from tests.helpers import TinyLandmarkNet, export_onnx, tiny_metadata, write_pts_dataset

SIZE = 32
PNG = b"\x89PNG\r\n\x1a\n"


class OffsetPredictor(Predictor):
    """Returns each crop's ground truth moved by ``offset`` (xy_norm); doubled on odd images.

    It recognises a crop by its bytes, so it works through evaluate()'s own dataset and batching.
    """

    runtime = "test"

    def __init__(self, data, metadata: ArtifactMetadata, offset: tuple[float, float]) -> None:
        super().__init__(metadata, "offset")
        from landmarks.data import open_dataset

        dataset = open_dataset(str(data), input_size=metadata.input_size, crop_scale=metadata.crop_scale)
        self.truth = {}
        for i in range(len(dataset)):
            item = dataset[i]
            self.truth[item["image"].tobytes()] = item["points"] + np.asarray(offset) * (1 + i % 2)

    def _run(self, inputs: np.ndarray) -> np.ndarray:
        raise AssertionError("predict() is overridden")

    def predict(self, crops: np.ndarray):
        from landmarks.runtimes.base import LandmarkResult

        return LandmarkResult(np.stack([self.truth[c.tobytes()] for c in crops]).astype(np.float32))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_pts_dataset(tmp_path_factory.mktemp("pts") / "faces", count=6)


def test_known_offset_reproduces_hand_computed_nme(data):
    # Every face: landmark box 100 x 80 (times its scale), outer eye corners 60 apart.
    # Crop side = 1.25 * max(w, h) = 125 image px.  An offset of (0.018, 0.024) of the crop side
    # is 0.03 * 125 = 3.75 image px per point (0.03 * 32 = 0.96 crop px); odd images get twice it.
    #   nme_io  = 3.75 / 60 = 0.0625 (even), 0.125 (odd)  -> mean 9.375 %
    #   nme_box = 3.75 / sqrt(100 * 80) = 0.0419263 (even), 0.0838525 (odd)
    #   nme_img = 0.96 / 32 = 0.03 (even), 0.06 (odd)      -> mean 4.5 %
    #   fr@0.08 = fr@0.10 = 3/6 (the odd ones)
    #   auc@0.08 = mean(0.08 - 0.0625, 0) / 0.08 = 0.0175 / 2 / 0.08 = 0.109375
    #   auc@0.10 = (0.10 - 0.0625) / 2 / 0.10 = 0.1875
    meta = tiny_metadata()
    report = evaluate(OffsetPredictor(data, meta, (0.018, 0.024)), data, batch_size=4, progress=False)
    m = report.metrics
    assert m.num_images == 6 and len(report.keys) == 6
    np.testing.assert_allclose(report.per_image["nme_io"], [0.0625, 0.125] * 3, rtol=1e-5)
    assert m.nme_io == pytest.approx(9.375, rel=1e-5)
    box = 3.75 / np.sqrt(8000)
    np.testing.assert_allclose(report.per_image["nme_box"], [box, 2 * box] * 3, rtol=1e-5)
    assert m.nme_img == pytest.approx(4.5, rel=1e-5)
    assert (m.fr_008, m.fr_010) == (0.5, 0.5)
    assert m.auc_008 == pytest.approx(0.109375, rel=1e-4)
    assert m.auc_010 == pytest.approx(0.1875, rel=1e-4)


def test_perfect_predictor_scores_zero(data):
    report = evaluate(OffsetPredictor(data, tiny_metadata(), (0.0, 0.0)), data, progress=False)
    assert report.metrics.nme_io == pytest.approx(0.0, abs=1e-4)
    assert report.metrics.fr_008 == 0.0 and report.metrics.auc_008 == pytest.approx(1.0, abs=1e-5)


def test_report_contents_and_json(data):
    predictor = load_predictor(TinyLandmarkNet(), metadata=tiny_metadata())
    report = evaluate(predictor, data, batch_size=4, limit=5, progress=False)
    assert isinstance(report, EvalReport)
    assert report.keys == [f"face_{i:03d}.png" for i in range(5)]
    assert report.pred.shape == report.gt.shape == (5, 68, 2)
    assert report.images.shape == (5, SIZE, SIZE, 3) and report.images.dtype == np.uint8
    assert (report.model_name, report.runtime, report.dataset) == ("TinyLandmarkNet", "torch", str(data))
    np.testing.assert_allclose(report.pred, predictor.predict(report.images).points, atol=1e-6)
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["metrics"]["num_images"] == 5
    assert set(doc["per_image"]) == set(report.keys)
    assert doc["per_image"]["face_002.png"]["nme_io"] == pytest.approx(report.per_image["nme_io"][2])
    assert "36-45" in doc["normalizers"]["nme_io"]
    assert doc["metadata"]["landmarks.input_size"] == str(SIZE)


def test_batch_size_does_not_change_results(data):
    predictor = load_predictor(TinyLandmarkNet(), metadata=tiny_metadata())
    one = evaluate(predictor, data, batch_size=1, progress=False)
    many = evaluate(predictor, data, batch_size=64, progress=False)
    np.testing.assert_allclose(one.pred, many.pred, atol=1e-6)
    assert one.metrics.nme_io == pytest.approx(many.metrics.nme_io, rel=1e-6)


def test_onnx_and_torch_score_the_same(tmp_path, data):
    model, meta = TinyLandmarkNet(), tiny_metadata()
    onnx_path = export_onnx(model, tmp_path / "m.onnx", meta)
    onnx_report = evaluate(load_predictor(onnx_path), data, progress=False)
    torch_report = evaluate(load_predictor(model, metadata=meta), data, progress=False)
    assert onnx_report.runtime == "onnxruntime"
    assert onnx_report.metrics.nme_io == pytest.approx(torch_report.metrics.nme_io, rel=1e-4)


def test_each_predictor_gets_its_own_crop_size(data):
    small = evaluate(load_predictor(TinyLandmarkNet(), metadata=tiny_metadata()), data, progress=False)
    large = evaluate(
        load_predictor(TinyLandmarkNet(), metadata=tiny_metadata(input_size=48)), data, progress=False
    )
    assert small.images.shape[1] == SIZE and large.images.shape[1] == 48
    np.testing.assert_allclose(small.gt, large.gt, atol=1e-5)  # same faces, same xy_norm


def test_synthetic_spec_is_evaluated(data):
    predictor = load_predictor(TinyLandmarkNet(), metadata=tiny_metadata())
    report = evaluate(predictor, "synthetic:3", progress=False)
    assert report.metrics.num_images == 3 and report.dataset == "synthetic:3"


def test_point_count_mismatch_and_bad_arguments(data):
    predictor = load_predictor(TinyLandmarkNet(98), metadata=tiny_metadata(num_points=98))
    with pytest.raises(DataError, match="68-point annotations but the model predicts 98"):
        evaluate(predictor, data, progress=False)
    predictor = load_predictor(TinyLandmarkNet(), metadata=tiny_metadata())
    with pytest.raises(ConfigError):
        evaluate(predictor, data, batch_size=0)
    with pytest.raises(ConfigError):
        evaluate(predictor, data, limit=0)
    with pytest.raises(DataError):
        evaluate(predictor, data / "missing", progress=False)


def test_an_opened_dataset_must_match_the_model(data):
    from landmarks.data import open_dataset

    predictor = load_predictor(TinyLandmarkNet(), metadata=tiny_metadata())
    report = evaluate(predictor, open_dataset(str(data), input_size=SIZE), progress=False)
    assert report.metrics.num_images == 6
    with pytest.raises(DataError, match=r"crop_scale=1\.5"):
        evaluate(predictor, open_dataset(str(data), input_size=SIZE, crop_scale=1.5), progress=False)


# --- plots ---------------------------------------------------------------------------------


def test_plot_ced_writes_png_atomically(tmp_path):
    rng = np.random.default_rng(0)
    curves = {"teacher": rng.uniform(0, 0.06, 50), "student int8": rng.uniform(0, 0.12, 50)}
    path = plot_ced(curves, tmp_path / "plots" / "ced.png")
    assert path.read_bytes().startswith(PNG)
    assert [p.name for p in path.parent.iterdir()] == ["ced.png"]  # no temporary file left


def test_plot_samples_with_and_without_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, SIZE, SIZE, 3), dtype=np.uint8)
    pred, gt = rng.uniform(0, 1, (5, 68, 2)), rng.uniform(0, 1, (5, 68, 2))
    assert plot_samples(images, pred, gt, tmp_path / "a.png", cols=4).read_bytes().startswith(PNG)
    assert plot_samples(images[:1], pred[:1], None, tmp_path / "b.png").read_bytes().startswith(PNG)
    with pytest.raises(ValueError):
        plot_samples(images, pred[:3], gt, tmp_path / "c.png")
