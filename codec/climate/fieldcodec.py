"""One 2-D field <-> one record of bytes: normalization, the grid, the VAEformer, and the optional error bound.

Record layout (little-endian)::

    mean f8, std f8        normalization of this field (its valid points); NaN mean = no valid point
    len_z u4, len_y u4, len_r u4
    grid u1                (record versions 2, 3) log2 of the factor s of the coded grid; 255 = no network
    low f4, high f4        (record version 3) the field's range over its valid points, rounded outwards
    flags u1               (record version 5) bit 0: the decoded values are rounded to integers
    z, y                   the VAEformer's hyper-latent and latent bytes
    r                      residual bytes of the error bound (empty without a bound)

**Grid.**  Fine grids (ERA5's 0.25 degrees) are much smoother per point than the fields the network
learned from, and the network's bits go per point.  From record version 2 the encoder may code the
field's block means on a grid ``s`` times coarser (``s`` in :data:`GRID_FACTORS`, each coarse cell
the mean of the valid points of an ``s x s`` block; a cell without one is missing) and the decoder
brings the network's output back to the field's grid by cubic (Catmull-Rom) interpolation; the residual layer
(error bounds, refinement qualities) then codes what is left at every point.  The encoder keeps
the grid with the lowest rate-distortion Lagrangian the network was trained with,
``lambda_l * MSE + bits per point`` (MSE in field standard deviations, :meth:`LevelCoder.trade_off`,
over the field's own points), by a local search: it starts at the finest grid of at most
:data:`SEARCH_START_POINTS` points (a 0.25-degree field at 1/8), moves to finer grids while each
costs less than the last, and if the first finer one did not, to coarser ones while they do.  A
finer grid of more than that many points is first tried on four windows of the field (each about
:data:`PROBE_POINTS` points of the finer grid, the coarser grid on the same windows beside it) and on
the whole field only if it wins there: the encoder then codes a large field on two grids it rejects
at a twentieth of the network time (the format is unchanged; only the encoder's search is).  A
field of at most that many points (2.5 degrees) is coded on its own grid: there every trial costs
a whole network pass, and coarser grids bought little.  The choice ignores any bound, so a refinement quality or a bounded
file holds the same network bytes as its network level without a bound, plus the residual.  With an
explicit bound (``--max-abs-error``) the encoder also codes the field by the residual coder alone,
around its mean, and keeps that record (grid byte 255, no network bytes) when it is shorter: on
smooth fine grids at tight bounds the network's texture costs the interpolation more than it saves.
From record version 4 the refinement qualities (q4, q5) search the residual alone as the network levels
do (below: bounds of a few multiples of the refined record's RMSE, none above the quality's pointwise
bound) and keep it only when it is both shorter and at least as accurate (MSE), so they never trade
accuracy for bytes.  (A first version tried only the quality's own bound: the residual alone there is
less accurate than the network plus its refinement, so it was rarely kept; the search bought 1.17x the
ratio on the 0.25-1 degree validation fields.)

**Version 4.**  The residual layer uses coder 2 of :mod:`codec.climate.errorbound` (level-wise
steps, curvature contexts, Laplace tables) and the network's hyperprior runs in float64, so the table
each latent symbol is coded with is the same on every CPU.  A residual-alone record (grid byte 255)
starts its residual with the bound it was coded at (f8), and network levels use such records too:
where the network codes a field on its own grid or one 2x coarser (rough fields: snow, cloud,
precipitation; only fields large enough for the grid search, whose choice is the sign: on coarse
grids the network is the better coder and the trials cost 2x the encode time for nothing), the
encoder also codes the field by the residual coder alone at bounds of a few
multiples of the network's RMSE (:data:`ALONE_FACTORS`, a local search: from 2x to looser bounds while
each stays at least as accurate (MSE) as the network's record, or to finer ones while not) and keeps the
loosest accurate one if it is shorter than the network's record: on fields with exactly
zero or flat regions the residual coder's error is far below its bound there, so it often wins on
both counts.  Otherwise the layout is that of version 3.

**Integers.**  From record version 5 a field whose valid values are all integers (precipitation type,
soil and vegetation types, counts: categories that GRIB and float netCDF store as floats) may decode
to integers: the encoder rounds what the decoder will give and sets flag bit 0 only when that is no
worse at any point (so every bound and every quality's promise still holds); a category
then decodes as a category, not as 3.7.  Packed and integer-typed variables already snap to their
integer grid (:mod:`codec.climate.errorbound`) and never set it.  Otherwise the layout is that of version 4.

**Range.**  From record version 3 every decoded point is clipped to the source field's own range
(``low``, ``high``): the true value lies in it, so clipping only ever moves a decoded point closer
(RMSE and max error can only drop, a bound keeps holding), and a field that is never negative
(precipitation, snow depth, cloud cover) never decodes negative, nor above its own maximum.

A field's bound is the smaller of the variable's absolute bound (``--max-abs-error``) and, at a
refinement quality, the quality's relative bound times the field's ``std`` as stored in the record.

The network sees the field normalized to zero mean and unit variance (missing points set to 0)
together with its validity mask, so one model serves every variable and unit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import CorruptStreamError
from ..models.vaeformer import LevelCoder
from . import errorbound

_HEAD = struct.Struct("<ddIII")
_HEAD_V2 = struct.Struct("<ddIIIB")
_HEAD_V3 = struct.Struct("<ddIIIBff")
_HEAD_V5 = struct.Struct("<ddIIIBffB")
RECORD_VERSIONS = (1, 2, 3, 4, 5)
INTEGERS = 1  # record version 5 flag: decoded values are rounded to integers
MAX_INTEGER = 1 << 24  # integer-valued fields: only values float32 holds exactly
GRID_FACTORS = (1, 2, 4, 8, 16)  # coded grid = field grid / s
NO_NETWORK, NO_NETWORK_CODE = 0, 255  # grid byte 255: no network bytes, the residual codes the field around its mean
MIN_GRID_POINTS = 16  # a coarse grid keeps at least this many rows and columns (or the field's own, if fewer)
SEARCH_START_POINTS = 1 << 15  # the grid search starts at the finest grid with at most this many points
ALONE_MAX_GRID = 2  # record version 4, network levels: fields the network codes on grids at most this coarse also try the residual alone
ALONE_FACTORS = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0)  # ... at bounds of these multiples of the network's RMSE (searched from ALONE_START)
ALONE_START = 2.0
PROBE_CENTRES = ((0.25, 0.125), (0.25, 0.625), (0.75, 0.375), (0.75, 0.875))  # windows a finer grid is tried on first (fractions of rows, columns)
PROBE_POINTS = 1 << 13  # ... each about this many points of the finer grid
_BOUND = struct.Struct("<d")
MAX_STORED_BOUND = 1e290  # a larger stored bound is corrupt (steps of 2^30 bounds would overflow float64)


@dataclass(frozen=True)
class FieldSpec:
    """What the decoder must know of a field besides its record."""

    shape: tuple[int, int]
    dtype: np.dtype
    bound: float | None = None
    packing: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None  # storable integers of a packed variable
    record_version: int = 1  # 2: the encoder chooses the coded grid; 3: and the record holds the field's range; 4: residual coder 2;
    # 5: and a flags byte (integer-valued fields)

    @property
    def head(self) -> struct.Struct:
        """The record header of this version."""
        return {2: _HEAD_V2, 3: _HEAD_V3, 4: _HEAD_V3, 5: _HEAD_V5}.get(self.record_version, _HEAD)

    @property
    def residual_coder(self) -> int:
        """The residual coder of :mod:`codec.climate.errorbound` (2 from record version 4)."""
        return 2 if self.record_version >= 4 else 1

    @property
    def exact_prior(self) -> bool:
        """Whether the network's hyperprior runs in float64 (from record version 4; :meth:`VAEformer._prior`)."""
        return self.record_version >= 4

    def grid_factors(self) -> tuple[int, ...]:
        """Factors the encoder may try, coarsest first (only 1 in version 1 records)."""
        if self.record_version == 1:
            return (1,)
        fits = [s for s in GRID_FACTORS if s == 1 or min(-(-n // s) for n in self.shape) >= MIN_GRID_POINTS]
        return tuple(reversed(fits))


def normalize(field: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(field - mean) / std`` with missing (NaN) points set to 0, float64."""
    return np.where(np.isnan(field), 0.0, (np.nan_to_num(field) - mean) / std)


def network_input(field: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """[1, 2, H, W] float32: the normalized field (0 where missing) and its validity mask."""
    valid = ~np.isnan(field)
    return torch.from_numpy(np.stack([normalize(field, mean, std), valid.astype(np.float64)])[None].astype(np.float32))


def field_stats(field: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the valid points (std 1 for a constant field; NaN mean if none)."""
    valid = field[~np.isnan(field)]
    if valid.size == 0:
        return float("nan"), 1.0
    std = float(valid.std())
    return float(valid.mean()), std if std > 0 else 1.0


def _blocks(a: np.ndarray, s: int, fill: object) -> np.ndarray:
    """``a`` padded with ``fill`` to whole ``s x s`` blocks, as [rows, s, columns, s]."""
    h, w = a.shape
    padded = np.full((-(-h // s) * s, -(-w // s) * s), fill, dtype=a.dtype)
    padded[:h, :w] = a
    return padded.reshape(padded.shape[0] // s, s, padded.shape[1] // s, s)


def block_means(field: np.ndarray, s: int) -> np.ndarray:
    """Means of the valid points of each ``s x s`` block (the last ones cut by the field's edge), NaN where none is valid."""
    if s == 1:
        return field
    blocks = _blocks(np.asarray(field, dtype=np.float64), s, np.nan)
    valid = ~np.isnan(blocks)
    count = valid.sum((1, 3))
    total = np.where(valid, blocks, 0.0).sum((1, 3))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def coarse_valid(valid: np.ndarray, s: int) -> np.ndarray:
    """Validity of the coarse grid: a cell is valid when any point of its block is."""
    return valid if s == 1 else _blocks(valid, s, False).any((1, 3))


def _catmull_rom(t: float) -> np.ndarray:
    """Weights of the 4 samples around a point a fraction ``t`` past the second (cubic convolution, a = -0.5:
    exact on quadratics, unlike the a = -0.75 of torch's bicubic)."""
    return np.array([(-t**3 + 2 * t**2 - t) / 2, (3 * t**3 - 5 * t**2 + 2) / 2, (-3 * t**3 + 4 * t**2 + t) / 2, (t**3 - t**2) / 2])


def _upsample_rows(c: np.ndarray, s: int, n: int, periodic: bool) -> np.ndarray:
    """Interpolate the rows of ``c`` (cell i at the centre of rows ``i s .. i s + s - 1``) to ``n`` rows."""
    padded = np.concatenate([c[-2:], c, c[:2]]) if periodic else np.concatenate([c[:1], c[:1], c, c[-1:], c[-1:]])
    m = c.shape[0]
    out = np.empty((m * s, *c.shape[1:]))
    for phase in range(s):
        u = (phase + 0.5) / s - 0.5  # position relative to the cell, in cells
        first = int(np.floor(u))
        w = _catmull_rom(u - first)
        start = 2 + first - 1
        out[phase::s] = sum(w[k] * padded[start + k : start + k + m] for k in range(4))
    return out[:n]


def upsample(coarse: np.ndarray, s: int, shape: tuple[int, int], periodic: bool = True) -> np.ndarray:
    """Cubic interpolation (float64) of a coarse grid [h, w] of block means to the field's ``shape``.

    Coarse cell ``i`` sits at the centre of its block.  Separable Catmull-Rom, with two cells of
    padding: periodic along longitude when the blocks tile the rows exactly (and ``periodic``: a
    window of a field is not), replicated otherwise and along latitude.
    """
    x = np.asarray(coarse, dtype=np.float64)
    if s == 1:
        return x
    x = _upsample_rows(x, s, shape[0], periodic=False)
    return _upsample_rows(x.T, s, shape[1], periodic=periodic and shape[1] % s == 0 and x.shape[1] >= 2).T


def _network_output(net: LevelCoder, z: bytes, y: bytes, s: int, valid: np.ndarray, mean: float, std: float, exact: bool) -> np.ndarray:
    """The decoder's field (float64, NaN where not ``valid``) from the network's bytes for the grid of factor ``s``
    (``exact``: the float64 hyperprior of records from version 4)."""
    return _on_field_grid(net.decompress([z, y], coarse_valid(valid, s).shape, exact), s, valid, mean, std)


def _on_field_grid(x_hat: torch.Tensor, s: int, valid: np.ndarray, mean: float, std: float, periodic: bool = True) -> np.ndarray:
    """The network's normalized output [1, 1, h, w] on the grid of factor ``s`` -> the field (float64, NaN where not ``valid``)."""
    out = upsample(x_hat[0, 0].detach().double().numpy(), s, valid.shape, periodic) * std + mean
    return np.where(valid, out, np.nan)


def field_range(field: np.ndarray) -> tuple[float, float]:
    """The valid points' ``(min, max)`` as float32 values rounded outwards (so the range holds every point)."""
    lo, hi = np.float32(np.nanmin(field)), np.float32(np.nanmax(field))
    lo = lo if lo <= np.nanmin(field) else np.nextafter(lo, np.float32(-np.inf))
    hi = hi if hi >= np.nanmax(field) else np.nextafter(hi, np.float32(np.inf))
    return float(lo), float(hi)


def encode(net: LevelCoder, field: np.ndarray, spec: FieldSpec) -> tuple[bytes, np.ndarray]:
    """Record bytes of ``field`` (float64, NaN = missing) and the reconstruction a decoder will produce."""
    record, out = _encode(net, field, spec)
    if spec.record_version < 5 or spec.packing is not None or not _integer_valued(field):
        return record, out
    rounded = np.round(out)
    valid = ~np.isnan(field)
    if valid.any() and np.all(np.abs(rounded - field)[valid] <= np.abs(out - field)[valid]):  # (so max error and MSE too)
        return record[: spec.head.size - 1] + bytes([INTEGERS]) + record[spec.head.size :], rounded
    return record, out


def _integer_valued(field: np.ndarray) -> bool:
    """Whether every valid value of ``field`` is an integer that float32 holds exactly."""
    values = field[~np.isnan(field)]
    return bool(values.size) and bool(np.all(values == np.round(values))) and float(np.abs(values).max()) <= MAX_INTEGER


def _encode(net: LevelCoder, field: np.ndarray, spec: FieldSpec) -> tuple[bytes, np.ndarray]:
    """:func:`encode` without the integer flag (version 5 records carry flags 0 here)."""
    mean, std = field_stats(field)
    if np.isnan(mean):
        return _record(spec, mean, std, b"", b"", b"", 1, (np.nan, np.nan)), np.full(spec.shape, np.nan)
    valid = ~np.isnan(field)
    span = field_range(field) if spec.record_version >= 3 else None
    z, y, s, recon = _best_grid(net, field, valid, spec, mean, std, span)
    bound = field_bound(net, spec, std)
    if bound is None:
        record, out = _record(spec, mean, std, z, y, b"", s, span), _clip(recon, span)
        if spec.record_version >= 4 and s <= ALONE_MAX_GRID and np.prod(spec.shape) > SEARCH_START_POINTS:
            return _residual_alone_if_better(field, valid, spec, mean, std, span, record, out)
        return record, out
    r, out = errorbound.encode(field, recon, bound, spec.packing, spec.dtype, spec.int_range, spec.residual_coder)
    record, out = _record(spec, mean, std, z, y, r, s, span), _clip(out, span)
    if spec.bound is None and spec.record_version >= 4:  # a refinement quality: its RMSE is what it promises
        return _residual_alone_if_better(field, valid, spec, mean, std, span, record, out, bound)
    if spec.bound is not None and spec.record_version >= 2:  # an explicit bound is what the user asked for: shorter wins
        alone, out0 = _residual_alone(field, valid, spec, mean, std, span, bound)
        if len(alone) < len(record):
            return alone, out0
    return record, out


def _mse(field: np.ndarray, out: np.ndarray, valid: np.ndarray) -> float:
    return float(np.mean((field - out)[valid] ** 2))


def _residual_alone(
    field: np.ndarray, valid: np.ndarray, spec: FieldSpec, mean: float, std: float, span: tuple[float, float] | None, bound: float
) -> tuple[bytes, np.ndarray]:
    """The record of ``field`` coded by the residual coder alone around its mean at ``bound`` (grid byte 255;
    from record version 4 the residual starts with the bound, f8), and what it decodes to."""
    r, out = errorbound.encode(field, np.where(valid, mean, np.nan), bound, spec.packing, spec.dtype, spec.int_range, spec.residual_coder)
    head = _BOUND.pack(bound) if spec.record_version >= 4 else b""
    return _record(spec, mean, std, b"", b"", head + r, NO_NETWORK, span), _clip(out, span)


def _residual_alone_if_better(
    field: np.ndarray,
    valid: np.ndarray,
    spec: FieldSpec,
    mean: float,
    std: float,
    span: tuple[float, float] | None,
    record: bytes,
    out: np.ndarray,
    limit: float = np.inf,
) -> tuple[bytes, np.ndarray]:
    """``(record, out)`` of the network (plus its refinement), or of the residual coder alone when that is both
    shorter and no less accurate (MSE).  Bounds tried: ``c`` x the record's RMSE, ``c`` from :data:`ALONE_START`
    up through :data:`ALONE_FACTORS` while each stays as accurate as the network (the last such one is kept: the
    loosest, so the shortest), or down while too inaccurate and still shorter; none above ``limit`` (a refinement
    quality's pointwise bound).  On fields with exactly zero or flat regions the residual coder's error lies far
    below its bound, so the accurate bound can be many times the network's RMSE."""
    mse = _mse(field, out, valid)
    if mse == 0:
        return record, out
    bounds = sorted({min(c * mse**0.5, limit) for c in ALONE_FACTORS})  # (distinct: the limit may cap several)

    def trial(bound: float) -> tuple[bytes, np.ndarray, bool]:
        candidate, alone = _residual_alone(field, valid, spec, mean, std, span, bound)
        return candidate, alone, _mse(field, alone, valid) <= mse

    i = top = bounds.index(min(ALONE_START * mse**0.5, limit))
    candidate, alone, accurate = trial(bounds[i])
    while not accurate and len(candidate) < len(record) and i > 0:  # finer: more bytes, less error
        i -= 1
        candidate, alone, accurate = trial(bounds[i])
    if not accurate:
        return record, out
    best = candidate, alone
    for bound in bounds[i + 1 :] if i == top else ():  # coarser (fewer bytes) while as accurate (bounds from the start up, if it was)
        candidate, alone, accurate = trial(bound)
        if not accurate:
            break
        best = candidate, alone
    return best if len(best[0]) < len(record) else (record, out)


def _clip(values: np.ndarray, span: tuple[float, float] | None) -> np.ndarray:
    """``values`` clipped to the field's range (record version 3; NaN stays NaN)."""
    return values if span is None else np.clip(values, *span)


def _best_grid(
    net: LevelCoder, field: np.ndarray, valid: np.ndarray, spec: FieldSpec, mean: float, std: float, span: tuple[float, float] | None
) -> tuple[bytes, bytes, int, np.ndarray]:
    """``(z, y, s, reconstruction)`` of the grid factor ``s`` with the lowest Lagrangian (local search, module docstring)."""

    def trial(s: int) -> tuple[float, bytes, bytes, int, np.ndarray]:
        z, y, recon = _coded(net, field, valid, s, mean, std, spec.exact_prior)
        rated = _clip(recon, span)  # the grid is judged on what the decoder will give
        return _lagrangian(net, [(field, rated, valid)], std, spec.head.size + len(z) + len(y)), z, y, s, recon

    factors = spec.grid_factors()  # coarsest first
    small = [i for i, s in enumerate(factors) if np.prod([-(-n // s) for n in spec.shape]) <= SEARCH_START_POINTS]
    start = small[-1] if small else 0
    best = trial(factors[start])
    for direction in (1, -1) if factors[start] != 1 else ():  # finer while that pays; if the first finer one did not, coarser
        i, moved = start + direction, False
        while 0 <= i < len(factors):
            if direction == 1 and i not in small and not _finer_pays_in_windows(net, field, valid, spec, mean, std, span, factors[i], best[3]):
                break
            candidate = trial(factors[i])
            if candidate[0] > best[0]:
                break
            best, moved, i = candidate, True, i + direction
        if moved:
            break
    return best[1:]


def _coded(
    net: LevelCoder, field: np.ndarray, valid: np.ndarray, s: int, mean: float, std: float, exact: bool, periodic: bool = True
) -> tuple[bytes, bytes, np.ndarray]:
    """The network's bytes ``(z, y)`` of ``field`` on the grid of factor ``s`` and the field they decode to
    (``periodic``: a whole field, whose longitude wraps around; not a window of one)."""
    (z, y), x_hat = net.compress_with_output(network_input(block_means(field, s), mean, std), exact)
    return z, y, _on_field_grid(x_hat, s, valid, mean, std, periodic)  # = _network_output(net, z, y, ...), without decoding


def probe_windows(shape: tuple[int, int], fine: int, coarse: int) -> list[tuple[slice, slice]] | None:
    """The windows of :func:`_finer_pays_in_windows`: at :data:`PROBE_CENTRES`, each about :data:`PROBE_POINTS`
    points of the finer grid (rows : columns = 1 : 2), aligned to the coarser grid; None where they
    would cover more than half the field (then the whole field costs about as much)."""
    h, w = shape
    side = int(np.sqrt(PROBE_POINTS / 2)) * fine
    wh = min(max(MIN_GRID_POINTS * coarse, side // coarse * coarse), h // coarse * coarse)
    ww = min(max(MIN_GRID_POINTS * coarse, 2 * side // coarse * coarse), w // coarse * coarse)
    if 2 * len(PROBE_CENTRES) * wh * ww > h * w:
        return None
    windows = []
    for fr, fc in PROBE_CENTRES:
        r0 = min(max(int(fr * h - wh / 2) // coarse * coarse, 0), (h - wh) // coarse * coarse)
        c0 = min(max(int(fc * w - ww / 2) // coarse * coarse, 0), (w - ww) // coarse * coarse)
        windows.append((slice(r0, r0 + wh), slice(c0, c0 + ww)))
    return windows


def _finer_pays_in_windows(
    net: LevelCoder, field: np.ndarray, valid: np.ndarray, spec: FieldSpec, mean: float, std: float, span: tuple[float, float] | None, fine: int, coarse: int
) -> bool:
    """Whether the grid of factor ``fine`` has a Lagrangian no higher than that of ``coarse`` over a few
    windows of the field (:func:`probe_windows`): the grid search's test before it codes a large field
    on a finer grid.  Each finer grid costs 4x the network time of the last; on the 0.25-1 degree
    validation fields the windows never said no where the whole field said yes, so a "no" ends the search
    at a twentieth of the cost."""
    windows = probe_windows(field.shape, fine, coarse)
    if windows is None:
        return True
    windows = [w for w in windows if valid[w].any()]  # (an empty window's bytes would count against no points)
    if not windows:
        return True
    cost = {}
    for s in (fine, coarse):
        pieces, nbytes = [], 0
        for window in windows:
            z, y, recon = _coded(net, field[window], valid[window], s, mean, std, spec.exact_prior, periodic=False)
            pieces.append((field[window], _clip(recon, span), valid[window]))
            nbytes += len(z) + len(y)
        cost[s] = _lagrangian(net, pieces, std, nbytes)
    return cost[fine] <= cost[coarse]


def _record(spec: FieldSpec, mean: float, std: float, z: bytes, y: bytes, r: bytes, s: int, span: tuple[float, float] | None) -> bytes:
    extra = (NO_NETWORK_CODE if s == NO_NETWORK else s.bit_length() - 1,) if spec.record_version >= 2 else ()
    if spec.record_version >= 3:
        extra += tuple(span)
    if spec.record_version >= 5:
        extra += (0,)  # flags (:func:`encode` sets them)
    return spec.head.pack(mean, std, len(z), len(y), len(r), *extra) + z + y + r


def _lagrangian(net: LevelCoder, pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]], std: float, nbytes: int) -> float:
    """``lambda * MSE / std^2 + bits per point`` over the valid points of ``(field, reconstruction, valid)``
    pieces (the whole field, or the grid search's windows) that ``nbytes`` code."""
    squared = sum(float(np.sum(((f - r)[v] / std) ** 2)) for f, r, v in pieces)
    points = sum(int(v.sum()) for _, _, v in pieces)
    return net.trade_off * squared / points + 8 * nbytes / points


def field_bound(net: LevelCoder, spec: FieldSpec, std: float) -> float | None:
    """The pointwise bound of one field: the tighter of ``spec.bound`` and the quality's ``relative_bound * std``."""
    bounds = [b for b in (spec.bound, None if net.relative_bound is None else net.relative_bound * std) if b is not None]
    return min(bounds) if bounds else None


def decode(net: LevelCoder, record: bytes, spec: FieldSpec, valid: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode` given the field's validity mask."""
    head = spec.head
    if len(record) < head.size:
        raise CorruptStreamError("field record truncated")
    flags = record[head.size - 1] if spec.record_version >= 5 else 0
    if flags & ~INTEGERS:
        raise CorruptStreamError("field record has unknown flags (made by a newer version?)")
    out = _decode(net, record, spec, valid)
    return np.round(out) if flags & INTEGERS else out


def _decode(net: LevelCoder, record: bytes, spec: FieldSpec, valid: np.ndarray) -> np.ndarray:
    """:func:`decode` before the record's flags apply."""
    head = spec.head
    mean, std, lz, ly, lr, *extra = head.unpack_from(record)
    grid, span = extra[:1], (tuple(extra[1:3]) if spec.record_version >= 3 else None)
    s = 1 if not grid else NO_NETWORK if grid[0] == NO_NETWORK_CODE else 1 << min(grid[0], 31)
    if s not in (*GRID_FACTORS, NO_NETWORK) or (s == NO_NETWORK and (lz or ly or not lr)):
        raise CorruptStreamError("field record has an unknown grid factor")
    if head.size + lz + ly + lr != len(record):
        raise CorruptStreamError("field record lengths are inconsistent")
    if np.isnan(mean):
        return np.full(spec.shape, np.nan)
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise CorruptStreamError("field record has invalid normalization")
    if span is not None and not (np.isfinite(span).all() and span[0] <= span[1]):
        raise CorruptStreamError("field record has an invalid range")
    z = record[head.size : head.size + lz]
    y = record[head.size + lz : head.size + lz + ly]
    recon = np.where(valid, mean, np.nan) if s == NO_NETWORK else _network_output(net, z, y, s, valid, mean, std, spec.exact_prior)
    residual = record[head.size + lz + ly :]
    bound = field_bound(net, spec, std)
    if s == NO_NETWORK and spec.record_version >= 4:  # the residual alone, at the bound it carries
        if len(residual) < _BOUND.size:
            raise CorruptStreamError("field record truncated")
        (bound,) = _BOUND.unpack_from(residual)
        if not (0 < bound < MAX_STORED_BOUND):  # (NaN fails too)
            raise CorruptStreamError("field record has an invalid error bound")
        residual = residual[_BOUND.size :]
    if bound is None:
        return _clip(recon, span)
    return _clip(errorbound.decode(residual, recon, valid, bound, spec.packing, spec.dtype, spec.int_range, spec.residual_coder), span)
