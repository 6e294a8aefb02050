"""codec.ClimateArchive: a compressed climate file as a PyTorch dataset of normalized time steps."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import xarray as xr

import codec
from codec.errors import CodecError, InputError

LEVELS = [500, 850]


@pytest.fixture(scope="module")
def source() -> xr.Dataset:
    """5 steps: t on two levels (a few missing points), surface pressure sp, and a static 2-D orography."""
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(-80, 80, 16), np.linspace(0, 360, 32, endpoint=False)
    t = 250 + 20 * np.cos(np.radians(lat))[None, None, :, None] + rng.normal(0, 1, (5, 2, 16, 32)).cumsum(-1) / 3
    t[:, 1] += 30
    t[0, 0, 0, :4] = np.nan
    sp = 1000 + rng.normal(0, 1, (5, 16, 32)).cumsum(-1)
    return xr.Dataset(
        {
            "t": (("time", "level", "lat", "lon"), t.astype("f4")),
            "sp": (("time", "lat", "lon"), sp.astype("f4")),
            "orog": (("lat", "lon"), rng.normal(0, 100, (16, 32)).astype("f4")),
        },
        coords={"time": np.arange(5), "level": LEVELS, "lat": lat, "lon": lon},
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory, source: xr.Dataset) -> str:
    """The source as a file at quality 2."""
    path = tmp_path_factory.mktemp("climate") / "small.cra"
    path.write_bytes(codec.encode(source, quality=2))
    return str(path)


def test_items_stack_variables_and_levels_into_normalized_channels(archive: str) -> None:
    ds = codec.ClimateArchive(archive)
    assert len(ds) == 5 and ds.variables == ["t", "sp"]  # the static 2-D field has no time step
    assert ds.channels == ["t/level=500", "t/level=850", "sp"]
    x = ds[1]
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 16, 32)
    raw = ds.step(1)
    assert np.allclose(ds.denormalize(x), raw, atol=1e-3)
    first = ds[0]
    assert torch.all(first[0, 0, :4] == 0)  # missing points normalize to 0
    decoded = codec.open_dataset(archive)
    assert np.allclose(raw[1], decoded.t.isel(time=1, level=1).values, equal_nan=True)


def test_channel_moments_are_the_source_moments_from_the_headers(archive: str, source: xr.Dataset) -> None:
    ds = codec.ClimateArchive(archive)
    data = np.concatenate([source.t.values.astype(np.float64), source.sp.values[:, None].astype(np.float64)], axis=1)
    assert np.allclose(ds.mean, np.nanmean(data, axis=(0, 2, 3)), rtol=1e-6)
    assert np.allclose(ds.std, np.nanstd(data, axis=(0, 2, 3)), rtol=1e-4)
    normalized = np.stack([ds[i].numpy() for i in range(len(ds))])
    assert abs(normalized.mean()) < 0.1 and 0.8 < normalized.std() < 1.1  # lossy at quality 2: a little smoother than the source


def test_selection_lead_and_transform(archive: str) -> None:
    ds = codec.ClimateArchive(archive, variables=["t"], select={"level": [850]}, lead=2, transform=lambda x: x * 2)
    assert ds.channels == ["t/level=850"] and len(ds) == 3
    now, later = ds[0]
    assert tuple(now.shape) == (1, 16, 32)
    full = codec.ClimateArchive(archive, variables=["t"])
    assert np.allclose(later.numpy() / 2 * ds.std[0] + ds.mean[0], full.step(2)[1], atol=1e-3)
    assert ds.mean[0] == pytest.approx(full.mean[1])


def test_dataloader_workers_give_the_same_batches(archive: str) -> None:
    ds = codec.ClimateArchive(archive)
    assert len(pickle.dumps(ds)) < 4096  # the file is opened in each process, not pickled
    serial = torch.cat(list(torch.utils.data.DataLoader(ds, batch_size=2)))
    ds[0]  # the parent has run the network before the workers fork
    parallel = torch.cat(list(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)))
    assert torch.equal(serial, parallel)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variables": ["u"]}, "no variable u"),
        ({"variables": ["orog"]}, "no time dimension"),
        ({"dim": "step"}, "no time dimension 'step'"),
        ({"select": {"level": [700]}}, "cannot select"),
        ({"lead": -1}, "lead"),
    ],
)
def test_bad_arguments_give_one_clear_error(archive: str, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        codec.ClimateArchive(archive, **kwargs)


def test_bad_files_and_indices(archive: str, tmp_path) -> None:
    with pytest.raises(InputError, match="no such file"):
        codec.ClimateArchive(tmp_path / "missing.cra")
    image = tmp_path / "image.bin"
    image.write_bytes(codec.encode(np.zeros((16, 16, 3), np.uint8)))
    with pytest.raises(InputError, match="not a climate archive"):
        codec.ClimateArchive(image)
    foreign = tmp_path / "foreign.cra"
    foreign.write_bytes(b"not a codec file at all")
    with pytest.raises(CodecError):
        codec.ClimateArchive(foreign)
    ds = codec.ClimateArchive(archive)
    with pytest.raises(IndexError):
        ds[5]
    assert torch.equal(ds[-1], ds[4])
