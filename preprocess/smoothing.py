"""Temporal smoothing of per-frame face parameters and filling of frames without a face.

Why a centred (zero-phase) local-quadratic filter (Savitzky-Golay): preprocessing is offline, so the filter can
look ahead as far as it looks back. A centred filter has no lag at all on steady motion, unlike the causal
One-Euro / exponential filters a live tracker must use, and the quadratic term keeps the turning points of a
head nod instead of flattening them like a plain moving average. `window` is the number of frames the filter
spans on each side (the CLI's --smooth); 0 disables it. Each run of valid frames is smoothed on its own, so a
cut or an occlusion never bleeds one shot's position into another.
"""
from __future__ import annotations

import numpy as np


def valid_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)) ranges of consecutive True values."""
    v = np.concatenate([[False], np.asarray(valid, bool), [False]])
    edges = np.flatnonzero(np.diff(v.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def smooth_series(values: np.ndarray, valid: np.ndarray, window: int) -> np.ndarray:
    """Smooth (N, ...) values along axis 0 inside each valid run; invalid rows are returned unchanged."""
    out = np.array(values, dtype=np.float64, copy=True)
    if window <= 0:
        return out
    for start, stop in valid_runs(valid):
        n = stop - start
        length = min(2 * window + 1, n if n % 2 else n - 1)
        if length < 5:  # too short for a quadratic fit to remove anything
            continue
        out[start:stop] = _savgol_quadratic(out[start:stop], length)
    return out


def _savgol_quadratic(x: np.ndarray, length: int) -> np.ndarray:
    """Least-squares quadratic fit over a centred window of `length` (odd) frames, evaluated at its centre.

    Near both ends the quadratic fitted to the first/last full window is evaluated instead (no padding, so
    the first and last frames are not pulled towards the middle). Same result as scipy's savgol_filter with
    mode="interp", without importing scipy.signal (seconds of import time).
    """
    half = length // 2
    t = np.arange(-half, half + 1, dtype=np.float64)
    basis = np.stack([np.ones_like(t), t, t * t], axis=1)  # (length, 3)
    pinv = np.linalg.pinv(basis)  # (3, length): window values -> polynomial coefficients
    flat = x.reshape(len(x), -1)
    out = np.empty_like(flat)
    centre = pinv[0]  # value at t=0
    windows = np.lib.stride_tricks.sliding_window_view(flat, length, axis=0)  # (n-length+1, D, length)
    out[half:len(flat) - half] = windows @ centre
    for edge_rows, window in ((np.arange(half), flat[:length]), (np.arange(len(flat) - half, len(flat)), flat[-length:])):
        coef = pinv @ window  # (3, D)
        tt = (edge_rows - (0 if edge_rows[0] == 0 else len(flat) - length)) - half
        out[edge_rows] = np.stack([np.ones_like(tt), tt, tt * tt], axis=1).astype(np.float64) @ coef
    return out.reshape(x.shape)


def fill_gaps(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows where valid is False take the value of the nearest valid row (earlier one on ties).

    Nearest-frame hold rather than interpolation: across a cut, a blend of two shots' positions would put the
    face box where no face ever was. With no valid row at all the values are returned unchanged.
    """
    valid = np.asarray(valid, bool)
    out = np.array(values, copy=True)
    good = np.flatnonzero(valid)
    if good.size == 0 or good.size == len(valid):
        return out
    bad = np.flatnonzero(~valid)
    pos = np.searchsorted(good, bad)
    left = good[np.clip(pos - 1, 0, good.size - 1)]
    right = good[np.clip(pos, 0, good.size - 1)]
    use_right = (np.abs(right - bad) < np.abs(bad - left)) | (pos == 0)
    use_right &= pos < good.size
    out[bad] = values[np.where(use_right, right, left)]
    return out
