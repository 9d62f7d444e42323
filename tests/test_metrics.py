"""Section-3 metrics against cases computed by hand (expected values derived in comments)."""

from __future__ import annotations

import numpy as np
import pytest

from landmarks import metrics

ERRORS = np.array([0.015, 0.045, 0.095, 0.12])  # per-image nme_io fractions, off the CED grid
OFFSET = np.array([3.0, 4.0])  # a point error of sqrt(3^2 + 4^2) = 5


def _face68() -> np.ndarray:
    """68 points inside the box [0, 20] x [0, 5]; outer eye corners 36 = (0, 0), 45 = (10, 0).

    inter-ocular = 10; box = 20 x 5, so sqrt(w * h) = sqrt(100) = 10.
    """
    rng = np.random.default_rng(1)
    gt = np.column_stack([rng.uniform(1, 19, 68), rng.uniform(1, 4, 68)])
    gt[0], gt[1] = (0, 2), (20, 2)  # box x extent 0..20
    gt[2], gt[3] = (5, 0), (5, 5)  # box y extent 0..5
    gt[36], gt[45] = (0, 0), (10, 0)
    return gt[None]


def test_offset_of_3_4_is_half_the_interocular_distance():
    gt = _face68()
    pred = gt + OFFSET  # every point off by sqrt(3^2 + 4^2) = 5
    np.testing.assert_allclose(metrics.nme_interocular(pred, gt), [0.5])  # 5 / 10
    np.testing.assert_allclose(metrics.nme_box(pred, gt), [0.5])  # 5 / sqrt(20 * 5)
    np.testing.assert_allclose(metrics.nme_image(pred, gt, 100), [0.05])  # 5 / 100
    summary, per_image = metrics.compute_metrics(pred, gt, image_size=100)
    assert summary.num_images == 1
    assert summary.nme_io == pytest.approx(50.0)  # percent
    assert summary.nme_box == pytest.approx(50.0)
    assert summary.nme_img == pytest.approx(5.0)
    assert summary.fr_008 == 1.0 and summary.auc_008 == 0.0  # 0.5 is far past both thresholds
    np.testing.assert_allclose(per_image["nme_io"], [0.5])


def test_nme_averages_per_image_errors_over_images():
    gt = np.concatenate([_face68(), 2 * _face68()])  # second face twice as large: io = 20
    pred = gt + OFFSET  # errors 5 / 10 = 0.5 and 5 / 20 = 0.25
    summary, per_image = metrics.compute_metrics(pred, gt, image_size=100)
    np.testing.assert_allclose(per_image["nme_io"], [0.5, 0.25])
    assert summary.nme_io == pytest.approx(37.5)  # (0.5 + 0.25) / 2 * 100


def test_per_image_error_is_the_mean_over_points():
    gt = _face68()
    pred = gt.copy()
    pred[0, :34] += (6.0, 8.0)  # half the points off by 10, half exact: mean 5
    np.testing.assert_allclose(metrics.nme_interocular(pred, gt), [0.5])


def test_98_point_faces_use_corners_60_and_72():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 100, size=(1, 98, 2))
    gt[0, 60], gt[0, 72] = (10, 10), (10, 18)  # inter-ocular 8
    gt[0, 36], gt[0, 45] = (0, 0), (100, 0)  # the 68-point corners must not be used
    pred = gt + OFFSET
    np.testing.assert_allclose(metrics.interocular(gt), [8.0])
    np.testing.assert_allclose(metrics.nme_interocular(pred, gt), [5 / 8])


def test_failure_rate_counts_errors_strictly_above_threshold():
    # 0.095 and 0.12 exceed 0.08 -> 2/4; only 0.12 exceeds 0.10 -> 1/4
    assert metrics.failure_rate(ERRORS, 0.08) == 0.5
    assert metrics.failure_rate(ERRORS, 0.10) == 0.25
    assert metrics.failure_rate(np.array([0.08]), 0.08) == 0.0  # equal is not a failure


def test_auc_by_hand():
    # AUC@t = mean(max(0, t - e)) / t
    # t = 0.08: (0.065 + 0.035 + 0 + 0) / 4 / 0.08 = 0.1 / 0.32 = 0.3125
    # t = 0.10: (0.085 + 0.055 + 0.005 + 0) / 4 / 0.10 = 0.145 / 0.4 = 0.3625
    assert metrics.auc(ERRORS, 0.08) == pytest.approx(0.3125)
    assert metrics.auc(ERRORS, 0.10) == pytest.approx(0.3625)
    assert metrics.auc(np.zeros(3), 0.08) == pytest.approx(1.0)  # perfect model
    assert metrics.auc(np.full(3, 0.5), 0.08) == 0.0  # every face failed


def test_auc_equals_area_under_the_ced_curve():
    thresholds, fractions = metrics.ced_curve(ERRORS, max_error=0.08, steps=80001)
    numeric = np.sum(fractions[:-1] * np.diff(thresholds)) / 0.08  # left Riemann sum of a step function
    assert numeric == pytest.approx(metrics.auc(ERRORS, 0.08), abs=1e-4)


def test_ced_curve_values():
    thresholds, fractions = metrics.ced_curve(ERRORS, max_error=0.10, steps=11)
    np.testing.assert_allclose(thresholds, np.arange(11) / 100)
    # fraction of the 4 errors <= t for t = 0, 0.01, ..., 0.10
    expected = [0, 0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.75]
    np.testing.assert_allclose(fractions, expected)


def test_summary_rates_come_from_nme_io():
    gt = np.repeat(_face68(), 4, axis=0)
    pred = gt.copy()
    pred[:, :, 0] += 10 * ERRORS[:, None]  # io = 10: per-image nme_io = ERRORS
    summary, per_image = metrics.compute_metrics(pred, gt, image_size=100)
    np.testing.assert_allclose(per_image["nme_io"], ERRORS)
    assert (summary.fr_008, summary.fr_010) == (0.5, 0.25)
    assert summary.auc_008 == pytest.approx(0.3125)
    assert summary.auc_010 == pytest.approx(0.3625)
    assert summary.nme_io == pytest.approx(100 * ERRORS.mean())
    assert set(summary.as_dict()) >= {"nme_io", "nme_box", "nme_img", "fr_008", "auc_010"}


def test_flat_predictions_are_accepted():
    gt = _face68()
    flat = (gt + OFFSET).reshape(1, -1)  # [N, 2P] in x, y order
    np.testing.assert_allclose(metrics.nme_interocular(flat, gt), [0.5])


@pytest.mark.parametrize(
    ("pred_shape", "gt_shape"),
    [((1, 67, 2), (1, 68, 2)), ((2, 68, 2), (1, 68, 2)), ((68, 2), (68, 2)), ((1, 68, 3), (1, 68, 3))],
)
def test_shape_mismatch_raises_value_error(pred_shape, gt_shape):
    with pytest.raises(ValueError):
        metrics.point_errors(np.zeros(pred_shape), np.zeros(gt_shape))


def test_no_images_raises_value_error():
    with pytest.raises(ValueError, match="no images"):
        metrics.compute_metrics(np.zeros((0, 68, 2)), np.zeros((0, 68, 2)), image_size=100)


def test_unknown_point_count_has_no_interocular_normalizer():
    with pytest.raises(ValueError, match="no landmark scheme"):
        metrics.nme_interocular(np.zeros((1, 5, 2)), np.ones((1, 5, 2)))
