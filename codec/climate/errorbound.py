"""Pointwise error bounds: code the quantized residual the network left, so ``|x - x'| <= E`` everywhere.

Given the original field ``x`` and the network's reconstruction ``r``, the residual is quantized
with a uniform step of ``2E`` (so each point lands within ``E``) and entropy-coded with Gaussian
tables whose scale is chosen per 16 x 16 tile.  Two cases keep the guarantee exact:

* Packed variables (stored as integers ``k`` with ``x = offset + scale * k``) are corrected in the
  integer domain with an odd step of ``2 * floor(E / scale) + 1``, so the bound holds after the
  netCDF writer packs the values again.
* Float variables are corrected in float64; points where rounding to the output dtype would still
  break the bound (only when ``E`` is near that dtype's resolution) are stored exactly.

Missing points (NaN) are skipped: they are restored from the mask, not from the residual.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..entropy import gaussian
from ..errors import CorruptStreamError

TILE = 16
_U32 = struct.Struct("<I")


def parse_bounds(text: str | float | dict | None) -> dict[str, float] | float | None:
    """``"0.5"`` -> 0.5 for every variable; ``"t=0.1,z=10"`` -> per-variable dict; validates positivity."""
    if text is None or isinstance(text, dict | float | int):
        bounds = text if not isinstance(text, int) else float(text)
    else:
        try:
            bounds = float(text) if "=" not in text else {k.strip(): float(v) for k, v in (p.split("=", 1) for p in text.split(","))}
        except ValueError:
            raise ValueError(f"--max-abs-error must be a number or NAME=NUMBER,...; got {text!r}") from None
    values = bounds.values() if isinstance(bounds, dict) else [bounds] if bounds is not None else []
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise ValueError("error bounds must be positive numbers")
    return bounds


def bound_for(bounds: dict[str, float] | float | None, name: str) -> float | None:
    """The bound that applies to variable ``name`` (None = no bound)."""
    return bounds.get(name) if isinstance(bounds, dict) else bounds


def _tiles(shape: tuple[int, int]) -> tuple[int, int]:
    return -(-shape[0] // TILE), -(-shape[1] // TILE)


def _tile_ids(shape: tuple[int, int]) -> np.ndarray:
    rows = np.arange(shape[0]) // TILE
    cols = np.arange(shape[1]) // TILE
    return rows[:, None] * _tiles(shape)[1] + cols[None, :]


def _code_integers(q: np.ndarray, valid: np.ndarray) -> bytes:
    """Entropy-code integer residuals ``q`` at ``valid`` points with a per-tile Gaussian scale."""
    tables = gaussian.default_tables()
    ids = _tile_ids(q.shape)[valid]
    values = q[valid].astype(np.int64)
    n_tiles = int(np.prod(_tiles(q.shape)))
    energy = np.bincount(ids, weights=values.astype(np.float64) ** 2, minlength=n_tiles)
    count = np.maximum(np.bincount(ids, minlength=n_tiles), 1)
    tile_index = tables.scale_index(np.sqrt(energy / count)).astype(np.uint8)
    head = zlib.compress(tile_index.tobytes(), 9)
    return _U32.pack(len(head)) + head + gaussian.encode(values, tile_index[ids], tables)


def _decode_integers(data: bytes, shape: tuple[int, int], valid: np.ndarray) -> np.ndarray:
    tables = gaussian.default_tables()
    n_tiles = int(np.prod(_tiles(shape)))
    if len(data) < _U32.size:
        raise CorruptStreamError("residual stream truncated")
    (n,) = _U32.unpack_from(data)
    try:
        tile_index = np.frombuffer(zlib.decompress(data[_U32.size : _U32.size + n]), np.uint8)
    except zlib.error:
        raise CorruptStreamError("residual tile table is corrupt") from None
    if tile_index.size != n_tiles or np.any(tile_index >= len(tables.scales)):
        raise CorruptStreamError("residual tile table does not match the field")
    q = np.zeros(shape, np.int64)
    q[valid] = gaussian.decode(data[_U32.size + n :], tile_index[_tile_ids(shape)[valid]].astype(np.int64), tables)
    return q


def encode(x: np.ndarray, recon: np.ndarray, bound: float, packing: tuple[float, float] | None, dtype: np.dtype) -> tuple[bytes, np.ndarray]:
    """Residual bytes and the bounded reconstruction (float64, NaN where ``x`` is NaN)."""
    valid = ~np.isnan(x)
    if packing is not None:
        scale, offset = packing
        k = np.where(valid, np.rint((np.nan_to_num(x) - offset) / scale), 0)
        k_hat = np.rint((np.nan_to_num(recon) - offset) / scale)
        e_int = int(np.floor(bound / abs(scale) * (1 + 1e-9)))
        step = 2 * e_int + 1
        q = np.floor_divide(k - k_hat + e_int, step).astype(np.int64)
        q[~valid] = 0
        out = offset + scale * (k_hat + q * step)
        return _code_integers(q, valid), np.where(valid, out, np.nan)
    q = np.where(valid, np.rint((np.nan_to_num(x) - recon) / (2 * bound)), 0).astype(np.int64)
    out = np.where(valid, (recon + q * (2 * bound)).astype(dtype).astype(np.float64), np.nan)
    bad = np.flatnonzero(valid & ~(np.abs(out - np.nan_to_num(x)) <= bound))
    exact = x.ravel()[bad].astype(np.float64)
    out.ravel()[bad] = exact
    fixes = _U32.pack(bad.size) + bad.astype("<u4").tobytes() + exact.astype("<f8").tobytes()
    return fixes + _code_integers(q, valid), out


def decode(data: bytes, recon: np.ndarray, valid: np.ndarray, bound: float, packing: tuple[float, float] | None, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`encode`, given the same network reconstruction and validity mask."""
    shape = recon.shape
    if packing is not None:
        scale, offset = packing
        step = 2 * int(np.floor(bound / abs(scale) * (1 + 1e-9))) + 1
        q = _decode_integers(data, shape, valid)
        out = offset + scale * (np.rint((recon - offset) / scale) + q * step)
        return np.where(valid, out, np.nan)
    if len(data) < _U32.size:
        raise CorruptStreamError("residual stream truncated")
    (n,) = _U32.unpack_from(data)
    end = _U32.size + 12 * n
    if n > recon.size or len(data) < end:
        raise CorruptStreamError("residual correction table is corrupt")
    bad = np.frombuffer(data[_U32.size : _U32.size + 4 * n], "<u4").astype(np.int64)
    exact = np.frombuffer(data[_U32.size + 4 * n : end], "<f8")
    if np.any(bad >= recon.size):
        raise CorruptStreamError("residual correction index out of range")
    q = _decode_integers(data[end:], shape, valid)
    out = np.where(valid, (recon + q * (2 * bound)).astype(dtype).astype(np.float64), np.nan)
    out.ravel()[bad] = exact
    return out
