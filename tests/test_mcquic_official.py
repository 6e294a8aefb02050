"""Official McQuic (r0.1.17) checkpoints: key layout, safe loading, coding through the CLI and the API.

The real ``qp_2_msssim_8e954998.mcquic`` cannot be downloaded here, so the files are built like the
official exporter builds them (``torch.save({"model": state_dict, "config": ..., "version": ...})``)
with a tiny configuration; the key layout is checked against an enumeration written independently
from the r0.1.17 module definitions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import codec
from codec import registry, runtime
from codec.checkpoint import read_metadata, weights_hash
from codec.entropy.tables import TOTAL, frequencies_to_table
from codec.errors import ModelError
from codec.models import mcquic_official
from codec.models.mcquic_official import (
    FULL,
    TINY,
    McQuicOfficial,
    aligned_pad,
    center_crop,
    convert,
    load_official,
    official_state_dict,
    parameter_count,
    to_pixels,
)
from tests.helpers import EXECUTED, Payload, assert_one_line_error
from tests.helpers import run_cli as run

# ------------------------------------------------------------------------------------------------
# The r0.1.17 key layout, enumerated from mcquic/modules/compressor.py, quantizer.py, nn/blocks.py


def _conv(p: str) -> set[str]:
    return {f"{p}.weight", f"{p}.bias"}


def _gdn(p: str) -> set[str]:
    return {f"{p}.{n}" for n in ("beta", "gamma", "beta_reparam.eps", "beta_reparam.lowerBound.bound", "gamma_reparam.eps", "gamma_reparam.lowerBound.bound")}


def _res(p: str) -> set[str]:  # ResidualBlock: SiLU, conv, SiLU, conv
    return _conv(f"{p}._branch.1") | _conv(f"{p}._branch.3")


def _down(p: str) -> set[str]:  # ResidualBlockWithStride: SiLU, conv/2, GDN, conv; skip conv/2
    return _conv(f"{p}._branch.1") | _gdn(f"{p}._branch.2") | _conv(f"{p}._branch.3") | _conv(f"{p}._skip")


def _up(p: str) -> set[str]:  # ResidualBlockShuffle: SiLU, (conv, shuffle), IGDN, conv; skip (conv, shuffle)
    return _conv(f"{p}._branch.1.0") | _gdn(f"{p}._branch.2") | _conv(f"{p}._branch.3") | _conv(f"{p}._skip.0")


def _attn(p: str) -> set[str]:
    keys = _conv(f"{p}._sideBranch.3")
    for i in range(3):
        keys |= _res(f"{p}._mainBranch.{i}") | _res(f"{p}._sideBranch.{i}")
    return keys


def official_keys(levels: int) -> set[str]:
    """Every key of the official ``Compressor.state_dict()`` with ``levels`` codebook levels."""
    keys = _conv("_encoder.0") | _res("_encoder.1") | _down("_encoder.2") | _attn("_encoder.3") | _res("_encoder.4")
    keys |= _down("_encoder.5") | _res("_encoder.6")
    keys |= _res("_decoder.0") | _up("_decoder.1") | _attn("_decoder.2") | _res("_decoder.3") | _up("_decoder.4")
    keys |= _res("_decoder.5") | _conv("_decoder.6.0")
    for lv in range(levels):
        e, d = f"_quantizer._encoders.{lv}", f"_quantizer._decoders.{lv}"
        keys |= {f"{e}._quantizer._codebook", f"{e}._quantizer._temperature", f"{e}._quantizer._bound.bound"}
        keys |= {f"{e}._dequantizer._codebook", f"{d}._dequantizer._codebook", f"_quantizer._entropyCoder._freqEMA.{lv}"}
        keys |= _down(f"{e}._latentStageEncoder.0") | _res(f"{e}._latentStageEncoder.1") | _attn(f"{e}._latentStageEncoder.2")
        keys |= _res(f"{e}._quantizationHead.0") | _attn(f"{e}._quantizationHead.1") | _conv(f"{e}._quantizationHead.2")
        keys |= _attn(f"{d}._dequantizationHead.0") | _conv(f"{d}._dequantizationHead.1") | _res(f"{d}._dequantizationHead.2")
        keys |= _attn(f"{d}._restoreHead.0") | _res(f"{d}._restoreHead.1") | _up(f"{d}._restoreHead.2")
        if lv < levels - 1:  # no latent head / side head at the coarsest level
            keys |= _res(f"{e}._latentHead.0") | _attn(f"{e}._latentHead.1") | _conv(f"{e}._latentHead.2")
            keys |= _attn(f"{d}._sideHead.0") | _conv(f"{d}._sideHead.1") | _res(f"{d}._sideHead.2")
    return keys


# ------------------------------------------------------------------------------------------------
# Fixtures


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest


@pytest.fixture(autouse=True)
def one_codec_thread(monkeypatch):
    """The API's own thread count too (two threads are only exercised by the thread-count test)."""
    monkeypatch.setenv("CODEC_THREADS", "1")


def tiny_model(seed: int = 0) -> McQuicOfficial:
    """A tiny official-architecture network with uneven usage counts (some codewords never used)."""
    torch.manual_seed(seed)
    model = McQuicOfficial(TINY)
    with torch.no_grad():
        for freq in model._quantizer._entropyCoder._freqEMA:
            freq.copy_(torch.rand(freq.shape) * 100 * (torch.rand(freq.shape) > 0.2))
    model.update()
    return model.eval()


def official_file(sd: dict, config: object = None, version: object = "0.1.17") -> dict:
    """The object the official exporter saves (``mcquic/validate/cli.py``), with a marshmallow-dumped config."""
    if config is None:
        config = {
            "model": {"key": "Compressor", "params": {"channel": TINY.channel, "m": TINY.m, "k": list(TINY.k)}},
            "train": {"batchSize": 8, "epoch": 1000, "target": "MsSSIM", "optim": {"key": "Lamb", "params": {"lr": 1e-3}}},
        }
    return {"model": sd, "config": config, "version": version}


@pytest.fixture(scope="module")
def model() -> McQuicOfficial:
    return tiny_model()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("official") / "qp_2_msssim_tiny.mcquic"
    torch.save(official_file(official_state_dict(model)), path)
    return path


@pytest.fixture()
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:37, 0:61].astype(np.float32)
    smooth = np.stack([np.sin(x / 7) * 0.4 + 0.5, y / 37, (x + y) / 98], axis=2)
    return np.clip(smooth * 255 + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)






# ------------------------------------------------------------------------------------------------
# Architecture


def test_key_layout_is_r0117(model):
    sd = official_state_dict(model)
    assert set(sd) == official_keys(3)
    ours = set(model.state_dict())
    assert ours == (official_keys(3) - {k for k in sd if "._dequantizer._codebook" in k}) | {"tables.0", "tables.1", "tables.2"}


def test_full_configuration_shapes_and_size():
    with torch.device("meta"):
        sd = official_state_dict(McQuicOfficial(FULL))
    assert set(sd) == official_keys(3)
    for lv, k in enumerate((8192, 2048, 512)):
        assert sd[f"_quantizer._encoders.{lv}._quantizer._codebook"].shape == (2, k, 64)
        assert sd[f"_quantizer._decoders.{lv}._dequantizer._codebook"].shape == (2, k, 64)
        assert sd[f"_quantizer._entropyCoder._freqEMA.{lv}"].shape == (2, k)
        assert sd[f"_quantizer._encoders.{lv}._quantizer._temperature"].shape == (2, 1, 1, 1)
    assert sd["_encoder.0.weight"].shape == (128, 3, 3, 3)
    assert sd["_decoder.6.0.weight"].shape == (12, 128, 3, 3)
    assert sd["_decoder.1._branch.1.0.weight"].shape == (512, 128, 3, 3)
    assert sd["_encoder.2._branch.2.gamma"].shape == (128, 128)
    assert round(parameter_count(FULL) / 1e6, 1) == 50.6  # the documented ~50.6 M


def test_padding_normalization_and_pixels_follow_the_official_code():
    x = torch.rand(1, 3, 101, 90)
    padded = aligned_pad(x)
    assert torch.equal(padded, F.pad(x, (19, 19, 13, 14), mode="reflect"))  # AlignedPadding: centred reflection
    assert torch.equal(center_crop(padded, 101, 90), x)
    for h, w in ((37, 61), (1, 3), (1, 1)):  # too small for one reflection (the official code fails): still padded
        small = torch.rand(1, 3, h, w)
        assert aligned_pad(small).shape[-2:] == (128, 128) and torch.equal(center_crop(aligned_pad(small), h, w), small)
    y = torch.tensor([-1.0, -2.0, 0.0, 1.0, 2.0, 0.9961])
    assert (to_pixels(y) * 255).round().tolist() == [0, 0, 127, 255, 255, 255]  # DeTransform: floor((y+1)/2 * 255.999)


# ------------------------------------------------------------------------------------------------
# Loading


def test_loader_accepts_official_file(ckpt, model):
    loaded, meta = load_official(ckpt)
    assert not loaded.training
    assert meta == {"config": TINY.to_dict(), "version": "0.1.17", "target": "MsSSIM", "source": ckpt.name}
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    for lv in range(3):
        table = loaded.table(lv)
        assert torch.equal(table, frequencies_to_table(loaded.usage(lv)))
        assert bool((table >= 1).all()) and bool((table.long().sum(-1) == TOTAL).all())


def test_loader_without_duplicates_or_config(tmp_path, model):
    sd = {k: v for k, v in official_state_dict(model).items() if "._dequantizer." not in k}
    path = tmp_path / "plain.mcquic"
    torch.save({"model": sd}, path)
    loaded, meta = load_official(path)
    assert meta["version"] is None and weights_hash(loaded.state_dict()) == weights_hash(model.state_dict())


def one_line_error(path, match: str) -> None:
    with pytest.raises(ModelError, match=match) as info:
        load_official(path)
    assert "\n" not in str(info.value)


def test_foreign_corrupt_and_truncated_files(tmp_path, ckpt, model):
    one_line_error(tmp_path / "missing.mcquic", "not found")
    (tmp_path / "text.mcquic").write_text("not a checkpoint\n")
    one_line_error(tmp_path / "text.mcquic", "cannot read")
    (tmp_path / "cut.mcquic").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    one_line_error(tmp_path / "cut.mcquic", "cannot read")
    torch.save({"state_dict": official_state_dict(model)}, tmp_path / "lightning.mcquic")
    one_line_error(tmp_path / "lightning.mcquic", "no 'model' state dict")
    torch.save({"model": {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}}, tmp_path / "other.mcquic")
    one_line_error(tmp_path / "other.mcquic", "lacks '_encoder.0.weight'")
    torch.save(official_file(official_state_dict(model), config=Payload()), tmp_path / "evil.mcquic")
    one_line_error(tmp_path / "evil.mcquic", "safe loading refuses")
    assert not EXECUTED


def edited(tmp_path, model, name: str, edit, **kwargs) -> object:
    sd = official_state_dict(model)
    edit(sd)
    path = tmp_path / name
    torch.save(official_file(sd, **kwargs), path)
    return path


def test_wrong_keys_shapes_and_values_rejected(tmp_path, model):
    def conv_shape(sd):
        sd["_decoder.3._branch.1.weight"] = torch.zeros(8, 8, 5, 5)

    def codebook_groups(sd):
        for key in [k for k in sd if k.endswith("._codebook") and ".1." in k]:
            sd[key] = torch.zeros(4, 8, 2)

    def missing(sd):
        del sd["_quantizer._decoders.0._sideHead.1.weight"]

    def extra(sd):
        sd["_quantizer._extra.weight"] = torch.zeros(1)

    def duplicate(sd):
        sd["_quantizer._decoders.2._dequantizer._codebook"] = torch.zeros(2, 4, 4)

    def nan(sd):
        sd["_encoder.1._branch.1.bias"] = torch.full((8,), float("nan"))

    one_line_error(edited(tmp_path, model, "shape.mcquic", conv_shape), r"'_decoder.3._branch.1.weight' has shape \[8, 8, 5, 5\]")
    one_line_error(edited(tmp_path, model, "groups.mcquic", codebook_groups), "codebook shapes")
    one_line_error(edited(tmp_path, model, "missing.mcquic", missing), "lacks 1 tensors")
    one_line_error(edited(tmp_path, model, "extra.mcquic", extra), "unexpected tensors")
    one_line_error(edited(tmp_path, model, "dup.mcquic", duplicate), "shared codebook")
    one_line_error(edited(tmp_path, model, "nan.mcquic", nan), "non-finite")
    bad_config = official_file({}, version="0.1.17")["config"]
    bad_config["model"]["params"]["k"] = [8192, 2048, 512]
    one_line_error(edited(tmp_path, model, "config.mcquic", lambda sd: None, config=bad_config), "config says")


# ------------------------------------------------------------------------------------------------
# Coding


def test_cli_round_trip(capsys, tmp_path, ckpt, image):
    png, binf, outf = tmp_path / "in.png", tmp_path / "x.bin", tmp_path / "x.png"
    Image.fromarray(image).save(png)
    code, out, _ = run(capsys, "encode", png, "-o", binf, "--weights", ckpt)
    assert code == 0 and json.loads(out)["model"] == "mcquic-official"
    assert json.loads(out)["streams"].keys() == {"l0", "l1", "l2"}
    code, _, _ = run(capsys, "decode", binf, "-o", outf, "--weights", ckpt)
    assert code == 0 and np.asarray(Image.open(outf)).shape == image.shape
    code, _, err = run(capsys, "decode", binf, "-o", tmp_path / "y.png")
    assert_one_line_error(code, err, "pass them as weights (--weights)")
    code, _, err = run(capsys, "encode", png, "-o", tmp_path / "v.bin", "--weights", ckpt, "--model", "vqgan")
    assert_one_line_error(code, err, "holds weights of 'mcquic-official', not 'vqgan'")


def test_cli_bad_checkpoint_is_one_line(capsys, tmp_path, ckpt, image):
    png = tmp_path / "in.png"
    Image.fromarray(image).save(png)
    (tmp_path / "cut.mcquic").write_bytes(ckpt.read_bytes()[:1000])
    code, _, err = run(capsys, "encode", png, "-o", tmp_path / "x.bin", "--weights", tmp_path / "cut.mcquic")
    assert_one_line_error(code, err, "cannot read")
    assert not (tmp_path / "x.bin").exists()


def test_decode_equals_forward_reconstruction(ckpt, image):
    data = codec.encode(image, weights=ckpt)
    out = codec.decode(data, weights=ckpt)
    net = registry.load(weights=ckpt).model
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float().div(255.0)
    with runtime.inference():  # the codec's own thread count, as encode/decode use
        result = net(x)
        strings = net.compress(x)
        assert torch.equal(net.decompress(strings, *image.shape[:2]), result["x_hat"])
    assert [c.shape[-2:] for c in result["indices"]] == [(8, 8), (4, 4), (2, 2)]
    assert len({int(v) for v in result["indices"][0].flatten()}) > 1  # not a degenerate code
    ref = result["x_hat"][0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(out, ref)


def test_distance_blocks_do_not_change_codes(monkeypatch, model):
    x = torch.rand(1, 3, 200, 130)
    whole = model.encode_indices(x)
    monkeypatch.setattr(mcquic_official, "DISTANCE_CHUNK_BYTES", 1)  # one latent row per block
    assert all(torch.equal(a, b) for a, b in zip(whole, model.encode_indices(x), strict=True))


def test_bytes_identical_across_thread_counts(ckpt, image):
    net, _ = load_official(ckpt)
    x = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float().div(255.0)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            strings = net.compress(x)
            results.append((strings, net.decompress(strings, *image.shape[:2])))
    finally:
        torch.set_num_threads(previous)
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


def test_convert_to_safetensors(tmp_path, ckpt, image):
    dst = tmp_path / "official.safetensors"
    digest = convert(ckpt, dst)
    meta = read_metadata(dst)
    assert meta["model"] == "mcquic-official" and json.loads(meta["config"]) == TINY.to_dict()
    assert meta["version"] == "0.1.17" and meta["source"] == ckpt.name
    assert digest == registry.load(weights=ckpt).weights_hash == registry.load(weights=dst).weights_hash
    data = codec.encode(image, weights=dst)
    assert data == codec.encode(image, weights=ckpt)
    assert np.array_equal(codec.decode(data, weights=ckpt), codec.decode(data, weights=dst))


def test_registered_without_shipped_weights(capsys):
    row = next(r for r in registry.list_models() if r["name"] == "mcquic-official")
    assert row["kind"] == "image" and not row["ladder"] and row["qualities"] == []
    code, out, _ = run(capsys, "models")
    assert code == 0 and "mcquic-official" in out
    with pytest.raises(ModelError, match="no shipped checkpoints"):
        registry.load("mcquic-official")
