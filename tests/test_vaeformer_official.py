"""Official CRA5 VAEformer (taohan10200/CRA5) checkpoints: key layout, safe loading, coding, channel layout.

The real ``cra5_268v_300k.pth`` cannot be downloaded here, so files are built the way upstream saves
them (a flat state dict, ``backbone.`` prefixes, ``kl_loss.logvar``, CompressAI coder buffers) with a
tiny configuration; the key layout is checked against an enumeration written independently from
upstream's ``vaeformer.py``, ``vit_nlc.py`` and ``compressai/entropy_models``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from codec.checkpoint import load_weights, read_metadata, weights_hash
from codec.climate import cra5_layout
from codec.entropy.tables import TOTAL
from codec.errors import CorruptStreamError, ModelError
from codec.models import vaeformer_official
from codec.models.vaeformer_official import (
    FULL,
    TINY,
    OfficialConfig,
    VAEformerOfficial,
    convert,
    infer_config,
    load_official,
    official_state_dict,
    our_key,
    parameter_count,
)
from tests.cra5_helpers import official_file, tiny_model
from tests.helpers import EXECUTED, Payload

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest

# ------------------------------------------------------------------------------------------------
# The official key layout, enumerated from upstream's module definitions


def _linear(p: str, cout: int, cin: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{p}.weight": (cout, cin), **({f"{p}.bias": (cout,)} if bias else {})}


def _norm(p: str, d: int) -> dict[str, tuple[int, ...]]:
    return {f"{p}.weight": (d,), f"{p}.bias": (d,)}


def _block(p: str, d: int) -> dict[str, tuple[int, ...]]:  # vit_nlc.Block: qkv_bias=True, mlp_ratio=4
    return {
        **_norm(f"{p}.norm1", d), **_linear(f"{p}.attn.qkv", 3 * d, d), **_linear(f"{p}.attn.proj", d, d),
        **_norm(f"{p}.norm2", d), **_linear(f"{p}.mlp.fc1", 4 * d, d), **_linear(f"{p}.mlp.fc2", d, 4 * d),
    }


def _entropy_bottleneck(c: int) -> dict[str, tuple[int, ...]]:  # filters (3, 3, 3, 3), CRA5's _matrix{i} names
    sizes = (1, 3, 3, 3, 3, 1)
    keys = {"quantiles": (c, 1, 3), "target": (3,), "likelihood_lower_bound.bound": (1,)}
    for i in range(5):
        keys[f"_matrix{i}"] = (c, sizes[i + 1], sizes[i])
        keys[f"_bias{i}"] = (c, sizes[i + 1], 1)
        if i < 4:
            keys[f"_factor{i}"] = (c, sizes[i + 1], 1)
    return {f"entropy_bottleneck.{k}": v for k, v in keys.items()}


def official_shapes(
    cin: int, kernel: tuple[int, int], dim: int, tokens: int, enc: int, dec: int, latent: int,
    prior_patch: int, prior_dim: int, hyper_tokens: int, prior_blocks: int, hyper: int, hidden: int,
) -> dict[str, tuple[int, ...]]:
    """Every fixed-shape tensor of the official ``VAEformer.state_dict()`` (``backbone.`` stripped)."""
    s: dict[str, tuple[int, ...]] = {"g_a.patch_embed.proj.weight": (dim, cin, *kernel), "g_a.patch_embed.proj.bias": (dim,)}
    s["g_a.pos_embed"] = (1, tokens, dim)
    for i in range(enc):
        s |= _block(f"g_a.blocks.{i}", dim)
    for i in range(dec):
        s |= _block(f"g_s.blocks.{i}", dim)
    s |= _norm("g_s.norm", dim) | {"g_s.final.weight": (dim, cin, *kernel)}  # ConvTranspose2d, bias=False
    s |= {"quant_conv.weight": (2 * latent, 2 * dim, 1, 1), "quant_conv.bias": (2 * latent,)}
    s |= {"post_quant_conv.weight": (dim, latent, 1, 1), "post_quant_conv.bias": (dim,)}
    s |= {"h_a.patch_embed.proj.weight": (prior_dim, latent, prior_patch, prior_patch), "h_a.patch_embed.proj.bias": (prior_dim,)}
    s["h_a.pos_embed"] = (1, hyper_tokens, prior_dim)
    for i in range(prior_blocks):
        s |= _block(f"h_a.blocks.{i}", prior_dim) | _block(f"h_s.blocks.{i}", prior_dim)
    s |= _linear("h_a.quan_mlp.fc1", hidden, prior_dim) | _linear("h_a.quan_mlp.fc2", hyper, hidden)
    s |= _linear("h_s.post_quan_mlp.fc1", hidden, hyper) | _linear("h_s.post_quan_mlp.fc2", prior_dim, hidden)
    s |= _norm("h_s.norm", prior_dim) | {"h_s.final.weight": (2 * latent * prior_patch**2, prior_dim)}
    s |= _entropy_bottleneck(hyper)
    s |= {f"gaussian_conditional.{n}": (1,) for n in ("scale_bound", "likelihood_lower_bound.bound", "lower_bound_scale.bound")}
    return s


PUBLISHED = official_shapes(268, (11, 10), 1024, 72 * 144, 13, 12, 256, 4, 360, 18 * 36, 4, 256, 256)
SMALL = official_shapes(4, (5, 4), 16, 6 * 10, 5, 4, 6, 2, 16, 3 * 5, 2, 4, 8)  # TINY


@pytest.fixture(scope="module")
def model() -> VAEformerOfficial:
    return tiny_model()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("cra5") / "cra5_tiny.pth"
    torch.save(official_file(model), path)
    return path


@pytest.fixture()
def fields() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(1, TINY.in_channels, *TINY.image_size)


# ------------------------------------------------------------------------------------------------
# Architecture


def test_full_configuration_keys_and_shapes():
    with torch.device("meta"):
        model = VAEformerOfficial(FULL)
    sd = official_state_dict(model)
    assert {k: tuple(v.shape) for k, v in sd.items()} == PUBLISHED
    assert set(model.state_dict()) == {our_key(k) for k in PUBLISHED} | {"z_table"}
    assert "entropy_bottleneck.matrices.4" in model.state_dict() and "entropy_bottleneck.factors.3" in model.state_dict()
    assert round(parameter_count(FULL) / 1e6, 1) == 404.7  # the documented ~404.7 M
    assert FULL.tokens == (72, 144) and FULL.hyper_grid == (18, 36)
    assert infer_config({k: v for k, v in model.state_dict().items() if k != "z_table"}) == FULL  # from shapes alone


def test_window_schedule_follows_vit_nlc():
    with torch.device("meta"):
        model = VAEformerOfficial(FULL)
    cycle = [(24, 24), (12, 48), (48, 12), None]  # window_size[min(i % 4, 2)], global when (i + 1) % 4 == 0
    assert [b.attn.window for b in model.g_a.blocks] == cycle * 3 + [None]  # the extra 13th block copies the 12th
    assert [b.attn.window for b in model.g_s.blocks] == cycle * 3  # blocks 12..23
    assert all(b.attn.window is None for b in [*model.h_a.blocks, *model.h_s.blocks])
    assert [b.attn.heads for b in model.g_a.blocks] == [16] * 13 and model.h_a.blocks[0].attn.heads == 5


def test_tiny_configuration_has_official_keys(model):
    assert {k: tuple(v.shape) for k, v in official_state_dict(model).items()} == SMALL
    assert 5_000 < parameter_count(TINY) < 100_000


def test_mean_and_logvar_blocks_read_the_same_tokens(model, fields):
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.g_a.blocks[-3].register_forward_hook(lambda m, args, out: seen.__setitem__("third_last", out)),
        model.g_a.blocks[-2].register_forward_hook(lambda m, args, out: seen.__setitem__("mean_in", args[0])),
        model.g_a.blocks[-1].register_forward_hook(lambda m, args, out: seen.__setitem__("logvar_in", args[0])),
    ]
    try:
        with torch.no_grad():
            moments = model.g_a(fields)
    finally:
        for h in hooks:
            h.remove()
    assert seen["mean_in"] is seen["third_last"] and seen["logvar_in"] is seen["third_last"]
    assert moments.shape == (1, 2 * TINY.dim, *TINY.tokens)


def test_prior_output_is_unpatched_p1_p2_c_scales_first(model):
    captured: list[torch.Tensor] = []
    hook = model.h_s.final.register_forward_hook(lambda m, args, out: captured.append(out))
    try:
        with torch.no_grad():
            scales, means = model.h_s(torch.randn(1, TINY.hyper_channels, *TINY.hyper_grid))
    finally:
        hook.remove()
    feat, c = captured[0], TINY.latent_channels  # [1, h, w, p1 * p2 * 2c] per hyper-latent position
    for p1 in range(2):
        for p2 in range(2):
            part = feat[0, 1, 2, (p1 * 2 + p2) * 2 * c : (p1 * 2 + p2 + 1) * 2 * c]
            assert torch.equal(scales[0, :, 2 + p1, 4 + p2], part[:c]) and torch.equal(means[0, :, 2 + p1, 4 + p2], part[c:])


def test_config_round_trip_and_validation():
    for cfg in (FULL, TINY):
        assert OfficialConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="not tiled"):
        OfficialConfig(image_size=(720, 1440))
    with pytest.raises(ValueError, match="prior patch"):
        OfficialConfig(prior_patch=(5, 4))
    with pytest.raises(TypeError):
        OfficialConfig.from_dict({"depth": 24, "bogus": 1})


# ------------------------------------------------------------------------------------------------
# Loading


def test_loader_accepts_official_file(ckpt, model):
    loaded, meta = load_official(ckpt, base=TINY)
    assert not loaded.training
    assert meta == {"config": TINY.to_dict(), "source": ckpt.name, "compressai_tables": False}
    assert weights_hash(loaded.state_dict()) == weights_hash(model.state_dict())
    table = loaded.z_table.long()
    assert bool((table >= 1).all()) and bool((table.sum(-1) == TOTAL).all())


def test_loader_variants(tmp_path, model):
    sd = official_file(model, updated=True)
    sd["backbone.kl_loss.logvar"] = sd.pop("kl_loss.logvar")  # the loss under the prefix is dropped too
    torch.save(sd, tmp_path / "updated.pth")
    loaded, meta = load_official(tmp_path / "updated.pth", base=TINY)
    assert meta["compressai_tables"] and weights_hash(loaded.state_dict()) == weights_hash(model.state_dict())
    torch.save({k.removeprefix("backbone."): v.half() for k, v in official_file(model).items()}, tmp_path / "plain.pth")
    loaded, _ = load_official(tmp_path / "plain.pth", base=TINY)  # no prefix, float16: loads as float32
    assert loaded.g_a.pos_embed.dtype == torch.float32
    assert torch.equal(loaded.g_a.pos_embed, model.g_a.pos_embed.half().float())


def test_convert_to_safetensors(tmp_path, ckpt, model, fields):
    dst = tmp_path / "cra5.safetensors"
    digest = convert(ckpt, dst, base=TINY)
    meta = read_metadata(dst)
    assert meta["model"] == "vaeformer-official" and meta["source"] == ckpt.name
    assert OfficialConfig.from_dict(json.loads(meta["config"])) == TINY
    tensors, _ = load_weights(dst)
    again = VAEformerOfficial(OfficialConfig.from_dict(json.loads(meta["config"])))
    again.load_state_dict(tensors, strict=True)
    again.check()
    assert digest == weights_hash(again.state_dict()) == weights_hash(model.state_dict())
    assert again.eval().compress(fields) == model.compress(fields)


def one_line_error(path, match: str, base: OfficialConfig = TINY) -> None:
    with pytest.raises(ModelError, match=match) as info:
        load_official(path, base=base)
    assert "\n" not in str(info.value)


def test_foreign_corrupt_truncated_and_malicious_files(tmp_path, ckpt, model):
    one_line_error(tmp_path / "missing.pth", "not found")
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    one_line_error(tmp_path / "text.pth", "cannot read")
    (tmp_path / "cut.pth").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    one_line_error(tmp_path / "cut.pth", "cannot read")
    torch.save({"state_dict": official_file(model), "meta": {"epoch": 3}}, tmp_path / "nested.pth")
    one_line_error(tmp_path / "nested.pth", "holds no flat state dict")
    torch.save({"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "other.pth")
    one_line_error(tmp_path / "other.pth", "lacks 'g_a.patch_embed.proj.weight'")
    torch.save({**official_file(model), "backbone.evil": Payload()}, tmp_path / "evil.pth")
    one_line_error(tmp_path / "evil.pth", "safe loading refuses")
    assert not EXECUTED


def edited(tmp_path, model, name: str, edit) -> object:
    sd = official_file(model)
    edit(sd)
    path = tmp_path / name
    torch.save(sd, path)
    return path


def test_wrong_keys_shapes_and_values_rejected(tmp_path, model):
    def mlp_shape(sd):
        sd["backbone.g_s.blocks.1.mlp.fc1.weight"] = torch.zeros(64, 8)

    def missing(sd):
        del sd["backbone.h_s.norm.bias"]

    def extra(sd):
        sd["backbone.g_a.cls_token"] = torch.zeros(1, 1, 16)

    def nan(sd):
        sd["backbone.quant_conv.bias"] = torch.full((12,), float("nan"))

    def integer(sd):
        sd["backbone.entropy_bottleneck._bias4"] = torch.zeros(4, 1, 1, dtype=torch.int64)

    def linear_final(sd):
        sd["backbone.g_s.final.weight"] = torch.zeros(4 * 5 * 4, 16)

    def uneven_blocks(sd):
        for key in [k for k in sd if k.startswith("backbone.g_s.blocks.3.")]:
            del sd[key]

    one_line_error(edited(tmp_path, model, "shape.pth", mlp_shape), r"'g_s.blocks.1.mlp.fc1.weight' has shape \[64, 8\]")
    one_line_error(edited(tmp_path, model, "missing.pth", missing), "lacks 1 tensors")
    one_line_error(edited(tmp_path, model, "extra.pth", extra), "unexpected tensors")
    one_line_error(edited(tmp_path, model, "nan.pth", nan), "non-finite")
    one_line_error(edited(tmp_path, model, "int.pth", integer), "expected floating point")
    one_line_error(edited(tmp_path, model, "linear.pth", linear_final), "linear g_s.final")
    one_line_error(edited(tmp_path, model, "blocks.pth", uneven_blocks), "encoder/decoder")


def test_geometry_that_shapes_cannot_tell_is_checked(ckpt):
    one_line_error(ckpt, "does not fit the", base=FULL)  # 5 x 4 patches do not tile 721 x 1440
    other = OfficialConfig.from_dict({**TINY.to_dict(), "image_size": [33, 48]})  # tiles, but 8 x 12 tokens
    one_line_error(ckpt, "g_a.pos_embed has 60 tokens", base=other)


# ------------------------------------------------------------------------------------------------
# Coding


def test_round_trip_equals_forward_and_is_deterministic(model, fields):
    streams = model.compress(fields)
    assert len(streams) == 2 and all(isinstance(s, bytes) and s for s in streams)
    first = model.decompress(streams, TINY.image_size)
    assert torch.equal(first, model.decompress(streams, TINY.image_size))
    with torch.no_grad():
        out = model(fields)
    assert torch.equal(first, out["x_hat"])  # eval forward rounds exactly as the coder does
    assert out["likelihoods"]["y"].shape == (1, 6, 6, 10) and out["likelihoods"]["z"].shape == (1, 4, 3, 5)
    assert bool((out["likelihoods"]["y"] > 0).all()) and out["mean"].shape == out["logvar"].shape


def test_escaped_hyper_latents_round_trip(fields):
    net = tiny_model(1)
    with torch.no_grad():
        net.h_a.quan_mlp.fc2.bias.add_(1000.0)  # every hyper-latent far outside the tables: all escaped
        z = net.h_a(net.posterior(fields)[0])
        assert bool(((z - net.medians()).abs() > vaeformer_official.Z_RADIUS).all())
        expected = net(fields)["x_hat"]
    assert torch.equal(net.decompress(net.compress(fields), TINY.image_size), expected)


def test_bytes_identical_across_thread_counts(model, fields):
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            streams = model.compress(fields)
            results.append((streams, model.decompress(streams, TINY.image_size)))
    finally:
        torch.set_num_threads(previous)
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


def test_attention_blocks_do_not_change_results(monkeypatch, model, fields):
    with torch.no_grad():
        whole = model(fields)["x_hat"]
        monkeypatch.setattr(vaeformer_official, "ATTENTION_CHUNK_BYTES", 1)  # one head per block
        assert torch.equal(model(fields)["x_hat"], whole)


def test_bad_inputs_and_streams(model, fields):
    with pytest.raises(ValueError, match="expected fields"):
        model.compress(fields[:, :, :24])
    streams = model.compress(fields)
    with pytest.raises(ValueError, match="expected fields"):
        model.decompress(streams, (24, 40))
    with pytest.raises(ValueError, match="2 streams"):
        model.decompress(streams[:1], TINY.image_size)
    with pytest.raises(CorruptStreamError):
        model.decompress([streams[0], streams[1][:-1]], TINY.image_size)


def test_check_rejects_unfrozen_tables(model):
    net = VAEformerOfficial(TINY)
    net.load_state_dict(model.state_dict())
    net.check()
    with torch.no_grad():
        net.z_table.fill_(1)
    with pytest.raises(ValueError, match="not frozen"):
        net.check()


# ------------------------------------------------------------------------------------------------
# Channel layout (cra5/api/cra5_268v_config.py, cra5_api.py)

LEVELS = [1000, 975, 950, 925, 900, 875, 850, 825, 800, 775, 750, 700, 650, 600, 550, 500, 450, 400, 350]
LEVELS += [300, 250, 225, 200, 175, 150, 125, 100, 70, 50, 30, 20, 10, 7, 5, 3, 2, 1]


def test_channel_layout_is_upstream_order():
    names = [f"{v}_{level}" for v in ("z", "q", "u", "v", "t", "r", "w") for level in LEVELS]
    names += ["v10", "u10", "v100", "u100", "t2m", "tcc", "sp", "tp", "msl"]
    chans = cra5_layout.channels()
    assert [c.name for c in chans] == names and [c.index for c in chans] == list(range(268))
    assert cra5_layout.channel_index("z_500") == 15 and cra5_layout.channel_index("t2m") == 263
    z500 = chans[15]
    assert (z500.variable, z500.level, z500.long_name, z500.factor) == ("z", 500, "geopotential", 1.0)
    assert chans[266].variable == "tp" and chans[266].level is None and chans[266].factor == 1000.0
    with pytest.raises(KeyError, match="no CRA5 channel"):
        cra5_layout.channel_index("z_501")


def test_normalization_uses_upstream_statistics():
    chans = cra5_layout.channels()
    assert chans[0].mean == 736.7317577949905  # mean_std.json: z at 1000 hPa
    assert chans[266].std == 0.37674129774593407  # mean_std_single.json: tp (millimetres)
    assert chans[262].mean == 0.027361132709713677  # u100
    rng = np.random.default_rng(0)
    raw = torch.from_numpy(rng.normal(size=(268, 3, 4)).astype(np.float32))
    mean = torch.tensor([c.mean for c in chans], dtype=torch.float64).float()[:, None, None]
    std = torch.tensor([c.std for c in chans], dtype=torch.float64).float()[:, None, None]
    factored = raw.clone()
    factored[266] = raw[266] * 1000  # upstream: D * 1000 for tp, before normalizing
    assert torch.equal(cra5_layout.normalize(raw), (factored - mean) / std)
    assert torch.allclose(cra5_layout.denormalize(cra5_layout.normalize(raw)), raw, rtol=1e-4, atol=0.1)
