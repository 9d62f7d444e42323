"""Signal-to-quantization-noise ratios in dB: the one definition every quantization step uses.

``per_channel_sqnr`` scores activations (the sensitivity ranker's default ``err_func``);
``weight_sqnr_db`` scores int8 weight scales (the granularity choice). Both cap a noiseless
tensor at :data:`SQNR_CAP`, so differences between scores stay finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SQNR_CAP = 100.0  # dB; a noiseless tensor counts as this, so drops stay finite
INT8_MAX = 127.0


def per_channel_sqnr(reference: Sequence[np.ndarray], noisy: Sequence[np.ndarray], axis: int = 1) -> float:
    """Median over channels of each channel's signal-to-quantization-noise ratio, in dB.

    The default ``err_func``. The median, not the minimum: a channel that is nearly constant
    (a saturated sigmoid) has almost no signal and would dominate a minimum, while an outlier
    channel that stretches a per-tensor scale ruins most channels and moves the median.
    Channels with no signal are ignored; without noise the result is capped at 100 dB.
    """
    ref = np.concatenate([np.asarray(r, np.float64) for r in reference])
    out = np.concatenate([np.asarray(n, np.float64) for n in noisy])
    if ref.shape != out.shape or ref.size == 0:
        return SQNR_CAP
    if ref.ndim < 2:
        ref, out = ref[:, None], out[:, None]
    axis = axis % ref.ndim
    reduce = tuple(i for i in range(ref.ndim) if i != axis)
    signal = np.sum(ref**2, axis=reduce)
    noise = np.sum((ref - out) ** 2, axis=reduce)
    live = signal > 1e-12 * max(float(signal.max()), 1e-30)
    if not live.any():
        return SQNR_CAP
    with np.errstate(divide="ignore"):
        ratio = 10 * np.log10(signal[live] / np.maximum(noise[live], 1e-30))
    return float(np.clip(np.median(ratio), -SQNR_CAP, SQNR_CAP))


def weight_sqnr_db(weights: np.ndarray, axis: int, *, per_channel: bool) -> float:
    """Worst output channel's SQNR in dB under symmetric int8 (+-127) quantization.

    Scales are one per tensor, or one per slice along ``axis`` with ``per_channel``. The worst
    channel, not the whole tensor: one outlier channel that stretches a shared scale rounds the
    others to zero, while the tensor's total noise ratio, dominated by the outlier, looks fine.
    All-zero channels are skipped; a noiseless tensor counts as 100 dB.
    """
    w = np.moveaxis(np.asarray(weights, np.float64), axis, 0).reshape(np.shape(weights)[axis], -1)
    peak = np.abs(w).max(axis=1, keepdims=True) if per_channel else np.abs(w).max(keepdims=True)
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0)
    noise = np.sum((w - np.clip(np.round(w / scale), -INT8_MAX, INT8_MAX) * scale) ** 2, axis=1)
    signal = np.sum(w**2, axis=1)
    live = signal > 0
    if not live.any():
        return SQNR_CAP
    with np.errstate(divide="ignore"):
        ratio = 10.0 * np.log10(signal[live] / noise[live])
    return float(min(np.min(ratio), SQNR_CAP))
