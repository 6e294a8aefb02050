"""Entropy layer: integer tables, categorical and Gaussian coders."""

import zlib

import numpy as np
import pytest
import torch

from codec.entropy import categorical, gaussian
from codec.entropy.tables import TOTAL, frequencies_to_table, table_to_probabilities
from codec.errors import CorruptStreamError


def test_table_sums_to_total_and_keeps_every_symbol_codable():
    w = torch.tensor([[0.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 0.0], [1e-12, 1, 1, 1]])
    t = frequencies_to_table(w)
    assert t.dtype == torch.int32 and t.shape == w.shape
    assert (t.sum(-1) == TOTAL).all() and (t >= 1).all()
    assert t[0, 3] > 2.9 * t[0, 2]  # proportions kept
    assert len(set(t[1].tolist())) <= 2  # all-zero row -> (near) uniform


def test_table_is_deterministic_and_rejects_huge_alphabets():
    w = torch.rand(3, 1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frequencies_to_table(w), frequencies_to_table(w.clone()))
    with pytest.raises(ValueError):
        frequencies_to_table(torch.ones(TOTAL + 1))
    with pytest.raises(ValueError):
        table_to_probabilities(np.array([[1, 2, 3]]))


def test_categorical_round_trip_and_rate_close_to_entropy():
    rng = np.random.default_rng(0)
    p = np.array([[0.7, 0.2, 0.05, 0.05], [0.25, 0.25, 0.25, 0.25]])
    freq = frequencies_to_table(torch.from_numpy(p)).numpy()
    symbols = np.stack([rng.choice(4, 5000, p=row) for row in p])
    data = categorical.encode(symbols, freq)
    assert np.array_equal(categorical.decode(data, freq, 5000), symbols)
    entropy_bits = -(np.log2(p) * p).sum() * 5000
    assert 8 * len(data) <= entropy_bits * 1.01 + 64
    assert 8 * len(data) >= entropy_bits * 0.97


def test_categorical_rejects_bad_symbols_and_streams():
    freq = frequencies_to_table(torch.ones(1, 4)).numpy()
    with pytest.raises(ValueError):
        categorical.encode(np.array([[0, 4]]), freq)
    with pytest.raises(ValueError):
        categorical.encode(np.array([0, 1]), freq)
    with pytest.raises(CorruptStreamError):
        categorical.decode(b"abc", freq, 2)


def test_gaussian_round_trip_with_escapes_and_many_scales():
    tables = gaussian.GaussianTables()
    rng = np.random.default_rng(1)
    scales = np.exp(rng.uniform(np.log(0.05), np.log(400), 3000))
    values = np.round(rng.normal(0, scales)).astype(np.int64)
    values[:5] = [10**6, -(10**6), 2**30, -(2**30), 0]  # far outside every table: escape code
    idx = tables.scale_index(scales)
    data = gaussian.encode(values, idx, tables)
    assert np.array_equal(gaussian.decode(data, idx, tables), values)


def test_gaussian_rate_follows_the_scale():
    tables = gaussian.GaussianTables()
    rng = np.random.default_rng(2)
    sizes = []
    for scale in (0.5, 4.0, 32.0):
        values = np.round(rng.normal(0, scale, 4000)).astype(np.int64)
        sizes.append(len(gaussian.encode(values, tables.scale_index(np.full(4000, scale)), tables)))
    assert sizes[0] < sizes[1] < sizes[2]
    # 32 -> ~7 bits per value for a unit-bin discretized Gaussian (0.5*log2(2*pi*e*32^2))
    assert abs(8 * sizes[2] / 4000 - 0.5 * np.log2(2 * np.pi * np.e * 32**2)) < 0.2


def test_gaussian_code_lengths_predict_the_stream_size():
    """code_lengths (used to pick tables) counts what encode spends, escapes included, to within the coder's overhead."""
    rng = np.random.default_rng(3)
    tables = gaussian.default_tables()
    values = np.concatenate([rng.laplace(0, 2, 4000).round(), [5000, -70000]]).astype(np.int64)
    indexes = rng.integers(5, 30, values.size)
    bits = tables.code_lengths(values, indexes)
    assert bits[-2:].min() > gaussian.ESCAPE_BITS  # escapes pay the raw 32 bits on top of the escape symbol
    size = 8 * len(gaussian.encode(values, indexes, tables))
    assert bits.sum() <= size <= bits.sum() + 64


def test_residual_tiles_take_the_cheapest_table():
    """Heavy-tailed residuals (mostly zeros, a few large values) cost fewer bits than with the RMS-fitted Gaussian."""
    from codec.climate import errorbound

    rng = np.random.default_rng(4)
    q = np.where(rng.random((48, 64)) < 0.97, 0, rng.integers(-6, 7, (48, 64))).astype(np.int64)
    valid = np.ones(q.shape, bool)
    ids = errorbound._tile_ids(q.shape)[valid]
    tables = gaussian.default_tables()
    chosen = errorbound._tile_scales(q[valid], ids, 12, tables)
    energy = np.bincount(ids, weights=q[valid].astype(float) ** 2, minlength=12) / np.bincount(ids, minlength=12)
    fitted = tables.scale_index(np.sqrt(energy))
    assert tables.code_lengths(q[valid], chosen[ids]).sum() < tables.code_lengths(q[valid], fitted[ids]).sum()
    predictor, data = errorbound._code_integers(q, valid)
    assert predictor == 0  # independent values: no western prediction
    np.testing.assert_array_equal(errorbound._decode_integers(data, q.shape, valid, predictor), q)


def test_correlated_residuals_are_predicted_from_the_west():
    """A residual correlated along longitude picks a western weight, costs fewer bytes, and decodes exactly (holes too)."""
    from codec.climate import errorbound

    rng = np.random.default_rng(5)
    smooth = np.cumsum(rng.normal(0, 1, (40, 90)), axis=1) * 0.6
    q = np.rint(smooth - smooth.mean(1, keepdims=True)).astype(np.int64)
    valid = np.ones(q.shape, bool)
    valid[10:20, 30:50] = False
    q[~valid] = 0
    predictor, data = errorbound._code_integers(q, valid)
    assert predictor > 0
    np.testing.assert_array_equal(errorbound._decode_integers(data, q.shape, valid, predictor), q)
    tables = gaussian.default_tables()
    ids = errorbound._tile_ids(q.shape)[valid]
    unpredicted = tables.code_lengths(q[valid], errorbound._tile_scales(q[valid], ids, 18, tables)[ids]).sum()
    assert 8 * len(data) < 0.8 * unpredicted


def test_predictions_beyond_the_escape_code_are_not_chosen():
    """A random-walk residual (best predicted with weight 1) next to residuals of +-2^30 steps, where weight 1
    would overflow the escape code: a smaller weight is used and the field still decodes exactly."""
    from codec.climate import errorbound

    rng = np.random.default_rng(6)
    q = np.cumsum(rng.integers(-1, 2, (16, 64)), axis=1).astype(np.int64)
    q[3, 10:12] = [-(1 << 30), 1 << 30]
    valid = np.ones(q.shape, bool)
    predictor, data = errorbound._code_integers(q, valid)
    assert 0 < errorbound.WEST_WEIGHTS[predictor] < 1
    np.testing.assert_array_equal(errorbound._decode_integers(data, q.shape, valid, predictor), q)


@pytest.mark.parametrize("coder", [1, 2])
def test_residual_tiles_of_both_coders_decode_exactly_and_coder_2_is_shorter_on_peaked_residuals(coder):
    """Coder 2's tiles take Laplace-with-zero-spike tables: on residuals that are exactly zero over large
    regions with heavy tails elsewhere (snow, rain) they code in fewer bytes than coder 1's Gaussians."""
    from codec.climate import errorbound

    rng = np.random.default_rng(7)
    q = np.zeros((96, 128), np.int64)
    q[:, 64:] = np.rint(rng.laplace(0, 3, (96, 64))).astype(np.int64)  # rough half, exactly zero elsewhere
    q[5, 5] = 1 << 20  # one huge value (escape code)
    valid = np.ones(q.shape, bool)
    valid[40:50, 10:20] = False
    q[~valid] = 0
    predictor, data = errorbound._code_integers(q, valid, coder)
    np.testing.assert_array_equal(errorbound._decode_integers(data, q.shape, valid, predictor, coder), q)
    if coder == 2:
        assert len(data) < 0.95 * len(errorbound._code_integers(q, valid, 1)[1])
        n = int.from_bytes(data[:4], "little")
        head = zlib.compress(bytes([255]) * int(np.prod(errorbound._tiles(q.shape))), 9)  # table 255 of 240
        forged = len(head).to_bytes(4, "little") + head + data[4 + n :]
        with pytest.raises(CorruptStreamError, match="tile table"):
            errorbound._decode_integers(forged, q.shape, valid, predictor, 2)


def test_cheapest_laplace_table_per_group_agrees_with_one_group_at_a_time():
    from codec.entropy import laplace

    tables = laplace.default_tables()
    rng = np.random.default_rng(8)
    groups = rng.integers(0, 20, 5000)
    values = np.rint(rng.laplace(0, 0.2 + groups, 5000)).astype(np.int64)  # group g has scale about g
    values[groups == 3] = 0  # an all-zero group
    chosen = tables.cheapest_per_group(values, groups, 21)  # group 20 is empty
    for g in range(20):
        assert chosen[g] == tables.cheapest(values[groups == g]), g
    assert chosen[20] == 0
