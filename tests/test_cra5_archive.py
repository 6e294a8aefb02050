"""ERA5 datasets through the official CRA5 VAEformer: CLI / API round trips, channel matching, errors.

The published network (268 channels, 721 x 1440, 400 M parameters) is far too large for tests, so the
``TINY`` configuration (4 channels, 25 x 40) runs with a tiny channel layout registered for it, and a
``.pth`` file built with the official key names (as ``tests/test_vaeformer_official.py`` builds them).
The published layout is checked on a lazily built (dask, never computed) CDS-style dataset.
"""

from __future__ import annotations

import json
import pickle

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

import codec
from codec import container, registry, runtime
from codec.checkpoint import weights_hash
from codec.climate import archive, cra5_archive, cra5_layout, cra5_source, dataset, storage, writer
from codec.errors import InputError, ModelError
from codec.models.vaeformer_official import (
    FULL,
    TINY,
    OfficialConfig,
    VAEformerOfficial,
    convert,
)
from tests.cra5_helpers import official_file, tiny_model
from tests.helpers import assert_one_line_error
from tests.helpers import run_cli as run

pytestmark = pytest.mark.usefixtures("one_thread")

LAYOUT = cra5_layout.make_layout(
    [("t", 850, 270.0, 20.0), ("t", 500, 250.0, 15.0), ("t2m", None, 280.0, 20.0), ("tp", None, 0.1, 0.4)], TINY.image_size
)


@pytest.fixture(autouse=True)
def tiny_geometry(monkeypatch):
    """``.pth`` files load with the TINY geometry, and the TINY network reads :data:`LAYOUT`."""
    monkeypatch.setattr(registry, "CRA5_GEOMETRY", TINY)
    monkeypatch.setitem(cra5_layout.LAYOUTS, (TINY.in_channels, TINY.image_size), lambda: LAYOUT)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """The tiny network (:func:`tiny_model`, seed 0) as an official ``.pth`` file."""
    path = tmp_path_factory.mktemp("cra5") / "cra5_tiny.pth"
    torch.save(official_file(tiny_model()), path)
    return path


def era5_dataset(steps: int = 2, seed: int = 0) -> xr.Dataset:
    """CDS-like: t(time, level, lat, lon) with levels 500, 850 (the layout's order reversed), int16-packed t2m,
    tp in metres, a 1-D variable and attributes; rows 90 -> -90, columns from 0 east."""
    rng = np.random.default_rng(seed)
    lat, lon = LAYOUT.latitudes(), LAYOUT.longitudes()
    y = np.cos(np.deg2rad(lat))[:, None] + 0 * lon
    t = 230 + 40 * y + rng.normal(0, 2, (steps, 2, *TINY.image_size)) + np.array([0, 25.0])[None, :, None, None]
    t2m = 250 + 40 * y + rng.normal(0, 2, (steps, *TINY.image_size))
    tp = np.abs(rng.normal(0, 1e-3, (steps, *TINY.image_size)))
    ds = xr.Dataset(
        {
            "t": (("time", "level", "latitude", "longitude"), t.astype(np.float32), {"units": "K", "long_name": "Temperature"}),
            "t2m": (("time", "latitude", "longitude"), t2m, {"units": "K"}),
            "tp": (("time", "latitude", "longitude"), tp.astype(np.float32), {"units": "m"}),
            "level_weights": (("level",), np.array([0.4, 0.6])),
        },
        coords={
            "time": ("time", np.arange(steps) * 6.0, {"units": "hours since 2020-01-01", "calendar": "gregorian"}),
            "level": ("level", np.array([500, 850], np.int32), {"units": "millibars"}),
            "latitude": ("latitude", lat.astype(np.float32), {"units": "degrees_north"}),
            "longitude": ("longitude", lon.astype(np.float32), {"units": "degrees_east"}),
        },
        attrs={"Conventions": "CF-1.6", "history": "made for a test"},
    )
    ds.t2m.encoding.update(dtype="int16", scale_factor=0.002, add_offset=280.0, _FillValue=np.int16(-32767))
    return ds


@pytest.fixture()
def era5(tmp_path):
    path = tmp_path / "era5.nc"
    era5_dataset().to_netcdf(path)
    return path



def network_input(ds: xr.Dataset, step: int) -> np.ndarray:
    """The model input of one step in LAYOUT order, stacked independently of the archive."""
    s = ds.isel(time=step)
    return np.stack([s.t.sel(level=850).values, s.t.sel(level=500).values, s.t2m.values, s.tp.values]).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Round trips


def test_cli_round_trip_keeps_structure(capsys, era5, ckpt, tmp_path):
    cra, back = tmp_path / "era5.cra", tmp_path / "back.nc"
    code, out, err = run(capsys, "encode", era5, "-o", cra, "--weights", ckpt)
    assert code == 0, err
    line = json.loads(out)
    assert line["model"] == "vaeformer-official" and line["steps"] == 2 and line["channels"] == 4
    code, _, err = run(capsys, "decode", cra, "-o", back, "--weights", ckpt)
    assert code == 0, err
    a, b = xr.open_dataset(era5, decode_cf=False), xr.open_dataset(back, decode_cf=False)
    assert set(a.variables) == set(b.variables) and a.attrs == b.attrs
    for name in [*a.coords, "level_weights"]:
        assert a[name].variable.identical(b[name].variable)
    for name in ("t", "t2m", "tp"):
        assert a[name].dims == b[name].dims and a[name].dtype == b[name].dtype
        assert xr.Variable((), 0, a[name].attrs).identical(xr.Variable((), 0, b[name].attrs))
    assert b.t2m.dtype == np.int16 and b.t2m.attrs["scale_factor"] == 0.002  # packing kept
    code, out, _ = run(capsys, "info", cra)
    meta = json.loads(out)
    assert code == 0 and meta["model"] == "vaeformer-official" and meta["quality"] is None
    assert (meta["steps"], meta["channels"], meta["grid"]) == (2, 4, [25, 40])
    assert meta["network_bytes"] > 0 and meta["residual_bytes"] == 0
    raw = 4 * (2 * 2 + 2 + 2) * 25 * 40
    assert meta["float32_bytes"] == raw and meta["compression_ratio"] == pytest.approx(raw / cra.stat().st_size)
    assert set(meta["variables"]) == {"t", "t2m", "tp"} and meta["variables"]["t"]["channels"] == 2
    assert meta["variables"]["t"]["rmse"] > 0 and meta["variables"]["t"]["valid_points"] == 2 * 2 * 25 * 40


def test_decoded_fields_are_the_networks(era5, ckpt):
    """The file holds model.compress of the stacked, normalized input, and decodes to model.decompress of it."""
    data = codec.encode(era5, weights=ckpt)
    out = codec.decode(data, weights=ckpt)
    model = tiny_model()
    c = container.unpack(data)
    ds = xr.open_dataset(era5)
    with dataset.open_source(era5) as source:
        packed = next(v for v in source.variables if v.name == "t2m")
    for step in range(2):
        blobs = archive.split_blobs(c.stream(f"s{step}"))
        with runtime.inference():
            x = LAYOUT.normalize(torch.from_numpy(network_input(ds, step)))[None]
            assert blobs == model.compress(x)
            fields = LAYOUT.denormalize(model.decompress(blobs, TINY.image_size)[0]).numpy()
        s = out.isel(time=step)
        np.testing.assert_array_equal(s.t.sel(level=850).values, fields[0])
        np.testing.assert_array_equal(s.t.sel(level=500).values, fields[1])
        np.testing.assert_allclose(s.t2m.values, storage.storable(fields[2], packed), rtol=0, atol=1e-4)  # on t2m's int16 grid (step 0.002)
        np.testing.assert_array_equal(s.tp.values, fields[3])
    assert not np.array_equal(fields[0], fields[1])  # levels are told apart


def test_python_api_lazy_decode_and_xarray_backend(era5, ckpt, tmp_path):
    with xr.open_dataset(era5) as ds:
        data = codec.encode(ds, weights=ckpt)
    out = codec.decode(data, weights=ckpt)
    assert isinstance(out, xr.Dataset) and out.t.chunks is not None  # lazy: one chunk per field
    assert out.t.shape == (2, 2, 25, 40) and out.t2m.shape == (2, 25, 40)
    cra = tmp_path / "x.cra"
    cra.write_bytes(data)
    via_backend = xr.open_dataset(cra, engine="codec", weights=ckpt)
    np.testing.assert_array_equal(via_backend.t.values, out.t.values)
    again = pickle.loads(pickle.dumps(out))  # dask process schedulers pickle the archive (and its lock)
    np.testing.assert_array_equal(again.tp.values, out.tp.values)


def test_each_step_is_decoded_once(monkeypatch, ckpt, tmp_path):
    data = codec.encode(era5_dataset(steps=4), weights=ckpt)
    decoded = []
    step = cra5_archive.Cra5Archive.step
    monkeypatch.setattr(cra5_archive.Cra5Archive, "step", lambda self, t: decoded.append(t) or step(self, t))
    out = codec.decode(data, weights=ckpt)
    out.t.isel(time=2, level=0).load()
    assert decoded == [2]
    decoded.clear()
    writer.write_netcdf(out, tmp_path / "back.nc")  # every variable of every step: each step once
    assert sorted(decoded) == [0, 1, 2, 3]


def test_bytes_do_not_depend_on_thread_counts(monkeypatch, era5, ckpt):
    previous = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(codec.encode(era5, weights=ckpt, max_abs_error="t=0.5"))
    finally:
        torch.set_num_threads(previous)
    assert outs[0] == outs[1]
    monkeypatch.setenv("CODEC_THREADS", "1")
    one = codec.encode(era5, weights=ckpt)
    decoded_one = codec.decode(one, weights=ckpt).t.values
    monkeypatch.setenv("CODEC_THREADS", "2")
    assert codec.encode(era5, weights=ckpt) == one
    np.testing.assert_array_equal(codec.decode(one, weights=ckpt).t.values, decoded_one)


def test_max_abs_error_per_variable(capsys, era5, ckpt, tmp_path):
    cra, back = tmp_path / "b.cra", tmp_path / "b.nc"
    code, _, err = run(capsys, "encode", era5, "-o", cra, "--weights", ckpt, "--max-abs-error", "t=0.05,t2m=0.01")
    assert code == 0, err
    assert run(capsys, "decode", cra, "-o", back, "--weights", ckpt)[0] == 0
    a, b = xr.open_dataset(era5), xr.open_dataset(back)
    assert float(np.abs(a.t.values - b.t.values).max()) <= 0.05
    assert float(np.abs(a.t2m.values - b.t2m.values).max()) <= 0.01 + 1e-9  # packed: bound kept on the int16 grid
    unbounded = float(np.abs(a.tp.values - b.tp.values).max())
    info = codec.info(cra.read_bytes())
    assert info["variables"]["t"]["max_abs_error_bound"] == 0.05 and info["variables"]["t"]["residual_bytes"] > 0
    assert info["variables"]["tp"]["max_abs_error_bound"] is None and info["variables"]["tp"]["residual_bytes"] == 0
    assert info["variables"]["tp"]["max_abs_error"] == pytest.approx(unbounded, rel=1e-3)
    assert info["residual_bytes"] == info["variables"]["t"]["residual_bytes"] + info["variables"]["t2m"]["residual_bytes"]
    plain = codec.decode(codec.encode(era5, weights=ckpt), weights=ckpt)
    assert float(np.abs(a.t.values - plain.t.values).max()) > 0.05  # the bound did something
    code, _, err = run(capsys, "encode", era5, "-o", tmp_path / "c.cra", "--weights", ckpt, "--max-abs-error", "sst=0.1")
    assert_one_line_error(code, err, "unknown variables: sst")


# ------------------------------------------------------------------------------------------------
# Weights and the registry


def test_pth_and_converted_safetensors_code_alike(era5, ckpt, tmp_path):
    loaded = registry.load(weights=ckpt)
    assert loaded.spec.name == "vaeformer-official" and loaded.spec.kind == "climate" and loaded.quality is None
    assert loaded.weights_hash == weights_hash(tiny_model().state_dict())
    converted = tmp_path / "cra5.safetensors"
    assert convert(ckpt, converted, base=TINY) == loaded.weights_hash
    assert registry.load(weights=converted).weights_hash == loaded.weights_hash
    data = codec.encode(era5, weights=ckpt)
    assert codec.encode(era5, weights=converted) == data
    assert container.unpack(data).model == {"name": "vaeformer-official", "quality": None, "weights_hash": loaded.weights_hash}
    np.testing.assert_array_equal(codec.decode(data, weights=converted).t.values, codec.decode(data, weights=ckpt).t.values)


def test_registered_without_shipped_weights(capsys):
    row = next(r for r in registry.list_models() if r["name"] == "vaeformer-official")
    assert row["kind"] == "climate" and not row["ladder"] and row["qualities"] == []
    code, out, _ = run(capsys, "models")
    assert code == 0 and "vaeformer-official" in out
    with pytest.raises(ModelError, match="no shipped checkpoints for vaeformer-official"):
        registry.load("vaeformer-official")


def test_weights_and_option_errors(capsys, era5, ckpt, tmp_path):
    cra = tmp_path / "x.cra"
    assert run(capsys, "encode", era5, "-o", cra, "--weights", ckpt, "-q")[0] == 0
    cases = [
        (("decode", cra, "-o", tmp_path / "a.nc"), "pass them as weights (--weights)"),
        (("encode", era5, "-o", tmp_path / "b.cra", "--weights", ckpt, "--model", "vaeformer"), "holds weights of 'vaeformer-official'"),
        (("encode", era5, "-o", tmp_path / "c.cra", "--weights", ckpt, "--quality", "2"), "quality (--quality) does not apply"),
        (("encode", era5, "-o", tmp_path / "d.cra", "--weights", ckpt, "--dask", "threads"), "scheduler (--dask) does not apply"),
    ]
    other = tmp_path / "other.pth"
    torch.save(official_file(tiny_model(seed=3)), other)
    cases.append((("decode", cra, "-o", tmp_path / "e.nc", "--weights", other), "was encoded with vaeformer-official weights"))
    (tmp_path / "cut.pth").write_bytes(ckpt.read_bytes()[:1000])
    cases.append((("encode", era5, "-o", tmp_path / "f.cra", "--weights", tmp_path / "cut.pth"), "cannot read"))
    for args, match in cases:
        code, _, err = run(capsys, *args)
        assert_one_line_error(code, err, match)
        assert not args[3].exists()


# ------------------------------------------------------------------------------------------------
# Bad input


def _drop_tp(ds):
    return ds.drop_vars("tp")


def _one_level(ds):
    return ds.sel(level=[850])


def _flipped(ds):
    return ds.isel(latitude=slice(None, None, -1))


def _coarse(ds):
    return ds.isel(latitude=slice(None, None, 2), longitude=slice(None, None, 2))


def _text(ds):
    return ds.assign(flag=(("latitude", "longitude"), np.full(TINY.image_size, "x")))


def _extra_variable(ds):
    return ds.assign(sst=ds.t2m + 10)


def _extra_level(ds):
    return xr.concat([ds, ds.sel(level=[500]).assign_coords(level=[700])], "level", data_vars="minimal")


def _twice(ds):
    return ds.assign(temperature=ds.t)


def _nan(ds):
    t2m = ds.t2m.copy()
    t2m[1, 3, 4] = np.nan
    return ds.assign(t2m=t2m)


def _other_steps(ds):
    return ds.assign(tp=ds.tp.rename(time="step"))


def _no_levels(ds):
    return ds.assign(t=ds.t.isel(level=0, drop=True))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop_tp, "lacks 1 of the 4 channels the vaeformer-official model needs: tp"),
        (_one_level, "lacks 1 of the 4 channels the vaeformer-official model needs: t_500"),
        (_flipped, "latitude -90 to 90, longitude 0 to 351); the vaeformer-official model needs 25 x 40: latitude 90 to -90"),
        (_coarse, "is on a 13 x 20 grid"),
        (_text, "variable flag on the lat-lon grid is not numeric"),
        (_extra_variable, "has no channel for sst; drop them"),
        (_extra_level, "has no channel for t at 700 hPa"),
        (_twice, "channels given more than once: t_850, t_500"),
        (_nan, "t2m holds missing (NaN) values"),
        (_other_steps, "variables do not share their steps: t has (time: 2), tp has (step: 2)"),
        (_no_levels, "t has no pressure-level dimension"),
    ],
)
def test_bad_inputs_are_one_line_errors(capsys, ckpt, tmp_path, edit, message):
    src, out = tmp_path / "bad.nc", tmp_path / "bad.cra"
    edit(era5_dataset()).to_netcdf(src)
    code, _, err = run(capsys, "encode", src, "-o", out, "--weights", ckpt)
    assert_one_line_error(code, err, message)
    assert not out.exists()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_file_is_a_one_line_error(capsys, era5, ckpt, tmp_path, damage):
    cra = tmp_path / "x.cra"
    assert run(capsys, "encode", era5, "-o", cra, "--weights", ckpt, "-q")[0] == 0
    data = bytearray(cra.read_bytes())
    start, length = container.unpack(bytes(data)).spans["s1"]
    if damage == "flip":
        data[start + length // 2] ^= 0xFF
    else:
        del data[start + length // 2 :]
    bad = tmp_path / "bad.cra"
    bad.write_bytes(bytes(data))
    code, _, err = run(capsys, "decode", bad, "-o", tmp_path / "out.nc", "--weights", ckpt)
    assert_one_line_error(code, err, "checksum mismatch in stream 's1'" if damage == "flip" else "file truncated")
    assert not (tmp_path / "out.nc").exists()
    code, _, err = run(capsys, "info", bad)
    assert_one_line_error(code, err, "'s1'")


# ------------------------------------------------------------------------------------------------
# Layouts


def test_layouts_and_their_json():
    full = cra5_layout.layout()
    assert full.channels == cra5_layout.channels() and full.grid == (721, 1440) and len(full.channels) == 268
    assert cra5_layout.layout_for(268, (721, 1440)) is full
    lat, lon = full.latitudes(), full.longitudes()
    assert (lat[0], lat[360], lat[-1], lon[0], lon[1], lon[-1]) == (90.0, 0.0, -90.0, 0.0, 0.25, 359.75)
    assert cra5_layout.Layout.from_json(json.loads(json.dumps(full.to_json()))) == full
    assert [c.name for c in LAYOUT.channels] == ["t_850", "t_500", "t2m", "tp"] and LAYOUT.channels[3].factor == 1000.0
    raw = torch.rand(4, 25, 40)
    assert torch.allclose(LAYOUT.denormalize(LAYOUT.normalize(raw)), raw, atol=1e-4)
    with pytest.raises(KeyError, match="no channel layout for 5 channels"):
        cra5_layout.layout_for(5, (25, 40))
    with pytest.raises(ValueError, match="unknown CRA5 variable 'sst'"):
        cra5_layout.make_layout([("sst", None, 0.0, 1.0)], (25, 40))
    with pytest.raises(ValueError, match="positive finite std"):
        cra5_layout.make_layout([("t", 850, 0.0, 0.0)], (25, 40))
    with pytest.raises(ValueError, match="malformed channel layout"):
        cra5_layout.Layout.from_json({"grid": [25, 40], "channels": [["t", "850", 1.0, 0.0, 1.0]]})
    with torch.device("meta"):
        published = VAEformerOfficial(FULL)  # shapes only: never allocated
    assert cra5_archive.model_layout(published) is full
    with torch.device("meta"):
        unknown = VAEformerOfficial(OfficialConfig.from_dict({**TINY.to_dict(), "in_channels": 5}))
    with pytest.raises(InputError, match="no channel layout for 5 channels on 25 x 40"):
        cra5_archive.model_layout(unknown)


def test_published_layout_matches_a_cds_dataset():
    """A CDS-style request (valid_time, pressure_level in hPa, short names) fills all 268 channels in
    upstream's order; built from dask zeros and never read."""
    full = cra5_layout.layout()
    lat, lon = full.latitudes(), full.longitudes()
    coords = {
        "valid_time": ("valid_time", np.array([0, 3600]), {"units": "seconds since 1970-01-01"}),
        "pressure_level": ("pressure_level", np.array(cra5_layout.PRESSURE_LEVELS[::-1], np.float64), {"units": "hPa"}),
        "latitude": ("latitude", lat, {"units": "degrees_north"}),
        "longitude": ("longitude", lon, {"units": "degrees_east"}),
    }
    upper = da.zeros((2, 37, 721, 1440), dtype=np.float32, chunks=(1, 1, 721, 1440))
    surface = da.zeros((2, 721, 1440), dtype=np.float32, chunks=(1, 721, 1440))
    dims = ("valid_time", "pressure_level", "latitude", "longitude")
    variables = {v: (dims, upper) for v in cra5_layout.PRESSURE_VARIABLES}
    variables |= {v: (dims[:1] + dims[2:], surface) for v in reversed(cra5_layout.SURFACE_VARIABLES)}
    variables["geopotential"] = variables.pop("z")  # long names match too
    with dataset.open_source(xr.Dataset(variables, coords=coords)) as source:
        plan = cra5_source.plan(source, full, "vaeformer-official")
    assert plan.steps == 2 and plan.step_dims == (("valid_time", 2),) and plan.step_index(1) == (1,)
    by_name = {p.var.name: p for p in plan.placements}
    assert by_name["t"].channels == tuple(full.index(f"t_{level}") for level in cra5_layout.PRESSURE_LEVELS[::-1])
    assert by_name["geopotential"].channels[-1] == full.index("z_1000") == 0
    assert by_name["msl"].channels == (267,) and by_name["t2m"].level_dim is None
    assert sorted(c for p in plan.placements for c in p.channels) == list(range(268))


def test_variables_in_groups_match_by_short_name(ckpt, tmp_path):
    """A netCDF file with groups (as GRIB hypercubes become) codes like the flat file and decodes to a DataTree."""
    ds = era5_dataset()
    grouped = tmp_path / "groups.nc"
    xr.DataTree.from_dict({"/": xr.Dataset(attrs=ds.attrs), "/isobaricInhPa": ds[["t"]], "/surface": ds[["t2m", "tp"]]}).to_netcdf(grouped)
    flat = tmp_path / "flat.nc"
    ds.to_netcdf(flat)
    data = codec.encode(grouped, weights=ckpt, progress=True)
    assert set(codec.info(data)["variables"]) == {"isobaricInhPa/t", "surface/t2m", "surface/tp"}
    tree = codec.decode(data, weights=ckpt)
    assert isinstance(tree, xr.DataTree) and {"isobaricInhPa", "surface"} <= set(tree.children)
    expected = codec.decode(codec.encode(flat, weights=ckpt), weights=ckpt)
    np.testing.assert_array_equal(tree["isobaricInhPa"].t.values, expected.t.values)
    np.testing.assert_array_equal(tree["surface"].tp.values, expected.tp.values)
