"""VAEformer model, field records and the pointwise error bound."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch

from codec.climate import errorbound, fieldcodec
from codec.errors import CorruptStreamError
from codec.models.vaeformer import CRA5, TINY, LevelCoder, VAEformer, VAEformerConfig
from tests.helpers import tiny_vaeformer


@pytest.fixture(scope="module")
def tiny_net() -> VAEformer:
    return tiny_vaeformer()


@pytest.fixture(scope="module")
def tiny(tiny_net) -> LevelCoder:
    return tiny_net.at_level(3)


def smooth_field(shape=(37, 72), seed=0, nan_block=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(0, 3, shape[0]), np.linspace(0, 2 * np.pi, shape[1], endpoint=False), indexing="ij")
    f = 280 + 15 * np.sin(y) * np.cos(x) + rng.normal(0, 0.5, shape)
    if nan_block:
        f[5:12, 10:30] = np.nan
    return f.astype(np.float32).astype(np.float64)


def test_forward_any_size_and_backward():
    net = VAEformer(TINY)
    x = torch.randn(2, 2, 23, 41)
    out = net(x, level=2)
    assert out["x_hat"].shape == (2, 1, 23, 41)
    assert set(out["likelihoods"]) == {"y", "z"}
    loss = out["x_hat"].pow(2).mean() + sum(lk.log().sum() for lk in out["likelihoods"].values()) + out["kl"]
    loss.backward()
    assert all(p.grad is not None for p in net.embed.parameters())
    # only the trained level's step and embeddings learn from this batch
    assert net.log_steps.grad[1].abs().sum() > 0 and net.log_steps.grad[[0, 2]].abs().sum() == 0
    assert net.level_embed_dec.grad[1].abs().sum() > 0 and net.level_embed_dec.grad[0].abs().sum() == 0


def test_levels_trade_bytes_for_error(tiny_net):
    """Coarser levels quantize with larger steps: fewer bytes; every level decodes what it encoded."""
    field = smooth_field(seed=2, nan_block=False)
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"))
    sizes = []
    with torch.inference_mode():
        for level in range(1, tiny_net.levels + 1):
            record, recon = fieldcodec.encode(tiny_net.at_level(level), field, spec)
            np.testing.assert_array_equal(fieldcodec.decode(tiny_net.at_level(level), record, spec, np.ones(field.shape, bool)), recon)
            sizes.append(len(record))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_update_freezes_the_steps_used_for_bytes():
    torch.manual_seed(0)
    net = VAEformer(TINY).eval()
    net.update()
    field = smooth_field(seed=4, nan_block=False)
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"))
    with torch.inference_mode():
        before = fieldcodec.encode(net.at_level(2), field, spec)[0]
        net.log_steps.add_(1.0)  # training moves the steps ...
        assert fieldcodec.encode(net.at_level(2), field, spec)[0] == before  # ... bytes follow only after update()
        net.update()
        assert fieldcodec.encode(net.at_level(2), field, spec)[0] != before
    torch.testing.assert_close(net.steps, net.log_steps.double().exp())


@pytest.mark.parametrize("level", [0, 6, -1])
def test_level_out_of_range(tiny_net, level):
    with pytest.raises(ValueError, match="level must be in 1..5"):
        tiny_net.at_level(level)


@pytest.mark.parametrize("rates", [(), (1.0, 0.0), (2.0, -1.0)])
def test_rates_must_be_positive(rates):
    with pytest.raises(ValueError, match="rates"):
        VAEformer(dataclasses.replace(TINY, rates=rates))


@pytest.mark.parametrize("refinements", [(0.0,), (0.2, 0.4), (0.3, 0.3), (float("nan"),), (-0.1,)])
def test_refinements_must_be_positive_and_descending(refinements):
    with pytest.raises(ValueError, match="refinements"):
        VAEformer(dataclasses.replace(TINY, refinements=refinements))


def test_refinement_qualities_bound_every_point_relative_to_the_field(tiny_net):
    """Qualities 4 and 5 keep level 3 and add its residual: |error| <= k * std everywhere, more bytes, less error."""
    field = smooth_field(seed=9)
    std = float(np.nanstd(field))
    valid = ~np.isnan(field)
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"))
    sizes, errors = [], []
    with torch.inference_mode():
        for quality in (3, 4, 5):
            coder = tiny_net.at_level(quality)
            record, recon = fieldcodec.encode(coder, field, spec)
            np.testing.assert_array_equal(fieldcodec.decode(coder, record, spec, valid), recon)
            err = np.abs(recon.astype(np.float32) - field)[valid]  # as a float32 variable stores it
            if coder.relative_bound is not None:
                assert coder.level == 3 and err.max() <= coder.relative_bound * std
            sizes.append(len(record))
            errors.append(float(np.sqrt(np.mean(err**2))))
    assert [tiny_net.at_level(q).relative_bound for q in (4, 5)] == list(TINY.refinements)
    assert sizes == sorted(sizes) and errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("absolute", [0.05, 100.0])
def test_refinement_and_absolute_bound_take_the_tighter(tiny_net, absolute):
    field = smooth_field(seed=10)
    coder = tiny_net.at_level(5)
    bound = min(absolute, coder.relative_bound * float(np.nanstd(field)))
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=absolute)
    with torch.inference_mode():
        record, recon = fieldcodec.encode(coder, field, spec)
        out = fieldcodec.decode(coder, record, spec, ~np.isnan(field))
    np.testing.assert_array_equal(out, recon)
    assert np.nanmax(np.abs(out.astype(np.float32) - field)) <= bound
    assert np.nanmax(np.abs(out - field)) > 0.5 * bound  # the bound used is not needlessly tight


def test_configs_without_refinements_keep_their_levels():
    """Weights from before refinements existed: every quality is a network level, as when they were made."""
    old = {k: v for k, v in TINY.to_dict().items() if k != "refinements"} | {"rates": [8.0, 4.0, 2.0, 1.0, 0.5]}
    net = VAEformer(VAEformerConfig.from_dict(old))
    assert net.levels == net.network_levels == 5 and net.at_level(5).relative_bound is None


def test_longitude_is_periodic():
    """Rolling the input by whole patches along longitude rolls the latent: no seam at the date line."""
    torch.manual_seed(1)
    net = VAEformer(VAEformerConfig(dim=16, depth=1, heads=2, windows=((4, 4),), global_every=0, latent_channels=4, hyper_channels=4, hyper_latent_channels=4)).eval()
    x = torch.randn(1, 2, 16, 64)
    with torch.no_grad():
        a, _ = net.encode(x, 1)
        b, _ = net.encode(torch.roll(x, 16, dims=-1), 1)
    torch.testing.assert_close(torch.roll(a, 4, dims=-1), b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("version", fieldcodec.RECORD_VERSIONS)
def test_compress_matches_decoder(tiny, version):
    field = smooth_field()
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), record_version=version)
    with torch.inference_mode():
        record, recon = fieldcodec.encode(tiny, field, spec)
        out = fieldcodec.decode(tiny, record, spec, ~np.isnan(field))
    np.testing.assert_array_equal(out, recon)
    assert np.array_equal(np.isnan(out), np.isnan(field))
    assert len(record) < field.size * 4


@pytest.mark.parametrize("version", [1, max(fieldcodec.RECORD_VERSIONS)])
def test_thread_count_does_not_change_bytes(tiny, version):
    field = smooth_field(seed=3)
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=0.3, record_version=version)
    records = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            records.append(fieldcodec.encode(tiny, field, spec)[0])
    assert records[0] == records[1]


def test_exact_prior_is_float64_and_agrees_with_the_float32_one(tiny_net):
    """Records from version 4 take the latent's means and scales from a float64 hyper-synthesis: the same
    numbers as the float32 one to float32 precision, but far from any CPU's float32 rounding."""
    torch.manual_seed(0)
    z = torch.randint(-3, 4, (1, tiny_net.config.hyper_latent_channels, 3, 5)).float()
    with torch.inference_mode():
        mu32, sigma32 = tiny_net._prior(z, (10, 18))
        mu64, sigma64 = tiny_net._prior(z, (10, 18), exact=True)
    assert mu64.dtype == sigma64.dtype == torch.float64 and mu32.dtype == torch.float32
    torch.testing.assert_close(sigma64.float(), sigma32, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mu64.float(), mu32, rtol=1e-5, atol=1e-5)
    assert not torch.equal(sigma64, sigma32.double())  # really computed in float64, not cast afterwards


def test_exact_prior_works_on_a_model_built_under_inference_mode():
    """Inference tensors keep no version counter; the float64 copy must not need one."""
    with torch.inference_mode():
        net = tiny_vaeformer()
        z = torch.zeros(1, net.config.hyper_latent_channels, 2, 3)
        mu, sigma = net._prior(z, (8, 12), exact=True)
    assert mu.dtype == torch.float64 and torch.isfinite(sigma).all()


@pytest.mark.parametrize("bound", [2.0, 0.25, 0.01])
def test_error_bound_float(tiny, bound):
    field = smooth_field(seed=5)
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=bound)
    with torch.inference_mode():
        record, recon = fieldcodec.encode(tiny, field, spec)
        out = fieldcodec.decode(tiny, record, spec, ~np.isnan(field))
    np.testing.assert_array_equal(out, recon)
    written = out.astype(np.float32).astype(np.float64)  # what a float32 netCDF variable stores
    assert np.nanmax(np.abs(written - field)) <= bound
    assert np.array_equal(np.isnan(written), np.isnan(field))


def test_error_bound_below_float32_resolution_stores_exact_values(tiny):
    field = smooth_field(seed=6)
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=1e-7)
    with torch.inference_mode():
        record, _ = fieldcodec.encode(tiny, field, spec)
        out = fieldcodec.decode(tiny, record, spec, ~np.isnan(field))
    np.testing.assert_array_equal(out.astype(np.float32)[~np.isnan(field)], field[~np.isnan(field)].astype(np.float32))


@pytest.mark.parametrize("bound", [0.5, 0.01, 0.004])
def test_error_bound_packed_integers(tiny, bound):
    scale, offset = 0.01, 280.0
    k = np.rint((np.nan_to_num(smooth_field(seed=7)) - offset) / scale)
    field = np.where(np.isnan(smooth_field(seed=7)), np.nan, (offset + scale * k).astype(np.float32).astype(np.float64))
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=bound, packing=(scale, offset))
    with torch.inference_mode():
        record, _ = fieldcodec.encode(tiny, field, spec)
        out = fieldcodec.decode(tiny, record, spec, ~np.isnan(field))
    valid = ~np.isnan(field)
    k_out = np.rint((out[valid] - offset) / scale)  # what the netCDF writer packs
    assert np.max(np.abs(k_out - k[valid])) * scale <= bound + 1e-12


def test_bound_shrinks_error_and_costs_bits(tiny):
    field = smooth_field(seed=8)
    sizes = []
    for bound in (None, 1.0, 0.1):
        spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=bound)
        with torch.inference_mode():
            sizes.append(len(fieldcodec.encode(tiny, field, spec)[0]))
    assert sizes[0] < sizes[1] < sizes[2]


def test_all_missing_and_constant_fields(tiny):
    spec = fieldcodec.FieldSpec((9, 16), np.dtype("float32"), bound=0.1)
    empty = np.full((9, 16), np.nan)
    constant = np.full((9, 16), 5.0)
    with torch.inference_mode():
        for field in (empty, constant):
            record, _ = fieldcodec.encode(tiny, field, spec)
            out = fieldcodec.decode(tiny, record, spec, ~np.isnan(field))
            np.testing.assert_array_equal(np.isnan(out), np.isnan(field))
            assert np.nanmax(np.abs(np.nan_to_num(out - field))) <= 0.1


def test_corrupt_records_raise(tiny):
    field = smooth_field()
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=0.5)
    valid = ~np.isnan(field)
    with torch.inference_mode():
        record, _ = fieldcodec.encode(tiny, field, spec)
        for bad in (record[:10], record[:-3], record + b"x"):
            with pytest.raises(CorruptStreamError):
                fieldcodec.decode(tiny, bad, spec, valid)


def test_residual_streams_without_a_predictor_still_decode(tiny):
    """A residual whose leading byte has no predictor (files from before it existed) decodes as coded then."""
    from codec.entropy import gaussian

    field = smooth_field(seed=11)
    valid = ~np.isnan(field)
    with torch.inference_mode():
        _, recon = fieldcodec.encode(tiny, field, fieldcodec.FieldSpec(field.shape, np.dtype("float32")))  # the network alone
    q = np.where(valid, np.rint((np.nan_to_num(field) - np.nan_to_num(recon)) / 0.1), 0).astype(np.int64)
    ids = errorbound._tile_ids(q.shape)[valid]
    tiles = np.full(int(np.prod(errorbound._tiles(q.shape))), 20, np.uint8)
    head = zlib.compress(tiles.tobytes())
    old = bytes([0]) + struct.pack("<I", 0) + struct.pack("<I", len(head)) + head + gaussian.encode(q[valid], tiles[ids], gaussian.default_tables())
    out = errorbound.decode(old, recon, valid, 0.05, None, np.dtype("float32"))
    np.testing.assert_allclose(out[valid], (recon + q * 0.1)[valid])
    with pytest.raises(CorruptStreamError, match="predictor"):
        errorbound.decode(bytes([0xF0]) + old[1:], recon, valid, 0.05, None, np.dtype("float32"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5", 0.5), ("t=0.1,z=10", {"t": 0.1, "z": 10.0}), (None, None), (2, 2.0)],
)
def test_parse_bounds(text, expected):
    assert errorbound.parse_bounds(text) == expected


@pytest.mark.parametrize("text", ["abc", "t=", "-1", "0", "t=0.1,z=nan"])
def test_parse_bounds_rejects(text):
    with pytest.raises(ValueError):
        errorbound.parse_bounds(text)


def test_cra5_configuration_builds():
    with torch.device("meta"):
        net = VAEformer(CRA5)
    params = sum(p.numel() for p in net.parameters())
    assert 3e8 < params < 5e8  # the published model has about 0.4 B parameters
    assert net.latent_size(721, 1440) == (73, 144)


def test_config_round_trip():
    assert VAEformerConfig.from_dict(CRA5.to_dict()) == CRA5


def _packed(field_k: np.ndarray, scale: float, offset: float) -> np.ndarray:
    return (offset + scale * field_k).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize(("scale", "bound"), [(0.001, 0.01), (0.1, 0.3), (0.01, 5.0)])
def test_packed_bound_holds_at_grid_multiples_and_int16_extremes(tiny, scale, bound):
    """Values at the ends of int16 (as ERA5 packs them) stay storable, never wrap, never hit the fill value."""
    rng = np.random.default_rng(1)
    k = rng.integers(-32766, 32768, (19, 36)).astype(np.float64)
    k[:, :6] = 32767
    k[:, 6:12] = -32766
    field = _packed(k, scale, 250.0)
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float32"), bound=bound, packing=(scale, 250.0), int_range=(-32766, 32767))
    with torch.inference_mode():
        record, _ = fieldcodec.encode(tiny, field, spec)
        out = fieldcodec.decode(tiny, record, spec, np.ones(field.shape, bool))
    k_out = np.rint((out - 250.0) / scale)
    assert k_out.min() >= -32766 and k_out.max() <= 32767
    assert np.max(np.abs(_packed(k_out, scale, 250.0) - field)) <= bound  # as a float32 reader sees it


def test_huge_residuals_are_stored_exactly(tiny):
    field = smooth_field(nan_block=False) * 1e9  # e.g. accumulated radiation in J m-2 with a tiny bound
    spec = fieldcodec.FieldSpec(field.shape, np.dtype("float64"), bound=1e-3)
    with torch.inference_mode():
        record, _ = fieldcodec.encode(tiny, field, spec)
        out = fieldcodec.decode(tiny, record, spec, np.ones(field.shape, bool))
    assert np.max(np.abs(out - field)) <= 1e-3


def test_parse_bounds_types():
    assert errorbound.parse_bounds(np.float32(0.5)) == 0.5
    for bad in (True, {"t": "0.1"}, float("inf")):
        with pytest.raises(ValueError):
            errorbound.parse_bounds(bad)
    assert errorbound.bound_for({"t": 0.1}, "isobaricInhPa/t") == 0.1  # GRIB groups: the short name works
    assert errorbound.bound_for({"t": 0.1, "isobaricInhPa/t": 0.2}, "isobaricInhPa/t") == 0.2
