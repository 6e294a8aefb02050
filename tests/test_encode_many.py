"""`codec encode-many` / codec.encode_many: many files on dask.distributed, resumable, one bad file never stops the others."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster
from PIL import Image

import codec
from codec import batch
from codec.climate.groups import OPEN
from tests.helpers import assert_one_line_error
from tests.helpers import run_cli as run


@pytest.fixture(scope="module")
def cluster():
    """An in-process cluster (one worker thread) reachable by TCP address, so the CLI can use it with --scheduler."""
    with LocalCluster(processes=False, protocol="tcp", n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as c:
        yield c


def write_png(path, photo, shift):
    Image.fromarray(np.roll(photo, shift, axis=1)).save(path)
    return path


def write_nc(path, steps, seed=0):
    """A tiny netCDF file: t(time, lat, lon) on a 10-degree grid, plus a static field without time."""
    rng = np.random.default_rng(seed)
    lat, lon = np.linspace(90, -90, 19), np.arange(0, 360, 10.0)
    y = np.deg2rad(lat)[:, None]
    t = 250 + 30 * np.cos(y)[None] + rng.normal(0, 0.5, (steps, 19, 36)) + np.arange(steps)[:, None, None]
    ds = xr.Dataset(
        {"t": (("time", "lat", "lon"), t.astype(np.float32), {"units": "K"}), "orography": (("lat", "lon"), np.repeat(np.cos(y), 36, axis=1))},
        coords={"time": ("time", np.arange(steps) * 6.0, {"units": "hours since 2020-01-01"}), "lat": lat, "lon": lon},
    )
    ds.to_netcdf(path)
    return path



def test_images_give_the_bytes_of_encode(tmp_path, photo, tiny_weights, client):
    src = tmp_path / "in"
    src.mkdir()
    pngs = [write_png(src / f"img{i}.png", photo, 7 * i) for i in range(3)]
    (src / "sub").mkdir()  # folders matching the glob are left out
    result = codec.encode_many(str(src / "*"), tmp_path / "out", client=client, weights=tiny_weights, max_abs_error=0.1)
    assert result.ok and len(result.encoded) == 3 and not result.skipped
    for png in pngs:
        data = (tmp_path / "out" / f"{png.stem}.bin").read_bytes()
        assert data == codec.encode(png, weights=tiny_weights)  # max_abs_error is climate-only: left out for images
        assert codec.decode(data, weights=tiny_weights).shape == photo.shape
    assert result.bytes_in == sum(p.stat().st_size for p in pngs) and result.bytes_out == sum(p.stat().st_size for p in result.encoded)
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_climate_files_resume_and_redo_a_damaged_output(tmp_path, vf_weights, client):
    ncs = [write_nc(tmp_path / f"f{i}.nc", 2, seed=i) for i in range(2)]
    expected = {nc.stem: codec.encode(nc, weights=vf_weights, max_abs_error=0.5) for nc in ncs}
    out = tmp_path / "out"
    first = codec.encode_many(ncs, out, client=client, weights=vf_weights, max_abs_error=0.5)
    assert first.ok and [p.name for p in first.encoded] == ["f0.cra", "f1.cra"]
    assert {p.stem: p.read_bytes() for p in first.encoded} == expected
    again = codec.encode_many(ncs, out, client=client, weights=vf_weights, max_abs_error=0.5)
    assert not again.encoded and len(again.skipped) == 2 and again.bytes_in == 0
    damaged = bytearray(expected["f1"])
    damaged[-5] ^= 0xFF
    (out / "f1.cra").write_bytes(bytes(damaged))
    repaired = codec.encode_many(ncs, out, client=client, weights=vf_weights, max_abs_error=0.5)
    assert [p.name for p in repaired.encoded] == ["f1.cra"] and [p.name for p in repaired.skipped] == ["f0.cra"]
    assert (out / "f1.cra").read_bytes() == expected["f1"]
    forced = codec.encode_many(ncs, out, client=client, force=True, weights=vf_weights, max_abs_error=0.5)
    assert len(forced.encoded) == 2 and not forced.skipped


def test_steps_per_file_cuts_along_time(tmp_path, photo, vf_weights, capsys, cluster):
    nc = write_nc(tmp_path / "big.nc", 5)
    png = write_png(tmp_path / "pic.png", photo, 0)
    code, out, err = run(
        capsys, "encode-many", tmp_path / "*.*", "-o", tmp_path / "out", "--steps-per-file", 2, "--scheduler", cluster.scheduler_address,
        "--weights", vf_weights, "--max-abs-error", 0.5,
    )
    assert code == 1 and err.splitlines()[0] == f"{png}: steps_per_file (--steps-per-file) applies to netCDF and GRIB files, not images", err
    assert out.startswith("encoded 3, skipped 0, failed 1;")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["big.t000000-000001.cra", "big.t000002-000003.cra", "big.t000004-000004.cra"]
    with xr.open_dataset(nc, **OPEN) as ds:
        for name, (a, b) in zip(names, [(0, 2), (2, 4), (4, 5)], strict=True):
            data = (tmp_path / "out" / name).read_bytes()
            part = ds.isel(time=slice(a, b))
            assert data == codec.encode(part, weights=vf_weights, max_abs_error=0.5)
            back = codec.decode(data, weights=vf_weights).load()
            assert np.abs(back.t.values - part.t.values).max() <= 0.5 and list(back.time.values) == list(part.time.values)
            assert np.abs(back.orography.values - part.orography.values).max() <= 0.5


def test_a_bad_file_is_listed_and_the_others_land(tmp_path, photo, tiny_weights, capsys):
    """The one CLI test with a real LocalCluster (a worker process)."""
    src = tmp_path / "in"
    src.mkdir()
    good = [write_png(src / f"good{i}.png", photo, i) for i in range(2)]
    (src / "broken.png").write_bytes(b"not an image at all")
    (src / "other").mkdir()
    write_png(src / "other" / "good0.png", photo, 5)  # same stem as good0: one output name, refused
    code, out, err = run(capsys, "encode-many", src / "**" / "*.png", "-o", tmp_path / "out", "--workers", 1, "--weights", tiny_weights)
    lines = err.strip().splitlines()
    assert code == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{src / 'broken.png'}: ") and lines[1].startswith(f"{src / 'other' / 'good0.png'}: output ")
    assert lines[-1] == "codec: error: 2 of 4 failed" and len(lines) == 3, err
    assert out.startswith("encoded 2, skipped 0, failed 2;")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good0.bin", "good1.bin"]
    assert all((tmp_path / "out" / f"{p.stem}.bin").read_bytes() == codec.encode(p, weights=tiny_weights) for p in good)


def test_unreachable_scheduler_is_one_line(tmp_path, photo, capsys, monkeypatch):
    monkeypatch.setattr(batch, "CONNECT_TIMEOUT", 0.5)
    write_png(tmp_path / "a.png", photo, 0)
    code, _, err = run(capsys, "encode-many", tmp_path / "*.png", "-o", tmp_path / "out", "--scheduler", "tcp://127.0.0.1:1")
    assert_one_line_error(code, err, "cannot reach the dask scheduler at tcp://127.0.0.1:1")
    assert not list((tmp_path / "out").iterdir())


def test_empty_glob_and_outdir_that_is_a_file(tmp_path, photo, capsys):
    code, _, err = run(capsys, "encode-many", tmp_path / "*.nc", "-o", tmp_path / "out")
    assert_one_line_error(code, err, f"no files match {tmp_path / '*.nc'}")
    write_png(tmp_path / "a.png", photo, 0)
    (tmp_path / "file").write_bytes(b"")
    code, _, err = run(capsys, "encode-many", tmp_path / "*.png", "-o", tmp_path / "file")
    assert_one_line_error(code, err, "output folder is a file")
    with pytest.raises(codec.CodecError, match="steps per file"):
        codec.encode_many([tmp_path / "a.png"], tmp_path / "out", steps_per_file=0)


def test_the_time_dimension_is_found_by_name_or_cf_attributes():
    grid = {"lat": [0.0, 1.0], "lon": [0.0, 1.0]}
    upper = xr.Dataset({"v": (("TIME", "lat", "lon"), np.zeros((3, 2, 2)))}, coords=grid)
    assert batch.time_dim(upper) == "TIME"
    cf = xr.Dataset({"v": (("t", "lat", "lon"), np.zeros((3, 2, 2)))}, coords={"t": ("t", [0.0, 1.0, 2.0], {"axis": "T"}), **grid})
    assert batch.time_dim(cf) == "t"
    with pytest.raises(codec.CodecError, match="no time dimension"):
        batch.time_dim(xr.Dataset({"v": (("lat", "lon"), np.zeros((2, 2)))}, coords=grid))


def test_cheap_failures_load_neither_torch_nor_dask(tmp_path):
    probe = (
        f"import sys, codec, codec.cli\nassert codec.cli.main(['encode-many', {str(tmp_path / '*.nc')!r}, '-o', {str(tmp_path / 'out')!r}]) == 1\n"
        "print(sorted(m for m in ('torch', 'dask', 'distributed') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    assert "encode_many" in codec.__all__ and "encode_many" in dir(codec)
