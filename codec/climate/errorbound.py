"""Pointwise error bounds: code the quantized residual the network left, so ``|x - x'| <= E`` everywhere.

Given the original field ``x`` and the network's reconstruction ``r``, the residual is quantized
with a uniform step of ``2E`` (so each point lands within ``E``) and entropy-coded with Gaussian
tables whose scale is chosen per 16 x 16 tile (the one that codes the tile in the fewest bits).  Two cases keep the guarantee exact:

* Packed (and plain integer) variables, stored as integers ``k`` with ``x = offset + scale * k``,
  are corrected in the integer domain with an odd step of ``2e + 1``, ``e = floor((E - d) / scale)``,
  where ``d`` covers how far ``x`` sits off its grid plus the float32 rounding of a reader; results
  are clipped to the storable integers (fill values excluded), so the bound holds after the netCDF
  writer packs the values again.  A field whose bound is below one grid step takes the float path.
* Float variables are corrected in float64; points where rounding to the output dtype would still
  break the bound (only when ``E`` is near that dtype's resolution), or whose residual exceeds
  2^30 steps, are stored exactly.  A leading byte tells the decoder which path a field took.

The quantized residual is correlated between neighbours (the network misses features larger than
a point), so each value may be predicted from its western neighbour's, ``rho * q[west]`` rounded
(``rho`` from :data:`WEST_WEIGHTS`, the one that costs fewest bits, chosen per field); the first
column has no western neighbour.  The weight's index shares the leading byte with the path (high
nibble; 0 = no prediction, as in files from before the predictor existed).

Since record version 2 the encoder also codes the quantized residual by multilevel interpolation
(:mod:`codec.climate.interp`: each point predicted from already reconstructed ones, the prediction
error quantized with the same step, so the bound holds as above) and keeps whichever coder is
shorter; modes 2 (float) and 3 (packed) in the leading byte's low nibble mark it.  Interpolation wins
on smooth fields (up to 6x fewer bytes on 0.25-degree geopotential), the tile coder on rough ones.
Coder 2 (field records from version 4) uses interpolation version 2 instead (level-wise steps, a
curvature context and Laplace tables, :mod:`codec.climate.interp`), trying each of its level-step
growths; modes 4 (float) and 5 (packed) mark it.  Its tile coder picks each tile's table from the
Laplace-with-zero-spike family of :mod:`codec.entropy.laplace` instead of the Gaussians (modes 6 and
7): the residuals of fields with flat or exactly-zero regions (snow, rain, cloud cover, precipitation
type) are far more peaked than a Gaussian, and this is where the tile coder wins.

Missing points (NaN) are skipped: they are restored from the mask, not from the residual.
"""

from __future__ import annotations

import math
import numbers
import struct
import zlib

import numpy as np

from ..entropy import gaussian, laplace
from ..errors import CorruptStreamError
from . import interp

TILE = 16
SCALE_SEARCH = 6  # table steps searched on either side of a tile's fitted scale
WEST_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # candidate weights of the western neighbour's residual
_U32 = struct.Struct("<I")


def parse_bounds(text: str | float | dict | None) -> dict[str, float] | float | None:
    """``"0.5"`` or 0.5 -> 0.5 for every variable; ``"t=0.1,z=10"`` or a dict -> per variable; positive and finite."""
    if text is None:
        return None
    if isinstance(text, str):
        try:
            text = float(text) if "=" not in text else {k.strip(): float(v) for k, v in (p.split("=", 1) for p in text.split(","))}
        except ValueError:
            raise ValueError(f"max_abs_error (--max-abs-error) must be a number or NAME=NUMBER,...; got {text!r}") from None
    values = list(text.values()) if isinstance(text, dict) else [text]
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values):
        raise ValueError("error bounds must be positive finite numbers")
    return {str(k): float(v) for k, v in text.items()} if isinstance(text, dict) else float(text)


def bound_for(bounds: dict[str, float] | float | None, name: str) -> float | None:
    """The bound of variable ``name`` (None = no bound); ``group/t`` also matches a bound given for ``t``."""
    if not isinstance(bounds, dict):
        return bounds
    return bounds.get(name, bounds.get(name.rsplit("/", 1)[-1]))


def _tiles(shape: tuple[int, int]) -> tuple[int, int]:
    return -(-shape[0] // TILE), -(-shape[1] // TILE)


def _tile_ids(shape: tuple[int, int]) -> np.ndarray:
    rows = np.arange(shape[0]) // TILE
    cols = np.arange(shape[1]) // TILE
    return rows[:, None] * _tiles(shape)[1] + cols[None, :]


def _fitted_scales(values: np.ndarray, ids: np.ndarray, n_tiles: int, tables: gaussian.GaussianTables) -> np.ndarray:
    """Per tile, the scale index of the Gaussian fitted to the RMS of the tile's values."""
    energy = np.bincount(ids, weights=values.astype(np.float64) ** 2, minlength=n_tiles)
    count = np.maximum(np.bincount(ids, minlength=n_tiles), 1)
    return tables.scale_index(np.sqrt(energy / count)).astype(np.int64)


def _tile_scales(values: np.ndarray, ids: np.ndarray, n_tiles: int, tables: gaussian.GaussianTables) -> np.ndarray:
    """Per tile, the scale index whose table codes the tile's values in the fewest bits.

    Searched within ``SCALE_SEARCH`` table steps of the Gaussian fitted to the tile's RMS: residuals
    are heavier-tailed than a Gaussian (mostly zeros, a few large values), so a wider table often
    costs less.  Only the encoder searches; the decoder reads the indices.
    """
    fitted = _fitted_scales(values, ids, n_tiles, tables)
    candidates = np.clip(fitted[:, None] + np.arange(-SCALE_SEARCH, SCALE_SEARCH + 1)[None, :], 0, len(tables.scales) - 1)
    cost = np.stack([np.bincount(ids, weights=tables.code_lengths(values, c[ids]), minlength=n_tiles) for c in candidates.T], 1)
    return candidates[np.arange(n_tiles), np.argmin(cost, 1)]


def _west_prediction_error(q: np.ndarray, rho: float) -> np.ndarray:
    """``q`` minus ``rho`` times its western neighbour, rounded (0 west of the first column)."""
    west = np.zeros_like(q)
    west[:, 1:] = q[:, :-1]
    return q - np.rint(rho * west).astype(np.int64)


def _undo_west_prediction(d: np.ndarray, valid: np.ndarray, rho: float) -> np.ndarray:
    """Inverse of :func:`_west_prediction_error` (0 at missing points), one column at a time."""
    q = np.zeros_like(d)
    west = np.zeros(d.shape[0], np.int64)
    for j in range(d.shape[1]):  # each column depends on the one before; vectorized down the column
        q[:, j] = np.where(valid[:, j], d[:, j] + np.rint(rho * west).astype(np.int64), 0)
        west = q[:, j]
    return q


def _code_integers(q: np.ndarray, valid: np.ndarray, coder: int = 1) -> tuple[int, bytes]:
    """Entropy-code integer residuals ``q`` (0 at missing points) at ``valid`` points with a per-tile
    table (coder 1: a Gaussian scale; coder 2: the cheapest Laplace-with-zero-spike table), after the
    western prediction that costs fewest bits; returns its index and the bytes."""
    tables = gaussian.default_tables()
    ids = _tile_ids(q.shape)[valid]
    n_tiles = int(np.prod(_tiles(q.shape)))
    errors = [_west_prediction_error(q, rho)[valid] for rho in WEST_WEIGHTS]
    costs = []
    for e in errors:  # compared with RMS-fitted tables; only the winner gets the table search
        if e.size and np.abs(e).max() >= 1 << (gaussian.ESCAPE_BITS - 1):  # beyond the escape code (q itself never is)
            costs.append(np.inf)
            continue
        costs.append(tables.code_lengths(e, _fitted_scales(e, ids, n_tiles, tables)[ids]).sum())
    predictor = int(np.argmin(costs))
    values = errors[predictor]
    if coder == 1:
        tile_index = _tile_scales(values, ids, n_tiles, tables).astype(np.uint8)
    else:
        tables = laplace.default_tables()
        tile_index = tables.cheapest_per_group(values, ids, n_tiles).astype(np.uint8)
    head = zlib.compress(tile_index.tobytes(), 9)
    return predictor, _U32.pack(len(head)) + head + gaussian.encode(values, tile_index[ids], tables)


def _decode_integers(data: bytes, shape: tuple[int, int], valid: np.ndarray, predictor: int, coder: int = 1) -> np.ndarray:
    tables = gaussian.default_tables() if coder == 1 else laplace.default_tables()
    n_tiles = int(np.prod(_tiles(shape)))
    if len(data) < _U32.size:
        raise CorruptStreamError("residual stream truncated")
    (n,) = _U32.unpack_from(data)
    try:
        inflate = zlib.decompressobj()
        tile_index = np.frombuffer(inflate.decompress(data[_U32.size : _U32.size + n], n_tiles + 1), np.uint8)
    except zlib.error:
        raise CorruptStreamError("residual tile table is corrupt") from None
    if tile_index.size != n_tiles or np.any(tile_index >= len(tables.freqs)):
        raise CorruptStreamError("residual tile table does not match the field")
    d = np.zeros(shape, np.int64)
    d[valid] = gaussian.decode(data[_U32.size + n :], tile_index[_tile_ids(shape)[valid]].astype(np.int64), tables)
    return _undo_west_prediction(d, valid, WEST_WEIGHTS[predictor]) if predictor else d


_FLOAT, _PACKED, _INTERP_FLOAT, _INTERP_PACKED, _INTERP2_FLOAT, _INTERP2_PACKED, _TILES2_FLOAT, _TILES2_PACKED = range(8)  # low nibble of the leading byte
CODERS = (1, 2)  # 1: interpolation version 1 (field records 1-3); 2: version 2 (records 4)
MAX_STEPS = 1 << 30  # residuals of more quantization steps than this are stored exactly


def _float32_slack(x: np.ndarray) -> float:
    """A few float32 ulps of the largest magnitude: the rounding a float32 reader adds to packed values."""
    return 4 * float(np.finfo(np.float32).eps) * float(np.nanmax(np.abs(x), initial=0.0))


def encode(
    x: np.ndarray,
    recon: np.ndarray,
    bound: float,
    packing: tuple[float, float] | None,
    dtype: np.dtype,
    int_range: tuple[int, int] | None = None,
    coder: int = 1,
) -> tuple[bytes, np.ndarray]:
    """Residual bytes and the bounded reconstruction (float64, NaN where ``x`` is NaN).

    The residual is coded both by multilevel interpolation (:mod:`codec.climate.interp`; with
    ``coder`` 2, its version 2 at each of :data:`interp.ALPHAS`) and by the tile coder; the shortest
    wins.  Packed fields use the integer domain when ``x`` lies on its packing grid and the bound
    spans at least one grid step, otherwise (and for floats) the float domain.  The first byte says
    which coder and domain.
    """
    valid = ~np.isnan(x)
    alphas = (None,) if coder == 1 else interp.ALPHAS
    if packing is not None:
        e_int = _integer_half_step(x, valid, bound, packing)
        if 0 <= e_int < MAX_STEPS:
            candidates = [_encode_packed_interp(x, recon, valid, e_int, packing, int_range, a) for a in alphas]
            candidates.append(_encode_packed_tiles(x, recon, valid, e_int, packing, int_range, coder))
            return min(candidates, key=lambda c: len(c[0]))
    candidates = [_encode_float_interp(x, recon, valid, bound, dtype, a) for a in alphas]
    candidates.append(_encode_float_tiles(x, recon, valid, bound, dtype, coder))
    return min(candidates, key=lambda c: len(c[0]))


def _integers(x: np.ndarray, valid: np.ndarray, packing: tuple[float, float]) -> np.ndarray:
    """The packed integers ``k`` nearest to ``x`` (0 at missing points), as floats."""
    scale, offset = packing
    return np.where(valid, np.rint((np.nan_to_num(x) - offset) / scale), 0)


def _integer_half_step(x: np.ndarray, valid: np.ndarray, bound: float, packing: tuple[float, float]) -> int:
    """``e``: integer steps within the bound after the off-grid distance of ``x`` and a reader's float32 rounding."""
    scale, offset = packing
    off_grid = float(np.max(np.abs(np.nan_to_num(x) - (offset + scale * _integers(x, valid, packing)))[valid], initial=0.0))
    return int(np.floor((bound - off_grid - _float32_slack(x)) / abs(scale)))


def _fix_table(bad: np.ndarray, exact: np.ndarray) -> bytes:
    """The points stored exactly: count, flat indices, float64 values (:func:`decode` reads them first)."""
    return _U32.pack(bad.size) + bad.astype("<u4").tobytes() + exact.astype("<f8").tobytes()


def _encode_packed_tiles(
    x: np.ndarray,
    recon: np.ndarray,
    valid: np.ndarray,
    e_int: int,
    packing: tuple[float, float],
    int_range: tuple[int, int] | None,
    coder: int = 1,
) -> tuple[bytes, np.ndarray]:
    step = 2 * e_int + 1
    q = np.floor_divide(_integers(x, valid, packing) - _base_integers(recon, packing, int_range) + e_int, step).astype(np.int64)
    q[~valid] = 0
    predictor, coded = _code_integers(q, valid, coder)
    mode = _PACKED if coder == 1 else _TILES2_PACKED
    return bytes([mode | predictor << 4]) + _U32.pack(e_int) + coded, _packed_output(q * step, recon, valid, packing, int_range)


def _encode_float_tiles(x: np.ndarray, recon: np.ndarray, valid: np.ndarray, bound: float, dtype: np.dtype, coder: int = 1) -> tuple[bytes, np.ndarray]:
    steps = np.where(valid, np.rint((np.nan_to_num(x) - recon) / (2 * bound)), 0)
    far = ~(np.abs(steps) <= MAX_STEPS)  # also catches non-finite residuals
    q = np.where(far, 0, steps).astype(np.int64)
    out = np.where(valid, (recon + q * (2 * bound)).astype(dtype).astype(np.float64), np.nan)
    bad = np.flatnonzero(valid & (far | ~(np.abs(out - np.nan_to_num(x)) <= bound)))
    exact = x.ravel()[bad].astype(np.float64)
    out.ravel()[bad] = exact
    predictor, coded = _code_integers(q, valid, coder)
    mode = _FLOAT if coder == 1 else _TILES2_FLOAT
    return bytes([mode | predictor << 4]) + _fix_table(bad, exact) + coded, out


def _packed_half_step(e_int: int, divisor: float) -> int:
    """The integer half step of a pass whose step is divided by ``divisor`` (interpolation version 2)."""
    return int(np.floor(e_int / divisor))


def _encode_packed_interp(
    x: np.ndarray,
    recon: np.ndarray,
    valid: np.ndarray,
    e_int: int,
    packing: tuple[float, float],
    int_range: tuple[int, int] | None,
    alpha: float | None = None,
) -> tuple[bytes, np.ndarray]:
    """Integer residuals ``k - k_hat`` coded by interpolation with the odd step ``2 e + 1`` (``alpha``:
    interpolation version 2 with that level-step growth, each pass's ``e`` divided down)."""
    target = _integers(x, valid, packing) - _base_integers(recon, packing, int_range)

    def quantize(p: np.ndarray, rows: np.ndarray, cols: np.ndarray, divisor: float) -> tuple[np.ndarray, np.ndarray]:
        e = _packed_half_step(e_int, divisor)
        guess = np.rint(p)
        k = np.floor_divide(target[np.ix_(rows, cols)] - guess + e, 2 * e + 1).astype(np.int64)
        return k, guess + k * (2 * e + 1)

    if alpha is None:
        coded, rec = interp.encode(x.shape, valid, quantize)
        mode = _INTERP_PACKED
    else:
        coded, rec = interp.encode(x.shape, valid, quantize, version=2, unit=2 * e_int + 1, alpha=alpha)
        mode = _INTERP2_PACKED
    return bytes([mode]) + _U32.pack(e_int) + coded, _packed_output(rec, recon, valid, packing, int_range)


def _base_integers(recon: np.ndarray, packing: tuple[float, float], int_range: tuple[int, int] | None) -> np.ndarray:
    scale, offset = packing
    return _clip(np.rint((np.nan_to_num(recon) - offset) / scale), int_range)


def _packed_output(rec: np.ndarray, recon: np.ndarray, valid: np.ndarray, packing: tuple[float, float], int_range: tuple[int, int] | None) -> np.ndarray:
    """Values of the integers ``k_hat + rec`` (clipped to the storable range), NaN at missing points."""
    scale, offset = packing
    return np.where(valid, offset + scale * _clip(_base_integers(recon, packing, int_range) + rec, int_range), np.nan)


def _encode_float_interp(x: np.ndarray, recon: np.ndarray, valid: np.ndarray, bound: float, dtype: np.dtype, alpha: float | None = None) -> tuple[bytes, np.ndarray]:
    """Float residuals ``x - recon`` coded by interpolation with step ``2 E`` (``alpha``: interpolation version 2,
    each pass's step divided down); points the output dtype or the step cannot bring within the bound
    are stored exactly (listed up front, so predictions use them)."""
    target = np.where(valid, np.nan_to_num(x) - recon, 0.0)
    fixed = np.zeros(x.shape, bool)

    def quantize(p: np.ndarray, rows: np.ndarray, cols: np.ndarray, divisor: float) -> tuple[np.ndarray, np.ndarray]:
        t = target[np.ix_(rows, cols)]
        step = 2 * bound / divisor
        steps = np.rint((t - p) / step)
        far = ~(np.abs(steps) <= MAX_STEPS)
        k = np.where(far, 0, steps).astype(np.int64)
        r = p + k * step
        out = (recon[np.ix_(rows, cols)] + r).astype(dtype).astype(np.float64)
        bad = valid[np.ix_(rows, cols)] & (far | ~(np.abs(out - np.nan_to_num(x[np.ix_(rows, cols)])) <= bound))
        fixed[np.ix_(rows, cols)] = bad
        if alpha is None:  # version 1: exact points enter the reconstruction with code 0
            return np.where(bad, 0, k), np.where(bad, t, r)
        # version 2: the reconstruction stays a function of the codes alone (its curvature picks the tables,
        # and ``t`` depends on the network's float32 output, which another CPU rounds differently); exact
        # values only replace the output
        return k, r

    if alpha is None:
        coded, rec = interp.encode(x.shape, valid, quantize)
        mode = _INTERP_FLOAT
    else:
        coded, rec = interp.encode(x.shape, valid, quantize, version=2, unit=2 * bound, alpha=alpha)
        mode = _INTERP2_FLOAT
    bad = np.flatnonzero(fixed)
    exact = x.ravel()[bad].astype(np.float64)
    out = np.where(valid, (recon + rec).astype(dtype).astype(np.float64), np.nan)
    out.ravel()[bad] = exact
    return bytes([mode]) + _fix_table(bad, exact) + coded, out


def _clip(k: np.ndarray, int_range: tuple[int, int] | None) -> np.ndarray:
    return k if int_range is None else np.clip(k, *int_range)


def decode(
    data: bytes,
    recon: np.ndarray,
    valid: np.ndarray,
    bound: float,
    packing: tuple[float, float] | None,
    dtype: np.dtype,
    int_range: tuple[int, int] | None = None,
    coder: int = 2,
) -> np.ndarray:
    """Inverse of :func:`encode`, given the same network reconstruction and validity mask (``coder``: the
    newest coder the record may use; coder 1 records never hold modes 4-7)."""
    shape = recon.shape
    if len(data) < 1 + _U32.size:
        raise CorruptStreamError("residual stream truncated")
    mode, predictor, (n,) = data[0] & 0x0F, data[0] >> 4, _U32.unpack_from(data, 1)
    if coder == 1 and mode >= _INTERP2_FLOAT:
        raise CorruptStreamError("unknown residual coding mode")
    if predictor >= len(WEST_WEIGHTS):
        raise CorruptStreamError("unknown residual predictor")
    body = data[1 + _U32.size :]
    if mode in (_PACKED, _INTERP_PACKED, _INTERP2_PACKED, _TILES2_PACKED):
        if packing is None or n >= MAX_STEPS:
            raise CorruptStreamError("residual stream is packed but the variable is not")
        if mode in (_PACKED, _TILES2_PACKED):
            rec = _decode_integers(body, shape, valid, predictor, 1 if mode == _PACKED else 2) * (2 * n + 1)
        else:

            def dequantize_packed(p: np.ndarray, k: np.ndarray, rows: np.ndarray, cols: np.ndarray, divisor: float) -> np.ndarray:
                return np.rint(p) + k * (2 * _packed_half_step(n, divisor) + 1)

            version = 1 if mode == _INTERP_PACKED else 2
            rec = interp.decode(body, shape, valid, dequantize_packed, version=version, unit=2 * n + 1)
        return _packed_output(rec, recon, valid, packing, int_range)
    if mode not in (_FLOAT, _INTERP_FLOAT, _INTERP2_FLOAT, _TILES2_FLOAT):
        raise CorruptStreamError("unknown residual coding mode")
    end = 12 * n
    if n > recon.size or len(body) < end:
        raise CorruptStreamError("residual correction table is corrupt")
    bad = np.frombuffer(body[: 4 * n], "<u4").astype(np.int64)
    exact = np.frombuffer(body[4 * n : end], "<f8")
    if np.any(bad >= recon.size):
        raise CorruptStreamError("residual correction index out of range")
    if mode in (_INTERP_FLOAT, _INTERP2_FLOAT):
        exact_r = np.full(shape, np.nan)
        if mode == _INTERP_FLOAT:  # version 1 rebuilt exact points from the network output
            exact_r.ravel()[bad] = exact - recon.ravel()[bad]

        def dequantize(p: np.ndarray, k: np.ndarray, rows: np.ndarray, cols: np.ndarray, divisor: float) -> np.ndarray:
            e = exact_r[np.ix_(rows, cols)]
            return np.where(np.isnan(e), p + k * (2 * bound / divisor), e)

        version = 1 if mode == _INTERP_FLOAT else 2
        rec = interp.decode(body[end:], shape, valid, dequantize, version=version, unit=2 * bound)
        out = np.where(valid, (recon + rec).astype(dtype).astype(np.float64), np.nan)
    else:
        q = _decode_integers(body[end:], shape, valid, predictor, 1 if mode == _FLOAT else 2)
        out = np.where(valid, (recon + q * (2 * bound)).astype(dtype).astype(np.float64), np.nan)
    out.ravel()[bad] = exact
    return out
