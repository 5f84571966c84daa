"""Cubic-spline upscaling of a small colour grid, bit-identical to scikit-image's ``resize``.

``transform.resize(grid, (h, w, c), order=3, mode="reflect", anti_aliasing=False)`` ends in
``scipy.ndimage.zoom``, whose C loop visits every output value with 4 x 4 x 4 taps and takes its
slow edge path everywhere (a 4-pixel grid and a 3-channel axis are all edge). For the synthetic
set's 4 x 4 background grid that loop was nearly all of the generator's time at 448 px.

This module does the same arithmetic with numpy, a whole output plane at a time: the same spline
coefficients (scipy's own prefilter), the same per-axis coordinates, boundary mapping and weights
(``NI_ZoomShift`` / ``get_spline_interpolation_weights`` in scipy's ``ni_interpolation.c`` and
``ni_splines.c``), each tap's product formed in the same order ``((c * w_row) * w_col) * w_chan``
and the taps summed one after another in the same (row, column, channel) order, in float64, then
stored as float32 and clipped to the input's range as ``resize`` does. IEEE arithmetic then gives
the same bits; tests/test_synth.py checks that against ``resize`` itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ORDER = 3  # cubic


def _mirror(coord: np.ndarray, length: int) -> np.ndarray:
    """scipy's ``map_coordinate`` for mode 'mirror' (skimage's 'reflect'), elementwise."""
    out = np.array(coord, dtype=np.float64)
    if length <= 1:
        out[(out < 0) | (out > length - 1)] = 0.0
        return out
    sz2 = 2 * length - 2
    low = out < 0
    v = out[low]
    v = sz2 * np.trunc(-v / sz2) + v
    out[low] = np.where(v <= 1 - length, v + sz2, -v)
    high = out > length - 1
    v = out[high]
    v = v - sz2 * np.trunc(v / sz2)
    out[high] = np.where(v >= length, sz2 - v, v)
    return out


def _axis_taps(n_in: int, n_out: int, order: int = ORDER) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and spline weights of the order + 1 taps of each output index along one axis
    (order 3 or 1)."""
    zoom = np.float64(n_in) / np.float64(n_out)
    cc = np.arange(n_out, dtype=np.float64)
    cc += 0.5  # grid_mode: pixel centres
    cc *= zoom
    cc -= 0.5
    cc = _mirror(cc, n_in)
    floor = np.floor(cc)
    start = floor.astype(np.intp) - order // 2
    x = cc - floor
    y, z = x, 1.0 - x
    w = np.empty((n_out, order + 1))
    if order == 3:
        w[:, 1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0
        w[:, 2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
        w[:, 0] = z * z * z / 6.0
        w[:, 3] = 1.0 - w[:, 0] - w[:, 1] - w[:, 2]
    elif order == 1:
        w[:, 0] = 1.0 - x
        w[:, 1] = 1.0 - w[:, 0]
    else:
        raise ValueError(f"spline order {order}: only 1 and 3 are implemented")
    taps = start[:, None] + np.arange(order + 1)
    index = _mirror(taps.astype(np.float64), n_in).astype(np.intp)
    return index, w


_BLOCK_ROWS = 128


def _runs(index: np.ndarray) -> list[tuple[int, slice]]:
    """(value, slice) for each run of equal values in a 1-d index array."""
    edges = np.flatnonzero(np.diff(index)) + 1
    bounds = [0, *edges.tolist(), index.size]
    return [(int(index[a]), slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _accumulate(coef, rows, w_rows, cols, w_cols, chans, w_chans, total) -> None:
    """Add every tap's product into ``total`` (C, rows, W), taps in scipy's order."""
    channels = total.shape[0]
    # products by a channel weight, computed once per distinct (input channel, weight)
    uses = sorted({(int(chans[c, k]), float(w_chans[c, k])) for c in range(channels) for k in range(ORDER + 1)})
    scaled = {use: np.empty(total.shape[1:]) for use in uses}
    by_col = np.empty(total.shape)
    col_runs = [_runs(cols[:, j]) for j in range(ORDER + 1)]
    for i in range(ORDER + 1):
        by_row = coef[:, rows[:, i]] * w_rows[None, :, i, None]  # (C, rows, w)
        for j in range(ORDER + 1):
            # by_col[:, :, x] = by_row[:, :, cols[x, j]] * w_cols[x, j], one run of equal columns at a time
            for col, run in col_runs[j]:
                np.multiply(by_row[:, :, col, None], w_cols[None, None, run, j], out=by_col[:, :, run])
            for (chan, weight), out in scaled.items():
                np.multiply(by_col[chan], weight, out=out)
            for c in range(channels):
                for k in range(ORDER + 1):
                    total[c] += scaled[int(chans[c, k]), float(w_chans[c, k])]


def upscale_cubic(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``skimage.transform.resize(grid, (*shape, C), order=3, mode="reflect", anti_aliasing=False)``
    for a float32 ``grid`` of shape (h, w, C), bit for bit; float32 (H, W, C)."""
    if grid.dtype != np.float32 or grid.ndim != 3:
        raise TypeError(f"upscale_cubic: need a float32 (h, w, C) grid, got {grid.dtype} {grid.shape}")
    coef = ndimage.spline_filter(grid, ORDER, output=np.float64, mode="mirror")
    coef = np.ascontiguousarray(np.moveaxis(coef, 2, 0))  # (C, h, w)
    height, width = shape
    channels = grid.shape[2]
    rows, w_rows = _axis_taps(grid.shape[0], height)
    cols, w_cols = _axis_taps(grid.shape[1], width)
    chans, w_chans = _axis_taps(channels, channels)
    # the sum of each output value runs over (row tap, column tap, channel tap) in that order;
    # blocks of rows keep the working planes in cache
    total = np.zeros((channels, height, width))
    for top in range(0, height, _BLOCK_ROWS):
        rows_ = slice(top, min(top + _BLOCK_ROWS, height))
        _accumulate(coef, rows[rows_], w_rows[rows_], cols, w_cols, chans, w_chans, total[:, rows_])
    out = np.moveaxis(total, 0, -1).astype(np.float32)
    np.clip(out, grid.min(), grid.max(), out=out)
    return out


def upscale_linear(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``skimage.transform.resize(grid, shape, order=1, mode="reflect")`` for a float64 (h, w)
    ``grid`` (upscaling: no anti-aliasing), bit for bit; float64 (H, W). Order 1 has no prefilter:
    the taps are the grid's own values, ``(v * w_row) * w_col`` summed in (row, column) order."""
    if grid.dtype != np.float64 or grid.ndim != 2:
        raise TypeError(f"upscale_linear: need a float64 (h, w) grid, got {grid.dtype} {grid.shape}")
    height, width = shape
    if height < grid.shape[0] or width < grid.shape[1]:
        raise ValueError(f"upscale_linear: {grid.shape} -> {shape} is not an upscale")
    rows, w_rows = _axis_taps(grid.shape[0], height, order=1)
    cols, w_cols = _axis_taps(grid.shape[1], width, order=1)
    total = np.zeros((height, width))
    by_col = np.empty((height, width))
    for i in range(2):
        by_row = grid[rows[:, i]] * w_rows[:, i, None]  # (H, w)
        for j in range(2):
            for col, run in _runs(cols[:, j]):
                np.multiply(by_row[:, col, None], w_cols[None, run, j], out=by_col[:, run])
            total += by_col
    np.clip(total, grid.min(), grid.max(), out=total)
    return total
