"""`codec train vaeformer`: climate folders are packed once, the split holds fields out, weights code real files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import codec
from codec.checkpoint import read_metadata
from codec.cli import main
from codec.training import climate_data


@pytest.fixture(scope="module")
def climate_dir(tmp_path_factory):
    """Two small netCDF files: 12 monthly fields of one variable, and one 2-D field with a land mask."""
    root = tmp_path_factory.mktemp("climate")
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(-88, 88, 23), np.arange(0, 360, 7.5)
    y, x = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    u = 5 * np.cos(y)[None] * np.sin(x + np.arange(12)[:, None, None] / 3) + rng.normal(0, 0.3, (12, 23, 48))
    xr.Dataset({"u": (("time", "lat", "lon"), u.astype(np.float32))}, coords={"time": np.arange(12.0), "lat": lat, "lon": lon}).to_netcdf(root / "winds.nc")
    sst = 280 + 10 * np.cos(y)
    sst[5:9, 10:20] = np.nan
    xr.Dataset({"sst": (("lat", "lon"), sst)}, coords={"lat": lat, "lon": lon}).to_netcdf(root / "sst.cdf")
    (root / "notes.txt").write_text("not climate data")
    return root


def test_extract_split_and_pack_round_trip(climate_dir, tmp_path):
    fields = climate_data.extract(climate_dir)
    assert len(fields) == 13
    held = [f.name for f in fields if f.validation]
    assert "winds.nc/u[11]" in held and "winds.nc/u[0]" not in held  # the last 10 % of a series
    assert all(abs(float(f.values[f.valid].astype(np.float64).mean())) < 1e-2 for f in fields)  # normalized
    pack = tmp_path / "fields.npz"
    climate_data.pack(fields, pack)
    again = climate_data.unpack(pack)
    assert [f.name for f in again] == [f.name for f in fields]
    np.testing.assert_array_equal(again[3].values, fields[3].values)
    batch = climate_data.FieldCrops(again, (16, 32), seed=0).batch(4)
    assert batch.shape == (4, 3, 16, 32) and set(np.unique(batch[:, 1].numpy())) <= {0.0, 1.0}


def test_lat_weights_follow_cosine():
    w = climate_data.lat_weights(np.array([0.0, 60.0, 90.0]))
    assert w[0] > w[1] > w[2] >= 0 and abs(w[0] / w[1] - 2.0) < 1e-5


def test_tiny_training_exports_weights_that_code_files(climate_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["train", "vaeformer", "--preset", "tiny", "--data", str(climate_dir), "--out", str(out), "--no-progress", "--threads", "1"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {f"{k}_q{q}" for k in ("ratio", "nrmse") for q in range(1, 6)} == set(result["validation"])
    assert list((tmp_path / "cache" / "codec").glob("fields-*.npz"))  # folder packed once, cached
    weights = out / "model.safetensors"
    assert read_metadata(weights)["model"] == "vaeformer"
    data = codec.encode(climate_dir / "winds.nc", weights=weights, max_abs_error=0.5)
    back = codec.decode(data, weights=weights).load()
    orig = xr.open_dataset(climate_dir / "winds.nc")
    assert float(np.abs(back.u.values - orig.u.values).max()) <= 0.5
    # one weights file, every quality: the finest level spends more bytes than the coarsest
    finest, coarsest = (codec.encode(climate_dir / "winds.nc", weights=weights, quality=q) for q in (5, 1))
    assert len(finest) > len(coarsest)
    assert codec.info(finest)["quality"] == 5


def test_no_climate_files(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    code = main(["train", "vaeformer", "--preset", "tiny", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "no netCDF/GRIB files" in err


def test_quality_is_not_a_training_option(climate_dir, tmp_path, capsys):
    code = main(["train", "vaeformer", "--preset", "tiny", "--quality", "2", "--data", str(climate_dir), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "every quality level" in err and len(err.strip().splitlines()) == 1


def test_config_sets_the_network_levels_and_refinements(climate_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": {"rates": [4.0, 1.0], "refinements": [0.3]}}))
    args = ["train", "vaeformer", "--preset", "tiny", "--data", str(climate_dir), "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1"]
    assert main([*args, "--config", str(config)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {f"ratio_q{q}" for q in (1, 2, 3)} <= set(result["validation"]) and "ratio_q4" not in result["validation"]
    data = codec.encode(climate_dir / "winds.nc", weights=tmp_path / "run" / "model.safetensors", quality=3)
    assert codec.info(data)["relative_error_bound"] == 0.3
    config.write_text(json.dumps({"model": {"refinements": [0.2, 0.4]}}))
    assert main([*args, "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "refinements must be positive, distinct and descending" in err and len(err.strip().splitlines()) == 1
