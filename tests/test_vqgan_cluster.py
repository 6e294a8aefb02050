"""VQGAN-cluster: training, K-means ladder, learned index prior, coding through the API and CLI, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import codec
from codec import container, registry
from codec.catalog import CATALOG
from codec.checkpoint import load_weights, read_metadata, save_weights
from codec.cli import main
from codec.errors import InputError, ModelError
from codec.image import tone
from codec.models.vqgan import TINY, VQGAN
from codec.models.vqgan_cluster import VQGANCluster, VQGANClusterConfig
from codec.training import vqgan as vqgan_training
from codec.training.vqgan_ladder import kmeans_codebook, load_base

SIZES = (4, 8, 16)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """training/ and validation/ folders of small photo-like images."""
    root = tmp_path_factory.mktemp("vq")
    rng = np.random.default_rng(0)
    for split, n in (("training", 3), ("validation", 1)):
        (root / split).mkdir()
        for i in range(n):
            y, x = np.mgrid[0:72, 0:88].astype(np.float32)
            img = np.stack([np.sin(x / (5 + i)) * 90 + 128, y * 3, rng.integers(0, 256, (72, 88))], 2)
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / split / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(images, tmp_path_factory):
    """A tiny base VQGAN (with the GAN phase) and the ladder built from it, by the CLI."""
    out = tmp_path_factory.mktemp("runs")
    common = ["--preset", "tiny", "--data", str(images / "training"), "--no-progress", "--threads", "1"]
    assert main(["train", "vqgan", *common, "--out", str(out / "base")]) == 0
    assert main(["train", "vqgan-ladder", *common, "--init", str(out / "base" / "model.safetensors"), "--out", str(out / "ladder")]) == 0
    return out


@pytest.fixture(scope="module")
def ladder(trained):
    return trained / "ladder" / "model.safetensors"


def test_base_training_runs_the_adversarial_phase_and_resumes(trained, images):
    logs = [json.loads(line) for line in (trained / "base" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in logs if "loss" in r]
    assert all(math.isfinite(r["loss"]) for r in steps)
    assert any("d_loss" in r and "d_weight" in r for r in steps)  # discriminator trained (tiny disc_start = 1)
    assert any("val" in r and r["val"]["codewords_used"] > 0 for r in logs)
    tensors, meta = load_weights(trained / "base" / "model.safetensors")
    assert meta["model"] == "vqgan-base" and int(tensors["train_step"]) == 4
    # resume continues from the saved step
    common = ["--preset", "tiny", "--data", str(images / "training"), "--no-progress", "--threads", "1"]
    assert main(["train", "vqgan", *common, "--out", str(trained / "base"), "--resume", "--steps", "6"]) == 0
    assert int(load_weights(trained / "base" / "model.safetensors")[0]["train_step"]) == 6


def test_ladder_file_holds_every_level_with_priors(ladder):
    meta = read_metadata(ladder)
    assert meta["model"] == "vqgan"
    config = VQGANClusterConfig.from_dict(json.loads(meta["config"]))
    assert config.sizes == SIZES and config.vqgan == TINY
    tensors, _ = load_weights(ladder)
    for i, k in enumerate(SIZES):
        assert tensors[f"ladder.{i}.codebook"].shape == (k, TINY.embed_dim)
        freq = tensors[f"ladder.{i}.freq"]
        assert freq.shape == (1, k) and int(freq.sum()) == 1 << 16 and int(freq.min()) >= 1
        assert float(tensors[f"ladder.{i}.counts"].sum()) > 0
    report = json.loads(meta["ladder"])
    assert [r["codebook_size"] for r in report["levels"]] == list(SIZES)
    assert all("psnr" in r["kmeans"] and "psnr" in r["finetuned"] for r in report["levels"])


def test_round_trip_every_level(ladder, photo):
    net = registry.load("vqgan", 1, ladder).model
    for level in range(1, len(SIZES) + 1):
        data = codec.encode(photo, model="vqgan", quality=level, weights=ladder)
        info = codec.info(data)
        assert info["level"] == level and info["codebook_size"] == SIZES[level - 1] and info["model"] == "vqgan"
        out = codec.decode(data, weights=ladder)
        assert out.shape == photo.shape and out.dtype == np.uint8
        # the decode equals the network's own reconstruction of the coded indices, toned by the file's tone layer
        c = container.unpack(data)
        assert c.meta["tone"] == list(CATALOG["vqgan"].tone_settings(level))
        x = torch.tensor(photo).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            x = torch.nn.functional.pad(x, (0, 3, 0, 2), mode="replicate")  # 70x101 -> 72x104 (f4)
            idx = net.level_indices(x, level)
            ref = net.level_decode(idx, level, photo.shape[:2])
        ref = tone.apply(ref, c.stream("tone"), *photo.shape[:2], tone.ToneSettings.from_meta(c.meta["tone"]))
        ref = ref[0].mul(255).round().byte().permute(1, 2, 0).numpy()
        assert np.abs(ref.astype(int) - out.astype(int)).max() <= 1


def test_learned_prior_beats_uniform_on_skewed_indices():
    net = VQGANCluster(VQGANClusterConfig(TINY, SIZES)).eval()
    lv = net.level(3)
    lv.counts.copy_(torch.tensor([100.0] + [1.0] * 15))
    net.update()
    idx = torch.zeros(10, 10, dtype=torch.long)
    idx[0, :5] = torch.arange(1, 6)
    assert lv.bits(idx) < 0.5 * 100 * math.log2(16)
    # and the real stream follows the ideal code length
    data = lv.encode(idx)
    assert len(data) <= math.ceil(lv.bits(idx) / 8) + 8 < 100 * math.log2(16) / 8
    assert torch.equal(lv.decode(data, 10, 10), idx)


def striped(h: int, w: int, shift: int = 0) -> torch.Tensor:
    """Index maps whose values repeat along rows: strong left-neighbour context, flat frequencies."""
    return ((torch.arange(h).unsqueeze(1) + shift) % 16).expand(h, w).contiguous()


def test_context_model_uses_neighbours():
    torch.manual_seed(0)
    net = VQGANCluster(VQGANClusterConfig(TINY, SIZES)).eval()
    lv = net.level(3)
    lv.groups.copy_(torch.arange(16) // 2)  # 8 groups of 2 codewords
    for shift in range(16):
        lv.accumulate(striped(12, 12, shift).unsqueeze(0))
    net.update()
    idx = striped(12, 12, 5)
    freq_only = float(-torch.log2(lv.freq[0].double() / 65536)[idx.flatten()].sum())
    assert lv.bits(idx) < 0.7 * freq_only  # half the symbols nearly determined by their left neighbour
    data = lv.encode(idx)
    assert len(data) <= math.ceil(lv.bits(idx) / 8) + 8
    assert torch.equal(lv.decode(data, 12, 12), idx)
    # any map round-trips exactly, including odd sizes and borders
    for h, w in ((1, 1), (1, 7), (5, 1), (7, 9)):
        rnd = torch.randint(16, (h, w))
        assert torch.equal(lv.decode(lv.encode(rnd), h, w), rnd)
    with pytest.raises(ValueError, match="one index map"):
        lv.encode(rnd.unsqueeze(0))


def test_bytes_identical_across_thread_counts(ladder, photo, monkeypatch):
    """Same bytes and pixels whatever the caller's torch threads; same bytes with the codec itself on 1 or 2."""
    previous = torch.get_num_threads()
    outs, decoded = [], []
    try:
        for caller, codec_threads in ((1, "2"), (2, "2"), (2, "1")):
            torch.set_num_threads(caller)
            monkeypatch.setenv("CODEC_THREADS", codec_threads)
            outs.append(codec.encode(photo, model="vqgan", quality=3, weights=ladder))
            decoded.append(codec.decode(outs[0], weights=ladder))
    finally:
        torch.set_num_threads(previous)
    assert outs[0] == outs[1] == outs[2]  # indices and their coding do not depend on threads
    assert np.array_equal(decoded[0], decoded[1])  # the codec's own thread count is what counts...
    # ...because the decoder's convolutions round differently on 1 thread (hence the pinned count)
    assert np.abs(decoded[0].astype(int) - decoded[2].astype(int)).max() <= 2


def test_malformed_tables_are_refused_at_load(ladder, tmp_path):
    tensors, meta = load_weights(ladder)
    for key, value in (("ladder.1.freq", torch.ones(1, 8, dtype=torch.int32)), ("ladder.2.groups", torch.full((16,), 9))):
        bad = tmp_path / f"bad-{key}.safetensors"
        save_file({**tensors, key: value}, str(bad), metadata=meta)
        with pytest.raises(ModelError, match="do not fit vqgan"):
            registry.load("vqgan", 1, bad)


def test_target_bpp_picks_the_highest_level_under_it(ladder, photo):
    sizes = {lv: len(codec.encode(photo, model="vqgan", quality=lv, weights=ladder)) for lv in (1, 2, 3)}
    bpp = {lv: 8 * n / (photo.shape[0] * photo.shape[1]) for lv, n in sizes.items()}
    target = (bpp[2] + bpp[3]) / 2 if bpp[3] > bpp[2] else bpp[3]
    data = codec.encode(photo, model="vqgan", bpp=target, weights=ladder)
    level = codec.info(data)["level"]
    assert 8 * len(data) / (photo.shape[0] * photo.shape[1]) <= target
    assert all(bpp[lv] > target for lv in range(level + 1, 4))
    with pytest.raises(InputError, match="even level 1"):
        codec.encode(photo, model="vqgan", bpp=bpp[1] / 10, weights=ladder)
    with pytest.raises(InputError, match="not both"):
        codec.encode(photo, model="vqgan", bpp=1.0, quality=2, weights=ladder)
    with pytest.raises(InputError, match="positive"):
        codec.encode(photo, model="vqgan", bpp=-1.0, weights=ladder)


def test_cli_encode_decode_info_and_errors(tiny_weights, ladder, tmp_path, photo, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(photo).save(src)
    enc, dec = tmp_path / "a.bin", tmp_path / "a.png"
    assert main(["encode", str(src), "-o", str(enc), "--model", "vqgan", "--level", "2", "--weights", str(ladder), "-q"]) == 0
    assert main(["decode", str(enc), "-o", str(dec), "--weights", str(ladder)]) == 0
    assert np.asarray(Image.open(dec)).shape == photo.shape
    assert main(["info", str(enc)]) == 0
    assert json.loads(capsys.readouterr().out)["codebook_size"] == SIZES[1]
    for argv, message in [
        (["encode", str(src), "-o", str(tmp_path / "b.bin"), "--model", "vqgan", "--level", "9", "--weights", str(ladder)], "levels 1..3"),
        (["encode", str(src), "-o", str(tmp_path / "b.bin"), "--weights", str(tiny_weights), "--packet-rows", "2"], "resilient packets"),
        (["decode", str(enc), "-o", str(tmp_path / "b.png")], "weights"),  # needs the weights it was made with
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1
        assert not (tmp_path / "b.bin").exists() and not (tmp_path / "b.png").exists()


def test_size_limit(ladder, photo, monkeypatch):
    data = codec.encode(photo, model="vqgan", quality=1, weights=ladder)
    monkeypatch.setattr(VQGANCluster, "max_pixels", 100)
    with pytest.raises(InputError, match="limit of 100 pixels"):
        codec.encode(photo, model="vqgan", quality=1, weights=ladder)
    with pytest.raises(InputError, match="limit of 100 pixels"):
        codec.decode(data, weights=ladder)


def test_ladder_errors(trained, images, tmp_path, capsys):
    common = ["--preset", "tiny", "--data", str(images / "training"), "--no-progress", "--threads", "1", "--out", str(tmp_path / "o")]
    base = str(trained / "base" / "model.safetensors")
    for extra, message in [
        ([], "needs --init"),
        (["--init", base, "--sizes", "8,4"], "ascending"),
        (["--init", base, "--sizes", "8,x"], "integers"),
        (["--init", base, "--sizes", "8,128"], "base codebook has 64"),
        (["--init", str(tmp_path / "none.safetensors")], "not found"),
    ]:
        assert main(["train", "vqgan-ladder", *common, *extra]) == 1
        assert message in capsys.readouterr().err
    bogus = tmp_path / "bogus.safetensors"
    save_weights(torch.nn.Linear(2, 2), bogus, {"model": "mcquic"})
    with pytest.raises(ModelError):
        load_base(bogus)
    assert main(["train", "vqgan", *common, "--quality", "2"]) == 1
    assert "vqgan-ladder" in capsys.readouterr().err


def test_ladder_from_an_official_checkpoint(tmp_path, images):
    """An official taming .ckpt (key names as published) is a valid ladder base."""
    torch.manual_seed(1)
    official = VQGAN(TINY)
    path = tmp_path / "vqgan_official.ckpt"
    torch.save({"state_dict": official.state_dict(), "global_step": 1}, path)
    base = load_base(path)
    assert torch.equal(base.codebook, official.codebook)
    args = ["train", "vqgan-ladder", "--preset", "tiny", "--init", str(path), "--data", str(images / "training"), "--steps", "1",
            "--sizes", "4,8", "--out", str(tmp_path / "lad"), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    assert registry.load("vqgan", 2, tmp_path / "lad" / "model.safetensors").model.level(2).size == 8
    with pytest.raises(ModelError, match="vqgan-ladder --init"):  # the .ckpt itself is not codec weights
        registry.load("vqgan", 1, path)


def test_kmeans_weights_codewords_by_use():
    cb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.2, 0.0], [5.0, 5.0]])
    counts = torch.tensor([1.0, 9.0, 5.0, 5.0, 0.0])  # the last codeword is never used
    centroids = kmeans_codebook(cb, counts, 2, seed=0)
    got = sorted(centroids[:, 0].tolist())
    assert got[0] == pytest.approx(0.09, abs=1e-6) and got[1] == pytest.approx(10.1, abs=1e-6)
    assert kmeans_codebook(cb, counts, 4, seed=0).shape == (4, 2)  # as many centroids as used codewords


def test_lpips_is_skipped_without_local_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert vqgan_training.load_lpips() is None


def test_hinge_loss():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    assert float(vqgan_training.hinge_d_loss(real, fake)) == pytest.approx(0.5 * (0.5 + 0.75))
