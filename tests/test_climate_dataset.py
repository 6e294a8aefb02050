"""codec.climate.dataset: grid detection, lazy fields, skeleton + rebuild + write_netcdf round trips, bad input."""

from __future__ import annotations

import inspect
import json
import lzma
import zlib
from pathlib import Path

import dask
import dask.array as da
import eccodes
import numpy as np
import pytest
import xarray as xr

from codec.climate import dataset as D
from codec.climate import grid, writer
from codec.climate.skeleton import rebuild
from codec.errors import FormatError, InputError
from tests.helpers import grib_message

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "climate"
REAL_NETCDF = sorted(SHARED.glob("*.cdf")) if SHARED.is_dir() else []


# ----------------------------------------------------------------------------- builders


def era5_like(rng: np.random.Generator) -> xr.Dataset:
    """t(time, level, lat, lon) float32, int16-packed sst with a land mask, 1-D and string variables."""
    lat = np.linspace(89, -89, 19) + rng.normal(0, 1e-9, 19)  # awkward floats: exactness shows
    lon = np.arange(0, 360, 10.0)
    t = 250 + rng.normal(0, 5, (2, 3, 19, 36))
    sst = 290 + rng.normal(0, 3, (19, 36))
    sst[3:7, 5:12] = np.nan
    wind = rng.normal(0, 5, (2, 19, 36)).astype(np.float32)
    wind[0, 0, 0] = np.nan
    ds = xr.Dataset(
        {
            "t": (("time", "level", "lat", "lon"), t.astype(np.float32), {"units": "K", "long_name": "temperature", "valid_range": np.float32([150, 350])}),
            "sst": (("lat", "lon"), sst, {"units": "K", "comment": "land is missing"}),
            "u": (("time", "lat", "lon"), wind, {"units": "m s-1"}),
            "weights": (("level",), np.array([0.2, 0.3, 0.5]), {"note": "1-D, not a field"}),
            "flag": ((), np.int8(3)),
        },
        coords={
            "time": ("time", np.array([0.0, 6.5]), {"units": "hour since 0000-01-01 00:00:00", "calendar": "julian"}),
            "level": ("level", np.array([500, 850, 1000], np.int32), {"units": "hPa"}),
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
            "station": ("level", np.array(["a", "bb", "ccc"])),
            "code": ("level", np.array([b"x", b"y", b"z"], "S1")),
        },
        attrs={"title": "test", "history": "made for a test", "version": np.int32(2)},
    )
    ds.sst.encoding.update(dtype="int16", scale_factor=np.float32(0.01), add_offset=np.float32(290.0), _FillValue=np.int16(-32767))
    ds.u.encoding.update(_FillValue=None, missing_value=np.float32(-99.9))
    ds.t.encoding.update(zlib=True, complevel=4, chunksizes=(1, 1, 19, 36))
    ds.weights.encoding.update(_FillValue=None)
    return ds


def round_trip(source_path: Path, out_path: Path) -> tuple[list[grid.GridVariable], dict[str, list[np.ndarray]]]:
    """open_source -> fields -> skeleton -> rebuild with exactly those fields -> write_netcdf."""
    with D.open_source(source_path) as source:
        variables = source.variables
        fields = {v.name: list(source.fields(v)) for v in variables}
        skeleton = source.skeleton()
    writer.write_netcdf(rebuild(skeleton, variables, lambda v, i: fields[v.name][i]), out_path)
    return variables, fields


def same_attrs(a: dict, b: dict) -> bool:
    """Equal keys, values (NaN == NaN) and on-disk types."""
    if list(a) != list(b):
        return False
    for k, value in a.items():
        x, y = np.asarray(value), np.asarray(b[k])
        if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            return False
    return True


def assert_raw_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    """Raw (decode_cf=False) variables, dims, dtypes, attributes and values all identical."""
    assert list(a.variables) == list(b.variables)
    assert dict(a.sizes) == dict(b.sizes)
    assert same_attrs(a.attrs, b.attrs)
    for name, x in a.variables.items():
        y = b.variables[name]
        assert x.dims == y.dims, name
        assert x.dtype == y.dtype, name
        assert same_attrs(x.attrs, y.attrs), (name, x.attrs, y.attrs)
        assert np.array_equal(x.values, y.values, equal_nan=x.dtype.kind == "f"), name


@pytest.fixture(scope="module")
def tiny_grib(tmp_path_factory) -> Path:
    """Six messages in four hypercubes: t on two pressure levels, surface t and sp (with a gap), 2 m t, 10 m u."""
    rng = np.random.default_rng(1)
    def field() -> np.ndarray:
        return 280 + rng.normal(0, 3, (9, 24))

    gap = field()
    gap[2:4, 3:9] = np.nan
    messages = [
        grib_message("isobaricInhPa", 850, "t", field()),
        grib_message("isobaricInhPa", 500, "t", field()),
        grib_message("surface", 0, "t", field()),
        grib_message("heightAboveGround", 2, "2t", field()),
        grib_message("heightAboveGround", 10, "10u", field()),
        grib_message("surface", 0, "sp", gap),
    ]
    path = tmp_path_factory.mktemp("grib") / "tiny.grib2"
    path.write_bytes(b"".join(messages))
    return path


# ----------------------------------------------------------------------------- round trips


def test_netcdf_round_trip_is_exact(tmp_path):
    src, out = tmp_path / "src.nc", tmp_path / "out.nc"
    era5_like(np.random.default_rng(0)).to_netcdf(src)
    variables, fields = round_trip(src, out)
    assert [v.name for v in variables] == ["t", "sst", "u"]
    with xr.open_dataset(src, decode_cf=False) as a, xr.open_dataset(out, decode_cf=False) as b:
        assert_raw_identical(a, b)  # includes the raw packed int16 of sst and its float32 packing attrs
        assert b.sst.dtype == np.int16 and b.sst.attrs["scale_factor"].dtype == np.float32
    with xr.open_dataset(src, decode_times=False) as a, xr.open_dataset(out, decode_times=False) as b:
        for name in ("t", "sst", "u"):
            np.testing.assert_array_equal(np.isnan(a[name].values), np.isnan(b[name].values))
        assert int(np.isnan(b.sst.values).sum()) == 4 * 7
    with xr.open_dataset(out, decode_times=False) as b:
        assert b.t.encoding["zlib"] and b.t.encoding["chunksizes"] == (1, 1, 19, 36)
    assert np.isnan(fields["sst"][0]).sum() == 4 * 7 and fields["t"][0].dtype == np.float64


def test_skeleton_keeps_coordinates_bit_exact_and_rebuild_is_lazy(tmp_path):
    src = tmp_path / "src.nc"
    era5_like(np.random.default_rng(2)).to_netcdf(src)
    calls = []

    def load(var, i):
        calls.append((var.name, i))
        return np.full(var.field_shape, float(i))

    with D.open_source(src) as source, xr.open_dataset(src, decode_times=False) as original:
        rebuilt = rebuild(source.skeleton(), source.variables, load)
        for name in original.coords:
            assert rebuilt[name].values.tobytes() == original[name].values.tobytes(), name
            assert same_attrs(rebuilt[name].attrs, original[name].attrs), name
        assert rebuilt.time.attrs["units"] == "hour since 0000-01-01 00:00:00"
    assert isinstance(rebuilt.t.data, da.Array) and rebuilt.t.data.chunksize == (1, 1, 19, 36)
    assert rebuilt.t.dtype == np.float32 and rebuilt.weights.values.tolist() == [0.2, 0.3, 0.5]
    assert calls == []
    assert float(rebuilt.t[1, 2, 0, 0]) == 5.0  # field 5 in C order of (time, level)
    assert calls == [("t", 5)]


def test_skeletons_are_xz_and_old_zlib_skeletons_still_read(tmp_path):
    src = tmp_path / "src.nc"
    era5_like(np.random.default_rng(2)).to_netcdf(src)
    with D.open_source(src) as source:
        skeleton, variables = source.skeleton(), source.variables
    assert skeleton.startswith(b"\xfd7zXZ\x00")
    old = zlib.compress(lzma.decompress(skeleton), 9)  # how files before 2026-12-02 stored it
    load = lambda var, i: np.zeros(var.field_shape)  # noqa: E731
    new_ds, old_ds = rebuild(skeleton, variables, load), rebuild(old, variables, load)
    xr.testing.assert_identical(new_ds, old_ds)


def test_netcdf_groups_round_trip(tmp_path):
    src, out = tmp_path / "groups.nc", tmp_path / "out.nc"
    rng = np.random.default_rng(3)
    root = era5_like(rng)
    child = xr.Dataset(
        {"z": (("y", "x"), rng.normal(size=(4, 5)).astype(np.float32))},
        coords={"y": ("y", np.linspace(-30, 30, 4), {"units": "degrees_north"}), "x": ("x", np.arange(5.0), {"units": "degrees_east"})},
    )
    root.to_netcdf(src)
    child.to_netcdf(src, mode="a", group="ocean/deep")
    variables, _ = round_trip(src, out)
    assert [(v.name, v.group) for v in variables][-1] == ("ocean/deep/z", "ocean/deep")
    for group in (None, "ocean/deep"):
        with xr.open_dataset(src, group=group, decode_cf=False) as a, xr.open_dataset(out, group=group, decode_cf=False) as b:
            assert_raw_identical(a, b)


def test_grib_hypercubes_become_groups(tiny_grib, tmp_path):
    out = tmp_path / "out.nc"
    variables, fields = round_trip(tiny_grib, out)
    names = sorted(v.name for v in variables)
    assert names == ["heightAboveGround/u10", "heightAboveGround_2/t2m", "isobaricInhPa/t", "surface/sp", "surface/t"]
    assert all(v.name == f"{v.group}/{v.name.rsplit('/', 1)[-1]}" for v in variables)
    assert int(np.isnan(fields["surface/sp"][0]).sum()) == 2 * 6
    tree = xr.open_datatree(out, decode_times=False)
    assert set(tree.children) == {"heightAboveGround", "heightAboveGround_2", "isobaricInhPa", "surface"}
    for var in variables:
        short = var.name.rsplit("/", 1)[-1]
        written = tree[var.group].to_dataset()[short]
        np.testing.assert_array_equal(written.values.reshape(-1, *var.field_shape), np.stack(fields[var.name]))
        assert written.attrs["GRIB_typeOfLevel"] in var.group
    with D.open_source(tiny_grib) as source:
        cube = source._groups["isobaricInhPa"]
        written = tree["isobaricInhPa"].to_dataset()
        assert written.isobaricInhPa.values.tolist() == [850.0, 500.0]
        assert written.latitude.values.tobytes() == cube.latitude.values.tobytes()
        assert written.time.attrs["units"] == "seconds since 1970-01-01"


@pytest.mark.skipif(not (SHARED / "gfs.grb").is_file(), reason="shared climate data not available")
def test_first_messages_of_real_gfs(tmp_path):
    """A few whole messages of gfs.grb make a valid small GRIB file (the whole file takes a minute)."""
    data = (SHARED / "gfs.grb").read_bytes()
    small = tmp_path / "gfs_small.grb"
    small.write_bytes(data[: _message_ends(data, 4)[-1]])
    variables, fields = round_trip(small, tmp_path / "out.nc")
    assert variables and all(v.field_shape == (73, 144) for v in variables)
    assert all(np.isfinite(f).all() for fs in fields.values() for f in fs)


def _message_ends(data: bytes, count: int) -> list[int]:
    """Offsets of the ends of the first ``count`` GRIB2 messages (length in bytes 8..16 of each header)."""
    ends, pos = [], 0
    while len(ends) < count:
        assert data[pos : pos + 4] == b"GRIB" and data[pos + 7] == 2
        pos += int.from_bytes(data[pos + 8 : pos + 16], "big")
        ends.append(pos)
    return ends


# ----------------------------------------------------------------------------- the source


def test_grid_detection_by_units_names_and_axis(tmp_path):
    rng = np.random.default_rng(4)
    coads = xr.Dataset(
        {"SST": (("TIME", "COADSY", "COADSX"), rng.normal(size=(2, 3, 4)).astype(np.float32))},
        coords={"COADSY": ("COADSY", [-10.0, 0, 10], {"units": "degrees_north"}), "COADSX": ("COADSX", [0.0, 1, 2, 3], {"units": "degrees_east"})},
    )
    named = xr.Dataset({"a": (("latitude", "longitude"), np.ones((2, 3)))}, coords={"latitude": [1.0, 2.0], "longitude": [0.0, 1.0, 2.0]})
    axis = xr.Dataset(
        {"b": (("YAX", "XAX"), np.ones((2, 3), np.int16))},
        coords={"YAX": ("YAX", [1.0, 2.0], {"axis": "Y", "units": "degrees"}), "XAX": ("XAX", [0.0, 1, 2], {"axis": "X", "units": "degrees"})},
    )
    swapped = xr.Dataset({"c": (("lon", "lat"), np.ones((3, 2)))}, coords={"lat": [1.0, 2.0], "lon": [0.0, 1.0, 2.0]})
    for ds, expected in ((coads, ["SST"]), (named, ["a"]), (axis, ["b"]), (xr.merge([named, swapped]), ["a"])):
        with D.open_source(ds) as source:
            assert [v.name for v in source.variables] == expected
    with D.open_source(coads) as source:
        var = source.variables[0]
        assert (var.n_fields, var.field_shape, var.dtype, var.packing()) == (2, (3, 4), "float32", None)
        assert source.latitudes(var).tolist() == [-10.0, 0.0, 10.0]


def test_fields_are_read_one_at_a_time():
    loaded = []

    def field(i):
        loaded.append(i)
        return np.full((1, 2, 3), float(i))

    lat, lon = [0.0, 1.0], [0.0, 1.0, 2.0]
    lazy = da.concatenate([da.from_delayed(dask.delayed(field)(i), (1, 2, 3), float) for i in range(4)])
    ds = xr.Dataset({"v": (("time", "lat", "lon"), lazy)}, coords={"lat": lat, "lon": lon})
    with D.open_source(ds) as source:
        fields = source.fields(source.variables[0])
        assert inspect.isgenerator(fields) and loaded == []
        assert next(fields).tolist() == [[0.0] * 3] * 2 and loaded == [0]
        assert [f[0, 0] for f in fields] == [1.0, 2.0, 3.0] and loaded == [0, 1, 2, 3]


def test_fields_from_disk_leave_the_variable_unloaded(tmp_path):
    src = tmp_path / "src.nc"
    era5_like(np.random.default_rng(5)).to_netcdf(src)
    with D.open_source(src) as source:
        var = source.variables[0]
        first = next(source.fields(var))
        assert first.shape == var.field_shape
        assert not source._groups[None].variables["t"]._in_memory


def test_open_source_keeps_a_callers_dataset_open(tmp_path):
    src = tmp_path / "src.nc"
    era5_like(np.random.default_rng(6)).to_netcdf(src)
    with xr.open_dataset(src, decode_times=False) as ds:
        with D.open_source(ds) as source:
            assert [v.name for v in source.variables] == ["t", "sst", "u"]
        assert ds.t.values.shape == (2, 3, 19, 36)  # still readable


@pytest.mark.skipif(not REAL_NETCDF, reason="shared climate data not available")
@pytest.mark.parametrize("path", REAL_NETCDF, ids=lambda p: p.name)
def test_real_netcdf_files(path):
    with D.open_source(path) as source:
        assert source.variables
        var = source.variables[0]
        field = next(source.fields(var))
        assert field.shape == var.field_shape and field.dtype == np.float64
        assert np.isfinite(field).any()
        lat = source.latitudes(var)
        assert lat.shape == (var.field_shape[0],) and np.abs(lat).max() <= 90
        assert len(source.skeleton()) < 100_000


# ----------------------------------------------------------------------------- GridVariable


def test_grid_variable_json_and_packing(tmp_path):
    src = tmp_path / "src.nc"
    era5_like(np.random.default_rng(7)).to_netcdf(src)
    with D.open_source(src) as source:
        variables = source.variables
    for var in variables:
        back = grid.GridVariable.from_json(json.loads(json.dumps(var.to_json())))
        assert json.dumps(back.to_json()) == json.dumps(var.to_json())  # (NaN fill values: compare as text)
    t, sst, u = variables
    assert sst.packing() == (float(np.float32(0.01)), 290.0)
    assert t.packing() is None and u.packing() is None
    assert (t.n_fields, t.field_shape, sst.n_fields) == (6, (19, 36), 1)


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""},
        {"dims": ["lat"]},
        {"dims": "lat lon"},
        {"shape": [19]},
        {"shape": [19, -1]},
        {"shape": [19.0, 36]},
        {"dtype": "object"},
        {"dtype": "nonsense"},
        {"attrs": []},
        {"encoding": None},
        {"group": 3},
    ],
)
def test_grid_variable_from_json_rejects_bad_input(change):
    good = {"name": "v", "dims": ["lat", "lon"], "shape": [19, 36], "dtype": "float32", "attrs": {}, "encoding": {}, "group": None}
    grid.GridVariable.from_json(good)
    with pytest.raises(FormatError):
        grid.GridVariable.from_json({**good, **change})
    with pytest.raises(FormatError):
        grid.GridVariable.from_json([good])


# ----------------------------------------------------------------------------- rebuild / write failures


def test_rebuild_rejects_bad_skeleton_and_fields(tmp_path):
    src = tmp_path / "src.nc"
    era5_like(np.random.default_rng(8)).to_netcdf(src)
    with D.open_source(src) as source:
        variables, skeleton = source.variables, source.skeleton()
    with pytest.raises(FormatError, match="skeleton is corrupt"):
        rebuild(b"not a skeleton", variables, lambda v, i: None)
    stranger = grid.GridVariable("q", ("lat", "lon"), (19, 36), "float32", {}, {})
    with pytest.raises(FormatError, match="no place for grid variable q"):
        rebuild(skeleton, [stranger], lambda v, i: None)
    rebuilt = rebuild(skeleton, variables, lambda v, i: np.zeros((2, 2)))
    with pytest.raises(FormatError, match="has shape"):
        rebuilt.sst.load()


def test_write_netcdf_is_atomic(tmp_path):
    src, out = tmp_path / "src.nc", tmp_path / "out.nc"
    era5_like(np.random.default_rng(9)).to_netcdf(src)
    out.write_bytes(b"keep me")
    with D.open_source(src) as source:
        variables, skeleton = source.variables, source.skeleton()

    def failing(var, i):
        raise FormatError("field record is corrupt")

    with pytest.raises(FormatError, match="field record is corrupt"):
        writer.write_netcdf(rebuild(skeleton, variables, failing), out)
    assert out.read_bytes() == b"keep me"
    assert {p.name for p in tmp_path.iterdir()} == {"src.nc", "out.nc"}  # no temporary file left


# ----------------------------------------------------------------------------- bad input


def _bad_input(kind: str, tmp_path: Path) -> tuple[object, str]:
    """(input, a phrase the one-line error must contain)."""
    rng = np.random.default_rng(10)
    good = tmp_path / "good.nc"
    era5_like(rng).to_netcdf(good)
    path = tmp_path / kind
    if kind == "missing":
        return path, "no such file"
    if kind == "directory":
        path.mkdir()
        return path, "is a directory"
    if kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
        return path, "not a netCDF or GRIB file"
    if kind == "random":
        path.write_bytes(rng.bytes(4096))
        return path, "not a netCDF or GRIB file"
    if kind == "truncated-netcdf4":
        path.write_bytes(good.read_bytes()[:3000])
        return path, "cannot read"
    if kind == "truncated-classic":
        era5_like(rng).drop_vars(["station", "code"]).to_netcdf(tmp_path / "classic.nc", format="NETCDF3_64BIT")
        path.write_bytes((tmp_path / "classic.nc").read_bytes()[:2000])
        return path, "cannot read"
    if kind == "grib-garbage":
        path.write_bytes(b"GRIB" + rng.bytes(500))
        return path, "GRIB"
    if kind == "no-grid":
        xr.Dataset({"series": (("time",), np.arange(5.0))}).to_netcdf(path)
        return path, "no 2-D lat-lon grid variable"
    if kind == "projected":
        ds = xr.Dataset({"v": (("y", "x"), np.ones((2, 3)))}, coords={"y": ("y", [0.0, 1e5], {"units": "m"}), "x": ("x", [0.0, 1e5, 2e5], {"units": "m"})})
        ds.to_netcdf(path)
        return path, "no 2-D lat-lon grid variable"
    if kind == "text-on-grid":
        ds = era5_like(rng)
        ds["label"] = (("lat", "lon"), np.full((19, 36), "land"))
        ds.to_netcdf(path)
        return path, "variable label on the lat-lon grid is not numeric"
    if kind == "reduced-gaussian":
        h = eccodes.codes_grib_new_from_samples("reduced_gg_pl_grib2")
        path.write_bytes(eccodes.codes_get_message(h))
        eccodes.codes_release(h)
        return path, "no regular lat-lon grid"
    if kind == "dataset-without-grid":
        return xr.Dataset({"series": (("time",), np.arange(5.0))}), "no 2-D lat-lon grid variable in the dataset"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "png",
        "random",
        "truncated-netcdf4",
        "truncated-classic",
        "grib-garbage",
        "no-grid",
        "projected",
        "text-on-grid",
        "reduced-gaussian",
        "dataset-without-grid",
    ],
)
def test_bad_input_is_one_clear_line(kind, tmp_path):
    obj, phrase = _bad_input(kind, tmp_path)
    with pytest.raises(InputError) as info, D.open_source(obj) as source:  # damaged data may only fail when read
        for var in source.variables:
            for _ in source.fields(var):
                pass
    message = str(info.value)
    assert phrase in message and "\n" not in message and "Traceback" not in message
    exc = info.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)  # no chained backend error


@pytest.mark.skipif(not (SHARED / "ecmwf_tigge.grb").is_file(), reason="shared climate data not available")
def test_real_reduced_gaussian_grib_is_refused():
    with pytest.raises(InputError, match="no regular lat-lon grid"):
        D.open_source(SHARED / "ecmwf_tigge.grb")
