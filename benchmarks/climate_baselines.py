"""Classical scientific-data compressors for one 2-D float field: the baselines of the climate codec.

Three lossy codecs, each compressing the field as float32 (compression ratios are reported against
``4 * field.size`` bytes) and returning a :class:`Result` with the exact compressed size and the decoded
reconstruction:

* ``sz3``: SZ3 (``pysz``) in absolute-error-bound mode; the decoded field is checked against the bound.
* ``zfp``: ZFP (``zfpy``) in fixed-accuracy mode (``tolerance`` bounds the absolute error).
* ``bitround+zstd``: ``numcodecs.BitRound(keepbits)`` then ``numcodecs.Zstd(level=ZSTD_LEVEL)``, the
  round-then-lossless scheme of Kloewer et al. 2021 (Nat. Comput. Sci. 1, 713-724).

Missing points (NaN, e.g. land in an ocean field) are handled the same way by all three: they are filled
with the mean of the valid points (SZ3 and ZFP reject NaN), the validity mask is stored as
``zlib(np.packbits(mask))`` and its bytes are counted in :attr:`Result.nbytes` (none when nothing is
missing), and NaN is put back from the decoded mask. Errors (:func:`rmse`, :func:`max_abs_error`) are
measured over the valid points in float64.

:func:`match_rmse` finds the setting of a codec that reaches a target RMSE, to compare codecs at equal RMSE.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numcodecs
import numpy as np
import zfpy
from pysz import sz, szConfig, szErrorBoundMode

# zstd level for bitround+zstd: 19 keeps the baseline at its best ratio (levels 20-22 gave the same sizes in our
# checks; level 3 was up to 28% larger on a 73x144 wind field). Encoding costs about 3 s for a 721x1440 field
# (level 10: 0.2 s, 5% larger there); decoding speed does not depend on the level.
ZSTD_LEVEL = 19
MASK_ZLIB_LEVEL = 9  # the mask is tiny; spend the time for the last bytes
MAX_KEEPBITS = 23  # float32 mantissa bits: bit rounding to 23 is lossless
_BISECTION_STEPS = 12  # halvings of the log-bracket in match_rmse (a factor of 4 -> about 1.0003)


@dataclass
class Result:
    """One compressed field: the codec, its setting, the compressed size and the reconstruction."""

    codec: str  # "sz3", "zfp" or "bitround+zstd"
    param: float  # absolute error bound (sz3), tolerance (zfp) or keepbits (bitround+zstd)
    nbytes: int  # codec stream plus the compressed NaN mask (0 extra bytes when nothing is missing)
    recon: np.ndarray  # float32, same shape as the input, NaN exactly where the input is NaN


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of ``a`` and ``b`` over points valid (not NaN) in both, in float64."""
    valid = ~(np.isnan(a) | np.isnan(b))
    diff = np.asarray(a, np.float64)[valid] - np.asarray(b, np.float64)[valid]
    return math.sqrt(np.mean(diff * diff)) if diff.size else 0.0


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference of ``a`` and ``b`` over points valid (not NaN) in both, in float64."""
    valid = ~(np.isnan(a) | np.isnan(b))
    diff = np.asarray(a, np.float64)[valid] - np.asarray(b, np.float64)[valid]
    return float(np.max(np.abs(diff))) if diff.size else 0.0


def _prepare(field: np.ndarray) -> tuple[np.ndarray, bytes]:
    """The float32 field with NaN filled by the mean of the valid points, and the compressed mask (b"" if no NaN)."""
    field = np.asarray(field)
    if field.ndim != 2 or not np.issubdtype(field.dtype, np.floating):
        raise ValueError(f"expected a 2-D float array, got {field.dtype} of shape {field.shape}")
    data = np.ascontiguousarray(field, dtype=np.float32)
    if np.isinf(data).any():
        raise ValueError("field holds infinite values (as float32); only NaN may mark missing points")
    valid = ~np.isnan(data)
    if valid.all():
        return data, b""
    fill = np.float32(data[valid].mean(dtype=np.float64)) if valid.any() else np.float32(0.0)
    mask_bytes = zlib.compress(np.packbits(valid).tobytes(), MASK_ZLIB_LEVEL)
    return np.where(valid, data, fill), mask_bytes


def _restore(decoded: np.ndarray, mask_bytes: bytes) -> np.ndarray:
    """The decoded float32 field with NaN put back where the stored mask marks points as missing."""
    if not mask_bytes:
        return decoded
    bits = np.frombuffer(zlib.decompress(mask_bytes), dtype=np.uint8)
    valid = np.unpackbits(bits, count=decoded.size).reshape(decoded.shape).astype(bool)
    return np.where(valid, decoded, np.float32(np.nan))


def sz3(field: np.ndarray, abs_error: float) -> Result:
    """SZ3 in absolute-error mode: every valid point of the float32 field is reconstructed within ``abs_error``.

    Raises RuntimeError if the decoded stream breaks the bound (beyond float32 rounding of the difference).
    """
    if not abs_error > 0:
        raise ValueError(f"abs_error must be positive, got {abs_error}")
    data, mask_bytes = _prepare(field)
    config = szConfig()
    config.errorBoundMode = szErrorBoundMode.ABS
    config.absErrorBound = float(abs_error)
    stream, _ = sz.compress(data, config)
    decoded, _ = sz.decompress(stream, np.float32, data.shape)
    slack = float(np.spacing(np.float32(np.max(np.abs(data))))) if data.size else 0.0
    if max_abs_error(data, decoded) > abs_error + slack:
        raise RuntimeError(f"SZ3 decode exceeds its absolute error bound {abs_error}")
    return Result("sz3", float(abs_error), int(stream.nbytes) + len(mask_bytes), _restore(decoded, mask_bytes))


def zfp(field: np.ndarray, tolerance: float) -> Result:
    """ZFP in fixed-accuracy mode: the absolute error of every valid point is at most ``tolerance``.

    ZFP uses the largest power of two not above ``tolerance``, so size and error change in steps of about 2x.
    """
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    data, mask_bytes = _prepare(field)
    stream = zfpy.compress_numpy(data, tolerance=float(tolerance))
    decoded = zfpy.decompress_numpy(stream)
    return Result("zfp", float(tolerance), len(stream) + len(mask_bytes), _restore(decoded, mask_bytes))


def bitround(field: np.ndarray, keepbits: int) -> Result:
    """Round the float32 mantissas to ``keepbits`` bits (round to nearest), then Zstandard at ``ZSTD_LEVEL``."""
    if not 0 <= keepbits <= MAX_KEEPBITS:
        raise ValueError(f"keepbits must be in [0, {MAX_KEEPBITS}], got {keepbits}")
    data, mask_bytes = _prepare(field)
    rounded = numcodecs.BitRound(keepbits=int(keepbits)).encode(data)
    zstd = numcodecs.Zstd(level=ZSTD_LEVEL)
    stream = zstd.encode(rounded)
    decoded = np.frombuffer(bytearray(zstd.decode(stream)), dtype=np.float32).reshape(data.shape)  # writable
    return Result("bitround+zstd", float(keepbits), len(stream) + len(mask_bytes), _restore(decoded, mask_bytes))


CODECS: dict[str, Callable[[np.ndarray, float], Result]] = {"sz3": sz3, "zfp": zfp, "bitround+zstd": bitround}


Tried = list[tuple[float, Result]]  # (RMSE, result) of every setting a search tried


def _search_keepbits(field: np.ndarray, target_rmse: float) -> Tried:
    """Binary search for the fewest keepbits whose RMSE is at most ``target_rmse``."""
    tried: Tried = []

    def ok(k: int) -> bool:
        result = bitround(field, k)
        tried.append((rmse(field, result.recon), result))
        return tried[-1][0] <= target_rmse

    lo, hi = 0, MAX_KEEPBITS
    if ok(hi):
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid + 1
    return tried


def _search_log(encode: Callable[[np.ndarray, float], Result], field: np.ndarray, target_rmse: float) -> Tried:
    """Log-space bisection for the largest error bound whose RMSE is at most ``target_rmse``.

    Starts at ``target_rmse`` itself (an absolute bound of b gives RMSE <= b; quartered up to 10 times should a
    codec miss its bound), grows the bound 4x at a time until the RMSE exceeds the target (or the bound passes
    1000x the field's value range, beyond which nothing changes), then bisects the last bracket.
    """
    tried: Tried = []

    def ok(param: float) -> bool:
        result = encode(field, param)
        tried.append((rmse(field, result.recon), result))
        return tried[-1][0] <= target_rmse

    lo = target_rmse
    while not ok(lo):
        if len(tried) == 10:
            return tried
        lo /= 4
    valid = field[~np.isnan(field)]
    cap = 1e3 * max(float(valid.max() - valid.min()) if valid.size else 0.0, target_rmse)
    hi = 4 * lo
    while ok(hi):
        if hi > cap:
            return tried
        lo, hi = hi, 4 * hi
    for _ in range(_BISECTION_STEPS):
        mid = math.sqrt(lo * hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return tried


def match_rmse(codec: str, field: np.ndarray, target_rmse: float) -> Result:
    """The setting of ``codec`` whose RMSE (over non-NaN points) is closest to but not above ``target_rmse``.

    Bisection on the error bound / tolerance in log space (``sz3``, ``zfp``) or binary search over keepbits
    (``bitround+zstd``), i.e. compare codecs at equal RMSE. Of all settings tried, the one with the largest RMSE
    not above the target wins (the smaller size on a tie). Raises ValueError if none reaches the target.
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {sorted(CODECS)}")
    if not target_rmse > 0:
        raise ValueError(f"target_rmse must be positive, got {target_rmse}")
    field = np.asarray(field)
    if codec == "bitround+zstd":
        tried = _search_keepbits(field, target_rmse)
    else:
        tried = _search_log(CODECS[codec], field, target_rmse)
    feasible = [(err, -result.nbytes, result) for err, result in tried if err <= target_rmse]
    if not feasible:
        raise ValueError(f"{codec} reaches no RMSE <= {target_rmse} on this field")
    return max(feasible, key=lambda t: t[:2])[2]
