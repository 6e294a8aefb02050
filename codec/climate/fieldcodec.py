"""One 2-D field <-> one record of bytes: normalization, the VAEformer, and the optional error bound.

Record layout (little-endian)::

    mean f8, std f8        normalization of this field (its valid points); NaN mean = no valid point
    len_z u4, len_y u4, len_r u4
    z, y                   the VAEformer's hyper-latent and latent bytes
    r                      residual bytes of the error bound (empty without a bound)

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


@dataclass(frozen=True)
class FieldSpec:
    """What the decoder must know of a field besides its record."""

    shape: tuple[int, int]
    dtype: np.dtype
    bound: float | None = None
    packing: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None  # storable integers of a packed variable


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


def _denormalize(net_out: torch.Tensor, mean: float, std: float) -> np.ndarray:
    return net_out[0, 0].double().numpy() * std + mean


def encode(net: LevelCoder, field: np.ndarray, spec: FieldSpec) -> tuple[bytes, np.ndarray]:
    """Record bytes of ``field`` (float64, NaN = missing) and the reconstruction a decoder will produce."""
    mean, std = field_stats(field)
    if np.isnan(mean):
        return _HEAD.pack(mean, std, 0, 0, 0), np.full(spec.shape, np.nan)
    z, y = net.compress(network_input(field, mean, std))
    recon = _reconstruct(net, z, y, mean, std, ~np.isnan(field))
    r = b""
    bound = field_bound(net, spec, std)
    if bound is not None:
        r, recon = errorbound.encode(field, recon, bound, spec.packing, spec.dtype, spec.int_range)
    return _HEAD.pack(mean, std, len(z), len(y), len(r)) + z + y + r, recon


def field_bound(net: LevelCoder, spec: FieldSpec, std: float) -> float | None:
    """The pointwise bound of one field: the tighter of ``spec.bound`` and the quality's ``relative_bound * std``."""
    bounds = [b for b in (spec.bound, None if net.relative_bound is None else net.relative_bound * std) if b is not None]
    return min(bounds) if bounds else None


def _reconstruct(net: LevelCoder, z: bytes, y: bytes, mean: float, std: float, valid: np.ndarray) -> np.ndarray:
    out = _denormalize(net.decompress(z, y, valid.shape), mean, std)
    return np.where(valid, out, np.nan)


def decode(net: LevelCoder, record: bytes, spec: FieldSpec, valid: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode` given the field's validity mask."""
    if len(record) < _HEAD.size:
        raise CorruptStreamError("field record truncated")
    mean, std, lz, ly, lr = _HEAD.unpack_from(record)
    if _HEAD.size + lz + ly + lr != len(record):
        raise CorruptStreamError("field record lengths are inconsistent")
    if np.isnan(mean):
        return np.full(spec.shape, np.nan)
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise CorruptStreamError("field record has invalid normalization")
    z = record[_HEAD.size : _HEAD.size + lz]
    y = record[_HEAD.size + lz : _HEAD.size + lz + ly]
    recon = _reconstruct(net, z, y, mean, std, valid)
    bound = field_bound(net, spec, std)
    if bound is None:
        return recon
    return errorbound.decode(record[_HEAD.size + lz + ly :], recon, valid, bound, spec.packing, spec.dtype, spec.int_range)
