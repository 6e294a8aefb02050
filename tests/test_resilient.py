"""Resilient VQGAN-cluster files: packets, the lossy-channel simulator, naive fill and recovery."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

import codec
from codec import api, container, registry, resilient
from codec.checkpoint import read_metadata, save_weights
from codec.cli import main
from codec.errors import CorruptStreamError, InputError, ModelError
from codec.models.recovery import TINY, RecoveryTransformer, interpolate_columns, load_recovery
from codec.training.recovery import IndexCrops, packet_loss_mask, random_mask


@pytest.fixture(scope="module")
def image():
    y, x = np.mgrid[0:80, 0:72].astype(np.float32)
    return (np.stack([np.sin(x / 7) * 0.4 + 0.5, y / 80, (x + y) / 152], 2) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def recovery_weights(tiny_ladder, tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rec") / "recovery.safetensors"
    loaded = registry.load("vqgan", 1, tiny_ladder)
    net = RecoveryTransformer.for_ladder(loaded.model.ladder, TINY)
    torch.nn.init.normal_(net.head.weight, std=0.1)  # as if trained: not just the interpolation
    save_weights(net, path, {"model": "recovery", "config": TINY.to_dict(), "ladder_hash": loaded.weights_hash})
    return path


def test_clean_resilient_file_decodes_like_the_plain_one(tiny_ladder, image):
    plain = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder)
    packed = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=3)
    info = codec.info(packed)
    assert info["packet_rows"] == 3 and "lost_packets" not in info
    assert sorted(info["streams"]) == sorted(f"p{i}" for i in range(7))  # 80 / 4 = 20 token rows
    assert np.array_equal(codec.decode(plain, weights=tiny_ladder), codec.decode(packed, weights=tiny_ladder))


def test_damage_is_deterministic_and_only_touches_packets(tiny_ladder, image):
    data = codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=2)
    a, b, c = api.damage(data, 0.3, seed=4), api.damage(data, 0.3, seed=4), api.damage(data, 0.3, seed=5)
    assert a == b and a != c and len(a) == len(data)
    lost = container.unpack(a, erasable=resilient.is_packet).missing
    assert len(lost) == 3  # round(0.3 * 10)
    assert api.damage(data, 0.0, seed=1) == data
    assert len(container.unpack(api.damage(data, 1.0), erasable=resilient.is_packet).missing) == 10
    with pytest.raises(CorruptStreamError):
        container.unpack(a)  # a strict reader still refuses the damaged file
    with pytest.raises(InputError, match="no index packets"):
        api.damage(codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder), 0.1)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        api.damage(data, 1.5)


def test_lost_packets_are_filled_and_clean_rows_kept(tiny_ladder, recovery_weights, image):
    data = codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=2)
    damaged = api.damage(data, 0.4, seed=0)
    with pytest.warns(api.LostPackets, match="most frequent codeword"):
        naive = codec.decode(damaged, weights=tiny_ladder, recover=False)
    with pytest.warns(api.LostPackets, match="recovery transformer"):
        recovered = codec.decode(damaged, weights=tiny_ladder, recovery_weights=recovery_weights)
    assert naive.shape == recovered.shape == image.shape
    # indices of intact packets are untouched: recovered index maps agree on every known row
    net = registry.load("vqgan", 3, tiny_ladder).model
    c = container.unpack(damaged, erasable=resilient.is_packet)
    strings = [None if n in c.missing else c.stream(n) for n, _ in c.streams]
    idx, known = resilient.decode_packets(net.level(3), strings, 20, 18, 2)
    rec, ladder_hash = load_recovery(recovery_weights)
    assert ladder_hash == registry.load("vqgan", 1, tiny_ladder).weights_hash
    out = rec.recover(idx, known, 3)
    assert torch.equal(out[known], idx[known]) and int(out.max()) < 16
    filled = resilient.naive_fill(net.level(3), idx, known)
    assert torch.equal(filled[known], idx[known]) and len(filled[~known].unique()) == 1


def test_recovered_decode_ignores_the_callers_thread_count(tiny_ladder, recovery_weights, image):
    damaged = api.damage(codec.encode(image, model="vqgan", quality=3, weights=tiny_ladder, packet_rows=2), 0.3, seed=2)
    previous, decodes = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with pytest.warns(api.LostPackets):
                decodes.append(codec.decode(damaged, weights=tiny_ladder, recovery_weights=recovery_weights))
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(*decodes)


def test_shipped_recovery_is_listed_and_used_by_default(tiny_ladder, recovery_weights, image, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "CHECKPOINTS", tmp_path)
    (tmp_path / "vqgan.safetensors").write_bytes(tiny_ladder.read_bytes())
    damaged = api.damage(codec.encode(image, model="vqgan", quality=2, packet_rows=2), 0.3, seed=1)
    with pytest.warns(api.LostPackets, match="most frequent codeword"):  # no recovery weights shipped
        codec.decode(damaged)
    (tmp_path / registry.get_spec("vqgan").recovery).write_bytes(recovery_weights.read_bytes())
    with pytest.warns(api.LostPackets, match="recovery transformer"):
        recovered = codec.decode(damaged)
    with pytest.warns(api.LostPackets):
        assert np.array_equal(recovered, codec.decode(damaged, recovery_weights=recovery_weights))
    assert main(["models"]) == 0 and "lost-index recovery" in capsys.readouterr().out


def test_recovery_weights_must_match_the_ladder(tiny_ladder, recovery_weights, tmp_path, image):
    other = tmp_path / "other.safetensors"
    save_weights(RecoveryTransformer(TINY), other, {"model": "recovery", "config": TINY.to_dict(), "ladder_hash": "0" * 16})
    damaged = api.damage(codec.encode(image, model="vqgan", quality=1, weights=tiny_ladder, packet_rows=4), 0.5)
    with pytest.raises(ModelError, match="trained for vqgan weights"):
        codec.decode(damaged, weights=tiny_ladder, recovery_weights=other)
    with pytest.raises(ModelError, match="not found"):
        codec.decode(damaged, weights=tiny_ladder, recovery_weights=tmp_path / "none.safetensors")


def test_cli_damage_decode_and_bad_input(tiny_weights, tiny_ladder, recovery_weights, tmp_path, image, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(image).save(src)
    enc, dmg = tmp_path / "a.bin", tmp_path / "d.bin"
    assert main(["encode", str(src), "-o", str(enc), "--model", "vqgan", "--level", "2", "--packet-rows", "2", "--weights", str(tiny_ladder), "-q"]) == 0
    assert main(["damage", str(enc), "-o", str(dmg), "--drop", "0.2", "--seed", "3"]) == 0
    assert main(["info", str(dmg)]) == 0
    assert len(json.loads(capsys.readouterr().out)["lost_packets"]) == 2
    out = tmp_path / "d.png"
    assert main(["decode", str(dmg), "-o", str(out), "--weights", str(tiny_ladder), "--recovery-weights", str(recovery_weights)]) == 0
    assert "2 of 10 packets lost" in capsys.readouterr().err and out.exists()
    assert main(["decode", str(dmg), "-o", str(tmp_path / "n.png"), "--weights", str(tiny_ladder), "--no-recover"]) == 0
    assert "most frequent" in capsys.readouterr().err
    # a damaged header fails cleanly, with no output
    broken = bytearray(dmg.read_bytes())
    broken[12] ^= 0xFF
    (tmp_path / "h.bin").write_bytes(bytes(broken))
    assert main(["decode", str(tmp_path / "h.bin"), "-o", str(tmp_path / "h.png"), "--weights", str(tiny_ladder)]) == 1
    err = capsys.readouterr().err
    assert "header" in err and err.count("\n") == 1 and not (tmp_path / "h.png").exists()
    assert main(["encode", str(src), "-o", str(tmp_path / "m.bin"), "--weights", str(tiny_weights), "--packet-rows", "2"]) == 1
    assert "resilient packets (vqgan), not mcquic" in capsys.readouterr().err
    assert main(["damage", str(enc), "-o", str(enc), "--drop", "0.1"]) == 1  # never overwrites the input
    assert "overwrite the input" in capsys.readouterr().err


def test_truncated_and_fully_lost_files(tiny_ladder, image):
    data = codec.encode(image, model="vqgan", quality=2, weights=tiny_ladder, packet_rows=2)
    c = container.unpack(data)
    cut = c.spans["p7"][0] + 3  # the file ends inside packet 7: packets 7-9 are lost
    with pytest.warns(api.LostPackets, match="3 of 10 packets lost"):
        out = codec.decode(data[:cut], weights=tiny_ladder, recover=False)
    assert out.shape == image.shape
    assert codec.info(data[:cut])["lost_packets"] == ["p7", "p8", "p9"]
    with pytest.raises(CorruptStreamError, match="all 10 packets are lost"):
        codec.decode(api.damage(data, 1.0), weights=tiny_ladder)
    with pytest.raises(CorruptStreamError):
        codec.decode(data[: c.spans["p0"][0] - 2], weights=tiny_ladder)  # cut inside the header


def test_masks_and_batches():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        known = random_mask(8, 8, g)
        assert known.dtype == torch.bool and not known.all()
    known = packet_loss_mask(10, 4, 0.0, 2, g)  # always at least one packet lost
    assert (~known).sum() in (4, 8) and all(bool(known[r].all()) or not bool(known[r].any()) for r in range(10))
    maps = {2: [torch.randint(8, (5, 7))], 3: [torch.randint(16, (9, 9))]}
    crops = IndexCrops(maps, 6, seed=0)
    batch = crops.batch(3)
    assert batch.shape == (3, 3, 6, 6) and set(batch[:, 2].unique().tolist()) <= {2, 3}
    assert len(batch[:, 2].unique()) == 1


def test_recovery_holds_the_ladder_codewords_and_scores_by_distance(tiny_ladder):
    ladder = registry.load("vqgan", 1, tiny_ladder).model.ladder
    net = RecoveryTransformer.for_ladder(ladder, TINY).eval()
    lv = ladder[1]
    all_words = torch.cat([v.post_quant_conv(v.codebook[:, :, None, None])[:, :, 0, 0].detach() for v in ladder])
    held = net.codewords[4:12]  # level 2 follows level 1's 4 codewords
    words = lv.post_quant_conv(lv.codebook[:, :, None, None])[:, :, 0, 0].detach()
    assert torch.allclose(held, words / all_words.std(), atol=1e-5)  # the decoder's codewords, at unit scale
    # logits are negative squared distances (times the level's sharpness) up to a per-position constant
    net.head.bias.data.copy_(held[5])
    net.head.weight.data.zero_()
    logits = net(torch.zeros(1, 3, 3, dtype=torch.long), torch.zeros(1, 3, 3, dtype=torch.bool), 2)
    expected = -(held - held[5]).square().sum(1) / held.shape[1]
    assert torch.allclose(logits[0, 1, 1] - logits[0, 1, 1, 5], expected, atol=1e-4) and int(logits[0, 0, 0].argmax()) == 5
    with pytest.raises(ValueError, match="codebook sizes"):
        RecoveryTransformer.for_ladder(ladder[:2], TINY)
    with pytest.raises(ValueError, match="channels"):
        RecoveryTransformer.for_ladder(ladder, dataclasses.replace(TINY, code_dim=4))


def test_interpolate_columns_fills_between_neighbours_borders_and_empty_columns():
    values = torch.arange(5 * 3, dtype=torch.float32).view(1, 5, 3, 1) * torch.tensor([1.0, -2.0])  # [1, 5, 3, 2]
    known = torch.ones(1, 5, 3, dtype=torch.bool)
    known[0, 1:3, 0] = False  # between rows 0 and 3: 1/3 and 2/3 of the way
    known[0, 3:, 1] = False  # below the last known row: copy it
    known[0, :, 2] = False  # nothing known in the column: the map's mean of known values
    out = interpolate_columns(values, known)
    assert torch.equal(out[known], values[known])
    assert torch.allclose(out[0, 1, 0], values[0, 0, 0] + (values[0, 3, 0] - values[0, 0, 0]) / 3)
    assert torch.allclose(out[0, 2, 0], values[0, 0, 0] + 2 * (values[0, 3, 0] - values[0, 0, 0]) / 3)
    assert torch.equal(out[0, 3, 1], values[0, 2, 1]) and torch.equal(out[0, 4, 1], values[0, 2, 1])
    assert torch.allclose(out[0, 0, 2], values[known].mean(0)) and torch.allclose(out[0, 4, 2], values[known].mean(0))


def test_fresh_network_starts_from_the_interpolation(tiny_ladder):
    ladder = registry.load("vqgan", 1, tiny_ladder).model.ladder
    net = RecoveryTransformer.for_ladder(ladder, TINY).eval()
    idx = torch.randint(16, (1, 6, 4))
    known = torch.ones(1, 6, 4, dtype=torch.bool)
    known[0, 2:4] = False  # a lost packet of two rows
    logits = net(idx, known, 3)
    guess = interpolate_columns(net.words(3)[idx], known)
    nearest = torch.cdist(guess.view(-1, guess.shape[-1]), net.words(3)).argmin(1).view(1, 6, 4)
    assert torch.equal(logits.argmax(-1), nearest)  # most probable = nearest to the interpolated codeword


def test_recover_keeps_known_and_fills_all():
    torch.manual_seed(0)
    net = RecoveryTransformer(TINY).eval()
    net.codewords.normal_()
    idx = torch.randint(8, (7, 5))
    known = torch.rand(7, 5) > 0.5
    out = net.recover(idx, known, 2, steps=4)
    assert torch.equal(out[known], idx[known]) and int(out.max()) < 8 and int(out.min()) >= 0
    with pytest.raises(ValueError, match="level"):
        net.recover(idx, known, 4)
    # any map size (fixed sinusoidal positions), e.g. far larger than the training windows
    big = net.recover(torch.zeros(70, 3, dtype=torch.long), torch.rand(70, 3) > 0.3, 1, steps=2)
    assert big.shape == (70, 3) and int(big.max()) < 4


def test_train_recovery_tiny(tiny_ladder, tmp_path, capsys):
    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    args = ["train", "recovery", "--preset", "tiny", "--ladder", str(tiny_ladder), "--data", str(data), "--val", str(data),
            "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    meta = read_metadata(out / "model.safetensors")
    assert meta["model"] == "recovery" and meta["ladder_hash"] == registry.load("vqgan", 1, tiny_ladder).weights_hash
    assert 0.0 <= json.loads(meta["validation"])["index_acc"] <= 1.0
    # the full configuration does not fit a tiny ladder: one line, before any data is read
    assert main(args[:2] + args[4:] + ["--steps", "1"]) == 1
    assert "codebook sizes" in capsys.readouterr().err
