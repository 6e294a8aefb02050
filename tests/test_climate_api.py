"""Climate files end to end: `codec encode era5.nc -o x.cra`, decode back to netCDF, info, bounds, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import save_file

import codec
from codec import registry
from codec.cli import main
from codec.errors import InputError, ModelError
from codec.models.vaeformer import TINY, VAEformer
from tests.helpers import run_cli as run


@pytest.fixture()
def era5(tmp_path):
    """A small ERA5-like file: t(time, level, lat, lon) float32, packed int16 sst with a land mask, a 1-D variable."""
    rng = np.random.default_rng(0)
    lat = np.linspace(90, -90, 19)
    lon = np.arange(0, 360, 10.0)
    y, x = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    t = 250 + 30 * np.cos(y)[None, None] + rng.normal(0, 0.5, (2, 3, 19, 36)) + np.arange(3)[None, :, None, None]
    sst = 290 + 8 * np.cos(y) * np.sin(x)
    sst[3:7, 5:12] = np.nan
    ds = xr.Dataset(
        {
            "t": (("time", "level", "latitude", "longitude"), t.astype(np.float32), {"units": "K", "long_name": "temperature"}),
            "sst": (("latitude", "longitude"), sst, {"units": "K"}),
            "weights": (("level",), np.array([0.2, 0.3, 0.5])),
        },
        coords={
            "time": ("time", np.array([0.0, 6.0]), {"units": "hours since 2020-01-01", "calendar": "gregorian"}),
            "level": ("level", np.array([500, 850, 1000], np.int32), {"units": "hPa"}),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
        attrs={"title": "test"},
    )
    ds.sst.encoding.update(dtype="int16", scale_factor=0.01, add_offset=290.0, _FillValue=np.int16(-32767))
    path = tmp_path / "era5.nc"
    ds.to_netcdf(path)
    return path



def test_cli_round_trip_keeps_structure(capsys, era5, tmp_path, vf_weights):
    cra, back = tmp_path / "era5.cra", tmp_path / "back.nc"
    code, out, err = run(capsys, "encode", era5, "-o", cra, "--weights", vf_weights)
    assert code == 0, err
    assert json.loads(out)["kind"] == "climate"
    code, _, err = run(capsys, "decode", cra, "-o", back, "--weights", vf_weights)
    assert code == 0, err
    a, b = xr.open_dataset(era5, decode_cf=False), xr.open_dataset(back, decode_cf=False)
    assert set(a.variables) == set(b.variables)
    for name in a.coords:
        assert a[name].variable.identical(b[name].variable)  # values, dtype and attrs (NaN fill values equal)
    assert a.attrs == b.attrs
    assert xr.Variable((), 0, a.t.attrs).identical(xr.Variable((), 0, b.t.attrs))  # attrs, NaN-aware
    assert b.sst.dtype == np.int16 and b.sst.attrs["scale_factor"] == 0.01
    np.testing.assert_array_equal(a.sst.values == -32767, b.sst.values == -32767)  # land mask kept
    np.testing.assert_array_equal(a.weights.values, b.weights.values)
    code, out, _ = run(capsys, "info", cra)
    meta = json.loads(out)
    assert set(meta["variables"]) == {"t", "sst"}
    assert meta["compression_ratio"] > 1
    assert meta["variables"]["t"]["rmse"] > 0 and "max_abs_error" in meta["variables"]["t"]


def test_max_abs_error_is_guaranteed(era5, vf_weights):
    data = codec.encode(era5, weights=vf_weights, max_abs_error="t=0.05,sst=0.02")
    ds = codec.decode(data, weights=vf_weights).load()
    orig = xr.open_dataset(era5)
    assert float(np.nanmax(np.abs(ds.t.values.astype(np.float32) - orig.t.values))) <= 0.05
    info = codec.info(data)
    assert info["variables"]["t"]["max_abs_error"] <= 0.05
    assert info["variables"]["sst"]["max_abs_error"] <= 0.02 + 1e-9
    loose = codec.encode(era5, weights=vf_weights, max_abs_error=1.0)
    assert len(loose) < len(data)


def test_xarray_dataset_input_and_lazy_decode(era5, vf_weights):
    with xr.open_dataset(era5) as ds:
        data = codec.encode(ds, weights=vf_weights)
    out = codec.decode(data, weights=vf_weights)
    assert isinstance(out, xr.Dataset)
    assert out.t.chunks is not None  # lazy: fields are decoded on access
    field = out.t.isel(time=1, level=2).values
    assert field.shape == (19, 36) and np.isfinite(field).all()


def test_same_bytes_across_thread_counts(era5, vf_weights):
    outs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        outs.append(codec.encode(era5, weights=vf_weights, max_abs_error=0.1))
    assert outs[0] == outs[1]


def test_dask_parallel_encode_gives_the_same_bytes(era5, vf_weights, capsys, tmp_path):
    sequential = codec.encode(era5, weights=vf_weights, max_abs_error=0.5)
    for scheduler in ("threads", "synchronous", "processes"):
        assert codec.encode(era5, weights=vf_weights, max_abs_error=0.5, scheduler=scheduler, workers=2) == sequential
    out = tmp_path / "p.cra"
    assert main(["encode", str(era5), "-o", str(out), "--weights", str(vf_weights), "--dask", "threads", "--workers", "3", "-q",
                 "--max-abs-error", "0.5"]) == 0
    assert out.read_bytes() == sequential
    assert main(["encode", str(era5), "-o", str(tmp_path / "q.cra"), "--weights", str(vf_weights), "--dask", "tcp://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("distributed" in err or "cannot reach" in err) and not (tmp_path / "q.cra").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"CDF\x01" + bytes(range(200))), ""),  # corrupt netCDF
        (lambda p: xr.Dataset({"v": (("x",), np.arange(5.0))}).to_netcdf(p), "lat"),
        (lambda p: xr.Dataset({"v": (("lat", "lon"), np.array([["a", "b"], ["c", "d"]]))}, coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0]}).to_netcdf(p), "v"),
    ],
)
def test_bad_climate_inputs(capsys, tmp_path, vf_weights, make, message):
    src, out = tmp_path / "bad.nc", tmp_path / "bad.cra"
    make(src)
    code, _, err = run(capsys, "encode", src, "-o", out, "--weights", vf_weights)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("codec: error:"), err
    assert message.lower() in lines[0].lower()
    assert not out.exists()


def test_bad_bounds_and_image_model(capsys, era5, tmp_path, vf_weights, tiny_weights):
    code, _, err = run(capsys, "encode", era5, "-o", tmp_path / "x.cra", "--weights", vf_weights, "--max-abs-error", "q=0.1")
    assert code == 1 and "unknown variables" in err
    code, _, err = run(capsys, "encode", era5, "-o", tmp_path / "x.cra", "--weights", tiny_weights)
    assert code == 1 and "mcquic" in err and "vaeformer" in err


def test_damaged_climate_file(capsys, era5, tmp_path, vf_weights):
    cra = tmp_path / "x.cra"
    assert run(capsys, "encode", era5, "-o", cra, "--weights", vf_weights)[0] == 0
    data = bytearray(cra.read_bytes())
    data[-5] ^= 0xFF
    bad = tmp_path / "bad.cra"
    bad.write_bytes(bytes(data))
    code, _, err = run(capsys, "decode", bad, "-o", tmp_path / "out.nc", "--weights", vf_weights)
    assert code == 1 and "checksum" in err
    assert not (tmp_path / "out.nc").exists()


def test_registry_lists_vaeformer():
    assert "vaeformer" in {m["name"] for m in registry.list_models()}


def test_weights_without_a_rate_ladder_are_refused(capsys, era5, tmp_path):
    """Weights from before the rate ladder (one file per quantization step) give a one-line error."""
    net = VAEformer(TINY)
    state = {k: v for k, v in net.state_dict().items() if k not in ("log_steps", "level_embed_enc", "level_embed_dec", "steps")}
    config = {k: v for k, v in TINY.to_dict().items() if k != "rates"} | {"quant_step": 1.0}
    old = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, old, {"model": "vaeformer", "config": json.dumps(config)})
    code, _, err = run(capsys, "encode", era5, "-o", tmp_path / "x.cra", "--weights", old)
    assert code == 1 and "do not fit vaeformer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.cra").exists()


def test_quality_picks_a_level_of_one_weights_file(era5, vf_weights):
    sizes = [len(codec.encode(era5, weights=vf_weights, quality=q)) for q in (1, 5)]
    assert sizes[0] < sizes[1]
    with pytest.raises(ModelError, match="levels 1..5, not 6"):
        codec.encode(era5, weights=vf_weights, quality=6)


def test_refinement_quality_bounds_each_field_by_its_std(era5, vf_weights):
    """Quality 5 (level 3 + residual at 0.25 std): every field of the decoded file is within 0.25 of its std."""
    data = codec.encode(era5, weights=vf_weights, quality=5)
    assert codec.info(data)["relative_error_bound"] == 0.25 and codec.info(codec.encode(era5, weights=vf_weights, quality=3))["relative_error_bound"] is None
    a, b = xr.open_dataset(era5), codec.decode(data, weights=vf_weights)
    fields = [(a.t.values[i, j], b.t.values[i, j]) for i in range(2) for j in range(3)] + [(a.sst.values, b.sst.values)]
    for x, y in fields:
        assert np.nanmax(np.abs(y - x)) <= 0.25 * np.nanstd(x) * (1 + 1e-5)


def test_xarray_backend_entrypoint(era5, vf_weights, tmp_path):
    cra = tmp_path / "x.cra"
    cra.write_bytes(codec.encode(era5, weights=vf_weights))
    ds = xr.open_dataset(cra, engine="codec", weights=vf_weights)
    assert set(ds.data_vars) >= {"t", "sst"} and ds.t.shape == (2, 3, 19, 36)
    direct = codec.decode(cra.read_bytes(), weights=vf_weights)
    np.testing.assert_array_equal(ds.t.values, direct.t.values)


def test_open_dataset_is_the_backend_and_decodes_only_what_a_slice_touches(era5, vf_weights, tmp_path, monkeypatch):
    from codec.climate import fieldcodec

    cra = tmp_path / "x.cra"
    cra.write_bytes(codec.encode(era5, weights=vf_weights))
    decoded = []
    original = fieldcodec.decode
    monkeypatch.setattr(fieldcodec, "decode", lambda *a, **k: decoded.append(1) or original(*a, **k))
    ds = codec.open_dataset(cra, weights=vf_weights)
    assert decoded == []  # opening decodes nothing
    one = ds.t.isel(time=1, level=2).values
    assert len(decoded) == 1  # one field of the 2 x 3 t fields and the sst fields
    via_backend = xr.open_dataset(cra, engine="codec", weights=vf_weights)
    np.testing.assert_array_equal(one, via_backend.t.values[1, 2])
    assert set(ds.data_vars) == set(via_backend.data_vars)
    with pytest.raises(InputError, match="no such file"):
        codec.open_dataset(tmp_path / "missing.cra")


def test_infinite_values_refused(capsys, tmp_path, vf_weights):
    src = tmp_path / "inf.nc"
    v = np.ones((5, 8))
    v[2, 3] = np.inf
    xr.Dataset({"v": (("lat", "lon"), v)}, coords={"lat": np.linspace(-60, 60, 5), "lon": np.arange(0, 360, 45.0)}).to_netcdf(src)
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "inf.cra", "--weights", vf_weights)
    assert code == 1 and "infinite" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "inf.cra").exists()


def test_lazy_dataset_pickles_for_dask_processes(era5, vf_weights):
    import pickle

    ds = codec.decode(codec.encode(era5, weights=vf_weights), weights=vf_weights)
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.t.values, ds.t.values)


def test_grib_end_to_end_with_groups_and_short_bound_names(capsys, tmp_path, vf_weights):
    from tests.helpers import grib_message
    from tests.helpers import run_cli as run

    rng = np.random.default_rng(2)
    fields = [280 + rng.normal(0, 3, (9, 24)) for _ in range(3)]
    src = tmp_path / "tiny.grib2"
    src.write_bytes(
        grib_message("isobaricInhPa", 850, "t", fields[0]) + grib_message("isobaricInhPa", 500, "t", fields[1]) + grib_message("surface", 0, "t", fields[2])
    )
    cra, back = tmp_path / "g.cra", tmp_path / "g.nc"
    code, _, err = run(capsys, "encode", src, "-o", cra, "--weights", vf_weights, "--max-abs-error", "t=0.5")
    assert code == 0, err
    meta = codec.info(cra.read_bytes())
    assert set(meta["variables"]) == {"isobaricInhPa/t", "surface/t"}
    assert all(v["max_abs_error"] <= 0.5 and v["max_abs_error_bound"] == 0.5 for v in meta["variables"].values())
    assert run(capsys, "decode", cra, "-o", back, "--weights", vf_weights)[0] == 0
    tree = xr.open_datatree(back)
    assert {"isobaricInhPa", "surface"} <= set(tree.children)
    assert tree["isobaricInhPa"].t.shape == (2, 9, 24)
