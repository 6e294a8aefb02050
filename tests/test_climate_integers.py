"""Record version 5: integer-valued fields (categories such as precipitation type) may decode to integers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import codec
from codec.climate import archive, fieldcodec
from codec.errors import CorruptStreamError
from tests.helpers import tiny_vaeformer


@pytest.fixture(scope="module")
def net():  # noqa: ANN201 - a tiny VAEformer
    return tiny_vaeformer()


def categories(shape=(48, 96), seed=0) -> np.ndarray:
    """A precipitation-type-like field: integer codes 0-5 in smooth blobs, mostly 0, a few missing points."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 5, shape[0]), np.linspace(0, 8, shape[1]), indexing="ij")
    smooth = np.sin(y) * np.cos(1.4 * x) + 0.2 * rng.standard_normal(shape)
    f = np.clip(np.floor(smooth * 4), 0, 5).astype(np.float64)
    f[3:6, 10:20] = np.nan
    return f


def spec(shape, bound=None, packing=None, int_range=None, version=5) -> fieldcodec.FieldSpec:
    return fieldcodec.FieldSpec(shape, np.dtype("float32"), bound, packing, int_range, version)


def flags(record: bytes, s: fieldcodec.FieldSpec) -> int:
    return record[s.head.size - 1]


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("bound", [None, 0.4, 1.5])
def test_integer_fields_round_only_where_no_worse(net, level, bound):
    field = categories()
    valid = ~np.isnan(field)
    coder = net.at_level(level)
    s5, s4 = spec(field.shape, bound), spec(field.shape, bound, version=4)
    record, out = fieldcodec.encode(coder, field, s5)
    plain, plain_out = fieldcodec.encode(coder, field, s4)
    np.testing.assert_array_equal(fieldcodec.decode(coder, record, s5, valid), out)
    assert len(record) == len(plain) + 1 and record[s5.head.size :] == plain[s4.head.size :]  # the same coding, plus the flags
    err, plain_err = np.abs(out - field)[valid], np.abs(plain_out - field)[valid]
    assert np.all(err <= plain_err)  # no point moves further off
    if flags(record, s5):
        assert np.array_equal(out[valid], np.round(out[valid])) and not np.array_equal(plain_out[valid], np.round(plain_out[valid]))
    else:
        np.testing.assert_array_equal(out, plain_out)
    if bound == 0.4:  # within 0.4 of an integer, rounding finds it: the categories come back exactly
        assert flags(record, s5) == fieldcodec.INTEGERS and np.array_equal(out[valid], field[valid])


def test_fields_that_are_not_integers_or_are_packed_never_round(net):
    field = categories() + 0.5
    s = spec(field.shape, 0.4)
    record, out = fieldcodec.encode(net.at_level(3), field, s)
    assert flags(record, s) == 0
    packed = spec(field.shape, 0.4, packing=(1.0, 0.0), int_range=(-32767, 32767))
    record, _ = fieldcodec.encode(net.at_level(3), categories(), packed)
    assert flags(record, packed) == 0  # (packed values snap to their own integer grid)


def test_unknown_flags_are_refused(net):
    field = categories()
    s = spec(field.shape, 0.4)
    record, _ = fieldcodec.encode(net.at_level(2), field, s)
    forged = record[: s.head.size - 1] + bytes([2]) + record[s.head.size :]
    with pytest.raises(CorruptStreamError, match="unknown flags"):
        fieldcodec.decode(net.at_level(2), forged, s, ~np.isnan(field))


def test_a_categorical_variable_decodes_to_its_categories_through_a_file(tmp_path):
    ds = xr.Dataset({"ptype": (("latitude", "longitude"), categories().astype(np.float32))},
                    coords={"latitude": np.linspace(60, -60, 48), "longitude": np.arange(96) * 3.75})
    path = tmp_path / "ptype.nc"
    ds.to_netcdf(path)
    data = codec.encode(path, quality=3, max_abs_error=0.45)
    assert codec.container.unpack(data).meta["field_records"] == archive.RECORD_VERSION == 5
    back = codec.decode(data).ptype.values
    np.testing.assert_array_equal(back, ds.ptype.values)


def test_the_flag_needs_every_point_no_further_off(monkeypatch):
    """Rounding that lowers the largest error and the MSE but moves one point further off is refused."""
    field = np.zeros((1, 5))
    s = spec(field.shape)
    out = np.array([[0.9, 1.0, 0.4, 0.4, 0.4]])  # rounded [1, 1, 0, 0, 0]: max error stays 1, MSE falls, but 0.9 -> 1
    record = s.head.pack(0.0, 1.0, 0, 0, 0, 0, 0.0, 1.0, 0)
    monkeypatch.setattr(fieldcodec, "_encode", lambda net, f, sp: (record, out))
    flagged, back = fieldcodec.encode(None, field, s)
    assert flags(flagged, s) == 0 and back is out
    monkeypatch.setattr(fieldcodec, "_encode", lambda net, f, sp: (record, np.array([[0.3, 1.0, 0.4, 0.2, 0.0]])))
    flagged, back = fieldcodec.encode(None, field, s)  # every point within 0.5 except one already off by 1: all no worse
    assert flags(flagged, s) == fieldcodec.INTEGERS and np.array_equal(back, [[0.0, 1.0, 0.0, 0.0, 0.0]])
