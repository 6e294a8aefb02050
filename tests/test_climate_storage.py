"""Decoded climate values never wrap, never become missing, never leave the storable range (through the netCDF writer)."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest
import xarray as xr

import codec
from codec.climate import grid, storage, writer


def _var(dtype: str, **encoding) -> grid.GridVariable:
    return grid.GridVariable("x", ("lat", "lon"), (3, 4), "float32", {}, {"dtype": dtype, **encoding})


def test_packed_values_are_clipped_to_the_integer_range_and_off_the_fill():
    var = _var("int16", scale_factor=0.01, add_offset=250.0, _FillValue=-32767)
    k = np.array([-40000, -32768, -32767, 0, 32767, 40000, np.nan])
    out = storage.storable(250.0 + 0.01 * k, var)
    assert np.allclose((out[:-1] - 250.0) / 0.01, [-32768, -32768, -32766, 0, 32767, 32767])  # -32767 is the fill: moved up
    assert np.isnan(out[-1])


def test_fill_inside_the_range_is_left_for_the_nearer_neighbour():
    var = _var("int16", scale_factor=1.0, add_offset=0.0, missing_value=5)
    out = storage.storable(np.array([4.6, 5.0, 5.4, 4.9]), var)
    assert out.tolist() == [4.0, 6.0, 6.0, 4.0]  # all round onto 5: each goes to the side of its exact value (5.0: up)
    assert storage.integer_codes(var) == (-32768, 32767, [5])


def test_unsigned_bytes_and_fills_at_both_ends():
    var = _var("int8", _Unsigned="true", _FillValue=-1, missing_value=0)  # -1 on disk is 255
    assert storage.integer_codes(var) == (1, 254, [])
    assert storage.storable(np.array([-3.0, 300.0, 17.2]), var).tolist() == [1.0, 254.0, 17.0]


def test_float_fill_is_never_hit_by_a_valid_value():
    var = _var("float32", _FillValue=-999.0)
    out = storage.storable(np.array([-999.0, 1.0, np.nan]), var)
    assert np.float32(out[0]) != np.float32(-999.0) and abs(out[0] + 999.0) < 1e-3
    assert out[1] == 1.0 and np.isnan(out[2])


def _encodings() -> dict[str, dict]:
    """Storage of each variable: the ways climate files pack their fields (ERA5 netCDF is the first)."""
    return {
        "era5": {"dtype": "int16", "_FillValue": np.int16(-32767), "missing_value": np.int16(-32767)},  # scale/offset from the data
        "inner_fill": {"dtype": "int16", "scale_factor": 0.5, "add_offset": 0.0, "missing_value": np.int16(0)},
        "unsigned": {"dtype": "int8", "_Unsigned": "true", "_FillValue": np.int8(-1), "scale_factor": 0.2, "add_offset": 240.0},
        "plain_int": {"dtype": "int32", "_FillValue": np.int32(-999)},
        "float_fill": {"dtype": "float32", "_FillValue": np.float32(250.0)},
        "unpacked": {"dtype": "float32"},
    }


@pytest.fixture(scope="module")
def packed_file(tmp_path_factory):
    """Fields whose packing spans exactly their values (as grid_to_netcdf packs ERA5), with land missing."""
    lat = np.linspace(90, -90, 37)
    lon = np.arange(0, 360, 5.0)
    y, x = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    rng = np.random.default_rng(0)
    base = 250 + 40 * np.cos(y) + 8 * np.sin(3 * x) * np.cos(y) + rng.normal(0, 2.0, y.shape)  # sharp features: decodes overshoot
    base[10:14, 20:30] = np.nan
    data, encodings = {}, _encodings()
    for name, enc in encodings.items():
        v = base.copy()
        if name == "era5":  # ERA5's packing: the extremes map to -32766 and +32767
            lo, hi = np.nanmin(v), np.nanmax(v)
            enc["scale_factor"] = (hi - lo) / (2**16 - 3)
            enc["add_offset"] = lo + 32766 * enc["scale_factor"]
        if name == "unsigned":  # 0.2 K steps over 240..290.8
            v = np.clip(v, 240.2, 290.8)
        if name == "plain_int":
            v = np.rint(v)
        data[name] = (("time", "latitude", "longitude"), np.stack([v, v[::-1]]).astype(np.float32), {"units": "K"})
    ds = xr.Dataset(
        data,
        coords={
            "time": ("time", [0.0, 1.0], {"units": "hours since 2020-01-01"}),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )
    for name, enc in encodings.items():
        ds[name].encoding.update(enc)
    path = tmp_path_factory.mktemp("packed") / "packed.nc"
    ds.to_netcdf(path)
    return path


def _raw(path, name: str) -> tuple[np.ndarray, netCDF4.Variable]:
    with netCDF4.Dataset(path) as f:
        v = f.variables[name]
        v.set_auto_maskandscale(False)
        attrs = {k: v.getncattr(k) for k in v.ncattrs()}
        return np.asarray(v[:]), attrs


@pytest.mark.parametrize("quality", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("bounded", [False, True])
def test_written_values_stay_valid_on_every_packing(packed_file, tmp_path, quality, bounded):
    """Every shipped quality, bounded or not: valid source points are valid, in range and unwrapped in the written file,
    and the file reads back exactly as the decoded dataset in memory."""
    data = codec.encode(packed_file, quality=quality, max_abs_error=0.6 if bounded else None)
    decoded = codec.decode(data)
    out = tmp_path / "back.nc"
    writer.write_netcdf(decoded, out)
    with xr.open_dataset(packed_file) as src, xr.open_dataset(out) as back:
        for name in _encodings():
            source, written = src[name].values.astype(np.float64), back[name].values.astype(np.float64)
            valid = ~np.isnan(source)
            assert not np.isnan(written[valid]).any(), f"{name}: a valid point was written as missing"
            assert np.isnan(written[~valid]).all()
            err = np.abs(written - source)[valid]
            span = np.ptp(source[valid])
            assert err.max() < 0.5 * span, f"{name}: error {err.max():.2f} of span {span:.2f}: a wrapped value"
            if bounded:
                assert err.max() <= 0.6 * (1 + 1e-6), name
            assert np.array_equal(np.isnan(written), np.isnan(decoded[name].values))
            assert np.allclose(written[valid], decoded[name].values.astype(np.float64)[valid], rtol=0, atol=1e-4), name
            raw, attrs = _raw(out, name)
            codes = [attrs[k] for k in ("_FillValue", "missing_value") if k in attrs]
            for c in codes:
                assert not np.any(raw[valid] == c), f"{name}: a valid point landed on the fill code {c}"
