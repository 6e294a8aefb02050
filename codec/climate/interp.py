"""Multilevel interpolation coding of a residual field within a pointwise bound (the prediction scheme of SZ3).

The points of an ``h x w`` grid are visited level by level, coarsest first: the *anchors* (every
``S``-th row and column, ``S`` the largest power of two below the longer side), then for each
stride ``st = S/2, S/4, ..., 1`` two *passes*: the points between known ones along rows (known rows,
columns at odd multiples of ``st``), then along columns (rows at odd multiples of ``st``, columns at
multiples of ``st``).  Each point of a pass is predicted from the already reconstructed points
``st`` and ``3 st`` away along the pass's axis (cubic ``(-1, 9, 9, -1) / 16``; quadratic or linear
where the grid ends, the nearest where only one side exists; anchors predict 0) and its prediction
error is quantized with the caller's step, so every reconstructed point is within the bound and
later predictions see exactly what the decoder will see.  All points of a pass are computed at
once (numpy); only the ``2 log2 S + 1`` passes are sequential.

The quantization codes are entropy-coded pass by pass in one range-coded stream: each point's table
is chosen by its *context*, the sum of the absolute codes of its two nearest known neighbours along
the axis (binned by :data:`CONTEXT_BINS`), and each (pass, context) group gets the one Gaussian table
(:mod:`codec.entropy.gaussian`) that codes it in the fewest bits; the table indices are side
information.  Points the caller marks as not coded (missing points) take code 0 and are skipped.

**Version 2** (field records from version 4) changes three things, measured on the 0.25-1 degree
validation fields (``benchmarks/climate_interp.py``):

* *Level-wise steps* (as SZ3 and QoZ do): the passes of stride ``st`` quantize with the caller's
  step divided by ``min(alpha ** log2(st), 2)``, so coarse points, which every finer prediction
  interpolates from, are kept more precisely.  ``alpha`` is one of :data:`ALPHAS` (the caller tries
  each and keeps the shortest; one byte says which): 1.25 pays on smooth fields, 1 on rough ones.
* The *context* adds the local curvature of the reconstruction, ``|a - b - c + d|`` of the four
  known points along the axis in units of the caller's step divided by the pass's divisor (the
  pass's step on the float path, about it on the packed one), to the two neighbours' absolute codes
  (binned by :data:`ACTIVITY_BINS`): flat regions get a table that makes zeros nearly free.
* The tables are the Laplace-with-zero-spike family of :mod:`codec.entropy.laplace`, which fits
  the peaked, heavy-tailed codes better than Gaussians.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator

import constriction
import numpy as np

from ..entropy import gaussian, laplace
from ..errors import CorruptStreamError

CONTEXT_BINS = np.array([0, 1, 2, 3, 5, 9, 17, 33])  # lower edges of the context bins (sum of two |codes|)
ACTIVITY_BINS = np.array([0, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89])  # version 2: |codes| + curvature in steps
ALPHAS = (1.0, 1.25)  # version 2: growth of the step divisor per level (1: one step everywhere)
MAX_DIVISOR = 2.0  # version 2: coarse levels use at most half the caller's step
_U32 = struct.Struct("<I")

Quantizer = Callable[[np.ndarray, np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]
"""``(prediction, rows, cols, divisor) -> (codes, reconstruction)`` of one pass (encoder side): the
pass quantizes with the caller's step divided by ``divisor`` (always 1 in version 1)."""
Dequantizer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], np.ndarray]
"""``(prediction, codes, rows, cols, divisor) -> reconstruction`` of one pass (decoder side)."""


def _anchor_stride(shape: tuple[int, int]) -> int:
    s = 1
    while 2 * s < max(shape):
        s *= 2
    return s


def passes(shape: tuple[int, int]) -> Iterator[tuple[np.ndarray, np.ndarray, int, int | None]]:
    """``(rows, cols, stride, axis)`` of every pass in coding order; the anchors have axis None."""
    h, w = shape
    s = _anchor_stride(shape)
    yield np.arange(0, h, s), np.arange(0, w, s), s, None
    st = s // 2
    while st >= 1:
        rows, cols = np.arange(0, h, 2 * st), np.arange(st, w, 2 * st)
        if rows.size and cols.size:
            yield rows, cols, st, 1
        rows, cols = np.arange(st, h, 2 * st), np.arange(0, w, st)
        if rows.size and cols.size:
            yield rows, cols, st, 0
        st //= 2


def _along(a: np.ndarray, rows: np.ndarray, cols: np.ndarray, axis: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """``a`` at the pass's points shifted by ``offset`` along ``axis`` (clamped) and whether the shifted point exists."""
    n = a.shape[axis]
    target = (cols if axis == 1 else rows) + offset
    inside = (target >= 0) & (target < n)
    clamped = np.clip(target, 0, n - 1)
    values = a[np.ix_(rows, clamped)] if axis == 1 else a[np.ix_(clamped, cols)]
    return values, (inside[None, :] if axis == 1 else inside[:, None])


def predict(rec: np.ndarray, rows: np.ndarray, cols: np.ndarray, st: int, axis: int | None) -> np.ndarray:
    """Interpolated prediction of the pass's points from the reconstructed ``rec`` (0 for the anchors)."""
    if axis is None:
        return np.zeros((rows.size, cols.size))
    a, has_a = _along(rec, rows, cols, axis, -3 * st)
    b, _ = _along(rec, rows, cols, axis, -st)  # always inside: the pass's points sit at odd multiples of st
    c, has_c = _along(rec, rows, cols, axis, st)
    d, has_d = _along(rec, rows, cols, axis, 3 * st)
    cubic = (-a + 9 * b + 9 * c - d) / 16
    left = (3 * b + 6 * c - d) / 8  # no point 3 st before
    right = (-a + 6 * b + 3 * c) / 8  # no point 3 st after
    return np.where(has_a & has_c & has_d, cubic, np.where(has_c & has_d, left, np.where(has_a & has_c, right, np.where(has_c, (b + c) / 2, b))))


def divisor(st: int, alpha: float) -> float:
    """The step divisor of the passes of stride ``st`` (version 2): ``min(alpha ** log2(st), 2)``."""
    return min(alpha ** (st.bit_length() - 1), MAX_DIVISOR)


def _contexts(codes: np.ndarray, rec: np.ndarray, rows: np.ndarray, cols: np.ndarray, st: int, axis: int | None, version: int, unit: float) -> np.ndarray:
    """Context bin of every point of the pass: its neighbours' absolute codes (and, in version 2, the
    reconstruction's curvature in units of ``unit``: the caller's step over the pass's divisor)."""
    if axis is None:
        return np.zeros((rows.size, cols.size), np.int64)
    b, _ = _along(codes, rows, cols, axis, -st)
    c, _ = _along(codes, rows, cols, axis, st)
    if version == 1:
        return np.searchsorted(CONTEXT_BINS, np.abs(b) + np.abs(c), side="right") - 1
    ra, _ = _along(rec, rows, cols, axis, -3 * st)
    rb, _ = _along(rec, rows, cols, axis, -st)
    rc, _ = _along(rec, rows, cols, axis, st)
    rd, _ = _along(rec, rows, cols, axis, 3 * st)
    activity = np.abs(b) + np.abs(c) + np.abs(ra - rb - rc + rd) / unit
    return np.searchsorted(ACTIVITY_BINS, activity, side="right") - 1


def _tables(version: int) -> gaussian.GaussianTables | laplace.LaplaceSpikeTables:
    return gaussian.default_tables() if version == 1 else laplace.default_tables()


def encode(shape: tuple[int, int], coded: np.ndarray, quantize: Quantizer, version: int = 1, unit: float = 1.0, alpha: float = 1.0) -> tuple[bytes, np.ndarray]:
    """Bytes of all passes and the reconstruction (float64) the decoder will rebuild.

    ``coded``: bool mask of the points that carry a code (others reconstruct as their prediction).
    Version 2: ``unit`` is the caller's step (for the contexts) and ``alpha`` one of :data:`ALPHAS`.
    """
    rec = np.zeros(shape)
    codes = np.zeros(shape, np.int64)
    tables = _tables(version)
    encoder = constriction.stream.queue.RangeEncoder()
    table_ids = []
    for rows, cols, st, axis in passes(shape):
        d = 1.0 if version == 1 else divisor(st, alpha)
        p = predict(rec, rows, cols, st, axis)
        mask = coded[np.ix_(rows, cols)]
        ctx = _contexts(codes, rec, rows, cols, st, axis, version, unit / d)[mask]
        k, r = quantize(p, rows, cols, d)
        k = np.where(mask, k, 0)
        rec[np.ix_(rows, cols)] = np.where(mask, r, p)
        codes[np.ix_(rows, cols)] = k
        values = k[mask]
        index = np.zeros(values.size, np.int64)
        for j in np.flatnonzero(np.bincount(ctx)):
            best = tables.cheapest(values[ctx == j])
            table_ids.append(best)
            index[ctx == j] = best
        gaussian.encode_into(encoder, values, index, tables)
    head = zlib.compress(bytes(table_ids), 9)
    lead = b"" if version == 1 else bytes([ALPHAS.index(alpha)])
    return lead + _U32.pack(len(head)) + head + encoder.get_compressed().astype("<u4").tobytes(), rec


def decode(data: bytes, shape: tuple[int, int], coded: np.ndarray, dequantize: Dequantizer, version: int = 1, unit: float = 1.0) -> np.ndarray:
    """Inverse of :func:`encode`: the reconstruction (float64)."""
    alpha = 1.0
    if version == 2:
        if not data or data[0] >= len(ALPHAS):
            raise CorruptStreamError("interpolation stream has an unknown level step")
        alpha, data = ALPHAS[data[0]], data[1:]
    if len(data) < _U32.size:
        raise CorruptStreamError("interpolation stream truncated")
    (n,) = _U32.unpack_from(data)
    try:
        table_ids = zlib.decompressobj().decompress(data[_U32.size : _U32.size + n], coded.size + 1)
    except zlib.error:
        raise CorruptStreamError("interpolation table list is corrupt") from None
    tables = _tables(version)
    if any(t >= len(tables.freqs) for t in table_ids):
        raise CorruptStreamError("interpolation table index out of range")
    decoder = gaussian.range_decoder(data[_U32.size + n :])
    rec = np.zeros(shape)
    codes = np.zeros(shape, np.int64)
    used = 0
    for rows, cols, st, axis in passes(shape):
        d = 1.0 if version == 1 else divisor(st, alpha)
        p = predict(rec, rows, cols, st, axis)
        mask = coded[np.ix_(rows, cols)]
        ctx = _contexts(codes, rec, rows, cols, st, axis, version, unit / d)[mask]
        index = np.zeros(ctx.size, np.int64)
        for j in np.flatnonzero(np.bincount(ctx)):
            if used >= len(table_ids):
                raise CorruptStreamError("interpolation table list is too short")
            index[ctx == j] = table_ids[used]
            used += 1
        k = np.zeros(mask.shape, np.int64)
        k[mask] = gaussian.decode_from(decoder, index, tables)
        codes[np.ix_(rows, cols)] = k
        rec[np.ix_(rows, cols)] = np.where(mask, dequantize(p, k, rows, cols, d), p)
    if used != len(table_ids):
        raise CorruptStreamError("interpolation table list does not match the field")
    return rec
