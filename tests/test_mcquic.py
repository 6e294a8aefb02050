"""McQuic model and its multi-codebook quantizer."""

import pytest
import torch

from codec.models.mcquic import TINY, McQuic, McQuicConfig, pad_to_multiple
from codec.models.quantizer import MultiCodebookQuantizer


def test_eval_quantization_is_nearest_codeword_and_lookup_inverts_it():
    torch.manual_seed(0)
    q = MultiCodebookQuantizer(channels=8, groups=2, codewords=16).eval()
    x = torch.randn(2, 8, 3, 5)
    out, idx, _ = q(x)
    assert idx.shape == (2, 2, 3, 5)
    for g in range(2):
        vecs = x[:, 4 * g : 4 * g + 4].permute(0, 2, 3, 1).reshape(-1, 4)
        brute = torch.cdist(vecs, q.codebook[g]).argmin(-1)
        assert torch.equal(brute, idx[:, g].reshape(-1))
    assert torch.allclose(q.lookup(idx), out)


def test_training_quantization_passes_gradients_to_input_codebook_and_temperature():
    torch.manual_seed(0)
    q = MultiCodebookQuantizer(channels=8, groups=2, codewords=16).train()
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    out, _, vq_loss = q(x)
    (out.pow(2).sum() + vq_loss).backward()
    assert x.grad.abs().sum() > 0 and q.codebook.grad.abs().sum() > 0 and q.log_scale.grad.abs().sum() > 0
    assert torch.allclose(q.usage.sum(-1), torch.ones(2))


def test_dead_codewords_are_reseeded_from_busy_ones():
    torch.manual_seed(0)
    q = MultiCodebookQuantizer(channels=4, groups=1, codewords=8)
    q.usage.copy_(torch.tensor([[0.9, 0.1, 0, 0, 0, 0, 0, 0]]))
    before = q.codebook.detach().clone()
    assert q.reseed_dead() == 6
    changed = (q.codebook.detach() != before).any(-1)[0]
    assert changed[2:].all() and not changed[:2].any()
    assert (q.usage > 0).all()
    assert torch.allclose(q.usage.sum(-1), torch.ones(1))  # still a distribution


def test_kmeans_seeding_lowers_distortion_and_counts_usage():
    """init_from runs Lloyd steps: lower quantization error than plain seeding, usage = the assignment histogram."""
    torch.manual_seed(0)
    centers = torch.randn(6, 4) * 4
    x = (centers[torch.randint(6, (600,))] + 0.1 * torch.randn(600, 4)).T.reshape(1, 4, 20, 30)

    def error(iters: int) -> float:
        torch.manual_seed(1)
        q = MultiCodebookQuantizer(channels=4, groups=1, codewords=6).eval()
        q.init_from(x, iters=iters)
        assert torch.allclose(q.usage.sum(-1), torch.ones(1))
        out, idx, _ = q(x)
        counts = torch.bincount(idx.flatten(), minlength=6).float()
        assert torch.allclose(q.usage[0], (counts + 1) / (counts + 1).sum())
        return (out - x).pow(2).mean().item()

    plain, kmeans = error(0), error(10)
    assert kmeans < 0.2 * plain


def test_update_freezes_usage_into_integer_tables():
    q = MultiCodebookQuantizer(channels=4, groups=2, codewords=8)
    q.usage.copy_(torch.softmax(torch.randn(2, 8), -1))
    q.update()
    assert q.freq.dtype == torch.int32 and (q.freq.sum(-1) == 1 << 16).all()
    assert torch.equal(q.freq.argmax(-1), q.usage.argmax(-1))


def test_config_round_trip_and_validation():
    cfg = McQuicConfig(groups=(4, 8))
    assert McQuicConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.pad_multiple == 64 and cfg.scales == 3
    with pytest.raises(TypeError):
        McQuicConfig.from_dict({"bogus": 1})
    with pytest.raises(TypeError, match="before the McQuic ladder"):
        McQuicConfig.from_dict({"groups": 8})  # a per-quality file of an earlier version
    for groups in ((), (3,)):
        with pytest.raises(ValueError, match="groups"):
            McQuicConfig(groups=groups)
    with pytest.raises(ValueError):
        MultiCodebookQuantizer(channels=10, groups=4, codewords=4)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    model = McQuic(TINY)
    model.init_codebooks(torch.rand(2, 3, 64, 64))
    model.eval()
    model.update()
    return model


@pytest.mark.parametrize("level", [1, 2])
def test_compress_decompress_equals_index_round_trip(tiny_model, level):
    model = tiny_model
    x = pad_to_multiple(torch.rand(1, 3, 70, 100), TINY.pad_multiple)
    assert x.shape[-2:] == (128, 128)
    strings = model.compress(x, level)
    assert len(strings) == TINY.scales
    y = model.decompress(strings, 128, 128, level)
    assert torch.equal(y, model.decode_indices(model.encode_indices(x, level), level).clamp(0, 1))
    assert model.compress(x, level, model.features(x)) == strings  # reused features give the same bytes
    with pytest.raises(ValueError):
        model.decompress(strings[:2], 128, 128, level)
    for bad in (0, model.levels + 1):
        with pytest.raises(ValueError, match="quality level"):
            model.compress(x, bad)


def test_levels_have_their_own_codebooks_and_more_groups_cost_more(tiny_model):
    model = tiny_model
    assert model.levels == 2 and [model.level_meta(q)["groups"] for q in (1, 2)] == list(TINY.groups)
    x = torch.rand(1, 3, 128, 128)
    idx1, idx2 = model.encode_indices(x, 1), model.encode_indices(x, 2)
    assert [i.shape[1] for i in idx1] == [2, 2, 2] and [i.shape[1] for i in idx2] == [4, 4, 4]
    assert model.quantizers[0][0].codebook.shape[-1] == 2 * model.quantizers[1][0].codebook.shape[-1]


def test_forward_shapes_and_indices_per_scale():
    model = McQuic(TINY).train()
    out = model(torch.rand(2, 3, 64, 128), level=1)
    assert out["x_hat"].shape == (2, 3, 64, 128)
    assert [tuple(i.shape) for i in out["indices"]] == [(2, 2, 4, 8), (2, 2, 2, 4), (2, 2, 1, 2)]
    assert out["vq_loss"].ndim == 0
    assert model(torch.rand(1, 3, 64, 64), level=2)["indices"][0].shape[1] == 4


def test_large_images_are_coded_in_tiles_that_do_not_show(monkeypatch):
    """Above TILED_ABOVE the transforms run tile by tile with context margins: the same indices and bytes as
    the whole-image pass, and decoded pixels within one level of it."""
    from fractions import Fraction

    from codec.models import mcquic
    from codec.models.tiling import tiled

    torch.manual_seed(0)
    model = McQuic(TINY).eval()
    x = torch.rand(1, 3, 256, 384)
    model.init_codebooks(x)
    model.update()
    whole = model.compress(x, 1), model.decompress(model.compress(x, 1), 256, 384, 1)
    monkeypatch.setattr(mcquic, "TILED_ABOVE", 128 * 128)
    monkeypatch.setattr(mcquic, "TILE", 128)
    calls = []
    monkeypatch.setattr(mcquic, "tiled", lambda *a, **k: calls.append(a[3]) or tiled(*a, **k))
    strings = model.compress(x, 1)
    pixels = model.decompress(strings, 256, 384, 1)
    assert calls == [128, 128 // mcquic.STRIDE]  # both transforms ran in tiles
    assert strings == whole[0]
    assert ((pixels - whole[1]).abs() * 255).max() <= 1.0
    with pytest.raises(ValueError, match="whole output pixels"):
        tiled(model.g_a, x, Fraction(1, 16), 100, 0)
