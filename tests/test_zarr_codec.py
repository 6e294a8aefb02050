"""The numcodecs codec ``"codec"`` (codec.climate.numcodec): entry point, chunk round trips, Zarr 2 and 3 stores, bad input."""

from __future__ import annotations

import pickle

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr

from codec.climate import numcodec
from codec.errors import CorruptStreamError, InputError, ModelError

BOUND = 0.05


@pytest.fixture(scope="module")
def bounded() -> numcodec.ClimateCodec:
    return numcodecs.get_codec({"id": "codec", "quality": 2, "max_abs_error": BOUND})


def _fields(shape: tuple[int, ...], seed: int = 0, dtype: str = "f4") -> np.ndarray:
    """Smooth random fields (cumulative sums along both axes), with a few missing points."""
    x = np.random.default_rng(seed).normal(size=shape).cumsum(-1).cumsum(-2) / 4
    x[..., 0, :3] = np.nan
    return x.astype(dtype)


def _dataset(n_time: int = 3, shape: tuple[int, int] = (24, 48)) -> xr.Dataset:
    lat = np.linspace(-90, 90, shape[0])
    lon = np.linspace(0, 360, shape[1], endpoint=False)
    return xr.Dataset(
        {"t": (("time", "lat", "lon"), _fields((n_time, *shape)))},
        coords={"time": np.arange(n_time), "lat": lat, "lon": lon},
    ).chunk({"time": 1})


def test_entry_point_config_round_trip_and_pickle(bounded: numcodec.ClimateCodec) -> None:
    assert isinstance(bounded, numcodec.ClimateCodec)
    config = bounded.get_config()
    assert config["id"] == "codec" and config["model"] == "vaeformer" and config["quality"] == 2
    assert config["max_abs_error"] == BOUND and len(config["weights_hash"]) == 16
    assert numcodecs.get_codec(config) == bounded
    assert numcodec.ClimateCodec.from_dict(bounded.to_dict()) == bounded
    again = pickle.loads(pickle.dumps(bounded))
    assert again == bounded and hash(again) == hash(bounded)
    default = numcodecs.get_codec({"id": "codec"})
    assert default.quality is not None and default.max_abs_error is None


@pytest.mark.parametrize("dtype", ["f4", "f8"])
@pytest.mark.parametrize("shape", [(5, 7), (2, 16, 33), (2, 2, 12, 20)])
def test_chunk_round_trip_keeps_shape_dtype_missing_and_bound(bounded: numcodec.ClimateCodec, shape: tuple[int, ...], dtype: str) -> None:
    x = _fields(shape, dtype=dtype)
    data = bounded.encode(x)
    y = bounded.decode(data)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.array_equal(np.isnan(y), np.isnan(x))
    assert np.nanmax(np.abs(y.astype(np.float64) - x.astype(np.float64))) <= BOUND
    out = np.empty_like(x)
    bounded.decode(data, out=out)
    assert np.array_equal(out, y, equal_nan=True)


def test_unbounded_quality_and_thread_independent_bytes() -> None:
    import torch

    codec = numcodecs.get_codec({"id": "codec", "quality": 1})
    x = _fields((2, 24, 48), seed=3)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(x)
        torch.set_num_threads(2)
        two = codec.encode(x)
    finally:
        torch.set_num_threads(previous)
    assert one == two
    y = codec.decode(one)
    rmse = float(np.sqrt(np.nanmean((y - x) ** 2)))
    assert 0 < rmse < float(np.nanstd(x)) / 2
    assert len(one) < x.nbytes / 4


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_zarr_store_round_trip_checks_bound_on_every_chunk(tmp_path, bounded: numcodec.ClimateCodec, zarr_format: int) -> None:
    ds = _dataset()
    store = tmp_path / f"era{zarr_format}.zarr"
    ds.to_zarr(store, zarr_format=zarr_format, consolidated=False, encoding={"t": {"compressors": [bounded]}})
    back = xr.open_zarr(store, consolidated=False)
    assert back.t.encoding["compressors"][0] == bounded
    for i in range(ds.sizes["time"]):  # each chunk on its own
        x, y = ds.t.isel(time=i).values, back.t.isel(time=i).values
        assert np.array_equal(np.isnan(x), np.isnan(y))
        assert np.nanmax(np.abs(y - x)) <= BOUND
    stored = sum(p.stat().st_size for p in (store / "t").rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr.json")))
    assert stored < ds.t.nbytes


def test_zarr2_compressor_keyword_takes_the_config(tmp_path, bounded: numcodec.ClimateCodec) -> None:
    x = _fields((2, 24, 48))
    z = zarr.create(shape=x.shape, chunks=(1, 24, 48), dtype="f4", compressor=bounded.get_config(), zarr_format=2, store=str(tmp_path / "z2.zarr"))
    z[:] = x
    y = zarr.open(str(tmp_path / "z2.zarr"), mode="r")[:]
    assert np.nanmax(np.abs(y - x)) <= BOUND


@pytest.mark.parametrize(
    ("shape", "dtype", "message"),
    [((100,), "f4", r"chunk of shape \(100,\)"), ((1, 40), "f4", r"chunk of shape \(1, 40\)"), ((8, 8), "i2", "float32/float64")],
)
def test_chunks_that_are_not_float_fields_are_refused(bounded: numcodec.ClimateCodec, shape, dtype, message) -> None:
    with pytest.raises(InputError, match=message):
        bounded.encode(np.zeros(shape, dtype))


def test_zarr3_refuses_a_one_dimensional_array_when_created(bounded: numcodec.ClimateCodec) -> None:
    with pytest.raises(InputError, match=r"chunk of shape \(10,\)"):
        zarr.create_array(store={}, shape=(100,), chunks=(10,), dtype="f4", compressors=[bounded])


def test_infinite_values_and_bad_bounds_are_refused(bounded: numcodec.ClimateCodec) -> None:
    x = np.zeros((8, 8), "f4")
    x[2, 2] = np.inf
    with pytest.raises(InputError, match="infinite"):
        bounded.encode(x)
    for bad in (0, -1.0, float("nan"), "0.1"):
        with pytest.raises(InputError, match="max_abs_error"):
            numcodec.ClimateCodec(max_abs_error=bad)


def test_damaged_and_foreign_chunks_give_one_clear_error(bounded: numcodec.ClimateCodec) -> None:
    data = bounded.encode(_fields((2, 16, 33)))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    newer = bytearray(data)
    newer[3] = numcodec.VERSION + 1
    for bad, message in [
        (bytes(flipped), "checksum"),
        (data[:-7], "checksum"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a codec chunk"),
        (b"", "not a codec chunk"),
        (bytes(newer), "newer version"),
    ]:
        with pytest.raises(CorruptStreamError, match=message):
            bounded.decode(bad)


def test_a_chunk_header_with_an_absurd_shape_is_refused_before_allocating(bounded: numcodec.ClimateCodec) -> None:
    import struct
    import zlib

    body = numcodec._HEAD.pack(numcodec.MAGIC, numcodec.VERSION, 4, 3) + struct.pack("<3I", 1 << 20, 1 << 20, 1 << 20)
    with pytest.raises(CorruptStreamError, match="impossible shape"):
        bounded.decode(body + struct.pack("<I", zlib.crc32(body)))


def test_other_weights_are_detected_on_decode(bounded: numcodec.ClimateCodec) -> None:
    data = bounded.encode(_fields((8, 8)))
    config = {k: v for k, v in bounded.get_config().items() if k != "id"} | {"weights_hash": "0" * 16}
    other = numcodec.ClimateCodec(**config)
    with pytest.raises(ModelError, match="weights"):
        other.decode(data)


def test_chunks_clip_to_each_fields_range_and_format_1_chunks_still_decode(monkeypatch) -> None:
    """Format 2 and later chunks hold record version 3 or later (every decoded point within its field's range); format 1 chunks
    (record version 2, no range) written before still decode as they did."""
    rng = np.random.default_rng(5)
    rain = np.clip(rng.gamma(0.3, 1.0, size=(2, 24, 48)).cumsum(-1) / 40 - 0.3, 0, None).astype("f4")
    codec = numcodecs.get_codec({"id": "codec", "quality": 1})
    monkeypatch.setattr(numcodec, "VERSION", 1)
    old = codec.encode(rain)
    monkeypatch.undo()
    new = codec.encode(rain)
    assert old[3] == 1 and new[3] == numcodec.VERSION == 4
    back_old, back_new = codec.decode(old), codec.decode(new)
    assert back_old.min() < 0.0  # the network's error crossed zero in format 1
    for y, x in zip(back_new, rain, strict=True):
        assert x.min() <= y.min() and y.max() <= x.max()
