"""The calibration reader (ORT contract) and its TFLite adapter; the fallback's pieces."""

from __future__ import annotations

import numpy as np
import pytest

from landmarks.errors import ConfigError, DataError
from landmarks.metadata import ArtifactMetadata
from landmarks.runtimes.base import preprocess
from quant.accuracy_gate import GateReport
from quant.calibration import CalibrationReader, representative_dataset
from quant.fallback import restore_until_pass
from quant.ort_int8 import StaticInt8Config
from quant.ranker import Sensitivity
from quant.sqnr import per_channel_sqnr

META = ArtifactMetadata(num_points=68, input_size=16)


def _faces(n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), "key": str(i)} for i in range(n)]


def test_reader_feeds_preprocessed_faces_and_rewinds() -> None:
    faces = _faces(5)
    reader = CalibrationReader(faces, META, "x", limit=3)
    feeds = list(reader)
    assert len(feeds) == 3 and reader.get_next() is None
    # evenly spread over the set: faces 0, 2, 4
    np.testing.assert_array_equal(feeds[1]["x"], preprocess(faces[2]["image"][None], META))
    reader.rewind()
    assert reader.get_next()["x"].shape == (1, 3, 16, 16)


def test_representative_dataset_is_nhwc() -> None:
    reader = CalibrationReader(_faces(2), META).with_input("input", META.replace(layout="NHWC"))
    batches = list(representative_dataset(reader)())
    assert len(batches) == 2 and batches[0][0].shape == (1, 16, 16, 3)


def test_empty_calibration_is_a_data_error() -> None:
    with pytest.raises(DataError, match="calibration set is empty"):
        len(CalibrationReader([], META))


@pytest.mark.parametrize("kw", [{"method": "kl"}, {"activation_type": "int4"}, {"calib_count": 0},
                                {"percentile": 10.0}])
def test_static_config_rejects_bad_values(kw) -> None:
    with pytest.raises(ConfigError):
        StaticInt8Config(**kw)


def test_per_channel_sqnr_sees_a_ruined_channel() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8))
    good = x + 1e-3 * rng.standard_normal(x.shape)
    ruined = good.copy()
    ruined[:, 1:] = 0  # three of four channels flushed to zero, as by an outlier-stretched scale
    assert per_channel_sqnr([x], [good]) > 50
    assert per_channel_sqnr([x], [ruined]) < 1


def _gate_report(nodes: tuple[str, ...]) -> GateReport:
    passed = {"a", "b"} <= set(nodes)
    return GateReport("c", "r", "ort", 4.0 if passed else 5.0, 4.0, 0.0 if passed else 0.25, 0.02,
                      "pass" if passed else "reject", "", float_nodes=nodes)


def test_restore_loop_grows_groups_until_pass() -> None:
    ranking = [Sensitivity("t1", 9.0, ("a",)), Sensitivity("t2", 5.0, ("b",)), Sensitivity("t3", 1.0, ("c",))]
    built: list[tuple[str, ...]] = []

    def build(nodes):
        built.append(nodes)
        return nodes

    result = restore_until_pass(ranking, build, lambda _, nodes: _gate_report(nodes), max_float_nodes=4,
                                log=lambda _: None)
    assert result.report.passed and result.report.float_nodes == ("a", "b")
    assert built == [(), ("a",), ("a", "b")]
    bounded = restore_until_pass(ranking, build, lambda _, nodes: _gate_report(nodes), max_float_nodes=1,
                                 log=lambda _: None)
    assert not bounded.report.passed and bounded.reached_max_float_nodes
