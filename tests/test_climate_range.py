"""Record version 3: every decoded point stays inside the source field's own range."""

from __future__ import annotations

import numpy as np
import pytest

import codec
from codec import container
from codec.climate import archive, fieldcodec
from codec.errors import CorruptStreamError
from tests.helpers import tiny_vaeformer


@pytest.fixture(scope="module")
def net():  # noqa: ANN201 - a tiny VAEformer
    return tiny_vaeformer()


def rain(shape=(64, 96), seed=0) -> np.ndarray:
    """A precipitation-like field: exactly zero over most of the grid, sharp positive cells elsewhere."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 6, shape[0]), np.linspace(0, 9, shape[1]), indexing="ij")
    f = np.maximum(0.0, np.sin(y) * np.cos(1.3 * x) + 0.3 * rng.standard_normal(shape) - 0.4) * 1e-3
    f[5:9, 10:30] = np.nan
    return f


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("bound", [None, 2e-4])
def test_decoded_points_stay_in_the_source_range(net, level, bound):
    field = rain()
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound, record_version=3)
    coder = net.at_level(level)
    record, recon = fieldcodec.encode(coder, field, spec)
    out = fieldcodec.decode(coder, record, spec, ~np.isnan(field))
    np.testing.assert_array_equal(out, recon)
    valid = ~np.isnan(field)
    assert np.isnan(out[~valid]).all()
    assert out[valid].min() >= 0.0 and out[valid].max() <= np.float32(np.nanmax(field)) * (1 + 1e-6)
    if bound is not None:
        assert np.abs(out - field)[valid].max() <= bound * (1 + 1e-6)


def test_field_range_is_rounded_outwards_to_float32():
    field = np.array([[0.1, 0.7], [np.nan, 1e-9]])
    lo, hi = fieldcodec.field_range(field)
    assert lo <= 1e-9 and hi >= 0.7 and np.float32(lo) == lo and np.float32(hi) == hi


@pytest.mark.parametrize("span", [(1.0, 0.0), (np.nan, 1.0), (0.0, np.inf)])
def test_corrupt_ranges_are_stream_errors(net, span):
    field = rain()
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), None, record_version=3)
    record, _ = fieldcodec.encode(net.at_level(2), field, spec)
    head = fieldcodec._HEAD_V3
    values = list(head.unpack_from(record))
    values[-2:] = span
    forged = head.pack(*values) + record[head.size :]
    with pytest.raises(CorruptStreamError, match="invalid range"):
        fieldcodec.decode(net.at_level(2), forged, spec, ~np.isnan(field))


def test_files_of_version_2_records_still_decode(tmp_path, monkeypatch):
    import xarray as xr

    ds = xr.Dataset({"tp": (("latitude", "longitude"), rain().astype(np.float32))},
                    coords={"latitude": np.linspace(60, -60, 64), "longitude": np.arange(96) * 3.75})
    path = tmp_path / "rain.nc"
    ds.to_netcdf(path)
    monkeypatch.setattr(archive, "RECORD_VERSION", 2)
    old = codec.encode(path, quality=2)
    monkeypatch.undo()
    assert container.unpack(old).meta["field_records"] == 2
    new = codec.encode(path, quality=2)
    assert container.unpack(new).meta["field_records"] == archive.RECORD_VERSION
    back_old, back_new = codec.decode(old).tp.values, codec.decode(new).tp.values
    assert np.nanmin(back_old) < 0.0 <= np.nanmin(back_new)  # version 2 let the network's error go negative
    assert back_old.shape == back_new.shape and np.isnan(back_old).sum() == np.isnan(back_new).sum()
