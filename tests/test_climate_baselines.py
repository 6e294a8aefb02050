"""The classical climate-field baselines (SZ3, ZFP, bit rounding + Zstandard) in benchmarks/climate_baselines.py."""

from __future__ import annotations

import importlib
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

# The baselines need the benchmark extra (pip install -e ".[bench]"); without it this module skips.
numcodecs = pytest.importorskip("numcodecs")
zfpy = pytest.importorskip("zfpy")
pysz = pytest.importorskip("pysz")
sz, szConfig, szErrorBoundMode = pysz.sz, pysz.szConfig, pysz.szErrorBoundMode

# benchmarks/ is a folder of scripts, not an installed package: import it from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
cb = importlib.import_module("benchmarks.climate_baselines")


def smooth_field(seed: int = 0) -> np.ndarray:
    """A smooth random 64x128 float32 field (a few random waves plus small noise), std about 3."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:128] / np.float64(128)
    k = rng.uniform(1, 6, size=(6, 2))
    phase = rng.uniform(0, 2 * np.pi, size=6)
    amp = rng.uniform(0.5, 2.0, size=6)
    angle = 2 * np.pi * (k[:, 0, None, None] * x + k[:, 1, None, None] * y) + phase[:, None, None]
    waves = amp[:, None, None] * np.sin(angle)
    return (waves.sum(axis=0) + 10 + rng.normal(0, 0.01, size=x.shape)).astype(np.float32)


@pytest.fixture()
def field() -> np.ndarray:
    """The smooth field with two NaN patches ("land")."""
    f = smooth_field()
    f[10:25, 30:60] = np.nan
    f[50:, 100:] = np.nan
    return f


PARAMS = {"sz3": 0.01, "zfp": 0.01, "bitround+zstd": 8}
RAW_BYTES = 64 * 128 * 4


@pytest.mark.parametrize("codec", sorted(cb.CODECS))
def test_round_trip_keeps_shape_dtype_nan_and_compresses(codec, field):
    result = cb.CODECS[codec](field, PARAMS[codec])
    assert result.codec == codec and result.param == PARAMS[codec]
    assert result.recon.shape == field.shape and result.recon.dtype == np.float32 and result.recon.flags.writeable
    np.testing.assert_array_equal(np.isnan(result.recon), np.isnan(field))
    assert 0 < result.nbytes < RAW_BYTES
    assert 0 < cb.rmse(field, result.recon) <= cb.max_abs_error(field, result.recon)


@pytest.mark.parametrize("codec", ["sz3", "zfp"])
@pytest.mark.parametrize("bound", [1e-3, 0.05, 0.5])
def test_error_bounded_codecs_respect_their_bound(codec, bound, field):
    assert cb.max_abs_error(field, cb.CODECS[codec](field, bound).recon) <= bound


@pytest.mark.parametrize("keepbits", [0, 3, 10])
def test_bitround_relative_error_is_half_an_ulp_of_keepbits(keepbits, field):
    recon = cb.bitround(field, keepbits).recon
    valid = ~np.isnan(field)
    rel = np.abs(recon[valid].astype(np.float64) - field[valid]) / np.abs(field[valid])
    assert rel.max() <= 2.0 ** -(keepbits + 1)


def test_bitround_all_mantissa_bits_is_lossless(field):
    np.testing.assert_array_equal(cb.bitround(field, cb.MAX_KEEPBITS).recon, field)


def _reference_nbytes(codec: str, data: np.ndarray, param: float) -> int:
    """Size of the bare codec stream, straight from the library (no mask)."""
    if codec == "sz3":
        config = szConfig()
        config.errorBoundMode = szErrorBoundMode.ABS
        config.absErrorBound = param
        return int(sz.compress(data, config)[0].nbytes)
    if codec == "zfp":
        return len(zfpy.compress_numpy(data, tolerance=param))
    rounded = numcodecs.BitRound(keepbits=int(param)).encode(data)
    return len(numcodecs.Zstd(level=cb.ZSTD_LEVEL).encode(rounded))


@pytest.mark.parametrize("codec", sorted(cb.CODECS))
def test_field_without_nan_costs_no_mask_bytes(codec):
    data = smooth_field(seed=1)
    result = cb.CODECS[codec](data, PARAMS[codec])
    assert result.nbytes == _reference_nbytes(codec, data, PARAMS[codec])
    assert result.recon.flags.writeable


@pytest.mark.parametrize("codec", sorted(cb.CODECS))
def test_nan_field_counts_the_compressed_mask(codec, field):
    valid = ~np.isnan(field)
    filled = np.where(valid, field, np.float32(field[valid].mean(dtype=np.float64)))
    mask_bytes = len(zlib.compress(np.packbits(valid).tobytes(), cb.MASK_ZLIB_LEVEL))
    assert cb.CODECS[codec](field, PARAMS[codec]).nbytes == _reference_nbytes(codec, filled, PARAMS[codec]) + mask_bytes


@pytest.mark.parametrize("codec", sorted(cb.CODECS))
def test_float64_input_is_compressed_as_float32(codec, field):
    as32 = cb.CODECS[codec](field, PARAMS[codec])
    as64 = cb.CODECS[codec](field.astype(np.float64), PARAMS[codec])
    assert as64.nbytes == as32.nbytes and as64.recon.dtype == np.float32
    np.testing.assert_array_equal(as64.recon, as32.recon)


@pytest.mark.parametrize("codec", sorted(cb.CODECS))
def test_all_nan_field_decodes_to_all_nan(codec):
    result = cb.CODECS[codec](np.full((8, 16), np.nan, np.float32), PARAMS[codec])
    assert np.isnan(result.recon).all() and result.nbytes > 0


@pytest.mark.parametrize("codec", sorted(cb.CODECS))
def test_match_rmse_reaches_the_target_from_below(codec, field):
    sizes = []
    for target in (0.003, 0.03, 0.3):
        result = cb.match_rmse(codec, field, target)
        err = cb.rmse(field, result.recon)
        assert target / 4 <= err <= target, (codec, target, err)  # zfp and bitround move in ~2x steps
        np.testing.assert_array_equal(np.isnan(result.recon), np.isnan(field))
        sizes.append(result.nbytes)
    assert sizes == sorted(sizes, reverse=True)


def test_match_rmse_sz3_lands_close_to_the_target(field):
    assert cb.rmse(field, cb.match_rmse("sz3", field, 0.05).recon) >= 0.035  # continuous knob: no 2x steps


def test_bad_arguments_raise(field):
    with pytest.raises(ValueError, match="unknown codec"):
        cb.match_rmse("jpeg", field, 0.1)
    with pytest.raises(ValueError, match="positive"):
        cb.match_rmse("sz3", field, 0.0)
    with pytest.raises(ValueError, match="infinite"):
        cb.zfp(np.where(np.isnan(field), np.inf, field), 0.1)
    with pytest.raises(ValueError, match="2-D"):
        cb.sz3(field[0], 0.1)
    with pytest.raises(ValueError, match="keepbits"):
        cb.bitround(field, 24)
