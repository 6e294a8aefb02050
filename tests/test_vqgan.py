"""VQGAN (taming-transformers architecture) and the official-checkpoint loader."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from codec.checkpoint import count_submodules, load_weights, weights_hash
from codec.errors import ModelError
from codec.models import taming
from codec.models.taming import convert, load_taming_checkpoint, load_taming_model
from codec.models.vqgan import (
    FULL_F16_16384,
    SMALL,
    TINY,
    VQGAN,
    DiscriminatorConfig,
    PatchDiscriminator,
    VQGANConfig,
)
from tests.helpers import EXECUTED, Payload

SMALL_DISC = DiscriminatorConfig(ndf=8, n_layers=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest


@pytest.fixture(scope="module")
def tiny(one_thread) -> VQGAN:
    torch.manual_seed(0)
    model = VQGAN(TINY).eval()
    with torch.no_grad():  # spread the codewords so that many are used
        model.quantize.embedding.weight.normal_(0, 0.5)
    return model


def brute_force(h: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
    return torch.cdist(flat.double(), codebook.double()).argmin(1).reshape(h.shape[0], h.shape[2], h.shape[3])


# ---------------------------------------------------------------------------------------------- model


def test_config_round_trip_and_validation():
    for cfg in (TINY, SMALL, FULL_F16_16384):
        assert VQGANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert FULL_F16_16384.factor == SMALL.factor == 16 and TINY.factor == 4
    assert FULL_F16_16384.encoder_attn_levels == FULL_F16_16384.decoder_attn_levels == (4,)
    with pytest.raises(ValueError, match="multiples of norm_groups=32"):
        VQGANConfig(ch=16)
    with pytest.raises(TypeError):
        VQGANConfig.from_dict({"bogus": 1})


def test_tiny_forward_backward():
    torch.manual_seed(1)
    model = VQGAN(TINY)
    x = torch.rand(2, 3, 32, 32)
    recon, codebook_loss, commitment_loss, idx = model(x)
    assert recon.shape == x.shape and idx.shape == (2, 8, 8) and idx.dtype == torch.long
    assert codebook_loss.shape == commitment_loss.shape == ()
    loss = (recon - x).abs().mean() + model.vq_loss(codebook_loss, commitment_loss)
    loss.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through reaches the encoder
    assert model.codebook.grad.abs().sum() > 0  # codebook loss reaches the codewords
    assert model.last_layer().grad is not None
    assert torch.allclose(model.vq_loss(torch.tensor(1.0), torch.tensor(2.0)), torch.tensor(2.25))


def test_any_size_pads_and_crops(tiny):
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        recon, _, _, idx = tiny(x)
        h = tiny.encode(x)
        y = tiny.decode_indices(idx, size=(37, 53))
    assert recon.shape == y.shape == (1, 3, 37, 53)
    assert h.shape == (1, TINY.embed_dim, 10, 14) and idx.shape == (1, 10, 14)
    assert torch.allclose(recon.clamp(0, 1), y, atol=1e-5)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    with torch.no_grad():
        assert tiny(torch.rand(1, 3, 3, 5))[0].shape == (1, 3, 3, 5)
    with pytest.raises(ValueError):
        tiny.encode(torch.rand(1, 1, 8, 8))


def test_indices_round_trip(tiny):
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        h = tiny.encode(x)
        idx = tiny.quantize_indices(h)
        assert torch.equal(idx, brute_force(h, tiny.codebook))
        assert len(idx.unique()) > 1
        # the codewords map back to their own indices
        assert torch.equal(tiny.quantize_indices(tiny.lookup(idx)), idx)
        y = tiny.decode_indices(idx)
        recon = tiny(x)[0]
    assert torch.allclose(y, recon.clamp(0, 1), atol=1e-5)


def test_external_codebook(tiny, monkeypatch):
    torch.manual_seed(2)
    codebook = torch.randn(7, TINY.embed_dim)
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        h = tiny.encode(x)
        idx = tiny.quantize_indices(h, codebook)
        assert int(idx.max()) < 7 and torch.equal(idx, brute_force(h, codebook))
        assert torch.equal(tiny.lookup(idx, codebook), codebook[idx].permute(0, 3, 1, 2))
        y = tiny.decode_indices(idx, codebook)
        assert torch.allclose(tiny(x, codebook=codebook)[0].clamp(0, 1), y, atol=1e-5)
        # chunked search gives the same answer as one big distance matrix
        monkeypatch.setattr("codec.models.vqgan._DIST_CHUNK", 7 * 3)
        assert torch.equal(tiny.quantize_indices(h, codebook), idx)
    with pytest.raises(ValueError, match="channels"):
        tiny.quantize_indices(h, torch.randn(7, TINY.embed_dim + 1))
    with pytest.raises(ValueError, match="out of range"):
        tiny.decode_indices(torch.full((1, 2, 2), 7), codebook)


# Official names and shapes, read off taming/modules/diffusionmodules/model.py (Encoder, Decoder),
# taming/models/vqgan.py (VQModel) and the vqgan_imagenet_f16_16384 config.
OFFICIAL_F16_16384 = {
    "encoder.conv_in.weight": [128, 3, 3, 3],
    "encoder.down.0.block.0.norm1.weight": [128],
    "encoder.down.0.block.1.conv2.weight": [128, 128, 3, 3],
    "encoder.down.0.downsample.conv.weight": [128, 128, 3, 3],
    "encoder.down.2.block.0.nin_shortcut.weight": [256, 128, 1, 1],
    "encoder.down.4.block.0.nin_shortcut.weight": [512, 256, 1, 1],
    "encoder.down.4.attn.0.q.weight": [512, 512, 1, 1],
    "encoder.down.4.attn.1.proj_out.weight": [512, 512, 1, 1],
    "encoder.down.4.attn.1.norm.bias": [512],
    "encoder.mid.block_1.conv1.weight": [512, 512, 3, 3],
    "encoder.mid.attn_1.q.weight": [512, 512, 1, 1],
    "encoder.mid.block_2.norm2.weight": [512],
    "encoder.norm_out.weight": [512],
    "encoder.conv_out.weight": [256, 512, 3, 3],
    "quant_conv.weight": [256, 256, 1, 1],
    "quant_conv.bias": [256],
    "quantize.embedding.weight": [16384, 256],
    "post_quant_conv.weight": [256, 256, 1, 1],
    "decoder.conv_in.weight": [512, 256, 3, 3],
    "decoder.mid.attn_1.v.weight": [512, 512, 1, 1],
    "decoder.up.4.block.2.conv1.weight": [512, 512, 3, 3],
    "decoder.up.4.attn.2.k.weight": [512, 512, 1, 1],
    "decoder.up.4.upsample.conv.weight": [512, 512, 3, 3],
    "decoder.up.3.block.0.nin_shortcut.weight": [256, 512, 1, 1],
    "decoder.up.1.block.0.nin_shortcut.weight": [128, 256, 1, 1],
    "decoder.up.1.upsample.conv.weight": [128, 128, 3, 3],
    "decoder.up.0.block.2.conv2.weight": [128, 128, 3, 3],
    "decoder.norm_out.bias": [128],
    "decoder.conv_out.weight": [3, 128, 3, 3],
    "decoder.conv_out.bias": [3],
}
NOT_OFFICIAL = [
    "encoder.down.4.downsample.conv.weight",  # no downsampling after the last level
    "decoder.up.0.upsample.conv.weight",  # no upsampling after the first level
    "decoder.up.3.attn.0.q.weight",  # attention only at 16x16 (level 4)
    "encoder.down.0.block.0.nin_shortcut.weight",  # same width, identity shortcut
    "encoder.down.0.block.0.temb_proj.weight",  # no timestep embedding
    "decoder.up.2.block.1.nin_shortcut.weight",
]


def test_full_config_matches_official():
    with torch.device("meta"):
        model = VQGAN(FULL_F16_16384)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    for key, shape in OFFICIAL_F16_16384.items():
        assert shapes.get(key) == shape, key
    for key in NOT_OFFICIAL:
        assert key not in shapes
    assert count_submodules(shapes, "encoder.down.") == count_submodules(shapes, "decoder.up.") == 5
    assert count_submodules(shapes, "encoder.down.3.block.") == 2 and count_submodules(shapes, "decoder.up.3.block.") == 3
    assert {k.split(".attn.")[0] for k in shapes if ".attn." in k} == {"encoder.down.4", "decoder.up.4"}
    # parameter counts of the official autoencoder (the checkpoint's non-loss tensors)
    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(model.encoder) == 29_298_176
    assert count(model.decoder) == 42_449_795
    assert count(model) == 76_073_859  # 71_879_555 without the 16384 x 256 codebook
    assert len(shapes) == sum(1 for _ in model.parameters())  # no buffers


def test_discriminator_matches_official():
    disc = PatchDiscriminator()
    shapes = {k: list(v.shape) for k, v in disc.state_dict().items()}
    expected = {
        "main.0.weight": [64, 3, 4, 4],
        "main.0.bias": [64],
        "main.2.weight": [128, 64, 4, 4],
        "main.3.weight": [128],
        "main.3.running_var": [128],
        "main.3.num_batches_tracked": [],
        "main.5.weight": [256, 128, 4, 4],
        "main.8.weight": [512, 256, 4, 4],
        "main.9.running_mean": [512],
        "main.11.weight": [1, 512, 4, 4],
        "main.11.bias": [1],
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert "main.2.bias" not in shapes  # no conv bias before BatchNorm
    assert sum(p.numel() for p in disc.parameters()) == 2_765_633
    assert disc(torch.rand(1, 3, 64, 64)).shape == (1, 1, 6, 6)
    act = PatchDiscriminator(DiscriminatorConfig(actnorm=True, ndf=8))
    assert {"main.2.bias", "main.3.loc", "main.3.scale", "main.3.initialized"} <= set(act.state_dict())
    out = act.train()(torch.rand(2, 3, 32, 32))
    assert int(act.main[3].initialized) == 1 and out.shape == (2, 1, 2, 2)


# ---------------------------------------------------------------------------------------------- loader


def official_state_dict(model: VQGAN, seed: int = 3) -> dict[str, torch.Tensor]:
    """What a taming-transformers checkpoint holds: autoencoder, discriminator and LPIPS tensors."""
    torch.manual_seed(seed)
    disc = PatchDiscriminator(SMALL_DISC)
    sd = dict(model.state_dict())
    sd.update({f"loss.discriminator.{k}": v for k, v in disc.state_dict().items()})
    sd["loss.perceptual_loss.lin0.model.1.weight"] = torch.rand(1, 64, 1, 1)
    sd["loss.perceptual_loss.scaling_layer.shift"] = torch.rand(1, 3, 1, 1)
    return sd


def test_loader_on_fake_official_checkpoint(tiny, tmp_path):
    sd = official_state_dict(tiny)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": sd, "global_step": 5, "epoch": 1}, path)
    config, vq, disc = load_taming_checkpoint(path)
    assert config == TINY
    assert not any(k.startswith("loss.") for k in vq)
    assert set(disc) == set(PatchDiscriminator(SMALL_DISC).state_dict())
    assert taming.infer_discriminator_config(disc) == SMALL_DISC
    loaded = load_taming_model(path)
    x = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        a, b = tiny(x), loaded(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[3], b[3])
    # conversion to our safetensors format, which the loader reads back too
    out, dout = tmp_path / "vqgan.safetensors", tmp_path / "disc.safetensors"
    digest = convert(path, out, dout)
    tensors, meta = load_weights(out)
    assert meta["model"] == "vqgan-base" and meta["weights_hash"] == digest
    assert VQGANConfig.from_dict(json.loads(meta["config"])) == TINY
    assert torch.equal(tensors["quantize.embedding.weight"], tiny.codebook)
    dtensors, dmeta = load_weights(dout)
    assert dmeta["weights_hash"] == weights_hash(dtensors)
    assert weights_hash(tensors) == digest
    assert dmeta["model"] == "vqgan-discriminator" and DiscriminatorConfig.from_dict(json.loads(dmeta["config"])) == SMALL_DISC
    assert load_taming_checkpoint(out)[0] == TINY
    # a safetensors file with the official key names (loss tensors included)
    official = tmp_path / "official.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(official))
    config, vq, disc = load_taming_checkpoint(official)
    assert config == TINY and set(vq) == set(tiny.state_dict()) and disc is not None


def test_loader_accepts_lightning_bookkeeping(tiny, tmp_path, monkeypatch):
    """Lightning callback objects and numpy scalars next to the state dict load as inert placeholders."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    sys.modules[names[-1]].ModelCheckpoint = cls
    callback = cls()
    callback.best_model_score = torch.tensor(0.5)
    path = tmp_path / "pl.ckpt"
    torch.save({"state_dict": tiny.state_dict(), "callbacks": {cls: {"k": 1}}, "cb": callback, "np": np.float64(1.5)}, path)
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    config, vq, disc = load_taming_checkpoint(path)
    assert config == TINY and disc is None
    assert torch.equal(vq["decoder.conv_out.weight"], tiny.decoder.conv_out.weight)


def test_loader_refuses_arbitrary_pickled_objects(tiny, tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": tiny.state_dict(), "hparams": Payload()}, path)
    with pytest.raises(ModelError, match="safe loading refuses") as info:
        load_taming_checkpoint(path)
    assert "\n" not in str(info.value) and "_record" in str(info.value)
    assert EXECUTED == []


def one_line_error(path, match: str) -> None:
    with pytest.raises(ModelError, match=match) as info:
        load_taming_checkpoint(path)
    assert "\n" not in str(info.value)


def test_loader_failures(tiny, tmp_path):
    one_line_error(tmp_path / "missing.ckpt", "not found")
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    one_line_error(tmp_path / "text.ckpt", "checkpoint")
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": official_state_dict(tiny)}, good)
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    one_line_error(tmp_path / "cut.ckpt", "checkpoint")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    one_line_error(tmp_path / "bad.safetensors", "cannot read")

    def save(sd: dict, name: str):
        torch.save({"state_dict": sd}, tmp_path / name)
        return tmp_path / name

    sd = official_state_dict(tiny)
    one_line_error(save({k: v for k, v in sd.items() if k != "decoder.conv_out.bias"}, "m.ckpt"), "lacks 1 tensors")
    one_line_error(save({k: v for k, v in sd.items() if not k.startswith("quantize.")}, "q.ckpt"), "quantize.embedding.weight")
    one_line_error(save({**sd, "decoder.conv_out.bias": torch.zeros(5)}, "s.ckpt"), "shape")
    one_line_error(save({**sd, "extra.weight": torch.zeros(1)}, "x.ckpt"), "unexpected")
    one_line_error(save({**sd, "loss.discriminator.main.0.weight": torch.zeros(8, 3, 3, 3)}, "d.ckpt"), "discriminator")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "nt.ckpt")
    one_line_error(tmp_path / "nt.ckpt", "no state_dict")
