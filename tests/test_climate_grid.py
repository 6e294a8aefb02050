"""Record version 2: coarser coded grids, the residual coded by multilevel interpolation, records without network bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
import xarray as xr

import codec
from codec import container
from codec.climate import archive, errorbound, fieldcodec, interp
from codec.entropy import gaussian, laplace
from codec.entropy.tables import table_to_probabilities
from codec.errors import CorruptStreamError, FormatError
from codec.models.vaeformer import VAEformer
from tests.helpers import tiny_vaeformer


@pytest.fixture(scope="module")
def net() -> VAEformer:
    return tiny_vaeformer()


def smooth(shape=(91, 180), seed=0, holes=True) -> np.ndarray:
    """A smooth global field (large scales only) with a block of missing points."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1.5, 1.5, shape[0]), np.linspace(0, 2 * np.pi, shape[1], endpoint=False), indexing="ij")
    f = 280 + 20 * np.cos(y) + 5 * np.sin(2 * x + rng.uniform(0, 6)) * np.cos(y) + 2 * np.sin(3 * y + x)
    if holes:
        f[20:30, 40:70] = np.nan
    return f


def spec(shape, bound=None, packing=None, int_range=None, version=2) -> fieldcodec.FieldSpec:
    return fieldcodec.FieldSpec(shape, np.dtype("float32"), bound, packing, int_range, version)


def test_block_means_ignore_missing_points_and_cut_edges():
    f = np.arange(15.0).reshape(3, 5)
    f[0, 0] = np.nan
    m = fieldcodec.block_means(f, 2)
    assert m.shape == (2, 3)
    assert m[0, 0] == np.mean([1, 5, 6]) and m[1, 2] == 14.0 and m[0, 2] == np.mean([4, 9])
    all_missing = np.full((4, 4), np.nan)
    assert np.isnan(fieldcodec.block_means(all_missing, 2)).all()
    assert not fieldcodec.coarse_valid(~np.isnan(all_missing), 2).any()


@pytest.mark.parametrize("s", [2, 4, 8])
def test_upsampled_block_means_of_a_plane_give_the_plane_back(s):
    """Cell i sits at its block's centre: Catmull-Rom reproduces a linear field exactly away from the edges."""
    rows, cols = np.meshgrid(np.arange(64.0), np.arange(128.0), indexing="ij")
    plane = 0.3 * rows - 0.2 * cols + 5
    out = fieldcodec.upsample(fieldcodec.block_means(plane, s), s, plane.shape)
    inner = (slice(2 * s, -2 * s), slice(2 * s, -2 * s))
    np.testing.assert_allclose(out[inner], plane[inner], atol=1e-9)


def test_version_2_records_choose_a_coarser_grid_on_smooth_fields(net):
    field = smooth((181, 360))  # above SEARCH_START_POINTS: the grid is searched
    coder = net.at_level(2)
    with torch.inference_mode():
        v1, recon1 = fieldcodec.encode(coder, field, spec(field.shape, version=1))
        v2, recon2 = fieldcodec.encode(coder, field, spec(field.shape))
        out = fieldcodec.decode(coder, v2, spec(field.shape), ~np.isnan(field))
    np.testing.assert_array_equal(out, recon2)
    assert v2[fieldcodec._HEAD.size] > 0  # log2 of the grid factor
    assert len(v2) < len(v1) / 2
    np.testing.assert_array_equal(np.isnan(recon2), np.isnan(field))


def test_small_fields_are_coded_on_their_own_grid(net):
    field = smooth()  # 91 x 180 points, below SEARCH_START_POINTS
    record, _ = fieldcodec.encode(net.at_level(1), field, spec(field.shape))
    assert record[fieldcodec._HEAD.size] == 0


def test_grid_factors_keep_a_minimum_size():
    assert spec((721, 1440)).grid_factors() == (16, 8, 4, 2, 1)
    assert spec((40, 300)).grid_factors() == (2, 1)
    assert spec((10, 10)).grid_factors() == (1,)
    assert spec((721, 1440), version=1).grid_factors() == (1,)


def test_corrupt_grid_byte_fails_cleanly(net):
    field = smooth(holes=False)
    coder = net.at_level(1)
    with torch.inference_mode():
        record, _ = fieldcodec.encode(coder, field, spec(field.shape))
        for bad in (9, 200):
            forged = record[: fieldcodec._HEAD.size] + bytes([bad]) + record[fieldcodec._HEAD.size + 1 :]
            with pytest.raises(CorruptStreamError, match="grid factor"):
                fieldcodec.decode(coder, forged, spec(field.shape), np.ones(field.shape, bool))


@pytest.mark.parametrize("bound", [0.01, 0.3, 3.0])
def test_explicit_bounds_hold_with_or_without_network_bytes(net, bound):
    field = smooth()
    coder = net.at_level(3)
    s = spec(field.shape, bound)
    with torch.inference_mode():
        record, recon = fieldcodec.encode(coder, field, s)
        out = fieldcodec.decode(coder, record, s, ~np.isnan(field))
    np.testing.assert_array_equal(out, recon)
    valid = ~np.isnan(field)
    assert np.max(np.abs(out - field)[valid]) <= bound * (1 + 1e-9)
    assert np.isnan(out[~valid]).all()


def test_tight_bound_on_a_smooth_field_drops_the_network(net):
    field = smooth(holes=False)
    coder = net.at_level(3)
    with torch.inference_mode():
        record, recon = fieldcodec.encode(coder, field, spec(field.shape, 0.001))
        out = fieldcodec.decode(coder, record, spec(field.shape, 0.001), np.ones(field.shape, bool))
    assert record[fieldcodec._HEAD.size] == fieldcodec.NO_NETWORK_CODE
    _, _, lz, ly, lr = fieldcodec._HEAD.unpack_from(record)
    assert lz == ly == 0 and lr > 0
    np.testing.assert_array_equal(out, recon)
    assert np.max(np.abs(out - field)) <= 0.001


def _snow(shape=(91, 180)) -> np.ndarray:
    """Zero on most of the globe, rough where it is not (as snow depth or precipitation)."""
    rng = np.random.default_rng(11)
    return np.clip(smooth(shape, holes=False) - 298 + rng.normal(0, 0.5, shape), 0, None)


def test_version_4_keeps_the_residual_alone_only_when_shorter_and_as_accurate(net):
    """The rule network levels use: the residual coder alone replaces the network's record only when it is
    both shorter and no less accurate; the record carries its bound and decodes to what the encoder returned."""
    field = _snow((181, 360))
    s4 = spec(field.shape, version=4)
    valid = np.ones(field.shape, bool)
    mean, std = fieldcodec.field_stats(field)
    span = fieldcodec.field_range(field)
    network = field + np.random.default_rng(13).normal(0, 0.3, field.shape)  # a network output with RMSE 0.3
    long_record, short_record = b"n" * 100_000, b"n" * 60
    record, out = fieldcodec._residual_alone_if_better(field, valid, s4, mean, std, span, long_record, network)
    assert record[fieldcodec._HEAD_V2.size - 1] == fieldcodec.NO_NETWORK_CODE and len(record) < len(long_record)
    assert np.mean((out - field) ** 2) <= np.mean((network - field) ** 2)
    with torch.inference_mode():
        np.testing.assert_array_equal(fieldcodec.decode(net.at_level(3), record, s4, valid), out)
    assert fieldcodec._residual_alone_if_better(field, valid, s4, mean, std, span, short_record, network)[0] is short_record
    assert fieldcodec._residual_alone_if_better(field, valid, s4, mean, std, span, long_record, field)[0] is long_record  # exact
    head = fieldcodec._HEAD_V3.size
    for bad in (0.0, -1.0, np.inf, np.nan, 1e300):
        forged = record[:head] + struct.pack("<d", bad) + record[head + 8 :]
        with pytest.raises(CorruptStreamError, match="error bound"):
            with torch.inference_mode():
                fieldcodec.decode(net.at_level(3), forged, s4, valid)


def test_residual_alone_search_goes_coarser_while_as_accurate_even_past_a_longer_start():
    """On a field that is mostly exactly zero the residual coder's error lies far below its bound: the search keeps
    going coarser while it stays as accurate as the network, although its start (2x the RMSE) was longer."""
    field = _snow((181, 360))
    s4 = spec(field.shape, version=4)
    valid = np.ones(field.shape, bool)
    mean, std = fieldcodec.field_stats(field)
    span = fieldcodec.field_range(field)
    network = field + np.random.default_rng(13).normal(0, 1.0, field.shape)
    rmse = fieldcodec._mse(field, network, valid) ** 0.5
    trials = {c: fieldcodec._residual_alone(field, valid, s4, mean, std, span, c * rmse) for c in fieldcodec.ALONE_FACTORS}
    accurate = [c for c in fieldcodec.ALONE_FACTORS if fieldcodec._mse(field, trials[c][1], valid) <= rmse**2]
    loosest = max(c for c in accurate if all(a in accurate for a in fieldcodec.ALONE_FACTORS if fieldcodec.ALONE_START <= a <= c))
    assert loosest > fieldcodec.ALONE_START and len(trials[loosest][0]) < len(trials[fieldcodec.ALONE_START][0])
    network_record = b"n" * (len(trials[fieldcodec.ALONE_START][0]) - 1)  # shorter than the start, longer than the loosest
    record, out = fieldcodec._residual_alone_if_better(field, valid, s4, mean, std, span, network_record, network)
    assert record == trials[loosest][0] and np.array_equal(out, trials[loosest][1])
    shortest = b"n" * (len(trials[loosest][0]) - 1)
    assert fieldcodec._residual_alone_if_better(field, valid, s4, mean, std, span, shortest, network)[0] is shortest


@pytest.mark.parametrize(
    ("accurate_up_to", "length", "limit", "tried", "kept"),
    [
        (6.0, 500, np.inf, [2.0, 3.0, 4.0, 6.0, 8.0], 6.0),  # accurate from the start: coarser while accurate, the loosest kept
        (6.0, 100, np.inf, [2.0, 3.0, 4.0, 6.0, 8.0], None),  # ... but not shorter than the network's record
        (1.5, 800, np.inf, [2.0, 1.5], 1.5),  # the start too inaccurate: finer once, and not the start again
        (1.0, 800, np.inf, [2.0, 1.5], None),  # nothing accurate
        (1.0, 50, np.inf, [2.0], None),  # inaccurate and longer: finer would only be longer
        (8.0, 800, 1.7, [1.7], 1.7),  # capped: the limit stands for every factor above it
    ],
)
def test_residual_alone_search_order(monkeypatch, accurate_up_to, length, limit, tried, kept):
    """The bounds the residual-alone search tries (multiples of the RMSE, 1) and the one it keeps."""
    field, network = np.zeros((4, 4)), np.ones((4, 4))
    calls = []

    def fake(field, valid, spec, mean, std, span, bound):  # noqa: ANN001, ANN202 - longer records at tighter bounds
        calls.append(bound)
        return b"r" * int(1000 / bound), np.full(field.shape, 1.0 if bound <= accurate_up_to else 2.0)

    monkeypatch.setattr(fieldcodec, "_residual_alone", fake)
    record = b"n" * length
    out, _ = fieldcodec._residual_alone_if_better(field, np.ones((4, 4), bool), spec((4, 4), version=4), 0.0, 1.0, None, record, network, limit)
    assert calls == tried
    assert out == (record if kept is None else b"r" * int(1000 / kept))


def test_version_4_tries_the_residual_alone_only_on_fields_the_grid_search_ran_on(net, monkeypatch):
    """A 2.5-degree field (no grid search) keeps the network without the trials, which would double its encode time."""

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError("residual-alone trials on a small field")

    monkeypatch.setattr(fieldcodec, "_residual_alone_if_better", refuse)
    field = _snow()
    assert field.size <= fieldcodec.SEARCH_START_POINTS
    with torch.inference_mode():
        fieldcodec.encode(net.at_level(3), field, spec(field.shape, version=4))


def test_version_4_residual_alone_search_stays_within_a_limit():
    """Refinement qualities search the residual alone at multiples of their RMSE, never above their pointwise bound."""
    field = _snow((181, 360))
    s4 = spec(field.shape, version=4)
    valid = np.ones(field.shape, bool)
    mean, std = fieldcodec.field_stats(field)
    span = fieldcodec.field_range(field)
    network = field + np.random.default_rng(13).normal(0, 0.3, field.shape)
    head = fieldcodec._HEAD_V3.size

    def stored_bound(record: bytes) -> float:
        assert record[fieldcodec._HEAD_V2.size - 1] == fieldcodec.NO_NETWORK_CODE
        return struct.unpack_from("<d", record, head)[0]

    free, _ = fieldcodec._residual_alone_if_better(field, valid, s4, mean, std, span, b"n" * 100_000, network)
    capped, out = fieldcodec._residual_alone_if_better(field, valid, s4, mean, std, span, b"n" * 100_000, network, 0.5)
    assert stored_bound(free) > 0.5 >= stored_bound(capped)
    assert np.max(np.abs(out - field)) <= 0.5


def test_version_4_refinement_qualities_keep_their_bound(net):
    """q4 / q5 of record version 4 keep every point within their pointwise bound, whichever record wins."""
    field = _snow((181, 360))
    mean, std = fieldcodec.field_stats(field)
    for q in (4, 5):
        coder = net.at_level(q)
        with torch.inference_mode():
            record, out = fieldcodec.encode(coder, field, spec(field.shape, version=4))
            np.testing.assert_array_equal(fieldcodec.decode(coder, record, spec(field.shape, version=4), np.ones(field.shape, bool)), out)
        assert np.max(np.abs(out - field)) <= coder.relative_bound * std


@pytest.mark.parametrize("make", [_snow, lambda: smooth(holes=False)], ids=["snow", "smooth"])
def test_version_4_qualities_stay_ordered_in_error(net, make):
    """Residual-alone records may replace the network at any quality, but q3 -> q4 -> q5 never lose accuracy."""
    field = make()
    errors = []
    for q in (3, 4, 5):
        with torch.inference_mode():
            _, out = fieldcodec.encode(net.at_level(q), field, spec(field.shape, version=4))
        errors.append(float(np.mean((out - field) ** 2)))
    assert errors[0] >= errors[1] >= errors[2], errors


def test_probe_windows_lie_inside_the_field_on_the_coarser_grid():
    """Four windows of about PROBE_POINTS finer-grid points, aligned to the coarser grid, inside the field;
    none for a field they would cover by more than half."""
    for shape, fine, coarse in (((721, 1440), 1, 2), ((721, 1440), 2, 4), ((361, 720), 1, 2)):
        windows = fieldcodec.probe_windows(shape, fine, coarse)
        assert len(windows) == len(fieldcodec.PROBE_CENTRES)
        for rows, cols in windows:
            assert 0 <= rows.start < rows.stop <= shape[0] and 0 <= cols.start < cols.stop <= shape[1]
            assert rows.start % coarse == cols.start % coarse == (rows.stop - rows.start) % coarse == 0
            points = (rows.stop - rows.start) * (cols.stop - cols.start) / fine**2
            assert fieldcodec.PROBE_POINTS / 2 <= points <= 2 * fieldcodec.PROBE_POINTS
    assert fieldcodec.probe_windows((361, 720), 2, 4) is None


def test_probe_skips_windows_without_valid_points_and_codes_the_others_as_windows(net, monkeypatch):
    """The windows' Lagrangians come from the windows that hold valid points, each coded on both grids
    without longitude wrap-around; with no valid point in any window the finer grid is tried on the whole field."""
    field = smooth((721, 1440), holes=False)
    valid = np.ones(field.shape, bool)
    (rows, cols), *_ = fieldcodec.probe_windows(field.shape, 1, 2)
    field[rows, cols] = np.nan  # the first window is all missing (land, say)
    valid[rows, cols] = False
    calls = []
    real = fieldcodec._coded

    def spy(net_, f, v, s, mean, std, exact, periodic=True):  # noqa: ANN001, ANN202
        calls.append((f.shape, s, periodic))
        return real(net_, f, v, s, mean, std, exact, periodic)

    monkeypatch.setattr(fieldcodec, "_coded", spy)
    mean, std = fieldcodec.field_stats(field)
    s3 = spec(field.shape, version=3)
    with torch.inference_mode():
        answer = fieldcodec._finer_pays_in_windows(net.at_level(3), field, valid, s3, mean, std, fieldcodec.field_range(field), 1, 2)
    assert isinstance(answer, bool)
    assert len(calls) == 2 * (len(fieldcodec.PROBE_CENTRES) - 1) and not any(periodic for _, _, periodic in calls)
    calls.clear()
    empty = np.full(field.shape, np.nan)
    empty[:2, :2] = 1.0  # valid points outside every window
    with torch.inference_mode():
        assert fieldcodec._finer_pays_in_windows(net.at_level(3), empty, ~np.isnan(empty), s3, 1.0, 1.0, None, 1, 2) is True
    assert calls == []


def test_grid_search_codes_a_large_field_on_a_finer_grid_only_where_the_windows_say_it_pays(net, monkeypatch):
    """A "no" from the windows ends the search before the whole field is coded on the finer grid."""
    field = smooth((361, 720), holes=False)
    coded = []
    real = fieldcodec._coded

    def spy(net_, f, valid, s, *args):  # noqa: ANN001, ANN002, ANN202
        if f.shape == field.shape:
            coded.append(s)
        return real(net_, f, valid, s, *args)

    monkeypatch.setattr(fieldcodec, "_coded", spy)
    s3 = spec(field.shape, version=3)
    start = min(s for s in s3.grid_factors() if np.prod([-(-n // s) for n in field.shape]) <= fieldcodec.SEARCH_START_POINTS)
    for pays in (False, True):
        monkeypatch.setattr(fieldcodec, "_finer_pays_in_windows", lambda *a, pays=pays: pays)  # noqa: ARG005
        coded.clear()
        with torch.inference_mode():
            fieldcodec.encode(net.at_level(3), field, s3)
        assert (min(coded) < start) == pays, coded
    monkeypatch.undo()
    with torch.inference_mode():  # unpatched: the record decodes to what the encoder returned
        record, out = fieldcodec.encode(net.at_level(3), field, s3)
        np.testing.assert_array_equal(fieldcodec.decode(net.at_level(3), record, s3, np.ones(field.shape, bool)), out)


def test_refinement_qualities_keep_the_network_bytes(net):
    """q4 / q5 are q3's network bytes plus a residual: the encoder never drops the network for them."""
    field = smooth(holes=False)
    base = fieldcodec.encode(net.at_level(3), field, spec(field.shape))[0]
    refined = fieldcodec.encode(net.at_level(4), field, spec(field.shape))[0]
    head = fieldcodec._HEAD_V2
    assert head.unpack_from(base)[2:4] == head.unpack_from(refined)[2:4] and base[head.size : head.size + 8] == refined[head.size : head.size + 8]


# ----------------------------------------------------------------------------- the interpolation coder


FLOAT32 = np.dtype("float32")


INTERP_FLOAT = {1: errorbound._INTERP_FLOAT, 2: errorbound._INTERP2_FLOAT}  # mode byte of each residual coder's interpolation
INTERP_PACKED = {1: errorbound._INTERP_PACKED, 2: errorbound._INTERP2_PACKED}


def _residual_round_trip(field, recon, bound, packing=None, int_range=None, dtype=FLOAT32, coder=1):
    data, out = errorbound.encode(field, recon, bound, packing, dtype, int_range, coder)
    back = errorbound.decode(data, recon, ~np.isnan(field), bound, packing, dtype, int_range)
    np.testing.assert_array_equal(back, out)
    return data, out


@pytest.mark.parametrize("coder", errorbound.CODERS)
@pytest.mark.parametrize("bound", [1e-3, 0.05, 1.0])
def test_interpolation_coder_bounds_every_point(bound, coder):
    rng = np.random.default_rng(1)
    field = smooth() + rng.normal(0, 0.01, (91, 180))
    recon = np.where(np.isnan(field), np.nan, np.nanmean(field))
    data, out = _residual_round_trip(field, recon, bound, coder=coder)
    assert data[0] & 0x0F == INTERP_FLOAT[coder]  # smooth field: interpolation beats the tile coder
    valid = ~np.isnan(field)
    assert np.max(np.abs(out - field)[valid]) <= bound and np.isnan(out[~valid]).all()


@pytest.mark.parametrize("coder", errorbound.CODERS)
def test_interpolation_coder_on_packed_integers(coder):
    scale, offset = 0.01, 280.0
    field = offset + scale * np.rint((smooth() - offset) / scale)
    recon = np.where(np.isnan(field), np.nan, 280.0)
    for bound in (0.01, 0.5):
        data, out = _residual_round_trip(field, recon, bound, (scale, offset), (-32766, 32767), coder=coder)
        assert data[0] & 0x0F == INTERP_PACKED[coder]
        k = (out - offset) / scale
        valid = ~np.isnan(field)
        np.testing.assert_allclose(k[valid], np.rint(k[valid]), atol=1e-6)
        assert np.max(np.abs(out - field)[valid]) <= bound + 1e-9


@pytest.mark.parametrize("coder", errorbound.CODERS)
def test_interpolation_coder_stores_what_float32_cannot_bound_exactly(coder):
    field = smooth(holes=False) * 1e3
    recon = np.full(field.shape, 2.8e5)
    data, out = _residual_round_trip(field, recon, 1e-6, coder=coder)  # below float32's resolution at 3e5
    assert np.array_equal(out, field)


@pytest.mark.parametrize("coder", errorbound.CODERS)
def test_exactly_stored_points_do_not_tie_the_decode_to_the_network_output(coder):
    """Below float32's resolution points are stored exactly.  Another CPU's network output differs in its
    last bits; the decode must still follow the stream (coder 2's contexts read the reconstruction) and
    move by no more than that difference."""
    rng = np.random.default_rng(12)
    field = (smooth(holes=False) + rng.normal(0, 1e-4, (91, 180))).astype(np.float32).astype(np.float64)
    recon = smooth(holes=False) + rng.normal(0, 1e-3, (91, 180))
    bound = 2e-5  # float32 steps are 3e-5 near 280: many points stored exactly
    data, out = errorbound.encode(field, recon, bound, None, FLOAT32, None, coder)
    assert data[0] & 0x0F == INTERP_FLOAT[coder] and int.from_bytes(data[1:5], "little") > 100
    moved = recon + rng.normal(0, 2e-6, recon.shape)
    back = errorbound.decode(data, moved, np.ones(field.shape, bool), bound, None, FLOAT32)
    assert np.max(np.abs(back - field)) <= bound + 1e-4


def test_coder_1_records_refuse_coder_2_modes():
    field = smooth(holes=False)
    recon = np.full(field.shape, 280.0)
    data, _ = errorbound.encode(field, recon, 0.05, None, FLOAT32, None, 2)
    with pytest.raises(CorruptStreamError, match="unknown residual coding mode"):
        errorbound.decode(data, recon, np.ones(field.shape, bool), 0.05, None, FLOAT32, coder=1)


def test_residual_coder_2_is_shorter_on_smooth_fields_and_flat_regions():
    """Level-wise steps pay on a smooth field at a loose bound; the curvature context and the Laplace
    tables make a field that is exactly zero over large regions (snow depth, rain) cheaper."""
    field = smooth((181, 360), holes=False)
    recon = np.full(field.shape, np.mean(field))
    sizes = [len(_residual_round_trip(field, recon, 0.5, coder=c)[0]) for c in errorbound.CODERS]
    assert sizes[1] < 0.9 * sizes[0], sizes
    rng = np.random.default_rng(3)
    snow = np.clip(smooth((181, 360), holes=False) - 298 + rng.normal(0, 0.01, (181, 360)), 0, None)  # zero on most of the globe
    recon = np.zeros(snow.shape)
    sizes = [len(_residual_round_trip(snow, recon, 0.01, coder=c)[0]) for c in errorbound.CODERS]
    assert sizes[1] < 0.9 * sizes[0], sizes


@pytest.mark.parametrize("packing", [None, (0.01, 280.0)])
def test_interpolation_2_level_step_byte_is_checked(packing):
    field = smooth(holes=False)
    if packing:
        field = packing[1] + packing[0] * np.rint((field - packing[1]) / packing[0])
    recon = np.full(field.shape, 280.0)
    data, _ = _residual_round_trip(field, recon, 0.05, packing, (-32766, 32767) if packing else None, coder=2)
    at = 1 + 4  # mode, then e (packed) or the exact-point count (float; no exact points here)
    assert data[0] & 0x0F in (errorbound._INTERP2_FLOAT, errorbound._INTERP2_PACKED) and data[at] < len(interp.ALPHAS)
    with pytest.raises(CorruptStreamError, match="level step"):
        errorbound.decode(data[:at] + bytes([len(interp.ALPHAS)]) + data[at + 1 :], recon, np.ones(field.shape, bool), 0.05, packing, FLOAT32, (-32766, 32767) if packing else None)


def test_interpolation_passes_cover_every_point_once():
    for shape in [(1, 1), (1, 7), (5, 1), (91, 180), (64, 64), (33, 17)]:
        seen = np.zeros(shape, int)
        for rows, cols, _, _ in interp.passes(shape):
            seen[np.ix_(rows, cols)] += 1
        assert (seen == 1).all(), shape


@pytest.mark.parametrize("coder", errorbound.CODERS)
def test_corrupt_interpolation_streams_fail_cleanly(coder):
    field = smooth()
    recon = np.where(np.isnan(field), np.nan, np.nanmean(field))
    data, _ = errorbound.encode(field, recon, 0.01, None, np.dtype("float32"), None, coder)
    valid = ~np.isnan(field)
    with pytest.raises(CorruptStreamError):
        errorbound.decode(data[:8], recon, valid, 0.01, None, np.dtype("float32"))
    lead = 5 + (coder == 2)  # mode, exact-point count (and the level-step byte)
    header = lead + 4  # then the table-list length
    n = int.from_bytes(data[lead:header], "little")
    forged_tables = data[:header] + bytes([data[header] ^ 0xFF]) + data[header + 1 :]
    for bad in (forged_tables, data[: header + n + 8], data[:-4] + b"\xff\xff\xff\xff"):
        try:  # the container's CRC32 catches damage; a record decoded on its own fails cleanly or gives a field of its shape
            out = errorbound.decode(bad, recon, valid, 0.01, None, np.dtype("float32"))
        except CorruptStreamError:
            continue
        assert out.shape == field.shape


def test_cheapest_table_matches_a_full_search():
    tables = gaussian.default_tables()
    rng = np.random.default_rng(0)
    for s in (0.01, 0.7, 4.0, 90.0, 5000.0):
        v = np.rint(rng.laplace(0, s, 3000)).astype(np.int64)
        bits = [tables.code_lengths(v, np.full(v.size, i)).sum() for i in range(len(tables.scales))]
        assert bits[tables.cheapest(v)] == min(bits)


def test_cheapest_laplace_table_matches_a_full_search_and_codes_escapes():
    tables = laplace.default_tables()
    rng = np.random.default_rng(0)
    for s, zeros in ((0.01, 0), (0.7, 0.5), (4.0, 0.9), (90.0, 0.0), (5000.0, 0.2)):
        v = np.rint(rng.laplace(0, s, 3000)).astype(np.int64)
        v[: int(zeros * v.size)] = 0
        cost = []
        for i in range(len(tables.freqs)):
            bits = -np.log2(table_to_probabilities(tables.freqs[i]))
            r = int(tables.radius[i])
            inside = np.abs(v) <= r
            cost.append(bits[np.clip(v, -r, r) + r][inside].sum() + (~inside).sum() * (bits[-1] + gaussian.ESCAPE_BITS))
        best = tables.cheapest(v)
        assert cost[best] <= min(cost) * (1 + 1e-6), (s, zeros)
        index = np.full(v.size, best)
        np.testing.assert_array_equal(gaussian.decode(gaussian.encode(v, index, tables), index, tables), v)


# ----------------------------------------------------------------------------- files


@pytest.fixture()
def fine_file(tmp_path):
    lat = np.linspace(90, -90, 181)  # 1 degree: above SEARCH_START_POINTS, so the grid is searched
    lon = np.arange(0, 360, 1.0)
    t = np.stack([smooth((181, 360), seed=i) for i in range(2)]).astype(np.float32)
    ds = xr.Dataset(
        {"t": (("time", "latitude", "longitude"), t, {"units": "K"})},
        coords={
            "time": ("time", [0.0, 1.0], {"units": "hours since 2000-01-01"}),
            "latitude": ("latitude", lat, {"units": "degrees_north"}),
            "longitude": ("longitude", lon, {"units": "degrees_east"}),
        },
    )
    path = tmp_path / "fine.nc"
    ds.to_netcdf(path)
    return path


def test_files_of_version_1_records_still_decode(fine_file, monkeypatch):
    """A file without the ``field_records`` header key (every file before version 2) decodes with version 1 records."""
    monkeypatch.setattr(archive, "RECORD_VERSION", 1)
    data = codec.encode(fine_file, quality=2)
    c = container.unpack(data)
    del c.meta["field_records"]
    old = container.pack(c)
    monkeypatch.undo()
    np.testing.assert_array_equal(codec.decode(old).t.values, codec.decode(data).t.values)


def test_unknown_record_version_is_refused(fine_file):
    c = container.unpack(codec.encode(fine_file, quality=1))
    c.meta["field_records"] = 7
    with pytest.raises(FormatError, match="field record version 7"):
        codec.decode(container.pack(c))


def test_bounded_file_round_trip(fine_file):
    data = codec.encode(fine_file, quality=3, max_abs_error=0.02)
    with xr.open_dataset(fine_file) as src:
        out = codec.decode(data)
        assert np.nanmax(np.abs(out.t.values.astype(np.float64) - src.t.values.astype(np.float64))) <= 0.02 * (1 + 1e-6)
    assert codec.info(data)["variables"]["t"]["max_abs_error"] <= 0.02 * (1 + 1e-6)


def test_bytes_and_decodes_do_not_depend_on_the_callers_thread_count(fine_file):
    """Grid search, interpolation and residual coder: the same bytes and values with 1 or 2 caller threads."""
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for bound in (None, 0.05):
                data = codec.encode(fine_file, quality=2, max_abs_error=bound)
                out.append((data, codec.decode(data).t.values))
    finally:
        torch.set_num_threads(before)
    c = container.unpack(out[0][0])
    grids = [c.stream("v0")[start + fieldcodec._HEAD.size] for _, start, _ in archive._index_records(c.stream("v0"), 2)]
    assert all(0 < g < fieldcodec.NO_NETWORK_CODE for g in grids)  # the search chose coarser grids
    for one, two in zip(out[:2], out[2:], strict=True):
        assert one[0] == two[0]
        np.testing.assert_array_equal(one[1], two[1])
